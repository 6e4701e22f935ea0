//! Shell command lines decomposed into actions, compared with what bash
//! itself does with them. Generated lines (lists and pipelines of simple
//! commands with tricky quoting, redirections and `cd`) run under
//! `bash -c` with `PATH` holding only shim programs that record their
//! directory and argument vector; then:
//!
//! - every program bash ran is an `Exec` of the decomposition, with the
//!   same argument vector and directory;
//! - every file a redirection created is a file write of it, and every
//!   file a redirection opened for reading (named pipes, so an open cannot
//!   go unseen) is a file read of it;
//! - where every command must run (no failing program, no `||`, no `cd`),
//!   the programs decomposed are exactly the ones bash ran, argument
//!   vector for argument vector.
//!
//! Bash is required: without it the test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use kernel_core::{Action, canonical_path};
use kernel_enforcer::gateways::shell::command_actions;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Pieces of arguments; one argument is one or two of them side by side.
const ARG_PIECES: &[&str] = &[
    "plain",
    "-n",
    "--flag=v",
    "'single $x * ; | &'",
    r#""dq \" \\ \$ \` q""#,
    r"back\ slash",
    r"a\\b",
    r#""a\b""#,
    r"'it'\''s'",
    r#""""#,
    "''",
    "HEAD~1",
    "a=b",
    "x#y",
    "]",
    "\"new\nline\"",
    "a\\\nb",
    "é",
    "!",
    "%",
    "^",
    r#""*""#,
    "'{a,b}'",
    r"\*",
    r"\$HOME",
    r"\~",
    "'#'",
    r#""2""#,
    "2",
    "22",
    r#"a"b"'c'"#,
    r"\'",
    r#""'""#,
    r#"'"'"#,
    r#"\""#,
    "\"tab\there\"",
    "-",
    "--",
    "+x",
    "a:b",
    r"\;",
    r"'<>'",
    r#""&&""#,
    r"\|",
];

/// Programs, and whether they always run to success.
const PROGRAMS: &[(&str, bool)] = &[
    ("ok", true),
    ("ok", true),
    ("fail", false),
    ("'ok'", true),
    (r"o\k", true),
    (r#""fa"il"#, false),
    ("timeout 5 ok", true),
    ("timeout -k 1 -s TERM 5 fail", false),
    ("timeout --foreground 9 'ok'", true),
];

const OUT_OPS: &[&str] = &[
    ">", ">>", ">|", "&>", "&>>", "2>", "2>>", "1>", "3>", "<>", "3<>",
];
const OUT_TARGETS: &[&str] = &[
    "a.txt",
    "'b c.txt'",
    "sub/c.txt",
    r#""d""#,
    r"e\ f",
    "/dev/null",
    "2",
    "@ABS@/abs.txt",
    "'@ABS@/sub/abs 2.txt'",
    "-",
];
const DUPLICATIONS: &[&str] = &[
    "2>&1",
    ">&2",
    "1>&2",
    "3>&1",
    "4>&-",
    "<&0",
    "0<&0",
    "2>&1-",
    r#"1>&"2""#,
    ">&-",
    "<&-",
    "2>& -",
    "3>&\\\n-",
];
const IN_OPS: &[&str] = &["<", "0<", "3<"];
const IN_TARGETS: &[&str] = &["in1", "'in2'", r#""in1""#, "@ABS@/in2"];
const CDS: &[&str] = &[
    "cd ./sub",
    "cd .",
    "cd ..",
    "cd ./missing",
    "cd @ABS@",
    "cd '@ABS@/sub'",
];
const PIPES: &[&str] = &["|", " | ", "| ", "|& ", " |\n ", "|&"];
const CONNECTORS: &[(&str, bool)] = &[
    (" && ", true),
    ("&&", true),
    (" || ", false),
    ("||", false),
    ("; ", true),
    (";", true),
    ("\n", true),
    (" &&\n", true),
    (";\n\n", true),
];
const BLANKS: &[&str] = &[" ", " ", "\t", " \\\n", "  "];

#[derive(Debug, Clone)]
enum Item {
    Arg(String),
    Redirect(String),
}

fn arg() -> impl Strategy<Value = String> {
    prop::collection::vec(select(ARG_PIECES), 1..3).prop_map(|pieces| pieces.concat())
}

fn redirect() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (select(OUT_OPS), select(&["", " "][..]), select(OUT_TARGETS))
            .prop_map(|(op, blank, target)| format!("{op}{blank}{target}")),
        2 => select(DUPLICATIONS).prop_map(str::to_owned),
        2 => (select(IN_OPS), select(&["", " "][..]), select(IN_TARGETS))
            .prop_map(|(op, blank, target)| format!("{op}{blank}{target}")),
    ]
}

