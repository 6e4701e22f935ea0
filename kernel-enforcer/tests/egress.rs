//! Host names under `run --govern-syscalls`: the egress proxy the
//! enforcer runs for the agent decides `CONNECT host:port` as a
//! `net_connect` of the name and a plain `http://` request as an `http`
//! action, recorded before anything is sent; a denied name is never
//! connected to; the agent's direct connections are still decided by
//! address; only the agent's own connections are served; and what reaches
//! the server is what was decided. Real tools (curl, pip, git, npm) fetch
//! from servers on loopback through it. Every check is judged by the
//! servers (what they accepted and received) and by the evidence.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kernel_testkit::{Fixture, audit_inspect, fixture};

/// Workspace files, system programs, and the host *name* `localhost`;
/// never the address `127.0.0.1`.
const POLICY: &str = r#"
@id("workspace")
permit (principal, action in [Action::"file_read", Action::"file_write", Action::"file_delete"], resource in Workspace::"root");
@id("programs")
permit (principal, action == Action::"exec", resource)
when { resource.path like "/usr/*" || resource.path like "/bin/*" };
@id("localhost-by-name")
permit (principal, action in [Action::"net_connect", Action::"http"], resource == Host::"localhost");
"#;

fn scene() -> Fixture {
    fixture(POLICY)
}

/// `run --govern-syscalls` of `program` in the scene's workspace, with
/// `HOME` there too (tools read their configuration from it).
fn governed(scene: &Fixture, flags: &[&str], program: &str, args: &[&str]) -> Command {
    let mut command = scene.governed(flags, program, args);
    command
        .current_dir(&scene.workspace)
        .env("HOME", &scene.workspace)
        // The operator's own proxy settings must not matter.
        .env("NO_PROXY", "localhost,127.0.0.1")
        .env("no_proxy", "localhost,127.0.0.1");
    for name in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        command.env_remove(name);
    }
    command
}

