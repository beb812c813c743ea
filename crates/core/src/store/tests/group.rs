//! Group commit: concurrent writes share fsyncs, and every write is
//! durable once `write` returns. Durability is checked on crash images
//! (a copy of the file while the store is open: what `kill -9` leaves),
//! never on a clean reopen, which would make pending commits durable.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use super::{crash_image, key_rec, open, temp_path};
use crate::store::{CommitStats, Store, StoreError};

/// Slots present in a crash image of `store` taken now.
fn slots_after_crash(store: &Store, to: &Path) -> Vec<String> {
    crash_image(store, to);
    let crashed = Store::open_read_only(to).unwrap();
    let slots = crashed
        .keys()
        .unwrap()
        .into_iter()
        .map(|k| k.slot)
        .collect();
    drop(crashed);
    std::fs::remove_file(to).unwrap();
    slots
}

/// Waits (without a timer) until `n` writers are inside `write`.
fn until_writers(store: &Store, n: usize) {
    while store.group.writers() < n {
        thread::yield_now();
    }
}

/// Waits (without a timer) until `inside` is set: the writer that sets it
/// in its closure holds redb's write lock, so every writer that enters
/// after it waits behind it (counted in [`until_writers`]). Waiting for
/// the first writer to be counted is not enough: counted, it may not have
/// the lock yet, and a later writer that takes it first would commit and
/// leave while the first one waits for it forever.
fn until_inside(inside: &AtomicBool) {
    while !inside.load(Ordering::Acquire) {
        thread::yield_now();
    }
}

/// Waits (without a timer) until `n` commits were made.
fn until_commits(store: &Store, n: u64) {
    while store.commit_stats().commits < n {
        thread::yield_now();
    }
}

/// Commits a key for `slot` while a second writer is queued, so without an
/// fsync of its own (`Durability::None`); the second writer's closure
/// fails, so it commits nothing and does not disturb the first. Flushes
/// must be paused. Returns once the commit is made (readers see it), with
/// the first writer's thread, which ends only once a flush makes the
/// commit durable.
fn deferred_write(store: &Arc<Store>, slot: &'static str) -> thread::JoinHandle<()> {
    let commits = store.commit_stats().commits + 1;
    let inside = Arc::new(AtomicBool::new(false));
    let first = {
        let (store, inside) = (Arc::clone(store), Arc::clone(&inside));
        thread::spawn(move || {
            let inner = Arc::clone(&store);
            store
                .write(|tx| {
                    inside.store(true, Ordering::Release);
                    until_writers(&inner, 2);
                    tx.put_key(&key_rec(slot, None))
                })
                .unwrap();
        })
    };
    until_inside(&inside);
    let failing = store.write(|tx| {
        tx.put_key(&key_rec("p/failing", None))?;
        Err::<(), _>(StoreError::Other("the closure fails".into()))
    });
    assert!(matches!(failing, Err(StoreError::Other(_))), "{failing:?}");
    until_commits(store, commits);
    first
}

#[test]
fn concurrent_writes_are_all_durable_once_write_returns() {
    let (dir, path) = temp_path();
    let store = Arc::new(open(&path));
    let threads = 8;
    let per_thread = 40;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                for i in 0..per_thread {
                    let slot = format!("p/t{t}-{i}");
                    store.write(|tx| tx.put_key(&key_rec(&slot, None))).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // Every write returned: a crash now must keep every one of them.
    let crashed = slots_after_crash(&store, &dir.path().join("crashed/keyrot.redb"));
    assert_eq!(crashed.len(), threads * per_thread);
    let stats = store.commit_stats();
    assert_eq!(stats.commits, (threads * per_thread) as u64);
    // Each commit is durable itself or covered by a later durable commit.
    assert_eq!(
        stats.durable_commits,
        stats.commits - stats.deferred + stats.flushes,
        "{stats:?}"
    );
    assert!(stats.flushes <= stats.deferred, "{stats:?}");
    drop(store);
    // And a clean reopen sees them too.
    assert_eq!(open(&path).keys().unwrap().len(), threads * per_thread);
}

#[test]
fn writers_queued_behind_each_other_share_one_fsync() {
    let (dir, path) = temp_path();
    let store = Arc::new(open(&path));
    let others = 5;
    let paused = store.group.pause_flushes();
    // The first writer commits only once every other writer waits for
    // redb's write lock: each commit but the last then has writers queued
    // behind it, so only the last one is durable itself, and it covers
    // all of them.
    let inside = Arc::new(AtomicBool::new(false));
    let first = {
        let (store, inside) = (Arc::clone(&store), Arc::clone(&inside));
        thread::spawn(move || {
            let inner = Arc::clone(&store);
            store
                .write(|tx| {
                    inside.store(true, Ordering::Release);
                    until_writers(&inner, others + 1);
                    tx.put_key(&key_rec("p/first", None))
                })
                .unwrap();
        })
    };
    until_inside(&inside);
    let rest: Vec<_> = (0..others)
        .map(|i| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                store
                    .write(|tx| tx.put_key(&key_rec(&format!("p/other{i}"), None)))
                    .unwrap();
            })
        })
        .collect();
    first.join().unwrap();
    for h in rest {
        h.join().unwrap();
    }
    drop(paused);
    let stats = store.commit_stats();
    assert_eq!(
        stats,
        CommitStats {
            commits: others as u64 + 1,
            deferred: others as u64,
            durable_commits: 1,
            flushes: 0,
        }
    );
    let crashed = slots_after_crash(&store, &dir.path().join("crashed/keyrot.redb"));
    assert_eq!(crashed.len(), others + 1, "{crashed:?}");
}

