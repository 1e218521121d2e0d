//! Analysis jobs: one per interaction, with the version it is to analyse, the kinds asked for,
//! its state and its attempts. Every change of state is a pure function here; the store applies
//! it, together with the queue index and the counts, in one transaction.
//!
//! ```text
//! enqueue ──▶ queued ──claim──▶ running ──complete──▶ done
//!               ▲                  │ │ └──fail (retryable, attempts left)──▶ queued (at the back)
//!               │                  │ └──fail (final)──▶ failed
//!               └── release (shutdown) or requeue on start (cut off) ──┘
//! ```
//!
//! There is at most one job per interaction, so enqueueing the same version twice changes
//! nothing, and a newer version (or a forced re-analysis) while a job runs marks it to run again
//! once it finishes instead of starting a second one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::analysis::AnalysisKind;
use crate::ids::RecordId;

/// Attempts a job gets (including one cut off by a crash) before it is marked failed.
pub const MAX_ATTEMPTS: u32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
}

impl JobState {
    pub const ALL: [Self; 4] = [Self::Queued, Self::Running, Self::Done, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    /// The first byte of the job's queue-index key; done jobs have no index entry.
    pub(crate) fn index_code(self) -> Option<u8> {
        match self {
            Self::Queued => Some(1),
            Self::Running => Some(2),
            Self::Failed => Some(3),
            Self::Done => None,
        }
    }
}

/// Which jobs go first: interactions that just arrived (API, webhooks) and people's requests
/// before backfills (imports, `--all`). The number is part of the queue key, so lower sorts first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Live,
    Backfill,
}

impl Priority {
    pub(crate) fn code(self) -> u8 {
        match self {
            Self::Live => 0,
            Self::Backfill => 1,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Live),
            1 => Some(Self::Backfill),
            _ => None,
        }
    }
}

/// Why a job failed, without any content: safe for logs and pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobErrorKind {
    /// The interaction no longer exists (erased or rolled back).
    InteractionMissing,
    /// The backend could not analyse it.
    Inference,
    /// The process stopped while the job ran, too many times.
    Interrupted,
    /// Someone cancelled it while it waited in the queue.
    Cancelled,
    /// A customer in it restricted or objected to processing (see `crate::privacy`).
    SubjectRestricted,
    /// A review's reply draft could not be written; its text's analyses were kept.
    DraftFailed,
    /// The record or what is kept beside it could not be read or recorded (the store).
    Store,
}

impl JobErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InteractionMissing => "interaction missing",
            Self::Inference => "inference failed",
            Self::Interrupted => "interrupted",
            Self::Cancelled => "cancelled",
            Self::SubjectRestricted => "subject restricted",
            Self::DraftFailed => "reply draft failed",
            Self::Store => "store error",
        }
    }
}

/// What a job is about. Reviews share the queue with interactions: a review signal's job
/// analyses its text (sentiment, topics) and drafts its reply (see [`crate::reviews`]); an
/// account's job writes its briefing (see [`crate::accounts::briefing`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobSubject {
    /// An interaction (jobs stored before reviews were analysed have no subject: interactions).
    #[default]
    Interaction,
    /// A signal of kind `review`.
    Review,
    /// An account: its job writes the account's briefing (see [`crate::accounts::briefing`]).
    Account,
}

/// One record's analysis job: an interaction's, or a review signal's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The record's id: an interaction's, or a review signal's when `subject` says so.
    pub interaction: RecordId,
    #[serde(default)]
    pub subject: JobSubject,
    /// The interaction version (its `updated` time) the job is to analyse, at least.
    pub version: DateTime<Utc>,
    pub kinds: Vec<AnalysisKind>,
    pub state: JobState,
    pub priority: Priority,
    /// Place in the queue among jobs of the same priority (from `Store::generate_id`).
    pub position: u64,
    pub attempts: u32,
    pub error: Option<JobErrorKind>,
    /// Asked for again while running (a newer version, more kinds, or a forced re-analysis):
    /// queued again when the running attempt ends.
    pub rerun: bool,
    pub enqueued: DateTime<Utc>,
    pub started: Option<DateTime<Utc>>,
    pub finished: Option<DateTime<Utc>>,
    /// Running when the process stopped without ending it (a crash, a kill): it is claimed in a
    /// batch of its own from then on, so that one interaction that takes the process down
    /// spends only its own attempts, not those of every job batched with it. Absent in jobs
    /// stored before it existed.
    #[serde(default)]
    pub suspect: bool,
}

