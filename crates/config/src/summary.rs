//! What `keyrot check` prints about a valid config: the files read, each
//! section in one or two lines, each policy's next window, and whether
//! every secret reference can be resolved now.

use std::fmt::Write as _;
use std::path::Path;

use jiff::Timestamp;

use super::diag::Diagnostic;
use super::secret::{SecretUse, credentials_dir_from_env};
use super::sinks::{FileFormat, SinkKind};
use super::types::{Config, KeyMatch, KeySpec, ProviderKind};
use keyrot_core::policy::{Policy, format_duration};

/// Every secret reference in the config. (No core type holds one yet;
/// provider, sink and notify types that take secrets add theirs here.)
pub fn secret_refs(cfg: &Config) -> Vec<SecretUse<'_>> {
    let mut out = Vec::new();
    for p in &cfg.providers {
        match &p.kind {
            ProviderKind::Local(_) => {}
            ProviderKind::Atlassian(a) => out.extend(super::atlassian::secret_uses(&p.name, a)),
            ProviderKind::OpenBaoAppRole(c) => out.extend(super::approle::secret_uses(&p.name, c)),
            ProviderKind::AwsIam(c) => out.extend(super::aws_iam::secret_uses(&p.name, c)),
            ProviderKind::Http(c) => out.extend(super::http_provider::secret_uses(&p.name, c)),
            ProviderKind::Exec(c) => out.extend(super::exec_provider::secret_uses(&p.name, c)),
        }
    }
    for s in &cfg.sinks {
        out.extend(super::sinks::secret_uses(&s.name, &s.kind));
    }
    out.extend(super::access::secret_uses(&cfg.psks, &cfg.api_tokens));
    out.extend(super::notify::secret_uses(&cfg.notify));
    out.extend(super::hooks::secret_uses(&cfg.hooks));
    out
}

/// Resolves every secret reference now, with credentials from
/// `$CREDENTIALS_DIRECTORY`; one diagnostic per failure.
pub fn check_secrets(cfg: &Config) -> Vec<Diagnostic> {
    check_secrets_in(cfg, credentials_dir_from_env().as_deref())
}

/// Like [`check_secrets`] with an explicit credentials directory. Each
/// diagnostic is placed where the reference is written (the first place,
/// when the same reference is written twice; the main file when unknown)
/// and names the owner and field (never the secret).
pub fn check_secrets_in(cfg: &Config, credentials_dir: Option<&Path>) -> Vec<Diagnostic> {
    let main = cfg
        .files
        .first()
        .map_or(Path::new("<config>"), |p| p.as_path());
    secret_refs(cfg)
        .into_iter()
        .filter_map(|u| {
            u.secret.check_resolvable(credentials_dir).err().map(|e| {
                let message = format!("{} `{}` ({}): {e}", u.owner, u.field, u.secret);
                match cfg.secret_sites.iter().find(|(r, _)| r == u.secret) {
                    Some((_, site)) => Diagnostic {
                        message,
                        ..site.clone()
                    },
                    None => Diagnostic::whole_file(main, message),
                }
            })
        })
        .collect()
}

