//! The orphan routes: `GET /v1/orphans` (every key's reader: it lists keys
//! of any provider) answers from the store as the last syncs left it;
//! `POST /v1/orphans/revoke` (operate scope; a standby answers 503) has
//! the daemon revoke them, each revoke audited with the caller.

use axum::Json;
use axum::extract::{ConnectInfo, Extension, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::authz::Caller;
use super::{ApiJson, ApiQuery, AppState, Peer, blocking};
use crate::control::{ApiError, OrphansRevokeRequest, OrphansRevokeResponse, views};

/// `GET /v1/orphans` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OrphansQuery {
    /// Only this provider's.
    provider: Option<String>,
}

pub(super) async fn list(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<OrphansQuery>,
) -> Result<Response, ApiError> {
    let backend = st.backend.clone();
    let body = blocking(&st, move |s, cfg| {
        views::orphans(s, cfg, q.provider.as_deref(), true, &|p| backend.sweeps(p))
    })
    .await?;
    Ok(Json(body).into_response())
}

pub(super) async fn revoke(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<OrphansRevokeRequest>,
) -> Result<Response, ApiError> {
    if let Some(p) = req.provider.as_deref()
        && st.backend.config().provider(p).is_none()
    {
        return Err(ApiError::bad_field(
            "provider",
            format!(
                "no provider named {:?} is configured",
                keyrot_core::escape::controls(p)
            ),
        ));
    }
    let actor = caller.actor(&peer, req.requested_by.as_deref());
    tracing::info!(provider = ?req.provider, uid = ?peer.uid, pid = ?peer.pid, token = ?caller.token_name(),
        "orphan revoke requested over the control socket");
    let outcomes = st
        .backend
        .revoke_orphans(req.provider.as_deref(), &actor)
        .await?;
    Ok(Json(OrphansRevokeResponse { outcomes }).into_response())
}
