//! The privacy officer's retention pages (`TenantAccess<ManageRetention>`, nobody else):
//!
//! - `/t/{tenant}/privacy/retention`: the policy form (a period per category), Preview (what a
//!   run now would delete and what holds keep, counts only), Run now (a sweep on a thread of its
//!   own; its report appears when it ends) and the latest reports;
//! - `/t/{tenant}/privacy/holds`: the legal holds (a read of personal data when a hold names a
//!   subject, audited), a form to place one, and Release.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Form};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use chrono::Utc;
use serde::Deserialize;

use crate::auth::guard::policy::ManageRetention;
use crate::auth::guard::{client_address, RequestSession, TenantAccess};
use crate::auth::session::FlashKind;
use crate::context::AppContext;
use crate::error::AppError;
use crate::ids::HoldId;
use crate::retention::holds::{self, NewHold};
use crate::retention::{self, parse_keep, Category, Policies, RetentionError, RunReport, Trigger};
use crate::tenants::Tenant;
use crate::web::pages::{audit_personal_read, format_time, push_flash, render, Chrome, Reply};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/t/{tenant}/privacy/retention", web::get().to(show))
        .route("/t/{tenant}/privacy/retention", web::post().to(save))
        .route(
            "/t/{tenant}/privacy/retention/preview",
            web::post().to(preview),
        )
        .route("/t/{tenant}/privacy/retention/run", web::post().to(run_now))
        .route("/t/{tenant}/privacy/holds", web::get().to(show_holds))
        .route("/t/{tenant}/privacy/holds", web::post().to(add_hold))
        .route(
            "/t/{tenant}/privacy/holds/{id}/release",
            web::post().to(release_hold),
        );
}

pub struct PolicyRow {
    pub name: &'static str,
    pub label: &'static str,
    pub value: String,
    pub hint: String,
}

pub struct CountRow {
    pub label: &'static str,
    pub keep: String,
    pub deleted: u64,
    pub held: u64,
    pub note: String,
}

pub struct ReportView {
    pub started: String,
    pub finished: String,
    pub trigger: &'static str,
    pub actor: String,
    pub deleted: u64,
    pub held: u64,
    pub errors: String,
    pub rows: Vec<CountRow>,
}

impl ReportView {
    fn of(report: &RunReport) -> Self {
        Self {
            started: format_time(report.started),
            finished: report.finished.map(format_time).unwrap_or_default(),
            trigger: report.trigger.as_str(),
            actor: report.actor.clone(),
            deleted: report.total_deleted(),
            held: report.total_held(),
            errors: report.errors.join(", "),
            rows: report
                .counts
                .iter()
                .map(|count| CountRow {
                    label: count.category.label(),
                    keep: count.keep.describe(),
                    deleted: count.deleted,
                    held: count.held,
                    note: count.note.clone().unwrap_or_default(),
                })
                .collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "privacy/retention.html")]
struct RetentionPage {
    chrome: Chrome,
    base: String,
    holds_url: String,
    policies: Vec<PolicyRow>,
    preview: Option<ReportView>,
    reports: Vec<ReportView>,
    running: bool,
    schedule: String,
    error: Option<String>,
}

fn base(tenant: &Tenant) -> String {
    format!("/t/{}/privacy/retention", tenant.slug)
}

fn holds_base(tenant: &Tenant) -> String {
    format!("/t/{}/privacy/holds", tenant.slug)
}

/// The page; `typed` replaces the stored policies in the form (a refused form keeps what was
/// typed). Counts and periods only: no personal data. Blocking.
fn page(
    context: &AppContext,
    session: &RequestSession,
    tenant: &Tenant,
    typed: Option<&HashMap<String, String>>,
    preview: Option<&RunReport>,
    error: Option<String>,
) -> Result<RetentionPage, AppError> {
    let base = base(tenant);
    let stored = retention::policies(context, tenant.id)?;
    let policies = Category::ALL
        .into_iter()
        .map(|category| PolicyRow {
            name: category.as_str(),
            label: category.label(),
            value: typed.map_or_else(
                || stored.get(category).form_value(),
                |typed| typed.get(category.as_str()).cloned().unwrap_or_default(),
            ),
            hint: format!("default: {}", Policies::default_for(category).describe()),
        })
        .collect();
    let reports = retention::reports(context, tenant.id, retention::REPORTS_SHOWN)?
        .iter()
        .map(ReportView::of)
        .collect();
    Ok(RetentionPage {
        chrome: Chrome::for_session(context, session, Some(tenant), "Retention", &base)?,
        base,
        holds_url: holds_base(tenant),
        policies,
        preview: preview.map(ReportView::of),
        reports,
        running: retention::is_running(tenant.id),
        schedule: context.config.retention.schedule.clone(),
        error,
    })
}

async fn show(
    context: Data<AppContext>,
    access: TenantAccess<ManageRetention>,
) -> Result<HttpResponse, AppError> {
    let page =
        web::block(move || page(&context, &access.session, &access.tenant, None, None, None))
            .await??;
    render(&page, StatusCode::OK)
}

fn parse_policies(fields: &HashMap<String, String>) -> Result<Policies, RetentionError> {
    let mut policies = Policies::default();
    for category in Category::ALL {
        let typed = fields.get(category.as_str()).map_or("", String::as_str);
        policies.set(category, parse_keep(category, typed)?);
    }
    policies.validate()?;
    Ok(policies)
}

async fn save(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManageRetention>,
    form: Form<HashMap<String, String>>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|address| address.to_string());
    let fields = form.into_inner();
    web::block(move || -> Result<Reply, AppError> {
        let saved = parse_policies(&fields).and_then(|policies| {
            retention::save_policies(
                &context,
                &access.session.user.actor(),
                client,
                access.tenant.id,
                &policies,
            )
        });
        match saved {
            Ok(()) => {
                push_flash(
                    &context,
                    &access.session,
                    FlashKind::Success,
                    "Retention policy saved. The next run (scheduled or Run now) applies it; Preview shows what it would delete.",
                )?;
                Ok(Reply::SeeOther(base(&access.tenant)))
            }
            Err(RetentionError::Invalid { field, message }) => {
                let page = page(
                    &context,
                    &access.session,
                    &access.tenant,
                    Some(&fields),
                    None,
                    Some(format!("{field}: {message}")),
                )?;
                Reply::page(&page, StatusCode::UNPROCESSABLE_ENTITY)
            }
            Err(other) => Err(other.into()),
        }
    })
    .await?
}

