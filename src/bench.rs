//! `rapport bench …`: measurements that print figures for the team's notes, run against a
//! throw-away instance. Speed is compared with a baseline taken in the same run, because shared
//! machines drift.
//!
//! `bench ingest` generates a synthetic tenant (interactions of 2–10 messages, about 600 bytes of
//! text each, over a skewed vocabulary of support words, with accounts and contacts), imports it
//! through the real engine (validation, sealing, journal, search index), and reports
//! interactions per second, the parse-only rate of the same file as baseline, peak RSS, database
//! size, and search latency percentiles.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

mod audit;
mod backup;
mod dataset;
mod engine;

pub use audit::{audit, AuditBench};
pub use backup::{backup, BackupBench};
pub use dataset::{dataset, DatasetOptions};
pub use engine::{engine, EngineBench};

use crate::audit::Actor;
use crate::config::Config;
use crate::context::AppContext;
use crate::ingest::{self, ImportFormat, ImportRequest, ImportState};
use crate::search::SearchIndex;
use crate::store::OpenMode;

const BASE_WORDS: &[&str] = &[
    "account",
    "invoice",
    "payment",
    "card",
    "declined",
    "refund",
    "order",
    "parcel",
    "delivery",
    "tracking",
    "password",
    "login",
    "reset",
    "error",
    "export",
    "report",
    "dashboard",
    "plan",
    "upgrade",
    "seat",
    "license",
    "renewal",
    "contract",
    "price",
    "discount",
    "billing",
    "address",
    "email",
    "phone",
    "app",
    "mobile",
    "browser",
    "slow",
    "crash",
    "bug",
    "feature",
    "request",
    "integration",
    "api",
    "webhook",
    "sync",
    "calendar",
    "team",
    "admin",
    "permission",
    "role",
    "access",
    "security",
    "data",
    "backup",
    "thanks",
    "please",
    "help",
    "urgent",
    "again",
    "still",
    "today",
    "yesterday",
    "week",
    "month",
    "customer",
    "support",
    "agent",
    "ticket",
    "issue",
    "problem",
    "question",
    "update",
    "status",
    "waiting",
    "shipping",
    "warehouse",
    "return",
    "label",
    "damaged",
    "missing",
    "wrong",
    "size",
    "colour",
    "stock",
    "subscription",
    "cancel",
    "trial",
    "onboarding",
    "training",
    "documentation",
    "setting",
    "configuration",
    "notification",
    "message",
    "chat",
    "call",
    "meeting",
    "manager",
    "escalate",
    "priority",
    "resolved",
    "great",
    "happy",
    "frustrated",
    "disappointed",
    "quickly",
    "soon",
    "confirm",
    "check",
    "understand",
];

/// A skewed vocabulary: the base words plus a long tail, drawn with a Zipf-like law.
struct Vocabulary {
    words: Vec<String>,
}

impl Vocabulary {
    fn new() -> Self {
        let mut words: Vec<String> = BASE_WORDS.iter().map(|w| (*w).to_owned()).collect();
        for index in 0..4000 {
            words.push(format!("term{index}"));
        }
        Self { words }
    }

    fn pick(&self, rng: &mut StdRng) -> &str {
        // Squaring a uniform draw favours low ranks: a cheap stand-in for Zipf's law.
        let draw: f64 = rng.gen::<f64>();
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        // The product lies in [0, len).
        let index = ((draw * draw * draw) * self.words.len() as f64) as usize;
        &self.words[index.min(self.words.len() - 1)]
    }

    fn text(&self, rng: &mut StdRng, bytes: usize) -> String {
        let mut text = String::with_capacity(bytes + 16);
        while text.len() < bytes {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(self.pick(rng));
        }
        text
    }
}

/// Writes `count` interactions in the `jsonl` schema; returns the file's size.
fn generate(
    path: &Path,
    count: u64,
    rng: &mut StdRng,
    vocabulary: &Vocabulary,
) -> std::io::Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let channels = ["ticket", "chat", "email", "call", "sales-chat"];
    for index in 0..count {
        let messages: usize = rng.gen_range(2..=10);
        let contact = rng.gen_range(0..count.div_ceil(10).max(1));
        let account = contact / 10;
        let mut list = Vec::with_capacity(messages);
        for position in 0..messages {
            let customer = position % 2 == 0;
            let mut message = serde_json::json!({
                "role": if customer { "customer" } else { "agent" },
                "sent_at": format!("2026-{:02}-{:02}T{:02}:{:02}:00Z", 1 + index % 12, 1 + index % 28, position % 24, index % 60),
                "text": vocabulary.text(rng, 600),
            });
            if customer {
                message["author_name"] = serde_json::json!(format!("Contact {contact}"));
                message["author_email"] =
                    serde_json::json!(format!("contact{contact}@account{account}.example"));
            }
            list.push(message);
        }
        let record = serde_json::json!({
            "source_system": "bench",
            "source_id": format!("I-{index}"),
            "channel": channels[usize::try_from(index % 5).unwrap_or(0)],
            "subject": vocabulary.text(rng, 40),
            "status": if index % 3 == 0 { "open" } else { "solved" },
            "account": format!("account{account}.example"),
            "tags": [vocabulary.pick(rng)],
            "messages": list,
        });
        serde_json::to_writer(&mut out, &record)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(out.get_ref().metadata()?.len())
}

