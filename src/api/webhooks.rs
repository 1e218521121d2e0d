//! Signed webhooks: `POST /api/v1/webhooks/{integration}`.
//!
//! A tenant admin creates an integration (a name and a body kind: Rapport's `InteractionRecord`
//! or a Zendesk ticket event) and receives its secret once. The secret is kept in the tenant's
//! `integrations` collection, sealed like every record, because verifying needs it. A delivery is
//! accepted only when `X-Rapport-Signature: sha256=<hex>` is `HMAC-SHA256(secret, "<timestamp>.<raw
//! body>")`, compared in constant time, `X-Rapport-Timestamp` is within five minutes of now, and
//! the signature has not been seen in the last ten minutes ([`ReplayGuard`], bounded, in memory).
//! Anything else is 401 and stores nothing. The appliance-scope `integration_directory` maps the
//! integration id in the URL to its tenant.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::web::{self, Data};
use actix_web::{HttpRequest, HttpResponse};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;

use crate::api::resources::write_record;
use crate::api::{json, parse_json, read_body, ApiError, FieldError, Problem};
use crate::audit::{Actor, AuditAction, AuditEvent};
use crate::auth::guard::client_address;
use crate::context::AppContext;
use crate::crypto;
use crate::ids::{IntegrationId, TenantId};
use crate::ingest::zendesk::{self, TicketEvent};
use crate::interactions::InteractionRecord;
use crate::store::{Collection, Scope, Store, StoreError, WriteSet};
use crate::tenants::absent_if_tenant_gone;

pub const TIMESTAMP_HEADER: &str = "x-rapport-timestamp";
pub const SIGNATURE_HEADER: &str = "x-rapport-signature";
/// How far a delivery's timestamp may be from the appliance's clock.
const TIMESTAMP_TOLERANCE_SECONDS: i64 = 5 * 60;
/// How long a signature is remembered: twice the tolerance, so a replay is refused for as long as
/// its timestamp would pass.
const REPLAY_MEMORY: Duration = Duration::from_secs(10 * 60);
/// Signatures remembered at most per integration (about 64 bytes each, so about 1.3 MiB): a
/// sustained 33 deliveries a second. Beyond that the integration's deliveries get 503 until
/// entries expire; other integrations, and other tenants, are not affected.
const REPLAY_CAPACITY_PER_INTEGRATION: usize = 20_000;
/// Integrations remembered at most at once. An integration enters the memory only with a valid
/// signature, so this is reached only by that many integrations delivering within ten minutes.
const REPLAY_INTEGRATIONS: usize = 1_000;
/// How often every integration's expired signatures are swept out (one that stopped delivering
/// would otherwise keep its entries).
const REPLAY_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
const MAX_NAME: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum IntegrationError {
    #[error("an integration name must be 1 to {MAX_NAME} characters without control characters")]
    InvalidName,
    #[error("unknown integration kind: use rapport or zendesk")]
    UnknownKind,
    #[error("no such integration")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

/// The body shape an integration delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntegrationKind {
    /// Rapport's own `InteractionRecord` JSON.
    Rapport,
    /// A Zendesk ticket event, mapped as the `zendesk` import format maps a ticket (see
    /// [`crate::ingest::zendesk`]).
    Zendesk,
}

impl IntegrationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rapport => "rapport",
            Self::Zendesk => "zendesk",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, IntegrationError> {
        match raw {
            "rapport" => Ok(Self::Rapport),
            "zendesk" => Ok(Self::Zendesk),
            _ => Err(IntegrationError::UnknownKind),
        }
    }
}

/// A webhook integration of one tenant.
#[derive(Clone, Serialize, Deserialize)]
pub struct Integration {
    pub id: IntegrationId,
    pub tenant: TenantId,
    pub name: String,
    pub kind: IntegrationKind,
    /// The signing secret; sealed at rest with the record, never shown after creation, zeroed
    /// when dropped and never printed.
    #[serde(serialize_with = "serialize_secret")]
    secret: SecretString,
    pub created: DateTime<Utc>,
    pub created_by: String,
    pub disabled: bool,
}

impl fmt::Debug for Integration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Integration")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// Writes the secret into the record's plaintext, which only the store's sealing codec sees (it
/// zeroes its buffer after sealing). `secrecy` leaves serialising a secret to the caller's choice.
fn serialize_secret<S: Serializer>(
    secret: &SecretString,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose_secret())
}