/// A simple command, and whether it surely runs to success.
fn simple() -> impl Strategy<Value = (String, bool)> {
    (
        select(PROGRAMS),
        prop::collection::vec(
            prop_oneof![3 => arg().prop_map(Item::Arg), 1 => redirect().prop_map(Item::Redirect)],
            0..4,
        ),
        prop::collection::vec(redirect(), 0..2),
        prop::collection::vec(select(BLANKS), 8),
        prop::collection::vec(prop::bool::weighted(0.3), 8),
    )
        .prop_map(|((program, sure), items, leading, blanks, tight)| {
            // A blank first: `;&` and `;;` right before would be `case`
            // syntax.
            let mut line = if leading.is_empty() {
                String::new()
            } else {
                " ".to_owned()
            };
            for redirect in &leading {
                line.push_str(redirect);
                line.push(' ');
            }
            line.push_str(program);
            // A closed descriptor makes a later duplication of it fail.
            let closes = |r: &String| r.ends_with('-');
            let mut sure = sure
                && !leading.iter().any(closes)
                && !items
                    .iter()
                    .any(|item| matches!(item, Item::Redirect(r) if closes(r)));
            let mut after_arg = false;
            for (k, item) in items.iter().enumerate() {
                match item {
                    Item::Arg(arg) => {
                        // Right after a closing `>&-`, with no blank: bash
                        // takes the `-` alone.
                        if !(line.ends_with("&-") && tight[k]) {
                            line.push_str(blanks[k]);
                        }
                        line.push_str(arg);
                        after_arg = true;
                    }
                    Item::Redirect(redirect) => {
                        // Right after an argument, with no blank: digits
                        // there are part of the argument or a descriptor
                        // (one digit: shells differ on more).
                        let long_descriptor = match k.checked_sub(1).map(|j| &items[j]) {
                            Some(Item::Arg(arg)) => {
                                arg.bytes().all(|b| b.is_ascii_digit())
                                    && (arg.len() > 1
                                        || redirect.starts_with(|c: char| c.is_ascii_digit()))
                            }
                            _ => false,
                        };
                        if after_arg && tight[k] && !long_descriptor {
                            sure &= !line.ends_with(|c: char| c.is_ascii_digit());
                        } else {
                            line.push_str(blanks[k]);
                        }
                        line.push_str(redirect);
                        after_arg = false;
                    }
                }
            }
            (line, sure)
        })
}

fn pipeline() -> impl Strategy<Value = (String, bool)> {
    prop_oneof![
        6 => (prop::collection::vec(simple(), 1..4), prop::collection::vec(select(PIPES), 3))
            .prop_map(|(commands, pipes)| {
                let sure = commands.iter().all(|(_, sure)| *sure);
                let mut line = String::new();
                for (k, (command, _)) in commands.iter().enumerate() {
                    if k > 0 {
                        line.push_str(pipes[k - 1]);
                    }
                    line.push_str(command);
                }
                (line, sure)
            }),
        1 => select(CDS).prop_map(|cd| (cd.to_owned(), false)),
    ]
    .prop_flat_map(|(line, sure)| {
        // Sometimes given to a shell as its script.
        prop_oneof![
            5 => Just((line.clone(), sure)),
            1 => Just((format!("bash -c '{}'", line.replace('\'', r"'\''")), sure)),
        ]
    })
}

