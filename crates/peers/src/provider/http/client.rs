//! How the `http` provider talks to its API: the credentials as the
//! headers they are sent in (re-read once on 401), building a request from
//! an operation's templates, sending it (no redirects), scrubbing every
//! credential and secret from errors, and keeping calls on `base_url`'s host.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jiff::Timestamp;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{RequestBuilder, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use zeroize::Zeroizing;

use super::HttpProvider;
use crate::http::Answer;
use keyrot_config::http_provider::spec::{Auth, Call};
use keyrot_config::http_provider::template::{Missing, Values, Var};
use keyrot_core::error::CallError;

/// One credential as the header it is sent in.
pub(super) struct AuthHeader {
    /// Header name.
    pub(super) name: HeaderName,
    /// The whole header value (e.g. `Bearer ...`).
    pub(super) value: SecretString,
    /// The secret alone, for scrubbing messages.
    pub(super) raw: SecretString,
}

/// Resolves every credential into the header it is sent in.
pub(super) fn resolve_auth(
    who: &str,
    auths: &[Auth],
    credentials_dir: Option<&Path>,
) -> Result<Vec<AuthHeader>, CallError> {
    let mut out = Vec::new();
    for a in auths {
        let (field, r) = a.secret();
        let raw = r
            .resolve(credentials_dir)
            .map_err(|e| CallError::permanent(format!("{who}: `{field}`: {e}")))?;
        let (name, value) = match a {
            Auth::Bearer { .. } => (
                header::AUTHORIZATION,
                Zeroizing::new(format!("Bearer {}", raw.expose_secret())),
            ),
            Auth::Basic { user, .. } => {
                let pair = Zeroizing::new(format!("{user}:{}", raw.expose_secret()));
                (
                    header::AUTHORIZATION,
                    Zeroizing::new(format!("Basic {}", STANDARD.encode(pair.as_bytes()))),
                )
            }
            Auth::Header { name, prefix, .. } => (
                name.clone(),
                Zeroizing::new(format!("{prefix}{}", raw.expose_secret())),
            ),
        };
        if HeaderValue::from_str(&value).is_err() {
            return Err(CallError::permanent(format!(
                "{who}: `{field}` ({r}): the secret cannot be sent in an HTTP header (control characters or non-ASCII text)"
            )));
        }
        out.push(AuthHeader {
            name,
            value: SecretString::from(value.to_string()),
            raw,
        });
    }
    Ok(out)
}