async fn preview(
    context: Data<AppContext>,
    access: TenantAccess<ManageRetention>,
) -> Result<HttpResponse, AppError> {
    let page = web::block(move || -> Result<RetentionPage, AppError> {
        let report = retention::preview(
            &context,
            &access.session.user.actor(),
            access.tenant.id,
            Utc::now(),
        )?;
        page(
            &context,
            &access.session,
            &access.tenant,
            None,
            Some(&report),
            None,
        )
    })
    .await??;
    render(&page, StatusCode::OK)
}

/// Starts a run on a thread of its own and answers at once: a sweep of a large tenant takes
/// longer than a request should. Its report is listed when it ends.
async fn run_now(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManageRetention>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|address| address.to_string());
    let tenant = access.tenant.id;
    let actor = access.session.user.actor();
    let shared = context.clone().into_inner();
    let message = if retention::is_running(tenant) {
        (
            FlashKind::Error,
            "A retention run of this tenant is already in progress.",
        )
    } else {
        let started = std::thread::Builder::new()
            .name("retention-run".to_owned())
            .spawn(move || {
                if let Err(error) = retention::run(
                    &shared,
                    &actor,
                    client,
                    tenant,
                    Trigger::Console,
                    Utc::now(),
                    &mut |_| {},
                ) {
                    tracing::error!(%tenant, kind = retention::run_error_kind(&error), "retention run failed");
                }
            });
        match started {
            Ok(_) => (
                FlashKind::Success,
                "Retention run started. Its report appears below when it ends (reload the page).",
            ),
            Err(error) => return Err(AppError::internal(&error)),
        }
    };
    web::block(move || -> Result<Reply, AppError> {
        push_flash(&context, &access.session, message.0, message.1)?;
        Ok(Reply::SeeOther(base(&access.tenant)))
    })
    .await?
}

pub struct HoldRow {
    pub kind: &'static str,
    pub covers: String,
    pub reason: String,
    pub owner: String,
    pub created: String,
    pub ends: String,
    pub state: String,
    pub release_url: Option<String>,
}

#[derive(Template)]
#[template(path = "privacy/holds.html")]
struct HoldsPage {
    chrome: Chrome,
    base: String,
    rows: Vec<HoldRow>,
    error: Option<String>,
    typed: HoldFields,
}

