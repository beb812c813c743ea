//! Read-only views over the store and the configuration: the key list of
//! `keyrot status`, the dry-run plan, rotation history and key-name
//! resolution. The daemon's control server and the CLI's read-only fallback
//! (no daemon running) both answer from here, so they always agree.
//!
//! Everything here blocks on the store: async callers use `spawn_blocking`.
//! Time is a parameter. Nothing returned carries secret material, and the
//! SHA-256 of a new key's secret is blanked (see [`redact`]).

use std::borrow::Cow;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::{ApiError, EndedRow, HistoryResponse, KeyRow, PlanResponse, PlanRow, StatusResponse};
use keyrot_config::Config;
use keyrot_core::model::{
    DeliveryState, Duplicates, EndKind, KeyInfo, KeyRecord, RotationRecord, RotationState,
};
use keyrot_core::policy::{self, KeyTimes};
use keyrot_core::store::{RotationGlance, Store, StoreError};
use keyrot_engine::notify::ended::kind_word;
use keyrot_engine::rotation::plan::GroupStarts;

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
/// read-only (false). The typed form of [`status_json`]'s document.
pub fn status(store: &Store, now: Timestamp, live: bool) -> Result<StatusResponse, ApiError> {
    let bytes = status_json(store, now, live)?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::new(500, format!("status: {e}")))
}

/// The `GET /v1/status` document as JSON, written row by row in one pass
/// over the store ([`Store::each_key_json`]): no slot record is decoded
/// whole or kept past its row, so 100k slots cost one scan and the bytes
/// of the answer.
pub fn status_json(store: &Store, now: Timestamp, live: bool) -> Result<Vec<u8>, ApiError> {
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
}

/// Appends `value` as JSON.
fn json_into<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), ApiError> {
    serde_json::to_writer(&mut *out, value).map_err(|e| ApiError::new(500, e.to_string()))
}

/// What the rows counted.
#[derive(Default)]
struct RowCounts {
    /// Slots whose active rotation is not finished.
    active: usize,
    /// Rows flagged `failed`.
    failed: usize,
}

/// Writes the status rows as a JSON array.
fn write_rows(store: &Store, now: Timestamp, out: &mut Vec<u8>) -> Result<RowCounts, ApiError> {
    let mut counts = RowCounts::default();
    let duplicates: Duplicates = store.duplicates()?;
    out.push(b'[');
    let mut first = true;
    store.each_key_json(|slot, json, rotation| {
        let decode_error = |detail: String| StoreError::Decode {
            table: "keys",
            key: slot.to_owned(),
            detail,
        };
        let view: KeyView<'_> =
            serde_json::from_slice(json).map_err(|e| decode_error(e.to_string()))?;
        let others = duplicates.get(slot).map_or(&[][..], Vec::as_slice);
        let row = view_row(&view, rotation, others, now).map_err(decode_error)?;
        // Every unfinished rotation is its slot's active rotation.
        if view.active_rotation.is_some() && rotation.is_some_and(|r| !r.state.is_terminal()) {
            counts.active += 1;
        }
        counts.failed += usize::from(row.flags.contains(&"failed"));
        if !first {
            out.push(b',');
        }
        first = false;
        serde_json::to_writer(&mut *out, &row).map_err(|e| StoreError::Encode {
            table: "keys",
            key: slot.to_owned(),
            detail: e.to_string(),
        })
    })?;
    out.push(b']');
    Ok(counts)
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

/// A string borrowed from the stored JSON when it holds no escape.
#[derive(Debug)]
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// Takes a borrowed string when the parser has one.
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

impl Text<'_> {
    /// The text.
    fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a status row needs of a stored [`KeyRecord`]; the rest of the
/// record is skipped by the parser, not decoded.
#[derive(Deserialize)]
struct KeyView<'a> {
    /// `provider/name`.
    #[serde(borrow)]
    slot: Text<'a>,
    /// Provider.
    #[serde(borrow)]
    provider: Text<'a>,
    /// Key name.
    #[serde(borrow)]
    name: Text<'a>,
    /// The live key.
    #[serde(borrow)]
    current: Option<CurrentView<'a>>,
    /// Policy.
    #[serde(borrow)]
    policy: Text<'a>,
    /// Next start (RFC 3339, as stored).
    #[serde(borrow)]
    next_due: Option<Text<'a>>,
    /// Why then.
    #[serde(borrow, default)]
    due_reason: Option<Text<'a>>,
    /// The rotation in progress.
    #[serde(borrow)]
    active_rotation: Option<Text<'a>>,
    /// The key that ended without keyrot replacing it.
    #[serde(borrow, default)]
    ended: Option<EndedView<'a>>,
}

