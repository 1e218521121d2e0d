//! The analysis module's collections, all in the tenant's scope and sealed like every record:
//!
//! - `analysis_jobs`: interaction id → [`Job`] (one per interaction);
//! - `analysis_queue`: the queue index, state ‖ priority ‖ position ‖ interaction id → nothing,
//!   for queued, running and failed jobs, so the worker reads the next jobs in order by key and
//!   the start-up re-queue finds running jobs without reading the others;
//! - `analysis_counts`: `counts` → [`JobCounts`], kept exact by changing it in the same
//!   transaction as every job;
//! - `analyses`: interaction id ‖ kind → [`Analysis`];
//! - `analysis_topics`: `topics` → the tenant's topic labels (absent: [`DEFAULT_TOPICS`]).
//!
//! Every change of a job (enqueue, claim, end of an attempt, re-queue) runs under one mutex, from
//! its first read to its commit, and commits the job, its index entry and the counts together.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::analysis::jobs::{
    self, AttemptEnd, EnqueueRequest, Job, JobCounts, JobErrorKind, JobState, Priority,
};
use crate::analysis::progress::Meters;
use crate::analysis::{Analysis, AnalysisError, AnalysisKind, DEFAULT_TOPICS};
use crate::ids::{RecordId, TenantId};
use crate::inference::LabelSet;
use crate::store::{Collection, RecordKey, Scope, Store, StoreError, WriteSet};

/// Enqueue requests committed together, at most.
pub const ENQUEUE_CHUNK: usize = 1000;
const COUNTS_KEY: &str = "counts";
const TOPICS_KEY: &str = "topics";

/// A job's entry in the queue index. Keys hold no content: a state, a priority, a sequence
/// number and a record id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QueueKey {
    state: u8,
    priority: u8,
    position: u64,
    interaction: RecordId,
}

impl QueueKey {
    fn of(job: &Job) -> Option<Self> {
        Some(Self {
            state: job.state.index_code()?,
            priority: job.priority.code(),
            position: job.position,
            interaction: job.interaction,
        })
    }
}

impl RecordKey for QueueKey {
    fn to_key_bytes(&self) -> Vec<u8> {
        let mut key = Vec::with_capacity(26);
        key.push(self.state);
        key.push(self.priority);
        key.extend_from_slice(&self.position.to_be_bytes());
        key.extend_from_slice(&self.interaction.to_bytes());
        key
    }

    fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
        let (&state, rest) = bytes.split_first()?;
        let (&priority, rest) = rest.split_first()?;
        let (position, id) = rest.split_at_checked(8)?;
        Priority::from_code(priority)?;
        Some(Self {
            state,
            priority,
            position: u64::from_be_bytes(position.try_into().ok()?),
            interaction: RecordId::from_bytes(id.try_into().ok()?),
        })
    }
}

/// An analysis's key: the interaction, then the kind, so one interaction's analyses share a prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AnalysisKey {
    interaction: RecordId,
    kind: AnalysisKind,
}

impl RecordKey for AnalysisKey {
    fn to_key_bytes(&self) -> Vec<u8> {
        let mut key = self.interaction.to_bytes().to_vec();
        key.push(self.kind.code());
        key
    }

    fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
        let (id, kind) = bytes.split_at_checked(16)?;
        let [kind] = kind else { return None };
        Some(Self {
            interaction: RecordId::from_bytes(id.try_into().ok()?),
            kind: AnalysisKind::from_code(*kind)?,
        })
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct TopicList {
    labels: Vec<String>,
}

/// Wakes the worker when work arrives, instead of having it poll.
#[derive(Debug, Default)]
struct Wake {
    pending: Mutex<bool>,
    signal: Condvar,
}

/// How a job's running attempt ended, with what it produced.
#[derive(Debug)]
pub struct Finished {
    /// The job as claimed.
    pub job: Job,
    pub end: AttemptEnd,
    /// Stored with the job's end: for `Done`, and for a `Failed` job what it finished before
    /// failing (a review's text analyses when its reply draft failed). Never for `Released`.
    pub analyses: Vec<Analysis>,
}

/// The analysis trees of every tenant. Cheap to clone; clones share the lock and the wake-up.
#[derive(Clone)]
pub struct AnalysisStore {
    store: Store,
    lock: Arc<Mutex<()>>,
    wake: Arc<Wake>,
    meters: Arc<Meters>,
    /// Jobs that ended done since the process started (all tenants), for `/metrics`.
    completed: Arc<std::sync::atomic::AtomicU64>,
}

impl AnalysisStore {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            lock: Arc::default(),
            wake: Arc::default(),
            meters: Arc::default(),
            completed: Arc::default(),
        }
    }

    /// Records a batch of the tenant's that started at `started` and finished `jobs` jobs, for
    /// the rate the Analysis page shows (in memory only).
    pub fn record_batch(&self, tenant: TenantId, started: Instant, jobs: u64) {
        self.meters.record(tenant, started, jobs);
    }

    /// The tenant's measured rate in jobs per minute (see
    /// [`crate::analysis::progress::Progress`]); `None` until a batch of this process has ended.
    pub fn per_minute(&self, tenant: TenantId) -> Option<f64> {
        self.meters.per_minute(tenant)
    }

    fn jobs(&self, tenant: TenantId) -> Result<Collection<RecordId, Job>, StoreError> {
        self.store
            .collection(Scope::Tenant(tenant), "analysis_jobs")
    }

    fn queue(&self, tenant: TenantId) -> Result<Collection<QueueKey, ()>, StoreError> {
        self.store
            .collection(Scope::Tenant(tenant), "analysis_queue")
    }

    fn counts_collection(
        &self,
        tenant: TenantId,
    ) -> Result<Collection<&'static str, JobCounts>, StoreError> {
        self.store
            .collection(Scope::Tenant(tenant), "analysis_counts")
    }

    fn results(&self, tenant: TenantId) -> Result<Collection<AnalysisKey, Analysis>, StoreError> {
        self.store.collection(Scope::Tenant(tenant), "analyses")
    }

    fn topic_list(
        &self,
        tenant: TenantId,
    ) -> Result<Collection<&'static str, TopicList>, StoreError> {
        self.store
            .collection(Scope::Tenant(tenant), "analysis_topics")
    }

    /// Runs `work` holding the queue's lock. A poisoned lock only means another thread panicked
    /// between its read and its commit; the store holds nothing half-written.
    fn locked<T>(&self, work: impl FnOnce() -> T) -> T {
        let _held = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        work()
    }

    fn next_position(&self) -> Result<u64, StoreError> {
        self.store.generate_id()
    }

    /// Stages `job` replacing `previous`: the job, its queue-index entry and the counts.
    fn stage(
        &self,
        tenant: TenantId,
        writes: &mut WriteSet,
        counts: &mut JobCounts,
        previous: Option<&Job>,
        job: &Job,
    ) -> Result<(), StoreError> {
        let queue = self.queue(tenant)?;
        let old_key = previous.and_then(QueueKey::of);
        let new_key = QueueKey::of(job);
        if old_key != new_key {
            if let Some(key) = old_key {
                writes.remove(&queue, &key);
            }
            if let Some(key) = new_key {
                writes.put(&queue, &key, &())?;
            }
        }
        writes.put(&self.jobs(tenant)?, &job.interaction, job)?;
        counts.record(previous.map(|previous| previous.state), job.state);
        Ok(())
    }

    fn commit(
        &self,
        tenant: TenantId,
        mut writes: WriteSet,
        counts: &JobCounts,
    ) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        writes.put(&self.counts_collection(tenant)?, &COUNTS_KEY, counts)?;
        self.store.commit(writes)
    }

    /// Applies each request to its interaction's job (see [`jobs::enqueue`]), committing
    /// [`ENQUEUE_CHUNK`] at a time. Returns how many jobs were created or changed, and wakes
    /// the worker when there were any.
    pub fn enqueue(
        &self,
        tenant: TenantId,
        requests: &[(RecordId, EnqueueRequest)],
    ) -> Result<usize, StoreError> {
        let mut changed = 0;
        for chunk in requests.chunks(ENQUEUE_CHUNK) {
            changed += self.locked(|| -> Result<usize, StoreError> {
                let jobs = self.jobs(tenant)?;
                let mut counts = self.counts(tenant)?;
                let mut writes = WriteSet::default();
                // A chunk may name an interaction twice; the second request sees the first.
                let mut staged: HashMap<RecordId, Job> = HashMap::new();
                let mut changed = 0;
                for (id, request) in chunk {
                    let existing = match staged.get(id) {
                        Some(job) => Some(job.clone()),
                        None => jobs.get(id)?,
                    };
                    // Ids are cheap, so one is taken whether or not the job needs a new place.
                    let position = self.next_position()?;
                    let Some(job) =
                        jobs::enqueue(existing.as_ref(), request, *id, Utc::now(), || position)
                    else {
                        continue;
                    };
                    self.stage(tenant, &mut writes, &mut counts, existing.as_ref(), &job)?;
                    staged.insert(*id, job);
                    changed += 1;
                }
                self.commit(tenant, writes, &counts)?;
                Ok(changed)
            })?;
        }
        if changed > 0 {
            self.wake();
        }
        Ok(changed)
    }

    /// Takes up to `limit` queued jobs, most urgent and oldest first, and marks them running. A
    /// suspect job (see [`Job::suspect`]) is taken alone: when it comes first it is the whole
    /// batch, and otherwise the batch ends before it.
    pub fn claim(&self, tenant: TenantId, limit: usize) -> Result<Vec<Job>, StoreError> {
        self.locked(|| {
            let queue = self.queue(tenant)?;
            let jobs = self.jobs(tenant)?;
            let queued_code = JobState::Queued.index_code().unwrap_or_default();
            let keys: Vec<QueueKey> = queue
                .keys_with_prefix(&[queued_code])
                .take(limit)
                .collect::<Result<_, _>>()?;
            let mut counts = self.counts(tenant)?;
            let mut writes = WriteSet::default();
            let mut claimed = Vec::with_capacity(keys.len());
            let now = Utc::now();
            for key in keys {
                let job = jobs.get(&key.interaction)?;
                let Some(job) = job.filter(|job| QueueKey::of(job) == Some(key)) else {
                    // An index entry that does not match its job is garbage; drop it.
                    writes.remove(&queue, &key);
                    continue;
                };
                if job.suspect && !claimed.is_empty() {
                    break;
                }
                let running = jobs::claim(&job, now);
                self.stage(tenant, &mut writes, &mut counts, Some(&job), &running)?;
                claimed.push(running);
                if job.suspect {
                    break;
                }
            }
            self.commit(tenant, writes, &counts)?;
            Ok(claimed)
        })
    }

    /// Ends running attempts: stores what they produced and moves each job on (see
    /// [`jobs::end_attempt`]), all in one transaction. A job changed meanwhile by an enqueue
    /// (a newer version, a forced request) is read again first, so that request is not lost.
    pub fn finish(&self, tenant: TenantId, finished: Vec<Finished>) -> Result<(), StoreError> {
        if finished.is_empty() {
            return Ok(());
        }
        let mut completed = 0u64;
        let requeued = self.locked(|| -> Result<bool, StoreError> {
            let jobs = self.jobs(tenant)?;
            let results = self.results(tenant)?;
            let mut counts = self.counts(tenant)?;
            let mut writes = WriteSet::default();
            let now = Utc::now();
            let mut requeued = false;
            for item in finished {
                let current = jobs.get(&item.job.interaction)?;
                // Only a job still running this attempt is moved on; anything else (removed,
                // or already moved by a re-queue) is left as it is.
                let Some(current) = current.filter(|job| {
                    job.state == JobState::Running && job.started == item.job.started
                }) else {
                    continue;
                };
                let position = self.next_position()?;
                let ended = jobs::end_attempt(&current, item.end, now, || position);
                requeued |= ended.state == JobState::Queued;
                completed += u64::from(ended.state == JobState::Done);
                match item.end {
                    AttemptEnd::Done { .. }
                    | AttemptEnd::Failed {
                        kind: JobErrorKind::DraftFailed,
                        ..
                    } => {
                        for analysis in &item.analyses {
                            let key = AnalysisKey {
                                interaction: analysis.interaction,
                                kind: analysis.kind(),
                            };
                            let subject = crate::records::subject_key_of(
                                &self.store,
                                tenant,
                                analysis.interaction,
                            )?;
                            writes.put_under(&results, &key, analysis, subject)?;
                        }
                    }
                    // The interaction is gone (an import that created it was rolled back):
                    // what was derived from it goes with it, in the same commit.
                    AttemptEnd::Failed {
                        kind: JobErrorKind::InteractionMissing,
                        ..
                    } => {
                        for kind in AnalysisKind::STORED {
                            let key = AnalysisKey {
                                interaction: current.interaction,
                                kind,
                            };
                            writes.remove(&results, &key);
                        }
                        crate::analysis::overrides::stage_removal(
                            &self.store,
                            tenant,
                            current.interaction,
                            &mut writes,
                        )?;
                    }
                    AttemptEnd::Failed { .. } | AttemptEnd::Released => {}
                }
                self.stage(tenant, &mut writes, &mut counts, Some(&current), &ended)?;
            }
            self.commit(tenant, writes, &counts)?;
            Ok(requeued)
        })?;
        self.completed
            .fetch_add(completed, std::sync::atomic::Ordering::Relaxed);
        if requeued {
            self.wake();
        }
        Ok(())
    }

    /// Cancels every queued job of the tenant (see [`jobs::cancel`]), [`ENQUEUE_CHUNK`] jobs per
    /// commit so that a million queued jobs never make one huge write; each job is either still
    /// queued or cancelled, never half-changed. Running jobs finish. Returns how many were
    /// cancelled.
    pub fn cancel_queued(&self, tenant: TenantId) -> Result<usize, StoreError> {
        let mut cancelled = 0;
        loop {
            let (seen, changed) = self.locked(|| -> Result<(usize, usize), StoreError> {
                let queue = self.queue(tenant)?;
                let jobs = self.jobs(tenant)?;
                let queued_code = JobState::Queued.index_code().unwrap_or_default();
                let keys: Vec<QueueKey> = queue
                    .keys_with_prefix(&[queued_code])
                    .take(ENQUEUE_CHUNK)
                    .collect::<Result<_, _>>()?;
                let mut counts = self.counts(tenant)?;
                let mut writes = WriteSet::default();
                let now = Utc::now();
                let mut changed = 0;
                for key in &keys {
                    let job = jobs
                        .get(&key.interaction)?
                        .filter(|job| QueueKey::of(job) == Some(*key));
                    match job
                        .as_ref()
                        .and_then(|job| Some((job, jobs::cancel(job, now)?)))
                    {
                        Some((job, next)) => {
                            self.stage(tenant, &mut writes, &mut counts, Some(job), &next)?;
                            changed += 1;
                        }
                        // An index entry that does not match its job is garbage; drop it.
                        None => writes.remove(&queue, key),
                    }
                }
                self.commit(tenant, writes, &counts)?;
                Ok((keys.len(), changed))
            })?;
            cancelled += changed;
            if seen == 0 {
                return Ok(cancelled);
            }
        }
    }

    /// Puts the tenant's running jobs back in the queue at their places (see
    /// [`jobs::interrupted`]). Returns how many were found.
    pub fn requeue_interrupted(&self, tenant: TenantId) -> Result<usize, StoreError> {
        self.locked(|| {
            let queue = self.queue(tenant)?;
            let jobs = self.jobs(tenant)?;
            let running_code = JobState::Running.index_code().unwrap_or_default();
            let keys: Vec<QueueKey> = queue
                .keys_with_prefix(&[running_code])
                .collect::<Result<_, _>>()?;
            let mut counts = self.counts(tenant)?;
            let mut writes = WriteSet::default();
            let now = Utc::now();
            for key in &keys {
                match jobs.get(&key.interaction)? {
                    Some(job) => {
                        let next = jobs::interrupted(&job, now);
                        self.stage(tenant, &mut writes, &mut counts, Some(&job), &next)?;
                    }
                    None => writes.remove(&queue, key),
                }
            }
            self.commit(tenant, writes, &counts)?;
            Ok(keys.len())
        })
    }

    /// Deletes what the analysis store keeps about each of `subjects` (interactions or review
    /// signals that are being deleted: their jobs, queue entries and stored analyses), together
    /// with whatever `stage_more` stages, in one commit under the queue's lock: a redo commit
    /// ([`Store::commit_redo`]), atomic across crashes and never stalling readers, because a
    /// sweep's batches are thousands of writes. A worker that finishes one of those jobs
    /// afterwards finds it gone and stores nothing (see [`AnalysisStore::finish`]). Used only by
    /// `records::delete`, under the tenant's writer lock.
    pub fn forget_with(
        &self,
        tenant: TenantId,
        subjects: &[RecordId],
        stage_more: impl FnOnce(&mut WriteSet) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.locked(|| {
            let jobs = self.jobs(tenant)?;
            let queue = self.queue(tenant)?;
            let results = self.results(tenant)?;
            let mut counts = self.counts(tenant)?;
            let mut writes = WriteSet::default();
            let mut jobs_removed = false;
            for subject in subjects {
                if let Some(job) = jobs.get(subject)? {
                    if let Some(key) = QueueKey::of(&job) {
                        writes.remove(&queue, &key);
                    }
                    writes.remove(&jobs, subject);
                    counts.forget(job.state);
                    jobs_removed = true;
                }
                for key in results.keys_with_prefix(&subject.to_bytes()) {
                    writes.remove(&results, &key?);
                }
            }
            stage_more(&mut writes)?;
            if jobs_removed {
                writes.put(&self.counts_collection(tenant)?, &COUNTS_KEY, &counts)?;
            }
            self.store.commit_redo(writes)
        })
    }

    /// Every stored analysis created before `cutoff`, as (interaction or signal, kind): what
    /// the derived-data retention period has expired. Reads every analysis of the tenant (the
    /// creation time is inside the sealed value); only the sweep calls it.
    pub fn analyses_created_before(
        &self,
        tenant: TenantId,
        cutoff: chrono::DateTime<Utc>,
    ) -> Result<Vec<(RecordId, AnalysisKind)>, StoreError> {
        let mut expired = Vec::new();
        for entry in self.results(tenant)?.scan() {
            let (key, analysis) = entry?;
            if analysis.provenance.created < cutoff {
                expired.push((key.interaction, key.kind));
            }
        }
        Ok(expired)
    }

    /// Removes the named analyses in one commit under the queue's lock; the records they came
    /// from stay. Returns how many existed.
    pub fn remove_analyses(
        &self,
        tenant: TenantId,
        analyses: &[(RecordId, AnalysisKind)],
    ) -> Result<u64, StoreError> {
        self.locked(|| {
            let results = self.results(tenant)?;
            let mut writes = WriteSet::default();
            let mut removed = 0;
            for (interaction, kind) in analyses {
                let key = AnalysisKey {
                    interaction: *interaction,
                    kind: *kind,
                };
                if results.get(&key)?.is_some() {
                    writes.remove(&results, &key);
                    removed += 1;
                }
            }
            self.store.commit(writes)?;
            Ok(removed)
        })
    }

    /// Jobs that ended done since the process started, in every tenant.
    pub fn completed_total(&self) -> u64 {
        self.completed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The tenant's job counts per state.
    pub fn counts(&self, tenant: TenantId) -> Result<JobCounts, StoreError> {
        Ok(self
            .counts_collection(tenant)?
            .get(&COUNTS_KEY)?
            .unwrap_or_default())
    }

    /// The interaction's job, if it ever had one.
    pub fn job(&self, tenant: TenantId, interaction: RecordId) -> Result<Option<Job>, StoreError> {
        self.jobs(tenant)?.get(&interaction)
    }

    /// Jobs in `state` (not `done`, which has no index), in queue order, at most `limit`.
    pub fn jobs_in_state(
        &self,
        tenant: TenantId,
        state: JobState,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        let Some(code) = state.index_code() else {
            return Ok(Vec::new());
        };
        let jobs = self.jobs(tenant)?;
        let mut found = Vec::new();
        for key in self.queue(tenant)?.keys_with_prefix(&[code]).take(limit) {
            if let Some(job) = jobs.get(&key?.interaction)? {
                found.push(job);
            }
        }
        Ok(found)
    }

    /// The interaction's stored analyses, in kind order.
    pub fn analyses(
        &self,
        tenant: TenantId,
        interaction: RecordId,
    ) -> Result<Vec<Analysis>, StoreError> {
        self.results(tenant)?
            .scan_prefix(&interaction.to_bytes())
            .map(|entry| entry.map(|(_, analysis)| analysis))
            .collect()
    }

    /// The interaction's effective analyses, the ones every report reads: the stored ones with
    /// the QA leads' label overrides applied ([`crate::analysis::overrides::apply`]).
    pub fn reviewed(
        &self,
        tenant: TenantId,
        interaction: RecordId,
    ) -> Result<Vec<Analysis>, StoreError> {
        let mut analyses = self.analyses(tenant, interaction)?;
        let overrides = crate::analysis::overrides::LabelOverrides::new(self.store.clone())
            .overrides(tenant, interaction)?;
        if !overrides.is_empty() {
            for analysis in &mut analyses {
                crate::analysis::overrides::apply(analysis, &overrides);
            }
        }
        Ok(analyses)
    }

    /// The interactions with a stored analysis of `kind`, newest first (record ids are
    /// time-ordered). Reads keys only: no value is opened.
    pub fn interactions_with(
        &self,
        tenant: TenantId,
        kind: AnalysisKind,
    ) -> Result<Vec<RecordId>, StoreError> {
        let mut ids = Vec::new();
        for key in self.results(tenant)?.keys_with_prefix(&[]) {
            let key = key?;
            if key.kind == kind {
                ids.push(key.interaction);
            }
        }
        ids.reverse();
        Ok(ids)
    }

    /// One stored analysis of the interaction.
    pub fn analysis(
        &self,
        tenant: TenantId,
        interaction: RecordId,
        kind: AnalysisKind,
    ) -> Result<Option<Analysis>, StoreError> {
        self.results(tenant)?
            .get(&AnalysisKey { interaction, kind })
    }

    /// The subject keys sealing the stored analyses of `interaction` (`None` for one sealed under
    /// the tenant's key), from their clear headers: what erasure's tests check.
    pub fn analysis_subject_keys(
        &self,
        tenant: TenantId,
        interaction: RecordId,
    ) -> Result<Vec<Option<crate::ids::KeyId>>, StoreError> {
        let results = self.results(tenant)?;
        let mut keys = Vec::new();
        for kind in AnalysisKind::STORED {
            let key = AnalysisKey { interaction, kind };
            if results.contains(&key)? {
                keys.push(results.subject_key_of(&key)?);
            }
        }
        Ok(keys)
    }

    /// Stores one analysis directly, outside any job (tests, and imports of analyses later).
    pub fn put_analysis(&self, tenant: TenantId, analysis: &Analysis) -> Result<(), StoreError> {
        let key = AnalysisKey {
            interaction: analysis.interaction,
            kind: analysis.kind(),
        };
        let results = self.results(tenant)?;
        let mut writes = WriteSet::default();
        let subject = crate::records::subject_key_of(&self.store, tenant, analysis.interaction)?;
        writes.put_under(&results, &key, analysis, subject)?;
        self.store.commit(writes)
    }

    /// The tenant's topic labels, or [`DEFAULT_TOPICS`] when it has stored none.
    pub fn topics(&self, tenant: TenantId) -> Result<LabelSet, AnalysisError> {
        let stored = self.topic_list(tenant)?.get(&TOPICS_KEY)?;
        let labels = match stored {
            Some(list) if !list.labels.is_empty() => list.labels,
            _ => DEFAULT_TOPICS
                .iter()
                .map(|label| (*label).to_owned())
                .collect(),
        };
        Ok(LabelSet::parse(labels)?)
    }

    /// Replaces the tenant's topic labels (validated as a label set: non-empty, distinct).
    pub fn save_topics(
        &self,
        tenant: TenantId,
        labels: Vec<String>,
    ) -> Result<LabelSet, AnalysisError> {
        let set = LabelSet::parse(labels)?;
        self.topic_list(tenant)?.insert(
            &TOPICS_KEY,
            &TopicList {
                labels: set.as_slice().to_vec(),
            },
        )?;
        Ok(set)
    }

    /// Tells a waiting worker that there is work.
    pub fn wake(&self) {
        let mut pending = self
            .wake
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *pending = true;
        self.wake.signal.notify_all();
    }

    /// Waits until [`AnalysisStore::wake`] is called or `timeout` passes.
    pub fn wait_for_work(&self, timeout: Duration) {
        let pending = self
            .wake
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (mut pending, _) = self
            .wake
            .signal
            .wait_timeout_while(pending, timeout, |pending| !*pending)
            .unwrap_or_else(PoisonError::into_inner);
        *pending = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keys_sort_by_state_then_priority_then_position() {
        let id = RecordId::new();
        let key = |state, priority: Priority, position| QueueKey {
            state,
            priority: priority.code(),
            position,
            interaction: id,
        };
        let mut keys = [
            key(1, Priority::Backfill, 1),
            key(1, Priority::Live, 9),
            key(2, Priority::Live, 0),
            key(1, Priority::Live, 3),
        ];
        keys.sort_by_key(RecordKey::to_key_bytes);
        let order: Vec<(u8, u8, u64)> = keys
            .iter()
            .map(|key| (key.state, key.priority, key.position))
            .collect();
        assert_eq!(order, [(1, 0, 3), (1, 0, 9), (1, 1, 1), (2, 0, 0)]);
        let bytes = keys[0].to_key_bytes();
        assert_eq!(QueueKey::from_key_bytes(&bytes), Some(keys[0]));
        let analysis = AnalysisKey {
            interaction: id,
            kind: AnalysisKind::Topics,
        };
        assert_eq!(
            AnalysisKey::from_key_bytes(&analysis.to_key_bytes()),
            Some(analysis)
        );
    }
}
