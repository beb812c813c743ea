//! The daily digest: per recipient, the keys they are told about (their
//! policy's `notify`, the key's `contacts`) that expire within 30 days or
//! have expired. No such key, no digest. When it runs is the scheduler's
//! business (`notify.digest_schedule`); this file builds it.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use super::message::{Composer, day, key_recipients, when};
use super::notice::span_words;
use super::render::{Row, Vars};
use keyrot_core::crypto::sha256_hex;
use keyrot_core::model::{KeyRecord, MessageKind, OutboxMessage, RotationRecord, RotationState};

/// How far ahead the digest looks.
pub const HORIZON: SignedDuration = SignedDuration::from_hours(30 * 24);

/// The fields of each row of the digest's `keys` list.
const KEY_FIELDS: &[&str] = &[
    "slot", "provider", "policy", "key_id", "expires", "left", "status",
];

/// The stable id of `recipient`'s digest for `date` (`YYYY-MM-DD`):
/// `digest.DATE.HASH`, HASH being 12 hex digits of SHA-256 over the
/// lower-cased address, so each person gets one digest a day.
pub fn digest_id(date: &str, recipient: &str) -> String {
    let hash = sha256_hex(recipient.to_ascii_lowercase().as_bytes());
    format!("digest.{date}.{}", &hash[..12])
}

impl Composer {
    /// The digests for `now`'s UTC day: one per recipient who is told
    /// about at least one key expiring by `now + 30 days`. `rotations`
    /// holds the active rotations of `keys`, by id.
    pub fn digests(
        &self,
        keys: &[KeyRecord],
        rotations: &BTreeMap<String, RotationRecord>,
        now: Timestamp,
    ) -> Vec<OutboxMessage> {
        let date = day(Some(now));
        let mut soon: Vec<(&KeyRecord, Timestamp)> = keys
            .iter()
            .filter_map(|k| Some((k, k.current.as_ref()?.expires_at?)))
            .filter(|(_, exp)| *exp <= now + HORIZON)
            .collect();
        soon.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.slot.cmp(&b.0.slot)));
        let mut all: Vec<(Row, bool)> = Vec::new();
        // Recipient (lower-cased) -> (first spelling, rows).
        let mut by_person: BTreeMap<String, (String, Vec<(Row, bool)>)> = BTreeMap::new();
        for (key, expires) in soon {
            let rotation = key
                .active_rotation
                .as_ref()
                .and_then(|id| rotations.get(id));
            let row = self.row(key, rotation, expires, now);
            all.push((row.clone(), expires <= now));
            for to in key_recipients(self.config(), key, None) {
                by_person
                    .entry(to.to_ascii_lowercase())
                    .or_insert_with(|| (to.clone(), Vec::new()))
                    .1
                    .push((row.clone(), expires <= now));
            }
        }
        let mut out = Vec::new();
        for (_, (to, rows)) in by_person {
            let vars = digest_vars(&date, rows, now);
            out.extend(self.compose(
                MessageKind::Digest,
                "digest",
                digest_id(&date, &to),
                vec![to],
                &vars,
                now,
                false,
            ));
        }
        // Webhooks get one digest of every key, whoever is told by mail.
        if !all.is_empty() {
            out.extend(self.compose(
                MessageKind::Digest,
                "digest",
                format!("digest.{date}"),
                Vec::new(),
                &digest_vars(&date, all, now),
                now,
                true,
            ));
        }
        out
    }

    /// One key's row: when it expires and what keyrot does about it.
    fn row(
        &self,
        key: &KeyRecord,
        rotation: Option<&RotationRecord>,
        expires: Timestamp,
        now: Timestamp,
    ) -> Row {
        let left = if expires <= now {
            format!("EXPIRED {} ago", span_words(now.duration_since(expires)))
        } else {
            format!("in {}", span_words(expires.duration_since(now)))
        };
        let auto = self
            .config()
            .policy(&key.policy)
            .is_some_and(|p| p.auto_rotate);
        let status = match rotation {
            Some(r) if r.state == RotationState::Failed => format!(
                "rotation FAILED in {}: keyrot rotation show {}",
                r.failed_in.map_or("unknown", RotationState::as_str),
                r.id
            ),
            Some(r) if r.state == RotationState::AwaitingSecret => {
                format!("waiting for a new key: keyrot enroll {}", r.id)
            }
            Some(r) => format!("rotating now ({}): {}", r.state, r.id),
            None if !auto => "auto_rotate is off: rotate it by hand".to_string(),
            None => match key.next_due {
                Some(t) => format!("rotation starts {}", when(Some(t))),
                None => format!(
                    "no rotation scheduled{}",
                    key.due_reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ),
            },
        };
        Row::from([
            ("slot", key.slot.clone()),
            ("provider", key.provider.clone()),
            ("policy", key.policy.clone()),
            (
                "key_id",
                key.current
                    .as_ref()
                    .map(|c| c.id.clone())
                    .unwrap_or_default(),
            ),
            ("expires", when(Some(expires))),
            ("left", left),
            ("status", status),
        ])
    }
}

/// Variables of `digest`; each row comes with whether its key expired.
/// `as_of` is when the rows' relative times (`left`) were computed: the
/// digest states it, so that a digest delivered late (a mail server
/// outage) is not read against its `Date:`.
pub(super) fn digest_vars(date: &str, rows: Vec<(Row, bool)>, as_of: Timestamp) -> Vars {
    let n = rows.len();
    let expired = rows.iter().filter(|(_, e)| *e).count();
    let mut v = Vars::new();
    v.set("date", date)
        .set("as_of", when(Some(as_of)))
        .set("count", n.to_string())
        .set(
            "count_phrase",
            if n == 1 {
                "1 key expires".to_string()
            } else {
                format!("{n} keys expire")
            },
        )
        .set(
            "expired_count",
            if expired == 0 {
                String::new()
            } else {
                expired.to_string()
            },
        );
    v.list(
        "keys",
        KEY_FIELDS,
        rows.into_iter().map(|(r, _)| r).collect(),
    );
    v
}
