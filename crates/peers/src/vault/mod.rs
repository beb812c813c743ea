//! OpenBao/Vault client shared by the KV v2 sink and the AppRole provider:
//! one HTTP client per server (rustls, extra CA, timeout, no redirects),
//! `X-Vault-Namespace`, and the token it sends: a configured token (looked
//! up, renewed while renewable, re-read from its reference when refused)
//! or an AppRole login (renewed, or logged in again). [`VaultClient::request`]
//! makes one authenticated call and returns the answer whatever its status;
//! the caller decides what a status means. The token lives only in
//! `SecretString`s and never reaches a message, a log line or `Debug`.
//!
//! It knows nothing of KV paths or sinks: [`kv`] holds the KV v2 wire
//! shapes; the sink is `crate::sink::openbao`.

mod auth;
pub mod body;
pub mod kv;
mod lease;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::SignedDuration;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use zeroize::Zeroize;

use crate::http::{Answer, PeerKind};
use keyrot_config::VaultAuth;
use keyrot_core::clock::{Clock, SystemClock};
use keyrot_core::error::CallError;

pub use self::body::JsonBody;

/// Header carrying the token.
const TOKEN_HEADER: &str = "X-Vault-Token";
/// Header carrying the namespace.
const NAMESPACE_HEADER: &str = "X-Vault-Namespace";

/// What a [`VaultClient`] is built from.
#[derive(Clone, Copy, Debug)]
pub struct VaultOptions<'a> {
    /// Who uses it, for messages: `sink "bao"`, `provider "approle"`.
    pub who: &'a str,
    /// `openbao` or `vault`: names the peer in messages.
    pub flavor: &'a str,
    /// Server URL (`https://bao.example.com:8200`), no trailing `/`.
    pub address: &'a str,
    /// Namespace sent as `X-Vault-Namespace`.
    pub namespace: Option<&'a str>,
    /// PEM CA certificates to trust besides the system's.
    pub ca_file: Option<&'a Path>,
    /// Per-request timeout.
    pub timeout: SignedDuration,
    /// How to authenticate.
    pub auth: &'a VaultAuth,
    /// `$CREDENTIALS_DIRECTORY`, for `{ credential = ".." }` references.
    pub credentials_dir: Option<&'a Path>,
}

/// An authenticated client of one OpenBao/Vault server.
pub struct VaultClient {
    /// Who uses it, for messages.
    who: String,
    /// `OpenBao` or `Vault`, for messages.
    peer: &'static str,
    /// Server URL.
    base: Url,
    /// `X-Vault-Namespace`, when set.
    namespace: Option<HeaderValue>,
    /// Per-request timeout (for messages; the client enforces it).
    timeout: SignedDuration,
    /// HTTP client.
    http: reqwest::Client,
    /// How it authenticates.
    method: auth::Method,
    /// `$CREDENTIALS_DIRECTORY`, to re-read a secret reference.
    credentials_dir: Option<PathBuf>,
    /// The token in use and its lease; locked while it is looked up,
    /// renewed or replaced, never during a request.
    session: tokio::sync::Mutex<auth::Session>,
    /// Wall clock, for `Retry-After` dates.
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultClient")
            .field("who", &self.who)
            .field("address", &self.base.as_str())
            .field("namespace", &self.namespace)
            .field("auth", &self.method)
            .finish_non_exhaustive()
    }
}

