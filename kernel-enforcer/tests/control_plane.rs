//! The operator's hand on a running enforcer: kill switch (socket and
//! signal), status, reload, rate limits, who may use the control socket,
//! and a full disk.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use kernel_client::{Action, Denial, EffectError, Exec, Kernel};
use kernel_core::{Event, Record, audit, decode_record, split_records};
use kernel_testkit::{enforcer, fixture, log, operator, pinned, signal, wait_for};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const POLICY: &str = r#"
@id("read-workspace")
permit (principal, action == Action::"file_read", resource in Workspace::"root");

@id("touch")
@limit("3/minute")
permit (principal, action == Action::"exec", resource)
when { resource.name == "touch" && context.cwd_in_workspace };
"#;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every event of the log at `evidence`, with its index.
fn events(evidence: &Path) -> Vec<(usize, Event)> {
    log(evidence)
        .into_iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            kernel_testkit::Entry::Event(event) => Some((i, event)),
            _ => None,
        })
        .collect()
}

/// Index of every allow decision in the log.
fn allows(evidence: &Path) -> Vec<usize> {
    log(evidence)
        .iter()
        .enumerate()
        .filter_map(|(i, e)| (e.decision() == Some(kernel_core::Decision::Allow)).then_some(i))
        .collect()
}

#[test]
fn halt_over_the_socket_denies_everything_after_and_is_recorded_with_who_asked() {
    let f = fixture(POLICY);
    let kernel = f.spawn();
    let control = f.control();
    kernel.read_file(&f.ws(".")).ok();
    std::fs::write(f.workspace.join("a"), "x").unwrap();
    assert!(kernel.read_file(&f.ws("a")).is_ok());

    let status = operator(&control, &["status"]);
    assert!(status.status.success(), "{status:?}");
    assert!(
        stdout(&status).contains("\"halted\": null") || stdout(&status).contains("halted: null"),
        "{}",
        stdout(&status)
    );

    let halt = operator(&control, &["halt", "--reason", "incident 7"]);
    assert!(halt.status.success(), "{halt:?}");
    assert!(stdout(&halt).contains("halted"));
    // Every later request is denied, and the effect does not happen.
    match kernel.read_file(&f.ws("a")) {
        Err(EffectError::Denied(Denial::Policy { reasons, .. })) => {
            assert_eq!(reasons, vec!["halted".to_owned()]);
        }
        other => panic!("allowed or wrong denial after halt: {other:?}"),
    }
    let touched = kernel.exec(Exec::new("/usr/bin/touch").arg("after-halt").cwd(f.ws("")));
    assert!(touched.is_err());
    assert!(!f.workspace.join("after-halt").exists());

    let status = operator(&control, &["status", "--json"]);
    assert!(
        stdout(&status).contains("incident 7"),
        "{}",
        stdout(&status)
    );
    // The enforcer made itself non-dumpable (no ptrace or /proc/<pid>/mem
    // by processes of its uid), as the OS reports to it.
    let answer: serde_json::Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(
        answer["data"]["dumpable"],
        serde_json::Value::Bool(false),
        "{answer}"
    );

    let key = *kernel.public_key();
    drop(kernel);
    let halt_at = events(&f.evidence)
        .into_iter()
        .find_map(|(i, e)| match e {
            Event::Halt { cause, by, .. } => {
                assert_eq!(cause, "incident 7");
                assert!(by.starts_with("operator uid 0 (pid "), "{by}");
                Some(i)
            }
            _ => None,
        })
        .expect("halt recorded");
    assert!(allows(&f.evidence).iter().all(|&i| i < halt_at));
    audit(&std::fs::read(&f.evidence).unwrap(), &pinned(&key)).unwrap();
}

#[test]
fn sigusr1_halts_too() {
    let f = fixture(POLICY);
    let kernel = f.spawn();
    std::fs::write(f.workspace.join("a"), "x").unwrap();
    assert!(kernel.read_file(&f.ws("a")).is_ok());
    signal(kernel.enforcer_pid().unwrap(), "USR1");
    // Reads go on being allowed until the signal is handled; then each is
    // denied as halted. A read allowed just before the halt whose permit
    // had not been sent yet (its record still being synced) is withheld.
    wait_for(
        "SIGUSR1 to halt the enforcer",
        Duration::from_secs(10),
        || match kernel.read_file(&f.ws("a")) {
            Ok(_) | Err(EffectError::Denied(Denial::Halted)) => false,
            Err(EffectError::Denied(Denial::Policy { reasons, .. })) => {
                assert_eq!(reasons, vec!["halted".to_owned()]);
                true
            }
            Err(other) => panic!("wrong denial after SIGUSR1: {other:?}"),
        },
    );
    assert!(kernel.read_file(&f.ws("a")).is_err());
    drop(kernel);
    assert!(events(&f.evidence).iter().any(|(_, e)| matches!(e,
        Event::Halt { by, .. } if by == "signal SIGUSR1")));
}

