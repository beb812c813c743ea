//! The runner and the dispatch of one step per state. A step makes at most
//! one kind of external call and ends by committing the next state; the
//! runner loops over steps until the rotation waits or ends. The forward
//! steps are in `issue.rs`, `distribute.rs`, `quiet.rs` (the overlap) and
//! `revoke.rs`, and every
//! external call goes through `call.rs`; the assisted path (asking people,
//! `keyrot enroll`) is in `assisted.rs`, and the operator's ways out are
//! `abort.rs` and `restart.rs`.

use std::sync::Arc;

use jiff::Timestamp;

use super::{Engine, EngineError, Runtime, backoff};
use crate::notify;
use keyrot_core::error::CallError;
use keyrot_core::model::{KeyRecord, RotationRecord, RotationState};
use keyrot_core::policy;
use keyrot_core::store::Tx;
use keyrot_peers::provider::Provider;

/// What the runner does after a step.
pub(super) enum Next {
    /// Take the next step now.
    Continue,
    /// The rotation waits for a timer (or an operator); stop the runner.
    Stop,
}

/// Why a step failed.
#[derive(Debug)]
pub(super) enum StepError {
    /// An external call failed (retried within the budget when transient).
    Call(CallError),
    /// The store failed; the runner stops and the rotation resumes later.
    Engine(EngineError),
}

impl From<CallError> for StepError {
    fn from(e: CallError) -> Self {
        StepError::Call(e)
    }
}

impl From<EngineError> for StepError {
    fn from(e: EngineError) -> Self {
        StepError::Engine(e)
    }
}

pub(super) type StepResult = Result<Next, StepError>;

/// The record and a function run in the same transaction as its save.
pub(super) type Extra =
    Box<dyn FnOnce(&mut Tx, &RotationRecord) -> Result<(), keyrot_core::store::StoreError> + Send>;

impl Engine {
    /// Drives rotation `id` until it waits or ends, or keyrot shuts down
    /// (the in-flight step always commits first).
    pub(super) async fn drive(self: &Arc<Self>, id: &str) {
        let rt = self.runtime();
        let Some(limit) = self.provider_limit(&rt, id).await else {
            return;
        };
        let Ok(_permit) = limit.acquire_owned().await else {
            return;
        };
        // True while this runner entered Issuing itself and has not called
        // the provider yet: only then can cleanup-by-tag be skipped.
        let mut fresh_issue = false;
        loop {
            if self.stop.is_cancelled() {
                tracing::info!(rotation = %id, "shutting down: rotation will resume at next start");
                return;
            }
            let mut rec = match self.load(id).await {
                Ok(Some(rec)) => rec,
                Ok(None) => return,
                Err(e) => {
                    let after = rt.config.daemon.retry.initial;
                    tracing::error!(rotation = %id, error = %e, retry_in = %after, "cannot read rotation; trying again");
                    self.respawn_later(id, after);
                    return;
                }
            };
            if rec.state.is_terminal() {
                return;
            }
            if rec.retry_at.is_some_and(|t| t > self.now()) {
                return;
            }
            let rt = self.runtime();
            if rec.state == RotationState::Issued {
                enter_distributing(&mut rec, self.now());
            }
            let state = rec.state;
            let result = self
                .metrics
                .time_step(state, self.step(&rt, rec, &mut fresh_issue))
                .await;
            match result {
                Ok(Next::Continue) => {}
                Ok(Next::Stop) => return,
                Err(StepError::Engine(e)) => {
                    // Not the step's fault: the step is driven again after
                    // the first backoff (not counted against its attempts).
                    let after = rt.config.daemon.retry.initial;
                    tracing::error!(rotation = %id, step = %state, error = %e, retry_in = %after, "store error; the step runs again");
                    self.respawn_later(id, after);
                    return;
                }
                Err(StepError::Call(err)) => {
                    if let Err(e) = self.record_failure(&rt, id, state, err).await {
                        tracing::error!(rotation = %id, error = %e, "cannot record failure");
                    }
                    return;
                }
            }
        }
    }

    pub(super) async fn provider_limit(
        &self,
        rt: &Runtime,
        id: &str,
    ) -> Option<Arc<tokio::sync::Semaphore>> {
        let rec = self.load(id).await.ok().flatten()?;
        match rt.limits.get(&rec.provider) {
            Some(l) => Some(Arc::clone(l)),
            None => {
                tracing::error!(rotation = %id, provider = %rec.provider, "provider is not configured; rotation waits");
                None
            }
        }
    }

