//! Offboardings, one per tenant, in the appliance's scope (`tenant_offboarding`, by tenant id):
//! they must outlive the tenant's own scope, whose keys the purge destroys.

use crate::ids::TenantId;
use crate::offboarding::Offboarding;
use crate::store::{Collection, Scope, Store, StoreError, WriteSet};

const COLLECTION: &str = "tenant_offboarding";

#[derive(Clone)]
pub struct OffboardingStore {
    store: Store,
}

impl OffboardingStore {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    fn records(&self) -> Result<Collection<TenantId, Offboarding>, StoreError> {
        self.store.collection(Scope::Appliance, COLLECTION)
    }

    pub fn get(&self, tenant: TenantId) -> Result<Option<Offboarding>, StoreError> {
        self.records()?.get(&tenant)
    }

    /// By slug: offboardings are few (one per tenant ever offboarded), so a scan is enough.
    pub fn find_by_slug(&self, slug: &str) -> Result<Option<Offboarding>, StoreError> {
        for entry in self.records()?.scan() {
            let (_, offboarding) = entry?;
            if offboarding.slug == slug {
                return Ok(Some(offboarding));
            }
        }
        Ok(None)
    }

    /// Every offboarding, in tenant-id order (creation order of the tenants).
    pub fn list(&self) -> Result<Vec<Offboarding>, StoreError> {
        self.records()?
            .scan()
            .map(|entry| entry.map(|(_, offboarding)| offboarding))
            .collect()
    }

    /// Saves durably.
    pub fn save(&self, offboarding: &Offboarding) -> Result<(), StoreError> {
        self.records()?.insert(&offboarding.tenant, offboarding)
    }

    pub fn stage_save(
        &self,
        writes: &mut WriteSet,
        offboarding: &Offboarding,
    ) -> Result<(), StoreError> {
        writes.put(&self.records()?, &offboarding.tenant, offboarding)
    }

    /// Removes durably (a cancelled wind-down).
    pub fn remove(&self, tenant: TenantId) -> Result<(), StoreError> {
        self.records()?.remove(&tenant)
    }
}
