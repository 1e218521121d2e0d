//! The `remote` backend: the same analysis through an OpenAI-compatible endpoint inside the
//! client's network (llama.cpp server, vLLM, Ollama), over rustls.
//!
//! **Redaction invariant.** A request body is built only from [`Outgoing`] text, and `Outgoing`
//! text is either a compile-time constant of this module (`&'static str` instructions) or tenant
//! text that has been through the tenant's PII [`Detector`] and a [`PlaceholderMap`]
//! (`[EMAIL_1]`, `[CARD_1]`, `[PERSON_1]`…). The reply is mapped back through the same map, so the
//! caller sees the original values and the endpoint never does. Labels of a classification are
//! tenant text too and are redacted like the rest; the reply is parsed against the labels as sent.
//!
//! Errors and log lines name the endpoint's host, the HTTP status and the attempt count; never the
//! text sent, the reply, or the API key. The key lives in a [`SecretString`] and leaves it only for
//! the `Authorization` header.
//!
//! Retries: connect failures, timeouts, 429 and 5xx are retried (by default 3 times) after an
//! exponential backoff with jitter, or after the server's `Retry-After` (capped); other 4xx, TLS
//! failures and redirects are not retried, since repeating them cannot change the answer.
//! Redirects are never followed: a 307 would re-send the redacted text to a host nobody chose.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

use crate::inference::{
    classification_from_scores, Backend, BackendKind, Classification, Classified, InferenceError,
    LabelSet, TaskKind,
};
use crate::pii::{Detector, PlaceholderMap};

/// The path Rapport appends to the base URL.
pub const CHAT_COMPLETIONS_PATH: &str = "/v1/chat/completions";
/// Bumped whenever the remote prompts change, so derived data can say which prompt made it.
pub const REMOTE_PROMPT_VERSION: &str = "remote-chat-1";

pub const DEFAULT_CONNECT_TIMEOUT_SECS: u32 = 10;
pub const MAX_CONNECT_TIMEOUT_SECS: u32 = 60;
/// Generation on a busy serving engine can take a while; two minutes covers long drafts.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u32 = 120;
pub const MAX_REQUEST_TIMEOUT_SECS: u32 = 600;
pub const DEFAULT_RETRIES: u32 = 3;
pub const MAX_RETRIES: u32 = 10;

const MAX_BASE_URL_CHARS: usize = 2000;
const MAX_MODEL_CHARS: usize = 200;
const MAX_API_KEY_BYTES: usize = 4096;
const MAX_CA_PEM_BYTES: usize = 32 * 1024;
const MAX_CA_CERTIFICATES: usize = 10;
/// A chat completion for one text is small; anything bigger is not an answer to our request.
const MAX_RESPONSE_BYTES: u64 = 4 * 1024 * 1024;
/// Tokens a classification reply may use: a label, perhaps with punctuation around it.
const CLASSIFY_MAX_TOKENS: u32 = 32;
/// Alternatives asked for the first token of a classification reply.
const TOP_LOGPROBS: u8 = 10;
const MAX_GENERATE_TOKENS: u32 = 8192;

/// A setting a tenant admin typed that cannot be used; `field` is the form's label for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SettingsProblem {
    pub field: &'static str,
    pub message: String,
}

impl SettingsProblem {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// What went wrong talking to the endpoint. Every message is free of tenant content: it names the
/// host, a status, an attempt count, or a TLS reason, never the text sent, the reply or the key.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(
        "the remote inference endpoint {host} answered HTTP {status} after {attempts} attempt(s)"
    )]
    Status {
        host: String,
        status: u16,
        attempts: u32,
    },
    #[error("the remote inference endpoint {host} did not answer within the timeout after {attempts} attempt(s)")]
    Timeout { host: String, attempts: u32 },
    #[error("could not connect to the remote inference endpoint {host} ({reason}) after {attempts} attempt(s)")]
    Connect {
        host: String,
        reason: String,
        attempts: u32,
    },
    #[error("the TLS connection to the remote inference endpoint {host} failed: {reason}")]
    Tls { host: String, reason: String },
    #[error("the remote inference endpoint {host} redirected (HTTP {status}); redirects are not followed, so set the base URL to the final address")]
    Redirected { host: String, status: u16 },
    #[error("the remote inference endpoint {host} sent a response that is not an OpenAI-compatible chat completion")]
    MalformedResponse { host: String },
    #[error("the remote inference endpoint {host} answered with none of the labels asked for")]
    UnparseableReply { host: String },
    #[error("the remote inference endpoint {host} could not be reached: {reason}")]
    Other { host: String, reason: &'static str },
    #[error("the remote backend cannot be set up: {0}")]
    Setup(String),
}

impl RemoteError {
    /// A failure that waiting may cure: no connection, no answer in time, 408, 429 or a 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Timeout { .. } | Self::Other { .. } => true,
            Self::Status { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            Self::Tls { .. }
            | Self::Redirected { .. }
            | Self::MalformedResponse { .. }
            | Self::UnparseableReply { .. }
            | Self::Setup(_) => false,
        }
    }
}

/// Serialises a secret into the sealed store and nowhere else: `AnalysisSettings` is only ever
/// written through the store's sealing codec.
pub(crate) mod sealed_secret {
    use secrecy::{ExposeSecret as _, SecretString};
    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::ref_option)] // serde's `serialize_with` hands the field over by reference.
    pub fn serialize<S: Serializer>(
        value: &Option<SecretString>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(secret) => serializer.serialize_some(secret.expose_secret()),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<SecretString>, D::Error> {
        Ok(Option::<String>::deserialize(deserializer)?.map(SecretString::from))
    }
}

fn default_connect_timeout() -> u32 {
    DEFAULT_CONNECT_TIMEOUT_SECS
}

fn default_request_timeout() -> u32 {
    DEFAULT_REQUEST_TIMEOUT_SECS
}

fn default_retries() -> u32 {
    DEFAULT_RETRIES
}

