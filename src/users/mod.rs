//! Console users and their roles. Operators belong to the appliance; every other role belongs to
//! exactly one tenant, and its record is sealed under that tenant's keys. Log-in finds a user
//! through a blind index of the e-mail address, never the address itself.

pub mod routes;
pub mod store;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::audit::{Actor, AuditAction, AuditEvent};
use crate::context::AppContext;
use crate::ids::{TenantId, UserId};

pub use store::UserStore;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{0:?} is not a valid e-mail address")]
    InvalidEmail(String),
    #[error("unknown role {0:?}; roles are operator, tenant-admin, analyst, qa-lead, privacy-officer, auditor")]
    UnknownRole(String),
    #[error("the operator role has no tenant; leave out --tenant")]
    OperatorWithTenant,
    #[error("role {0} belongs to a tenant; name it with --tenant")]
    MissingTenant(Role),
    #[error("a user with that e-mail address already exists")]
    EmailTaken,
    #[error("password must be {min} to {max} characters long")]
    PasswordLength { min: usize, max: usize },
    #[error("no such user")]
    NotFound,
    #[error("no tenant with slug {0:?}")]
    UnknownTenant(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Tenant(#[from] crate::tenants::TenantError),
    #[error(transparent)]
    Hash(#[from] crate::auth::password::HashError),
}

/// A syntactically valid, lower-cased e-mail address.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, UserError> {
        let trimmed = raw.trim();
        let valid = trimmed.len() <= 254
            && !trimmed.chars().any(|c| c.is_whitespace() || c.is_control())
            && trimmed.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && local.len() <= 64
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            });
        if valid {
            Ok(Self(trimmed.to_lowercase()))
        } else {
            // The rejected value is echoed to the person who typed it, shortened.
            Err(UserError::InvalidEmail(trimmed.chars().take(80).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Personal data stays out of debug output, which can end up in logs.
        f.write_str("Email(..)")
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl TryFrom<String> for Email {
    type Error = UserError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Email> for String {
    fn from(email: Email) -> Self {
        email.0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Operator,
    TenantAdmin,
    Analyst,
    QaLead,
    PrivacyOfficer,
    Auditor,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Operator,
        Role::TenantAdmin,
        Role::Analyst,
        Role::QaLead,
        Role::PrivacyOfficer,
        Role::Auditor,
    ];

    /// The roles that belong to a tenant.
    pub const TENANT_ROLES: [Role; 5] = [
        Role::TenantAdmin,
        Role::Analyst,
        Role::QaLead,
        Role::PrivacyOfficer,
        Role::Auditor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::TenantAdmin => "tenant-admin",
            Self::Analyst => "analyst",
            Self::QaLead => "qa-lead",
            Self::PrivacyOfficer => "privacy-officer",
            Self::Auditor => "auditor",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Operator => "Appliance operator",
            Self::TenantAdmin => "Tenant admin",
            Self::Analyst => "CSM / analyst",
            Self::QaLead => "QA lead",
            Self::PrivacyOfficer => "Privacy officer",
            Self::Auditor => "Auditor",
        }
    }

    pub fn is_tenant_role(self) -> bool {
        self != Self::Operator
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UserError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| UserError::UnknownRole(s.chars().take(40).collect()))
    }
}

/// Where a user record lives: the appliance (operators) or one tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UserRef {
    pub tenant: Option<TenantId>,
    pub id: UserId,
}

/// A TOTP second factor (RFC 6238, SHA-1, 6 digits, 30 s).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpCredential {
    #[serde(with = "serde_bytes")]
    pub secret: Vec<u8>,
    /// The last time step accepted; a code of this step or an earlier one is never accepted again.
    pub last_step: u64,
    /// SHA-256 hex digests of unused recovery codes.
    pub recovery_hashes: Vec<String>,
}

impl fmt::Debug for TotpCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpCredential")
            .field("last_step", &self.last_step)
            .field("recovery_codes_left", &self.recovery_hashes.len())
            .finish_non_exhaustive()
    }
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub tenant: Option<TenantId>,
    pub email: Email,
    pub role: Role,
    pub password_hash: String,
    pub disabled: bool,
    /// Set for one-time passwords: the user must choose a new password before anything else.
    pub must_change_password: bool,
    /// Bumped on password change or disable; sessions of an older epoch are void.
    pub session_epoch: u32,
    pub totp: Option<TotpCredential>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

/// Secrets (the password hash, the TOTP secret) never appear in debug output.
impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("role", &self.role)
            .field("disabled", &self.disabled)
            .field("totp", &self.totp)
            .finish_non_exhaustive()
    }
}

impl User {
    pub fn reference(&self) -> UserRef {
        UserRef {
            tenant: self.tenant,
            id: self.id,
        }
    }

    pub fn actor(&self) -> Actor {
        Actor {
            user: Some(self.id),
            label: self.email.to_string(),
        }
    }
}

