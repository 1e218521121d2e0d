//! The encrypted store: the only module that knows sled, keys and the sealing format.
//!
//! Every record is sealed with XChaCha20-Poly1305 under its scope's data key (see [`codec`]), bound
//! to scope, collection and record key. Lookups by personal values go through keyed blind indexes.
//! The rest of the crate sees typed [`Collection`]s and [`BlindIndex`]es and commits multi-record
//! changes through a [`WriteSet`] in one sled transaction, or, for large background deletions
//! that readers must not wait for, through the redo journal ([`redo`]).
//!
//! Durability: every commit calls sled's `flush` before returning, so an acknowledged write
//! survives `kill -9` of the process. On Linux sled flushes with `sync_file_range`, which waits
//! for the data to reach the device but does not flush the device's volatile write cache nor the
//! file's metadata: after a power loss the last acknowledged writes may be missing unless the disk
//! has a power-loss-protected cache (ARCHITECTURE.md says the same).

mod codec;
mod collection;
pub mod floor;
pub mod keys;
mod redo;
mod rotation;
mod snapshot;
mod subject;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::crypto::SecretKey;
use crate::ids::{KeyId, TenantId};

pub use collection::{BlindIndex, Collection, RecordKey, WriteSet};
pub use keys::{KeyError, MasterKey};
use keys::{KeyPurpose, ScopeKeys, WrappedKey, WrappedKeyHeader};
pub use rotation::{KeyUsage, MasterRotation, ResealProgress, ResealReport};
pub use snapshot::{RestoreWriter, Snapshot};
pub use subject::SUBJECT_KEY_CACHE;

const META_TREE: &str = "meta";
const KEYS_TREE: &str = "keys";
const META_FORMAT: &[u8] = b"format";
const META_MASTER: &[u8] = b"master-fingerprint";
const META_CANARY: &[u8] = b"canary";
const META_HEARTBEAT: &[u8] = b"heartbeat";
const CANARY_PLAINTEXT: &[u8] = b"rapport canary v1";
const STORE_FORMAT_VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the database in {0} is locked by another rapport process (stop `rapport serve` first)"
    )]
    Locked(PathBuf),
    #[error("the database in {0} is not initialised (run `rapport init`)")]
    NotInitialised(PathBuf),
    #[error("the master key from {key} does not match the database in {data_dir}")]
    WrongMasterKey { key: PathBuf, data_dir: PathBuf },
    #[error("a master key rotation was interrupted: the database in {data_dir} is wrapped under the new key in {pending}, not under {key}; run `rapport keys rotate-master` again to finish it (it moves {pending} to {key})")]
    RotationUnfinished {
        key: PathBuf,
        pending: PathBuf,
        data_dir: PathBuf,
    },
    #[error("only {available_mib} MiB of disk space are free in {dir}, below the {reserve_mib} MiB reserve; writes are refused until space is freed")]
    DiskFull {
        dir: PathBuf,
        available_mib: u64,
        reserve_mib: u64,
    },
    #[error("a record in {collection} could not be opened: wrong key or altered bytes")]
    Unsealable { collection: String },
    #[error("a record in {collection} could not be decoded: {message}")]
    Decode { collection: String, message: String },
    #[error(
        "a record in {collection} was sealed under a data subject's key that erasure destroyed"
    )]
    SubjectErased { collection: String },
    #[error("{index} already holds that value")]
    Conflict { index: &'static str },
    #[error("no key for scope {0} (was the tenant deleted?)")]
    UnknownScope(Scope),
    #[error("database error: {0}")]
    Database(#[from] sled::Error),
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Whose keys seal a record: the appliance's own (operators, sessions, tenant directory) or one
/// tenant's. Scopes never share a key, so no query can read across tenants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    Appliance,
    Tenant(TenantId),
}

impl Scope {
    /// Stable bytes naming the scope, used in tree names, key records and associated data.
    fn key_bytes(self) -> Vec<u8> {
        match self {
            Self::Appliance => b"a".to_vec(),
            Self::Tenant(id) => {
                let mut bytes = b"t".to_vec();
                bytes.extend_from_slice(&id.to_bytes());
                bytes
            }
        }
    }

    fn tree_name(self, collection: &str) -> String {
        match self {
            Self::Appliance => format!("a/{collection}"),
            Self::Tenant(id) => format!("t/{id}/{collection}"),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Appliance => f.write_str("appliance"),
            Self::Tenant(id) => write!(f, "tenant {id}"),
        }
    }
}

/// Held while a scope's read-then-write sequence runs; see [`Store::lock_scope`].
pub struct ScopeWriteGuard {
    lock: Arc<std::sync::Mutex<()>>,
}

impl ScopeWriteGuard {
    /// Runs `work` while holding the scope's lock.
    pub fn run<T>(&self, work: impl FnOnce() -> T) -> T {
        // A poisoned lock only means another writer panicked; the data is in the store, not here.
        let _held = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        work()
    }
}

/// What [`Store::destroy_scope`] removed: wrapped keys, trees and the records they held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeDestroyed {
    pub keys: u64,
    pub trees: u64,
    pub records: u64,
}

