//! The `aws-iam` provider: access keys of AWS IAM users, through IAM's query
//! API (`Version=2010-05-08`) on the shared [`AwsClient`]; a new key is
//! verified by calling STS `GetCallerIdentity` signed with it.
//!
//! A key's name is its IAM user's name, so a slot `provider/user` is one
//! user's access key. IAM keys do not expire (policies use `max_age`), and
//! IAM allows two keys per user: a rotation needs a free slot, which keyrot
//! never makes by deleting an Active key (an Inactive key that is not the
//! current one only with `delete_inactive`).
//!
//! IAM cannot tag an access key, so crash recovery tags the *user*: before
//! `CreateAccessKey`, `keyrot-issuing = "<rotation id>@<unix seconds>"` and
//! `keyrot-issuing-before = "<ids of the keys the user had>"`. A key of
//! that user which is not in that list and was created after that time is
//! the rotation's ([`Provider::find_tagged`]). The tags stay after the issue
//! (the next rotation of the user overwrites them): removing them inside
//! `issue` would lose them exactly when a crash needs them, and they only
//! ever match their own rotation id.
//!
//! The provider only touches users allowed by `users`/`path_prefix`. It
//! never touches the store. Secret access keys live in `SecretString`s and
//! wiped buffers, and never reach a message, a log line or `Debug` output.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use futures::{StreamExt as _, TryStreamExt as _};
use jiff::{SignedDuration, Timestamp};
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::{Capabilities, IssueMode, IssueRequest, IssuedKey, Provider};
use crate::aws::xml::{element, elements, text};
use crate::aws::{AwsClient, AwsCredentials, CredentialSource, error_code};
use crate::http::Answer;
use keyrot_config::AwsIamProviderConfig;
use keyrot_core::error::CallError;
use keyrot_core::model::KeyInfo;

/// IAM query API version.
const IAM_VERSION: &str = "2010-05-08";
/// STS query API version.
const STS_VERSION: &str = "2011-06-15";
/// User tag naming the rotation that is issuing a key, and since when.
pub const ISSUING_TAG: &str = "keyrot-issuing";
/// User tag listing the key ids the user had before that issue.
pub const ISSUING_BEFORE_TAG: &str = "keyrot-issuing-before";
/// Tolerated difference between keyrot's clock and AWS's when comparing a
/// key's `CreateDate` with the issuing tag's time.
const CLOCK_SKEW: SignedDuration = SignedDuration::from_secs(300);
/// IAM's limit of access keys per user.
const KEYS_PER_USER: usize = 2;
/// Users listed at once.
const CONCURRENCY: usize = 4;
/// Most `ListUsers` pages followed (a guard against endless paging).
const MAX_PAGES: usize = 10_000;

/// One access key as IAM lists it (`AccessKeyMetadata`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct AccessKey {
    /// `AccessKeyId`.
    id: String,
    /// `UserName`.
    user: String,
    /// `Status`: `Active` or `Inactive`.
    status: String,
    /// `CreateDate`.
    created_at: Option<Timestamp>,
}

impl AccessKey {
    /// True for an Active key.
    fn active(&self) -> bool {
        self.status == "Active"
    }
}

/// Access keys of AWS IAM users.
pub struct AwsIamProvider {
    /// Config name.
    name: String,
    /// `provider "NAME"`, for messages.
    who: String,
    /// IAM (global; signed for the partition's IAM region).
    iam: AwsClient,
    /// Region STS is called in.
    region: String,
    /// STS endpoint override.
    sts_endpoint: Option<String>,
    /// Per-request timeout.
    timeout: SignedDuration,
    /// Set the old key Inactive at the start of the overlap.
    deactivate_first: bool,
    /// Delete an Inactive, non-current key to make room.
    delete_inactive: bool,
    /// Only these users (empty: not bounded by name).
    users: Vec<String>,
    /// Only users under this IAM path.
    path_prefix: Option<String>,
    /// Key id → user name, as learnt (a key never changes user).
    owners: Mutex<HashMap<String, String>>,
}

