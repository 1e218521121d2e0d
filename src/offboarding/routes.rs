//! The operator's offboarding page of a tenant, `/admin/tenants/{slug}/offboarding`: its state
//! (wind-down with the purge date and the export's digest, or the tombstone), the form that
//! starts it, and the button that cancels a wind-down. Operators only (`ManageAppliance`).

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Form, Path};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use chrono::Utc;
use serde::Deserialize;

use crate::auth::guard::policy::ManageAppliance;
use crate::auth::guard::{client_address, Authorized};
use crate::auth::session::FlashKind;
use crate::context::AppContext;
use crate::error::AppError;
use crate::offboarding::{
    self, export, Offboarding, OffboardingError, StartRequest, DEFAULT_WIND_DOWN_DAYS,
    MAX_WIND_DOWN_DAYS,
};
use crate::web::pages::{push_flash, render, Chrome, Reply};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/admin/tenants/{slug}/offboarding", web::get().to(show))
        .route("/admin/tenants/{slug}/offboarding", web::post().to(start))
        .route(
            "/admin/tenants/{slug}/offboarding/cancel",
            web::post().to(cancel),
        );
}

#[derive(Template)]
#[template(path = "offboarding/show.html")]
struct OffboardingPage {
    chrome: Chrome,
    slug: String,
    name: String,
    offboarding: Option<Offboarding>,
    error: Option<String>,
    wind_down_days: String,
    default_days: u32,
    max_days: u32,
}

#[derive(Deserialize)]
struct StartForm {
    #[serde(default)]
    wind_down_days: String,
}

/// What the operator did wrong (shown on the page) or an internal failure.
fn user_error(error: &OffboardingError) -> Option<StatusCode> {
    match error {
        OffboardingError::WindDown(_) => Some(StatusCode::UNPROCESSABLE_ENTITY),
        OffboardingError::Held { .. }
        | OffboardingError::AlreadyStarted { .. }
        | OffboardingError::NotStarted(_)
        | OffboardingError::Purged(_)
        | OffboardingError::NotDue { .. }
        | OffboardingError::ExportExists(_) => Some(StatusCode::CONFLICT),
        _ => None,
    }
}

fn page(
    context: &AppContext,
    access: &Authorized<ManageAppliance>,
    slug: &str,
    error: Option<String>,
    wind_down_days: String,
) -> Result<OffboardingPage, AppError> {
    let offboarding = offboarding::status(context, slug).map_err(|e| AppError::internal(&e))?;
    let name = match (&offboarding, context.tenants.find_by_slug(slug)?) {
        (_, Some(tenant)) => tenant.name,
        (Some(offboarding), None) => offboarding.name.clone(),
        (None, None) => return Err(AppError::NotFound),
    };
    Ok(OffboardingPage {
        chrome: Chrome::for_session(
            context,
            &access.session,
            None,
            "Offboarding",
            "/admin/tenants",
        )?,
        slug: slug.to_owned(),
        name,
        offboarding,
        error,
        wind_down_days,
        default_days: DEFAULT_WIND_DOWN_DAYS,
        max_days: MAX_WIND_DOWN_DAYS,
    })
}

/// The typed wind-down: empty for the default, else a whole number (its range is checked by
/// [`offboarding::wind_down_days`]).
fn parse_days(typed: &str) -> Result<Option<i64>, String> {
    if typed.is_empty() {
        return Ok(None);
    }
    typed.parse::<i64>().map(Some).map_err(|_| {
        format!("the wind-down is a whole number of days from 1 to {MAX_WIND_DOWN_DAYS}")
    })
}

async fn show(
    context: Data<AppContext>,
    access: Authorized<ManageAppliance>,
    slug: Path<String>,
) -> Result<HttpResponse, AppError> {
    let slug = slug.into_inner();
    let page = web::block(move || page(&context, &access, &slug, None, String::new())).await??;
    render(&page, StatusCode::OK)
}

async fn start(
    request: HttpRequest,
    context: Data<AppContext>,
    access: Authorized<ManageAppliance>,
    slug: Path<String>,
    form: Form<StartForm>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|ip| ip.to_string());
    let slug = slug.into_inner();
    let typed = form.into_inner().wind_down_days.trim().to_owned();
    // The slug names a directory below: only a valid slug goes further.
    if crate::tenants::Slug::parse(&slug).is_err() {
        return Err(AppError::NotFound);
    }
    web::block(move || -> Result<Reply, AppError> {
        let days = match parse_days(&typed) {
            Ok(days) => days,
            Err(message) => {
                let page = page(&context, &access, &slug, Some(message), typed)?;
                return Reply::page(&page, StatusCode::UNPROCESSABLE_ENTITY);
            }
        };
        let now = Utc::now();
        let export_dir = export::console_export_path(&context, &slug, now)
            .map_err(|error| AppError::internal(&error))?;
        let actor = access.session.user.actor();
        let started = offboarding::start(
            &context,
            &StartRequest {
                actor: &actor,
                client,
                slug: &slug,
                wind_down_days: days,
                export_dir: &export_dir,
            },
            now,
        );
        match started {
            Ok(offboarding) => {
                push_flash(
                    &context,
                    &access.session,
                    FlashKind::Success,
                    format!(
                        "Tenant {} exported to {} (manifest sha256 {}) and locked; it is purged after {}.",
                        offboarding.slug,
                        offboarding.export.path.display(),
                        offboarding.export.manifest_sha256,
                        offboarding.purge_after_text()
                    ),
                )?;
                Ok(Reply::SeeOther(format!(
                    "/admin/tenants/{}/offboarding",
                    offboarding.slug
                )))
            }
            Err(OffboardingError::NotFound(_)) => Err(AppError::NotFound),
            Err(error) => match user_error(&error) {
                Some(status) => {
                    let page = page(&context, &access, &slug, Some(error.to_string()), typed)?;
                    Reply::page(&page, status)
                }
                None => Err(AppError::internal(&error)),
            },
        }
    })
    .await?
}

async fn cancel(
    request: HttpRequest,
    context: Data<AppContext>,
    access: Authorized<ManageAppliance>,
    slug: Path<String>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|ip| ip.to_string());
    let slug = slug.into_inner();
    web::block(move || -> Result<Reply, AppError> {
        let actor = access.session.user.actor();
        match offboarding::cancel(&context, &actor, client, &slug) {
            Ok(offboarding) => {
                push_flash(
                    &context,
                    &access.session,
                    FlashKind::Success,
                    format!(
                        "Offboarding of {} cancelled: the tenant works as before.",
                        offboarding.slug
                    ),
                )?;
                Ok(Reply::SeeOther(format!(
                    "/admin/tenants/{}/offboarding",
                    offboarding.slug
                )))
            }
            Err(error) => match user_error(&error) {
                Some(status) => {
                    let page = page(
                        &context,
                        &access,
                        &slug,
                        Some(error.to_string()),
                        String::new(),
                    )?;
                    Reply::page(&page, status)
                }
                None => Err(AppError::internal(&error)),
            },
        }
    })
    .await?
}
