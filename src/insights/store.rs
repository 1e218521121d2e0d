//! The aggregates' collections, in the tenant's scope and sealed like every record:
//!
//! - `insights_contributions`: interaction or review signal id → the [`Contribution`] it made to
//!   the day buckets, so that a change subtracts exactly what was added;
//! - `insights_days`: day (days since the common era, big-endian) → [`DayBucket`], so a date range
//!   is a range scan of at most one record per day;
//! - `insights_account_entries`: account id → [`AccountEntry`], the account's name, keys, owner
//!   and latest health score and band, so the dashboard never opens accounts or health history,
//!   and a health update or an account import writes only its own entries;
//! - `insights_group_days`: (keyed token of a QA group, day) → [`GroupDay`], one group's
//!   criterion sums (see [`crate::insights::criteria`]); the token keeps agent names out of keys;
//! - `insights_account_sums`: keyed token of an account name (source id or domain, lower case) →
//!   [`AccountSums`], the sentiment and QA of all its interactions (see
//!   [`crate::insights::account_sums`]).

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};

use chrono::{Datelike, NaiveDate};

use crate::ids::{RecordId, TenantId};
use crate::insights::account_sums::AccountSums;
use crate::insights::criteria::GroupDay;
use crate::insights::{AccountDirectory, AccountEntry, Contribution, DayBucket};
use crate::store::{Collection, RecordKey, Scope, Store, StoreError, WriteSet};

/// Per tenant, how many times its aggregates were written in this process: a dashboard cached
/// at one generation is stale at the next.
static GENERATIONS: LazyLock<Mutex<HashMap<TenantId, u64>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The tenant's aggregate generation (see [`InsightsStore::commit`]).
pub fn generation(tenant: TenantId) -> u64 {
    GENERATIONS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&tenant)
        .copied()
        .unwrap_or(0)
}

/// A day bucket's key: days since the common era, big-endian so that keys sort by day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DayKey(pub i32);

impl DayKey {
    pub fn of(day: NaiveDate) -> Self {
        Self(day.num_days_from_ce())
    }

    pub fn day(self) -> Option<NaiveDate> {
        NaiveDate::from_num_days_from_ce_opt(self.0)
    }
}

impl RecordKey for DayKey {
    fn to_key_bytes(&self) -> Vec<u8> {
        // Offset so that the big-endian bytes of every i32 sort like the numbers.
        (u32::from_ne_bytes(self.0.to_ne_bytes()) ^ 0x8000_0000)
            .to_be_bytes()
            .to_vec()
    }

    fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
        let raw = u32::from_be_bytes(bytes.try_into().ok()?);
        Some(Self(i32::from_ne_bytes((raw ^ 0x8000_0000).to_ne_bytes())))
    }
}

/// A group day's key: the group's keyed token, then its day, so that one group's days are
/// adjacent and in day order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupDayKey {
    pub group: [u8; 32],
    pub day: DayKey,
}

impl RecordKey for GroupDayKey {
    fn to_key_bytes(&self) -> Vec<u8> {
        let mut bytes = self.group.to_vec();
        bytes.extend_from_slice(&self.day.to_key_bytes());
        bytes
    }

    fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 36 {
            return None;
        }
        Some(Self {
            group: bytes[..32].try_into().ok()?,
            day: DayKey::from_key_bytes(&bytes[32..])?,
        })
    }
}

/// The aggregates of every tenant. Cheap to make: it holds only the store handle.
#[derive(Clone)]
pub struct InsightsStore {
    store: Store,
}

impl std::fmt::Debug for InsightsStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("InsightsStore")
    }
}

impl InsightsStore {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    pub(crate) fn contributions(
        &self,
        tenant: TenantId,
    ) -> Result<Collection<RecordId, Contribution>, StoreError> {
        self.store
            .collection(Scope::Tenant(tenant), "insights_contributions")
    }

    pub(crate) fn days(
        &self,
        tenant: TenantId,
    ) -> Result<Collection<DayKey, DayBucket>, StoreError> {
        self.store
            .collection(Scope::Tenant(tenant), "insights_days")
    }

    pub(crate) fn group_days(
        &self,
        tenant: TenantId,
    ) -> Result<Collection<GroupDayKey, GroupDay>, StoreError> {
        self.store
            .collection(Scope::Tenant(tenant), "insights_group_days")
    }

    pub(crate) fn account_sums(
        &self,
        tenant: TenantId,
    ) -> Result<Collection<[u8; 32], AccountSums>, StoreError> {
        self.store
            .collection(Scope::Tenant(tenant), "insights_account_sums")
    }

    fn entries(&self, tenant: TenantId) -> Result<Collection<RecordId, AccountEntry>, StoreError> {
        self.store
            .collection(Scope::Tenant(tenant), "insights_account_entries")
    }

    /// Every account's entry, in account id order (the dashboard caches what it builds from it).
    pub fn directory(&self, tenant: TenantId) -> Result<AccountDirectory, StoreError> {
        let accounts = self
            .entries(tenant)?
            .scan()
            .map(|entry| entry.map(|(_, entry)| entry))
            .collect::<Result<_, _>>()?;
        Ok(AccountDirectory { accounts })
    }

