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
//! clock.
//!
//! Every test runs on both store backends, as `TEST::redb` and
//! `TEST::postgres` (a fresh database of the test process's PostgreSQL
//! server per world; the crash drops the store and the restart takes the
//! leader lease again under a new epoch), and each backend on its own must
//! crash at every failpoint keyrot has: 270 crash scenarios on each, in
//! about 18 s of wall time on redb and 53 s on PostgreSQL (a database
//! made per world, every commit a durable commit of a real server) on two
//! cores.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Instant;

use keyrot_core::failpoint;
use keyrot_core::model::RotationState;
use keyrot_testkit::fake::Shape;
use keyrot_testkit::{Backend, World};

/// Generates, for each named `async fn NAME(Backend)`, the tests
/// `NAME::redb` and `NAME::postgres` with the attribute given (a
/// `tokio::test` flavour).
macro_rules! on_both {
    (#[$attr:meta] $($name:ident),* $(,)?) => {
        $(
            mod $name {
                use keyrot_testkit::Backend;

                #[$attr]
                async fn redb() {
                    super::$name(Backend::Redb).await;
                }

                #[$attr]
                async fn postgres() {
                    super::$name(Backend::Postgres).await;
                }
            }
        )*
    };
}

mod failure;
mod outbox;
mod paths;

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

/// What a scenario's world is.
#[derive(Clone, Copy, Debug)]
enum Setup {
    /// The local provider, no hook.
    Plain,
    /// A fake provider of this shape.
    Shaped(Shape),
    /// The local provider and a reload hook on the sink.
    Hooked,
    /// The local provider under `revoke_when = "unused"` (quiet period
    /// [`QUIET`], deadline 6h), its old key used as the rotation starts.
    Quiet,
}

/// The quiet period of [`Setup::Quiet`].
const QUIET: &str = "2h";

/// A world on `backend` whose slot already has a key (its first rotation
/// done), so the next rotation has an old key to overlap with and revoke.
async fn with_a_key(backend: Backend) -> World {
    with_a_key_at(backend, Setup::Plain).await
}

