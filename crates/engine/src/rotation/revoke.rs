//! Revoking and Completed: the old key revoked once the overlap is over,
//! then the one commit that wipes the secret and points the inventory at
//! the new key.

use std::sync::Arc;

use jiff::Timestamp;

use super::call::Peer;
use super::steps::{Next, StepResult, key_name};
use super::{Engine, EngineError, Runtime, plan};
use crate::notify;
use keyrot_core::error::CallError;
use keyrot_core::failpoint;
use keyrot_core::model::{KeyInfo, KeyRecord, RotationRecord, RotationState};

impl Engine {
    /// Revoking: the old key goes ("already revoked" counts as done).
    pub(super) async fn revoke_old(
        &self,
        rt: &Runtime,
        mut rec: RotationRecord,
        now: Timestamp,
    ) -> StepResult {
        let provider = Self::provider(rt, &rec)?;
        let old = old_key(&rec)?;
        let note = if provider.capabilities().revoke {
            self.call(
                failpoint::around("before:revoke", "after:revoke"),
                Peer::Provider(&rec.provider, "revoke"),
                provider.revoke(&old, now),
            )
            .await?;
            for also in rec.revoke_also.clone() {
                self.call(
                    failpoint::around("before:revoke-orphan", "after:revoke-orphan"),
                    Peer::Provider(&rec.provider, "revoke"),
                    provider.revoke(&also, now),
                )
                .await?;
                tracing::info!(key = %also, "key of an interrupted attempt revoked");
            }
            rec.old_revoked_at = Some(now);
            tracing::info!(old_key = %old, "old key revoked");
            if rec.revoke_also.is_empty() {
                format!("old key {old} revoked")
            } else {
                format!("old key {old} and {} revoked", rec.revoke_also.join(", "))
            }
        } else {
            format!("provider cannot revoke: old key {old} lives until it expires")
        };
        rec.transition(RotationState::Completed, now, note);
        self.complete(rt, rec, now).await
    }

    /// Completed: wipe the secret (or keep it, `keep_current_secret`), point the inventory at the new key,
    /// queue notifications and audit, all in one transaction.
    pub(super) async fn complete(
        &self,
        rt: &Runtime,
        rec: RotationRecord,
        now: Timestamp,
    ) -> StepResult {
        let cfg = Arc::clone(&rt.config);
        let mail = notify::Composer::new(Arc::clone(&cfg));
        let slot = rec.slot.clone();
        let saved = self
            .db(move |s| {
                s.write(move |tx| {
                    tx.put_rotation(&rec)?;
                    super::reveal::wipe_if_stale(tx, &rec, now)?;
                    let mut key = tx.key(&slot)?;
                    // The secret is wiped, or kept as the slot's current
                    // one (`keep_current_secret`), the slot's previous
                    // kept secret wiped either way.
                    let keep = cfg
                        .policy(&rec.policy)
                        .is_some_and(|p| p.keep_current_secret)
                        && rec.new_key.is_some()
                        && key.is_some();
                    super::push::settle_kept(tx, key.as_mut(), &rec.id, keep)?;
                    if let Some(k) = key.as_mut() {
                        point_at_new_key(k, &rec, now);
                        let others = if k.group.is_some() {
                            tx.keys()?
                        } else {
                            Vec::new()
                        };
                        let last = plan::group_last_start(k, &others);
                        plan::schedule(&cfg, k, last, now);
                        tx.put_key(k)?;
                    }
                    // The revocation (if any) commits here too: its
                    // message is queued with it (one message: see
                    // `Composer::finished`).
                    for m in mail.finished(&rec, key.as_ref(), now) {
                        tx.put_message(&m)?;
                    }
                    tx.audit(
                        now,
                        "rotation.completed",
                        Some(&rec.slot),
                        Some(&rec.id),
                        rec.initiator.rotated_by.as_deref(),
                        &format!(
                            "new key {}",
                            rec.new_key.as_ref().map(|k| k.id.as_str()).unwrap_or("-")
                        ),
                    )?;
                    Ok(rec)
                })
            })
            .await?;
        self.wake.notify();
        self.metrics.rotation_ended(&saved.provider, saved.state);
        keyrot_core::failpoint::hit("after:completed").map_err(|e| EngineError::Join(e.message))?;
        tracing::info!(rotation = %saved.id, key = %saved.slot, step = "completed",
            new_key = %saved.new_key.as_ref().map(|k| k.id.as_str()).unwrap_or("-"),
            expires = %saved.new_key.as_ref().and_then(|k| k.expires_at).map(|t| t.to_string()).unwrap_or_default(),
            "rotation completed");
        if let Err(e) = self.sweep_envelopes().await {
            tracing::warn!(error = %e, "cannot sweep sealed secrets no API caller took");
        }
        Ok(Next::Stop)
    }
}

/// The old key a step is about to deactivate or revoke. A rotation of a
/// slot without a key completes straight from Verifying, so a missing id
/// here is a broken invariant: the step fails, naming it, and never calls
/// the provider with an empty key id.
pub(super) fn old_key(rec: &RotationRecord) -> Result<String, CallError> {
    rec.old_key_id
        .clone()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            CallError::permanent(format!(
                "rotation {} in {} has no old key id: nothing to deactivate or revoke (a broken invariant; `keyrot rotation show {}`)",
                rec.id, rec.state, rec.id
            ))
        })
}

/// The inventory now points at the new key; the next sync refreshes the
/// rest of its metadata from the provider.
pub(super) fn point_at_new_key(k: &mut KeyRecord, rec: &RotationRecord, now: Timestamp) {
    if let Some(new) = &rec.new_key {
        k.current = Some(KeyInfo {
            id: new.id.clone(),
            name: key_name(&rec.slot).to_string(),
            scopes: new.scopes.clone(),
            created_by: Some("keyrot".into()),
            created_at: rec.entered(RotationState::Issued).or(Some(now)),
            expires_at: new.expires_at,
            last_used_at: None,
            tags: Default::default(),
        });
    }
    if k.active_rotation.as_deref() == Some(rec.id.as_str()) {
        k.active_rotation = None;
    }
    k.last_rotated_at = Some(now);
}
