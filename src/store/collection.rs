//! Typed access to sealed records: [`Collection`] (records by id), [`BlindIndex`] (personal value
//! → target, through an HMAC token) and [`WriteSet`] (several writes committed atomically).
//! Callers never see bytes, trees or keys.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use zeroize::Zeroizing;

use crate::crypto::{self, SecretKey};
use crate::ids::{KeyId, TenantId, UserId};
use crate::store::codec;
use crate::store::keys::{KeyPurpose, ScopeKeys, WrappedKey, WrappedKeyHeader};
use crate::store::subject::{NewSubjectKey, SUBJECT_TOKENS};
use crate::store::{Scope, Store, StoreError};

/// How a record's id becomes its key in the tree. Keys never contain personal data.
pub trait RecordKey: Sized {
    fn to_key_bytes(&self) -> Vec<u8>;
    fn from_key_bytes(bytes: &[u8]) -> Option<Self>;
}

impl RecordKey for TenantId {
    fn to_key_bytes(&self) -> Vec<u8> {
        self.to_bytes().to_vec()
    }
    fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self::from_bytes(bytes.try_into().ok()?))
    }
}

impl RecordKey for UserId {
    fn to_key_bytes(&self) -> Vec<u8> {
        self.to_bytes().to_vec()
    }
    fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self::from_bytes(bytes.try_into().ok()?))
    }
}

impl RecordKey for crate::ids::RecordId {
    fn to_key_bytes(&self) -> Vec<u8> {
        self.to_bytes().to_vec()
    }
    fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self::from_bytes(bytes.try_into().ok()?))
    }
}

impl RecordKey for crate::ids::ImportId {
    fn to_key_bytes(&self) -> Vec<u8> {
        self.to_bytes().to_vec()
    }
    fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self::from_bytes(bytes.try_into().ok()?))
    }
}

impl RecordKey for crate::ids::ApiKeyId {
    fn to_key_bytes(&self) -> Vec<u8> {
        self.to_bytes().to_vec()
    }
    fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self::from_bytes(bytes.try_into().ok()?))
    }
}

impl RecordKey for crate::ids::IntegrationId {
    fn to_key_bytes(&self) -> Vec<u8> {
        self.to_bytes().to_vec()
    }
    fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self::from_bytes(bytes.try_into().ok()?))
    }
}

impl RecordKey for crate::ids::FeedbackBatchId {
    fn to_key_bytes(&self) -> Vec<u8> {
        self.to_bytes().to_vec()
    }
    fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self::from_bytes(bytes.try_into().ok()?))
    }
}

impl RecordKey for crate::ids::AlertId {
    fn to_key_bytes(&self) -> Vec<u8> {
        self.to_bytes().to_vec()
    }
    fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self::from_bytes(bytes.try_into().ok()?))
    }
}

impl RecordKey for crate::ids::HoldId {
    fn to_key_bytes(&self) -> Vec<u8> {
        self.to_bytes().to_vec()
    }
    fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self::from_bytes(bytes.try_into().ok()?))
    }
}

impl RecordKey for crate::ids::RetentionRunId {
    fn to_key_bytes(&self) -> Vec<u8> {
        self.to_bytes().to_vec()
    }
    fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self::from_bytes(bytes.try_into().ok()?))
    }
}

/// An entry of an ordered log: the log's id, then a big-endian sequence number.
impl RecordKey for crate::ids::RequestId {
    fn to_key_bytes(&self) -> Vec<u8> {
        self.to_bytes().to_vec()
    }
    fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self::from_bytes(bytes.try_into().ok()?))
    }
}

impl RecordKey for (crate::ids::ImportId, u64) {
    fn to_key_bytes(&self) -> Vec<u8> {
        let mut key = self.0.to_bytes().to_vec();
        key.extend_from_slice(&self.1.to_be_bytes());
        key
    }
    fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
        let (id, seq) = bytes.split_at_checked(16)?;
        Some((
            crate::ids::ImportId::from_bytes(id.try_into().ok()?),
            u64::from_be_bytes(seq.try_into().ok()?),
        ))
    }
}