/// A command line, and whether every program in it surely runs.
fn command_line() -> impl Strategy<Value = (String, bool)> {
    (
        prop::collection::vec(pipeline(), 1..4),
        prop::collection::vec(select(CONNECTORS), 3),
        select(&["", ";", "\n", " ", ";\n"][..]),
        select(&["", "\n"][..]),
    )
        .prop_map(|(pipelines, connectors, trailing, leading)| {
            let mut sure = true;
            let mut line = leading.to_owned();
            for (k, (pipeline, pipeline_sure)) in pipelines.iter().enumerate() {
                if k > 0 {
                    let (connector, connector_sure) = connectors[k - 1];
                    line.push_str(connector);
                    sure &= connector_sure;
                }
                line.push_str(pipeline);
                sure &= pipeline_sure;
            }
            line.push_str(trailing);
            (line, sure)
        })
}

/// Shims that record their directory and argument vector, and a case
/// directory per generated line.
struct Bench {
    bash: PathBuf,
    root: PathBuf,
    bin: PathBuf,
    cases: AtomicUsize,
    _dir: tempfile::TempDir,
}

const SHIM: &str = r#"#!/bin/sh
printf '%s\0' "$PWD" "${0##*/}" "$#" > "$SHIM_LOGS/$$"
for a in "$@"; do printf '%s\0' "$a" >> "$SHIM_LOGS/$$"; done
echo "out ${0##*/}"
echo "err ${0##*/}" >&2
exit STATUS
"#;

impl Bench {
    fn new() -> Self {
        let program = |name: &str| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|dir| dir.join(name))
                .find(|path| path.is_file())
                .unwrap_or_else(|| panic!("`{name}` is required for this test and is not on PATH"))
        };
        let bash = program("bash");
        let status = Command::new(&bash).args(["-c", "true"]).status().unwrap();
        assert!(status.success(), "bash -c true failed");
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let bin = root.join("bin");
        std::fs::create_dir(&bin).unwrap();
        for (name, status) in [("ok", 0), ("fail", 1)] {
            let path = bin.join(name);
            std::fs::write(&path, SHIM.replace("STATUS", &status.to_string())).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::os::unix::fs::symlink(program("timeout"), bin.join("timeout")).unwrap();
        std::os::unix::fs::symlink(&bash, bin.join("bash")).unwrap();
        Self {
            bash,
            root,
            bin,
            cases: AtomicUsize::new(0),
            _dir: dir,
        }
    }
}

/// What bash did with a line.
#[derive(Debug, Default)]
struct Observed {
    /// Directory, program name and arguments of each program run.
    runs: Vec<(PathBuf, String, Vec<String>)>,
    /// Regular files that exist afterwards (all made by redirections).
    created: BTreeSet<PathBuf>,
    /// Named pipes a redirection opened for reading.
    read: BTreeSet<PathBuf>,
}

