//! User management: the operator's appliance-wide list and each tenant admin's own.
//! New users get a generated one-time password, shown once, to be changed at first sign-in.

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Form};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use base64::Engine as _;
use secrecy::SecretString;
use serde::Deserialize;

use crate::audit::{AuditAction, AuditEvent};
use crate::auth::guard::policy::{ManageAppliance, ManageTenantUsers};
use crate::auth::guard::{client_address, Authorized, RequestSession, TenantAccess};
use crate::auth::session::FlashKind;
use crate::context::AppContext;
use crate::error::AppError;
use crate::ids::{TenantId, UserId};
use crate::tenants::Tenant;
use crate::users::{self, Email, NewUser, Role, User, UserError, UserRef};
use crate::web::pages::{push_flash, render, Chrome, Reply};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/admin/users", web::get().to(operator_list))
        .route("/admin/users", web::post().to(operator_create))
        .route(
            "/admin/users/{scope}/{user}/disable",
            web::post().to(operator_disable),
        )
        .route(
            "/admin/users/{scope}/{user}/role",
            web::post().to(operator_change_role),
        )
        .route("/t/{tenant}/users", web::get().to(tenant_list))
        .route("/t/{tenant}/users", web::post().to(tenant_create))
        .route(
            "/t/{tenant}/users/{user}/disable",
            web::post().to(tenant_disable),
        )
        .route(
            "/t/{tenant}/users/{user}/role",
            web::post().to(tenant_change_role),
        );
}

pub struct UserRow {
    pub email: String,
    pub role: &'static str,
    pub tenant: String,
    pub status: &'static str,
    pub second_factor: bool,
    pub created: String,
    /// Where this row's actions post: `<url>/disable`, `<url>/role`.
    pub url: String,
    pub active: bool,
    pub role_value: &'static str,
}

pub struct Choice {
    pub value: String,
    pub label: String,
}

pub struct CreatedUser {
    pub email: String,
    pub one_time_password: String,
}

#[derive(Template)]
#[template(path = "users/list.html")]
struct UsersPage {
    chrome: Chrome,
    heading: String,
    rows: Vec<UserRow>,
    form_action: String,
    roles: Vec<Choice>,
    tenants: Vec<Choice>,
    error: Option<String>,
    email: String,
    created: Option<CreatedUser>,
}

#[derive(Deserialize)]
struct CreateForm {
    email: String,
    role: String,
    #[serde(default)]
    tenant: String,
}

fn status_of(user: &User) -> &'static str {
    if user.disabled {
        "disabled"
    } else if user.must_change_password {
        "awaiting first sign-in"
    } else {
        "active"
    }
}

fn row(user: &User, tenant_label: String, url: String) -> UserRow {
    UserRow {
        email: user.email.to_string(),
        role: user.role.label(),
        tenant: tenant_label,
        status: status_of(user),
        second_factor: user.totp.is_some(),
        created: user.created.format("%Y-%m-%d").to_string(),
        url,
        active: !user.disabled,
        role_value: user.role.as_str(),
    }
}

fn generate_one_time_password() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crate::crypto::random_bytes::<15>())
}

/// Which list a page shows: the whole appliance (operator) or one tenant (its admin).
enum Directory<'a> {
    Appliance,
    Tenant(&'a Tenant),
}

impl Directory<'_> {
    fn audit_tenant(&self) -> Option<TenantId> {
        match self {
            Self::Appliance => None,
            Self::Tenant(tenant) => Some(tenant.id),
        }
    }

    fn base(&self) -> String {
        match self {
            Self::Appliance => "/admin/users".to_owned(),
            Self::Tenant(tenant) => format!("/t/{}/users", tenant.slug),
        }
    }
}

