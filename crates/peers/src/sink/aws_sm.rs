//! The `aws-secretsmanager` sink: writes each new secret as a version of an
//! AWS Secrets Manager secret, following AWS's own rotation protocol so
//! that consumers reading `AWSCURRENT` only ever see a verified secret:
//!
//! - `put`: `PutSecretValue` with `ClientRequestToken` = the rotation id
//!   (AWS's idempotency token: a retry with the same token and value is
//!   ignored) and the stage `AWSPENDING`. A missing secret is created
//!   (`CreateSecret`, whose first version is `AWSCURRENT` at once) only
//!   with `create = true`.
//! - `read_back`: `GetSecretValue` of that version, hashed.
//! - `finish`, once Verifying succeeded: moves `AWSCURRENT` to our version
//!   (`UpdateSecretVersionStage`); AWS moves `AWSPREVIOUS` to the version
//!   it came from. Like AWS's rotation functions, it leaves `AWSPENDING` on
//!   the new current version, one of the two end states AWS documents for
//!   a finished rotation (the next `put` moves the label on).
//!
//! It does not manage the secret's policy, replication, rotation schedule
//! or deletion, and never deletes a version.

use std::collections::BTreeMap;
use std::path::Path;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use super::{Sink, SinkTarget};
use crate::aws::{AwsClient, CredentialSource, error_code, json_body};
use crate::http::{Answer, redact};
use keyrot_config::{AwsSecretsManagerSinkConfig, SecretFormat};
use keyrot_core::crypto::sha256_hex;
use keyrot_core::error::CallError;

/// SigV4 signing name and endpoint prefix of Secrets Manager.
pub const SERVICE: &str = "secretsmanager";
/// The label consumers read.
pub const AWSCURRENT: &str = "AWSCURRENT";
/// The label of a version written but not yet verified.
pub const AWSPENDING: &str = "AWSPENDING";
/// Tag naming the provider, on secrets keyrot creates.
pub const TAG_PROVIDER: &str = "keyrot:provider";
/// Tag naming the slot, on secrets keyrot creates.
pub const TAG_SLOT: &str = "keyrot:slot";
/// Members of a `format = "json"` secret besides the secret itself.
const METADATA_MEMBERS: [&str; 5] = ["key_id", "rotation_id", "expires_at", "provider", "slot"];
/// The service, in messages.
const PEER: &str = "AWS Secrets Manager";
/// AWS's code for a missing secret or version.
const NOT_FOUND: &str = "ResourceNotFoundException";

/// Writes secrets to AWS Secrets Manager.
#[derive(Debug)]
pub struct AwsSecretsManagerSink {
    /// Config name.
    name: String,
    /// `sink "NAME"`, for messages.
    who: String,
    /// Settings.
    cfg: AwsSecretsManagerSinkConfig,
    /// Signed client for Secrets Manager in the configured region.
    client: AwsClient,
}

/// `PutSecretValue` request.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PutSecretValue<'a> {
    /// Secret name.
    secret_id: &'a str,
    /// The rotation id: the new version's id.
    client_request_token: &'a str,
    /// The value.
    secret_string: &'a str,
    /// `["AWSPENDING"]`.
    version_stages: [&'a str; 1],
}

/// `CreateSecret` request.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CreateSecret<'a> {
    /// Secret name.
    name: &'a str,
    /// The rotation id: the first version's id.
    client_request_token: &'a str,
    /// The value.
    secret_string: &'a str,
    /// KMS key, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    kms_key_id: Option<&'a str>,
    /// Says who manages it.
    description: &'a str,
    /// `keyrot:provider` and `keyrot:slot`.
    tags: [Tag<'a>; 2],
}

/// One tag.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Tag<'a> {
    /// Tag key.
    key: &'a str,
    /// Tag value.
    value: &'a str,
}

/// `GetSecretValue` request (also the shape of other calls naming one
/// version).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SecretVersion<'a> {
    /// Secret name.
    secret_id: &'a str,
    /// Version id, when one is meant.
    #[serde(skip_serializing_if = "Option::is_none")]
    version_id: Option<&'a str>,
}

