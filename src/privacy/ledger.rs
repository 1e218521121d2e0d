//! The erasure ledger: an append-only, sealed record of every erasure on this appliance, kept
//! outside the database so that restoring an older backup of the database cannot resurrect an
//! erased subject — [`reapply`] erases again whatever the restored database still holds.
//!
//! Where: `<data_dir>/erasure-ledger`, a file of its own beside `db/` (not inside sled), appended
//! and `fsync`ed before the erasure deletes anything. A backup of the database is a copy of
//! `db/`; the ledger must outlive every such copy, so a restore replaces `db/` and keeps the live
//! ledger (issue 7's `rapport restore` calls [`reapply`] afterwards). It is not also kept inside
//! sled: a copy there would be restored with the old database, older than the live file.
//!
//! Format: frames of `length (u32, big-endian) || XChaCha20-Poly1305 seal`, each sealing the
//! `MessagePack` of a [`LedgerEntry`] with, as associated data, the SHA-256 of the previous frame,
//! so a removed, reordered or altered frame is detected. The key is derived from the appliance's
//! index key (`Store::erasure_ledger_key`): stable across master-key rotations and the same in a
//! restored copy of this appliance's database.
//!
//! An entry names the subject only by keyed tokens and key ids, never by an address: the tenant,
//! the tokens of the subject's names (`Store::subject_token`), the ids of the subject keys, the
//! ids of the records the erasure deleted, the time and the request's label.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::context::AppContext;
use crate::crypto;
use crate::ids::{KeyId, RecordId, RequestId, TenantId};
use crate::records::RecordKind;
use crate::store::StoreError;

pub const FILE_NAME: &str = "erasure-ledger";
const AAD_LABEL: &[u8] = b"rapport/erasure-ledger/v1\0";
/// Frames larger than this are refused as damage (an entry lists at most a subject's records).
const MAX_FRAME: usize = 256 * 1024 * 1024;

/// Appends from the threads of one process never interleave.
static APPEND: Mutex<()> = Mutex::new(());

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the erasure ledger {path} cannot be read or written: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the erasure ledger {path} is damaged at entry {entry}: {problem}")]
    Damaged {
        path: PathBuf,
        entry: usize,
        problem: &'static str,
    },
}

/// One erasure, as the ledger keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub tenant: TenantId,
    /// Keyed tokens (`Store::subject_token`) of the subject's e-mail addresses and phone numbers.
    pub subject_tokens: Vec<[u8; 32]>,
    /// The subject keys the erasure destroyed.
    pub subject_keys: Vec<KeyId>,
    /// The records the erasure deleted, by kind.
    pub records: Vec<(RecordKind, RecordId)>,
    /// Other people's interactions that mentioned the subject, whose mentions it redacted
    /// (`privacy::mentions`; matched again by `subject_tokens`). Absent in older entries.
    #[serde(default)]
    pub mentions: Vec<RecordId>,
    /// The privacy requests about the subject whose access packages the erasure deleted (a
    /// restored backup may hold them again). Absent in older entries.
    #[serde(default)]
    pub packages: Vec<RequestId>,
    pub time: DateTime<Utc>,
    /// The data-subject request's label, when the erasure completes one.
    pub request: Option<String>,
}

/// Where the ledger of the appliance whose data directory `context` opened lives.
pub fn path(context: &AppContext) -> PathBuf {
    context.store.data_dir().join(FILE_NAME)
}

fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> LedgerError + '_ {
    move |source| LedgerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn associated_data(previous: &[u8; 32]) -> Vec<u8> {
    let mut aad = AAD_LABEL.to_vec();
    aad.extend_from_slice(previous);
    aad
}

