//! A log kept in segments: files of bounded size, each holding a run of
//! the log's records, verified together as one log.
//!
//! A segment is a plain evidence file (length-prefixed records). The first
//! segment begins with the log's first record, a session start; every
//! later segment begins with a checkpoint that stores its frontier
//! ([`Record::FrontierCheckpoint`]) and commits to every record before it.
//! Record indexes, the Merkle tree, sessions and checkpoints simply carry
//! on from one segment to the next: the segments of a log, concatenated in
//! order, are the log as it would be in one file. Nothing in a segment
//! names the segment; its place is where its first checkpoint says it
//! begins.
//!
//! [`SegmentedAudit`] verifies segments given one at a time, as one log,
//! and names the segment at fault when one is missing, out of order, given
//! twice or from another log. [`segment_order`] reads only the first record
//! of each, to name such mistakes before anything is verified.

use super::{
    AuditOptions, AuditReport, Event, FrontierStart, LogError, PARALLEL_BYTES, Record, Verifier,
    decode_record, external_checks, fast_then_exact, split_records_prefix,
};
use crate::merkle::{Hash, leaf_hash};
use crate::note::{Checkpoint, SignedNote};

/// Where a segment says it begins, read from its first record alone
/// (nothing is authenticated here: see [`SegmentedAudit`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentHead {
    /// Index of its first record: 0 for a segment that begins with a
    /// session start, the checkpoint's size for one that begins with a
    /// checkpoint.
    pub first: u64,
    /// The origin of the log it belongs to.
    pub origin: String,
    /// The root its first checkpoint commits to (`None` for a segment
    /// that begins with a session start).
    pub root: Option<Hash>,
    /// The leaf hash of its first record.
    pub leaf: Hash,
}

impl SegmentHead {
    /// Reads the head of a segment whose first record is `record` (the
    /// record bytes, without the length prefix).
    pub fn read(record: &[u8]) -> Result<Self, SegmentProblem> {
        let leaf = leaf_hash(record);
        match decode_record(record) {
            Ok(Record::Event(signed)) => match signed.decode_unverified() {
                Ok(Event::SessionStart { origin, .. }) => Ok(Self {
                    first: 0,
                    origin,
                    root: None,
                    leaf,
                }),
                _ => Err(SegmentProblem::NoStart),
            },
            Ok(Record::FrontierCheckpoint { note, .. }) => {
                let checkpoint = SignedNote::parse(&note)
                    .ok()
                    .and_then(|n| Checkpoint::parse_body(&n.body).ok())
                    .ok_or(SegmentProblem::NoStart)?;
                Ok(Self {
                    first: checkpoint.size,
                    origin: checkpoint.origin,
                    root: Some(checkpoint.root),
                    leaf,
                })
            }
            _ => Err(SegmentProblem::NoStart),
        }
    }
}

/// Where a verified segment lies in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentSpan {
    /// Index of its first record.
    pub first: u64,
    /// Records it holds.
    pub records: u64,
}

impl SegmentSpan {
    /// Index of the record after its last.
    pub fn end(&self) -> u64 {
        self.first.saturating_add(self.records)
    }
}

