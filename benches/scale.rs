//! Scale benchmark (issue 9): keyrot with 100,000 local-provider keys.
//!
//! `cargo bench --bench scale` (or `bash scripts/bench.sh scale`). It builds
//! a store in a temporary directory (the local provider's registry written
//! directly through the store API), runs the real release daemon
//! (`CARGO_BIN_EXE_keyrot run`) with `NOTIFY_SOCKET` bound here, and
//! measures:
//!
//! - time from spawn to `READY=1`, cold (the first start binds the 100k
//!   listed keys to slots) and warm (restarts with the inventory in place),
//!   and to the end of the first inventory sync (its log line);
//! - RSS: peak (`VmHWM`) and steady (`VmRSS` once the daemon is idle after
//!   the start-up sync, and after the `status` calls) from `/proc/PID/status`;
//! - `keyrot status --json` over the control socket (a CLI process, wall time);
//! - `Store::next_due` (the due index's first entry) and
//!   `Store::next_due_after`: many calls, median and p99;
//! - the store file per key and per completed rotation: real rotations
//!   through the daemon, then a year of history added in bulk by copying
//!   what a real rotation wrote (records, audit entries, revoked key);
//! - the history pruning pass ([store] history_retention) over that history.
//!
//! Knobs: `KEYROT_SCALE_KEYS` (100000), `KEYROT_SCALE_RUNS` (3, the warm
//! starts; figures are medians), `KEYROT_SCALE_ROTATIONS` (200 real
//! rotations), `KEYROT_SCALE_HISTORY` (completed rotations added in bulk,
//! spread over the past year; default: two per key), `KEYROT_SCALE_KEEP=1` keeps the directory.
//! Prints a table, then one JSON line.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use jiff::{SignedDuration, Timestamp};
use keyrot::control::RotateRequest;
use keyrot::control::client::Client;
use keyrot_core::crypto::MasterKey;
use keyrot_core::model::{RotationRecord, RotationState};
use keyrot_core::store::Store;

mod common;
use common::{env_num, live_local_key};

const BIN: &str = env!("CARGO_BIN_EXE_keyrot");

/// The bench's knobs, from the environment.
struct Knobs {
    keys: usize,
    runs: usize,
    rotations: usize,
    history: usize,
    keep: bool,
}

impl Knobs {
    fn from_env() -> anyhow::Result<Knobs> {
        let keys = env_num("KEYROT_SCALE_KEYS", 100_000)?;
        Ok(Knobs {
            keys,
            runs: env_num("KEYROT_SCALE_RUNS", 3)?.max(1),
            rotations: env_num("KEYROT_SCALE_ROTATIONS", 200)?.min(keys),
            history: env_num("KEYROT_SCALE_HISTORY", 2 * keys)?,
            keep: std::env::var_os("KEYROT_SCALE_KEEP").is_some(),
        })
    }
}

/// The bench's directory and config.
struct Site {
    dir: PathBuf,
    config: PathBuf,
    store: PathBuf,
    master: PathBuf,
    socket: PathBuf,
}

impl Site {
    fn new(dir: &Path) -> anyhow::Result<Site> {
        let site = Site {
            dir: dir.to_path_buf(),
            config: dir.join("keyrot.toml"),
            store: dir.join("state/state.redb"),
            master: dir.join("master.key"),
            socket: dir.join("control.sock"),
        };
        // Nothing is due for ~11 months (keys expire in 355 days, rotate
        // 30 days before), the sync runs at start and then once a year, no
        // mail: every figure is keyrot's own cost.
        let config = r#"[daemon]
control_socket = "control.sock"
sync_schedule = "0 0 3 1 JAN *"
shutdown_timeout = "30s"

[store]
path = "state/state.redb"
master_key_file = "master.key"
history_retention = "400d"

[[provider]]
name = "local"
type = "local"
max_concurrent = 16
default_lifetime = "365d"

[[sink]]
name = "out"
type = "file"
path = "out/{name}.json"
format = "json"

[[policy]]
name = "std"
new_key_lifetime = "365d"
rotate_before_expiry = "30d"
overlap = "0s"
jitter = false

[[key]]
select = { name = "svc-*" }
provider = "local"
policy = "std"
sinks = ["out"]
"#;
        std::fs::write(&site.config, config)?;
        std::fs::create_dir_all(dir.join("out"))?;
        Ok(site)
    }

