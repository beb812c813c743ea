//! `[[sink]]` types that talk to a secret store: `openbao`/`vault` (KV v2),
//! `aws-secretsmanager`, `azure-keyvault` and `exec`. Raw fields as
//! written, the validated settings, the secret references each holds (for
//! `keyrot check`) and its summary line. The sinks themselves are in
//! `crates/peers/src/sink/`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use jiff::SignedDuration;
use serde::Deserialize;
use toml::Spanned;

use super::SecretRef;
use super::ctx::{Ctx, did_you_mean};
use super::raw::DurationText;
use super::raw::SecretRefRaw;
use super::secret::SecretUse;
use super::secret::secret_ref;
use keyrot_core::policy::format_duration;

/// Default `timeout` of every network sink and of `exec`.
pub const DEFAULT_SINK_TIMEOUT: SignedDuration = SignedDuration::from_secs(30);
/// Default KV v2 mount.
pub const DEFAULT_KV_MOUNT: &str = "secret";
/// Default field name (KV v2 field, JSON member).
pub const DEFAULT_FIELD: &str = "secret";
/// Default AppRole auth mount.
pub const DEFAULT_APPROLE_MOUNT: &str = "approle";
/// Default Entra ID authority.
pub const DEFAULT_AZURE_AUTHORITY: &str = "https://login.microsoftonline.com";
/// Key Vault REST API version.
pub const AZURE_API_VERSION: &str = "7.4";
/// Placeholders a sink location template may use.
pub const PLACEHOLDERS: [&str; 3] = ["provider", "name", "slot"];

// ---------------------------------------------------------------------
// Raw fields, as written (each with `deny_unknown_fields`).

/// `type = "openbao"` / `"vault"` fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOpenBaoSink {
    /// Server URL, e.g. `https://bao.example.com:8200`.
    pub address: Spanned<String>,
    /// KV v2 mount (default `secret`).
    pub mount: Option<Spanned<String>>,
    /// Secret path inside the mount, with placeholders.
    pub path: Spanned<String>,
    /// Field of the KV entry that holds the secret (default `secret`).
    pub field: Option<Spanned<String>>,
    /// Enterprise/OpenBao namespace (`X-Vault-Namespace`).
    pub namespace: Option<Spanned<String>>,
    /// Token auth: the token.
    pub token: Option<Spanned<SecretRefRaw>>,
    /// AppRole auth: the role id (not a secret, but not public either).
    pub role_id: Option<Spanned<String>>,
    /// AppRole auth: the secret id.
    pub secret_id: Option<Spanned<SecretRefRaw>>,
    /// AppRole auth mount (default `approle`).
    pub approle_mount: Option<Spanned<String>>,
    /// PEM file of CA certificates to trust (besides the system's).
    pub ca_file: Option<Spanned<String>>,
    /// Per-request timeout.
    pub timeout: Option<Spanned<DurationText>>,
}

/// AWS credentials as written (shared by every AWS sink and provider).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAwsCredentials {
    /// Access key id.
    pub access_key_id: Option<Spanned<SecretRefRaw>>,
    /// Secret access key.
    pub secret_access_key: Option<Spanned<SecretRefRaw>>,
    /// Session token (temporary credentials).
    pub session_token: Option<Spanned<SecretRefRaw>>,
}

/// `type = "aws-secretsmanager"` fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAwsSecretsManagerSink {
    /// Region, e.g. `eu-west-1`.
    pub region: Spanned<String>,
    /// Endpoint override (VPC endpoint, or a test server on loopback).
    pub endpoint: Option<Spanned<String>>,
    /// Secret name, with placeholders.
    pub secret_name: Spanned<String>,
    /// Create the secret when it does not exist.
    pub create: Option<bool>,
    /// KMS key for a secret keyrot creates.
    pub kms_key_id: Option<Spanned<String>>,
    /// `raw` or `json`.
    pub format: Option<Spanned<String>>,
    /// JSON member holding the secret (format = "json").
    pub field: Option<Spanned<String>>,
    /// Credentials; the standard AWS environment variables when absent.
    pub access_key_id: Option<Spanned<SecretRefRaw>>,
    /// Ditto.
    pub secret_access_key: Option<Spanned<SecretRefRaw>>,
    /// Ditto.
    pub session_token: Option<Spanned<SecretRefRaw>>,
    /// Per-request timeout.
    pub timeout: Option<Spanned<DurationText>>,
}

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

