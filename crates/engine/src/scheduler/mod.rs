//! The scheduler: sleeps until the next instant in the store's due index
//! (a key's rotation start, a rotation's overlap end or retry) and is woken
//! early when the state machine changes a timer. No polling interval: an
//! idle daemon wakes only when something is due. Inventory sync from each
//! provider runs on its own cron (UTC). Beside the due loop run the
//! expiry-notice ladder (`notices`), the daily digest (`digest`) and the
//! daily history prune (`prune`), each sleeping until its own next
//! instant.

pub mod bind;
pub mod digest;
pub mod notices;
pub mod orphans;
pub mod prune;
pub mod refusals;
pub mod sync_retry;
#[cfg(test)]
mod sync_tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use tokio_util::sync::CancellationToken;

use crate::rotation::{Engine, StartRequest, plan};
use keyrot_core::model::{Initiator, KeyRecord};
use keyrot_core::store::DueTarget;
use keyrot_core::wake::Wake;
pub use sync_retry::SyncRetries;

/// Why an inventory sync failed.
#[derive(Debug)]
pub struct SyncError {
    /// What went wrong (ids and statuses, never secrets).
    pub message: String,
    /// How long the provider asked keyrot to wait (its Retry-After).
    pub retry_after: Option<SignedDuration>,
}

impl std::fmt::Display for SyncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<String> for SyncError {
    fn from(message: String) -> SyncError {
        SyncError {
            message,
            retry_after: None,
        }
    }
}

