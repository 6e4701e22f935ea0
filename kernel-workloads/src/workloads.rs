//! The workloads: what each puts in its workspace, and the commands it
//! runs there (no shell: each command a program and its arguments, run
//! in the workspace's root).

use crate::locate::Toolbox;
use crate::normalise::Normalise;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How much work a workload does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// The form the integration test runs once.
    Short,
    /// The form the benchmark runs.
    Full,
}

/// The program of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// A tool, found by [`Toolbox`] (the system directories first).
    Tool(&'static str),
    /// A program inside the workspace, by its path relative to the root.
    Workspace(&'static str),
}

/// One command of a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What runs.
    pub program: Program,
    /// Its arguments.
    pub args: Vec<String>,
    /// What is normalised in its standard output before comparing.
    pub stdout: Normalise,
}

impl Step {
    fn tool(name: &'static str, args: &[&str]) -> Self {
        Self {
            program: Program::Tool(name),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            stdout: Normalise::EXACT,
        }
    }

    fn workspace(path: &'static str, args: &[&str]) -> Self {
        Self {
            program: Program::Workspace(path),
            ..Self::tool("", args)
        }
    }

    fn normalise(mut self, normalise: Normalise) -> Self {
        self.stdout = normalise;
        self
    }

    /// The command as a person would type it (programs by their short
    /// name, arguments with spaces quoted).
    pub fn display(&self) -> String {
        let program = match &self.program {
            Program::Tool(name) | Program::Workspace(name) => *name,
        };
        std::iter::once(program.to_owned())
            .chain(self.args.iter().map(|a| {
                if a.is_empty() || a.contains([' ', '"', '\'', '\n', '*']) {
                    format!("{a:?}")
                } else {
                    a.clone()
                }
            }))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What a workload's setup may use: the template directory it fills,
/// and the tools (run ungoverned, with the suite's environment).
#[derive(Debug)]
pub struct Setup<'a> {
    /// The template workspace to fill.
    pub dir: &'a Path,
    /// A directory outside the template for the setup's own use.
    pub aside: &'a Path,
    /// The size of the workload.
    pub size: Size,
    /// The tools.
    pub tools: &'a Toolbox,
    /// The environment to run them with.
    pub env: &'a [(String, OsString)],
}

impl Setup<'_> {
    /// Writes `contents` to `path` (relative to the template), creating
    /// its directories.
    pub fn write(&self, path: &str, contents: &str) -> Result<(), String> {
        write(self.dir, path, contents)
    }

    /// As [`Setup::write`], then sets the permission bits.
    pub fn write_mode(&self, path: &str, contents: &str, mode: u32) -> Result<(), String> {
        write_mode(self.dir, path, contents, mode)
    }

    /// Runs `tool` with `args` in `cwd`, ungoverned; its standard output
    /// if it succeeds.
    pub fn run(&self, tool: &str, args: &[&OsString], cwd: &Path) -> Result<String, String> {
        let program = self.tools.get(tool)?;
        let output = Command::new(program)
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("setup: {tool}: {e}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "setup: {tool} failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }
}

fn write(dir: &Path, path: &str, contents: &str) -> Result<(), String> {
    let target = dir.join(path);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("`{}`: {e}", parent.display()))?;
    }
    std::fs::write(&target, contents).map_err(|e| format!("`{}`: {e}", target.display()))
}

fn write_mode(dir: &Path, path: &str, contents: &str, mode: u32) -> Result<(), String> {
    write(dir, path, contents)?;
    let target = dir.join(path);
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("`{}`: {e}", target.display()))
}

/// One workload.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Its name (`--only`).
    pub name: &'static str,
    /// What it exercises.
    pub about: &'static str,
    /// The tools its setup and commands need: missing one skips it.
    pub tools: &'static [&'static str],
    /// Fills the template workspace.
    pub setup: fn(&Setup<'_>) -> Result<(), String>,
    /// The commands, in order.
    pub steps: fn(Size) -> Vec<Step>,
}

