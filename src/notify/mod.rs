//! Notifications: messages are written to the outbox in the same store
//! transaction as the state change that causes them, and a sender task
//! delivers them at least once with a stable Message-ID. Messages never
//! carry a secret, a hash of one, or a pre-shared key.

pub mod message;
pub mod sender;

pub use message::{assisted_request, completed, failed};
