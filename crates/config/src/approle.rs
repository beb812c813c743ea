//! `[[provider]] type = "openbao-approle"`: the AppRole secret-ids of the
//! roles of one OpenBao/Vault AppRole auth mount. Raw fields as written,
//! the validated settings, the secret references (for `keyrot check`) and
//! the summary line. keyrot's own connection and auth (`address`,
//! `namespace`, `token` or `role_id`/`secret_id`/`approle_mount`,
//! `ca_file`, `timeout`) are validated by the same code as the `openbao`
//! sink's. The provider itself is `provider/openbao_approle.rs`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use jiff::SignedDuration;
use serde::Deserialize;
use toml::Spanned;

// Through the crate root, not `types`: `ProviderKind` there holds this
// module's settings, and the two would import each other.
use super::ProviderConfig;
use super::ctx::Ctx;
use super::raw::DurationText;
use super::raw::SecretRefRaw;
use super::secret::SecretUse;
use super::sinks::{
    DEFAULT_APPROLE_MOUNT, DEFAULT_SINK_TIMEOUT, VaultAuth, VaultAuthFields, vault_auth, vault_path,
};
use keyrot_core::policy::format_duration;

/// `type = "openbao-approle"` fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOpenBaoAppRoleProvider {
    /// Server URL, e.g. `https://bao.example.com:8200`.
    pub address: Spanned<String>,
    /// AppRole auth mount whose roles' secret-ids are managed (default `approle`).
    pub mount: Option<Spanned<String>>,
    /// Roles to manage; every role of the mount when absent.
    pub roles: Option<Spanned<Vec<Spanned<String>>>>,
    /// Enterprise/OpenBao namespace (`X-Vault-Namespace`).
    pub namespace: Option<Spanned<String>>,
    /// keyrot's token auth: the token.
    pub token: Option<Spanned<SecretRefRaw>>,
    /// keyrot's AppRole auth: the role id.
    pub role_id: Option<Spanned<String>>,
    /// keyrot's AppRole auth: the secret id.
    pub secret_id: Option<Spanned<SecretRefRaw>>,
    /// keyrot's AppRole auth mount (default `approle`).
    pub approle_mount: Option<Spanned<String>>,
    /// PEM file of CA certificates to trust (besides the system's).
    pub ca_file: Option<Spanned<String>>,
    /// Per-request timeout.
    pub timeout: Option<Spanned<DurationText>>,
}

/// `type = "openbao-approle"` settings.
#[derive(Clone, Debug)]
pub struct OpenBaoAppRoleProviderConfig {
    /// Server URL, no trailing `/`.
    pub address: String,
    /// AppRole auth mount whose roles are managed, no surrounding `/`.
    pub mount: String,
    /// Roles to manage, sorted; `None`: every role of the mount.
    pub roles: Option<Vec<String>>,
    /// Namespace, sent as `X-Vault-Namespace`.
    pub namespace: Option<String>,
    /// How keyrot itself logs in.
    pub auth: VaultAuth,
    /// Extra CA certificates (PEM).
    pub ca_file: Option<PathBuf>,
    /// Per-request timeout.
    pub timeout: SignedDuration,
}

