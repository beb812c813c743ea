//! A rotation: its record, its states and history, what started it, and
//! what it recorded for the new key and each sink.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{LastUse, RotationId, SlotId};

/// How many "wait and retry" answers (429, Retry-After) a step may get
/// without spending its retry budget; past it they count as failures, so
/// a provider that throttles forever still ends in Failed.
pub const MAX_THROTTLED: u32 = 100;

/// The rotation state machine's states (see DESIGN.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RotationState {
    /// Decided, nothing done at the provider yet.
    Pending,
    /// Assisted rotation: the provider cannot create keys, so people were
    /// asked to create one; waits for `keyrot enroll`.
    AwaitingSecret,
    /// Intent to issue recorded; the provider may hold a key tagged with
    /// this rotation's id whose secret keyrot never saw.
    Issuing,
    /// New key id and sealed secret are in the store.
    Issued,
    /// Writing the secret to each sink; per-sink results recorded.
    Distributing,
    /// Provider check of the new key, read-back of each sink.
    Verifying,
    /// Running the reload hooks that tell consumers to pick up the new
    /// secret; each result recorded. The overlap starts after.
    Reloading,
    /// Both keys valid until `revoke_old_at`.
    Overlap,
    /// Revoking the old key.
    Revoking,
    /// Done; secret wiped from the store (or kept as the slot's current
    /// secret, policy `keep_current_secret`).
    Completed,
    /// Retries exhausted; the old key is untouched. Resume or abort.
    Failed,
    /// Abandoned by an operator; a new key that was issued has been revoked.
    Aborted,
}

impl RotationState {
    /// True for states a rotation never leaves on its own.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Aborted)
    }

    /// True once a rotation holds a new key (so its secret is in the store).
    pub fn has_new_key(self) -> bool {
        matches!(
            self,
            Self::Issued
                | Self::Distributing
                | Self::Verifying
                | Self::Reloading
                | Self::Overlap
                | Self::Revoking
        )
    }

    /// Lower-case name used in logs, CLI output and journald fields.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::AwaitingSecret => "awaiting-secret",
            Self::Issuing => "issuing",
            Self::Issued => "issued",
            Self::Distributing => "distributing",
            Self::Verifying => "verifying",
            Self::Reloading => "reloading",
            Self::Overlap => "overlap",
            Self::Revoking => "revoking",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Aborted => "aborted",
        }
    }
}

impl std::fmt::Display for RotationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What started a rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Due by policy, started inside a window.
    Schedule,
    /// Due by policy, started outside a window because the key would expire
    /// before the next window opens.
    Emergency,
    /// A slot with no key yet: the first key is issued.
    Initial,
    /// Asked for by an operator (CLI or control API).
    Manual,
}

/// Who asked for a rotation and from where (the seed's `metadata`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Initiator {
    /// Identity of the user or service that triggered the rotation.
    pub rotated_by: Option<String>,
    /// Where it came from: scheduler, cli, api, terraform, ...
    pub initiated_from: Option<String>,
    /// Policy id the caller links the rotation to.
    pub rotation_policy_id: Option<String>,
}

/// What the state machine recorded for one sink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkResult {
    /// When the secret was written to this sink.
    pub written_at: Timestamp,
    /// When a read-back matched the secret's hash.
    pub verified_at: Option<Timestamp>,
    /// The sink's own version marker, if it reports one.
    #[serde(default)]
    pub version: Option<String>,
}

/// What the state machine recorded for one reload hook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookResult {
    /// When it was recorded as done; a done hook never runs again for
    /// this rotation.
    pub done_at: Timestamp,
    /// What happened: the run's own answer, or the rotation whose run
    /// (started after this rotation's secret was in place) covered it.
    pub note: String,
}

/// The key a rotation created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewKey {
    /// The provider's id for the new key.
    pub id: String,
    /// When the new key expires.
    pub expires_at: Option<Timestamp>,
    /// SHA-256 (hex) of the secret, kept after the secret is wiped so that
    /// sinks can be compared with it. Never shown in output or emails.
    pub secret_sha256: String,
    /// Scopes the new key was given.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// One step of a rotation's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// When the transition was committed.
    pub at: Timestamp,
    /// The state entered.
    pub to: RotationState,
    /// What happened (no secret material).
    pub note: String,
}