/// `UpdateSecretVersionStage` request.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateStage<'a> {
    /// Secret name.
    secret_id: &'a str,
    /// The label moved.
    version_stage: &'a str,
    /// Version that gets it.
    move_to_version_id: &'a str,
    /// Version that holds it now, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    remove_from_version_id: Option<&'a str>,
}

/// The part of a `PutSecretValue`/`CreateSecret` answer keyrot uses.
#[derive(Deserialize)]
struct VersionAnswer {
    /// The version written.
    #[serde(rename = "VersionId")]
    version_id: Option<String>,
}

/// The part of a `GetSecretValue` answer keyrot uses.
#[derive(Deserialize)]
struct ValueAnswer {
    /// The value, absent for a binary secret.
    #[serde(rename = "SecretString")]
    secret_string: Option<SecretString>,
}

/// The part of a `DescribeSecret` answer keyrot uses.
#[derive(Deserialize)]
struct DescribeAnswer {
    /// Each labelled version and its labels.
    #[serde(rename = "VersionIdsToStages", default)]
    version_ids_to_stages: BTreeMap<String, Vec<String>>,
}

impl AwsSecretsManagerSink {
    /// Builds the sink: credential references are resolved now, so a
    /// missing one fails at start or reload with the sink and field named.
    /// No network call is made until the first write or read.
    pub fn new(
        name: &str,
        cfg: &AwsSecretsManagerSinkConfig,
        creds_dir: Option<&Path>,
    ) -> Result<AwsSecretsManagerSink, CallError> {
        let who = format!("sink {name:?}");
        if let SecretFormat::Json { field } = &cfg.format
            && METADATA_MEMBERS.contains(&field.as_str())
        {
            return Err(CallError::permanent(format!(
                "{who}: `field` {field:?} is also a metadata member of the JSON secret \
                 ({}): pick another name",
                METADATA_MEMBERS.join(", ")
            )));
        }
        let credentials = CredentialSource::from_config(&who, &cfg.credentials, creds_dir)?;
        let client = AwsClient::new(
            &who,
            PEER,
            SERVICE,
            &cfg.region,
            cfg.endpoint.as_deref(),
            credentials,
            cfg.timeout,
        )?;
        Ok(AwsSecretsManagerSink {
            name: name.to_string(),
            who,
            cfg: cfg.clone(),
            client,
        })
    }

    /// The signed client (for tests and tools that look at the secret).
    pub fn client(&self) -> &AwsClient {
        &self.client
    }

