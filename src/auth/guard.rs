//! Who is asking, and may they: the session layer (middleware) and the extractors handlers use.
//!
//! The layer loads the session named by the cookie and refuses every state-changing request whose
//! CSRF token does not match, before any handler runs: a handler cannot forget the check. Handlers
//! then state what they need in their argument types — [`SignedIn`], [`Authorized<P>`] for
//! appliance permissions, [`TenantAccess<P>`] for a tenant's pages — so a handler without a guard
//! cannot reach anything but public pages. Another tenant's URLs answer 404, as if they did not exist;
//! the operator gets 403 on every tenant page.

use std::future::{ready, Ready};
use std::marker::PhantomData;
use std::net::IpAddr;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::web::{self, Data};
use actix_web::{FromRequest, HttpMessage, HttpRequest, ResponseError};
use chrono::Utc;
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt as _;

use crate::auth::session::{Session, SessionStage, SessionToken};
use crate::auth::{second_factor_required, Permission};
use crate::context::AppContext;
use crate::crypto;
use crate::error::AppError;
use crate::tenants::Tenant;
use crate::users::{Role, User};

/// Form field and header that carry the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Cookie names; under TLS the `__Host-` prefix pins them to this host, path `/` and `Secure`.
pub fn session_cookie_name(tls: bool) -> &'static str {
    if tls {
        "__Host-rapport-session"
    } else {
        "rapport-session"
    }
}

pub fn csrf_cookie_name(tls: bool) -> &'static str {
    if tls {
        "__Host-rapport-csrf"
    } else {
        "rapport-csrf"
    }
}

/// A cookie with the attributes every Rapport cookie has.
pub fn cookie(name: &'static str, value: String, tls: bool) -> Cookie<'static> {
    Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .secure(tls)
        .same_site(SameSite::Strict)
        .finish()
}

/// A cookie that tells the browser to forget `name`.
pub fn removal_cookie(name: &'static str, tls: bool) -> Cookie<'static> {
    let mut removal = cookie(name, String::new(), tls);
    removal.make_removal();
    removal
}

/// The session behind a request, loaded by [`session_layer`].
#[derive(Clone)]
pub struct RequestSession {
    pub token: SessionToken,
    pub session: Session,
    pub user: User,
    pub second_factor_required: bool,
}

/// Idle-clock updates are written at most this often, not on every request.
const TOUCH_INTERVAL_SECONDS: i64 = 60;

fn load_session(
    context: &AppContext,
    token: &SessionToken,
) -> Result<Option<RequestSession>, AppError> {
    let Some(mut session) = context.sessions.get(token)? else {
        return Ok(None);
    };
    let now = Utc::now();
    let user = context.users.get(session.user)?;
    let valid_user = user.filter(|user| session.matches(user));
    let Some(user) = valid_user.filter(|_| !session.is_expired(context.lifetimes, now)) else {
        context.sessions.delete(token)?;
        return Ok(None);
    };
    if (now - session.last_seen).num_seconds() >= TOUCH_INTERVAL_SECONDS {
        session.last_seen = now;
        // Only the idle clock is at stake: a failed save (a full disk) must not end the request.
        if let Err(error) = context.sessions.touch(token, &session) {
            tracing::warn!(%error, "session idle clock not saved");
        }
    }
    let second_factor_required = second_factor_required(context, &user)?;
    Ok(Some(RequestSession {
        token: token.clone(),
        session,
        user,
        second_factor_required,
    }))
}

fn is_state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The CSRF token a request carries: the header, or the `csrf` field of a url-encoded form.
fn submitted_csrf_token(request: &HttpRequest, body: &[u8]) -> Option<String> {
    if let Some(value) = request
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        return Some(value.to_owned());
    }
    let is_form = request
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return None;
    }
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find(|(name, _)| name == CSRF_FIELD)
        .map(|(_, value)| value)
}