#[test]
fn only_the_operator_uid_may_use_the_control_socket() {
    let f = fixture(POLICY);
    // This enforcer's operator is uid 4242, not us.
    let kernel = Kernel::spawn(f.config().operator_uid(4242)).unwrap();
    let control = f.control();
    let refused = operator(&control, &["halt"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is not the operator"),
        "{refused:?}"
    );
    // A process of another uid is refused by its credentials too.
    let other = Command::new(enforcer())
        .args(["halt", "--control"])
        .arg(&control)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_eq!(other.status.code(), Some(1), "{other:?}");
    // Refused by the enforcer (a signed refusal), or before it is even
    // asked: that uid cannot read the key file in this private directory.
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("is not the operator")
            || String::from_utf8_lossy(&other.stderr).contains("cannot authenticate the enforcer"),
        "{other:?}"
    );
    // Neither attempt halted anything.
    std::fs::write(f.workspace.join("a"), "x").unwrap();
    assert!(kernel.read_file(&f.ws("a")).is_ok());
    drop(kernel);
    assert!(
        !events(&f.evidence)
            .iter()
            .any(|(_, e)| matches!(e, Event::Halt { .. }))
    );
}

#[test]
fn a_rate_limit_caps_allows_and_names_itself() {
    let f = fixture(POLICY);
    let kernel = f.spawn();
    for i in 0..3 {
        kernel
            .exec(
                Exec::new("/usr/bin/touch")
                    .arg(format!("t{i}"))
                    .cwd(f.ws("")),
            )
            .unwrap();
    }
    match kernel.exec(Exec::new("/usr/bin/touch").arg("t3").cwd(f.ws(""))) {
        Err(EffectError::Denied(Denial::Policy {
            policies, reasons, ..
        })) => {
            assert_eq!(policies, vec!["touch".to_owned()]);
            assert!(
                reasons[0].contains("3/minute") && reasons[0].contains("touch"),
                "{reasons:?}"
            );
        }
        other => panic!("the limit did not hold: {other:?}"),
    }
    assert!(!f.workspace.join("t3").exists());
    // Other policies are not affected.
    std::fs::write(f.workspace.join("a"), "x").unwrap();
    assert!(kernel.read_file(&f.ws("a")).is_ok());
}

#[test]
fn reload_valid_and_invalid() {
    let f = fixture(POLICY);
    let kernel = f.spawn();
    let control = f.control();
    std::fs::write(f.workspace.join("a"), "x").unwrap();
    let before = kernel.authorize(Action::file_read(f.ws("a"))).unwrap();
    let old_digest = before.receipt().body().policy_digest;

    // Invalid: refused with the validation message, the old policy stays.
    std::fs::write(
        &f.policy,
        "permit (principal, action == Action::\"file_raed\", resource);",
    )
    .unwrap();
    let refused = operator(&control, &["reload"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stdout(&refused).contains("file_raed"),
        "{}",
        stdout(&refused)
    );
    let still = kernel.authorize(Action::file_read(f.ws("a"))).unwrap();
    assert_eq!(still.receipt().body().policy_digest, old_digest);

    // Valid: a policy that allows nothing takes effect for the next request.
    std::fs::write(&f.policy, "// nothing is permitted\n").unwrap();
    let reloaded = operator(&control, &["reload"]);
    assert!(reloaded.status.success(), "{reloaded:?}");
    match kernel.authorize(Action::file_read(f.ws("a"))) {
        Err(Denial::Policy { .. }) => {}
        other => panic!("the new policy is not in force: {other:?}"),
    }
    drop(kernel);
    assert!(
        events(&f.evidence)
            .iter()
            .any(|(_, e)| matches!(e, Event::PolicyLoad { .. }))
    );
}

#[test]
fn a_full_disk_halts_and_nothing_is_allowed_after() {
    let f = fixture(POLICY);
    let mount = f.dir.path().join("tiny");
    std::fs::create_dir(&mount).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=12k", "tmpfs"])
        .arg(&mount)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        // Mounting needs root; CI runs as root. Say so loudly rather than pass quietly.
        eprintln!(
            "SKIPPED a_full_disk_halts_and_nothing_is_allowed_after: cannot mount a tmpfs here"
        );
        return;
    }
    let evidence = mount.join("evidence.log");
    let config = kernel_client::SpawnConfig::new(&f.policy, &f.workspace, &evidence)
        .enforcer(enforcer())
        .control_socket(f.dir.path().join("control"));
    let kernel = Kernel::spawn(config).unwrap();
    std::fs::write(f.workspace.join("a"), "x").unwrap();
    let mut allowed = 0;
    let mut halted_at = None;
    for i in 0..200 {
        match kernel.read_file(&f.ws("a")) {
            Ok(_) => allowed += 1,
            Err(EffectError::Denied(Denial::Halted)) => {
                halted_at = Some(i);
                break;
            }
            Err(other) => panic!("unexpected: {other:?}"),
        }
    }
    assert!(halted_at.is_some(), "the disk never filled");
    for _ in 0..10 {
        assert!(matches!(
            kernel.read_file(&f.ws("a")),
            Err(EffectError::Denied(Denial::Halted))
        ));
    }
    let bytes = std::fs::read(&evidence).unwrap();
    drop(kernel);
    let _ = Command::new("umount").arg(&mount).status();
    // Every decision that was answered is in the log, intact (a torn tail,
    // never acknowledged, may follow).
    let (records, _) = kernel_core::split_records_prefix(&bytes);
    let logged = records
        .iter()
        .filter(|r| matches!(decode_record(r), Ok(Record::Decision { .. })))
        .count();
    assert!(logged >= allowed, "{logged} logged, {allowed} acknowledged");
}

