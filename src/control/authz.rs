//! Who may call which control route: one model for every route.
//!
//! A caller is either
//! - a **peer** the `[daemon]` allow-lists admit by its socket credentials
//!   (`SO_PEERCRED`: root and keyrot's own uid by default, see
//!   [`Peer::allowed`]), sending no `Authorization` header: it may do
//!   everything, as the CLI does; or
//! - a **token** caller, sending `Authorization: Bearer <token>` with one
//!   of the `[[api_token]]`s: it may do what the token's `scopes` allow,
//!   to the key slots its `keys` globs match, sealing under the `[[psk]]`
//!   ids its `psk_ids` name, whatever its uid (a token never widens, and
//!   a peer's credentials never widen a token).
//!
//! Anyone else gets 401. Each route states what it needs when it is
//! registered ([`Need`]); [`authorize`] checks the caller and the scope
//! before the handler runs and hands the handler the [`Caller`], which
//! checks keys and PSKs. A scope the token lacks is 403; a key or
//! rotation outside its `keys` is the same 404 as one that does not exist,
//! so a token cannot learn which keys exist beyond its reach.
//!
//! Tokens are read from their secret references on each call (so a reload
//! or a rotated token file takes effect at once) and compared by SHA-256,
//! never logged; a token that cannot be read is skipped with an error in
//! the log.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};

use super::AppState;
use crate::control::peer::Peer;
use crate::control::{ApiError, views};
use keyrot_config::{ApiScope, ApiTokenConfig, PskGrant, credentials_dir_from_env};
use keyrot_core::model::RotationRecord;
use keyrot_core::store::Store;
use keyrot_engine::rotation::reveal::resolve_token;
use keyrot_engine::scheduler::bind::glob;

/// What a route needs of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Need {
    /// The scope a token needs; None: anyone who can connect.
    scope: Option<ApiScope>,
    /// A token must cover every key (the route lists them all).
    every_key: bool,
}

impl Need {
    /// Anyone who can connect (`/v1/health`).
    pub(crate) const PUBLIC: Need = Need::of(None, false);
    /// `read`, for one key or rotation (checked by the handler).
    pub(crate) const READ: Need = Need::of(Some(ApiScope::Read), false);
    /// `read` of the whole inventory: the token must cover every key.
    pub(crate) const READ_ALL: Need = Need::of(Some(ApiScope::Read), true);
    /// `rotate`.
    pub(crate) const ROTATE: Need = Need::of(Some(ApiScope::Rotate), false);
    /// `operate`.
    pub(crate) const OPERATE: Need = Need::of(Some(ApiScope::Operate), false);
    /// `admin`.
    pub(crate) const ADMIN: Need = Need::of(Some(ApiScope::Admin), false);

    const fn of(scope: Option<ApiScope>, every_key: bool) -> Need {
        Need { scope, every_key }
    }
}

/// The caller of a route that needs one.
#[derive(Clone, Debug)]
pub(crate) enum Caller {
    /// A peer the allow-lists admit: everything is allowed.
    Peer,
    /// A caller with a valid token.
    Token(Arc<Grant>),
}

/// What a token grants.
#[derive(Debug)]
pub(crate) struct Grant {
    /// The token's `name`.
    name: String,
    /// Its scopes.
    scopes: Vec<ApiScope>,
    /// Slot-id globs it may touch.
    keys: Vec<String>,
    /// PSK ids it may name.
    psk_ids: PskGrant,
}

impl Caller {
    /// Whether this caller holds `scope`; `rotate` and `operate` include
    /// `read` (a caller follows the rotations it starts or resumes).
    pub(crate) fn has(&self, scope: ApiScope) -> bool {
        let Caller::Token(g) = self else {
            return true;
        };
        g.scopes.contains(&scope)
            || (scope == ApiScope::Read
                && (g.scopes.contains(&ApiScope::Rotate) || g.scopes.contains(&ApiScope::Operate)))
    }

