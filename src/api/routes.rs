//! Console pages for tenant admins: API keys (`/t/{tenant}/settings/api-keys`) and webhook
//! integrations (`/t/{tenant}/settings/integrations`). A new key or secret is shown once, on the
//! page that answers its creation; the lists show only names, scopes and times.

use std::collections::BTreeSet;

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Form};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use crate::api::keys::{self, ApiKey, ApiKeyError, ApiScope};
use crate::api::webhooks::{self, Integration, IntegrationError, IntegrationKind};
use crate::auth::guard::policy::ManageIntegrations;
use crate::auth::guard::{client_address, RequestSession, TenantAccess};
use crate::auth::session::FlashKind;
use crate::context::AppContext;
use crate::error::AppError;
use crate::ids::{ApiKeyId, IntegrationId};
use crate::tenants::Tenant;
use crate::web::pages::{push_flash, render, Chrome, Reply};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/t/{tenant}/settings/api-keys", web::get().to(keys_list))
        .route("/t/{tenant}/settings/api-keys", web::post().to(keys_create))
        .route(
            "/t/{tenant}/settings/api-keys/{key}/revoke",
            web::post().to(keys_revoke),
        )
        .route(
            "/t/{tenant}/settings/integrations",
            web::get().to(integrations_list),
        )
        .route(
            "/t/{tenant}/settings/integrations",
            web::post().to(integrations_create),
        )
        .route(
            "/t/{tenant}/settings/integrations/{integration}/disable",
            web::post().to(integrations_disable),
        );
}

fn when(time: Option<chrono::DateTime<chrono::Utc>>) -> String {
    time.map_or_else(
        || "never".to_owned(),
        |time| time.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub scopes: String,
    pub created: String,
    pub last_used: String,
    pub revoked: bool,
}

impl KeyRow {
    fn new(key: &ApiKey, last_used: Option<chrono::DateTime<chrono::Utc>>) -> Self {
        Self {
            id: key.id.to_string(),
            name: key.name.clone(),
            scopes: key.scopes_label(),
            created: when(Some(key.created)),
            last_used: when(last_used),
            revoked: key.revoked,
        }
    }
}

/// A key or secret shown once; the template exposes it, nothing else does.
pub struct NewSecret {
    pub name: String,
    pub secret: SecretString,
    /// The webhook URL, for integrations.
    pub url: Option<String>,
}

#[derive(Template)]
#[template(path = "api/keys.html")]
struct KeysPage {
    chrome: Chrome,
    base: String,
    rows: Vec<KeyRow>,
    error: Option<String>,
    created: Option<NewSecret>,
}

fn keys_base(tenant: &Tenant) -> String {
    format!("/t/{}/settings/api-keys", tenant.slug)
}

/// The key list page. Blocking.
fn keys_page(
    context: &AppContext,
    session: &RequestSession,
    tenant: &Tenant,
    error: Option<String>,
    created: Option<NewSecret>,
) -> Result<KeysPage, AppError> {
    let base = keys_base(tenant);
    let mut rows = Vec::new();
    for key in context.api_keys.list(tenant.id)? {
        let last_used = context.api_keys.last_used(tenant.id, key.id)?;
        rows.push(KeyRow::new(&key, last_used));
    }
    Ok(KeysPage {
        chrome: Chrome::for_session(context, session, Some(tenant), "API keys", &base)?,
        base,
        rows,
        error,
        created,
    })
}

async fn keys_list(
    context: Data<AppContext>,
    access: TenantAccess<ManageIntegrations>,
) -> Result<HttpResponse, AppError> {
    let page = web::block(move || keys_page(&context, &access.session, &access.tenant, None, None))
        .await??;
    render(&page, StatusCode::OK)
}

async fn keys_create(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManageIntegrations>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let client = client_address(&request).map(|ip| ip.to_string());
    // Checkboxes repeat the field name, which only a list-of-pairs decoding keeps.
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
        .map_err(|_| AppError::BadRequest("The form could not be read.".to_owned()))?;
    let mut name = String::new();
    let mut scopes = Vec::new();
    for (field, value) in pairs {
        match field.as_str() {
            "name" => name = value,
            "scope" => scopes.push(value),
            _ => {}
        }
    }
    let (page, status) = web::block(move || -> Result<(KeysPage, StatusCode), AppError> {
        let attempt = || -> Result<keys::CreatedKey, ApiKeyError> {
            let scopes = scopes
                .iter()
                .map(|scope| ApiScope::parse(scope))
                .collect::<Result<BTreeSet<_>, _>>()?;
            keys::create_key(
                &context,
                &access.session.user.actor(),
                client,
                access.tenant.id,
                &name,
                scopes,
            )
        };
        match attempt() {
            Ok(created) => {
                let shown = NewSecret {
                    name: created.key.name,
                    secret: created.secret,
                    url: None,
                };
                Ok((
                    keys_page(&context, &access.session, &access.tenant, None, Some(shown))?,
                    StatusCode::OK,
                ))
            }
            Err(ApiKeyError::Store(error)) => Err(error.into()),
            Err(ApiKeyError::Audit(error)) => Err(error.into()),
            Err(error) => Ok((
                keys_page(
                    &context,
                    &access.session,
                    &access.tenant,
                    Some(error.to_string()),
                    None,
                )?,
                StatusCode::UNPROCESSABLE_ENTITY,
            )),
        }
    })
    .await??;
    render(&page, status)
}

async fn keys_revoke(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManageIntegrations>,
    path: web::Path<(String, String)>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|ip| ip.to_string());
    let id = path
        .into_inner()
        .1
        .parse::<ApiKeyId>()
        .map_err(|_| AppError::NotFound)?;
    web::block(move || -> Result<Reply, AppError> {
        let key = keys::revoke_key(
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
            format!("The API key “{}” was revoked.", key.name),
        )?;
        Ok(Reply::SeeOther(keys_base(&access.tenant)))
    })
    .await?
}