#[test]
fn a_second_enforcer_cannot_write_the_same_evidence() {
    let f = fixture(POLICY);
    let first = f.spawn();
    match Kernel::spawn(
        f.config()
            .control_socket(f.dir.path().join("other.control")),
    ) {
        Err(kernel_client::SpawnError::EnforcerExited { message, .. }) => {
            assert!(message.contains("another enforcer"), "{message}");
        }
        other => panic!("two writers on one log: {other:?}"),
    }
    std::fs::write(f.workspace.join("a"), "x").unwrap();
    assert!(first.read_file(&f.ws("a")).is_ok());
    let key = *first.public_key();
    drop(first);
    audit(&std::fs::read(&f.evidence).unwrap(), &pinned(&key)).unwrap();
}

/// How an impostor answers a request line.
type ImpostorReply = Box<dyn Fn(&str) -> String + Send>;

/// Runs the operator's `halt` against `control` and returns its output.
fn halt_through(control: &Path) -> Output {
    operator(control, &["halt", "--reason", "drill"])
}

/// A process that holds the control socket's name answers each request
/// with `answer(request line)`, until `count` requests were answered.
fn impostor(
    control: &Path,
    count: usize,
    answer: impl Fn(&str) -> String + Send + 'static,
) -> std::thread::JoinHandle<usize> {
    use std::io::{BufRead, BufReader, Write};
    let address = kernel_enforcer::session::control::socket_address(control).unwrap();
    let listener = std::os::unix::net::UnixListener::bind_addr(&address).unwrap();
    std::thread::spawn(move || {
        let mut served = 0;
        for stream in listener.incoming().take(count) {
            let mut stream = stream.unwrap();
            let mut line = String::new();
            BufReader::new(&mut stream).read_line(&mut line).unwrap();
            let mut reply = answer(&line);
            reply.push('\n');
            stream.write_all(reply.as_bytes()).unwrap();
            served += 1;
        }
        served
    })
}

