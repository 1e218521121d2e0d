//! The outbound CRM webhook: when a lead becomes `qualified`, a JSON POST to the URL a tenant
//! admin set, with only the fields they selected, signed as Rapport's inbound webhooks are
//! ([`crate::api::webhooks`]): `X-Rapport-Timestamp` (unix seconds) and
//! `X-Rapport-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
//!
//! A delivery is queued persistently ([`crate::leads::store`]) and sent by the `crm-delivery`
//! thread of `rapport serve` ([`spawn`]). The payload is built when it is sent, from the lead as
//! it is then, and the subject's restriction is checked again at that moment: a restricted
//! subject's delivery ends as `skipped` and nothing is sent, and so does the delivery of a lead
//! that is no longer `qualified`. The free text (budget, current solution, evidence quotes) goes
//! through the tenant's PII redaction. A 2xx answer delivers; 408, 425, 429, a 5xx, a timeout or
//! a connection error is retried on the [`Schedule`] (by default after 1 min, 5 min, 30 min and
//! 2 h, then failed); any other 4xx fails at once. Every attempt is audited with the lead, the
//! URL's host and the outcome, never the payload, and the delivery log keeps the same.
//!
//! The host is resolved when a delivery is sent and every address checked ([`resolve_public`]):
//! loopback, private, link-local and other internal addresses are refused ("refused: private
//! address", nothing contacted) unless the operator sets `[integrations] allow_private_networks`;
//! the request connects to the checked addresses only. Delivery is at least once: the attempt is
//! stored as in flight, with its next attempt pushed out, before the POST, so a receiver may see
//! a delivery twice and de-duplicates by `X-Rapport-Delivery`.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _};
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
use crate::leads::{lead, LeadError, LeadStatus};
use crate::privacy::Restrictions;
use crate::tenants::Tenant;

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
/// At most this many resolved addresses are checked and tried (ureq's own limit).
const MAX_ADDRESSES: usize = 16;
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

/// Checks a webhook URL: `https://`, or plain `http://` only to this machine's loopback and only
/// where the operator allows private networks (`[integrations] allow_private_networks`). Where
/// the host leads is checked again when a delivery is sent ([`resolve_public`]).
pub fn validate_url(raw: &str, allow_private_networks: bool) -> Result<String, LeadError> {
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
        "http"
            if allow_private_networks && crate::inference::remote::is_loopback(&host) => {}
        "http" if crate::inference::remote::is_loopback(&host) => {
            return Err(invalid(
                "must start with https:// (plain http:// to this machine needs the operator's [integrations] allow_private_networks = true)",
            ))
        }
        _ => return Err(invalid("must start with https://")),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("must not contain a user name or password"));
    }
    Ok(parsed.to_string())
}

/// Whether `address` is one a tenant's webhook may not reach unless the operator allows
/// private networks: loopback, private (RFC 1918, unique local `fc00::/7`), link-local,
/// shared (100.64/10), unspecified, broadcast, documentation or multicast, an IPv4 address
/// mapped into IPv6 judged as itself.
pub fn is_internal(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(ip) => {
            let [a, b, ..] = ip.octets();
            ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || ip.is_multicast()
                || ip.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240
        }
        IpAddr::V6(ip) => {
            if let Some(mapped) = ip.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(mapped));
            }
            let first = ip.segments()[0];
            ip.is_loopback()
                || ip.is_unspecified()
                || ip.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        }
    }
}

/// Why a URL is not sent to.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The host names no address (or none could be found): tried again later.
    NotFound,
    /// Every address, or one of them, is internal and the operator does not allow that.
    PrivateAddress,
}

/// The addresses `url`'s host resolves to, every one checked with [`is_internal`] unless
/// `allow_private_networks`. The request then connects to exactly these (DNS is not asked
/// twice, so a second answer cannot swap in an internal address).
pub fn resolve_public(url: &str, allow_private_networks: bool) -> Result<Vec<SocketAddr>, Refusal> {
    let parsed = url::Url::parse(url).map_err(|_| Refusal::NotFound)?;
    let port = parsed.port_or_known_default().ok_or(Refusal::NotFound)?;
    let addresses: Vec<SocketAddr> = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        Some(url::Host::Domain(name)) => (name, port)
            .to_socket_addrs()
            .map_err(|_| Refusal::NotFound)?
            .take(MAX_ADDRESSES)
            .collect(),
        None => return Err(Refusal::NotFound),
    };
    if addresses.is_empty() {
        return Err(Refusal::NotFound);
    }
    if !allow_private_networks && addresses.iter().any(|address| is_internal(address.ip())) {
        return Err(Refusal::PrivateAddress);
    }
    Ok(addresses)
}

