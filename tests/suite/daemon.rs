//! The real binary, end to end, with the local provider and a file sink:
//! rotations complete and are recorded, kill -9 and SIGTERM lose nothing,
//! a bad reload keeps the old config, the control socket answers, and a
//! second daemon on the same store refuses to start.

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{Daemon, all_files, config, wait_until};

const FAST: &str = r#"new_key_lifetime = "6s"
rotate_before_expiry = "3s"
overlap = "1s"
jitter = false"#;

const SLOW: &str = r#"new_key_lifetime = "1h"
rotate_before_expiry = "10m"
overlap = "3s"
jitter = false"#;

fn ts(v: &serde_json::Value) -> jiff::Timestamp {
    v.as_str()
        .unwrap_or_else(|| panic!("not a timestamp: {v}"))
        .parse()
        .unwrap()
}

/// Each sink write and verification came before the old key's revocation.
fn assert_revoked_after_distribution(r: &serde_json::Value) {
    let revoked = ts(&r["old_revoked_at"]);
    let results = r["sink_results"].as_object().unwrap();
    assert!(!results.is_empty(), "no sink results: {r}");
    for (sink, res) in results {
        assert!(
            ts(&res["written_at"]) <= revoked,
            "{sink} written after revoke: {r}"
        );
        assert!(
            ts(&res["verified_at"]) <= revoked,
            "{sink} verified after revoke: {r}"
        );
    }
}

#[test]
fn rotates_keys_end_to_end_and_records_everything() {
    let mut d = Daemon::new(&config(FAST, &["alpha", "beta"]));
    d.start();
    let done = wait_until(Duration::from_secs(60), || {
        ["local/alpha", "local/beta"]
            .iter()
            .all(|s| d.completed_replacements(s).len() >= 2)
    });
    assert!(
        done,
        "fewer than two completed rotations per key; log:\n{}",
        d.log()
    );

    let status = d.json(&["status", "--json"]);
    assert_eq!(status["live"], true);
    let keys = status["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{status}");
    for k in keys {
        let name = k["name"].as_str().unwrap();
        let sink = d.sink(name).expect("sink file");
        // The sink holds the live key, and the status shows its future expiry.
        let history = d.json(&["history", name, "--json"]);
        let latest_done = history["rotations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["state"] == "Completed")
            .cloned()
            .unwrap();
        assert_eq!(k["scopes"], 1);
        assert!(k["expires_at"].is_string());
        let path = d.dir.join("out").join(format!("{name}.json"));
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        if k["key_id"] == latest_done["new_key"]["id"] {
            assert_eq!(sink["key_id"], k["key_id"]);
        }
    }
    for slot in ["local/alpha", "local/beta"] {
        for r in d.completed_replacements(slot) {
            assert_revoked_after_distribution(&r);
            let states: Vec<&str> = r["history"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["to"].as_str().unwrap())
                .collect();
            assert_eq!(
                states,
                [
                    "Pending",
                    "Issuing",
                    "Issued",
                    "Distributing",
                    "Verifying",
                    "Overlap",
                    "Revoking",
                    "Completed"
                ],
            );
        }
    }
    // Completion emails were written by the file transport.
    let mails: Vec<_> = all_files(&d.dir.join("mail"));
    assert!(!mails.is_empty(), "no mail written");
    assert!(
        mails
            .iter()
            .any(|(_, b)| String::from_utf8_lossy(b).contains("[keyrot] rotated local/alpha"))
    );

    // No live secret appears in plaintext in the store, the log, the mails or the audit.
    let secret = d.sink("alpha").unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(secret.len() >= 40);
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(15)).unwrap().success());
    for (path, bytes) in all_files(&d.dir) {
        if path.starts_with(d.dir.join("out")) {
            continue;
        }
        let hay = String::from_utf8_lossy(&bytes);
        assert!(!hay.contains(&secret), "secret found in {}", path.display());
    }
}

#[test]
fn kill_9_during_overlap_then_restart_finishes_the_rotation() {
    let mut d = Daemon::new(&config(SLOW, &["alpha"]));
    d.start();
    d.wait_first_key();
    let before = d.json(&["status", "--json"])["keys"][0]["key_id"].clone();
    let id = d.rotate("alpha", "test kill -9");
    assert!(wait_until(
        Duration::from_secs(30),
        || d.rotation(&id)["state"] == "Overlap"
    ));
    d.kill9();

    d.start();
    assert!(
        wait_until(Duration::from_secs(30), || d.rotation(&id)["state"]
            == "Completed"),
        "log:\n{}",
        d.log()
    );
    let r = d.json(&["rotation", "show", &id, "--json"]);
    assert_revoked_after_distribution(&r);
    assert!(
        ts(&r["old_revoked_at"]) >= ts(&r["revoke_old_at"]),
        "revoked before the overlap ended: {r}"
    );
    assert_eq!(r["old_key_id"], before);
    let status = d.json(&["status", "--json"]);
    assert_eq!(status["keys"][0]["key_id"], r["new_key"]["id"]);
    assert_eq!(d.sink("alpha").unwrap()["key_id"], r["new_key"]["id"]);
}

