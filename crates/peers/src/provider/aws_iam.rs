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

mod iam;
mod keys;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use futures::{StreamExt as _, TryStreamExt as _};
use jiff::{SignedDuration, Timestamp};
use secrecy::SecretString;

use self::keys::{AccessKey, arn_names_user, key_info, secret_of, slots_taken};
use super::{Capabilities, IssueMode, IssueRequest, IssuedKey, Provider};
use crate::aws::xml::{element, elements};
use crate::aws::{AwsClient, CredentialSource, error_code};
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
            last_used: Some(keyrot_config::AWS_IAM_LAST_USED_PRECISION),
        }
    }

    /// `GetAccessKeyLastUsed` (see [`keys::last_use`] for how its answer
    /// reads); a key IAM does not know is unknown.
    async fn last_used(&self, id: &str, _now: Timestamp) -> Result<super::LastUse, CallError> {
        let Some(ans) = self
            .call_tolerating(
                "GetAccessKeyLastUsed",
                &[("AccessKeyId", id)],
                &["NoSuchEntity"],
            )
            .await?
        else {
            return Ok(super::LastUse::Unknown {
                why: format!("IAM does not know access key {id}"),
            });
        };
        Ok(keys::last_use(self.text("GetAccessKeyLastUsed", &ans)?, id))
    }

    /// Active keys of every user in scope (an Inactive key, such as the
    /// old key during an overlap with `deactivate_first`, is not live).
    /// IAM cannot tag an access key: the user's issuing tag finds the key
    /// of one interrupted issue, but would also claim any key made by hand
    /// after keyrot's last rotation of that user, so no orphan sweep.
    fn lists_tags(&self) -> bool {
        false
    }

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

#[cfg(test)]
mod tests;