/// What is wrong with a segment of a log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentProblem {
    /// The segment holds no record (or a later one followed an empty
    /// first segment).
    #[error("it holds no record")]
    Empty,
    /// Its first record is neither a session start nor a checkpoint that
    /// stores its frontier, so it is no segment's beginning (or a later
    /// segment begins with a session start).
    #[error(
        "it does not begin as a segment does (with the log's first session start, or with a \
         checkpoint that stores its frontier)"
    )]
    NoStart,
    /// It begins after the end of the segment before it.
    #[error(
        "it begins at record {begins}, but the segments before it end at record {expected}: \
         records {expected} to {last} are missing (a segment was left out)",
        last = begins.saturating_sub(1)
    )]
    Missing {
        /// Where the segments before it end.
        expected: u64,
        /// Where it begins.
        begins: u64,
    },
    /// It begins where an earlier segment given begins, with the same
    /// first record: the same segment, given twice.
    #[error(
        "it begins at record {begins} with the same record as segment {earlier}: it is given twice"
    )]
    Duplicate {
        /// The earlier segment (its position among those given).
        earlier: usize,
        /// Where both begin.
        begins: u64,
    },
    /// It begins before an earlier segment given: the segments are out of
    /// order.
    #[error(
        "it begins at record {begins}, before segment {earlier} given before it (which begins at \
         record {earlier_begins}): the segments are out of order"
    )]
    OutOfOrder {
        /// The earlier segment that begins after it.
        earlier: usize,
        /// Where that one begins.
        earlier_begins: u64,
        /// Where it begins.
        begins: u64,
    },
    /// It begins inside the records of the segments before it.
    #[error(
        "it begins at record {begins}, inside the records of the segments before it (which end \
         at record {expected}): it overlaps them"
    )]
    Overlap {
        /// Where the segments before it end.
        expected: u64,
        /// Where it begins.
        begins: u64,
    },
    /// It belongs to another log.
    #[error("it belongs to another log (origin `{found}`, not `{expected}`)")]
    Foreign {
        /// Its origin.
        found: String,
        /// The origin of the segments before it.
        expected: String,
    },
    /// It begins where expected, but its checkpoint commits to other
    /// records than those before it.
    #[error(
        "its first checkpoint (record {begins}) does not commit to the records before it: it \
         continues another copy of the log (a fork)"
    )]
    Fork {
        /// Where it begins.
        begins: u64,
    },
    /// A record in it is at fault.
    #[error("{0}")]
    Damaged(LogError),
}

/// A segment at fault, by its position among those given (from 0).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("segment {segment}: {problem}")]
pub struct SegmentError {
    /// The segment's position among those given.
    pub segment: usize,
    /// What is wrong with it.
    pub problem: SegmentProblem,
}

impl SegmentError {
    /// The record at fault, when the fault is in one record.
    pub fn record(&self) -> Option<&LogError> {
        match &self.problem {
            SegmentProblem::Damaged(error) => Some(error),
            _ => None,
        }
    }
}

/// Checks the order of segments from their heads alone ([`SegmentHead`],
/// one per segment, in the order given): every segment must belong to the
/// log of the first, and begin after every segment before it. Names the
/// first segment out of place: given twice, out of order, or from another
/// log. A missing segment is found only by [`SegmentedAudit`], which knows
/// where each segment ends.
pub fn segment_order(heads: &[SegmentHead]) -> Result<(), SegmentError> {
    let Some(first) = heads.first() else {
        return Ok(());
    };
    for (segment, head) in heads.iter().enumerate().skip(1) {
        let fail = |problem| Err(SegmentError { segment, problem });
        if head.origin != first.origin {
            return fail(SegmentProblem::Foreign {
                found: head.origin.clone(),
                expected: first.origin.clone(),
            });
        }
        for (earlier, before) in heads.iter().enumerate().take(segment) {
            if before.first == head.first {
                return fail(if before.leaf == head.leaf {
                    SegmentProblem::Duplicate {
                        earlier,
                        begins: head.first,
                    }
                } else {
                    SegmentProblem::Fork { begins: head.first }
                });
            }
            if before.first > head.first {
                return fail(SegmentProblem::OutOfOrder {
                    earlier,
                    earlier_begins: before.first,
                    begins: head.first,
                });
            }
        }
    }
    Ok(())
}

/// Verifies the segments of a log, given one at a time in order, as
/// [`audit`](super::audit) verifies the log in one file: every record, the
/// tree, the checkpoints, the sessions; and, across segments, that each
/// begins exactly where the one before it ends, with a checkpoint of the
/// same log committing to every record before it (which is checked like
/// any checkpoint: signed by its session's key, its size its own index,
/// its root and frontier those of the tree).
///
/// When the first segment given begins with a checkpoint (the log's
/// earlier segments were not given), verification starts there: that
/// checkpoint is authenticated (its note signed by the key it names, or
/// by the expected key if the auditor gave one; its frontier leading to
/// its signed root) and the records before it are not read.
/// [`AuditReport::first_record`] then says where the verification began:
/// what the records before it hold is vouched for only by that signed
/// root.
///
/// Only one segment is held at a time: the caller may read each from its
/// file just before giving it.
pub struct SegmentedAudit<'a> {
    options: &'a AuditOptions<'a>,
    verifier: Option<Verifier<'a>>,
    /// The head and span of every segment verified, in order.
    verified: Vec<(SegmentHead, SegmentSpan)>,
    /// Whether the first segment was empty.
    empty_first: bool,
}

