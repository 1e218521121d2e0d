//! Backup files on disk: written whole or not at all (a `.partial` file, synced, then renamed),
//! the scheduler's backups into `[backup] dir` with the keep policy, and the time of the last
//! successful backup that `/metrics` reports as `rapport_backup_age_seconds`.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

use super::{BackupError, Written};
use crate::audit::Actor;
use crate::config::Config;
use crate::context::AppContext;

const PREFIX: &str = "rapport-";
const SUFFIX: &str = ".backup";

/// When the appliance's last backup was taken (memory only; part of the `AppContext`).
#[derive(Debug, Default)]
pub struct BackupStatus {
    /// Unix seconds of the newest successful backup; 0 when none is known.
    last_success: AtomicI64,
}

impl BackupStatus {
    /// Notes a successful backup (for `rapport_backup_age_seconds`).
    pub fn record_success(&self, created: DateTime<Utc>) {
        self.last_success
            .fetch_max(created.timestamp(), Ordering::Relaxed);
    }

    /// Seconds since the last successful backup, `None` when none is known.
    pub fn age_seconds(&self) -> Option<f64> {
        let last = self.last_success.load(Ordering::Relaxed);
        #[allow(clippy::cast_precision_loss)] // seconds: far below 2^52
        (last > 0).then(|| (Utc::now().timestamp() - last).max(0) as f64)
    }
}

/// Where the scheduler writes backups: `[backup] dir`, by default `<data_dir>/backups`.
pub fn directory(config: &Config) -> PathBuf {
    config
        .backup
        .dir
        .clone()
        .unwrap_or_else(|| config.storage.data_dir.join("backups"))
}

/// At start-up: the newest backup already in the backup directory counts as the last success.
pub fn note_existing(context: &AppContext) {
    let newest = scheduled_files(&directory(&context.config))
        .ok()
        .and_then(|files| files.last().cloned())
        .and_then(|path| fs::metadata(path).ok())
        .and_then(|metadata| metadata.modified().ok());
    if let Some(modified) = newest {
        context
            .backups
            .record_success(DateTime::<Utc>::from(modified));
    }
}

/// The scheduler's backup files in `dir`, oldest first (their names sort by time).
fn scheduled_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(PREFIX) && name.ends_with(SUFFIX))
        })
        .collect();
    files.sort();
    Ok(files)
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Writes `path` through `write_into`: into `<path>.partial` (mode 0600, never over an existing
/// file), synced, then renamed into place and the directory synced. On failure nothing stays.
pub fn write_whole<T, E: From<BackupError>>(
    path: &Path,
    write_into: impl FnOnce(&mut File) -> Result<T, E>,
) -> Result<T, E> {
    let io = |at: &Path| {
        let at = at.to_path_buf();
        move |source| BackupError::Io { path: at, source }
    };
    if path.exists() {
        return Err(BackupError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "already exists (a backup never replaces a file)",
            ),
        }
        .into());
    }
    let partial = partial_path(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .map_err(io(&partial))?;
    let outcome = write_into(&mut file).and_then(|value| {
        file.flush()
            .and_then(|()| file.sync_all())
            .and_then(|()| fs::rename(&partial, path))
            .map_err(io(path))?;
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            File::open(parent)
                .and_then(|dir| dir.sync_all())
                .map_err(io(parent))?;
        }
        Ok(value)
    });
    if outcome.is_err() {
        let _ = fs::remove_file(&partial);
    }
    outcome
}

/// Writes one backup into the backup directory (created 0700 when missing), named by its time,
/// then deletes the oldest beyond `[backup] keep`.
pub fn write_to_directory(context: &AppContext) -> Result<(PathBuf, Written), BackupError> {
    let dir = directory(&context.config);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|source| BackupError::Io {
            path: dir.clone(),
            source,
        })?;
    let path = dir.join(format!(
        "{PREFIX}{}{SUFFIX}",
        Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    ));
    let written = write_whole(&path, |file| {
        super::write(context, file, Actor::system(), &mut |_| {}).map(|(_, written)| written)
    })?;
    context.backups.record_success(written.created);
    prune(&dir, context.config.backup.keep);
    Ok((path, written))
}

/// Deletes the oldest scheduled backups so that `keep` remain.
fn prune(dir: &Path, keep: u32) {
    let Ok(files) = scheduled_files(dir) else {
        return;
    };
    let surplus = files.len().saturating_sub(keep.max(1) as usize);
    for old in &files[..surplus] {
        match fs::remove_file(old) {
            Ok(()) => tracing::info!(file = %old.display(), "old backup deleted (keep policy)"),
            Err(error) => tracing::warn!(file = %old.display(), %error, "old backup not deleted"),
        }
    }
}

/// The scheduler's task: one backup, logged (never with content).
pub fn run(context: &AppContext) {
    match write_to_directory(context) {
        Ok((path, written)) => tracing::info!(
            file = %path.display(),
            records = written.totals.records,
            bytes = written.bytes,
            "scheduled backup written"
        ),
        Err(error) => tracing::error!(%error, "scheduled backup failed"),
    }
}
