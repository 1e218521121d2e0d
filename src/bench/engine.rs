//! `rapport bench engine`: the storage engine's floor (see `store::floor`): sled alone writing
//! the keys of an import, then walking the records and deleting 7 in 12 of them as a retention
//! sweep does, with none of Rapport's own work. A target of `bench ingest` or `bench retention`
//! above these rates cannot be met by Rapport's code on this engine and machine; Rapport's rate
//! divided by the floor's, taken on the same machine, says how much of the time is its own.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::bench::BenchError;
use crate::store::floor;

/// Options of `rapport bench engine`.
pub struct EngineBench {
    pub interactions: u64,
    pub cache_mib: u64,
    pub dir: PathBuf,
}

/// Runs the engine floor in a throw-away database under `dir` and prints its figures; the last
/// line is one JSON object.
pub fn engine(options: &EngineBench) -> Result<(), BenchError> {
    if options.interactions == 0 {
        return Err(BenchError::Setup(
            "--interactions must be at least 1".to_owned(),
        ));
    }
    super::in_throwaway_dir(&options.dir, |root| run(options, root))
}

/// How long the floor may go without finishing a commit before the run is given up: a commit
/// takes well under a second, and sled 0.34.7 can deadlock under this load (see `run`).
const STALL_LIMIT: Duration = Duration::from_secs(60);

#[allow(clippy::cast_precision_loss)] // Figures are printed with a few significant digits.
fn run(options: &EngineBench, root: &Path) -> Result<(), BenchError> {
    let commits = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let figures = std::thread::scope(|scope| {
        // sled 0.34.7 can deadlock when its file is shrunk while its I/O threads are busy (the
        // writer waits, holding the segment accountant, for a truncation queued behind I/O tasks
        // that wait for the accountant). Nothing inside the process can undo it, so a run that
        // stops committing is reported and ended rather than left hanging.
        scope.spawn(|| {
            let mut seen = 0;
            let mut since = Instant::now();
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(500));
                let now = commits.load(Ordering::Relaxed);
                if now != seen {
                    seen = now;
                    since = Instant::now();
                } else if since.elapsed() >= STALL_LIMIT {
                    eprintln!(
                        "error: sled made no progress for {} s after {now} commits (a sled 0.34 \
                         deadlock between its writer and its I/O threads); the run is abandoned, \
                         try it again. The throw-away directory is left under {}.",
                        STALL_LIMIT.as_secs(),
                        root.display()
                    );
                    std::process::exit(3);
                }
            }
        });
        let figures = floor::measure(
            &root.join("db"),
            options.interactions,
            options.cache_mib.saturating_mul(1024 * 1024),
            &super::peak_rss_mib,
            &mut |line| eprintln!("{line}…"),
            &commits,
        );
        done.store(true, Ordering::Relaxed);
        figures
    })
    .map_err(|error| BenchError::Setup(error.to_string()))?;
    let import_rate = figures.interactions as f64 / figures.import_seconds;
    let deletion_rate = figures.deleted as f64 / figures.sweep_seconds;
    let database_mib = figures.database_bytes_after_import as f64 / (1024.0 * 1024.0);
    println!(
        "engine floor            sled alone with Rapport's keys, cache {} MiB",
        options.cache_mib
    );
    println!(
        "written                 {} interactions in {:.1} s: {import_rate:.0}/s",
        figures.interactions, figures.import_seconds
    );
    println!(
        "peak RSS after writing  {} MiB; database {database_mib:.0} MiB",
        figures.rss_after_import_mib
    );
    println!(
        "swept                   {} deleted of {} in {:.1} s: {deletion_rate:.0} deletions/s (the walk over every record included)",
        figures.deleted, figures.interactions, figures.sweep_seconds
    );
    println!(
        "{}",
        serde_json::json!({
            "cache_mib": options.cache_mib,
            "interactions": figures.interactions,
            "import_per_second": import_rate,
            "peak_rss_after_import_mib": figures.rss_after_import_mib,
            "database_bytes": figures.database_bytes_after_import,
            "deleted": figures.deleted,
            "sweep_seconds": figures.sweep_seconds,
            "deletions_per_second": deletion_rate,
        })
    );
    Ok(())
}