pub struct IntegrationRow {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub url: String,
    pub created: String,
    pub disabled: bool,
}

impl From<&Integration> for IntegrationRow {
    fn from(integration: &Integration) -> Self {
        Self {
            id: integration.id.to_string(),
            name: integration.name.clone(),
            kind: integration.kind.as_str(),
            url: integration.webhook_path(),
            created: when(Some(integration.created)),
            disabled: integration.disabled,
        }
    }
}

#[derive(Template)]
#[template(path = "api/integrations.html")]
struct IntegrationsPage {
    chrome: Chrome,
    base: String,
    rows: Vec<IntegrationRow>,
    error: Option<String>,
    created: Option<NewSecret>,
}

fn integrations_base(tenant: &Tenant) -> String {
    format!("/t/{}/settings/integrations", tenant.slug)
}

/// The integration list page. Blocking.
fn integrations_page(
    context: &AppContext,
    session: &RequestSession,
    tenant: &Tenant,
    error: Option<String>,
    created: Option<NewSecret>,
) -> Result<IntegrationsPage, AppError> {
    let base = integrations_base(tenant);
    let rows = context
        .integrations
        .list(tenant.id)?
        .iter()
        .map(IntegrationRow::from)
        .collect();
    Ok(IntegrationsPage {
        chrome: Chrome::for_session(context, session, Some(tenant), "Integrations", &base)?,
        base,
        rows,
        error,
        created,
    })
}

async fn integrations_list(
    context: Data<AppContext>,
    access: TenantAccess<ManageIntegrations>,
) -> Result<HttpResponse, AppError> {
    let page = web::block(move || {
        integrations_page(&context, &access.session, &access.tenant, None, None)
    })
    .await??;
    render(&page, StatusCode::OK)
}

/// Fields default to empty so that a malformed form never answers before the guard (which
/// answers another tenant's URL with 404); the domain function refuses empty values.
#[derive(Deserialize)]
struct IntegrationForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
}

async fn integrations_create(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManageIntegrations>,
    form: Form<IntegrationForm>,
) -> Result<HttpResponse, AppError> {
    let client = client_address(&request).map(|ip| ip.to_string());
    // The URL is only shown to the admin; it comes from the request's own authority (HTTP/2) or
    // Host header, never from a forwarding header, which Rapport does not trust.
    let host = request
        .uri()
        .authority()
        .map(ToString::to_string)
        .or_else(|| {
            request
                .headers()
                .get(actix_web::http::header::HOST)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| context.config.server.listen.to_string());
    let scheme = if context.uses_tls() { "https" } else { "http" };
    let origin = format!("{scheme}://{host}");
    let form = form.into_inner();
    let (page, status) = web::block(
        move || -> Result<(IntegrationsPage, StatusCode), AppError> {
            let attempt = || -> Result<webhooks::CreatedIntegration, IntegrationError> {
                let kind = IntegrationKind::parse(&form.kind)?;
                webhooks::create_integration(
                    &context,
                    &access.session.user.actor(),
                    client,
                    access.tenant.id,
                    &form.name,
                    kind,
                )
            };
            match attempt() {
                Ok(created) => {
                    let shown = NewSecret {
                        url: Some(format!("{origin}{}", created.integration.webhook_path())),
                        name: created.integration.name,
                        secret: created.secret,
                    };
                    Ok((
                        integrations_page(
                            &context,
                            &access.session,
                            &access.tenant,
                            None,
                            Some(shown),
                        )?,
                        StatusCode::OK,
                    ))
                }
                Err(IntegrationError::Store(error)) => Err(error.into()),
                Err(IntegrationError::Audit(error)) => Err(error.into()),
                Err(error) => Ok((
                    integrations_page(
                        &context,
                        &access.session,
                        &access.tenant,
                        Some(error.to_string()),
                        None,
                    )?,
                    StatusCode::UNPROCESSABLE_ENTITY,
                )),
            }
        },
    )
    .await??;
    render(&page, status)
}

async fn integrations_disable(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManageIntegrations>,
    path: web::Path<(String, String)>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|ip| ip.to_string());
    let id = path
        .into_inner()
        .1
        .parse::<IntegrationId>()
        .map_err(|_| AppError::NotFound)?;
    web::block(move || -> Result<Reply, AppError> {
        let integration = webhooks::disable_integration(
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
            format!(
                "The integration “{}” was disabled; its deliveries are refused.",
                integration.name
            ),
        )?;
        Ok(Reply::SeeOther(integrations_base(&access.tenant)))
    })
    .await?
}