impl Integration {
    /// The path deliveries are posted to.
    pub fn webhook_path(&self) -> String {
        format!("/api/v1/webhooks/{}", self.id)
    }

    fn actor(&self) -> Actor {
        Actor {
            user: None,
            label: format!("integration {}", self.id),
        }
    }
}

/// A new integration and its secret, shown once.
pub struct CreatedIntegration {
    pub integration: Integration,
    pub secret: SecretString,
}

/// The integration collections.
#[derive(Clone)]
pub struct IntegrationStore {
    store: Store,
}

impl IntegrationStore {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    fn directory(&self) -> Result<Collection<IntegrationId, TenantId>, StoreError> {
        self.store
            .collection(Scope::Appliance, "integration_directory")
    }

    fn integrations(
        &self,
        tenant: TenantId,
    ) -> Result<Collection<IntegrationId, Integration>, StoreError> {
        self.store.collection(Scope::Tenant(tenant), "integrations")
    }

    pub fn get(
        &self,
        tenant: TenantId,
        id: IntegrationId,
    ) -> Result<Option<Integration>, StoreError> {
        // A directory entry whose tenant no longer exists leads nowhere: no such integration.
        absent_if_tenant_gone(
            self.integrations(tenant)
                .and_then(|integrations| integrations.get(&id)),
        )
    }

    /// The tenant's integrations, oldest first.
    pub fn list(&self, tenant: TenantId) -> Result<Vec<Integration>, StoreError> {
        self.integrations(tenant)?
            .scan()
            .map(|entry| entry.map(|(_, integration)| integration))
            .collect()
    }

    /// The integration with this id, whatever its tenant.
    fn find(&self, id: IntegrationId) -> Result<Option<Integration>, StoreError> {
        match self.directory()?.get(&id)? {
            Some(tenant) => self.get(tenant, id),
            None => Ok(None),
        }
    }

    fn create(&self, integration: &Integration) -> Result<(), StoreError> {
        let mut writes = WriteSet::default();
        writes.put(&self.directory()?, &integration.id, &integration.tenant)?;
        writes.put(
            &self.integrations(integration.tenant)?,
            &integration.id,
            integration,
        )?;
        self.store.commit(writes)
    }

    fn save(&self, integration: &Integration) -> Result<(), StoreError> {
        self.integrations(integration.tenant)?
            .insert(&integration.id, integration)
    }
}

/// Creates an integration; the returned secret is the only copy shown. Audited.
pub fn create_integration(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    name: &str,
    kind: IntegrationKind,
) -> Result<CreatedIntegration, IntegrationError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(IntegrationError::InvalidName);
    }
    let secret = SecretString::from(format!(
        "whsec_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crypto::random_bytes::<32>())
    ));
    let integration = Integration {
        id: IntegrationId::new(),
        tenant,
        name: name.to_owned(),
        kind,
        secret: secret.clone(),
        created: Utc::now(),
        created_by: actor.label.clone(),
        disabled: false,
    };
    context.integrations.create(&integration)?;
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::IntegrationCreated,
            format!("integration {} ({})", integration.id, kind.as_str()),
        )
        .client(client),
    )?;
    Ok(CreatedIntegration {
        integration,
        secret,
    })
}

/// Disables an integration: its deliveries are refused from now on. Audited.
pub fn disable_integration(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    id: IntegrationId,
) -> Result<Integration, IntegrationError> {
    let mut integration = context
        .integrations
        .get(tenant, id)?
        .ok_or(IntegrationError::NotFound)?;
    if !integration.disabled {
        integration.disabled = true;
        context.integrations.save(&integration)?;
        context.audit(
            AuditEvent::new(
                Some(tenant),
                actor.clone(),
                AuditAction::IntegrationDisabled,
                format!("integration {id}"),
            )
            .client(client),
        )?;
    }
    Ok(integration)
}

/// Why a delivery's signature was refused (logged, never told to the sender in detail).
#[derive(Debug, PartialEq, Eq)]
pub enum SignatureError {
    Malformed,
    Stale,
    Mismatch,
}

