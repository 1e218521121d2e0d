//! The sealing format of every stored value.
//!
//! Version 1: `0x01 || key id (16 bytes) || nonce (24) || ciphertext || tag (16)`, where the
//! ciphertext is XChaCha20-Poly1305 of the `MessagePack` encoding (with field names, so records can
//! gain fields without migrations). The associated data binds the format version, the key id, the
//! scope, the collection and the record key, so a value copied to another record, collection or
//! tenant no longer opens.
//!
//! Version 2 is the same layout with `0x02` and the id of a data subject's own key (see
//! `store::subject`) in place of the scope's data key: erasing the subject destroys that key, and
//! with it every copy of these values, wherever sled's log or a backup still keeps them. Key
//! rotation counts and re-seals version-1 values only ([`key_id_of`] answers `None` for version 2):
//! a subject key is not one of the scope's data keys.

use zeroize::Zeroizing;

use crate::crypto::{self, SecretKey};
use crate::ids::KeyId;
use crate::store::keys::ScopeKeys;
use crate::store::{Scope, StoreError};

const FORMAT_V1: u8 = 1;
/// Sealed under a data subject's key rather than the scope's data key.
pub(super) const FORMAT_SUBJECT: u8 = 2;
const HEADER_LEN: usize = 1 + 16;

fn associated_data(scope: Scope, collection: &str, record_key: &[u8], header: &[u8]) -> Vec<u8> {
    let mut aad = b"rapport/record/v1\0".to_vec();
    aad.extend_from_slice(&scope.key_bytes());
    aad.push(0);
    aad.extend_from_slice(collection.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&(record_key.len() as u64).to_be_bytes());
    aad.extend_from_slice(record_key);
    aad.extend_from_slice(header);
    aad
}

pub(super) fn seal(
    keys: &ScopeKeys,
    scope: Scope,
    collection: &str,
    record_key: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    let (key_id, key) = &keys.current_data;
    let mut out = Vec::with_capacity(HEADER_LEN + crypto::NONCE_LEN + plaintext.len() + 16);
    out.push(FORMAT_V1);
    out.extend_from_slice(&key_id.to_bytes());
    let aad = associated_data(scope, collection, record_key, &out);
    out.extend_from_slice(&crypto::seal(key, &aad, plaintext));
    out
}

/// Seals under a data subject's key `key_id` (format version 2).
pub(super) fn seal_for_subject(
    key_id: KeyId,
    key: &SecretKey,
    scope: Scope,
    collection: &str,
    record_key: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + crypto::NONCE_LEN + plaintext.len() + 16);
    out.push(FORMAT_SUBJECT);
    out.extend_from_slice(&key_id.to_bytes());
    let aad = associated_data(scope, collection, record_key, &out);
    out.extend_from_slice(&crypto::seal(key, &aad, plaintext));
    out
}

/// Opens a version-2 value with its subject's key.
pub(super) fn open_for_subject(
    key: &SecretKey,
    scope: Scope,
    collection: &str,
    record_key: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    if sealed.len() < HEADER_LEN || sealed[0] != FORMAT_SUBJECT {
        return Err(StoreError::Unsealable {
            collection: collection.to_owned(),
        });
    }
    let (header, body) = sealed.split_at(HEADER_LEN);
    let aad = associated_data(scope, collection, record_key, header);
    crypto::open(key, &aad, body).map_err(|_| StoreError::Unsealable {
        collection: collection.to_owned(),
    })
}

/// The id of the subject key that sealed `sealed`, for version-2 values only.
pub(super) fn subject_key_of(sealed: &[u8]) -> Option<KeyId> {
    if sealed.len() < HEADER_LEN || sealed[0] != FORMAT_SUBJECT {
        return None;
    }
    let mut id_bytes = [0u8; 16];
    id_bytes.copy_from_slice(&sealed[1..HEADER_LEN]);
    Some(KeyId::from_bytes(id_bytes))
}

pub(super) fn open(
    keys: &ScopeKeys,
    scope: Scope,
    collection: &str,
    record_key: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    let unsealable = || StoreError::Unsealable {
        collection: collection.to_owned(),
    };
    if sealed.len() < HEADER_LEN || sealed[0] != FORMAT_V1 {
        return Err(unsealable());
    }
    let (header, body) = sealed.split_at(HEADER_LEN);
    let mut id_bytes = [0u8; 16];
    id_bytes.copy_from_slice(&header[1..]);
    let key = keys
        .data_key(KeyId::from_bytes(id_bytes))
        .ok_or_else(unsealable)?;
    let aad = associated_data(scope, collection, record_key, header);
    crypto::open(key, &aad, body).map_err(|_| unsealable())
}

/// The id of the data key that sealed `sealed`, read from its clear header; `None` for bytes that
/// are not a sealed value (an empty value, another format).
pub(super) fn key_id_of(sealed: &[u8]) -> Option<KeyId> {
    if sealed.len() < HEADER_LEN || sealed[0] != FORMAT_V1 {
        return None;
    }
    let mut id_bytes = [0u8; 16];
    id_bytes.copy_from_slice(&sealed[1..HEADER_LEN]);
    Some(KeyId::from_bytes(id_bytes))
}
