//! The privacy officer's request pages (`ManagePrivacy`): the list with overdue and due-soon
//! requests marked and the scheduler's latest reminder (`/t/{tenant}/privacy/requests`), the form
//! that records one, a request's page with its transitions, rectification form and package
//! downloads (`…/{id}`). Showing a request is a read of personal data (the subject's identifier),
//! audited; every form carries the CSRF token.

use actix_web::http::{header, StatusCode};
use actix_web::web::{self, Data, Form};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use chrono::Utc;
use serde::Deserialize;

use crate::auth::guard::policy::ManagePrivacy;
use crate::auth::guard::{client_address, RequestSession, TenantAccess};
use crate::auth::session::FlashKind;
use crate::context::AppContext;
use crate::error::AppError;
use crate::ids::RequestId;
use crate::privacy::requests::package::download;
use crate::privacy::requests::rectify::{rectify, Corrections};
use crate::privacy::requests::store::RequestStore;
use crate::privacy::requests::workflow::{create, load, transition, By, Change, NewRequest};
use crate::privacy::requests::{
    PrivacyRequest, RequestError, RequestKind, RequestState, Urgency, VerificationMethod,
};
use crate::tenants::Tenant;
use crate::web::pages::{audit_personal_read, format_time, push_flash, render, Chrome, Reply};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/t/{tenant}/privacy/requests", web::get().to(list))
        .route("/t/{tenant}/privacy/requests", web::post().to(add))
        .route("/t/{tenant}/privacy/requests/{id}", web::get().to(show))
        .route(
            "/t/{tenant}/privacy/requests/{id}/transition",
            web::post().to(change_state),
        )
        .route(
            "/t/{tenant}/privacy/requests/{id}/rectify",
            web::post().to(rectify_contact),
        )
        .route(
            "/t/{tenant}/privacy/requests/{id}/package/{part}",
            web::get().to(download_part),
        );
}

/// The audit page's subject filter (a GET form: it changes nothing, so it has no CSRF token).
#[derive(Clone, Debug, Default)]
pub struct SubjectFilter {
    pub action: String,
    /// `email`, `phone`, `name` or `contact`.
    pub kind: String,
    pub value: String,
}

fn base(tenant: &Tenant) -> String {
    format!("/t/{}/privacy/requests", tenant.slug)
}

fn client(request: &HttpRequest) -> Option<String> {
    client_address(request).map(|address| address.to_string())
}

fn by(session: &RequestSession, client: Option<String>) -> By {
    By {
        actor: session.user.actor(),
        client,
    }
}

pub struct RequestRow {
    pub url: String,
    pub id: String,
    pub kind: &'static str,
    pub subject: String,
    pub state: &'static str,
    pub received: String,
    pub due: String,
    /// `overdue`, `due-soon` or empty: a CSS class, and the words say the same.
    pub urgency_class: &'static str,
    pub urgency: &'static str,
}

impl RequestRow {
    fn new(base: &str, request: &PrivacyRequest, now: chrono::DateTime<Utc>) -> Self {
        let urgency = request.urgency(now);
        Self {
            url: format!("{base}/{}", request.id),
            id: request.id.to_string(),
            kind: request.kind.as_str(),
            subject: format!("{} {}", request.subject.kind_str(), request.subject.value()),
            state: request.state.label(),
            received: format_time(request.received_at),
            due: request.due_at.format("%Y-%m-%d").to_string(),
            urgency_class: match urgency {
                Urgency::Overdue => "urgency-overdue",
                Urgency::DueSoon => "urgency-due-soon",
                Urgency::OnTime | Urgency::Closed => "",
            },
            urgency: urgency.as_str(),
        }
    }
}

