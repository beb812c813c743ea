//! The Atlassian provider against keyrot's own sandbox, in process over
//! loopback: paging and mapping, forced 429s, issue through the proposed
//! rotate call (scopes kept, idempotent by tag, wrong PSK refused), verify,
//! revoke, re-reading a rotated admin key, build failures — and that no
//! error message ever carries a secret.

use std::path::PathBuf;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::AtlassianProvider;
use crate::provider::{IssueMode, IssueRequest, Provider};
use keyrot_config::{AtlassianProviderConfig, AtlassianRotateApi, SecretRef};
use keyrot_core::clock::ManualClock;
use keyrot_core::crypto;
use keyrot_core::error::CallError;
use keyrot_sandbox::{SandboxOptions, serve_listener};

#[path = "tests_strict.rs"]
mod strict;

/// The sandbox PSK's bytes.
pub(super) const PSK: [u8; 32] = [0x42; 32];
/// The PSK's id.
pub(super) const PSK_ID: &str = "test-psk";

/// The sandbox clock's start.
pub(super) fn t0() -> Timestamp {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

/// `t0` plus `d` days.
fn days(d: i64) -> Timestamp {
    t0() + SignedDuration::from_hours(24 * d)
}

/// A seeded sandbox and the files a provider config points at.
pub(super) struct Sandbox {
    /// `http://127.0.0.1:PORT`.
    base: String,
    /// Seeded keys by name: (id, secret).
    pub(super) keys: std::collections::HashMap<String, (String, String)>,
    /// Holds the admin key (the seeded `keyrot` key).
    admin_file: PathBuf,
    /// Holds the PSK as hex.
    psk_file: PathBuf,
    /// The temporary directory.
    pub(super) dir: tempfile::TempDir,
    /// Stops the server.
    stop: Option<oneshot::Sender<()>>,
    /// The server task.
    task: JoinHandle<anyhow::Result<()>>,
}

impl Sandbox {
    /// Starts a seeded sandbox on a free loopback port.
    async fn start() -> Sandbox {
        Sandbox::start_with(Arc::new(ManualClock::new(t0())), Vec::new()).await
    }

    /// Starts a seeded sandbox with `clock`; `psks` (id, 32 bytes) come
    /// first, before the test PSK.
    pub(super) async fn start_with(
        clock: Arc<dyn keyrot_core::clock::Clock>,
        psks: Vec<(&str, [u8; 32])>,
    ) -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let psk_file = dir.path().join("psk.hex");
        std::fs::write(&psk_file, format!("{}\n", crypto::hex_encode(&PSK))).unwrap();
        let mut all = Vec::new();
        for (id, bytes) in psks {
            let f = dir.path().join(format!("{id}.hex"));
            std::fs::write(&f, crypto::hex_encode(&bytes)).unwrap();
            all.push((id.to_string(), f));
        }
        all.push((PSK_ID.into(), psk_file.clone()));
        let opts = SandboxOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            state: dir.path().join("state.json"),
            psks: all,
            seed: true,
            seed_secrets: Some(dir.path().join("secrets.json")),
            rate_limit: None,
            ..Default::default()
        };
        let listener = TcpListener::bind(opts.listen).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_listener(listener, opts, clock, async move {
            let _ = rx.await;
        }));
        keyrot_core::crypto::tls::provider();
        let client = reqwest::Client::new();
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
            serde_json::from_slice(&std::fs::read(dir.path().join("secrets.json")).unwrap())
                .unwrap();
        let keys: std::collections::HashMap<_, _> = secrets["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                let s = |f: &str| k[f].as_str().unwrap().to_string();
                (s("name"), (s("id"), s("secret")))
            })
            .collect();
        let admin_file = dir.path().join("admin.key");
        std::fs::write(&admin_file, format!("{}\n", keys["keyrot"].1)).unwrap();
        Sandbox {
            base,
            keys,
            admin_file,
            psk_file,
            dir,
            stop: Some(tx),
            task,
        }
    }

    /// The seeded id of key `name`.
    pub(super) fn id(&self, name: &str) -> String {
        self.keys[name].0.clone()
    }

    /// A provider config with the proposed rotate API and `page_size`.
    pub(super) fn config(&self, page_size: u32) -> AtlassianProviderConfig {
        AtlassianProviderConfig {
            last_active_precision: jiff::SignedDuration::ZERO,
            org_id: "demo-org".into(),
            base_url: format!("{}/admin/api-access/v1", self.base),
            admin_key: SecretRef::File(self.admin_file.clone()),
            rotate_api: AtlassianRotateApi::Proposed {
                psks: vec![(PSK_ID.into(), SecretRef::File(self.psk_file.clone()))],
                send_psk_id: false,
            },
            page_size,
            timeout: SignedDuration::from_secs(5),
        }
    }

    /// A provider over this sandbox.
    pub(super) fn provider(&self, page_size: u32) -> AtlassianProvider {
        AtlassianProvider::from_config("atl", &self.config(page_size), None).unwrap()
    }

    /// POST to an admin endpoint.
    pub(super) async fn admin_post(&self, path: &str, body: Value) -> reqwest::Response {
        keyrot_core::crypto::tls::provider();
        reqwest::Client::new()
            .post(format!("{}/_sandbox/{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Every secret a message must never contain.
    pub(super) fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = self.keys.values().map(|(_, s)| s.clone()).collect();
        out.push(crypto::hex_encode(&PSK));
        out
    }

    /// Stops the server.
    pub(super) async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.await.unwrap().unwrap();
    }
}

