//! A change signal many tasks can wait on: the state machine pokes it after
//! every commit that may move a timer or queue a message; the scheduler and
//! the outbox sender wait on it instead of polling.

use std::sync::Arc;

use tokio::sync::watch;

/// Wakes every subscriber.
#[derive(Clone, Debug)]
pub struct Wake(Arc<watch::Sender<u64>>);

impl Default for Wake {
    fn default() -> Self {
        Self::new()
    }
}

impl Wake {
    /// A new signal.
    pub fn new() -> Wake {
        Wake(Arc::new(watch::channel(0).0))
    }

    /// Wakes every subscriber (once, however often it is called meanwhile).
    pub fn notify(&self) {
        self.0.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver; `changed().await` returns after the next `notify`.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}
