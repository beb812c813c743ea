//! The `openbao-approle` provider: each key is one AppRole secret-id of a
//! role of an OpenBao/Vault AppRole auth mount. The key's name is the role
//! name; its id is `{role}/{secret_id_accessor}`, which is all `revoke`
//! needs. A role may hold many secret-ids at once, so the old and the new
//! key overlap.
//!
//! - `list`: the roles (`roles`, or `LIST auth/{mount}/role`), each role's
//!   accessors (`LIST .../secret-id`; an empty list answers 404), and each
//!   accessor looked up for its times and metadata. Expired secret-ids the
//!   server has not tidied yet are left out.
//! - `issue`: `POST .../secret-id` with `ttl` (the requested expiry) and
//!   `metadata` carrying `keyrot_rotation` (the rotation id: the crash
//!   recovery tag) and `keyrot_created_by`.
//! - `verify`: the secret is looked up by value (`.../secret-id/lookup`),
//!   which proves it is secret-id `id` of the role without using it; then,
//!   unless the secret-id has a limited number of uses, keyrot logs in with
//!   the role's role-id and revokes the token that login returned at once,
//!   so verification leaves nothing behind. A role's role-id is read once
//!   and kept; a login refused with a kept role-id reads it again (an
//!   operator may have changed it, or re-created the role) and, if it
//!   changed, tries once more.
//! - `revoke`: `.../secret-id-accessor/destroy`; a secret-id or role that
//!   is already gone counts as done.
//!
//! Talking to the server (keyrot's own token or AppRole login, namespace,
//! TLS) is [`crate::vault`]'s job. Secret-ids and login tokens live only in
//! `SecretString`s and wiped buffers; errors carry accessors, never them.

mod api;
mod wire;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use futures::stream::{self, StreamExt, TryStreamExt};
use jiff::{SignedDuration, Timestamp};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;

use self::api::{detail, role_missing};
use self::wire::{AccessorBody, IssueAnswer, IssueBody, expiry};
use super::{Capabilities, IssueMode, IssueRequest, IssuedKey, Provider};
use crate::vault::{JsonBody, VaultClient, VaultOptions};
use keyrot_config::OpenBaoAppRoleProviderConfig;
use keyrot_core::error::CallError;
use keyrot_core::model::KeyInfo;

/// Metadata key holding the rotation id (the crash-recovery tag).
pub const TAG_KEY: &str = "keyrot_rotation";
/// Metadata key holding who created the secret-id.
pub const CREATED_BY_KEY: &str = "keyrot_created_by";
/// Calls in flight at once while listing (roles, then accessors).
const LIST_CONCURRENCY: usize = 8;

/// AppRole secret-ids of one AppRole auth mount.
pub struct OpenBaoAppRoleProvider {
    /// Config name.
    name: String,
    /// `provider "NAME"`, for messages.
    who: String,
    /// AppRole auth mount whose roles are managed.
    mount: String,
    /// Roles to manage; `None`: every role of the mount.
    roles: Option<Vec<String>>,
    /// The authenticated client.
    client: VaultClient,
    /// Role-ids already read, by role (not secret, never logged), so a
    /// verification does not read its role's role-id at every login.
    role_ids: Mutex<HashMap<String, String>>,
}

impl fmt::Debug for OpenBaoAppRoleProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenBaoAppRoleProvider")
            .field("name", &self.name)
            .field("mount", &self.mount)
            .field("roles", &self.roles)
            .field("client", &self.client)
            .finish()
    }
}

impl OpenBaoAppRoleProvider {
    /// Builds the provider; keyrot's token or secret id is resolved now,
    /// so a missing one fails at start with the provider and field named.
    pub fn new(
        name: &str,
        cfg: &OpenBaoAppRoleProviderConfig,
        creds: Option<&Path>,
    ) -> Result<OpenBaoAppRoleProvider, CallError> {
        let who = format!("provider {name:?}");
        let client = VaultClient::new(VaultOptions {
            who: &who,
            flavor: "openbao",
            address: &cfg.address,
            namespace: cfg.namespace.as_deref(),
            ca_file: cfg.ca_file.as_deref(),
            timeout: cfg.timeout,
            auth: &cfg.auth,
            credentials_dir: creds,
        })?;
        Ok(OpenBaoAppRoleProvider {
            name: name.to_string(),
            who,
            mount: cfg.mount.clone(),
            roles: cfg.roles.clone(),
            client,
            role_ids: Mutex::new(HashMap::new()),
        })
    }
}

