//! `[[provider]] type = "aws-iam"`: access keys of AWS IAM users. Raw
//! fields as written, the validated settings (credentials as the AWS sinks
//! take them, the STS region, endpoint overrides, which users keyrot may
//! touch, and how it makes room under IAM's two-keys-per-user limit), the
//! secret references (for `keyrot check`) and the summary line. The
//! provider itself is in `provider/aws_iam.rs`.

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
use super::sinks::{AwsCredentialsConfig, RawAwsCredentials, aws_credentials, aws_region};
use keyrot_core::policy::format_duration;

/// Default `region` (where STS is called; IAM itself is global).
pub const DEFAULT_REGION: &str = "us-east-1";
/// Default `timeout`.
pub const DEFAULT_TIMEOUT: SignedDuration = SignedDuration::from_secs(30);

/// `type = "aws-iam"` fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAwsIamProvider {
    /// Region for STS (and the partition: `cn-*`, `us-gov-*`).
    pub region: Option<Spanned<String>>,
    /// IAM endpoint override (a VPC endpoint, or a test server).
    pub iam_endpoint: Option<Spanned<String>>,
    /// STS endpoint override.
    pub sts_endpoint: Option<Spanned<String>>,
    /// Credentials; the standard AWS environment variables when absent.
    pub access_key_id: Option<Spanned<SecretRefRaw>>,
    /// Ditto.
    pub secret_access_key: Option<Spanned<SecretRefRaw>>,
    /// Ditto.
    pub session_token: Option<Spanned<SecretRefRaw>>,
    /// Set the old key Inactive at the start of the overlap.
    pub deactivate_first: Option<bool>,
    /// Delete an Inactive, non-current key when a user has no free slot.
    pub delete_inactive: Option<bool>,
    /// Only these users.
    pub users: Option<Spanned<Vec<Spanned<String>>>>,
    /// Only users under this IAM path.
    pub path_prefix: Option<Spanned<String>>,
    /// Per-request timeout.
    pub timeout: Option<Spanned<DurationText>>,
}

/// Which IAM users a provider lists and may change (validated form of
/// `users` xor `path_prefix`).
#[derive(Clone, Debug, PartialEq, Eq)]
enum IamUserScope {
    /// Every user of the account (`ListUsers`).
    All,
    /// Exactly these users.
    Users(Vec<String>),
    /// Users whose IAM path starts with this prefix (`/team/`).
    PathPrefix(String),
}

/// `type = "aws-iam"` settings.
#[derive(Clone, Debug)]
pub struct AwsIamProviderConfig {
    /// Region STS is called in; its partition picks the IAM endpoint.
    pub region: String,
    /// IAM endpoint override, no trailing `/`.
    pub iam_endpoint: Option<String>,
    /// STS endpoint override, no trailing `/`.
    pub sts_endpoint: Option<String>,
    /// Credentials keyrot manages the keys with.
    pub credentials: AwsCredentialsConfig,
    /// Set the old key Inactive when the overlap starts, delete it when it
    /// ends.
    pub deactivate_first: bool,
    /// Delete an Inactive key that is not the current one when the user
    /// already has two keys.
    pub delete_inactive: bool,
    /// Only these users are listed and changed (empty: no list; at most
    /// one of `users` and `path_prefix` is set).
    pub users: Vec<String>,
    /// Only users whose IAM path starts with this (`/ci/`).
    pub path_prefix: Option<String>,
    /// Per-request timeout.
    pub timeout: SignedDuration,
}