/// Whether [`Store::open`] may create a new database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    CreateIfMissing,
    ExistingOnly,
}

/// Settings the store needs, taken from the configuration.
#[derive(Clone, Debug)]
pub struct StoreSettings {
    pub data_dir: PathBuf,
    pub cache_capacity_bytes: u64,
    pub min_free_disk_bytes: u64,
}

pub(crate) struct Shared {
    db: sled::Db,
    /// One lock per scope for writers that read before they write (index staging, upserts).
    writers: std::sync::Mutex<HashMap<Scope, Arc<std::sync::Mutex<()>>>>,
    data_dir: PathBuf,
    min_free_disk_bytes: u64,
    /// Replaced only by [`Store::rotate_master`].
    master: RwLock<Arc<MasterKey>>,
    scopes: RwLock<HashMap<Scope, Arc<ScopeKeys>>>,
    /// Unwrapped per-subject keys, bounded (see `subject`).
    subject_keys: std::sync::Mutex<subject::SubjectKeyCache>,
    /// Commits pass it; a snapshot (online backup) takes it for an instant (see `snapshot`).
    gate: snapshot::Gate,
    /// Added to sled's ids: set by a restore above every id the restored database had used.
    id_floor: u64,
}

/// The open database. Cheap to clone; all clones share one sled instance and key cache.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("data_dir", &self.shared.data_dir)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the database under `settings.data_dir/db`, then proves the master key by
    /// opening the canary record; a wrong key is refused before anything else happens.
    pub fn open(
        settings: &StoreSettings,
        master: MasterKey,
        mode: OpenMode,
    ) -> Result<Self, StoreError> {
        let db_path = settings.data_dir.join("db");
        if mode == OpenMode::ExistingOnly && !db_path.join("conf").exists() {
            return Err(StoreError::NotInitialised(settings.data_dir.clone()));
        }
        let db = open_sled(settings, &db_path)?;
        let id_floor = db
            .open_tree(META_TREE)?
            .get(snapshot::META_ID_FLOOR)?
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_ref()).ok())
            .map_or(0, u64::from_be_bytes);
        let store = Self {
            shared: Arc::new(Shared {
                db,
                data_dir: settings.data_dir.clone(),
                min_free_disk_bytes: settings.min_free_disk_bytes,
                master: RwLock::new(Arc::new(master)),
                writers: std::sync::Mutex::new(HashMap::new()),
                scopes: RwLock::new(HashMap::new()),
                subject_keys: std::sync::Mutex::new(subject::SubjectKeyCache::new(
                    SUBJECT_KEY_CACHE,
                )),
                gate: snapshot::Gate::default(),
                id_floor,
            }),
        };
        store.clear_preimages()?;
        let meta = store.shared.db.open_tree(META_TREE)?;
        if meta.get(META_FORMAT)?.is_none() {
            if mode == OpenMode::ExistingOnly {
                return Err(StoreError::NotInitialised(settings.data_dir.clone()));
            }
            store.initialise(&meta)?;
        }
        store.verify_master_key(&meta)?;
        let replayed = store.replay_redo_journal()?;
        if replayed > 0 {
            tracing::warn!(
                replayed,
                "completed commits that the last stop had interrupted"
            );
        }
        Ok(store)
    }

    fn initialise(&self, meta: &sled::Tree) -> Result<(), StoreError> {
        let mut writes = WriteSet::default();
        writes.create_scope_keys(self, Scope::Appliance, true)?;
        self.commit(writes)?;
        let keys = self.scope_keys(Scope::Appliance)?;
        let canary = codec::seal(
            &keys,
            Scope::Appliance,
            META_TREE,
            META_CANARY,
            CANARY_PLAINTEXT,
        );
        meta.insert(META_CANARY, canary)?;
        meta.insert(META_MASTER, &self.master().fingerprint()[..])?;
        meta.insert(META_FORMAT, &[STORE_FORMAT_VERSION][..])?;
        self.shared.db.flush()?;
        Ok(())
    }

    fn verify_master_key(&self, meta: &sled::Tree) -> Result<(), StoreError> {
        let master = self.master();
        let wrong_key = || StoreError::WrongMasterKey {
            key: master.source().to_path_buf(),
            data_dir: self.shared.data_dir.clone(),
        };
        let fingerprint = meta.get(META_MASTER)?.ok_or_else(wrong_key)?;
        if fingerprint.as_ref() != master.fingerprint() {
            // A rotation cut off between its re-wrap and the rename of its key file leaves the
            // new key beside the configured one: say so instead of only "wrong key".
            let pending = keys::pending_path(master.configured_file());
            if let Ok(candidate) = MasterKey::load_file(&pending) {
                if fingerprint.as_ref() == candidate.fingerprint() {
                    return Err(StoreError::RotationUnfinished {
                        key: master.configured_file().to_path_buf(),
                        pending,
                        data_dir: self.shared.data_dir.clone(),
                    });
                }
            }
            return Err(wrong_key());
        }
        let keys = self.scope_keys(Scope::Appliance).map_err(|_| wrong_key())?;
        let canary = meta.get(META_CANARY)?.ok_or_else(wrong_key)?;
        let opened = codec::open(&keys, Scope::Appliance, META_TREE, META_CANARY, &canary)
            .map_err(|_| wrong_key())?;
        if opened.as_slice() == CANARY_PLAINTEXT {
            Ok(())
        } else {
            Err(wrong_key())
        }
    }

    /// A typed, sealed collection of `scope`.
    pub fn collection<K: RecordKey, T: Serialize + serde::de::DeserializeOwned>(
        &self,
        scope: Scope,
        name: &'static str,
    ) -> Result<Collection<K, T>, StoreError> {
        let tree = self.shared.db.open_tree(scope.tree_name(name))?;
        Ok(Collection::new(
            self.clone(),
            tree,
            scope,
            name,
            self.scope_keys(scope)?,
        ))
    }

    /// A keyed blind index of `scope`, mapping personal values to sealed targets.
    pub fn blind_index<V: Serialize + serde::de::DeserializeOwned>(
        &self,
        scope: Scope,
        name: &'static str,
    ) -> Result<BlindIndex<V>, StoreError> {
        let tree = self.shared.db.open_tree(scope.tree_name(name))?;
        Ok(BlindIndex::new(tree, scope, name, self.scope_keys(scope)?))
    }

    /// Applies every write of `writes` atomically, then flushes to disk before returning.
    pub fn commit(&self, writes: WriteSet) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        self.ensure_disk_reserve()?;
        let mut writes = writes;
        let fresh = writes.take_new_subject_keys();
        let gate = self.write_gate(writes.touched())?;
        writes.apply()?;
        drop(gate);
        self.flush()?;
        self.cache_new_subject_keys(fresh);
        Ok(())
    }

    /// Commits a large write set whose first staged collection is a journal from which a
    /// partial application can be undone: the journal is applied and flushed first, then each
    /// other tree's writes as one atomic batch, then everything is flushed. Much cheaper than
    /// [`Store::commit`]'s transaction for thousands of writes, but a crash can leave some trees
    /// written and others not; the journal's owner repairs that (the importer rolls back).
    /// Hold the scope's writer lock ([`Store::lock_scope`]) around it.
    pub fn commit_journaled(&self, writes: WriteSet) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        self.ensure_disk_reserve()?;
        let mut writes = writes;
        let fresh = writes.take_new_subject_keys();
        let gate = self.write_gate(writes.touched())?;
        writes.apply_per_tree(|| self.flush())?;
        drop(gate);
        self.flush()?;
        self.cache_new_subject_keys(fresh);
        Ok(())
    }

    /// Flushes sled's buffers to the file (see the module comment for what that guarantees).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.shared.db.flush()?;
        Ok(())
    }

    /// Proves that the store still commits: writes the time (seconds since the epoch, u64 BE)
    /// under `meta`'s `heartbeat` and flushes. The service watchdog ([`crate::watchdog`]) calls
    /// it; a store that has stopped committing does not return from it.
    pub fn heartbeat(&self) -> Result<(), StoreError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        self.shared
            .db
            .open_tree(META_TREE)?
            .insert(META_HEARTBEAT, &now.to_be_bytes()[..])?;
        self.flush()
    }

    /// Refuses writes while free space is below the configured reserve, so a full disk is
    /// reported to the user instead of corrupting or silently dropping a write.
    pub fn ensure_disk_reserve(&self) -> Result<(), StoreError> {
        let available =
            fs4::available_space(&self.shared.data_dir).map_err(|source| StoreError::Io {
                path: self.shared.data_dir.clone(),
                source,
            })?;
        if available < self.shared.min_free_disk_bytes {
            return Err(StoreError::DiskFull {
                dir: self.shared.data_dir.clone(),
                available_mib: available / (1024 * 1024),
                reserve_mib: self.shared.min_free_disk_bytes / (1024 * 1024),
            });
        }
        Ok(())
    }

    /// Serialises read-then-write sequences within `scope` (an import batch, an API upsert, a
    /// rollback), so that two writers never stage changes from the same stale read. Hold the
    /// guard from the first read until the commit returns.
    pub fn lock_scope(&self, scope: Scope) -> ScopeWriteGuard {
        let lock = self
            .shared
            .writers
            .lock()
            .map(|mut locks| Arc::clone(locks.entry(scope).or_default()))
            .unwrap_or_default();
        ScopeWriteGuard { lock }
    }

    /// A number never handed out before, not even across restarts or in the database a backup
    /// restored (sled's id generator, above the floor a restore set).
    pub fn generate_id(&self) -> Result<u64, StoreError> {
        Ok(self.shared.db.generate_id()? + self.shared.id_floor)
    }

    /// Bytes the database occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.shared.db.size_on_disk()?)
    }

    pub fn data_dir(&self) -> &Path {
        &self.shared.data_dir
    }

    /// The appliance's audit key, for the audit log's own sealing.
    pub fn audit_key(&self) -> Result<(KeyId, SecretKey), StoreError> {
        self.scope_keys(Scope::Appliance)?
            .audit
            .clone()
            .ok_or(StoreError::UnknownScope(Scope::Appliance))
    }

    /// Unwrapped keys of `scope`, loaded from the `keys` tree on first use and cached.
    pub(crate) fn scope_keys(&self, scope: Scope) -> Result<Arc<ScopeKeys>, StoreError> {
        if let Some(keys) = self
            .shared
            .scopes
            .read()
            .ok()
            .and_then(|cache| cache.get(&scope).cloned())
        {
            return Ok(keys);
        }
        let keys = Arc::new(self.load_scope_keys(scope)?);
        if let Ok(mut cache) = self.shared.scopes.write() {
            cache.insert(scope, Arc::clone(&keys));
        }
        Ok(keys)
    }

    fn load_scope_keys(&self, scope: Scope) -> Result<ScopeKeys, StoreError> {
        let tree = self.shared.db.open_tree(KEYS_TREE)?;
        let mut data: Vec<(KeyId, SecretKey)> = Vec::new();
        let mut index = None;
        let mut audit = None;
        for entry in tree.scan_prefix(WrappedKeyHeader::scope_prefix(scope)) {
            let (_, value) = entry?;
            let record: WrappedKey =
                rmp_serde::from_slice(&value).map_err(|error| StoreError::Decode {
                    collection: KEYS_TREE.to_owned(),
                    message: error.to_string(),
                })?;
            if record.header.scope != scope {
                continue;
            }
            let master = self.master();
            let key = master
                .unwrap(&record.header, &record.wrapped)
                .map_err(|_| StoreError::WrongMasterKey {
                    key: master.source().to_path_buf(),
                    data_dir: self.shared.data_dir.clone(),
                })?;
            match record.header.purpose {
                KeyPurpose::Data => data.push((record.header.id, key)),
                KeyPurpose::Index => index = Some(key),
                KeyPurpose::Audit => audit = Some((record.header.id, key)),
            }
        }
        // Key ids are ULIDs, so the newest data key sorts last.
        data.sort_by_key(|(id, _)| *id);
        let current_data = data.pop().ok_or(StoreError::UnknownScope(scope))?;
        let index = index.ok_or(StoreError::UnknownScope(scope))?;
        Ok(ScopeKeys {
            current_data,
            older_data: data.into_iter().collect(),
            index,
            audit,
        })
    }

    /// Destroys a tenant's scope (offboarding's purge): first its wrapped keys in the `keys`
    /// tree and the key cache (crypto-shredding: copies of its records left in sled's old log
    /// segments no longer open with the keys this database holds), then every tree of the scope;
    /// flushed before it returns. Copies of the wrapped keys themselves (in old log segments, in
    /// backups) stay wrapped under the master key: `rapport keys rotate-master` after a purge
    /// makes them useless too. Idempotent, so a purge cut
    /// off half-way is finished by running it again. Only a tenant's scope can be destroyed.
    pub fn destroy_scope(&self, tenant: TenantId) -> Result<ScopeDestroyed, StoreError> {
        // Only a tenant's scope: the type keeps the appliance's own keys out of reach.
        let scope = Scope::Tenant(tenant);
        // Dropped trees get no pre-images: a running snapshot (backup) finishes first.
        let _no_snapshot = self.wait_for_snapshot();
        let keys = self.keys_tree()?;
        let mut removals = sled::Batch::default();
        let mut destroyed = ScopeDestroyed::default();
        for entry in keys.scan_prefix(WrappedKeyHeader::scope_prefix(scope)) {
            let (key, _) = entry?;
            removals.remove(key);
            destroyed.keys += 1;
        }
        keys.apply_batch(removals)?;
        if let Ok(mut cache) = self.shared.scopes.write() {
            cache.remove(&scope);
        }
        // The tenant's subject keys are wrapped under the keys just removed (and their trees go
        // below): none stays usable from memory either.
        self.forget_subject_keys(tenant);
        self.flush()?;
        let prefix = scope.tree_name("");
        for name in self.shared.db.tree_names() {
            if name.starts_with(prefix.as_bytes()) {
                destroyed.records += self.shared.db.open_tree(&name)?.len() as u64;
                self.shared.db.drop_tree(&name)?;
                destroyed.trees += 1;
            }
        }
        self.flush()?;
        Ok(destroyed)
    }

    /// Opens `sealed`, the bytes of record `record_key` of `collection` as they were once
    /// stored, with the keys this database holds now for `scope` (read from the `keys` tree, not
    /// from the cache). The proof of crypto-shredding: after [`Store::destroy_scope`] it fails
    /// with [`StoreError::UnknownScope`] whatever copy of the bytes survived.
    pub fn open_with_stored_keys(
        &self,
        scope: Scope,
        collection: &str,
        record_key: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let keys = self.load_scope_keys(scope)?;
        if codec::subject_key_of(sealed).is_some() {
            return self.open_subject_sealed_with(&keys, scope, collection, record_key, sealed);
        }
        codec::open(&keys, scope, collection, record_key, sealed).map(|plain| plain.to_vec())
    }

    pub(crate) fn master(&self) -> Arc<MasterKey> {
        // A poisoned lock only means a panic elsewhere; the key in it is whole.
        match self.shared.master.read() {
            Ok(master) => Arc::clone(&master),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub(crate) fn keys_tree(&self) -> Result<sled::Tree, StoreError> {
        Ok(self.shared.db.open_tree(KEYS_TREE)?)
    }
}

/// How long to wait for a database lock that is being released: sled's background threads close
/// the file a moment after the last handle is dropped, and a restarting service may overlap with
/// its predecessor's exit.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

fn open_sled(settings: &StoreSettings, db_path: &Path) -> Result<sled::Db, StoreError> {
    let started = std::time::Instant::now();
    loop {
        let attempt = sled::Config::new()
            .path(db_path)
            .cache_capacity(settings.cache_capacity_bytes)
            .flush_every_ms(Some(500))
            .open();
        match attempt {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(io)) if io.to_string().contains("could not acquire lock") => {
                if started.elapsed() >= LOCK_PATIENCE {
                    return Err(StoreError::Locked(settings.data_dir.clone()));
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(sled::Error::Io(source)) => {
                return Err(StoreError::Io {
                    path: db_path.to_path_buf(),
                    source,
                })
            }
            Err(other) => return Err(StoreError::Database(other)),
        }
    }
}

#[cfg(test)]
mod tests;
