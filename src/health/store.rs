//! Account health's collections, in the tenant's scope and sealed like every record:
//!
//! - `health_snapshots`: account id ‖ day (days since the common era, big-endian) → [`Snapshot`],
//!   one per account per day (a recompute on the same day replaces it), kept; one account's
//!   history is a prefix scan, oldest first;
//! - `health_config`: `config` → the tenant's [`HealthConfig`] (absent: the defaults).

use chrono::{Datelike, NaiveDate};

use crate::health::{HealthConfig, Snapshot};
use crate::ids::{RecordId, TenantId};
use crate::store::{Collection, RecordKey, Scope, Store, StoreError};

const CONFIG_KEY: &str = "config";

/// The most snapshots one account page shows (the newest days).
pub const HISTORY_SHOWN: usize = 90;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SnapshotKey {
    account: RecordId,
    day: NaiveDate,
}

impl RecordKey for SnapshotKey {
    fn to_key_bytes(&self) -> Vec<u8> {
        let mut key = self.account.to_bytes().to_vec();
        key.extend_from_slice(&self.day.num_days_from_ce().to_be_bytes());
        key
    }

    fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
        let (id, day) = bytes.split_at_checked(16)?;
        Some(Self {
            account: RecordId::from_bytes(id.try_into().ok()?),
            day: NaiveDate::from_num_days_from_ce_opt(i32::from_be_bytes(day.try_into().ok()?))?,
        })
    }
}

/// The health trees of every tenant. Cheap to make: it holds only the store handle.
#[derive(Clone)]
pub struct HealthStore {
    store: Store,
}

impl std::fmt::Debug for HealthStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("HealthStore")
    }
}

impl HealthStore {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    fn snapshots(&self, tenant: TenantId) -> Result<Collection<SnapshotKey, Snapshot>, StoreError> {
        self.store
            .collection(Scope::Tenant(tenant), "health_snapshots")
    }

    fn configs(
        &self,
        tenant: TenantId,
    ) -> Result<Collection<&'static str, HealthConfig>, StoreError> {
        self.store
            .collection(Scope::Tenant(tenant), "health_config")
    }

    /// The tenant's configuration, or the defaults when none is stored.
    pub fn config(&self, tenant: TenantId) -> Result<HealthConfig, StoreError> {
        Ok(self.configs(tenant)?.get(&CONFIG_KEY)?.unwrap_or_default())
    }

    /// Replaces the tenant's configuration. The caller has validated it.
    pub fn save_config(&self, tenant: TenantId, config: &HealthConfig) -> Result<(), StoreError> {
        self.configs(tenant)?.insert(&CONFIG_KEY, config)
    }

    /// Stores the day's snapshot of the account, replacing an earlier one of the same day.
    pub fn put(&self, tenant: TenantId, snapshot: &Snapshot) -> Result<(), StoreError> {
        let key = SnapshotKey {
            account: snapshot.account,
            day: snapshot.day,
        };
        self.snapshots(tenant)?.insert(&key, snapshot)
    }

    /// The account's newest `limit` snapshots, oldest first (one per day, so a bounded read).
    pub fn history(
        &self,
        tenant: TenantId,
        account: RecordId,
        limit: usize,
    ) -> Result<Vec<Snapshot>, StoreError> {
        let snapshots = self.snapshots(tenant)?;
        let mut kept = std::collections::VecDeque::with_capacity(limit.min(400));
        for entry in snapshots.scan_prefix(&account.to_bytes()) {
            let (_, snapshot) = entry?;
            if kept.len() == limit {
                kept.pop_front();
            }
            kept.push_back(snapshot);
        }
        Ok(kept.into())
    }
}
