//! `kernel-enforcer audit ...`: verify, inspect, prove and witness
//! evidence files with public keys only (the witness with its own key).

use crate::session::keys;
use kernel_core::merkle::inclusion_proof;
use kernel_core::note::{Checkpoint, SignedNote};
use kernel_core::{
    AuditOptions, AuditReport, EncodedRequest, Event, MAX_RECORD_BYTES, RECORD_TAG, Record,
    SegmentError, SegmentHead, SegmentProblem, SegmentSpan, SegmentedAudit, VerifyingKey,
    WitnessCheck, decode_receipt_body_unverified, decode_record, format_public_key,
    parse_public_key, segment_order, split_records_prefix,
};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Default key name of the witness.
pub(crate) const DEFAULT_WITNESS_NAME: &str = "agent-kernel-witness";

/// Where co-signed checkpoints of `log` are kept unless told otherwise:
/// beside it, with `.cosignatures` appended to its name.
pub(crate) fn default_cosignatures(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".cosignatures");
    PathBuf::from(name)
}

/// Reads a public key given as `ed25519:...` or as a file holding that.
pub(crate) fn read_public_key(text: &str) -> Result<VerifyingKey, String> {
    let text = if Path::new(text).is_file() {
        std::fs::read_to_string(text).map_err(|e| format!("`{text}`: {e}"))?
    } else {
        text.to_owned()
    };
    parse_public_key(&text).map_err(|e| e.to_string())
}

/// Reads co-signed checkpoints: JSON lines of `{"note": "..."}`.
pub(crate) fn read_cosignatures(path: &Path) -> Result<Vec<SignedNote>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("`{}`: {e}", path.display())),
    };
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(n, line)| {
            let value: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| format!("`{}` line {}: {e}", path.display(), n + 1))?;
            let note = value
                .get("note")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| format!("`{}` line {}: no `note`", path.display(), n + 1))?;
            SignedNote::parse(note).map_err(|e| format!("`{}` line {}: {e}", path.display(), n + 1))
        })
        .collect()
}

fn read_log(log: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(log).map_err(|e| format!("`{}`: {e}", log.display()))?;
    if !begins_like_evidence(&bytes) {
        return Err(not_evidence(log));
    }
    Ok(bytes)
}

fn not_evidence(log: &Path) -> String {
    format!(
        "`{}` is not an evidence file: it does not begin with an evidence record (a length and \
         `{}`)",
        log.display(),
        String::from_utf8_lossy(RECORD_TAG).trim_end()
    )
}

/// Whether `bytes` can be the start of an evidence file: empty, or a
/// record length within the limit followed by the record tag (as much of
/// it as there is, so that a log torn inside its first record is still
/// reported as torn). Anything else, such as a policy or a text file read
/// as a length, is not evidence at all.
fn begins_like_evidence(bytes: &[u8]) -> bool {
    let Some((length, body)) = bytes.split_first_chunk::<4>() else {
        return true;
    };
    let length = usize::try_from(u32::from_be_bytes(*length)).unwrap_or(usize::MAX);
    let seen = body.len().min(RECORD_TAG.len());
    (RECORD_TAG.len()..=MAX_RECORD_BYTES).contains(&length)
        && body.get(..seen) == RECORD_TAG.get(..seen)
}

/// One evidence log, as the `audit` commands take it.
#[derive(Debug, clap::Args)]
pub(crate) struct LogArgs {
    /// The evidence log: its file, with the closed segments kept beside it
    /// in `LOG.segments/` (read oldest first, then LOG); or several
    /// segment files, in order, checked as one log.
    #[arg(value_name = "LOG", required = true)]
    pub(crate) files: Vec<PathBuf>,
    /// Read only the files given, not the closed segments beside a single
    /// LOG (to check the newest segment alone, say).
    #[arg(long)]
    pub(crate) only: bool,
}

impl LogArgs {
    /// The log's segment files, oldest first.
    pub(crate) fn segments(&self) -> Result<Vec<PathBuf>, String> {
        segment_files(&self.files, self.only)
    }

    /// The file the log's companion files are named after: the last one
    /// given (LOG, or the newest segment).
    pub(crate) fn base(&self) -> &Path {
        self.files.last().map_or(Path::new(""), PathBuf::as_path)
    }
}

/// The segment files of the log given as `files`: one file with closed
/// segments beside it (unless `only`) is its closed segments, oldest
/// first, then itself; otherwise the files as given.
pub(crate) fn segment_files(files: &[PathBuf], only: bool) -> Result<Vec<PathBuf>, String> {
    match files {
        [log] if !only => {
            let mut all: Vec<PathBuf> = crate::session::evidence_segments::closed_segments(log)
                .map_err(|e| {
                    format!(
                        "`{}`: {e}",
                        crate::session::evidence_segments::directory_for(log).display()
                    )
                })?
                .into_iter()
                .map(|closed| closed.path)
                .collect();
            all.push(log.clone());
            Ok(all)
        }
        _ => Ok(files.to_vec()),
    }
}

/// A log verified segment by segment.
pub(crate) struct Verified {
    /// What the log holds.
    pub(crate) report: AuditReport,
    /// Each file and where its records lie in the log.
    pub(crate) segments: Vec<(PathBuf, SegmentSpan)>,
}

/// Verifies the segment files `files` (oldest first) as one log, reading
/// one file at a time; `each` sees every file's bytes once they verified
/// (the same bytes). Out-of-place segments (given twice, out of order,
/// from another log) are named from their first records before anything
/// else is read.
pub(crate) fn verify_files(
    files: &[PathBuf],
    options: &AuditOptions<'_>,
    mut each: impl FnMut(&Path, &[u8]),
) -> Result<Verified, VerifyFailure> {
    let mut heads = Vec::new();
    for file in files {
        match read_head(file)? {
            Some(head) => heads.push(head),
            // An empty or torn file: the verification names it.
            None => break,
        }
    }
    if heads.len() == files.len() {
        segment_order(&heads).map_err(|e| VerifyFailure::Segment(e, files.to_vec()))?;
    }
    let mut audit = SegmentedAudit::new(options);
    let mut segments = Vec::new();
    for file in files {
        let bytes = read_log(file)?;
        let span = audit
            .push(&bytes)
            .map_err(|e| VerifyFailure::Segment(e, files.to_vec()))?;
        each(file, &bytes);
        segments.push((file.clone(), span));
    }
    let report = audit
        .finish()
        .map_err(|e| VerifyFailure::Segment(e, files.to_vec()))?;
    Ok(Verified { report, segments })
}