/// Sequence numbers (for example search document numbers), big-endian so they sort.
impl RecordKey for u64 {
    fn to_key_bytes(&self) -> Vec<u8> {
        self.to_be_bytes().to_vec()
    }
    fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
        Some(u64::from_be_bytes(bytes.try_into().ok()?))
    }
}

/// A keyed token followed by a sequence number: the chunks of a blind posting list.
impl RecordKey for ([u8; 32], u64) {
    fn to_key_bytes(&self) -> Vec<u8> {
        let mut key = self.0.to_vec();
        key.extend_from_slice(&self.1.to_be_bytes());
        key
    }
    fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
        let (token, seq) = bytes.split_at_checked(32)?;
        Some((
            token.try_into().ok()?,
            u64::from_be_bytes(seq.try_into().ok()?),
        ))
    }
}

/// A keyed token followed by a record id: the entries of the reference index (`records::refs`),
/// whose record ids, being ULIDs, sort in creation order under each token.
impl RecordKey for ([u8; 32], crate::ids::RecordId) {
    fn to_key_bytes(&self) -> Vec<u8> {
        let mut key = self.0.to_vec();
        key.extend_from_slice(&self.1.to_bytes());
        key
    }
    fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
        let (token, id) = bytes.split_at_checked(32)?;
        Some((
            token.try_into().ok()?,
            crate::ids::RecordId::from_bytes(id.try_into().ok()?),
        ))
    }
}

/// Digests (for example of a session token) used as keys.
impl RecordKey for [u8; 32] {
    fn to_key_bytes(&self) -> Vec<u8> {
        self.to_vec()
    }
    fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok()
    }
}

/// Fixed names chosen by the code (for example a settings record), never user input.
impl RecordKey for &'static str {
    fn to_key_bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
    fn from_key_bytes(_bytes: &[u8]) -> Option<Self> {
        None
    }
}

fn encode<T: Serialize>(collection: &str, value: &T) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    rmp_serde::to_vec_named(value)
        .map(Zeroizing::new)
        .map_err(|error| StoreError::Decode {
            collection: collection.to_owned(),
            message: error.to_string(),
        })
}

fn decode<T: DeserializeOwned>(collection: &str, bytes: &[u8]) -> Result<T, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|error| StoreError::Decode {
        collection: collection.to_owned(),
        message: decode_problem(&error),
    })
}

/// What went wrong decoding a record, without the decoded values: serde's own messages can quote
/// them, and this error travels to logs.
fn decode_problem(error: &rmp_serde::decode::Error) -> String {
    use rmp_serde::decode::Error;
    match error {
        Error::Syntax(_) | Error::Uncategorized(_) => {
            "its fields do not match the record type".to_owned()
        }
        structural => structural.to_string(),
    }
}

/// Records of one type in one scope, sealed under that scope's data key.
pub struct Collection<K, T> {
    store: Store,
    tree: sled::Tree,
    scope: Scope,
    name: &'static str,
    keys: Arc<ScopeKeys>,
    marker: PhantomData<fn() -> (K, T)>,
}

impl<K: RecordKey, T: Serialize + DeserializeOwned> Collection<K, T> {
    pub(super) fn new(
        store: Store,
        tree: sled::Tree,
        scope: Scope,
        name: &'static str,
        keys: Arc<ScopeKeys>,
    ) -> Self {
        Self {
            store,
            tree,
            scope,
            name,
            keys,
            marker: PhantomData,
        }
    }

    pub fn get(&self, key: &K) -> Result<Option<T>, StoreError> {
        let key_bytes = key.to_key_bytes();
        match self.tree.get(&key_bytes)? {
            Some(sealed) => self.open_value(&key_bytes, &sealed).map(Some),
            None => Ok(None),
        }
    }

