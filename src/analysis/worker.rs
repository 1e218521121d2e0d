//! Running the queue: the background thread of `rapport serve` and the foreground loop of
//! `rapport analyse`, both through [`process_batch`].
//!
//! The thread is a plain OS thread, not a task on the async runtime: it blocks on the store and
//! on the inference thread. It goes round the tenants that have queued jobs, takes one batch
//! (the engine's batch width) from each in turn, and sleeps until an enqueue wakes it when there
//! is nothing to do. Backends are kept in a [`BackendCache`] keyed by the tenant's analysis
//! settings, so a model is loaded once and shared by every tenant that uses it, not per job.
//!
//! Stopping: the thread stops taking jobs; the batch in hand finishes its classifications, and
//! jobs whose summaries were not reached go back to their places in the queue. A job cut off by
//! the process ending is re-queued when the database next opens.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::analysis::jobs::{AttemptEnd, Job, JobCounts, JobErrorKind};
use crate::analysis::pipeline::{self, Item, ItemOutcome};
use crate::analysis::store::Finished;
use crate::analysis::AnalysisError;
use crate::context::AppContext;
use crate::ids::TenantId;
use crate::inference::models::ModelDirectories;
use crate::inference::store::AnalysisSettingsStore;
use crate::inference::{self, Backend, InferenceError};

/// Backends kept loaded at most (each `local` one holds a model in memory).
const MAX_BACKENDS: usize = 2;
/// Jobs taken in one batch at most, whatever the engine's batch width.
const MAX_BATCH: usize = 64;
/// How long a tenant whose backend cannot be opened is left alone.
const BACKEND_BACKOFF: Duration = Duration::from_secs(60);
/// How long the idle worker sleeps before looking again without being woken.
const IDLE_WAIT: Duration = Duration::from_secs(30);

struct CachedBackend {
    settings_digest: [u8; 32],
    backend: Arc<dyn Backend>,
    last_used: Instant,
}

/// Loaded backends, keyed by a digest of the analysis settings that chose them.
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
    /// backend) give another key, so the next batch uses the new choice.
    pub fn backend_for(
        &mut self,
        context: &AppContext,
        tenant: TenantId,
    ) -> Result<Arc<dyn Backend>, InferenceError> {
        let directories = ModelDirectories::from_config(&context.config);
        let settings =
            AnalysisSettingsStore::new(context.store.clone()).get(tenant, &directories)?;
        let encoded = rmp_serde::to_vec_named(&settings)
            .map_err(|error| InferenceError::Invalid(error.to_string()))?;
        let settings_digest = crate::crypto::sha256(&[&encoded]);
        if let Some(entry) = self
            .entries
            .iter_mut()
            .find(|entry| entry.settings_digest == settings_digest)
        {
            entry.last_used = Instant::now();
            return Ok(Arc::clone(&entry.backend));
        }
        let record = context
            .tenants
            .get(tenant)
            .map_err(|error| InferenceError::Invalid(error.to_string()))?
            .ok_or_else(|| InferenceError::Invalid("the tenant no longer exists".to_owned()))?;
        let backend: Arc<dyn Backend> = Arc::from(inference::open_tenant_backend(
            context,
            &crate::audit::Actor::system(),
            &record,
        )?);
        if self.entries.len() >= MAX_BACKENDS {
            if let Some(oldest) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(index, _)| index)
            {
                self.entries.swap_remove(oldest);
            }
        }
        self.entries.push(CachedBackend {
            settings_digest,
            backend: Arc::clone(&backend),
            last_used: Instant::now(),
        });
        Ok(backend)
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
    let claimed = context.analysis.claim(tenant, batch_size(context))?;
    if claimed.is_empty() {
        return Ok(BatchReport::default());
    }
    let result = run_claimed(context, backend.as_ref(), &topics, tenant, &claimed, stop);
    match result {
        Ok(finished) => {
            let mut report = BatchReport {
                claimed: claimed.len(),
                ..BatchReport::default()
            };
            for item in &finished {
                match item.end {
                    AttemptEnd::Done { .. } => report.done += 1,
                    AttemptEnd::Failed { .. } => report.failed += 1,
                    AttemptEnd::Released => report.released += 1,
                }
            }
            context.analysis.finish(tenant, finished)?;
            Ok(report)
        }
        Err(error) => {
            // Reading the batch failed (the store): give the jobs back untouched, then report.
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
            Err(error)
        }
    }
}

fn run_claimed(
    context: &AppContext,
    backend: &dyn Backend,
    topics: &inference::LabelSet,
    tenant: TenantId,
    claimed: &[Job],
    stop: &dyn Fn() -> bool,
) -> Result<Vec<Finished>, AnalysisError> {
    let mut finished = Vec::with_capacity(claimed.len());
    let mut loaded = Vec::new();
    for job in claimed {
        match context.interactions.get(tenant, job.interaction)? {
            Some(interaction) => {
                let existing = context.analysis.analyses(tenant, job.interaction)?;
                loaded.push((job, interaction, existing));
            }
            None => finished.push(Finished {
                job: job.clone(),
                end: AttemptEnd::Failed {
                    kind: JobErrorKind::InteractionMissing,
                    retryable: false,
                },
                analyses: Vec::new(),
            }),
        }
    }
    let items: Vec<Item<'_>> = loaded
        .iter()
        .map(|(job, interaction, existing)| Item {
            interaction,
            kinds: &job.kinds,
            existing,
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
