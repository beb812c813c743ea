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

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use futures::stream::{self, StreamExt, TryStreamExt};
use jiff::{SignedDuration, Timestamp};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{Capabilities, IssueMode, IssueRequest, IssuedKey, Provider};
use crate::http::{Answer, redact};
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

/// A `LIST` answer.
#[derive(Deserialize)]
struct ListAnswer {
    /// Its data.
    data: ListData,
}

/// The names a `LIST` returned.
#[derive(Deserialize)]
struct ListData {
    /// Role names or accessors.
    #[serde(default)]
    keys: Vec<String>,
}

/// A secret-id lookup answer (by accessor or by value).
#[derive(Deserialize)]
struct LookupAnswer {
    /// The secret-id's properties.
    data: Option<SecretIdEntry>,
}

/// What keyrot reads of a secret-id (never the secret-id itself).
#[derive(Deserialize)]
struct SecretIdEntry {
    /// Its accessor.
    secret_id_accessor: String,
    /// RFC 3339.
    #[serde(default)]
    creation_time: Option<String>,
    /// RFC 3339; year 1 when it never expires.
    #[serde(default)]
    expiration_time: Option<String>,
    /// Its TTL in seconds (0: none).
    #[serde(default)]
    secret_id_ttl: u64,
    /// Logins left (0: unlimited).
    #[serde(default)]
    secret_id_num_uses: u64,
    /// Metadata given at creation.
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}

/// `POST .../secret-id` answer.
#[derive(Deserialize)]
struct IssueAnswer {
    /// The new secret-id.
    data: IssueData,
}

/// The new secret-id and its accessor.
#[derive(Deserialize)]
struct IssueData {
    /// The secret-id: straight into a `SecretString`.
    secret_id: SecretString,
    /// Its accessor.
    secret_id_accessor: String,
    /// Its TTL in seconds (0: none).
    #[serde(default)]
    secret_id_ttl: u64,
}

/// `POST .../secret-id` body.
#[derive(Serialize)]
struct IssueBody<'a> {
    /// Metadata as a JSON object in a string (what the API takes).
    metadata: &'a str,
    /// TTL in seconds; absent: the role's `secret_id_ttl`.
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl: Option<i64>,
}

/// `GET .../role-id` answer.
#[derive(Deserialize)]
struct RoleIdAnswer {
    /// Its data.
    data: RoleIdData,
}

/// The role's role-id.
#[derive(Deserialize)]
struct RoleIdData {
    /// Role-id (not a secret by itself, but never logged).
    role_id: String,
}

/// An AppRole login answer.
#[derive(Deserialize)]
struct LoginAnswer {
    /// Absent when the server gave no token.
    auth: Option<LoginAuth>,
}

/// The token a verification login got.
#[derive(Deserialize)]
struct LoginAuth {
    /// The token: straight into a `SecretString`.
    client_token: SecretString,
}

/// `{"secret_id_accessor": ..}`.
#[derive(Serialize)]
struct AccessorBody<'a> {
    /// The accessor.
    secret_id_accessor: &'a str,
}

/// `{"secret_id": ..}`, serialised into a wiped buffer.
#[derive(Serialize)]
struct SecretIdBody<'a> {
    /// The secret-id.
    secret_id: &'a str,
}

/// An AppRole login body, serialised into a wiped buffer.
#[derive(Serialize)]
struct LoginBody<'a> {
    /// The role's role-id.
    role_id: &'a str,
    /// The secret-id being verified.
    secret_id: &'a str,
}

