//! Faulty peers for the fault and hygiene suites.
//!
//! [`FaultProxy`] is an HTTP/1.1 proxy on `127.0.0.1:0` in front of a real
//! upstream (OpenBao, `keyrot sandbox`). Each request is matched against
//! the [`Rule`]s of its plan (method and path substring; the first match
//! with faults left wins); it takes that rule's next scripted [`Fault`]
//! (then its `then` fault, or a clean pass once the script is spent). It
//! can answer 500/503/429 itself (with `Retry-After`), lose the answer of a
//! request the upstream did carry out, hold a request past the client's
//! timeout, reset or close the connection, cut or garble the JSON body, and
//! flip a byte of the sealed secret in the sandbox's rotate answer. Every
//! request is recorded as an [`Event`] (arrival and answer instants, the
//! fault, the status the client got), so a test can count the faults and
//! measure the gap between a 429 and the retry.
//!
//! One request per client connection (answers carry `Connection: close`),
//! one upstream connection per forwarded request: simple, and no pooled
//! connection hides a reset from the client.
//!
//! [`TlsEndpoint`] is a TLS-terminating forwarder (python's `ssl` in the
//! peers venv) with a certificate from [`TlsCerts`]: one valid for
//! 127.0.0.1, or one for another name (`wrong.example`), both signed by
//! the same private CA, so a failure can only be the name.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::fs;
use std::io::{BufRead, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::peers::{INSTALL, peer_bin};

/// Which part of the sealed secret `nonce || ciphertext || tag` to flip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seal {
    /// The first ciphertext byte.
    Ciphertext,
    /// The last tag byte.
    Tag,
}

/// What the proxy does with one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward it and return the upstream's answer unchanged.
    Pass,
    /// Answer `code` (with `Retry-After: N` seconds if given) without
    /// forwarding: the upstream never sees the request.
    Status {
        /// HTTP status.
        code: u16,
        /// `Retry-After` in seconds.
        retry_after: Option<u32>,
    },
    /// Forward it (the upstream acts), then answer `code` instead of the
    /// upstream's answer: a lost answer.
    LoseAnswer(u16),
    /// Hold the request this long without forwarding, then close.
    Stall(Duration),
    /// Read the request, then reset the connection (RST, no answer).
    Reset,
    /// Read the request, then close the connection (FIN, no answer).
    Close,
    /// Forward it; send headers promising the whole body, half of it, and
    /// close: the client sees the body end early.
    ShortBody,
    /// Forward it; answer the first half of the JSON body with a matching
    /// `Content-Length`: well-framed, truncated JSON.
    TruncatedJson,
    /// Forward it; answer a syntactically invalid JSON body (status and
    /// headers kept).
    MalformedJson,
    /// Forward it; flip one byte of `data.encryptedSecret` (base64 of
    /// `nonce || ciphertext || tag`) in the answer.
    MangleSealed(Seal),
}

impl Fault {
    /// Short name, for events and figures.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Pass => "pass",
            Fault::Status { code: 429, .. } => "429",
            Fault::Status { code: 503, .. } => "503",
            Fault::Status { code: 500, .. } => "500",
            Fault::Status { .. } => "other status",
            Fault::LoseAnswer(_) => "lost-answer",
            Fault::Stall(_) => "stall",
            Fault::Reset => "reset",
            Fault::Close => "close",
            Fault::ShortBody => "short-body",
            Fault::TruncatedJson => "truncated-json",
            Fault::MalformedJson => "malformed-json",
            Fault::MangleSealed(Seal::Ciphertext) => "mangled-ciphertext",
            Fault::MangleSealed(Seal::Tag) => "mangled-tag",
        }
    }

    /// `Status` without `Retry-After`.
    pub fn status(code: u16) -> Fault {
        Fault::Status {
            code,
            retry_after: None,
        }
    }

    /// `Status` with `Retry-After: secs`.
    pub fn retry_after(code: u16, secs: u32) -> Fault {
        Fault::Status {
            code,
            retry_after: Some(secs),
        }
    }
}

/// Requests a rule applies to, and what it does to them.
#[derive(Clone, Debug)]
pub struct Rule {
    /// HTTP method, or any.
    pub method: Option<String>,
    /// A substring of the request path (query included).
    pub path: String,
    /// Faults for the next matching requests, in order.
    pub script: VecDeque<Fault>,
    /// What matching requests get once the script is spent.
    pub then: Fault,
}

