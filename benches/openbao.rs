//! keyrot against a real OpenBao: `bash scripts/bench/openbao.sh` starts
//! `bao server -dev` on a free loopback port and runs this (`cargo bench
//! --bench openbao`). docs/benchmarks.md says what it shows.
//!
//! - keyrot: the real daemon (`keyrot run`, release build) manages N
//!   AppRole roles (`r0000`…), one slot per role whose key is the role's
//!   one live secret-id, with the OpenBao KV v2 sink and overlap 0. At each
//!   `max_concurrent` every slot is rotated once through the control
//!   socket (`POST /v1/rotate`, what `keyrot rotate` sends), in `repeats`
//!   equal batches; a batch runs from its first request to its last
//!   rotation's Completed commit (the daemon's own record).
//! - requests per rotation: every request OpenBao received, from its file
//!   audit log, while keyrot rotates a calibration batch.
//! - raw: a tight reqwest client without keyrot sending that same request
//!   mix (checked against the audit log too) at the same concurrency, on
//!   roles of another AppRole mount. Its batches alternate with keyrot's,
//!   so a busy machine or a slower OpenBao weighs on both alike. `ratio =
//!   keyrot rotations/s ÷ (raw requests/s ÷ requests per rotation)`, the
//!   median of the paired batches.
//! - cli: `scripts/bench/openbao.sh --cli-loop`, a bash loop of `bao` CLI
//!   calls doing the same steps for a sample of roles.
//! - rate: keyrot with `requests_per_second` set; the rate of the
//!   provider's requests in OpenBao's audit log over the run.
//!
//! Figures are printed as a table and, last, one JSON line.

#[path = "openbao/bao.rs"]
mod bao;
mod common;
#[path = "openbao/daemon.rs"]
mod daemon;
#[path = "openbao/raw.rs"]
mod raw;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use serde_json::json;

use bao::{Audited, Bao, KEYROT_MOUNT, OTHER_MOUNT, mix, names, read_audit};
use common::{env_num, median};
use daemon::{Daemon, Setup, config, step_delta, step_times};
use raw::{Raw, cli_batch};

/// Settings, from the environment (`scripts/bench/openbao.sh` sets them).
struct Settings {
    /// `http://127.0.0.1:PORT` of `bao server -dev` (root token `root`).
    addr: String,
    /// OpenBao's pid, to read its CPU time.
    bao_pid: Option<u32>,
    /// Working directory (config, store, audit log, CLI state).
    dir: PathBuf,
    /// The real `bao` binary, for the CLI loop.
    bao_cli: PathBuf,
    /// Slots keyrot rotates at each concurrency (`KEYROT_BENCH_N`).
    n: usize,
    /// `max_concurrent` values (`KEYROT_BENCH_CONCURRENCY`).
    concurrency: Vec<usize>,
    /// Batches per measurement (`KEYROT_BENCH_REPEATS`).
    repeats: usize,
    /// Raw rotations per batch (`KEYROT_BENCH_RAW`).
    raw_per_batch: usize,
    /// CLI rotations per batch (`KEYROT_BENCH_CLI`).
    cli_per_batch: usize,
    /// `requests_per_second` of the rate run (`KEYROT_BENCH_RATE`).
    rate: f64,
    /// Slots rotated in the rate run (`KEYROT_BENCH_RATE_KEYS`).
    rate_keys: usize,
    /// Rotations audited to count requests (`KEYROT_BENCH_CALIBRATE`).
    calibrate: usize,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let addr = std::env::var("KEYROT_BENCH_BAO_ADDR").map_err(|_| {
            anyhow!("KEYROT_BENCH_BAO_ADDR is not set: run `bash scripts/bench/openbao.sh`, which starts OpenBao")
        })?;
        let concurrency = std::env::var("KEYROT_BENCH_CONCURRENCY")
            .unwrap_or_else(|_| "1,8,32".into())
            .split(',')
            .map(|c| c.trim().parse::<usize>())
            .collect::<Result<Vec<_>, _>>()
            .context("KEYROT_BENCH_CONCURRENCY")?;
        Ok(Settings {
            addr,
            bao_pid: std::env::var("KEYROT_BENCH_BAO_PID")
                .ok()
                .and_then(|p| p.parse().ok()),
            dir: PathBuf::from(
                std::env::var("KEYROT_BENCH_DIR").context("KEYROT_BENCH_DIR is not set")?,
            ),
            bao_cli: PathBuf::from(
                std::env::var("KEYROT_BENCH_BAO_CLI").context("KEYROT_BENCH_BAO_CLI is not set")?,
            ),
            n: env_num("KEYROT_BENCH_N", 2000)?,
            concurrency,
            repeats: env_num("KEYROT_BENCH_REPEATS", 3)?.max(1),
            raw_per_batch: env_num("KEYROT_BENCH_RAW", 300)?.max(1),
            cli_per_batch: env_num("KEYROT_BENCH_CLI", 30)?.max(1),
            rate: env_num("KEYROT_BENCH_RATE", 200.0)?,
            rate_keys: env_num("KEYROT_BENCH_RATE_KEYS", 500)?,
            calibrate: env_num("KEYROT_BENCH_CALIBRATE", 40)?.max(1),
        })
    }
}

