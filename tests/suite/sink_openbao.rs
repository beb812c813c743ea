//! The `openbao` sink against a real OpenBao (`bao server -dev`, one per
//! test): writes that keep the secret's other fields and the operator's
//! metadata, idempotent puts (no new version), check-and-set against a
//! concurrent writer, token auth (renewal, a token replaced at its
//! source), AppRole auth (expiry, revocation, a policy without `patch`),
//! namespaces, TLS with `ca_file`, the errors an operator sees, and that no
//! token or secret reaches a message or `Debug`.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::peers::{self, Peer, bao_api, curl};
use common::wait_until;
use jiff::SignedDuration;
use keyrot_config::{OpenBaoSinkConfig, SecretRef, VaultAuth};
use keyrot_core::crypto::sha256_hex;
use keyrot_core::error::CallError;
use keyrot_peers::sink::openbao::OpenBaoSink;
use keyrot_peers::sink::{Sink, SinkTarget};
use secrecy::SecretString;
use serde_json::Value;

const VALUE: &str = "ATSBX-bao-value-5d1e9c0b7a3f4e2d";
const VALUE_2: &str = "ATSBX-bao-value-second-88c2e4a1";
/// Where the sink writes for [`target`] (path template `keyrot/{slot}`).
const LOCATION: &str = "keyrot/local_ci";

/// The target of rotation `rotation` issuing key `key_id`.
fn target(rotation: &str, key_id: &str) -> SinkTarget {
    SinkTarget {
        slot: "local/ci".into(),
        provider: "local".into(),
        key_name: "ci".into(),
        key_id: key_id.into(),
        rotation_id: rotation.into(),
        expires_at: Some("2027-03-01T12:00:00Z".parse().unwrap()),
        probe: false,
    }
}

/// `secret` in a 0600 file under `dir`, as a reference.
fn secret_file(dir: &Path, name: &str, secret: &str) -> SecretRef {
    let path = dir.join(name);
    fs::write(&path, format!("{secret}\n")).unwrap();
    SecretRef::File(path)
}

/// Sink settings for the server at `address`.
fn config(address: &str, auth: VaultAuth) -> OpenBaoSinkConfig {
    OpenBaoSinkConfig {
        flavor: "openbao",
        address: address.to_string(),
        mount: "secret".into(),
        path: "keyrot/{slot}".into(),
        field: "secret".into(),
        namespace: None,
        auth,
        ca_file: None,
        timeout: SignedDuration::from_secs(10),
    }
}

/// A sink with token auth, the token in a file under `dir`.
fn token_sink(bao: &Peer, dir: &Path, token: &str) -> OpenBaoSink {
    let auth = VaultAuth::Token(secret_file(dir, "token", token));
    OpenBaoSink::new("bao", &config(&bao.url, auth), None).unwrap()
}

