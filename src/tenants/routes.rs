//! The operator's tenant list, a tenant's home page and its security settings.

use std::collections::BTreeSet;

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Form};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use crate::auth::guard::policy::{ManageAppliance, ManageTenantSecurity, ViewTenant};
use crate::auth::guard::{client_address, Authorized, TenantAccess};
use crate::auth::session::FlashKind;
use crate::auth::Permission;
use crate::context::AppContext;
use crate::error::AppError;
use crate::tenants::{self, Tenant, TenantError};
use crate::users::Role;
use crate::web::pages::{push_flash, render, Chrome, Reply};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/admin/tenants", web::get().to(list))
        .route("/admin/tenants", web::post().to(create))
        .route("/t/{tenant}/", web::get().to(home))
        .route("/t/{tenant}", web::get().to(home))
        .route(
            "/t/{tenant}/settings/security",
            web::get().to(security_page),
        )
        .route(
            "/t/{tenant}/settings/security",
            web::post().to(security_submit),
        );
}

#[derive(Template)]
#[template(path = "tenants/list.html")]
struct TenantListPage {
    chrome: Chrome,
    tenants: Vec<Tenant>,
    /// Offboardings on record (winding down, purging, purged): the banner and the tombstones.
    offboardings: Vec<crate::offboarding::Offboarding>,
    error: Option<String>,
    slug: String,
    name: String,
}

impl TenantListPage {
    /// The tombstones of purged tenants.
    fn purged(&self) -> Vec<&crate::offboarding::Offboarding> {
        self.offboardings
            .iter()
            .filter(|offboarding| !offboarding.is_locked())
            .collect()
    }
}

#[derive(Deserialize)]
struct CreateForm {
    slug: String,
    name: String,
}

async fn list(
    context: Data<AppContext>,
    access: Authorized<ManageAppliance>,
) -> Result<HttpResponse, AppError> {
    let page = web::block(move || -> Result<TenantListPage, AppError> {
        Ok(TenantListPage {
            chrome: Chrome::for_session(
                &context,
                &access.session,
                None,
                "Tenants",
                "/admin/tenants",
            )?,
            tenants: context.tenants.list()?,
            offboardings: crate::offboarding::list(&context)
                .map_err(|error| AppError::internal(&error))?,
            error: None,
            slug: String::new(),
            name: String::new(),
        })
    })
    .await??;
    render(&page, StatusCode::OK)
}

async fn create(
    request: HttpRequest,
    context: Data<AppContext>,
    access: Authorized<ManageAppliance>,
    form: Form<CreateForm>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|ip| ip.to_string());
    let form = form.into_inner();
    web::block(move || -> Result<Reply, AppError> {
        let session = &access.session;
        match tenants::create_tenant(
            &context,
            session.user.actor(),
            client,
            &form.slug,
            &form.name,
        ) {
            Ok(tenant) => {
                push_flash(
                    &context,
                    session,
                    FlashKind::Success,
                    format!("Tenant {} created.", tenant.slug),
                )?;
                Ok(Reply::SeeOther("/admin/tenants".to_owned()))
            }
            Err(
                error @ (TenantError::InvalidSlug(_)
                | TenantError::InvalidName
                | TenantError::SlugTaken(_)
                | TenantError::SlugReserved(_)),
            ) => {
                let status = if matches!(
                    error,
                    TenantError::SlugTaken(_) | TenantError::SlugReserved(_)
                ) {
                    StatusCode::CONFLICT
                } else {
                    StatusCode::UNPROCESSABLE_ENTITY
                };
                let page = TenantListPage {
                    chrome: Chrome::for_session(
                        &context,
                        session,
                        None,
                        "Tenants",
                        "/admin/tenants",
                    )?,
                    tenants: context.tenants.list()?,
                    offboardings: crate::offboarding::list(&context)
                        .map_err(|error| AppError::internal(&error))?,
                    error: Some(error.to_string()),
                    slug: form.slug,
                    name: form.name,
                };
                Reply::page(&page, status)
            }
            Err(other) => Err(other.into()),
        }
    })
    .await?
}

#[derive(Template)]
#[template(path = "tenants/home.html")]
struct HomePage {
    chrome: Chrome,
    tenant: Tenant,
    role: Role,
    can_manage_users: bool,
    can_view_audit: bool,
    can_manage_analysis: bool,
    data: DataLinks,
}

/// Which of the tenant-data pages the home page links to.
struct DataLinks {
    view: bool,
    import: bool,
}

async fn home(
    context: Data<AppContext>,
    access: TenantAccess<ViewTenant>,
) -> Result<HttpResponse, AppError> {
    let page = web::block(move || -> Result<HomePage, AppError> {
        let role = access.session.user.role;
        Ok(HomePage {
            chrome: Chrome::for_session(
                &context,
                &access.session,
                Some(&access.tenant),
                &access.tenant.name,
                &format!("/t/{}/", access.tenant.slug),
            )?,
            role,
            can_manage_users: role.grants(Permission::ManageTenantUsers),
            can_view_audit: role.grants(Permission::ViewTenantAudit),
            can_manage_analysis: role.grants(Permission::ManageAnalysis),
            data: DataLinks {
                view: role.grants(Permission::ViewTenantData),
                import: role.grants(Permission::ImportTenantData),
            },
            tenant: access.tenant,
        })
    })
    .await??;
    render(&page, StatusCode::OK)
}

pub struct RoleChoice {
    pub value: &'static str,
    pub label: &'static str,
    pub checked: bool,
}

#[derive(Template)]
#[template(path = "tenants/security.html")]
struct SecurityPage {
    chrome: Chrome,
    tenant: Tenant,
    roles: Vec<RoleChoice>,
}

async fn security_page(
    context: Data<AppContext>,
    access: TenantAccess<ManageTenantSecurity>,
) -> Result<HttpResponse, AppError> {
    let page = web::block(move || -> Result<SecurityPage, AppError> {
        let settings = context.tenants.settings(access.tenant.id)?;
        let roles = Role::TENANT_ROLES
            .into_iter()
            .map(|role| RoleChoice {
                value: role.as_str(),
                label: role.label(),
                checked: settings.totp_required_roles.contains(&role),
            })
            .collect();
        Ok(SecurityPage {
            chrome: Chrome::for_session(
                &context,
                &access.session,
                Some(&access.tenant),
                "Security",
                &format!("/t/{}/settings/security", access.tenant.slug),
            )?,
            tenant: access.tenant,
            roles,
        })
    })
    .await??;
    render(&page, StatusCode::OK)
}

async fn security_submit(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManageTenantSecurity>,
    body: web::Bytes,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|ip| ip.to_string());
    // Checkboxes repeat the field name, which only a list-of-pairs decoding keeps.
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
        .map_err(|_| AppError::BadRequest("The form could not be read.".to_owned()))?;
    let mut roles = BTreeSet::new();
    for (name, value) in pairs {
        if name == "totp_role" {
            roles.insert(
                value
                    .parse::<Role>()
                    .map_err(|error| AppError::BadRequest(error.to_string()))?,
            );
        }
    }
    web::block(move || -> Result<Reply, AppError> {
        tenants::set_second_factor_roles(
            &context,
            access.session.user.actor(),
            client,
            &access.tenant,
            roles,
        )?;
        push_flash(
            &context,
            &access.session,
            FlashKind::Success,
            "Security settings saved.",
        )?;
        Ok(Reply::SeeOther(format!(
            "/t/{}/settings/security",
            access.tenant.slug
        )))
    })
    .await?
}