/// Runs `line` with `bash -c` in `work`.
fn run_bash(bench: &Bench, case: &Path, work: &Path, line: &str) -> Result<Observed, String> {
    let logs = case.join("logs");
    std::fs::create_dir(&logs).unwrap();
    let fifos = [work.join("in1"), work.join("in2")];
    for fifo in &fifos {
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
        )
        .unwrap();
    }
    let mut child = Command::new(&bench.bash)
        .arg("-c")
        .arg(line)
        .current_dir(work)
        .env_clear()
        .env("PATH", &bench.bin)
        .env("SHIM_LOGS", &logs)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut observed = Observed::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Until bash exits: a reader blocked opening a named pipe is let
    // through (and seen) by opening the pipe for writing.
    loop {
        for fifo in &fifos {
            let opened = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(fifo);
            if opened.is_ok() {
                observed.read.insert(fifo.clone());
            }
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("bash did not finish {line:?}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    for entry in std::fs::read_dir(&logs).unwrap() {
        let record = std::fs::read(entry.unwrap().path()).unwrap();
        let record = String::from_utf8(record).unwrap();
        let fields: Vec<&str> = record.split('\0').collect();
        let count: usize = fields[2].parse().unwrap();
        let args: Vec<String> = fields[3..3 + count]
            .iter()
            .map(|a| (*a).to_owned())
            .collect();
        observed.runs.push((
            std::fs::canonicalize(fields[0]).unwrap(),
            fields[1].to_owned(),
            args,
        ));
    }
    let mut pending = vec![case.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if entry.path() == logs {
                continue;
            }
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                observed.created.insert(entry.path());
            } else {
                assert!(kind.is_fifo(), "{:?}", entry.path());
            }
        }
    }
    Ok(observed)
}

fn check(bench: &Bench, line: &str, sure: bool) -> Result<(), TestCaseError> {
    let n = bench.cases.fetch_add(1, Ordering::SeqCst);
    let case = bench.root.join(format!("case-{n}"));
    // Deep enough that `cd ..` stays inside the case (a line has fewer
    // than 24 of them).
    let work = case.join("d/".repeat(24)).join("work");
    std::fs::create_dir_all(work.join("sub")).unwrap();
    let line = line.replace("@ABS@", work.to_str().unwrap());
    let actions = match command_actions(&line, work.to_str()) {
        Ok(actions) => actions,
        Err(reason) if reason.contains("nothing to decide") || reason.contains("`cd` alone") => {
            return Ok(());
        }
        Err(reason) => {
            return Err(TestCaseError::fail(format!("refused {line:?}: {reason}")));
        }
    };
    let observed = run_bash(bench, &case, &work, &line).map_err(TestCaseError::fail)?;
    compare(&line, &actions, &observed, &work, sure)
}

/// Fails unless the decomposition `actions` of `line` (in `work`) covers
/// what bash did, and, if `sure`, its programs are exactly the ones bash
/// ran.
fn compare(
    line: &str,
    actions: &[Action],
    observed: &Observed,
    work: &Path,
    sure: bool,
) -> Result<(), TestCaseError> {
    let canonical = |path: &str| PathBuf::from(canonical_path(path, work.to_str()).unwrap());
    let mut execs = Vec::new();
    let mut writes = BTreeSet::new();
    let mut reads = BTreeSet::new();
    for action in actions {
        match action {
            Action::Exec(exec) => execs.push((
                canonical(exec.cwd.as_deref().unwrap()),
                exec.program.clone(),
                exec.args.clone(),
            )),
            Action::FileWrite { path, .. } => {
                writes.insert(canonical(path));
            }
            Action::FileRead { path } => {
                reads.insert(canonical(path));
            }
            other => return Err(TestCaseError::fail(format!("unexpected {other:?}"))),
        }
    }
    for run in &observed.runs {
        prop_assert!(
            execs.contains(run),
            "{line:?}: bash ran {run:?}, not among {execs:#?}"
        );
    }
    for file in &observed.created {
        prop_assert!(
            writes.contains(file),
            "{line:?}: bash wrote {file:?}, not among {writes:?}"
        );
    }
    for file in &observed.read {
        prop_assert!(
            reads.contains(file),
            "{line:?}: bash read {file:?}, not among {reads:?}"
        );
    }
    if sure {
        // Every program runs: what was decomposed is what ran.
        let mut decomposed: Vec<(String, Vec<String>)> = execs
            .iter()
            .filter(|(_, program, _)| program != "timeout")
            .map(|(_, program, args)| (program.clone(), args.clone()))
            .collect();
        let mut ran: Vec<(String, Vec<String>)> = observed
            .runs
            .iter()
            .map(|(_, program, args)| (program.clone(), args.clone()))
            .collect();
        decomposed.sort();
        ran.sort();
        prop_assert_eq!(decomposed, ran, "{:?}", line);
    }
    Ok(())
}