    /// The record's bytes exactly as stored (sealed), for [`Store::open_with_stored_keys`] and
    /// [`Collection::open_sealed`]: what a copy of the database file holds.
    pub fn sealed_bytes(&self, key: &K) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree
            .get(key.to_key_bytes())?
            .map(|bytes| bytes.to_vec()))
    }

    /// Inserts or replaces one record, durably.
    pub fn insert(&self, key: &K, value: &T) -> Result<(), StoreError> {
        let mut writes = WriteSet::default();
        writes.put(self, key, value)?;
        self.store.commit(writes)
    }

    /// Inserts or replaces one record without waiting for the disk: it is durable after the
    /// store's next flush (at most 500 ms later). Only for values that can be rebuilt after a
    /// crash, never for anything acknowledged to a user.
    pub fn insert_relaxed(&self, key: &K, value: &T) -> Result<(), StoreError> {
        self.store.ensure_disk_reserve()?;
        let key_bytes = key.to_key_bytes();
        let sealed = self.seal_value(&key_bytes, value)?;
        let _gate = self
            .store
            .write_gate([(&self.tree, key_bytes.as_slice())])?;
        self.tree.insert(key_bytes, sealed)?;
        Ok(())
    }

    /// Removes one record, durably. Removing an absent record is not an error.
    pub fn remove(&self, key: &K) -> Result<(), StoreError> {
        let mut writes = WriteSet::default();
        writes.remove(self, key);
        self.store.commit(writes)
    }

    /// Every record, in key order (creation order for ULID keys).
    pub fn scan(&self) -> impl Iterator<Item = Result<(K, T), StoreError>> + '_ {
        self.scan_prefix(&[])
    }

    /// Records whose key starts with `prefix`'s key bytes (for composite keys), in key order.
    pub fn scan_prefix<'a>(
        &'a self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(K, T), StoreError>> + 'a {
        self.tree.scan_prefix(prefix).filter_map(move |entry| {
            let result = entry.map_err(StoreError::from).and_then(|(key, sealed)| {
                let value = self.open_value(&key, &sealed)?;
                Ok(K::from_key_bytes(&key).map(|typed_key| (typed_key, value)))
            });
            result.transpose()
        })
    }

    /// Records newest first (reverse key order), starting just below `before` when given. Pages
    /// that show the latest records first read only what they show, not the whole collection.
    pub fn scan_newest_first(
        &self,
        before: Option<&K>,
    ) -> impl Iterator<Item = Result<(K, T), StoreError>> + '_ {
        let entries = match before {
            Some(key) => self.tree.range(..key.to_key_bytes()),
            None => self.tree.range::<Vec<u8>, _>(..),
        };
        entries.rev().filter_map(move |entry| {
            let result = entry.map_err(StoreError::from).and_then(|(key, sealed)| {
                let value = self.open_value(&key, &sealed)?;
                Ok(K::from_key_bytes(&key).map(|typed_key| (typed_key, value)))
            });
            result.transpose()
        })
    }

    /// The records whose keys sort after `after`, in key order: a page that continues where the
    /// previous one ended (creation order for ULID keys).
    pub fn scan_after(&self, after: &K) -> impl Iterator<Item = Result<(K, T), StoreError>> + '_ {
        let start = std::ops::Bound::Excluded(after.to_key_bytes());
        self.tree
            .range::<Vec<u8>, _>((start, std::ops::Bound::Unbounded))
            .filter_map(move |entry| {
                let result = entry.map_err(StoreError::from).and_then(|(key, sealed)| {
                    let value = self.open_value(&key, &sealed)?;
                    Ok(K::from_key_bytes(&key).map(|typed_key| (typed_key, value)))
                });
                result.transpose()
            })
    }

    /// The keys that start with `prefix`'s bytes, in key order, without opening any value.
    pub fn keys_with_prefix<'a>(
        &'a self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<K, StoreError>> + 'a {
        self.tree.scan_prefix(prefix).keys().filter_map(|key| {
            key.map_err(StoreError::from)
                .map(|bytes| K::from_key_bytes(&bytes))
                .transpose()
        })
    }

    /// A keyed token of `value` under the scope's index key, in this collection's own domain: a
    /// key prefix for collections keyed by personal values (the reference index), which never
    /// holds the value itself. The caller normalises `value`.
    pub fn keyed_token(&self, value: &str) -> [u8; 32] {
        crypto::keyed_hash(&self.keys.index, self.name, value.as_bytes())
    }

    /// [`Collection::keys_with_prefix`] in reverse key order (the newest first for keys that end
    /// in a ULID).
    pub fn keys_with_prefix_newest_first<'a>(
        &'a self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<K, StoreError>> + 'a {
        self.tree
            .scan_prefix(prefix)
            .keys()
            .rev()
            .filter_map(|key| {
                key.map_err(StoreError::from)
                    .map(|bytes| K::from_key_bytes(&bytes))
                    .transpose()
            })
    }

    /// Whether a record is stored under `key`, without opening it.
    pub fn contains(&self, key: &K) -> Result<bool, StoreError> {
        Ok(self.tree.contains_key(key.to_key_bytes())?)
    }

    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    fn seal_value(&self, key_bytes: &[u8], value: &T) -> Result<Vec<u8>, StoreError> {
        let plaintext = encode(self.name, value)?;
        Ok(codec::seal(
            &self.keys, self.scope, self.name, key_bytes, &plaintext,
        ))
    }

    fn open_value(&self, key_bytes: &[u8], sealed: &[u8]) -> Result<T, StoreError> {
        let plaintext = match (codec::subject_key_of(sealed), self.scope) {
            (Some(id), Scope::Tenant(tenant)) => {
                let key = self.store.subject_key(tenant, id)?.ok_or_else(|| {
                    StoreError::SubjectErased {
                        collection: self.name.to_owned(),
                    }
                })?;
                codec::open_for_subject(&key, self.scope, self.name, key_bytes, sealed)?
            }
            _ => codec::open(&self.keys, self.scope, self.name, key_bytes, sealed)?,
        };
        decode(self.name, &plaintext)
    }

    /// Opens `sealed` as the value of `key` with the keys the store has now: fails once the key
    /// that sealed it is gone.
    pub fn open_sealed(&self, key: &K, sealed: &[u8]) -> Result<T, StoreError> {
        self.open_value(&key.to_key_bytes(), sealed)
    }

    /// The id of the data subject key that sealed the value under `key`, if a subject key did.
    pub fn subject_key_of(&self, key: &K) -> Result<Option<KeyId>, StoreError> {
        Ok(self
            .tree
            .get(key.to_key_bytes())?
            .and_then(|sealed| codec::subject_key_of(&sealed)))
    }

    /// The keys of every value sealed under subject key `id`, read from the values' clear
    /// headers (nothing is opened): what an erasure re-applied to an older copy must delete.
    pub fn keys_sealed_under(&self, id: KeyId) -> Result<Vec<K>, StoreError> {
        let mut found = Vec::new();
        for entry in &self.tree {
            let (key, sealed) = entry?;
            if codec::subject_key_of(&sealed) == Some(id) {
                if let Some(typed) = K::from_key_bytes(&key) {
                    found.push(typed);
                }
            }
        }
        Ok(found)
    }

    #[cfg(test)]
    pub(crate) fn raw_tree(&self) -> &sled::Tree {
        &self.tree
    }
}