/// A tenant's remote endpoint, validated ([`RemoteSettings::from_input`] is the only way a tenant
/// admin makes one). Stored sealed in the tenant's `analysis_settings`. `Debug` shows whether a
/// key is set, never the key.
#[derive(Clone, Serialize, Deserialize)]
pub struct RemoteSettings {
    /// `https://host[:port][/path]`, without a trailing slash; plain `http://` only on loopback.
    pub base_url: String,
    /// The model name the server knows (`llama3.1:8b`, `meta-llama/Llama-3.1-8B-Instruct`).
    pub model: String,
    #[serde(default, with = "sealed_secret")]
    pub api_key: Option<SecretString>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u32,
    /// The whole of one attempt: connect, send, wait, read the reply.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u32,
    /// Retries after the first attempt.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// An internal CA (PEM). When set, only it is trusted for this endpoint; otherwise the
    /// operating system's trust store is.
    #[serde(default)]
    pub ca_certificate_pem: Option<String>,
}

impl fmt::Debug for RemoteSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteSettings")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key_set", &self.api_key.is_some())
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .field("retries", &self.retries)
            .field("ca_certificate", &self.ca_certificate_pem.is_some())
            .finish()
    }
}

/// What a tenant admin typed for the remote backend, unvalidated.
#[derive(Default)]
pub struct RemoteInput {
    pub base_url: String,
    pub model: String,
    /// A new key; `None` (or an empty one) keeps the key already stored.
    pub api_key: Option<SecretString>,
    /// Removes the stored key.
    pub clear_key: bool,
    pub connect_timeout_secs: String,
    pub request_timeout_secs: String,
    pub retries: String,
    pub ca_certificate_pem: String,
}

impl RemoteSettings {
    /// Validates `input`; `previous` supplies the key when none was typed. Every problem names the
    /// form field it is about.
    pub fn from_input(
        input: &RemoteInput,
        previous: Option<&RemoteSettings>,
    ) -> Result<Self, SettingsProblem> {
        let base_url = validate_base_url(&input.base_url)?;
        let model = validate_model(&input.model)?;
        let typed_key = input
            .api_key
            .as_ref()
            .filter(|key| !key.expose_secret().trim().is_empty());
        let api_key = match typed_key {
            Some(key) => Some(validate_api_key(key)?),
            None if input.clear_key => None,
            None => previous.and_then(|previous| previous.api_key.clone()),
        };
        let connect_timeout_secs = bounded_number(
            "Connect timeout",
            &input.connect_timeout_secs,
            DEFAULT_CONNECT_TIMEOUT_SECS,
            1,
            MAX_CONNECT_TIMEOUT_SECS,
            "a whole number of seconds",
        )?;
        let request_timeout_secs = bounded_number(
            "Request timeout",
            &input.request_timeout_secs,
            DEFAULT_REQUEST_TIMEOUT_SECS,
            1,
            MAX_REQUEST_TIMEOUT_SECS,
            "a whole number of seconds",
        )?;
        let retries = bounded_number(
            "Retries",
            &input.retries,
            DEFAULT_RETRIES,
            0,
            MAX_RETRIES,
            "a whole number",
        )?;
        let ca_certificate_pem = validate_ca_pem(&input.ca_certificate_pem)?;
        Ok(Self {
            base_url,
            model,
            api_key,
            connect_timeout_secs,
            request_timeout_secs,
            retries,
            ca_certificate_pem,
        })
    }

    /// `host[:port]` of the base URL, for people and for error messages.
    pub fn host(&self) -> String {
        host_of(&self.base_url)
    }

    /// The full address requests go to.
    pub fn endpoint(&self) -> String {
        format!("{}{CHAT_COMPLETIONS_PATH}", self.base_url)
    }
}

fn host_of(base_url: &str) -> String {
    url::Url::parse(base_url)
        .ok()
        .and_then(|parsed| {
            let host = parsed.host_str()?.to_owned();
            Some(match parsed.port() {
                Some(port) => format!("{host}:{port}"),
                None => host,
            })
        })
        .unwrap_or_else(|| "(invalid address)".to_owned())
}

/// Whether `host` is this machine's loopback interface, where plain HTTP never leaves the machine.
pub(crate) fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        url::Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
        url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
    }
}

fn validate_base_url(raw: &str) -> Result<String, SettingsProblem> {
    const FIELD: &str = "Base URL";
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(SettingsProblem::new(
            FIELD,
            "is required (for example https://llm.internal.example:8443)",
        ));
    }
    if raw.chars().count() > MAX_BASE_URL_CHARS {
        return Err(SettingsProblem::new(
            FIELD,
            format!("is longer than {MAX_BASE_URL_CHARS} characters"),
        ));
    }
    let parsed = url::Url::parse(raw).map_err(|_| {
        SettingsProblem::new(
            FIELD,
            "is not a URL (for example https://llm.internal.example:8443)",
        )
    })?;
    let Some(host) = parsed.host() else {
        return Err(SettingsProblem::new(FIELD, "names no host"));
    };
    match parsed.scheme() {
        "https" => {}
        "http" if is_loopback(&host) => {}
        "http" => {
            return Err(SettingsProblem::new(
                FIELD,
                "must start with https://; plain http:// would send the text unencrypted across the network (it is allowed only for a server on this machine: 127.0.0.1, ::1 or localhost)",
            ))
        }
        _ => return Err(SettingsProblem::new(FIELD, "must start with https://")),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(SettingsProblem::new(
            FIELD,
            "must not contain a user name or password; put the key in the API key field",
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(SettingsProblem::new(
            FIELD,
            "must not contain a query (?…) or a fragment (#…)",
        ));
    }
    let normalised = parsed.as_str().trim_end_matches('/').to_owned();
    let path = parsed.path().trim_end_matches('/');
    if path.ends_with("/v1") || path.contains("/v1/") {
        return Err(SettingsProblem::new(
            FIELD,
            format!("give the server's address without /v1…; Rapport adds {CHAT_COMPLETIONS_PATH}"),
        ));
    }
    Ok(normalised)
}

fn validate_model(raw: &str) -> Result<String, SettingsProblem> {
    const FIELD: &str = "Model";
    let model = raw.trim();
    if model.is_empty() {
        return Err(SettingsProblem::new(
            FIELD,
            "is required: the name the server knows the model by (for example llama3.1:8b)",
        ));
    }
    if model.chars().count() > MAX_MODEL_CHARS {
        return Err(SettingsProblem::new(
            FIELD,
            format!("is longer than {MAX_MODEL_CHARS} characters"),
        ));
    }
    if model.chars().any(char::is_control) {
        return Err(SettingsProblem::new(FIELD, "contains control characters"));
    }
    Ok(model.to_owned())
}

/// The key goes into an HTTP header, so it must be visible ASCII. The messages never repeat it.
fn validate_api_key(key: &SecretString) -> Result<SecretString, SettingsProblem> {
    const FIELD: &str = "API key";
    let key = key.expose_secret().trim();
    if key.len() > MAX_API_KEY_BYTES {
        return Err(SettingsProblem::new(
            FIELD,
            format!("is longer than {MAX_API_KEY_BYTES} characters"),
        ));
    }
    if !key.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(SettingsProblem::new(
            FIELD,
            "may contain only printable ASCII characters without spaces",
        ));
    }
    Ok(SecretString::from(key.to_owned()))
}

