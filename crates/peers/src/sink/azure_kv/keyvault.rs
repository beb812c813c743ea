//! Key Vault calls of the `azure-keyvault` sink: requests with a bearer
//! token (one retry on 401), errors with what to do, the latest version,
//! the Set Secret body, and the JSON and URLs they read and write.

use reqwest::{RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use super::{AzureKeyVaultSink, PUBLIC_VAULT_RESOURCE, TAG_ROTATION_ID, VAULT_RESOURCES};
use crate::http::{Answer, PeerKind, send, status_error};
use crate::sink::SinkTarget;
use keyrot_core::crypto::sha256_hex;
use keyrot_core::error::CallError;

impl AzureKeyVaultSink {
    /// A Key Vault request with a bearer token. On 401 the token is
    /// dropped, a new one fetched and the request sent once more.
    pub(super) async fn vault_call(
        &self,
        what: &str,
        build: impl Fn(&str) -> RequestBuilder,
    ) -> Result<Answer, CallError> {
        let token = self.token().await?;
        let ans = send(
            &self.who,
            what,
            PeerKind::Azure,
            self.cfg.timeout,
            build(token.expose_secret()),
        )
        .await?;
        if ans.status != StatusCode::UNAUTHORIZED {
            return Ok(ans);
        }
        tracing::debug!(sink = %self.name, "Key Vault answered 401; fetching a new token");
        self.drop_token(&token).await;
        let token = self.token().await?;
        send(
            &self.who,
            what,
            PeerKind::Azure,
            self.cfg.timeout,
            build(token.expose_secret()),
        )
        .await
    }

    /// The error for a Key Vault answer the caller does not accept.
    pub(super) fn vault_error(&self, what: &str, name: &str, ans: &Answer) -> CallError {
        let now = self.clock.now();
        if ans.status == StatusCode::CONFLICT {
            match inner_error_code(&ans.body).as_deref() {
                Some("ObjectIsDeletedButRecoverable") => {
                    let vault = vault_name(&self.cfg.vault_url);
                    return CallError::permanent(format!(
                        "{}: {what}: secret {name:?} is deleted but recoverable (soft delete) \
                         and its name cannot be reused until it is recovered or purged: \
                         `az keyvault secret recover --vault-name {vault} --name {name}` keeps \
                         its old versions, `az keyvault secret purge --vault-name {vault} --name \
                         {name}` removes it for good; then retry the rotation",
                        self.who
                    ));
                }
                Some("ObjectIsBeingRecovered") => {
                    return CallError::transient(format!(
                        "{}: {what}: secret {name:?} is being recovered; trying again later",
                        self.who
                    ));
                }
                _ => {}
            }
        }
        let hint = match ans.status {
            StatusCode::UNAUTHORIZED => {
                Some("the vault refused a fresh token: check that tenant_id is the vault's tenant")
            }
            StatusCode::FORBIDDEN => Some(
                "the app needs to get and set secrets: the Key Vault Secrets Officer role, or an \
                 access policy with secret get and set",
            ),
            _ => None,
        };
        status_error(
            &self.who,
            &format!("{what} {name:?}"),
            "Key Vault",
            ans,
            now,
            hint,
        )
    }

    /// The latest version of secret `name`.
    pub(super) async fn latest(&self, name: &str, what: &str) -> Result<LatestState, CallError> {
        let url = self.secret_url(name);
        let mut ans = self
            .vault_call(what, |token| self.http.get(&url).bearer_auth(token))
            .await?;
        if ans.status == StatusCode::NOT_FOUND
            && error_code(&ans.body).as_deref() == Some("SecretNotFound")
        {
            return Ok(LatestState::Missing);
        }
        if ans.status == StatusCode::FORBIDDEN
            && inner_error_code(&ans.body).as_deref() == Some("SecretDisabled")
        {
            return Ok(LatestState::Disabled);
        }
        if ans.status != StatusCode::OK {
            return Err(self.vault_error(what, name, &ans));
        }
        let parsed = ans.json::<Bundle>(&self.who, what);
        ans.body.zeroize();
        let parsed = parsed?;
        let Some(value) = parsed.value else {
            return Err(CallError::permanent(format!(
                "{}: {what} {name:?}: Key Vault's answer holds no value",
                self.who
            )));
        };
        Ok(LatestState::Present(Latest {
            sha256: sha256_hex(value.expose_secret().as_bytes()),
            version: version_of(parsed.id.as_deref()),
            rotation_id: parsed.tags.and_then(|mut t| t.remove(TAG_ROTATION_ID)),
        }))
    }

    /// The Set Secret body, in a buffer wiped on drop.
    pub(super) fn set_body(
        &self,
        target: &SinkTarget,
        secret: &SecretString,
    ) -> Result<Zeroizing<Vec<u8>>, CallError> {
        let value = secret.expose_secret();
        let body = SetSecret {
            value,
            content_type: &self.cfg.content_type,
            attributes: SetAttributes {
                enabled: true,
                exp: target.expires_at.map(|t| t.as_second()),
            },
            tags: SetTags {
                key_id: &target.key_id,
                rotation_id: &target.rotation_id,
                provider: &target.provider,
                slot: &target.slot,
            },
        };
        // Sized for the worst case (every character escaped as \uXXXX) so
        // the buffer never reallocates and leaves an unwiped copy behind.
        let mut buf = Zeroizing::new(Vec::with_capacity(value.len() * 6 + 2048));
        serde_json::to_writer(&mut *buf, &body).map_err(|_| {
            CallError::permanent(format!(
                "{}: cannot encode the Set Secret request",
                self.who
            ))
        })?;
        Ok(buf)
    }
}

/// What the latest version of a secret is.
pub(super) enum LatestState {
    /// The secret does not exist (404 SecretNotFound).
    Missing,
    /// Its latest version is disabled (403, inner error SecretDisabled).
    Disabled,
    /// It has an enabled latest version.
    Present(Latest),
}

/// What keyrot needs of the latest version.
pub(super) struct Latest {
    /// SHA-256 (hex) of its value.
    pub(super) sha256: String,
    /// Its version id.
    pub(super) version: Option<String>,
    /// Its `keyrot-rotation-id` tag.
    pub(super) rotation_id: Option<String>,
}

/// The parts of a SecretBundle keyrot reads.
#[derive(Deserialize)]
pub(super) struct Bundle {
    /// `https://VAULT/secrets/NAME/VERSION`.
    pub(super) id: Option<String>,
    /// The secret value.
    value: Option<SecretString>,
    /// Tags.
    tags: Option<std::collections::BTreeMap<String, String>>,
}

/// A Set Secret request body.
#[derive(Serialize)]
struct SetSecret<'a> {
    /// The secret.
    value: &'a str,
    /// `contentType`.
    #[serde(rename = "contentType")]
    content_type: &'a str,
    /// Attributes.
    attributes: SetAttributes,
    /// Tags.
    tags: SetTags<'a>,
}