/// Builds the list page and records the read of the users' e-mail addresses. Blocking.
fn users_page(
    context: &AppContext,
    session: &RequestSession,
    client: Option<String>,
    directory: &Directory<'_>,
    error: Option<String>,
    email: String,
    created: Option<CreatedUser>,
) -> Result<UsersPage, AppError> {
    let base = directory.base();
    let mut rows = Vec::new();
    let mut tenant_choices = Vec::new();
    let (heading, chrome_tenant, roles) = match directory {
        Directory::Appliance => {
            for operator in context.users.list(None)? {
                let url = format!("{base}/appliance/{}", operator.id);
                rows.push(row(&operator, "—".to_owned(), url));
            }
            for tenant in context.tenants.list()? {
                for member in context.users.list(Some(tenant.id))? {
                    let url = format!("{base}/{}/{}", tenant.id, member.id);
                    rows.push(row(&member, tenant.slug.to_string(), url));
                }
                tenant_choices.push(Choice {
                    value: tenant.slug.to_string(),
                    label: format!("{} ({})", tenant.name, tenant.slug),
                });
            }
            (
                "Users of the appliance".to_owned(),
                None,
                Role::ALL.to_vec(),
            )
        }
        Directory::Tenant(tenant) => {
            for member in context.users.list(Some(tenant.id))? {
                let url = format!("{base}/{}", member.id);
                rows.push(row(&member, tenant.slug.to_string(), url));
            }
            (
                format!("Users of {}", tenant.name),
                Some(*tenant),
                Role::TENANT_ROLES.to_vec(),
            )
        }
    };
    context.audit(
        AuditEvent::new(
            directory.audit_tenant(),
            session.user.actor(),
            AuditAction::PersonalDataRead,
            "user list",
        )
        .client(client),
    )?;
    Ok(UsersPage {
        chrome: Chrome::for_session(context, session, chrome_tenant, "Users", &base)?,
        heading,
        rows,
        form_action: base,
        roles: roles
            .into_iter()
            .map(|role| Choice {
                value: role.as_str().to_owned(),
                label: role.label().to_owned(),
            })
            .collect(),
        tenants: tenant_choices,
        error,
        email,
        created,
    })
}

/// Creates a user from the form, answering with the list page (and the one-time password).
fn create_from_form(
    context: &AppContext,
    session: &RequestSession,
    client: Option<String>,
    directory: &Directory<'_>,
    form: CreateForm,
) -> Result<(UsersPage, StatusCode), AppError> {
    let attempt = || -> Result<CreatedUser, UserError> {
        let email = Email::parse(&form.email)?;
        let role: Role = form.role.parse()?;
        let tenant = match directory {
            Directory::Tenant(tenant) => {
                if !role.is_tenant_role() {
                    return Err(UserError::UnknownRole(form.role.clone()));
                }
                Some(tenant.id)
            }
            Directory::Appliance if form.tenant.is_empty() => None,
            Directory::Appliance => Some(
                context
                    .tenants
                    .find_by_slug(&form.tenant)?
                    .ok_or_else(|| {
                        UserError::UnknownTenant(form.tenant.chars().take(40).collect())
                    })?
                    .id,
            ),
        };
        let password = generate_one_time_password();
        let user = users::create_user(
            context,
            session.user.actor(),
            client.clone(),
            NewUser {
                email,
                role,
                tenant,
                password: SecretString::from(password.clone()),
                must_change_password: true,
            },
        )?;
        Ok(CreatedUser {
            email: user.email.to_string(),
            one_time_password: password,
        })
    };
    match attempt() {
        Ok(created) => Ok((
            users_page(
                context,
                session,
                client,
                directory,
                None,
                String::new(),
                Some(created),
            )?,
            StatusCode::OK,
        )),
        Err(error) => {
            let status = match error {
                UserError::EmailTaken => StatusCode::CONFLICT,
                UserError::Store(_) | UserError::Audit(_) | UserError::Hash(_) => {
                    return Err(error.into())
                }
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            let message = AppError::from(error).to_string();
            Ok((
                users_page(
                    context,
                    session,
                    client,
                    directory,
                    Some(message),
                    form.email,
                    None,
                )?,
                status,
            ))
        }
    }
}

fn disable(
    context: &AppContext,
    session: &RequestSession,
    client: Option<String>,
    target: UserRef,
    back_to: &str,
) -> Result<Reply, AppError> {
    if target == session.user.reference() {
        return Err(AppError::BadRequest(
            "You cannot disable your own account.".to_owned(),
        ));
    }
    let disabled = users::disable_user(context, session.user.actor(), client, target)?;
    push_flash(
        context,
        session,
        FlashKind::Success,
        format!("{} was disabled and signed out.", disabled.email),
    )?;
    Ok(Reply::SeeOther(back_to.to_owned()))
}

async fn operator_list(
    request: HttpRequest,
    context: Data<AppContext>,
    access: Authorized<ManageAppliance>,
) -> Result<HttpResponse, AppError> {
    let client = client_address(&request).map(|ip| ip.to_string());
    let page = web::block(move || {
        users_page(
            &context,
            &access.session,
            client,
            &Directory::Appliance,
            None,
            String::new(),
            None,
        )
    })
    .await??;
    render(&page, StatusCode::OK)
}

async fn operator_create(
    request: HttpRequest,
    context: Data<AppContext>,
    access: Authorized<ManageAppliance>,
    form: Form<CreateForm>,
) -> Result<HttpResponse, AppError> {
    let client = client_address(&request).map(|ip| ip.to_string());
    let (page, status) = web::block(move || {
        create_from_form(
            &context,
            &access.session,
            client,
            &Directory::Appliance,
            form.into_inner(),
        )
    })
    .await??;
    render(&page, status)
}

/// The user named by an operator URL: `appliance/<user>` or `<tenant id>/<user>`.
fn operator_target(path: (String, String)) -> Result<UserRef, AppError> {
    let (scope, user) = path;
    let tenant = match scope.as_str() {
        "appliance" => None,
        other => Some(other.parse::<TenantId>().map_err(|_| AppError::NotFound)?),
    };
    let id = user.parse::<UserId>().map_err(|_| AppError::NotFound)?;
    Ok(UserRef { tenant, id })
}

async fn operator_disable(
    request: HttpRequest,
    context: Data<AppContext>,
    access: Authorized<ManageAppliance>,
    path: web::Path<(String, String)>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|ip| ip.to_string());
    let target = operator_target(path.into_inner())?;
    web::block(move || disable(&context, &access.session, client, target, "/admin/users")).await?
}

