//! Tenant offboarding: the operator ends a tenant's service in three steps.
//!
//! 1. **Start**: everything of the tenant is exported to a new directory (see [`export`]), then
//!    the tenant enters its **wind-down** (30 days unless the operator chooses 1 to 90). During
//!    the wind-down the tenant is *locked*: its pages answer 423 with the purge date, its API keys
//!    and webhooks are refused. Only its privacy officers' retention and legal-hold pages stay
//!    open, so that a hold that arises during the wind-down can still be placed (and then blocks
//!    the purge).
//! 2. **Cancel** (only during the wind-down) removes the offboarding: the tenant works as before.
//! 3. **Purge**, by the scheduler once the wind-down is over: the tenant's record goes (its slug
//!    stays reserved, see [`crate::tenants::TenantStore::stage_removal`]), its users' e-mail
//!    addresses are released, then [`crate::store::Store::destroy_scope`] destroys its wrapped
//!    keys and every tree of its scope. What stays is the offboarding record as a tombstone (slug,
//!    name, dates, counts) and the tenant's entries in the audit log (sealed under the appliance's
//!    audit key, hash-chained, kept at least 365 days; they hold ids and counts, never content).
//!
//! An active legal hold anywhere in the tenant refuses both start and purge. Start, cancel and
//! purge are audited on the appliance's log with counts, never content.

pub mod cli;
pub mod export;
pub mod routes;
mod store;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::{Actor, AuditAction, AuditError, AuditEvent};
use crate::context::AppContext;
use crate::ids::TenantId;
use crate::retention::holds::ActiveHolds;
use crate::store::{ScopeDestroyed, StoreError, WriteSet};
use crate::tenants::{Tenant, TenantError};

pub use export::ExportSummary;
pub use store::OffboardingStore;

/// The wind-down when the operator names none (PRODUCT.md's retention table).
pub const DEFAULT_WIND_DOWN_DAYS: u32 = 30;
/// The longest wind-down allowed.
pub const MAX_WIND_DOWN_DAYS: u32 = 90;

#[derive(Debug, thiserror::Error)]
pub enum OffboardingError {
    #[error("the wind-down must be 1 to {MAX_WIND_DOWN_DAYS} days (default {DEFAULT_WIND_DOWN_DAYS}); {0} was given")]
    WindDown(i64),
    #[error("no tenant with slug {0:?}")]
    NotFound(String),
    #[error("tenant {slug} has {count} active legal hold(s), which keep its data: it cannot be offboarded or purged while they apply. Its privacy officer sees them at /t/{slug}/privacy/holds; release them (or let them end) first")]
    Held { slug: String, count: usize },
    #[error("tenant {slug} is already being offboarded; it is purged after {purge_after}")]
    AlreadyStarted { slug: String, purge_after: String },
    #[error("tenant {0} is not being offboarded")]
    NotStarted(String),
    #[error("tenant {0} has been purged: its keys are destroyed, nothing can be restored")]
    Purged(String),
    #[error("tenant {slug}'s wind-down lasts until {purge_after}; it is not purged before")]
    NotDue { slug: String, purge_after: String },
    #[error(
        "the export path {0} already exists; name a new directory (an export never overwrites)"
    )]
    ExportExists(PathBuf),
    #[error("cannot write the export in {path}: {source}")]
    ExportWrite {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error(transparent)]
    Users(#[from] crate::users::UserError),
    #[error("the interactions export failed: {0}")]
    Interactions(#[from] crate::ingest::IngestError),
    #[error("the accounts export failed: {0}")]
    Accounts(#[from] crate::accounts::export::ExportError),
}

/// Where an offboarding stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum OffboardingState {
    /// Exported and locked; cancellable until `purge_after`.
    WindingDown,
    /// The purge began (the tenant's record is gone, its keys are being destroyed); the
    /// scheduler finishes it if it was cut off.
    Purging,
    /// Keys and data destroyed: this record is the tenant's tombstone.
    Purged {
        at: DateTime<Utc>,
        destroyed: ScopeDestroyed,
    },
}

/// One tenant's offboarding, kept in the appliance's scope (and kept after the purge).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offboarding {
    pub tenant: TenantId,
    pub slug: String,
    pub name: String,
    pub started: DateTime<Utc>,
    /// The actor's label (the operator's e-mail, or `cli`).
    pub started_by: String,
    pub wind_down_days: u32,
    pub purge_after: DateTime<Utc>,
    pub export: ExportSummary,
    pub state: OffboardingState,
}

