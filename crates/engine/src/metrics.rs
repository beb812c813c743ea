//! Prometheus metrics on `prometheus-client`: the registry that the state
//! machine and the scheduler bump (rotation outcomes, step durations,
//! provider and sink errors, last successful sync), written in the text
//! exposition format 0.0.4; [`gauges`] is the collector of what the store
//! holds at scrape time (keys, expiring keys, rotations in progress,
//! outbox) and [`server`] is the optional plain-HTTP endpoint
//! (`[daemon] metrics_listen`) that serves `GET /metrics`.
//!
//! It depends on the model, the store, the configuration and the HTTP
//! peers' answer caps only: the engine and the scheduler hold a [`Metrics`]
//! and bump it, and the daemon hands the endpoint the registry, the store,
//! the clock and the configuration in force.
//!
//! One registry lives in each engine, so unit tests never share counters.
//! Labels carry provider, sink, step and state names only: never a key id,
//! a key name or secret material. The names are what keyrot exposed before
//! it used this crate (counters are registered without `_total`, which the
//! encoder adds; the tests compare with the earlier exposition in
//! `testdata/exposition.txt`).
//! Within a family, series come in no fixed order (a [`Family`] is a hash
//! map), and a registered family with no series yet is left out.
//!
//! What a scrape costs: the gauges read every key record (`O(keys)`), one
//! rotation per rotation in progress and the outbox (`O(messages)`, sent
//! ones included), on the blocking pool, at most once per
//! [`server::GAUGE_MAX_AGE`]. Counters and histograms are in memory.
//! `keyrot_rotations_total` is exact across restarts: the endings recorded
//! before this process started are counted once, from the store's rotation
//! history, in the background when the endpoint starts (`O(rotations)` once
//! per start); until that is done the family is left out rather than shown
//! too low.

pub mod gauges;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, prometheus_text,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use keyrot_core::model::{RotationRecord, RotationState};

pub use gauges::Gauges;

/// The `Content-Type` of the text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Upper bounds, in seconds, of the step-duration histogram's buckets (a
/// step is one store commit or one call to a provider or sink).
pub const STEP_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The states a runner takes a step in.
const STEPS: [RotationState; 9] = [
    RotationState::Pending,
    RotationState::AwaitingSecret,
    RotationState::Issuing,
    RotationState::Issued,
    RotationState::Distributing,
    RotationState::Verifying,
    RotationState::Reloading,
    RotationState::Overlap,
    RotationState::Revoking,
];

/// The states that end a rotation: the `result` label of
/// `keyrot_rotations_total`.
const ENDINGS: [RotationState; 3] = [
    RotationState::Completed,
    RotationState::Failed,
    RotationState::Aborted,
];

/// Labels of `keyrot_rotations_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RotationLabels {
    /// Provider of the rotated key.
    provider: String,
    /// The state that ended it ([`ENDINGS`]).
    result: &'static str,
}

/// Labels of `keyrot_step_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    /// The state the step was taken in.
    step: &'static str,
}

/// Labels of `keyrot_provider_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    /// Provider called.
    provider: String,
    /// Operation (`issue`, `revoke`, ...).
    op: &'static str,
}

/// Labels of the counters kept per provider.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    /// Provider.
    provider: String,
}

/// Labels of `keyrot_keys_ended_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndedLabels {
    /// Provider.
    provider: String,
    /// `expired` or `vanished`.
    state: &'static str,
}

/// Labels of `keyrot_sink_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabels {
    /// Sink.
    sink: String,
}

/// Labels of `keyrot_hook_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabels {
    /// Hook.
    hook: String,
}

/// The values of the `state` label of `keyrot_keys_ended_total`.
const ENDED_STATES: [&str; 2] = ["expired", "vanished"];

/// A step-duration histogram with [`STEP_BUCKETS`].
fn step_histogram() -> Histogram {
    Histogram::new(STEP_BUCKETS)
}

