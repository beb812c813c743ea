//! The control server: HTTP/1.1 + JSON on a unix socket (axum on hyper,
//! connections handled by [`super::conn`]). Reads are answered from
//! [`super::views`] on the blocking pool; changes go to the daemon's
//! [`Backend`]. Every error, the framework's own rejections included, is
//! an [`ErrorBody`] with the matching status. Responses never carry secret
//! material, except the rotate API's ([`orgs`]) new secret sealed under
//! the caller's pre-shared key.
//!
//! Who may connect is decided by the socket file's mode and owner
//! ([`bind`]); who may call which route by [`authz`]: every route states
//! what it needs in [`router`]. The caller's uid and pid (`SO_PEERCRED`),
//! and its token's name, are logged with every change it asks for.

use std::future::Future;
use std::io;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, Extension, FromRequest, FromRequestParts, Request, State,
};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, patch, post};
use axum::{Json, Router, middleware};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixListener;

use super::conn::{BodyTimeout, Limits};
use super::{ApiError, Backend, ErrorBody, ErrorDetail, views};
use authz::{Caller, Need};
use keyrot_config::Config;
use keyrot_core::clock::{Clock, SystemClock};
use keyrot_core::model::slot_id;
use keyrot_core::store::Store;

pub use super::peer::Peer;
pub use super::socket::bind;

/// Largest request body accepted (413 beyond).
pub const MAX_BODY: usize = 64 * 1024;

/// Default and largest `limit` of `/v1/history` and `/v1/audit`.
const DEFAULT_LIMIT: usize = 50;
/// Largest `limit` honoured; larger values are clamped.
const MAX_LIMIT: usize = 10_000;
/// Default horizon of `/v1/plan`.
const DEFAULT_PLAN_DAYS: u32 = 30;

/// What every handler gets.
#[derive(Clone)]
struct AppState {
    /// The daemon.
    backend: Arc<dyn Backend>,
    /// Where `now` comes from.
    clock: Arc<dyn Clock>,
}

/// Serves the control API on `listener` until `shutdown` completes, then
/// stops accepting and waits for requests in flight. Time comes from the
/// system clock.
pub async fn serve(
    listener: UnixListener,
    backend: Arc<dyn Backend>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with_clock(listener, backend, Arc::new(SystemClock), shutdown).await
}

/// [`serve`] with a given clock (tests, or a daemon with its own clock).
/// Connection limits come from the configuration in force at each accept.
pub async fn serve_with_clock(
    listener: UnixListener,
    backend: Arc<dyn Backend>,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = router(Arc::clone(&backend), clock);
    let limits = move || Limits::of(&backend.config().daemon);
    super::conn::run(listener, app, limits, shutdown).await
}

/// The control API's routes, each with what it needs of its caller.
pub fn router(backend: Arc<dyn Backend>, clock: Arc<dyn Clock>) -> Router {
    let st = AppState { backend, clock };
    let guard = |need: Need, route: MethodRouter<AppState>| {
        route.route_layer(middleware::from_fn_with_state(
            (st.clone(), need),
            authz::authorize,
        ))
    };
    Router::new()
        .route("/v1/health", guard(Need::PUBLIC, get(health)))
        .route("/v1/status", guard(Need::READ_ALL, get(status)))
        .route("/v1/keys", guard(Need::READ_ALL, get(keys)))
        .route("/v1/keys/{provider}/{name}", guard(Need::READ, get(key)))
        .route("/v1/rotate", guard(Need::ROTATE, post(rotate)))
        .route("/v1/rotations/{id}", guard(Need::READ, get(rotation)))
        .route(
            "/v1/rotations/{id}/resume",
            guard(Need::OPERATE, post(resume)),
        )
        .route(
            "/v1/rotations/{id}/abort",
            guard(Need::OPERATE, post(abort)),
        )
        .route(
            "/v1/rotations/{id}/restart",
            guard(Need::OPERATE, post(restart)),
        )
        .route(
            "/v1/rotations/{id}/enroll",
            guard(Need::OPERATE, post(enroll)),
        )
        .route(
            "/v1/rotations/{id}/encrypted-secret",
            guard(Need::ROTATE, get(orgs::encrypted_secret)),
        )
        .route(
            "/orgs/{org_id}/api-keys/rotate/{api_key_id}",
            guard(Need::ROTATE, patch(orgs::rotate_api_key)),
        )
        .route("/v1/history", guard(Need::READ, get(history)))
        .route("/v1/plan", guard(Need::READ_ALL, get(plan)))
        .route("/v1/audit", guard(Need::READ_ALL, get(audit)))
        .route("/v1/reload", guard(Need::ADMIN, post(reload)))
        .route(
            "/v1/sinks/{name}/test",
            guard(Need::OPERATE, post(test_sink)),
        )
        .route("/v1/sinks/push", guard(Need::OPERATE, post(push_api::push)))
        .route("/v1/orphans", guard(Need::READ_ALL, get(orphans_api::list)))
        .route(
            "/v1/orphans/revoke",
            guard(Need::OPERATE, post(orphans_api::revoke)),
        )
        .route(
            "/v1/store/backup",
            guard(Need::ADMIN, post(store_api::backup)),
        )
        .route(
            "/v1/store/verify",
            guard(Need::ADMIN, post(store_api::verify)),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(st)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(status = self.status, error = %self.message, "control request failed");
        } else {
            tracing::debug!(status = self.status, error = %self.message, "control request refused");
        }
        (status, Json(error_body(self))).into_response()
    }
}

