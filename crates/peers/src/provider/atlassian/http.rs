//! HTTP outcomes of the Atlassian provider turned into [`CallError`]s, on
//! the shared rules of [`crate::http`] (transient: timeouts, connection
//! failures, 408, 429, 5xx with `Retry-After`; permanent: the rest), with
//! hints about the admin key's scopes.

use jiff::Timestamp;
use reqwest::StatusCode;

pub(super) use crate::http::{Answer, error_detail, redact};
use keyrot_core::error::CallError;

/// The error for an answer whose status the caller does not accept.
pub(super) fn status_error(provider: &str, what: &str, ans: &Answer, now: Timestamp) -> CallError {
    crate::http::status_error(
        &format!("provider {provider:?}"),
        what,
        "Atlassian",
        ans,
        now,
        hint(ans.status),
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;
    use reqwest::header::{self, HeaderMap};

    fn answer(status: u16, body: &str, retry: Option<&str>) -> Answer {
        let mut headers = HeaderMap::new();
        if let Some(r) = retry {
            headers.insert(header::RETRY_AFTER, r.parse().unwrap());
        }
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: body.as_bytes().to_vec().into(),
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
}
