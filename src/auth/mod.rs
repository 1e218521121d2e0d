//! Authentication (passwords, TOTP, sessions, throttling) and authorisation (permissions per
//! role, checked by the extractors in [`guard`]).

pub mod guard;
pub mod password;
pub mod routes;
pub mod session;
pub mod throttle;
pub mod totp;

use std::net::IpAddr;
use std::time::Duration;

use chrono::Utc;
use secrecy::SecretString;

use crate::audit::{Actor, AuditAction, AuditEvent, Outcome};
use crate::context::AppContext;
use crate::users::{validate_password, Email, Role, TotpCredential, User, UserError};
use session::{Session, SessionStage, SessionToken};
use throttle::Verdict;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Hash(#[from] password::HashError),
    #[error("the current password is not correct")]
    WrongCurrentPassword,
    #[error("the new passwords do not match")]
    PasswordMismatch,
    #[error("that code is not valid (codes last 30 seconds and work once)")]
    InvalidCode,
}

/// What a role may do. Tenant permissions are never granted to the operator: the appliance's
/// administrator cannot open tenant content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// Create and list tenants; manage users of any tenant (not their content).
    ManageAppliance,
    /// Read the appliance's own audit entries.
    ViewApplianceAudit,
    /// Open the tenant's console.
    ViewTenant,
    /// Manage the tenant's users.
    ManageTenantUsers,
    /// Change the tenant's security settings.
    ManageTenantSecurity,
    /// Read the tenant's audit entries.
    ViewTenantAudit,
    /// Read the tenant's interactions, accounts, contacts and signals.
    ViewTenantData,
    /// Import data and see the import history.
    ImportTenantData,
    /// Manage API keys and webhook integrations.
    ManageIntegrations,
    /// Choose the tenant's analysis backend (off, local, or a remote endpoint that text is sent to).
    ManageAnalysis,
    /// Ask for interactions to be analysed (again) and watch the analysis queue.
    RequestAnalysis,
    /// Record and lift data subjects' restrictions of processing and objections.
    ManagePrivacy,
    /// Override a QA criterion's AI score, with a comment (QA leads).
    ReviewQa,
    /// Edit the tenant's QA scorecard and re-score after a change.
    ManageScorecards,
    /// Prepare feedback requests for contacts, export them and send them through the relay.
    SendFeedbackRequests,
    /// Edit the tenant's feedback-request template, review link and waiting period.
    ManageFeedbackSettings,
    /// Work the alerts inbox: see the alerts addressed or assigned to oneself, acknowledge,
    /// assign, snooze, resolve and reopen them (tenant admins and analysts, who act as CSMs).
    WorkAlerts,
    /// Configure the tenant's alert rules (the negative-review rule) and see every alert.
    ManageAlertRules,
    /// Work the lead inbox: mark leads, set their status and assignee, export qualified leads.
    WorkLeads,
    /// Work the review inbox: read reviews, edit reply drafts, set statuses, export.
    WorkReviews,
    /// Change the tenant's reply-draft settings (mode, tone, templates).
    ManageReviewSettings,
    /// Configure account health: its measures, weights, bands and churn-risk rules.
    ManageHealth,
    /// Export the account list with health and its reasons as CSV (tenant admins and analysts,
    /// who act as CSMs).
    ExportAccounts,
    /// Export the QA report as CSV (QA leads and tenant admins).
    ExportQaReport,
    /// Set the tenant's retention policies, preview and run the sweep, and place and release
    /// legal holds (privacy officers only).
    ManageRetention,
    /// See the dashboards (aggregates naming agents and accounts) and download their CSVs.
    ViewDashboards,
}

