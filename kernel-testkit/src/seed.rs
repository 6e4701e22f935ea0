//! Seeded schedules: a run that fails can be replayed from its seed.

use rand_xoshiro::SplitMix64;
use rand_xoshiro::rand_core::{Rng as _, SeedableRng as _};

/// A deterministic generator (splitmix64, the campaign's too): the same
/// seed gives the same numbers, on every machine.
#[derive(Debug, Clone)]
pub struct Seeded(SplitMix64);

impl Seeded {
    /// A generator starting at `seed`.
    pub fn new(seed: u64) -> Self {
        Self(SplitMix64::seed_from_u64(seed))
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `lo..=hi` (the modulo bias is irrelevant for picking a
    /// schedule); `lo` when the range is empty.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        match (hi.checked_sub(lo)).and_then(|span| span.checked_add(1)) {
            Some(width) => lo + self.next_u64() % width,
            None if hi < lo => lo,
            // The whole of u64.
            None => self.next_u64(),
        }
    }
}

/// A seed from the environment variable `name`, decimal or `0x`
/// hexadecimal; `None` when it is unset or not a number.
pub fn seed_from_env(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stream is splitmix64's (the reference implementation's first
    /// numbers for this seed): a schedule recorded with its seed replays.
    #[test]
    fn the_stream_is_splitmix64() {
        let mut seeded = Seeded::new(1_477_776_061_723_855_037);
        for expected in [
            1_985_237_415_132_408_290,
            2_979_275_885_539_914_483,
            13_511_426_838_097_143_398,
            8_488_337_342_461_049_707,
        ] {
            assert_eq!(seeded.next_u64(), expected);
        }
    }

    #[test]
    fn a_range_stays_inside_its_bounds() {
        let mut seeded = Seeded::new(7);
        for _ in 0..1000 {
            let n = seeded.range(3, 5);
            assert!((3..=5).contains(&n), "{n}");
        }
        assert_eq!(seeded.range(9, 9), 9);
        assert_eq!(seeded.range(9, 2), 9);
        let _ = seeded.range(0, u64::MAX);
    }
}
