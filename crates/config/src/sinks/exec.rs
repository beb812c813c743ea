//! `type = "exec"`: its fields, its settings, and the command line and
//! environment checks the `exec` provider shares.

use std::collections::BTreeMap;

use jiff::SignedDuration;
use serde::Deserialize;
use toml::Spanned;

use super::timeout;
use crate::ctx::Ctx;
use crate::raw::DurationText;

/// `type = "exec"` fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExecSink {
    /// Program and arguments that store the secret read from stdin.
    pub command: Spanned<Vec<String>>,
    /// Program and arguments that print the stored secret on stdout.
    pub read_command: Option<Spanned<Vec<String>>>,
    /// Extra environment (not secrets).
    pub env: Option<Spanned<BTreeMap<String, String>>>,
    /// Kill the command after this long.
    pub timeout: Option<Spanned<DurationText>>,
}

/// `type = "exec"`.
#[derive(Clone, Debug)]
pub struct ExecSinkConfig {
    /// Program and arguments (the secret arrives on stdin).
    pub command: Vec<String>,
    /// Program and arguments that print the stored secret, if any.
    pub read_command: Option<Vec<String>>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Kill after this long.
    pub timeout: SignedDuration,
}

/// `type = "exec"`.
pub(crate) fn exec_sink(ctx: &mut Ctx<'_>, raw: &RawExecSink) -> Option<ExecSinkConfig> {
    let command = argv(ctx, &raw.command, "command");
    let read_command = match &raw.read_command {
        None => Some(None),
        Some(r) => argv(ctx, r, "read_command").map(Some),
    };
    let env = exec_env(ctx, &raw.env);
    let timeout = timeout(ctx, &raw.timeout);
    Some(ExecSinkConfig {
        command: command?,
        read_command: read_command?,
        env: env?,
        timeout: timeout?,
    })
}

/// `env` of an exec sink or provider: names non-empty, without `=`, and
/// not `KEYROT_*` (keyrot sets those).
pub(crate) fn exec_env(
    ctx: &mut Ctx<'_>,
    raw: &Option<Spanned<BTreeMap<String, String>>>,
) -> Option<BTreeMap<String, String>> {
    let Some(e) = raw else {
        return Some(BTreeMap::new());
    };
    let bad: Vec<&String> = e
        .get_ref()
        .keys()
        .filter(|k| k.is_empty() || k.contains(['=', '\0']) || k.starts_with("KEYROT_"))
        .collect();
    if bad.is_empty() {
        return Some(e.get_ref().clone());
    }
    ctx.error(
        e.span(),
        format!(
            "`env` names {bad:?}: a name must be non-empty, without `=`, and not start with KEYROT_ (keyrot sets those)"
        ),
    );
    None
}

/// A program and its arguments: non-empty, the program an absolute path
/// (a service's PATH is not the operator's).
pub(crate) fn argv(
    ctx: &mut Ctx<'_>,
    raw: &Spanned<Vec<String>>,
    field: &str,
) -> Option<Vec<String>> {
    let v = raw.get_ref();
    match v.first() {
        None => {
            ctx.error(raw.span(), format!("`{field}` needs at least the program"));
            None
        }
        Some(p) if !p.starts_with('/') => {
            ctx.error(
                raw.span(),
                format!("`{field}`: the program {p:?} must be an absolute path"),
            );
            None
        }
        Some(_) if v.iter().any(|a| a.contains('\0')) => {
            ctx.error(raw.span(), format!("`{field}` holds a NUL byte"));
            None
        }
        Some(_) => Some(v.clone()),
    }
}
