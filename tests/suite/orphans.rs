//! The orphan sweep against a real provider program: the shipped `exec`
//! provider example lists a key tagged with a rotation id this store never
//! saw (as after restoring an old backup), beside the slot's own key and a
//! key made by hand. The orphan is listed by `keyrot orphans` and `status`
//! (with the daemon and without), alerted once across two syncs, left
//! alone until `keyrot orphans --revoke`, then revoked and audited; a
//! provider with `revoke_orphans = true` revokes it at the sync itself.

use crate::common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::{Daemon, all_files, base_config, wait_until};
use serde_json::Value;

/// The rotation id on the planted key: no rotation of this store.
const RESTORED: &str = "0190aaaa-0000-7000-8000-000000000001";

/// The provider's keys: the slot's key, the orphan, one made by hand.
fn seed(dir: &Path) {
    let store = dir.join("legacy-keys");
    fs::create_dir_all(&store).unwrap();
    let later = common::wall_now() + jiff::SignedDuration::from_hours(24 * 300);
    let key = |id: &str, name: &str, tag: Option<&str>| {
        serde_json::json!({
            "id": id, "name": name, "scopes": ["read"],
            "created_at": "2026-01-01T00:00:00Z", "expires_at": later.to_string(),
            "tag": tag, "sha256": "0",
        })
    };
    let keys = serde_json::json!([
        key("lgc-current", "ci-good", None),
        key("lgc-orphan", "svc-restored", Some(RESTORED)),
        key("lgc-hand", "svc-by-hand", None),
    ]);
    fs::write(store.join("keys.json"), keys.to_string()).unwrap();
}

fn config(revoke_orphans: bool) -> String {
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
revoke_orphans = {revoke_orphans}

[[policy]]
name = "yearly"
max_age = "400d"
jitter = false
notify = ["ops@example.com"]

[[key]]
name = "ci-good"
provider = "legacy"
policy = "yearly"
sinks = ["out"]
"#
    )
}

/// Whether the provider has revoked key `id`.
fn revoked(dir: &Path, id: &str) -> bool {
    let keys: Value =
        serde_json::from_slice(&fs::read(dir.join("legacy-keys/keys.json")).unwrap()).unwrap();
    keys.as_array()
        .unwrap()
        .iter()
        .any(|k| k["id"] == id && k["revoked"].is_string())
}

fn orphan_mails(d: &Daemon) -> Vec<String> {
    all_files(&d.dir.join("mail"))
        .into_iter()
        .map(|(_, b)| String::from_utf8_lossy(&b).into_owned())
        .filter(|m| m.contains("orphan key of legacy"))
        .collect()
}

fn orphan_ids(v: &Value) -> Vec<String> {
    v["orphans"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn syncs(d: &Daemon) -> usize {
    d.log().matches("inventory synced").count()
}

#[test]
fn an_orphan_is_listed_alerted_once_and_revoked_only_when_asked() {
    let mut d = Daemon::new(&config(false));
    seed(&d.dir);
    d.start();
    assert!(
        wait_until(Duration::from_secs(30), || syncs(&d) >= 1),
        "{}",
        d.log()
    );

    let listed = d.json(&["orphans", "--json"]);
    assert_eq!(orphan_ids(&listed), ["lgc-orphan"], "{listed}");
    assert_eq!(listed["orphans"][0]["rotation"], RESTORED);
    assert_eq!(listed["orphans"][0]["name"], "svc-restored");
    assert_eq!(listed["providers"][0]["swept"], true, "{listed}");
    let status = d.json(&["status", "--json"]);
    assert_eq!(orphan_ids(&status), ["lgc-orphan"], "{status}");
    let text = String::from_utf8_lossy(&d.cli(&["orphans"]).stdout).into_owned();
    assert!(
        text.contains("lgc-orphan") && text.contains(RESTORED),
        "{text}"
    );
    assert!(
        !text.contains("lgc-hand") && !text.contains("lgc-current"),
        "{text}"
    );

    // Alerted: a warning, a metric and one mail.
    assert!(d.log().contains("orphan key:"), "{}", d.log());
    assert!(
        wait_until(Duration::from_secs(20), || orphan_mails(&d).len() == 1),
        "no alert mail; log:\n{}",
        d.log()
    );
    let mail = &orphan_mails(&d)[0];
    assert!(
        mail.contains("lgc-orphan") && mail.contains(RESTORED),
        "{mail}"
    );
    assert!(
        mail.contains("keyrot orphans --provider legacy --revoke"),
        "{mail}"
    );

    // A second sync (a reload) finds it again: no second mail, no revoke.
    d.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(20), || syncs(&d) >= 2),
        "no second sync:\n{}",
        d.log()
    );
    let status = d.json(&["status", "--json"]);
    assert_eq!(status["outbox_queued"], 0, "{status}");
    assert_eq!(orphan_mails(&d).len(), 1);
    assert_eq!(d.log().matches("orphan key:").count(), 1, "{}", d.log());
    assert!(!revoked(&d.dir, "lgc-orphan"));

    // Without the daemon: listed from the store; --revoke needs the daemon.
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(20)).is_some());
    let offline = d.json(&["orphans", "--json"]);
    assert_eq!(orphan_ids(&offline), ["lgc-orphan"], "{offline}");
    assert_eq!(offline["live"], false);
    let status = d.json(&["status", "--json"]);
    assert_eq!(orphan_ids(&status), ["lgc-orphan"], "{status}");
    let out = d.cli(&["orphans", "--revoke"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs it"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!revoked(&d.dir, "lgc-orphan"));

    // --revoke: revoked at the provider, audited, no longer listed; the
    // slot's key and the key made by hand are untouched.
    d.start();
    let out = d.json(&["orphans", "--revoke", "--json"]);
    let outcomes = out["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 1, "{out}");
    assert_eq!(outcomes[0]["id"], "lgc-orphan");
    assert_eq!(outcomes[0]["revoked"], true, "{out}");
    assert!(revoked(&d.dir, "lgc-orphan"));
    assert!(!revoked(&d.dir, "lgc-current") && !revoked(&d.dir, "lgc-hand"));
    assert!(orphan_ids(&d.json(&["orphans", "--json"])).is_empty());
    let audit = d.control_get("/v1/audit?limit=1000");
    let entry = audit
        .split("},{")
        .find(|e| e.contains("orphan.revoked"))
        .unwrap_or_else(|| panic!("no orphan.revoked in the audit: {audit}"));
    assert!(
        entry.contains("lgc-orphan") && entry.contains("uid:"),
        "{entry}"
    );
}

#[test]
fn revoke_orphans_makes_the_sync_revoke_them_audited_and_mailed() {
    let mut d = Daemon::new(&config(true));
    seed(&d.dir);
    d.start();
    assert!(
        wait_until(Duration::from_secs(30), || revoked(&d.dir, "lgc-orphan")),
        "the sync did not revoke the orphan:\n{}",
        d.log()
    );
    assert!(!revoked(&d.dir, "lgc-current") && !revoked(&d.dir, "lgc-hand"));
    assert!(
        wait_until(Duration::from_secs(20), || orphan_mails(&d).len() == 1),
        "no mail:\n{}",
        d.log()
    );
    assert!(
        orphan_mails(&d)[0].contains("revoked an orphan key"),
        "{}",
        orphan_mails(&d)[0]
    );
    assert!(
        wait_until(Duration::from_secs(10), || d
            .control_get("/v1/audit?limit=1000")
            .contains("orphan.revoked")),
        "not audited"
    );
    assert!(orphan_ids(&d.json(&["orphans", "--json"])).is_empty());
}