/// Every workload, in the order of the report.
pub fn all() -> Vec<Workload> {
    vec![
        Workload {
            name: "coreutils",
            about: "mv (into a directory, across directories, over a file), cp -r, ln -s, ln, \
                    chmod, touch, mkdir -p, rm, find, tar",
            tools: &[
                "mv", "cp", "ln", "cat", "chmod", "touch", "mkdir", "rm", "find", "tar",
            ],
            setup: coreutils_setup,
            steps: coreutils_steps,
        },
        Workload {
            name: "git",
            about: "init, add, commit, branch, checkout, diff, log, stash, clone of a local repository",
            tools: &["git", "cp"],
            setup: git_setup,
            steps: git_steps,
        },
        Workload {
            name: "python",
            about: "python3 -m venv, the venv's python running scripts, pip install --no-index \
                    of a local wheel, a test runner",
            tools: &["python3"],
            setup: python_setup,
            steps: python_steps,
        },
        Workload {
            name: "c",
            about: "make and cc building a program in the workspace, which then runs",
            tools: &["make", "cc"],
            setup: c_setup,
            steps: c_steps,
        },
        Workload {
            name: "rust",
            about: "cargo build and cargo test of a crate without dependencies, offline; \
                    the built program and test binaries run",
            tools: &["cargo", "rustc"],
            setup: rust_setup,
            steps: rust_steps,
        },
        Workload {
            name: "node",
            about: "npm install --offline of a local tarball (npm pack), a program run through \
                    node_modules/.bin (a symlink)",
            tools: &["node", "npm"],
            setup: node_setup,
            steps: node_steps,
        },
        Workload {
            name: "file-loop",
            about: "python reading 1,000 small workspace files and writing 200 (pure overhead)",
            tools: &["python3"],
            setup: file_loop_setup,
            steps: file_loop_steps,
        },
    ]
}

/// The workload named `name`.
pub fn by_name(name: &str) -> Option<Workload> {
    all().into_iter().find(|w| w.name == name)
}

/// Every tool any workload needs.
pub fn all_tools() -> Vec<&'static str> {
    let mut tools: Vec<&'static str> = all().iter().flat_map(|w| w.tools.iter().copied()).collect();
    tools.sort_unstable();
    tools.dedup();
    tools
}

// ------------------------------------------------------------ coreutils

fn coreutils_setup(setup: &Setup<'_>) -> Result<(), String> {
    for (path, contents) in [
        ("a.txt", "alpha\n"),
        ("b.txt", "bravo\n"),
        ("over.txt", "the replacement\n"),
        ("target.txt", "the original\n"),
        ("dir1/keep.txt", "keep\n"),
        ("dir2/x.txt", "x-ray\n"),
        ("tree/f1.txt", "one\n"),
        ("tree/f2.txt", "two\n"),
        ("tree/sub/f3.txt", "three\n"),
        ("tree/sub/deeper/f4.txt", "four\n"),
    ] {
        setup.write(path, contents)?;
    }
    setup.write_mode("tree/run.sh", "#!/bin/sh\necho run\n", 0o755)
}

fn coreutils_steps(_: Size) -> Vec<Step> {
    let tar_create = [
        "--sort=name",
        "--mtime=@0",
        "--owner=0",
        "--group=0",
        "--numeric-owner",
        "-cf",
        "archive.tar",
        "tree",
        "dir1",
    ];
    vec![
        Step::tool("mkdir", &["-p", "deep/nested/dir"]),
        Step::tool("mv", &["a.txt", "dir1/"]),
        Step::tool("mv", &["dir2/x.txt", "dir1/y.txt"]),
        Step::tool("mv", &["over.txt", "target.txt"]),
        Step::tool("cp", &["-r", "tree", "tree-copy"]),
        Step::tool("ln", &["-s", "tree/f1.txt", "link.txt"]),
        Step::tool("cat", &["link.txt"]),
        Step::tool("ln", &["b.txt", "b-hard.txt"]),
        Step::tool("cat", &["b-hard.txt"]),
        Step::tool("chmod", &["0640", "b.txt"]),
        Step::tool("chmod", &["-R", "go-rx", "tree-copy/sub"]),
        Step::tool("touch", &["new.txt", "dir1/keep.txt"]),
        Step::tool("rm", &["tree-copy/f2.txt", "dir1/keep.txt"]),
        Step::tool("find", &["."]).normalise(Normalise::UNORDERED),
        Step::tool("tar", &tar_create),
        Step::tool("mkdir", &["extract"]),
        Step::tool("tar", &["-xf", "archive.tar", "-C", "extract"]),
        Step::tool("tar", &["-tvf", "archive.tar"]),
        Step::tool(
            "cat",
            &[
                "dir1/a.txt",
                "dir1/y.txt",
                "target.txt",
                "extract/tree/sub/f3.txt",
            ],
        ),
    ]
}