/// A request to analyse one interaction (or one review signal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnqueueRequest {
    pub subject: JobSubject,
    pub version: DateTime<Utc>,
    pub kinds: Vec<AnalysisKind>,
    pub priority: Priority,
    /// Analyse again even when this version was analysed already.
    pub force: bool,
}

/// Counts of a tenant's jobs per state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCounts {
    pub queued: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
}

impl JobCounts {
    pub fn get(&self, state: JobState) -> u64 {
        match state {
            JobState::Queued => self.queued,
            JobState::Running => self.running,
            JobState::Done => self.done,
            JobState::Failed => self.failed,
        }
    }

    fn slot(&mut self, state: JobState) -> &mut u64 {
        match state {
            JobState::Queued => &mut self.queued,
            JobState::Running => &mut self.running,
            JobState::Done => &mut self.done,
            JobState::Failed => &mut self.failed,
        }
    }

    /// Records that a job moved from `from` (or was created) to `to`.
    pub fn record(&mut self, from: Option<JobState>, to: JobState) {
        if let Some(from) = from {
            let slot = self.slot(from);
            *slot = slot.saturating_sub(1);
        }
        *self.slot(to) += 1;
    }

    pub fn total(&self) -> u64 {
        self.queued + self.running + self.done + self.failed
    }

    /// Records that a job in `state` was removed (its interaction was deleted).
    pub fn forget(&mut self, state: JobState) {
        let slot = self.slot(state);
        *slot = slot.saturating_sub(1);
    }
}

fn union(left: &[AnalysisKind], right: &[AnalysisKind]) -> Vec<AnalysisKind> {
    let mut kinds: Vec<AnalysisKind> = left.iter().chain(right).copied().collect();
    kinds.sort_unstable();
    kinds.dedup();
    kinds
}

fn covers(have: &[AnalysisKind], wanted: &[AnalysisKind]) -> bool {
    wanted.iter().all(|kind| have.contains(kind))
}

/// What an enqueue makes of the interaction's job: `None` when nothing needs to change (the
/// version is queued, running or done already). `position` gives a new place at the back of the
/// queue; it is called only when the job takes one.
pub fn enqueue(
    existing: Option<&Job>,
    request: &EnqueueRequest,
    interaction: RecordId,
    now: DateTime<Utc>,
    position: impl FnOnce() -> u64,
) -> Option<Job> {
    let fresh = |version, kinds: Vec<AnalysisKind>, priority| Job {
        interaction,
        subject: request.subject,
        version,
        kinds,
        state: JobState::Queued,
        priority,
        position: position(),
        attempts: 0,
        error: None,
        rerun: false,
        enqueued: now,
        started: None,
        finished: None,
        suspect: false,
    };
    let Some(job) = existing else {
        return Some(fresh(
            request.version,
            union(&request.kinds, &[]),
            request.priority,
        ));
    };
    let newer = request.version > job.version;
    let more_kinds = !covers(&job.kinds, &request.kinds);
    let version = job.version.max(request.version);
    match job.state {
        JobState::Queued => {
            let priority = job.priority.min(request.priority);
            if !newer && !more_kinds && priority == job.priority {
                return None;
            }
            Some(Job {
                version,
                kinds: union(&job.kinds, &request.kinds),
                priority,
                ..job.clone()
            })
        }
        JobState::Running => {
            if !newer && !more_kinds && !request.force {
                return None;
            }
            Some(Job {
                version,
                kinds: union(&job.kinds, &request.kinds),
                priority: job.priority.min(request.priority),
                rerun: true,
                ..job.clone()
            })
        }
        JobState::Done => {
            if !newer && !more_kinds && !request.force {
                return None;
            }
            Some(fresh(
                version,
                union(&job.kinds, &request.kinds),
                request.priority,
            ))
        }
        // A failed job is tried again whenever someone asks: the cause may be gone.
        JobState::Failed => Some(fresh(
            version,
            union(&job.kinds, &request.kinds),
            request.priority,
        )),
    }
}

/// The worker takes a queued job.
pub fn claim(job: &Job, now: DateTime<Utc>) -> Job {
    Job {
        state: JobState::Running,
        attempts: job.attempts + 1,
        error: None,
        started: Some(now),
        finished: None,
        ..job.clone()
    }
}

/// How a running attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptEnd {
    /// Analysed; the analyses read this interaction version.
    Done { analysed_version: DateTime<Utc> },
    /// Failed; `retryable` failures go back to the queue while attempts last.
    Failed { kind: JobErrorKind, retryable: bool },
    /// Not started after all (the worker is stopping): back to its place, the attempt not counted.
    Released,
}

