//! Backups: one sealed, versioned, checksummed file holding a consistent snapshot of the whole
//! appliance — every record of the database, the audit log up to its last synced entry, and the
//! erasure ledger — taken while the server runs; and the restore that turns such a file into a
//! new data directory, verifies it and re-applies the erasure ledger.
//!
//! File layout (all integers big-endian):
//!
//! ```text
//! "RAPPORT-BACKUP\0\x01"           16 bytes, the magic
//! header length (u32) || header    JSON: format, created, rapport_version, key_id, salt, nonce
//! sealed stream                    crypto::stream chunks, the header bound to each as AAD
//! "RAPPORT-BKP-END\0"              16 bytes
//! SHA-256                          of every byte before this trailer
//! ```
//!
//! Inside the sealed stream is a sequence of `MessagePack` [`Item`]s: for each database tree its
//! name and then its records (key and value exactly as stored, so still sealed under the tenant
//! and subject keys), then each file (audit segments, the erasure ledger) in pieces, then the
//! totals. The backup key is derived from the master key and the backup's random salt
//! ([`MasterKey::derive`]); the restore needs the master key anyway, since tenant keys are wrapped
//! under it. `key_id`, also derived from the master key, tells a foreign backup (another appliance,
//! or one taken before `rapport keys rotate-master`) from a damaged one before anything is
//! decrypted; the checksum tells damage from a wrong key.
//!
//! Consistency comes from [`Store::snapshot`] (records as of one instant, across all trees, while
//! writes go on); the audit files are copied up to the entry synced after that instant (the audit
//! head the database mirrors never points past it), and the ledger as of the end of the copy (an
//! erasure after the instant is then re-applied by the restore too).

pub mod cli;
pub mod control;
pub mod scheduled;

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audit::{Actor, AuditAction, AuditEvent};
use crate::config::Config;
use crate::context::AppContext;
use crate::crypto::stream::{OpeningReader, SealingWriter, NONCE_PREFIX};
use crate::crypto::{random_bytes, SecretKey};
use crate::privacy::ledger;
use crate::store::{MasterKey, OpenMode, Store, StoreSettings};

