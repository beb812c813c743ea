//! Orderly shutdown. Every long-lived task is told to stop by one
//! [`CancellationToken`] and counted in one [`TaskTracker`]: the daemon
//! cancels once, then waits until the tracker is empty, so "all tasks
//! finished" is a fact, not a sleep. A task the daemon spawns itself goes on
//! the tracker (`TaskTracker::spawn`) with a clone of the token.
//!
//! [`Shutdown`] is the form handed to a task that ends its wait on its own
//! terms (the outbox sender, the metrics endpoint): the token, and a place in
//! the tracker that shutdown waits for until the holder drops it.

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

/// Listens for the shutdown signal; shutdown waits until it is dropped.
#[derive(Debug)]
pub struct Shutdown {
    /// Cancelled when keyrot stops.
    token: CancellationToken,
    /// Counts as a task in the daemon's tracker while this lives.
    _task: TaskTrackerToken,
}

impl Shutdown {
    /// A listener on `token` that `tracker` waits for.
    pub fn new(token: CancellationToken, tracker: &TaskTracker) -> Shutdown {
        Shutdown {
            token,
            _task: tracker.token(),
        }
    }

    /// Waits for the signal (returns at once if it was already sent).
    pub async fn recv(&mut self) {
        self.token.cancelled().await;
    }
}
