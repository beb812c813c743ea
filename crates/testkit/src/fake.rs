//! A provider whose keys live in memory outside keyrot and survive its
//! crashes, shaped like the providers the local one is not: one that sets
//! the old key inactive for the overlap, and one that cannot create keys
//! (people make them by hand and enroll them: the assisted path).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use jiff::Timestamp;
use secrecy::{ExposeSecret as _, SecretString};

use keyrot_core::crypto::sha256_hex;
use keyrot_core::model::KeyInfo;
use keyrot_peers::provider::{
    CallError, Capabilities, IssueMode, IssueRequest, IssuedKey, Provider,
};

/// What the provider can do besides creating, tagging, listing, verifying
/// and revoking keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// keyrot creates keys and sets the old one inactive during the overlap
    /// (as AWS IAM can).
    Deactivating,
    /// keyrot cannot create keys: people do, and enroll them.
    Assisted,
}

/// One key as the provider holds it.
#[derive(Clone, Debug)]
pub struct FakeKey {
    /// Its id.
    pub id: String,
    /// The rotation id it was tagged with (None: made by hand).
    pub tag: Option<String>,
    /// SHA-256 of its secret.
    pub secret_sha256: String,
    /// Revoked (for good).
    pub revoked: bool,
    /// Set inactive (restorable until revoked).
    pub inactive: bool,
}

/// The provider (its config name is `local`, the world's slot's provider).
pub struct Fake {
    shape: Shape,
    keys: Mutex<Vec<FakeKey>>,
    /// Keys people made by hand, by the rotation they made them for, with
    /// the secret they would paste: made once, enrolled again after a crash.
    by_hand: Mutex<BTreeMap<String, (String, String)>>,
}

impl Fake {
    /// An empty provider of `shape`.
    pub fn new(shape: Shape) -> Fake {
        Fake {
            shape,
            keys: Mutex::new(Vec::new()),
            by_hand: Mutex::new(BTreeMap::new()),
        }
    }

    /// Every key it ever held.
    pub fn keys(&self) -> Vec<FakeKey> {
        self.keys.lock().unwrap().clone()
    }

    fn create(&self, tag: Option<String>) -> (FakeKey, String) {
        let mut keys = self.keys.lock().unwrap();
        let n = keys.len() + 1;
        let secret = format!("fake-secret-{n}");
        let key = FakeKey {
            id: format!("fk_{n}"),
            tag,
            secret_sha256: sha256_hex(secret.as_bytes()),
            revoked: false,
            inactive: false,
        };
        keys.push(key.clone());
        (key, secret)
    }

    /// The key a person made by hand for `rotation` and its secret: made
    /// at the first call, the same one after that.
    pub fn made_by_hand(&self, rotation: &str) -> (String, SecretString) {
        let mut by_hand = self.by_hand.lock().unwrap();
        let (id, secret) = by_hand
            .entry(rotation.to_string())
            .or_insert_with(|| {
                let (key, secret) = self.create(None);
                (key.id, secret)
            })
            .clone();
        (id, SecretString::from(secret))
    }

    fn info(k: &FakeKey) -> KeyInfo {
        let mut tags = BTreeMap::new();
        if let Some(t) = &k.tag {
            tags.insert("keyrot-rotation".to_string(), t.clone());
        }
        KeyInfo {
            id: k.id.clone(),
            name: "ci".into(),
            scopes: vec!["read:all".into()],
            created_by: None,
            created_at: None,
            expires_at: None,
            last_used_at: None,
            tags,
        }
    }
}

#[async_trait]
impl Provider for Fake {
    fn name(&self) -> &str {
        "local"
    }

    fn kind(&self) -> &'static str {
        "fake"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            list: true,
            issue: match self.shape {
                Shape::Deactivating => IssueMode::Create,
                Shape::Assisted => IssueMode::Assisted,
            },
            revoke: true,
            verify: true,
            tag: true,
            set_expiry: false,
            idempotent_issue: false,
            deactivate: self.shape == Shape::Deactivating,
            prove_identity: false,
            last_used: None,
        }
    }

    async fn list(&self, _now: Timestamp) -> Result<Vec<KeyInfo>, CallError> {
        let keys = self.keys.lock().unwrap();
        Ok(keys.iter().filter(|k| !k.revoked).map(Fake::info).collect())
    }

    async fn issue(&self, req: &IssueRequest) -> Result<IssuedKey, CallError> {
        if self.shape == Shape::Assisted {
            return Err(CallError::permanent("this provider cannot create keys"));
        }
        let (key, secret) = self.create(Some(req.tag.clone()));
        Ok(IssuedKey {
            info: Fake::info(&key),
            secret: SecretString::from(secret),
        })
    }

    async fn find_tagged(&self, tag: &str, _now: Timestamp) -> Result<Vec<KeyInfo>, CallError> {
        let keys = self.keys.lock().unwrap();
        Ok(keys
            .iter()
            .filter(|k| !k.revoked && k.tag.as_deref() == Some(tag))
            .map(Fake::info)
            .collect())
    }

    async fn verify(
        &self,
        id: &str,
        secret: &SecretString,
        _now: Timestamp,
    ) -> Result<(), CallError> {
        let keys = self.keys.lock().unwrap();
        let hash = sha256_hex(secret.expose_secret().as_bytes());
        match keys.iter().find(|k| k.id == id) {
            Some(k) if k.revoked || k.inactive => Err(CallError::permanent(format!(
                "key {id} is revoked or inactive"
            ))),
            Some(k) if k.secret_sha256 == hash => Ok(()),
            Some(_) => Err(CallError::permanent(format!("not the secret of {id}"))),
            None => Err(CallError::permanent(format!("no key {id}"))),
        }
    }

    async fn revoke(&self, id: &str, _now: Timestamp) -> Result<(), CallError> {
        let mut keys = self.keys.lock().unwrap();
        if let Some(k) = keys.iter_mut().find(|k| k.id == id) {
            k.revoked = true;
        }
        Ok(())
    }

    async fn deactivate(&self, id: &str, _now: Timestamp) -> Result<(), CallError> {
        let mut keys = self.keys.lock().unwrap();
        if let Some(k) = keys.iter_mut().find(|k| k.id == id) {
            k.inactive = true;
        }
        Ok(())
    }
}