#[test]
fn an_impostor_holding_the_control_name_cannot_pass_for_the_enforcer() {
    use std::io::{BufRead, BufReader, Write};
    let f = fixture(POLICY);
    let control = f.control();
    // A real enforcer leaves its key file at the control path; capture one
    // real, signed answer to replay later.
    let kernel = f.spawn();
    let key = std::fs::read_to_string(&control).unwrap();
    assert_eq!(
        kernel_core::parse_public_key(&key).unwrap(),
        *kernel.public_key()
    );
    let genuine = {
        let address = kernel_enforcer::session::control::socket_address(&control).unwrap();
        let mut stream = std::os::unix::net::UnixStream::connect_addr(&address).unwrap();
        let challenge = "ab".repeat(32);
        writeln!(
            stream,
            r#"{{"command":"status","challenge":"{challenge}"}}"#
        )
        .unwrap();
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        assert!(line.contains("\"signature\""), "{line}");
        line.trim_end().to_owned()
    };
    drop(kernel);
    let other_key = kernel_core::SigningKey::from_bytes(&[7; 32]);
    let fake = r#"{"ok":true,"message":"halted: every request is now denied (drill)","data":null}"#;
    // What an impostor could send: the old unsigned form, a signature by
    // another key over the operator's own challenge, and a genuine signed
    // answer to someone else's challenge.
    let answers: Vec<ImpostorReply> = vec![
        Box::new(move |_| fake.to_owned()),
        Box::new(move |request: &str| {
            let value: serde_json::Value = serde_json::from_str(request).unwrap();
            let challenge: [u8; 32] = kernel_core::unhex(value["challenge"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            let signature =
                kernel_core::sign_control_reply(&other_key, &challenge, request.trim_end(), fake);
            serde_json::json!({"reply": fake, "signature": kernel_core::hex(&signature)})
                .to_string()
        }),
        Box::new(move |_| genuine.clone()),
    ];
    for answer in answers {
        let served = impostor(&control, 1, answer);
        let halt = halt_through(&control);
        assert_eq!(served.join().unwrap(), 1, "the impostor was not asked");
        assert_eq!(halt.status.code(), Some(1), "{halt:?}");
        let stderr = String::from_utf8_lossy(&halt.stderr);
        assert!(
            stderr.contains("not signed by the enforcer's key"),
            "{stderr}"
        );
        assert!(!stdout(&halt).contains("halted"), "{halt:?}");
    }
}

#[test]
fn the_control_name_is_held_before_the_agent_starts_and_the_evidence_ends_with_a_checkpoint() {
    let f = fixture(POLICY);
    let control = f.control();
    let address = kernel_enforcer::session::control::socket_address(&control).unwrap();
    let name = String::from_utf8_lossy(
        std::os::linux::net::SocketAddrExt::as_abstract_name(&address).unwrap(),
    )
    .into_owned();
    // The agent tries to take the name at once, and never connects.
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n\
         try:\n    s.bind('\\0{name}')\n    print('bound', flush=True)\n\
         except OSError as e:\n    print('refused', e.errno, flush=True)\n"
    );
    let out = Command::new(enforcer())
        .arg("run")
        .arg("--policy")
        .arg(&f.policy)
        .arg("--workspace")
        .arg(&f.workspace)
        .arg("--evidence")
        .arg(&f.evidence)
        .args([
            "--connect-timeout",
            "2",
            "--",
            "/usr/bin/python3",
            "-c",
            &script,
        ])
        .output()
        .unwrap();
    let said = stdout(&out);
    assert!(
        said.contains(&format!("refused {}", libc::EADDRINUSE)),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    // The agent never joined, and the evidence still ends as documented:
    // with a checkpoint covering every record.
    let bytes = std::fs::read(&f.evidence).unwrap();
    let records = split_records(&bytes).unwrap();
    assert!(
        records
            .last()
            .is_some_and(|r| decode_record(r).unwrap().checkpoint_note().is_some()),
        "the evidence does not end with a checkpoint"
    );
}

#[test]
fn a_permit_dies_with_the_kernel_that_obtained_it() {
    let f = fixture(POLICY);
    let kernel = f.spawn();
    let marker = f.workspace.join("ran-after-drop");
    let permit = kernel
        .authorize(Action::Exec(
            Exec::new("/usr/bin/touch")
                .arg(marker.to_str().unwrap())
                .cwd(f.ws("")),
        ))
        .unwrap();
    assert!(!permit.is_expired(kernel_core::now_ms()));
    drop(kernel);
    match kernel_client::run_exec(permit) {
        Err(EffectError::SessionEnded) => {}
        other => panic!("a permit outlived its kernel: {other:?}"),
    }
    assert!(!marker.exists(), "the program ran");
}

#[test]
fn a_peer_that_holds_a_connection_open_does_not_hold_up_the_operator() {
    use std::io::Write;
    let f = fixture(POLICY);
    let kernel = f.spawn();
    let control = f.control();
    let address = kernel_enforcer::session::control::socket_address(&control).unwrap();
    // Connections that send part of a line and then nothing, more of them
    // than the control plane serves at once.
    // The first `MAX_CONTROL_CONNECTIONS` are served (and wait for the rest
    // of their line); the enforcer refuses the others at once and closes
    // them, so their write may find the connection already closed.
    let mut held = Vec::new();
    let most = kernel_enforcer::session::control::MAX_CONTROL_CONNECTIONS;
    for n in 0..(most + 4) {
        let mut stream = std::os::unix::net::UnixStream::connect_addr(&address).unwrap();
        match stream.write_all(b"{") {
            Ok(()) => {}
            Err(e) if n >= most && e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Err(e) => panic!("connection {n} of {}: {e}", most + 4),
        }
        held.push(stream);
    }
    // Once the held connections have run out their patience, the operator
    // is served again.
    wait_for(
        "the operator to be served again",
        kernel_enforcer::session::control::CONTROL_PATIENCE * 3,
        || operator(&control, &["status"]).status.success(),
    );
    let halt = operator(&control, &["halt"]);
    assert!(halt.status.success(), "{halt:?}");
    drop(held);
    assert!(kernel.read_file(&f.ws("a")).is_err());
}
