//! The keyrot daemon under test: the real binary (`keyrot run`, built by
//! `cargo bench` with the release profile), its config, rotations started
//! over the control socket as `keyrot rotate` starts them, and its
//! Prometheus step timings.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures::stream::{self, StreamExt, TryStreamExt};
use jiff::Timestamp;
use keyrot::control::client::Client;
use serde_json::{Value, json};

use crate::bao::KEYROT_MOUNT;

/// Rotation requests in flight on the control socket while a batch starts
/// (each is one store commit in the daemon).
const START_CONCURRENCY: usize = 8;

/// What the config is built from.
pub struct Setup<'a> {
    /// OpenBao's URL.
    pub addr: &'a str,
    /// The roles, one `[[key]]` each.
    pub roles: &'a [String],
    /// `daemon.metrics_listen` port.
    pub metrics_port: u16,
}

/// keyrot's config: the provider with `max_concurrent` and an optional
/// `requests_per_second`, the KV sink, a policy with overlap 0, one key per
/// role. Keys live 24 h and are due 1 h before expiry, so nothing rotates
/// unless the bench asks; the daily sync never runs during a bench.
pub fn config(s: &Setup<'_>, max_concurrent: usize, rate: Option<f64>) -> String {
    let rate = rate
        .map(|r| format!("requests_per_second = {r:?}\n"))
        .unwrap_or_default();
    let mut c = format!(
        r#"[daemon]
control_socket = "control.sock"
sync_schedule = "0 0 0 1 1 *"
shutdown_timeout = "30s"
metrics_listen = "127.0.0.1:{port}"

[daemon.retry]
attempts = 3
initial = "1s"
max = "2s"

[store]
path = "state/state.redb"
master_key_file = "master.key"
create_master_key = true

[notify]
from = "keyrot@example.com"
transport = "file"
dir = "mail"

[[provider]]
name = "bao"
type = "openbao-approle"
address = "{addr}"
mount = "{KEYROT_MOUNT}"
token = {{ file = "token" }}
max_concurrent = {max_concurrent}
{rate}
[[sink]]
name = "kv"
type = "openbao"
address = "{addr}"
mount = "secret"
path = "keyrot/{{name}}"
field = "secret_id"
token = {{ file = "token" }}

[[policy]]
name = "bench"
new_key_lifetime = "24h"
rotate_before_expiry = "1h"
overlap = "0s"
jitter = false
"#,
        port = s.metrics_port,
        addr = s.addr
    );
    for r in s.roles {
        c.push_str(&format!(
            "\n[[key]]\nname = \"{r}\"\nprovider = \"bao\"\npolicy = \"bench\"\nsinks = [\"kv\"]\n"
        ));
    }
    c
}

