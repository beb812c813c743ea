//! The IAM calls behind the `aws-iam` provider: users in scope, their keys
//! and owners, the scope check, room for a new key, the issuing tags, and
//! the STS client a verify signs with.

use std::collections::HashSet;

use jiff::Timestamp;
use secrecy::SecretString;

use super::keys::{
    AccessKey, key_info, orphans, parse_issuing, parse_keys, parse_tags, slots_taken,
};
use super::{AwsIamProvider, IAM_VERSION, ISSUING_BEFORE_TAG, ISSUING_TAG, MAX_PAGES};
use crate::aws::xml::{element, elements};
use crate::aws::{AwsClient, AwsCredentials, CredentialSource, error_code};
use crate::http::Answer;
use keyrot_core::error::CallError;
use keyrot_core::model::KeyInfo;

impl AwsIamProvider {
    /// One IAM call; an error answer is an error.
    async fn call(&self, action: &str, params: &[(&str, &str)]) -> Result<Answer, CallError> {
        let ans = self.iam.query_call(action, IAM_VERSION, params).await?;
        if ans.status.is_success() {
            return Ok(ans);
        }
        Err(self.iam.error(action, &ans, None))
    }

    /// One IAM call; an error answer whose code is in `tolerated` is
    /// `None`, any other is an error.
    pub(super) async fn call_tolerating(
        &self,
        action: &str,
        params: &[(&str, &str)],
        tolerated: &[&str],
    ) -> Result<Option<Answer>, CallError> {
        let ans = self.iam.query_call(action, IAM_VERSION, params).await?;
        if ans.status.is_success() {
            return Ok(Some(ans));
        }
        if error_code(&ans).is_some_and(|c| tolerated.contains(&c.as_str())) {
            return Ok(None);
        }
        Err(self.iam.error(action, &ans, None))
    }

