//! `[[provider]]` and `[[sink]]`: entries whose fields depend on `type`.
//!
//! Each entry is split into its head (fields every type has) and its body,
//! and the body is deserialized into the struct of its type with
//! `deny_unknown_fields`, so a field the type does not take is an error at
//! that field. A new type is one `match` arm and one raw struct.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::ctx::{Ctx, did_you_mean};
use super::defaults::{DEFAULT_MAX_CONCURRENT, MAX_REQUESTS_PER_SECOND, MIN_REQUESTS_PER_SECOND};
use super::raw::{
    PROVIDER_HEAD_FIELDS, RawAtlassianProvider, RawFileSink, RawLocalProvider, RawProviderHead,
    RawSinkHead, SINK_HEAD_FIELDS,
};
use super::sinks::{self, FileFormat, FileSinkConfig, SinkConfig, SinkKind};
use super::types::{LocalProviderConfig, ProviderConfig, ProviderKind};

/// Provider types keyrot knows.
pub const PROVIDER_TYPES: &[&str] = &[
    "local",
    "atlassian",
    "openbao-approle",
    "aws-iam",
    "http",
    "exec",
];
/// Sink types keyrot knows.
pub const SINK_TYPES: &[&str] = &[
    "file",
    "openbao",
    "vault",
    "aws-secretsmanager",
    "azure-keyvault",
    "exec",
];

/// One `[[provider]]`: its name (when readable, even if the rest is
/// wrong, so references to it do not cascade) and its validated config.
pub(crate) fn provider(
    ctx: &mut Ctx<'_>,
    entry: Spanned<DeValue<'_>>,
) -> (Option<Spanned<String>>, Option<ProviderConfig>) {
    let Some((head, body)) = split(entry, PROVIDER_HEAD_FIELDS) else {
        return (None, None);
    };
    let kind_name = type_of(&head);
    let head: Option<RawProviderHead> = ctx.deser(head);
    let name = head.as_ref().map(|h| h.name.clone());
    let context = format!("for provider type {:?}", kind_name.as_deref().unwrap_or(""));
    let kind = match kind_name.as_deref() {
        Some("local") => ctx
            .deser_in::<RawLocalProvider>(body, &context)
            .and_then(|raw| local_provider(ctx, &raw))
            .map(ProviderKind::Local),
        Some("atlassian") => ctx
            .deser_in::<RawAtlassianProvider>(body, &context)
            .and_then(|raw| super::atlassian::atlassian_provider(ctx, &raw))
            .map(ProviderKind::Atlassian),
        Some("openbao-approle") => {
            let before = ctx.error_count();
            ctx.deser_in::<super::approle::RawOpenBaoAppRoleProvider>(body, &context)
                .and_then(|raw| {
                    let dropped = ctx.error_count() > before;
                    super::approle::validate(ctx, &raw, dropped)
                })
                .map(ProviderKind::OpenBaoAppRole)
        }
        Some("aws-iam") => {
            let before = ctx.error_count();
            ctx.deser_in::<super::aws_iam::RawAwsIamProvider>(body, &context)
                .and_then(|raw| {
                    let dropped = ctx.error_count() > before;
                    super::aws_iam::validate(ctx, &raw, dropped)
                })
                .map(ProviderKind::AwsIam)
        }
        Some("http") => ctx
            .deser_in::<super::http_provider::RawHttpProvider>(body, &context)
            .and_then(|raw| super::http_provider::validate(ctx, &raw))
            .map(ProviderKind::Http),
        Some("exec") => ctx
            .deser_in::<super::exec_provider::RawExecProvider>(body, &context)
            .and_then(|raw| super::exec_provider::validate(ctx, &raw))
            .map(ProviderKind::Exec),
        _ => None,
    };
    let Some(head) = head else {
        return (name, None);
    };
    unknown_type(ctx, &head.kind, "provider", PROVIDER_TYPES);
    let max_concurrent = match &head.max_concurrent {
        None => Some(DEFAULT_MAX_CONCURRENT),
        Some(n) => match usize::try_from(*n.get_ref()) {
            Ok(v) if (1..=1024).contains(&v) => Some(v),
            _ => {
                ctx.error(n.span(), "`max_concurrent` must be between 1 and 1024");
                None
            }
        },
    };
    let requests_per_second = match &head.requests_per_second {
        None => Some(None),
        Some(r) => requests_per_second(ctx, r).map(Some),
    };
    let console_url = match &head.console_url {
        None => Some(None),
        Some(u) => ctx
            .http_url(
                u,
                "console_url",
                "nothing secret, but a person's browser session",
            )
            .map(Some),
    };
    let cfg = ctx
        .text(&head.name, "name")
        .zip(max_concurrent)
        .zip(requests_per_second)
        .zip(console_url)
        .zip(kind);
    (
        name,
        cfg.map(
            |((((name, max_concurrent), requests_per_second), console_url), kind)| ProviderConfig {
                name,
                max_concurrent,
                requests_per_second,
                console_url,
                kind,
                revoke_orphans: head.revoke_orphans.unwrap_or(false),
            },
        ),
    )
}