// ------------------------------------------------------------------ git

fn git_setup(setup: &Setup<'_>) -> Result<(), String> {
    for (path, contents) in [
        ("repo/README.md", "# demo\n"),
        ("repo/src/lib.txt", "fn one\n"),
        ("repo/.gitignore", "*.log\n"),
        ("repo/debug.log", "ignored\n"),
        ("changes/README.md", "# demo\n\nNow with a feature.\n"),
        ("changes/lib.txt", "fn one\nfn two\n"),
    ] {
        setup.write(path, contents)?;
    }
    Ok(())
}

fn git_steps(_: Size) -> Vec<Step> {
    let git = |args: &[&str]| Step::tool("git", args);
    vec![
        git(&["init", "-q", "-b", "main", "repo"]),
        git(&["-C", "repo", "add", "-A"]),
        git(&["-C", "repo", "commit", "-q", "-m", "initial commit"]),
        git(&["-C", "repo", "branch", "feature"]),
        git(&["-C", "repo", "checkout", "-q", "feature"]),
        Step::tool("cp", &["changes/README.md", "repo/README.md"]),
        git(&["-C", "repo", "diff"]),
        git(&[
            "-C",
            "repo",
            "commit",
            "-q",
            "-a",
            "-m",
            "feature: a readme",
        ]),
        git(&["-C", "repo", "log"]),
        git(&["-C", "repo", "checkout", "-q", "main"]),
        Step::tool("cp", &["changes/lib.txt", "repo/src/lib.txt"]),
        git(&["-C", "repo", "stash"]),
        git(&["-C", "repo", "stash", "list"]),
        git(&["-C", "repo", "status", "--short"]),
        git(&["-C", "repo", "stash", "pop"]),
        git(&["-C", "repo", "diff", "--stat"]),
        git(&["clone", "-q", "repo", "clone"]),
        git(&["-C", "clone", "branch", "-a"]),
        git(&["-C", "clone", "log", "--oneline", "origin/feature"]),
    ]
}

// --------------------------------------------------------------- python

/// Builds the wheel (run by `python3 -c`, the wheel's path its argument):
/// a zip in the wheel format with fixed times, so the same bytes each
/// time.
const BUILD_WHEEL: &str = r#"
import base64, hashlib, sys, zipfile
files = {
    "tinywheel/__init__.py": 'def greet(name):\n    return f"hello, {name}, from a wheel"\n',
    "tinywheel-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinywheel\nVersion: 0.1\nSummary: A wheel made by hand\n",
    "tinywheel-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: kernel-workloads\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
for name, text in files.items():
    data = text.encode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record.append(f"{name},sha256={digest},{len(data)}")
record.append("tinywheel-0.1.dist-info/RECORD,,")
files["tinywheel-0.1.dist-info/RECORD"] = "\n".join(record) + "\n"
with zipfile.ZipFile(sys.argv[1], "w") as archive:
    for name, text in files.items():
        info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        archive.writestr(info, text)
"#;

const WHEEL: &str = "dist/tinywheel-0.1-py3-none-any.whl";

fn python_setup(setup: &Setup<'_>) -> Result<(), String> {
    setup.write(
        "project/app.py",
        r#"import json
import sys
from pathlib import Path

data = {"python": list(sys.version_info[:2]), "in_venv": sys.prefix != sys.base_prefix}
out = Path("project/out")
out.mkdir(exist_ok=True)
(out / "app.json").write_text(json.dumps(data, sort_keys=True) + "\n")
print("app ran in a venv:", data["in_venv"])
"#,
    )?;
    setup.write(
        "project/calc.py",
        "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n",
    )?;
    setup.write(
        "project/test_calc.py",
        r#"import unittest

import calc


class CalcTest(unittest.TestCase):
    def test_add(self):
        self.assertEqual(calc.add(2, 3), 5)

    def test_mul(self):
        self.assertEqual(calc.mul(2, 3), 6)


if __name__ == "__main__":
    unittest.main()
"#,
    )?;
    setup.write(
        "project/run_tests.py",
        r#"import sys
import unittest

sys.path.insert(0, "project")
suite = unittest.defaultTestLoader.discover("project", pattern="test_*.py")
result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2).run(suite)
sys.exit(0 if result.wasSuccessful() else 1)
"#,
    )?;
    setup.write(
        "project/use_wheel.py",
        r#"from pathlib import Path

import tinywheel

print(tinywheel.greet("governed"))
print(Path(tinywheel.__file__).relative_to(Path.cwd()))
"#,
    )?;
    std::fs::create_dir_all(setup.dir.join("dist")).map_err(|e| format!("dist: {e}"))?;
    setup
        .run(
            "python3",
            &[&"-c".into(), &BUILD_WHEEL.into(), &WHEEL.into()],
            setup.dir,
        )
        .map(drop)
}