    fn store_bytes(&self) -> u64 {
        std::fs::metadata(&self.store).map_or(0, |m| m.len())
    }
}

fn key_name(i: usize) -> String {
    format!("svc-{i:06}")
}

/// Writes `n` live keys into the local provider's registry.
fn seed(site: &Site, n: usize, now: Timestamp) -> anyhow::Result<()> {
    let key = MasterKey::write_new(&site.master).context("writing the master key")?;
    let store = Store::open(&site.store, key)?;
    let created = now - SignedDuration::from_hours(24 * 10);
    let expires = now + SignedDuration::from_hours(24 * 355);
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        store.write(|tx| {
            for &i in chunk {
                tx.local_put(&live_local_key(
                    format!("lk_seed{i:08}"),
                    key_name(i),
                    created,
                    expires,
                ))?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// What one daemon run saw.
#[derive(Default, Clone, Debug)]
struct RunFigures {
    ready: Duration,
    synced: Option<Duration>,
    peak_rss_kib: u64,
    rss_after_sync_kib: u64,
    rss_after_status_kib: u64,
    status: Vec<Duration>,
    status_socket: Vec<Duration>,
    status_bytes: u64,
}

/// A running daemon with its watchers.
struct Daemon {
    child: Child,
    spawned: Instant,
    ready: Arc<Mutex<Option<Instant>>>,
    synced: Arc<Mutex<Option<Instant>>>,
    log: Arc<Mutex<Vec<String>>>,
    sampling: Arc<AtomicBool>,
    peak_kib: Arc<Mutex<u64>>,
    threads: Vec<JoinHandle<()>>,
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Whether every thread of process `pid` is sleeping (a thread that ends
/// while it is read counts as sleeping).
fn all_threads_sleep(pid: u32) -> anyhow::Result<bool> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let stat = std::fs::read_to_string(task?.path().join("stat")).unwrap_or_default();
        // `PID (COMM) STATE ...`: the state follows the last parenthesis.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        if state.is_some_and(|s| s != "S") {
            return Ok(false);
        }
    }
    Ok(true)
}

impl Daemon {
    fn start(site: &Site) -> anyhow::Result<Daemon> {
        let notify = site.dir.join("notify.sock");
        let _ = std::fs::remove_file(&notify);
        let sock = UnixDatagram::bind(&notify)?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))?;
        let spawned = Instant::now();
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&site.config)
            .arg("run")
            .env("NOTIFY_SOCKET", &notify)
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting keyrot run")?;
        let ready = Arc::new(Mutex::new(None));
        let synced = Arc::new(Mutex::new(None));
        let log = Arc::new(Mutex::new(Vec::new()));
        let sampling = Arc::new(AtomicBool::new(true));
        let peak_kib = Arc::new(Mutex::new(0));
        let mut threads = Vec::new();
        {
            let ready = Arc::clone(&ready);
            let sampling = Arc::clone(&sampling);
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while sampling.load(Ordering::Relaxed) {
                    if let Ok(n) = sock.recv(&mut buf) {
                        let msg = String::from_utf8_lossy(&buf[..n]);
                        if msg.lines().any(|l| l == "READY=1") {
                            let mut r = ready.lock().unwrap_or_else(|e| e.into_inner());
                            r.get_or_insert_with(Instant::now);
                        }
                    }
                }
            }));
        }
        if let Some(stderr) = child.stderr.take() {
            let synced = Arc::clone(&synced);
            let log = Arc::clone(&log);
            threads.push(std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if line.contains("inventory synced") {
                        let mut s = synced.lock().unwrap_or_else(|e| e.into_inner());
                        s.get_or_insert_with(Instant::now);
                    }
                    let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                    if l.len() < 2000 {
                        l.push(line);
                    }
                }
            }));
        }
        {
            let pid = child.id();
            let sampling = Arc::clone(&sampling);
            let peak = Arc::clone(&peak_kib);
            threads.push(std::thread::spawn(move || {
                while sampling.load(Ordering::Relaxed) {
                    if let Some(hwm) = proc_status_kib(pid, "VmHWM:") {
                        let mut p = peak.lock().unwrap_or_else(|e| e.into_inner());
                        *p = (*p).max(hwm);
                    }
                    #[allow(clippy::disallowed_methods)]
                    std::thread::sleep(Duration::from_millis(20));
                }
            }));
        }
        Ok(Daemon {
            child,
            spawned,
            ready,
            synced,
            log,
            sampling,
            peak_kib,
            threads,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_for(
        &mut self,
        what: &str,
        slot: &Arc<Mutex<Option<Instant>>>,
        limit: Duration,
    ) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(at) = *slot.lock().unwrap_or_else(|e| e.into_inner()) {
                return Ok(at - self.spawned);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("keyrot exited ({status}) before {what}:\n{}", self.tail());
            }
            if Instant::now() > deadline {
                bail!("no {what} within {limit:?}:\n{}", self.tail());
            }
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn wait_ready(&mut self) -> anyhow::Result<Duration> {
        let slot = Arc::clone(&self.ready);
        self.wait_for("READY=1", &slot, Duration::from_secs(120))
    }

    fn wait_synced(&mut self) -> anyhow::Result<Duration> {
        let slot = Arc::clone(&self.synced);
        self.wait_for("the first inventory sync", &slot, Duration::from_secs(600))
    }

    /// Waits until every thread of the daemon sleeps (state `S` in
    /// `/proc/PID/task/*/stat`) in three samples in a row, 10 ms apart:
    /// nothing is left running or waiting for a CPU.
    fn wait_idle(&mut self) -> anyhow::Result<()> {
        let limit = Duration::from_secs(60);
        let deadline = Instant::now() + limit;
        let mut idle = 0;
        while idle < 3 {
            if let Some(status) = self.child.try_wait()? {
                bail!("keyrot exited ({status}) while settling:\n{}", self.tail());
            }
            if Instant::now() > deadline {
                bail!("keyrot still busy after {limit:?}:\n{}", self.tail());
            }
            idle = if all_threads_sleep(self.pid())? {
                idle + 1
            } else {
                0
            };
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    fn tail(&self) -> String {
        let l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        l.iter()
            .rev()
            .take(20)
            .rev()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn peak_kib(&self) -> u64 {
        let sampled = *self.peak_kib.lock().unwrap_or_else(|e| e.into_inner());
        sampled.max(proc_status_kib(self.pid(), "VmHWM:").unwrap_or(0))
    }

    fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:").unwrap_or(0)
    }

    fn stop(mut self) -> anyhow::Result<()> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let status = self.child.wait()?;
        self.sampling.store(false, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if !status.success() {
            bail!("keyrot exited with {status}:\n{}", self.tail());
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.sampling.store(false, Ordering::Relaxed);
    }
}

/// `keyrot status --json` through the CLI, output to a file; wall time.
fn time_status(site: &Site) -> anyhow::Result<(Duration, u64)> {
    let out = site.dir.join("status.json");
    let file = std::fs::File::create(&out)?;
    let t = Instant::now();
    let status = Command::new(BIN)
        .arg("--config")
        .arg(&site.config)
        .args(["status", "--json"])
        .stdout(file)
        .stderr(Stdio::inherit())
        .status()?;
    let took = t.elapsed();
    if !status.success() {
        bail!("keyrot status --json failed: {status}");
    }
    let bytes = std::fs::metadata(&out)?.len();
    Ok((took, bytes))
}

/// `GET /v1/status` on the control socket, read to the end: the daemon's
/// share of `keyrot status --json` (no CLI process, no decoding).
fn time_status_socket(site: &Site) -> anyhow::Result<Duration> {
    use std::io::{Read as _, Write as _};
    let t = Instant::now();
    let mut conn = std::os::unix::net::UnixStream::connect(&site.socket)?;
    conn.write_all(b"GET /v1/status HTTP/1.1\r\nHost: keyrot\r\nConnection: close\r\n\r\n")?;
    let mut body = Vec::new();
    conn.read_to_end(&mut body)?;
    let took = t.elapsed();
    if !body.starts_with(b"HTTP/1.1 200") {
        bail!(
            "GET /v1/status: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
    }
    Ok(took)
}

/// Starts the daemon, waits for READY and the first sync, times status.
fn measured_run(site: &Site, status_runs: usize) -> anyhow::Result<RunFigures> {
    let mut d = Daemon::start(site)?;
    let mut f = RunFigures {
        ready: d.wait_ready()?,
        ..RunFigures::default()
    };
    f.synced = Some(d.wait_synced()?);
    // What follows the sync's log line (handing the freed heap back, the
    // passes it wakes) has run once the daemon is idle.
    d.wait_idle()?;
    f.rss_after_sync_kib = d.rss_kib();
    for _ in 0..status_runs {
        let (t, bytes) = time_status(site)?;
        f.status.push(t);
        f.status_bytes = bytes;
        f.status_socket.push(time_status_socket(site)?);
    }
    // The last answer is freed once the daemon is idle again.
    d.wait_idle()?;
    f.rss_after_status_kib = d.rss_kib();
    f.peak_rss_kib = d.peak_kib();
    d.stop()?;
    Ok(f)
}

/// Rotates `n` keys through the daemon's API and waits for them all.
fn real_rotations(site: &Site, n: usize) -> anyhow::Result<Vec<String>> {
    let mut d = Daemon::start(site)?;
    d.wait_ready()?;
    d.wait_synced()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = Client::new(&site.socket);
    let ids = rt.block_on(async {
        let mut ids = Vec::new();
        for i in 0..n {
            let req = RotateRequest {
                key: format!("local/{}", key_name(i)),
                reason: Some("scale bench".into()),
                rotated_by: Some("bench".into()),
                initiated_from: Some("bench".into()),
                ..RotateRequest::default()
            };
            let rec: RotationRecord = client.post("/v1/rotate", &req).await?;
            ids.push(rec.id);
        }
        let deadline = Instant::now() + Duration::from_secs(300);
        for id in &ids {
            loop {
                let rec: RotationRecord = client.get(&format!("/v1/rotations/{id}")).await?;
                match rec.state {
                    RotationState::Completed => break,
                    RotationState::Failed | RotationState::Aborted => {
                        bail!("rotation {id} ended {:?}: {:?}", rec.state, rec.last_error)
                    }
                    _ if Instant::now() > deadline => bail!("rotation {id} still {:?}", rec.state),
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }
        anyhow::Ok(ids)
    })?;
    d.stop()?;
    Ok(ids)
}

/// Adds `n` completed rotations of history, each a copy of what a real
/// rotation wrote: its record (new id and slot), its audit entries and the
/// revoked key it left in the local registry. Returns (rotations, audit
/// entries) written.
fn add_history(site: &Site, template_id: &str, n: usize, keys: usize) -> anyhow::Result<usize> {
    let key = MasterKey::load(&site.master, false)?;
    let store = Store::open(&site.store, key)?;
    let template = store
        .rotation(template_id)?
        .context("the template rotation is gone")?;
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = store.audit(after, 10_000)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        events.extend(
            page.into_iter()
                .filter(|e| e.rotation.as_deref() == Some(template_id)),
        );
    }
    let old_key = template
        .old_key_id
        .as_deref()
        .and_then(|id| store.local_key(id).ok().flatten())
        .context("the template's old key is not in the registry")?;
    let start = common::wall_now() - SignedDuration::from_hours(24 * 365);
    let step = SignedDuration::from_hours(24 * 365) / i32::try_from(n.max(1))?;
    let mut written = 0;
    while written < n {
        let batch = (n - written).min(2_000);
        store.write(|tx| {
            for j in written..written + batch {
                let at = start + step * i32::try_from(j).unwrap_or(i32::MAX);
                let mut rec = template.clone();
                // Minted at the backdated instant, as keyrot would have.
                let secs = u64::try_from(at.as_second()).unwrap_or(0);
                let nanos = u32::try_from(at.subsec_nanosecond()).unwrap_or(0);
                let minted = uuid::Timestamp::from_unix(uuid::NoContext, secs, nanos);
                rec.id = uuid::Uuid::new_v7(minted).to_string();
                rec.slot = format!("local/{}", key_name(j % keys));
                rec.created_at = at;
                rec.updated_at = at;
                let mut old = old_key.clone();
                old.id = format!("lk_hist{j:08}");
                old.name = key_name(j % keys);
                old.created_at = at - SignedDuration::from_hours(24 * 300);
                old.revoked_at = Some(at);
                rec.old_key_id = Some(old.id.clone());
                tx.local_put(&old)?;
                tx.put_rotation(&rec)?;
                for e in &events {
                    tx.audit(
                        at,
                        &e.event,
                        Some(&rec.slot),
                        Some(&rec.id),
                        e.actor.as_deref(),
                        &e.detail,
                    )?;
                }
            }
            Ok(())
        })?;
        written += batch;
    }
    Ok(events.len())
}

/// `Store::next_due` and `next_due_after` timings (µs): median and p99.
fn due_lookups(site: &Site, repeats: usize) -> anyhow::Result<BTreeMap<&'static str, f64>> {
    let store = Store::open_read_only(&site.store)?;
    let mut first = Vec::with_capacity(repeats);
    let mut after = Vec::with_capacity(repeats);
    let now = common::wall_now();
    let mut found = 0;
    for _ in 0..repeats {
        let t = Instant::now();
        found += usize::from(store.next_due()?.is_some());
        first.push(t.elapsed());
        let t = Instant::now();
        found += usize::from(store.next_due_after(now)?.is_some());
        after.push(t.elapsed());
    }
    if found != 2 * repeats {
        bail!("the due index is empty: nothing to look up");
    }
    let mut out = BTreeMap::new();
    out.insert("next_due_median_us", micros(quantile(&mut first, 0.5)));
    out.insert("next_due_p99_us", micros(quantile(&mut first, 0.99)));
    out.insert(
        "next_due_after_median_us",
        micros(quantile(&mut after, 0.5)),
    );
    out.insert("next_due_after_p99_us", micros(quantile(&mut after, 0.99)));
    Ok(out)
}

/// Rows and bytes per table (redb's figures), daemon stopped.
fn table_sizes(site: &Site) -> anyhow::Result<Vec<(String, u64, u64, u64)>> {
    Ok(Store::open_read_only(&site.store)?.table_sizes()?)
}

/// What the prune measurement saw.
struct Pruned {
    first: keyrot_core::store::PruneReport,
    first_time: Duration,
    audit_entries: usize,
    audit_time: Duration,
    again_time: Duration,
    bytes_before: u64,
    bytes_after: u64,
}

/// The daily prune's store calls: the history with a cutoff 180 days back
/// (about half of the year of history goes); the audit log, whose bulk
/// history here is appended after the real rotations' entries (so the
/// chain is not in time order and a 180-day cutoff would stop at entry 1),
/// with a cutoff of now: every entry but the last goes, for its cost per
/// entry; then both again with the 180-day cutoff (the steady daily cost:
/// nothing left to delete). The audit chain must verify from its anchor.
fn prune(site: &Site) -> anyhow::Result<Pruned> {
    let key = MasterKey::load(&site.master, false)?;
    let store = Store::open(&site.store, key)?;
    let now = common::wall_now();
    let before = now - SignedDuration::from_hours(24 * 180);
    let keep = std::collections::HashSet::new();
    let batch = keyrot_core::store::PRUNE_BATCH;
    let bytes_before = site.store_bytes();
    let t = Instant::now();
    let first = store.prune_history(before, &keep, batch, &|| false)?;
    let first_time = t.elapsed();
    let t = Instant::now();
    let audit_entries = store.prune_audit(now, now, batch, &|| false)?;
    let audit_time = t.elapsed();
    let t = Instant::now();
    let mut again = store.prune_history(before, &keep, batch, &|| false)?;
    again.audit_entries = store.prune_audit(before, now, batch, &|| false)?;
    let again_time = t.elapsed();
    if !again.is_empty() {
        bail!("a second prune still deleted {again:?}");
    }
    let left = store
        .verify_audit_chain()
        .context("the audit chain after the prune")?;
    if left != 2 {
        bail!(
            "{left} audit entries left after pruning all but the last (expected it and audit.pruned)"
        );
    }
    drop(store);
    Ok(Pruned {
        first,
        first_time,
        audit_entries,
        audit_time,
        again_time,
        bytes_before,
        bytes_after: site.store_bytes(),
    })
}

/// The start-up path's store calls, timed one by one on the final store
/// (daemon stopped): what READY and the first sync wait on.
fn phases(site: &Site) -> anyhow::Result<Vec<(&'static str, Duration, usize)>> {
    let key = MasterKey::load(&site.master, false)?;
    let mut out = Vec::new();
    let t = Instant::now();
    let store = Store::open(&site.store, key)?;
    out.push(("Store::open", t.elapsed(), 0));
    let t = Instant::now();
    let n = store.unfinished_rotations()?.len();
    out.push(("Store::unfinished_rotations", t.elapsed(), n));
    let t = Instant::now();
    let n = store.keys()?.len();
    out.push(("Store::keys", t.elapsed(), n));
    let t = Instant::now();
    let n = store.local_keys()?.len();
    out.push(("Store::local_keys", t.elapsed(), n));
    let t = Instant::now();
    let n = store.keys_with_rotations()?.len();
    out.push(("Store::keys_with_rotations", t.elapsed(), n));
    let t = Instant::now();
    let n = keyrot::control::views::status_json(&store, common::wall_now(), true, None)
        .map_err(|e| anyhow::anyhow!("{}", e.message))?
        .len();
    out.push(("views::status_json (bytes)", t.elapsed(), n));
    let t = Instant::now();
    let n = store.rotations(None, 1000)?.len();
    out.push(("Store::rotations(None, 1000)", t.elapsed(), n));
    let t = Instant::now();
    let n = store.outbox()?.len();
    out.push(("Store::outbox", t.elapsed(), n));
    Ok(out)
}

fn quantile(v: &mut [Duration], q: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v.get(i).copied().unwrap_or_default()
}

fn median(mut v: Vec<Duration>) -> Duration {
    quantile(&mut v, 0.5)
}

fn median_u64(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

fn micros(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e8).round() / 100.0
}

fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; this bench takes no arguments.
    let knobs = Knobs::from_env()?;
    if let Some(dir) = std::env::var_os("KEYROT_SCALE_PHASES") {
        // Only time the store calls on a directory a kept run left.
        let site = Site::new(Path::new(&dir))?;
        if std::env::var_os("KEYROT_SCALE_STATUS_ONLY").is_some() {
            let store = Store::open_read_only(&site.store)?;
            for _ in 0..5 {
                let t = Instant::now();
                let n = keyrot::control::views::status_json(&store, common::wall_now(), true, None)
                    .map_err(|e| anyhow::anyhow!("{}", e.message))?
                    .len();
                println!("status_json {n} bytes in {} ms", ms(t.elapsed()));
            }
            let bytes = keyrot::control::views::status_json(&store, common::wall_now(), true, None)
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            for _ in 0..3 {
                let t = Instant::now();
                let st: keyrot::control::StatusResponse = serde_json::from_slice(&bytes)?;
                let parsed = t.elapsed();
                let t = Instant::now();
                let text = serde_json::to_string_pretty(&st)?;
                println!(
                    "CLI side: parse {} ms, pretty {} ms ({} bytes)",
                    ms(parsed),
                    ms(t.elapsed()),
                    text.len()
                );
            }
            return Ok(());
        }
        for (name, took, n) in phases(&site)? {
            println!("{name:<44} {:>14}  {n}", ms(took));
        }
        return Ok(());
    }
    let tmp = tempfile::Builder::new().prefix("keyrot-scale-").tempdir()?;
    let dir = tmp.path().to_path_buf();
    let site = Site::new(&dir)?;
    let now = common::wall_now();
    eprintln!(
        "scale: {} keys, {} warm runs, {} real rotations, {} rotations of history in {}",
        knobs.keys,
        knobs.runs,
        knobs.rotations,
        knobs.history,
        dir.display()
    );

    let t = Instant::now();
    seed(&site, knobs.keys, now)?;
    let seed_time = t.elapsed();
    let registry_bytes = site.store_bytes();

    // Cold: the first start binds every listed key to a slot.
    eprintln!("scale: cold start");
    let cold = measured_run(&site, 1)?;
    let inventory_bytes = site.store_bytes();

    eprintln!("scale: {} real rotations", knobs.rotations);
    let before_rot = site.store_bytes();
    let t = Instant::now();
    let ids = real_rotations(&site, knobs.rotations)?;
    let rotation_time = t.elapsed();
    let after_rot = site.store_bytes();

    let mut audit_per_rotation = 0;
    let (before_hist, after_hist) = match ids.first() {
        Some(template) if knobs.history > 0 => {
            eprintln!("scale: adding {} rotations of history", knobs.history);
            let b = site.store_bytes();
            let t = Instant::now();
            audit_per_rotation = add_history(&site, template, knobs.history, knobs.keys)?;
            eprintln!("scale: history added in {:.1} s", t.elapsed().as_secs_f64());
            (b, site.store_bytes())
        }
        _ => (0, 0),
    };

    eprintln!("scale: {} warm runs", knobs.runs);
    let mut warm = Vec::new();
    for _ in 0..knobs.runs {
        warm.push(measured_run(&site, 3)?);
    }
    let due = due_lookups(&site, 10_000)?;
    let phases = phases(&site)?;
    let tables = table_sizes(&site)?;
    eprintln!("scale: pruning the history older than 180 days");
    let pruned = prune(&site)?;

    let ready = median(warm.iter().map(|f| f.ready).collect());
    let synced = median(warm.iter().filter_map(|f| f.synced).collect());
    let status = median(warm.iter().flat_map(|f| f.status.clone()).collect());
    let status_socket = median(warm.iter().flat_map(|f| f.status_socket.clone()).collect());
    let peak = median_u64(warm.iter().map(|f| f.peak_rss_kib).collect());
    let steady = median_u64(warm.iter().map(|f| f.rss_after_sync_kib).collect());
    let after_status = median_u64(warm.iter().map(|f| f.rss_after_status_kib).collect());
    let per_key = inventory_bytes as f64 / knobs.keys.max(1) as f64;
    let per_real = after_rot.saturating_sub(before_rot) as f64 / knobs.rotations.max(1) as f64;
    // Row bytes (keys and values, redb's figures) per table row.
    let row = |name: &str| {
        tables
            .iter()
            .find(|t| t.0 == name)
            .map_or(0.0, |t| t.2 as f64 / t.1.max(1) as f64)
    };
    let key_rows = row("keys") + row("due") + row("latest_rotation") + row("local_keys");
    let rotation_rows = row("rotations")
        + row("key_rotations")
        + row("local_keys")
        + audit_per_rotation as f64 * row("audit");
    let per_hist = after_hist.saturating_sub(before_hist) as f64 / knobs.history.max(1) as f64;

    let rows: Vec<(&str, String, &str)> = vec![
        ("keys", knobs.keys.to_string(), ""),
        (
            "seed registry (s)",
            format!("{:.2}", seed_time.as_secs_f64()),
            "",
        ),
        (
            "cold start → READY (ms)",
            format!("{}", ms(cold.ready)),
            "< 1000",
        ),
        (
            "cold start → first sync done (ms)",
            format!("{}", ms(cold.synced.unwrap_or_default())),
            "",
        ),
        (
            "cold peak RSS (MiB)",
            format!("{}", mib(cold.peak_rss_kib)),
            "",
        ),
        (
            "warm start → READY, median (ms)",
            format!("{}", ms(ready)),
            "< 1000",
        ),
        (
            "warm start → first sync done, median (ms)",
            format!("{}", ms(synced)),
            "",
        ),
        ("peak RSS VmHWM, median (MiB)", format!("{}", mib(peak)), ""),
        (
            "steady RSS after sync, median (MiB)",
            format!("{}", mib(steady)),
            "< 64",
        ),
        (
            "RSS after 3 status calls, median (MiB)",
            format!("{}", mib(after_status)),
            "< 64",
        ),
        (
            "keyrot status --json, median (ms)",
            format!("{}", ms(status)),
            "< 1000",
        ),
        (
            "GET /v1/status on the socket, median (ms)",
            format!("{}", ms(status_socket)),
            "",
        ),
        (
            "status --json output (bytes)",
            warm.last().map_or(0, |f| f.status_bytes).to_string(),
            "",
        ),
        (
            "next_due median (µs)",
            format!("{}", due["next_due_median_us"]),
            "< 1000",
        ),
        (
            "next_due p99 (µs)",
            format!("{}", due["next_due_p99_us"]),
            "< 1000",
        ),
        (
            "next_due_after median (µs)",
            format!("{}", due["next_due_after_median_us"]),
            "",
        ),
        (
            "store: registry only (bytes)",
            registry_bytes.to_string(),
            "",
        ),
        (
            "store: after first sync (bytes)",
            inventory_bytes.to_string(),
            "",
        ),
        (
            "file bytes per key (after the first sync)",
            format!("{per_key:.0}"),
            "",
        ),
        (
            "real rotations (s)",
            format!("{:.2}", rotation_time.as_secs_f64()),
            "",
        ),
        (
            "file growth per real rotation (bytes)",
            format!("{per_real:.0}"),
            "",
        ),
        (
            "row bytes per key (slot, due, latest, local key)",
            format!("{key_rows:.0}"),
            "",
        ),
        (
            "row bytes per rotation (record, index, audit, key)",
            format!("{rotation_rows:.0}"),
            "",
        ),
        (
            "audit entries per rotation",
            audit_per_rotation.to_string(),
            "",
        ),
        (
            "file growth per rotation of history (bytes)",
            format!("{per_hist:.0}"),
            "",
        ),
        ("store with history (bytes)", after_hist.to_string(), ""),
    ];
    println!("\n{:<44} {:>14}  target", "figure", "value");
    for (name, value, target) in &rows {
        println!("{name:<44} {value:>14}  {target}");
    }
    println!("\n{:<44} {:>14}  rows", "store call (daemon stopped)", "ms");
    for (name, took, n) in &phases {
        println!("{name:<44} {:>14}  {n}", ms(*took));
    }
    println!(
        "\n{:<20} {:>10} {:>14} {:>10} {:>14}",
        "table", "rows", "row bytes", "per row", "tree overhead"
    );
    for (name, rows, stored, overhead) in &tables {
        println!(
            "{name:<20} {rows:>10} {stored:>14} {:>10.0} {overhead:>14}",
            *stored as f64 / (*rows).max(1) as f64
        );
    }
    println!(
        "\nprune (cutoff 180 days back): {} rotations, {} local keys, {} messages in {} transactions, {} ms; audit log (cutoff now): {} entries, {} ms; again (nothing left): {} ms; file {} → {} bytes",
        pruned.first.rotations,
        pruned.first.local_keys,
        pruned.first.messages,
        pruned.first.transactions,
        ms(pruned.first_time),
        pruned.audit_entries,
        ms(pruned.audit_time),
        ms(pruned.again_time),
        pruned.bytes_before,
        pruned.bytes_after
    );
    let json = serde_json::json!({
        "bench": "scale",
        "keys": knobs.keys,
        "runs": knobs.runs,
        "real_rotations": knobs.rotations,
        "history_rotations": knobs.history,
        "cold_ready_ms": ms(cold.ready),
        "cold_synced_ms": ms(cold.synced.unwrap_or_default()),
        "cold_peak_rss_mib": mib(cold.peak_rss_kib),
        "ready_ms": warm.iter().map(|f| ms(f.ready)).collect::<Vec<_>>(),
        "ready_median_ms": ms(ready),
        "synced_median_ms": ms(synced),
        "peak_rss_median_mib": mib(peak),
        "steady_rss_median_mib": mib(steady),
        "rss_after_status_median_mib": mib(after_status),
        "status_json_ms": warm.iter().flat_map(|f| f.status.iter().map(|d| ms(*d))).collect::<Vec<_>>(),
        "status_json_median_ms": ms(status),
        "status_socket_median_ms": ms(status_socket),
        "status_json_bytes": warm.last().map_or(0, |f| f.status_bytes),
        "next_due": due,
        "store_registry_bytes": registry_bytes,
        "store_inventory_bytes": inventory_bytes,
        "store_per_key_bytes": per_key.round(),
        "store_per_real_rotation_bytes": per_real.round(),
        "row_bytes_per_key": key_rows.round(),
        "row_bytes_per_rotation": rotation_rows.round(),
        "store_per_history_rotation_bytes": per_hist.round(),
        "store_with_history_bytes": after_hist,
        "audit_entries_per_rotation": audit_per_rotation,
        "tables": tables.iter().map(|(n, rows, stored, overhead)| (n.clone(), serde_json::json!({"rows": rows, "row_bytes": stored, "tree_overhead_bytes": overhead}))).collect::<BTreeMap<_, _>>(),
        "prune": {
            "rotations": pruned.first.rotations,
            "local_keys": pruned.first.local_keys,
            "messages": pruned.first.messages,
            "audit_entries": pruned.audit_entries,
            "audit_ms": ms(pruned.audit_time),
            "transactions": pruned.first.transactions,
            "ms": ms(pruned.first_time),
            "again_ms": ms(pruned.again_time),
            "file_bytes_before": pruned.bytes_before,
            "file_bytes_after": pruned.bytes_after,
        },
        "store_calls_ms": phases.iter().map(|(n, t, _)| (n.to_string(), ms(*t))).collect::<BTreeMap<_, _>>(),
    });
    println!("{json}");
    if knobs.keep {
        let kept = tmp.keep();
        eprintln!("scale: kept {}", kept.display());
    }
    Ok(())
}