impl Offboarding {
    /// Whether the tenant is locked now (winding down or being purged).
    pub fn is_locked(&self) -> bool {
        !matches!(self.state, OffboardingState::Purged { .. })
    }

    pub fn purge_after_text(&self) -> String {
        self.purge_after.format("%Y-%m-%d %H:%M UTC").to_string()
    }

    pub fn state_label(&self) -> &'static str {
        match self.state {
            OffboardingState::WindingDown => "winding down",
            OffboardingState::Purging => "purging",
            OffboardingState::Purged { .. } => "purged",
        }
    }
}

/// Checks a requested wind-down: none means the default; 1 to 90 days otherwise.
pub fn wind_down_days(requested: Option<i64>) -> Result<u32, OffboardingError> {
    match requested {
        None => Ok(DEFAULT_WIND_DOWN_DAYS),
        Some(days) => u32::try_from(days)
            .ok()
            .filter(|days| (1..=MAX_WIND_DOWN_DAYS).contains(days))
            .ok_or(OffboardingError::WindDown(days)),
    }
}

/// The tenant's offboarding while it locks the tenant (winding down or purging), for the guards
/// of pages, API keys and webhooks. One read of the appliance's scope.
pub fn lock_of(context: &AppContext, tenant: TenantId) -> Result<Option<Offboarding>, StoreError> {
    Ok(OffboardingStore::new(context.store.clone())
        .get(tenant)?
        .filter(Offboarding::is_locked))
}

/// What a locked tenant's pages say.
pub fn locked_message(offboarding: &Offboarding) -> String {
    format!(
        "Tenant {} is being offboarded: its data can no longer be opened here, and it is deleted after {}. Its privacy officers can still place legal holds at /t/{}/privacy/holds.",
        offboarding.slug,
        offboarding.purge_after_text(),
        offboarding.slug
    )
}

/// Refuses when any legal hold of the tenant applies at `now`.
fn ensure_not_held(
    context: &AppContext,
    tenant: TenantId,
    slug: &str,
    now: DateTime<Utc>,
) -> Result<(), OffboardingError> {
    let holds = ActiveHolds::load(context, tenant, now)?;
    if holds.is_empty() {
        Ok(())
    } else {
        Err(OffboardingError::Held {
            slug: slug.to_owned(),
            count: holds.len(),
        })
    }
}

/// What the operator asked for when starting.
pub struct StartRequest<'a> {
    pub actor: &'a Actor,
    pub client: Option<String>,
    pub slug: &'a str,
    /// `None` for the default.
    pub wind_down_days: Option<i64>,
    /// A new directory for the export (it must not exist; its parent must).
    pub export_dir: &'a Path,
}

fn find_tenant(context: &AppContext, slug: &str) -> Result<Tenant, OffboardingError> {
    context
        .tenants
        .find_by_slug(slug)?
        .ok_or_else(|| OffboardingError::NotFound(slug.chars().take(60).collect()))
}