/// Checks `signature` (`sha256=<hex>`) over `"<timestamp>.<body>"` under `secret` in constant
/// time, and that `timestamp` (unix seconds) is within five minutes of `now`.
pub fn verify_signature(
    secret: &[u8],
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let seconds: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::Malformed)?;
    if now.abs_diff(seconds) > TIMESTAMP_TOLERANCE_SECONDS.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let presented = signature
        .trim()
        .strip_prefix("sha256=")
        .and_then(|hex_digits| hex::decode(hex_digits).ok())
        .filter(|bytes| bytes.len() == 32)
        .ok_or(SignatureError::Malformed)?;
    let expected = crypto::hmac_sha256(secret, &[timestamp.trim().as_bytes(), b".", body]);
    if crypto::constant_time_eq(&expected, &presented) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Signatures accepted in the last ten minutes, so that a captured delivery cannot be replayed
/// while its timestamp is still fresh. In memory: a restart forgets them (a replay within five
/// minutes of a restart would pass).
///
/// The memory is kept apart per tenant and integration, each part bounded on its own, so that one
/// tenant's traffic can neither push out another's signatures nor fill the memory for everyone.
/// Expired entries are swept out; a part full of live entries refuses its integration's new
/// deliveries with 503 rather than forget a live signature.
pub struct ReplayGuard {
    memory: Mutex<ReplayMemory>,
}

