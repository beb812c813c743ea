//! Distributing and Verifying: the new secret written to each sink, then
//! checked at the provider and read back from every sink before the
//! reload hooks run (`reload.rs`) and the overlap begins.

use std::sync::Arc;

use jiff::Timestamp;
use secrecy::SecretString;

use super::call::Peer;
use super::revoke::old_key;
use super::steps::{Next, StepError, StepResult, key_name};
use super::{Engine, Runtime};
use crate::notify;
use keyrot_core::error::CallError;
use keyrot_core::failpoint;
use keyrot_core::model::{RotationRecord, RotationState, SinkResult};
use keyrot_peers::provider::Provider;
use keyrot_peers::sink::SinkTarget;

impl Engine {
    pub(super) async fn secret(&self, rec: &RotationRecord) -> Result<SecretString, StepError> {
        let id = rec.id.clone();
        self.db(move |s| s.secret(&id)).await?.ok_or_else(|| {
            StepError::Call(CallError::permanent(format!(
                "the secret of rotation {} is missing from the store",
                rec.id
            )))
        })
    }

    /// Distributing: each sink not yet recorded is written, and each success
    /// committed on its own, so a resume re-writes only what is missing.
    /// The last one's success commits with the move to Verifying (nothing
    /// external happens between them); the first one's carries the entry
    /// into Distributing when the rotation came from Issued.
    pub(super) async fn distribute(
        &self,
        rt: &Runtime,
        mut rec: RotationRecord,
        now: Timestamp,
    ) -> StepResult {
        let pending: Vec<String> = rec
            .sinks
            .iter()
            .filter(|s| !rec.sink_results.contains_key(*s))
            .cloned()
            .collect();
        if !pending.is_empty() {
            let secret = self.secret(&rec).await?;
            let target = target(&rec)?;
            let last = pending.len() - 1;
            for (i, name) in pending.into_iter().enumerate() {
                let sink = rt.sinks.get(&name).cloned().ok_or_else(|| {
                    CallError::permanent(format!("sink {name:?} is no longer configured"))
                })?;
                let version = self
                    .call(
                        failpoint::around("before:sink-put", "after:sink-put"),
                        Peer::Sink(&name),
                        sink.put(&target, &secret),
                    )
                    .await?;
                tracing::info!(sink = %name, "secret written to sink");
                rec.sink_results.insert(
                    name,
                    SinkResult {
                        written_at: self.now(),
                        verified_at: None,
                        version,
                    },
                );
                rec.updated_at = self.now();
                if i < last {
                    rec = self.save(rec, None).await?;
                }
            }
        }
        rec.transition(RotationState::Verifying, now, "all sinks written");
        self.save(rec, None).await?;
        Ok(Next::Continue)
    }

    /// Verifying: the provider accepts the new key, and every sink reads
    /// back the same secret (compared by hash).
    pub(super) async fn verify(
        &self,
        rt: &Runtime,
        mut rec: RotationRecord,
        now: Timestamp,
    ) -> StepResult {
        let provider = Self::provider(rt, &rec)?;
        let new = rec
            .new_key
            .clone()
            .ok_or_else(|| CallError::permanent("verifying without a new key"))?;
        if provider.capabilities().verify {
            let secret = self.secret(&rec).await?;
            self.call(
                failpoint::around("before:verify", "after:verify"),
                Peer::Provider(&rec.provider, "verify"),
                provider.verify(&new.id, &secret, now),
            )
            .await?;
        }
        if provider.capabilities().issue.keeps_scopes() {
            self.read_back_scopes(&*provider, &mut rec, now).await?;
        }
        let target = target(&rec)?;
        for name in rec.sinks.clone() {
            let sink = rt.sinks.get(&name).cloned().ok_or_else(|| {
                CallError::permanent(format!("sink {name:?} is no longer configured"))
            })?;
            if !sink.can_read_back() {
                tracing::info!(sink = %name, "sink cannot be read back; relying on its write having succeeded");
                if let Some(r) = rec.sink_results.get_mut(&name) {
                    r.verified_at = Some(now);
                }
                continue;
            }
            let read = self
                .call(
                    failpoint::around("before:sink-read", "after:sink-read"),
                    Peer::Sink(&name),
                    sink.read_back(&target),
                )
                .await?;
            match read {
                Some(h) if h == new.secret_sha256 => {
                    if let Some(r) = rec.sink_results.get_mut(&name) {
                        r.verified_at = Some(now);
                    }
                }
                Some(_) => return Err(CallError::transient(format!(
                    "sink {name} holds a different secret than the one written (another writer?)"
                ))
                .into()),
                None => {
                    return Err(CallError::transient(format!(
                        "sink {name} holds no secret for {}",
                        rec.slot
                    ))
                    .into());
                }
            }
        }
        // Every sink holds the new secret and the provider accepts it:
        // sinks that stage a version make it current now (idempotent).
        for name in rec.sinks.clone() {
            if let Some(sink) = rt.sinks.get(&name) {
                self.call(
                    failpoint::around("before:sink-finish", "after:sink-finish"),
                    Peer::Sink(&name),
                    sink.finish(&target),
                )
                .await?;
            }
        }
        if rec.pending_hooks().next().is_some() {
            // The hooks' batches are decided by when each rotation's secret
            // was in place: the time after the last sink call, not the
            // step's start.
            let at = self.now();
            let names: Vec<&str> = rec.pending_hooks().map(String::as_str).collect();
            let note = format!("verified; reload hooks to run: {}", names.join(", "));
            rec.transition(RotationState::Reloading, at, note);
            self.save(rec, None).await?;
            return Ok(Next::Continue);
        }
        self.after_verified(rt, rec, now).await
    }