/// What the proxy did with one request.
#[derive(Clone, Debug)]
pub struct Event {
    /// When the request had been read in full.
    pub arrived: Instant,
    /// When the proxy was done with it (answer sent or connection closed).
    pub done: Instant,
    /// Request method.
    pub method: String,
    /// Request path and query.
    pub path: String,
    /// Index of the rule that matched, if any.
    pub rule: Option<usize>,
    /// The fault applied.
    pub fault: Fault,
    /// The status the client got, if it got an answer.
    pub status: Option<u16>,
    /// Anything worth knowing (why a fault could not be applied).
    pub note: String,
}

impl Event {
    /// True when a fault (not a clean pass) was applied.
    pub fn injected(&self) -> bool {
        self.fault != Fault::Pass && self.note.is_empty()
    }
}

/// Plan and record, shared with the connection threads.
#[derive(Default)]
struct State {
    /// Rules, first match wins.
    rules: Vec<Rule>,
    /// Everything done so far.
    events: Vec<Event>,
}

/// A fault-injecting HTTP proxy in front of one upstream.
pub struct FaultProxy {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// `host:port` of the upstream.
    upstream: String,
    /// Plan and record.
    state: Arc<Mutex<State>>,
    /// Set on drop: the accept loop ends.
    stop: Arc<AtomicBool>,
    /// The accept loop.
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy in front of `upstream` (`http://127.0.0.1:PORT`), passing
    /// everything until a rule says otherwise.
    pub fn start(upstream: &str) -> FaultProxy {
        let host = upstream
            .strip_prefix("http://")
            .unwrap_or(upstream)
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop, host) = (Arc::clone(&state), Arc::clone(&stop), host.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let (state, host) = (Arc::clone(&state), host.clone());
                    std::thread::spawn(move || serve(conn, &host, &state));
                }
            })
        };
        FaultProxy {
            port,
            url: format!("http://127.0.0.1:{port}"),
            upstream: host,
            state,
            stop,
            thread: Some(thread),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s)
    }

    /// Adds a rule: requests with `method` (or any, for "") whose path
    /// contains `path` get `script` in order, then pass. Returns its index.
    pub fn script(&self, method: &str, path: &str, script: Vec<Fault>) -> usize {
        self.rule(method, path, script, Fault::Pass)
    }

    /// Adds a rule: every matching request gets `fault`, for good.
    pub fn always(&self, method: &str, path: &str, fault: Fault) -> usize {
        self.rule(method, path, Vec::new(), fault)
    }

    /// Adds a rule with a script and what follows it.
    pub fn rule(&self, method: &str, path: &str, script: Vec<Fault>, then: Fault) -> usize {
        self.with(|s| {
            s.rules.push(Rule {
                method: (!method.is_empty()).then(|| method.to_string()),
                path: path.to_string(),
                script: script.into(),
                then,
            });
            s.rules.len() - 1
        })
    }

    /// Removes every rule: everything passes from now on.
    pub fn clear(&self) {
        self.with(|s| s.rules.clear());
    }

    /// Faults still scripted for rule `rule`.
    pub fn pending(&self, rule: usize) -> usize {
        self.with(|s| s.rules.get(rule).map_or(0, |r| r.script.len()))
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.with(|s| s.events.clone())
    }

    /// Events of requests that rule `rule` matched.
    pub fn events_of(&self, rule: usize) -> Vec<Event> {
        self.with(|s| {
            s.events
                .iter()
                .filter(|e| e.rule == Some(rule))
                .cloned()
                .collect()
        })
    }

    /// Faults injected so far (clean passes not counted).
    pub fn injected(&self) -> Vec<Event> {
        self.with(|s| s.events.iter().filter(|e| e.injected()).cloned().collect())
    }

    /// For each answer of rule `rule` that carried `Retry-After: N`, the
    /// time until the next request of that rule arrived, with N.
    pub fn retry_after_gaps(&self, rule: usize) -> Vec<(Duration, Duration)> {
        let evs = self.events_of(rule);
        evs.windows(2)
            .filter_map(|w| match &w[0].fault {
                Fault::Status {
                    retry_after: Some(n),
                    ..
                } => Some((
                    w[1].arrived.duration_since(w[0].done),
                    Duration::from_secs(u64::from(*n)),
                )),
                _ => None,
            })
            .collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One HTTP message as read off a socket.
pub(crate) struct Message {
    /// Request line or status line.
    pub(crate) start: String,
    /// Headers in order.
    headers: Vec<(String, String)>,
    /// Body, de-chunked.
    pub(crate) body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The message with framing headers replaced: `Content-Length` of the
    /// body (or `declared`), `Connection: close`, and `extra` headers.
    fn to_bytes(&self, declared: Option<usize>, extra: &[(&str, String)]) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.start);
        for (k, v) in &self.headers {
            let framing = [
                "content-length",
                "transfer-encoding",
                "connection",
                "keep-alive",
            ];
            if framing.iter().any(|f| k.eq_ignore_ascii_case(f)) {
                continue;
            }
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        for (k, v) in extra {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            declared.unwrap_or(self.body.len())
        ));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// Reads one message: head, then a body framed by `Content-Length`,
/// chunked encoding, or (for a response) the end of the stream.
pub(crate) fn read_message(r: &mut impl BufRead, response: bool) -> Option<Message> {
    let mut start = String::new();
    if r.read_line(&mut start).ok()? == 0 {
        return None;
    }
    let start = start.trim_end().to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut msg = Message {
        start,
        headers,
        body: Vec::new(),
    };
    let chunked = msg
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    let no_body = response
        && (msg
            .start
            .split(' ')
            .nth(1)
            .is_some_and(|c| c.starts_with('1') || c == "204" || c == "304"));
    if no_body {
        return Some(msg);
    }
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            if n == 0 {
                let mut trailer = String::new();
                while r.read_line(&mut trailer).ok()? > 2 {
                    trailer.clear();
                }
                break;
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            msg.body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = msg.header("content-length").and_then(|n| n.parse().ok()) {
        msg.body = vec![0; n];
        r.read_exact(&mut msg.body).ok()?;
    } else if response {
        r.read_to_end(&mut msg.body).ok()?;
    }
    Some(msg)
}

/// Sends `req` to the upstream on a fresh connection; its answer.
fn forward(req: &Message, host: &str) -> Option<Message> {
    let up = TcpStream::connect(host).ok()?;
    up.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let mut fwd = Message {
        start: req.start.clone(),
        headers: req
            .headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
            .cloned()
            .collect(),
        body: req.body.clone(),
    };
    fwd.headers.push(("Host".into(), host.to_string()));
    (&up).write_all(&fwd.to_bytes(None, &[])).ok()?;
    read_message(&mut std::io::BufReader::new(&up), true)
}

/// Resets `conn` (SO_LINGER 0, then close: the peer gets RST).
fn reset(conn: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(conn);
}

/// The plain answer the proxy makes itself.
fn own_answer(code: u16, extra: &[(&str, String)], body: &str) -> Vec<u8> {
    Message {
        start: format!("HTTP/1.1 {code} Injected"),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
    }
    .to_bytes(None, extra)
}

/// Flips one byte of `data.encryptedSecret`; the new body, or why not.
fn mangle(body: &[u8], part: Seal) -> Result<Vec<u8>, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("answer is not JSON: {e}"))?;
    let field = v
        .pointer_mut("/data/encryptedSecret")
        .ok_or("no data.encryptedSecret")?;
    let mut sealed = b64
        .decode(field.as_str().ok_or("encryptedSecret is not a string")?)
        .map_err(|e| format!("encryptedSecret is not base64: {e}"))?;
    if sealed.len() <= 12 + 16 {
        return Err("encryptedSecret too short".into());
    }
    let at = match part {
        Seal::Ciphertext => 12,
        Seal::Tag => sealed.len() - 1,
    };
    sealed[at] ^= 0x01;
    *field = serde_json::Value::String(b64.encode(&sealed));
    serde_json::to_vec(&v).map_err(|e| e.to_string())
}

