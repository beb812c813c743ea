//! Turns the merged raw document into a `Config`: every section is checked
//! and every problem recorded, so one `keyrot check` run lists them all.
//! `[daemon]`, `[store]` and `[notify]` live here; providers and sinks in
//! `typed.rs`, policies in `policies.rs`, keys and references in `keys.rs`.

use std::path::PathBuf;

use jiff::SignedDuration;
use toml::Spanned;
use toml::de::DeValue;

use super::ctx::{Ctx, schedule, set};
use super::keys::{Known, keys};
use super::merge::Document;
use super::raw::{DurationText, RawDaemon, RawRetry, RawStore};
use super::typed::{provider, sink};
use super::types::{Config, DaemonConfig, PostgresConfig, RetryConfig, StoreConfig};
use keyrot_core::policy::Policy;

/// Checks the whole document; None when any problem was recorded.
pub(crate) fn build(doc: Document<'_>, files: Vec<PathBuf>, ctx: &mut Ctx<'_>) -> Option<Config> {
    let raw_daemon = section(ctx, doc.daemon);
    let daemon = daemon(ctx, raw_daemon);
    let raw_store = section(ctx, doc.store);
    let store = store(ctx, raw_store);
    let raw_notify = section(ctx, doc.notify);
    let notify = super::notify::notify(ctx, raw_notify);

    let mut known = Known::default();
    let mut providers = Vec::new();
    for entry in doc.providers {
        let (name, cfg) = provider(ctx, entry);
        if let Some(name) = name {
            known.add_provider(ctx, name, cfg.as_ref().map(|c| c.kind.clone()));
        }
        providers.extend(cfg);
    }
    let (hooks, hook_names) = super::hooks::hooks(ctx, doc.hooks);
    known.hooks = hook_names;
    let mut sinks = Vec::new();
    for entry in doc.sinks {
        let (name, cfg) = sink(ctx, entry, &known);
        if let Some(name) = name {
            known.add_sink(ctx, name, cfg.as_ref().map(|c| c.kind.clone()));
        }
        sinks.extend(cfg);
    }
    let mut policies: Vec<Policy> = Vec::new();
    for entry in doc.policies {
        let lifetime_at = super::policies::field_span(&entry, "new_key_lifetime");
        let revoke_when_at = super::policies::field_span(&entry, "revoke_when");
        let quiet_period_at = super::policies::field_span(&entry, "quiet_period");
        let (name, cfg) = super::policies::policy(ctx, entry);
        if let Some(name) = name {
            let lifetime = cfg
                .as_ref()
                .map(|p| p.new_key_lifetime.zip(lifetime_at.clone()));
            let quiet = cfg.as_ref().and_then(|p| match p.revoke_when {
                keyrot_core::policy::RevokeWhen::Unused(rule) => Some(super::quiet::QuietAt {
                    rule,
                    revoke_when: revoke_when_at.clone().unwrap_or_default(),
                    quiet_period: quiet_period_at.clone().unwrap_or_default(),
                }),
                keyrot_core::policy::RevokeWhen::Overlap => None,
            });
            if let Some(q) = quiet {
                known.add_quiet(name.get_ref(), q);
            }
            known.add_policy(ctx, name, lifetime);
        }
        policies.extend(cfg);
    }
    let keys = keys(ctx, doc.keys, &known);
    let psks = super::access::psks(ctx, doc.psks);
    let api_tokens = super::access::api_tokens(ctx, doc.api_tokens, &providers, &psks);

    if ctx.has_errors() {
        return None;
    }
    Some(Config {
        files,
        daemon: daemon?,
        store: store?,
        providers,
        sinks,
        policies,
        keys,
        notify: notify?,
        psks,
        hooks,
        api_tokens,
        secret_sites: std::mem::take(&mut ctx.secret_sites),
    })
}