/// The job after its running attempt ended. A job asked for again while it ran (a newer version
/// or a forced request marks it `rerun`) is queued again, with fresh attempts. A job whose version
/// is ahead of what was analysed without being marked was asked for a write that was rolled back
/// since (an import undone): that version will never be read, so the job is done, not re-queued
/// for ever.
pub fn end_attempt(
    job: &Job,
    end: AttemptEnd,
    now: DateTime<Utc>,
    position: impl FnOnce() -> u64,
) -> Job {
    match end {
        AttemptEnd::Done { analysed_version } => {
            if job.rerun {
                Job {
                    state: JobState::Queued,
                    position: position(),
                    attempts: 0,
                    error: None,
                    rerun: false,
                    enqueued: now,
                    finished: Some(now),
                    ..job.clone()
                }
            } else {
                Job {
                    state: JobState::Done,
                    version: analysed_version.max(job.version),
                    error: None,
                    finished: Some(now),
                    ..job.clone()
                }
            }
        }
        AttemptEnd::Failed { kind, retryable } => {
            if (retryable && job.attempts < MAX_ATTEMPTS) || job.rerun {
                Job {
                    state: JobState::Queued,
                    position: position(),
                    error: Some(kind),
                    attempts: if job.rerun { 0 } else { job.attempts },
                    rerun: false,
                    finished: Some(now),
                    ..job.clone()
                }
            } else {
                Job {
                    state: JobState::Failed,
                    error: Some(kind),
                    finished: Some(now),
                    ..job.clone()
                }
            }
        }
        AttemptEnd::Released => Job {
            state: JobState::Queued,
            attempts: job.attempts.saturating_sub(1),
            started: None,
            ..job.clone()
        },
    }
}

/// A job found running when the database opens was cut off: it keeps its place in the queue,
/// unless it has used up its attempts (a job that takes the process down every time must not
/// do so forever).
pub fn interrupted(job: &Job, now: DateTime<Utc>) -> Job {
    if job.attempts >= MAX_ATTEMPTS {
        Job {
            state: JobState::Failed,
            error: Some(JobErrorKind::Interrupted),
            finished: Some(now),
            ..job.clone()
        }
    } else {
        Job {
            state: JobState::Queued,
            started: None,
            suspect: true,
            ..job.clone()
        }
    }
}