/// Runs `command` to its end with its output collected; killed, and the
/// test failed, if it takes over two minutes.
fn output_within(mut command: Command) -> Output {
    kernel_testkit::output_within(&mut command, Duration::from_secs(120), "the governed run")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The decisions in the evidence, after checking it verifies: each as
/// (`allow` or `deny`, the action as `audit inspect` describes it).
fn decisions(evidence: &Path) -> Vec<(String, String)> {
    let log = std::fs::read(evidence).unwrap();
    kernel_core::audit(&log, &kernel_core::AuditOptions::default())
        .unwrap_or_else(|e| panic!("the evidence does not verify: {e}"));
    // `INDEX decision VERDICT ACTION  [POLICIES]`
    audit_inspect(evidence)
        .lines()
        .filter_map(|line| {
            let (record, _policies) = line.rsplit_once("  [")?;
            let mut words = record.split_whitespace();
            let _index = words.next()?;
            (words.next()? == "decision").then_some(())?;
            let verdict = words.next()?.to_owned();
            Some((verdict, words.collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

/// The network decisions (`net_connect`, `http`) in the evidence.
fn network_decisions(evidence: &Path) -> Vec<(String, String)> {
    decisions(evidence)
        .into_iter()
        .filter(|(_, action)| action.starts_with("net_connect ") || action.starts_with("http "))
        .collect()
}

fn pair(verdict: &str, action: String) -> (String, String) {
    (verdict.to_owned(), action)
}

/// The bytes one connection received.
type Received = Arc<Mutex<Vec<u8>>>;

/// A static file server on loopback that counts the connections it
/// accepts and keeps every byte each of them received.
struct Site {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Site {
    fn serving(root: &Path) -> Self {
        Self::on(IpAddr::V4(Ipv4Addr::LOCALHOST), root)
    }

    fn on(address: IpAddr, root: &Path) -> Self {
        let listener = TcpListener::bind((address, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (kept, root) = (Arc::clone(&received), root.to_owned());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let bytes = Arc::new(Mutex::new(Vec::new()));
                kept.lock().unwrap().push(Arc::clone(&bytes));
                let root = root.clone();
                std::thread::spawn(move || serve_file(stream, &root, &bytes));
            }
        });
        Self { port, received }
    }

    /// Connections accepted so far.
    fn accepted(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// What each connection received, in the order they were accepted.
    fn received(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|bytes| text(&bytes.lock().unwrap()))
            .collect()
    }

    /// The request heads received, one per connection.
    fn heads(&self) -> Vec<String> {
        self.received()
            .into_iter()
            .map(|all| match all.find("\r\n\r\n") {
                Some(end) => all[..end + 4].to_owned(),
                None => all,
            })
            .collect()
    }
}

/// Answers one request with the file it names (`index.html` for a
/// directory), then reads on until the other side closes, keeping every
/// byte in `received`.
fn serve_file(mut stream: TcpStream, root: &Path, received: &Mutex<Vec<u8>>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buffer = [0u8; 4096];
    let head = loop {
        let so_far = received.lock().unwrap().clone();
        if let Some(end) = so_far.windows(4).position(|w| w == b"\r\n\r\n") {
            break text(&so_far[..end + 4]);
        }
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => received.lock().unwrap().extend_from_slice(&buffer[..n]),
        }
    };
    let mut words = head.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let mut file = root.join(path.trim_start_matches('/'));
    if file.is_dir() {
        file = file.join("index.html");
    }
    let found = (!path.contains(".."))
        .then(|| std::fs::read(&file).ok())
        .flatten();
    let (status, body) = match found {
        Some(body) => ("200 OK", body),
        None => ("404 Not Found", b"not found\n".to_vec()),
    };
    let kind = if file.extension().is_some_and(|e| e == "html") {
        "text/html"
    } else {
        "application/octet-stream"
    };
    let mut reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        reply.extend_from_slice(&body);
    }
    let _ = stream.write_all(&reply);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    while let Ok(n) = stream.read(&mut buffer) {
        if n == 0 {
            break;
        }
        received.lock().unwrap().extend_from_slice(&buffer[..n]);
    }
}

fn site_with_page(dir: &Path, page: &str) -> Site {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("index.html"), page).unwrap();
    Site::serving(dir)
}

#[test]
fn curl_gets_an_allowed_name_through_the_proxy_and_a_denied_one_is_never_reached() {
    let scene = scene();
    let allowed = site_with_page(&scene.root.join("allowed"), "the allowed page\n");
    let denied = site_with_page(&scene.root.join("denied"), "never served\n");
    let (a, d) = (allowed.port, denied.port);
    // Plain HTTP: an `http` action of the URL.
    let url = format!("http://localhost:{a}/index.html");
    let out = output_within(governed(&scene, &[], "/usr/bin/curl", &["-sS", &url]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "the allowed page\n");
    let heads = allowed.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        heads[0].starts_with("GET /index.html HTTP/1.1\r\n")
            && heads[0].contains(&format!("\r\nHost: localhost:{a}\r\n"))
            && heads[0].contains("\r\nConnection: close\r\n"),
        "{}",
        heads[0]
    );
    // Through a tunnel (`-p`: CONNECT, then the request inside it): a
    // `net_connect` of the name.
    let out = output_within(governed(&scene, &[], "/usr/bin/curl", &["-sS", "-p", &url]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "the allowed page\n");
    assert_eq!(allowed.accepted(), 2);
    // The address itself is not allowed, by name or through a tunnel: a
    // 403 from the proxy, and the server never sees a connection.
    let by_address = format!("http://127.0.0.1:{d}/");
    let out = output_within(governed(
        &scene,
        &[],
        "/usr/bin/curl",
        &["-sS", "-o", "/dev/null", "-w", "%{http_code}", &by_address],
    ));
    assert_eq!(text(&out.stdout), "403", "{}", text(&out.stderr));
    let out = output_within(governed(
        &scene,
        &[],
        "/usr/bin/curl",
        &["-sS", "-p", &by_address],
    ));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("403"),
        "the tunnel was refused with a 403: {}",
        text(&out.stderr)
    );
    // A name the policy does not name, and that does not even resolve.
    let out = output_within(governed(
        &scene,
        &[],
        "/usr/bin/curl",
        &[
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://not-allowed.invalid/",
        ],
    ));
    assert_eq!(text(&out.stdout), "403");
    assert_eq!(denied.accepted(), 0, "a denied request reached its server");
    assert_eq!(
        network_decisions(&scene.evidence),
        [
            pair("allow", format!("http GET {url}")),
            pair("allow", format!("net_connect localhost:{a}")),
            pair("deny", format!("http GET {by_address}")),
            pair("deny", format!("net_connect 127.0.0.1:{d}")),
            pair("deny", "http GET http://not-allowed.invalid/".into()),
        ]
    );
}

#[test]
fn a_direct_connection_is_still_decided_by_address() {
    let scene = scene();
    let site = site_with_page(&scene.root.join("site"), "page\n");
    let port = site.port;
    // Without the proxy (`--noproxy`), `localhost` is an address again:
    // 127.0.0.1 (and ::1) are decided, and denied.
    let url = format!("http://localhost:{port}/");
    let out = output_within(governed(
        &scene,
        &[],
        "/usr/bin/curl",
        &["-sS", "--noproxy", "*", &url],
    ));
    assert!(!out.status.success());
    assert_eq!(site.accepted(), 0, "the denied connection was made");
    let decided = network_decisions(&scene.evidence);
    assert!(
        decided.contains(&pair("deny", format!("net_connect 127.0.0.1:{port}"))),
        "{decided:?}"
    );
    assert!(decided.iter().all(|(verdict, _)| verdict == "deny"));
    // Without `--egress-proxy` the environment is the operator's (here,
    // NO_PROXY names localhost) and the same holds.
    let out = output_within(governed(
        &scene,
        &["--no-egress-proxy"],
        "/usr/bin/sh",
        &["-c", "echo \"${http_proxy:-none} ${NO_PROXY:-none}\""],
    ));
    assert_eq!(text(&out.stdout), "none localhost,127.0.0.1\n");
}

/// Waits (at most 60 s) until `path` exists with a complete line.
fn wait_for_line(path: &Path) -> String {
    let mut line = String::new();
    kernel_testkit::wait_for(
        &format!("a line in `{}`", path.display()),
        Duration::from_secs(60),
        || match std::fs::read_to_string(path) {
            Ok(text) if text.ends_with('\n') => {
                line = text.trim().to_owned();
                true
            }
            _ => false,
        },
    );
    line
}

#[test]
fn the_proxy_serves_the_agents_connections_and_no_one_elses() {
    let scene = scene();
    let site = site_with_page(&scene.root.join("site"), "for the agent only\n");
    let url = format!("http://localhost:{}/", site.port);
    // The agent announces its proxy, waits for the go, then uses it.
    let script = format!(
        "echo \"$http_proxy\" > proxy.txt; while [ ! -e go ]; do sleep 0.05; done; /usr/bin/curl -sS {url}"
    );
    let run = governed(&scene, &[], "/usr/bin/sh", &["-c", &script]);
    let runner = std::thread::spawn(move || output_within(run));
    let proxy = wait_for_line(&scene.workspace.join("proxy.txt"));
    let address = proxy.strip_prefix("http://").unwrap();
    assert!(address.starts_with("127.0.0.1:"), "{proxy}");
    // Another process of the same user, on the same machine: closed
    // unread, nothing decided, nothing reached.
    for request in [
        format!("GET {url} HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        format!("CONNECT localhost:{} HTTP/1.1\r\n\r\n", site.port),
    ] {
        let mut outsider = TcpStream::connect(address).unwrap();
        outsider
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = outsider.write_all(request.as_bytes());
        let mut answer = Vec::new();
        let _ = outsider.read_to_end(&mut answer);
        assert!(
            answer.is_empty(),
            "the proxy answered an outsider: {}",
            text(&answer)
        );
    }
    assert_eq!(site.accepted(), 0);
    assert!(network_decisions(&scene.evidence).is_empty());
    std::fs::write(scene.workspace.join("go"), "").unwrap();
    let out = runner.join().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "for the agent only\n");
    assert_eq!(site.accepted(), 1);
    assert_eq!(
        network_decisions(&scene.evidence),
        [pair("allow", format!("http GET {url}"))]
    );
}

/// A Python program, run governed, that speaks to the proxy in raw bytes:
/// for each request in `requests`, one connection, and what came back
/// printed after a line `--- N`.
const RAW_CLIENT: &str = r#"
import os, socket, sys, json
host, port = os.environ["http_proxy"].removeprefix("http://").split(":")
for i, request in enumerate(json.loads(sys.argv[1])):
    s = socket.create_connection((host, int(port)))
    s.sendall(request.encode())
    answer = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        answer += chunk
    print(f"--- {i}")
    print(answer.decode(errors="replace"))
"#;

fn raw_exchanges(scene: &Fixture, requests: &[String]) -> Vec<String> {
    let requests = serde_json::to_string(requests).unwrap();
    let out = output_within(governed(
        scene,
        &[],
        "/usr/bin/python3",
        &["-c", RAW_CLIENT, &requests],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .split("--- ")
        .skip(1)
        .map(|part| {
            part.split_once('\n')
                .map(|(_, rest)| rest.to_owned())
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn what_reaches_the_server_is_what_was_decided() {
    if !Path::new("/usr/bin/python3").exists() {
        println!("SKIPPED what_reaches_the_server_is_what_was_decided: no /usr/bin/python3");
        return;
    }
    let scene = scene();
    let dir = scene.root.join("site");
    std::fs::create_dir_all(dir.join("~user")).unwrap();
    std::fs::write(dir.join("~user/index.html"), "home\n").unwrap();
    let site = Site::serving(&dir);
    let p = site.port;
    let answers = raw_exchanges(
        &scene,
        &[
            // Another Host, proxy credentials, a path with two spellings,
            // and a second request pipelined behind the first.
            format!(
                "GET http://localhost:{p}/a/../%7Euser/ HTTP/1.1\r\nHost: elsewhere.example\r\n\
                 Proxy-Authorization: Basic c2VjcmV0\r\nX-Kept: yes\r\n\r\n\
                 GET http://localhost:{p}/second HTTP/1.1\r\nHost: localhost\r\n\r\n"
            ),
            // Two readings of one body: refused, undecided.
            format!(
                "POST http://localhost:{p}/ HTTP/1.1\r\nContent-Length: 4\r\n\
                 Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            ),
            // A framing field named hop-by-hop: refused, undecided.
            format!(
                "POST http://localhost:{p}/ HTTP/1.1\r\nContent-Length: 4\r\n\
                 Connection: content-length\r\n\r\nbody"
            ),
            // A chunked body is forwarded to its last chunk and no further.
            format!(
                "POST http://localhost:{p}/~user/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
                 4\r\nbody\r\n0\r\n\r\nGET http://localhost:{p}/smuggled HTTP/1.1\r\n\r\n"
            ),
        ],
    );
    assert_eq!(answers.len(), 4, "{answers:?}");
    assert!(
        answers[0].starts_with("HTTP/1.1 200 OK\r\n"),
        "{}",
        answers[0]
    );
    assert!(answers[0].contains("\r\nConnection: close\r\n"));
    assert!(answers[0].ends_with("home\n\n"), "{}", answers[0]);
    assert!(answers[1].starts_with("HTTP/1.1 400 "), "{}", answers[1]);
    assert!(answers[2].starts_with("HTTP/1.1 400 "), "{}", answers[2]);
    assert!(
        answers[3].starts_with("HTTP/1.1 200 OK\r\n"),
        "{}",
        answers[3]
    );
    // The server got the two decided requests, each exactly as decided,
    // and not one byte more.
    let received = site.received();
    assert_eq!(
        received,
        [
            format!(
                "GET /~user/ HTTP/1.1\r\nHost: localhost:{p}\r\nX-Kept: yes\r\n\
                 Connection: close\r\n\r\n"
            ),
            format!(
                "POST /~user/ HTTP/1.1\r\nHost: localhost:{p}\r\nTransfer-Encoding: chunked\r\n\
                 Connection: close\r\n\r\n4\r\nbody\r\n0\r\n\r\n"
            ),
        ]
    );
    assert_eq!(
        network_decisions(&scene.evidence),
        [
            pair("allow", format!("http GET http://localhost:{p}/~user/")),
            pair("allow", format!("http POST http://localhost:{p}/~user/")),
        ]
    );
}

/// A name of this machine's hosts file, other than `localhost`, that
/// resolves to a loopback address, if there is one.
fn other_loopback_name() -> Option<String> {
    let hosts = std::fs::read_to_string("/etc/hosts").ok()?;
    hosts
        .lines()
        .filter_map(|line| {
            let mut words = line.split('#').next()?.split_whitespace();
            let ip: IpAddr = words.next()?.parse().ok()?;
            ip.is_loopback().then_some(words.collect::<Vec<_>>())
        })
        .flatten()
        .find(|name| {
            !name.contains("localhost")
                && std::net::ToSocketAddrs::to_socket_addrs(&(*name, 80))
                    .is_ok_and(|mut all| all.all(|a| a.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST)))
        })
        .map(str::to_owned)
}

#[test]
fn a_name_that_resolves_inside_needs_its_address_allowed_too() {
    let Some(name) = other_loopback_name() else {
        println!(
            "SKIPPED a_name_that_resolves_inside_needs_its_address_allowed_too: no other name for 127.0.0.1 in /etc/hosts"
        );
        return;
    };
    let by_name = format!(
        "{POLICY}\n@id(\"named\")\npermit (principal, action in [Action::\"net_connect\", Action::\"http\"], resource == Host::\"{name}\");\n"
    );
    let scene = fixture(&by_name);
    let site = site_with_page(&scene.root.join("site"), "inside\n");
    let url = format!("http://{name}:{}/", site.port);
    for (tunnel, code) in [
        ("--no-proxytunnel", "%{http_code}"),
        ("-p", "%{http_connect}"),
    ] {
        let args = ["-sS", tunnel, "-o", "/dev/null", "-w", code, &url];
        let out = output_within(governed(&scene, &[], "/usr/bin/curl", &args));
        assert_eq!(text(&out.stdout), "403", "{}", text(&out.stderr));
    }
    assert_eq!(site.accepted(), 0, "the internal address was reached");
    let p = site.port;
    assert_eq!(
        network_decisions(&scene.evidence),
        [
            pair("allow", format!("http GET {url}")),
            pair("deny", format!("net_connect 127.0.0.1:{p}")),
            pair("allow", format!("net_connect {name}:{p}")),
            pair("deny", format!("net_connect 127.0.0.1:{p}")),
        ]
    );
    // With the address allowed as well, both pass.
    std::fs::write(
        &scene.policy,
        format!(
            "{by_name}\n@id(\"address\")\npermit (principal, action == Action::\"net_connect\", resource == Host::\"127.0.0.1\");\n"
        ),
    )
    .unwrap();
    let out = output_within(governed(&scene, &[], "/usr/bin/curl", &["-sS", &url]));
    assert_eq!(text(&out.stdout), "inside\n", "{}", text(&out.stderr));
    assert_eq!(site.accepted(), 1);
}

fn have(program: &str) -> bool {
    Path::new(program).exists()
}

#[test]
fn pip_downloads_from_an_index_through_the_proxy() {
    if !have("/usr/bin/python3")
        || !Command::new("/usr/bin/python3")
            .args(["-m", "pip", "--version"])
            .output()
            .is_ok_and(|o| o.status.success())
    {
        println!(
            "SKIPPED pip_downloads_from_an_index_through_the_proxy: no pip for /usr/bin/python3"
        );
        return;
    }
    let scene = scene();
    // A PEP 503 simple index with one wheel.
    let index = scene.root.join("index");
    let made = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(
            r#"
import base64, hashlib, os, sys, zipfile
root = sys.argv[1]
name = "tinypkg-0.1-py3-none-any.whl"
files = {
    "tinypkg/__init__.py": "VALUE = 42\n",
    "tinypkg-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinypkg\nVersion: 0.1\n",
    "tinypkg-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
for path, content in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(content.encode()).digest()).rstrip(b"=").decode()
    record.append(f"{path},sha256={digest},{len(content)}")
record.append("tinypkg-0.1.dist-info/RECORD,,")
files["tinypkg-0.1.dist-info/RECORD"] = "\n".join(record) + "\n"
os.makedirs(f"{root}/simple/tinypkg")
with zipfile.ZipFile(f"{root}/simple/tinypkg/{name}", "w") as wheel:
    for path, content in files.items():
        wheel.writestr(path, content)
with open(f"{root}/simple/tinypkg/index.html", "w") as page:
    page.write(f'<html><body><a href="{name}">{name}</a></body></html>\n')
"#,
        )
        .arg(&index)
        .status()
        .unwrap();
    assert!(made.success());
    let site = Site::serving(&index);
    let simple = format!("http://localhost:{}/simple", site.port);
    let out = output_within(governed(
        &scene,
        &[],
        "/usr/bin/python3",
        &[
            "-m",
            "pip",
            "--isolated",
            "download",
            "--no-deps",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--index-url",
            &simple,
            "-d",
            "downloads",
            "tinypkg",
        ],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        scene
            .workspace
            .join("downloads/tinypkg-0.1-py3-none-any.whl")
            .is_file()
    );
    let decided = network_decisions(&scene.evidence);
    assert_eq!(
        decided,
        [
            pair("allow", format!("http GET {simple}/tinypkg/")),
            pair(
                "allow",
                format!("http GET {simple}/tinypkg/tinypkg-0.1-py3-none-any.whl")
            ),
        ]
    );
}

fn git(args: &[&str], dir: &Path) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.email=test@example.invalid",
            "-c",
            "user.name=test",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
}

#[test]
fn git_clones_over_http_through_the_proxy() {
    let Some(git_program) = ["/usr/bin/git", "/usr/local/bin/git"]
        .into_iter()
        .find(|p| have(p))
    else {
        println!("SKIPPED git_clones_over_http_through_the_proxy: no git in /usr");
        return;
    };
    let scene = scene();
    // A bare repository served by the dumb HTTP protocol.
    let served = scene.root.join("served");
    let source = scene.root.join("source");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::create_dir_all(&source).unwrap();
    git(&["init", "-q", "--bare", "repo.git"], &served);
    git(&["init", "-q"], &source);
    std::fs::write(source.join("README"), "cloned through the proxy\n").unwrap();
    git(&["add", "README"], &source);
    git(&["commit", "-qm", "first"], &source);
    let bare = served.join("repo.git");
    git(
        &["push", "-q", bare.to_str().unwrap(), "HEAD:refs/heads/main"],
        &source,
    );
    git(&["symbolic-ref", "HEAD", "refs/heads/main"], &bare);
    git(&["update-server-info"], &bare);
    let site = Site::serving(&served);
    let url = format!("http://localhost:{}/repo.git", site.port);
    let out = output_within(governed(
        &scene,
        &[],
        git_program,
        &["clone", "-q", &url, "clone"],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(scene.workspace.join("clone/README")).unwrap(),
        "cloned through the proxy\n"
    );
    let decided = network_decisions(&scene.evidence);
    assert!(
        decided.contains(&pair(
            "allow",
            format!("http GET {url}/info/refs?service=git-upload-pack")
        )) && decided.contains(&pair("allow", format!("http GET {url}/HEAD"))),
        "{decided:?}"
    );
    assert!(
        decided.iter().all(|(verdict, action)| verdict == "allow"
            && action.starts_with(&format!("http GET {url}/"))),
        "{decided:?}"
    );
    // One decided request per request the server saw.
    assert_eq!(site.heads().len(), decided.len());
}

#[test]
fn npm_installs_from_a_registry_through_the_proxy() {
    if !have("/usr/bin/npm") || !have("/usr/bin/node") {
        println!("SKIPPED npm_installs_from_a_registry_through_the_proxy: no npm in /usr/bin");
        return;
    }
    let scene = scene();
    // A registry of one package: its document and its tarball.
    let registry = scene.root.join("registry");
    let package = scene.root.join("pkg/package");
    std::fs::create_dir_all(registry.join("tarballs")).unwrap();
    std::fs::create_dir_all(&package).unwrap();
    std::fs::write(
        package.join("package.json"),
        r#"{"name":"tinypkg","version":"1.0.0","main":"index.js"}"#,
    )
    .unwrap();
    std::fs::write(package.join("index.js"), "module.exports = 42;\n").unwrap();
    let tarball = registry.join("tarballs/tinypkg-1.0.0.tgz");
    let packed = Command::new("tar")
        .arg("czf")
        .arg(&tarball)
        .arg("-C")
        .arg(scene.root.join("pkg"))
        .arg("package")
        .status()
        .unwrap();
    assert!(packed.success());
    let site = Site::serving(&registry);
    let base = format!("http://localhost:{}", site.port);
    let document = serde_json::json!({
        "name": "tinypkg",
        "dist-tags": {"latest": "1.0.0"},
        "versions": {"1.0.0": {
            "name": "tinypkg",
            "version": "1.0.0",
            "main": "index.js",
            "dist": {"tarball": format!("{base}/tarballs/tinypkg-1.0.0.tgz")},
        }},
    });
    std::fs::write(registry.join("tinypkg"), document.to_string()).unwrap();
    let project = scene.workspace.join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("package.json"),
        r#"{"name":"project","version":"0.0.0"}"#,
    )
    .unwrap();
    let registry_url = format!("{base}/");
    let out = output_within(governed(
        &scene,
        &[],
        "/usr/bin/npm",
        &[
            "install",
            "tinypkg",
            "--prefix",
            project.to_str().unwrap(),
            "--registry",
            &registry_url,
            "--no-audit",
            "--no-fund",
            "--no-update-notifier",
        ],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(project.join("node_modules/tinypkg/index.js")).unwrap(),
        "module.exports = 42;\n"
    );
    let decided = network_decisions(&scene.evidence);
    assert!(
        decided.contains(&pair("allow", format!("http GET {base}/tinypkg")))
            && decided.contains(&pair(
                "allow",
                format!("http GET {base}/tarballs/tinypkg-1.0.0.tgz")
            )),
        "{decided:?}"
    );
    assert!(
        decided.iter().all(|(verdict, _)| verdict == "allow"),
        "{decided:?}"
    );
}

/// A request through the proxy whose record cannot be made durable (the
/// commit of every `http` decision fails, injected, debug builds only)
/// does not proceed although the policy allows it: the server is never
/// reached, the session halts and the run ends.
#[test]
fn a_request_whose_record_is_not_synced_never_reaches_the_server() {
    if let Some(scene) = an_http_request_under_fault("unsynced:http") {
        assert!(network_decisions(&scene.evidence).is_empty());
    }
}

/// A handler of the proxy that panics (a fault injected into every `http`
/// decision, debug builds only) closes its connection without an answer
/// and halts the session, recorded; the server is never reached and the
/// run ends.
#[test]
fn a_panic_in_the_proxy_halts_the_session() {
    if let Some(scene) = an_http_request_under_fault("panic:http") {
        let lines = audit_inspect(&scene.evidence);
        assert!(
            lines
                .lines()
                .any(|l| l.contains(" halt ") && l.contains("a panic in the egress proxy")),
            "no halt recorded in\n{lines}"
        );
        assert!(network_decisions(&scene.evidence).is_empty());
    }
}

/// A governed agent that fetches a page of a local server through the
/// proxy while `fault` is injected into every `http` decision (debug
/// builds only; `None` in a release build): the run ends within 30 s,
/// failed, the server accepted no connection, and the evidence verifies.
/// Returns the scene for what each fault adds.
fn an_http_request_under_fault(fault: &str) -> Option<Fixture> {
    if !cfg!(debug_assertions) {
        println!("SKIPPED: fault injection exists in debug builds only");
        return None;
    }
    let scene = scene();
    let site = site_with_page(&scene.root.join("site"), "never\n");
    let url = format!("http://localhost:{}/", site.port);
    let script = format!("/usr/bin/curl -sS {url}; echo curl=$? > after; /usr/bin/sleep 60");
    let mut run = governed(&scene, &[], "/usr/bin/sh", &["-c", &script]);
    run.env("AGENT_KERNEL_TEST_FAULT", fault);
    let started = Instant::now();
    let out = output_within(run);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{fault}: the halt did not end the run"
    );
    assert!(!out.status.success(), "{fault}");
    assert_eq!(site.accepted(), 0, "{fault}: the server was reached");
    let log = std::fs::read(&scene.evidence).unwrap();
    kernel_core::audit(&log, &kernel_core::AuditOptions::default()).unwrap();
    Some(scene)
}
