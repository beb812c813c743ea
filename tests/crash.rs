//! Crash safety with failpoints (cargo feature `failpoints`): the daemon
//! dies like `kill -9` right after a state commit or around an external
//! call; a restart without failpoints must finish the rotation, with the
//! sink holding the live key's secret and the old key revoked only after.

mod common;

use std::time::Duration;

use common::{Daemon, config, wait_until};

const SLOW: &str = r#"new_key_lifetime = "1h"
rotate_before_expiry = "10m"
overlap = "1s"
jitter = false"#;

fn ts(v: &serde_json::Value) -> jiff::Timestamp {
    v.as_str()
        .unwrap_or_else(|| panic!("not a timestamp: {v}"))
        .parse()
        .unwrap()
}

/// Starts a daemon whose key has its first key, then asks for a rotation
/// with `failpoint` armed; the daemon must die there. Restarts without
/// failpoints and checks the rotation completes safely.
fn crash_at(failpoint: &str) {
    let mut d = Daemon::new(&config(SLOW, &["alpha"]));
    d.start();
    assert!(wait_until(Duration::from_secs(30), || d
        .json(&["status", "--json"])["keys"][0]["key_id"]
        .is_string()));
    let old = d.json(&["status", "--json"])["keys"][0]["key_id"].clone();
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(15)).unwrap().success());

    d.env = vec![("KEYROT_FAILPOINTS".into(), format!("{failpoint}=abort"))];
    d.start();
    let out = d.cli(&["rotate", "alpha", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let st = d
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("failpoint {failpoint} never hit; log:\n{}", d.log()));
    assert!(!st.success(), "{failpoint}: exited cleanly");

    d.env.clear();
    d.start();
    let done = wait_until(Duration::from_secs(40), || {
        d.json(&["rotation", "show", &id, "--json"])["state"] == "Completed"
    });
    assert!(
        done,
        "{failpoint}: rotation did not complete: {}\nlog:\n{}",
        d.json(&["rotation", "show", &id, "--json"]),
        d.log()
    );
    let r = d.json(&["rotation", "show", &id, "--json"]);
    assert_eq!(r["old_key_id"], old, "{failpoint}");
    let revoked = ts(&r["old_revoked_at"]);
    for (_, res) in r["sink_results"].as_object().unwrap() {
        assert!(
            ts(&res["verified_at"]) <= revoked,
            "{failpoint}: revoked before verification: {r}"
        );
    }
    let live = d.json(&["status", "--json"])["keys"][0]["key_id"].clone();
    assert_eq!(live, r["new_key"]["id"], "{failpoint}");
    assert_eq!(
        d.sink("alpha").unwrap()["key_id"],
        live,
        "{failpoint}: sink does not hold the live key"
    );
    // No orphan: the only rotation is this one (plus the first issue), and
    // every key issued under its tag except the new one was revoked (the
    // history notes an orphan revoked when the crash came after issue).
    let rotations = d.rotations();
    assert!(
        rotations.iter().all(|r| r["state"] == "Completed"),
        "{failpoint}: {rotations:#?}"
    );
}

#[test]
fn crash_after_each_commit_and_around_each_call() {
    for fp in [
        "after:issuing",
        "after:issue",
        "after:issued",
        "after:distributing",
        "after:sink-put",
        "after:verifying",
        "after:overlap",
        "after:revoking",
        "after:revoke",
    ] {
        crash_at(fp);
    }
}