fn python_steps(_: Size) -> Vec<Step> {
    let venv_python = |args: &[&str]| Step::workspace(".venv/bin/python", args);
    vec![
        Step::tool("python3", &["-m", "venv", ".venv"]),
        venv_python(&["project/app.py"]),
        venv_python(&["-m", "pip", "install", "--no-index", WHEEL]),
        venv_python(&["project/use_wheel.py"]),
        venv_python(&["project/run_tests.py"]).normalise(Normalise::DURATIONS),
    ]
}

// -------------------------------------------------------------------- C

fn c_setup(setup: &Setup<'_>) -> Result<(), String> {
    setup.write(
        "cproj/Makefile",
        "CFLAGS ?= -O2 -Wall\n\n\
         hello: main.o greet.o\n\t$(CC) -o $@ main.o greet.o\n\n\
         %.o: %.c greet.h\n\t$(CC) $(CFLAGS) -c -o $@ $<\n",
    )?;
    setup.write("cproj/greet.h", "const char *greet(const char *who);\n")?;
    setup.write(
        "cproj/greet.c",
        "#include <stdio.h>\n#include \"greet.h\"\n\n\
         const char *greet(const char *who) {\n\
         \tstatic char line[128];\n\
         \tsnprintf(line, sizeof line, \"hello, %s\", who);\n\
         \treturn line;\n}\n",
    )?;
    setup.write(
        "cproj/main.c",
        "#include <stdio.h>\n#include \"greet.h\"\n\n\
         int main(int argc, char **argv) {\n\
         \tconst char *line = greet(argc > 1 ? argv[1] : \"world\");\n\
         \tFILE *out = fopen(argc > 2 ? argv[2] : \"cproj/greeting.txt\", \"w\");\n\
         \tif (!out) { perror(\"fopen\"); return 1; }\n\
         \tfprintf(out, \"%s\\n\", line);\n\
         \tfclose(out);\n\
         \tputs(line);\n\
         \treturn 0;\n}\n",
    )
}

fn c_steps(_: Size) -> Vec<Step> {
    vec![
        Step::tool("make", &["-C", "cproj"]),
        Step::workspace("cproj/hello", &["governed"]),
        Step::tool(
            "cc",
            &["-O2", "-o", "cproj/direct", "cproj/main.c", "cproj/greet.c"],
        ),
        Step::workspace("cproj/direct", &["directly", "cproj/direct.txt"]),
        Step::tool("make", &["-C", "cproj"]),
    ]
}

// ----------------------------------------------------------------- Rust

fn rust_setup(setup: &Setup<'_>) -> Result<(), String> {
    setup.write(
        "tinycrate/Cargo.toml",
        "[package]\nname = \"tinycrate\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [dependencies]\n\n[workspace]\n",
    )?;
    setup.write(
        "tinycrate/src/lib.rs",
        "/// Adds.\npub fn add(a: u32, b: u32) -> u32 {\n    a + b\n}\n\n\
         #[cfg(test)]\nmod tests {\n    #[test]\n    fn adds() {\n        \
         assert_eq!(super::add(2, 3), 5);\n    }\n\n    #[test]\n    fn \
         writes_into_the_workspace() {\n        \
         std::fs::write(\"unit-test-ran.txt\", \"yes\\n\").unwrap();\n    }\n}\n",
    )?;
    setup.write(
        "tinycrate/src/main.rs",
        "fn main() {\n    println!(\"tinycrate says {}\", tinycrate::add(2, 3));\n}\n",
    )?;
    setup.write(
        "tinycrate/tests/it.rs",
        "#[test]\nfn from_outside() {\n    assert_eq!(tinycrate::add(1, 1), 2);\n}\n",
    )
}

