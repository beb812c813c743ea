//! The rotate API over a real unix socket. The daemon behind it is a fake
//! [`Backend`] (it writes canned rotation records into a real store and
//! seals canned secrets under a test PSK): the state machine's side is
//! tested in `rotation/reveal_tests.rs`; what is under test here is the
//! HTTP surface: body, query, key resolution, waiting, answers. The
//! harness here also serves `authz_tests.rs` (tokens on every route).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::control::server::{bind, serve_with_clock};
use crate::control::views::tests::{info, key_rec, put, rotation_rec, store_in, ts};
use crate::control::{ApiError, Backend, EnrollRequest, RotateRequest};
use keyrot_config::Config;
use keyrot_core::clock::ManualClock;
use keyrot_core::crypto::psk;
use keyrot_core::model::{RotationRecord, RotationState};
use keyrot_core::store::Store;
use keyrot_peers::sink::probe::ProbeReport;

/// The PSK the fake seals under (whatever the psk id).
const PSK: [u8; 32] = [0x42; 32];
/// A valid API token (`TOKEN_FILE`).
pub(crate) const TOKEN: &str = "tok-ci-0123456789abcdef";
/// More tokens: `DIR/tok-NAME` holds the value.
pub(crate) const MORE_TOKENS: [(&str, &str); 4] = [
    ("read", "tok-read-0123456789abcdef"),
    ("operate", "tok-operate-0123456789abcdef"),
    ("admin", "tok-admin-0123456789abcdef"),
    ("narrow", "tok-narrow-0123456789abcdef"),
];

/// Canned rotations over a real store.
pub(crate) struct Fake {
    /// The store the handlers read.
    pub(crate) store: Arc<Store>,
    /// The config (psks, tokens, providers).
    cfg: Arc<Config>,
    /// Requests `rotate` received.
    pub(crate) seen: Mutex<Vec<RotateRequest>>,
    /// Envelopes not taken yet, by rotation id.
    envelopes: Mutex<HashMap<String, SecretString>>,
}

#[async_trait]
impl Backend for Fake {
    fn store(&self) -> Arc<Store> {
        Arc::clone(&self.store)
    }
    fn config(&self) -> Arc<Config> {
        Arc::clone(&self.cfg)
    }
    async fn rotate(&self, req: RotateRequest) -> Result<RotationRecord, ApiError> {
        let n = {
            let mut seen = self.seen.lock().unwrap();
            seen.push(req.clone());
            seen.len()
        };
        if req.key == "local/busy" {
            let mut e = ApiError::new(409, "a rotation of local/busy is already running: r-run");
            e.rotation_id = Some("r-run".into());
            return Err(e);
        }
        let id = format!("r{n}");
        let state = match req.key.as_str() {
            "local/failing" => RotationState::Failed,
            "local/slow" => RotationState::Pending,
            "local/manual" => RotationState::AwaitingSecret,
            _ => RotationState::Issued,
        };
        let mut rec = rotation_rec(&id, &req.key, state);
        rec.reveal_psk = req.reveal_psk.clone();
        if let Some(k) = rec.new_key.as_mut() {
            k.id = format!("{id}-key");
            k.expires_at = Some(ts("2027-11-23T12:00Z"));
        }
        if state == RotationState::Failed {
            rec.failed_in = Some(RotationState::Issuing);
            rec.last_error = Some("provider said no".into());
        }
        if state == RotationState::Issued {
            let env = psk::seal(&PSK, &format!("{id}-key"), &SecretString::from("s3cret")).unwrap();
            self.envelopes.lock().unwrap().insert(id.clone(), env);
        }
        put(&self.store, &[], std::slice::from_ref(&rec));
        Ok(rec)
    }
    async fn resume(&self, id: &str) -> Result<RotationRecord, ApiError> {
        self.known(id)
    }
    async fn abort(&self, id: &str) -> Result<RotationRecord, ApiError> {
        self.known(id)
    }
    async fn restart(&self, id: &str) -> Result<RotationRecord, ApiError> {
        self.known(id)
    }
    async fn enroll(&self, id: &str, req: EnrollRequest) -> Result<RotationRecord, ApiError> {
        let _ = req;
        self.known(id)
    }
    async fn reload(&self) -> Result<(), ApiError> {
        Ok(())
    }
    async fn test_sink(&self, name: &str) -> Result<ProbeReport, ApiError> {
        Ok(ProbeReport {
            sink: name.to_string(),
            kind: "file".into(),
            version: None,
            read_back: "matched".into(),
            elapsed_ms: 1,
        })
    }
    async fn take_envelope(&self, id: &str) -> Result<Option<SecretString>, ApiError> {
        Ok(self.envelopes.lock().unwrap().remove(id))
    }
}

