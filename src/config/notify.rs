//! `[notify]`: the sender address, the transport and its settings, the
//! template directory, the daily digest and `dry_run`.

use serde::Deserialize;
use toml::Spanned;

use super::ctx::{Ctx, did_you_mean};
use super::validate::set;
use super::{NotifyConfig, NotifyTransport};

/// `[notify]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    /// From address.
    pub from: Option<Spanned<String>>,
    /// `none` or `file`.
    pub transport: Option<Spanned<String>>,
    /// Directory for `transport = "file"`.
    pub dir: Option<Spanned<String>>,
    /// Log instead of sending.
    pub dry_run: Option<bool>,
    /// Directory of templates overriding the built-in ones.
    pub template_dir: Option<Spanned<String>>,
    /// Daily digest of keys expiring within 30 days: a 6-field cron (UTC).
    pub digest_schedule: Option<Spanned<String>>,
}

/// Transports that exist in the design but are not built yet.
const LATER_TRANSPORTS: [&str; 2] = ["smtp", "sendmail"];

/// `[notify]`.
pub(crate) fn notify(ctx: &mut Ctx<'_>, raw: RawNotify) -> Option<NotifyConfig> {
    let mut out = NotifyConfig::default();
    let mut ok = true;
    if let Some(f) = &raw.from {
        ok &= set(&mut out.from, ctx.email(f, "from"));
    }
    out.dry_run = raw.dry_run.unwrap_or(false);
    if let Some(d) = &raw.template_dir {
        match ctx.path(d, "template_dir") {
            Some(p) => out.template_dir = Some(p),
            None => ok = false,
        }
    }
    if let Some(c) = &raw.digest_schedule {
        match super::validate::check_schedule(ctx, c, "digest_schedule") {
            Some(v) => out.digest_schedule = Some(v),
            None => ok = false,
        }
    }
    let transport = raw.transport.as_ref();
    let name = transport.map_or("none", |t| t.get_ref().as_str());
    let at = |t: Option<&Spanned<String>>| t.map_or(0..0, Spanned::span);
    match name {
        "none" => {
            if let Some(d) = &raw.dir {
                ctx.error(d.span(), "`dir` is only used with transport = \"file\"");
                ok = false;
            }
        }
        "file" => match &raw.dir {
            Some(d) => match ctx.path(d, "dir") {
                Some(dir) => out.transport = NotifyTransport::File { dir },
                None => ok = false,
            },
            None => {
                ctx.error(
                    at(transport),
                    "transport = \"file\" needs `dir` (where .eml files go)",
                );
                ok = false;
            }
        },
        other if LATER_TRANSPORTS.contains(&other) => {
            let msg = format!("transport {other:?} is not supported yet: use \"none\" or \"file\"");
            ctx.error(at(transport), msg);
            ok = false;
        }
        other => {
            let hint = did_you_mean(other, ["none", "file"]);
            let msg = format!("unknown transport {other:?}{hint}: use \"none\" or \"file\"");
            ctx.error(at(transport), msg);
            ok = false;
        }
    }
    ok.then_some(out)
}
