//! The `azure-keyvault` sink: writes each new secret as a new version of a
//! Key Vault secret (Set Secret, REST API 7.4) and reads the latest version
//! back (Get Secret) as a SHA-256 for Verifying. It owns the Entra ID
//! client-credentials token for the vault: fetched on first use, cached
//! until shortly before it expires, dropped and fetched once more when the
//! vault answers 401. It does not recover or purge soft-deleted secrets,
//! nor manage access: it tells the operator what to do instead.
//!
//! The client secret, the access token and the secret value live in
//! `SecretString`/`Zeroizing` buffers and never reach a message or `Debug`.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use reqwest::header::CONTENT_TYPE;
use reqwest::{RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use super::{Sink, SinkTarget};
use crate::http::{Answer, PeerKind, redact, send, status_error};
use keyrot_config::{AZURE_API_VERSION, AzureKeyVaultSinkConfig, azure_name_ok};
use keyrot_core::clock::{Clock, SystemClock};
use keyrot_core::crypto::sha256_hex;
use keyrot_core::error::CallError;

/// Tag naming the key a version holds.
pub const TAG_KEY_ID: &str = "keyrot-key-id";
/// Tag naming the rotation that wrote a version (the idempotency marker).
pub const TAG_ROTATION_ID: &str = "keyrot-rotation-id";
/// Tag naming the provider.
pub const TAG_PROVIDER: &str = "keyrot-provider";
/// Tag naming the slot.
pub const TAG_SLOT: &str = "keyrot-slot";

/// Key Vault resource of the public cloud; also used for hosts of no
/// known cloud (a private DNS name, a test emulator on loopback).
const PUBLIC_VAULT_RESOURCE: &str = "vault.azure.net";
/// Key Vault DNS suffixes (`NAME.<suffix>`) of the clouds keyrot knows;
/// each suffix is also the resource its tokens are scoped to.
const VAULT_RESOURCES: [&str; 3] = [
    PUBLIC_VAULT_RESOURCE,
    "vault.azure.cn",
    "vault.usgovcloudapi.net",
];
/// A token is renewed this long before it expires at most ...
const MAX_REFRESH_MARGIN: SignedDuration = SignedDuration::from_mins(5);
/// ... and at most this fraction (1/n) of its lifetime before.
const REFRESH_MARGIN_DIVISOR: i32 = 10;

/// Writes secrets to an Azure Key Vault.
pub struct AzureKeyVaultSink {
    /// Config name.
    name: String,
    /// `sink "NAME"`, for messages.
    who: String,
    /// Settings.
    cfg: AzureKeyVaultSinkConfig,
    /// The app registration's client secret.
    client_secret: SecretString,
    /// `{authority_host}/{tenant_id}/oauth2/v2.0/token`.
    token_url: String,
    /// `https://<vault resource>/.default`.
    scope: String,
    /// HTTP client (no redirects: the token never follows one).
    http: reqwest::Client,
    /// The cached access token; the lock also makes concurrent callers
    /// wait for one token request instead of each sending their own.
    token: tokio::sync::Mutex<Option<CachedToken>>,
    /// Where "now" comes from (token expiry, Retry-After dates).
    clock: Arc<dyn Clock>,
}

/// An access token and when to stop using it.
struct CachedToken {
    /// The bearer token.
    token: Arc<SecretString>,
    /// Fetch a new one from this instant on.
    refresh_at: Timestamp,
}

impl fmt::Debug for AzureKeyVaultSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureKeyVaultSink")
            .field("name", &self.name)
            .field("vault_url", &self.cfg.vault_url)
            .field("secret_name", &self.cfg.secret_name)
            .field("tenant_id", &self.cfg.tenant_id)
            .field("client_id", &self.cfg.client_id)
            .field("client_secret", &"[redacted]")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl AzureKeyVaultSink {
    /// Builds the sink: resolves `client_secret` now, so a missing one
    /// fails at start or reload with the sink and field named. No network
    /// call is made until the first write or read.
    pub fn new(
        name: &str,
        cfg: &AzureKeyVaultSinkConfig,
        creds_dir: Option<&Path>,
    ) -> Result<AzureKeyVaultSink, CallError> {
        let who = format!("sink {name:?}");
        let client_secret = cfg
            .client_secret
            .resolve(creds_dir)
            .map_err(|e| CallError::permanent(format!("{who}: `client_secret`: {e}")))?;
        let http = crate::http::client(&who, cfg.timeout, None)?;
        Ok(AzureKeyVaultSink {
            name: name.to_string(),
            token_url: format!("{}/{}/oauth2/v2.0/token", cfg.authority_host, cfg.tenant_id),
            scope: vault_scope(&cfg.vault_url),
            who,
            cfg: cfg.clone(),
            client_secret,
            http,
            token: tokio::sync::Mutex::new(None),
            clock: Arc::new(SystemClock),
        })
    }

    /// The same sink reading time from `clock` (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> AzureKeyVaultSink {
        self.clock = clock;
        self
    }

    /// The OAuth scope tokens are requested for.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The Key Vault secret name for `target`, checked against Key
    /// Vault's rule.
    fn secret_name(&self, target: &SinkTarget) -> Result<String, CallError> {
        let name = target.location(&self.cfg.secret_name)?;
        if azure_name_ok(&name) {
            return Ok(name);
        }
        let mut bad: Vec<char> = name
            .chars()
            .filter(|c| !c.is_ascii_alphanumeric() && *c != '-')
            .collect();
        bad.sort_unstable();
        bad.dedup();
        let why = if name.is_empty() {
            "it is empty".to_string()
        } else if bad.is_empty() {
            format!("it has {} characters", name.chars().count())
        } else {
            let shown: Vec<String> = bad.iter().map(|c| format!("{c:?}")).collect();
            format!("it has {}", shown.join(", "))
        };
        Err(CallError::permanent(format!(
            "{}: secret name {name:?} (from `secret_name` {:?} for key {:?}) is not a valid \
             Key Vault secret name: {why}; a name has 1 to 127 ASCII letters, digits and '-'. \
             Change `secret_name` so that every key's name fits (a key name with '_' or '.' \
             cannot be used through {{name}} as it is)",
            self.who, self.cfg.secret_name, target.key_name
        )))
    }

    /// `{vault_url}/secrets/{name}?api-version=7.4` (the latest version
    /// for GET, a new version for PUT). `name` is already checked, so it
    /// needs no escaping.
    fn secret_url(&self, name: &str) -> String {
        format!(
            "{}/secrets/{name}?api-version={AZURE_API_VERSION}",
            self.cfg.vault_url
        )
    }

    /// A valid access token: the cached one, or a new one.
    async fn token(&self) -> Result<Arc<SecretString>, CallError> {
        let mut slot = self.token.lock().await;
        let now = self.clock.now();
        if let Some(cached) = slot.as_ref().filter(|c| now < c.refresh_at) {
            return Ok(Arc::clone(&cached.token));
        }
        *slot = None;
        let fresh = self.fetch_token(now).await?;
        let token = Arc::clone(&fresh.token);
        *slot = Some(fresh);
        Ok(token)
    }

    /// Forgets `used` if it is still the cached token (another caller may
    /// already have replaced it).
    async fn drop_token(&self, used: &Arc<SecretString>) {
        let mut slot = self.token.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(&c.token, used)) {
            *slot = None;
        }
    }

    /// The client-credentials grant against Entra ID.
    async fn fetch_token(&self, now: Timestamp) -> Result<CachedToken, CallError> {
        let what = "get an access token from Entra ID";
        let form = form_encode(&[
            ("client_id", self.cfg.client_id.as_str()),
            ("client_secret", self.client_secret.expose_secret()),
            ("scope", self.scope.as_str()),
            ("grant_type", "client_credentials"),
        ]);
        let req = self
            .http
            .post(&self.token_url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Bytes::from_owner(form));
        let secret = self.client_secret.expose_secret();
        let mut ans = send(&self.who, what, PeerKind::Azure, self.cfg.timeout, req)
            .await
            .map_err(|e| redact(e, secret))?;
        if ans.status != StatusCode::OK {
            let hint = match ans.status {
                StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED => Some(
                    "check tenant_id, client_id and client_secret: the secret's value, not its \
                     id, and not expired",
                ),
                _ => None,
            };
            let err = status_error(&self.who, what, "Entra ID", &ans, now, hint);
            return Err(redact(err, secret));
        }
        let parsed = ans.json::<TokenAnswer>(&self.who, what);
        ans.body.zeroize();
        let parsed = parsed?;
        if !parsed.token_type.eq_ignore_ascii_case("bearer") {
            return Err(CallError::permanent(format!(
                "{}: {what}: Entra ID issued a {:?} token, not a Bearer token",
                self.who, parsed.token_type
            )));
        }
        let lifetime = SignedDuration::from_secs(parsed.expires_in.seconds());
        let margin = MAX_REFRESH_MARGIN.min(lifetime / REFRESH_MARGIN_DIVISOR);
        Ok(CachedToken {
            token: Arc::new(parsed.access_token),
            refresh_at: now.saturating_add(lifetime - margin).unwrap_or(now),
        })
    }

    /// A Key Vault request with a bearer token. On 401 the token is
    /// dropped, a new one fetched and the request sent once more.
    async fn vault_call(
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
    fn vault_error(&self, what: &str, name: &str, ans: &Answer) -> CallError {
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
    async fn latest(&self, name: &str, what: &str) -> Result<LatestState, CallError> {
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
    fn set_body(
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

#[async_trait]
impl Sink for AzureKeyVaultSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "azure-keyvault"
    }

    async fn put(
        &self,
        target: &SinkTarget,
        secret: &SecretString,
    ) -> Result<Option<String>, CallError> {
        let name = self.secret_name(target)?;
        // Idempotence: a version written by this rotation with this value
        // is not written again (Set Secret always adds a version).
        let ours = sha256_hex(secret.expose_secret().as_bytes());
        if let LatestState::Present(latest) = self
            .latest(&name, "read the latest version of secret")
            .await?
            && latest.sha256 == ours
            && latest.rotation_id.as_deref() == Some(target.rotation_id.as_str())
        {
            tracing::debug!(sink = %self.name, secret = %name, "latest version is this rotation's; not writing again");
            return Ok(latest.version);
        }
        let body = self.set_body(target, secret)?;
        let url = self.secret_url(&name);
        let what = "set secret";
        let mut ans = self
            .vault_call(what, |token| {
                self.http
                    .put(&url)
                    .bearer_auth(token)
                    .header(CONTENT_TYPE, "application/json")
                    .body(Bytes::from_owner(body.clone()))
            })
            .await?;
        drop(body);
        if ans.status != StatusCode::OK {
            let err = self.vault_error(what, &name, &ans);
            ans.body.zeroize();
            return Err(redact(err, secret.expose_secret()));
        }
        // The answer echoes the value: parse the id, then wipe it.
        let parsed = ans.json::<Bundle>(&self.who, what);
        ans.body.zeroize();
        let parsed = parsed?;
        let version = version_of(parsed.id.as_deref());
        if version.is_none() {
            return Err(CallError::permanent(format!(
                "{}: {what} {name:?}: Key Vault's answer has no secret id",
                self.who
            )));
        }
        tracing::debug!(sink = %self.name, secret = %name, version = ?version, "secret written");
        Ok(version)
    }

    async fn read_back(&self, target: &SinkTarget) -> Result<Option<String>, CallError> {
        let name = self.secret_name(target)?;
        match self.latest(&name, "read secret").await? {
            LatestState::Missing => Ok(None),
            LatestState::Present(latest) => Ok(Some(latest.sha256)),
            LatestState::Disabled => Err(CallError::permanent(format!(
                "{}: read secret {name:?}: its latest version is disabled, so consumers cannot \
                 read it: enable it, or let keyrot write a new version",
                self.who
            ))),
        }
    }
}

/// What the latest version of a secret is.
enum LatestState {
    /// The secret does not exist (404 SecretNotFound).
    Missing,
    /// Its latest version is disabled (403, inner error SecretDisabled).
    Disabled,
    /// It has an enabled latest version.
    Present(Latest),
}

/// What keyrot needs of the latest version.
struct Latest {
    /// SHA-256 (hex) of its value.
    sha256: String,
    /// Its version id.
    version: Option<String>,
    /// Its `keyrot-rotation-id` tag.
    rotation_id: Option<String>,
}

/// A successful token answer (`token_type`, `expires_in`, `access_token`).
#[derive(Deserialize)]
struct TokenAnswer {
    /// `Bearer`.
    token_type: String,
    /// Lifetime in seconds.
    expires_in: Seconds,
    /// The token.
    access_token: SecretString,
}

/// `expires_in`: a number (v2.0 endpoint) or a numeric string (v1.0).
#[derive(Deserialize)]
#[serde(untagged)]
enum Seconds {
    /// A JSON number.
    Number(u32),
    /// A string of digits.
    Text(String),
}

impl Seconds {
    /// The value; zero (use the token once) when it is not a number.
    fn seconds(&self) -> i64 {
        match self {
            Seconds::Number(n) => i64::from(*n),
            Seconds::Text(t) => t.trim().parse::<u32>().map(i64::from).unwrap_or(0),
        }
    }
}

/// The parts of a SecretBundle keyrot reads.
#[derive(Deserialize)]
struct Bundle {
    /// `https://VAULT/secrets/NAME/VERSION`.
    id: Option<String>,
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
fn vault_scope(vault_url: &str) -> String {
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
fn vault_name(vault_url: &str) -> String {
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
fn version_of(id: Option<&str>) -> Option<String> {
    let id = id?.trim_end_matches('/');
    let (_, version) = id.rsplit_once('/')?;
    (!version.is_empty()).then(|| version.to_string())
}

/// `error.code` of a KeyVaultError body.
fn error_code(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.pointer("/error/code")?.as_str().map(str::to_string)
}

/// `error.innererror.code` of a KeyVaultError body.
fn inner_error_code(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.pointer("/error/innererror/code")?
        .as_str()
        .map(str::to_string)
}

/// `application/x-www-form-urlencoded`, in a buffer wiped on drop.
fn form_encode(pairs: &[(&str, &str)]) -> Zeroizing<Vec<u8>> {
    let cap = pairs.iter().map(|(k, v)| 3 * (k.len() + v.len()) + 2).sum();
    let mut out = Zeroizing::new(Vec::with_capacity(cap));
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        url_encode_into(&mut out, k);
        out.push(b'=');
        url_encode_into(&mut out, v);
    }
    out
}

/// Percent-encodes `s` for a form (space as `+`).
fn url_encode_into(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(b),
            b' ' => out.push(b'+'),
            _ => out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]),
        }
    }
}

#[cfg(test)]
mod tests;
