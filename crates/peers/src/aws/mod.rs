//! AWS plumbing shared by the Secrets Manager sink and the IAM provider:
//! credentials ([`credentials`]), a client for one service in one region
//! that signs each request with SigV4 (the `aws-sigv4` crate, no crypto of
//! our own) and speaks the two wire protocols keyrot needs — JSON 1.1
//! (`X-Amz-Target`, Secrets Manager) and the form-encoded query protocol
//! (`Action=..&Version=..`, IAM and STS) — and the mapping of AWS error
//! answers to [`CallError`] ([`errors`]).
//!
//! It does not know any operation's shape, nor which endpoint a global
//! service (IAM) uses: the caller passes the endpoint when it is not
//! `https://{service}.{region}.amazonaws.com`. Request bodies live in
//! `Zeroizing` buffers; credentials never reach `Debug` or a message.

pub mod credentials;
pub mod errors;
pub mod xml;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use jiff::SignedDuration;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use zeroize::Zeroizing;

pub use credentials::{AwsCredentials, CredentialSource};
pub use errors::{api_error, error_code, is_retryable_code};

use crate::http::{Answer, PeerKind, send};
use keyrot_core::clock::{Clock, SystemClock};
use keyrot_core::error::CallError;

/// Content type of JSON 1.1 requests.
pub const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// Content type of query-protocol requests.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// One AWS service in one region, with its credentials.
pub struct AwsClient {
    /// Caller for messages (`sink "aws"`).
    who: String,
    /// Service for messages (`AWS Secrets Manager`).
    peer: String,
    /// SigV4 signing name (`secretsmanager`, `iam`).
    service: String,
    /// SigV4 signing region.
    region: String,
    /// Where requests go: the endpoint with a `/` path.
    url: reqwest::Url,
    /// Credentials, fixed or from the environment.
    credentials: CredentialSource,
    /// HTTP client (no redirects).
    http: reqwest::Client,
    /// Per-request timeout, for messages.
    timeout: SignedDuration,
    /// Signing time and Retry-After dates.
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for AwsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsClient")
            .field("who", &self.who)
            .field("service", &self.service)
            .field("region", &self.region)
            .field("url", &self.url.as_str())
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// `https://{service}.{region}.amazonaws.com` (`.amazonaws.com.cn` in the
/// China regions).
pub fn default_endpoint(service: &str, region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://{service}.{region}.{suffix}")
}

impl AwsClient {
    /// A client for `service` (its SigV4 signing name) in `region`, at
    /// `endpoint` (default [`default_endpoint`]). `who` and `peer` name the
    /// caller and the service in messages.
    pub fn new(
        who: &str,
        peer: &str,
        service: &str,
        region: &str,
        endpoint: Option<&str>,
        credentials: CredentialSource,
        timeout: SignedDuration,
    ) -> Result<AwsClient, CallError> {
        let base = endpoint
            .map(|e| e.trim_end_matches('/').to_string())
            .unwrap_or_else(|| default_endpoint(service, region));
        let url = reqwest::Url::parse(&format!("{base}/"))
            .ok()
            .filter(|u| u.host_str().is_some() && matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                CallError::permanent(format!(
                    "{who}: endpoint {base:?} is not an http(s) URL with a host"
                ))
            })?;
        Ok(AwsClient {
            who: who.to_string(),
            peer: peer.to_string(),
            service: service.to_string(),
            region: region.to_string(),
            url,
            credentials,
            http: crate::http::client(who, timeout, None)?,
            timeout,
            clock: Arc::new(SystemClock),
        })
    }

    /// The same client reading time from `clock` (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> AwsClient {
        self.clock = clock;
        self
    }

    /// The URL requests go to.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// A JSON 1.1 call: `target` is the `X-Amz-Target`
    /// (`secretsmanager.GetSecretValue`), `body` the JSON request. Any HTTP
    /// answer is returned (check the status, then [`AwsClient::error`]); a
    /// transport failure, or credentials missing from the environment, is
    /// an error.
    pub async fn json_call(
        &self,
        target: &str,
        body: Zeroizing<Vec<u8>>,
    ) -> Result<Answer, CallError> {
        let what = target.rsplit('.').next().unwrap_or(target);
        let headers = [
            (CONTENT_TYPE.as_str(), JSON_CONTENT_TYPE),
            ("x-amz-target", target),
        ];
        self.call(what, &headers, body).await
    }

    /// A query-protocol call: `Action={action}&Version={version}` and
    /// `params`, form-encoded. Answers as [`AwsClient::json_call`].
    pub async fn query_call(
        &self,
        action: &str,
        version: &str,
        params: &[(&str, &str)],
    ) -> Result<Answer, CallError> {
        let mut pairs = vec![("Action", action), ("Version", version)];
        pairs.extend_from_slice(params);
        let body = form_encode(&pairs);
        self.call(action, &[(CONTENT_TYPE.as_str(), FORM_CONTENT_TYPE)], body)
            .await
    }

    /// The error for an answer the caller does not accept (see
    /// [`errors::api_error`]): `{who}: {what}: {peer} answered ...`.
    pub fn error(&self, what: &str, ans: &Answer, hint: Option<&str>) -> CallError {
        api_error(&self.who, what, &self.peer, ans, self.clock.now(), hint)
    }

    /// Signs and sends one POST to the endpoint.
    async fn call(
        &self,
        what: &str,
        headers: &[(&str, &str)],
        body: Zeroizing<Vec<u8>>,
    ) -> Result<Answer, CallError> {
        let creds = self.credentials.current(&self.who)?;
        let signed = self.sign(what, headers, &body, &creds)?;
        let mut req = self.http.post(self.url.clone());
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        for (name, value) in signed {
            req = req.header(name, value);
        }
        // The body may hold a secret: the buffer is wiped when reqwest
        // drops it.
        let req = req.body(Bytes::from_owner(body));
        send(&self.who, what, PeerKind::Aws, self.timeout, req).await
    }

    /// The SigV4 headers (`Authorization`, `X-Amz-Date`, and
    /// `X-Amz-Security-Token` for temporary credentials) for a POST of
    /// `body` with `headers` to the endpoint; secret values are marked
    /// sensitive.
    fn sign(
        &self,
        what: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        creds: &AwsCredentials,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, CallError> {
        let failed = |e: &dyn fmt::Display| {
            CallError::permanent(format!(
                "{}: {what}: cannot sign the request: {e}",
                self.who
            ))
        };
        let identity = creds.to_signing().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(&self.service)
            .time(SystemTime::from(self.clock.now()))
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| failed(&e))?
            .into();
        let request = SignableRequest::new(
            "POST",
            self.url.as_str(),
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| failed(&e))?;
        let (instructions, _signature) =
            sign(request, &params).map_err(|e| failed(&e))?.into_parts();
        let (signed, _params) = instructions.into_parts();
        signed
            .into_iter()
            .map(|h| {
                let mut value = HeaderValue::from_str(h.value())
                    .map_err(|_| failed(&format!("header {} is not valid", h.name())))?;
                value.set_sensitive(h.sensitive() || h.name() == "authorization");
                let name = HeaderName::from_bytes(h.name().as_bytes())
                    .map_err(|_| failed(&format!("header name {:?} is not valid", h.name())))?;
                Ok((name, value))
            })
            .collect()
    }
}

