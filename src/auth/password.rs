//! argon2id password hashing with bounded concurrency: each hash takes 19 MiB and tens of
//! milliseconds of a core that inference also wants. The calls block; the web layer makes them
//! from its blocking pool, never on the async executor.

use std::sync::{Arc, Condvar, Mutex};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};

/// OWASP's argon2id minimum: 19 MiB, two passes, one lane.
const MEMORY_KIB: u32 = 19 * 1024;
const ITERATIONS: u32 = 2;
const LANES: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed")]
    Hash,
    #[error("password hashing was interrupted")]
    Interrupted,
}

/// A counting semaphore: at most `limit` hashes run at once, the rest wait their turn.
struct Permits {
    available: Mutex<usize>,
    released: Condvar,
}

struct Permit<'a>(&'a Permits);

impl Permits {
    fn acquire(&self) -> Result<Permit<'_>, HashError> {
        let mut available = self.available.lock().map_err(|_| HashError::Interrupted)?;
        while *available == 0 {
            available = self
                .released
                .wait(available)
                .map_err(|_| HashError::Interrupted)?;
        }
        *available -= 1;
        Ok(Permit(self))
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Ok(mut available) = self.0.available.lock() {
            *available += 1;
            self.0.released.notify_one();
        }
    }
}

#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Permits>,
    /// Verified against when the e-mail is unknown, so that case costs the same as a wrong password.
    dummy_hash: Arc<String>,
}

fn argon2() -> Result<Argon2<'static>, HashError> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, LANES, None).map_err(|_| HashError::Hash)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_now(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|_| HashError::Hash)
}

fn verify_now(password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    argon2().is_ok_and(|argon| argon.verify_password(password.as_bytes(), &parsed).is_ok())
}

impl PasswordHasher {
    pub fn new(concurrency: usize) -> Result<Self, HashError> {
        let dummy = hash_now(&hex::encode(crate::crypto::random_bytes::<16>()))?;
        Ok(Self {
            permits: Arc::new(Permits {
                available: Mutex::new(concurrency.max(1)),
                released: Condvar::new(),
            }),
            dummy_hash: Arc::new(dummy),
        })
    }

    pub fn hash(&self, password: &SecretString) -> Result<String, HashError> {
        let _permit = self.permits.acquire()?;
        hash_now(password.expose_secret())
    }

    /// True when `password` matches `hash`. With no hash (unknown user) the dummy hash is checked,
    /// and the answer is false, after the same amount of work.
    pub fn verify(&self, password: &SecretString, hash: Option<&str>) -> bool {
        let Ok(_permit) = self.permits.acquire() else {
            return false;
        };
        let matched = verify_now(password.expose_secret(), hash.unwrap_or(&self.dummy_hash));
        matched && hash.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_use_argon2id_with_the_minimum_cost() {
        let hasher = PasswordHasher::new(1).unwrap();
        let hash = hasher
            .hash(&SecretString::from("correct horse battery"))
            .unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(hasher.verify(&SecretString::from("correct horse battery"), Some(&hash)));
        assert!(!hasher.verify(&SecretString::from("wrong horse battery"), Some(&hash)));
        assert!(!hasher.verify(&SecretString::from("anything"), None));
    }
}
