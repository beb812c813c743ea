//! Group commit: concurrent [`super::Store::write`]s share one fsync.
//!
//! redb makes a commit durable with one `fdatasync` of the file, and holds
//! its write lock for it, so with immediate durability on every commit the
//! disk's fsync rate bounds the store's commit rate. Instead, a write that
//! other writers are queued behind commits with `Durability::None` (redb:
//! "will not be persisted to disk unless followed by a commit with
//! `Durability::Immediate`"; it only updates the in-memory header) and
//! then waits until a durable commit covers it. The first waiter while no
//! flush runs becomes the flusher: it takes the write lock, notes the last
//! commit started (every commit numbered up to there has finished, as the
//! lock is held), commits an empty transaction with immediate durability
//! (redb writes the header and fsyncs for an empty one too), records that
//! number as durable and wakes the others. A write with nobody queued
//! behind it commits with immediate durability itself, which covers every
//! earlier commit as well: a lone writer pays exactly what it paid before.
//!
//! [`super::Store::write`] returns only once its own commit is durable, so
//! a caller never acts outside keyrot on a transition that a crash could
//! take back: a crash loses only commits whose `write` had not returned,
//! as if they had not been made. Readers can see a commit before it is
//! durable; a reader that acts outside keyrot on what it read without a
//! write of its own in between calls [`super::Store::flush`] first.
//!
//! A failed commit, or a failed flush, is fatal as before
//! ([`StoreError::CommitFailed`]): every waiter whose commit was not yet
//! durable gets it, and so does every later write.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use super::StoreError;

/// Commit counters of one open store since it was opened (benchmarks and
/// tests read them; each durable commit is one fsync of the file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CommitStats {
    /// Write transactions committed by [`super::Store::write`].
    pub commits: u64,
    /// Of those, commits made with `Durability::None` that waited for a
    /// later durable commit.
    pub deferred: u64,
    /// Commits with immediate durability: writes that committed durably
    /// themselves, plus flushes. One fsync each.
    pub durable_commits: u64,
    /// Empty transactions committed durably only to cover deferred commits.
    pub flushes: u64,
}

/// The sequence number and durability of one commit.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ticket {
    /// Commits are numbered from 1 in the order they commit.
    pub(super) seq: u64,
    /// Commit with immediate durability (nobody is queued behind, or group
    /// commit is off).
    pub(super) durable: bool,
}

/// What a flush did.
pub(super) struct Flushed {
    /// Every commit numbered up to this one is durable.
    pub(super) upto: u64,
    /// Whether it committed (false: a commit made meanwhile already covered
    /// everything, and the empty transaction was dropped).
    pub(super) committed: bool,
}

/// Counters and flags under the group's mutex.
#[derive(Debug, Default)]
struct State {
    /// Number of the last commit started (taken under redb's write lock, so
    /// numbers follow commit order).
    started: u64,
    /// Every commit numbered up to this one is durable.
    durable: u64,
    /// A flusher is running.
    flushing: bool,
    /// Writers inside `write` that have not started their commit (or given
    /// up) yet: while one commits, the others wait for redb's write lock.
    writers: usize,
    /// The first commit or flush failure; sticky (redb refuses further
    /// writes until the file is reopened).
    failed: Option<String>,
    /// Counters.
    stats: CommitStats,
}

/// The group-commit state of one read-write store.
#[derive(Debug)]
pub(super) struct Group {
    /// Group commit on (the default); off, every commit is durable itself.
    enabled: AtomicBool,
    /// Counters and flags.
    state: Mutex<State>,
    /// Signalled when `durable`, `flushing` or `failed` change.
    changed: Condvar,
}

/// A writer inside `write`, counted until it starts its commit or drops.
pub(super) struct Writer<'a> {
    /// The group counting it.
    group: &'a Group,
    /// Still counted in `writers`.
    counted: bool,
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        if self.counted {
            let mut st = self.group.lock();
            st.writers = st.writers.saturating_sub(1);
        }
    }
}

/// Resets `flushing` and fails the waiters if a flush unwinds (redb may
/// panic on a damaged file): they must not wait for it forever.
struct FlushGuard<'a> {
    /// The group flushing.
    group: &'a Group,
    /// Set once the flush returned.
    done: bool,
}

impl Drop for FlushGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut st = self.group.lock();
            st.flushing = false;
            st.failed
                .get_or_insert_with(|| "the database engine failed while flushing".into());
            self.group.changed.notify_all();
        }
    }
}

impl Default for Group {
    fn default() -> Group {
        Group {
            enabled: AtomicBool::new(true),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        }
    }
}

impl Group {
    /// Turns group commit on or off (off: one fsync per commit).
    pub(super) fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// The counters so far.
    pub(super) fn stats(&self) -> CommitStats {
        self.lock().stats
    }

