//! The store's maintenance routes, which only the daemon can serve while it
//! holds the store: `POST /v1/store/backup` answers with the bytes of a
//! consistent backup (a new redb file; secrets sealed, no master key), for
//! the CLI to write where the operator asked; `POST /v1/store/verify`
//! answers with a [`VerifyReport`]. Both run on the blocking pool.

use axum::Json;
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::authz::Caller;
use super::{AppState, Peer, blocking};
use crate::control::ApiError;
use keyrot_core::store::VerifyReport;

/// `POST /v1/store/backup`: the backup's bytes.
pub(super) async fn backup(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    tracing::info!(uid = ?peer.uid, pid = ?peer.pid, token = ?caller.token_name(),
        "store backup requested over the control socket");
    let bytes = blocking(&st, |s, _| Ok(s.backup_image()?)).await?;
    tracing::info!(bytes = bytes.len(), "store backup taken");
    Ok(([(CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// `POST /v1/store/verify`: what the checks found (200 even when they
/// found problems: the report says so).
pub(super) async fn verify(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<VerifyReport>, ApiError> {
    tracing::info!(uid = ?peer.uid, pid = ?peer.pid, token = ?caller.token_name(),
        "store verify requested over the control socket");
    let report = blocking(&st, |s, _| Ok(s.verify()?)).await?;
    if report.is_ok() {
        tracing::info!("store verified: no problems found");
    } else {
        for p in &report.problems {
            tracing::error!(problem = %p, "store verify found a problem");
        }
    }
    Ok(Json(report))
}
