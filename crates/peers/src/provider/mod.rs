//! Providers: the systems that mint and revoke keys. One trait, one file per
//! provider. A provider knows nothing of rotations or the store's rotation
//! state: it answers calls, and the state machine decides what to call.

pub mod atlassian;
pub mod aws_iam;
pub mod exec;
pub mod http;
pub mod limit;
pub mod local;
pub mod openbao_approle;
pub mod tag;

use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use secrecy::SecretString;

use keyrot_config::{ProviderConfig, ProviderKind};
pub use keyrot_core::error::CallError;
use keyrot_core::model::KeyInfo;
pub use keyrot_core::model::LastUse;
use keyrot_core::store::Store;

pub use keyrot_core::model::{Capabilities, IssueMode};

/// What [`Provider::prove_identity`] found out about a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// The secret provably belongs to the key asked about.
    Proven,
    /// The secret authenticates, but the provider cannot tell as which key
    /// (why, in words).
    Unprovable(String),
}

/// What an interrupted issue may have left at the provider.
#[derive(Clone, Debug, Default)]
pub struct Interrupted {
    /// Keys the interrupted call created (their secret was never seen).
    pub orphans: Vec<KeyInfo>,
    /// Whether the old key is still live at the provider (`None`: unknown).
    pub old_alive: Option<bool>,
}

/// What the state machine asks a provider to create.
#[derive(Clone, Debug, Default)]
pub struct IssueRequest {
    /// Name of the new key (the slot's name).
    pub name: String,
    /// Scopes of the new key.
    pub scopes: Vec<String>,
    /// Requested expiry (None: the provider's default).
    pub expires_at: Option<Timestamp>,
    /// The rotation id, sent as the key's tag / idempotency token.
    pub tag: String,
    /// The `Idempotency-Key` to send where a provider takes one (empty:
    /// the tag). A fresh one after a recovery revoked what an earlier
    /// attempt made, so a server that honours the header does not answer
    /// with that revoked key again.
    pub idempotency_key: String,
    /// The key being replaced, if any.
    pub replaces: Option<String>,
    /// When the replaced key must stop working, said explicitly to every
    /// provider that can be told (never by omission): keyrot revokes the
    /// old key itself when the overlap ends, so this is the old key's
    /// current end, far enough for a lost answer to be recovered while it
    /// lives.
    pub old_key_expires_at: Option<Timestamp>,
    /// Why (the policy's or the caller's reason), for the provider's audit.
    pub reason: String,
    /// Who triggered it (`keyrot@HOST`, the CLI user, the API caller).
    pub rotated_by: String,
    /// From where: `schedule`, `cli`, `control-api`, or the caller's words.
    pub initiated_from: String,
    /// The policy (or the caller's policy id) the rotation follows.
    pub policy_id: String,
    /// The caller asked the provider to notify its contacts.
    pub notify_contacts: bool,
    /// An earlier attempt of this same issue may have reached the provider
    /// (a resume after a crash or a failed call). Providers whose issue is
    /// a native rotate use it to recover: the old key may already be gone.
    pub resumed: bool,
    /// Who is creating it (recorded where the provider keeps it).
    pub created_by: String,
    /// The current time.
    pub now: Timestamp,
}

/// A key just created, with its one-time secret.
pub struct IssuedKey {
    /// The new key's metadata.
    pub info: KeyInfo,
    /// The one-time secret. Sealed into the store before anything else.
    pub secret: SecretString,
}

