//! The real daemon against hostile peers and hostile input, each over
//! loopback with a tiny TCP server of the test's own:
//! - a peer that streams a 2 GiB chunked answer: the call fails at the
//!   OpenBao cap (1 MiB), the peer cannot write its 2 GiB, the daemon's
//!   resident size stays under 100 MiB, and the metric counts it;
//! - `HTTP_PROXY` and its kin in the daemon's environment: never used;
//! - the process: not dumpable, `RLIMIT_CORE` 0, the master key's page
//!   locked (read from `/proc/PID/*` of the running daemon);
//! - a rotation reason with a newline and terminal sequences: one line in
//!   the daemon's log, escaped in `history` and `rotation show`;
//! - a reader that closes its pipe early: every printing command exits 0.

use crate::common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Daemon, bin, wait_until};

/// Policy body of the test keys: an hour of life, no jitter.
const POLICY: &str = r#"new_key_lifetime = "1h"
rotate_before_expiry = "10m"
overlap = "1s"
jitter = false"#;

/// What a hostile peer saw and did.
#[derive(Default)]
struct Seen {
    /// Connections accepted.
    connections: AtomicUsize,
    /// Body bytes written to clients.
    body_bytes: AtomicU64,
}

/// A loopback HTTP peer: for each connection, reads the request head and
/// runs `answer`. Returns `http://127.0.0.1:PORT` and what it saw.
fn peer(answer: fn(&mut TcpStream, &Seen)) -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    let s = Arc::clone(&seen);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            s.connections.fetch_add(1, Ordering::SeqCst);
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                answer(&mut conn, &s);
            });
        }
    });
    (url, seen)
}

/// One MiB of JSON whitespace, written again and again (never allocated
/// per chunk: the peer itself stays small).
static CHUNK: [u8; 1 << 20] = [b' '; 1 << 20];

/// 2 GiB as a chunked answer, or as much as the client reads.
fn two_gib(conn: &mut TcpStream, seen: &Seen) {
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    if conn.write_all(head.as_bytes()).is_err() {
        return;
    }
    for _ in 0..2048 {
        let ok = conn.write_all(b"100000\r\n").is_ok()
            && conn.write_all(&CHUNK).is_ok()
            && conn.write_all(b"\r\n").is_ok();
        if !ok {
            return;
        }
        seen.body_bytes
            .fetch_add(CHUNK.len() as u64, Ordering::SeqCst);
    }
    let _ = conn.write_all(b"0\r\n\r\n");
}

/// A short JSON error.
fn refuse(conn: &mut TcpStream, _seen: &Seen) {
    let body = r#"{"errors":["permission denied"]}"#;
    let _ = write!(
        conn,
        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A daemon config with an OpenBao sink `bao` at `address`.
fn with_bao(address: &str, extra_daemon: &str) -> String {
    let mut cfg =
        common::config(POLICY, &[]).replacen("[daemon]\n", &format!("[daemon]\n{extra_daemon}"), 1);
    cfg.push_str(&format!(
        "\n[[sink]]\nname = \"bao\"\ntype = \"openbao\"\naddress = \"{address}\"\npath = \"keyrot/{{name}}\"\ntoken = {{ file = \"bao-token\" }}\ntimeout = \"60s\"\n"
    ));
    cfg
}

/// `VmRSS` of `pid` in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The body of `GET /metrics` at the address the daemon logged.
fn scrape(d: &Daemon) -> String {
    const LISTENING: &str = "metrics endpoint listening on http://";
    assert!(
        wait_until(Duration::from_secs(30), || d.log().contains(LISTENING)),
        "no metrics endpoint; log:\n{}",
        d.log()
    );
    let log = d.log();
    let rest = &log[log.find(LISTENING).unwrap() + LISTENING.len()..];
    let addr = &rest[..rest.find("/metrics").unwrap()];
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn a_2_gib_answer_fails_at_the_cap_and_the_daemon_stays_under_100_mib() {
    let (url, seen) = peer(two_gib);
    let mut d = Daemon::new(&with_bao(&url, "metrics_listen = \"127.0.0.1:0\"\n"));
    common::write_secret(&d.dir.join("bao-token"), "s.hostile-test\n");
    d.start();
    let pid = d.child.as_ref().unwrap().id();
    let before = rss_kib(pid).unwrap();

    // Sample the daemon's resident size while the peer streams.
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = {
        let (done, peak) = (Arc::clone(&done), Arc::clone(&peak));
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if let Some(kib) = rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::SeqCst);
                }
                #[allow(clippy::disallowed_methods)]
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let out = d.cli(&["sink", "test", "bao"]);
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::SeqCst);
    let sent = seen.body_bytes.load(Ordering::SeqCst);
    println!(
        "daemon VmRSS: {before} KiB before, {peak} KiB at most while the peer streamed; \
         the peer got {} MiB written of its 2048 MiB",
        sent >> 20
    );

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the probe cannot succeed: {stderr}");
    assert!(
        stderr.contains("larger than the 1 MiB keyrot reads from openbao peers"),
        "{stderr}"
    );
    assert!(seen.connections.load(Ordering::SeqCst) >= 1);
    assert!(sent < 256 << 20, "the daemon read on: {} MiB", sent >> 20);
    assert!(peak < 100 * 1024, "daemon VmRSS reached {peak} KiB");
    let metrics = scrape(&d);
    let line = metrics
        .lines()
        .find(|l| l.starts_with("keyrot_peer_answer_too_large_total{peer=\"openbao\"} "))
        .unwrap_or_else(|| panic!("no counter:\n{metrics}"));
    let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 1, "{line}");
}