/// The keyrot daemon, killed on drop.
pub struct Daemon {
    /// `keyrot run`.
    child: Child,
    /// Its directory.
    dir: PathBuf,
    /// Control socket client.
    client: Client,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Starts `keyrot run` on `config` in `dir` and waits until the
    /// inventory sync has bound `n` slots.
    pub async fn start(dir: &Path, config: &str, n: usize) -> Result<Daemon> {
        fs::write(dir.join("keyrot.toml"), config)?;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("daemon.log"))?;
        // `scripts/bench/openbao.sh` runs a copy, safe from other builds.
        let bin = std::env::var_os("KEYROT_BENCH_KEYROT")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_keyrot")));
        let mut cmd = Command::new(bin);
        // SAFETY: prctl is async-signal-safe; nothing else runs between
        // fork and exec. keyrot gets SIGTERM if the bench dies, so no
        // daemon outlives an interrupted run.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .arg("run")
            .arg("--config")
            .arg(dir.join("keyrot.toml"))
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting keyrot")?;
        let d = Daemon {
            child,
            dir: dir.to_path_buf(),
            client: Client::new(dir.join("control.sock")),
        };
        d.wait_bound(n, Duration::from_secs(180)).await?;
        Ok(d)
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of its log.
    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Waits until `n` slots have a key (`GET /v1/status`).
    async fn wait_bound(&self, n: usize, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(st) = self.client.get::<Value>("/v1/status").await {
                let bound = st["keys"]
                    .as_array()
                    .map(|k| k.iter().filter(|r| r["key_id"].is_string()).count())
                    .unwrap_or(0);
                if bound >= n {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "keyrot did not bind {n} slots in time; log:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Rewrites the config and reloads (the reload syncs the inventory
    /// before it answers).
    pub async fn reload(&self, config: &str) -> Result<()> {
        fs::write(self.dir.join("keyrot.toml"), config)?;
        self.client
            .post_no_content("/v1/reload")
            .await
            .map_err(|e| anyhow!("reload: {e}; log:\n{}", self.log_tail()))
    }

    /// Rotates slot `bao/{role}` of every role and waits until they end.
    /// Returns the rotations done and the seconds from the first request
    /// to the last Completed commit (the daemon's own record).
    pub async fn batch(&self, roles: &[String]) -> Result<(usize, f64)> {
        let t0 = crate::common::wall_now();
        let ids: Vec<String> = stream::iter(roles)
            .map(|r| async move {
                let body = json!({"key": format!("bao/{r}"), "reason": "benchmark", "rotated_by": "bench"});
                let v: Value = self
                    .client
                    .post("/v1/rotate", &body)
                    .await
                    .map_err(|e| anyhow!("rotate {r}: {e}"))?;
                v["id"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| anyhow!("rotate {r}: no id in {v}"))
            })
            .buffer_unordered(START_CONCURRENCY)
            .try_collect()
            .await?;
        // Each rotation in turn (they end roughly in the order they
        // started), one record read at a time: a status poll would scan
        // every slot and load the daemon being measured.
        let deadline = Instant::now() + Duration::from_secs(900);
        let mut end = t0;
        let mut failed = Vec::new();
        for id in &ids {
            loop {
                let r: Value = self
                    .client
                    .get(&format!("/v1/rotations/{id}"))
                    .await
                    .map_err(|e| anyhow!("rotation {id}: {e}"))?;
                match r["state"].as_str().unwrap_or_default() {
                    "Completed" => {
                        let at: Timestamp = r["updated_at"].as_str().unwrap_or_default().parse()?;
                        end = end.max(at);
                    }
                    "Failed" | "Aborted" => {
                        failed.push(format!("{} {}: {}", r["slot"], r["state"], r["last_error"]));
                    }
                    _ if Instant::now() > deadline => {
                        bail!("rotations still running; log:\n{}", self.log_tail())
                    }
                    _ => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                }
                break;
            }
        }
        if !failed.is_empty() {
            bail!(
                "{} of {} rotations did not complete:\n{}\nlog:\n{}",
                failed.len(),
                ids.len(),
                failed.join("\n"),
                self.log_tail()
            );
        }
        Ok((ids.len(), end.duration_since(t0).as_secs_f64()))
    }
}

/// `keyrot_step_duration_seconds` by step: (sum, count).
pub async fn step_times(port: u16) -> Result<BTreeMap<String, (f64, f64)>> {
    keyrot_core::crypto::tls::provider();
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await?
        .text()
        .await?;
    let mut out: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for line in text.lines() {
        for (suffix, is_sum) in [("_sum", true), ("_count", false)] {
            let prefix = format!("keyrot_step_duration_seconds{suffix}{{step=\"");
            if let Some(rest) = line.strip_prefix(&prefix)
                && let Some((step, value)) = rest.split_once("\"} ")
            {
                let v: f64 = value.trim().parse().unwrap_or(0.0);
                let e = out.entry(step.to_string()).or_default();
                if is_sum {
                    e.0 = v;
                } else {
                    e.1 = v;
                }
            }
        }
    }
    Ok(out)
}

/// Mean milliseconds per step between two scrapes.
pub fn step_delta(
    before: &BTreeMap<String, (f64, f64)>,
    after: &BTreeMap<String, (f64, f64)>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .filter_map(|(k, (sum, count))| {
            let (s0, c0) = before.get(k).copied().unwrap_or_default();
            let n = count - c0;
            (n > 0.0).then(|| (k.clone(), (sum - s0) / n * 1000.0))
        })
        .collect()
}
