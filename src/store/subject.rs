//! Per-subject data keys: what makes erasure crypto-complete.
//!
//! Values about one data subject (a person, named by a normalised e-mail address or phone number)
//! are sealed under a random key of that subject's own (codec format 2) rather than the tenant's
//! data key. Erasure destroys the key, so every copy of those values — in sled's log-structured
//! files, in an older backup whose subject key the erasure ledger destroys again on restore —
//! can no longer be opened.
//!
//! Layout, in the tenant's scope (so rotation, offboarding and tenant deletion treat them like any
//! other tenant tree):
//!
//! - `subject_keys`: key id → the subject's key and token, sealed (format 1) under the tenant's
//!   data key: that is the wrapping. Tenant key rotation re-seals these like any value, and
//!   destroying the tenant's keys shreds every subject key with them.
//! - `subject_key_tokens`: `HMAC(tenant index key, subject)` → key id, sealed likewise. The
//!   subject's address is never stored, only its keyed token.
//!
//! Unwrapped keys are cached in memory, at most [`SUBJECT_KEY_CACHE`] of them (a page of 200
//! records by 200 people opens 200 keys once, not on every load); a full cache drops its least
//! recently used eighth.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, Transactional};

use crate::crypto::{self, SecretKey};
use crate::ids::{KeyId, TenantId};
use crate::store::{codec, Scope, Store, StoreError};

/// Tree of the wrapped subject keys, by key id.
pub(super) const SUBJECT_KEYS: &str = "subject_keys";
/// Tree of subject tokens → key id.
pub(super) const SUBJECT_TOKENS: &str = "subject_key_tokens";
const TOKEN_DOMAIN: &str = "rapport/subject-key/v1";

/// Unwrapped subject keys kept in memory at most (about 100 bytes each).
pub const SUBJECT_KEY_CACHE: usize = 16_384;

/// A write of a new subject key: the tree, the record key, the sealed value.
pub(super) type StagedWrite = (sled::Tree, Vec<u8>, Vec<u8>);

/// A subject key as stored (sealed under the tenant's data key).
#[derive(Serialize, Deserialize)]
struct SubjectKeyRecord {
    #[serde(with = "serde_bytes")]
    key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    token: Vec<u8>,
    created: chrono::DateTime<chrono::Utc>,
}

/// A subject key created by a write set and cached once the write set has committed.
pub(super) struct NewSubjectKey {
    pub tenant: TenantId,
    pub token: [u8; 32],
    pub id: KeyId,
    pub key: SecretKey,
}

struct CachedKey {
    key: SecretKey,
    token: [u8; 32],
    used: u64,
}

/// A bounded map of unwrapped subject keys, by key id and by token.
pub(crate) struct SubjectKeyCache {
    capacity: usize,
    tick: u64,
    keys: HashMap<(TenantId, KeyId), CachedKey>,
    tokens: HashMap<(TenantId, [u8; 32]), KeyId>,
}