#[derive(Clone, Default, Deserialize)]
struct HoldFields {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    ends: String,
}

/// The holds page, its read audited (a subject hold shows an address). Blocking.
fn holds_page(
    context: &AppContext,
    session: &RequestSession,
    tenant: &Tenant,
    client: Option<String>,
    error: Option<String>,
    typed: HoldFields,
) -> Result<HoldsPage, AppError> {
    let base = holds_base(tenant);
    let all = holds::list(context, tenant.id)?;
    audit_personal_read(
        context,
        session,
        tenant,
        client,
        format!("legal holds ({} shown)", all.len()),
    )?;
    let now = Utc::now();
    let rows = all
        .into_iter()
        .map(|hold| {
            let active = hold.is_active(now);
            HoldRow {
                kind: hold.scope.kind_str(),
                covers: hold.scope.describe(),
                reason: hold.reason,
                owner: hold.owner,
                created: format!("{} by {}", format_time(hold.created_at), hold.created_by),
                ends: hold.ends.map(|day| day.to_string()).unwrap_or_default(),
                state: match (&hold.released, active) {
                    (Some((at, by)), _) => format!("released {} by {by}", format_time(*at)),
                    (None, true) => "active".to_owned(),
                    (None, false) => "ended".to_owned(),
                },
                release_url: active.then(|| format!("{base}/{}/release", hold.id)),
            }
        })
        .collect();
    Ok(HoldsPage {
        chrome: Chrome::for_session(context, session, Some(tenant), "Legal holds", &base)?,
        base,
        rows,
        error,
        typed,
    })
}

async fn show_holds(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManageRetention>,
) -> Result<HttpResponse, AppError> {
    let client = client_address(&request).map(|address| address.to_string());
    let page = web::block(move || {
        holds_page(
            &context,
            &access.session,
            &access.tenant,
            client,
            None,
            HoldFields {
                kind: "subject".to_owned(),
                ..HoldFields::default()
            },
        )
    })
    .await??;
    render(&page, StatusCode::OK)
}

async fn add_hold(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManageRetention>,
    form: Form<HoldFields>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|address| address.to_string());
    let fields = form.into_inner();
    web::block(move || -> Result<Reply, AppError> {
        let new = NewHold {
            kind: fields.kind.clone(),
            value: fields.value.clone(),
            from: fields.from.clone(),
            to: fields.to.clone(),
            reason: fields.reason.clone(),
            owner: fields.owner.clone(),
            ends: fields.ends.clone(),
        };
        match holds::create(
            &context,
            &access.session.user.actor(),
            client.clone(),
            access.tenant.id,
            &new,
        ) {
            Ok(_) => {
                push_flash(
                    &context,
                    &access.session,
                    FlashKind::Success,
                    "Legal hold placed. Retention deletes nothing it covers until it is released or ends.",
                )?;
                Ok(Reply::SeeOther(holds_base(&access.tenant)))
            }
            Err(RetentionError::Invalid { field, message }) => {
                let page = holds_page(
                    &context,
                    &access.session,
                    &access.tenant,
                    client,
                    Some(format!("{field}: {message}")),
                    fields,
                )?;
                Reply::page(&page, StatusCode::UNPROCESSABLE_ENTITY)
            }
            Err(other) => Err(other.into()),
        }
    })
    .await?
}

async fn release_hold(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManageRetention>,
    path: web::Path<(String, String)>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|address| address.to_string());
    let id: HoldId = path.1.parse().map_err(|_| AppError::NotFound)?;
    web::block(move || -> Result<Reply, AppError> {
        holds::release(
            &context,
            &access.session.user.actor(),
            client,
            access.tenant.id,
            id,
        )?;
        push_flash(
            &context,
            &access.session,
            FlashKind::Success,
            "Legal hold released. The next retention run may delete what it kept.",
        )?;
        Ok(Reply::SeeOther(holds_base(&access.tenant)))
    })
    .await?
}

impl From<RetentionError> for AppError {
    fn from(error: RetentionError) -> Self {
        match error {
            RetentionError::Store(store) => store.into(),
            RetentionError::Audit(audit) => audit.into(),
            RetentionError::NotFound => Self::NotFound,
            RetentionError::Invalid { field, message } => {
                Self::BadRequest(format!("{field}: {message}"))
            }
            RetentionError::AlreadyRunning => Self::BadRequest(error.to_string()),
        }
    }
}
