//! Consistent snapshots of the whole database while it is being written (online backups), and
//! the writer that loads one into a new database (restore).
//!
//! sled 0.34 has no snapshots, so the store keeps one itself, copy-on-write at the level of
//! records: while a [`Snapshot`] is being read, the first write to a record the snapshot has not
//! read yet first saves the record's bytes as they were when the snapshot began (its *pre-image*,
//! `Some(sealed bytes)` or "absent") in a tree of its own. The snapshot reads each tree in key
//! order and, for a record with a pre-image, emits the pre-image instead of the live value. So
//! every record is emitted exactly as it was at the instant the snapshot began, across all trees:
//! a multi-tree commit is in the snapshot whole or not at all.
//!
//! The instant: [`Store::snapshot`] takes the write gate exclusively for a moment, which waits for
//! commits in flight and makes every later commit see the snapshot. Commits hold the gate shared
//! ([`Store::write_gate`]), so outside that moment they never wait for each other or for a backup.
//!
//! Exactly once: the snapshot's progress (which tree, up to which key) and a writer's "save the
//! pre-image unless the snapshot already read this record" are decided under one mutex, so a
//! record is either read live (and never gets a pre-image afterwards) or read from its pre-image.
//!
//! Cost: pre-images are sealed bytes, written to sled without a flush (they matter only to the
//! running snapshot; a crash ends the backup anyway), so memory stays bounded by sled's cache
//! and the extra disk is what the writes during the backup replaced. They are cleared when the
//! snapshot ends and when the store opens. Dropping a tenant's trees (offboarding's purge) waits
//! for a running snapshot. Sequence numbers: the snapshot records the next value of
//! [`Store::generate_id`], and a restored database starts above it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};

use super::{Store, StoreError, StoreSettings, META_TREE};

/// Where pre-images wait while a snapshot is read. Never part of a snapshot itself.
const PREIMAGE_TREE: &str = "snapshot-preimages";
/// sled's default tree, which `tree_names` lists but `open_tree` does not reach.
const DEFAULT_TREE: &[u8] = b"__sled__default";
/// The id floor a restore writes: [`Store::generate_id`] never hands out a lower number.
pub(super) const META_ID_FLOOR: &[u8] = b"id-floor";
/// Most bytes a restore gives sled in one batch.
const RESTORE_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Which records the running snapshot has read already.
#[derive(Default)]
struct Progress {
    /// Trees of the snapshot with their place in the reading order; only these get pre-images.
    trees: HashMap<Vec<u8>, usize>,
    /// Index in `trees` of the tree being read; the ones before it are complete.
    current: usize,
    /// The last key read in the current tree.
    boundary: Option<Vec<u8>>,
}

impl Progress {
    fn read_already(&self, tree: &[u8], key: &[u8]) -> bool {
        match self.trees.get(tree).copied() {
            None => true,
            Some(index) if index < self.current => true,
            Some(index) if index == self.current => {
                self.boundary.as_deref().is_some_and(|last| key <= last)
            }
            Some(_) => false,
        }
    }
}

/// The store's side of snapshots: the write gate and the running snapshot's progress.
#[derive(Default)]
pub(super) struct Gate {
    /// Commits hold it shared; the start of a snapshot holds it exclusively.
    lock: RwLock<()>,
    active: AtomicBool,
    progress: Mutex<Progress>,
    /// Held for a snapshot's whole life: one at a time, and tree drops wait for it.
    running: Mutex<()>,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere; the progress it guards is still consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn preimage_key(tree: &[u8], key: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(2 + tree.len() + key.len());
    bytes.extend_from_slice(&u16::try_from(tree.len()).unwrap_or(u16::MAX).to_be_bytes());
    bytes.extend_from_slice(tree);
    bytes.extend_from_slice(key);
    bytes
}

/// A held permission to write; see [`Store::write_gate`].
pub(crate) struct WriteGuard<'a> {
    _shared: RwLockReadGuard<'a, ()>,
}