fn bounded_number(
    field: &'static str,
    raw: &str,
    default: u32,
    min: u32,
    max: u32,
    what: &str,
) -> Result<u32, SettingsProblem> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(default);
    }
    raw.parse::<u32>()
        .ok()
        .filter(|value| (min..=max).contains(value))
        .ok_or_else(|| SettingsProblem::new(field, format!("must be {what} from {min} to {max}")))
}

/// Parses the PEM certificates of an internal CA; each must be a usable trust anchor.
fn validate_ca_pem(raw: &str) -> Result<Option<String>, SettingsProblem> {
    const FIELD: &str = "CA certificate";
    let pem = raw.trim();
    if pem.is_empty() {
        return Ok(None);
    }
    if pem.len() > MAX_CA_PEM_BYTES {
        return Err(SettingsProblem::new(
            FIELD,
            format!("is larger than {} KiB", MAX_CA_PEM_BYTES / 1024),
        ));
    }
    let certificates = parse_ca_certificates(pem.as_bytes())?;
    if certificates.len() > MAX_CA_CERTIFICATES {
        return Err(SettingsProblem::new(
            FIELD,
            format!("holds more than {MAX_CA_CERTIFICATES} certificates"),
        ));
    }
    // Normalised line endings, one newline at the end, as PEM files have.
    Ok(Some(format!("{}\n", pem.replace("\r\n", "\n"))))
}

fn parse_ca_certificates(
    pem: &[u8],
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, SettingsProblem> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::CertificateDer;

    const FIELD: &str = "CA certificate";
    let mut certificates = Vec::new();
    for (index, item) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let certificate = item.map_err(|_| {
            SettingsProblem::new(FIELD, format!("certificate {} is not valid PEM", index + 1))
        })?;
        let mut store = rustls::RootCertStore::empty();
        store.add(certificate.clone()).map_err(|_| {
            SettingsProblem::new(
                FIELD,
                format!("certificate {} is not a valid X.509 certificate", index + 1),
            )
        })?;
        certificates.push(certificate);
    }
    if certificates.is_empty() {
        return Err(SettingsProblem::new(
            FIELD,
            "holds no PEM certificate (a block starting -----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certificates)
}

/// When to try again. The delay before retry `n` (0-based) is drawn from the upper half of
/// `base_delay * 2^n` (capped at `max_delay`): "equal jitter", which spreads the retries of many
/// workers apart while still waiting at least half the backoff. A `Retry-After` from the server
/// replaces the backoff, up to `retry_after_cap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub retry_after_cap: Duration,
}

impl RetryPolicy {
    pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(500);
    pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(8);
    pub const DEFAULT_RETRY_AFTER_CAP: Duration = Duration::from_secs(30);

    pub fn with_retries(retries: u32) -> Self {
        Self {
            retries,
            base_delay: Self::DEFAULT_BASE_DELAY,
            max_delay: Self::DEFAULT_MAX_DELAY,
            retry_after_cap: Self::DEFAULT_RETRY_AFTER_CAP,
        }
    }

    /// The backoff ceiling before retry `retry` (0-based): `base * 2^retry`, at most `max_delay`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1_u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// The wait before retry `retry`; `jitter` is a uniform draw from `[0, 1)`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        if let Some(requested) = retry_after {
            return requested.min(self.retry_after_cap);
        }
        let ceiling = self.backoff(retry);
        let half = ceiling / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// A `Retry-After` value: delay-seconds, or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - now;
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// Text allowed into a request body: a constant of this module, or tenant text that went through
/// the detector and the placeholder map. There is no other constructor.
struct Outgoing(String);

/// One exchange's redaction: the detector's findings become placeholders in everything sent, and
/// the same map restores them in the reply. Dropping it wipes the originals it held.
struct Redactor<'d> {
    detector: &'d Detector,
    map: PlaceholderMap,
}

impl<'d> Redactor<'d> {
    fn new(detector: &'d Detector) -> Self {
        Self {
            detector,
            map: PlaceholderMap::new(),
        }
    }

    /// Tenant text, with its personal data replaced by placeholders.
    fn redact(&mut self, text: &str) -> Outgoing {
        let findings = self.detector.detect(text);
        Outgoing(self.map.pseudonymise(text, &findings))
    }

    /// The module's own wording, which holds no tenant data.
    fn fixed(text: &'static str) -> Outgoing {
        Outgoing(text.to_owned())
    }

    fn restore(&self, reply: &str) -> String {
        self.map.restore(reply)
    }
}

#[derive(Clone, Copy)]
enum Role {
    System,
    User,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
        }
    }
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct ChatRequestBody<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    max_tokens: u32,
    temperature: f32,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_logprobs: Option<u8>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop: Vec<&'static str>,
}

#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ReplyMessage,
    #[serde(default)]
    logprobs: Option<ChoiceLogprobs>,
}

#[derive(Deserialize)]
struct ReplyMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceLogprobs {
    #[serde(default)]
    content: Option<Vec<TokenLogprob>>,
}

#[derive(Deserialize)]
struct TokenLogprob {
    token: String,
    logprob: f32,
    #[serde(default)]
    top_logprobs: Vec<TopLogprob>,
}