// ---------------------------------------------------------------------
// Validated settings.

/// `type = "openbao"` or `"vault"`: a KV v2 secrets engine.
#[derive(Clone, Debug)]
pub struct OpenBaoSinkConfig {
    /// `openbao` or `vault`, as written (for messages).
    pub flavor: &'static str,
    /// Server URL, no trailing `/`.
    pub address: String,
    /// KV v2 mount, no surrounding `/`.
    pub mount: String,
    /// Path template inside the mount, no surrounding `/`.
    pub path: String,
    /// Field that holds the secret.
    pub field: String,
    /// Namespace, sent as `X-Vault-Namespace`.
    pub namespace: Option<String>,
    /// How keyrot logs in.
    pub auth: VaultAuth,
    /// Extra CA certificates (PEM).
    pub ca_file: Option<PathBuf>,
    /// Per-request timeout.
    pub timeout: SignedDuration,
}

/// How keyrot authenticates to OpenBao/Vault.
#[derive(Clone, Debug)]
pub enum VaultAuth {
    /// A token (`X-Vault-Token`), renewed while renewable.
    Token(SecretRef),
    /// AppRole login.
    AppRole {
        /// Auth mount (default `approle`).
        mount: String,
        /// Role id.
        role_id: String,
        /// Secret id.
        secret_id: SecretRef,
    },
}

/// AWS credentials: references, or the standard environment variables
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).
#[derive(Clone, Debug)]
pub enum AwsCredentialsConfig {
    /// From the standard environment variables, read when needed.
    Environment,
    /// From secret references.
    Refs {
        /// Access key id.
        access_key_id: SecretRef,
        /// Secret access key.
        secret_access_key: SecretRef,
        /// Session token, for temporary credentials.
        session_token: Option<SecretRef>,
    },
}

/// How a secret is written into a store that holds one string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretFormat {
    /// The secret alone.
    Raw,
    /// A JSON object: the secret under `field`, plus `key_id`,
    /// `rotation_id`, `expires_at` and `provider`.
    Json {
        /// Member that holds the secret.
        field: String,
    },
}

