//! Judged attempts, the summary table (a row per class, a column per
//! mode) and the progress line.

use crate::modes::{Mode, not_applicable};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One judged attempt.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Judged {
    pub(crate) class: String,
    pub(crate) mode: Mode,
    pub(crate) what: String,
    pub(crate) answer: String,
    pub(crate) escaped: bool,
    pub(crate) effects: Vec<String>,
    /// Effects that happened and fall under a documented limit of the
    /// confinement: reported, not counted as escapes.
    pub(crate) limits: Vec<String>,
}

/// Counts of one class (in one mode, or in all).
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub(crate) struct Counts {
    pub(crate) attempts: usize,
    /// The effect did not happen.
    pub(crate) refused: usize,
    /// The effect happened, within a documented limit.
    pub(crate) limit: usize,
    /// The effect happened.
    pub(crate) escaped: usize,
}

impl Counts {
    fn add(&mut self, r: &Judged) {
        self.attempts += 1;
        if r.escaped {
            self.escaped += 1;
        } else if !r.limits.is_empty() {
            self.limit += 1;
        } else {
            self.refused += 1;
        }
    }

    fn sum(&mut self, other: &Self) {
        self.attempts += other.attempts;
        self.refused += other.refused;
        self.limit += other.limit;
        self.escaped += other.escaped;
    }
}

/// One row of the summary table.
#[derive(Debug, Default, serde::Serialize)]
pub(crate) struct Row {
    pub(crate) class: String,
    #[serde(flatten)]
    pub(crate) counts: Counts,
    /// Per mode: its counts, or why the class does not apply there.
    pub(crate) modes: BTreeMap<&'static str, serde_json::Value>,
    #[serde(skip)]
    per_mode: BTreeMap<Mode, Counts>,
}

/// Rows of the summary table, in class order.
pub(crate) fn table(results: &[Judged]) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for r in results {
        let index = match rows.iter().position(|row| row.class == r.class) {
            Some(i) => i,
            None => {
                rows.push(Row {
                    class: r.class.clone(),
                    ..Row::default()
                });
                rows.len() - 1
            }
        };
        let Some(row) = rows.get_mut(index) else {
            continue;
        };
        row.counts.add(r);
        row.per_mode.entry(r.mode).or_default().add(r);
    }
    for row in &mut rows {
        for mode in Mode::ALL {
            let value = match (row.per_mode.get(&mode), not_applicable(&row.class, mode)) {
                (Some(c), _) => serde_json::to_value(c).unwrap_or_default(),
                (None, Some(why)) => serde_json::json!({ "not_applicable": why }),
                (None, None) => serde_json::json!("not run"),
            };
            row.modes.insert(mode.name(), value);
        }
    }
    rows
}

/// The totals over `rows`, with a total per mode.
pub(crate) fn total(rows: &[Row]) -> Row {
    let mut total = Row {
        class: "total".into(),
        ..Row::default()
    };
    for row in rows {
        total.counts.sum(&row.counts);
        for (mode, counts) in &row.per_mode {
            total.per_mode.entry(*mode).or_default().sum(counts);
        }
    }
    for (mode, counts) in &total.per_mode {
        total.modes.insert(
            mode.name(),
            serde_json::to_value(counts).unwrap_or_default(),
        );
    }
    total
}

/// A mode's cell: `refused/limit/escaped`, `n/a`, or `-` (not run).
fn cell(row: &Row, mode: Mode) -> String {
    match (row.per_mode.get(&mode), not_applicable(&row.class, mode)) {
        (Some(c), _) => format!("{}/{}/{}", c.refused, c.limit, c.escaped),
        (None, Some(_)) if row.class != "total" => "n/a".into(),
        _ => "-".into(),
    }
}

/// Prints the table.
pub(crate) fn print(rows: &[Row], total: &Row) {
    let mut header = format!(
        "\n{:<20} {:>8} {:>8} {:>8} {:>8}",
        "class", "attempts", "refused", "limit", "escaped"
    );
    for mode in Mode::ALL {
        header.push_str(&format!(" {:>13}", mode.name()));
    }
    println!("{header}");
    for row in rows.iter().chain([total]) {
        let mut line = format!(
            "{:<20} {:>8} {:>8} {:>8} {:>8}",
            row.class,
            row.counts.attempts,
            row.counts.refused,
            row.counts.limit,
            row.counts.escaped
        );
        for mode in Mode::ALL {
            line.push_str(&format!(" {:>13}", cell(row, mode)));
        }
        println!("{line}");
    }
    println!(
        "\nper mode: refused/limit/escaped; n/a: the class does not apply to the mode (docs/CAMPAIGN.md)"
    );
}

/// Progress on standard error: one line per class, updated in place.
#[derive(Debug)]
pub(crate) struct Progress {
    label: String,
    total: usize,
    done: usize,
    escaped: usize,
    last: Instant,
}

impl Progress {
    pub(crate) fn new(class: &str, mode: Mode, total: usize) -> Self {
        let p = Self {
            label: format!("{class} ({})", mode.name()),
            total,
            done: 0,
            escaped: 0,
            last: Instant::now(),
        };
        p.draw();
        p
    }

    pub(crate) fn step(&mut self, escaped: bool) {
        self.done += 1;
        self.escaped += usize::from(escaped);
        if self.last.elapsed() > Duration::from_millis(200) {
            self.last = Instant::now();
            self.draw();
        }
    }

    fn draw(&self) {
        let width = 24;
        let filled = (self.done * width)
            .checked_div(self.total.max(1))
            .unwrap_or(0)
            .min(width);
        eprint!(
            "\r  {:<36} [{}{}] {:>5}/{:<5} escaped {}",
            self.label,
            "#".repeat(filled),
            ".".repeat(width - filled),
            self.done,
            self.total,
            self.escaped
        );
    }

    pub(crate) fn finish(self) {
        self.draw();
        eprintln!();
    }
}
