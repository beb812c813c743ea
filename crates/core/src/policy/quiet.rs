//! Revoking the old key once it has gone quiet (`revoke_when = "unused"`):
//! the policy's rule and the pure decision the Overlap step takes from the
//! old key's reported last use, the provider's precision and `now`.
//!
//! The rule is harsh where the answer is unclear: an unknown last use is
//! never quiet, a last use in the future (a provider clock ahead of
//! keyrot's) is read as it is (it keeps the key in use longer), and the
//! provider's precision (how stale its report may be) is added to the
//! quiet period, so a lazily updated time never makes a key look quiet
//! early.

use jiff::{SignedDuration, Timestamp};

use crate::model::LastUse;

/// When the old key is revoked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RevokeWhen {
    /// When the overlap ends (`revoke_when = "overlap"`, the default).
    #[default]
    Overlap,
    /// After the overlap, once the old key has not been used for
    /// `quiet_period` (`revoke_when = "unused"`).
    Unused(QuietRule),
}

/// What `revoke_when = "unused"` waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuietRule {
    /// How long the old key must have gone unused.
    pub quiet_period: SignedDuration,
    /// How long after the overlap's end (`revoke_old_at`) keyrot waits for
    /// the key to go quiet before it alerts.
    pub deadline: SignedDuration,
    /// What happens at the deadline if the key is still in use.
    pub at_deadline: AtDeadline,
}

/// What happens at the deadline to an old key still in use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AtDeadline {
    /// Keep it (alert, then check again; revoke once it goes quiet).
    #[default]
    Hold,
    /// Revoke it anyway (after the alert).
    Revoke,
}

impl AtDeadline {
    /// `hold` or `revoke`, as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            AtDeadline::Hold => "hold",
            AtDeadline::Revoke => "revoke",
        }
    }
}

/// What the Overlap step does with the old key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuietDecision {
    /// It is quiet: revoke it (why, in words).
    Revoke(String),
    /// Still (or perhaps) in use, before the deadline: look again at this
    /// time (when it could first be quiet, capped at the deadline).
    WaitUntil(Timestamp),
    /// Still (or perhaps) in use at the deadline: alert (once), then
    /// revoke (`revoke`) or hold and look again at `recheck_at`.
    Deadline {
        /// The policy says revoke anyway.
        revoke: bool,
        /// When to look again while holding.
        recheck_at: Timestamp,
    },
}

/// The earliest time the old key can be quiet given its reported last
/// use: the last use, plus the provider's precision (a use that recent may
/// not show yet), plus the quiet period. `None` when never used (quiet
/// now) or unknown (never quiet by itself).
pub fn quiet_from(
    last: &LastUse,
    precision: SignedDuration,
    quiet: SignedDuration,
) -> Option<Timestamp> {
    let at = last.at()?;
    at.checked_add(precision)
        .and_then(|t| t.checked_add(quiet))
        .ok()
        .or(Some(Timestamp::MAX))
}

