//! The egress proxy of a governed agent: connections by host name,
//! decided by name.
//!
//! A governed agent's own `connect` is decided by the IP address it names
//! (`notify`), and the agent cannot resolve names itself (it may create
//! no datagram socket, so no DNS query leaves it). This proxy, run by the
//! enforcer for the agent and announced in its environment
//! ([`EgressProxy::environment`]), is how names work:
//!
//! - `CONNECT host:port` (what tools send for `https`, and for anything
//!   else they tunnel) is a `net_connect` of the host **name** the agent
//!   asked for, in canonical form, and the port. Once allowed, the tunnel
//!   carries bytes both ways and nothing more is decided on it (TLS is
//!   opaque).
//! - A plain HTTP request in absolute form (`GET http://host/path
//!   HTTP/1.1`) is an `http` action of the method and the canonical URL.
//!   Exactly what was decided is sent: the request line is re-serialised
//!   from the canonical URL, `Host` is set from it (the agent's own `Host`
//!   is dropped, so a server sharing an address cannot be asked for
//!   another site), hop-by-hop headers are dropped, the body is forwarded
//!   by its declared framing and no further (chunked framing written as
//!   the proxy read it: size lines without extensions, trailer fields
//!   re-serialised), and the server is asked to close the connection
//!   after its response; so is the agent. One
//!   request per connection: bytes the agent sends after the request
//!   (a pipelined second one) are never forwarded.
//!
//! Each decision is taken and recorded (durably) by the session before
//! anything happens: the name is resolved only once it is allowed, so a
//! denied name does not even reach DNS. A halted session denies, and no
//! effect starts once the halt is acknowledged ([`HaltLatch`]); bytes are
//! no longer relayed once halted.
//!
//! **The resolved address.** The proxy resolves the name itself and
//! connects to what it resolved (there is no second lookup to race). A
//! name that resolves to an address that is not globally reachable
//! (loopback, private, link-local, shared, multicast, reserved,
//! documentation ranges; see [`is_internal`]) is not enough: that address
//! must also be allowed as such, by a second decision of `net_connect` to
//! the IP address, exactly what a direct connection to it needs. So the
//! proxy reaches nothing inside the machine or its network that the agent
//! could not reach directly, whatever a DNS answer says (a name the agent
//! controls resolving to `127.0.0.1`, DNS rebinding). Exceptions: a name
//! given as an IP address (its one decision is already on the address),
//! and `localhost` and names under `.localhost`, whose loopback addresses
//! are theirs by definition (RFC 6761). The proxy never connects to
//! itself.
//!
//! **Who may use it.** It listens on `127.0.0.1` on a port of its own,
//! and serves only connections the enforcer itself made on the agent's
//! behalf: a governed agent's `connect` to the proxy's address is not
//! decided by policy (the proxy is the kernel's own service) but is still
//! made by the enforcer (through the [`Door`]), from a local address the
//! proxy is told of before the connection exists. Every other connection
//! (another process of the machine, of any user, or the agent reaching
//! the port some other way) is closed unread, so nothing else can have
//! decisions taken and recorded in the session's name.

use crate::governed::rate::{Bucket, RateLimit};
use crate::session::SystemCall;
use kernel_core::{Action, CanonicalAction};
use kernel_sync::HaltLatch;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream,
    ToSocketAddrs,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Longest request or response head (request line or status line and
/// headers) the proxy reads.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields in one head.
pub const MAX_HEADERS: usize = 128;
/// Longest line of chunked framing (a chunk size, a trailer field).
pub const MAX_LINE_BYTES: usize = 8 * 1024;
/// Most connections served at once; beyond, a connection gets a 503.
pub const MAX_CONNECTIONS: usize = 128;
/// Longest time the agent has to send a whole request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a plain HTTP exchange may wait for the other side's next
/// bytes, and any write may block.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest a name's resolution may take.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest all connection attempts for one request may take together.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(8);
/// Longest the enforcer's connection to the proxy on the agent's behalf
/// waits for room in the listener's backlog.
const DOOR_CONNECT_WAIT: Duration = Duration::from_secs(2);
/// How long a local address the enforcer connected from stays admitted
/// if its connection is never accepted (it is accepted within
/// milliseconds: the connection is queued before `connect` returns).
const ADMISSION_TTL: Duration = Duration::from_secs(10);

/// The variables set in the agent's environment, each to the proxy's URL
/// (`http://127.0.0.1:PORT`). Tools honour one or the other spelling
/// (curl reads `http_proxy` but not `HTTP_PROXY`, Python and npm both).
pub const PROXY_VARIABLES: [&str; 4] = ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"];
/// The variables removed from the agent's environment: no destination
/// bypasses the proxy by name (loopback included: it is decided by name
/// there too).
pub const REMOVED_VARIABLES: [&str; 2] = ["NO_PROXY", "no_proxy"];

/// Decides one action and commits its record; the request proceeds only
/// if the decision's [`SystemCall::release`] says so.
pub type Decide = Arc<dyn Fn(CanonicalAction) -> SystemCall + Send + Sync>;

/// Told of a fault of the proxy's own (a handler that panicked): halts
/// the session.
pub type Fault = Arc<dyn Fn(&str) + Send + Sync>;

/// The local addresses the enforcer connected to the proxy from, on the
/// agent's behalf, not yet accepted.
#[derive(Debug, Default)]
struct Admitted(Mutex<HashMap<SocketAddr, Instant>>);

impl Admitted {
    fn admit(&self, local: SocketAddr) {
        let mut admitted = self.0.lock();
        admitted.retain(|_, since| since.elapsed() < ADMISSION_TTL);
        admitted.insert(local, Instant::now());
    }

    fn forget(&self, local: SocketAddr) {
        self.0.lock().remove(&local);
    }

    /// Whether `peer` is an admitted address; consumes the admission.
    fn take(&self, peer: SocketAddr) -> bool {
        self.0
            .lock()
            .remove(&peer)
            .is_some_and(|since| since.elapsed() < ADMISSION_TTL)
    }
}

/// The way into the proxy for a governed agent: its address, and the
/// enforcer's connection to it on the agent's behalf.
#[derive(Debug, Clone)]
pub struct Door {
    address: SocketAddr,
    admitted: Arc<Admitted>,
}

impl Door {
    /// The proxy's address (`127.0.0.1` and its port).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Connects to the proxy on the agent's behalf: the socket is bound
    /// first, its local address admitted, and only then connected, so the
    /// proxy knows the connection before it can accept it.
    pub(crate) fn connect(&self) -> std::io::Result<TcpStream> {
        use rustix::net::{AddressFamily, SocketFlags, SocketType, sockopt};
        let socket = rustix::net::socket_with(
            AddressFamily::INET,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )?;
        rustix::net::bind(&socket, &SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
        let local = SocketAddr::try_from(rustix::net::getsockname(&socket)?)
            .map_err(|_| std::io::Error::other("the socket has no IP address"))?;
        self.admitted.admit(local);
        let connected =
            sockopt::set_socket_timeout(&socket, sockopt::Timeout::Send, Some(DOOR_CONNECT_WAIT))
                .and_then(|()| rustix::net::connect(&socket, &self.address))
                .and_then(|()| sockopt::set_socket_timeout(&socket, sockopt::Timeout::Send, None));
        match connected {
            Ok(()) => Ok(TcpStream::from(socket)),
            Err(errno) => {
                self.admitted.forget(local);
                Err(errno.into())
            }
        }
    }
}

/// The proxy, bound and not yet serving.
#[derive(Debug)]
pub struct EgressProxy {
    listener: TcpListener,
    door: Door,
}

impl EgressProxy {
    /// Binds the proxy to `127.0.0.1` on a port the system chooses.
    pub fn bind() -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let address = listener.local_addr()?;
        Ok(Self {
            listener,
            door: Door {
                address,
                admitted: Arc::default(),
            },
        })
    }

    /// The door the governor uses for the agent's connections.
    pub fn door(&self) -> Door {
        self.door.clone()
    }

    /// The proxy's URL, as announced to the agent.
    pub fn url(&self) -> String {
        format!("http://{}", self.door.address)
    }

    /// The variables to set in the agent's environment (each of
    /// [`PROXY_VARIABLES`] to [`url`](Self::url)); remove
    /// [`REMOVED_VARIABLES`] too.
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        PROXY_VARIABLES
            .iter()
            .map(|name| (*name, self.url()))
            .collect()
    }

    /// Serves the proxy on a thread of its own until the process ends:
    /// each admitted connection on a thread of its own, every request
    /// decided with `decide` (at most `rate`, with the same waiting rule as
    /// governed calls; beyond, a 503, unrecorded), effects started only
    /// through `latch`. A handler that panics closes its connection and
    /// reports to `fault`.
    pub fn serve(
        self,
        decide: Decide,
        fault: Fault,
        latch: Arc<HaltLatch>,
        rate: RateLimit,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let context = Arc::new(Context {
            decide,
            fault,
            latch,
            bucket: Mutex::new(Bucket::new(rate)),
            proxy: self.door.address,
            live: AtomicUsize::new(0),
            resolve: resolve_name,
        });
        let Self { listener, door } = self;
        std::thread::Builder::new()
            .name("egress-proxy".into())
            .spawn(move || accept_loop(&listener, &door, &context))
    }
}

