//! `[notify]`: the sender address, the transport and its settings (`file`,
//! `smtp`, `sendmail`), the template directory, the daily digest and
//! `dry_run`. Raw fields as written, the validated section (`NotifyConfig`)
//! and transport settings, the secret reference the SMTP password is (for
//! `keyrot check`) and the transport's summary line. Delivery itself is in
//! `crates/engine/src/notify/`.

use std::ops::Range;
use std::path::PathBuf;

use jiff::SignedDuration;
use serde::Deserialize;
use toml::Spanned;

use super::ctx::set;
use super::ctx::{Ctx, did_you_mean};
use super::raw::DurationText;
use super::raw::RawPassword;
use super::secret::SecretUse;
use super::secret::secret_ref;
use super::secret_ref::SecretRef;
use super::webhook::WebhookConfig;
use keyrot_core::policy::{Schedule, format_duration};

/// Default `timeout` of the `smtp` and `sendmail` transports.
pub const DEFAULT_MAIL_TIMEOUT: SignedDuration = SignedDuration::from_secs(30);
/// Default `command` of the `sendmail` transport.
pub const DEFAULT_SENDMAIL: &str = "/usr/sbin/sendmail";
/// Transport names, as written.
const TRANSPORTS: [&str; 4] = ["none", "file", "smtp", "sendmail"];
/// `security` values, as written.
const SECURITIES: [&str; 3] = ["starttls", "tls", "none"];

/// `[notify]`.
#[derive(Clone, Debug, PartialEq)]
pub struct NotifyConfig {
    /// From address (default `keyrot@localhost`).
    pub from: String,
    /// Transport.
    pub transport: NotifyTransport,
    /// Log instead of sending.
    pub dry_run: bool,
    /// Directory whose templates override the built-in ones, if set.
    pub template_dir: Option<PathBuf>,
    /// Daily digest schedule (6- or 7-field cron, UTC), if set.
    pub digest_schedule: Option<Schedule>,
    /// `[[notify.webhook]]`, in file order.
    pub webhooks: Vec<WebhookConfig>,
}

/// Email transports.
#[derive(Clone, Debug, PartialEq)]
pub enum NotifyTransport {
    /// No email at all (default).
    None,
    /// `transport = "file"`: `.eml` files in `dir`.
    File {
        /// Directory for `.eml` files.
        dir: PathBuf,
    },
    /// `transport = "smtp"`: an SMTP server (submission, SMTPS or a local relay).
    Smtp(SmtpConfig),
    /// `transport = "sendmail"`: the local MTA's `sendmail` program.
    Sendmail(SendmailConfig),
}

/// `[notify]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    /// From address.
    pub from: Option<Spanned<String>>,
    /// `none`, `file`, `smtp` or `sendmail`.
    pub transport: Option<Spanned<String>>,
    /// Directory for `transport = "file"`.
    pub dir: Option<Spanned<String>>,
    /// Log instead of sending.
    pub dry_run: Option<bool>,
    /// Directory of templates overriding the built-in ones.
    pub template_dir: Option<Spanned<String>>,
    /// Daily digest of keys expiring within 30 days: a 6-field cron (UTC).
    pub digest_schedule: Option<Spanned<String>>,
    /// SMTP server host name or IP address.
    pub host: Option<Spanned<String>>,
    /// SMTP server port.
    pub port: Option<Spanned<i64>>,
    /// `starttls` (default), `tls` or `none`.
    pub security: Option<Spanned<String>>,
    /// SMTP AUTH user name.
    pub username: Option<Spanned<String>>,
    /// SMTP AUTH password.
    pub password: Option<Spanned<RawPassword>>,
    /// Connection and command timeout (`smtp`), run timeout (`sendmail`).
    pub timeout: Option<Spanned<DurationText>>,
    /// PEM file of CA certificates trusted for the SMTP server.
    pub ca_file: Option<Spanned<String>>,
    /// The sendmail program (absolute path).
    pub command: Option<Spanned<String>>,
    /// `[[notify.webhook]]`: where events are POSTed as JSON.
    #[serde(default)]
    pub webhook: Vec<super::webhook::RawWebhook>,
}

