//! Tenants: the client organisations an appliance serves. Each has its own keys and key space
//! (see [`crate::store::Scope`]); the operator creates them, but only their members read them.

pub mod routes;
pub mod store;

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::{Actor, AuditAction, AuditEvent};
use crate::context::AppContext;
use crate::ids::TenantId;
use crate::users::Role;

pub use store::TenantStore;

/// Reads a tenant-scoped record through a reference held elsewhere (a user's e-mail entry, an
/// API key or webhook directory entry, a session): when the tenant no longer exists, its keys are
/// gone and the store answers `UnknownScope`. That is a dangling reference, not a failure, so the
/// record is simply absent (a 401 or 404 for whoever followed the reference, never a 500).
pub fn absent_if_tenant_gone<T>(
    read: Result<Option<T>, crate::store::StoreError>,
) -> Result<Option<T>, crate::store::StoreError> {
    match read {
        Err(crate::store::StoreError::UnknownScope(crate::store::Scope::Tenant(_))) => Ok(None),
        other => other,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("slug {0:?} is invalid: use 2 to 40 lower-case letters, digits and dashes, starting with a letter or digit")]
    InvalidSlug(String),
    #[error("tenant name must be 1 to 200 characters without control characters")]
    InvalidName,
    #[error("a tenant with slug {0:?} already exists")]
    SlugTaken(String),
    #[error("slug {0:?} belonged to a tenant that was offboarded and purged; it stays reserved, choose another")]
    SlugReserved(String),
    #[error("no tenant with slug {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

/// A tenant's short name in URLs and on the command line. Not personal data.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Slug(String);

impl Slug {
    pub fn parse(raw: &str) -> Result<Self, TenantError> {
        let valid_length = (2..=40).contains(&raw.len());
        let valid_chars = raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        let valid_start = raw
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
        if valid_length && valid_chars && valid_start {
            Ok(Self(raw.to_owned()))
        } else {
            Err(TenantError::InvalidSlug(raw.chars().take(60).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Slug {
    type Error = TenantError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Slug> for String {
    fn from(slug: Slug) -> Self {
        slug.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// Validates a tenant's display name.
pub fn parse_tenant_name(raw: &str) -> Result<String, TenantError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(TenantError::InvalidName);
    }
    Ok(name.to_owned())
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: Slug,
    pub name: String,
    pub created: DateTime<Utc>,
}

/// Security settings a tenant admin controls.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSettings {
    /// Roles whose members must use a TOTP second factor.
    #[serde(default)]
    pub totp_required_roles: BTreeSet<Role>,
}

/// Creates a tenant (its keys, record and slug) and audits it on the appliance log.
pub fn create_tenant(
    context: &AppContext,
    actor: Actor,
    client: Option<String>,
    slug: &str,
    name: &str,
) -> Result<Tenant, TenantError> {
    let slug = Slug::parse(slug)?;
    let name = parse_tenant_name(name)?;
    let tenant = match context.tenants.create(slug, name) {
        Err(TenantError::SlugTaken(slug))
            if crate::offboarding::status(context, &slug).is_ok_and(|found| found.is_some()) =>
        {
            return Err(TenantError::SlugReserved(slug));
        }
        other => other?,
    };
    context.audit(
        AuditEvent::new(
            None,
            actor,
            AuditAction::TenantCreated,
            format!("tenant {} ({})", tenant.id, tenant.slug),
        )
        .client(client),
    )?;
    Ok(tenant)
}

/// Sets which roles of `tenant` must use a second factor, and audits the change.
pub fn set_second_factor_roles(
    context: &AppContext,
    actor: Actor,
    client: Option<String>,
    tenant: &Tenant,
    roles: BTreeSet<Role>,
) -> Result<(), TenantError> {
    let mut settings = context.tenants.settings(tenant.id)?;
    settings.totp_required_roles = roles
        .into_iter()
        .filter(|role| role.is_tenant_role())
        .collect();
    context.tenants.save_settings(tenant.id, &settings)?;
    let roles: Vec<&str> = settings
        .totp_required_roles
        .iter()
        .map(|role| role.as_str())
        .collect();
    context.audit(
        AuditEvent::new(
            Some(tenant.id),
            actor,
            AuditAction::TenantSettingsChanged,
            format!(
                "second factor required for: {}",
                if roles.is_empty() {
                    "none".to_owned()
                } else {
                    roles.join(", ")
                }
            ),
        )
        .client(client),
    )?;
    Ok(())
}
