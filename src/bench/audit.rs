//! `rapport bench audit`: appends per second to the audit log from one writer (the baseline) and
//! from several at once, as a console under load makes them (every page that shows personal
//! data appends one entry). Appends made at the same time share an `fsync` (group commit), so the
//! concurrent rate should be a multiple of the single writer's; the ratio is what to compare.

use std::path::Path;
use std::time::Instant;

use crate::audit::{Actor, AuditAction, AuditEvent};
use crate::bench::BenchError;

/// Options of `rapport bench audit`.
pub struct AuditBench {
    /// Appends per measurement.
    pub entries: usize,
    /// Concurrent writers of the second measurement.
    pub writers: usize,
    pub dir: std::path::PathBuf,
}

/// Runs the audit benchmark in a throw-away instance under `dir`.
pub fn audit(options: &AuditBench) -> Result<(), BenchError> {
    super::in_throwaway_dir(&options.dir, |root| run(options, root))
}

#[allow(clippy::cast_precision_loss)] // Figures are printed with a few significant digits.
fn run(options: &AuditBench, root: &Path) -> Result<(), BenchError> {
    let setup = |error: &dyn std::fmt::Display| BenchError::Setup(error.to_string());
    let (context, tenant) = super::new_instance(root, super::any_port(), false)?;
    let writers = options.writers.max(1);
    let entries = options.entries.max(writers);
    let append = |n: usize| -> Result<(), BenchError> {
        for i in 0..n {
            context
                .audit(AuditEvent::new(
                    Some(tenant.id),
                    Actor::system(),
                    AuditAction::PersonalDataRead,
                    format!("bench entry {i}"),
                ))
                .map_err(|e| setup(&e))?;
        }
        Ok(())
    };

    let started = Instant::now();
    append(entries)?;
    let single = entries as f64 / started.elapsed().as_secs_f64();

    let per_writer = entries / writers;
    let syncs_before = context.audit_log.syncs();
    let started = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|_| scope.spawn(|| append(per_writer)))
            .collect();
        handles.into_iter().try_for_each(|handle| {
            handle
                .join()
                .map_err(|_| BenchError::Setup("an audit writer panicked".to_owned()))?
        })
    })?;
    let appended = per_writer * writers;
    let concurrent = appended as f64 / started.elapsed().as_secs_f64();
    let syncs = context.audit_log.syncs() - syncs_before;
    let verified = context.audit_log.verify().map_err(|e| setup(&e))?;

    println!(
        "one writer              {single:.0} appends/s (the baseline; each waits for its fsync)"
    );
    println!(
        "{writers} writers at once     {concurrent:.0} appends/s; ratio to one writer {:.2}",
        concurrent / single
    );
    println!(
        "                        {appended} appends shared {syncs} fsyncs ({:.1} per fsync)",
        appended as f64 / syncs.max(1) as f64
    );
    println!("chain verified          {} entries", verified.entries);
    println!(
        "{}",
        serde_json::json!({
            "entries": entries,
            "writers": writers,
            "single_per_second": single,
            "concurrent_per_second": concurrent,
            "ratio": concurrent / single,
            "concurrent_fsyncs": syncs,
            "verified_entries": verified.entries,
        })
    );
    Ok(())
}
