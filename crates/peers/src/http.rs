//! HTTP plumbing shared by every provider and sink that speaks HTTP: one
//! way to build a client (rustls, timeouts, no redirects, an optional extra
//! CA file), to send a request and read the whole answer, and to turn an
//! outcome into a [`CallError`]: timeouts, connection failures, 408, 429
//! and 5xx are transient (with the server's `Retry-After`); everything else
//! is permanent. Messages carry the caller (`sink "vault"`), the step, the
//! status and the server's JSON error text, shortened and with control
//! characters escaped — never a request body, never a non-JSON response
//! body, never a secret.
//!
//! Answers are read up to a cap per kind of peer ([`cap`]), and clients
//! take no proxy from the environment ([`proxy`]).

pub mod cap;
pub mod limit;
pub mod proxy;

use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use reqwest::header::{self, HeaderMap};
use reqwest::{RequestBuilder, StatusCode};

use zeroize::Zeroizing;

use keyrot_core::error::CallError;

pub use cap::PeerKind;

/// Longest server error detail kept in a message, in characters.
const MAX_DETAIL_CHARS: usize = 300;

/// One HTTP answer, read in full.
pub struct Answer {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// Response body, wiped on drop (it may hold a secret or a token).
    pub body: Zeroizing<Vec<u8>>,
}

impl Answer {
    /// The body as JSON of type `T`; a permanent error naming `who` and
    /// `what` otherwise (the body itself is never echoed).
    pub fn json<T: serde::de::DeserializeOwned>(
        &self,
        who: &str,
        what: &str,
    ) -> Result<T, CallError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            CallError::transient(format!(
                "{who}: {what}: the answer ({} bytes) is not the JSON expected: {}",
                self.body.len(),
                e.classify_name()
            ))
        })
    }
}

/// What kind of JSON error `serde_json` saw, without the offending text.
trait Classify {
    fn classify_name(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "malformed JSON",
            serde_json::error::Category::Data => "unexpected shape",
            serde_json::error::Category::Eof => "truncated JSON",
        }
    }
}

/// An HTTP client: `timeout` for connect and whole request, no redirects
/// (credentials never follow one), keyrot's user agent, the PEM
/// certificates of `ca_file` trusted besides the system's, and the proxy
/// of `[daemon] proxy` or none (never one from the environment). `who`
/// names the caller in errors.
pub fn client(
    who: &str,
    timeout: SignedDuration,
    ca_file: Option<&Path>,
) -> Result<reqwest::Client, CallError> {
    client_via(who, timeout, ca_file, proxy::configured().as_ref())
}

/// [`client`] with `proxy` given rather than read from the daemon's setting.
pub fn client_via(
    who: &str,
    timeout: SignedDuration,
    ca_file: Option<&Path>,
    proxy: Option<&reqwest::Url>,
) -> Result<reqwest::Client, CallError> {
    let t = std::time::Duration::try_from(timeout)
        .map_err(|_| CallError::permanent(format!("{who}: `timeout` must be positive")))?;
    keyrot_core::crypto::tls::provider();
    let builder = reqwest::Client::builder()
        .timeout(t)
        .connect_timeout(t)
        .user_agent(concat!("keyrot/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none());
    let builder = proxy::apply(builder, proxy).map_err(|e| {
        CallError::permanent(format!("{who}: `[daemon] proxy` cannot be used: {e}"))
    })?;
    // The system's roots, read once per process (or reload), and those of
    // `ca_file`.
    let tls = match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                CallError::permanent(format!("{who}: `ca_file` {}: {e}", path.display()))
            })?;
            keyrot_core::crypto::tls::ca_file_config(&pem).map_err(|e| {
                CallError::permanent(format!("{who}: `ca_file` {} {e}", path.display()))
            })?
        }
        None => keyrot_core::crypto::tls::system_roots_config().map_err(|e| {
            CallError::permanent(format!("{who}: cannot read the system's CA roots: {e}"))
        })?,
    };
    let builder = builder.tls_backend_preconfigured(tls);
    builder
        .build()
        .map_err(|e| CallError::permanent(format!("{who}: cannot build an HTTP client: {e}")))
}

/// Sends a request to a peer of kind `peer` and reads the whole answer, up
/// to that kind's cap ([`PeerKind::max_answer`]; past it the call fails,
/// see [`cap`]); `timeout` is only for the message (the client enforces
/// it). Inside a rate-limited provider call (`[[provider]]
/// requests_per_second`) the request first waits for its token, so every
/// provider that speaks HTTP is limited per request.
pub async fn send(
    who: &str,
    what: &str,
    peer: PeerKind,
    timeout: SignedDuration,
    req: RequestBuilder,
) -> Result<Answer, CallError> {
    send_inner(who, what, peer, timeout, req, false).await
}

/// [`send`] for a URL that is itself a secret (a chat webhook's): no
/// error names it.
pub async fn send_hiding_url(
    who: &str,
    what: &str,
    peer: PeerKind,
    timeout: SignedDuration,
    req: RequestBuilder,
) -> Result<Answer, CallError> {
    send_inner(who, what, peer, timeout, req, true).await
}

