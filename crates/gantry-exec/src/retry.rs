//! Retry and TTL policy as pure functions, plus removing a finished workload's files.

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use gantry_core::rng::Rng;

use crate::error::ExecError;
use crate::record::{PidRecord, recorded_attempts, workload_dir};
use crate::run::Exit;

/// Exponential backoff between attempts: `base · factor^(n-1)`, at most `cap`, minus a random
/// fraction of up to `jitter` of it (so the delay lies in `[d · (1 - jitter), d]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// Delay before the first retry, before jitter.
    pub base: Duration,
    /// Growth per retry; values below 1 (or not finite) count as 1.
    pub factor: f64,
    /// Longest delay.
    pub cap: Duration,
    /// Largest fraction taken off by jitter, clamped to `[0, 1]`.
    pub jitter: f64,
}

impl Default for Backoff {
    /// 1 s, doubling, at most 5 minutes, up to 20 % jitter.
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            factor: 2.0,
            cap: Duration::from_secs(300),
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// The delay before retry number `retry` (1 for the first retry), with jitter drawn from `seed`.
    ///
    /// The same (backoff, retry, seed) always gives the same delay; nothing global is used.
    pub fn delay(&self, retry: u32, seed: u64) -> Duration {
        let factor = if self.factor.is_finite() && self.factor >= 1.0 {
            self.factor
        } else {
            1.0
        };
        let cap = self.cap.as_secs_f64();
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let raw = self.base.as_secs_f64() * factor.powi(exponent);
        let capped = if raw.is_finite() { raw.min(cap) } else { cap };
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let mut rng = Rng::new(seed ^ u64::from(retry).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let secs = capped * (1.0 - jitter * rng.unit());
        Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(self.cap)
    }
}

/// Whether another attempt should run after `exit`, and after what delay.
///
/// `attempts_so_far` counts the attempts that have run, this one included; `retries_allowed` is the
/// spec's `retries` (so at most `retries_allowed + 1` attempts). Success and cancel are final;
/// failures, timeouts and unknown exits (a child lost or found again after a restart) are retried.
/// `seed` makes the jitter reproducible (for example, a hash of the workload id).
pub fn next_attempt(
    retries_allowed: u32,
    attempts_so_far: u32,
    exit: &Exit,
    backoff: &Backoff,
    seed: u64,
) -> Option<Duration> {
    if exit.success() || exit.cancelled || attempts_so_far > retries_allowed {
        return None;
    }
    Some(backoff.delay(attempts_so_far.max(1), seed))
}

/// Whether a workload that finished at `finished_at` with a `ttl` has outlived it at `now`.
pub fn expired(finished_at: SystemTime, ttl: Duration, now: SystemTime) -> bool {
    finished_at.checked_add(ttl).is_some_and(|end| now >= end)
}

/// Removes `<log_dir>/<id>` with all its logs and records; `Ok(false)` if there was nothing.
///
/// Refuses ([`ExecError::StillRunning`]) while a recorded process of the workload still runs.
pub fn cleanup(log_dir: &Path, id: &str) -> Result<bool, ExecError> {
    let dir = workload_dir(log_dir, id)?;
    for attempt in recorded_attempts(log_dir, id)? {
        let path = dir.join(format!("{attempt}.pid"));
        if PidRecord::read(&path).is_ok_and(|r| r.is_alive()) {
            return Err(ExecError::StillRunning {
                id: id.to_string(),
                attempt,
            });
        }
    }
    match fs::remove_dir_all(&dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(ExecError::io(dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> Exit {
        Exit {
            code: Some(1),
            signal: None,
            timed_out: false,
            cancelled: false,
            duration: Duration::ZERO,
        }
    }

    #[test]
    fn backoff_is_deterministic_for_a_seed() {
        let b = Backoff::default();
        let seq = |seed| (1..=10).map(|n| b.delay(n, seed)).collect::<Vec<_>>();
        assert_eq!(seq(7), seq(7));
        assert_ne!(seq(7), seq(8));
        for (n, d) in seq(7).into_iter().enumerate() {
            let full = (2f64.powi(n as i32)).min(300.0);
            let d = d.as_secs_f64();
            assert!(
                d <= full && d >= full * 0.8,
                "retry {}: {d} vs {full}",
                n + 1
            );
        }
    }

    #[test]
    fn backoff_without_jitter_is_exact_and_capped() {
        let b = Backoff {
            base: Duration::from_millis(500),
            factor: 3.0,
            cap: Duration::from_secs(10),
            jitter: 0.0,
        };
        let got: Vec<u128> = (1..=5).map(|n| b.delay(n, 1).as_millis()).collect();
        assert_eq!(got, [500, 1500, 4500, 10_000, 10_000]);
        assert_eq!(b.delay(u32::MAX, 1), Duration::from_secs(10));
        let odd = Backoff {
            factor: f64::NAN,
            jitter: f64::INFINITY,
            ..b
        };
        assert_eq!(odd.delay(9, 1), Duration::from_millis(500));
    }

    #[test]
    fn next_attempt_counts_retries_and_respects_outcomes() {
        let b = Backoff {
            jitter: 0.0,
            ..Backoff::default()
        };
        assert_eq!(
            next_attempt(2, 1, &failed(), &b, 0),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            next_attempt(2, 2, &failed(), &b, 0),
            Some(Duration::from_secs(2))
        );
        assert_eq!(next_attempt(2, 3, &failed(), &b, 0), None);
        assert_eq!(next_attempt(0, 1, &failed(), &b, 0), None);
        let ok = Exit {
            code: Some(0),
            ..failed()
        };
        assert_eq!(next_attempt(5, 1, &ok, &b, 0), None);
        let cancelled = Exit {
            cancelled: true,
            ..failed()
        };
        assert_eq!(next_attempt(5, 1, &cancelled, &b, 0), None);
        let timed_out = Exit {
            code: None,
            signal: Some(15),
            timed_out: true,
            ..failed()
        };
        assert!(next_attempt(5, 1, &timed_out, &b, 0).is_some());
        let lost = Exit {
            code: None,
            ..failed()
        };
        assert!(next_attempt(5, 1, &lost, &b, 0).is_some());
    }

    #[test]
    fn ttl_expiry() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let ttl = Duration::from_secs(60);
        assert!(!expired(t0, ttl, t0 + Duration::from_secs(59)));
        assert!(expired(t0, ttl, t0 + Duration::from_secs(60)));
        assert!(!expired(
            t0,
            Duration::MAX,
            t0 + Duration::from_secs(1 << 40)
        ));
    }

    #[test]
    fn cleanup_removes_only_the_workload() {
        let root = tempfile::tempdir().unwrap();
        for id in ["a", "b"] {
            fs::create_dir_all(root.path().join(id)).unwrap();
            fs::write(root.path().join(id).join("1.stdout"), "x").unwrap();
        }
        assert!(cleanup(root.path(), "a").unwrap());
        assert!(!root.path().join("a").exists());
        assert!(root.path().join("b/1.stdout").exists());
        assert!(!cleanup(root.path(), "a").unwrap());
        assert!(cleanup(root.path(), "..").is_err());
    }
}
