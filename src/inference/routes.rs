//! The tenant admin's analysis settings page, `/t/{tenant}/settings/analysis`: which backend the
//! tenant uses (off, local with a model, or a remote endpoint), and a connection test for the
//! remote one. The API key is write-only: the page says whether one is set, never what it is.
//!
//! And the operator's model catalogue, `/admin/models`: the installed GGUF files with their
//! metadata, digests, approval and the tenants using them, with Approve and Revoke buttons.

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Form};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use secrecy::SecretString;
use serde::Deserialize;

use crate::auth::guard::policy::{ManageAnalysis, ManageAppliance};
use crate::auth::guard::{client_address, Authorized, RequestSession, TenantAccess};
use crate::auth::session::FlashKind;
use crate::context::AppContext;
use crate::error::AppError;
use crate::inference::catalogue::{self, Catalogue, CatalogueError, DigestCache};
use crate::inference::remote::RemoteInput;
use crate::inference::settings::{self, AnalysisChoice, ModelChoice};
use crate::inference::store::AnalysisSettings;
use crate::inference::{BackendKind, InferenceError};
use crate::tenants::Tenant;
use crate::web::pages::{push_flash, render, Chrome, Reply};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/t/{tenant}/settings/analysis", web::get().to(show))
        .route("/t/{tenant}/settings/analysis", web::post().to(save))
        .route(
            "/t/{tenant}/settings/analysis/test",
            web::post().to(test_connection),
        )
        .route("/admin/models", web::get().to(models_show))
        .route("/admin/models/approve", web::post().to(models_approve))
        .route("/admin/models/revoke", web::post().to(models_revoke));
}

/// The form as posted. Every field is optional so that a missing one is reported by
/// [`settings::choose_backend`], naming it, rather than by the form decoder.
#[derive(Deserialize)]
struct AnalysisFields {
    #[serde(default)]
    backend: String,
    #[serde(default)]
    model_sha256: String,
    #[serde(default)]
    base_url: String,
    #[serde(default)]
    remote_model: String,
    #[serde(default)]
    api_key: Option<SecretString>,
    #[serde(default)]
    clear_key: Option<String>,
    #[serde(default)]
    connect_timeout_secs: String,
    #[serde(default)]
    request_timeout_secs: String,
    #[serde(default)]
    retries: String,
    #[serde(default)]
    ca_certificate: String,
}

impl AnalysisFields {
    fn choice(&self) -> AnalysisChoice {
        AnalysisChoice {
            backend: self.backend.clone(),
            model_sha256: self.model_sha256.clone(),
            remote: RemoteInput {
                base_url: self.base_url.clone(),
                model: self.remote_model.clone(),
                api_key: self.api_key.clone(),
                clear_key: self.clear_key.is_some(),
                connect_timeout_secs: self.connect_timeout_secs.clone(),
                request_timeout_secs: self.request_timeout_secs.clone(),
                retries: self.retries.clone(),
                ca_certificate_pem: self.ca_certificate.clone(),
            },
        }
    }
}

/// What the form's fields show: the stored settings, or what was typed when it was refused.
/// There is no field for the key: it is never sent back to the browser.
pub struct FormValues {
    pub backend: String,
    pub model_sha256: String,
    pub base_url: String,
    pub remote_model: String,
    pub connect_timeout_secs: String,
    pub request_timeout_secs: String,
    pub retries: String,
    pub ca_certificate: String,
}

impl FormValues {
    fn from_settings(settings: &AnalysisSettings) -> Self {
        let remote = settings.remote.as_ref();
        Self {
            backend: settings.backend.to_string(),
            model_sha256: settings.model_sha256.clone().unwrap_or_default(),
            base_url: remote.map(|r| r.base_url.clone()).unwrap_or_default(),
            remote_model: remote.map(|r| r.model.clone()).unwrap_or_default(),
            connect_timeout_secs: remote
                .map(|r| r.connect_timeout_secs.to_string())
                .unwrap_or_default(),
            request_timeout_secs: remote
                .map(|r| r.request_timeout_secs.to_string())
                .unwrap_or_default(),
            retries: remote.map(|r| r.retries.to_string()).unwrap_or_default(),
            ca_certificate: remote
                .and_then(|r| r.ca_certificate_pem.clone())
                .unwrap_or_default(),
        }
    }

    fn from_fields(fields: &AnalysisFields) -> Self {
        Self {
            backend: fields.backend.clone(),
            model_sha256: fields.model_sha256.clone(),
            base_url: fields.base_url.clone(),
            remote_model: fields.remote_model.clone(),
            connect_timeout_secs: fields.connect_timeout_secs.clone(),
            request_timeout_secs: fields.request_timeout_secs.clone(),
            retries: fields.retries.clone(),
            ca_certificate: fields.ca_certificate.clone(),
        }
    }
}