impl VaultClient {
    /// Builds the client and resolves the auth secret (token or secret id)
    /// now, so a missing one fails at start with the user and field named.
    pub fn new(opts: VaultOptions<'_>) -> Result<VaultClient, CallError> {
        let who = opts.who.to_string();
        let base = Url::parse(opts.address).map_err(|e| {
            CallError::permanent(format!(
                "{who}: `address` {:?} is not a URL: {e}",
                opts.address
            ))
        })?;
        let namespace = opts
            .namespace
            .map(|ns| {
                HeaderValue::from_str(ns).map_err(|_| {
                    CallError::permanent(format!(
                        "{who}: `namespace` {ns:?} cannot be sent in an HTTP header (use ASCII)"
                    ))
                })
            })
            .transpose()?;
        let http = crate::http::client(&who, opts.timeout, opts.ca_file)?;
        let (method, session) = auth::start(&who, opts.auth, opts.credentials_dir)?;
        Ok(VaultClient {
            who,
            peer: peer_name(opts.flavor),
            base,
            namespace,
            timeout: opts.timeout,
            http,
            method,
            credentials_dir: opts.credentials_dir.map(Path::to_path_buf),
            session: tokio::sync::Mutex::new(session),
            clock: Arc::new(SystemClock),
        })
    }

    /// The same client reading wall time from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> VaultClient {
        self.clock = clock;
        self
    }

    /// Who uses it (`sink "bao"`).
    pub fn who(&self) -> &str {
        &self.who
    }

    /// The peer's name for messages (`OpenBao` or `Vault`).
    pub fn peer(&self) -> &'static str {
        self.peer
    }

    /// One authenticated call: `method` on `/v1/{path}` with an optional
    /// JSON body. Any status comes back as an answer; a 403 first gets the
    /// token replaced once (a token re-read from its reference, an AppRole
    /// login) and the call made again. `what` names the step in errors.
    pub async fn request(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<&JsonBody>,
    ) -> Result<Answer, CallError> {
        let token = self.token().await?;
        let ans = self
            .send(what, method.clone(), path, Some(&token), body)
            .await?;
        if ans.status != StatusCode::FORBIDDEN || !self.replace_refused(&token).await? {
            return Ok(ans);
        }
        let token = self.token().await?;
        self.send(what, method, path, Some(&token), body).await
    }

    /// The error for an answer the caller does not accept:
    /// `{who}: {what}: {peer} answered 403 Forbidden: detail (hint)`.
    pub fn status_error(&self, what: &str, ans: &Answer, hint: Option<&str>) -> CallError {
        let now = self.clock.now();
        match tidy_errors(&ans.body) {
            Some(body) => {
                let tidy = Answer {
                    status: ans.status,
                    headers: ans.headers.clone(),
                    body: body.into(),
                };
                crate::http::status_error(&self.who, what, self.peer, &tidy, now, hint)
            }
            None => crate::http::status_error(&self.who, what, self.peer, ans, now, hint),
        }
    }

    /// What a refusal (403) means for this auth method, for hints.
    pub fn refused_hint(&self) -> &'static str {
        self.method.refused_hint()
    }

    /// The answer's body as JSON of type `T`; the body is wiped either way
    /// (it may hold a token or a secret).
    pub fn take_json<T: DeserializeOwned>(
        &self,
        mut ans: Answer,
        what: &str,
    ) -> Result<T, CallError> {
        let parsed = ans.json(&self.who, what);
        ans.body.zeroize();
        parsed
    }

    /// `{address}/v1/{path}`, each segment of `path` percent-encoded.
    fn url(&self, path: &str) -> Result<Url, CallError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| {
                CallError::permanent(format!(
                    "{}: `address` {} cannot have a path",
                    self.who, self.base
                ))
            })?
            .pop_if_empty()
            .push("v1")
            .extend(path.trim_matches('/').split('/'));
        Ok(url)
    }

    /// Sends one request with `token` (none for a login) and reads the
    /// whole answer.
    async fn send(
        &self,
        what: &str,
        method: Method,
        path: &str,
        token: Option<&SecretString>,
        body: Option<&JsonBody>,
    ) -> Result<Answer, CallError> {
        let mut req = self.http.request(method, self.url(path)?);
        if let Some(ns) = &self.namespace {
            req = req.header(NAMESPACE_HEADER, ns.clone());
        }
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(token.expose_secret()).map_err(|_| {
                CallError::permanent(format!(
                    "{}: {what}: the token holds characters an HTTP header cannot carry",
                    self.who
                ))
            })?;
            value.set_sensitive(true);
            req = req.header(TOKEN_HEADER, value);
        }
        if let Some(body) = body {
            req = req
                .header(CONTENT_TYPE, body.content_type())
                .body(body.to_body());
        }
        crate::http::send(&self.who, what, PeerKind::Vault, self.timeout, req)
            .await
            .map_err(|mut e| {
                if e.message.contains("certificate") {
                    e.message.push_str(
                        " (does `ca_file` hold the CA that signed the server's certificate?)",
                    );
                }
                e
            })
    }
}

