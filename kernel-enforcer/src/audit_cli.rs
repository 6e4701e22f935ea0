//! `kernel-enforcer audit ...`: verify, inspect, prove and witness
//! evidence files with public keys only (the witness with its own key).

use crate::keys;
use kernel_core::merkle::{consistency_proof, inclusion_proof, root, verify_consistency};
use kernel_core::note::{Checkpoint, SignedNote};
use kernel_core::{
    AuditOptions, AuditReport, EncodedRequest, Event, Record, VerifyingKey, WitnessCheck, audit,
    decode_receipt_body_unverified, decode_record, format_public_key, parse_public_key,
    split_records, split_records_prefix,
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
    std::fs::read(log).map_err(|e| format!("`{}`: {e}", log.display()))
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
    /// The witness's key name.
    #[arg(long, default_value = DEFAULT_WITNESS_NAME)]
    pub(crate) witness_name: String,
    /// Co-signed checkpoints (default: LOG.cosignatures).
    #[arg(long)]
    pub(crate) cosignatures: Option<PathBuf>,
    /// A checkpoint note obtained earlier: the log must extend it.
    #[arg(long)]
    pub(crate) trusted_checkpoint: Option<PathBuf>,
    /// The evidence file.
    pub(crate) log: PathBuf,
}

/// `audit verify`: exit 0 when sound, an error naming the first faulty
/// record otherwise.
pub(crate) fn verify(args: &VerifyArgs) -> Result<(), String> {
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
                .unwrap_or_else(|| default_cosignatures(&args.log)),
        )?,
        None => Vec::new(),
    };
    let options = AuditOptions {
        kernel_key: kernel_key.as_ref(),
        trusted: trusted.as_ref(),
        witness: witness_key.as_ref().map(|key| WitnessCheck {
            name: &args.witness_name,
            key,
            notes: &cosignatures,
        }),
    };
    let report = audit(&read_log(&args.log)?, &options)
        .map_err(|e| format!("evidence is not sound: {e}"))?;
    print_summary(&report);
    if kernel_key.is_none() {
        println!(
            "note: no --kernel-key given; signatures were checked against each session's own key"
        );
    }
    Ok(())
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
                .map(|r| crate::describe::action(r.request().action.action()))
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
        Record::Checkpoint { note } => match SignedNote::parse(note)
            .ok()
            .and_then(|n| Checkpoint::parse_body(&n.body).ok())
        {
            Some(checkpoint) => Described {
                kind: "checkpoint",
                decision: "",
                details: format!(
                    "size {} root {}",
                    checkpoint.size,
                    kernel_core::hex(&checkpoint.root)
                ),
                json: json!({
                    "kind": "checkpoint",
                    "size": checkpoint.size,
                    "root": kernel_core::hex(&checkpoint.root),
                }),
            },
            None => Described {
                kind: "checkpoint",
                decision: "",
                details: "<malformed note>".into(),
                json: json!({"kind": "checkpoint", "error": "malformed note"}),
            },
        },
    }
}