/// Starts offboarding: refuses a held or already offboarded tenant, exports everything, records
/// the wind-down (durably) and audits it on the appliance's log. A failure before the record is
/// saved removes the export again (see [`export::ExportGuard`]): no record, no copy.
pub fn start(
    context: &AppContext,
    request: &StartRequest<'_>,
    now: DateTime<Utc>,
) -> Result<Offboarding, OffboardingError> {
    let days = wind_down_days(request.wind_down_days)?;
    let offboardings = OffboardingStore::new(context.store.clone());
    if let Some(existing) = offboardings.find_by_slug(request.slug)? {
        return Err(match existing.state {
            OffboardingState::Purged { .. } => OffboardingError::Purged(existing.slug),
            _ => OffboardingError::AlreadyStarted {
                purge_after: existing.purge_after_text(),
                slug: existing.slug,
            },
        });
    }
    let tenant = find_tenant(context, request.slug)?;
    ensure_not_held(context, tenant.id, tenant.slug.as_str(), now)?;
    // Until the offboarding is saved, nothing would ever purge the export: `guard` removes it
    // when a step below fails.
    let (export, guard) =
        export::write_export(context, request.actor, &tenant, request.export_dir, now)?;
    let offboarding = Offboarding {
        tenant: tenant.id,
        slug: tenant.slug.to_string(),
        name: tenant.name.clone(),
        started: now,
        started_by: request.actor.label.clone(),
        wind_down_days: days,
        purge_after: now + Duration::days(i64::from(days)),
        export,
        state: OffboardingState::WindingDown,
    };
    offboardings.save(&offboarding)?;
    // Saved: the export is the offboarding's now (the purge removes it, a cancel keeps it).
    guard.keep();
    context.audit(
        AuditEvent::new(
            None,
            request.actor.clone(),
            AuditAction::TenantOffboardingStarted,
            format!(
                "tenant {} ({}): exported {} (sha256 {}); wind-down {} days, purge after {}",
                offboarding.tenant,
                offboarding.slug,
                offboarding.export.counts_text(),
                offboarding.export.manifest_sha256,
                days,
                offboarding.purge_after_text()
            ),
        )
        .client(request.client.clone()),
    )?;
    Ok(offboarding)
}

/// Cancels a wind-down: the tenant works again as before. Refused once the purge has begun.
pub fn cancel(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    slug: &str,
) -> Result<Offboarding, OffboardingError> {
    let offboardings = OffboardingStore::new(context.store.clone());
    let offboarding = offboardings
        .find_by_slug(slug)?
        .ok_or_else(|| OffboardingError::NotStarted(slug.chars().take(60).collect()))?;
    if offboarding.state != OffboardingState::WindingDown {
        return Err(OffboardingError::Purged(offboarding.slug));
    }
    offboardings.remove(offboarding.tenant)?;
    context.audit(
        AuditEvent::new(
            None,
            actor.clone(),
            AuditAction::TenantOffboardingCancelled,
            format!(
                "tenant {} ({}): wind-down cancelled before {}",
                offboarding.tenant,
                offboarding.slug,
                offboarding.purge_after_text()
            ),
        )
        .client(client),
    )?;
    Ok(offboarding)
}

/// The tenant's offboarding (also after its purge), by slug.
pub fn status(context: &AppContext, slug: &str) -> Result<Option<Offboarding>, OffboardingError> {
    Ok(OffboardingStore::new(context.store.clone()).find_by_slug(slug)?)
}

/// Every offboarding on record, oldest first.
pub fn list(context: &AppContext) -> Result<Vec<Offboarding>, OffboardingError> {
    Ok(OffboardingStore::new(context.store.clone()).list()?)
}

/// Purges the tenant once its wind-down is over at `now` (refused before, and while a legal
/// hold applies); finishes a purge that was cut off. Returns the tombstone.
pub fn purge(
    context: &AppContext,
    actor: &Actor,
    tenant: TenantId,
    now: DateTime<Utc>,
) -> Result<Offboarding, OffboardingError> {
    let offboardings = OffboardingStore::new(context.store.clone());
    let mut offboarding = offboardings
        .get(tenant)?
        .ok_or_else(|| OffboardingError::NotStarted(tenant.to_string()))?;
    match offboarding.state {
        OffboardingState::Purged { .. } => return Ok(offboarding),
        OffboardingState::Purging => {}
        OffboardingState::WindingDown => {
            if now < offboarding.purge_after {
                return Err(OffboardingError::NotDue {
                    purge_after: offboarding.purge_after_text(),
                    slug: offboarding.slug,
                });
            }
            ensure_not_held(context, tenant, &offboarding.slug, now)?;
            begin_purge(context, &offboardings, &mut offboarding)?;
        }
    }
    let destroyed = context.store.destroy_scope(tenant)?;
    export::remove_if_inside_data_dir(context, &offboarding.export);
    offboarding.state = OffboardingState::Purged { at: now, destroyed };
    offboardings.save(&offboarding)?;
    context.audit(AuditEvent::new(
        None,
        actor.clone(),
        AuditAction::TenantPurged,
        format!(
            "tenant {} ({}): {} key(s) destroyed, {} tree(s) with {} record(s) deleted",
            offboarding.tenant,
            offboarding.slug,
            destroyed.keys,
            destroyed.trees,
            destroyed.records
        ),
    ))?;
    Ok(offboarding)
}