/// `auth/token/revoke` body, serialised into a wiped buffer.
#[derive(Serialize)]
struct TokenBody<'a> {
    /// The token to revoke.
    token: &'a str,
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

    /// `auth/{mount}/role/{role}/{rest}`.
    fn role_path(&self, role: &str, rest: &str) -> String {
        format!("auth/{}/role/{role}/{rest}", self.mount)
    }

    /// The error for an answer not accepted at `what`; a 403 names what
    /// keyrot's policy must allow (`needs`), a 404 from no route names the
    /// mount.
    fn status_error(&self, what: &str, ans: &Answer, needs: &str) -> CallError {
        let hint = match ans.status {
            StatusCode::FORBIDDEN => Some(format!(
                "{}; keyrot needs {needs}",
                self.client.refused_hint()
            )),
            StatusCode::NOT_FOUND if detail(ans).contains("no handler for route") => Some(format!(
                "is `mount` {:?} an AppRole auth mount?",
                self.mount
            )),
            _ => None,
        };
        self.client.status_error(what, ans, hint.as_deref())
    }

    /// A request body that could not be serialised (cannot happen for
    /// these shapes).
    /// POSTs `body`, which holds `secret`, to `path`: the encoded body is
    /// wiped once sent, and `secret` is redacted from any error.
    async fn post_secret<B: Serialize>(
        &self,
        what: &str,
        path: &str,
        body: &B,
        secret: &SecretString,
    ) -> Result<Answer, CallError> {
        let body = JsonBody::json(body).map_err(|e| self.body_error(what, &e))?;
        let ans = self
            .client
            .request(what, Method::POST, path, Some(&body))
            .await
            .map_err(|e| redact(e, secret.expose_secret()));
        drop(body);
        ans
    }

    fn body_error(&self, what: &str, e: &serde_json::Error) -> CallError {
        CallError::permanent(format!(
            "{}: {what}: cannot build the request: {e}",
            self.who
        ))
    }

    /// `id` as `(role, accessor)`.
    fn split_id<'a>(&self, id: &'a str) -> Result<(&'a str, &'a str), CallError> {
        id.split_once('/')
            .filter(|(role, acc)| role_ok(role) && !acc.is_empty() && !acc.contains('/'))
            .ok_or_else(|| {
                CallError::permanent(format!(
                    "{}: key id {id:?} is not ROLE/SECRET_ID_ACCESSOR",
                    self.who
                ))
            })
    }

    /// The roles to look at: `roles`, or every role of the mount.
    async fn roles(&self) -> Result<Vec<String>, CallError> {
        if let Some(r) = &self.roles {
            return Ok(r.clone());
        }
        let path = format!("auth/{}/role", self.mount);
        let what = format!("list the roles of {path}");
        let ans = self.client.request(&what, list(), &path, None).await?;
        match ans.status {
            StatusCode::OK => Ok(self.client.take_json::<ListAnswer>(ans, &what)?.data.keys),
            StatusCode::NOT_FOUND if is_empty_list(&ans) => Ok(Vec::new()),
            _ => Err(self.status_error(&what, &ans, &format!("`list` on {path}"))),
        }
    }

    /// The accessors of `role`'s secret-ids (expired ones included until
    /// the server tidies them); none when the role does not exist.
    async fn accessors(&self, role: &str) -> Result<Vec<String>, CallError> {
        let path = self.role_path(role, "secret-id");
        let what = format!("list the secret-ids of role {role:?}");
        let ans = self.client.request(&what, list(), &path, None).await?;
        match ans.status {
            StatusCode::OK => Ok(self.client.take_json::<ListAnswer>(ans, &what)?.data.keys),
            StatusCode::NOT_FOUND if is_empty_list(&ans) => Ok(Vec::new()),
            _ if role_missing(&ans, role) => {
                if self.roles.is_some() {
                    tracing::warn!(who = %self.who, role, "a role listed in `roles` does not exist");
                }
                Ok(Vec::new())
            }
            _ => Err(self.status_error(&what, &ans, &format!("`list` on {path}"))),
        }
    }

    /// Secret-id `accessor` of `role` as a key; `None` when it is gone or
    /// expired.
    async fn lookup(
        &self,
        role: &str,
        accessor: &str,
        now: Timestamp,
    ) -> Result<Option<KeyInfo>, CallError> {
        let path = self.role_path(role, "secret-id-accessor/lookup");
        let what = format!("look up secret-id accessor {accessor} of role {role:?}");
        let body = JsonBody::json(&AccessorBody {
            secret_id_accessor: accessor,
        })
        .map_err(|e| self.body_error(&what, &e))?;
        let ans = self
            .client
            .request(&what, Method::POST, &path, Some(&body))
            .await?;
        match ans.status {
            StatusCode::OK => {
                let a: LookupAnswer = self.client.take_json(ans, &what)?;
                Ok(a.data.and_then(|e| key_info(role, e, now)))
            }
            // 204: expired (not tidied yet); 404: no such accessor.
            StatusCode::NO_CONTENT | StatusCode::NOT_FOUND => Ok(None),
            _ if role_missing(&ans, role) => Ok(None),
            _ => Err(self.status_error(&what, &ans, &format!("`update` on {path}"))),
        }
    }

    /// The role-id of `role`.
    async fn role_id(&self, role: &str) -> Result<String, CallError> {
        let path = self.role_path(role, "role-id");
        let what = format!("read the role-id of role {role:?}");
        let ans = self.client.request(&what, Method::GET, &path, None).await?;
        if !ans.status.is_success() {
            return Err(self.status_error(&what, &ans, &format!("`read` on {path}")));
        }
        let a: RoleIdAnswer = self.client.take_json(ans, &what)?;
        Ok(a.data.role_id)
    }

    /// Secret-id `secret` looked up by value: its entry, or an error when
    /// it is not a live secret-id of `role` with accessor `accessor`.
    async fn lookup_secret(
        &self,
        role: &str,
        accessor: &str,
        secret: &SecretString,
    ) -> Result<SecretIdEntry, CallError> {
        let path = self.role_path(role, "secret-id/lookup");
        let what = format!("look up the secret of key {role}/{accessor}");
        let body = SecretIdBody {
            secret_id: secret.expose_secret(),
        };
        let ans = self.post_secret(&what, &path, &body, secret).await?;
        let entry = match ans.status {
            StatusCode::OK => self.client.take_json::<LookupAnswer>(ans, &what)?.data,
            StatusCode::NO_CONTENT | StatusCode::NOT_FOUND => None,
            _ => {
                let err = self.status_error(&what, &ans, &format!("`update` on {path}"));
                return Err(redact(err, secret.expose_secret()));
            }
        };
        match entry {
            Some(e) if e.secret_id_accessor == accessor => Ok(e),
            Some(e) => Err(CallError::permanent(format!(
                "{}: {what}: the secret is secret-id {} of role {role:?}, not {accessor}",
                self.who, e.secret_id_accessor
            ))),
            None => Err(CallError::permanent(format!(
                "{}: {what}: {} knows no live secret-id of role {role:?} with this value (expired, used up or destroyed?)",
                self.who,
                self.client.peer()
            ))),
        }
    }

    /// The role-id of `role`, and whether it was kept from an earlier
    /// read: the kept one unless `fresh`, else read now and kept.
    async fn known_role_id(&self, role: &str, fresh: bool) -> Result<(String, bool), CallError> {
        let kept = self.role_ids().get(role).cloned();
        match kept {
            Some(id) if !fresh => Ok((id, true)),
            _ => {
                let id = self.role_id(role).await?;
                self.role_ids().insert(role.to_string(), id.clone());
                Ok((id, false))
            }
        }
    }

    /// The kept role-ids.
    fn role_ids(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.role_ids.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Logs in as `role` with `secret` and revokes the token at once. A
    /// login refused with a kept role-id is tried once more if the role-id
    /// read again differs.
    async fn login_and_revoke(
        &self,
        role: &str,
        accessor: &str,
        secret: &SecretString,
    ) -> Result<(), CallError> {
        let (role_id, kept) = self.known_role_id(role, false).await?;
        let mut ans = self.login(role, accessor, &role_id, secret).await?;
        if !ans.status.is_success() && kept {
            let (again, _) = self.known_role_id(role, true).await?;
            if again != role_id {
                tracing::info!(who = %self.who, role, "the role's role-id changed; logging in with the new one");
                ans = self.login(role, accessor, &again, secret).await?;
            }
        }
        let what = format!("log in with key {role}/{accessor}");
        if !ans.status.is_success() {
            let hint = "the secret-id does not log in (expired, used up, destroyed, or the role's CIDR bindings exclude keyrot's host?)";
            let err = self.client.status_error(&what, &ans, Some(hint));
            return Err(redact(err, secret.expose_secret()));
        }
        let a: LoginAnswer = self.client.take_json(ans, &what)?;
        let token = a.auth.ok_or_else(|| {
            CallError::transient(format!(
                "{}: {what}: {} answered without a token",
                self.who,
                self.client.peer()
            ))
        })?;
        self.revoke_token(&token.client_token, role, accessor).await
    }

    /// One AppRole login of `role` with `role_id` and `secret`: the answer,
    /// whatever its status.
    async fn login(
        &self,
        role: &str,
        accessor: &str,
        role_id: &str,
        secret: &SecretString,
    ) -> Result<Answer, CallError> {
        let path = format!("auth/{}/login", self.mount);
        let what = format!("log in with key {role}/{accessor}");
        let body = LoginBody {
            role_id,
            secret_id: secret.expose_secret(),
        };
        self.post_secret(&what, &path, &body, secret).await
    }

    /// Revokes the token a verification login got.
    async fn revoke_token(
        &self,
        token: &SecretString,
        role: &str,
        accessor: &str,
    ) -> Result<(), CallError> {
        let path = "auth/token/revoke";
        let what = format!("revoke the token of the verification login of key {role}/{accessor}");
        let body = JsonBody::json(&TokenBody {
            token: token.expose_secret(),
        })
        .map_err(|e| self.body_error(&what, &e))?;
        let ans = self
            .client
            .request(&what, Method::POST, path, Some(&body))
            .await
            .map_err(|e| redact(e, token.expose_secret()))?;
        drop(body);
        if !ans.status.is_success() {
            let err = self.status_error(&what, &ans, &format!("`update` on {path}"));
            return Err(redact(err, token.expose_secret()));
        }
        Ok(())
    }

    /// Checks that `role` may be issued to by this provider.
    fn check_role(&self, role: &str) -> Result<(), CallError> {
        if !role_ok(role) {
            return Err(CallError::permanent(format!(
                "{}: {role:?} is not an AppRole role name (letters, digits, `_`, `-`, `.` and `@`)",
                self.who
            )));
        }
        if let Some(roles) = &self.roles
            && !roles.iter().any(|r| r == role)
        {
            return Err(CallError::permanent(format!(
                "{}: role {role:?} is not in this provider's `roles` ({})",
                self.who,
                roles.join(", ")
            )));
        }
        Ok(())
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

/// The `LIST` method.
fn list() -> Method {
    Method::from_bytes(b"LIST").unwrap_or(Method::GET)
}

/// The error text of an answer (empty when it has none).
fn detail(ans: &Answer) -> String {
    crate::http::error_detail(&ans.body).unwrap_or_default()
}

/// A 404 with no error text: OpenBao's answer to a `LIST` of nothing.
fn is_empty_list(ans: &Answer) -> bool {
    ans.status == StatusCode::NOT_FOUND && detail(ans).is_empty()
}

/// The answer says role `role` does not exist.
fn role_missing(ans: &Answer, role: &str) -> bool {
    !ans.status.is_success() && detail(ans).contains(&format!("role {role:?} does not exist"))
}

/// True when `role` can be a role name (and a path segment).
fn role_ok(role: &str) -> bool {
    !role.is_empty()
        && role
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
}

/// A looked-up secret-id as a key; `None` once it has expired.
fn key_info(role: &str, e: SecretIdEntry, now: Timestamp) -> Option<KeyInfo> {
    // Year 1 (`0001-01-01T00:00:00Z`) means "never".
    let expires_at = e
        .expiration_time
        .as_deref()
        .and_then(timestamp)
        .filter(|t| e.secret_id_ttl > 0 && t.as_second() > 0);
    if expires_at.is_some_and(|t| t <= now) {
        return None;
    }
    let tags = e.metadata.unwrap_or_default();
    Some(KeyInfo {
        id: format!("{role}/{}", e.secret_id_accessor),
        name: role.to_string(),
        scopes: Vec::new(),
        created_by: tags.get(CREATED_BY_KEY).cloned(),
        created_at: e.creation_time.as_deref().and_then(timestamp),
        expires_at,
        last_used_at: None,
        tags,
    })
}

/// An RFC 3339 time as OpenBao writes it; `None` (the field is left
/// empty) when it is not one, rather than failing the whole listing.
fn timestamp(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

/// `now` plus a TTL in seconds; `None` for 0 (no expiry) or out of range.
fn expiry(now: Timestamp, ttl_secs: u64) -> Option<Timestamp> {
    let secs = i64::try_from(ttl_secs).ok().filter(|s| *s > 0)?;
    now.checked_add(SignedDuration::from_secs(secs)).ok()
}

#[cfg(test)]
mod tests;