/// Maps a normalised personal value (an e-mail, a slug) to a sealed target through
/// `HMAC-SHA256(index key, value)`, so the database never holds the value itself.
pub struct BlindIndex<V> {
    tree: sled::Tree,
    scope: Scope,
    name: &'static str,
    keys: Arc<ScopeKeys>,
    marker: PhantomData<fn() -> V>,
}

impl<V: Serialize + DeserializeOwned> BlindIndex<V> {
    pub(super) fn new(
        tree: sled::Tree,
        scope: Scope,
        name: &'static str,
        keys: Arc<ScopeKeys>,
    ) -> Self {
        Self {
            tree,
            scope,
            name,
            keys,
            marker: PhantomData,
        }
    }

    fn token(&self, value: &str) -> [u8; 32] {
        crypto::keyed_hash(&self.keys.index, self.name, value.as_bytes())
    }

    /// The target stored for `value`, which the caller has already normalised.
    pub fn get(&self, value: &str) -> Result<Option<V>, StoreError> {
        let token = self.token(value);
        match self.tree.get(token)? {
            Some(sealed) => {
                let plaintext = codec::open(&self.keys, self.scope, self.name, &token, &sealed)?;
                decode(self.name, &plaintext).map(Some)
            }
            None => Ok(None),
        }
    }

