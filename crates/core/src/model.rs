//! The records keyrot keeps: a key slot in the inventory, a rotation and its
//! state, per-sink results, outbox messages and audit entries.
//!
//! These types are what the store persists (as JSON inside redb values) and
//! what the control API returns. They never hold secret material: a new
//! key's secret lives only in the store's `secrets` table, sealed.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The identity of a key slot: `provider/name`. The provider's key id
/// changes with every rotation; the slot stays.
pub type SlotId = String;

/// A rotation id: a UUIDv7 rendered as text, so ids sort by creation time.
pub type RotationId = String;

/// Builds a slot id from its provider and key name.
pub fn slot_id(provider: &str, name: &str) -> SlotId {
    format!("{provider}/{name}")
}

/// How many "wait and retry" answers (429, Retry-After) a step may get
/// without spending its retry budget; past it they count as failures, so
/// a provider that throttles forever still ends in Failed.
pub const MAX_THROTTLED: u32 = 100;

/// A new, time-ordered rotation id.
pub fn new_rotation_id() -> RotationId {
    uuid::Uuid::now_v7().to_string()
}

/// The host's name (`/proc/sys/kernel/hostname`), or `localhost`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// How keyrot names itself as the initiator of what it starts on its own:
/// `keyrot@HOST`.
pub fn keyrot_identity() -> String {
    format!("keyrot@{}", host_name())
}

/// One key as a provider describes it. Never carries the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// The provider's id for this key (changes with each rotation).
    pub id: String,
    /// The key's name or label at the provider; a slot matches keys by it.
    pub name: String,
    /// Scopes or permissions granted to the key; empty means unscoped.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Who created the key, as the provider reports it.
    #[serde(default)]
    pub created_by: Option<String>,
    /// When the key was created.
    pub created_at: Option<Timestamp>,
    /// When the key stops working, if it expires at all.
    pub expires_at: Option<Timestamp>,
    /// When the key was last used, if the provider tracks it.
    #[serde(default)]
    pub last_used_at: Option<Timestamp>,
    /// Free-form tags (`k=v`) the provider holds for the key.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A key slot in the inventory: what keyrot tracks and rotates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// `provider/name`.
    pub slot: SlotId,
    /// The provider (config name) that holds the key.
    pub provider: String,
    /// The key's name at the provider.
    pub name: String,
    /// The key currently live for this slot; `None` before the first issue.
    pub current: Option<KeyInfo>,
    /// Policy (config name) in force for this slot.
    pub policy: String,
    /// When the next rotation is due to start (already window- and
    /// jitter-adjusted), if one is scheduled.
    pub next_due: Option<Timestamp>,
    /// Why `next_due` is what it is, for `keyrot plan` and the log.
    #[serde(default)]
    pub due_reason: Option<String>,
    /// The rotation in progress for this slot, if any.
    pub active_rotation: Option<RotationId>,
    /// When the last rotation of this slot completed.
    #[serde(default)]
    pub last_rotated_at: Option<Timestamp>,
    /// When the last rotation of this slot started (for group stagger).
    #[serde(default)]
    pub last_started_at: Option<Timestamp>,
    /// When the provider's inventory last listed this key.
    #[serde(default)]
    pub synced_at: Option<Timestamp>,
    /// Sinks (config names) the slot's secret goes to (from its `[[key]]`).
    #[serde(default)]
    pub sinks: Vec<String>,
    /// Scopes a new key gets when the slot has none to keep (from config).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The key's own contacts (from its `[[key]]`).
    #[serde(default)]
    pub contacts: Vec<String>,
    /// Stagger group (from its `[[key]]`).
    #[serde(default)]
    pub group: Option<String>,
    /// The slot's last key, when it left the provider's listing without a
    /// rotation replacing it (expired or revoked behind keyrot's back);
    /// cleared once the slot has a key again.
    #[serde(default)]
    pub ended: Option<EndedKey>,
}

/// How a slot's key came to an end without keyrot replacing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndKind {
    /// Its recorded expiry passed.
    Expired,
    /// It was no longer listed before its recorded expiry (revoked by
    /// someone, or deleted).
    Vanished,
}

