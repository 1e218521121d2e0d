//! Key rotation commands: `rapport keys rotate-master` and `rapport keys rotate-tenant`.
//!
//! Both open the database themselves, so the server must be stopped (sled's lock says so).
//!
//! **Master rotation** re-wraps every wrapped key (appliance and tenants) under a new master key in
//! one store transaction; records are untouched. The order makes every crash leave a key that
//! opens the database:
//!
//! 1. the new key is written beside the configured file as `<file>.new` (0600, `fsync`ed, and the
//!    directory too) — a crash here leaves the old key in force and a stale `.new`, which the next
//!    run notices (it does not open the database) and replaces;
//! 2. the re-wrap and the new fingerprint are committed in one transaction and flushed — from here
//!    only `<file>.new` opens the database; a crash before step 4 makes `serve` and `check` report
//!    [`StoreError::RotationUnfinished`], naming the file, and running the command again finishes;
//! 3. the rotation is audited (`keys.master_rotated`, fingerprints only);
//! 4. `<file>.new` is renamed over `<file>` and the directory `fsync`ed.
//!
//! With `--keep-old`, a copy of the old key is written to `<file>.old` before step 2.
//!
//! **Tenant rotation** adds a data key to the tenant (it becomes current, so every new seal uses
//! it), re-seals every value still sealed under an older key through [`Store::reseal_scope`], and
//! retires the older keys once a full count finds no value under them. A run stopped part-way (a
//! crash, or `--max-records`) leaves the tenant readable, since the older keys stay until they are
//! unused; running the command again resumes (it adds no second key while an older one remains).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Subcommand;

use crate::audit::{Actor, AuditAction, AuditError, AuditEvent};
use crate::config::Config;
use crate::context::{AppContext, ContextError};
use crate::ids::KeyId;
use crate::store::keys::{pending_path, sync_parent};
use crate::store::{KeyError, MasterKey, OpenMode, Scope, StoreError};
use crate::tenants::TenantError;

#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// Re-wrap every tenant's keys under a new master key (no record is rewritten) and replace
    /// the configured master key file with it. Stop the service first.
    RotateMaster {
        #[command(flatten)]
        config: crate::cli::ConfigArg,
        /// Take the new key from this file (32 bytes or 64 hex digits, mode 0600) instead of
        /// generating one.
        #[arg(long, value_name = "PATH")]
        new_key_file: Option<PathBuf>,
        /// Keep the old key as `<master_key_file>.old` (for backups taken before the rotation).
        #[arg(long)]
        keep_old: bool,
    },
    /// Give a tenant a new data key and re-seal its records under it, with progress on standard
    /// error; the old key is removed once no record uses it. Run it again to resume.
    RotateTenant {
        #[command(flatten)]
        config: crate::cli::ConfigArg,
        /// The tenant (slug).
        #[arg(long, value_name = "SLUG")]
        tenant: String,
        /// Re-seal at most this many records in this run (spreads the work over several runs).
        #[arg(long, value_name = "N")]
        max_records: Option<u64>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("the database is in use by a running server: stop the service first (systemctl stop rapport), then run this command again")]
    ServerRunning,
    #[error("the master key was read from the systemd credential in $CREDENTIALS_DIRECTORY; run this command outside the service, where it rotates the configured file {0}")]
    Credential(PathBuf),
    #[error("the new master key is the key already in use")]
    SameKey,
    #[error("{0} already exists; move it away before keeping another old key there")]
    OldCopyExists(PathBuf),
    #[error("{path} is left from an interrupted rotation but cannot be read ({source}); if `rapport check` passes with the configured key, remove it and run the command again")]
    PendingUnreadable { path: PathBuf, source: KeyError },
    #[error("cannot move {from} to {to}: {source}")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
    #[error("no tenant with slug {0:?}")]
    UnknownTenant(String),
    #[error("the master key was rotated, but its audit entry could not be written: {0}")]
    AuditAfterRotation(AuditError),
    #[error(transparent)]
    Context(ContextError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Tenant(#[from] TenantError),
}

impl From<StoreError> for RotationError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Locked(_) => Self::ServerRunning,
            other => Self::Store(other),
        }
    }
}

