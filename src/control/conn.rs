//! The control server's connections: accepting, serving HTTP/1.1 on each,
//! and keeping a hostile or careless client from exhausting the daemon.
//!
//! - A connection must send a complete request head within the header
//!   timeout, counted from connecting or from its previous answer (so a
//!   connection that sends nothing is closed then too).
//! - A request's body must arrive within the body timeout after its head;
//!   the handler reading it then gets an error (answered 408).
//! - A connection with no request in flight is closed after the idle
//!   timeout, whatever it is doing (e.g. not reading its answer).
//! - At most `max_connections` are open (counted until their descriptor
//!   is closed). A new connection past the cap has the longest-idle one
//!   (no request in flight) closed to make room, so idle connections can
//!   never lock out `/v1/health` or the CLI; when every connection is busy
//!   with a request, the new one is closed at once. Refusals and accept failures are logged at most once per
//!   [`LOG_EVERY`], with a count. Running out of descriptors at accept
//!   (EMFILE, ENFILE) closes an idle connection too, and is retried.
//!
//! The limits are read from the configuration in force at each accept, so
//! a reload applies them to new connections.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};

use super::peer::Peer;
use keyrot_config::DaemonConfig;

/// Shortest time between two log lines about refused connections or
/// failed accepts.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// Pause after a failed accept (it would fail again at once otherwise).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Longest wait for a connection told to close, before looking again.
const ROOM_WAIT: Duration = Duration::from_millis(100);

/// Connection limits, from `[daemon]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Time to send a complete request head.
    pub header: Duration,
    /// Time for a request's body after its head.
    pub body: Duration,
    /// Time a connection may stay open with no request in flight.
    pub idle: Duration,
}

impl Limits {
    /// The limits `[daemon]` sets.
    pub fn of(d: &DaemonConfig) -> Limits {
        Limits {
            max_connections: d.control_max_connections,
            header: d.control_header_timeout.unsigned_abs(),
            body: d.control_body_timeout.unsigned_abs(),
            idle: d.control_idle_timeout.unsigned_abs(),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes; then stops
/// accepting, lets requests in flight finish and closes idle connections.
///
/// Connections count until their descriptor is closed, so the cap bounds
/// the descriptors the control API holds (plus the one just accepted): at
/// the cap, the loop closes an idle connection and waits for it to be
/// gone before serving the new one and accepting again. Nothing is closed
/// to make room until a new connection needs it.
pub(super) async fn run(
    listener: UnixListener,
    app: Router,
    limits: impl Fn() -> Limits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let tracker = Arc::new(Tracker::default());
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut refused = Throttle::default();
    let mut failed = Throttle::default();
    let mut shutdown = pin!(shutdown);
    'serve: loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = tasks.join_next() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let limits = limits();
                    // At the cap: close an idle connection and wait for its
                    // descriptor to be gone before serving this one.
                    let room = loop {
                        if tracker.live() < limits.max_connections {
                            break true;
                        }
                        if !tracker.make_room() {
                            break false;
                        }
                        tokio::select! {
                            () = &mut shutdown => break 'serve,
                            () = tracker.closed.notified() => {}
                            // The one told to close took a request first:
                            // look again (it finishes that request).
                            () = tokio::time::sleep(ROOM_WAIT) => {}
                        }
                    };
                    if room {
                        let conn = Connection { tracker: Arc::clone(&tracker), entry: tracker.admit(), limits };
                        tasks.spawn(conn.serve(stream, app.clone(), stopped.clone()));
                    } else if let Some(more) = refused.hit(Instant::now()) {
                        // Every connection is busy with a request: refused
                        // at once rather than left waiting in the backlog.
                        tracing::warn!(max_connections = limits.max_connections, also_refused = more,
                            "control connection refused: every connection is busy with a request \
                             (daemon.control_max_connections)");
                    }
                }
                Err(e) => {
                    if let Some(more) = failed.hit(Instant::now()) {
                        tracing::warn!(error = %e, also_failed = more, "accepting a control connection failed");
                    }
                    // Out of descriptors: an idle connection gives one
                    // back; otherwise pause (accept would fail at once).
                    let closing = fd_exhausted(&e) && tracker.make_room();
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tracker.closed.notified(), if closing => {}
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            },
        }
    }
    drop(listener);
    let _ = stop.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Whether `e` means the process or system is out of file descriptors
/// (or the kernel out of memory for one): it passes as connections close.
pub fn fd_exhausted(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Counts events and says when one may be logged: the first, then at
/// most one per [`LOG_EVERY`], with how many were not logged between.
#[derive(Default)]
struct Throttle {
    /// When the last one was logged.
    last: Option<Instant>,
    /// Events since then not logged.
    skipped: u64,
}

impl Throttle {
    /// Some(events not logged since the last logged one) when this one
    /// should be logged.
    fn hit(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|l| now.duration_since(l) < LOG_EVERY) {
            self.skipped += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.skipped))
    }
}

/// The open connections, until each one's descriptor is closed.
#[derive(Default)]
struct Tracker {
    /// By id.
    conns: Mutex<HashMap<u64, Arc<Entry>>>,
    /// The next id.
    next: AtomicU64,
    /// A connection was closed.
    closed: Notify,
}

impl Tracker {
    /// Connections open (closing ones included).
    fn live(&self) -> usize {
        lock(&self.conns).len()
    }

    /// Registers a new connection.
    fn admit(&self) -> Arc<Entry> {
        let entry = Arc::new(Entry::new(self.next.fetch_add(1, Ordering::Relaxed)));
        lock(&self.conns).insert(entry.id, Arc::clone(&entry));
        entry
    }