struct ReplayMemory {
    parts: HashMap<(TenantId, IntegrationId), HashMap<[u8; 32], Instant>>,
    last_sweep: Instant,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        Self {
            memory: Mutex::new(ReplayMemory {
                parts: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ReplayVerdict {
    Fresh,
    Replayed,
    Full,
}

/// The remembered form of a signature: hex digits in one case, so the same signature in
/// capitals is the same signature.
fn signature_digest(integration: IntegrationId, signature: &str) -> [u8; 32] {
    let normalised = signature.trim().to_ascii_lowercase();
    crypto::sha256(&[&integration.to_bytes(), normalised.as_bytes()])
}

impl ReplayMemory {
    /// Drops expired signatures everywhere, and parts left empty.
    fn sweep(&mut self, now: Instant) {
        self.parts.retain(|_, seen| {
            seen.retain(|_, expiry| *expiry > now);
            !seen.is_empty()
        });
        self.last_sweep = now;
    }
}

impl ReplayGuard {
    /// Remembers `signature` for `integration` of `tenant` and says whether it was new.
    pub fn check(
        &self,
        tenant: TenantId,
        integration: IntegrationId,
        signature: &str,
    ) -> ReplayVerdict {
        self.check_at(tenant, integration, signature, Instant::now())
    }

    fn check_at(
        &self,
        tenant: TenantId,
        integration: IntegrationId,
        signature: &str,
        now: Instant,
    ) -> ReplayVerdict {
        let digest = signature_digest(integration, signature);
        let Ok(mut memory) = self.memory.lock() else {
            return ReplayVerdict::Full;
        };
        if now.saturating_duration_since(memory.last_sweep) >= REPLAY_SWEEP_INTERVAL {
            memory.sweep(now);
        }
        let part = (tenant, integration);
        if !memory.parts.contains_key(&part) && memory.parts.len() >= REPLAY_INTEGRATIONS {
            memory.sweep(now);
            if memory.parts.len() >= REPLAY_INTEGRATIONS {
                return ReplayVerdict::Full;
            }
        }
        let seen = memory.parts.entry(part).or_default();
        if seen.get(&digest).is_some_and(|expiry| *expiry > now) {
            return ReplayVerdict::Replayed;
        }
        if seen.len() >= REPLAY_CAPACITY_PER_INTEGRATION {
            seen.retain(|_, expiry| *expiry > now);
            if seen.len() >= REPLAY_CAPACITY_PER_INTEGRATION {
                return ReplayVerdict::Full;
            }
        }
        seen.insert(digest, now + REPLAY_MEMORY);
        ReplayVerdict::Fresh
    }

    /// Forgets `signature` again: its delivery was not stored, so the sender's retry of the same
    /// signed request must not be taken for a replay.
    pub fn forget(&self, tenant: TenantId, integration: IntegrationId, signature: &str) {
        let digest = signature_digest(integration, signature);
        if let Ok(mut memory) = self.memory.lock() {
            if let Some(seen) = memory.parts.get_mut(&(tenant, integration)) {
                seen.remove(&digest);
            }
        }
    }
}

/// What a delivery stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct Delivered {
    /// Rapport's id of the interaction.
    pub id: String,
    /// `created` or `updated`.
    pub result: String,
}

/// A delivery's headers and body, as received.
pub struct Delivery {
    pub integration: String,
    pub timestamp: Option<String>,
    pub signature: Option<String>,
    pub body: web::Bytes,
    pub client: Option<String>,
}

const REFUSED: &str = "The delivery is not signed correctly, is too old, or was already received.";

/// Verifies and stores one delivery. Blocking.
pub fn receive_delivery(context: &AppContext, delivery: Delivery) -> Result<Delivered, ApiError> {
    let refused = ApiError::Unauthorized(REFUSED);
    let (Some(timestamp), Some(signature)) = (delivery.timestamp, delivery.signature) else {
        return Err(refused);
    };
    let Ok(id) = delivery.integration.parse::<IntegrationId>() else {
        return Err(refused);
    };
    let Some(integration) = context
        .integrations
        .find(id)?
        .filter(|integration| !integration.disabled)
    else {
        return Err(refused);
    };
    // A tenant in its offboarding wind-down takes no deliveries.
    if crate::offboarding::lock_of(context, integration.tenant)?.is_some() {
        return Err(refused);
    }
    if let Err(reason) = verify_signature(
        integration.secret.expose_secret().as_bytes(),
        &timestamp,
        &signature,
        &delivery.body,
        Utc::now().timestamp(),
    ) {
        tracing::warn!(integration = %id, ?reason, "webhook delivery refused");
        return Err(refused);
    }
    match context
        .webhook_replays
        .check(integration.tenant, id, &signature)
    {
        ReplayVerdict::Fresh => {}
        ReplayVerdict::Replayed => {
            tracing::warn!(integration = %id, "webhook delivery replayed");
            return Err(refused);
        }
        ReplayVerdict::Full => return Err(ApiError::Busy),
    }
    // The signature is held while the delivery is stored, and released if storing fails.
    let stored = (|| {
        let record: InteractionRecord = match integration.kind {
            IntegrationKind::Rapport => parse_json(&delivery.body)?,
            IntegrationKind::Zendesk => {
                let event: TicketEvent = parse_json(&delivery.body)?;
                zendesk::to_interaction(event.ticket).map_err(|problem| {
                    ApiError::Invalid(vec![FieldError::body(
                        &format!("ticket.{}", problem.field),
                        problem.message,
                    )])
                })?
            }
        };
        write_record(
            context,
            &integration.actor(),
            delivery.client,
            integration.tenant,
            &format!("webhook {id}"),
            record,
        )
    })();
    let (stored, created) = stored.inspect_err(|_| {
        context
            .webhook_replays
            .forget(integration.tenant, id, &signature);
    })?;
    Ok(Delivered {
        id: stored.id.to_string(),
        result: if created { "created" } else { "updated" }.to_owned(),
    })
}

fn header(request: &HttpRequest, name: &str) -> Option<String> {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// Receives one signed delivery: an `InteractionRecord` (integration kind `rapport`) or a
/// Zendesk ticket event (`zendesk`). Authenticated by its signature, not by an API key.
#[utoipa::path(post, path = "/api/v1/webhooks/{integration}", tag = "webhooks",
    params(
        ("integration" = String, Path, description = "The integration's id"),
        ("X-Rapport-Timestamp" = String, Header, description = "Unix seconds; within 5 minutes of the appliance's clock"),
        ("X-Rapport-Signature" = String, Header, description = "`sha256=` and the hex HMAC-SHA256 of `<timestamp>.<raw body>` under the integration's secret"),
    ),
    request_body(content = InteractionRecord, description = "For `rapport` integrations; `zendesk` ones take `{\"ticket\": {…}}` (see the README)"),
    responses(
        (status = 201, description = "Stored a new interaction", body = Delivered),
        (status = 200, description = "Updated the interaction with the same source id", body = Delivered),
        (status = 401, description = "Bad or missing signature, stale timestamp, replay, or unknown integration; nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid record; nothing stored", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn receive(
    request: HttpRequest,
    context: Data<AppContext>,
    integration: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let timestamp = header(&request, TIMESTAMP_HEADER);
    let signature = header(&request, SIGNATURE_HEADER);
    // An unsigned request, or one for no enabled integration, is refused before its body is
    // read, so that strangers cannot make the appliance read megabytes.
    if timestamp.is_none() || signature.is_none() {
        return Err(ApiError::Unauthorized(REFUSED));
    }
    let known = match integration.parse::<IntegrationId>() {
        Ok(id) => {
            let lookup = context.clone();
            web::block(move || lookup.integrations.find(id))
                .await
                .map_err(|_| ApiError::Internal("background work was interrupted".to_owned()))??
                .is_some_and(|found| !found.disabled)
        }
        Err(_) => false,
    };
    if !known {
        return Err(ApiError::Unauthorized(REFUSED));
    }
    let body = read_body(payload).await?;
    let delivery = Delivery {
        integration: integration.into_inner(),
        timestamp,
        signature,
        body,
        client: client_address(&request).map(|ip| ip.to_string()),
    };
    let delivered = web::block(move || receive_delivery(&context, delivery)).await??;
    let status = if delivered.result == "created" {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    json(status, &delivered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
        format!(
            "sha256={}",
            hex::encode(crypto::hmac_sha256(
                secret,
                &[timestamp.as_bytes(), b".", body]
            ))
        )
    }

    #[test]
    fn signatures_are_checked_with_their_timestamp() {
        let secret = b"whsec_test";
        let body = br#"{"a":1}"#;
        let now = 1_800_000_000;
        let timestamp = now.to_string();
        let good = sign(secret, &timestamp, body);
        assert_eq!(
            verify_signature(secret, &timestamp, &good, body, now),
            Ok(())
        );
        assert_eq!(
            verify_signature(secret, &timestamp, &good, br#"{"a":2}"#, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"other", &timestamp, &good, body, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(secret, &timestamp, &good, body, now + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_signature(secret, &timestamp, "sha256=zz", body, now),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn a_signature_is_accepted_once() {
        let guard = ReplayGuard::default();
        let tenant = TenantId::new();
        let id = IntegrationId::new();
        assert_eq!(guard.check(tenant, id, "sha256=ab"), ReplayVerdict::Fresh);
        assert_eq!(
            guard.check(tenant, id, "sha256=ab"),
            ReplayVerdict::Replayed
        );
        assert_eq!(
            guard.check(tenant, id, " sha256=AB"),
            ReplayVerdict::Replayed
        );
        assert_eq!(
            guard.check(tenant, IntegrationId::new(), "sha256=ab"),
            ReplayVerdict::Fresh
        );
        guard.forget(tenant, id, "sha256=ab");
        assert_eq!(guard.check(tenant, id, "sha256=ab"), ReplayVerdict::Fresh);
    }

    #[test]
    fn one_tenant_filling_its_memory_leaves_other_tenants_protected_and_served() {
        let guard = ReplayGuard::default();
        let now = Instant::now();
        let (victim, victim_hook) = (TenantId::new(), IntegrationId::new());
        assert_eq!(
            guard.check_at(victim, victim_hook, "sha256=01", now),
            ReplayVerdict::Fresh
        );
        let (noisy, noisy_hook) = (TenantId::new(), IntegrationId::new());
        for n in 0..REPLAY_CAPACITY_PER_INTEGRATION {
            assert_eq!(
                guard.check_at(noisy, noisy_hook, &format!("sha256={n:x}"), now),
                ReplayVerdict::Fresh
            );
        }
        // The noisy integration is full and refused; nobody else is.
        assert_eq!(
            guard.check_at(noisy, noisy_hook, "sha256=ffffffff", now),
            ReplayVerdict::Full
        );
        assert_eq!(
            guard.check_at(victim, victim_hook, "sha256=01", now),
            ReplayVerdict::Replayed
        );
        assert_eq!(
            guard.check_at(victim, victim_hook, "sha256=02", now),
            ReplayVerdict::Fresh
        );
        // Once the noisy signatures expire, they are swept out and the integration is served.
        let later = now + REPLAY_MEMORY + Duration::from_secs(1);
        assert_eq!(
            guard.check_at(noisy, noisy_hook, "sha256=ffffffff", later),
            ReplayVerdict::Fresh
        );
        let memory = guard.memory.lock().unwrap();
        assert_eq!(
            memory.parts.get(&(noisy, noisy_hook)).map(HashMap::len),
            Some(1)
        );
        // The sweep also dropped the victim's expired part.
        assert!(!memory.parts.contains_key(&(victim, victim_hook)));
    }
}