/// What a status row needs of a slot's [`keyrot_core::model::EndedKey`].
#[derive(Deserialize)]
struct EndedView<'a> {
    /// Key id.
    #[serde(borrow)]
    id: Text<'a>,
    /// Expired or vanished.
    kind: EndKind,
    /// Expiry (RFC 3339, as stored).
    #[serde(borrow, default)]
    expires_at: Option<Text<'a>>,
    /// End (RFC 3339, as stored).
    #[serde(borrow)]
    ended_at: Text<'a>,
}

/// [`EndedRow`], borrowing its text.
#[derive(Serialize)]
struct EndedOut<'a> {
    /// See [`EndedRow`].
    state: &'static str,
    /// See [`EndedRow`].
    key_id: &'a str,
    /// See [`EndedRow`].
    expires_at: Option<&'a str>,
    /// See [`EndedRow`].
    ended_at: &'a str,
}

/// What a status row needs of a slot's current [`keyrot_core::model::KeyInfo`].
#[derive(Deserialize)]
struct CurrentView<'a> {
    /// Key id.
    #[serde(borrow)]
    id: Text<'a>,
    /// Scopes, counted, not kept.
    #[serde(default)]
    scopes: Vec<serde::de::IgnoredAny>,
    /// Creator.
    #[serde(borrow, default)]
    created_by: Option<Text<'a>>,
    /// Creation (RFC 3339, as stored).
    #[serde(borrow)]
    created_at: Option<Text<'a>>,
    /// Expiry (RFC 3339, as stored).
    #[serde(borrow)]
    expires_at: Option<Text<'a>>,
    /// Last use (RFC 3339, as stored).
    #[serde(borrow, default)]
    last_used_at: Option<Text<'a>>,
}

/// A [`KeyRow`] borrowing its text: the same fields in the same order, so
/// that it serialises to the same JSON. Instants are the stored RFC 3339
/// text (what `Timestamp` serialises to).
#[derive(Serialize)]
struct RowOut<'a> {
    /// See [`KeyRow`].
    slot: &'a str,
    /// See [`KeyRow`].
    provider: &'a str,
    /// See [`KeyRow`].
    name: &'a str,
    /// See [`KeyRow`].
    key_id: Option<&'a str>,
    /// See [`KeyRow`].
    scopes: usize,
    /// See [`KeyRow`].
    created_by: Option<&'a str>,
    /// See [`KeyRow`].
    created_at: Option<&'a str>,
    /// See [`KeyRow`].
    last_used_at: Option<&'a str>,
    /// See [`KeyRow`].
    expires_at: Option<&'a str>,
    /// See [`KeyRow`].
    days_left: Option<i64>,
    /// See [`KeyRow`].
    policy: &'a str,
    /// See [`KeyRow`].
    rotation_state: Option<&'static str>,
    /// See [`KeyRow`].
    rotation_id: Option<&'a str>,
    /// See [`KeyRow`].
    next_rotation: Option<&'a str>,
    /// See [`KeyRow`].
    next_reason: Option<&'a str>,
    /// See [`KeyRow`].
    flags: Vec<&'static str>,
    /// See [`KeyRow`].
    duplicate_ids: Vec<&'a str>,
    /// See [`KeyRow`].
    ended: Option<EndedOut<'a>>,
}

