//! The alerts' collections, in the tenant's scope and sealed like every record:
//!
//! - `alerts`: alert id → [`Alert`] (its state and whole history in one value);
//! - `alert_subjects`: SHA-256 of (kind, subject record id) → the id of the latest alert of that
//!   kind about that record, which is what makes raising idempotent. The key is a digest of ids
//!   and a kind name, never personal data;
//! - `alert_rules`: `negative_review` → the tenant's [`ReviewRule`] (absent: the default).
//!
//! Writers that read first (raise, every action) hold the tenant's writer lock
//! ([`Store::lock_scope`]) from the read to the commit; see [`super::raise`] and [`super::act`].

use crate::alerts::{Alert, AlertKind, ReviewRule};
use crate::ids::{AlertId, RecordId, TenantId};
use crate::store::{Collection, Scope, Store, StoreError, WriteSet};

const REVIEW_RULE_KEY: &str = "negative_review";

/// Alerts examined for one inbox at most (newest first); older ones are not listed or counted.
pub const MAX_SCANNED: usize = 5000;
/// Alerts one inbox page lists at most.
pub const MAX_LISTED: usize = 200;

/// The alert trees of every tenant. Cheap to make: it holds only the store handle.
#[derive(Clone)]
pub struct AlertStore {
    store: Store,
}

impl std::fmt::Debug for AlertStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("AlertStore")
    }
}

fn subject_key(kind: AlertKind, subject: RecordId) -> [u8; 32] {
    crate::crypto::sha256(&[kind.as_str().as_bytes(), b"\0", &subject.to_bytes()])
}

impl AlertStore {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    fn alerts(&self, tenant: TenantId) -> Result<Collection<AlertId, Alert>, StoreError> {
        self.store.collection(Scope::Tenant(tenant), "alerts")
    }

    fn subjects(&self, tenant: TenantId) -> Result<Collection<[u8; 32], AlertId>, StoreError> {
        self.store
            .collection(Scope::Tenant(tenant), "alert_subjects")
    }

    fn rules(&self, tenant: TenantId) -> Result<Collection<&'static str, ReviewRule>, StoreError> {
        self.store.collection(Scope::Tenant(tenant), "alert_rules")
    }

    pub fn get(&self, tenant: TenantId, id: AlertId) -> Result<Option<Alert>, StoreError> {
        self.alerts(tenant)?.get(&id)
    }

    /// The latest alert of `kind` about `subject`, resolved or not.
    pub fn current_for(
        &self,
        tenant: TenantId,
        kind: AlertKind,
        subject: RecordId,
    ) -> Result<Option<Alert>, StoreError> {
        match self.subjects(tenant)?.get(&subject_key(kind, subject))? {
            Some(id) => self.get(tenant, id),
            None => Ok(None),
        }
    }

    /// Stores a new alert and makes it the current one for its kind and subject, in one
    /// transaction. The caller holds the tenant's writer lock.
    pub fn create(&self, tenant: TenantId, alert: &Alert) -> Result<(), StoreError> {
        let _moved_on = GenerationBump(tenant);
        let mut writes = WriteSet::default();
        writes.put(&self.alerts(tenant)?, &alert.id, alert)?;
        writes.put(
            &self.subjects(tenant)?,
            &subject_key(alert.kind, alert.subject),
            &alert.id,
        )?;
        self.store.commit(writes)
    }

    /// Replaces an alert after a change. The caller holds the tenant's writer lock.
    pub fn save(&self, tenant: TenantId, alert: &Alert) -> Result<(), StoreError> {
        let _moved_on = GenerationBump(tenant);
        self.alerts(tenant)?.insert(&alert.id, alert)
    }

    /// Calls `visit` with the tenant's alerts, newest first, at most [`MAX_SCANNED`] of them;
    /// true when it stopped there with older alerts left.
    pub fn for_each_newest_first(
        &self,
        tenant: TenantId,
        mut visit: impl FnMut(Alert),
    ) -> Result<bool, StoreError> {
        let alerts = self.alerts(tenant)?;
        for (scanned, entry) in alerts.scan_newest_first(None).enumerate() {
            if scanned >= MAX_SCANNED {
                return Ok(true);
            }
            visit(entry?.1);
        }
        Ok(false)
    }

    /// The tenant's negative-review rule, or the default when none is stored.
    pub fn review_rule(&self, tenant: TenantId) -> Result<ReviewRule, StoreError> {
        Ok(self
            .rules(tenant)?
            .get(&REVIEW_RULE_KEY)?
            .unwrap_or_default())
    }

    /// Replaces the tenant's negative-review rule. The caller has validated it.
    pub fn save_review_rule(&self, tenant: TenantId, rule: &ReviewRule) -> Result<(), StoreError> {
        self.rules(tenant)?.insert(&REVIEW_RULE_KEY, rule)
    }
}

/// Per tenant, how many times its alerts were written in this process: a count cached at one
/// generation (the navigation's open count) is stale at the next.
static GENERATIONS: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<TenantId, u64>>,
> = std::sync::LazyLock::new(|| std::sync::Mutex::new(std::collections::HashMap::new()));

/// The tenant's alert generation (see [`GENERATIONS`]).
pub fn generation(tenant: TenantId) -> u64 {
    GENERATIONS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&tenant)
        .copied()
        .unwrap_or(0)
}

/// Moves the tenant's generation on when dropped: after a write, whether it succeeded or not
/// (part of it may have landed).
struct GenerationBump(TenantId);

impl Drop for GenerationBump {
    fn drop(&mut self) {
        let mut generations = GENERATIONS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *generations.entry(self.0).or_insert(0) += 1;
    }
}
