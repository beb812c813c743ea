//! keyrot's core: the vocabulary every layer above shares, and the store.
//!
//! Modules, and what each owns:
//! - [`model`]: the records the store keeps and the API returns.
//! - [`policy`]: pure functions: when a key is due, windows, jitter, stagger.
//! - [`store`]: the redb database (every redb call lives there).
//! - [`crypto`]: AES-256-GCM envelopes, the master key, and the sealed
//!   secret an API caller gets under its pre-shared key.
//! - [`clock`]: time as a parameter (the system clock, a manual one).
//! - [`error`]: the error of a call to a peer (transient or not).
//! - [`failpoint`]: named points where the crash suites abort, fail or delay.
//! - [`wake`]: waking the scheduler when a due instant moves.
//! - [`shutdown`]: how tasks are told to stop and waited for.
//! - [`memory`]: handing freed heap pages back to the system.
//! - [`hardening`]: no core dumps, not dumpable, key pages locked in memory.
//! - [`escape`]: control characters made visible in logs, terminals, mail.
//! - `pgserver` (tests, feature `testkit`): a real PostgreSQL server per
//!   test process or per test.
//!
//! It knows nothing of the configuration, the peers, the engine or the
//! daemon: the crates above it depend on it, never the other way round.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod clock;
pub mod crypto;
pub mod error;
pub mod escape;
pub mod failpoint;
pub mod hardening;
pub mod memory;
pub mod model;
#[cfg(any(test, feature = "testkit"))]
pub mod pgserver;
pub mod policy;
pub mod shutdown;
pub mod store;
pub mod unit_name;
pub mod wake;
