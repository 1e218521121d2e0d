//! `rapport bench dataset`: a kept instance holding one synthetic, analysed tenant, for the
//! measurements that need a running server (`scripts/bench-console.sh` drives `wrk` against its
//! dashboard and account pages).
//!
//! The tenant `bench` gets `interactions / 100` accounts (twenty owners), the interactions of
//! `bench ingest`'s generator (ten contacts per account, the five text channels, dates across
//! 2026), six NPS answers and one review per account, all through the real import engine. The
//! `off` backend then analyses every interaction through the real queue, so every aggregate the
//! console reads is built the way a live instance builds it. The one user is an analyst,
//! `analyst@bench.example`, with the password read from standard input.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secrecy::SecretString;

use super::{generate, BenchError, Vocabulary};
use crate::audit::Actor;
use crate::context::AppContext;
use crate::ingest::{self, ImportFormat, ImportRequest, ImportState};
use crate::tenants::Tenant;

/// The owners the accounts are spread over, `csm0@bench.example` … `csm19@bench.example`.
pub const OWNERS: u64 = 20;

/// What `rapport bench dataset` builds.
#[derive(Debug)]
pub struct DatasetOptions {
    pub interactions: u64,
    /// A new or empty directory; the instance stays there.
    pub dir: PathBuf,
    /// Where the server will listen (written into the configuration).
    pub listen: std::net::SocketAddr,
    /// The analyst's password.
    pub password: SecretString,
}

/// Builds the instance and prints where it is; the last line is one JSON object.
#[allow(clippy::cast_precision_loss)] // Figures are printed with a few significant digits.
pub fn dataset(options: &DatasetOptions) -> Result<(), BenchError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BenchError::Io { path, source }
    };
    let (context, tenant, config_path) = create_instance(options)?;

    let files = options.dir.join("generated");
    std::fs::create_dir_all(&files).map_err(io(&files))?;
    let accounts = options.interactions.div_ceil(100).max(1);
    let mut rng = StdRng::seed_from_u64(11);
    let vocabulary = Vocabulary::new();
    let started = Instant::now();
    let steps: [(ImportFormat, PathBuf); 4] = [
        (ImportFormat::Accounts, files.join("accounts.csv")),
        (ImportFormat::Jsonl, files.join("interactions.jsonl")),
        (ImportFormat::Surveys, files.join("surveys.csv")),
        (ImportFormat::Reviews, files.join("reviews.csv")),
    ];
    write_accounts(&steps[0].1, accounts).map_err(io(&steps[0].1))?;
    generate(&steps[1].1, options.interactions, &mut rng, &vocabulary).map_err(io(&steps[1].1))?;
    write_surveys(&steps[2].1, accounts, &mut rng).map_err(io(&steps[2].1))?;
    write_reviews(&steps[3].1, accounts, &mut rng).map_err(io(&steps[3].1))?;
    for (format, path) in &steps {
        import(&context, &tenant, *format, path)?;
    }
    let import_seconds = started.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&files).map_err(io(&files))?;

    let started = Instant::now();
    let totals = analyse(&context, &tenant)?;
    let analyse_seconds = started.elapsed().as_secs_f64();
    let setup = |error: &dyn std::fmt::Display| BenchError::Setup(error.to_string());
    context.store.flush().map_err(|e| setup(&e))?;
    let account = context
        .accounts
        .newest_page(tenant.id, None)
        .map_err(|e| setup(&e))?
        .items
        .first()
        .map(|account| account.id.to_string())
        .ok_or_else(|| BenchError::Setup("no account was imported".to_owned()))?;

    println!("instance:         {}", config_path.display());
    println!("tenant:           bench (user analyst@bench.example)");
    println!("interactions:     {}", options.interactions);
    println!("accounts:         {accounts}");
    println!("imported in:      {import_seconds:.0} s");
    println!(
        "analysed:         {} done, {} failed in {analyse_seconds:.0} s ({:.0}/s)",
        totals.done,
        totals.failed,
        totals.done as f64 / analyse_seconds.max(f64::EPSILON)
    );
    println!("an account page:  /t/bench/accounts/{account}");
    println!(
        "{}",
        serde_json::json!({
            "config": config_path,
            "tenant": "bench",
            "user": "analyst@bench.example",
            "account": account,
            "interactions": options.interactions,
            "accounts": accounts,
            "analysed": totals.done,
            "failed": totals.failed,
            "import_seconds": import_seconds,
            "analyse_seconds": analyse_seconds,
        })
    );
    Ok(())
}

