//! Read-only views over the store and the configuration: the key list of
//! `keyrot status`, the dry-run plan, rotation history and key-name
//! resolution. The daemon's control server and the CLI's read-only fallback
//! (no daemon running) both answer from here, so they always agree.
//!
//! Everything here blocks on the store: async callers use `spawn_blocking`.
//! Time is a parameter. Nothing returned carries secret material, and the
//! SHA-256 of a new key's secret is blanked (see [`redact`]).

mod names;
mod orphans;
mod rows;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

pub use self::names::resolve_key;
use self::names::unknown_key;
pub use self::orphans::orphans;
pub use self::rows::key_row;
use self::rows::write_rows;
use super::{
    ApiError, HistoryResponse, InstanceRole, KeyRow, PlanResponse, PlanRow, StatusResponse,
};
use keyrot_config::Config;
use keyrot_core::model::{DeliveryState, KeyRecord, RotationRecord};
use keyrot_core::policy::{self, KeyTimes};
use keyrot_core::store::{Store, StoreError};
use keyrot_engine::rotation::plan::GroupStarts;

/// A key expiring within this many days is flagged `expiring-soon`.
pub const EXPIRING_SOON_DAYS: i64 = 30;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let status = match e {
            StoreError::Locked { .. }
            | StoreError::NotFound { .. }
            | StoreError::NeedsRecovery { .. } => 503,
            _ => 500,
        };
        ApiError::new(status, e.to_string())
    }
}

/// `GET /v1/status`: one row per key slot (sorted by slot) and counters.
/// `live` says whether the daemon answers (true) or the store was opened
/// read-only (false). The typed form of [`status_json`]'s document.
pub fn status(store: &Store, now: Timestamp, live: bool) -> Result<StatusResponse, ApiError> {
    let bytes = status_json(store, now, live, None)?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::new(500, format!("status: {e}")))
}

/// The `GET /v1/status` document as JSON, written row by row in one pass
/// over the store ([`Store::each_key_json`]): no slot record is decoded
/// whole or kept past its row, so 100k slots cost one scan and the bytes
/// of the answer.
pub fn status_json(
    store: &Store,
    now: Timestamp,
    live: bool,
    instance: Option<&InstanceRole>,
) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    out.extend_from_slice(br#"{"version":"#);
    json_into(&mut out, env!("CARGO_PKG_VERSION"))?;
    out.extend_from_slice(br#","live":"#);
    json_into(&mut out, &live)?;
    out.extend_from_slice(br#","keys":"#);
    let counts = write_rows(store, now, &mut out)?;
    let outbox = outbox_summary(store)?;
    // The counters follow the rows, as in [`StatusResponse`].
    let tail = StatusTail {
        active_rotations: counts.active,
        failed_rotations: counts.failed,
        outbox_queued: outbox.queued,
        outbox_dead: outbox.dead_ids.len(),
        outbox_next_attempt_at: outbox.next,
        outbox_dead_ids: &outbox.dead_ids,
        lease: store
            .lease()
            .map_err(|e| ApiError::new(500, e.to_string()))?,
        instance,
        orphans: store.orphans()?,
    };
    let tail = serde_json::to_vec(&tail).map_err(|e| ApiError::new(500, e.to_string()))?;
    out.push(b',');
    out.extend_from_slice(tail.get(1..).unwrap_or_default());
    Ok(out)
}

/// The fields of [`StatusResponse`] after `keys`, in its order.
#[derive(Serialize)]
struct StatusTail<'a> {
    /// Rotations not yet finished.
    active_rotations: usize,
    /// Rotations that failed and wait for an operator.
    failed_rotations: usize,
    /// Outbox messages waiting.
    outbox_queued: usize,
    /// Outbox messages that exhausted their budget.
    outbox_dead: usize,
    /// When the next queued message is tried.
    outbox_next_attempt_at: Option<Timestamp>,
    /// Ids of the dead messages, oldest first.
    outbox_dead_ids: &'a [String],
    /// The leader lease of a shared store.
    #[serde(skip_serializing_if = "Option::is_none")]
    lease: Option<keyrot_core::store::LeaseInfo>,
    /// The answering instance's role on a shared store.
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<&'a InstanceRole>,
    /// Orphan keys the last syncs found.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    orphans: Vec<keyrot_core::model::Orphan>,
}

/// Appends `value` as JSON.
fn json_into<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), ApiError> {
    serde_json::to_writer(&mut *out, value).map_err(|e| ApiError::new(500, e.to_string()))
}

/// `GET /v1/keys`: the rows of [`status`] alone.
pub fn key_rows(store: &Store, now: Timestamp) -> Result<Vec<KeyRow>, ApiError> {
    serde_json::from_slice(&key_rows_json(store, now)?)
        .map_err(|e| ApiError::new(500, format!("keys: {e}")))
}

/// The rows of [`key_rows`] as a JSON array, written in one pass.
pub fn key_rows_json(store: &Store, now: Timestamp) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    write_rows(store, now, &mut out)?;
    Ok(out)
}