impl From<ContextError> for RotationError {
    fn from(error: ContextError) -> Self {
        match error {
            ContextError::Store(store) => store.into(),
            other => Self::Context(other),
        }
    }
}

/// Runs a `rapport keys …` command; the `Err` is the message printed after `error: `.
pub(crate) fn run(command: KeysCommand) -> Result<(), String> {
    crate::telemetry::init_for_command();
    match command {
        KeysCommand::RotateMaster {
            config,
            new_key_file,
            keep_old,
        } => {
            let config = Config::load(&config.path).map_err(|error| error.to_string())?;
            let done = rotate_master(&config, new_key_file.as_deref(), keep_old)
                .map_err(|error| error.to_string())?;
            println!("{}", done.summary());
            if let Some(file) = new_key_file {
                println!(
                    "the new key is also still in {}; remove that copy unless you need it",
                    file.display()
                );
            }
            Ok(())
        }
        KeysCommand::RotateTenant {
            config,
            tenant,
            max_records,
        } => {
            let config = Config::load(&config.path).map_err(|error| error.to_string())?;
            let context = AppContext::open(config, OpenMode::ExistingOnly)
                .map_err(|error| RotationError::from(error).to_string())?;
            let done = rotate_tenant(&context, &tenant, max_records, |line| {
                eprintln!("{line}");
            })
            .map_err(|error| error.to_string())?;
            println!("{}", done.summary());
            Ok(())
        }
    }
}

/// What a master rotation did.
#[derive(Clone, Debug)]
pub struct MasterRotated {
    pub old_fingerprint: String,
    pub new_fingerprint: String,
    pub wrapped_keys: usize,
    pub key_file: PathBuf,
    /// Where the old key was kept (`--keep-old`).
    pub old_copy: Option<PathBuf>,
    /// True when this run only finished a rotation that an earlier run had committed.
    pub finished_interrupted: bool,
}

impl MasterRotated {
    pub fn summary(&self) -> String {
        let mut text = if self.finished_interrupted {
            format!(
                "finished an interrupted master key rotation: {} now holds the key with fingerprint {}",
                self.key_file.display(),
                self.new_fingerprint
            )
        } else {
            format!(
                "master key rotated: fingerprint {} replaced by {}; {} wrapped keys re-wrapped; {} holds the new key",
                self.old_fingerprint,
                self.new_fingerprint,
                self.wrapped_keys,
                self.key_file.display()
            )
        };
        if let Some(old) = &self.old_copy {
            let _ = write!(text, "; the old key is kept in {}", old.display());
        }
        text
    }
}

/// `<file>.old`.
fn old_copy_path(configured: &Path) -> PathBuf {
    let mut name = configured.as_os_str().to_owned();
    name.push(".old");
    PathBuf::from(name)
}

/// Rotates the master key of the database `config` names (see the module comment for the order
/// of steps and what a crash at each leaves). The server must be stopped.
pub fn rotate_master(
    config: &Config,
    new_key_file: Option<&Path>,
    keep_old: bool,
) -> Result<MasterRotated, RotationError> {
    let configured = config.storage.master_key_file.clone();
    if MasterKey::load(&configured)?.from_credential() {
        return Err(RotationError::Credential(configured));
    }
    let pending = pending_path(&configured);
    let old_copy = old_copy_path(&configured);
    if pending.exists() {
        if let Some(done) = finish_interrupted(config, &pending, &old_copy, keep_old)? {
            return Ok(done);
        }
    }
    if keep_old && old_copy.exists() {
        return Err(RotationError::OldCopyExists(old_copy));
    }
    let context = AppContext::open(config.clone(), OpenMode::ExistingOnly)?;
    let new = match new_key_file {
        Some(path) => MasterKey::load_file(path)?,
        None => MasterKey::generate(&configured),
    };
    if new.fingerprint() == context.store.master().fingerprint() {
        return Err(RotationError::SameKey);
    }
    if keep_old {
        MasterKey::load_file(&configured)?.write_new_file(&old_copy)?;
    }
    // 1. The new key beside the old one, durable before the database depends on it.
    new.write_new_file(&pending)?;
    // 2. One transaction re-wraps every key and records the new fingerprint.
    let rotation = context.store.rotate_master(new)?;
    // 3. Audited before the rename; a failure here still lets the rename happen, so the key file
    //    matches the database, and is reported afterwards.
    let audited = context.audit(AuditEvent::new(
        None,
        Actor::cli(),
        AuditAction::KeysMasterRotated,
        format!(
            "master key {} replaced by {} ({} wrapped keys re-wrapped)",
            rotation.old_fingerprint, rotation.new_fingerprint, rotation.wrapped_keys
        ),
    ));
    // 4. The configured file now names the key the database needs.
    replace_key_file(&pending, &configured)?;
    audited.map_err(RotationError::AuditAfterRotation)?;
    Ok(MasterRotated {
        old_fingerprint: rotation.old_fingerprint,
        new_fingerprint: rotation.new_fingerprint,
        wrapped_keys: rotation.wrapped_keys,
        key_file: configured,
        old_copy: keep_old.then_some(old_copy),
        finished_interrupted: false,
    })
}

