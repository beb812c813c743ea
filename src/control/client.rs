//! The control API's client: HTTP/1.1 over the daemon's unix socket (hyper
//! 1, one connection per request). The CLI uses it; when nothing answers on
//! the socket it gets [`ClientError::NotRunning`] and may fall back to
//! reading the store itself.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use super::ErrorBody;

/// How long a request may take by default: an abort may revoke a key at a
/// provider with retries, so this is generous.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Longest piece of an unexpected response body quoted in an error.
const QUOTE_MAX: usize = 200;

/// Errors talking to the daemon. None carries secret material.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket (no file, or connection refused).
    #[error("keyrot daemon is not running (no answer on {})", socket.display())]
    NotRunning {
        /// The socket tried.
        socket: PathBuf,
    },
    /// The socket exists but connecting failed otherwise (e.g. permissions).
    #[error("cannot connect to the keyrot daemon on {}: {source}{}", socket.display(), connect_hint(source))]
    Connect {
        /// The socket tried.
        socket: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The daemon answered with an error.
    #[error("{}", api_message(.0))]
    Api(ErrorBody),
    /// The HTTP exchange failed (the daemon closed the connection, ...).
    #[error("{method} {path} on the control socket failed: {detail}")]
    Http {
        /// Request method.
        method: Method,
        /// Request path.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// The daemon did not answer in time.
    #[error("the keyrot daemon did not answer {method} {path} within {}s", timeout.as_secs())]
    Timeout {
        /// Request method.
        method: Method,
        /// Request path.
        path: String,
        /// The limit.
        timeout: Duration,
    },
    /// The answer was not what the API promises.
    #[error("unexpected answer to {method} {path} (HTTP {status}): {detail}")]
    Decode {
        /// Request method.
        method: Method,
        /// Request path.
        path: String,
        /// HTTP status.
        status: u16,
        /// Decoder message or the start of the body.
        detail: String,
    },
    /// The request body could not be encoded.
    #[error("cannot encode the request body: {0}")]
    Encode(String),
}

impl ClientError {
    /// The HTTP status of an API error, if this is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api(b) => Some(b.error.code),
            _ => None,
        }
    }
}

/// A hint for a connect error an operator can fix.
fn connect_hint(e: &io::Error) -> &'static str {
    if e.kind() == io::ErrorKind::PermissionDenied {
        " (you need write access to the socket: run as root or as a member of its group)"
    } else {
        ""
    }
}

/// An API error's message, with its suggestions and running rotation when
/// the message does not already name them.
fn api_message(b: &ErrorBody) -> String {
    let e = &b.error;
    let mut out = e.message.clone();
    let missing: Vec<&str> = e
        .suggestions
        .iter()
        .filter(|s| !e.message.contains(s.as_str()))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        out.push_str(&format!(" (did you mean {}?)", missing.join(", ")));
    }
    if let Some(id) = e
        .rotation_id
        .as_deref()
        .filter(|id| !e.message.contains(id))
    {
        out.push_str(&format!(" (rotation {id})"));
    }
    out
}

/// A control API client for one socket.
#[derive(Clone, Debug)]
pub struct Client {
    /// The daemon's socket.
    socket: PathBuf,
    /// Limit for one request.
    timeout: Duration,
}

impl Client {
    /// A client for the daemon on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client {
            socket: socket.into(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same client with another per-request time limit.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Whether a daemon answers `GET /v1/health`.
    pub async fn is_running(&self) -> bool {
        self.get::<serde_json::Value>("/v1/health").await.is_ok()
    }

    /// `GET path_and_query`, decoding a JSON answer.
    pub async fn get<T: DeserializeOwned>(&self, path_and_query: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path_and_query, None).await
    }

    /// `POST path` with a JSON body, decoding a JSON answer.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::Encode(e.to_string()))?;
        self.call(Method::POST, path, Some(bytes)).await
    }

    /// `POST path` without a body, decoding a JSON answer.
    pub async fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::POST, path, None).await
    }

    /// `POST path` without a body, for endpoints that answer with bytes
    /// (`application/octet-stream`) rather than JSON.
    pub async fn post_for_bytes(&self, path: &str) -> Result<Bytes, ClientError> {
        self.exchange(Method::POST, path, None)
            .await
            .map(|(_, bytes)| bytes)
    }

    /// `POST path` without a body, for endpoints that answer 204.
    pub async fn post_no_content(&self, path: &str) -> Result<(), ClientError> {
        self.exchange(Method::POST, path, None).await.map(drop)
    }

    /// One request whose 2xx answer is JSON `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let (status, bytes) = self.exchange(method.clone(), path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            method,
            path: path.to_string(),
            status: status.as_u16(),
            detail: e.to_string(),
        })
    }

    /// One request; non-2xx answers become errors.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let run = self.send(method.clone(), path, body);
        let (status, bytes) = tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| ClientError::Timeout {
                method: method.clone(),
                path: path.to_string(),
                timeout: self.timeout,
            })??;
        if status.is_success() {
            return Ok((status, bytes));
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => Err(ClientError::Api(b)),
            Err(_) => Err(ClientError::Decode {
                method,
                path: path.to_string(),
                status: status.as_u16(),
                detail: quote(&bytes),
            }),
        }
    }

    /// Connects, sends one request and reads the whole answer.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let http = |detail: String| ClientError::Http {
            method: method.clone(),
            path: path.to_string(),
            detail,
        };
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| self.connect_error(e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| http(e.to_string()))?;
        // The connection task ends when `sender` is dropped below.
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "control connection ended with an error");
            }
        });
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(HOST, "keyrot");
        if body.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| http(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| http(e.to_string()))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| http(e.to_string()))?
            .to_bytes();
        Ok((status, bytes))
    }

    /// Classifies a connect error: nothing there is "not running".
    fn connect_error(&self, e: io::Error) -> ClientError {
        match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => ClientError::NotRunning {
                socket: self.socket.clone(),
            },
            _ => ClientError::Connect {
                socket: self.socket.clone(),
                source: e,
            },
        }
    }
}

/// The start of a body, as text, for an error message.
fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    match text.char_indices().nth(QUOTE_MAX) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.into_owned(),
    }
}

/// Percent-encodes `s` for a query-string value (RFC 3986 unreserved
/// characters stay as they are).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::ErrorDetail;

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(query_escape("gh/ci bot&x=1"), "gh%2Fci%20bot%26x%3D1");
        assert_eq!(query_escape("é"), "%C3%A9");
        assert_eq!(query_escape("a-b_c.d~e"), "a-b_c.d~e");
    }

    #[test]
    fn api_errors_show_suggestions_once() {
        let body = |message: &str, suggestions: &[&str]| {
            ClientError::Api(ErrorBody {
                error: ErrorDetail {
                    code: 404,
                    message: message.into(),
                    field: None,
                    suggestions: suggestions.iter().map(|s| s.to_string()).collect(),
                    rotation_id: None,
                },
            })
        };
        let e = body("unknown key \"ci-bto\"; did you mean ci-bot?", &["ci-bot"]);
        assert_eq!(
            e.to_string(),
            "unknown key \"ci-bto\"; did you mean ci-bot?"
        );
        let e = body("unknown key", &["a", "b"]);
        assert_eq!(e.to_string(), "unknown key (did you mean a, b?)");
        assert_eq!(e.status(), Some(404));
    }
}