/// The process's peak resident memory so far (`VmHWM`), in MiB; 0 where it cannot be read.
pub(crate) fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

fn directory_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => directory_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

fn percentile(sorted: &[Duration], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    // An index into a non-empty slice.
    let index = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

/// Times `queries` searches of one or two words drawn from the vocabulary; sorted durations.
fn time_searches(
    context: &AppContext,
    tenant: &crate::tenants::Tenant,
    rng: &mut StdRng,
    vocabulary: &Vocabulary,
    queries: usize,
) -> Result<Vec<Duration>, BenchError> {
    let index = SearchIndex::new(context.store.clone());
    let mut latencies = Vec::with_capacity(queries);
    for _ in 0..queries {
        let query = if rng.gen_bool(0.5) {
            vocabulary.pick(rng).to_owned()
        } else {
            format!("{} {}", vocabulary.pick(rng), vocabulary.pick(rng))
        };
        let started = Instant::now();
        index
            .search(tenant.id, &query, 20)
            .map_err(|error| BenchError::Setup(error.to_string()))?;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    Ok(latencies)
}

/// What `bench ingest` measured.
struct Figures<'a> {
    imported: u64,
    size: u64,
    import_seconds: f64,
    parsed: usize,
    parse_seconds: f64,
    rss_after_import: u64,
    database_bytes: u64,
    latencies: &'a [Duration],
}

/// Prints the figures for people, then as one JSON line for scripts.
#[allow(clippy::cast_precision_loss)] // Figures are printed with a few significant digits.
fn report(figures: &Figures<'_>) {
    let Figures {
        imported,
        size,
        import_seconds,
        parsed,
        parse_seconds,
        rss_after_import,
        database_bytes,
        latencies,
    } = *figures;
    let rate = imported as f64 / import_seconds;
    let parse_rate = parsed as f64 / parse_seconds;
    println!("interactions imported   {imported}");
    println!(
        "file size               {:.1} MiB",
        size as f64 / 1_048_576.0
    );
    println!("import                  {import_seconds:.1} s, {rate:.0} interactions/s (sealing, journal and search index included)");
    println!(
        "baseline: parse only    {parse_rate:.0} interactions/s; import/parse ratio {:.3}",
        rate / parse_rate
    );
    println!(
        "peak RSS                {} MiB (after import: {rss_after_import} MiB)",
        peak_rss_mib()
    );
    println!(
        "data directory on disk  {:.1} MiB",
        database_bytes as f64 / 1_048_576.0
    );
    println!(
        "search ({} queries)    p50 {:.1} ms, p99 {:.1} ms",
        latencies.len(),
        percentile(latencies, 0.5),
        percentile(latencies, 0.99)
    );
    println!(
        "{}",
        serde_json::json!({
            "interactions": imported,
            "import_seconds": import_seconds,
            "interactions_per_second": rate,
            "parse_only_per_second": parse_rate,
            "import_to_parse_ratio": rate / parse_rate,
            "peak_rss_mib": peak_rss_mib(),
            "data_dir_mib": database_bytes as f64 / 1_048_576.0,
            "search_p50_ms": percentile(latencies, 0.5),
            "search_p99_ms": percentile(latencies, 0.99),
        })
    );
}

/// Options of `rapport bench ingest`.
pub struct IngestBench {
    pub interactions: u64,
    pub queries: usize,
    /// Where the throw-away instance and the generated file go (removed afterwards).
    pub dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("benchmark I/O in {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("benchmark set-up: {0}")]
    Setup(String),
}

/// Runs the ingestion benchmark and prints its figures; the last line is one JSON object.
#[allow(clippy::cast_precision_loss)] // Figures are printed with a few significant digits.
pub fn ingest(options: &IngestBench) -> Result<(), BenchError> {
    in_throwaway_dir(&options.dir, |root| run_ingest(options, root))
}

/// Runs `bench` in a new `dir/rapport-bench-<ULID>` and removes that directory afterwards,
/// whatever happened.
fn in_throwaway_dir(
    dir: &Path,
    bench: impl FnOnce(&Path) -> Result<(), BenchError>,
) -> Result<(), BenchError> {
    let root = dir.join(format!("rapport-bench-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&root).map_err(|source| BenchError::Io {
        path: root.clone(),
        source,
    })?;
    let result = bench(&root);
    let _ = std::fs::remove_dir_all(&root);
    result
}

/// A new instance in `root` (configuration, keys, database) listening on `listen`, opened, with
/// the tenant `bench`.
fn new_instance(
    root: &Path,
    listen: std::net::SocketAddr,
    tls: bool,
) -> Result<(AppContext, crate::tenants::Tenant), BenchError> {
    let setup = |error: &dyn std::fmt::Display| BenchError::Setup(error.to_string());
    let config_path = root.join("rapport.toml");
    crate::init::run(&crate::init::InitOptions {
        config_path: config_path.clone(),
        data_dir: root.join("data"),
        listen,
        tls,
    })
    .map_err(|e| setup(&e))?;
    let config = Config::load(&config_path).map_err(|e| setup(&e))?;
    let context = AppContext::open(config, OpenMode::ExistingOnly).map_err(|e| setup(&e))?;
    let tenant =
        crate::tenants::create_tenant(&context, Actor::system(), None, "bench", "Benchmark")
            .map_err(|e| setup(&e))?;
    Ok((context, tenant))
}

/// Generates `count` synthetic interactions (seed 7) under `root` and imports them through the
/// real engine into `tenant`: how many were imported, and the import's seconds.
fn import_synthetic(
    context: &AppContext,
    tenant: &crate::tenants::Tenant,
    root: &Path,
    count: u64,
) -> Result<(u64, f64), BenchError> {
    let file = root.join("interactions.jsonl");
    eprintln!("generating {count} interactions…");
    generate(
        &file,
        count,
        &mut StdRng::seed_from_u64(7),
        &Vocabulary::new(),
    )
    .map_err(|source| BenchError::Io {
        path: file.clone(),
        source,
    })?;
    eprintln!("importing…");
    let started = Instant::now();
    let run = ingest::import_file(
        context,
        &ImportRequest {
            actor: &Actor::system(),
            tenant,
            format: ImportFormat::Jsonl,
            path: &file,
            skip_invalid: false,
        },
        &mut |_| {},
    )
    .map_err(|e| BenchError::Setup(e.to_string()))?;
    Ok((run.imported, started.elapsed().as_secs_f64()))
}

/// The address of a throw-away instance: loopback, any port (nothing listens).
fn any_port() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}

#[allow(clippy::cast_precision_loss)] // Figures are printed with a few significant digits.
fn run_ingest(options: &IngestBench, root: &Path) -> Result<(), BenchError> {
    let setup = |error: &dyn std::fmt::Display| BenchError::Setup(error.to_string());
    let (context, tenant) = new_instance(root, any_port(), false)?;

    let mut rng = StdRng::seed_from_u64(7);
    let vocabulary = Vocabulary::new();
    let file = root.join("interactions.jsonl");
    eprintln!("generating {} interactions…", options.interactions);
    let size = generate(&file, options.interactions, &mut rng, &vocabulary).map_err(|e| {
        BenchError::Io {
            path: file.clone(),
            source: e,
        }
    })?;
    eprintln!("generated {:.1} MiB", size as f64 / 1_048_576.0);

    // Baseline: the parse-and-validate pass alone over the same file.
    let started = Instant::now();
    let parsed = ingest::jsonl::records(std::io::BufReader::with_capacity(
        1 << 18,
        File::open(&file).map_err(|e| BenchError::Io {
            path: file.clone(),
            source: e,
        })?,
    ))
    .flatten()
    .count();
    let parse_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut last = Instant::now();
    let run = ingest::import_file(
        &context,
        &ImportRequest {
            actor: &Actor::system(),
            tenant: &tenant,
            format: ImportFormat::Jsonl,
            path: &file,
            skip_invalid: false,
        },
        &mut |progress| {
            if last.elapsed() >= Duration::from_secs(10) {
                last = Instant::now();
                eprintln!(
                    "pass {}: {} records, {:.0}%",
                    progress.pass,
                    progress.records,
                    progress.bytes as f64 * 100.0 / progress.total_bytes.max(1) as f64
                );
            }
        },
    )
    .map_err(|e| setup(&e))?;
    let import_seconds = started.elapsed().as_secs_f64();
    if run.state != ImportState::Committed {
        return Err(BenchError::Setup(format!(
            "the import ended {}",
            run.state.as_str()
        )));
    }
    let rss_after_import = peak_rss_mib();
    context.store.flush().map_err(|e| setup(&e))?;
    let database_bytes = directory_size(&root.join("data"));

    let latencies = time_searches(&context, &tenant, &mut rng, &vocabulary, options.queries)?;
    report(&Figures {
        imported: run.imported,
        size,
        import_seconds,
        parsed,
        parse_seconds,
        rss_after_import,
        database_bytes,
        latencies: &latencies,
    });
    Ok(())
}

/// Options of `rapport bench retention`.
pub struct RetentionBench {
    pub interactions: u64,
    /// Interactions-list pages read to time page latency, idle and during the sweep (each).
    pub pages: usize,
    /// Data subjects (contacts' e-mail addresses) looked up before the sweep.
    pub subjects: usize,
    pub dir: PathBuf,
}

/// Runs the retention benchmark: imports a synthetic tenant (the import rate is the baseline),
/// times an interactions-list page idle, sets a period that expires about half of it, then runs
/// the sweep while another thread keeps reading list pages. Prints deletions per second, the
/// ratio to the import rate, and page latency idle and during the sweep; the last line is JSON.
pub fn retention(options: &RetentionBench) -> Result<(), BenchError> {
    in_throwaway_dir(&options.dir, |root| run_retention(options, root))
}

/// Reads interactions-list pages (the newest page, as the console's list opens): `pages` of
/// them, or, with `stop`, until it is set; sorted durations.
fn time_pages(
    context: &AppContext,
    tenant: crate::ids::TenantId,
    pages: usize,
    stop: Option<&std::sync::atomic::AtomicBool>,
) -> Result<Vec<Duration>, BenchError> {
    let mut latencies = Vec::with_capacity(pages);
    loop {
        let started = Instant::now();
        context
            .interactions
            .newest_page(tenant, None)
            .map_err(|error| BenchError::Setup(error.to_string()))?;
        latencies.push(started.elapsed());
        let done = match stop {
            Some(stop) => stop.load(std::sync::atomic::Ordering::SeqCst),
            None => latencies.len() >= pages,
        };
        if done {
            break;
        }
    }
    latencies.sort();
    Ok(latencies)
}

#[allow(clippy::cast_precision_loss)] // Figures are printed with a few significant digits.
fn run_retention(options: &RetentionBench, root: &Path) -> Result<(), BenchError> {
    use crate::retention::{self, Category, Keep, Policies, Trigger};

    let setup = |error: &dyn std::fmt::Display| BenchError::Setup(error.to_string());
    let (context, tenant) = new_instance(root, any_port(), false)?;
    let (imported, import_seconds) =
        import_synthetic(&context, &tenant, root, options.interactions)?;
    let import_rate = imported as f64 / import_seconds;

    let idle = time_pages(&context, tenant.id, options.pages, None)?;
    let lookups =
        time_subject_lookups(&context, tenant.id, options.interactions, options.subjects)?;

    // The generator dates threads over the months of 2026; keep the last 120 days of them.
    let mut policies = Policies::default();
    policies.set(Category::Interactions, Keep::Days(120));
    retention::save_policies(&context, &Actor::system(), None, tenant.id, &policies)
        .map_err(|e| setup(&e))?;
    let now = chrono::Utc::now();
    let started = Instant::now();
    let preview =
        retention::preview(&context, &Actor::system(), tenant.id, now).map_err(|e| setup(&e))?;
    let preview_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "sweeping ({} of {} interactions expire)…",
        preview.total_deleted(),
        imported
    );

    let stop = std::sync::atomic::AtomicBool::new(false);
    let (report, sweep_seconds, during) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| time_pages(&context, tenant.id, options.pages, Some(&stop)));
        let started = Instant::now();
        let report = retention::run(
            &context,
            &Actor::system(),
            None,
            tenant.id,
            Trigger::CommandLine,
            now,
            &mut |_| {},
        );
        let seconds = started.elapsed().as_secs_f64();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let during = reader
            .join()
            .map_err(|_| BenchError::Setup("the page reader panicked".to_owned()));
        (report, seconds, during)
    });
    let report = report.map_err(|e| setup(&e))?;
    let during = during??;
    print_retention(&RetentionFigures {
        imported,
        import_rate,
        deleted: report.total_deleted(),
        sweep_seconds,
        preview_seconds,
        idle: &idle,
        during: &during,
        lookups: &lookups,
    });
    Ok(())
}

