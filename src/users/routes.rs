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
            "/admin/users/{scope}/{user}/{action}",
            web::post().to(operator_user_action),
        )
        .route("/t/{tenant}/users", web::get().to(tenant_list))
        .route("/t/{tenant}/users", web::post().to(tenant_create))
        .route(
            "/t/{tenant}/users/{user}/{action}",
            web::post().to(tenant_user_action),
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
    /// The signed-in user's own row: no actions (those are on the account pages).
    pub is_self: bool,
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

fn row(user: &User, tenant_label: String, url: String, viewer: UserId) -> UserRow {
    UserRow {
        is_self: user.id == viewer,
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
    client: Option<&str>,
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
                rows.push(row(&operator, "—".to_owned(), url, session.user.id));
            }
            for tenant in context.tenants.list()? {
                for member in context.users.list(Some(tenant.id))? {
                    let url = format!("{base}/{}/{}", tenant.id, member.id);
                    rows.push(row(&member, tenant.slug.to_string(), url, session.user.id));
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
                rows.push(row(&member, tenant.slug.to_string(), url, session.user.id));
            }
            (
                format!("Users of {}", tenant.name),
                Some(*tenant),
                Role::TENANT_ROLES.to_vec(),
            )
        }
    };
    // The operator's list shows every tenant's members: each tenant's own log records the read,
    // so its auditors see it too.
    let mut scopes = vec![directory.audit_tenant()];
    if matches!(directory, Directory::Appliance) {
        scopes.extend(
            context
                .tenants
                .list()?
                .into_iter()
                .map(|tenant| Some(tenant.id)),
        );
    }
    context.audit_all(
        scopes
            .into_iter()
            .map(|tenant| {
                AuditEvent::new(
                    tenant,
                    session.user.actor(),
                    AuditAction::PersonalDataRead,
                    "user list",
                )
                .client(client.map(str::to_owned))
            })
            .collect(),
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
    client: Option<&str>,
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
            client.map(str::to_owned),
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
            client.as_deref(),
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
            client.as_deref(),
            &Directory::Appliance,
            form.into_inner(),
        )
    })
    .await??;
    render(&page, status)
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
            client.as_deref(),
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
            client.as_deref(),
            &Directory::Tenant(&access.tenant),
            form.into_inner(),
        )
    })
    .await??;
    render(&page, status)
}

/// What a user row's buttons do; the last segment of the action URL.
enum UserAction {
    Disable,
    Enable,
    ResetSecondFactor,
    ChangeRole,
}

impl UserAction {
    fn parse(segment: &str) -> Result<Self, AppError> {
        match segment {
            "disable" => Ok(Self::Disable),
            "enable" => Ok(Self::Enable),
            "reset-second-factor" => Ok(Self::ResetSecondFactor),
            "role" => Ok(Self::ChangeRole),
            _ => Err(AppError::NotFound),
        }
    }
}

#[derive(Deserialize)]
struct ActionForm {
    #[serde(default)]
    role: String,
}

/// Applies one row action to `target` and queues a message saying what happened. Blocking.
fn apply_action(
    context: &AppContext,
    session: &RequestSession,
    client: Option<String>,
    target: UserRef,
    action: &UserAction,
    form: &ActionForm,
    back_to: String,
) -> Result<Reply, AppError> {
    if target == session.user.reference() {
        return Err(AppError::BadRequest(
            "You cannot change your own account here; use the Password and Two-factor pages."
                .to_owned(),
        ));
    }
    let actor = session.user.actor();
    let message = match action {
        UserAction::Disable => {
            let user = users::set_disabled(context, actor, client, target, true)?;
            format!("{} was disabled and signed out.", user.email)
        }
        UserAction::Enable => {
            let user = users::set_disabled(context, actor, client, target, false)?;
            format!("{} can sign in again.", user.email)
        }
        UserAction::ResetSecondFactor => {
            let user = users::reset_second_factor(context, actor, client, target)?;
            format!(
                "{} must set up two-factor sign-in again at the next sign-in.",
                user.email
            )
        }
        UserAction::ChangeRole => {
            let role: Role = form.role.parse()?;
            let user = users::change_role(context, actor, client, target, role)?;
            format!("{} is now {}.", user.email, user.role.label())
        }
    };
    push_flash(context, session, FlashKind::Success, message)?;
    Ok(Reply::SeeOther(back_to))
}

async fn operator_user_action(
    request: HttpRequest,
    context: Data<AppContext>,
    access: Authorized<ManageAppliance>,
    path: web::Path<(String, String, String)>,
    form: Form<ActionForm>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|ip| ip.to_string());
    let (scope, user, action) = path.into_inner();
    let action = UserAction::parse(&action)?;
    let tenant = match scope.as_str() {
        "appliance" => None,
        other => Some(other.parse::<TenantId>().map_err(|_| AppError::NotFound)?),
    };
    let id = user.parse::<UserId>().map_err(|_| AppError::NotFound)?;
    let target = UserRef { tenant, id };
    web::block(move || {
        // A row of a tenant that no longer exists (a stale page, a deleted tenant) is 404; its
        // scope is not touched.
        if let Some(tenant) = tenant {
            context.tenants.get(tenant)?.ok_or(AppError::NotFound)?;
        }
        apply_action(
            &context,
            &access.session,
            client,
            target,
            &action,
            &form,
            "/admin/users".to_owned(),
        )
    })
    .await?
}

async fn tenant_user_action(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManageTenantUsers>,
    path: web::Path<(String, String, String)>,
    form: Form<ActionForm>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|ip| ip.to_string());
    let (_, user, action) = path.into_inner();
    let action = UserAction::parse(&action)?;
    let id = user.parse::<UserId>().map_err(|_| AppError::NotFound)?;
    let target = UserRef {
        tenant: Some(access.tenant.id),
        id,
    };
    let back_to = format!("/t/{}/users", access.tenant.slug);
    web::block(move || {
        apply_action(
            &context,
            &access.session,
            client,
            target,
            &action,
            &form,
            back_to,
        )
    })
    .await?
}
