//! Rotation policy as pure functions: when a key is due, when the next
//! window opens, where inside a window a key starts (jitter), the emergency
//! rule, group stagger and the expiry-notice ladder.
//!
//! Nothing here reads the clock or the store: every function takes `now`.
//! Submodules: `cron` (cron parsing and matching: a window's 5 fields,
//! and [`Schedule`]'s 6 or 7 read in UTC), `window`
//! ([`Window`]: cron + duration + IANA zone, DST-correct starts),
//! `duration` (human durations), `decide` ([`decide`]: the full start
//! decision for one slot), `notice` (new-key expiry and the notice ladder),
//! `quiet` ([`decide_quiet`]: revoking the old key once it went unused).

mod cron;
mod decide;
mod duration;
mod notice;
mod quiet;
mod window;

use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

pub use cron::Schedule;
pub use decide::{Decision, decide};
pub use duration::{format_duration, parse_duration};
pub use notice::{new_key_expiry, next_notice_at, notices_reached};
pub use quiet::{AtDeadline, QuietDecision, QuietRule, RevokeWhen, decide_quiet, quiet_from};
pub use window::Window;

/// A validated policy.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Config name.
    pub name: String,
    /// Rotate this long before the key expires.
    pub rotate_before_expiry: Option<SignedDuration>,
    /// Rotate once the key is this old.
    pub max_age: Option<SignedDuration>,
    /// Lifetime of a new key (None: the provider's default).
    pub new_key_lifetime: Option<SignedDuration>,
    /// How long the old key stays valid after the new one is verified.
    pub overlap: SignedDuration,
    /// When rotations may start; empty means any time.
    pub windows: Vec<Window>,
    /// Spread starts inside a window, deterministically per key and window.
    pub jitter: bool,
    /// Expiry-notice ladder, e.g. 30d, 7d, 1d (largest first).
    pub notify_before_expiry: Vec<SignedDuration>,
    /// Minimum gap between rotation starts of two keys of one group.
    pub stagger: Option<SignedDuration>,
    /// False: keyrot never starts a rotation by itself (notices only).
    pub auto_rotate: bool,
    /// Addresses told about every rotation under this policy.
    pub notify: Vec<String>,
    /// Security contacts, told when a request says `notifyContacts`.
    pub security_contacts: Vec<String>,
    /// A key must end up with these scopes (unscoped keys become scoped).
    pub scopes: Vec<String>,
    /// Refuse to issue an unscoped key.
    pub require_scopes: bool,
    /// The reason scheduled rotations give the provider (`rotateReason`).
    pub reason: Option<String>,
    /// An enrolled key whose scopes differ from `scopes` is refused (true,
    /// the default) or accepted and flagged (false).
    pub refuse_scope_mismatch: bool,
    /// When the old key is revoked: at the overlap's end, or once unused.
    pub revoke_when: RevokeWhen,
    /// `keep_current_secret`: a completed rotation keeps its sealed secret
    /// as the slot's current secret (for `keyrot sink push`) until the
    /// slot's next rotation completes. Off by default: then only
    /// rotations in flight hold secrets.
    pub keep_current_secret: bool,
}

/// What a key's times are, as the policy sees them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyTimes {
    /// When the key was created, if the provider says.
    pub created_at: Option<Timestamp>,
    /// When the key expires, if it does.
    pub expires_at: Option<Timestamp>,
}

/// Why a key is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DueReason {
    /// `rotate_before_expiry` before the key's expiry.
    LeadTime,
    /// The key reached the policy's `max_age`.
    MaxAge,
    /// Neither rule set: 2/3 of the key's lifetime passed (ACME convention).
    TwoThirdsLifetime,
    /// The slot has no key yet.
    NoKey,
}

impl DueReason {
    /// Short text for logs: "lead time", "max age", "2/3 of lifetime", "no key yet".
    pub fn as_str(self) -> &'static str {
        match self {
            DueReason::LeadTime => "lead time",
            DueReason::MaxAge => "max age",
            DueReason::TwoThirdsLifetime => "2/3 of lifetime",
            DueReason::NoKey => "no key yet",
        }
    }
}

