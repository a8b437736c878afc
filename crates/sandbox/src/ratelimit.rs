//! Token-bucket rate limiting keyed by an arbitrary string, scaled by `time_scale`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Keyed token buckets. A limit of `limit` requests per `per` allows a burst of `limit`
/// and refills continuously at `limit / per`; both are multiplied by the time scale.
#[derive(Debug)]
pub struct RateLimiter {
    scale: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// A limiter with the given time scale (`0` disables limiting).
    pub fn new(scale: f64) -> Self {
        RateLimiter {
            scale,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether limits are enforced at all.
    pub fn enabled(&self) -> bool {
        self.scale > 0.0
    }

    /// Takes one token from bucket `key`. `Err(wait)` when the bucket is empty: `wait` is how
    /// long until a token is available (what a `Retry-After` should say).
    pub fn check(&self, key: &str, limit: u32, per: Duration) -> Result<(), Duration> {
        self.check_all(&[(key, limit, per)])
    }

    /// Checks several buckets at once: takes a token from each only when all have one.
    pub fn check_all(&self, rules: &[(&str, u32, Duration)]) -> Result<(), Duration> {
        if !self.enabled() {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        let mut worst = Duration::ZERO;
        for (key, limit, per) in rules {
            if let Some(wait) = self.refilled(&mut buckets, key, *limit, *per, now) {
                worst = worst.max(wait);
            }
        }
        if worst > Duration::ZERO {
            return Err(worst);
        }
        for (key, _, _) in rules {
            if let Some(b) = buckets.get_mut(*key) {
                b.tokens -= 1.0;
            }
        }
        Ok(())
    }

    /// Refills bucket `key` up to `now`; `Some(wait)` when it holds less than one token.
    fn refilled(
        &self,
        buckets: &mut HashMap<String, Bucket>,
        key: &str,
        limit: u32,
        per: Duration,
        now: Instant,
    ) -> Option<Duration> {
        let capacity = (f64::from(limit) * self.scale).max(1.0);
        let rate = capacity / per.as_secs_f64();
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: capacity,
            last: now,
        });
        let elapsed = now.duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.last = now;
        (bucket.tokens < 1.0).then(|| Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
    }
}

/// The `Retry-After` header value (whole seconds, at least 1) for a wait.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs_f64().ceil() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_limit_passes_over_limit_waits() {
        let l = RateLimiter::new(1.0);
        for _ in 0..5 {
            assert!(l.check("k", 5, Duration::from_secs(1)).is_ok());
        }
        let wait = l.check("k", 5, Duration::from_secs(1)).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(200));
        // other keys are independent
        assert!(l.check("other", 5, Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn scale_zero_disables() {
        let l = RateLimiter::new(0.0);
        for _ in 0..1000 {
            assert!(l.check("k", 1, Duration::from_secs(60)).is_ok());
        }
    }

    #[test]
    fn check_all_takes_nothing_when_one_bucket_is_empty() {
        let l = RateLimiter::new(1.0);
        let per = Duration::from_secs(10);
        assert!(l.check_all(&[("a", 1, per), ("b", 5, per)]).is_ok());
        assert!(l.check_all(&[("a", 1, per), ("b", 5, per)]).is_err());
        // b kept its tokens: 4 left
        for _ in 0..4 {
            assert!(l.check("b", 5, per).is_ok());
        }
        assert!(l.check("b", 5, per).is_err());
    }
}
