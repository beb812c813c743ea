//! The daily digest, on `notify.digest_schedule` (a 6-field cron, UTC):
//! at each occurrence, every recipient who is told about a key that
//! expires within 30 days gets one digest of those keys, under an id
//! derived from the UTC date and the recipient, so a schedule that fires
//! more often than daily still sends one digest per person and day. A
//! digest missed while keyrot was down is not sent late.
//!
//! The loop sleeps until the next occurrence; a change (e.g. a reload)
//! wakes it to read the schedule again. It never polls.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use tokio_util::sync::CancellationToken;

use crate::notify::Composer;
use crate::rotation::Engine;
use keyrot_config::Config;
use keyrot_core::policy::Schedule;
use keyrot_core::store::{Store, StoreError};
use keyrot_core::wake::Wake;

/// What one digest run did.
#[derive(Debug, Default)]
struct Run {
    /// Keys that expire within 30 days (for anyone).
    keys: usize,
    /// Digests queued now.
    queued: usize,
    /// Digests already queued today.
    earlier: usize,
}

/// Builds today's digests and queues those not queued yet. `known` holds
/// the ids already in the outbox, so later runs of the day write nothing.
fn make(
    store: &Store,
    cfg: Arc<Config>,
    known: &mut HashSet<String>,
    now: Timestamp,
) -> Result<Run, StoreError> {
    let keys = store.keys()?;
    let mut rotations = BTreeMap::new();
    for id in keys.iter().filter_map(|k| k.active_rotation.as_ref()) {
        if let Some(r) = store.rotation(id)? {
            rotations.insert(id.clone(), r);
        }
    }
    let horizon = now + crate::notify::digest::HORIZON;
    let mut run = Run {
        keys: keys
            .iter()
            .filter(|k| {
                k.current
                    .as_ref()
                    .and_then(|c| c.expires_at)
                    .is_some_and(|e| e <= horizon)
            })
            .count(),
        ..Run::default()
    };
    if run.keys == 0 {
        return Ok(run);
    }
    let mail = Composer::new(cfg);
    let mut digests = mail.digests(&keys, &rotations, now);
    let today: HashSet<String> = digests.iter().map(|m| m.id.clone()).collect();
    known.retain(|id| today.contains(id));
    digests.retain(|m| !known.contains(&m.id));
    run.earlier = today.len() - digests.len();
    if digests.is_empty() {
        return Ok(run);
    }
    let (queued, earlier) = store.write(|tx| {
        let (mut queued, mut earlier) = (0, 0);
        for m in &digests {
            if tx.message(&m.id)?.is_some() {
                earlier += 1;
            } else {
                tx.put_message(m)?;
                queued += 1;
            }
        }
        Ok((queued, earlier))
    })?;
    run.queued = queued;
    run.earlier += earlier;
    known.extend(today);
    Ok(run)
}

/// Runs the digest schedule until `stop`.
pub(super) async fn run(engine: Arc<Engine>, wake: Wake, stop: CancellationToken) {
    let mut changed = wake.subscribe();
    let mut known: HashSet<String> = HashSet::new();
    // The schedule in force and its next occurrence.
    let mut armed: Option<(Schedule, Option<Timestamp>)> = None;
    loop {
        let cfg = Arc::clone(&engine.runtime().config);
        let schedule = cfg.notify.digest_schedule.as_ref();
        let now = engine.now();
        if armed.as_ref().map(|(s, _)| s) != schedule {
            armed = schedule.map(|s| (s.clone(), s.next_after(now)));
        }
        let at = armed.as_ref().and_then(|(_, at)| *at);
        if let Some(at) = at.filter(|at| *at <= now) {
            let mut k = std::mem::take(&mut known);
            match engine
                .db(move |s| make(s, cfg, &mut k, now).map(|r| (r, k)))
                .await
            {
                Ok((r, k)) => {
                    known = k;
                    if r.queued > 0 {
                        wake.notify();
                    }
                    tracing::info!(
                        keys = r.keys,
                        queued = r.queued,
                        already_queued = r.earlier,
                        "daily digest: keys expiring within 30 days"
                    );
                }
                Err(e) => tracing::error!(error = %e, "daily digest: store error"),
            }
            if let Some((s, next)) = armed.as_mut() {
                *next = s.next_after(at.max(now));
            }
            continue;
        }
        let sleep = at
            .map(|at| at.duration_since(engine.now()).max(SignedDuration::ZERO))
            .and_then(|d| std::time::Duration::try_from(d).ok());
        tokio::select! {
            _ = async { match sleep { Some(d) => tokio::time::sleep(d).await, None => std::future::pending().await } } => {}
            r = changed.changed() => if r.is_err() { return },
            _ = stop.cancelled() => return,
        }
    }
}