/// What the status says of the outbox.
struct OutboxSummary {
    /// Messages waiting.
    queued: usize,
    /// The earliest queued message's next attempt.
    next: Option<Timestamp>,
    /// Dead messages' ids, oldest first.
    dead_ids: Vec<String>,
}

/// The outbox's queued count and next attempt, and its dead messages'
/// ids, oldest first, in one read of the outbox.
fn outbox_summary(store: &Store) -> Result<OutboxSummary, StoreError> {
    let messages = store.outbox()?;
    let queued = || messages.iter().filter(|m| m.state == DeliveryState::Queued);
    let next = queued().map(|m| m.next_attempt_at).min();
    let n = queued().count();
    let mut dead: Vec<_> = messages
        .iter()
        .filter(|m| m.state == DeliveryState::Dead)
        .collect();
    dead.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(OutboxSummary {
        queued: n,
        next,
        dead_ids: dead.into_iter().map(|m| m.id.clone()).collect(),
    })
}

/// `GET /v1/plan?days=N`: when each slot's next rotation would start and
/// why. Rows starting within `days` come first, earliest first; then the
/// rest (later starts first, slots that never start last).
pub fn plan(
    store: &Store,
    cfg: &Config,
    days: u32,
    now: Timestamp,
) -> Result<PlanResponse, ApiError> {
    let recs = store.keys()?;
    let horizon = now
        .checked_add(SignedDuration::from_hours(24 * i64::from(days)))
        .unwrap_or(Timestamp::MAX);
    let groups = GroupStarts::new(&recs);
    let mut rows: Vec<PlanRow> = recs
        .iter()
        .map(|r| plan_row(cfg, r, &groups, now))
        .collect();
    rows.sort_by_key(|r| {
        let within = r.start_at.is_some_and(|s| s <= horizon);
        (!within, r.start_at.is_none(), r.start_at, r.slot.clone())
    });
    Ok(PlanResponse { days, rows })
}

/// One plan row: the policy's decision for `rec`.
fn plan_row(cfg: &Config, rec: &KeyRecord, groups: &GroupStarts<'_>, now: Timestamp) -> PlanRow {
    let mut row = PlanRow {
        slot: rec.slot.clone(),
        policy: rec.policy.clone(),
        due_at: None,
        start_at: None,
        window: None,
        emergency: false,
        staggered: false,
        explain: String::new(),
    };
    let Some(pol) = cfg.policy(&rec.policy) else {
        row.explain = format!(
            "policy \"{}\" is not in the configuration: the key is not rotated (fix the key's policy and reload)",
            rec.policy
        );
        return row;
    };
    let times = rec.current.as_ref().map(|k| KeyTimes {
        created_at: k.created_at,
        expires_at: k.expires_at,
    });
    let d = policy::decide(pol, &rec.slot, times, groups.last_start(rec), now);
    row.due_at = d.due_at;
    if let Some(id) = &rec.active_rotation {
        row.explain = format!(
            "rotation {id} is in progress; the next one is planned when it finishes ({})",
            d.explain
        );
        return row;
    }
    row.start_at = d.start_at;
    row.window = d.window;
    row.emergency = d.emergency;
    row.staggered = d.staggered;
    row.explain = d.explain;
    row
}

/// `GET /v1/history`: up to `limit` rotations, newest first, of one slot
/// (already resolved) or of all.
pub fn history(
    store: &Store,
    slot: Option<&str>,
    limit: usize,
) -> Result<HistoryResponse, ApiError> {
    let rotations = store
        .rotations(slot, limit)?
        .into_iter()
        .map(redact)
        .collect();
    Ok(HistoryResponse { rotations })
}

/// `GET /v1/rotations/{id}`: one rotation, 404 when unknown.
pub fn rotation(store: &Store, id: &str) -> Result<RotationRecord, ApiError> {
    match store.rotation(id)? {
        Some(r) => Ok(redact(r)),
        None => Err(unknown_rotation(id)),
    }
}

/// The 404 for rotation `id`: unknown, or (to a token caller) another
/// key's, answered alike.
pub fn unknown_rotation(id: &str) -> ApiError {
    ApiError::new(
        404,
        format!("unknown rotation \"{id}\" (keyrot history lists rotations)"),
    )
}

/// `GET /v1/keys/{provider}/{name}`: one slot, 404 with near matches when
/// unknown.
pub fn key(store: &Store, slot: &str) -> Result<KeyRecord, ApiError> {
    match store.key(slot)? {
        Some(k) => Ok(k),
        None => Err(unknown_key(slot, &store.keys()?)),
    }
}

/// Blanks what a response must not show of a rotation: the SHA-256 of its
/// new secret (the model keeps it to compare sinks; it is never output).
pub fn redact(mut rec: RotationRecord) -> RotationRecord {
    if let Some(k) = rec.new_key.as_mut() {
        k.secret_sha256.clear();
    }
    rec
}

#[cfg(test)]
#[path = "views_tests.rs"]
pub(crate) mod tests;

#[cfg(test)]
#[path = "views_stream_tests.rs"]
mod stream_tests;
