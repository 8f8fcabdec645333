//! The rate limiters of one process (used by `web.rs` and the sign-in routes).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Config;

/// Entries kept before expired ones are swept.
const SWEEP_AT: usize = 50_000;

/// A keyed GCRA limiter: `burst` requests at once, refilling one every `period / burst`.
pub struct RateLimiter {
    interval: Duration,
    tolerance: Duration,
    state: Mutex<HashMap<String, Instant>>,
}

impl RateLimiter {
    pub fn new(burst: u32, period: Duration) -> RateLimiter {
        let burst = burst.max(1);
        let interval = period / burst;
        RateLimiter { interval, tolerance: interval * (burst - 1), state: Mutex::new(HashMap::new()) }
    }

    pub fn per_minute(n: u32) -> RateLimiter {
        RateLimiter::new(n, Duration::from_secs(60))
    }

    /// Counts one request for `key`; `Err(wait)` when over the limit.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut map = match self.state.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if map.len() >= SWEEP_AT {
            map.retain(|_, tat| *tat > now);
        }
        let tat = map.get(key).copied().filter(|t| *t > now).unwrap_or(now);
        let ahead = tat - now;
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        map.insert(key.to_owned(), tat + self.interval);
        Ok(())
    }
}

/// The limiters of one process.
pub struct Limits {
    pub api: RateLimiter,
    pub auth: RateLimiter,
    pub otp_destination: RateLimiter,
}

impl Limits {
    pub fn new(config: &Config) -> Limits {
        Limits {
            api: RateLimiter::per_minute(config.auth.api_requests_per_minute),
            auth: RateLimiter::per_minute(config.auth.auth_attempts_per_minute),
            otp_destination: RateLimiter::new(5, Duration::from_secs(15 * 60)),
        }
    }
}