    /// Makes an idle connection close, the one idle longest, unless one
    /// is closing already. False when every connection is busy with a
    /// request (none will close soon).
    fn make_room(&self) -> bool {
        let conns = lock(&self.conns);
        let idle = || conns.values().filter(|e| e.in_flight() == 0);
        if idle().any(|e| e.evicting.load(Ordering::SeqCst)) {
            return true;
        }
        let Some(victim) = idle().min_by_key(|e| e.idle_since()) else {
            return false;
        };
        tracing::debug!(
            connection = victim.id,
            "closing an idle control connection to make room"
        );
        victim.evicting.store(true, Ordering::SeqCst);
        victim.evicted.notify_one();
        true
    }

    /// Forgets a connection whose descriptor is closed.
    fn remove(&self, id: u64) {
        lock(&self.conns).remove(&id);
        self.closed.notify_one();
    }
}

/// A std mutex's guard, poisoned or not (the data stays consistent: every
/// critical section is a single read or write).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One open connection's state, shared by its task and the tracker.
struct Entry {
    /// Its id.
    id: u64,
    /// Requests being handled (0 or 1: HTTP/1.1 handles one at a time).
    in_flight: AtomicUsize,
    /// When it last had no request in flight.
    idle_since: Mutex<Instant>,
    /// A request started or ended.
    changed: Notify,
    /// The tracker wants it closed.
    evicted: Notify,
    /// It was told to close.
    evicting: AtomicBool,
}

impl Entry {
    fn new(id: u64) -> Entry {
        Entry {
            id,
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            changed: Notify::new(),
            evicted: Notify::new(),
            evicting: AtomicBool::new(false),
        }
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    fn idle_since(&self) -> Instant {
        *lock(&self.idle_since)
    }

    /// When it has been idle for `idle`; None while a request is in flight.
    fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        (self.in_flight() == 0).then(|| self.idle_since() + idle)
    }
}

/// Marks a connection busy for as long as it lives.
struct Busy(Arc<Entry>);

impl Busy {
    fn enter(entry: &Arc<Entry>) -> Busy {
        entry.in_flight.fetch_add(1, Ordering::SeqCst);
        entry.changed.notify_one();
        Busy(Arc::clone(entry))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *lock(&self.0.idle_since) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_one();
    }
}

/// One accepted connection.
struct Connection {
    /// Where it is registered.
    tracker: Arc<Tracker>,
    /// Its state.
    entry: Arc<Entry>,
    /// Its limits (those in force when it was accepted).
    limits: Limits,
}

impl Connection {
    /// Serves HTTP/1.1 on `stream` until the client closes, a timeout
    /// fires, the tracker evicts it or the server stops.
    async fn serve(self, stream: UnixStream, app: Router, mut stop: watch::Receiver<bool>) {
        let Connection {
            tracker,
            entry,
            limits,
        } = self;
        let peer = Peer::of(&stream);
        let app = TowerToHyperService::new(app);
        let handler = {
            let entry = Arc::clone(&entry);
            hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let busy = Busy::enter(&entry);
                let mut req = req.map(|body| TimedBody::new(body, limits.body));
                req.extensions_mut().insert(ConnectInfo(peer.clone()));
                let call = hyper::service::Service::call(&app, req);
                async move {
                    let answer = call.await;
                    drop(busy);
                    answer
                }
            })
        };
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header)
            .keep_alive(true);
        let conn = builder.serve_connection(TokioIo::new(stream), handler);
        let mut conn = Box::pin(conn);
        let mut draining = false;
        loop {
            let idle_at = entry.idle_deadline(limits.idle);
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        tracing::debug!(error = %e, "control connection closed");
                    }
                    break;
                }
                () = entry.changed.notified() => {}
                () = entry.evicted.notified() => {
                    if entry.in_flight() == 0 {
                        break;
                    }
                    // Raced with a request: finish it, then close.
                    conn.as_mut().graceful_shutdown();
                    draining = true;
                }
                () = tokio::time::sleep_until(idle_at.unwrap_or_else(Instant::now)), if idle_at.is_some() => {
                    if entry.idle_deadline(limits.idle).is_some_and(|at| at <= Instant::now()) {
                        tracing::debug!(idle_timeout = ?limits.idle, "closing an idle control connection");
                        break;
                    }
                }
                _ = stop.changed(), if !draining => {
                    // Nothing to finish: close now rather than wait for
                    // a half-sent head to time out.
                    if entry.in_flight() == 0 {
                        break;
                    }
                    conn.as_mut().graceful_shutdown();
                    draining = true;
                }
            }
        }
        // The descriptor is closed before the tracker counts it gone.
        drop(conn);
        tracker.remove(entry.id);
    }
}

/// A request body that fails with [`BodyTimeout`] when it has not all
/// arrived by its deadline.
struct TimedBody {
    /// The body as hyper reads it.
    inner: Incoming,
    /// When it must be complete.
    deadline: Instant,
    /// The limit, for the error.
    limit: Duration,
    /// The timer, made the first time the body is not ready.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl TimedBody {
    fn new(inner: Incoming, limit: Duration) -> TimedBody {
        TimedBody {
            inner,
            deadline: Instant::now() + limit,
            limit,
            sleep: None,
        }
    }
}

/// A request body that did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {}s (daemon.control_body_timeout)", .0.as_secs_f64())]
pub struct BodyTimeout(pub Duration);

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(this.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