/// Pulls each provider's inventory and binds it to the configured slots,
/// rescheduling every slot of that provider; writes only the slots that
/// changed, and the provider's sync time. Returns the slots bound.
pub async fn sync_provider(engine: &Arc<Engine>, provider: &str) -> Result<usize, SyncError> {
    let rt = engine.runtime();
    let p = rt
        .providers
        .get(provider)
        .cloned()
        .ok_or_else(|| format!("provider {provider:?} is not configured"))?;
    let now = engine.now();
    // What the store says of this provider's slots before the listing is
    // asked for: a slot whose binding moves while the listing is in flight
    // (a rotation completing, or starting) keeps the store's binding.
    let name = provider.to_string();
    let before = engine
        .db({
            let name = name.clone();
            move |s| Ok(bindings(&s.keys()?, &name))
        })
        .await
        .map_err(|e| e.to_string())?;
    // What keyrot owned before the listing was asked for: a key that
    // stops being keyrot's while the listing is in flight (a rotation
    // completing) is no orphan of this sync.
    let sweeps = p.lists_tags();
    let revokes = sweeps
        && rt
            .config
            .provider(provider)
            .is_some_and(|c| c.revoke_orphans);
    let shield = if sweeps {
        let name = name.clone();
        engine
            .db(move |s| {
                let keys = s.keys()?;
                orphans::Shield::of(&keys, &name, |id| s.rotation(id))
            })
            .await
            .map_err(|e| e.to_string())?
    } else {
        orphans::Shield::default()
    };
    let listed = if p.capabilities().list {
        keyrot_core::failpoint::hit("before:list").map_err(|e| e.message)?;
        p.list(now).await.map_err(|e| SyncError {
            message: format!("listing keys: {e}"),
            retry_after: e.retry_after,
        })?
    } else {
        Vec::new()
    };
    keyrot_core::failpoint::hit("after:list").map_err(|e| e.message)?;
    // Names and ids are the provider's: a key whose name could move a sink
    // location (or fool a log reader) never enters the inventory.
    let (listed, refused) = refusals::screen(&rt.config, provider, listed);
    refusals::report(engine.metrics(), provider, &refused);
    let cfg = Arc::clone(&rt.config);
    let mail = crate::notify::Composer::new(Arc::clone(&cfg));
    let (written, unchanged, removed, duplicates, ended, fresh) = engine
        .db(move |s| {
            // Everything below is read in the write transaction itself, so
            // no rotation can move between what is read and what is written.
            s.write(|tx| {
                let existing = tx.keys()?;
                let mut in_flight = HashSet::new();
                for r in existing.iter().filter_map(|k| k.active_rotation.as_deref()) {
                    if let Some(k) = tx.rotation(r)?.and_then(|r| r.new_key) {
                        in_flight.insert(k.id);
                    }
                }
                let changed: HashSet<String> = bindings(&existing, &name)
                    .into_iter()
                    .filter(|(slot, now_bound)| before.get(slot) != Some(now_bound))
                    .map(|(slot, _)| slot)
                    .collect();
                let out = bind::bind(&cfg, &name, &listed, &existing, &in_flight, &changed, now);
                drop(existing);
                for rec in &out.records {
                    tx.put_key(rec)?;
                }
                for slot in &out.removed {
                    // A slot that leaves takes its kept secret with it.
                    if let Some(r) = tx.key(slot)?.and_then(|k| k.kept_secret) {
                        tx.wipe_secret(&r)?;
                    }
                    tx.delete_key(slot)?;
                }
                crate::rotation::push::drop_unkept(tx, &cfg, &name, now)?;
                tx.set_duplicates(&name, &out.duplicates)?;
                tx.set_last_sync(&name, now)?;
                let fresh = if sweeps {
                    orphans::sweep(tx, &mail, &name, &listed, &shield, revokes, now)?
                } else {
                    tx.set_orphans(&name, &[])?;
                    Vec::new()
                };
                refusals::queue(tx, &mail, &name, &refused, now)?;
                // The alert for each key that ended, in the transaction
                // that records it: told once, across restarts too.
                for (slot, e) in &out.ended {
                    let Some(rec) = out.records.iter().find(|r| &r.slot == slot) else {
                        continue;
                    };
                    for m in mail.key_ended(rec, e, now) {
                        if tx.message(&m.id)?.is_none() {
                            tx.put_message(&m)?;
                        }
                    }
                }
                // The key each such slot tracks, for the log (as written
                // above, or left as it was).
                let mut dups = Vec::new();
                for (slot, others) in out.duplicates {
                    let id = tx.key(&slot)?.and_then(|r| r.current).map(|k| k.id);
                    dups.push((slot, id, others));
                }
                Ok((
                    out.records.len(),
                    out.unchanged,
                    out.removed,
                    dups,
                    out.ended,
                    fresh,
                ))
            })
        })
        .await
        .map_err(|e| e.to_string())?;
    engine.metrics().synced(provider, now);
    for (slot, e) in ended {
        let state = crate::notify::ended::kind_word(e.kind);
        engine.metrics().key_ended(provider, state);
        let ago = crate::notify::notice::span_words(now.duration_since(e.ended_at));
        let expires = e
            .expires_at
            .map_or_else(|| "none".into(), |t| t.to_string());
        tracing::error!(key = %slot, key_id = %e.id, state, ended_at = %e.ended_at, expires_at = %expires,
            "the slot's key is {} ({ago} ago) and keyrot did not replace it: consumers that use it fail; its next rotation issues a new key",
            if e.kind == keyrot_core::model::EndKind::Expired { "EXPIRED" } else { "no longer listed by its provider, before its expiry" });
    }
    for slot in removed {
        tracing::warn!(key = %slot, "slot no longer matches any [[key]] entry; dropped from the inventory");
    }
    for (slot, tracked, others) in duplicates {
        let ids: Vec<&str> = others.iter().map(|k| k.id.as_str()).collect();
        tracing::warn!(
            key = %slot,
            key_id = tracked.as_deref().unwrap_or("-"),
            others = %ids.join(","),
            "the provider lists {} other live key(s) with this key's name ({}); keyrot tracks {} and leaves the others alone: revoke them if nothing uses them",
            ids.len(),
            ids.join(", "),
            tracked.as_deref().unwrap_or("none of them"),
        );
    }
    orphans::report(engine, provider, &fresh, revokes);
    if revokes {
        let me = keyrot_core::model::keyrot_identity();
        match orphans::revoke(engine, Some(provider), &me, true).await {
            Ok(done) => {
                for d in done.iter().filter(|d| !d.revoked) {
                    tracing::warn!(provider = %provider, key_id = %crate::names::shown(&d.id),
                        error = d.error.as_deref().unwrap_or(""), "orphan key not revoked; trying again at the next sync");
                }
            }
            Err(e) => {
                tracing::error!(provider = %provider, error = %e, "revoking orphan keys failed")
            }
        }
    }
    tracing::info!(provider = %provider, keys = written + unchanged, changed = written, "inventory synced");
    Ok(written + unchanged)
}

/// Each slot of `provider` with its binding: the current key's id and the
/// rotation running on it.
fn bindings(
    keys: &[KeyRecord],
    provider: &str,
) -> HashMap<String, (Option<String>, Option<String>)> {
    keys.iter()
        .filter(|k| k.provider == provider)
        .map(|k| {
            let cur = k.current.as_ref().map(|c| c.id.clone());
            (k.slot.clone(), (cur, k.active_rotation.clone()))
        })
        .collect()
}

