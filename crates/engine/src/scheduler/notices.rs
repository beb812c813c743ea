//! The expiry-notice ladder: for each key keyrot does not replace by
//! itself, one message per rung of its policy's `notify_before_expiry`,
//! queued in a store transaction under an id derived from (slot, key id,
//! rung), so that a notice is queued once even across restarts.
//!
//! Which keys: those whose policy has `auto_rotate = false` (and no
//! rotation running), and those whose rotation Failed (rungs reached after
//! it failed: the failure mail already told people the rest). A rotation
//! that awaits a secret (assisted) gets no separate notice: its reminder,
//! sent at each rung, is that rung's mail. Only the most recent rung
//! reached is sent: rungs passed while keyrot was down are not caught up.
//!
//! The loop sleeps until the next rung of any watched key and is woken
//! when the store changes, never polling. A pass reads every key, so after
//! a wake it lets changes gather for a second, or for 20 times what the
//! last pass took when that is longer (at most a minute): however large
//! the inventory, passes during a burst of commits take at most about 5 %
//! of a core (a pass over 100,000 keys takes about 0.25 s: one every 5 s).

use std::collections::HashSet;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use tokio_util::sync::CancellationToken;

use crate::notify::Composer;
use crate::notify::notice::notice_id;
use crate::rotation::Engine;
use keyrot_config::{Config, NotifyTransport};
use keyrot_core::model::{KeyRecord, RotationRecord, RotationState};
use keyrot_core::policy::{self, Policy};
use keyrot_core::store::{Store, StoreError};
use keyrot_core::wake::Wake;

/// After a change wakes the loop, how long it lets further changes gather
/// before it looks (a burst of commits costs one pass), at least.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

/// The longest it waits after a wake: a notice is about days, not seconds.
const SETTLE_MAX: std::time::Duration = std::time::Duration::from_secs(60);

/// How long to let changes gather after a wake, given what the last pass
/// took: 20 times that, between [`SETTLE`] and [`SETTLE_MAX`].
fn settle_after(last_pass: std::time::Duration) -> std::time::Duration {
    last_pass.saturating_mul(20).clamp(SETTLE, SETTLE_MAX)
}

/// Whether keyrot itself tells people that a key expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watch {
    /// No: keyrot rotates it (or a rotation is under way).
    No,
    /// Yes, every rung: auto_rotate is off.
    Always,
    /// Yes, rungs reached after this instant: its rotation failed then.
    Since(Timestamp),
}

/// How `policy` and the key's active `rotation` (if any) decide [`Watch`].
pub fn watch(policy: &Policy, rotation: Option<&RotationRecord>) -> Watch {
    match rotation {
        Some(r) if r.state == RotationState::Failed => {
            Watch::Since(r.entered(RotationState::Failed).unwrap_or(r.updated_at))
        }
        // AwaitingSecret sends its own reminders at each rung; any other
        // state is a rotation that replaces the key.
        Some(_) => Watch::No,
        None if policy.auto_rotate => Watch::No,
        None => Watch::Always,
    }
}

/// The rung to tell people about now, if any: the most recent rung
/// reached (the smallest), when it was reached after what `watch` allows.
pub fn due_rung(
    policy: &Policy,
    expires_at: Timestamp,
    watch: Watch,
    now: Timestamp,
) -> Option<SignedDuration> {
    let rung = *policy::notices_reached(policy, expires_at, now).last()?;
    match watch {
        Watch::No => None,
        Watch::Always => Some(rung),
        Watch::Since(t) => (expires_at - rung > t).then_some(rung),
    }
}

/// How the ladder sees one key: its active rotation, and, when keyrot
/// itself tells people that this key expires, what decides its notices.
pub(super) struct Standing<'c> {
    /// The key's active rotation, if any.
    pub rotation: Option<RotationRecord>,
    /// `None` when keyrot sends no expiry notice for the key: its policy
    /// is unknown or has no ladder, it has no current key with an expiry,
    /// or it is being (or will be) replaced ([`Watch::No`]).
    pub watched: Option<Watched<'c>>,
}

/// A key keyrot sends expiry notices for.
pub(super) struct Watched<'c> {
    /// Its policy (with a `notify_before_expiry` ladder).
    pub policy: &'c Policy,
    /// Its current key's id at the provider.
    pub key_id: String,
    /// When that key expires.
    pub expires: Timestamp,
    /// Which rungs are told.
    pub watch: Watch,
}

impl Watched<'_> {
    /// The rung to tell people about at `now` and the notice's id (the
    /// same for every pass and across restarts), if any.
    pub fn due(&self, slot: &str, now: Timestamp) -> Option<(SignedDuration, String)> {
        let rung = due_rung(self.policy, self.expires, self.watch, now)?;
        Some((rung, notice_id(slot, &self.key_id, rung)))
    }
}

