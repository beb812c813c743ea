//! The rotation API the customer asked for, end to end over real HTTP:
//! `keyrot sandbox` (the proposed Admin API) as the provider, the daemon,
//! the CLI and curl on the control socket.

use crate::common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Daemon, Sandbox, atlassian_config, wait_until};
use sha2::Digest as _;

fn sha256_hex(s: &str) -> String {
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn ts(v: &serde_json::Value) -> jiff::Timestamp {
    v.as_str()
        .unwrap_or_else(|| panic!("not a timestamp: {v}"))
        .parse()
        .unwrap()
}

fn days_from_now(v: &serde_json::Value) -> i64 {
    (ts(v).as_second() - common::wall_now().as_second()) / 86_400
}

fn rotation_of(d: &Daemon, slot: &str) -> Option<serde_json::Value> {
    d.rotations().into_iter().find(|r| r["slot"] == slot)
}

const PROPOSED: &str = r#"new_key_lifetime = "180d"
rotate_before_expiry = "10d"
overlap = "2s"
jitter = false"#;

#[test]
fn proposed_rotate_keeps_scopes_sets_expiry_and_revokes_after_overlap() {
    let mut d = Daemon::new("");
    let sb = Sandbox::start(&d.dir.join("sandbox"));
    std::fs::write(
        d.config_path(),
        atlassian_config(
            &sb,
            "proposed",
            PROPOSED,
            &["ci-bot", "reporting", "legacy-admin"],
        ),
    )
    .unwrap();
    d.start();
    // Pagination: five org keys in pages of two; the three configured ones are bound.
    assert!(wait_until(Duration::from_secs(20), || d.status()["keys"]
        .as_array()
        .unwrap()
        .len()
        == 3));
    let status = d.json(&["status", "--json"]);
    let legacy = status["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "legacy-admin")
        .unwrap()
        .clone();
    assert!(
        legacy["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "unscoped"),
        "{legacy}"
    );

    // `reporting` expires in 5 days, inside the 10-day lead time: rotated now.
    let done = wait_until(Duration::from_secs(40), || {
        rotation_of(&d, "atlassian/reporting").is_some_and(|r| r["state"] == "Completed")
    });
    assert!(done, "{:#?}\nlog:\n{}", d.rotations(), d.log());
    let r = rotation_of(&d, "atlassian/reporting").unwrap();
    let old = sb.key(r["old_key_id"].as_str().unwrap());
    let new = sb.key(r["new_key"]["id"].as_str().unwrap());
    assert_eq!(new["scopes"], old["scopes"], "scopes kept");
    assert_eq!(new["name"], "reporting");
    assert!(
        (179..=180).contains(&days_from_now(&new["expiresAt"])),
        "new expiry {}",
        new["expiresAt"]
    );
    assert!(old["revokedAt"].is_string(), "old key not revoked: {old}");
    let revoked = ts(&old["revokedAt"]);
    for (_, res) in r["sink_results"].as_object().unwrap() {
        assert!(ts(&res["verified_at"]) <= revoked);
    }
    assert!(
        revoked >= ts(&r["revoke_old_at"]),
        "revoked before the overlap ended"
    );
    // The sink holds the secret the sandbox issued.
    let sink = d.sink("reporting").unwrap();
    assert_eq!(
        sha256_hex(sink["secret"].as_str().unwrap()),
        new["secretSha256"].as_str().unwrap()
    );
    // Keys not due were left alone.
    assert!(rotation_of(&d, "atlassian/legacy-admin").is_none());
}

#[test]
fn assisted_rotation_emails_the_request_and_enroll_finishes_it() {
    let mut d = Daemon::new("");
    let sb = Sandbox::start(&d.dir.join("sandbox"));
    let policy = format!("{PROPOSED}\nnotify_before_expiry = [\"30d\", \"7d\", \"1d\"]");
    std::fs::write(
        d.config_path(),
        atlassian_config(&sb, "none", &policy, &["reporting"]),
    )
    .unwrap();
    d.start();
    assert!(
        wait_until(Duration::from_secs(20), || {
            rotation_of(&d, "atlassian/reporting").is_some_and(|r| r["state"] == "AwaitingSecret")
        }),
        "log:\n{}",
        d.log()
    );
    let r = rotation_of(&d, "atlassian/reporting").unwrap();
    let id = r["id"].as_str().unwrap().to_string();
    // The request names the scopes, the expiry and the command; never a secret.
    assert!(wait_until(Duration::from_secs(10), || common::all_files(
        &d.dir.join("mail")
    )
    .iter()
    .any(|(_, b)| String::from_utf8_lossy(b).contains("ACTION NEEDED"))));
    let mail: String = common::all_files(&d.dir.join("mail"))
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).to_string())
        .collect();
    assert!(
        mail.contains("read:jira-work") && mail.contains(&format!("keyrot enroll {id}")),
        "{mail}"
    );
    assert!(
        mail.contains("security@example.com"),
        "security contacts are asked too"
    );

    // A person creates the key in the console (the sandbox's admin endpoint)...
    let out = sb.curl(&["-X", "POST", "-H", "Content-Type: application/json", &format!("{}/_sandbox/keys", sb.url),
        "-d", r#"{"orgId":"demo-org","name":"reporting","scopes":["read:jira-work"],"createdBy":"alice@example.com"}"#]);
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (new_id, secret) = (
        created["id"].as_str().unwrap(),
        created["secret"].as_str().unwrap(),
    );
    assert!(!mail.contains(secret));
    // ...and hands the secret to keyrot on stdin.
    let out = d.enroll(&[&id, "--key-id", new_id], secret);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_until(Duration::from_secs(30), || d.rotation(&id)["state"]
            == "Completed"),
        "log:\n{}",
        d.log()
    );
    let r = d.json(&["rotation", "show", &id, "--json"]);
    assert_eq!(r["new_key"]["id"], new_id);
    assert!(sb.key(r["old_key_id"].as_str().unwrap())["revokedAt"].is_string());
    assert_eq!(d.sink("reporting").unwrap()["secret"], secret);
    assert!(!d.log().contains(secret), "secret in the log");
}

#[test]
fn patch_on_the_control_socket_returns_the_sealed_secret() {
    let mut d = Daemon::new("");
    let sb = Sandbox::start(&d.dir.join("sandbox"));
    let policy = "new_key_lifetime = \"365d\"\nrotate_before_expiry = \"1d\"\noverlap = \"1h\"\njitter = false";
    std::fs::write(
        d.config_path(),
        atlassian_config(&sb, "proposed", policy, &["ci-bot", "reporting"]),
    )
    .unwrap();
    d.start();
    assert!(wait_until(Duration::from_secs(20), || d.status()["keys"]
        .as_array()
        .unwrap()
        .len()
        == 2));
    let ci = d.json(&["status", "--json"])["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "ci-bot")
        .unwrap()
        .clone();
    let old_id = ci["key_id"].as_str().unwrap().to_string();
    let new_exp = (common::wall_now() + jiff::SignedDuration::from_hours(24 * 200)).to_string();
    let old_exp = (common::wall_now() + jiff::SignedDuration::from_hours(1)).to_string();
    // The seed's exact example body, dates moved to the future.
    let body = format!(
        r#"{{
  "newKeyExpiresAt": "{new_exp}",
  "oldKeyExpiresAt": "{old_exp}",
  "rotateReason": "Scheduled key rotation as part of security best practices",
  "notifyContacts": true,
  "metadata": {{
    "rotatedBy": "user@email.com",
    "initiatedFrom": "CI/CD Automation",
    "rotationPolicyId": "rot-policy-companyID-standard"
  }}
}}"#
    );
    let sock = d.dir.join("control.sock");
    let patch = |key: &str, body: &str| {
        Command::new("curl")
            .args(["-sS", "--unix-socket"])
            .arg(&sock)
            .args([
                "-X",
                "PATCH",
                "-H",
                "Content-Type: application/json",
                "-w",
                "\n%{http_code}",
            ])
            .arg(format!(
                "http://keyrot/orgs/demo-org/api-keys/rotate/{key}?pskId=caller"
            ))
            .args(["-d", body])
            .output()
            .unwrap()
    };
    let out = patch(&old_id, &body);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (json, code) = text.rsplit_once('\n').unwrap();
    assert_eq!(code, "200", "{text}\nlog:\n{}", d.log());
    let resp: serde_json::Value = serde_json::from_str(json).unwrap();
    let data = &resp["data"];
    assert_eq!(data["encryption"]["algorithm"], "AES-256-GCM");
    assert_eq!(data["encryption"]["pskId"], "caller");
    assert_eq!(data["encryption"]["keyWrap"], false);
    assert!(
        (199..=200).contains(&days_from_now(&data["keyExpiresAt"])),
        "{resp}"
    );
    let new_id = data["id"].as_str().unwrap();
    // `keyrot decrypt` opens it to the secret the sandbox holds for the new key.
    let mut child = Command::new(common::bin())
        .args(["decrypt", "--psk-file"])
        .arg(sb.dir.join("psk.hex"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(json.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .to_string();
    assert_eq!(
        sha256_hex(&secret),
        sb.key(new_id)["secretSha256"].as_str().unwrap()
    );
    assert_eq!(
        sb.key(new_id)["scopes"],
        sb.key(&old_id)["scopes"],
        "scopes kept"
    );

    // 409: a rotation of that key is running (in overlap for an hour).
    let out = patch("ci-bot", "{}");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.ends_with("\n409"), "{text}");
    // 404: unknown key; 400: unknown field, named.
    let text = String::from_utf8_lossy(&patch("no-such-key", "{}").stdout).to_string();
    assert!(text.ends_with("\n404"), "{text}");
    let text =
        String::from_utf8_lossy(&patch("reporting", r#"{"rotateReasn":"x"}"#).stdout).to_string();
    assert!(
        text.ends_with("\n400") && text.contains("rotateReasn"),
        "{text}"
    );
    // The audit records why and who.
    let r = d
        .rotations()
        .into_iter()
        .find(|r| r["slot"] == "atlassian/ci-bot")
        .unwrap();
    assert_eq!(r["initiator"]["rotated_by"], "user@email.com");
    assert_eq!(r["initiator"]["initiated_from"], "CI/CD Automation");
    assert_eq!(
        r["reason"],
        "Scheduled key rotation as part of security best practices"
    );
    // Nothing secret in the log.
    assert!(!d.log().contains(&secret));
}

#[test]
fn a_429_with_retry_after_is_honoured() {
    let mut d = Daemon::new("");
    let sb = Sandbox::start(&d.dir.join("sandbox"));
    let policy = "new_key_lifetime = \"365d\"\nrotate_before_expiry = \"1d\"\noverlap = \"1s\"\njitter = false";
    std::fs::write(
        d.config_path(),
        atlassian_config(&sb, "proposed", policy, &["ci-bot"]),
    )
    .unwrap();
    d.start();
    assert!(wait_until(Duration::from_secs(20), || d.status()["keys"]
        [0]["key_id"]
        .is_string()));
    let out = sb.curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        &format!("{}/_sandbox/fail", sb.url),
        "-d",
        r#"{"status":429,"retry_after":3,"count":1}"#,
    ]);
    assert!(out.status.success());
    let out = d.cli(&["rotate", "ci-bot", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        wait_until(Duration::from_secs(30), || d.rotation(&id)["state"]
            == "Completed"),
        "log:\n{}",
        d.log()
    );
    let r = d.json(&["rotation", "show", &id, "--json"]);
    let at = |state: &str| {
        ts(&r["history"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["to"] == state)
            .unwrap()["at"])
    };
    let waited = at("Issued").as_second() - at("Issuing").as_second();
    assert!(
        waited >= 3,
        "issued {waited}s after the 429, before its Retry-After of 3s"
    );
    assert!(d.log().contains("will retry"));
}

#[test]
fn keyrot_demo_rotates_against_the_sandbox() {
    let tmp = tempfile::Builder::new().prefix("krdemo").tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let mut child = Command::new(common::bin())
        .args(["demo", "--dir"])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let cfg = dir.join("keyrot.toml");
    let history = || {
        Command::new(common::bin())
            .args(["history", "--json", "--config"])
            .arg(&cfg)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
    };
    let done = wait_until(Duration::from_secs(60), || {
        history().is_some_and(|h| {
            h["rotations"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["state"] == "Completed")
                .count()
                >= 2
        })
    });
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let _ = child.wait();
    assert!(done, "no completed rotations within 60 s: {:?}", history());
}

#[test]
fn a_second_key_with_a_slots_name_is_shown_beside_the_one_it_tracks() {
    let mut d = Daemon::new("");
    let sb = Sandbox::start(&d.dir.join("sandbox"));
    // Someone created a second "reporting" in the console and forgot it.
    let out = sb.curl(&["-X", "POST", "-H", "Content-Type: application/json", &format!("{}/_sandbox/keys", sb.url),
        "-d", r#"{"orgId":"demo-org","name":"reporting","scopes":["read:jira-work"],"createdBy":"bob@example.com"}"#]);
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let copy = created["id"].as_str().unwrap().to_string();
    let seeded: Vec<String> = sb
        .keys()
        .into_iter()
        .filter(|k| k["name"] == "reporting" && k["id"] != copy.as_str())
        .map(|k| k["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seeded.len(), 1, "{:?}", sb.keys());
    let policy = "auto_rotate = false";
    std::fs::write(
        d.config_path(),
        atlassian_config(&sb, "none", policy, &["reporting"]),
    )
    .unwrap();
    d.start();
    d.wait_first_key();
    // The slot tracks the newest key (no key was bound before) and shows
    // the other, in the table and in the JSON of `status` and `keys`.
    let st = d.json(&["status", "--json"]);
    let row = &st["keys"][0];
    assert_eq!(row["key_id"], copy.as_str(), "{st}");
    assert_eq!(row["duplicate_ids"], serde_json::json!(seeded), "{st}");
    assert!(
        row["flags"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("duplicate-name")),
        "{st}"
    );
    assert_eq!(
        d.json(&["keys", "--json"])[0]["duplicate_ids"],
        row["duplicate_ids"]
    );
    let text = String::from_utf8(d.cli(&["status"]).stdout).unwrap();
    assert!(
        text.contains(&format!(
            "atlassian/reporting: \"reporting\" also names {} at the provider; keyrot tracks {copy} only",
            seeded[0]
        )),
        "{text}"
    );
    let log = d.log();
    assert!(
        log.contains("other live key(s) with this key's name") && log.contains(&seeded[0]),
        "{log}"
    );
}

#[test]
fn enroll_reports_the_daemons_refusal_and_only_a_missing_daemon_as_missing() {
    let mut d = Daemon::new("");
    let sb = Sandbox::start(&d.dir.join("sandbox"));
    std::fs::write(
        d.config_path(),
        atlassian_config(&sb, "none", PROPOSED, &["reporting"]),
    )
    .unwrap();
    // No daemon yet: that, and only that, is "needs it".
    let out = d.enroll(&["0193-none", "--key-id", "k"], "s");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("keyrot daemon is not running") && err.contains("keyrot enroll needs it"),
        "{err}"
    );
    d.start();
    assert!(
        wait_until(Duration::from_secs(20), || {
            rotation_of(&d, "atlassian/reporting").is_some_and(|r| r["state"] == "AwaitingSecret")
        }),
        "log:\n{}",
        d.log()
    );
    let id = rotation_of(&d, "atlassian/reporting").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = sb.curl(&["-X", "POST", "-H", "Content-Type: application/json", &format!("{}/_sandbox/keys", sb.url),
        "-d", r#"{"orgId":"demo-org","name":"reporting","scopes":["read:jira-work"],"createdBy":"alice@example.com"}"#]);
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let new_id = created["id"].as_str().unwrap();
    // A secret that is not that key's: the daemon's 400, in its words.
    let out = d.enroll(&[&id, "--key-id", new_id], "ATATT-not-the-secret");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.starts_with(&format!("keyrot: the secret is refused for key {new_id}")),
        "{err}"
    );
    assert!(!err.contains("needs"), "{err}");
    assert!(!err.contains("ATATT-not-the-secret"), "{err}");
    // So is a rotation the daemon does not know.
    let out = d.enroll(&["0193-unknown", "--key-id", new_id], "x");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.starts_with("keyrot: unknown rotation 0193-unknown"),
        "{err}"
    );
    // The rotation still waits for the right secret.
    assert_eq!(
        d.json(&["rotation", "show", &id, "--json"])["state"],
        "AwaitingSecret"
    );
}