fn accept_loop(listener: &TcpListener, door: &Door, context: &Arc<Context>) {
    loop {
        let Some((stream, peer)) = crate::session::control::accepted(listener.accept()) else {
            continue;
        };
        if !door.admitted.take(peer) {
            // Not a connection the enforcer made for the agent: closed
            // unread, nothing decided.
            drop(stream);
            continue;
        }
        if context.live.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            context.live.fetch_sub(1, Ordering::SeqCst);
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            reply(&stream, 503, "too many proxy connections at once");
            continue;
        }
        let served = Arc::clone(context);
        let spawned = std::thread::Builder::new()
            .name("egress-connection".into())
            .spawn(move || {
                let _live = Live(&served.live);
                let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    serve_connection(&served, stream);
                }));
                if handled.is_err() {
                    (served.fault)("internal fault: a panic in the egress proxy");
                }
            });
        if spawned.is_err() {
            context.live.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Counts a connection as served until dropped.
struct Live<'a>(&'a AtomicUsize);

impl Drop for Live<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What every connection's handler shares.
struct Context {
    decide: Decide,
    fault: Fault,
    latch: Arc<HaltLatch>,
    bucket: Mutex<Bucket>,
    /// The proxy's own address, never connected to.
    proxy: SocketAddr,
    live: AtomicUsize,
    /// Resolves a domain name (tests replace it).
    resolve: fn(&str, u16) -> std::io::Result<Vec<SocketAddr>>,
}

impl Context {
    /// Decides `action` under the rate limit: `Err` with the status and
    /// message to answer when it may not proceed.
    fn decide(&self, action: &CanonicalAction) -> Result<(), (u16, String)> {
        if !crate::governed::rate::wait_for_turn(&self.bucket) {
            return Err((503, "too many decisions at once; try again".into()));
        }
        #[cfg(debug_assertions)]
        crate::fault::injected_fault(action);
        // The only way a request through the proxy proceeds: its allow
        // released (the record durable, the session not halted).
        if (self.decide)(action.clone()).release() {
            Ok(())
        } else {
            Err((
                403,
                format!(
                    "denied by policy: {}",
                    kernel_policy::describe::action(action.action())
                ),
            ))
        }
    }
}

/// An HTTP head, as read: request line or status line, and fields.
#[derive(Debug)]
struct Head {
    /// The method (requests) or the status code as text (responses).
    first: String,
    /// The request target (requests) or the reason phrase (responses).
    second: String,
    /// `HTTP/1.x`'s `x`.
    minor: u8,
    /// The status code (responses; 0 for requests).
    status: u16,
    fields: Vec<(String, Vec<u8>)>,
}

impl Head {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields
            .iter()
            .filter(move |(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }

    /// The lower-case tokens of every `Connection` field.
    fn connection_tokens(&self) -> Vec<String> {
        self.values("connection")
            .flat_map(|value| value.split(|b| *b == b','))
            .map(|token| String::from_utf8_lossy(token.trim_ascii()).to_ascii_lowercase())
            .filter(|token| !token.is_empty())
            .collect()
    }
}

/// Reads one head (up to and including its empty line) from `reader`,
/// within [`MAX_HEAD_BYTES`] and by `deadline`; empty lines before it are
/// skipped. `None` at a clean end of stream before any byte.
fn read_head(
    reader: &mut impl BufRead,
    deadline: Option<Instant>,
) -> Result<Option<Vec<u8>>, &'static str> {
    let mut head = Vec::new();
    loop {
        if deadline.is_some_and(|deadline| Instant::now() > deadline) {
            return Err("the head did not come in time");
        }
        let room = MAX_HEAD_BYTES.saturating_sub(head.len());
        if room == 0 {
            return Err("the head is too long");
        }
        let start = head.len();
        let read = match (&mut *reader)
            .take(u64::try_from(room).unwrap_or(u64::MAX))
            .read_until(b'\n', &mut head)
        {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Err("the connection failed while reading the head"),
        };
        if read == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err("the connection ended inside the head")
            };
        }
        let line = head.get(start..).unwrap_or_default();
        if !line.ends_with(b"\n") {
            if head.len() >= MAX_HEAD_BYTES {
                return Err("the head is too long");
            }
            continue;
        }
        if line == b"\r\n" || line == b"\n" {
            if start == 0 {
                head.clear();
                continue;
            }
            return Ok(Some(head));
        }
    }
}