/// Every entry of the ledger, oldest first, with the digest of the last frame (all zeroes for an
/// empty or absent ledger). A damaged ledger is an error, never silently shortened.
fn read_all(context: &AppContext) -> Result<(Vec<LedgerEntry>, [u8; 32]), LedgerError> {
    let path = path(context);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(io(&path)(error)),
    };
    let key = context.store.erasure_ledger_key()?;
    let mut entries = Vec::new();
    let mut previous = [0u8; 32];
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let damaged = |problem| LedgerError::Damaged {
            path: path.clone(),
            entry: entries.len() + 1,
            problem,
        };
        let (length, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| damaged("truncated length"))?;
        let length = u32::from_be_bytes(*length) as usize;
        if length > MAX_FRAME || tail.len() < length {
            return Err(damaged("truncated entry"));
        }
        let (frame, tail) = tail.split_at(length);
        let plaintext = crypto::open(&key, &associated_data(&previous), frame)
            .map_err(|_| damaged("does not open (altered, reordered, or another appliance's)"))?;
        let entry: LedgerEntry =
            rmp_serde::from_slice(&plaintext).map_err(|_| damaged("does not decode"))?;
        entries.push(entry);
        previous = crypto::sha256(&[frame]);
        rest = tail;
    }
    Ok((entries, previous))
}

/// Every entry of the ledger, oldest first.
pub fn entries(context: &AppContext) -> Result<Vec<LedgerEntry>, LedgerError> {
    Ok(read_all(context)?.0)
}

/// Appends `entry` and `fsync`s the file (and, for a new file, its directory) before returning.
pub fn append(context: &AppContext, entry: &LedgerEntry) -> Result<(), LedgerError> {
    let _held = APPEND
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let path = path(context);
    let (_, previous) = read_all(context)?;
    let key = context.store.erasure_ledger_key()?;
    let plaintext = zeroize::Zeroizing::new(rmp_serde::to_vec_named(entry).map_err(|error| {
        StoreError::Decode {
            collection: "erasure ledger".to_owned(),
            message: error.to_string(),
        }
    })?);
    let frame = crypto::seal(&key, &associated_data(&previous), &plaintext);
    let length = u32::try_from(frame.len()).unwrap_or(u32::MAX);
    let created = !path.exists();
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io(&path))?;
    let mut bytes = length.to_be_bytes().to_vec();
    bytes.extend_from_slice(&frame);
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(io(&path))?;
    if created {
        crate::store::keys::sync_parent(&path).map_err(|_| LedgerError::Io {
            path: path.clone(),
            source: std::io::Error::other("cannot sync the data directory"),
        })?;
    }
    Ok(())
}

/// The ledger's bytes as they are now (empty when there is none), read between appends: what a
/// backup keeps, so that a restore without the live ledger still erases what it knew of.
pub fn current_bytes(context: &AppContext) -> Result<Vec<u8>, LedgerError> {
    let _held = APPEND
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let path = path(context);
    match fs::read(&path) {
        Ok(bytes) => Ok(bytes),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(io(&path)(error)),
    }
}

/// What [`reapply`] found still present in a (restored) database and erased again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReapplyReport {
    /// Ledger entries whose tenant this database holds.
    pub entries: usize,
    /// Records deleted again.
    pub records_deleted: u64,
    /// Subject keys destroyed again.
    pub keys_destroyed: u64,
    /// Interactions whose mentions of an erased subject were redacted again.
    pub mentions_redacted: u64,
}

/// Re-applies every erasure of the ledger to the database `context` opened (a restored, older
/// copy): deletes the records each entry deleted and every record sealed under its subject keys,
/// and destroys those keys again (by id and by token). Idempotent; audited per entry that still
/// found something, as `privacy.erasure_reapplied`.
pub fn reapply(context: &AppContext) -> Result<ReapplyReport, super::erasure::ErasureError> {
    let mut report = ReapplyReport::default();
    for entry in entries(context)? {
        if context.tenants.get(entry.tenant)?.is_none() {
            continue;
        }
        report.entries += 1;
        let again = super::erasure::reapply_entry(context, &entry)?;
        report.records_deleted += again.records_deleted;
        report.keys_destroyed += again.keys_destroyed;
        report.mentions_redacted += again.mentions_redacted;
    }
    Ok(report)
}