/// A multi-line human summary of a valid config, as of `now`.
pub fn summary(cfg: &Config, now: Timestamp) -> String {
    let mut out = String::new();
    let files: Vec<String> = cfg.files.iter().map(|f| f.display().to_string()).collect();
    let _ = writeln!(out, "files read: {}", files.join(", "));
    let d = &cfg.daemon;
    let _ = writeln!(
        out,
        "daemon: control socket {} (mode {:04o}), sync {:?} UTC, shutdown timeout {}, \
         retry {} attempts, backoff {} to {}",
        d.control_socket.display(),
        d.control_socket_mode,
        d.sync_schedule.as_str(),
        format_duration(d.shutdown_timeout),
        d.retry.attempts,
        format_duration(d.retry.initial),
        format_duration(d.retry.max)
    );
    let s = &cfg.store;
    let create = if s.create_master_key {
        ", created if missing"
    } else {
        ""
    };
    let kept =
        |r: Option<jiff::SignedDuration>| r.map_or_else(|| "forever".into(), format_duration);
    let _ = writeln!(
        out,
        "store: {} (master key: credential master-key, else {}{create}); history kept {}, audit log kept {}",
        match &s.postgres {
            Some(pg) => format!(
                "PostgreSQL, URL from {}, {} connections{}",
                pg.url,
                pg.pool_size,
                pg.ca_file
                    .as_ref()
                    .map(|f| format!(", CA {}", f.display()))
                    .unwrap_or_default()
            ),
            None => s.path.display().to_string(),
        },
        s.master_key_file.display(),
        kept(s.history_retention),
        kept(s.audit_retention)
    );
    heading(&mut out, cfg.providers.len(), "provider", "providers");
    for p in &cfg.providers {
        let line = match &p.kind {
            ProviderKind::Local(l) => format!(
                "{} (local, {} at once, new keys live {}, {} bytes)",
                p.name,
                p.max_concurrent,
                format_duration(l.default_lifetime),
                l.secret_bytes
            ),
            ProviderKind::Atlassian(a) => super::atlassian::summary_line(p, a),
            ProviderKind::OpenBaoAppRole(c) => super::approle::summary_line(p, c),
            ProviderKind::AwsIam(c) => super::aws_iam::summary_line(p, c),
            ProviderKind::Http(c) => super::http_provider::summary_line(p, c),
            ProviderKind::Exec(c) => super::exec_provider::summary_line(p, c),
        };
        let rate = p
            .requests_per_second
            .map(|r| format!(", at most {r} requests/s"))
            .unwrap_or_default();
        let _ = writeln!(out, "  {line}{rate}");
    }
    heading(&mut out, cfg.sinks.len(), "sink", "sinks");
    for sink in &cfg.sinks {
        let SinkKind::File(f) = &sink.kind else {
            if let Some(line) = super::sinks::summary_line(&sink.name, &sink.kind) {
                let _ = writeln!(out, "  {line}");
            }
            continue;
        };
        let format = match f.format {
            FileFormat::Raw => "raw".to_string(),
            FileFormat::Json => "json".to_string(),
            FileFormat::Env => format!("env {}", f.env_name),
        };
        let _ = writeln!(
            out,
            "  {} (file, {format}, mode {:04o}): {}",
            sink.name, f.mode, f.path
        );
    }
    if !cfg.hooks.is_empty() {
        heading(&mut out, cfg.hooks.len(), "reload hook", "reload hooks");
        for h in &cfg.hooks {
            let _ = writeln!(out, "  {}", hook_line(h));
        }
    }
    heading(&mut out, cfg.policies.len(), "policy", "policies");
    for p in &cfg.policies {
        let _ = writeln!(
            out,
            "  {}: {}; next window {}",
            p.name,
            rules(p),
            next_window(p, now)
        );
    }
    heading(&mut out, cfg.keys.len(), "key entry", "key entries");
    for k in &cfg.keys {
        let _ = writeln!(out, "  {}", key_line(k));
    }
    let transport = super::notify::transport_summary(&cfg.notify.transport);
    let dry = if cfg.notify.dry_run { ", dry run" } else { "" };
    let _ = writeln!(out, "notify: {transport}, from {}{dry}", cfg.notify.from);
    if let Some(line) = super::access::summary_line(&cfg.psks, &cfg.api_tokens) {
        let _ = writeln!(out, "{line}");
    }
    out
}

/// `N thing:` / `N things:`.
fn heading(out: &mut String, n: usize, one: &str, many: &str) {
    let _ = writeln!(out, "{n} {}:", if n == 1 { one } else { many });
}

