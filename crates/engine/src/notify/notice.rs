//! Expiry notices: one message per rung of a policy's
//! `notify_before_expiry` ladder per key, for keys keyrot does not replace
//! by itself (auto_rotate off, or a failed rotation). When a notice is due
//! is the scheduler's business (`scheduler::notices`); this file builds it.

use jiff::{SignedDuration, Timestamp};

use super::message::{Composer, day, key_recipients, when};
use super::render::Vars;
use keyrot_core::crypto::sha256_hex;
use keyrot_core::model::{KeyRecord, MessageKind, OutboxMessage, RotationRecord, RotationState};
use keyrot_core::policy::{self, Policy};

/// The stable id of the notice for `rung` of key `key_id` in `slot`:
/// `expiry.RUNG.HASH`, where HASH is 16 hex digits of SHA-256 over slot,
/// key id and rung, so the same notice is queued once, across restarts.
pub fn notice_id(slot: &str, key_id: &str, rung: SignedDuration) -> String {
    let seed = format!("{slot}\n{key_id}\n{}", rung.as_secs());
    let hash = sha256_hex(seed.as_bytes());
    format!("expiry.{}.{}", policy::format_duration(rung), &hash[..16])
}

/// Time between now and an instant, as a person says it: `14 days`,
/// `1 day`, `5 hours`, `3 minutes`, `less than a minute`. Rounded to the
/// nearest unit, so a notice sent a moment after its rung says the rung.
pub fn span_words(d: SignedDuration) -> String {
    let s = d.as_secs().abs();
    let (n, unit) = if s >= 86_400 - 1_800 {
        ((s + 43_200) / 86_400, "day")
    } else if s >= 3_600 - 30 {
        ((s + 1_800) / 3_600, "hour")
    } else if s >= 60 {
        ((s + 30) / 60, "minute")
    } else {
        return "less than a minute".into();
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// What the notice says of its rung: the rung itself (`5m`, `14d`) when
/// it is queued on time, else the time really left when it was queued, in
/// the rung's notation and rounded down (`2m`), for a rung that had passed
/// before keyrot saw the key (a key first seen late, or keyrot down): a
/// "5m" notice for a key 2 minutes from expiry says `2m`. Like the rung, it
/// is read beside the absolute expiry the notice names. On time means
/// within a minute, or 1% of the rung, of reaching it.
fn rung_words(rung: SignedDuration, left: SignedDuration) -> String {
    let slack = SignedDuration::from_secs((rung.as_secs() / 100).max(60));
    if left >= rung - slack {
        return policy::format_duration(rung);
    }
    let s = left.as_secs().max(0);
    let (n, unit) = match s {
        86_400.. => (s / 86_400, "d"),
        3_600.. => (s / 3_600, "h"),
        60.. => (s / 60, "m"),
        _ => (s, "s"),
    };
    format!("{n}{unit}")
}

impl Composer {
    /// The notice for `rung` of `key` (which must have a current key with
    /// an expiry), telling why keyrot does not replace it: its policy's
    /// auto_rotate is off, or `rotation` failed.
    pub fn expiry_notice(
        &self,
        key: &KeyRecord,
        policy: &Policy,
        rotation: Option<&RotationRecord>,
        rung: SignedDuration,
        now: Timestamp,
    ) -> Vec<OutboxMessage> {
        let Some((cur, expires)) = key
            .current
            .as_ref()
            .and_then(|c| c.expires_at.map(|e| (c, e)))
        else {
            return Vec::new();
        };
        let to = key_recipients(self.config(), key, rotation);
        let vars = expiry_vars(self.config(), key, policy, rotation, rung, expires, now);
        self.make(
            MessageKind::ExpiryWarning,
            "expiry",
            notice_id(&key.slot, &cur.id, rung),
            to,
            &vars,
            now,
        )
    }
}

/// Variables of `expiry`.
pub(super) fn expiry_vars(
    cfg: &keyrot_config::Config,
    key: &KeyRecord,
    policy: &Policy,
    rotation: Option<&RotationRecord>,
    rung: SignedDuration,
    expires: Timestamp,
    now: Timestamp,
) -> Vars {
    let cur = key.current.as_ref();
    let failed = rotation.filter(|r| r.state == RotationState::Failed);
    let mut v = Vars::new();
    v.set("slot", key.slot.as_str())
        .set("key_name", key.name.as_str())
        .set("provider", key.provider.as_str())
        .set("policy", key.policy.as_str())
        .set("key_id", cur.map(|c| c.id.clone()).unwrap_or_default())
        .set(
            "scopes_count",
            cur.map_or(0, |c| c.scopes.len()).to_string(),
        )
        .set("expires", when(Some(expires)))
        .set("expires_date", day(Some(expires)))
        .flag("expired", expires <= now)
        .set("time_left", span_words(expires.duration_since(now)))
        .set("rung", rung_words(rung, expires.duration_since(now)))
        .set(
            "next_notice",
            when(policy::next_notice_at(policy, expires, now)),
        )
        .flag("auto_rotate", policy.auto_rotate)
        .set(
            "rotation_id",
            failed.map(|r| r.id.clone()).unwrap_or_default(),
        )
        .set(
            "step",
            failed
                .and_then(|r| r.failed_in)
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
        )
        .set(
            "error",
            failed
                .and_then(|r| r.last_error.clone())
                .unwrap_or_default(),
        )
        .set(
            "failed_at",
            when(failed.and_then(|r| r.entered(RotationState::Failed))),
        );
    super::message::offer_exits(&mut v, cfg, failed);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_like_a_person_says_them() {
        let s = SignedDuration::from_secs;
        assert_eq!(span_words(s(14 * 86_400)), "14 days");
        assert_eq!(span_words(s(14 * 86_400 - 5)), "14 days");
        assert_eq!(span_words(s(86_400)), "1 day");
        assert_eq!(span_words(s(23 * 3_600 + 45 * 60)), "1 day");
        assert_eq!(span_words(s(5 * 3_600 + 1)), "5 hours");
        assert_eq!(span_words(s(3_590)), "1 hour");
        assert_eq!(span_words(s(3 * 60 + 10)), "3 minutes");
        assert_eq!(span_words(s(59)), "less than a minute");
        assert_eq!(span_words(s(-2 * 86_400)), "2 days");
    }

    #[test]
    fn a_rung_passed_before_the_key_was_seen_says_the_time_really_left() {
        let (min, day) = (SignedDuration::from_mins(1), SignedDuration::from_hours(24));
        // On time (the scheduler wakes a moment after the rung).
        assert_eq!(rung_words(5 * min, 5 * min), "5m");
        assert_eq!(
            rung_words(5 * min, 5 * min - SignedDuration::from_secs(20)),
            "5m"
        );
        assert_eq!(rung_words(14 * day, 14 * day - 2 * min), "14d");
        // Late: first seen 2 minutes before expiry, or after downtime.
        assert_eq!(rung_words(5 * min, 2 * min), "2m");
        assert_eq!(
            rung_words(5 * min, 2 * min + SignedDuration::from_secs(50)),
            "2m"
        );
        assert_eq!(rung_words(30 * day, 29 * day + 12 * 60 * min), "29d");
        assert_eq!(
            rung_words(30 * day, 29 * day + 23 * 60 * min),
            "30d",
            "within 1%"
        );
        assert_eq!(rung_words(7 * day, 5 * 60 * min), "5h");
        assert_eq!(rung_words(5 * min, SignedDuration::from_secs(30)), "30s");
        assert_eq!(rung_words(min, -min), "0s");

        let cfg = crate::notify::examples::config().unwrap();
        let p = cfg.policy("manual").unwrap();
        let k = crate::notify::examples::legacy_admin();
        let exp = k.current.as_ref().and_then(|c| c.expires_at).unwrap();
        let v = expiry_vars(&cfg, &k, p, None, 5 * min, exp, exp - 2 * min);
        assert_eq!(v.text("rung"), "2m");
        assert_eq!(v.text("expires"), when(Some(exp)));
        let v = expiry_vars(&cfg, &k, p, None, 5 * min, exp, exp - 5 * min);
        assert_eq!(v.text("rung"), "5m");
    }

    #[test]
    fn notice_ids_are_stable_per_slot_key_and_rung() {
        let day = SignedDuration::from_hours(24);
        let a = notice_id("atlassian/ci-bot", "k1", 7 * day);
        assert!(a.starts_with("expiry.7d."), "{a}");
        assert_eq!(a.len(), "expiry.7d.".len() + 16);
        assert_eq!(a, notice_id("atlassian/ci-bot", "k1", 7 * day));
        assert_ne!(a, notice_id("atlassian/ci-bot", "k2", 7 * day));
        assert_ne!(a, notice_id("atlassian/ci-bot", "k1", day));
        assert_ne!(a, notice_id("atlassian/other", "k1", 7 * day));
    }
}
