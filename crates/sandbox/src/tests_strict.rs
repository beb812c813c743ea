//! End-to-end tests of the strict behaviours (`--no-idempotency`,
//! `--absent-old-expiry revoke`, `--seal-psk`, `--strict`), of the
//! `GET /_sandbox/keys` view, duplicate names and `lastActiveAt`. The
//! harness is in `tests.rs`; lost answers are in `tests_lose.rs`.

use std::sync::Arc;

use jiff::SignedDuration;
use serde_json::{Value, json};

use super::tests::{OTHER_PSK, PSK, Running, open_secret, start, start_with, t0, t0_plus_days};
use super::*;
use keyrot_core::clock::ManualClock;

impl Running {
    /// `GET /_sandbox/keys`: every key of every org.
    pub async fn admin_keys(&self) -> Vec<Value> {
        let resp = self
            .client
            .get(format!("{}/_sandbox/keys", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json::<Value>().await.unwrap()["data"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// The `GET /_sandbox/keys` item with `id`.
    pub async fn admin_key(&self, id: &str) -> Value {
        self.admin_keys()
            .await
            .into_iter()
            .find(|k| k["id"] == id)
            .unwrap()
    }

    /// The last audit entry.
    pub async fn last_audit(&self) -> Value {
        let audit: Value = self
            .client
            .get(format!("{}/_sandbox/audit", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        audit["data"].as_array().unwrap().last().unwrap().clone()
    }

    /// PATCH rotate of `id` as the `keyrot` key, with an `Idempotency-Key`.
    pub async fn rotate_idem(&self, id: &str, key: &str, body: Value) -> reqwest::Response {
        self.client
            .patch(format!("{}/api-keys/rotate/{id}", self.org))
            .bearer_auth(self.secret("keyrot"))
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

/// The `data` of a 200 rotate response.
pub(super) async fn data(resp: reqwest::Response) -> Value {
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["data"].clone()
}

#[tokio::test]
async fn no_idempotency_makes_every_call_a_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start_with(dir.path(), |o| o.no_idempotency = true).await;
    let old = sb.id("ci-bot").to_string();
    let body = json!({"oldKeyExpiresAt": t0_plus_days(2)});
    let first = data(sb.rotate_idem(&old, "rot-1", body.clone()).await).await;
    let again = data(sb.rotate_idem(&old, "rot-1", body.clone()).await).await;
    assert_ne!(first["id"], again["id"]);
    // The header is not even checked.
    let third = data(sb.rotate_idem(&old, "has space", body).await).await;
    assert_ne!(third["id"], again["id"]);
    let made = sb.admin_keys().await;
    assert_eq!(made.len(), 8);
    assert_eq!(made.iter().filter(|k| k["rotatedFrom"] == old).count(), 3);
    let state = std::fs::read_to_string(dir.path().join("state.json")).unwrap();
    assert!(!state.contains("idempotentRotations"));
    sb.stop().await;
}

#[tokio::test]
async fn absent_old_expiry_keep_is_the_default_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start(dir.path(), None).await;
    let old = sb.id("ci-bot").to_string();
    data(sb.rotate(&old, sb.secret("keyrot"), "", json!({})).await).await;
    let key = sb.admin_key(&old).await;
    assert_eq!(key["status"], "ACTIVE");
    assert!(key["revokedAt"].is_null());
    assert_eq!(key["expiresAt"], json!(t0_plus_days(20)));
    let entry = sb.last_audit().await;
    assert_eq!(entry["oldKeyExpiresAtAbsent"], true);
    assert!(entry.get("oldKeyExpiresAtSent").is_none());
    assert!(entry.get("oldKeyRevokedAt").is_none());
    assert_eq!(entry["oldKeyEndsAt"], json!(t0_plus_days(20)));
    sb.stop().await;
}

#[tokio::test]
async fn absent_old_expiry_revoke_ends_the_old_key_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start_with(dir.path(), |o| {
        o.absent_old_expiry = AbsentOldExpiry::Revoke;
    })
    .await;
    sb.clock.advance(SignedDuration::from_hours(1));
    let now = t0() + SignedDuration::from_hours(1);
    let old = sb.id("ci-bot").to_string();
    let body = json!({
        "rotateReason": "scheduled",
        "notifyContacts": false,
        "metadata": {"rotatedBy": "ops@example.com", "initiatedFrom": "CI/CD Automation"}
    });
    let new = data(sb.rotate(&old, sb.secret("keyrot"), "", body).await).await;
    let key = sb.admin_key(&old).await;
    assert_eq!(key["status"], "REVOKED");
    assert_eq!(key["revokedAt"], json!(now));
    let count = format!("{}/api-keys/count", sb.org);
    assert_eq!(sb.get(&count, sb.secret("ci-bot")).await.status(), 401);
    let entry = sb.last_audit().await;
    assert_eq!(entry["action"], "api-key.rotated");
    assert_eq!(entry["newApiKeyId"], new["id"]);
    assert_eq!(entry["oldKeyExpiresAtAbsent"], true);
    assert_eq!(entry["oldKeyRevokedAt"], json!(now));
    assert_eq!(entry["oldKeyEndsAt"], json!(now));
    assert_eq!(entry["rotateReason"], "scheduled");
    assert_eq!(entry["notifyContacts"], false);
    assert_eq!(entry["metadata"]["rotatedBy"], "ops@example.com");
    assert_eq!(entry["pskId"], "test-psk");
    // Sent explicitly, the old key's end is the one asked for.
    let reporting = sb.id("reporting").to_string();
    let end = t0_plus_days(1);
    let body = json!({"oldKeyExpiresAt": end});
    data(sb.rotate(&reporting, sb.secret("keyrot"), "", body).await).await;
    let key = sb.admin_key(&reporting).await;
    assert_eq!(
        (key["status"].clone(), key["expiresAt"].clone()),
        (json!("ACTIVE"), json!(end))
    );
    let entry = sb.last_audit().await;
    assert_eq!(entry["oldKeyExpiresAtAbsent"], false);
    assert_eq!(entry["oldKeyExpiresAtSent"], json!(end));
    assert_eq!(entry["oldKeyEndsAt"], json!(end));
    assert!(entry.get("oldKeyRevokedAt").is_none());
    sb.stop().await;
}

#[tokio::test]
async fn seal_psk_overrides_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start_with(dir.path(), |o| o.seal_psk = Some("other".into())).await;
    let admin = sb.secret("legacy-admin");
    for query in ["?pskId=test-psk", "?pskId=nope", ""] {
        let resp = sb.rotate(sb.id("reporting"), admin, query, json!({})).await;
        let d = data(resp).await;
        assert_eq!(d["encryption"]["pskId"], "other", "{query}");
        let id = d["id"].as_str().unwrap();
        let secret = open_secret(&OTHER_PSK, id, d["encryptedSecret"].as_str().unwrap());
        assert!(secret.starts_with("ATSBX"));
        assert_eq!(sb.last_audit().await["pskId"], "other");
    }
    sb.stop().await;
}

#[tokio::test]
async fn seal_psk_must_name_a_psk() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SandboxOptions {
        state: dir.path().join("state.json"),
        seal_psk: Some("nope".into()),
        ..SandboxOptions::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    let err = serve_listener(listener, opts, clock, std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("--seal-psk \"nope\""), "{err}");
}

#[tokio::test]
async fn strict_turns_on_every_strict_behaviour() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start_with(dir.path(), |o| o.strict = true).await;
    let old = sb.id("ci-bot").to_string();
    // First PSK whatever ?pskId= says; absent oldKeyExpiresAt revokes.
    let resp = sb
        .rotate(&old, sb.secret("keyrot"), "?pskId=other", json!({}))
        .await;
    let d = data(resp).await;
    assert_eq!(d["encryption"]["pskId"], "test-psk");
    open_secret(
        &PSK,
        d["id"].as_str().unwrap(),
        d["encryptedSecret"].as_str().unwrap(),
    );
    assert_eq!(sb.admin_key(&old).await["revokedAt"], json!(t0()));
    // Idempotency-Key is ignored.
    let reporting = sb.id("reporting").to_string();
    let body = json!({"oldKeyExpiresAt": t0_plus_days(1)});
    let a = data(sb.rotate_idem(&reporting, "k", body.clone()).await).await;
    let b = data(sb.rotate_idem(&reporting, "k", body).await).await;
    assert_ne!(a["id"], b["id"]);
    sb.stop().await;
}

#[tokio::test]
async fn admin_key_list_shows_every_org_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start(dir.path(), None).await;
    let made: Value = sb
        .client
        .post(format!("{}/_sandbox/keys", sb.base))
        .json(&json!({"orgId": "another-org", "name": "x", "scopes": ["read:*"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let old = sb.id("ci-bot").to_string();
    let new = data(sb.rotate(&old, sb.secret("keyrot"), "", json!({})).await).await;
    let resp = sb
        .client
        .get(format!("{}/_sandbox/keys", sb.base))
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    assert!(!text.to_lowercase().contains("secret"), "{text}");
    for (_, secret) in sb.keys.values() {
        assert!(!text.contains(secret.as_str()));
    }
    let keys = sb.admin_keys().await;
    assert_eq!(keys.len(), 7);
    let other = sb.admin_key(made["id"].as_str().unwrap()).await;
    assert_eq!(other["orgId"], "another-org");
    assert_eq!(other["scopes"], json!(["read:*"]));
    assert!(other["rotatedFrom"].is_null());
    let rotated = sb.admin_key(new["id"].as_str().unwrap()).await;
    assert_eq!(rotated["orgId"], "demo-org");
    assert_eq!(rotated["rotatedFrom"], old);
    assert_eq!(rotated["name"], "ci-bot");
    assert_eq!(rotated["status"], "ACTIVE");
    assert!(rotated["lastActiveAt"].is_null());
    assert!(rotated["revokedAt"].is_null());
    assert_eq!(rotated["createdAt"], json!(t0()));
    sb.stop().await;
}

#[tokio::test]
async fn duplicate_names_make_a_second_key() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start(dir.path(), None).await;
    let resp = sb
        .client
        .post(format!("{}/_sandbox/keys", sb.base))
        .json(&json!({"orgId": "demo-org", "name": "ci-bot", "scopes": ["read:jira-work"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let made: Value = resp.json().await.unwrap();
    assert_ne!(made["id"], sb.id("ci-bot"));
    let named: Vec<Value> = sb
        .admin_keys()
        .await
        .into_iter()
        .filter(|k| k["name"] == "ci-bot")
        .collect();
    assert_eq!(named.len(), 2);
    // Both keys work.
    let count = format!("{}/api-keys/count", sb.org);
    let resp = sb.get(&count, made["secret"].as_str().unwrap()).await;
    assert_eq!(resp.json::<Value>().await.unwrap()["data"]["count"], 6);
    assert_eq!(sb.get(&count, sb.secret("ci-bot")).await.status(), 200);
    sb.stop().await;
}

#[tokio::test]
async fn last_active_at_moves_on_count_on_403_and_on_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start(dir.path(), None).await;
    let ro = sb.id("read only demo").to_string();
    let hour = |h: i64| t0() + SignedDuration::from_hours(h);
    assert!(sb.admin_key(&ro).await["lastActiveAt"].is_null());
    sb.clock.advance(SignedDuration::from_hours(1));
    let count = format!("{}/api-keys/count", sb.org);
    assert_eq!(
        sb.get(&count, sb.secret("read only demo")).await.status(),
        200
    );
    assert_eq!(sb.admin_key(&ro).await["lastActiveAt"], json!(hour(1)));
    sb.clock.advance(SignedDuration::from_hours(1));
    let resp = sb
        .rotate(sb.id("ci-bot"), sb.secret("read only demo"), "", json!({}))
        .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(sb.admin_key(&ro).await["lastActiveAt"], json!(hour(2)));
    sb.clock.advance(SignedDuration::from_hours(1));
    let actor = sb.id("keyrot").to_string();
    assert!(sb.admin_key(&actor).await["lastActiveAt"].is_null());
    data(
        sb.rotate(sb.id("ci-bot"), sb.secret("keyrot"), "", json!({}))
            .await,
    )
    .await;
    assert_eq!(sb.admin_key(&actor).await["lastActiveAt"], json!(hour(3)));
    sb.stop().await;
}

#[tokio::test]
async fn strict_updates_last_active_at_lazily() {
    let dir = tempfile::tempdir().unwrap();
    let sb = super::tests::start_with(dir.path(), |o| o.strict = true).await;
    let ro = sb.id("read only demo").to_string();
    let count = format!("{}/api-keys/count", sb.org);
    let min = |m: i64| t0() + SignedDuration::from_mins(m);
    // The first use is recorded at once.
    sb.clock.advance(SignedDuration::from_mins(1));
    sb.get(&count, sb.secret("read only demo")).await;
    assert_eq!(sb.admin_key(&ro).await["lastActiveAt"], json!(min(1)));
    // A use within the granularity (10 minutes) does not move it.
    sb.clock.advance(SignedDuration::from_mins(9));
    sb.get(&count, sb.secret("read only demo")).await;
    assert_eq!(sb.admin_key(&ro).await["lastActiveAt"], json!(min(1)));
    // One 10 minutes after the recorded one does.
    sb.clock.advance(SignedDuration::from_mins(1));
    sb.get(&count, sb.secret("read only demo")).await;
    assert_eq!(sb.admin_key(&ro).await["lastActiveAt"], json!(min(11)));
    sb.stop().await;
}