/// A new instance in `options.dir` (TLS on) with the tenant `bench`, its analyst and the `off`
/// backend.
fn create_instance(options: &DatasetOptions) -> Result<(AppContext, Tenant, PathBuf), BenchError> {
    let setup = |error: &dyn std::fmt::Display| BenchError::Setup(error.to_string());
    if std::fs::read_dir(&options.dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(BenchError::Setup(format!(
            "{} is not empty; remove it or name a new directory",
            options.dir.display()
        )));
    }
    std::fs::create_dir_all(&options.dir).map_err(|source| BenchError::Io {
        path: options.dir.clone(),
        source,
    })?;
    let config_path = options.dir.join("rapport.toml");
    let (context, tenant) = super::new_instance(&options.dir, options.listen, true)?;
    crate::users::create_user(
        &context,
        Actor::system(),
        None,
        crate::users::NewUser {
            email: crate::users::Email::parse("analyst@bench.example").map_err(|e| setup(&e))?,
            role: crate::users::Role::Analyst,
            tenant: Some(tenant.id),
            password: options.password.clone(),
            must_change_password: false,
        },
    )
    .map_err(|e| setup(&e))?;
    crate::inference::store::AnalysisSettingsStore::new(context.store.clone())
        .save(
            tenant.id,
            &crate::inference::store::AnalysisSettings {
                backend: crate::inference::BackendKind::Off,
                model_sha256: None,
                remote: None,
            },
        )
        .map_err(|e| setup(&e))?;
    Ok((context, tenant, config_path))
}

/// Runs the tenant's queue until it is empty, printing progress every ten seconds.
#[allow(clippy::cast_precision_loss)] // Progress is printed with a few significant digits.
fn analyse(
    context: &AppContext,
    tenant: &Tenant,
) -> Result<crate::analysis::worker::Totals, BenchError> {
    let started = Instant::now();
    let mut cache = crate::analysis::worker::BackendCache::default();
    let mut last = Instant::now();
    crate::analysis::worker::run_until_idle(context, &mut cache, tenant.id, &mut |_, counts| {
        if last.elapsed() >= Duration::from_secs(10) {
            last = Instant::now();
            eprintln!(
                "analysed {} of {} ({:.0}/s)",
                counts.done + counts.failed,
                counts.done + counts.failed + counts.queued + counts.running,
                (counts.done + counts.failed) as f64 / started.elapsed().as_secs_f64()
            );
        }
    })
    .map_err(|error| BenchError::Setup(error.to_string()))
}

fn import(
    context: &AppContext,
    tenant: &Tenant,
    format: ImportFormat,
    path: &Path,
) -> Result<(), BenchError> {
    eprintln!("importing {}…", path.display());
    let mut last = Instant::now();
    let run = ingest::import_file(
        context,
        &ImportRequest {
            actor: &Actor::system(),
            tenant,
            format,
            path,
            skip_invalid: false,
        },
        &mut |progress| {
            if last.elapsed() >= Duration::from_secs(10) {
                last = Instant::now();
                eprintln!("  pass {}: {} records", progress.pass, progress.records);
            }
        },
    )
    .map_err(|error| BenchError::Setup(error.to_string()))?;
    if run.state == ImportState::Committed {
        crate::analysis::enqueue_after_import(context, tenant.id, &run);
        Ok(())
    } else {
        Err(BenchError::Setup(format!(
            "the import of {} ended {}",
            path.display(),
            run.state.as_str()
        )))
    }
}

/// Accounts `A-0` … named by the domains the generated interactions use.
fn write_accounts(path: &Path, accounts: u64) -> std::io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    writeln!(
        out,
        "account_id,name,domain,plan,arr,renewal_date,owner_email"
    )?;
    for account in 0..accounts {
        writeln!(
            out,
            "A-{account},Account {account},account{account}.example,Pro,{},2027-{:02}-{:02},csm{}@bench.example",
            1_000 + (account * 37) % 90_000,
            1 + account % 12,
            1 + account % 28,
            account % OWNERS
        )?;
    }
    out.flush()
}

/// Six NPS answers per account, one a month from May to October 2026.
fn write_surveys(path: &Path, accounts: u64, rng: &mut StdRng) -> std::io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    writeln!(out, "response_id,survey,score,answered_at,account")?;
    for account in 0..accounts {
        for month in 5..=10 {
            let score: u8 = rng.gen_range(0..=10);
            writeln!(
                out,
                "NPS-{account}-{month},nps,{score},2026-{month:02}-15,account{account}.example"
            )?;
        }
    }
    out.flush()
}

/// One review per account, over 2026.
fn write_reviews(path: &Path, accounts: u64, rng: &mut StdRng) -> std::io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    writeln!(out, "review_id,platform,rating,text,reviewed_at,account")?;
    for account in 0..accounts {
        let rating: u8 = rng.gen_range(1..=5);
        writeln!(
            out,
            "R-{account},google,{rating},Review number {account},2026-{:02}-{:02},account{account}.example",
            1 + account % 11,
            1 + account % 28
        )?;
    }
    out.flush()
}
