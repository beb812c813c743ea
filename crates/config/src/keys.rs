//! `[[key]]` entries and every reference between sections: unique
//! provider/sink/policy names, keys pointing at defined providers,
//! policies and sinks (with a "did you mean"), one entry per key and
//! provider, and file sinks that would be overwritten by several keys.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use jiff::SignedDuration;
use toml::Spanned;
use toml::de::DeValue;

use super::ctx::{Ctx, did_you_mean};
use super::raw::{RawKey, RawSelect};
use super::sinks::SinkKind;
use super::types::{KeyMatch, KeySpec, ProviderKind};

/// Names defined by `[[provider]]`, `[[sink]]` and `[[policy]]`.
#[derive(Default)]
pub(crate) struct Known {
    /// Providers: name (first definition) and type when it validated.
    providers: Vec<(Spanned<String>, Option<ProviderKind>)>,
    /// Sinks: name and type when it validated.
    sinks: Vec<(Spanned<String>, Option<SinkKind>)>,
    /// Policy names.
    policies: Vec<Spanned<String>>,
    /// Hook names.
    pub(crate) hooks: Vec<Spanned<String>>,
    /// Policy name → its `new_key_lifetime`, for the policies that validated.
    lifetimes: HashMap<String, Lifetime>,
    /// Policy name → its `revoke_when = "unused"` rule, where set.
    quiet: HashMap<String, super::quiet::QuietAt>,
}

/// A validated policy's `new_key_lifetime`: its value and where it is
/// written, or None when the policy does not set one.
pub(crate) type Lifetime = Option<(SignedDuration, Range<usize>)>;

impl Known {
    /// Adds a provider name; a second one with the same name is an error.
    pub fn add_provider(
        &mut self,
        ctx: &mut Ctx<'_>,
        name: Spanned<String>,
        kind: Option<ProviderKind>,
    ) {
        if unique(
            ctx,
            "provider",
            &name,
            self.providers.iter().map(|(n, _)| n),
        ) {
            self.providers.push((name, kind));
        }
    }

    /// References to hooks: each defined, none twice.
    pub fn hook_refs(&self, ctx: &mut Ctx<'_>, list: &Option<Vec<Spanned<String>>>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for h in list.as_deref().unwrap_or_default() {
            let Some(name) = reference(ctx, h, "hook", self.hooks.iter()) else {
                continue;
            };
            if out.contains(&name) {
                ctx.error(h.span(), format!("hook {name:?} is listed twice"));
                continue;
            }
            out.push(name);
        }
        out
    }

    /// Adds a sink name; a second one with the same name is an error.
    pub fn add_sink(&mut self, ctx: &mut Ctx<'_>, name: Spanned<String>, kind: Option<SinkKind>) {
        if unique(ctx, "sink", &name, self.sinks.iter().map(|(n, _)| n)) {
            self.sinks.push((name, kind));
        }
    }

    /// Records the `revoke_when = "unused"` rule of policy `name`.
    pub fn add_quiet(&mut self, name: &str, quiet: super::quiet::QuietAt) {
        self.quiet.entry(name.to_string()).or_insert(quiet);
    }

    /// Adds a policy name; a second one with the same name is an error.
    /// `lifetime` is None when the policy did not validate.
    pub fn add_policy(
        &mut self,
        ctx: &mut Ctx<'_>,
        name: Spanned<String>,
        lifetime: Option<Lifetime>,
    ) {
        if unique(ctx, "policy", &name, self.policies.iter()) {
            if let Some(l) = lifetime {
                self.lifetimes.insert(name.get_ref().clone(), l);
            }
            self.policies.push(name);
        }
    }

    /// True when a sink writes one fixed location (no `{name}` or
    /// `{slot}` in its path or secret name).
    fn fixed_file_sink(&self, name: &str) -> bool {
        self.sinks.iter().any(|(n, kind)| {
            n.get_ref() == name
                && kind
                    .as_ref()
                    .and_then(SinkKind::location_template)
                    .is_some_and(|t| !t.contains("{name}") && !t.contains("{slot}"))
        })
    }
}