/// Validates `type = "aws-iam"`.
/// `dropped`: a field was already reported and dropped (then a missing
/// credential half is not reported again).
pub(crate) fn validate(
    ctx: &mut Ctx<'_>,
    raw: &RawAwsIamProvider,
    dropped: bool,
) -> Option<AwsIamProviderConfig> {
    let region = match &raw.region {
        None => Some(DEFAULT_REGION.to_string()),
        Some(r) => aws_region(ctx, r),
    };
    let iam_endpoint = endpoint(ctx, &raw.iam_endpoint, "iam_endpoint");
    let sts_endpoint = endpoint(ctx, &raw.sts_endpoint, "sts_endpoint");
    // Only used to place an error when one half of the pair is missing,
    // which always names a field that is present.
    let at = raw
        .region
        .clone()
        .unwrap_or_else(|| Spanned::new(0..0, String::new()));
    let credentials = aws_credentials(
        ctx,
        &RawAwsCredentials {
            access_key_id: raw.access_key_id.clone(),
            secret_access_key: raw.secret_access_key.clone(),
            session_token: raw.session_token.clone(),
        },
        &at,
        dropped,
    );
    let (users, path_prefix) = match scope(ctx, raw) {
        Some(IamUserScope::All) => (Some(Vec::new()), Some(None)),
        Some(IamUserScope::Users(u)) => (Some(u), Some(None)),
        Some(IamUserScope::PathPrefix(p)) => (Some(Vec::new()), Some(Some(p))),
        None => (None, None),
    };
    let timeout = match &raw.timeout {
        None => Some(DEFAULT_TIMEOUT),
        Some(t) => ctx.positive(t, "timeout"),
    };
    Some(AwsIamProviderConfig {
        region: region?,
        iam_endpoint: iam_endpoint?,
        sts_endpoint: sts_endpoint?,
        credentials: credentials?,
        deactivate_first: raw.deactivate_first.unwrap_or(false),
        delete_inactive: raw.delete_inactive.unwrap_or(false),
        users: users?,
        path_prefix: path_prefix?,
        timeout: timeout?,
    })
}

/// An optional endpoint override (https, or http to loopback).
fn endpoint(
    ctx: &mut Ctx<'_>,
    raw: &Option<Spanned<String>>,
    field: &str,
) -> Option<Option<String>> {
    match raw {
        None => Some(None),
        Some(e) => ctx.http_url(e, field, "AWS credentials").map(Some),
    }
}

/// `users` xor `path_prefix`, or neither (every user of the account).
fn scope(ctx: &mut Ctx<'_>, raw: &RawAwsIamProvider) -> Option<IamUserScope> {
    match (&raw.users, &raw.path_prefix) {
        (Some(u), Some(_)) => {
            ctx.error(
                u.span(),
                "give `users` or `path_prefix`, not both (list the users, or bound them by their IAM path)",
            );
            None
        }
        (None, None) => Some(IamUserScope::All),
        (Some(u), None) => users(ctx, u).map(IamUserScope::Users),
        (None, Some(p)) => path_prefix(ctx, p).map(IamUserScope::PathPrefix),
    }
}

/// `users`: at least one, each an IAM user name, none twice.
fn users(ctx: &mut Ctx<'_>, raw: &Spanned<Vec<Spanned<String>>>) -> Option<Vec<String>> {
    if raw.get_ref().is_empty() {
        ctx.error(
            raw.span(),
            "`users` needs at least one user name (leave it out to manage every user)",
        );
        return None;
    }
    let mut out: Vec<String> = Vec::new();
    let mut ok = true;
    for u in raw.get_ref() {
        let v = u.get_ref();
        if !user_name_ok(v) {
            ctx.error(
                u.span(),
                format!("{v:?} is not an IAM user name (1 to 64 letters, digits and `+=,.@_-`)"),
            );
            ok = false;
        } else if out.contains(v) {
            ctx.error(u.span(), format!("user {v:?} is listed twice"));
            ok = false;
        } else {
            out.push(v.clone());
        }
    }
    ok.then_some(out)
}

/// True for a valid IAM user name: 1–64 of letters, digits and `+=,.@_-`.
fn user_name_ok(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
}

/// `path_prefix`: an IAM path, `/` alone or `/a/b/`.
fn path_prefix(ctx: &mut Ctx<'_>, raw: &Spanned<String>) -> Option<String> {
    let v = raw.get_ref();
    let ok = v.starts_with('/')
        && v.ends_with('/')
        && v.len() <= 512
        && !v.contains("//")
        && v.chars().all(|c| ('!'..='~').contains(&c));
    if !ok {
        ctx.error(
            raw.span(),
            format!(
                "`path_prefix` {v:?} is not an IAM path: it starts and ends with `/` (\"/\", \"/ci/\", \"/team/app/\"), without spaces or empty segments"
            ),
        );
        return None;
    }
    Some(v.clone())
}

