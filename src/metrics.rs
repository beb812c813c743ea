//! Prometheus metrics: the in-process registry that the state machine and
//! the scheduler bump (rotation outcomes, step durations, provider and sink
//! errors, last successful sync) and the text exposition format 0.0.4;
//! [`gauges`] reads what the store holds at scrape time (keys, expiring
//! keys, rotations in progress, outbox) and [`server`] is the optional
//! plain-HTTP endpoint (`[daemon] metrics_listen`) that serves `GET /metrics`.
//!
//! One registry lives in each [`crate::rotation::Engine`], so unit tests
//! never share counters. Labels carry provider, sink, step and state names
//! only: never a key id, a key name or secret material.
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
pub mod server;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::model::{RotationRecord, RotationState};

pub use gauges::Gauges;
pub use server::{CONTENT_TYPE, serve, start};

/// Upper bounds, in seconds, of the step-duration histogram's buckets (a
/// step is one store commit or one call to a provider or sink).
pub const STEP_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The states a runner takes a step in, in the order they are listed.
const STEPS: [RotationState; 8] = [
    RotationState::Pending,
    RotationState::AwaitingSecret,
    RotationState::Issuing,
    RotationState::Issued,
    RotationState::Distributing,
    RotationState::Verifying,
    RotationState::Overlap,
    RotationState::Revoking,
];

/// How a rotation ended (the `result` label of `keyrot_rotations_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// The new key is live and the old one revoked or left to expire.
    Completed,
    /// Retries ran out (it may be resumed later, and end again).
    Failed,
    /// An operator abandoned it.
    Aborted,
}

impl Outcome {
    /// Every outcome, in label order.
    const ALL: [Outcome; 3] = [Outcome::Completed, Outcome::Failed, Outcome::Aborted];

    /// The outcome a transition to `state` records, if it ends a rotation.
    pub fn of(state: RotationState) -> Option<Outcome> {
        match state {
            RotationState::Completed => Some(Outcome::Completed),
            RotationState::Failed => Some(Outcome::Failed),
            RotationState::Aborted => Some(Outcome::Aborted),
            _ => None,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Failed => "failed",
            Outcome::Aborted => "aborted",
        }
    }
}

/// A fixed-bucket histogram of durations with atomic cells.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket, not cumulative; the last cell holds those
    /// above every bound.
    cells: [AtomicU64; STEP_BUCKETS.len() + 1],
    /// Sum of the observations, in nanoseconds.
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = STEP_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(STEP_BUCKETS.len());
        self.cells[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket (the last one is `+Inf`, the total)
    /// and the sum in seconds.
    pub fn snapshot(&self) -> (Vec<u64>, f64) {
        let mut total = 0;
        let cumulative = self
            .cells
            .iter()
            .map(|c| {
                total += c.load(Ordering::Relaxed);
                total
            })
            .collect();
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (cumulative, sum)
    }
}

/// Counters by label values.
#[derive(Debug)]
struct Counters<K>(Mutex<BTreeMap<K, u64>>);

impl<K: Ord + Clone> Counters<K> {
    fn new() -> Counters<K> {
        Counters(Mutex::new(BTreeMap::new()))
    }

    /// The map; a panic elsewhere while it was held leaves it usable.
    fn map(&self) -> MutexGuard<'_, BTreeMap<K, u64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, key: K, n: u64) {
        *self.map().entry(key).or_default() += n;
    }

    fn snapshot(&self) -> BTreeMap<K, u64> {
        self.map().clone()
    }
}

