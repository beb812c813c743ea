//! The store: one redb file holding the inventory, rotations, sealed
//! secrets, the outbox, the audit chain, the due index and the local
//! provider's registry. (STUB: being written; signatures are the contract.)

use std::path::Path;

use jiff::Timestamp;
use secrecy::SecretString;

use crate::crypto::MasterKey;
use crate::model::{AuditEntry, KeyRecord, OutboxMessage, RotationRecord};

/// What a due-index entry wakes the scheduler for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DueTarget {
    /// A key slot's next rotation start (`KeyRecord::next_due`).
    Key(String),
    /// A rotation's timer: its retry backoff (`retry_at`) or, in Overlap,
    /// the old key's revoke time (`revoke_old_at`).
    Rotation(String),
}

/// A key minted by the `local` provider (its registry).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LocalKey {
    /// Key id.
    pub id: String,
    /// Key name.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Creator.
    pub created_by: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// Expiry.
    pub expires_at: Option<Timestamp>,
    /// SHA-256 hex of the secret (the secret itself is not kept).
    pub secret_sha256: String,
    /// Rotation id the key was issued for.
    pub tag: Option<String>,
    /// When revoked.
    pub revoked_at: Option<Timestamp>,
    /// Last successful verify.
    pub last_used_at: Option<Timestamp>,
}

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Something else.
    #[error("{0}")]
    Other(String),
}

/// The store handle.
pub struct Store;

/// A write transaction.
pub struct Tx;

impl Store {
    /// Opens or creates the store.
    pub fn open(_path: &Path, _master: MasterKey) -> Result<Store, StoreError> {
        Err(StoreError::Other("stub".into()))
    }
    /// Runs `f` in one durable write transaction.
    pub fn write<T>(&self, _f: impl FnOnce(&mut Tx) -> Result<T, StoreError>) -> Result<T, StoreError> {
        Err(StoreError::Other("stub".into()))
    }
    /// Reads one slot.
    pub fn key(&self, _slot: &str) -> Result<Option<KeyRecord>, StoreError> { Ok(None) }
    /// All slots, sorted.
    pub fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> { Ok(vec![]) }
    /// One rotation.
    pub fn rotation(&self, _id: &str) -> Result<Option<RotationRecord>, StoreError> { Ok(None) }
    /// Rotations not in a terminal state.
    pub fn unfinished_rotations(&self) -> Result<Vec<RotationRecord>, StoreError> { Ok(vec![]) }
    /// Rotations, newest first, optionally of one slot.
    pub fn rotations(&self, _slot: Option<&str>, _limit: usize) -> Result<Vec<RotationRecord>, StoreError> { Ok(vec![]) }
    /// The earliest due-index entry.
    pub fn next_due(&self) -> Result<Option<(Timestamp, DueTarget)>, StoreError> { Ok(None) }
    /// Every due-index entry at or before `now`.
    pub fn due_until(&self, _now: Timestamp) -> Result<Vec<(Timestamp, DueTarget)>, StoreError> { Ok(vec![]) }
    /// Unseals a rotation's secret.
    pub fn secret(&self, _rotation: &str) -> Result<Option<SecretString>, StoreError> { Ok(None) }
    /// Outbox messages.
    pub fn outbox(&self) -> Result<Vec<OutboxMessage>, StoreError> { Ok(vec![]) }
    /// Audit entries.
    pub fn audit(&self, _after: u64, _limit: usize) -> Result<Vec<AuditEntry>, StoreError> { Ok(vec![]) }
}

impl Tx {
    /// Upsert a slot (maintains the due index from `next_due`).
    pub fn put_key(&mut self, _rec: &KeyRecord) -> Result<(), StoreError> { Ok(()) }
    /// Upsert a rotation (maintains its timer in the due index).
    pub fn put_rotation(&mut self, _rec: &RotationRecord) -> Result<(), StoreError> { Ok(()) }
    /// Seals and stores a rotation's secret.
    pub fn put_secret(&mut self, _rotation: &str, _secret: &SecretString) -> Result<(), StoreError> { Ok(()) }
    /// Deletes a rotation's secret.
    pub fn wipe_secret(&mut self, _rotation: &str) -> Result<(), StoreError> { Ok(()) }
    /// Queues or updates an outbox message.
    pub fn put_message(&mut self, _m: &OutboxMessage) -> Result<(), StoreError> { Ok(()) }
    /// Appends an audit entry.
    pub fn audit(&mut self, _at: Timestamp, _event: &str, _slot: Option<&str>, _rotation: Option<&str>, _actor: Option<&str>, _detail: &str) -> Result<(), StoreError> { Ok(()) }
}
