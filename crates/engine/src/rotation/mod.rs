//! The crash-safe rotation state machine.
//!
//! Every state change is one durable store transaction, committed before the
//! next external call; everything a step needs to resume is in the record.
//! One task ("runner") drives one rotation at a time; it stops when the
//! rotation waits (overlap timer, retry backoff) or ends, and the scheduler
//! starts it again when its timer in the due index fires. The state machine
//! is the only writer of rotation state.

mod abort;
mod assisted;
pub mod backoff;
mod call;
mod distribute;
mod issue;
pub mod plan;
pub mod push;
mod quiet;
mod refusal;
mod reload;
mod restart;
pub mod reveal;
mod revoke;
mod runtime;
mod steps;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use jiff::Timestamp;
use keyrot_core::wake::Wake;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use keyrot_core::clock::Clock;

use keyrot_core::model::{
    Initiator, KeyRecord, RotationRecord, RotationState, Transition, Trigger,
};
use keyrot_core::store::{Store, StoreError};

pub use refusal::Refusal;
pub use runtime::Runtime;

/// What starting a rotation needs besides the slot.
#[derive(Clone, Debug)]
pub struct StartRequest {
    /// What started it.
    pub trigger: Trigger,
    /// Why.
    pub reason: String,
    /// Who and from where.
    pub initiator: Initiator,
    /// Expiry asked for the new key.
    pub new_expires_at: Option<Timestamp>,
    /// When the old key should die.
    pub old_expires_at: Option<Timestamp>,
    /// Tell the policy's security contacts.
    pub notify_contacts: bool,
    /// Seal the new secret under this pre-shared key for the caller.
    pub reveal_psk: Option<String>,
}

/// Drives rotations.
pub struct Engine {
    /// The store.
    store: Arc<Store>,
    /// Config, providers and sinks in force (swapped on reload).
    runtime: RwLock<Arc<Runtime>>,
    /// Rotations a runner is driving right now.
    running: Mutex<HashSet<String>>,
    /// Wakes the scheduler when timers may have changed.
    wake: Wake,
    /// Where `now` comes from.
    clock: Arc<dyn Clock>,
    /// Cancelled when keyrot stops, or by a fatal store error: no runner
    /// starts after that, and a running one stops once its step committed.
    stop: CancellationToken,
    /// Where runners are spawned, so that shutdown can wait for them.
    tasks: TaskTracker,
    /// Set once by a fatal store error ([`Engine::fatal`]).
    fatal: Fatal,
    /// Prometheus counters and histograms of this engine's work.
    metrics: Arc<crate::metrics::Metrics>,
    /// The reload hooks' batches: one lock per hook, and its last run.
    hook_runs: reload::HookRuns,
}

/// Why a store call failed, as the engine sees it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A blocking task died.
    #[error("internal: {0}")]
    Join(String),
}

/// A store error keyrot cannot go on from: a failed commit, after which
/// redb refuses every write until the file is reopened.
#[derive(Debug, Default)]
struct Fatal {
    /// The store's error, set by the first such failure.
    reason: OnceLock<String>,
    /// Cancelled once `reason` is set.
    token: CancellationToken,
}