/// Serves one client connection (one request).
fn serve(conn: TcpStream, host: &str, state: &Mutex<State>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let Some(req) = read_message(&mut std::io::BufReader::new(&conn), false) else {
        return;
    };
    let arrived = Instant::now();
    let mut parts = req.start.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let (rule, fault) = {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        let matching: Vec<usize> = (0..s.rules.len())
            .filter(|&i| {
                let r = &s.rules[i];
                r.method.as_deref().is_none_or(|m| m == method) && path.contains(&r.path)
            })
            .collect();
        // A spent rule (script done, then pass) lets a later one act.
        let live = matching.iter().copied().find(|&i| {
            let r = &s.rules[i];
            !r.script.is_empty() || r.then != Fault::Pass
        });
        match live.or(matching.first().copied()) {
            Some(i) => {
                let r = &mut s.rules[i];
                (Some(i), r.script.pop_front().unwrap_or(r.then.clone()))
            }
            None => (None, Fault::Pass),
        }
    };
    let mut note = String::new();
    let write = |bytes: &[u8]| {
        let _ = (&conn).write_all(bytes);
        let _ = (&conn).flush();
    };
    let status = match &fault {
        Fault::Status { code, retry_after } => {
            let extra: Vec<(&str, String)> = retry_after
                .iter()
                .map(|n| ("Retry-After", n.to_string()))
                .collect();
            write(&own_answer(
                *code,
                &extra,
                &format!(r#"{{"errors":["fault proxy: injected {code}"]}}"#),
            ));
            Some(*code)
        }
        Fault::Stall(d) => {
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(*d);
            None
        }
        Fault::Reset | Fault::Close => None,
        _ => match forward(&req, host) {
            None => {
                note = "upstream gave no answer".into();
                write(&own_answer(
                    502,
                    &[],
                    r#"{"errors":["fault proxy: no upstream"]}"#,
                ));
                Some(502)
            }
            Some(mut ans) => {
                let code = ans
                    .start
                    .split(' ')
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0u16);
                match &fault {
                    Fault::LoseAnswer(lost) => {
                        write(&own_answer(
                            *lost,
                            &[],
                            &format!(r#"{{"errors":["fault proxy: answer lost ({lost})"]}}"#),
                        ));
                        Some(*lost)
                    }
                    Fault::ShortBody => {
                        let full = ans.body.len();
                        ans.body.truncate(full / 2);
                        write(&ans.to_bytes(Some(full), &[]));
                        if full == 0 {
                            note = "empty body: nothing to cut".into();
                        }
                        Some(code)
                    }
                    Fault::TruncatedJson => {
                        let half = ans.body.len() / 2;
                        ans.body.truncate(half);
                        write(&ans.to_bytes(None, &[]));
                        Some(code)
                    }
                    Fault::MalformedJson => {
                        ans.body = br#"{"data": {"id": nope, }"#.to_vec();
                        write(&ans.to_bytes(None, &[]));
                        Some(code)
                    }
                    Fault::MangleSealed(part) => {
                        match mangle(&ans.body, *part) {
                            Ok(body) => ans.body = body,
                            Err(why) => note = why,
                        }
                        write(&ans.to_bytes(None, &[]));
                        Some(code)
                    }
                    _ => {
                        write(&ans.to_bytes(None, &[]));
                        Some(code)
                    }
                }
            }
        },
    };
    match &fault {
        Fault::Reset => reset(conn),
        _ => {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
    let ev = Event {
        arrived,
        done: Instant::now(),
        method,
        path,
        rule,
        fault,
        status,
        note,
    };
    state
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .events
        .push(ev);
}

/// The TLS helper: makes certificates, and terminates TLS in front of a
/// plain upstream.
const TLS_SCRIPT: &str = r#"
import datetime, ipaddress, os, socket, ssl, sys, threading

def make_certs(out):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    now = datetime.datetime.now(datetime.timezone.utc)
    day = datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyrot fault CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - day).not_valid_after(now + day)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
              key_encipherment=False, data_encipherment=False, key_agreement=False,
              key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
              critical=True)
          .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    with open(os.path.join(out, "ca.pem"), "wb") as f:
        f.write(ca.public_bytes(pem))
    for name, sans in (("good", [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                 x509.DNSName("localhost")]),
                       ("wrong", [x509.DNSName("wrong.example")])):
        key = ec.generate_private_key(ec.SECP256R1())
        cn = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name == "good" and "127.0.0.1" or "wrong.example")])
        cert = (x509.CertificateBuilder().subject_name(cn).issuer_name(ca_name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - day).not_valid_after(now + day)
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        with open(os.path.join(out, name + ".pem"), "wb") as f:
            f.write(cert.public_bytes(pem))
        with open(os.path.join(out, name + ".key"), "wb") as f:
            f.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))