/// One line of the "current backend" summary.
pub struct SummaryLine {
    pub name: &'static str,
    pub value: String,
}

fn summary(settings: &AnalysisSettings, models: &[ModelChoice]) -> Vec<SummaryLine> {
    let line = |name, value| SummaryLine { name, value };
    match settings.backend {
        BackendKind::Off => vec![line(
            "Backend",
            "off: deterministic analyzers only, no model".to_owned(),
        )],
        BackendKind::Local => {
            let sha256 = settings.model_sha256.clone().unwrap_or_default();
            let name = models
                .iter()
                .find(|model| model.sha256 == sha256)
                .map_or_else(
                    || "an unknown model".to_owned(),
                    |model| model.file_name.clone(),
                );
            vec![
                line("Backend", "local: llama.cpp on this appliance".to_owned()),
                line("Model", format!("{name} (sha256 {sha256})")),
            ]
        }
        BackendKind::Remote => match &settings.remote {
            Some(remote) => vec![
                line(
                    "Backend",
                    "remote: an OpenAI-compatible endpoint".to_owned(),
                ),
                line("Host", remote.host()),
                line("Model", remote.model.clone()),
                line(
                    "API key",
                    if remote.api_key.is_some() {
                        "a key is set".to_owned()
                    } else {
                        "no key".to_owned()
                    },
                ),
                line(
                    "Trusted CA",
                    if remote.ca_certificate_pem.is_some() {
                        "the CA certificate given below".to_owned()
                    } else {
                        "the operating system's trust store".to_owned()
                    },
                ),
                line(
                    "Timeouts and retries",
                    format!(
                        "connect {} s, request {} s, {} retries",
                        remote.connect_timeout_secs, remote.request_timeout_secs, remote.retries
                    ),
                ),
            ],
            None => vec![line("Backend", "remote, not configured".to_owned())],
        },
    }
}

#[derive(Template)]
#[template(path = "inference/analysis.html")]
struct AnalysisPage {
    chrome: Chrome,
    base: String,
    summary: Vec<SummaryLine>,
    models: Vec<ModelChoice>,
    values: FormValues,
    key_set: bool,
    remote_saved: bool,
    error: Option<String>,
    notice: Option<String>,
}

fn base(tenant: &Tenant) -> String {
    format!("/t/{}/settings/analysis", tenant.slug)
}

/// The page. Blocking.
fn page(
    context: &AppContext,
    session: &RequestSession,
    tenant: &Tenant,
    typed: Option<FormValues>,
    error: Option<String>,
    notice: Option<String>,
) -> Result<AnalysisPage, AppError> {
    let base = base(tenant);
    let settings = settings::current_settings(context, tenant)?;
    let models = settings::model_choices(context)?;
    Ok(AnalysisPage {
        chrome: Chrome::for_session(context, session, Some(tenant), "Analysis", &base)?,
        base,
        summary: summary(&settings, &models),
        models,
        key_set: settings
            .remote
            .as_ref()
            .is_some_and(|remote| remote.api_key.is_some()),
        remote_saved: settings.remote.is_some(),
        values: typed.unwrap_or_else(|| FormValues::from_settings(&settings)),
        error,
        notice,
    })
}

async fn show(
    context: Data<AppContext>,
    access: TenantAccess<ManageAnalysis>,
) -> Result<HttpResponse, AppError> {
    let page =
        web::block(move || page(&context, &access.session, &access.tenant, None, None, None))
            .await??;
    render(&page, StatusCode::OK)
}

async fn save(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManageAnalysis>,
    form: Form<AnalysisFields>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|ip| ip.to_string());
    let fields = form.into_inner();
    web::block(move || -> Result<Reply, AppError> {
        let session = &access.session;
        match settings::choose_backend(
            &context,
            session.user.actor(),
            client,
            &access.tenant,
            &fields.choice(),
        ) {
            Ok(_) => {
                push_flash(
                    &context,
                    session,
                    FlashKind::Success,
                    "Analysis settings saved.",
                )?;
                Ok(Reply::SeeOther(base(&access.tenant)))
            }
            Err(InferenceError::Setting(problem)) => {
                let page = page(
                    &context,
                    session,
                    &access.tenant,
                    Some(FormValues::from_fields(&fields)),
                    Some(problem.to_string()),
                    None,
                )?;
                Reply::page(&page, StatusCode::UNPROCESSABLE_ENTITY)
            }
            Err(other) => Err(other.into()),
        }
    })
    .await?
}

