//! The Admin API handlers under `/admin/api-access/v1`: bearer
//! authentication, then one [`State`] operation each. Lists show metadata
//! only; the rotate handler is the one place a secret leaves, sealed under a
//! PSK with the new key's id as AAD.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};

use super::App;
use super::error::ApiError;
use super::state::{Access, page};
use super::{idempotency, lose, rotate};
use keyrot_core::crypto;

/// `?cursor=` and `?limit=` of the list endpoints (kept raw so a bad value
/// is a 400 naming the parameter).
#[derive(Debug, Default, Deserialize)]
pub struct PageParams {
    /// Opaque token from a previous page's `links.next`.
    cursor: Option<String>,
    /// Page size, 1 to 100 (default 20).
    limit: Option<String>,
}

/// `?pskId=` of the rotate endpoint.
#[derive(Debug, Default, Deserialize)]
pub struct PskParam {
    /// The PSK to seal the new secret under (default: the first).
    #[serde(rename = "pskId")]
    psk_id: Option<String>,
}

/// SHA-256 hex of the bearer token, or 401. The token itself goes no further.
fn bearer_hash(headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <API key>"))?
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not ASCII"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("expected Authorization: Bearer <API key>"))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::unauthorized(
            "expected Authorization: Bearer <API key>",
        ));
    }
    Ok(crypto::sha256_hex(token.as_bytes()))
}

/// `{"data": [...], "links": {"next": ...}}`, `next` absent on the last page.
fn list_body(data: Vec<Value>, next: Option<String>) -> Value {
    let links = match next {
        Some(n) => json!({ "next": n }),
        None => json!({}),
    };
    json!({ "data": data, "links": links })
}

/// `GET /orgs/{orgId}/api-keys`: one page of the org's API keys.
pub async fn list_keys(
    AxumState(app): AxumState<Arc<App>>,
    Path(org_id): Path<String>,
    Query(p): Query<PageParams>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let token = bearer_hash(&headers)?;
    app.mutate(|st, now| {
        st.authenticate(&org_id, &token, Access::Read, now)?;
        let keys = &st.org(&org_id)?.api_keys;
        let (shown, next) = page(keys, |k| &k.id, p.cursor.as_deref(), p.limit.as_deref())?;
        Ok(list_body(shown.iter().map(|k| k.view(now)).collect(), next))
    })
    .await
    .map(Json)
}

/// `GET /orgs/{orgId}/api-keys/count`: how many keys the list holds.
pub async fn count_keys(
    AxumState(app): AxumState<Arc<App>>,
    Path(org_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let token = bearer_hash(&headers)?;
    app.mutate(|st, now| {
        st.authenticate(&org_id, &token, Access::Read, now)?;
        let count = st.org(&org_id)?.api_keys.len();
        Ok(json!({ "data": { "count": count } }))
    })
    .await
    .map(Json)
}

/// `GET /orgs/{orgId}/api-tokens`: one page of users' API tokens.
pub async fn list_tokens(
    AxumState(app): AxumState<Arc<App>>,
    Path(org_id): Path<String>,
    Query(p): Query<PageParams>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let token = bearer_hash(&headers)?;
    app.mutate(|st, now| {
        st.authenticate(&org_id, &token, Access::Read, now)?;
        let tokens = &st.org(&org_id)?.api_tokens;
        let (shown, next) = page(tokens, |t| &t.id, p.cursor.as_deref(), p.limit.as_deref())?;
        Ok(list_body(shown.iter().map(|t| t.view(now)).collect(), next))
    })
    .await
    .map(Json)
}

/// `PATCH /orgs/{orgId}/api-keys/revoke/{apiKeyId}`: 204, or 404 when the
/// key is unknown or already revoked.
pub async fn revoke(
    AxumState(app): AxumState<Arc<App>>,
    Path((org_id, key_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let token = bearer_hash(&headers)?;
    app.mutate(|st, now| {
        let actor = st.authenticate(&org_id, &token, Access::Revoke, now)?;
        st.revoke(&org_id, &key_id, Some(actor), now)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PATCH /orgs/{orgId}/api-keys/rotate/{apiKeyId}` (the customer's
/// proposal): a new key with the old one's scopes, its secret sealed under
/// the chosen PSK with the new key id as AAD. With an `Idempotency-Key`
/// header (unless `--no-idempotency`), a repeat within 24 hours replays the
/// first response. A successful answer may then be lost (`/_sandbox/lose`):
/// the rotation stands either way.
pub async fn rotate(
    AxumState(app): AxumState<Arc<App>>,
    Path((org_id, key_id)): Path<(String, String)>,
    Query(q): Query<PskParam>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match rotate_call(&app, &org_id, &key_id, q.psk_id.as_deref(), &headers, &body).await {
        Ok(answer) => lose::deliver(&app, Json(answer).into_response()).await,
        Err(e) => e.into_response(),
    }
}

/// The rotate call up to its answer: authenticate, replay or rotate, seal.
async fn rotate_call(
    app: &App,
    org_id: &str,
    key_id: &str,
    psk_id: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, ApiError> {
    let token = bearer_hash(headers)?;
    let idem = if app.modes.idempotency {
        idempotency::key_of(headers)?
    } else {
        None
    };
    app.mutate(|st, now| {
        let actor = st.authenticate(org_id, &token, Access::Write, now)?;
        if let Some(k) = &idem
            && let Some(done) = st.replay(org_id, key_id, k, now)
        {
            return Ok(done.response());
        }
        let psk = app.psk(psk_id)?;
        let req = rotate::parse(body, now)?;
        let ctx = rotate::RotateContext {
            actor,
            psk_id: psk.id.clone(),
            absent_old_expiry: app.modes.absent_old_expiry,
        };
        let rotated = st.rotate(org_id, key_id, &req, &ctx, now)?;
        let sealed = psk.seal(rotated.id.as_bytes(), rotated.secret.as_bytes());
        let done = idempotency::Remembered {
            key: idem.clone().unwrap_or_default(),
            org_id: org_id.to_string(),
            api_key_id: key_id.to_string(),
            at: now,
            new_api_key_id: rotated.id.clone(),
            encrypted_secret: STANDARD.encode(sealed),
            psk_id: psk.id.clone(),
            key_expires_at: rotated.expires_at,
        };
        let response = done.response();
        if idem.is_some() {
            st.remember(done);
        }
        Ok(response)
    })
    .await
}

/// Any other path: a JSON 404.
pub async fn no_route() -> ApiError {
    ApiError::not_found(
        "no such endpoint; the Admin API is under /admin/api-access/v1 (see docs/sandbox.md)",
    )
}
