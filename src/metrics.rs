//! Prometheus metrics at `/metrics`, in the `OpenMetrics` text format (which Prometheus scrapes).
//!
//! Off unless `[metrics] enabled = true`; then only a request carrying
//! `Authorization: Bearer <token>`, the token read from `[metrics] token_file`, gets the page
//! (others get 401, and with metrics off the route answers 404 like any unknown path).
//!
//! Labels come from fixed sets only: a route *family* derived from the matched route pattern
//! (never the path, which holds tenant slugs and ids), a status class, a queue state. No label
//! ever carries a tenant's slug, name or content.
//!
//! Series:
//! - `rapport_http_requests_total{family,status_class}` and
//!   `rapport_http_request_duration_seconds{family}` (histogram), recorded by `web::access_log`;
//! - `rapport_analysis_queue_depth{state}` (`queued`, `running`; summed over tenants at scrape);
//! - `rapport_analysis_items_total` (jobs that ended done since the process started);
//! - `rapport_retention_runs_total` (retention runs this server made, any trigger);
//! - `rapport_backup_age_seconds`: since the last backup this server wrote or sent, or the newest
//!   file in the backup directory at start (NaN when there is none);
//! - `rapport_database_size_bytes`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use actix_web::http::header;
use actix_web::web::{self, Data};
use actix_web::{HttpRequest, HttpResponse};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use zeroize::Zeroizing;

use crate::config::MetricsConfig;
use crate::context::AppContext;
use crate::error::AppError;

/// The content type of the `OpenMetrics` text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A token shorter than this is refused: it must not be guessable.
const MIN_TOKEN_CHARS: usize = 32;

/// Request duration buckets, in seconds: from a cached asset to a slow search or import page.
const DURATION_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics token file {path} cannot be read: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("metrics token file {path} is readable by every user (mode {mode:o}); run `chmod 600 {path}` (or 640 with group rapport)")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("metrics token file {path} must hold a token of at least {MIN_TOKEN_CHARS} characters (for example from `openssl rand -hex 32`), found {found}")]
    TooShort { path: PathBuf, found: usize },
    #[error("metrics.enabled = true needs metrics.token_file")]
    NoTokenFile,
}

/// Which part of the application a route belongs to: the one label of request metrics that
/// says where, from a fixed set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteFamily {
    Console,
    Api,
    Auth,
    Admin,
    Static,
    Health,
    Metrics,
    Other,
}

impl RouteFamily {
    /// The family of a matched route pattern (`None`: no route matched).
    pub fn of_pattern(pattern: Option<&str>) -> Self {
        let Some(pattern) = pattern else {
            return Self::Other;
        };
        let under = |prefix: &str| {
            pattern == prefix
                || pattern
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
        };
        if under("/metrics") {
            Self::Metrics
        } else if under("/healthz") || under("/readyz") {
            Self::Health
        } else if under("/static") {
            Self::Static
        } else if under("/api") {
            Self::Api
        } else if under("/login") || under("/logout") || under("/account") {
            Self::Auth
        } else if under("/admin") {
            Self::Admin
        } else if under("/t") || pattern == "/" {
            Self::Console
        } else {
            Self::Other
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Console => "console",
            Self::Api => "api",
            Self::Auth => "auth",
            Self::Admin => "admin",
            Self::Static => "static",
            Self::Health => "health",
            Self::Metrics => "metrics",
            Self::Other => "other",
        }
    }
}