/// Where the segment `file` says it begins, from its first record alone;
/// `None` for a file that is empty, ends inside its first record, or does
/// not begin as a segment does.
fn read_head(file: &Path) -> Result<Option<SegmentHead>, String> {
    use std::io::Read as _;
    let mut opened = std::fs::File::open(file).map_err(|e| format!("`{}`: {e}", file.display()))?;
    let mut prefix = [0u8; 4];
    if opened.read_exact(&mut prefix).is_err() {
        return Ok(None);
    }
    let length = usize::try_from(u32::from_be_bytes(prefix)).unwrap_or(usize::MAX);
    if length > MAX_RECORD_BYTES {
        return Err(not_evidence(file));
    }
    let mut record = vec![0u8; length];
    if opened.read_exact(&mut record).is_err() {
        return Ok(None);
    }
    if !record.starts_with(RECORD_TAG) {
        return Err(not_evidence(file));
    }
    // A first record that begins no segment: the verification names it.
    Ok(SegmentHead::read(&record).ok())
}

/// Options of `audit verify`.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// The enforcer's public key (`ed25519:...` or a file holding it).
    /// Without it, each session's self-declared key is used.
    #[arg(long)]
    pub(crate) kernel_key: Option<String>,
    /// The witness's public key: its co-signatures must verify and match
    /// the log (which catches truncation and rewrites).
    #[arg(long)]
    pub(crate) witness_key: Option<String>,
    /// The witness's key name (with `--witness-key`).
    #[arg(long, default_value = DEFAULT_WITNESS_NAME, requires = "witness_key")]
    pub(crate) witness_name: String,
    /// Co-signed checkpoints (default: LOG.cosignatures; with
    /// `--witness-key`).
    #[arg(long, requires = "witness_key")]
    pub(crate) cosignatures: Option<PathBuf>,
    /// A checkpoint note obtained earlier: the log must extend it.
    #[arg(long)]
    pub(crate) trusted_checkpoint: Option<PathBuf>,
    /// Print one JSON document instead of text (see docs/EVIDENCE.md);
    /// the exit status is the same.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) log: LogArgs,
}

/// `audit verify`: exit 0 when sound, an error naming the first faulty
/// record (and, for a log in segments, its file) otherwise; with
/// `--json`, the same as one JSON document on standard output, whatever
/// the outcome.
pub(crate) fn verify(args: &VerifyArgs) -> Result<(), String> {
    let outcome = verify_log(args);
    if args.json {
        let document = match &outcome {
            Ok(verified) => report_json(verified, args.kernel_key.is_some()),
            Err(failure) => {
                let (index, problem) = match failure.record() {
                    Some(e) => (Some(e.index), Some(e.problem.to_string())),
                    None => (None, None),
                };
                serde_json::json!({
                    "ok": false,
                    "error": failure.to_string(),
                    "index": index,
                    "problem": problem,
                    "segment": failure.segment(),
                })
            }
        };
        println!("{document}");
    } else if let Ok(verified) = &outcome {
        print_summary(&verified.report);
        print_segments(verified);
        if args.kernel_key.is_none() {
            println!(
                "note: no --kernel-key given; signatures were checked against each session's own key"
            );
        }
    }
    outcome.map(|_| ()).map_err(|failure| failure.to_string())
}

/// Why a log could not be verified: it is unsound, or it could not be
/// checked at all.
pub(crate) enum VerifyFailure {
    /// A segment (a record in it, or its place among the others) is at
    /// fault; the files are those given, oldest first.
    Segment(SegmentError, Vec<PathBuf>),
    /// Anything else: a file that cannot be read, or is no evidence.
    Other(String),
}

impl From<String> for VerifyFailure {
    fn from(message: String) -> Self {
        Self::Other(message)
    }
}

impl VerifyFailure {
    /// The record at fault, if the fault is in one.
    fn record(&self) -> Option<&kernel_core::LogError> {
        match self {
            Self::Segment(error, _) => error.record(),
            Self::Other(_) => None,
        }
    }

    /// The file at fault, if any.
    fn segment(&self) -> Option<String> {
        match self {
            Self::Segment(error, files) => files
                .get(error.segment)
                .map(|file| file.display().to_string()),
            Self::Other(_) => None,
        }
    }
}

impl std::fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Segment(error, files) => {
                let name = |i: usize| {
                    files
                        .get(i)
                        .map_or_else(|| format!("segment {i}"), |p| format!("`{}`", p.display()))
                };
                let file = name(error.segment);
                match &error.problem {
                    // One file: the fault in its record, as ever.
                    SegmentProblem::Damaged(e) if files.len() == 1 => {
                        write!(f, "evidence is not sound: {e}")
                    }
                    SegmentProblem::Damaged(e) => {
                        write!(f, "evidence is not sound: segment {file}: {e}")
                    }
                    SegmentProblem::Missing { expected, begins } => write!(
                        f,
                        "evidence is not sound: segment {file} begins at record {begins}, but {} \
                         ends at record {expected}: records {expected} to {} are missing (a \
                         segment was left out, or lost)",
                        name(error.segment.saturating_sub(1)),
                        begins.saturating_sub(1)
                    ),
                    SegmentProblem::Duplicate { earlier, begins } => write!(
                        f,
                        "evidence is not sound: segment {file} is the same segment as {} (both \
                         begin at record {begins}): it is given twice",
                        name(*earlier)
                    ),
                    SegmentProblem::OutOfOrder {
                        earlier,
                        earlier_begins,
                        begins,
                    } => write!(
                        f,
                        "evidence is not sound: segment {file} begins at record {begins}, before \
                         {} given before it (which begins at record {earlier_begins}): the \
                         segments are out of order",
                        name(*earlier)
                    ),
                    problem => write!(f, "evidence is not sound: segment {file}: {problem}"),
                }
            }
            Self::Other(message) => f.write_str(message),
        }
    }
}

