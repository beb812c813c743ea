//! The lifetime of the token a [`super::VaultClient`] holds: when it was
//! granted, when it expires, whether it may be renewed, and so when to
//! renew it or get a new one. This is the one place that reads a clock for
//! tokens: it is the real wall time of a live connection (a token expires
//! on the server whatever keyrot's clock says), so it uses the monotonic
//! [`Instant`]; every decision takes `now` so tests can place it.

use std::time::{Duration, Instant};

/// The current instant, for token bookkeeping only.
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// What to do with the token before the next request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refresh {
    /// Use it as it is.
    Keep,
    /// Less than a third of its TTL remains and it is renewable: renew it.
    Renew,
    /// It expired, or it is running out and cannot be renewed: get a new
    /// one if the auth method can (AppRole logs in again).
    Replace,
}

/// A token's lease as the server granted it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lease {
    /// When it expires; `None` for a token without expiry (TTL 0).
    expires: Option<Instant>,
    /// The TTL it was granted (at login, or its creation TTL): the measure
    /// for "a third remains".
    full: Duration,
    /// The server allows renewing it.
    renewable: bool,
}

impl Lease {
    /// A token granted at `now` for `ttl_secs` (0: no expiry) out of a full
    /// TTL of `full_secs` (0: same as `ttl_secs`).
    pub(crate) fn granted(now: Instant, ttl_secs: u64, full_secs: u64, renewable: bool) -> Lease {
        let ttl = Duration::from_secs(ttl_secs);
        Lease {
            expires: (ttl_secs > 0).then(|| now + ttl),
            full: if full_secs > 0 {
                Duration::from_secs(full_secs)
            } else {
                ttl
            },
            renewable,
        }
    }

    /// Nothing is known about the token (its lookup was refused): it is
    /// used as it is, never renewed.
    pub(crate) fn unknown() -> Lease {
        Lease {
            expires: None,
            full: Duration::ZERO,
            renewable: false,
        }
    }

    /// The same token renewed at `now` for `ttl_secs` more; the full TTL
    /// stays the granted one, so a renewal capped by a maximum TTL shows up
    /// as "still running out".
    pub(crate) fn renewed(&self, now: Instant, ttl_secs: u64, renewable: bool) -> Lease {
        Lease {
            expires: (ttl_secs > 0).then(|| now + Duration::from_secs(ttl_secs)),
            full: self.full.max(Duration::from_secs(ttl_secs)),
            renewable,
        }
    }

    /// The same lease, no longer renewed (the server refused a renewal).
    pub(crate) fn without_renewal(&self) -> Lease {
        Lease {
            renewable: false,
            ..*self
        }
    }

    /// What to do at `now`: keep it while more than a third of its TTL
    /// remains (before two thirds have passed), then renew it if it is
    /// renewable and alive, else replace it.
    pub(crate) fn refresh_at(&self, now: Instant) -> Refresh {
        let Some(expires) = self.expires else {
            return Refresh::Keep;
        };
        let remaining = expires.saturating_duration_since(now);
        if remaining.is_zero() {
            return Refresh::Replace;
        }
        if remaining * 3 >= self.full {
            return Refresh::Keep;
        }
        if self.renewable {
            Refresh::Renew
        } else {
            Refresh::Replace
        }
    }

    /// True once it has expired.
    pub(crate) fn expired_at(&self, now: Instant) -> bool {
        self.expires.is_some_and(|e| now >= e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_when_less_than_a_third_remains() {
        let t0 = Instant::now();
        let lease = Lease::granted(t0, 90, 0, true);
        assert_eq!(lease.refresh_at(t0), Refresh::Keep);
        assert_eq!(
            lease.refresh_at(t0 + Duration::from_secs(59)),
            Refresh::Keep
        );
        assert_eq!(
            lease.refresh_at(t0 + Duration::from_secs(61)),
            Refresh::Renew
        );
        assert_eq!(
            lease.refresh_at(t0 + Duration::from_secs(90)),
            Refresh::Replace
        );
        assert!(lease.expired_at(t0 + Duration::from_secs(90)));
        assert!(!lease.expired_at(t0 + Duration::from_secs(89)));
    }

    #[test]
    fn a_token_that_cannot_be_renewed_is_replaced_when_running_out() {
        let t0 = Instant::now();
        let lease = Lease::granted(t0, 30, 0, false);
        assert_eq!(
            lease.refresh_at(t0 + Duration::from_secs(19)),
            Refresh::Keep
        );
        assert_eq!(
            lease.refresh_at(t0 + Duration::from_secs(21)),
            Refresh::Replace
        );
    }

    #[test]
    fn the_full_ttl_is_the_measure_not_what_remained_at_lookup() {
        // Looked up with 100 s left of a 768 s token: already below a third.
        let t0 = Instant::now();
        let lease = Lease::granted(t0, 100, 768, true);
        assert_eq!(lease.refresh_at(t0), Refresh::Renew);
    }

    #[test]
    fn a_renewal_capped_by_the_max_ttl_still_runs_out() {
        let t0 = Instant::now();
        let lease = Lease::granted(t0, 60, 0, true);
        let t1 = t0 + Duration::from_secs(45);
        assert_eq!(lease.refresh_at(t1), Refresh::Renew);
        // The server granted only 10 s more (max TTL reached).
        let renewed = lease.renewed(t1, 10, true);
        assert_eq!(renewed.refresh_at(t1), Refresh::Renew);
        let full = lease.renewed(t1, 60, true);
        assert_eq!(full.refresh_at(t1), Refresh::Keep);
        // Refused once, it is not renewed again: replaced when running out.
        assert_eq!(renewed.without_renewal().refresh_at(t1), Refresh::Replace);
    }

    #[test]
    fn tokens_without_expiry_and_unknown_ones_are_kept() {
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(10_000_000);
        assert_eq!(
            Lease::granted(t0, 0, 0, false).refresh_at(far),
            Refresh::Keep
        );
        assert_eq!(Lease::unknown().refresh_at(far), Refresh::Keep);
        assert!(!Lease::unknown().expired_at(far));
    }
}
