//! The customer's rotate API on keyrot's control socket, in the seed's
//! shape: `PATCH /orgs/{orgId}/api-keys/rotate/{apiKeyId}` starts a
//! rotation whose new secret is sealed under a pre-shared key (`[[psk]]`)
//! for the caller, waits for the new key and answers with the sealed
//! secret; `GET /v1/rotations/{id}/encrypted-secret` hands out the sealed
//! secret of a rotation started with `?wait=false` (or still running when
//! the wait ran out). Each sealed secret is handed out once.
//!
//! Callers are checked by [`super::authz`]: a token caller reaches only
//! the keys its `keys` match (others are "unknown") and seals only under
//! the `[[psk]]`s its `psk_ids` allow. Nothing here logs or keeps the
//! sealed secret; it goes from the store straight into the response body.

use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::authz::{self, Caller};
use super::{ApiJson, ApiPath, ApiQuery, AppState, Peer, blocking};
use crate::control::rotate_api::{
    Accepted, AcceptedResponse, EncryptionInfo, RotateKeyBody, SealedKey, SealedKeyResponse,
};
use crate::control::{ApiError, RotateRequest, views};
use keyrot_config::{Config, ProviderKind};
use keyrot_core::crypto::psk::ALGORITHM;
use keyrot_core::model::{KeyRecord, RotationRecord, RotationState};
use keyrot_core::store::Store;

/// How long the rotate call waits for the new key before answering 504.
pub const WAIT_LIMIT: Duration = Duration::from_secs(120);
/// How often it looks.
const POLL: Duration = Duration::from_millis(100);

/// The rotate call's query: `?pskId=ID&wait=false`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateQuery {
    /// The PSK to seal under (default: the first `[[psk]]`).
    #[serde(rename = "pskId", default)]
    psk_id: Option<String>,
    /// `false`: answer 202 at once instead of waiting for the new key.
    #[serde(default)]
    wait: Option<bool>,
}