impl Store {
    /// Lets a commit touching `touched` (tree, record key) proceed: waits only while a snapshot
    /// is starting, and, while one is being read, first saves the pre-image of every touched
    /// record the snapshot has not read yet. Hold the guard until the write is applied.
    pub(super) fn write_gate<'a>(
        &self,
        touched: impl IntoIterator<Item = (&'a sled::Tree, &'a [u8])>,
    ) -> Result<WriteGuard<'_>, StoreError> {
        let gate = &self.shared.gate;
        let shared = gate.lock.read().unwrap_or_else(PoisonError::into_inner);
        if gate.active.load(Ordering::Acquire) {
            let preimages = self.shared.db.open_tree(PREIMAGE_TREE)?;
            let progress = locked(&gate.progress);
            for (tree, key) in touched {
                let name = tree.name();
                if progress.read_already(&name, key) {
                    continue;
                }
                let slot = preimage_key(&name, key);
                if preimages.contains_key(&slot)? {
                    continue;
                }
                let mut saved = Vec::new();
                if let Some(value) = tree.get(key)? {
                    saved.reserve(1 + value.len());
                    saved.push(1);
                    saved.extend_from_slice(&value);
                } else {
                    saved.push(0);
                }
                preimages.insert(slot, saved)?;
            }
        }
        Ok(WriteGuard { _shared: shared })
    }

    /// Waits for a running snapshot to end; for writes that bypass pre-images (dropping trees).
    pub(super) fn wait_for_snapshot(&self) -> MutexGuard<'_, ()> {
        locked(&self.shared.gate.running)
    }

    /// Removes pre-images a crash left behind (called when the store opens, before any writer).
    pub(super) fn clear_preimages(&self) -> Result<(), StoreError> {
        self.shared.db.drop_tree(PREIMAGE_TREE)?;
        Ok(())
    }

    /// Begins a consistent snapshot of the whole database; it is read with
    /// [`Snapshot::read_tree`] while writes go on. One at a time: a second waits for the first.
    pub fn snapshot(&self) -> Result<Snapshot<'_>, StoreError> {
        let gate = &self.shared.gate;
        let running = locked(&gate.running);
        let preimages = self.shared.db.open_tree(PREIMAGE_TREE)?;
        preimages.clear()?;
        let exclusive = gate.lock.write().unwrap_or_else(PoisonError::into_inner);
        let mut trees: Vec<Vec<u8>> = self
            .shared
            .db
            .tree_names()
            .into_iter()
            .map(|name| name.to_vec())
            .filter(|name| name != PREIMAGE_TREE.as_bytes())
            .collect();
        trees.sort();
        let next_id = self.generate_id()?;
        *locked(&gate.progress) = Progress {
            trees: trees
                .iter()
                .enumerate()
                .map(|(index, name)| (name.clone(), index))
                .collect(),
            current: 0,
            boundary: None,
        };
        gate.active.store(true, Ordering::Release);
        drop(exclusive);
        Ok(Snapshot {
            store: self,
            trees,
            next_id,
            _running: running,
        })
    }

    /// A writer that loads a snapshot into a new, empty database under `settings.data_dir`;
    /// open the result with [`Store::open`] once [`RestoreWriter::finish`] returned.
    pub fn restore_writer(settings: &StoreSettings) -> Result<RestoreWriter, StoreError> {
        let db_path = settings.data_dir.join("db");
        if db_path.exists() {
            return Err(StoreError::Io {
                path: db_path,
                source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            });
        }
        let db = super::open_sled(settings, &db_path)?;
        Ok(RestoreWriter {
            db,
            tree: None,
            batch: sled::Batch::default(),
            bytes: 0,
            entries: 0,
        })
    }
}

/// A consistent view of the whole database as it was when [`Store::snapshot`] returned.
pub struct Snapshot<'a> {
    store: &'a Store,
    trees: Vec<Vec<u8>>,
    next_id: u64,
    _running: MutexGuard<'a, ()>,
}