impl SubjectKeyCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(8),
            tick: 0,
            keys: HashMap::new(),
            tokens: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    fn get(&mut self, tenant: TenantId, id: KeyId) -> Option<SecretKey> {
        self.tick += 1;
        let tick = self.tick;
        self.keys.get_mut(&(tenant, id)).map(|cached| {
            cached.used = tick;
            cached.key.clone()
        })
    }

    fn by_token(&mut self, tenant: TenantId, token: &[u8; 32]) -> Option<(KeyId, SecretKey)> {
        let id = *self.tokens.get(&(tenant, *token))?;
        self.get(tenant, id).map(|key| (id, key))
    }

    fn insert(&mut self, tenant: TenantId, id: KeyId, token: [u8; 32], key: SecretKey) {
        if self.keys.len() >= self.capacity && !self.keys.contains_key(&(tenant, id)) {
            self.evict();
        }
        self.tick += 1;
        self.tokens.insert((tenant, token), id);
        self.keys.insert(
            (tenant, id),
            CachedKey {
                key,
                token,
                used: self.tick,
            },
        );
    }

    /// Drops the least recently used eighth (at least one), keeping the cache bounded at an
    /// amortised constant cost per insertion.
    fn evict(&mut self) {
        let drop_count = (self.capacity / 8).max(1);
        let mut ages: Vec<u64> = self.keys.values().map(|cached| cached.used).collect();
        let cut_at = drop_count.min(ages.len()) - 1;
        let (_, cut, _) = ages.select_nth_unstable(cut_at);
        let cut = *cut;
        let tokens = &mut self.tokens;
        self.keys.retain(|(tenant, _), cached| {
            let keep = cached.used > cut;
            if !keep {
                tokens.remove(&(*tenant, cached.token));
            }
            keep
        });
    }

    fn forget(&mut self, tenant: TenantId, id: KeyId) {
        if let Some(cached) = self.keys.remove(&(tenant, id)) {
            self.tokens.remove(&(tenant, cached.token));
        }
    }

    /// Forgets every key of `tenant` (its keys were destroyed).
    pub fn forget_tenant(&mut self, tenant: TenantId) {
        self.keys.retain(|(owner, _), _| *owner != tenant);
        self.tokens.retain(|(owner, _), _| *owner != tenant);
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec_named(value).map_err(|error| StoreError::Decode {
        collection: SUBJECT_KEYS.to_owned(),
        message: error.to_string(),
    })
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|error| StoreError::Decode {
        collection: SUBJECT_KEYS.to_owned(),
        message: error.to_string(),
    })
}

impl Store {
    fn subject_cache(&self) -> std::sync::MutexGuard<'_, SubjectKeyCache> {
        // A poisoned lock only means a panic elsewhere; the cache holds nothing unrecoverable.
        self.shared
            .subject_keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The keyed token naming `subject` (a normalised subject name, such as
    /// `email:jo@example.org`) in `tenant`: what finds its key, and what the erasure ledger and
    /// the audit log keep instead of the address.
    pub fn subject_token(&self, tenant: TenantId, subject: &str) -> Result<[u8; 32], StoreError> {
        let keys = self.scope_keys(Scope::Tenant(tenant))?;
        Ok(crypto::keyed_hash(
            &keys.index,
            TOKEN_DOMAIN,
            subject.as_bytes(),
        ))
    }

    /// The id of the subject key of `token`, if the subject has one.
    pub fn subject_key_id(
        &self,
        tenant: TenantId,
        token: &[u8; 32],
    ) -> Result<Option<KeyId>, StoreError> {
        if let Some((id, _)) = self.subject_cache().by_token(tenant, token) {
            return Ok(Some(id));
        }
        let scope = Scope::Tenant(tenant);
        let tree = self.shared.db.open_tree(scope.tree_name(SUBJECT_TOKENS))?;
        let Some(sealed) = tree.get(token)? else {
            return Ok(None);
        };
        let keys = self.scope_keys(scope)?;
        let bytes = codec::open(&keys, scope, SUBJECT_TOKENS, token, &sealed)?;
        let id: [u8; 16] = decode(&bytes)?;
        Ok(Some(KeyId::from_bytes(id)))
    }

    /// The subject key `id` of `tenant`, unwrapped (from the cache when it is there); `None` once
    /// erasure has destroyed it.
    pub(super) fn subject_key(
        &self,
        tenant: TenantId,
        id: KeyId,
    ) -> Result<Option<SecretKey>, StoreError> {
        if let Some(key) = self.subject_cache().get(tenant, id) {
            return Ok(Some(key));
        }
        let Some((record, _)) = self.load_subject_key(tenant, id)? else {
            return Ok(None);
        };
        let key = SecretKey::from_slice(&record.key).map_err(|_| StoreError::Unsealable {
            collection: SUBJECT_KEYS.to_owned(),
        })?;
        let token: [u8; 32] =
            record
                .token
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::Unsealable {
                    collection: SUBJECT_KEYS.to_owned(),
                })?;
        self.subject_cache().insert(tenant, id, token, key.clone());
        Ok(Some(key))
    }