    pub(super) async fn load(&self, id: &str) -> Result<Option<RotationRecord>, EngineError> {
        let id = id.to_string();
        self.db(move |s| s.rotation(&id)).await
    }

    /// Commits `rec` (with `extra` in the same transaction) and wakes the
    /// scheduler, whose timers may have moved.
    pub(super) async fn save(
        &self,
        rec: RotationRecord,
        extra: Option<Extra>,
    ) -> Result<RotationRecord, EngineError> {
        let saved = self
            .db(move |s| {
                s.write(move |tx| {
                    tx.put_rotation(&rec)?;
                    if let Some(f) = extra {
                        f(tx, &rec)?;
                    }
                    Ok(rec)
                })
            })
            .await?;
        self.wake.notify();
        keyrot_core::failpoint::hit(&format!("after:{}", saved.state))
            .map_err(|e| EngineError::Join(e.message))?;
        Ok(saved)
    }

    /// Commits `rec` with the messages `build` makes for it (given its key
    /// record) queued in the same transaction, and an audit entry if given.
    pub(super) async fn save_notifying(
        &self,
        rec: RotationRecord,
        build: impl FnOnce(
            &RotationRecord,
            Option<&KeyRecord>,
        ) -> Vec<keyrot_core::model::OutboxMessage>
        + Send
        + 'static,
        audit: Option<(Timestamp, &'static str, String)>,
    ) -> Result<RotationRecord, EngineError> {
        self.save(
            rec,
            Some(Box::new(move |tx, r| {
                let key = tx.key(&r.slot)?;
                for m in build(r, key.as_ref()) {
                    tx.put_message(&m)?;
                }
                match audit {
                    Some((at, event, detail)) => {
                        tx.audit(at, event, Some(&r.slot), Some(&r.id), None, &detail)
                    }
                    None => Ok(()),
                }
            })),
        )
        .await
    }

    pub(super) fn provider(
        rt: &Runtime,
        rec: &RotationRecord,
    ) -> Result<Arc<dyn Provider>, CallError> {
        rt.providers.get(&rec.provider).cloned().ok_or_else(|| {
            CallError::permanent(format!(
                "provider {:?} is no longer configured",
                rec.provider
            ))
        })
    }

    /// Runs one step inside the `step` span. The span is attached to the
    /// future (`instrument`), not entered on the thread: a guard held across
    /// an `.await` would lose the fields when the task moves to another
    /// worker and lend them to whatever that thread runs next.
    pub(super) async fn step(
        self: &Arc<Self>,
        rt: &Runtime,
        rec: RotationRecord,
        fresh_issue: &mut bool,
    ) -> StepResult {
        use tracing::Instrument as _;
        let span = tracing::info_span!("step", rotation = %rec.id, key = %rec.slot, provider = %rec.provider, step = %rec.state);
        self.step_in_span(rt, rec, fresh_issue)
            .instrument(span)
            .await
    }

    pub(super) async fn step_in_span(
        self: &Arc<Self>,
        rt: &Runtime,
        mut rec: RotationRecord,
        fresh_issue: &mut bool,
    ) -> StepResult {
        let now = self.now();
        match rec.state {
            RotationState::Pending => {
                super::reveal::check_psk(rt, &rec)?;
                let provider = Self::provider(rt, &rec)?;
                let caps = provider.capabilities();
                if !caps.issue.can_issue() {
                    let why = "provider cannot create keys".to_string();
                    return self.ask_for_key(rt, rec, why, now).await;
                }
                if caps.issue.keeps_scopes()
                    && let Some(why) = self.scopes_not_kept(rt, &rec).await?
                {
                    tracing::warn!(scopes = ?rec.scopes, "{why}: asking for a key with the policy's scopes instead");
                    return self.ask_for_key(rt, rec, why, now).await;
                }
                rec.transition(
                    RotationState::Issuing,
                    now,
                    format!("issuing at {} with tag {}", rec.provider, rec.id),
                );
                self.save(rec, None).await?;
                *fresh_issue = true;
                Ok(Next::Continue)
            }
            RotationState::Issuing => self.issue(rt, rec, fresh_issue, now).await,
            // `drive` enters Distributing before the step (see
            // `enter_distributing`); a step begun in Issued does the same.
            RotationState::Issued => {
                enter_distributing(&mut rec, now);
                self.distribute(rt, rec, now).await
            }
            RotationState::Distributing => self.distribute(rt, rec, now).await,
            RotationState::Verifying => self.verify(rt, rec, now).await,
            RotationState::Reloading => self.reload(rt, rec, now).await,
            RotationState::Overlap => self.overlap(rt, rec, now).await,
            RotationState::Revoking => self.revoke_old(rt, rec, now).await,
            RotationState::AwaitingSecret => self.remind(rt, rec, now).await,
            RotationState::Completed | RotationState::Failed | RotationState::Aborted => {
                Ok(Next::Stop)
            }
        }
    }

    /// A step failed: retry later within the budget, else Failed (the old
    /// key untouched) with a notification.
    pub(super) async fn record_failure(
        &self,
        rt: &Runtime,
        id: &str,
        state: RotationState,
        err: CallError,
    ) -> Result<(), EngineError> {
        let Some(mut rec) = self.load(id).await? else {
            return Ok(());
        };
        let now = self.now();
        if rec.state == RotationState::Issued && state == RotationState::Distributing {
            // The step began in Issued; its entry into Distributing was not
            // committed yet (`enter_distributing`): record the failure there.
            enter_distributing(&mut rec, now);
        }
        // A peer that says "wait" (429, or Retry-After) is not failing:
        // such answers do not spend the retry budget, up to a bound.
        let throttled = err.transient
            && err.retry_after.is_some()
            && rec.throttled < keyrot_core::model::MAX_THROTTLED;
        if throttled {
            rec.throttled += 1;
        } else {
            rec.attempts += 1;
        }
        rec.last_error = Some(err.message.clone());
        rec.updated_at = now;
        let budget = rt.config.daemon.retry.attempts;
        if throttled || (err.transient && rec.attempts < budget) {
            let wait = backoff::delay(&rt.config.daemon.retry, rec.attempts, err.retry_after);
            rec.retry_at = Some(now + wait);
            tracing::warn!(rotation = %id, key = %rec.slot, step = %state, attempt = rec.attempts, budget,
                retry_in = %policy::format_duration(wait), error = %err.message, "step failed; will retry");
            self.save(rec, None).await?;
            return Ok(());
        }
        // A native rotate ended the old key when it issued the new one.
        let native_ended = rec.new_key.is_some()
            && Self::provider(rt, &rec).is_ok_and(|p| p.capabilities().issue.no_overlap());
        let old = rec.old_key_id.clone().unwrap_or_else(|| "-".into());
        if rec.old_lost_at.is_some() || native_ended {
            tracing::error!(rotation = %id, key = %rec.slot, step = %state, attempts = rec.attempts, error = %err.message, old_key = %old,
                "rotation failed, and the old key {old} no longer works at the provider: consumers still on it fail. Fix the cause and run `keyrot rotation resume {id}`");
        } else {
            tracing::error!(rotation = %id, key = %rec.slot, step = %state, attempts = rec.attempts, error = %err.message, old_key = %old,
                "rotation failed; the old key {old} is untouched. Run `keyrot rotation resume {id}`, or `keyrot rotation restart {id}` to start afresh");
        }
        let attempts = rec.attempts;
        rec.transition(
            RotationState::Failed,
            now,
            format!("failed in {state}: {}", err.message),
        );
        rec.attempts = attempts;
        rec.failed_in = Some(state);
        rec.last_error = Some(err.message.clone());
        let old_key_ended = native_ended;
        let mail = notify::Composer::new(Arc::clone(&rt.config));
        let detail = format!("in {state}: {}", err.message);
        let saved = self
            .save_notifying(
                rec,
                move |r, key| mail.failed(r, key, old_key_ended, now),
                Some((now, "rotation.failed", detail)),
            )
            .await?;
        self.metrics.rotation_ended(&saved.provider, saved.state);
        Ok(())
    }
}

/// Moves a rotation from Issued to Distributing, in memory. Issued is
/// durable (the secret is sealed in its commit) and nothing external
/// happens before the first sink write, so the move has no commit of its
/// own: it commits with the first sink's success, the move to Verifying or
/// the failure. A crash before that resumes from Issued and comes here
/// again: the same sink writes follow.
pub(super) fn enter_distributing(rec: &mut RotationRecord, now: Timestamp) {
    rec.transition(
        RotationState::Distributing,
        now,
        format!("distributing to {} sink(s)", rec.sinks.len()),
    );
}

/// The key name part of a slot id.
pub(super) fn key_name(slot: &str) -> &str {
    slot.split_once('/').map(|(_, n)| n).unwrap_or(slot)
}