fn owned_fields(headers: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|h| (h.name.to_owned(), h.value.to_vec()))
        .collect()
}

fn parse_request(head: &[u8]) -> Result<Head, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(length)) if length == head.len() => {}
        _ => return Err("malformed request head"),
    }
    Ok(Head {
        first: request.method.ok_or("no method")?.to_owned(),
        second: request.path.ok_or("no request target")?.to_owned(),
        minor: request.version.ok_or("no version")?,
        status: 0,
        fields: owned_fields(request.headers),
    })
}

fn parse_response(head: &[u8]) -> Result<Head, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(head) {
        Ok(httparse::Status::Complete(length)) if length == head.len() => {}
        _ => return Err("malformed response head"),
    }
    let status = response.code.ok_or("no status")?;
    Ok(Head {
        first: status.to_string(),
        second: response.reason.unwrap_or_default().to_owned(),
        minor: response.version.ok_or("no version")?,
        status,
        fields: owned_fields(response.headers),
    })
}

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    None,
    Length(u64),
    Chunked,
    /// Up to the end of the connection (responses only).
    UntilClose,
}

fn content_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The body of a request: only an exact `Transfer-Encoding: chunked` or
/// one valid `Content-Length`; anything another parser could read
/// differently is refused.
fn request_body(head: &Head) -> Result<Body, &'static str> {
    let encodings: Vec<&[u8]> = head.values("transfer-encoding").collect();
    let lengths: Vec<&[u8]> = head.values("content-length").collect();
    match (encodings.as_slice(), lengths.as_slice()) {
        ([], []) => Ok(Body::None),
        ([], [length]) => content_length(length)
            .map(Body::Length)
            .ok_or("invalid Content-Length"),
        ([], _) => Err("several Content-Length fields"),
        ([encoding], []) if encoding.trim_ascii().eq_ignore_ascii_case(b"chunked") => {
            Ok(Body::Chunked)
        }
        (_, []) => Err("only `Transfer-Encoding: chunked` is supported"),
        _ => Err("both Transfer-Encoding and Content-Length"),
    }
}

/// The body of a response to `method`.
fn response_body(method: &str, head: &Head) -> Result<Body, &'static str> {
    if method == "HEAD" || (100..200).contains(&head.status) || matches!(head.status, 204 | 304) {
        return Ok(Body::None);
    }
    let encodings: Vec<&[u8]> = head.values("transfer-encoding").collect();
    if !encodings.is_empty() {
        let last = encodings
            .iter()
            .flat_map(|value| value.split(|b| *b == b','))
            .next_back()
            .map(<[u8]>::trim_ascii)
            .unwrap_or_default();
        return Ok(if last.eq_ignore_ascii_case(b"chunked") {
            Body::Chunked
        } else {
            Body::UntilClose
        });
    }
    let lengths: Vec<&[u8]> = head.values("content-length").collect();
    match lengths.as_slice() {
        [] => Ok(Body::UntilClose),
        [length] => content_length(length)
            .map(Body::Length)
            .ok_or("invalid Content-Length in the response"),
        _ => Err("several Content-Length fields in the response"),
    }
}

/// Appends the field line `name: value` to a head being written.
fn push_field(head: &mut Vec<u8>, name: &str, value: &[u8]) {
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// Writes a short plain-text answer of the proxy's own.
fn reply(mut stream: &TcpStream, status: u16, message: &str) {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        417 => "Expectation Failed",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let body = format!("agent-kernel egress proxy: {message}\n");
    let text = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(text.as_bytes());
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
}

fn serve_connection(context: &Context, client: TcpStream) {
    if client.set_read_timeout(Some(IDLE_TIMEOUT)).is_err()
        || client.set_write_timeout(Some(IDLE_TIMEOUT)).is_err()
    {
        return;
    }
    let Ok(reading) = client.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reading);
    let head = match read_head(&mut reader, Some(Instant::now() + HEAD_TIMEOUT)) {
        Ok(Some(head)) => head,
        Ok(None) => return,
        Err(why) => return reply(&client, 400, why),
    };
    let request = match parse_request(&head) {
        Ok(request) => request,
        Err(why) => return reply(&client, 400, why),
    };
    if request.first == "CONNECT" {
        tunnel(context, &client, reader, &request);
    } else {
        forward(context, &client, &mut reader, &request);
    }
}

/// The host and port of a `CONNECT` target (`host:port`, `[v6]:port`).
fn authority(target: &str) -> Option<(&str, u16)> {
    let (host, port) = target.rsplit_once(':')?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|port| *port != 0)?;
    if let Some(v6) = host.strip_prefix('[') {
        v6.strip_suffix(']')?.parse::<Ipv6Addr>().ok()?;
        return Some((host, port));
    }
    if host.is_empty() || host.contains(['/', '@', '?', '#', '[', ']', ':']) {
        return None;
    }
    Some((host, port))
}

/// `CONNECT host:port`: a `net_connect` of the name; once allowed and
/// connected, bytes both ways until either side ends.
fn tunnel(context: &Context, client: &TcpStream, reader: BufReader<TcpStream>, request: &Head) {
    let Some((host, port)) = authority(&request.second) else {
        return reply(client, 400, "CONNECT needs a `host:port` target");
    };
    let Ok(action) = CanonicalAction::new(Action::net_connect(host, port), None) else {
        return reply(client, 400, "the CONNECT target is not a valid host");
    };
    let Action::NetConnect { host, port } = action.action() else {
        return reply(client, 400, "the CONNECT target is not a valid host");
    };
    if let Err((status, why)) = context.decide(&action) {
        return reply(client, status, &why);
    }
    let Some(effect) = context.latch.start_effect() else {
        return reply(client, 403, "the kernel has halted");
    };
    let server = match connect(context, host, *port) {
        Ok(server) => server,
        Err((status, why)) => return reply(client, status, &why),
    };
    let mut answer = client;
    if answer
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_err()
    {
        return;
    }
    drop(effect);
    // A tunnel waits as long as its ends do: no read deadline.
    if client.set_read_timeout(None).is_err() || server.set_read_timeout(None).is_err() {
        return;
    }
    let latch = &context.latch;
    let server = &server;
    std::thread::scope(|scope| {
        let mut upstream = reader;
        scope.spawn(move || pipe(&mut upstream, server, client, latch));
        let Ok(mut downstream) = server.try_clone() else {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
            return;
        };
        pipe(&mut downstream, client, server, latch);
    });
}