async fn test_connection(
    context: Data<AppContext>,
    access: TenantAccess<ManageAnalysis>,
) -> Result<Reply, AppError> {
    web::block(move || -> Result<Reply, AppError> {
        let (status, error, notice) = match settings::test_connection(&context, &access.tenant) {
            Ok(report) => (
                StatusCode::OK,
                None,
                Some(format!(
                    "{} answered in {} ms (model {}).",
                    report.host,
                    report.elapsed.as_millis(),
                    report.model
                )),
            ),
            Err(InferenceError::Store(error)) => return Err(error.into()),
            Err(error @ InferenceError::Remote(_)) => {
                (StatusCode::BAD_GATEWAY, Some(error.to_string()), None)
            }
            Err(error) => (StatusCode::CONFLICT, Some(error.to_string()), None),
        };
        let page = page(
            &context,
            &access.session,
            &access.tenant,
            None,
            error,
            notice,
        )?;
        Reply::page(&page, status)
    })
    .await?
}

#[derive(Template)]
#[template(path = "inference/models.html")]
struct ModelsPage {
    chrome: Chrome,
    catalogue: Catalogue,
    error: Option<String>,
}

const MODELS_PATH: &str = "/admin/models";

/// The catalogue page. Blocking: it may hash new or changed model files.
fn models_page(
    context: &AppContext,
    session: &RequestSession,
    error: Option<String>,
) -> Result<ModelsPage, AppError> {
    Ok(ModelsPage {
        chrome: Chrome::for_session(context, session, None, "Models", MODELS_PATH)?,
        catalogue: catalogue::catalogue(context, DigestCache::shared())
            .map_err(catalogue_failure)?,
        error,
    })
}

/// A failure that is not a refusal to show on the page.
fn catalogue_failure(error: CatalogueError) -> AppError {
    match error {
        CatalogueError::Store(error) => error.into(),
        CatalogueError::Audit(error) => error.into(),
        CatalogueError::Inference(error) => error.into(),
        CatalogueError::Tenant(error) => error.into(),
        other => AppError::internal(&other),
    }
}

/// The status of a refused approval or revocation, or `None` for a failure of the appliance.
fn refusal_status(error: &CatalogueError) -> Option<StatusCode> {
    match error {
        CatalogueError::InvalidDigest(_) | CatalogueError::Unreadable(_) => {
            Some(StatusCode::UNPROCESSABLE_ENTITY)
        }
        CatalogueError::NotFound { .. } => Some(StatusCode::NOT_FOUND),
        CatalogueError::DefaultModel
        | CatalogueError::NotApproved(_)
        | CatalogueError::InUse { .. }
        | CatalogueError::Changed { .. } => Some(StatusCode::CONFLICT),
        CatalogueError::Store(_)
        | CatalogueError::Audit(_)
        | CatalogueError::Inference(_)
        | CatalogueError::Tenant(_) => None,
    }
}

/// After an approval or revocation: back to the list with a message, or the page again with the
/// refusal.
fn models_reply(
    context: &AppContext,
    session: &RequestSession,
    result: Result<String, CatalogueError>,
) -> Result<Reply, AppError> {
    match result {
        Ok(message) => {
            push_flash(context, session, FlashKind::Success, message)?;
            Ok(Reply::SeeOther(MODELS_PATH.to_owned()))
        }
        Err(error) => match refusal_status(&error) {
            Some(status) => {
                let page = models_page(context, session, Some(error.to_string()))?;
                Reply::page(&page, status)
            }
            None => Err(catalogue_failure(error)),
        },
    }
}

async fn models_show(
    context: Data<AppContext>,
    access: Authorized<ManageAppliance>,
) -> Result<HttpResponse, AppError> {
    let page = web::block(move || models_page(&context, &access.session, None)).await??;
    render(&page, StatusCode::OK)
}

#[derive(Deserialize)]
struct ApproveFields {
    #[serde(default)]
    sha256: String,
}

async fn models_approve(
    request: HttpRequest,
    context: Data<AppContext>,
    access: Authorized<ManageAppliance>,
    form: Form<ApproveFields>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|ip| ip.to_string());
    web::block(move || {
        let session = &access.session;
        let result = catalogue::approve_digest(
            &context,
            &session.user.actor(),
            client,
            DigestCache::shared(),
            &form.sha256,
        )
        .map(|approved| {
            if approved.newly {
                format!("Model sha256 {} approved.", approved.sha256)
            } else {
                format!("Model sha256 {} was already approved.", approved.sha256)
            }
        });
        models_reply(&context, session, result)
    })
    .await?
}

#[derive(Deserialize)]
struct RevokeFields {
    #[serde(default)]
    sha256: String,
    #[serde(default)]
    force: Option<String>,
}

async fn models_revoke(
    request: HttpRequest,
    context: Data<AppContext>,
    access: Authorized<ManageAppliance>,
    form: Form<RevokeFields>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|ip| ip.to_string());
    web::block(move || {
        let session = &access.session;
        let result = catalogue::revoke(
            &context,
            &session.user.actor(),
            client,
            &form.sha256,
            form.force.is_some(),
        )
        .map(|revoked| {
            format!(
                "Model sha256 {} revoked; it is no longer loaded.",
                revoked.approval.sha256
            )
        });
        models_reply(&context, session, result)
    })
    .await?
}
