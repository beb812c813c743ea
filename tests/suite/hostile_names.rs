//! Key names are the provider's, not keyrot's. An `exec` provider lists a
//! key named `ci-x/../../escaped/pwned` beside `ci-good`, and a
//! `[[key]] select = { name = "ci-*" }` writes raw secrets to
//! `sinks/{name}.env`: the scheduled rotations write nothing outside
//! `sinks/`, the hostile key never enters the inventory, and keyrot says
//! so (a warning naming provider and name, `keyrot_keys_refused_total`,
//! one alert mail, not one per sync). The shipped exec sink example
//! refuses such names on its own.

use crate::common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Daemon, all_files, base_config, wait_until};

const EVIL: &str = "ci-x/../../escaped/pwned";

/// The example provider's store, seeded with two keys that expire in
/// five minutes (due at once under a 10m lead time).
fn seed(dir: &Path) {
    let store = dir.join("legacy-keys");
    fs::create_dir_all(&store).unwrap();
    let soon = common::wall_now() + jiff::SignedDuration::from_mins(5);
    let key = |id: &str, name: &str| {
        serde_json::json!({
            "id": id, "name": name, "scopes": ["read"],
            "created_at": "2026-01-01T00:00:00Z", "expires_at": soon.to_string(),
            "tag": null, "sha256": "0",
        })
    };
    let keys = serde_json::json!([key("lgc-good", "ci-good"), key("lgc-evil", EVIL)]);
    fs::write(store.join("keys.json"), keys.to_string()).unwrap();
}

fn config() -> String {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/examples/exec-provider.py"
    );
    let base = base_config(3).replacen(
        "[daemon]\n",
        "[daemon]\nmetrics_listen = \"127.0.0.1:0\"\n",
        1,
    );
    format!(
        r#"{base}
[[provider]]
name = "legacy"
type = "exec"
command = ["{example}", "legacy-keys"]
operations = ["list", "issue", "verify", "revoke", "find_tagged"]

[[sink]]
name = "raw"
type = "file"
path = "sinks/{{name}}.env"
format = "raw"

[[policy]]
name = "soon"
new_key_lifetime = "1h"
rotate_before_expiry = "10m"
overlap = "1s"
jitter = false
notify = ["ops@example.com"]

[[key]]
select = {{ name = "ci-*" }}
provider = "legacy"
policy = "soon"
sinks = ["raw"]
"#
    )
}

