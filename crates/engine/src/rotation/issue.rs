//! Issuing: the request for the new key, the recovery of an interrupted
//! issue (what it left found by tag or listing), and the commit that seals
//! the new secret.

use std::collections::HashSet;

use jiff::Timestamp;
use secrecy::SecretString;

use super::call::Peer;
use super::steps::{Next, StepError, StepResult, key_name};
use super::{Engine, EngineError, Runtime};
use keyrot_core::error::CallError;
use keyrot_core::failpoint;
use keyrot_core::model::{NewKey, RotationRecord, RotationState};
use keyrot_core::policy;
use keyrot_peers::provider::{IssueRequest, Provider};

impl Engine {
    /// Commits Issued with the new key's secret sealed into the store (and,
    /// when the caller asked, its PSK envelope) in one transaction.
    pub(super) async fn commit_issued(
        &self,
        rt: &Runtime,
        rec: RotationRecord,
        key_id: &str,
        secret: SecretString,
        event: &'static str,
        now: Timestamp,
    ) -> Result<RotationRecord, EngineError> {
        let sealed = super::reveal::seal_for_caller(rt, &rec, key_id, &secret);
        let detail = format!("new key {key_id}");
        self.save(
            rec,
            Some(Box::new(move |tx, r| {
                tx.put_secret(&r.id, &secret)?;
                super::reveal::keep(tx, &r.id, sealed.as_ref())?;
                tx.audit(now, event, Some(&r.slot), Some(&r.id), None, &detail)
            })),
        )
        .await
    }

    /// Issuing: clean up a key a previous attempt may have created (found by
    /// its tag, or by listing where the provider cannot tag), then issue,
    /// then seal the secret in the same commit as the new key's id.
    pub(super) async fn issue(
        &self,
        rt: &Runtime,
        mut rec: RotationRecord,
        fresh: &mut bool,
        now: Timestamp,
    ) -> StepResult {
        let provider = Self::provider(rt, &rec)?;
        let caps = provider.capabilities();
        let resumed = !*fresh;
        let mut req = issue_request(rt, &rec, resumed, now)?;
        let mut notes = Vec::new();
        // A provider whose issue is idempotent on the tag simply answers a
        // repeated request with the same key: nothing to clean up. Any
        // other may hold a key the interrupted attempt created, whose
        // secret keyrot never saw.
        if resumed && !caps.idempotent_issue {
            notes = self
                .recover_interrupted(&*provider, &mut rec, &mut req, now)
                .await?;
        }
        *fresh = false;
        let policy = rt.config.policy(&rec.policy);
        if policy.is_some_and(|p| p.require_scopes) && rec.scopes.is_empty() {
            return Err(CallError::permanent(
                "policy requires scopes but the new key would have none",
            )
            .into());
        }
        super::reveal::check_psk(rt, &rec)?;
        let issued = self
            .call(
                failpoint::around("before:issue", "after:issue"),
                Peer::Provider(&rec.provider, "issue"),
                provider.issue(&req),
            )
            .await?;
        let hash = keyrot_core::crypto::sha256_hex(
            secrecy::ExposeSecret::expose_secret(&issued.secret).as_bytes(),
        );
        rec.new_key = Some(NewKey {
            id: issued.info.id.clone(),
            expires_at: issued.info.expires_at,
            secret_sha256: hash,
            scopes: issued.info.scopes.clone(),
        });
        let mut note = format!(
            "issued key {} (expires {})",
            issued.info.id,
            fmt_opt(issued.info.expires_at)
        );
        if !notes.is_empty() {
            note.push_str(&format!("; {}", notes.join("; ")));
        }
        tracing::info!(new_key = %issued.info.id, "new key issued; secret sealed into the store");
        rec.transition(RotationState::Issued, now, note);
        let key_id = issued.info.id.clone();
        self.commit_issued(rt, rec, &key_id, issued.secret, "key.issued", now)
            .await?;
        Ok(Next::Continue)
    }

