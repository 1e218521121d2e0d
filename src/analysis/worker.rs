//! Running the queue: the background thread of `rapport serve` and the foreground loop of
//! `rapport analyse`, both through [`process_batch`].
//!
//! The thread is a plain OS thread, not a task on the async runtime: it blocks on the store and
//! on the inference thread. It goes round the tenants that have queued jobs, takes one batch
//! (the engine's batch width) from each in turn, and sleeps until an enqueue wakes it when there
//! is nothing to do. Backends are kept in a [`BackendCache`]: a `local` model is loaded once and
//! shared by every tenant that chose it, a `remote` backend is its tenant's own (its PII detector
//! knows that tenant's contacts) and is rebuilt every minute so new contacts are redacted too.
//!
//! Stopping: the thread stops taking jobs; the batch in hand finishes its classifications, and
//! jobs whose summaries were not reached go back to their places in the queue. A job cut off by
//! the process ending is re-queued when the database next opens.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::analysis::jobs::{AttemptEnd, Job, JobCounts, JobErrorKind, JobSubject};
use crate::analysis::pipeline::{self, Item, ItemOutcome};
use crate::analysis::store::Finished;
use crate::analysis::AnalysisError;
use crate::audit::{Actor, AuditAction, AuditEvent};
use crate::context::AppContext;
use crate::ids::TenantId;
use crate::inference::models::{ModelDirectories, DEFAULT_MODEL_SHA256};
use crate::inference::store::{AnalysisSettingsStore, ModelApprovals};
use crate::inference::{self, Backend, BackendKind, InferenceError};
use crate::privacy::Restrictions;

/// Local models kept loaded at most (each holds a model in memory).
const MAX_LOCAL_BACKENDS: usize = 2;
/// How long a `remote` backend is reused before it is built again, so that its PII detector
/// learns the tenant's new contacts' names within this time.
const REMOTE_REFRESH: Duration = Duration::from_secs(60);
/// Jobs taken in one batch at most, whatever the engine's batch width.
const MAX_BATCH: usize = 64;
/// How long a tenant whose backend cannot be opened is left alone.
const BACKEND_BACKOFF: Duration = Duration::from_secs(60);
/// How long the idle worker sleeps before looking again without being woken.
const IDLE_WAIT: Duration = Duration::from_secs(30);

/// What a loaded backend can be shared by.
#[derive(Clone, Debug, PartialEq, Eq)]
enum BackendKey {
    /// The deterministic analyzers: the same for every tenant.
    Off,
    /// One model file, shared by every tenant that chose it.
    Local { sha256: String },
    /// One tenant's endpoint. Never shared: its PII detector knows that tenant's contacts.
    Remote {
        tenant: TenantId,
        settings: [u8; 32],
    },
}

struct CachedBackend {
    key: BackendKey,
    backend: Arc<dyn Backend>,
    opened: Instant,
    last_used: Instant,
}

impl CachedBackend {
    fn is_fresh(&self, now: Instant) -> bool {
        match self.key {
            BackendKey::Remote { .. } => now.duration_since(self.opened) < REMOTE_REFRESH,
            BackendKey::Off | BackendKey::Local { .. } => true,
        }
    }
}

/// Loaded backends. A `local` model is loaded once and shared by the tenants that chose it; a
/// `remote` backend belongs to its tenant and is rebuilt after [`REMOTE_REFRESH`].
#[derive(Default)]
pub struct BackendCache {
    entries: Vec<CachedBackend>,
}

impl std::fmt::Debug for BackendCache {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("BackendCache")
            .field("loaded", &self.entries.len())
            .finish()
    }
}

