//! The `exec` provider through the real binary, with the example program
//! shipped in config/examples: keys are issued, rotated and revoked in the
//! program's store, the sink holds a secret the program accepts, and a
//! crash right after the program issued a key (failpoint) leaves no orphan:
//! the restarted daemon finds it by its rotation tag and revokes it.

use crate::common;

use std::fs;
use std::time::Duration;

use common::{Daemon, wait_until};
use keyrot_core::crypto::sha256_hex;

fn config() -> String {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/examples/exec-provider.py"
    );
    let base = common::base_config(5);
    format!(
        r#"{base}
[[provider]]
name = "legacy"
type = "exec"
command = ["{example}", "legacy-keys"]
operations = ["list", "issue", "verify", "revoke", "find_tagged"]

[[policy]]
name = "slow"
new_key_lifetime = "1h"
rotate_before_expiry = "10m"
overlap = "1s"
jitter = false

[[key]]
name = "ci"
provider = "legacy"
policy = "slow"
sinks = ["out"]
scopes = ["read"]
"#
    )
}

/// The program's own records: every key it ever issued.
fn program_keys(d: &Daemon) -> Vec<serde_json::Value> {
    let text = fs::read_to_string(d.dir.join("legacy-keys/keys.json")).unwrap();
    serde_json::from_str::<Vec<serde_json::Value>>(&text).unwrap()
}

fn live(d: &Daemon) -> Vec<serde_json::Value> {
    program_keys(d)
        .into_iter()
        .filter(|k| k["revoked"].is_null())
        .collect()
}

fn first_key(d: &mut Daemon) -> String {
    d.start();
    assert!(
        wait_until(Duration::from_secs(30), || {
            d.status()["keys"][0]["key_id"].is_string()
        }),
        "no first key: {}",
        d.log()
    );
    d.json(&["status", "--json"])["keys"][0]["key_id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn rotate(d: &Daemon) -> String {
    let out = d.json(&["rotate", "ci", "--json"]);
    out["id"].as_str().unwrap().to_string()
}

fn wait_completed(d: &Daemon, id: &str) -> serde_json::Value {
    let ok = wait_until(Duration::from_secs(40), || {
        d.rotation(id)["state"] == "Completed"
    });
    let r = d.json(&["rotation", "show", id, "--json"]);
    assert!(ok, "rotation did not complete: {r}\nlog:\n{}", d.log());
    r
}

/// The sink holds the secret of the one live key, as the program knows it.
fn assert_sink_holds_live_key(d: &Daemon, new_id: &str) {
    let live = live(d);
    assert_eq!(live.len(), 1, "{live:#?}");
    assert_eq!(live[0]["id"], new_id);
    let sink = d.sink("ci").unwrap();
    assert_eq!(sink["key_id"], new_id);
    let secret = sink["secret"].as_str().unwrap();
    assert_eq!(live[0]["sha256"], sha256_hex(secret.as_bytes()).as_str());
}

#[test]
fn a_program_provider_rotates_and_revokes() {
    let mut d = Daemon::new(&config());
    let old = first_key(&mut d);
    let id = rotate(&d);
    let r = wait_completed(&d, &id);
    assert_eq!(r["old_key_id"], old.as_str());
    let new = r["new_key"]["id"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert!(r["old_revoked_at"].is_string(), "{r}");
    assert_sink_holds_live_key(&d, &new);
    // The old key is revoked in the program's store, not deleted.
    let old_rec = program_keys(&d)
        .into_iter()
        .find(|k| k["id"] == old.as_str())
        .unwrap();
    assert!(old_rec["revoked"].is_string(), "{old_rec}");
}

#[cfg(feature = "failpoints")]
#[test]
fn a_crash_right_after_the_program_issued_leaves_no_orphan() {
    let mut d = Daemon::new(&config());
    let old = first_key(&mut d);
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(15)).unwrap().success());
    d.env = vec![("KEYROT_FAILPOINTS".into(), "after:issue=abort".into())];
    d.start();
    let id = rotate(&d);
    let st = d
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("failpoint never hit; log:\n{}", d.log()));
    assert!(!st.success());
    // The program issued a key whose secret keyrot never committed.
    let orphan: Vec<_> = live(&d)
        .into_iter()
        .filter(|k| k["tag"] == id.as_str())
        .collect();
    assert_eq!(orphan.len(), 1, "{:#?}", program_keys(&d));
    let orphan_id = orphan[0]["id"].as_str().unwrap().to_string();

    d.env.clear();
    d.start();
    let r = wait_completed(&d, &id);
    let new = r["new_key"]["id"].as_str().unwrap().to_string();
    assert_ne!(
        new, orphan_id,
        "the orphan's secret is lost: it must not be used"
    );
    assert_eq!(r["old_key_id"], old.as_str());
    let orphan_rec = program_keys(&d)
        .into_iter()
        .find(|k| k["id"] == orphan_id.as_str())
        .unwrap();
    assert!(
        orphan_rec["revoked"].is_string(),
        "orphan left live: {orphan_rec}"
    );
    assert_sink_holds_live_key(&d, &new);
}
