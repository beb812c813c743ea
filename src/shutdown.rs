//! Orderly shutdown, as in mini-redis: every task holds a [`Shutdown`] and a
//! clone of a completion sender; the daemon broadcasts once, then waits until
//! every completion sender is dropped, so "all tasks finished" is a fact.

use tokio::sync::{broadcast, mpsc};

/// Listens for the shutdown signal.
#[derive(Debug)]
pub struct Shutdown {
    /// True once the signal was received.
    is_shutdown: bool,
    /// The receiving half of the broadcast channel.
    notify: broadcast::Receiver<()>,
    /// Dropped when the task that holds this ends.
    _done: mpsc::Sender<()>,
}

impl Shutdown {
    /// Wraps a receiver and a completion sender.
    pub fn new(notify: broadcast::Receiver<()>, done: mpsc::Sender<()>) -> Shutdown {
        Shutdown {
            is_shutdown: false,
            notify,
            _done: done,
        }
    }

    /// True once shutdown was signalled.
    pub fn is_shutdown(&self) -> bool {
        self.is_shutdown
    }

    /// True if the signal has been sent, without waiting.
    pub fn signalled(&mut self) -> bool {
        if !self.is_shutdown {
            match self.notify.try_recv() {
                Err(broadcast::error::TryRecvError::Empty) => {}
                _ => self.is_shutdown = true,
            }
        }
        self.is_shutdown
    }

    /// Waits for the signal (returns at once if already received).
    pub async fn recv(&mut self) {
        if self.is_shutdown {
            return;
        }
        let _ = self.notify.recv().await;
        self.is_shutdown = true;
    }
}

/// Hands out [`Shutdown`]s; holding one keeps shutdown waiting, so drop it
/// when no new tasks may start.
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    /// Broadcasts the signal.
    notify: broadcast::Sender<()>,
    /// Cloned into every `Shutdown`.
    done_tx: mpsc::Sender<()>,
}

impl ShutdownHandle {
    /// A new listener.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown::new(self.notify.subscribe(), self.done_tx.clone())
    }
}

/// Hands out [`Shutdown`]s and triggers them.
#[derive(Debug)]
pub struct ShutdownController {
    /// Broadcasts the signal.
    notify: broadcast::Sender<()>,
    /// Cloned into every `Shutdown`.
    done_tx: mpsc::Sender<()>,
    /// Closed once every `Shutdown` is dropped.
    done_rx: mpsc::Receiver<()>,
}

impl Default for ShutdownController {
    fn default() -> Self {
        Self::new()
    }
}

impl ShutdownController {
    /// A controller with no listeners yet.
    pub fn new() -> ShutdownController {
        let (notify, _) = broadcast::channel(1);
        let (done_tx, done_rx) = mpsc::channel(1);
        ShutdownController {
            notify,
            done_tx,
            done_rx,
        }
    }

    /// A new listener.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown::new(self.notify.subscribe(), self.done_tx.clone())
    }

    /// A handle that can hand out listeners later.
    pub fn handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            notify: self.notify.clone(),
            done_tx: self.done_tx.clone(),
        }
    }

    /// Signals every listener and waits until all have been dropped, or
    /// until `timeout` passes. Returns false on timeout.
    pub async fn shutdown(self, timeout: std::time::Duration) -> bool {
        let ShutdownController {
            notify,
            done_tx,
            mut done_rx,
        } = self;
        let _ = notify.send(());
        drop(done_tx);
        tokio::time::timeout(timeout, done_rx.recv()).await.is_ok()
    }
}
