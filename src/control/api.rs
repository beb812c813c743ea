//! The control API's request and response bodies (JSON), shared by the
//! server, the client and the CLI. Nothing here holds secret material.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use keyrot_core::model::RotationRecord;

/// `POST /v1/rotate`: start a rotation of one key slot now.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// Slot id (`provider/name`), or a key name when unambiguous.
    pub key: String,
    /// Human-readable reason, recorded and audited.
    #[serde(default)]
    pub reason: Option<String>,
    /// Expiry the new key should get.
    #[serde(default)]
    pub new_expires_at: Option<Timestamp>,
    /// When the old key should be revoked (instead of the policy overlap).
    #[serde(default)]
    pub old_expires_at: Option<Timestamp>,
    /// Who asked.
    #[serde(default)]
    pub rotated_by: Option<String>,
    /// From where (cli, api, ci, ...).
    #[serde(default)]
    pub initiated_from: Option<String>,
    /// Policy id the caller links the rotation to.
    #[serde(default)]
    pub rotation_policy_id: Option<String>,
    /// Tell the policy's security contacts too.
    #[serde(default)]
    pub notify_contacts: bool,
    /// Seal the new secret under this pre-shared key for the caller.
    #[serde(default)]
    pub reveal_psk: Option<String>,
}

/// `POST /v1/rotations/{id}/enroll`: the secret of a key created by hand
/// (assisted rotation). The CLI reads it from stdin; it never appears in argv.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The new key's one-time secret.
    pub secret: secrecy::SecretString,
    /// The new key's id at the provider (found by name when absent).
    #[serde(default)]
    pub key_id: Option<String>,
    /// Enroll even where the provider cannot prove the secret is that key's.
    #[serde(default)]
    pub accept_unverified: bool,
}

impl std::fmt::Debug for EnrollRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollRequest")
            .field("secret", &"[redacted]")
            .field("key_id", &self.key_id)
            .field("accept_unverified", &self.accept_unverified)
            .finish()
    }
}

/// What the CLI sends for an enrollment (serialisable side).
#[derive(Serialize)]
pub struct EnrollBody<'a> {
    /// The secret, exposed only into the request body on the local socket.
    pub secret: &'a str,
    /// The new key's id, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<&'a str>,
    /// Enroll even where the provider cannot prove the secret is that key's.
    pub accept_unverified: bool,
}

/// A JSON error body: `{"error": {"code": .., "message": .., "field": ..}}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error inside [`ErrorBody`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// HTTP status code.
    pub code: u16,
    /// What went wrong and what to do.
    pub message: String,
    /// The request field at fault, if one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Near matches for an unknown key, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suggestions: Vec<String>,
    /// The rotation already running (409), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_id: Option<String>,
}

/// One row of `keyrot status` / `keyrot keys`, like an admin console's key list.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct KeyRow {
    /// `provider/name`.
    pub slot: String,
    /// Provider name.
    pub provider: String,
    /// Key name.
    pub name: String,
    /// Current key id at the provider, if any.
    pub key_id: Option<String>,
    /// Number of scopes.
    pub scopes: usize,
    /// Who created the current key.
    pub created_by: Option<String>,
    /// When the current key was created.
    pub created_at: Option<Timestamp>,
    /// When the current key was last used.
    pub last_used_at: Option<Timestamp>,
    /// When the current key expires.
    pub expires_at: Option<Timestamp>,
    /// Whole days until expiry (negative when expired).
    pub days_left: Option<i64>,
    /// Policy name.
    pub policy: String,
    /// State of the active rotation, or of the last one.
    pub rotation_state: Option<String>,
    /// The active (or last) rotation's id.
    pub rotation_id: Option<String>,
    /// When the next rotation starts.
    pub next_rotation: Option<Timestamp>,
    /// Why then.
    pub next_reason: Option<String>,
    /// Flags: `no-key`, `unscoped`, `never-used`, `expired`,
    /// `expiring-soon`, `failed`, `duplicate-name`, `vanished`.
    pub flags: Vec<String>,
    /// Other live keys the provider lists under this key's name, newest
    /// first (flag `duplicate-name`); the slot tracks `key_id` alone.
    #[serde(default)]
    pub duplicate_ids: Vec<String>,
    /// The slot's last key, when it has no key because that one expired or
    /// vanished without keyrot replacing it (flag `expired` or `vanished`).
    #[serde(default)]
    pub ended: Option<EndedRow>,
    /// While the active rotation is in Overlap: its old key's last use as
    /// the provider last reported it, and the in-use alert if raised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_key: Option<OldKeyRow>,
}

/// The old key of a rotation in Overlap, as a status row shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OldKeyRow {
    /// The old key's id at the provider.
    pub key_id: Option<String>,
    /// Its last use as the provider last reported it (`kind`: `never`,
    /// `at` with `at`, `unknown` with `why`); absent when keyrot has none
    /// (the provider does not report last use, or was not asked yet).
    pub last_use: Option<keyrot_core::model::LastUse>,
    /// The same in words at the time of the answer: `last used 2h 5m ago`,
    /// `never used`, `last use unknown (why)`.
    pub summary: String,
    /// When keyrot last asked the provider.
    pub checked_at: Option<Timestamp>,
    /// When the alert that the old key was still in use at the policy's
    /// `revoke_deadline` was raised (`revoke_when = "unused"`).
    pub in_use_alerted_at: Option<Timestamp>,
}