fn is_multipart(request: &HttpRequest) -> bool {
    request
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"))
}

/// A request body as a stream, the form `Payload` takes for a body put back together.
type BoxedBody = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>>>,
>;

/// The most the first part of a multipart upload (the CSRF field) may take, its boundary and
/// headers included. The session layer reads no further than this into an upload's body.
const MAX_CSRF_PART_BYTES: usize = 4096;

/// Reads a multipart body up to the end of its first part (at most [`MAX_CSRF_PART_BYTES`] plus
/// one network chunk), so that its CSRF field can be checked before the handler streams the file.
/// Returns the bytes read, which the caller puts back in front of the rest of the body.
async fn read_first_part(
    payload: &mut Payload,
    boundary: &str,
) -> Result<web::Bytes, actix_web::Error> {
    let opening = format!("--{boundary}");
    let closing = format!("\r\n--{boundary}");
    let mut read = web::BytesMut::new();
    while read.len() < MAX_CSRF_PART_BYTES {
        let Some(chunk) = payload.next().await else {
            break;
        };
        read.extend_from_slice(&chunk?);
        let complete = read.len() > opening.len()
            && read[opening.len()..]
                .windows(closing.len())
                .any(|window| window == closing.as_bytes());
        if complete {
            break;
        }
    }
    Ok(read.freeze())
}

/// The CSRF token of a no-script upload: the value of the body's first part, which must be the
/// `csrf` field (the form puts its hidden field first, and browsers send fields in form order).
/// `None` when the first part is anything else or cannot be read whole from `prefix`.
async fn csrf_field_of_first_part(request: &HttpRequest, prefix: web::Bytes) -> Option<String> {
    let once =
        futures_util::stream::once(async move { Ok::<_, actix_web::error::PayloadError>(prefix) });
    let mut multipart = actix_multipart::Multipart::new(request.headers(), once);
    let mut field = multipart.next().await?.ok()?;
    if field.name() != Some(CSRF_FIELD) {
        return None;
    }
    let mut value = Vec::new();
    while let Some(chunk) = field.next().await {
        value.extend_from_slice(&chunk.ok()?);
        if value.len() > MAX_CSRF_PART_BYTES {
            return None;
        }
    }
    String::from_utf8(value).ok()
}

/// Checks the CSRF token of a multipart upload without buffering the upload: the `X-CSRF-Token`
/// header (the progress-bar script), or else the `csrf` field, which must be the body's first
/// part (no script). Returns the token found and the payload to hand on, whole: what was read of
/// the first part is put back in front of the unread rest, for the handler to stream.
async fn submitted_multipart_csrf_token(
    request: &HttpRequest,
    mut payload: Payload,
) -> Result<(Option<String>, Payload), actix_web::Error> {
    if let Some(value) = request
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        return Ok((Some(value.to_owned()), payload));
    }
    let boundary = request.mime_type().ok().flatten().and_then(|mime| {
        mime.get_param("boundary")
            .map(|name| name.as_str().to_owned())
    });
    let Some(boundary) = boundary else {
        return Ok((None, payload));
    };
    let prefix = read_first_part(&mut payload, &boundary).await?;
    let token = csrf_field_of_first_part(request, prefix.clone()).await;
    let whole: BoxedBody =
        Box::pin(futures_util::stream::once(async move { Ok(prefix) }).chain(payload));
    Ok((token, Payload::from(whole)))
}

