//! The control server and client over a real unix socket in a temporary
//! directory. The daemon behind the API is a fake [`Backend`] (canned
//! answers over a real store): the state machine is tested elsewhere, and
//! what is under test here is the HTTP surface.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::oneshot;

use super::*;
use crate::control::client::{Client, ClientError};
use crate::control::views::tests::{info, key_rec, plan_config, put, rotation_rec, store_in, ts};
use crate::control::{HistoryResponse, KeyRow, PlanResponse, RotateRequest, StatusResponse};
use keyrot_core::clock::ManualClock;
use keyrot_core::model::{RotationRecord, RotationState};

/// Canned answers over a real store.
struct Fake {
    /// The store the views read.
    store: Arc<Store>,
    /// The config the plan reads.
    cfg: Arc<Config>,
    /// Requests `rotate` received.
    seen: Mutex<Vec<RotateRequest>>,
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
        self.seen.lock().unwrap().push(req.clone());
        if req.key == "busy" {
            let mut e = ApiError::new(409, "a rotation of p/busy is already running");
            e.rotation_id = Some("r-running".into());
            return Err(e);
        }
        Ok(rotation_rec("r-new", "p/ci-bot", RotationState::Pending))
    }
    async fn resume(&self, id: &str) -> Result<RotationRecord, ApiError> {
        Ok(rotation_rec(id, "p/ci-bot", RotationState::Distributing))
    }
    async fn abort(&self, id: &str) -> Result<RotationRecord, ApiError> {
        if id == "done" {
            return Err(ApiError::new(
                409,
                "rotation done is completed: nothing to abort",
            ));
        }
        Ok(rotation_rec(id, "p/ci-bot", RotationState::Aborted))
    }
    async fn enroll(
        &self,
        id: &str,
        req: crate::control::EnrollRequest,
    ) -> Result<RotationRecord, ApiError> {
        let _ = req;
        Ok(rotation_rec(id, "p/ci-bot", RotationState::Issued))
    }
    async fn reload(&self) -> Result<(), ApiError> {
        Ok(())
    }
}

/// A running server on a temporary socket.
struct Running {
    /// Keeps the directory.
    _dir: tempfile::TempDir,
    /// The socket.
    socket: PathBuf,
    /// The backend, for inspecting what it saw.
    fake: Arc<Fake>,
    /// Stops the server.
    stop: oneshot::Sender<()>,
    /// The server task.
    task: tokio::task::JoinHandle<io::Result<()>>,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let key = info(
        "k1",
        &["repo:read"],
        "2026-01-01T00:00Z",
        "2026-12-01T00:00Z",
    );
    put(
        &store,
        &[
            key_rec("p", "ci-bot", Some(key)),
            key_rec("p", "deploy", None),
        ],
        &[rotation_rec("r1", "p/ci-bot", RotationState::Completed)],
    );
    let fake = Arc::new(Fake {
        store: Arc::new(store),
        cfg: Arc::new(plan_config()),
        seen: Mutex::new(Vec::new()),
    });
    let socket = dir.path().join("run/control.sock");
    let listener = bind(&socket, 0o660).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let clock = Arc::new(ManualClock::new(ts("2026-11-23T12:00Z")));
    let backend: Arc<dyn Backend> = fake.clone();
    let task = tokio::spawn(serve_with_clock(listener, backend, clock, async {
        let _ = stopped.await;
    }));
    Running {
        _dir: dir,
        socket,
        fake,
        stop,
        task,
    }
}

/// Sends a raw request (to test what the client never sends).
async fn raw(
    socket: &Path,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, ErrorBody) {
    keyrot_core::crypto::tls::provider();
    let http = reqwest::Client::builder()
        .unix_socket(socket)
        .build()
        .unwrap();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = http
        .request(method, format!("http://keyrot{path}"))
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "not an ErrorBody ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, body)
}