    /// Who an operator action is recorded as in the audit log:
    /// `api_token:NAME` or `uid:N` (`uid:unknown`), after the caller's own
    /// `requested_by` when one is given (control characters escaped).
    pub(crate) fn actor(&self, peer: &super::Peer, requested_by: Option<&str>) -> String {
        let who = match self.token_name() {
            Some(t) => format!("api_token:{t}"),
            None => peer
                .uid
                .map_or_else(|| "uid:unknown".to_string(), |u| format!("uid:{u}")),
        };
        match requested_by.filter(|r| !r.is_empty()) {
            Some(r) => format!("{} ({who})", keyrot_core::escape::controls(r)),
            None => who,
        }
    }

    /// Whether this caller may touch (or see) slot `slot`.
    pub(crate) fn may_key(&self, slot: &str) -> bool {
        match self {
            Caller::Peer => true,
            Caller::Token(g) => g.keys.iter().any(|k| glob(k, slot)),
        }
    }

    /// Whether this caller may touch every key (`keys = ["*"]`).
    pub(crate) fn every_key(&self) -> bool {
        match self {
            Caller::Peer => true,
            Caller::Token(g) => g.keys.iter().any(|k| k.chars().all(|c| c == '*')),
        }
    }

    /// Whether this caller may have a secret sealed under PSK `id`.
    pub(crate) fn may_psk(&self, id: &str) -> bool {
        match self {
            Caller::Peer => true,
            Caller::Token(g) => g.psk_ids.allows(id),
        }
    }

    /// The PSK ids this caller may name, in `ids` order.
    pub(crate) fn psks<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
        ids.into_iter().filter(|id| self.may_psk(id)).collect()
    }

    /// The token's name, if the caller used one.
    pub(crate) fn token_name(&self) -> Option<&str> {
        match self {
            Caller::Peer => None,
            Caller::Token(g) => Some(&g.name),
        }
    }

    /// The 404 for a key this caller cannot see (or that does not exist:
    /// the two are answered alike).
    pub(crate) fn hidden_key(field: &str) -> ApiError {
        let mut e = ApiError::new(404, "unknown key (or not one this token may use)");
        e.field = Some(field.to_string());
        e
    }

    /// A key-resolution error as this caller may see it: a token caller
    /// gets neither near matches nor other keys' names.
    pub(crate) fn hide(&self, e: ApiError, field: &str) -> ApiError {
        if self.token_name().is_none() || e.status != 404 {
            return e;
        }
        Caller::hidden_key(field)
    }
}

/// Resolves what a caller typed (slot id, or a key name unique among the
/// keys it may see) to a slot id. A token caller never learns of a key
/// outside its `keys`: such a key is "unknown", and names are unique or
/// ambiguous among its own keys alone.
pub(crate) fn resolve_key(
    store: &Store,
    caller: &Caller,
    name: &str,
    field: &str,
) -> Result<String, ApiError> {
    if matches!(caller, Caller::Peer) {
        return views::resolve_key(store, name);
    }
    if caller.may_key(name) && store.key(name)?.is_some() {
        return Ok(name.to_string());
    }
    let mine: Vec<String> = store
        .keys()?
        .into_iter()
        .filter(|k| k.name == name && caller.may_key(&k.slot))
        .map(|k| k.slot)
        .collect();
    match mine.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Caller::hidden_key(field)),
        many => Err(ApiError::bad_field(
            field,
            format!(
                "key name \"{name}\" is held by several providers ({}): give provider/name",
                many.join(", ")
            ),
        )),
    }
}

/// Rotation `id`, when this caller may see its slot; otherwise the same
/// 404 as for an unknown id.
pub(crate) fn rotation(
    store: &Store,
    caller: &Caller,
    id: &str,
) -> Result<RotationRecord, ApiError> {
    let rec = views::rotation(store, id)?;
    if caller.may_key(&rec.slot) {
        Ok(rec)
    } else {
        Err(views::unknown_rotation(id))
    }
}

