//! The leads' collections, in the tenant's scope and sealed like every record:
//!
//! - `lead_states`: interaction id → [`LeadState`] (marked by a person, status, assignee);
//! - `crm_settings`: `settings` → [`CrmSettings`] (the outbound webhook, its secret included);
//! - `crm_deliveries`: delivery number → [`Delivery`] (every delivery, for the log page);
//! - `crm_outbox`: delivery number → its next attempt time, for the deliveries still pending, so
//!   the delivery thread reads only those.
//!
//! A delivery and its outbox entry change together, in one commit.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::ids::{RecordId, TenantId};
use crate::leads::webhook::{CrmSettings, Delivery, DeliveryState};
use crate::leads::{LeadState, LeadStatus};
use crate::store::{Collection, Scope, Store, StoreError, WriteSet};

const SETTINGS_KEY: &str = "settings";

/// The lead trees of every tenant. Cheap to make: it holds only the store handle.
#[derive(Clone)]
pub struct LeadStore {
    store: Store,
}

impl std::fmt::Debug for LeadStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("LeadStore")
    }
}

impl LeadStore {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    fn states(&self, tenant: TenantId) -> Result<Collection<RecordId, LeadState>, StoreError> {
        self.store.collection(Scope::Tenant(tenant), "lead_states")
    }