/// Reads `key`'s active rotation and decides its [`Standing`] under `cfg`.
pub(super) fn standing<'c>(
    store: &Store,
    cfg: &'c Config,
    key: &KeyRecord,
) -> Result<Standing<'c>, StoreError> {
    let rotation = match &key.active_rotation {
        Some(id) => store.rotation(id)?,
        None => None,
    };
    let watched = (|| {
        let policy = cfg.policy(&key.policy)?;
        if policy.notify_before_expiry.is_empty() {
            return None;
        }
        let current = key.current.as_ref()?;
        let w = watch(policy, rotation.as_ref());
        (w != Watch::No).then(|| {
            current.expires_at.map(|expires| Watched {
                policy,
                key_id: current.id.clone(),
                expires,
                watch: w,
            })
        })?
    })();
    Ok(Standing { rotation, watched })
}

/// One notice to queue.
struct Due {
    key: KeyRecord,
    rotation: Option<RotationRecord>,
    rung: SignedDuration,
    id: String,
}

/// What a pass did.
#[derive(Debug, Default)]
struct Pass {
    /// Keys watched.
    watched: usize,
    /// Notices queued.
    queued: usize,
    /// The next rung of any watched key.
    next: Option<Timestamp>,
}

/// Looks at every key, queues the notices that are due and not queued yet
/// and returns when the next rung is. `known` holds the ids already in the
/// outbox, so that a pass with nothing new writes nothing.
fn pass(
    store: &Store,
    cfg: Arc<Config>,
    known: &mut HashSet<String>,
    now: Timestamp,
) -> Result<Pass, StoreError> {
    let mut out = Pass::default();
    let mut due = Vec::new();
    for key in store.keys()? {
        let Standing {
            rotation,
            watched: Some(w),
        } = standing(store, &cfg, &key)?
        else {
            continue;
        };
        out.watched += 1;
        if let Some(at) = policy::next_notice_at(w.policy, w.expires, now) {
            out.next = Some(out.next.map_or(at, |n| n.min(at)));
        }
        if let Some((rung, id)) = w.due(&key.slot, now) {
            due.push(Due {
                key,
                rotation,
                rung,
                id,
            });
        }
    }
    // Forget ids no longer due, so `known` stays as small as `due`.
    let due_ids: HashSet<&str> = due.iter().map(|d| d.id.as_str()).collect();
    known.retain(|id| due_ids.contains(id.as_str()));
    due.retain(|d| !known.contains(&d.id));
    if due.is_empty() {
        return Ok(out);
    }
    let mail = Composer::new(Arc::clone(&cfg));
    let queued = store.write(|tx| {
        let mut queued = Vec::new();
        for d in &due {
            // Queued before: its mail, or (without mail) a webhook's copy.
            if tx.message(&d.id)?.is_some() || mail.webhook_copy_queued(tx, &d.id)? {
                continue;
            }
            // The key as this transaction sees it: still the same key?
            let Some(key) = tx.key(&d.key.slot)? else {
                continue;
            };
            if key.current.as_ref().map(|c| &c.id) != d.key.current.as_ref().map(|c| &c.id) {
                continue;
            }
            let Some(policy) = cfg.policy(&key.policy) else {
                continue;
            };
            for m in mail.expiry_notice(&key, policy, d.rotation.as_ref(), d.rung, now) {
                tx.put_message(&m)?;
                queued.push((key.slot.clone(), policy::format_duration(d.rung), m.id));
            }
        }
        Ok(queued)
    })?;
    for (slot, rung, id) in &queued {
        tracing::info!(key = %slot, rung = %rung, message = %id, "expiry notice queued");
    }
    out.queued = queued.len();
    known.extend(due.into_iter().map(|d| d.id));
    Ok(out)
}

