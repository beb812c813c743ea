//! HTTP outcomes of the Atlassian provider turned into [`CallError`]s:
//! timeouts, connection failures, 408, 429 and 5xx are transient (with the
//! server's `Retry-After`); every other failure is permanent and carries the
//! status and the server's error title/detail — never a request body, never
//! a response body that is not the API's JSON error, never a secret.

use jiff::{SignedDuration, Timestamp};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};

use crate::error::CallError;

/// Longest server error detail kept in a message, in characters.
const MAX_DETAIL_CHARS: usize = 300;

/// One HTTP answer, read in full.
pub(super) struct Answer {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// Response body.
    pub body: Vec<u8>,
}

/// A request that got no answer: a timeout or a connection failure.
pub(super) fn transport_error(
    provider: &str,
    what: &str,
    timeout: SignedDuration,
    e: &reqwest::Error,
) -> CallError {
    if e.is_timeout() {
        return CallError::transient(format!(
            "provider {provider:?}: {what}: no answer within {}",
            crate::policy::format_duration(timeout)
        ));
    }
    let mut chain = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    CallError::transient(format!("provider {provider:?}: {what}: {chain}"))
}

/// True for statuses worth retrying.
pub(super) fn is_transient(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

/// The error for an answer whose status the caller does not accept.
pub(super) fn status_error(provider: &str, what: &str, ans: &Answer, now: Timestamp) -> CallError {
    let reason = ans.status.canonical_reason().unwrap_or("");
    let mut message = format!(
        "provider {provider:?}: {what}: Atlassian answered {} {reason}",
        ans.status.as_u16()
    );
    if let Some(detail) = error_detail(&ans.body) {
        message.push_str(": ");
        message.push_str(&detail);
    }
    if let Some(hint) = hint(ans.status) {
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

/// What an operator should look at for a status of an admin-key call.
fn hint(status: StatusCode) -> Option<&'static str> {
    match status {
        StatusCode::UNAUTHORIZED => {
            Some("check `admin_key`: it must be a live admin API key of this organisation")
        }
        StatusCode::FORBIDDEN => Some(
            "the admin key lacks a scope this call needs: read:, write: and delete:api-keys:admin",
        ),
        _ => None,
    }
}

/// `title: detail` of the API's JSON error body (`{"errors":[{..}]}`, or a
/// top-level `title`/`detail`/`message`), shortened; `None` for any other
/// body, which is never echoed (it may be an HTML page from a proxy).
pub(super) fn error_detail(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let e = v
        .get("errors")
        .and_then(|e| e.get(0))
        .filter(|e| e.is_object())
        .unwrap_or(&v);
    let text = |k: &str| e.get(k).and_then(|s| s.as_str()).filter(|s| !s.is_empty());
    let detail = text("detail").or_else(|| text("message"));
    let joined = match (text("title"), detail) {
        (Some(t), Some(d)) => format!("{t}: {d}"),
        (Some(t), None) => t.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => return None,
    };
    let mut short: String = joined.chars().take(MAX_DETAIL_CHARS).collect();
    if short.len() < joined.len() {
        short.push('…');
    }
    Some(short)
}

/// `Retry-After` as seconds or an HTTP date (a date in the past is zero).
pub(super) fn retry_after(headers: &HeaderMap, now: Timestamp) -> Option<SignedDuration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u32>() {
        return Some(SignedDuration::from_secs(i64::from(secs)));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    Some(at.duration_since(now).max(SignedDuration::ZERO))
}

/// `message` with every occurrence of `secret` replaced, for errors of
/// calls that carried a secret the server might echo.
pub(super) fn redact(mut err: CallError, secret: &str) -> CallError {
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
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn statuses_map_to_transient_or_permanent() {
        let now: Timestamp = "2026-03-01T12:00:00Z".parse().unwrap();
        let e = status_error("p", "list", &answer(429, "", Some("7")), now);
        assert!(e.transient);
        assert_eq!(e.retry_after, Some(SignedDuration::from_secs(7)));
        let e = status_error(
            "p",
            "list",
            &answer(503, "", Some("Sun, 01 Mar 2026 12:00:30 GMT")),
            now,
        );
        assert!(e.transient);
        assert_eq!(e.retry_after, Some(SignedDuration::from_secs(30)));
        let body = r#"{"errors":[{"status":"403","title":"Forbidden","detail":"needs write"}]}"#;
        let e = status_error("p", "rotate", &answer(403, body, None), now);
        assert!(!e.transient && e.retry_after.is_none());
        assert!(
            e.message
                .starts_with("provider \"p\": rotate: Atlassian answered 403 Forbidden: Forbidden: needs write (the admin key lacks"),
            "{}",
            e.message
        );
        // A non-JSON body is never echoed.
        let e = status_error(
            "p",
            "list",
            &answer(400, "<html>secret-ish</html>", None),
            now,
        );
        assert!(!e.message.contains("html"), "{}", e.message);
        let e = status_error(
            "p",
            "list",
            &answer(400, r#"{"message":"bad limit"}"#, None),
            now,
        );
        assert!(
            e.message.ends_with("400 Bad Request: bad limit"),
            "{}",
            e.message
        );
    }

    #[test]
    fn long_details_are_cut_and_secrets_redacted() {
        let long = format!(r#"{{"detail":"{}"}}"#, "x".repeat(1000));
        assert_eq!(error_detail(long.as_bytes()).unwrap().chars().count(), 301);
        let e = redact(CallError::permanent("echo ATSBXabc here"), "ATSBXabc");
        assert_eq!(e.message, "echo [redacted] here");
    }
}