/// The decision for the old key of a rotation in Overlap whose
/// `revoke_old_at` (`overlap_end`) is due, at `now`.
pub fn decide_quiet(
    last: &LastUse,
    precision: SignedDuration,
    rule: &QuietRule,
    overlap_end: Timestamp,
    now: Timestamp,
) -> QuietDecision {
    let deadline = overlap_end
        .checked_add(rule.deadline)
        .unwrap_or(Timestamp::MAX);
    let quiet_at = quiet_from(last, precision, rule.quiet_period);
    match last {
        LastUse::Never => return QuietDecision::Revoke("the old key was never used".into()),
        LastUse::At { at } => {
            if let Some(q) = quiet_at
                && q <= now
            {
                return QuietDecision::Revoke(format!(
                    "the old key was last used at {at}, longer ago than the quiet period plus the provider's precision"
                ));
            }
        }
        LastUse::Unknown { .. } => {}
    }
    // Unknown: look again one quiet period later.
    let next =
        quiet_at.unwrap_or_else(|| now.checked_add(rule.quiet_period).unwrap_or(Timestamp::MAX));
    if now >= deadline {
        return QuietDecision::Deadline {
            revoke: rule.at_deadline == AtDeadline::Revoke,
            recheck_at: next.max(now),
        };
    }
    QuietDecision::WaitUntil(next.min(deadline).max(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testutil::{dur, ts};

    fn rule(at_deadline: AtDeadline) -> QuietRule {
        QuietRule {
            quiet_period: dur("1h"),
            deadline: dur("1d"),
            at_deadline,
        }
    }

    fn at(s: &str) -> LastUse {
        LastUse::At { at: ts(s) }
    }

    const END: &str = "2026-11-23T12:00:00Z";

    #[test]
    fn a_key_never_used_is_revoked_at_once() {
        let d = decide_quiet(
            &LastUse::Never,
            dur("4h"),
            &rule(AtDeadline::Hold),
            ts(END),
            ts(END),
        );
        assert!(matches!(d, QuietDecision::Revoke(_)), "{d:?}");
    }

    #[test]
    fn quiet_means_last_use_plus_precision_plus_quiet_period_has_passed() {
        let r = rule(AtDeadline::Hold);
        let last = at("2026-11-23T10:00:00Z");
        // 10:00 + 5m precision + 1h = 11:05 <= 12:00: quiet.
        assert!(matches!(
            decide_quiet(&last, dur("5m"), &r, ts(END), ts(END)),
            QuietDecision::Revoke(_)
        ));
        // With 4h of precision it could have been used until 14:00: wait
        // until 15:00.
        assert_eq!(
            decide_quiet(&last, dur("4h"), &r, ts(END), ts(END)),
            QuietDecision::WaitUntil(ts("2026-11-23T15:00:00Z"))
        );
        // Exactly at the boundary it is quiet.
        assert!(matches!(
            decide_quiet(&last, dur("4h"), &r, ts(END), ts("2026-11-23T15:00:00Z")),
            QuietDecision::Revoke(_)
        ));
        // One second before, it is not.
        assert_eq!(
            decide_quiet(&last, dur("4h"), &r, ts(END), ts("2026-11-23T14:59:59Z")),
            QuietDecision::WaitUntil(ts("2026-11-23T15:00:00Z"))
        );
    }

    #[test]
    fn a_key_in_use_waits_no_later_than_the_deadline() {
        let r = rule(AtDeadline::Hold);
        // Used a minute ago, 23 h after the overlap's end: quiet at most
        // at the deadline (END + 1d).
        let now = ts("2026-11-24T11:30:00Z");
        assert_eq!(
            decide_quiet(&at("2026-11-24T11:29:00Z"), dur("0s"), &r, ts(END), now),
            QuietDecision::WaitUntil(ts("2026-11-24T12:00:00Z"))
        );
    }

    #[test]
    fn at_the_deadline_a_key_in_use_is_held_or_revoked_as_the_policy_says() {
        let now = ts("2026-11-24T12:00:00Z");
        let last = at("2026-11-24T11:59:00Z");
        assert_eq!(
            decide_quiet(&last, dur("0s"), &rule(AtDeadline::Hold), ts(END), now),
            QuietDecision::Deadline {
                revoke: false,
                recheck_at: ts("2026-11-24T12:59:00Z")
            }
        );
        assert_eq!(
            decide_quiet(&last, dur("0s"), &rule(AtDeadline::Revoke), ts(END), now),
            QuietDecision::Deadline {
                revoke: true,
                recheck_at: ts("2026-11-24T12:59:00Z")
            }
        );
        // Quiet wins over the deadline.
        assert!(matches!(
            decide_quiet(
                &at("2026-11-24T10:00:00Z"),
                dur("0s"),
                &rule(AtDeadline::Hold),
                ts(END),
                now
            ),
            QuietDecision::Revoke(_)
        ));
    }

    #[test]
    fn an_unknown_last_use_is_never_quiet() {
        let r = rule(AtDeadline::Hold);
        let unknown = LastUse::Unknown {
            why: "no lastActiveAt".into(),
        };
        assert_eq!(
            decide_quiet(&unknown, dur("0s"), &r, ts(END), ts(END)),
            QuietDecision::WaitUntil(ts("2026-11-23T13:00:00Z"))
        );
        let late = ts("2026-11-25T00:00:00Z");
        assert_eq!(
            decide_quiet(&unknown, dur("0s"), &r, ts(END), late),
            QuietDecision::Deadline {
                revoke: false,
                recheck_at: ts("2026-11-25T01:00:00Z")
            }
        );
    }

    #[test]
    fn a_last_use_in_the_future_keeps_the_key_in_use() {
        let r = rule(AtDeadline::Hold);
        // The provider's clock is 2 h ahead: quiet no earlier than its
        // time plus the quiet period.
        assert_eq!(
            decide_quiet(&at("2026-11-23T14:00:00Z"), dur("0s"), &r, ts(END), ts(END)),
            QuietDecision::WaitUntil(ts("2026-11-23T15:00:00Z"))
        );
        // A time near the end of time waits for the deadline, and holds.
        let far = LastUse::At { at: Timestamp::MAX };
        assert_eq!(
            decide_quiet(&far, dur("4h"), &r, ts(END), ts(END)),
            QuietDecision::WaitUntil(ts("2026-11-24T12:00:00Z"))
        );
    }
}