/// Attributes of the new version.
#[derive(Serialize)]
struct SetAttributes {
    /// Always true: the new version is the one consumers read.
    enabled: bool,
    /// Expiry, in Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
}

/// keyrot's tags on every version it writes.
#[derive(Serialize)]
struct SetTags<'a> {
    /// The key's id.
    #[serde(rename = "keyrot-key-id")]
    key_id: &'a str,
    /// The rotation's id.
    #[serde(rename = "keyrot-rotation-id")]
    rotation_id: &'a str,
    /// The provider.
    #[serde(rename = "keyrot-provider")]
    provider: &'a str,
    /// The slot.
    #[serde(rename = "keyrot-slot")]
    slot: &'a str,
}

/// The OAuth scope for tokens to `vault_url`: the resource of the cloud
/// whose Key Vault DNS suffix the host ends with; the public cloud's for
/// any other host.
pub(super) fn vault_scope(vault_url: &str) -> String {
    let host = reqwest::Url::parse(vault_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    let resource = VAULT_RESOURCES
        .iter()
        .find(|r| host.ends_with(&format!(".{r}")))
        .copied()
        .unwrap_or(PUBLIC_VAULT_RESOURCE);
    format!("https://{resource}/.default")
}

/// The vault's name for `az`: the first DNS label of a Key Vault host of a
/// known cloud, `VAULT` otherwise.
pub(super) fn vault_name(vault_url: &str) -> String {
    let host = reqwest::Url::parse(vault_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    VAULT_RESOURCES
        .iter()
        .find_map(|r| host.strip_suffix(&format!(".{r}")))
        .filter(|label| !label.is_empty() && !label.contains('.'))
        .map_or_else(|| "VAULT".to_string(), str::to_string)
}

/// The version: the last segment of a secret id
/// `https://VAULT/secrets/NAME/VERSION`.
pub(super) fn version_of(id: Option<&str>) -> Option<String> {
    let id = id?.trim_end_matches('/');
    let (_, version) = id.rsplit_once('/')?;
    (!version.is_empty()).then(|| version.to_string())
}

/// `error.code` of a KeyVaultError body.
pub(super) fn error_code(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.pointer("/error/code")?.as_str().map(str::to_string)
}

/// `error.innererror.code` of a KeyVaultError body.
pub(super) fn inner_error_code(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.pointer("/error/innererror/code")?
        .as_str()
        .map(str::to_string)
}
