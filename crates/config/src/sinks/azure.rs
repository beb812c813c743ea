//! `type = "azure-keyvault"`: its fields, its settings, the Entra ID
//! authority of the vault's cloud and Key Vault secret names.

use jiff::SignedDuration;
use serde::Deserialize;
use toml::Spanned;

use super::{check_placeholders, strip_placeholders, timeout};
use crate::ctx::Ctx;
use crate::raw::{DurationText, SecretRefRaw};
use crate::secret::secret_ref;
use crate::secret_ref::SecretRef;

/// Default Entra ID authority.
pub const DEFAULT_AZURE_AUTHORITY: &str = "https://login.microsoftonline.com";
/// Key Vault REST API version.
pub const AZURE_API_VERSION: &str = "7.4";

/// `type = "azure-keyvault"` fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAzureKeyVaultSink {
    /// Vault URL, e.g. `https://myvault.vault.azure.net`.
    pub vault_url: Spanned<String>,
    /// Secret name, with placeholders.
    pub secret_name: Spanned<String>,
    /// Entra ID tenant.
    pub tenant_id: Spanned<String>,
    /// App registration (client) id.
    pub client_id: Spanned<String>,
    /// Client secret.
    pub client_secret: Spanned<SecretRefRaw>,
    /// Entra ID authority (sovereign clouds).
    pub authority_host: Option<Spanned<String>>,
    /// `contentType` of the secret.
    pub content_type: Option<Spanned<String>>,
    /// Per-request timeout.
    pub timeout: Option<Spanned<DurationText>>,
}

/// `type = "azure-keyvault"`.
#[derive(Clone, Debug)]
pub struct AzureKeyVaultSinkConfig {
    /// Vault URL, no trailing `/`.
    pub vault_url: String,
    /// Secret name template.
    pub secret_name: String,
    /// Tenant.
    pub tenant_id: String,
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: SecretRef,
    /// Entra ID authority, no trailing `/`.
    pub authority_host: String,
    /// `contentType` (default `text/plain`).
    pub content_type: String,
    /// Per-request timeout.
    pub timeout: SignedDuration,
}

/// `type = "azure-keyvault"`.
pub(crate) fn azure_keyvault_sink(
    ctx: &mut Ctx<'_>,
    raw: &RawAzureKeyVaultSink,
) -> Option<AzureKeyVaultSinkConfig> {
    let vault_url = ctx.http_url(&raw.vault_url, "vault_url", "the access token");
    let secret_name = azure_secret_name(ctx, &raw.secret_name);
    let tenant_id = ctx.text(&raw.tenant_id, "tenant_id");
    let client_id = ctx.text(&raw.client_id, "client_id");
    let client_secret = secret_ref(ctx, &raw.client_secret);
    let authority_host = match &raw.authority_host {
        None => Some(default_authority(vault_url.as_deref().unwrap_or_default()).to_string()),
        Some(a) => ctx.http_url(a, "authority_host", "the client secret"),
    };
    let content_type = match &raw.content_type {
        None => Some("text/plain".to_string()),
        Some(c) => ctx.text(c, "content_type"),
    };
    let timeout = timeout(ctx, &raw.timeout);
    Some(AzureKeyVaultSinkConfig {
        vault_url: vault_url?,
        secret_name: secret_name?,
        tenant_id: tenant_id?,
        client_id: client_id?,
        client_secret: client_secret?,
        authority_host: authority_host?,
        content_type: content_type?,
        timeout: timeout?,
    })
}

/// The Entra ID authority of the cloud a vault URL belongs to: Azure China
/// and US Government have their own; everything else the public cloud's.
fn default_authority(vault_url: &str) -> &'static str {
    let host = reqwest::Url::parse(vault_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    if host.ends_with(".vault.azure.cn") {
        "https://login.chinacloudapi.cn"
    } else if host.ends_with(".vault.usgovcloudapi.net") {
        "https://login.microsoftonline.us"
    } else {
        DEFAULT_AZURE_AUTHORITY
    }
}

/// True when `name` is a valid Key Vault secret name: 1–127 of ASCII
/// letters, digits and `-`.
pub fn azure_name_ok(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// A Key Vault secret name template: letters, digits, `-` and
/// placeholders (the filled-in name is checked again at each write).
fn azure_secret_name(ctx: &mut Ctx<'_>, raw: &Spanned<String>) -> Option<String> {
    let v = ctx.text(raw, "secret_name")?;
    check_placeholders(ctx, raw, "secret_name")?;
    let bare = strip_placeholders(&v);
    if bare.len() > 127 || !bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        ctx.error(
            raw.span(),
            format!(
                "`secret_name` {v:?}: a Key Vault secret name has 1 to 127 letters, digits and `-` (no `/`, `_` or `.`)"
            ),
        );
        return None;
    }
    Some(v)
}
