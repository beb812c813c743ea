//! Connection limits over a real unix socket: idle and header timeouts,
//! the body timeout, the cap that closes idle connections to make room,
//! and refusal when every connection is busy. The backend is a fake whose
//! `rotate` holds its request until the test lets it go. Waits are for
//! events (an answer, an end of file) with generous bounds, never sleeps.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{Semaphore, oneshot};

use crate::control::server::{bind, serve_with_clock};
use crate::control::views::tests::{plan_config, rotation_rec, store_in, ts};
use crate::control::{ApiError, Backend, EnrollRequest, RotateRequest};
use keyrot_config::Config;
use keyrot_core::clock::ManualClock;
use keyrot_core::model::{RotationRecord, RotationState};
use keyrot_core::store::Store;

/// Far more than any wait here should take.
const BOUND: Duration = Duration::from_secs(20);

struct Fake {
    store: Arc<Store>,
    cfg: Arc<Config>,
    /// `rotate` waits for a permit.
    gate: Semaphore,
    /// `rotate` calls that have started.
    started: Semaphore,
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
        self.started.add_permits(1);
        let _permit = self
            .gate
            .acquire()
            .await
            .map_err(|e| ApiError::new(500, e.to_string()))?;
        Ok(rotation_rec("r1", &req.key, RotationState::Pending))
    }
    async fn resume(&self, id: &str) -> Result<RotationRecord, ApiError> {
        Err(ApiError::new(404, format!("unknown rotation {id}")))
    }
    async fn abort(&self, id: &str) -> Result<RotationRecord, ApiError> {
        Err(ApiError::new(404, format!("unknown rotation {id}")))
    }
    async fn enroll(&self, id: &str, _req: EnrollRequest) -> Result<RotationRecord, ApiError> {
        Err(ApiError::new(404, format!("unknown rotation {id}")))
    }
    async fn reload(&self) -> Result<(), ApiError> {
        Ok(())
    }
}

struct Running {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    fake: Arc<Fake>,
    _stop: oneshot::Sender<()>,
}

/// A server whose `[daemon]` has `max` connections and the timeouts given
/// in milliseconds.
async fn start(max: usize, header_ms: i64, body_ms: i64, idle_ms: i64) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = plan_config();
    cfg.daemon.control_max_connections = max;
    cfg.daemon.control_header_timeout = jiff::SignedDuration::from_millis(header_ms);
    cfg.daemon.control_body_timeout = jiff::SignedDuration::from_millis(body_ms);
    cfg.daemon.control_idle_timeout = jiff::SignedDuration::from_millis(idle_ms);
    let fake = Arc::new(Fake {
        store: Arc::new(store_in(dir.path())),
        cfg: Arc::new(cfg),
        gate: Semaphore::new(0),
        started: Semaphore::new(0),
    });
    let socket = dir.path().join("control.sock");
    let listener = bind(&socket, 0o600).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let backend: Arc<dyn Backend> = fake.clone();
    let clock = Arc::new(ManualClock::new(ts("2026-11-23T12:00Z")));
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

/// Reads until the server closes the connection; the bytes it sent.
async fn until_closed(conn: &mut UnixStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(BOUND, conn.read_to_end(&mut out))
        .await
        .expect("the server never closed the connection")
        .unwrap_or_default();
    out
}

/// Sends `request` on a new connection and reads the answer to the end
/// (every request here says `Connection: close`).
async fn exchange(socket: &std::path::Path, request: &str) -> String {
    let mut conn = UnixStream::connect(socket).await.unwrap();
    // A refused connection may be closed before the request is written.
    let _ = conn.write_all(request.as_bytes()).await;
    String::from_utf8_lossy(&until_closed(&mut conn).await).into_owned()
}

const HEALTH: &str = "GET /v1/health HTTP/1.1\r\nHost: keyrot\r\nConnection: close\r\n\r\n";

#[tokio::test]
async fn silent_connections_are_closed_by_the_header_and_idle_timeouts() {
    // Header timeout short: a connection that sends nothing is closed.
    let srv = start(16, 200, 60_000, 60_000).await;
    let mut quiet = UnixStream::connect(&srv.socket).await.unwrap();
    assert!(until_closed(&mut quiet).await.is_empty());
    // A half-sent head is closed as well.
    let mut half = UnixStream::connect(&srv.socket).await.unwrap();
    half.write_all(b"GET /v1/health HTTP/1.1\r\nHost: k")
        .await
        .unwrap();
    until_closed(&mut half).await;

    // Idle timeout short, header timeout long: closed by the idle timer.
    let srv = start(16, 60_000, 60_000, 200).await;
    let mut quiet = UnixStream::connect(&srv.socket).await.unwrap();
    assert!(until_closed(&mut quiet).await.is_empty());
    // A connection that got its answer and stays open is idle too.
    let mut kept = UnixStream::connect(&srv.socket).await.unwrap();
    kept.write_all(b"GET /v1/health HTTP/1.1\r\nHost: keyrot\r\n\r\n")
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&until_closed(&mut kept).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_body_that_does_not_arrive_is_answered_408() {
    let srv = start(16, 60_000, 300, 60_000).await;
    let mut conn = UnixStream::connect(&srv.socket).await.unwrap();
    conn.write_all(
        b"POST /v1/rotate HTTP/1.1\r\nHost: keyrot\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"key\":",
    )
    .await
    .unwrap();
    let answer = String::from_utf8_lossy(&until_closed(&mut conn).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("daemon.control_body_timeout"), "{answer}");
    assert_eq!(
        srv.fake.started.available_permits(),
        0,
        "the backend was called"
    );
}

#[tokio::test]
async fn past_the_cap_idle_connections_make_room() {
    let max = 8;
    let srv = start(max, 60_000, 60_000, 60_000).await;
    let mut idle = Vec::new();
    for _ in 0..max + 100 {
        idle.push(UnixStream::connect(&srv.socket).await.unwrap());
    }
    let started = tokio::time::Instant::now();
    let answer = tokio::time::timeout(BOUND, exchange(&srv.socket, HEALTH))
        .await
        .expect("/v1/health did not answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    println!(
        "/v1/health answered in {:?} with {} idle connections held",
        started.elapsed(),
        idle.len()
    );
    // The oldest were closed to make room; at most `max` stay open.
    let first = idle.first_mut().unwrap();
    assert!(until_closed(first).await.is_empty());
}

#[tokio::test]
async fn when_every_connection_is_busy_a_new_one_is_refused() {
    let srv = start(2, 60_000, 60_000, 60_000).await;
    let rotate = "POST /v1/rotate HTTP/1.1\r\nHost: keyrot\r\nContent-Type: application/json\r\n\
                  Content-Length: 11\r\nConnection: close\r\n\r\n{\"key\":\"k\"}";
    let busy: Vec<_> = (0..2)
        .map(|_| tokio::spawn(exchange_owned(srv.socket.clone(), rotate)))
        .collect();
    // Both requests are in the backend.
    let _both = tokio::time::timeout(BOUND, srv.fake.started.acquire_many(2))
        .await
        .unwrap()
        .unwrap();
    let refused = tokio::time::timeout(BOUND, exchange(&srv.socket, HEALTH))
        .await
        .expect("a refused connection is closed at once");
    assert!(refused.is_empty(), "{refused}");
    srv.fake.gate.add_permits(2);
    for b in busy {
        let answer = b.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    }
    let answer = exchange(&srv.socket, HEALTH).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

async fn exchange_owned(socket: PathBuf, request: &'static str) -> String {
    exchange(&socket, request).await
}
