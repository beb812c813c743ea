//! The `openbao-approle` provider against a real OpenBao (`bao server
//! -dev`, one per test), with keyrot holding only the policy documented in
//! docs/providers.md: secret-ids issued with the rotation tag and the
//! requested lifetime, listed, found by tag, verified by a login that
//! leaves no token behind, destroyed (twice is fine); the errors an
//! operator sees; and the real binary rotating a role's secret-id end to
//! end and recovering from a crash right after the issue.

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::peers::{self, Peer, bao_api, curl};
use common::{Daemon, wait_until};
use jiff::SignedDuration;
use keyrot_config::{OpenBaoAppRoleProviderConfig, SecretRef, VaultAuth};
use keyrot_peers::provider::openbao_approle::OpenBaoAppRoleProvider;
use keyrot_peers::provider::{IssueRequest, Provider};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// The policy docs/providers.md gives keyrot's token, for mount `approle`.
const KEYROT_POLICY: &str = r#"
path "auth/approle/role"                               { capabilities = ["list"] }
path "auth/approle/role/+/secret-id"                   { capabilities = ["list", "update"] }
path "auth/approle/role/+/secret-id-accessor/lookup"   { capabilities = ["update"] }
path "auth/approle/role/+/secret-id-accessor/destroy"  { capabilities = ["update"] }
path "auth/approle/role/+/secret-id/lookup"            { capabilities = ["update"] }
path "auth/approle/role/+/role-id"                     { capabilities = ["read"] }
path "auth/token/revoke"                               { capabilities = ["update"] }
"#;