    /// The answer's XML text.
    pub(super) fn text<'a>(&self, what: &str, ans: &'a Answer) -> Result<&'a str, CallError> {
        std::str::from_utf8(&ans.body).map_err(|_| {
            CallError::transient(format!(
                "{}: {what}: the answer ({} bytes) is not UTF-8 XML",
                self.who,
                ans.body.len()
            ))
        })
    }

    /// Remembers which user owns each key.
    pub(super) fn learn(&self, keys: &[AccessKey]) {
        let mut owners = match self.owners.lock() {
            Ok(o) => o,
            Err(poisoned) => poisoned.into_inner(),
        };
        for k in keys {
            owners.insert(k.id.clone(), k.user.clone());
        }
    }

    /// The user owning key `id`, if known.
    fn known_owner(&self, id: &str) -> Option<String> {
        match self.owners.lock() {
            Ok(o) => o.get(id).cloned(),
            Err(poisoned) => poisoned.into_inner().get(id).cloned(),
        }
    }

    /// The users this provider manages: `users`, or `ListUsers` (under
    /// `path_prefix`), following every page.
    pub(super) async fn users_in_scope(&self) -> Result<Vec<String>, CallError> {
        if !self.users.is_empty() {
            return Ok(self.users.clone());
        }
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut params = vec![("MaxItems", "1000")];
            if let Some(p) = &self.path_prefix {
                params.push(("PathPrefix", p));
            }
            if let Some(m) = &marker {
                params.push(("Marker", m));
            }
            let ans = self.call("ListUsers", &params).await?;
            let xml = self.text("ListUsers", &ans)?;
            let users = elements(xml, "Users")
                .into_iter()
                .next()
                .unwrap_or_default();
            out.extend(
                elements(users, "member")
                    .into_iter()
                    .filter_map(|m| element(m, "UserName")),
            );
            let next = (element(xml, "IsTruncated").as_deref() == Some("true"))
                .then(|| element(xml, "Marker"))
                .flatten();
            match next {
                Some(m) => marker = Some(m),
                None => return Ok(out),
            }
        }
        Err(CallError::permanent(format!(
            "{}: ListUsers: more than {MAX_PAGES} pages; narrow the provider with `users` or `path_prefix`",
            self.who
        )))
    }

    /// The access keys of `user`; `None` when the user does not exist.
    pub(super) async fn user_keys(&self, user: &str) -> Result<Option<Vec<AccessKey>>, CallError> {
        let Some(ans) = self
            .call_tolerating("ListAccessKeys", &[("UserName", user)], &["NoSuchEntity"])
            .await?
        else {
            return Ok(None);
        };
        let xml = self.text("ListAccessKeys", &ans)?;
        let keys = parse_keys(xml, user);
        self.learn(&keys);
        Ok(Some(keys))
    }

    /// `GetAccessKeyLastUsed`: the owning user and the last use of key
    /// `id`; `None` when IAM does not know the key.
    async fn last_used(&self, id: &str) -> Result<Option<(String, Option<Timestamp>)>, CallError> {
        let Some(ans) = self
            .call_tolerating(
                "GetAccessKeyLastUsed",
                &[("AccessKeyId", id)],
                &["NoSuchEntity"],
            )
            .await?
        else {
            return Ok(None);
        };
        let xml = self.text("GetAccessKeyLastUsed", &ans)?;
        let user = element(xml, "UserName").ok_or_else(|| {
            CallError::transient(format!(
                "{}: GetAccessKeyLastUsed: the answer names no user for key {id}",
                self.who
            ))
        })?;
        let used = element(xml, "LastUsedDate").and_then(|t| t.parse().ok());
        Ok(Some((user, used)))
    }

    /// The user owning key `id`; `None` when the key does not exist.
    pub(super) async fn owner(&self, id: &str) -> Result<Option<String>, CallError> {
        if let Some(u) = self.known_owner(id) {
            return Ok(Some(u));
        }
        let found = self.last_used(id).await?;
        if let Some((user, _)) = &found
            && let Ok(mut owners) = self.owners.lock()
        {
            owners.insert(id.to_string(), user.clone());
        }
        Ok(found.map(|(user, _)| user))
    }

    /// Refuses users outside `users`/`path_prefix` (keyrot changes no one
    /// else's keys). False when the user does not exist (checked only with
    /// `path_prefix`, which needs `GetUser`).
    pub(super) async fn check_scope(&self, user: &str, what: &str) -> Result<bool, CallError> {
        if !self.users.is_empty() && !self.users.iter().any(|u| u == user) {
            return Err(CallError::permanent(format!(
                "{}: {what}: IAM user {user:?} is not in this provider's `users` ({}); keyrot changes no other user's keys",
                self.who,
                self.users.join(", ")
            )));
        }
        let Some(prefix) = &self.path_prefix else {
            return Ok(true);
        };
        let Some(ans) = self
            .call_tolerating("GetUser", &[("UserName", user)], &["NoSuchEntity"])
            .await?
        else {
            return Ok(false);
        };
        let path = element(self.text("GetUser", &ans)?, "Path").unwrap_or_else(|| "/".into());
        if !path.starts_with(prefix.as_str()) {
            return Err(CallError::permanent(format!(
                "{}: {what}: IAM user {user:?} has path {path}, outside this provider's `path_prefix` {prefix}; keyrot changes no other user's keys",
                self.who
            )));
        }
        Ok(true)
    }

    /// The key metadata keyrot reports, with the last use.
    async fn info(&self, k: &AccessKey) -> Result<KeyInfo, CallError> {
        let last_used = match self.last_used(&k.id).await? {
            Some((_, used)) => used,
            None => None,
        };
        Ok(key_info(k, last_used))
    }

    /// Active keys of one user, with their last use (none when the user
    /// does not exist).
    pub(super) async fn list_user(&self, user: String) -> Result<Vec<KeyInfo>, CallError> {
        let Some(keys) = self.user_keys(&user).await? else {
            if !self.users.is_empty() {
                tracing::warn!(provider = %self.name, user = %user, "IAM user in `users` does not exist");
            }
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for k in keys.iter().filter(|k| k.active()) {
            out.push(self.info(k).await?);
        }
        Ok(out)
    }

    /// The keys of `user` issued under rotation `tag`, by the user's
    /// issuing tags (see the `aws_iam` module doc).
    pub(super) async fn tagged_keys(
        &self,
        user: String,
        tag: &str,
    ) -> Result<Vec<KeyInfo>, CallError> {
        let Some(ans) = self
            .call_tolerating("ListUserTags", &[("UserName", &user)], &["NoSuchEntity"])
            .await?
        else {
            return Ok(Vec::new());
        };
        let tags = parse_tags(self.text("ListUserTags", &ans)?);
        let Some(mark) = tags.get(ISSUING_TAG).and_then(|v| parse_issuing(v)) else {
            return Ok(Vec::new());
        };
        if mark.0 != tag {
            return Ok(Vec::new());
        }
        let before: HashSet<&str> = tags
            .get(ISSUING_BEFORE_TAG)
            .map(|v| v.split_whitespace().collect())
            .unwrap_or_default();
        let Some(keys) = self.user_keys(&user).await? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for k in orphans(&keys, mark.1, &before) {
            out.push(self.info(k).await?);
        }
        Ok(out)
    }

    /// Makes room for a new key when `user` has two: deletes an Inactive
    /// key that is not `current` with `delete_inactive`, else fails with
    /// what to do. Returns the id deleted.
    pub(super) async fn make_room(
        &self,
        user: &str,
        keys: &[AccessKey],
        current: Option<&str>,
    ) -> Result<String, CallError> {
        let spare = keys
            .iter()
            .filter(|k| !k.active() && Some(k.id.as_str()) != current)
            .min_by_key(|k| k.created_at);
        match spare {
            Some(k) if self.delete_inactive => {
                self.call_tolerating(
                    "DeleteAccessKey",
                    &[("UserName", user), ("AccessKeyId", &k.id)],
                    &["NoSuchEntity"],
                )
                .await
                .map_err(|e| CallError {
                    message: format!(
                        "{} (deleting inactive key {} of IAM user {user:?} to make room for the new one)",
                        e.message, k.id
                    ),
                    ..e
                })?;
                tracing::warn!(provider = %self.name, user = %user, deleted_key = %k.id,
                    "IAM user had two access keys: deleted the inactive one (not the current key) to make room (delete_inactive = true)");
                Ok(k.id.clone())
            }
            _ => Err(slots_taken(
                &self.who,
                user,
                keys,
                current,
                self.delete_inactive,
            )),
        }
    }

    /// Writes the issuing tags on `user` (see the `aws_iam` module doc).
    pub(super) async fn tag_issuing(
        &self,
        user: &str,
        tag: &str,
        now: Timestamp,
        before: &[&str],
    ) -> Result<(), CallError> {
        let value = format!("{tag}@{}", now.as_second());
        let before = before.join(" ");
        self.call(
            "TagUser",
            &[
                ("UserName", user),
                ("Tags.member.1.Key", ISSUING_TAG),
                ("Tags.member.1.Value", &value),
                ("Tags.member.2.Key", ISSUING_BEFORE_TAG),
                ("Tags.member.2.Value", &before),
            ],
        )
        .await?;
        Ok(())
    }

    /// An STS client signing with the key being verified.
    pub(super) fn sts(&self, id: &str, secret: &SecretString) -> Result<AwsClient, CallError> {
        let creds = AwsCredentials::new(SecretString::from(id.to_string()), secret.clone(), None);
        AwsClient::new(
            &self.who,
            "AWS STS",
            "sts",
            &self.region,
            self.sts_endpoint.as_deref(),
            CredentialSource::Static(creds),
            self.timeout,
        )
    }
}
