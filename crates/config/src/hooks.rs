//! `[[hook]]`: what tells a consumer to pick up a new secret once every
//! sink of a rotation holds it (see docs/consumers.md). A hook reloads
//! systemd units over D-Bus, sends a signal to a process (named by a PID
//! file or as a unit's main process), runs a program, or POSTs to a URL.
//! Keys and sinks name hooks with `hooks = ["..."]`; a rotation runs the
//! hooks of its key and of each of its sinks, each once.

use std::collections::BTreeMap;
use std::path::PathBuf;

use jiff::SignedDuration;
use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::ctx::{Ctx, did_you_mean};
use super::raw::{DurationText, RawPassword};
use super::secret::{SecretUse, secret_ref};
use super::secret_ref::SecretRef;
use super::sinks::{argv, exec_env};

/// Default `debounce`: rotations that reach the hook within this long of
/// each other share one run of it.
pub const DEFAULT_HOOK_DEBOUNCE: SignedDuration = SignedDuration::from_secs(5);
/// Default `timeout` of one run.
pub const DEFAULT_HOOK_TIMEOUT: SignedDuration = SignedDuration::from_secs(60);
/// Action names, as written.
const ACTIONS: [&str; 4] = ["systemd", "signal", "exec", "http"];
/// Signals a hook may send, by name.
const SIGNALS: [(&str, i32); 5] = [
    ("HUP", libc::SIGHUP),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("TERM", libc::SIGTERM),
    ("INT", libc::SIGINT),
];

/// `[[hook]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHook {
    /// Unique name, used by keys and sinks.
    pub name: Spanned<String>,
    /// `systemd`, `signal`, `exec` or `http`.
    pub action: Spanned<String>,
    /// Units to reload (`systemd`), or the unit whose main process gets
    /// the signal (`signal`, as `unit = "..."`).
    pub units: Option<Spanned<Vec<String>>>,
    /// The unit whose main process gets the signal (`signal`).
    pub unit: Option<Spanned<String>>,
    /// `reload` (default) or `try-reload-or-restart` (`systemd`).
    pub mode: Option<Spanned<String>>,
    /// D-Bus address of the bus systemd is on (default: the system bus).
    pub bus: Option<Spanned<String>>,
    /// Signal name, default `HUP` (`signal`).
    pub signal: Option<Spanned<String>>,
    /// File holding the process id (`signal`).
    pub pid_file: Option<Spanned<String>>,
    /// Program and arguments (`exec`).
    pub command: Option<Spanned<Vec<String>>>,
    /// Extra environment, not secrets (`exec`).
    pub env: Option<Spanned<BTreeMap<String, String>>>,
    /// Where to POST (`http`).
    pub url: Option<Spanned<String>>,
    /// HMAC-SHA256 key of `X-Keyrot-Signature` (`http`), a secret reference.
    pub secret: Option<Spanned<RawPassword>>,
    /// Batch rotations reaching the hook this close together.
    pub debounce: Option<Spanned<DurationText>>,
    /// Give up on one run after this long.
    pub timeout: Option<Spanned<DurationText>>,
}

/// A validated `[[hook]]`.
#[derive(Clone, Debug)]
pub struct HookConfig {
    /// Unique name.
    pub name: String,
    /// What it does.
    pub action: HookAction,
    /// Rotations reaching this hook within `debounce` of the first share
    /// one run.
    pub debounce: SignedDuration,
    /// Time for one run.
    pub timeout: SignedDuration,
}

/// How a `systemd` hook reloads its units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadMode {
    /// `systemctl reload`: fails for a unit that cannot reload.
    Reload,
    /// `systemctl try-reload-or-restart`: reload if the unit can, else
    /// restart it if it runs.
    TryReloadOrRestart,
}

/// Where a `signal` hook's signal goes.
#[derive(Clone, Debug)]
pub enum SignalTarget {
    /// The process whose id is in this file.
    PidFile(PathBuf),
    /// The main process of a systemd unit (through systemd, over D-Bus).
    Unit {
        /// Unit name.
        unit: String,
        /// D-Bus address; None: the system bus.
        bus: Option<String>,
    },
}

/// A hook's action.
#[derive(Clone, Debug)]
pub enum HookAction {
    /// Reload units through systemd's D-Bus API.
    Systemd {
        /// Unit names.
        units: Vec<String>,
        /// Reload or try-reload-or-restart.
        mode: ReloadMode,
        /// D-Bus address; None: the system bus.
        bus: Option<String>,
    },
    /// Send a signal.
    Signal {
        /// Signal number.
        signal: i32,
        /// Signal name as written (`HUP`).
        signal_name: String,
        /// To whom.
        target: SignalTarget,
    },
    /// Run a program (no secret in its argv, env or stdin).
    Exec {
        /// Program and arguments.
        command: Vec<String>,
        /// Extra environment.
        env: BTreeMap<String, String>,
    },
    /// POST a JSON event.
    Http {
        /// URL (https, or http to a loopback host).
        url: String,
        /// Signing key, if any.
        secret: Option<SecretRef>,
    },
}

