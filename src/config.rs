//! The one configuration struct, loaded from TOML with environment overrides and validated before
//! the server binds its port.
//!
//! Environment variables override file keys as `RAPPORT_<SECTION>__<KEY>` (for example
//! `RAPPORT_SERVER__LISTEN=0.0.0.0:8443`). Unknown keys are errors, so a misspelt option never
//! silently falls back to its default. [`template`] renders the commented file that `rapport init`
//! writes; `packaging/rapport.toml` is that template for the packaged paths, and a test keeps the
//! two identical.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Where the configuration lives unless `--config` or `RAPPORT_CONFIG` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/rapport/rapport.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist (create one with `rapport init`)")]
    Missing(PathBuf),
    #[error("configuration file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub inference: InferenceConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub integrations: IntegrationsConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    #[serde(default)]
    pub backup: BackupConfig,
    /// The operator's SMTP relay for feedback requests; absent means Rapport sends no mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SmtpConfig>,
}

/// How the SMTP relay's connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which the relay must offer (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS at all: only for a relay on this machine (a loopback host).
    None,
}

impl SmtpTls {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starttls => "starttls",
            Self::Tls => "tls",
            Self::None => "none",
        }
    }
}

/// The SMTP relay (`[smtp]`). The password is never in this file: `password_file` names a file
/// that holds it, like the metrics token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    #[serde(default = "default_smtp_tls")]
    pub tls: SmtpTls,
    /// The sender, e.g. `"Acme support <feedback@acme.example>"`.
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// A file holding the password (mode 0600 or 0640); needed with `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Seconds one SMTP command may take before the send counts as failed.
    #[serde(default = "default_smtp_timeout_seconds")]
    pub timeout_seconds: u64,
}

fn default_smtp_port() -> u16 {
    587
}

fn default_smtp_tls() -> SmtpTls {
    SmtpTls::Starttls
}

fn default_smtp_timeout_seconds() -> u64 {
    30
}

impl SmtpConfig {
    /// Whether `host` names this machine: the only place a relay without TLS is accepted.
    pub fn host_is_loopback(&self) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|address| address.is_loopback())
    }

    /// Problems with the table's values, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.host.trim().is_empty() || self.host.chars().any(char::is_whitespace) {
            problems.push("smtp.host must be a host name or address".to_owned());
        }
        if self.port == 0 {
            problems.push("smtp.port must be from 1 to 65535".to_owned());
        }
        if self.tls == SmtpTls::None && !self.host_is_loopback() {
            problems.push(
                "smtp.tls = \"none\" is allowed only for a relay on this machine (localhost, 127.0.0.1 or ::1); use \"starttls\" or \"tls\""
                    .to_owned(),
            );
        }
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            problems.push(format!(
                "smtp.from {:?} is not an e-mail address (such as \"Acme <feedback@acme.example>\")",
                self.from
            ));
        }
        match (&self.username, &self.password_file) {
            (Some(_), None) => problems.push(
                "smtp.username needs smtp.password_file, a file holding the password".to_owned(),
            ),
            (None, Some(_)) => {
                problems.push("smtp.password_file is set but smtp.username is not".to_owned());
            }
            _ => {}
        }
        if !(1..=600).contains(&self.timeout_seconds) {
            problems.push("smtp.timeout_seconds must be from 1 to 600".to_owned());
        }
        problems
    }
}

/// The Prometheus endpoint `/metrics`: off unless enabled, and then only for a scraper that
/// presents the bearer token held in `token_file`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// A file holding the bearer token (at least 32 characters; mode 0600 or 0640).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

/// The retention sweep (`[retention]`): when the scheduler runs it for every tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// A cron expression in UTC: six fields with seconds first, or the classic five.
    pub schedule: String,
    /// How long the audit log keeps the appliance's own entries (and those of purged tenants),
    /// in days: at least [`crate::retention::AUDIT_LOG_MIN_DAYS`]. A tenant's entries follow the
    /// tenant's audit-log period.
    pub audit_log_days: u32,
}