    /// Resuming Issuing at a provider that is not idempotent: finds what
    /// the interrupted call created (by tag, or listing: same name, created
    /// after the recorded intent, not known to keyrot) and revokes it, so
    /// that issuing again leaves no orphan. Where the old key is already
    /// gone and the provider's issue is a rotate of it, the newest orphan
    /// (which holds the old key's scopes) is rotated instead and ends at
    /// once; with no orphan either, recovery is impossible and the error
    /// says which key ids to act on. Returns notes for the history.
    pub(super) async fn recover_interrupted(
        &self,
        provider: &dyn Provider,
        rec: &mut RotationRecord,
        req: &mut IssueRequest,
        now: Timestamp,
    ) -> Result<Vec<String>, StepError> {
        let caps = provider.capabilities();
        let since = rec
            .entered(RotationState::Issuing)
            .unwrap_or(rec.updated_at)
            .saturating_sub(CLOCK_SKEW)
            .unwrap_or(Timestamp::MIN);
        let known = self.known_key_ids(&rec.id).await?;
        let found = self
            .call(
                failpoint::around("before:find-tagged", "after:find-tagged"),
                Peer::Provider(&rec.provider, "find_interrupted"),
                provider.find_interrupted(req, since, &known),
            )
            .await?;
        let mut orphans = found.orphans;
        orphans.sort_by_key(|k| k.created_at);
        let mut notes = Vec::new();
        // What an earlier attempt made is revoked below: a server that
        // honours the Idempotency-Key must not answer with it again.
        req.idempotency_key = format!("{}.{}", rec.id, keyrot_core::model::new_rotation_id());
        if found.old_alive == Some(false) {
            let old = rec.old_key_id.clone().unwrap_or_else(|| "(none)".into());
            if rec.old_lost_at.is_none() {
                // Durable before anything else: `rotation show`, the
                // failure mail and the metrics say it even if recovery fails.
                rec.old_lost_at = Some(now);
                rec.updated_at = now;
                *rec = self.save(rec.clone(), None).await?;
                self.metrics.old_key_lost(&rec.provider);
            }
            tracing::error!(old_key = %old, orphans = ?orphans.iter().map(|k| &k.id).collect::<Vec<_>>(),
                "the old key is gone at the provider before keyrot revoked it");
            notes.push(format!("old key {old} was gone at the provider"));
            if caps.issue.keeps_scopes() {
                // The issue rotates `replaces`: rotate the newest orphan
                // (same name and scopes, secret never seen), ending it now.
                let Some(from) = orphans.pop() else {
                    return Err(CallError::permanent(format!(
                        "recovery impossible: old key {old} is gone at provider {} and no key the interrupted issue created was found, so there is nothing to rotate from. Create a key named {:?} by hand with scopes [{}], then run `keyrot rotation abort {}` and `keyrot enroll` (or `keyrot rotate {}`)",
                        rec.provider,
                        req.name,
                        req.scopes.join(", "),
                        rec.id,
                        rec.slot
                    ))
                    .into());
                };
                notes.push(format!(
                    "rotated from key {} (created by the interrupted attempt; revoked with the old key)",
                    from.id
                ));
                rec.revoke_also.push(from.id.clone());
                req.replaces = Some(from.id);
                // Not "now": a server refuses a time already past when it
                // reads it; keyrot revokes the key itself at the end.
                req.old_key_expires_at = now.checked_add(ORPHAN_GRACE).ok();
            }
        }
        let mut revoked = Vec::new();
        for orphan in orphans {
            self.call(
                failpoint::around("before:revoke-orphan", "after:revoke-orphan"),
                Peer::Provider(&rec.provider, "revoke"),
                provider.revoke(&orphan.id, now),
            )
            .await?;
            tracing::warn!(orphan = %orphan.id, "revoked a key an interrupted attempt had issued (its secret was never seen)");
            revoked.push(orphan.id);
        }
        if !revoked.is_empty() {
            notes.push(format!("revoked orphan(s) {}", revoked.join(", ")));
        }
        Ok(notes)
    }

    /// Every key id keyrot knows besides what rotation `id` may have
    /// created: the inventory's current keys and the new keys of other
    /// rotations still in flight. A listed key outside this set, with the
    /// right name and created after the intent, is the interrupted call's.
    pub(super) async fn known_key_ids(&self, id: &str) -> Result<HashSet<String>, EngineError> {
        let id = id.to_string();
        self.db(move |s| {
            let mut known: HashSet<String> = s
                .keys()?
                .into_iter()
                .filter_map(|k| k.current.map(|c| c.id))
                .collect();
            known.extend(
                s.unfinished_rotations()?
                    .into_iter()
                    .filter(|r| r.id != id)
                    .filter_map(|r| r.new_key.map(|k| k.id)),
            );
            Ok(known)
        })
        .await
    }
}

pub(super) fn fmt_opt(t: Option<Timestamp>) -> String {
    t.map(|t| t.to_string()).unwrap_or_else(|| "never".into())
}

