//! `[[provider]] type = "openbao-approle"`: AppRole secret-ids of OpenBao/Vault roles. Raw fields as written, the
//! validated settings, the secret references (for `keyrot check`) and the
//! summary line. (Placeholder, being written.)

use serde::Deserialize;
use toml::Spanned;

use super::ProviderConfig;
use super::ctx::Ctx;
use super::summary::SecretUse;

/// `type = "openbao-approle"` fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOpenBaoAppRoleProvider {
    /// Placeholder.
    pub placeholder: Option<Spanned<String>>,
}

/// `type = "openbao-approle"` settings.
#[derive(Clone, Debug)]
pub struct OpenBaoAppRoleProviderConfig {}

/// Validates `type = "openbao-approle"`.
pub(crate) fn validate(
    ctx: &mut Ctx<'_>,
    raw: &RawOpenBaoAppRoleProvider,
) -> Option<OpenBaoAppRoleProviderConfig> {
    let _ = (ctx, raw);
    Some(OpenBaoAppRoleProviderConfig {})
}

/// The secret references of one provider, for `keyrot check`.
pub(crate) fn secret_uses<'a>(
    name: &str,
    cfg: &'a OpenBaoAppRoleProviderConfig,
) -> Vec<SecretUse<'a>> {
    let _ = (name, cfg);
    Vec::new()
}

/// The provider's line in the `keyrot check` summary (without indent).
pub(crate) fn summary_line(p: &ProviderConfig, cfg: &OpenBaoAppRoleProviderConfig) -> String {
    let _ = cfg;
    format!("{} (openbao-approle, {} at once)", p.name, p.max_concurrent)
}
