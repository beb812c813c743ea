//! A crash at every failpoint a rotation meets, in process: the path of a
//! clean rotation is traced (every failpoint it hits, in order, with each
//! name's hit count), then for each hit a fresh world rotates with that
//! hit armed to crash, the engine is dropped and the store reopened, and
//! the rotation is driven to its end. Nothing may be lost: the slot points
//! at the new key, the sink holds its secret, every other key keyrot
//! issued is revoked, no sealed secret is left. The restart after a crash
//! at the provider's issue (whose answer was never recorded) takes its own
//! path (find the key that attempt made, revoke it, issue again): each of
//! its hits is crashed at too. Time is the manual clock and tokio's paused
//! clock; the whole suite runs in well under a second of wall time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use keyrot_core::failpoint;
use keyrot_core::model::RotationState;
use keyrot_testkit::World;
use keyrot_testkit::fake::Shape;

/// Each hit of a trace with its number among the hits of the same name.
fn numbered(trace: Vec<String>) -> Vec<(String, u64)> {
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    trace
        .into_iter()
        .map(|n| {
            let c = seen.entry(n.clone()).or_insert(0);
            *c += 1;
            (n, *c)
        })
        .collect()
}

/// A world whose slot already has a key (its first rotation done), so the
/// next rotation has an old key to overlap with and revoke.
async fn with_a_key() -> World {
    with_a_key_at(None).await
}

/// The same at the local provider, or at a fake provider of `shape`.
async fn with_a_key_at(shape: Option<Shape>) -> World {
    let w = match shape {
        None => World::new(),
        Some(shape) => World::shaped(shape),
    };
    w.rotate().await.unwrap();
    w.finish().await;
    assert!(w.check().await.is_empty());
    w
}

/// Drives the armed rotation until the crash fires (moving the clock
/// past the overlap as `finish` does); false if it ended uncrashed.
async fn until_crash(w: &World) -> bool {
    let _ = w.rotate().await;
    for _ in 0..20 {
        w.settle().await;
        if failpoint::crashed() {
            return true;
        }
        w.enroll_by_hand().await;
        w.settle().await;
        if failpoint::crashed() {
            return true;
        }
        let rots = w
            .store()
            .rotations(Some(keyrot_testkit::SLOT), 100)
            .unwrap();
        let open: Vec<_> = rots.iter().filter(|r| !r.state.is_terminal()).collect();
        if open.is_empty() {
            return false;
        }
        for r in open {
            w.clock
                .advance(keyrot_core::policy::testutil::dur(keyrot_testkit::OVERLAP));
            w.engine().spawn(&r.id);
        }
    }
    failpoint::crashed()
}

/// One scenario: crash at each of `crashes` in turn (the first during the
/// rotation, the next during the restart after it, ...), then finish.
async fn run(crashes: &[(String, u64)]) -> Result<(), String> {
    run_at(None, crashes).await
}

/// The same at the local provider, or at a fake provider of `shape`.
async fn run_at(shape: Option<Shape>, crashes: &[(String, u64)]) -> Result<(), String> {
    let mut w = with_a_key_at(shape).await;
    let (first, rest) = crashes.split_first().unwrap();
    failpoint::arm_in_process(&format!("{}=crash@{}", first.0, first.1));
    if !until_crash(&w).await {
        failpoint::revive();
        return Err(format!("{crashes:?}: the crash was not reached"));
    }
    for (name, nth) in rest {
        w.crash().await;
        failpoint::revive();
        failpoint::arm_in_process(&format!("{name}={}", format_args!("crash@{nth}")));
        w.restart().await;
        if !failpoint::crashed() {
            failpoint::revive();
            return Err(format!(
                "{crashes:?}: the crash at {name} #{nth} was not reached"
            ));
        }
    }
    w.crash().await;
    failpoint::revive();
    w.restart().await;
    w.finish().await;
    let problems = w.check().await;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{crashes:?}: {problems:#?}"))
    }
}

/// The tests of this binary share the process's failpoints: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The tests of this binary.
const TESTS: usize = 6;

/// The failpoints the tests traced, and how many tests have ended.
static COVERED: Mutex<(BTreeSet<String>, usize)> = Mutex::new((BTreeSet::new(), 0));

/// Records the failpoints of a traced path.
fn covered(path: &[(String, u64)]) {
    let mut c = COVERED.lock().unwrap();
    c.0.extend(path.iter().map(|(n, _)| n.clone()));
}

