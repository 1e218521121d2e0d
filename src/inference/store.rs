//! The inference module's collections: the operator's model approvals (appliance scope) and each
//! tenant's analysis settings (the tenant's scope).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::TenantId;
use crate::inference::models::{ModelDirectories, DEFAULT_MODEL_SHA256};
use crate::inference::remote::RemoteSettings;
use crate::inference::{BackendKind, InferenceError};
use crate::store::{Collection, Scope, Store, StoreError};

const SETTINGS_KEY: &str = "analysis";

/// An operator's approval of one exact model file, by digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelApproval {
    /// Hex sha256 of the file.
    pub sha256: String,
    /// The file's name when it was approved, for people; the digest is what counts.
    pub file_name: String,
    /// Who approved it (an operator's e-mail address, or `command line`).
    pub approved_by: String,
    pub approved_at: DateTime<Utc>,
}

/// A tenant's choice of analysis backend. Each backend's section is kept while another backend is
/// chosen, so that switching back does not lose a remote endpoint's key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AnalysisSettings {
    pub backend: BackendKind,
    /// The model (by sha256) of the `local` backend.
    pub model_sha256: Option<String>,
    /// The `remote` backend's endpoint. Settings stored before the remote backend existed have
    /// none (hence `default`).
    #[serde(default)]
    pub remote: Option<RemoteSettings>,
}

impl AnalysisSettings {
    /// What a tenant without stored settings uses: `local` with the default model when that model
    /// is installed, else `off`.
    pub fn default_for(directories: &ModelDirectories) -> Self {
        if directories.default_model_file().is_some() {
            Self {
                backend: BackendKind::Local,
                model_sha256: Some(DEFAULT_MODEL_SHA256.to_owned()),
                remote: None,
            }
        } else {
            Self {
                backend: BackendKind::Off,
                model_sha256: None,
                remote: None,
            }
        }
    }
}

#[derive(Clone)]
pub struct ModelApprovals {
    store: Store,
}

impl ModelApprovals {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    fn collection(&self) -> Result<Collection<[u8; 32], ModelApproval>, StoreError> {
        self.store.collection(Scope::Appliance, "model_approvals")
    }

    /// Records an approval. `sha256` must be 64 hex digits.
    pub fn approve(&self, approval: &ModelApproval) -> Result<(), InferenceError> {
        let key = digest_key(&approval.sha256).ok_or_else(invalid_digest)?;
        Ok(self.collection()?.insert(&key, approval)?)
    }

    pub fn list(&self) -> Result<Vec<ModelApproval>, StoreError> {
        self.collection()?
            .scan()
            .map(|entry| entry.map(|(_, approval)| approval))
            .collect()
    }

    /// The approval of `sha256`, if there is one.
    pub fn get(&self, sha256: &str) -> Result<Option<ModelApproval>, InferenceError> {
        let key = digest_key(sha256).ok_or_else(invalid_digest)?;
        Ok(self.collection()?.get(&key)?)
    }

    /// Removes the approval of `sha256`, durably, and returns it; `None` when it was not approved.
    /// The built-in default's digest is approved whatever is stored, so callers refuse to revoke it.
    pub fn revoke(&self, sha256: &str) -> Result<Option<ModelApproval>, InferenceError> {
        let key = digest_key(sha256).ok_or_else(invalid_digest)?;
        let collection = self.collection()?;
        let Some(approval) = collection.get(&key)? else {
            return Ok(None);
        };
        collection.remove(&key)?;
        Ok(Some(approval))
    }

    /// The approved digests (the built-in default is approved on top of these).
    pub fn approved_digests(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .list()?
            .into_iter()
            .map(|approval| approval.sha256)
            .collect())
    }
}

fn invalid_digest() -> InferenceError {
    InferenceError::Invalid("a model approval needs a 64-digit hex sha256".to_owned())
}

fn digest_key(sha256: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(sha256).ok()?;
    bytes.try_into().ok()
}

#[derive(Clone)]
pub struct AnalysisSettingsStore {
    store: Store,
}

impl AnalysisSettingsStore {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    fn collection(
        &self,
        tenant: TenantId,
    ) -> Result<Collection<&'static str, AnalysisSettings>, StoreError> {
        self.store
            .collection(Scope::Tenant(tenant), "analysis_settings")
    }

    /// The tenant's stored settings, or the default for a tenant that has none.
    pub fn get(
        &self,
        tenant: TenantId,
        directories: &ModelDirectories,
    ) -> Result<AnalysisSettings, StoreError> {
        Ok(self
            .collection(tenant)?
            .get(&SETTINGS_KEY)?
            .unwrap_or_else(|| AnalysisSettings::default_for(directories)))
    }

    pub fn save(&self, tenant: TenantId, settings: &AnalysisSettings) -> Result<(), StoreError> {
        self.collection(tenant)?.insert(&SETTINGS_KEY, settings)
    }
}

#[cfg(test)]
mod tests {
    use secrecy::{ExposeSecret as _, SecretString};

    use super::*;

    /// The settings as version 0.1.0 stored them, before the remote backend.
    #[derive(Serialize)]
    struct SettingsBeforeRemote {
        backend: BackendKind,
        model_sha256: Option<String>,
    }

    #[test]
    fn settings_stored_before_the_remote_backend_still_load() {
        let old = rmp_serde::to_vec_named(&SettingsBeforeRemote {
            backend: BackendKind::Local,
            model_sha256: Some(DEFAULT_MODEL_SHA256.to_owned()),
        })
        .unwrap();
        let loaded: AnalysisSettings = rmp_serde::from_slice(&old).unwrap();
        assert_eq!(loaded.backend, BackendKind::Local);
        assert_eq!(loaded.model_sha256.as_deref(), Some(DEFAULT_MODEL_SHA256));
        assert!(loaded.remote.is_none());
    }

    #[test]
    fn the_remote_section_and_its_key_round_trip() {
        let settings = AnalysisSettings {
            backend: BackendKind::Remote,
            model_sha256: None,
            remote: Some(RemoteSettings {
                base_url: "https://llm.internal".to_owned(),
                model: "m".to_owned(),
                api_key: Some(SecretString::from("sk-stored".to_owned())),
                connect_timeout_secs: 4,
                request_timeout_secs: 30,
                retries: 2,
                ca_certificate_pem: None,
            }),
        };
        let bytes = rmp_serde::to_vec_named(&settings).unwrap();
        let loaded: AnalysisSettings = rmp_serde::from_slice(&bytes).unwrap();
        let remote = loaded.remote.unwrap();
        assert_eq!(remote.api_key.unwrap().expose_secret(), "sk-stored");
        assert_eq!(remote.retries, 2);
        assert!(!format!("{settings:?}").contains("sk-stored"));
    }
}
