//! AWS error answers: the error code (`__type` of JSON services, `<Code>`
//! of query services, or the `X-Amzn-ErrorType` header), which codes are
//! worth retrying (AWS throttles with HTTP 400 as often as with 429), and a
//! hint for the codes an operator fixes in IAM, in the credentials or in
//! the system clock. Messages are built by [`crate::http::status_error`];
//! an XML error's code and message are added here, since that helper only
//! echoes JSON.

use jiff::Timestamp;

use crate::http::{Answer, error_detail, status_error};
use keyrot_core::error::CallError;

/// Longest XML error detail kept in a message, in characters.
const MAX_XML_DETAIL_CHARS: usize = 300;

/// Codes AWS uses to say "slow down" (the AWS SDKs' list), often with
/// HTTP 400: transient.
/// (`LimitExceededException` is left out: Secrets Manager and IAM use it
/// for quotas, which no retry fixes.)
const THROTTLING: [&str; 13] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Other codes that a retry may fix.
const TRANSIENT: [&str; 5] = [
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalFailure",
    "InternalServiceError",
    "ServiceUnavailable",
];

/// The AWS error code of an answer, without a namespace
/// (`com.amazonaws...#ResourceNotFoundException` → `ResourceNotFoundException`).
pub fn error_code(ans: &Answer) -> Option<String> {
    let from_header = ans
        .headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(':').next().unwrap_or_default().to_string());
    let from_json = || {
        let v: serde_json::Value = serde_json::from_slice(&ans.body).ok()?;
        let t = v
            .get("__type")
            .or_else(|| v.get("code"))
            .or_else(|| v.get("Code"))?
            .as_str()?;
        Some(t.to_string())
    };
    let from_xml = || xml_text(&ans.body, "Code");
    let code = from_header.or_else(from_json).or_else(from_xml)?;
    let bare = code
        .rsplit('#')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    (!bare.is_empty()).then_some(bare)
}

/// True for codes worth retrying.
pub fn is_retryable_code(code: &str) -> bool {
    THROTTLING.contains(&code) || TRANSIENT.contains(&code)
}

/// The error for an answer the caller does not accept: status, code and
/// AWS's message; transient for 5xx, 429, 408 and the throttling codes,
/// permanent otherwise. `hint` (or, without one, a hint for credential,
/// permission and clock problems) ends the message.
pub fn api_error(
    who: &str,
    what: &str,
    peer: &str,
    ans: &Answer,
    now: Timestamp,
    hint: Option<&str>,
) -> CallError {
    let code = error_code(ans);
    let hint = hint.or_else(|| code.as_deref().and_then(default_hint));
    // `status_error` echoes JSON error bodies only; query services answer
    // XML, whose code and message are added here.
    let xml = if error_detail(&ans.body).is_none() {
        xml_detail(&ans.body)
    } else {
        None
    };
    let mut err = match &xml {
        None => status_error(who, what, peer, ans, now, hint),
        Some(detail) => {
            let mut e = status_error(who, what, peer, ans, now, None);
            e.message.push_str(": ");
            e.message.push_str(detail);
            if let Some(h) = hint {
                e.message.push_str(" (");
                e.message.push_str(h);
                e.message.push(')');
            }
            e
        }
    };
    if code.as_deref().is_some_and(is_retryable_code) {
        err.transient = true;
    }
    err
}

/// What to do about the codes an operator can fix.
fn default_hint(code: &str) -> Option<&'static str> {
    Some(match code {
        "AccessDeniedException" | "AccessDenied" => {
            "the credentials lack an IAM permission this call needs"
        }
        "UnrecognizedClientException" | "InvalidClientTokenId" => {
            "AWS does not know this access key id: check `access_key_id` or AWS_ACCESS_KEY_ID"
        }
        "InvalidSignatureException" | "SignatureDoesNotMatch" | "IncompleteSignature" => {
            "check the secret access key, and that the system clock is right"
        }
        "ExpiredTokenException" | "ExpiredToken" | "InvalidToken" => {
            "the session token has expired or is invalid: renew the temporary credentials"
        }
        "RequestExpired" | "RequestTimeTooSkewed" | "RequestInTheFuture" => {
            "the system clock is off: check NTP"
        }
        _ => return None,
    })
}