impl std::fmt::Debug for SegmentedAudit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentedAudit")
            .field("segments", &self.verified.len())
            .finish_non_exhaustive()
    }
}

impl<'a> SegmentedAudit<'a> {
    /// An audit with what the auditor trusts besides the log.
    pub fn new(options: &'a AuditOptions<'a>) -> Self {
        Self {
            options,
            verifier: None,
            verified: Vec::new(),
            empty_first: false,
        }
    }

    /// Verifies the next segment, whose bytes are `bytes`, and returns
    /// where it lies in the log. After an error the audit must not go on.
    pub fn push(&mut self, bytes: &[u8]) -> Result<SegmentSpan, SegmentError> {
        let segment = self.verified.len() + usize::from(self.empty_first);
        let fail = |problem| SegmentError { segment, problem };
        if self.empty_first {
            return Err(SegmentError {
                segment: 0,
                problem: SegmentProblem::Empty,
            });
        }
        let (records, framing) = split_records_prefix(bytes);
        let Some(first) = records.first() else {
            if let Some(error) = framing {
                return Err(fail(SegmentProblem::Damaged(LogError {
                    index: self.next_index(),
                    ..error
                })));
            }
            if segment == 0 {
                self.empty_first = true;
                return Ok(SegmentSpan {
                    first: 0,
                    records: 0,
                });
            }
            return Err(fail(SegmentProblem::Empty));
        };
        let head = SegmentHead::read(first);
        let Some(mut verifier) = self.verifier.take() else {
            return self.first_segment(head, first, &records, bytes.len(), framing);
        };
        let head = head.map_err(fail)?;
        let begins = head.first;
        let expected = verifier.report.frontier.size();
        if let Err(problem) = self.place(&verifier, &head, expected) {
            self.verifier = Some(verifier);
            return Err(fail(problem));
        }
        let result = self.verify_records(&mut verifier, &records, bytes.len(), begins);
        if let Err(problem) = result {
            return Err(fail(problem));
        }
        self.finish_segment(verifier, head, records.len(), framing, segment)
    }

    /// Verifies the first segment given, whose first record is `first`
    /// (`head` read from it): from the checkpoint it begins with, or, for
    /// the log's first segment, from its first record, which must be a
    /// session start (the verification says what else it is, as
    /// [`audit`](super::audit) does).
    fn first_segment(
        &mut self,
        head: Result<SegmentHead, SegmentProblem>,
        first: &[u8],
        records: &[&[u8]],
        bytes: usize,
        framing: Option<LogError>,
    ) -> Result<SegmentSpan, SegmentError> {
        let fail = |problem| SegmentError {
            segment: 0,
            problem,
        };
        let (mut verifier, head, rest) = match head {
            Ok(head) if head.first > 0 => {
                let Some(start) = FrontierStart::read(first) else {
                    return Err(fail(SegmentProblem::NoStart));
                };
                let verifier = start
                    .verifier(first, self.options, true)
                    .map_err(|e| fail(SegmentProblem::Damaged(e)))?;
                // The checkpoint is verified: go on after it.
                (verifier, head, records.get(1..).unwrap_or_default())
            }
            head => {
                let verifier = Verifier {
                    options: self.options,
                    report: AuditReport::default(),
                    current: None,
                    keep_leaves: true,
                };
                let head = head.unwrap_or_else(|_| SegmentHead {
                    first: 0,
                    origin: String::new(),
                    root: None,
                    leaf: leaf_hash(first),
                });
                (verifier, head, records)
            }
        };
        let from = verifier.report.frontier.size();
        self.verify_records(&mut verifier, rest, bytes, from)
            .map_err(fail)?;
        self.finish_segment(verifier, head, records.len(), framing, 0)
    }