impl std::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedKey")
            .field("info", &self.info)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// A system that mints and revokes keys.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Config name.
    fn name(&self) -> &str;
    /// Provider type (`local`, ...).
    fn kind(&self) -> &'static str;
    /// What it can do.
    fn capabilities(&self) -> Capabilities;
    /// Every live key.
    async fn list(&self, now: Timestamp) -> Result<Vec<KeyInfo>, CallError>;
    /// Creates a key.
    async fn issue(&self, req: &IssueRequest) -> Result<IssuedKey, CallError>;
    /// Live keys tagged with `tag` (a rotation id).
    async fn find_tagged(&self, tag: &str, now: Timestamp) -> Result<Vec<KeyInfo>, CallError>;
    /// Checks that `secret` authenticates as key `id`.
    async fn verify(
        &self,
        id: &str,
        secret: &SecretString,
        now: Timestamp,
    ) -> Result<(), CallError>;
    /// Revokes key `id`; a key already revoked or gone counts as done.
    async fn revoke(&self, id: &str, now: Timestamp) -> Result<(), CallError>;
    /// Proves that `secret` belongs to key `id` (not merely that it
    /// authenticates): `Err` (permanent) when it provably belongs to another
    /// key or does not authenticate. Only called with
    /// [`Capabilities::prove_identity`]; the default cannot prove anything.
    async fn prove_identity(
        &self,
        id: &str,
        secret: &SecretString,
        now: Timestamp,
    ) -> Result<Identity, CallError> {
        self.verify(id, secret, now).await?;
        Ok(Identity::Unprovable(format!(
            "provider {} can check that a secret authenticates, not which key it belongs to",
            self.name()
        )))
    }
    /// What an interrupted issue of `req` (begun at `since`) may have left:
    /// keys found by tag where the provider tags, else by listing keys with
    /// the request's name created at or after `since` that are not in
    /// `known`; and whether the old key still lives. Errors when the
    /// provider can neither tag nor list.
    async fn find_interrupted(
        &self,
        req: &IssueRequest,
        since: Timestamp,
        known: &std::collections::HashSet<String>,
    ) -> Result<Interrupted, CallError> {
        let caps = self.capabilities();
        if caps.tag {
            return Ok(Interrupted {
                orphans: self.find_tagged(&req.tag, req.now).await?,
                old_alive: None,
            });
        }
        if !caps.list {
            return Err(CallError::permanent(format!(
                "interrupted while issuing, and provider {} can neither tag nor list keys: look for a key named {:?} created after {since} and revoke it before resuming",
                self.name(),
                req.name
            )));
        }
        let listed = self.list(req.now).await?;
        let old_alive = req
            .replaces
            .as_ref()
            .map(|old| listed.iter().any(|k| &k.id == old));
        let orphans = listed
            .into_iter()
            .filter(|k| {
                k.name == req.name
                    && Some(&k.id) != req.replaces.as_ref()
                    && !known.contains(&k.id)
                    && k.created_at.is_some_and(|t| t >= since)
            })
            .collect();
        Ok(Interrupted { orphans, old_alive })
    }
    /// Whether the keys [`Provider::list`] returns carry keyrot's rotation
    /// tag ([`tag::rotation_tag`]), so the inventory sync can sweep them
    /// for orphans. The default: a provider that tags and lists.
    fn lists_tags(&self) -> bool {
        let caps = self.capabilities();
        caps.tag && caps.list
    }
    /// Sets key `id` inactive without deleting it (restorable until it is
    /// revoked); only called when [`Capabilities::deactivate`]. Idempotent.
    async fn deactivate(&self, id: &str, now: Timestamp) -> Result<(), CallError> {
        let _ = (id, now);
        Ok(())
    }
    /// When key `id` was last used, as the provider reports it; only called
    /// with [`Capabilities::last_used`] (how stale the answer may be). An
    /// answer that does not clearly say "never" or a readable time is
    /// [`LastUse::Unknown`], never "never"; a key the provider no longer
    /// knows is [`LastUse::Unknown`] too (the revoke step decides what a
    /// key already gone means). The default: the provider cannot tell.
    async fn last_used(&self, id: &str, now: Timestamp) -> Result<LastUse, CallError> {
        let _ = (id, now);
        Err(CallError::permanent(format!(
            "provider {} does not report when a key was last used",
            self.name()
        )))
    }
}

/// Builds a provider from its config.
pub fn build(cfg: &ProviderConfig, store: &Arc<Store>) -> Result<Arc<dyn Provider>, CallError> {
    let creds = keyrot_config::credentials_dir_from_env();
    match &cfg.kind {
        ProviderKind::Local(local) => Ok(Arc::new(local::LocalProvider::new(
            &cfg.name,
            local,
            Arc::clone(store),
        ))),
        ProviderKind::Atlassian(a) => Ok(Arc::new(atlassian::AtlassianProvider::from_config(
            &cfg.name,
            a,
            keyrot_config::credentials_dir_from_env().as_deref(),
        )?)),
        ProviderKind::OpenBaoAppRole(c) => Ok(Arc::new(
            openbao_approle::OpenBaoAppRoleProvider::new(&cfg.name, c, creds.as_deref())?,
        )),
        ProviderKind::AwsIam(c) => Ok(Arc::new(aws_iam::AwsIamProvider::new(
            &cfg.name,
            c,
            creds.as_deref(),
        )?)),
        ProviderKind::Http(c) => Ok(Arc::new(http::HttpProvider::new(
            &cfg.name,
            c,
            creds.as_deref(),
        )?)),
        ProviderKind::Exec(c) => Ok(Arc::new(exec::ExecProvider::new(
            &cfg.name,
            c,
            creds.as_deref(),
        )?)),
    }
}