/// `{"errors":[..]}` with each error on one line: OpenBao and Vault wrap
/// several errors as `N errors occurred:\n\t* a\n\t* b\n\n`, which
/// becomes `a; b`. `None` when the body is not such a list or is already
/// tidy.
fn tidy_errors(body: &[u8]) -> Option<Vec<u8>> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let errors = v.get("errors")?.as_array()?;
    if !errors
        .iter()
        .any(|e| e.as_str().is_some_and(|s| s.contains('\n')))
    {
        return None;
    }
    let tidy: Vec<String> = errors
        .iter()
        .filter_map(|e| e.as_str())
        .map(|s| {
            let items: Vec<&str> = s
                .lines()
                .filter_map(|l| l.trim().strip_prefix("* "))
                .collect();
            if items.is_empty() {
                s.split_whitespace().collect::<Vec<_>>().join(" ")
            } else {
                items.join("; ")
            }
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "errors": tidy })).ok()
}

/// The peer's name for a flavor.
fn peer_name(flavor: &str) -> &'static str {
    if flavor.eq_ignore_ascii_case("vault") {
        "Vault"
    } else {
        "OpenBao"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyrot_config::SecretRef;

    fn client(address: &str, token_file: &Path) -> Result<VaultClient, CallError> {
        let auth = VaultAuth::Token(SecretRef::File(token_file.to_path_buf()));
        VaultClient::new(VaultOptions {
            who: "sink \"bao\"",
            flavor: "vault",
            address,
            namespace: Some("team/a"),
            ca_file: None,
            timeout: SignedDuration::from_secs(5),
            auth: &auth,
            credentials_dir: None,
        })
    }

    #[test]
    fn urls_keep_a_path_prefix_and_encode_segments() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "hvs.token-value\n").unwrap();
        let c = client("https://vault.example.com:8200/proxy/", &token).unwrap();
        assert_eq!(
            c.url("secret/data/team a/ci").unwrap().as_str(),
            "https://vault.example.com:8200/proxy/v1/secret/data/team%20a/ci"
        );
        assert_eq!(c.peer(), "Vault");
        let shown = format!("{c:?}");
        assert!(!shown.contains("token-value"), "{shown}");
        assert!(shown.contains("team/a"), "{shown}");
    }

    #[test]
    fn wrapped_errors_come_out_on_one_line() {
        let body = br#"{"errors":["1 error occurred:\n\t* permission denied\n\n"]}"#;
        let tidy = tidy_errors(body).unwrap();
        assert_eq!(
            crate::http::error_detail(&tidy).unwrap(),
            "permission denied"
        );
        let two = br#"{"errors":["2 errors occurred:\n\t* a\n\t* b\n\n"]}"#;
        assert_eq!(
            crate::http::error_detail(&tidy_errors(two).unwrap()).unwrap(),
            "a; b"
        );
        let odd = br#"{"errors":["first line\nsecond"]}"#;
        assert_eq!(
            crate::http::error_detail(&tidy_errors(odd).unwrap()).unwrap(),
            "first line second"
        );
        assert_eq!(tidy_errors(br#"{"errors":["permission denied"]}"#), None);
        assert_eq!(tidy_errors(b"<html>"), None);
    }

    #[test]
    fn a_missing_token_names_the_user_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let err = client("http://127.0.0.1:1", &dir.path().join("absent")).unwrap_err();
        assert!(!err.transient);
        assert!(
            err.message
                .starts_with("sink \"bao\": `token`: file: cannot read "),
            "{}",
            err.message
        );
    }
}