#[async_trait]
impl Provider for OpenBaoAppRoleProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "openbao-approle"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            list: true,
            issue: IssueMode::Create,
            verify: true,
            revoke: true,
            tag: true,
            ..Capabilities::default()
        }
    }

    async fn list(&self, now: Timestamp) -> Result<Vec<KeyInfo>, CallError> {
        let roles = self.roles().await?;
        let per_role: Vec<(String, Vec<String>)> = stream::iter(roles)
            .map(|role| async move {
                let accessors = self.accessors(&role).await?;
                Ok::<_, CallError>((role, accessors))
            })
            .buffer_unordered(LIST_CONCURRENCY)
            .try_collect()
            .await?;
        let mut pairs = Vec::new();
        for (role, accessors) in per_role {
            pairs.extend(accessors.into_iter().map(|a| (role.clone(), a)));
        }
        let found: Vec<Option<KeyInfo>> = stream::iter(pairs)
            .map(|(role, acc)| async move { self.lookup(&role, &acc, now).await })
            .buffer_unordered(LIST_CONCURRENCY)
            .try_collect()
            .await?;
        let mut keys: Vec<KeyInfo> = found.into_iter().flatten().collect();
        keys.sort_by(|a, b| (&a.name, a.created_at, &a.id).cmp(&(&b.name, b.created_at, &b.id)));
        Ok(keys)
    }

    async fn issue(&self, req: &IssueRequest) -> Result<IssuedKey, CallError> {
        let role = req.name.as_str();
        self.check_role(role)?;
        let what = format!("create a secret-id of role {role:?}");
        let ttl = match req.expires_at {
            None => None,
            Some(at) => {
                let secs = at.duration_since(req.now).as_secs();
                if secs < 1 {
                    return Err(CallError::permanent(format!(
                        "{}: {what}: the requested expiry {at} is not in the future",
                        self.who
                    )));
                }
                Some(secs)
            }
        };
        let meta = BTreeMap::from([
            (TAG_KEY, req.tag.as_str()),
            (CREATED_BY_KEY, req.created_by.as_str()),
        ]);
        let metadata = serde_json::to_string(&meta).map_err(|e| self.body_error(&what, &e))?;
        let body = JsonBody::json(&IssueBody {
            metadata: &metadata,
            ttl,
        })
        .map_err(|e| self.body_error(&what, &e))?;
        let path = self.role_path(role, "secret-id");
        let ans = self
            .client
            .request(&what, Method::POST, &path, Some(&body))
            .await?;
        if !ans.status.is_success() {
            let d = detail(&ans);
            if d.contains("cannot be longer than") {
                let asked = ttl
                    .map(|s| keyrot_core::policy::format_duration(SignedDuration::from_secs(s)))
                    .unwrap_or_default();
                return Err(self.client.status_error(
                    &what,
                    &ans,
                    Some(&format!(
                        "keyrot asked for a lifetime of {asked} (the policy's new key lifetime) and the role's `secret_id_ttl` is shorter: shorten `new_key_lifetime` or raise the role's secret_id_ttl"
                    )),
                ));
            }
            if role_missing(&ans, role) {
                return Err(self.client.status_error(
                    &what,
                    &ans,
                    Some(&format!(
                        "create role {role:?} under auth/{}, or fix the `[[key]]` name (it is the role name)",
                        self.mount
                    )),
                ));
            }
            return Err(self.status_error(&what, &ans, &format!("`update` on {path}")));
        }
        let issued: IssueAnswer = self.client.take_json(ans, &what)?;
        let d = issued.data;
        let expires_at = expiry(req.now, d.secret_id_ttl);
        let tags = meta
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tracing::debug!(who = %self.who, role, accessor = %d.secret_id_accessor, "secret-id created");
        Ok(IssuedKey {
            info: KeyInfo {
                id: format!("{role}/{}", d.secret_id_accessor),
                name: role.to_string(),
                scopes: Vec::new(),
                created_by: Some(req.created_by.clone()),
                created_at: Some(req.now),
                expires_at,
                last_used_at: None,
                tags,
            },
            secret: d.secret_id,
        })
    }

    async fn find_tagged(&self, tag: &str, now: Timestamp) -> Result<Vec<KeyInfo>, CallError> {
        Ok(self
            .list(now)
            .await?
            .into_iter()
            .filter(|k| k.tags.get(TAG_KEY).is_some_and(|t| t == tag))
            .collect())
    }

    async fn verify(
        &self,
        id: &str,
        secret: &SecretString,
        _now: Timestamp,
    ) -> Result<(), CallError> {
        let (role, accessor) = self.split_id(id)?;
        let entry = self.lookup_secret(role, accessor, secret).await?;
        if entry.secret_id_num_uses > 0 {
            // A login would use one of its few uses up (the last one
            // destroys it): the lookup by value is the verification.
            tracing::info!(who = %self.who, key = id, uses_left = entry.secret_id_num_uses, "secret-id has limited uses: verified by lookup, without logging in");
            return Ok(());
        }
        self.login_and_revoke(role, accessor, secret).await
    }

    async fn revoke(&self, id: &str, _now: Timestamp) -> Result<(), CallError> {
        let (role, accessor) = self.split_id(id)?;
        let path = self.role_path(role, "secret-id-accessor/destroy");
        let what = format!("destroy secret-id {accessor} of role {role:?}");
        let body = JsonBody::json(&AccessorBody {
            secret_id_accessor: accessor,
        })
        .map_err(|e| self.body_error(&what, &e))?;
        let ans = self
            .client
            .request(&what, Method::POST, &path, Some(&body))
            .await?;
        if ans.status.is_success() {
            return Ok(());
        }
        // Already destroyed (OpenBao answers 500 "failed to find accessor
        // entry"), or its role is gone and its secret-ids with it.
        if ans.status == StatusCode::NOT_FOUND
            || detail(&ans).contains("failed to find accessor entry")
            || role_missing(&ans, role)
        {
            tracing::debug!(who = %self.who, key = id, "secret-id already gone");
            return Ok(());
        }
        Err(self.status_error(&what, &ans, &format!("`update` on {path}")))
    }
}

#[cfg(test)]
mod tests;
