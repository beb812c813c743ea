//! `keyrot sink test NAME`: writes a probe value to the sink's
//! `keyrot-probe` location, reads it back and compares (see
//! [`keyrot_peers::sink::probe`]). It runs inside the daemon when one answers, so
//! it uses exactly the credentials a rotation would (systemd credentials
//! included); with no daemon it builds the sink from the config here.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use super::output;
use crate::control::client::{Client, ClientError, query_escape};
use keyrot_config::Config;
use keyrot_core::clock::{Clock, SystemClock};
use keyrot_peers::sink::probe::{self, ProbeReport};

/// Longest a probe may take through the daemon (several calls, each with
/// the sink's own timeout).
const PROBE_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `keyrot sink test NAME`.
pub async fn test(
    name: &str,
    socket: &Path,
    cfg: Option<&Config>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let path = format!("/v1/sinks/{}/test", query_escape(name));
    let answer = Client::new(socket)
        .with_timeout(PROBE_TIMEOUT)
        .post_empty::<ProbeReport>(&path)
        .await;
    let (report, where_) = match answer {
        Ok(r) => (r, "in the daemon"),
        Err(ClientError::NotRunning { .. }) => {
            let Some(cfg) = cfg else {
                anyhow::bail!(
                    "keyrot daemon is not running and the configuration cannot be read: fix it (keyrot check) or start the daemon"
                );
            };
            (local(name, cfg).await?, "here (no daemon answers)")
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        output::print_json(&report)?;
    } else {
        output::outln(&format!(
            "sink {} ({}): probe written{}, read back: {}, {} ms, run {where_}",
            output::clean(&report.sink),
            report.kind,
            report
                .version
                .as_deref()
                .map(|v| format!(" (version {})", output::clean(v)))
                .unwrap_or_default(),
            output::clean(&report.read_back),
            report.elapsed_ms
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Builds sink `name` from `cfg` and probes it in this process.
async fn local(name: &str, cfg: &Config) -> anyhow::Result<ProbeReport> {
    let Some(sc) = cfg.sink(name) else {
        let known: Vec<&str> = cfg.sinks.iter().map(|s| s.name.as_str()).collect();
        anyhow::bail!(
            "no sink named {name:?} in the configuration (sinks: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    // As the daemon would reach it: `[daemon] proxy` or direct.
    keyrot_peers::http::proxy::set(cfg.daemon.proxy.as_ref());
    let sink = keyrot_peers::sink::build(sc).map_err(|e| anyhow::anyhow!("sink {name:?}: {e}"))?;
    probe::run(
        sink.as_ref(),
        &probe::probe_provider(cfg, name),
        SystemClock.now(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Runs `keyrot sink push KEY [--sink NAME]` (needs the daemon); exits 1
/// when a sink was not written and read back.
pub async fn push(
    key: &str,
    sink: Option<&str>,
    socket: &Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let req = crate::control::SinkPushRequest {
        key: key.to_string(),
        sink: sink.map(str::to_string),
        requested_by: std::env::var("USER").ok(),
    };
    let report: keyrot_engine::rotation::push::PushReport = Client::new(socket)
        .with_timeout(PROBE_TIMEOUT)
        .post("/v1/sinks/push", &req)
        .await
        .map_err(|e| output::needs_daemon(e, "keyrot sink push"))?;
    if json {
        output::print_json(&report)?;
    } else {
        let mut out = String::new();
        for s in &report.sinks {
            let line = match &s.error {
                None => format!(
                    "sink {}: current secret of {} (key {}) written, read back: {}{}",
                    output::clean(&s.sink),
                    output::clean(&report.key),
                    output::clean(&report.key_id),
                    s.read_back,
                    s.version
                        .as_deref()
                        .map(|v| format!(" (version {})", output::clean(v)))
                        .unwrap_or_default()
                ),
                Some(e) => format!(
                    "sink {}: FAILED: {}",
                    output::clean(&s.sink),
                    output::clean(e)
                ),
            };
            out.push_str(&line);
            out.push('\n');
        }
        output::out(&out)?;
    }
    Ok(if report.sinks.iter().all(|s| s.error.is_none()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
