//! The scheduler's daily privacy-request task ([`run_all_tenants`], scheduled in `cli::serve` at
//! [`SCHEDULE`]): per tenant, it deletes expired access packages (`dsar.package_expired`) and
//! reminds of overdue and due-soon requests — an audit entry (`dsar.reminder`, naming the
//! requests by id) and a notice that the privacy officer's request list shows until the next run.
//! No e-mail is sent: the notice and the list's highlighting are where the officer looks.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::{Actor, AuditAction, AuditEvent};
use crate::context::AppContext;
use crate::ids::{RequestId, TenantId};
use crate::privacy::requests::store::RequestStore;
use crate::privacy::requests::{RequestError, Urgency};

/// Every day at 07:00 UTC.
pub const SCHEDULE: &str = "0 0 7 * * *";

/// The latest reminder of a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub at: DateTime<Utc>,
    pub overdue: Vec<RequestId>,
    pub due_soon: Vec<RequestId>,
}

/// What one tenant's run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DailyReport {
    pub packages_deleted: usize,
    pub overdue: usize,
    pub due_soon: usize,
}

/// Deletes the tenant's packages that expired by `now`, each audited.
pub fn purge_expired_packages(
    context: &AppContext,
    tenant: TenantId,
    now: DateTime<Utc>,
) -> Result<usize, RequestError> {
    let store = RequestStore::new(context.store.clone());
    let mut deleted = 0;
    for (id, expires_at) in store.package_expiries(tenant)? {
        if expires_at <= now {
            store.remove_package(tenant, id)?;
            context.audit(AuditEvent::new(
                Some(tenant),
                Actor::system(),
                AuditAction::DsarPackageExpired,
                format!("privacy request {id}: package deleted"),
            ))?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Purges expired packages and stores the tenant's reminder notice (audited when any request
/// is overdue or due soon).
pub fn run_tenant(
    context: &AppContext,
    tenant: TenantId,
    now: DateTime<Utc>,
) -> Result<DailyReport, RequestError> {
    let packages_deleted = purge_expired_packages(context, tenant, now)?;
    let store = RequestStore::new(context.store.clone());
    let mut notice = Notice {
        at: now,
        overdue: Vec::new(),
        due_soon: Vec::new(),
    };
    for request in store.list(tenant)? {
        match request.urgency(now) {
            Urgency::Overdue => notice.overdue.push(request.id),
            Urgency::DueSoon => notice.due_soon.push(request.id),
            Urgency::OnTime | Urgency::Closed => {}
        }
    }
    store.put_notice(tenant, &notice)?;
    if !notice.overdue.is_empty() || !notice.due_soon.is_empty() {
        let ids = |list: &[RequestId]| {
            list.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        };
        context.audit(AuditEvent::new(
            Some(tenant),
            Actor::system(),
            AuditAction::DsarReminder,
            format!(
                "privacy requests: {} overdue [{}], {} due within 7 days [{}]",
                notice.overdue.len(),
                ids(&notice.overdue),
                notice.due_soon.len(),
                ids(&notice.due_soon)
            ),
        ))?;
    }
    Ok(DailyReport {
        packages_deleted,
        overdue: notice.overdue.len(),
        due_soon: notice.due_soon.len(),
    })
}

/// The scheduler's task: every tenant in turn; a failing tenant is logged (by id and error
/// kind only) and the others still run.
pub fn run_all_tenants(context: &AppContext) {
    let tenants = match context.tenants.list() {
        Ok(tenants) => tenants,
        Err(error) => {
            tracing::error!(%error, "privacy requests: cannot list tenants");
            return;
        }
    };
    for tenant in tenants {
        match run_tenant(context, tenant.id, Utc::now()) {
            Ok(report) => tracing::info!(
                tenant = %tenant.id,
                packages_deleted = report.packages_deleted,
                overdue = report.overdue,
                due_soon = report.due_soon,
                "privacy request reminders done"
            ),
            Err(error) => {
                tracing::error!(tenant = %tenant.id, %error, "privacy request reminders failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daily_schedule_parses_and_fires_at_seven() {
        let schedule = crate::scheduler::Schedule::parse(SCHEDULE).unwrap();
        let start = DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            schedule.next_after(start).unwrap().to_rfc3339(),
            "2026-03-02T07:00:00+00:00"
        );
    }
}
