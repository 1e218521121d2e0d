//! Live progress of the imports the console started, kept in memory only (shared through
//! `AppContext`): how far each run has read, and why it failed when it failed before its report
//! could be stored. A run's entry goes once its report is stored; a restart forgets them all
//! (an import cut off by the restart is rolled back and reported as such).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::ids::{ImportId, TenantId};
use crate::ingest::Progress;

/// One running (or failed) console import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveImport {
    pub tenant: TenantId,
    pub source_name: String,
    /// 1 while validating, 2 while writing.
    pub pass: u8,
    pub bytes: u64,
    pub total_bytes: u64,
    /// Why the import stopped without a report (no tenant content in it).
    pub error: Option<String>,
}

impl LiveImport {
    /// Progress over both passes, as (done, total) for a `<progress>` element.
    pub fn overall(&self) -> (u64, u64) {
        let total = self.total_bytes.max(1);
        let done = u64::from(self.pass.saturating_sub(1)) * total + self.bytes.min(total);
        (done, 2 * total)
    }

    pub fn percent(&self) -> u64 {
        let (done, total) = self.overall();
        done * 100 / total
    }
}

#[derive(Clone, Default)]
pub struct LiveImports(Arc<Mutex<HashMap<ImportId, LiveImport>>>);

impl LiveImports {
    fn lock(&self) -> MutexGuard<'_, HashMap<ImportId, LiveImport>> {
        // A panic while holding the lock leaves only progress figures behind: keep using them.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn start(&self, id: ImportId, tenant: TenantId, source_name: String, total_bytes: u64) {
        self.lock().insert(
            id,
            LiveImport {
                tenant,
                source_name,
                pass: 1,
                bytes: 0,
                total_bytes,
                error: None,
            },
        );
    }

    pub fn update(&self, id: ImportId, progress: Progress) {
        if let Some(entry) = self.lock().get_mut(&id) {
            entry.pass = progress.pass;
            entry.bytes = progress.bytes;
            entry.total_bytes = progress.total_bytes;
        }
    }

    pub fn fail(&self, id: ImportId, error: String) {
        if let Some(entry) = self.lock().get_mut(&id) {
            entry.error = Some(error);
        }
    }

    /// Forgets a run whose report is stored.
    pub fn finish(&self, id: ImportId) {
        self.lock().remove(&id);
    }

    /// The run's live state, if it is the tenant's and still known.
    pub fn get(&self, tenant: TenantId, id: ImportId) -> Option<LiveImport> {
        self.lock()
            .get(&id)
            .filter(|entry| entry.tenant == tenant)
            .cloned()
    }

    /// The tenant's runs still in memory (running, or failed without a report).
    pub fn of_tenant(&self, tenant: TenantId) -> Vec<(ImportId, LiveImport)> {
        let mut found: Vec<(ImportId, LiveImport)> = self
            .lock()
            .iter()
            .filter(|(_, entry)| entry.tenant == tenant)
            .map(|(id, entry)| (*id, entry.clone()))
            .collect();
        found.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
        found
    }
}