/// Copies `from` to `to` until the end of `from` (then ends `to`'s
/// writing side), an error (then both connections end), or a halt.
fn pipe(from: &mut impl Read, to: &TcpStream, other: &TcpStream, latch: &HaltLatch) {
    if copy_to_end(from, to, latch).is_ok() {
        let _ = to.shutdown(Shutdown::Write);
        return;
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = other.shutdown(Shutdown::Both);
}

/// Hop-by-hop fields of a request, never forwarded.
const REQUEST_HOP_FIELDS: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
    "host",
    "expect",
];

/// Fields a `Connection` field may not name: dropping them would change
/// what the server reads as the request.
const FRAMING_FIELDS: [&str; 3] = ["content-length", "transfer-encoding", "host"];

/// A plain HTTP request in absolute form: an `http` action of the method
/// and the canonical URL; once allowed, the request as decided, its body,
/// and the response.
fn forward(
    context: &Context,
    client: &TcpStream,
    reader: &mut BufReader<TcpStream>,
    request: &Head,
) {
    if !request.second.starts_with("http://") && !request.second.starts_with("https://") {
        return reply(
            client,
            400,
            "a proxy request needs an absolute `http://` URL (or CONNECT)",
        );
    }
    let Ok(action) = CanonicalAction::new(
        Action::http(request.first.as_str(), request.second.as_str()),
        None,
    ) else {
        return reply(client, 400, "the method or URL has no canonical form");
    };
    let Action::Http { method, url } = action.action() else {
        return reply(client, 400, "the method or URL has no canonical form");
    };
    let Ok(url) = url::Url::parse(url) else {
        return reply(client, 400, "the URL has no canonical form");
    };
    if url.scheme() != "http" {
        return reply(
            client,
            501,
            "only `http://` URLs are forwarded; `https` goes through CONNECT",
        );
    }
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return reply(client, 400, "the URL has no host");
    };
    let body = match request_body(request) {
        Ok(body) => body,
        Err(why) => return reply(client, 400, why),
    };
    let tokens = request.connection_tokens();
    if tokens
        .iter()
        .any(|token| FRAMING_FIELDS.contains(&token.as_str()))
    {
        return reply(
            client,
            400,
            "`Connection` names a field that frames the request",
        );
    }
    let mut expects_continue = false;
    for expectation in request.values("expect") {
        if expectation
            .trim_ascii()
            .eq_ignore_ascii_case(b"100-continue")
            && request.minor == 1
        {
            expects_continue = true;
        } else {
            return reply(client, 417, "only `Expect: 100-continue` is understood");
        }
    }
    if let Err((status, why)) = context.decide(&action) {
        return reply(client, status, &why);
    }
    let Some(effect) = context.latch.start_effect() else {
        return reply(client, 403, "the kernel has halted");
    };
    let server = match connect(context, host, port) {
        Ok(server) => server,
        Err((status, why)) => return reply(client, status, &why),
    };
    if server.set_read_timeout(Some(IDLE_TIMEOUT)).is_err()
        || server.set_write_timeout(Some(IDLE_TIMEOUT)).is_err()
    {
        return reply(client, 502, "the connection to the server failed");
    }
    // Exactly what was decided: the canonical URL's path and query, its
    // authority as `Host`.
    let mut target = url.path().to_owned();
    if let Some(query) = url.query() {
        target.push('?');
        target.push_str(query);
    }
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let mut head = format!(
        "{method} {target} HTTP/1.{}\r\nHost: {authority}\r\n",
        request.minor
    )
    .into_bytes();
    for (name, value) in &request.fields {
        let lower = name.to_ascii_lowercase();
        if REQUEST_HOP_FIELDS.contains(&lower.as_str()) || tokens.contains(&lower) {
            continue;
        }
        push_field(&mut head, name, value);
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    let mut upstream = &server;
    if upstream.write_all(&head).is_err() {
        return reply(client, 502, "the connection to the server failed");
    }
    drop(effect);
    if expects_continue {
        let mut answer = client;
        if answer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
            return;
        }
    }
    let latch = &context.latch;
    let sent = match body {
        Body::None => Ok(()),
        Body::Length(length) => copy_exact(reader, &server, length, latch),
        Body::Chunked => copy_chunked(reader, &server, latch),
        Body::UntilClose => Err("no request body runs to the end of the connection"),
    };
    if sent.is_err() {
        let _ = server.shutdown(Shutdown::Both);
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    respond(method, &server, client, latch);
}

/// Relays the server's response: interim (`1xx`) responses are dropped,
/// the final head is re-serialised without hop-by-hop fields and with
/// `Connection: close`, the body by its framing; then both ends close.
fn respond(method: &str, server: &TcpStream, client: &TcpStream, latch: &HaltLatch) {
    let Ok(reading) = server.try_clone() else {
        return reply(client, 502, "the connection to the server failed");
    };
    let mut reader = BufReader::new(reading);
    let deadline = Instant::now() + IDLE_TIMEOUT;
    let response = loop {
        let head = match read_head(&mut reader, Some(deadline)) {
            Ok(Some(head)) => head,
            Ok(None) => return reply(client, 502, "the server closed without a response"),
            Err(why) => return reply(client, 502, why),
        };
        let response = match parse_response(&head) {
            Ok(response) => response,
            Err(why) => return reply(client, 502, why),
        };
        match response.status {
            101 => return reply(client, 502, "the server switched protocols unasked"),
            100..=199 => continue,
            _ => break response,
        }
    };
    let body = match response_body(method, &response) {
        Ok(body) => body,
        Err(why) => return reply(client, 502, why),
    };
    let tokens = response.connection_tokens();
    let mut head = format!(
        "HTTP/1.{} {} {}\r\n",
        response.minor, response.first, response.second
    )
    .into_bytes();
    for (name, value) in &response.fields {
        let lower = name.to_ascii_lowercase();
        let framing = lower == "content-length" || lower == "transfer-encoding";
        if !framing
            && (["connection", "keep-alive", "proxy-connection"].contains(&lower.as_str())
                || tokens.contains(&lower))
        {
            continue;
        }
        push_field(&mut head, name, value);
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    let mut answer = client;
    if latch.is_halted() || answer.write_all(&head).is_err() {
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let _ = match body {
        Body::None => Ok(()),
        Body::Length(length) => copy_exact(&mut reader, client, length, latch),
        Body::Chunked => copy_chunked(&mut reader, client, latch),
        Body::UntilClose => copy_to_end(&mut reader, client, latch),
    };
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
}

/// Copies exactly `length` bytes.
fn copy_exact(
    from: &mut impl Read,
    mut to: &TcpStream,
    length: u64,
    latch: &HaltLatch,
) -> Result<(), &'static str> {
    let mut left = length;
    let mut buffer = vec![0u8; 16 * 1024];
    while left > 0 {
        let want = usize::try_from(left)
            .unwrap_or(usize::MAX)
            .min(buffer.len());
        let chunk = buffer.get_mut(..want).ok_or("buffer")?;
        let read = match from.read(chunk) {
            Ok(0) => return Err("the body ended early"),
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Err("the connection failed"),
        };
        if latch.is_halted() {
            return Err("halted");
        }
        to.write_all(chunk.get(..read).ok_or("buffer")?)
            .map_err(|_| "the connection failed")?;
        left = left.saturating_sub(u64::try_from(read).unwrap_or(u64::MAX));
    }
    Ok(())
}

/// Copies to the end of `from`.
fn copy_to_end(
    from: &mut impl Read,
    mut to: &TcpStream,
    latch: &HaltLatch,
) -> Result<(), &'static str> {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Err("the connection failed"),
        };
        if latch.is_halted() {
            return Err("halted");
        }
        to.write_all(buffer.get(..read).unwrap_or_default())
            .map_err(|_| "the connection failed")?;
    }
}