/// Deserializes an optional `[section]`; absent (or broken) gives defaults.
fn section<T: Default + for<'i> serde::Deserialize<'i>>(
    ctx: &mut Ctx<'_>,
    value: Option<Spanned<DeValue<'_>>>,
) -> T {
    value.and_then(|v| ctx.deser(v)).unwrap_or_default()
}

/// A retention: a duration of at least a day, or `"forever"` (`None`).
fn retention(
    ctx: &mut Ctx<'_>,
    r: &Spanned<DurationText>,
    field: &str,
) -> Option<Option<SignedDuration>> {
    if r.get_ref().0.trim() == "forever" {
        return Some(None);
    }
    match ctx.duration(r) {
        Some(d) if d < super::defaults::MIN_HISTORY_RETENTION => {
            ctx.error(
                r.span(),
                format!(
                    "`{field}` must be at least 1d (or \"forever\"), not {:?}",
                    r.get_ref().0
                ),
            );
            None
        }
        Some(d) => Some(Some(d)),
        None => None,
    }
}

/// `[daemon]`.
fn daemon(ctx: &mut Ctx<'_>, raw: RawDaemon) -> Option<DaemonConfig> {
    let mut out = DaemonConfig::default();
    let mut ok = true;
    if let Some(s) = &raw.control_socket {
        ok &= set(&mut out.control_socket, ctx.path(s, "control_socket"));
    }
    if let Some(m) = &raw.control_socket_mode {
        let mode = ctx.mode(m);
        if let Some(v) = mode
            && (v & 0o002 != 0 || v & 0o600 != 0o600)
        {
            ctx.error(
                m.span(),
                "control_socket_mode must let the owner read and write and must not let \
                 others write (anyone who can write to the socket controls keyrot), e.g. \"0660\"",
            );
            ok = false;
        }
        ok &= set(&mut out.control_socket_mode, mode);
    }
    if let Some(d) = &raw.shutdown_timeout {
        ok &= set(
            &mut out.shutdown_timeout,
            ctx.positive(d, "shutdown_timeout"),
        );
    }
    if let Some(s) = &raw.sync_schedule {
        ok &= set(&mut out.sync_schedule, schedule(ctx, s, "sync_schedule"));
    }
    if let Some(a) = &raw.metrics_listen {
        ok &= set(&mut out.metrics_listen, metrics_listen(ctx, a).map(Some));
    }
    if let Some(p) = &raw.proxy {
        ok &= set(&mut out.proxy, proxy(ctx, p).map(Some));
    }
    if let Some(r) = &raw.retry {
        ok &= set(&mut out.retry, retry(ctx, r));
    }
    ok &= control_access(ctx, &raw, &mut out);
    ok.then_some(out)
}

/// The control API's peer allow-lists, connection cap and timeouts.
fn control_access(ctx: &mut Ctx<'_>, raw: &RawDaemon, out: &mut DaemonConfig) -> bool {
    let mut ok = true;
    if let Some(list) = &raw.control_allow_uids {
        ok &= set(
            &mut out.control_allow_uids,
            ids(ctx, list, "control_allow_uids").map(Some),
        );
    }
    if let Some(list) = &raw.control_allow_gids {
        ok &= set(
            &mut out.control_allow_gids,
            ids(ctx, list, "control_allow_gids").map(Some),
        );
    }
    if let Some(n) = &raw.control_max_connections {
        let v = match usize::try_from(*n.get_ref()) {
            Ok(v) if (1..=65_536).contains(&v) => Some(v),
            _ => {
                ctx.error(
                    n.span(),
                    "`control_max_connections` must be between 1 and 65536",
                );
                None
            }
        };
        ok &= set(&mut out.control_max_connections, v);
    }
    let timeouts = [
        (
            &raw.control_header_timeout,
            "control_header_timeout",
            &mut out.control_header_timeout,
        ),
        (
            &raw.control_body_timeout,
            "control_body_timeout",
            &mut out.control_body_timeout,
        ),
        (
            &raw.control_idle_timeout,
            "control_idle_timeout",
            &mut out.control_idle_timeout,
        ),
    ];
    for (raw, field, slot) in timeouts {
        if let Some(d) = raw {
            ok &= set(slot, ctx.positive(d, field));
        }
    }
    ok
}

