//! The outbound CRM webhook: when a lead becomes `qualified`, a JSON POST to the URL a tenant
//! admin set, with only the fields they selected, signed as Rapport's inbound webhooks are
//! ([`crate::api::webhooks`]): `X-Rapport-Timestamp` (unix seconds) and
//! `X-Rapport-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
//!
//! A delivery is queued persistently ([`crate::leads::store`]) and sent by the `crm-delivery`
//! thread of `rapport serve` ([`spawn`]). The payload is built when it is sent, from the lead as
//! it is then, and the subject's restriction is checked again at that moment: a restricted
//! subject's delivery ends as `skipped` and nothing is sent. A 2xx answer delivers; a 4xx fails
//! at once; a 5xx, a timeout or a connection error is retried on the [`Schedule`] (by default
//! after 1 min, 5 min, 30 min and 2 h, then failed). Every attempt is audited with the lead, the
//! URL's host and the outcome, never the payload, and the delivery log keeps the same.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

use crate::audit::{Actor, AuditAction, AuditEvent};
use crate::context::AppContext;
use crate::crypto;
use crate::ids::{RecordId, TenantId};
use crate::leads::store::LeadStore;
use crate::leads::{lead, LeadError};
use crate::privacy::Restrictions;

/// The fields a payload may carry, by name, with how the settings page labels them.
pub const PAYLOAD_FIELDS: [(&str, &str); 11] = [
    ("name", "Visitor's name"),
    ("email", "Visitor's e-mail address"),
    ("company", "Company"),
    ("intent", "Intent (group and label)"),
    ("score", "Score"),
    ("budget", "Budget"),
    ("company_size", "Company size"),
    ("timeline", "Timeline"),
    ("current_solution", "Current solution"),
    ("evidence", "Evidence quotes"),
    ("assignee", "Assignee's e-mail address"),
];
const MAX_URL_CHARS: usize = 2000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the delivery thread looks for due deliveries.
const POLL: Duration = Duration::from_secs(5);

/// A tenant's webhook settings. The secret is sealed with the record like every value, and
/// shown once, when it is generated.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct CrmSettings {
    pub url: String,
    #[serde(default, with = "crate::inference::remote::sealed_secret")]
    pub secret: Option<SecretString>,
    /// Names from [`PAYLOAD_FIELDS`].
    pub fields: Vec<String>,
    pub enabled: bool,
}

impl std::fmt::Debug for CrmSettings {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("CrmSettings")
            .field("host", &host_of(&self.url))
            .field("secret_set", &self.secret.is_some())
            .field("fields", &self.fields)
            .field("enabled", &self.enabled)
            .finish()
    }
}

/// The host (and port) of a URL, which is all the log and the audit say of it.
pub fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|parsed| {
            let host = parsed.host_str()?.to_owned();
            Some(match parsed.port() {
                Some(port) => format!("{host}:{port}"),
                None => host,
            })
        })
        .unwrap_or_else(|| "(no address)".to_owned())
}

/// Checks a webhook URL: `https://`, or plain `http://` only to this machine's loopback.
pub fn validate_url(raw: &str) -> Result<String, LeadError> {
    let invalid = |message: &str| LeadError::Invalid {
        field: "URL",
        message: message.to_owned(),
    };
    let raw = raw.trim();
    if raw.is_empty() || raw.chars().count() > MAX_URL_CHARS {
        return Err(invalid(
            "is required (for example https://crm.example.com/hooks/rapport)",
        ));
    }
    let parsed = url::Url::parse(raw).map_err(|_| invalid("is not a URL"))?;
    let Some(host) = parsed.host() else {
        return Err(invalid("names no host"));
    };
    match parsed.scheme() {
        "https" => {}
        "http" if crate::inference::remote::is_loopback(&host) => {}
        _ => {
            return Err(invalid(
                "must start with https:// (plain http:// is allowed only to this machine: 127.0.0.1, ::1 or localhost)",
            ))
        }
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("must not contain a user name or password"));
    }
    Ok(parsed.to_string())
}

/// A new signing secret: `whsec_` and 32 random bytes, as the inbound integrations' secrets.
pub fn generate_secret() -> SecretString {
    use base64::Engine as _;
    SecretString::from(format!(
        "whsec_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crypto::random_bytes::<32>())
    ))
}

