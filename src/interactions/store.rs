//! Interaction records of a tenant, and the blind index from source system and id to record, which
//! makes re-imports update instead of duplicate.

use crate::ids::{InteractionId, TenantId};
use crate::interactions::Interaction;
use crate::store::{BlindIndex, Collection, Scope, Store, StoreError};

#[derive(Clone)]
pub struct InteractionStore {
    store: Store,
}

impl InteractionStore {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    pub fn records(
        &self,
        tenant: TenantId,
    ) -> Result<Collection<InteractionId, Interaction>, StoreError> {
        self.store.collection(Scope::Tenant(tenant), "interactions")
    }

    pub fn sources(&self, tenant: TenantId) -> Result<BlindIndex<InteractionId>, StoreError> {
        self.store
            .blind_index(Scope::Tenant(tenant), "interaction_sources")
    }

    pub fn get(
        &self,
        tenant: TenantId,
        id: InteractionId,
    ) -> Result<Option<Interaction>, StoreError> {
        self.records(tenant)?.get(&id)
    }

    /// The interaction imported under `source_key` (see `InteractionRecord::source_key`).
    pub fn find_by_source(
        &self,
        tenant: TenantId,
        source_key: &str,
    ) -> Result<Option<Interaction>, StoreError> {
        match self.sources(tenant)?.get(source_key)? {
            Some(id) => self.get(tenant, id),
            None => Ok(None),
        }
    }

    pub fn count(&self, tenant: TenantId) -> Result<usize, StoreError> {
        Ok(self.records(tenant)?.len())
    }

    /// Calls `visit` with every interaction, oldest first, without holding them all in memory.
    pub fn for_each(
        &self,
        tenant: TenantId,
        mut visit: impl FnMut(Interaction) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        for entry in self.records(tenant)?.scan() {
            visit(entry?.1)?;
        }
        Ok(())
    }
}