impl Role {
    pub fn grants(self, permission: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Operator => matches!(permission, P::ManageAppliance | P::ViewApplianceAudit),
            Role::TenantAdmin => matches!(
                permission,
                P::ViewTenant
                    | P::ManageTenantUsers
                    | P::ManageTenantSecurity
                    | P::ViewTenantData
                    | P::ImportTenantData
                    | P::ManageIntegrations
                    | P::ManageAnalysis
                    | P::RequestAnalysis
                    | P::ManageScorecards
                    | P::SendFeedbackRequests
                    | P::ManageFeedbackSettings
                    | P::WorkAlerts
                    | P::ManageAlertRules
                    | P::WorkLeads
                    | P::WorkReviews
                    | P::ManageReviewSettings
                    | P::ManageHealth
                    | P::ExportAccounts
                    | P::ExportQaReport
                    | P::ViewDashboards
            ),
            Role::Analyst => matches!(
                permission,
                P::ViewTenant
                    | P::ViewTenantData
                    | P::RequestAnalysis
                    | P::SendFeedbackRequests
                    | P::WorkAlerts
                    | P::WorkLeads
                    | P::WorkReviews
                    | P::ExportAccounts
                    | P::ViewDashboards
            ),
            Role::QaLead => matches!(
                permission,
                P::ViewTenant
                    | P::ViewTenantData
                    | P::RequestAnalysis
                    | P::ReviewQa
                    | P::ManageScorecards
                    | P::ExportQaReport
                    | P::ViewDashboards
            ),
            Role::PrivacyOfficer => matches!(
                permission,
                P::ViewTenant
                    | P::ViewTenantAudit
                    | P::ViewTenantData
                    | P::ManagePrivacy
                    | P::ManageRetention
            ),
            Role::Auditor => matches!(permission, P::ViewTenant | P::ViewTenantAudit),
        }
    }
}

/// Result of a password check at log-in.
pub enum LoginResult {
    /// Password accepted. The session still owes a TOTP code when the user has one.
    Accepted(Box<User>),
    /// Wrong e-mail or password; deliberately not saying which.
    Rejected,
    /// Too many failures; try again later.
    Locked { retry_after: Duration },
}

fn audit_login_failure(
    context: &AppContext,
    label: &str,
    user: Option<&User>,
    client: Option<IpAddr>,
    action: AuditAction,
) -> Result<(), AuthError> {
    let actor = user.map_or_else(
        || Actor {
            user: None,
            // The typed address is personal data; the audit entry is sealed.
            label: label.chars().take(120).collect(),
        },
        User::actor,
    );
    context.audit(
        AuditEvent::new(user.and_then(|u| u.tenant), actor, action, "login")
            .client(client.map(|ip| ip.to_string()))
            .outcome(if action == AuditAction::LockedOut {
                Outcome::Denied
            } else {
                Outcome::Failure
            }),
    )?;
    Ok(())
}

/// Checks e-mail and password with throttling and audit. Every path costs one argon2 verification
/// except a locked one, which costs none.
pub fn check_password(
    context: &AppContext,
    email: &str,
    password: &SecretString,
    client: Option<IpAddr>,
) -> Result<LoginResult, AuthError> {
    let pseudonym = context.users.email_pseudonym(email)?;
    if let Verdict::Locked { retry_after } = context.throttle.check(pseudonym, client) {
        audit_login_failure(context, email, None, client, AuditAction::LockedOut)?;
        return Ok(LoginResult::Locked { retry_after });
    }
    let user = match Email::parse(email) {
        Ok(parsed) => context.users.find_by_email(&parsed)?,
        Err(_) => None,
    };
    let password_ok = context
        .hasher
        .verify(password, user.as_ref().map(|u| u.password_hash.as_str()));
    match user {
        Some(user) if password_ok && !user.disabled => {
            context.throttle.record_success(pseudonym);
            Ok(LoginResult::Accepted(Box::new(user)))
        }
        user => {
            let locked = context.throttle.record_failure(pseudonym, client);
            audit_login_failure(
                context,
                email,
                user.as_ref(),
                client,
                AuditAction::LoginFailed,
            )?;
            if locked {
                audit_login_failure(
                    context,
                    email,
                    user.as_ref(),
                    client,
                    AuditAction::LockedOut,
                )?;
            }
            Ok(LoginResult::Rejected)
        }
    }
}

/// Starts a session for `user` after a successful password check, recording the log-in.
pub fn start_session(
    context: &AppContext,
    user: &User,
    client: Option<IpAddr>,
) -> Result<(SessionToken, Session), AuthError> {
    let stage = if user.totp.is_some() {
        SessionStage::AwaitingSecondFactor
    } else {
        SessionStage::Active
    };
    let session = Session::new(user, stage);
    let token = context.sessions.create(&session)?;
    if stage == SessionStage::Active {
        audit_login(context, user, client)?;
    }
    Ok((token, session))
}

fn audit_login(context: &AppContext, user: &User, client: Option<IpAddr>) -> Result<(), AuthError> {
    context.audit(
        AuditEvent::new(
            user.tenant,
            user.actor(),
            AuditAction::Login,
            format!("user {}", user.id),
        )
        .client(client.map(|ip| ip.to_string())),
    )?;
    Ok(())
}

fn unix_now() -> u64 {
    u64::try_from(Utc::now().timestamp()).unwrap_or(0)
}

