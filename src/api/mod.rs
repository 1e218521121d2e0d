//! The JSON API, version 1, under `/api/v1/`: interactions, accounts, contacts and signals for
//! programs, authenticated by per-tenant API keys ([`keys`], checked by [`guard::ApiAccess`]),
//! plus signed webhooks ([`webhooks`]) and the console pages that manage both ([`routes`]).
//!
//! Every error is an RFC 9457 `application/problem+json` document ([`ApiError`]) that names each
//! bad field by a JSON pointer and never repeats a submitted value (it may be personal data). The
//! `OpenAPI` document at `/api/v1/openapi.json` is generated from the handlers' `#[utoipa::path]`
//! attributes and the record types' `ToSchema` derives, so it cannot drift from the code.

pub mod guard;
pub mod keys;
pub mod resources;
pub mod routes;
pub mod webhooks;

use std::fmt;

use actix_web::http::{header, StatusCode};
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpResponse, ResponseError};
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::records::FieldProblem;
use crate::store::StoreError;

/// The largest request body the API reads.
pub const BODY_LIMIT_BYTES: usize = 16 * 1024 * 1024;
const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// One bad field (`pointer`, into the JSON body) or query parameter (`parameter`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// RFC 6901 pointer into the request body, e.g. `/messages/2/sent_at`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// The query parameter at fault, e.g. `limit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// What is wrong, without repeating the value.
    pub detail: String,
}

impl FieldError {
    pub fn body(field: &str, detail: impl Into<String>) -> Self {
        Self {
            pointer: Some(pointer_of(field)),
            parameter: None,
            detail: detail.into(),
        }
    }

    pub fn parameter(name: &str, detail: impl Into<String>) -> Self {
        Self {
            pointer: None,
            parameter: Some(name.to_owned()),
            detail: detail.into(),
        }
    }
}

impl From<FieldProblem> for FieldError {
    fn from(problem: FieldProblem) -> Self {
        Self::body(&problem.field, problem.message)
    }
}

/// An RFC 9457 problem document, as sent.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`urn:rapport:problem:<slug>`).
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// Every way an API request fails.
#[derive(Debug)]
pub enum ApiError {
    /// 401: no key, a malformed, unknown or revoked key, or (webhooks) a bad signature.
    Unauthorized(&'static str),
    /// 403: the key lacks the scope.
    Forbidden(keys::ApiScope),
    NotFound,
    /// 405: the path exists, the method does not.
    MethodNotAllowed,
    /// 400: the request itself (JSON syntax, query) is malformed.
    BadRequest(String, Vec<FieldError>),
    /// 422: well-formed JSON that breaks the schema's rules; nothing was stored.
    Invalid(Vec<FieldError>),
    PayloadTooLarge,
    /// 503: the webhook replay memory is full; the sender should retry later.
    Busy,
    InsufficientStorage,
    Internal(String),
    /// 409: the request conflicts with the resource's state (an illegal state transition); the
    /// detail says what is allowed.
    Conflict(String),
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail())
    }
}

impl ApiError {
    pub fn internal(cause: &dyn std::error::Error) -> Self {
        Self::Internal(crate::error::cause_chain(cause))
    }

    fn slug_and_title(&self) -> (&'static str, &'static str) {
        match self {
            Self::Unauthorized(_) => ("unauthorized", "Not authenticated"),
            Self::Forbidden(_) => ("forbidden", "Scope missing"),
            Self::NotFound => ("not-found", "Not found"),
            Self::MethodNotAllowed => ("method-not-allowed", "Method not allowed"),
            Self::BadRequest(..) => ("bad-request", "Bad request"),
            Self::Invalid(_) => ("invalid-record", "Invalid record"),
            Self::PayloadTooLarge => ("payload-too-large", "Request body too large"),
            Self::Busy => ("busy", "Try again later"),
            Self::InsufficientStorage => ("disk-full", "Disk full"),
            Self::Internal(_) => ("internal", "Server error"),
            Self::Conflict(_) => ("conflict", "Conflict"),
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::Unauthorized(detail) => (*detail).to_owned(),
            Self::Forbidden(scope) => format!("This API key lacks the `{scope}` scope."),
            Self::NotFound => "There is no such resource for this API key's tenant.".to_owned(),
            Self::MethodNotAllowed => "This path does not take that method.".to_owned(),
            Self::BadRequest(detail, _) | Self::Conflict(detail) => detail.clone(),
            Self::Invalid(errors) => format!(
                "The record has {} problem(s); nothing was stored.",
                errors.len()
            ),
            Self::PayloadTooLarge => format!(
                "The request body exceeds {} MiB; nothing was stored.",
                BODY_LIMIT_BYTES / (1024 * 1024)
            ),
            Self::Busy => {
                "Too many webhook deliveries in the last minutes; retry later.".to_owned()
            }
            Self::InsufficientStorage => {
                "The appliance is low on disk space and refuses writes; nothing was stored."
                    .to_owned()
            }
            Self::Internal(_) => {
                "Something went wrong on the server; nothing was changed.".to_owned()
            }
        }
    }

