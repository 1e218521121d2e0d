//! [`ApiAccess<S>`]: the API's guard extractor. It reads `Authorization: Bearer KEY`, finds the
//! live key (401 for a missing, malformed, unknown or revoked key, all answered alike) and checks
//! that the key holds scope `S` (403 otherwise). The tenant is the key's; nothing in the URL can
//! name another. As with `TenantAccess<P>`, the scope a route needs is part of its handler's type.

use std::marker::PhantomData;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::{self, Data};
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use secrecy::SecretString;

use crate::api::keys::{self, ApiKey, ApiScope};
use crate::api::ApiError;
use crate::auth::guard::client_address;
use crate::context::AppContext;
use crate::ids::TenantId;

/// A scope as a type.
pub trait ScopePolicy {
    const SCOPE: ApiScope;
}

/// Reading records.
pub struct ReadScope;
/// Creating and updating records.
pub struct WriteScope;

/// Managing data-subject requests.
pub struct PrivacyScope;

impl ScopePolicy for PrivacyScope {
    const SCOPE: ApiScope = ApiScope::Privacy;
}

impl ScopePolicy for ReadScope {
    const SCOPE: ApiScope = ApiScope::Read;
}

impl ScopePolicy for WriteScope {
    const SCOPE: ApiScope = ApiScope::Write;
}

/// A request made with a live key of some tenant that holds scope `S`.
pub struct ApiAccess<S: ScopePolicy> {
    pub key: ApiKey,
    /// The client's socket address, for the audit log.
    pub client: Option<String>,
    marker: PhantomData<S>,
}

impl<S: ScopePolicy> ApiAccess<S> {
    pub fn tenant(&self) -> TenantId {
        self.key.tenant
    }
}

/// The key in an `Authorization: Bearer …` header (the scheme is case-insensitive).
fn bearer_token(request: &HttpRequest) -> Option<SecretString> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
        .map(SecretString::from)
}

impl<S: ScopePolicy> FromRequest for ApiAccess<S> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer_token(request);
        let context = request.app_data::<Data<AppContext>>().cloned();
        let client = client_address(request).map(|ip| ip.to_string());
        Box::pin(async move {
            let token = token.ok_or(ApiError::Unauthorized(
                "Send an API key as `Authorization: Bearer <key>`.",
            ))?;
            let context = context
                .ok_or_else(|| ApiError::Internal("application context missing".to_owned()))?;
            let key = web::block(move || keys::authenticate(&context, &token))
                .await??
                .ok_or(ApiError::Unauthorized(
                    "The API key is not valid or has been revoked.",
                ))?;
            if !key.scopes.contains(&S::SCOPE) {
                return Err(ApiError::Forbidden(S::SCOPE));
            }
            Ok(Self {
                key,
                client,
                marker: PhantomData,
            })
        })
    }
}