/// `type = "aws-secretsmanager"`.
#[derive(Clone, Debug)]
pub struct AwsSecretsManagerSinkConfig {
    /// Region.
    pub region: String,
    /// Endpoint override, no trailing `/`.
    pub endpoint: Option<String>,
    /// Secret name template.
    pub secret_name: String,
    /// Create the secret when absent.
    pub create: bool,
    /// KMS key for a created secret.
    pub kms_key_id: Option<String>,
    /// What the secret string holds.
    pub format: SecretFormat,
    /// Credentials.
    pub credentials: AwsCredentialsConfig,
    /// Per-request timeout.
    pub timeout: SignedDuration,
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

// ---------------------------------------------------------------------
// Validation.

/// `type = "openbao"` or `"vault"`. `dropped`: a field was already
/// reported and dropped, so a missing counterpart is not reported again.
pub(crate) fn openbao_sink(
    ctx: &mut Ctx<'_>,
    raw: &RawOpenBaoSink,
    flavor: &'static str,
    dropped: bool,
) -> Option<OpenBaoSinkConfig> {
    let address = ctx.http_url(&raw.address, "address", "the token");
    let mount = match &raw.mount {
        None => Some(DEFAULT_KV_MOUNT.to_string()),
        Some(m) => vault_path(ctx, m, "mount", false),
    };
    let path = vault_path(ctx, &raw.path, "path", true);
    let field = match &raw.field {
        None => Some(DEFAULT_FIELD.to_string()),
        Some(f) => ctx.text(f, "field"),
    };
    let namespace = match &raw.namespace {
        None => Some(None),
        Some(n) => vault_path(ctx, n, "namespace", false).map(Some),
    };
    let auth = vault_auth(
        ctx,
        VaultAuthFields {
            token: raw.token.as_ref(),
            role_id: raw.role_id.as_ref(),
            secret_id: raw.secret_id.as_ref(),
            approle_mount: raw.approle_mount.as_ref(),
        },
        &raw.address,
        dropped,
    );
    let ca_file = match &raw.ca_file {
        None => Some(None),
        Some(f) => ctx.path(f, "ca_file").map(Some),
    };
    let timeout = timeout(ctx, &raw.timeout);
    Some(OpenBaoSinkConfig {
        flavor,
        address: address?,
        mount: mount?,
        path: path?,
        field: field?,
        namespace: namespace?,
        auth: auth?,
        ca_file: ca_file?,
        timeout: timeout?,
    })
}

/// keyrot's own OpenBao/Vault auth fields as written; shared by the
/// `openbao` sink and the `openbao-approle` provider.
#[derive(Clone, Copy)]
pub(crate) struct VaultAuthFields<'a> {
    /// `token`.
    pub token: Option<&'a Spanned<SecretRefRaw>>,
    /// `role_id`.
    pub role_id: Option<&'a Spanned<String>>,
    /// `secret_id`.
    pub secret_id: Option<&'a Spanned<SecretRefRaw>>,
    /// `approle_mount`.
    pub approle_mount: Option<&'a Spanned<String>>,
}

/// Token xor AppRole. `anchor` (the entry's `address`) places the error
/// when no auth is given at all; `dropped`: a field was already reported
/// and dropped, so a missing counterpart is not reported again.
pub(crate) fn vault_auth(
    ctx: &mut Ctx<'_>,
    raw: VaultAuthFields<'_>,
    anchor: &Spanned<String>,
    dropped: bool,
) -> Option<VaultAuth> {
    let approle = raw.role_id.is_some() || raw.secret_id.is_some() || raw.approle_mount.is_some();
    match (raw.token, approle) {
        (Some(t), false) => secret_ref(ctx, t).map(VaultAuth::Token),
        (Some(t), true) => {
            ctx.error(
                t.span(),
                "give either `token` or `role_id` with `secret_id` (AppRole), not both",
            );
            None
        }
        (None, false) if dropped => None,
        (None, false) => {
            ctx.error(
                anchor.span(),
                "no auth: give `token = { credential = \"...\" }` or `role_id` with `secret_id` (AppRole)",
            );
            None
        }
        (None, true) => {
            let (Some(role), Some(sid)) = (raw.role_id, raw.secret_id) else {
                if dropped {
                    return None;
                }
                let at = raw
                    .role_id
                    .map(Spanned::span)
                    .or_else(|| raw.secret_id.map(Spanned::span))
                    .or_else(|| raw.approle_mount.map(Spanned::span))
                    .unwrap_or_else(|| anchor.span());
                ctx.error(at, "AppRole auth needs both `role_id` and `secret_id`");
                return None;
            };
            let mount = match raw.approle_mount {
                None => Some(DEFAULT_APPROLE_MOUNT.to_string()),
                Some(m) => vault_path(ctx, m, "approle_mount", false),
            };
            let role_id = ctx.text(role, "role_id");
            let secret_id = secret_ref(ctx, sid);
            Some(VaultAuth::AppRole {
                mount: mount?,
                role_id: role_id?,
                secret_id: secret_id?,
            })
        }
    }
}

