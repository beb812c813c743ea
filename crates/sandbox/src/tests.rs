//! End-to-end tests over loopback HTTP: a seeded sandbox on a free port, a
//! reqwest client, a manual clock. This file holds the harness and the list,
//! rotate and scope tests; `tests_more.rs` the error, revoke and restart ones.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::*;
use keyrot_core::clock::ManualClock;
use keyrot_core::crypto;

/// The default PSK's bytes.
pub(super) const PSK: [u8; 32] = [0x42; 32];
/// The second PSK's bytes.
pub(super) const OTHER_PSK: [u8; 32] = [0x17; 32];

/// The manual clock's starting time.
pub(super) fn t0() -> Timestamp {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

/// `t0` plus `d` days.
pub(super) fn t0_plus_days(d: i64) -> Timestamp {
    t0() + SignedDuration::from_hours(24 * d)
}

/// A running sandbox.
pub(super) struct Running {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `base` + API base + `/orgs/demo-org`.
    pub org: String,
    /// HTTP client.
    pub client: reqwest::Client,
    /// The server's clock.
    pub clock: Arc<ManualClock>,
    /// Seeded secrets by key name: (id, secret).
    pub keys: HashMap<String, (String, String)>,
    /// Stops the server.
    stop: Option<oneshot::Sender<()>>,
    /// The server task.
    task: JoinHandle<anyhow::Result<()>>,
}

/// Starts a seeded sandbox whose files live in `dir`.
pub(super) async fn start(dir: &Path, rate_limit: Option<u32>) -> Running {
    start_with(dir, |o| o.rate_limit = rate_limit).await
}

/// Like [`start`], with options changed by `tune` (two PSKs, `test-psk`
/// first, are already set).
pub(super) async fn start_with(dir: &Path, tune: impl FnOnce(&mut SandboxOptions)) -> Running {
    let psk_file = |name: &str, key: &[u8; 32]| -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("{}\n", crypto::hex_encode(key))).unwrap();
        p
    };
    let mut opts = SandboxOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        state: dir.join("state.json"),
        psks: vec![
            ("test-psk".into(), psk_file("psk1", &PSK)),
            ("other".into(), psk_file("psk2", &OTHER_PSK)),
        ],
        seed: true,
        seed_secrets: Some(dir.join("secrets.json")),
        ..SandboxOptions::default()
    };
    tune(&mut opts);
    let listener = TcpListener::bind(opts.listen).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let clock = Arc::new(ManualClock::new(t0()));
    let (tx, rx) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = rx.await;
    };
    let task = tokio::spawn(serve_listener(listener, opts, clock.clone(), shutdown));
    let base = format!("http://127.0.0.1:{port}");
    keyrot_core::crypto::tls::provider();
    let client = reqwest::Client::new();
    // Ready once the health endpoint answers.
    for _ in 0..200 {
        if client
            .get(format!("{base}/_sandbox/health"))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let secrets: Value =
        serde_json::from_slice(&std::fs::read(dir.join("secrets.json")).unwrap()).unwrap();
    let keys = secrets["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let s = |f: &str| k[f].as_str().unwrap().to_string();
            (s("name"), (s("id"), s("secret")))
        })
        .collect();
    Running {
        org: format!("{base}{API_BASE}/orgs/demo-org"),
        base,
        client,
        clock,
        keys,
        stop: Some(tx),
        task,
    }
}

impl Running {
    /// The seeded secret of key `name`.
    pub fn secret(&self, name: &str) -> &str {
        &self.keys[name].1
    }

    /// The seeded id of key `name`.
    pub fn id(&self, name: &str) -> &str {
        &self.keys[name].0
    }

    /// GET `url` as `secret`.
    pub async fn get(&self, url: &str, secret: &str) -> reqwest::Response {
        self.client
            .get(url)
            .bearer_auth(secret)
            .send()
            .await
            .unwrap()
    }