#[derive(Deserialize)]
struct TopLogprob {
    token: String,
    logprob: f32,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    total_tokens: u64,
}

/// A reply as the endpoint wrote it (placeholders still in), with what it cost.
struct ChatReply {
    content: String,
    /// The alternatives for the first token that carries a letter or digit, when the endpoint
    /// returned log-probabilities.
    first_token_alternatives: Option<Vec<(String, f32)>>,
    total_tokens: u64,
}

/// One attempt's failure, before it is known whether another attempt follows.
enum AttemptFailure {
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    Redirected(u16),
    Timeout,
    Connect(String),
    Tls(String),
    Malformed,
    Other(&'static str),
}

impl AttemptFailure {
    fn retriable(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status == 429 || (500..=599).contains(status),
            Self::Timeout | Self::Connect(_) => true,
            Self::Redirected(_) | Self::Tls(_) | Self::Malformed | Self::Other(_) => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Status { status, .. } => format!("HTTP {status}"),
            Self::Redirected(status) => format!("redirect HTTP {status}"),
            Self::Timeout => "timeout".to_owned(),
            Self::Connect(reason) => format!("connection failed ({reason})"),
            Self::Tls(reason) => format!("TLS failure ({reason})"),
            Self::Malformed => "malformed response".to_owned(),
            Self::Other(reason) => (*reason).to_owned(),
        }
    }

    fn into_error(self, host: &str, attempts: u32) -> RemoteError {
        let host = host.to_owned();
        match self {
            Self::Status { status, .. } => RemoteError::Status {
                host,
                status,
                attempts,
            },
            Self::Redirected(status) => RemoteError::Redirected { host, status },
            Self::Timeout => RemoteError::Timeout { host, attempts },
            Self::Connect(reason) => RemoteError::Connect {
                host,
                reason,
                attempts,
            },
            Self::Tls(reason) => RemoteError::Tls { host, reason },
            Self::Malformed => RemoteError::MalformedResponse { host },
            Self::Other(reason) => RemoteError::Other { host, reason },
        }
    }
}

/// Classifies a transport error without keeping its text: ureq's messages are content-free, but
/// only the kind is needed, and a kind cannot carry anything by accident.
fn attempt_failure(error: ureq::Error) -> AttemptFailure {
    match error {
        ureq::Error::Timeout(_) => AttemptFailure::Timeout,
        ureq::Error::HostNotFound => AttemptFailure::Connect("host not found".to_owned()),
        ureq::Error::ConnectionFailed => AttemptFailure::Connect("connection refused".to_owned()),
        // rustls reports a refused certificate through the stream, as an I/O error around it.
        ureq::Error::Io(error) => match error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => AttemptFailure::Tls(tls.to_string()),
            None => AttemptFailure::Connect(format!("{:?}", error.kind())),
        },
        // rustls' messages describe certificates and protocol alerts, never payload.
        ureq::Error::Rustls(error) => AttemptFailure::Tls(error.to_string()),
        ureq::Error::Tls(reason) => AttemptFailure::Tls(reason.to_owned()),
        ureq::Error::BodyExceedsLimit(_) => AttemptFailure::Other("the response was too large"),
        ureq::Error::RequireHttpsOnly(_) | ureq::Error::TlsRequired => {
            AttemptFailure::Other("plain HTTP is not allowed for this address")
        }
        _ => AttemptFailure::Other("HTTP protocol error"),
    }
}

/// Loads the trust anchors: the configured internal CA alone, or else the operating system's
/// store.
fn root_certificates(settings: &RemoteSettings) -> Result<ureq::tls::RootCerts, RemoteError> {
    if let Some(pem) = &settings.ca_certificate_pem {
        let certificates = parse_ca_certificates(pem.as_bytes())
            .map_err(|problem| RemoteError::Setup(problem.to_string()))?;
        let certificates: Vec<ureq::tls::Certificate<'static>> = certificates
            .iter()
            .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
            .collect();
        return Ok(ureq::tls::RootCerts::new_with_certs(&certificates));
    }
    native_root_certificates().ok_or_else(|| {
        RemoteError::Setup(
            "the operating system's trust store holds no certificates; give the endpoint's CA certificate in the analysis settings".to_owned(),
        )
    })
}

/// The operating system's trust anchors, or `None` when its store holds none. Also the CRM
/// webhook's ([`crate::leads::webhook`]).
pub(crate) fn native_root_certificates() -> Option<ureq::tls::RootCerts> {
    let native = rustls_native_certs::load_native_certs();
    if native.certs.is_empty() {
        return None;
    }
    let certificates: Vec<ureq::tls::Certificate<'static>> = native
        .certs
        .iter()
        .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    Some(ureq::tls::RootCerts::new_with_certs(&certificates))
}

/// The `remote` backend. Build it with [`RemoteBackend::new`] from a tenant's settings and the
/// tenant's detector ([`crate::pii::tenant_detector`]), so that its contacts' names are caught too.
pub struct RemoteBackend {
    agent: ureq::Agent,
    endpoint: String,
    host: String,
    model: String,
    api_key: Option<SecretString>,
    retry: RetryPolicy,
    detector: Arc<Detector>,
}