/// The JSON body for an error.
pub fn error_body(e: ApiError) -> ErrorBody {
    ErrorBody {
        error: ErrorDetail {
            code: e.status,
            message: e.message,
            field: e.field,
            suggestions: e.suggestions,
            rotation_id: e.rotation_id,
        },
    }
}

/// Runs a store read on the blocking pool.
async fn blocking<T: Send + 'static>(
    st: &AppState,
    f: impl FnOnce(&Store, &Config) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = st.backend.store();
    let cfg = st.backend.config();
    tokio::task::spawn_blocking(move || f(&store, &cfg))
        .await
        .map_err(|e| ApiError::new(500, format!("internal error while reading the store: {e}")))?
}

/// `axum::Json` whose rejections are [`ApiError`]s: 415 without a JSON
/// content type, 413 over [`MAX_BODY`], 400 naming the field at fault.
struct ApiJson<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(e) => Err(json_rejection(&e)),
        }
    }
}

/// Maps axum's JSON rejection to our error.
fn json_rejection(e: &JsonRejection) -> ApiError {
    if let Some(t) = body_timeout(e) {
        return ApiError::new(408, t.to_string());
    }
    match e {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            415,
            "request bodies must be JSON: send Content-Type: application/json",
        ),
        JsonRejection::JsonDataError(_) | JsonRejection::JsonSyntaxError(_) => {
            // "Failed to deserialize ...: <path>: <serde message>"
            let text = e.body_text();
            let detail = text.split_once(": ").map_or(text.as_str(), |(_, d)| d);
            let mut err = ApiError::new(400, format!("invalid request body: {detail}"));
            err.field = field_of(detail);
            err
        }
        _ if e.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            413,
            format!("request body too large (limit {} KiB)", MAX_BODY / 1024),
        ),
        _ => ApiError::new(e.status().as_u16(), e.body_text()),
    }
}

/// The [`BodyTimeout`] behind a rejection, if that is what it is.
fn body_timeout(e: &JsonRejection) -> Option<&BodyTimeout> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(t) = s.downcast_ref::<BodyTimeout>() {
            return Some(t);
        }
        source = s.source();
    }
    None
}

/// The field a serde message names: `unknown field `x``, `missing field
/// `x``, or a `path: message` prefix.
fn field_of(detail: &str) -> Option<String> {
    for marker in ["unknown field `", "missing field `"] {
        if let Some(rest) = detail.split_once(marker).map(|(_, r)| r) {
            return rest.split_once('`').map(|(f, _)| f.to_string());
        }
    }
    let (path, _) = detail.split_once(": ")?;
    let plain = path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']'));
    (plain && path != ".").then(|| path.to_string())
}