/// Completes a log-in with a TOTP code or a recovery code.
pub fn complete_second_factor(
    context: &AppContext,
    token: &SessionToken,
    session: &mut Session,
    code: &str,
    client: Option<IpAddr>,
) -> Result<(), AuthError> {
    let mut user = context
        .users
        .get(session.user)?
        .ok_or(AuthError::InvalidCode)?;
    let pseudonym = context.users.email_pseudonym(user.email.as_str())?;
    if let Verdict::Locked { .. } = context.throttle.check(pseudonym, client) {
        return Err(AuthError::InvalidCode);
    }
    let Some(credential) = user.totp.as_mut() else {
        return Err(AuthError::InvalidCode);
    };
    let used_recovery = if let Some(step) =
        totp::verify(&credential.secret, credential.last_step, code, unix_now())
    {
        credential.last_step = step;
        false
    } else if totp::use_recovery_code(credential, code) {
        true
    } else {
        context.throttle.record_failure(pseudonym, client);
        audit_login_failure(
            context,
            user.email.as_str(),
            Some(&user),
            client,
            AuditAction::LoginFailed,
        )?;
        return Err(AuthError::InvalidCode);
    };
    user.updated = Utc::now();
    context.users.save(&user)?;
    context.throttle.record_success(pseudonym);
    if used_recovery {
        context.audit(
            AuditEvent::new(
                user.tenant,
                user.actor(),
                AuditAction::RecoveryCodeUsed,
                format!("user {}", user.id),
            )
            .client(client.map(|ip| ip.to_string())),
        )?;
    }
    session.stage = SessionStage::Active;
    context.sessions.save(token, session)?;
    audit_login(context, &user, client)?;
    Ok(())
}

/// Enrols a TOTP secret after the user proved it with a first code; returns the recovery codes,
/// shown once.
pub fn enrol_totp(
    context: &AppContext,
    user: &User,
    secret: &[u8],
    code: &str,
    client: Option<IpAddr>,
) -> Result<Vec<String>, AuthError> {
    let step = totp::verify(secret, 0, code, unix_now()).ok_or(AuthError::InvalidCode)?;
    let (codes, hashes) = totp::new_recovery_codes();
    let mut record = context
        .users
        .get(user.reference())?
        .ok_or(AuthError::InvalidCode)?;
    record.totp = Some(TotpCredential {
        secret: secret.to_vec(),
        last_step: step,
        recovery_hashes: hashes,
    });
    record.updated = Utc::now();
    context.users.save(&record)?;
    context.audit(
        AuditEvent::new(
            record.tenant,
            record.actor(),
            AuditAction::TotpEnrolled,
            format!("user {}", record.id),
        )
        .client(client.map(|ip| ip.to_string())),
    )?;
    Ok(codes)
}

/// Changes the signed-in user's own password. Every session of the user is voided (the epoch
/// moves on); the caller starts a fresh one.
pub fn change_own_password(
    context: &AppContext,
    user: &User,
    current: &SecretString,
    new: &SecretString,
    confirm: &SecretString,
    client: Option<IpAddr>,
) -> Result<User, AuthError> {
    use secrecy::ExposeSecret;
    if new.expose_secret() != confirm.expose_secret() {
        return Err(AuthError::PasswordMismatch);
    }
    validate_password(new)?;
    if !context.hasher.verify(current, Some(&user.password_hash)) {
        return Err(AuthError::WrongCurrentPassword);
    }
    let hash = context.hasher.hash(new)?;
    let mut record = context
        .users
        .get(user.reference())?
        .ok_or(AuthError::WrongCurrentPassword)?;
    record.password_hash = hash;
    record.must_change_password = false;
    record.session_epoch = record.session_epoch.wrapping_add(1);
    record.updated = Utc::now();
    context.users.save(&record)?;
    context.audit(
        AuditEvent::new(
            record.tenant,
            record.actor(),
            AuditAction::PasswordChanged,
            format!("user {}", record.id),
        )
        .client(client.map(|ip| ip.to_string())),
    )?;
    Ok(record)
}

/// Whether `user` must hold a second factor under their tenant's policy.
pub fn second_factor_required(context: &AppContext, user: &User) -> Result<bool, AuthError> {
    match user.tenant {
        Some(tenant) => Ok(context
            .tenants
            .settings(tenant)
            .map_err(|error| match error {
                crate::tenants::TenantError::Store(store) => AuthError::Store(store),
                other => AuthError::User(UserError::Tenant(other)),
            })?
            .totp_required_roles
            .contains(&user.role)),
        None => Ok(false),
    }
}