/// The facts of `print_summary` as JSON; `kernel_key_given`: whether
/// signatures were checked against a key the auditor gave.
fn report_json(verified: &Verified, kernel_key_given: bool) -> serde_json::Value {
    let report = &verified.report;
    serde_json::json!({
        "ok": true,
        "records": report.records,
        "sessions": report.sessions,
        "allowed": report.allowed,
        "denied": report.denied,
        "asked": report.asked,
        "shadow_sessions": report.shadow_sessions,
        "shadow_denied": report.shadow_denied,
        "shadow_asked": report.shadow_asked,
        "events": report.events,
        "checkpoints": report.checkpoints.len(),
        "newest_checkpoint": report.newest_checkpoint().map(|checkpoint| serde_json::json!({
            "size": checkpoint.size,
            "root": kernel_core::hex(&checkpoint.root),
        })),
        "uncovered": report.uncovered,
        "witnessed": report.witnessed,
        "kernel_key_given": kernel_key_given,
        "first_record": report.first_record,
        "segments": verified.segments.iter().map(|(file, span)| serde_json::json!({
            "file": file.display().to_string(),
            "first": span.first,
            "records": span.records,
        })).collect::<Vec<_>>(),
    })
}

/// What the auditor brought besides the log, read from the arguments.
struct Trusted {
    kernel_key: Option<VerifyingKey>,
    witness_key: Option<VerifyingKey>,
    trusted: Option<SignedNote>,
    cosignatures: Vec<SignedNote>,
}

fn verify_log(args: &VerifyArgs) -> Result<Verified, VerifyFailure> {
    let kernel_key = args
        .kernel_key
        .as_deref()
        .map(read_public_key)
        .transpose()?;
    let witness_key = args
        .witness_key
        .as_deref()
        .map(read_public_key)
        .transpose()?;
    let trusted = args
        .trusted_checkpoint
        .as_deref()
        .map(|path| {
            std::fs::read_to_string(path)
                .map_err(|e| format!("`{}`: {e}", path.display()))
                .and_then(|text| SignedNote::parse(&text).map_err(|e| e.to_string()))
        })
        .transpose()?;
    let cosignatures = match &witness_key {
        Some(_) => read_cosignatures(
            &args
                .cosignatures
                .clone()
                .unwrap_or_else(|| default_cosignatures(args.log.base())),
        )?,
        None => Vec::new(),
    };
    let given = Trusted {
        kernel_key,
        witness_key,
        trusted,
        cosignatures,
    };
    let options = AuditOptions {
        kernel_key: given.kernel_key.as_ref(),
        trusted: given.trusted.as_ref(),
        witness: given.witness_key.as_ref().map(|key| WitnessCheck {
            name: &args.witness_name,
            key,
            notes: &given.cosignatures,
        }),
    };
    verify_files(&args.log.segments()?, &options, |_, _| {})
}

/// For a log in several files: where each lies, and, when the first file
/// is not the log's first segment, what was not checked.
fn print_segments(verified: &Verified) {
    if verified.segments.len() > 1 {
        println!("segments: {} files, oldest first", verified.segments.len());
        for (file, span) in &verified.segments {
            println!(
                "  `{}`: records {} to {}",
                file.display(),
                span.first,
                span.end().saturating_sub(1)
            );
        }
    }
    let first = verified.report.first_record;
    if first > 0 {
        println!(
            "verified from record {first} on (the checkpoint the first file given begins with); \
             records 0 to {} are in earlier segments that were not given, so they were not \
             checked: they are vouched for only by that signed checkpoint. To check them, give \
             every segment from the log's first",
            first.saturating_sub(1)
        );
    }
}

fn print_summary(report: &AuditReport) {
    println!(
        "ok: {} records ({} sessions, {} allowed, {} denied, {} asked, {} events, {} checkpoints)",
        report.records,
        report.sessions,
        report.allowed,
        report.denied,
        report.asked,
        report.events,
        report.checkpoints.len()
    );
    if report.shadow_sessions > 0 || report.shadowed() > 0 {
        println!(
            "shadow mode: {} sessions; {} actions proceeded that the policy did not allow \
             ({} denied, {} asked about)",
            report.shadow_sessions,
            report.shadowed(),
            report.shadow_denied,
            report.shadow_asked
        );
    }
    if let Some(checkpoint) = report.newest_checkpoint() {
        println!(
            "newest checkpoint: size {}, root {}",
            checkpoint.size,
            kernel_core::hex(&checkpoint.root)
        );
    }
    if report.uncovered > 0 {
        println!(
            "{} records after the newest checkpoint are covered by their own signatures only",
            report.uncovered
        );
    }
    if report.witnessed > 0 {
        println!(
            "witness: {} co-signed checkpoints match this log",
            report.witnessed
        );
    }
}

/// One record, readable: a table row and a JSON object.
struct Described {
    kind: &'static str,
    decision: &'static str,
    details: String,
    json: serde_json::Value,
}

