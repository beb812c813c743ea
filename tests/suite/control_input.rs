//! Hostile input on the control API of a real daemon (`keyrot run`), sent
//! with `curl --unix-socket`: oversized bodies (413), unknown fields (400
//! naming the field), wrong content types (415), malformed JSON (400),
//! unknown routes (404) and wrong methods (405) all get a JSON error body
//! whose code is the status, and the daemon keeps serving: `keyrot status`
//! works afterwards and nothing panicked.

use crate::common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Daemon;
use serde_json::Value;

/// `control::server::MAX_BODY`: the largest body accepted.
const MAX_BODY: usize = keyrot::control::server::MAX_BODY;

const POLICY: &str = r#"new_key_lifetime = "1h"
rotate_before_expiry = "10m"
overlap = "1s"
jitter = false
"#;

fn daemon() -> Daemon {
    let mut d = Daemon::new(&common::config(POLICY, &["ci"]));
    d.start();
    d
}

/// A request to the daemon's socket: status and body (JSON, or the raw
/// text as a JSON string when it is not JSON). `extra` are curl arguments.
fn call(
    d: &Daemon,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
    extra: &[&str],
) -> (u16, Value) {
    let socket = d.dir.join("control.sock");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "30", "--unix-socket"])
        .arg(&socket)
        .args(["-X", method, "-w", "\n%{http_code}", "-H", "Expect:"]);
    match content_type {
        Some(ct) => cmd.args(["-H", &format!("Content-Type: {ct}")]),
        // curl adds a form content type to --data-binary otherwise.
        None => cmd.args(["-H", "Content-Type:"]),
    };
    if !body.is_empty() || method != "GET" {
        cmd.args(["--data-binary", "@-"]);
    }
    cmd.args(extra)
        .arg(format!("http://keyrot{path}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("curl is needed: apt-get install curl");
    let mut stdin = child.stdin.take().unwrap();
    let body = body.to_vec();
    // Written from a thread: the server may answer (413) and close before
    // it has read the whole body.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code: u16 = code.trim().parse().unwrap_or_else(|_| {
        panic!(
            "{method} {path}: no status from curl: {text:?} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let json = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string()));
    (code, json)
}

/// Checks a JSON error body: `{"error": {"code": status, "message": ..}}`;
/// returns the message.
fn error_of(status: u16, body: &Value, want: u16, what: &str) -> String {
    assert_eq!(status, want, "{what}: {body}");
    let err = &body["error"];
    assert_eq!(err["code"], want, "{what}: not a JSON error body: {body}");
    let message = err["message"].as_str().unwrap_or_default().to_string();
    assert!(!message.is_empty(), "{what}: an error without a message");
    message
}

/// The daemon still answers: health, and `keyrot status` through the CLI.
fn still_serving(d: &Daemon) {
    let (code, body) = call(d, "GET", "/v1/health", None, b"", &[]);
    assert_eq!((code, &body["ok"]), (200, &Value::Bool(true)), "{body}");
    let status = d.json(&["status", "--json"]);
    assert_eq!(status["live"], true, "{status}");
    assert!(
        status["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["slot"] == "local/ci"),
        "{status}"
    );
    let log = d.log();
    assert!(!log.contains("panicked"), "the daemon panicked:\n{log}");
}

#[test]
fn oversized_bodies_get_413_and_the_daemon_keeps_serving() {
    let d = daemon();
    // One byte over the limit, said up front by Content-Length.
    let mut over = br#"{"key":"local/ci","reason":""#.to_vec();
    over.resize(MAX_BODY - 2, b'x');
    over.extend_from_slice(b"\"}");
    over.push(b' ');
    assert_eq!(over.len(), MAX_BODY + 1);
    let (code, body) = call(
        &d,
        "POST",
        "/v1/rotate",
        Some("application/json"),
        &over,
        &[],
    );
    let message = error_of(code, &body, 413, "a body one byte over the limit");
    assert!(
        message.contains(&format!("{} KiB", MAX_BODY / 1024)),
        "{message}"
    );

    // 8 MiB sent chunked, with no length the server could refuse up front.
    let big = vec![b'['; 8 << 20];
    let (code, body) = call(
        &d,
        "POST",
        "/v1/rotate",
        Some("application/json"),
        &big,
        &["-H", "Transfer-Encoding: chunked"],
    );
    error_of(code, &body, 413, "8 MiB chunked");

    // On the customer's rotate API and the enroll endpoint too.
    for path in ["/orgs/o/api-keys/rotate/k", "/v1/rotations/r/enroll"] {
        let method = if path.starts_with("/orgs") {
            "PATCH"
        } else {
            "POST"
        };
        let (code, body) = call(&d, method, path, Some("application/json"), &big, &[]);
        error_of(code, &body, 413, path);
    }

    // Just under the limit the body is read and judged on its content:
    // here a key that does not exist.
    let mut under = br#"{"key":"local/nope","reason":""#.to_vec();
    under.resize(MAX_BODY - 2, b'x');
    under.extend_from_slice(b"\"}");
    let (code, body) = call(
        &d,
        "POST",
        "/v1/rotate",
        Some("application/json"),
        &under,
        &[],
    );
    assert_ne!(code, 413, "{body}");
    error_of(code, &body, 404, "an unknown key in a body at the limit");

    still_serving(&d);
}

#[test]
fn malformed_requests_get_json_4xx_naming_the_problem() {
    let d = daemon();
    let json = Some("application/json");
    // The first key is issued at start; count rotations once it is.
    let issued = common::wait_until(Duration::from_secs(30), || {
        d.status()["keys"][0]["key_id"].is_string()
    });
    assert!(issued, "the first key was not issued:\n{}", d.log());
    let before = d.rotations().len();

    // Unknown fields: 400 naming the field, at the top and nested.
    let (code, body) = call(
        &d,
        "POST",
        "/v1/rotate",
        json,
        br#"{"key":"local/ci","colour":"red"}"#,
        &[],
    );
    let message = error_of(code, &body, 400, "an unknown field");
    assert_eq!(body["error"]["field"], "colour", "{body}");
    assert!(message.contains("colour"), "{message}");
    let (code, body) = call(
        &d,
        "PATCH",
        "/orgs/o/api-keys/rotate/k",
        json,
        br#"{"metadata":{"rotatedBy":"a","shoeSize":44}}"#,
        &[],
    );
    error_of(code, &body, 400, "a nested unknown field");
    assert_eq!(body["error"]["field"], "metadata.shoeSize", "{body}");

    // A field of the wrong type: 400 naming it.
    let (code, body) = call(&d, "POST", "/v1/rotate", json, br#"{"key":5}"#, &[]);
    error_of(code, &body, 400, "a number for a string");
    assert_eq!(body["error"]["field"], "key", "{body}");
    let (code, body) = call(
        &d,
        "POST",
        "/v1/rotate",
        json,
        br#"{"key":"local/ci","new_expires_at":"next tuesday"}"#,
        &[],
    );
    error_of(code, &body, 400, "a time that is not one");
    assert_eq!(body["error"]["field"], "new_expires_at", "{body}");

    // Missing the required field, malformed JSON, an empty body, bytes
    // that are not UTF-8, nesting deeper than serde follows.
    for (what, bad) in [
        ("no key", &br#"{"reason":"x"}"#[..]),
        ("cut JSON", br#"{"key": "#),
        ("trailing garbage", br#"{"key":"local/ci"} x"#),
        ("empty body", b""),
        ("not UTF-8", b"{\"key\":\"\xff\xfe\"}"),
        ("deep nesting", &[b'['; 10_000]),
        ("a string", br#""local/ci""#),
    ] {
        let (code, body) = call(&d, "POST", "/v1/rotate", json, bad, &[]);
        let message = error_of(code, &body, 400, what);
        assert!(
            message.starts_with("invalid request body"),
            "{what}: {message}"
        );
    }
    let (code, body) = call(&d, "POST", "/v1/rotate", json, br#"{"reason":"x"}"#, &[]);
    error_of(code, &body, 400, "no key");
    assert_eq!(body["error"]["field"], "key", "{body}");

    // Wrong or missing content type: 415, with what to send.
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let (code, body) = call(&d, "POST", "/v1/rotate", ct, br#"{"key":"local/ci"}"#, &[]);
        let message = error_of(code, &body, 415, &format!("content type {ct:?}"));
        assert!(message.contains("application/json"), "{message}");
    }

    // Unknown routes: 404 naming the path; wrong methods: 405.
    for path in ["/v2/rotate", "/", "/v1/rotate/extra", "/v1/%ff%00"] {
        let (code, body) = call(&d, "GET", path, None, b"", &[]);
        let message = error_of(code, &body, 404, path);
        assert!(message.contains("no such endpoint"), "{message}");
    }
    for (method, path) in [
        ("GET", "/v1/rotate"),
        ("DELETE", "/v1/status"),
        ("PUT", "/v1/keys"),
        ("POST", "/v1/health"),
        ("GET", "/orgs/o/api-keys/rotate/k"),
    ] {
        let (code, body) = call(&d, method, path, json, b"{}", &[]);
        let message = error_of(code, &body, 405, &format!("{method} {path}"));
        assert!(message.contains(method), "{message}");
    }

    // Bad queries: 400 naming the parameter.
    let (code, body) = call(&d, "GET", "/v1/history?limit=lots", None, b"", &[]);
    error_of(code, &body, 400, "a limit that is not a number");
    assert_eq!(body["error"]["field"], "limit", "{body}");
    let (code, body) = call(&d, "GET", "/v1/plan?days=3&colour=red", None, b"", &[]);
    error_of(code, &body, 400, "an unknown query parameter");

    // None of that started a rotation.
    assert_eq!(d.rotations().len(), before, "{:#?}", d.rotations());
    still_serving(&d);
}