/// The secret references of one provider, for `keyrot check`.
pub(crate) fn secret_uses<'a>(name: &str, cfg: &'a AwsIamProviderConfig) -> Vec<SecretUse<'a>> {
    super::sinks::aws_secret_uses(&format!("provider {name:?}"), &cfg.credentials)
}

/// The provider's line in the `keyrot check` summary (without indent).
pub(crate) fn summary_line(p: &ProviderConfig, cfg: &AwsIamProviderConfig) -> String {
    let scope = match (&cfg.path_prefix, cfg.users.is_empty()) {
        (Some(prefix), _) => format!("users under {prefix}"),
        (None, true) => "every user".to_string(),
        (None, false) => format!("users {}", cfg.users.join(", ")),
    };
    let via = |what: &str, e: &Option<String>| {
        e.as_deref()
            .map(|e| format!(", {what} via {e}"))
            .unwrap_or_default()
    };
    let creds = match cfg.credentials {
        AwsCredentialsConfig::Environment => "credentials from the environment",
        AwsCredentialsConfig::Refs { .. } => "credentials from references",
    };
    let mut flags = String::new();
    if cfg.deactivate_first {
        flags.push_str(", old key inactive during the overlap");
    }
    if cfg.delete_inactive {
        flags.push_str(", deletes an inactive key to make room");
    }
    format!(
        "{} (aws-iam, {} at once, {scope}, sts in {}{}{}{flags}, {creds}, timeout {})",
        p.name,
        p.max_concurrent,
        cfg.region,
        via("iam", &cfg.iam_endpoint),
        via("sts", &cfg.sts_endpoint),
        format_duration(cfg.timeout)
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::secret_ref::SecretRef;
    use crate::{ProviderKind, load_str, secret_refs, summary};

    fn provider(body: &str) -> String {
        format!("[[provider]]\nname = \"iam\"\ntype = \"aws-iam\"\n{body}")
    }

    fn load(text: &str) -> Result<crate::Config, Vec<String>> {
        load_str(Path::new("/etc/keyrot/keyrot.toml"), text)
            .map_err(|e| e.diagnostics.iter().map(ToString::to_string).collect())
    }

    fn iam(text: &str) -> AwsIamProviderConfig {
        let cfg = load(text).unwrap_or_else(|e| panic!("{e:#?}"));
        let ProviderKind::AwsIam(c) = &cfg.providers[0].kind else {
            panic!("expected an aws-iam provider");
        };
        c.clone()
    }

    #[test]
    fn every_field_is_read() {
        let c = iam(&provider(
            "region = \"eu-west-1\"\n\
             iam_endpoint = \"http://127.0.0.1:5000/\"\n\
             sts_endpoint = \"https://sts.eu-west-1.amazonaws.com\"\n\
             access_key_id = { credential = \"aws-id\" }\n\
             secret_access_key = { file = \"/etc/keyrot/aws-secret\" }\n\
             session_token = { env = \"AWS_TOKEN\" }\n\
             deactivate_first = true\n\
             delete_inactive = true\n\
             users = [\"deploy-bot\", \"ci@example.com\"]\n\
             timeout = \"5s\"\n",
        ));
        assert_eq!(c.region, "eu-west-1");
        assert_eq!(c.iam_endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(
            c.sts_endpoint.as_deref(),
            Some("https://sts.eu-west-1.amazonaws.com")
        );
        let AwsCredentialsConfig::Refs {
            access_key_id,
            secret_access_key,
            session_token,
        } = &c.credentials
        else {
            panic!("expected references");
        };
        assert_eq!(access_key_id, &SecretRef::Credential("aws-id".into()));
        assert_eq!(
            secret_access_key,
            &SecretRef::File("/etc/keyrot/aws-secret".into())
        );
        assert_eq!(session_token, &Some(SecretRef::Env("AWS_TOKEN".into())));
        assert!(c.deactivate_first && c.delete_inactive);
        assert_eq!(c.users, ["deploy-bot", "ci@example.com"]);
        assert_eq!(c.path_prefix, None);
        assert_eq!(c.timeout, SignedDuration::from_secs(5));
    }

    #[test]
    fn defaults_and_the_check_summary() {
        let text = provider("path_prefix = \"/ci/\"\n");
        let c = iam(&text);
        assert_eq!(c.region, DEFAULT_REGION);
        assert_eq!(c.iam_endpoint, None);
        assert!(matches!(c.credentials, AwsCredentialsConfig::Environment));
        assert!(!c.deactivate_first && !c.delete_inactive);
        assert!(c.users.is_empty());
        assert_eq!(c.path_prefix.as_deref(), Some("/ci/"));
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        let cfg = load(&text).unwrap();
        assert!(secret_refs(&cfg).is_empty());
        let s = summary(&cfg, "2026-11-23T12:00:00Z".parse().unwrap());
        assert!(
            s.contains(
                "iam (aws-iam, 4 at once, users under /ci/, sts in us-east-1, credentials from the environment, timeout 30s)"
            ),
            "{s}"
        );
        let cfg = load(&provider(
            "access_key_id = { credential = \"a\" }\nsecret_access_key = { credential = \"s\" }\n",
        ))
        .unwrap();
        let uses: Vec<_> = secret_refs(&cfg)
            .iter()
            .map(|u| format!("{} {}", u.owner, u.field))
            .collect();
        assert_eq!(
            uses,
            [
                "provider \"iam\" access_key_id",
                "provider \"iam\" secret_access_key"
            ]
        );
        let all = iam(&provider(""));
        assert!(all.users.is_empty() && all.path_prefix.is_none());
    }

    #[test]
    fn errors_point_at_the_field() {
        let cases = [
            (
                "region = \"Europe\"\n",
                "4:10: `region` \"Europe\" is not an AWS region",
            ),
            (
                "iam_endpoint = \"http://iam.example.com\"\n",
                "4:16: `iam_endpoint` \"http://iam.example.com\": plain http",
            ),
            (
                "access_key_id = { credential = \"a\" }\n",
                "4:17: give both `access_key_id` and `secret_access_key`, or neither",
            ),
            ("users = []\n", "4:9: `users` needs at least one user name"),
            (
                "users = [\"a b\"]\n",
                "4:10: \"a b\" is not an IAM user name",
            ),
            (
                "users = [\"a\", \"a\"]\n",
                "4:15: user \"a\" is listed twice",
            ),
            (
                "path_prefix = \"ci\"\n",
                "4:15: `path_prefix` \"ci\" is not an IAM path",
            ),
            (
                "users = [\"a\"]\npath_prefix = \"/ci/\"\n",
                "4:9: give `users` or `path_prefix`, not both",
            ),
            (
                "timeout = \"0s\"\n",
                "4:11: `timeout` must be greater than 0s",
            ),
            (
                "deactivate = true\n",
                "4:1: unknown field `deactivate` for provider type \"aws-iam\"",
            ),
        ];
        for (body, want) in cases {
            let errs = load(&provider(body)).expect_err(body);
            assert_eq!(errs.len(), 1, "{body}: {errs:#?}");
            let shown = errs[0]
                .strip_prefix("/etc/keyrot/keyrot.toml:")
                .unwrap_or(&errs[0]);
            assert!(shown.starts_with(want), "{body}: {shown}");
        }
    }

    #[test]
    fn user_names() {
        assert!(user_name_ok("deploy-bot"));
        assert!(user_name_ok("a+b=c,d.e@f_g-h"));
        assert!(!user_name_ok(""));
        assert!(!user_name_ok(&"a".repeat(65)));
        assert!(!user_name_ok("a/b"));
    }
}
