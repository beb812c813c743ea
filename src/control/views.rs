//! Read-only views over the store and the configuration: the key list of
//! `keyrot status`, the dry-run plan, rotation history and key-name
//! resolution. The daemon's control server and the CLI's read-only fallback
//! (no daemon running) both answer from here, so they always agree.
//!
//! Everything here blocks on the store: async callers use `spawn_blocking`.
//! Time is a parameter. Nothing returned carries secret material, and the
//! SHA-256 of a new key's secret is blanked (see [`redact`]).

use jiff::{SignedDuration, Timestamp};

use super::{ApiError, HistoryResponse, KeyRow, PlanResponse, PlanRow, StatusResponse};
use crate::config::Config;
use crate::model::{DeliveryState, KeyRecord, RotationRecord, RotationState};
use crate::policy::{self, KeyTimes};
use crate::rotation::plan::group_last_start;
use crate::store::{Store, StoreError};

/// A key expiring within this many days is flagged `expiring-soon`.
pub const EXPIRING_SOON_DAYS: i64 = 30;

/// Most near matches offered for an unknown key.
const MAX_SUGGESTIONS: usize = 5;

/// Largest edit distance at which a key name counts as a near match.
const MAX_DISTANCE: usize = 3;

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
/// read-only (false).
pub fn status(store: &Store, now: Timestamp, live: bool) -> Result<StatusResponse, ApiError> {
    let keys = key_rows(store, now)?;
    let stats = store.stats()?;
    let (outbox_next_attempt_at, outbox_dead_ids) = outbox_summary(store)?;
    let active = store.unfinished_rotations()?.len();
    let failed = keys
        .iter()
        .filter(|r| r.flags.iter().any(|f| f == "failed"))
        .count();
    Ok(StatusResponse {
        version: env!("CARGO_PKG_VERSION").to_string(),
        live,
        keys,
        active_rotations: active,
        failed_rotations: failed,
        outbox_queued: usize::try_from(stats.outbox_queued).unwrap_or(usize::MAX),
        outbox_dead: usize::try_from(stats.outbox_dead).unwrap_or(usize::MAX),
        outbox_next_attempt_at,
        outbox_dead_ids,
    })
}

/// The outbox's next attempt (earliest queued message) and its dead
/// messages' ids, oldest first.
fn outbox_summary(store: &Store) -> Result<(Option<Timestamp>, Vec<String>), StoreError> {
    let messages = store.outbox()?;
    let next = messages
        .iter()
        .filter(|m| m.state == DeliveryState::Queued)
        .map(|m| m.next_attempt_at)
        .min();
    let mut dead: Vec<_> = messages
        .into_iter()
        .filter(|m| m.state == DeliveryState::Dead)
        .collect();
    dead.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok((next, dead.into_iter().map(|m| m.id).collect()))
}

/// `GET /v1/keys`: the rows of [`status`] alone.
pub fn key_rows(store: &Store, now: Timestamp) -> Result<Vec<KeyRow>, ApiError> {
    store
        .keys()?
        .iter()
        .map(|rec| {
            let rotation = shown_rotation(store, rec)?;
            Ok(key_row(rec, rotation.as_ref(), now))
        })
        .collect()
}

/// The rotation a status row shows: the slot's active rotation, else its
/// latest one.
fn shown_rotation(store: &Store, rec: &KeyRecord) -> Result<Option<RotationRecord>, StoreError> {
    if let Some(id) = &rec.active_rotation
        && let Some(r) = store.rotation(id)?
    {
        return Ok(Some(r));
    }
    Ok(store.rotations(Some(&rec.slot), 1)?.into_iter().next())
}

/// Builds one status row.
pub fn key_row(rec: &KeyRecord, rotation: Option<&RotationRecord>, now: Timestamp) -> KeyRow {
    let cur = rec.current.as_ref();
    let expires_at = cur.and_then(|k| k.expires_at);
    let days_left = expires_at.map(|e| whole_days(e.duration_since(now)));
    let mut flags = Vec::new();
    match cur {
        None => flags.push("no-key"),
        Some(k) => {
            if k.scopes.is_empty() {
                flags.push("unscoped");
            }
            if k.last_used_at.is_none() {
                flags.push("never-used");
            }
        }
    }
    if let Some(e) = expires_at {
        if e <= now {
            flags.push("expired");
        } else if e.duration_since(now) <= SignedDuration::from_hours(24 * EXPIRING_SOON_DAYS) {
            flags.push("expiring-soon");
        }
    }
    if rotation.is_some_and(|r| r.state == RotationState::Failed) {
        flags.push("failed");
    }
    KeyRow {
        slot: rec.slot.clone(),
        provider: rec.provider.clone(),
        name: rec.name.clone(),
        key_id: cur.map(|k| k.id.clone()),
        scopes: cur.map_or(0, |k| k.scopes.len()),
        created_by: cur.and_then(|k| k.created_by.clone()),
        created_at: cur.and_then(|k| k.created_at),
        last_used_at: cur.and_then(|k| k.last_used_at),
        expires_at,
        days_left,
        policy: rec.policy.clone(),
        rotation_state: rotation.map(|r| r.state.as_str().to_string()),
        rotation_id: rotation.map(|r| r.id.clone()),
        next_rotation: rec.next_due,
        next_reason: rec.due_reason.clone(),
        flags: flags.into_iter().map(String::from).collect(),
    }
}