/// How long a key keyrot rotated from during a recovery is given at the
/// provider; keyrot revokes it itself when the rotation revokes the old key.
pub(super) const ORPHAN_GRACE: jiff::SignedDuration = jiff::SignedDuration::from_secs(600);

/// Clock difference allowed between keyrot and a provider when a listing
/// looks for keys created after an interrupted issue's intent.
pub(super) const CLOCK_SKEW: jiff::SignedDuration = jiff::SignedDuration::from_secs(120);

/// How long past its current end the old key is said to live when the
/// provider reported no expiry for it: time enough to finish the overlap
/// and recover a lost answer; keyrot revokes it itself when the overlap ends.
pub(super) const OLD_KEY_GRACE: jiff::SignedDuration = jiff::SignedDuration::from_hours(24 * 7);

/// The issue request of `rec`; every attempt sends the same tag (the
/// rotation id), which idempotent providers use to answer a repeat with
/// the key the first attempt created.
pub(super) fn issue_request(
    rt: &Runtime,
    rec: &RotationRecord,
    resumed: bool,
    now: Timestamp,
) -> Result<IssueRequest, CallError> {
    let policy = rt.config.policy(&rec.policy);
    let expires_at = match policy {
        Some(p) => policy::new_key_expiry(p, rec.requested_new_expiry, now)
            .map_err(CallError::permanent)?,
        None => rec.requested_new_expiry,
    };
    let overlap = policy.map(old_key_needed).unwrap_or_default();
    Ok(IssueRequest {
        name: key_name(&rec.slot).to_string(),
        scopes: rec.scopes.clone(),
        expires_at,
        tag: rec.id.clone(),
        idempotency_key: rec.id.clone(),
        replaces: rec.old_key_id.clone(),
        old_key_expires_at: rec
            .old_key_id
            .as_ref()
            .map(|_| old_key_end(rec, overlap, now)),
        reason: rec.reason.clone(),
        rotated_by: rec
            .initiator
            .rotated_by
            .clone()
            .unwrap_or_else(keyrot_core::model::keyrot_identity),
        initiated_from: rec
            .initiator
            .initiated_from
            .clone()
            .unwrap_or_else(|| "schedule".into()),
        policy_id: rec
            .initiator
            .rotation_policy_id
            .clone()
            .unwrap_or_else(|| rec.policy.clone()),
        notify_contacts: rec.notify_contacts,
        resumed,
        created_by: "keyrot".into(),
        now,
    })
}

/// How long after the new key goes live the old key may still be needed:
/// the overlap, and under `revoke_when = "unused"` the revoke deadline
/// after it (a key held until it goes quiet must not end at the provider
/// before that).
pub(super) fn old_key_needed(p: &keyrot_core::policy::Policy) -> jiff::SignedDuration {
    match p.revoke_when {
        keyrot_core::policy::RevokeWhen::Overlap => p.overlap,
        keyrot_core::policy::RevokeWhen::Unused(rule) => p.overlap.saturating_add(rule.deadline),
    }
}

/// The end the old key is given at the provider: its current expiry (it is
/// never shortened by the issue: keyrot revokes it itself once the overlap
/// ends, and until then a lost answer can be recovered from it); a key
/// with no known expiry is given the overlap (and the revoke deadline, see
/// [`old_key_needed`]) plus [`OLD_KEY_GRACE`]. Never
/// before `now` (a provider refuses a time in the past).
pub(super) fn old_key_end(
    rec: &RotationRecord,
    overlap: jiff::SignedDuration,
    now: Timestamp,
) -> Timestamp {
    let end = rec.old_expires_at.unwrap_or_else(|| {
        now.saturating_add(overlap)
            .and_then(|t| t.saturating_add(OLD_KEY_GRACE))
            .unwrap_or(Timestamp::MAX)
    });
    end.max(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyrot_core::policy::testutil::{dur, policy};
    use keyrot_core::policy::{AtDeadline, QuietRule, RevokeWhen};

    #[test]
    fn an_old_key_held_until_quiet_is_not_ended_at_the_provider_before_its_deadline() {
        let mut p = policy();
        p.overlap = dur("1d");
        assert_eq!(old_key_needed(&p), dur("1d"));
        p.revoke_when = RevokeWhen::Unused(QuietRule {
            quiet_period: dur("2d"),
            deadline: dur("14d"),
            at_deadline: AtDeadline::Hold,
        });
        assert_eq!(old_key_needed(&p), dur("15d"));
    }
}
