//! The rate limiters of one process (used by `web.rs` and the sign-in routes).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Config;

/// Entries kept before expired ones are swept.
const SWEEP_AT: usize = 50_000;

/// A keyed token bucket (as GCRA): `burst` requests at once, refilled at `rate` per `period`.
pub struct RateLimiter {
    interval: Duration,
    tolerance: Duration,
    state: Mutex<HashMap<String, Instant>>,
}

impl RateLimiter {
    /// `burst` requests at once, refilling one every `period / burst`.
    pub fn new(burst: u32, period: Duration) -> RateLimiter {
        RateLimiter::bucket(burst, period, burst)
    }

    /// Refills `rate` requests per `period`; holds at most `burst`.
    pub fn bucket(rate: u32, period: Duration, burst: u32) -> RateLimiter {
        let interval = period / rate.max(1);
        RateLimiter { interval, tolerance: interval * (burst.max(1) - 1), state: Mutex::new(HashMap::new()) }
    }

    pub fn per_minute(n: u32) -> RateLimiter {
        RateLimiter::new(n, Duration::from_secs(60))
    }

    /// Counts one request for `key`; `Err(wait)` when over the limit.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    /// [`RateLimiter::check`] at `now` (monotonic; tests drive it).
    pub fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
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
    /// The API buckets of the OAuth clients configured with their own (`auth.client_limits`).
    pub clients: HashMap<String, RateLimiter>,
    pub auth: RateLimiter,
    pub otp_destination: RateLimiter,
}

impl Limits {
    pub fn new(config: &Config) -> Limits {
        let minute = Duration::from_secs(60);
        let a = &config.auth;
        Limits {
            api: RateLimiter::bucket(
                a.api_requests_per_minute,
                minute,
                a.api_burst.unwrap_or(a.api_requests_per_minute),
            ),
            clients: a
                .client_limits
                .iter()
                .map(|(id, l)| {
                    let bucket =
                        RateLimiter::bucket(l.requests_per_minute, minute, l.burst.unwrap_or(l.requests_per_minute));
                    (id.clone(), bucket)
                })
                .collect(),
            auth: RateLimiter::per_minute(config.auth.auth_attempts_per_minute),
            otp_destination: RateLimiter::new(5, Duration::from_secs(15 * 60)),
        }
    }

    /// The API bucket for a token of `client` (the default one for app sign-ins and clients
    /// without their own).
    pub fn api_for(&self, client: Option<&str>) -> &RateLimiter {
        client.and_then(|c| self.clients.get(c)).unwrap_or(&self.api)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults let a loader run 1,000 requests in a minute, even all at once, and then 20 a
    /// second for as long as it likes; more than that is refused, and so is a burst beyond the
    /// bucket. Driven on the limiter's clock, so no test waits a minute.
    #[test]
    fn default_api_buckets_suit_a_loader_and_stop_a_flood() {
        let config = Config::default();
        let limits = Limits::new(&config);
        let start = Instant::now();
        // 1,000 requests spread over one minute, and 1,000 at once: none refused.
        for i in 0..1_000u32 {
            let at = start + Duration::from_millis(u64::from(i) * 60);
            assert!(limits.api.check_at("user:loader", at).is_ok(), "request {i}");
        }
        for i in 0..1_000 {
            assert!(limits.api.check_at("user:burst", start).is_ok(), "request {i} of the burst");
        }
        // A flood: the bucket (1,200) empties and the rest is refused, with a wait to tell.
        let refused = (0..5_000).filter(|_| limits.api.check_at("user:flood", start).is_err()).count();
        assert_eq!(refused, 5_000 - 1_200);
        let wait = limits.api.check_at("user:flood", start).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(50), "{wait:?}");
        // Sustained 20 a second after the flood: each gets in as the bucket refills.
        let later = start + Duration::from_secs(1);
        assert!(limits.api.check_at("user:flood", later).is_ok());
        // Each user has a bucket of their own; sign-in attempts keep their strict limit.
        assert!(limits.api.check_at("user:other", start).is_ok());
        let auth_refused = (0..25).filter(|_| limits.auth.check_at("ip:1.2.3.4", start).is_err()).count();
        assert_eq!(auth_refused, 5);
    }

    #[test]
    fn an_oauth_client_can_have_a_bucket_of_its_own() {
        let mut config = Config::default();
        config.auth.api_requests_per_minute = 10;
        config.auth.client_limits.insert(
            "nightly-sync".into(),
            crate::config::ClientLimit { requests_per_minute: 6_000, burst: Some(3_000) },
        );
        let limits = Limits::new(&config);
        let now = Instant::now();
        let sync = limits.api_for(Some("nightly-sync"));
        assert_eq!((0..3_500).filter(|_| sync.check_at("user:a", now).is_err()).count(), 500);
        let app = limits.api_for(Some("someone-else"));
        assert_eq!((0..15).filter(|_| app.check_at("user:a", now).is_err()).count(), 5);
        assert_eq!((0..15).filter(|_| limits.api_for(None).check_at("user:b", now).is_err()).count(), 5);
    }
}
