//! `[[policy]]` and its `[[policy.window]]`s: durations, windows (cron,
//! duration, IANA zone, checked by `policy::Window::parse`), contacts, and
//! the checks between fields that would otherwise make a rotation loop.

use std::ops::Range;

use toml::Spanned;
use toml::de::DeValue;

use super::ctx::Ctx;
use super::defaults::DEFAULT_OVERLAP;
use super::raw::{RawPolicy, RawWindow};
use keyrot_core::policy::{Policy, Window, format_duration};

/// One `[[policy]]`: its name (when readable, even if the rest is wrong)
/// and the validated policy.
pub(crate) fn policy(
    ctx: &mut Ctx<'_>,
    entry: Spanned<DeValue<'_>>,
) -> (Option<Spanned<String>>, Option<Policy>) {
    let name = name_of(&entry);
    let Some(raw) = ctx.deser::<RawPolicy>(entry) else {
        return (name, None);
    };
    (name, build(ctx, &raw))
}

/// The `name` string of an entry, read before the entry is deserialized.
pub(crate) fn name_of(entry: &Spanned<DeValue<'_>>) -> Option<Spanned<String>> {
    let v = entry.get_ref().get("name")?;
    Some(Spanned::new(v.span(), v.get_ref().as_str()?.to_string()))
}

/// Where `field` of an entry is written, read before the entry is deserialized.
pub(crate) fn field_span(entry: &Spanned<DeValue<'_>>, field: &str) -> Option<Range<usize>> {
    Some(entry.get_ref().get(field)?.span())
}

/// Checks every field of a raw policy.
fn build(ctx: &mut Ctx<'_>, raw: &RawPolicy) -> Option<Policy> {
    let before = ctx.error_count();
    let name = ctx.text(&raw.name, "name");
    let rotate_before_expiry = raw
        .rotate_before_expiry
        .as_ref()
        .and_then(|d| ctx.positive(d, "rotate_before_expiry"));
    let max_age = raw
        .max_age
        .as_ref()
        .and_then(|d| ctx.positive(d, "max_age"));
    let new_key_lifetime = raw
        .new_key_lifetime
        .as_ref()
        .and_then(|d| ctx.positive(d, "new_key_lifetime"));
    let overlap = raw
        .overlap
        .as_ref()
        .map_or(Some(DEFAULT_OVERLAP), |d| ctx.duration(d));
    let stagger = raw
        .stagger
        .as_ref()
        .and_then(|d| ctx.positive(d, "stagger"));
    let mut ladder: Vec<_> = raw
        .notify_before_expiry
        .iter()
        .flatten()
        .filter_map(|d| ctx.positive(d, "notify_before_expiry"))
        .collect();
    ladder.sort_by(|a, b| b.cmp(a));
    ladder.dedup();
    if let (Some(lead), Some(life), Some(at)) = (
        rotate_before_expiry,
        new_key_lifetime,
        &raw.rotate_before_expiry,
    ) && lead >= life
    {
        ctx.error(
            at.span(),
            format!(
                "`rotate_before_expiry` ({}) must be shorter than `new_key_lifetime` ({}): \
                 otherwise every new key is due the moment it is issued",
                format_duration(lead),
                format_duration(life)
            ),
        );
    }
    let windows: Vec<Window> = raw
        .window
        .iter()
        .flatten()
        .filter_map(|w| window(ctx, w))
        .collect();
    let notify = ctx.emails(&raw.notify, "notify");
    let security_contacts = ctx.emails(&raw.security_contacts, "security_contacts");
    let scopes = ctx.texts(&raw.scopes, "scopes");
    let reason = raw.reason.as_ref().and_then(|r| ctx.text(r, "reason"));
    let refuse_scope_mismatch = match &raw.scope_mismatch {
        None => true,
        Some(v) => match v.get_ref().as_str() {
            "refuse" => true,
            "flag" => false,
            other => {
                ctx.error(
                    v.span(),
                    format!("unknown scope_mismatch {other:?}: use \"refuse\" or \"flag\""),
                );
                true
            }
        },
    };
    let revoke_when = super::quiet::revoke_when(ctx, raw);
    if ctx.error_count() > before {
        return None;
    }
    Some(Policy {
        name: name?,
        rotate_before_expiry,
        max_age,
        new_key_lifetime,
        overlap: overlap?,
        windows,
        jitter: raw.jitter.unwrap_or(true),
        notify_before_expiry: ladder,
        stagger,
        auto_rotate: raw.auto_rotate.unwrap_or(true),
        notify,
        security_contacts,
        scopes,
        require_scopes: raw.require_scopes.unwrap_or(false),
        reason,
        refuse_scope_mismatch,
        revoke_when: revoke_when?,
        keep_current_secret: raw.keep_current_secret.unwrap_or(false),
    })
}

/// One `[[policy.window]]`; the zone defaults to UTC.
fn window(ctx: &mut Ctx<'_>, raw: &RawWindow) -> Option<Window> {
    let duration = ctx.positive(&raw.duration, "duration")?;
    let zone = raw
        .timezone
        .as_ref()
        .map_or("UTC", |z| z.get_ref().as_str());
    match Window::parse(raw.cron.get_ref(), duration, zone) {
        Ok(w) => Some(w),
        Err(msg) => {
            // Window::parse gives no position: point at the field it is about.
            let span = if msg.contains("time zone") {
                raw.timezone.as_ref().map_or(raw.cron.span(), Spanned::span)
            } else if msg.contains("window duration") {
                raw.duration.span()
            } else {
                raw.cron.span()
            };
            ctx.error(span, msg);
            None
        }
    }
}