fn describe(record: &Record) -> Described {
    use serde_json::json;
    match record {
        Record::Decision { request, receipt } => {
            let action = EncodedRequest::decode(request)
                .map(|r| kernel_policy::describe::action(r.request().action.action()))
                .unwrap_or_else(|e| format!("<undecodable request: {e}>"));
            // Display only: `audit verify` is what authenticates.
            match decode_receipt_body_unverified(&receipt.body) {
                Ok(body) => Described {
                    kind: "decision",
                    decision: body.decision.as_str(),
                    details: format!("{action}  [{}]", body.policies.join(", ")),
                    json: json!({
                        "kind": "decision",
                        "decision": body.decision.as_str(),
                        "seq": body.seq,
                        "action": action,
                        "policies": body.policies,
                        "reasons": body.reasons,
                        "issued_at_ms": body.issued_at_ms,
                    }),
                },
                Err(e) => Described {
                    kind: "decision",
                    decision: "",
                    details: format!("<undecodable receipt: {e}>"),
                    json: json!({"kind": "decision", "error": e.to_string()}),
                },
            }
        }
        Record::Event(signed) => {
            let (kind, details, json) = match signed.decode_unverified() {
                Ok(Event::SessionStart {
                    session,
                    public_key,
                    policy_digest,
                    workspace,
                    confinement,
                    origin,
                    at_ms,
                }) => {
                    let key = kernel_core::public_key_from_bytes(&public_key)
                        .map(|k| format_public_key(&k))
                        .unwrap_or_else(|_| "<invalid>".into());
                    (
                        "session_start",
                        format!(
                            "session {session} key {key} policy {policy_digest} confinement {}",
                            confinement.as_str()
                        ),
                        json!({
                            "kind": "session_start",
                            "session": session.to_string(),
                            "key": key,
                            "policy_digest": policy_digest.to_hex(),
                            "workspace": workspace,
                            "confinement": confinement.as_str(),
                            "origin": origin,
                            "at_ms": at_ms,
                        }),
                    )
                }
                Ok(Event::PolicyLoad {
                    policy_digest,
                    by,
                    at_ms,
                    ..
                }) => (
                    "policy_load",
                    format!("policy {policy_digest} by {by}"),
                    json!({"kind": "policy_load", "policy_digest": policy_digest.to_hex(), "by": by, "at_ms": at_ms}),
                ),
                Ok(Event::Approval {
                    request_digest,
                    approved,
                    by,
                    scope,
                    at_ms,
                    ..
                }) => (
                    "approval",
                    format!(
                        "{} request {request_digest} by {by} {scope}",
                        if approved { "approved" } else { "rejected" }
                    ),
                    json!({"kind": "approval", "request_digest": request_digest.to_hex(), "approved": approved, "by": by, "scope": scope, "at_ms": at_ms}),
                ),
                Ok(Event::EvidenceWindow {
                    window_ms, at_ms, ..
                }) => (
                    "evidence_window",
                    format!("records durable within {window_ms} ms of their decision"),
                    json!({"kind": "evidence_window", "window_ms": window_ms, "at_ms": at_ms}),
                ),
                Ok(Event::Halt {
                    cause, by, at_ms, ..
                }) => (
                    "halt",
                    format!("{cause} (by {by})"),
                    json!({"kind": "halt", "cause": cause, "by": by, "at_ms": at_ms}),
                ),
                Ok(Event::Shadow { at_ms, .. }) => (
                    "shadow",
                    "shadow mode: actions the policy denies or asks about proceed (not the floor's)"
                        .to_owned(),
                    json!({"kind": "shadow", "at_ms": at_ms}),
                ),
                Err(e) => (
                    "event",
                    format!("<undecodable event: {e}>"),
                    json!({"kind": "event", "error": e.to_string()}),
                ),
            };
            Described {
                kind,
                decision: "",
                details,
                json,
            }
        }
        Record::Checkpoint { note } | Record::FrontierCheckpoint { note, .. } => {
            match SignedNote::parse(note)
                .ok()
                .and_then(|n| Checkpoint::parse_body(&n.body).ok())
            {
                Some(checkpoint) => Described {
                    kind: "checkpoint",
                    decision: "",
                    details: format!(
                        "size {} root {}{}",
                        checkpoint.size,
                        kernel_core::hex(&checkpoint.root),
                        if matches!(record, Record::FrontierCheckpoint { .. }) {
                            " (frontier stored)"
                        } else {
                            ""
                        }
                    ),
                    json: json!({
                        "kind": "checkpoint",
                        "size": checkpoint.size,
                        "root": kernel_core::hex(&checkpoint.root),
                        "frontier_stored": matches!(record, Record::FrontierCheckpoint { .. }),
                    }),
                },
                None => Described {
                    kind: "checkpoint",
                    decision: "",
                    details: "<malformed note>".into(),
                    json: json!({"kind": "checkpoint", "error": "malformed note"}),
                },
            }
        }
    }
}

/// `audit inspect`: every record, readably (a table, or JSON lines),
/// numbered by its index in the log. For a log in several files, each
/// file's records follow a line naming it (a `segment` field in JSON
/// lines). Shows the records before a torn tail, then fails.
pub(crate) fn inspect(log: &LogArgs, json: bool) -> Result<(), String> {
    let files = log.segments()?;
    let mut out = std::io::stdout().lock();
    if !json {
        let _ = writeln!(
            out,
            "{:<6} {:<14} {:<8} details",
            "index", "kind", "decision"
        );
    }
    // Whether the session of the record being shown runs in shadow mode.
    let mut shadow = false;
    for file in &files {
        let bytes = read_log(file)?;
        let (records, torn) = split_records_prefix(&bytes);
        // Display only: where the file says it begins.
        let first = records
            .first()
            .and_then(|record| SegmentHead::read(record).ok())
            .map_or(0, |head| head.first);
        let segment = (files.len() > 1).then(|| file.display().to_string());
        if let Some(name) = &segment
            && !json
        {
            let _ = writeln!(out, "# segment `{name}` (from record {first})");
        }
        for (position, body) in records.iter().enumerate() {
            let index = first.saturating_add(u64::try_from(position).unwrap_or(u64::MAX));
            let described = match decode_record(body) {
                Ok(record) => {
                    if let Record::Event(signed) = &record {
                        match signed.decode_unverified() {
                            Ok(Event::SessionStart { .. }) => shadow = false,
                            Ok(Event::Shadow { .. }) => shadow = true,
                            _ => {}
                        }
                    }
                    let mut described = describe(&record);
                    if shadow && let serde_json::Value::Object(fields) = &mut described.json {
                        fields.insert("shadow_session".into(), serde_json::Value::Bool(true));
                    }
                    described
                }
                Err(e) => Described {
                    kind: "undecodable",
                    decision: "",
                    details: e.to_string(),
                    json: serde_json::json!({"kind": "undecodable", "error": e.to_string()}),
                },
            };
            if json {
                let mut object = serde_json::Map::new();
                object.insert("index".into(), serde_json::json!(index));
                if let Some(name) = &segment {
                    object.insert("segment".into(), serde_json::json!(name));
                }
                if let serde_json::Value::Object(fields) = described.json {
                    object.extend(fields);
                }
                let _ = writeln!(out, "{}", serde_json::Value::Object(object));
            } else {
                let _ = writeln!(
                    out,
                    "{index:<6} {:<14} {:<8} {}",
                    described.kind, described.decision, described.details
                );
            }
        }
        if let Some(torn) = torn {
            return Err(format!("`{}` ends inside a record: {torn}", file.display()));
        }
    }
    Ok(())
}

