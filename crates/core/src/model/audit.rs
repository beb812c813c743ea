//! One entry of the append-only, hash-chained audit log.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{RotationId, SlotId};

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