    /// The state; a poisoned lock is taken over (it guards plain counters,
    /// and nothing panics while holding it).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a writer in (before it waits for redb's write lock), or
    /// fails at once after an earlier commit failed.
    pub(super) fn enter(&self) -> Result<Writer<'_>, StoreError> {
        let mut st = self.lock();
        if let Some(msg) = &st.failed {
            return Err(StoreError::CommitFailed(msg.clone()));
        }
        st.writers += 1;
        Ok(Writer {
            group: self,
            counted: true,
        })
    }

    /// Numbers the commit `writer` is about to make (it holds redb's write
    /// lock) and chooses its durability: immediate when no other writer is
    /// queued behind it (it would have to flush alone anyway). The writer
    /// stops counting as queued in the same step, so the last of a queue
    /// always sees itself alone.
    pub(super) fn start(&self, mut writer: Writer<'_>) -> Ticket {
        writer.counted = false;
        let mut st = self.lock();
        st.writers = st.writers.saturating_sub(1);
        st.started += 1;
        Ticket {
            seq: st.started,
            durable: !self.enabled.load(Ordering::Relaxed) || st.writers == 0,
        }
    }

    /// Records a successful commit (and, when it was durable, that it
    /// covers every commit numbered up to it).
    pub(super) fn committed(&self, ticket: Ticket) {
        let mut st = self.lock();
        st.stats.commits += 1;
        if ticket.durable {
            st.stats.durable_commits += 1;
            st.durable = st.durable.max(ticket.seq);
            self.changed.notify_all();
        } else {
            st.stats.deferred += 1;
        }
    }

    /// Records a failed commit: fatal for every write not yet durable.
    pub(super) fn failed(&self, err: &StoreError) {
        let mut st = self.lock();
        st.failed.get_or_insert_with(|| match err {
            StoreError::CommitFailed(msg) => msg.clone(),
            other => other.to_string(),
        });
        self.changed.notify_all();
    }

    /// Number of the last commit started: what [`Group::wait`] must reach
    /// for everything committed so far to be durable.
    pub(super) fn last_started(&self) -> u64 {
        self.lock().started
    }

    /// For a flusher holding redb's write lock (so no commit is under way):
    /// the number of the last commit when some commit is not durable yet,
    /// `None` when a commit made meanwhile already covered everything.
    pub(super) fn pending(&self) -> Option<u64> {
        let st = self.lock();
        (st.started > st.durable).then_some(st.started)
    }

    /// Returns once commit `seq` is durable. While no flush runs, the
    /// caller runs `flush` itself: one durable commit covering every commit
    /// started so far (it returns the last number it covers).
    pub(super) fn wait(
        &self,
        seq: u64,
        flush: impl Fn() -> Result<Flushed, StoreError>,
    ) -> Result<(), StoreError> {
        let mut st = self.lock();
        loop {
            if st.durable >= seq {
                return Ok(());
            }
            if let Some(msg) = &st.failed {
                return Err(StoreError::CommitFailed(msg.clone()));
            }
            if st.flushing {
                st = self
                    .changed
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            st.flushing = true;
            drop(st);
            let mut guard = FlushGuard {
                group: self,
                done: false,
            };
            let result = flush();
            guard.done = true;
            st = self.lock();
            st.flushing = false;
            match result {
                Ok(f) => {
                    st.durable = st.durable.max(f.upto);
                    if f.committed {
                        st.stats.flushes += 1;
                        st.stats.durable_commits += 1;
                    }
                }
                Err(e) => {
                    st.failed.get_or_insert_with(|| match e {
                        StoreError::CommitFailed(msg) => msg,
                        other => format!("flushing earlier commits: {other}"),
                    });
                }
            }
            self.changed.notify_all();
        }
    }
}

/// Test hooks: hold flushes back, and see how many writers are inside.
#[cfg(test)]
impl Group {
    /// Writers inside `write` that have not started their commit yet.
    pub(super) fn writers(&self) -> usize {
        self.lock().writers
    }

    /// Holds flushes back (as if one ran) until the guard is dropped, so a
    /// test decides when deferred commits are flushed.
    pub(super) fn pause_flushes(&self) -> Paused<'_> {
        self.lock().flushing = true;
        Paused { group: self }
    }
}

/// The fault switch the tests of the crates above use (feature `testkit`).
#[cfg(any(test, feature = "testkit"))]
impl Group {
    /// Marks the group failed, as a failed commit does.
    pub(super) fn fail_for_test(&self, msg: &str) {
        self.failed(&StoreError::CommitFailed(msg.into()));
    }
}

/// Flushes held back by [`Group::pause_flushes`].
#[cfg(test)]
pub(super) struct Paused<'a> {
    /// The group held.
    group: &'a Group,
}

#[cfg(test)]
impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.group.lock().flushing = false;
        self.group.changed.notify_all();
    }
}
