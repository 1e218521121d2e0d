//! The privacy officer's Restrictions page, `/t/{tenant}/privacy/restrictions`: the restricted and
//! objecting subjects (a read of personal data, audited), a form to record one, and Lift.

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Form};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use crate::auth::guard::policy::ManagePrivacy;
use crate::auth::guard::{client_address, RequestSession, TenantAccess};
use crate::auth::session::FlashKind;
use crate::context::AppContext;
use crate::error::AppError;
use crate::privacy::{lift, restrict, PrivacyError, RestrictionKind, Restrictions};
use crate::tenants::Tenant;
use crate::web::pages::{audit_personal_read, format_time, push_flash, render, Chrome, Reply};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/t/{tenant}/privacy/restrictions", web::get().to(show))
        .route("/t/{tenant}/privacy/restrictions", web::post().to(add))
        .route(
            "/t/{tenant}/privacy/restrictions/{token}/lift",
            web::post().to(lift_one),
        );
}

pub struct RestrictionRow {
    pub email: String,
    pub kind: &'static str,
    pub reason: String,
    pub recorded_by: String,
    pub recorded_at: String,
    pub lift_url: String,
}

#[derive(Template)]
#[template(path = "privacy/restrictions.html")]
struct RestrictionsPage {
    chrome: Chrome,
    base: String,
    rows: Vec<RestrictionRow>,
    error: Option<String>,
    typed_email: String,
    typed_reason: String,
}

fn base(tenant: &Tenant) -> String {
    format!("/t/{}/privacy/restrictions", tenant.slug)
}

/// The page, its read audited. Blocking.
fn page(
    context: &AppContext,
    session: &RequestSession,
    tenant: &Tenant,
    client: Option<String>,
    error: Option<String>,
    typed: (String, String),
) -> Result<RestrictionsPage, AppError> {
    let base = base(tenant);
    let restrictions = Restrictions::new(context.store.clone()).list(tenant.id)?;
    audit_personal_read(
        context,
        session,
        tenant,
        client,
        format!("privacy restrictions ({} shown)", restrictions.len()),
    )?;
    Ok(RestrictionsPage {
        chrome: Chrome::for_session(context, session, Some(tenant), "Restrictions", &base)?,
        rows: restrictions
            .into_iter()
            .map(|(token, restriction)| RestrictionRow {
                email: restriction.email,
                kind: restriction.kind.as_str(),
                reason: restriction.reason,
                recorded_by: restriction.recorded_by,
                recorded_at: format_time(restriction.recorded_at),
                lift_url: format!("{base}/{}/lift", hex::encode(token)),
            })
            .collect(),
        base,
        error,
        typed_email: typed.0,
        typed_reason: typed.1,
    })
}

async fn show(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManagePrivacy>,
) -> Result<HttpResponse, AppError> {
    let client = client_address(&request).map(|address| address.to_string());
    let page = web::block(move || {
        page(
            &context,
            &access.session,
            &access.tenant,
            client,
            None,
            (String::new(), String::new()),
        )
    })
    .await??;
    render(&page, StatusCode::OK)
}

#[derive(Deserialize)]
struct RestrictionFields {
    #[serde(default)]
    email: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    reason: String,
}

async fn add(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManagePrivacy>,
    form: Form<RestrictionFields>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|address| address.to_string());
    let fields = form.into_inner();
    web::block(move || -> Result<Reply, AppError> {
        let outcome = match RestrictionKind::parse(&fields.kind) {
            Some(kind) => restrict(
                &context,
                &access.session.user.actor(),
                client.clone(),
                access.tenant.id,
                &fields.email,
                kind,
                &fields.reason,
            ),
            None => Err(PrivacyError::Invalid {
                field: "Kind",
                message: "choose restriction or objection".to_owned(),
            }),
        };
        match outcome {
            Ok(_) => {
                push_flash(
                    &context,
                    &access.session,
                    FlashKind::Success,
                    "Recorded. Analysis skips this subject's interactions from its next batch on.",
                )?;
                Ok(Reply::SeeOther(base(&access.tenant)))
            }
            Err(PrivacyError::Invalid { field, message }) => {
                let page = page(
                    &context,
                    &access.session,
                    &access.tenant,
                    client,
                    Some(format!("{field}: {message}")),
                    (fields.email, fields.reason),
                )?;
                Reply::page(&page, StatusCode::UNPROCESSABLE_ENTITY)
            }
            Err(other) => Err(other.into()),
        }
    })
    .await?
}

async fn lift_one(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManagePrivacy>,
    path: web::Path<(String, String)>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|address| address.to_string());
    let token: [u8; 32] = hex::decode(&path.1)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(AppError::NotFound)?;
    web::block(move || -> Result<Reply, AppError> {
        lift(
            &context,
            &access.session.user.actor(),
            client,
            access.tenant.id,
            &token,
        )?;
        push_flash(
            &context,
            &access.session,
            FlashKind::Success,
            "Restriction lifted. The subject's interactions are analysed again when they are next queued.",
        )?;
        Ok(Reply::SeeOther(base(&access.tenant)))
    })
    .await?
}

impl From<PrivacyError> for AppError {
    fn from(error: PrivacyError) -> Self {
        match error {
            PrivacyError::Store(store) => store.into(),
            PrivacyError::Audit(audit) => audit.into(),
            PrivacyError::NotFound => Self::NotFound,
            PrivacyError::Invalid { field, message } => {
                Self::BadRequest(format!("{field}: {message}"))
            }
        }
    }
}
