//! Durability benchmark (issue 9): what durable store commits cost a
//! rotation, against what this disk can fsync.
//!
//! `cargo bench --bench durability` (or `bash scripts/bench.sh durability`).
//! Everything runs in a temporary directory under `target/`, so on the disk
//! that holds the repository. Each repeat measures:
//!
//! - the raw fsync rate: a 4 KiB write at the start of a file, then
//!   `fsync` (what the file sink calls, twice per write), in a loop for
//!   `KEYROT_DURABILITY_FSYNC_SECS` seconds, once per repeat; and the same
//!   with `fdatasync` (what redb calls per durable commit) right before
//!   each keyrot run, whose ratio uses it (a disk shared with other work
//!   changes its rate from minute to minute);
//! - keyrot: rotations of `local`-provider keys (each with a current key,
//!   so the full path: issue, one `file` sink, verify, overlap 0, revoke)
//!   through the real engine (`Engine::start`, runners limited by the
//!   provider's `max_concurrent`), by `C` clients that each start a
//!   rotation and wait for it to complete, for C = 1 and C = 64, with
//!   group commit on (the default) and off (`Store::set_group_commit`:
//!   one fsync per commit, as before). Counted from the store's
//!   `CommitStats`: commits, and durable commits (one fsync each).
//!
//! The fsync bound of a configuration is the raw `fdatasync` rate measured
//! right before the run divided by its store commits per rotation: the
//! rotations/s keyrot would reach if every commit cost exactly one fsync
//! and nothing else did (the target is a ratio of 0.5 at C = 64). The
//! ratio is rotations/s over that bound; group commit, which shares one
//! fsync among concurrent commits, can take it past 1. Also shown: the
//! bound by durable commits (raw rate / fsyncs per rotation), which rises
//! with every fsync group commit saves, and keyrot's ratio to it: the share
//! of the disk's fsync capacity keyrot still uses.
//!
//! Knobs: `KEYROT_DURABILITY_N64` (2000 rotations at C = 64),
//! `KEYROT_DURABILITY_N1` (300 at C = 1), `KEYROT_DURABILITY_REPEATS` (3;
//! figures are medians), `KEYROT_DURABILITY_FSYNC_SECS` (3). No log
//! subscriber is installed: log formatting is not in the figures. Prints a
//! table, then one JSON line.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use jiff::{SignedDuration, Timestamp};
use keyrot_core::clock::{Clock, SystemClock};
use keyrot_core::crypto::MasterKey;
use keyrot_core::model::{Initiator, KeyRecord, RotationState, Trigger};
use keyrot_core::store::{CommitStats, Store};
use keyrot_core::wake::Wake;
use keyrot_engine::rotation::{Engine, Runtime, StartRequest};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod common;
use common::{env_num, live_local_key, median};

/// The bench's knobs, from the environment.
struct Knobs {
    /// Rotations at concurrency 1.
    n1: usize,
    /// Rotations at concurrency 64.
    n64: usize,
    /// Repeats (medians are reported).
    repeats: usize,
    /// Seconds per raw fsync loop.
    fsync_secs: f64,
}

impl Knobs {
    fn from_env() -> anyhow::Result<Knobs> {
        Ok(Knobs {
            n1: env_num("KEYROT_DURABILITY_N1", 300)?.max(1),
            n64: env_num("KEYROT_DURABILITY_N64", 2000)?.max(1),
            repeats: env_num("KEYROT_DURABILITY_REPEATS", 3)?.max(1),
            fsync_secs: env_num("KEYROT_DURABILITY_FSYNC_SECS", 3.0)?,
        })
    }
}

/// How a raw sync loop syncs.
#[derive(Clone, Copy)]
enum SyncKind {
    /// `fdatasync`.
    Data,
    /// `fsync`.
    All,
}

