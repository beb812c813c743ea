//! Access keys as IAM lists them, read from its XML answers, and the rules
//! on them: the metadata keyrot reports, the issuing tag, a rotation's
//! orphans, the error for full slots, the ARN check, the new secret.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use jiff::Timestamp;
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::CLOCK_SKEW;
use crate::aws::xml::{element, elements, text};
use keyrot_core::error::CallError;
use keyrot_core::model::KeyInfo;

/// One access key as IAM lists it (`AccessKeyMetadata`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct AccessKey {
    /// `AccessKeyId`.
    pub(super) id: String,
    /// `UserName`.
    pub(super) user: String,
    /// `Status`: `Active` or `Inactive`.
    pub(super) status: String,
    /// `CreateDate`.
    pub(super) created_at: Option<Timestamp>,
}

impl AccessKey {
    /// True for an Active key.
    pub(super) fn active(&self) -> bool {
        self.status == "Active"
    }
}

/// The permanent error for a user whose two key slots are taken: the keys,
/// and what the operator can do.
pub(super) fn slots_taken(
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
pub(super) fn key_info(k: &AccessKey, last_used_at: Option<Timestamp>) -> KeyInfo {
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
pub(super) fn orphans<'a>(
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
pub(super) fn parse_issuing(value: &str) -> Option<(&str, Timestamp)> {
    let (id, secs) = value.rsplit_once('@')?;
    let at = Timestamp::from_second(secs.parse().ok()?).ok()?;
    (!id.is_empty()).then_some((id, at))
}

/// `ListAccessKeys` members (the user is `user` when a member names none).
pub(super) fn parse_keys(xml: &str, user: &str) -> Vec<AccessKey> {
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
pub(super) fn parse_tags(xml: &str) -> BTreeMap<String, String> {
    let list = elements(xml, "Tags").into_iter().next().unwrap_or_default();
    elements(list, "member")
        .into_iter()
        .filter_map(|m| Some((element(m, "Key")?, element(m, "Value").unwrap_or_default())))
        .collect()
}

/// `arn:PARTITION:iam::ACCOUNT:user/PATH/NAME` with NAME = `user`.
pub(super) fn arn_names_user(arn: &str, user: &str) -> bool {
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
pub(super) fn secret_of(block: &str) -> Option<SecretString> {
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

/// What a `GetAccessKeyLastUsed` answer says about key `id`: a readable
/// `LastUsedDate` is the time; none, with `ServiceName` "N/A", is never
/// used (AWS: the key "has not been used since IAM began tracking this
/// information"); anything else (an unreadable date, no date with a
/// service named, no `AccessKeyLastUsed` at all) is unknown.
pub(super) fn last_use(xml: &str, id: &str) -> keyrot_core::model::LastUse {
    use keyrot_core::model::LastUse;
    let Some(block) = elements(xml, "AccessKeyLastUsed").into_iter().next() else {
        return LastUse::Unknown {
            why: format!("the GetAccessKeyLastUsed answer for {id} holds no AccessKeyLastUsed"),
        };
    };
    match element(block, "LastUsedDate").filter(|t| !t.trim().is_empty()) {
        Some(t) => match t.trim().parse::<Timestamp>() {
            Ok(at) => LastUse::At { at },
            Err(_) => LastUse::Unknown {
                why: format!("IAM gives access key {id} an unreadable LastUsedDate"),
            },
        },
        None if element(block, "ServiceName").as_deref() == Some("N/A") => LastUse::Never,
        None => LastUse::Unknown {
            why: format!("IAM gives access key {id} no LastUsedDate"),
        },
    }
}
