//! Failed-login throttling per account and per client address, with progressive lock-outs.
//!
//! After `threshold` consecutive failures a key is locked for `base`, doubling with each further
//! failure up to `max`; a success clears the account's count and an hour without failures clears
//! any key. Because locks are temporary and capped, nobody can lock a victim out for good. Counts
//! are kept in memory, keyed by a blind pseudonym of the e-mail (never the address itself).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const FORGET_AFTER: Duration = Duration::from_secs(3600);
const MAX_TRACKED: usize = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Account([u8; 32]),
    Address(IpAddr),
}

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Locked { retry_after: Duration },
}

/// Settings, from `[auth]` in the configuration.
#[derive(Clone, Copy, Debug)]
pub struct ThrottlePolicy {
    pub account_threshold: u32,
    pub address_threshold: u32,
    pub base: Duration,
    pub max: Duration,
}

pub struct Throttle {
    policy: ThrottlePolicy,
    failures: Mutex<HashMap<Key, Failures>>,
}

impl Throttle {
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self {
            policy,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn keys(account: [u8; 32], address: Option<IpAddr>) -> Vec<Key> {
        let mut keys = vec![Key::Account(account)];
        keys.extend(address.map(Key::Address));
        keys
    }

    /// Whether a login attempt may be checked at all right now.
    pub fn check(&self, account: [u8; 32], address: Option<IpAddr>) -> Verdict {
        let now = Instant::now();
        let Ok(failures) = self.failures.lock() else {
            return Verdict::Allowed;
        };
        let longest = Self::keys(account, address)
            .iter()
            .filter_map(|key| failures.get(key)?.locked_until)
            .filter(|until| *until > now)
            .max();
        match longest {
            Some(until) => Verdict::Locked {
                retry_after: until - now,
            },
            None => Verdict::Allowed,
        }
    }

    /// Counts a failure; returns true when it starts (or extends) a lock of the account.
    pub fn record_failure(&self, account: [u8; 32], address: Option<IpAddr>) -> bool {
        let now = Instant::now();
        let Ok(mut failures) = self.failures.lock() else {
            return false;
        };
        if failures.len() > MAX_TRACKED {
            failures.retain(|_, entry| now.duration_since(entry.last) < FORGET_AFTER);
        }
        let mut account_locked = false;
        for key in Self::keys(account, address) {
            let threshold = match key {
                Key::Account(_) => self.policy.account_threshold,
                Key::Address(_) => self.policy.address_threshold,
            };
            let entry = failures.entry(key).or_insert(Failures {
                count: 0,
                last: now,
                locked_until: None,
            });
            if now.duration_since(entry.last) >= FORGET_AFTER {
                entry.count = 0;
            }
            entry.count = entry.count.saturating_add(1);
            entry.last = now;
            if entry.count >= threshold {
                let doublings = (entry.count - threshold).min(16);
                let lock = self
                    .policy
                    .base
                    .saturating_mul(1u32 << doublings)
                    .min(self.policy.max);
                entry.locked_until = Some(now + lock);
                account_locked |= matches!(key, Key::Account(_));
            }
        }
        account_locked
    }

    /// Clears the account's failures after a successful login.
    pub fn record_success(&self, account: [u8; 32]) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(&Key::Account(account));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> Throttle {
        Throttle::new(ThrottlePolicy {
            account_threshold: 3,
            address_threshold: 10,
            base: Duration::from_secs(30),
            max: Duration::from_secs(120),
        })
    }

    #[test]
    fn locks_after_the_threshold_with_growing_capped_delays() {
        let throttle = throttle();
        let account = [1u8; 32];
        assert!(!throttle.record_failure(account, None));
        assert!(!throttle.record_failure(account, None));
        assert_eq!(throttle.check(account, None), Verdict::Allowed);
        assert!(throttle.record_failure(account, None));
        let Verdict::Locked { retry_after } = throttle.check(account, None) else {
            panic!("not locked after the threshold");
        };
        assert!(retry_after <= Duration::from_secs(30) && retry_after > Duration::from_secs(25));
        throttle.record_failure(account, None);
        throttle.record_failure(account, None);
        throttle.record_failure(account, None);
        let Verdict::Locked { retry_after } = throttle.check(account, None) else {
            panic!("lock lifted early");
        };
        assert!(
            retry_after <= Duration::from_secs(120),
            "cap exceeded: {retry_after:?}"
        );
        assert_eq!(
            throttle.check([2u8; 32], None),
            Verdict::Allowed,
            "another account was locked"
        );
    }

    #[test]
    fn an_address_is_locked_across_accounts() {
        let throttle = throttle();
        let address: IpAddr = "192.0.2.7".parse().unwrap();
        for account in 0..10u8 {
            throttle.record_failure([account; 32], Some(address));
        }
        assert!(matches!(
            throttle.check([99u8; 32], Some(address)),
            Verdict::Locked { .. }
        ));
        assert_eq!(throttle.check([99u8; 32], None), Verdict::Allowed);
    }
}
