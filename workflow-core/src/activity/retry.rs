//! Retry policies for activities: how many attempts, and how long to wait between them.

use std::time::Duration;

/// When to try a failed activity again.
///
/// The delay before attempt `n + 1` is `first_interval * backoff^(n - 1)`, capped at
/// `max_interval` (a zero `first_interval` is zero delay at every attempt; without a cap, a delay
/// too large for a `Duration` is `Duration::MAX`). `max_attempts` counts the first attempt; values below 1 mean 1. A backoff
/// coefficient below 1 means 1 (a fixed interval). With `timeout` set, no retry starts once that
/// much time has passed since the first attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    pub max_attempts: u32,
    /// The delay before the second attempt.
    pub first_interval: Duration,
    /// The factor by which each delay grows.
    pub backoff: f64,
    /// The largest delay; `None` for no cap.
    pub max_interval: Option<Duration>,
    /// No retry starts after this much time since the first attempt; `None` for no limit.
    pub timeout: Option<Duration>,
}

impl Default for RetryPolicy {
    /// Three attempts, one second apart, doubling, capped at one minute.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            first_interval: Duration::from_secs(1),
            backoff: 2.0,
            max_interval: Some(Duration::from_secs(60)),
            timeout: None,
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn no_retry() -> Self {
        Self { max_attempts: 1, ..Self::default() }
    }

    /// `max_attempts` attempts with a fixed `interval` between them.
    pub fn fixed(max_attempts: u32, interval: Duration) -> Self {
        Self { max_attempts, first_interval: interval, backoff: 1.0, max_interval: None, timeout: None }
    }

    /// `max_attempts` attempts, starting at `first_interval` and growing by `backoff`.
    pub fn exponential(max_attempts: u32, first_interval: Duration, backoff: f64) -> Self {
        Self { max_attempts, first_interval, backoff, max_interval: None, timeout: None }
    }

    /// Sets the largest delay.
    pub fn with_max_interval(mut self, max_interval: Duration) -> Self {
        self.max_interval = Some(max_interval);
        self
    }

    /// Sets the total retry timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Attempts in all, at least one.
    pub fn attempts(&self) -> u32 {
        self.max_attempts.max(1)
    }

    /// The delay after failed attempt `attempt` (1-based), or `None` when no attempt is left.
    /// `elapsed` is the time since the first attempt started.
    pub fn delay_after(&self, attempt: u32, elapsed: Duration) -> Option<Duration> {
        if attempt >= self.attempts() {
            return None;
        }
        let mut delay = self.growth(attempt);
        if let Some(cap) = self.max_interval {
            delay = delay.min(cap);
        }
        if let Some(limit) = self.timeout {
            if elapsed.saturating_add(delay) > limit {
                return None;
            }
        }
        Some(delay)
    }

    /// `first_interval * backoff^(attempt - 1)`, uncapped, for any attempt: a zero first interval
    /// is zero whatever the factor (never `0 x inf`), and a product too large for a `Duration` is
    /// `Duration::MAX`.
    fn growth(&self, attempt: u32) -> Duration {
        if self.first_interval.is_zero() {
            return Duration::ZERO;
        }
        let coefficient = if self.backoff < 1.0 || !self.backoff.is_finite() { 1.0 } else { self.backoff };
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let seconds = self.first_interval.as_secs_f64() * coefficient.powi(exponent);
        // Positive, or +inf once the power overflows: the conversion saturates it.
        Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_cap() {
        let policy =
            RetryPolicy::exponential(10, Duration::from_secs(60), 2.0).with_max_interval(Duration::from_secs(3600));
        let delays: Vec<u64> =
            (1..10).map(|a| policy.delay_after(a, Duration::ZERO).map_or(0, |d| d.as_secs())).collect();
        assert_eq!(delays, vec![60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(policy.delay_after(10, Duration::ZERO), None);
    }

    #[test]
    fn odd_values_are_clamped() {
        let policy = RetryPolicy { max_attempts: 0, ..RetryPolicy::default() };
        assert_eq!(policy.attempts(), 1);
        assert_eq!(policy.delay_after(1, Duration::ZERO), None);
        let fixed = RetryPolicy { backoff: 0.0, ..RetryPolicy::fixed(3, Duration::from_secs(5)) };
        assert_eq!(fixed.delay_after(2, Duration::ZERO), Some(Duration::from_secs(5)));
    }

    /// However many attempts a policy allows, the delay is a number: a zero first interval stays
    /// zero (it was `0 x inf`, NaN, read as "never"), a growing one stops at the cap, and
    /// without a cap at `Duration::MAX`.
    #[test]
    fn late_attempts_have_sane_delays() {
        let zero = RetryPolicy::exponential(u32::MAX, Duration::ZERO, 2.0);
        let capped = zero.clone().with_max_interval(Duration::from_secs(60));
        let growing = RetryPolicy::exponential(u32::MAX, Duration::from_millis(1), 10.0);
        let growing_capped = growing.clone().with_max_interval(Duration::from_secs(60));
        for attempt in [1_000, 1_100, 10_000, u32::MAX - 1] {
            assert_eq!(zero.delay_after(attempt, Duration::ZERO), Some(Duration::ZERO), "attempt {attempt}");
            assert_eq!(capped.delay_after(attempt, Duration::ZERO), Some(Duration::ZERO), "attempt {attempt}");
            assert_eq!(growing.delay_after(attempt, Duration::ZERO), Some(Duration::MAX), "attempt {attempt}");
            let delay = growing_capped.delay_after(attempt, Duration::ZERO);
            assert_eq!(delay, Some(Duration::from_secs(60)), "attempt {attempt}");
        }
        // The last attempt a policy allows has no delay after it, even at u32::MAX.
        assert_eq!(zero.delay_after(u32::MAX, Duration::ZERO), None);
        let unlimited_time = RetryPolicy { backoff: f64::NAN, ..zero.with_timeout(Duration::MAX) };
        assert_eq!(unlimited_time.delay_after(10_000, Duration::MAX), Some(Duration::ZERO));
    }

    #[test]
    fn timeout_stops_retries() {
        let policy = RetryPolicy::fixed(10, Duration::from_secs(5)).with_timeout(Duration::from_secs(12));
        assert!(policy.delay_after(1, Duration::from_secs(6)).is_some());
        assert_eq!(policy.delay_after(2, Duration::from_secs(8)), None);
    }
}
