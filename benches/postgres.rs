//! PostgreSQL benchmark: rotations/s on a PostgreSQL store against what
//! PostgreSQL itself allows for the same commits, measured in the same run.
//!
//! `cargo bench --bench postgres` (or `bash scripts/bench.sh postgres`).
//! It starts a PostgreSQL server of its own with the test harness
//! (`PgServer::start`: a fresh cluster on loopback, `fsync=on`,
//! `synchronous_commit` at its default, on) and stops it at the end.
//!
//! - census: keyrot rotates `KEYROT_PG_CENSUS` slots at C = 1 on a
//!   database that logs every statement; the log gives the commits per
//!   rotation, the statements in each (beyond `BEGIN`, the write lock, the
//!   lease check and `COMMIT`) and the reads outside writes. Not timed.
//! - keyrot: the workload of the durability bench (`local`-provider slots
//!   with a live key, one `file` sink, overlap 0, every slot rotated once
//!   through the real engine by C clients that each start a rotation and
//!   wait for it to complete), for C = 1 and C = 64, on a fresh database
//!   each run: the store opened with a master key and `pool_size`
//!   connections, holding the leader lease. Commits are counted by the
//!   store (`Store::commit_stats`).
//! - bound: right before each keyrot run, on a fresh database, a raw
//!   client with keyrot's driver and connection options, as many
//!   connections and the same C makes the census's commits per rotation,
//!   each of keyrot's shape with the census's statements spread over them
//!   as upserts of rows of keyrot's mean size (`postgres/raw.rs`): the
//!   rotations/s keyrot would reach if it cost nothing but its commits.
//!   ratio = keyrot rotations/s ÷ that bound.
//!
//! Knobs: `KEYROT_PG_N64` (2000 rotations at C = 64), `KEYROT_PG_N1` (300
//! at C = 1), `KEYROT_PG_REPEATS` (3; figures are medians),
//! `KEYROT_PG_POOL` (pool size, 16), `KEYROT_PG_CENSUS` (50). Prints a
//! table, then one JSON line.

#[path = "postgres/census.rs"]
mod census;
mod common;
#[path = "postgres/cpu.rs"]
mod cpu;
#[path = "postgres/raw.rs"]
mod raw;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use keyrot_core::clock::{Clock, SystemClock};
use keyrot_core::crypto::MasterKey;
use keyrot_core::pgserver::PgServer;
use keyrot_core::store::{PgOptions, Store};
use postgres::NoTls;
use secrecy::SecretString;

use common::{env_num, median, rotations};

/// The bench's knobs, from the environment.
struct Knobs {
    n1: usize,
    n64: usize,
    repeats: usize,
    pool: usize,
    census: usize,
}

impl Knobs {
    fn from_env() -> anyhow::Result<Knobs> {
        Ok(Knobs {
            n1: env_num("KEYROT_PG_N1", 300)?.max(1),
            n64: env_num("KEYROT_PG_N64", 2000)?.max(1),
            repeats: env_num("KEYROT_PG_REPEATS", 3)?.max(1),
            pool: env_num("KEYROT_PG_POOL", 16)?.max(1),
            census: env_num("KEYROT_PG_CENSUS", 50)?.max(1),
        })
    }
}

/// The server, its store options and where run directories go.
struct Bench<'a> {
    server: &'a PgServer,
    opts: PgOptions,
    base: PathBuf,
    postmaster: u32,
}

/// One timed run (keyrot's or the raw client's).
#[derive(Clone, Copy, Debug)]
struct Run {
    rotations: usize,
    secs: f64,
    /// Store commits (keyrot) or commits made (raw).
    commits: u64,
    cpu: cpu::Spent,
}

impl Run {
    fn per_sec(&self) -> f64 {
        self.rotations as f64 / self.secs
    }

    fn per_rotation(&self, x: f64) -> f64 {
        x / self.rotations as f64
    }
}