    /// One account's entry.
    pub(crate) fn entry(
        &self,
        tenant: TenantId,
        account: RecordId,
    ) -> Result<Option<AccountEntry>, StoreError> {
        self.entries(tenant)?.get(&account)
    }

    pub(crate) fn stage_entry(
        &self,
        writes: &mut WriteSet,
        tenant: TenantId,
        entry: &AccountEntry,
    ) -> Result<(), StoreError> {
        writes.put(&self.entries(tenant)?, &entry.id, entry)
    }

    pub(crate) fn stage_entry_removal(
        &self,
        writes: &mut WriteSet,
        tenant: TenantId,
        account: RecordId,
    ) -> Result<(), StoreError> {
        writes.remove(&self.entries(tenant)?, &account);
        Ok(())
    }

    /// The buckets of the days `from..=to`, oldest first: one range scan, at most one record
    /// per day.
    pub fn buckets(
        &self,
        tenant: TenantId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(NaiveDate, DayBucket)>, StoreError> {
        let days = self.days(tenant)?;
        let (first, last) = (DayKey::of(from), DayKey::of(to));
        let mut found = Vec::new();
        for entry in days.scan_after(&DayKey(first.0 - 1)) {
            let (key, bucket) = entry?;
            if key > last {
                break;
            }
            if let Some(day) = key.day() {
                found.push((day, bucket));
            }
        }
        Ok(found)
    }

    /// Removes every aggregate of the tenant (before a rebuild), in commits of 1,000 keys.
    pub fn clear(&self, tenant: TenantId) -> Result<(), StoreError> {
        let contributions = self.contributions(tenant)?;
        loop {
            let keys: Vec<RecordId> = contributions
                .keys_with_prefix(&[])
                .take(1000)
                .collect::<Result<_, _>>()?;
            if keys.is_empty() {
                break;
            }
            let mut writes = WriteSet::default();
            for key in &keys {
                writes.remove(&contributions, key);
            }
            self.commit(tenant, writes)?;
        }
        let days = self.days(tenant)?;
        let keys: Vec<DayKey> = days.keys_with_prefix(&[]).collect::<Result<_, _>>()?;
        for chunk in keys.chunks(1000) {
            let mut writes = WriteSet::default();
            for key in chunk {
                writes.remove(&days, key);
            }
            self.commit(tenant, writes)?;
        }
        let group_days = self.group_days(tenant)?;
        let keys: Vec<GroupDayKey> = group_days.keys_with_prefix(&[]).collect::<Result<_, _>>()?;
        for chunk in keys.chunks(1000) {
            let mut writes = WriteSet::default();
            for key in chunk {
                writes.remove(&group_days, key);
            }
            self.commit(tenant, writes)?;
        }
        let account_sums = self.account_sums(tenant)?;
        let keys: Vec<[u8; 32]> = account_sums
            .keys_with_prefix(&[])
            .collect::<Result<_, _>>()?;
        for chunk in keys.chunks(1000) {
            let mut writes = WriteSet::default();
            for key in chunk {
                writes.remove(&account_sums, key);
            }
            self.commit(tenant, writes)?;
        }
        let entries = self.entries(tenant)?;
        let keys: Vec<RecordId> = entries.keys_with_prefix(&[]).collect::<Result<_, _>>()?;
        for chunk in keys.chunks(1000) {
            let mut writes = WriteSet::default();
            for key in chunk {
                writes.remove(&entries, key);
            }
            self.commit(tenant, writes)?;
        }
        // The one-record directory of earlier versions, which these entries replace.
        let legacy: Collection<&'static str, AccountDirectory> = self
            .store
            .collection(Scope::Tenant(tenant), "insights_accounts")?;
        let mut writes = WriteSet::default();
        writes.remove(&legacy, &"directory");
        self.commit(tenant, writes)
    }

    /// Commits aggregate writes of `tenant` and moves its [`generation`] on, so that cached
    /// dashboards built from the earlier state are no longer served. Every write of the five
    /// collections goes through here, except a deletion's (see
    /// [`InsightsStore::committed_elsewhere`]).
    pub fn commit(&self, tenant: TenantId, writes: WriteSet) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let committed = self.store.commit(writes);
        // Also after a failed commit: part of it may have landed, and a needless rebuild of a
        // cached page costs only time.
        Self::committed_elsewhere(tenant);
        committed
    }

    /// Moves the tenant's [`generation`] on after a commit of aggregate writes that another
    /// module made (a deletion's commit, which staged them through
    /// [`crate::insights::stage_forgotten`]); called after that commit, failed or not.
    pub fn committed_elsewhere(tenant: TenantId) {
        let mut generations = GENERATIONS.lock().unwrap_or_else(PoisonError::into_inner);
        *generations.entry(tenant).or_insert(0) += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_keys_sort_like_days() {
        let days = [-5, -1, 0, 1, 738_000, 738_001];
        let mut keys: Vec<Vec<u8>> = days.iter().map(|day| DayKey(*day).to_key_bytes()).collect();
        let sorted = keys.clone();
        keys.sort();
        assert_eq!(keys, sorted);
        for day in days {
            assert_eq!(
                DayKey::from_key_bytes(&DayKey(day).to_key_bytes()),
                Some(DayKey(day))
            );
        }
    }
}
