//! Append-only, hash-chained, sealed segment files under `<data_dir>/audit/`.
//!
//! A segment is a sequence of frames:
//! `length (u32 BE, of what follows) || seq (u64 BE) || tenant (16 bytes, zeros for the appliance)
//! || key id (16) || nonce || ciphertext || tag`. The ciphertext is the `MessagePack` [`AuditEntry`];
//! the associated data binds seq, tenant and key id, so a frame moved or renumbered does not open.
//! Each entry holds the SHA-256 of the previous entry's plaintext, so a removed or re-sealed entry
//! breaks the chain. The newest synced (seq, hash, position) is mirrored in the store — at most once
//! a second, and when the log is dropped — so that truncating the tail is detected too, and so that
//! start-up resumes without reading the whole log.
//! Every append is `fsync`ed before it returns. Appends made at the same time share one `fsync`
//! (group commit): each writes its frames under the writer lock, then waits outside it until a
//! sync covers its end; the first waiter to find no sync running starts one for everything written
//! so far. A failed `fsync` stops the log: the entries it covered may not be durable, so nothing
//! more is acknowledged until a restart has re-read the files.
//!
//! **Pruning** ([`AuditLog::prune`]) deletes whole segments from the start of the log once every
//! entry in them has expired, never the open one. Before a segment file is deleted, the chain's
//! new start — the last pruned entry's seq and hash, and the first kept segment — is stored as the
//! *anchor* (sealed, flushed); [`AuditLog::verify`] starts from it, so the kept entries still
//! form one unbroken chain. A segment is closed for pruning by [`AuditLog::rotate`] (the nightly
//! task rotates a segment older than a week), so that pruning is precise to about a week.
//! [`AuditLog::hold_segments`] keeps pruning out while a backup copies the segments.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::audit::{AuditEntry, AuditEvent, AuditView};
use crate::crypto::{self, SecretKey};
use crate::ids::{KeyId, TenantId};
use crate::store::{Collection, Scope, Store, StoreError};

const SEGMENT_LIMIT_BYTES: u64 = 64 * 1024 * 1024;
const FRAME_FIXED: usize = 8 + 16 + 16;
const MAX_FRAME: u32 = 1024 * 1024;
const HEAD_KEY: &str = "head";
const ANCHOR_KEY: &str = "anchor";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit log is broken at entry {seq}: {reason}")]
    Broken { seq: u64, reason: String },
    #[error("audit log store: {0}")]
    Store(#[from] StoreError),
    #[error("audit log writer is unavailable after an earlier failure")]
    Poisoned,
}

/// Where the chain ends, mirrored in the store.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct ChainHead {
    seq: u64,
    hash: [u8; 32],
    segment: u32,
    offset: u64,
}

/// Where the kept chain starts after pruning: the last pruned entry, and the first kept segment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Anchor {
    /// The last pruned entry's seq: the first kept entry is `seq + 1`.
    seq: u64,
    /// The last pruned entry's hash: the first kept entry's `prev_hash`.
    hash: [u8; 32],
    /// Segments before this one are pruned (a file still there was being deleted in a crash).
    first_segment: u32,
}

/// What [`AuditLog::prune`] deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub segments: u32,
    pub entries: u64,
    /// The first entry kept, when anything was pruned.
    pub first_kept: Option<u64>,
}

impl ChainHead {
    /// Where the chain ends, ordered along the log.
    fn position(&self) -> (u32, u64) {
        (self.segment, self.offset)
    }
}

struct Writer {
    /// The end of everything written, durable or not.
    head: ChainHead,
    file: Option<Arc<File>>,
    /// Set when an `fsync` failed: nothing more is appended.
    stopped: bool,
    /// Set by [`AuditLog::rotate`]: the next entry starts a new segment.
    rotate_next: bool,
}

/// How far the log is known to be on disk.
struct Durable {
    /// The end of the chain as of the newest successful `fsync`.
    head: ChainHead,
    syncing: bool,
    failed: bool,
    /// When the chain's end was last mirrored in the store.
    mirrored_at: Option<Instant>,
}

/// How often, at most, the synced chain end is mirrored in the store.
const MIRROR_EVERY: Duration = Duration::from_secs(1);

