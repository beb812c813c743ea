//! The operator routes that start, show and steer one rotation:
//! `POST /v1/rotate`, `GET /v1/rotations/{id}` and its `resume`, `abort`,
//! `restart` and `enroll`. A token caller reaches only the rotations of the keys its
//! `keys` match (others are "unknown", as in [`super::authz`]), and names
//! only the `[[psk]]`s its `psk_ids` allow.

use axum::Json;
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::authz::{self, Caller};
use super::{ApiJson, ApiPath, AppState, Peer, blocking};
use crate::control::{ApiError, EnrollRequest, RotateRequest, views};

pub(super) async fn rotate(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Extension(caller): Extension<Caller>,
    ApiJson(mut req): ApiJson<RotateRequest>,
) -> Result<Response, ApiError> {
    if req.key.trim().is_empty() {
        return Err(ApiError::bad_field(
            "key",
            "key is empty: give provider/name or a key name",
        ));
    }
    if let Some(name) = caller.token_name() {
        if let Some(id) = req.reveal_psk.as_deref()
            && !caller.may_psk(id)
        {
            return Err(ApiError::bad_field(
                "reveal_psk",
                format!("{id:?} is not a [[psk]] this token may use"),
            ));
        }
        if req.rotated_by.is_none() {
            req.rotated_by = Some(format!("api_token:{name}"));
        }
        let (c, key) = (caller.clone(), req.key.clone());
        req.key = blocking(&st, move |s, _| authz::resolve_key(s, &c, &key, "key")).await?;
    }
    tracing::info!(
        key = %req.key,
        uid = ?peer.uid,
        pid = ?peer.pid,
        token = ?caller.token_name(),
        rotated_by = ?req.rotated_by,
        "rotation requested over the control socket"
    );
    let rec = st.backend.rotate(req).await?;
    Ok((StatusCode::CREATED, Json(views::redact(rec))).into_response())
}

pub(super) async fn rotation(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let rec = blocking(&st, move |s, _| authz::rotation(s, &caller, &id)).await?;
    Ok(Json(rec).into_response())
}

/// Ok when `caller` may steer rotation `id`; a token caller gets the
/// "unknown rotation" 404 for another key's rotation. A peer's calls go
/// straight to the backend, which answers unknown ids itself.
async fn reachable(st: &AppState, caller: &Caller, id: &str) -> Result<(), ApiError> {
    if caller.token_name().is_none() {
        return Ok(());
    }
    let (caller, id) = (caller.clone(), id.to_string());
    blocking(st, move |s, _| authz::rotation(s, &caller, &id).map(drop)).await
}

pub(super) async fn resume(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    reachable(&st, &caller, &id).await?;
    tracing::info!(rotation = %id, uid = ?peer.uid, pid = ?peer.pid, token = ?caller.token_name(),
        "resume requested over the control socket");
    let rec = st.backend.resume(&id).await?;
    Ok(Json(views::redact(rec)).into_response())
}

pub(super) async fn abort(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    reachable(&st, &caller, &id).await?;
    tracing::info!(rotation = %id, uid = ?peer.uid, pid = ?peer.pid, token = ?caller.token_name(),
        "abort requested over the control socket");
    let rec = st.backend.abort(&id).await?;
    Ok(Json(views::redact(rec)).into_response())
}

pub(super) async fn restart(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    reachable(&st, &caller, &id).await?;
    tracing::info!(rotation = %id, uid = ?peer.uid, pid = ?peer.pid, token = ?caller.token_name(),
        "restart requested over the control socket");
    let rec = st.backend.restart(&id).await?;
    Ok((StatusCode::CREATED, Json(views::redact(rec))).into_response())
}

pub(super) async fn enroll(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<EnrollRequest>,
) -> Result<Response, ApiError> {
    reachable(&st, &caller, &id).await?;
    tracing::info!(rotation = %id, uid = ?peer.uid, pid = ?peer.pid, token = ?caller.token_name(),
        "secret enrolled over the control socket");
    let rec = st.backend.enroll(&id, req).await?;
    Ok(Json(views::redact(rec)).into_response())
}