/// A slot's key that ended without keyrot replacing it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndedKey {
    /// The key's id at the provider.
    pub id: String,
    /// Expired or vanished.
    pub kind: EndKind,
    /// Its recorded expiry, if it had one.
    pub expires_at: Option<Timestamp>,
    /// When it ended: its expiry when it expired, else the sync that found
    /// it gone.
    pub ended_at: Timestamp,
    /// The sync that found it gone.
    pub noticed_at: Timestamp,
}

/// Per slot, the other live keys its provider lists under the slot's name:
/// the slot tracks one of them (see `scheduler::bind`), these are the rest.
/// Kept beside the slots, one map per provider, replaced by each sync.
pub type Duplicates = BTreeMap<SlotId, Vec<KeyInfo>>;

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
    /// Both keys valid until `revoke_old_at`.
    Overlap,
    /// Revoking the old key.
    Revoking,
    /// Done; secret wiped from the store.
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
            Self::Issued | Self::Distributing | Self::Verifying | Self::Overlap | Self::Revoking
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
}

impl RotationRecord {
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
            RotationState::Verifying | RotationState::Overlap | RotationState::Revoking
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

/// Kinds of notification the outbox carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// A rotation completed.
    RotationCompleted,
    /// A rotation failed after its retry budget.
    RotationFailed,
    /// The new key is live in every sink; the old key lives on until the
    /// overlap ends.
    NewKeyLive,
    /// The old key was revoked.
    OldKeyRevoked,
    /// A key is about to expire and is not rotated automatically.
    ExpiryWarning,
    /// An operator must create a key by hand (assisted rotation).
    AssistedRequest,
    /// A provider listed a key whose name or id keyrot refuses.
    KeyRefused,
    /// A slot's key expired or vanished without keyrot replacing it.
    KeyEnded,
    /// A test message (`keyrot notify test`).
    Test,
    /// The daily digest of the keys that expire soon.
    Digest,
}

impl MessageKind {
    /// Every kind, in the order docs/notifications.md lists their events.
    pub const ALL: [MessageKind; 10] = [
        MessageKind::NewKeyLive,
        MessageKind::OldKeyRevoked,
        MessageKind::RotationCompleted,
        MessageKind::RotationFailed,
        MessageKind::AssistedRequest,
        MessageKind::ExpiryWarning,
        MessageKind::KeyEnded,
        MessageKind::KeyRefused,
        MessageKind::Digest,
        MessageKind::Test,
    ];

    /// The event name webhooks carry and `[[notify.webhook]] events`
    /// filters on, e.g. `rotation.failed`.
    pub fn event(self) -> &'static str {
        match self {
            MessageKind::NewKeyLive => "rotation.new_key_live",
            MessageKind::OldKeyRevoked => "rotation.old_key_revoked",
            MessageKind::RotationCompleted => "rotation.completed",
            MessageKind::RotationFailed => "rotation.failed",
            MessageKind::AssistedRequest => "rotation.assisted_request",
            MessageKind::ExpiryWarning => "key.expiring",
            MessageKind::KeyEnded => "key.ended",
            MessageKind::KeyRefused => "key.refused",
            MessageKind::Digest => "digest",
            MessageKind::Test => "test",
        }
    }
}

/// Where an outbox message goes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Email, through `[notify] transport`, to the message's `to`.
    #[default]
    Mail,
    /// The `[[notify.webhook]]` of this name; the body is the JSON the
    /// webhook receives.
    Webhook(String),
}

/// Delivery state of an outbox message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting to be sent (or retried).
    Queued,
    /// Delivered to the transport.
    Sent,
    /// Gave up after its retry budget.
    Dead,
}