#[test]
fn a_proxy_in_the_environment_never_sees_a_request() {
    let (bao, peer_seen) = peer(refuse);
    let (proxy, proxy_seen) = peer(refuse);
    let mut d = Daemon::new(&with_bao(&bao, ""));
    common::write_secret(&d.dir.join("bao-token"), "s.hostile-test\n");
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        d.env.push((var.into(), proxy.clone()));
    }
    // No exclusions: without keyrot's refusal, loopback would be proxied.
    d.env.push(("NO_PROXY".into(), String::new()));
    d.env.push(("no_proxy".into(), String::new()));
    d.start();
    let out = d.cli(&["sink", "test", "bao"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert!(peer_seen.connections.load(Ordering::SeqCst) >= 1);
    assert_eq!(
        proxy_seen.connections.load(Ordering::SeqCst),
        0,
        "the proxy from the environment got a request"
    );
}

/// `/proc/PID/limits`' "Max core file size" soft and hard values.
fn core_limit(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let mut f = line["Max core file size".len()..].split_whitespace();
    (f.next().unwrap().into(), f.next().unwrap().into())
}

#[test]
fn the_daemon_is_not_dumpable_dumps_no_core_and_locks_its_master_key() {
    let mut d = Daemon::new(&common::config(POLICY, &[]));
    // Run as nobody when the test is root: /proc/PID/status then belongs
    // to root only if the daemon made itself not dumpable.
    let as_root = rustix::process::geteuid().is_root();
    if as_root {
        std::os::unix::fs::chown(&d.dir, Some(65534), Some(65534)).unwrap();
    }
    let log = std::fs::File::create(d.log_path()).unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(["run", "--config"])
        .arg(d.config_path())
        .current_dir(&d.dir)
        .env("RUST_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    if as_root {
        cmd.uid(65534).gid(65534);
    }
    // SAFETY: setrlimit is async-signal-safe. Core dumps on as far as the
    // hard limit allows, so the daemon's own setting is what is seen.
    unsafe {
        cmd.pre_exec(|| {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::getrlimit(libc::RLIMIT_CORE, &mut lim);
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_CORE, &lim);
            Ok(())
        });
    }
    d.child = Some(cmd.spawn().unwrap());
    let pid = d.child.as_ref().unwrap().id();
    assert!(
        wait_until(Duration::from_secs(30), || d
            .log()
            .contains("keyrot started")),
        "daemon did not start; log:\n{}",
        d.log()
    );

    assert_eq!(core_limit(pid), ("0".into(), "0".into()));
    let log = d.log();
    assert!(
        log.contains("process hardened: no core dumps (RLIMIT_CORE 0), not dumpable"),
        "{log}"
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let locked: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(
        locked >= 4,
        "VmLck {locked} kB: the master key's page is not locked"
    );
    // The kernel gives a not-dumpable process's /proc files (not the
    // /proc/PID directory itself) to root.
    let owner = std::fs::metadata(format!("/proc/{pid}/status"))
        .unwrap()
        .uid();
    let daemon_uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .to_string();
    if daemon_uid != "0" {
        assert_eq!(
            owner, 0,
            "/proc/{pid}/status is owned by the daemon's user: dumpable"
        );
    }
}

/// A reason that would forge a log line and clear the terminal.
const FORGED: &str = "routine\nERROR keyrot: master key leaked\r\x1b[2J\u{9b}31m";

#[test]
fn a_forged_reason_stays_one_escaped_line_in_the_log_and_the_cli() {
    let mut d = Daemon::new(&common::config(POLICY, &["k"]));
    d.start();
    d.wait_first_key();
    let id = d.rotate("local/k", FORGED);
    let has_raw = |t: &str| t.contains(['\r', '\x1b', '\u{9b}']);
    let forged_line = |t: &str| t.lines().any(|l| l.starts_with("ERROR keyrot"));

    let ok = wait_until(Duration::from_secs(30), || {
        d.log().contains("rotation started")
    });
    assert!(ok, "{}", d.log());
    let log = d.log();
    assert!(!has_raw(&log) && !forged_line(&log), "{log:?}");
    assert!(
        log.contains(r"reason=routine\nERROR keyrot: master key leaked\r\x1b[2J\u{9b}31m"),
        "{log}"
    );
    for args in [vec!["history"], vec!["rotation", "show", &id]] {
        let out = d.cli(&args);
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(!has_raw(&text) && !forged_line(&text), "{args:?}: {text:?}");
        assert!(text.contains(r"routine\nERROR keyrot"), "{args:?}: {text}");
    }
    // JSON keeps the value exactly, with C1 as an escape.
    let out = d.cli(&["rotation", "show", &id, "--json"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!has_raw(&text), "{text:?}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["reason"], FORGED);
}

#[test]
fn a_reader_that_closes_its_pipe_early_ends_every_command_normally() {
    let mut d = Daemon::new(&common::config(POLICY, &["k"]));
    d.start();
    d.wait_first_key();
    let id = d.rotations()[0]["id"].as_str().unwrap().to_string();
    let commands: Vec<Vec<&str>> = vec![
        vec!["keys", "--json"],
        vec!["status", "--json"],
        vec!["history", "--json"],
        vec!["keys"],
        vec!["status"],
        vec!["history"],
        vec!["rotation", "show", &id],
        vec!["plan", "--json"],
    ];
    for args in commands {
        // The read end is closed before the command starts: its first
        // write fails with EPIPE, every time.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(bin())
            .args(&args)
            .arg("--config")
            .arg(d.config_path())
            .current_dir(&d.dir)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}
