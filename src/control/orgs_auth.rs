//! Who calls the rotate API. With no `[[api_token]]` configured, whoever
//! can open the control socket may (its file mode decides, as for every
//! other route). With tokens configured, every call to the rotate API needs
//! `Authorization: Bearer <token>` (401 otherwise), and each token may only
//! touch the slots its `keys` globs match (403 otherwise).
//!
//! Tokens are read from their secret references on each call (so a reload
//! or a rotated token file takes effect at once) and compared by SHA-256,
//! never logged; a token that cannot be read is skipped with an error in
//! the log.

use axum::extract::FromRequestParts;
use axum::http::HeaderValue;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};

use super::super::AppState;
use crate::config::{ApiTokenConfig, credentials_dir_from_env};
use crate::control::ApiError;
use crate::rotation::reveal::resolve_token;
use crate::scheduler::bind::glob;

/// The caller of a rotate API route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    /// No tokens are configured: the socket's permissions let it in.
    Socket,
    /// A caller with a valid token.
    Token {
        /// The token's `name`.
        name: String,
        /// Slot-id globs it may rotate.
        keys: Vec<String>,
    },
}

impl Caller {
    /// Whether this caller may rotate (or read the sealed secret of) `slot`.
    pub(super) fn may(&self, slot: &str) -> bool {
        match self {
            Caller::Socket => true,
            Caller::Token { keys, .. } => keys.iter().any(|g| glob(g, slot)),
        }
    }

    /// The token's name, if the caller used one.
    pub(super) fn token_name(&self) -> Option<&str> {
        match self {
            Caller::Socket => None,
            Caller::Token { name, .. } => Some(name),
        }
    }

    /// The 403 for a slot this caller may not touch.
    pub(super) fn forbidden(&self, slot: &str) -> ApiError {
        let (name, keys) = match self {
            Caller::Token { name, keys } => (name.as_str(), keys.join(", ")),
            Caller::Socket => ("-", String::new()),
        };
        let mut e = ApiError::new(
            403,
            format!("api_token {name:?} may not rotate {slot} (it may rotate: {keys})"),
        );
        e.field = Some("apiKeyId".into());
        e
    }
}

/// Extracts the [`Caller`]; rejects with 401 and `WWW-Authenticate`.
pub(crate) struct Auth(pub(crate) Caller);

impl FromRequestParts<AppState> for Auth {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Auth, Response> {
        let tokens = st.backend.config().api_tokens.clone();
        if tokens.is_empty() {
            return Ok(Auth(Caller::Socket));
        }
        let presented = bearer(parts).map_err(unauthorized)?;
        let found = tokio::task::spawn_blocking(move || find(&tokens, &presented))
            .await
            .map_err(|e| {
                ApiError::new(500, format!("internal error while checking the token: {e}"))
                    .into_response()
            })?;
        match found {
            Some(t) => Ok(Auth(Caller::Token {
                name: t.name,
                keys: t.keys,
            })),
            None => Err(unauthorized(
                "the bearer token is not one of the configured [[api_token]]s",
            )),
        }
    }
}

/// The token of an `Authorization: Bearer` header.
fn bearer(parts: &Parts) -> Result<SecretString, &'static str> {
    let value = parts.headers.get(AUTHORIZATION).ok_or(
        "this endpoint needs `Authorization: Bearer <token>` (an [[api_token]] is configured)",
    )?;
    let text = value
        .to_str()
        .map_err(|_| "the Authorization header is not plain text")?;
    let (scheme, token) = text
        .split_once(' ')
        .ok_or("the Authorization header must be `Bearer <token>`")?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err("the Authorization header must be `Bearer <token>`");
    }
    Ok(SecretString::from(token.trim().to_string()))
}

/// The configured token equal to `presented`, compared by SHA-256.
fn find(tokens: &[ApiTokenConfig], presented: &SecretString) -> Option<ApiTokenConfig> {
    let creds = credentials_dir_from_env();
    let want = crate::crypto::sha256_hex(presented.expose_secret().as_bytes());
    tokens
        .iter()
        .find(|t| match resolve_token(t, creds.as_deref()) {
            Ok(v) => crate::crypto::sha256_hex(v.expose_secret().trim().as_bytes()) == want,
            Err(e) => {
                tracing::error!(error = %e, "api token skipped: it cannot be read");
                false
            }
        })
        .cloned()
}

/// A 401 with `WWW-Authenticate: Bearer`.
fn unauthorized(message: &str) -> Response {
    let mut resp = ApiError::new(401, message).into_response();
    resp.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"keyrot\""),
    );
    resp
}