    /// Whether a segment with `head` can follow the segments verified,
    /// which end at record `expected`.
    fn place(
        &self,
        verifier: &Verifier<'_>,
        head: &SegmentHead,
        expected: u64,
    ) -> Result<(), SegmentProblem> {
        if !verifier.report.origin.is_empty() && head.origin != verifier.report.origin {
            return Err(SegmentProblem::Foreign {
                found: head.origin.clone(),
                expected: verifier.report.origin.clone(),
            });
        }
        if head.first > expected {
            return Err(SegmentProblem::Missing {
                expected,
                begins: head.first,
            });
        }
        if head.first < expected {
            if let Some(earlier) = self
                .verified
                .iter()
                .position(|(before, _)| before.first == head.first && before.leaf == head.leaf)
            {
                return Err(SegmentProblem::Duplicate {
                    earlier,
                    begins: head.first,
                });
            }
            if let Some((earlier, (before, _))) = self
                .verified
                .iter()
                .enumerate()
                .find(|(_, (before, _))| before.first > head.first)
            {
                return Err(SegmentProblem::OutOfOrder {
                    earlier,
                    earlier_begins: before.first,
                    begins: head.first,
                });
            }
            return Err(SegmentProblem::Overlap {
                expected,
                begins: head.first,
            });
        }
        // A later segment begins with a checkpoint: a session start here
        // would begin another log.
        match head.root {
            None => Err(SegmentProblem::NoStart),
            Some(root) if root != verifier.report.frontier.root() => {
                Err(SegmentProblem::Fork { begins: head.first })
            }
            Some(_) => Ok(()),
        }
    }

    /// Verifies `records` (the segment's, from record `first` on) with
    /// `verifier`, in signature batches, and again one signature at a time
    /// if anything fails, for the exact first fault.
    fn verify_records(
        &self,
        verifier: &mut Verifier<'_>,
        records: &[&[u8]],
        bytes: usize,
        first: u64,
    ) -> Result<(), SegmentProblem> {
        debug_assert_eq!(verifier.report.frontier.size(), first);
        let mark = verifier.mark();
        fast_then_exact(bytes >= PARALLEL_BYTES, |signatures| {
            verifier.restore(&mark);
            records
                .iter()
                .try_for_each(|body| verifier.record(body, signatures))
        })
        .map_err(SegmentProblem::Damaged)
    }

    fn finish_segment(
        &mut self,
        verifier: Verifier<'a>,
        head: SegmentHead,
        records: usize,
        framing: Option<LogError>,
        segment: usize,
    ) -> Result<SegmentSpan, SegmentError> {
        let span = SegmentSpan {
            first: head.first,
            records: u64::try_from(records).unwrap_or(u64::MAX),
        };
        if let Some(error) = framing {
            return Err(SegmentError {
                segment,
                problem: SegmentProblem::Damaged(LogError {
                    index: error.index.saturating_add(span.first),
                    ..error
                }),
            });
        }
        self.verifier = Some(verifier);
        self.verified.push((head, span));
        Ok(span)
    }

    /// The index of the record after the last one verified.
    fn next_index(&self) -> u64 {
        self.verifier
            .as_ref()
            .map_or(0, |v| v.report.frontier.size())
    }

    /// Where each segment verified lies.
    pub fn spans(&self) -> Vec<SegmentSpan> {
        self.verified.iter().map(|(_, span)| *span).collect()
    }

    /// The report of the whole log, after the checks against the trusted
    /// checkpoint and the witness's co-signatures (a fault there names the
    /// last segment).
    pub fn finish(self) -> Result<AuditReport, SegmentError> {
        let last = self.verified.len().saturating_sub(1);
        let report = match self.verifier {
            Some(verifier) => verifier.finish(),
            None => AuditReport::default(),
        };
        external_checks(report, self.options).map_err(|error| SegmentError {
            segment: last,
            problem: SegmentProblem::Damaged(error),
        })
    }
}
