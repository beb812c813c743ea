//! How a [`VaultClient`] gets the token it sends.
//!
//! - Token auth: the token from its reference. On first use it is looked up
//!   (`auth/token/lookup-self`) to learn its TTL; while renewable it is
//!   renewed (`auth/token/renew-self`) once less than a third of its TTL
//!   remains. Refused (403), or expired, it is read again from its
//!   reference: the operator may have put a new one there.
//! - AppRole: a login (`auth/{mount}/login`) gives a token and its lease;
//!   before two thirds of it have passed the token is renewed if renewable,
//!   else (and once renewal stops extending it) keyrot logs in again; a 403
//!   logs in again too. A refused login re-reads the secret id from its
//!   reference once (keyrot itself may have rotated it).
//!
//! Tokens and secret ids live in `SecretString`s behind `Arc`s; answers
//! that carry them are wiped once parsed.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use reqwest::{Method as HttpMethod, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::lease::{self, Lease, Refresh};
use super::{JsonBody, VaultClient};
use keyrot_config::{SecretRef, VaultAuth};
use keyrot_core::error::CallError;

/// Hint for a login the server refused.
const LOGIN_HINT: &str = "check `role_id` and `secret_id`: the secret id may have expired, \
     been used up or destroyed, or the role may not exist";

/// How the client authenticates (no secret held here).
pub(super) enum Method {
    /// A token, read from `source`.
    Token {
        /// Where the token comes from.
        source: SecretRef,
    },
    /// AppRole login.
    AppRole {
        /// Auth mount, without `/`.
        mount: String,
        /// Role id.
        role_id: String,
        /// Where the secret id comes from.
        source: SecretRef,
    },
}

impl fmt::Debug for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Token { source } => write!(f, "token from {source}"),
            Method::AppRole { mount, source, .. } => {
                write!(f, "AppRole at auth/{mount}, secret id from {source}")
            }
        }
    }
}

impl Method {
    /// What a 403 on a call means, for hints.
    pub(super) fn refused_hint(&self) -> &'static str {
        match self {
            Method::Token { .. } => {
                "the token is invalid, expired or revoked, or its policies do not allow this call"
            }
            Method::AppRole { .. } => "the AppRole's token policies do not allow this call",
        }
    }
}

/// The token in use.
pub(super) struct Session {
    /// The token; always set for token auth, set by login for AppRole.
    token: Option<Arc<SecretString>>,
    /// Its lease; `None` until looked up (token) or logged in (AppRole).
    lease: Option<Lease>,
    /// The AppRole secret id.
    secret_id: Option<Arc<SecretString>>,
}

/// The method and the first session, with the auth secret resolved now.
pub(super) fn start(
    who: &str,
    auth: &VaultAuth,
    credentials_dir: Option<&Path>,
) -> Result<(Method, Session), CallError> {
    let resolve = |field: &str, r: &SecretRef| {
        r.resolve(credentials_dir)
            .map(Arc::new)
            .map_err(|e| CallError::permanent(format!("{who}: `{field}`: {e}")))
    };
    Ok(match auth {
        VaultAuth::Token(r) => (
            Method::Token { source: r.clone() },
            Session {
                token: Some(resolve("token", r)?),
                lease: None,
                secret_id: None,
            },
        ),
        VaultAuth::AppRole {
            mount,
            role_id,
            secret_id,
        } => (
            Method::AppRole {
                mount: mount.clone(),
                role_id: role_id.clone(),
                source: secret_id.clone(),
            },
            Session {
                token: None,
                lease: None,
                secret_id: Some(resolve("secret_id", secret_id)?),
            },
        ),
    })
}

/// `auth` of a login or renewal answer.
#[derive(Deserialize)]
struct AuthAnswer {
    /// Absent when the server gave no token.
    auth: Option<AuthBlock>,
}

/// The token a login or renewal granted.
#[derive(Deserialize)]
struct AuthBlock {
    /// The token.
    client_token: SecretString,
    /// Its TTL in seconds (0: none).
    #[serde(default)]
    lease_duration: u64,
    /// Whether it may be renewed.
    #[serde(default)]
    renewable: bool,
}

/// `auth/token/lookup-self`.
#[derive(Deserialize)]
struct LookupAnswer {
    /// The token's properties.
    data: LookupData,
}

/// What keyrot reads of a token lookup (its `id`, the token itself, is
/// skipped).
#[derive(Deserialize)]
struct LookupData {
    /// Seconds left (0: no expiry).
    #[serde(default)]
    ttl: u64,
    /// TTL it was created with.
    #[serde(default)]
    creation_ttl: u64,
    /// Period of a periodic token.
    #[serde(default)]
    period: Option<u64>,
    /// Whether it may be renewed.
    #[serde(default)]
    renewable: bool,
}

