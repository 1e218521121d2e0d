//! `rapport bench backup`: what an online backup costs and how fast it goes. A synthetic tenant
//! is imported; then single-record writes (the API's upsert) are timed with no backup running
//! (the baseline) and while backups run back to back, which makes every write save pre-images
//! (`store::snapshot`); the ratio of the two rates is the figure to compare. It also reports the
//! backup's and the restore's records per second and MiB per second.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::audit::Actor;
use crate::bench::BenchError;
use crate::context::AppContext;
use crate::ids::TenantId;
use crate::interactions::InteractionRecord;

/// Options of `rapport bench backup`.
pub struct BackupBench {
    /// Interactions imported before measuring.
    pub interactions: u64,
    /// Single-record writes per measurement.
    pub writes: usize,
    pub dir: std::path::PathBuf,
}

/// Runs the backup benchmark in a throw-away instance under `dir`.
pub fn backup(options: &BackupBench) -> Result<(), BenchError> {
    super::in_throwaway_dir(&options.dir, |root| run(options, root))
}

fn setup(error: &dyn std::fmt::Display) -> BenchError {
    BenchError::Setup(error.to_string())
}

/// Writes `count` upserts of existing and new interactions; their latencies, sorted.
fn timed_writes(
    context: &AppContext,
    tenant: TenantId,
    count: usize,
    round: &str,
) -> Result<Vec<Duration>, BenchError> {
    let mut latencies = Vec::with_capacity(count);
    for n in 0..count {
        // Every other write replaces an imported interaction (a pre-image to save), the others
        // add one.
        let source_id = if n % 2 == 0 {
            format!("I-{n}")
        } else {
            format!("{round}-{n}")
        };
        let record: InteractionRecord = serde_json::from_value(serde_json::json!({
            "source_system": "bench", "source_id": source_id, "channel": "chat",
            "messages": [{"role": "customer", "sent_at": "2026-11-01T10:00:00Z",
                          "text": format!("write {n} of round {round}: where is my order?")}]
        }))
        .map_err(|e| setup(&e))?;
        let started = Instant::now();
        crate::api::resources::write_record(context, &Actor::system(), None, tenant, "api", record)
            .map_err(|e| setup(&e))?;
        latencies.push(started.elapsed());
    }
    latencies.sort_unstable();
    Ok(latencies)
}

#[allow(clippy::cast_precision_loss)] // Figures are printed with a few significant digits.
fn rate(latencies: &[Duration]) -> f64 {
    latencies.len() as f64 / latencies.iter().sum::<Duration>().as_secs_f64()
}

/// [`timed_writes`] while backups run back to back; also how many backups ran.
fn writes_during_backups(
    context: &AppContext,
    tenant: TenantId,
    writes: usize,
) -> Result<(Vec<Duration>, u32), BenchError> {
    let stop = AtomicBool::new(false);
    let (during, backups) = std::thread::scope(|scope| {
        let backups = scope.spawn(|| {
            let mut count = 0u32;
            while !stop.load(Ordering::SeqCst) {
                crate::backup::write(context, std::io::sink(), Actor::system(), &mut |_| {})
                    .map_err(|e| setup(&e))?;
                count += 1;
            }
            Ok::<u32, BenchError>(count)
        });
        // The first backup has begun its snapshot before the writes start.
        std::thread::sleep(Duration::from_millis(200));
        let during = timed_writes(context, tenant, writes, "during");
        stop.store(true, Ordering::SeqCst);
        let backups = backups
            .join()
            .map_err(|_| BenchError::Setup("the backup thread panicked".to_owned()))
            .and_then(|result| result);
        (during, backups)
    });
    Ok((during?, backups?))
}

#[allow(clippy::cast_precision_loss)] // Figures are printed with a few significant digits.
fn run(options: &BackupBench, root: &Path) -> Result<(), BenchError> {
    let (context, tenant) = super::new_instance(root, super::any_port(), false)?;
    super::import_synthetic(&context, &tenant, root, options.interactions)?;

    eprintln!("backup alone…");
    let target = root.join("alone.backup");
    let started = Instant::now();
    let written = crate::backup::scheduled::write_whole(&target, |out| {
        crate::backup::write(&context, out, Actor::system(), &mut |_| {}).map(|(_, w)| w)
    })
    .map_err(|e| setup(&e))?;
    let backup_seconds = started.elapsed().as_secs_f64();

    eprintln!("writes without a backup…");
    let idle = timed_writes(&context, tenant.id, options.writes, "idle")?;
    eprintln!("writes while backups run back to back…");
    let (during, backups) = writes_during_backups(&context, tenant.id, options.writes)?;

    eprintln!("restore…");
    let started = Instant::now();
    let restored = crate::backup::restore(
        &context.config,
        &target,
        &root.join("restored"),
        &mut |_| {},
    )
    .map_err(|e| setup(&e))?;
    let restore_seconds = started.elapsed().as_secs_f64();

    let mib = written.bytes as f64 / (1024.0 * 1024.0);
    let records = written.totals.records as f64;
    let p99 = |sorted: &[Duration]| super::percentile(sorted, 0.99);
    let (idle_rate, during_rate) = (rate(&idle), rate(&during));
    println!(
        "backup                  {records:.0} records, {mib:.1} MiB in {backup_seconds:.2} s: {:.0} records/s, {:.1} MiB/s",
        records / backup_seconds,
        mib / backup_seconds
    );
    println!(
        "restore                 {} records in {restore_seconds:.2} s: {:.0} records/s (audit chain of {} entries verified)",
        restored.totals.records,
        restored.totals.records as f64 / restore_seconds,
        restored.audit_entries
    );
    println!(
        "writes, no backup       {idle_rate:.0} writes/s, p99 {:.1} ms (the baseline)",
        p99(&idle)
    );
    println!(
        "writes during backups   {during_rate:.0} writes/s, p99 {:.1} ms ({backups} backups ran); ratio to the baseline {:.2}",
        p99(&during),
        during_rate / idle_rate
    );
    println!(
        "{}",
        serde_json::json!({
            "interactions": options.interactions,
            "backup_records": written.totals.records,
            "backup_bytes": written.bytes,
            "backup_seconds": backup_seconds,
            "restore_seconds": restore_seconds,
            "writes": options.writes,
            "idle_writes_per_second": idle_rate,
            "during_writes_per_second": during_rate,
            "idle_p99_ms": p99(&idle),
            "during_p99_ms": p99(&during),
            "ratio": during_rate / idle_rate,
            "backups_during": backups,
        })
    );
    Ok(())
}
