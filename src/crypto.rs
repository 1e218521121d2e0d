//! Cryptographic building blocks, composed from the audited `RustCrypto` crates.
//!
//! Nothing here invents a primitive: sealing is XChaCha20-Poly1305 with a random 192-bit nonce,
//! blind indexes are HMAC-SHA256, digests are SHA-256. Keys live in [`SecretKey`], which zeroes its
//! memory on drop and never prints itself. The storage codec and the audit log build their formats on
//! these functions; no other module touches a cipher.

pub mod stream;

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Length of every symmetric key Rapport uses, in bytes.
pub const KEY_LEN: usize = 32;
/// Length of an XChaCha20-Poly1305 nonce, in bytes.
pub const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("a key must be exactly {KEY_LEN} bytes, got {0}")]
    KeyLength(usize),
    #[error("the sealed value is too short to hold a nonce and a tag")]
    Truncated,
    #[error("the sealed value could not be opened: wrong key, wrong record or altered bytes")]
    Open,
}

/// A 256-bit symmetric key. Its bytes are zeroed on drop and never appear in `Debug` output.
#[derive(Clone)]
pub struct SecretKey(Zeroizing<[u8; KEY_LEN]>);

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        OsRng.fill_bytes(bytes.as_mut());
        Self(bytes)
    }

    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let array: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::KeyLength(bytes.len()))?;
        Ok(Self(Zeroizing::new(array)))
    }

    /// A key from 32 bytes (a derivation's output).
    pub fn from_array(bytes: [u8; KEY_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The raw key bytes, for wrapping under another key or writing a new key file.
    pub fn expose_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// Encrypts `plaintext` under `key`, binding `associated_data`; returns `nonce || ciphertext || tag`.
pub fn seal(key: &SecretKey, associated_data: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.expose_bytes().into());
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let payload = Payload {
        msg: plaintext,
        aad: associated_data,
    };
    // Encryption only fails for messages beyond the cipher's 256 GiB limit, which no record reaches;
    // an empty ciphertext would then fail to open rather than pass silently.
    let ciphertext = cipher
        .encrypt(XNonce::from_slice(&nonce), payload)
        .unwrap_or_default();
    let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    out
}

/// Reverses [`seal`]; fails unless the key, the associated data and every byte match.
pub fn open(
    key: &SecretKey,
    associated_data: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < NONCE_LEN + 16 {
        return Err(CryptoError::Truncated);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let cipher = XChaCha20Poly1305::new(key.expose_bytes().into());
    let payload = Payload {
        msg: ciphertext,
        aad: associated_data,
    };
    cipher
        .decrypt(XNonce::from_slice(nonce), payload)
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Open)
}

/// HMAC-SHA256 of `value` under `key`, separated by `domain` so that one key can serve several
/// indexes without their tokens colliding.
pub fn keyed_hash(key: &SecretKey, domain: &str, value: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so construction cannot fail for a 32-byte key.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.expose_bytes())
        .unwrap_or_else(|_| unreachable_hmac());
    mac.update(domain.as_bytes());
    mac.update(&[0]);
    mac.update(value);
    mac.finalize().into_bytes().into()
}

#[allow(clippy::panic)] // HMAC-SHA256 takes keys of any length; this branch cannot be reached.
fn unreachable_hmac() -> Hmac<Sha256> {
    panic!("HMAC-SHA256 rejected a 32-byte key")
}

/// SHA-256 over the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// Plain HMAC-SHA256 of the concatenated `parts` under `key` (no domain label): the form other
/// systems compute, used to verify webhook signatures.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so construction cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable_hmac());
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// `N` bytes from the operating system's random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_value_opens_only_with_the_same_key_and_associated_data() {
        let key = SecretKey::generate();
        let sealed = seal(&key, b"tenant-a/users/1", b"alice@example.com");
        assert_eq!(
            open(&key, b"tenant-a/users/1", &sealed).unwrap().as_slice(),
            b"alice@example.com"
        );
        assert!(open(&key, b"tenant-a/users/2", &sealed).is_err());
        assert!(open(&SecretKey::generate(), b"tenant-a/users/1", &sealed).is_err());
        let mut altered = sealed.clone();
        altered[30] ^= 1;
        assert!(open(&key, b"tenant-a/users/1", &altered).is_err());
    }

    #[test]
    fn two_seals_of_the_same_plaintext_differ() {
        let key = SecretKey::generate();
        assert_ne!(seal(&key, b"", b"same"), seal(&key, b"", b"same"));
    }

    #[test]
    fn keyed_hash_depends_on_key_and_domain() {
        let key = SecretKey::generate();
        let a = keyed_hash(&key, "email", b"x@y.z");
        assert_eq!(a, keyed_hash(&key, "email", b"x@y.z"));
        assert_ne!(a, keyed_hash(&key, "slug", b"x@y.z"));
        assert_ne!(a, keyed_hash(&SecretKey::generate(), "email", b"x@y.z"));
    }
}