/// The policy's rotation rules in one phrase.
fn rules(p: &Policy) -> String {
    let mut parts = Vec::new();
    if let Some(d) = p.rotate_before_expiry {
        parts.push(format!("rotate {} before expiry", format_duration(d)));
    }
    if let Some(d) = p.max_age {
        parts.push(format!("max age {}", format_duration(d)));
    }
    if parts.is_empty() {
        parts.push("rotate at 2/3 of lifetime".to_string());
    }
    if let Some(d) = p.new_key_lifetime {
        parts.push(format!("new keys live {}", format_duration(d)));
    }
    parts.push(format!("overlap {}", format_duration(p.overlap)));
    if !p.auto_rotate {
        parts.push("auto_rotate off".to_string());
    }
    parts.join(", ")
}

/// The earliest next window start, in the window's zone and in UTC.
fn next_window(p: &Policy, now: Timestamp) -> String {
    if p.windows.is_empty() {
        return "any time (no window)".to_string();
    }
    let next = p
        .windows
        .iter()
        .filter_map(|w| w.next_start_after(now).map(|at| (at, w)))
        .min_by_key(|(at, _)| *at);
    let Some((at, w)) = next else {
        return "never (no window opens within 5 years)".to_string();
    };
    let utc = at.strftime("%Y-%m-%dT%H:%M:%SZ");
    let Ok(tz) = jiff::tz::TimeZone::get(&w.timezone) else {
        return utc.to_string();
    };
    let zoned = at.to_zoned(tz);
    let abbr = zoned.strftime("%Z").to_string();
    let zone = if abbr == w.timezone {
        abbr
    } else {
        format!("{abbr} {}", w.timezone)
    };
    format!("{} {zone} ({utc})", zoned.strftime("%Y-%m-%d %H:%M"))
}

/// `name (action, what it does, debounce D, timeout T)`.
fn hook_line(h: &crate::hooks::HookConfig) -> String {
    use crate::hooks::{HookAction, ReloadMode, SignalTarget};
    let what = match &h.action {
        HookAction::Systemd { units, mode, .. } => format!(
            "systemd, {} {}",
            match mode {
                ReloadMode::Reload => "reload",
                ReloadMode::TryReloadOrRestart => "try-reload-or-restart",
            },
            units.join(", ")
        ),
        HookAction::Signal {
            signal_name,
            target,
            ..
        } => match target {
            SignalTarget::PidFile(p) => {
                format!("signal, SIG{signal_name} to the process in {}", p.display())
            }
            SignalTarget::Unit { unit, .. } => {
                format!("signal, SIG{signal_name} to the main process of {unit}")
            }
        },
        HookAction::Exec { command, .. } => format!("exec, {}", command.join(" ")),
        HookAction::Http { url, secret } => format!(
            "http, POST {url}{}",
            if secret.is_some() { ", signed" } else { "" }
        ),
    };
    format!(
        "{} ({what}, debounce {}, timeout {})",
        h.name,
        keyrot_core::policy::format_duration(h.debounce),
        keyrot_core::policy::format_duration(h.timeout)
    )
}

/// `name -> provider p, policy q, sinks a, b`.
fn key_line(k: &KeySpec) -> String {
    let what = match &k.matches {
        KeyMatch::Named { name, id: Some(id) } => format!("{name} (id {id})"),
        KeyMatch::Named { name, id: None } => name.clone(),
        KeyMatch::Select { name, scope, tag } => {
            let mut parts = Vec::new();
            if let Some(n) = name {
                parts.push(format!("name={n}"));
            }
            if let Some(s) = scope {
                parts.push(format!("scope={s}"));
            }
            if let Some((tk, tv)) = tag {
                parts.push(format!("tag={tk}={tv}"));
            }
            format!("select {}", parts.join(" "))
        }
    };
    let group = k
        .group
        .as_ref()
        .map(|g| format!(", group {g}"))
        .unwrap_or_default();
    let hooks = if k.hooks.is_empty() {
        String::new()
    } else {
        format!(", hooks {}", k.hooks.join(", "))
    };
    format!(
        "{what} -> provider {}, policy {}, sinks {}{hooks}{group}",
        k.provider,
        k.policy,
        k.sinks.join(", ")
    )
}
