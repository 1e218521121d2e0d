//! The built-in scheduler: named tasks on cron expressions (the `cron` crate), run one after
//! another on one thread of `rapport serve`. Retention's nightly sweep is its first task; privacy
//! request reminders and backups are meant to join it as further [`Task`]s.
//!
//! Expressions are read in UTC. They have six fields, seconds first (`0 30 2 * * *` is 02:30
//! every day), or the classic five (`30 2 * * *`), which get `0` seconds. A missed time (the
//! server was stopped) is not caught up: the next time after the start is the next run.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::context::AppContext;

/// A parsed cron expression.
#[derive(Clone, Debug)]
pub struct Schedule {
    expression: String,
    parsed: cron::Schedule,
}

impl Schedule {
    /// Parses `expression` (six fields, or five without seconds). The error says what is wrong
    /// without repeating more than the expression.
    pub fn parse(expression: &str) -> Result<Self, String> {
        let trimmed = expression.trim();
        let fields = trimmed.split_whitespace().count();
        let full = if fields == 5 {
            format!("0 {trimmed}")
        } else {
            trimmed.to_owned()
        };
        let parsed = cron::Schedule::from_str(&full).map_err(|error| {
            format!(
                "{expression:?} is not a cron expression (seconds minutes hours day-of-month month day-of-week, e.g. \"0 30 2 * * *\"): {error}"
            )
        })?;
        if parsed.after(&Utc::now()).next().is_none() {
            return Err(format!("{expression:?} never fires again"));
        }
        Ok(Self {
            expression: trimmed.to_owned(),
            parsed,
        })
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.parsed.after(&after).next()
    }
}

/// What a task does when its time comes.
pub type Work = Box<dyn Fn(&AppContext) + Send>;

/// One scheduled task.
pub struct Task {
    /// A fixed name, for logs.
    pub name: &'static str,
    pub schedule: Schedule,
    pub work: Work,
}

/// The running scheduler thread.
pub struct SchedulerHandle {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl std::fmt::Debug for SchedulerHandle {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SchedulerHandle")
    }
}

impl SchedulerHandle {
    /// Stops the thread, waiting up to `patience` for a task in hand (a sweep stops between
    /// batches only when it ends, so a long one is left to finish with the process).
    pub fn stop(self, patience: Duration) {
        self.stop.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + patience;
        while !self.thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.thread.is_finished() {
            if self.thread.join().is_err() {
                tracing::error!("the scheduler thread ended with a panic");
            }
        } else {
            tracing::warn!("a scheduled task is still running as the server stops");
        }
    }
}

/// Starts the `scheduler` thread: each task runs at its schedule's times, in the order due.
pub fn spawn(context: Arc<AppContext>, tasks: Vec<Task>) -> std::io::Result<SchedulerHandle> {
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("scheduler".to_owned())
        .spawn(move || {
            let mut next: Vec<Option<DateTime<Utc>>> = tasks
                .iter()
                .map(|task| task.schedule.next_after(Utc::now()))
                .collect();
            while !thread_stop.load(Ordering::SeqCst) {
                let now = Utc::now();
                for (task, due) in tasks.iter().zip(next.iter_mut()) {
                    if due.is_some_and(|due| due <= now) {
                        tracing::info!(task = task.name, "scheduled task starting");
                        (task.work)(&context);
                        *due = task.schedule.next_after(Utc::now());
                    }
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })?;
    Ok(SchedulerHandle { stop, thread })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_and_five_field_expressions_parse_and_fire_at_their_time() {
        let nightly = Schedule::parse("0 30 2 * * *").unwrap();
        let start = DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            nightly.next_after(start).unwrap().to_rfc3339(),
            "2026-03-02T02:30:00+00:00"
        );
        let classic = Schedule::parse("30 2 * * *").unwrap();
        assert_eq!(classic.next_after(start), nightly.next_after(start));
    }

    #[test]
    fn a_bad_expression_is_refused_with_a_message() {
        let error = Schedule::parse("every night").unwrap_err();
        assert!(error.contains("is not a cron expression"), "{error}");
        assert!(Schedule::parse("0 61 2 * * *").is_err());
    }
}