/// `PATCH /orgs/{orgId}/api-keys/rotate/{apiKeyId}`.
pub(super) async fn rotate_api_key(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Extension(caller): Extension<Caller>,
    ApiPath((org_id, api_key_id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<RotateQuery>,
    body: Result<ApiJson<RotateKeyBody>, ApiError>,
) -> Result<Response, ApiError> {
    let ApiJson(body) = body.map_err(nested_field)?;
    check_body(&body, st.clock.now())?;
    let psk_id = choose_psk(&st.backend.config(), q.psk_id.as_deref(), &caller)?;
    let found = {
        let (id, org, caller) = (api_key_id.clone(), org_id.clone(), caller.clone());
        blocking(&st, move |s, cfg| find_key(s, cfg, &id, &org, &caller)).await?
    };
    let meta = body.metadata.clone().unwrap_or_default();
    let rotated_by = meta
        .rotated_by
        .or_else(|| caller.token_name().map(|n| format!("api_token:{n}")));
    tracing::info!(org = %org_id, api_key = %api_key_id, key = %found.slot, uid = ?peer.uid,
        pid = ?peer.pid, token = ?caller.token_name(), psk = %psk_id, rotated_by = ?rotated_by,
        "rotation requested through the rotate API");
    let req = RotateRequest {
        key: found.slot.clone(),
        reason: Some(
            body.rotate_reason
                .unwrap_or_else(|| "requested through the rotate API".into()),
        ),
        new_expires_at: body.new_key_expires_at,
        old_expires_at: body.old_key_expires_at,
        rotated_by,
        initiated_from: Some(meta.initiated_from.unwrap_or_else(|| "control-api".into())),
        rotation_policy_id: meta.rotation_policy_id,
        notify_contacts: body.notify_contacts.unwrap_or(false),
        reveal_psk: Some(psk_id),
    };
    let started = st.backend.rotate(req).await?;
    if q.wait == Some(false) || started.state == RotationState::AwaitingSecret {
        return Ok(accepted(&started.id));
    }
    wait(&st, &started.id).await
}

/// `GET /v1/rotations/{id}/encrypted-secret`: the sealed secret once the
/// new key exists (200, once), else 202.
pub(super) async fn encrypted_secret(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let rec = {
        let (caller, id) = (caller.clone(), id.clone());
        blocking(&st, move |s, _| authz::rotation(s, &caller, &id)).await?
    };
    if let Some(psk) = rec.reveal_psk.as_deref()
        && !caller.may_psk(psk)
    {
        return Err(ApiError::new(
            403,
            format!("rotation {id}'s secret is sealed under a [[psk]] this token may not use"),
        ));
    }
    if rec.reveal_psk.is_none() {
        return Err(ApiError::new(
            404,
            format!(
                "rotation {id} was not started through the rotate API: it has no sealed secret for a caller"
            ),
        ));
    }
    tracing::info!(rotation = %id, key = %rec.slot, uid = ?peer.uid, pid = ?peer.pid,
        token = ?caller.token_name(), "sealed secret asked for");
    Ok(answer(&st, &rec)
        .await?
        .unwrap_or_else(|| accepted(&rec.id)))
}

/// Names a nested unknown field by its path (`metadata.foo`, not `foo`):
/// the message's path prefix already ends with the unknown field.
fn nested_field(mut e: ApiError) -> ApiError {
    let detail = e
        .message
        .strip_prefix("invalid request body: ")
        .unwrap_or_default();
    if let Some((path, rest)) = detail.split_once(": ")
        && rest.starts_with("unknown field `")
        && path != "."
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.'))
    {
        e.field = Some(path.to_string());
    }
    e
}

/// What the body asks for that keyrot refuses: key wrapping, expiries in
/// the past, an old key outliving the new one.
fn check_body(body: &RotateKeyBody, now: Timestamp) -> Result<(), ApiError> {
    if body.encryption.as_ref().and_then(|e| e.key_wrap) == Some(true) {
        return Err(ApiError::bad_field(
            "encryption.keyWrap",
            "keyWrap is not supported: the secret is sealed directly under the PSK",
        ));
    }
    let fields = [
        ("newKeyExpiresAt", body.new_key_expires_at),
        ("oldKeyExpiresAt", body.old_key_expires_at),
    ];
    for (name, at) in fields {
        if let Some(t) = at.filter(|t| *t <= now) {
            return Err(ApiError::bad_field(
                name,
                format!("{name} {t} is in the past (now is {now})"),
            ));
        }
    }
    if let (Some(new), Some(old)) = (body.new_key_expires_at, body.old_key_expires_at)
        && old >= new
    {
        return Err(ApiError::bad_field(
            "oldKeyExpiresAt",
            format!(
                "oldKeyExpiresAt {old} must be before newKeyExpiresAt {new}: the old key must not outlive the new one"
            ),
        ));
    }
    Ok(())
}

/// The PSK `?pskId=` names, or the first configured one the caller may
/// use. A token caller learns no PSK id beyond its `psk_ids`: an unknown
/// id and one it may not use are refused alike.
fn choose_psk(cfg: &Config, asked: Option<&str>, caller: &Caller) -> Result<String, ApiError> {
    if cfg.psks.is_empty() {
        return Err(ApiError::bad_field(
            "pskId",
            "no pre-shared key is configured: add a [[psk]] (an id and a key of 64 hex characters) to keyrot's configuration and reload; the rotate API only ever returns a new secret sealed under one",
        ));
    }
    let usable = caller.psks(cfg.psks.iter().map(|p| p.id.as_str()));
    match (asked, caller.token_name()) {
        (None, _) => usable.first().map(|id| id.to_string()).ok_or_else(|| {
            ApiError::bad_field(
                "pskId",
                "this token may not have a secret sealed under any [[psk]] (its `psk_ids`)",
            )
        }),
        (Some(id), _) if usable.contains(&id) => Ok(id.to_string()),
        (Some(id), Some(_)) => Err(ApiError::bad_field(
            "pskId",
            format!("pskId {id:?} is unknown or not one this token may use"),
        )),
        (Some(id), None) => {
            let ids: Vec<String> = cfg.psks.iter().map(|p| format!("{:?}", p.id)).collect();
            Err(ApiError::bad_field(
                "pskId",
                format!("unknown pskId {id:?}; configured: {}", ids.join(", ")),
            ))
        }
    }
}

/// The slot `{apiKeyId}` stands for: the slot whose current key has that
/// id, else a slot id or unique key name. It must belong to `{orgId}`. A
/// token caller sees only the slots it may rotate: any other is unknown.
fn find_key(
    store: &Store,
    cfg: &Config,
    api_key_id: &str,
    org_id: &str,
    caller: &Caller,
) -> Result<KeyRecord, ApiError> {
    let all: Vec<KeyRecord> = store
        .keys()?
        .into_iter()
        .filter(|k| caller.may_key(&k.slot))
        .collect();
    let by_id: Vec<&KeyRecord> = all
        .iter()
        .filter(|k| k.current.as_ref().is_some_and(|c| c.id == api_key_id))
        .collect();
    let in_org: Vec<&KeyRecord> = by_id
        .iter()
        .copied()
        .filter(|k| org_of(cfg, k).as_deref() == Some(org_id))
        .collect();
    let rec = match (by_id.as_slice(), in_org.as_slice()) {
        ([one], _) | (_, [one]) => (*one).clone(),
        ([], _) => {
            let slot =
                authz::resolve_key(store, caller, api_key_id, "apiKeyId").map_err(|mut e| {
                    e.field = Some("apiKeyId".into());
                    e
                })?;
            all.into_iter()
                .find(|k| k.slot == slot)
                .ok_or_else(|| Caller::hidden_key("apiKeyId"))?
        }
        (many, _) => {
            let slots: Vec<&str> = many.iter().map(|k| k.slot.as_str()).collect();
            return Err(ApiError::bad_field(
                "apiKeyId",
                format!(
                    "key id {api_key_id:?} is the current key of several slots ({}) and none is in org {org_id:?}",
                    slots.join(", ")
                ),
            ));
        }
    };
    let org = org_of(cfg, &rec);
    if org.as_deref() != Some(org_id) {
        let mut e = ApiError::new(
            404,
            format!(
                "key {} is not in org {org_id:?}: {}",
                rec.slot,
                match org {
                    Some(o) => format!("its org is {o:?}"),
                    None => format!("its provider {:?} is not configured", rec.provider),
                }
            ),
        );
        e.field = Some("orgId".into());
        return Err(e);
    }
    Ok(rec)
}

/// The org a slot belongs to: an Atlassian provider's `org_id`; for
/// other provider types, the provider's name.
fn org_of(cfg: &Config, rec: &KeyRecord) -> Option<String> {
    let p = cfg.provider(&rec.provider)?;
    Some(match &p.kind {
        ProviderKind::Atlassian(a) => a.org_id.clone(),
        _ => p.name.clone(),
    })
}

/// Reads rotation `id` (404 when unknown).
async fn load(st: &AppState, id: &str) -> Result<RotationRecord, ApiError> {
    let id = id.to_string();
    blocking(st, move |s, _| views::rotation(s, &id)).await
}

/// Waits for rotation `id` to hold a new key (or to end) and answers.
async fn wait(st: &AppState, id: &str) -> Result<Response, ApiError> {
    let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
    loop {
        let rec = load(st, id).await?;
        if let Some(resp) = answer(st, &rec).await? {
            return Ok(resp);
        }
        if tokio::time::Instant::now() >= deadline {
            let mut e = ApiError::new(
                504,
                format!(
                    "rotation {id} has no new key after {}s (it is {}); it goes on: follow /v1/rotations/{id} and fetch the sealed secret from /v1/rotations/{id}/encrypted-secret",
                    WAIT_LIMIT.as_secs(),
                    rec.state
                ),
            );
            e.rotation_id = Some(id.to_string());
            return Err(e);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The answer a rotation's state gives: the sealed secret (taken from
/// the store), 202 for an assisted rotation, an error when it failed or
/// was aborted, or None while it has no new key yet.
async fn answer(st: &AppState, rec: &RotationRecord) -> Result<Option<Response>, ApiError> {
    let with_id = |status: u16, message: String| {
        let mut e = ApiError::new(status, message);
        e.rotation_id = Some(rec.id.clone());
        e
    };
    match rec.state {
        RotationState::Failed => Err(with_id(
            502,
            format!(
                "rotation {} failed in {}: {}; the old key is untouched (resume or abort it)",
                rec.id,
                rec.failed_in.map_or("-", RotationState::as_str),
                rec.last_error.as_deref().unwrap_or("no error recorded")
            ),
        )),
        RotationState::Aborted => Err(with_id(409, format!("rotation {} was aborted", rec.id))),
        RotationState::AwaitingSecret => Ok(Some(accepted(&rec.id))),
        s if s.has_new_key() || s == RotationState::Completed => {
            let Some(new) = &rec.new_key else {
                return Err(with_id(
                    500,
                    format!("rotation {} is {s} without a new key", rec.id),
                ));
            };
            let Some(env) = st.backend.take_envelope(&rec.id).await? else {
                return Err(with_id(
                    410,
                    format!(
                        "rotation {} has a new key ({}) but no sealed secret to hand out: it was handed out already, wiped after its grace time, or could not be sealed (see the daemon log)",
                        rec.id, new.id
                    ),
                ));
            };
            let body = SealedKeyResponse {
                data: SealedKey {
                    id: new.id.clone(),
                    encrypted_secret: env.expose_secret().to_string(),
                    encryption: EncryptionInfo {
                        algorithm: ALGORITHM.into(),
                        psk_id: rec.reveal_psk.clone().unwrap_or_default(),
                        key_wrap: false,
                    },
                    key_expires_at: new.expires_at,
                },
            };
            tracing::info!(rotation = %rec.id, key = %rec.slot, new_key = %new.id, "sealed secret handed to the API caller");
            Ok(Some(Json(body).into_response()))
        }
        _ => Ok(None),
    }
}

/// 202 with the rotation's status resource in the body and `Location`.
fn accepted(id: &str) -> Response {
    let status = format!("/v1/rotations/{id}");
    let body = AcceptedResponse {
        data: Accepted {
            rotation_id: id.to_string(),
            status: status.clone(),
        },
    };
    let mut resp = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&status) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}

#[cfg(test)]
#[path = "orgs_tests.rs"]
pub(crate) mod tests;
