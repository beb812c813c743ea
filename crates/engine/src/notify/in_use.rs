//! The message the Overlap step queues when, under `revoke_when =
//! "unused"`, the old key is still in use at the policy's deadline: to the
//! rotation's recipients, once per rotation (`ROTATION.in_use`), in the
//! commit that records `in_use_alerted_at`.

use jiff::{SignedDuration, Timestamp};

use super::message::{Composer, recipients, rotation_vars, when};
use super::render::Vars;
use keyrot_core::model::{KeyRecord, LastUse, MessageKind, OutboxMessage, RotationRecord};
use keyrot_core::policy::{QuietRule, format_duration};

/// What the alert says besides the rotation.
#[derive(Clone, Debug)]
pub struct InUse<'a> {
    /// The old key's last use, as the provider reported it.
    pub last_use: &'a LastUse,
    /// How stale the provider's report may be.
    pub precision: SignedDuration,
    /// The policy's rule.
    pub rule: QuietRule,
    /// The deadline that passed.
    pub deadline: Timestamp,
}

impl Composer {
    /// The alert for `rec`, id `ROTATION.in_use`.
    pub fn old_key_in_use(
        &self,
        rec: &RotationRecord,
        key: Option<&KeyRecord>,
        u: &InUse<'_>,
        now: Timestamp,
    ) -> Vec<OutboxMessage> {
        self.make(
            MessageKind::OldKeyInUse,
            "in_use",
            format!("{}.in_use", rec.id),
            recipients(self.config(), rec, key),
            &in_use_vars(rec, u, now),
            now,
        )
    }
}

/// How long ago `t` was, from `now`, e.g. `3h 20m ago` (`in the future`
/// for a time ahead of `now`).
pub fn ago(t: Timestamp, now: Timestamp) -> String {
    let d = now.duration_since(t);
    if d.is_negative() {
        return format!("{} in the future", format_duration(d.abs()));
    }
    format!(
        "{} ago",
        format_duration(SignedDuration::from_secs(d.as_secs()))
    )
}

/// The old key's last use in words, with how long ago (`never used`,
/// `2026-11-23T08:00:00Z (1h ago)`, `unknown (why)`).
pub fn last_use_words(last: &LastUse, now: Timestamp) -> String {
    match last {
        LastUse::Never => "never used".into(),
        LastUse::At { at } => format!("{at} ({})", ago(*at, now)),
        LastUse::Unknown { why } => format!("unknown ({why})"),
    }
}

/// Variables of `in_use`.
pub(super) fn in_use_vars(rec: &RotationRecord, u: &InUse<'_>, now: Timestamp) -> Vars {
    let mut v = rotation_vars(rec);
    v.set("sink_names", rec.sinks.join(", "))
        .set("last_use", last_use_words(u.last_use, now))
        .set(
            "checked_at",
            when(rec.old_last_use_checked_at.or(Some(now))),
        )
        .set("precision", format_duration(u.precision))
        .set("quiet_period", format_duration(u.rule.quiet_period))
        .set("deadline", when(Some(u.deadline)))
        .set("at_deadline", u.rule.at_deadline.as_str())
        .flag(
            "revoke_anyway",
            u.rule.at_deadline == keyrot_core::policy::AtDeadline::Revoke,
        );
    v
}
