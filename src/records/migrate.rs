//! One-time moves of stored source claims, run when the store opens.
//!
//! [`signal_source_keys`]: signals were once claimed in `signal_sources` under
//! [`plain_source_key`] (source system and id, no kind), so a review imported with the same source
//! system and id as a survey replaced the survey. Their key now ends in the signal's kind
//! (`SignalRecord::source_key`). The migration claims every stored signal's new key for its id and
//! releases the old claim when it points at that same id, in batches committed under the tenant's
//! writer lock; then it marks the tenant done (`signal_kind_keys` in the tenant's
//! `record_migrations` collection) so later opens skip it. A run cut off before the mark simply
//! runs again: a claim already made is left as it is, a released one is not found again. A tenant
//! without signals is neither walked nor marked.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::context::AppContext;
use crate::ids::{RecordId, TenantId};
use crate::records::{plain_source_key, RecordStore, SourceRecord};
use crate::signals::SignalRecord;
use crate::store::{Collection, Scope, Store, StoreError, WriteSet};

/// The tenant collection of migration marks: migration name → when it finished.
pub const MIGRATIONS: &str = "record_migrations";

/// The mark of [`signal_source_keys`].
pub const SIGNAL_KIND_KEYS: &str = "signal_kind_keys";

/// Signals moved per commit.
const BATCH: usize = 500;

/// What a migration of signal claims did (counts only: nothing of the tenants' content).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    /// Tenants whose signals were walked (not those already marked done).
    pub tenants: usize,
    /// New (kind-qualified) claims made.
    pub claimed: usize,
    /// Old claims released.
    pub released: usize,
    /// Signals that could not be read (their data subject's key was erased): left as they are.
    pub unreadable: usize,
    /// Signals whose new key another record holds already: left as they are.
    pub conflicts: usize,
}

impl Moved {
    fn add(&mut self, other: Self) {
        self.tenants += other.tenants;
        self.claimed += other.claimed;
        self.released += other.released;
        self.unreadable += other.unreadable;
        self.conflicts += other.conflicts;
    }
}

/// The tenant's migration marks.
pub fn marks(
    store: &Store,
    tenant: TenantId,
) -> Result<Collection<&'static str, DateTime<Utc>>, StoreError> {
    store.collection(Scope::Tenant(tenant), MIGRATIONS)
}

/// Moves the signal claims of every tenant not yet marked done (see the module's description).
pub fn signal_source_keys(context: &AppContext) -> Result<Moved, StoreError> {
    let tenants = context.tenants.list_stored()?;
    let mut total = Moved::default();
    for tenant in tenants {
        let marks = match marks(&context.store, tenant.id) {
            Ok(marks) => marks,
            // A tenant whose keys were destroyed (offboarded) has nothing left to move.
            Err(StoreError::UnknownScope(_)) => continue,
            Err(error) => return Err(error),
        };
        if marks.contains(&SIGNAL_KIND_KEYS)? {
            continue;
        }
        // No signals, nothing to move (nor to mark: an empty collection costs nothing to look
        // at again, and an open on a full disk must not fail on a write it does not need).
        if RecordStore::<SignalRecord>::new(context.store.clone())
            .records(tenant.id)?
            .is_empty()
        {
            continue;
        }
        let moved = signal_source_keys_of(&context.store, tenant.id)?;
        match marks.insert(&SIGNAL_KIND_KEYS, &Utc::now()) {
            Ok(()) => {}
            // Nothing was moved, so nothing is lost without the mark: the next open walks the
            // tenant again. (With something moved the error stands, like the other recovery
            // steps at open: the operator frees space first.)
            Err(StoreError::DiskFull { .. }) if moved.claimed == 0 && moved.released == 0 => {
                tracing::warn!(tenant = %tenant.id, "signal key migration not marked done: disk reserve reached");
            }
            Err(error) => return Err(error),
        }
        if moved.claimed > 0 || moved.released > 0 || moved.unreadable > 0 || moved.conflicts > 0 {
            tracing::info!(
                tenant = %tenant.id,
                claimed = moved.claimed,
                released = moved.released,
                unreadable = moved.unreadable,
                conflicts = moved.conflicts,
                "signal source keys now include the signal kind"
            );
        }
        total.add(moved);
    }
    Ok(total)
}

/// Moves one tenant's signal claims, whether or not it is marked done (idempotent: a second run
/// claims and releases nothing). Does not mark the tenant.
pub fn signal_source_keys_of(store: &Store, tenant: TenantId) -> Result<Moved, StoreError> {
    let signals = RecordStore::<SignalRecord>::new(store.clone());
    let records = signals.records(tenant)?;
    let mut moved = Moved {
        tenants: 1,
        ..Moved::default()
    };
    let mut pending: Vec<(RecordId, String, String)> = Vec::with_capacity(BATCH);
    for entry in records.scan() {
        match entry {
            Ok((id, stored)) => {
                let record = &stored.record;
                pending.push((
                    id,
                    record.source_key(),
                    plain_source_key(record.source_system(), record.source_id()),
                ));
            }
            Err(StoreError::SubjectErased { .. }) => moved.unreadable += 1,
            Err(error) => return Err(error),
        }
        if pending.len() >= BATCH {
            move_batch(store, &signals, tenant, &pending, &mut moved)?;
            pending.clear();
        }
    }
    move_batch(store, &signals, tenant, &pending, &mut moved)?;
    Ok(moved)
}

/// Claims each `(id, new key, old key)`'s new key and releases its old one, in one commit under
/// the tenant's writer lock (read there, so that nothing written meanwhile is overwritten).
fn move_batch(
    store: &Store,
    signals: &RecordStore<SignalRecord>,
    tenant: TenantId,
    batch: &[(RecordId, String, String)],
    moved: &mut Moved,
) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Ok(());
    }
    store.lock_scope(Scope::Tenant(tenant)).run(|| {
        let sources = signals.sources(tenant)?;
        let mut writes = WriteSet::default();
        let mut staged = HashSet::new();
        let mut counts = Moved::default();
        for (id, new_key, old_key) in batch {
            match sources.get(new_key)? {
                Some(holder) if holder == *id => {}
                Some(_) => {
                    counts.conflicts += 1;
                    continue;
                }
                None => {
                    if !staged.insert(new_key.as_str()) {
                        counts.conflicts += 1;
                        continue;
                    }
                    writes.claim(&sources, new_key, id)?;
                    counts.claimed += 1;
                }
            }
            // The old claim goes only when it is this record's, and never twice in one batch.
            if sources.get(old_key)? == Some(*id) && staged.insert(old_key.as_str()) {
                writes.release(&sources, old_key);
                counts.released += 1;
            }
        }
        store.commit(writes)?;
        moved.claimed += counts.claimed;
        moved.released += counts.released;
        moved.conflicts += counts.conflicts;
        Ok(())
    })
}