fn api_error(e: ClientError) -> ErrorBody {
    match e {
        ClientError::Api(b) => b,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn status_keys_history_plan_and_graceful_shutdown() {
    let srv = start().await;
    let mode = std::fs::metadata(&srv.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660);
    let client = Client::new(&srv.socket);
    assert!(client.is_running().await);

    let st: StatusResponse = client.get("/v1/status").await.unwrap();
    assert!(st.live);
    assert_eq!(st.keys.len(), 2);
    assert_eq!(st.keys[0].slot, "p/ci-bot");
    assert_eq!(st.keys[0].days_left, Some(7));
    assert_eq!(st.keys[0].rotation_state.as_deref(), Some("completed"));
    assert_eq!(st.keys[1].flags, ["no-key"]);
    let keys: Vec<KeyRow> = client.get("/v1/keys").await.unwrap();
    assert_eq!(keys, st.keys);

    let rec: keyrot_core::model::KeyRecord = client.get("/v1/keys/p/ci-bot").await.unwrap();
    assert_eq!(rec.current.unwrap().id, "k1");

    let h: HistoryResponse = client.get("/v1/history?key=ci-bot&limit=5").await.unwrap();
    assert_eq!(h.rotations.len(), 1);
    assert!(
        h.rotations[0]
            .new_key
            .as_ref()
            .unwrap()
            .secret_sha256
            .is_empty()
    );
    let r: RotationRecord = client.get("/v1/rotations/r1").await.unwrap();
    assert_eq!(r.state, RotationState::Completed);

    let plan: PlanResponse = client.get("/v1/plan?days=10").await.unwrap();
    assert_eq!(plan.days, 10);
    assert_eq!(plan.rows.len(), 2);
    let audit: Vec<keyrot_core::model::AuditEntry> = client.get("/v1/audit?after=0").await.unwrap();
    assert!(audit.is_empty());
    client.post_no_content("/v1/reload").await.unwrap();

    srv.stop.send(()).unwrap();
    srv.task.await.unwrap().unwrap();
    assert!(!client.is_running().await);
}

#[tokio::test]
async fn unknown_things_are_404_with_suggestions() {
    let srv = start().await;
    let client = Client::new(&srv.socket);
    let e = client
        .get::<HistoryResponse>("/v1/history?key=ci-bto")
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(404));
    assert_eq!(
        e.to_string(),
        "unknown key \"ci-bto\"; did you mean ci-bot?"
    );
    let b = api_error(e);
    assert_eq!(b.error.suggestions, ["ci-bot"]);

    let e = client
        .get::<RotationRecord>("/v1/rotations/nope")
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(404));
    let e = client.get::<KeyRow>("/v1/keys/p/ci-bto").await.unwrap_err();
    assert_eq!(api_error(e).error.suggestions, ["p/ci-bot"]);

    let (status, body) = raw(&srv.socket, "GET", "/v1/nothing", None, Vec::new()).await;
    assert_eq!((status, body.error.code), (404, 404));
    assert!(body.error.message.contains("/v1/nothing"));
    let (status, _) = raw(&srv.socket, "DELETE", "/v1/status", None, Vec::new()).await;
    assert_eq!(status, 405);
    let (status, body) = raw(
        &srv.socket,
        "GET",
        "/v1/history?limit=lots",
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body.error.field.as_deref(),
        Some("limit"),
        "{:?}",
        body.error
    );
    let (status, body) = raw(&srv.socket, "GET", "/v1/plan?dayz=3", None, Vec::new()).await;
    assert_eq!((status, body.error.field.as_deref()), (400, Some("dayz")));
}