/// Checks the caller against the route's [`Need`] before the handler
/// runs, and hands the handler the [`Caller`] (an extension).
pub(super) async fn authorize(
    State((st, need)): State<(AppState, Need)>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(scope) = need.scope else {
        return next.run(req).await;
    };
    let caller = match identify(&st, &peer, req.headers()).await {
        Ok(c) => c,
        Err(refused) => {
            tracing::info!(uid = ?peer.uid, pid = ?peer.pid, method = %req.method(),
                path = %req.uri().path(), "control call refused: not authenticated");
            return refused;
        }
    };
    if let Caller::Token(g) = &caller {
        let what = format!("{} {}", req.method(), req.uri().path());
        let lacks = if !caller.has(scope) {
            let has: Vec<&str> = g.scopes.iter().map(|s| s.as_str()).collect();
            Some(format!(
                "it needs scope `{}` (the token has: {})",
                scope.as_str(),
                has.join(", ")
            ))
        } else if need.every_key && !caller.every_key() {
            Some("it lists every key, so the token's `keys` must include \"*\"".to_string())
        } else {
            None
        };
        if let Some(why) = lacks {
            tracing::info!(token = %g.name, uid = ?peer.uid, pid = ?peer.pid, call = %what,
                "control call refused: out of the token's scope");
            let message = format!("api_token {:?} may not call {what}: {why}", g.name);
            return ApiError::new(403, message).into_response();
        }
    }
    if matches!(scope, ApiScope::Rotate | ApiScope::Operate)
        && let Some(leader) = st.backend.standby()
    {
        return standby(&leader);
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// What a standby answers a call that would change something: 503, when
/// to retry, and which instance leads.
fn standby(leader: &str) -> Response {
    let message = format!(
        "this keyrot is a standby; the leader is {leader}: send this call to the leader's \
         control socket (or retry when this instance has taken over)"
    );
    let mut resp = ApiError::new(503, message).into_response();
    resp.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("5"),
    );
    if let Ok(v) = axum::http::HeaderValue::from_str(leader) {
        resp.headers_mut().insert("keyrot-leader", v);
    }
    resp
}

/// The caller: a token when an `Authorization` header is sent, else the
/// peer when the allow-lists admit it; a 401 otherwise.
async fn identify(st: &AppState, peer: &Peer, headers: &HeaderMap) -> Result<Caller, Response> {
    let cfg = st.backend.config();
    if headers.contains_key(AUTHORIZATION) {
        let presented = bearer(headers).map_err(unauthorized)?;
        let tokens = cfg.api_tokens.clone();
        let found = tokio::task::spawn_blocking(move || find(&tokens, &presented))
            .await
            .map_err(|e| {
                ApiError::new(500, format!("internal error while checking the token: {e}"))
                    .into_response()
            })?;
        return match found {
            Some(t) => Ok(Caller::Token(Arc::new(Grant {
                name: t.name,
                scopes: t.scopes,
                keys: t.keys,
                psk_ids: t.psk_ids,
            }))),
            None => Err(unauthorized(
                "the bearer token is not one of the configured [[api_token]]s",
            )),
        };
    }
    if peer.allowed(&cfg.daemon) {
        return Ok(Caller::Peer);
    }
    let who = peer
        .uid
        .map_or("an unknown uid".to_string(), |u| format!("uid {u}"));
    Err(unauthorized(&format!(
        "this caller ({who}) is not admitted by daemon.control_allow_uids or control_allow_gids: \
         send `Authorization: Bearer <token>` with an [[api_token]]"
    )))
}

/// The token of an `Authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Result<SecretString, &'static str> {
    let value = headers
        .get(AUTHORIZATION)
        .ok_or("this endpoint needs `Authorization: Bearer <token>`")?;
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
    let want = keyrot_core::crypto::sha256_hex(presented.expose_secret().as_bytes());
    tokens
        .iter()
        .find(|t| match resolve_token(t, creds.as_deref()) {
            Ok(v) => keyrot_core::crypto::sha256_hex(v.expose_secret().trim().as_bytes()) == want,
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

#[cfg(test)]
#[path = "authz_tests.rs"]
mod tests;