/// The in-process registry: what happened since this engine started.
#[derive(Debug)]
pub struct Metrics {
    /// When this registry was made: rotation endings before it come from
    /// the store's history ([`Metrics::seed`]), later ones as they happen.
    started: Timestamp,
    /// Rotation endings by provider and outcome.
    rotations: Counters<(String, Outcome)>,
    /// True once the store's history was added to `rotations`.
    seeded: AtomicBool,
    /// Step durations, one histogram per entry of [`STEPS`].
    steps: [Histogram; STEPS.len()],
    /// Failed provider calls by provider and operation.
    provider_errors: Counters<(String, &'static str)>,
    /// Failed sink calls by sink.
    sink_errors: Counters<String>,
    /// Old keys found gone at the provider before keyrot revoked them.
    old_keys_lost: Counters<String>,
    /// Listed keys refused at inventory sync (name or id not allowed), by
    /// provider; once per sync that lists them.
    keys_refused: Counters<String>,
    /// Slots' keys found gone from the listing without keyrot replacing
    /// them, by provider and `expired` or `vanished`.
    keys_ended: Counters<(String, &'static str)>,
    /// When each provider's inventory sync last succeeded (its start time).
    last_sync: Mutex<BTreeMap<String, Timestamp>>,
}

impl Metrics {
    /// An empty registry; `started` is the engine's clock at creation.
    pub fn new(started: Timestamp) -> Metrics {
        Metrics {
            started,
            rotations: Counters::new(),
            seeded: AtomicBool::new(false),
            steps: Default::default(),
            provider_errors: Counters::new(),
            sink_errors: Counters::new(),
            old_keys_lost: Counters::new(),
            keys_refused: Counters::new(),
            keys_ended: Counters::new(),
            last_sync: Mutex::new(BTreeMap::new()),
        }
    }

    /// A rotation of `provider` committed `state`; counted when that ends it.
    pub fn rotation_ended(&self, provider: &str, state: RotationState) {
        if let Some(o) = Outcome::of(state) {
            self.rotations.add((provider.to_string(), o), 1);
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
        if let Some(i) = STEPS.iter().position(|s| *s == state) {
            self.steps[i].observe(d);
        }
    }

    /// A call `op` (`issue`, `revoke`, ...) to `provider` failed.
    pub fn provider_error(&self, provider: &str, op: &'static str) {
        self.provider_errors.add((provider.to_string(), op), 1);
    }

    /// A rotation of `provider` found its old key gone at the provider
    /// before keyrot revoked it (consumers still on it are locked out).
    pub fn old_key_lost(&self, provider: &str) {
        self.old_keys_lost.add(provider.to_string(), 1);
    }

    /// An inventory sync of `provider` refused a listed key that a
    /// `[[key]]` selects (its name or id is not allowed).
    pub fn key_refused(&self, provider: &str) {
        self.keys_refused.add(provider.to_string(), 1);
    }

    /// An inventory sync of `provider` found a slot's key gone without
    /// keyrot replacing it: `state` is `expired` or `vanished`.
    pub fn key_ended(&self, provider: &str, state: &'static str) {
        self.keys_ended.add((provider.to_string(), state), 1);
    }

    /// A write, read-back or finish of `sink` failed.
    pub fn sink_error(&self, sink: &str) {
        self.sink_errors.add(sink.to_string(), 1);
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
        let mut before: BTreeMap<(String, Outcome), u64> = BTreeMap::new();
        for rec in history {
            for t in rec.history.iter().filter(|t| t.at < self.started) {
                if let Some(o) = Outcome::of(t.to) {
                    *before.entry((rec.provider.clone(), o)).or_default() += 1;
                }
            }
        }
        for (k, n) in before {
            self.rotations.add(k, n);
        }
        self.seeded.store(true, Ordering::Release);
    }

    /// Shows `keyrot_rotations_total` with the endings of this process
    /// only (the store's history could not be read).
    pub fn skip_seed(&self) {
        self.seeded.store(true, Ordering::Release);
    }

    /// The exposition of everything, with `gauges` read from the store.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut t = Text::default();
        t.family(
            "keyrot_up",
            "gauge",
            "1 while keyrot runs and answers scrapes.",
        );
        t.sample("keyrot_up", &[], 1);
        t.family(
            "keyrot_build_info",
            "gauge",
            "The running keyrot's version, as a label; the value is always 1.",
        );
        t.sample(
            "keyrot_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );
        gauges.render(&mut t);
        self.render_counters(&mut t, gauges);
        let mut synced = self
            .last_sync
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for (p, at) in &gauges.last_synced {
            let e = synced.entry(p.clone()).or_insert(*at);
            *e = (*e).max(*at);
        }
        t.family(
            "keyrot_last_sync_success_timestamp_seconds",
            "gauge",
            "When the provider's last successful inventory sync started, in Unix seconds.",
        );
        for (p, at) in &synced {
            t.sample(
                "keyrot_last_sync_success_timestamp_seconds",
                &[("provider", p)],
                float(unix_seconds(*at)),
            );
        }
        t.0
    }

    /// Rotation outcomes, step durations and call errors.
    fn render_counters(&self, t: &mut Text, gauges: &Gauges) {
        if self.seeded.load(Ordering::Acquire) {
            let mut rotations = self.rotations.snapshot();
            for p in &gauges.providers {
                for o in Outcome::ALL {
                    rotations.entry((p.clone(), o)).or_default();
                }
            }
            t.family(
                "keyrot_rotations_total",
                "counter",
                "Rotations that ended, by provider and result (a resumed rotation can end twice).",
            );
            for ((p, o), n) in &rotations {
                t.sample(
                    "keyrot_rotations_total",
                    &[("provider", p), ("result", o.as_str())],
                    n,
                );
            }
        }
        let name = "keyrot_step_duration_seconds";
        t.family(
            name,
            "histogram",
            "How long one step of the rotation state machine took, by the state it was taken in.",
        );
        for (state, h) in STEPS.iter().zip(&self.steps) {
            let step = state.as_str();
            let (cumulative, sum) = h.snapshot();
            let bounds = STEP_BUCKETS.iter().copied().chain([f64::INFINITY]);
            for (le, n) in bounds.zip(&cumulative) {
                t.sample(
                    &format!("{name}_bucket"),
                    &[("step", step), ("le", &float(le))],
                    n,
                );
            }
            t.sample(&format!("{name}_sum"), &[("step", step)], float(sum));
            let count = cumulative.last().copied().unwrap_or(0);
            t.sample(&format!("{name}_count"), &[("step", step)], count);
        }
        t.family(
            "keyrot_provider_errors_total",
            "counter",
            "Failed provider calls made by rotations, by provider and operation.",
        );
        for ((p, op), n) in &self.provider_errors.snapshot() {
            t.sample(
                "keyrot_provider_errors_total",
                &[("provider", p), ("op", op)],
                n,
            );
        }
        t.family(
            "keyrot_old_keys_lost_total",
            "counter",
            "Old keys found gone at the provider before keyrot revoked them, by provider (consumers still on them were locked out).",
        );
        for (p, n) in &self.old_keys_lost.snapshot() {
            t.sample("keyrot_old_keys_lost_total", &[("provider", p)], n);
        }
        let mut refused = self.keys_refused.snapshot();
        for p in &gauges.providers {
            refused.entry(p.clone()).or_default();
        }
        t.family(
            "keyrot_keys_refused_total",
            "counter",
            "Listed keys a [[key]] selects that inventory syncs refused (name or id not allowed), by provider; counted at each sync that lists them.",
        );
        for (p, n) in &refused {
            t.sample("keyrot_keys_refused_total", &[("provider", p)], n);
        }
        let mut ended = self.keys_ended.snapshot();
        for p in &gauges.providers {
            for state in ["expired", "vanished"] {
                ended.entry((p.clone(), state)).or_default();
            }
        }
        t.family(
            "keyrot_keys_ended_total",
            "counter",
            "Keys found gone from their provider's listing without keyrot replacing them, by provider and state (expired: its expiry passed; vanished: revoked or deleted before it). Each is also mailed and logged as an ERROR.",
        );
        for ((p, state), n) in &ended {
            t.sample(
                "keyrot_keys_ended_total",
                &[("provider", p), ("state", state)],
                n,
            );
        }
        let mut sinks = self.sink_errors.snapshot();
        for s in &gauges.sinks {
            sinks.entry(s.clone()).or_default();
        }
        t.family(
            "keyrot_sink_errors_total",
            "counter",
            "Failed sink writes, read-backs and finishes made by rotations, by sink.",
        );
        for (s, n) in &sinks {
            t.sample("keyrot_sink_errors_total", &[("sink", s)], n);
        }
        // Process-wide, not per engine: see crate::http::cap.
        let name = "keyrot_peer_answer_too_large_total";
        t.family(
            name,
            "counter",
            "Peer answers larger than keyrot's cap for that kind of peer (the call failed), by kind of peer.",
        );
        for (kind, n) in crate::http::cap::answers_too_large() {
            t.sample(name, &[("peer", kind.label())], n);
        }
    }
}

/// A text exposition being written.
#[derive(Default)]
struct Text(String);

impl Text {
    /// The `# HELP` and `# TYPE` lines of a family.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    /// One sample line.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let pairs: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            let _ = write!(self.0, "{{{}}}", pairs.join(","));
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// A label value escaped for the text format: `\`, `"` and newline.
pub fn escape_label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// A HELP text escaped for the text format: `\` and newline.
fn escape_help(v: &str) -> String {
    v.replace('\\', r"\\").replace('\n', r"\n")
}

/// A float as the text format writes it (`+Inf`, `-Inf`, `NaN`).
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        v.to_string()
    }
}

/// Seconds since the Unix epoch, with milliseconds.
fn unix_seconds(t: Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}