/// The row of `view` ([`key_row`] builds the same row from a decoded
/// record).
fn view_row<'a>(
    view: &'a KeyView<'a>,
    rotation: Option<&'a RotationGlance>,
    others: &'a [KeyInfo],
    now: Timestamp,
) -> Result<RowOut<'a>, String> {
    let cur = view.current.as_ref();
    let text = |t: &'a Option<Text<'a>>| t.as_ref().map(Text::as_str);
    let expires_at = match cur.and_then(|c| c.expires_at.as_ref()) {
        Some(t) => Some(
            t.as_str()
                .parse::<Timestamp>()
                .map_err(|e| format!("expires_at: {e}"))?,
        ),
        None => None,
    };
    let ended = view
        .ended
        .as_ref()
        // A slot with a key again no longer reports the one it lost.
        .filter(|_| cur.is_none());
    let (days_left, flags) = row_facts(
        cur.map(|c| (c.scopes.len(), c.last_used_at.is_none())),
        expires_at,
        ended.map(|e| e.kind),
        rotation.is_some_and(|r| r.state == RotationState::Failed),
        !others.is_empty(),
        now,
    );
    Ok(RowOut {
        slot: view.slot.as_str(),
        provider: view.provider.as_str(),
        name: view.name.as_str(),
        key_id: cur.map(|c| c.id.as_str()),
        scopes: cur.map_or(0, |c| c.scopes.len()),
        created_by: cur.and_then(|c| text(&c.created_by)),
        created_at: cur.and_then(|c| text(&c.created_at)),
        last_used_at: cur.and_then(|c| text(&c.last_used_at)),
        expires_at: cur.and_then(|c| text(&c.expires_at)),
        days_left,
        policy: view.policy.as_str(),
        rotation_state: rotation.map(|r| r.state.as_str()),
        rotation_id: rotation.map(|r| r.id.as_str()),
        next_rotation: text(&view.next_due),
        next_reason: text(&view.due_reason),
        flags,
        duplicate_ids: others.iter().map(|k| k.id.as_str()).collect(),
        ended: ended.map(|e| EndedOut {
            state: kind_word(e.kind),
            key_id: e.id.as_str(),
            expires_at: text(&e.expires_at),
            ended_at: e.ended_at.as_str(),
        }),
    })
}

/// Days left and flags of a row: `key` is the current key's scope count
/// and whether it was never used (`None`: the slot has no key); `ended`,
/// how the key of a slot with none ended (flag `expired` or `vanished`);
/// `duplicated`, whether the provider lists other keys of its name.
fn row_facts(
    key: Option<(usize, bool)>,
    expires_at: Option<Timestamp>,
    ended: Option<EndKind>,
    failed: bool,
    duplicated: bool,
    now: Timestamp,
) -> (Option<i64>, Vec<&'static str>) {
    let days_left = expires_at.map(|e| whole_days(e.duration_since(now)));
    let mut flags = Vec::new();
    match key {
        None => flags.push("no-key"),
        Some((scopes, never_used)) => {
            if scopes == 0 {
                flags.push("unscoped");
            }
            if never_used {
                flags.push("never-used");
            }
        }
    }
    if let Some(k) = ended {
        flags.push(kind_word(k));
    }
    if let Some(e) = expires_at {
        if e <= now {
            flags.push("expired");
        } else if e.duration_since(now) <= SignedDuration::from_hours(24 * EXPIRING_SOON_DAYS) {
            flags.push("expiring-soon");
        }
    }
    if failed {
        flags.push("failed");
    }
    if duplicated {
        flags.push("duplicate-name");
    }
    (days_left, flags)
}

/// Builds one status row from a decoded record and the slot's
/// [`Duplicates`] entry (metrics use it; the status list builds the same
/// row from the stored JSON, [`view_row`]).
pub fn key_row(
    rec: &KeyRecord,
    rotation: Option<&RotationGlance>,
    others: &[KeyInfo],
    now: Timestamp,
) -> KeyRow {
    let cur = rec.current.as_ref();
    let expires_at = cur.and_then(|k| k.expires_at);
    let ended = rec
        .ended
        .as_ref()
        // A slot with a key again no longer reports the one it lost.
        .filter(|_| cur.is_none());
    let (days_left, flags) = row_facts(
        cur.map(|k| (k.scopes.len(), k.last_used_at.is_none())),
        expires_at,
        ended.map(|e| e.kind),
        rotation.is_some_and(|r| r.state == RotationState::Failed),
        !others.is_empty(),
        now,
    );
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
        duplicate_ids: others.iter().map(|k| k.id.clone()).collect(),
        ended: ended.map(|e| EndedRow {
            state: kind_word(e.kind).to_string(),
            key_id: e.id.clone(),
            expires_at: e.expires_at,
            ended_at: e.ended_at,
        }),
    }
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

#[cfg(test)]
#[path = "views_stream_tests.rs"]
mod stream_tests;
