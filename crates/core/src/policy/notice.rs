//! The new key's expiry and the expiry-notice ladder (30d, 7d, 1d before
//! expiry): which rungs a key has reached and when the next one is.

use jiff::{SignedDuration, Timestamp};

use super::Policy;
use super::duration::{add_sat, format_duration, format_ts};

/// The new key's expiry: requested (if any, and not after now + policy.new_key_lifetime when a lifetime is set — then error) or now + new_key_lifetime; None when neither.
///
/// A requested expiry at or before `now` is an error too: the key would be
/// born expired.
pub fn new_key_expiry(
    policy: &Policy,
    requested: Option<Timestamp>,
    now: Timestamp,
) -> Result<Option<Timestamp>, String> {
    let limit = policy.new_key_lifetime.map(|l| (l, add_sat(now, l)));
    let Some(req) = requested else {
        return Ok(limit.map(|(_, at)| at));
    };
    if req <= now {
        return Err(format!(
            "requested new key expiry {} is not in the future (now is {})",
            format_ts(req),
            format_ts(now)
        ));
    }
    if let Some((lifetime, max)) = limit
        && req > max
    {
        return Err(format!(
            "requested new key expiry {} is after {} (now + policy {:?} new key lifetime {}); \
             ask for an earlier expiry or raise new_key_lifetime",
            format_ts(req),
            format_ts(max),
            policy.name,
            format_duration(lifetime)
        ));
    }
    Ok(Some(req))
}

/// The rungs of the expiry-notice ladder that have been reached for a key expiring at `expires_at` at `now` (e.g. with `[30d, 7d, 1d]` and 5 days left: [30d, 7d]); returned largest first.
///
/// A rung `r` is reached once `now >= expires_at - r`; an expired key has
/// reached every rung. Duplicate rungs are reported once.
pub fn notices_reached(
    policy: &Policy,
    expires_at: Timestamp,
    now: Timestamp,
) -> Vec<SignedDuration> {
    let mut reached: Vec<SignedDuration> = policy
        .notify_before_expiry
        .iter()
        .copied()
        .filter(|r| now >= add_sat(expires_at, -*r))
        .collect();
    reached.sort_by(|a, b| b.cmp(a));
    reached.dedup();
    reached
}

/// Next instant > now at which a further rung is reached (for the scheduler), or None.
pub fn next_notice_at(policy: &Policy, expires_at: Timestamp, now: Timestamp) -> Option<Timestamp> {
    policy
        .notify_before_expiry
        .iter()
        .map(|r| add_sat(expires_at, -*r))
        .filter(|at| *at > now)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testutil::{dur, policy, ts};

    fn ladder() -> Policy {
        Policy {
            // Deliberately out of order: the result is sorted anyway.
            notify_before_expiry: vec![dur("7d"), dur("30d"), dur("1d")],
            ..policy()
        }
    }

    #[test]
    fn rungs_reached_largest_first() {
        let p = ladder();
        let exp = ts("2026-12-31T00:00Z");
        assert_eq!(
            notices_reached(&p, exp, ts("2026-12-26T00:00Z")),
            vec![dur("30d"), dur("7d")]
        );
        assert!(notices_reached(&p, exp, ts("2026-11-01T00:00Z")).is_empty());
        // Exactly at a rung counts as reached.
        assert_eq!(
            notices_reached(&p, exp, ts("2026-12-01T00:00Z")),
            vec![dur("30d")]
        );
        assert_eq!(
            notices_reached(&p, exp, ts("2027-01-02T00:00Z")),
            vec![dur("30d"), dur("7d"), dur("1d")]
        );
        assert!(notices_reached(&policy(), exp, ts("2027-01-02T00:00Z")).is_empty());
    }

    #[test]
    fn next_rung_instant() {
        let p = ladder();
        let exp = ts("2026-12-31T00:00Z");
        assert_eq!(
            next_notice_at(&p, exp, ts("2026-11-01T00:00Z")),
            Some(ts("2026-12-01T00:00Z"))
        );
        assert_eq!(
            next_notice_at(&p, exp, ts("2026-12-01T00:00Z")),
            Some(ts("2026-12-24T00:00Z"))
        );
        assert_eq!(
            next_notice_at(&p, exp, ts("2026-12-26T00:00Z")),
            Some(ts("2026-12-30T00:00Z"))
        );
        assert_eq!(next_notice_at(&p, exp, ts("2026-12-30T00:00Z")), None);
    }

    #[test]
    fn new_key_expiry_rules() {
        let now = ts("2026-11-23T00:00Z");
        let p = Policy {
            new_key_lifetime: Some(dur("90d")),
            ..policy()
        };
        assert_eq!(
            new_key_expiry(&p, None, now),
            Ok(Some(ts("2027-02-21T00:00Z")))
        );
        assert_eq!(new_key_expiry(&policy(), None, now), Ok(None));
        let req = ts("2027-01-01T00:00Z");
        assert_eq!(new_key_expiry(&p, Some(req), now), Ok(Some(req)));
        assert_eq!(new_key_expiry(&policy(), Some(req), now), Ok(Some(req)));
        // Exactly the lifetime is allowed; one second more is not.
        assert_eq!(
            new_key_expiry(&p, Some(ts("2027-02-21T00:00Z")), now),
            Ok(Some(ts("2027-02-21T00:00Z")))
        );
        let err = new_key_expiry(&p, Some(ts("2027-02-21T00:00:01Z")), now).unwrap_err();
        assert!(err.contains("is after 2027-02-21T00:00Z"), "{err}");
        assert!(err.contains("new key lifetime 90d"), "{err}");
        let err = new_key_expiry(&p, Some(now), now).unwrap_err();
        assert!(err.contains("not in the future"), "{err}");
    }
}