/// Hands ureq the addresses [`resolve_public`] checked, whatever the URL's host is.
#[derive(Debug)]
struct PinnedResolver(Vec<SocketAddr>);

impl ureq::unversioned::resolver::Resolver for PinnedResolver {
    fn resolve(
        &self,
        _uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let mut resolved = self.empty();
        for address in self.0.iter().take(MAX_ADDRESSES) {
            resolved.push(*address);
        }
        if self.0.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(resolved)
    }
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
    /// Not sent: the subject is under restriction or objection, or the lead is no longer
    /// qualified (the attempt's outcome says which).
    Skipped,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
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

/// A new delivery of lead `id`, due now, when the tenant's webhook is on; not yet stored (its
/// number is given when it is, with the lead's state: [`LeadStore::update_and_queue`]).
pub fn new_delivery(settings: &CrmSettings, id: RecordId, now: DateTime<Utc>) -> Option<Delivery> {
    (settings.enabled && !settings.url.is_empty()).then(|| Delivery {
        number: 0,
        lead: id,
        host: host_of(&settings.url),
        state: DeliveryState::Pending,
        attempts: Vec::new(),
        next_attempt: Some(now),
        created: now,
    })
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

/// The JSON body: `event`, `lead_id`, `sent_at`, and the selected fields only. The free text
/// (budget, current solution, evidence quotes) goes through `detector`'s redaction (PII becomes
/// its type's tag, `[PHONE]`); the name and e-mail fields are sent as the admin selected them.
pub fn payload(
    context: &AppContext,
    tenant: TenantId,
    lead: &crate::leads::Lead,
    fields: &[String],
    detector: &crate::pii::Detector,
) -> Result<serde_json::Value, LeadError> {
    let redact = |text: &str| detector.redact(text, &crate::pii::RedactionMode::Tag);
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
            "budget" => facts
                .and_then(|facts| facts.budget.as_deref())
                .map(redact)
                .into(),
            "company_size" => facts.and_then(|facts| facts.company_size).into(),
            "timeline" => facts.map(|facts| facts.timeline.clone()).into(),
            "current_solution" => facts
                .and_then(|facts| facts.current_solution.as_deref())
                .map(redact)
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
                                    "quote": redact(&found.evidence.quote),
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

/// POSTs `body` to `url`, connecting only to `addresses` (checked by [`resolve_public`]).
fn post(
    url: &str,
    addresses: Vec<SocketAddr>,
    secret: &[u8],
    body: &[u8],
    delivery: u64,
) -> Answer {
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
    let agent = ureq::Agent::with_parts(
        builder.build(),
        ureq::unversioned::transport::DefaultConnector::new(),
        PinnedResolver(addresses),
    );
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

/// What an attempt's in-flight entry says until its outcome replaces it; left there when the
/// outcome was never recorded (the process stopped mid-send).
pub const IN_FLIGHT: &str = "sent, no outcome recorded";

/// Answers worth trying again: a timeout (408), too early (425), too many requests (429) and
/// every 5xx.
fn retryable(code: u16) -> bool {
    matches!(code, 408 | 425 | 429 | 500..=599)
}

/// The delivery's free-text fields go out through the tenant's PII redaction.
fn tenant_redactor(
    context: &AppContext,
    tenant: &Tenant,
) -> Result<crate::pii::Detector, LeadError> {
    crate::pii::tenant_detector(context, &Actor::system(), tenant).map_err(|error| match error {
        crate::pii::PiiError::Store(store) => LeadError::Store(store),
        crate::pii::PiiError::Audit(audit) => LeadError::Audit(audit),
        other @ crate::pii::PiiError::TooManyNames(_) => LeadError::Invalid {
            field: "PII detection",
            message: other.to_string(),
        },
    })
}

/// Makes one attempt of delivery `number` at `now`; the outcome is stored and audited.
///
/// Delivery is at least once: before the POST the attempt is stored as in flight, with the next
/// attempt already pushed out by the schedule's delay, so that a failure to record the outcome
/// (or a stop mid-send) leads to one more attempt after that delay, never to a re-send every
/// poll. Receivers de-duplicate by `X-Rapport-Delivery`.
pub fn attempt(
    context: &AppContext,
    tenant: &Tenant,
    number: u64,
    now: DateTime<Utc>,
    schedule: &Schedule,
) -> Result<DeliveryState, LeadError> {
    let store = LeadStore::new(context.store.clone());
    let Some(mut delivery) = store.delivery(tenant.id, number)? else {
        return Err(LeadError::NotFound);
    };
    if delivery.state != DeliveryState::Pending {
        return Ok(delivery.state);
    }
    let settings = store.settings(tenant.id)?;
    let secret = settings.secret.clone();
    let found = match lead(context, tenant.id, delivery.lead) {
        Ok(found) => Some(found),
        Err(LeadError::NotFound) => None,
        Err(other) => return Err(other),
    };
    let delay = schedule
        .delays
        .get(delivery.attempts.len())
        .or_else(|| schedule.delays.last())
        .copied()
        .unwrap_or(POLL);
    let retry_at = now + chrono::Duration::from_std(delay).unwrap_or_default();
    let retry_left = delivery.attempts.len() < schedule.delays.len();
    let (state, status, outcome) = match (found, secret) {
        _ if !settings.enabled || settings.url.is_empty() => {
            (DeliveryState::Failed, None, "the webhook is off".to_owned())
        }
        (None, _) => (DeliveryState::Failed, None, "the lead is gone".to_owned()),
        (_, None) => (DeliveryState::Failed, None, "no signing secret".to_owned()),
        (Some(found), _) if found.state.status != LeadStatus::Qualified => (
            DeliveryState::Skipped,
            None,
            "not sent: no longer qualified".to_owned(),
        ),
        (Some(found), Some(secret)) => {
            if Restrictions::new(context.store.clone())
                .covers(tenant.id, &found.interaction.record)?
            {
                (
                    DeliveryState::Skipped,
                    None,
                    "not sent: the subject is under restriction or objection".to_owned(),
                )
            } else {
                delivery.host = host_of(&settings.url);
                send_now(
                    context,
                    tenant,
                    &store,
                    &delivery,
                    &found,
                    &settings,
                    &secret,
                    Plan {
                        now,
                        retry_at,
                        retry_left,
                    },
                )?
            }
        }
    };
    delivery.attempts.push(Attempt {
        at: now,
        status,
        outcome: outcome.clone(),
    });
    delivery.state = state;
    delivery.next_attempt = (state == DeliveryState::Pending).then_some(retry_at);
    // The attempt is recorded before it is stored: a delivery never leaves without its trace.
    context.audit(AuditEvent::new(
        Some(tenant.id),
        Actor::system(),
        AuditAction::CrmDeliveryAttempted,
        format!(
            "delivery {number} of lead {} to {}: {outcome}",
            delivery.lead, delivery.host
        ),
    ))?;
    store.save_delivery(tenant.id, &delivery)?;
    Ok(state)
}

/// When an attempt is made and what follows it.
#[derive(Clone, Copy)]
struct Plan {
    now: DateTime<Utc>,
    /// The next attempt, should this one not deliver (and while it is in flight).
    retry_at: DateTime<Utc>,
    retry_left: bool,
}

/// Resolves and checks the host, stores the attempt as in flight and POSTs the payload;
/// returns the attempt's state, HTTP status and outcome.
#[allow(clippy::too_many_arguments)]
fn send_now(
    context: &AppContext,
    tenant: &Tenant,
    store: &LeadStore,
    delivery: &Delivery,
    found: &crate::leads::Lead,
    settings: &CrmSettings,
    secret: &SecretString,
    plan: Plan,
) -> Result<(DeliveryState, Option<u16>, String), LeadError> {
    Ok(
        match resolve_public(
            &settings.url,
            context.config.integrations.allow_private_networks,
        ) {
            Err(Refusal::PrivateAddress) => (
                DeliveryState::Failed,
                None,
                "refused: private address".to_owned(),
            ),
            Err(Refusal::NotFound) if plan.retry_left => (
                DeliveryState::Pending,
                None,
                "host not found, retrying".to_owned(),
            ),
            Err(Refusal::NotFound) => (DeliveryState::Failed, None, "host not found".to_owned()),
            Ok(addresses) => {
                let detector = tenant_redactor(context, tenant)?;
                let body = serde_json::to_vec(&payload(
                    context,
                    tenant.id,
                    found,
                    &settings.fields,
                    &detector,
                )?)
                .map_err(|_| LeadError::Invalid {
                    field: "Payload",
                    message: "could not be encoded".to_owned(),
                })?;
                // In flight first: should the outcome never be stored, the next try
                // waits for the schedule's delay.
                let mut in_flight = delivery.clone();
                in_flight.attempts.push(Attempt {
                    at: plan.now,
                    status: None,
                    outcome: IN_FLIGHT.to_owned(),
                });
                in_flight.next_attempt = Some(plan.retry_at);
                store.save_delivery(tenant.id, &in_flight)?;
                match post(
                    &settings.url,
                    addresses,
                    secret.expose_secret().as_bytes(),
                    &body,
                    delivery.number,
                ) {
                    Answer::Status(code @ 200..=299) => {
                        (DeliveryState::Delivered, Some(code), format!("HTTP {code}"))
                    }
                    Answer::Status(code) if retryable(code) && plan.retry_left => (
                        DeliveryState::Pending,
                        Some(code),
                        format!("HTTP {code}, retrying"),
                    ),
                    Answer::Status(code) => {
                        (DeliveryState::Failed, Some(code), format!("HTTP {code}"))
                    }
                    Answer::Transport(kind) if plan.retry_left => {
                        (DeliveryState::Pending, None, format!("{kind}, retrying"))
                    }
                    Answer::Transport(kind) => (DeliveryState::Failed, None, kind.to_owned()),
                }
            }
        },
    )
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
            match attempt(context, &tenant, number, now, schedule) {
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
    fn urls_are_https_or_loopback_http_where_the_operator_allows_it() {
        assert!(validate_url("https://crm.example.com/hook", false).is_ok());
        assert!(validate_url("http://127.0.0.1:9000/hook", true).is_ok());
        assert!(validate_url("http://localhost/hook", true).is_ok());
        assert!(validate_url("http://127.0.0.1:9000/hook", false).is_err());
        assert!(validate_url("http://crm.example.com/hook", true).is_err());
        assert!(validate_url("ftp://crm.example.com", true).is_err());
        assert!(validate_url("https://user:pw@crm.example.com", false).is_err());
        assert_eq!(
            host_of("https://crm.example.com:8443/a?b"),
            "crm.example.com:8443"
        );
    }

    #[test]
    fn internal_addresses_are_refused_unless_allowed() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for public in ["93.184.216.34", "172.32.0.1", "8.8.8.8", "2606:4700::1111"] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
        assert_eq!(
            resolve_public("https://10.0.0.5/hook", false),
            Err(Refusal::PrivateAddress)
        );
        assert_eq!(
            resolve_public("https://[fd00::5]:8443/hook", false),
            Err(Refusal::PrivateAddress)
        );
        assert_eq!(
            resolve_public("http://localhost:9/hook", false),
            Err(Refusal::PrivateAddress)
        );
        assert_eq!(
            resolve_public("https://10.0.0.5/hook", true),
            Ok(vec!["10.0.0.5:443".parse().unwrap()])
        );
        assert_eq!(
            resolve_public("https://93.184.216.34/hook", false),
            Ok(vec!["93.184.216.34:443".parse().unwrap()])
        );
    }

    #[test]
    fn only_timeouts_rate_limits_and_server_errors_are_retried() {
        for code in [408, 425, 429, 500, 503, 599] {
            assert!(retryable(code), "{code}");
        }
        for code in [400, 401, 404, 410, 422] {
            assert!(!retryable(code), "{code}");
        }
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