#[test]
fn sigterm_while_rotations_run_exits_cleanly_and_they_resume() {
    let mut d = Daemon::new(&config(SLOW, &["a1", "a2", "a3", "a4", "a5", "a6"]));
    d.spawn();
    // Stop as soon as the first rotation has started: others are in flight.
    assert!(wait_until(Duration::from_secs(30), || d
        .log()
        .contains("rotation started")));
    d.signal(libc::SIGTERM);
    let st = d
        .wait_exit(Duration::from_secs(15))
        .expect("did not stop within the shutdown timeout");
    assert!(st.success(), "exit status {st:?}; log:\n{}", d.log());
    assert!(d.log().contains("stopping"));

    d.start();
    let all_done = wait_until(Duration::from_secs(30), || {
        let rs = d.rotations();
        rs.len() >= 6 && rs.iter().all(|r| r["state"] == "Completed")
    });
    assert!(
        all_done,
        "rotations: {:#?}\nlog:\n{}",
        d.rotations(),
        d.log()
    );
    for n in ["a1", "a2", "a3", "a4", "a5", "a6"] {
        assert!(d.sink(n).is_some(), "sink for {n}");
    }
}

#[test]
fn reload_with_a_bad_config_keeps_the_old_one() {
    let mut d = Daemon::new(&config(SLOW, &["alpha"]));
    d.start();
    let good = fs::read_to_string(d.config_path()).unwrap();
    fs::write(
        d.config_path(),
        format!("{good}\n[[policy]]\nname = \"x\"\nmax_age = \"ten days\"\n"),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || d
            .log()
            .contains("reload rejected")),
        "log:\n{}",
        d.log()
    );
    assert!(
        d.log().contains("keyrot.toml:"),
        "error without position:\n{}",
        d.log()
    );
    // Still serving with the old config.
    assert_eq!(
        d.json(&["status", "--json"])["keys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let check = d.cli(&["check"]);
    assert!(!check.status.success());
    assert!(String::from_utf8_lossy(&check.stderr).contains("keyrot.toml:"));

    // A good reload adds a key.
    fs::write(d.config_path(), config(SLOW, &["alpha", "gamma"])).unwrap();
    d.signal(libc::SIGHUP);
    assert!(wait_until(Duration::from_secs(10), || {
        d.status()["keys"].as_array().unwrap().len() == 2
    }));
}

#[test]
fn control_socket_answers_and_refuses_clearly() {
    let mut d = Daemon::new(&config(SLOW, &["alpha"]));
    d.start();
    d.wait_first_key();
    // Unknown key: error with a near match, non-zero exit.
    let out = d.cli(&["rotate", "alpah"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("alpha"), "{err}");
    // A second rotation of the same key while one runs: refused with its id.
    let first = d.cli(&["rotate", "alpha", "--json"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let id = serde_json::from_slice::<serde_json::Value>(&first.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let second = d.cli(&["rotate", "alpha"]);
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains(&id));
    // plan and keys answer.
    let plan = d.json(&["plan", "--json"]);
    assert_eq!(plan["rows"].as_array().unwrap().len(), 1);
    assert!(d.cli(&["keys"]).status.success());
    assert!(d.cli(&["status"]).status.success());
}

#[test]
fn a_second_daemon_on_the_same_store_refuses_to_start() {
    let mut d = Daemon::new(&config(SLOW, &["alpha"]));
    d.start();
    let out = std::process::Command::new(common::bin())
        .args(["run", "--config"])
        .arg(d.config_path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another keyrot process"), "{err}");
    // The first one is unharmed.
    assert!(d.cli(&["status"]).status.success());
}

#[test]
fn without_a_daemon_status_reads_the_store() {
    let mut d = Daemon::new(&config(SLOW, &["alpha"]));
    d.start();
    d.wait_first_key();
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(15)).unwrap().success());
    let status = d.json(&["status", "--json"]);
    assert_eq!(status["live"], false);
    assert_eq!(status["keys"].as_array().unwrap().len(), 1);
}

#[test]
fn a_master_key_readable_by_others_is_refused() {
    let mut d = Daemon::new(&config(SLOW, &["alpha"]));
    fs::write(d.dir.join("master.key"), format!("{}\n", "ab".repeat(32))).unwrap();
    fs::set_permissions(d.dir.join("master.key"), fs::Permissions::from_mode(0o644)).unwrap();
    d.spawn();
    let st = d.wait_exit(Duration::from_secs(10)).expect("should exit");
    assert!(!st.success());
    let log = d.log();
    assert!(log.contains("master.key") && log.contains("600"), "{log}");
    assert!(
        !d.dir.join("state/state.redb").exists(),
        "a store was created anyway"
    );
}
