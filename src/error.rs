//! `AppError`: the one error type at the HTTP edge. It picks the status, renders an error page
//! without internals, and logs the cause of server-side failures (causes never carry tenant
//! content: domain errors are written without it).

use std::fmt;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

use crate::auth::AuthError;
use crate::store::StoreError;
use crate::tenants::TenantError;
use crate::users::UserError;
use crate::web::pages::Chrome;

#[derive(Debug)]
pub enum AppError {
    /// 404; also what a user gets for another tenant's URLs.
    NotFound,
    /// 403: signed in, but the role does not allow this.
    Forbidden,
    /// The form's CSRF token is missing or wrong; nothing was changed.
    CsrfRejected,
    /// Not signed in (or the session ended): go to the log-in page.
    SignInRequired,
    /// The session must finish a step first (second factor, new password).
    Redirect(String),
    /// The request was malformed; the message says what and where.
    BadRequest(String),
    /// The request conflicts with existing data.
    Conflict(String),
    /// 413: an upload over the limit; the message says the limit.
    TooLarge(String),
    /// Writes are refused because the disk is nearly full.
    InsufficientStorage,
    /// Anything else; logged, shown as a plain 500.
    Internal(String),
    /// 423: the tenant is locked (offboarding's wind-down); the message says until when.
    Locked(String),
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.public_message())
    }
}

impl AppError {
    pub fn internal(cause: &dyn std::error::Error) -> Self {
        Self::Internal(cause_chain(cause))
    }

    fn public_message(&self) -> String {
        match self {
            Self::NotFound => "There is nothing at this address.".to_owned(),
            Self::Forbidden => "Your role does not allow this page or action.".to_owned(),
            Self::CsrfRejected => {
                "This form has expired or did not come from this site. Nothing was changed; reload the page and try again."
                    .to_owned()
            }
            Self::SignInRequired => "Please sign in.".to_owned(),
            Self::Redirect(_) => "Please finish signing in.".to_owned(),
            Self::BadRequest(message)
            | Self::Conflict(message)
            | Self::TooLarge(message)
            | Self::Locked(message) => {
                message.clone()
            }
            Self::InsufficientStorage => {
                "The appliance is low on disk space and refuses writes until space is freed. Nothing was saved; tell your operator."
                    .to_owned()
            }
            Self::Internal(_) => {
                "Something went wrong on the server. Nothing was changed; the operator can find the details in the service log."
                    .to_owned()
            }
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::NotFound => "Not found",
            Self::Forbidden | Self::CsrfRejected => "Not allowed",
            Self::SignInRequired | Self::Redirect(_) => "Sign in",
            Self::BadRequest(_) => "Bad request",
            Self::Conflict(_) => "Conflict",
            Self::TooLarge(_) => "Too large",
            Self::InsufficientStorage => "Disk full",
            Self::Internal(_) => "Server error",
            Self::Locked(_) => "Tenant closed",
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    status: u16,
    heading: &'static str,
    message: String,
}

/// An error and its sources as one line, for the service log (domain errors carry no tenant
/// content, so neither does this).
pub fn cause_chain(cause: &dyn std::error::Error) -> String {
    let mut text = cause.to_string();
    let mut source = cause.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Forbidden | Self::CsrfRejected => StatusCode::FORBIDDEN,
            Self::SignInRequired | Self::Redirect(_) => StatusCode::SEE_OTHER,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Locked(_) => StatusCode::LOCKED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::SignInRequired => {
                return HttpResponse::SeeOther()
                    .insert_header((header::LOCATION, "/login"))
                    .finish()
            }
            Self::Redirect(location) => {
                return HttpResponse::SeeOther()
                    .insert_header((header::LOCATION, location.as_str()))
                    .finish()
            }
            Self::Internal(cause) => tracing::error!(cause = %cause, "request failed"),
            _ => {}
        }
        let status = self.status_code();
        let page = ErrorPage {
            chrome: Chrome::anonymous(self.title()),
            status: status.as_u16(),
            heading: self.title(),
            message: self.public_message(),
        };
        let body = page
            .render()
            .unwrap_or_else(|_| "<!doctype html><title>Error</title><p>Error.</p>".to_owned());
        HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(body)
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::DiskFull { .. } => Self::InsufficientStorage,
            other => Self::internal(&other),
        }
    }
}

impl From<crate::audit::AuditError> for AppError {
    fn from(error: crate::audit::AuditError) -> Self {
        match error {
            crate::audit::AuditError::Store(store) => store.into(),
            other => Self::internal(&other),
        }
    }
}

impl From<TenantError> for AppError {
    fn from(error: TenantError) -> Self {
        match error {
            TenantError::Store(store) => store.into(),
            TenantError::Audit(audit) => audit.into(),
            TenantError::NotFound(_) => Self::NotFound,
            TenantError::SlugTaken(_) | TenantError::SlugReserved(_) => {
                Self::Conflict(error.to_string())
            }
            TenantError::InvalidSlug(_) | TenantError::InvalidName => {
                Self::BadRequest(error.to_string())
            }
        }
    }
}

impl From<UserError> for AppError {
    fn from(error: UserError) -> Self {
        match error {
            UserError::Store(store) => store.into(),
            UserError::Audit(audit) => audit.into(),
            UserError::Tenant(tenant) => tenant.into(),
            UserError::Hash(hash) => Self::internal(&hash),
            UserError::NotFound => Self::NotFound,
            UserError::EmailTaken => Self::Conflict(error.to_string()),
            other => Self::BadRequest(other.to_string()),
        }
    }
}

impl From<AuthError> for AppError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::User(user) => user.into(),
            AuthError::Store(store) => store.into(),
            AuthError::Audit(audit) => audit.into(),
            AuthError::Hash(hash) => Self::internal(&hash),
            other => Self::BadRequest(other.to_string()),
        }
    }
}

impl From<crate::api::keys::ApiKeyError> for AppError {
    fn from(error: crate::api::keys::ApiKeyError) -> Self {
        use crate::api::keys::ApiKeyError;
        match error {
            ApiKeyError::Store(store) => store.into(),
            ApiKeyError::Audit(audit) => audit.into(),
            ApiKeyError::NotFound => Self::NotFound,
            other => Self::BadRequest(other.to_string()),
        }
    }
}

impl From<crate::api::webhooks::IntegrationError> for AppError {
    fn from(error: crate::api::webhooks::IntegrationError) -> Self {
        use crate::api::webhooks::IntegrationError;
        match error {
            IntegrationError::Store(store) => store.into(),
            IntegrationError::Audit(audit) => audit.into(),
            IntegrationError::NotFound => Self::NotFound,
            other => Self::BadRequest(other.to_string()),
        }
    }
}

impl From<crate::inference::InferenceError> for AppError {
    fn from(error: crate::inference::InferenceError) -> Self {
        use crate::inference::InferenceError;
        match error {
            InferenceError::Store(store) => store.into(),
            InferenceError::Audit(audit) => audit.into(),
            InferenceError::Setting(problem) => Self::BadRequest(problem.to_string()),
            other => Self::internal(&other),
        }
    }
}

impl From<actix_web::error::BlockingError> for AppError {
    fn from(error: actix_web::error::BlockingError) -> Self {
        Self::internal(&error)
    }
}