/// Every `[[hook]]`; names are returned (with spans) for the references
/// of keys and sinks.
pub(crate) fn hooks(
    ctx: &mut Ctx<'_>,
    entries: Vec<Spanned<DeValue<'_>>>,
) -> (Vec<HookConfig>, Vec<Spanned<String>>) {
    let mut out = Vec::new();
    let mut names: Vec<Spanned<String>> = Vec::new();
    for entry in entries {
        let Some(raw) = ctx.deser::<RawHook>(entry) else {
            continue;
        };
        if names.iter().any(|n| n.get_ref() == raw.name.get_ref()) {
            ctx.error(
                raw.name.span(),
                format!("hook {:?} is defined twice", raw.name.get_ref()),
            );
            continue;
        }
        names.push(raw.name.clone());
        out.extend(hook(ctx, &raw));
    }
    (out, names)
}

/// One `[[hook]]`: the fields its action takes, and no other.
fn hook(ctx: &mut Ctx<'_>, raw: &RawHook) -> Option<HookConfig> {
    let before = ctx.error_count();
    let name = ctx.text(&raw.name, "name");
    let debounce = match &raw.debounce {
        None => Some(DEFAULT_HOOK_DEBOUNCE),
        Some(d) => ctx.duration(d),
    };
    let timeout = match &raw.timeout {
        None => Some(DEFAULT_HOOK_TIMEOUT),
        Some(t) => ctx.positive(t, "timeout"),
    };
    let action_name = raw.action.get_ref().as_str();
    let allowed: &[&str] = match action_name {
        "systemd" => &["units", "mode", "bus"],
        "signal" => &["signal", "pid_file", "unit", "bus"],
        "exec" => &["command", "env"],
        "http" => &["url", "secret"],
        other => {
            let hint = did_you_mean(other, ACTIONS);
            ctx.error(
                raw.action.span(),
                format!(
                    "unknown hook action {other:?}{hint}: use \"systemd\", \"signal\", \"exec\" or \"http\""
                ),
            );
            return None;
        }
    };
    for (field, span) in present_fields(raw) {
        if !allowed.contains(&field) {
            ctx.error(
                span,
                format!("`{field}` does not apply to a hook with action = {action_name:?}"),
            );
        }
    }
    let action = match action_name {
        "systemd" => systemd(ctx, raw),
        "signal" => signal(ctx, raw),
        "exec" => exec(ctx, raw),
        _ => http(ctx, raw),
    };
    if ctx.error_count() > before {
        return None;
    }
    Some(HookConfig {
        name: name?,
        action: action?,
        debounce: debounce?,
        timeout: timeout?,
    })
}

/// The action-specific fields that are set, with their spans.
fn present_fields(raw: &RawHook) -> Vec<(&'static str, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut add = |name, span: Option<std::ops::Range<usize>>| {
        if let Some(s) = span {
            out.push((name, s));
        }
    };
    add("units", raw.units.as_ref().map(Spanned::span));
    add("unit", raw.unit.as_ref().map(Spanned::span));
    add("mode", raw.mode.as_ref().map(Spanned::span));
    add("bus", raw.bus.as_ref().map(Spanned::span));
    add("signal", raw.signal.as_ref().map(Spanned::span));
    add("pid_file", raw.pid_file.as_ref().map(Spanned::span));
    add("command", raw.command.as_ref().map(Spanned::span));
    add("env", raw.env.as_ref().map(Spanned::span));
    add("url", raw.url.as_ref().map(Spanned::span));
    add("secret", raw.secret.as_ref().map(Spanned::span));
    out
}

fn systemd(ctx: &mut Ctx<'_>, raw: &RawHook) -> Option<HookAction> {
    let Some(units) = &raw.units else {
        ctx.error(
            raw.action.span(),
            "a systemd hook needs `units = [\"app.service\"]`",
        );
        return None;
    };
    if units.get_ref().is_empty() {
        ctx.error(units.span(), "`units` must name at least one unit");
        return None;
    }
    for u in units.get_ref() {
        if let Err(e) = unit_name(u) {
            ctx.error(units.span(), e);
            return None;
        }
    }
    let mode = match raw.mode.as_ref().map(|m| (m, m.get_ref().as_str())) {
        None | Some((_, "reload")) => ReloadMode::Reload,
        Some((_, "try-reload-or-restart")) => ReloadMode::TryReloadOrRestart,
        Some((m, other)) => {
            ctx.error(
                m.span(),
                format!("unknown mode {other:?}: use \"reload\" or \"try-reload-or-restart\""),
            );
            return None;
        }
    };
    Some(HookAction::Systemd {
        units: units.get_ref().clone(),
        mode,
        bus: bus(ctx, raw)?,
    })
}