/// utime + stime of process `pid`, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    (tick(11).unwrap_or(0.0) + tick(12).unwrap_or(0.0)) / 100.0
}

/// CPU seconds a process used since `start`.
struct Cpu {
    /// The process (none: always 0).
    pid: Option<u32>,
    /// Its CPU seconds at the start.
    start: f64,
}

impl Cpu {
    fn start(pid: Option<u32>) -> Cpu {
        Cpu {
            pid,
            start: pid.map(cpu_secs).unwrap_or(0.0),
        }
    }

    /// Milliseconds per unit of work since the start.
    fn ms_per(&self, units: usize) -> f64 {
        let used = self.pid.map(cpu_secs).unwrap_or(0.0) - self.start;
        used / units.max(1) as f64 * 1000.0
    }
}

/// The provider's requests in an audit log: (count, mean rate from the
/// first to the last, counts of each whole second).
fn rate_of(entries: &[&Audited]) -> (usize, f64, Vec<f64>) {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return (0, 0.0, Vec::new());
    };
    let span = last.at.duration_since(first.at).as_secs_f64();
    let mean = if span > 0.0 {
        (entries.len() - 1) as f64 / span
    } else {
        0.0
    };
    let whole = span.floor() as usize;
    let mut per_second = vec![0.0; whole];
    for e in entries {
        let i = e.at.duration_since(first.at).as_secs_f64().floor() as usize;
        if let Some(n) = per_second.get_mut(i) {
            *n += 1.0;
        }
    }
    (entries.len(), mean, per_second)
}

/// One measurement at one concurrency.
#[derive(Default)]
struct Run {
    /// keyrot rotations/s per batch.
    keyrot: Vec<f64>,
    /// Raw requests/s per batch.
    raw: Vec<f64>,
    /// keyrot ratio per pair of batches.
    ratio: Vec<f64>,
    /// CPU ms per rotation: keyrot's daemon, OpenBao under keyrot, the raw
    /// client, OpenBao under the raw client.
    cpu: [Vec<f64>; 4],
    /// Mean ms per state machine step.
    steps: BTreeMap<String, f64>,
}

fn main() -> Result<()> {
    let s = Settings::from_env()?;
    // The driver is light; as many workers as the machine has cores.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(&s))
}

