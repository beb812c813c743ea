//! The rotation workload of the store benchmarks (`durability`,
//! `postgres`): slots of the `local` provider, each with a live key, one
//! `file` sink, overlap 0, every slot rotated once through the real engine
//! (`Engine::start`) by `C` clients that each start a rotation and wait
//! for it to complete.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use jiff::{SignedDuration, Timestamp};
use keyrot_core::clock::{Clock, SystemClock};
use keyrot_core::model::{Initiator, KeyRecord, RotationState, Trigger};
use keyrot_core::store::{CommitStats, Store};
use keyrot_core::wake::Wake;
use keyrot_engine::rotation::{Engine, Runtime, StartRequest};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::live_local_key;

/// The config of a run: the local provider with `concurrency` runners, one
/// file sink, overlap 0, no mail. Its `[store]` names a redb file; a bench
/// on another store opens that store itself.
pub fn config_text(concurrency: usize) -> String {
    format!(
        r#"[daemon]
control_socket = "control.sock"
sync_schedule = "0 0 3 1 JAN *"

[store]
path = "state/state.redb"
master_key_file = "master.key"

[notify]
from = "keyrot@example.com"
transport = "none"

[[provider]]
name = "local"
type = "local"
max_concurrent = {concurrency}
default_lifetime = "365d"

[[sink]]
name = "out"
type = "file"
path = "out/{{name}}.json"
format = "json"

[[policy]]
name = "std"
new_key_lifetime = "365d"
rotate_before_expiry = "30d"
overlap = "0s"
jitter = false
"#
    )
}

/// The config of a run in `dir` (written there as `keyrot.toml`, with the
/// sink's `out/` directory).
pub fn load_config(dir: &Path, concurrency: usize) -> anyhow::Result<Arc<keyrot_config::Config>> {
    let cfg_path = dir.join("keyrot.toml");
    let text = config_text(concurrency);
    std::fs::write(&cfg_path, &text)?;
    std::fs::create_dir_all(dir.join("out"))?;
    let cfg = keyrot_config::load_str(&cfg_path, &text)
        .map_err(|e| anyhow::anyhow!("the bench config: {e}"))?;
    Ok(Arc::new(cfg))
}

pub fn key_name(i: usize) -> String {
    format!("svc-{i:05}")
}

