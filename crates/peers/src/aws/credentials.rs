//! AWS credentials: an access key id, a secret access key and, for
//! temporary credentials, a session token. They come from secret references
//! resolved once when the sink or provider is built, or from the standard
//! environment variables read at each call (so a rotated set is picked up
//! without a reload). All three live in `SecretString`s; `Debug` and every
//! error name the source, never a value.

use std::fmt;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};

use keyrot_config::AwsCredentialsConfig;
use keyrot_core::error::CallError;

/// Environment variable holding the access key id.
pub const ENV_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
/// Environment variable holding the secret access key.
pub const ENV_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// Environment variable holding the session token (temporary credentials).
pub const ENV_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";

/// One set of AWS credentials.
#[derive(Clone)]
pub struct AwsCredentials {
    /// Access key id (`AKIA...`/`ASIA...`).
    access_key_id: SecretString,
    /// Secret access key.
    secret_access_key: SecretString,
    /// Session token of temporary credentials.
    session_token: Option<SecretString>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &"[redacted]")
            .field("secret_access_key", &"[redacted]")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

impl AwsCredentials {
    /// Credentials from their parts.
    pub fn new(
        access_key_id: SecretString,
        secret_access_key: SecretString,
        session_token: Option<SecretString>,
    ) -> AwsCredentials {
        AwsCredentials {
            access_key_id,
            secret_access_key,
            session_token,
        }
    }

    /// The signer's form of these credentials (its copies are zeroized on
    /// drop, like ours).
    pub(crate) fn to_signing(&self) -> aws_credential_types::Credentials {
        aws_credential_types::Credentials::new(
            self.access_key_id.expose_secret(),
            self.secret_access_key.expose_secret(),
            self.session_token
                .as_ref()
                .map(|t| t.expose_secret().to_string()),
            None,
            "keyrot",
        )
    }
}

/// Where a client's credentials come from.
#[derive(Clone, Debug)]
pub enum CredentialSource {
    /// Fixed credentials (resolved from secret references at build).
    Static(AwsCredentials),
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optionally
    /// `AWS_SESSION_TOKEN`, read at each call.
    Environment,
}

impl CredentialSource {
    /// The source a config describes; references are resolved now, so a
    /// missing file or credential fails at start or reload with `who` and
    /// the field named.
    pub fn from_config(
        who: &str,
        cfg: &AwsCredentialsConfig,
        creds_dir: Option<&Path>,
    ) -> Result<CredentialSource, CallError> {
        match cfg {
            AwsCredentialsConfig::Environment => Ok(CredentialSource::Environment),
            AwsCredentialsConfig::Refs {
                access_key_id,
                secret_access_key,
                session_token,
            } => {
                let resolve = |field: &str, r: &keyrot_config::SecretRef| {
                    r.resolve(creds_dir)
                        .map_err(|e| CallError::permanent(format!("{who}: `{field}`: {e}")))
                };
                Ok(CredentialSource::Static(AwsCredentials {
                    access_key_id: resolve("access_key_id", access_key_id)?,
                    secret_access_key: resolve("secret_access_key", secret_access_key)?,
                    session_token: session_token
                        .as_ref()
                        .map(|t| resolve("session_token", t))
                        .transpose()?,
                }))
            }
        }
    }

    /// The credentials to sign the next request with. From the
    /// environment, a missing or empty access key id or secret access key
    /// is a permanent error naming the variable (never its value).
    pub fn current(&self, who: &str) -> Result<AwsCredentials, CallError> {
        match self {
            CredentialSource::Static(c) => Ok(c.clone()),
            CredentialSource::Environment => {
                let required = |var: &str| {
                    env_secret(var)?.ok_or_else(|| {
                        CallError::permanent(format!(
                            "{who}: AWS credentials: environment variable {var} is not set \
                             (keyrot reads {ENV_ACCESS_KEY_ID}, {ENV_SECRET_ACCESS_KEY} and \
                             optionally {ENV_SESSION_TOKEN} when no `access_key_id` and \
                             `secret_access_key` are configured: set them in keyrot's \
                             environment, e.g. with a systemd drop-in, or configure the \
                             references)"
                        ))
                    })
                };
                Ok(AwsCredentials {
                    access_key_id: required(ENV_ACCESS_KEY_ID)?,
                    secret_access_key: required(ENV_SECRET_ACCESS_KEY)?,
                    session_token: env_secret(ENV_SESSION_TOKEN)?,
                })
            }
        }
    }
}

/// An environment variable as a secret; `None` when unset or empty.
fn env_secret(var: &str) -> Result<Option<SecretString>, CallError> {
    match std::env::var(var) {
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => Ok(Some(SecretString::from(v))),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(raw)) => {
            let mut bytes = raw.into_encoded_bytes();
            zeroize::Zeroize::zeroize(&mut bytes);
            Err(CallError::permanent(format!(
                "AWS credentials: environment variable {var} is not valid Unicode"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_value() {
        let c = AwsCredentials::new(
            SecretString::from("AKIDEXAMPLE123"),
            SecretString::from("wJalrXUtnFEMI/K7MDENG"),
            Some(SecretString::from("FwoGZXIvYXdzEXAMPLETOKEN")),
        );
        let shown = format!("{:?} {:?}", c, CredentialSource::Static(c.clone()));
        for v in ["AKIDEXAMPLE123", "wJalrXUtnFEMI", "FwoGZXIvYXdz"] {
            assert!(!shown.contains(v), "{shown}");
        }
        assert!(shown.contains("[redacted]"), "{shown}");
    }

    #[test]
    fn references_resolve_at_build_and_name_the_field_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ak"), "AKIDEXAMPLE\n").unwrap();
        std::fs::write(dir.path().join("sk"), "s3cr3t\n").unwrap();
        let cfg = |sk: &str| AwsCredentialsConfig::Refs {
            access_key_id: keyrot_config::SecretRef::File(dir.path().join("ak")),
            secret_access_key: keyrot_config::SecretRef::File(dir.path().join(sk)),
            session_token: None,
        };
        let src = CredentialSource::from_config("sink \"a\"", &cfg("sk"), None).unwrap();
        let c = src.current("sink \"a\"").unwrap();
        assert_eq!(c.access_key_id.expose_secret(), "AKIDEXAMPLE");
        assert_eq!(c.secret_access_key.expose_secret(), "s3cr3t");
        let err = CredentialSource::from_config("sink \"a\"", &cfg("missing"), None).unwrap_err();
        assert!(!err.transient);
        assert!(
            err.message
                .starts_with("sink \"a\": `secret_access_key`: file"),
            "{err}"
        );
    }
}
