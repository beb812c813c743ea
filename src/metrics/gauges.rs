//! The gauges of a scrape, read from the store and the configuration: key
//! slots and expiring keys by provider (the rows `keyrot status` shows),
//! unfinished rotations by state, the outbox, and each provider's latest
//! sync as the store records it (so it survives a restart).

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use super::Text;
use crate::config::Config;
use crate::control::views::{EXPIRING_SOON_DAYS, key_row};
use crate::store::{Store, StoreError};

/// The windows of `keyrot_keys_expiring`: label and length in days.
const WINDOWS: [(&str, i64); 2] = [("7d", 7), ("30d", EXPIRING_SOON_DAYS)];

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
            // The same row `keyrot status` shows (without its rotation).
            let row = key_row(&rec, None, &[], now);
            *g.keys.entry(row.provider.clone()).or_default() += 1;
            for (w, days) in WINDOWS {
                let within = SignedDuration::from_hours(24 * days);
                if row
                    .expires_at
                    .is_some_and(|e| e.duration_since(now) <= within)
                {
                    *g.expiring.entry((row.provider.clone(), w)).or_default() += 1;
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

    /// Writes the gauge families.
    pub(super) fn render(&self, t: &mut Text) {
        t.family("keyrot_keys", "gauge", "Key slots tracked, by provider.");
        for (p, n) in &self.keys {
            t.sample("keyrot_keys", &[("provider", p)], n);
        }
        t.family(
            "keyrot_keys_expiring",
            "gauge",
            "Key slots whose current key expires within the window (or has expired), by provider.",
        );
        for ((p, w), n) in &self.expiring {
            t.sample("keyrot_keys_expiring", &[("provider", p), ("within", w)], n);
        }
        t.family(
            "keyrot_rotations_in_progress",
            "gauge",
            "Unfinished rotations by provider and state; state \"failed\" waits for an operator.",
        );
        for ((p, s), n) in &self.in_progress {
            t.sample(
                "keyrot_rotations_in_progress",
                &[("provider", p), ("state", s)],
                n,
            );
        }
        t.family(
            "keyrot_outbox_messages",
            "gauge",
            "Notifications in the outbox: pending (waiting to be sent) and dead (retry budget used up).",
        );
        t.sample(
            "keyrot_outbox_messages",
            &[("state", "pending")],
            self.outbox_pending,
        );
        t.sample(
            "keyrot_outbox_messages",
            &[("state", "dead")],
            self.outbox_dead,
        );
    }
}