/// An AppRole login body.
#[derive(Serialize)]
struct LoginBody<'a> {
    /// Role id.
    role_id: &'a str,
    /// Secret id.
    secret_id: &'a str,
}

impl VaultClient {
    /// The token to send now, looked up, renewed or replaced first when
    /// its lease says so.
    pub(super) async fn token(&self) -> Result<Arc<SecretString>, CallError> {
        let mut s = self.session.lock().await;
        match &self.method {
            Method::Token { source } => self.refresh_token(&mut s, source).await?,
            Method::AppRole { .. } => self.refresh_approle(&mut s).await?,
        }
        s.token
            .clone()
            .ok_or_else(|| CallError::permanent(format!("{}: no token to send", self.who)))
    }

    /// After a 403 with `used`: replaces the token (re-read from its
    /// reference, or a new AppRole login). True when the call is worth
    /// making again (the token changed, here or in a concurrent call).
    pub(super) async fn replace_refused(
        &self,
        used: &Arc<SecretString>,
    ) -> Result<bool, CallError> {
        let mut s = self.session.lock().await;
        if !s.token.as_ref().is_some_and(|t| Arc::ptr_eq(t, used)) {
            return Ok(true);
        }
        match &self.method {
            Method::Token { source } => Ok(self.reread_token(&mut s, source).await),
            Method::AppRole { .. } => {
                tracing::info!(who = %self.who, "the token was refused; logging in again");
                self.login(&mut s).await?;
                Ok(true)
            }
        }
    }

    /// Token auth: look the token up on first use, renew it when due, read
    /// it again from its reference once it has expired.
    async fn refresh_token(&self, s: &mut Session, source: &SecretRef) -> Result<(), CallError> {
        let Some(token) = s.token.clone() else {
            return Ok(());
        };
        let Some(current) = s.lease else {
            s.lease = Some(self.lookup_self(&token).await?);
            return Ok(());
        };
        let now = lease::now();
        match current.refresh_at(now) {
            Refresh::Keep => {}
            Refresh::Renew => match self.renew_self(&token, &current).await {
                Ok(renewed) => s.lease = Some(renewed),
                Err(e) if e.transient => return Err(e),
                Err(e) => {
                    tracing::warn!(who = %self.who, error = %e, "cannot renew the token; using it until it expires");
                    s.lease = Some(current.without_renewal());
                }
            },
            Refresh::Replace => {
                if current.expired_at(now)
                    && self.reread_token(s, source).await
                    && let Some(fresh) = s.token.clone()
                {
                    s.lease = Some(self.lookup_self(&fresh).await?);
                }
            }
        }
        Ok(())
    }

    /// AppRole: log in when there is no live token, renew when due, log in
    /// again when renewal fails or no longer extends the token.
    async fn refresh_approle(&self, s: &mut Session) -> Result<(), CallError> {
        let (Some(token), Some(current)) = (s.token.clone(), s.lease) else {
            return self.login(s).await;
        };
        let now = lease::now();
        match current.refresh_at(now) {
            Refresh::Keep => Ok(()),
            Refresh::Replace => self.login(s).await,
            Refresh::Renew => match self.renew_self(&token, &current).await {
                Ok(renewed) if renewed.refresh_at(now) == Refresh::Keep => {
                    s.lease = Some(renewed);
                    Ok(())
                }
                Ok(_) => {
                    tracing::debug!(who = %self.who, "the token reached its maximum TTL; logging in again");
                    self.login(s).await
                }
                Err(e) if e.transient => Err(e),
                Err(e) => {
                    tracing::debug!(who = %self.who, error = %e, "renewal refused; logging in again");
                    self.login(s).await
                }
            },
        }
    }

    /// `auth/token/lookup-self`: the token's lease. A token whose policies
    /// forbid the lookup is used as it is, never renewed.
    async fn lookup_self(&self, token: &SecretString) -> Result<Lease, CallError> {
        let what = "look up the token";
        let ans = self
            .send(
                what,
                HttpMethod::GET,
                "auth/token/lookup-self",
                Some(token),
                None,
            )
            .await?;
        match ans.status {
            StatusCode::OK => {
                let a: LookupAnswer = self.take_json(ans, what)?;
                let d = a.data;
                let full = d.period.filter(|p| *p > 0).unwrap_or(d.creation_ttl);
                Ok(Lease::granted(lease::now(), d.ttl, full, d.renewable))
            }
            StatusCode::FORBIDDEN => {
                tracing::warn!(who = %self.who, "{} refused the token lookup (403): the token is used as it is and never renewed", self.peer);
                Ok(Lease::unknown())
            }
            _ => Err(self.status_error(what, &ans, None)),
        }
    }

