//! The control server target: well-formed requests built from the input
//! (or raw bytes), sent over the unix socket to the real server whose
//! daemon is [`RefusingBackend`], and every answer checked.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{Harness, io_err};
use crate::{Finding, Outcome, find, finding, split_line};
use keyrot::control::{ApiError, Backend, EnrollRequest, ErrorBody, RotateRequest};
use keyrot_config::Config;
use keyrot_core::model::RotationRecord;
use keyrot_core::store::Store;

/// A daemon stand-in for the control server: reads come from a real
/// (empty) store; every change is refused with 409.
pub(super) struct RefusingBackend {
    /// The store the views read.
    pub(super) store: Arc<Store>,
    /// The config the plan reads.
    pub(super) config: Arc<Config>,
}

fn refused() -> ApiError {
    ApiError::new(409, "the fuzzing backend changes nothing")
}

#[async_trait]
impl Backend for RefusingBackend {
    fn store(&self) -> Arc<Store> {
        Arc::clone(&self.store)
    }
    fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config)
    }
    async fn rotate(&self, _req: RotateRequest) -> Result<RotationRecord, ApiError> {
        Err(refused())
    }
    async fn resume(&self, _id: &str) -> Result<RotationRecord, ApiError> {
        Err(refused())
    }
    async fn abort(&self, _id: &str) -> Result<RotationRecord, ApiError> {
        Err(refused())
    }
    async fn enroll(&self, _id: &str, _req: EnrollRequest) -> Result<RotationRecord, ApiError> {
        Err(refused())
    }
    async fn reload(&self) -> Result<(), ApiError> {
        Err(refused())
    }
}

impl Harness {
    /// The control server over its unix socket. Input: `METHOD PATH`, then
    /// an optional `Content-Type` line, a blank line and the body. The
    /// request is always well-formed HTTP; every answer must come, and
    /// every error must be a JSON [`ErrorBody`] whose code is the status
    /// (5xx only for what the stand-in backend cannot do: 501).
    /// An input starting with `!` is sent as raw bytes instead (only a
    /// panic counts then).
    pub fn control(&self, data: &[u8]) -> Outcome {
        if let Some(raw) = data.strip_prefix(b"!") {
            let _ = self.exchange(raw, true);
            return Ok(());
        }
        let (line, rest) = split_line(data);
        let line = String::from_utf8_lossy(line);
        let mut words = line.split(' ');
        let method = words
            .next()
            .filter(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()))
            .filter(|m| *m != "HEAD" && *m != "CONNECT")
            .unwrap_or("POST");
        // Bytes a URI cannot hold are percent-encoded: hyper refuses them
        // before the router sees the request (a bare 400).
        let mut path = String::new();
        for b in words
            .next()
            .filter(|p| p.starts_with('/'))
            .unwrap_or("/v1/rotate")
            .bytes()
        {
            if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b) {
                path.push(char::from(b));
            } else {
                let _ = write!(path, "%{b:02X}");
            }
        }
        let (content_type, body) = match find(rest, b"\n\n") {
            Some(i) => (&rest[..i], &rest[i + 2..]),
            None => (&b"application/json"[..], rest),
        };
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nhost: keyrot\r\ncontent-length: {}\r\n",
            body.len()
        );
        let ct = String::from_utf8_lossy(content_type);
        let ct = ct.trim();
        if !ct.is_empty() && ct.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            let _ = write!(req, "content-type: {ct}\r\n");
        }
        req.push_str("connection: close\r\n\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        let answer = self
            .exchange(&bytes, false)
            .map_err(|e| Finding(format!("{method} {path}: no answer: {e}")))?;
        check_control_answer(&answer).map_err(|Finding(f)| Finding(format!("{method} {path}: {f}")))
    }

    /// Sends `bytes` on a new connection, reads everything that comes
    /// back until the server closes (within 10 s). With `half_close` the
    /// sending side is closed first (the server then drops a request it
    /// has not answered yet, as hyper does by default).
    fn exchange(&self, bytes: &[u8], half_close: bool) -> std::io::Result<Vec<u8>> {
        let talk = async {
            let mut conn = tokio::net::UnixStream::connect(&self.socket).await?;
            // The server may answer (413) before it has read everything.
            let wrote = conn.write_all(bytes).await;
            if half_close {
                let _ = conn.shutdown().await;
            }
            let mut out = Vec::new();
            let read = conn.read_to_end(&mut out).await;
            match (wrote, read) {
                (_, Ok(_)) if !out.is_empty() => Ok(out),
                (Err(e), _) | (_, Err(e)) => Err(e),
                (Ok(()), Ok(_)) => Ok(out),
            }
        };
        self.rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), talk).await })
            .map_err(|_| io_err("control socket", "no answer within 10 s"))?
    }
}

/// Checks one raw HTTP answer of the control server.
fn check_control_answer(raw: &[u8]) -> Outcome {
    let Some(head_end) = find(raw, b"\r\n\r\n") else {
        return finding(format!(
            "not an HTTP answer: {:?}",
            String::from_utf8_lossy(raw)
        ));
    };
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let body = &raw[head_end + 4..];
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if status < 400 {
        return Ok(());
    }
    if status >= 500 && status != 501 {
        return finding(format!(
            "answered {status}: {}",
            String::from_utf8_lossy(body)
        ));
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) if e.error.code == status && !e.error.message.is_empty() => Ok(()),
        Ok(e) => finding(format!(
            "answered {status} with error code {}",
            e.error.code
        )),
        Err(_) => finding(format!(
            "answered {status} without a JSON error: {:?}",
            String::from_utf8_lossy(body)
        )),
    }
}
