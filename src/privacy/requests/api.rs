//! `/api/v1/privacy/requests`: data-subject requests for programs, with a key that holds the
//! `privacy` scope (keys with only `read`/`write` get 403). Create, list, get, change state
//! (`…/{id}/transition`), rectify (`…/{id}/rectifications`) and download a package part
//! (`…/{id}/package/{part}`). Errors are problem+json; an illegal transition is 409 and names
//! what is allowed. Reads are audited as `personal_data.read`, changes by the workflow's
//! `dsar.*` entries.

use actix_web::http::{header, StatusCode};
use actix_web::web::{self, Data};
use actix_web::HttpResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::guard::{ApiAccess, PrivacyScope};
use crate::api::{json, parse_json, read_body, ApiError, FieldError, Problem};
use crate::audit::{AuditAction, AuditEvent};
use crate::context::AppContext;
use crate::ids::RequestId;
use crate::privacy::requests::package::download;
use crate::privacy::requests::rectify::{rectify, Corrections};
use crate::privacy::requests::store::RequestStore;
use crate::privacy::requests::workflow::{
    create as create_request, load, transition as move_to, By, Change, NewRequest,
};
use crate::privacy::requests::{PrivacyRequest, RequestError, RequestKind, RequestState, Urgency};

/// The subject of a new request.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectBody {
    /// `email`, `phone`, `name` or `contact` (a contact's record id).
    pub kind: String,
    pub value: String,
}

/// A new request.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    pub kind: RequestKind,
    pub subject: SubjectBody,
    /// When it was received: `YYYY-MM-DD` or RFC 3339, not in the future; default now.
    #[serde(default)]
    pub received: Option<String>,
    /// The officer's note: the channel, a reference.
    #[serde(default)]
    pub note: Option<String>,
}

/// How identity was verified (for `to: verified`).
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerificationBody {
    /// `known_contact_details`, `identity_document`, `call_back`, `customer_account`, `other`.
    pub method: String,
    pub note: String,
}