impl fmt::Debug for RemoteBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteBackend")
            .field("host", &self.host)
            .field("model", &self.model)
            .field("api_key_set", &self.api_key.is_some())
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl RemoteBackend {
    pub fn new(settings: &RemoteSettings, detector: Detector) -> Result<Self, RemoteError> {
        let roots = root_certificates(settings)?;
        let https_only = settings.base_url.starts_with("https://");
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(roots)
            .build();
        let config = ureq::Agent::config_builder()
            .tls_config(tls)
            .https_only(https_only)
            // Statuses are answers to inspect (Retry-After, 4xx versus 5xx), not errors.
            .http_status_as_error(false)
            // A redirect would re-send the text to an address nobody configured.
            .max_redirects(0)
            // The endpoint is inside the client's network; an environment proxy is not chosen
            // by the tenant admin and would be one more place the text passes through.
            .proxy(None)
            .timeout_connect(Some(Duration::from_secs(u64::from(
                settings.connect_timeout_secs,
            ))))
            .timeout_global(Some(Duration::from_secs(u64::from(
                settings.request_timeout_secs,
            ))))
            .user_agent(concat!("rapport/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Self {
            agent: config.new_agent(),
            endpoint: settings.endpoint(),
            host: settings.host(),
            model: settings.model.clone(),
            api_key: settings.api_key.clone(),
            retry: RetryPolicy::with_retries(settings.retries),
            detector: Arc::new(detector),
        })
    }

    /// Replaces the retry delays (the count stays the settings'); for callers that need a
    /// different pace than the defaults, such as a connection test.
    #[must_use]
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// Sends one chat completion, with retries. `messages` are all [`Outgoing`], so redacted.
    fn chat(
        &self,
        messages: &[(Role, Outgoing)],
        max_tokens: u32,
        logprobs: bool,
        stop: Vec<&'static str>,
    ) -> Result<ChatReply, RemoteError> {
        let body = ChatRequestBody {
            model: &self.model,
            messages: messages
                .iter()
                .map(|(role, Outgoing(content))| WireMessage {
                    role: role.as_str(),
                    content,
                })
                .collect(),
            max_tokens,
            temperature: 0.0,
            stream: false,
            logprobs: logprobs.then_some(true),
            top_logprobs: logprobs.then_some(TOP_LOGPROBS),
            stop,
        };
        let body = serde_json::to_vec(&body)
            .map_err(|_| RemoteError::Setup("the request could not be encoded".to_owned()))?;
        let attempts_allowed = self.retry.retries.saturating_add(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.attempt(&body) {
                Ok(reply) => return Ok(reply),
                Err(failure) if failure.retriable() && attempt < attempts_allowed => {
                    let delay =
                        self.retry
                            .delay(attempt - 1, failure.retry_after(), rand::random::<f64>());
                    tracing::warn!(
                        host = %self.host,
                        attempt,
                        attempts_allowed,
                        failure = %failure.describe(),
                        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        "remote inference attempt failed; retrying"
                    );
                    std::thread::sleep(delay);
                }
                Err(failure) => {
                    tracing::warn!(
                        host = %self.host,
                        attempt,
                        failure = %failure.describe(),
                        "remote inference failed"
                    );
                    return Err(failure.into_error(&self.host, attempt));
                }
            }
        }
    }

    fn attempt(&self, body: &[u8]) -> Result<ChatReply, AttemptFailure> {
        let mut request = self
            .agent
            .post(&self.endpoint)
            .header("content-type", "application/json")
            .header("accept", "application/json");
        if let Some(key) = &self.api_key {
            let value = zeroize::Zeroizing::new(format!("Bearer {}", key.expose_secret()));
            request = request.header("authorization", value.as_str());
        }
        let mut response = request.send(body).map_err(attempt_failure)?;
        let status = response.status().as_u16();
        if (300..400).contains(&status) {
            return Err(AttemptFailure::Redirected(status));
        }
        if status != 200 {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| parse_retry_after(value, chrono::Utc::now()));
            return Err(AttemptFailure::Status {
                status,
                retry_after,
            });
        }
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(attempt_failure)?;
        parse_chat_response(&bytes).ok_or(AttemptFailure::Malformed)
    }

    fn classify_one(
        &self,
        task: TaskKind,
        labels: &LabelSet,
        text: &str,
    ) -> Result<(Classification, u64), RemoteError> {
        let mut redactor = Redactor::new(&self.detector);
        let sent_labels: Vec<Outgoing> = labels
            .as_slice()
            .iter()
            .map(|label| redactor.redact(label))
            .collect();
        let mut instruction = match task {
            TaskKind::Sentiment => Redactor::fixed(SENTIMENT_INSTRUCTION),
            TaskKind::Topic => Redactor::fixed(TOPIC_INSTRUCTION),
            TaskKind::LeadIntent => Redactor::fixed(LEAD_INTENT_INSTRUCTION),
            TaskKind::QaCriterion => Redactor::fixed(QA_INSTRUCTION),
        };
        for label in &sent_labels {
            instruction.0.push_str("\n- ");
            instruction.0.push_str(&label.0);
        }
        let messages = [
            (Role::System, instruction),
            (Role::User, redactor.redact(text)),
        ];
        let reply = self.chat(&messages, CLASSIFY_MAX_TOKENS, true, Vec::new())?;
        let sent: Vec<&str> = sent_labels.iter().map(|label| label.0.as_str()).collect();
        let chosen =
            parse_label(&reply.content, &sent).ok_or_else(|| RemoteError::UnparseableReply {
                host: self.host.clone(),
            })?;
        let classification = match &reply.first_token_alternatives {
            Some(alternatives) => classification_from_logprobs(labels, &sent, chosen, alternatives),
            None => one_hot(labels, chosen),
        };
        Ok((classification, reply.total_tokens))
    }
}

const LEAD_INTENT_INSTRUCTION: &str = "You classify a website visitor's messages in a sales chat by what the visitor wants. Read the messages and answer with exactly one label from the list below, written as it appears there, and nothing else.\nLabels:";
const SENTIMENT_INSTRUCTION: &str = "You classify customer-service messages by sentiment. Read the customer's message and answer with exactly one label from the list below, written as it appears there, and nothing else.\nLabels:";
const QA_INSTRUCTION: &str = "You review customer-service conversations for quality. Read the conversation and answer its question about the agent with exactly one label from the list below (yes or no, or a rating where the highest number is best; n/a when the question does not apply), written as it appears there, and nothing else.\nLabels:";
const TOPIC_INSTRUCTION: &str = "You classify customer-service messages by topic. Read the customer's message and answer with exactly one label from the list below, written as it appears there, and nothing else.\nLabels:";

