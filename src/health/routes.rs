//! The health settings page `/t/{tenant}/settings/health` (`TenantAccess<ManageHealth>`): each
//! measure on or off with its weight, the bands, and the churn-risk rules with their parameters.
//! Saving is audited by [`super::save_config`]. The account page's health section is built here
//! too ([`account_health`]), from stored snapshots only.

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Form};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;

use crate::auth::guard::policy::ManageHealth;
use crate::auth::guard::{client_address, RequestSession, TenantAccess};
use crate::auth::session::FlashKind;
use crate::context::AppContext;
use crate::error::AppError;
use crate::health::score::round1;
use crate::health::store::HISTORY_SHOWN;
use crate::health::{
    save_config, ChurnRules, HealthConfig, HealthError, HealthStore, Measure, MeasureSetting,
};
use crate::ids::{RecordId, TenantId};
use crate::store::StoreError;
use crate::tenants::Tenant;
use crate::web::pages::{push_flash, render, Chrome, Reply};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/t/{tenant}/settings/health", web::get().to(settings))
        .route("/t/{tenant}/settings/health", web::post().to(save));
}

impl From<HealthError> for AppError {
    fn from(error: HealthError) -> Self {
        match error {
            HealthError::Store(store) => store.into(),
            HealthError::Audit(audit) => audit.into(),
            HealthError::Alert(alert) => alert.into(),
            HealthError::User(user) => user.into(),
            HealthError::Tenant(tenant) => tenant.into(),
            HealthError::Refused(message) => Self::BadRequest(message),
        }
    }
}

pub struct MeasureRow {
    pub name: &'static str,
    pub label: &'static str,
    pub enabled: bool,
    pub weight: u32,
}

#[derive(Template)]
#[template(path = "health/settings.html")]
struct SettingsPage {
    chrome: Chrome,
    action: String,
    measures: Vec<MeasureRow>,
    red_below: u8,
    amber_below: u8,
    rules: ChurnRules,
    error: Option<String>,
}

fn settings_url(tenant: &Tenant) -> String {
    format!("/t/{}/settings/health", tenant.slug)
}

fn settings_page(
    context: &AppContext,
    session: &RequestSession,
    tenant: &Tenant,
    config: &HealthConfig,
    error: Option<String>,
) -> Result<SettingsPage, AppError> {
    let action = settings_url(tenant);
    Ok(SettingsPage {
        chrome: Chrome::for_session(context, session, Some(tenant), "Account health", &action)?,
        measures: Measure::ALL
            .into_iter()
            .map(|measure| {
                let setting = config.setting(measure);
                MeasureRow {
                    name: measure.as_str(),
                    label: measure.label(),
                    enabled: setting.enabled,
                    weight: setting.weight,
                }
            })
            .collect(),
        red_below: config.red_below,
        amber_below: config.amber_below,
        rules: config.rules.clone(),
        action,
        error,
    })
}

async fn settings(
    context: Data<AppContext>,
    access: TenantAccess<ManageHealth>,
) -> Result<HttpResponse, AppError> {
    let page = web::block(move || -> Result<SettingsPage, AppError> {
        let config = HealthStore::new(context.store.clone()).config(access.tenant.id)?;
        settings_page(&context, &access.session, &access.tenant, &config, None)
    })
    .await??;
    render(&page, StatusCode::OK)
}

/// The form: `{measure}_on` (checkbox) and `{measure}_weight` per measure, `red_below`,
/// `amber_below`, and per rule its checkbox and numbers. Unchecked boxes are absent.
fn config_from_form(fields: &[(String, String)]) -> Result<HealthConfig, (HealthConfig, String)> {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.trim())
    };
    let checked = |name: &str| field(name).is_some();
    let mut problem = None;
    let mut number = |name: &str, label: &str, fallback: u32| -> u32 {
        if let Some(Ok(value)) = field(name).map(str::parse::<u32>) {
            value
        } else {
            problem.get_or_insert_with(|| format!("{label}: enter a whole number."));
            fallback
        }
    };
    let defaults = HealthConfig::default();
    let measures = Measure::ALL
        .into_iter()
        .map(|measure| MeasureSetting {
            measure,
            enabled: checked(&format!("{}_on", measure.as_str())),
            weight: number(
                &format!("{}_weight", measure.as_str()),
                &format!("Weight of {}", measure.label()),
                measure.default_weight(),
            ),
        })
        .collect();
    let band = |value: u32, fallback: u8| u8::try_from(value.min(255)).unwrap_or(fallback);
    let red_below = band(number("red_below", "Red below", 40), defaults.red_below);
    let amber_below = band(
        number("amber_below", "Amber below", 70),
        defaults.amber_below,
    );
    let base = ChurnRules::default();
    let rules = ChurnRules {
        score_drop: checked("score_drop"),
        drop_points: number("drop_points", "Score drop points", base.drop_points),
        drop_days: number("drop_days", "Score drop days", base.drop_days),
        band_to_red: checked("band_to_red"),
        negative_event: checked("negative_event"),
        negative_days: number("negative_days", "Negative event days", base.negative_days),
        renewal_while_red: checked("renewal_while_red"),
        renewal_days: number("renewal_days", "Renewal days", base.renewal_days),
        usage_drop: checked("usage_drop"),
        usage_drop_percent: number(
            "usage_drop_percent",
            "Usage drop percent",
            base.usage_drop_percent,
        ),
    };
    let config = HealthConfig {
        measures,
        red_below,
        amber_below,
        rules,
    };
    match problem {
        Some(message) => Err((config, message)),
        None => Ok(config),
    }
}

