//! API keys: per-tenant bearer keys for the REST API, scoped `read` and/or `write`.
//!
//! A key reads `rpk_<key id>_<secret>`: the key id (a ULID) finds the record without a scan, the
//! secret is 256 random bits in base64url. Only `SHA-256(key)` is stored (a fast hash is enough
//! for 256 random bits); the key itself is shown once. The appliance-scope `api_key_directory`
//! maps the key id to its tenant; the record itself (name, scopes, digest, creation, revoked flag)
//! lives in the tenant's own `api_keys` collection, so deleting a tenant shreds its keys too. The
//! last-used time lives apart, in `api_key_usage`, so that its relaxed write can never put back
//! a stale copy of the record over a revocation made in the meantime.

use std::collections::BTreeSet;
use std::fmt;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::audit::{Actor, AuditAction, AuditEvent};
use crate::context::AppContext;
use crate::crypto;
use crate::ids::{ApiKeyId, TenantId};
use crate::store::{Collection, Scope, Store, StoreError, WriteSet};
use crate::tenants::absent_if_tenant_gone;

const KEY_PREFIX: &str = "rpk_";
/// Last-used times are written at most this often (relaxed), not on every request.
const LAST_USED_INTERVAL_SECONDS: i64 = 60;
const MAX_NAME: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("a key name must be 1 to {MAX_NAME} characters without control characters")]
    InvalidName,
    #[error("choose at least one scope: read, write")]
    NoScope,
    #[error("unknown scope {0:?}: use read or write")]
    UnknownScope(String),
    #[error("no such API key")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiScope {
    /// Read interactions, accounts, contacts and signals.
    Read,
    /// Create and update them.
    Write,
}

impl ApiScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, ApiKeyError> {
        match raw.trim() {
            "read" => Ok(Self::Read),
            "write" => Ok(Self::Write),
            other => Err(ApiKeyError::UnknownScope(other.chars().take(20).collect())),
        }
    }

    /// Parses a comma-separated list such as `read,write`.
    pub fn parse_list(raw: &str) -> Result<BTreeSet<Self>, ApiKeyError> {
        let scopes = raw
            .split(',')
            .filter(|part| !part.trim().is_empty())
            .map(Self::parse)
            .collect::<Result<BTreeSet<_>, _>>()?;
        if scopes.is_empty() {
            return Err(ApiKeyError::NoScope);
        }
        Ok(scopes)
    }
}

impl fmt::Display for ApiScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A stored API key: everything but the key itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub tenant: TenantId,
    pub name: String,
    pub scopes: BTreeSet<ApiScope>,
    /// SHA-256 of the whole key string.
    pub digest: [u8; 32],
    pub created: DateTime<Utc>,
    pub created_by: String,
    pub revoked: bool,
}

impl ApiKey {
    pub fn scopes_label(&self) -> String {
        self.scopes
            .iter()
            .map(|scope| scope.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The actor that audit entries name for requests made with this key.
    pub fn actor(&self) -> Actor {
        Actor {
            user: None,
            label: format!("api key {}", self.id),
        }
    }
}

/// A new key and the secret string that is shown once (zeroed when dropped, never printed).
pub struct CreatedKey {
    pub key: ApiKey,
    pub secret: SecretString,
}

/// The key collections.
#[derive(Clone)]
pub struct ApiKeyStore {
    store: Store,
}

impl ApiKeyStore {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    fn directory(&self) -> Result<Collection<ApiKeyId, TenantId>, StoreError> {
        self.store.collection(Scope::Appliance, "api_key_directory")
    }

    fn keys(&self, tenant: TenantId) -> Result<Collection<ApiKeyId, ApiKey>, StoreError> {
        self.store.collection(Scope::Tenant(tenant), "api_keys")
    }

    fn usage(&self, tenant: TenantId) -> Result<Collection<ApiKeyId, DateTime<Utc>>, StoreError> {
        self.store
            .collection(Scope::Tenant(tenant), "api_key_usage")
    }

    /// When the key was last used (to the minute), if ever.
    pub fn last_used(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.usage(tenant)?.get(&id)
    }

    /// The key, or `None` when there is none, also when its tenant no longer exists (a
    /// directory entry left behind).
    pub fn get(&self, tenant: TenantId, id: ApiKeyId) -> Result<Option<ApiKey>, StoreError> {
        absent_if_tenant_gone(self.keys(tenant).and_then(|keys| keys.get(&id)))
    }

    /// The tenant's keys, oldest first.
    pub fn list(&self, tenant: TenantId) -> Result<Vec<ApiKey>, StoreError> {
        self.keys(tenant)?
            .scan()
            .map(|entry| entry.map(|(_, key)| key))
            .collect()
    }

    /// Writes the record and its directory entry in one transaction.
    fn create(&self, key: &ApiKey) -> Result<(), StoreError> {
        let mut writes = WriteSet::default();
        writes.put(&self.directory()?, &key.id, &key.tenant)?;
        writes.put(&self.keys(key.tenant)?, &key.id, key)?;
        self.store.commit(writes)
    }

    fn save(&self, key: &ApiKey) -> Result<(), StoreError> {
        self.keys(key.tenant)?.insert(&key.id, key)
    }

    fn touch(&self, key: &ApiKey, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.usage(key.tenant)?.insert_relaxed(&key.id, &now)
    }

    fn tenant_of(&self, id: ApiKeyId) -> Result<Option<TenantId>, StoreError> {
        self.directory()?.get(&id)
    }
}

fn validate_name(name: &str) -> Result<String, ApiKeyError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiKeyError::InvalidName);
    }
    Ok(name.to_owned())
}

