//! The sandbox's two error types: [`ApiError`], which a request handler turns
//! into a status code and a JSON body, and [`SandboxError`], which stops the
//! server from starting (bad state file, bad PSK, port in use). Neither ever
//! carries a secret or a PSK byte.

use std::io;
use std::path::PathBuf;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A request that failed: status, machine-readable code, message, and the
/// request field at fault when there is one.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable upper-case code (`INVALID_FIELD`, `NOT_FOUND`, ...).
    pub code: &'static str,
    /// What went wrong and what to do about it.
    pub message: String,
    /// The request field (body field or query parameter) at fault.
    pub field: Option<String>,
    /// Seconds for a `Retry-After` header (429 and forced failures).
    pub retry_after: Option<u32>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// 400 naming the field at fault.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(StatusCode::BAD_REQUEST, "INVALID_FIELD", message);
        e.field = Some(field.into());
        e
    }

    /// 401: missing, unknown, revoked or expired credentials.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    /// 403: the key is valid but lacks the scope the call needs.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    /// 404: no such resource (or, for keys, already revoked).
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    /// 500: the sandbox itself failed (usually writing the state file).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut detail = json!({
            "status": self.status.as_u16().to_string(),
            "code": self.code,
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "detail": self.message,
        });
        if let (Some(field), Some(obj)) = (&self.field, detail.as_object_mut()) {
            obj.insert("field".into(), json!(field));
        }
        let mut resp = (self.status, axum::Json(json!({ "errors": [detail] }))).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// Why the sandbox could not start or keep its state.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source} (is another process using the port?)")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The operating system's error.
        source: io::Error,
    },
    /// The state file exists but could not be read.
    #[error("cannot read sandbox state file {}: {source}", path.display())]
    StateRead {
        /// The state file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The state file is not valid sandbox JSON.
    #[error(
        "sandbox state file {} is not valid: {source}; fix it or delete it to start empty",
        path.display()
    )]
    StateParse {
        /// The state file.
        path: PathBuf,
        /// The JSON error (line and column, no content).
        source: serde_json::Error,
    },
    /// The state file could not be written.
    #[error("cannot write sandbox state file {}: {source}", path.display())]
    StateWrite {
        /// The state file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A PSK file could not be read.
    #[error("cannot read pre-shared key {id:?} from {}: {source}", path.display())]
    PskRead {
        /// The PSK id.
        id: String,
        /// Its file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A PSK file does not hold 64 hex characters.
    #[error(
        "pre-shared key file {} for {id:?} must hold exactly 64 hex characters (32 bytes), optionally followed by a newline",
        path.display()
    )]
    PskFormat {
        /// The PSK id.
        id: String,
        /// Its file.
        path: PathBuf,
    },
    /// A PSK id is empty, has odd characters, or is given twice.
    #[error(
        "pre-shared key id {id:?} is invalid: {reason} (use letters, digits, '.', '_' or '-', each id once)"
    )]
    PskId {
        /// The offending id.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `--seal-psk` names no `--psk`.
    #[error("--seal-psk {id:?} names no pre-shared key; give it with --psk {id}=FILE")]
    SealPsk {
        /// The id asked for.
        id: String,
    },
    /// The seed secrets file could not be written.
    #[error("cannot write seed secrets file {}: {source}", path.display())]
    SeedSecrets {
        /// The secrets file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The HTTP server failed while running.
    #[error("the sandbox HTTP server failed: {0}")]
    Serve(io::Error),
}