/// A root call to `url` with an optional namespace; (status, JSON body or
/// Null).
fn api(url: &str, method: &str, path: &str, body: Option<&str>, ns: Option<&str>) -> (u16, Value) {
    let full = format!("{url}/v1/{path}");
    let ns_header = ns.map(|n| format!("X-Vault-Namespace: {n}"));
    let mut args = vec![
        "-X",
        method,
        "-H",
        "X-Vault-Token: root",
        "-w",
        "\n%{http_code}",
    ];
    if let Some(h) = &ns_header {
        args.extend(["-H", h.as_str()]);
    }
    if let Some(b) = body {
        args.extend(["-H", "Content-Type: application/json", "-d", b]);
    }
    args.push(full.as_str());
    let out = curl(&args);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// A root call that must succeed; its JSON body.
fn root(bao: &Peer, method: &str, path: &str, body: Option<&str>) -> Value {
    let (code, text) = bao_api(bao, method, path, body);
    assert!((200..300).contains(&code), "{method} {path}: {code} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// `secret/data/keyrot/local_ci` as root: the current fields.
fn kv_data(bao: &Peer) -> Value {
    root(bao, "GET", &format!("secret/data/{LOCATION}"), None)["data"]["data"].clone()
}

/// `secret/metadata/keyrot/local_ci` as root.
fn kv_metadata(bao: &Peer) -> Value {
    root(bao, "GET", &format!("secret/metadata/{LOCATION}"), None)["data"].clone()
}

/// Policy `name` on `secret/`; `patch` on metadata when `patch`.
fn kv_policy(bao: &Peer, name: &str, patch: bool) {
    let meta_caps = if patch {
        r#"[\"read\", \"update\", \"patch\"]"#
    } else {
        r#"[\"read\", \"update\"]"#
    };
    let policy = format!(
        r#"{{"policy":"path \"secret/data/*\" {{ capabilities = [\"create\", \"read\", \"update\"] }}\npath \"secret/metadata/*\" {{ capabilities = {meta_caps} }}"}}"#
    );
    root(
        bao,
        "PUT",
        &format!("sys/policies/acl/{name}"),
        Some(&policy),
    );
}

/// A new token with `policies` and `ttl`; its value.
fn create_token(bao: &Peer, policies: &[&str], ttl: &str) -> String {
    let body = serde_json::json!({"policies": policies, "ttl": ttl, "explicit_max_ttl": "1h"});
    let v = root(bao, "POST", "auth/token/create", Some(&body.to_string()));
    v["auth"]["client_token"].as_str().unwrap().to_string()
}

/// A deadline for a polling loop: [`Poll::tick`] waits 100 ms, or fails the
/// test with `what` once the deadline has passed.
struct Poll {
    deadline: Instant,
    what: &'static str,
}

impl Poll {
    fn new(limit: Duration, what: &'static str) -> Poll {
        Poll {
            deadline: Instant::now() + limit,
            what,
        }
    }

    async fn tick(&self) {
        assert!(Instant::now() < self.deadline, "{}", self.what);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts `text` holds none of `secrets`.
fn assert_clean(text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "a secret leaked into: {text}");
    }
}

fn hash(s: &str) -> Option<String> {
    Some(sha256_hex(s.as_bytes()))
}

#[tokio::test]
async fn token_auth_writes_once_keeps_other_fields_and_tags_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let bao = peers::bao(&tmp.path().join("bao"));
    // The operator keeps other fields beside keyrot's, and settings of their own.
    root(
        &bao,
        "POST",
        &format!("secret/data/{LOCATION}"),
        Some(r#"{"data":{"user":"svc-ci","secret":"old"}}"#),
    );
    root(
        &bao,
        "POST",
        &format!("secret/metadata/{LOCATION}"),
        Some(r#"{"max_versions":7,"custom_metadata":{"owner":"ops"}}"#),
    );
    let sink = token_sink(&bao, tmp.path(), "root");
    assert_eq!(sink.name(), "bao");
    assert_eq!(sink.kind(), "openbao");
    let secret = SecretString::from(VALUE);
    let t = target("r1", "lk_1");

    assert_eq!(sink.put(&t, &secret).await.unwrap().as_deref(), Some("v2"));
    assert_eq!(sink.read_back(&t).await.unwrap(), hash(VALUE));
    let data = kv_data(&bao);
    assert_eq!(data["secret"], VALUE);
    assert_eq!(data["user"], "svc-ci", "other fields survive: {data}");
    let meta = kv_metadata(&bao);
    assert_eq!(meta["current_version"], 2);
    assert_eq!(meta["max_versions"], 7, "operator settings survive: {meta}");
    let custom = &meta["custom_metadata"];
    assert_eq!(custom["owner"], "ops", "{meta}");
    assert_eq!(custom["keyrot_key_id"], "lk_1", "{meta}");
    assert_eq!(custom["keyrot_rotation_id"], "r1", "{meta}");
    assert_eq!(
        custom["keyrot_expires_at"], "2027-03-01T12:00:00Z",
        "{meta}"
    );
    assert_eq!(custom["keyrot_provider"], "local", "{meta}");
    assert_eq!(custom["keyrot_slot"], "local/ci", "{meta}");

    // The same rotation again: no new version, same answer.
    assert_eq!(sink.put(&t, &secret).await.unwrap().as_deref(), Some("v2"));
    assert_eq!(kv_metadata(&bao)["current_version"], 2);
    // A sink built afresh (after a restart) agrees.
    let again = token_sink(&bao, tmp.path(), "root");
    assert_eq!(again.put(&t, &secret).await.unwrap().as_deref(), Some("v2"));
    assert_eq!(kv_metadata(&bao)["current_version"], 2);

    // The next rotation writes a new version and retags.
    let t2 = target("r2", "lk_2");
    let v = sink.put(&t2, &SecretString::from(VALUE_2)).await.unwrap();
    assert_eq!(v.as_deref(), Some("v3"));
    assert_eq!(sink.read_back(&t2).await.unwrap(), hash(VALUE_2));
    let meta = kv_metadata(&bao);
    assert_eq!(meta["custom_metadata"]["keyrot_key_id"], "lk_2");
    assert_eq!(meta["custom_metadata"]["keyrot_rotation_id"], "r2");
    assert_eq!(meta["custom_metadata"]["owner"], "ops");
    assert_eq!(kv_data(&bao)["user"], "svc-ci");

    // Nothing there, or no such field: None.
    let elsewhere = SinkTarget {
        slot: "local/other".into(),
        ..t.clone()
    };
    assert_eq!(sink.read_back(&elsewhere).await.unwrap(), None);
    root(
        &bao,
        "POST",
        "secret/data/keyrot/local_other",
        Some(r#"{"data":{"user":"x"}}"#),
    );
    assert_eq!(sink.read_back(&elsewhere).await.unwrap(), None);

    // A probe writes beside the key's secret, never on it.
    let probe = SinkTarget {
        probe: true,
        ..t.clone()
    };
    sink.put(&probe, &SecretString::from("probe-value"))
        .await
        .unwrap();
    let v = root(&bao, "GET", "secret/data/keyrot/keyrot-probe", None);
    assert_eq!(v["data"]["data"]["secret"], "probe-value");
    assert_eq!(kv_data(&bao)["secret"], VALUE_2);
}

#[tokio::test]
async fn a_secret_deleted_by_the_operator_is_written_again() {
    let tmp = tempfile::tempdir().unwrap();
    let bao = peers::bao(&tmp.path().join("bao"));
    let sink = token_sink(&bao, tmp.path(), "root");
    let t = target("r1", "lk_1");
    let secret = SecretString::from(VALUE);
    assert_eq!(sink.put(&t, &secret).await.unwrap().as_deref(), Some("v1"));
    // Soft delete of the current version: the read answers 404 with its number.
    root(&bao, "DELETE", &format!("secret/data/{LOCATION}"), None);
    assert_eq!(sink.read_back(&t).await.unwrap(), None);
    assert_eq!(sink.put(&t, &secret).await.unwrap().as_deref(), Some("v2"));
    assert_eq!(kv_data(&bao)["secret"], VALUE);
}

#[cfg(feature = "failpoints")]
#[tokio::test]
async fn a_concurrent_write_is_detected_by_check_and_set_and_never_overwritten() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let tmp = tempfile::tempdir().unwrap();
    let bao = peers::bao(&tmp.path().join("bao"));
    root(
        &bao,
        "POST",
        &format!("secret/data/{LOCATION}"),
        Some(r#"{"data":{"secret":"old"}}"#),
    );
    let mut sink = token_sink(&bao, tmp.path(), "root");
    // Between keyrot's read (version 1) and its write, someone else writes
    // version 2, once.
    let url = bao.url.clone();
    let armed = Arc::new(AtomicBool::new(true));
    let hook_armed = Arc::clone(&armed);
    sink.set_before_write(move || {
        if hook_armed.swap(false, Ordering::SeqCst) {
            let (code, _) = api(
                &url,
                "POST",
                &format!("secret/data/{LOCATION}"),
                Some(r#"{"data":{"secret":"theirs","user":"other-writer"}}"#),
                None,
            );
            assert_eq!(code, 200);
        }
    });
    let t = target("r1", "lk_1");
    let secret = SecretString::from(VALUE);
    let err = sink.put(&t, &secret).await.unwrap_err();
    assert!(err.transient, "{err}");
    assert!(err.message.starts_with("sink \"bao\": write secret/data/keyrot/local_ci (check-and-set version 1): a concurrent writer changed the secret"), "{err}");
    assert!(err.message.contains("retry"), "{err}");
    assert_clean(&err.message, &[VALUE]);
    assert!(!armed.load(Ordering::SeqCst), "the hook ran");
    // The other writer's version stands.
    assert_eq!(kv_data(&bao)["secret"], "theirs");
    assert_eq!(kv_metadata(&bao)["current_version"], 2);

    // The retry reads again and writes on top of it, keeping its fields.
    assert_eq!(sink.put(&t, &secret).await.unwrap().as_deref(), Some("v3"));
    let data = kv_data(&bao);
    assert_eq!(data["secret"], VALUE);
    assert_eq!(data["user"], "other-writer");
}

#[tokio::test]
async fn token_auth_renews_a_renewable_token_before_it_expires() {
    let tmp = tempfile::tempdir().unwrap();
    let bao = peers::bao(&tmp.path().join("bao"));
    kv_policy(&bao, "keyrot", true);
    let created = Instant::now();
    let token = create_token(&bao, &["keyrot"], "9s");
    let sink = token_sink(&bao, tmp.path(), &token);
    let t = target("r1", "lk_1");
    sink.put(&t, &SecretString::from(VALUE)).await.unwrap();
    let lookup = serde_json::json!({ "token": token }).to_string();
    let before = root(&bao, "POST", "auth/token/lookup", Some(&lookup));
    assert!(before["data"]["last_renewal_time"].is_null(), "{before}");
    // The sink is used until OpenBao records a renewal: every read works,
    // so the renewal came while the token was alive; the token's 9 s must
    // pass for it, so the poll's deadline is well past them.
    let poll = Poll::new(Duration::from_secs(30), "the sink never renewed its token");
    let after = loop {
        assert!(sink.read_back(&t).await.unwrap().is_some());
        let v = root(&bao, "POST", "auth/token/lookup", Some(&lookup));
        if v["data"]["last_renewal_time"].is_number() {
            break v;
        }
        poll.tick().await;
    };
    // Renewed only once less than a third of the TTL remained: 6 s in, or
    // from 5 s with OpenBao's TTL in whole seconds.
    let renewed_after = created.elapsed();
    assert!(
        renewed_after >= Duration::from_secs(5),
        "renewed {renewed_after:?} into a 9 s TTL, before two thirds of it: {after}"
    );
}

#[tokio::test]
async fn a_token_replaced_at_its_source_is_read_again_after_a_403() {
    let tmp = tempfile::tempdir().unwrap();
    let bao = peers::bao(&tmp.path().join("bao"));
    kv_policy(&bao, "keyrot", true);
    let old = create_token(&bao, &["keyrot"], "1h");
    let sink = token_sink(&bao, tmp.path(), &old);
    let t = target("r1", "lk_1");
    assert_eq!(
        sink.put(&t, &SecretString::from(VALUE))
            .await
            .unwrap()
            .as_deref(),
        Some("v1")
    );
    // The operator revokes it and puts a new one in the file.
    let revoke = serde_json::json!({ "token": old }).to_string();
    root(&bao, "POST", "auth/token/revoke", Some(&revoke));
    let new = create_token(&bao, &["keyrot"], "1h");
    secret_file(tmp.path(), "token", &new);
    let t2 = target("r2", "lk_2");
    assert_eq!(
        sink.put(&t2, &SecretString::from(VALUE_2))
            .await
            .unwrap()
            .as_deref(),
        Some("v2")
    );
    assert_eq!(kv_data(&bao)["secret"], VALUE_2);
}

/// AppRole `role` with `token_ttl` (and a maximum TTL of 1 m for a TTL in
/// seconds, 2 h otherwise); its role id and a secret id (in a file under
/// `dir`).
fn approle(bao: &Peer, dir: &Path, role: &str, token_ttl: &str) -> VaultAuth {
    let max_ttl = if token_ttl.ends_with('s') { "1m" } else { "2h" };
    let body = serde_json::json!({
        "token_ttl": token_ttl,
        "token_max_ttl": max_ttl,
        "token_policies": ["keyrot-nopatch"],
    });
    root(
        bao,
        "POST",
        &format!("auth/approle/role/{role}"),
        Some(&body.to_string()),
    );
    let v = root(
        bao,
        "GET",
        &format!("auth/approle/role/{role}/role-id"),
        None,
    );
    let role_id = v["data"]["role_id"].as_str().unwrap().to_string();
    let v = root(
        bao,
        "POST",
        &format!("auth/approle/role/{role}/secret-id"),
        None,
    );
    let secret_id = v["data"]["secret_id"].as_str().unwrap();
    VaultAuth::AppRole {
        mount: "approle".into(),
        role_id,
        secret_id: secret_file(dir, &format!("{role}-secret-id"), secret_id),
    }
}

/// The tokens AppRole `role` logged in with that OpenBao still knows (root's
/// `lookup-accessor` of each).
fn approle_tokens(bao: &Peer, role: &str) -> Vec<Value> {
    let list = root(bao, "GET", "auth/token/accessors?list=true", None);
    list["data"]["keys"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|a| {
            let body = serde_json::json!({ "accessor": a }).to_string();
            let (code, text) = bao_api(bao, "POST", "auth/token/lookup-accessor", Some(&body));
            let v: Value = serde_json::from_str(&text).ok()?;
            (code == 200).then(|| v["data"].clone())
        })
        .filter(|tok| tok["meta"]["role_name"] == role)
        .collect()
}

/// The accessors of `tokens`.
fn accessors(tokens: &[Value]) -> Vec<Value> {
    tokens.iter().map(|tok| tok["accessor"].clone()).collect()
}

/// Whether a token (as `lookup-accessor` shows it) has not expired yet.
fn alive(tok: &Value) -> bool {
    match tok["expire_time"].as_str() {
        Some(at) => at.parse::<jiff::Timestamp>().unwrap() > common::wall_now(),
        None => true,
    }
}

#[tokio::test]
async fn approle_logs_in_renews_and_logs_in_again_after_expiry_and_revocation() {
    let tmp = tempfile::tempdir().unwrap();
    let bao = peers::bao(&tmp.path().join("bao"));
    root(
        &bao,
        "POST",
        "sys/auth/approle",
        Some(r#"{"type":"approle"}"#),
    );
    // No `patch` on metadata: custom metadata goes through POST instead.
    kv_policy(&bao, "keyrot-nopatch", false);
    root(
        &bao,
        "POST",
        &format!("secret/metadata/{LOCATION}"),
        Some(r#"{"max_versions":4,"custom_metadata":{"owner":"ops"}}"#),
    );
    let short = approle(&bao, tmp.path(), "short", "2s");
    let sink = OpenBaoSink::new("bao", &config(&bao.url, short), None).unwrap();
    let t = target("r1", "lk_1");
    let secret = SecretString::from(VALUE);
    assert_eq!(sink.put(&t, &secret).await.unwrap().as_deref(), Some("v1"));
    let meta = kv_metadata(&bao);
    assert_eq!(meta["custom_metadata"]["keyrot_key_id"], "lk_1", "{meta}");
    assert_eq!(meta["custom_metadata"]["owner"], "ops", "{meta}");
    assert_eq!(meta["max_versions"], 4, "{meta}");
    let logged_in = accessors(&approle_tokens(&bao, "short"));
    assert!(!logged_in.is_empty());
    // Used past two thirds of the 2 s TTL, the sink renews its token (or
    // logs in again if it came late); every read meanwhile works.
    let poll = Poll::new(Duration::from_secs(30), "the sink never renewed its token");
    loop {
        assert_eq!(sink.read_back(&t).await.unwrap(), hash(VALUE));
        let tokens = approle_tokens(&bao, "short");
        if tokens.iter().any(|tok| {
            !logged_in.contains(&tok["accessor"]) || tok["last_renewal_time"].is_number()
        }) {
            break;
        }
        poll.tick().await;
    }
    // Once no token of that role is alive at OpenBao any more, the next
    // call logs in again.
    let seen = accessors(&approle_tokens(&bao, "short"));
    let poll = Poll::new(Duration::from_secs(30), "the AppRole token never expired");
    while approle_tokens(&bao, "short").iter().any(alive) {
        poll.tick().await;
    }
    let t2 = target("r2", "lk_2");
    let v = sink.put(&t2, &SecretString::from(VALUE_2)).await.unwrap();
    assert_eq!(v.as_deref(), Some("v2"));
    let now = approle_tokens(&bao, "short");
    assert!(
        now.iter()
            .any(|tok| !seen.contains(&tok["accessor"]) && alive(tok)),
        "no new login: {now:?}"
    );
    assert_eq!(
        kv_metadata(&bao)["custom_metadata"]["keyrot_key_id"],
        "lk_2"
    );

    // A long-lived token revoked from outside: the next call logs in again.
    let long = approle(&bao, tmp.path(), "long", "1h");
    let sink = OpenBaoSink::new("bao", &config(&bao.url, long), None).unwrap();
    assert_eq!(sink.read_back(&t).await.unwrap(), hash(VALUE_2));
    root(
        &bao,
        "PUT",
        "sys/leases/revoke-prefix/auth/approle/login",
        None,
    );
    let t3 = target("r3", "lk_3");
    let v = sink.put(&t3, &secret).await.unwrap();
    assert_eq!(v.as_deref(), Some("v3"));
    assert_eq!(kv_data(&bao)["secret"], VALUE);
}

#[tokio::test]
async fn approle_with_a_wrong_secret_id_is_a_permanent_error_with_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let bao = peers::bao(&tmp.path().join("bao"));
    root(
        &bao,
        "POST",
        "sys/auth/approle",
        Some(r#"{"type":"approle"}"#),
    );
    kv_policy(&bao, "keyrot-nopatch", false);
    let VaultAuth::AppRole { role_id, .. } = approle(&bao, tmp.path(), "r", "1h") else {
        unreachable!()
    };
    let wrong = "00000000-dead-beef-0000-000000000000";
    let auth = VaultAuth::AppRole {
        mount: "approle".into(),
        role_id,
        secret_id: secret_file(tmp.path(), "wrong-secret-id", wrong),
    };
    let sink = OpenBaoSink::new("bao", &config(&bao.url, auth), None).unwrap();
    let err = sink
        .put(&target("r1", "lk_1"), &SecretString::from(VALUE))
        .await
        .unwrap_err();
    assert!(!err.transient, "{err}");
    assert!(
        err.message
            .starts_with("sink \"bao\": log in with AppRole at auth/approle/login: OpenBao answered 400 Bad Request"),
        "{err}"
    );
    assert!(
        err.message.contains("check `role_id` and `secret_id`"),
        "{err}"
    );
    assert_clean(&err.message, &[wrong, VALUE]);
}

#[tokio::test]
async fn a_namespace_is_sent_with_every_call() {
    let tmp = tempfile::tempdir().unwrap();
    let bao = peers::bao(&tmp.path().join("bao"));
    root(&bao, "POST", "sys/namespaces/team1", None);
    let (code, v) = api(
        &bao.url,
        "POST",
        "sys/mounts/kv",
        Some(r#"{"type":"kv-v2"}"#),
        Some("team1"),
    );
    assert!((200..300).contains(&code), "{code} {v}");
    let mut cfg = config(
        &bao.url,
        VaultAuth::Token(secret_file(tmp.path(), "token", "root")),
    );
    cfg.namespace = Some("team1".into());
    cfg.mount = "kv".into();
    let sink = OpenBaoSink::new("bao", &cfg, None).unwrap();
    let t = target("r1", "lk_1");
    // The KV engine exists in the namespace only: without the header, the
    // write would find no `kv` mount.
    let (code, _) = api(&bao.url, "GET", "sys/mounts/kv", None, None);
    assert_ne!(code, 200, "no kv mount in the root namespace");
    let v = sink.put(&t, &SecretString::from(VALUE)).await.unwrap();
    assert_eq!(v.as_deref(), Some("v1"));
    assert_eq!(sink.read_back(&t).await.unwrap(), hash(VALUE));
    let (code, v) = api(
        &bao.url,
        "GET",
        &format!("kv/data/{LOCATION}"),
        None,
        Some("team1"),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"]["data"]["secret"], VALUE);
    let (code, v) = api(
        &bao.url,
        "GET",
        &format!("kv/metadata/{LOCATION}"),
        None,
        Some("team1"),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"]["custom_metadata"]["keyrot_key_id"], "lk_1");
}

/// `bao server -dev -dev-tls`: HTTPS with a CA written to `dir`; killed on
/// drop.
struct TlsBao {
    /// `https://127.0.0.1:PORT`.
    url: String,
    /// The CA certificate that signed the server's.
    ca: PathBuf,
    /// The server.
    child: Child,
}

impl TlsBao {
    fn start(dir: &Path) -> TlsBao {
        fs::create_dir_all(dir).unwrap();
        let port = peers::free_port();
        let certs = dir.join("certs");
        fs::create_dir_all(&certs).unwrap();
        let log = fs::File::create(dir.join("openbao-tls.log")).unwrap();
        let child = Command::new(peers::peer_bin("bao"))
            .args([
                "server",
                "-dev",
                "-dev-tls",
                &format!("-dev-tls-cert-dir={}", certs.display()),
                "-dev-root-token-id=root",
                &format!("-dev-listen-address=127.0.0.1:{port}"),
            ])
            .env("HOME", dir)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let server = TlsBao {
            url: format!("https://127.0.0.1:{port}"),
            ca: certs.join("vault-ca.pem"),
            child,
        };
        let health = format!("{}/v1/sys/health", server.url);
        let ca = server.ca.display().to_string();
        let up = wait_until(Duration::from_secs(60), || {
            server.ca.is_file() && {
                let out = curl(&[
                    "--cacert",
                    &ca,
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    &health,
                ]);
                String::from_utf8_lossy(&out.stdout).trim() == "200"
            }
        });
        assert!(
            up,
            "OpenBao (TLS) did not come up; log:\n{}",
            fs::read_to_string(dir.join("openbao-tls.log")).unwrap_or_default()
        );
        server
    }
}

impl Drop for TlsBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn tls_with_ca_file_works_and_without_it_fails_readably() {
    let tmp = tempfile::tempdir().unwrap();
    let bao = TlsBao::start(&tmp.path().join("bao"));
    let token = secret_file(tmp.path(), "token", "root");
    let mut cfg = config(&bao.url, VaultAuth::Token(token));
    cfg.ca_file = Some(bao.ca.clone());
    let sink = OpenBaoSink::new("bao", &cfg, None).unwrap();
    let t = target("r1", "lk_1");
    let v = sink.put(&t, &SecretString::from(VALUE)).await.unwrap();
    assert_eq!(v.as_deref(), Some("v1"));
    assert_eq!(sink.read_back(&t).await.unwrap(), hash(VALUE));

    cfg.ca_file = None;
    let untrusting = OpenBaoSink::new("bao", &cfg, None).unwrap();
    let err = untrusting
        .put(&t, &SecretString::from(VALUE))
        .await
        .unwrap_err();
    assert!(err.transient, "{err}");
    assert!(err.message.starts_with("sink \"bao\": "), "{err}");
    let lower = err.message.to_lowercase();
    assert!(lower.contains("certificate"), "{err}");
    assert!(err.message.contains("`ca_file`"), "{err}");
    assert_clean(&err.message, &[VALUE]);
}

#[tokio::test]
async fn a_wrong_token_is_permanent_with_a_hint_and_a_server_down_is_transient() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bao = peers::bao(&tmp.path().join("bao"));
    let wrong = "s.WrongTokenValue0123456789";
    let sink = token_sink(&bao, tmp.path(), wrong);
    let t = target("r1", "lk_1");
    let secret = SecretString::from(VALUE);
    let err = sink.put(&t, &secret).await.unwrap_err();
    assert!(!err.transient, "{err}");
    assert_eq!(
        err.message,
        "sink \"bao\": read secret/data/keyrot/local_ci: OpenBao answered 403 Forbidden: permission denied \
         (the token is invalid, expired or revoked, or its policies do not allow this call; keyrot needs \
         read, create and update on secret/data/keyrot/local_ci, and patch (or read and update) on secret/metadata/keyrot/local_ci)"
    );

    // A KV mount that does not exist.
    let mut cfg = config(
        &bao.url,
        VaultAuth::Token(secret_file(tmp.path(), "root-token", "root")),
    );
    cfg.mount = "nope".into();
    let no_mount = OpenBaoSink::new("bao", &cfg, None).unwrap();
    let err = no_mount.put(&t, &secret).await.unwrap_err();
    assert!(!err.transient, "{err}");
    assert!(
        err.message
            .contains("is `mount` \"nope\" a KV version 2 secrets engine?"),
        "{err}"
    );

    // The server goes away.
    let good = token_sink(&bao, tmp.path(), "root");
    good.put(&t, &secret).await.unwrap();
    bao.stop();
    let err = good.put(&t, &secret).await.unwrap_err();
    assert!(err.transient, "{err}");
    assert!(err.message.starts_with("sink \"bao\": "), "{err}");
    let err = good.read_back(&t).await.unwrap_err();
    assert!(err.transient, "{err}");
}

#[tokio::test]
async fn no_token_or_secret_reaches_a_message_or_debug() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bao = peers::bao(&tmp.path().join("bao"));
    // A token that may read but not write.
    root(
        &bao,
        "PUT",
        "sys/policies/acl/reader",
        Some(r#"{"policy":"path \"secret/data/*\" { capabilities = [\"read\"] }"}"#),
    );
    let token = create_token(&bao, &["reader"], "1h");
    let sink = token_sink(&bao, tmp.path(), &token);
    let t = target("r1", "lk_1");
    let secret = SecretString::from(VALUE);
    let mut messages: Vec<CallError> = Vec::new();
    messages.push(sink.put(&t, &secret).await.unwrap_err());
    let shown = format!("{sink:?}");
    assert!(shown.contains("OpenBaoSink"), "{shown}");
    assert!(shown.contains("token from file"), "{shown}");
    assert_clean(&shown, &[&token, VALUE]);
    bao.stop();
    messages.push(sink.put(&t, &secret).await.unwrap_err());
    messages.push(sink.read_back(&t).await.unwrap_err());
    for e in &messages {
        assert_clean(&e.message, &[&token, VALUE]);
        assert_clean(&format!("{e:?}"), &[&token, VALUE]);
    }
    assert!(
        messages[0].message.starts_with(
            "sink \"bao\": write secret/data/keyrot/local_ci (check-and-set version 0): \
             OpenBao answered 403 Forbidden: permission denied (the token is invalid"
        ),
        "{}",
        messages[0]
    );
    assert!(messages[1].transient, "{}", messages[1]);
}