/// The in-process registry: what happened since this engine started.
#[derive(Debug)]
pub struct Metrics {
    /// When this registry was made: rotation endings before it come from
    /// the store's history ([`Metrics::seed`]), later ones as they happen.
    started: Timestamp,
    /// Every family below, plus `keyrot_up` and `keyrot_build_info`.
    registry: Registry,
    /// Rotation endings by provider and outcome.
    rotations: Family<RotationLabels, Counter>,
    /// True once the store's history was added to `rotations`.
    seeded: Arc<AtomicBool>,
    /// Step durations by the state they were taken in.
    steps: Family<StepLabels, Histogram>,
    /// Failed provider calls by provider and operation.
    provider_errors: Family<CallLabels, Counter>,
    /// Failed sink calls by sink.
    sink_errors: Family<SinkLabels, Counter>,
    /// Failed reload hook runs by hook.
    hook_errors: Family<HookLabels, Counter>,
    /// Old keys found gone at the provider before keyrot revoked them.
    old_keys_lost: Family<ProviderLabels, Counter>,
    /// Listed keys refused at inventory sync (name or id not allowed), by
    /// provider; once per sync that lists them.
    keys_refused: Family<ProviderLabels, Counter>,
    /// Slots' keys found gone from the listing without keyrot replacing
    /// them, by provider and `expired` or `vanished`.
    keys_ended: Family<EndedLabels, Counter>,
    /// When each provider's inventory sync last succeeded (its start time).
    last_sync: Mutex<BTreeMap<String, Timestamp>>,
    /// 1 while this instance leads (always, on a redb store).
    leader: Gauge,
    /// Times this instance took over the lease from another one.
    failovers: Counter,
    /// Old keys still in use at their policy's `revoke_deadline`, by
    /// provider (`revoke_when = "unused"`; one per rotation).
    old_keys_in_use: Family<ProviderLabels, Counter>,
    /// Orphan keys (keyrot's tag, no known rotation) found by inventory
    /// syncs, by provider; each key once.
    orphans_found: Family<ProviderLabels, Counter>,
    /// Orphan keys revoked (`keyrot orphans --revoke` or `revoke_orphans`),
    /// by provider.
    orphans_revoked: Family<ProviderLabels, Counter>,
}

