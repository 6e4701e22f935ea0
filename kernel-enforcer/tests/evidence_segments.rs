//! An evidence log kept in segments (`--evidence-segment`), through the
//! real enforcer and the real `audit` commands: restarts continue the
//! chain across rotations, `audit verify` checks the segments as one log
//! and names a segment that is missing, out of order, given twice or from
//! another log (each refused on its own), the newest segment alone is
//! verified from its first checkpoint and says what it cannot vouch for,
//! and a SIGKILL at any moment, rotations included, loses no acknowledged
//! decision and leaves a log that restarts and verifies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use kernel_client::{Action, Denial, Kernel};
use kernel_core::{
    AuditOptions, Decision, Record, SegmentedAudit, decode_receipt_body_unverified, decode_record,
    split_records,
};
use kernel_testkit::{
    Fixture, Reaped, Seeded, audit_inspect, fixture, output_within, run_enforcer, signal, wait_for,
};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const POLICY: &str = r#"
@id("read-workspace")
permit (principal, action == Action::"file_read", resource in Workspace::"root");
"#;

/// Segments of 1 KiB: a rotation every few decisions.
const SEGMENT: u64 = 1024;

fn segments_dir(evidence: &Path) -> PathBuf {
    let mut name = evidence.as_os_str().to_owned();
    name.push(".segments");
    PathBuf::from(name)
}

