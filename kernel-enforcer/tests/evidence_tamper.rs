//! Tampering with real evidence written by the real enforcer: every edit,
//! deletion, reordering, insertion, truncation (against an anchor), cut,
//! replacement and fork is detected, at the right record; the untouched
//! log passes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use kernel_client::{Action, Kernel};
use kernel_core::note::SignedNote;
use kernel_core::{
    AuditOptions, LogError, LogProblem, Record, SignedReceipt, VerifyingKey, WitnessCheck, audit,
    decode_record, frame_record_bytes, split_records,
};
use kernel_testkit::{Fixture, enforcer, fixture, keygen, signal};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const POLICY: &str = r#"
@id("read-workspace")
permit (principal, action == Action::"file_read", resource in Workspace::"root");
"#;

struct Setup {
    fixture: Fixture,
    key_file: PathBuf,
    key: VerifyingKey,
}

fn setup() -> Setup {
    let fixture = fixture(POLICY);
    let (key_file, key) = keygen(&fixture.dir.path().join("keys"));
    Setup {
        fixture,
        key_file,
        key,
    }
}

/// One enforcer session against `evidence`: `decisions` requests, half
/// allowed and half denied, a checkpoint every 4 records, a final one at
/// shutdown.
fn session(setup: &Setup, evidence: &Path, decisions: usize, tag: &str) {
    let f = &setup.fixture;
    let config = kernel_client::SpawnConfig::new(&f.policy, &f.workspace, evidence)
        .enforcer(enforcer())
        .key_file(&setup.key_file)
        .pin_public_key(setup.key)
        .checkpoint_every(4);
    let kernel = Kernel::spawn(config).unwrap();
    for i in 0..decisions {
        let path = if i % 2 == 0 {
            f.ws(&format!("{tag}-{i}"))
        } else {
            format!("/etc/{tag}-{i}")
        };
        let _ = kernel.authorize(Action::file_read(path));
    }
    assert!(kernel.shutdown(Duration::from_secs(5)).unwrap().success());
}

fn pinned(key: &VerifyingKey) -> AuditOptions<'_> {
    AuditOptions {
        kernel_key: Some(key),
        ..AuditOptions::default()
    }
}

fn records(bytes: &[u8]) -> Vec<Vec<u8>> {
    split_records(bytes)
        .unwrap()
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect()
}

fn join(records: &[Vec<u8>]) -> Vec<u8> {
    records.iter().flat_map(|r| frame_record_bytes(r)).collect()
}

fn kind(record: &[u8]) -> &'static str {
    match decode_record(record).unwrap() {
        Record::Event(_) => "event",
        Record::Decision { .. } => "decision",
        Record::Checkpoint { .. } | Record::FrontierCheckpoint { .. } => "checkpoint",
    }
}

fn fault(bytes: &[u8], options: &AuditOptions<'_>) -> LogError {
    match audit(bytes, options) {
        Ok(report) => panic!("tampering went unnoticed: {report:?}"),
        Err(e) => e,
    }
}

/// A log of two sessions (with a restart between them) and several
/// checkpoints.
fn real_log(setup: &Setup) -> Vec<u8> {
    session(setup, &setup.fixture.evidence, 7, "a");
    session(setup, &setup.fixture.evidence, 6, "b");
    std::fs::read(&setup.fixture.evidence).unwrap()
}

#[test]
fn the_untouched_log_passes() {
    let setup = setup();
    let bytes = real_log(&setup);
    let report = audit(&bytes, &pinned(&setup.key)).unwrap();
    assert_eq!(report.sessions, 2);
    assert_eq!(report.allowed + report.denied, 13);
    assert!(report.checkpoints.len() >= 4, "{:?}", report.checkpoints);
    assert_eq!(report.uncovered, 0);
}

#[test]
fn a_flipped_byte_in_any_record_is_found_at_that_record() {
    let setup = setup();
    let bytes = real_log(&setup);
    let all = records(&bytes);
    let mut kinds_seen = std::collections::BTreeSet::new();
    let mut offset = 0;
    for (index, record) in all.iter().enumerate() {
        kinds_seen.insert(kind(record));
        let framed = record.len() + 4;
        // The length prefix, the start, the middle and the end of the body.
        for at in [1, 3, 4, 5, framed / 3, framed / 2, framed - 2, framed - 1] {
            for bit in [0x01u8, 0x80] {
                let mut tampered = bytes.clone();
                tampered[offset + at] ^= bit;
                let error = fault(&tampered, &pinned(&setup.key));
                assert_eq!(
                    error.index,
                    index as u64,
                    "flip at byte {at} of record {index} ({}) reported as {error}",
                    kind(record)
                );
            }
        }
        offset += framed;
    }
    assert_eq!(kinds_seen.len(), 3, "{kinds_seen:?}");
}