#[test]
fn decomposition_covers_what_bash_runs_and_opens() {
    let bench = Bench::new();
    let cases = std::env::var("SHELL_DECOMPOSITION_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(96);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&command_line(), |(line, sure)| check(&bench, &line, sure))
        .unwrap();
}

/// Shell tokens thrown together: the lines accepted (about one in ten)
/// get the same checks, so that combinations no grammar above produces
/// (`>&-x`, `>&'$HOME'`, quotes across operators) meet bash too.
#[test]
fn token_soup_lines_match_bash() {
    const TOKENS: &[&str] = &[
        "ok",
        "fail",
        " ",
        " ",
        "\t",
        "'",
        "\"",
        "\\",
        ";",
        "|",
        "&&",
        "||",
        ">",
        "<",
        "&",
        "2",
        "1",
        "-",
        "a.txt",
        "x",
        "\n",
        "=",
        "#",
        "~",
        "!",
        ">&",
        "<&",
        "|&",
        "&>",
        "bash -c ",
        "cd ./sub",
        "cd ..",
        "timeout 1 ",
        "\\\n",
        "'a b'",
        "\"$\"",
        "sub/",
        "$",
    ];
    let bench = Bench::new();
    let cases = std::env::var("SHELL_DECOMPOSITION_CASES")
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
        .map_or(1500, |n| n * 16);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let soup = prop::collection::vec(select(TOKENS), 1..16).prop_map(|tokens| tokens.concat());
    runner
        .run(&soup, |line| {
            if command_actions(&line, Some("/w")).is_err() {
                return Ok(());
            }
            check(&bench, &line, false)
        })
        .unwrap();
}

/// Lines written the way agents write them, run by bash: the same checks
/// as for generated lines.
#[test]
fn agent_style_lines_match_bash() {
    let bench = Bench::new();
    for (line, sure) in [
        ("ok test 2>&1 | ok tail -30", true),
        ("ok fmt && ok clippy -- -D warnings", true),
        (r#"ok add -A && ok commit -m "fix: a; b | c""#, true),
        ("ok -rn foo src | ok head", true),
        (
            "cd ./sub && ok build > build.log 2>&1 || ok build.log >&2",
            false,
        ),
        ("fail 2>/dev/null || ok fallback", false),
        ("timeout 60 ok test --release &> out.txt; ok done", true),
        ("ok < in1 > sub/out 2>> err.log", true),
        ("ok a\\\n  b 'c d' \"e\\\"f\"", true),
        // `>&-` closes standard output; `b` is an argument.
        ("ok a >&-b 2>&-", false),
    ] {
        check(&bench, line, sure).unwrap();
    }
}

/// The shims record what bash runs, so a dropped program would be seen:
/// a decomposition missing any program, write or read of the line fails
/// the comparison.
#[test]
fn the_comparison_sees_a_dropped_program() {
    let bench = Bench::new();
    let n = bench.cases.fetch_add(1, Ordering::SeqCst);
    let case = bench.root.join(format!("case-{n}"));
    let work = case.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let line = "ok a | ok b > f < in1";
    let observed = run_bash(&bench, &case, &work, line).unwrap();
    assert_eq!(observed.runs.len(), 2, "{observed:?}");
    assert!(observed.created.contains(&work.join("f")), "{observed:?}");
    assert!(observed.read.contains(&work.join("in1")), "{observed:?}");
    let actions = command_actions(line, work.to_str()).unwrap();
    assert_eq!(actions.len(), 4, "{actions:?}");
    compare(line, &actions, &observed, &work, true).unwrap();
    for dropped in 0..actions.len() {
        let mut fewer = actions.clone();
        let gone = fewer.remove(dropped);
        assert!(
            compare(line, &fewer, &observed, &work, true).is_err(),
            "the comparison missed that {gone:?} was dropped"
        );
    }
}