/// Reads one line of chunked framing (within [`MAX_LINE_BYTES`]).
fn read_line(from: &mut impl BufRead) -> Result<Vec<u8>, &'static str> {
    let mut line = Vec::new();
    let limit = u64::try_from(MAX_LINE_BYTES).unwrap_or(u64::MAX);
    loop {
        match (&mut *from).take(limit).read_until(b'\n', &mut line) {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Err("the connection failed"),
        }
    }
    if !line.ends_with(b"\r\n") {
        return Err("malformed chunked framing");
    }
    Ok(line)
}

/// The size of a chunk from its size line (extensions allowed and
/// ignored).
fn chunk_size(line: &[u8]) -> Result<u64, &'static str> {
    // httparse reads an empty size as 0; here it is malformed.
    if !line.first().is_some_and(u8::is_ascii_hexdigit) {
        return Err("malformed chunk size");
    }
    match httparse::parse_chunk_size(line) {
        Ok(httparse::Status::Complete((read, size))) if read == line.len() => Ok(size),
        _ => Err("malformed chunk size"),
    }
}

/// Copies one chunked body and not a byte beyond its end. The framing is
/// written as the proxy read it, not as it came (each size line without
/// its extensions, the trailer fields re-serialised), so that a receiver
/// that would read the original framing another way (a bare CR in an
/// extension or a trailer field) reads this one only one way.
fn copy_chunked(
    from: &mut impl BufRead,
    mut to: &TcpStream,
    latch: &HaltLatch,
) -> Result<(), &'static str> {
    loop {
        let size = chunk_size(&read_line(from)?)?;
        if latch.is_halted() {
            return Err("halted");
        }
        to.write_all(format!("{size:x}\r\n").as_bytes())
            .map_err(|_| "the connection failed")?;
        if size == 0 {
            return copy_trailers(from, to, latch);
        }
        copy_exact(from, to, size, latch)?;
        if read_line(from)? != b"\r\n" {
            return Err("malformed chunked framing");
        }
        to.write_all(b"\r\n").map_err(|_| "the connection failed")?;
    }
}

/// Copies the trailer section of a chunked body (fields, then the empty
/// line), within [`MAX_HEAD_BYTES`] and [`MAX_HEADERS`], re-serialised.
fn copy_trailers(
    from: &mut impl BufRead,
    mut to: &TcpStream,
    latch: &HaltLatch,
) -> Result<(), &'static str> {
    let mut section = Vec::new();
    loop {
        let line = read_line(from)?;
        section.extend_from_slice(&line);
        if section.len() > MAX_HEAD_BYTES {
            return Err("the trailer section is too long");
        }
        if line == b"\r\n" {
            break;
        }
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let fields = match httparse::parse_headers(&section, &mut fields) {
        Ok(httparse::Status::Complete((read, fields))) if read == section.len() => fields,
        _ => return Err("malformed trailer section"),
    };
    let mut trailers = Vec::new();
    for field in fields {
        push_field(&mut trailers, field.name, field.value);
    }
    trailers.extend_from_slice(b"\r\n");
    if latch.is_halted() {
        return Err("halted");
    }
    to.write_all(&trailers).map_err(|_| "the connection failed")
}

/// Resolves `host` (a domain name) with the system's resolver, within
/// [`RESOLVE_TIMEOUT`].
fn resolve_name(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    let (sender, receiver) = std::sync::mpsc::channel();
    let name = host.to_owned();
    std::thread::Builder::new()
        .name("egress-resolve".into())
        .spawn(move || {
            let _ = sender.send(
                (name.as_str(), port)
                    .to_socket_addrs()
                    .map(Iterator::collect::<Vec<_>>),
            );
        })?;
    receiver
        .recv_timeout(RESOLVE_TIMEOUT)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "resolution timed out"))?
}

/// The canonical host of an IP address, as a direct `connect` to it is
/// decided (IPv6 in brackets).
pub fn ip_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => url::Host::<String>::Ipv4(v4).to_string(),
        IpAddr::V6(v6) => url::Host::<String>::Ipv6(v6).to_string(),
    }
}