/// Nightly at 02:30 UTC.
pub const DEFAULT_RETENTION_SCHEDULE: &str = "0 30 2 * * *";

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            schedule: DEFAULT_RETENTION_SCHEDULE.to_owned(),
            audit_log_days: crate::retention::AUDIT_LOG_MIN_DAYS,
        }
    }
}

/// Scheduled backups (`[backup]`): when, where, and how many are kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// A cron expression in UTC; empty turns scheduled backups off.
    pub schedule: String,
    /// Where scheduled backups are written; by default `<data_dir>/backups`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// How many scheduled backups are kept (the oldest beyond are deleted after a success).
    pub keep: u32,
}

/// Nightly at 03:15 UTC, after retention's sweep.
pub const DEFAULT_BACKUP_SCHEDULE: &str = "0 15 3 * * *";

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            schedule: DEFAULT_BACKUP_SCHEDULE.to_owned(),
            dir: None,
            keep: 7,
        }
    }
}

/// Outbound integrations (the CRM webhook): where tenant admins' URLs may lead.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntegrationsConfig {
    /// Lets outbound webhooks reach loopback, private, link-local and other internal addresses
    /// (and plain `http://` to this machine). Off: such an address is refused when it is sent to.
    pub allow_private_networks: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Absent means plain HTTP, allowed only for set-ups created with `--no-tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// HTTP worker threads; 0 means one per CPU core.
    #[serde(default)]
    pub workers: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    pub master_key_file: PathBuf,
    #[serde(default = "default_cache_capacity_mib")]
    pub cache_capacity_mib: u64,
    #[serde(default = "default_min_free_disk_mib")]
    pub min_free_disk_mib: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub session_idle_minutes: u32,
    pub session_absolute_hours: u32,
    pub password_hash_concurrency: usize,
    pub lockout_threshold: u32,
    pub lockout_base_seconds: u64,
    pub lockout_max_minutes: u64,
    pub address_lockout_threshold: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

/// The local inference engine (llama.cpp) and where model files are found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    /// CPU threads of the one inference thread's decode calls.
    pub threads: u32,
    /// Tokens of KV cache shared by the prompt prefix and every sequence of a batch.
    pub context_size: u32,
    /// Texts (sequences) decoded together in one batch.
    pub batch_width: u32,
    /// The model cache `scripts/fetch-model.sh` fills; unset means `$RAPPORT_MODEL_CACHE`, else
    /// `$HOME/.cache/rapport/models`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models_cache_dir: Option<PathBuf>,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            threads: 2,
            context_size: 4096,
            batch_width: 8,
            models_cache_dir: None,
        }
    }
}

impl InferenceConfig {
    /// The model cache directory, resolved as `scripts/fetch-model.sh` resolves it.
    pub fn models_cache_dir(&self) -> PathBuf {
        if let Some(directory) = &self.models_cache_dir {
            return directory.clone();
        }
        if let Some(directory) = std::env::var_os("RAPPORT_MODEL_CACHE").filter(|v| !v.is_empty()) {
            return PathBuf::from(directory);
        }
        std::env::var_os("HOME")
            .map_or_else(|| PathBuf::from("/var/cache/rapport"), PathBuf::from)
            .join(".cache/rapport/models")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

fn default_cache_capacity_mib() -> u64 {
    128
}

fn default_min_free_disk_mib() -> u64 {
    256
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session_idle_minutes: 30,
            session_absolute_hours: 12,
            password_hash_concurrency: 1,
            lockout_threshold: 5,
            lockout_base_seconds: 30,
            lockout_max_minutes: 15,
            address_lockout_threshold: 20,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

impl Config {
    /// Reads `path`, applies `RAPPORT_<SECTION>__<KEY>` overrides and checks the values' shapes.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        if !path.is_file() {
            return Err(ConfigError::Missing(path.to_path_buf()));
        }
        let config: Config = Figment::new()
            .merge(Toml::file_exact(path))
            // Only sectioned names are keys; RAPPORT_CONFIG names the file itself.
            .merge(
                Env::prefixed("RAPPORT_")
                    .filter(|key| key.as_str().contains("__"))
                    .split("__"),
            )
            .extract()
            .map_err(|error| ConfigError::Invalid {
                path: path.to_path_buf(),
                message: describe_figment_error(&error),
            })?;
        let problems = config.value_problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                message: problems.join("; "),
            })
        }
    }

    /// Problems with values that parse but cannot work; files are checked by `rapport check`.
    pub fn value_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.storage.cache_capacity_mib == 0 {
            problems.push("storage.cache_capacity_mib must be at least 1".to_owned());
        }
        if self.auth.session_idle_minutes == 0 || self.auth.session_absolute_hours == 0 {
            problems.push("auth session timeouts must be positive".to_owned());
        }
        if self.auth.password_hash_concurrency == 0 {
            problems.push("auth.password_hash_concurrency must be at least 1".to_owned());
        }
        if self.auth.lockout_threshold == 0 || self.auth.address_lockout_threshold == 0 {
            problems.push("auth lock-out thresholds must be at least 1".to_owned());
        }
        if self.inference.threads == 0 || self.inference.batch_width == 0 {
            problems
                .push("inference.threads and inference.batch_width must be at least 1".to_owned());
        }
        if self.inference.context_size < 512 {
            problems.push("inference.context_size must be at least 512 tokens".to_owned());
        }
        if self.metrics.enabled && self.metrics.token_file.is_none() {
            problems.push(
                "metrics.enabled = true needs metrics.token_file, a file holding the bearer token that scrapers present"
                    .to_owned(),
            );
        }
        if let Some(smtp) = &self.smtp {
            problems.extend(smtp.problems());
        }
        if let Err(message) = crate::scheduler::Schedule::parse(&self.retention.schedule) {
            problems.push(format!("retention.schedule: {message}"));
        }
        if self.retention.audit_log_days < crate::retention::AUDIT_LOG_MIN_DAYS {
            problems.push(format!(
                "retention.audit_log_days: the audit log is kept at least {} days; {} is too short",
                crate::retention::AUDIT_LOG_MIN_DAYS,
                self.retention.audit_log_days
            ));
        }
        if !self.backup.schedule.trim().is_empty() {
            if let Err(message) = crate::scheduler::Schedule::parse(&self.backup.schedule) {
                problems.push(format!("backup.schedule: {message}"));
            }
        }
        if self.backup.keep == 0 {
            problems.push("backup.keep must be at least 1".to_owned());
        }
        if self
            .log
            .level
            .parse::<tracing_subscriber::filter::EnvFilter>()
            .is_err()
        {
            problems.push(format!(
                "log.level {:?} is not a valid filter",
                self.log.level
            ));
        }
        problems
    }

    pub fn cache_capacity_bytes(&self) -> u64 {
        self.storage.cache_capacity_mib.saturating_mul(1024 * 1024)
    }

    pub fn min_free_disk_bytes(&self) -> u64 {
        self.storage.min_free_disk_mib.saturating_mul(1024 * 1024)
    }
}

fn describe_figment_error(error: &figment::Error) -> String {
    let mut text = String::new();
    for (index, problem) in error.clone().into_iter().enumerate() {
        if index > 0 {
            text.push_str("; ");
        }
        let _ = write!(text, "{}", problem.kind);
        if !problem.path.is_empty() {
            let _ = write!(text, " (key `{}`)", problem.path.join("."));
        }
    }
    text
}

/// The paths and choices that `rapport init` (or the packaging) fills into the template.
#[derive(Clone, Debug)]
pub struct TemplateValues<'a> {
    pub listen: SocketAddr,
    pub data_dir: &'a Path,
    pub master_key_file: &'a Path,
    pub tls: Option<(&'a Path, &'a Path)>,
}

/// The commented configuration file, every key shown with its default.
pub fn template(values: &TemplateValues<'_>) -> String {
    let tls_block = match values.tls {
        Some((cert, key)) => format!(
            "[server.tls]\ncert = {}\nkey = {}\n",
            toml_string(cert),
            toml_string(key)
        ),
        None => "# [server.tls]\n# cert = \"/etc/rapport/tls/cert.pem\"\n# key = \"/etc/rapport/tls/key.pem\"\n"
            .to_owned(),
    };
    let auth = AuthConfig::default();
    let inference = InferenceConfig::default();
    format!(
        r#"# Rapport configuration.
#
# Every key is shown with its default value. Environment variables override keys as
# RAPPORT_<SECTION>__<KEY>, for example RAPPORT_SERVER__LISTEN=0.0.0.0:8443.
# Unknown keys are refused, so a typo is reported instead of ignored.

[server]
# Address and port of the web console and the API.
listen = "{listen}"
# HTTP worker threads; 0 means one per CPU core.
workers = 0

# TLS certificate chain and private key, PEM. Only TLS 1.2 and 1.3 are offered.
# Without this table Rapport serves plain HTTP and warns at start: use that only behind a
# TLS-terminating proxy on the same machine.
{tls_block}
[storage]
# Database, audit log and uploads. Created with mode 0700; keep it on a local disk.
data_dir = {data_dir}
# 32-byte master key that wraps every tenant key. Mode 0600. Under systemd the credential
# $CREDENTIALS_DIRECTORY/master-key is used instead when present.
master_key_file = {key}
# Upper bound of the database page cache, in MiB.
cache_capacity_mib = {cache}
# Writes are refused with a clear error when less than this much disk space is free, in MiB.
min_free_disk_mib = {reserve}

[auth]
# A session ends after this many minutes without a request...
session_idle_minutes = {idle}
# ...and after this many hours in any case.
session_absolute_hours = {absolute}
# Password hashes computed at once (argon2id, 19 MiB each); hashing competes with analysis for CPU.
password_hash_concurrency = {concurrency}
# Failed logins on one account before it is locked for a while; each further failure doubles the
# lock, from lockout_base_seconds up to lockout_max_minutes, so no account is locked for good.
lockout_threshold = {threshold}
lockout_base_seconds = {base}
lockout_max_minutes = {max}
# Failed logins from one client address before that address is slowed down the same way.
address_lockout_threshold = {address_threshold}

[log]
# Log filter, e.g. "info" or "rapport=debug,actix_web=info". Logs never contain tenant content.
level = "info"
# "text" for people, "json" for log collectors.
format = "text"

[inference]
# CPU threads used by the one inference thread (llama.cpp). Several decoding threads on a small
# machine only compete, so this is the whole budget for analysis.
threads = {threads}
# Tokens of KV cache, shared by the cached prompt prefix and every text of a batch.
context_size = {context_size}
# Texts decoded together in one batch; `rapport bench analysis` shows which width is fastest here.
batch_width = {batch_width}
# Model files are looked for in <data_dir>/models, then /usr/share/rapport/models, then this
# cache (filled by scripts/fetch-model.sh). Unset, it is $RAPPORT_MODEL_CACHE or
# $HOME/.cache/rapport/models.
# models_cache_dir = "/var/cache/rapport/models"

[metrics]
# Serve Prometheus metrics at /metrics (request counts and latencies by route family, analysis
# queue, database size; never tenant names or content). Off: /metrics answers 404.
enabled = false
# Scrapers must send "Authorization: Bearer <token>", the token being this file's contents (at
# least 32 characters, e.g. from `openssl rand -hex 32`; mode 0600 or 0640). Needed when enabled.
# token_file = "/etc/rapport/metrics-token"

[integrations]
# Let tenant admins' outbound webhooks (the CRM hand-off) reach loopback, private (10/8,
# 172.16/12, 192.168/16, fc00::/7), link-local and other internal addresses, and plain http:// to
# this machine. Off: the address a host name resolves to is checked when a delivery is sent, and
# an internal one is refused without being contacted.
allow_private_networks = false
"#,
        listen = values.listen,
        data_dir = toml_string(values.data_dir),
        key = toml_string(values.master_key_file),
        cache = default_cache_capacity_mib(),
        reserve = default_min_free_disk_mib(),
        idle = auth.session_idle_minutes,
        absolute = auth.session_absolute_hours,
        concurrency = auth.password_hash_concurrency,
        threshold = auth.lockout_threshold,
        base = auth.lockout_base_seconds,
        max = auth.lockout_max_minutes,
        address_threshold = auth.address_lockout_threshold,
        threads = inference.threads,
        context_size = inference.context_size,
        batch_width = inference.batch_width,
    ) + RETENTION_TEMPLATE
        + BACKUP_TEMPLATE
        + SMTP_TEMPLATE
}

/// The template's `[retention]` part (its schedule is [`DEFAULT_RETENTION_SCHEDULE`]).
const RETENTION_TEMPLATE: &str = r#"
[retention]
# When the scheduler runs every tenant's retention sweep: a cron expression in UTC, six fields
# with seconds first (seconds minutes hours day-of-month month day-of-week), or the classic five.
# The periods themselves are set per tenant by its privacy officer (Retention page).
schedule = "0 30 2 * * *"
# After the sweeps, the audit log is pruned: a tenant's entries after the tenant's audit-log
# period, the appliance's own entries (and a purged tenant's) after this many days (at least 365).
audit_log_days = 365
"#;

/// The template's `[backup]` part (its schedule is [`DEFAULT_BACKUP_SCHEDULE`]).
const BACKUP_TEMPLATE: &str = r#"
[backup]
# When the scheduler writes a backup (a cron expression in UTC, like retention's); "" turns
# scheduled backups off. `rapport backup --out FILE` takes one at any time, server running or not.
schedule = "0 15 3 * * *"
# Where scheduled backups go (default: the data directory's backups/). Backups on the same disk
# protect against mistakes, not against losing the disk: copy them elsewhere too.
# dir = "/var/backups/rapport"
# How many scheduled backups are kept; the oldest beyond this are deleted after each success.
keep = 7
"#;

/// The template's `[smtp]` part: commented out, since no relay is the default.
const SMTP_TEMPLATE: &str = r#"
# The SMTP relay that sends feedback requests (Feedback page). Without this table Rapport sends no
# mail: requests can only be exported as CSV. Uncomment and fill it in to allow sending.
# [smtp]
# host = "smtp.example.internal"
# port = 587
# "starttls" (the relay must offer STARTTLS), "tls" (TLS from the start, usually port 465), or
# "none", which is accepted only for a relay on this machine (localhost, 127.0.0.1, ::1).
# tls = "starttls"
# from = "Acme customer care <feedback@acme.example>"
# Sign-in at the relay, if it wants one. The password is read from password_file (mode 0600 or
# 0640), never written here.
# username = "rapport"
# password_file = "/etc/rapport/smtp-password"
# Seconds one SMTP exchange may take before that message counts as failed.
# timeout_seconds = 30
"#;

fn toml_string(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

/// The template filled with the paths the packages install, as shipped in `packaging/rapport.toml`.
pub fn packaged_template() -> String {
    template(&TemplateValues {
        listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
        data_dir: Path::new("/var/lib/rapport"),
        master_key_file: Path::new("/etc/rapport/master.key"),
        tls: Some((
            Path::new("/etc/rapport/tls/cert.pem"),
            Path::new("/etc/rapport/tls/key.pem"),
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packaged_example_is_the_template_and_parses() {
        let shipped = include_str!("../packaging/rapport.toml");
        assert_eq!(
            shipped,
            packaged_template(),
            "packaging/rapport.toml drifted from config::template; regenerate it"
        );
        let parsed: Config = toml::from_str(shipped).unwrap();
        assert_eq!(parsed.storage.cache_capacity_mib, 128);
        assert!(parsed.server.tls.is_some());
        assert!(parsed.value_problems().is_empty());
    }

    #[test]
    fn the_retention_schedule_defaults_to_nightly_and_a_bad_one_is_refused_by_key() {
        assert!(RETENTION_TEMPLATE.contains(DEFAULT_RETENTION_SCHEDULE));
        assert!(BACKUP_TEMPLATE.contains(DEFAULT_BACKUP_SCHEDULE));
        let mut config: Config = toml::from_str(&packaged_template()).unwrap();
        assert_eq!(config.retention.schedule, DEFAULT_RETENTION_SCHEDULE);
        assert!(config.value_problems().is_empty());
        config.retention.schedule = "nightly".to_owned();
        let problems = config.value_problems();
        assert!(
            problems
                .iter()
                .any(|problem| problem.starts_with("retention.schedule:")),
            "{problems:?}"
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rapport.toml");
        let text = packaged_template().replace("workers = 0", "workers = 0\nwokers = 2");
        std::fs::write(&path, text).unwrap();
        let error = Config::load(&path).unwrap_err().to_string();
        assert!(error.contains("wokers"), "{error}");
        assert!(error.contains("rapport.toml"), "{error}");
    }

    #[test]
    fn enabled_metrics_without_a_token_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rapport.toml");
        let text = packaged_template().replace("enabled = false", "enabled = true");
        std::fs::write(&path, text).unwrap();
        let error = Config::load(&path).unwrap_err().to_string();
        assert!(error.contains("metrics.token_file"), "{error}");
        let text = packaged_template().replace(
            "enabled = false",
            "enabled = true\ntoken_file = \"/etc/rapport/metrics-token\"",
        );
        std::fs::write(&path, text).unwrap();
        let config = Config::load(&path).unwrap();
        assert!(config.metrics.enabled);
        let text = packaged_template().replace("enabled = false", "enabled = \"yes\"");
        std::fs::write(&path, text).unwrap();
        let error = Config::load(&path).unwrap_err().to_string();
        assert!(error.contains("metrics.enabled"), "{error}");
    }

    fn with_smtp(table: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rapport.toml");
        std::fs::write(&path, format!("{}\n[smtp]\n{table}", packaged_template())).unwrap();
        Config::load(&path).map_err(|error| error.to_string())
    }

    #[test]
    fn smtp_is_off_unless_configured_and_checked_when_it_is() {
        let shipped: Config = toml::from_str(&packaged_template()).unwrap();
        assert!(shipped.smtp.is_none());
        let config =
            with_smtp("host = \"mail.acme.example\"\nfrom = \"Acme <fb@acme.example>\"\n").unwrap();
        let smtp = config.smtp.unwrap();
        assert_eq!(
            (smtp.port, smtp.tls, smtp.timeout_seconds),
            (587, SmtpTls::Starttls, 30)
        );
        // No TLS only on loopback.
        let error =
            with_smtp("host = \"mail.acme.example\"\ntls = \"none\"\nfrom = \"fb@acme.example\"\n")
                .unwrap_err();
        assert!(error.contains("smtp.tls"), "{error}");
        for host in ["127.0.0.1", "localhost", "::1"] {
            let config = with_smtp(&format!(
                "host = \"{host}\"\nport = 2525\ntls = \"none\"\nfrom = \"fb@acme.example\"\n"
            ))
            .unwrap();
            assert!(config.smtp.unwrap().host_is_loopback(), "{host}");
        }
        // The password is never inline; a username needs its file; the sender must parse.
        let error = with_smtp(
            "host = \"m.example\"\nfrom = \"fb@acme.example\"\nusername = \"u\"\npassword = \"hunter2\"\n",
        )
        .unwrap_err();
        assert!(error.contains("password"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        let error =
            with_smtp("host = \"m.example\"\nfrom = \"fb@acme.example\"\nusername = \"u\"\n")
                .unwrap_err();
        assert!(error.contains("smtp.password_file"), "{error}");
        let error = with_smtp("host = \"m.example\"\nfrom = \"not an address\"\n").unwrap_err();
        assert!(error.contains("smtp.from"), "{error}");
        let error = with_smtp("host = \"m.example\"\nfrom = \"fb@acme.example\"\ntls = \"ssl\"\n")
            .unwrap_err();
        assert!(error.contains("smtp.tls"), "{error}");
        let error =
            with_smtp("host = \"m.example\"\nfrom = \"fb@acme.example\"\ntimeout_seconds = 0\n")
                .unwrap_err();
        assert!(error.contains("smtp.timeout_seconds"), "{error}");
    }

    #[test]
    fn template_without_tls_parses_to_plain_http() {
        let text = template(&TemplateValues {
            listen: "127.0.0.1:8080".parse().unwrap(),
            data_dir: Path::new("/tmp/x"),
            master_key_file: Path::new("/tmp/x.key"),
            tls: None,
        });
        let parsed: Config = toml::from_str(&text).unwrap();
        assert!(parsed.server.tls.is_none());
        assert_eq!(parsed.server.listen.port(), 8080);
    }
}
