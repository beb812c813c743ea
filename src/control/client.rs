//! The control API's client: HTTP/1.1 over the daemon's unix socket
//! (reqwest, one connection per request, none kept idle against the
//! daemon's connection cap). The CLI uses it; when nothing answers on the
//! socket it gets [`ClientError::NotRunning`] and may fall back to reading
//! the store itself.

use std::error::Error as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

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
    /// The HTTP client bound to `socket`, or why it could not be built
    /// (reported by the first request).
    http: Result<reqwest::Client, String>,
}

impl Client {
    /// A client for the daemon on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        let socket = socket.into();
        keyrot_core::crypto::tls::provider();
        let http = reqwest::Client::builder()
            .unix_socket(socket.as_path())
            // Plain HTTP over the socket: no CA roots to read.
            .tls_certs_only([])
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", cause(&e)));
        Client {
            socket,
            timeout: DEFAULT_TIMEOUT,
            http,
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
    pub async fn post_for_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
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
    ) -> Result<(StatusCode, Vec<u8>), ClientError> {
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
    ) -> Result<(StatusCode, Vec<u8>), ClientError> {
        let http = |detail: String| ClientError::Http {
            method: method.clone(),
            path: path.to_string(),
            detail,
        };
        let client = self.http.as_ref().map_err(|e| http(e.clone()))?;
        // The host is a name only: every connection goes to the socket.
        let mut req = client.request(method.clone(), format!("http://keyrot{path}"));
        if let Some(body) = body {
            req = req.header(CONTENT_TYPE, "application/json").body(body);
        }
        let resp = req.send().await.map_err(|e| match connect_cause(&e) {
            Some(io) => self.connect_error(io),
            None => http(cause(&e)),
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| http(cause(&e)))?;
        Ok((status, bytes.into()))
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

/// The I/O error that made connecting to the socket fail, if that is what
/// `e` is (as its own: `io::Error` is not `Clone`).
fn connect_cause(e: &reqwest::Error) -> Option<io::Error> {
    if !e.is_connect() {
        return None;
    }
    let mut cause = e.source();
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            return Some(match io.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(io.kind(), io.to_string()),
            });
        }
        cause = c.source();
    }
    None
}

/// What went wrong: the innermost cause of `e` (reqwest's own message
/// names a made-up URL, and hyper-util's only its step), as hyper said it.
fn cause(e: &reqwest::Error) -> String {
    let mut last: &dyn std::error::Error = e;
    while let Some(c) = last.source() {
        last = c;
    }
    last.to_string()
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

    #[tokio::test]
    async fn a_socket_that_cannot_be_reached_is_named_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let socket = file.join("control.sock");
        let e = Client::new(&socket)
            .get::<serde_json::Value>("/v1/health")
            .await
            .unwrap_err();
        assert!(
            matches!(&e, ClientError::Connect { source, .. } if source.raw_os_error() == Some(libc::ENOTDIR)),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!(
                "cannot connect to the keyrot daemon on {}: Not a directory (os error 20)",
                socket.display()
            )
        );
        let denied = ClientError::Connect {
            socket: "/run/keyrot/control.sock".into(),
            source: io::Error::from_raw_os_error(libc::EACCES),
        };
        assert_eq!(
            denied.to_string(),
            "cannot connect to the keyrot daemon on /run/keyrot/control.sock: Permission denied (os error 13) \
             (you need write access to the socket: run as root or as a member of its group)"
        );
    }

    #[tokio::test]
    async fn a_daemon_that_hangs_up_or_answers_junk_is_reported() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("control.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let answers: [&[u8]; 2] = [
            b"",
            b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 5\r\n\r\noops!",
        ];
        let server = tokio::spawn(async move {
            let mut requests = Vec::new();
            for answer in answers {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let n = conn.read(&mut buf).await.unwrap();
                requests.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                conn.write_all(answer).await.unwrap();
            }
            requests
        });
        let client = Client::new(&socket);
        let hung_up = client
            .post::<_, serde_json::Value>("/v1/rotate", &serde_json::json!({"key": "a/b"}))
            .await
            .unwrap_err();
        assert_eq!(
            hung_up.to_string(),
            "POST /v1/rotate on the control socket failed: connection closed before message completed"
        );
        let junk = client
            .get::<serde_json::Value>("/v1/status?x=a%20b")
            .await
            .unwrap_err();
        assert_eq!(
            junk.to_string(),
            "unexpected answer to GET /v1/status?x=a%20b (HTTP 500): oops!"
        );
        let requests = server.await.unwrap();
        let first = requests[0].to_ascii_lowercase();
        assert!(first.starts_with("post /v1/rotate http/1.1\r\n"), "{first}");
        assert!(first.contains("\r\nhost: keyrot\r\n"), "{first}");
        assert!(
            first.contains("\r\ncontent-type: application/json\r\n"),
            "{first}"
        );
        assert!(first.ends_with(r#"{"key":"a/b"}"#), "{first}");
        assert!(
            requests[1]
                .to_ascii_lowercase()
                .starts_with("get /v1/status?x=a%20b http/1.1\r\n")
        );
    }
}