    /// PATCH rotate of key `id` as `secret` with `body`, `query` appended.
    pub async fn rotate(
        &self,
        id: &str,
        secret: &str,
        query: &str,
        body: Value,
    ) -> reqwest::Response {
        let url = format!("{}/api-keys/rotate/{id}{query}", self.org);
        self.client
            .patch(url)
            .bearer_auth(secret)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// PATCH revoke of key `id` as `secret`.
    pub async fn revoke(&self, id: &str, secret: &str) -> reqwest::Response {
        let url = format!("{}/api-keys/revoke/{id}", self.org);
        self.client
            .patch(url)
            .bearer_auth(secret)
            .send()
            .await
            .unwrap()
    }

    /// Every key in the org list, walking pages of `limit`, as `secret`.
    pub async fn all_keys(&self, secret: &str, limit: usize) -> Vec<Value> {
        let mut out = Vec::new();
        let mut url = format!("{}/api-keys?limit={limit}", self.org);
        loop {
            let resp = self.get(&url, secret).await;
            assert_eq!(resp.status(), 200);
            let text = resp.text().await.unwrap();
            assert!(!text.to_lowercase().contains("secret"), "{text}");
            let body: Value = serde_json::from_str(&text).unwrap();
            out.extend(body["data"].as_array().unwrap().iter().cloned());
            match body["links"]["next"].as_str() {
                Some(c) => url = format!("{}/api-keys?limit={limit}&cursor={c}", self.org),
                None => return out,
            }
        }
    }

    /// The listed key with `id`.
    pub async fn listed(&self, secret: &str, id: &str) -> Value {
        self.all_keys(secret, 100)
            .await
            .into_iter()
            .find(|k| k["id"] == id)
            .unwrap()
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        drop(self.client);
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.await.unwrap().unwrap();
    }
}

/// Opens an `encryptedSecret` under `psk` with AAD = `id`.
pub(super) fn open_secret(psk: &[u8; 32], id: &str, b64: &str) -> String {
    let sealed = STANDARD.decode(b64).unwrap();
    let plain = crypto::open(psk, id.as_bytes(), &sealed).unwrap();
    String::from_utf8(plain.to_vec()).unwrap()
}

#[tokio::test]
async fn seeded_list_pages_over_three_pages_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start(dir.path(), None).await;
    let admin = sb.secret("legacy-admin");
    // Page by page: 2 + 2 + 1, next absent on the last page.
    let first: Value = sb
        .get(&format!("{}/api-keys?limit=2", sb.org), admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    assert!(first["links"]["next"].is_string());
    let keys = sb.all_keys(admin, 2).await;
    let names: Vec<&str> = keys.iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "ci-bot",
            "read only demo",
            "legacy-admin",
            "reporting",
            "keyrot"
        ]
    );
    let ci = &keys[0];
    assert_eq!(ci["scopes"], json!(["read:jira-work", "write:jira-work"]));
    assert_eq!(ci["createdBy"], "admin@example.com");
    assert_eq!(ci["status"], "ACTIVE");
    assert_eq!(ci["expiresAt"], json!(t0_plus_days(20)));
    assert!(ci["lastActiveAt"].is_string());
    assert!(keys[1]["lastActiveAt"].is_null());
    assert_eq!(keys[2]["scopes"], json!([]));
    let count: Value = sb
        .get(&format!("{}/api-keys/count", sb.org), admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(count, json!({"data": {"count": 5}}));
    // Users' API tokens: two seeded, no secrets.
    let resp = sb
        .get(&format!("{}/api-tokens?limit=1", sb.org), admin)
        .await;
    let text = resp.text().await.unwrap();
    assert!(!text.to_lowercase().contains("secret"), "{text}");
    let tokens: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(tokens["data"][0]["label"], "laptop cli");
    assert_eq!(tokens["data"][0]["user"]["email"], "alice@example.com");
    assert!(tokens["links"]["next"].is_string());
    // The state file holds hashes, never a secret.
    let state = std::fs::read_to_string(dir.path().join("state.json")).unwrap();
    for (_, secret) in sb.keys.values() {
        assert!(!state.contains(secret.as_str()));
    }
    sb.stop().await;
}