impl HttpProvider {
    /// The credentials in use.
    pub(super) fn auth(&self) -> Arc<Vec<AuthHeader>> {
        match self.auth.read() {
            Ok(a) => Arc::clone(&a),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Re-reads the credentials from their references; true when one
    /// changed (then the new ones are in use). keyrot may have rotated its
    /// own API token into the file a reference points at.
    pub(super) async fn reload_auth(&self, used: &[AuthHeader]) -> bool {
        let auths = self.spec.auth.clone();
        let dir = self.credentials_dir.clone();
        let who = self.who.clone();
        let fresh =
            tokio::task::spawn_blocking(move || resolve_auth(&who, &auths, dir.as_deref())).await;
        let Ok(Ok(fresh)) = fresh else {
            return false;
        };
        let changed = fresh.len() != used.len()
            || fresh
                .iter()
                .zip(used)
                .any(|(a, b)| a.value.expose_secret() != b.value.expose_secret());
        if !changed {
            return false;
        }
        tracing::info!(provider = %self.name, "the API credentials changed at their source; using the new ones");
        match self.auth.write() {
            Ok(mut a) => *a = Arc::new(fresh),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(fresh),
        }
        true
    }

    /// `err` with every credential (and `extra`) scrubbed from its message.
    pub(super) fn scrub(&self, mut err: CallError, extra: Option<&SecretString>) -> CallError {
        for a in self.auth().iter() {
            err = crate::http::redact(err, a.value.expose_secret());
            err = crate::http::redact(err, a.raw.expose_secret());
        }
        if let Some(s) = extra {
            err = crate::http::redact(err, s.expose_secret());
        }
        err
    }

    /// The error for a variable without a value in this call.
    pub(super) fn missing(&self, what: &str, m: Missing) -> CallError {
        let why = if m.0.contains("expires") || m.0.contains("seconds_to_live") {
            " (no expiry was requested: set `new_key_lifetime` in the key's policy, or leave the variable out of the template)"
        } else {
            ""
        };
        CallError::permanent(format!("{}: {what}: {} has no value{why}", self.who, m.0))
    }

    /// The error for an answer whose status is not accepted.
    pub(super) fn status_error(&self, what: &str, ans: &Answer, now: Timestamp) -> CallError {
        let hint = match ans.status {
            StatusCode::UNAUTHORIZED => {
                Some("check the provider's `auth`: the API does not accept the credential")
            }
            StatusCode::FORBIDDEN => {
                Some("the credential in `auth` lacks a permission this call needs")
            }
            s if s.is_redirection() => Some("redirects are not followed: check `base_url`"),
            _ => None,
        };
        let err = crate::http::status_error(&self.who, what, &self.peer, ans, now, hint);
        self.scrub(err, None)
    }

    /// `base_url` joined with a call's rendered path.
    pub(super) fn url(&self, what: &str, call: &Call, vals: &Values<'_>) -> Result<Url, CallError> {
        let path = call.path.path(vals).map_err(|m| self.missing(what, m))?;
        let url = Url::parse(&format!("{}{path}", self.spec.base_url)).map_err(|e| {
            CallError::permanent(format!("{}: {what}: the path makes no URL: {e}", self.who))
        })?;
        self.same_origin(what, url)
    }

    /// `url` if it is on `base_url`'s scheme, host and port: credentials go nowhere else.
    pub(super) fn same_origin(&self, what: &str, url: Url) -> Result<Url, CallError> {
        if url.origin() != self.base.origin() {
            return Err(CallError::permanent(format!(
                "{}: {what}: {} is not on base_url's host; refusing to send credentials there",
                self.who,
                url.origin().ascii_serialization()
            )));
        }
        Ok(url)
    }

    /// The request for `call`, with static headers, credentials (when
    /// `with_auth`), the operation's headers and the JSON body.
    pub(super) fn request(
        &self,
        what: &str,
        call: &Call,
        url: Url,
        vals: &Values<'_>,
        auth: Option<&[AuthHeader]>,
    ) -> Result<RequestBuilder, CallError> {
        let bad_header = |name: &HeaderName| {
            CallError::permanent(format!(
                "{}: {what}: header {name} is not a valid header value once filled in",
                self.who
            ))
        };
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        for (name, value) in &self.spec.headers {
            let v = HeaderValue::from_str(value).map_err(|_| bad_header(name))?;
            headers.insert(name.clone(), v);
        }
        for a in auth.unwrap_or_default() {
            let mut v =
                HeaderValue::from_str(a.value.expose_secret()).map_err(|_| bad_header(&a.name))?;
            v.set_sensitive(true);
            headers.insert(a.name.clone(), v);
        }
        for (name, t) in &call.headers {
            let text = t.text(vals).map_err(|m| self.missing(what, m))?;
            let mut v = HeaderValue::from_str(&text).map_err(|_| bad_header(name))?;
            v.set_sensitive(t.uses(&Var::Secret));
            headers.insert(name.clone(), v);
        }
        let mut req = self.http.request(call.method.clone(), url);
        if let Some(body) = &call.body {
            let value = body.render(vals).map_err(|m| self.missing(what, m))?;
            let bytes = serde_json::to_vec(&value).map_err(|e| {
                CallError::permanent(format!("{}: {what}: cannot encode the body: {e}", self.who))
            })?;
            if !headers.contains_key(header::CONTENT_TYPE) {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
            }
            req = req.body(bytes);
        }
        Ok(req.headers(headers))
    }

    /// Sends `call` to `url` and reads the answer. With `with_auth`, a 401
    /// makes the credentials be read again, and the call is made once more
    /// if they changed (a 401 means the call was not carried out).
    pub(super) async fn call(
        &self,
        what: &str,
        call: &Call,
        url: &Url,
        vals: &Values<'_>,
        with_auth: bool,
    ) -> Result<Answer, CallError> {
        let send = |auth: Option<Arc<Vec<AuthHeader>>>| async move {
            let req = self.request(
                what,
                call,
                url.clone(),
                vals,
                auth.as_deref().map(|a| &a[..]),
            )?;
            crate::http::send(
                &self.who,
                what,
                crate::http::PeerKind::HttpProvider,
                self.spec.timeout,
                req,
            )
            .await
            .map_err(|e| self.scrub(e, vals.secret))
        };
        if !with_auth {
            return send(None).await;
        }
        let used = self.auth();
        let ans = send(Some(Arc::clone(&used))).await?;
        if ans.status == StatusCode::UNAUTHORIZED && self.reload_auth(&used).await {
            return send(Some(self.auth())).await;
        }
        Ok(ans)
    }

    /// An answer's JSON; a permanent error naming what it is not.
    pub(super) fn json(&self, what: &str, ans: &Answer) -> Result<Value, CallError> {
        serde_json::from_slice(&ans.body).map_err(|e| {
            CallError::permanent(format!(
                "{}: {what}: the answer ({} bytes) is not JSON (line {}, column {})",
                self.who,
                ans.body.len(),
                e.line(),
                e.column()
            ))
        })
    }
}

/// `url` with query parameter `name` set to `value` (replacing it).
pub(super) fn set_query(url: &Url, name: &str, value: &str) -> Url {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut out = url.clone();
    out.set_query(None);
    {
        let mut q = out.query_pairs_mut();
        for (k, v) in &pairs {
            q.append_pair(k, v);
        }
        q.append_pair(name, value);
    }
    out
}
