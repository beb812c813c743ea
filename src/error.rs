//! The error of a call to a provider or sink: transient (retry with backoff,
//! honouring Retry-After) or permanent (fail the step at once). Messages
//! carry ids and statuses, never secret values.

use jiff::SignedDuration;

/// An external call failed.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    /// What went wrong, without secret material.
    pub message: String,
    /// Worth retrying (timeouts, 5xx, 429, connection errors).
    pub transient: bool,
    /// The peer asked us to wait this long (Retry-After).
    pub retry_after: Option<SignedDuration>,
}

impl CallError {
    /// A failure worth retrying.
    pub fn transient(message: impl Into<String>) -> CallError {
        CallError {
            message: message.into(),
            transient: true,
            retry_after: None,
        }
    }

    /// A failure that retrying will not fix.
    pub fn permanent(message: impl Into<String>) -> CallError {
        CallError {
            message: message.into(),
            transient: false,
            retry_after: None,
        }
    }

    /// Adds a Retry-After.
    pub fn with_retry_after(mut self, after: SignedDuration) -> CallError {
        self.retry_after = Some(after);
        self
    }
}