/// Syncs every provider; errors are logged, not fatal, and each failed
/// provider is handed to `retries` (the sync loop tries it again).
pub async fn sync_all(engine: &Arc<Engine>, wake: &Wake, retries: &SyncRetries) {
    let names: Vec<String> = engine
        .runtime()
        .config
        .providers
        .iter()
        .map(|p| p.name.clone())
        .collect();
    retries.retain(&names);
    sync_some(engine, wake, retries, &names).await;
}

/// Syncs `names`, recording each outcome in `retries`.
async fn sync_some(engine: &Arc<Engine>, wake: &Wake, retries: &SyncRetries, names: &[String]) {
    for name in names {
        match sync_provider(engine, name).await {
            Ok(_) => retries.succeeded(name),
            // Removed by a reload while its retry was due: nothing to retry.
            Err(_) if !engine.runtime().providers.contains_key(name) => retries.succeeded(name),
            Err(e) => {
                let cfg = engine.runtime().config.daemon.retry.clone();
                let now = engine.now();
                let (attempt, at) = retries.failed(name, e.retry_after, &cfg, now);
                let after = keyrot_core::policy::format_duration(at.duration_since(now));
                tracing::error!(provider = %name, error = %e, attempt, retry_at = %at, "inventory sync failed; trying again in {after}");
            }
        }
    }
    keyrot_core::memory::release_free_memory();
    wake.notify();
}

/// What the due loop has already handed out, so that an entry that stays
/// in the index (a runner that could not move it) is not dispatched again
/// and again: an entry is dispatched once per instant.
#[derive(Default)]
struct Dispatched(HashMap<String, Timestamp>);

impl Dispatched {
    fn first_time(&mut self, id: &str, at: Timestamp) -> bool {
        self.0.insert(id.to_string(), at) != Some(at)
    }
}

/// Runs the due loop, the expiry-notice ladder, the daily history prune
/// and the daily digest until `stop` is cancelled; returns when all have
/// stopped.
pub async fn run(engine: Arc<Engine>, wake: Wake, stop: CancellationToken) {
    tokio::join!(
        due_loop(Arc::clone(&engine), wake.clone(), stop.clone()),
        notices::run(Arc::clone(&engine), wake.clone(), stop.clone()),
        prune::run(Arc::clone(&engine), stop.clone()),
        digest::run(engine, wake, stop),
    );
}

/// Dispatches what the due index says is due, until `stop`.
async fn due_loop(engine: Arc<Engine>, wake: Wake, stop: CancellationToken) {
    let mut changed = wake.subscribe();
    let mut dispatched = Dispatched::default();
    loop {
        let now = engine.now();
        let next = match tick(&engine, &mut dispatched, now).await {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(error = %e, "scheduler: store error; retrying in 60s");
                Some(now + SignedDuration::from_secs(60))
            }
        };
        let sleep = next
            .map(|at| at.duration_since(engine.now()).max(SignedDuration::ZERO))
            .and_then(|d| std::time::Duration::try_from(d).ok());
        if let Some(at) = next {
            tracing::debug!(next = %at, "scheduler sleeping until the next due instant");
        }
        tokio::select! {
            _ = async { match sleep { Some(d) => tokio::time::sleep(d).await, None => std::future::pending().await } } => {}
            r = changed.changed() => if r.is_err() { return },
            _ = stop.cancelled() => return,
        }
    }
}

/// Dispatches everything due at `now`; returns the next instant to wake.
async fn tick(
    engine: &Arc<Engine>,
    dispatched: &mut Dispatched,
    now: Timestamp,
) -> Result<Option<Timestamp>, String> {
    let due = engine
        .db(move |s| s.due_until(now))
        .await
        .map_err(|e| e.to_string())?;
    let running = engine.running();
    // Forget entries that left the index, so the map stays as small as the
    // set of currently due entries over a year of uptime.
    let live: std::collections::HashSet<String> = due
        .iter()
        .map(|(_, t)| match t {
            DueTarget::Rotation(id) => format!("r:{id}"),
            DueTarget::Key(slot) => format!("k:{slot}"),
        })
        .collect();
    dispatched.0.retain(|k, _| live.contains(k));
    for (at, target) in due {
        match target {
            DueTarget::Rotation(id) => {
                if !running.contains(&id) && dispatched.first_time(&format!("r:{id}"), at) {
                    engine.spawn(&id);
                }
            }
            DueTarget::Key(slot) => {
                if dispatched.first_time(&format!("k:{slot}"), at)
                    && let Err(e) = dispatch_key(engine, &slot, now).await
                {
                    tracing::error!(key = %slot, error = %e, "cannot start rotation");
                }
            }
        }
    }
    engine
        .db(move |s| s.next_due_after(now))
        .await
        .map_err(|e| e.to_string())
}