/// `sha256=<hex>` over `"<timestamp>.<body>"`: what a receiver checks, as
/// [`crate::api::webhooks::verify_signature`] does for Rapport's inbound webhooks.
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(crypto::hmac_sha256(
            secret,
            &[timestamp.as_bytes(), b".", body]
        ))
    )
}

/// When a failed attempt is tried again: `delays[n]` after attempt `n + 1`. One attempt more
/// than there are delays; then the delivery has failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub delays: Vec<Duration>,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            delays: [60, 5 * 60, 30 * 60, 2 * 60 * 60]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
    /// Not sent: the subject is under restriction or objection.
    Skipped,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Skipped => "skipped (restricted subject)",
        }
    }
}

/// One attempt: when, the HTTP status if there was an answer, and the outcome in words that
/// carry no content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    pub status: Option<u16>,
    pub outcome: String,
}

/// One delivery of one lead. Holds no personal data: the payload is made when it is sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub number: u64,
    pub lead: RecordId,
    pub host: String,
    pub state: DeliveryState,
    pub attempts: Vec<Attempt>,
    pub next_attempt: Option<DateTime<Utc>>,
    pub created: DateTime<Utc>,
}

/// Queues a delivery of lead `id` when the tenant's webhook is on. Called when a lead becomes
/// qualified.
pub fn queue(
    context: &AppContext,
    tenant: TenantId,
    id: RecordId,
) -> Result<Option<Delivery>, LeadError> {
    let store = LeadStore::new(context.store.clone());
    let settings = store.settings(tenant)?;
    if !settings.enabled || settings.url.is_empty() {
        return Ok(None);
    }
    let now = Utc::now();
    let delivery = store.add_delivery(
        tenant,
        Delivery {
            number: 0,
            lead: id,
            host: host_of(&settings.url),
            state: DeliveryState::Pending,
            attempts: Vec::new(),
            next_attempt: Some(now),
            created: now,
        },
    )?;
    Ok(Some(delivery))
}

/// A failed delivery goes back in the queue, due now ("Send again"). Audited.
pub fn send_again(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    number: u64,
) -> Result<(), LeadError> {
    let store = LeadStore::new(context.store.clone());
    let mut delivery = store.delivery(tenant, number)?.ok_or(LeadError::NotFound)?;
    if delivery.state != DeliveryState::Failed {
        return Err(LeadError::Invalid {
            field: "Delivery",
            message: "only a failed delivery can be sent again".to_owned(),
        });
    }
    delivery.state = DeliveryState::Pending;
    delivery.next_attempt = Some(Utc::now());
    store.save_delivery(tenant, &delivery)?;
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::CrmDeliveryRequeued,
            format!("delivery {number} of lead {}", delivery.lead),
        )
        .client(client),
    )?;
    Ok(())
}