/// False (and an error at `name`) when `name` is already among `seen`.
fn unique<'a>(
    ctx: &mut Ctx<'_>,
    what: &str,
    name: &Spanned<String>,
    mut seen: impl Iterator<Item = &'a Spanned<String>>,
) -> bool {
    let Some(first) = seen.find(|n| n.get_ref() == name.get_ref()) else {
        return true;
    };
    let at = ctx.position(&first.span());
    ctx.error(
        name.span(),
        format!(
            "duplicate {what} name {:?} (first defined at {at})",
            name.get_ref()
        ),
    );
    false
}

/// Where keys were seen, for duplicate and shared-file checks.
#[derive(Default)]
struct Seen {
    /// (provider, key name or id) → where it was first written.
    keys: HashMap<(String, String), Range<usize>>,
    /// Fixed-file sink name → where a key first used it.
    fixed_sinks: HashMap<String, Range<usize>>,
    /// (policy, provider) pairs whose lifetime was already checked.
    lifetimes: HashSet<(String, String)>,
    /// (policy, provider) pairs whose last-use reporting was checked.
    quiet: HashSet<(String, String)>,
}

/// Every `[[key]]`, checked against the defined names.
pub(crate) fn keys(
    ctx: &mut Ctx<'_>,
    entries: Vec<Spanned<DeValue<'_>>>,
    known: &Known,
) -> Vec<KeySpec> {
    let mut seen = Seen::default();
    let mut out = Vec::new();
    for entry in entries {
        let span = entry.span();
        if let Some(raw) = ctx.deser::<RawKey>(entry) {
            out.extend(key(ctx, &raw, span, known, &mut seen));
        }
    }
    out
}

/// One `[[key]]`.
fn key(
    ctx: &mut Ctx<'_>,
    raw: &RawKey,
    span: Range<usize>,
    known: &Known,
    seen: &mut Seen,
) -> Option<KeySpec> {
    let before = ctx.error_count();
    let provider = reference(
        ctx,
        &raw.provider,
        "provider",
        known.providers.iter().map(|(n, _)| n),
    );
    let policy = reference(ctx, &raw.policy, "policy", known.policies.iter());
    let matches = key_match(ctx, raw, span.clone());
    if let (Some(p), Some(m)) = (&provider, &matches) {
        check_duplicate(ctx, raw, p, m, seen);
    }
    if let (Some(p), Some(pol)) = (&provider, &policy) {
        check_lifetime(ctx, raw, p, pol, known, seen);
        check_quiet(ctx, raw, p, pol, known, seen);
    }
    let sinks = sinks(ctx, raw, span, known, matches.as_ref(), seen);
    let scopes = ctx.texts(&raw.scopes, "scopes");
    let contacts = ctx.emails(&raw.contacts, "contacts");
    let group = raw.group.as_ref().and_then(|g| ctx.text(g, "group"));
    let hooks = known.hook_refs(ctx, &raw.hooks);
    if ctx.error_count() > before {
        return None;
    }
    Some(KeySpec {
        matches: matches?,
        provider: provider?,
        policy: policy?,
        sinks,
        scopes,
        contacts,
        group,
        hooks,
    })
}

/// A reference to a defined name, with a suggestion when it is not.
fn reference<'a>(
    ctx: &mut Ctx<'_>,
    name: &Spanned<String>,
    what: &str,
    defined: impl Iterator<Item = &'a Spanned<String>> + Clone,
) -> Option<String> {
    let v = name.get_ref();
    if defined.clone().any(|d| d.get_ref() == v) {
        return Some(v.clone());
    }
    let hint = did_you_mean(v, defined.clone().map(|d| d.get_ref().as_str()));
    let list: Vec<String> = defined.map(|d| format!("{:?}", d.get_ref())).collect();
    let tail = if list.is_empty() {
        format!("no [[{what}]] is defined")
    } else {
        format!("defined: {}", list.join(", "))
    };
    ctx.error(name.span(), format!("unknown {what} {v:?}{hint}; {tail}"));
    None
}