def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

def serve(port, cert, key, upstream, log):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(64)
    logf = open(log, "a", buffering=1)
    lock = threading.Lock()
    def note(line):
        with lock:
            logf.write(line + "\n")
    def handle(c):
        try:
            t = ctx.wrap_socket(c, server_side=True)
        except (ssl.SSLError, OSError) as e:
            note("handshake failed: %s" % e)
            c.close()
            return
        note("handshake ok")
        try:
            u = socket.create_connection(("127.0.0.1", upstream))
        except OSError as e:
            note("upstream: %s" % e)
            t.close()
            return
        threading.Thread(target=pipe, args=(t, u), daemon=True).start()
        pipe(u, t)
    print("listening on %d" % srv.getsockname()[1], flush=True)
    while True:
        c, _ = srv.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()

if sys.argv[1] == "make-certs":
    make_certs(sys.argv[2])
else:
    serve(int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6])
"#;

/// Writes the TLS helper into `dir`; its path.
fn tls_script(dir: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let p = dir.join("tls_helper.py");
    fs::write(&p, TLS_SCRIPT).unwrap();
    p
}

/// A private CA and two server certificates signed by it.
#[derive(Clone, Debug)]
pub struct TlsCerts {
    /// The CA certificate (what `ca_file` points at).
    pub ca: PathBuf,
    /// Certificate and key valid for 127.0.0.1 and localhost.
    pub good: (PathBuf, PathBuf),
    /// Certificate and key valid only for `wrong.example`.
    pub wrong: (PathBuf, PathBuf),
}