async fn run(s: &Settings) -> Result<()> {
    let started = Instant::now();
    println!(
        "openbao bench: N={} slots, max_concurrent {:?}, {} batches each; raw {} and CLI {} rotations per batch; rate run {}/s over {} slots",
        s.n, s.concurrency, s.repeats, s.raw_per_batch, s.cli_per_batch, s.rate, s.rate_keys
    );
    let bao = Bao::new(&s.addr)?;
    let roles = names("r", s.n);
    let raw_roles = names("w", s.raw_per_batch);
    let cli_roles = names("c", s.cli_per_batch * s.repeats);
    let other: Vec<String> = raw_roles.iter().chain(&cli_roles).cloned().collect();
    let (token, mut accessors) = bao::setup(&bao, &s.dir, &roles, &other).await?;
    let cli_dir = s.dir.join("cli");
    fs::create_dir_all(&cli_dir)?;
    for r in &cli_roles {
        fs::write(cli_dir.join(format!("{r}.acc")), &accessors[r])?;
    }
    println!(
        "setup: {} roles on auth/{KEYROT_MOUNT} and {} on auth/{OTHER_MOUNT} in {:.1}s",
        roles.len(),
        other.len(),
        started.elapsed().as_secs_f64()
    );

    let setup = Setup {
        addr: &s.addr,
        roles: &roles,
        metrics_port: std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port(),
    };
    let first = s.concurrency.first().copied().unwrap_or(1);
    let t = Instant::now();
    let daemon = Daemon::start(&s.dir, &config(&setup, first, None), s.n).await?;
    println!(
        "keyrot started and bound {} slots in {:.1}s",
        s.n,
        t.elapsed().as_secs_f64()
    );
    let raw = Raw {
        bao: Bao::new(&s.addr)?,
        token,
    };

    // Requests per rotation, keyrot's and the raw client's, from the audit log.
    let audit = s.dir.join("audit.log");
    let cal = &roles[..s.calibrate.min(s.n)];
    bao.audit_on(&audit).await?;
    daemon.batch(cal).await?;
    bao.audit_off().await?;
    let keyrot_log = read_audit(&audit)?;
    let keyrot_mix = mix(&keyrot_log, cal.len());
    let per_rotation = keyrot_log.len() as f64 / cal.len() as f64;
    let cal_raw = &raw_roles[..s.calibrate.min(raw_roles.len())];
    bao.audit_on(&audit).await?;
    raw.batch(&mut accessors, cal_raw, 8).await?;
    bao.audit_off().await?;
    let raw_log = read_audit(&audit)?;
    let raw_mix = mix(&raw_log, cal_raw.len());
    let raw_per_rotation = raw_log.len() as f64 / cal_raw.len() as f64;

    // keyrot and raw batches, alternating, at each concurrency.
    let mut runs: BTreeMap<usize, Run> = BTreeMap::new();
    let per_batch = s.n.div_ceil(s.repeats);
    let me = Some(std::process::id());
    for &c in &s.concurrency {
        // A reload before each run, also when `max_concurrent` stays: each
        // run starts from freshly built clients (no role-id kept from the
        // calibration batch).
        daemon.reload(&config(&setup, c, None)).await?;
        let before = step_times(setup.metrics_port).await?;
        let run = runs.entry(c).or_default();
        for chunk in roles.chunks(per_batch) {
            let (kc, bc) = (Cpu::start(Some(daemon.pid())), Cpu::start(s.bao_pid));
            let (done, secs) = daemon.batch(chunk).await?;
            let k = done as f64 / secs;
            run.cpu[0].push(kc.ms_per(done));
            run.cpu[1].push(bc.ms_per(done));
            let (rc, bc) = (Cpu::start(me), Cpu::start(s.bao_pid));
            let raw_secs = raw.batch(&mut accessors, &raw_roles, c).await?;
            let r = raw_roles.len() as f64 * raw_per_rotation / raw_secs;
            run.cpu[2].push(rc.ms_per(raw_roles.len()));
            run.cpu[3].push(bc.ms_per(raw_roles.len()));
            let ratio = k / (r / per_rotation);
            run.keyrot.push(k);
            run.raw.push(r);
            run.ratio.push(ratio);
            println!(
                "c={c:<3} keyrot {done} rotations in {secs:.2}s = {k:.1}/s | raw {} in {raw_secs:.2}s = {r:.0} requests/s ({:.1} rotations/s) | ratio {ratio:.2}",
                raw_roles.len(),
                raw_roles.len() as f64 / raw_secs
            );
        }
        run.steps = step_delta(&before, &step_times(setup.metrics_port).await?);
    }

    // requests_per_second on the provider, audited.
    let top = s.concurrency.iter().copied().max().unwrap_or(32);
    daemon.reload(&config(&setup, top, Some(s.rate))).await?;
    let rate_roles = &roles[..s.rate_keys.clamp(1, s.n)];
    bao.audit_on(&audit).await?;
    let (rate_done, rate_secs) = daemon.batch(rate_roles).await?;
    bao.audit_off().await?;
    drop(daemon);
    let rate_log = read_audit(&audit)?;
    let provider_log: Vec<&Audited> = rate_log
        .iter()
        .filter(|e| e.path.starts_with("auth/"))
        .collect();
    let sink_requests = rate_log.len() - provider_log.len();
    let (prov_n, prov_rate, per_second) = rate_of(&provider_log);
    let ps_min = per_second.iter().copied().fold(f64::INFINITY, f64::min);
    let ps_max = per_second.iter().copied().fold(0.0, f64::max);
    println!(
        "rate: requests_per_second = {}, max_concurrent {top}: {rate_done} rotations in {rate_secs:.1}s; OpenBao logged {prov_n} provider requests at {prov_rate:.1}/s",
        s.rate
    );

    // The CLI loop.
    let mut cli = Vec::new();
    for chunk in cli_roles.chunks(s.cli_per_batch) {
        let secs = cli_batch(&script(), &s.bao_cli, &s.addr, &cli_dir, chunk)?;
        cli.push(chunk.len() as f64 / secs);
        println!(
            "cli: {} rotations in {secs:.2}s = {:.2}/s",
            chunk.len(),
            chunk.len() as f64 / secs
        );
    }

    // Report.
    println!();
    println!(
        "requests per rotation, from OpenBao's audit log ({} keyrot and {} raw rotations):",
        cal.len(),
        cal_raw.len()
    );
    let kinds: BTreeSet<&String> = keyrot_mix.keys().chain(raw_mix.keys()).collect();
    let share = |m: &BTreeMap<String, f64>, k: &String| m.get(k).copied().unwrap_or(0.0);
    println!("  {:<56} {:>7} {:>7}", "request", "keyrot", "raw");
    for k in &kinds {
        println!(
            "  {k:<56} {:>7.2} {:>7.2}",
            share(&keyrot_mix, k),
            share(&raw_mix, k)
        );
    }
    println!(
        "  {:<56} {per_rotation:>7.2} {raw_per_rotation:>7.2}",
        "total"
    );
    // A token lookup once per client and run is keyrot's only extra.
    let same_mix = kinds
        .iter()
        .all(|k| (share(&keyrot_mix, k) - share(&raw_mix, k)).abs() < 0.1);
    if !same_mix {
        println!(
            "  WARNING: the raw client's mix differs from keyrot's: the ratio compares different work"
        );
    }
    println!();
    println!(
        "{:>4} {:>13} {:>11} {:>11} {:>7}   {:>25}",
        "c", "keyrot rot/s", "raw req/s", "raw rot/s", "ratio", "CPU ms/rotation k|bao|raw|bao"
    );
    let mut by_c = serde_json::Map::new();
    for (c, run) in &runs {
        let (k, r, ratio) = (median(&run.keyrot), median(&run.raw), median(&run.ratio));
        let cpu: Vec<f64> = run.cpu.iter().map(|v| median(v)).collect();
        println!(
            "{c:>4} {k:>13.1} {r:>11.0} {:>11.1} {ratio:>7.2}   {:>6.2} {:>6.2} {:>6.2} {:>6.2}",
            r / per_rotation,
            cpu[0],
            cpu[1],
            cpu[2],
            cpu[3]
        );
        by_c.insert(
            c.to_string(),
            json!({
                "keyrot_rotations_per_s": k,
                "raw_requests_per_s": r,
                "ratio": ratio,
                "keyrot_batches": run.keyrot,
                "raw_batches": run.raw,
                "ratio_batches": run.ratio,
                "cpu_ms_per_rotation": {
                    "keyrot": cpu[0], "openbao_under_keyrot": cpu[1],
                    "raw_client": cpu[2], "openbao_under_raw": cpu[3],
                },
                "step_ms": run.steps,
            }),
        );
    }
    println!(
        "  ratio = keyrot rot/s ÷ (raw req/s ÷ {per_rotation:.2} requests per rotation), median of {} paired batches; CPU: median per batch",
        s.repeats
    );
    println!("mean ms per step (keyrot_step_duration_seconds):");
    for (c, run) in &runs {
        let line: Vec<String> = run
            .steps
            .iter()
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect();
        println!("  c={c:<3} {}", line.join(", "));
    }
    let cli_rps = median(&cli);
    let top_rps = runs.get(&top).map(|r| median(&r.keyrot)).unwrap_or(0.0);
    println!();
    println!(
        "CLI loop: {cli_rps:.2} rotations/s (median of {} batches of {}); keyrot at max_concurrent {top}: {top_rps:.1}/s = {:.0}x",
        cli.len(),
        s.cli_per_batch,
        top_rps / cli_rps
    );
    println!(
        "requests_per_second = {}: OpenBao logged the provider's {prov_n} requests at {prov_rate:.1}/s over {rate_secs:.1}s (each whole second: min {ps_min:.0}, median {:.0}, max {ps_max:.0}); {sink_requests} sink requests, not limited; {:.1} rotations/s",
        s.rate,
        median(&per_second),
        rate_done as f64 / rate_secs
    );
    println!("bench time {:.0}s", started.elapsed().as_secs_f64());
    let out = json!({
        "bench": "openbao",
        "n": s.n,
        "batches": s.repeats,
        "requests_per_rotation": per_rotation,
        "raw_requests_per_rotation": raw_per_rotation,
        "mix_matches": same_mix,
        "mix": keyrot_mix,
        "by_concurrency": by_c,
        "cli_rotations_per_s": cli_rps,
        "cli_batches": cli,
        "speedup_vs_cli": top_rps / cli_rps,
        "rate_limit": {
            "requests_per_second": s.rate,
            "rotations": rate_done,
            "seconds": rate_secs,
            "provider_requests": prov_n,
            "provider_requests_per_s": prov_rate,
            "per_second_min": ps_min,
            "per_second_median": median(&per_second),
            "per_second_max": ps_max,
            "sink_requests": sink_requests,
        },
        "seconds": started.elapsed().as_secs_f64(),
    });
    println!("{out}");
    Ok(())
}

/// `scripts/bench/openbao.sh`, which holds the CLI loop.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench/openbao.sh")
}