/// `audit prove`: an inclusion proof for record `index` against the newest
/// checkpoint, as JSON, verifiable with `kernel_core::merkle` alone. A log
/// in segments is verified whole: the proof needs every record.
pub(crate) fn prove(log: &LogArgs, index: u64) -> Result<(), String> {
    let verified = verify_files(&log.segments()?, &AuditOptions::default(), |_, _| {})
        .map_err(|e| e.to_string())?;
    let report = &verified.report;
    if !report.is_complete() {
        return Err(format!(
            "the first file given begins at record {}: a proof needs every record, so give every \
             segment from the log's first",
            report.first_record
        ));
    }
    let checkpoint = report
        .newest_checkpoint()
        .ok_or("the log has no checkpoint yet")?;
    if index >= checkpoint.size {
        return Err(format!(
            "record {index} is not covered by the newest checkpoint (size {})",
            checkpoint.size
        ));
    }
    let covered = report
        .leaves
        .get(..usize::try_from(checkpoint.size).unwrap_or(usize::MAX))
        .ok_or("checkpoint larger than the log")?;
    let proof = inclusion_proof(covered, index).map_err(|e| e.to_string())?;
    let note = report
        .newest_note
        .clone()
        .ok_or("newest checkpoint record not found")?;
    let leaf = report
        .leaves
        .get(usize::try_from(index).unwrap_or(usize::MAX))
        .ok_or("no such record")?;
    let value = serde_json::json!({
        "index": index,
        "tree_size": checkpoint.size,
        "leaf_hash": kernel_core::hex(leaf),
        "proof": proof.iter().map(|h| kernel_core::hex(h)).collect::<Vec<_>>(),
        "root": kernel_core::hex(&checkpoint.root),
        "checkpoint": note,
    });
    println!("{value}");
    Ok(())
}

/// Options of `audit witness`.
#[derive(Debug, clap::Args)]
pub(crate) struct WitnessArgs {
    /// The witness's private key (PKCS#8 PEM, mode 0600, from `keygen`).
    #[arg(long)]
    pub(crate) key: PathBuf,
    /// The witness's state file (the last co-signed checkpoint).
    #[arg(long)]
    pub(crate) state: PathBuf,
    /// The witness's record: every checkpoint it co-signed, appended and
    /// synced before the co-signature is released (default: STATE.record).
    /// Keep it where the log's writer cannot rewrite it.
    #[arg(long)]
    pub(crate) record: Option<PathBuf>,
    /// When a state file exists but no record does yet (a witness that ran
    /// before it kept one), trust the state's checkpoint as the newest
    /// this witness co-signed and start the record from it.
    #[arg(long)]
    pub(crate) adopt_state: bool,
    /// The witness's key name.
    #[arg(long, default_value = DEFAULT_WITNESS_NAME)]
    pub(crate) name: String,
    /// Pin the enforcer's public key.
    #[arg(long)]
    pub(crate) kernel_key: Option<String>,
    /// Where to append the co-signed checkpoint (default:
    /// LOG.cosignatures).
    #[arg(long)]
    pub(crate) cosignatures: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) log: LogArgs,
}

/// Where the witness keeps its record unless told otherwise: beside its
/// state, with `.record` appended to its name.
fn default_record(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".record");
    PathBuf::from(name)
}

/// `audit witness`: verify the log up to its newest checkpoint, check that
/// it extends the newest checkpoint this witness ever co-signed (by its
/// record, refusing forks and rewrites), record the co-signature, then
/// release it.
pub(crate) fn witness(args: &WitnessArgs) -> Result<(), String> {
    let key = keys::load_private(&args.key).map_err(|e| e.to_string())?;
    let kernel_key = args
        .kernel_key
        .as_deref()
        .map(read_public_key)
        .transpose()?;
    let record_path = args
        .record
        .clone()
        .unwrap_or_else(|| default_record(&args.state));
    let mut record = WitnessRecord::open(&record_path, &args.name, &key.verifying_key())
        .map_err(|e| e.to_string())?;
    let remembered = remembered_checkpoint(
        &mut record,
        read_state(&args.state)?,
        &args.state,
        args.adopt_state,
        &args.name,
        &key,
    )
    .map_err(|e| e.to_string())?;
    let options = AuditOptions {
        kernel_key: kernel_key.as_ref(),
        ..AuditOptions::default()
    };
    let verified = verify_files(&args.log.segments()?, &options, |_, _| {})
        .map_err(|e| format!("refusing to co-sign, {e}"))?;
    let report = &verified.report;
    let newest = report
        .newest_checkpoint()
        .ok_or("refusing to co-sign: the log has no checkpoint yet")?;
    match &remembered {
        Some(previous) => check_extends(previous, newest, report)?,
        // A first co-signature vouches for the whole log.
        None if !report.is_complete() => {
            return Err(format!(
                "refusing to co-sign: this witness has co-signed nothing of this log yet, and the \
                 first file given begins at record {}: give every segment from the log's first",
                report.first_record
            ));
        }
        None => {}
    }
    let note = report
        .newest_note
        .clone()
        .ok_or("newest checkpoint record not found")?;
    let mut note = SignedNote::parse(&note).map_err(|e| e.to_string())?;
    note.signatures.retain(|s| s.name != args.name);
    note.cosign(&args.name, &key, now_secs());
    // Remembered before it is released: a co-signature this witness
    // gives out is always one its record holds.
    record.append(&note).map_err(|e| e.to_string())?;
    write_state(&args.state, newest)?;
    let cosignatures = args
        .cosignatures
        .clone()
        .unwrap_or_else(|| default_cosignatures(args.log.base()));
    append_note(&cosignatures, &note)?;
    println!(
        "co-signed checkpoint: size {}, root {} ({})",
        newest.size,
        kernel_core::hex(&newest.root),
        cosignatures.display()
    );
    println!("witness key: {}", format_public_key(&key.verifying_key()));
    Ok(())
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Refuses `newest` unless it is `previous` or a consistent extension of
/// it: same origin, same or larger size, and the root of the log's first
/// `previous.size` records, recomputed from the records verified in
/// `report`, is `previous.root`. (The root of the newest checkpoint's
/// records was checked by the verification.) When the verification began
/// at a later segment, `previous` must lie within what it read.
fn check_extends(
    previous: &Checkpoint,
    newest: &Checkpoint,
    report: &AuditReport,
) -> Result<(), String> {
    if previous.origin != newest.origin {
        return Err(format!(
            "refusing to co-sign: this witness follows origin `{}`, the log is `{}`",
            previous.origin, newest.origin
        ));
    }
    if previous.size > newest.size {
        return Err(format!(
            "refusing to co-sign: the log's newest checkpoint (size {}) is older than the one already co-signed (size {}): it was truncated or rolled back",
            newest.size, previous.size
        ));
    }
    if previous.size < report.first_record {
        return Err(format!(
            "refusing to co-sign: the checkpoint co-signed before (size {}) lies in segments that \
             were not given (the first file given begins at record {}): give the segments from \
             the one holding record {} on",
            previous.size,
            report.first_record,
            previous.size.saturating_sub(1)
        ));
    }
    if report.root_at(previous.size) != Some(previous.root) {
        return Err(format!(
            "refusing to co-sign: the log does not extend the checkpoint co-signed before (size {}): fork or rewrite",
            previous.size
        ));
    }
    Ok(())
}

/// Why the witness refuses to co-sign, by what its record and its state
/// say it co-signed before.
#[derive(Debug, thiserror::Error)]
enum RememberedError {
    /// `--adopt-state` given, but the record already holds co-signatures.
    #[error(
        "the witness record `{}` already holds what this witness co-signed: \
         --adopt-state is only for a witness that has no record yet",
        .record.display()
    )]
    AdoptOverRecord { record: PathBuf },
    /// The state names an older checkpoint than the record's newest.
    #[error(
        "refusing to co-sign: the witness state `{}` (size {state_size}) is older than \
         the newest checkpoint this witness co-signed (size {newest_size}, in its record \
         `{}`): the state was rolled back, or the witness stopped between \
         writing its record and its state. Find out which; the record is what counts, so \
         removing the state file lets the witness write it again from the record",
        .state.display(),
        .record.display()
    )]
    StateRolledBack {
        state: PathBuf,
        state_size: u64,
        newest_size: u64,
        record: PathBuf,
    },
    /// The state names a checkpoint the record does not hold.
    #[error(
        "refusing to co-sign: the witness state `{}` (size {state_size}) names a \
         checkpoint this witness never co-signed by its record `{}` (newest: \
         size {newest_size}): the state or the record was replaced. Find out which before going on",
        .state.display(),
        .record.display()
    )]
    NeverCosigned {
        state: PathBuf,
        state_size: u64,
        newest_size: u64,
        record: PathBuf,
    },
    /// A state, but no record, and no `--adopt-state`.
    #[error(
        "refusing to co-sign: the witness state `{}` (size {state_size}) exists but its \
         record `{}` is missing or empty, so the witness cannot tell what it \
         co-signed before: the record was lost, or this witness ran before it kept one. \
         Pass --adopt-state to start the record from the state, only if you know the state \
         is the newest checkpoint this witness co-signed",
        .state.display(),
        .record.display()
    )]
    NoRecord {
        state: PathBuf,
        state_size: u64,
        record: PathBuf,
    },
    /// `--adopt-state` given, but there is no state.
    #[error("--adopt-state: there is no witness state `{}` to adopt", .state.display())]
    NothingToAdopt { state: PathBuf },
    /// Starting the record from the adopted state failed.
    #[error(transparent)]
    Record(#[from] WitnessRecordError),
}