    pub fn problem(&self) -> Problem {
        let (slug, title) = self.slug_and_title();
        let errors = match self {
            Self::BadRequest(_, errors) | Self::Invalid(errors) => errors.clone(),
            _ => Vec::new(),
        };
        Problem {
            problem_type: format!("urn:rapport:problem:{slug}"),
            title: title.to_owned(),
            status: self.status_code().as_u16(),
            detail: self.detail(),
            errors,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::BadRequest(..) => StatusCode::BAD_REQUEST,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Conflict(_) => StatusCode::CONFLICT,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(cause) = self {
            tracing::error!(cause = %cause, "api request failed");
        }
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = HttpResponse::build(self.status_code());
        response.content_type(PROBLEM_CONTENT_TYPE);
        if matches!(self, Self::Unauthorized(_)) {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.body(body)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::DiskFull { .. } => Self::InsufficientStorage,
            other => Self::internal(&other),
        }
    }
}

impl From<crate::audit::AuditError> for ApiError {
    fn from(error: crate::audit::AuditError) -> Self {
        match error {
            crate::audit::AuditError::Store(store) => store.into(),
            other => Self::internal(&other),
        }
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(error: actix_web::error::BlockingError) -> Self {
        Self::internal(&error)
    }
}

/// A field path as the domain names it (`messages[2].sent_at`, `signal.score`) as an RFC 6901
/// pointer (`/messages/2/sent_at`).
pub fn pointer_of(field: &str) -> String {
    let mut pointer = String::new();
    for part in field.split('.').filter(|part| !part.is_empty()) {
        let mut pieces = part.split('[');
        if let Some(name) = pieces.next().filter(|name| !name.is_empty()) {
            pointer.push('/');
            pointer.push_str(&name.replace('~', "~0").replace('/', "~1"));
        }
        for index in pieces {
            pointer.push('/');
            pointer.push_str(index.trim_end_matches(']'));
        }
    }
    pointer
}

/// Parses a JSON body, naming the bad field by pointer when it does not fit `T`.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut deserializer);
    let value = parsed.map_err(|error| {
        let path = error.path().to_string();
        let detail = crate::records::describe_json_error(error.inner());
        let syntax = !error.inner().is_data();
        // For a missing field serde's path ends at the object that lacks it; the pointer names
        // the field itself (`/messages/0/sent_at`), as the import's rejections do.
        let field = FieldError {
            pointer: Some(if syntax {
                String::new()
            } else {
                crate::ingest::jsonl::field_of(&path, &error.inner().to_string())
                    .map_or_else(String::new, |field| pointer_of(&field))
            }),
            parameter: None,
            detail,
        };
        if syntax {
            ApiError::BadRequest(
                "The request body is not valid JSON.".to_owned(),
                vec![field],
            )
        } else {
            ApiError::Invalid(vec![field])
        }
    })?;
    deserializer.end().map_err(|error| {
        ApiError::BadRequest(
            "The request body has data after the JSON value.".to_owned(),
            vec![FieldError {
                pointer: Some(String::new()),
                parameter: None,
                detail: crate::records::describe_json_error(&error),
            }],
        )
    })?;
    Ok(value)
}

/// Reads the whole request body, refusing more than [`BODY_LIMIT_BYTES`] with 413.
pub async fn read_body(mut payload: web::Payload) -> Result<Bytes, ApiError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| {
            ApiError::BadRequest("The request body could not be read.".to_owned(), Vec::new())
        })?;
        if body.len() + chunk.len() > BODY_LIMIT_BYTES {
            return Err(ApiError::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A JSON response.
pub fn json(status: StatusCode, value: &impl Serialize) -> Result<HttpResponse, ApiError> {
    let body = serde_json::to_vec(value).map_err(|error| ApiError::internal(&error))?;
    Ok(HttpResponse::build(status)
        .content_type("application/json")
        .body(body))
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A tenant API key: `Authorization: Bearer rpk_…`"))
                    .build(),
            ),
        );
    }
}

