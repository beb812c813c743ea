//! One step function per state. A step makes at most one kind of external
//! call and ends by committing the next state; the runner loops over steps
//! until the rotation waits or ends. These are the forward steps; the
//! assisted path (asking people, `keyrot enroll`) is in `assisted.rs`, and
//! the operator's ways out are `abort.rs` and `restart.rs`.

use std::collections::HashSet;
use std::sync::Arc;

use jiff::Timestamp;
use secrecy::SecretString;

use super::{Engine, EngineError, Runtime, backoff, plan};
use crate::notify;
use keyrot_core::error::CallError;
use keyrot_core::failpoint;
use keyrot_core::model::{KeyInfo, KeyRecord, NewKey, RotationRecord, RotationState, SinkResult};
use keyrot_core::policy;
use keyrot_core::store::Tx;
use keyrot_peers::provider::{IssueRequest, Provider};
use keyrot_peers::sink::SinkTarget;

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

/// Who an external call goes to, for its error metric.
#[derive(Clone, Copy, Debug)]
pub(super) enum Peer<'a> {
    /// A provider's operation (`keyrot_provider_errors_total{provider, op}`).
    Provider(&'a str, &'static str),
    /// A sink (`keyrot_sink_errors_total{sink}`); its errors name it.
    Sink(&'a str),
}

/// The record and a function run in the same transaction as its save.
pub(super) type Extra =
    Box<dyn FnOnce(&mut Tx, &RotationRecord) -> Result<(), keyrot_core::store::StoreError> + Send>;

impl Engine {
    /// One external call of a step, between its two failpoints, with a
    /// failure counted against the peer's error metric (and a sink's error
    /// naming the sink). Every provider and sink call a step makes goes
    /// through here.
    pub(super) async fn call<T>(
        &self,
        around: failpoint::Around,
        peer: Peer<'_>,
        call: impl std::future::Future<Output = Result<T, CallError>>,
    ) -> Result<T, CallError> {
        failpoint::hit(around.before)?;
        let out = call.await.map_err(|e| match peer {
            Peer::Provider(provider, op) => {
                self.metrics.provider_error(provider, op);
                e
            }
            Peer::Sink(name) => {
                self.metrics.sink_error(name);
                naming_sink(name, e)
            }
        })?;
        failpoint::hit(around.after)?;
        Ok(out)
    }

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
            RotationState::Overlap => {
                let due = rec.revoke_old_at.unwrap_or(now);
                if due > now {
                    tracing::info!(revoke_at = %due, "overlap: old key stays valid until its revoke time");
                    return Ok(Next::Stop);
                }
                rec.transition(RotationState::Revoking, now, "overlap over");
                self.save(rec, None).await?;
                Ok(Next::Continue)
            }
            RotationState::Revoking => self.revoke_old(rt, rec, now).await,
            RotationState::AwaitingSecret => self.remind(rt, rec, now).await,
            RotationState::Completed | RotationState::Failed | RotationState::Aborted => {
                Ok(Next::Stop)
            }
        }
    }

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
        let Some(new) = rec.new_key.as_mut() else {
            return Ok(());
        };
        let listed = provider
            .list(now)
            .await
            .inspect_err(|_| self.metrics.provider_error(&rec.provider, "list"))?;
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
                provider
                    .revoke(&also, now)
                    .await
                    .inspect_err(|_| self.metrics.provider_error(&rec.provider, "revoke"))?;
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

    /// Completed: wipe the secret, point the inventory at the new key,
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
                    tx.wipe_secret(&rec.id)?;
                    super::reveal::wipe_if_stale(tx, &rec, now)?;
                    let mut key = tx.key(&slot)?;
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
    let overlap = policy.map(|p| p.overlap).unwrap_or_default();
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

/// The end the old key is given at the provider: its current expiry (it is
/// never shortened by the issue: keyrot revokes it itself once the overlap
/// ends, and until then a lost answer can be recovered from it); a key
/// with no known expiry is given the overlap plus [`OLD_KEY_GRACE`]. Never
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

/// A sink's error, naming the sink once: sinks name themselves
/// (`sink "vault": …`), so only an error that does not is prefixed.
pub(super) fn naming_sink(name: &str, e: CallError) -> CallError {
    let prefix = format!("sink {name:?}");
    if e.message.starts_with(&prefix) {
        return e;
    }
    CallError {
        message: format!("{prefix}: {}", e.message),
        ..e
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

/// Whether two scope lists hold the same scopes (order and repeats aside).
pub(super) fn same_scopes(a: &[String], b: &[String]) -> bool {
    let a: std::collections::BTreeSet<&str> = a.iter().map(String::as_str).collect();
    let b: std::collections::BTreeSet<&str> = b.iter().map(String::as_str).collect();
    a == b
}
