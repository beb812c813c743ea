//! The records keyrot keeps: a key slot in the inventory, a rotation and its
//! state, per-sink results, outbox messages and audit entries.
//!
//! These types are what the store persists (as JSON inside redb values) and
//! what the control API returns. They never hold secret material: a new
//! key's secret lives only in the store's `secrets` table, sealed.
//!
//! Inventory slots in `key`, rotations in `rotation`, the outbox in
//! `outbox`, the audit chain in `audit`, what a provider can do in
//! `capabilities`, a key's last use in `last_use`, keys that carry keyrot's
//! tag but belong to no known rotation in `orphan`; here the ids.

mod audit;
mod capabilities;
mod key;
mod last_use;
mod orphan;
mod outbox;
mod rotation;

pub use audit::AuditEntry;
pub use capabilities::{Capabilities, IssueMode};
pub use key::{Duplicates, EndKind, EndedKey, KeyInfo, KeyRecord};
pub use last_use::LastUse;
pub use orphan::{Orphan, Orphans};
pub use outbox::{Channel, DeliveryState, MessageKind, OutboxMessage};
pub use rotation::{
    HookResult, Initiator, MAX_THROTTLED, NewKey, RotationRecord, RotationState, SinkResult,
    Transition, Trigger,
};

/// The identity of a key slot: `provider/name`. The provider's key id
/// changes with every rotation; the slot stays.
pub type SlotId = String;

/// A rotation id: a UUIDv7 rendered as text, so ids sort by creation time.
pub type RotationId = String;

/// Builds a slot id from its provider and key name.
pub fn slot_id(provider: &str, name: &str) -> SlotId {
    format!("{provider}/{name}")
}

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