/// A `<file>.new` exists. If the database opens with it, an earlier run committed its re-wrap but
/// not its rename: audit and rename now. If it does not, the earlier run stopped before its commit:
/// the file is stale and is removed (`None`: go on with a fresh rotation).
fn finish_interrupted(
    config: &Config,
    pending: &Path,
    old_copy: &Path,
    keep_old: bool,
) -> Result<Option<MasterRotated>, RotationError> {
    let configured = config.storage.master_key_file.clone();
    let candidate =
        MasterKey::load_file(pending).map_err(|source| RotationError::PendingUnreadable {
            path: pending.to_path_buf(),
            source,
        })?;
    let mut pending_config = config.clone();
    pending_config.storage.master_key_file = pending.to_path_buf();
    match AppContext::open(pending_config, OpenMode::ExistingOnly) {
        Ok(context) => {
            let previous = MasterKey::load_file(&configured).ok();
            if keep_old && !old_copy.exists() {
                if let Some(previous) = &previous {
                    previous.write_new_file(old_copy)?;
                }
            }
            let old_fingerprint =
                previous.map_or_else(|| "unknown".to_owned(), |key| key.fingerprint_hex());
            let new_fingerprint = candidate.fingerprint_hex();
            context.audit(AuditEvent::new(
                None,
                Actor::cli(),
                AuditAction::KeysMasterRotated,
                format!(
                    "master key {old_fingerprint} replaced by {new_fingerprint} (an interrupted rotation finished)"
                ),
            ))?;
            drop(context);
            replace_key_file(pending, &configured)?;
            Ok(Some(MasterRotated {
                old_fingerprint,
                new_fingerprint,
                wrapped_keys: 0,
                key_file: configured,
                old_copy: (keep_old && old_copy.exists()).then(|| old_copy.to_path_buf()),
                finished_interrupted: true,
            }))
        }
        Err(ContextError::Store(StoreError::WrongMasterKey { .. })) => {
            std::fs::remove_file(pending).map_err(|source| KeyError::Write {
                path: pending.to_path_buf(),
                source,
            })?;
            sync_parent(pending)?;
            Ok(None)
        }
        Err(other) => Err(other.into()),
    }
}

fn replace_key_file(pending: &Path, configured: &Path) -> Result<(), RotationError> {
    std::fs::rename(pending, configured).map_err(|source| RotationError::Rename {
        from: pending.to_path_buf(),
        to: configured.to_path_buf(),
        source,
    })?;
    sync_parent(configured)?;
    Ok(())
}

/// What a tenant rotation run did.
#[derive(Clone, Debug)]
pub struct TenantRotated {
    pub slug: String,
    /// The tenant's current data key.
    pub current: KeyId,
    /// Whether this run created the current key (false: it resumed an earlier rotation).
    pub started: bool,
    pub resealed: u64,
    /// Values still sealed under an older key after this run.
    pub remaining: u64,
    /// Older keys removed by this run.
    pub retired: Vec<KeyId>,
}