/// An issue request replacing `old`.
pub(super) fn request(old: Option<&str>, tag: &str) -> IssueRequest {
    IssueRequest {
        name: "ci-bot".into(),
        scopes: vec!["read:jira-work".into(), "write:jira-work".into()],
        expires_at: Some(days(90)),
        tag: tag.into(),
        replaces: old.map(str::to_string),
        resumed: false,
        created_by: "keyrot".into(),
        now: t0(),
        ..Default::default()
    }
}

/// Asserts no message carries any of `secrets`.
fn assert_clean(errors: &[CallError], secrets: &[String]) {
    for e in errors {
        let shown = format!("{e} {e:?}");
        for s in secrets {
            assert!(!shown.contains(s.as_str()), "a secret leaked into {shown}");
        }
    }
}

#[tokio::test]
async fn list_walks_every_page_and_maps_each_key() {
    let sb = Sandbox::start().await;
    let p = sb.provider(2);
    let keys = p.list(t0()).await.unwrap();
    let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
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
    assert_eq!(ci.id, sb.id("ci-bot"));
    assert_eq!(ci.scopes, vec!["read:jira-work", "write:jira-work"]);
    assert_eq!(ci.created_by.as_deref(), Some("admin@example.com"));
    assert_eq!(ci.expires_at, Some(days(20)));
    assert!(ci.created_at.is_some_and(|c| c < t0()));
    assert!(ci.last_used_at.is_some());
    assert!(keys[1].last_used_at.is_none());
    assert!(keys[2].scopes.is_empty());
    // The admin key's own use shows up (the sandbox records it).
    assert_eq!(keys[4].last_used_at, Some(t0()));
    // Revoked and expired keys are not listed.
    p.revoke(&sb.id("reporting"), t0()).await.unwrap();
    let resp = sb
        .admin_post(
            "keys",
            json!({"orgId": "demo-org", "name": "old", "expiresAt": days(-1)}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let keys = p.list(t0()).await.unwrap();
    assert_eq!(keys.len(), 4);
    assert!(
        keys.iter()
            .all(|k| k.name != "reporting" && k.name != "old")
    );
    sb.stop().await;
}

#[tokio::test]
async fn a_forced_429_is_transient_with_its_retry_after() {
    let sb = Sandbox::start().await;
    let p = sb.provider(50);
    let resp = sb
        .admin_post("fail", json!({"status": 429, "retry_after": 2, "count": 1}))
        .await;
    assert_eq!(resp.status(), 204);
    let err = p.list(t0()).await.unwrap_err();
    assert!(err.transient, "{err}");
    assert_eq!(err.retry_after, Some(SignedDuration::from_secs(2)));
    assert!(err.message.contains("429"), "{err}");
    // A 503 is transient too; a 400 is not.
    sb.admin_post("fail", json!({"status": 503})).await;
    assert!(p.revoke("x", t0()).await.unwrap_err().transient);
    sb.admin_post("fail", json!({"status": 400})).await;
    let err = p.list(t0()).await.unwrap_err();
    assert!(!err.transient && err.message.contains("400"), "{err}");
    // The next call goes through again.
    assert_eq!(p.list(t0()).await.unwrap().len(), 5);
    assert_clean(&[err], &sb.secrets());
    sb.stop().await;
}

#[tokio::test]
async fn issue_rotates_keeping_scopes_and_sends_an_idempotency_key() {
    let sb = Sandbox::start().await;
    let p = sb.provider(50);
    let caps = p.capabilities();
    // The Idempotency-Key is sent but never relied on: a lost answer is
    // recovered by listing.
    assert_eq!(
        caps.issue,
        IssueMode::Rotate {
            keeps_scopes: true,
            old_ends: false
        }
    );
    assert!(!caps.idempotent_issue && caps.verify);
    assert!(caps.issue.keeps_scopes() && caps.prove_identity);
    assert!(!caps.tag && !caps.set_expiry);
    let old = sb.id("ci-bot");
    let issued = p.issue(&request(Some(&old), "rot-1")).await.unwrap();
    assert_ne!(issued.info.id, old);
    assert_eq!(issued.info.name, "ci-bot");
    assert_eq!(issued.info.expires_at, Some(days(90)));
    assert!(!format!("{issued:?}").contains(issued.secret.expose_secret()));
    // The sandbox kept the old key's scopes; the old key still lives.
    let keys = p.list(t0()).await.unwrap();
    let new = keys.iter().find(|k| k.id == issued.info.id).unwrap();
    assert_eq!(new.scopes, vec!["read:jira-work", "write:jira-work"]);
    assert_eq!(new.name, "ci-bot");
    assert!(keys.iter().any(|k| k.id == old));
    p.verify(&issued.info.id, &issued.secret, t0())
        .await
        .unwrap();
    // The same tag again, at a server that honours the header (this
    // sandbox by default): the same key and secret.
    let again = p.issue(&request(Some(&old), "rot-1")).await.unwrap();
    assert_eq!(again.info.id, issued.info.id);
    assert_eq!(again.secret.expose_secret(), issued.secret.expose_secret());
    assert_eq!(p.list(t0()).await.unwrap().len(), 6);
    // A new tag rotates anew.
    let other = p.issue(&request(Some(&old), "rot-2")).await.unwrap();
    assert_ne!(other.info.id, issued.info.id);
    sb.stop().await;
}

#[tokio::test]
async fn issue_refusals_name_their_cause() {
    let sb = Sandbox::start().await;
    let mut errors = Vec::new();
    // A wrong PSK under the right id: the envelope does not open.
    std::fs::write(sb.dir.path().join("wrong.hex"), "17".repeat(32)).unwrap();
    let mut cfg = sb.config(50);
    cfg.rotate_api = AtlassianRotateApi::Proposed {
        psks: vec![(
            PSK_ID.into(),
            SecretRef::File(sb.dir.path().join("wrong.hex")),
        )],
        send_psk_id: false,
    };
    let wrong = AtlassianProvider::from_config("atl", &cfg, None).unwrap();
    let err = wrong
        .issue(&request(Some(&sb.id("ci-bot")), "rot-w"))
        .await
        .unwrap_err();
    assert!(!err.transient);
    assert!(
        err.message.contains(
            "sealed secret does not open under PSK test-psk (wrong PSK or tampered response)"
        ) && err.message.contains("revoked at once")
            && err
                .message
                .contains(&format!("old key {} untouched", sb.id("ci-bot"))),
        "{err}"
    );
    errors.push(err);
    // The key it made, whose secret can never be read, is revoked; the old
    // key lives.
    let live = sb.provider(50).list(t0()).await.unwrap();
    assert_eq!(live.len(), 5, "{live:?}");
    assert!(live.iter().any(|k| k.id == sb.id("ci-bot")));
    // No old key: Atlassian cannot create a first key.
    let p = sb.provider(50);
    let err = p.issue(&request(None, "rot-x")).await.unwrap_err();
    assert!(!err.transient);
    assert!(err.message.contains("Atlassian cannot create a first key through its API: create it at admin.atlassian.com and let keyrot adopt it"), "{err}");
    errors.push(err);
    // An unknown old key: the server's 404, permanent.
    let err = p.issue(&request(Some("nope"), "rot-y")).await.unwrap_err();
    assert!(!err.transient && err.message.contains("404"), "{err}");
    errors.push(err);
    // rotate_api = "none": no issue at all.
    let mut cfg = sb.config(50);
    cfg.rotate_api = AtlassianRotateApi::None;
    let none = AtlassianProvider::from_config("atl", &cfg, None).unwrap();
    let caps = none.capabilities();
    assert!(caps.issue == IssueMode::Assisted && !caps.idempotent_issue && caps.list);
    let err = none
        .issue(&request(Some(&sb.id("ci-bot")), "rot-z"))
        .await
        .unwrap_err();
    assert!(err.message.contains("rotate_api = \"none\""), "{err}");
    errors.push(err);
    assert_clean(&errors, &sb.secrets());
    sb.stop().await;
}

#[tokio::test]
async fn verify_and_revoke() {
    let sb = Sandbox::start().await;
    let p = sb.provider(50);
    let mut errors = Vec::new();
    // A seeded read-only key authenticates (200).
    let ro = SecretString::from(sb.keys["read only demo"].1.clone());
    p.verify(&sb.id("read only demo"), &ro, t0()).await.unwrap();
    // A write-only key gets 403 on the count, which still proves it works.
    let created: Value = sb
        .admin_post(
            "keys",
            json!({"orgId": "demo-org", "name": "w", "scopes": ["write:x"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let w = SecretString::from(created["secret"].as_str().unwrap());
    p.verify(created["id"].as_str().unwrap(), &w, t0())
        .await
        .unwrap();
    let garbage = "ATSBX-not-a-key-0123456789";
    let err = p
        .verify("k", &SecretString::from(garbage), t0())
        .await
        .unwrap_err();
    assert!(!err.transient);
    assert!(
        err.message.contains("the new key does not authenticate"),
        "{err}"
    );
    assert!(!err.message.contains(garbage));
    errors.push(err);
    // Revoke, and again: both done.
    let id = sb.id("read only demo");
    p.revoke(&id, t0()).await.unwrap();
    p.revoke(&id, t0()).await.unwrap();
    p.revoke("never-existed", t0()).await.unwrap();
    let err = p.verify(&id, &ro, t0()).await.unwrap_err();
    assert!(err.message.contains("does not authenticate"), "{err}");
    errors.push(err);
    let mut secrets = sb.secrets();
    secrets.push(garbage.to_string());
    assert_clean(&errors, &secrets);
    sb.stop().await;
}

#[tokio::test]
async fn a_rotated_admin_key_is_reread_from_its_file() {
    let sb = Sandbox::start().await;
    let p = sb.provider(50);
    // keyrot rotates its own admin key, a sink writes it where
    // `admin_key` points, and the old key is revoked.
    let own = sb.id("keyrot");
    let mut req = request(Some(&own), "rot-self");
    req.name = "keyrot".into();
    let issued = p.issue(&req).await.unwrap();
    std::fs::write(&sb.admin_file, issued.secret.expose_secret()).unwrap();
    p.revoke(&own, t0()).await.unwrap();
    // The next call gets 401 with the old key, re-reads the file, succeeds.
    let keys = p.list(t0()).await.unwrap();
    assert!(keys.iter().any(|k| k.id == issued.info.id));
    assert!(keys.iter().all(|k| k.id != own));
    sb.stop().await;
}

#[tokio::test]
async fn build_and_transport_failures() {
    let sb = Sandbox::start().await;
    let mut cfg = sb.config(50);
    cfg.admin_key = SecretRef::File(sb.dir.path().join("missing"));
    let err = AtlassianProvider::from_config("atl", &cfg, None)
        .err()
        .unwrap();
    assert!(!err.transient);
    assert!(
        err.message.starts_with("provider \"atl\": `admin_key`: "),
        "{err}"
    );
    let mut cfg = sb.config(50);
    let bad = sb.dir.path().join("bad.hex");
    std::fs::write(&bad, "not-hex-and-secret-ish").unwrap();
    cfg.rotate_api = AtlassianRotateApi::Proposed {
        psks: vec![(PSK_ID.into(), SecretRef::File(bad))],
        send_psk_id: false,
    };
    let err = AtlassianProvider::from_config("atl", &cfg, None)
        .err()
        .unwrap();
    assert!(
        err.message.contains("`psk`") && err.message.contains("64 hex"),
        "{err}"
    );
    assert!(!err.message.contains("secret-ish"), "{err}");
    // Nobody listening: transient.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut cfg = sb.config(50);
    cfg.base_url = format!("http://127.0.0.1:{port}/admin/api-access/v1");
    let p = AtlassianProvider::from_config("atl", &cfg, None).unwrap();
    let err = p.list(t0()).await.unwrap_err();
    assert!(err.transient, "{err}");
    assert_clean(&[err], &sb.secrets());
    sb.stop().await;
}