/// Loads the session and enforces CSRF on every state-changing request.
pub async fn session_layer(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(context) = request.app_data::<Data<AppContext>>().cloned() else {
        return Err(AppError::Internal("application context missing".to_owned()).into());
    };
    // The JSON API authenticates every request by its API key or webhook signature and never by
    // cookie, so cross-site request forgery cannot reach it; it gets no session and no CSRF check.
    if request.path().starts_with("/api/") {
        return next
            .call(request)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let tls = context.uses_tls();
    let mut loaded = None;
    if let Some(cookie) = request.cookie(session_cookie_name(tls)) {
        let token = SessionToken::from_cookie(cookie.value());
        let lookup_context = context.clone();
        loaded = web::block(move || load_session(&lookup_context, &token)).await??;
    }

    let mut request = request;
    if is_state_changing(request.method()) {
        let expected = match &loaded {
            Some(found) => Some(found.session.csrf_token.clone()),
            None => request
                .cookie(csrf_cookie_name(tls))
                .map(|c| c.value().to_owned()),
        };
        let (http_request, mut payload) = request.into_parts();
        // A multipart body is an upload: at most its first part is read here, and the whole body
        // is handed on to be streamed by its handler.
        let (submitted, body) = if is_multipart(&http_request) {
            let (token, whole) = submitted_multipart_csrf_token(&http_request, payload).await?;
            payload = whole;
            (token, None)
        } else {
            let body = web::Bytes::from_request(&http_request, &mut payload).await?;
            (submitted_csrf_token(&http_request, &body), Some(body))
        };
        let accepted = match (expected, submitted) {
            (Some(expected), Some(submitted)) => {
                !expected.is_empty()
                    && crypto::constant_time_eq(expected.as_bytes(), submitted.as_bytes())
            }
            _ => false,
        };
        if !accepted {
            let response = AppError::CsrfRejected.error_response();
            return Ok(ServiceResponse::new(http_request, response).map_into_right_body());
        }
        request = match body {
            Some(body) => ServiceRequest::from_parts(http_request, Payload::from(body)),
            None => ServiceRequest::from_parts(http_request, payload),
        };
    }
    if let Some(found) = loaded {
        request.extensions_mut().insert(found);
    }
    next.call(request)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// The client's address as seen on the socket (Rapport trusts no forwarding header).
pub fn client_address(request: &HttpRequest) -> Option<IpAddr> {
    request.peer_addr().map(|address| address.ip())
}

fn request_session(request: &HttpRequest) -> Option<RequestSession> {
    request.extensions().get::<RequestSession>().cloned()
}

/// Any session, even one still owing its second factor (for that step, and for logging out).
pub struct AnySession(pub RequestSession);

impl FromRequest for AnySession {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            request_session(request)
                .map(Self)
                .ok_or(AppError::SignInRequired),
        )
    }
}

/// A fully signed-in session, which may still have to change its password or enrol a second
/// factor (the pages that do that take this guard).
pub struct ActiveSession(pub RequestSession);

impl FromRequest for ActiveSession {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(active_session(request).map(Self))
    }
}

fn active_session(request: &HttpRequest) -> Result<RequestSession, AppError> {
    let found = request_session(request).ok_or(AppError::SignInRequired)?;
    match found.session.stage {
        SessionStage::Active => Ok(found),
        SessionStage::AwaitingSecondFactor => {
            Err(AppError::Redirect("/login/second-factor".to_owned()))
        }
    }
}

/// A signed-in user with nothing outstanding: the guard of every ordinary page.
pub struct SignedIn(pub RequestSession);

impl SignedIn {
    fn check(request: &HttpRequest) -> Result<RequestSession, AppError> {
        let found = active_session(request)?;
        if found.user.must_change_password {
            return Err(AppError::Redirect("/account/password".to_owned()));
        }
        if found.second_factor_required && found.user.totp.is_none() {
            return Err(AppError::Redirect("/account/second-factor".to_owned()));
        }
        Ok(found)
    }
}

impl FromRequest for SignedIn {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Self::check(request).map(Self))
    }
}

/// A permission as a type, so a route's requirement is part of its handler's signature.
pub trait Policy {
    const PERMISSION: Permission;
}

/// The permission markers used in handler signatures.
pub mod policy {
    use super::Policy;
    use crate::auth::Permission;

    macro_rules! policy {
        ($name:ident, $permission:ident) => {
            pub struct $name;
            impl Policy for $name {
                const PERMISSION: Permission = Permission::$permission;
            }
        };
    }