/// `transport = "smtp"` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpConfig {
    /// Server host name or IP address (what the certificate must name).
    pub host: String,
    /// Server port (default by `security`: 587, 465 or 25).
    pub port: u16,
    /// How the connection is protected.
    pub security: SmtpSecurity,
    /// AUTH credentials, when the server wants them.
    pub auth: Option<SmtpAuth>,
    /// Connection and command timeout (default 30s).
    pub timeout: SignedDuration,
    /// PEM file of CA certificates trusted besides the system's.
    pub ca_file: Option<PathBuf>,
}

/// How an SMTP connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    StartTls,
    /// TLS from the first byte, "SMTPS" (port 465).
    Tls,
    /// No encryption: only to a loopback host (port 25).
    None,
}

impl SmtpSecurity {
    /// The value as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpSecurity::StartTls => "starttls",
            SmtpSecurity::Tls => "tls",
            SmtpSecurity::None => "none",
        }
    }

    /// The port used when `port` is not set.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        }
    }
}

/// SMTP AUTH credentials: a user name and a reference to the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpAuth {
    /// User name.
    pub username: String,
    /// Where the password is read from when the transport is built.
    pub password: SecretRef,
}

/// `transport = "sendmail"` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendmailConfig {
    /// The program, an absolute path (default `/usr/sbin/sendmail`).
    pub command: PathBuf,
    /// How long one run may take before it is killed (default 30s).
    pub timeout: SignedDuration,
}

/// `notify.from`: a bare address (`keyrot@example.com`) or one with a
/// display name (`keyrot on vm1 <keyrot@example.com>`, the name quoted or
/// not). The form with a name is checked the way the transport will read
/// it, so a value accepted here is never refused when mail is sent.
fn from_address(ctx: &mut Ctx<'_>, f: &Spanned<String>) -> Option<String> {
    let v = f.get_ref().trim();
    if !v.contains('<') {
        return ctx.email(f, "from");
    }
    match v.parse::<lettre::message::Mailbox>() {
        Ok(_) => Some(v.to_string()),
        Err(e) => {
            ctx.error(
                f.span(),
                format!(
                    "`from`: {v:?} is not an address with a display name ({e}); \
                     expected \"Name <name@domain>\" or name@domain"
                ),
            );
            None
        }
    }
}

/// `[notify]`.
pub(crate) fn notify(ctx: &mut Ctx<'_>, raw: RawNotify) -> Option<NotifyConfig> {
    let mut out = NotifyConfig::default();
    let mut ok = true;
    if let Some(f) = &raw.from {
        ok &= set(&mut out.from, from_address(ctx, f));
    }
    out.dry_run = raw.dry_run.unwrap_or(false);
    if let Some(d) = &raw.template_dir {
        match ctx.path(d, "template_dir") {
            Some(p) => out.template_dir = Some(p),
            None => ok = false,
        }
    }
    if let Some(c) = &raw.digest_schedule {
        match super::ctx::schedule(ctx, c, "digest_schedule") {
            Some(v) => out.digest_schedule = Some(v),
            None => ok = false,
        }
    }
    match super::webhook::webhooks(ctx, &raw.webhook) {
        Some(w) => out.webhooks = w,
        None => ok = false,
    }
    let transport = raw.transport.as_ref();
    let name = transport.map_or("none", |t| t.get_ref().as_str());
    let at = transport.map_or(0..0, Spanned::span);
    if !TRANSPORTS.contains(&name) {
        let hint = did_you_mean(name, TRANSPORTS);
        let msg = format!(
            "unknown transport {name:?}{hint}: use \"none\", \"file\", \"smtp\" or \"sendmail\""
        );
        ctx.error(at, msg);
        return None;
    }
    ok &= fields_fit(ctx, &raw, name);
    let built = match name {
        "file" => match &raw.dir {
            Some(d) => ctx.path(d, "dir").map(|dir| NotifyTransport::File { dir }),
            None => {
                ctx.error(at, "transport = \"file\" needs `dir` (where .eml files go)");
                None
            }
        },
        "smtp" => smtp(ctx, &raw, at).map(NotifyTransport::Smtp),
        "sendmail" => sendmail(ctx, &raw).map(NotifyTransport::Sendmail),
        _ => Some(NotifyTransport::None),
    };
    match built {
        Some(t) => out.transport = t,
        None => ok = false,
    }
    ok.then_some(out)
}

