//! The audit-log category: pruning the appliance's one hash-chained log by every tenant's period.
//!
//! The log holds every tenant's entries and the appliance's own in one chain, so it is pruned
//! once for all of them, after the nightly sweeps ([`prune`]), never by a single tenant's run.
//! An entry expires when it is older than its tenant's audit-log period (never less than
//! [`AUDIT_LOG_MIN_DAYS`]); the appliance's own entries, and those of tenants that no longer
//! exist (purged), after `[retention] audit_log_days`. A tenant whose period is "for the life of
//! the tenant", or that has any active legal hold, keeps all its entries. The log deletes whole
//! segments from its start, so one kept entry keeps its segment and every later one:
//! entries are kept at least their period, and about a week longer (a segment is closed when it
//! is a week old, [`SEGMENT_MAX_AGE_DAYS`]). Each pruning that deletes anything is audited as
//! `audit.pruned` (counts and the first entry kept).

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use crate::audit::{Actor, AuditAction, AuditEvent, PruneReport};
use crate::context::AppContext;
use crate::ids::TenantId;
use crate::retention::holds::ActiveHolds;
use crate::retention::{policies, Category, Keep, RetentionError, AUDIT_LOG_MIN_DAYS};

/// The open segment is closed once its first entry is this old, so that pruning is precise to
/// about this many days.
pub const SEGMENT_MAX_AGE_DAYS: i64 = 7;

/// What one pruning did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditPruning {
    /// The open segment was older than [`SEGMENT_MAX_AGE_DAYS`] and was closed.
    pub rotated: bool,
    pub pruned: PruneReport,
}

/// Each tenant's expiry cutoff: entries before it have expired; `None` keeps them all.
fn tenant_cutoffs(
    context: &AppContext,
    now: DateTime<Utc>,
) -> Result<HashMap<TenantId, Option<DateTime<Utc>>>, RetentionError> {
    let mut cutoffs = HashMap::new();
    let tenants = context.tenants.list().map_err(|error| match error {
        crate::tenants::TenantError::Store(store) => RetentionError::Store(store),
        other => RetentionError::Invalid {
            field: "tenants",
            message: other.to_string(),
        },
    })?;
    for tenant in tenants {
        let held = !ActiveHolds::load(context, tenant.id, now)?.is_empty();
        let cutoff = match policies(context, tenant.id)?.get(Category::AuditLog) {
            Keep::Days(days) if !held => {
                Some(now - Duration::days(i64::from(days.max(AUDIT_LOG_MIN_DAYS))))
            }
            Keep::Days(_) | Keep::Forever => None,
        };
        cutoffs.insert(tenant.id, cutoff);
    }
    Ok(cutoffs)
}

/// Closes a week-old open segment, then prunes the expired segments from the start of the log,
/// as of `now`. Audited as `audit.pruned` when anything was deleted.
pub fn prune(
    context: &AppContext,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<AuditPruning, RetentionError> {
    let log = &context.audit_log;
    let rotated = match log.open_segment_started()? {
        Some(started) if now - started >= Duration::days(SEGMENT_MAX_AGE_DAYS) => {
            log.rotate()?;
            true
        }
        _ => false,
    };
    let cutoffs = tenant_cutoffs(context, now)?;
    let appliance_cutoff = now
        - Duration::days(i64::from(
            context
                .config
                .retention
                .audit_log_days
                .max(AUDIT_LOG_MIN_DAYS),
        ));
    let pruned = log.prune(&mut |entry| {
        let cutoff = match entry.event.tenant {
            None => Some(appliance_cutoff),
            Some(tenant) => cutoffs
                .get(&tenant)
                .copied()
                .unwrap_or(Some(appliance_cutoff)),
        };
        cutoff.is_some_and(|cutoff| entry.time < cutoff)
    })?;
    if let Some(first_kept) = pruned.first_kept {
        context.audit(AuditEvent::new(
            None,
            actor.clone(),
            AuditAction::AuditPruned,
            format!(
                "{} entries in {} segment(s) pruned; the log now starts at entry {first_kept}",
                pruned.entries, pruned.segments
            ),
        ))?;
    }
    Ok(AuditPruning { rotated, pruned })
}

/// [`prune`] for the scheduler, after the nightly sweeps: the outcome is logged (counts only).
pub fn prune_logged(context: &AppContext) {
    match prune(context, &Actor::system(), Utc::now()) {
        Ok(outcome) => tracing::info!(
            rotated = outcome.rotated,
            segments = outcome.pruned.segments,
            entries = outcome.pruned.entries,
            "audit log pruned"
        ),
        Err(error) => {
            tracing::error!(
                kind = crate::retention::run_error_kind(&error),
                "audit log pruning failed"
            );
        }
    }
}
