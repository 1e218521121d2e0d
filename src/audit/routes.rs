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
    /// The tenant log's subject filter: `email`, `phone`, `name` or `contact`, and the value.
    subject_kind: Option<String>,
    subject: Option<String>,
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
    /// The subject filter's form (tenant logs only): its action and the typed values.
    subject_filter: Option<crate::privacy::requests::routes::SubjectFilter>,
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
        subject_filter: tenant.map(|_| crate::privacy::requests::routes::SubjectFilter {
            action: base.clone(),
            ..Default::default()
        }),
    })
}

/// The tenant's entries about one data subject (the newest [`PAGE_SIZE`]), found through the
/// subject's records and token labels ([`crate::privacy::requests::find::audit_for_subject`]).
/// Audited without the identifier: the entry names the subject by its token label.
fn subject_page(
    context: &AppContext,
    session: &RequestSession,
    client: Option<String>,
    tenant: &Tenant,
    kind: &str,
    value: &str,
) -> Result<AuditPage, AppError> {
    use crate::privacy::requests::find::audit_for_subject;
    use crate::privacy::subject::SubjectRef;
    let base = format!("/t/{}/audit", tenant.slug);
    let subject = SubjectRef::parse(kind, value)
        .map_err(|error| AppError::BadRequest(format!("Subject: {error}")))?;
    let token = subject.token(&context.store, tenant.id)?;
    let (entries, more) = audit_for_subject(context, tenant.id, &subject, PAGE_SIZE)?;
    context.audit(
        AuditEvent::new(
            Some(tenant.id),
            session.user.actor(),
            AuditAction::PersonalDataRead,
            format!("audit log filtered by {}", SubjectRef::label(&token)),
        )
        .client(client),
    )?;
    Ok(AuditPage {
        chrome: Chrome::for_session(context, session, Some(tenant), "Audit log", &base)?,
        heading: format!(
            "Audit log of {} about {} {}{}",
            tenant.name,
            subject.kind_str(),
            subject.value(),
            if more { " (newest entries only)" } else { "" }
        ),
        rows: entries.into_iter().map(EntryRow::from).collect(),
        older: None,
        subject_filter: Some(crate::privacy::requests::routes::SubjectFilter {
            action: base,
            kind: subject.kind_str().to_owned(),
            value: value.trim().to_owned(),
        }),
    })
}

async fn appliance_log(
    request: HttpRequest,
    context: Data<AppContext>,
    access: Authorized<ViewApplianceAudit>,
    query: Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let client = client_address(&request).map(|ip| ip.to_string());
    let before = query.before;
    let page =
        web::block(move || audit_page(&context, &access.session, client, None, before)).await??;
    render(&page, StatusCode::OK)
}

async fn tenant_log(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ViewTenantAudit>,
    query: Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let client = client_address(&request).map(|ip| ip.to_string());
    let query = query.into_inner();
    let subject = query.subject.filter(|value| !value.trim().is_empty());
    if let (Some(kind), Some(value)) = (query.subject_kind, subject) {
        let page = web::block(move || {
            subject_page(
                &context,
                &access.session,
                client,
                &access.tenant,
                &kind,
                &value,
            )
        })
        .await??;
        return render(&page, StatusCode::OK);
    }
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