/// Reports every field set for a transport that does not use it.
fn fields_fit(ctx: &mut Ctx<'_>, raw: &RawNotify, transport: &str) -> bool {
    let span = |s: Option<&Spanned<String>>| s.map(Spanned::span);
    let mut ok = true;
    ok &= only_for(ctx, transport, "dir", span(raw.dir.as_ref()), "file");
    ok &= only_for(ctx, transport, "host", span(raw.host.as_ref()), "smtp");
    ok &= only_for(
        ctx,
        transport,
        "port",
        raw.port.as_ref().map(Spanned::span),
        "smtp",
    );
    ok &= only_for(
        ctx,
        transport,
        "security",
        span(raw.security.as_ref()),
        "smtp",
    );
    ok &= only_for(
        ctx,
        transport,
        "username",
        span(raw.username.as_ref()),
        "smtp",
    );
    let password = raw.password.as_ref().map(Spanned::span);
    ok &= only_for(ctx, transport, "password", password, "smtp");
    ok &= only_for(
        ctx,
        transport,
        "ca_file",
        span(raw.ca_file.as_ref()),
        "smtp",
    );
    ok &= only_for(
        ctx,
        transport,
        "command",
        span(raw.command.as_ref()),
        "sendmail",
    );
    if let Some(t) = &raw.timeout
        && !["smtp", "sendmail"].contains(&transport)
    {
        ctx.error(
            t.span(),
            "`timeout` is only used with transport = \"smtp\" or \"sendmail\"",
        );
        ok = false;
    }
    ok
}

/// Reports `field` (set at `at`) unless the transport is `used_by`.
fn only_for(
    ctx: &mut Ctx<'_>,
    transport: &str,
    field: &str,
    at: Option<Range<usize>>,
    used_by: &str,
) -> bool {
    match at {
        Some(at) if transport != used_by => {
            ctx.error(
                at,
                format!("`{field}` is only used with transport = {used_by:?}"),
            );
            false
        }
        _ => true,
    }
}

/// `transport = "smtp"`; `at` is the `transport` value, where a missing
/// `host` is reported.
fn smtp(ctx: &mut Ctx<'_>, raw: &RawNotify, at: Range<usize>) -> Option<SmtpConfig> {
    let host = match &raw.host {
        Some(h) => smtp_host(ctx, h),
        None => {
            ctx.error(at, "transport = \"smtp\" needs `host` (the SMTP server)");
            None
        }
    };
    let security = match &raw.security {
        None => Some(SmtpSecurity::StartTls),
        Some(s) => match s.get_ref().as_str() {
            "starttls" => Some(SmtpSecurity::StartTls),
            "tls" => Some(SmtpSecurity::Tls),
            "none" => Some(SmtpSecurity::None),
            other => {
                let hint = did_you_mean(other, SECURITIES);
                ctx.error(
                    s.span(),
                    format!(
                        "unknown security {other:?}{hint}: use \"starttls\" (port 587), \"tls\" (port 465) or \"none\" (loopback only)"
                    ),
                );
                None
            }
        },
    };
    if let (Some(h), Some(SmtpSecurity::None), Some(s)) = (&host, security, &raw.security)
        && !is_loopback(h)
    {
        ctx.error(
            s.span(),
            format!(
                "security = \"none\" would send mail (and any password) to {h:?} unencrypted: \
                 it is allowed only to a loopback host (localhost, 127.0.0.1, ::1); use \"starttls\" or \"tls\""
            ),
        );
        return None;
    }
    let port = match &raw.port {
        None => security.map(SmtpSecurity::default_port),
        Some(p) => match u16::try_from(*p.get_ref()) {
            Ok(v) if v > 0 => Some(v),
            _ => {
                ctx.error(p.span(), "`port` must be within 1-65535");
                None
            }
        },
    };
    let auth = match (&raw.username, &raw.password) {
        (None, None) => Some(None),
        (Some(u), Some(p)) => {
            let username = ctx.text(u, "username");
            let password = match &p.get_ref().0 {
                Ok(r) => secret_ref(ctx, &Spanned::new(p.span(), r.clone())),
                Err(msg) => {
                    ctx.error(p.span(), msg.clone());
                    None
                }
            };
            Some(Some(SmtpAuth {
                username: username?,
                password: password?,
            }))
        }
        (Some(u), None) => {
            ctx.error(
                u.span(),
                "`username` needs `password` (a secret reference such as { credential = \"smtp-password\" })",
            );
            None
        }
        (None, Some(p)) => {
            ctx.error(p.span(), "`password` needs `username`");
            None
        }
    };
    let ca_file = match &raw.ca_file {
        None => Some(None),
        Some(f) if security == Some(SmtpSecurity::None) => {
            ctx.error(
                f.span(),
                "`ca_file` is only used with security = \"starttls\" or \"tls\"",
            );
            None
        }
        Some(f) => ctx.path(f, "ca_file").map(Some),
    };
    let timeout = timeout(ctx, raw);
    Some(SmtpConfig {
        host: host?,
        port: port?,
        security: security?,
        auth: auth?,
        timeout: timeout?,
        ca_file: ca_file?,
    })
}

