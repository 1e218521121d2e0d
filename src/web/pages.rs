//! What every page shares: the chrome (title, navigation by role, flash messages, the CSRF token
//! for the sign-out form), the landing redirect, health probes and the 404 page.

use actix_web::http::{header, StatusCode};
use actix_web::web::{self, Data};
use actix_web::{HttpRequest, HttpResponse, Responder};
use askama::Template;

use crate::auth::guard::{RequestSession, SignedIn};
use crate::auth::session::{Flash, FlashKind};
use crate::auth::Permission;
use crate::context::AppContext;
use crate::error::AppError;
use crate::tenants::Tenant;
use crate::web::assets;

pub struct NavLink {
    pub href: String,
    pub label: &'static str,
    pub active: bool,
    /// A count shown beside the label (the open alerts), when there is one.
    pub badge: Option<usize>,
}

/// The frame around every page.
pub struct Chrome {
    pub title: String,
    pub user_email: Option<String>,
    pub role_label: &'static str,
    pub nav: Vec<NavLink>,
    pub flash: Vec<Flash>,
    pub csrf_token: String,
    pub asset_version: &'static str,
}

impl Flash {
    /// CSS class suffix and the word said before the text (so meaning never rests on colour).
    pub fn css_class(&self) -> &'static str {
        match self.kind {
            FlashKind::Success => "success",
            FlashKind::Error => "error",
        }
    }
}

