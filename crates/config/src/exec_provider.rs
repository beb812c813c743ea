//! `[[provider]] type = "exec"`: a program of the operator's that speaks
//! keyrot's JSON protocol on stdin/stdout (see `crates/peers/src/provider/exec.rs` and
//! docs/providers.md). Raw fields as written, the validated settings and
//! the summary line; the provider takes no secret reference (the program
//! finds its own credentials).

use std::collections::BTreeMap;

use jiff::SignedDuration;
use serde::Deserialize;
use toml::Spanned;

// Through the crate root, not `types`: `ProviderKind` there holds this
// module's settings, and the two would import each other.
use super::ProviderConfig;
use super::ctx::{Ctx, did_you_mean};
use super::raw::DurationText;
use super::secret::SecretUse;
use super::sinks::{argv, exec_env, timeout};

/// Operations a program may implement.
pub const OPERATIONS: [&str; 6] = [
    "list",
    "issue",
    "verify",
    "revoke",
    "find_tagged",
    "deactivate",
];
/// Operations assumed when `operations` is not given.
const DEFAULT_OPERATIONS: [&str; 4] = ["list", "issue", "verify", "revoke"];

/// `type = "exec"` fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExecProvider {
    /// Program and arguments.
    pub command: Spanned<Vec<String>>,
    /// Operations the program implements.
    pub operations: Option<Spanned<Vec<String>>>,
    /// Issuing a replacement ends the old key at once.
    pub no_overlap: Option<bool>,
    /// Extra environment (not secrets).
    pub env: Option<Spanned<BTreeMap<String, String>>>,
    /// Kill the program after this long.
    pub timeout: Option<Spanned<DurationText>>,
}

/// `type = "exec"` settings.
#[derive(Clone, Debug)]
pub struct ExecProviderConfig {
    /// Program (absolute path) and arguments.
    pub command: Vec<String>,
    /// Operations the program implements (a subset of [`OPERATIONS`]).
    pub operations: Vec<String>,
    /// Issuing a replacement ends the old key at once (no overlap).
    pub no_overlap: bool,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Kill after this long.
    pub timeout: SignedDuration,
}

impl ExecProviderConfig {
    /// True when the program implements `op`.
    pub fn has(&self, op: &str) -> bool {
        self.operations.iter().any(|o| o == op)
    }
}

/// Validates `type = "exec"`.
pub(crate) fn validate(ctx: &mut Ctx<'_>, raw: &RawExecProvider) -> Option<ExecProviderConfig> {
    let command = argv(ctx, &raw.command, "command");
    let operations = match &raw.operations {
        None => Some(DEFAULT_OPERATIONS.iter().map(|s| s.to_string()).collect()),
        Some(ops) => operations(ctx, ops),
    };
    let env = exec_env(ctx, &raw.env);
    let timeout = timeout(ctx, &raw.timeout);
    Some(ExecProviderConfig {
        command: command?,
        operations: operations?,
        no_overlap: raw.no_overlap.unwrap_or(false),
        env: env?,
        timeout: timeout?,
    })
}

/// `operations`: known names, each once, including `issue`.
fn operations(ctx: &mut Ctx<'_>, raw: &Spanned<Vec<String>>) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for op in raw.get_ref() {
        if !OPERATIONS.contains(&op.as_str()) {
            let hint = did_you_mean(op, OPERATIONS);
            ctx.error(
                raw.span(),
                format!(
                    "unknown operation {op:?}{hint}: use {}",
                    OPERATIONS.join(", ")
                ),
            );
            return None;
        }
        if out.contains(op) {
            ctx.error(raw.span(), format!("operation {op:?} is listed twice"));
            return None;
        }
        out.push(op.clone());
    }
    if !out.iter().any(|o| o == "issue") {
        ctx.error(
            raw.span(),
            "`operations` must include \"issue\": keyrot needs a way to create keys",
        );
        return None;
    }
    Some(out)
}

/// The secret references of one provider: none (the program reads its own).
pub(crate) fn secret_uses<'a>(name: &str, cfg: &'a ExecProviderConfig) -> Vec<SecretUse<'a>> {
    let _ = (name, cfg);
    Vec::new()
}

/// The provider's line in the `keyrot check` summary (without indent).
pub(crate) fn summary_line(p: &ProviderConfig, cfg: &ExecProviderConfig) -> String {
    format!(
        "{} (exec, {} at once, {}, operations {}{}, timeout {})",
        p.name,
        p.max_concurrent,
        cfg.command.join(" "),
        cfg.operations.join(" "),
        if cfg.no_overlap { ", no overlap" } else { "" },
        keyrot_core::policy::format_duration(cfg.timeout)
    )
}

#[cfg(test)]
mod tests {
    use crate::ProviderKind;
    use crate::tests::{assert_one, ok};

    fn provider(body: &str) -> String {
        format!("[[provider]]\nname = \"legacy\"\ntype = \"exec\"\n{body}\n")
    }

    #[test]
    fn options_defaults_and_summary() {
        let cfg = ok(&provider(
            "command = [\"/usr/local/lib/keyrot/legacy\", \"--prod\"]",
        ));
        let ProviderKind::Exec(e) = &cfg.providers[0].kind else {
            panic!("not exec")
        };
        assert_eq!(e.operations, ["list", "issue", "verify", "revoke"]);
        assert!(!e.no_overlap && e.has("verify") && !e.has("find_tagged"));
        let text = crate::summary(&cfg, "2026-11-23T12:00:00Z".parse().unwrap());
        assert!(
            text.contains("legacy (exec, 4 at once, /usr/local/lib/keyrot/legacy --prod, operations list issue verify revoke, timeout 30s)"),
            "{text}"
        );
        let cfg = ok(&provider(
            "command = [\"/bin/x\"]\noperations = [\"issue\", \"deactivate\"]\nno_overlap = true\ntimeout = \"5s\"",
        ));
        let ProviderKind::Exec(e) = &cfg.providers[0].kind else {
            panic!("not exec")
        };
        assert!(e.no_overlap && e.has("deactivate") && !e.has("list"));
    }

    #[test]
    fn errors_point_at_the_field() {
        assert_one(
            &provider("command = [\"legacy\"]"),
            "4:11: `command`: the program \"legacy\" must be an absolute path",
        );
        assert_one(
            &provider("command = [\"/bin/x\"]\noperations = [\"issue\", \"rotat\"]"),
            "5:14: unknown operation \"rotat\"",
        );
        assert_one(
            &provider("command = [\"/bin/x\"]\noperations = [\"list\"]"),
            "5:14: `operations` must include \"issue\"",
        );
        assert_one(
            &provider("command = [\"/bin/x\"]\ntoken = { env = \"T\" }"),
            "5:1: unknown field `token` for provider type \"exec\"",
        );
    }
}
