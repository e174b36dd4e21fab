//! The password sign-in throttle: failures counted per login and per client address; too many
//! within the window lock the key out for the rest of it. A lock-out refuses even the right
//! password, so guessing gets at most [`LOGIN_FAILURES_MAX`] tries a login per
//! [`LOCKOUT_SECS`], whichever addresses the guesses come from.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed sign-ins of one login that lock it out.
pub const LOGIN_FAILURES_MAX: u32 = 5;
/// Failed sign-ins from one address that lock it out: more than a login's, since an office
/// behind one NAT address shares it.
pub const ADDRESS_FAILURES_MAX: u32 = 20;
/// How long failures are remembered, and a lock-out lasts, from the first failure counted.
pub const LOCKOUT_SECS: u64 = 15 * 60;
/// Most keys remembered; beyond it, the expired ones are dropped, then the oldest.
pub const KEYS_MAX: usize = 100_000;

struct Entry {
    failures: u32,
    first_at: Instant,
}

/// Counts failures per key (`login:<login>`, `addr:<ip>`).
pub struct Throttle {
    entries: Mutex<HashMap<String, Entry>>,
    window: Duration,
}

impl Default for Throttle {
    fn default() -> Throttle {
        Throttle::new(Duration::from_secs(LOCKOUT_SECS))
    }
}

impl Throttle {
    pub fn new(window: Duration) -> Throttle {
        Throttle {
            entries: Mutex::new(HashMap::new()),
            window,
        }
    }

    /// How long `key` stays locked out at `now` with `max` failures allowed, if it is.
    pub fn locked(&self, key: &str, max: u32, now: Instant) -> Option<Duration> {
        let entries = self.entries.lock().expect("throttle lock");
        let e = entries.get(key)?;
        let until = e.first_at + self.window;
        (e.failures >= max && now < until).then(|| until - now)
    }

    /// Counts a failure of `key` at `now`.
    pub fn fail(&self, key: &str, now: Instant) {
        let mut entries = self.entries.lock().expect("throttle lock");
        if entries.len() >= KEYS_MAX && !entries.contains_key(key) {
            let window = self.window;
            entries.retain(|_, e| now.duration_since(e.first_at) < window);
            if entries.len() >= KEYS_MAX
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.first_at)
                    .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        let e = entries.entry(key.to_owned()).or_insert(Entry {
            failures: 0,
            first_at: now,
        });
        if now.duration_since(e.first_at) >= self.window {
            *e = Entry {
                failures: 0,
                first_at: now,
            };
        }
        e.failures += 1;
    }

    /// Forgets the failures of `key` (a successful sign-in).
    pub fn clear(&self, key: &str) {
        self.entries.lock().expect("throttle lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Five failures lock a login out for the rest of the window, whatever comes next; the lock
    // ends with the window, a success clears the count, and keys are counted apart.
    #[test]
    fn failures_lock_out_until_the_window_ends() {
        let t = Throttle::new(Duration::from_secs(900));
        let start = Instant::now();
        for i in 0..LOGIN_FAILURES_MAX {
            assert_eq!(
                t.locked("login:a", LOGIN_FAILURES_MAX, start),
                None,
                "after {i}"
            );
            t.fail("login:a", start + Duration::from_secs(u64::from(i)));
        }
        let left = t
            .locked(
                "login:a",
                LOGIN_FAILURES_MAX,
                start + Duration::from_secs(60),
            )
            .expect("locked after five failures");
        assert_eq!(left, Duration::from_secs(840));
        assert_eq!(t.locked("login:b", LOGIN_FAILURES_MAX, start), None);
        assert_eq!(
            t.locked(
                "login:a",
                LOGIN_FAILURES_MAX,
                start + Duration::from_secs(900)
            ),
            None,
            "the lock ends with the window"
        );
        // A failure after the window starts a new count.
        t.fail("login:a", start + Duration::from_secs(901));
        assert_eq!(
            t.locked("login:a", 1, start + Duration::from_secs(902)),
            Some(Duration::from_secs(899))
        );
        t.clear("login:a");
        assert_eq!(
            t.locked("login:a", 1, start + Duration::from_secs(902)),
            None
        );
    }
}
