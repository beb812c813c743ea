//! keyrot's engine: what turns policies and peers into rotations.
//!
//! Modules, and what each owns:
//! - [`rotation`]: the crash-safe state machine, one step function per
//!   state; its refusals are its own type ([`rotation::Refusal`]), never
//!   an HTTP status.
//! - [`scheduler`]: sleeps until the next due instant; inventory sync,
//!   expiry notices, digests, pruning.
//! - [`notify`]: the outbox sender, mail and webhook rendering.
//! - [`names`]: which key names and ids keyrot takes from a listing, and
//!   how a refused one is shown.
//! - [`metrics`]: the Prometheus registry the engine bumps and the
//!   collector of what the store holds (the daemon serves it).
//!
//! Stands on `keyrot-core`, `keyrot-config` and `keyrot-peers`; knows
//! nothing of the control API or the process it runs in. A fatal store
//! error is reported up (`Engine::until_fatal`), never acted on here.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod metrics;
pub mod names;
pub mod notify;
pub mod rotation;
pub mod scheduler;