pub const MIN_PASSWORD_CHARS: usize = 12;
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// Checks a new password's length (NIST SP 800-63B: length over composition rules).
pub fn validate_password(password: &SecretString) -> Result<(), UserError> {
    let length = password.expose_secret().chars().count();
    if (MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&length) {
        Ok(())
    } else {
        Err(UserError::PasswordLength {
            min: MIN_PASSWORD_CHARS,
            max: MAX_PASSWORD_CHARS,
        })
    }
}

/// What is needed to create a user.
pub struct NewUser {
    pub email: Email,
    pub role: Role,
    pub tenant: Option<TenantId>,
    pub password: SecretString,
    pub must_change_password: bool,
}

/// Creates a user after validating role, tenant and password, and audits it.
pub fn create_user(
    context: &AppContext,
    actor: Actor,
    client: Option<String>,
    new_user: NewUser,
) -> Result<User, UserError> {
    match (new_user.role, new_user.tenant) {
        (Role::Operator, Some(_)) => return Err(UserError::OperatorWithTenant),
        (role, None) if role.is_tenant_role() => return Err(UserError::MissingTenant(role)),
        _ => {}
    }
    validate_password(&new_user.password)?;
    let password_hash = context.hasher.hash(&new_user.password)?;
    let now = Utc::now();
    let user = User {
        id: UserId::new(),
        tenant: new_user.tenant,
        email: new_user.email,
        role: new_user.role,
        password_hash,
        disabled: false,
        must_change_password: new_user.must_change_password,
        session_epoch: 0,
        totp: None,
        created: now,
        updated: now,
    };
    context.users.create(&user)?;
    context.audit(
        AuditEvent::new(
            user.tenant,
            actor,
            AuditAction::UserCreated,
            format!("user {} ({})", user.id, user.role),
        )
        .client(client),
    )?;
    Ok(user)
}

/// Disables (or re-enables) a user; either way their sessions end.
pub fn set_disabled(
    context: &AppContext,
    actor: Actor,
    client: Option<String>,
    user: UserRef,
    disabled: bool,
) -> Result<User, UserError> {
    let mut record = context.users.get(user)?.ok_or(UserError::NotFound)?;
    record.disabled = disabled;
    record.session_epoch = record.session_epoch.wrapping_add(1);
    record.updated = Utc::now();
    context.users.save(&record)?;
    let action = if disabled {
        AuditAction::UserDisabled
    } else {
        AuditAction::UserEnabled
    };
    context.audit(
        AuditEvent::new(record.tenant, actor, action, format!("user {}", record.id)).client(client),
    )?;
    Ok(record)
}

/// Removes a user's second factor (a lost authenticator); they enrol again when their tenant
/// requires it. Their sessions end.
pub fn reset_second_factor(
    context: &AppContext,
    actor: Actor,
    client: Option<String>,
    user: UserRef,
) -> Result<User, UserError> {
    let mut record = context.users.get(user)?.ok_or(UserError::NotFound)?;
    record.totp = None;
    record.session_epoch = record.session_epoch.wrapping_add(1);
    record.updated = Utc::now();
    context.users.save(&record)?;
    context.audit(
        AuditEvent::new(
            record.tenant,
            actor,
            AuditAction::SecondFactorReset,
            format!("user {}", record.id),
        )
        .client(client),
    )?;
    Ok(record)
}

/// Gives a user another role within the same kind (operators stay appliance users, members stay
/// in their tenant). Their sessions end, so the new permissions apply from the next sign-in.
pub fn change_role(
    context: &AppContext,
    actor: Actor,
    client: Option<String>,
    user: UserRef,
    role: Role,
) -> Result<User, UserError> {
    let mut record = context.users.get(user)?.ok_or(UserError::NotFound)?;
    match (role, record.tenant) {
        (Role::Operator, Some(_)) => return Err(UserError::OperatorWithTenant),
        (role, None) if role.is_tenant_role() => return Err(UserError::MissingTenant(role)),
        _ => {}
    }
    let previous = record.role;
    record.role = role;
    record.session_epoch = record.session_epoch.wrapping_add(1);
    record.updated = Utc::now();
    context.users.save(&record)?;
    context.audit(
        AuditEvent::new(
            record.tenant,
            actor,
            AuditAction::UserRoleChanged,
            format!("user {}: {previous} to {role}", record.id),
        )
        .client(client),
    )?;
    Ok(record)
}

/// Sets a new password (by an operator or the command line), voiding the user's sessions.
pub fn reset_password(
    context: &AppContext,
    actor: Actor,
    user: UserRef,
    password: &SecretString,
    temporary: bool,
) -> Result<(), UserError> {
    validate_password(password)?;
    let password_hash = context.hasher.hash(password)?;
    let mut record = context.users.get(user)?.ok_or(UserError::NotFound)?;
    record.password_hash = password_hash;
    record.must_change_password = temporary;
    record.session_epoch = record.session_epoch.wrapping_add(1);
    record.updated = Utc::now();
    context.users.save(&record)?;
    context.audit(AuditEvent::new(
        record.tenant,
        actor,
        AuditAction::UserPasswordReset,
        format!("user {}", record.id),
    ))?;
    Ok(())
}