/// Finding everything about a data subject, as a privacy request does: `subjects` contacts of
/// the generated tenant (spread evenly over them), each looked up by e-mail address. Sorted
/// durations, and the items found in all.
fn time_subject_lookups(
    context: &AppContext,
    tenant: crate::ids::TenantId,
    interactions: u64,
    subjects: usize,
) -> Result<SubjectLookups, BenchError> {
    use crate::privacy::requests::find::find_subject;
    use crate::privacy::subject::SubjectRef;

    // The generator's contacts: `contact{n}@account{n / 10}.example`, n below a tenth of the
    // interactions.
    let contacts = interactions.div_ceil(10).max(1);
    let step = (contacts / subjects.max(1) as u64).max(1);
    let mut latencies = Vec::with_capacity(subjects);
    let mut items = 0;
    for contact in (0..contacts)
        .step_by(usize::try_from(step).unwrap_or(1))
        .take(subjects)
    {
        let subject = SubjectRef::parse(
            "email",
            &format!("contact{contact}@account{}.example", contact / 10),
        )
        .map_err(|error| BenchError::Setup(error.to_string()))?;
        let started = Instant::now();
        let found = find_subject(context, tenant, &subject)
            .map_err(|error| BenchError::Setup(error.to_string()))?;
        latencies.push(started.elapsed());
        items += found.total();
    }
    latencies.sort();
    Ok(SubjectLookups { latencies, items })
}

