//! Retrying a failed inventory sync: which providers' last sync failed and
//! when each is tried again, with the daemon's backoff (`[daemon.retry]`
//! `initial` doubling up to `max`, jittered, never sooner than the
//! provider's Retry-After). There is no attempt budget: a provider is
//! retried until a sync of it succeeds, as a provider that stays down must
//! not leave its keys unsynced until the next `sync_schedule` tick (which
//! may be a day away). It does not run syncs: the sync loop
//! ([`super::sync_loop`]) sleeps until [`SyncRetries::next`] and is woken
//! through [`SyncRetries::subscribe`] when a failure is recorded.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

use crate::rotation::backoff;
use keyrot_config::RetryConfig;

/// One provider whose last sync failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Failed {
    /// Failed syncs in a row.
    attempts: u32,
    /// When it is tried again.
    at: Timestamp,
}

/// The providers whose last sync failed, shared by every caller of
/// [`super::sync_all`] and the sync loop.
#[derive(Clone, Debug)]
pub struct SyncRetries {
    /// Provider name → its failure, in name order.
    failed: Arc<Mutex<BTreeMap<String, Failed>>>,
    /// Bumped whenever a failure is recorded, so the sync loop re-reads
    /// [`SyncRetries::next`] instead of polling.
    changed: Arc<watch::Sender<u64>>,
}

impl Default for SyncRetries {
    fn default() -> Self {
        SyncRetries {
            failed: Arc::default(),
            changed: Arc::new(watch::channel(0).0),
        }
    }
}

impl SyncRetries {
    /// The map, even if a holder panicked.
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Failed>> {
        self.failed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a failed sync of `provider` at `now`; returns the attempt
    /// count and when it is tried again.
    pub fn failed(
        &self,
        provider: &str,
        retry_after: Option<SignedDuration>,
        cfg: &RetryConfig,
        now: Timestamp,
    ) -> (u32, Timestamp) {
        let out = {
            let mut map = self.lock();
            let attempts = map.get(provider).map_or(0, |f| f.attempts) + 1;
            let at = now
                .saturating_add(backoff::delay(cfg, attempts, retry_after))
                .unwrap_or(Timestamp::MAX);
            map.insert(provider.to_string(), Failed { attempts, at });
            (attempts, at)
        };
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
        out
    }

    /// Records a successful sync of `provider`: no retry is due.
    pub fn succeeded(&self, provider: &str) {
        self.lock().remove(provider);
    }

    /// Forgets providers no longer configured (after a reload).
    pub fn retain(&self, configured: &[String]) {
        self.lock().retain(|name, _| configured.contains(name));
    }

    /// The earliest retry, if any sync has failed.
    pub fn next(&self) -> Option<Timestamp> {
        self.lock().values().map(|f| f.at).min()
    }

    /// The providers whose retry is due at `now`, in name order.
    pub fn due(&self, now: Timestamp) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, f)| f.at <= now)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// A receiver whose `changed()` returns after the next failure is
    /// recorded.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RetryConfig {
        RetryConfig {
            attempts: 1,
            initial: SignedDuration::from_secs(10),
            max: SignedDuration::from_secs(60),
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn backs_off_past_the_rotation_budget_honours_retry_after_and_clears() {
        let r = SyncRetries::default();
        let mut rx = r.subscribe();
        let now = ts("2026-11-23T10:00:00Z");
        assert_eq!(r.next(), None);
        // Jitter keeps each delay within [half, whole] of the doubling.
        let (n, at) = r.failed("a", None, &cfg(), now);
        assert_eq!(n, 1);
        assert!(
            at >= now + SignedDuration::from_secs(5) && at <= now + SignedDuration::from_secs(10)
        );
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        for _ in 0..5 {
            r.failed("a", None, &cfg(), now);
        }
        // Past `attempts` (1), capped at `max`.
        let (n, at) = r.failed("a", None, &cfg(), now);
        assert_eq!(n, 7);
        assert!(
            at >= now + SignedDuration::from_secs(30) && at <= now + SignedDuration::from_secs(60)
        );
        // A longer Retry-After wins.
        let (_, b) = r.failed("b", Some(SignedDuration::from_secs(300)), &cfg(), now);
        assert_eq!(b, now + SignedDuration::from_secs(300));
        assert_eq!(r.next(), Some(at));
        assert_eq!(r.due(at), ["a"]);
        assert_eq!(r.due(b), ["a", "b"]);
        r.succeeded("a");
        assert_eq!(r.next(), Some(b));
        r.retain(&["a".to_string()]);
        assert_eq!(r.next(), None);
    }
}
