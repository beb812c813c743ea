//! A crash at every failpoint on the way to a Failed rotation (every sink
//! write refused), and of the operator's abort of one.

use std::collections::BTreeSet;
use std::time::Instant;

use keyrot_core::failpoint;
use keyrot_core::model::RotationState;
use keyrot_testkit::{Backend, World};

use super::{SERIAL, covered, done, numbered, with_a_key};

/// Every sink write refused: the rotation retries, then fails.
const REFUSE: &str = "before:sink-put=error";

/// The world's newest rotation.
pub(crate) fn newest(w: &World) -> keyrot_core::model::RotationRecord {
    w.store()
        .rotations(Some(keyrot_testkit::SLOT), 1)
        .unwrap()
        .remove(0)
}

/// Drives the newest rotation until it fails (true), ends otherwise, or a
/// crash fires (false).
async fn until_failed(w: &World) -> bool {
    for _ in 0..20 {
        w.settle().await;
        if failpoint::crashed() {
            return false;
        }
        let r = newest(w);
        if r.state == RotationState::Failed {
            return true;
        }
        if r.state.is_terminal() {
            return false;
        }
        // Past the retry's backoff.
        w.clock.advance(jiff::SignedDuration::from_secs(1));
        w.engine().spawn(&r.id);
    }
    false
}

/// A crash at `hit` on the way to Failed (every sink write refused), then a
/// restart and the operator's resume once the sink is back.
async fn fail(backend: Backend, hit: &(String, u64)) -> Result<(), String> {
    let mut w = with_a_key(backend).await;
    // The crash first: at `before:sink-put` it takes precedence over the refusal.
    failpoint::arm_in_process(&format!("{}=crash@{},{REFUSE}", hit.0, hit.1));
    let _ = w.rotate().await;
    until_failed(&w).await;
    if !failpoint::crashed() {
        failpoint::revive();
        return Err(format!("failure path {hit:?}: the crash was not reached"));
    }
    w.crash().await;
    failpoint::revive();
    w.restart().await;
    w.finish().await;
    let problems = w.check().await;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("failure path {hit:?}: {problems:#?}"))
    }
}

/// A rotation failed at distribution, then aborted with a crash at `hit`;
/// after the restart the operator aborts again unless it took.
async fn abort(backend: Backend, hit: &(String, u64)) -> Result<(), String> {
    let mut w = with_a_key(backend).await;
    failpoint::arm_in_process(REFUSE);
    let _ = w.rotate().await;
    assert!(until_failed(&w).await);
    let id = newest(&w).id;
    failpoint::arm_in_process(&format!("{}=crash@{}", hit.0, hit.1));
    let _ = w.engine().abort(&id).await;
    w.settle().await;
    if !failpoint::crashed() {
        failpoint::revive();
        return Err(format!("abort {hit:?}: the crash was not reached"));
    }
    w.crash().await;
    failpoint::revive();
    w.restart().await;
    if newest(&w).state != RotationState::Aborted {
        w.engine()
            .abort(&id)
            .await
            .map_err(|e| format!("abort {hit:?}: the second abort: {e}"))?;
    }
    w.settle().await;
    let mut problems = w.check().await;
    if newest(&w).state != RotationState::Aborted {
        problems.push(format!("not aborted: {:?}", newest(&w).state));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("abort {hit:?}: {problems:#?}"))
    }
}

on_both!(
    #[tokio::test(start_paused = true)]
    a_crash_at_every_failpoint_of_a_failure_and_of_an_abort_loses_nothing,
);

async fn a_crash_at_every_failpoint_of_a_failure_and_of_an_abort_loses_nothing(backend: Backend) {
    let _one = SERIAL.lock().await;
    failpoint::revive();
    let started = Instant::now();
    // The path to Failed: the sink refuses every write.
    let w = with_a_key(backend).await;
    failpoint::arm_in_process(REFUSE);
    failpoint::trace_in_process();
    let _ = w.rotate().await;
    assert!(until_failed(&w).await, "{:#?}", newest(&w));
    let failing = numbered(failpoint::take_trace());
    covered(backend, &failing);
    // The abort of that failed rotation.
    failpoint::revive();
    failpoint::trace_in_process();
    let aborted = w.engine().abort(&newest(&w).id).await.unwrap();
    let aborting = numbered(failpoint::take_trace());
    covered(backend, &aborting);
    assert_eq!(aborted.state, RotationState::Aborted);
    assert!(w.check().await.is_empty(), "{:#?}", w.check().await);
    let names: BTreeSet<&str> = failing
        .iter()
        .chain(&aborting)
        .map(|(n, _)| n.as_str())
        .collect();
    for want in [
        "before:sink-put",
        "after:failed",
        "before:revoke-orphan",
        "after:revoke-orphan",
        "after:aborted",
    ] {
        assert!(
            names.contains(want),
            "{want} is on neither path: {failing:?} {aborting:?}"
        );
    }

    let mut failures = Vec::new();
    for hit in &failing {
        if let Err(e) = fail(backend, hit).await {
            failures.push(e);
        }
    }
    for hit in &aborting {
        if let Err(e) = abort(backend, hit).await {
            failures.push(e);
        }
    }
    eprintln!(
        "every_failpoint on {}: {} hits on the way to Failed, {} in the abort; {} crash scenarios in {:.2} s of wall time; failures: {}",
        backend.name(),
        failing.len(),
        aborting.len(),
        failing.len() + aborting.len(),
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    done(backend, failing.len() + aborting.len(), started);
    assert!(failures.is_empty(), "{failures:#?}");
}
