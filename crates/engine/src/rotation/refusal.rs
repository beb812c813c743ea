//! Why the state machine refused an operator's request (start, resume,
//! restart, abort, enroll). The control layer maps each kind to an HTTP
//! status; the state machine knows nothing of HTTP.

use super::EngineError;

/// A request the state machine refused, and why. Never carries secret
/// material.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No such rotation or key.
    #[error("{0}")]
    Unknown(String),
    /// The rotation's or key's state forbids it now (a step is running,
    /// the rotation is not failed, a rotation is already running, ...).
    #[error("{message}")]
    Conflict {
        /// What to do instead.
        message: String,
        /// The rotation already running, when that is the conflict.
        rotation_id: Option<String>,
    },
    /// The request itself is wrong.
    #[error("{message}")]
    Invalid {
        /// The request field at fault, if one is.
        field: Option<&'static str>,
        /// What is wrong with it.
        message: String,
    },
    /// A provider call it needed failed.
    #[error("{0}")]
    Peer(String),
    /// keyrot failed (the store, a failpoint, a task that died).
    #[error("{0}")]
    Internal(String),
}

impl Refusal {
    /// No such rotation or key.
    pub fn unknown(message: impl Into<String>) -> Refusal {
        Refusal::Unknown(message.into())
    }
    /// The state forbids it now.
    pub fn conflict(message: impl Into<String>) -> Refusal {
        Refusal::Conflict {
            message: message.into(),
            rotation_id: None,
        }
    }
    /// A rotation of the key is already running.
    pub fn running(message: impl Into<String>, rotation_id: String) -> Refusal {
        Refusal::Conflict {
            message: message.into(),
            rotation_id: Some(rotation_id),
        }
    }
    /// The request is wrong.
    pub fn invalid(message: impl Into<String>) -> Refusal {
        Refusal::Invalid {
            field: None,
            message: message.into(),
        }
    }
    /// The request's `field` is wrong.
    pub fn bad_field(field: &'static str, message: impl Into<String>) -> Refusal {
        Refusal::Invalid {
            field: Some(field),
            message: message.into(),
        }
    }
    /// A provider call failed.
    pub fn peer(message: impl Into<String>) -> Refusal {
        Refusal::Peer(message.into())
    }
    /// keyrot failed.
    pub fn internal(message: impl Into<String>) -> Refusal {
        Refusal::Internal(message.into())
    }
}

impl From<EngineError> for Refusal {
    fn from(e: EngineError) -> Refusal {
        Refusal::Internal(e.to_string())
    }
}
