//! Reload hooks: what tells a consumer that a new secret is in place (see
//! docs/consumers.md). One trait, one struct per action. A hook never sees
//! a secret: it is told which keys and rotations the run covers, and the
//! consumer reads the secret from the sink, as it always does.
//!
//! A run may be repeated (keyrot records a hook as done only once it
//! returned, so a crash between the two runs it again): every action is
//! one a consumer can take twice. `exec` and `http` hooks get a run id,
//! the same for every repeat of one run, to tell a repeat from a new run.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use secrecy::ExposeSecret as _;
use serde::Serialize;

use crate::exec::Program;
use crate::http::{self, PeerKind};
use crate::systemd::{self, Systemd};
use keyrot_config::hooks::{HookAction, HookConfig, ReloadMode, SignalTarget};
use keyrot_config::{SecretRef, credentials_dir_from_env};
use keyrot_core::error::CallError;

/// The largest PID file read, in bytes.
const MAX_PID_FILE: u64 = 64;

/// What one run of a hook covers: sent to `exec` hooks on stdin and to
/// `http` hooks as the body. No secret.
#[derive(Clone, Debug, Serialize)]
pub struct HookEvent {
    /// Always `keyrot.reload`.
    pub event: &'static str,
    /// The hook's config name.
    pub hook: String,
    /// Stable across repeats of this run (the rotation and hook).
    pub run_id: String,
    /// The rotation whose step runs the hook.
    pub rotation_id: String,
    /// Its key slot (`provider/name`).
    pub key: String,
    /// The new key's id at the provider.
    pub key_id: String,
    /// When the run started.
    pub at: Timestamp,
}

/// A reload hook.
#[async_trait]
pub trait Hook: Send + Sync {
    /// Config name.
    fn name(&self) -> &str;
    /// Runs the hook once; the answer says what it did, in words.
    async fn run(&self, event: &HookEvent) -> Result<String, CallError>;
}

/// Builds a hook from its config.
pub fn build(cfg: &HookConfig) -> Arc<dyn Hook> {
    let name = cfg.name.clone();
    let timeout = cfg.timeout;
    match &cfg.action {
        HookAction::Systemd { units, mode, bus } => Arc::new(SystemdHook {
            name,
            units: units.clone(),
            mode: *mode,
            bus: bus.clone(),
            timeout,
        }),
        HookAction::Signal {
            signal,
            signal_name,
            target,
        } => Arc::new(SignalHook {
            name,
            signal: *signal,
            signal_name: signal_name.clone(),
            target: target.clone(),
            timeout,
        }),
        HookAction::Exec { command, env } => Arc::new(ExecHook {
            name,
            command: command.clone(),
            env: env.clone(),
            timeout,
        }),
        HookAction::Http { url, secret } => Arc::new(HttpHook {
            name,
            url: url.clone(),
            secret: secret.clone(),
            timeout,
        }),
    }
}

/// Reloads units through systemd's manager, waiting for each job.
struct SystemdHook {
    name: String,
    units: Vec<String>,
    mode: ReloadMode,
    bus: Option<String>,
    timeout: SignedDuration,
}

#[async_trait]
impl Hook for SystemdHook {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, _event: &HookEvent) -> Result<String, CallError> {
        let who = format!("hook {:?}", self.name);
        let timeout = std_duration(&who, self.timeout)?;
        let bus = Systemd::connect(self.bus.as_deref(), timeout)
            .await
            .map_err(|e| prefixed(&who, e))?;
        let mode = match self.mode {
            ReloadMode::Reload => systemd::ReloadMode::Reload,
            ReloadMode::TryReloadOrRestart => systemd::ReloadMode::TryReloadOrRestart,
        };
        for unit in &self.units {
            bus.reload(unit, mode, timeout)
                .await
                .map_err(|e| prefixed(&who, e))?;
        }
        let verb = match self.mode {
            ReloadMode::Reload => "reloaded",
            ReloadMode::TryReloadOrRestart => "reloaded or restarted",
        };
        Ok(format!("{verb} {}", self.units.join(", ")))
    }
}

/// Sends a signal to a process named by a PID file, or to a unit's main
/// process through systemd.
struct SignalHook {
    name: String,
    signal: i32,
    signal_name: String,
    target: SignalTarget,
    timeout: SignedDuration,
}

#[async_trait]
impl Hook for SignalHook {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, _event: &HookEvent) -> Result<String, CallError> {
        let who = format!("hook {:?}", self.name);
        match &self.target {
            SignalTarget::PidFile(path) => {
                let pid = read_pid_file(&who, path)?;
                // SAFETY: kill(2) takes plain integers and touches no memory.
                let rc = unsafe { libc::kill(pid, self.signal) };
                if rc != 0 {
                    let e = std::io::Error::last_os_error();
                    let message = format!(
                        "{who}: cannot send SIG{} to process {pid} (from {}): {e}",
                        self.signal_name,
                        path.display()
                    );
                    // No such process: the service may be restarting and
                    // write its PID file again; try later.
                    return Err(if e.raw_os_error() == Some(libc::ESRCH) {
                        CallError::transient(message)
                    } else {
                        CallError::permanent(message)
                    });
                }
                Ok(format!(
                    "sent SIG{} to process {pid} ({})",
                    self.signal_name,
                    path.display()
                ))
            }
            SignalTarget::Unit { unit, bus } => {
                let timeout = std_duration(&who, self.timeout)?;
                let bus = Systemd::connect(bus.as_deref(), timeout)
                    .await
                    .map_err(|e| prefixed(&who, e))?;
                bus.kill_main(unit, self.signal, timeout)
                    .await
                    .map_err(|e| prefixed(&who, e))?;
                Ok(format!(
                    "sent SIG{} to the main process of {unit}",
                    self.signal_name
                ))
            }
        }
    }
}

