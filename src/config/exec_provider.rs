//! `[[provider]] type = "exec"`: a program speaking keyrot's JSON protocol. Raw fields as written, the
//! validated settings, the secret references (for `keyrot check`) and the
//! summary line. (Placeholder, being written.)

use serde::Deserialize;
use toml::Spanned;

use super::ProviderConfig;
use super::ctx::Ctx;
use super::summary::SecretUse;

/// `type = "exec"` fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExecProvider {
    /// Placeholder.
    pub placeholder: Option<Spanned<String>>,
}

/// `type = "exec"` settings.
#[derive(Clone, Debug)]
pub struct ExecProviderConfig {}

/// Validates `type = "exec"`.
pub(crate) fn validate(ctx: &mut Ctx<'_>, raw: &RawExecProvider) -> Option<ExecProviderConfig> {
    let _ = (ctx, raw);
    Some(ExecProviderConfig {})
}

/// The secret references of one provider, for `keyrot check`.
pub(crate) fn secret_uses<'a>(name: &str, cfg: &'a ExecProviderConfig) -> Vec<SecretUse<'a>> {
    let _ = (name, cfg);
    Vec::new()
}

/// The provider's line in the `keyrot check` summary (without indent).
pub(crate) fn summary_line(p: &ProviderConfig, cfg: &ExecProviderConfig) -> String {
    let _ = cfg;
    format!("{} (exec, {} at once)", p.name, p.max_concurrent)
}