impl std::fmt::Display for DueReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a key is due by policy alone (before windows): the earliest of
/// expires_at - rotate_before_expiry, created_at + max_age; with neither
/// set, created_at + 2/3 of (expires_at - created_at) (ACME convention).
/// A slot with no key (None) is due at once (NoKey, due = now).
/// None: nothing makes it due (no expiry, no max_age).
///
/// On a tie, lead time wins over max age.
pub fn due_at(
    policy: &Policy,
    key: Option<KeyTimes>,
    now: Timestamp,
) -> Option<(Timestamp, DueReason)> {
    let Some(key) = key else {
        return Some((now, DueReason::NoKey));
    };
    let lead = policy
        .rotate_before_expiry
        .zip(key.expires_at)
        .map(|(lead, exp)| (duration::add_sat(exp, -lead), DueReason::LeadTime));
    let age = policy
        .max_age
        .zip(key.created_at)
        .map(|(max, created)| (duration::add_sat(created, max), DueReason::MaxAge));
    let by_rule = match (lead, age) {
        (Some(l), Some(a)) => Some(if a.0 < l.0 { a } else { l }),
        (l, a) => l.or(a),
    };
    if policy.rotate_before_expiry.is_some() || policy.max_age.is_some() {
        return by_rule;
    }
    let (created, expires) = key.created_at.zip(key.expires_at)?;
    let lifetime = expires.duration_since(created);
    let two_thirds = SignedDuration::from_nanos_i128(lifetime.as_nanos() / 3 * 2);
    Some((
        duration::add_sat(created, two_thirds),
        DueReason::TwoThirdsLifetime,
    ))
}