/// What the subject lookups measured.
struct SubjectLookups {
    latencies: Vec<Duration>,
    /// Items found, all lookups together.
    items: usize,
}

/// What `bench retention` measured.
struct RetentionFigures<'a> {
    imported: u64,
    import_rate: f64,
    deleted: u64,
    sweep_seconds: f64,
    /// The preview's time: the same walk over every record, deleting nothing.
    preview_seconds: f64,
    idle: &'a [Duration],
    during: &'a [Duration],
    lookups: &'a SubjectLookups,
}

/// Prints the retention figures for people, then as one JSON line for scripts.
#[allow(clippy::cast_precision_loss)] // Figures are printed with a few significant digits.
fn print_retention(figures: &RetentionFigures<'_>) {
    let RetentionFigures {
        imported,
        import_rate,
        deleted,
        sweep_seconds,
        preview_seconds,
        idle,
        during,
        lookups,
    } = *figures;
    let (find_p50, find_max) = (
        percentile(&lookups.latencies, 0.5),
        percentile(&lookups.latencies, 1.0),
    );
    let rate = deleted as f64 / sweep_seconds;
    let (idle_p50, idle_p99) = (percentile(idle, 0.5), percentile(idle, 0.99));
    let (busy_p50, busy_p99) = (percentile(during, 0.5), percentile(during, 0.99));
    println!("interactions imported   {imported} ({import_rate:.0}/s)");
    println!(
        "swept                   {deleted} deleted of {imported} in {sweep_seconds:.1} s: {rate:.0} deletions/s (the walk over every record included)"
    );
    println!(
        "baseline: import rate   deletions/imports ratio {:.2}",
        rate / import_rate
    );
    println!(
        "walk only (preview)     {preview_seconds:.1} s, {:.0} records/s",
        imported as f64 / preview_seconds
    );
    println!(
        "list page idle          p50 {idle_p50:.1} ms, p99 {idle_p99:.1} ms ({} pages)",
        idle.len()
    );
    println!(
        "list page during sweep  p50 {busy_p50:.1} ms, p99 {busy_p99:.1} ms ({} pages); p99 ratio {:.2}",
        during.len(),
        busy_p99 / idle_p99.max(f64::EPSILON)
    );
    println!(
        "subject lookup          p50 {find_p50:.1} ms, max {find_max:.1} ms ({} subjects, {} items found; target under 2 s)",
        lookups.latencies.len(),
        lookups.items
    );
    println!(
        "{}",
        serde_json::json!({
            "interactions": imported,
            "deleted": deleted,
            "sweep_seconds": sweep_seconds,
            "deletions_per_second": rate,
            "import_per_second": import_rate,
            "deletion_to_import_ratio": rate / import_rate,
            "preview_seconds": preview_seconds,
            "page_idle_p50_ms": idle_p50,
            "page_idle_p99_ms": idle_p99,
            "page_during_sweep_p50_ms": busy_p50,
            "page_during_sweep_p99_ms": busy_p99,
            "subject_lookup_p50_ms": find_p50,
            "subject_lookup_max_ms": find_max,
            "subject_lookup_items": lookups.items,
        })
    );
}
