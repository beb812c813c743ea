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

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use keyrot_core::clock::{Clock, SystemClock};
use keyrot_core::crypto::MasterKey;
use keyrot_core::store::{CommitStats, Store};

mod common;
use common::{env_num, median, rotations};

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

/// `n` rotations by `concurrency` clients in a fresh store under `base`.
fn run_keyrot(base: &Path, n: usize, concurrency: usize, group: bool) -> anyhow::Result<Run> {
    let dir = tempfile::Builder::new()
        .prefix("keyrot-durability-")
        .tempdir_in(base)
        .context("creating the run directory")?;
    let cfg = rotations::load_config(dir.path(), concurrency)?;
    let store = Arc::new(Store::open(&cfg.store.path, MasterKey::generate())?);
    rotations::seed(&store, n, SystemClock.now())?;
    store.set_group_commit(group);
    let done = rotations::rotate_all(&cfg, &store, n, concurrency, || ())?;
    Ok(Run {
        rotations: n,
        secs: done.secs,
        stats: done.stats,
    })
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
