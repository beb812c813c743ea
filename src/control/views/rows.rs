//! The rows of `keyrot status` and `GET /v1/keys`: written straight from
//! each slot's stored JSON (borrowing its text) or built from a decoded
//! record, with the same days left and flags either way.

use std::borrow::Cow;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::EXPIRING_SOON_DAYS;
use crate::control::{ApiError, EndedRow, KeyRow, OldKeyRow};
use keyrot_core::model::{Duplicates, EndKind, KeyInfo, KeyRecord, LastUse, RotationState};
use keyrot_core::store::{RotationGlance, Store, StoreError};
use keyrot_engine::notify::ended::kind_word;

/// What the rows counted.
#[derive(Default)]
pub(super) struct RowCounts {
    /// Slots whose active rotation is not finished.
    pub(super) active: usize,
    /// Rows flagged `failed`.
    pub(super) failed: usize,
}

/// Writes the status rows as a JSON array.
pub(super) fn write_rows(
    store: &Store,
    now: Timestamp,
    out: &mut Vec<u8>,
) -> Result<RowCounts, ApiError> {
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
    /// See [`KeyRow`].
    #[serde(skip_serializing_if = "Option::is_none")]
    old_key: Option<OldKeyRow>,
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
        old_key: old_key_row(rotation, now),
    })
}

/// The old key's row of a rotation in Overlap, with its last use in words
/// at `now`.
fn old_key_row(rotation: Option<&RotationGlance>, now: Timestamp) -> Option<OldKeyRow> {
    let old = rotation
        .filter(|r| r.state == RotationState::Overlap)?
        .old_key
        .as_ref()?;
    let summary = match &old.last_use {
        Some(LastUse::At { at }) => {
            format!("last used {}", keyrot_engine::notify::in_use::ago(*at, now))
        }
        Some(LastUse::Never) => "never used".into(),
        Some(LastUse::Unknown { why }) => format!("last use unknown ({why})"),
        None => "last use unknown (not reported)".into(),
    };
    Some(OldKeyRow {
        key_id: old.key_id.clone(),
        last_use: old.last_use.clone(),
        summary,
        checked_at: old.checked_at,
        in_use_alerted_at: old.alerted_at,
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
        old_key: old_key_row(rotation, now),
    }
}

/// Whole days in `d`, rounded towards negative infinity (so a key that
/// expired an hour ago has -1 days left).
fn whole_days(d: SignedDuration) -> i64 {
    d.as_secs().div_euclid(86_400)
}
