//! `revoke_when = "unused"` in process, on the local provider (which
//! reports each use at once): a consumer that keeps using the old key
//! holds the revoke until the deadline, where the alert is raised exactly
//! once (mail queued, metric) and the key held (or revoked, with
//! `at_deadline = "revoke"`); one that stops lets the revoke happen one
//! quiet period after its last use, not before. Time is the manual clock
//! and tokio's paused clock.

use jiff::{SignedDuration, Timestamp};

use keyrot_core::model::{LastUse, RotationRecord, RotationState};
use keyrot_core::policy::testutil::dur;
use keyrot_core::policy::{AtDeadline, QuietRule, RevokeWhen};
use keyrot_testkit::quiet::{alerts, in_use_mails, tick};
use keyrot_testkit::{SLOT, World};

/// A world whose policy revokes old keys once unused for 2h, with a
/// deadline 6h after the overlap's end (1h), and its slot's first key.
async fn world(at_deadline: AtDeadline) -> World {
    let w = World::tweaked(move |cfg| {
        for p in &mut cfg.policies {
            p.revoke_when = RevokeWhen::Unused(QuietRule {
                quiet_period: dur("2h"),
                deadline: dur("6h"),
                at_deadline,
            });
        }
    });
    w.rotate().await.unwrap();
    w.finish().await;
    w
}

fn newest(w: &World) -> RotationRecord {
    w.store().rotations(Some(SLOT), 1).unwrap().remove(0)
}

/// A consumer uses key `id` now (what a `verify` with its secret records).
fn use_key(w: &World, id: &str) {
    let now = w.now();
    w.store()
        .write(|tx| {
            let mut k = tx.local_get(id)?.expect("a local key");
            k.last_used_at = Some(now);
            tx.local_put(&k)
        })
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_consumer_that_keeps_using_the_old_key_holds_the_revoke_and_raises_one_alert() {
    let w = world(AtDeadline::Hold).await;
    let rec = w.rotate().await.unwrap();
    w.settle().await;
    let rot = newest(&w);
    assert_eq!(rot.state, RotationState::Overlap);
    let old = rot.old_key_id.clone().unwrap();
    // The overlap's start recorded the old key's last use (its verify).
    assert!(
        matches!(rot.old_last_use, Some(LastUse::At { .. })),
        "{rot:?}"
    );
    let overlap_end = rot.revoke_old_at.unwrap();
    let deadline = overlap_end + dur("6h");
    // Used every 30 minutes: never revoked before the deadline.
    while w.now() < deadline {
        use_key(&w, &old);
        tick(&w, &rec.id, dur("30m")).await;
        let r = newest(&w);
        if w.now() < deadline {
            assert_eq!(r.state, RotationState::Overlap, "at {}", w.now());
            assert!(r.old_revoked_at.is_none());
            assert!(
                r.in_use_alerted_at.is_none(),
                "alerted early at {}",
                w.now()
            );
            assert_eq!(in_use_mails(&w), 0);
        }
    }
    let r = newest(&w);
    assert_eq!(r.state, RotationState::Overlap, "held: {r:?}");
    assert!(r.in_use_alerted_at.is_some());
    assert_eq!(in_use_mails(&w), 1);
    assert_eq!(
        alerts(&w),
        "keyrot_old_keys_in_use_total{provider=\"local\"} 1"
    );
    // Still used: held, checked again, no second alert.
    for _ in 0..6 {
        use_key(&w, &old);
        tick(&w, &rec.id, dur("1h")).await;
        assert_eq!(newest(&w).state, RotationState::Overlap);
    }
    assert_eq!(in_use_mails(&w), 1);
    // One last use, then the consumer stops: revoked once the quiet
    // period has passed.
    use_key(&w, &old);
    let last = w.now();
    tick(&w, &rec.id, dur("1h")).await;
    assert_eq!(newest(&w).state, RotationState::Overlap);
    tick(&w, &rec.id, dur("1h") + SignedDuration::from_secs(1)).await;
    let r = newest(&w);
    assert_eq!(r.state, RotationState::Completed, "{r:?}");
    assert!(r.old_revoked_at.unwrap() >= last + dur("2h"));
    assert_eq!(in_use_mails(&w), 1);
    assert!(w.check().await.is_empty(), "{:#?}", w.check().await);
}

#[tokio::test(start_paused = true)]
async fn at_deadline_revoke_alerts_once_then_revokes() {
    let w = world(AtDeadline::Revoke).await;
    let rec = w.rotate().await.unwrap();
    w.settle().await;
    let old = newest(&w).old_key_id.unwrap();
    let deadline = newest(&w).revoke_old_at.unwrap() + dur("6h");
    while w.now() < deadline {
        use_key(&w, &old);
        tick(&w, &rec.id, dur("30m")).await;
    }
    let r = newest(&w);
    assert_eq!(r.state, RotationState::Completed, "{r:?}");
    assert!(r.in_use_alerted_at.is_some());
    assert_eq!(in_use_mails(&w), 1);
    assert_eq!(
        alerts(&w),
        "keyrot_old_keys_in_use_total{provider=\"local\"} 1"
    );
}

#[tokio::test(start_paused = true)]
async fn a_consumer_that_stops_lets_the_revoke_happen_one_quiet_period_later() {
    let w = world(AtDeadline::Hold).await;
    let rec = w.rotate().await.unwrap();
    w.settle().await;
    let old = newest(&w).old_key_id.unwrap();
    let overlap_end = newest(&w).revoke_old_at.unwrap();
    // Last used 30 minutes into the overlap.
    tick(&w, &rec.id, dur("30m")).await;
    use_key(&w, &old);
    let last: Timestamp = w.now();
    // The overlap's end: not quiet yet, waits until last + 2h.
    tick(&w, &rec.id, overlap_end.duration_since(w.now())).await;
    let r = newest(&w);
    assert_eq!(r.state, RotationState::Overlap);
    assert_eq!(r.retry_at, Some(last + dur("2h")));
    // A second before: still there.
    tick(
        &w,
        &rec.id,
        (last + dur("2h")).duration_since(w.now()) - SignedDuration::from_secs(1),
    )
    .await;
    assert_eq!(newest(&w).state, RotationState::Overlap);
    tick(&w, &rec.id, SignedDuration::from_secs(1)).await;
    let r = newest(&w);
    assert_eq!(r.state, RotationState::Completed, "{r:?}");
    assert_eq!(r.old_revoked_at, Some(last + dur("2h")));
    assert_eq!(in_use_mails(&w), 0);
    assert!(r.in_use_alerted_at.is_none());
    assert!(w.check().await.is_empty(), "{:#?}", w.check().await);
}