impl Metrics {
    /// An empty registry; `started` is the engine's clock at creation.
    pub fn new(started: Timestamp) -> Metrics {
        let rotations = Family::default();
        let seeded = Arc::new(AtomicBool::new(false));
        let steps = Family::new_with_constructor(step_histogram as fn() -> Histogram);
        // Every step is listed, observed or not.
        for state in STEPS {
            let _ = steps.get_or_create(&StepLabels {
                step: state.as_str(),
            });
        }
        let provider_errors = Family::default();
        let sink_errors = Family::default();
        let hook_errors = Family::default();
        let old_keys_lost = Family::default();
        let keys_refused = Family::default();
        let keys_ended = Family::default();

        // Help texts are registered without their final full stop: the
        // registry adds it.
        let mut registry = Registry::default();
        registry.register(
            "keyrot_up",
            "1 while keyrot runs and answers scrapes",
            ConstGauge::new(1),
        );
        registry.register(
            "keyrot_build",
            "The running keyrot's version, as a label; the value is always 1",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register(
            "keyrot_step_duration_seconds",
            "How long one step of the rotation state machine took, by the state it was taken in",
            steps.clone(),
        );
        registry.register(
            "keyrot_provider_errors",
            "Failed provider calls made by rotations, by provider and operation",
            provider_errors.clone(),
        );
        registry.register(
            "keyrot_old_keys_lost",
            "Old keys found gone at the provider before keyrot revoked them, by provider (consumers still on them were locked out)",
            old_keys_lost.clone(),
        );
        registry.register(
            "keyrot_keys_refused",
            "Listed keys a [[key]] selects that inventory syncs refused (name or id not allowed), by provider; counted at each sync that lists them",
            keys_refused.clone(),
        );
        registry.register(
            "keyrot_keys_ended",
            "Keys found gone from their provider's listing without keyrot replacing them, by provider and state (expired: its expiry passed; vanished: revoked or deleted before it). Each is also mailed and logged as an ERROR",
            keys_ended.clone(),
        );
        registry.register(
            "keyrot_sink_errors",
            "Failed sink writes, read-backs and finishes made by rotations, by sink",
            sink_errors.clone(),
        );
        registry.register(
            "keyrot_hook_errors",
            "Failed runs of reload hooks, by hook",
            hook_errors.clone(),
        );
        let leader = Gauge::default();
        let failovers = Counter::default();
        registry.register(
            "keyrot_leader",
            "1 while this instance leads (runs rotations), 0 while it stands by; always 1 on a redb store",
            leader.clone(),
        );
        registry.register(
            "keyrot_failovers",
            "Times this instance took over the leader lease from another instance since it started",
            failovers.clone(),
        );
        let old_keys_in_use = Family::default();
        registry.register(
            "keyrot_old_keys_in_use",
            "Old keys still in use at their policy's revoke_deadline (revoke_when = \"unused\"), by provider; once per rotation, with a mail and a WARN log",
            old_keys_in_use.clone(),
        );
        let orphans_found = Family::default();
        let orphans_revoked = Family::default();
        registry.register(
            "keyrot_orphan_keys_found",
            "Orphan keys found by inventory syncs (they carry keyrot's tag but belong to no rotation keyrot knows), by provider; each key counted once, when first found",
            orphans_found.clone(),
        );
        registry.register(
            "keyrot_orphan_keys_revoked",
            "Orphan keys revoked (keyrot orphans --revoke, or revoke_orphans = true), by provider",
            orphans_revoked.clone(),
        );
        registry.register_collector(Box::new(SeededRotations {
            family: rotations.clone(),
            seeded: Arc::clone(&seeded),
        }));
        registry.register_collector(Box::new(AnswersTooLarge));
        Metrics {
            started,
            registry,
            rotations,
            seeded,
            steps,
            provider_errors,
            sink_errors,
            hook_errors,
            old_keys_lost,
            keys_refused,
            keys_ended,
            last_sync: Mutex::new(BTreeMap::new()),
            leader,
            failovers,
            old_keys_in_use,
            orphans_found,
            orphans_revoked,
        }
    }

    /// An inventory sync of `provider` found an orphan key for the first time.
    pub fn orphan_found(&self, provider: &str) {
        self.orphans_found.get_or_create(&by(provider)).inc();
    }

    /// An orphan key of `provider` was revoked.
    pub fn orphan_revoked(&self, provider: &str) {
        self.orphans_revoked.get_or_create(&by(provider)).inc();
    }

    /// The old key of a rotation of `provider` was still in use at its
    /// policy's deadline.
    pub fn old_key_in_use(&self, provider: &str) {
        self.old_keys_in_use.get_or_create(&by(provider)).inc();
    }

    /// Whether this instance leads now.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// This instance took over the lease from another one.
    pub fn failover(&self) {
        self.failovers.inc();
    }

    /// A rotation of `provider` committed `state`; counted when that ends it.
    pub fn rotation_ended(&self, provider: &str, state: RotationState) {
        if state.is_terminal() {
            self.rotations
                .get_or_create(&rotation(provider, state))
                .inc();
        }
    }

    /// Runs one step taken in `state` and records how long it took.
    pub async fn time_step<T>(&self, state: RotationState, step: impl Future<Output = T>) -> T {
        let start = Instant::now();
        let out = step.await;
        self.step_took(state, start.elapsed());
        out
    }

    /// Records the duration of a step taken in `state`.
    pub fn step_took(&self, state: RotationState, d: Duration) {
        if STEPS.contains(&state) {
            let step = state.as_str();
            self.steps
                .get_or_create(&StepLabels { step })
                .observe(d.as_secs_f64());
        }
    }

    /// A call `op` (`issue`, `revoke`, ...) to `provider` failed.
    pub fn provider_error(&self, provider: &str, op: &'static str) {
        let provider = provider.to_string();
        self.provider_errors
            .get_or_create(&CallLabels { provider, op })
            .inc();
    }

    /// A rotation of `provider` found its old key gone at the provider
    /// before keyrot revoked it (consumers still on it are locked out).
    pub fn old_key_lost(&self, provider: &str) {
        self.old_keys_lost.get_or_create(&by(provider)).inc();
    }

    /// An inventory sync of `provider` refused a listed key that a
    /// `[[key]]` selects (its name or id is not allowed).
    pub fn key_refused(&self, provider: &str) {
        self.keys_refused.get_or_create(&by(provider)).inc();
    }

    /// An inventory sync of `provider` found a slot's key gone without
    /// keyrot replacing it: `state` is `expired` or `vanished`.
    pub fn key_ended(&self, provider: &str, state: &'static str) {
        let provider = provider.to_string();
        self.keys_ended
            .get_or_create(&EndedLabels { provider, state })
            .inc();
    }

    /// A write, read-back or finish of `sink` failed.
    pub fn sink_error(&self, sink: &str) {
        let sink = sink.to_string();
        self.sink_errors.get_or_create(&SinkLabels { sink }).inc();
    }

    /// A run of reload hook `hook` failed.
    pub fn hook_error(&self, hook: &str) {
        let hook = hook.to_string();
        self.hook_errors.get_or_create(&HookLabels { hook }).inc();
    }

    /// The inventory sync of `provider` that started `at` was committed.
    pub fn synced(&self, provider: &str, at: Timestamp) {
        let mut m = self.last_sync.lock().unwrap_or_else(|e| e.into_inner());
        let e = m.entry(provider.to_string()).or_insert(at);
        *e = (*e).max(at);
    }

    /// Adds the endings `history` recorded before this registry started
    /// (later ones were counted as they happened), then shows the family.
    /// Each ending is a transition, so a rotation that failed, was resumed
    /// and completed counts once as failed and once as completed.
    pub fn seed(&self, history: &[RotationRecord]) {
        for rec in history {
            for t in rec.history.iter().filter(|t| t.at < self.started) {
                if t.to.is_terminal() {
                    self.rotations
                        .get_or_create(&rotation(&rec.provider, t.to))
                        .inc();
                }
            }
        }
        self.seeded.store(true, Ordering::Release);
    }

    /// Shows `keyrot_rotations_total` with the endings of this process
    /// only (the store's history could not be read).
    pub fn skip_seed(&self) {
        self.seeded.store(true, Ordering::Release);
    }

    /// The exposition of everything, with `gauges` read from the store.
    pub fn render(&self, gauges: &Gauges) -> Result<String, fmt::Error> {
        // Configured providers and sinks are listed even when zero (a
        // series made here stays, at zero, if a reload removes its name).
        for p in &gauges.providers {
            for state in ENDINGS {
                let _ = self.rotations.get_or_create(&rotation(p, state));
            }
            let _ = self.keys_refused.get_or_create(&by(p));
            for state in ENDED_STATES {
                let provider = p.clone();
                let _ = self
                    .keys_ended
                    .get_or_create(&EndedLabels { provider, state });
            }
        }
        for s in &gauges.sinks {
            let sink = s.clone();
            let _ = self.sink_errors.get_or_create(&SinkLabels { sink });
        }
        let mut last_sync = self
            .last_sync
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for (p, at) in &gauges.last_synced {
            let e = last_sync.entry(p.clone()).or_insert(*at);
            *e = (*e).max(*at);
        }
        let mut scrape = Registry::default();
        scrape.register_collector(Box::new(gauges::Scrape::new(gauges.clone(), last_sync)));
        let mut text = String::new();
        prometheus_text::encode(&mut text, &self.registry)?;
        prometheus_text::encode(&mut text, &scrape)?;
        Ok(text)
    }
}

/// The labels of one provider.
fn by(provider: &str) -> ProviderLabels {
    ProviderLabels {
        provider: provider.to_string(),
    }
}

/// The labels of a rotation of `provider` that ended in `state`.
fn rotation(provider: &str, state: RotationState) -> RotationLabels {
    RotationLabels {
        provider: provider.to_string(),
        result: state.as_str(),
    }
}

/// `keyrot_rotations_total`, once the store's history is counted in it.
#[derive(Debug)]
struct SeededRotations {
    /// The counters ([`Metrics::rotations`]).
    family: Family<RotationLabels, Counter>,
    /// [`Metrics::seeded`].
    seeded: Arc<AtomicBool>,
}

impl Collector for SeededRotations {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        if !self.seeded.load(Ordering::Acquire) {
            return Ok(());
        }
        let family = encoder.encode_descriptor(
            "keyrot_rotations",
            "Rotations that ended, by provider and result (a resumed rotation can end twice).",
            None,
            MetricType::Counter,
        )?;
        self.family.encode(family)
    }
}

/// `keyrot_peer_answer_too_large_total`: process-wide, not per engine (see
/// [`keyrot_peers::http::cap`]).
#[derive(Debug)]
struct AnswersTooLarge;

impl Collector for AnswersTooLarge {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let mut family = encoder.encode_descriptor(
            "keyrot_peer_answer_too_large",
            "Peer answers larger than keyrot's cap for that kind of peer (the call failed), by kind of peer.",
            None,
            MetricType::Counter,
        )?;
        for (kind, n) in keyrot_peers::http::cap::answers_too_large() {
            let labels = [("peer", kind.label())];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Seconds since the Unix epoch, with milliseconds.
fn unix_seconds(t: Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}
