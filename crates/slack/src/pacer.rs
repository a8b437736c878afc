//! Client-side pacing: one token bucket per key (a method in a workspace, or a channel),
//! with reservations so concurrent callers queue in order, and a block after a 429 that
//! holds every caller of the key until `Retry-After` has passed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Rate;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    capacity: f64,
    per_second: f64,
    last: Instant,
    blocked_until: Option<Instant>,
}

/// Keyed token buckets.
#[derive(Debug, Default)]
pub(crate) struct Pacer {
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// Buckets kept before idle, full ones are dropped.
const PRUNE_ABOVE: usize = 4096;

impl Pacer {
    /// Reserves one call on `key` under `rate` (scaled by `headroom`) and returns how long
    /// the caller must wait before making it.
    pub fn reserve(&self, key: &str, rate: Rate, headroom: f64) -> Duration {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !rate.is_limited() {
            // Still honour a Retry-After block on unlimited keys.
            return match buckets.get(key).and_then(|b| b.blocked_until) {
                Some(until) if until > now => until - now,
                _ => Duration::ZERO,
            };
        }
        if buckets.len() > PRUNE_ABOVE {
            buckets
                .retain(|_, b| b.tokens < b.capacity || b.blocked_until.is_some_and(|u| u > now));
        }
        let headroom = if headroom > 0.0 && headroom <= 1.0 {
            headroom
        } else {
            1.0
        };
        let capacity = (f64::from(rate.limit) * headroom).max(1.0);
        let per_second = f64::from(rate.limit) * headroom / rate.window.as_secs_f64();
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: capacity,
            capacity,
            per_second,
            last: now,
            blocked_until: None,
        });
        // The limits may have changed (reconfiguration): adopt them.
        bucket.capacity = capacity;
        bucket.per_second = per_second;
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * bucket.per_second).min(bucket.capacity);
        bucket.last = now;
        bucket.tokens -= 1.0;
        let mut wait = if bucket.tokens < 0.0 {
            Duration::from_secs_f64(-bucket.tokens / bucket.per_second)
        } else {
            Duration::ZERO
        };
        if let Some(until) = bucket.blocked_until {
            if until > now {
                wait += until - now;
            } else {
                bucket.blocked_until = None;
            }
        }
        wait
    }

    /// Reserves and waits.
    pub async fn acquire(&self, key: &str, rate: Rate, headroom: f64) -> Duration {
        let wait = self.reserve(key, rate, headroom);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        wait
    }

    /// Slack answered 429 on `key`: nobody calls it again before `retry_after` has passed,
    /// and the bucket restarts empty.
    pub fn block(&self, key: &str, retry_after: Duration) {
        let now = Instant::now();
        let until = now + retry_after;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: 0.0,
            capacity: 1.0,
            per_second: 1.0,
            last: now,
            blocked_until: None,
        });
        bucket.tokens = bucket.tokens.min(0.0);
        bucket.last = now;
        bucket.blocked_until = Some(match bucket.blocked_until {
            Some(existing) if existing > until => existing,
            _ => until,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_steady_rate() {
        let p = Pacer::default();
        let rate = Rate::per_second(5);
        for _ in 0..5 {
            assert_eq!(p.reserve("k", rate, 1.0), Duration::ZERO);
        }
        // The sixth waits one refill interval, the seventh two: reservations queue.
        let w6 = p.reserve("k", rate, 1.0);
        let w7 = p.reserve("k", rate, 1.0);
        assert!((w6.as_secs_f64() - 0.2).abs() < 1e-6, "{w6:?}");
        assert!((w7.as_secs_f64() - 0.4).abs() < 1e-6, "{w7:?}");
        // Another key is independent.
        assert_eq!(p.reserve("other", rate, 1.0), Duration::ZERO);
        // Unlimited never waits.
        assert_eq!(p.reserve("free", Rate::UNLIMITED, 1.0), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_blocks_the_key() {
        let p = Pacer::default();
        let rate = Rate::per_second(100);
        p.block("k", Duration::from_secs(3));
        let w = p.reserve("k", rate, 1.0);
        assert!(w >= Duration::from_secs(3), "{w:?}");
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(p.reserve("k", rate, 1.0), Duration::ZERO);
        // Blocks apply to unlimited keys too.
        p.block("u", Duration::from_secs(2));
        assert!(p.reserve("u", Rate::UNLIMITED, 1.0) > Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn headroom_lowers_the_rate() {
        let p = Pacer::default();
        let rate = Rate::per_second(10);
        for _ in 0..9 {
            assert_eq!(p.reserve("k", rate, 0.9), Duration::ZERO);
        }
        let w = p.reserve("k", rate, 0.9);
        assert!((w.as_secs_f64() - 1.0 / 9.0).abs() < 1e-3, "{w:?}");
    }
}
