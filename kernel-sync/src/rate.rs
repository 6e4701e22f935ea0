//! Sliding-window rate limits.

use crate::sync::Mutex;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

/// A limit that applies to a decision: at most `count` allows by `policy`
/// within any `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit<'a> {
    /// The limited policy.
    pub policy: &'a str,
    /// The limit as written; a new text starts a new window.
    pub text: &'a str,
    /// Most allows per period.
    pub count: u32,
    /// The window.
    pub period: Duration,
}

type Windows = HashMap<String, (String, VecDeque<Instant>)>;

/// Sliding-window counters, one per limited policy.
///
/// Guarantee, whatever the interleaving of the threads that decide: no
/// policy allows more than its `count` times within any `period`, because
/// checking the limits, deciding and counting the allow happen under one
/// lock ([`decide`](Self::decide)).
pub struct RateCounters {
    windows: Mutex<Windows>,
}

impl Default for RateCounters {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for RateCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateCounters")
            .field("policies", &self.windows.lock().len())
            .finish()
    }
}

fn window<'w>(
    windows: &'w mut Windows,
    limit: &Limit<'_>,
    now: Instant,
) -> &'w mut VecDeque<Instant> {
    let entry = windows
        .entry(limit.policy.to_owned())
        .or_insert_with(|| (limit.text.to_owned(), VecDeque::new()));
    if entry.0 != limit.text {
        *entry = (limit.text.to_owned(), VecDeque::new());
    }
    while entry
        .1
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= limit.period)
    {
        entry.1.pop_front();
    }
    &mut entry.1
}

impl RateCounters {
    /// No allows counted yet.
    pub fn new() -> Self {
        Self {
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Decides under `limits` at `now`: calls `decide` with the first
    /// limit that is used up (or `None`), and when `decide` says the
    /// request was allowed, counts one allow against every limit. Returns
    /// what `decide` returned.
    pub fn decide<T>(
        &self,
        limits: &[Limit<'_>],
        now: Instant,
        decide: impl FnOnce(Option<&Limit<'_>>) -> (T, bool),
    ) -> T {
        let mut windows = self.windows.lock();
        let exceeded = limits.iter().find(|limit| {
            let count = usize::try_from(limit.count).unwrap_or(usize::MAX);
            window(&mut windows, limit, now).len() >= count
        });
        let (result, allowed) = decide(exceeded);
        if allowed {
            for limit in limits {
                window(&mut windows, limit, now).push_back(now);
            }
        }
        result
    }

    /// Whether `limit` is used up at `now`.
    pub fn exhausted(&self, limit: &Limit<'_>, now: Instant) -> bool {
        let count = usize::try_from(limit.count).unwrap_or(usize::MAX);
        window(&mut self.windows.lock(), limit, now).len() >= count
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn limit(text: &str, count: u32) -> Limit<'_> {
        Limit {
            policy: "p",
            text,
            count,
            period: Duration::from_secs(1),
        }
    }

    fn allow(counters: &RateCounters, limits: &[Limit<'_>], now: Instant) -> bool {
        counters.decide(limits, now, |exceeded| {
            (exceeded.is_none(), exceeded.is_none())
        })
    }

    #[test]
    fn the_window_slides() {
        let counters = RateCounters::new();
        let two = limit("2/second", 2);
        let t0 = Instant::now();
        assert!(allow(&counters, &[two], t0));
        assert!(allow(&counters, &[two], t0));
        assert!(!allow(&counters, &[two], t0 + Duration::from_millis(999)));
        assert!(counters.exhausted(&two, t0 + Duration::from_millis(999)));
        assert!(allow(&counters, &[two], t0 + Duration::from_secs(1)));
        let other = Limit { policy: "q", ..two };
        assert!(!counters.exhausted(&other, t0), "counters are per policy");
        let changed = limit("3/second", 3);
        assert!(
            !counters.exhausted(&changed, t0),
            "a new limit starts afresh"
        );
    }

    #[test]
    fn a_denied_decision_is_not_counted() {
        let counters = RateCounters::new();
        let one = limit("1/second", 1);
        let t0 = Instant::now();
        assert!(!counters.decide(&[one], t0, |_| (false, false)));
        assert!(allow(&counters, &[one], t0));
        assert!(!allow(&counters, &[one], t0));
    }
}
