//! A crash at every failpoint of the paths that leave the plain rotation's
//! after its verification: a rotation with a reload hook on its sink, and
//! one under `revoke_when = "unused"` waiting for its old key to go quiet.
//! Each is crashed at from its verification on (the hits before are the
//! plain rotation's, crashed at by its own test), and each adds its own
//! check to the world's.

use std::collections::BTreeSet;
use std::time::Instant;

use keyrot_core::failpoint;
use keyrot_testkit::{Backend, World};

use super::{QUIET, SERIAL, Setup, covered, done, numbered, run_at, with_a_key_at};

on_both!(
    #[tokio::test(start_paused = true)]
    a_crash_at_every_failpoint_of_a_rotation_with_a_reload_hook_loses_nothing,
    a_crash_at_every_failpoint_while_waiting_for_quiet_revokes_nothing_early,
);

/// The hits of `path` from its first `before:sink-finish` on: where a
/// rotation with a reload hook or a quiet-period policy leaves the plain
/// rotation's path (whose earlier hits the plain test crashes at).
fn from_verified(path: &[(String, u64)]) -> &[(String, u64)] {
    let at = path
        .iter()
        .position(|(n, _)| n == "before:sink-finish")
        .unwrap_or(0);
    &path[at..]
}

/// Crashes a world of `setup` at each hit of `path` from its verification
/// on, prints the figures, counts the scenarios for the backend; fails the
/// test with every scenario that lost something.
async fn crash_from_verified(
    backend: Backend,
    setup: Setup,
    path: &[(String, u64)],
    what: &str,
    started: Instant,
) {
    let mut failures = Vec::new();
    let tail = from_verified(path);
    for hit in tail {
        if let Err(e) = run_at(backend, setup, std::slice::from_ref(hit)).await {
            failures.push(e);
        }
    }
    eprintln!(
        "every_failpoint on {}: {} hits on the path of {what}, the {} from its verification on crashed at each in {:.2} s of wall time; failures: {}",
        backend.name(),
        path.len(),
        tail.len(),
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    done(backend, tail.len(), started);
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The path of a rotation under `revoke_when = "unused"` whose old key was
/// used as it started (so it waits past the overlap for the quiet period),
/// crashed at each of its hits: nothing lost, and the old key revoked no
/// earlier than one quiet period after its use.
async fn a_crash_at_every_failpoint_while_waiting_for_quiet_revokes_nothing_early(
    backend: Backend,
) {
    let _one = SERIAL.lock().await;
    failpoint::revive();
    let started = Instant::now();
    let w = with_a_key_at(backend, Setup::Quiet).await;
    let used = use_current_key(&w);
    failpoint::trace_in_process();
    w.rotate().await.unwrap();
    w.finish().await;
    let path = numbered(failpoint::take_trace());
    covered(backend, &path);
    assert!(w.check().await.is_empty());
    assert!(quiet_problems(&w, used).is_empty());
    drop(w);
    let hits: Vec<&(String, u64)> = path
        .iter()
        .filter(|(n, _)| n.ends_with("last-used"))
        .collect();
    assert!(
        hits.len() >= 4,
        "the last use is read at the overlap's start and at least once after: {path:?}"
    );
    crash_from_verified(
        backend,
        Setup::Quiet,
        &path,
        "a rotation waiting for its old key to go quiet",
        started,
    )
    .await;
}

/// The path of a rotation with a reload hook on its sink, crashed at each
/// of its hits: the hook runs with the new key in place, before the old
/// key is revoked, and again only when the crash came between its run and
/// the commit that records it.
async fn a_crash_at_every_failpoint_of_a_rotation_with_a_reload_hook_loses_nothing(
    backend: Backend,
) {
    let _one = SERIAL.lock().await;
    failpoint::revive();
    let started = Instant::now();
    let w = with_a_key_at(backend, Setup::Hooked).await;
    failpoint::trace_in_process();
    w.rotate().await.unwrap();
    w.finish().await;
    let path = numbered(failpoint::take_trace());
    covered(backend, &path);
    drop(w);
    let names: BTreeSet<&str> = path.iter().map(|(n, _)| n.as_str()).collect();
    for want in ["after:reloading", "before:hook", "after:hook"] {
        assert!(names.contains(want), "{want} is not on the path: {path:?}");
    }
    crash_from_verified(
        backend,
        Setup::Hooked,
        &path,
        "a rotation with a reload hook",
        started,
    )
    .await;
}

/// What must hold of the reload hook after every crash: each completed
/// rotation ran it (with the new key in the sink) before its old key was
/// revoked, and ran it once, or twice when the crash fell between the
/// run and the commit that records it.
pub(super) fn hook_problems(w: &World, crashes: &[(String, u64)]) -> Vec<String> {
    let mut v = Vec::new();
    let repeat_allowed = crashes
        .iter()
        .any(|(n, _)| n == "after:hook" || n == "before:commit");
    let runs = w.hook().runs();
    for r in w
        .store()
        .rotations(Some(keyrot_testkit::SLOT), 100)
        .unwrap()
    {
        let mine: Vec<_> = runs.iter().filter(|x| x.rotation == r.id).collect();
        let Some(first) = mine.first() else {
            v.push(format!("rotation {} never ran its hook", r.id));
            continue;
        };
        let new = r.new_key.as_ref().map(|k| k.id.clone());
        if first.sink_key != new {
            v.push(format!(
                "the hook of {} ran before the sink held {new:?}",
                r.id
            ));
        }
        if let Some(revoked) = r.old_revoked_at
            && revoked < first.at
        {
            v.push(format!(
                "rotation {} revoked its old key before its hook ran",
                r.id
            ));
        }
        if mine.len() > 2 || (mine.len() == 2 && !repeat_allowed) {
            v.push(format!(
                "rotation {} ran its hook {} times",
                r.id,
                mine.len()
            ));
        }
    }
    v
}

/// A consumer uses the slot's current key now (what a `verify` with its
/// secret records at the local provider); the time.
pub(super) fn use_current_key(w: &World) -> jiff::Timestamp {
    let now = w.now();
    let store = w.store();
    let id = store
        .key(keyrot_testkit::SLOT)
        .unwrap()
        .unwrap()
        .current
        .unwrap()
        .id;
    store
        .write(|tx| {
            let mut k = tx.local_get(&id)?.expect("a local key");
            k.last_used_at = Some(now);
            tx.local_put(&k)
        })
        .unwrap();
    now
}

/// What must hold under `revoke_when = "unused"` after every crash: the
/// old key used at `used` was revoked no earlier than one quiet period
/// later.
pub(super) fn quiet_problems(w: &World, used: jiff::Timestamp) -> Vec<String> {
    let quiet = keyrot_core::policy::testutil::dur(QUIET);
    w.store()
        .rotations(Some(keyrot_testkit::SLOT), 1)
        .unwrap()
        .into_iter()
        .filter_map(|r| {
            let at = r.old_revoked_at?;
            (at < used + quiet).then(|| {
                format!(
                    "rotation {} revoked its old key at {at}, used at {used}: before the quiet period ({QUIET}) was over",
                    r.id
                )
            })
        })
        .collect()
}
