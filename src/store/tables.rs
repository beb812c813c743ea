//! Table definitions and the encodings of keys and values: JSON records,
//! the due index's `(unix micros, target)` keys, the secret AAD and the
//! schema metadata. Everything here is private to the store.

use jiff::Timestamp;
use redb::{ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{DueTarget, StoreError, error::backend};
use crate::model::{RotationRecord, RotationState};

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: u64 = 1;

/// Slot id → JSON `KeyRecord`.
pub(super) const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
/// Rotation id → JSON `RotationRecord`.
pub(super) const ROTATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("rotations");
/// (slot, rotation id) → (): a slot's rotations in time order.
pub(super) const KEY_ROTATIONS: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("key_rotations");
/// Rotation id → sealed secret (AAD: `keyrot-secret:` + rotation id).
pub(super) const SECRETS: TableDefinition<&str, &[u8]> = TableDefinition::new("secrets");
/// Message id → JSON `OutboxMessage`.
pub(super) const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox");
/// Sequence → JSON `AuditEntry`.
pub(super) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// Name → value: schema version, key check, audit head.
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// (due instant in unix microseconds, `k:slot` | `r:rotation`) → ().
pub(super) const DUE: TableDefinition<(i64, &str), ()> = TableDefinition::new("due");
/// Local provider key id → JSON `LocalKey`.
pub(super) const LOCAL_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("local_keys");
/// Slot → id of its unfinished rotation.
pub(super) const ACTIVE: TableDefinition<&str, &str> = TableDefinition::new("active");

/// Every table of this schema, by name, in the order reports list them.
pub(super) const TABLE_NAMES: [&str; 10] = [
    "keys",
    "rotations",
    "key_rotations",
    "secrets",
    "outbox",
    "audit",
    "meta",
    "due",
    "local_keys",
    "active",
];

/// Meta key of the schema version (u64, big-endian).
pub(super) const META_SCHEMA: &str = "schema_version";
/// Meta key of the master-key check envelope.
pub(super) const META_KEY_CHECK: &str = "key_check";
/// Meta key of the audit chain head: JSON `[seq, hash]`.
pub(super) const META_AUDIT_HEAD: &str = "audit_head";
/// AAD of the key check envelope.
pub(super) const KEY_CHECK_AAD: &[u8] = b"keyrot-key-check";
/// Plaintext of the key check envelope.
pub(super) const KEY_CHECK_PLAINTEXT: &[u8] = b"keyrot master key check v1";

/// AAD binding a sealed secret to its rotation.
pub(super) fn secret_aad(rotation: &str) -> Vec<u8> {
    let mut aad = b"keyrot-secret:".to_vec();
    aad.extend_from_slice(rotation.as_bytes());
    aad
}

/// A record as JSON bytes.
pub(super) fn encode<T: Serialize>(
    table: &'static str,
    key: &str,
    value: &T,
) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Encode {
        table,
        key: key.to_owned(),
        detail: e.to_string(),
    })
}

/// A record from JSON bytes.
pub(super) fn decode<T: DeserializeOwned>(
    table: &'static str,
    key: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Decode {
        table,
        key: key.to_owned(),
        detail: e.to_string(),
    })
}

/// Reads and decodes one JSON record of a `&str`-keyed table.
pub(super) fn get_json<T: DeserializeOwned>(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    table: &'static str,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match t.get(key).map_err(backend("reading a record"))? {
        Some(v) => decode(table, key, v.value()).map(Some),
        None => Ok(None),
    }
}

/// Reads and decodes every JSON record of a `&str`-keyed table, in key order.
pub(super) fn all_json<T: DeserializeOwned>(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    table: &'static str,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for item in t.iter().map_err(backend("scanning a table"))? {
        let (k, v) = item.map_err(backend("scanning a table"))?;
        out.push(decode(table, k.value(), v.value())?);
    }
    Ok(out)
}

/// A due instant as the index stores it: unix microseconds, rounded up so
/// that an entry is never reported due before its exact instant.
pub(super) fn due_micros(at: Timestamp) -> i64 {
    let micros =
        at.as_nanosecond().div_euclid(1000) + i128::from(at.as_nanosecond().rem_euclid(1000) != 0);
    i64::try_from(micros).unwrap_or(i64::MAX)
}

/// An index instant back as a timestamp.
pub(super) fn due_timestamp(micros: i64, target: &str) -> Result<Timestamp, StoreError> {
    Timestamp::from_microsecond(micros).map_err(|e| StoreError::Decode {
        table: "due",
        key: format!("{micros}/{target}"),
        detail: e.to_string(),
    })
}

/// The index's encoding of a target: `k:` + slot or `r:` + rotation id.
pub(super) fn target_key(target: &DueTarget) -> String {
    match target {
        DueTarget::Key(slot) => format!("k:{slot}"),
        DueTarget::Rotation(id) => format!("r:{id}"),
    }
}

/// Decodes a target written by [`target_key`].
pub(super) fn parse_target(encoded: &str) -> Result<DueTarget, StoreError> {
    if let Some(slot) = encoded.strip_prefix("k:") {
        Ok(DueTarget::Key(slot.to_owned()))
    } else if let Some(id) = encoded.strip_prefix("r:") {
        Ok(DueTarget::Rotation(id.to_owned()))
    } else {
        Err(StoreError::Decode {
            table: "due",
            key: encoded.to_owned(),
            detail: "target is neither `k:` nor `r:`".into(),
        })
    }
}

/// A rotation's durable timer: its retry backoff, else in Overlap the old
/// key's revoke time, else none.
pub(super) fn rotation_timer(rec: &RotationRecord) -> Option<Timestamp> {
    rec.retry_at.or(if rec.state == RotationState::Overlap {
        rec.revoke_old_at
    } else {
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_micros_rounds_up_sub_microsecond_instants() {
        let t = Timestamp::from_nanosecond(1_000_000_001).unwrap();
        assert_eq!(due_micros(t), 1_000_001);
        let t = Timestamp::from_nanosecond(1_000_000_000).unwrap();
        assert_eq!(due_micros(t), 1_000_000);
        let t = Timestamp::from_nanosecond(-1_500).unwrap();
        assert_eq!(due_micros(t), -1);
    }

    #[test]
    fn targets_round_trip() {
        for t in [
            DueTarget::Key("p/a:b".into()),
            DueTarget::Rotation("r1".into()),
        ] {
            assert_eq!(parse_target(&target_key(&t)).unwrap(), t);
        }
        assert!(parse_target("x:1").is_err());
    }
}