impl Fake {
    /// Rotation `id` as stored, or the backend's 404.
    fn known(&self, id: &str) -> Result<RotationRecord, ApiError> {
        self.store
            .rotation(id)
            .map_err(|e| ApiError::new(500, e.to_string()))?
            .ok_or_else(|| ApiError::new(404, format!("unknown rotation {id}")))
    }
}

/// A running server.
pub(crate) struct Running {
    /// Keeps the directory.
    _dir: tempfile::TempDir,
    /// The socket.
    socket: PathBuf,
    /// The backend.
    pub(crate) fake: Arc<Fake>,
    /// Stops the server when dropped.
    _stop: oneshot::Sender<()>,
}

/// `extra` is appended to a config with providers `local` (a local one)
/// and `atl` (Atlassian, org `org-1`); `TOKEN_FILE` in it holds [`TOKEN`],
/// `DIR` is the server's directory (with the files of [`MORE_TOKENS`]).
pub(crate) async fn start(extra: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    for (name, value) in MORE_TOKENS {
        std::fs::write(dir.path().join(format!("tok-{name}")), value).unwrap();
    }
    let text = format!(
        r#"
[[provider]]
name = "local"
type = "local"

[[provider]]
name = "atl"
type = "atlassian"
org_id = "org-1"
admin_key = {{ env = "UNUSED_ADMIN_KEY" }}

[[sink]]
name = "out"
type = "file"
path = "/tmp/keyrot-test/{{name}}"

[[policy]]
name = "standard"
{}
"#,
        extra
            .replace("TOKEN_FILE", &token_file.display().to_string())
            .replace("DIR", &dir.path().display().to_string())
    );
    let cfg = keyrot_config::load_str(Path::new("/etc/keyrot/keyrot.toml"), &text).unwrap();
    let store = store_in(dir.path());
    let key = |id: &str| {
        Some(info(
            id,
            &["read"],
            "2026-01-01T00:00Z",
            "2026-12-01T00:00Z",
        ))
    };
    put(
        &store,
        &[
            key_rec("local", "ci-bot", key("k1")),
            key_rec("local", "busy", key("k-busy")),
            key_rec("local", "failing", key("k-fail")),
            key_rec("local", "slow", key("k-slow")),
            key_rec("local", "manual", key("k-manual")),
            key_rec("atl", "admin", key("ak-1")),
        ],
        &[],
    );
    let fake = Arc::new(Fake {
        store: Arc::new(store),
        cfg: Arc::new(cfg),
        seen: Mutex::new(Vec::new()),
        envelopes: Mutex::new(HashMap::new()),
    });
    let socket = dir.path().join("control.sock");
    let listener = bind(&socket, 0o600).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let clock = Arc::new(ManualClock::new(ts("2026-11-23T12:00Z")));
    let backend: Arc<dyn Backend> = fake.clone();
    tokio::spawn(serve_with_clock(listener, backend, clock, async {
        let _ = stopped.await;
    }));
    Running {
        _dir: dir,
        socket,
        fake,
        _stop: stop,
    }
}

/// Two PSKs, `p1` first.
pub(crate) const PSKS: &str =
    "[[psk]]\nid = \"p1\"\nkey = { env = \"P1\" }\n[[psk]]\nid = \"p2\"\nkey = { env = \"P2\" }\n";

/// The answer: status, headers, JSON body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: Value,
}

impl Answer {
    /// `error.field` of an error body.
    pub(crate) fn field(&self) -> Option<&str> {
        self.body["error"]["field"].as_str()
    }
    /// `error.message` of an error body.
    pub(crate) fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }
}