    /// The secret string to store: the secret alone, or the JSON document.
    fn render(
        &self,
        target: &SinkTarget,
        secret: &SecretString,
    ) -> Result<Zeroizing<String>, CallError> {
        let value = secret.expose_secret();
        let SecretFormat::Json { field } = &self.cfg.format else {
            return Ok(Zeroizing::new(value.to_string()));
        };
        let expires_at = target.expires_at.map(|t| t.to_string());
        // A BTreeMap keeps the members in one order, so a retried put sends
        // the same bytes (AWS refuses a different value under the same
        // token).
        let mut doc: BTreeMap<&str, Option<&str>> = BTreeMap::new();
        doc.insert("key_id", Some(target.key_id.as_str()));
        doc.insert("rotation_id", Some(target.rotation_id.as_str()));
        doc.insert("expires_at", expires_at.as_deref());
        doc.insert("provider", Some(target.provider.as_str()));
        doc.insert("slot", Some(target.slot.as_str()));
        doc.insert(field.as_str(), Some(value));
        let bytes = json_body(&doc, value.len())?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| CallError::permanent(format!("{}: JSON is not UTF-8", self.who)))?;
        let mut out = Zeroizing::new(String::with_capacity(bytes.len()));
        out.push_str(text);
        Ok(out)
    }

    /// The secret in a stored secret string: all of it, or the JSON
    /// member.
    fn extract(
        &self,
        name: &str,
        stored: &SecretString,
        version: &str,
    ) -> Result<Zeroizing<String>, CallError> {
        let text = stored.expose_secret();
        let SecretFormat::Json { field } = &self.cfg.format else {
            return Ok(Zeroizing::new(text.to_string()));
        };
        let mut doc: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(text).unwrap_or_default();
        let found = match doc.remove(field.as_str()) {
            Some(serde_json::Value::String(s)) => Some(Zeroizing::new(s)),
            _ => None,
        };
        for v in doc.values_mut() {
            if let serde_json::Value::String(s) = v {
                s.zeroize();
            }
        }
        found.ok_or_else(|| {
            CallError::permanent(format!(
                "{}: version {version} of secret {name:?} is not a JSON object with the string \
                 member {field:?} (was `format` or `field` changed since it was written?)",
                self.who
            ))
        })
    }

    /// `PutSecretValue` of a new `AWSPENDING` version; `Ok(None)` when the
    /// secret does not exist.
    async fn put_value(
        &self,
        name: &str,
        token: &str,
        value: &str,
    ) -> Result<Option<String>, CallError> {
        let body = json_body(
            &PutSecretValue {
                secret_id: name,
                client_request_token: token,
                secret_string: value,
                version_stages: [AWSPENDING],
            },
            value.len(),
        )?;
        let ans = self
            .client
            .json_call("secretsmanager.PutSecretValue", body)
            .await?;
        if ans.status.is_success() {
            return self.version_of(&ans, "PutSecretValue", token).map(Some);
        }
        if error_code(&ans).as_deref() == Some(NOT_FOUND) {
            return Ok(None);
        }
        let hint = match error_code(&ans).as_deref() {
            Some("InvalidRequestException") => Some(
                "a secret scheduled for deletion must be restored first (`aws secretsmanager \
                 restore-secret`); a version id already used with another value cannot be \
                 written again",
            ),
            Some("ResourceExistsException") => {
                Some("this rotation id already wrote a different value to the secret")
            }
            _ => None,
        };
        Err(self.client.error("PutSecretValue", &ans, hint))
    }

    /// `CreateSecret` with our value as its first (`AWSCURRENT`) version;
    /// `Ok(None)` when the secret exists after all (created meanwhile).
    async fn create(
        &self,
        name: &str,
        target: &SinkTarget,
        value: &str,
    ) -> Result<Option<String>, CallError> {
        let description = format!("Managed by keyrot: the secret of {}", target.slot);
        let body = json_body(
            &CreateSecret {
                name,
                client_request_token: &target.rotation_id,
                secret_string: value,
                kms_key_id: self.cfg.kms_key_id.as_deref(),
                description: &description,
                tags: [
                    Tag {
                        key: TAG_PROVIDER,
                        value: &target.provider,
                    },
                    Tag {
                        key: TAG_SLOT,
                        value: &target.slot,
                    },
                ],
            },
            value.len(),
        )?;
        let ans = self
            .client
            .json_call("secretsmanager.CreateSecret", body)
            .await?;
        if ans.status.is_success() {
            return self
                .version_of(&ans, "CreateSecret", &target.rotation_id)
                .map(Some);
        }
        if error_code(&ans).as_deref() == Some("ResourceExistsException") {
            return Ok(None);
        }
        Err(self.client.error(
            "CreateSecret",
            &ans,
            Some("keyrot needs secretsmanager:CreateSecret and secretsmanager:TagResource (and kms:GenerateDataKey on a customer KMS key) to create secrets"),
        ))
    }

    /// The version id of a write answer (the token, if AWS omits it).
    fn version_of(&self, ans: &Answer, what: &str, token: &str) -> Result<String, CallError> {
        let v: VersionAnswer = ans.json(&self.who, what)?;
        Ok(v.version_id.unwrap_or_else(|| token.to_string()))
    }

    /// `DescribeSecret`: each labelled version and its labels.
    async fn stages(&self, name: &str) -> Result<BTreeMap<String, Vec<String>>, CallError> {
        let body = json_body(
            &SecretVersion {
                secret_id: name,
                version_id: None,
            },
            0,
        )?;
        let ans = self
            .client
            .json_call("secretsmanager.DescribeSecret", body)
            .await?;
        if !ans.status.is_success() {
            let hint = (error_code(&ans).as_deref() == Some(NOT_FOUND))
                .then_some("the secret was deleted after keyrot wrote and verified it");
            return Err(self.client.error("DescribeSecret", &ans, hint));
        }
        let d: DescribeAnswer = ans.json(&self.who, "DescribeSecret")?;
        Ok(d.version_ids_to_stages)
    }
}

