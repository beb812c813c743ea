//! The gauges of a scrape, read from the store and the configuration: key
//! slots and expiring keys by provider (the slots `keyrot status` lists),
//! unfinished rotations by state, the outbox, and each provider's latest
//! sync as the store records it (so it survives a restart). [`Scrape`] is
//! the collector that writes one read of them.

use std::collections::BTreeMap;
use std::fmt;

use jiff::{SignedDuration, Timestamp};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric, MetricEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use super::unix_seconds;
use keyrot_config::Config;
use keyrot_core::store::{Store, StoreError};

/// The windows of `keyrot_keys_expiring`: label and length in days.
const WINDOWS: [(&str, i64); 2] = [("7d", 7), ("30d", 30)];

/// What a scrape reads from the store and the configuration.
#[derive(Clone, Debug, Default)]
pub struct Gauges {
    /// Configured providers (their series are shown even when zero).
    pub(super) providers: Vec<String>,
    /// Configured sinks (ditto).
    pub(super) sinks: Vec<String>,
    /// Key slots by provider.
    pub(super) keys: BTreeMap<String, u64>,
    /// Keys whose current key expires within a window, by provider and window.
    pub(super) expiring: BTreeMap<(String, &'static str), u64>,
    /// Unfinished rotations by provider and state.
    pub(super) in_progress: BTreeMap<(String, &'static str), u64>,
    /// The latest `synced_at` of each provider's keys.
    pub(super) last_synced: BTreeMap<String, Timestamp>,
    /// Outbox messages waiting to be sent.
    pub(super) outbox_pending: u64,
    /// Outbox messages that used up their retry budget.
    pub(super) outbox_dead: u64,
}

impl Gauges {
    /// Reads the gauges as of `now`. Blocks on the store.
    pub fn read(store: &Store, cfg: &Config, now: Timestamp) -> Result<Gauges, StoreError> {
        let mut g = Gauges {
            providers: cfg.providers.iter().map(|p| p.name.clone()).collect(),
            sinks: cfg.sinks.iter().map(|s| s.name.clone()).collect(),
            ..Gauges::default()
        };
        for p in &g.providers {
            g.keys.insert(p.clone(), 0);
            for (w, _) in WINDOWS {
                g.expiring.insert((p.clone(), w), 0);
            }
            // Every sync records its time in the store, whether or not it
            // changed a slot (a sync rewrites only the slots it changes,
            // so the keys' own `synced_at` can be older).
            if let Some(at) = store.last_sync(p)? {
                g.last_synced.insert(p.clone(), at);
            }
        }
        for rec in store.keys()? {
            *g.keys.entry(rec.provider.clone()).or_default() += 1;
            let expires_at = rec.current.as_ref().and_then(|k| k.expires_at);
            for (w, days) in WINDOWS {
                let within = SignedDuration::from_hours(24 * days);
                if expires_at.is_some_and(|e| e.duration_since(now) <= within) {
                    *g.expiring.entry((rec.provider.clone(), w)).or_default() += 1;
                }
            }
            if let Some(at) = rec.synced_at {
                let e = g.last_synced.entry(rec.provider.clone()).or_insert(at);
                *e = (*e).max(at);
            }
            if let Some(id) = &rec.active_rotation
                && let Some(r) = store.rotation(id)?
            {
                *g.in_progress
                    .entry((r.provider, r.state.as_str()))
                    .or_default() += 1;
            }
        }
        let stats = store.stats()?;
        g.outbox_pending = stats.outbox_queued;
        g.outbox_dead = stats.outbox_dead;
        Ok(g)
    }
}

/// The collector of one scrape: the gauges read for it and the latest
/// sync of each provider.
#[derive(Debug)]
pub(super) struct Scrape {
    /// What was read from the store.
    gauges: Gauges,
    /// When each provider's last sync started: the later of this process's
    /// record and the store's.
    last_sync: BTreeMap<String, Timestamp>,
}

impl Scrape {
    /// The collector of `gauges` and `last_sync`.
    pub(super) fn new(gauges: Gauges, last_sync: BTreeMap<String, Timestamp>) -> Scrape {
        Scrape { gauges, last_sync }
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let g = &self.gauges;
        let mut m = gauge(
            &mut encoder,
            "keyrot_keys",
            "Key slots tracked, by provider.",
        )?;
        for (p, n) in &g.keys {
            sample(&mut m, &[("provider", p.as_str())], *n)?;
        }
        let mut m = gauge(
            &mut encoder,
            "keyrot_keys_expiring",
            "Key slots whose current key expires within the window (or has expired), by provider.",
        )?;
        for ((p, w), n) in &g.expiring {
            sample(&mut m, &[("provider", p.as_str()), ("within", w)], *n)?;
        }
        let mut m = gauge(
            &mut encoder,
            "keyrot_rotations_in_progress",
            "Unfinished rotations by provider and state; state \"failed\" waits for an operator.",
        )?;
        for ((p, s), n) in &g.in_progress {
            sample(&mut m, &[("provider", p.as_str()), ("state", s)], *n)?;
        }
        let mut m = gauge(
            &mut encoder,
            "keyrot_outbox_messages",
            "Notifications in the outbox: pending (waiting to be sent) and dead (retry budget used up).",
        )?;
        sample(&mut m, &[("state", "pending")], g.outbox_pending)?;
        sample(&mut m, &[("state", "dead")], g.outbox_dead)?;
        let mut m = gauge(
            &mut encoder,
            "keyrot_last_sync_success_timestamp_seconds",
            "When the provider's last successful inventory sync started, in Unix seconds.",
        )?;
        for (p, at) in &self.last_sync {
            sample(&mut m, &[("provider", p.as_str())], unix_seconds(*at))?;
        }
        Ok(())
    }
}

/// Starts the gauge family `name`.
fn gauge<'a>(
    encoder: &'a mut DescriptorEncoder,
    name: &'a str,
    help: &str,
) -> Result<MetricEncoder<'a>, fmt::Error> {
    encoder.encode_descriptor(name, help, None, MetricType::Gauge)
}

/// Writes one sample of a gauge family.
fn sample(
    family: &mut MetricEncoder,
    labels: &impl EncodeLabelSet,
    value: impl EncodeGaugeValue,
) -> fmt::Result {
    ConstGauge::new(value).encode(family.encode_family(labels)?)
}