/// The same as `setup` says.
async fn with_a_key_at(backend: Backend, setup: Setup) -> World {
    let w = match setup {
        Setup::Plain => World::on(backend),
        Setup::Shaped(shape) => World::shaped_on(backend, shape),
        Setup::Hooked => World::hooked_on(backend),
        Setup::Quiet => World::tweaked_on(backend, |cfg| {
            for p in &mut cfg.policies {
                p.revoke_when =
                    keyrot_core::policy::RevokeWhen::Unused(keyrot_core::policy::QuietRule {
                        quiet_period: keyrot_core::policy::testutil::dur(QUIET),
                        deadline: keyrot_core::policy::testutil::dur("6h"),
                        at_deadline: keyrot_core::policy::AtDeadline::Hold,
                    });
            }
        }),
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
async fn run(backend: Backend, crashes: &[(String, u64)]) -> Result<(), String> {
    run_at(backend, Setup::Plain, crashes).await
}

/// The same as `setup` says.
async fn run_at(backend: Backend, setup: Setup, crashes: &[(String, u64)]) -> Result<(), String> {
    let mut w = with_a_key_at(backend, setup).await;
    let used = matches!(setup, Setup::Quiet).then(|| paths::use_current_key(&w));
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
    let mut problems = w.check().await;
    if let Setup::Hooked = setup {
        problems.extend(paths::hook_problems(&w, crashes));
    }
    if let Some(used) = used {
        problems.extend(paths::quiet_problems(&w, used));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{crashes:?}: {problems:#?}"))
    }
}

/// The tests of this binary share the process's failpoints: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The tests of this binary on each backend.
const TESTS: usize = 8;

/// What the tests of one backend did so far.
#[derive(Default)]
struct Covered {
    /// The failpoints they traced.
    names: BTreeSet<String>,
    /// Tests ended.
    tests: usize,
    /// Crash scenarios run.
    scenarios: usize,
    /// Their wall time, in seconds.
    secs: f64,
}

/// Per backend.
static COVERED: Mutex<BTreeMap<Backend, Covered>> = Mutex::new(BTreeMap::new());

/// Records the failpoints of a path traced on `backend`.
fn covered(backend: Backend, path: &[(String, u64)]) {
    let mut c = COVERED.lock().unwrap();
    let c = c.entry(backend).or_default();
    c.names.extend(path.iter().map(|(n, _)| n.clone()));
}

/// A test on `backend` ended, after `scenarios` crash scenarios since
/// `started`; the last of a whole run on that backend checks that together
/// they crashed at every failpoint keyrot has.
fn done(backend: Backend, scenarios: usize, started: Instant) {
    let mut all = COVERED.lock().unwrap();
    let c = all.entry(backend).or_default();
    c.tests += 1;
    c.scenarios += scenarios;
    c.secs += started.elapsed().as_secs_f64();
    if c.tests == TESTS {
        let missed: Vec<&str> = failpoint::ALL
            .iter()
            .copied()
            .filter(|n| !c.names.contains(*n))
            .collect();
        eprintln!(
            "every_failpoint on {}: {} crash scenarios in {TESTS} tests, {:.1} s of wall time; {} of the {} failpoints crashed at in process; missed: {missed:?}",
            backend.name(),
            c.scenarios,
            c.secs,
            failpoint::ALL.len() - missed.len(),
            failpoint::ALL.len()
        );
        assert!(
            missed.is_empty(),
            "no test on {} crashes at {missed:?}",
            backend.name()
        );
    }
}

on_both!(
    #[tokio::test(start_paused = true)]
    a_crash_at_every_failpoint_of_a_rotation_loses_nothing,
    a_crash_at_every_failpoint_of_a_deactivating_and_of_an_assisted_rotation_loses_nothing,
    a_crash_at_every_failpoint_of_an_inventory_sync_during_an_overlap_loses_nothing,
);

async fn a_crash_at_every_failpoint_of_a_rotation_loses_nothing(backend: Backend) {
    let _one = SERIAL.lock().await;
    failpoint::revive();
    let started = Instant::now();
    // The path of a clean rotation.
    let w = with_a_key(backend).await;
    failpoint::trace_in_process();
    w.rotate().await.unwrap();
    w.finish().await;
    let path = numbered(failpoint::take_trace());
    covered(backend, &path);
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
        if let Err(e) = run(backend, std::slice::from_ref(hit)).await {
            failures.push(e);
        }
    }

    // The restart after a crash at the issue: trace it, then crash there.
    let w = with_a_key(backend).await;
    failpoint::arm_in_process("after:issue=crash@1");
    assert!(until_crash(&w).await);
    let mut w = w;
    w.crash().await;
    failpoint::revive();
    failpoint::trace_in_process();
    w.restart().await;
    let resume = numbered(failpoint::take_trace());
    covered(backend, &resume);
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
        if let Err(e) = run(backend, &[("after:issue".to_string(), 1), hit.clone()]).await {
            failures.push(e);
        }
    }
    eprintln!(
        "every_failpoint on {}: {} hits on the rotation path, {} on the resume after an interrupted issue, {} distinct failpoints; {scenarios} crash scenarios in {:.2} s of wall time; failures: {}",
        backend.name(),
        path.len(),
        resume.len(),
        names.union(&resumed).count(),
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    done(backend, scenarios, started);
    assert!(failures.is_empty(), "{failures:#?}");
}

async fn a_crash_at_every_failpoint_of_a_deactivating_and_of_an_assisted_rotation_loses_nothing(
    backend: Backend,
) {
    let _one = SERIAL.lock().await;
    failpoint::revive();
    let started = Instant::now();
    let mut scenarios = 0;
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
        let w = with_a_key_at(backend, Setup::Shaped(shape)).await;
        failpoint::trace_in_process();
        w.rotate().await.unwrap();
        w.finish().await;
        let path = numbered(failpoint::take_trace());
        covered(backend, &path);
        assert!(w.check().await.is_empty(), "{:#?}", w.check().await);
        let names: BTreeSet<&str> = path.iter().map(|(n, _)| n.as_str()).collect();
        for want in wants {
            assert!(
                names.contains(want),
                "{shape:?}: {want} is not on the path: {path:?}"
            );
        }
        for hit in &path {
            scenarios += 1;
            if let Err(e) = run_at(backend, Setup::Shaped(shape), std::slice::from_ref(hit)).await {
                failures.push(format!("{shape:?}: {e}"));
            }
        }
        figures.push(format!("{shape:?} {} hits", path.len()));
    }
    eprintln!(
        "every_failpoint on {}: {}; crashed at each in {:.2} s of wall time; failures: {}",
        backend.name(),
        figures.join(", "),
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    done(backend, scenarios, started);
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A world whose second rotation is in its overlap: both keys live at the
/// provider, the slot already at the new one.
async fn in_overlap(backend: Backend) -> World {
    let w = with_a_key(backend).await;
    w.rotate().await.unwrap();
    w.settle().await;
    assert_eq!(failure::newest(&w).state, RotationState::Overlap);
    w
}

/// A crash at `hit` of an inventory sync during an overlap; after the
/// restart the sync runs again and the rotation ends.
async fn sync(backend: Backend, hit: &(String, u64)) -> Result<(), String> {
    let mut w = in_overlap(backend).await;
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

async fn a_crash_at_every_failpoint_of_an_inventory_sync_during_an_overlap_loses_nothing(
    backend: Backend,
) {
    let _one = SERIAL.lock().await;
    failpoint::revive();
    let started = Instant::now();
    let w = in_overlap(backend).await;
    let before = w.store().key(keyrot_testkit::SLOT).unwrap().unwrap();
    failpoint::trace_in_process();
    keyrot_engine::scheduler::sync_provider(w.engine(), "local")
        .await
        .unwrap();
    let path = numbered(failpoint::take_trace());
    covered(backend, &path);
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
        if let Err(e) = sync(backend, hit).await {
            failures.push(e);
        }
    }
    eprintln!(
        "every_failpoint on {}: {} hits in an inventory sync during an overlap; failures: {}",
        backend.name(),
        path.len(),
        failures.len()
    );
    done(backend, path.len(), started);
    assert!(failures.is_empty(), "{failures:#?}");
}
