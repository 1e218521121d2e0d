//! Key rotation inside the store.
//!
//! - [`Store::rotate_master`] re-wraps every wrapped key under a new master key and records the new
//!   key's fingerprint, in one sled transaction: no record is rewritten, so it is instant.
//! - [`Store::add_data_key`] gives a scope a new data key, which becomes current (key ids are ULIDs,
//!   so the newest sorts last); the older ones stay, so records sealed under them still open.
//! - [`Store::reseal_scope`] re-seals, in bounded batches, every value of the scope still sealed
//!   under an older data key; [`Store::data_key_usage`] counts values per key id from their clear
//!   headers (nothing is opened); [`Store::retire_unused_data_keys`] removes the older data keys
//!   that a full count finds unused.
//!
//! The command line drives these (`rapport keys …`, in `crate::rotation`); nothing outside this
//! module touches the `keys` tree.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use sled::IVec;

use crate::crypto::SecretKey;
use crate::ids::KeyId;
use crate::store::keys::{KeyPurpose, WrappedKey, WrappedKeyHeader};
use crate::store::{codec, MasterKey, Scope, Store, StoreError, KEYS_TREE, META_MASTER, META_TREE};

/// Values re-sealed per transaction: bounded so that a rotation of a large tenant holds little
/// memory and a crash loses at most one batch's work.
const RESEAL_BATCH: usize = 512;

/// What [`Store::rotate_master`] did, for the audit entry and the operator (fingerprints only).
#[derive(Clone, Debug)]
pub struct MasterRotation {
    pub old_fingerprint: String,
    pub new_fingerprint: String,
    /// Wrapped keys re-wrapped (every scope's data, index and audit keys).
    pub wrapped_keys: usize,
}

/// How many values of a scope are sealed under each of its data keys.
#[derive(Clone, Debug)]
pub struct KeyUsage {
    /// The data key new seals use.
    pub current: KeyId,
    /// The scope's other data keys, still kept for reading, oldest first.
    pub older: Vec<KeyId>,
    /// Sealed values per key id (ids of keys the scope no longer has included, if any).
    pub values: BTreeMap<KeyId, u64>,
}

impl KeyUsage {
    /// Values sealed under `id`.
    pub fn count(&self, id: KeyId) -> u64 {
        self.values.get(&id).copied().unwrap_or(0)
    }

    /// Values sealed under any key but the current one: what a re-seal still has to do.
    pub fn outdated(&self) -> u64 {
        self.values
            .iter()
            .filter(|(id, _)| **id != self.current)
            .map(|(_, count)| count)
            .sum()
    }
}

/// Progress of a re-seal, handed to its callback after every batch.
#[derive(Clone, Copy, Debug)]
pub struct ResealProgress {
    /// Values re-sealed so far in this run.
    pub resealed: u64,
}

/// What one [`Store::reseal_scope`] run did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResealReport {
    pub resealed: u64,
    /// Values that changed between being read and being re-sealed, left as they were (a writer
    /// sealed them meanwhile, under the current key unless it held an older key set).
    pub changed_meanwhile: u64,
    /// False when the run stopped at its budget before the whole scope was walked.
    pub complete: bool,
}

fn encode_wrapped(record: &WrappedKey) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec_named(record).map_err(|error| StoreError::Decode {
        collection: KEYS_TREE.to_owned(),
        message: error.to_string(),
    })
}

fn decode_wrapped(bytes: &[u8]) -> Result<WrappedKey, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|error| StoreError::Decode {
        collection: KEYS_TREE.to_owned(),
        message: error.to_string(),
    })
}

fn transaction_error(error: TransactionError<()>) -> StoreError {
    match error {
        TransactionError::Storage(sled_error) => StoreError::Database(sled_error),
        // The transactions here never abort; a storage error is the only way out.
        TransactionError::Abort(()) => StoreError::Database(sled::Error::ReportableBug(
            "a key-rotation transaction aborted".to_owned(),
        )),
    }
}