fn parse_chat_response(bytes: &[u8]) -> Option<ChatReply> {
    // serde's messages can quote the offending value, which could be model output; only
    // success or failure is kept.
    let response: ChatResponse = serde_json::from_slice(bytes).ok()?;
    let choice = response.choices.into_iter().next()?;
    let content = choice.message.content?;
    let first_token_alternatives = choice
        .logprobs
        .and_then(|logprobs| logprobs.content)
        .and_then(|tokens| {
            let token = tokens
                .into_iter()
                .find(|token| !normalise(&token.token).is_empty())?;
            if token.top_logprobs.is_empty() {
                Some(vec![(token.token, token.logprob)])
            } else {
                Some(
                    token
                        .top_logprobs
                        .into_iter()
                        .map(|top| (top.token, top.logprob))
                        .collect(),
                )
            }
        });
    Some(ChatReply {
        content,
        first_token_alternatives,
        total_tokens: response.usage.map_or(0, |usage| usage.total_tokens),
    })
}

/// Lower case, every run of characters other than letters and digits turned into one space,
/// trimmed: `"**Negative.**"` and `"negative"` read alike.
fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_alphanumeric() {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.extend(c.to_lowercase());
        } else {
            pending_space = true;
        }
    }
    out
}

/// Which label a reply names, as an index into `labels`. The reply matches a label when, read
/// without case and punctuation, it is the label, or its first line is, or the label occurs in
/// it as whole words and no other label does (a label found only inside a longer one that also
/// occurs, like `negative` in `very negative`, does not count). `None` when no label, or more than
/// one, is named.
pub fn parse_label<S: AsRef<str>>(reply: &str, labels: &[S]) -> Option<usize> {
    let normalised: Vec<String> = labels
        .iter()
        .map(|label| normalise(label.as_ref()))
        .collect();
    let exact = |candidate: &str| {
        let mut found = normalised
            .iter()
            .enumerate()
            .filter(|(_, label)| !label.is_empty() && label.as_str() == candidate);
        let first = found.next()?;
        found.next().is_none().then_some(first.0)
    };
    let whole = normalise(reply);
    if let Some(index) = exact(&whole) {
        return Some(index);
    }
    let first_line = reply
        .lines()
        .map(normalise)
        .find(|line| !line.is_empty())
        .unwrap_or_default();
    if let Some(index) = exact(&first_line) {
        return Some(index);
    }
    let padded = format!(" {whole} ");
    let contained: Vec<usize> = normalised
        .iter()
        .enumerate()
        .filter(|(_, label)| !label.is_empty() && padded.contains(&format!(" {label} ")))
        .map(|(index, _)| index)
        .collect();
    let outermost: Vec<usize> = contained
        .iter()
        .copied()
        .filter(|&index| {
            !contained.iter().any(|&other| {
                other != index
                    && normalised[other].len() > normalised[index].len()
                    && format!(" {} ", normalised[other])
                        .contains(&format!(" {} ", normalised[index]))
            })
        })
        .collect();
    match outermost.as_slice() {
        [only] => Some(*only),
        _ => None,
    }
}

/// The chosen label with probability 1: what an endpoint that returns no log-probabilities
/// allows. Its confidence says nothing about the model's certainty.
fn one_hot(labels: &LabelSet, chosen: usize) -> Classification {
    let probabilities = (0..labels.len())
        .map(|index| if index == chosen { 1.0 } else { 0.0 })
        .collect();
    Classification {
        label: labels.as_slice()[chosen].clone(),
        probabilities,
        confidence: 1.0,
    }
}

/// Per-label probabilities from the first reply token's alternatives. An alternative counts for a
/// label when, normalised, it is the label or the start of it and of no other label; each label
/// takes its best alternative's log-probability, and a softmax over the labels makes them sum to
/// 1 (labels with no alternative get 0). The chosen label stays the one the reply named; when no
/// alternative speaks for it, the result is [`one_hot`].
pub fn classification_from_logprobs<S: AsRef<str>>(
    labels: &LabelSet,
    sent_labels: &[S],
    chosen: usize,
    alternatives: &[(String, f32)],
) -> Classification {
    let normalised: Vec<String> = sent_labels
        .iter()
        .map(|label| normalise(label.as_ref()))
        .collect();
    let mut scores = vec![f32::NEG_INFINITY; normalised.len()];
    for (token, logprob) in alternatives {
        let token = normalise(token);
        if token.is_empty() || !logprob.is_finite() {
            continue;
        }
        let matching: Vec<usize> = normalised
            .iter()
            .enumerate()
            .filter(|(_, label)| label.starts_with(&token))
            .map(|(index, _)| index)
            .collect();
        let owner = match matching.as_slice() {
            [only] => Some(*only),
            several => several
                .iter()
                .copied()
                .find(|&index| normalised[index] == token),
        };
        if let Some(index) = owner {
            scores[index] = scores[index].max(*logprob);
        }
    }
    if chosen >= scores.len() || !scores[chosen].is_finite() {
        return one_hot(labels, chosen);
    }
    let mut classification = classification_from_scores(labels, &scores);
    classification.label.clone_from(&labels.as_slice()[chosen]);
    classification.confidence = classification.probabilities[chosen];
    classification
}

/// Everything up to the first blank line, as the local backend stops there.
fn until_blank_line(text: &str) -> &str {
    text.split("\n\n").next().unwrap_or_default()
}