impl BackendCache {
    /// The tenant's backend, loaded on first use. Settings that change (another model, another
    /// backend, another endpoint) give another key, so the next batch uses the new choice; a
    /// model whose approval was revoked is dropped and refused.
    pub fn backend_for(
        &mut self,
        context: &AppContext,
        tenant: TenantId,
    ) -> Result<Arc<dyn Backend>, InferenceError> {
        let directories = ModelDirectories::from_config(&context.config);
        let settings =
            AnalysisSettingsStore::new(context.store.clone()).get(tenant, &directories)?;
        let key = match settings.backend {
            BackendKind::Off => BackendKey::Off,
            BackendKind::Local => {
                let sha256 = settings
                    .model_sha256
                    .clone()
                    .unwrap_or_else(|| DEFAULT_MODEL_SHA256.to_owned());
                // The default model is approved from the start, whatever is stored.
                let approved = sha256 == DEFAULT_MODEL_SHA256
                    || ModelApprovals::new(context.store.clone())
                        .get(&sha256)?
                        .is_some();
                if !approved {
                    // Revoked since it was loaded: unload it now; opening it below refuses it.
                    self.entries.retain(|entry| {
                        entry.key
                            != BackendKey::Local {
                                sha256: sha256.clone(),
                            }
                    });
                }
                BackendKey::Local { sha256 }
            }
            BackendKind::Remote => {
                let encoded = rmp_serde::to_vec_named(&settings.remote)
                    .map_err(|error| InferenceError::Invalid(error.to_string()))?;
                BackendKey::Remote {
                    tenant,
                    settings: crate::crypto::sha256(&[&encoded]),
                }
            }
        };
        let now = Instant::now();
        self.entries.retain(|entry| entry.is_fresh(now));
        if let Some(entry) = self.entries.iter_mut().find(|entry| entry.key == key) {
            entry.last_used = now;
            return Ok(Arc::clone(&entry.backend));
        }
        // A model to load makes room first: two models in memory at most, never three.
        if matches!(key, BackendKey::Local { .. }) {
            let is_local = |entry: &CachedBackend| matches!(entry.key, BackendKey::Local { .. });
            if self.entries.iter().filter(|entry| is_local(entry)).count() >= MAX_LOCAL_BACKENDS {
                if let Some(oldest) = self
                    .entries
                    .iter()
                    .enumerate()
                    .filter(|(_, entry)| is_local(entry))
                    .min_by_key(|(_, entry)| entry.last_used)
                    .map(|(index, _)| index)
                {
                    self.entries.swap_remove(oldest);
                }
            }
        }
        let record = context
            .tenants
            .get(tenant)
            .map_err(|error| InferenceError::Invalid(error.to_string()))?
            .ok_or_else(|| InferenceError::Invalid("the tenant no longer exists".to_owned()))?;
        let backend: Arc<dyn Backend> = Arc::from(inference::open_tenant_backend(
            context,
            &Actor::system(),
            &record,
        )?);
        self.entries.push(CachedBackend {
            key,
            backend: Arc::clone(&backend),
            opened: now,
            last_used: now,
        });
        Ok(backend)
    }

    /// How many backends are loaded (tests and the debug view).
    pub fn loaded(&self) -> usize {
        self.entries.len()
    }
}

/// What one batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub claimed: usize,
    pub done: usize,
    pub failed: usize,
    pub released: usize,
}

/// The number of jobs one batch takes: the engine's batch width.
pub fn batch_size(context: &AppContext) -> usize {
    usize::try_from(context.config.inference.batch_width)
        .unwrap_or(1)
        .clamp(1, MAX_BATCH)
}

