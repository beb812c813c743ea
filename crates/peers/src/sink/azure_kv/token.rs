//! The Entra ID access token of the `azure-keyvault` sink: the
//! client-credentials grant (its form body in a wiped buffer), the cache,
//! and when a token is renewed.

use std::sync::Arc;

use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use zeroize::{Zeroize, Zeroizing};

use super::{AzureKeyVaultSink, MAX_REFRESH_MARGIN, REFRESH_MARGIN_DIVISOR};
use crate::http::{PeerKind, redact, send, status_error};
use keyrot_core::error::CallError;

/// An access token and when to stop using it.
pub(super) struct CachedToken {
    /// The bearer token.
    token: Arc<SecretString>,
    /// Fetch a new one from this instant on.
    refresh_at: Timestamp,
}

impl AzureKeyVaultSink {
    /// A valid access token: the cached one, or a new one.
    pub(super) async fn token(&self) -> Result<Arc<SecretString>, CallError> {
        let mut slot = self.token.lock().await;
        let now = self.clock.now();
        if let Some(cached) = slot.as_ref().filter(|c| now < c.refresh_at) {
            return Ok(Arc::clone(&cached.token));
        }
        *slot = None;
        let fresh = self.fetch_token(now).await?;
        let token = Arc::clone(&fresh.token);
        *slot = Some(fresh);
        Ok(token)
    }

    /// Forgets `used` if it is still the cached token (another caller may
    /// already have replaced it).
    pub(super) async fn drop_token(&self, used: &Arc<SecretString>) {
        let mut slot = self.token.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(&c.token, used)) {
            *slot = None;
        }
    }

    /// The client-credentials grant against Entra ID.
    async fn fetch_token(&self, now: Timestamp) -> Result<CachedToken, CallError> {
        let what = "get an access token from Entra ID";
        let form = form_encode(&[
            ("client_id", self.cfg.client_id.as_str()),
            ("client_secret", self.client_secret.expose_secret()),
            ("scope", self.scope.as_str()),
            ("grant_type", "client_credentials"),
        ]);
        let req = self
            .http
            .post(&self.token_url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Bytes::from_owner(form));
        let secret = self.client_secret.expose_secret();
        let mut ans = send(&self.who, what, PeerKind::Azure, self.cfg.timeout, req)
            .await
            .map_err(|e| redact(e, secret))?;
        if ans.status != StatusCode::OK {
            let hint = match ans.status {
                StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED => Some(
                    "check tenant_id, client_id and client_secret: the secret's value, not its \
                     id, and not expired",
                ),
                _ => None,
            };
            let err = status_error(&self.who, what, "Entra ID", &ans, now, hint);
            return Err(redact(err, secret));
        }
        let parsed = ans.json::<TokenAnswer>(&self.who, what);
        ans.body.zeroize();
        let parsed = parsed?;
        if !parsed.token_type.eq_ignore_ascii_case("bearer") {
            return Err(CallError::permanent(format!(
                "{}: {what}: Entra ID issued a {:?} token, not a Bearer token",
                self.who, parsed.token_type
            )));
        }
        let lifetime = SignedDuration::from_secs(parsed.expires_in.seconds());
        let margin = MAX_REFRESH_MARGIN.min(lifetime / REFRESH_MARGIN_DIVISOR);
        Ok(CachedToken {
            token: Arc::new(parsed.access_token),
            refresh_at: now.saturating_add(lifetime - margin).unwrap_or(now),
        })
    }
}

/// A successful token answer (`token_type`, `expires_in`, `access_token`).
#[derive(Deserialize)]
struct TokenAnswer {
    /// `Bearer`.
    token_type: String,
    /// Lifetime in seconds.
    expires_in: Seconds,
    /// The token.
    access_token: SecretString,
}

/// `expires_in`: a number (v2.0 endpoint) or a numeric string (v1.0).
#[derive(Deserialize)]
#[serde(untagged)]
enum Seconds {
    /// A JSON number.
    Number(u32),
    /// A string of digits.
    Text(String),
}

impl Seconds {
    /// The value; zero (use the token once) when it is not a number.
    fn seconds(&self) -> i64 {
        match self {
            Seconds::Number(n) => i64::from(*n),
            Seconds::Text(t) => t.trim().parse::<u32>().map(i64::from).unwrap_or(0),
        }
    }
}

/// `application/x-www-form-urlencoded`, in a buffer wiped on drop.
pub(super) fn form_encode(pairs: &[(&str, &str)]) -> Zeroizing<Vec<u8>> {
    let cap = pairs.iter().map(|(k, v)| 3 * (k.len() + v.len()) + 2).sum();
    let mut out = Zeroizing::new(Vec::with_capacity(cap));
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        url_encode_into(&mut out, k);
        out.push(b'=');
        url_encode_into(&mut out, v);
    }
    out
}

/// Percent-encodes `s` for a form (space as `+`).
fn url_encode_into(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(b),
            b' ' => out.push(b'+'),
            _ => out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]),
        }
    }
}
