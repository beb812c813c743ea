//! `revoke_when = "unused"` through the real binary: during an overlap,
//! `keyrot status` names the old key's last use as the provider reported
//! it (the local provider reports each use at once), in its table and in
//! its JSON, both from the running daemon (the control API) and, once it
//! has stopped, from the store read directly.

use crate::common;

use std::time::Duration;

use common::{Daemon, config, wait_until};

#[test]
fn status_shows_the_old_keys_last_use_during_the_overlap_online_and_offline() {
    let mut d = Daemon::new(&config(
        "new_key_lifetime = \"30d\"\nrotate_before_expiry = \"1d\"\noverlap = \"1h\"\njitter = false\nrevoke_when = \"unused\"\nquiet_period = \"1h\"\nrevoke_deadline = \"1d\"\n",
        &["ci"],
    ));
    d.start();
    d.wait_first_key();
    let old = d.json(&["status", "--json"])["keys"][0]["key_id"]
        .as_str()
        .unwrap()
        .to_string();
    d.rotate("local/ci", "test");
    let mut st = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(30), || {
            st = d.status();
            st["keys"][0]["old_key"]["checked_at"].is_string()
        }),
        "no old key in the status: {st:#}\nlog:\n{}",
        d.log()
    );
    assert!(st["live"].as_bool().unwrap());
    let row = &st["keys"][0];
    assert_eq!(row["rotation_state"], "overlap", "{row:#}");
    let o = &row["old_key"];
    assert_eq!(o["key_id"], old.as_str(), "{o:#}");
    // The local provider records the old key's use by keyrot's own verify
    // at its issue.
    assert_eq!(o["last_use"]["kind"], "at", "{o:#}");
    let summary = o["summary"].as_str().unwrap().to_string();
    assert!(
        summary.starts_with("last used ") && summary.ends_with(" ago"),
        "{summary}"
    );
    assert!(o["in_use_alerted_at"].is_null());
    let text = String::from_utf8(d.cli(&["status"]).stdout).unwrap();
    assert!(
        text.contains(&format!("local/ci: old key {old} last used ")),
        "{text}"
    );

    // Offline: the same, read from the store.
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(15)).unwrap().success());
    let st = d.json(&["status", "--json"]);
    assert!(!st["live"].as_bool().unwrap());
    let off = &st["keys"][0]["old_key"];
    assert_eq!(off["key_id"], old.as_str());
    assert_eq!(off["last_use"], o["last_use"]);
    assert_eq!(off["checked_at"], o["checked_at"]);
    let text = String::from_utf8(d.cli(&["status"]).stdout).unwrap();
    assert!(
        text.contains(&format!("local/ci: old key {old} last used ")),
        "{text}"
    );
}