#[test]
fn a_deferred_commit_is_lost_in_a_crash_until_a_flush_makes_it_durable() {
    let (dir, path) = temp_path();
    let store = Arc::new(open(&path));
    let image = dir.path().join("crashed/keyrot.redb");
    store
        .write(|tx| tx.put_key(&key_rec("p/before", None)))
        .unwrap();
    let paused = store.group.pause_flushes();
    let first = deferred_write(&store, "p/deferred");
    assert!(
        !first.is_finished(),
        "write returned before its commit was durable"
    );
    // Committed (readers see it) but not durable: a crash takes it back.
    assert!(store.key("p/deferred").unwrap().is_some());
    assert_eq!(slots_after_crash(&store, &image), ["p/before"]);

    // Let flushes run: the writer flushes (one empty durable commit) and
    // returns; now the crash keeps it.
    drop(paused);
    first.join().unwrap();
    assert_eq!(
        slots_after_crash(&store, &image),
        ["p/before", "p/deferred"]
    );
    let stats = store.commit_stats();
    assert_eq!(
        stats,
        CommitStats {
            commits: 2,
            deferred: 1,
            durable_commits: 2,
            flushes: 1,
        }
    );
    // Nothing pending: flush is free.
    store.flush().unwrap();
    assert_eq!(store.commit_stats(), stats);
}

#[test]
fn flush_makes_what_a_reader_saw_durable() {
    let (dir, path) = temp_path();
    let store = Arc::new(open(&path));
    let paused = store.group.pause_flushes();
    let writer = deferred_write(&store, "p/seen");
    // A reader sees the commit; before acting on it, it flushes.
    assert!(store.key("p/seen").unwrap().is_some());
    drop(paused);
    store.flush().unwrap();
    assert_eq!(
        slots_after_crash(&store, &dir.path().join("crashed/keyrot.redb")),
        ["p/seen"]
    );
    writer.join().unwrap();
    assert_eq!(store.commit_stats().durable_commits, 1);
}

#[test]
fn without_group_commit_every_commit_is_durable_itself() {
    let (_dir, path) = temp_path();
    let store = Arc::new(open(&path));
    store.set_group_commit(false);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                for i in 0..10 {
                    let slot = format!("p/t{t}-{i}");
                    store.write(|tx| tx.put_key(&key_rec(&slot, None))).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let stats = store.commit_stats();
    assert_eq!(
        stats,
        CommitStats {
            commits: 40,
            deferred: 0,
            durable_commits: 40,
            flushes: 0,
        }
    );
}

#[test]
fn after_a_failed_commit_every_write_fails_as_fatal() {
    let (_dir, path) = temp_path();
    let store = open(&path);
    store.write(|tx| tx.put_key(&key_rec("p/a", None))).unwrap();
    store.group.fail_for_test("store x: disk gone");
    let err = store
        .write(|tx| tx.put_key(&key_rec("p/b", None)))
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::CommitFailed(m) if m.contains("disk gone")),
        "{err:?}"
    );
    // What was durable stays readable; nothing is pending.
    assert!(store.key("p/a").unwrap().is_some());
    store.flush().unwrap();
}

#[test]
fn flush_on_a_read_only_open_does_nothing() {
    let (_dir, path) = temp_path();
    drop(open(&path));
    let ro = Store::open_read_only(&path).unwrap();
    ro.flush().unwrap();
    assert_eq!(ro.commit_stats(), CommitStats::default());
}
