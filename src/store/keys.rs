//! The key hierarchy: one master key (KEK) from a file or a systemd credential wraps, for each
//! scope (the appliance, every tenant), a data key, an index key and — for the appliance — the audit
//! key. Wrapped keys carry key ids so that rotation can add a key without rewriting records.

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::crypto::{self, SecretKey, KEY_LEN};
use crate::ids::KeyId;
use crate::store::Scope;

/// Name of the systemd credential that carries the master key (`LoadCredential=master-key:…`).
pub const CREDENTIAL_NAME: &str = "master-key";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("master key file {0} does not exist")]
    Missing(PathBuf),
    #[error("master key file {path} cannot be read: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "master key file {path} must hold exactly 32 bytes (or 64 hex digits), found {found} bytes"
    )]
    WrongLength { path: PathBuf, found: usize },
    #[error(
        "master key file {path} is readable by other users (mode {mode:o}); run `chmod 600 {path}`"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("master key file {0} already exists; refusing to overwrite a key (it would make the data unreadable)")]
    Exists(PathBuf),
    #[error("cannot write master key file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The key-encryption key. Only this module and the store see it.
#[derive(Debug)]
pub struct MasterKey {
    key: SecretKey,
    source: PathBuf,
    /// The configured key file (the source too, unless a systemd credential was read): where a
    /// master key rotation leaves its pending key, `<file>.new`.
    configured: PathBuf,
    /// Read from `$CREDENTIALS_DIRECTORY` rather than the configured file.
    credential: bool,
}

impl MasterKey {
    /// Reads the systemd credential when `$CREDENTIALS_DIRECTORY/master-key` exists, else `path`.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let credential = std::env::var_os("CREDENTIALS_DIRECTORY")
            .map(|dir| PathBuf::from(dir).join(CREDENTIAL_NAME))
            .filter(|candidate| candidate.is_file());
        let mut key = match &credential {
            // systemd owns the credential's permissions, so only its contents are checked.
            Some(credential_path) => Self::read(credential_path, false)?,
            None => Self::read(path, true)?,
        };
        key.configured = path.to_path_buf();
        key.credential = credential.is_some();
        Ok(key)
    }

    /// Reads `path` itself (mode 0600 or stricter), never the systemd credential: a key given to
    /// `rapport keys rotate-master --new-key-file`, or a rotation's pending key.
    pub fn load_file(path: &Path) -> Result<Self, KeyError> {
        Self::read(path, true)
    }

    /// A fresh random key, not yet written anywhere; `configured` is the key file it is meant for.
    pub fn generate(configured: &Path) -> Self {
        Self {
            key: SecretKey::generate(),
            source: pending_path(configured),
            configured: configured.to_path_buf(),
            credential: false,
        }
    }

    /// Whether the key was read from `$CREDENTIALS_DIRECTORY` rather than the configured file.
    pub fn from_credential(&self) -> bool {
        self.credential
    }

    /// The configured key file this key belongs to.
    pub fn configured_file(&self) -> &Path {
        &self.configured
    }

    /// Writes this key to a new file `path` (mode 0600, refusing an existing file), `fsync`s it
    /// and its directory, so that the name and the bytes survive a crash.
    pub fn write_new_file(&self, path: &Path) -> Result<(), KeyError> {
        write_key_file(path, &self.key)?;
        sync_parent(path)
    }

    fn read(path: &Path, check_mode: bool) -> Result<Self, KeyError> {
        let metadata = fs::metadata(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => KeyError::Missing(path.to_path_buf()),
            _ => KeyError::Unreadable {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let mode = metadata.permissions().mode() & 0o777;
        if check_mode && mode & 0o077 != 0 {
            return Err(KeyError::TooOpen {
                path: path.to_path_buf(),
                mode,
            });
        }
        let bytes =
            zeroize::Zeroizing::new(fs::read(path).map_err(|source| KeyError::Unreadable {
                path: path.to_path_buf(),
                source,
            })?);
        let key = decode_key_bytes(&bytes).ok_or_else(|| KeyError::WrongLength {
            path: path.to_path_buf(),
            found: bytes.len(),
        })?;
        Ok(Self {
            key,
            source: path.to_path_buf(),
            configured: path.to_path_buf(),
            credential: false,
        })
    }

    /// Writes a new random key to `path` with mode 0600; never replaces an existing file.
    pub fn create_file(path: &Path) -> Result<(), KeyError> {
        write_key_file(path, &SecretKey::generate())
    }

    /// Where the key was read from, for messages.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// A public fingerprint of the key, stored in the database to name the key that wrapped it.
    pub fn fingerprint(&self) -> [u8; 16] {
        let digest = crypto::keyed_hash(&self.key, "rapport/master-key-id/v1", b"");
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        id
    }

    /// A key for one purpose (`domain`), derived from the master key and `context` with
    /// HMAC-SHA256 as the pseudo-random function (the backup key of one backup).
    pub fn derive(&self, domain: &str, context: &[u8]) -> SecretKey {
        SecretKey::from_array(crypto::keyed_hash(&self.key, domain, context))
    }

    /// The fingerprint in hex, as audit entries and messages show it (never the key itself).
    pub fn fingerprint_hex(&self) -> String {
        hex::encode(self.fingerprint())
    }

    pub(crate) fn wrap(&self, record: &WrappedKeyHeader, key: &SecretKey) -> Vec<u8> {
        crypto::seal(&self.key, &record.associated_data(), key.expose_bytes())
    }

    pub(crate) fn unwrap(
        &self,
        record: &WrappedKeyHeader,
        wrapped: &[u8],
    ) -> Result<SecretKey, crypto::CryptoError> {
        let bytes = crypto::open(&self.key, &record.associated_data(), wrapped)?;
        SecretKey::from_slice(&bytes)
    }
}

/// Where `rapport keys rotate-master` writes the new key before the database is re-wrapped under
/// it: `<configured file>.new`, renamed over the configured file once the re-wrap is committed.
pub fn pending_path(configured: &Path) -> PathBuf {
    let mut name = configured.as_os_str().to_owned();
    name.push(".new");
    PathBuf::from(name)
}

fn write_key_file(path: &Path, key: &SecretKey) -> Result<(), KeyError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => KeyError::Exists(path.to_path_buf()),
            _ => KeyError::Write {
                path: path.to_path_buf(),
                source,
            },
        })?;
    file.write_all(key.expose_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| KeyError::Write {
            path: path.to_path_buf(),
            source,
        })
}

