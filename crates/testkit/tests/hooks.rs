//! Reload hooks in process: they run once the new secret is in every sink
//! and verified, before the overlap counts; each is recorded and never
//! run twice for a rotation; rotations that reach a hook together share
//! one run; a hook that keeps failing holds the rotation with both keys
//! valid. Time is the manual clock and tokio's paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keyrot_core::model::{KeyRecord, RotationState};
use keyrot_core::policy::testutil::dur;
use keyrot_testkit::{Backend, SLOT, World, manual};

/// The slot's first key, then a rotation that replaces it.
async fn rotated_twice(w: &World) -> Vec<keyrot_core::model::RotationRecord> {
    w.rotate().await.unwrap();
    w.finish().await;
    w.rotate().await.unwrap();
    w.finish().await
}

#[tokio::test(start_paused = true)]
async fn hooks_run_once_per_rotation_after_the_sinks_hold_the_new_key_and_before_the_overlap() {
    for backend in Backend::ALL {
        let w = World::hooked_on(backend);
        let rots = rotated_twice(&w).await;
        assert!(w.check().await.is_empty(), "{:?}", w.check().await);
        let runs = w.hook().runs();
        assert_eq!(runs.len(), 2, "{runs:#?}");
        for r in &rots {
            assert_eq!(r.state, RotationState::Completed);
            let run = runs.iter().find(|x| x.rotation == r.id).unwrap();
            // A consumer told to reload read the new key, not the old.
            assert_eq!(
                run.sink_key.as_deref(),
                Some(r.new_key.as_ref().unwrap().id.as_str())
            );
            assert_eq!(run.run_id, format!("{}:reload", r.id));
            assert_eq!(r.hooks, ["reload"]);
            assert!(r.hook_results["reload"].note.contains("recorded"));
            let states: Vec<RotationState> = r.history.iter().map(|t| t.to).collect();
            let at = |s| states.iter().position(|x| *x == s);
            assert!(at(RotationState::Verifying) < at(RotationState::Reloading));
            // The hook ran before the overlap began: the overlap counts
            // from when consumers were told.
            if r.old_key_id.is_some() {
                assert!(
                    at(RotationState::Reloading) < at(RotationState::Overlap),
                    "{states:?}"
                );
                let told = r.hook_results["reload"].done_at;
                assert_eq!(
                    r.revoke_old_at,
                    Some(r.entered(RotationState::Overlap).unwrap() + dur("1h"))
                );
                assert!(r.entered(RotationState::Overlap).unwrap() >= told);
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn keys_that_reach_a_hook_together_share_one_run() {
    let w = World::hooked_on(Backend::Redb);
    let mut second: KeyRecord = w.store().key(SLOT).unwrap().unwrap();
    second.slot = "local/ci2".into();
    second.name = "ci2".into();
    w.store().write(|tx| tx.put_key(&second)).unwrap();
    let a = w.engine().start(SLOT, manual()).await.unwrap();
    let b = w.engine().start("local/ci2", manual()).await.unwrap();
    w.settle().await;
    // Both wait out the debounce in Reloading, neither has run the hook.
    for id in [&a.id, &b.id] {
        let r = w.store().rotation(id).unwrap().unwrap();
        assert_eq!(r.state, RotationState::Reloading, "{r:#?}");
        assert!(r.retry_at.is_some());
    }
    assert!(w.hook().runs().is_empty());
    w.clock.advance(dur("1s"));
    w.engine().spawn(&a.id);
    w.engine().spawn(&b.id);
    w.settle().await;
    let runs = w.hook().runs();
    assert_eq!(runs.len(), 1, "one run for the batch: {runs:#?}");
    let ra = w.store().rotation(&a.id).unwrap().unwrap();
    let rb = w.store().rotation(&b.id).unwrap().unwrap();
    assert_eq!(ra.state, RotationState::Completed, "{ra:#?}");
    assert_eq!(rb.state, RotationState::Completed, "{rb:#?}");
    let (ran, covered) = if runs[0].rotation == a.id {
        (&ra, &rb)
    } else {
        (&rb, &ra)
    };
    assert!(ran.hook_results["reload"].note.contains("recorded"));
    assert!(
        covered.hook_results["reload"]
            .note
            .contains(&format!("covered by its run for rotation {}", ran.id)),
        "{:?}",
        covered.hook_results
    );
}

#[tokio::test(start_paused = true)]
async fn a_hook_that_keeps_failing_holds_both_keys_until_it_is_resumed() {
    for backend in Backend::ALL {
        let w = World::hooked_on(backend);
        w.rotate().await.unwrap();
        w.finish().await;
        let old = w.store().key(SLOT).unwrap().unwrap().current.unwrap().id;
        w.hook().fail(true);
        let rot = w.rotate().await.unwrap();
        // Past the debounce and every backoff: the retry budget runs out.
        for _ in 0..5 {
            w.settle().await;
            w.clock.advance(dur("1h"));
            w.engine().spawn(&rot.id);
        }
        w.settle().await;
        let r = w.store().rotation(&rot.id).unwrap().unwrap();
        assert_eq!(r.state, RotationState::Failed, "{r:#?}");
        assert_eq!(r.failed_in, Some(RotationState::Reloading));
        assert!(
            r.last_error
                .as_deref()
                .unwrap()
                .contains("the consumer is down")
        );
        assert!(r.old_revoked_at.is_none() && r.revoke_old_at.is_none());
        // The old key lives, the new one too; the failure was mailed.
        let live: Vec<_> = w
            .store()
            .local_keys()
            .unwrap()
            .into_iter()
            .filter(|k| k.revoked_at.is_none())
            .map(|k| k.id)
            .collect();
        assert!(
            live.contains(&old) && live.contains(&r.new_key.as_ref().unwrap().id),
            "{live:?}"
        );
        let mails = w.store().outbox().unwrap();
        assert!(
            mails.iter().any(
                |m| m.kind == keyrot_core::model::MessageKind::RotationFailed
                    && m.body.contains(rot.id.as_str())
            ),
            "{mails:#?}"
        );
        // The operator fixes the consumer and resumes: the hook runs, the
        // rotation completes.
        w.hook().fail(false);
        w.finish().await;
        assert!(w.check().await.is_empty());
        assert_eq!(
            w.hook()
                .runs()
                .iter()
                .filter(|x| x.rotation == rot.id)
                .count(),
            1
        );
    }
}
