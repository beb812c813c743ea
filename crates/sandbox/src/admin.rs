//! The sandbox's own endpoints under `/_sandbox/`: create a key (the one
//! place besides rotate that reveals a secret, for seeding tests), list
//! every key of every org, read a key's secret hash, read the audit list,
//! and force failures (lost answers are in `lose.rs`). No auth; only
//! loopback peers are answered.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Request, State as AxumState};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::App;
use super::error::ApiError;
use super::state::{ApiKey, DEFAULT_LIFETIME, MAX_LIFETIME, after, mint_secret, new_id};

/// Body of `POST /_sandbox/keys`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateKey {
    /// Organisation (created if new).
    org_id: String,
    /// Key name.
    name: String,
    /// Scopes; empty or absent makes an unscoped key.
    #[serde(default)]
    scopes: Vec<String>,
    /// Creator's email.
    #[serde(default = "default_creator")]
    created_by: String,
    /// Expiry: default one week; at most one year ahead; may be in the past
    /// (to seed an expired key).
    #[serde(default)]
    expires_at: Option<Timestamp>,
}

/// Body of `POST /_sandbox/fail`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fail {
    /// Status to answer with (400..=599, default 429).
    #[serde(default = "default_fail_status")]
    status: u16,
    /// `Retry-After` seconds (default 1 for 429, none otherwise).
    #[serde(default)]
    retry_after: Option<u32>,
    /// How many Admin API responses to fail (default 1; 0 clears).
    #[serde(default = "default_fail_count")]
    count: u32,
}

/// Default `createdBy`.
fn default_creator() -> String {
    "admin@example.com".to_string()
}

/// Default forced status.
fn default_fail_status() -> u16 {
    429
}

/// Default forced count.
fn default_fail_count() -> u32 {
    1
}

/// Parses a JSON body, answering 400 with serde's message.
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::field("body", format!("invalid request body: {e}")))
}

/// Middleware: answers 403 to any peer that is not on loopback.
pub async fn loopback_only(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    if peer.ip().is_loopback() {
        next.run(req).await
    } else {
        ApiError::forbidden("/_sandbox/ endpoints answer loopback clients only").into_response()
    }
}

/// `GET /_sandbox/health`.
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `POST /_sandbox/keys`: creates a key and returns `{id, secret}` (201).
pub async fn create_key(
    AxumState(app): AxumState<Arc<App>>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req: CreateKey = parse_body(&body)?;
    if req.org_id.trim().is_empty() {
        return Err(ApiError::field("orgId", "orgId must not be empty"));
    }
    if req.name.trim().is_empty() {
        return Err(ApiError::field("name", "name must not be empty"));
    }
    if req.scopes.iter().any(|s| s.is_empty() || s.contains(' ')) {
        return Err(ApiError::field(
            "scopes",
            "each scope must be non-empty and contain no spaces",
        ));
    }
    let (secret, secret_sha256) = mint_secret();
    let id = app
        .mutate(|st, now| {
            let expires_at = req.expires_at.unwrap_or(after(now, DEFAULT_LIFETIME));
            if expires_at > after(now, MAX_LIFETIME) {
                return Err(ApiError::field(
                    "expiresAt",
                    "expiresAt must be within one year (365 days) from now",
                ));
            }
            let key = ApiKey {
                id: new_id(),
                name: req.name,
                scopes: req.scopes,
                created_by: req.created_by,
                created_at: now,
                expires_at,
                last_active_at: None,
                revoked_at: None,
                secret_sha256,
                rotated_from: None,
            };
            let id = key.id.clone();
            st.insert_key(&req.org_id, key, now);
            Ok(id)
        })
        .await?;
    let body = json!({ "id": id, "secret": secret.as_str() });
    Ok((StatusCode::CREATED, Json(body)))
}

/// `GET /_sandbox/keys`: every key of every org (orgs by id, keys in
/// creation order), with its org, end times and lineage; never a secret or
/// its hash.
pub async fn list_keys(AxumState(app): AxumState<Arc<App>>) -> Json<Value> {
    app.read(|st, now| {
        let data: Vec<Value> = st
            .orgs
            .iter()
            .flat_map(|(org_id, org)| org.api_keys.iter().map(move |k| (org_id, k)))
            .map(|(org_id, k)| {
                json!({
                    "id": k.id,
                    "orgId": org_id,
                    "name": k.name,
                    "scopes": k.scopes,
                    "createdBy": k.created_by,
                    "createdAt": k.created_at,
                    "expiresAt": k.expires_at,
                    "revokedAt": k.revoked_at,
                    "lastActiveAt": k.last_active_at,
                    "rotatedFrom": k.rotated_from,
                    "status": k.status(now),
                })
            })
            .collect();
        Json(json!({ "data": data }))
    })
    .await
}

/// `GET /_sandbox/keys/{id}/secret-sha256`: the stored hash of a key's secret.
pub async fn secret_sha256(
    AxumState(app): AxumState<Arc<App>>,
    Path(key_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    app.read(|st, _| {
        st.key_anywhere(&key_id)
            .map(|k| Json(json!({ "id": k.id, "secretSha256": k.secret_sha256 })))
            .ok_or_else(|| ApiError::not_found(format!("API key {key_id} not found")))
    })
    .await
}

/// `GET /_sandbox/audit`: every audit entry, oldest first.
pub async fn audit(AxumState(app): AxumState<Arc<App>>) -> Json<Value> {
    app.read(|st, _| Json(json!({ "data": st.audit }))).await
}

/// `POST /_sandbox/fail`: the next `count` Admin API responses fail (204).
pub async fn fail(
    AxumState(app): AxumState<Arc<App>>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let req: Fail = parse_body(if body.is_empty() { b"{}" } else { &body })?;
    let status = StatusCode::from_u16(req.status)
        .ok()
        .filter(|s| s.is_client_error() || s.is_server_error())
        .ok_or_else(|| ApiError::field("status", "status must be from 400 to 599"))?;
    let retry_after = req
        .retry_after
        .or((status == StatusCode::TOO_MANY_REQUESTS).then_some(1));
    app.gate.force(status, retry_after, req.count);
    Ok(StatusCode::NO_CONTENT)
}