/// The `OpenAPI` 3 document, assembled from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(title = "Rapport API", description = "Interactions, accounts, contacts and signals of one tenant, and its signed webhooks."),
    paths(
        resources::interactions::create,
        resources::interactions::get,
        resources::interactions::list,
        resources::accounts::create,
        resources::accounts::get,
        resources::accounts::list,
        resources::contacts::create,
        resources::contacts::get,
        resources::contacts::list,
        resources::signals::create,
        resources::signals::get,
        resources::signals::list,
        webhooks::receive,
        crate::privacy::requests::api::create,
        crate::privacy::requests::api::list,
        crate::privacy::requests::api::get,
        crate::privacy::requests::api::transition,
        crate::privacy::requests::api::rectification,
        crate::privacy::requests::api::package_part,
        openapi_json,
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json")))]
pub async fn openapi_json() -> Result<HttpResponse, ApiError> {
    let body = ApiDoc::openapi()
        .to_json()
        .map_err(|error| ApiError::internal(&error))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

async fn api_not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

/// A resource of the API, answering a method it lacks with a 405 problem document.
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// Registers the API and the console pages that manage keys and integrations. Everything under
/// `/api/` answers in problem+json, unknown paths included.
pub fn routes(config: &mut web::ServiceConfig) {
    config.configure(routes::routes).service(
        web::scope("/api")
            .service(
                web::scope("/v1")
                    .service(resource("/openapi.json").route(web::get().to(openapi_json)))
                    .configure(resources::routes)
                    .configure(crate::privacy::requests::api::routes)
                    .service(
                        resource("/webhooks/{integration}")
                            .route(web::post().to(webhooks::receive)),
                    )
                    .default_service(web::to(api_not_found)),
            )
            .default_service(web::to(api_not_found)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_become_json_pointers() {
        assert_eq!(pointer_of("messages[2].sent_at"), "/messages/2/sent_at");
        assert_eq!(pointer_of("signal.score"), "/signal/score");
        assert_eq!(pointer_of("tags[0]"), "/tags/0");
        assert_eq!(pointer_of("source_id"), "/source_id");
    }

    #[test]
    fn parse_errors_name_the_field_and_never_the_value() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)] // Only deserialised, to provoke errors.
        struct Inner {
            score: u8,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)] // Only deserialised, to provoke errors.
        struct Outer {
            items: Vec<Inner>,
        }
        let error = parse_json::<Outer>(br#"{"items":[{"score":1},{"score":"secret-value"}]}"#)
            .unwrap_err();
        let problem = error.problem();
        assert_eq!(problem.status, 422);
        assert_eq!(problem.errors[0].pointer.as_deref(), Some("/items/1/score"));
        let text = serde_json::to_string(&problem).unwrap();
        assert!(!text.contains("secret-value"), "{text}");
        assert_eq!(parse_json::<Outer>(b"{").unwrap_err().problem().status, 400);
    }

    #[test]
    fn unknown_fields_and_variants_are_named_without_their_values() {
        let unknown = parse_json::<crate::interactions::InteractionRecord>(
            br#"{"source_system":"d","source_id":"1","channel":"chat","messages":[],"colour":"red"}"#,
        )
        .unwrap_err()
        .problem();
        assert_eq!(unknown.errors[0].pointer.as_deref(), Some("/colour"));
        let variant = parse_json::<crate::interactions::InteractionRecord>(
            br#"{"source_system":"d","source_id":"1","channel":"secret-fax","messages":[]}"#,
        )
        .unwrap_err()
        .problem();
        assert_eq!(variant.errors[0].pointer.as_deref(), Some("/channel"));
        let text = serde_json::to_string(&variant).unwrap();
        assert!(
            !text.contains("secret-fax") && text.contains("sales-chat"),
            "{text}"
        );
    }
}