/// A Vault path (mount, path, namespace): segments of printable
/// characters without `..`, kept without surrounding `/`; placeholders
/// allowed only where `template` is true.
pub(crate) fn vault_path(
    ctx: &mut Ctx<'_>,
    raw: &Spanned<String>,
    field: &str,
    template: bool,
) -> Option<String> {
    let v = ctx.text(raw, field)?;
    let trimmed = v.trim_matches('/');
    let bad = trimmed.is_empty()
        || trimmed
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        || trimmed
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '%'));
    if bad {
        ctx.error(
            raw.span(),
            format!(
                "`{field}` {v:?} is not a path: `/`-separated segments, no empty, `.` or `..` segment, no spaces, `?`, `#` or `%`"
            ),
        );
        return None;
    }
    if template {
        check_placeholders(ctx, raw, field)?;
    } else if trimmed.contains(['{', '}']) {
        ctx.error(raw.span(), format!("`{field}` takes no placeholders"));
        return None;
    }
    Some(trimmed.to_string())
}

/// `type = "aws-secretsmanager"`.
pub(crate) fn aws_secretsmanager_sink(
    ctx: &mut Ctx<'_>,
    raw: &RawAwsSecretsManagerSink,
    dropped: bool,
) -> Option<AwsSecretsManagerSinkConfig> {
    let region = aws_region(ctx, &raw.region);
    let endpoint = match &raw.endpoint {
        None => Some(None),
        Some(e) => ctx.http_url(e, "endpoint", "AWS credentials").map(Some),
    };
    let secret_name = aws_secret_name(ctx, &raw.secret_name);
    let kms_key_id = match &raw.kms_key_id {
        None => Some(None),
        Some(k) => ctx.text(k, "kms_key_id").map(Some),
    };
    let format = secret_format(ctx, &raw.format, &raw.field);
    let credentials = aws_credentials(
        ctx,
        &RawAwsCredentials {
            access_key_id: raw.access_key_id.clone(),
            secret_access_key: raw.secret_access_key.clone(),
            session_token: raw.session_token.clone(),
        },
        &raw.region,
        dropped,
    );
    let timeout = timeout(ctx, &raw.timeout);
    Some(AwsSecretsManagerSinkConfig {
        region: region?,
        endpoint: endpoint?,
        secret_name: secret_name?,
        create: raw.create.unwrap_or(false),
        kms_key_id: kms_key_id?,
        format: format?,
        credentials: credentials?,
        timeout: timeout?,
    })
}

/// An AWS region name such as `eu-west-1`.
pub(crate) fn aws_region(ctx: &mut Ctx<'_>, raw: &Spanned<String>) -> Option<String> {
    let v = ctx.text(raw, "region")?;
    let ok = v
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && v.contains('-');
    if !ok {
        ctx.error(
            raw.span(),
            format!("`region` {v:?} is not an AWS region (e.g. \"eu-west-1\")"),
        );
        return None;
    }
    Some(v)
}

/// Credentials: both of `access_key_id` and `secret_access_key` (and
/// optionally `session_token`), or none (the environment). `at` places the
/// error when a half is missing; `dropped`: a field was already reported
/// and dropped (then a missing half is not reported again).
pub(crate) fn aws_credentials(
    ctx: &mut Ctx<'_>,
    raw: &RawAwsCredentials,
    at: &Spanned<String>,
    dropped: bool,
) -> Option<AwsCredentialsConfig> {
    match (&raw.access_key_id, &raw.secret_access_key) {
        (None, None) => {
            if let Some(t) = &raw.session_token {
                ctx.error(
                    t.span(),
                    "`session_token` needs `access_key_id` and `secret_access_key`",
                );
                return None;
            }
            Some(AwsCredentialsConfig::Environment)
        }
        (Some(a), Some(s)) => {
            let access_key_id = secret_ref(ctx, a);
            let secret_access_key = secret_ref(ctx, s);
            let session_token = match &raw.session_token {
                None => Some(None),
                Some(t) => secret_ref(ctx, t).map(Some),
            };
            Some(AwsCredentialsConfig::Refs {
                access_key_id: access_key_id?,
                secret_access_key: secret_access_key?,
                session_token: session_token?,
            })
        }
        _ if dropped => None,
        (a, s) => {
            let span = a
                .as_ref()
                .map(Spanned::span)
                .or_else(|| s.as_ref().map(Spanned::span))
                .unwrap_or_else(|| at.span());
            ctx.error(
                span,
                "give both `access_key_id` and `secret_access_key`, or neither (then the AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN environment variables are used)",
            );
            None
        }
    }
}

