//! How many decisions an agent governed at the system-call boundary may
//! cause, for its own calls and through its egress proxy alike.

/// Decisions per second one agent may cause at the system-call boundary
/// by default (`--syscall-rate`), sustained; see [`RateLimit`].
pub const DEFAULT_RATE_PER_SECOND: u32 = 2000;
/// Longest a call waits for its turn under the rate limit.
pub const RATE_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// How many decisions an agent may cause at the system-call boundary.
/// Beyond the sustained rate (after a burst of twice as many) a call waits
/// for its turn, up to [`RATE_WAIT`]; one that would wait longer fails
/// with `EAGAIN` without a decision or a record, so a flood cannot fill
/// the evidence or starve the client, while a busy agent is slowed down
/// rather than failed. Calls Landlock grants anyway are not counted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Decisions per second, sustained.
    pub per_second: f64,
    /// Decisions allowed at once above the sustained rate.
    pub burst: f64,
}

impl RateLimit {
    /// `per_second` sustained (at least one), bursts of twice as many.
    pub fn per_second(per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        Self {
            per_second,
            burst: 2.0 * per_second,
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::per_second(DEFAULT_RATE_PER_SECOND)
    }
}

/// A token bucket whose tokens may be reserved ahead (the count goes
/// negative), so that waiting callers are served in turn.
#[derive(Debug)]
pub(crate) struct Bucket {
    limit: RateLimit,
    tokens: f64,
    at: std::time::Instant,
}

impl Bucket {
    /// A full bucket for `limit`.
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            tokens: limit.burst,
            at: std::time::Instant::now(),
        }
    }

    /// Takes a token now, or reserves one and returns how long to wait
    /// for it; `None` if that would be longer than `patience` (nothing is
    /// reserved then).
    fn reserve(&mut self, patience: std::time::Duration) -> Option<std::time::Duration> {
        self.reserve_at(std::time::Instant::now(), patience)
    }

    /// [`Bucket::reserve`] at the instant `now` (not before the last one).
    fn reserve_at(
        &mut self,
        now: std::time::Instant,
        patience: std::time::Duration,
    ) -> Option<std::time::Duration> {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.limit.per_second;
        self.tokens = (self.tokens + refill).min(self.limit.burst);
        self.at = now;
        let wait = if self.tokens >= 1.0 {
            std::time::Duration::ZERO
        } else {
            std::time::Duration::from_secs_f64((1.0 - self.tokens) / self.limit.per_second)
        };
        if wait > patience {
            return None;
        }
        self.tokens -= 1.0;
        Some(wait)
    }
}

/// Waits for a decision's turn under the rate limit of `bucket` (whose
/// lock is released before waiting): `false`, with nothing reserved, when
/// the turn is further away than [`RATE_WAIT`].
pub(crate) fn wait_for_turn(bucket: &parking_lot::Mutex<Bucket>) -> bool {
    let turn = bucket.lock().reserve(RATE_WAIT);
    match turn {
        Some(wait) => {
            std::thread::sleep(wait);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;

    #[test]
    fn a_flood_beyond_the_burst_waits_its_turn_and_then_is_refused() {
        use std::time::Duration;
        let start = std::time::Instant::now();
        let limit = RateLimit::default();
        let mut bucket = Bucket {
            limit,
            tokens: limit.burst,
            at: start,
        };
        let burst = limit.burst as usize;
        // At one instant: the burst at once, then nothing without waiting.
        let immediate = (0..burst * 2)
            .filter(|_| bucket.reserve_at(start, Duration::ZERO).is_some())
            .count();
        assert_eq!(immediate, burst);
        // Reservations queue up at the sustained rate, each waiting one
        // interval longer, until the wait would exceed the patience.
        let waits: Vec<Duration> =
            std::iter::from_fn(|| bucket.reserve_at(start, RATE_WAIT)).collect();
        let expected = (limit.per_second * RATE_WAIT.as_secs_f64()) as usize;
        assert!(waits.len().abs_diff(expected) <= 1, "{}", waits.len());
        assert!(waits.windows(2).all(|w| w[0] < w[1]), "served in turn");
        assert!(waits.iter().all(|w| *w <= RATE_WAIT));
        assert_eq!(bucket.reserve_at(start, RATE_WAIT), None);
        // Later, the reserved turns have passed and tokens come back at
        // the sustained rate.
        let later = start + RATE_WAIT + Duration::from_millis(10);
        let refilled = (0..burst)
            .filter(|_| bucket.reserve_at(later, Duration::ZERO).is_some())
            .count();
        let expected = (limit.per_second * 0.010) as usize;
        assert!(refilled.abs_diff(expected) <= 1, "{refilled}");
    }
}