    /// `auth/token/renew-self`: the renewed lease.
    async fn renew_self(&self, token: &SecretString, current: &Lease) -> Result<Lease, CallError> {
        let what = "renew the token";
        let body = JsonBody::json(&serde_json::json!({})).map_err(|e| self.body_error(what, &e))?;
        let ans = self
            .send(
                what,
                HttpMethod::POST,
                "auth/token/renew-self",
                Some(token),
                Some(&body),
            )
            .await?;
        if !ans.status.is_success() {
            return Err(self.status_error(what, &ans, None));
        }
        let a: AuthAnswer = self.take_json(ans, what)?;
        let auth = a.auth.ok_or_else(|| self.no_auth_error(what))?;
        tracing::debug!(who = %self.who, ttl_secs = auth.lease_duration, "renewed the token");
        Ok(current.renewed(lease::now(), auth.lease_duration, auth.renewable))
    }

    /// AppRole login; on a refusal the secret id is read again from its
    /// reference and, if it changed, the login tried once more.
    async fn login(&self, s: &mut Session) -> Result<(), CallError> {
        let Method::AppRole {
            mount,
            role_id,
            source,
        } = &self.method
        else {
            return Ok(());
        };
        let path = format!("auth/{mount}/login");
        let what = format!("log in with AppRole at {path}");
        let mut retried = false;
        loop {
            let Some(secret_id) = s.secret_id.clone() else {
                return Err(CallError::permanent(format!("{}: no secret id", self.who)));
            };
            let body = JsonBody::json(&LoginBody {
                role_id,
                secret_id: secret_id.expose_secret(),
            })
            .map_err(|e| self.body_error(&what, &e))?;
            let ans = self
                .send(&what, HttpMethod::POST, &path, None, Some(&body))
                .await?;
            if ans.status.is_success() {
                let a: AuthAnswer = self.take_json(ans, &what)?;
                let auth = a.auth.ok_or_else(|| self.no_auth_error(&what))?;
                s.lease = Some(Lease::granted(
                    lease::now(),
                    auth.lease_duration,
                    0,
                    auth.renewable,
                ));
                s.token = Some(Arc::new(auth.client_token));
                tracing::info!(who = %self.who, ttl_secs = auth.lease_duration, "logged in with AppRole");
                return Ok(());
            }
            let refused = matches!(
                ans.status,
                StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            );
            if refused && !retried {
                retried = true;
                if let Some(fresh) = self.reread(source).await
                    && fresh.expose_secret() != secret_id.expose_secret()
                {
                    tracing::info!(who = %self.who, "secret_id changed at its source; using the new one");
                    s.secret_id = Some(Arc::new(fresh));
                    continue;
                }
            }
            let hint = refused.then_some(LOGIN_HINT);
            return Err(self.status_error(&what, &ans, hint));
        }
    }

    /// Reads the token again from its reference; true when it changed
    /// (then it is in use, to be looked up again).
    async fn reread_token(&self, s: &mut Session, source: &SecretRef) -> bool {
        let Some(fresh) = self.reread(source).await else {
            return false;
        };
        let same = s
            .token
            .as_ref()
            .is_some_and(|t| t.expose_secret() == fresh.expose_secret());
        if same {
            return false;
        }
        tracing::info!(who = %self.who, "token changed at its source; using the new one");
        s.token = Some(Arc::new(fresh));
        s.lease = None;
        true
    }

    /// A secret read again from its reference (off the async threads);
    /// `None`, with a warning, when it cannot be read.
    async fn reread(&self, source: &SecretRef) -> Option<SecretString> {
        let r = source.clone();
        let dir = self.credentials_dir.clone();
        match tokio::task::spawn_blocking(move || r.resolve(dir.as_deref())).await {
            Ok(Ok(fresh)) => Some(fresh),
            Ok(Err(e)) => {
                tracing::warn!(who = %self.who, error = %e, "cannot read the secret again from its reference");
                None
            }
            Err(_) => None,
        }
    }

    /// A body that could not be serialised (cannot happen for these shapes).
    fn body_error(&self, what: &str, e: &serde_json::Error) -> CallError {
        CallError::permanent(format!(
            "{}: {what}: cannot build the request: {e}",
            self.who
        ))
    }

    /// An answer without the `auth` block a token comes in.
    fn no_auth_error(&self, what: &str) -> CallError {
        CallError::transient(format!(
            "{}: {what}: {} answered without a token",
            self.who, self.peer
        ))
    }
}