/// One rotation of one key slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationRecord {
    /// UUIDv7.
    pub id: RotationId,
    /// The slot being rotated.
    pub slot: SlotId,
    /// Provider config name.
    pub provider: String,
    /// Policy config name in force when the rotation was created.
    pub policy: String,
    /// Current state.
    pub state: RotationState,
    /// What started it.
    pub trigger: Trigger,
    /// Human-readable reason (policy reason or the caller's).
    pub reason: String,
    /// Who asked and from where.
    #[serde(default)]
    pub initiator: Initiator,
    /// The old key's id at the provider (None for an initial issue).
    pub old_key_id: Option<String>,
    /// The old key's expiry before the rotation.
    pub old_expires_at: Option<Timestamp>,
    /// The expiry the caller asked for the new key.
    pub requested_new_expiry: Option<Timestamp>,
    /// The time the caller asked the old key to die.
    pub requested_old_expiry: Option<Timestamp>,
    /// Scopes the new key gets.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The new key, once issued.
    pub new_key: Option<NewKey>,
    /// Sinks (config names) to write, fixed at creation.
    pub sinks: Vec<String>,
    /// Per-sink results, by sink name.
    #[serde(default)]
    pub sink_results: BTreeMap<String, SinkResult>,
    /// Reload hooks (config names) to run once every sink is verified,
    /// fixed at creation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<String>,
    /// Per-hook results, by hook name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hook_results: BTreeMap<String, HookResult>,
    /// When the old key is to be revoked (set on entering Overlap).
    pub revoke_old_at: Option<Timestamp>,
    /// When the old key was revoked.
    #[serde(default)]
    pub old_revoked_at: Option<Timestamp>,
    /// When keyrot found the old key already gone at the provider, before
    /// it revoked it (a provider that ended it early): consumers still on
    /// it are locked out.
    #[serde(default)]
    pub old_lost_at: Option<Timestamp>,
    /// Keys revoked with the old key: a key an interrupted attempt made
    /// that the recovery rotated from (its secret was never seen).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoke_also: Vec<String>,
    /// Failed attempts of the current step.
    pub attempts: u32,
    /// Times the current step was told to wait (429, or a 5xx with
    /// Retry-After); these do not spend the retry budget, up to
    /// [`MAX_THROTTLED`].
    #[serde(default)]
    pub throttled: u32,
    /// When the current step is retried (durable backoff timer).
    pub retry_at: Option<Timestamp>,
    /// The last error (ids only, no secret material).
    pub last_error: Option<String>,
    /// The state a Failed rotation stopped in, so resume knows where to go.
    pub failed_in: Option<RotationState>,
    /// Whether the request asked to notify the policy's security contacts.
    #[serde(default)]
    pub notify_contacts: bool,
    /// The caller asked for the new secret sealed under this pre-shared key
    /// (control API); the envelope is kept sealed in the store until fetched.
    #[serde(default)]
    pub reveal_psk: Option<String>,
    /// When the rotation was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// Every state entered, in order.
    pub history: Vec<Transition>,
    /// The old key's last use, as its provider last reported it during the
    /// overlap (providers that report last use; see `LastUse`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_last_use: Option<LastUse>,
    /// When keyrot last asked the provider for the old key's last use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_last_use_checked_at: Option<Timestamp>,
    /// When keyrot raised the alert that the old key was still in use at
    /// the policy's `revoke_deadline` (`revoke_when = "unused"`); raised
    /// once, in the same commit as its messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_use_alerted_at: Option<Timestamp>,
}

impl RotationRecord {
    /// The hooks not recorded as done yet, in order.
    pub fn pending_hooks(&self) -> impl Iterator<Item = &String> {
        self.hooks
            .iter()
            .filter(|h| !self.hook_results.contains_key(*h))
    }

    /// The state the rotation is at: for a Failed one, the state it failed
    /// in (Pending if unknown); else its state.
    pub fn stopped_at(&self) -> RotationState {
        if self.state == RotationState::Failed {
            self.failed_in.unwrap_or(RotationState::Pending)
        } else {
            self.state
        }
    }

    /// Whether the new key may already be in use: a sink holds it, or the
    /// rotation is past distribution. Revoking it then breaks consumers, so
    /// abort is refused (the engine and the mails use this one rule).
    pub fn new_key_distributed(&self) -> bool {
        matches!(
            self.stopped_at(),
            RotationState::Verifying
                | RotationState::Reloading
                | RotationState::Overlap
                | RotationState::Revoking
        ) || !self.sink_results.is_empty()
    }

    /// Whether a provider that rotates natively (`no_overlap`) has already
    /// ended the old key: the new key (issued, or perhaps issued by an
    /// interrupted call) is the only live one, so neither abort nor restart
    /// may revoke it.
    pub fn old_key_ended_natively(&self, no_overlap: bool) -> bool {
        no_overlap
            && self.old_key_id.is_some()
            && (self.new_key.is_some() || self.stopped_at() == RotationState::Issuing)
    }

    /// Moves to `to`, appending to the history and resetting the retry budget.
    pub fn transition(&mut self, to: RotationState, now: Timestamp, note: impl Into<String>) {
        self.state = to;
        self.updated_at = now;
        self.attempts = 0;
        self.throttled = 0;
        self.retry_at = None;
        if to != RotationState::Failed {
            self.last_error = None;
        }
        self.history.push(Transition {
            at: now,
            to,
            note: note.into(),
        });
    }

    /// When this rotation entered `state` last, if it did.
    pub fn entered(&self, state: RotationState) -> Option<Timestamp> {
        self.history
            .iter()
            .rev()
            .find(|t| t.to == state)
            .map(|t| t.at)
    }
}
