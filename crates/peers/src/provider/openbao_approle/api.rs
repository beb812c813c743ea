//! The AppRole API calls behind the `openbao-approle` provider: roles, their
//! secret-ids and role-ids, lookups by accessor and by value, the
//! verification login and its token's revocation, and the checks on names.

use std::collections::HashMap;
use std::sync::{MutexGuard, PoisonError};

use jiff::Timestamp;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::OpenBaoAppRoleProvider;
use super::wire::{
    AccessorBody, ListAnswer, LoginAnswer, LoginBody, LookupAnswer, RoleIdAnswer, SecretIdBody,
    SecretIdEntry, TokenBody, key_info,
};
use crate::http::{Answer, redact};
use crate::vault::JsonBody;
use keyrot_core::error::CallError;
use keyrot_core::model::KeyInfo;

impl OpenBaoAppRoleProvider {
    /// `auth/{mount}/role/{role}/{rest}`.
    pub(super) fn role_path(&self, role: &str, rest: &str) -> String {
        format!("auth/{}/role/{role}/{rest}", self.mount)
    }

    /// The error for an answer not accepted at `what`; a 403 names what
    /// keyrot's policy must allow (`needs`), a 404 from no route names the
    /// mount.
    pub(super) fn status_error(&self, what: &str, ans: &Answer, needs: &str) -> CallError {
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

    /// A request body that could not be serialised (cannot happen for
    /// these shapes).
    pub(super) fn body_error(&self, what: &str, e: &serde_json::Error) -> CallError {
        CallError::permanent(format!(
            "{}: {what}: cannot build the request: {e}",
            self.who
        ))
    }

    /// `id` as `(role, accessor)`.
    pub(super) fn split_id<'a>(&self, id: &'a str) -> Result<(&'a str, &'a str), CallError> {
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
    pub(super) async fn roles(&self) -> Result<Vec<String>, CallError> {
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
    pub(super) async fn accessors(&self, role: &str) -> Result<Vec<String>, CallError> {
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
    pub(super) async fn lookup(
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
    pub(super) async fn lookup_secret(
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
    pub(super) async fn login_and_revoke(
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
    pub(super) fn check_role(&self, role: &str) -> Result<(), CallError> {
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

/// The `LIST` method.
fn list() -> Method {
    Method::from_bytes(b"LIST").unwrap_or(Method::GET)
}

/// The error text of an answer (empty when it has none).
pub(super) fn detail(ans: &Answer) -> String {
    crate::http::error_detail(&ans.body).unwrap_or_default()
}

/// A 404 with no error text: OpenBao's answer to a `LIST` of nothing.
fn is_empty_list(ans: &Answer) -> bool {
    ans.status == StatusCode::NOT_FOUND && detail(ans).is_empty()
}

/// The answer says role `role` does not exist.
pub(super) fn role_missing(ans: &Answer, role: &str) -> bool {
    !ans.status.is_success() && detail(ans).contains(&format!("role {role:?} does not exist"))
}

/// True when `role` can be a role name (and a path segment).
fn role_ok(role: &str) -> bool {
    !role.is_empty()
        && role
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
}