/// Writes `n` slots, each bound to a live key of the local provider (so
/// that a rotation also revokes an old key), in one transaction.
pub fn seed(store: &Store, n: usize, now: Timestamp) -> anyhow::Result<()> {
    let created = now - SignedDuration::from_hours(24 * 300);
    let expires = now + SignedDuration::from_hours(24 * 20);
    store.write(|tx| {
        for i in 0..n {
            let name = key_name(i);
            let id = format!("lk_seed{i:06}");
            tx.local_put(&live_local_key(id.clone(), name.clone(), created, expires))?;
            // Built from JSON, so that fields the model gains later (with
            // serde defaults) do not break the bench.
            let rec: KeyRecord = serde_json::from_value(serde_json::json!({
                "slot": format!("local/{name}"),
                "provider": "local",
                "name": name,
                "current": {
                    "id": id,
                    "name": name,
                    "scopes": ["read:all"],
                    "created_by": "bench",
                    "created_at": created,
                    "expires_at": expires,
                    "last_used_at": null,
                },
                "policy": "std",
                "next_due": null,
                "active_rotation": null,
                "sinks": ["out"],
                "scopes": ["read:all"],
            }))
            .map_err(|e| keyrot_core::store::StoreError::Other(e.to_string()))?;
            tx.put_key(&rec)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Rotations waiting for their runner to stop, by id.
type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>;

/// Tells every client whose rotation no runner drives any more; runs until
/// `wake` is dropped. Engine::release wakes it after a runner stops.
async fn watch_runners(engine: Arc<Engine>, wake: Wake, waiting: Waiting) {
    let mut changed = wake.subscribe();
    while changed.changed().await.is_ok() {
        let running = engine.running();
        let mut w = waiting.lock().unwrap_or_else(|p| p.into_inner());
        let done: Vec<String> = w
            .keys()
            .filter(|id| !running.contains(*id))
            .cloned()
            .collect();
        for id in done {
            if let Some(tx) = w.remove(&id) {
                let _ = tx.send(());
            }
        }
    }
}

/// Starts one rotation of `slot` and returns once its runner stopped.
async fn rotate_one(engine: &Arc<Engine>, waiting: &Waiting, slot: &str) -> anyhow::Result<()> {
    let req = StartRequest {
        trigger: Trigger::Manual,
        reason: "store bench".into(),
        initiator: Initiator::default(),
        new_expires_at: None,
        old_expires_at: None,
        notify_contacts: false,
        reveal_psk: None,
    };
    let rec = engine
        .start(slot, req)
        .await
        .map_err(|e| anyhow::anyhow!("starting a rotation of {slot}: {e}"))?;
    let (tx, rx) = oneshot::channel();
    waiting
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(rec.id.clone(), tx);
    // The runner may have stopped before the rotation was registered.
    if !engine.running().contains(&rec.id) {
        waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&rec.id);
        return Ok(());
    }
    rx.await
        .map_err(|_| anyhow::anyhow!("the runner watcher stopped"))?;
    Ok(())
}

/// `after - before`, counter by counter.
pub fn stats_since(after: CommitStats, before: CommitStats) -> CommitStats {
    CommitStats {
        commits: after.commits - before.commits,
        deferred: after.deferred - before.deferred,
        durable_commits: after.durable_commits - before.durable_commits,
        flushes: after.flushes - before.flushes,
    }
}

/// What one run measured.
#[derive(Clone, Copy, Debug)]
pub struct Rotated {
    /// Wall time from the first start to the last completion.
    pub secs: f64,
    /// Store commit counters over that time.
    pub stats: CommitStats,
}

/// Rotates the `n` seeded slots of `store` once each with `concurrency`
/// clients, the config `cfg` (see [`load_config`]), on a 2-thread runtime
/// like the daemon's; then checks that every rotation completed with its
/// old key revoked. `during` runs right after the last completion, while
/// the engine still runs (e.g. to sample counters).
pub fn rotate_all(
    cfg: &Arc<keyrot_config::Config>,
    store: &Arc<Store>,
    n: usize,
    concurrency: usize,
    during: impl FnOnce(),
) -> anyhow::Result<Rotated> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // The daemon's shape: two async worker threads, the blocking pool.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let figures = rt.block_on(async {
        let runtime = Runtime::build(Arc::clone(cfg), store).map_err(anyhow::Error::msg)?;
        let (stop, tasks) = (CancellationToken::new(), TaskTracker::new());
        let wake = Wake::new();
        let engine = Engine::new(
            Arc::clone(store),
            runtime,
            Arc::clone(&clock),
            wake.clone(),
            stop.clone(),
            tasks.clone(),
        );
        let waiting: Waiting = Arc::default();
        let watcher = tokio::spawn(watch_runners(
            Arc::clone(&engine),
            wake.clone(),
            Arc::clone(&waiting),
        ));
        let next = Arc::new(AtomicUsize::new(0));
        let before = store.commit_stats();
        let start = Instant::now();
        let clients: Vec<_> = (0..concurrency)
            .map(|_| {
                let engine = Arc::clone(&engine);
                let waiting = Arc::clone(&waiting);
                let next = Arc::clone(&next);
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok::<(), anyhow::Error>(());
                        }
                        rotate_one(&engine, &waiting, &format!("local/{}", key_name(i))).await?;
                    }
                })
            })
            .collect();
        for c in clients {
            c.await??;
        }
        let secs = start.elapsed().as_secs_f64();
        let after = store.commit_stats();
        during();
        watcher.abort();
        stop.cancel();
        tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(10), tasks.wait()).await;
        Ok::<_, anyhow::Error>(Rotated {
            secs,
            stats: stats_since(after, before),
        })
    })?;
    drop(rt);

    // Every rotation completed, the old keys revoked.
    let rotations = store
        .rotations(None, usize::MAX)
        .context("reading the rotations")?;
    let completed = rotations
        .iter()
        .filter(|r| r.state == RotationState::Completed && r.old_revoked_at.is_some())
        .count();
    if completed != n {
        let other: Vec<String> = rotations
            .iter()
            .filter(|r| r.state != RotationState::Completed)
            .take(3)
            .map(|r| format!("{} {} {:?}", r.id, r.state, r.last_error))
            .collect();
        bail!("{completed} of {n} rotations completed; e.g. {other:?}");
    }
    Ok(figures)
}
