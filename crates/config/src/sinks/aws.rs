//! `type = "aws-secretsmanager"`: its fields, its settings, and the AWS
//! region and credentials every AWS sink and provider shares.

use jiff::SignedDuration;
use serde::Deserialize;
use toml::Spanned;

use super::{DEFAULT_FIELD, check_placeholders, strip_placeholders, timeout};
use crate::ctx::{Ctx, did_you_mean};
use crate::raw::{DurationText, SecretRefRaw};
use crate::secret::{SecretUse, secret_ref};
use crate::secret_ref::SecretRef;

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
