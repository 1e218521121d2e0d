//! The service watchdog: tells systemd that the server is alive only while its store still commits.
//!
//! With `WatchdogSec=` in the unit (the packaged unit sets it), systemd passes the period in
//! `$WATCHDOG_USEC` and expects `WATCHDOG=1` at least once per period. A thread of its own runs a
//! probe every half period (in `serve`, [`crate::store::Store::heartbeat`]: a small write and a
//! flush) and sends the ping only when the probe has returned. sled 0.34.7 can deadlock inside a
//! write (a writer waits, while holding the segment accountant's lock, for a log truncation that the
//! I/O threads, themselves waiting for that lock, never run; seen in `rapport bench engine`), and
//! then every later write and flush blocks for good while the process looks healthy. The probe then
//! never returns, the pings stop, and systemd aborts the service and starts it again
//! (`Restart=on-failure`); the next open rolls back an import that was cut off and re-queues
//! analysis jobs, as after any crash.
//!
//! A probe that *fails* (a full disk, a read-only file system) still pings: the process answers,
//! the failure is reported by whatever write meets it, and a restart would not cure it. Only a probe
//! that does not return stops the pings.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long [`Watchdog::stop`] waits for a probe in progress.
pub const STOP_PATIENCE: Duration = Duration::from_secs(5);

/// The running watchdog thread; [`Watchdog::stop`] ends it.
#[derive(Debug)]
pub struct Watchdog {
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Ends the thread and waits for it, up to [`STOP_PATIENCE`]: a probe that is stuck leaves the
    /// thread behind (the process is on its way out anyway).
    pub fn stop(mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + STOP_PATIENCE;
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

/// Starts the watchdog thread: every `period / 2` it calls `probe`, then `ping` once the probe
/// has returned, whatever its result. A probe's error is logged (`probe` returns a message that
/// holds no tenant content). The first probe runs at once.
pub fn spawn(
    period: Duration,
    mut probe: impl FnMut() -> Result<(), String> + Send + 'static,
    mut ping: impl FnMut() + Send + 'static,
) -> std::io::Result<Watchdog> {
    let (stop, stopped) = mpsc::channel::<()>();
    let interval = (period / 2).max(Duration::from_millis(10));
    let thread = std::thread::Builder::new()
        .name("watchdog".to_owned())
        .spawn(move || loop {
            if let Err(message) = probe() {
                tracing::warn!(error = %message, "the watchdog's store probe failed");
            }
            ping();
            match stopped.recv_timeout(interval) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
            }
        })?;
    Ok(Watchdog {
        stop,
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Waits up to two seconds for `count()` to reach `at_least`.
    fn wait_for(count: &Arc<Mutex<usize>>, at_least: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let now = *count
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if now >= at_least || Instant::now() > deadline {
                return now;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn counter() -> (Arc<Mutex<usize>>, impl FnMut() + Send + 'static) {
        let count = Arc::new(Mutex::new(0_usize));
        let pings = Arc::clone(&count);
        (count, move || {
            *pings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
        })
    }

    #[test]
    fn a_store_that_commits_is_pinged_every_half_period_and_stop_ends_the_thread() {
        let (count, ping) = counter();
        let watchdog = spawn(Duration::from_millis(40), || Ok(()), ping).expect("spawn");
        assert!(wait_for(&count, 4) >= 4, "pings kept coming");
        watchdog.stop();
        let after_stop = *count.lock().expect("count");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            *count.lock().expect("count"),
            after_stop,
            "no ping after stop"
        );
    }

    #[test]
    fn a_failing_probe_still_pings() {
        let (count, ping) = counter();
        let watchdog = spawn(
            Duration::from_millis(40),
            || Err("disk full".to_owned()),
            ping,
        )
        .expect("spawn");
        assert!(wait_for(&count, 3) >= 3);
        watchdog.stop();
    }

    #[test]
    fn a_probe_that_does_not_return_stops_the_pings() {
        let (count, ping) = counter();
        // The third probe blocks until the test releases it, as a deadlocked store would.
        let (release, held) = mpsc::channel::<()>();
        let held = Mutex::new(held);
        let mut probes = 0;
        let watchdog = spawn(
            Duration::from_millis(20),
            move || {
                probes += 1;
                if probes == 3 {
                    let _ = held.lock().map(|held| held.recv());
                }
                Ok(())
            },
            ping,
        )
        .expect("spawn");
        assert_eq!(wait_for(&count, 2), 2, "two probes returned, two pings");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            *count.lock().expect("count"),
            2,
            "no ping while the probe is stuck, for ten periods"
        );
        release.send(()).expect("release");
        assert!(wait_for(&count, 3) >= 3, "pings resume once it returns");
        watchdog.stop();
    }
}