fn nav_for(session: &RequestSession, tenant: Option<&Tenant>, active: &str) -> Vec<NavLink> {
    let role = session.user.role;
    let mut links: Vec<(String, &'static str)> = Vec::new();
    if role.grants(Permission::ManageAppliance) {
        links.push(("/admin/tenants".to_owned(), "Tenants"));
        links.push(("/admin/users".to_owned(), "Users"));
        links.push(("/admin/models".to_owned(), "Models"));
    }
    if role.grants(Permission::ViewApplianceAudit) {
        links.push(("/admin/audit".to_owned(), "Audit log"));
    }
    if let Some(tenant) = tenant {
        let base = format!("/t/{}", tenant.slug);
        links.push((format!("{base}/"), "Home"));
        if role.grants(Permission::ViewTenantData) {
            links.push((format!("{base}/interactions"), "Interactions"));
            links.push((format!("{base}/accounts"), "Accounts"));
            links.push((format!("{base}/contacts"), "Contacts"));
            links.push((format!("{base}/signals"), "Signals"));
            links.push((format!("{base}/search"), "Search"));
        }
        if role.grants(Permission::ImportTenantData) {
            links.push((format!("{base}/imports"), "Imports"));
        }
        if role.grants(Permission::RequestAnalysis) {
            links.push((format!("{base}/analysis"), "Analysis"));
        }
        if role.grants(Permission::ManagePrivacy) {
            links.push((format!("{base}/privacy/restrictions"), "Restrictions"));
            links.push((format!("{base}/privacy/requests"), "Privacy requests"));
        }
        if role.grants(Permission::ManageRetention) {
            links.push((format!("{base}/privacy/retention"), "Retention"));
            links.push((format!("{base}/privacy/holds"), "Legal holds"));
        }
        if role.grants(Permission::ManageTenantUsers) {
            links.push((format!("{base}/users"), "Users"));
        }
        if role.grants(Permission::ManageTenantSecurity) {
            links.push((format!("{base}/settings/security"), "Security"));
        }
        if role.grants(Permission::ViewTenantAudit) {
            links.push((format!("{base}/audit"), "Audit log"));
        }
        if role.grants(Permission::ManageIntegrations) {
            links.push((format!("{base}/settings/api-keys"), "API keys"));
            links.push((format!("{base}/settings/integrations"), "Integrations"));
        }
        if role.grants(Permission::ManageAnalysis) {
            links.push((format!("{base}/settings/analysis"), "Analysis"));
        }
        if role.grants(Permission::ViewTenantData) {
            links.push((format!("{base}/qa"), "QA"));
        }
        if role.grants(Permission::ManageScorecards) {
            links.push((format!("{base}/settings/scorecard"), "Scorecard"));
        }
        if role.grants(Permission::SendFeedbackRequests) {
            links.push((format!("{base}/feedback"), "Feedback"));
        }
        if role.grants(Permission::ManageFeedbackSettings) {
            links.push((format!("{base}/settings/feedback"), "Feedback template"));
        }
        if role.grants(Permission::WorkAlerts) {
            links.push((format!("{base}/alerts"), "Alerts"));
        }
        if role.grants(Permission::ManageAlertRules) {
            links.push((format!("{base}/settings/alerts"), "Alert rules"));
        }
        if role.grants(Permission::WorkLeads) {
            links.push((format!("{base}/leads"), "Leads"));
        }
        if role.grants(Permission::ManageIntegrations) {
            links.push((format!("{base}/settings/crm"), "CRM hand-off"));
        }
        if role.grants(Permission::WorkReviews) {
            links.push((format!("{base}/reviews"), "Reviews"));
        }
        if role.grants(Permission::ManageReviewSettings) {
            links.push((format!("{base}/settings/reviews"), "Reply drafts"));
        }
        if role.grants(Permission::ManageHealth) {
            links.push((format!("{base}/settings/health"), "Account health"));
        }
        if role.grants(Permission::ViewDashboards) {
            links.push((format!("{base}/dashboard"), "Dashboard"));
        }
    }
    links.push(("/account/password".to_owned(), "Password"));
    links.push(("/account/second-factor".to_owned(), "Two-factor"));
    links
        .into_iter()
        .map(|(href, label)| NavLink {
            active: href == active,
            href,
            label,
            badge: None,
        })
        .collect()
}

impl Chrome {
    pub fn anonymous(title: &str) -> Self {
        Self {
            title: title.to_owned(),
            user_email: None,
            role_label: "",
            nav: Vec::new(),
            flash: Vec::new(),
            csrf_token: String::new(),
            asset_version: assets::VERSION.as_str(),
        }
    }

    /// The chrome for a signed-in page; takes (and clears) the session's flash messages.
    /// Blocking: call from the blocking pool.
    pub fn for_session(
        context: &AppContext,
        session: &RequestSession,
        tenant: Option<&Tenant>,
        title: &str,
        active: &str,
    ) -> Result<Self, AppError> {
        let mut flash = Vec::new();
        if !session.session.flash.is_empty() {
            let mut updated = session.session.clone();
            flash = std::mem::take(&mut updated.flash);
            context.sessions.save(&session.token, &updated)?;
        }
        let mut nav = nav_for(session, tenant, active);
        if let Some(tenant) = tenant.filter(|_| session.user.role.grants(Permission::WorkAlerts)) {
            alert_badge(context, session, tenant, &mut nav);
        }
        Ok(Self {
            title: title.to_owned(),
            user_email: Some(session.user.email.to_string()),
            role_label: session.user.role.label(),
            nav,
            flash,
            csrf_token: session.session.csrf_token.clone(),
            asset_version: assets::VERSION.as_str(),
        })
    }
}

/// Puts the number of the user's open alerts beside the Alerts link. A failure to count only
/// leaves the count out (logged without content): it must not take every page down.
fn alert_badge(
    context: &AppContext,
    session: &RequestSession,
    tenant: &Tenant,
    nav: &mut [NavLink],
) {
    let href = format!("/t/{}/alerts", tenant.slug);
    let Some(link) = nav.iter_mut().find(|link| link.href == href) else {
        return;
    };
    match crate::alerts::open_count(context, tenant.id, &session.user) {
        Ok(count) => link.badge = (count > 0).then_some(count),
        Err(error) => tracing::warn!(tenant = %tenant.id, %error, "open alerts not counted"),
    }
}

/// Records one read of a tenant's personal data by the session's user, before the page that
/// shows it is rendered (a failed audit write shows nothing). `target` names ids, never content.
/// Blocking.
pub fn audit_personal_read(
    context: &AppContext,
    session: &RequestSession,
    tenant: &Tenant,
    client: Option<String>,
    target: impl Into<String>,
) -> Result<(), AppError> {
    context.audit(
        crate::audit::AuditEvent::new(
            Some(tenant.id),
            session.user.actor(),
            crate::audit::AuditAction::PersonalDataRead,
            target,
        )
        .client(client),
    )?;
    Ok(())
}

/// A time as the console shows it.
pub fn format_time(time: chrono::DateTime<chrono::Utc>) -> String {
    time.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// Queues a message for the next page of this session. Blocking.
pub fn push_flash(
    context: &AppContext,
    session: &RequestSession,
    kind: FlashKind,
    text: impl Into<String>,
) -> Result<(), AppError> {
    let mut updated = session.session.clone();
    updated.flash.push(Flash {
        kind,
        text: text.into(),
    });
    context.sessions.save(&session.token, &updated)?;
    Ok(())
}

/// What a handler's blocking part produces. Actix responses are not `Send`, so work done on the
/// blocking pool returns this and the async side turns it into the response.
pub enum Reply {
    SeeOther(String),
    Page(StatusCode, String),
}

impl Reply {
    pub fn page(template: &impl Template, status: StatusCode) -> Result<Self, AppError> {
        let body = template
            .render()
            .map_err(|error| AppError::internal(&error))?;
        Ok(Self::Page(status, body))
    }
}

impl Responder for Reply {
    type Body = actix_web::body::BoxBody;

    fn respond_to(self, _request: &HttpRequest) -> HttpResponse {
        match self {
            Self::SeeOther(location) => see_other(&location),
            Self::Page(status, body) => HttpResponse::build(status)
                .content_type("text/html; charset=utf-8")
                .body(body),
        }
    }
}

/// Renders a page template with `status`.
pub fn render(template: &impl Template, status: StatusCode) -> Result<HttpResponse, AppError> {
    let body = template
        .render()
        .map_err(|error| AppError::internal(&error))?;
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(body))
}

/// A 303 to `location`, the answer to every successful form post.
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/", web::get().to(landing))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

/// Sends each user to where their role works: operators to the tenant list, members to their
/// tenant's home.
async fn landing(context: Data<AppContext>, signed_in: SignedIn) -> Result<HttpResponse, AppError> {
    let user = signed_in.0.user;
    let Some(tenant_id) = user.tenant else {
        return Ok(see_other("/admin/tenants"));
    };
    let tenant = web::block(move || context.tenants.get(tenant_id))
        .await??
        .ok_or(AppError::NotFound)?;
    Ok(see_other(&format!("/t/{}/", tenant.slug)))
}

/// Liveness: the process answers.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// Readiness: the database answers and the keys are loaded (the store only opens with them).
async fn readyz(context: Data<AppContext>) -> HttpResponse {
    let ready = web::block(move || {
        context.store.audit_key().is_ok() && context.store.size_on_disk().is_ok()
    })
    .await
    .unwrap_or(false);
    if ready {
        HttpResponse::Ok().content_type("text/plain").body("ready")
    } else {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("not ready")
    }
}

pub async fn not_found(_request: HttpRequest) -> Result<HttpResponse, AppError> {
    Err(AppError::NotFound)
}