impl Engine {
    /// An engine over `store` with the given runtime. Its runners are
    /// spawned on `tasks` and stop when `stop` is cancelled; the engine
    /// cancels `stop` itself on a fatal store error (give it a child token
    /// for that to stop the runners alone).
    pub fn new(
        store: Arc<Store>,
        runtime: Runtime,
        clock: Arc<dyn Clock>,
        wake: Wake,
        stop: CancellationToken,
        tasks: TaskTracker,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            store,
            runtime: RwLock::new(Arc::new(runtime)),
            running: Mutex::new(HashSet::new()),
            wake,
            metrics: Arc::new(crate::metrics::Metrics::new(clock.now())),
            clock,
            stop,
            tasks,
            fatal: Fatal::default(),
            hook_runs: reload::HookRuns::default(),
        })
    }

    /// The runtime in force.
    pub fn runtime(&self) -> Arc<Runtime> {
        match self.runtime.read() {
            Ok(rt) => Arc::clone(&rt),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Swaps in a new runtime (reload). Running steps finish with the old one.
    pub fn set_runtime(&self, rt: Runtime) {
        match self.runtime.write() {
            Ok(mut g) => *g = Arc::new(rt),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(rt),
        }
    }

    /// The store.
    pub fn store(&self) -> Arc<Store> {
        Arc::clone(&self.store)
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The Prometheus registry of this engine.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// The fatal store error that stopped this engine, if one did: the
    /// daemon then exits non-zero and the service manager restarts keyrot;
    /// resume does the rest.
    pub fn fatal(&self) -> Option<&str> {
        self.fatal.reason.get().map(String::as_str)
    }

    /// Returns once a fatal store error has stopped this engine.
    pub async fn until_fatal(&self) {
        self.fatal.token.cancelled().await;
    }

    /// Runs a blocking store call on the blocking pool. A failed commit is
    /// fatal (redb refuses further writes until reopened): it is logged
    /// once, its runners stop and [`Engine::fatal`] says why; the error
    /// goes back to the caller as well.
    pub async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, EngineError> {
        let store = Arc::clone(&self.store);
        let out = tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| EngineError::Join(e.to_string()))?;
        if let Err(StoreError::CommitFailed(msg)) = &out
            && self.fatal.reason.set(msg.clone()).is_ok()
        {
            tracing::error!(error = %msg, "store commit failed; exiting so the service manager restarts keyrot");
            self.stop.cancel();
            self.fatal.token.cancel();
        }
        Ok(out?)
    }

    /// Marks `id` as driven; false when some runner already drives it.
    fn claim(&self, id: &str) -> bool {
        self.running
            .lock()
            .map(|mut r| r.insert(id.to_string()))
            .unwrap_or(false)
    }

    fn release(&self, id: &str) {
        if let Ok(mut r) = self.running.lock() {
            r.remove(id);
        }
        self.wake.notify();
    }

    /// Rotation ids a runner drives now (the scheduler skips their timers).
    pub fn running(&self) -> HashSet<String> {
        self.running.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Starts a runner for rotation `id` unless one runs or keyrot stops.
    pub fn spawn(self: &Arc<Self>, id: &str) {
        if self.stop.is_cancelled() || !self.claim(id) {
            return;
        }
        let engine = Arc::clone(self);
        let id = id.to_string();
        self.tasks.spawn(async move {
            engine.drive(&id).await;
            engine.release(&id);
        });
    }

    /// Drives rotation `id` again after `after` (a runner that stopped on a
    /// store error): without it the rotation would wait for the next
    /// restart. Nothing happens once keyrot stops.
    pub(crate) fn respawn_later(self: &Arc<Self>, id: &str, after: jiff::SignedDuration) {
        if self.stop.is_cancelled() {
            return;
        }
        let engine = Arc::clone(self);
        let id = id.to_string();
        let after =
            std::time::Duration::try_from(after).unwrap_or(std::time::Duration::from_secs(15));
        self.tasks.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(after) => engine.spawn(&id),
                _ = engine.stop.cancelled() => {}
            }
        });
    }

    /// Resumes every unfinished rotation (daemon start) and wipes sealed
    /// secrets no API caller took ([`reveal`]).
    pub async fn resume_all(self: &Arc<Self>) -> Result<usize, EngineError> {
        let open = self.db(|s| s.unfinished_rotations()).await?;
        let mut n = 0;
        for rec in open.iter().filter(|r| r.state != RotationState::Failed) {
            tracing::info!(rotation = %rec.id, key = %rec.slot, step = %rec.state, "resuming rotation");
            self.spawn(&rec.id);
            n += 1;
        }
        self.sweep_envelopes().await?;
        Ok(n)
    }

    /// Creates a rotation for `slot` (Pending) and starts its runner.
    pub async fn start(
        self: &Arc<Self>,
        slot: &str,
        req: StartRequest,
    ) -> Result<RotationRecord, Refusal> {
        let rt = self.runtime();
        let now = self.now();
        let slot_s = slot.to_string();
        let created = self
            .db(move |s| {
                s.write(|tx| {
                    let Some(mut key) = tx.key(&slot_s)? else {
                        return Ok(Err(Refusal::unknown(format!("unknown key {slot_s:?}"))));
                    };
                    if let Some(active) = &key.active_rotation {
                        return Ok(Err(Refusal::running(
                            format!("a rotation of {slot_s} is already running: {active}"),
                            active.clone(),
                        )));
                    }
                    let rec = new_record(&rt, &key, req, now);
                    key.active_rotation = Some(rec.id.clone());
                    key.next_due = None;
                    key.due_reason = Some("rotation in progress".into());
                    key.last_started_at = Some(now);
                    tx.put_rotation(&rec)?;
                    tx.put_key(&key)?;
                    tx.audit(
                        now,
                        "rotation.started",
                        Some(&rec.slot),
                        Some(&rec.id),
                        rec.initiator.rotated_by.as_deref(),
                        &format!("trigger={:?} reason={}", rec.trigger, rec.reason),
                    )?;
                    Ok(Ok(rec))
                })
            })
            .await;
        let created = match created {
            Ok(out) => out?,
            Err(e) => {
                // The commit may have landed before the error (an error
                // after the commit): a Pending rotation nobody drives would
                // wait for the next restart. Drive whatever runs on the slot.
                let slot_s = slot.to_string();
                let stranded = self
                    .db(move |s| {
                        let Some(id) = s.active_rotation(&slot_s)? else {
                            return Ok(None);
                        };
                        let open = s.rotation(&id)?.is_some_and(|r| {
                            !r.state.is_terminal() && r.state != RotationState::Failed
                        });
                        Ok(open.then_some(id))
                    })
                    .await;
                if let Ok(Some(id)) = stranded {
                    tracing::warn!(rotation = %id, key = %slot, error = %e,
                        "starting the rotation reported an error; driving the rotation the store holds");
                    self.spawn(&id);
                }
                return Err(e.into());
            }
        };
        tracing::info!(rotation = %created.id, key = %created.slot, provider = %created.provider,
            step = "pending", trigger = ?created.trigger, reason = %created.reason, "rotation started");
        // Pending is committed: the runner starts whatever the caller is
        // told next, so an error from here on never strands the rotation.
        self.spawn(&created.id);
        keyrot_core::failpoint::hit("after:pending").map_err(|e| Refusal::internal(e.message))?;
        Ok(created)
    }

    /// Resumes a Failed rotation from the state it failed in.
    pub async fn resume(self: &Arc<Self>, id: &str) -> Result<RotationRecord, Refusal> {
        let now = self.now();
        let id_s = id.to_string();
        let rec = self
            .db(move |s| {
                s.write(|tx| {
                    let Some(mut rec) = tx.rotation(&id_s)? else {
                        return Ok(Err(Refusal::unknown(format!("unknown rotation {id_s}"))));
                    };
                    if rec.state != RotationState::Failed {
                        return Ok(Err(Refusal::conflict(format!(
                            "rotation {id_s} is {}, not failed: nothing to resume",
                            rec.state
                        ))));
                    }
                    let to = rec.failed_in.unwrap_or(RotationState::Pending);
                    rec.transition(to, now, "resumed by operator");
                    rec.failed_in = None;
                    tx.put_rotation(&rec)?;
                    tx.audit(
                        now,
                        "rotation.resumed",
                        Some(&rec.slot),
                        Some(&rec.id),
                        None,
                        to.as_str(),
                    )?;
                    Ok(Ok(rec))
                })
            })
            .await??;
        self.spawn(&rec.id);
        Ok(rec)
    }

    /// Hands keyrot the secret of a key created by hand (assisted rotation)
    /// and lets the state machine go on from Issued.
    pub async fn enroll(
        self: &Arc<Self>,
        id: &str,
        key_id: Option<String>,
        secret: secrecy::SecretString,
        accept_unverified: bool,
    ) -> Result<RotationRecord, Refusal> {
        if !self.claim(id) {
            return Err(Refusal::conflict(format!(
                "rotation {id} is running a step; try again"
            )));
        }
        let out = self
            .enroll_claimed(id, key_id, secret, accept_unverified)
            .await;
        self.release(id);
        if let Ok(rec) = &out {
            self.spawn(&rec.id);
        }
        out
    }

    /// Aborts a rotation that is not past distribution, revoking a new key
    /// that was issued (or may have been) so that none is left orphaned.
    pub async fn abort(self: &Arc<Self>, id: &str) -> Result<RotationRecord, Refusal> {
        if !self.claim(id) {
            return Err(Refusal::conflict(format!(
                "rotation {id} is running a step; abort it once it waits or fails"
            )));
        }
        let out = self.abort_claimed(id).await;
        self.release(id);
        out
    }
}