/// `fsync`s the directory holding `path`, so that a new or renamed name in it is durable.
pub fn sync_parent(path: &Path) -> Result<(), KeyError> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    fs::File::open(parent)
        .and_then(|directory| directory.sync_all())
        .map_err(|source| KeyError::Write {
            path: parent.to_path_buf(),
            source,
        })
}

/// A key file holds the 32 raw bytes, or 64 hex digits (as `systemd-creds` tooling often prefers).
fn decode_key_bytes(bytes: &[u8]) -> Option<SecretKey> {
    if bytes.len() == KEY_LEN {
        return SecretKey::from_slice(bytes).ok();
    }
    let text = std::str::from_utf8(bytes).ok()?.trim();
    let decoded = zeroize::Zeroizing::new(hex::decode(text).ok()?);
    SecretKey::from_slice(&decoded).ok()
}

/// What a key is for; each purpose has its own key so that one leak does not open everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyPurpose {
    /// Seals records.
    Data,
    /// Keys the blind indexes (HMAC tokens of personal values).
    Index,
    /// Seals audit-log entries (appliance scope only).
    Audit,
}

impl KeyPurpose {
    fn tag(self) -> u8 {
        match self {
            Self::Data => b'd',
            Self::Index => b'i',
            Self::Audit => b'a',
        }
    }
}

/// The clear part of a wrapped key: what it belongs to, bound into the wrapping as associated data
/// so that a wrapped key moved to another scope or purpose does not unwrap.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct WrappedKeyHeader {
    pub id: KeyId,
    pub scope: Scope,
    pub purpose: KeyPurpose,
}

impl WrappedKeyHeader {
    fn associated_data(&self) -> Vec<u8> {
        let mut aad = b"rapport/wrapped-key/v1\0".to_vec();
        aad.extend_from_slice(&self.scope.key_bytes());
        aad.push(0);
        aad.push(self.purpose.tag());
        aad.extend_from_slice(&self.id.to_bytes());
        aad
    }

    /// Record key in the `keys` tree: scope, purpose, key id — no secret, no personal data.
    pub fn tree_key(&self) -> Vec<u8> {
        let mut key = self.scope.key_bytes();
        key.push(self.purpose.tag());
        key.extend_from_slice(&self.id.to_bytes());
        key
    }

    pub fn scope_prefix(scope: Scope) -> Vec<u8> {
        scope.key_bytes()
    }
}

/// A wrapped key as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct WrappedKey {
    pub header: WrappedKeyHeader,
    pub master_fingerprint: String,
    pub created: chrono::DateTime<chrono::Utc>,
    #[serde(with = "serde_bytes")]
    pub wrapped: Vec<u8>,
}

/// The unwrapped keys of one scope, held in memory while the store is open.
#[derive(Debug)]
pub(crate) struct ScopeKeys {
    /// The newest data key: every new seal uses it.
    pub current_data: (KeyId, SecretKey),
    /// Earlier data keys, still needed to open records sealed before a rotation.
    pub older_data: HashMap<KeyId, SecretKey>,
    pub index: SecretKey,
    pub audit: Option<(KeyId, SecretKey)>,
}

impl ScopeKeys {
    pub fn data_key(&self, id: KeyId) -> Option<&SecretKey> {
        if self.current_data.0 == id {
            Some(&self.current_data.1)
        } else {
            self.older_data.get(&id)
        }
    }
}