/// The open audit log. One per process; appends are serialised by an internal lock.
pub struct AuditLog {
    store: Store,
    dir: PathBuf,
    key_id: KeyId,
    key: SecretKey,
    heads: Collection<&'static str, ChainHead>,
    anchors: Collection<&'static str, Anchor>,
    /// Held by pruning, and by a backup while it copies the segments.
    segments_guard: Mutex<()>,
    writer: Mutex<Writer>,
    durable: Mutex<Durable>,
    synced: Condvar,
    /// `fsync`s made for appends since the log was opened.
    syncs: AtomicU64,
}

/// What `verify` found when the chain is intact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries checked: every entry kept.
    pub entries: u64,
    pub segments: u32,
    /// The first entry kept (1 when nothing was pruned).
    pub first: u64,
}

struct Frame {
    seq: u64,
    tenant: Option<TenantId>,
    key_id: KeyId,
    sealed: Vec<u8>,
    end_offset: u64,
}

impl AuditLog {
    /// Opens the log of `store`'s data directory, creating it when absent, and resumes after the
    /// last complete entry (a frame torn by a crash mid-write was never acknowledged and is cut).
    pub fn open(store: &Store) -> Result<Self, AuditError> {
        let dir = store.data_dir().join("audit");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| AuditError::Io {
                path: dir.clone(),
                source,
            })?;
        let (key_id, key) = store.audit_key()?;
        let heads = store.collection::<&'static str, ChainHead>(Scope::Appliance, "audit_head")?;
        let anchors = store.collection::<&'static str, Anchor>(Scope::Appliance, "audit_anchor")?;
        let stored_head = heads.get(&HEAD_KEY)?.unwrap_or_default();
        let log = Self {
            store: store.clone(),
            dir,
            key_id,
            key,
            heads,
            anchors,
            segments_guard: Mutex::new(()),
            writer: Mutex::new(Writer {
                head: stored_head.clone(),
                file: None,
                stopped: false,
                rotate_next: false,
            }),
            durable: Mutex::new(Durable {
                head: stored_head.clone(),
                syncing: false,
                failed: false,
                mirrored_at: None,
            }),
            synced: Condvar::new(),
            syncs: AtomicU64::new(0),
        };
        let head = log.recover(stored_head)?;
        // What recovery read back is on disk.
        if let Ok(mut writer) = log.writer.lock() {
            writer.head = head.clone();
        }
        if let Ok(mut durable) = log.durable.lock() {
            durable.head = head;
        }
        Ok(log)
    }

    fn segment_path(&self, segment: u32) -> PathBuf {
        self.dir.join(format!("segment-{segment:08}.log"))
    }

    fn segments(&self) -> Result<Vec<u32>, AuditError> {
        let mut numbers = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(|source| AuditError::Io {
            path: self.dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(number) = name
                .strip_prefix("segment-")
                .and_then(|rest| rest.strip_suffix(".log"))
                .and_then(|digits| digits.parse::<u32>().ok())
            {
                numbers.push(number);
            }
        }
        numbers.sort_unstable();
        Ok(numbers)
    }

    /// The segments of the kept chain: a file before the anchor's first segment (left by a crash
    /// during pruning) is not part of it.
    fn kept_segments(&self) -> Result<Vec<u32>, AuditError> {
        let first = self.anchor()?.first_segment;
        Ok(self
            .segments()?
            .into_iter()
            .filter(|segment| *segment >= first)
            .collect())
    }

    /// Reads forward from the stored head through any entries written after it, checking them.
    fn recover(&self, stored: ChainHead) -> Result<ChainHead, AuditError> {
        let mut head = stored;
        let segments = self.segments()?;
        let start_segment = if head.segment == 0 { 1 } else { head.segment };
        for &segment in segments.iter().filter(|&&number| number >= start_segment) {
            let path = self.segment_path(segment);
            let start = if segment == head.segment {
                head.offset
            } else {
                0
            };
            let (frames, clean_end) = Self::read_frames(&path, start)?;
            for frame in frames {
                let (entry_hash, entry) = self.open_frame(&frame)?;
                if entry.seq != head.seq + 1 || entry.prev_hash != hex::encode(head.hash) {
                    return Err(AuditError::Broken {
                        seq: entry.seq,
                        reason: "does not follow the previous entry".to_owned(),
                    });
                }
                head = ChainHead {
                    seq: entry.seq,
                    hash: entry_hash,
                    segment,
                    offset: frame.end_offset,
                };
            }
            if let Some(end) = clean_end {
                // A torn final frame: the crash happened before its fsync returned.
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|source| AuditError::Io {
                        path: path.clone(),
                        source,
                    })?;
                file.set_len(end).map_err(|source| AuditError::Io {
                    path: path.clone(),
                    source,
                })?;
                head.segment = segment;
                head.offset = end;
            }
        }
        Ok(head)
    }

    /// Frames of `path` from `offset`; the second value is `Some(end)` when a torn frame follows.
    fn read_frames(path: &Path, offset: u64) -> Result<(Vec<Frame>, Option<u64>), AuditError> {
        let io = |source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        Self::parse_frames(path, offset, &bytes)
    }

    /// The first frame of `path`, reading only its bytes (`None`: the file holds no whole frame).
    fn first_frame(path: &Path) -> Result<Option<Frame>, AuditError> {
        let io = |source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        let mut bytes = Vec::new();
        (&mut file).take(4).read_to_end(&mut bytes).map_err(io)?;
        if let Ok(length) = <[u8; 4]>::try_from(bytes.as_slice()) {
            // An impossible length is read no further: the parse below names it.
            let length = u64::from(u32::from_be_bytes(length).min(MAX_FRAME + 1));
            file.take(length).read_to_end(&mut bytes).map_err(io)?;
        }
        Ok(Self::parse_frames(path, 0, &bytes)?.0.into_iter().next())
    }

    /// The frames in `bytes`, read from `path` at `offset`; the second value is `Some(end)` when
    /// a torn frame follows.
    fn parse_frames(
        path: &Path,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(Vec<Frame>, Option<u64>), AuditError> {
        let mut frames = Vec::new();
        let mut position = 0usize;
        while position < bytes.len() {
            let Some(length_bytes) = bytes.get(position..position + 4) else {
                return Ok((frames, Some(offset + position as u64)));
            };
            let length = u32::from_be_bytes([
                length_bytes[0],
                length_bytes[1],
                length_bytes[2],
                length_bytes[3],
            ]);
            let body_start = position + 4;
            let body_end = body_start + length as usize;
            if length > MAX_FRAME || (length as usize) < FRAME_FIXED {
                return Err(AuditError::Broken {
                    seq: frames.last().map_or(0, |frame: &Frame| frame.seq) + 1,
                    reason: format!(
                        "frame at byte {} of {} has an impossible length",
                        offset + position as u64,
                        path.display()
                    ),
                });
            }
            let Some(body) = bytes.get(body_start..body_end) else {
                return Ok((frames, Some(offset + position as u64)));
            };
            let mut seq_bytes = [0u8; 8];
            seq_bytes.copy_from_slice(&body[..8]);
            let mut tenant_bytes = [0u8; 16];
            tenant_bytes.copy_from_slice(&body[8..24]);
            let mut key_bytes = [0u8; 16];
            key_bytes.copy_from_slice(&body[24..40]);
            frames.push(Frame {
                seq: u64::from_be_bytes(seq_bytes),
                tenant: (tenant_bytes != [0u8; 16]).then(|| TenantId::from_bytes(tenant_bytes)),
                key_id: KeyId::from_bytes(key_bytes),
                sealed: body[FRAME_FIXED..].to_vec(),
                end_offset: offset + body_end as u64,
            });
            position = body_end;
        }
        Ok((frames, None))
    }

    fn associated_data(seq: u64, tenant: Option<TenantId>, key_id: KeyId) -> Vec<u8> {
        let mut aad = b"rapport/audit/v1\0".to_vec();
        aad.extend_from_slice(&seq.to_be_bytes());
        aad.extend_from_slice(&tenant.map_or([0u8; 16], TenantId::to_bytes));
        aad.extend_from_slice(&key_id.to_bytes());
        aad
    }

    fn entry_hash(plaintext: &[u8]) -> [u8; 32] {
        crypto::sha256(&[b"rapport/audit-entry/v1\0", plaintext])
    }

    fn open_frame(&self, frame: &Frame) -> Result<([u8; 32], AuditEntry), AuditError> {
        let broken = |reason: &str| AuditError::Broken {
            seq: frame.seq,
            reason: reason.to_owned(),
        };
        if frame.key_id != self.key_id {
            return Err(broken("sealed under an unknown key"));
        }
        let aad = Self::associated_data(frame.seq, frame.tenant, frame.key_id);
        let plaintext = crypto::open(&self.key, &aad, &frame.sealed)
            .map_err(|_| broken("its bytes were altered (it no longer opens)"))?;
        let entry: AuditEntry = rmp_serde::from_slice(&plaintext)
            .map_err(|_| broken("its contents cannot be decoded"))?;
        if entry.seq != frame.seq || entry.event.tenant != frame.tenant {
            return Err(broken("its header does not match its contents"));
        }
        Ok((Self::entry_hash(&plaintext), entry))
    }

    /// Appends `event` durably and returns the stored entry. Fails, and records nothing, when the
    /// entry cannot be written; callers must then fail the action.
    pub fn append(&self, event: AuditEvent) -> Result<AuditEntry, AuditError> {
        let mut entries = self.append_all(vec![event])?;
        entries.pop().ok_or(AuditError::Poisoned)
    }

    /// Appends several events, in order, and returns once they are durable (one `fsync`, shared
    /// with the appends made at the same time).
    pub fn append_all(&self, events: Vec<AuditEvent>) -> Result<Vec<AuditEntry>, AuditError> {
        self.store.ensure_disk_reserve()?;
        let (entries, end) = self.write(events)?;
        self.wait_durable(end)?;
        Ok(entries)
    }

    /// Writes the frames of `events` after the chain's end, without syncing; returns the entries
    /// and where the chain now ends.
    fn write(&self, events: Vec<AuditEvent>) -> Result<(Vec<AuditEntry>, (u32, u64)), AuditError> {
        let mut writer = self.writer.lock().map_err(|_| AuditError::Poisoned)?;
        if writer.stopped {
            return Err(AuditError::Poisoned);
        }
        let mut head = writer.head.clone();
        if head.segment == 0 || head.offset >= SEGMENT_LIMIT_BYTES || writer.rotate_next {
            // Rotation is rare: the full segment is synced here, under the lock, so that a later
            // sync of the new segment covers every entry before it.
            if let Some(full) = writer.file.take() {
                if let Err(source) = full.sync_data() {
                    let path = self.segment_path(head.segment);
                    drop(writer);
                    return Err(self.stop(AuditError::Io { path, source }));
                }
            }
            head.segment += 1;
            head.offset = 0;
            writer.rotate_next = false;
        }
        let mut frames = Vec::new();
        let mut entries = Vec::with_capacity(events.len());
        for event in events {
            let entry = AuditEntry {
                seq: head.seq + 1,
                time: Utc::now(),
                prev_hash: hex::encode(head.hash),
                event,
            };
            let plaintext =
                zeroize::Zeroizing::new(rmp_serde::to_vec_named(&entry).map_err(|error| {
                    AuditError::Broken {
                        seq: entry.seq,
                        reason: format!("cannot encode: {error}"),
                    }
                })?);
            let aad = Self::associated_data(entry.seq, entry.event.tenant, self.key_id);
            let sealed = crypto::seal(&self.key, &aad, &plaintext);
            let length = u32::try_from(FRAME_FIXED + sealed.len()).unwrap_or(u32::MAX);
            let frame_start = frames.len();
            frames.extend_from_slice(&length.to_be_bytes());
            frames.extend_from_slice(&entry.seq.to_be_bytes());
            frames.extend_from_slice(&entry.event.tenant.map_or([0u8; 16], TenantId::to_bytes));
            frames.extend_from_slice(&self.key_id.to_bytes());
            frames.extend_from_slice(&sealed);
            head.seq = entry.seq;
            head.hash = Self::entry_hash(&plaintext);
            head.offset += (frames.len() - frame_start) as u64;
            entries.push(entry);
        }

        let path = self.segment_path(head.segment);
        let io = |source| AuditError::Io {
            path: path.clone(),
            source,
        };
        if writer.file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&path)
                .map_err(io)?;
            // A new segment's directory entry must be durable too, not only its contents.
            File::open(&self.dir)
                .and_then(|dir| dir.sync_all())
                .map_err(io)?;
            writer.file = Some(Arc::new(file));
        }
        if let Some(file) = writer.file.clone() {
            if let Err(source) = (&*file).write_all(&frames) {
                // The file may now end in a torn frame; cut it back to the last whole entry,
                // under the lock so that no other append lands behind the torn frame. The file
                // stays open (appends go to its end): entries before this one still await their
                // sync through it.
                writer.head = self.recover(writer.head.clone())?;
                return Err(io(source));
            }
        }
        writer.head = head;
        Ok((entries, writer.head.position()))
    }

    /// Returns once the log is durable up to `end`: another append's sync may already cover
    /// it; otherwise this caller syncs everything written so far.
    fn wait_durable(&self, end: (u32, u64)) -> Result<(), AuditError> {
        let mut durable = self.durable()?;
        loop {
            if durable.failed {
                return Err(AuditError::Poisoned);
            }
            if durable.head.position() >= end {
                return Ok(());
            }
            if durable.syncing {
                durable = self
                    .synced
                    .wait(durable)
                    .map_err(|_| AuditError::Poisoned)?;
                continue;
            }
            durable.syncing = true;
            drop(durable);
            let outcome = self.sync_written();
            durable = self.durable()?;
            durable.syncing = false;
            self.synced.notify_all();
            match outcome {
                Ok(head) => {
                    if head.position() > durable.head.position() {
                        durable.head = head.clone();
                        // The mirrored head is a hint that start-up rebuilds by reading forward,
                        // so it is stored at most once per `MIRROR_EVERY` (and when the log is
                        // dropped), outside the lock, riding on the store's periodic flush: a
                        // store write per sync slowed every audited page under load. Failing to
                        // store it does not undo the durable entries; it never points past what
                        // is synced.
                        let due = durable
                            .mirrored_at
                            .is_none_or(|at| at.elapsed() >= MIRROR_EVERY);
                        if due {
                            durable.mirrored_at = Some(Instant::now());
                            drop(durable);
                            self.mirror(&head);
                            durable = self.durable()?;
                        }
                    }
                }
                Err(error) => {
                    durable.failed = true;
                    drop(durable);
                    return Err(self.stop(error));
                }
            }
        }
    }

    fn mirror(&self, head: &ChainHead) {
        if let Err(error) = self.heads.insert_relaxed(&HEAD_KEY, head) {
            tracing::warn!(%error, "audit chain head not mirrored; it is rebuilt at the next start");
        }
    }

    fn durable(&self) -> Result<MutexGuard<'_, Durable>, AuditError> {
        self.durable.lock().map_err(|_| AuditError::Poisoned)
    }

    /// Syncs the open segment; returns the chain's end that the sync covers.
    fn sync_written(&self) -> Result<ChainHead, AuditError> {
        let (head, file) = {
            let writer = self.writer.lock().map_err(|_| AuditError::Poisoned)?;
            (writer.head.clone(), writer.file.clone())
        };
        if let Some(file) = file {
            file.sync_data().map_err(|source| AuditError::Io {
                path: self.segment_path(head.segment),
                source,
            })?;
            self.syncs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(head)
    }

    /// How many `fsync`s appends have made since the log was opened (fewer than the appends
    /// when appends overlap).
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Stops the log after a failed `fsync` and returns `error` to report.
    fn stop(&self, error: AuditError) -> AuditError {
        tracing::error!(%error, "audit log stopped: an fsync failed, so no action is acknowledged until a restart");
        if let Ok(mut writer) = self.writer.lock() {
            writer.stopped = true;
        }
        if let Ok(mut durable) = self.durable.lock() {
            durable.failed = true;
        }
        self.synced.notify_all();
        error
    }

    /// Entries visible to `view`, newest first, with `seq` below `before` when given.
    pub fn entries(
        &self,
        view: AuditView,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, AuditError> {
        let mut matching: Vec<Frame> = Vec::new();
        for segment in self.kept_segments()? {
            let (frames, _) = Self::read_frames(&self.segment_path(segment), 0)?;
            for frame in frames {
                if view.admits(frame.tenant) && before.is_none_or(|limit_seq| frame.seq < limit_seq)
                {
                    matching.push(frame);
                }
            }
        }
        let start = matching.len().saturating_sub(limit);
        let mut entries = matching[start..]
            .iter()
            .map(|frame| self.open_frame(frame).map(|(_, entry)| entry))
            .collect::<Result<Vec<_>, _>>()?;
        entries.reverse();
        Ok(entries)
    }

    /// Entries visible to `view` for which `keep` holds, newest first, at most `limit`, and
    /// whether more matched. Every entry of the view is opened (the log has no index by
    /// target), segment by segment from the newest, so memory stays at one segment's frames.
    pub fn entries_matching(
        &self,
        view: AuditView,
        limit: usize,
        mut keep: impl FnMut(&AuditEntry) -> bool,
    ) -> Result<(Vec<AuditEntry>, bool), AuditError> {
        let mut found = Vec::new();
        for segment in self.kept_segments()?.into_iter().rev() {
            let (frames, _) = Self::read_frames(&self.segment_path(segment), 0)?;
            for frame in frames.iter().rev() {
                if !view.admits(frame.tenant) {
                    continue;
                }
                let (_, entry) = self.open_frame(frame)?;
                if keep(&entry) {
                    if found.len() == limit {
                        return Ok((found, true));
                    }
                    found.push(entry);
                }
            }
        }
        Ok((found, false))
    }

    /// The files that hold every entry synced so far, for a backup: `(segment file, bytes of it
    /// to copy)`, oldest first. Segments only grow at their end and are never rewritten, so those
    /// bytes stay as they are while the backup copies them.
    pub fn durable_files(&self) -> Result<Vec<(PathBuf, u64)>, AuditError> {
        let head = self.durable()?.head.clone();
        let mut files = Vec::new();
        for segment in self.kept_segments()? {
            if segment > head.segment {
                break;
            }
            let path = self.segment_path(segment);
            let length = if segment == head.segment {
                head.offset
            } else {
                fs::metadata(&path)
                    .map_err(|source| AuditError::Io {
                        path: path.clone(),
                        source,
                    })?
                    .len()
            };
            files.push((path, length));
        }
        Ok(files)
    }

    /// Walks the whole kept chain from its first entry (after the pruning anchor, if any); the
    /// error names the first broken entry.
    pub fn verify(&self) -> Result<VerifyReport, AuditError> {
        let anchor = self.anchor()?;
        let mut previous = anchor.hash;
        let mut expected_seq = anchor.seq + 1;
        let segments = self.kept_segments()?;
        for &segment in &segments {
            let (frames, torn) = Self::read_frames(&self.segment_path(segment), 0)?;
            for frame in &frames {
                if frame.seq != expected_seq {
                    return Err(AuditError::Broken {
                        seq: expected_seq,
                        reason: format!("missing; the next entry found is {}", frame.seq),
                    });
                }
                let (hash, entry) = self.open_frame(frame)?;
                if entry.prev_hash != hex::encode(previous) {
                    return Err(AuditError::Broken {
                        seq: entry.seq,
                        reason: "its chain hash does not match the previous entry".to_owned(),
                    });
                }
                previous = hash;
                expected_seq += 1;
            }
            if torn.is_some() {
                return Err(AuditError::Broken {
                    seq: expected_seq,
                    reason: format!(
                        "{} ends in an incomplete entry",
                        self.segment_path(segment).display()
                    ),
                });
            }
        }
        let head = self
            .writer
            .lock()
            .map_err(|_| AuditError::Poisoned)?
            .head
            .clone();
        if head.seq >= expected_seq {
            return Err(AuditError::Broken {
                seq: expected_seq,
                reason: format!(
                    "the log ends at entry {} but {} were written",
                    expected_seq - 1,
                    head.seq
                ),
            });
        }
        Ok(VerifyReport {
            entries: expected_seq - 1 - anchor.seq,
            segments: u32::try_from(segments.len()).unwrap_or(u32::MAX),
            first: anchor.seq + 1,
        })
    }

    /// Where the kept chain starts (the default, before any pruning: entry 1, segment 0).
    fn anchor(&self) -> Result<Anchor, AuditError> {
        Ok(self.anchors.get(&ANCHOR_KEY)?.unwrap_or_default())
    }

    /// Keeps [`AuditLog::prune`] from deleting segments while the guard lives: a backup holds it
    /// from its snapshot (which holds the anchor) until it has copied the segment files.
    pub fn hold_segments(&self) -> Result<MutexGuard<'_, ()>, AuditError> {
        self.segments_guard.lock().map_err(|_| AuditError::Poisoned)
    }

    /// Closes the open segment: the next entry starts a new one, so that the closed one can be
    /// pruned as a whole once its entries expire.
    pub fn rotate(&self) -> Result<(), AuditError> {
        let mut writer = self.writer.lock().map_err(|_| AuditError::Poisoned)?;
        if writer.head.segment != 0 && writer.head.offset > 0 {
            writer.rotate_next = true;
        }
        Ok(())
    }

    /// When the open segment's first entry was written (`None`: no entry yet).
    pub fn open_segment_started(&self) -> Result<Option<chrono::DateTime<Utc>>, AuditError> {
        let head = self.durable()?.head.clone();
        if head.segment == 0 || head.offset == 0 {
            return Ok(None);
        }
        match Self::first_frame(&self.segment_path(head.segment))? {
            Some(frame) => Ok(Some(self.open_frame(&frame)?.1.time)),
            None => Ok(None),
        }
    }

    /// Deletes whole segments from the start of the log while every entry in them is
    /// `expired`, never the open one, and stops at the first segment holding a kept entry (so
    /// the kept entries stay one chain). The new anchor is stored and flushed before a file is
    /// deleted; a file left by a crash between the two is deleted on the next call.
    pub fn prune(
        &self,
        expired: &mut dyn FnMut(&AuditEntry) -> bool,
    ) -> Result<PruneReport, AuditError> {
        let _guard = self.hold_segments()?;
        let open_segment = self
            .writer
            .lock()
            .map_err(|_| AuditError::Poisoned)?
            .head
            .segment;
        let mut anchor = self.anchor()?;
        let mut leftovers = Vec::new();
        let mut prunable = Vec::new();
        let mut report = PruneReport::default();
        'segments: for segment in self.segments()? {
            if segment < anchor.first_segment {
                leftovers.push(segment);
                continue;
            }
            if segment >= open_segment {
                break;
            }
            let (frames, torn) = Self::read_frames(&self.segment_path(segment), 0)?;
            if torn.is_some() {
                break;
            }
            let mut last = None;
            for frame in &frames {
                let (hash, entry) = self.open_frame(frame)?;
                if !expired(&entry) {
                    break 'segments;
                }
                last = Some((entry.seq, hash));
            }
            if let Some((seq, hash)) = last {
                anchor.seq = seq;
                anchor.hash = hash;
            }
            anchor.first_segment = segment + 1;
            report.segments += 1;
            report.entries += frames.len() as u64;
            prunable.push(segment);
        }
        if !prunable.is_empty() {
            // The anchor first: a crash before the files go leaves files the anchor skips.
            self.anchors.insert(&ANCHOR_KEY, &anchor)?;
            report.first_kept = Some(anchor.seq + 1);
        }
        for segment in leftovers.into_iter().chain(prunable) {
            let path = self.segment_path(segment);
            fs::remove_file(&path).map_err(|source| AuditError::Io { path, source })?;
        }
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|source| AuditError::Io {
                path: self.dir.clone(),
                source,
            })?;
        Ok(report)
    }
}

impl Drop for AuditLog {
    /// Mirrors the last synced chain end, which [`AuditLog::append_all`] stores at most once a
    /// second.
    fn drop(&mut self) {
        let head = match self.durable.lock() {
            Ok(durable) => durable.head.clone(),
            Err(_) => return,
        };
        self.mirror(&head);
    }
}