/// `name` (+ `id`) or `select`, exactly one.
fn key_match(ctx: &mut Ctx<'_>, raw: &RawKey, span: Range<usize>) -> Option<KeyMatch> {
    match (&raw.name, &raw.select) {
        (Some(_), Some(sel)) => {
            ctx.error(
                sel.span(),
                "a [[key]] takes `name` (one key) or `select` (a selector), not both",
            );
            None
        }
        (None, None) => {
            ctx.error(span, "a [[key]] needs `name` (one key) or `select` (a selector such as { name = \"ci-*\" })");
            None
        }
        (Some(name), None) => {
            let name = ctx.text(name, "name")?;
            let id = match &raw.id {
                Some(id) => Some(ctx.text(id, "id")?),
                None => None,
            };
            Some(KeyMatch::Named { name, id })
        }
        (None, Some(sel)) => {
            if let Some(id) = &raw.id {
                ctx.error(id.span(), "`id` only goes with `name`, not with `select`");
                return None;
            }
            select(ctx, sel)
        }
    }
}

/// `select = { name, scope, tag }`: at least one criterion; tag is `k=v`.
fn select(ctx: &mut Ctx<'_>, sel: &Spanned<RawSelect>) -> Option<KeyMatch> {
    let raw = sel.get_ref();
    if raw.name.is_none() && raw.scope.is_none() && raw.tag.is_none() {
        ctx.error(
            sel.span(),
            "`select` needs at least one of `name`, `scope` or `tag`",
        );
        return None;
    }
    let tag = match &raw.tag {
        None => None,
        Some(t) => match t.get_ref().split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                Some((k.trim().to_string(), v.trim().to_string()))
            }
            _ => {
                ctx.error(
                    t.span(),
                    "`tag` must be written key=value, e.g. \"team=platform\"",
                );
                return None;
            }
        },
    };
    let name = match &raw.name {
        Some(n) => Some(ctx.text(n, "name")?),
        None => None,
    };
    let scope = match &raw.scope {
        Some(s) => Some(ctx.text(s, "scope")?),
        None => None,
    };
    Some(KeyMatch::Select { name, scope, tag })
}

/// Two `[[key]]` entries for one key of one provider (by name or by id).
fn check_duplicate(ctx: &mut Ctx<'_>, raw: &RawKey, provider: &str, m: &KeyMatch, seen: &mut Seen) {
    let KeyMatch::Named { name, id } = m else {
        return;
    };
    let mut check = |label: &str, value: &str, span: Range<usize>| {
        let k = (provider.to_string(), format!("{label}:{value}"));
        if let Some(first) = seen.keys.get(&k) {
            let at = ctx.position(first);
            ctx.error(
                span,
                format!(
                    "duplicate [[key]] {label} {value:?} for provider {provider:?} (first at {at})"
                ),
            );
        } else {
            seen.keys.insert(k, span);
        }
    };
    if let Some(n) = &raw.name {
        check("name", name, n.span());
    }
    if let (Some(id), Some(at)) = (id, &raw.id) {
        check("id", id, at.span());
    }
}

