//! `restart`: the way out of a Failed rotation that neither resume nor
//! abort can finish (a new key that expired while the rotation waited, a
//! new key already in sinks that the operator no longer trusts). The new
//! key is revoked first, even when sinks hold it: the operator asks for a
//! fresh start, and consumers that read those sinks fail until the fresh
//! rotation writes its key. Then one commit ends the rotation Aborted
//! ("restarted as NEW") and creates the fresh Pending one, so a crash
//! between the two leaves either the Failed rotation (restart again: a
//! revoked key counts as revoked) or both records, never a slot whose
//! rotation vanished or two rotations running on one slot.

use std::sync::Arc;

use jiff::Timestamp;

use super::Refusal;
use super::{Engine, StartRequest, new_record};
use keyrot_core::model::{RotationRecord, RotationState};

impl Engine {
    /// Restarts Failed rotation `id`: revokes its new key (if one was
    /// issued, even one sinks hold), ends it Aborted and starts a fresh
    /// rotation of the same key with the same trigger, reason and
    /// initiator. Returns the fresh rotation.
    pub async fn restart(self: &Arc<Self>, id: &str) -> Result<RotationRecord, Refusal> {
        if !self.claim(id) {
            return Err(Refusal::conflict(format!(
                "rotation {id} is running a step; restart it once it fails"
            )));
        }
        let out = self.restart_claimed(id).await;
        self.release(id);
        if let Ok(fresh) = &out {
            tracing::info!(rotation = %fresh.id, key = %fresh.slot, provider = %fresh.provider,
                step = "pending", restarted_from = %id, "rotation restarted");
            self.spawn(&fresh.id);
        }
        out
    }

    async fn restart_claimed(&self, id: &str) -> Result<RotationRecord, Refusal> {
        let rt = self.runtime();
        let rec = self
            .load(id)
            .await?
            .ok_or_else(|| Refusal::unknown(format!("unknown rotation {id}")))?;
        if rec.state != RotationState::Failed {
            return Err(Refusal::conflict(format!(
                "rotation {id} is {}, not failed: nothing to restart",
                rec.state
            )));
        }
        let at = rec.failed_in.unwrap_or(RotationState::Pending);
        let provider = Self::provider(&rt, &rec).map_err(|e| Refusal::conflict(e.message))?;
        if rec.old_key_ended_natively(provider.capabilities().issue.no_overlap()) {
            return Err(Refusal::conflict(format!(
                "rotation {id}: provider {} rotates natively, so the old key ended when the new one was issued; the new key is the only live one and a fresh rotation would have no key to rotate from. Resume instead (`keyrot rotation resume {id}`)",
                rec.provider
            )));
        }
        let now = self.now();
        let revoked = self.revoke_new_keys(&rt, &rec, at, now).await?;
        let (id_s, cfg_rt) = (id.to_string(), Arc::clone(&rt));
        let out = self
            .db(move |s| {
                s.write(|tx| {
                    let Some(mut old) = tx.rotation(&id_s)? else {
                        return Ok(Err(Refusal::unknown(format!("unknown rotation {id_s}"))));
                    };
                    // Resumed by another caller while the key was revoked.
                    if old.state != RotationState::Failed {
                        return Ok(Err(Refusal::conflict(format!(
                            "rotation {id_s} is {} now, not failed",
                            old.state
                        ))));
                    }
                    let Some(mut key) = tx.key(&old.slot)? else {
                        return Ok(Err(Refusal::conflict(format!(
                            "key {} is no longer known: nothing to restart",
                            old.slot
                        ))));
                    };
                    let future = |t: Option<Timestamp>| t.filter(|t| *t > now);
                    let req = StartRequest {
                        trigger: old.trigger,
                        reason: old.reason.clone(),
                        initiator: old.initiator.clone(),
                        new_expires_at: future(old.requested_new_expiry),
                        old_expires_at: future(old.requested_old_expiry),
                        notify_contacts: old.notify_contacts,
                        // The caller who asked for the sealed secret asked
                        // about the old rotation id; nobody waits on this one.
                        reveal_psk: None,
                    };
                    let fresh = new_record(&cfg_rt, &key, req, now);
                    let mut note = format!("restarted as {}", fresh.id);
                    if !revoked.is_empty() {
                        note.push_str(&format!("; revoked new key(s) {}", revoked.join(", ")));
                    }
                    old.transition(RotationState::Aborted, now, note.clone());
                    tx.wipe_secret(&old.id)?;
                    tx.wipe_secret(&keyrot_core::crypto::psk::store_key(&old.id))?;
                    key.active_rotation = Some(fresh.id.clone());
                    key.next_due = None;
                    key.due_reason = Some("rotation in progress".into());
                    key.last_started_at = Some(now);
                    tx.put_rotation(&old)?;
                    tx.put_rotation(&fresh)?;
                    tx.put_key(&key)?;
                    tx.audit(
                        now,
                        "rotation.aborted",
                        Some(&old.slot),
                        Some(&old.id),
                        None,
                        &note,
                    )?;
                    tx.audit(
                        now,
                        "rotation.started",
                        Some(&fresh.slot),
                        Some(&fresh.id),
                        fresh.initiator.rotated_by.as_deref(),
                        &format!(
                            "trigger={:?} reason={} restart of {}",
                            fresh.trigger, fresh.reason, old.id
                        ),
                    )?;
                    Ok(Ok((old.provider.clone(), fresh)))
                })
            })
            .await??;
        self.wake.notify();
        let (provider_name, fresh) = out;
        self.metrics
            .rotation_ended(&provider_name, RotationState::Aborted);
        Ok(fresh)
    }
}