/// The newest checkpoint this witness co-signed, by its record, after
/// checking that the state file agrees with it. The record decides; the
/// state must name the same checkpoint or be absent (it is then written
/// again from the record). A state without a record is adopted only when
/// the operator says so.
fn remembered_checkpoint(
    record: &mut WitnessRecord,
    state: Option<Checkpoint>,
    state_path: &Path,
    adopt_state: bool,
    name: &str,
    key: &ed25519_dalek::SigningKey,
) -> Result<Option<Checkpoint>, RememberedError> {
    let record_file = record.path.clone();
    let record_path = record_file.display();
    let state_display = state_path.display();
    match (record.newest.clone(), state) {
        (Some(_), _) if adopt_state => Err(RememberedError::AdoptOverRecord {
            record: record_file,
        }),
        (Some(newest), None) => Ok(Some(newest)),
        (Some(newest), Some(state)) if state == newest => Ok(Some(newest)),
        (Some(newest), Some(state)) => Err(if record.holds(&state) {
            RememberedError::StateRolledBack {
                state: state_path.to_owned(),
                state_size: state.size,
                newest_size: newest.size,
                record: record_file,
            }
        } else {
            RememberedError::NeverCosigned {
                state: state_path.to_owned(),
                state_size: state.size,
                newest_size: newest.size,
                record: record_file,
            }
        }),
        (None, Some(state)) if adopt_state => {
            let mut note = SignedNote {
                body: state.body(),
                signatures: Vec::new(),
            };
            note.cosign(name, key, now_secs());
            record.append(&note)?;
            eprintln!(
                "kernel-enforcer: started the witness record `{record_path}` from the state \
                 `{state_display}` (size {})",
                state.size
            );
            Ok(Some(state))
        }
        (None, Some(state)) => Err(RememberedError::NoRecord {
            state: state_path.to_owned(),
            state_size: state.size,
            record: record_file,
        }),
        (None, None) if adopt_state => Err(RememberedError::NothingToAdopt {
            state: state_path.to_owned(),
        }),
        (None, None) => {
            eprintln!("kernel-enforcer: starting a new witness record `{record_path}`");
            Ok(None)
        }
    }
}

/// Why the witness record cannot be opened, read or appended to.
#[derive(Debug, thiserror::Error)]
enum WitnessRecordError {
    /// Opening, locking, reading, writing or syncing it failed.
    #[error("witness record `{}`: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// It is not a regular file.
    #[error("witness record `{}` is not a regular file", .0.display())]
    NotRegularFile(PathBuf),
    /// Another witness run holds its lock.
    #[error(
        "witness record `{}` is in use by another `audit witness`; run again \
         when it is done",
        .0.display()
    )]
    InUse(PathBuf),
    /// Its text is not a record this witness can go on from.
    #[error(
        "witness record `{}`: {source}; refusing to co-sign until it is repaired",
        .path.display()
    )]
    Damaged {
        path: PathBuf,
        #[source]
        source: RecordError,
    },
}

/// What is wrong with the text of a witness record; `line` counts from 1.
#[derive(Debug, thiserror::Error)]
enum RecordError {
    /// The text does not end with a newline.
    #[error(
        "it ends inside an entry (the witness was interrupted while co-signing, \
                    or the file was damaged): check it, then remove the incomplete last line"
    )]
    Torn,
    /// A line is not JSON.
    #[error("line {line}: {source}")]
    NotJson {
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    /// A line has no `note` string.
    #[error("line {line}: no `note`")]
    NoNote { line: usize },
    /// A line's note is not a signed note.
    #[error("line {line}: {source}")]
    Note {
        line: usize,
        #[source]
        source: kernel_core::note::NoteError,
    },
    /// A line's note is not a checkpoint.
    #[error("line {line}: {source}")]
    Checkpoint {
        line: usize,
        #[source]
        source: kernel_core::note::NoteError,
    },
    /// A line's checkpoint is of another log than the one before.
    #[error("line {line}: origin `{origin}` follows origin `{before}`")]
    OriginChanged {
        line: usize,
        origin: String,
        before: String,
    },
    /// A line's checkpoint does not extend the one before.
    #[error(
        "line {line}: checkpoint of size {size} follows one of size {before} it does not extend"
    )]
    NotExtending { line: usize, size: u64, before: u64 },
    /// The newest line is not co-signed by this witness.
    #[error(
        "line {line}: {source} (the record belongs to another witness key or name, or was edited)"
    )]
    NotOurs {
        line: usize,
        #[source]
        source: kernel_core::note::NoteError,
    },
}