/// `2xx`, `4xx`, …
fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    family: &'static str,
    status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FamilyLabels {
    family: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The registry and its series; one per server, shared by its workers.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<FamilyLabels, Histogram, fn() -> Histogram>,
    queue_depth: Family<StateLabels, Gauge>,
    analysed: Counter,
    retention_runs: Counter,
    database_size: Gauge,
    backup_age: Gauge<f64, AtomicU64>,
    /// `None`: the endpoint is off.
    token: Option<Zeroizing<String>>,
    /// Scrapes update the gauges and the analysed counter, then encode: one at a time.
    scrape: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("enabled", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// Builds the registry; with metrics enabled, reads the token file (errors name the file).
    pub fn from_config(config: &MetricsConfig) -> Result<Self, MetricsError> {
        let token = if config.enabled {
            let path = config
                .token_file
                .as_ref()
                .ok_or(MetricsError::NoTokenFile)?;
            Some(read_token(path)?)
        } else {
            None
        };
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "rapport_http_requests",
            "HTTP requests by route family and status class",
            requests.clone(),
        );
        let durations = Family::<FamilyLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        registry.register(
            "rapport_http_request_duration_seconds",
            "HTTP request duration in seconds by route family",
            durations.clone(),
        );
        let queue_depth = Family::<StateLabels, Gauge>::default();
        registry.register(
            "rapport_analysis_queue_depth",
            "Analysis jobs waiting (queued) or in progress (running), all tenants",
            queue_depth.clone(),
        );
        let analysed = Counter::default();
        registry.register(
            "rapport_analysis_items",
            "Analysis jobs completed since the server started (rate() gives throughput)",
            analysed.clone(),
        );
        let retention_runs = Counter::<u64>::default();
        registry.register(
            "rapport_retention_runs",
            "Retention runs (scheduled, console) since the server started, all tenants",
            retention_runs.clone(),
        );
        let backup_age = Gauge::<f64, AtomicU64>::default();
        backup_age.set(f64::NAN);
        registry.register(
            "rapport_backup_age_seconds",
            "Seconds since the last successful backup (NaN: none since the start, and none in the backup directory)",
            backup_age.clone(),
        );
        let database_size = Gauge::default();
        registry.register(
            "rapport_database_size_bytes",
            "Bytes the database occupies on disk",
            database_size.clone(),
        );
        // The families every deployment has, present from the first scrape.
        for family in [RouteFamily::Console, RouteFamily::Api, RouteFamily::Metrics] {
            drop(durations.get_or_create(&FamilyLabels {
                family: family.as_str(),
            }));
        }
        for state in ["queued", "running"] {
            drop(queue_depth.get_or_create(&StateLabels { state }));
        }
        Ok(Self {
            registry,
            requests,
            durations,
            queue_depth,
            analysed,
            retention_runs,
            database_size,
            backup_age,
            token,
            scrape: Mutex::new(()),
        })
    }

    pub fn enabled(&self) -> bool {
        self.token.is_some()
    }

    /// Counts one answered request.
    pub fn observe_request(&self, pattern: Option<&str>, status: u16, seconds: f64) {
        let family = RouteFamily::of_pattern(pattern).as_str();
        self.requests
            .get_or_create(&RequestLabels {
                family,
                status_class: status_class(status),
            })
            .inc();
        self.durations
            .get_or_create(&FamilyLabels { family })
            .observe(seconds);
    }

    /// Whether the request's `Authorization` header carries the token (constant-time).
    fn authorised(&self, request: &HttpRequest) -> bool {
        let Some(token) = &self.token else {
            return false;
        };
        request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .is_some_and(|presented| {
                crate::crypto::constant_time_eq(presented.trim().as_bytes(), token.as_bytes())
            })
    }

    /// Reads the store-backed values and encodes every series.
    fn render(&self, context: &AppContext) -> Result<String, AppError> {
        let _one_at_a_time = self
            .scrape
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut queued = 0u64;
        let mut running = 0u64;
        for tenant in context.tenants.list()? {
            let counts = context.analysis.counts(tenant.id)?;
            queued += counts.queued;
            running += counts.running;
        }
        self.queue_depth
            .get_or_create(&StateLabels { state: "queued" })
            .set(i64::try_from(queued).unwrap_or(i64::MAX));
        self.queue_depth
            .get_or_create(&StateLabels { state: "running" })
            .set(i64::try_from(running).unwrap_or(i64::MAX));
        let analysed = context.analysis.completed_total();
        self.analysed
            .inc_by(analysed.saturating_sub(self.analysed.get()));
        self.backup_age
            .set(context.backups.age_seconds().unwrap_or(f64::NAN));
        let runs = context
            .retention_runs
            .load(std::sync::atomic::Ordering::Relaxed);
        self.retention_runs
            .inc_by(runs.saturating_sub(self.retention_runs.get()));
        let size = context.store.size_on_disk()?;
        self.database_size
            .set(i64::try_from(size).unwrap_or(i64::MAX));
        let mut body = String::new();
        prometheus_client::encoding::text::encode(&mut body, &self.registry)
            .map_err(|_| AppError::Internal("metrics could not be encoded".to_owned()))?;
        Ok(body)
    }
}

