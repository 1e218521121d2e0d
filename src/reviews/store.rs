//! The review area's collections, in the tenant's scope and sealed like every record:
//!
//! - `review_states`: review signal id → [`ReviewState`] (its workflow status, the reply text a
//!   person edited or sent, who did what when). A review without an entry is `new`.
//! - `review_settings`: `settings` → the tenant's [`ReviewSettings`] (absent: the defaults).
//!
//! The review itself stays a signal in the `RecordStore`, and its analyses (sentiment, topics, the
//! machine's reply draft) stay in the analysis store: this module keeps only what people decide.

use crate::ids::{RecordId, TenantId};
use crate::reviews::{ReviewSettings, ReviewState};
use crate::store::{Collection, Scope, Store, StoreError};

const SETTINGS_KEY: &str = "settings";

/// The review trees of every tenant. Cheap to make: it holds only the store handle.
#[derive(Clone)]
pub struct ReviewStore {
    store: Store,
}

impl std::fmt::Debug for ReviewStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("ReviewStore")
    }
}

impl ReviewStore {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    fn states(&self, tenant: TenantId) -> Result<Collection<RecordId, ReviewState>, StoreError> {
        self.store
            .collection(Scope::Tenant(tenant), "review_states")
    }

    fn settings_collection(
        &self,
        tenant: TenantId,
    ) -> Result<Collection<&'static str, ReviewSettings>, StoreError> {
        self.store
            .collection(Scope::Tenant(tenant), "review_settings")
    }

    /// Stages the removal of the review's workflow state into `writes` (the review signal is
    /// being deleted; see `records::delete`).
    pub fn stage_removal(
        &self,
        tenant: TenantId,
        review: RecordId,
        writes: &mut crate::store::WriteSet,
    ) -> Result<(), StoreError> {
        writes.remove(&self.states(tenant)?, &review);
        Ok(())
    }

    /// The review's workflow state; the default (`new`, nothing written) when it has none.
    pub fn state(&self, tenant: TenantId, review: RecordId) -> Result<ReviewState, StoreError> {
        Ok(self.states(tenant)?.get(&review)?.unwrap_or_default())
    }

    pub fn save_state(
        &self,
        tenant: TenantId,
        review: RecordId,
        state: &ReviewState,
    ) -> Result<(), StoreError> {
        let subject = crate::records::subject_key_of(&self.store, tenant, review)?;
        let mut writes = crate::store::WriteSet::default();
        writes.put_under(&self.states(tenant)?, &review, state, subject)?;
        self.store.commit(writes)
    }

    /// The tenant's reply-draft settings, or the defaults when it has stored none.
    pub fn settings(&self, tenant: TenantId) -> Result<ReviewSettings, StoreError> {
        Ok(self
            .settings_collection(tenant)?
            .get(&SETTINGS_KEY)?
            .unwrap_or_default())
    }

    /// Replaces the tenant's settings. The caller has validated them.
    pub fn save_settings(
        &self,
        tenant: TenantId,
        settings: &ReviewSettings,
    ) -> Result<(), StoreError> {
        self.settings_collection(tenant)?
            .insert(&SETTINGS_KEY, settings)
    }
}