/// Reads a PID file the way a careful init script does: a regular file,
/// owned by root or by keyrot's own user, writable by nobody else, holding
/// one process id above 1. Anyone who could write it could otherwise aim
/// keyrot's signal at any process keyrot may signal.
fn read_pid_file(who: &str, path: &Path) -> Result<i32, CallError> {
    let show = path.display();
    let meta = std::fs::symlink_metadata(path).map_err(|e| {
        // Missing: the service may be starting; try later.
        let message = format!("{who}: cannot read the PID file {show}: {e}");
        if e.kind() == std::io::ErrorKind::NotFound {
            CallError::transient(message)
        } else {
            CallError::permanent(message)
        }
    })?;
    let me = rustix::process::geteuid().as_raw();
    if !meta.file_type().is_file() {
        return Err(CallError::permanent(format!(
            "{who}: the PID file {show} is not a regular file"
        )));
    }
    if meta.uid() != 0 && meta.uid() != me {
        return Err(CallError::permanent(format!(
            "{who}: the PID file {show} is owned by uid {}, neither root nor keyrot's user: refusing to signal the process it names",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(CallError::permanent(format!(
            "{who}: the PID file {show} is writable by group or others (mode {:o}): refusing to signal the process it names",
            meta.mode() & 0o7777
        )));
    }
    if meta.len() > MAX_PID_FILE {
        return Err(CallError::permanent(format!(
            "{who}: the PID file {show} is {} bytes: not a PID file",
            meta.len()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        CallError::permanent(format!("{who}: cannot read the PID file {show}: {e}"))
    })?;
    match text.trim().parse::<i32>() {
        Ok(pid) if pid > 1 => Ok(pid),
        _ => Err(CallError::permanent(format!(
            "{who}: the PID file {show} does not hold a process id above 1"
        ))),
    }
}

/// Runs a program with the event as JSON on stdin, under the hygiene of
/// the `exec` sink (a cleared environment, killed at the timeout).
struct ExecHook {
    name: String,
    command: Vec<String>,
    env: BTreeMap<String, String>,
    timeout: SignedDuration,
}

#[async_trait]
impl Hook for ExecHook {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, event: &HookEvent) -> Result<String, CallError> {
        let who = format!("hook {:?}", self.name);
        let input = serde_json::to_vec(event)
            .map_err(|e| CallError::permanent(format!("{who}: cannot encode the event: {e}")))?;
        let program = Program {
            who: &who,
            what: "command",
            argv: &self.command,
            env: &self.env,
            vars: vec![
                ("KEYROT_HOOK", self.name.clone()),
                ("KEYROT_RUN_ID", event.run_id.clone()),
                ("KEYROT_ROTATION_ID", event.rotation_id.clone()),
                ("KEYROT_SLOT", event.key.clone()),
            ],
            timeout: self.timeout,
            max_stdout: 4096,
        };
        let run = program.run(Some(&input)).await?;
        if run.code != Some(0) {
            return Err(run.failure(&who, "command", None));
        }
        let program = self.command.first().map(String::as_str).unwrap_or("");
        Ok(format!("ran {program}"))
    }
}

/// POSTs the event as JSON, signed like keyrot's webhooks when a secret
/// is set, with the run id as `Idempotency-Key`.
struct HttpHook {
    name: String,
    url: String,
    secret: Option<SecretRef>,
    timeout: SignedDuration,
}

#[async_trait]
impl Hook for HttpHook {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, event: &HookEvent) -> Result<String, CallError> {
        let who = format!("hook {:?}", self.name);
        let body = serde_json::to_string(event)
            .map_err(|e| CallError::permanent(format!("{who}: cannot encode the event: {e}")))?;
        let client = http::client(&who, self.timeout, None)?;
        let mut req = client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Keyrot-Event", event.event)
            .header("Idempotency-Key", &event.run_id)
            .body(body.clone());
        if let Some(secret) = &self.secret {
            let key = secret
                .resolve(credentials_dir_from_env().as_deref())
                .map_err(|e| CallError::permanent(format!("{who}: `secret`: {e}")))?;
            req = req.header(
                "X-Keyrot-Signature",
                http::signature(key.expose_secret().as_bytes(), event.at, &body),
            );
        }
        let what = "posting the reload event";
        let ans = http::send(&who, what, PeerKind::Webhook, self.timeout, req).await?;
        if ans.status.is_success() {
            return Ok(format!(
                "POST {} answered {}",
                self.url,
                ans.status.as_u16()
            ));
        }
        Err(http::status_error(
            &who,
            what,
            "the receiver",
            &ans,
            event.at,
            None,
        ))
    }
}

fn std_duration(who: &str, d: SignedDuration) -> Result<std::time::Duration, CallError> {
    std::time::Duration::try_from(d)
        .map_err(|_| CallError::permanent(format!("{who}: `timeout` must be positive")))
}

fn prefixed(who: &str, e: CallError) -> CallError {
    CallError {
        message: format!("{who}: {}", e.message),
        ..e
    }
}

#[cfg(test)]
mod tests;