/// A key that ended without keyrot replacing it, as a status row shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EndedRow {
    /// `expired` (its expiry passed) or `vanished` (gone before it).
    pub state: String,
    /// The key's id at the provider.
    pub key_id: String,
    /// Its recorded expiry.
    pub expires_at: Option<Timestamp>,
    /// When it ended: its expiry, or the sync that found it gone.
    pub ended_at: Timestamp,
}

/// `GET /v1/status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusResponse {
    /// keyrot version.
    pub version: String,
    /// Whether this came from the daemon (true) or a read-only store open.
    pub live: bool,
    /// One row per key slot, sorted by slot.
    pub keys: Vec<KeyRow>,
    /// Rotations not yet finished.
    pub active_rotations: usize,
    /// Rotations that failed and wait for an operator.
    pub failed_rotations: usize,
    /// Outbox messages waiting.
    pub outbox_queued: usize,
    /// Outbox messages that exhausted their budget.
    pub outbox_dead: usize,
    /// When the next queued message is tried (the backlog's next attempt).
    #[serde(default)]
    pub outbox_next_attempt_at: Option<Timestamp>,
    /// Ids of the dead messages, oldest first (the log has their errors).
    #[serde(default)]
    pub outbox_dead_ids: Vec<String>,
    /// On a shared store: the leader lease as the database has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<keyrot_core::store::LeaseInfo>,
    /// On a shared store, from a running daemon: the role of the instance
    /// that answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<InstanceRole>,
    /// Keys with keyrot's tag that no known rotation owns, as each
    /// provider's last sync found them (`keyrot orphans`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orphans: Vec<keyrot_core::model::Orphan>,
}

/// The role of a keyrot instance on a shared store.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstanceRole {
    /// `leader` or `standby`.
    pub role: String,
    /// The instance's id (`host:pid:suffix`), as the lease names holders.
    pub instance: String,
    /// Times this instance took over from another one since it started.
    pub failovers: u64,
}

/// One row of `keyrot plan`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PlanRow {
    /// `provider/name`.
    pub slot: String,
    /// Policy name.
    pub policy: String,
    /// When the policy makes the key due.
    pub due_at: Option<Timestamp>,
    /// When the rotation would start.
    pub start_at: Option<Timestamp>,
    /// The window it starts in.
    pub window: Option<(Timestamp, Timestamp)>,
    /// Started outside a window because the key would expire first.
    pub emergency: bool,
    /// Pushed back by the group stagger.
    pub staggered: bool,
    /// One-line explanation.
    pub explain: String,
}

/// `GET /v1/plan?days=N`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlanResponse {
    /// Horizon in days.
    pub days: u32,
    /// Keys whose rotation would start within the horizon, earliest first,
    /// then the rest.
    pub rows: Vec<PlanRow>,
}

/// `GET /v1/history[?key=SLOT]` and rotation lists.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HistoryResponse {
    /// Rotations, newest first.
    pub rotations: Vec<RotationRecord>,
}

/// One provider as `keyrot orphans` reports it: whether its keys are swept.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct OrphanSweep {
    /// Provider name.
    pub provider: String,
    /// Whether its listing carries keyrot's tag, so its syncs sweep for
    /// orphans (`None`: unknown, it could not be built here).
    pub swept: Option<bool>,
    /// Its `revoke_orphans` setting.
    pub revoke_orphans: bool,
    /// Its last successful inventory sync (orphans are as that sync found them).
    pub last_sync: Option<Timestamp>,
}

/// `GET /v1/orphans[?provider=NAME]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrphansResponse {
    /// Whether this came from the daemon (true) or a read-only store open.
    pub live: bool,
    /// The orphans, by provider then key id.
    pub orphans: Vec<keyrot_core::model::Orphan>,
    /// Every configured provider (or the one asked for).
    pub providers: Vec<OrphanSweep>,
}

/// `POST /v1/orphans/revoke`: revoke the listed orphans.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrphansRevokeRequest {
    /// Only this provider's (every provider's when absent).
    #[serde(default)]
    pub provider: Option<String>,
    /// Who asks (recorded in the audit log beside the caller's uid or token).
    #[serde(default)]
    pub requested_by: Option<String>,
}

/// What `POST /v1/orphans/revoke` did, per orphan.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrphansRevokeResponse {
    /// One outcome per orphan listed when the call began.
    pub outcomes: Vec<keyrot_engine::scheduler::orphans::RevokeOutcome>,
}

/// `POST /v1/sinks/push`: write a key's kept current secret to its sinks
/// again (`keyrot sink push`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkPushRequest {
    /// Slot id (`provider/name`), or a key name when unambiguous.
    pub key: String,
    /// Only this sink (one of the key's); every sink of the key without it.
    #[serde(default)]
    pub sink: Option<String>,
    /// Who asks (recorded in the audit log beside the caller's uid or token).
    #[serde(default)]
    pub requested_by: Option<String>,
}