    /// The token of `value` under this index: a stable, keyed pseudonym usable as a map key
    /// (for example to count failed logins per e-mail without holding the e-mail).
    pub fn pseudonym(&self, value: &str) -> [u8; 32] {
        self.token(value)
    }

    fn seal_target(&self, token: &[u8; 32], target: &V) -> Result<Vec<u8>, StoreError> {
        let plaintext = encode(self.name, target)?;
        Ok(codec::seal(
            &self.keys, self.scope, self.name, token, &plaintext,
        ))
    }
}

enum Operation {
    Put(Vec<u8>),
    Remove,
    /// Insert that aborts the whole write set when the key already exists.
    Claim {
        value: Vec<u8>,
        index: &'static str,
    },
}

struct PendingWrite {
    tree: usize,
    key: Vec<u8>,
    operation: Operation,
}

/// The most bytes [`WriteSet::apply_per_tree`] gives sled in one batch. sled keeps every node
/// version a batch replaces until the batch ends, so this bounds that garbage: 64 KiB imported
/// as fast as 1 MiB with a lower peak RSS (500 against 649 MiB for 300,000 interactions, 881
/// against 1,386 MiB for 1,000,000), for a data directory about 12–17 % larger; 16 KiB was 13 %
/// slower and no smaller.
pub(super) const MAX_SLED_BATCH_BYTES: usize = 64 * 1024;

/// Writes to several collections and indexes, committed atomically by [`Store::commit`].
/// Values are sealed when added, so the transaction itself only moves bytes.
#[derive(Default)]
pub struct WriteSet {
    trees: Vec<sled::Tree>,
    writes: Vec<PendingWrite>,
    /// Subject keys this write set creates, cached once it has committed.
    new_subject_keys: Vec<NewSubjectKey>,
    /// Slots of the subject-key trees: [`WriteSet::apply_per_tree`] writes them before the
    /// values sealed under the keys.
    subject_slots: Vec<usize>,
}

