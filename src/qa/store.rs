//! QA's collections, in the tenant's scope and sealed like every record:
//!
//! - `qa_scorecard`: `scorecard` → the tenant's [`Scorecard`] (absent: [`Scorecard::builtin`]);
//! - `qa_overrides`: interaction id → every [`Override`] of its criteria, oldest first. The AI's
//!   result stays in the analysis store; an override never replaces it.

use serde::{Deserialize, Serialize};

use crate::ids::{RecordId, TenantId};
use crate::qa::{Override, Scorecard};
use crate::store::{Collection, Scope, Store, StoreError};

const SCORECARD_KEY: &str = "scorecard";

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct OverrideLog {
    entries: Vec<Override>,
}

/// The QA trees of every tenant. Cheap to make: it holds only the store handle.
#[derive(Clone)]
pub struct QaStore {
    store: Store,
}

impl std::fmt::Debug for QaStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("QaStore")
    }
}

impl QaStore {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    fn scorecards(
        &self,
        tenant: TenantId,
    ) -> Result<Collection<&'static str, Scorecard>, StoreError> {
        self.store.collection(Scope::Tenant(tenant), "qa_scorecard")
    }

    fn override_logs(
        &self,
        tenant: TenantId,
    ) -> Result<Collection<RecordId, OverrideLog>, StoreError> {
        self.store.collection(Scope::Tenant(tenant), "qa_overrides")
    }

    /// The tenant's scorecard, or the built-in one when it has stored none.
    pub fn scorecard(&self, tenant: TenantId) -> Result<Scorecard, StoreError> {
        Ok(self
            .scorecards(tenant)?
            .get(&SCORECARD_KEY)?
            .unwrap_or_else(Scorecard::builtin))
    }

    /// Replaces the tenant's scorecard. The caller has validated it.
    pub fn save_scorecard(
        &self,
        tenant: TenantId,
        scorecard: &Scorecard,
    ) -> Result<(), StoreError> {
        self.scorecards(tenant)?.insert(&SCORECARD_KEY, scorecard)
    }

    /// Every override of the interaction's criteria, oldest first.
    pub fn overrides(
        &self,
        tenant: TenantId,
        interaction: RecordId,
    ) -> Result<Vec<Override>, StoreError> {
        Ok(self
            .override_logs(tenant)?
            .get(&interaction)?
            .map(|log| log.entries)
            .unwrap_or_default())
    }

    /// Stages the removal of the interaction's overrides into `writes`: what was derived from an
    /// interaction that no longer exists goes in the same commit as its analyses.
    pub fn stage_removal(
        &self,
        tenant: TenantId,
        interaction: RecordId,
        writes: &mut crate::store::WriteSet,
    ) -> Result<(), StoreError> {
        writes.remove(&self.override_logs(tenant)?, &interaction);
        Ok(())
    }

    /// Adds an override to the interaction's log (earlier ones are kept).
    pub fn add_override(
        &self,
        tenant: TenantId,
        interaction: RecordId,
        entry: Override,
    ) -> Result<(), StoreError> {
        crate::analysis::overrides::append_to_log(
            &self.store,
            tenant,
            &self.override_logs(tenant)?,
            interaction,
            |log: &mut OverrideLog| log.entries.push(entry),
        )
    }
}
