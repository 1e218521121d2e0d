//! The audit log pages: the appliance's entries for operators, a tenant's for its auditors and
//! privacy officers. Viewing is itself a read of personal data (actors, addresses) and is audited.

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Query};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use crate::audit::{AuditAction, AuditEntry, AuditEvent, AuditView};
use crate::auth::guard::policy::{ViewApplianceAudit, ViewTenantAudit};
use crate::auth::guard::{client_address, Authorized, RequestSession, TenantAccess};
use crate::context::AppContext;
use crate::error::AppError;
use crate::tenants::Tenant;
use crate::web::pages::{render, Chrome};

const PAGE_SIZE: usize = 100;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/admin/audit", web::get().to(appliance_log))
        .route("/t/{tenant}/audit", web::get().to(tenant_log));
}

#[derive(Deserialize)]
struct PageQuery {
    before: Option<u64>,
}

pub struct EntryRow {
    pub seq: u64,
    pub time: String,
    pub actor: String,
    pub action: &'static str,
    pub target: String,
    pub client: String,
    pub outcome: &'static str,
}

impl From<AuditEntry> for EntryRow {
    fn from(entry: AuditEntry) -> Self {
        Self {
            seq: entry.seq,
            time: entry.time.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            actor: entry.event.actor.label,
            action: entry.event.action.as_str(),
            target: entry.event.target,
            client: entry.event.client.unwrap_or_default(),
            outcome: entry.event.outcome.as_str(),
        }
    }
}

#[derive(Template)]
#[template(path = "audit/list.html")]
struct AuditPage {
    chrome: Chrome,
    heading: String,
    rows: Vec<EntryRow>,
    older: Option<String>,
}

fn audit_page(
    context: &AppContext,
    session: &RequestSession,
    client: Option<String>,
    tenant: Option<&Tenant>,
    before: Option<u64>,
) -> Result<AuditPage, AppError> {
    let (view, base, heading) = match tenant {
        Some(tenant) => (
            AuditView::Tenant(tenant.id),
            format!("/t/{}/audit", tenant.slug),
            format!("Audit log of {}", tenant.name),
        ),
        None => (
            AuditView::Appliance,
            "/admin/audit".to_owned(),
            "Appliance audit log".to_owned(),
        ),
    };
    let entries = context.audit_log.entries(view, before, PAGE_SIZE)?;
    context.audit(
        AuditEvent::new(
            tenant.map(|t| t.id),
            session.user.actor(),
            AuditAction::PersonalDataRead,
            "audit log",
        )
        .client(client),
    )?;
    let older = (entries.len() == PAGE_SIZE)
        .then(|| {
            entries
                .last()
                .map(|last| format!("{base}?before={}", last.seq))
        })
        .flatten();
    Ok(AuditPage {
        chrome: Chrome::for_session(context, session, tenant, "Audit log", &base)?,
        heading,
        rows: entries.into_iter().map(EntryRow::from).collect(),
        older,
    })
}

async fn appliance_log(
    request: HttpRequest,
    context: Data<AppContext>,
    access: Authorized<ViewApplianceAudit>,
    query: Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let client = client_address(&request).map(|ip| ip.to_string());
    let page =
        web::block(move || audit_page(&context, &access.session, client, None, query.before))
            .await??;
    render(&page, StatusCode::OK)
}

async fn tenant_log(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ViewTenantAudit>,
    query: Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let client = client_address(&request).map(|ip| ip.to_string());
    let page = web::block(move || {
        audit_page(
            &context,
            &access.session,
            client,
            Some(&access.tenant),
            query.before,
        )
    })
    .await??;
    render(&page, StatusCode::OK)
}