/// Validates `type = "openbao-approle"`: every field checked, every
/// problem recorded.
/// `dropped`: a field was already reported and dropped (then a missing
/// auth counterpart is not reported again).
pub(crate) fn validate(
    ctx: &mut Ctx<'_>,
    raw: &RawOpenBaoAppRoleProvider,
    dropped: bool,
) -> Option<OpenBaoAppRoleProviderConfig> {
    let address = ctx.http_url(&raw.address, "address", "the token");
    let mount = match &raw.mount {
        None => Some(DEFAULT_APPROLE_MOUNT.to_string()),
        Some(m) => vault_path(ctx, m, "mount", false),
    };
    let roles = match &raw.roles {
        None => Some(None),
        Some(r) => roles(ctx, r).map(Some),
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
    let timeout = match &raw.timeout {
        None => Some(DEFAULT_SINK_TIMEOUT),
        Some(t) => ctx.positive(t, "timeout"),
    };
    Some(OpenBaoAppRoleProviderConfig {
        address: address?,
        mount: mount?,
        roles: roles?,
        namespace: namespace?,
        auth: auth?,
        ca_file: ca_file?,
        timeout: timeout?,
    })
}

/// True when `name` can be an AppRole role name: letters, digits, `_`,
/// `-`, `.` and `@` (what OpenBao and Vault accept), at most 255.
pub fn role_name_ok(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
}

/// `roles`: a non-empty list of distinct role names, sorted.
fn roles(ctx: &mut Ctx<'_>, raw: &Spanned<Vec<Spanned<String>>>) -> Option<Vec<String>> {
    if raw.get_ref().is_empty() {
        ctx.error(
            raw.span(),
            "`roles` is empty: name at least one role, or leave `roles` out to manage every role of the mount",
        );
        return None;
    }
    let mut seen = BTreeSet::new();
    let mut ok = true;
    for r in raw.get_ref() {
        let name = r.get_ref();
        if !role_name_ok(name) {
            ctx.error(
                r.span(),
                format!(
                    "`roles`: {name:?} is not an AppRole role name (letters, digits, `_`, `-`, `.` and `@`)"
                ),
            );
            ok = false;
        } else if !seen.insert(name.clone()) {
            ctx.error(r.span(), format!("`roles`: {name:?} is listed twice"));
            ok = false;
        }
    }
    ok.then(|| seen.into_iter().collect())
}

/// The secret references of one provider, for `keyrot check`.
pub(crate) fn secret_uses<'a>(
    name: &str,
    cfg: &'a OpenBaoAppRoleProviderConfig,
) -> Vec<SecretUse<'a>> {
    let owner = format!("provider {name:?}");
    let (field, secret) = match &cfg.auth {
        VaultAuth::Token(t) => ("token", t),
        VaultAuth::AppRole { secret_id, .. } => ("secret_id", secret_id),
    };
    vec![SecretUse {
        owner,
        field,
        secret,
    }]
}

/// The provider's line in the `keyrot check` summary (without indent).
pub(crate) fn summary_line(p: &ProviderConfig, cfg: &OpenBaoAppRoleProviderConfig) -> String {
    let roles = match &cfg.roles {
        None => "every role".to_string(),
        Some(r) => format!("roles {}", r.join(", ")),
    };
    let auth = match &cfg.auth {
        VaultAuth::Token(_) => "token auth".to_string(),
        VaultAuth::AppRole { mount, .. } => format!("approle auth at {mount}"),
    };
    let ns = cfg
        .namespace
        .as_deref()
        .map(|n| format!(", namespace {n}"))
        .unwrap_or_default();
    format!(
        "{} (openbao-approle, {} at once, {}, {roles} of auth/{}{ns}, {auth}, timeout {})",
        p.name,
        p.max_concurrent,
        cfg.address,
        cfg.mount,
        format_duration(cfg.timeout)
    )
}

#[cfg(test)]
mod tests {
    use super::super::ProviderKind;
    use super::super::tests::{assert_one, errors, ok};
    use super::*;

    fn provider(body: &str) -> String {
        format!("[[provider]]\nname = \"bao\"\ntype = \"openbao-approle\"\n{body}\n")
    }

    fn cfg(body: &str) -> OpenBaoAppRoleProviderConfig {
        let c = ok(&provider(body));
        match &c.providers[0].kind {
            ProviderKind::OpenBaoAppRole(a) => a.clone(),
            other => panic!("not openbao-approle: {other:?}"),
        }
    }