/// Takes one batch of the tenant's queued jobs and runs it. The backend is opened before any
/// job is taken, so a backend that cannot be opened leaves the queue as it was.
pub fn process_batch(
    context: &AppContext,
    cache: &mut BackendCache,
    tenant: TenantId,
    stop: &dyn Fn() -> bool,
) -> Result<BatchReport, AnalysisError> {
    let backend = cache.backend_for(context, tenant)?;
    let topics = context.analysis.topics(tenant)?;
    let started = Instant::now();
    let claimed = context.analysis.claim(tenant, batch_size(context))?;
    if claimed.is_empty() {
        return Ok(BatchReport::default());
    }
    // The batch is split by subject: account jobs (briefings) run after the rest is stored, so
    // that a briefing reads the analyses its own batch just made.
    let (accounts, claimed): (Vec<Job>, Vec<Job>) = claimed
        .into_iter()
        .partition(|job| job.subject == JobSubject::Account);
    let mut report = BatchReport::default();
    if !claimed.is_empty() {
        match run_claimed(context, backend.as_ref(), &topics, tenant, &claimed, stop) {
            Ok(finished) => {
                report.claimed += claimed.len();
                tally(&mut report, &finished);
                if let Err(error) = context.analysis.finish(tenant, finished) {
                    // Recording the results failed (nothing of it was written): the jobs go
                    // back to their places rather than stay "running" until the next start.
                    release(context, tenant, claimed);
                    release(context, tenant, accounts);
                    return Err(error.into());
                }
            }
            Err(error) => {
                // Reading the batch failed (the store), or the backend is unavailable for now:
                // give the jobs back untouched, then report (the worker rests the tenant).
                release(context, tenant, claimed);
                release(context, tenant, accounts);
                return Err(error);
            }
        }
    }
    if !accounts.is_empty() {
        let finished =
            crate::accounts::briefing::run_jobs(context, backend.as_ref(), tenant, &accounts, stop);
        report.claimed += accounts.len();
        tally(&mut report, &finished);
        if let Err(error) = context.analysis.finish(tenant, finished) {
            release(context, tenant, accounts);
            return Err(error.into());
        }
    }
    context
        .analysis
        .record_batch(tenant, started, (report.done + report.failed) as u64);
    crate::health::after_analysis(context, tenant, &claimed);
    let interactions: Vec<_> = claimed
        .iter()
        .filter(|job| job.subject == JobSubject::Interaction)
        .map(|job| job.interaction)
        .collect();
    crate::insights::after_analysis(context, tenant, &interactions);
    Ok(report)
}

fn tally(report: &mut BatchReport, finished: &[Finished]) {
    for item in finished {
        match item.end {
            AttemptEnd::Done { .. } => report.done += 1,
            AttemptEnd::Failed { .. } => report.failed += 1,
            AttemptEnd::Released => report.released += 1,
        }
    }
}

/// Gives claimed jobs back to the queue at their places, their attempts not counted.
fn release(context: &AppContext, tenant: TenantId, claimed: Vec<Job>) {
    if claimed.is_empty() {
        return;
    }
    let released = claimed
        .into_iter()
        .map(|job| Finished {
            job,
            end: AttemptEnd::Released,
            analyses: Vec::new(),
        })
        .collect();
    if let Err(release_error) = context.analysis.finish(tenant, released) {
        tracing::warn!(tenant = %tenant, error = %release_error, "claimed analysis jobs not released; they are re-queued at the next start");
    }
}

/// Runs a claimed batch: review jobs through [`crate::reviews::analyse`], interaction jobs
/// through the pipeline.
fn run_claimed(
    context: &AppContext,
    backend: &dyn Backend,
    topics: &inference::LabelSet,
    tenant: TenantId,
    claimed: &[Job],
    stop: &dyn Fn() -> bool,
) -> Result<Vec<Finished>, AnalysisError> {
    let (reviews, interactions): (Vec<Job>, Vec<Job>) = claimed
        .iter()
        .cloned()
        .partition(|job| job.subject == JobSubject::Review);
    let mut finished = Vec::with_capacity(claimed.len());
    if !reviews.is_empty() {
        // A review-side error ends the review jobs only (retryable, attempts counted, so a
        // lasting one cannot keep them at the head of the queue): the interactions run on.
        match crate::reviews::analyse::run_jobs(context, backend, topics, tenant, &reviews, stop) {
            Ok(ended) => finished.extend(ended),
            Err(AnalysisError::Inference(error)) if error.is_unavailable() => {
                return Err(AnalysisError::Inference(error));
            }
            Err(error) => {
                tracing::warn!(tenant = %tenant, jobs = reviews.len(), kind = error.kind(), "review jobs failed");
                finished.extend(reviews.into_iter().map(|job| Finished {
                    job,
                    end: AttemptEnd::Failed {
                        kind: JobErrorKind::Store,
                        retryable: true,
                    },
                    analyses: Vec::new(),
                }));
            }
        }
    }
    if !interactions.is_empty() {
        finished.extend(run_interactions(
            context,
            backend,
            topics,
            tenant,
            &interactions,
            stop,
        )?);
    }
    Ok(finished)
}