#[test]
fn deletion_reordering_and_insertion_are_found() {
    let setup = setup();
    let bytes = real_log(&setup);
    let all = records(&bytes);
    let decisions: Vec<usize> = (0..all.len())
        .filter(|&i| kind(&all[i]) == "decision")
        .collect();
    // Delete one record.
    for &i in &decisions[..4] {
        let mut edited = all.clone();
        edited.remove(i);
        assert_eq!(fault(&join(&edited), &pinned(&setup.key)).index, i as u64);
    }
    // Swap two decisions.
    let (i, j) = (decisions[1], decisions[2]);
    let mut swapped = all.clone();
    swapped.swap(i, j);
    assert_eq!(fault(&join(&swapped), &pinned(&setup.key)).index, i as u64);
    // Insert a decision whose receipt another key signed.
    let Record::Decision { request, receipt } = decode_record(&all[i]).unwrap() else {
        unreachable!()
    };
    let intruder = kernel_core::SigningKey::from_bytes(&[42; 32]);
    let mut body = kernel_core::decode_receipt_body_unverified(&receipt.body).unwrap();
    body.log_index = i as u64;
    let forged: SignedReceipt = kernel_core::sign_receipt(&intruder, &body);
    let inserted = kernel_core::encode_record(&Record::Decision {
        request,
        receipt: forged,
    });
    let mut edited = all.clone();
    edited.insert(i, inserted);
    let error = fault(&join(&edited), &pinned(&setup.key));
    assert_eq!(error.index, i as u64);
    assert!(matches!(error.problem, LogProblem::Receipt(_)), "{error}");
}

#[test]
fn truncation_is_found_against_a_trusted_or_witnessed_checkpoint() {
    let setup = setup();
    let bytes = real_log(&setup);
    let all = records(&bytes);
    let newest_note = all
        .iter()
        .rev()
        .find_map(|r| {
            decode_record(r)
                .unwrap()
                .checkpoint_note()
                .map(|note| SignedNote::parse(note).unwrap())
        })
        .unwrap();
    // The witness co-signs the full log.
    let witness_dir = setup.fixture.dir.path().join("witness");
    let (witness_key_file, witness_key) = keygen(&witness_dir);
    let state = witness_dir.join("state");
    let cosignatures = witness_dir.join("cosignatures");
    let status = Command::new(enforcer())
        .args(["audit", "witness", "--key"])
        .arg(&witness_key_file)
        .arg("--state")
        .arg(&state)
        .arg("--cosignatures")
        .arg(&cosignatures)
        .arg(&setup.fixture.evidence)
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&cosignatures).unwrap();
    let value: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let cosigned = vec![SignedNote::parse(value["note"].as_str().unwrap()).unwrap()];
    let witness = WitnessCheck {
        name: "agent-kernel-witness",
        key: &witness_key,
        notes: &cosigned,
    };
    assert!(
        audit(
            &bytes,
            &AuditOptions {
                witness: Some(witness),
                ..pinned(&setup.key)
            }
        )
        .is_ok()
    );

    // The newest checkpoint covers every record but itself (nothing can
    // commit to its own record), so cuts start at two records: each one
    // removes at least one record the anchors cover.
    for cut in [2, 3, 6] {
        let kept = all.len() - cut;
        let truncated = join(&all[..kept]);
        // Without an anchor, a log cut at a record boundary is still a
        // well-formed log: that is what the anchors are for.
        let trusted = AuditOptions {
            trusted: Some(&newest_note),
            ..pinned(&setup.key)
        };
        let error = fault(&truncated, &trusted);
        assert_eq!(error.index, kept as u64, "{error}");
        assert!(
            matches!(error.problem, LogProblem::Truncated { .. }),
            "{error}"
        );
        let witnessed = AuditOptions {
            witness: Some(witness),
            ..pinned(&setup.key)
        };
        let error = fault(&truncated, &witnessed);
        assert_eq!(error.index, kept as u64, "{error}");
        assert!(
            matches!(error.problem, LogProblem::Truncated { .. }),
            "{error}"
        );
    }
}

