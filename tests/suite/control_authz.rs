//! The control socket of a real daemon (`keyrot run`) against callers it
//! must not trust:
//! - a local user outside `[daemon] control_allow_uids`/`control_allow_gids`
//!   (curl run as `nobody` in group root, which the socket's mode lets
//!   connect) gets 401 without a token, 401 with a wrong one, 403 with a
//!   token of too little scope, and through with the right one; the
//!   default lists admit keyrot's group, as the socket's mode 0660 says;
//! - hundreds of idle connections, more than the daemon has descriptors
//!   for, do not stop `/v1/health` from answering (the connection cap
//!   closes idle ones to make room).

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Daemon;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const POLICY: &str = r#"new_key_lifetime = "1h"
rotate_before_expiry = "10m"
overlap = "1s"
jitter = false
"#;

/// The user curl runs as: not root, not keyrot's (root's) uid.
const NOBODY: u32 = 65_534;
/// A token with scope `read` over every key.
const READ_TOKEN: &str = "kr-read-token-0123456789abcdef";
/// A token with scope `rotate` (the default) over every key.
const ROTATE_TOKEN: &str = "kr-rotate-token-0123456789abcdef";

/// A config whose `[daemon]` section also holds `daemon_extra`, with the
/// two tokens above (their files are written in `dir`).
fn config(dir: &Path, daemon_extra: &str) -> String {
    for (file, token) in [("read.token", READ_TOKEN), ("rotate.token", ROTATE_TOKEN)] {
        std::fs::write(dir.join(file), token).unwrap();
        std::fs::set_permissions(dir.join(file), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut text = common::config(POLICY, &["ci"]).replacen(
        "[daemon]\n",
        &format!("[daemon]\n{daemon_extra}"),
        1,
    );
    text.push_str(
        r#"
[[api_token]]
name = "reader"
token = { file = "read.token" }
keys = ["*"]
scopes = ["read"]

[[api_token]]
name = "rotator"
token = { file = "rotate.token" }
keys = ["*"]
"#,
    );
    text
}

/// `curl` as uid [`NOBODY`], gid 0 (the socket's group): status and body.
fn curl_as_nobody(d: &Daemon, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    curl(d, Some(NOBODY), method, path, token)
}

/// `curl` as `uid` (gid 0), or as this process: status and body.
fn curl(
    d: &Daemon,
    uid: Option<u32>,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "30", "--unix-socket"])
        .arg(d.dir.join("control.sock"))
        .args(["-X", method, "-w", "\n%{http_code}"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(uid) = uid {
        cmd.uid(uid).gid(0);
    }
    let out = cmd
        .arg(format!("http://keyrot{path}"))
        .stdin(Stdio::null())
        .output()
        .expect("curl is needed: apt-get install curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code = code.trim().parse().unwrap_or_else(|_| {
        panic!(
            "{method} {path}: no status from curl: {text:?} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn a_local_user_outside_the_allow_lists_needs_a_token_of_the_right_scope() {
    let mut d = Daemon::new("");
    // Others may pass through the directory to the socket (as they may
    // through /run/keyrot); the socket's mode and the lists decide.
    std::fs::set_permissions(&d.dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::write(d.config_path(), config(&d.dir, "control_allow_gids = []\n")).unwrap();
    d.start();

    let (code, body) = curl_as_nobody(&d, "GET", "/v1/status", None);
    assert_eq!(code, 401, "no token: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("uid {NOBODY}")), "{message}");
    let (code, body) = curl_as_nobody(&d, "GET", "/v1/status", Some("wrong-token-0123456789"));
    assert_eq!(code, 401, "wrong token: {body}");
    let (code, body) = curl_as_nobody(&d, "POST", "/v1/reload", Some(READ_TOKEN));
    assert_eq!(code, 403, "read token on reload: {body}");
    let (code, body) = curl_as_nobody(&d, "GET", "/v1/status", Some(ROTATE_TOKEN));
    assert_eq!(code, 200, "rotate includes read: {body}");
    let (code, body) = curl_as_nobody(&d, "GET", "/v1/status", Some(READ_TOKEN));
    assert_eq!(code, 200, "read token: {body}");
    assert!(
        body["keys"].as_array().is_some_and(|k| !k.is_empty()),
        "{body}"
    );
    // Health tells nothing and answers anyone who can connect.
    assert_eq!(curl_as_nobody(&d, "GET", "/v1/health", None).0, 200);

    // Without the lists, the defaults follow the socket's mode (0660):
    // keyrot's group (here root's) is admitted, as before the lists.
    std::fs::write(d.config_path(), config(&d.dir, "")).unwrap();
    let (code, body) = curl(&d, None, "POST", "/v1/reload", None);
    assert_eq!(code, 204, "reload by root: {body}");
    let (code, body) = curl_as_nobody(&d, "GET", "/v1/status", None);
    assert_eq!(code, 200, "group member after reload: {body}");
}

/// `GET /v1/health` on a new connection: the status line, or why not.
async fn health(socket: &Path) -> Result<String, String> {
    let mut conn = UnixStream::connect(socket)
        .await
        .map_err(|e| e.to_string())?;
    conn.write_all(b"GET /v1/health HTTP/1.1\r\nHost: keyrot\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&answer);
    Ok(text.lines().next().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_past_the_cap_leave_health_answering() {
    // The daemon gets 200 descriptors; the test holds the cap (128, the
    // default) + 100 idle connections: more than the daemon could hold.
    const FDS: u32 = 200;
    let held_count = 128 + 100;
    let mut d = Daemon::new("");
    std::fs::write(d.config_path(), config(&d.dir, "")).unwrap();
    let log = std::fs::File::create(d.log_path()).unwrap();
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n {FDS} && exec \"$0\" run --config \"$1\""
        ))
        .arg(common::bin())
        .arg(d.config_path())
        .current_dir(&d.dir)
        .env("RUST_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    d.child = Some(child);
    let socket = d.dir.join("control.sock");
    let ready = Instant::now();
    while health(&socket).await.is_err() {
        assert!(
            ready.elapsed() < Duration::from_secs(30),
            "not ready:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut held = Vec::new();
    for _ in 0..held_count {
        // A daemon that stopped accepting fills its backlog; then a
        // connect waits: stop opening more.
        match tokio::time::timeout(Duration::from_secs(2), UnixStream::connect(&socket)).await {
            Ok(Ok(c)) => held.push(c),
            _ => break,
        }
    }
    let started = Instant::now();
    let answered = tokio::time::timeout(Duration::from_secs(10), health(&socket)).await;
    let took = started.elapsed();
    println!(
        "/v1/health with {} idle connections held ({FDS} descriptors): {answered:?} in {took:?}",
        held.len()
    );
    assert_eq!(held.len(), held_count, "connections held");
    let status = answered
        .unwrap_or_else(|_| panic!("/v1/health did not answer within 10 s:\n{}", d.log()))
        .unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    drop(held);
    let log = d.log();
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}