    fn settings_tree(
        &self,
        tenant: TenantId,
    ) -> Result<Collection<&'static str, CrmSettings>, StoreError> {
        self.store.collection(Scope::Tenant(tenant), "crm_settings")
    }

    fn deliveries(&self, tenant: TenantId) -> Result<Collection<u64, Delivery>, StoreError> {
        self.store
            .collection(Scope::Tenant(tenant), "crm_deliveries")
    }

    fn outbox(&self, tenant: TenantId) -> Result<Collection<u64, DateTime<Utc>>, StoreError> {
        self.store.collection(Scope::Tenant(tenant), "crm_outbox")
    }

    /// Stages the removal of the interaction's lead state into `writes` (the interaction is
    /// being deleted; see `records::delete`).
    pub fn stage_removal(
        &self,
        tenant: TenantId,
        interaction: RecordId,
        writes: &mut crate::store::WriteSet,
    ) -> Result<(), StoreError> {
        writes.remove(&self.states(tenant)?, &interaction);
        Ok(())
    }

    /// The interaction's lead state (the default: not marked, `new`, nobody assigned).
    pub fn state(&self, tenant: TenantId, interaction: RecordId) -> Result<LeadState, StoreError> {
        Ok(self.states(tenant)?.get(&interaction)?.unwrap_or_default())
    }

    /// Changes the interaction's lead state under the scope's lock (two changes at once both
    /// stay) and returns the state before and after.
    pub fn update(
        &self,
        tenant: TenantId,
        interaction: RecordId,
        change: impl FnOnce(&mut LeadState),
    ) -> Result<(LeadState, LeadState), StoreError> {
        self.store.lock_scope(Scope::Tenant(tenant)).run(|| {
            let states = self.states(tenant)?;
            let before = states.get(&interaction)?.unwrap_or_default();
            let mut after = before.clone();
            change(&mut after);
            let subject = crate::records::subject_key_of(&self.store, tenant, interaction)?;
            let mut writes = WriteSet::default();
            writes.put_under(&states, &interaction, &after, subject)?;
            self.store.commit(writes)?;
            Ok((before, after))
        })
    }

    /// Every interaction a person marked as a lead.
    pub fn marked(&self, tenant: TenantId) -> Result<HashSet<RecordId>, StoreError> {
        let mut marked = HashSet::new();
        for entry in self.states(tenant)?.scan() {
            let (id, state) = entry?;
            if state.marked {
                marked.insert(id);
            }
        }
        Ok(marked)
    }

    /// The tenant's CRM hand-off settings (the default: no URL, off).
    pub fn settings(&self, tenant: TenantId) -> Result<CrmSettings, StoreError> {
        Ok(self
            .settings_tree(tenant)?
            .get(&SETTINGS_KEY)?
            .unwrap_or_default())
    }

    pub fn save_settings(
        &self,
        tenant: TenantId,
        settings: &CrmSettings,
    ) -> Result<(), StoreError> {
        self.settings_tree(tenant)?.insert(&SETTINGS_KEY, settings)
    }

    /// Stores a new delivery (pending: into the outbox too) and returns it with its number.
    pub fn add_delivery(
        &self,
        tenant: TenantId,
        mut delivery: Delivery,
    ) -> Result<Delivery, StoreError> {
        delivery.number = self.store.generate_id()?;
        self.save_delivery(tenant, &delivery)?;
        Ok(delivery)
    }

    /// Writes a delivery and its outbox entry together: present while it is pending, absent
    /// once it is delivered or failed.
    pub fn save_delivery(&self, tenant: TenantId, delivery: &Delivery) -> Result<(), StoreError> {
        let mut writes = WriteSet::default();
        self.stage_delivery(&mut writes, tenant, delivery)?;
        self.store.commit(writes)
    }

    fn stage_delivery(
        &self,
        writes: &mut WriteSet,
        tenant: TenantId,
        delivery: &Delivery,
    ) -> Result<(), StoreError> {
        writes.put(&self.deliveries(tenant)?, &delivery.number, delivery)?;
        let outbox = self.outbox(tenant)?;
        match (delivery.state, delivery.next_attempt) {
            (DeliveryState::Pending, Some(next)) => {
                writes.put(&outbox, &delivery.number, &next)?;
            }
            _ => writes.remove(&outbox, &delivery.number),
        }
        Ok(())
    }

    /// Whether any delivery of lead `interaction` was ever queued.
    pub fn has_delivery(
        &self,
        tenant: TenantId,
        interaction: RecordId,
    ) -> Result<bool, StoreError> {
        for entry in self.deliveries(tenant)?.scan() {
            if entry?.1.lead == interaction {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Changes the interaction's lead state as [`Self::update`] does and, when the new state is
    /// `qualified` and `queue` gives a delivery (it is told the state before and whether the lead
    /// had a delivery already), stores that delivery and its outbox entry in the same commit, so
    /// a qualified lead is never left without the delivery it was due.
    pub fn update_and_queue(
        &self,
        tenant: TenantId,
        interaction: RecordId,
        change: impl FnOnce(&mut LeadState),
        queue: impl FnOnce(&LeadState, bool) -> Option<Delivery>,
    ) -> Result<(LeadState, LeadState, Option<Delivery>), StoreError> {
        self.store.lock_scope(Scope::Tenant(tenant)).run(|| {
            let states = self.states(tenant)?;
            let before = states.get(&interaction)?.unwrap_or_default();
            let mut after = before.clone();
            change(&mut after);
            let mut writes = WriteSet::default();
            let subject = crate::records::subject_key_of(&self.store, tenant, interaction)?;
            writes.put_under(&states, &interaction, &after, subject)?;
            let queued = if after.status == LeadStatus::Qualified {
                let delivered = self.has_delivery(tenant, interaction)?;
                match queue(&before, delivered) {
                    Some(mut delivery) => {
                        delivery.number = self.store.generate_id()?;
                        self.stage_delivery(&mut writes, tenant, &delivery)?;
                        Some(delivery)
                    }
                    None => None,
                }
            } else {
                None
            };
            self.store.commit(writes)?;
            Ok((before, after, queued))
        })
    }

    pub fn delivery(&self, tenant: TenantId, number: u64) -> Result<Option<Delivery>, StoreError> {
        self.deliveries(tenant)?.get(&number)
    }

    /// The deliveries, newest first, at most `limit`, and how many there are in all.
    pub fn recent_deliveries(
        &self,
        tenant: TenantId,
        limit: usize,
    ) -> Result<(Vec<Delivery>, usize), StoreError> {
        let tree = self.deliveries(tenant)?;
        let total = tree.len();
        let recent = tree
            .scan_newest_first(None)
            .take(limit)
            .map(|entry| entry.map(|(_, delivery)| delivery))
            .collect::<Result<_, _>>()?;
        Ok((recent, total))
    }

    /// The numbers of the pending deliveries whose next attempt is due at `now`, oldest first.
    pub fn due(&self, tenant: TenantId, now: DateTime<Utc>) -> Result<Vec<u64>, StoreError> {
        let mut due = Vec::new();
        for entry in self.outbox(tenant)?.scan() {
            let (number, next) = entry?;
            if next <= now {
                due.push(number);
            }
        }
        Ok(due)
    }
}