    fn load_subject_key(
        &self,
        tenant: TenantId,
        id: KeyId,
    ) -> Result<Option<(SubjectKeyRecord, sled::Tree)>, StoreError> {
        let scope = Scope::Tenant(tenant);
        let tree = self.shared.db.open_tree(scope.tree_name(SUBJECT_KEYS))?;
        let Some(sealed) = tree.get(id.to_bytes())? else {
            return Ok(None);
        };
        let keys = self.scope_keys(scope)?;
        let bytes = codec::open(&keys, scope, SUBJECT_KEYS, &id.to_bytes(), &sealed)?;
        Ok(Some((decode(&bytes)?, tree)))
    }

    /// Opens a subject-sealed value (format 2) with the subject key as stored now, unwrapped
    /// with `keys` (the scope's keys as read from the `keys` tree, not the cache): for
    /// `Store::open_with_stored_keys`.
    pub(super) fn open_subject_sealed_with(
        &self,
        keys: &super::keys::ScopeKeys,
        scope: Scope,
        collection: &str,
        record_key: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let erased = || StoreError::SubjectErased {
            collection: collection.to_owned(),
        };
        let (Some(id), Scope::Tenant(_)) = (codec::subject_key_of(sealed), scope) else {
            return Err(erased());
        };
        let tree = self.shared.db.open_tree(scope.tree_name(SUBJECT_KEYS))?;
        let wrapped = tree.get(id.to_bytes())?.ok_or_else(erased)?;
        let bytes = codec::open(keys, scope, SUBJECT_KEYS, &id.to_bytes(), &wrapped)?;
        let record: SubjectKeyRecord = decode(&bytes)?;
        let key = SecretKey::from_slice(&record.key).map_err(|_| erased())?;
        codec::open_for_subject(&key, scope, collection, record_key, sealed)
            .map(|plain| plain.to_vec())
    }

    /// The key of `token` for a write: the existing one, or `None` when the subject has none yet.
    pub(super) fn subject_key_for_token(
        &self,
        tenant: TenantId,
        token: &[u8; 32],
    ) -> Result<Option<(KeyId, SecretKey)>, StoreError> {
        if let Some(found) = self.subject_cache().by_token(tenant, token) {
            return Ok(Some(found));
        }
        let Some(id) = self.subject_key_id(tenant, token)? else {
            return Ok(None);
        };
        Ok(self.subject_key(tenant, id)?.map(|key| (id, key)))
    }

    /// The sealed values that record a new subject key: its token entry and the key itself.
    pub(super) fn stage_subject_key(
        &self,
        fresh: &NewSubjectKey,
    ) -> Result<[StagedWrite; 2], StoreError> {
        let scope = Scope::Tenant(fresh.tenant);
        let keys = self.scope_keys(scope)?;
        let id_bytes = fresh.id.to_bytes();
        let token_value = codec::seal(
            &keys,
            scope,
            SUBJECT_TOKENS,
            &fresh.token,
            &encode(&id_bytes)?,
        );
        let record = SubjectKeyRecord {
            key: fresh.key.expose_bytes().to_vec(),
            token: fresh.token.to_vec(),
            created: chrono::Utc::now(),
        };
        let plaintext = zeroize::Zeroizing::new(encode(&record)?);
        let key_value = codec::seal(&keys, scope, SUBJECT_KEYS, &id_bytes, &plaintext);
        Ok([
            (
                self.shared.db.open_tree(scope.tree_name(SUBJECT_TOKENS))?,
                fresh.token.to_vec(),
                token_value,
            ),
            (
                self.shared.db.open_tree(scope.tree_name(SUBJECT_KEYS))?,
                id_bytes.to_vec(),
                key_value,
            ),
        ])
    }

    /// Caches keys that a committed write set created.
    pub(super) fn cache_new_subject_keys(&self, fresh: Vec<NewSubjectKey>) {
        if fresh.is_empty() {
            return;
        }
        let mut cache = self.subject_cache();
        for new in fresh {
            cache.insert(new.tenant, new.id, new.token, new.key);
        }
    }

    /// Destroys the subject key named by `token` (its token entry and the wrapped key, in one
    /// transaction, flushed), so that nothing sealed under it opens again. Returns the key's id,
    /// or `None` when the subject had no key (already destroyed: erasure runs again safely).
    /// Hold the tenant's writer lock, so that no write seals under the key meanwhile.
    pub fn destroy_subject_key(
        &self,
        tenant: TenantId,
        token: &[u8; 32],
    ) -> Result<Option<KeyId>, StoreError> {
        let Some(id) = self.subject_key_id(tenant, token)? else {
            return Ok(None);
        };
        self.destroy_subject_key_id(tenant, id)?;
        Ok(Some(id))
    }