/// `application/x-www-form-urlencoded` of `pairs` (RFC 3986 unreserved
/// characters kept, everything else `%XX`), in a buffer wiped on drop.
pub fn form_encode(pairs: &[(&str, &str)]) -> Zeroizing<Vec<u8>> {
    let cap: usize = pairs.iter().map(|(k, v)| 3 * (k.len() + v.len()) + 2).sum();
    let mut out = Zeroizing::new(Vec::with_capacity(cap));
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        percent_encode(&mut out, k);
        out.push(b'=');
        percent_encode(&mut out, v);
    }
    out
}

/// Appends `s` percent-encoded (capacity is reserved by the caller).
fn percent_encode(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

/// `value` as JSON in a buffer wiped on drop. `secret_len` is the length of
/// the longest secret inside: room is reserved for it escaped, so the
/// buffer never reallocates (which would leave a copy behind).
pub fn json_body<T: serde::Serialize>(
    value: &T,
    secret_len: usize,
) -> Result<Zeroizing<Vec<u8>>, CallError> {
    let mut out = Zeroizing::new(Vec::with_capacity(secret_len * 6 + 4096));
    serde_json::to_writer(&mut *out, value)
        .map_err(|e| CallError::permanent(format!("cannot encode a request: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_endpoints() {
        assert_eq!(
            default_endpoint("secretsmanager", "eu-west-1"),
            "https://secretsmanager.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            default_endpoint("secretsmanager", "cn-north-1"),
            "https://secretsmanager.cn-north-1.amazonaws.com.cn"
        );
    }

    #[test]
    fn form_encoding_escapes_reserved_characters() {
        let body = form_encode(&[("Action", "ListUsers"), ("PathPrefix", "/a b&c=d+é")]);
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            "Action=ListUsers&PathPrefix=%2Fa%20b%26c%3Dd%2B%C3%A9"
        );
    }

    #[test]
    fn a_bad_endpoint_is_a_permanent_error() {
        let err = AwsClient::new(
            "sink \"a\"",
            "AWS Secrets Manager",
            "secretsmanager",
            "eu-west-1",
            Some("ftp:/nohost"),
            CredentialSource::Environment,
            SignedDuration::from_secs(5),
        )
        .unwrap_err();
        assert!(!err.transient);
        assert!(err.message.contains("ftp:/nohost"), "{err}");
    }

    #[test]
    fn signing_adds_sigv4_headers_for_the_service_and_region() {
        use secrecy::SecretString;
        let creds = AwsCredentials::new(
            SecretString::from("AKIDEXAMPLE"),
            SecretString::from("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            Some(SecretString::from("session-token-value")),
        );
        let client = AwsClient::new(
            "t",
            "AWS",
            "secretsmanager",
            "eu-west-1",
            Some("http://127.0.0.1:9"),
            CredentialSource::Static(creds.clone()),
            SignedDuration::from_secs(5),
        )
        .unwrap()
        .with_clock(Arc::new(keyrot_core::clock::ManualClock::new(
            "2026-11-23T12:00:00Z".parse().unwrap(),
        )));
        let headers = client
            .sign(
                "x",
                &[
                    ("content-type", JSON_CONTENT_TYPE),
                    ("x-amz-target", "secretsmanager.ListSecrets"),
                ],
                b"{}",
                &creds,
            )
            .unwrap();
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.as_str() == n)
                .map(|(_, v)| v.to_str().unwrap().to_string())
                .unwrap_or_else(|| panic!("no {n} in {headers:?}"))
        };
        let auth = get("authorization");
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261123/eu-west-1/secretsmanager/aws4_request, SignedHeaders="
            ),
            "{auth}"
        );
        assert!(auth.contains("x-amz-target"), "{auth}");
        assert!(!auth.contains("wJalrXUtnFEMI"), "{auth}");
        assert_eq!(get("x-amz-date"), "20261123T120000Z");
        assert_eq!(get("x-amz-security-token"), "session-token-value");
        // Debug output of the headers hides the credentials.
        let shown = format!("{headers:?} {client:?}");
        assert!(!shown.contains("session-token-value"), "{shown}");
        assert!(!shown.contains("AKIDEXAMPLE/"), "{shown}");
    }
}