async fn save(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManageHealth>,
    form: Form<Vec<(String, String)>>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|address| address.to_string());
    let fields = form.into_inner();
    web::block(move || -> Result<Reply, AppError> {
        let TenantAccess {
            session, tenant, ..
        } = access;
        let refused = |config: &HealthConfig, message: String| -> Result<Reply, AppError> {
            let page = settings_page(&context, &session, &tenant, config, Some(message))?;
            Reply::page(&page, StatusCode::UNPROCESSABLE_ENTITY)
        };
        let config = match config_from_form(&fields) {
            Ok(config) => config,
            Err((config, message)) => return refused(&config, message),
        };
        match save_config(&context, &session.user.actor(), client, tenant.id, &config) {
            Ok(()) => {
                push_flash(
                    &context,
                    &session,
                    FlashKind::Success,
                    "Health settings saved. Scores use them from each account's next recompute (run `rapport health recompute` to apply them now).",
                )?;
                Ok(Reply::SeeOther(settings_url(&tenant)))
            }
            Err(HealthError::Refused(message)) => refused(&config, message),
            Err(other) => Err(other.into()),
        }
    })
    .await?
}

/// One measure as the account page shows it.
pub struct MeasureView {
    pub label: &'static str,
    /// The value, or "no data".
    pub value: String,
    /// The weight, or "off".
    pub weight: String,
}

/// One day of the history table.
pub struct HistoryRow {
    pub day: String,
    pub score: String,
    pub band: &'static str,
}

/// The health section of an account page, from stored snapshots.
pub struct HealthView {
    pub score: String,
    pub band: &'static str,
    pub band_class: &'static str,
    pub computed: String,
    pub measures: Vec<MeasureView>,
    pub explanation: Vec<String>,
    /// Newest first.
    pub history: Vec<HistoryRow>,
    /// The history drawn, oldest first, over the tenant's bands; the table above is its text.
    pub history_chart: crate::charts::LineChart,
}

/// The account's health as the account page shows it; `None` before its first recompute.
pub fn account_health(
    context: &AppContext,
    tenant: TenantId,
    account: RecordId,
) -> Result<Option<HealthView>, StoreError> {
    let health = HealthStore::new(context.store.clone());
    let history = health.history(tenant, account, HISTORY_SHOWN)?;
    let Some(latest) = history.last() else {
        return Ok(None);
    };
    let score_text = |score: Option<f64>| {
        score.map_or_else(|| "no score".to_owned(), |s| format!("{:.1}", round1(s)))
    };
    let band_text = |band: Option<crate::health::Band>| band.map_or("no band", |band| band.label());
    Ok(Some(HealthView {
        score: score_text(latest.score),
        band: band_text(latest.band),
        band_class: latest.band.map_or("", |band| band.css_class()),
        computed: crate::web::pages::format_time(latest.computed),
        measures: latest
            .values
            .iter()
            .map(|entry| MeasureView {
                label: entry.measure.label(),
                value: entry
                    .value
                    .map_or_else(|| "no data".to_owned(), |value| format!("{value:.1}")),
                weight: if entry.weight == 0 {
                    "off".to_owned()
                } else {
                    entry.weight.to_string()
                },
            })
            .collect(),
        explanation: latest.explanation.sentences(),
        history_chart: history_chart(&health.config(tenant)?, &history),
        history: history
            .iter()
            .rev()
            .map(|snapshot| HistoryRow {
                day: snapshot.day.to_string(),
                score: score_text(snapshot.score),
                band: band_text(snapshot.band),
            })
            .collect(),
    }))
}

/// The score history as a line chart over the red, amber and green bands of `config`.
fn history_chart(
    config: &HealthConfig,
    history: &[crate::health::Snapshot],
) -> crate::charts::LineChart {
    use crate::charts::{Caption, LineData, Series, Zone};
    let (red, amber) = (f64::from(config.red_below), f64::from(config.amber_below));
    LineData {
        caption: Caption {
            id: "health-history".to_owned(),
            title: "Health score history".to_owned(),
            description: format!(
                "The account's daily health score (0–100) over its last {} snapshots, against the bands: red below {red}, amber below {amber}, green from {amber}.",
                history.len()
            ),
            csv_url: None,
            table_elsewhere: true,
        },
        x_name: "day".to_owned(),
        x_labels: history.iter().map(|snapshot| snapshot.day.to_string()).collect(),
        series: vec![Series {
            name: "score".to_owned(),
            values: history.iter().map(|snapshot| snapshot.score.map(round1)).collect(),
        }],
        decimals: 1,
        range: Some((0.0, 100.0)),
        zones: vec![
            Zone { from: 0.0, to: red, label: format!("red (below {red})"), class: "band-red" },
            Zone { from: red, to: amber, label: format!("amber (below {amber})"), class: "band-amber" },
            Zone { from: amber, to: 100.0, label: "green".to_owned(), class: "band-green" },
        ],
    }
    .geometry()
}
