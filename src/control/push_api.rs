//! `POST /v1/sinks/push` (operate scope; a standby answers 503): the
//! daemon writes a key's kept current secret to its sinks again and
//! answers per sink. The answer never holds the secret. A token caller
//! reaches only the keys its `keys` match.

use axum::Json;
use axum::extract::{ConnectInfo, Extension, State};
use axum::response::{IntoResponse, Response};

use super::authz::{self, Caller};
use super::{ApiJson, AppState, Peer, blocking};
use crate::control::{ApiError, SinkPushRequest};

pub(super) async fn push(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<SinkPushRequest>,
) -> Result<Response, ApiError> {
    if req.key.trim().is_empty() {
        return Err(ApiError::bad_field(
            "key",
            "key is empty: give provider/name or a key name",
        ));
    }
    let (c, key) = (caller.clone(), req.key.clone());
    let slot = blocking(&st, move |s, _| authz::resolve_key(s, &c, &key, "key")).await?;
    let actor = caller.actor(&peer, req.requested_by.as_deref());
    tracing::info!(key = %slot, sink = ?req.sink, uid = ?peer.uid, pid = ?peer.pid, token = ?caller.token_name(),
        "sink push requested over the control socket");
    let report = st.backend.push(&slot, req.sink.as_deref(), &actor).await?;
    Ok(Json(report).into_response())
}