/// A slot's start instant has come: start its rotation, or move its start
/// (a group stagger, a window that closed while keyrot was down).
async fn dispatch_key(engine: &Arc<Engine>, slot: &str, now: Timestamp) -> Result<(), String> {
    let cfg = Arc::clone(&engine.runtime().config);
    let slot_s = slot.to_string();
    let start = engine
        .db(move |s| {
            s.write(|tx| {
                let Some(mut rec) = tx.key(&slot_s)? else {
                    return Ok(None);
                };
                let others: Vec<KeyRecord> = if rec.group.is_some() {
                    tx.keys()?
                } else {
                    Vec::new()
                };
                let last = plan::group_last_start(&rec, &others);
                let decision = if rec.active_rotation.is_none() {
                    plan::decide(&cfg, &rec, last, now)
                } else {
                    None
                };
                match decision {
                    Some(d) if d.start_at.is_some_and(|t| t <= now) => {
                        let trigger = plan::trigger(&rec, &d);
                        let reason = match cfg.policy(&rec.policy).and_then(|p| p.reason.as_ref()) {
                            Some(r) => format!("{r} ({})", d.explain),
                            None => d.explain,
                        };
                        Ok(Some((trigger, reason)))
                    }
                    _ => {
                        plan::schedule(&cfg, &mut rec, last, now);
                        tx.put_key(&rec)?;
                        Ok(None)
                    }
                }
            })
        })
        .await
        .map_err(|e| e.to_string())?;
    if let Some((trigger, reason)) = start {
        if trigger == keyrot_core::model::Trigger::Emergency {
            tracing::warn!(key = %slot, reason = %reason, "emergency rotation outside the window");
        }
        let req = StartRequest {
            trigger,
            reason,
            initiator: Initiator {
                rotated_by: Some(keyrot_core::model::keyrot_identity()),
                initiated_from: Some("schedule".into()),
                rotation_policy_id: None,
            },
            new_expires_at: None,
            old_expires_at: None,
            notify_contacts: false,
            reveal_psk: None,
        };
        engine.start(slot, req).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Runs the periodic inventory sync until `stop`, sleeping until each
/// occurrence of `daemon.sync_schedule` (read afresh after every sync, so a
/// reload's schedule applies from the next occurrence on), or until the
/// earliest retry of a provider whose sync failed (wherever it ran: at
/// start, on reload or here), whichever comes first. A retry syncs the
/// providers due for one; a scheduled occurrence syncs them all. Nothing
/// wakes it in between but a newly recorded failure.
pub async fn sync_loop(
    engine: Arc<Engine>,
    wake: Wake,
    retries: SyncRetries,
    stop: CancellationToken,
) {
    let mut failed = retries.subscribe();
    let mut warned = false;
    loop {
        // Failures recorded from here on wake the loop.
        failed.borrow_and_update();
        let schedule = engine.runtime().config.daemon.sync_schedule.clone();
        let scheduled = schedule.next_after(engine.now());
        if scheduled.is_none() && !warned {
            tracing::error!(schedule = %schedule, "sync schedule never fires; periodic sync is off");
            warned = true;
        }
        let retry = retries.next();
        let (next, is_retry) = match (scheduled, retry) {
            (Some(s), Some(r)) if r < s => (Some(r), true),
            (Some(s), _) => (Some(s), false),
            (None, r) => (r, true),
        };
        let wait = next.map(|at| {
            std::time::Duration::try_from(at.duration_since(engine.now()).max(SignedDuration::ZERO))
                .unwrap_or_default()
        });
        tokio::select! {
            _ = async { match wait { Some(d) => tokio::time::sleep(d).await, None => std::future::pending().await } } => {
                if is_retry {
                    let due = retries.due(engine.now());
                    if !due.is_empty() {
                        sync_some(&engine, &wake, &retries, &due).await;
                    }
                } else {
                    sync_all(&engine, &wake, &retries).await;
                }
            }
            r = failed.changed() => if r.is_err() { return },
            _ = stop.cancelled() => return,
        }
    }
}
