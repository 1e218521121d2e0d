//! Deleting imported records: the one place that knows everything kept about a record of each
//! kind, so that retention, import rollback and (later) erasure remove the same things.
//!
//! A record's deletion removes the record, its source claim (the `*_sources` blind index entry),
//! its reference-index entries (`records::refs`), its search document, and what is derived from
//! it and keyed by its id: stored analyses, the analysis job and its queue entry
//! (`analysis::store`), QA and label overrides (`analysis::overrides`), the lead state (`leads::store`) and, for a
//! review signal, its review state (`reviews::store`); and what it contributed to the dashboard
//! aggregates (`insights::stage_forgotten`: its contribution and its share of the day buckets and
//! sums, or an account's directory entry).
//! Account health snapshots are per account, not per record, and stay.
//!
//! [`stage_deletion`] stages one record's removal into a write set (import rollback uses it in its
//! own commit); [`delete`] deletes a batch of records in one redo commit (`Store::commit_redo`:
//! atomic across crashes, and readers never wait for it) under the tenant's writer lock, and is the
//! function every sweep deletes through.

use crate::context::AppContext;
use crate::ids::{RecordId, TenantId};
use crate::records::{RecordKind, RecordStore, SourceRecord};
use crate::search::IndexBatch;
use crate::store::{Scope, StoreError, WriteSet};

/// Records deleted per commit by the sweeps: large enough to amortise a commit's flushes,
/// small enough that the tenant's writer lock (which imports and API writes wait for) is
/// released every few milliseconds.
pub const DELETE_BATCH: usize = 1000;

/// Stages the removal of record `id` of kind `R` (imported under `source_key`) and of everything
/// keyed by it, except the analysis store's part (jobs and analyses), which must change under
/// the analysis queue's lock: [`delete`] adds it through `AnalysisStore::forget_with`; import
/// rollback leaves a job to end as "interaction missing", which removes the analyses then.
pub fn stage_deletion<R: SourceRecord>(
    context: &AppContext,
    tenant: TenantId,
    id: RecordId,
    source_key: &str,
    writes: &mut WriteSet,
    index: &mut IndexBatch,
) -> Result<(), StoreError> {
    let store = RecordStore::<R>::new(context.store.clone());
    writes.remove(&store.records(tenant)?, &id);
    let sources = store.sources(tenant)?;
    // A later record may have claimed the source key since (never in practice, but a release
    // must not free someone else's claim).
    if sources.get(source_key)? == Some(id) {
        writes.release(&sources, source_key);
    }
    index.retire(writes, id)?;
    crate::records::refs::RefIndex::new(context.store.clone()).stage_removal(
        writes,
        tenant,
        R::KIND,
        id,
    )?;
    match R::KIND {
        RecordKind::Interaction => {
            crate::analysis::overrides::stage_removal(&context.store, tenant, id, writes)?;
            crate::leads::store::LeadStore::new(context.store.clone())
                .stage_removal(tenant, id, writes)?;
        }
        RecordKind::Signal => {
            crate::reviews::store::ReviewStore::new(context.store.clone())
                .stage_removal(tenant, id, writes)?;
        }
        RecordKind::Account | RecordKind::Contact => {}
    }
    Ok(())
}

/// A record to delete: its id and the source key it was imported under (a record's source key
/// never changes, so a caller that has read the record passes it instead of a second read).
#[derive(Clone, Debug)]
pub struct Target {
    pub id: RecordId,
    pub source_key: String,
}

/// The targets of `ids` that exist, read for their source keys (for callers that hold ids only).
pub fn targets<R: SourceRecord>(
    context: &AppContext,
    tenant: TenantId,
    ids: &[RecordId],
) -> Result<Vec<Target>, StoreError> {
    let records = RecordStore::<R>::new(context.store.clone()).records(tenant)?;
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(stored) = records.get(id)? {
            found.push(Target {
                id: stored.id,
                source_key: stored.record.source_key(),
            });
        }
    }
    Ok(found)
}

/// Deletes the records `targets` of kind `R` that still exist, with everything derived from
/// them and their share of the dashboard aggregates, in one redo commit under the tenant's
/// writer lock (held only for this batch: callers pass at most [`DELETE_BATCH`] targets and
/// call again). Returns the ids actually deleted.
pub fn delete<R: SourceRecord>(
    context: &AppContext,
    tenant: TenantId,
    targets: &[Target],
) -> Result<Vec<RecordId>, StoreError> {
    let deleted = context.store.lock_scope(Scope::Tenant(tenant)).run(|| {
        let records = RecordStore::<R>::new(context.store.clone()).records(tenant)?;
        // Still there? (Checked under the lock, without opening the record.)
        let mut found = Vec::with_capacity(targets.len());
        for target in targets {
            if records.contains(&target.id)? {
                found.push(target);
            }
        }
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let deleted: Vec<RecordId> = found.iter().map(|target| target.id).collect();
        let search = crate::search::SearchIndex::new(context.store.clone());
        let analysed = matches!(R::KIND, RecordKind::Interaction | RecordKind::Signal);
        let subjects: &[RecordId] = if analysed { &deleted } else { &[] };
        let committed = context.analysis.forget_with(tenant, subjects, |writes| {
            let mut index = search.batch(tenant)?;
            for target in &found {
                stage_deletion::<R>(
                    context,
                    tenant,
                    target.id,
                    &target.source_key,
                    writes,
                    &mut index,
                )?;
            }
            index.finish(writes)?;
            // The dashboard aggregates lose these records' contributions in the same commit.
            crate::insights::stage_forgotten(context, tenant, R::KIND, &deleted, writes)
        });
        // Also after a failed commit: part of it may have landed (and is completed at the next
        // open), so a cached dashboard must not be served as current.
        crate::insights::InsightsStore::committed_elsewhere(tenant);
        committed?;
        Ok::<_, StoreError>(deleted)
    })?;
    Ok(deleted)
}