impl Bench<'_> {
    /// A superuser connection to `url`.
    fn admin(url: &str) -> anyhow::Result<postgres::Client> {
        postgres::Client::connect(url, NoTls).context("connecting to PostgreSQL")
    }

    /// A fresh store in a fresh database, holding the lease, with `n`
    /// seeded slots; the database's URL too.
    fn store(&self, n: usize, setup: &str) -> anyhow::Result<(Arc<Store>, String)> {
        let url = self.server.fresh_database().map_err(anyhow::Error::msg)?;
        if !setup.is_empty() {
            let db = url
                .rsplit('/')
                .next()
                .and_then(|s| s.split('?').next())
                .context("the URL names no database")?;
            Self::admin(&url)?.batch_execute(&setup.replace("DB", db))?;
        }
        let store = Store::open_postgres(
            &SecretString::from(url.clone()),
            &self.opts,
            Some(MasterKey::generate()),
        )?;
        let hour = Duration::from_secs(3600);
        store
            .acquire_lease("bench", hour, hour * 5 / 6)?
            .context("the lease of a fresh database is taken")?;
        rotations::seed(&store, n, SystemClock.now())?;
        Ok((Arc::new(store), url))
    }

    /// `n` rotations by `c` clients in a fresh store.
    fn keyrot(&self, n: usize, c: usize) -> anyhow::Result<Run> {
        let (store, _) = self.store(n, "")?;
        let dir = tempfile::Builder::new()
            .prefix("keyrot-pg-")
            .tempdir_in(&self.base)?;
        let cfg = rotations::load_config(dir.path(), c)?;
        let before = cpu::Sample::now(self.postmaster);
        let mut after = None;
        let done = rotations::rotate_all(&cfg, &store, n, c, || {
            after = Some(cpu::Sample::now(self.postmaster))
        })?;
        let after = after.context("no CPU sample")?;
        Ok(Run {
            rotations: n,
            secs: done.secs,
            commits: done.stats.commits,
            cpu: before.to(&after),
        })
    }

    /// The raw client's `n` rotations of `shape` by `c` clients.
    fn raw(&self, shape: raw::Shape, n: usize, c: usize) -> anyhow::Result<Run> {
        let url = self.server.fresh_database().map_err(anyhow::Error::msg)?;
        let config = raw::config(
            &url,
            self.opts.connect_timeout,
            self.opts.idle_in_transaction,
        )?;
        let before = cpu::Sample::now(self.postmaster);
        let mut after = None;
        let secs = raw::run(&config, self.opts.pool_size, shape, n, c, || {
            after = Some(cpu::Sample::now(self.postmaster))
        })?;
        let after = after.context("no CPU sample")?;
        Ok(Run {
            rotations: n,
            secs,
            commits: (n * shape.commits) as u64,
            cpu: before.to(&after),
        })
    }

    /// The census: keyrot's statements over `n` rotations at C = 1, and
    /// the mean size of the rows it wrote.
    fn census(&self, n: usize) -> anyhow::Result<(census::Census, usize, u64)> {
        let (store, url) = self.store(n, "ALTER DATABASE DB SET log_statement = 'all'")?;
        let mut admin = Self::admin(&url)?;
        let log = census::log_path(&mut admin)?;
        let dir = tempfile::Builder::new()
            .prefix("keyrot-pg-census-")
            .tempdir_in(&self.base)?;
        let cfg = rotations::load_config(dir.path(), 1)?;
        let from = census::log_len(&log)?;
        let mut to = 0;
        let done = rotations::rotate_all(&cfg, &store, n, 1, || {
            to = census::log_len(&log).unwrap_or(0)
        })?;
        let counted = census::count(&census::log_span(&log, from, to)?);
        let bytes: f64 = admin
            .query_one(
                "SELECT avg(length(rec))::float8 FROM (SELECT rec FROM keyrot_rotations \
                 UNION ALL SELECT rec FROM keyrot_keys UNION ALL SELECT rec FROM keyrot_audit \
                 UNION ALL SELECT rec FROM keyrot_local_keys) t",
                &[],
            )?
            .get(0);
        Ok((counted, bytes.round() as usize, done.stats.commits))
    }
}