/// IAM's endpoint and signing region in `region`'s partition.
fn iam_partition(region: &str) -> (&'static str, &'static str) {
    if region.starts_with("cn-") {
        ("https://iam.cn-north-1.amazonaws.com.cn", "cn-north-1")
    } else if region.starts_with("us-gov-") {
        ("https://iam.us-gov.amazonaws.com", "us-gov-west-1")
    } else {
        ("https://iam.amazonaws.com", "us-east-1")
    }
}

impl AwsIamProvider {
    /// Builds the provider; secret references are resolved now.
    pub fn new(
        name: &str,
        cfg: &AwsIamProviderConfig,
        creds: Option<&Path>,
    ) -> Result<AwsIamProvider, CallError> {
        let who = format!("provider {name:?}");
        let credentials = CredentialSource::from_config(&who, &cfg.credentials, creds)?;
        let (endpoint, signing_region) = iam_partition(&cfg.region);
        let iam = AwsClient::new(
            &who,
            "AWS IAM",
            "iam",
            signing_region,
            Some(cfg.iam_endpoint.as_deref().unwrap_or(endpoint)),
            credentials,
            cfg.timeout,
        )?;
        Ok(AwsIamProvider {
            name: name.to_string(),
            who,
            iam,
            region: cfg.region.clone(),
            sts_endpoint: cfg.sts_endpoint.clone(),
            timeout: cfg.timeout,
            deactivate_first: cfg.deactivate_first,
            delete_inactive: cfg.delete_inactive,
            users: cfg.users.clone(),
            path_prefix: cfg.path_prefix.clone(),
            owners: Mutex::new(HashMap::new()),
        })
    }

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
    async fn call_tolerating(
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
    fn text<'a>(&self, what: &str, ans: &'a Answer) -> Result<&'a str, CallError> {
        std::str::from_utf8(&ans.body).map_err(|_| {
            CallError::transient(format!(
                "{}: {what}: the answer ({} bytes) is not UTF-8 XML",
                self.who,
                ans.body.len()
            ))
        })
    }

    /// Remembers which user owns each key.
    fn learn(&self, keys: &[AccessKey]) {
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
    async fn users_in_scope(&self) -> Result<Vec<String>, CallError> {
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
    async fn user_keys(&self, user: &str) -> Result<Option<Vec<AccessKey>>, CallError> {
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
    async fn owner(&self, id: &str) -> Result<Option<String>, CallError> {
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
    async fn check_scope(&self, user: &str, what: &str) -> Result<bool, CallError> {
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
    async fn list_user(&self, user: String) -> Result<Vec<KeyInfo>, CallError> {
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
    /// issuing tags (see the module doc).
    async fn tagged_keys(&self, user: String, tag: &str) -> Result<Vec<KeyInfo>, CallError> {
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
    async fn make_room(
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

    /// Writes the issuing tags on `user` (see the module doc).
    async fn tag_issuing(
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
    fn sts(&self, id: &str, secret: &SecretString) -> Result<AwsClient, CallError> {
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

#[async_trait]
impl Provider for AwsIamProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "aws-iam"
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
            deactivate: self.deactivate_first,
            prove_identity: false,
        }
    }

    /// Active keys of every user in scope (an Inactive key, such as the
    /// old key during an overlap with `deactivate_first`, is not live).
    async fn list(&self, _now: Timestamp) -> Result<Vec<KeyInfo>, CallError> {
        let users = self.users_in_scope().await?;
        let per_user: Vec<Vec<KeyInfo>> = futures::stream::iter(users)
            .map(|u| self.list_user(u))
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        Ok(per_user.into_iter().flatten().collect())
    }

    async fn issue(&self, req: &IssueRequest) -> Result<IssuedKey, CallError> {
        let user = req.name.as_str();
        let missing = || {
            CallError::permanent(format!(
                "{}: issue: IAM user {user:?} does not exist (keyrot creates access keys, not users: create the user, or fix the [[key]] name)",
                self.who
            ))
        };
        if !self.check_scope(user, "issue").await? {
            return Err(missing());
        }
        let keys = self.user_keys(user).await?.ok_or_else(missing)?;
        let deleted = if keys.len() >= KEYS_PER_USER {
            Some(self.make_room(user, &keys, req.replaces.as_deref()).await?)
        } else {
            None
        };
        let note = |e: CallError| match &deleted {
            None => e,
            Some(d) => CallError {
                message: format!(
                    "{} (keyrot had deleted inactive key {d} of IAM user {user:?} to make room)",
                    e.message
                ),
                ..e
            },
        };
        let before: Vec<&str> = keys
            .iter()
            .map(|k| k.id.as_str())
            .filter(|id| deleted.as_deref() != Some(*id))
            .collect();
        self.tag_issuing(user, &req.tag, req.now, &before)
            .await
            .map_err(note)?;
        let created = self
            .call_tolerating("CreateAccessKey", &[("UserName", user)], &["LimitExceeded"])
            .await
            .map_err(note)?;
        let Some(ans) = created else {
            // Someone created a key since the list: name what is there now.
            let now_keys = self.user_keys(user).await?.unwrap_or_default();
            return Err(note(slots_taken(
                &self.who,
                user,
                &now_keys,
                req.replaces.as_deref(),
                self.delete_inactive,
            )));
        };
        let xml = self.text("CreateAccessKey", &ans)?;
        let block = elements(xml, "AccessKey")
            .into_iter()
            .next()
            .unwrap_or_default();
        let (Some(id), Some(secret)) = (element(block, "AccessKeyId"), secret_of(block)) else {
            // The key may exist: the retry finds it by the user's tags.
            return Err(note(CallError::transient(format!(
                "{}: CreateAccessKey: the answer ({} bytes) holds no access key id and secret",
                self.who,
                ans.body.len()
            ))));
        };
        let key = AccessKey {
            id,
            user: user.to_string(),
            status: element(block, "Status").unwrap_or_else(|| "Active".into()),
            created_at: element(block, "CreateDate")
                .and_then(|t| t.parse().ok())
                .or(Some(req.now)),
        };
        self.learn(std::slice::from_ref(&key));
        let mut info = key_info(&key, None);
        if let Some(d) = deleted {
            info.tags.insert("deleted_to_make_room".into(), d);
        }
        tracing::info!(provider = %self.name, user = %user, new_key = %key.id, "access key created");
        Ok(IssuedKey { info, secret })
    }

    async fn find_tagged(&self, tag: &str, _now: Timestamp) -> Result<Vec<KeyInfo>, CallError> {
        let users = self.users_in_scope().await?;
        let per_user: Vec<Vec<KeyInfo>> = futures::stream::iter(users)
            .map(|u| self.tagged_keys(u, tag))
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        Ok(per_user.into_iter().flatten().collect())
    }

    /// The key exists and is Active at IAM, and STS, called with it,
    /// answers with its user's ARN. Not yet visible (IAM and STS are
    /// eventually consistent) is transient; Inactive, or another identity,
    /// is permanent.
    async fn verify(
        &self,
        id: &str,
        secret: &SecretString,
        _now: Timestamp,
    ) -> Result<(), CallError> {
        // IAM is eventually consistent: a key created a moment ago may not
        // be visible yet, so "not found" is retried (a key really deleted
        // fails once the retry budget is spent).
        let user = self.owner(id).await?.ok_or_else(|| {
            CallError::transient(format!(
                "{}: verify: IAM does not know access key {id} (not visible yet, or deleted)",
                self.who
            ))
        })?;
        let keys = self.user_keys(&user).await?.unwrap_or_default();
        match keys.iter().find(|k| k.id == id) {
            None => {
                return Err(CallError::transient(format!(
                    "{}: verify: access key {id} is not listed for IAM user {user:?} (not visible yet, or deleted)",
                    self.who
                )));
            }
            Some(k) if !k.active() => {
                return Err(CallError::permanent(format!(
                    "{}: verify: access key {id} of IAM user {user:?} is {}, not Active",
                    self.who, k.status
                )));
            }
            Some(_) => {}
        }
        let sts = self.sts(id, secret)?;
        let ans = sts
            .query_call("GetCallerIdentity", STS_VERSION, &[])
            .await?;
        if !ans.status.is_success() {
            return Err(match error_code(&ans).as_deref() {
                // A new key takes seconds to reach STS everywhere.
                Some("InvalidClientTokenId") => CallError::transient(format!(
                    "{}: verify: AWS STS does not accept access key {id} yet (a new IAM key takes a few seconds to propagate); retrying",
                    self.who
                )),
                Some("SignatureDoesNotMatch") => sts.error(
                    "GetCallerIdentity",
                    &ans,
                    Some("the secret keyrot holds does not belong to this access key"),
                ),
                _ => sts.error("GetCallerIdentity", &ans, None),
            });
        }
        let arn = element(self.text("GetCallerIdentity", &ans)?, "Arn").unwrap_or_default();
        if !arn_names_user(&arn, &user) {
            return Err(CallError::permanent(format!(
                "{}: verify: access key {id} authenticates as {arn:?}, not as IAM user {user:?}",
                self.who
            )));
        }
        Ok(())
    }

    /// `DeleteAccessKey`; a key or user already gone counts as done.
    async fn revoke(&self, id: &str, _now: Timestamp) -> Result<(), CallError> {
        let Some(user) = self.owner(id).await? else {
            tracing::info!(provider = %self.name, key = %id, "revoke: access key not found; counts as done");
            return Ok(());
        };
        if !self.check_scope(&user, "revoke").await? {
            return Ok(());
        }
        let deleted = self
            .call_tolerating(
                "DeleteAccessKey",
                &[("UserName", &user), ("AccessKeyId", id)],
                &["NoSuchEntity"],
            )
            .await?;
        if deleted.is_none() {
            tracing::info!(provider = %self.name, user = %user, key = %id, "revoke: access key already deleted; counts as done");
        } else {
            tracing::info!(provider = %self.name, user = %user, key = %id, "access key deleted");
        }
        Ok(())
    }

    /// `UpdateAccessKey Status=Inactive` (idempotent; a key already gone
    /// is left to the revoke, which counts it as done).
    async fn deactivate(&self, id: &str, _now: Timestamp) -> Result<(), CallError> {
        let Some(user) = self.owner(id).await? else {
            tracing::warn!(provider = %self.name, key = %id, "deactivate: access key not found; nothing to set inactive");
            return Ok(());
        };
        if !self.check_scope(&user, "deactivate").await? {
            return Ok(());
        }
        let done = self
            .call_tolerating(
                "UpdateAccessKey",
                &[
                    ("UserName", &user),
                    ("AccessKeyId", id),
                    ("Status", "Inactive"),
                ],
                &["NoSuchEntity"],
            )
            .await?;
        if done.is_some() {
            tracing::info!(provider = %self.name, user = %user, key = %id, "access key set Inactive for the overlap");
        } else {
            tracing::warn!(provider = %self.name, user = %user, key = %id, "deactivate: access key not found; nothing to set inactive");
        }
        Ok(())
    }
}

/// The permanent error for a user whose two key slots are taken: the keys,
/// and what the operator can do.
fn slots_taken(
    who: &str,
    user: &str,
    keys: &[AccessKey],
    current: Option<&str>,
    delete_inactive: bool,
) -> CallError {
    let listed: Vec<String> = keys
        .iter()
        .map(|k| {
            let role = if Some(k.id.as_str()) == current {
                ", current"
            } else {
                ""
            };
            format!("{} ({}{role})", k.id, k.status)
        })
        .collect();
    let spare = keys
        .iter()
        .find(|k| Some(k.id.as_str()) != current)
        .map(|k| k.id.as_str())
        .unwrap_or("ID");
    let has_inactive_spare = keys
        .iter()
        .any(|k| !k.active() && Some(k.id.as_str()) != current);
    let option = if has_inactive_spare && !delete_inactive {
        ", or set `delete_inactive = true` on the provider to let keyrot delete an inactive key that is not the current one"
    } else {
        " (keyrot never deletes an active key to make room)"
    };
    CallError::permanent(format!(
        "{who}: issue: IAM user {user:?} already has {} access keys, the most IAM allows: {}. Delete the one no longer needed (aws iam delete-access-key --user-name {user} --access-key-id {spare}){option}; then resume the rotation",
        keys.len(),
        listed.join(", ")
    ))
}

/// The key metadata keyrot reports for `k`.
fn key_info(k: &AccessKey, last_used_at: Option<Timestamp>) -> KeyInfo {
    KeyInfo {
        id: k.id.clone(),
        name: k.user.clone(),
        scopes: Vec::new(),
        created_by: None,
        created_at: k.created_at,
        // IAM access keys do not expire.
        expires_at: None,
        last_used_at,
        tags: BTreeMap::from([("status".to_string(), k.status.clone())]),
    }
}

/// The keys of one user that a rotation issued: not among the ids the user
/// had when the tag was written, and created no earlier than the tag's time
/// (less the clock skew allowed).
fn orphans<'a>(
    keys: &'a [AccessKey],
    since: Timestamp,
    before: &HashSet<&str>,
) -> Vec<&'a AccessKey> {
    let earliest = since.checked_sub(CLOCK_SKEW).unwrap_or(since);
    keys.iter()
        .filter(|k| !before.contains(k.id.as_str()))
        .filter(|k| k.created_at.is_none_or(|c| c >= earliest))
        .collect()
}

/// `<rotation id>@<unix seconds>`.
fn parse_issuing(value: &str) -> Option<(&str, Timestamp)> {
    let (id, secs) = value.rsplit_once('@')?;
    let at = Timestamp::from_second(secs.parse().ok()?).ok()?;
    (!id.is_empty()).then_some((id, at))
}

/// `ListAccessKeys` members (the user is `user` when a member names none).
fn parse_keys(xml: &str, user: &str) -> Vec<AccessKey> {
    let list = elements(xml, "AccessKeyMetadata")
        .into_iter()
        .next()
        .unwrap_or_default();
    elements(list, "member")
        .into_iter()
        .filter_map(|m| {
            Some(AccessKey {
                id: element(m, "AccessKeyId")?,
                user: element(m, "UserName").unwrap_or_else(|| user.to_string()),
                status: element(m, "Status").unwrap_or_default(),
                created_at: element(m, "CreateDate").and_then(|t| t.parse().ok()),
            })
        })
        .collect()
}

/// `ListUserTags` as key → value.
fn parse_tags(xml: &str) -> BTreeMap<String, String> {
    let list = elements(xml, "Tags").into_iter().next().unwrap_or_default();
    elements(list, "member")
        .into_iter()
        .filter_map(|m| Some((element(m, "Key")?, element(m, "Value").unwrap_or_default())))
        .collect()
}

/// `arn:PARTITION:iam::ACCOUNT:user/PATH/NAME` with NAME = `user`.
fn arn_names_user(arn: &str, user: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [scheme, _partition, service, region, _account, resource] = parts.as_slice() else {
        return false;
    };
    *scheme == "arn"
        && *service == "iam"
        && region.is_empty()
        && resource.starts_with("user/")
        && resource.rsplit('/').next() == Some(user)
}

/// The `SecretAccessKey` of a `CreateAccessKey` answer, copied once,
/// exactly sized, into a `SecretString` (a copy that decoding entities
/// made is wiped).
fn secret_of(block: &str) -> Option<SecretString> {
    let raw = elements(block, "SecretAccessKey")
        .into_iter()
        .next()?
        .trim();
    if raw.is_empty() {
        return None;
    }
    let decoded = match text(raw) {
        Cow::Borrowed(s) => SecretString::from(s),
        Cow::Owned(s) => SecretString::from(Zeroizing::new(s).as_str()),
    };
    Some(decoded)
}

#[cfg(test)]
mod tests;