/// [`send`], the URL left out of errors when `hide_url`.
async fn send_inner(
    who: &str,
    what: &str,
    peer: PeerKind,
    timeout: SignedDuration,
    req: RequestBuilder,
    hide_url: bool,
) -> Result<Answer, CallError> {
    let fail = |e: reqwest::Error| {
        let e = if hide_url { e.without_url() } else { e };
        transport_error(who, what, timeout, &e)
    };
    limit::before_request().await;
    let mut resp = req.send().await.map_err(fail)?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let max = peer.max_answer();
    let said = resp.content_length();
    if said.is_some_and(|n| n > max as u64) {
        return Err(cap::too_large(who, what, peer, said));
    }
    // Sized up front so the buffer does not move (and leave copies behind)
    // while it grows, for answers that say their length.
    let expected = usize::try_from(said.unwrap_or(0)).unwrap_or(0).min(max);
    let mut body = Zeroizing::new(Vec::with_capacity(expected));
    while let Some(chunk) = resp.chunk().await.map_err(fail)? {
        if body.len() + chunk.len() > max {
            // Dropping `resp` closes the connection: the rest is never read.
            return Err(cap::too_large(who, what, peer, None));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// A request that got no answer: a timeout or a connection failure
/// (transient), with the error chain (which names the TLS problem, if any).
pub fn transport_error(
    who: &str,
    what: &str,
    timeout: SignedDuration,
    e: &reqwest::Error,
) -> CallError {
    if e.is_timeout() {
        return CallError::transient(format!(
            "{who}: {what}: no answer within {}",
            keyrot_core::policy::format_duration(timeout)
        ));
    }
    let mut chain = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    CallError::transient(format!("{who}: {what}: {chain}"))
}

/// `X-Keyrot-Signature`'s value, `t=UNIX,v1=HEX`: HMAC-SHA256 under
/// `secret` over `UNIX.body` (webhooks and `http` reload hooks sign so).
pub fn signature(secret: &[u8], at: Timestamp, body: &str) -> String {
    use hmac::{KeyInit as _, Mac as _};
    let t = at.as_second();
    // HMAC takes a key of any length.
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let tag = mac.finalize().into_bytes();
    format!("t={t},v1={}", keyrot_core::crypto::hex_encode(&tag))
}

/// True for statuses worth retrying.
pub fn is_transient(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

/// The error for an answer whose status the caller does not accept:
/// `{who}: {what}: {peer} answered 403 Forbidden: detail (hint)`.
pub fn status_error(
    who: &str,
    what: &str,
    peer: &str,
    ans: &Answer,
    now: Timestamp,
    hint: Option<&str>,
) -> CallError {
    let reason = ans.status.canonical_reason().unwrap_or("");
    let mut message = format!(
        "{who}: {what}: {peer} answered {} {reason}",
        ans.status.as_u16()
    );
    if let Some(detail) = error_detail(&ans.body) {
        message.push_str(": ");
        message.push_str(&detail);
    }
    if let Some(hint) = hint {
        message.push_str(" (");
        message.push_str(hint);
        message.push(')');
    }
    if is_transient(ans.status) {
        let err = CallError::transient(message);
        match retry_after(&ans.headers, now) {
            Some(after) => err.with_retry_after(after),
            None => err,
        }
    } else {
        CallError::permanent(message)
    }
}

/// The error text of a JSON error body, shortened; `None` for any other
/// body, which is never echoed (it may be an HTML page from a proxy).
/// Understands the shapes keyrot's peers use: `{"errors":[{title,detail}]}`
/// (Atlassian), `{"errors":["..."]}` (OpenBao/Vault), `{"error":{code,
/// message}}` and `{"error":"..","error_description":".."}` (Azure, Entra
/// ID), `{"__type":"..","message":".."}` (AWS), and top-level
/// `title`/`detail`/`message`.
pub fn error_detail(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let joined = detail_of(&v)?;
    let mut short: String = joined.chars().take(MAX_DETAIL_CHARS).collect();
    if short.len() < joined.len() {
        short.push('…');
    }
    // The peer's words reach logs, terminals and mail: no control characters.
    Some(keyrot_core::escape::controls(&short).into_owned())
}

/// See [`error_detail`].
fn detail_of(v: &serde_json::Value) -> Option<String> {
    let text = |e: &serde_json::Value, k: &str| {
        e.get(k)
            .and_then(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    if let Some(errors) = v.get("errors").and_then(|e| e.as_array()) {
        let strings: Vec<&str> = errors.iter().filter_map(|e| e.as_str()).collect();
        if !strings.is_empty() {
            return Some(strings.join("; "));
        }
        if let Some(first) = errors.first().filter(|e| e.is_object()) {
            return detail_of(first);
        }
    }
    if let Some(e) = v.get("error") {
        if e.is_object() {
            let code = text(e, "code");
            let msg = text(e, "message");
            return match (code, msg) {
                (Some(c), Some(m)) => Some(format!("{c}: {m}")),
                (c, m) => c.or(m),
            };
        }
        if let Some(code) = e.as_str() {
            return Some(match text(v, "error_description") {
                // Entra ID descriptions run to several lines; the first says it.
                Some(d) => format!("{code}: {}", d.lines().next().unwrap_or_default()),
                None => code.to_string(),
            });
        }
    }
    let kind = text(v, "__type").map(|t| t.rsplit('#').next().unwrap_or_default().to_string());
    let detail = text(v, "detail")
        .or_else(|| text(v, "message"))
        .or_else(|| text(v, "Message"));
    match (text(v, "title").or(kind), detail) {
        (Some(t), Some(d)) => Some(format!("{t}: {d}")),
        (t, d) => t.or(d),
    }
}

/// `Retry-After` as seconds or an HTTP date (a date in the past is zero).
pub fn retry_after(headers: &HeaderMap, now: Timestamp) -> Option<SignedDuration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u32>() {
        return Some(SignedDuration::from_secs(i64::from(secs)));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    Some(at.duration_since(now).max(SignedDuration::ZERO))
}

/// `err` with every occurrence of `secret` in its message replaced, for
/// errors of calls that carried a secret the server might echo.
pub fn redact(mut err: CallError, secret: &str) -> CallError {
    if !secret.is_empty() && err.message.contains(secret) {
        err.message = err.message.replace(secret, "[redacted]");
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str, retry: Option<&str>) -> Answer {
        let mut headers = HeaderMap::new();
        if let Some(r) = retry {
            headers.insert(header::RETRY_AFTER, r.parse().unwrap());
        }
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: Zeroizing::new(body.as_bytes().to_vec()),
        }
    }

    #[test]
    fn statuses_map_to_transient_or_permanent() {
        let now: Timestamp = "2026-03-01T12:00:00Z".parse().unwrap();
        let e = status_error("p", "list", "X", &answer(429, "", Some("7")), now, None);
        assert!(e.transient);
        assert_eq!(e.retry_after, Some(SignedDuration::from_secs(7)));
        let e = status_error(
            "p",
            "list",
            "X",
            &answer(503, "", Some("Sun, 01 Mar 2026 12:00:30 GMT")),
            now,
            None,
        );
        assert!(e.transient);
        assert_eq!(e.retry_after, Some(SignedDuration::from_secs(30)));
        let e = status_error(
            "s",
            "put",
            "OpenBao",
            &answer(403, r#"{"errors":["permission denied"]}"#, None),
            now,
            Some("check the policy"),
        );
        assert!(!e.transient);
        assert_eq!(
            e.message,
            "s: put: OpenBao answered 403 Forbidden: permission denied (check the policy)"
        );
        // A non-JSON body is never echoed.
        let e = status_error(
            "p",
            "list",
            "X",
            &answer(400, "<html>secret-ish</html>", None),
            now,
            None,
        );
        assert!(!e.message.contains("html"), "{}", e.message);
    }

    #[test]
    fn error_shapes_of_every_peer() {
        let d = |b: &str| error_detail(b.as_bytes());
        assert_eq!(
            d(r#"{"errors":[{"title":"Forbidden","detail":"needs write"}]}"#).unwrap(),
            "Forbidden: needs write"
        );
        assert_eq!(d(r#"{"errors":["a","b"]}"#).unwrap(), "a; b");
        assert_eq!(d(r#"{"errors":[]}"#), None);
        assert_eq!(
            d(r#"{"error":{"code":"Unauthorized","message":"bad token"}}"#).unwrap(),
            "Unauthorized: bad token"
        );
        assert_eq!(d(r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret.\r\nTrace ID: x"}"#).unwrap(), "invalid_client: AADSTS7000215: Invalid client secret.");
        assert_eq!(
            d(r#"{"__type":"com.amazonaws#ResourceNotFoundException","message":"no such secret"}"#)
                .unwrap(),
            "ResourceNotFoundException: no such secret"
        );
        assert_eq!(d(r#"{"message":"bad limit"}"#).unwrap(), "bad limit");
        // A peer's words never carry a line break or a terminal sequence.
        assert_eq!(
            d(r#"{"message":"no\nERROR master key leaked \u001b[2J\u009b"}"#).unwrap(),
            "no\\nERROR master key leaked \\x1b[2J\\u{9b}"
        );
        assert_eq!(d("not json"), None);
    }

    #[test]
    fn long_details_are_cut_and_secrets_redacted() {
        let long = format!(r#"{{"detail":"{}"}}"#, "x".repeat(1000));
        assert_eq!(error_detail(long.as_bytes()).unwrap().chars().count(), 301);
        let e = redact(CallError::permanent("echo ATSBXabc here"), "ATSBXabc");
        assert_eq!(e.message, "echo [redacted] here");
    }

    #[test]
    fn bad_json_answers_name_the_problem_not_the_body() {
        let a = answer(200, r#"{"data": "tru"#, None);
        let e = a
            .json::<serde_json::Value>("sink \"v\"", "read")
            .unwrap_err();
        assert!(e.message.contains("truncated JSON"), "{}", e.message);
        assert!(!e.message.contains("tru\""), "{}", e.message);
    }
}