fn new_record(rt: &Runtime, key: &KeyRecord, req: StartRequest, now: Timestamp) -> RotationRecord {
    let policy = rt.config.policy(&key.policy);
    let scopes = match (&key.current, policy) {
        (_, Some(p)) if !p.scopes.is_empty() => p.scopes.clone(),
        (Some(cur), _) if !cur.scopes.is_empty() => cur.scopes.clone(),
        _ => key.scopes.clone(),
    };
    let id = keyrot_core::model::new_rotation_id();
    RotationRecord {
        id: id.clone(),
        slot: key.slot.clone(),
        provider: key.provider.clone(),
        policy: key.policy.clone(),
        state: RotationState::Pending,
        trigger: req.trigger,
        reason: req.reason.clone(),
        initiator: req.initiator,
        old_key_id: key.current.as_ref().map(|k| k.id.clone()),
        old_expires_at: key.current.as_ref().and_then(|k| k.expires_at),
        requested_new_expiry: req.new_expires_at,
        requested_old_expiry: req.old_expires_at,
        scopes,
        new_key: None,
        sinks: key.sinks.clone(),
        sink_results: Default::default(),
        hooks: rt.config.hooks_for(&key.hooks, &key.sinks),
        hook_results: Default::default(),
        revoke_old_at: None,
        old_revoked_at: None,
        old_lost_at: None,
        revoke_also: Vec::new(),
        throttled: 0,
        attempts: 0,
        retry_at: None,
        last_error: None,
        failed_in: None,
        notify_contacts: req.notify_contacts,
        reveal_psk: req.reveal_psk,
        created_at: now,
        updated_at: now,
        history: vec![Transition {
            at: now,
            to: RotationState::Pending,
            note: req.reason,
        }],
        old_last_use: None,
        old_last_use_checked_at: None,
        in_use_alerted_at: None,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod restart_tests;
