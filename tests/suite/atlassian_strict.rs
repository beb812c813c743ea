//! The customer's own flow against `keyrot sandbox --strict`: a server that
//! honours no Idempotency-Key, reads an absent `oldKeyExpiresAt` as "the old
//! key ends now" and seals under a PSK of its own choosing; answers lost
//! after the server acted, and keyrot killed with the rotate call in
//! flight. Every assertion reads the sandbox's own state (`/_sandbox/keys`,
//! `/_sandbox/audit`), not keyrot's account of it. Each test prints the
//! figures docs/reliability.md quotes.

use crate::common;

use std::process::Output;
use std::time::Duration;

use common::{Daemon, Sandbox, atlassian_config, wait_until};
use jiff::Timestamp;
use serde_json::{Value, json};
use sha2::Digest as _;

fn sha256_hex(s: &str) -> String {
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn ts(v: &Value) -> Timestamp {
    v.as_str()
        .unwrap_or_else(|| panic!("not a timestamp: {v}"))
        .parse()
        .unwrap()
}

/// GET a loopback-only sandbox endpoint.
fn admin_get(sb: &Sandbox, path: &str) -> Value {
    let out = sb.curl(&[&format!("{}/_sandbox/{path}", sb.url)]);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// POST to a loopback-only sandbox endpoint.
fn admin_post(sb: &Sandbox, path: &str, body: Value) -> Output {
    let out = sb.curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        &format!("{}/_sandbox/{path}", sb.url),
        "-d",
        &body.to_string(),
    ]);
    assert!(out.status.success(), "{out:?}");
    out
}

/// Every key the sandbox holds, revoked ones included.
fn all_keys(sb: &Sandbox) -> Vec<Value> {
    admin_get(sb, "keys")["data"].as_array().unwrap().clone()
}

/// The ids of the live (ACTIVE) keys named `name`.
fn live_named(sb: &Sandbox, name: &str) -> Vec<String> {
    all_keys(sb)
        .into_iter()
        .filter(|k| k["name"] == name && k["status"] == "ACTIVE")
        .map(|k| k["id"].as_str().unwrap().to_string())
        .collect()
}

/// The sandbox's audit entries of `action`.
fn audit_of(sb: &Sandbox, action: &str) -> Vec<Value> {
    admin_get(sb, "audit")["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .cloned()
        .collect()
}

/// Revokes key `id` at the sandbox with the admin key (as a person in the
/// console would).
fn revoke_by_hand(sb: &Sandbox, id: &str) {
    let out = sb.curl(&[
        "-X",
        "PATCH",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        &format!("Authorization: Bearer {}", sb.seeded_secret("keyrot")),
        &format!(
            "{}/admin/api-access/v1/orgs/demo-org/api-keys/revoke/{id}",
            sb.url
        ),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "204");
}

/// Creates a key as a person would in the console: (id, secret).
fn create_by_hand(sb: &Sandbox, name: &str, scopes: &[&str]) -> (String, String) {
    let out = admin_post(
        sb,
        "keys",
        json!({"orgId": "demo-org", "name": name, "scopes": scopes, "createdBy": "alice@example.com"}),
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["id"].as_str().unwrap().to_string(),
        v["secret"].as_str().unwrap().to_string(),
    )
}

/// A daemon against a strict sandbox; `policy` is the body of the `fast`
/// policy, `retry_initial` the first backoff.
fn strict_world(policy: &str, keys: &[&str], retry_initial: &str) -> (Daemon, Sandbox) {
    let mut d = Daemon::new("");
    let sb = Sandbox::start_with(&d.dir.join("sandbox"), &["--strict"]);
    let config = atlassian_config(&sb, "proposed", policy, keys).replace(
        "initial = \"1s\"",
        &format!("initial = \"{retry_initial}\""),
    );
    std::fs::write(d.config_path(), config).unwrap();
    d.start();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let st = d.status();
            st["keys"]
                .as_array()
                .is_some_and(|k| k.len() == keys.len() && k.iter().all(|k| k["key_id"].is_string()))
        }),
        "keys not adopted; log:\n{}",
        d.log()
    );
    (d, sb)
}

