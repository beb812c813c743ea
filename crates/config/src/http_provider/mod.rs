//! `[[provider]] type = "http"`: any HTTP API that mints and revokes keys,
//! described by config (presets in `config/providers/`). Raw fields as
//! written ([`raw`]), validation into the provider's spec (base URL,
//! credentials, static headers, `vars`, tag, and the operations in
//! [`ops`]), the secret references it holds (for `keyrot check`) and its
//! summary line. The validated types and the provider itself are in
//! `provider/http/`.

mod ops;
mod raw;
pub mod spec;
pub mod template;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use jiff::SignedDuration;
use reqwest::header::HeaderName;
use toml::Spanned;

pub use self::spec::HttpProviderConfig;
use self::spec::{Auth, TagPlace, TagSpec};
use self::template::{Scope, Var};
// Through the crate root, not `types`: `ProviderKind` there holds this
// module's settings, and the two would import each other.
use super::ProviderConfig;
use super::ctx::{Ctx, did_you_mean};
use super::secret::SecretUse;
use super::secret::secret_ref;
pub use raw::RawHttpProvider;
use raw::{RawAuth, RawTag};

/// Default `timeout`.
pub const DEFAULT_TIMEOUT: SignedDuration = SignedDuration::from_secs(30);
/// Default `tag.format`.
pub const DEFAULT_TAG_FORMAT: &str = "-keyrot-{{rotation.id}}";
/// `auth` types.
const AUTH_TYPES: [&str; 3] = ["bearer", "basic", "header"];

/// Validates `type = "http"`: every field checked, every problem recorded.
pub(crate) fn validate(ctx: &mut Ctx<'_>, raw: &RawHttpProvider) -> Option<HttpProviderConfig> {
    let base_url = ctx.http_url(&raw.base_url, "base_url", "the provider's credentials");
    let auth = match &raw.auth {
        None => Some(Vec::new()),
        Some(list) => {
            let all: Vec<Option<Auth>> = list.get_ref().0.iter().map(|a| auth(ctx, a)).collect();
            all.into_iter().collect::<Option<Vec<Auth>>>()
        }
    };
    let timeout = match &raw.timeout {
        None => Some(DEFAULT_TIMEOUT),
        Some(t) => ctx.positive(t, "timeout"),
    };
    let ca_file = match &raw.ca_file {
        None => Some(None),
        Some(p) => ctx.path(p, "ca_file").map(Some),
    };
    let vars = vars(ctx, raw.vars.as_ref());
    let headers = match &raw.headers {
        None => Some(Vec::new()),
        Some(h) => static_headers(ctx, h.get_ref()),
    };
    let tag = match &raw.tag {
        None => Some(None),
        Some(t) => tag(ctx, t).map(Some),
    };
    let vars = vars.unwrap_or_default();
    let list = op(ctx, &raw.list, &vars, ops::list);
    let issue = op(ctx, &raw.issue, &vars, ops::issue);
    let rotate = op(ctx, &raw.rotate, &vars, ops::rotate);
    let verify = op(ctx, &raw.verify, &vars, ops::verify);
    let revoke = op(ctx, &raw.revoke, &vars, ops::revoke);
    let cfg = HttpProviderConfig {
        base_url: base_url?,
        auth: auth?,
        headers: headers?,
        timeout: timeout?,
        ca_file: ca_file?,
        tag: tag?,
        list: list?.map(Box::new),
        issue: issue?.map(Box::new),
        rotate: rotate?.map(Box::new),
        verify: verify?.map(Box::new),
        revoke: revoke?.map(Box::new),
    };
    consistent(ctx, raw, &cfg).then_some(cfg)
}