    #[test]
    fn defaults_and_every_option_are_read() {
        let c = cfg("address = \"https://bao.example.com:8200/\"\ntoken = { env = \"BAO_TOKEN\" }");
        assert_eq!(c.address, "https://bao.example.com:8200");
        assert_eq!(c.mount, "approle");
        assert_eq!(c.roles, None);
        assert_eq!(c.namespace, None);
        assert!(matches!(c.auth, VaultAuth::Token(_)));
        assert_eq!(c.timeout, DEFAULT_SINK_TIMEOUT);

        let c = cfg(r#"address = "http://127.0.0.1:8200"
mount = "/ci-approle/"
roles = ["deploy", "ci.bot@team"]
namespace = "team-a"
role_id = "keyrot-role"
secret_id = { credential = "bao-secret-id" }
approle_mount = "keyrot-login"
ca_file = "/etc/keyrot/bao-ca.pem"
timeout = "5s""#);
        assert_eq!(c.mount, "ci-approle");
        assert_eq!(
            c.roles,
            Some(vec!["ci.bot@team".to_string(), "deploy".to_string()])
        );
        assert_eq!(c.namespace.as_deref(), Some("team-a"));
        match &c.auth {
            VaultAuth::AppRole { mount, role_id, .. } => {
                assert_eq!(mount, "keyrot-login");
                assert_eq!(role_id, "keyrot-role");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.ca_file, Some(PathBuf::from("/etc/keyrot/bao-ca.pem")));
        assert_eq!(c.timeout, SignedDuration::from_secs(5));
    }

    #[test]
    fn errors_point_at_the_field() {
        assert_one(
            &provider("address = \"https://b\""),
            "4:11: no auth: give `token",
        );
        assert_one(
            &provider("address = \"https://b\"\ntoken = { env = \"T\" }\nrole_id = \"r\""),
            "5:9: give either `token` or `role_id`",
        );
        assert_one(
            &provider("address = \"https://b\"\nrole_id = \"r\""),
            "5:11: AppRole auth needs both `role_id` and `secret_id`",
        );
        assert_one(
            &provider("address = \"http://bao.example.com\"\ntoken = { env = \"T\" }"),
            "4:11: `address` \"http://bao.example.com\": plain http would send the token unencrypted",
        );
        assert_one(
            &provider("address = \"https://b\"\ntoken = { env = \"T\" }\nmount = \"a/../b\""),
            "6:9: `mount` \"a/../b\" is not a path",
        );
        assert_one(
            &provider("address = \"https://b\"\ntoken = { env = \"T\" }\nroles = []"),
            "6:9: `roles` is empty",
        );
        assert_one(
            &provider(
                "address = \"https://b\"\ntoken = { env = \"T\" }\nroles = [\"ci\", \"a/b\"]",
            ),
            "6:16: `roles`: \"a/b\" is not an AppRole role name",
        );
        assert_one(
            &provider("address = \"https://b\"\ntoken = { env = \"T\" }\nroles = [\"ci\", \"ci\"]"),
            "6:16: `roles`: \"ci\" is listed twice",
        );
        let e = errors(&provider(
            "address = \"https://b\"\ntoken = { env = \"T\" }\nrole = \"ci\"",
        ));
        assert!(
            e.iter()
                .any(|e| e.contains("unknown field `role` for provider type \"openbao-approle\"")),
            "{e:?}"
        );
    }

    #[test]
    fn check_lists_the_auth_secret_and_summarises() {
        let c = ok(&provider(
            "address = \"https://bao.example.com\"\nrole_id = \"r\"\nsecret_id = { credential = \"sid\" }\nroles = [\"ci\"]\nnamespace = \"ns\"",
        ));
        let p = &c.providers[0];
        let ProviderKind::OpenBaoAppRole(a) = &p.kind else {
            panic!("{:?}", p.kind);
        };
        let uses = secret_uses(&p.name, a);
        assert_eq!(uses.len(), 1);
        assert_eq!(uses[0].owner, "provider \"bao\"");
        assert_eq!(uses[0].field, "secret_id");
        assert_eq!(
            summary_line(p, a),
            format!(
                "bao (openbao-approle, {} at once, https://bao.example.com, roles ci of auth/approle, namespace ns, approle auth at approle, timeout 30s)",
                p.max_concurrent
            )
        );
    }
}