/// `Code: Message` of an XML error document, shortened; `None` for any
/// other body.
fn xml_detail(body: &[u8]) -> Option<String> {
    let code = xml_text(body, "Code");
    let message = xml_text(body, "Message");
    let joined = match (code, message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (c, m) => c.or(m)?,
    };
    let mut short: String = joined.chars().take(MAX_XML_DETAIL_CHARS).collect();
    if short.len() < joined.len() {
        short.push('…');
    }
    Some(short)
}

/// The text of the first `<tag>...</tag>` of an XML document, unescaped;
/// None for a body that is not XML or an empty element.
fn xml_text(body: &[u8], tag: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    if !text.trim_start().starts_with('<') {
        return None;
    }
    super::xml::element(text, tag).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    use super::*;

    fn answer(status: u16, body: &str, header: Option<&str>) -> Answer {
        let mut headers = HeaderMap::new();
        if let Some(h) = header {
            headers.insert("x-amzn-errortype", h.parse().unwrap());
        }
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: body.as_bytes().to_vec().into(),
        }
    }

    fn now() -> Timestamp {
        "2026-11-23T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn codes_come_from_json_xml_or_the_header() {
        let json = answer(
            400,
            r#"{"__type":"com.amazonaws.secretsmanager#ResourceNotFoundException","Message":"no"}"#,
            None,
        );
        assert_eq!(
            error_code(&json).as_deref(),
            Some("ResourceNotFoundException")
        );
        let xml = answer(
            400,
            "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>",
            None,
        );
        assert_eq!(error_code(&xml).as_deref(), Some("Throttling"));
        let header = answer(
            400,
            "",
            Some("ThrottlingException:http://internal.amazon.com/coral/"),
        );
        assert_eq!(error_code(&header).as_deref(), Some("ThrottlingException"));
        assert_eq!(error_code(&answer(500, "<html>oops</html>", None)), None);
    }

    #[test]
    fn throttling_with_400_is_transient_and_other_400s_are_not() {
        for code in [
            "ThrottlingException",
            "TooManyRequestsException",
            "RequestLimitExceeded",
        ] {
            let body = format!(r#"{{"__type":"{code}","message":"Rate exceeded"}}"#);
            let e = api_error(
                "sink \"a\"",
                "put",
                "AWS",
                &answer(400, &body, None),
                now(),
                None,
            );
            assert!(e.transient, "{code}: {e}");
            assert!(e.message.contains(code), "{e}");
        }
        let xml = "<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>";
        let e = api_error("p", "list", "AWS IAM", &answer(400, xml, None), now(), None);
        assert!(e.transient, "{e}");
        assert_eq!(
            e.message,
            "p: list: AWS IAM answered 400 Bad Request: Throttling: Rate exceeded"
        );
        let e = api_error(
            "sink \"a\"",
            "put",
            "AWS",
            &answer(
                400,
                r#"{"__type":"AccessDeniedException","Message":"not authorized"}"#,
                None,
            ),
            now(),
            None,
        );
        assert!(!e.transient);
        assert!(
            e.message
                .ends_with("(the credentials lack an IAM permission this call needs)"),
            "{e}"
        );
        let e = api_error("x", "y", "AWS", &answer(503, "", None), now(), None);
        assert!(e.transient);
    }

    #[test]
    fn xml_text_unescapes_and_ignores_non_xml() {
        let body = b"<E><Message>a &lt;b&gt; &amp; c</Message></E>";
        assert_eq!(xml_text(body, "Message").as_deref(), Some("a <b> & c"));
        assert_eq!(xml_text(b"{\"Message\":\"x\"}", "Message"), None);
    }
}
