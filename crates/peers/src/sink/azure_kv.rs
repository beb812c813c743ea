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

mod keyvault;
mod token;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use jiff::SignedDuration;
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroize;

use self::keyvault::{Bundle, LatestState, vault_scope, version_of};
use self::token::CachedToken;
use super::{Sink, SinkTarget};
use crate::http::redact;
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

#[cfg(test)]
mod tests;