/// A list of numeric user or group ids.
fn ids(ctx: &mut Ctx<'_>, list: &[Spanned<i64>], field: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    let mut ok = true;
    for n in list {
        // u32::MAX is (uid_t)-1, "no id", never a real user or group.
        match u32::try_from(*n.get_ref()) {
            Ok(v) if v != u32::MAX => out.push(v),
            _ => {
                ctx.error(
                    n.span(),
                    format!(
                        "`{field}` entries are numeric ids from 0 to 4294967294 (`id -u NAME`, `getent group NAME`), not {}",
                        n.get_ref()
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// `metrics_listen`: an IP address and port. A host name is refused so that
/// what keyrot binds never depends on a resolver; port 0 picks a free port.
fn metrics_listen(ctx: &mut Ctx<'_>, raw: &Spanned<String>) -> Option<std::net::SocketAddr> {
    let text = ctx.text(raw, "metrics_listen")?;
    match text.trim().parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            ctx.error(
                raw.span(),
                format!(
                    "`metrics_listen` {text:?} is not an IP address and port, e.g. \"127.0.0.1:9464\" or \"[::1]:9464\""
                ),
            );
            None
        }
    }
}

/// `proxy`: an `https://` URL, or `http://` to a loopback host, without
/// credentials (a proxy password would be a secret inline in the config).
/// A plain-http proxy elsewhere would see every token keyrot sends.
fn proxy(ctx: &mut Ctx<'_>, raw: &Spanned<String>) -> Option<reqwest::Url> {
    let text = ctx.http_url(raw, "proxy", "every request, tokens included,")?;
    match reqwest::Url::parse(&text) {
        Ok(url) => Some(url),
        Err(e) => {
            ctx.error(raw.span(), format!("`proxy` {text:?} is not a URL: {e}"));
            None
        }
    }
}

/// `[daemon.retry]`.
fn retry(ctx: &mut Ctx<'_>, raw: &RawRetry) -> Option<RetryConfig> {
    let mut out = RetryConfig::default();
    let mut ok = true;
    if let Some(a) = &raw.attempts {
        match u32::try_from(*a.get_ref()) {
            Ok(n) if n >= 1 => out.attempts = n,
            _ => {
                ctx.error(a.span(), "retry `attempts` must be at least 1");
                ok = false;
            }
        }
    }
    if let Some(d) = &raw.initial {
        ok &= set(&mut out.initial, ctx.positive(d, "initial"));
    }
    if let Some(d) = &raw.max {
        ok &= set(&mut out.max, ctx.positive(d, "max"));
    }
    if ok && out.initial > out.max {
        let span = raw
            .max
            .as_ref()
            .or(raw.initial.as_ref())
            .map_or(0..0, Spanned::span);
        ctx.error(span, "retry `initial` must not be larger than `max`");
        ok = false;
    }
    ok.then_some(out)
}

/// `[store]`.
fn store(ctx: &mut Ctx<'_>, raw: RawStore) -> Option<StoreConfig> {
    let mut out = StoreConfig::default();
    let mut ok = true;
    if let Some(p) = &raw.path {
        ok &= set(&mut out.path, ctx.path(p, "path"));
    }
    if let Some(p) = &raw.master_key_file {
        ok &= set(&mut out.master_key_file, ctx.path(p, "master_key_file"));
    }
    if let Some(c) = raw.create_master_key {
        out.create_master_key = c;
    }
    if let Some(r) = &raw.history_retention {
        ok &= set(
            &mut out.history_retention,
            retention(ctx, r, "history_retention"),
        );
    }
    out.audit_retention = out.history_retention;
    if let Some(r) = &raw.audit_retention {
        ok &= set(
            &mut out.audit_retention,
            retention(ctx, r, "audit_retention"),
        );
    }
    ok &= postgres(ctx, &raw, &mut out);
    if ok && out.path == out.master_key_file {
        let span = raw
            .master_key_file
            .as_ref()
            .or(raw.path.as_ref())
            .map_or(0..0, Spanned::span);
        ctx.error(
            span,
            "`master_key_file` must not be the database file (`path`)",
        );
        ok = false;
    }
    ok.then_some(out)
}

/// `backend`, `url`, `ca_file` and `pool_size` of `[store]`.
fn postgres(ctx: &mut Ctx<'_>, raw: &RawStore, out: &mut StoreConfig) -> bool {
    let backend = raw
        .backend
        .as_ref()
        .map(|b| (b.get_ref().as_str(), b.span()));
    let pg_only = [
        ("url", raw.url.as_ref().map(Spanned::span)),
        ("ca_file", raw.ca_file.as_ref().map(Spanned::span)),
        ("pool_size", raw.pool_size.as_ref().map(Spanned::span)),
        ("lease", raw.lease.as_ref().map(Spanned::span)),
    ];
    match backend {
        None | Some(("redb", _)) => {
            let mut ok = true;
            for (field, span) in pg_only {
                if let Some(span) = span {
                    ctx.error(
                        span,
                        format!("`{field}` is a setting of `backend = \"postgres\"`"),
                    );
                    ok = false;
                }
            }
            ok
        }
        Some(("postgres", span)) => {
            let Some(raw_url) = &raw.url else {
                ctx.error(
                    span.clone(),
                    "`backend = \"postgres\"` needs `url`, a secret reference such as \
                     `url = { credential = \"postgres-url\" }` (never the URL inline: it may hold a password)",
                );
                return false;
            };
            let url = crate::secret::secret_ref(ctx, raw_url);
            let ca_file = match &raw.ca_file {
                Some(p) => ctx.path(p, "ca_file").map(Some),
                None => Some(None),
            };
            let pool_size = match &raw.pool_size {
                Some(n) if (1..=64).contains(n.get_ref()) => usize::try_from(*n.get_ref()).ok(),
                Some(n) => {
                    ctx.error(n.span(), "`pool_size` must be between 1 and 64");
                    None
                }
                None => Some(4),
            };
            let lease = match &raw.lease {
                Some(d) => match ctx.duration(d) {
                    Some(v)
                        if v >= SignedDuration::from_secs(3)
                            && v <= SignedDuration::from_mins(5) =>
                    {
                        Some(v)
                    }
                    Some(_) => {
                        ctx.error(d.span(), "`lease` must be between 3s and 5m");
                        None
                    }
                    None => None,
                },
                None => Some(SignedDuration::from_secs(15)),
            };
            match (url, ca_file, pool_size, lease) {
                (Some(url), Some(ca_file), Some(pool_size), Some(lease)) => {
                    out.postgres = Some(PostgresConfig {
                        url,
                        ca_file,
                        pool_size,
                        lease,
                    });
                    true
                }
                _ => false,
            }
        }
        Some((other, span)) => {
            ctx.error(
                span,
                format!("unknown store backend {other:?}: expected \"redb\" or \"postgres\""),
            );
            false
        }
    }
}

#[cfg(test)]
mod retention_tests {
    use std::path::Path;

    use jiff::SignedDuration;

    use crate::load_str;

    fn retention(text: &str) -> Result<Option<SignedDuration>, String> {
        load_str(Path::new("/etc/keyrot/keyrot.toml"), text)
            .map(|c| c.store.history_retention)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn history_retention_defaults_parses_and_can_be_forever() {
        assert_eq!(
            retention(""),
            Ok(Some(SignedDuration::from_hours(400 * 24)))
        );
        assert_eq!(
            retention("[store]\nhistory_retention = \"90d\"\n"),
            Ok(Some(SignedDuration::from_hours(90 * 24)))
        );
        assert_eq!(
            retention("[store]\nhistory_retention = \"forever\"\n"),
            Ok(None)
        );
    }

    #[test]
    fn history_retention_below_a_day_or_malformed_is_refused() {
        let err = retention("[store]\nhistory_retention = \"12h\"\n").unwrap_err();
        assert!(
            err.contains("2:21: `history_retention` must be at least 1d"),
            "{err}"
        );
        let err = retention("[store]\nhistory_retention = \"P400D\"\n").unwrap_err();
        assert!(err.contains("2:21:"), "{err}");
    }

    #[test]
    fn audit_retention_follows_history_retention_unless_set() {
        let audit = |text: &str| {
            load_str(Path::new("/etc/keyrot/keyrot.toml"), text)
                .map(|c| c.store.audit_retention)
                .map_err(|e| e.to_string())
        };
        assert_eq!(audit(""), Ok(Some(SignedDuration::from_hours(400 * 24))));
        assert_eq!(
            audit("[store]\nhistory_retention = \"90d\"\n"),
            Ok(Some(SignedDuration::from_hours(90 * 24)))
        );
        assert_eq!(
            audit("[store]\nhistory_retention = \"90d\"\naudit_retention = \"forever\"\n"),
            Ok(None)
        );
        assert_eq!(
            audit("[store]\naudit_retention = \"2600d\"\n"),
            Ok(Some(SignedDuration::from_hours(2600 * 24)))
        );
        let err = audit("[store]\naudit_retention = \"1h\"\n").unwrap_err();
        assert!(
            err.contains("2:19: `audit_retention` must be at least 1d"),
            "{err}"
        );
    }

    #[test]
    fn retentions_apply_to_the_postgres_backend_too() {
        let load = |extra: &str| {
            let text = format!(
                "[store]\nbackend = \"postgres\"\nurl = {{ credential = \"postgres-url\" }}\n{extra}"
            );
            load_str(Path::new("/etc/keyrot/keyrot.toml"), &text)
                .map(|c| {
                    assert!(c.store.postgres.is_some());
                    (c.store.history_retention, c.store.audit_retention)
                })
                .map_err(|e| e.to_string())
        };
        let days = |d: i64| Some(SignedDuration::from_hours(d * 24));
        assert_eq!(load(""), Ok((days(400), days(400))));
        assert_eq!(
            load("history_retention = \"90d\"\naudit_retention = \"2600d\"\n"),
            Ok((days(90), days(2600)))
        );
        assert_eq!(load("history_retention = \"forever\"\n"), Ok((None, None)));
    }
}

#[cfg(test)]
mod proxy_tests {
    use std::path::Path;

    use crate::load_str;

    fn proxy(value: &str) -> Result<Option<String>, String> {
        let text = format!("[daemon]\nproxy = \"{value}\"\n");
        load_str(Path::new("/etc/keyrot/keyrot.toml"), &text)
            .map(|c| c.daemon.proxy.map(|u| u.to_string()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_proxy_is_https_or_loopback_http_without_credentials() {
        let none = load_str(Path::new("/etc/keyrot/keyrot.toml"), "").unwrap();
        assert_eq!(none.daemon.proxy, None);
        assert_eq!(
            proxy("https://proxy.corp:3128"),
            Ok(Some("https://proxy.corp:3128/".into()))
        );
        assert_eq!(
            proxy("http://127.0.0.1:3128"),
            Ok(Some("http://127.0.0.1:3128/".into()))
        );
        let err = proxy("http://proxy.corp:3128").unwrap_err();
        assert!(
            err.contains("2:9: `proxy` \"http://proxy.corp:3128\": plain http would send every request, tokens included, unencrypted"),
            "{err}"
        );
        let err = proxy("https://user:pw@proxy.corp").unwrap_err();
        assert!(err.contains("it must not hold credentials"), "{err}");
        let err = proxy("socks5://127.0.0.1:1080").unwrap_err();
        assert!(err.contains("use an https:// URL"), "{err}");
    }
}