/// The current key id of `name` as keyrot sees it.
fn current_key(d: &Daemon, name: &str) -> String {
    d.json(&["status", "--json"])["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name)
        .unwrap()["key_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// After a completed rotation of `name`: exactly one live key of that
/// name (the rotation's new key), its secret in the sink, the old key
/// revoked no earlier than the overlap's end. Returns the number of live
/// keys of that name that are not the new one (orphans).
fn check_completed(d: &Daemon, sb: &Sandbox, name: &str, rec: &Value) -> usize {
    let new = rec["new_key"]["id"].as_str().unwrap();
    let live = live_named(sb, name);
    assert!(
        live.iter().any(|k| k == new),
        "new key {new} not live: {live:?}"
    );
    let sink = d.sink(name).unwrap();
    let held = sha256_hex(sink["secret"].as_str().unwrap());
    let want = admin_get(sb, &format!("keys/{new}/secret-sha256"))["secretSha256"].clone();
    assert_eq!(
        held,
        want.as_str().unwrap(),
        "the sink holds another secret"
    );
    let old = rec["old_key_id"].as_str().unwrap();
    let old_key = all_keys(sb).into_iter().find(|k| k["id"] == old).unwrap();
    let revoke_at = ts(&rec["revoke_old_at"]);
    assert!(
        ts(&old_key["revokedAt"]) >= revoke_at,
        "old key ended before the overlap: {old_key} vs {revoke_at}"
    );
    live.iter().filter(|k| k.as_str() != new).count()
}

const POLICY: &str = r#"new_key_lifetime = "180d"
rotate_before_expiry = "10d"
jitter = false
reason = "Scheduled key rotation as part of security best practices""#;

#[test]
fn the_old_key_outlives_the_overlap_at_a_strict_server_and_the_callers_words_go_upstream() {
    let policy = format!("{POLICY}\noverlap = \"20s\"");
    let (d, sb) = strict_world(&policy, &["ci-bot", "reporting", "read only demo"], "1s");
    // `reporting` expires within the lead time: the scheduler starts it.
    // The other two are asked for from the CLI.
    let a = d.rotate("ci-bot", "by hand");
    let b = d.rotate("read only demo", "by hand");
    let done = wait_until(Duration::from_secs(90), || {
        d.rotations()
            .iter()
            .filter(|r| r["state"] == "Completed")
            .count()
            == 3
    });
    assert!(done, "{:#?}\nlog:\n{}", d.rotations(), d.log());
    let mut figures = Vec::new();
    for r in d.rotations() {
        let name = r["slot"].as_str().unwrap().trim_start_matches("atlassian/");
        assert_eq!(check_completed(&d, &sb, name, &r), 0, "orphan of {name}");
        // The old key's end at the provider, from the sandbox's state.
        let old = all_keys(&sb)
            .into_iter()
            .find(|k| k["id"] == r["old_key_id"])
            .unwrap();
        let overlap_from = r["history"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["to"] == "Overlap")
            .map(|t| ts(&t["at"]))
            .unwrap();
        let ended = ts(&old["revokedAt"]).min(ts(&old["expiresAt"]));
        assert!(ended >= ts(&r["revoke_old_at"]));
        figures.push(format!(
            "{name}: old key valid {:.1} s after the new one was verified",
            ended.duration_since(overlap_from).as_secs_f64()
        ));
    }
    // Every rotate call said the old key's end, and the caller's words.
    let rotated = audit_of(&sb, "api-key.rotated");
    assert_eq!(rotated.len(), 3, "{rotated:#?}");
    for e in &rotated {
        assert_eq!(e["oldKeyExpiresAtAbsent"], false, "{e}");
        assert!(e["oldKeyRevokedAt"].is_null(), "{e}");
        assert_eq!(e["metadata"]["rotationPolicyId"], "fast");
        assert_eq!(e["notifyContacts"], false);
    }
    let by_key = |name: &str| {
        let id = d
            .rotations()
            .into_iter()
            .find(|r| r["slot"] == format!("atlassian/{name}"))
            .unwrap()["old_key_id"]
            .clone();
        rotated
            .iter()
            .find(|e| e["apiKeyId"] == id)
            .unwrap()
            .clone()
    };
    let scheduled = by_key("reporting");
    assert_eq!(scheduled["metadata"]["initiatedFrom"], "schedule");
    assert!(
        scheduled["metadata"]["rotatedBy"]
            .as_str()
            .unwrap()
            .starts_with("keyrot@"),
        "{scheduled}"
    );
    assert!(
        scheduled["rotateReason"]
            .as_str()
            .unwrap()
            .starts_with("Scheduled key rotation as part of security best practices ("),
        "{scheduled}"
    );
    let manual = by_key("ci-bot");
    assert_eq!(manual["metadata"]["initiatedFrom"], "cli");
    assert_eq!(manual["rotateReason"], "by hand");
    assert!(!manual["metadata"]["rotatedBy"].as_str().unwrap().is_empty());
    let _ = (a, b);
    println!(
        "overlap at a strict server (policy overlap 20 s):\n  {}",
        figures.join("\n  ")
    );
}

#[test]
fn answers_lost_after_the_server_acted_leave_one_working_key_and_no_orphan() {
    let policy = format!("{POLICY}\noverlap = \"1s\"");
    let (d, sb) = strict_world(&policy, &["ci-bot"], "1s");
    let runs = 10;
    let mut orphans = 0;
    let mut revoked_orphans = 0;
    for _ in 0..runs {
        let before = audit_of(&sb, "api-key.rotated").len();
        admin_post(&sb, "lose", json!({"count": 1, "mode": "drop"}));
        let id = d.rotate("ci-bot", "lost answer run");
        let rec = d.wait_state(&id, "Completed", 60);
        orphans += check_completed(&d, &sb, "ci-bot", &rec);
        // The server acted twice: once for the lost answer, once again.
        assert_eq!(audit_of(&sb, "api-key.rotated").len(), before + 2);
        let notes = rec["history"].to_string();
        assert!(notes.contains("revoked orphan"), "{notes}");
        revoked_orphans += 1;
    }
    assert_eq!(orphans, 0);
    assert_eq!(live_named(&sb, "ci-bot"), vec![current_key(&d, "ci-bot")]);
    println!(
        "lost answers: {runs} runs, {runs} completed, {revoked_orphans} keys of lost answers found by listing and revoked, {orphans} orphans, 1 live key"
    );
}

#[test]
fn kill_9_with_the_rotate_call_in_flight_leaves_one_working_key_and_no_orphan() {
    let policy = format!("{POLICY}\noverlap = \"1s\"");
    let (mut d, sb) = strict_world(&policy, &["ci-bot"], "1s");
    let runs = 10;
    let mut orphans = 0;
    for _ in 0..runs {
        let before = audit_of(&sb, "api-key.rotated").len();
        admin_post(
            &sb,
            "lose",
            json!({"count": 1, "mode": "stall", "stallMs": 60000}),
        );
        let id = d.rotate("ci-bot", "kill run");
        // The server has acted; its answer is held back: kill keyrot now.
        assert!(wait_until(Duration::from_secs(20), || audit_of(
            &sb,
            "api-key.rotated"
        )
        .len()
            > before));
        d.kill9();
        d.start();
        let rec = d.wait_state(&id, "Completed", 60);
        orphans += check_completed(&d, &sb, "ci-bot", &rec);
        assert!(
            rec["history"].to_string().contains("revoked orphan"),
            "{rec:#}"
        );
    }
    admin_post(&sb, "lose", json!({"count": 0}));
    assert_eq!(orphans, 0);
    assert_eq!(live_named(&sb, "ci-bot"), vec![current_key(&d, "ci-bot")]);
    println!("kill -9 during rotate: {runs} runs, {runs} completed, {orphans} orphans, 1 live key");
}

#[test]
fn an_old_key_ended_early_is_recovered_from_the_orphan_or_said_to_be_lost() {
    let policy = format!("{POLICY}\noverlap = \"1s\"");
    // A 3 s first backoff leaves time to end the old key by hand.
    let (d, sb) = strict_world(&policy, &["ci-bot", "read only demo"], "3s");
    let old = current_key(&d, "ci-bot");
    // The answer is lost, then someone ends the old key: keyrot rotates
    // the key the lost call made (it has the old key's scopes) instead.
    let before = audit_of(&sb, "api-key.rotated").len();
    admin_post(&sb, "lose", json!({"count": 1, "mode": "drop"}));
    let id = d.rotate("ci-bot", "old key ends early");
    assert!(wait_until(Duration::from_secs(20), || audit_of(
        &sb,
        "api-key.rotated"
    )
    .len()
        > before));
    revoke_by_hand(&sb, &old);
    let rec = d.wait_state(&id, "Completed", 60);
    assert!(rec["old_lost_at"].is_string(), "{rec:#}");
    let new = rec["new_key"]["id"].as_str().unwrap();
    assert_eq!(live_named(&sb, "ci-bot"), vec![new.to_string()]);
    let new_key = all_keys(&sb).into_iter().find(|k| k["id"] == new).unwrap();
    assert_ne!(new_key["rotatedFrom"], old.as_str(), "{new_key}");
    let sink = d.sink("ci-bot").unwrap();
    assert_eq!(
        sha256_hex(sink["secret"].as_str().unwrap()),
        admin_get(&sb, &format!("keys/{new}/secret-sha256"))["secretSha256"]
            .as_str()
            .unwrap()
    );
    let shown = String::from_utf8_lossy(&d.cli(&["rotation", "show", &id]).stdout).to_string();
    assert!(shown.contains("old key lost"), "{shown}");

    // Nothing was made (a 503 before the server acted) and the old key is
    // gone: nothing to rotate from. Failed, saying so with the ids.
    let old = current_key(&d, "read only demo");
    admin_post(&sb, "fail", json!({"status": 503, "count": 1}));
    let id = d.rotate("read only demo", "nothing to recover from");
    assert!(wait_until(Duration::from_secs(20), || {
        d.show(&id)["last_error"].is_string()
    }));
    revoke_by_hand(&sb, &old);
    let rec = d.wait_state(&id, "Failed", 60);
    let err = rec["last_error"].as_str().unwrap();
    assert!(
        err.contains("recovery impossible") && err.contains(&old),
        "{err}"
    );
    assert!(rec["old_lost_at"].is_string());
    assert!(live_named(&sb, "read only demo").is_empty());
    let mail_ok = wait_until(Duration::from_secs(10), || {
        common::all_files(&d.dir.join("mail")).iter().any(|(_, b)| {
            let m = String::from_utf8_lossy(b);
            m.contains("FAILED rotation of atlassian/read only demo")
                && m.contains("no longer works")
        })
    });
    assert!(mail_ok, "no FAILED mail saying the old key no longer works");
}

#[test]
fn enroll_refuses_a_secret_of_another_key_and_revokes_nothing() {
    let mut d = Daemon::new("");
    let sb = Sandbox::start_with(&d.dir.join("sandbox"), &["--strict"]);
    let policy = format!("{POLICY}\noverlap = \"1s\"");
    std::fs::write(
        d.config_path(),
        atlassian_config(&sb, "none", &policy, &["reporting", "ci-bot"]),
    )
    .unwrap();
    d.start();
    let mut id = String::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            d.rotations().into_iter().any(|r| {
                id = r["id"].as_str().unwrap_or_default().to_string();
                r["slot"] == "atlassian/reporting" && r["state"] == "AwaitingSecret"
            })
        }),
        "log:\n{}",
        d.log()
    );
    let old = current_key(&d, "reporting");
    let (new, secret) = create_by_hand(&sb, "reporting", &["read:jira-work"]);
    let keys_before = all_keys(&sb);
    for (what, wrong) in [
        ("the old key's", sb.seeded_secret("reporting")),
        ("another key's", sb.seeded_secret("ci-bot")),
    ] {
        let out = d.enroll(&[&id, "--key-id", &new], &wrong);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what} secret was enrolled: {said}");
        assert!(said.contains("belongs to key"), "{what}: {said}");
        assert!(!said.contains(&wrong), "the secret was echoed");
        assert_eq!(d.show(&id)["state"], "AwaitingSecret");
        let now: Vec<Value> = all_keys(&sb)
            .into_iter()
            .map(|mut k| {
                k["lastActiveAt"] = Value::Null;
                k
            })
            .collect();
        let was: Vec<Value> = keys_before
            .iter()
            .cloned()
            .map(|mut k| {
                k["lastActiveAt"] = Value::Null;
                k
            })
            .collect();
        assert_eq!(now, was, "a key changed after a refused enroll");
    }
    assert!(d.sink("reporting").is_none());
    // The key's own secret is proven and enrolled.
    let out = d.enroll(&[&id, "--key-id", &new], &secret);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rec = d.wait_state(&id, "Completed", 30);
    assert!(rec["history"].to_string().contains("identity proven"));
    assert_eq!(rec["new_key"]["id"], new.as_str());
    assert_eq!(live_named(&sb, "reporting"), vec![new.clone()]);
    assert!(
        all_keys(&sb)
            .iter()
            .any(|k| k["id"] == old.as_str() && k["status"] == "REVOKED")
    );
}

