//! Assisted rotation: when the provider cannot create the key, people are
//! asked to (with reminders), and `keyrot enroll` hands keyrot the secret
//! of the key they made, checked before the machine goes on from Issued.

use std::sync::Arc;

use jiff::Timestamp;
use secrecy::SecretString;

use keyrot_core::model::{NewKey, RotationRecord, RotationState};
use keyrot_core::policy;
use keyrot_peers::provider::Identity;

use super::Refusal;
use super::distribute::same_scopes;
use super::steps::*;
use super::{Engine, EngineError, Runtime};
use crate::notify;

impl Engine {
    /// AwaitingSecret: people were asked to create the key by hand; send a
    /// reminder at each rung of the notice ladder until `keyrot enroll`.
    pub(super) async fn remind(
        &self,
        rt: &Runtime,
        mut rec: RotationRecord,
        now: Timestamp,
    ) -> StepResult {
        if rec.retry_at.is_none() {
            // No rung left (or resumed at start-up): nothing to send.
            return Ok(Next::Stop);
        }
        let reminder = rec
            .history
            .iter()
            .filter(|t| t.to == RotationState::AwaitingSecret)
            .count() as u32;
        rec.retry_at = next_reminder(rt, &rec, now);
        rec.updated_at = now;
        rec.history.push(keyrot_core::model::Transition {
            at: now,
            to: RotationState::AwaitingSecret,
            note: format!("reminder {reminder} sent"),
        });
        tracing::warn!(next = ?rec.retry_at, "assisted rotation still waits for `keyrot enroll`; reminder sent");
        let mail = notify::Composer::new(Arc::clone(&rt.config));
        let expiry = assisted_expiry(rt, &rec, now);
        let next = rec.retry_at;
        self.save_notifying(
            rec,
            move |r, key| mail.assisted_request(r, key, expiry, next, reminder, now),
            None,
        )
        .await?;
        Ok(Next::Stop)
    }

    /// Where the provider's issue keeps the old key's scopes (the proposed
    /// Atlassian rotate) but the policy asks for others (seed 001: turn an
    /// unscoped key into a scoped one): why the key must be made by hand.
    pub(super) async fn scopes_not_kept(
        &self,
        rt: &Runtime,
        rec: &RotationRecord,
    ) -> Result<Option<String>, EngineError> {
        let Some(policy) = rt.config.policy(&rec.policy) else {
            return Ok(None);
        };
        if policy.scopes.is_empty() {
            return Ok(None);
        }
        let slot = rec.slot.clone();
        let old = self
            .db(move |s| s.key(&slot))
            .await?
            .and_then(|k| k.current)
            .map(|k| k.scopes)
            .unwrap_or_default();
        if same_scopes(&old, &policy.scopes) {
            return Ok(None);
        }
        Ok(Some(format!(
            "provider {} keeps the old key's scopes [{}] when it rotates, but policy {:?} asks for [{}]",
            rec.provider,
            old.join(", "),
            policy.name,
            policy.scopes.join(", ")
        )))
    }

    /// Pending, for a provider that cannot create the key the policy asks
    /// for (`why`): ask people to create one, and wait in AwaitingSecret
    /// with a reminder timer.
    pub(super) async fn ask_for_key(
        &self,
        rt: &Runtime,
        mut rec: RotationRecord,
        why: String,
        now: Timestamp,
    ) -> StepResult {
        rec.transition(
            RotationState::AwaitingSecret,
            now,
            format!("{why}: asked for a key by email; waiting for `keyrot enroll`"),
        );
        rec.retry_at = next_reminder(rt, &rec, now);
        tracing::warn!(next_reminder = ?rec.retry_at, "assisted rotation: waiting for a person to create the key and run `keyrot enroll {}`", rec.id);
        let mail = notify::Composer::new(Arc::clone(&rt.config));
        let expiry = assisted_expiry(rt, &rec, now);
        let next = rec.retry_at;
        self.save_notifying(
            rec,
            move |r, key| mail.assisted_request(r, key, expiry, next, 0, now),
            Some((
                now,
                "rotation.assisted",
                format!("asked for a key to be created by hand: {why}"),
            )),
        )
        .await?;
        Ok(Next::Stop)
    }