    policy!(ManageAppliance, ManageAppliance);
    policy!(ViewApplianceAudit, ViewApplianceAudit);
    policy!(ViewTenant, ViewTenant);
    policy!(ManageTenantUsers, ManageTenantUsers);
    policy!(ManageTenantSecurity, ManageTenantSecurity);
    policy!(ViewTenantAudit, ViewTenantAudit);
    policy!(ViewTenantData, ViewTenantData);
    policy!(ImportTenantData, ImportTenantData);
    policy!(ManageIntegrations, ManageIntegrations);
    policy!(ManageAnalysis, ManageAnalysis);
    policy!(RequestAnalysis, RequestAnalysis);
    policy!(ManagePrivacy, ManagePrivacy);
    policy!(ReviewQa, ReviewQa);
    policy!(ManageScorecards, ManageScorecards);
    policy!(SendFeedbackRequests, SendFeedbackRequests);
    policy!(ManageFeedbackSettings, ManageFeedbackSettings);
    policy!(WorkAlerts, WorkAlerts);
    policy!(ManageAlertRules, ManageAlertRules);
    policy!(WorkLeads, WorkLeads);
    policy!(WorkReviews, WorkReviews);
    policy!(ManageReviewSettings, ManageReviewSettings);
    policy!(ManageHealth, ManageHealth);
    policy!(ExportAccounts, ExportAccounts);
    policy!(ExportQaReport, ExportQaReport);
    policy!(ManageRetention, ManageRetention);
    policy!(ViewDashboards, ViewDashboards);
}

/// A signed-in user whose role grants `P` on the appliance.
pub struct Authorized<P: Policy> {
    pub session: RequestSession,
    marker: PhantomData<P>,
}

impl<P: Policy> FromRequest for Authorized<P> {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(SignedIn::check(request).and_then(|session| {
            if session.user.role.grants(P::PERMISSION) {
                Ok(Self {
                    session,
                    marker: PhantomData,
                })
            } else {
                Err(AppError::Forbidden)
            }
        }))
    }
}

/// A member of the tenant named by the `{tenant}` path segment whose role grants `P` there.
pub struct TenantAccess<P: Policy> {
    pub session: RequestSession,
    pub tenant: Tenant,
    marker: PhantomData<P>,
}

impl<P: Policy> FromRequest for TenantAccess<P> {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let checked = SignedIn::check(request);
        let slug = request
            .match_info()
            .get("tenant")
            .unwrap_or_default()
            .to_owned();
        let context = request.app_data::<Data<AppContext>>().cloned();
        Box::pin(async move {
            let session = checked?;
            let context = context
                .ok_or_else(|| AppError::Internal("application context missing".to_owned()))?;
            let (tenant, lock) = web::block(move || -> Result<_, AppError> {
                let Some(tenant) = context.tenants.find_by_slug(&slug)? else {
                    return Ok(None);
                };
                let lock = crate::offboarding::lock_of(&context, tenant.id)?;
                Ok(Some((tenant, lock)))
            })
            .await??
            .ok_or(AppError::NotFound)?;
            if session.user.role == Role::Operator {
                return Err(AppError::Forbidden);
            }
            if session.user.tenant != Some(tenant.id) {
                return Err(AppError::NotFound);
            }
            if !session.user.role.grants(P::PERMISSION) {
                return Err(AppError::Forbidden);
            }
            // A tenant in its offboarding wind-down is locked, except for the retention and
            // legal-hold pages: a hold placed now still blocks the purge.
            if let Some(offboarding) = lock {
                if P::PERMISSION != Permission::ManageRetention {
                    return Err(AppError::Locked(crate::offboarding::locked_message(
                        &offboarding,
                    )));
                }
            }
            Ok(Self {
                session,
                tenant,
                marker: PhantomData,
            })
        })
    }
}