/// A host name or IP address, without scheme, port or brackets.
fn smtp_host(ctx: &mut Ctx<'_>, raw: &Spanned<String>) -> Option<String> {
    let text = ctx.text(raw, "host")?;
    let v = text.trim();
    let bare = v.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
    if let Some(ip) = bare
        .or(Some(v))
        .and_then(|h| h.parse::<std::net::IpAddr>().ok())
    {
        return Some(ip.to_string());
    }
    let name_ok = v.split('.').all(|l| {
        !l.is_empty()
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    });
    if !name_ok {
        ctx.error(
            raw.span(),
            format!(
                "`host` {v:?} is not a host name or IP address (no scheme; the port goes in `port`)"
            ),
        );
        return None;
    }
    Some(v.to_ascii_lowercase())
}

/// `localhost` or a loopback address.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

/// `transport = "sendmail"`.
fn sendmail(ctx: &mut Ctx<'_>, raw: &RawNotify) -> Option<SendmailConfig> {
    let command = match &raw.command {
        None => Some(PathBuf::from(DEFAULT_SENDMAIL)),
        Some(c) => {
            let text = ctx.text(c, "command")?;
            if !text.starts_with('/') || text.chars().any(char::is_whitespace) {
                ctx.error(
                    c.span(),
                    format!(
                        "`command` {text:?} must be the absolute path of the sendmail program, without arguments"
                    ),
                );
                None
            } else {
                Some(PathBuf::from(text))
            }
        }
    };
    let timeout = timeout(ctx, raw);
    Some(SendmailConfig {
        command: command?,
        timeout: timeout?,
    })
}

/// `timeout`, default [`DEFAULT_MAIL_TIMEOUT`].
fn timeout(ctx: &mut Ctx<'_>, raw: &RawNotify) -> Option<SignedDuration> {
    match &raw.timeout {
        None => Some(DEFAULT_MAIL_TIMEOUT),
        Some(t) => ctx.positive(t, "timeout"),
    }
}

/// The secret references of `[notify]` (the SMTP password, the webhooks'
/// URLs and signing keys).
pub(crate) fn secret_uses(cfg: &NotifyConfig) -> Vec<SecretUse<'_>> {
    let mut out = super::webhook::secret_uses(&cfg.webhooks);
    out.extend(smtp_secret_uses(cfg));
    out
}

/// The SMTP password's reference, if any.
fn smtp_secret_uses(cfg: &NotifyConfig) -> Vec<SecretUse<'_>> {
    match &cfg.transport {
        NotifyTransport::Smtp(SmtpConfig {
            auth: Some(auth), ..
        }) => vec![SecretUse {
            owner: "[notify]".to_string(),
            field: "password",
            secret: &auth.password,
        }],
        _ => Vec::new(),
    }
}

/// The transport in the `keyrot check` summary.
pub(crate) fn transport_summary(t: &NotifyTransport) -> String {
    match t {
        NotifyTransport::None => "none (no email)".to_string(),
        NotifyTransport::File { dir } => format!("file, .eml files in {}", dir.display()),
        NotifyTransport::Smtp(s) => {
            let auth = s
                .auth
                .as_ref()
                .map(|a| format!(", AUTH as {}", a.username))
                .unwrap_or_default();
            let ca = s
                .ca_file
                .as_ref()
                .map(|c| format!(", CA {}", c.display()))
                .unwrap_or_default();
            format!(
                "smtp {}:{} ({}{auth}{ca}, timeout {})",
                s.host,
                s.port,
                s.security.as_str(),
                format_duration(s.timeout)
            )
        }
        NotifyTransport::Sendmail(s) => format!(
            "sendmail {} (timeout {})",
            s.command.display(),
            format_duration(s.timeout)
        ),
    }
}

#[cfg(test)]
mod tests;