/// Whole days in `d`, rounded towards negative infinity (so a key that
/// expired an hour ago has -1 days left).
fn whole_days(d: SignedDuration) -> i64 {
    d.as_secs().div_euclid(86_400)
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
    let mut rows: Vec<PlanRow> = recs.iter().map(|r| plan_row(cfg, r, &recs, now)).collect();
    rows.sort_by_key(|r| {
        let within = r.start_at.is_some_and(|s| s <= horizon);
        (!within, r.start_at.is_none(), r.start_at, r.slot.clone())
    });
    Ok(PlanResponse { days, rows })
}

/// One plan row: the policy's decision for `rec`.
fn plan_row(cfg: &Config, rec: &KeyRecord, all: &[KeyRecord], now: Timestamp) -> PlanRow {
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
    let d = policy::decide(pol, &rec.slot, times, group_last_start(rec, all), now);
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
        None => Err(ApiError::new(
            404,
            format!("unknown rotation \"{id}\" (keyrot history lists rotations)"),
        )),
    }
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

/// Resolves what a caller typed to a slot id: an exact slot id, or a key
/// name unique across providers. Unknown: 404 with near matches; a name
/// several providers hold: 400 listing the slots.
pub fn resolve_key(store: &Store, name: &str) -> Result<String, ApiError> {
    if store.key(name)?.is_some() {
        return Ok(name.to_string());
    }
    let all = store.keys()?;
    let named: Vec<&KeyRecord> = all.iter().filter(|k| k.name == name).collect();
    match named.as_slice() {
        [one] => Ok(one.slot.clone()),
        [] => Err(unknown_key(name, &all)),
        many => {
            let slots: Vec<String> = many.iter().map(|k| k.slot.clone()).collect();
            let mut e = ApiError::bad_field(
                "key",
                format!(
                    "key name \"{name}\" is held by several providers ({}): give provider/name",
                    slots.join(", ")
                ),
            );
            e.suggestions = slots;
            Err(e)
        }
    }
}

/// The 404 for an unknown key, with near matches in the message and in
/// `suggestions`.
fn unknown_key(name: &str, all: &[KeyRecord]) -> ApiError {
    let suggestions = near_matches(name, all);
    let message = if suggestions.is_empty() {
        format!("unknown key \"{name}\" (keyrot keys lists them)")
    } else {
        format!(
            "unknown key \"{name}\"; did you mean {}?",
            or_list(&suggestions)
        )
    };
    let mut e = ApiError::new(404, message);
    e.field = Some("key".to_string());
    e.suggestions = suggestions;
    e
}

/// "a", "a or b", "a, b or c".
fn or_list(items: &[String]) -> String {
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// Keys close to `input`: within [`MAX_DISTANCE`] edits, or one a
/// substring of the other. Compared with slot ids when `input` has a `/`,
/// else with key names; offered by name when the name is unique, else by
/// slot id. Closest first.
fn near_matches(input: &str, all: &[KeyRecord]) -> Vec<String> {
    let needle = input.to_lowercase();
    let mut found: Vec<(usize, String)> = Vec::new();
    for k in all {
        let target = if input.contains('/') {
            &k.slot
        } else {
            &k.name
        };
        let hay = target.to_lowercase();
        let dist = edit_distance(&needle, &hay);
        let close = dist <= MAX_DISTANCE
            || (!needle.is_empty() && (hay.contains(&needle) || needle.contains(&hay)));
        if !close {
            continue;
        }
        let unique = all.iter().filter(|o| o.name == k.name).count() == 1;
        let shown = if unique && !input.contains('/') {
            k.name.clone()
        } else {
            k.slot.clone()
        };
        if !found.iter().any(|(_, s)| *s == shown) {
            found.push((dist, shown));
        }
    }
    found.sort();
    found
        .into_iter()
        .take(MAX_SUGGESTIONS)
        .map(|(_, s)| s)
        .collect()
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != *cb);
            let best = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
            cur.push(best);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
#[path = "views_tests.rs"]
pub(crate) mod tests;
