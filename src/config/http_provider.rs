//! `[[provider]] type = "http"`: any HTTP API, driven by config (with presets). Raw fields as written, the
//! validated settings, the secret references (for `keyrot check`) and the
//! summary line. (Placeholder, being written.)

use serde::Deserialize;
use toml::Spanned;

use super::ProviderConfig;
use super::ctx::Ctx;
use super::summary::SecretUse;

/// `type = "http"` fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpProvider {
    /// Placeholder.
    pub placeholder: Option<Spanned<String>>,
}

/// `type = "http"` settings.
#[derive(Clone, Debug)]
pub struct HttpProviderConfig {}

/// Validates `type = "http"`.
pub(crate) fn validate(ctx: &mut Ctx<'_>, raw: &RawHttpProvider) -> Option<HttpProviderConfig> {
    let _ = (ctx, raw);
    Some(HttpProviderConfig {})
}

/// The secret references of one provider, for `keyrot check`.
pub(crate) fn secret_uses<'a>(name: &str, cfg: &'a HttpProviderConfig) -> Vec<SecretUse<'a>> {
    let _ = (name, cfg);
    Vec::new()
}

/// The provider's line in the `keyrot check` summary (without indent).
pub(crate) fn summary_line(p: &ProviderConfig, cfg: &HttpProviderConfig) -> String {
    let _ = cfg;
    format!("{} (http, {} at once)", p.name, p.max_concurrent)
}