/// Where in a window a key starts: a deterministic offset in [0, duration/2)
/// from a hash (SHA-256) of the slot id and the window's start instant, so a
/// restart never reshuffles. Whole seconds; zero for windows under 2s.
pub fn jitter_offset(
    slot: &str,
    window_start: Timestamp,
    window: SignedDuration,
) -> SignedDuration {
    let half = window.as_nanos() / 2;
    if half <= 0 {
        return SignedDuration::ZERO;
    }
    let mut hasher = Sha256::new();
    hasher.update(slot.as_bytes());
    // A separator, so ("a", t) and ("a\0...", t') never feed the same bytes.
    hasher.update([0u8]);
    hasher.update(window_start.as_second().to_le_bytes());
    hasher.update(window_start.subsec_nanosecond().to_le_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let nanos = i128::from(u64::from_le_bytes(first)) % half;
    SignedDuration::from_nanos_i128(nanos - nanos % 1_000_000_000)
}

#[cfg(any(test, feature = "testkit"))]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub mod testutil {
    //! Builders shared by the policy tests.
    use super::*;

    /// Parses an RFC 3339 instant.
    pub fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// Parses a human duration.
    pub fn dur(s: &str) -> SignedDuration {
        parse_duration(s).unwrap()
    }

    /// A policy with nothing set except auto-rotation.
    pub fn policy() -> Policy {
        Policy {
            name: "test".into(),
            rotate_before_expiry: None,
            max_age: None,
            new_key_lifetime: None,
            overlap: SignedDuration::ZERO,
            windows: Vec::new(),
            jitter: false,
            notify_before_expiry: Vec::new(),
            stagger: None,
            auto_rotate: true,
            notify: Vec::new(),
            security_contacts: Vec::new(),
            scopes: Vec::new(),
            require_scopes: false,
            reason: None,
            refuse_scope_mismatch: true,
            revoke_when: RevokeWhen::Overlap,
            keep_current_secret: false,
        }
    }

    /// Key times from optional RFC 3339 strings.
    pub fn key(created: Option<&str>, expires: Option<&str>) -> Option<KeyTimes> {
        Some(KeyTimes {
            created_at: created.map(ts),
            expires_at: expires.map(ts),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn due_by_lead_time() {
        let p = Policy {
            rotate_before_expiry: Some(dur("30d")),
            ..policy()
        };
        let k = key(Some("2026-01-01T00:00Z"), Some("2026-12-20T02:00Z"));
        let now = ts("2026-06-01T00:00Z");
        assert_eq!(
            due_at(&p, k, now),
            Some((ts("2026-11-20T02:00Z"), DueReason::LeadTime))
        );
    }

    #[test]
    fn due_by_max_age_when_earlier() {
        let p = Policy {
            rotate_before_expiry: Some(dur("30d")),
            max_age: Some(dur("90d")),
            ..policy()
        };
        let k = key(Some("2026-01-01T00:00Z"), Some("2026-12-20T00:00Z"));
        let now = ts("2026-02-01T00:00Z");
        assert_eq!(
            due_at(&p, k, now),
            Some((ts("2026-04-01T00:00Z"), DueReason::MaxAge))
        );
        // No expiry: max age alone.
        let k = key(Some("2026-01-01T00:00Z"), None);
        assert_eq!(
            due_at(&p, k, now),
            Some((ts("2026-04-01T00:00Z"), DueReason::MaxAge))
        );
        // Lead time earlier than max age wins.
        let k = key(Some("2026-01-01T00:00Z"), Some("2026-03-01T00:00Z"));
        assert_eq!(
            due_at(&p, k, now),
            Some((ts("2026-01-30T00:00Z"), DueReason::LeadTime))
        );
    }

    #[test]
    fn due_at_two_thirds_of_lifetime_without_rules() {
        let p = policy();
        let k = key(Some("2026-01-01T00:00Z"), Some("2026-04-01T00:00Z")); // 90 days
        let now = ts("2026-01-02T00:00Z");
        assert_eq!(
            due_at(&p, k, now),
            Some((ts("2026-03-02T00:00Z"), DueReason::TwoThirdsLifetime))
        );
        // Without a creation time there is no lifetime to take 2/3 of.
        assert_eq!(due_at(&p, key(None, Some("2026-04-01T00:00Z")), now), None);
    }

    #[test]
    fn no_key_is_due_now_and_nothing_means_never() {
        let now = ts("2026-11-23T12:00Z");
        let p = Policy {
            rotate_before_expiry: Some(dur("30d")),
            ..policy()
        };
        assert_eq!(due_at(&p, None, now), Some((now, DueReason::NoKey)));
        // Lead time set but the key never expires; no max age: never due.
        assert_eq!(due_at(&p, key(Some("2026-01-01T00:00Z"), None), now), None);
        assert_eq!(due_at(&policy(), key(None, None), now), None);
        assert_eq!(DueReason::TwoThirdsLifetime.as_str(), "2/3 of lifetime");
        assert_eq!(DueReason::NoKey.to_string(), "no key yet");
    }

    #[test]
    fn jitter_is_deterministic_bounded_and_spread() {
        let start = ts("2026-11-21T02:00Z");
        let four_h = dur("4h");
        let a = jitter_offset("prod/openai", start, four_h);
        assert_eq!(a, jitter_offset("prod/openai", start, four_h));
        let offsets: Vec<_> = (0..200)
            .map(|i| jitter_offset(&format!("slot-{i}"), start, four_h))
            .collect();
        for o in &offsets {
            assert!(!o.is_negative() && *o < dur("2h"), "{o:?}");
            assert_eq!(o.subsec_nanos(), 0);
        }
        let mut distinct = offsets.clone();
        distinct.sort();
        distinct.dedup();
        assert!(
            distinct.len() > 190,
            "only {} distinct offsets",
            distinct.len()
        );
        // Both halves of the range are used.
        assert!(offsets.iter().any(|o| *o < dur("1h")) && offsets.iter().any(|o| *o >= dur("1h")));
        // A different window start gives a different offset (for this slot).
        assert_ne!(
            a,
            jitter_offset("prod/openai", ts("2026-11-22T02:00Z"), four_h)
        );
        assert_eq!(
            jitter_offset("x", start, SignedDuration::ZERO),
            SignedDuration::ZERO
        );
        assert_eq!(jitter_offset("x", start, dur("1s")), SignedDuration::ZERO);
    }
}