fn read_token(path: &Path) -> Result<Zeroizing<String>, MetricsError> {
    let unreadable = |source| MetricsError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let mode = std::fs::metadata(path)
        .map_err(unreadable)?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o007 != 0 {
        return Err(MetricsError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(unreadable)?);
    let token = Zeroizing::new(text.trim().to_owned());
    let found = token.chars().count();
    if found < MIN_TOKEN_CHARS {
        return Err(MetricsError::TooShort {
            path: path.to_path_buf(),
            found,
        });
    }
    Ok(token)
}

pub fn routes(config: &mut web::ServiceConfig) {
    config.route("/metrics", web::get().to(metrics_page));
}

/// `GET /metrics`: 404 when off, 401 without the bearer token, else the exposition.
async fn metrics_page(
    request: HttpRequest,
    metrics: Option<Data<Metrics>>,
    context: Data<AppContext>,
) -> Result<HttpResponse, AppError> {
    let Some(metrics) = metrics.filter(|metrics| metrics.enabled()) else {
        return Err(AppError::NotFound);
    };
    if !metrics.authorised(&request) {
        return Ok(HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"rapport metrics\""))
            .content_type("text/plain; charset=utf-8")
            .body("a bearer token is required\n"));
    }
    let body = web::block(move || metrics.render(&context)).await??;
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(body))
}

/// For tests and diagnostics: the exposition's sample lines of `name` (with labels).
pub fn samples<'a>(exposition: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    exposition.lines().filter(move |line| {
        line.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_families_come_from_patterns_not_paths() {
        let family = |pattern: &str| RouteFamily::of_pattern(Some(pattern)).as_str();
        assert_eq!(family("/t/{tenant}/interactions/{id}"), "console");
        assert_eq!(family("/"), "console");
        assert_eq!(family("/api/v1/interactions/{id}"), "api");
        assert_eq!(family("/login/second-factor"), "auth");
        assert_eq!(family("/account/password"), "auth");
        assert_eq!(family("/admin/tenants"), "admin");
        assert_eq!(family("/static/{version}/{name}"), "static");
        assert_eq!(family("/healthz"), "health");
        assert_eq!(family("/metrics"), "metrics");
        assert_eq!(family("/tenants-lookalike"), "other");
        assert_eq!(RouteFamily::of_pattern(None).as_str(), "other");
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(200), "2xx");
        assert_eq!(status_class(303), "3xx");
        assert_eq!(status_class(404), "4xx");
        assert_eq!(status_class(507), "5xx");
    }

    #[test]
    fn token_file_must_be_private_and_long() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "short\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            read_token(&path),
            Err(MetricsError::TooShort { found: 5, .. })
        ));
        std::fs::write(&path, format!("{}\n", "a".repeat(40))).unwrap();
        assert_eq!(read_token(&path).unwrap().as_str(), "a".repeat(40));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = read_token(&path).unwrap_err().to_string();
        assert!(error.contains("chmod 600"), "{error}");
    }

    #[test]
    fn every_named_series_is_in_the_exposition() {
        let metrics = Metrics::from_config(&MetricsConfig::default()).unwrap();
        metrics.observe_request(Some("/t/{tenant}/search"), 200, 0.02);
        let mut body = String::new();
        prometheus_client::encoding::text::encode(&mut body, &metrics.registry).unwrap();
        for name in [
            "rapport_http_requests_total",
            "rapport_http_request_duration_seconds_bucket",
            "rapport_analysis_queue_depth",
            "rapport_analysis_items_total",
            "rapport_retention_runs_total",
            "rapport_backup_age_seconds",
            "rapport_database_size_bytes",
        ] {
            assert!(
                samples(&body, name).next().is_some(),
                "{name} missing:\n{body}"
            );
        }
        assert!(
            body.contains("rapport_http_requests_total{family=\"console\",status_class=\"2xx\"} 1")
        );
        assert!(body.contains("rapport_backup_age_seconds NaN"), "{body}");
    }
}