impl TlsCerts {
    /// Makes them in `dir` (python `cryptography` from the peers venv).
    pub fn make(dir: &Path) -> TlsCerts {
        let script = tls_script(dir);
        let out = Command::new(peer_bin("python"))
            .arg(&script)
            .arg("make-certs")
            .arg(dir)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "make-certs failed (run `{INSTALL}`?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        TlsCerts {
            ca: dir.join("ca.pem"),
            good: (dir.join("good.pem"), dir.join("good.key")),
            wrong: (dir.join("wrong.pem"), dir.join("wrong.key")),
        }
    }
}

/// A TLS endpoint on 127.0.0.1 forwarding to a plain upstream port.
pub struct TlsEndpoint {
    /// Its port.
    pub port: u16,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// Directory of its script and log.
    dir: PathBuf,
    /// Upstream port.
    upstream: u16,
    /// The process.
    child: Option<Child>,
}

impl TlsEndpoint {
    /// Serves `cert` (certificate, key) on a free port in front of
    /// `upstream` (a port on 127.0.0.1).
    pub fn start(dir: &Path, cert: &(PathBuf, PathBuf), upstream: u16) -> TlsEndpoint {
        let mut t = TlsEndpoint {
            port: 0,
            url: String::new(),
            dir: dir.to_path_buf(),
            upstream,
            child: None,
        };
        t.serve(cert);
        t
    }

    /// Stops and serves `cert` on the same port.
    pub fn restart_with(&mut self, cert: &(PathBuf, PathBuf)) {
        self.stop();
        self.serve(cert);
    }

    fn serve(&mut self, cert: &(PathBuf, PathBuf)) {
        let script = tls_script(&self.dir);
        let mut child = Command::new(peer_bin("python"))
            .arg(&script)
            .arg("serve")
            .arg(self.port.to_string())
            .arg(&cert.0)
            .arg(&cert.1)
            .arg(self.upstream.to_string())
            .arg(self.dir.join("tls.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting the TLS helper: {e}"));
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(port) = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the TLS helper did not start: {line:?}");
        };
        self.port = port;
        self.url = format!("https://127.0.0.1:{port}");
        self.child = Some(child);
    }

    /// Handshakes that failed so far, with the server's reason.
    pub fn failed_handshakes(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("tls.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("handshake failed"))
            .map(str::to_string)
            .collect()
    }

    /// Kills the process.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for TlsEndpoint {
    fn drop(&mut self) {
        self.stop();
    }
}