/// A job that failed for a reason another attempt cannot cure.
fn ended_for_good(job: &Job, kind: JobErrorKind) -> Finished {
    Finished {
        job: job.clone(),
        end: AttemptEnd::Failed {
            kind,
            retryable: false,
        },
        analyses: Vec::new(),
    }
}

fn run_interactions(
    context: &AppContext,
    backend: &dyn Backend,
    topics: &inference::LabelSet,
    tenant: TenantId,
    claimed: &[Job],
    stop: &dyn Fn() -> bool,
) -> Result<Vec<Finished>, AnalysisError> {
    let mut finished = Vec::with_capacity(claimed.len());
    let mut loaded = Vec::new();
    let restrictions = Restrictions::new(context.store.clone());
    for job in claimed {
        match context.interactions.get(tenant, job.interaction)? {
            // A customer in it restricted or objected to processing: nothing is analysed (or
            // sent anywhere), and the job says why.
            Some(interaction) if restrictions.covers(tenant, &interaction.record)? => {
                finished.push(ended_for_good(job, JobErrorKind::SubjectRestricted));
            }
            Some(interaction) => {
                let existing = context.analysis.analyses(tenant, job.interaction)?;
                loaded.push((job, interaction, existing));
            }
            None => finished.push(ended_for_good(job, JobErrorKind::InteractionMissing)),
        }
    }
    if backend.kind() == BackendKind::Remote && !loaded.is_empty() {
        // Text about to leave the appliance (redacted, but still the tenant's conversations):
        // each interaction is recorded first, and nothing is sent if the record cannot be made.
        let destination = backend.describe();
        let events = loaded
            .iter()
            .map(|(job, _, _)| {
                AuditEvent::new(
                    Some(tenant),
                    Actor::system(),
                    AuditAction::AnalysisSentRemote,
                    format!("interaction {} to {destination}", job.interaction),
                )
            })
            .collect();
        context.audit_all(events)?;
    }
    let marked = crate::leads::store::LeadStore::new(context.store.clone()).marked(tenant)?;
    let items: Vec<Item<'_>> = loaded
        .iter()
        .map(|(job, interaction, existing)| Item {
            interaction,
            kinds: &job.kinds,
            existing,
            marked_lead: marked.contains(&interaction.id),
        })
        .collect();
    let scorecard = crate::qa::store::QaStore::new(context.store.clone()).scorecard(tenant)?;
    match pipeline::analyse_batch(backend, topics, &scorecard, &items, stop) {
        Ok(outcomes) => {
            for ((job, interaction, _), outcome) in loaded.iter().zip(outcomes) {
                let (end, analyses) = match outcome {
                    ItemOutcome::Done(analyses) => (
                        AttemptEnd::Done {
                            analysed_version: interaction.updated,
                        },
                        analyses,
                    ),
                    ItemOutcome::Failed => {
                        tracing::warn!(interaction = %job.interaction, "analysis of one interaction failed");
                        (
                            AttemptEnd::Failed {
                                kind: JobErrorKind::Inference,
                                retryable: true,
                            },
                            Vec::new(),
                        )
                    }
                    ItemOutcome::NotReached => (AttemptEnd::Released, Vec::new()),
                };
                finished.push(Finished {
                    job: (*job).clone(),
                    end,
                    analyses,
                });
            }
        }
        // The backend is down for now: the jobs go back, attempts untouched, and the tenant rests.
        Err(error) if error.is_unavailable() => return Err(error.into()),
        Err(error) => {
            // The error names no content (llama.cpp's and the engine's messages), but only
            // its kind is logged, as for every job failure.
            let kind = AnalysisError::from(error).kind();
            tracing::warn!(tenant = %tenant, jobs = loaded.len(), kind, "analysis batch failed");
            for (job, _, _) in &loaded {
                finished.push(Finished {
                    job: (*job).clone(),
                    end: AttemptEnd::Failed {
                        kind: JobErrorKind::Inference,
                        retryable: true,
                    },
                    analyses: Vec::new(),
                });
            }
        }
    }
    Ok(finished)
}

