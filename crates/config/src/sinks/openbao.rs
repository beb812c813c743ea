//! `type = "openbao"` / `"vault"` (KV v2): its fields, its settings, and
//! keyrot's own OpenBao/Vault auth and paths, shared with the
//! `openbao-approle` provider.

use std::path::PathBuf;

use jiff::SignedDuration;
use serde::Deserialize;
use toml::Spanned;

use super::{DEFAULT_FIELD, check_placeholders, timeout};
use crate::ctx::Ctx;
use crate::raw::{DurationText, SecretRefRaw};
use crate::secret::secret_ref;
use crate::secret_ref::SecretRef;

/// Default KV v2 mount.
pub const DEFAULT_KV_MOUNT: &str = "secret";
/// Default AppRole auth mount.
pub const DEFAULT_APPROLE_MOUNT: &str = "approle";

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