/// A queued job that someone cancelled: it leaves the queue as failed with `cancelled`, so the
/// Analysis page lists it and Re-analyse (or a new version of the interaction) queues it again.
/// Only a queued job can be cancelled; a running one finishes its short batch.
pub fn cancel(job: &Job, now: DateTime<Utc>) -> Option<Job> {
    (job.state == JobState::Queued).then(|| Job {
        state: JobState::Failed,
        error: Some(JobErrorKind::Cancelled),
        finished: Some(now),
        ..job.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: DateTime<Utc>, force: bool) -> EnqueueRequest {
        EnqueueRequest {
            subject: JobSubject::Interaction,
            version,
            kinds: AnalysisKind::ALL.to_vec(),
            priority: Priority::Backfill,
            force,
        }
    }

    fn time(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn the_same_version_twice_is_one_job() {
        let id = RecordId::new();
        let first = enqueue(None, &request(time(0), false), id, time(1), || 7).unwrap();
        assert_eq!(first.state, JobState::Queued);
        assert_eq!(first.position, 7);
        assert!(enqueue(Some(&first), &request(time(0), false), id, time(2), || 8).is_none());
        // Running or done, the same version is not queued again either.
        let running = claim(&first, time(3));
        assert!(enqueue(Some(&running), &request(time(0), false), id, time(4), || 9).is_none());
        let done = end_attempt(
            &running,
            AttemptEnd::Done {
                analysed_version: time(0),
            },
            time(5),
            || 10,
        );
        assert_eq!(done.state, JobState::Done);
        assert!(enqueue(Some(&done), &request(time(0), false), id, time(6), || 11).is_none());
        // A forced request or a newer version is.
        let forced = enqueue(Some(&done), &request(time(0), true), id, time(7), || 12).unwrap();
        assert_eq!((forced.state, forced.position), (JobState::Queued, 12));
        let newer = enqueue(Some(&done), &request(time(9), false), id, time(8), || 13).unwrap();
        assert_eq!(newer.version, time(9));
    }

    #[test]
    fn a_newer_version_while_running_runs_again_afterwards() {
        let id = RecordId::new();
        let job = claim(
            &enqueue(None, &request(time(0), false), id, time(1), || 1).unwrap(),
            time(2),
        );
        let marked = enqueue(Some(&job), &request(time(5), false), id, time(3), || 2).unwrap();
        assert_eq!(marked.state, JobState::Running);
        assert!(marked.rerun);
        let ended = end_attempt(
            &marked,
            AttemptEnd::Done {
                analysed_version: time(0),
            },
            time(4),
            || 3,
        );
        assert_eq!(ended.state, JobState::Queued);
        assert_eq!(
            (ended.version, ended.position, ended.attempts),
            (time(5), 3, 0)
        );
    }

    #[test]
    fn a_version_rolled_back_before_it_was_read_ends_the_job() {
        let id = RecordId::new();
        // Queued for version 5, but an import rollback took the record back to version 1.
        let job = claim(
            &enqueue(None, &request(time(5), false), id, time(6), || 1).unwrap(),
            time(7),
        );
        let ended = end_attempt(
            &job,
            AttemptEnd::Done {
                analysed_version: time(1),
            },
            time(8),
            || panic!("a rolled-back version must not take a new place in the queue"),
        );
        assert_eq!(ended.state, JobState::Done);
        assert_eq!(ended.version, time(5));
        // The next real write (later than the rolled-back one) queues it again.
        let next = enqueue(Some(&ended), &request(time(9), false), id, time(9), || 2).unwrap();
        assert_eq!((next.state, next.version), (JobState::Queued, time(9)));
    }

    #[test]
    fn only_a_queued_job_is_cancelled_and_asking_again_queues_it() {
        let id = RecordId::new();
        let queued = enqueue(None, &request(time(0), false), id, time(1), || 1).unwrap();
        let cancelled = cancel(&queued, time(2)).unwrap();
        assert_eq!(cancelled.state, JobState::Failed);
        assert_eq!(cancelled.error, Some(JobErrorKind::Cancelled));
        assert!(cancel(&claim(&queued, time(2)), time(3)).is_none());
        assert!(cancel(&cancelled, time(3)).is_none());
        let again = enqueue(
            Some(&cancelled),
            &request(time(0), false),
            id,
            time(4),
            || 2,
        )
        .unwrap();
        assert_eq!(
            (again.state, again.error, again.position),
            (JobState::Queued, None, 2)
        );
    }

    #[test]
    fn failures_retry_a_bounded_number_of_times() {
        let id = RecordId::new();
        let mut job = enqueue(None, &request(time(0), false), id, time(0), || 1).unwrap();
        let failure = AttemptEnd::Failed {
            kind: JobErrorKind::Inference,
            retryable: true,
        };
        for attempt in 1..=MAX_ATTEMPTS {
            job = end_attempt(&claim(&job, time(1)), failure, time(2), || 5);
            assert_eq!(job.attempts, attempt);
            let expected = if attempt < MAX_ATTEMPTS {
                JobState::Queued
            } else {
                JobState::Failed
            };
            assert_eq!(job.state, expected);
        }
        assert_eq!(job.error, Some(JobErrorKind::Inference));
        // A final failure does not retry at all.
        let fresh = enqueue(Some(&job), &request(time(0), false), id, time(3), || 6).unwrap();
        let final_failure = AttemptEnd::Failed {
            kind: JobErrorKind::InteractionMissing,
            retryable: false,
        };
        assert_eq!(
            end_attempt(&claim(&fresh, time(4)), final_failure, time(5), || 7).state,
            JobState::Failed
        );
    }

    #[test]
    fn cut_off_jobs_keep_their_place_until_their_attempts_are_spent() {
        let id = RecordId::new();
        let job = enqueue(None, &request(time(0), false), id, time(0), || 4).unwrap();
        let running = claim(&job, time(1));
        let requeued = interrupted(&running, time(2));
        assert_eq!((requeued.state, requeued.position), (JobState::Queued, 4));
        let mut spent = running.clone();
        spent.attempts = MAX_ATTEMPTS;
        let failed = interrupted(&spent, time(3));
        assert_eq!(failed.state, JobState::Failed);
        assert_eq!(failed.error, Some(JobErrorKind::Interrupted));
        let released = end_attempt(&running, AttemptEnd::Released, time(4), || 99);
        assert_eq!(
            (released.state, released.attempts, released.position),
            (JobState::Queued, 0, 4)
        );
    }

    #[test]
    fn counts_follow_transitions() {
        let mut counts = JobCounts::default();
        counts.record(None, JobState::Queued);
        counts.record(Some(JobState::Queued), JobState::Running);
        counts.record(Some(JobState::Running), JobState::Done);
        counts.record(None, JobState::Queued);
        assert_eq!(
            (counts.queued, counts.running, counts.done, counts.failed),
            (1, 0, 1, 0)
        );
        assert_eq!(counts.total(), 2);
    }
}
