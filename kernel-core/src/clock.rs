//! The wall clock, read in one place.
//!
//! Nothing in this crate calls [`now_ms`]: every check that depends on the
//! time (receipt expiry, deadlines) takes it as an argument, so that the
//! checks stay deterministic and can be tested at any instant. The client,
//! the enforcer and the tools call this function to obtain that argument,
//! so they all count time the same way.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch: 0 if the clock is before it,
/// `u64::MAX` if it is too far after it to count.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
