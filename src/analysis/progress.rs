//! How fast a tenant's queue is being worked through, and what that means for the jobs still
//! waiting: the Analysis page's progress bar, items per minute and ETA.
//!
//! The rate is measured, not guessed: every batch the worker ends adds (when it started, when
//! it ended, how many jobs it finished) to a per-tenant window of the last
//! [`RATE_WINDOW`]. It lives in memory only, so it starts again with the process; until a batch
//! has ended there is no rate and no ETA rather than an invented one.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::analysis::jobs::JobCounts;
use crate::ids::TenantId;

/// How much recent work the rate is measured over.
pub const RATE_WINDOW: Duration = Duration::from_secs(10 * 60);
/// Batches remembered per tenant at most (a fast `off` backend ends many a second).
const MAX_SAMPLES: usize = 4096;

#[derive(Clone, Copy, Debug)]
struct Sample {
    started: Instant,
    ended: Instant,
    jobs: u64,
}

/// One tenant's recent batches.
#[derive(Debug, Default)]
pub struct Throughput {
    samples: VecDeque<Sample>,
}

impl Throughput {
    /// Records a batch that started at `started`, ended at `ended` and finished `jobs` jobs.
    pub fn record(&mut self, started: Instant, ended: Instant, jobs: u64) {
        self.samples.push_back(Sample {
            started,
            ended,
            jobs,
        });
        while self.samples.len() > MAX_SAMPLES {
            self.samples.pop_front();
        }
    }

    /// Jobs per minute over the batches that ended in the last [`RATE_WINDOW`] before `now`,
    /// measured from the first of them starting to `now`; `None` before any such batch.
    pub fn per_minute(&mut self, now: Instant) -> Option<f64> {
        while self
            .samples
            .front()
            .is_some_and(|sample| now.saturating_duration_since(sample.ended) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        let first = self.samples.iter().map(|sample| sample.started).min()?;
        let span = now.saturating_duration_since(first).as_secs_f64();
        if span <= 0.0 {
            return None;
        }
        let jobs: u64 = self.samples.iter().map(|sample| sample.jobs).sum();
        #[allow(clippy::cast_precision_loss)] // Job counts are far below 2^52.
        let jobs = jobs as f64;
        Some(jobs * 60.0 / span)
    }
}

/// Every tenant's [`Throughput`], shared by the worker (which records) and the pages (which
/// read).
#[derive(Debug, Default)]
pub struct Meters {
    tenants: Mutex<HashMap<TenantId, Throughput>>,
}

impl Meters {
    pub fn record(&self, tenant: TenantId, started: Instant, jobs: u64) {
        self.tenants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(tenant)
            .or_default()
            .record(started, Instant::now(), jobs);
    }

    pub fn per_minute(&self, tenant: TenantId) -> Option<f64> {
        self.tenants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&tenant)?
            .per_minute(Instant::now())
    }
}

/// What the Analysis page shows about the queue's progress.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// Jobs finished (done or failed) out of all jobs the tenant has.
    pub finished: u64,
    pub total: u64,
    /// Jobs still to do: queued or running.
    pub remaining: u64,
    pub per_minute: Option<f64>,
    /// How long the remaining jobs take at the measured rate; `None` without a rate (or with
    /// nothing left to do).
    pub eta: Option<Duration>,
}

impl Progress {
    pub fn new(counts: &JobCounts, per_minute: Option<f64>) -> Self {
        let remaining = counts.queued + counts.running;
        #[allow(clippy::cast_precision_loss)] // Job counts are far below 2^52.
        let waiting = remaining as f64;
        let eta = per_minute
            .filter(|rate| *rate > 0.0 && remaining > 0)
            .map(|rate| Duration::from_secs_f64((waiting / rate * 60.0).min(1e9)));
        Self {
            finished: counts.done + counts.failed,
            total: counts.total(),
            remaining,
            per_minute,
            eta,
        }
    }

    /// Whole per cent finished, for the bar's label.
    pub fn percent(&self) -> u64 {
        if self.total == 0 {
            return 100;
        }
        self.finished * 100 / self.total
    }
}

/// A duration as people read an ETA: `45 s`, `12 min`, `3 h 20 min`, `2 d 4 h`.
pub fn describe_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min", seconds.div_ceil(60)),
        3600..86_400 => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{} d {} h", seconds / 86_400, seconds % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_counts_recent_batches_from_the_first_ones_start() {
        let origin = Instant::now();
        let at = |seconds: u64| origin + Duration::from_secs(seconds);
        let mut meter = Throughput::default();
        assert_eq!(meter.per_minute(at(0)), None);
        meter.record(at(0), at(30), 8);
        meter.record(at(30), at(60), 8);
        // 16 jobs in the 60 s since the first batch started.
        assert_eq!(meter.per_minute(at(60)), Some(16.0));
        // Idle time lowers the rate; batches older than the window leave it.
        assert_eq!(meter.per_minute(at(120)), Some(8.0));
        let later = at(60) + RATE_WINDOW + Duration::from_secs(1);
        assert_eq!(meter.per_minute(later), None);
        meter.record(later, later + Duration::from_secs(6), 3);
        assert_eq!(meter.per_minute(later + Duration::from_secs(6)), Some(30.0));
    }

    #[test]
    fn progress_and_eta_follow_the_counts_and_the_rate() {
        let counts = JobCounts {
            queued: 90,
            running: 10,
            done: 280,
            failed: 20,
        };
        let progress = Progress::new(&counts, Some(50.0));
        assert_eq!(
            (progress.finished, progress.total, progress.remaining),
            (300, 400, 100)
        );
        assert_eq!(progress.percent(), 75);
        assert_eq!(progress.eta, Some(Duration::from_secs(120)));
        assert_eq!(Progress::new(&counts, None).eta, None);
        assert_eq!(Progress::new(&counts, Some(0.0)).eta, None);
        let idle = JobCounts {
            done: 5,
            ..JobCounts::default()
        };
        assert_eq!(Progress::new(&idle, Some(10.0)).eta, None);
        assert_eq!(Progress::new(&JobCounts::default(), None).percent(), 100);
    }

    #[test]
    fn durations_read_like_an_eta() {
        assert_eq!(describe_duration(Duration::from_secs(45)), "45 s");
        assert_eq!(describe_duration(Duration::from_secs(61)), "2 min");
        assert_eq!(describe_duration(Duration::from_secs(12_000)), "3 h 20 min");
        assert_eq!(describe_duration(Duration::from_secs(187_200)), "2 d 4 h");
    }
}
