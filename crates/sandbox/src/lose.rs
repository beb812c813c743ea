//! Lost answers, the failure a client of the rotate call must survive: the
//! server did everything (new key made, state saved, audit written) and the
//! answer never arrived. `POST /_sandbox/lose` arms the next N successful
//! rotate answers to be cut (`drop`: the connection closes with no complete
//! response) or held back (`stall`: sent only after a delay, so a test can
//! kill its client mid-call). Errors, other endpoints and the rotation
//! itself are untouched.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::App;
use super::error::ApiError;

/// Default `stallMs`.
const DEFAULT_STALL_MS: u64 = 10_000;

/// How an answer is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// The connection is cut before a complete response.
    Drop,
    /// The answer is sent after this delay (cut instead if the server stops).
    Stall(Duration),
}

/// Answers still to be lost, shared by all requests.
#[derive(Debug, Default)]
pub struct Losses {
    /// The loss and how many more answers it takes.
    pending: Mutex<Option<(Loss, u32)>>,
}

impl Losses {
    /// Makes the next `count` successful rotate answers suffer `loss`
    /// (`count` 0 clears), replacing what was armed before.
    pub fn arm(&self, loss: Loss, count: u32) {
        let mut slot = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        *slot = (count > 0).then_some((loss, count));
    }

    /// Consumes one armed loss, if any.
    pub fn take(&self) -> Option<Loss> {
        let mut slot = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let (loss, left) = slot.as_mut()?;
        let loss = *loss;
        *left -= 1;
        if *left == 0 {
            *slot = None;
        }
        Some(loss)
    }
}

/// Body of `POST /_sandbox/lose`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LoseBody {
    /// How many rotate answers to lose (default 1; 0 clears).
    #[serde(default = "default_count")]
    count: u32,
    /// `drop` (default) or `stall`.
    #[serde(default)]
    mode: Mode,
    /// For `stall`: milliseconds to wait after acting (default 10000).
    #[serde(default = "default_stall_ms")]
    stall_ms: u64,
}

/// The `mode` member.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    /// Cut the connection.
    #[default]
    Drop,
    /// Answer late.
    Stall,
}

/// Default `count`.
fn default_count() -> u32 {
    1
}

/// Default `stallMs`.
fn default_stall_ms() -> u64 {
    DEFAULT_STALL_MS
}

/// `POST /_sandbox/lose`: arms lost answers (204).
pub async fn lose(
    AxumState(app): AxumState<Arc<App>>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let raw: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &body
    };
    let req: LoseBody = serde_json::from_slice(raw)
        .map_err(|e| ApiError::field("body", format!("invalid request body: {e}")))?;
    let loss = match req.mode {
        Mode::Drop => Loss::Drop,
        Mode::Stall => Loss::Stall(Duration::from_millis(req.stall_ms)),
    };
    app.losses.arm(loss, req.count);
    Ok(StatusCode::NO_CONTENT)
}

/// Sends `response`, or loses it if a loss is armed.
pub async fn deliver(app: &App, response: Response) -> Response {
    match app.losses.take() {
        None => response,
        Some(Loss::Drop) => {
            tracing::info!("rotate answer dropped (/_sandbox/lose)");
            cut()
        }
        Some(Loss::Stall(delay)) => {
            tracing::info!(?delay, "rotate answer stalled (/_sandbox/lose)");
            let mut closing = app.closing.subscribe();
            tokio::select! {
                () = tokio::time::sleep(delay) => response,
                _ = closing.wait_for(|c| *c) => cut(),
            }
        }
    }
}

/// A response whose body fails before its first byte: hyper then closes
/// the connection without completing the response, so the client sees an
/// error rather than an answer.
fn cut() -> Response {
    let failed = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("answer lost on purpose"))
    });
    Response::new(Body::from_stream(failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn armed_losses_run_out_and_zero_clears() {
        let l = Losses::default();
        assert_eq!(l.take(), None);
        l.arm(Loss::Drop, 2);
        assert_eq!(l.take(), Some(Loss::Drop));
        assert_eq!(l.take(), Some(Loss::Drop));
        assert_eq!(l.take(), None);
        l.arm(Loss::Stall(Duration::from_millis(5)), 3);
        l.arm(Loss::Drop, 0);
        assert_eq!(l.take(), None);
    }
}
