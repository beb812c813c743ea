//! Prometheus metrics: the engine's registry and store collector
//! ([`keyrot_engine::metrics`], re-exported here) and [`server`], the
//! optional plain-HTTP endpoint (`[daemon] metrics_listen`) that serves
//! `GET /metrics`.

pub mod server;

pub use keyrot_engine::metrics::*;
pub use server::{Sources, start};
