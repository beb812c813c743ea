//! The inventory: a key slot, the key a provider describes, and a key that
//! ended without keyrot replacing it.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{RotationId, SlotId};

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
    /// Hooks (config names) of the slot's `[[key]]`, run once a new secret
    /// is in every sink.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<String>,
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
    /// The rotation whose sealed secret is kept as this slot's current
    /// secret (policy `keep_current_secret`), for `keyrot sink push`; the
    /// secret is in the store's `secrets` table under that rotation's id.
    /// Replaced (the previous one wiped) when the slot's next rotation
    /// completes; cleared when the policy stops keeping secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_secret: Option<RotationId>,
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
