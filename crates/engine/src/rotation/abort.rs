//! `keyrot rotation abort`: an operator abandons a rotation, and the new
//! key it issued (or an interrupted issue left) is revoked first.

use std::sync::Arc;

use jiff::Timestamp;

use keyrot_core::failpoint;
use keyrot_core::model::{RotationRecord, RotationState};

use super::Refusal;
use super::call::Peer;
use super::issue::{CLOCK_SKEW, issue_request};
use super::{Engine, Runtime, plan};

impl Engine {
    /// Abort with the runner claim held.
    pub(super) async fn abort_claimed(&self, id: &str) -> Result<RotationRecord, Refusal> {
        let rt = self.runtime();
        let mut rec = self
            .load(id)
            .await?
            .ok_or_else(|| Refusal::unknown(format!("unknown rotation {id}")))?;
        let at = rec.stopped_at();
        if rec.state.is_terminal() && rec.state != RotationState::Failed {
            return Err(Refusal::conflict(format!(
                "rotation {id} is already {}",
                rec.state
            )));
        }
        if rec.new_key_distributed() {
            let sinks: Vec<&str> = rec.sink_results.keys().map(String::as_str).collect();
            return Err(Refusal::conflict(format!(
                "rotation {id} has already written the new key to sink(s) {}; revoking it now would break consumers that read them. Resume it instead (`keyrot rotation resume {id}`)",
                sinks.join(", ")
            )));
        }
        let now = self.now();
        let provider = Self::provider(&rt, &rec).map_err(|e| Refusal::conflict(e.message))?;
        if rec.old_key_ended_natively(provider.capabilities().issue.no_overlap()) {
            return Err(Refusal::conflict(format!(
                "rotation {id}: provider {} rotates natively, so the old key ended when the new one was issued; the new key is the only live one and aborting would revoke it. Resume instead (`keyrot rotation resume {id}`)",
                rec.provider
            )));
        }
        let revoked = self.revoke_new_keys(&rt, &rec, at, now).await?;
        let note = if revoked.is_empty() {
            "aborted by operator".to_string()
        } else {
            format!(
                "aborted by operator; revoked new key(s) {}",
                revoked.join(", ")
            )
        };
        rec.transition(RotationState::Aborted, now, note.clone());
        let cfg = Arc::clone(&rt.config);
        let saved = self
            .save(
                rec,
                Some(Box::new(move |tx, r| {
                    tx.wipe_secret(&r.id)?;
                    tx.wipe_secret(&keyrot_core::crypto::psk::store_key(&r.id))?;
                    if let Some(mut k) = tx.key(&r.slot)? {
                        if k.active_rotation.as_deref() == Some(r.id.as_str()) {
                            k.active_rotation = None;
                        }
                        let others = if k.group.is_some() {
                            tx.keys()?
                        } else {
                            Vec::new()
                        };
                        let last = plan::group_last_start(&k, &others);
                        plan::schedule(&cfg, &mut k, last, now);
                        tx.put_key(&k)?;
                    }
                    tx.audit(
                        now,
                        "rotation.aborted",
                        Some(&r.slot),
                        Some(&r.id),
                        None,
                        &note,
                    )
                })),
            )
            .await?;
        self.metrics.rotation_ended(&saved.provider, saved.state);
        Ok(saved)
    }

    /// Revokes the new key of `rec` (failed or stopped in `at`), or, when
    /// an issue was interrupted, the key it may have created, so that none
    /// is left orphaned. Returns the ids revoked. "Already revoked" counts
    /// as done, so a crash after this and before the caller's commit is
    /// harmless: the next attempt revokes again.
    pub(super) async fn revoke_new_keys(
        &self,
        rt: &Runtime,
        rec: &RotationRecord,
        at: RotationState,
        now: Timestamp,
    ) -> Result<Vec<String>, Refusal> {
        let provider = Self::provider(rt, rec).map_err(|e| Refusal::conflict(e.message))?;
        let mut revoked = Vec::new();
        if let Some(new) = &rec.new_key {
            self.call(
                failpoint::around("before:revoke-orphan", "after:revoke-orphan"),
                Peer::Provider(&rec.provider, "revoke"),
                provider.revoke(&new.id, now),
            )
            .await
            .map_err(|e| Refusal::peer(format!("revoking the new key {}: {e}", new.id)))?;
            revoked.push(new.id.clone());
        } else if at == RotationState::Issuing && !provider.capabilities().idempotent_issue {
            // The interrupted issue may have created a key: found by tag,
            // or by listing (same name, created after the intent, unknown
            // to keyrot), and revoked.
            let req =
                issue_request(rt, rec, true, now).map_err(|e| Refusal::conflict(e.message))?;
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
                    provider.find_interrupted(&req, since, &known),
                )
                .await
                .map_err(|e| {
                    Refusal::peer(format!(
                        "finding the key the interrupted issue created: {}",
                        e.message
                    ))
                })?;
            for k in found.orphans {
                self.call(
                    failpoint::around("before:revoke-orphan", "after:revoke-orphan"),
                    Peer::Provider(&rec.provider, "revoke"),
                    provider.revoke(&k.id, now),
                )
                .await
                .map_err(|e| Refusal::peer(e.message))?;
                revoked.push(k.id);
            }
        } else if at == RotationState::Issuing && provider.capabilities().idempotent_issue {
            // The interrupted issue may have created a key that carries no
            // tag. The provider answers the same request (same idempotency
            // key) with that key rather than a new one: ask again, and
            // revoke what comes back, so that no key is left behind.
            let req =
                issue_request(rt, rec, true, now).map_err(|e| Refusal::conflict(e.message))?;
            let again = self
                .call(
                    failpoint::around("before:issue", "after:issue"),
                    Peer::Provider(&rec.provider, "issue"),
                    provider.issue(&req),
                )
                .await
                .map_err(|e| {
                    Refusal::peer(format!(
                        "finding the key the interrupted issue created: {}",
                        e.message
                    ))
                })?;
            self.call(
                failpoint::around("before:revoke-orphan", "after:revoke-orphan"),
                Peer::Provider(&rec.provider, "revoke"),
                provider.revoke(&again.info.id, now),
            )
            .await
            .map_err(|e| Refusal::peer(e.message))?;
            revoked.push(again.info.id.clone());
        }
        Ok(revoked)
    }
}