#[test]
fn scopes_the_rotate_cannot_give_go_to_an_assisted_request_and_enroll_checks_them() {
    let mut d = Daemon::new("");
    let sb = Sandbox::start_with(&d.dir.join("sandbox"), &["--strict"]);
    let policy = format!("{POLICY}\noverlap = \"1s\"\nscopes = [\"read:keys:admin\"]");
    std::fs::write(
        d.config_path(),
        atlassian_config(&sb, "proposed", &policy, &["legacy-admin"]),
    )
    .unwrap();
    d.start();
    d.wait_first_key();
    let id = d.rotate("legacy-admin", "unscoped to scoped");
    let rec = d.wait_state(&id, "AwaitingSecret", 30);
    assert!(
        rec["history"]
            .to_string()
            .contains("keeps the old key's scopes"),
        "{rec:#}"
    );
    // No rotate call was made: no key claims scopes it lacks.
    assert!(audit_of(&sb, "api-key.rotated").is_empty());
    assert!(wait_until(Duration::from_secs(10), || common::all_files(
        &d.dir.join("mail")
    )
    .iter()
    .any(
        |(_, b)| String::from_utf8_lossy(b).contains("read:keys:admin")
    )));
    // An unscoped key is refused; the key with exactly the scopes is taken.
    let (unscoped, s1) = create_by_hand(&sb, "legacy-admin", &[]);
    let out = d.enroll(&[&id, "--key-id", &unscoped], &s1);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("asks for [read:keys:admin]"),
        "{said}"
    );
    let (scoped, s2) = create_by_hand(&sb, "legacy-admin", &["read:keys:admin"]);
    let out = d.enroll(&[&id, "--key-id", &scoped], &s2);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rec = d.wait_state(&id, "Completed", 30);
    assert_eq!(rec["new_key"]["scopes"], json!(["read:keys:admin"]));
}