/// A Secrets Manager name template: 1–512 of letters, digits and
/// `/_+=.@-`, plus placeholders.
fn aws_secret_name(ctx: &mut Ctx<'_>, raw: &Spanned<String>) -> Option<String> {
    let v = ctx.text(raw, "secret_name")?;
    check_placeholders(ctx, raw, "secret_name")?;
    let bare = strip_placeholders(&v);
    let ok = v.len() <= 512
        && bare
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c));
    if !ok {
        ctx.error(
            raw.span(),
            format!(
                "`secret_name` {v:?}: a Secrets Manager name has at most 512 letters, digits and `/_+=.@-`"
            ),
        );
        return None;
    }
    Some(v)
}

/// `format` (`raw` or `json`) and the `field` that only `json` uses.
fn secret_format(
    ctx: &mut Ctx<'_>,
    format: &Option<Spanned<String>>,
    field: &Option<Spanned<String>>,
) -> Option<SecretFormat> {
    let json = match format {
        None => false,
        Some(f) => match f.get_ref().as_str() {
            "raw" => false,
            "json" => true,
            other => {
                let hint = did_you_mean(other, ["raw", "json"]);
                ctx.error(
                    f.span(),
                    format!("unknown format {other:?}{hint}: use \"raw\" or \"json\""),
                );
                return None;
            }
        },
    };
    match (json, field) {
        (false, Some(f)) => {
            ctx.error(f.span(), "`field` is only used with format = \"json\"");
            None
        }
        (false, None) => Some(SecretFormat::Raw),
        (true, None) => Some(SecretFormat::Json {
            field: DEFAULT_FIELD.to_string(),
        }),
        (true, Some(f)) => ctx
            .text(f, "field")
            .map(|field| SecretFormat::Json { field }),
    }
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

/// `timeout`, default [`DEFAULT_SINK_TIMEOUT`].
pub(crate) fn timeout(
    ctx: &mut Ctx<'_>,
    raw: &Option<Spanned<DurationText>>,
) -> Option<SignedDuration> {
    match raw {
        None => Some(DEFAULT_SINK_TIMEOUT),
        Some(t) => ctx.positive(t, "timeout"),
    }
}

/// Checks `{...}` placeholders in a location template.
pub(crate) fn check_placeholders(
    ctx: &mut Ctx<'_>,
    raw: &Spanned<String>,
    field: &str,
) -> Option<()> {
    let mut rest = raw.get_ref().as_str();
    while let Some(open) = rest.find(['{', '}']) {
        let after = &rest[open + 1..];
        let close = after.find('}').filter(|_| rest[open..].starts_with('{'));
        let Some(close) = close else {
            ctx.error(raw.span(), format!("unbalanced `{{` or `}}` in `{field}`"));
            return None;
        };
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            let hint = did_you_mean(name, PLACEHOLDERS);
            ctx.error(
                raw.span(),
                format!(
                    "unknown placeholder {{{name}}}{hint} in `{field}`: use {{provider}}, {{name}} or {{slot}}"
                ),
            );
            return None;
        }
        rest = &after[close + 1..];
    }
    Some(())
}

/// `template` without its placeholders (for character checks).
fn strip_placeholders(template: &str) -> String {
    let mut out = template.to_string();
    for p in PLACEHOLDERS {
        out = out.replace(&format!("{{{p}}}"), "");
    }
    out
}

// ---------------------------------------------------------------------
// `keyrot check`: secret references and summary lines.