    /// Every sink is verified and every reload hook done: a first key
    /// completes, a native rotate completes (its old key ended at issue),
    /// and any other rotation enters the overlap.
    pub(super) async fn after_verified(
        &self,
        rt: &Runtime,
        mut rec: RotationRecord,
        now: Timestamp,
    ) -> StepResult {
        let provider = Self::provider(rt, &rec)?;
        if rec.old_key_id.is_none() {
            rec.transition(
                RotationState::Completed,
                now,
                "verified; first key of this slot",
            );
            return self.complete(rt, rec, now).await;
        }
        let caps = provider.capabilities();
        if caps.issue.no_overlap() {
            // The native rotate that issued the new key ended the old one.
            let old = rec.old_key_id.clone().unwrap_or_else(|| "(none)".into());
            rec.old_revoked_at = rec.entered(RotationState::Issued).or(Some(now));
            rec.transition(
                RotationState::Completed,
                now,
                format!("verified; provider {} rotates natively, so old key {old} ended when the new one was issued (no overlap)", rec.provider),
            );
            return self.complete(rt, rec, now).await;
        }
        let old_inactive = caps.deactivate;
        let can_revoke = caps.revoke;
        if caps.deactivate {
            let old = old_key(&rec)?;
            self.call(
                failpoint::around("before:deactivate", "after:deactivate"),
                Peer::Provider(&rec.provider, "deactivate"),
                provider.deactivate(&old, now),
            )
            .await?;
            tracing::info!(old_key = %old, "old key set inactive for the overlap; it is deleted when the overlap ends");
        }
        let overlap = rt
            .config
            .policy(&rec.policy)
            .map(|p| p.overlap)
            .unwrap_or_default();
        let revoke_at = rec.requested_old_expiry.unwrap_or(now + overlap).max(now);
        rec.revoke_old_at = Some(revoke_at);
        rec.transition(
            RotationState::Overlap,
            now,
            format!("verified; old key valid until {revoke_at}"),
        );
        if revoke_at <= now {
            // No overlap to wait for: Overlap would move to Revoking at
            // once, with nothing external between them, so both commit
            // together (as the Overlap step does it: `revoke_old_at` due).
            // The completion message tells of both keys at once.
            rec.transition(RotationState::Revoking, now, "overlap over");
            self.save(rec, None).await?;
            return Ok(Next::Continue);
        }
        // Key owners learn of the new key when it goes live, in the commit
        // that enters Overlap, not once the old key is dead.
        let mail = notify::Composer::new(Arc::clone(&rt.config));
        self.save_notifying(
            rec,
            move |r, key| mail.live(r, key, can_revoke, old_inactive, now),
            None,
        )
        .await?;
        Ok(Next::Continue)
    }

    /// Records the scopes the provider reports for the new key (its issue
    /// answer names none): the record never claims scopes the key lacks.
    /// A key not listed yet (a lagging list) is retried.
    pub(super) async fn read_back_scopes(
        &self,
        provider: &dyn Provider,
        rec: &mut RotationRecord,
        now: Timestamp,
    ) -> Result<(), StepError> {
        if rec.new_key.is_none() {
            return Ok(());
        }
        let listed = self
            .call(
                failpoint::around("before:list", "after:list"),
                Peer::Provider(&rec.provider, "list"),
                provider.list(now),
            )
            .await?;
        let Some(new) = rec.new_key.as_mut() else {
            return Ok(());
        };
        let Some(found) = listed.into_iter().find(|k| k.id == new.id) else {
            return Err(CallError::transient(format!(
                "new key {} is not listed by provider {} yet; its scopes are read back before it is used",
                new.id, rec.provider
            ))
            .into());
        };
        if !same_scopes(&found.scopes, &new.scopes) {
            tracing::warn!(new_key = %new.id, reported = ?found.scopes, expected = ?new.scopes,
                "the provider reports other scopes for the new key than expected; recording what it reports");
        }
        new.scopes = found.scopes;
        Ok(())
    }
}

pub(super) fn target(rec: &RotationRecord) -> Result<SinkTarget, CallError> {
    let new = rec
        .new_key
        .as_ref()
        .ok_or_else(|| CallError::permanent("no new key to distribute"))?;
    Ok(SinkTarget {
        slot: rec.slot.clone(),
        provider: rec.provider.clone(),
        key_name: key_name(&rec.slot).to_string(),
        key_id: new.id.clone(),
        rotation_id: rec.id.clone(),
        expires_at: new.expires_at,
        probe: false,
    })
}

/// Whether two scope lists hold the same scopes (order and repeats aside).
pub(super) fn same_scopes(a: &[String], b: &[String]) -> bool {
    let a: std::collections::BTreeSet<&str> = a.iter().map(String::as_str).collect();
    let b: std::collections::BTreeSet<&str> = b.iter().map(String::as_str).collect();
    a == b
}