fn signal(ctx: &mut Ctx<'_>, raw: &RawHook) -> Option<HookAction> {
    let (signal, signal_name) = match &raw.signal {
        None => (libc::SIGHUP, "HUP".to_string()),
        Some(s) => {
            let written = s.get_ref().trim_start_matches("SIG");
            match SIGNALS.iter().find(|(n, _)| *n == written) {
                Some((n, v)) => (*v, n.to_string()),
                None => {
                    ctx.error(
                        s.span(),
                        format!(
                            "unknown signal {:?}: use one of HUP, USR1, USR2, TERM, INT",
                            s.get_ref()
                        ),
                    );
                    return None;
                }
            }
        }
    };
    let target = match (&raw.pid_file, &raw.unit) {
        (Some(p), None) => SignalTarget::PidFile(ctx.path(p, "pid_file")?),
        (None, Some(u)) => {
            if let Err(e) = unit_name(u.get_ref()) {
                ctx.error(u.span(), e);
                return None;
            }
            SignalTarget::Unit {
                unit: u.get_ref().clone(),
                bus: bus(ctx, raw)?,
            }
        }
        (Some(p), Some(_)) => {
            ctx.error(
                p.span(),
                "a signal hook takes `pid_file` or `unit`, not both",
            );
            return None;
        }
        (None, None) => {
            ctx.error(
                raw.action.span(),
                "a signal hook needs `pid_file = \"/run/app.pid\"` or `unit = \"app.service\"`",
            );
            return None;
        }
    };
    if raw.bus.is_some() && matches!(target, SignalTarget::PidFile(_)) {
        if let Some(b) = &raw.bus {
            ctx.error(b.span(), "`bus` goes with `unit`, not with `pid_file`");
        }
        return None;
    }
    Some(HookAction::Signal {
        signal,
        signal_name,
        target,
    })
}

fn exec(ctx: &mut Ctx<'_>, raw: &RawHook) -> Option<HookAction> {
    let Some(command) = &raw.command else {
        ctx.error(
            raw.action.span(),
            "an exec hook needs `command = [\"/path/to/program\", ...]`",
        );
        return None;
    };
    let command = argv(ctx, command, "command");
    let env = exec_env(ctx, &raw.env);
    Some(HookAction::Exec {
        command: command?,
        env: env?,
    })
}

fn http(ctx: &mut Ctx<'_>, raw: &RawHook) -> Option<HookAction> {
    let Some(url) = &raw.url else {
        ctx.error(
            raw.action.span(),
            "an http hook needs `url = \"https://...\"`",
        );
        return None;
    };
    let url = ctx.http_url(url, "url", "the reload event");
    let secret = match &raw.secret {
        None => Some(None),
        Some(s) => match &s.get_ref().0 {
            Ok(r) => secret_ref(ctx, &Spanned::new(s.span(), r.clone())).map(Some),
            Err(msg) => {
                ctx.error(
                    s.span(),
                    format!("`secret` must be a secret reference: {msg}"),
                );
                None
            }
        },
    };
    Some(HookAction::Http {
        url: url?,
        secret: secret?,
    })
}

fn bus(ctx: &mut Ctx<'_>, raw: &RawHook) -> Option<Option<String>> {
    match &raw.bus {
        None => Some(None),
        Some(b) => ctx.text(b, "bus").map(Some),
    }
}

/// A systemd unit name by systemd's rules ([`keyrot_core::unit_name`]).
pub fn unit_name(name: &str) -> Result<(), String> {
    keyrot_core::unit_name::check(name)
        .map_err(|why| format!("{name:?} is not a systemd unit name: {why}"))
}

/// The secret references of the hooks (http signing keys).
pub(crate) fn secret_uses(hooks: &[HookConfig]) -> Vec<SecretUse<'_>> {
    hooks
        .iter()
        .filter_map(|h| match &h.action {
            HookAction::Http {
                secret: Some(s), ..
            } => Some(SecretUse {
                owner: format!("hook {:?}", h.name),
                field: "secret",
                secret: s,
            }),
            _ => None,
        })
        .collect()
}