/// A notification waiting in (or delivered from) the outbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Stable id derived from the event; also the Message-ID's local part.
    pub id: String,
    /// What kind of event.
    pub kind: MessageKind,
    /// Recipients, de-duplicated.
    pub to: Vec<String>,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// HTML alternative of the body, if rendered.
    #[serde(default)]
    pub html: Option<String>,
    /// Where it goes: email (default, and every message queued by an
    /// older keyrot) or one webhook.
    #[serde(default)]
    pub channel: Channel,
    /// The message this one follows in its thread (a rotation's or a
    /// key's), for `In-Reply-To`/`References`; none for a message that
    /// stands alone.
    #[serde(default)]
    pub thread: Option<String>,
    /// Delivery state.
    pub state: DeliveryState,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Next attempt not before.
    pub next_attempt_at: Timestamp,
    /// Last delivery error.
    pub last_error: Option<String>,
    /// When queued.
    pub created_at: Timestamp,
}

impl OutboxMessage {
    /// The id of the event this message tells: its own id for a mail, the
    /// part before ` webhook:NAME` for a webhook delivery.
    pub fn event_id(&self) -> &str {
        match &self.channel {
            Channel::Mail => &self.id,
            Channel::Webhook(name) => self
                .id
                .strip_suffix(name.as_str())
                .and_then(|s| s.strip_suffix(" webhook:"))
                .unwrap_or(&self.id),
        }
    }
}

/// One append-only, hash-chained audit entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Sequence number, from 1.
    pub seq: u64,
    /// When it happened.
    pub at: Timestamp,
    /// What happened (e.g. `rotation.completed`).
    pub event: String,
    /// Slot concerned, if any.
    pub slot: Option<SlotId>,
    /// Rotation concerned, if any.
    pub rotation: Option<RotationId>,
    /// Who caused it.
    pub actor: Option<String>,
    /// Details (never secret material).
    pub detail: String,
    /// Hash of the previous entry (hex), empty for the first.
    pub prev_hash: String,
    /// SHA-256 over this entry's fields and `prev_hash` (hex).
    pub hash: String,
}

/// How a provider makes a replacement key: the one choice that decides the
/// shape of a rotation. Each variant is a combination that exists; the
/// ones that do not (a native rotate that keeps no key, an assisted
/// provider that ends the old key) cannot be written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueMode {
    /// It cannot create keys: people are asked to create one and hand it
    /// to `keyrot enroll` (assisted rotation).
    #[default]
    Assisted,
    /// It creates a new key beside the old one, with the scopes the policy
    /// asks for; both live through the overlap.
    Create,
    /// It rotates the old key in one call (a native rotate).
    Rotate {
        /// The new key gets the old key's scopes (the proposed Atlassian
        /// rotate): a policy asking for other scopes goes to assisted
        /// rotation instead.
        keeps_scopes: bool,
        /// The old key ends at once (GitLab's rotate): there is no
        /// overlap, and nothing to revoke later.
        old_ends: bool,
    },
}

impl IssueMode {
    /// Whether keyrot can make the new key itself.
    pub fn can_issue(self) -> bool {
        self != IssueMode::Assisted
    }
    /// Whether the new key gets the old key's scopes, whatever the policy says.
    pub fn keeps_scopes(self) -> bool {
        matches!(
            self,
            IssueMode::Rotate {
                keeps_scopes: true,
                ..
            }
        )
    }
    /// Whether issuing a replacement ends the old key at once.
    pub fn no_overlap(self) -> bool {
        matches!(self, IssueMode::Rotate { old_ends: true, .. })
    }
}

/// What a provider can do; the state machine adapts to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// How it makes a replacement key.
    pub issue: IssueMode,
    /// Lists its keys with expiry (inventory sync).
    pub list: bool,
    /// Revokes a key.
    pub revoke: bool,
    /// Checks that a key works.
    pub verify: bool,
    /// Marks a new key with the rotation id, so a crash can be recovered.
    pub tag: bool,
    /// Changes a key's expiry.
    pub set_expiry: bool,
    /// Issuing again with the same tag returns the same key (an idempotency
    /// key), so an interrupted issue is simply repeated.
    pub idempotent_issue: bool,
    /// Can set a key inactive without deleting it (`Provider::deactivate`);
    /// used at the start of the overlap when the provider is configured so.
    pub deactivate: bool,
    /// Can prove which key a secret belongs to (`Provider::prove_identity`),
    /// not only that it authenticates.
    pub prove_identity: bool,
}
