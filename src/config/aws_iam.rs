//! `[[provider]] type = "aws-iam"`: access keys of AWS IAM users. Raw fields as written, the
//! validated settings, the secret references (for `keyrot check`) and the
//! summary line. (Placeholder, being written.)

use serde::Deserialize;
use toml::Spanned;

use super::ProviderConfig;
use super::ctx::Ctx;
use super::summary::SecretUse;

/// `type = "aws-iam"` fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAwsIamProvider {
    /// Placeholder.
    pub placeholder: Option<Spanned<String>>,
}

/// `type = "aws-iam"` settings.
#[derive(Clone, Debug)]
pub struct AwsIamProviderConfig {}

/// Validates `type = "aws-iam"`.
pub(crate) fn validate(ctx: &mut Ctx<'_>, raw: &RawAwsIamProvider) -> Option<AwsIamProviderConfig> {
    let _ = (ctx, raw);
    Some(AwsIamProviderConfig {})
}

/// The secret references of one provider, for `keyrot check`.
pub(crate) fn secret_uses<'a>(name: &str, cfg: &'a AwsIamProviderConfig) -> Vec<SecretUse<'a>> {
    let _ = (name, cfg);
    Vec::new()
}

/// The provider's line in the `keyrot check` summary (without indent).
pub(crate) fn summary_line(p: &ProviderConfig, cfg: &AwsIamProviderConfig) -> String {
    let _ = cfg;
    format!("{} (aws-iam, {} at once)", p.name, p.max_concurrent)
}