#[test]
fn a_cut_inside_a_record_is_found_at_that_record() {
    let setup = setup();
    let bytes = real_log(&setup);
    let all = records(&bytes);
    let mut offset = 0;
    for (index, record) in all.iter().enumerate().take(6) {
        let cut = offset + 4 + record.len() / 2;
        let error = fault(&bytes[..cut], &pinned(&setup.key));
        assert_eq!(error.index, index as u64);
        assert!(matches!(error.problem, LogProblem::Torn(_)), "{error}");
        offset += record.len() + 4;
    }
    // The CLI says the same, with exit status 1.
    std::fs::write(&setup.fixture.evidence, &bytes[..bytes.len() - 3]).unwrap();
    let out = Command::new(enforcer())
        .args(["audit", "verify", "--kernel-key"])
        .arg(setup.fixture.dir.path().join("keys/kernel.pub"))
        .arg(&setup.fixture.evidence)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("record {}", all.len() - 1)),
        "{stderr}"
    );
}

#[test]
fn a_log_replaced_by_one_with_another_key_is_refused() {
    let setup = setup();
    let original = real_log(&setup);
    let other = fixture(POLICY);
    // A fresh per-session key: a complete, internally consistent log.
    let kernel = other.spawn();
    let _ = kernel.authorize(Action::file_read(other.ws("x")));
    drop(kernel);
    let replacement = std::fs::read(&other.evidence).unwrap();
    assert!(audit(&replacement, &AuditOptions::default()).is_ok());
    let error = fault(&replacement, &pinned(&setup.key));
    assert_eq!(error.index, 0);
    assert!(
        matches!(error.problem, LogProblem::UnexpectedKey(_)),
        "{error}"
    );
    assert!(audit(&original, &pinned(&setup.key)).is_ok());
}

