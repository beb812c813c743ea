//! The gate every Admin API request passes before authentication: failures
//! forced through `POST /_sandbox/fail` (the next N responses get a chosen
//! status and `Retry-After`), then the optional requests-per-second budget
//! (`--rate-limit N`, answered with 429 and `Retry-After: 1`). Admin
//! endpoints under `/_sandbox/` never pass through it.

use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::time::{Duration, Instant};

use super::App;
use super::error::ApiError;

/// Failures still to be forced.
#[derive(Clone, Copy, Debug)]
struct Forced {
    /// Status to answer with.
    status: StatusCode,
    /// `Retry-After` seconds, if any.
    retry_after: Option<u32>,
    /// How many more responses to fail.
    remaining: u32,
}

/// The current one-second window of the rate limit.
#[derive(Clone, Copy, Debug)]
struct Window {
    /// When the window began.
    start: Instant,
    /// Requests admitted in it.
    used: u32,
}

/// Rate limit and forced-failure state, shared by all requests.
#[derive(Debug)]
pub struct Gate {
    /// Requests per second allowed; `None` means unlimited.
    rate_limit: Option<u32>,
    /// The current window.
    window: Mutex<Window>,
    /// Pending forced failures.
    forced: Mutex<Option<Forced>>,
}

impl Gate {
    /// A gate with an optional requests-per-second budget.
    pub fn new(rate_limit: Option<u32>) -> Gate {
        Gate {
            rate_limit,
            window: Mutex::new(Window {
                start: Instant::now(),
                used: 0,
            }),
            forced: Mutex::new(None),
        }
    }

    /// Makes the next `count` API responses fail with `status`.
    pub fn force(&self, status: StatusCode, retry_after: Option<u32>, count: u32) {
        let mut forced = self.forced.lock().unwrap_or_else(|e| e.into_inner());
        *forced = (count > 0).then_some(Forced {
            status,
            retry_after,
            remaining: count,
        });
    }

    /// Admits a request, or says which error to answer instead.
    pub fn admit(&self) -> Result<(), ApiError> {
        self.admit_at(Instant::now())
    }

    /// [`Gate::admit`] at monotonic instant `now`.
    fn admit_at(&self, now: Instant) -> Result<(), ApiError> {
        self.take_forced()?;
        let Some(limit) = self.rate_limit else {
            return Ok(());
        };
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if now.duration_since(w.start) >= Duration::from_secs(1) {
            *w = Window {
                start: now,
                used: 0,
            };
        }
        if w.used >= limit {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                format!("rate limit of {limit} requests per second exceeded; retry later"),
            );
            e.retry_after = Some(1);
            return Err(e);
        }
        w.used += 1;
        Ok(())
    }

    /// Consumes one forced failure, if any are pending.
    fn take_forced(&self) -> Result<(), ApiError> {
        let mut slot = self.forced.lock().unwrap_or_else(|e| e.into_inner());
        let Some(f) = slot.as_mut() else {
            return Ok(());
        };
        f.remaining -= 1;
        let (status, retry_after) = (f.status, f.retry_after);
        if f.remaining == 0 {
            *slot = None;
        }
        let code = if status == StatusCode::TOO_MANY_REQUESTS {
            "RATE_LIMITED"
        } else {
            "SANDBOX_FORCED_FAILURE"
        };
        let mut e = ApiError::new(status, code, "failure forced through /_sandbox/fail");
        e.retry_after = retry_after;
        Err(e)
    }
}

/// Middleware: runs [`Gate::admit`] before the Admin API handlers.
pub async fn gate(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    match app.gate.admit() {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_failures_run_out() {
        let g = Gate::new(None);
        g.force(StatusCode::SERVICE_UNAVAILABLE, Some(3), 2);
        let e = g.admit().unwrap_err();
        assert_eq!(
            (e.status, e.retry_after),
            (StatusCode::SERVICE_UNAVAILABLE, Some(3))
        );
        assert!(g.admit().is_err());
        assert!(g.admit().is_ok());
    }

    #[test]
    fn budget_refills_each_second() {
        let g = Gate::new(Some(2));
        let t = g.window.lock().unwrap().start;
        assert!(g.admit_at(t).is_ok());
        assert!(g.admit_at(t + Duration::from_millis(10)).is_ok());
        let e = g.admit_at(t + Duration::from_millis(20)).unwrap_err();
        assert_eq!(
            (e.status, e.retry_after),
            (StatusCode::TOO_MANY_REQUESTS, Some(1))
        );
        assert!(g.admit_at(t + Duration::from_millis(1001)).is_ok());
    }
}