/// The witness's record: one line `{"note": "..."}` per co-signature it
/// gave, each appended and synced before that co-signature is released.
/// Held locked while a witness run uses it, so that two runs cannot both
/// extend the same checkpoint in different directions.
#[derive(Debug)]
struct WitnessRecord {
    path: PathBuf,
    file: std::fs::File,
    /// Every checkpoint recorded, oldest first.
    checkpoints: Vec<Checkpoint>,
    /// The newest one.
    newest: Option<Checkpoint>,
}

impl WitnessRecord {
    /// Opens (creating if missing) and locks the record at `path`, and
    /// reads it. Refuses a record that is damaged, whose entries go
    /// backwards or change origin, or whose newest entry is not
    /// co-signed by `name` with `key`.
    fn open(path: &Path, name: &str, key: &VerifyingKey) -> Result<Self, WitnessRecordError> {
        use std::io::Read as _;
        let io = |source| WitnessRecordError::Io {
            path: path.to_owned(),
            source,
        };
        let (mut file, created) = match std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
        {
            Ok(file) => (file, false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                std::fs::OpenOptions::new()
                    .read(true)
                    .append(true)
                    .create(true)
                    .open(path)
                    .map_err(io)?,
                true,
            ),
            Err(e) => return Err(io(e)),
        };
        // Only a regular file can be appended to and read back as written.
        if !file.metadata().map_err(io)?.is_file() {
            return Err(WitnessRecordError::NotRegularFile(path.to_owned()));
        }
        file.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => WitnessRecordError::InUse(path.to_owned()),
            std::fs::TryLockError::Error(e) => io(e),
        })?;
        if created {
            sync_parent(path).map_err(io)?;
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(io)?;
        let checkpoints =
            parse_record(&text, name, key).map_err(|source| WitnessRecordError::Damaged {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            path: path.to_owned(),
            file,
            newest: checkpoints.last().cloned(),
            checkpoints,
        })
    }

    fn holds(&self, checkpoint: &Checkpoint) -> bool {
        self.checkpoints.contains(checkpoint)
    }

    /// Appends `note` (co-signed by this witness) and syncs it.
    fn append(&mut self, note: &SignedNote) -> Result<(), WitnessRecordError> {
        let line = serde_json::json!({ "note": note.to_text() }).to_string();
        writeln!(self.file, "{line}")
            .and_then(|()| self.file.sync_data())
            .map_err(|source| WitnessRecordError::Io {
                path: self.path.clone(),
                source,
            })?;
        if let Ok(checkpoint) = Checkpoint::parse_body(&note.body) {
            self.checkpoints.push(checkpoint.clone());
            self.newest = Some(checkpoint);
        }
        Ok(())
    }
}

/// The checkpoints of a witness record's text, oldest first.
fn parse_record(
    text: &str,
    name: &str,
    key: &VerifyingKey,
) -> Result<Vec<Checkpoint>, RecordError> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(RecordError::Torn);
    }
    let mut checkpoints: Vec<Checkpoint> = Vec::new();
    let mut newest_note = None;
    for (n, line) in text.lines().enumerate() {
        let at = n + 1;
        let value: serde_json::Value = serde_json::from_str(line)
            .map_err(|source| RecordError::NotJson { line: at, source })?;
        let note = value
            .get("note")
            .and_then(serde_json::Value::as_str)
            .ok_or(RecordError::NoNote { line: at })?;
        let note =
            SignedNote::parse(note).map_err(|source| RecordError::Note { line: at, source })?;
        let checkpoint = Checkpoint::parse_body(&note.body)
            .map_err(|source| RecordError::Checkpoint { line: at, source })?;
        if let Some(before) = checkpoints.last() {
            if before.origin != checkpoint.origin {
                return Err(RecordError::OriginChanged {
                    line: at,
                    origin: checkpoint.origin,
                    before: before.origin.clone(),
                });
            }
            if checkpoint.size < before.size
                || (checkpoint.size == before.size && checkpoint.root != before.root)
            {
                return Err(RecordError::NotExtending {
                    line: at,
                    size: checkpoint.size,
                    before: before.size,
                });
            }
        }
        checkpoints.push(checkpoint);
        newest_note = Some((at, note));
    }
    // The newest entry is the one every check is made against: it must be
    // this witness's own co-signature, not a line someone appended.
    if let Some((at, note)) = newest_note {
        note.verify_cosignature(name, key)
            .map_err(|source| RecordError::NotOurs { line: at, source })?;
    }
    Ok(checkpoints)
}

/// Appends `note` to the co-signatures file at `path` and syncs it.
fn append_note(path: &Path, note: &SignedNote) -> Result<(), String> {
    let line = serde_json::json!({ "note": note.to_text() }).to_string();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("`{}`: {e}", path.display()))?;
    writeln!(file, "{line}")
        .and_then(|()| file.sync_data())
        .map_err(|e| format!("`{}`: {e}", path.display()))
}

/// Syncs the directory holding `path`, so that a file created or renamed
/// there survives a crash.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(parent)?.sync_all()
}

fn read_state(path: &Path) -> Result<Option<Checkpoint>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Checkpoint::parse_body(&text)
            .map(Some)
            .map_err(|e| format!("witness state `{}`: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("witness state `{}`: {e}", path.display())),
    }
}

