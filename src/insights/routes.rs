//! The dashboard `/t/{tenant}/dashboard` and its CSVs `/t/{tenant}/dashboard/{chart}.csv`
//! (`TenantAccess<ViewDashboards>`: tenant admins, analysts and QA leads). Both take the same GET
//! filters and build the same [`Dashboard`] from the aggregates, so a CSV holds exactly what its
//! chart draws. The page names agents and accounts, so its read is audited like every data page;
//! a CSV is audited as `dashboard.exported`.

use actix_web::http::{header, StatusCode};
use actix_web::web::{self, Data, Path, Query};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;

use crate::audit::{AuditAction, AuditEvent};
use crate::auth::guard::policy::ViewDashboards;
use crate::auth::guard::{client_address, TenantAccess};
use crate::charts::{BarChart, DistributionChart, LineChart};
use crate::context::AppContext;
use crate::error::AppError;
use crate::insights::dashboard::{self, AtRisk, Dashboard, Filters, CHARTS};
use crate::interactions::Channel;
use crate::web::pages::{audit_personal_read, render, Chrome};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/t/{tenant}/dashboard", web::get().to(show))
        .route("/t/{tenant}/dashboard/{chart}.csv", web::get().to(csv));
}

#[derive(Template)]
#[template(path = "insights/dashboard.html")]
struct DashboardPage {
    chrome: Chrome,
    base: String,
    from: String,
    to: String,
    channel: String,
    owner: String,
    channels: Vec<&'static str>,
    owners: Vec<String>,
    qa_group: String,
    /// (value, label) of each QA group the criterion chart can break down.
    qa_groups: Vec<(String, String)>,
    weekly: bool,
    sentiment: LineChart,
    volume: LineChart,
    topics: BarChart,
    qa_agents: BarChart,
    qa_criteria: BarChart,
    reviews: DistributionChart,
    health: DistributionChart,
    at_risk: Vec<AtRisk>,
}

fn filters_of(query: &[(String, String)]) -> Result<Filters, AppError> {
    Filters::parse(query, chrono::Utc::now().date_naive()).map_err(AppError::BadRequest)
}

async fn show(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ViewDashboards>,
    query: Query<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let client = client_address(&request).map(|address| address.to_string());
    let page = web::block(move || -> Result<DashboardPage, AppError> {
        let filters = filters_of(&query)?;
        let base = format!("/t/{}", access.tenant.slug);
        let built = dashboard::build(&context, access.tenant.id, &filters, &base)?;
        audit_personal_read(
            &context,
            &access.session,
            &access.tenant,
            client,
            "dashboard",
        )?;
        let chrome = Chrome::for_session(
            &context,
            &access.session,
            Some(&access.tenant),
            "Dashboard",
            &format!("{base}/dashboard"),
        )?;
        Ok(page_of(chrome, base, built))
    })
    .await??;
    render(&page, StatusCode::OK)
}

fn page_of(chrome: Chrome, base: String, built: Dashboard) -> DashboardPage {
    let filters = &built.filters;
    DashboardPage {
        chrome,
        base,
        from: filters.from.to_string(),
        to: filters.to.to_string(),
        channel: filters.channel.clone().unwrap_or_default(),
        owner: filters.owner.clone().unwrap_or_default(),
        qa_group: filters.qa_group.clone().unwrap_or_default(),
        channels: Channel::ALL
            .iter()
            .map(|channel| channel.as_str())
            .collect(),
        weekly: filters.weekly(),
        sentiment: built.sentiment.geometry(),
        volume: built.volume.geometry(),
        topics: built.topics.geometry(),
        qa_agents: built.qa_agents.geometry(),
        qa_criteria: built.qa_criteria.geometry(),
        reviews: built.reviews.geometry(),
        health: built.health.geometry(),
        at_risk: built.at_risk,
        owners: built.owners,
        qa_groups: built.qa_groups,
    }
}

async fn csv(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ViewDashboards>,
    path: Path<(String, String)>,
    query: Query<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let (_, chart) = path.into_inner();
    let Some(chart) = CHARTS.iter().copied().find(|known| *known == chart) else {
        return Err(AppError::NotFound);
    };
    let client = client_address(&request).map(|address| address.to_string());
    let body = web::block(move || -> Result<String, AppError> {
        let filters = filters_of(&query)?;
        let base = format!("/t/{}", access.tenant.slug);
        let built = dashboard::build(&context, access.tenant.id, &filters, &base)?;
        let body = built.csv(chart).ok_or(AppError::NotFound)?;
        context.audit(
            AuditEvent::new(
                Some(access.tenant.id),
                access.session.user.actor(),
                AuditAction::DashboardExported,
                format!(
                    "dashboard {chart}.csv: {} row(s), {} to {}",
                    body.lines().count().saturating_sub(1),
                    filters.from,
                    filters.to
                ),
            )
            .client(client),
        )?;
        Ok(body)
    })
    .await??;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{chart}.csv\""),
        ))
        .body(body))
}