fn digest(secret: &str) -> [u8; 32] {
    crypto::sha256(&[b"rapport/api-key/v1\0", secret.as_bytes()])
}

/// Creates a key for `tenant`; the returned secret is the only copy of the key. Audited.
pub fn create_key(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    name: &str,
    scopes: BTreeSet<ApiScope>,
) -> Result<CreatedKey, ApiKeyError> {
    let name = validate_name(name)?;
    if scopes.is_empty() {
        return Err(ApiKeyError::NoScope);
    }
    let id = ApiKeyId::new();
    let random =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crypto::random_bytes::<32>());
    let secret = SecretString::from(format!("{KEY_PREFIX}{id}_{random}"));
    let key = ApiKey {
        id,
        tenant,
        name,
        scopes,
        digest: digest(secret.expose_secret()),
        created: Utc::now(),
        created_by: actor.label.clone(),
        revoked: false,
    };
    context.api_keys.create(&key)?;
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::ApiKeyCreated,
            format!("api key {id} ({})", key.scopes_label()),
        )
        .client(client),
    )?;
    Ok(CreatedKey { key, secret })
}

/// Revokes a key of `tenant`; requests with it are refused from now on. Audited.
pub fn revoke_key(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    id: ApiKeyId,
) -> Result<ApiKey, ApiKeyError> {
    let mut key = context
        .api_keys
        .get(tenant, id)?
        .ok_or(ApiKeyError::NotFound)?;
    if !key.revoked {
        key.revoked = true;
        context.api_keys.save(&key)?;
        context.audit(
            AuditEvent::new(
                Some(tenant),
                actor.clone(),
                AuditAction::ApiKeyRevoked,
                format!("api key {id}"),
            )
            .client(client),
        )?;
    }
    Ok(key)
}

/// The live key that `presented` is, or `None` for anything malformed, unknown, wrong or revoked
/// (the caller answers all of these alike). Notes the use, at most once a minute.
pub fn authenticate(
    context: &AppContext,
    presented: &SecretString,
) -> Result<Option<ApiKey>, StoreError> {
    let presented = presented.expose_secret();
    let Some(rest) = presented.strip_prefix(KEY_PREFIX) else {
        return Ok(None);
    };
    let Some((id, _)) = rest.split_once('_') else {
        return Ok(None);
    };
    let Ok(id) = id.parse::<ApiKeyId>() else {
        return Ok(None);
    };
    let Some(tenant) = context.api_keys.tenant_of(id)? else {
        return Ok(None);
    };
    let Some(key) = context.api_keys.get(tenant, id)? else {
        return Ok(None);
    };
    if !crypto::constant_time_eq(&key.digest, &digest(presented)) || key.revoked {
        return Ok(None);
    }
    // A tenant in its offboarding wind-down refuses its keys.
    if crate::offboarding::lock_of(context, tenant)?.is_some() {
        return Ok(None);
    }
    let now = Utc::now();
    let stale = context
        .api_keys
        .last_used(tenant, id)?
        .is_none_or(|last| (now - last).num_seconds() >= LAST_USED_INTERVAL_SECONDS);
    if stale {
        // Only the last-used time is at stake: a failed save (a full disk) must not fail the call.
        if let Err(error) = context.api_keys.touch(&key, now) {
            tracing::warn!(%error, "api key last-used time not saved");
        }
    }
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_lists_parse_and_refuse_unknown_or_empty() {
        let scopes = ApiScope::parse_list("read, write").unwrap();
        assert!(scopes.contains(&ApiScope::Read) && scopes.contains(&ApiScope::Write));
        assert!(matches!(
            ApiScope::parse_list("read,admin"),
            Err(ApiKeyError::UnknownScope(_))
        ));
        assert!(matches!(
            ApiScope::parse_list(" , "),
            Err(ApiKeyError::NoScope)
        ));
    }
}