/// A root call that must succeed; its JSON body (Null when empty).
fn root(bao: &Peer, method: &str, path: &str, body: Option<&str>) -> Value {
    let (code, text) = bao_api(bao, method, path, body);
    assert!((200..300).contains(&code), "{method} {path}: {code} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// An OpenBao with AppRole at `approle/`, role `ci` (secret-ids live 2h
/// at most) and the keyrot policy; returns it and a token with only that
/// policy.
fn world(dir: &Path) -> (Peer, String) {
    let bao = peers::bao(&dir.join("bao"));
    root(
        &bao,
        "POST",
        "sys/auth/approle",
        Some(r#"{"type":"approle"}"#),
    );
    role(&bao, "ci", r#""secret_id_ttl":"2h""#);
    let policy = serde_json::json!({ "policy": KEYROT_POLICY }).to_string();
    root(&bao, "PUT", "sys/policies/acl/keyrot", Some(&policy));
    let body = r#"{"policies":["keyrot"],"ttl":"2h"}"#;
    let v = root(&bao, "POST", "auth/token/create", Some(body));
    let token = v["auth"]["client_token"].as_str().unwrap().to_string();
    (bao, token)
}

/// Creates role `name` (default token policy) with extra settings.
fn role(bao: &Peer, name: &str, extra: &str) {
    let body = format!(r#"{{"token_ttl":"5m","token_policies":["default"],{extra}}}"#);
    root(
        bao,
        "POST",
        &format!("auth/approle/role/{name}"),
        Some(&body),
    );
}

/// `secret` in a 0600 file under `dir`, as a reference.
fn secret_file(dir: &Path, name: &str, secret: &str) -> SecretRef {
    let path = dir.join(name);
    fs::write(&path, format!("{secret}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    SecretRef::File(path)
}

/// Provider settings with token auth for `bao`.
fn settings(bao: &Peer, dir: &Path, token: &str) -> OpenBaoAppRoleProviderConfig {
    OpenBaoAppRoleProviderConfig {
        address: bao.url.clone(),
        mount: "approle".into(),
        roles: None,
        namespace: None,
        auth: VaultAuth::Token(secret_file(dir, "keyrot-token", token)),
        ca_file: None,
        timeout: SignedDuration::from_secs(10),
    }
}

/// A new secret-id of `role` made by root (not by keyrot): (secret, accessor).
fn root_secret_id(bao: &Peer, role: &str) -> (String, String) {
    let v = root(
        bao,
        "POST",
        &format!("auth/approle/role/{role}/secret-id"),
        Some("{}"),
    );
    (
        v["data"]["secret_id"].as_str().unwrap().to_string(),
        v["data"]["secret_id_accessor"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

/// The accessors of `role`'s secret-ids, as root sees them.
fn accessors(bao: &Peer, role: &str) -> Vec<String> {
    let (code, text) = bao_api(
        bao,
        "LIST",
        &format!("auth/approle/role/{role}/secret-id"),
        None,
    );
    if code == 404 {
        return Vec::new();
    }
    assert_eq!(code, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let mut out: Vec<String> = v["data"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

/// Root's lookup of accessor `acc` of `role`: its data, or None when gone.
fn lookup(bao: &Peer, role: &str, acc: &str) -> Option<Value> {
    let body = serde_json::json!({ "secret_id_accessor": acc }).to_string();
    let (code, text) = bao_api(
        bao,
        "POST",
        &format!("auth/approle/role/{role}/secret-id-accessor/lookup"),
        Some(&body),
    );
    match code {
        200 => Some(serde_json::from_str::<Value>(&text).unwrap()["data"].clone()),
        204 | 404 => None,
        _ => panic!("lookup {role}/{acc}: {code} {text}"),
    }
}

/// An AppRole login of `role` with `secret`, with no token at all: the
/// HTTP status (200: it works).
fn login(bao: &Peer, role: &str, secret: &str) -> u16 {
    let v = root(
        bao,
        "GET",
        &format!("auth/approle/role/{role}/role-id"),
        None,
    );
    let body = serde_json::json!({
        "role_id": v["data"]["role_id"],
        "secret_id": secret,
    })
    .to_string();
    let url = format!("{}/v1/auth/approle/login", bao.url);
    let out = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        &body,
        &url,
    ]);
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// How many tokens OpenBao holds (root's view).
fn token_count(bao: &Peer) -> usize {
    root(bao, "LIST", "auth/token/accessors", None)["data"]["keys"]
        .as_array()
        .unwrap()
        .len()
}

/// What the state machine would ask for: role `role`, tag `tag`.
fn request(role: &str, tag: &str, lifetime: Option<SignedDuration>) -> IssueRequest {
    let now = common::wall_now();
    IssueRequest {
        name: role.to_string(),
        scopes: Vec::new(),
        expires_at: lifetime.map(|l| now + l),
        tag: tag.to_string(),
        replaces: None,
        resumed: false,
        created_by: "keyrot".into(),
        now,
        ..Default::default()
    }
}

/// Asserts `text` holds none of `secrets`.
fn assert_clean(text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "a secret leaked into: {text}");
    }
}

#[tokio::test]
async fn issues_lists_finds_verifies_and_revokes_secret_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let (bao, token) = world(tmp.path());
    // A secret-id made by hand before keyrot: listed, no expiry tag.
    let (hand_secret, hand_acc) = root_secret_id(&bao, "ci");
    let p = OpenBaoAppRoleProvider::new("bao", &settings(&bao, tmp.path(), &token), None).unwrap();
    let now = common::wall_now();
    let listed = p.list(now).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:#?}");
    let hand = &listed[0];
    assert_eq!(hand.id, format!("ci/{hand_acc}"));
    assert_eq!(hand.name, "ci");
    assert!(hand.tags.is_empty(), "{hand:?}");
    let created = hand.created_at.unwrap();
    assert!(created.duration_since(now).abs() < SignedDuration::from_secs(60));
    // The role's secret_id_ttl (2h) gives it its expiry.
    let left = hand.expires_at.unwrap().duration_since(created);
    assert!(
        (left - SignedDuration::from_secs(7200)).abs() < SignedDuration::from_secs(2),
        "{hand:?}"
    );

    // Issue with a 1h lifetime and the rotation's tag.
    let req = request("ci", "rot-1", Some(SignedDuration::from_secs(3600)));
    let issued = p.issue(&req).await.unwrap();
    let secret = issued.secret.expose_secret().to_string();
    assert!(!secret.is_empty());
    assert_clean(&format!("{issued:?}"), &[&secret]);
    let (role_name, acc) = issued.info.id.split_once('/').unwrap();
    assert_eq!(role_name, "ci");
    assert_eq!(issued.info.name, "ci");
    assert_eq!(
        issued.info.expires_at,
        Some(req.now + SignedDuration::from_secs(3600))
    );
    assert_eq!(issued.info.tags["keyrot_rotation"], "rot-1");
    // OpenBao holds the tag and the lifetime, and the secret logs in.
    let entry = lookup(&bao, "ci", acc).unwrap();
    assert_eq!(entry["metadata"]["keyrot_rotation"], "rot-1", "{entry}");
    assert_eq!(entry["metadata"]["keyrot_created_by"], "keyrot", "{entry}");
    assert_eq!(entry["secret_id_ttl"], 3600, "{entry}");
    assert_eq!(login(&bao, "ci", &secret), 200);

    // Both are listed (overlap); the tag finds only the new one.
    let listed = p.list(common::wall_now()).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(listed.len(), 2, "{ids:?}");
    assert!(ids.contains(&issued.info.id.as_str()), "{ids:?}");
    let tagged = p.find_tagged("rot-1", common::wall_now()).await.unwrap();
    assert_eq!(tagged.len(), 1);
    assert_eq!(tagged[0].id, issued.info.id);
    assert_eq!(tagged[0].created_by.as_deref(), Some("keyrot"));
    assert!(
        p.find_tagged("rot-2", common::wall_now())
            .await
            .unwrap()
            .is_empty()
    );

    // Verify logs in and revokes the token it got: no token is left.
    let before = token_count(&bao);
    p.verify(&issued.info.id, &issued.secret, common::wall_now())
        .await
        .unwrap();
    assert_eq!(
        token_count(&bao),
        before,
        "verification left a token behind"
    );
    // A wrong secret, or the right secret under another key's id, fails.
    let wrong = SecretString::from("00000000-0000-0000-0000-000000000000");
    let e = p
        .verify(&issued.info.id, &wrong, common::wall_now())
        .await
        .unwrap_err();
    assert!(!e.transient, "{e}");
    assert!(e.message.contains("no live secret-id"), "{e}");
    let e = p
        .verify(&hand.id, &issued.secret, common::wall_now())
        .await
        .unwrap_err();
    assert!(e.message.contains(&format!("not {hand_acc}")), "{e}");
    assert_clean(&e.message, &[&secret, &hand_secret, &token]);

    // Revoke destroys it: the secret no longer logs in; twice is fine.
    p.revoke(&issued.info.id, common::wall_now()).await.unwrap();
    assert_eq!(lookup(&bao, "ci", acc), None);
    assert_eq!(login(&bao, "ci", &secret), 400);
    p.revoke(&issued.info.id, common::wall_now()).await.unwrap();
    let e = p
        .verify(&issued.info.id, &issued.secret, common::wall_now())
        .await
        .unwrap_err();
    assert_clean(&e.message, &[&secret, &token]);
    let listed = p.list(common::wall_now()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, hand.id);
    assert!(
        p.find_tagged("rot-1", common::wall_now())
            .await
            .unwrap()
            .is_empty()
    );
    // The hand-made secret-id was never touched.
    assert_eq!(login(&bao, "ci", &hand_secret), 200);
    // A role that is gone takes its secret-ids with it: revoking counts as done.
    root(&bao, "DELETE", "auth/approle/role/ci", None);
    p.revoke(&hand.id, common::wall_now()).await.unwrap();
    assert!(p.list(common::wall_now()).await.unwrap().is_empty());
}

#[tokio::test]
async fn lists_every_role_or_only_the_configured_ones_and_skips_expired() {
    let tmp = tempfile::tempdir().unwrap();
    let (bao, token) = world(tmp.path());
    role(&bao, "deploy", r#""secret_id_ttl":"0""#);
    role(&bao, "empty", r#""secret_id_ttl":"1h""#);
    let (_, ci_acc) = root_secret_id(&bao, "ci");
    let (_, deploy_acc) = root_secret_id(&bao, "deploy");
    // A secret-id that expires at once: listed by OpenBao until tidied,
    // never by keyrot once expired.
    let v = root(
        &bao,
        "POST",
        "auth/approle/role/ci/secret-id",
        Some(r#"{"ttl":1}"#),
    );
    let short = v["data"]["secret_id_accessor"]
        .as_str()
        .unwrap()
        .to_string();
    let cfg = settings(&bao, tmp.path(), &token);
    let all = OpenBaoAppRoleProvider::new("bao", &cfg, None).unwrap();
    let later = common::wall_now() + SignedDuration::from_secs(5);
    let ids: Vec<String> = all
        .list(later)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(
        ids,
        [format!("ci/{ci_acc}"), format!("deploy/{deploy_acc}")]
    );
    assert!(accessors(&bao, "ci").contains(&short));
    // No expiry when the role sets none.
    let deploy = all
        .list(common::wall_now())
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.name == "deploy")
        .unwrap();
    assert_eq!(deploy.expires_at, None);

    // `roles` limits listing (a role that does not exist lists nothing)
    // and issuing.
    let only = OpenBaoAppRoleProviderConfig {
        roles: Some(vec!["deploy".into(), "ghost".into()]),
        ..cfg.clone()
    };
    let p = OpenBaoAppRoleProvider::new("bao", &only, None).unwrap();
    let ids: Vec<String> = p
        .list(common::wall_now())
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(ids, [format!("deploy/{deploy_acc}")]);
    let e = p.issue(&request("ci", "r", None)).await.unwrap_err();
    assert!(e.message.contains("not in this provider's `roles`"), "{e}");

    // A mount with no role at all lists nothing (OpenBao answers 404).
    root(
        &bao,
        "POST",
        "sys/auth/other",
        Some(r#"{"type":"approle"}"#),
    );
    let root_token = settings(&bao, tmp.path(), "root");
    let other = OpenBaoAppRoleProviderConfig {
        mount: "other".into(),
        ..root_token.clone()
    };
    let p = OpenBaoAppRoleProvider::new("bao", &other, None).unwrap();
    assert!(p.list(common::wall_now()).await.unwrap().is_empty());
    // A mount that is not there is an error that says so.
    let wrong = OpenBaoAppRoleProviderConfig {
        mount: "nope".into(),
        ..root_token
    };
    let p = OpenBaoAppRoleProvider::new("bao", &wrong, None).unwrap();
    let e = p.list(common::wall_now()).await.unwrap_err();
    assert!(
        e.message
            .contains("is `mount` \"nope\" an AppRole auth mount?"),
        "{e}"
    );
}

#[tokio::test]
async fn issue_errors_name_the_role_and_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let (bao, token) = world(tmp.path());
    let p = OpenBaoAppRoleProvider::new("bao", &settings(&bao, tmp.path(), &token), None).unwrap();
    // Longer than the role's secret_id_ttl (2h): OpenBao refuses with 400.
    let e = p
        .issue(&request("ci", "r", Some(SignedDuration::from_hours(3))))
        .await
        .unwrap_err();
    assert!(!e.transient, "{e}");
    assert!(
        e.message.starts_with("provider \"bao\": create a secret-id of role \"ci\": OpenBao answered 400 Bad Request: ttl cannot be longer than the role's secret_id_ttl"),
        "{e}"
    );
    assert!(e.message.contains("lifetime of 3h"), "{e}");
    assert!(e.message.contains("`new_key_lifetime`"), "{e}");
    assert!(accessors(&bao, "ci").is_empty());
    // No role of that name.
    let e = p.issue(&request("cii", "r", None)).await.unwrap_err();
    assert!(!e.transient, "{e}");
    assert!(e.message.contains("role \"cii\" does not exist"), "{e}");
    assert!(e.message.contains("create role \"cii\""), "{e}");
    // Without an expiry the role's secret_id_ttl applies.
    let issued = p.issue(&request("ci", "r", None)).await.unwrap();
    let left = issued
        .info
        .expires_at
        .unwrap()
        .duration_since(common::wall_now());
    assert!(left > SignedDuration::from_secs(7000), "{left}");

    // A token whose policy does not allow the call: the message says what
    // keyrot needs, and never holds the token.
    let policy =
        r#"{"policy":"path \"auth/approle/role/+/secret-id\" { capabilities = [\"list\"] }"}"#;
    root(&bao, "PUT", "sys/policies/acl/weak", Some(policy));
    let body = r#"{"policies":["weak"],"ttl":"1h","no_default_policy":true}"#;
    let weak = root(&bao, "POST", "auth/token/create", Some(body))["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let cfg = OpenBaoAppRoleProviderConfig {
        auth: VaultAuth::Token(secret_file(tmp.path(), "weak-token", &weak)),
        ..settings(&bao, tmp.path(), &token)
    };
    let p = OpenBaoAppRoleProvider::new("bao", &cfg, None).unwrap();
    let e = p.issue(&request("ci", "r", None)).await.unwrap_err();
    assert!(
        e.message.contains("403 Forbidden: permission denied"),
        "{e}"
    );
    assert!(
        e.message
            .contains("keyrot needs `update` on auth/approle/role/ci/secret-id"),
        "{e}"
    );
    let e = p.list(common::wall_now()).await.unwrap_err();
    assert!(
        e.message
            .contains("keyrot needs `list` on auth/approle/role"),
        "{e}"
    );
    assert_clean(&e.message, &[&weak, &token]);
}

#[tokio::test]
async fn a_secret_id_with_few_uses_is_verified_without_using_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (bao, token) = world(tmp.path());
    role(&bao, "once", r#""secret_id_num_uses":1"#);
    let p = OpenBaoAppRoleProvider::new("bao", &settings(&bao, tmp.path(), &token), None).unwrap();
    let issued = p.issue(&request("once", "r", None)).await.unwrap();
    p.verify(&issued.info.id, &issued.secret, common::wall_now())
        .await
        .unwrap();
    let (_, acc) = issued.info.id.split_once('/').unwrap();
    let entry = lookup(&bao, "once", acc).expect("verification used the secret-id up");
    assert_eq!(entry["secret_id_num_uses"], 1, "{entry}");
    // Its one use is still there for its consumer.
    assert_eq!(login(&bao, "once", issued.secret.expose_secret()), 200);
}

#[tokio::test]
async fn a_changed_role_id_is_read_again_when_a_login_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (bao, token) = world(tmp.path());
    let p = OpenBaoAppRoleProvider::new("bao", &settings(&bao, tmp.path(), &token), None).unwrap();
    let now = common::wall_now();
    let tokens = token_count(&bao);
    // The first verification reads the role-id and keeps it.
    let first = p.issue(&request("ci", "r1", None)).await.unwrap();
    p.verify(&first.info.id, &first.secret, now).await.unwrap();
    // Someone sets a new role-id behind keyrot's back: a login with the
    // kept one is refused, so keyrot reads it again and logs in.
    root(
        &bao,
        "POST",
        "auth/approle/role/ci/role-id",
        Some(r#"{"role_id":"a-new-role-id"}"#),
    );
    let second = p.issue(&request("ci", "r2", None)).await.unwrap();
    p.verify(&second.info.id, &second.secret, now)
        .await
        .unwrap_or_else(|e| panic!("verify after the role-id changed: {e}"));
    // A wrong secret is still refused after the fresh read.
    let wrong = SecretString::from("not-the-secret-id".to_string());
    let err = p.verify(&second.info.id, &wrong, now).await.unwrap_err();
    assert!(!err.message.contains("not-the-secret-id"), "{err}");
    // Every login's token was revoked, the retried one's too.
    assert_eq!(token_count(&bao), tokens);
}

// ---------------------------------------------------------------------
// The real binary.

/// A daemon managing role `ci` of `bao`, logging in with its own AppRole
/// `keyrot` (which holds the keyrot policy), with a JSON file sink.
fn daemon(bao: &Peer) -> Daemon {
    role(
        bao,
        "keyrot",
        r#""token_policies":["keyrot"],"token_ttl":"10m""#,
    );
    let role_id = root(bao, "GET", "auth/approle/role/keyrot/role-id", None)["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (secret_id, _) = root_secret_id(bao, "keyrot");
    let d = Daemon::new("");
    secret_file(&d.dir, "keyrot-secret-id", &secret_id);
    let base = common::base_config(5);
    let config = format!(
        r#"{base}
[[provider]]
name = "bao"
type = "openbao-approle"
address = "{url}"
roles = ["ci"]
role_id = "{role_id}"
secret_id = {{ file = "keyrot-secret-id" }}
timeout = "5s"

[[policy]]
name = "slow"
new_key_lifetime = "1h"
rotate_before_expiry = "10m"
overlap = "1s"
jitter = false

[[key]]
name = "ci"
provider = "bao"
policy = "slow"
sinks = ["out"]
"#,
        url = bao.url,
    );
    fs::write(d.config_path(), config).unwrap();
    d
}

/// The live key id of slot `bao/ci` once the daemon shows one.
fn live_key(d: &Daemon) -> String {
    let mut id = None;
    let ok = wait_until(Duration::from_secs(30), || {
        id = d.status()["keys"][0]["key_id"].as_str().map(str::to_string);
        id.is_some()
    });
    assert!(ok, "no live key; log:\n{}", d.log());
    id.unwrap()
}

/// `keyrot rotate ci`: the rotation id.
fn rotate(d: &Daemon) -> String {
    d.json(&["rotate", "ci", "--json"])["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Rotation `id` once Completed.
fn wait_completed(d: &Daemon, id: &str) -> Value {
    let done = wait_until(Duration::from_secs(60), || {
        d.rotation(id)["state"] == "Completed"
    });
    assert!(
        done,
        "rotation did not complete: {}\nlog:\n{}",
        d.json(&["rotation", "show", id, "--json"]),
        d.log()
    );
    d.json(&["rotation", "show", id, "--json"])
}

/// The file sink's secret-id for `ci`, and the key id it names.
fn sink_secret(d: &Daemon) -> (String, String) {
    let v = d.sink("ci").expect("file sink");
    (
        v["secret"].as_str().unwrap().to_string(),
        v["key_id"].as_str().unwrap().to_string(),
    )
}

#[test]
fn the_daemon_rotates_a_roles_secret_id_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let (bao, _) = world(tmp.path());
    // The role already has a secret-id in use: keyrot adopts it.
    let (old_secret, old_acc) = root_secret_id(&bao, "ci");
    let mut d = daemon(&bao);
    d.start();
    let old = live_key(&d);
    assert_eq!(old, format!("ci/{old_acc}"));

    let id = rotate(&d);
    let r = wait_completed(&d, &id);
    assert_eq!(r["old_key_id"], old.as_str(), "{r}");
    assert!(r["old_revoked_at"].is_string(), "{r}");
    let new = r["new_key"]["id"].as_str().unwrap().to_string();
    let (secret, key_id) = sink_secret(&d);
    assert_eq!(key_id, new);
    // The new secret-id logs in, the old one no longer does, and the role
    // has exactly one live secret-id: the new one, tagged with the rotation.
    assert_eq!(login(&bao, "ci", &secret), 200);
    assert_eq!(login(&bao, "ci", &old_secret), 400);
    let (_, new_acc) = new.split_once('/').unwrap();
    assert_eq!(accessors(&bao, "ci"), [new_acc.to_string()]);
    let entry = lookup(&bao, "ci", new_acc).unwrap();
    assert_eq!(entry["metadata"]["keyrot_rotation"], id.as_str(), "{entry}");
    assert_eq!(entry["secret_id_ttl"], 3600, "{entry}");
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
        ]
    );
    // The status shows the new key after the next sync, with its expiry.
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(15)).unwrap().success());
    d.start();
    assert_eq!(live_key(&d), new);
    let k = &d.json(&["status", "--json"])["keys"][0];
    assert!(k["expires_at"].is_string(), "{k}");
    // No secret-id in keyrot's own files but the sink.
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(15)).unwrap().success());
    for (path, bytes) in common::all_files(&d.dir) {
        let rel = path.strip_prefix(&d.dir).unwrap();
        if rel.starts_with("out") || rel == Path::new("keyrot-secret-id") {
            continue;
        }
        let hay = String::from_utf8_lossy(&bytes);
        assert_clean(&hay, &[&secret, &old_secret]);
    }
}

#[cfg(feature = "failpoints")]
#[test]
fn a_crash_right_after_issue_destroys_the_orphan_and_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let (bao, _) = world(tmp.path());
    let mut d = daemon(&bao);
    // No secret-id yet: keyrot issues the first one.
    d.start();
    let old = live_key(&d);
    let (old_secret, _) = sink_secret(&d);
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(15)).unwrap().success());

    d.env = vec![("KEYROT_FAILPOINTS".into(), "after:issue=abort".into())];
    d.start();
    let id = rotate(&d);
    let st = d
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("failpoint never hit; log:\n{}", d.log()));
    assert!(!st.success());
    // OpenBao holds a secret-id tagged with the rotation whose secret
    // keyrot never committed.
    let orphans: Vec<String> = accessors(&bao, "ci")
        .into_iter()
        .filter(|a| {
            lookup(&bao, "ci", a).is_some_and(|e| e["metadata"]["keyrot_rotation"] == id.as_str())
        })
        .collect();
    assert_eq!(orphans.len(), 1, "{:?}", accessors(&bao, "ci"));
    let orphan = orphans[0].clone();

    d.env.clear();
    d.start();
    let r = wait_completed(&d, &id);
    assert_eq!(r["old_key_id"], old.as_str());
    let new = r["new_key"]["id"].as_str().unwrap().to_string();
    let (_, new_acc) = new.split_once('/').unwrap();
    assert_ne!(
        new_acc, orphan,
        "the orphan's secret was lost: it must not be used"
    );
    let note = r["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["to"] == "Issued")
        .unwrap()["note"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        note.contains(&format!("revoked orphan(s) ci/{orphan}")),
        "{note}"
    );
    // The orphan is destroyed, the old one too: one live secret-id, the new.
    assert_eq!(lookup(&bao, "ci", &orphan), None);
    assert_eq!(accessors(&bao, "ci"), [new_acc.to_string()]);
    let (secret, key_id) = sink_secret(&d);
    assert_eq!(key_id, new);
    assert_eq!(login(&bao, "ci", &secret), 200);
    assert_eq!(login(&bao, "ci", &old_secret), 400);
    // The interrupted issue's secret-id belonged to a rotation in flight:
    // never an orphan (recovery dealt with it).
    assert!(!d.log().contains("orphan key:"), "{}", d.log());
}

/// A secret-id of role `ci` made behind keyrot's back, carrying keyrot's
/// tag for a rotation this store never saw (another installation's): the
/// next sync lists it as an orphan beside the slot's own secret-id, and
/// `keyrot orphans --revoke` destroys it at OpenBao and nothing else. The
/// crash test above shows the other side: a secret-id of an issue in
/// flight is no orphan (the restart completes with it destroyed by
/// recovery, and the sweep never lists it).
#[test]
fn a_tagged_secret_id_no_rotation_owns_is_an_orphan_until_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    let (bao, _) = world(tmp.path());
    let mut d = daemon(&bao);
    d.start();
    let current = live_key(&d);
    let foreign = "0190bbbb-0000-7000-8000-00000000f00d";
    let meta = serde_json::json!({ "keyrot_rotation": foreign }).to_string();
    let body = serde_json::json!({ "metadata": meta }).to_string();
    let v = root(&bao, "POST", "auth/approle/role/ci/secret-id", Some(&body));
    let planted = v["data"]["secret_id_accessor"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        d.json(&["orphans", "--json"])["orphans"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    d.signal(libc::SIGHUP);
    let mut listed = Value::Null;
    assert!(
        wait_until(Duration::from_secs(30), || {
            listed = d.json(&["orphans", "--json"]);
            listed["orphans"].as_array().is_some_and(|a| !a.is_empty())
        }),
        "no orphan listed:\n{}",
        d.log()
    );
    let orphans = listed["orphans"].as_array().unwrap();
    assert_eq!(orphans.len(), 1, "{listed}");
    // A secret-id's key id is `role/accessor`.
    assert_eq!(orphans[0]["id"], format!("ci/{planted}"), "{listed}");
    assert_eq!(orphans[0]["rotation"], foreign);
    assert_eq!(listed["providers"][0]["swept"], true);
    assert!(lookup(&bao, "ci", &planted).is_some(), "revoked unasked");

    let out = d.json(&["orphans", "--revoke", "--json"]);
    assert_eq!(out["outcomes"][0]["revoked"], true, "{out}");
    assert!(lookup(&bao, "ci", &planted).is_none(), "not destroyed");
    let own = current.strip_prefix("ci/").unwrap_or(&current);
    assert!(lookup(&bao, "ci", own).is_some(), "the slot's key went too");
    assert_eq!(live_key(&d), current);
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(15)).is_some());
}