/// Syncs per second: 4 KiB written at offset 0, then synced, for `secs`.
fn fsync_rate(dir: &Path, secs: f64, kind: SyncKind) -> anyhow::Result<f64> {
    let path = dir.join("fsync-probe");
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let block = vec![0x5au8; 4096];
    // The first sync also allocates the block: not part of the loop.
    file.write_all_at(&block, 0)?;
    file.sync_all()?;
    let limit = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < limit {
        file.write_all_at(&block, 0)?;
        match kind {
            SyncKind::Data => file.sync_data()?,
            SyncKind::All => file.sync_all()?,
        }
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(rate)
}

/// One keyrot run's figures.
#[derive(Clone, Copy, Debug)]
struct Run {
    /// Rotations completed.
    rotations: usize,
    /// Wall time from the first start to the last completion.
    secs: f64,
    /// Store commit counters over the run.
    stats: CommitStats,
}

impl Run {
    fn per_sec(&self) -> f64 {
        self.rotations as f64 / self.secs
    }

    fn commits_per_rotation(&self) -> f64 {
        self.stats.commits as f64 / self.rotations as f64
    }

    fn durable_per_rotation(&self) -> f64 {
        self.stats.durable_commits as f64 / self.rotations as f64
    }
}

/// The config of a run: the local provider with `concurrency` runners, one
/// file sink, overlap 0, no mail.
fn config_text(concurrency: usize) -> String {
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

fn key_name(i: usize) -> String {
    format!("svc-{i:05}")
}

/// Writes `n` slots, each bound to a live key of the local provider (so
/// that a rotation also revokes an old key), in one transaction.
fn seed(store: &Store, n: usize, now: Timestamp) -> anyhow::Result<()> {
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
        reason: "durability bench".into(),
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

/// `n` rotations by `concurrency` clients in a fresh store under `base`.
fn run_keyrot(base: &Path, n: usize, concurrency: usize, group: bool) -> anyhow::Result<Run> {
    let dir = tempfile::Builder::new()
        .prefix("keyrot-durability-")
        .tempdir_in(base)
        .context("creating the run directory")?;
    let cfg_path = dir.path().join("keyrot.toml");
    let text = config_text(concurrency);
    std::fs::write(&cfg_path, &text)?;
    std::fs::create_dir_all(dir.path().join("out"))?;
    let cfg = keyrot_config::load_str(&cfg_path, &text)
        .map_err(|e| anyhow::anyhow!("the bench config: {e}"))?;
    let cfg = Arc::new(cfg);
    let store = Arc::new(Store::open(&cfg.store.path, MasterKey::generate())?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    seed(&store, n, clock.now())?;
    store.set_group_commit(group);

    // The daemon's shape: two async worker threads, the blocking pool.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let figures = rt.block_on(async {
        let runtime = Runtime::build(Arc::clone(&cfg), &store).map_err(anyhow::Error::msg)?;
        let (stop, tasks) = (CancellationToken::new(), TaskTracker::new());
        let wake = Wake::new();
        let engine = Engine::new(
            Arc::clone(&store),
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
        watcher.abort();
        stop.cancel();
        tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(10), tasks.wait()).await;
        Ok::<_, anyhow::Error>(Run {
            rotations: n,
            secs,
            stats: CommitStats {
                commits: after.commits - before.commits,
                deferred: after.deferred - before.deferred,
                durable_commits: after.durable_commits - before.durable_commits,
                flushes: after.flushes - before.flushes,
            },
        })
    })?;
    drop(rt);

    // Every rotation completed, the old keys revoked.
    let rotations = store.rotations(None, usize::MAX)?;
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

/// The directory runs are made in: under `target/`, on the repository's disk.
fn base_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("bench-durability")
}

/// One configuration: concurrency and group commit.
#[derive(Clone, Copy)]
struct Case {
    concurrency: usize,
    group: bool,
}

fn main() -> anyhow::Result<()> {
    let knobs = Knobs::from_env()?;
    let base = base_dir();
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let cases = [
        Case {
            concurrency: 1,
            group: true,
        },
        Case {
            concurrency: 1,
            group: false,
        },
        Case {
            concurrency: 64,
            group: true,
        },
        Case {
            concurrency: 64,
            group: false,
        },
    ];
    eprintln!(
        "durability: {} repeat(s) in {}; C=1: {} rotations, C=64: {} rotations",
        knobs.repeats,
        base.display(),
        knobs.n1,
        knobs.n64
    );
    let mut fdatasync = Vec::new();
    let mut fsync = Vec::new();
    let mut runs: Vec<Vec<(Run, f64)>> = vec![Vec::new(); cases.len()];
    let probe = tempfile::Builder::new()
        .prefix("fsync-")
        .tempdir_in(&base)?;
    for repeat in 0..knobs.repeats {
        let all = fsync_rate(probe.path(), knobs.fsync_secs, SyncKind::All)?;
        eprintln!("repeat {}: fsync {all:.0}/s", repeat + 1);
        fsync.push(all);
        for (i, case) in cases.iter().enumerate() {
            let n = if case.concurrency == 1 {
                knobs.n1
            } else {
                knobs.n64
            };
            let data = fsync_rate(probe.path(), knobs.fsync_secs, SyncKind::Data)?;
            fdatasync.push(data);
            let run = run_keyrot(&base, n, case.concurrency, case.group)?;
            eprintln!(
                "repeat {}: fdatasync {data:.0}/s, then C={} group commit {}: {:.1} rotations/s, {:.2} commits and {:.2} durable commits per rotation",
                repeat + 1,
                case.concurrency,
                if case.group { "on" } else { "off" },
                run.per_sec(),
                run.commits_per_rotation(),
                run.durable_per_rotation()
            );
            runs[i].push((run, data));
        }
    }

    drop(probe);
    let raw_data = median(&fdatasync);
    let raw_all = median(&fsync);
    let mut rows = Vec::new();
    for (case, results) in cases.iter().zip(&runs) {
        let med = |f: &dyn Fn(&Run, f64) -> f64| {
            median(&results.iter().map(|(r, d)| f(r, *d)).collect::<Vec<_>>())
        };
        let per_sec = med(&|r, _| r.per_sec());
        let commits = med(&|r, _| r.commits_per_rotation());
        let durable = med(&|r, _| r.durable_per_rotation());
        let deferred = med(&|r, _| r.stats.deferred as f64 / r.rotations as f64);
        let flushes = med(&|r, _| r.stats.flushes as f64 / r.rotations as f64);
        // Each run's bound uses the fdatasync rate measured right before it.
        let raw = med(&|_, d| d);
        let bound = med(&|r, d| d / r.commits_per_rotation());
        let ratio = med(&|r, d| r.per_sec() / (d / r.commits_per_rotation()));
        let bound_durable = med(&|r, d| d / r.durable_per_rotation());
        let ratio_durable = med(&|r, d| r.per_sec() / (d / r.durable_per_rotation()));
        rows.push(serde_json::json!({
            "concurrency": case.concurrency,
            "group_commit": case.group,
            "rotations": results.first().map_or(0, |(r, _)| r.rotations),
            "rotations_per_sec": round(per_sec, 1),
            "fdatasync_per_sec": round(raw, 0),
            "commits_per_rotation": round(commits, 2),
            "durable_commits_per_rotation": round(durable, 2),
            "deferred_commits_per_rotation": round(deferred, 2),
            "flushes_per_rotation": round(flushes, 2),
            "fsync_bound": round(bound, 1),
            "ratio_to_fsync_bound": round(ratio, 3),
            "durable_commit_bound": round(bound_durable, 1),
            "ratio_to_durable_commit_bound": round(ratio_durable, 3),
        }));
    }

    println!();
    println!(
        "raw 4 KiB write + fdatasync: {raw_data:.0}/s (median of {} probes, one before each run); + fsync: {raw_all:.0}/s (median of {})",
        knobs.repeats * cases.len(),
        knobs.repeats
    );
    println!(
        "{:>3} {:>5} {:>6} {:>8} {:>10} {:>8} {:>8} {:>8} {:>10} {:>7} {:>10} {:>7}",
        "C",
        "group",
        "rots",
        "fdsync/s",
        "rot/s",
        "commits",
        "durable",
        "flushes",
        "bound",
        "ratio",
        "dur.bound",
        "ratio"
    );
    for row in &rows {
        println!(
            "{:>3} {:>5} {:>6} {:>8.0} {:>10.1} {:>8.2} {:>8.2} {:>8.2} {:>10.1} {:>7.3} {:>10.1} {:>7.3}",
            row["concurrency"].as_u64().unwrap_or(0),
            if row["group_commit"].as_bool().unwrap_or(false) {
                "on"
            } else {
                "off"
            },
            row["rotations"].as_u64().unwrap_or(0),
            row["fdatasync_per_sec"].as_f64().unwrap_or(0.0),
            row["rotations_per_sec"].as_f64().unwrap_or(0.0),
            row["commits_per_rotation"].as_f64().unwrap_or(0.0),
            row["durable_commits_per_rotation"].as_f64().unwrap_or(0.0),
            row["flushes_per_rotation"].as_f64().unwrap_or(0.0),
            row["fsync_bound"].as_f64().unwrap_or(0.0),
            row["ratio_to_fsync_bound"].as_f64().unwrap_or(0.0),
            row["durable_commit_bound"].as_f64().unwrap_or(0.0),
            row["ratio_to_durable_commit_bound"].as_f64().unwrap_or(0.0),
        );
    }
    println!(
        "bound (the fsync bound) = raw fdatasync/s / commits per rotation; dur.bound = raw fdatasync/s / durable commits (fsyncs) per rotation; ratio = rot/s / the bound before it (medians over repeats)"
    );
    let json = serde_json::json!({
        "bench": "durability",
        "repeats": knobs.repeats,
        "fdatasync_per_sec": round(raw_data, 0),
        "fsync_per_sec": round(raw_all, 0),
        "runs": rows,
    });
    println!("{json}");
    Ok(())
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}