impl Backend for RemoteBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Remote
    }

    fn describe(&self) -> String {
        format!(
            "remote: {}, model {} (prompt {REMOTE_PROMPT_VERSION})",
            self.host, self.model
        )
    }

    /// The endpoint's host and model name with the prompt version: a result is reused only while
    /// all three are unchanged, so moving to another server or model re-analyses.
    fn model_id(&self) -> String {
        format!(
            "remote:{}/{}#{REMOTE_PROMPT_VERSION}",
            self.host, self.model
        )
    }

    /// One request per text, in order. Probabilities come from the endpoint's log-probabilities
    /// of the reply's first token when it returns them; otherwise the named label gets 1.
    fn classify(
        &self,
        task: TaskKind,
        labels: &LabelSet,
        texts: &[String],
    ) -> Result<Classified, InferenceError> {
        let mut results = Vec::with_capacity(texts.len());
        let mut tokens_decoded = 0;
        for text in texts {
            let (classification, tokens) = self.classify_one(task, labels, text)?;
            results.push(classification);
            tokens_decoded += tokens;
        }
        Ok(Classified {
            results,
            tokens_decoded,
        })
    }

    fn generate(&self, prompt: &str, max_tokens: u32) -> Result<String, InferenceError> {
        let mut redactor = Redactor::new(&self.detector);
        let messages = [(Role::User, redactor.redact(prompt))];
        let reply = self.chat(
            &messages,
            max_tokens.clamp(1, MAX_GENERATE_TOKENS),
            false,
            vec!["\n\n"],
        )?;
        Ok(redactor.restore(until_blank_line(&reply.content)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(base_url: &str) -> RemoteInput {
        RemoteInput {
            base_url: base_url.to_owned(),
            model: "llama3.1:8b".to_owned(),
            ..RemoteInput::default()
        }
    }

    fn problem_field(result: Result<RemoteSettings, SettingsProblem>) -> &'static str {
        match result {
            Ok(settings) => panic!("accepted: {settings:?}"),
            Err(problem) => problem.field,
        }
    }

    #[test]
    fn base_url_must_be_https_except_on_loopback() {
        let settings =
            RemoteSettings::from_input(&input("https://LLM.internal:8443/"), None).unwrap();
        assert_eq!(settings.base_url, "https://llm.internal:8443");
        assert_eq!(settings.host(), "llm.internal:8443");
        assert_eq!(
            settings.endpoint(),
            "https://llm.internal:8443/v1/chat/completions"
        );
        assert_eq!(settings.connect_timeout_secs, DEFAULT_CONNECT_TIMEOUT_SECS);
        assert_eq!(settings.request_timeout_secs, DEFAULT_REQUEST_TIMEOUT_SECS);
        assert_eq!(settings.retries, DEFAULT_RETRIES);
        let with_path =
            RemoteSettings::from_input(&input("https://gw.internal/llm/"), None).unwrap();
        assert_eq!(
            with_path.endpoint(),
            "https://gw.internal/llm/v1/chat/completions"
        );

        let refused = RemoteSettings::from_input(&input("http://example.com"), None).unwrap_err();
        assert_eq!(refused.field, "Base URL");
        assert!(refused
            .to_string()
            .starts_with("Base URL: must start with https://"));
        for allowed in [
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
            "http://localhost:11434",
        ] {
            assert!(
                RemoteSettings::from_input(&input(allowed), None).is_ok(),
                "{allowed}"
            );
        }
        for refused in [
            "http://10.0.0.5:8080",
            "http://localhost.example.com",
            "ftp://llm.internal",
            "llm.internal:8443",
            "",
            "https://user:pass@llm.internal",
            "https://llm.internal/?key=1",
            "https://llm.internal/v1",
            "https://llm.internal/v1/chat/completions",
        ] {
            assert_eq!(
                problem_field(RemoteSettings::from_input(&input(refused), None)),
                "Base URL",
                "{refused}"
            );
        }
    }

    #[test]
    fn other_fields_are_checked_and_named() {
        let mut bad = input("https://llm.internal");
        bad.model = "  ".to_owned();
        assert_eq!(
            problem_field(RemoteSettings::from_input(&bad, None)),
            "Model"
        );

        let mut bad = input("https://llm.internal");
        bad.api_key = Some(SecretString::from("has a space".to_owned()));
        let problem = RemoteSettings::from_input(&bad, None).unwrap_err();
        assert_eq!(problem.field, "API key");
        assert!(!problem.to_string().contains("has a space"));

        for (field, value) in [
            ("Connect timeout", "0"),
            ("Connect timeout", "61"),
            ("Request timeout", "601"),
            ("Request timeout", "ten"),
            ("Retries", "11"),
            ("Retries", "-1"),
        ] {
            let mut bad = input("https://llm.internal");
            match field {
                "Connect timeout" => bad.connect_timeout_secs = value.to_owned(),
                "Request timeout" => bad.request_timeout_secs = value.to_owned(),
                _ => bad.retries = value.to_owned(),
            }
            assert_eq!(
                problem_field(RemoteSettings::from_input(&bad, None)),
                field,
                "{value}"
            );
        }

        let mut bad = input("https://llm.internal");
        bad.ca_certificate_pem = "not a certificate".to_owned();
        assert_eq!(
            problem_field(RemoteSettings::from_input(&bad, None)),
            "CA certificate"
        );
        bad.ca_certificate_pem =
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_owned();
        assert_eq!(
            problem_field(RemoteSettings::from_input(&bad, None)),
            "CA certificate"
        );

        let certified =
            rcgen::generate_simple_self_signed(vec!["llm.internal".to_owned()]).unwrap();
        let mut good = input("https://llm.internal");
        good.ca_certificate_pem = certified.cert.pem();
        good.retries = "0".to_owned();
        good.connect_timeout_secs = "3".to_owned();
        let settings = RemoteSettings::from_input(&good, None).unwrap();
        assert!(settings.ca_certificate_pem.is_some());
        assert_eq!(settings.retries, 0);
        assert_eq!(settings.connect_timeout_secs, 3);
    }

    #[test]
    fn the_key_is_kept_replaced_or_cleared_and_never_shown() {
        let mut first = input("https://llm.internal");
        first.api_key = Some(SecretString::from("sk-first-secret".to_owned()));
        let stored = RemoteSettings::from_input(&first, None).unwrap();
        assert_eq!(
            stored.api_key.as_ref().unwrap().expose_secret(),
            "sk-first-secret"
        );
        assert!(!format!("{stored:?}").contains("sk-first-secret"));

        let kept =
            RemoteSettings::from_input(&input("https://llm.internal"), Some(&stored)).unwrap();
        assert_eq!(
            kept.api_key.as_ref().unwrap().expose_secret(),
            "sk-first-secret"
        );

        let mut replaced = input("https://llm.internal");
        replaced.api_key = Some(SecretString::from("sk-second".to_owned()));
        let replaced = RemoteSettings::from_input(&replaced, Some(&stored)).unwrap();
        assert_eq!(
            replaced.api_key.as_ref().unwrap().expose_secret(),
            "sk-second"
        );

        let mut cleared = input("https://llm.internal");
        cleared.clear_key = true;
        assert!(RemoteSettings::from_input(&cleared, Some(&stored))
            .unwrap()
            .api_key
            .is_none());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let policy = RetryPolicy::with_retries(3);
        assert_eq!(policy.backoff(0), Duration::from_millis(500));
        assert_eq!(policy.backoff(1), Duration::from_secs(1));
        assert_eq!(policy.backoff(2), Duration::from_secs(2));
        assert_eq!(policy.backoff(4), Duration::from_secs(8));
        assert_eq!(policy.backoff(5), Duration::from_secs(8));
        assert_eq!(policy.backoff(40), Duration::from_secs(8));
        assert_eq!(policy.delay(1, None, 0.0), Duration::from_millis(500));
        assert_eq!(policy.delay(1, None, 0.5), Duration::from_millis(750));
        assert!(policy.delay(1, None, 0.999) < Duration::from_secs(1));
        assert_eq!(policy.delay(2, None, 7.0), Duration::from_secs(2));
        // The server's Retry-After replaces the backoff, within the cap.
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(3)), 0.9),
            Duration::from_secs(3)
        );
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(3600)), 0.9),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn replies_are_parsed_to_one_label_tolerantly() {
        let sentiment = ["positive", "neutral", "negative"];
        assert_eq!(parse_label("negative", &sentiment), Some(2));
        assert_eq!(parse_label("  **Negative.**\n", &sentiment), Some(2));
        assert_eq!(parse_label("\"Positive\"", &sentiment), Some(0));
        assert_eq!(parse_label("Label: neutral", &sentiment), Some(1));
        assert_eq!(
            parse_label("Neutral\nThe customer only asks a question.", &sentiment),
            Some(1)
        );
        assert_eq!(parse_label("positive or negative", &sentiment), None);
        assert_eq!(parse_label("I cannot tell.", &sentiment), None);
        assert_eq!(parse_label("", &sentiment), None);
        assert_eq!(parse_label("negatively", &sentiment), None);

        let topics = ["Billing", "Card payments", "Card", "Login problems"];
        assert_eq!(parse_label("card payments", &topics), Some(1));
        assert_eq!(parse_label("Topic: Card payments.", &topics), Some(1));
        assert_eq!(parse_label("card", &topics), Some(2));
        assert_eq!(parse_label("login-problems", &topics), Some(3));
        assert_eq!(parse_label("Billing, or Card", &topics), None);

        // Labels that read alike once normalised cannot be told apart.
        assert_eq!(parse_label("a b", &["a-b", "a b"]), None);
    }

    #[test]
    fn logprobs_become_probabilities_over_the_labels() {
        let labels = LabelSet::sentiment();
        let sent = ["positive", "neutral", "negative"];
        let alternatives = vec![
            ("Neg".to_owned(), -0.2_f32),
            (" positive".to_owned(), -2.0),
            ("ne".to_owned(), -0.1), // the start of two labels: speaks for neither
            ("neutral".to_owned(), -3.0),
            ("I".to_owned(), -4.0),
        ];
        let result = classification_from_logprobs(&labels, &sent, 2, &alternatives);
        assert_eq!(result.label, "negative");
        let sum: f32 = result.probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "{result:?}");
        // exp(-0.2) / (exp(-0.2) + exp(-2) + exp(-3)) = 0.8187 / 1.0038 = 0.8156
        assert!((result.confidence - 0.8156).abs() < 1e-3, "{result:?}");
        assert!((result.probabilities[2] - result.confidence).abs() < f32::EPSILON);
        assert!(result.probabilities[0] > result.probabilities[1]);

        // No alternative for the named label: probability 1 for it, as without logprobs.
        let result =
            classification_from_logprobs(&labels, &sent, 1, &[("positive".to_owned(), -0.1)]);
        assert_eq!(result.label, "neutral");
        assert_eq!(result.probabilities, vec![0.0, 1.0, 0.0]);
        assert!((result.confidence - 1.0).abs() < f32::EPSILON);
    }

    #[test]
    fn responses_are_read_and_malformed_ones_refused() {
        let plain = br#"{"choices":[{"message":{"role":"assistant","content":"Negative"}}],"usage":{"prompt_tokens":50,"completion_tokens":2,"total_tokens":52}}"#;
        let reply = parse_chat_response(plain).unwrap();
        assert_eq!(reply.content, "Negative");
        assert!(reply.first_token_alternatives.is_none());
        assert_eq!(reply.total_tokens, 52);

        let with_logprobs = br#"{"choices":[{"message":{"content":" negative"},"logprobs":{"content":[
            {"token":" ","logprob":-0.01,"top_logprobs":[]},
            {"token":"negative","logprob":-0.3,"top_logprobs":[{"token":"negative","logprob":-0.3},{"token":"neutral","logprob":-1.5}]}]}}]}"#;
        let reply = parse_chat_response(with_logprobs).unwrap();
        assert_eq!(
            reply.first_token_alternatives.unwrap(),
            vec![("negative".to_owned(), -0.3), ("neutral".to_owned(), -1.5)]
        );
        assert_eq!(reply.total_tokens, 0);

        assert!(parse_chat_response(b"{\"choices\":[]}").is_none());
        assert!(parse_chat_response(b"<html>gateway</html>").is_none());
        assert!(parse_chat_response(br#"{"choices":[{"message":{"content":null}}]}"#).is_none());
    }

    #[test]
    fn statuses_that_may_pass_are_retried_and_others_are_not() {
        let status = |status| AttemptFailure::Status {
            status,
            retry_after: None,
        };
        assert!(status(429).retriable());
        assert!(status(500).retriable());
        assert!(status(503).retriable());
        assert!(!status(400).retriable());
        assert!(!status(401).retriable());
        assert!(!status(404).retriable());
        assert!(AttemptFailure::Timeout.retriable());
        assert!(AttemptFailure::Connect("refused".to_owned()).retriable());
        assert!(!AttemptFailure::Tls("UnknownIssuer".to_owned()).retriable());
        assert!(!AttemptFailure::Redirected(307).retriable());
        assert!(!AttemptFailure::Malformed.retriable());
    }

    #[test]
    fn generated_text_stops_at_the_first_blank_line() {
        assert_eq!(until_blank_line("one\ntwo\n\nthree"), "one\ntwo");
        assert_eq!(until_blank_line("all of it"), "all of it");
    }
}