/// What `rapport analyse` reports when the queue is empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub batches: usize,
    pub done: usize,
    pub failed: usize,
    pub elapsed: Duration,
}

/// Runs the tenant's queue in the foreground until nothing is queued, calling `progress` after
/// every batch. A backend that cannot be opened is an error, not a retry.
pub fn run_until_idle(
    context: &AppContext,
    cache: &mut BackendCache,
    tenant: TenantId,
    progress: &mut dyn FnMut(&BatchReport, &JobCounts),
) -> Result<Totals, AnalysisError> {
    let started = Instant::now();
    let mut totals = Totals::default();
    loop {
        let report = process_batch(context, cache, tenant, &|| false)?;
        if report.claimed == 0 {
            break;
        }
        totals.batches += 1;
        totals.done += report.done;
        totals.failed += report.failed;
        progress(&report, &context.analysis.counts(tenant)?);
    }
    totals.elapsed = started.elapsed();
    Ok(totals)
}

/// The running background worker.
pub struct WorkerHandle {
    stop: Arc<AtomicBool>,
    context: Arc<AppContext>,
    thread: JoinHandle<()>,
}

impl std::fmt::Debug for WorkerHandle {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("WorkerHandle")
            .field("stopping", &self.stop.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl WorkerHandle {
    /// Stops taking jobs and waits up to `patience` for the batch in hand. A batch still running
    /// after that is left to the process's end; its jobs are re-queued at the next start.
    pub fn stop(self, patience: Duration) {
        self.stop.store(true, Ordering::SeqCst);
        self.context.analysis.wake();
        let deadline = Instant::now() + patience;
        while !self.thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.thread.is_finished() {
            if self.thread.join().is_err() {
                tracing::error!("the analysis worker ended with a panic");
            }
        } else {
            tracing::warn!("the analysis worker is still busy; its jobs resume at the next start");
        }
    }
}

/// Starts the background worker of `rapport serve`.
pub fn spawn(context: Arc<AppContext>) -> std::io::Result<WorkerHandle> {
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = Arc::clone(&stop);
    let thread_context = Arc::clone(&context);
    let thread = std::thread::Builder::new()
        .name("analysis".to_owned())
        .spawn(move || run(&thread_context, &thread_stop))?;
    Ok(WorkerHandle {
        stop,
        context,
        thread,
    })
}

fn run(context: &AppContext, stop: &AtomicBool) {
    let mut cache = BackendCache::default();
    let mut resting: HashMap<TenantId, Instant> = HashMap::new();
    let stopping = || stop.load(Ordering::SeqCst);
    while !stopping() {
        let tenants = match context.tenants.list() {
            Ok(tenants) => tenants,
            Err(error) => {
                tracing::warn!(%error, "analysis worker cannot list tenants");
                context.analysis.wait_for_work(IDLE_WAIT);
                continue;
            }
        };
        let mut worked = false;
        for tenant in tenants {
            if stopping() {
                break;
            }
            if resting
                .get(&tenant.id)
                .is_some_and(|until| Instant::now() < *until)
            {
                continue;
            }
            match context.analysis.counts(tenant.id) {
                Ok(counts) if counts.queued > 0 => {}
                Ok(_) => continue,
                Err(error) => {
                    tracing::warn!(tenant = %tenant.id, %error, "analysis queue unreadable");
                    continue;
                }
            }
            match process_batch(context, &mut cache, tenant.id, &stopping) {
                Ok(report) => worked |= report.claimed > 0,
                Err(error) => {
                    // Backend and store errors name files and collections, never content.
                    tracing::warn!(tenant = %tenant.id, kind = error.kind(), %error, "analysis paused for this tenant");
                    resting.insert(tenant.id, Instant::now() + BACKEND_BACKOFF);
                }
            }
        }
        if !worked && !stopping() {
            let wait = resting
                .values()
                .filter_map(|until| until.checked_duration_since(Instant::now()))
                .min()
                .map_or(IDLE_WAIT, |rest| rest.min(IDLE_WAIT));
            context.analysis.wait_for_work(wait);
        }
    }
}
