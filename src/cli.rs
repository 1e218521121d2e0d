//! The command line. Every form here is relied on by scripts and packaging; keep them stable.
//!
//! Commands print what they did on stdout and one `error: …` line per problem on stderr, and exit
//! non-zero on any problem. Commands other than `serve` and `check` open the database themselves,
//! so they need the server stopped (sled allows one process at a time); they say so when it runs.

use std::io::{BufRead, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use secrecy::{ExposeSecret as _, SecretString};

use crate::audit::{Actor, AuditAction, AuditEvent};
use crate::config::{self, Config};
use crate::context::AppContext;
use crate::ingest::{self, ImportFormat, ImportState};
use crate::store::OpenMode;
use crate::tenants;
use crate::users::{self, Email, NewUser, Role, UserRef};

/// Rapport — a self-hosted customer-conversation intelligence appliance.
#[derive(Parser)]
#[command(name = "rapport", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
pub(crate) struct ConfigArg {
    /// Path of the configuration file.
    #[arg(long = "config", env = "RAPPORT_CONFIG", default_value = config::DEFAULT_CONFIG_PATH, value_name = "PATH")]
    pub(crate) path: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Create a configuration (if none exists), the data directory (0700), a master key (0600)
    /// and, unless --no-tls, a self-signed TLS certificate. Never overwrites a key.
    Init {
        #[command(flatten)]
        config: ConfigArg,
        /// Data directory to create (database, audit log).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Address and port to serve on.
        #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// Serve plain HTTP (only behind a TLS-terminating proxy on the same machine).
        #[arg(long)]
        no_tls: bool,
    },
    /// Serve the web console.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Check configuration, master key, database and TLS files; one line per problem.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage console users.
    #[command(subcommand)]
    User(UserCommand),
    /// Inspect the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Manage a tenant's API keys.
    #[command(subcommand)]
    Apikey(ApikeyCommand),
    /// Import a file into a tenant. Nothing is written unless every record is valid (or
    /// --skip-invalid is given); re-importing the same source ids updates instead of duplicating.
    Import {
        #[command(flatten)]
        config: ConfigArg,
        /// The tenant (slug) to import into.
        #[arg(long, value_name = "SLUG")]
        tenant: String,
        /// The file's format.
        #[arg(long, value_enum)]
        format: ImportFormat,
        /// Import the valid records and report each rejected one, instead of importing nothing.
        #[arg(long)]
        skip_invalid: bool,
        /// The file to import.
        file: PathBuf,
    },
    /// Measure performance on a throw-away instance and print the figures.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Find personal data in text.
    #[command(subcommand)]
    Pii(PiiCommand),
    /// Classify a labelled CSV with a tenant's analysis backend; prints a confusion matrix and,
    /// as the last line, one JSON object with `accuracy`, `macro_f1`, `items` and `items_per_second`.
    Eval {
        #[command(flatten)]
        config: ConfigArg,
        /// The tenant (slug) whose backend classifies.
        #[arg(long, value_name = "SLUG")]
        tenant: String,
        /// What the labels are.
        #[arg(long, value_enum)]
        task: crate::inference::TaskKind,
        /// The column holding the text.
        #[arg(long, value_name = "COL")]
        text_column: String,
        /// The column holding the expected label.
        #[arg(long, value_name = "COL")]
        label_column: String,
        /// Comma-separated labels to choose from; default: the label column's distinct values.
        #[arg(long, value_name = "a,b,c", value_delimiter = ',')]
        labels: Option<Vec<String>>,
        /// Classify at most this many rows (the first ones).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// The CSV file (with a header row).
        file: PathBuf,
    },
    /// Queue a tenant's interactions for analysis (summary, sentiment, topics) and, with
    /// --wait, analyse them now with the tenant's backend, printing progress and the queue's
    /// counts. Without --wait the queued jobs run when `rapport serve` next starts. With neither
    /// --all nor --interaction, only the jobs already queued are considered.
    Analyse(AnalyseArgs),
    /// Export every interaction of a tenant in the import schema.
    Export {
        #[command(flatten)]
        config: ConfigArg,
        /// The tenant (slug) to export.
        #[arg(long, value_name = "SLUG")]
        tenant: String,
        /// The export format.
        #[arg(long, value_enum)]
        format: ImportFormat,
        /// Write to this new file (mode 0600) instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// List, approve and revoke the GGUF models the `local` backend may load.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Rotate the master key or a tenant's data key (the server must be stopped).
    #[command(subcommand)]
    Keys(crate::rotation::KeysCommand),
    /// Account health scores.
    #[command(subcommand)]
    Health(HealthCommand),
    /// Reviews: export every review of a tenant with its draft and reply (the console's export
    /// reads at most one page bound of signals).
    #[command(subcommand)]
    Reviews(ReviewsCommand),
    /// Accounts: export every account of a tenant with its health (the console's export holds at
    /// most 5,000).
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Retention: preview or run a tenant's sweep (the server must be stopped).
    #[command(subcommand)]
    Retention(crate::retention::cli::RetentionCommand),
    /// Dashboard aggregates.
    #[command(subcommand)]
    Insights(InsightsCommand),
    /// Imported records: maintenance.
    #[command(subcommand)]
    Records(RecordsCommand),
    /// Data-subject requests: create, list, show and complete (the server must be stopped).
    #[command(subcommand)]
    Dsar(crate::privacy::requests::cli::DsarCommand),
    /// Privacy: erase a data subject, re-apply the erasure ledger (the server must be stopped).
    #[command(subcommand)]
    Privacy(crate::privacy::erase_cli::PrivacyCommand),
    /// Write a sealed, checksummed backup of the whole appliance (database, audit log, erasure
    /// ledger): a consistent snapshot, taken through the running server when there is one (its
    /// control socket), else from the stopped database. Never overwrites a file.
    Backup(crate::backup::cli::BackupArgs),
    /// Restore a backup into a new, empty data directory: verify its checksum and key, load it,
    /// verify the audit chain, and re-apply the erasure ledger so no erased subject comes back.
    /// The running server is not touched; point `storage.data_dir` at the result to use it.
    Restore(crate::backup::cli::RestoreArgs),
}

#[derive(Subcommand)]
enum RecordsCommand {
    /// File every record of a tenant in the reference index again (after an upgrade from a
    /// version without it, or to repair it); prints progress. Idempotent.
    Reindex {
        #[command(flatten)]
        config: ConfigArg,
        /// The tenant (slug).
        #[arg(long, value_name = "SLUG")]
        tenant: String,
    },
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// Write every account of a tenant, oldest first, with its latest health score, band and
    /// explanation, as CSV (the console export's columns). Audited as `account.exported`.
    Export {
        #[command(flatten)]
        config: ConfigArg,
        /// The tenant (slug).
        #[arg(long, value_name = "SLUG")]
        tenant: String,
        /// Write to this new file (mode 0600) instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum InsightsCommand {
    /// Rebuild a tenant's dashboard aggregates from its data (after an upgrade, or to repair
    /// them); prints progress.
    Rebuild {
        #[command(flatten)]
        config: ConfigArg,
        /// The tenant (slug).
        #[arg(long, value_name = "SLUG")]
        tenant: String,
    },
}

#[derive(Subcommand)]
enum ReviewsCommand {
    /// Write every review of a tenant that passes the filters, newest first, with its status,
    /// analyses, draft and reply, as CSV or JSON (the console export's columns). Audited as
    /// `review.exported`.
    Export {
        #[command(flatten)]
        config: ConfigArg,
        /// The tenant (slug).
        #[arg(long, value_name = "SLUG")]
        tenant: String,
        /// The file format.
        #[arg(long, value_enum)]
        format: ReviewExportFormat,
        /// Write to this new file (mode 0600) instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Only reviews from this source or platform.
        #[arg(long, default_value = "")]
        source: String,
        /// Only reviews with this rating (1 to 5).
        #[arg(long, default_value = "")]
        rating: String,
        /// Only reviews of this location.
        #[arg(long, default_value = "")]
        location: String,
        /// Only reviews with this status (new, drafted, replied, ignored).
        #[arg(long, default_value = "")]
        status: String,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReviewExportFormat {
    Csv,
    Json,
}

#[derive(Subcommand)]
enum HealthCommand {
    /// Compute and store today's health snapshot of every account of a tenant (or one), and
    /// evaluate the churn-risk rules; prints progress.
    Recompute {
        #[command(flatten)]
        config: ConfigArg,
        /// The tenant (slug).
        #[arg(long, value_name = "SLUG")]
        tenant: String,
        /// Only this account (its id).
        #[arg(long, value_name = "ID")]
        account: Option<crate::ids::RecordId>,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// List every GGUF file in the model directories: its metadata, sha256, whether it is
    /// approved, and the tenants using it.
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Approve one exact model file (by digest) for loading, after reading its header.
    Approve {
        #[command(flatten)]
        config: ConfigArg,
        /// The sha256 of a file in one of the model directories.
        #[arg(
            long,
            value_name = "HEX",
            required_unless_present = "file",
            conflicts_with = "file"
        )]
        sha256: Option<String>,
        /// A model file anywhere; its digest is approved.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
    /// Revoke a model's approval; it is no longer loaded. The default model cannot be revoked.
    Revoke {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, value_name = "HEX")]
        sha256: String,
        /// Revoke it even though tenants use it (their local analysis then fails until a tenant
        /// admin chooses another model).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args)]
struct AnalyseArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The tenant (slug) whose interactions are analysed.
    #[arg(long, value_name = "SLUG")]
    tenant: String,
    /// Queue every interaction not yet analysed (or queued) at its current version.
    #[arg(long, conflicts_with = "interaction")]
    all: bool,
    /// Queue this interaction (by Rapport id), even when its current version was analysed.
    #[arg(long, value_name = "ID")]
    interaction: Option<crate::ids::RecordId>,
    /// Run the tenant's queued jobs in the foreground until none is left.
    #[arg(long)]
    wait: bool,
    /// Cancel the tenant's queued jobs (they are listed as failed, `cancelled`; running ones
    /// finish).
    #[arg(long, conflicts_with_all = ["all", "interaction", "wait"])]
    cancel: bool,
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant with its own keys.
    Create {
        #[command(flatten)]
        config: ConfigArg,
        /// Short name used in URLs: 2–40 lower-case letters, digits and dashes.
        #[arg(long)]
        slug: String,
        /// Display name of the organisation.
        #[arg(long)]
        name: String,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Offboard a tenant: export everything to a new directory, then lock it for a wind-down
    /// (default 30 days) after which `rapport serve`'s scheduler destroys its keys and data.
    /// `--cancel` ends a wind-down; `--status` shows where it stands.
    Offboard(crate::offboarding::cli::OffboardArgs),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password is read from the first line of standard input.
    Add {
        #[command(flatten)]
        config: ConfigArg,
        /// The user's e-mail address (their sign-in name).
        #[arg(long)]
        email: String,
        /// One of operator, tenant-admin, analyst, qa-lead, privacy-officer, auditor.
        #[arg(long)]
        role: String,
        /// The tenant (slug) of every role but operator.
        #[arg(long, value_name = "SLUG")]
        tenant: Option<String>,
        /// Read the password from standard input (required: passwords never go on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Make it a one-time password that must be changed at first sign-in.
        #[arg(long)]
        temporary: bool,
    },
    /// List users (all, or one tenant's).
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this tenant's users.
        #[arg(long, value_name = "SLUG")]
        tenant: Option<String>,
    },
    /// Set a user's password from standard input; their sessions end.
    Passwd {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        email: String,
        /// Read the password from standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Make it a one-time password that must be changed at first sign-in.
        #[arg(long)]
        temporary: bool,
    },
    /// Disable a user; their sessions end.
    Disable {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        email: String,
    },
    /// Enable a disabled user again.
    Enable {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        email: String,
    },
    /// Remove a user's second factor (lost authenticator and recovery codes); their sessions end.
    ResetTotp {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Audit-log appends per second from one writer (the baseline) and from several at once,
    /// which share their fsyncs (group commit).
    Audit {
        /// Appends per measurement.
        #[arg(long, default_value_t = 2000)]
        entries: usize,
        /// Concurrent writers of the second measurement (the console benchmark's users).
        #[arg(long, default_value_t = 20)]
        writers: usize,
        /// Directory for the throw-away instance (removed afterwards).
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
    /// Writes per second with no backup running (the baseline) and while backups run back to
    /// back (the ratio), and the backup's and restore's speed.
    Backup {
        /// Interactions imported before measuring.
        #[arg(long, default_value_t = 20_000)]
        interactions: u64,
        /// Single-record writes per measurement.
        #[arg(long, default_value_t = 400)]
        writes: usize,
        /// Directory for the throw-away instance (removed afterwards).
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
    /// Generate a synthetic tenant, import it through the real engine, and report interactions
    /// per second (with a parse-only baseline), peak RSS, database size and search latency.
    Ingest {
        /// Interactions to generate (6 messages of about 600 bytes each, on average).
        #[arg(long, default_value_t = 1_000_000)]
        interactions: u64,
        /// Search queries to time.
        #[arg(long, default_value_t = 1000)]
        queries: usize,
        /// Directory for the throw-away instance and the generated file (removed afterwards).
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
    /// Measure the default model: raw llama.cpp speed, then the analysis pipeline on synthetic
    /// short messages (at several batch widths) and six-message conversations, with peak RSS.
    Analysis {
        /// Short messages to classify per batch width.
        #[arg(long, default_value_t = 500)]
        messages: usize,
        /// Six-message conversations to classify.
        #[arg(long, default_value_t = 100)]
        conversations: usize,
        /// Batch widths to try, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,8,16,32")]
        widths: Vec<usize>,
        /// Inference threads.
        #[arg(long, default_value_t = 2)]
        threads: u32,
    },
    /// Build a kept instance in DIR with one synthetic tenant (`bench`), imported and analysed
    /// with the `off` backend, for benchmarks against a running server
    /// (`scripts/bench-console.sh`). The analyst's password is read from standard input.
    Dataset {
        /// Interactions to generate; accounts are a hundredth of them.
        #[arg(long, default_value_t = 1_000_000)]
        interactions: u64,
        /// A new or empty directory; the instance stays there.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The address the instance's server will listen on.
        #[arg(long, default_value = "127.0.0.1:9443")]
        listen: std::net::SocketAddr,
    },
    /// Import a synthetic tenant, expire about half of it and run the retention sweep while
    /// another thread reads interactions-list pages: deletions per second (with the import rate
    /// as baseline) and page latency idle and during the sweep.
    Retention {
        /// Interactions to generate.
        #[arg(long, default_value_t = 100_000)]
        interactions: u64,
        /// List pages to time, idle and during the sweep (at least).
        #[arg(long, default_value_t = 1000)]
        pages: usize,
        /// Data subjects to look up (everything about each, as a privacy request finds it).
        #[arg(long, default_value_t = 50)]
        subjects: usize,
        /// Directory for the throw-away instance (removed afterwards).
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
    /// The storage engine's floor: sled alone writing an import's keys and then walking and
    /// deleting 7 in 12 records as a sweep does, with none of Rapport's own work; the rates
    /// that `bench ingest` and `bench retention` can reach at most.
    Engine {
        /// Interactions to write.
        #[arg(long, default_value_t = 1_000_000)]
        interactions: u64,
        /// sled's cache, in MiB (Rapport's default is 128).
        #[arg(long, default_value_t = 128)]
        cache_mib: u64,
        /// Directory for the throw-away database (removed afterwards).
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum PiiCommand {
    /// Read JSON lines with a `text` field on standard input and write, per line,
    /// {"findings": [{"type", "start", "end", "confidence"}]} with offsets in characters. A
    /// malformed line gets {"error": "line N: …"} in its place and an error on standard error;
    /// the other lines are still scanned, and the command then exits non-zero.
    Scan {
        #[command(flatten)]
        config: ConfigArg,
        /// Also find the names of this tenant's (slug) contacts. Opens the database, so the
        /// server must be stopped; without it, only the configuration is read.
        #[arg(long, value_name = "SLUG")]
        tenant: Option<String>,
    },
}

#[derive(Subcommand)]
enum ApikeyCommand {
    /// Create an API key; the key is printed once, as the last word of the output.
    Create {
        #[command(flatten)]
        config: ConfigArg,
        /// The tenant (slug) the key belongs to.
        #[arg(long, value_name = "SLUG")]
        tenant: String,
        /// Comma-separated scopes: read, write, privacy (data-subject requests).
        #[arg(long, value_name = "SCOPES")]
        scopes: String,
        /// What uses the key (shown in the console).
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain; exit 0 when intact, non-zero naming the first broken entry.
    Verify {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Delete the expired segments from the start of the log now, as the nightly retention task
    /// does (a tenant's entries after its audit-log period, the appliance's after
    /// `[retention] audit_log_days`). Stop the service first.
    Prune {
        #[command(flatten)]
        config: ConfigArg,
    },
}

/// A command's failure: the message printed after `error: `.
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(error: E) -> Self {
        Self(error.to_string())
    }
}

type Outcome = Result<(), Failure>;

/// Parses the command line and runs the command.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init {
            config,
            data_dir,
            listen,
            no_tls,
        } => init(config.path, data_dir, listen, no_tls),
        Command::Serve { config } => serve(&config.path),
        Command::Check { config } => return check(&config.path),
        Command::Tenant(command) => tenant(command),
        Command::User(command) => user(command),
        Command::Audit(AuditCommand::Verify { config }) => audit_verify(&config.path),
        Command::Audit(AuditCommand::Prune { config }) => audit_prune(&config.path),
        Command::Bench(command) => bench(command),
        Command::Eval {
            config,
            tenant,
            task,
            text_column,
            label_column,
            labels,
            limit,
            file,
        } => eval(
            &config.path,
            &tenant,
            &crate::inference::eval::EvalOptions {
                task,
                text_column,
                label_column,
                labels,
                limit,
                file,
            },
        ),
        Command::Apikey(ApikeyCommand::Create {
            config,
            tenant,
            scopes,
            name,
        }) => apikey_create(&config.path, &tenant, &scopes, &name),
        Command::Pii(PiiCommand::Scan { config, tenant }) => {
            pii_scan(&config.path, tenant.as_deref())
        }
        Command::Import {
            config,
            tenant,
            format,
            skip_invalid,
            file,
        } => import(&config.path, &tenant, format, skip_invalid, &file),
        Command::Analyse(args) => analyse(&args),
        // Only Rapport's own schema can be written; the other formats are read-only.
        Command::Export { format, .. } if format != ImportFormat::Jsonl => Err(Failure(format!(
            "export writes only the jsonl format, not {}",
            format.as_str()
        ))),
        Command::Export {
            config,
            tenant,
            format: _,
            out,
        } => export(&config.path, &tenant, out.as_deref()),
        Command::Model(command) => model(command),
        Command::Keys(command) => crate::rotation::run(command).map_err(Failure),
        Command::Health(command) => health(command),
        Command::Reviews(command) => reviews(command),
        Command::Accounts(AccountsCommand::Export {
            config,
            tenant,
            out,
        }) => accounts_export(&config.path, &tenant, out.as_deref()),
        Command::Retention(command) => crate::retention::cli::run(command).map_err(Failure),
        Command::Insights(InsightsCommand::Rebuild { config, tenant }) => {
            insights_rebuild(&config.path, &tenant)
        }
        Command::Records(RecordsCommand::Reindex { config, tenant }) => {
            records_reindex(&config.path, &tenant)
        }
        Command::Dsar(command) => crate::privacy::requests::cli::run(command).map_err(Failure),
        Command::Privacy(command) => crate::privacy::erase_cli::run(command).map_err(Failure),
        Command::Backup(args) => crate::backup::cli::backup(&args).map_err(Failure),
        Command::Restore(args) => crate::backup::cli::restore(&args).map_err(Failure),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `rapport bench …`: each benchmark makes its own throw-away instance.
fn bench(command: BenchCommand) -> Outcome {
    match command {
        BenchCommand::Audit {
            entries,
            writers,
            dir,
        } => {
            crate::telemetry::init_for_command();
            crate::bench::audit(&crate::bench::AuditBench {
                entries,
                writers,
                dir,
            })
            .map_err(Failure::from)
        }
        BenchCommand::Backup {
            interactions,
            writes,
            dir,
        } => {
            crate::telemetry::init_for_command();
            crate::bench::backup(&crate::bench::BackupBench {
                interactions,
                writes,
                dir,
            })
            .map_err(Failure::from)
        }
        BenchCommand::Ingest {
            interactions,
            queries,
            dir,
        } => {
            crate::telemetry::init_for_command();
            crate::bench::ingest(&crate::bench::IngestBench {
                interactions,
                queries,
                dir,
            })
            .map_err(Failure::from)
        }
        BenchCommand::Analysis {
            messages,
            conversations,
            widths,
            threads,
        } => {
            crate::telemetry::init_for_command();
            crate::inference::bench::analysis(&crate::inference::bench::AnalysisBench {
                messages,
                conversations,
                widths,
                threads,
            })
            .map_err(Failure::from)
        }
        BenchCommand::Dataset {
            interactions,
            dir,
            listen,
        } => {
            crate::telemetry::init_for_command();
            let password = read_password()?;
            crate::bench::dataset(&crate::bench::DatasetOptions {
                interactions,
                dir,
                listen,
                password,
            })
            .map_err(Failure::from)
        }
        BenchCommand::Retention {
            interactions,
            pages,
            subjects,
            dir,
        } => {
            crate::telemetry::init_for_command();
            crate::bench::retention(&crate::bench::RetentionBench {
                interactions,
                pages,
                subjects,
                dir,
            })
            .map_err(Failure::from)
        }
        BenchCommand::Engine {
            interactions,
            cache_mib,
            dir,
        } => {
            crate::telemetry::init_for_command();
            crate::bench::engine(&crate::bench::EngineBench {
                interactions,
                cache_mib,
                dir,
            })
            .map_err(Failure::from)
        }
    }
}

fn open(config_path: &Path) -> Result<AppContext, Failure> {
    crate::telemetry::init_for_command();
    let config = Config::load(config_path)?;
    Ok(AppContext::open(config, OpenMode::ExistingOnly)?)
}

fn init(config_path: PathBuf, data_dir: PathBuf, listen: SocketAddr, no_tls: bool) -> Outcome {
    crate::telemetry::init_for_command();
    let lines = crate::init::run(&crate::init::InitOptions {
        config_path,
        data_dir,
        listen,
        tls: !no_tls,
    })?;
    println!("Created:");
    for line in lines {
        println!("  {line}");
    }
    if no_tls {
        println!(
            "Warning: plain HTTP; serve it only behind a TLS-terminating proxy on this machine."
        );
    }
    Ok(())
}

fn serve(config_path: &Path) -> Outcome {
    let config = Config::load(config_path)?;
    crate::telemetry::init(&config.log);
    if let Some(tls) = &config.server.tls {
        crate::web::tls::server_config(tls)?;
    }
    // A bad metrics token file stops the start before the database is opened, like bad TLS files.
    crate::metrics::Metrics::from_config(&config.metrics)?;
    let listen = config.server.listen;
    let tls = config.server.tls.is_some();
    let context = AppContext::open(config, OpenMode::ExistingOnly)?;
    let listener = TcpListener::bind(listen)
        .map_err(|error| Failure(format!("cannot listen on {listen}: {error}")))?;
    if !tls {
        tracing::warn!("serving plain HTTP without TLS; use this only behind a TLS-terminating proxy on this machine");
    }
    let scheme = if tls { "https" } else { "http" };
    tracing::info!(address = %format!("{scheme}://{listen}"), "rapport is listening");
    let context = actix_web::web::Data::new(context);
    // The analysis worker is a thread of its own, outside the async runtime: it blocks on the
    // store and on the inference thread.
    let worker = crate::analysis::worker::spawn(context.clone().into_inner())
        .map_err(|error| Failure(format!("cannot start the analysis worker: {error}")))?;
    // The CRM webhook's deliveries, likewise a thread of its own (blocking HTTP client).
    let deliveries = crate::leads::webhook::spawn(
        context.clone().into_inner(),
        crate::leads::webhook::Schedule::default(),
    )
    .map_err(|error| Failure(format!("cannot start the CRM delivery thread: {error}")))?;
    // The scheduler (retention's nightly sweep), a thread of its own for the same reason.
    let retention_schedule = crate::scheduler::Schedule::parse(&context.config.retention.schedule)
        .map_err(|message| Failure(format!("retention.schedule: {message}")))?;
    let scheduler = crate::scheduler::spawn(
        context.clone().into_inner(),
        vec![
            crate::scheduler::Task {
                name: "retention",
                schedule: retention_schedule,
                work: Box::new(crate::retention::run_all_tenants),
            },
            crate::scheduler::Task {
                name: "offboarding",
                schedule: crate::offboarding::purge_schedule().map_err(Failure)?,
                work: Box::new(crate::offboarding::run_scheduled),
            },
            crate::scheduler::Task {
                name: "privacy-requests",
                schedule: crate::scheduler::Schedule::parse(
                    crate::privacy::requests::reminders::SCHEDULE,
                )
                .map_err(Failure)?,
                work: Box::new(crate::privacy::requests::reminders::run_all_tenants),
            },
        ]
        .into_iter()
        .chain(backup_task(&context.config)?)
        .collect(),
    )
    .map_err(|error| Failure(format!("cannot start the scheduler: {error}")))?;
    // `rapport backup` reaches this server through its control socket.
    crate::backup::scheduled::note_existing(&context);
    let control = crate::backup::control::spawn(context.clone().into_inner())
        .map_err(|error| Failure(format!("cannot open the control socket: {error}")))?;
    let served = actix_web::rt::System::new().block_on(async move {
        let server = crate::web::serve(context.clone(), listener)?;
        let watched = context.clone();
        actix_web::rt::spawn(purge_sessions_periodically(context));
        // The server runs as a task of its own and is polled once (the yield) before READY=1: its
        // first poll starts the workers and takes over SIGTERM, which until then would kill the
        // process outright instead of stopping it gracefully.
        let running = actix_web::rt::spawn(server);
        tokio::task::yield_now().await;
        notify_systemd(&[sd_notify::NotifyState::Ready]);
        let watchdog = start_watchdog(&watched)?;
        let result = match running.await {
            Ok(result) => result.map_err(Failure::from),
            Err(error) => Err(Failure(format!("the web server stopped: {error}"))),
        };
        notify_systemd(&[sd_notify::NotifyState::Stopping]);
        if let Some(watchdog) = watchdog {
            watchdog.stop();
        }
        result
    });
    // The server has stopped (a signal): stop taking jobs, and give the batch in hand a moment.
    worker.stop(ANALYSIS_STOP_PATIENCE);
    deliveries.stop(ANALYSIS_STOP_PATIENCE);
    scheduler.stop(ANALYSIS_STOP_PATIENCE);
    control.stop();
    served
}

/// The scheduled backup, unless `[backup] schedule` is empty.
fn backup_task(config: &Config) -> Result<Option<crate::scheduler::Task>, Failure> {
    if config.backup.schedule.trim().is_empty() {
        return Ok(None);
    }
    let schedule = crate::scheduler::Schedule::parse(&config.backup.schedule)
        .map_err(|message| Failure(format!("backup.schedule: {message}")))?;
    Ok(Some(crate::scheduler::Task {
        name: "backup",
        schedule,
        work: Box::new(crate::backup::scheduled::run),
    }))
}

/// Tells systemd (`Type=notify`) how the service is doing. The database is open, the keys are
/// loaded and the port is bound before READY=1 is sent, so a unit ordered after rapport.service
/// finds it serving. Without `$NOTIFY_SOCKET` (not started by systemd) this does nothing.
fn notify_systemd(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "could not notify systemd");
    }
}

/// Starts the watchdog thread when systemd asks for one (`WatchdogSec=` in the unit): it pings
/// only while the store still commits (see [`crate::watchdog`]).
fn start_watchdog(
    context: &actix_web::web::Data<AppContext>,
) -> Result<Option<crate::watchdog::Watchdog>, Failure> {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return Ok(None);
    };
    tracing::info!(
        period_seconds = period.as_secs(),
        "systemd watchdog: the store is probed every half period"
    );
    let store = context.clone().into_inner();
    crate::watchdog::spawn(
        period,
        move || store.store.heartbeat().map_err(|error| error.to_string()),
        || notify_systemd(&[sd_notify::NotifyState::Watchdog]),
    )
    .map(Some)
    .map_err(|error| Failure(format!("cannot start the watchdog thread: {error}")))
}

/// How long a stopping server waits for the analysis batch in hand; a batch cut off is
/// re-queued at the next start.
const ANALYSIS_STOP_PATIENCE: Duration = Duration::from_secs(10);

/// Expired sessions are removed every ten minutes (the scheduler will own this later).
async fn purge_sessions_periodically(context: actix_web::web::Data<AppContext>) {
    let mut interval = actix_web::rt::time::interval(Duration::from_secs(600));
    loop {
        interval.tick().await;
        let purge_context = context.clone();
        let purged = actix_web::web::block(move || {
            purge_context
                .sessions
                .purge_expired(purge_context.lifetimes)
        })
        .await;
        match purged {
            Ok(Ok(count)) if count > 0 => tracing::info!(count, "expired sessions removed"),
            Ok(Err(error)) => tracing::warn!(%error, "could not remove expired sessions"),
            _ => {}
        }
    }
}

fn check(config_path: &Path) -> ExitCode {
    crate::telemetry::init_for_command();
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    match Config::load(config_path) {
        Err(error) => problems.push(error.to_string()),
        Ok(config) => {
            notes.push(format!("configuration {} is valid", config_path.display()));
            match crate::store::MasterKey::load(&config.storage.master_key_file) {
                Err(error) => problems.push(error.to_string()),
                Ok(_) => notes.push(format!(
                    "master key {} is readable and 32 bytes",
                    config.storage.master_key_file.display()
                )),
            }
            match &config.server.tls {
                Some(tls) => match crate::web::tls::server_config(tls) {
                    Ok(_) => notes.push(format!(
                        "TLS certificate {} and key load",
                        tls.cert.display()
                    )),
                    Err(error) => problems.push(error.to_string()),
                },
                None => {
                    notes.push("TLS is off: plain HTTP (only behind a local TLS proxy)".to_owned());
                }
            }
            if config.metrics.enabled {
                match crate::metrics::Metrics::from_config(&config.metrics) {
                    Ok(_) => notes.push("metrics are on and the token file is usable".to_owned()),
                    Err(error) => problems.push(error.to_string()),
                }
            }
            match crate::mail::check(config.smtp.as_ref()) {
                Ok(note) => notes.push(note),
                Err(problem) => problems.push(problem),
            }
            match crate::cpu::kernels_note() {
                Ok(note) => notes.push(note),
                Err(problem) => problems.push(problem),
            }
            if problems.is_empty() {
                match AppContext::open(config, OpenMode::ExistingOnly) {
                    Ok(context) => {
                        notes.push("database opens and the master key unseals it".to_owned());
                        match context.audit_log.verify() {
                            Ok(report) => {
                                notes
                                    .push(format!("audit log intact ({} entries)", report.entries));
                            }
                            Err(error) => problems.push(error.to_string()),
                        }
                    }
                    Err(crate::context::ContextError::Store(crate::store::StoreError::Locked(
                        dir,
                    ))) => notes.push(format!(
                        "database in {} is open in a running server; not checked further",
                        dir.display()
                    )),
                    Err(error) => problems.push(error.to_string()),
                }
            }
        }
    }
    for note in &notes {
        println!("ok: {note}");
    }
    for problem in &problems {
        eprintln!("error: {problem}");
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn tenant(command: TenantCommand) -> Outcome {
    match command {
        TenantCommand::Create { config, slug, name } => {
            let context = open(&config.path)?;
            let tenant = tenants::create_tenant(&context, Actor::cli(), None, &slug, &name)?;
            println!(
                "created tenant {} ({}) id {}",
                tenant.slug, tenant.name, tenant.id
            );
        }
        TenantCommand::List { config } => {
            let context = open(&config.path)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{:<24} {:<28} {:<20} NAME", "SLUG", "ID", "CREATED")?;
            for tenant in context.tenants.list()? {
                writeln!(
                    out,
                    "{:<24} {:<28} {:<20} {}",
                    tenant.slug,
                    tenant.id,
                    tenant.created.format("%Y-%m-%d %H:%M"),
                    tenant.name
                )?;
            }
        }
        TenantCommand::Offboard(args) => crate::offboarding::cli::run(args).map_err(Failure)?,
    }
    Ok(())
}

fn read_password() -> Result<SecretString, Failure> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|error| {
            Failure(format!(
                "cannot read the password from standard input: {error}"
            ))
        })?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        return Err(Failure("no password on standard input".to_owned()));
    }
    Ok(SecretString::from(password))
}

fn find_user(context: &AppContext, email: &str) -> Result<UserRef, Failure> {
    let email = Email::parse(email)?;
    context
        .users
        .find_by_email(&email)?
        .map(|user| user.reference())
        .ok_or_else(|| Failure("no user with that e-mail address".to_owned()))
}

fn user(command: UserCommand) -> Outcome {
    match command {
        UserCommand::Add {
            config,
            email,
            role,
            tenant,
            password_stdin: _,
            temporary,
        } => user_add(&config.path, &email, &role, tenant.as_deref(), temporary)?,
        UserCommand::List { config, tenant } => user_list(&config.path, tenant.as_deref())?,
        UserCommand::Passwd {
            config,
            email,
            password_stdin: _,
            temporary,
        } => {
            let password = read_password()?;
            users::validate_password(&password)?;
            let context = open(&config.path)?;
            let user = find_user(&context, &email)?;
            users::reset_password(&context, Actor::cli(), user, &password, temporary)?;
            println!("password changed; the user's sessions have ended");
        }
        UserCommand::Disable { config, email } => {
            let context = open(&config.path)?;
            let user = find_user(&context, &email)?;
            users::set_disabled(&context, Actor::cli(), None, user, true)?;
            println!("user disabled; their sessions have ended");
        }
        UserCommand::Enable { config, email } => {
            let context = open(&config.path)?;
            let user = find_user(&context, &email)?;
            users::set_disabled(&context, Actor::cli(), None, user, false)?;
            println!("user enabled");
        }
        UserCommand::ResetTotp { config, email } => {
            let context = open(&config.path)?;
            let user = find_user(&context, &email)?;
            users::reset_second_factor(&context, Actor::cli(), None, user)?;
            println!("second factor removed; the user's sessions have ended");
        }
    }
    Ok(())
}

fn user_add(
    config: &Path,
    email: &str,
    role: &str,
    tenant: Option<&str>,
    temporary: bool,
) -> Outcome {
    let role: Role = role.parse()?;
    let email = Email::parse(email)?;
    let password = read_password()?;
    users::validate_password(&password)?;
    let context = open(config)?;
    let tenant_id = match tenant {
        Some(slug) => Some(
            context
                .tenants
                .find_by_slug(slug)?
                .ok_or_else(|| Failure(format!("no tenant with slug {slug:?}")))?
                .id,
        ),
        None => None,
    };
    let user = users::create_user(
        &context,
        Actor::cli(),
        None,
        NewUser {
            email,
            role,
            tenant: tenant_id,
            password,
            must_change_password: temporary,
        },
    )?;
    println!("added {} ({}) id {}", user.email, user.role, user.id);
    Ok(())
}

fn user_list(config: &Path, tenant: Option<&str>) -> Outcome {
    let context = open(config)?;
    let tenants = context.tenants.list()?;
    let selected: Vec<Option<&crate::tenants::Tenant>> = match &tenant {
        Some(slug) => vec![Some(
            tenants
                .iter()
                .find(|t| t.slug.as_str() == *slug)
                .ok_or_else(|| Failure(format!("no tenant with slug {slug:?}")))?,
        )],
        None => std::iter::once(None)
            .chain(tenants.iter().map(Some))
            .collect(),
    };
    let mut rows = Vec::new();
    for scope in &selected {
        for user in context.users.list(scope.map(|t| t.id))? {
            rows.push((user, scope.map_or("-", |t| t.slug.as_str())));
        }
    }
    // The read is recorded in each listed scope's log before anything is shown.
    context.audit_all(
        selected
            .iter()
            .map(|scope| {
                AuditEvent::new(
                    scope.map(|t| t.id),
                    Actor::cli(),
                    AuditAction::PersonalDataRead,
                    "user list",
                )
            })
            .collect(),
    )?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<40} {:<16} {:<20} {:<8} ID",
        "E-MAIL", "ROLE", "TENANT", "STATUS"
    )?;
    for (user, slug) in rows {
        let status = if user.disabled { "disabled" } else { "active" };
        writeln!(
            out,
            "{:<40} {:<16} {:<20} {:<8} {}",
            user.email, user.role, slug, status, user.id
        )?;
    }
    Ok(())
}

fn find_tenant(context: &AppContext, slug: &str) -> Result<crate::tenants::Tenant, Failure> {
    context
        .tenants
        .find_by_slug(slug)?
        .ok_or_else(|| Failure(format!("no tenant with slug {slug:?}")))
}

fn import(
    config: &Path,
    slug: &str,
    format: ImportFormat,
    skip_invalid: bool,
    file: &Path,
) -> Outcome {
    let context = open(config)?;
    let tenant = find_tenant(&context, slug)?;
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last_report = std::time::Instant::now();
    let mut progress = |step: ingest::Progress| {
        if interactive && last_report.elapsed() >= Duration::from_millis(500) {
            last_report = std::time::Instant::now();
            let percent = step.bytes.saturating_mul(100) / step.total_bytes.max(1);
            let stage = if step.pass == 1 {
                "checking"
            } else {
                "importing"
            };
            eprint!("\r{stage}: {percent:>3}% ({} records)", step.records);
        }
    };
    let request = ingest::ImportRequest {
        actor: &Actor::cli(),
        tenant: &tenant,
        format,
        path: file,
        skip_invalid,
    };
    let run = ingest::import_file(&context, &request, &mut progress)?;
    if interactive {
        eprint!("\r\x1b[K");
    }
    for rejection in &run.rejections {
        eprintln!("rejected: {rejection}");
    }
    if run.rejected > run.rejections.len() as u64 {
        eprintln!(
            "rejected: … and {} more",
            run.rejected - run.rejections.len() as u64
        );
    }
    println!(
        "imported {}, updated {}, rejected {}",
        run.imported, run.updated, run.rejected
    );
    // Standard output keeps only the counts line, which scripts read.
    let queued = crate::analysis::enqueue_after_import(&context, tenant.id, &run);
    if queued > 0 {
        eprintln!("queued {queued} interaction(s) for analysis");
    }
    match run.state {
        ImportState::Committed => Ok(()),
        ImportState::Refused => Err(Failure(format!(
            "nothing was imported: {} invalid record(s); fix them, or import the valid ones with --skip-invalid",
            run.rejected
        ))),
        state => Err(Failure(format!("the import ended {}", state.as_str()))),
    }
}

fn eval(config: &Path, slug: &str, options: &crate::inference::eval::EvalOptions) -> Outcome {
    let context = open(config)?;
    let tenant = find_tenant(&context, slug)?;
    let backend = crate::inference::open_tenant_backend(&context, &Actor::cli(), &tenant)?;
    let report = crate::inference::eval::run(backend.as_ref(), options)?;
    print!("{}", report.matrix.render());
    println!("backend: {}", report.backend);
    println!(
        "{} items, accuracy {:.3}, macro-F1 {:.3}, {:.2} items/s",
        report.items,
        report.matrix.accuracy(),
        report.matrix.macro_f1(),
        report.items_per_second()
    );
    println!("{}", report.summary(options.task));
    Ok(())
}

fn analyse(args: &AnalyseArgs) -> Outcome {
    use crate::analysis::jobs::Priority;
    let context = open(&args.config.path)?;
    let tenant = find_tenant(&context, &args.tenant)?;
    if args.cancel {
        let cancelled = crate::analysis::cancel_queued(&context, &Actor::cli(), None, tenant.id)?;
        println!("cancelled {cancelled} queued job(s)");
    }
    let requested = if args.all {
        Some((
            crate::analysis::enqueue_all(&context, tenant.id)?,
            "all interactions and reviews".to_owned(),
        ))
    } else if let Some(id) = args.interaction {
        Some((
            crate::analysis::enqueue_interaction(&context, tenant.id, id, Priority::Live, true)?,
            format!("interaction {id}"),
        ))
    } else {
        None
    };
    if let Some((enqueued, target)) = requested {
        context.audit(AuditEvent::new(
            Some(tenant.id),
            Actor::cli(),
            AuditAction::AnalysisRequested,
            target,
        ))?;
        println!(
            "queued {} of {} interaction(s) (and reviews, with --all) for analysis (the others are queued or analysed at their current version)",
            enqueued.queued, enqueued.considered
        );
    }
    if args.wait {
        let mut cache = crate::analysis::worker::BackendCache::default();
        let totals = crate::analysis::worker::run_until_idle(
            &context,
            &mut cache,
            tenant.id,
            &mut |report, counts| {
                let progress = crate::analysis::progress::Progress::new(
                    counts,
                    context.analysis.per_minute(tenant.id),
                );
                let pace = match (progress.per_minute, progress.eta) {
                    (Some(rate), Some(eta)) => format!(
                        ", {rate:.1}/min, about {} left",
                        crate::analysis::progress::describe_duration(eta)
                    ),
                    _ => String::new(),
                };
                eprintln!(
                    "analysed {} (failed {}), {} still queued, {} % of all jobs finished{pace}",
                    report.done,
                    report.failed,
                    counts.queued,
                    progress.percent()
                );
            },
        )?;
        let seconds = totals.elapsed.as_secs_f64();
        #[allow(clippy::cast_precision_loss)] // Job counts are far below 2^52.
        let rate = if seconds > 0.0 {
            totals.done as f64 / seconds
        } else {
            0.0
        };
        println!(
            "analysed {} interaction(s), {} failed attempt(s), in {seconds:.1} s ({rate:.2} interactions/s)",
            totals.done, totals.failed
        );
    }
    let counts = context.analysis.counts(tenant.id)?;
    println!(
        "jobs: queued {}, running {}, done {}, failed {}",
        counts.queued, counts.running, counts.done, counts.failed
    );
    Ok(())
}

fn export(config: &Path, slug: &str, out: Option<&Path>) -> Outcome {
    let context = open(config)?;
    let tenant = find_tenant(&context, slug)?;
    let mut writer = export_writer(out)?;
    let count = ingest::export_jsonl(&context, &Actor::cli(), &tenant, &mut writer)?;
    eprintln!("exported {count} interaction(s)");
    Ok(())
}

/// A new file with mode 0600 (exports are personal data), or standard output.
fn export_writer(out: Option<&Path>) -> Result<Box<dyn std::io::Write>, Failure> {
    Ok(if let Some(path) = out {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|error| Failure(format!("cannot create {}: {error}", path.display())))?;
        Box::new(std::io::BufWriter::new(file))
    } else {
        Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
    })
}

fn reviews(command: ReviewsCommand) -> Outcome {
    match command {
        ReviewsCommand::Export {
            config,
            tenant,
            format,
            out,
            source,
            rating,
            location,
            status,
        } => reviews_export(
            &config.path,
            &tenant,
            format,
            out.as_deref(),
            [&source, &rating, &location, &status],
        ),
    }
}

/// `rapport reviews export`: every matching review, without the console's scan bound.
fn reviews_export(
    config: &Path,
    slug: &str,
    format: ReviewExportFormat,
    out: Option<&Path>,
    [source, rating, location, status]: [&str; 4],
) -> Outcome {
    let filter = crate::reviews::ReviewFilter::parse(source, rating, location, status, "", "")?;
    let context = open(config)?;
    let tenant = find_tenant(&context, slug)?;
    let format = match format {
        ReviewExportFormat::Csv => crate::reviews::ExportFormat::Csv,
        ReviewExportFormat::Json => crate::reviews::ExportFormat::Json,
    };
    let mut writer = export_writer(out)?;
    let actor = Actor::cli();
    let acting = crate::reviews::Acting {
        actor: &actor,
        client: None,
        tenant: tenant.id,
    };
    let bytes = crate::reviews::export_all(&context, &acting, &filter, format)?;
    writer
        .write_all(&bytes)
        .and_then(|()| writer.flush())
        .map_err(|error| Failure(format!("cannot write the export: {error}")))?;
    Ok(())
}

/// `rapport accounts export`: every account with its health, streamed, without the console's
/// bound.
fn accounts_export(config: &Path, slug: &str, out: Option<&Path>) -> Outcome {
    let context = open(config)?;
    let tenant = find_tenant(&context, slug)?;
    let writer = export_writer(out)?;
    let count = crate::accounts::export::export_all_accounts(
        &context,
        &Actor::cli(),
        tenant.id,
        &format!("/t/{}", tenant.slug),
        writer,
    )?;
    eprintln!("exported {count} account(s)");
    Ok(())
}

fn pii_scan(config_path: &Path, tenant: Option<&str>) -> Outcome {
    let detector = if let Some(slug) = tenant {
        let context = open(config_path)?;
        let tenant = find_tenant(&context, slug)?;
        crate::pii::tenant_detector(&context, &Actor::cli(), &tenant)?
    } else {
        crate::telemetry::init_for_command();
        Config::load(config_path)?;
        crate::pii::Detector::default()
    };
    let mut input = std::io::stdin().lock();
    let mut output = std::io::BufWriter::new(std::io::stdout().lock());
    let report =
        crate::pii::scan::scan_json_lines(&detector, &mut input, &mut output, &mut |error| {
            eprintln!("error: {error}");
        })?;
    if report.failed > 0 {
        return Err(Failure(format!(
            "{} of {} line(s) could not be scanned",
            report.failed,
            report.failed + report.scanned
        )));
    }
    Ok(())
}

fn apikey_create(config: &Path, slug: &str, scopes: &str, name: &str) -> Outcome {
    let scopes = crate::api::keys::ApiScope::parse_list(scopes)?;
    let context = open(config)?;
    let tenant = find_tenant(&context, slug)?;
    let created =
        crate::api::keys::create_key(&context, &Actor::cli(), None, tenant.id, name, scopes)?;
    println!(
        "Created API key {} ({}) for tenant {}. It is shown only now: {}",
        created.key.id,
        created.key.scopes_label(),
        tenant.slug,
        created.secret.expose_secret()
    );
    Ok(())
}

fn audit_verify(config_path: &Path) -> Outcome {
    let context = open(config_path)?;
    let report = context.audit_log.verify()?;
    if report.first > 1 {
        println!(
            "audit log intact: {} entries in {} segment(s), from entry {} (the entries before it were pruned)",
            report.entries, report.segments, report.first
        );
    } else {
        println!(
            "audit log intact: {} entries in {} segment(s)",
            report.entries, report.segments
        );
    }
    Ok(())
}

fn audit_prune(config_path: &Path) -> Outcome {
    let context = open(config_path)?;
    let outcome = crate::retention::audit_log::prune(&context, &Actor::cli(), chrono::Utc::now())?;
    if outcome.rotated {
        println!("the open segment was a week old and is closed; the next entry starts a new one");
    }
    match outcome.pruned.first_kept {
        Some(first) => println!(
            "pruned {} entries in {} segment(s); the log now starts at entry {first}",
            outcome.pruned.entries, outcome.pruned.segments
        ),
        None => println!("nothing to prune: no closed segment holds only expired entries"),
    }
    Ok(())
}

fn model(command: ModelCommand) -> Outcome {
    use crate::inference::catalogue::{self, DigestCache};
    match command {
        ModelCommand::List { config } => {
            let context = open(&config.path)?;
            let listed = catalogue::catalogue(&context, &DigestCache::default())?;
            model_table(&listed)?;
        }
        ModelCommand::Approve {
            config,
            sha256,
            file,
        } => {
            let context = open(&config.path)?;
            let approved = match (file, sha256) {
                (Some(file), _) => catalogue::approve_file(&context, &Actor::cli(), None, &file)?,
                (None, Some(sha256)) => catalogue::approve_digest(
                    &context,
                    &Actor::cli(),
                    None,
                    &DigestCache::default(),
                    &sha256,
                )?,
                (None, None) => return Err(Failure("give --sha256 or --file".to_owned())),
            };
            if approved.newly {
                println!(
                    "approved model sha256 {} ({})",
                    approved.sha256,
                    approved.path.display()
                );
            } else {
                println!(
                    "model sha256 {} ({}) was already approved",
                    approved.sha256,
                    approved.path.display()
                );
            }
        }
        ModelCommand::Revoke {
            config,
            sha256,
            force,
        } => {
            let context = open(&config.path)?;
            let revoked = catalogue::revoke(&context, &Actor::cli(), None, &sha256, force)?;
            println!(
                "revoked model sha256 {} ({}); it is no longer loaded",
                revoked.approval.sha256, revoked.approval.file_name
            );
            if !revoked.tenants.is_empty() {
                let slugs: Vec<&str> = revoked
                    .tenants
                    .iter()
                    .map(|tenant| tenant.slug.as_str())
                    .collect();
                eprintln!(
                    "warning: tenant(s) {} used it; their local analysis fails until a tenant admin chooses another model",
                    slugs.join(", ")
                );
            }
        }
    }
    Ok(())
}

/// Header strings (and file names) are untrusted: control characters would rewrite the terminal.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Prints the catalogue: one line per file, then a line per file whose header could not be read,
/// and the approved digests whose file was not found.
fn model_table(listed: &crate::inference::catalogue::Catalogue) -> Outcome {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<36} {:<40} {:<12} {:>9} {:<8} {:>8} {:>10} {:<64} {:<12} TENANTS",
        "FILE", "DIR", "ARCH", "PARAMS", "QUANT", "CONTEXT", "SIZE", "SHA256", "APPROVED"
    )?;
    for entry in &listed.models {
        let architecture = printable(&entry.architecture());
        writeln!(
            out,
            "{:<36} {:<40} {:<12} {:>9} {:<8} {:>8} {:>10} {:<64} {:<12} {}",
            printable(&entry.file_name),
            entry.directory.display(),
            if entry.header.is_some() {
                architecture
            } else {
                "-".to_owned()
            },
            entry.parameters(),
            entry.quantisation(),
            entry.context_length(),
            entry.size(),
            if entry.sha256.is_some() {
                entry.sha256_text()
            } else {
                "-"
            },
            entry.approval.label(),
            if entry.tenants.is_empty() {
                "-".to_owned()
            } else {
                entry.tenant_slugs()
            }
        )?;
    }
    for entry in &listed.models {
        if let Some(problem) = &entry.problem {
            writeln!(out, "unreadable: {}", printable(problem))?;
        }
        if !entry.same_digest_elsewhere.is_empty() {
            let others: Vec<String> = entry
                .same_digest_elsewhere
                .iter()
                .map(|path| path.display().to_string())
                .collect();
            writeln!(
                out,
                "same sha256: {} is also at {}",
                entry.path.display(),
                others.join(", ")
            )?;
        }
    }
    for approval in &listed.approved_not_found {
        writeln!(
            out,
            "approved but not installed: sha256 {} ({})",
            approval.sha256, approval.file_name
        )?;
    }
    if listed.models.is_empty() {
        let searched: Vec<String> = listed
            .directories
            .iter()
            .map(|path| path.display().to_string())
            .collect();
        writeln!(out, "no .gguf files in {}", searched.join(", "))?;
    }
    Ok(())
}

fn health(command: HealthCommand) -> Outcome {
    match command {
        HealthCommand::Recompute {
            config,
            tenant,
            account,
        } => health_recompute(&config.path, &tenant, account),
    }
}

/// `rapport health recompute`: every account of the tenant, oldest first, or the one given.
fn health_recompute(config: &Path, slug: &str, account: Option<crate::ids::RecordId>) -> Outcome {
    let context = open(config)?;
    let tenant = find_tenant(&context, slug)?;
    let accounts = if let Some(id) = account {
        vec![id]
    } else {
        let mut ids = Vec::new();
        context.accounts.for_each(tenant.id, |account| {
            ids.push(account.id);
            Ok(())
        })?;
        ids
    };
    let total = accounts.len();
    let mut scored = 0;
    for (done, id) in accounts.into_iter().enumerate() {
        match crate::health::recompute(&context, tenant.id, id)? {
            Some(snapshot) => {
                if snapshot.score.is_some() {
                    scored += 1;
                }
            }
            None => return Err(Failure(format!("there is no account {id} in this tenant"))),
        }
        if (done + 1) % 100 == 0 || done + 1 == total {
            println!("recomputed {} of {total} account(s)", done + 1);
        }
    }
    println!("{scored} of {total} account(s) have a score");
    Ok(())
}

/// `rapport records reindex`: every record of the tenant filed in the reference index again,
/// audited.
fn records_reindex(config: &Path, slug: &str) -> Outcome {
    let context = open(config)?;
    let tenant = find_tenant(&context, slug)?;
    let report = |kind: &'static str| {
        move |done: usize| {
            if done % 10_000 == 0 {
                println!("{done} {kind}(s) filed");
            }
        }
    };
    let interactions = context
        .interactions
        .reindex_references(tenant.id, report("interaction"))?;
    let accounts = context
        .accounts
        .reindex_references(tenant.id, report("account"))?;
    let contacts = context
        .contacts
        .reindex_references(tenant.id, report("contact"))?;
    let signals = context
        .signals
        .reindex_references(tenant.id, report("signal"))?;
    context.audit(AuditEvent::new(
        Some(tenant.id),
        Actor::cli(),
        AuditAction::RecordsReindexed,
        format!(
            "reference index rebuilt: {interactions} interaction(s), {accounts} account(s), \
             {contacts} contact(s), {signals} signal(s)"
        ),
    ))?;
    println!(
        "reindexed the records of {slug}: {interactions} interaction(s), {accounts} account(s), \
         {contacts} contact(s), {signals} signal(s)"
    );
    Ok(())
}

/// `rapport insights rebuild`: the tenant's dashboard aggregates from scratch, audited.
fn insights_rebuild(config: &Path, slug: &str) -> Outcome {
    let context = open(config)?;
    let tenant = find_tenant(&context, slug)?;
    let done = crate::insights::rebuild(&context, tenant.id, &mut |progress| {
        println!(
            "{} account(s), {} interaction(s), {} signal(s) counted",
            progress.accounts, progress.interactions, progress.signals
        );
    })?;
    context.audit(AuditEvent::new(
        Some(tenant.id),
        Actor::cli(),
        AuditAction::InsightsRebuilt,
        format!(
            "dashboard aggregates rebuilt: {} account(s), {} interaction(s), {} signal(s)",
            done.accounts, done.interactions, done.signals
        ),
    ))?;
    println!("rebuilt the dashboard aggregates of {slug}");
    Ok(())
}