/// The secret references of one sink.
pub(crate) fn secret_uses<'a>(name: &str, kind: &'a super::SinkKind) -> Vec<SecretUse<'a>> {
    let owner = format!("sink {name:?}");
    let one = |field: &'static str, secret: &'a SecretRef| SecretUse {
        owner: owner.clone(),
        field,
        secret,
    };
    match kind {
        super::SinkKind::File(_) | super::SinkKind::Exec(_) => Vec::new(),
        super::SinkKind::OpenBao(c) => match &c.auth {
            VaultAuth::Token(t) => vec![one("token", t)],
            VaultAuth::AppRole { secret_id, .. } => vec![one("secret_id", secret_id)],
        },
        super::SinkKind::AwsSecretsManager(c) => aws_secret_uses(&owner, &c.credentials),
        super::SinkKind::AzureKeyVault(c) => vec![one("client_secret", &c.client_secret)],
    }
}

/// The secret references of AWS credentials.
pub(crate) fn aws_secret_uses<'a>(
    owner: &str,
    creds: &'a AwsCredentialsConfig,
) -> Vec<SecretUse<'a>> {
    let AwsCredentialsConfig::Refs {
        access_key_id,
        secret_access_key,
        session_token,
    } = creds
    else {
        return Vec::new();
    };
    let mut out = vec![
        SecretUse {
            owner: owner.to_string(),
            field: "access_key_id",
            secret: access_key_id,
        },
        SecretUse {
            owner: owner.to_string(),
            field: "secret_access_key",
            secret: secret_access_key,
        },
    ];
    if let Some(t) = session_token {
        out.push(SecretUse {
            owner: owner.to_string(),
            field: "session_token",
            secret: t,
        });
    }
    out
}

/// A sink's line in the `keyrot check` summary (without indent); `None`
/// for types the summary renders itself.
pub(crate) fn summary_line(name: &str, kind: &super::SinkKind) -> Option<String> {
    let line = match kind {
        super::SinkKind::File(_) => return None,
        super::SinkKind::OpenBao(c) => {
            let auth = match &c.auth {
                VaultAuth::Token(_) => "token auth".to_string(),
                VaultAuth::AppRole { mount, .. } => format!("approle auth at {mount}"),
            };
            let ns = c
                .namespace
                .as_deref()
                .map(|n| format!(", namespace {n}"))
                .unwrap_or_default();
            format!(
                "{name} ({}, {}, {}/data/{} field {}{ns}, {auth}, timeout {})",
                c.flavor,
                c.address,
                c.mount,
                c.path,
                c.field,
                format_duration(c.timeout)
            )
        }
        super::SinkKind::AwsSecretsManager(c) => {
            let creds = match c.credentials {
                AwsCredentialsConfig::Environment => "credentials from the environment",
                AwsCredentialsConfig::Refs { .. } => "credentials from references",
            };
            format!(
                "{name} (aws-secretsmanager, {}{}, {}{}, {}, {creds}, timeout {})",
                c.region,
                c.endpoint
                    .as_deref()
                    .map(|e| format!(" via {e}"))
                    .unwrap_or_default(),
                c.secret_name,
                if c.create { ", created if absent" } else { "" },
                match &c.format {
                    SecretFormat::Raw => "raw".to_string(),
                    SecretFormat::Json { field } => format!("json field {field}"),
                },
                format_duration(c.timeout)
            )
        }
        super::SinkKind::AzureKeyVault(c) => format!(
            "{name} (azure-keyvault, {}, secret {}, tenant {}, client {}, timeout {})",
            c.vault_url,
            c.secret_name,
            c.tenant_id,
            c.client_id,
            format_duration(c.timeout)
        ),
        super::SinkKind::Exec(c) => format!(
            "{name} (exec, {}{}, timeout {})",
            c.command.join(" "),
            if c.read_command.is_some() {
                ", with read-back"
            } else {
                ", no read-back"
            },
            format_duration(c.timeout)
        ),
    };
    Some(line)
}