#[test]
fn a_fork_shown_to_the_witness_is_refused() {
    let setup = setup();
    let evidence = &setup.fixture.evidence;
    session(&setup, evidence, 5, "shared");
    // Fork: a copy of the log continues differently from the original.
    let fork = setup.fixture.dir.path().join("state/fork.log");
    std::fs::copy(evidence, &fork).unwrap();
    session(&setup, evidence, 5, "original");
    session(&setup, &fork, 5, "forked");
    assert!(audit(&std::fs::read(&fork).unwrap(), &pinned(&setup.key)).is_ok());

    let witness_dir = setup.fixture.dir.path().join("witness");
    let (witness_key_file, _) = keygen(&witness_dir);
    let witness = |log: &Path| {
        Command::new(enforcer())
            .args(["audit", "witness", "--key"])
            .arg(&witness_key_file)
            .arg("--state")
            .arg(witness_dir.join("state"))
            .arg(log)
            .output()
            .unwrap()
    };
    assert!(witness(evidence).status.success());
    let refused = witness(&fork);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("fork"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // The original, extended further, is still accepted.
    session(&setup, evidence, 3, "later");
    assert!(witness(evidence).status.success());
}

/// Runs `audit witness` with the witness key in `witness_dir`, its state
/// at `witness_dir/state`, and `extra` flags.
fn run_witness(witness_dir: &Path, log: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(enforcer())
        .args(["audit", "witness", "--key"])
        .arg(witness_dir.join("kernel.key"))
        .arg("--state")
        .arg(witness_dir.join("state"))
        .args(extra)
        .arg(log)
        .output()
        .unwrap()
}

fn cosignature_lines(log: &Path) -> usize {
    let mut name = log.as_os_str().to_owned();
    name.push(".cosignatures");
    std::fs::read_to_string(PathBuf::from(name)).map_or(0, |text| text.lines().count())
}

#[test]
fn a_witness_whose_state_was_rolled_back_still_refuses_a_fork() {
    let setup = setup();
    let evidence = &setup.fixture.evidence;
    session(&setup, evidence, 5, "shared");
    let fork = setup.fixture.dir.path().join("state/fork.log");
    std::fs::copy(evidence, &fork).unwrap();
    let witness_dir = setup.fixture.dir.path().join("witness");
    keygen(&witness_dir);
    let state = witness_dir.join("state");

    // Co-sign, keep the state as it was then, grow the log, co-sign again.
    assert!(run_witness(&witness_dir, evidence, &[]).status.success());
    let old_state = std::fs::read(&state).unwrap();
    session(&setup, evidence, 5, "original");
    assert!(run_witness(&witness_dir, evidence, &[]).status.success());
    // The fork shares the prefix the first co-signature covers.
    session(&setup, &fork, 5, "forked");
    assert!(audit(&std::fs::read(&fork).unwrap(), &pinned(&setup.key)).is_ok());

    // Whoever rolls the state back gets a refusal, not a co-signature.
    std::fs::write(&state, &old_state).unwrap();
    let refused = run_witness(&witness_dir, &fork, &[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("older than"), "{stderr}");
    assert_eq!(cosignature_lines(&fork), 0, "the fork was co-signed");

    // Without any state, the witness's record alone still knows what it
    // signed: the fork is refused as a fork.
    std::fs::remove_file(&state).unwrap();
    let refused = run_witness(&witness_dir, &fork, &[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("fork"), "{stderr}");
    assert_eq!(cosignature_lines(&fork), 0, "the fork was co-signed");

    // The original log, extended, is still co-signed, and the state is
    // written again from the record.
    session(&setup, evidence, 3, "later");
    let accepted = run_witness(&witness_dir, evidence, &[]);
    assert!(accepted.status.success(), "{accepted:?}");
    assert_eq!(cosignature_lines(evidence), 3);
    assert!(state.exists());
}

#[test]
fn a_witness_that_lost_its_record_refuses_until_the_operator_adopts_its_state() {
    let setup = setup();
    let evidence = &setup.fixture.evidence;
    session(&setup, evidence, 5, "shared");
    let fork = setup.fixture.dir.path().join("state/fork.log");
    std::fs::copy(evidence, &fork).unwrap();
    let witness_dir = setup.fixture.dir.path().join("witness");
    keygen(&witness_dir);
    let record = witness_dir.join("state.record");
    assert!(run_witness(&witness_dir, evidence, &[]).status.success());
    session(&setup, evidence, 5, "original");
    assert!(run_witness(&witness_dir, evidence, &[]).status.success());
    assert_eq!(std::fs::read_to_string(&record).unwrap().lines().count(), 2);
    session(&setup, &fork, 5, "forked");

    std::fs::remove_file(&record).unwrap();
    for log in [evidence, &fork] {
        let refused = run_witness(&witness_dir, log, &[]);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("--adopt-state"), "{stderr}");
    }
    assert_eq!(cosignature_lines(evidence), 2);
    assert_eq!(cosignature_lines(&fork), 0);

    // Adopted, the state is what the fork is checked against.
    let refused = run_witness(&witness_dir, &fork, &["--adopt-state"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("fork"), "{stderr}");
    assert_eq!(cosignature_lines(&fork), 0);
    // Once there is a record, there is nothing to adopt.
    let refused = run_witness(&witness_dir, evidence, &["--adopt-state"]);
    assert_eq!(refused.status.code(), Some(1));
    let accepted = run_witness(&witness_dir, evidence, &[]);
    assert!(accepted.status.success(), "{accepted:?}");
    assert_eq!(cosignature_lines(evidence), 3);
}

/// Runs a session of `decisions` requests and kills the enforcer with
/// SIGKILL before it writes its final checkpoint; returns the index of the
/// newest checkpoint in the file and the file's records. Retried if a
/// time-based checkpoint left fewer than `decisions` records after it.
fn crashed_session(setup: &Setup, decisions: usize) -> (usize, Vec<Vec<u8>>) {
    let f = &setup.fixture;
    for _ in 0..3 {
        let config = kernel_client::SpawnConfig::new(&f.policy, &f.workspace, &f.evidence)
            .enforcer(enforcer())
            .key_file(&setup.key_file)
            .pin_public_key(setup.key)
            .checkpoint_every(10_000);
        let kernel = Kernel::spawn(config).unwrap();
        for i in 0..decisions {
            let path = if i % 2 == 0 {
                f.ws(&format!("crash-{i}"))
            } else {
                format!("/etc/crash-{i}")
            };
            let _ = kernel.authorize(Action::file_read(path));
        }
        signal(kernel.enforcer_pid().unwrap(), "KILL");
        // Gone once its end of the channel is closed: its descriptors,
        // the evidence file's lock among them, are released.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !matches!(
            kernel.authorize(Action::file_read(f.ws("after-kill"))),
            Err(kernel_client::Denial::EnforcerGone)
        ) {
            assert!(std::time::Instant::now() < deadline, "enforcer still alive");
        }
        drop(kernel);
        let all = records(&std::fs::read(&f.evidence).unwrap());
        let newest = all.iter().rposition(|r| kind(r) == "checkpoint").unwrap();
        let after = all[newest + 1..]
            .iter()
            .filter(|r| kind(r) == "decision")
            .count();
        if after >= decisions {
            return (newest, all);
        }
    }
    panic!("a checkpoint followed the decisions every time");
}

/// Starts the real enforcer on the log and returns its start-up error.
fn refused_start(setup: &Setup) -> String {
    let f = &setup.fixture;
    let config = kernel_client::SpawnConfig::new(&f.policy, &f.workspace, &f.evidence)
        .enforcer(enforcer())
        .key_file(&setup.key_file)
        .pin_public_key(setup.key);
    match Kernel::spawn(config) {
        Ok(_) => panic!("the enforcer started on a damaged log"),
        Err(e) => e.to_string(),
    }
}

/// The enforcer restarts on a log from its newest checkpoint, verifying
/// every record after it: a flipped bit in a signature, a removed decision
/// and two swapped decisions there each make it refuse to start, naming
/// the record; the file is left as it was.
#[test]
fn a_restart_refuses_a_log_tampered_after_its_newest_checkpoint() {
    let setup = setup();
    session(&setup, &setup.fixture.evidence, 5, "a");
    let (newest, all) = crashed_session(&setup, 6);
    let decisions: Vec<usize> = (newest + 1..all.len())
        .filter(|&i| kind(&all[i]) == "decision")
        .collect();
    let mut cases: Vec<(String, Vec<Vec<u8>>, usize)> = Vec::new();
    for &at in &decisions {
        let Record::Decision {
            request,
            mut receipt,
        } = decode_record(&all[at]).unwrap()
        else {
            unreachable!("a decision")
        };
        receipt.signature[9] ^= 0x20;
        let mut flipped = all.clone();
        flipped[at] = kernel_core::encode_record(&Record::Decision { request, receipt });
        cases.push((format!("signature of {at} flipped"), flipped, at));
    }
    let mut fewer = all.clone();
    fewer.remove(decisions[1]);
    cases.push(("a decision removed".into(), fewer, decisions[1]));
    let mut swapped = all.clone();
    swapped.swap(decisions[2], decisions[4]);
    cases.push(("two decisions swapped".into(), swapped, decisions[2]));
    for (what, records, at) in cases {
        let tampered = join(&records);
        std::fs::write(&setup.fixture.evidence, &tampered).unwrap();
        let message = refused_start(&setup);
        assert!(
            message.contains(&format!("record {at}:")),
            "{what}: {message}"
        );
        assert_eq!(
            std::fs::read(&setup.fixture.evidence).unwrap(),
            tampered,
            "{what}: the file was changed"
        );
    }
    // Untouched, it starts, continues the log, and the result is sound.
    std::fs::write(&setup.fixture.evidence, join(&all)).unwrap();
    session(&setup, &setup.fixture.evidence, 2, "c");
    let bytes = std::fs::read(&setup.fixture.evidence).unwrap();
    assert_eq!(&bytes[..join(&all).len()], join(&all).as_slice());
    audit(&bytes, &pinned(&setup.key)).unwrap();
}

/// A newest checkpoint whose stored frontier does not lead to its signed
/// root makes the enforcer refuse to start, naming it.
#[test]
fn a_restart_refuses_a_checkpoint_whose_frontier_does_not_match_its_root() {
    let setup = setup();
    session(&setup, &setup.fixture.evidence, 5, "a");
    let mut all = records(&std::fs::read(&setup.fixture.evidence).unwrap());
    let newest = all.len() - 1;
    let Record::FrontierCheckpoint {
        note,
        session,
        key,
        mut frontier,
    } = decode_record(&all[newest]).unwrap()
    else {
        panic!("the enforcer's checkpoints store their frontier")
    };
    frontier[0][31] ^= 0x01;
    all[newest] = kernel_core::encode_record(&Record::FrontierCheckpoint {
        note,
        session,
        key,
        frontier,
    });
    std::fs::write(&setup.fixture.evidence, join(&all)).unwrap();
    let message = refused_start(&setup);
    assert!(
        message.contains(&format!("record {newest}:")) && message.contains("frontier"),
        "{message}"
    );
}

/// What a restart trusts: the records before the newest checkpoint are not
/// read again, so a change there does not stop the enforcer (its signed
/// checkpoint committed to the original records); `audit verify`, which
/// checks everything from the first byte, names the changed record.
#[test]
fn a_change_before_the_newest_checkpoint_is_left_to_the_auditor() {
    let setup = setup();
    session(&setup, &setup.fixture.evidence, 6, "a");
    let mut all = records(&std::fs::read(&setup.fixture.evidence).unwrap());
    let at = (1..all.len())
        .find(|&i| kind(&all[i]) == "decision")
        .unwrap();
    let middle = all[at].len() / 2;
    all[at][middle] ^= 0x04;
    std::fs::write(&setup.fixture.evidence, join(&all)).unwrap();
    session(&setup, &setup.fixture.evidence, 2, "b");
    let out = Command::new(enforcer())
        .args(["audit", "verify", "--kernel-key"])
        .arg(setup.fixture.dir.path().join("keys/kernel.pub"))
        .arg(&setup.fixture.evidence)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("record {at}:")), "{stderr}");
}