impl Snapshot<'_> {
    /// The trees to read, in order; each must be read with [`Snapshot::read_tree`] in this order.
    pub fn trees(&self) -> &[Vec<u8>] {
        &self.trees
    }

    /// The lowest number [`Store::generate_id`] had not handed out when the snapshot began.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Calls `emit` with every record of tree number `index` (of [`Snapshot::trees`]) as it was
    /// when the snapshot began: the live records not written since, then the saved pre-images.
    pub fn read_tree<E: From<StoreError>>(
        &self,
        index: usize,
        mut emit: impl FnMut(&[u8], &[u8]) -> Result<(), E>,
    ) -> Result<u64, E> {
        let db = &self.store.shared.db;
        let gate = &self.store.shared.gate;
        let name = &self.trees[index];
        let tree = if name == DEFAULT_TREE {
            (**db).clone()
        } else {
            db.open_tree(name).map_err(StoreError::from)?
        };
        let preimages = db.open_tree(PREIMAGE_TREE).map_err(StoreError::from)?;
        {
            let mut progress = locked(&gate.progress);
            progress.current = index;
            progress.boundary = None;
        }
        let mut emitted = 0u64;
        for entry in &tree {
            let (key, value) = entry.map_err(StoreError::from)?;
            let live = {
                let mut progress = locked(&gate.progress);
                let saved = preimages
                    .contains_key(preimage_key(name, &key))
                    .map_err(StoreError::from)?;
                progress.boundary = Some(key.to_vec());
                !saved
            };
            if live {
                emit(&key, &value)?;
                emitted += 1;
            }
        }
        // The tree is read: no more pre-images for it, and the saved ones are complete.
        {
            let mut progress = locked(&gate.progress);
            progress.current = index + 1;
            progress.boundary = None;
        }
        let prefix = preimage_key(name, b"");
        for entry in preimages.scan_prefix(&prefix) {
            let (slot, saved) = entry.map_err(StoreError::from)?;
            if let Some((1, value)) = saved.split_first() {
                emit(&slot[prefix.len()..], value)?;
                emitted += 1;
            }
        }
        Ok(emitted)
    }
}

impl Drop for Snapshot<'_> {
    fn drop(&mut self) {
        let gate = &self.store.shared.gate;
        gate.active.store(false, Ordering::Release);
        *locked(&gate.progress) = Progress::default();
        // Cleared, not dropped: a writer may still hold the tree (a late pre-image is harmless,
        // the next snapshot clears it first).
        let cleared = self
            .store
            .shared
            .db
            .open_tree(PREIMAGE_TREE)
            .and_then(|tree| tree.clear());
        if let Err(error) = cleared {
            tracing::warn!(%error, "snapshot pre-images not cleared (they are cleared at the next start)");
        }
    }
}

/// Loads a snapshot's records into a new database, in batches.
pub struct RestoreWriter {
    db: sled::Db,
    tree: Option<sled::Tree>,
    batch: sled::Batch,
    bytes: usize,
    entries: u64,
}

impl RestoreWriter {
    fn apply(&mut self) -> Result<(), StoreError> {
        if let Some(tree) = &self.tree {
            tree.apply_batch(std::mem::take(&mut self.batch))?;
        }
        self.bytes = 0;
        Ok(())
    }

    /// Starts the records of tree `name`.
    pub fn tree(&mut self, name: &[u8]) -> Result<(), StoreError> {
        self.apply()?;
        self.tree = Some(if name == DEFAULT_TREE {
            (*self.db).clone()
        } else {
            self.db.open_tree(name)?
        });
        Ok(())
    }

    /// Adds one record to the current tree.
    pub fn entry(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        if self.tree.is_none() {
            return Err(StoreError::Decode {
                collection: "restore".to_owned(),
                message: "a record came before its tree".to_owned(),
            });
        }
        self.batch.insert(key, value);
        self.bytes += key.len() + value.len();
        self.entries += 1;
        if self.bytes >= RESTORE_BATCH_BYTES {
            self.apply()?;
        }
        Ok(())
    }

    /// Records loaded so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Writes the last batch and the id floor (`next_id` of the snapshot), and flushes.
    pub fn finish(mut self, next_id: u64) -> Result<u64, StoreError> {
        self.apply()?;
        self.db
            .open_tree(META_TREE)?
            .insert(META_ID_FLOOR, &next_id.to_be_bytes()[..])?;
        self.db.flush()?;
        Ok(self.entries)
    }
}