#[tokio::test]
async fn post_bodies_are_checked() {
    let srv = start().await;
    let good = br#"{"key":"ci-bot"}"#.to_vec();
    let (status, body) = raw(
        &srv.socket,
        "POST",
        "/v1/rotate",
        Some("text/plain"),
        good.clone(),
    )
    .await;
    assert_eq!((status, body.error.code), (415, 415));
    let (status, _) = raw(&srv.socket, "POST", "/v1/rotate", None, good).await;
    assert_eq!(status, 415);

    let mut big = br#"{"key":"ci-bot","reason":""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 100 * 1024));
    big.extend(br#""}"#);
    let (status, body) = raw(
        &srv.socket,
        "POST",
        "/v1/rotate",
        Some("application/json"),
        big,
    )
    .await;
    assert_eq!(status, 413);
    assert!(
        body.error.message.contains("64 KiB"),
        "{}",
        body.error.message
    );

    let (status, body) = raw(
        &srv.socket,
        "POST",
        "/v1/rotate",
        Some("application/json"),
        b"{".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.error.message.starts_with("invalid request body"));

    let client = Client::new(&srv.socket);
    let e = client
        .post::<_, RotationRecord>(
            "/v1/rotate",
            &serde_json::json!({"key": "ci-bot", "bogus": 1}),
        )
        .await
        .unwrap_err();
    let b = api_error(e);
    assert_eq!(
        (b.error.code, b.error.field.as_deref()),
        (400, Some("bogus"))
    );
    assert!(
        b.error.message.contains("unknown field `bogus`"),
        "{}",
        b.error.message
    );

    let e = client
        .post::<_, RotationRecord>("/v1/rotate", &serde_json::json!({"reason": "x"}))
        .await
        .unwrap_err();
    assert_eq!(api_error(e).error.field.as_deref(), Some("key"));
    let e = client
        .post::<_, RotationRecord>(
            "/v1/rotate",
            &serde_json::json!({"key": "ci-bot", "new_expires_at": "soon"}),
        )
        .await
        .unwrap_err();
    assert_eq!(api_error(e).error.field.as_deref(), Some("new_expires_at"));
    assert!(
        srv.fake.seen.lock().unwrap().is_empty(),
        "no bad request reached the backend"
    );
}

#[tokio::test]
async fn rotate_resume_abort_and_409_passthrough() {
    let srv = start().await;
    let client = Client::new(&srv.socket);
    let req = RotateRequest {
        key: "ci-bot".into(),
        reason: Some("leaked".into()),
        rotated_by: Some("alice".into()),
        initiated_from: Some("cli".into()),
        ..RotateRequest::default()
    };
    let rec: RotationRecord = client.post("/v1/rotate", &req).await.unwrap();
    assert_eq!(
        (rec.id.as_str(), rec.state),
        ("r-new", RotationState::Pending)
    );
    assert!(
        rec.new_key.unwrap().secret_sha256.is_empty(),
        "the secret hash is never served"
    );
    let seen = srv.fake.seen.lock().unwrap().clone();
    assert_eq!(seen[0].reason.as_deref(), Some("leaked"));
    assert_eq!(seen[0].rotated_by.as_deref(), Some("alice"));

    let busy = RotateRequest {
        key: "busy".into(),
        ..RotateRequest::default()
    };
    let e = client
        .post::<_, RotationRecord>("/v1/rotate", &busy)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "a rotation of p/busy is already running (rotation r-running)"
    );
    let b = api_error(e);
    assert_eq!(
        (b.error.code, b.error.rotation_id.as_deref()),
        (409, Some("r-running"))
    );

    let r: RotationRecord = client.post_empty("/v1/rotations/r9/resume").await.unwrap();
    assert_eq!(r.state, RotationState::Distributing);
    let r: RotationRecord = client.post_empty("/v1/rotations/r9/abort").await.unwrap();
    assert_eq!(r.state, RotationState::Aborted);
    let e = client
        .post_empty::<RotationRecord>("/v1/rotations/done/abort")
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(409));
}

#[tokio::test]
async fn bind_replaces_only_a_stale_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    // A socket file nobody listens on (the listener is dropped).
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let client = Client::new(&path);
    assert!(matches!(
        client.get::<serde_json::Value>("/v1/health").await,
        Err(ClientError::NotRunning { .. })
    ));
    let live = bind(&path, 0o600).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let e = bind(&path, 0o600).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    drop(live);

    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "x").unwrap();
    assert_eq!(
        bind(&file, 0o600).unwrap_err().kind(),
        io::ErrorKind::AlreadyExists
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");

    let missing = Client::new(dir.path().join("absent.sock"));
    let e = missing
        .get::<serde_json::Value>("/v1/health")
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("keyrot daemon is not running (no answer on ")
    );
}

#[test]
fn field_names_come_from_serde_messages() {
    assert_eq!(
        field_of("unknown field `x`, expected `key`").as_deref(),
        Some("x")
    );
    assert_eq!(
        field_of("missing field `key` at line 1").as_deref(),
        Some("key")
    );
    assert_eq!(field_of("limit: invalid digit").as_deref(), Some("limit"));
    assert_eq!(field_of("expected value at line 1 column 1"), None);
}