#[tokio::test]
async fn rotate_keeps_scopes_shortens_old_expiry_and_returns_a_working_secret() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start(dir.path(), None).await;
    let admin = sb.secret("legacy-admin");
    let old_id = sb.id("ci-bot").to_string();
    let body = json!({
        "newKeyExpiresAt": t0_plus_days(90),
        "oldKeyExpiresAt": t0_plus_days(2),
        "rotateReason": "Scheduled key rotation",
        "notifyContacts": true,
        "metadata": {"rotatedBy": "keyrot@example.com", "initiatedFrom": "CI/CD Automation",
                     "rotationPolicyId": "rot-policy-standard"}
    });
    let resp = sb.rotate(&old_id, admin, "", body).await;
    assert_eq!(resp.status(), 200);
    let data = resp.json::<Value>().await.unwrap()["data"].clone();
    let new_id = data["id"].as_str().unwrap();
    assert_ne!(new_id, old_id);
    assert_eq!(
        data["encryption"],
        json!({"algorithm": "AES-256-GCM", "pskId": "test-psk", "keyWrap": false})
    );
    assert_eq!(data["keyExpiresAt"], json!(t0_plus_days(90)));
    let secret = open_secret(&PSK, new_id, data["encryptedSecret"].as_str().unwrap());
    // The decrypted secret authenticates as the new key.
    let hash: Value = sb
        .client
        .get(format!("{}/_sandbox/keys/{new_id}/secret-sha256", sb.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(hash["secretSha256"], crypto::sha256_hex(secret.as_bytes()));
    let new = sb.listed(&secret, new_id).await;
    assert_eq!(new["name"], "ci-bot");
    assert_eq!(new["scopes"], json!(["read:jira-work", "write:jira-work"]));
    assert_eq!(new["expiresAt"], json!(t0_plus_days(90)));
    assert_eq!(new["createdBy"], "keyrot@example.com");
    assert_eq!(new["lastActiveAt"], json!(t0()));
    let old = sb.listed(admin, &old_id).await;
    assert_eq!(old["expiresAt"], json!(t0_plus_days(2)));
    assert_eq!(old["status"], "ACTIVE");
    // The audit list records reason and metadata.
    let audit: Value = sb
        .client
        .get(format!("{}/_sandbox/audit", sb.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = audit["data"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(entry["action"], "api-key.rotated");
    assert_eq!(entry["newApiKeyId"], new_id);
    assert_eq!(entry["rotateReason"], "Scheduled key rotation");
    assert_eq!(entry["notifyContacts"], true);
    assert_eq!(entry["metadata"]["initiatedFrom"], "CI/CD Automation");
    assert_eq!(entry["actorKeyId"], sb.id("legacy-admin"));
    sb.stop().await;
}

#[tokio::test]
async fn rotate_defaults_to_one_year_caps_longer_and_honours_psk_id() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start(dir.path(), None).await;
    let admin = sb.secret("legacy-admin");
    let one_year = t0() + SignedDuration::from_hours(24 * 365);
    let resp = sb.rotate(sb.id("reporting"), admin, "", json!({})).await;
    let data = resp.json::<Value>().await.unwrap()["data"].clone();
    assert_eq!(data["keyExpiresAt"], json!(one_year));
    let body = json!({"newKeyExpiresAt": t0_plus_days(400)});
    let resp = sb
        .rotate(sb.id("keyrot"), admin, "?pskId=other", body)
        .await;
    assert_eq!(resp.status(), 200);
    let data = resp.json::<Value>().await.unwrap()["data"].clone();
    assert_eq!(data["keyExpiresAt"], json!(one_year));
    assert_eq!(data["encryption"]["pskId"], "other");
    let id = data["id"].as_str().unwrap();
    let secret = open_secret(&OTHER_PSK, id, data["encryptedSecret"].as_str().unwrap());
    assert_eq!(
        sb.get(&format!("{}/api-keys/count", sb.org), &secret)
            .await
            .status(),
        200
    );
    // Sealed under the wrong PSK or bound to another id, it does not open.
    let sealed = STANDARD
        .decode(data["encryptedSecret"].as_str().unwrap())
        .unwrap();
    assert!(crypto::open(&PSK, id.as_bytes(), &sealed).is_err());
    assert!(crypto::open(&OTHER_PSK, b"another-id", &sealed).is_err());
    let resp = sb
        .rotate(sb.id("ci-bot"), admin, "?pskId=nope", json!({}))
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["errors"][0]["field"],
        "pskId"
    );
    sb.stop().await;
}

#[tokio::test]
async fn scopes_decide_who_may_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start(dir.path(), None).await;
    let target = sb.id("ci-bot").to_string();
    // Read-only keys may list but get 403 on rotate and revoke.
    let ro = sb.secret("read only demo");
    assert_eq!(
        sb.get(&format!("{}/api-keys", sb.org), ro).await.status(),
        200
    );
    let resp = sb.rotate(&target, ro, "", json!({})).await;
    assert_eq!(resp.status(), 403);
    let text = resp.text().await.unwrap();
    assert!(text.contains("write:"), "{text}");
    assert_eq!(sb.revoke(&target, ro).await.status(), 403);
    // A write-scoped key may rotate; so may an unscoped one.
    assert_eq!(
        sb.rotate(&target, sb.secret("keyrot"), "", json!({}))
            .await
            .status(),
        200
    );
    assert_eq!(
        sb.rotate(&target, sb.secret("legacy-admin"), "", json!({}))
            .await
            .status(),
        200
    );
    // 403 is an authenticated use: the read-only key's lastActiveAt moved.
    let ro_key = sb
        .listed(sb.secret("legacy-admin"), sb.id("read only demo"))
        .await;
    assert_eq!(ro_key["lastActiveAt"], json!(t0()));
    sb.stop().await;
}

#[tokio::test]
async fn last_active_at_follows_each_use() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start(dir.path(), None).await;
    let admin = sb.secret("legacy-admin");
    let ro_id = sb.id("read only demo").to_string();
    assert!(sb.listed(admin, &ro_id).await["lastActiveAt"].is_null());
    sb.clock.advance(SignedDuration::from_hours(3));
    let later = t0() + SignedDuration::from_hours(3);
    let count = format!("{}/api-keys/count", sb.org);
    assert_eq!(
        sb.get(&count, sb.secret("read only demo")).await.status(),
        200
    );
    assert_eq!(sb.listed(admin, &ro_id).await["lastActiveAt"], json!(later));
    assert_eq!(
        sb.listed(admin, sb.id("legacy-admin")).await["lastActiveAt"],
        json!(later)
    );
    sb.stop().await;
}