fn rust_steps(_: Size) -> Vec<Step> {
    let manifest = "tinycrate/Cargo.toml";
    vec![
        Step::tool(
            "cargo",
            &["build", "--offline", "--manifest-path", manifest],
        ),
        Step::workspace("tinycrate/target/debug/tinycrate", &[]),
        Step::tool(
            "cargo",
            &[
                "test",
                "--offline",
                "--manifest-path",
                manifest,
                "--",
                "--test-threads=1",
            ],
        )
        .normalise(Normalise::DURATIONS),
    ]
}

// ----------------------------------------------------------------- node

const TARBALL: &str = "tiny-cli-1.0.0.tgz";

fn node_setup(setup: &Setup<'_>) -> Result<(), String> {
    let package = setup.aside.join("tiny-cli");
    write(
        &package,
        "package.json",
        "{\n  \"name\": \"tiny-cli\",\n  \"version\": \"1.0.0\",\n  \
         \"description\": \"A command the workload suite packs\",\n  \
         \"license\": \"MIT\",\n  \"bin\": { \"tiny-cli\": \"cli.js\" }\n}\n",
    )?;
    write_mode(
        &package,
        "cli.js",
        "#!/usr/bin/env node\nconst fs = require(\"fs\");\n\
         const who = process.argv[2] || \"world\";\n\
         fs.writeFileSync(`app/greeting-${who}.txt`, `hello, ${who}\\n`);\n\
         console.log(`tiny-cli greets ${who}`);\n",
        0o755,
    )?;
    setup.write(
        "app/package.json",
        "{\n  \"name\": \"app\",\n  \"version\": \"1.0.0\",\n  \"private\": true\n}\n",
    )?;
    let vendor: PathBuf = setup.dir.join("app/vendor");
    std::fs::create_dir_all(&vendor).map_err(|e| format!("`{}`: {e}", vendor.display()))?;
    setup.run(
        "npm",
        &[
            &"pack".into(),
            &"--pack-destination".into(),
            &vendor.into_os_string(),
        ],
        &package,
    )?;
    if setup.dir.join("app/vendor").join(TARBALL).is_file() {
        Ok(())
    } else {
        Err(format!("setup: npm pack made no {TARBALL}"))
    }
}

fn node_steps(_: Size) -> Vec<Step> {
    vec![
        Step::tool(
            "npm",
            &[
                "install",
                "--offline",
                "--no-audit",
                "--no-fund",
                "--prefix",
                "app",
                "./app/vendor/tiny-cli-1.0.0.tgz",
            ],
        )
        .normalise(Normalise::DURATIONS),
        Step::tool("node", &["app/node_modules/.bin/tiny-cli", "node"]),
        Step::workspace("app/node_modules/.bin/tiny-cli", &["bin"]),
        Step::tool("npm", &["ls", "--offline", "--prefix", "app"]),
    ]
}

// ------------------------------------------------------------ file loop

const CHURN: &str = r#"import hashlib
import os
import sys

outputs = int(sys.argv[1])
names = sorted(os.listdir("loop/in"))
total = 0
digest = hashlib.sha256()
for name in names:
    with open(os.path.join("loop/in", name), "rb") as f:
        data = f.read()
    total += len(data)
    digest.update(data)
os.makedirs("loop/out", exist_ok=True)
for i in range(outputs):
    with open(f"loop/out/{i:04d}.txt", "w") as f:
        f.write(f"output {i} of {outputs}: {digest.hexdigest()[:16]}\n")
print(f"read {len(names)} files ({total} bytes), wrote {outputs}; digest {digest.hexdigest()[:16]}")
"#;

/// Files read and written by the file loop.
fn file_loop_counts(size: Size) -> (usize, usize) {
    match size {
        Size::Full => (1000, 200),
        Size::Short => (100, 20),
    }
}

fn file_loop_setup(setup: &Setup<'_>) -> Result<(), String> {
    let (inputs, _) = file_loop_counts(setup.size);
    setup.write("loop/churn.py", CHURN)?;
    for i in 0..inputs {
        let padding = "x".repeat(i % 50);
        setup.write(
            &format!("loop/in/{i:04}.txt"),
            &format!("file {i}: {padding}\n"),
        )?;
    }
    Ok(())
}

fn file_loop_steps(size: Size) -> Vec<Step> {
    let (_, outputs) = file_loop_counts(size);
    vec![Step {
        program: Program::Tool("python3"),
        args: vec!["loop/churn.py".into(), outputs.to_string()],
        stdout: Normalise::EXACT,
    }]
}