const MAGIC: &[u8; 16] = b"RAPPORT-BACKUP\0\x01";
const TRAILER: &[u8; 16] = b"RAPPORT-BKP-END\0";
/// The format this version writes and reads.
pub const FORMAT: u32 = 1;
const MAX_HEADER: u32 = 64 * 1024;
/// Bytes of a file per [`Item::Bytes`].
const FILE_PIECE: usize = 1024 * 1024;
const KEY_DOMAIN: &str = "rapport/backup-key/v1";
const KEY_ID_DOMAIN: &str = "rapport/backup-key-id/v1";
/// Where the audit segments live in a data directory, and in a backup's file names.
const AUDIT_DIR: &str = "audit";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Key(#[from] crate::store::KeyError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Ledger(#[from] ledger::LedgerError),
    #[error(transparent)]
    Context(#[from] crate::context::ContextError),
    #[error("re-applying the erasure ledger failed: {0}")]
    Erasure(#[from] crate::privacy::erasure::ErasureError),
    #[error("{0} is not a Rapport backup (it does not start with a backup's header)")]
    NotABackup(PathBuf),
    #[error("{path} has backup format {found}; this rapport reads format {FORMAT} (restore it with a newer rapport)")]
    NewerFormat { path: PathBuf, found: u32 },
    #[error("{path} was sealed under another master key (its key id is {found}, this configuration's master key gives {ours}): it is another appliance's backup, or it was taken before `rapport keys rotate-master`{hint}")]
    Foreign {
        path: PathBuf,
        found: String,
        ours: String,
        hint: String,
    },
    #[error("{path} is damaged: {problem}; nothing was restored")]
    Damaged { path: PathBuf, problem: String },
    #[error("{0} is not empty: a restore only writes into an empty or new directory")]
    TargetNotEmpty(PathBuf),
    /// The running server or the stopped database could not be reached (the message says how).
    #[error("{0}")]
    Unavailable(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The plaintext header; bound to every sealed chunk as associated data.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Header {
    pub format: u32,
    pub created: DateTime<Utc>,
    pub rapport_version: String,
    /// Names the master key the backup key was derived from (never the key).
    pub key_id: String,
    salt: String,
    nonce: String,
}

/// What a backup holds, counted as it is written and checked by the restore.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// The lowest id the database had not handed out at the snapshot.
    pub next_id: u64,
    pub trees: u64,
    pub records: u64,
    pub files: u64,
    pub file_bytes: u64,
}

/// One element of the sealed stream (written borrowed, read owned; both encode alike).
#[derive(Serialize)]
enum Item<'a> {
    Tree {
        #[serde(with = "serde_bytes")]
        name: &'a [u8],
    },
    Record {
        #[serde(with = "serde_bytes")]
        key: &'a [u8],
        #[serde(with = "serde_bytes")]
        value: &'a [u8],
    },
    File {
        name: &'a str,
        length: u64,
    },
    Bytes {
        #[serde(with = "serde_bytes")]
        bytes: &'a [u8],
    },
    End(Totals),
}

#[derive(Deserialize)]
enum OwnedItem {
    Tree {
        #[serde(with = "serde_bytes")]
        name: Vec<u8>,
    },
    Record {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    File {
        name: String,
        length: u64,
    },
    Bytes {
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    End(Totals),
}

/// The id that names `master`'s backups.
pub fn key_id(master: &MasterKey) -> String {
    hex::encode(&master.derive(KEY_ID_DOMAIN, b"").expose_bytes()[..16])
}

/// Counts the bytes passing through and their SHA-256.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// What [`write`] wrote.
#[derive(Clone, Debug)]
pub struct Written {
    pub totals: Totals,
    pub bytes: u64,
    pub sha256: String,
    pub created: DateTime<Utc>,
}

/// Progress of a long backup or restore: records and file bytes so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    pub records: u64,
    pub file_bytes: u64,
}

fn encode(out: &mut impl Write, item: &Item<'_>) -> std::io::Result<()> {
    rmp_serde::encode::write(out, item).map_err(std::io::Error::other)
}

/// Writes a backup of the appliance `context` opened to `out`: a consistent snapshot taken now,
/// while other threads go on writing. `progress` is called every 10,000 records and per file.
/// Audited as `backup.created` once the last byte is written (`out` is flushed, not synced).
pub fn write<W: Write>(
    context: &AppContext,
    out: W,
    actor: Actor,
    progress: &mut dyn FnMut(Progress),
) -> Result<(W, Written), BackupError> {
    let stream = Path::new("the backup stream");
    let master = context.store.master();
    let salt = random_bytes::<32>();
    let nonce = random_bytes::<NONCE_PREFIX>();
    let created = Utc::now();
    let header = Header {
        format: FORMAT,
        created,
        rapport_version: env!("CARGO_PKG_VERSION").to_owned(),
        key_id: key_id(&master),
        salt: hex::encode(salt),
        nonce: hex::encode(nonce),
    };
    let header_bytes = serde_json::to_vec(&header).map_err(|error| io(stream)(error.into()))?;
    let mut hashing = Hashing {
        inner: out,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let length = u32::try_from(header_bytes.len()).unwrap_or(u32::MAX);
    hashing
        .write_all(MAGIC)
        .and_then(|()| hashing.write_all(&length.to_be_bytes()))
        .and_then(|()| hashing.write_all(&header_bytes))
        .map_err(io(stream))?;
    let key = master.derive(KEY_DOMAIN, &salt);
    let mut sealer = BufWriter::with_capacity(
        256 * 1024,
        SealingWriter::new(hashing, &key, &nonce, &header_bytes),
    );
    let mut done = Progress::default();
    // No audit segment is pruned between the snapshot (which holds the pruning anchor) and the
    // copy of the segment files.
    let segments_guard = context.audit_log.hold_segments()?;
    let snapshot = context.store.snapshot()?;
    let audit_files = context.audit_log.durable_files()?;
    let mut totals = write_records(&snapshot, &mut sealer, &mut done, progress)?;
    drop(snapshot);
    for (path, length) in audit_files {
        let name = format!(
            "{AUDIT_DIR}/{}",
            path.file_name().unwrap_or_default().to_string_lossy()
        );
        let file = File::open(&path).map_err(io(&path))?;
        copy_file(&mut sealer, &name, file.take(length), length, &mut totals)?;
        done.file_bytes += length;
        progress(done);
    }
    drop(segments_guard);
    let ledger_bytes = ledger::current_bytes(context)?;
    let ledger_length = ledger_bytes.len() as u64;
    copy_file(
        &mut sealer,
        ledger::FILE_NAME,
        ledger_bytes.as_slice(),
        ledger_length,
        &mut totals,
    )?;
    encode(&mut sealer, &Item::End(totals)).map_err(io(stream))?;
    let hashing = sealer
        .into_inner()
        .map_err(|error| io(stream)(error.into_error()))?
        .finish()
        .map_err(io(stream))?;
    let Hashing {
        mut inner,
        hasher,
        bytes,
    } = hashing;
    let digest = hasher.finalize();
    inner
        .write_all(TRAILER)
        .and_then(|()| inner.write_all(&digest))
        .and_then(|()| inner.flush())
        .map_err(io(stream))?;
    let written = Written {
        totals,
        bytes: bytes + (TRAILER.len() + digest.len()) as u64,
        sha256: hex::encode(digest),
        created,
    };
    context.audit(AuditEvent::new(
        None,
        actor,
        AuditAction::BackupCreated,
        format!(
            "backup of {} records in {} trees and {} files ({} bytes), sha256 {}",
            totals.records, totals.trees, totals.files, written.bytes, written.sha256
        ),
    ))?;
    Ok((inner, written))
}

/// Writes every tree of `snapshot` with its records; the totals so far.
fn write_records(
    snapshot: &crate::store::Snapshot<'_>,
    sealer: &mut impl Write,
    done: &mut Progress,
    progress: &mut dyn FnMut(Progress),
) -> Result<Totals, BackupError> {
    let stream = Path::new("the backup stream");
    let mut totals = Totals {
        next_id: snapshot.next_id(),
        ..Totals::default()
    };
    for (index, name) in snapshot.trees().iter().enumerate() {
        encode(sealer, &Item::Tree { name }).map_err(io(stream))?;
        totals.trees += 1;
        totals.records += snapshot.read_tree(index, |key, value| {
            encode(sealer, &Item::Record { key, value }).map_err(io(stream))?;
            done.records += 1;
            if done.records % 10_000 == 0 {
                progress(*done);
            }
            Ok::<(), BackupError>(())
        })?;
    }
    Ok(totals)
}

fn copy_file(
    sealer: &mut impl Write,
    name: &str,
    mut from: impl Read,
    length: u64,
    totals: &mut Totals,
) -> Result<(), BackupError> {
    let stream = Path::new("the backup stream");
    encode(sealer, &Item::File { name, length }).map_err(io(stream))?;
    let mut buffer = vec![0u8; FILE_PIECE];
    let mut left = length;
    while left > 0 {
        let want = usize::try_from(left.min(FILE_PIECE as u64)).unwrap_or(FILE_PIECE);
        from.read_exact(&mut buffer[..want])
            .map_err(io(Path::new(name)))?;
        encode(
            sealer,
            &Item::Bytes {
                bytes: &buffer[..want],
            },
        )
        .map_err(io(stream))?;
        left -= want as u64;
    }
    totals.files += 1;
    totals.file_bytes += length;
    Ok(())
}

/// A backup file whose header was read and whose checksum and key id were checked.
pub struct Verified {
    pub header: Header,
    header_bytes: Vec<u8>,
    /// Where the sealed stream starts.
    stream_start: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// Reads `path`'s header and checks its format, its key id against `master` and its checksum:
/// a foreign, newer or damaged backup is refused before anything is decrypted.
pub fn verify(path: &Path, master: &MasterKey) -> Result<Verified, BackupError> {
    verify_with(path, Some(master))
}

/// Like [`verify`] without the key check, for a user who cannot read the master key.
pub fn verify_checksum(path: &Path) -> Result<Verified, BackupError> {
    verify_with(path, None)
}

fn verify_with(path: &Path, master: Option<&MasterKey>) -> Result<Verified, BackupError> {
    let damaged = |problem: &str| BackupError::Damaged {
        path: path.to_path_buf(),
        problem: problem.to_owned(),
    };
    let mut file = File::open(path).map_err(io(path))?;
    let bytes = file.metadata().map_err(io(path))?.len();
    let mut magic = [0u8; 16];
    if file.read_exact(&mut magic).is_err() || &magic != MAGIC {
        return Err(BackupError::NotABackup(path.to_path_buf()));
    }
    let mut length = [0u8; 4];
    file.read_exact(&mut length)
        .map_err(|_| damaged("it ends inside its header"))?;
    let length = u32::from_be_bytes(length);
    if length > MAX_HEADER {
        return Err(damaged("its header length is implausible"));
    }
    let mut header_bytes = vec![0u8; length as usize];
    file.read_exact(&mut header_bytes)
        .map_err(|_| damaged("it ends inside its header"))?;
    let stream_start = 16 + 4 + u64::from(length);
    let trailer = (TRAILER.len() + 32) as u64;
    if bytes < stream_start + trailer {
        return Err(damaged("it is cut short (no trailer)"));
    }
    file.seek(SeekFrom::Start(0)).map_err(io(path))?;
    let mut hasher = Sha256::new();
    std::io::copy(
        &mut BufReader::with_capacity(1024 * 1024, (&mut file).take(bytes - trailer)),
        &mut hasher,
    )
    .map_err(io(path))?;
    let mut end = [0u8; TRAILER.len() + 32];
    file.read_exact(&mut end).map_err(io(path))?;
    if &end[..TRAILER.len()] != TRAILER {
        return Err(damaged(
            "it is cut short or has bytes after its end (no trailer)",
        ));
    }
    let digest = hasher.finalize();
    if digest.as_slice() != &end[TRAILER.len()..] {
        return Err(damaged(
            "its checksum does not match (bytes were altered, lost or added)",
        ));
    }
    let header: Header =
        serde_json::from_slice(&header_bytes).map_err(|_| damaged("its header does not parse"))?;
    if header.format > FORMAT {
        return Err(BackupError::NewerFormat {
            path: path.to_path_buf(),
            found: header.format,
        });
    }
    // After the checksum: a flipped byte in the header reads as damage, not as another key.
    if let Some(master) = master {
        check_key_id(path, &header, master)?;
    }
    Ok(Verified {
        header,
        header_bytes,
        stream_start,
        bytes,
        sha256: hex::encode(digest),
    })
}

/// Refuses a backup whose key id is not `master`'s, saying whether the previous master key
/// (kept by a rotation) would open it.
fn check_key_id(path: &Path, header: &Header, master: &MasterKey) -> Result<(), BackupError> {
    let ours = key_id(master);
    if header.key_id == ours {
        return Ok(());
    }
    let old = keys_old_path(master.configured_file());
    let hint = match MasterKey::load_file(&old) {
        Ok(previous) if key_id(&previous) == header.key_id => format!(
            "; it matches the previous master key kept in {}: restore with a configuration whose master_key_file is that file, then rotate",
            old.display()
        ),
        _ => String::new(),
    };
    Err(BackupError::Foreign {
        path: path.to_path_buf(),
        found: header.key_id.clone(),
        ours,
        hint,
    })
}

/// `rapport keys rotate-master --keep-old` keeps the previous key here.
fn keys_old_path(configured: &Path) -> PathBuf {
    let mut name = configured.as_os_str().to_owned();
    name.push(".old");
    PathBuf::from(name)
}

/// What [`restore`] did.
#[derive(Clone, Debug)]
pub struct Restored {
    pub created: DateTime<Utc>,
    pub totals: Totals,
    pub audit_entries: u64,
    /// Which erasure ledger was re-applied, and what it erased again.
    pub ledger: PathBuf,
    pub reapplied: ledger::ReapplyReport,
}

/// Restores the backup `from` into `data_dir`, which must be empty or absent, for the appliance
/// of `config` (its master key): checks the file (see [`verify`]), loads every record and file,
/// checks the totals, opens the result (proving the master key), verifies the audit chain, and
/// re-applies the erasure ledger: the live one of `config`'s data directory when it has one,
/// else the backup's own. On any failure the directory is left as it was found.
pub fn restore(
    config: &Config,
    from: &Path,
    data_dir: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<Restored, BackupError> {
    let master = MasterKey::load(&config.storage.master_key_file)?;
    let verified = verify(from, &master)?;
    let existed = data_dir.exists();
    if existed
        && fs::read_dir(data_dir)
            .map_err(io(data_dir))?
            .next()
            .is_some()
    {
        return Err(BackupError::TargetNotEmpty(data_dir.to_path_buf()));
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(io(data_dir))?;
    let result = restore_into(config, master, from, &verified, data_dir, progress);
    if result.is_err() {
        // Nothing half-written stays behind: the directory goes back to empty (or absent).
        let cleaned = if existed {
            fs::read_dir(data_dir).and_then(|entries| {
                for entry in entries {
                    let path = entry?.path();
                    if path.is_dir() {
                        fs::remove_dir_all(&path)?;
                    } else {
                        fs::remove_file(&path)?;
                    }
                }
                Ok(())
            })
        } else {
            fs::remove_dir_all(data_dir)
        };
        if let Err(error) = cleaned {
            tracing::warn!(%error, "a failed restore's files were not all removed");
        }
    }
    result
}

fn restore_into(
    config: &Config,
    master: MasterKey,
    from: &Path,
    verified: &Verified,
    data_dir: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<Restored, BackupError> {
    let damaged = |problem: String| BackupError::Damaged {
        path: from.to_path_buf(),
        problem,
    };
    let salt: [u8; 32] = hex::decode(&verified.header.salt)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| damaged("its header's salt is malformed".to_owned()))?;
    let nonce: [u8; NONCE_PREFIX] = hex::decode(&verified.header.nonce)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| damaged("its header's nonce is malformed".to_owned()))?;
    let key: SecretKey = master.derive(KEY_DOMAIN, &salt);
    let mut file = File::open(from).map_err(io(from))?;
    file.seek(SeekFrom::Start(verified.stream_start))
        .map_err(io(from))?;
    let opened = OpeningReader::new(
        BufReader::with_capacity(1024 * 1024, file),
        &key,
        &nonce,
        &verified.header_bytes,
    );
    let mut reader = BufReader::with_capacity(256 * 1024, opened);
    let settings = StoreSettings {
        data_dir: data_dir.to_path_buf(),
        cache_capacity_bytes: config.cache_capacity_bytes(),
        min_free_disk_bytes: config.min_free_disk_bytes(),
    };
    let mut writer = Store::restore_writer(&settings)?;
    let totals =
        read_items(&mut reader, &mut writer, data_dir, progress).map_err(|error| match error {
            BackupError::Damaged { problem, .. } => damaged(problem),
            other => other,
        })?;
    writer.finish(totals.next_id)?;
    let live_ledger = config.storage.data_dir.join(ledger::FILE_NAME);
    let mut restored_config = config.clone();
    restored_config.storage.data_dir = data_dir.to_path_buf();
    drop(master);
    let context = AppContext::open(restored_config, OpenMode::ExistingOnly)?;
    let audit_entries = context.audit_log.verify()?.entries;
    let ledger_path = choose_ledger(&context, &live_ledger)?;
    let reapplied = ledger::reapply(&context)?;
    context.audit(AuditEvent::new(
        None,
        Actor::cli(),
        AuditAction::BackupRestored,
        format!(
            "restored a backup of {} taken {} ({} records, sha256 {}); erasure ledger re-applied: {} records deleted, {} mentions redacted, {} keys destroyed again",
            verified.header.rapport_version,
            verified.header.created.to_rfc3339(),
            totals.records,
            verified.sha256,
            reapplied.records_deleted,
            reapplied.mentions_redacted,
            reapplied.keys_destroyed
        ),
    ))?;
    Ok(Restored {
        created: verified.header.created,
        totals,
        audit_entries,
        ledger: ledger_path,
        reapplied,
    })
}

/// Reads the sealed stream's items into `writer` (records) and `data_dir` (files), up to and
/// including the totals, and checks them. Errors name no path: the caller adds the backup's.
fn read_items(
    reader: &mut impl Read,
    writer: &mut crate::store::RestoreWriter,
    data_dir: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<Totals, BackupError> {
    let damaged = |problem: String| BackupError::Damaged {
        path: PathBuf::new(),
        problem,
    };
    let mut files = Totals::default();
    let mut done = Progress::default();
    let totals = loop {
        let item: OwnedItem = rmp_serde::from_read(&mut *reader)
            .map_err(|error| damaged(format!("its contents do not read ({error})")))?;
        match item {
            OwnedItem::Tree { name } => writer.tree(&name)?,
            OwnedItem::Record { key, value } => {
                writer.entry(&key, &value)?;
                done.records += 1;
                if done.records % 10_000 == 0 {
                    progress(done);
                }
            }
            OwnedItem::File { name, length } => {
                restore_file(reader, data_dir, &name, length, &mut files)?;
                done.file_bytes += length;
                progress(done);
            }
            OwnedItem::Bytes { .. } => {
                return Err(damaged("file bytes outside a file".to_owned()));
            }
            OwnedItem::End(totals) => break totals,
        }
    };
    let mut rest = Vec::new();
    reader
        .read_to_end(&mut rest)
        .map_err(|error| damaged(error.to_string()))?;
    if !rest.is_empty() {
        return Err(damaged("it holds data after its totals".to_owned()));
    }
    if writer.entries() != totals.records
        || files.files != totals.files
        || files.file_bytes != totals.file_bytes
    {
        return Err(damaged(format!(
            "it lists {} records and {} files but holds {} and {}",
            totals.records,
            totals.files,
            writer.entries(),
            files.files
        )));
    }
    Ok(totals)
}

/// Only the file names a backup writes may be restored (never a path out of the directory).
fn restorable_name(name: &str) -> bool {
    if name == ledger::FILE_NAME {
        return true;
    }
    name.strip_prefix("audit/segment-")
        .and_then(|rest| rest.strip_suffix(".log"))
        .is_some_and(|digits| digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()))
}

fn restore_file(
    reader: &mut impl Read,
    data_dir: &Path,
    name: &str,
    length: u64,
    files: &mut Totals,
) -> Result<(), BackupError> {
    let damaged = |problem: String| BackupError::Damaged {
        path: PathBuf::new(),
        problem,
    };
    if !restorable_name(name) {
        return Err(damaged(format!("it holds an unexpected file {name:?}")));
    }
    let path = data_dir.join(name);
    if let Some(parent) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io(parent))?;
    }
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io(&path))?;
    let mut left = length;
    while left > 0 {
        let item: OwnedItem = rmp_serde::from_read(&mut *reader)
            .map_err(|error| damaged(format!("its contents do not read ({error})")))?;
        let OwnedItem::Bytes { bytes } = item else {
            return Err(damaged(format!("{name} ends early")));
        };
        if bytes.len() as u64 > left {
            return Err(damaged(format!("{name} is longer than it says")));
        }
        out.write_all(&bytes).map_err(io(&path))?;
        left -= bytes.len() as u64;
    }
    out.sync_all().map_err(io(&path))?;
    files.files += 1;
    files.file_bytes += length;
    Ok(())
}

/// Puts the erasure ledger to re-apply in place: the live one beside `config`'s database when it
/// exists, opens with this appliance's keys and knows at least as many erasures as the backup's
/// copy (the ledger is append-only, so the live one is the newer); else the backup's copy stays.
fn choose_ledger(context: &AppContext, live: &Path) -> Result<PathBuf, BackupError> {
    let restored = ledger::path(context);
    if !live.exists() || live == restored {
        return Ok(restored);
    }
    let from_backup = ledger::entries(context)?.len();
    let copy = restored.with_extension("from-backup");
    fs::rename(&restored, &copy)
        .or_else(|error| {
            if error.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(error)
            }
        })
        .map_err(io(&restored))?;
    fs::copy(live, &restored).map_err(io(live))?;
    match ledger::entries(context) {
        Ok(entries) if entries.len() >= from_backup => {
            let _ = fs::remove_file(&copy);
            Ok(live.to_path_buf())
        }
        outcome => {
            if let Err(error) = &outcome {
                tracing::warn!(%error, "the live erasure ledger does not open; the backup's copy is re-applied");
            }
            fs::rename(&copy, &restored).map_err(io(&restored))?;
            Ok(restored)
        }
    }
}