pub(crate) async fn send(
    srv: &Running,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> Answer {
    keyrot_core::crypto::tls::provider();
    let http = reqwest::Client::builder()
        .unix_socket(srv.socket.as_path())
        .build()
        .unwrap();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = http
        .request(method, format!("http://keyrot{path}"))
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let resp = req.body(bytes).send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

pub(crate) async fn patch(srv: &Running, path: &str, body: &Value) -> Answer {
    send(srv, "PATCH", path, None, body).await
}

/// The seed's example body, with dates after the test clock.
fn seed_body() -> Value {
    json!({
        "newKeyExpiresAt": "2027-12-31T23:59:59Z",
        "oldKeyExpiresAt": "2027-01-31T00:00:00Z",
        "rotateReason": "Scheduled key rotation as part of security best practices",
        "notifyContacts": true,
        "metadata": {
            "rotatedBy": "user@email.com",
            "initiatedFrom": "CI/CD Automation",
            "rotationPolicyId": "rot-policy-companyID-standard"
        }
    })
}

#[tokio::test]
async fn seed_request_gets_the_seed_response_and_the_secret_opens() {
    let srv = start(PSKS).await;
    let a = patch(
        &srv,
        "/orgs/local/api-keys/rotate/k1?pskId=p2",
        &seed_body(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body,
        json!({"data": {
            "id": "r1-key",
            "encryptedSecret": a.body["data"]["encryptedSecret"],
            "encryption": {"algorithm": "AES-256-GCM", "pskId": "p2", "keyWrap": false},
            "keyExpiresAt": "2027-11-23T12:00:00Z"
        }})
    );
    let plain = crate::cli::decrypt::open_response(&a.body.to_string(), &PSK).unwrap();
    assert_eq!(plain.as_str(), "s3cret");

    let seen = srv.fake.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.key, "local/ci-bot");
    assert_eq!(seen.reveal_psk.as_deref(), Some("p2"));
    assert_eq!(seen.new_expires_at, Some(ts("2027-12-31T23:59:59Z")));
    assert_eq!(seen.old_expires_at, Some(ts("2027-01-31T00:00:00Z")));
    assert_eq!(
        seen.reason.as_deref(),
        Some("Scheduled key rotation as part of security best practices")
    );
    assert_eq!(seen.rotated_by.as_deref(), Some("user@email.com"));
    assert_eq!(seen.initiated_from.as_deref(), Some("CI/CD Automation"));
    assert_eq!(
        seen.rotation_policy_id.as_deref(),
        Some("rot-policy-companyID-standard")
    );
    assert!(seen.notify_contacts);

    // Handed out once.
    let again = send(
        &srv,
        "GET",
        "/v1/rotations/r1/encrypted-secret",
        None,
        &Value::Null,
    )
    .await;
    assert_eq!(again.status, 410, "{}", again.body);
    assert_eq!(again.body["error"]["rotation_id"], "r1");
}

#[tokio::test]
async fn keys_resolve_by_id_slot_or_name_and_psk_defaults_to_the_first() {
    let srv = start(PSKS).await;
    for path in [
        "/orgs/local/api-keys/rotate/ci-bot",
        "/orgs/local/api-keys/rotate/local%2Fci-bot",
        "/orgs/org-1/api-keys/rotate/ak-1",
    ] {
        let a = patch(&srv, path, &json!({})).await;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        assert_eq!(a.body["data"]["encryption"]["pskId"], "p1");
    }
    let seen: Vec<String> = srv
        .fake
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.key.clone())
        .collect();
    assert_eq!(seen, ["local/ci-bot", "local/ci-bot", "atl/admin"]);
    let first = srv.fake.seen.lock().unwrap()[0].clone();
    assert_eq!(first.initiated_from.as_deref(), Some("control-api"));
    assert!(!first.notify_contacts);

    let a = patch(&srv, "/orgs/local/api-keys/rotate/ci-bto", &json!({})).await;
    assert_eq!((a.status, a.field()), (404, Some("apiKeyId")));
    assert_eq!(a.body["error"]["suggestions"], json!(["ci-bot"]));
    let a = patch(&srv, "/orgs/atl/api-keys/rotate/ak-1", &json!({})).await;
    assert_eq!((a.status, a.field()), (404, Some("orgId")), "{}", a.body);
    assert!(a.message().contains("\"org-1\""), "{}", a.message());
    let a = patch(&srv, "/orgs/org-1/api-keys/rotate/k1", &json!({})).await;
    assert_eq!((a.status, a.field()), (404, Some("orgId")));
    assert_eq!(
        srv.fake.seen.lock().unwrap().len(),
        3,
        "refusals never reach the backend"
    );
}

#[tokio::test]
async fn bodies_and_queries_are_checked() {
    let srv = start(PSKS).await;
    let url = "/orgs/local/api-keys/rotate/k1";
    let a = patch(
        &srv,
        url,
        &json!({"newKeyExpiresAt": "2027-01-01T00:00:00Z", "bogus": 1}),
    )
    .await;
    assert_eq!((a.status, a.field()), (400, Some("bogus")), "{}", a.body);
    let a = patch(
        &srv,
        url,
        &json!({"metadata": {"rotatedBy": "x", "team": "y"}}),
    )
    .await;
    assert_eq!(
        (a.status, a.field()),
        (400, Some("metadata.team")),
        "{}",
        a.body
    );
    let a = patch(
        &srv,
        url,
        &json!({"new_key_expires_at": "2027-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!((a.status, a.field()), (400, Some("new_key_expires_at")));
    let a = patch(&srv, url, &json!({"encryption": {"keyWrap": true}})).await;
    assert_eq!((a.status, a.field()), (400, Some("encryption.keyWrap")));
    assert_eq!(
        a.message(),
        "keyWrap is not supported: the secret is sealed directly under the PSK"
    );
    let a = patch(
        &srv,
        url,
        &json!({"newKeyExpiresAt": "2026-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!((a.status, a.field()), (400, Some("newKeyExpiresAt")));
    assert!(a.message().contains("in the past"), "{}", a.message());
    let a = patch(
        &srv,
        url,
        &json!({"oldKeyExpiresAt": "2025-08-31T00:00:00Z"}),
    )
    .await;
    assert_eq!((a.status, a.field()), (400, Some("oldKeyExpiresAt")));
    let a = patch(
        &srv,
        url,
        &json!({"newKeyExpiresAt": "2027-01-01T00:00:00Z", "oldKeyExpiresAt": "2027-02-01T00:00:00Z"}),
    )
    .await;
    assert_eq!((a.status, a.field()), (400, Some("oldKeyExpiresAt")));
    let a = patch(&srv, url, &json!({"newKeyExpiresAt": "next year"})).await;
    assert_eq!((a.status, a.field()), (400, Some("newKeyExpiresAt")));
    let a = patch(&srv, &format!("{url}?pskId=nope"), &json!({})).await;
    assert_eq!((a.status, a.field()), (400, Some("pskId")));
    assert!(a.message().contains("\"p1\", \"p2\""), "{}", a.message());
    let a = patch(&srv, &format!("{url}?psk=p1"), &json!({})).await;
    assert_eq!((a.status, a.field()), (400, Some("psk")));
    assert!(srv.fake.seen.lock().unwrap().is_empty());

    let none = start("").await;
    let a = patch(&none, url, &json!({})).await;
    assert_eq!((a.status, a.field()), (400, Some("pskId")));
    assert!(a.message().contains("[[psk]]"), "{}", a.message());
}

#[tokio::test]
async fn running_failed_deferred_and_assisted_rotations() {
    let srv = start(PSKS).await;
    let a = patch(&srv, "/orgs/local/api-keys/rotate/busy", &json!({})).await;
    assert_eq!(a.status, 409);
    assert_eq!(a.body["error"]["rotation_id"], "r-run");

    let a = patch(&srv, "/orgs/local/api-keys/rotate/failing", &json!({})).await;
    assert_eq!(a.status, 502, "{}", a.body);
    assert!(a.message().contains("provider said no"), "{}", a.message());
    assert!(a.message().contains("failed in issuing"), "{}", a.message());

    let a = patch(
        &srv,
        "/orgs/local/api-keys/rotate/slow?wait=false",
        &json!({}),
    )
    .await;
    assert_eq!(a.status, 202);
    assert_eq!(
        a.body,
        json!({"data": {"rotationId": "r3", "status": "/v1/rotations/r3"}})
    );
    assert_eq!(a.headers["location"], "/v1/rotations/r3");
    let g = send(
        &srv,
        "GET",
        "/v1/rotations/r3/encrypted-secret",
        None,
        &Value::Null,
    )
    .await;
    assert_eq!(g.status, 202, "not issued yet: {}", g.body);

    let a = patch(&srv, "/orgs/local/api-keys/rotate/manual", &json!({})).await;
    assert_eq!(a.status, 202, "assisted rotations do not block: {}", a.body);

    // A rotation started with wait=false hands its secret out later, once.
    let a = patch(
        &srv,
        "/orgs/local/api-keys/rotate/k1?wait=false",
        &json!({}),
    )
    .await;
    assert_eq!(a.status, 202);
    let id = a.body["data"]["rotationId"].as_str().unwrap().to_string();
    let path = format!("/v1/rotations/{id}/encrypted-secret");
    let g = send(&srv, "GET", &path, None, &Value::Null).await;
    assert_eq!(g.status, 200, "{}", g.body);
    assert_eq!(g.body["data"]["id"], format!("{id}-key"));
    assert_eq!(
        send(&srv, "GET", &path, None, &Value::Null).await.status,
        410
    );

    let g = send(
        &srv,
        "GET",
        "/v1/rotations/nope/encrypted-secret",
        None,
        &Value::Null,
    )
    .await;
    assert_eq!(g.status, 404);
}