/// The metrics text, over plain HTTP (the address is in the log).
fn scrape(d: &Daemon) -> String {
    const LISTENING: &str = "metrics endpoint listening on http://";
    let log = d.log();
    let at = log.find(LISTENING).expect("metrics address in the log") + LISTENING.len();
    let addr = &log[at..at + log[at..].find("/metrics").unwrap()];
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

/// The `.eml` files that alert about a refused key of `legacy`.
fn refusal_mails(d: &Daemon) -> Vec<String> {
    all_files(&d.dir.join("mail"))
        .into_iter()
        .map(|(_, b)| String::from_utf8_lossy(&b).into_owned())
        .filter(|m| m.contains("refused a key of legacy"))
        .collect()
}

fn refusals_logged(d: &Daemon) -> usize {
    d.log()
        .matches("refused a listed key that a [[key]] selects")
        .count()
}

#[test]
fn a_traversal_name_is_refused_writes_nothing_outside_and_alerts_once() {
    let mut d = Daemon::new(&config());
    seed(&d.dir);
    d.start();
    // The good key's scheduled rotation completes: the sync that refused
    // the other one is long over, and a rotation has written its sink.
    let ok = wait_until(Duration::from_secs(60), || {
        d.rotations()
            .iter()
            .any(|r| r["slot"] == "legacy/ci-good" && r["state"] == "Completed")
    });
    assert!(
        ok,
        "ci-good never rotated: {:#?}\n{}",
        d.rotations(),
        d.log()
    );

    // Nothing outside the sink's directory; in it, only the good key.
    assert!(!d.dir.join("escaped").exists(), "{}", d.log());
    let written: Vec<_> = all_files(&d.dir.join("sinks"))
        .into_iter()
        .map(|(p, _)| p.strip_prefix(&d.dir).unwrap().display().to_string())
        .collect();
    assert_eq!(written, ["sinks/ci-good.env"]);
    // The hostile key is not in the inventory, and no rotation touched it.
    let status = d.json(&["status", "--json"]);
    let slots: Vec<&str> = status["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["slot"].as_str())
        .collect();
    assert_eq!(slots, ["legacy/ci-good"], "{status}");
    assert!(d.rotations().iter().all(|r| r["slot"] == "legacy/ci-good"));

    // Said: a warning naming provider and name, a metric, one mail.
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains("refused a listed key"))
        .unwrap_or_else(|| panic!("no refusal in the log:\n{log}"));
    assert!(line.contains("legacy") && line.contains(EVIL), "{line}");
    assert!(line.contains("'/'"), "{line}");
    assert!(
        scrape(&d).contains("keyrot_keys_refused_total{provider=\"legacy\"} 1\n"),
        "{}",
        scrape(&d)
    );
    assert!(
        wait_until(Duration::from_secs(20), || refusal_mails(&d).len() == 1),
        "no alert mail; log:\n{}",
        d.log()
    );
    let mail = &refusal_mails(&d)[0];
    assert!(mail.contains("To: ops@example.com"), "{mail}");
    assert!(mail.contains(EVIL) && mail.contains("lgc-evil"), "{mail}");

    // The next sync (a reload) refuses it again, counts it again, and
    // queues no second mail.
    d.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(20), || refusals_logged(&d) >= 2
            && d.log().matches("inventory synced").count() >= 2),
        "no second sync:\n{}",
        d.log()
    );
    assert!(scrape(&d).contains("keyrot_keys_refused_total{provider=\"legacy\"} 2\n"));
    let status = d.json(&["status", "--json"]);
    assert_eq!(status["outbox_queued"], 0, "{status}");
    assert_eq!(refusal_mails(&d).len(), 1);
    assert!(!d.dir.join("escaped").exists());
}

/// Runs `config/examples/NAME` for key `key` with `dir` as its directory.
fn example(name: &str, dir: &Path, key: &str, stdin: &str) -> std::process::Output {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/examples")
        .join(name);
    let mut child = Command::new(path)
        .arg(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("KEYROT_KEY_NAME", key)
        .env("KEYROT_ROTATION_ID", "r-1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A script that refuses the name exits before reading its input: the
    // write then fails with a broken pipe, which is that refusal, not an error.
    if let Err(e) = child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    child.wait_with_output().unwrap()
}

#[test]
fn the_exec_sink_example_stores_only_plain_file_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/secrets");
    for key in [
        "/../pwned",
        "../pwned",
        "x/../../pwned",
        ".hidden",
        "-n",
        "a\nb",
    ] {
        let out = example("exec-sink-put.sh", &dir, key, "s3cr3t");
        assert_eq!(out.status.code(), Some(65), "{key:?}: {out:?}");
        let out = example("exec-sink-read.sh", &dir, key, "");
        assert_eq!(out.status.code(), Some(65), "{key:?}: {out:?}");
    }
    assert!(
        all_files(tmp.path()).is_empty(),
        "{:?}",
        all_files(tmp.path())
    );
    // A plain name is stored, 0600, and read back.
    let out = example("exec-sink-put.sh", &dir, "ci-bot", "s3cr3t");
    assert!(out.status.success(), "{out:?}");
    let stored = dir.join("ci-bot");
    assert_eq!(fs::read_to_string(&stored).unwrap(), "s3cr3t");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&stored).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let out = example("exec-sink-read.sh", &dir, "ci-bot", "");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "s3cr3t");
    let names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "no temporary file is left: {names:?}");
}