#[derive(Template)]
#[template(path = "privacy/requests/list.html")]
struct ListPage {
    chrome: Chrome,
    base: String,
    rows: Vec<RequestRow>,
    notice: Option<String>,
    kinds: Vec<&'static str>,
    error: Option<String>,
    typed: NewRequestFields,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct NewRequestFields {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    subject_kind: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    received: String,
    #[serde(default)]
    note: String,
}

/// The list page, its read audited. Blocking.
fn list_page(
    context: &AppContext,
    session: &RequestSession,
    tenant: &Tenant,
    client: Option<String>,
    error: Option<String>,
    typed: NewRequestFields,
) -> Result<ListPage, AppError> {
    let base = base(tenant);
    let store = RequestStore::new(context.store.clone());
    let requests = store.list(tenant.id)?;
    audit_personal_read(
        context,
        session,
        tenant,
        client,
        format!("privacy requests ({} shown)", requests.len()),
    )?;
    let now = Utc::now();
    let notice = store.latest_notice(tenant.id)?.and_then(|notice| {
        (!notice.overdue.is_empty() || !notice.due_soon.is_empty()).then(|| {
            format!(
                "Reminder of {}: {} request(s) overdue, {} due within 7 days.",
                format_time(notice.at),
                notice.overdue.len(),
                notice.due_soon.len()
            )
        })
    });
    Ok(ListPage {
        chrome: Chrome::for_session(context, session, Some(tenant), "Privacy requests", &base)?,
        rows: requests
            .iter()
            .map(|request| RequestRow::new(&base, request, now))
            .collect(),
        base,
        notice,
        kinds: RequestKind::ALL.iter().map(|kind| kind.as_str()).collect(),
        error,
        typed,
    })
}

async fn list(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManagePrivacy>,
) -> Result<HttpResponse, AppError> {
    let client = client(&request);
    let page = web::block(move || {
        list_page(
            &context,
            &access.session,
            &access.tenant,
            client,
            None,
            NewRequestFields::default(),
        )
    })
    .await??;
    render(&page, StatusCode::OK)
}

async fn add(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManagePrivacy>,
    form: Form<NewRequestFields>,
) -> Result<Reply, AppError> {
    let client = client(&request);
    let fields = form.into_inner();
    web::block(move || -> Result<Reply, AppError> {
        let new = NewRequest {
            kind: fields.kind.clone(),
            subject_kind: fields.subject_kind.clone(),
            subject: fields.subject.clone(),
            received: fields.received.clone(),
            note: fields.note.clone(),
        };
        match create(
            &context,
            &by(&access.session, client.clone()),
            access.tenant.id,
            &new,
        ) {
            Ok(created) => Ok(Reply::SeeOther(format!(
                "{}/{}",
                base(&access.tenant),
                created.id
            ))),
            Err(RequestError::Invalid { field, message }) => {
                let page = list_page(
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

pub struct HistoryRow {
    pub at: String,
    pub from: &'static str,
    pub to: &'static str,
    pub by: String,
    pub note: String,
}

pub struct RectificationRow {
    pub at: String,
    pub by: String,
    pub contact: String,
    /// `(field, before, after)`, empty text for an empty field.
    pub changes: Vec<(String, String, String)>,
}

#[derive(Template)]
#[template(path = "privacy/requests/detail.html")]
struct DetailPage {
    chrome: Chrome,
    base: String,
    url: String,
    row: RequestRow,
    note: String,
    verification: Option<String>,
    rejection: Option<String>,
    history: Vec<HistoryRow>,
    rectifications: Vec<RectificationRow>,
    next: Vec<(&'static str, &'static str)>,
    methods: Vec<(&'static str, &'static str)>,
    can_rectify: bool,
    package: Option<PackageView>,
}

/// A built package on the request's page.
pub struct PackageView {
    pub created: String,
    /// "downloadable until …" or "expired …".
    pub state: String,
    pub counts: Vec<(String, usize)>,
    pub parts: Vec<String>,
}

fn detail_page(
    context: &AppContext,
    session: &RequestSession,
    tenant: &Tenant,
    client: Option<String>,
    id: RequestId,
) -> Result<DetailPage, AppError> {
    let base = base(tenant);
    let request = load(context, tenant.id, id)?;
    audit_personal_read(
        context,
        session,
        tenant,
        client,
        format!("privacy request {id}"),
    )?;
    let url = format!("{base}/{id}");
    let now = Utc::now();
    let package = request.package.as_ref().map(|summary| {
        let mut parts = vec!["package.html".to_owned(), "package.json".to_owned()];
        parts.extend(
            ["contacts", "interactions", "signals", "analyses", "audit"]
                .iter()
                .map(|name| format!("{name}.csv")),
        );
        let state = if summary.expires_at <= now {
            format!("expired {}", format_time(summary.expires_at))
        } else {
            format!("downloadable until {}", format_time(summary.expires_at))
        };
        PackageView {
            created: format_time(summary.created_at),
            state,
            counts: summary.counts.clone(),
            parts,
        }
    });
    Ok(DetailPage {
        chrome: Chrome::for_session(context, session, Some(tenant), "Privacy request", &base)?,
        row: RequestRow::new(&base, &request, now),
        note: request.note.clone(),
        verification: request.verification.as_ref().map(|verification| {
            format!(
                "{}: {} ({} by {})",
                verification.method.label(),
                verification.note,
                format_time(verification.at),
                verification.by
            )
        }),
        rejection: request.rejection.clone(),
        history: request
            .history
            .iter()
            .map(|transition| HistoryRow {
                at: format_time(transition.at),
                from: transition.from.label(),
                to: transition.to.label(),
                by: transition.by.clone(),
                note: transition.note.clone().unwrap_or_default(),
            })
            .collect(),
        rectifications: request
            .rectifications
            .iter()
            .map(|rectification| RectificationRow {
                at: format_time(rectification.at),
                by: rectification.by.clone(),
                contact: rectification.contact.to_string(),
                changes: rectification
                    .changes
                    .iter()
                    .map(|(field, before, after)| {
                        (
                            field.clone(),
                            before.clone().unwrap_or_default(),
                            after.clone().unwrap_or_default(),
                        )
                    })
                    .collect(),
            })
            .collect(),
        next: request
            .state
            .next_states()
            .iter()
            .map(|state| (state.as_str(), state.label()))
            .collect(),
        methods: VerificationMethod::ALL
            .iter()
            .map(|method| (method.as_str(), method.label()))
            .collect(),
        can_rectify: request.kind == RequestKind::Rectification
            && request.state == RequestState::InProgress,
        package,
        base,
        url,
    })
}

fn parse_id(raw: &str) -> Result<RequestId, AppError> {
    raw.parse::<RequestId>().map_err(|_| AppError::NotFound)
}

async fn show(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManagePrivacy>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let client = client(&request);
    let id = parse_id(&path.1)?;
    let page =
        web::block(move || detail_page(&context, &access.session, &access.tenant, client, id))
            .await??;
    render(&page, StatusCode::OK)
}

#[derive(Deserialize)]
struct ChangeFields {
    #[serde(default)]
    to: String,
    #[serde(default)]
    method: String,
    #[serde(default)]
    verification_note: String,
    #[serde(default)]
    reason: String,
}

/// Turns a workflow refusal into a flash on the request's page; other errors stay errors (an
/// unknown request is 404 through `From<RequestError>`).
fn after(
    context: &AppContext,
    session: &RequestSession,
    url: String,
    outcome: Result<PrivacyRequest, RequestError>,
    success: &str,
) -> Result<Reply, AppError> {
    match outcome {
        Ok(_) => push_flash(context, session, FlashKind::Success, success)?,
        Err(
            error @ (RequestError::Invalid { .. }
            | RequestError::IllegalTransition(_)
            | RequestError::CannotComplete(_)
            | RequestError::ErasureRefused(_)),
        ) => push_flash(context, session, FlashKind::Error, error.to_string())?,
        Err(other) => return Err(other.into()),
    }
    Ok(Reply::SeeOther(url))
}

async fn change_state(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManagePrivacy>,
    path: web::Path<(String, String)>,
    form: Form<ChangeFields>,
) -> Result<Reply, AppError> {
    let client = client(&request);
    let id = parse_id(&path.1)?;
    let fields = form.into_inner();
    web::block(move || {
        let change = Change {
            to: fields.to,
            method: fields.method,
            verification_note: fields.verification_note,
            reason: fields.reason,
        };
        let outcome = transition(
            &context,
            &by(&access.session, client),
            access.tenant.id,
            id,
            &change,
        );
        after(
            &context,
            &access.session,
            format!("{}/{id}", base(&access.tenant)),
            outcome,
            "The request's state was changed.",
        )
    })
    .await?
}

#[derive(Deserialize)]
struct RectifyFields {
    #[serde(default)]
    contact: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    date_of_birth: String,
    #[serde(default)]
    job_title: String,
}

async fn rectify_contact(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManagePrivacy>,
    path: web::Path<(String, String)>,
    form: Form<RectifyFields>,
) -> Result<Reply, AppError> {
    let client = client(&request);
    let id = parse_id(&path.1)?;
    let fields = form.into_inner();
    // The form sends every field; an empty one is left alone (the API clears with "").
    let keep = |text: String| (!text.trim().is_empty()).then_some(text);
    let corrections = Corrections {
        contact: fields.contact,
        name: keep(fields.name),
        email: keep(fields.email),
        phone: keep(fields.phone),
        date_of_birth: keep(fields.date_of_birth),
        job_title: keep(fields.job_title),
    };
    web::block(move || {
        let outcome = rectify(
            &context,
            &by(&access.session, client),
            access.tenant.id,
            id,
            &corrections,
        );
        after(
            &context,
            &access.session,
            format!("{}/{id}", base(&access.tenant)),
            outcome,
            "The contact was rectified; the previous values are kept on this request.",
        )
    })
    .await?
}

async fn download_part(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManagePrivacy>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, AppError> {
    let client = client(&request);
    let (_, id, part) = path.into_inner();
    let id = parse_id(&id)?;
    let actor = access.session.user.actor();
    let shown_part = part.clone();
    let (content_type, body) = web::block(move || {
        download(
            &context,
            &actor,
            client,
            access.tenant.id,
            id,
            &part,
            Utc::now(),
        )
    })
    .await??;
    // Every part is an attachment, the page too: it is the subject's copy, not a console page.
    let disposition = format!("attachment; filename=\"request-{id}-{shown_part}\"");
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_DISPOSITION, disposition))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body))
}

impl From<RequestError> for AppError {
    fn from(error: RequestError) -> Self {
        match error {
            RequestError::Store(store) => store.into(),
            RequestError::Audit(audit) => audit.into(),
            RequestError::NotFound => Self::NotFound,
            RequestError::Invalid { field, message } => {
                Self::BadRequest(format!("{field}: {message}"))
            }
            RequestError::IllegalTransition(_)
            | RequestError::CannotComplete(_)
            | RequestError::ErasureRefused(_)
            | RequestError::PackageExpired(_)
            | RequestError::NoPackage => Self::Conflict(error.to_string()),
            RequestError::Write(_) | RequestError::Package(_) | RequestError::ErasureFailed(_) => {
                Self::Internal(error.to_string())
            }
        }
    }
}