impl TenantRotated {
    pub fn summary(&self) -> String {
        if self.remaining == 0 {
            format!(
                "tenant {}: data key {} is current; {} records re-sealed; {} older keys retired",
                self.slug,
                self.current,
                self.resealed,
                self.retired.len()
            )
        } else {
            format!(
                "tenant {}: data key {} is current; {} records re-sealed, {} still under an older key; run the command again to continue",
                self.slug, self.current, self.resealed, self.remaining
            )
        }
    }
}

/// Starts or resumes the rotation of the tenant's data key, re-sealing at most `budget` records;
/// `progress` receives a line (done / total, rate, time left) after every batch.
pub fn rotate_tenant(
    context: &AppContext,
    slug: &str,
    budget: Option<u64>,
    mut progress: impl FnMut(&str),
) -> Result<TenantRotated, RotationError> {
    let tenant = context
        .tenants
        .find_by_slug(slug)?
        .ok_or_else(|| RotationError::UnknownTenant(slug.to_owned()))?;
    let scope = Scope::Tenant(tenant.id);
    let store = &context.store;
    let before = store.data_key_usage(scope)?;
    // An older key still present means an earlier rotation has not finished: resume it rather
    // than add a third key.
    let started = before.older.is_empty();
    let (current, total) = if started {
        let total = before.values.values().sum::<u64>();
        (store.add_data_key(scope)?, total)
    } else {
        (before.current, before.outdated())
    };
    context.audit(AuditEvent::new(
        Some(tenant.id),
        Actor::cli(),
        AuditAction::KeysTenantRotated,
        format!(
            "data key rotation {} (key {current}, {total} records to re-seal)",
            if started { "started" } else { "resumed" }
        ),
    ))?;
    let clock = Instant::now();
    let report = store.reseal_scope(scope, budget, |step| {
        progress(&progress_line(
            step.resealed,
            total,
            clock.elapsed().as_secs_f64(),
        ));
    })?;
    let retired = if report.complete {
        store.retire_unused_data_keys(scope)?
    } else {
        Vec::new()
    };
    let remaining = store.data_key_usage(scope)?.outdated();
    if report.complete && remaining == 0 {
        let retired_ids: Vec<String> = retired.iter().map(ToString::to_string).collect();
        context.audit(AuditEvent::new(
            Some(tenant.id),
            Actor::cli(),
            AuditAction::KeysTenantRotated,
            format!(
                "data key rotation completed (key {current}, {} records re-sealed in this run, retired {})",
                report.resealed,
                if retired_ids.is_empty() {
                    "no key".to_owned()
                } else {
                    retired_ids.join(", ")
                }
            ),
        ))?;
    }
    Ok(TenantRotated {
        slug: tenant.slug.to_string(),
        current,
        started,
        resealed: report.resealed,
        remaining,
        retired,
    })
}

/// `re-sealed 1024/5000 records (850 records/s, about 5 s left)`.
fn progress_line(done: u64, total: u64, seconds: f64) -> String {
    #[allow(clippy::cast_precision_loss)] // record counts stay far below 2^52
    let rate = if seconds > 0.0 {
        done as f64 / seconds
    } else {
        0.0
    };
    #[allow(clippy::cast_precision_loss)]
    let left = if rate > 0.0 {
        format!(
            "about {:.0} s left",
            total.saturating_sub(done) as f64 / rate
        )
    } else {
        "time left unknown".to_owned()
    };
    format!("re-sealed {done}/{total} records ({rate:.0} records/s, {left})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_line_shows_counts_rate_and_time_left() {
        assert_eq!(
            progress_line(500, 2000, 2.0),
            "re-sealed 500/2000 records (250 records/s, about 6 s left)"
        );
        assert_eq!(
            progress_line(0, 10, 0.0),
            "re-sealed 0/10 records (0 records/s, time left unknown)"
        );
    }

    #[test]
    fn pending_and_old_copies_sit_beside_the_key_file() {
        let configured = Path::new("/etc/rapport/master.key");
        assert_eq!(
            pending_path(configured),
            Path::new("/etc/rapport/master.key.new")
        );
        assert_eq!(
            old_copy_path(configured),
            Path::new("/etc/rapport/master.key.old")
        );
    }
}