    /// Destroys subject key `id` (see [`Store::destroy_subject_key`]); true when it existed.
    pub fn destroy_subject_key_id(&self, tenant: TenantId, id: KeyId) -> Result<bool, StoreError> {
        let scope = Scope::Tenant(tenant);
        let tokens = self.shared.db.open_tree(scope.tree_name(SUBJECT_TOKENS))?;
        let loaded = self.load_subject_key(tenant, id)?;
        let Some((record, keys_tree)) = loaded else {
            self.subject_cache().forget(tenant, id);
            return Ok(false);
        };
        let id_key = id.to_bytes();
        let gate = self.write_gate([
            (&keys_tree, &id_key[..]),
            (&tokens, record.token.as_slice()),
        ])?;
        (&keys_tree, &tokens)
            .transaction(|(keys_view, tokens_view)| {
                keys_view.remove(&id.to_bytes()[..])?;
                tokens_view.remove(record.token.as_slice())?;
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|error| match error {
                sled::transaction::TransactionError::Storage(sled_error) => {
                    StoreError::Database(sled_error)
                }
                sled::transaction::TransactionError::Abort(()) => StoreError::Database(
                    sled::Error::ReportableBug("destroying a subject key aborted".to_owned()),
                ),
            })?;
        drop(gate);
        self.flush()?;
        self.subject_cache().forget(tenant, id);
        Ok(true)
    }

    /// The key that seals the erasure ledger (`privacy::ledger`), derived from the appliance's
    /// index key: that key is wrapped by the master key but never rotated (a master rotation
    /// re-wraps it unchanged), and a restored copy of this appliance's database holds the same
    /// one, so the ledger written after a backup still opens against the restored database.
    pub fn erasure_ledger_key(&self) -> Result<SecretKey, StoreError> {
        let keys = self.scope_keys(Scope::Appliance)?;
        let derived = crypto::keyed_hash(&keys.index, "rapport/erasure-ledger-key/v1", b"");
        SecretKey::from_slice(&derived).map_err(|_| StoreError::Unsealable {
            collection: "erasure ledger".to_owned(),
        })
    }

    /// Drops the cached subject keys of `tenant` (its keys were destroyed: offboarding).
    pub fn forget_subject_keys(&self, tenant: TenantId) {
        self.subject_cache().forget_tenant(tenant);
    }

    /// How many subject keys the tenant has.
    pub fn subject_key_count(&self, tenant: TenantId) -> Result<usize, StoreError> {
        let scope = Scope::Tenant(tenant);
        Ok(self
            .shared
            .db
            .open_tree(scope.tree_name(SUBJECT_KEYS))?
            .len())
    }

    /// Unwrapped subject keys held in memory now (bounded by [`SUBJECT_KEY_CACHE`]).
    pub fn cached_subject_keys(&self) -> usize {
        self.subject_cache().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_stays_bounded_and_keeps_recently_used_keys() {
        let mut cache = SubjectKeyCache::new(64);
        let tenant = TenantId::new();
        let first = KeyId::new();
        cache.insert(tenant, first, [0; 32], SecretKey::generate());
        for n in 1..1000u32 {
            let mut token = [0u8; 32];
            token[..4].copy_from_slice(&n.to_be_bytes());
            cache.insert(tenant, KeyId::new(), token, SecretKey::generate());
            // The first key is used all the time: it must never be the one dropped.
            assert!(cache.get(tenant, first).is_some(), "dropped at {n}");
            assert!(cache.len() <= 64);
            assert!(cache.tokens.len() <= 64);
        }
        assert!(cache.by_token(tenant, &[0; 32]).is_some());
        cache.forget(tenant, first);
        assert!(cache.by_token(tenant, &[0; 32]).is_none());
        cache.forget_tenant(tenant);
        assert_eq!(cache.len(), 0);
        assert!(cache.tokens.is_empty());
    }
}
