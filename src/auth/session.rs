//! Server-side sessions, sealed in the appliance scope and keyed by the SHA-256 of the cookie's
//! token, so that reading the database does not yield a usable cookie.

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::crypto;
use crate::store::{Collection, Scope, Store, StoreError};
use crate::users::{User, UserRef};

/// Where a session is in the log-in sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionStage {
    /// Password accepted; the TOTP code is still owed.
    AwaitingSecondFactor,
    /// Fully signed in.
    Active,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlashKind {
    Success,
    Error,
}

/// A one-shot message shown on the next page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flash {
    pub kind: FlashKind,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user: UserRef,
    /// The user's session epoch when the session began; a newer epoch voids the session.
    pub epoch: u32,
    pub stage: SessionStage,
    pub created: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub csrf_token: String,
    /// A TOTP secret being enrolled, until the first code confirms it.
    #[serde(default, with = "serde_bytes")]
    pub pending_totp_secret: Option<Vec<u8>>,
    #[serde(default)]
    pub flash: Vec<Flash>,
}

/// The secret half of a session: what the cookie carries.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    fn generate() -> Self {
        Self(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crypto::random_bytes::<32>()))
    }

    pub fn from_cookie(value: &str) -> Self {
        Self(value.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The record key: a digest, so the database holds no usable token.
    pub fn storage_key(&self) -> [u8; 32] {
        crypto::sha256(&[b"rapport/session/v1\0", self.0.as_bytes()])
    }
}

/// A fresh random token for CSRF protection.
pub fn new_csrf_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crypto::random_bytes::<24>())
}

/// Idle and absolute lifetimes, from `[auth]`.
#[derive(Clone, Copy, Debug)]
pub struct SessionLifetimes {
    pub idle: Duration,
    pub absolute: Duration,
}

impl Session {
    pub fn new(user: &User, stage: SessionStage) -> Self {
        let now = Utc::now();
        Self {
            user: user.reference(),
            epoch: user.session_epoch,
            stage,
            created: now,
            last_seen: now,
            csrf_token: new_csrf_token(),
            pending_totp_secret: None,
            flash: Vec::new(),
        }
    }

    pub fn is_expired(&self, lifetimes: SessionLifetimes, now: DateTime<Utc>) -> bool {
        now - self.last_seen >= lifetimes.idle || now - self.created >= lifetimes.absolute
    }

    /// Whether this session still belongs to `user` as they are now.
    pub fn matches(&self, user: &User) -> bool {
        !user.disabled && user.session_epoch == self.epoch && user.reference() == self.user
    }
}

#[derive(Clone)]
pub struct SessionStore {
    store: Store,
}

impl SessionStore {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    fn sessions(&self) -> Result<Collection<[u8; 32], Session>, StoreError> {
        self.store.collection(Scope::Appliance, "sessions")
    }

    /// Stores a new session and returns the token for its cookie.
    pub fn create(&self, session: &Session) -> Result<SessionToken, StoreError> {
        let token = SessionToken::generate();
        self.sessions()?.insert(&token.storage_key(), session)?;
        Ok(token)
    }

    pub fn get(&self, token: &SessionToken) -> Result<Option<Session>, StoreError> {
        self.sessions()?.get(&token.storage_key())
    }

    pub fn save(&self, token: &SessionToken, session: &Session) -> Result<(), StoreError> {
        self.sessions()?.insert(&token.storage_key(), session)
    }

    /// Saves a change that only matters while the process runs (the idle clock).
    pub fn touch(&self, token: &SessionToken, session: &Session) -> Result<(), StoreError> {
        self.sessions()?
            .insert_relaxed(&token.storage_key(), session)
    }

    pub fn delete(&self, token: &SessionToken) -> Result<(), StoreError> {
        self.sessions()?.remove(&token.storage_key())
    }

    /// Deletes every expired session; returns how many.
    pub fn purge_expired(&self, lifetimes: SessionLifetimes) -> Result<usize, StoreError> {
        let sessions = self.sessions()?;
        let now = Utc::now();
        let mut expired = Vec::new();
        for entry in sessions.scan() {
            match entry {
                Ok((key, session)) if session.is_expired(lifetimes, now) => expired.push(key),
                // A record that cannot be opened can never be used either; it is skipped.
                Ok(_) | Err(StoreError::Unsealable { .. } | StoreError::Decode { .. }) => {}
                Err(other) => return Err(other),
            }
        }
        for key in &expired {
            sessions.remove(key)?;
        }
        Ok(expired.len())
    }
}