/// A state change.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionBody {
    pub to: RequestState,
    #[serde(default)]
    pub verification: Option<VerificationBody>,
    /// Why, for `to: rejected`.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Corrections of the subject's contact; an absent field is left alone, `""` clears it.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RectificationBody {
    /// The contact's record id.
    pub contact: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub date_of_birth: Option<String>,
    #[serde(default)]
    pub job_title: Option<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ApiVerification {
    pub method: String,
    pub note: String,
    pub by: String,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ApiTransition {
    pub from: RequestState,
    pub to: RequestState,
    pub by: String,
    pub at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ApiChange {
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ApiRectification {
    pub contact: String,
    pub changes: Vec<ApiChange>,
    pub by: String,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ApiPackage {
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Items per data type.
    pub counts: std::collections::BTreeMap<String, usize>,
    /// The parts, each at `…/package/{part}`.
    pub parts: Vec<String>,
}

/// A request as the API returns it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ApiRequest {
    pub id: String,
    pub kind: RequestKind,
    /// `email`, `phone`, `name` or `contact`.
    pub subject_kind: String,
    /// The normalised identifier.
    pub subject: String,
    pub state: RequestState,
    pub received_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    /// Open and past its due date.
    pub overdue: bool,
    /// Open and due within 7 days.
    pub due_soon: bool,
    pub note: String,
    pub verification: Option<ApiVerification>,
    pub rejection: Option<String>,
    pub history: Vec<ApiTransition>,
    pub rectifications: Vec<ApiRectification>,
    pub package: Option<ApiPackage>,
}

impl ApiRequest {
    fn new(request: PrivacyRequest, now: DateTime<Utc>) -> Self {
        let urgency = request.urgency(now);
        Self {
            id: request.id.to_string(),
            kind: request.kind,
            subject_kind: request.subject.kind_str().to_owned(),
            subject: request.subject.value(),
            state: request.state,
            received_at: request.received_at,
            due_at: request.due_at,
            overdue: urgency == Urgency::Overdue,
            due_soon: urgency == Urgency::DueSoon,
            note: request.note,
            verification: request.verification.map(|verification| ApiVerification {
                method: verification.method.as_str().to_owned(),
                note: verification.note,
                by: verification.by,
                at: verification.at,
            }),
            rejection: request.rejection,
            history: request
                .history
                .into_iter()
                .map(|step| ApiTransition {
                    from: step.from,
                    to: step.to,
                    by: step.by,
                    at: step.at,
                    note: step.note,
                })
                .collect(),
            rectifications: request
                .rectifications
                .into_iter()
                .map(|rectification| ApiRectification {
                    contact: rectification.contact.to_string(),
                    changes: rectification
                        .changes
                        .into_iter()
                        .map(|(field, before, after)| ApiChange {
                            field,
                            before,
                            after,
                        })
                        .collect(),
                    by: rectification.by,
                    at: rectification.at,
                })
                .collect(),
            package: request.package.map(|summary| ApiPackage {
                created_at: summary.created_at,
                expires_at: summary.expires_at,
                counts: summary.counts.into_iter().collect(),
                parts: [
                    "package.json",
                    "package.html",
                    "contacts.csv",
                    "interactions.csv",
                    "signals.csv",
                    "analyses.csv",
                    "audit.csv",
                ]
                .iter()
                .map(|part| (*part).to_owned())
                .collect(),
            }),
        }
    }
}

/// The requests of a tenant.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ApiRequestList {
    pub items: Vec<ApiRequest>,
}

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> Self {
        match error {
            RequestError::Store(store) => store.into(),
            RequestError::Audit(audit) => audit.into(),
            RequestError::NotFound => Self::NotFound,
            RequestError::Invalid { field, message } => {
                Self::Invalid(vec![FieldError::body(&field_pointer(field), message)])
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

/// The body field a workflow field name stands for.
fn field_pointer(field: &str) -> String {
    match field {
        "Kind" => "kind",
        "Subject" => "subject.value",
        "Received" => "received",
        "Note" => "note",
        "State" => "to",
        "Verification method" => "verification.method",
        "Verification note" => "verification.note",
        "Reason" => "reason",
        "Contact" => "contact",
        "Date of birth" => "date_of_birth",
        _ => "",
    }
    .to_owned()
}

fn parse_id(raw: &str) -> Result<RequestId, ApiError> {
    raw.parse::<RequestId>().map_err(|_| ApiError::NotFound)
}

fn by(access: &ApiAccess<PrivacyScope>) -> By {
    By {
        actor: access.key.actor(),
        client: access.client.clone(),
    }
}

/// Records a data-subject request (state `received`, due 30 days after receipt). Needs the
/// `privacy` scope.
#[utoipa::path(post, path = "/api/v1/privacy/requests", tag = "privacy", request_body = CreateBody,
    security(("api_key" = ["privacy"])),
    responses(
        (status = 201, description = "Recorded", body = ApiRequest),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Key lacks the privacy scope", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad field; `errors` names it", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    context: Data<AppContext>,
    access: ApiAccess<PrivacyScope>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(payload).await?;
    let by = by(&access);
    let tenant = access.tenant();
    let created = web::block(move || -> Result<PrivacyRequest, ApiError> {
        let body: CreateBody = parse_json(&body)?;
        let new = NewRequest {
            kind: body.kind.as_str().to_owned(),
            subject_kind: body.subject.kind,
            subject: body.subject.value,
            received: body.received.unwrap_or_default(),
            note: body.note.unwrap_or_default(),
        };
        Ok(create_request(&context, &by, tenant, &new)?)
    })
    .await??;
    let location = format!("/api/v1/privacy/requests/{}", created.id);
    let mut response = json(StatusCode::CREATED, &ApiRequest::new(created, Utc::now()))?;
    if let Ok(value) = header::HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// Every request of the tenant, newest first, with `overdue` and `due_soon` flags. Needs the
/// `privacy` scope.
#[utoipa::path(get, path = "/api/v1/privacy/requests", tag = "privacy",
    security(("api_key" = ["privacy"])),
    responses(
        (status = 200, description = "The requests", body = ApiRequestList),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Key lacks the privacy scope", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    context: Data<AppContext>,
    access: ApiAccess<PrivacyScope>,
) -> Result<HttpResponse, ApiError> {
    let by = by(&access);
    let tenant = access.tenant();
    let requests = web::block(move || -> Result<Vec<PrivacyRequest>, ApiError> {
        let requests = RequestStore::new(context.store.clone()).list(tenant)?;
        context.audit(
            AuditEvent::new(
                Some(tenant),
                by.actor,
                AuditAction::PersonalDataRead,
                format!("api: privacy requests ({} returned)", requests.len()),
            )
            .client(by.client),
        )?;
        Ok(requests)
    })
    .await??;
    let now = Utc::now();
    json(
        StatusCode::OK,
        &ApiRequestList {
            items: requests
                .into_iter()
                .map(|request| ApiRequest::new(request, now))
                .collect(),
        },
    )
}

/// One request. Needs the `privacy` scope.
#[utoipa::path(get, path = "/api/v1/privacy/requests/{id}", tag = "privacy",
    params(("id" = String, Path, description = "The request's id")),
    security(("api_key" = ["privacy"])),
    responses(
        (status = 200, description = "The request", body = ApiRequest),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Key lacks the privacy scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such request in this tenant", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    context: Data<AppContext>,
    access: ApiAccess<PrivacyScope>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let by = by(&access);
    let tenant = access.tenant();
    let request = web::block(move || -> Result<PrivacyRequest, ApiError> {
        let request = load(&context, tenant, id)?;
        context.audit(
            AuditEvent::new(
                Some(tenant),
                by.actor,
                AuditAction::PersonalDataRead,
                format!("api: privacy request {id}"),
            )
            .client(by.client),
        )?;
        Ok(request)
    })
    .await??;
    json(StatusCode::OK, &ApiRequest::new(request, Utc::now()))
}

/// Moves a request on: `verified` (with `verification`), `in_progress`, `completed` (does the
/// kind's work: builds the package, records the restriction, …) or `rejected` (with `reason`).
/// Needs the `privacy` scope.
#[utoipa::path(post, path = "/api/v1/privacy/requests/{id}/transition", tag = "privacy",
    params(("id" = String, Path, description = "The request's id")),
    request_body = TransitionBody,
    security(("api_key" = ["privacy"])),
    responses(
        (status = 200, description = "The request in its new state", body = ApiRequest),
        (status = 404, description = "No such request in this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not allowed from the current state, or the kind's work cannot be done; the detail says why", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A missing verification or reason; `errors` names it", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn transition(
    context: Data<AppContext>,
    access: ApiAccess<PrivacyScope>,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let body = read_body(payload).await?;
    let by = by(&access);
    let tenant = access.tenant();
    let request = web::block(move || -> Result<PrivacyRequest, ApiError> {
        let body: TransitionBody = parse_json(&body)?;
        let (method, verification_note) = body
            .verification
            .map(|verification| (verification.method, verification.note))
            .unwrap_or_default();
        let change = Change {
            to: body.to.as_str().to_owned(),
            method,
            verification_note,
            reason: body.reason.unwrap_or_default(),
        };
        Ok(move_to(&context, &by, tenant, id, &change)?)
    })
    .await??;
    json(StatusCode::OK, &ApiRequest::new(request, Utc::now()))
}

/// Rectifies the subject's contact through a rectification request in progress; the previous
/// values are kept on the request. Needs the `privacy` scope.
#[utoipa::path(post, path = "/api/v1/privacy/requests/{id}/rectifications", tag = "privacy",
    params(("id" = String, Path, description = "The request's id")),
    request_body = RectificationBody,
    security(("api_key" = ["privacy"])),
    responses(
        (status = 200, description = "The request with the rectification in its history", body = ApiRequest),
        (status = 404, description = "No such request in this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a rectification request in progress", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad field; `errors` names it", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rectification(
    context: Data<AppContext>,
    access: ApiAccess<PrivacyScope>,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let body = read_body(payload).await?;
    let by = by(&access);
    let tenant = access.tenant();
    let request = web::block(move || -> Result<PrivacyRequest, ApiError> {
        let body: RectificationBody = parse_json(&body)?;
        let corrections = Corrections {
            contact: body.contact,
            name: body.name,
            email: body.email,
            phone: body.phone,
            date_of_birth: body.date_of_birth,
            job_title: body.job_title,
        };
        Ok(rectify(&context, &by, tenant, id, &corrections)?)
    })
    .await??;
    json(StatusCode::OK, &ApiRequest::new(request, Utc::now()))
}

/// One part of a request's package (`package.json`, `package.html`, `contacts.csv`,
/// `interactions.csv`, `signals.csv`, `analyses.csv`, `audit.csv`), until it expires 5 days after
/// it was built. Audited as `dsar.package_downloaded`. Needs the `privacy` scope.
#[utoipa::path(get, path = "/api/v1/privacy/requests/{id}/package/{part}", tag = "privacy",
    params(("id" = String, Path, description = "The request's id"), ("part" = String, Path, description = "The part's file name")),
    security(("api_key" = ["privacy"])),
    responses(
        (status = 200, description = "The part"),
        (status = 404, description = "No such request or part", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No package, or it expired (the detail says when)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn package_part(
    context: Data<AppContext>,
    access: ApiAccess<PrivacyScope>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, part) = path.into_inner();
    let id = parse_id(&id)?;
    let by = by(&access);
    let tenant = access.tenant();
    let (content_type, body) = web::block(move || {
        download(
            &context,
            &by.actor,
            by.client,
            tenant,
            id,
            &part,
            Utc::now(),
        )
    })
    .await??;
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body))
}

/// The routes, relative to `/api/v1`.
pub fn routes(config: &mut web::ServiceConfig) {
    use crate::api::resource;
    config
        .service(
            resource("/privacy/requests")
                .route(web::post().to(create))
                .route(web::get().to(list)),
        )
        .service(resource("/privacy/requests/{id}").route(web::get().to(get)))
        .service(resource("/privacy/requests/{id}/transition").route(web::post().to(transition)))
        .service(
            resource("/privacy/requests/{id}/rectifications").route(web::post().to(rectification)),
        )
        .service(
            resource("/privacy/requests/{id}/package/{part}").route(web::get().to(package_part)),
        );
}