impl Store {
    /// Re-wraps every wrapped key of every scope under `new` and stores `new`'s fingerprint, in one
    /// transaction, then flushes. From then on only `new` opens the database, and this handle uses
    /// it. Records are not rewritten: their data keys stay the same.
    pub fn rotate_master(&self, new: MasterKey) -> Result<MasterRotation, StoreError> {
        let old = self.master();
        let keys_tree = self.keys_tree()?;
        let meta = self.shared.db.open_tree(META_TREE)?;
        let new_fingerprint = new.fingerprint_hex();
        let mut rewrapped: Vec<(IVec, Vec<u8>)> = Vec::new();
        for entry in &keys_tree {
            let (tree_key, value) = entry?;
            let mut record = decode_wrapped(&value)?;
            let key: SecretKey = old.unwrap(&record.header, &record.wrapped).map_err(|_| {
                StoreError::WrongMasterKey {
                    key: old.source().to_path_buf(),
                    data_dir: self.shared.data_dir.clone(),
                }
            })?;
            record.wrapped = new.wrap(&record.header, &key);
            record.master_fingerprint.clone_from(&new_fingerprint);
            rewrapped.push((tree_key, encode_wrapped(&record)?));
        }
        let fingerprint = new.fingerprint();
        self.ensure_disk_reserve()?;
        let gate = self.write_gate(
            rewrapped
                .iter()
                .map(|(tree_key, _)| (&keys_tree, tree_key.as_ref()))
                .chain([(&meta, META_MASTER)]),
        )?;
        (&keys_tree, &meta)
            .transaction(|(keys, meta)| {
                for (tree_key, value) in &rewrapped {
                    keys.insert(tree_key.clone(), value.as_slice())?;
                }
                meta.insert(META_MASTER, &fingerprint[..])?;
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(transaction_error)?;
        drop(gate);
        self.flush()?;
        let rotation = MasterRotation {
            old_fingerprint: old.fingerprint_hex(),
            new_fingerprint,
            wrapped_keys: rewrapped.len(),
        };
        match self.shared.master.write() {
            Ok(mut master) => *master = Arc::new(new),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(new),
        }
        Ok(rotation)
    }

    /// Adds a new data key to `scope`, wrapped under the master key; it becomes the scope's
    /// current key (new seals use it), and the older ones stay for reading.
    pub fn add_data_key(&self, scope: Scope) -> Result<KeyId, StoreError> {
        // Refuses a scope that has no keys (a tenant that does not exist).
        self.scope_keys(scope)?;
        let master = self.master();
        let header = WrappedKeyHeader {
            id: KeyId::new(),
            scope,
            purpose: KeyPurpose::Data,
        };
        let record = WrappedKey {
            wrapped: master.wrap(&header, &SecretKey::generate()),
            master_fingerprint: master.fingerprint_hex(),
            created: chrono::Utc::now(),
            header: header.clone(),
        };
        self.ensure_disk_reserve()?;
        let keys_tree = self.keys_tree()?;
        let tree_key = header.tree_key();
        let _gate = self.write_gate([(&keys_tree, tree_key.as_slice())])?;
        keys_tree.insert(tree_key.as_slice(), encode_wrapped(&record)?)?;
        self.flush()?;
        self.forget_scope_keys(scope);
        Ok(header.id)
    }

    /// Counts the scope's sealed values per data key id, from their clear headers.
    pub fn data_key_usage(&self, scope: Scope) -> Result<KeyUsage, StoreError> {
        let keys = self.scope_keys(scope)?;
        let mut older: Vec<KeyId> = keys.older_data.keys().copied().collect();
        older.sort_unstable();
        let mut values = BTreeMap::new();
        for (_, tree) in self.scope_trees(scope)? {
            for entry in tree.iter().values() {
                if let Some(id) = codec::key_id_of(&entry?) {
                    *values.entry(id).or_insert(0) += 1;
                }
            }
        }
        Ok(KeyUsage {
            current: keys.current_data.0,
            older,
            values,
        })
    }

    /// Re-seals under the current data key every value of `scope` sealed under an older one, at
    /// most `budget` values (all when `None`), [`RESEAL_BATCH`] per transaction, calling
    /// `progress` after each. Safe to stop at any point and run again: what is done stays done,
    /// and a value already under the current key is skipped. A value changed between its read
    /// and its batch's commit is left as the writer left it.
    pub fn reseal_scope(
        &self,
        scope: Scope,
        budget: Option<u64>,
        mut progress: impl FnMut(ResealProgress),
    ) -> Result<ResealReport, StoreError> {
        let keys = self.scope_keys(scope)?;
        let current = keys.current_data.0;
        let mut report = ResealReport {
            resealed: 0,
            changed_meanwhile: 0,
            complete: true,
        };
        let mut handled: u64 = 0;
        for (collection, tree) in self.scope_trees(scope)? {
            let mut after: Option<IVec> = None;
            loop {
                let room = match budget {
                    Some(budget) if handled >= budget => {
                        report.complete = false;
                        return Ok(report);
                    }
                    Some(budget) => usize::try_from(budget - handled)
                        .unwrap_or(usize::MAX)
                        .min(RESEAL_BATCH),
                    None => RESEAL_BATCH,
                };
                let lower = after.clone().map_or(Bound::Unbounded, Bound::Excluded);
                let mut batch: Vec<(IVec, IVec, Vec<u8>)> = Vec::new();
                for entry in tree.range::<IVec, _>((lower, Bound::Unbounded)) {
                    let (key, value) = entry?;
                    after = Some(key.clone());
                    match codec::key_id_of(&value) {
                        Some(id) if id != current => {
                            let plaintext = codec::open(&keys, scope, &collection, &key, &value)?;
                            let resealed = codec::seal(&keys, scope, &collection, &key, &plaintext);
                            batch.push((key, value, resealed));
                            if batch.len() >= room {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                if batch.is_empty() {
                    break;
                }
                self.ensure_disk_reserve()?;
                let gate =
                    self.write_gate(batch.iter().map(|(key, _, _)| (&tree, key.as_ref())))?;
                let written = tree
                    .transaction(|view| {
                        let mut written = 0u64;
                        for (key, old, resealed) in &batch {
                            if view.get(key)?.as_ref() == Some(old) {
                                view.insert(key.clone(), resealed.as_slice())?;
                                written += 1;
                            }
                        }
                        Ok::<u64, ConflictableTransactionError<()>>(written)
                    })
                    .map_err(transaction_error)?;
                drop(gate);
                self.flush()?;
                let attempted = batch.len() as u64;
                handled += attempted;
                report.resealed += written;
                report.changed_meanwhile += attempted - written;
                progress(ResealProgress {
                    resealed: report.resealed,
                });
            }
        }
        Ok(report)
    }

    /// Removes the scope's older data keys that no value uses any more (counted afresh), and
    /// returns their ids. The current key is never removed.
    pub fn retire_unused_data_keys(&self, scope: Scope) -> Result<Vec<KeyId>, StoreError> {
        // The appliance's data key also seals the canary in `meta`, outside its scope's trees,
        // so a count of its trees cannot prove a key unused.
        if scope == Scope::Appliance {
            return Ok(Vec::new());
        }
        let usage = self.data_key_usage(scope)?;
        let unused: Vec<KeyId> = usage
            .older
            .iter()
            .copied()
            .filter(|id| usage.count(*id) == 0)
            .collect();
        if unused.is_empty() {
            return Ok(unused);
        }
        let keys_tree = self.keys_tree()?;
        let removed: Vec<Vec<u8>> = unused
            .iter()
            .map(|id| {
                WrappedKeyHeader {
                    id: *id,
                    scope,
                    purpose: KeyPurpose::Data,
                }
                .tree_key()
            })
            .collect();
        let mut batch = sled::Batch::default();
        for key in &removed {
            batch.remove(key.as_slice());
        }
        let _gate = self.write_gate(removed.iter().map(|key| (&keys_tree, key.as_slice())))?;
        keys_tree.apply_batch(batch)?;
        self.flush()?;
        self.forget_scope_keys(scope);
        Ok(unused)
    }

    /// The scope's trees with their collection names (the tree name after the scope's prefix).
    fn scope_trees(&self, scope: Scope) -> Result<Vec<(String, sled::Tree)>, StoreError> {
        let prefix = scope.tree_name("");
        let mut trees = Vec::new();
        for name in self.shared.db.tree_names() {
            let Some(collection) = name
                .strip_prefix(prefix.as_bytes())
                .and_then(|rest| std::str::from_utf8(rest).ok())
            else {
                continue;
            };
            trees.push((collection.to_owned(), self.shared.db.open_tree(&name)?));
        }
        Ok(trees)
    }

    /// Drops the cached keys of `scope`, so that the next use loads them afresh. Collections
    /// made before keep the key set they were made with.
    fn forget_scope_keys(&self, scope: Scope) {
        match self.shared.scopes.write() {
            Ok(mut cache) => {
                cache.remove(&scope);
            }
            Err(poisoned) => {
                poisoned.into_inner().remove(&scope);
            }
        }
    }
}