/// Runs the ladder until `stop`.
pub(super) async fn run(engine: Arc<Engine>, wake: Wake, stop: CancellationToken) {
    let mut changed = wake.subscribe();
    let mut known: HashSet<String> = HashSet::new();
    let mut shown: Option<(usize, Option<Timestamp>)> = None;
    loop {
        let now = engine.now();
        let started = std::time::Instant::now();
        let cfg = Arc::clone(&engine.runtime().config);
        let next = if matches!(cfg.notify.transport, NotifyTransport::None) {
            None
        } else {
            let mut k = std::mem::take(&mut known);
            let result = engine
                .db(move |s| pass(s, cfg, &mut k, now).map(|p| (p, k)))
                .await;
            match result {
                Ok((p, k)) => {
                    known = k;
                    if p.queued > 0 {
                        wake.notify();
                    }
                    if shown != Some((p.watched, p.next)) {
                        tracing::info!(keys = p.watched, next = %p.next.map(|t| t.to_string()).unwrap_or_else(|| "none".into()),
                            "expiry-notice ladder: keys watched, next rung");
                        shown = Some((p.watched, p.next));
                    }
                    p.next
                }
                Err(e) => {
                    tracing::error!(error = %e, "expiry notices: store error; retrying in 60s");
                    Some(now + SignedDuration::from_secs(60))
                }
            }
        };
        let settle = settle_after(started.elapsed());
        let sleep = next
            .map(|at| at.duration_since(engine.now()).max(SignedDuration::ZERO))
            .and_then(|d| std::time::Duration::try_from(d).ok());
        tokio::select! {
            _ = async { match sleep { Some(d) => tokio::time::sleep(d).await, None => std::future::pending().await } } => {}
            r = changed.changed() => {
                if r.is_err() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(settle) => {}
                    _ = stop.cancelled() => return,
                }
            }
            _ = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyrot_core::model::{Initiator, Transition, Trigger};
    use keyrot_core::policy::testutil::{dur, policy, ts};

    fn ladder(auto_rotate: bool) -> Policy {
        Policy {
            auto_rotate,
            notify_before_expiry: vec![dur("30d"), dur("7d"), dur("1d")],
            ..policy()
        }
    }

    fn rotation(state: RotationState, at: &str) -> RotationRecord {
        let at = ts(at);
        RotationRecord {
            hook_results: Default::default(),
            hooks: Vec::new(),
            id: "r1".into(),
            slot: "p/k".into(),
            provider: "p".into(),
            policy: "test".into(),
            state,
            trigger: Trigger::Schedule,
            reason: "due".into(),
            initiator: Initiator::default(),
            old_key_id: Some("k1".into()),
            old_expires_at: None,
            requested_new_expiry: None,
            requested_old_expiry: None,
            scopes: vec![],
            new_key: None,
            sinks: vec![],
            sink_results: Default::default(),
            revoke_old_at: None,
            old_revoked_at: None,
            old_lost_at: None,
            revoke_also: Vec::new(),
            throttled: 0,
            attempts: 0,
            retry_at: None,
            last_error: None,
            failed_in: None,
            notify_contacts: false,
            reveal_psk: None,
            created_at: at,
            updated_at: at,
            history: vec![Transition {
                at,
                to: state,
                note: String::new(),
            }],
            old_last_use: None,
            old_last_use_checked_at: None,
            in_use_alerted_at: None,
        }
    }

    #[test]
    fn a_slow_pass_waits_longer_after_a_wake() {
        use std::time::Duration;
        assert_eq!(settle_after(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(
            settle_after(Duration::from_millis(10)),
            Duration::from_secs(1)
        );
        assert_eq!(
            settle_after(Duration::from_millis(250)),
            Duration::from_secs(5)
        );
        assert_eq!(
            settle_after(Duration::from_secs(10)),
            Duration::from_secs(60)
        );
        assert_eq!(settle_after(Duration::MAX), Duration::from_secs(60));
    }

    #[test]
    fn who_is_watched() {
        let failed = rotation(RotationState::Failed, "2026-12-20T00:00Z");
        assert_eq!(watch(&ladder(true), None), Watch::No);
        assert_eq!(watch(&ladder(false), None), Watch::Always);
        assert_eq!(
            watch(&ladder(true), Some(&failed)),
            Watch::Since(ts("2026-12-20T00:00Z"))
        );
        assert_eq!(
            watch(&ladder(false), Some(&failed)),
            Watch::Since(ts("2026-12-20T00:00Z"))
        );
        for s in [RotationState::AwaitingSecret, RotationState::Overlap] {
            assert_eq!(
                watch(&ladder(false), Some(&rotation(s, "2026-12-20T00:00Z"))),
                Watch::No
            );
        }
    }

    #[test]
    fn only_the_most_recent_rung_reached_is_due() {
        let p = ladder(false);
        let exp = ts("2026-12-31T00:00Z");
        assert_eq!(
            due_rung(&p, exp, Watch::Always, ts("2026-11-01T00:00Z")),
            None
        );
        assert_eq!(
            due_rung(&p, exp, Watch::Always, ts("2026-12-01T00:00Z")),
            Some(dur("30d"))
        );
        // keyrot was down across the 7d rung and started after the 1d one.
        assert_eq!(
            due_rung(&p, exp, Watch::Always, ts("2026-12-30T12:00Z")),
            Some(dur("1d"))
        );
        // Expired: still the last rung (queued once, by its id).
        assert_eq!(
            due_rung(&p, exp, Watch::Always, ts("2027-02-01T00:00Z")),
            Some(dur("1d"))
        );
        assert_eq!(due_rung(&p, exp, Watch::No, ts("2026-12-30T12:00Z")), None);
    }

    #[test]
    fn a_failed_rotation_gets_only_rungs_reached_after_it_failed() {
        let p = ladder(true);
        let exp = ts("2026-12-31T00:00Z");
        let since = Watch::Since(ts("2026-12-26T00:00Z"));
        // The 7d rung (12-24) came before the failure, whose mail said it all.
        assert_eq!(due_rung(&p, exp, since, ts("2026-12-26T00:00:01Z")), None);
        assert_eq!(
            due_rung(&p, exp, since, ts("2026-12-30T00:00Z")),
            Some(dur("1d"))
        );
    }
}
