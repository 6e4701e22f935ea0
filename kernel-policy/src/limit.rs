//! `@limit("N/period")`: how often a permit policy may allow.
//!
//! A limit is a sliding window: at most `N` allows by that policy within
//! any `period`. Beyond it the request is denied with a reason naming the
//! policy and the limit. The counters (`kernel_sync::RateCounters`) live in
//! the enforcer's memory: a restart of the enforcer (which only the
//! operator can cause) resets them, and so does a policy reload for
//! policies whose limit text changed.

use std::time::Duration;

/// Largest `N` accepted in a limit.
pub const MAX_LIMIT_COUNT: u32 = 1_000_000;

/// A parsed `@limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// Most allows per period.
    pub count: u32,
    /// The window.
    pub period: Duration,
    /// The annotation as written.
    pub text: String,
}

/// Why a `@limit` annotation is refused ([`parse_limit`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// Not `N/period`.
    #[error(
        "`@limit(\"{0}\")` is not of the form \"N/period\" (period: second, minute, hour, day, or a number followed by s, m, h or d)"
    )]
    Form(String),
    /// The count is 0 or over [`MAX_LIMIT_COUNT`].
    #[error("`@limit(\"{0}\")`: the count must be between 1 and {MAX_LIMIT_COUNT}")]
    Count(String),
}

/// Parses `N/second`, `N/minute`, `N/hour`, `N/day`, or `N/<k><s|m|h|d>`
/// such as `20/5m`.
pub fn parse_limit(text: &str) -> Result<RateLimit, LimitError> {
    let bad = || LimitError::Form(text.to_owned());
    let (count, period) = text.split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    if count == 0 || count > MAX_LIMIT_COUNT {
        return Err(LimitError::Count(text.to_owned()));
    }
    let period = period.trim();
    let seconds = match period {
        "second" | "s" => 1,
        "minute" | "m" => 60,
        "hour" | "h" => 3600,
        "day" | "d" => 86_400,
        other => {
            let split = other.len().checked_sub(1).ok_or_else(bad)?;
            let (number, unit) = other.split_at_checked(split).ok_or_else(bad)?;
            let number: u64 = number.parse().map_err(|_| bad())?;
            let unit = match unit {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                _ => return Err(bad()),
            };
            number
                .checked_mul(unit)
                .filter(|s| (1..=366 * 86_400).contains(s))
                .ok_or_else(bad)?
        }
    };
    Ok(RateLimit {
        count,
        period: Duration::from_secs(seconds),
        text: text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn parses_the_documented_forms_and_nothing_else() {
        assert_eq!(
            parse_limit("10/minute").unwrap().period,
            Duration::from_secs(60)
        );
        assert_eq!(
            parse_limit("3/5m").unwrap().period,
            Duration::from_secs(300)
        );
        assert_eq!(parse_limit("1/d").unwrap().count, 1);
        for bad in [
            "",
            "10",
            "x/minute",
            "10/fortnight",
            "10/0s",
            "10/m5",
            "10/999999d",
        ] {
            assert_eq!(
                parse_limit(bad),
                Err(LimitError::Form(bad.to_owned())),
                "{bad}"
            );
        }
        for bad in ["0/minute", "4294967295/s"] {
            assert_eq!(
                parse_limit(bad),
                Err(LimitError::Count(bad.to_owned())),
                "{bad}"
            );
        }
    }
}