/// The JSON body: `event`, `lead_id`, `sent_at`, and the selected fields only.
pub fn payload(
    context: &AppContext,
    tenant: TenantId,
    lead: &crate::leads::Lead,
    fields: &[String],
) -> Result<serde_json::Value, LeadError> {
    let mut body = serde_json::Map::new();
    body.insert("event".into(), "lead.qualified".into());
    body.insert("lead_id".into(), lead.id().to_string().into());
    body.insert("sent_at".into(), Utc::now().to_rfc3339().into());
    let visitor = lead.visitor();
    let qualification = lead.qualification.as_ref();
    let facts = qualification.map(|qualification| &qualification.facts);
    for field in fields {
        let value: serde_json::Value = match field.as_str() {
            "name" => visitor.name.clone().into(),
            "email" => visitor.email.clone().into(),
            "company" => lead.company().into(),
            "intent" => serde_json::json!({
                "group": lead.intent_group(),
                "label": lead.intent(),
            }),
            "score" => lead.score().into(),
            "budget" => facts.and_then(|facts| facts.budget.clone()).into(),
            "company_size" => facts.and_then(|facts| facts.company_size).into(),
            "timeline" => facts.map(|facts| facts.timeline.clone()).into(),
            "current_solution" => facts
                .and_then(|facts| facts.current_solution.clone())
                .into(),
            "evidence" => serde_json::Value::Array(
                qualification
                    .map(|qualification| {
                        qualification
                            .evidence
                            .iter()
                            .map(|found| {
                                serde_json::json!({
                                    "fact": found.fact,
                                    "quote": found.evidence.quote,
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            "assignee" => match lead.state.assignee {
                Some(user) => context
                    .users
                    .get(crate::users::UserRef {
                        tenant: Some(tenant),
                        id: user,
                    })
                    .ok()
                    .flatten()
                    .map(|user| user.email.to_string())
                    .into(),
                None => serde_json::Value::Null,
            },
            _ => continue,
        };
        body.insert(field.clone(), value);
    }
    Ok(serde_json::Value::Object(body))
}

/// How one POST ended.
enum Answer {
    Status(u16),
    /// No answer: a timeout, a refused connection, a TLS failure (the kind only).
    Transport(&'static str),
}

fn post(url: &str, secret: &[u8], body: &[u8], delivery: u64) -> Answer {
    let https = url.starts_with("https://");
    let mut builder = ureq::Agent::config_builder()
        .https_only(https)
        .http_status_as_error(false)
        // A redirect would send the lead to an address nobody configured.
        .max_redirects(0)
        .proxy(None)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(Some(REQUEST_TIMEOUT))
        .user_agent(concat!("rapport/", env!("CARGO_PKG_VERSION")));
    if https {
        let Some(roots) = crate::inference::remote::native_root_certificates() else {
            return Answer::Transport("no trusted certificates on this machine");
        };
        builder = builder.tls_config(
            ureq::tls::TlsConfig::builder()
                .provider(ureq::tls::TlsProvider::Rustls)
                .root_certs(roots)
                .build(),
        );
    }
    let agent = builder.build().new_agent();
    let timestamp = Utc::now().timestamp().to_string();
    let signed = signature(secret, &timestamp, body);
    let sent = agent
        .post(url)
        .header("content-type", "application/json")
        .header("x-rapport-timestamp", timestamp.as_str())
        .header("x-rapport-signature", signed.as_str())
        .header("x-rapport-delivery", delivery.to_string().as_str())
        .send(body);
    match sent {
        Ok(response) => Answer::Status(response.status().as_u16()),
        Err(ureq::Error::Timeout(_)) => Answer::Transport("timeout"),
        Err(ureq::Error::HostNotFound) => Answer::Transport("host not found"),
        Err(ureq::Error::ConnectionFailed | ureq::Error::Io(_)) => {
            Answer::Transport("connection failed")
        }
        Err(ureq::Error::Rustls(_) | ureq::Error::Tls(_)) => Answer::Transport("TLS failure"),
        Err(_) => Answer::Transport("HTTP protocol error"),
    }
}

/// Makes one attempt of delivery `number` at `now`; the outcome is stored and audited.
pub fn attempt(
    context: &AppContext,
    tenant: TenantId,
    number: u64,
    now: DateTime<Utc>,
    schedule: &Schedule,
) -> Result<DeliveryState, LeadError> {
    let store = LeadStore::new(context.store.clone());
    let Some(mut delivery) = store.delivery(tenant, number)? else {
        return Err(LeadError::NotFound);
    };
    if delivery.state != DeliveryState::Pending {
        return Ok(delivery.state);
    }
    let settings = store.settings(tenant)?;
    let secret = settings.secret.clone();
    let found = match lead(context, tenant, delivery.lead) {
        Ok(found) => Some(found),
        Err(LeadError::NotFound) => None,
        Err(other) => return Err(other),
    };
    let (state, status, outcome) = match (found, secret) {
        _ if !settings.enabled || settings.url.is_empty() => {
            (DeliveryState::Failed, None, "the webhook is off".to_owned())
        }
        (None, _) => (DeliveryState::Failed, None, "the lead is gone".to_owned()),
        (_, None) => (DeliveryState::Failed, None, "no signing secret".to_owned()),
        (Some(found), Some(secret)) => {
            if Restrictions::new(context.store.clone()).covers(tenant, &found.interaction.record)? {
                (
                    DeliveryState::Skipped,
                    None,
                    "not sent: the subject is under restriction or objection".to_owned(),
                )
            } else {
                let body = serde_json::to_vec(&payload(context, tenant, &found, &settings.fields)?)
                    .map_err(|_| LeadError::Invalid {
                        field: "Payload",
                        message: "could not be encoded".to_owned(),
                    })?;
                delivery.host = host_of(&settings.url);
                let retry_left = delivery.attempts.len() < schedule.delays.len();
                match post(
                    &settings.url,
                    secret.expose_secret().as_bytes(),
                    &body,
                    number,
                ) {
                    Answer::Status(code @ 200..=299) => {
                        (DeliveryState::Delivered, Some(code), format!("HTTP {code}"))
                    }
                    Answer::Status(code @ 500..=599) if retry_left => (
                        DeliveryState::Pending,
                        Some(code),
                        format!("HTTP {code}, retrying"),
                    ),
                    Answer::Status(code) => {
                        (DeliveryState::Failed, Some(code), format!("HTTP {code}"))
                    }
                    Answer::Transport(kind) if retry_left => {
                        (DeliveryState::Pending, None, format!("{kind}, retrying"))
                    }
                    Answer::Transport(kind) => (DeliveryState::Failed, None, kind.to_owned()),
                }
            }
        }
    };
    let delay = schedule
        .delays
        .get(delivery.attempts.len())
        .copied()
        .unwrap_or_default();
    delivery.attempts.push(Attempt {
        at: now,
        status,
        outcome: outcome.clone(),
    });
    delivery.state = state;
    delivery.next_attempt = (state == DeliveryState::Pending)
        .then(|| now + chrono::Duration::from_std(delay).unwrap_or_default());
    // The attempt is recorded before it is stored: a delivery never leaves without its trace.
    context.audit(AuditEvent::new(
        Some(tenant),
        Actor::system(),
        AuditAction::CrmDeliveryAttempted,
        format!(
            "delivery {number} of lead {} to {}: {outcome}",
            delivery.lead, delivery.host
        ),
    ))?;
    store.save_delivery(tenant, &delivery)?;
    Ok(state)
}

/// Makes every due attempt of every tenant at `now`; returns how many were made.
pub fn run_due(context: &AppContext, now: DateTime<Utc>, schedule: &Schedule) -> usize {
    let tenants = match context.tenants.list() {
        Ok(tenants) => tenants,
        Err(error) => {
            tracing::warn!(%error, "crm deliveries: cannot list tenants");
            return 0;
        }
    };
    let store = LeadStore::new(context.store.clone());
    let mut made = 0;
    for tenant in tenants {
        let due = match store.due(tenant.id, now) {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(tenant = %tenant.id, %error, "crm outbox unreadable");
                continue;
            }
        };
        for number in due {
            match attempt(context, tenant.id, number, now, schedule) {
                Ok(_) => made += 1,
                // Store and audit errors name collections, never content.
                Err(error) => {
                    tracing::warn!(tenant = %tenant.id, delivery = number, %error, "crm delivery attempt not recorded");
                }
            }
        }
    }
    made
}

/// The running delivery thread.
pub struct DeliveryHandle {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl std::fmt::Debug for DeliveryHandle {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("DeliveryHandle")
    }
}

impl DeliveryHandle {
    /// Stops the thread, waiting up to `patience` for an attempt in flight.
    pub fn stop(self, patience: Duration) {
        self.stop.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + patience;
        while !self.thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.thread.is_finished() {
            if self.thread.join().is_err() {
                tracing::error!("the crm delivery thread ended with a panic");
            }
        } else {
            tracing::warn!("the crm delivery thread is still sending; pending deliveries resume at the next start");
        }
    }
}

/// Starts the `crm-delivery` thread of `rapport serve`: every few seconds, the due deliveries
/// on `schedule`.
pub fn spawn(context: Arc<AppContext>, schedule: Schedule) -> std::io::Result<DeliveryHandle> {
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("crm-delivery".to_owned())
        .spawn(move || {
            while !thread_stop.load(Ordering::SeqCst) {
                run_due(&context, Utc::now(), &schedule);
                let until = Instant::now() + POLL;
                while Instant::now() < until && !thread_stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })?;
    Ok(DeliveryHandle { stop, thread })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_https_or_loopback_http() {
        assert!(validate_url("https://crm.example.com/hook").is_ok());
        assert!(validate_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(validate_url("http://localhost/hook").is_ok());
        assert!(validate_url("http://crm.example.com/hook").is_err());
        assert!(validate_url("ftp://crm.example.com").is_err());
        assert!(validate_url("https://user:pw@crm.example.com").is_err());
        assert_eq!(
            host_of("https://crm.example.com:8443/a?b"),
            "crm.example.com:8443"
        );
    }

    #[test]
    fn the_signature_is_the_inbound_scheme() {
        let body = br#"{"event":"lead.qualified"}"#;
        let signed = signature(b"whsec_test", "1700000000", body);
        assert!(crate::api::webhooks::verify_signature(
            b"whsec_test",
            "1700000000",
            &signed,
            body,
            1_700_000_010
        )
        .is_ok());
    }
}
