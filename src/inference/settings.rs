//! A tenant's choice of analysis backend, as its tenant admin makes it in the console: what the
//! form may choose, the audited save, and the connection test of a remote endpoint.
//!
//! Validation happens before anything is written: a bad field is reported by name and the stored
//! settings stay as they were. The audit entry says which backend was chosen and, for `remote`,
//! the host and model and whether a key is set; never the key.

use std::time::{Duration, Instant};

use crate::audit::{Actor, AuditAction, AuditEvent};
use crate::context::AppContext;
use crate::inference::models::{ModelDirectories, DEFAULT_MODEL_FILE, DEFAULT_MODEL_SHA256};
use crate::inference::remote::SettingsProblem;
use crate::inference::remote::{RemoteBackend, RemoteInput, RemoteSettings, RetryPolicy};
use crate::inference::store::{AnalysisSettings, AnalysisSettingsStore, ModelApprovals};
use crate::inference::{Backend as _, BackendKind, InferenceError};
use crate::pii::Detector;
use crate::tenants::Tenant;

/// The fixed, non-personal prompt of the connection test.
pub const CONNECTION_TEST_PROMPT: &str = "Reply with the single word OK.";
/// A connection test waits at most this long, whatever the request timeout.
const CONNECTION_TEST_TIMEOUT_SECS: u32 = 30;

/// What the tenant admin submitted, unvalidated.
#[derive(Default)]
pub struct AnalysisChoice {
    /// `off`, `local` or `remote`.
    pub backend: String,
    /// The `local` backend's model, by sha256; empty means the default model.
    pub model_sha256: String,
    pub remote: RemoteInput,
}

/// A model the `local` backend may load: the default one and those the operator approved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelChoice {
    pub sha256: String,
    pub file_name: String,
}

/// The models a tenant admin may choose, the default first.
pub fn model_choices(context: &AppContext) -> Result<Vec<ModelChoice>, InferenceError> {
    let mut choices = vec![ModelChoice {
        sha256: DEFAULT_MODEL_SHA256.to_owned(),
        file_name: DEFAULT_MODEL_FILE.to_owned(),
    }];
    for approval in ModelApprovals::new(context.store.clone()).list()? {
        if approval.sha256 != DEFAULT_MODEL_SHA256 {
            choices.push(ModelChoice {
                sha256: approval.sha256,
                file_name: approval.file_name,
            });
        }
    }
    Ok(choices)
}

/// The tenant's settings as they apply now (stored, or the default).
pub fn current_settings(
    context: &AppContext,
    tenant: &Tenant,
) -> Result<AnalysisSettings, InferenceError> {
    let directories = ModelDirectories::from_config(&context.config);
    Ok(AnalysisSettingsStore::new(context.store.clone()).get(tenant.id, &directories)?)
}

fn parse_backend(raw: &str) -> Result<BackendKind, SettingsProblem> {
    match raw.trim() {
        "off" => Ok(BackendKind::Off),
        "local" => Ok(BackendKind::Local),
        "remote" => Ok(BackendKind::Remote),
        _ => Err(SettingsProblem {
            field: "Backend",
            message: "choose off, local or remote".to_owned(),
        }),
    }
}

/// Validates `choice` against the current settings and saves it, audited. The section of a
/// backend that is not chosen is kept as it was (its fields are neither read nor checked).
pub fn choose_backend(
    context: &AppContext,
    actor: Actor,
    client: Option<String>,
    tenant: &Tenant,
    choice: &AnalysisChoice,
) -> Result<AnalysisSettings, InferenceError> {
    let backend = parse_backend(&choice.backend)?;
    let mut settings = current_settings(context, tenant)?;
    match backend {
        BackendKind::Off => {}
        BackendKind::Local => {
            let sha256 = choice.model_sha256.trim().to_ascii_lowercase();
            let sha256 = if sha256.is_empty() {
                DEFAULT_MODEL_SHA256.to_owned()
            } else {
                sha256
            };
            if !model_choices(context)?
                .iter()
                .any(|model| model.sha256 == sha256)
            {
                return Err(SettingsProblem {
                    field: "Model file",
                    message: "is not one the operator approved".to_owned(),
                }
                .into());
            }
            settings.model_sha256 = Some(sha256);
        }
        BackendKind::Remote => {
            settings.remote = Some(RemoteSettings::from_input(
                &choice.remote,
                settings.remote.as_ref(),
            )?);
        }
    }
    settings.backend = backend;
    AnalysisSettingsStore::new(context.store.clone()).save(tenant.id, &settings)?;
    context.audit(
        AuditEvent::new(
            Some(tenant.id),
            actor,
            AuditAction::AnalysisSettingsChanged,
            audit_target(&settings),
        )
        .client(client),
    )?;
    Ok(settings)
}

/// What the audit entry says about the settings: the backend and what identifies its endpoint or
/// model, never the key.
fn audit_target(settings: &AnalysisSettings) -> String {
    match settings.backend {
        BackendKind::Off => "analysis backend off".to_owned(),
        BackendKind::Local => format!(
            "analysis backend local, model sha256 {}",
            settings
                .model_sha256
                .as_deref()
                .unwrap_or(DEFAULT_MODEL_SHA256)
        ),
        BackendKind::Remote => match &settings.remote {
            Some(remote) => format!(
                "analysis backend remote, host {}, model {}, {}, {}, timeouts {}/{} s, {} retries",
                remote.host(),
                remote.model,
                if remote.api_key.is_some() {
                    "a key is set"
                } else {
                    "no key"
                },
                if remote.ca_certificate_pem.is_some() {
                    "own CA"
                } else {
                    "system CAs"
                },
                remote.connect_timeout_secs,
                remote.request_timeout_secs,
                remote.retries
            ),
            None => "analysis backend remote".to_owned(),
        },
    }
}

/// How a connection test went.
#[derive(Clone, Debug)]
pub struct ConnectionReport {
    pub host: String,
    pub model: String,
    pub elapsed: Duration,
}

/// Sends [`CONNECTION_TEST_PROMPT`] to the tenant's saved remote endpoint, once, without retries
/// and with at most a 30-second timeout. The prompt holds no tenant data, so the plain detector is
/// used and no contact names are read; the reply is not kept or shown, only that there was one.
pub fn test_connection(
    context: &AppContext,
    tenant: &Tenant,
) -> Result<ConnectionReport, InferenceError> {
    let settings = current_settings(context, tenant)?;
    let Some(mut remote) = settings.remote else {
        return Err(InferenceError::Invalid(
            "no remote endpoint is saved yet; save the remote settings first".to_owned(),
        ));
    };
    remote.retries = 0;
    remote.request_timeout_secs = remote
        .request_timeout_secs
        .min(CONNECTION_TEST_TIMEOUT_SECS);
    let backend = RemoteBackend::new(&remote, Detector::default())?
        .with_retry_policy(RetryPolicy::with_retries(0));
    let started = Instant::now();
    backend.generate(CONNECTION_TEST_PROMPT, 8)?;
    tracing::info!(host = %backend.host(), "remote inference connection test succeeded");
    Ok(ConnectionReport {
        host: backend.host().to_owned(),
        model: backend.model().to_owned(),
        elapsed: started.elapsed(),
    })
}