impl WriteSet {
    fn tree_slot(&mut self, tree: &sled::Tree) -> usize {
        if let Some(position) = self
            .trees
            .iter()
            .position(|known| known.name() == tree.name())
        {
            return position;
        }
        self.trees.push(tree.clone());
        self.trees.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Every (tree, record key) the write set writes, for [`Store::write_gate`].
    pub(super) fn touched(&self) -> impl Iterator<Item = (&sled::Tree, &[u8])> {
        self.writes
            .iter()
            .map(|write| (&self.trees[write.tree], write.key.as_slice()))
    }

    pub fn put<K: RecordKey, T: Serialize + DeserializeOwned>(
        &mut self,
        collection: &Collection<K, T>,
        key: &K,
        value: &T,
    ) -> Result<(), StoreError> {
        let key_bytes = key.to_key_bytes();
        let sealed = collection.seal_value(&key_bytes, value)?;
        let tree = self.tree_slot(&collection.tree);
        self.writes.push(PendingWrite {
            tree,
            key: key_bytes,
            operation: Operation::Put(sealed),
        });
        Ok(())
    }

    /// Like [`WriteSet::put`], but seals the value under the key of data subject `subject` (a
    /// normalised subject name such as `email:jo@example.org`, see `privacy::subjects`), creating
    /// the subject's key when it has none; `None`, or a collection outside a tenant's scope,
    /// seals under the scope's data key as `put` does. Erasing the subject destroys the key.
    pub fn put_for<K: RecordKey, T: Serialize + DeserializeOwned>(
        &mut self,
        collection: &Collection<K, T>,
        key: &K,
        value: &T,
        subject: Option<&str>,
    ) -> Result<(), StoreError> {
        let (Some(subject), Scope::Tenant(tenant)) = (subject, collection.scope) else {
            return self.put(collection, key, value);
        };
        let (key_id, subject_key) = self.subject_key(&collection.store, tenant, subject)?;
        self.put_sealed_for_subject(collection, key, value, key_id, &subject_key)
    }

    /// Like [`WriteSet::put`], but seals under subject key `subject_key` when given: for derived
    /// data sealed like the record it comes from (see [`Collection::subject_key_of`]), so that
    /// erasing the record's subject makes it unreadable too. Stages nothing and answers false
    /// when that key has been destroyed (the record was erased: nothing derived from it may be
    /// written again).
    pub fn put_under<K: RecordKey, T: Serialize + DeserializeOwned>(
        &mut self,
        collection: &Collection<K, T>,
        key: &K,
        value: &T,
        subject_key: Option<KeyId>,
    ) -> Result<bool, StoreError> {
        let (Some(key_id), Scope::Tenant(tenant)) = (subject_key, collection.scope) else {
            self.put(collection, key, value)?;
            return Ok(true);
        };
        let Some(secret) = collection.store.subject_key(tenant, key_id)? else {
            return Ok(false);
        };
        self.put_sealed_for_subject(collection, key, value, key_id, &secret)?;
        Ok(true)
    }

    /// Stages `value` sealed under subject key `key_id` (format 2): what [`WriteSet::put_for`]
    /// and [`WriteSet::put_under`] share once they have the key.
    fn put_sealed_for_subject<K: RecordKey, T: Serialize + DeserializeOwned>(
        &mut self,
        collection: &Collection<K, T>,
        key: &K,
        value: &T,
        key_id: KeyId,
        secret: &SecretKey,
    ) -> Result<(), StoreError> {
        let key_bytes = key.to_key_bytes();
        let plaintext = encode(collection.name, value)?;
        let sealed = codec::seal_for_subject(
            key_id,
            secret,
            collection.scope,
            collection.name,
            &key_bytes,
            &plaintext,
        );
        let tree = self.tree_slot(&collection.tree);
        self.writes.push(PendingWrite {
            tree,
            key: key_bytes,
            operation: Operation::Put(sealed),
        });
        Ok(())
    }

    /// The key of `subject`: one this write set created, the stored one, or a new one staged
    /// here (its token claimed, so two writers never give one subject two keys).
    fn subject_key(
        &mut self,
        store: &Store,
        tenant: TenantId,
        subject: &str,
    ) -> Result<(KeyId, SecretKey), StoreError> {
        let token = store.subject_token(tenant, subject)?;
        if let Some(new) = self
            .new_subject_keys
            .iter()
            .find(|new| new.tenant == tenant && new.token == token)
        {
            return Ok((new.id, new.key.clone()));
        }
        if let Some(found) = store.subject_key_for_token(tenant, &token)? {
            return Ok(found);
        }
        let fresh = NewSubjectKey {
            tenant,
            token,
            id: KeyId::new(),
            key: SecretKey::generate(),
        };
        let [(tokens_tree, token_key, token_value), (keys_tree, id_key, key_value)] =
            store.stage_subject_key(&fresh)?;
        let tokens_slot = self.tree_slot(&tokens_tree);
        let keys_slot = self.tree_slot(&keys_tree);
        for slot in [tokens_slot, keys_slot] {
            if !self.subject_slots.contains(&slot) {
                self.subject_slots.push(slot);
            }
        }
        self.writes.push(PendingWrite {
            tree: tokens_slot,
            key: token_key,
            operation: Operation::Claim {
                value: token_value,
                index: SUBJECT_TOKENS,
            },
        });
        self.writes.push(PendingWrite {
            tree: keys_slot,
            key: id_key,
            operation: Operation::Put(key_value),
        });
        let found = (fresh.id, fresh.key.clone());
        self.new_subject_keys.push(fresh);
        Ok(found)
    }

    pub(super) fn take_new_subject_keys(&mut self) -> Vec<NewSubjectKey> {
        std::mem::take(&mut self.new_subject_keys)
    }

    pub fn remove<K: RecordKey, T: Serialize + DeserializeOwned>(
        &mut self,
        collection: &Collection<K, T>,
        key: &K,
    ) {
        let tree = self.tree_slot(&collection.tree);
        self.writes.push(PendingWrite {
            tree,
            key: key.to_key_bytes(),
            operation: Operation::Remove,
        });
    }

    /// Points `value` at `target`; the commit fails with [`StoreError::Conflict`] when `value`
    /// is already taken.
    pub fn claim<V: Serialize + DeserializeOwned>(
        &mut self,
        index: &BlindIndex<V>,
        value: &str,
        target: &V,
    ) -> Result<(), StoreError> {
        let token = index.token(value);
        let sealed = index.seal_target(&token, target)?;
        let tree = self.tree_slot(&index.tree);
        self.writes.push(PendingWrite {
            tree,
            key: token.to_vec(),
            operation: Operation::Claim {
                value: sealed,
                index: index.name,
            },
        });
        Ok(())
    }

    pub fn release<V: Serialize + DeserializeOwned>(&mut self, index: &BlindIndex<V>, value: &str) {
        let token = index.token(value);
        let tree = self.tree_slot(&index.tree);
        self.writes.push(PendingWrite {
            tree,
            key: token.to_vec(),
            operation: Operation::Remove,
        });
    }

    /// Adds freshly generated, master-wrapped data and index keys (and, for the appliance, the
    /// audit key) for `scope`.
    pub fn create_scope_keys(
        &mut self,
        store: &Store,
        scope: Scope,
        with_audit_key: bool,
    ) -> Result<(), StoreError> {
        let tree = store.keys_tree()?;
        let slot = self.tree_slot(&tree);
        let mut purposes = vec![KeyPurpose::Data, KeyPurpose::Index];
        if with_audit_key {
            purposes.push(KeyPurpose::Audit);
        }
        for purpose in purposes {
            let header = WrappedKeyHeader {
                id: KeyId::new(),
                scope,
                purpose,
            };
            let key = SecretKey::generate();
            let record = WrappedKey {
                wrapped: store.master().wrap(&header, &key),
                master_fingerprint: hex::encode(store.master().fingerprint()),
                created: chrono::Utc::now(),
                header: header.clone(),
            };
            let bytes = rmp_serde::to_vec_named(&record).map_err(|error| StoreError::Decode {
                collection: "keys".to_owned(),
                message: error.to_string(),
            })?;
            self.writes.push(PendingWrite {
                tree: slot,
                key: header.tree_key(),
                operation: Operation::Claim {
                    value: bytes,
                    index: "keys",
                },
            });
        }
        Ok(())
    }

    /// Applies the writes tree by tree, in the order the trees were first staged, each tree's
    /// writes as atomic sled batches of at most [`MAX_SLED_BATCH_BYTES`], calling `after_first`
    /// once the first tree's writes are in. Claims are checked before anything is written.
    /// Cheaper than [`WriteSet::apply`]'s transaction, and bounded in memory (sled holds what a
    /// batch replaces until the batch ends), but **not atomic**: only for a writer that holds
    /// the scope's writer lock (so nothing claims meanwhile) and stages first a journal, small
    /// enough for one batch, from which a partial application can be undone (the importer).
    pub(super) fn apply_per_tree(
        self,
        after_first: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.check_claims()?;
        // Per tree, its full batches in order, the batch being filled, and its bytes.
        let mut batches: Vec<(Vec<sled::Batch>, sled::Batch, usize)> =
            vec![(Vec::new(), sled::Batch::default(), 0); self.trees.len()];
        for write in self.writes {
            let (full, batch, bytes) = &mut batches[write.tree];
            let size = write.key.len()
                + match &write.operation {
                    Operation::Put(value) | Operation::Claim { value, .. } => value.len(),
                    Operation::Remove => 0,
                };
            if *bytes > 0 && *bytes + size > MAX_SLED_BATCH_BYTES {
                full.push(std::mem::take(batch));
                *bytes = 0;
            }
            *bytes += size;
            match write.operation {
                Operation::Put(value) | Operation::Claim { value, .. } => {
                    batch.insert(write.key, value);
                }
                Operation::Remove => batch.remove(write.key),
            }
        }
        // The first tree (the journal), then the subject keys, then what is sealed under them:
        // a crash part-way never leaves a value whose key was not written.
        let mut order: Vec<usize> = (0..self.trees.len()).collect();
        order.sort_by_key(|slot| (*slot != 0, !self.subject_slots.contains(slot)));
        let mut batches: Vec<Option<(Vec<sled::Batch>, sled::Batch, usize)>> =
            batches.into_iter().map(Some).collect();
        let mut after_first = Some(after_first);
        for slot in order {
            let tree = &self.trees[slot];
            let Some((full, last, _)) = batches[slot].take() else {
                continue;
            };
            for batch in full {
                tree.apply_batch(batch)?;
            }
            tree.apply_batch(last)?;
            if let Some(callback) = after_first.take() {
                callback()?;
            }
        }
        Ok(())
    }

    /// Refuses the write set when one of its claims is already taken, or claimed twice in it:
    /// for the commits that write outside a transaction, under the scope's writer lock (so
    /// nothing claims between this check and the writes).
    pub(super) fn check_claims(&self) -> Result<(), StoreError> {
        let mut claimed = std::collections::HashSet::new();
        for write in &self.writes {
            if let Operation::Claim { index, .. } = &write.operation {
                let taken = self.trees[write.tree].contains_key(write.key.as_slice())?;
                if taken || !claimed.insert((write.tree, write.key.as_slice())) {
                    return Err(StoreError::Conflict { index });
                }
            }
        }
        Ok(())
    }

    /// The trees written, in slot order.
    pub(super) fn trees(&self) -> &[sled::Tree] {
        &self.trees
    }

    /// Each write in staged order: tree slot, key, and the value (`None` for a removal).
    pub(super) fn each(&self) -> impl Iterator<Item = (usize, &[u8], Option<&[u8]>)> {
        self.writes.iter().map(|write| {
            let value = match &write.operation {
                Operation::Put(value) | Operation::Claim { value, .. } => Some(value.as_slice()),
                Operation::Remove => None,
            };
            (write.tree, write.key.as_slice(), value)
        })
    }

    /// Whether tree slot `slot` holds subject keys (written before what is sealed under them).
    pub(super) fn is_subject_slot(&self, slot: usize) -> bool {
        self.subject_slots.contains(&slot)
    }

    pub(super) fn apply(self) -> Result<(), StoreError> {
        let trees: Vec<&sled::Tree> = self.trees.iter().collect();
        let writes = &self.writes;
        trees
            .as_slice()
            .transaction(|views| {
                for write in writes {
                    let view = &views[write.tree];
                    match &write.operation {
                        Operation::Put(value) => {
                            view.insert(write.key.as_slice(), value.as_slice())?;
                        }
                        Operation::Remove => {
                            view.remove(write.key.as_slice())?;
                        }
                        Operation::Claim { value, index } => {
                            if view.get(write.key.as_slice())?.is_some() {
                                return Err(ConflictableTransactionError::Abort(
                                    StoreError::Conflict { index },
                                ));
                            }
                            view.insert(write.key.as_slice(), value.as_slice())?;
                        }
                    }
                }
                Ok(())
            })
            .map_err(|error| match error {
                TransactionError::Abort(store_error) => store_error,
                TransactionError::Storage(sled_error) => StoreError::Database(sled_error),
            })
    }
}