/// An operation's validation function.
type OpFn<T> = fn(&mut Ctx<'_>, &Spanned<raw::RawOp>, &ops::Vars) -> Option<T>;

/// An optional operation table validated by `f`: `Some(None)` when absent.
fn op<T>(
    ctx: &mut Ctx<'_>,
    raw: &Option<Spanned<raw::RawOp>>,
    vars: &ops::Vars,
    f: OpFn<T>,
) -> Option<Option<T>> {
    match raw {
        None => Some(None),
        Some(r) => f(ctx, r, vars).map(Some),
    }
}

/// Checks across operations: something to do, a tag that can be written
/// and found, a native rotate that can be recovered.
fn consistent(ctx: &mut Ctx<'_>, raw: &RawHttpProvider, cfg: &HttpProviderConfig) -> bool {
    let mut ok = true;
    if cfg.list.is_none() && cfg.issue.is_none() && cfg.rotate.is_none() {
        ctx.error(
            raw.base_url.span(),
            "an http provider needs at least one of [provider.list], [provider.issue] or [provider.rotate]",
        );
        ok = false;
    }
    let tagging = |v: &Var| matches!(v, Var::Tag | Var::KeyTaggedName);
    if let (Some(t), Some(span)) = (&cfg.tag, raw.tag.as_ref().map(Spanned::span)) {
        if cfg.list.is_none() || cfg.issue.is_none() {
            ctx.error(
                span.clone(),
                "`tag` needs [provider.issue] (which writes it) and [provider.list] (which finds it)",
            );
            ok = false;
        } else if let (Some(issue), Some(raw_issue)) = (&cfg.issue, &raw.issue)
            && !issue.call.uses_any(&tagging)
        {
            let use_it = match t.place {
                TagPlace::Name => "{{key.tagged_name}} as the new key's name",
                TagPlace::Field(_) => "{{tag}} in the field the tag is read from",
            };
            ctx.error(
                raw_issue.span(),
                format!("[provider.issue] does not write the tag: use {use_it}"),
            );
            ok = false;
        }
    } else {
        for (name, call, span) in [
            (
                "issue",
                cfg.issue.as_ref().map(|o| &o.call),
                raw.issue.as_ref(),
            ),
            (
                "rotate",
                cfg.rotate.as_ref().map(|o| &o.call),
                raw.rotate.as_ref(),
            ),
        ] {
            if let (Some(call), Some(span)) = (call, span)
                && call.uses_any(&tagging)
            {
                ctx.error(
                    span.span(),
                    format!("[provider.{name}] uses {{{{tag}}}} or {{{{key.tagged_name}}}}, but the provider has no `tag` table"),
                );
                ok = false;
            }
        }
    }
    if let (Some(rot), Some(span)) = (&cfg.rotate, &raw.rotate)
        && rot.no_overlap
        && cfg.list.is_none()
    {
        ctx.error(
            span.span(),
            "a native rotate that ends the old key (no_overlap, the default) needs [provider.list]: keyrot lists the keys to recover a rotation whose answer was lost",
        );
        ok = false;
    }
    ok
}

/// One `auth` table.
fn auth(ctx: &mut Ctx<'_>, a: &RawAuth) -> Option<Auth> {
    let kind = a.kind.get_ref().as_str();
    let fields: [(&str, Option<std::ops::Range<usize>>); 6] = [
        ("token", a.token.as_ref().map(Spanned::span)),
        ("user", a.user.as_ref().map(Spanned::span)),
        ("password", a.password.as_ref().map(Spanned::span)),
        ("name", a.name.as_ref().map(Spanned::span)),
        ("value", a.value.as_ref().map(Spanned::span)),
        ("prefix", a.prefix.as_ref().map(Spanned::span)),
    ];
    let (takes, example): (&[&str], &str) = match kind {
        "bearer" => (
            &["token"],
            "{ type = \"bearer\", token = { credential = \"NAME\" } }",
        ),
        "basic" => (
            &["user", "password"],
            "{ type = \"basic\", user = \"NAME\", password = { credential = \"NAME\" } }",
        ),
        "header" => (
            &["name", "value", "prefix"],
            "{ type = \"header\", name = \"PRIVATE-TOKEN\", value = { credential = \"NAME\" } }",
        ),
        other => {
            let hint = did_you_mean(other, AUTH_TYPES);
            ctx.error(
                a.kind.span(),
                format!(
                    "unknown auth type {other:?}{hint}: use \"bearer\", \"basic\" or \"header\""
                ),
            );
            return None;
        }
    };
    let mut ok = true;
    for (field, span) in &fields {
        if let Some(span) = span
            && !takes.contains(field)
        {
            ctx.error(
                span.clone(),
                format!("`{field}` is not used with auth type {kind:?}: write {example}"),
            );
            ok = false;
        }
    }
    let required = if kind == "header" { 2 } else { takes.len() };
    let missing: Vec<&str> = takes[..required]
        .iter()
        .copied()
        .filter(|f| fields.iter().any(|(n, s)| n == f && s.is_none()))
        .collect();
    if !missing.is_empty() {
        ctx.error(
            a.kind.span(),
            format!(
                "auth type {kind:?} needs {}: write {example}",
                missing
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        );
        return None;
    }
    if !ok {
        return None;
    }
    match kind {
        "bearer" => Some(Auth::Bearer {
            token: secret_ref(ctx, a.token.as_ref()?)?,
        }),
        "basic" => {
            let user = a.user.as_ref()?;
            let password = secret_ref(ctx, a.password.as_ref()?);
            if user.get_ref().is_empty() || user.get_ref().contains(':') {
                ctx.error(user.span(), "`user` must be non-empty and hold no `:`");
                return None;
            }
            Some(Auth::Basic {
                user: user.get_ref().clone(),
                password: password?,
            })
        }
        _ => {
            let name = a.name.as_ref()?;
            let value = secret_ref(ctx, a.value.as_ref()?);
            let Ok(hn) = HeaderName::from_bytes(name.get_ref().as_bytes()) else {
                ctx.error(
                    name.span(),
                    format!("{:?} is not a valid header name", name.get_ref()),
                );
                return None;
            };
            let prefix = a
                .prefix
                .as_ref()
                .map(|p| p.get_ref().clone())
                .unwrap_or_default();
            if prefix.chars().any(char::is_control) {
                ctx.error(
                    a.prefix.as_ref().map(Spanned::span).unwrap_or_default(),
                    "`prefix` must not contain control characters",
                );
                return None;
            }
            Some(Auth::Header {
                name: hn,
                prefix,
                value: value?,
            })
        }
    }
}

/// `vars`: names of letters, digits, `_` and `-`.
fn vars(
    ctx: &mut Ctx<'_>,
    raw: Option<&Spanned<BTreeMap<String, Spanned<raw::VarValue>>>>,
) -> Option<ops::Vars> {
    let Some(raw) = raw else {
        return Some(Vec::new());
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (k, v) in raw.get_ref() {
        let good = !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !good {
            ctx.error(
                v.span(),
                format!("var name {k:?} may hold only letters, digits, `_` and `-`"),
            );
            ok = false;
        }
        out.push((k.clone(), v.get_ref().0.clone()));
    }
    ok.then_some(out)
}

/// Static `headers`: valid names and values, no variables.
fn static_headers(
    ctx: &mut Ctx<'_>,
    raw: &BTreeMap<String, Spanned<String>>,
) -> Option<Vec<(HeaderName, String)>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (name, value) in raw {
        let hn = HeaderName::from_bytes(name.as_bytes());
        let valid_value = reqwest::header::HeaderValue::from_str(value.get_ref()).is_ok();
        match hn {
            Ok(_) if value.get_ref().contains("{{") => {
                ctx.error(
                    value.span(),
                    format!("header {name}: static headers take no variables; put it in an operation's `headers`"),
                );
                ok = false;
            }
            Ok(hn) if valid_value => out.push((hn, value.get_ref().clone())),
            Ok(_) => {
                ctx.error(
                    value.span(),
                    format!("header {name}: the value is not valid in an HTTP header"),
                );
                ok = false;
            }
            Err(_) => {
                ctx.error(value.span(), format!("{name:?} is not a valid header name"));
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// `tag = { in, format }`.
fn tag(ctx: &mut Ctx<'_>, raw: &Spanned<RawTag>) -> Option<TagSpec> {
    let t = raw.get_ref();
    let place = match &t.place {
        None => Some(TagPlace::Name),
        Some(p) if p.get_ref() == "name" => Some(TagPlace::Name),
        Some(p) if p.get_ref().starts_with('/') => {
            Some(TagPlace::Field(self::spec::Pointer(p.get_ref().clone())))
        }
        Some(p) => {
            ctx.error(
                p.span(),
                format!(
                    "tag `in` {:?}: write \"name\" (the tag is appended to the key's name) or a JSON pointer into the listed key, such as \"/description\"",
                    p.get_ref()
                ),
            );
            None
        }
    };
    let (format, span) = match &t.format {
        None => (DEFAULT_TAG_FORMAT.to_string(), raw.span()),
        Some(f) => (f.get_ref().clone(), f.span()),
    };
    let parsed = match template::parse(&format, Scope::TagFormat, &[]) {
        Ok(p) => p,
        Err(e) => {
            ctx.error(span, format!("tag `format`: {e}"));
            return None;
        }
    };
    let around = parsed
        .uses(&Var::RotationId)
        .then(|| parsed.around_one_var())
        .flatten()
        .filter(|_| format.matches("{{").count() == 1);
    let Some((prefix, suffix)) = around else {
        ctx.error(
            span,
            "tag `format` must contain {{rotation.id}} exactly once, e.g. \"-keyrot-{{rotation.id}}\"",
        );
        return None;
    };
    if prefix.is_empty() {
        ctx.error(
            span,
            "tag `format` needs some text before {{rotation.id}} (e.g. \"-keyrot-\"), so the tag can be told apart from the name",
        );
        return None;
    }
    Some(TagSpec {
        place: place?,
        prefix,
        suffix,
    })
}

/// The secret references of one provider, for `keyrot check`.
pub(crate) fn secret_uses<'a>(name: &str, cfg: &'a HttpProviderConfig) -> Vec<SecretUse<'a>> {
    cfg.auth
        .iter()
        .map(|a| {
            let (field, secret) = a.secret();
            SecretUse {
                owner: format!("provider {name:?}"),
                field,
                secret,
            }
        })
        .collect()
}

/// The provider's line in the `keyrot check` summary (without indent).
pub(crate) fn summary_line(p: &ProviderConfig, cfg: &HttpProviderConfig) -> String {
    let caps = cfg.capabilities();
    let mut can = Vec::new();
    if caps.list {
        can.push("list".to_string());
    }
    if cfg.issue.is_some() {
        can.push("issue".to_string());
    }
    if let Some(r) = &cfg.rotate {
        can.push(if r.no_overlap {
            "rotate (native: the old key ends at once, no overlap)".to_string()
        } else {
            "rotate (old key kept for the overlap)".to_string()
        });
    }
    if caps.verify {
        can.push("verify".to_string());
    }
    if caps.revoke {
        can.push("revoke".to_string());
    }
    if caps.tag {
        can.push("tag".to_string());
    }
    let auth: Vec<String> = cfg.auth.iter().map(Auth::describe).collect();
    format!(
        "{} (http, {} at once, {}, auth {}, {}, timeout {})",
        p.name,
        p.max_concurrent,
        cfg.base_url,
        if auth.is_empty() {
            "none".to_string()
        } else {
            auth.join(" + ")
        },
        can.join(", "),
        keyrot_core::policy::format_duration(cfg.timeout)
    )
}
