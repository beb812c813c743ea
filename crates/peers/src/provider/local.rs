//! The `local` provider: keys minted by keyrot itself — random 256-bit
//! secrets, base64url — for webhook signing secrets, tokens shared between
//! two services, and for running keyrot with no outside service.
//!
//! Its registry (id, name, scopes, creator, times, a SHA-256 of the secret,
//! the rotation tag) lives in the store's `local_keys` table, through the
//! store's narrow local-registry calls: the provider never sees rotation
//! state. The secret itself is never kept here; only its hash, for verify.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use rand::RngExt;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::{Capabilities, IssueMode, IssueRequest, IssuedKey, Provider};
use keyrot_config::LocalProviderConfig;
use keyrot_core::crypto::sha256_hex;
use keyrot_core::error::CallError;
use keyrot_core::model::KeyInfo;
use keyrot_core::store::{LocalKey, Store};

/// Keys minted by keyrot.
pub struct LocalProvider {
    /// Config name.
    name: String,
    /// Lifetime when the request sets no expiry.
    default_lifetime: SignedDuration,
    /// Secret length in bytes.
    secret_bytes: usize,
    /// The store holding the registry.
    store: Arc<Store>,
}

impl LocalProvider {
    /// A provider over the store's local registry.
    pub fn new(name: &str, cfg: &LocalProviderConfig, store: Arc<Store>) -> LocalProvider {
        LocalProvider {
            name: name.to_string(),
            default_lifetime: cfg.default_lifetime,
            secret_bytes: cfg.secret_bytes,
            store,
        }
    }

    /// Runs a blocking store call off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, keyrot_core::store::StoreError> + Send + 'static,
    ) -> Result<T, CallError> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| CallError::transient(format!("local registry task failed: {e}")))?
            .map_err(|e| CallError::transient(format!("local registry: {e}")))
    }
}

fn info(k: &LocalKey) -> KeyInfo {
    let mut tags = std::collections::BTreeMap::new();
    if let Some(t) = &k.tag {
        tags.insert("keyrot-rotation".to_string(), t.clone());
    }
    KeyInfo {
        id: k.id.clone(),
        name: k.name.clone(),
        scopes: k.scopes.clone(),
        created_by: Some(k.created_by.clone()),
        created_at: Some(k.created_at),
        expires_at: k.expires_at,
        last_used_at: k.last_used_at,
        tags,
    }
}

fn live(k: &LocalKey, now: Timestamp) -> bool {
    k.revoked_at.is_none() && k.expires_at.is_none_or(|e| e > now)
}

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "local"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            list: true,
            issue: IssueMode::Create,
            revoke: true,
            verify: true,
            tag: true,
            set_expiry: false,
            idempotent_issue: false,
            deactivate: false,
            prove_identity: false,
            // keyrot records each use itself (a `verify` with the secret).
            last_used: Some(jiff::SignedDuration::ZERO),
        }
    }

    async fn list(&self, now: Timestamp) -> Result<Vec<KeyInfo>, CallError> {
        let keys = self.blocking(|s| s.local_keys()).await?;
        Ok(keys.iter().filter(|k| live(k, now)).map(info).collect())
    }

    async fn issue(&self, req: &IssueRequest) -> Result<IssuedKey, CallError> {
        let mut raw = Zeroizing::new(vec![0u8; self.secret_bytes]);
        rand::rng().fill(raw.as_mut_slice());
        let secret =
            SecretString::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&*raw));
        let id_bytes: [u8; 8] = rand::rng().random();
        let id = format!("lk_{}", hex(&id_bytes));
        let key = LocalKey {
            id,
            name: req.name.clone(),
            scopes: req.scopes.clone(),
            created_by: req.created_by.clone(),
            created_at: req.now,
            expires_at: Some(req.expires_at.unwrap_or(req.now + self.default_lifetime)),
            secret_sha256: sha256_hex(secret.expose_secret().as_bytes()),
            tag: Some(req.tag.clone()),
            revoked_at: None,
            last_used_at: None,
        };
        let stored = key.clone();
        self.blocking(move |s| s.write(|tx| tx.local_put(&stored)))
            .await?;
        Ok(IssuedKey {
            info: info(&key),
            secret,
        })
    }

    async fn find_tagged(&self, tag: &str, now: Timestamp) -> Result<Vec<KeyInfo>, CallError> {
        let keys = self.blocking(|s| s.local_keys()).await?;
        Ok(keys
            .iter()
            .filter(|k| live(k, now) && k.tag.as_deref() == Some(tag))
            .map(info)
            .collect())
    }

    async fn verify(
        &self,
        id: &str,
        secret: &SecretString,
        now: Timestamp,
    ) -> Result<(), CallError> {
        let hash = sha256_hex(secret.expose_secret().as_bytes());
        let id = id.to_string();
        self.blocking(move |s| {
            s.write(|tx| {
                let Some(mut key) = tx.local_get(&id)? else {
                    return Ok(Err(format!("local key {id} does not exist")));
                };
                if !live(&key, now) {
                    return Ok(Err(format!("local key {id} is revoked or expired")));
                }
                if key.secret_sha256 != hash {
                    return Ok(Err(format!("secret does not match local key {id}")));
                }
                key.last_used_at = Some(now);
                tx.local_put(&key)?;
                Ok(Ok(()))
            })
        })
        .await?
        .map_err(CallError::permanent)
    }

    /// The use `verify` recorded; a key keyrot does not hold is unknown.
    async fn last_used(&self, id: &str, _now: Timestamp) -> Result<super::LastUse, CallError> {
        let id = id.to_string();
        let keys = self.blocking(|s| s.local_keys()).await?;
        let key = keys.into_iter().find(|k| k.id == id);
        Ok(match key {
            None => super::LastUse::Unknown {
                why: format!("local key {id} does not exist"),
            },
            Some(k) => match k.last_used_at {
                None => super::LastUse::Never,
                Some(at) => super::LastUse::At { at },
            },
        })
    }

    async fn revoke(&self, id: &str, now: Timestamp) -> Result<(), CallError> {
        let id = id.to_string();
        self.blocking(move |s| {
            s.write(|tx| {
                if let Some(mut key) = tx.local_get(&id)?
                    && key.revoked_at.is_none()
                {
                    key.revoked_at = Some(now);
                    tx.local_put(&key)?;
                }
                Ok(())
            })
        })
        .await
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