/// The closed segments of `evidence`, oldest first.
fn closed(evidence: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(segments_dir(evidence)) {
        Ok(entries) => entries
            .map(|e| e.unwrap().path())
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// One session of the enforcer on `f`'s evidence in 1 KiB segments: asks
/// `reads` allowed reads, then shuts it down (final checkpoint). Returns
/// the log index of every permit.
fn session(f: &Fixture, tag: &str, reads: usize) -> Vec<u64> {
    let kernel = Kernel::spawn(f.config().evidence_segment(SEGMENT)).unwrap();
    let indexes = (0..reads)
        .map(|i| {
            kernel
                .authorize(Action::file_read(f.ws(&format!("{tag}-{i}.txt"))))
                .unwrap()
                .receipt()
                .body()
                .log_index
        })
        .collect();
    kernel.shutdown(Duration::from_secs(20));
    indexes
}

/// The enforcer's exit code with `args`, and what it printed on standard
/// output and standard error.
fn enforcer(args: &[&str]) -> (i32, String, String) {
    let out = run_enforcer(args);
    let (stdout, stderr) = kernel_testkit::text(&out);
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

fn text(path: &Path) -> String {
    path.display().to_string()
}

/// `audit verify --json` of `args`: its exit code and document.
fn verify_json(args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = vec!["audit", "verify", "--json"];
    all.extend(args);
    let (code, out, err) = enforcer(&all);
    let document = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    (code, document)
}

/// Every record of the log made of `files`, in order, after checking they
/// verify as one log.
fn records_of(files: &[PathBuf]) -> Vec<Vec<u8>> {
    let options = AuditOptions::default();
    let mut audit = SegmentedAudit::new(&options);
    let mut records = Vec::new();
    for file in files {
        let bytes = std::fs::read(file).unwrap();
        audit
            .push(&bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        records.extend(
            split_records(&bytes)
                .unwrap()
                .into_iter()
                .map(<[u8]>::to_vec),
        );
    }
    audit.finish().unwrap();
    records
}

/// Three sessions on one log in 1 KiB segments, each a restart on the
/// segmented log: the chain goes on (one origin, record indexes and the
/// tree carried from segment to segment and from session to session),
/// every permit is the record at its index, and `audit verify LOG` checks
/// the closed segments and the active one as one log.
#[test]
fn restarts_on_a_segmented_log_continue_the_chain() {
    let f = fixture(POLICY);
    let mut permits = Vec::new();
    for (tag, reads) in [("a", 9), ("b", 7), ("c", 8)] {
        let before = closed(&f.evidence).len();
        permits.extend(session(&f, tag, reads));
        assert!(
            closed(&f.evidence).len() > before,
            "session {tag} rotated no segment"
        );
    }
    let closed = closed(&f.evidence);
    assert!(closed.len() >= 6, "{closed:?}");

    let (code, document) = verify_json(&[&text(&f.evidence)]);
    assert_eq!(code, 0, "{document}");
    assert_eq!(document["sessions"], 3);
    assert_eq!(document["allowed"], 24);
    assert_eq!(document["first_record"], 0);
    let spans = document["segments"].as_array().unwrap();
    assert_eq!(spans.len(), closed.len() + 1);
    let mut next = 0;
    for (span, file) in spans.iter().zip(closed.iter().chain([&f.evidence])) {
        assert_eq!(span["file"], text(file));
        assert_eq!(span["first"], next, "segments follow each other");
        next += span["records"].as_u64().unwrap();
        if file != &f.evidence {
            // Named by its first record.
            assert!(
                file.to_string_lossy()
                    .ends_with(&format!("{:020}", span["first"])),
                "{}",
                file.display()
            );
        }
    }
    assert_eq!(document["records"], next);

    let mut files = closed.clone();
    files.push(f.evidence.clone());
    let records = records_of(&files);
    let mut origins = std::collections::BTreeSet::new();
    for index in &permits {
        let Record::Decision { receipt, .. } =
            decode_record(&records[usize::try_from(*index).unwrap()]).unwrap()
        else {
            panic!("record {index} is no decision");
        };
        let body = decode_receipt_body_unverified(&receipt.body).unwrap();
        assert_eq!(body.log_index, *index);
        assert_eq!(body.decision, Decision::Allow);
    }
    for record in &records {
        if let Record::Event(signed) = decode_record(record).unwrap()
            && let Ok(kernel_core::Event::SessionStart { origin, .. }) = signed.decode_unverified()
        {
            origins.insert(origin);
        }
    }
    assert_eq!(origins.len(), 1, "one log: {origins:?}");

    // The text form names the files.
    let (code, out, err) = enforcer(&["audit", "verify", &text(&f.evidence)]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("segments: {} files", closed.len() + 1)),
        "{out}"
    );
    assert!(out.contains(&text(&closed[0])), "{out}");
}

/// A segmented log of several rotations, and another log's segments.
struct Logs {
    f: Fixture,
    closed: Vec<PathBuf>,
    other: Vec<PathBuf>,
}

fn logs() -> Logs {
    let f = fixture(POLICY);
    session(&f, "a", 10);
    session(&f, "b", 10);
    let g = fixture(POLICY);
    session(&g, "x", 6);
    let other = closed(&g.evidence);
    assert!(other.len() >= 2);
    // Kept beyond `g`'s directory, which goes with `g`.
    let kept = f.dir.path().join("other-log");
    std::fs::create_dir(&kept).unwrap();
    let other = other
        .iter()
        .map(|p| {
            let to = kept.join(p.file_name().unwrap());
            std::fs::copy(p, &to).unwrap();
            to
        })
        .collect();
    let closed = closed(&f.evidence);
    assert!(closed.len() >= 5, "{closed:?}");
    Logs { f, closed, other }
}

/// Runs `audit verify --json` of `args`, which must be refused naming
/// `segment` and saying `what`; the same in text.
fn refused(args: &[&str], segment: &Path, what: &str) {
    let (code, document) = verify_json(args);
    assert_eq!(code, 1, "accepted: {document}");
    assert_eq!(document["ok"], false);
    assert_eq!(document["segment"], text(segment), "{document}");
    let error = document["error"].as_str().unwrap();
    assert!(error.contains(what), "{error}");
    assert!(error.contains(&text(segment)), "{error}");
    let mut all = vec!["audit", "verify"];
    all.extend(args);
    let (code, _, err) = enforcer(&all);
    assert_eq!(code, 1);
    assert!(err.contains(what) && err.contains(&text(segment)), "{err}");
}

/// A closed segment moved away leaves a gap: named at the segment after
/// it.
#[test]
fn a_missing_segment_is_named() {
    let logs = logs();
    let (code, _) = verify_json(&[&text(&logs.f.evidence)]);
    assert_eq!(code, 0);
    let gone = &logs.closed[2];
    let away = logs.f.dir.path().join("archived");
    std::fs::rename(gone, &away).unwrap();
    refused(&[&text(&logs.f.evidence)], &logs.closed[3], "missing");
    // The newest left out of a list of files: the active segment follows
    // a gap.
    let mut files: Vec<String> = logs.closed[..2].iter().map(|p| text(p)).collect();
    files.push(text(&logs.f.evidence));
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    refused(&files, &logs.f.evidence, "missing");
    // Given back (archived segments given by name): the log verifies.
    let mut files: Vec<String> = logs.closed[..2].iter().map(|p| text(p)).collect();
    files.push(text(&away));
    files.extend(logs.closed[3..].iter().map(|p| text(p)));
    files.push(text(&logs.f.evidence));
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    let (code, document) = verify_json(&files);
    assert_eq!(code, 0, "{document}");
}

/// Two segments swapped, in a list of files and by their names in the
/// segments directory.
#[test]
fn a_reordered_segment_is_named() {
    let logs = logs();
    let mut files: Vec<String> = logs.closed.iter().map(|p| text(p)).collect();
    files.swap(1, 3);
    files.push(text(&logs.f.evidence));
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    // The third file given begins before the second.
    refused(&files, &logs.closed[2], "out of order");
    // Renamed in the directory: the names say one order, the segments
    // another.
    let (a, b) = (&logs.closed[1], &logs.closed[3]);
    let swap = logs.f.dir.path().join("swap");
    std::fs::rename(a, &swap).unwrap();
    std::fs::rename(b, a).unwrap();
    std::fs::rename(&swap, b).unwrap();
    refused(&[&text(&logs.f.evidence)], &logs.closed[2], "out of order");
}

/// The same segment given twice, in a list and as a copy in the
/// directory under a name of its own.
#[test]
fn a_duplicated_segment_is_named() {
    let logs = logs();
    let mut files: Vec<String> = logs.closed.iter().map(|p| text(p)).collect();
    files.insert(3, text(&logs.closed[2]));
    files.push(text(&logs.f.evidence));
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    refused(&files, &logs.closed[2], "given twice");
    let name = logs.closed[2]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let (stem, number) = name.rsplit_once('.').unwrap();
    let number: u64 = number.parse().unwrap();
    let copy = segments_dir(&logs.f.evidence).join(format!("{stem}.{:020}", number + 1));
    std::fs::copy(&logs.closed[2], &copy).unwrap();
    refused(&[&text(&logs.f.evidence)], &copy, "given twice");
}

/// A segment of another log, among this log's segments in the
/// directory, and in a list of files.
#[test]
fn a_segment_from_another_log_is_named() {
    let logs = logs();
    let mut files: Vec<String> = logs.closed.iter().map(|p| text(p)).collect();
    files[2] = text(&logs.other[1]);
    files.push(text(&logs.f.evidence));
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    refused(&files, &logs.other[1], "another log");
    std::fs::remove_file(&logs.closed[2]).unwrap();
    std::fs::copy(&logs.other[1], &logs.closed[2]).unwrap();
    refused(&[&text(&logs.f.evidence)], &logs.closed[2], "another log");
}

/// The newest segment alone (`--only`): verified from the checkpoint it
/// begins with, and the output says which records it did not check.
/// With the enforcer's key, that checkpoint must be signed by it.
#[test]
fn the_newest_segment_alone_says_what_it_cannot_vouch_for() {
    let logs = logs();
    let (code, whole) = verify_json(&[&text(&logs.f.evidence)]);
    assert_eq!(code, 0);
    let first = whole["segments"].as_array().unwrap().last().unwrap()["first"]
        .as_u64()
        .unwrap();
    assert!(first > 0);
    let (code, alone) = verify_json(&["--only", &text(&logs.f.evidence)]);
    assert_eq!(code, 0, "{alone}");
    assert_eq!(alone["first_record"], first);
    assert_eq!(alone["records"], whole["records"]);
    let (code, out, err) = enforcer(&["audit", "verify", "--only", &text(&logs.f.evidence)]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("verified from record {first} on"))
            && out.contains(&format!(
                "records 0 to {} are in earlier segments",
                first - 1
            ))
            && out.contains("not checked"),
        "{out}"
    );
    // A proof needs every record.
    let (code, _, err) = enforcer(&[
        "audit",
        "prove",
        "--index",
        "1",
        "--only",
        &text(&logs.f.evidence),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("every segment"), "{err}");
    let (code, out, err) = enforcer(&["audit", "prove", "--index", "1", &text(&logs.f.evidence)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"index\":1"), "{out}");
    // Inspect numbers the records by their index in the log.
    let (code, out, _) = enforcer(&["audit", "inspect", "--json", &text(&logs.f.evidence)]);
    assert_eq!(code, 0);
    let indexes: Vec<u64> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["index"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(indexes, (0..indexes.len() as u64).collect::<Vec<_>>());
    assert_eq!(indexes.len() as u64, whole["records"].as_u64().unwrap());
}

/// SIGKILL of an enforcer under load that rotates every few commits, at
/// seeded moments (so that kills land in rotations too): every decision a
/// client holds a receipt for is the record at its index, a new enforcer
/// starts on the log and continues it, and the segments verify as one
/// log.
#[test]
fn sigkill_under_load_with_rotations_loses_nothing_acknowledged() {
    for seed in [7u64, 0x5e9, 0xbad5eed] {
        let f = fixture(POLICY);
        let mut rng = Seeded::new(seed);
        let config = || {
            f.config()
                .evidence_segment(SEGMENT)
                .timeout(Duration::from_secs(30))
                .startup_timeout(Duration::from_secs(30))
        };
        let kernel = Kernel::spawn(config()).unwrap();
        let pid = kernel.enforcer_pid().unwrap();
        let received = Mutex::new(Vec::new());
        let answered = AtomicUsize::new(0);
        let delay = Duration::from_millis(rng.range(30, 250));
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let (kernel, received, answered, f) = (&kernel, &received, &answered, &f);
                scope.spawn(move || {
                    for call in 0..2_000 {
                        let path = f.ws(&format!("t{thread}-c{call}.txt"));
                        match kernel.authorize(Action::file_read(path.clone())) {
                            Ok(permit) => {
                                received
                                    .lock()
                                    .unwrap()
                                    .push((permit.receipt().body().log_index, path));
                                answered.fetch_add(1, Ordering::Relaxed);
                            }
                            // The enforcer is gone: this thread is done.
                            Err(
                                Denial::EnforcerGone
                                | Denial::Transport(_)
                                | Denial::Timeout(_)
                                | Denial::Halted,
                            ) => return,
                            Err(other) => panic!("{other:?}"),
                        }
                    }
                });
            }
            wait_for("the first answers", Duration::from_secs(30), || {
                answered.load(Ordering::Relaxed) > 0
            });
            let started = Instant::now();
            while started.elapsed() < delay {
                std::thread::sleep(Duration::from_millis(5));
            }
            signal(pid, "KILL");
        });
        drop(kernel);
        let received = received.into_inner().unwrap();
        assert!(!received.is_empty());
        // A new enforcer continues the log.
        let kernel = Kernel::spawn(config()).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let after = kernel
            .authorize(Action::file_read(f.ws("after.txt")))
            .unwrap()
            .receipt()
            .body()
            .log_index;
        kernel.shutdown(Duration::from_secs(20));
        let mut files = closed(&f.evidence);
        files.push(f.evidence.clone());
        let records = records_of(&files);
        assert!(u64::try_from(records.len()).unwrap() > after, "seed {seed}");
        for (index, path) in &received {
            let Record::Decision { request, receipt } =
                decode_record(&records[usize::try_from(*index).unwrap()]).unwrap()
            else {
                panic!("seed {seed}: record {index} is no decision");
            };
            let body = decode_receipt_body_unverified(&receipt.body).unwrap();
            assert_eq!(body.log_index, *index);
            let request = kernel_core::EncodedRequest::decode(&request).unwrap();
            assert_eq!(
                request.request().action.action(),
                &Action::file_read(path.clone()),
                "seed {seed}: record {index}"
            );
        }
        let (code, document) = verify_json(&[&text(&f.evidence)]);
        assert_eq!(code, 0, "seed {seed}: {document}");
        assert!(
            !segments_dir(&f.evidence).join(".next").exists(),
            "seed {seed}"
        );
    }
}

/// Everything the kernel floor allows besides itself: the floor alone
/// keeps the agent from the evidence.
const PERMIT_ALL: &str = r#"
@id("everything")
permit (principal, action, resource);
"#;

/// The file's bytes and permission bits.
fn snapshot(path: &Path) -> (Vec<u8>, u32) {
    use std::os::unix::fs::PermissionsExt as _;
    (
        std::fs::read(path).unwrap(),
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777,
    )
}

/// A governed agent (`run --govern-syscalls`, real `sh` and coreutils)
/// under a policy that permits everything, while its own decisions close
/// segment after segment: it cannot create the segments directory before
/// the first rotation, nor delete, append to, truncate, rename, link,
/// chmod or remove the directory of a segment closed during its run. The
/// effect is judged on the files: the segment is there, byte for byte and
/// mode for mode as it was, the directory too, and the log verifies.
#[test]
fn a_governed_agent_cannot_touch_a_closed_segment() {
    let f = fixture(PERMIT_ALL);
    let ws = &f.workspace;
    std::fs::write(ws.join("data.txt"), "data\n").unwrap();
    let dir = segments_dir(&f.evidence);
    let script = format!(
        r#"
        dir='{dir}'
        mkdir "$dir"; echo "mkdir:$?" >> result
        ln -s /tmp "$dir"; echo "symlink:$?" >> result
        i=0
        while [ ! -s go ]; do
            cat data.txt > /dev/null
            i=$((i+1))
            [ $i -gt 3000 ] && exit 3
        done
        seg=$(cat go)
        rm -f "$seg"; echo "rm:$?" >> result
        printf x >> "$seg"; echo "append:$?" >> result
        (: > "$seg"); echo "truncate:$?" >> result
        mv "$seg" stolen; echo "mv:$?" >> result
        ln "$seg" hard; echo "link:$?" >> result
        chmod 600 "$seg"; echo "chmod:$?" >> result
        rm -rf "$dir"; echo "rmdir:$?" >> result
        echo done > finished
        "#,
        dir = dir.display()
    );
    let mut run = f.governed(&["--evidence-segment", "1KiB"], "/bin/sh", &["-c", &script]);
    run.current_dir(ws)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = Reaped(run.spawn().unwrap());
    // Closed: under its name, then made read only once the new segment
    // took the log's name.
    wait_for(
        "a segment closed during the run",
        Duration::from_secs(60),
        || {
            closed(&f.evidence)
                .first()
                .is_some_and(|segment| snapshot(segment).1 == 0o400)
        },
    );
    let segment = closed(&f.evidence)[0].clone();
    let before = snapshot(&segment);
    std::fs::write(ws.join("go"), text(&segment)).unwrap();
    wait_for("the agent's attempts", Duration::from_secs(60), || {
        ws.join("finished").exists() || child.0.try_wait().unwrap().is_some()
    });
    wait_for("the run to end", Duration::from_secs(30), || {
        child.0.try_wait().unwrap().is_some()
    });
    let result = std::fs::read_to_string(ws.join("result")).unwrap_or_default();
    assert!(
        ws.join("finished").exists(),
        "the agent did not finish: {result}"
    );
    for attempt in [
        "mkdir", "symlink", "rm", "append", "truncate", "mv", "link", "chmod", "rmdir",
    ] {
        let line = result
            .lines()
            .find(|l| l.starts_with(&format!("{attempt}:")))
            .unwrap_or_else(|| panic!("no {attempt} in {result}"));
        assert_ne!(line, format!("{attempt}:0"), "{result}");
    }
    assert_eq!(snapshot(&segment), before, "the closed segment changed");
    assert!(!ws.join("stolen").exists() && !ws.join("hard").exists());
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::symlink_metadata(&dir).unwrap();
    assert!(meta.is_dir(), "the segments directory is the enforcer's");
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    let (code, document) = verify_json(&[&text(&f.evidence)]);
    assert_eq!(code, 0, "{document}");
    assert!(document["segments"].as_array().unwrap().len() >= 2);
    let denials = audit_inspect(&f.evidence)
        .lines()
        .filter(|l| l.contains("deny") && l.contains(&text(&dir)))
        .count();
    assert!(denials >= 7, "the floor's denials are recorded: {denials}");
}

/// What the probe agent of `a_supervised_agent_cannot_touch_a_closed_segment`
/// does, when this binary runs as that agent (`SEGMENT_PROBE` names the
/// segment): attacks it directly, then through the kernel's broker, and
/// prints what happened. Nothing otherwise.
#[test]
fn segment_probe() {
    let Ok(segment) = std::env::var("SEGMENT_PROBE") else {
        return;
    };
    let report = |what: &str, result: Result<(), String>| match result {
        Ok(()) => println!("probe {what}: SUCCEEDED"),
        Err(e) => println!("probe {what}: blocked ({e})"),
    };
    let io = |r: std::io::Result<()>| r.map_err(|e| e.to_string());
    report("remove", io(std::fs::remove_file(&segment)));
    report(
        "append",
        io(std::fs::OpenOptions::new()
            .append(true)
            .open(&segment)
            .map(drop)),
    );
    report("truncate", io(std::fs::File::create(&segment).map(drop)));
    report(
        "rename",
        io(std::fs::rename(&segment, format!("{segment}.moved"))),
    );
    let kernel = Kernel::connect_from_env(kernel_client::ClientConfig::default()).unwrap();
    report(
        "broker-delete",
        kernel.delete_file(&segment).map_err(|e| e.to_string()),
    );
    report(
        "broker-write",
        kernel
            .write_file(&segment, b"rewritten")
            .map_err(|e| e.to_string()),
    );
}

/// The same in plain supervised mode (`run`, Landlock and the broker): an
/// agent that asks the kernel to delete or rewrite a closed segment is
/// denied by the floor; one that tries directly is stopped by the
/// confinement. The segment's content is unchanged. (Landlock does not
/// govern metadata: in this mode an agent can change the mode of any
/// file it can name, the kernel's own included, as SECURITY.md says; so
/// no `chmod` is tried here.)
#[test]
fn a_supervised_agent_cannot_touch_a_closed_segment() {
    let f = fixture(PERMIT_ALL);
    session(&f, "a", 8);
    let segment = closed(&f.evidence)[0].clone();
    let before = snapshot(&segment);
    let me = std::env::current_exe().unwrap();
    let out = output_within(
        f.run_command(&["--evidence-segment", "1KiB"])
            .arg("--")
            .arg(&me)
            .args([
                "--exact",
                "segment_probe",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SEGMENT_PROBE", &segment),
        Duration::from_secs(60),
        "the supervised probe",
    );
    let said = String::from_utf8_lossy(&out.stdout);
    for attempt in [
        "remove",
        "append",
        "truncate",
        "rename",
        "broker-delete",
        "broker-write",
    ] {
        let line = said
            .lines()
            .find(|l| l.contains(&format!("probe {attempt}:")))
            .unwrap_or_else(|| {
                panic!(
                    "the probe said nothing of {attempt}: {said} {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        assert!(line.contains("blocked"), "{said}");
    }
    assert!(said.contains("kernel-floor-assets"), "{said}");
    assert_eq!(snapshot(&segment), before, "the closed segment changed");
    let (code, document) = verify_json(&[&text(&f.evidence)]);
    assert_eq!(code, 0, "{document}");
}