/// `audit inspect`: every record, readably (a table, or JSON lines). Shows
/// the records before a torn tail, then fails.
pub(crate) fn inspect(log: &Path, json: bool) -> Result<(), String> {
    let bytes = read_log(log)?;
    let (records, torn) = split_records_prefix(&bytes);
    let mut out = std::io::stdout().lock();
    if !json {
        let _ = writeln!(
            out,
            "{:<6} {:<14} {:<8} details",
            "index", "kind", "decision"
        );
    }
    for (index, body) in records.iter().enumerate() {
        let described = match decode_record(body) {
            Ok(record) => describe(&record),
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
        return Err(format!("the file ends inside a record: {torn}"));
    }
    Ok(())
}

/// `audit prove`: an inclusion proof for record `index` against the newest
/// checkpoint, as JSON, verifiable with `kernel_core::merkle` alone.
pub(crate) fn prove(log: &Path, index: u64) -> Result<(), String> {
    let bytes = read_log(log)?;
    let report = audit(&bytes, &AuditOptions::default())
        .map_err(|e| format!("evidence is not sound: {e}"))?;
    let (position, checkpoint) = report
        .checkpoints
        .last()
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
    let records = split_records(&bytes).map_err(|e| e.to_string())?;
    let note = match records
        .get(usize::try_from(*position).unwrap_or(usize::MAX))
        .map(|body| decode_record(body))
    {
        Some(Ok(Record::Checkpoint { note })) => note,
        _ => return Err("newest checkpoint record not found".into()),
    };
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
    /// The evidence file.
    pub(crate) log: PathBuf,
}

/// `audit witness`: verify the log up to its newest checkpoint, check that
/// it extends the last checkpoint this witness co-signed (refusing forks
/// and rewrites), then co-sign the newest checkpoint.
pub(crate) fn witness(args: &WitnessArgs) -> Result<(), String> {
    let key = keys::load_private(&args.key).map_err(|e| e.to_string())?;
    let kernel_key = args
        .kernel_key
        .as_deref()
        .map(read_public_key)
        .transpose()?;
    let bytes = read_log(&args.log)?;
    let report = audit(
        &bytes,
        &AuditOptions {
            kernel_key: kernel_key.as_ref(),
            ..AuditOptions::default()
        },
    )
    .map_err(|e| format!("refusing to co-sign, evidence is not sound: {e}"))?;
    let (position, newest) = report
        .checkpoints
        .last()
        .ok_or("refusing to co-sign: the log has no checkpoint yet")?;
    let leaves = report
        .leaves
        .get(..usize::try_from(newest.size).unwrap_or(usize::MAX))
        .ok_or("checkpoint larger than the log")?;
    if let Some(previous) = read_state(&args.state)? {
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
        let consistent = if previous.size == newest.size {
            previous.root == newest.root
        } else {
            consistency_proof(leaves, previous.size)
                .ok()
                .is_some_and(|proof| {
                    verify_consistency(
                        previous.size,
                        newest.size,
                        &proof,
                        &previous.root,
                        &newest.root,
                    )
                    .is_ok()
                })
                && root(
                    leaves
                        .get(..usize::try_from(previous.size).unwrap_or(usize::MAX))
                        .unwrap_or_default(),
                ) == previous.root
        };
        if !consistent {
            return Err(format!(
                "refusing to co-sign: the log does not extend the checkpoint co-signed before (size {}): fork or rewrite",
                previous.size
            ));
        }
    }
    let records = split_records(&bytes).map_err(|e| e.to_string())?;
    let Some(Ok(Record::Checkpoint { note })) = records
        .get(usize::try_from(*position).unwrap_or(usize::MAX))
        .map(|body| decode_record(body))
    else {
        return Err("newest checkpoint record not found".into());
    };
    let mut note = SignedNote::parse(&note).map_err(|e| e.to_string())?;
    note.signatures.retain(|s| s.name != args.name);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    note.cosign(&args.name, &key, now);
    let cosignatures = args
        .cosignatures
        .clone()
        .unwrap_or_else(|| default_cosignatures(&args.log));
    let line = serde_json::json!({ "note": note.to_text() }).to_string();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&cosignatures)
        .map_err(|e| format!("`{}`: {e}", cosignatures.display()))?;
    writeln!(file, "{line}")
        .and_then(|()| file.sync_data())
        .map_err(|e| format!("`{}`: {e}", cosignatures.display()))?;
    write_state(&args.state, newest)?;
    println!(
        "co-signed checkpoint: size {}, root {} ({})",
        newest.size,
        kernel_core::hex(&newest.root),
        cosignatures.display()
    );
    println!("witness key: {}", format_public_key(&key.verifying_key()));
    Ok(())
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
        .map_err(|e| format!("witness state `{}`: {e}", path.display()))
}