#[async_trait]
impl Sink for AwsSecretsManagerSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "aws-secretsmanager"
    }

    async fn put(
        &self,
        target: &SinkTarget,
        secret: &SecretString,
    ) -> Result<Option<String>, CallError> {
        let name = target.location(&self.cfg.secret_name)?;
        let value = self.render(target, secret)?;
        let token = target.rotation_id.as_str();
        let redacted = |e: CallError| redact(redact(e, secret.expose_secret()), &value);
        if let Some(v) = self
            .put_value(&name, token, &value)
            .await
            .map_err(redacted)?
        {
            return Ok(Some(v));
        }
        if !self.cfg.create {
            return Err(CallError::permanent(format!(
                "{}: secret {name:?} does not exist in {} (create it, or set `create = true` \
                 in the sink's config to have keyrot create it)",
                self.who, self.cfg.region
            )));
        }
        if let Some(v) = self.create(&name, target, &value).await.map_err(redacted)? {
            return Ok(Some(v));
        }
        // Created meanwhile by someone else: write our version into it.
        match self
            .put_value(&name, token, &value)
            .await
            .map_err(redacted)?
        {
            Some(v) => Ok(Some(v)),
            None => Err(CallError::transient(format!(
                "{}: secret {name:?} was reported as existing, then as missing",
                self.who
            ))),
        }
    }

    async fn read_back(&self, target: &SinkTarget) -> Result<Option<String>, CallError> {
        let name = target.location(&self.cfg.secret_name)?;
        let version = target.rotation_id.as_str();
        let body = json_body(
            &SecretVersion {
                secret_id: &name,
                version_id: Some(version),
            },
            0,
        )?;
        let mut ans = self
            .client
            .json_call("secretsmanager.GetSecretValue", body)
            .await?;
        // The answer holds the secret: wipe it once parsed.
        let raw = std::mem::take(&mut ans.body);
        if !ans.status.is_success() {
            ans.body = raw;
            if error_code(&ans).as_deref() == Some(NOT_FOUND) {
                return Ok(None);
            }
            return Err(self.client.error("GetSecretValue", &ans, None));
        }
        let parsed: ValueAnswer = serde_json::from_slice(&raw).map_err(|_| {
            CallError::transient(format!(
                "{}: GetSecretValue: the answer ({} bytes) is not the JSON expected",
                self.who,
                raw.len()
            ))
        })?;
        let stored = parsed.secret_string.ok_or_else(|| {
            CallError::permanent(format!(
                "{}: version {version} of secret {name:?} holds a binary secret, not a string",
                self.who
            ))
        })?;
        let secret = self.extract(&name, &stored, version)?;
        Ok(Some(sha256_hex(secret.as_bytes())))
    }

    async fn finish(&self, target: &SinkTarget) -> Result<(), CallError> {
        let name = target.location(&self.cfg.secret_name)?;
        let ours = target.rotation_id.as_str();
        let stages = self.stages(&name).await?;
        let current = stages
            .iter()
            .find(|(_, labels)| labels.iter().any(|l| l == AWSCURRENT))
            .map(|(v, _)| v.as_str());
        if current == Some(ours) {
            // Already current: a secret keyrot created, or a finish repeated.
            return Ok(());
        }
        let body = json_body(
            &UpdateStage {
                secret_id: &name,
                version_stage: AWSCURRENT,
                move_to_version_id: ours,
                remove_from_version_id: current,
            },
            0,
        )?;
        let ans = self
            .client
            .json_call("secretsmanager.UpdateSecretVersionStage", body)
            .await?;
        if ans.status.is_success() {
            tracing::info!(
                sink = %self.name,
                secret = %name,
                version = %ours,
                previous = current.unwrap_or("none"),
                "moved AWSCURRENT to the new version"
            );
            return Ok(());
        }
        Err(self.client.error(
            "UpdateSecretVersionStage",
            &ans,
            Some("keyrot needs secretsmanager:UpdateSecretVersionStage to make the new version current"),
        ))
    }
}

#[cfg(test)]
mod tests;
