//! `rapport backup --config PATH --out FILE` and `rapport restore --config PATH --from FILE
//! --data-dir DIR`. Progress goes to standard error, the summary to standard output.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;

use super::{control, scheduled, BackupError, Progress};
use crate::audit::Actor;
use crate::config::Config;
use crate::context::AppContext;
use crate::store::{MasterKey, OpenMode};

#[derive(Args)]
pub(crate) struct BackupArgs {
    #[command(flatten)]
    config: crate::cli::ConfigArg,
    /// The backup file to write (mode 0600); it must not exist yet.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Args)]
pub(crate) struct RestoreArgs {
    #[command(flatten)]
    config: crate::cli::ConfigArg,
    /// The backup file.
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    /// The new data directory: empty or absent.
    #[arg(long = "data-dir", value_name = "DIR")]
    data_dir: PathBuf,
}

const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Prints `line(progress)` to standard error at most every two seconds.
fn throttled(line: impl Fn(Progress) -> String) -> impl FnMut(Progress) {
    let mut last = Instant::now();
    move |progress| {
        if last.elapsed() >= PROGRESS_EVERY {
            last = Instant::now();
            eprintln!("{}", line(progress));
        }
    }
}

/// Counts the bytes written through it, printing progress.
struct Counting<'a, W> {
    inner: W,
    bytes: u64,
    report: &'a mut dyn FnMut(Progress),
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.bytes += written as u64;
        (self.report)(Progress {
            records: 0,
            file_bytes: self.bytes,
        });
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[allow(clippy::cast_precision_loss)] // a size shown to one decimal
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// `rapport backup`: through the running server when there is one, else from the database
/// directly; then the file's checksum is checked once more.
pub(crate) fn backup(args: &BackupArgs) -> Result<(), String> {
    crate::telemetry::init_for_command();
    let config = Config::load(&args.config.path).map_err(|error| error.to_string())?;
    let data_dir = config.storage.data_dir.clone();
    let mut online = false;
    let summary = scheduled::write_whole(&args.out, |file| -> Result<Option<String>, BackupError> {
        let mut received = throttled(|progress| format!("received {}", mib(progress.file_bytes)));
        let mut counting = Counting {
            inner: &mut *file,
            bytes: 0,
            report: &mut received,
        };
        if control::request_backup(&data_dir, &mut counting).map_err(BackupError::Unavailable)? {
            online = true;
            return Ok(None);
        }
        let context = AppContext::open(config.clone(), OpenMode::ExistingOnly).map_err(|error| {
            BackupError::Unavailable(format!("{error} (a running server is reached through its control socket, {}; none answered there)", control::socket_path(&data_dir).display()))
        })?;
        let mut progress = throttled(|progress| {
            format!(
                "{} records, {} of files",
                progress.records,
                mib(progress.file_bytes)
            )
        });
        let (_, written) = super::write(&context, &mut *file, Actor::cli(), &mut progress)?;
        Ok(Some(format!(
            "{} records in {} trees, {} files",
            written.totals.records, written.totals.trees, written.totals.files
        )))
    })
    .map_err(|error| format!("{error}; no backup was written"))?;
    let master = MasterKey::load(&config.storage.master_key_file).ok();
    let verified = match &master {
        Some(master) => super::verify(&args.out, master),
        None => super::verify_checksum(&args.out),
    }
    .map_err(|error| {
        let _ = std::fs::remove_file(&args.out);
        format!("the backup written does not verify ({error}); it was deleted")
    })?;
    println!(
        "backup written to {} ({}): {}{}, sha256 {}",
        args.out.display(),
        if online {
            "online, from the running server"
        } else {
            "from the stopped database"
        },
        summary
            .map(|counts| format!("{counts}, "))
            .unwrap_or_default(),
        mib(verified.bytes),
        verified.sha256
    );
    Ok(())
}

/// `rapport restore`.
pub(crate) fn restore(args: &RestoreArgs) -> Result<(), String> {
    crate::telemetry::init_for_command();
    let config = Config::load(&args.config.path).map_err(|error| error.to_string())?;
    let mut progress = throttled(|progress| {
        format!(
            "{} records, {} of files restored",
            progress.records,
            mib(progress.file_bytes)
        )
    });
    let restored = super::restore(&config, &args.from, &args.data_dir, &mut progress)
        .map_err(|error| error.to_string())?;
    println!(
        "restored {} (taken {}) into {}: {} records in {} trees, {} files, {} audit entries verified",
        args.from.display(),
        restored.created.to_rfc3339(),
        args.data_dir.display(),
        restored.totals.records,
        restored.totals.trees,
        restored.totals.files,
        restored.audit_entries
    );
    println!(
        "erasure ledger {} re-applied: {} records deleted, {} mentions redacted, {} keys destroyed again",
        restored.ledger.display(),
        restored.reapplied.records_deleted,
        restored.reapplied.mentions_redacted,
        restored.reapplied.keys_destroyed
    );
    println!(
        "to use it: stop the server, point storage.data_dir at {} (or move it into place, owned by the service user), start the server",
        display_dir(&args.data_dir)
    );
    Ok(())
}

fn display_dir(path: &Path) -> String {
    path.canonicalize()
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}
