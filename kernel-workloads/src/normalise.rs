//! The few differences between two runs' standard output that are
//! legitimate, removed narrowly: only the steps that ask for it, and only
//! the pattern named.
//!
//! No path normalisation is needed: both runs of a pair happen at the
//! same paths (see [`crate::runner`]); commit hashes are reproducible
//! because both runs get the same fixed author and committer dates.

/// What to normalise in one step's standard output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Normalise {
    /// Durations printed by the tool (`in 0.35s`, `245ms`): a number
    /// (optionally with a fraction) immediately followed by `ms` or `s`
    /// and not by another letter or digit becomes `<duration>`.
    pub durations: bool,
    /// The order of lines (a directory listing in `readdir` order, which
    /// the file system chooses): lines are sorted.
    pub unordered_lines: bool,
}

impl Normalise {
    /// Nothing normalised: output compared byte for byte.
    pub const EXACT: Self = Self {
        durations: false,
        unordered_lines: false,
    };
    /// Durations normalised.
    pub const DURATIONS: Self = Self {
        durations: true,
        unordered_lines: false,
    };
    /// Line order normalised.
    pub const UNORDERED: Self = Self {
        durations: false,
        unordered_lines: true,
    };

    /// What this normalisation does, for reports (empty when exact).
    pub fn describe(&self) -> Vec<&'static str> {
        let mut what = Vec::new();
        if self.durations {
            what.push("durations");
        }
        if self.unordered_lines {
            what.push("line order");
        }
        what
    }

    /// The normalised form of `output`.
    pub fn apply(&self, output: &[u8]) -> Vec<u8> {
        let mut text = output.to_vec();
        if self.durations {
            text = durations(&text);
        }
        if self.unordered_lines {
            let mut lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
            lines.sort_unstable();
            text = lines.join(&b'\n');
        }
        text
    }
}

/// Replaces every duration (`12ms`, `0.35s`, `1.5 s` is not one) with
/// `<duration>`.
fn durations(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while let Some(&byte) = text.get(i) {
        let starts_word = i == 0
            || text
                .get(i - 1)
                .is_some_and(|b| !b.is_ascii_alphanumeric() && *b != b'.');
        if byte.is_ascii_digit() && starts_word {
            let digits = |from: usize| {
                text.get(from..).map_or(0, |rest| {
                    rest.iter().take_while(|b| b.is_ascii_digit()).count()
                })
            };
            let mut end = i + digits(i);
            if text.get(end) == Some(&b'.') && digits(end + 1) > 0 {
                end += 1 + digits(end + 1);
            }
            let unit = if text.get(end..end + 2) == Some(b"ms") {
                2
            } else if text.get(end) == Some(&b's') {
                1
            } else {
                0
            };
            let after = text.get(end + unit);
            if unit > 0 && !after.is_some_and(u8::is_ascii_alphanumeric) {
                out.extend_from_slice(b"<duration>");
                i = end + unit;
                continue;
            }
            out.extend_from_slice(text.get(i..end).unwrap_or_default());
            i = end;
            continue;
        }
        out.push(byte);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_replaced_and_nothing_else() {
        let input = b"added 1 package in 245ms\nRan 3 tests in 0.001s\n\
            test result: ok. 2 passed; finished in 0.00s\n\
            3 tests, 10 files, v1.2s, abc12s, 5 seconds, 2.5\n";
        let output = Normalise::DURATIONS.apply(input);
        assert_eq!(
            String::from_utf8_lossy(&output),
            "added 1 package in <duration>\nRan 3 tests in <duration>\n\
            test result: ok. 2 passed; finished in <duration>\n\
            3 tests, 10 files, v1.2s, abc12s, 5 seconds, 2.5\n"
        );
    }

    #[test]
    fn unordered_lines_are_sorted() {
        let output = Normalise::UNORDERED.apply(b"./b\n./a\n");
        assert_eq!(output, b"\n./a\n./b");
        assert_eq!(Normalise::EXACT.apply(b"x\ny\n"), b"x\ny\n");
    }
}