/// The purge's first commit: the tenant's record goes (slug kept), its users' e-mail addresses
/// are released, and the offboarding says `Purging`, all at once; from here nothing lists the
/// tenant, and a purge cut off later is resumed by the scheduler.
fn begin_purge(
    context: &AppContext,
    offboardings: &OffboardingStore,
    offboarding: &mut Offboarding,
) -> Result<(), OffboardingError> {
    let users = context.users.list(Some(offboarding.tenant))?;
    let mut writes = WriteSet::default();
    context
        .tenants
        .stage_removal(&mut writes, offboarding.tenant)?;
    context.users.stage_release_emails(&mut writes, &users)?;
    offboarding.state = OffboardingState::Purging;
    offboardings.stage_save(&mut writes, offboarding)?;
    context.store.commit(writes)?;
    Ok(())
}

/// One tenant's purge attempt by [`purge_due`].
pub type PurgeOutcome = (TenantId, Result<Offboarding, OffboardingError>);

/// Purges every tenant whose wind-down is over at `now` (and finishes cut-off purges). Returns
/// each attempt's tenant and outcome; a held tenant is skipped with its error.
pub fn purge_due(
    context: &AppContext,
    now: DateTime<Utc>,
) -> Result<Vec<PurgeOutcome>, OffboardingError> {
    let due: Vec<Offboarding> = list(context)?
        .into_iter()
        .filter(|offboarding| match offboarding.state {
            OffboardingState::WindingDown => offboarding.purge_after <= now,
            OffboardingState::Purging => true,
            OffboardingState::Purged { .. } => false,
        })
        .collect();
    Ok(due
        .into_iter()
        .map(|offboarding| {
            let outcome = purge(context, &Actor::system(), offboarding.tenant, now);
            (offboarding.tenant, outcome)
        })
        .collect())
}

/// When the scheduler looks for due purges: every hour, at minute 17 (a wind-down ends at the
/// time of day it started, so a purge follows within the hour).
pub fn purge_schedule() -> Result<crate::scheduler::Schedule, String> {
    crate::scheduler::Schedule::parse("0 17 * * * *")
}

/// The scheduler's task: purge what is due, and log (ids and error kinds only) what was not.
pub fn run_scheduled(context: &AppContext) {
    match purge_due(context, Utc::now()) {
        Ok(outcomes) => {
            for (tenant, outcome) in outcomes {
                match outcome {
                    Ok(_) => tracing::info!(%tenant, "offboarded tenant purged"),
                    Err(error @ OffboardingError::Held { .. }) => {
                        tracing::warn!(%tenant, %error, "offboarded tenant not purged");
                    }
                    Err(error) => {
                        tracing::error!(%tenant, error = %crate::error::cause_chain(&error), "purge failed");
                    }
                }
            }
        }
        Err(error) => {
            tracing::error!(error = %crate::error::cause_chain(&error), "cannot list offboardings");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wind_down_is_30_days_by_default_and_1_to_90_when_chosen() {
        assert_eq!(wind_down_days(None).unwrap(), 30);
        assert_eq!(wind_down_days(Some(1)).unwrap(), 1);
        assert_eq!(wind_down_days(Some(90)).unwrap(), 90);
        for bad in [0, 91, -1, i64::MAX] {
            let error = wind_down_days(Some(bad)).unwrap_err();
            assert!(error.to_string().contains("1 to 90 days"), "{error}");
        }
    }
}
