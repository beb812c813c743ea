//! Pacing HTTP requests: a token bucket ([`RateLimit`]) and the task-local
//! scope a rate-limited provider call runs in ([`within`]). [`before_request`],
//! called by [`crate::http::send`] before every request (every HTTP peer goes
//! through it: OpenBao/Vault, `http`, `aws-iam`, `atlassian`, the sandbox
//! admin API), lets the first request of a call use the token taken for the
//! call and makes every further one wait for a token of its own; outside a
//! limited call it returns at once. The provider wrapper that applies a
//! limit to every trait call is `crate::provider::limit::Limited`.
//!
//! The bucket holds one token (burst 1): requests are spaced `1/rate`
//! apart, so the rate holds over every window, however short, as API
//! quotas such as "10 requests per second" are usually enforced.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// A token bucket of one token refilled `rate` times a second. The
/// schedule is [`RateLimit::reserve`], which takes the time as a parameter.
#[derive(Debug)]
pub struct RateLimit {
    /// Requests per second, as configured.
    rate: f64,
    /// Time between two requests: `1 / rate`.
    interval: Duration,
    /// The earliest instant the next request may go; `None` before the
    /// first one.
    next: Mutex<Option<Instant>>,
    /// Tokens handed out so far.
    taken: AtomicU64,
}

impl RateLimit {
    /// A bucket of `per_second` requests a second; the config keeps it
    /// between one a day and a million a second.
    pub fn new(per_second: f64) -> RateLimit {
        let interval = Duration::try_from_secs_f64(1.0 / per_second)
            .unwrap_or(Duration::from_secs(86_400))
            .min(Duration::from_secs(86_400));
        RateLimit {
            rate: per_second,
            interval,
            next: Mutex::new(None),
            taken: AtomicU64::new(0),
        }
    }

    /// Requests per second.
    pub fn per_second(&self) -> f64 {
        self.rate
    }

    /// Tokens handed out so far: the requests (and request-less calls)
    /// let through.
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    /// Takes the next free slot for a request asked for at `now`: the
    /// instant it may be sent (`now` when the bucket is full).
    pub fn reserve(&self, now: Instant) -> Instant {
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let at = next.map_or(now, |n| n.max(now));
        *next = Some(at + self.interval);
        self.taken.fetch_add(1, Ordering::Relaxed);
        at
    }

    /// Waits for a token. A caller dropped while waiting loses its slot:
    /// the rate only gets lower.
    pub async fn acquire(&self) {
        let at = self.reserve(Instant::now());
        tokio::time::sleep_until(at).await;
    }
}

/// The limit of the provider call running in this task.
struct Scope {
    /// The provider's bucket.
    limit: Arc<RateLimit>,
    /// The token the wrapper took before the call is still unused.
    prepaid: AtomicBool,
}

tokio::task_local! {
    /// Set by [`Limited`] around each call it delegates.
    static SCOPE: Arc<Scope>;
}

/// Waits until the provider call running in this task may send one more
/// HTTP request; returns at once outside a rate-limited call. HTTP
/// clients call it before every request.
pub async fn before_request() {
    let Ok(scope) = SCOPE.try_with(Arc::clone) else {
        return;
    };
    if !scope.prepaid.swap(false, Ordering::Relaxed) {
        scope.limit.acquire().await;
    }
}

/// Runs `call` once a token of `limit` is free, inside its scope: the
/// call's first HTTP request uses that token, every further one waits.
pub async fn within<T>(limit: &Arc<RateLimit>, call: impl Future<Output = T>) -> T {
    limit.acquire().await;
    let scope = Arc::new(Scope {
        limit: Arc::clone(limit),
        prepaid: AtomicBool::new(true),
    });
    SCOPE.scope(scope, call).await
}