/// `requests_per_second`: a finite number from one request a day up to
/// [`MAX_REQUESTS_PER_SECOND`].
fn requests_per_second(ctx: &mut Ctx<'_>, r: &Spanned<f64>) -> Option<f64> {
    let v = *r.get_ref();
    if v.is_finite() && (MIN_REQUESTS_PER_SECOND..=MAX_REQUESTS_PER_SECOND).contains(&v) {
        return Some(v);
    }
    ctx.error(
        r.span(),
        format!(
            "`requests_per_second` must be a number greater than 0 (at least one request a day) and at most {MAX_REQUESTS_PER_SECOND}"
        ),
    );
    None
}

/// `type = "local"`.
fn local_provider(ctx: &mut Ctx<'_>, raw: &RawLocalProvider) -> Option<LocalProviderConfig> {
    let mut out = LocalProviderConfig::default();
    let mut ok = true;
    if let Some(d) = &raw.default_lifetime {
        match ctx.positive(d, "default_lifetime") {
            Some(v) => out.default_lifetime = v,
            None => ok = false,
        }
    }
    if let Some(n) = &raw.secret_bytes {
        match usize::try_from(*n.get_ref()) {
            Ok(v) if (16..=128).contains(&v) => out.secret_bytes = v,
            _ => {
                ctx.error(n.span(), "`secret_bytes` must be between 16 and 128");
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// One `[[sink]]`: its name (when readable) and its validated config.
pub(crate) fn sink(
    ctx: &mut Ctx<'_>,
    entry: Spanned<DeValue<'_>>,
    known: &super::keys::Known,
) -> (Option<Spanned<String>>, Option<SinkConfig>) {
    let Some((head, body)) = split(entry, SINK_HEAD_FIELDS) else {
        return (None, None);
    };
    let kind_name = type_of(&head);
    let head: Option<RawSinkHead> = ctx.deser(head);
    let name = head.as_ref().map(|h| h.name.clone());
    let context = format!("for sink type {:?}", kind_name.as_deref().unwrap_or(""));
    let kind = match kind_name.as_deref() {
        Some("file") => ctx
            .deser_in::<RawFileSink>(body, &context)
            .and_then(|raw| file_sink(ctx, &raw))
            .map(SinkKind::File),
        Some(flavor @ ("openbao" | "vault")) => {
            let flavor = if flavor == "vault" {
                "vault"
            } else {
                "openbao"
            };
            let before = ctx.error_count();
            ctx.deser_in::<sinks::RawOpenBaoSink>(body, &context)
                .and_then(|raw| {
                    let dropped = ctx.error_count() > before;
                    sinks::openbao_sink(ctx, &raw, flavor, dropped)
                })
                .map(SinkKind::OpenBao)
        }
        Some("aws-secretsmanager") => {
            let before = ctx.error_count();
            ctx.deser_in::<sinks::RawAwsSecretsManagerSink>(body, &context)
                .and_then(|raw| {
                    let dropped = ctx.error_count() > before;
                    sinks::aws_secretsmanager_sink(ctx, &raw, dropped)
                })
                .map(SinkKind::AwsSecretsManager)
        }
        Some("azure-keyvault") => ctx
            .deser_in::<sinks::RawAzureKeyVaultSink>(body, &context)
            .and_then(|raw| sinks::azure_keyvault_sink(ctx, &raw))
            .map(SinkKind::AzureKeyVault),
        Some("exec") => ctx
            .deser_in::<sinks::RawExecSink>(body, &context)
            .and_then(|raw| sinks::exec_sink(ctx, &raw))
            .map(SinkKind::Exec),
        _ => None,
    };
    let Some(head) = head else {
        return (name, None);
    };
    unknown_type(ctx, &head.kind, "sink", SINK_TYPES);
    let hooks = known.hook_refs(ctx, &head.hooks);
    let cfg = ctx.text(&head.name, "name").zip(kind);
    (
        name,
        cfg.map(|(name, kind)| SinkConfig { name, kind, hooks }),
    )
}

/// `type = "file"`.
fn file_sink(ctx: &mut Ctx<'_>, raw: &RawFileSink) -> Option<FileSinkConfig> {
    let path = ctx.path(&raw.path, "path").and_then(|p| {
        sinks::check_placeholders(ctx, &raw.path, "path")?;
        match p.to_str() {
            Some(s) => Some(s.to_string()),
            None => {
                ctx.error(
                    raw.path.span(),
                    "the sink path is not valid UTF-8 once resolved",
                );
                None
            }
        }
    });
    let mut out = FileSinkConfig::new(String::new());
    let mut ok = path.is_some();
    out.path = path.unwrap_or_default();
    if let Some(f) = &raw.format {
        match f.get_ref().as_str() {
            "raw" => out.format = FileFormat::Raw,
            "json" => out.format = FileFormat::Json,
            "env" => out.format = FileFormat::Env,
            other => {
                let hint = did_you_mean(other, ["raw", "json", "env"]);
                ctx.error(
                    f.span(),
                    format!("unknown format {other:?}{hint}: use \"raw\", \"json\" or \"env\""),
                );
                ok = false;
            }
        }
    }
    if let Some(e) = &raw.env_name {
        ok &= env_name(ctx, e, out.format)
            .map(|v| out.env_name = v)
            .is_some();
    }
    if let Some(m) = &raw.mode {
        match ctx.mode(m) {
            Some(v) if v & 0o007 != 0 => {
                ctx.error(m.span(), "a file sink holds a secret: its mode must give others no access (e.g. \"0600\" or \"0640\")");
                ok = false;
            }
            Some(v) => out.mode = v,
            None => ok = false,
        }
    }
    out.owner = raw.owner.as_ref().and_then(|o| ctx.text(o, "owner"));
    out.group = raw.group.as_ref().and_then(|g| ctx.text(g, "group"));
    ok &= raw.owner.is_none() == out.owner.is_none() && raw.group.is_none() == out.group.is_none();
    ok.then_some(out)
}

/// `env_name`: a shell variable name, and only meaningful for `format = "env"`.
fn env_name(ctx: &mut Ctx<'_>, e: &Spanned<String>, format: FileFormat) -> Option<String> {
    let v = e.get_ref();
    let valid = v
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        ctx.error(e.span(), format!("`env_name` {v:?} is not a variable name (letters, digits, _; not starting with a digit)"));
        return None;
    }
    if format != FileFormat::Env {
        ctx.error(e.span(), "`env_name` is only used with format = \"env\"");
        return None;
    }
    Some(v.clone())
}

/// Records an unknown `type`, with a suggestion.
fn unknown_type(ctx: &mut Ctx<'_>, kind: &Spanned<String>, what: &str, known: &[&str]) {
    let name = kind.get_ref();
    if !known.contains(&name.as_str()) {
        let hint = did_you_mean(name, known.iter().copied());
        ctx.error(
            kind.span(),
            format!(
                "unknown {what} type {name:?}{hint}: known types are {}",
                quoted(known)
            ),
        );
    }
}

/// `"a", "b"`.
fn quoted(list: &[&str]) -> String {
    list.iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `type` string of a head table, if it is one.
fn type_of(head: &Spanned<DeValue<'_>>) -> Option<String> {
    head.get_ref()
        .get("type")?
        .get_ref()
        .as_str()
        .map(str::to_string)
}

/// Splits an entry into its head fields and the rest, both with the
/// entry's span (so "missing field" points at the entry).
fn split<'i>(
    entry: Spanned<DeValue<'i>>,
    head_fields: &[&str],
) -> Option<(Spanned<DeValue<'i>>, Spanned<DeValue<'i>>)> {
    let span = entry.span();
    let DeValue::Table(mut body) = entry.into_inner() else {
        return None;
    };
    let mut head = DeTable::new();
    for field in head_fields {
        if let Some((k, v)) = body.remove_entry(*field) {
            head.insert(k, v);
        }
    }
    Some((
        Spanned::new(span.clone(), DeValue::Table(head)),
        Spanned::new(span, DeValue::Table(body)),
    ))
}