fn write_state(path: &Path, checkpoint: &Checkpoint) -> Result<(), String> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, checkpoint.body())
        .and_then(|()| std::fs::File::open(&temporary)?.sync_all())
        .and_then(|()| std::fs::rename(&temporary, path))
        .and_then(|()| sync_parent(path))
        .map_err(|e| format!("witness state `{}`: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;
    use ed25519_dalek::SigningKey;

    const NAME: &str = DEFAULT_WITNESS_NAME;

    fn checkpoint(size: u64, root: u8) -> Checkpoint {
        Checkpoint {
            origin: "agent-kernel/evidence/00".into(),
            size,
            root: [root; 32],
        }
    }

    fn line(checkpoint: &Checkpoint, key: &SigningKey) -> String {
        let mut note = SignedNote {
            body: checkpoint.body(),
            signatures: Vec::new(),
        };
        note.cosign(NAME, key, 1_700_000_000);
        format!("{}\n", serde_json::json!({ "note": note.to_text() }))
    }

    #[test]
    fn a_record_is_read_only_when_its_newest_entry_is_this_witnesss_own() {
        let witness = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let key = witness.verifying_key();
        let good = [
            line(&checkpoint(3, 1), &witness),
            line(&checkpoint(5, 2), &witness),
        ]
        .concat();
        assert_eq!(
            parse_record(&good, NAME, &key).unwrap(),
            vec![checkpoint(3, 1), checkpoint(5, 2)]
        );
        assert_eq!(parse_record("", NAME, &key).unwrap(), Vec::new());

        // A line someone else appended (another key, or another name).
        let appended = [good.clone(), line(&checkpoint(9, 3), &other)].concat();
        let error = parse_record(&appended, NAME, &key).unwrap_err();
        assert!(
            matches!(error, RecordError::NotOurs { line: 3, .. }),
            "{error:?}"
        );
        assert!(matches!(
            parse_record(&good, "another-witness", &key),
            Err(RecordError::NotOurs { line: 2, .. })
        ));
        // A torn last entry.
        let torn = &good[..good.len() - 10];
        let error = parse_record(torn, NAME, &key).unwrap_err();
        assert!(matches!(error, RecordError::Torn), "{error:?}");
        // What the operator reads: what to do about it.
        assert!(
            error.to_string().contains("incomplete last line"),
            "{error}"
        );
        // Entries that go backwards, change their mind, or change origin.
        for second in [checkpoint(2, 2), checkpoint(3, 9)] {
            let text = [line(&checkpoint(3, 1), &witness), line(&second, &witness)].concat();
            assert!(
                matches!(
                    parse_record(&text, NAME, &key),
                    Err(RecordError::NotExtending { line: 2, before: 3, size })
                        if size == second.size
                ),
                "{second:?}"
            );
        }
        let mut elsewhere = checkpoint(5, 2);
        elsewhere.origin = "agent-kernel/evidence/01".into();
        let text = [
            line(&checkpoint(3, 1), &witness),
            line(&elsewhere, &witness),
        ]
        .concat();
        assert!(matches!(
            parse_record(&text, NAME, &key),
            Err(RecordError::OriginChanged { line: 2, origin, before })
                if origin == "agent-kernel/evidence/01" && before == "agent-kernel/evidence/00"
        ));
        // Not JSON, no note, or a note that is no signed checkpoint.
        assert!(matches!(
            parse_record("{}\n", NAME, &key),
            Err(RecordError::NoNote { line: 1 })
        ));
        assert!(matches!(
            parse_record("note\n", NAME, &key),
            Err(RecordError::NotJson { line: 1, .. })
        ));
        assert!(matches!(
            parse_record("{\"note\": \"x\"}\n", NAME, &key),
            Err(RecordError::Note { line: 1, .. })
        ));
    }

    #[test]
    fn the_record_decides_and_the_state_must_agree_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let witness = SigningKey::from_bytes(&[7; 32]);
        let key = witness.verifying_key();
        let path = dir.path().join("state.record");
        let state = dir.path().join("state");
        std::fs::write(
            &path,
            [
                line(&checkpoint(3, 1), &witness),
                line(&checkpoint(5, 2), &witness),
            ]
            .concat(),
        )
        .unwrap();
        let remembered = |state_now: Option<Checkpoint>, adopt: bool| {
            let mut record = WitnessRecord::open(&path, NAME, &key).unwrap();
            remembered_checkpoint(&mut record, state_now, &state, adopt, NAME, &witness)
        };
        assert_eq!(
            remembered(Some(checkpoint(5, 2)), false).unwrap(),
            Some(checkpoint(5, 2))
        );
        // No state: the record alone.
        assert_eq!(remembered(None, false).unwrap(), Some(checkpoint(5, 2)));
        // A state rolled back to an older co-signature.
        let error = remembered(Some(checkpoint(3, 1)), false).unwrap_err();
        assert!(
            matches!(
                &error,
                RememberedError::StateRolledBack { state_size: 3, newest_size: 5, record, .. }
                    if record == &path
            ),
            "{error:?}"
        );
        // A state naming something never co-signed, older or newer.
        for bogus in [checkpoint(4, 4), checkpoint(8, 8)] {
            let size = bogus.size;
            let error = remembered(Some(bogus), false).unwrap_err();
            assert!(
                matches!(
                    error,
                    RememberedError::NeverCosigned { state_size, newest_size: 5, .. }
                        if state_size == size
                ),
                "{error:?}"
            );
        }
        // Adopting is only for a witness without a record.
        assert!(matches!(
            remembered(Some(checkpoint(5, 2)), true),
            Err(RememberedError::AdoptOverRecord { .. })
        ));

        // A state without its record is refused unless adopted.
        std::fs::remove_file(&path).unwrap();
        let error = remembered(Some(checkpoint(3, 1)), false).unwrap_err();
        assert!(
            matches!(error, RememberedError::NoRecord { state_size: 3, .. }),
            "{error:?}"
        );
        // What the operator reads: how to go on.
        assert!(error.to_string().contains("--adopt-state"), "{error}");
        assert!(matches!(
            remembered(None, true),
            Err(RememberedError::NothingToAdopt { .. })
        ));
        assert_eq!(
            remembered(Some(checkpoint(3, 1)), true).unwrap(),
            Some(checkpoint(3, 1))
        );
        // Adopted: the record now holds it, co-signed.
        assert_eq!(remembered(None, false).unwrap(), Some(checkpoint(3, 1)));
        // A fresh witness: no state, no record.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(remembered(None, false).unwrap(), None);
    }

    #[test]
    fn one_witness_run_at_a_time_holds_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
        let path = dir.path().join("state.record");
        let first = WitnessRecord::open(&path, NAME, &key).unwrap();
        let error = WitnessRecord::open(&path, NAME, &key).unwrap_err();
        assert!(
            matches!(&error, WitnessRecordError::InUse(p) if p == &path),
            "{error:?}"
        );
        assert!(error.to_string().contains("in use"), "{error}");
        drop(first);
        assert!(WitnessRecord::open(&path, NAME, &key).is_ok());
    }
}