/// Whether connections to `ip` stay inside the machine or its networks,
/// or go nowhere in particular: every address that is not plainly a
/// global unicast one (loopback, unspecified, private, shared,
/// link-local, multicast, broadcast, reserved, documentation and
/// benchmarking ranges, IPv6 unique-local and site-local, IPv4-mapped,
/// -compatible, NAT64 and 6to4 forms of any of those, and the IETF
/// protocol assignments). Fails closed: when unsure, internal.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0
        || a == 10
        || a == 127
        || (a == 100 && (b & 0xc0) == 64)
        || (a == 169 && b == 254)
        || (a == 172 && (b & 0xf0) == 16)
        || (a == 192 && b == 0 && (c == 0 || c == 2))
        || (a == 192 && b == 88 && c == 99)
        || (a == 192 && b == 168)
        || (a == 198 && (b & 0xfe) == 18)
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    let octets = ip.octets();
    let embedded = |at: usize| {
        let bytes: [u8; 4] = octets
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0; 4]);
        internal_v4(Ipv4Addr::from(bytes))
    };
    let [s0, s1, s2, s3, s4, s5, ..] = segments;
    if s0 == 0 && s1 == 0 && s2 == 0 && s3 == 0 && s4 == 0 {
        // Unspecified, loopback, IPv4-compatible (::/96) and IPv4-mapped
        // (::ffff:0:0/96): the mapped form reaches the IPv4 address.
        return s5 != 0xffff || embedded(12);
    }
    match s0 {
        // NAT64 (64:ff9b::/96 well-known, 64:ff9b:1::/48 local use).
        0x0064 if s1 == 0xff9b => s2 != 0 || embedded(12),
        // IETF protocol assignments (Teredo among them), discard-only.
        0x2001 if s1 < 0x0200 => true,
        0x0100 if s1 == 0 && s2 == 0 && s3 == 0 => true,
        // Documentation.
        0x2001 if s1 == 0x0db8 => true,
        0x3fff if s1 < 0x1000 => true,
        // 6to4 carries an IPv4 address.
        0x2002 => embedded(2),
        _ => {
            (s0 & 0xfe00) == 0xfc00 // unique local
                || (s0 & 0xffc0) == 0xfe80 // link-local
                || (s0 & 0xffc0) == 0xfec0 // site-local
                || (s0 & 0xff00) == 0xff00 // multicast
        }
    }
}

/// Whether the decided host is a name whose loopback addresses are its
/// own by definition (RFC 6761).
fn loopback_by_name(host: &str) -> bool {
    host == "localhost" || host.ends_with(".localhost")
}

/// Whether reaching `ip` for the decided canonical `host` (`literal`: an
/// IP address itself) needs a decision of the address as well.
fn needs_address_decision(host: &str, literal: bool, ip: IpAddr) -> bool {
    !literal && is_internal(ip) && !(loopback_by_name(host) && ip.is_loopback())
}

