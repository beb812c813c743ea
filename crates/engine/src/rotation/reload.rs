//! Reloading: the reload hooks of a rotation, run once every sink holds
//! the new secret and before the overlap starts counting (see
//! docs/consumers.md). Each hook's result is its own commit, so a hook
//! recorded as done never runs again for the rotation; one that fails is
//! retried with the step's backoff and, past the budget, leaves the
//! rotation Failed in Reloading: both keys valid, the old key never
//! revoked, the failure mailed, `keyrot rotation resume` runs what is left.
//!
//! Batches: a rotation waits `debounce` after its secret was in place
//! before it runs a hook, and a run of the hook that *started after* the
//! rotation's secret was in place serves it too (the consumer re-read
//! after the new secret was there). So when several keys rotate together,
//! the first to reach the end of its wait runs the hook and the others,
//! already in place by then, are recorded as covered by that run. Runs of
//! one hook are serialised by a lock; the last run's start is kept in
//! memory only: after a restart a hook runs once more rather than never
//! (every action can be taken twice; `exec` and `http` hooks get a run id
//! that is the same for a repeat).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;

use super::call::Peer;
use super::steps::{Next, StepResult};
use super::{Engine, Runtime};
use keyrot_core::failpoint;
use keyrot_core::model::{HookResult, RotationRecord, RotationState};
use keyrot_peers::hook::HookEvent;

/// One hook's last successful run: when it started, for which rotation.
#[derive(Clone, Debug)]
struct LastRun {
    started: Timestamp,
    rotation: String,
}

/// Per hook: a lock that serialises its runs, holding its last run.
#[derive(Default)]
pub(super) struct HookRuns {
    by_hook: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<LastRun>>>>>,
}

impl HookRuns {
    fn of(&self, hook: &str) -> Arc<tokio::sync::Mutex<Option<LastRun>>> {
        let mut map = self.by_hook.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(map.entry(hook.to_string()).or_default())
    }
}

impl Engine {
    /// Reloading: every hook not yet done, in order, each recorded in its
    /// own commit; then what follows verification (`after_verified`).
    pub(super) async fn reload(
        &self,
        rt: &Runtime,
        mut rec: RotationRecord,
        now: Timestamp,
    ) -> StepResult {
        let in_place = rec.entered(RotationState::Reloading).unwrap_or(now);
        let pending: Vec<String> = rec.pending_hooks().cloned().collect();
        for name in pending {
            let Some(hook) = rt.hooks.get(&name).cloned() else {
                tracing::warn!(hook = %name, "reload hook is no longer configured: skipped");
                rec.hook_results.insert(
                    name.clone(),
                    HookResult {
                        done_at: now,
                        note: "no longer configured: skipped".into(),
                    },
                );
                rec = self.save(rec, None).await?;
                continue;
            };
            let debounce = rt
                .config
                .hook(&name)
                .map(|h| h.debounce)
                .unwrap_or_default();
            let due = in_place + debounce;
            if due > now {
                tracing::info!(hook = %name, run_at = %due, "waiting for other rotations to share the hook's run");
                rec.retry_at = Some(due);
                rec.updated_at = now;
                self.save(rec, None).await?;
                return Ok(Next::Stop);
            }
            rec.retry_at = None;
            let runs = self.hook_runs.of(&name);
            let mut last = runs.lock().await;
            let note = match last.as_ref() {
                // Strictly after: a run that started the instant the secret
                // was in place may have raced it.
                Some(run) if run.started > in_place => {
                    format!(
                        "covered by its run for rotation {} at {}",
                        run.rotation, run.started
                    )
                }
                _ => {
                    let started = self.now();
                    let event = HookEvent {
                        event: "keyrot.reload",
                        hook: name.clone(),
                        run_id: format!("{}:{name}", rec.id),
                        rotation_id: rec.id.clone(),
                        key: rec.slot.clone(),
                        key_id: rec
                            .new_key
                            .as_ref()
                            .map(|k| k.id.clone())
                            .unwrap_or_default(),
                        at: started,
                    };
                    let said = self
                        .call(
                            failpoint::around("before:hook", "after:hook"),
                            Peer::Hook(&name),
                            hook.run(&event),
                        )
                        .await?;
                    *last = Some(LastRun {
                        started,
                        rotation: rec.id.clone(),
                    });
                    said
                }
            };
            drop(last);
            tracing::info!(hook = %name, result = %note, "reload hook done");
            let at = self.now();
            rec.hook_results
                .insert(name, HookResult { done_at: at, note });
            rec.updated_at = at;
            rec = self.save(rec, None).await?;
        }
        // The overlap counts from now, once consumers were told.
        let now = self.now();
        self.after_verified(rt, rec, now).await
    }
}