/// One test ended; the last of a whole run checks that together they
/// crashed at every failpoint keyrot has.
fn done() {
    let mut c = COVERED.lock().unwrap();
    c.1 += 1;
    if c.1 == TESTS {
        let missed: Vec<&str> = failpoint::ALL
            .iter()
            .copied()
            .filter(|n| !c.0.contains(*n))
            .collect();
        eprintln!(
            "every_failpoint: {} of the {} failpoints crashed at in process; missed: {missed:?}",
            failpoint::ALL.len() - missed.len(),
            failpoint::ALL.len()
        );
        assert!(missed.is_empty(), "no test crashes at {missed:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_crash_at_every_failpoint_of_a_rotation_loses_nothing() {
    let _one = SERIAL.lock().await;
    failpoint::revive();
    let started = std::time::Instant::now();
    // The path of a clean rotation.
    let w = with_a_key().await;
    failpoint::trace_in_process();
    w.rotate().await.unwrap();
    w.finish().await;
    let path = numbered(failpoint::take_trace());
    covered(&path);
    drop(w);
    let names: BTreeSet<&str> = path.iter().map(|(n, _)| n.as_str()).collect();
    // Every failpoint of the local provider's rotation path is on it.
    for want in [
        "before:commit",
        "after:commit",
        "after:pending",
        "after:issuing",
        "before:issue",
        "after:issue",
        "after:issued",
        "before:sink-put",
        "after:sink-put",
        "after:verifying",
        "before:verify",
        "after:verify",
        "before:sink-read",
        "after:sink-read",
        "before:sink-finish",
        "after:sink-finish",
        "after:overlap",
        "after:revoking",
        "before:revoke",
        "after:revoke",
        "after:completed",
    ] {
        assert!(names.contains(want), "{want} is not on the path: {path:?}");
    }

    let mut failures = Vec::new();
    let mut scenarios = 0;
    for hit in &path {
        scenarios += 1;
        if let Err(e) = run(std::slice::from_ref(hit)).await {
            failures.push(e);
        }
    }

    // The restart after a crash at the issue: trace it, then crash there.
    let w = with_a_key().await;
    failpoint::arm_in_process("after:issue=crash@1");
    assert!(until_crash(&w).await);
    let mut w = w;
    w.crash().await;
    failpoint::revive();
    failpoint::trace_in_process();
    w.restart().await;
    let resume = numbered(failpoint::take_trace());
    covered(&resume);
    w.finish().await;
    assert!(w.check().await.is_empty());
    let resumed: BTreeSet<&str> = resume.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "before:find-tagged",
        "after:find-tagged",
        "before:revoke-orphan",
        "after:revoke-orphan",
    ] {
        assert!(
            resumed.contains(want),
            "{want} is not on the resume path: {resume:?}"
        );
    }
    for hit in &resume {
        scenarios += 1;
        if let Err(e) = run(&[("after:issue".to_string(), 1), hit.clone()]).await {
            failures.push(e);
        }
    }
    eprintln!(
        "every_failpoint: {} hits on the rotation path, {} on the resume after an interrupted issue, {} distinct failpoints; {scenarios} crash scenarios in {:.2} s of wall time; failures: {}",
        path.len(),
        resume.len(),
        names.union(&resumed).count(),
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    done();
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Every sink write refused: the rotation retries, then fails.
const REFUSE: &str = "before:sink-put=error";

/// The world's newest rotation.
fn newest(w: &World) -> keyrot_core::model::RotationRecord {
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
async fn fail(hit: &(String, u64)) -> Result<(), String> {
    let mut w = with_a_key().await;
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
async fn abort(hit: &(String, u64)) -> Result<(), String> {
    let mut w = with_a_key().await;
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

#[tokio::test(start_paused = true)]
async fn a_crash_at_every_failpoint_of_a_failure_and_of_an_abort_loses_nothing() {
    let _one = SERIAL.lock().await;
    failpoint::revive();
    let started = std::time::Instant::now();
    // The path to Failed: the sink refuses every write.
    let w = with_a_key().await;
    failpoint::arm_in_process(REFUSE);
    failpoint::trace_in_process();
    let _ = w.rotate().await;
    assert!(until_failed(&w).await, "{:#?}", newest(&w));
    let failing = numbered(failpoint::take_trace());
    covered(&failing);
    // The abort of that failed rotation.
    failpoint::revive();
    failpoint::trace_in_process();
    let aborted = w.engine().abort(&newest(&w).id).await.unwrap();
    let aborting = numbered(failpoint::take_trace());
    covered(&aborting);
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
        if let Err(e) = fail(hit).await {
            failures.push(e);
        }
    }
    for hit in &aborting {
        if let Err(e) = abort(hit).await {
            failures.push(e);
        }
    }
    eprintln!(
        "every_failpoint: {} hits on the way to Failed, {} in the abort; {} crash scenarios in {:.2} s of wall time; failures: {}",
        failing.len(),
        aborting.len(),
        failing.len() + aborting.len(),
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    done();
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(start_paused = true)]
async fn a_crash_at_every_failpoint_of_a_deactivating_and_of_an_assisted_rotation_loses_nothing() {
    let _one = SERIAL.lock().await;
    failpoint::revive();
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    let mut figures = Vec::new();
    for (shape, wants) in [
        (
            Shape::Deactivating,
            &["before:deactivate", "after:deactivate", "before:revoke"][..],
        ),
        (
            Shape::Assisted,
            &["after:awaiting-secret", "before:verify"][..],
        ),
    ] {
        let w = with_a_key_at(Some(shape)).await;
        failpoint::trace_in_process();
        w.rotate().await.unwrap();
        w.finish().await;
        let path = numbered(failpoint::take_trace());
        covered(&path);
        assert!(w.check().await.is_empty(), "{:#?}", w.check().await);
        let names: BTreeSet<&str> = path.iter().map(|(n, _)| n.as_str()).collect();
        for want in wants {
            assert!(
                names.contains(want),
                "{shape:?}: {want} is not on the path: {path:?}"
            );
        }
        for hit in &path {
            if let Err(e) = run_at(Some(shape), std::slice::from_ref(hit)).await {
                failures.push(format!("{shape:?}: {e}"));
            }
        }
        figures.push(format!("{shape:?} {} hits", path.len()));
    }
    eprintln!(
        "every_failpoint: {}; crashed at each in {:.2} s of wall time; failures: {}",
        figures.join(", "),
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    done();
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A world whose second rotation is in its overlap: both keys live at the
/// provider, the slot already at the new one.
async fn in_overlap() -> World {
    let w = with_a_key().await;
    w.rotate().await.unwrap();
    w.settle().await;
    assert_eq!(newest(&w).state, RotationState::Overlap);
    w
}

/// A crash at `hit` of an inventory sync during an overlap; after the
/// restart the sync runs again and the rotation ends.
async fn sync(hit: &(String, u64)) -> Result<(), String> {
    let mut w = in_overlap().await;
    failpoint::arm_in_process(&format!("{}=crash@{}", hit.0, hit.1));
    let _ = keyrot_engine::scheduler::sync_provider(w.engine(), "local").await;
    if !failpoint::crashed() {
        failpoint::revive();
        return Err(format!("sync {hit:?}: the crash was not reached"));
    }
    w.crash().await;
    failpoint::revive();
    w.restart().await;
    keyrot_engine::scheduler::sync_provider(w.engine(), "local")
        .await
        .map_err(|e| format!("sync {hit:?}: the sync after the restart: {e}"))?;
    w.finish().await;
    let problems = w.check().await;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("sync {hit:?}: {problems:#?}"))
    }
}

#[tokio::test(start_paused = true)]
async fn a_crash_at_every_failpoint_of_an_inventory_sync_during_an_overlap_loses_nothing() {
    let _one = SERIAL.lock().await;
    failpoint::revive();
    let w = in_overlap().await;
    let before = w.store().key(keyrot_testkit::SLOT).unwrap().unwrap();
    failpoint::trace_in_process();
    keyrot_engine::scheduler::sync_provider(w.engine(), "local")
        .await
        .unwrap();
    let path = numbered(failpoint::take_trace());
    covered(&path);
    let after = w.store().key(keyrot_testkit::SLOT).unwrap().unwrap();
    assert_eq!(
        before.current.as_ref().map(|k| &k.id),
        after.current.as_ref().map(|k| &k.id),
        "the sync moved the slot off the new key"
    );
    w.finish().await;
    assert!(w.check().await.is_empty(), "{:#?}", w.check().await);
    let mut failures = Vec::new();
    for hit in &path {
        if let Err(e) = sync(hit).await {
            failures.push(e);
        }
    }
    eprintln!(
        "every_failpoint: {} hits in an inventory sync during an overlap; failures: {}",
        path.len(),
        failures.len()
    );
    done();
    assert!(failures.is_empty(), "{failures:#?}");
}

mod outbox;