/// Resolves the decided canonical `host` and connects to the first of its
/// addresses that may be reached and answers: an IP literal is its own
/// address; an internal address of a name needs its own allowed
/// `net_connect` (see the module's docs), unless the name is a
/// `localhost` one and the address loopback; the proxy itself is never
/// connected to.
fn connect(context: &Context, host: &str, port: u16) -> Result<TcpStream, (u16, String)> {
    let literal = match url::Host::parse(host) {
        Ok(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Ok(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        Ok(url::Host::Domain(_)) => None,
        Err(_) => return Err((400, format!("`{host}` is not a host"))),
    };
    let mut addresses = match literal {
        Some(ip) => vec![SocketAddr::new(ip, port)],
        None => (context.resolve)(host, port)
            .map_err(|e| (502, format!("cannot resolve `{host}`: {e}")))?,
    };
    // Each address once, in the resolver's order.
    let mut seen = std::collections::HashSet::new();
    addresses.retain(|address| seen.insert(*address));
    let deadline = Instant::now() + CONNECT_DEADLINE;
    let mut last = (502, format!("`{host}` has no address"));
    for address in addresses {
        let ip = address.ip();
        if address.port() == context.proxy.port() && (ip.is_loopback() || ip.is_unspecified()) {
            last = (403, "the proxy does not connect to itself".into());
            continue;
        }
        if needs_address_decision(host, literal.is_some(), ip) {
            let Ok(direct) = CanonicalAction::new(Action::net_connect(ip_host(ip), port), None)
            else {
                last = (
                    403,
                    format!("`{host}` resolves to {ip}, which cannot be decided"),
                );
                continue;
            };
            if let Err((status, why)) = context.decide(&direct) {
                last = (
                    status,
                    format!("`{host}` resolves to the internal address {ip}: {why}"),
                );
                continue;
            }
        }
        let Some(left) = deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
        else {
            break;
        };
        match TcpStream::connect_timeout(&address, left) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = (502, format!("cannot connect to {address}: {e}")),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        reason = "tests"
    )]

    use super::*;
    use std::io::Cursor;

    #[test]
    fn internal_addresses_are_recognised_and_global_ones_are_not() {
        let internal = [
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::7f00:1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "2001::1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "100::1",
        ];
        for ip in internal {
            assert!(is_internal(ip.parse().unwrap()), "{ip} is internal");
        }
        let global = [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "151.101.0.223",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.1.1",
            "192.169.0.1",
            "223.255.255.254",
            "2606:4700::1111",
            "2a00:1450:4001::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ];
        for ip in global {
            assert!(!is_internal(ip.parse().unwrap()), "{ip} is global");
        }
    }

    #[test]
    fn addresses_are_named_as_a_direct_connect_decides_them() {
        assert_eq!(ip_host("127.0.0.1".parse().unwrap()), "127.0.0.1");
        assert_eq!(ip_host("::1".parse().unwrap()), "[::1]");
        for ip in ["127.0.0.1", "::1", "fe80::1"] {
            let host = ip_host(ip.parse().unwrap());
            let canonical = CanonicalAction::new(Action::net_connect(&host, 80), None).unwrap();
            assert_eq!(canonical.action(), &Action::net_connect(host, 80));
        }
    }

    #[test]
    fn connect_targets_are_host_and_port_and_nothing_else() {
        assert_eq!(authority("pypi.org:443"), Some(("pypi.org", 443)));
        assert_eq!(authority("[::1]:8080"), Some(("[::1]", 8080)));
        assert_eq!(authority("127.0.0.1:1"), Some(("127.0.0.1", 1)));
        for bad in [
            "pypi.org",
            "pypi.org:",
            "pypi.org:0",
            "pypi.org:65536",
            "pypi.org:+443",
            ":443",
            "user@pypi.org:443",
            "pypi.org/x:443",
            "[::1:443",
            "[pypi.org]:443",
            "http://pypi.org:443",
        ] {
            assert_eq!(authority(bad), None, "{bad}");
        }
    }

    fn head_of(text: &str) -> Head {
        let mut reader = Cursor::new(text.as_bytes().to_vec());
        let head = read_head(&mut reader, None).unwrap().unwrap();
        parse_request(&head).unwrap()
    }

    #[test]
    fn a_request_body_has_one_reading_or_is_refused() {
        let body = |fields: &str| {
            request_body(&head_of(&format!(
                "POST http://a/ HTTP/1.1\r\n{fields}\r\n"
            )))
        };
        assert_eq!(body(""), Ok(Body::None));
        assert_eq!(body("Content-Length: 12\r\n"), Ok(Body::Length(12)));
        assert_eq!(body("Transfer-Encoding: chunked\r\n"), Ok(Body::Chunked));
        assert_eq!(body("Transfer-Encoding: Chunked \r\n"), Ok(Body::Chunked));
        for refused in [
            "Content-Length: 1\r\nContent-Length: 1\r\n",
            "Content-Length: -1\r\n",
            "Content-Length: 1e3\r\n",
            "Content-Length: +5\r\n",
            "Content-Length: \r\n",
            "Transfer-Encoding: gzip, chunked\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            "Transfer-Encoding: xchunked\r\n",
        ] {
            assert!(body(refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn heads_are_bounded_and_leading_empty_lines_skipped() {
        let mut reader = Cursor::new(b"\r\nGET http://a/ HTTP/1.1\r\nA: b\r\n\r\nrest".to_vec());
        let head = read_head(&mut reader, None).unwrap().unwrap();
        assert_eq!(head, b"GET http://a/ HTTP/1.1\r\nA: b\r\n\r\n");
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"rest");
        let long = format!(
            "GET http://a/ HTTP/1.1\r\nA: {}\r\n\r\n",
            "x".repeat(MAX_HEAD_BYTES)
        );
        assert!(read_head(&mut Cursor::new(long.into_bytes()), None).is_err());
        assert!(
            read_head(
                &mut Cursor::new(b"GET http://a/ HTTP/1.1\r\n".to_vec()),
                None
            )
            .is_err()
        );
        assert_eq!(read_head(&mut Cursor::new(Vec::new()), None), Ok(None));
        // A bare `\r` inside a field, or a folded line, is no request.
        for bad in [
            "GET http://a/ HTTP/1.1\r\nA: b\rc\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\nA: b\r\n c\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\nA : b\r\n\r\n",
        ] {
            let mut reader = Cursor::new(bad.as_bytes().to_vec());
            let head = read_head(&mut reader, None).unwrap().unwrap();
            assert!(parse_request(&head).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_admission_of_a_local_address_is_used_once() {
        let admitted = Admitted::default();
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        assert!(!admitted.take(local));
        admitted.admit(local);
        assert!(!admitted.take("127.0.0.1:40001".parse().unwrap()));
        assert!(admitted.take(local));
        assert!(!admitted.take(local));
    }

    /// A context whose decisions are listed and allowed by `allow`, and
    /// whose resolver answers `addresses` for every name.
    fn context_with(
        allow: fn(&Action) -> bool,
        resolve: fn(&str, u16) -> std::io::Result<Vec<SocketAddr>>,
    ) -> (Arc<Context>, Arc<Mutex<Vec<String>>>) {
        let decided = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&decided);
        let context = Arc::new(Context {
            decide: Arc::new(move |action: CanonicalAction| {
                seen.lock()
                    .push(kernel_policy::describe::action(action.action()));
                SystemCall::for_tests(allow(action.action()))
            }),
            fault: Arc::new(|_: &str| {}),
            latch: Arc::new(HaltLatch::new()),
            bucket: Mutex::new(Bucket::new(RateLimit::default())),
            proxy: "127.0.0.1:1".parse().unwrap(),
            live: AtomicUsize::new(0),
            resolve,
        });
        (context, decided)
    }

    #[test]
    fn a_name_resolving_to_an_internal_address_needs_that_address_allowed() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        fn to_loopback(_: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
            Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
        }
        // The name is allowed (it was decided before), the address not.
        let (context, decided) = context_with(|_| false, to_loopback);
        let refused = connect(&context, "rebound.example", port).unwrap_err();
        assert_eq!(refused.0, 403, "{refused:?}");
        assert_eq!(
            *decided.lock(),
            [format!("net_connect 127.0.0.1:{port}")],
            "the address was decided"
        );
        listener.set_nonblocking(true).unwrap();
        assert!(listener.accept().is_err(), "no connection was made");
        // The address allowed too: connected.
        let (context, decided) = context_with(|_| true, to_loopback);
        assert!(connect(&context, "rebound.example", port).is_ok());
        assert_eq!(decided.lock().len(), 1);
        // `localhost` names are loopback by definition; an IP literal was
        // decided as such: no second decision.
        let (context, decided) = context_with(|_| false, to_loopback);
        assert!(connect(&context, "localhost", port).is_ok());
        assert!(connect(&context, "api.localhost", port).is_ok());
        assert!(connect(&context, "127.0.0.1", port).is_ok());
        assert!(decided.lock().is_empty());
        // The proxy itself, never.
        let (context, _) = context_with(|_| true, to_loopback);
        let itself = Context {
            proxy: SocketAddr::from(([127, 0, 0, 1], port)),
            decide: Arc::clone(&context.decide),
            fault: Arc::clone(&context.fault),
            latch: Arc::clone(&context.latch),
            bucket: Mutex::new(Bucket::new(RateLimit::default())),
            live: AtomicUsize::new(0),
            resolve: context.resolve,
        };
        assert_eq!(connect(&itself, "localhost", port).unwrap_err().0, 403);
    }

    #[test]
    fn only_internal_addresses_of_names_need_their_own_decision() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert!(!needs_address_decision(
            "pypi.org",
            false,
            ip("151.101.0.223")
        ));
        assert!(!needs_address_decision(
            "pypi.org",
            false,
            ip("2a04:4e42::223")
        ));
        assert!(needs_address_decision("pypi.org", false, ip("10.0.0.1")));
        assert!(needs_address_decision("pypi.org", false, ip("127.0.0.1")));
        assert!(needs_address_decision(
            "pypi.org",
            false,
            ip("::ffff:127.0.0.1")
        ));
        assert!(!needs_address_decision("localhost", false, ip("127.0.0.1")));
        assert!(!needs_address_decision("localhost", false, ip("::1")));
        assert!(!needs_address_decision(
            "a.localhost",
            false,
            ip("127.0.0.2")
        ));
        assert!(needs_address_decision("localhost", false, ip("10.0.0.1")));
        assert!(needs_address_decision(
            "notlocalhost",
            false,
            ip("127.0.0.1")
        ));
        assert!(!needs_address_decision("127.0.0.1", true, ip("127.0.0.1")));
    }

    /// What the proxy answers `request` on a connection of its own
    /// within 5 s.
    fn exchange(context: &Arc<Context>, request: &str) -> String {
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut agent = TcpStream::connect(front.local_addr().unwrap()).unwrap();
        let (client, _) = front.accept().unwrap();
        agent.write_all(request.as_bytes()).unwrap();
        let context = Arc::clone(context);
        std::thread::spawn(move || serve_connection(&context, client));
        agent
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut answer = Vec::new();
        let _ = agent.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[test]
    fn once_halted_an_allowed_request_has_no_effect() {
        let target = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = target.local_addr().unwrap().port();
        fn unused(_: &str, _: u16) -> std::io::Result<Vec<SocketAddr>> {
            panic!("a halted proxy resolved a name")
        }
        // Even a decision that comes back allowed (the halt arrived right
        // after it) starts nothing.
        let (context, decided) = context_with(|_| true, unused);
        context.latch.halt("test");
        for request in [
            format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n"),
            format!("GET http://127.0.0.1:{port}/ HTTP/1.1\r\n\r\n"),
        ] {
            let answer = exchange(&context, &request);
            assert!(answer.starts_with("HTTP/1.1 403 "), "{answer}");
        }
        assert_eq!(decided.lock().len(), 2);
        target.set_nonblocking(true).unwrap();
        assert!(target.accept().is_err(), "a connection was made");
    }

    /// What a server on a port of its own receives when the proxy serves
    /// `request` (with `{port}` replaced by its port), read until the
    /// connection ends or the empty line after the head's.
    fn received_by_server(request: &str) -> String {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let serving = std::thread::spawn(move || {
            let (mut stream, _) = server.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut received = Vec::new();
            let mut buffer = [0u8; 4096];
            // The head's empty line, then the trailer section's.
            while !(received.ends_with(b"\r\n\r\n")
                && received.windows(4).filter(|w| w == b"\r\n\r\n").count() >= 2)
            {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(read) => received.extend_from_slice(&buffer[..read]),
                }
            }
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\n\r\n");
            String::from_utf8_lossy(&received).into_owned()
        });
        fn unused(_: &str, _: u16) -> std::io::Result<Vec<SocketAddr>> {
            panic!("an IP literal was resolved")
        }
        let (context, _) = context_with(|_| true, unused);
        exchange(&context, &request.replace("{port}", &port.to_string()));
        serving.join().unwrap()
    }

    #[test]
    fn chunked_framing_reaches_the_server_in_one_reading_only() {
        let request = |body: &str| {
            format!(
                "POST http://127.0.0.1:{{port}}/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
            )
        };
        // A size line is forwarded as read, without its extensions.
        let received = received_by_server(&request("4;a=b\r\nbody\r\n0;c\r\n\r\n"));
        assert!(
            received.ends_with("\r\n\r\n4\r\nbody\r\n0\r\n\r\n"),
            "{received:?}"
        );
        // An extension with a bare CR, which a lenient server reads as the
        // end of the size line (and the rest as data): refused, and not a
        // byte of the chunk reaches the server.
        let received = received_by_server(&request("4;a\rb\r\nbody\r\n0\r\n\r\n"));
        assert!(received.starts_with("POST /x HTTP/1.1\r\n"), "{received:?}");
        assert!(received.ends_with("\r\n\r\n"), "{received:?}");
        assert!(!received.contains("body"), "{received:?}");
        // Trailer fields are forwarded as read (their values trimmed).
        let received = received_by_server(&request("0\r\nX-Sum:  1 \r\n\r\n"));
        assert!(
            received.ends_with("\r\n\r\n0\r\nX-Sum: 1\r\n\r\n"),
            "{received:?}"
        );
        // A trailer line with a bare CR, behind which a lenient server
        // would see the body end and a second request: refused, and not a
        // byte of it reaches the server.
        let received = received_by_server(&request(
            "0\r\nX: a\r\r\nGET /smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        ));
        assert!(!received.contains("smuggled"), "{received:?}");
        assert!(!received.contains("X: a"), "{received:?}");
        assert!(received.starts_with("POST /x HTTP/1.1\r\n"), "{received:?}");
    }

    #[test]
    fn once_halted_a_tunnel_relays_no_byte_either_way() {
        fn unused(_: &str, _: u16) -> std::io::Result<Vec<SocketAddr>> {
            panic!("an IP literal was resolved")
        }
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let (context, _) = context_with(|_| true, unused);
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut agent = TcpStream::connect(front.local_addr().unwrap()).unwrap();
        let (client, _) = front.accept().unwrap();
        let serving = Arc::clone(&context);
        std::thread::spawn(move || serve_connection(&serving, client));
        agent
            .write_all(format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\nbefore").as_bytes())
            .unwrap();
        agent
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let established = b"HTTP/1.1 200 Connection established\r\n\r\n";
        let mut answer = vec![0u8; established.len()];
        agent.read_exact(&mut answer).unwrap();
        assert_eq!(answer, established);
        let (mut far, _) = server.accept().unwrap();
        far.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut before = [0u8; 6];
        far.read_exact(&mut before).unwrap();
        assert_eq!(&before, b"before");

        context.latch.halt("test");
        // Both ways, bytes sent after the halt: the tunnel ends instead.
        agent.write_all(b"after").unwrap();
        let _ = far.write_all(b"back");
        let mut rest = Vec::new();
        let _ = far.read_to_end(&mut rest);
        assert_eq!(rest, b"", "relayed to the server after the halt");
        let mut rest = Vec::new();
        let _ = agent.read_to_end(&mut rest);
        assert_eq!(rest, b"", "relayed to the agent after the halt");
    }

    #[test]
    fn what_cannot_be_read_one_way_is_refused_undecided() {
        fn unused(_: &str, _: u16) -> std::io::Result<Vec<SocketAddr>> {
            panic!("an undecided request was resolved")
        }
        let (context, decided) = context_with(|_| true, unused);
        for request in [
            "CONNECT pypi.org HTTP/1.1\r\n\r\n",
            "CONNECT user@pypi.org:443 HTTP/1.1\r\n\r\n",
            "GET /relative HTTP/1.1\r\nHost: pypi.org\r\n\r\n",
            "GET http://user:secret@pypi.org/ HTTP/1.1\r\n\r\n",
            "GET http://pypi.org//double HTTP/1.1\r\n\r\n",
            "get http://pypi.org/ HTTP/1.1\r\n\r\n",
            "POST http://pypi.org/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST http://pypi.org/ HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            "GET http://pypi.org/ HTTP/1.1\r\nConnection: host\r\n\r\n",
            "GET http://pypi.org/ HTTP/1.1\r\nExpect: something\r\n\r\n",
            "GET http://pypi.org/ HTTP/1.1\r\nA: b\r\n c\r\n\r\n",
        ] {
            let answer = exchange(&context, request);
            assert!(
                answer.starts_with("HTTP/1.1 400 ") || answer.starts_with("HTTP/1.1 417 "),
                "{request:?}: {answer}"
            );
        }
        let answer = exchange(&context, "GET https://pypi.org/ HTTP/1.1\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 501 "), "{answer}");
        assert!(decided.lock().is_empty(), "{:?}", decided.lock());
    }
}
