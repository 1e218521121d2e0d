//! Tenant directory (appliance scope) and per-tenant settings (tenant scope).

use chrono::Utc;

use crate::ids::TenantId;
use crate::store::{BlindIndex, Collection, Scope, Store, StoreError, WriteSet};
use crate::tenants::{Slug, Tenant, TenantError, TenantSettings};

const SETTINGS_KEY: &str = "settings";

#[derive(Clone)]
pub struct TenantStore {
    store: Store,
}

impl TenantStore {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    fn tenants(&self) -> Result<Collection<TenantId, Tenant>, StoreError> {
        self.store.collection(Scope::Appliance, "tenants")
    }

    fn slugs(&self) -> Result<BlindIndex<TenantId>, StoreError> {
        self.store.blind_index(Scope::Appliance, "tenant_slugs")
    }

    fn settings_collection(
        &self,
        tenant: TenantId,
    ) -> Result<Collection<&'static str, TenantSettings>, StoreError> {
        self.store.collection(Scope::Tenant(tenant), "settings")
    }

    /// Creates the tenant with fresh keys, its record and its slug in one transaction.
    pub fn create(&self, slug: Slug, name: String) -> Result<Tenant, TenantError> {
        let tenant = Tenant {
            id: TenantId::new(),
            slug,
            name,
            created: Utc::now(),
        };
        let mut writes = WriteSet::default();
        writes.create_scope_keys(&self.store, Scope::Tenant(tenant.id), false)?;
        writes.put(&self.tenants()?, &tenant.id, &tenant)?;
        writes.claim(&self.slugs()?, tenant.slug.as_str(), &tenant.id)?;
        match self.store.commit(writes) {
            Ok(()) => Ok(tenant),
            Err(StoreError::Conflict { .. }) => {
                Err(TenantError::SlugTaken(tenant.slug.to_string()))
            }
            Err(other) => Err(other.into()),
        }
    }

    pub fn get(&self, id: TenantId) -> Result<Option<Tenant>, TenantError> {
        Ok(self.tenants()?.get(&id)?)
    }

    pub fn find_by_slug(&self, slug: &str) -> Result<Option<Tenant>, TenantError> {
        let Ok(slug) = Slug::parse(slug) else {
            return Ok(None);
        };
        match self.slugs()?.get(slug.as_str())? {
            Some(id) => self.get(id),
            None => Ok(None),
        }
    }

    /// Every tenant, oldest first.
    pub fn list(&self) -> Result<Vec<Tenant>, TenantError> {
        Ok(self.list_stored()?)
    }

    /// [`TenantStore::list`] for callers that deal only in store errors (listing fails in
    /// nothing else), such as the recovery steps when the store opens.
    pub fn list_stored(&self) -> Result<Vec<Tenant>, StoreError> {
        self.tenants()?
            .scan()
            .map(|entry| entry.map(|(_, tenant)| tenant))
            .collect()
    }

    /// Stages the removal of the tenant's record for offboarding's purge. The slug stays claimed
    /// in `tenant_slugs`, pointing at nothing: a purged tenant's slug is never handed to a new
    /// tenant, so old links, bookmarks and API clients never reach someone else's data.
    pub fn stage_removal(&self, writes: &mut WriteSet, tenant: TenantId) -> Result<(), StoreError> {
        writes.remove(&self.tenants()?, &tenant);
        Ok(())
    }

    pub fn settings(&self, tenant: TenantId) -> Result<TenantSettings, TenantError> {
        Ok(self
            .settings_collection(tenant)?
            .get(&SETTINGS_KEY)?
            .unwrap_or_default())
    }

    pub fn save_settings(
        &self,
        tenant: TenantId,
        settings: &TenantSettings,
    ) -> Result<(), TenantError> {
        Ok(self
            .settings_collection(tenant)?
            .insert(&SETTINGS_KEY, settings)?)
    }
}
