//! Commits that never stall readers: [`Store::commit_redo`].
//!
//! sled 0.34 runs every transaction, and every `apply_batch`, under one process-wide lock whose
//! other side every plain read takes (`concurrency_control` in sled): while a transaction of
//! thousands of writes runs, no page of any tenant can read anything. Worse, a transaction's
//! removal reads the old value first, so its lock lasts two tree lookups per write. Large
//! background writers (the retention sweep's deletions) therefore commit another way:
//!
//! 1. the whole write set, already sealed, goes into the redo journal as one entry, flushed;
//! 2. each write is applied with sled's plain operations (which readers never wait for), then
//!    flushed;
//! 3. the entry is removed, and that is flushed too, so an old entry is never replayed over a
//!    later commit.
//!
//! [`Store::open`] replays, in commit order, every entry a stop left behind, so a commit cut off
//! after step 1 completes: it is atomic across crashes, and durable once it returns. (A storage
//! error part-way through step 2 also leaves the entry, and the next open completes it.) It is not
//! isolated: a reader may see some of its writes before the others, so it is only for writers
//! whose intermediate states a reader may see (deletions: a record briefly without its index
//! entries) and who hold their scope's writer lock ([`Store::lock_scope`]), under which claims are
//! checked before anything is written.
//!
//! The journal holds what the trees hold, in the same form: record keys (ids and keyed tokens,
//! never personal values) and values sealed under their scope or subject keys. Destroying a key
//! makes an entry's values as unreadable as the records'.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::{Store, StoreError, WriteSet};

/// The tree of pending redo entries, keyed by a big-endian id from [`Store::generate_id`] (so in
/// commit order).
pub(super) const REDO_TREE: &str = "redo-journal";

/// One write set as the journal holds it.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct RedoEntry {
    /// The names of the trees written.
    trees: Vec<ByteBuf>,
    /// The writes, subject-key trees first (so that no value is visible before its key).
    writes: Vec<RedoWrite>,
}

#[derive(Debug, Serialize, Deserialize)]
struct RedoWrite {
    /// Position in [`RedoEntry::trees`].
    tree: u32,
    key: ByteBuf,
    /// The sealed value, or `None` for a removal.
    value: Option<ByteBuf>,
}

impl RedoEntry {
    /// The writes of `writes`, subject-key trees first, then tree by tree in key order (sled then
    /// walks each tree's leaves in order instead of jumping between trees), the writes to one key
    /// in the order they were staged.
    fn of(writes: &WriteSet) -> Self {
        let mut staged: Vec<(bool, RedoWrite)> = writes
            .each()
            .map(|(tree, key, value)| {
                let write = RedoWrite {
                    tree: u32::try_from(tree).unwrap_or(u32::MAX),
                    key: ByteBuf::from(key.to_vec()),
                    value: value.map(|value| ByteBuf::from(value.to_vec())),
                };
                (!writes.is_subject_slot(tree), write)
            })
            .collect();
        // Stable, so that the writes to one key keep their order.
        staged.sort_by(|(a_later, a), (b_later, b)| {
            (a_later, a.tree, &a.key).cmp(&(b_later, b.tree, &b.key))
        });
        Self {
            trees: writes
                .trees()
                .iter()
                .map(|tree| ByteBuf::from(tree.name().to_vec()))
                .collect(),
            writes: staged.into_iter().map(|(_, write)| write).collect(),
        }
    }

    /// Applies every write with sled's plain operations. Applying an entry twice leaves what
    /// applying it once does.
    fn apply(&self, db: &sled::Db) -> Result<(), StoreError> {
        let trees = self
            .trees
            .iter()
            .map(|name| db.open_tree(name.as_slice()))
            .collect::<Result<Vec<_>, _>>()?;
        for write in &self.writes {
            let tree = usize::try_from(write.tree)
                .ok()
                .and_then(|slot| trees.get(slot))
                .ok_or_else(|| StoreError::Decode {
                    collection: REDO_TREE.to_owned(),
                    message: "a write names a tree the entry does not list".to_owned(),
                })?;
            match &write.value {
                Some(value) => {
                    tree.insert(write.key.as_slice(), value.as_slice())?;
                }
                None => {
                    tree.remove(write.key.as_slice())?;
                }
            }
        }
        Ok(())
    }

    fn encode(&self) -> Result<Vec<u8>, StoreError> {
        rmp_serde::to_vec(self).map_err(|error| StoreError::Decode {
            collection: REDO_TREE.to_owned(),
            message: format!("the entry could not be encoded: {error}"),
        })
    }

    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        rmp_serde::from_slice(bytes).map_err(|error| StoreError::Decode {
            collection: REDO_TREE.to_owned(),
            message: error.to_string(),
        })
    }
}

impl Store {
    /// Commits `writes` without ever making a reader wait (see the module comment): atomic
    /// across crashes through the redo journal, durable when it returns, but not isolated.
    /// Hold the scope's writer lock around it.
    pub fn commit_redo(&self, writes: WriteSet) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        self.ensure_disk_reserve()?;
        let mut writes = writes;
        writes.check_claims()?;
        let fresh = writes.take_new_subject_keys();
        let entry = RedoEntry::of(&writes);
        let journal = self.shared.db.open_tree(REDO_TREE)?;
        let slot = self.generate_id()?.to_be_bytes();
        let touched = writes
            .touched()
            .chain(std::iter::once((&journal, slot.as_slice())));
        let gate = self.write_gate(touched)?;
        journal.insert(slot, entry.encode()?)?;
        self.flush()?;
        entry.apply(&self.shared.db)?;
        self.flush()?;
        journal.remove(slot)?;
        drop(gate);
        self.flush()?;
        self.cache_new_subject_keys(fresh);
        Ok(())
    }

    /// Completes every commit a stop cut off (oldest first) and empties the journal; how many
    /// there were. [`Store::open`] calls it before anything reads.
    pub(super) fn replay_redo_journal(&self) -> Result<usize, StoreError> {
        let journal = self.shared.db.open_tree(REDO_TREE)?;
        let mut replayed = 0;
        for item in &journal {
            let (slot, bytes) = item?;
            RedoEntry::decode(&bytes)?.apply(&self.shared.db)?;
            self.flush()?;
            journal.remove(slot)?;
            replayed += 1;
        }
        self.flush()?;
        Ok(replayed)
    }

    /// Test support: what a stop right after step 1 of [`Store::commit_redo`] leaves (the entry
    /// journaled and flushed, and only the first `applied` writes in).
    #[cfg(test)]
    pub(super) fn commit_redo_cut_off(
        &self,
        writes: &WriteSet,
        applied: usize,
    ) -> Result<(), StoreError> {
        let mut entry = RedoEntry::of(writes);
        let journal = self.shared.db.open_tree(REDO_TREE)?;
        journal.insert(self.generate_id()?.to_be_bytes(), entry.encode()?)?;
        entry.writes.truncate(applied);
        entry.apply(&self.shared.db)?;
        self.flush()
    }
}