#[derive(Deserialize)]
struct RoleForm {
    role: String,
}

fn change_role(
    context: &AppContext,
    session: &RequestSession,
    client: Option<String>,
    target: UserRef,
    role: &str,
    back_to: &str,
) -> Result<Reply, AppError> {
    if target == session.user.reference() {
        return Err(AppError::BadRequest(
            "You cannot change your own role.".to_owned(),
        ));
    }
    let role: Role = role
        .parse()
        .map_err(|error: UserError| AppError::BadRequest(error.to_string()))?;
    let changed = users::change_role(context, session.user.actor(), client, target, role)?;
    push_flash(
        context,
        session,
        FlashKind::Success,
        format!("{} is now {}.", changed.email, changed.role.label()),
    )?;
    Ok(Reply::SeeOther(back_to.to_owned()))
}

async fn operator_change_role(
    request: HttpRequest,
    context: Data<AppContext>,
    access: Authorized<ManageAppliance>,
    path: web::Path<(String, String)>,
    form: Form<RoleForm>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|ip| ip.to_string());
    let target = operator_target(path.into_inner())?;
    web::block(move || {
        change_role(
            &context,
            &access.session,
            client,
            target,
            &form.role,
            "/admin/users",
        )
    })
    .await?
}

async fn tenant_change_role(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManageTenantUsers>,
    path: web::Path<(String, String)>,
    form: Form<RoleForm>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|ip| ip.to_string());
    let id = path
        .into_inner()
        .1
        .parse::<UserId>()
        .map_err(|_| AppError::NotFound)?;
    let target = UserRef {
        tenant: Some(access.tenant.id),
        id,
    };
    let back_to = format!("/t/{}/users", access.tenant.slug);
    web::block(move || {
        change_role(
            &context,
            &access.session,
            client,
            target,
            &form.role,
            &back_to,
        )
    })
    .await?
}

async fn tenant_list(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManageTenantUsers>,
) -> Result<HttpResponse, AppError> {
    let client = client_address(&request).map(|ip| ip.to_string());
    let page = web::block(move || {
        users_page(
            &context,
            &access.session,
            client,
            &Directory::Tenant(&access.tenant),
            None,
            String::new(),
            None,
        )
    })
    .await??;
    render(&page, StatusCode::OK)
}

async fn tenant_create(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManageTenantUsers>,
    form: Form<CreateForm>,
) -> Result<HttpResponse, AppError> {
    let client = client_address(&request).map(|ip| ip.to_string());
    let (page, status) = web::block(move || {
        create_from_form(
            &context,
            &access.session,
            client,
            &Directory::Tenant(&access.tenant),
            form.into_inner(),
        )
    })
    .await??;
    render(&page, status)
}

async fn tenant_disable(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManageTenantUsers>,
    path: web::Path<(String, String)>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|ip| ip.to_string());
    let id = path
        .into_inner()
        .1
        .parse::<UserId>()
        .map_err(|_| AppError::NotFound)?;
    let target = UserRef {
        tenant: Some(access.tenant.id),
        id,
    };
    let back_to = format!("/t/{}/users", access.tenant.slug);
    web::block(move || disable(&context, &access.session, client, target, &back_to)).await?
}
