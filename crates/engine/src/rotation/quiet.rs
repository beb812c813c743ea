//! The Overlap step: both keys live until `revoke_old_at`; then Revoking,
//! at once under `revoke_when = "overlap"` (the default), or, under
//! `revoke_when = "unused"`, once the provider reports the old key quiet
//! (the pure rule is `keyrot_core::policy::decide_quiet`).
//!
//! At the start of every overlap at a provider that reports last use, the
//! old key's last use is recorded for `keyrot status` and `rotation show`
//! (best effort: a failed call only logs). Once the overlap's minimum is
//! over under `unused`, the call is the step's own: a failure is retried
//! like any step's (the rotation stays in Overlap, or ends Failed with the
//! old key untouched), and it never leads to a revoke. A key still in use
//! waits, durably (`retry_at` set to when it could first be quiet, capped
//! at the deadline); at the deadline the alert is raised once, in the same
//! commit as `in_use_alerted_at` (mail and webhooks, a WARN log, the
//! `keyrot_old_keys_in_use_total` metric), then the key is held (checked
//! again, revoked once quiet) or revoked, as `at_deadline` says.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};

use super::call::Peer;
use super::revoke::old_key;
use super::steps::{Next, StepResult};
use super::{Engine, Runtime};
use crate::notify;
use keyrot_core::error::CallError;
use keyrot_core::failpoint;
use keyrot_core::model::{LastUse, RotationRecord, RotationState};
use keyrot_core::policy::{QuietDecision, QuietRule, RevokeWhen, decide_quiet, format_duration};
use keyrot_peers::provider::Provider;

impl Engine {
    /// Overlap: see the module doc.
    pub(super) async fn overlap(
        &self,
        rt: &Runtime,
        mut rec: RotationRecord,
        now: Timestamp,
    ) -> StepResult {
        let provider = Self::provider(rt, &rec).ok();
        let precision = provider.as_ref().and_then(|p| p.capabilities().last_used);
        if let (Some(p), Some(_)) = (&provider, precision)
            && rec.old_last_use_checked_at.is_none()
            && rec.old_key_id.is_some()
        {
            match self.ask_last_use(&**p, &rec, now).await {
                Ok(last) => {
                    tracing::info!(old_key = %rec.old_key_id.as_deref().unwrap_or("-"),
                        last_use = %last.describe(), "overlap: the old key's last use, as the provider reports it");
                    rec.old_last_use = Some(last);
                    rec.old_last_use_checked_at = Some(now);
                    rec.updated_at = now;
                    rec = self.save(rec, None).await?;
                }
                Err(e) => {
                    tracing::warn!(error = %e.message, "cannot read the old key's last use at the start of the overlap; `keyrot status` shows none");
                }
            }
        }
        let due = rec.revoke_old_at.unwrap_or(now);
        if due > now {
            tracing::info!(revoke_at = %due, "overlap: old key stays valid until its revoke time");
            return Ok(Next::Stop);
        }
        let rule = match rt.config.policy(&rec.policy).map(|p| p.revoke_when) {
            Some(RevokeWhen::Unused(rule)) => rule,
            _ => {
                rec.transition(RotationState::Revoking, now, "overlap over");
                self.save(rec, None).await?;
                return Ok(Next::Continue);
            }
        };
        let (last, precision) = match (&provider, precision) {
            (Some(p), Some(precision)) => (self.ask_last_use(&**p, &rec, now).await?, precision),
            // Not (or no longer) reported: never quiet by itself.
            _ => (
                LastUse::Unknown {
                    why: format!("provider {} does not report last use", rec.provider),
                },
                SignedDuration::ZERO,
            ),
        };
        rec.old_last_use = Some(last.clone());
        rec.old_last_use_checked_at = Some(now);
        rec.updated_at = now;
        rec.attempts = 0;
        rec.throttled = 0;
        rec.last_error = None;
        let decision = decide_quiet(&last, precision, &rule, due, now);
        self.quiet_decided(rt, rec, decision, &rule, precision, due, now)
            .await
    }

    /// The old key's last use, through [`Engine::call`].
    async fn ask_last_use(
        &self,
        provider: &dyn Provider,
        rec: &RotationRecord,
        now: Timestamp,
    ) -> Result<LastUse, CallError> {
        let old = old_key(rec)?;
        self.call(
            failpoint::around("before:last-used", "after:last-used"),
            Peer::Provider(&rec.provider, "last_used"),
            provider.last_used(&old, now),
        )
        .await
    }

    /// Commits what `decision` says: Revoking, a wait, or the alert at
    /// the deadline (then Revoking or a hold).
    #[allow(clippy::too_many_arguments)]
    async fn quiet_decided(
        &self,
        rt: &Runtime,
        mut rec: RotationRecord,
        decision: QuietDecision,
        rule: &QuietRule,
        precision: SignedDuration,
        overlap_end: Timestamp,
        now: Timestamp,
    ) -> StepResult {
        let old = rec.old_key_id.clone().unwrap_or_else(|| "-".into());
        let last = rec.old_last_use.clone().unwrap_or(LastUse::Unknown {
            why: "not asked".into(),
        });
        let words = notify::in_use::last_use_words(&last, now);
        match decision {
            QuietDecision::Revoke(why) => {
                tracing::info!(old_key = %old, last_use = %words, "old key quiet: revoking it");
                rec.transition(RotationState::Revoking, now, format!("overlap over; {why}"));
                self.save(rec, None).await?;
                Ok(Next::Continue)
            }
            QuietDecision::WaitUntil(at) => {
                tracing::info!(old_key = %old, last_use = %words, check_at = %at,
                    quiet_period = %format_duration(rule.quiet_period),
                    "old key still in use (revoke_when = \"unused\"): it is revoked once quiet; checking again then");
                rec.retry_at = Some(at);
                self.save(rec, None).await?;
                Ok(Next::Stop)
            }
            QuietDecision::Deadline { revoke, recheck_at } => {
                let deadline = overlap_end
                    .checked_add(rule.deadline)
                    .unwrap_or(Timestamp::MAX);
                let alert = rec.in_use_alerted_at.is_none();
                if alert {
                    rec.in_use_alerted_at = Some(now);
                    tracing::warn!(key = %rec.slot, old_key = %old, last_use = %words, deadline = %deadline,
                        at_deadline = rule.at_deadline.as_str(),
                        "old key {old} of {} still in use at its revoke deadline (last use {words})", rec.slot);
                }
                if revoke {
                    rec.transition(
                        RotationState::Revoking,
                        now,
                        format!("still in use at the deadline {deadline} (last use {words}); revoked as at_deadline = \"revoke\" says"),
                    );
                } else {
                    tracing::info!(old_key = %old, check_at = %recheck_at, "old key held past its deadline (at_deadline = \"hold\"); checking again then");
                    rec.retry_at = Some(recheck_at);
                }
                if alert {
                    let mail = notify::Composer::new(Arc::clone(&rt.config));
                    let rule = *rule;
                    let detail =
                        format!("old key {old} still in use at the deadline: last use {words}");
                    let saved = self
                        .save_notifying(
                            rec,
                            move |r, key| {
                                let u = notify::in_use::InUse {
                                    last_use: &last,
                                    precision,
                                    rule,
                                    deadline,
                                };
                                mail.old_key_in_use(r, key, &u, now)
                            },
                            Some((now, "rotation.old_key_in_use", detail)),
                        )
                        .await?;
                    self.metrics.old_key_in_use(&saved.provider);
                } else {
                    self.save(rec, None).await?;
                }
                Ok(if revoke { Next::Continue } else { Next::Stop })
            }
        }
    }
}