#[test]
fn the_answer_opens_under_the_psk_the_server_chose_and_an_unknown_one_revokes_the_new_key() {
    let mut d = Daemon::new("");
    let dir = d.dir.join("sandbox");
    std::fs::create_dir_all(&dir).unwrap();
    let other = dir.join("other.hex");
    std::fs::write(&other, "17".repeat(32)).unwrap();
    std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let sb = Sandbox::start_with(
        &dir,
        &[
            "--strict",
            "--psk",
            &format!("other={}", other.display()),
            "--seal-psk",
            "other",
        ],
    );
    let policy = format!("{POLICY}\noverlap = \"1s\"");
    let base = atlassian_config(&sb, "proposed", &policy, &["ci-bot", "read only demo"]);
    // keyrot holds both PSKs: the answer names `other`, and opens.
    let both = base.replace(
        "psk = { file",
        &format!(
            "psks = [{{ id = \"other\", key = {{ file = \"{}\" }} }}]\npsk = {{ file",
            other.display()
        ),
    );
    std::fs::write(d.config_path(), &both).unwrap();
    d.start();
    d.wait_first_key();
    let id = d.rotate("ci-bot", "server's PSK");
    let rec = d.wait_state(&id, "Completed", 30);
    assert_eq!(check_completed(&d, &sb, "ci-bot", &rec), 0);
    assert_eq!(audit_of(&sb, "api-key.rotated")[0]["pskId"], "other");

    // keyrot holds only `demo`: the new key is revoked at once, the old
    // key untouched, the rotation Failed naming both.
    d.kill9();
    // The killed daemon's socket file stays behind; `start` waits for the
    // new daemon's own socket, not that one.
    let _ = std::fs::remove_file(d.dir.join("control.sock"));
    std::fs::write(d.config_path(), &base).unwrap();
    d.start();
    let old = current_key(&d, "read only demo");
    let id = d.rotate("read only demo", "unknown PSK");
    let rec = d.wait_state(&id, "Failed", 30);
    let err = rec["last_error"].as_str().unwrap();
    let made = audit_of(&sb, "api-key.rotated")
        .into_iter()
        .find(|e| e["apiKeyId"] == old.as_str())
        .unwrap()["newApiKeyId"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        err.contains("\"other\", which is not configured")
            && err.contains(&format!("new key {made} revoked at once"))
            && err.contains(&format!("old key {old} untouched")),
        "{err}"
    );
    assert_eq!(live_named(&sb, "read only demo"), vec![old]);
}

#[test]
fn throttling_with_retry_after_does_not_spend_the_retry_budget() {
    let policy = format!("{POLICY}\noverlap = \"1s\"");
    let mut d = Daemon::new("");
    let sb = Sandbox::start_with(&d.dir.join("sandbox"), &["--strict"]);
    let config = atlassian_config(&sb, "proposed", &policy, &["ci-bot"])
        .replace("attempts = 4", "attempts = 2");
    std::fs::write(d.config_path(), config).unwrap();
    d.start();
    d.wait_first_key();
    // Four 429s with Retry-After: 1 in a row, against a budget of two
    // attempts: the rotation still completes.
    admin_post(
        &sb,
        "fail",
        json!({"status": 429, "retry_after": 1, "count": 4}),
    );
    let id = d.rotate("ci-bot", "throttled");
    let rec = d.wait_state(&id, "Completed", 60);
    assert_eq!(check_completed(&d, &sb, "ci-bot", &rec), 0);
    let throttled = d
        .log()
        .lines()
        .filter(|l| l.contains(&id) && l.contains("will retry") && l.contains("429"))
        .count();
    assert!(throttled >= 2, "{}", d.log());
}