    /// `keyrot enroll`: the secret of a key created by hand. Verified where
    /// the provider can verify, then sealed into the store in the same
    /// commit that moves the rotation to Issued; the runner goes on from there.
    pub(super) async fn enroll_claimed(
        &self,
        id: &str,
        key_id: Option<String>,
        secret: SecretString,
        accept_unverified: bool,
    ) -> Result<RotationRecord, Refusal> {
        let rt = self.runtime();
        let mut rec = self
            .load(id)
            .await?
            .ok_or_else(|| Refusal::unknown(format!("unknown rotation {id}")))?;
        if rec.state != RotationState::AwaitingSecret {
            return Err(Refusal::conflict(format!(
                "rotation {id} is {}, not awaiting a secret",
                rec.state
            )));
        }
        let now = self.now();
        let provider = Self::provider(&rt, &rec).map_err(|e| Refusal::conflict(e.message))?;
        let caps = provider.capabilities();
        let name = key_name(&rec.slot).to_string();
        let listed = if caps.list {
            provider
                .list(now)
                .await
                .map_err(|e| Refusal::peer(e.message))?
        } else {
            Vec::new()
        };
        let found = match &key_id {
            Some(k) => listed.iter().find(|i| &i.id == k).cloned(),
            None => listed
                .iter()
                .filter(|i| i.name == name && Some(&i.id) != rec.old_key_id.as_ref())
                .max_by_key(|i| i.created_at)
                .cloned(),
        };
        let new_id = match (&key_id, &found) {
            (Some(k), _) => k.clone(),
            (None, Some(f)) => f.id.clone(),
            (None, None) => {
                return Err(Refusal::bad_field(
                    "key_id",
                    format!(
                        "no new key named {name:?} is listed by {}; pass --key-id with the new key's id",
                        rec.provider
                    ),
                ));
            }
        };
        if Some(&new_id) == rec.old_key_id.as_ref() {
            return Err(Refusal::bad_field(
                "key_id",
                format!("{new_id} is the old key: create a new one"),
            ));
        }
        let mut notes = Vec::new();
        if let Some(p) = rt.config.policy(&rec.policy)
            && let Some(problem) = enrolled_scopes_problem(p, found.as_ref().map(|f| &f.scopes[..]))
        {
            if p.refuse_scope_mismatch {
                return Err(Refusal::bad_field(
                    "key_id",
                    format!(
                        "key {new_id}: {problem}. Nothing was changed: create a key with exactly the policy's scopes and enroll that one (or set scope_mismatch = \"flag\" in policy {:?})",
                        p.name
                    ),
                ));
            }
            tracing::warn!(rotation = %rec.id, new_key = %new_id, "enrolled despite scopes: {problem}");
            notes.push(format!("scopes flagged: {problem}"));
        }
        let unproven = |why: String| {
            Refusal::bad_field(
                "secret",
                format!(
                    "cannot prove that the secret belongs to key {new_id}: {why}. Nothing was changed; if you are sure it is that key's, enroll again with --accept-unverified"
                ),
            )
        };
        if caps.prove_identity {
            match provider.prove_identity(&new_id, &secret, now).await {
                Ok(Identity::Proven) => notes.push("identity proven".into()),
                Ok(Identity::Unprovable(why)) if accept_unverified => {
                    notes.push(format!(
                        "identity not proven, accepted by the operator ({why})"
                    ));
                }
                Ok(Identity::Unprovable(why)) => return Err(unproven(why)),
                Err(e) if e.transient => {
                    return Err(Refusal::peer(format!(
                        "proving the secret belongs to key {new_id}: {}",
                        e.message
                    )));
                }
                Err(e) => {
                    return Err(Refusal::bad_field(
                        "secret",
                        format!(
                            "the secret is refused for key {new_id}: {}. Nothing was changed",
                            e.message
                        ),
                    ));
                }
            }
        } else {
            if caps.verify {
                provider.verify(&new_id, &secret, now).await.map_err(|e| {
                    Refusal::invalid(format!(
                        "the secret does not work as key {new_id}: {}",
                        e.message
                    ))
                })?;
            }
            let why = format!(
                "provider {} can {}check that a secret authenticates, not which key it belongs to",
                rec.provider,
                if caps.verify { "" } else { "not even " }
            );
            if !accept_unverified {
                return Err(unproven(why));
            }
            notes.push(format!(
                "identity not proven, accepted by the operator ({why})"
            ));
        }
        let hash = keyrot_core::crypto::sha256_hex(
            secrecy::ExposeSecret::expose_secret(&secret).as_bytes(),
        );
        rec.new_key = Some(NewKey {
            id: new_id.clone(),
            expires_at: found.as_ref().and_then(|f| f.expires_at),
            secret_sha256: hash,
            scopes: found
                .as_ref()
                .map(|f| f.scopes.clone())
                .unwrap_or_else(|| rec.scopes.clone()),
        });
        rec.transition(
            RotationState::Issued,
            now,
            format!(
                "secret of key {new_id} enrolled by an operator; {}",
                notes.join("; ")
            ),
        );
        Ok(self
            .commit_issued(&rt, rec, &new_id, secret, "key.enrolled", now)
            .await?)
    }
}

/// When to remind people about a key they were asked to create: the next
/// rung of the policy's notice ladder before the old key expires.
pub(super) fn next_reminder(
    rt: &Runtime,
    rec: &RotationRecord,
    now: Timestamp,
) -> Option<Timestamp> {
    let policy = rt.config.policy(&rec.policy)?;
    policy::next_notice_at(policy, rec.old_expires_at?, now)
}

/// The expiry people should give a key they create by hand.
pub(super) fn assisted_expiry(
    rt: &Runtime,
    rec: &RotationRecord,
    now: Timestamp,
) -> Option<Timestamp> {
    match rt.config.policy(&rec.policy) {
        Some(p) => policy::new_key_expiry(p, rec.requested_new_expiry, now)
            .ok()
            .flatten(),
        None => rec.requested_new_expiry,
    }
}

/// What is wrong with an enrolled key's scopes (as the provider lists them;
/// `None`: not listed) under `policy`, if anything.
pub(super) fn enrolled_scopes_problem(
    policy: &policy::Policy,
    listed: Option<&[String]>,
) -> Option<String> {
    let Some(listed) = listed else {
        return (!policy.scopes.is_empty() || policy.require_scopes).then(|| {
            format!(
                "the provider does not list it, so its scopes cannot be checked against policy {:?}",
                policy.name
            )
        });
    };
    if !policy.scopes.is_empty() && !same_scopes(listed, &policy.scopes) {
        return Some(format!(
            "it has scopes [{}], policy {:?} asks for [{}]",
            listed.join(", "),
            policy.name,
            policy.scopes.join(", ")
        ));
    }
    if policy.require_scopes && listed.is_empty() {
        return Some(format!(
            "it is unscoped, and policy {:?} requires scopes",
            policy.name
        ));
    }
    None
}