/// `axum::extract::Query` whose rejection is a 400 [`ApiError`].
struct ApiQuery<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(e) => {
                let text = e.body_text();
                let detail = text.split_once(": ").map_or(text.as_str(), |(_, d)| d);
                let mut err = ApiError::new(400, format!("invalid query: {detail}"));
                err.field = field_of(detail);
                Err(err)
            }
        }
    }
}

/// `axum::extract::Path` whose rejection is a 400 [`ApiError`].
struct ApiPath<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(e) => Err(ApiError::new(
                400,
                format!("invalid path: {}", e.body_text()),
            )),
        }
    }
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "ok": true }))
}

async fn status(State(st): State<AppState>) -> Result<Response, ApiError> {
    let now = st.clock.now();
    let instance = st.backend.role();
    let body = blocking(&st, move |s, _| {
        let body = views::status_json(s, now, true, instance.as_ref());
        keyrot_core::memory::release_free_memory();
        body
    })
    .await?;
    Ok(json_bytes(body))
}

async fn keys(State(st): State<AppState>) -> Result<Response, ApiError> {
    let now = st.clock.now();
    let rows = blocking(&st, move |s, _| views::key_rows_json(s, now)).await?;
    Ok(json_bytes(rows))
}

/// A 200 answer whose body is JSON written by a view: what `Json(value)`
/// would send, without building the value first.
fn json_bytes(body: Vec<u8>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

async fn key(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath((provider, name)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let slot = slot_id(&provider, &name);
    let rec = blocking(&st, move |s, _| {
        if !caller.may_key(&slot) {
            return Err(Caller::hidden_key("key"));
        }
        views::key(s, &slot).map_err(|e| caller.hide(e, "key"))
    })
    .await?;
    Ok(Json(rec).into_response())
}

/// `GET /v1/history` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    /// Slot id or unique key name.
    key: Option<String>,
    /// At most this many.
    limit: Option<usize>,
}

async fn history(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let body = blocking(&st, move |s, _| {
        let slot = match q.key.as_deref() {
            Some(k) => Some(authz::resolve_key(s, &caller, k, "key")?),
            None if caller.every_key() => None,
            None => {
                return Err(ApiError::new(
                    403,
                    format!(
                        "api_token {:?} may read the history of its own keys only: add ?key=",
                        caller.token_name().unwrap_or_default()
                    ),
                ));
            }
        };
        views::history(s, slot.as_deref(), limit)
    })
    .await?;
    Ok(Json(body).into_response())
}

/// `GET /v1/plan` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanQuery {
    /// Horizon in days.
    days: Option<u32>,
}

async fn plan(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<PlanQuery>,
) -> Result<Response, ApiError> {
    let now = st.clock.now();
    let days = q.days.unwrap_or(DEFAULT_PLAN_DAYS);
    let body = blocking(&st, move |s, cfg| views::plan(s, cfg, days, now)).await?;
    Ok(Json(body).into_response())
}

/// `GET /v1/audit` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// Entries with a sequence number above this.
    after: Option<u64>,
    /// At most this many.
    limit: Option<usize>,
}

async fn audit(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Response, ApiError> {
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let entries = blocking(&st, move |s, _| Ok(s.audit(after, limit)?)).await?;
    Ok(Json(entries).into_response())
}

async fn reload(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Extension(caller): Extension<Caller>,
) -> Result<StatusCode, ApiError> {
    tracing::info!(uid = ?peer.uid, pid = ?peer.pid, token = ?caller.token_name(),
        "reload requested over the control socket");
    st.backend.reload().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn test_sink(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    tracing::info!(sink = %name, uid = ?peer.uid, pid = ?peer.pid, token = ?caller.token_name(),
        "sink test requested over the control socket");
    let report = st.backend.test_sink(&name).await?;
    Ok(Json(report).into_response())
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(404, format!("no such endpoint: {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(405, format!("{method} is not allowed on {}", uri.path()))
}

#[path = "authz.rs"]
pub(crate) mod authz;

#[path = "rotations_api.rs"]
mod rotations_api;
use rotations_api::{abort, enroll, restart, resume, rotate, rotation};

#[path = "orgs.rs"]
pub mod orgs;

#[path = "store_api.rs"]
pub mod store_api;

#[path = "orphans_api.rs"]
mod orphans_api;

#[path = "push_api.rs"]
mod push_api;

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