/// A policy with `revoke_when = "unused"` needs every key under it on a
/// provider that reports last use, more precisely than its quiet period.
/// Checked once per policy and provider; the error is at the policy's
/// setting and names the provider and where the key is.
fn check_quiet(
    ctx: &mut Ctx<'_>,
    raw: &RawKey,
    provider: &str,
    policy: &str,
    known: &Known,
    seen: &mut Seen,
) {
    let Some(quiet) = known.quiet.get(policy) else {
        return;
    };
    let Some((name, Some(kind))) = known
        .providers
        .iter()
        .find(|(n, _)| n.get_ref() == provider)
    else {
        return;
    };
    if !seen
        .quiet
        .insert((policy.to_string(), provider.to_string()))
    {
        return;
    }
    let Some((at, msg)) = super::quiet::problem(provider, kind, policy, quiet) else {
        return;
    };
    let key = ctx.position(&raw.provider.span());
    let defined = ctx.position(&name.span());
    ctx.error(
        at,
        format!("{msg} (the [[key]] at {key}; provider {provider:?} defined at {defined})"),
    );
}

/// A provider that caps the life of the keys it issues (today: Atlassian's
/// proposed rotate endpoint) needs the key's policy to ask for a lifetime
/// within the cap. Checked once per policy and provider.
fn check_lifetime(
    ctx: &mut Ctx<'_>,
    raw: &RawKey,
    provider: &str,
    policy: &str,
    known: &Known,
    seen: &mut Seen,
) {
    let Some((_, Some(ProviderKind::Atlassian(cfg)))) = known
        .providers
        .iter()
        .find(|(n, _)| n.get_ref() == provider)
    else {
        return;
    };
    let Some(lifetime) = known.lifetimes.get(policy) else {
        return;
    };
    if !seen
        .lifetimes
        .insert((policy.to_string(), provider.to_string()))
    {
        return;
    }
    let Some(msg) = super::atlassian::lifetime_problem(provider, cfg, policy, lifetime) else {
        return;
    };
    match lifetime {
        Some((_, at)) => {
            let key = ctx.position(&raw.policy.span());
            ctx.error(at.clone(), format!("{msg} (used by the [[key]] at {key})"));
        }
        None => {
            let defined = known
                .policies
                .iter()
                .find(|n| n.get_ref() == policy)
                .map(|n| ctx.position(&n.span()))
                .unwrap_or_default();
            ctx.error(
                raw.policy.span(),
                format!("{msg} (policy defined at {defined})"),
            );
        }
    }
}

/// The key's sinks: at least one, each defined, none twice, and no
/// fixed-path file sink shared between keys.
fn sinks(
    ctx: &mut Ctx<'_>,
    raw: &RawKey,
    span: Range<usize>,
    known: &Known,
    m: Option<&KeyMatch>,
    seen: &mut Seen,
) -> Vec<String> {
    let list = raw.sinks.as_deref().unwrap_or_default();
    if list.is_empty() {
        ctx.error(span, "a [[key]] needs at least one sink (`sinks = [\"...\"]`): the new secret must go somewhere");
    }
    let mut out: Vec<String> = Vec::new();
    for s in list {
        let Some(name) = reference(ctx, s, "sink", known.sinks.iter().map(|(n, _)| n)) else {
            continue;
        };
        if out.contains(&name) {
            ctx.error(s.span(), format!("sink {name:?} is listed twice"));
            continue;
        }
        if known.fixed_file_sink(&name) {
            shared_file(ctx, s, &name, m, seen);
        }
        out.push(name);
    }
    out
}

/// A sink with a fixed location may hold one key's secret only.
fn shared_file(
    ctx: &mut Ctx<'_>,
    s: &Spanned<String>,
    name: &str,
    m: Option<&KeyMatch>,
    seen: &mut Seen,
) {
    let fixed = "writes one fixed location (no {name} or {slot} in its path or secret name)";
    if matches!(m, Some(KeyMatch::Select { .. })) {
        ctx.error(
            s.span(),
            format!("sink {name:?} {fixed}, but this [[key]] selects many keys"),
        );
    } else if let Some(first) = seen.fixed_sinks.get(name) {
        let at = ctx.position(first);
        ctx.error(
            s.span(),
            format!("sink {name:?} {fixed} and another [[key]] already writes to it (at {at})"),
        );
    } else {
        seen.fixed_sinks.insert(name.to_string(), s.span());
    }
}