/// The directory run configs and sink files go in: under `target/`.
fn base_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("bench-postgres")
}

fn main() -> anyhow::Result<()> {
    let knobs = Knobs::from_env()?;
    let server = PgServer::start().map_err(anyhow::Error::msg)?;
    let out = bench(&server, &knobs);
    let stopped = server.stop().map_err(anyhow::Error::msg);
    out?;
    stopped
}

fn bench(server: &PgServer, knobs: &Knobs) -> anyhow::Result<()> {
    let base = base_dir();
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let url = server.fresh_database().map_err(anyhow::Error::msg)?;
    let mut admin = Bench::admin(&url)?;
    let version: String = admin.query_one("SHOW server_version", &[])?.get(0);
    let data: String = admin.query_one("SHOW data_directory", &[])?.get(0);
    let settings: Vec<String> = ["fsync", "synchronous_commit", "wal_sync_method"]
        .iter()
        .map(|s| {
            let v: String = admin.query_one(&format!("SHOW {s}"), &[])?.get(0);
            Ok(format!("{s}={v}"))
        })
        .collect::<anyhow::Result<_>>()?;
    drop(admin);
    let bench = Bench {
        server,
        opts: PgOptions {
            pool_size: knobs.pool,
            ..PgOptions::default()
        },
        base,
        postmaster: cpu::postmaster(Path::new(&data)).context("no postmaster.pid")?,
    };
    eprintln!(
        "postgres: PostgreSQL {version} ({}), pool {}, {} repeat(s); C=1: {} rotations, C=64: {}",
        settings.join(" "),
        knobs.pool,
        knobs.repeats,
        knobs.n1,
        knobs.n64
    );

    let (counted, row_bytes, census_commits) = bench.census(knobs.census)?;
    let nc = knobs.census as f64;
    let shape = raw::Shape {
        commits: (counted.commits as f64 / nc).round() as usize,
        statements: (counted.body_total() as f64 / nc).round() as usize,
        row_bytes,
    };
    eprintln!(
        "census of {} rotations: {:.2} commits per rotation ({} by the store), {:.2} statements \
         per commit beyond BEGIN/lock/lease/COMMIT {:?}, {} rollbacks, {:.2} reads outside \
         writes per rotation {:?}; rows {row_bytes} B on average",
        knobs.census,
        counted.commits as f64 / nc,
        census_commits,
        counted.body_total() as f64 / counted.commits.max(1) as f64,
        counted.body,
        counted.rollbacks,
        counted.outside_total() as f64 / nc,
        counted.outside,
    );

    let cases = [1usize, 64];
    let mut runs: Vec<Vec<(Run, Run, f64)>> = vec![Vec::new(); cases.len()];
    for repeat in 0..knobs.repeats {
        for (i, &c) in cases.iter().enumerate() {
            let n = if c == 1 { knobs.n1 } else { knobs.n64 };
            let load = cpu::load();
            let bound = bench.raw(shape, n, c)?;
            let run = bench.keyrot(n, c)?;
            eprintln!(
                "repeat {}: C={c} (load {load:.2}): bound {:.1} rotations/s, keyrot {:.1} \
                 rotations/s ({:.2} commits per rotation), ratio {:.3}; machine busy {:.0} % / {:.0} %",
                repeat + 1,
                bound.per_sec(),
                run.per_sec(),
                run.per_rotation(run.commits as f64),
                run.per_sec() / bound.per_sec(),
                100.0 * bound.cpu.busy / bound.cpu.capacity,
                100.0 * run.cpu.busy / run.cpu.capacity,
            );
            runs[i].push((bound, run, load));
        }
    }

    let mut rows = Vec::new();
    for (&c, results) in cases.iter().zip(&runs) {
        let med = |f: &dyn Fn(&Run, &Run) -> f64| {
            median(&results.iter().map(|(b, r, _)| f(b, r)).collect::<Vec<_>>())
        };
        let ms = |r: &Run, s: f64| 1000.0 * r.per_rotation(s);
        let all = |f: &dyn Fn(&Run) -> f64| {
            results
                .iter()
                .map(|(_, r, _)| round(f(r), 1))
                .collect::<Vec<_>>()
        };
        rows.push(serde_json::json!({
            "concurrency": c,
            "rotations": results.first().map_or(0, |(_, r, _)| r.rotations),
            "rotations_per_sec": round(med(&|_, r| r.per_sec()), 1),
            "rotations_per_sec_each": all(&|r| r.per_sec()),
            "bound_rotations_per_sec": round(med(&|b, _| b.per_sec()), 1),
            "bound_each": results.iter().map(|(b, _, _)| round(b.per_sec(), 1)).collect::<Vec<_>>(),
            "ratio": round(med(&|b, r| r.per_sec() / b.per_sec()), 3),
            "commits_per_rotation": round(med(&|_, r| r.per_rotation(r.commits as f64)), 2),
            "keyrot_cpu_ms_per_rotation": round(med(&|_, r| ms(r, r.cpu.own)), 2),
            "postgres_cpu_ms_per_rotation": round(med(&|_, r| ms(r, r.cpu.server)), 2),
            "raw_cpu_ms_per_rotation": round(med(&|b, _| ms(b, b.cpu.own)), 2),
            "postgres_cpu_ms_per_rotation_raw": round(med(&|b, _| ms(b, b.cpu.server)), 2),
            "machine_busy": round(med(&|_, r| r.cpu.busy / r.cpu.capacity), 3),
            "machine_busy_raw": round(med(&|b, _| b.cpu.busy / b.cpu.capacity), 3),
            "load_before": round(median(&results.iter().map(|(_, _, l)| *l).collect::<Vec<_>>()), 2),
        }));
    }

    println!();
    println!(
        "PostgreSQL {version} ({}); pool {}; census: {} commits and {} body statements per rotation, rows {} B",
        settings.join(" "),
        knobs.pool,
        shape.commits,
        shape.statements,
        shape.row_bytes
    );
    println!(
        "{:>3} {:>6} {:>10} {:>10} {:>7} {:>8} {:>12} {:>12} {:>12} {:>12} {:>6}",
        "C",
        "rots",
        "rot/s",
        "bound",
        "ratio",
        "commits",
        "keyrot ms/r",
        "pg ms/r",
        "raw ms/r",
        "pg(raw) ms/r",
        "busy"
    );
    for row in &rows {
        let f = |k: &str| row[k].as_f64().unwrap_or(0.0);
        println!(
            "{:>3} {:>6} {:>10.1} {:>10.1} {:>7.3} {:>8.2} {:>12.2} {:>12.2} {:>12.2} {:>12.2} {:>5.0}%",
            f("concurrency"),
            f("rotations"),
            f("rotations_per_sec"),
            f("bound_rotations_per_sec"),
            f("ratio"),
            f("commits_per_rotation"),
            f("keyrot_cpu_ms_per_rotation"),
            f("postgres_cpu_ms_per_rotation"),
            f("raw_cpu_ms_per_rotation"),
            f("postgres_cpu_ms_per_rotation_raw"),
            100.0 * f("machine_busy"),
        );
    }
    println!(
        "bound = the raw client's rotations/s (same commits, same driver, run right before); \
         ratio = rot/s / bound; CPU ms per rotation of keyrot, of PostgreSQL under keyrot, of \
         the raw client, of PostgreSQL under it (medians over repeats)"
    );
    let json = serde_json::json!({
        "bench": "postgres",
        "postgres_version": version,
        "settings": settings,
        "repeats": knobs.repeats,
        "pool_size": knobs.pool,
        "census": {
            "rotations": knobs.census,
            "commits": counted.commits,
            "rollbacks": counted.rollbacks,
            "locks": counted.locks,
            "lease_checks": counted.lease_checks,
            "body_statements": counted.body,
            "reads_outside_writes": counted.outside,
            "row_bytes": row_bytes,
        },
        "shape": shape,
        "runs": rows,
    });
    println!("{json}");
    Ok(())
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}
