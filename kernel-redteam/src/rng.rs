//! A tiny seeded generator: every campaign is reproducible from its seed.

use rand_xoshiro::rand_core::{Rng as _, SeedableRng as _};

/// splitmix64 (rand_xoshiro's): deterministic, fast, good enough to pick
/// attacks; the same stream as the tests' seeded schedules.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(rand_xoshiro::SplitMix64);

impl SplitMix64 {
    /// A generator starting at `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(rand_xoshiro::SplitMix64::seed_from_u64(seed))
    }

    /// The next 64 random bits.
    pub(crate) fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (`0` when `n` is 0; the modulo bias is irrelevant
    /// here).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        usize::try_from(self.next() % u64::try_from(n).unwrap_or(u64::MAX)).unwrap_or(0)
    }

    /// One element of `items`, if there is any.
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }

    /// `n` random bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next().to_le_bytes()[0]).collect()
    }
}

#[cfg(test)]
mod tests {
    /// The stream is splitmix64's, so a seed recorded with a campaign's
    /// results replays that campaign (its first number from seed 0 is the
    /// reference implementation's).
    #[test]
    fn the_stream_is_splitmix64() {
        assert_eq!(super::SplitMix64::new(0).next(), 0xe220_a839_7b1d_cdaf);
    }
}
