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
/// Slot → (id, state) of the slot's latest rotation (the greatest id),
/// whatever its state: what a status list shows, and where a start finds
/// the unfinished rotations (a slot runs one rotation at a time, so an
/// unfinished rotation is its slot's latest), without reading the
/// history. Derived from `rotations` (kept in step by `put_rotation`); a
/// store without it (older keyrot, or a backup) gets it rebuilt at its
/// next read-write open.
pub(super) const LATEST: TableDefinition<&str, (&str, &str)> =
    TableDefinition::new("latest_rotation");

/// Every table of this schema, by name, in the order reports list them.
pub(super) const TABLE_NAMES: [&str; 11] = [
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
    "latest_rotation",
];

/// Tables derived from others and rebuilt when missing: their absence is
/// not damage.
pub(super) const DERIVED_TABLES: [&str; 1] = ["latest_rotation"];

/// Meta key prefix of a provider's last successful inventory sync (JSON
/// timestamp), e.g. `last_sync:local`.
pub(super) const META_LAST_SYNC: &str = "last_sync:";

/// Meta key prefix of a provider's [`crate::model::Duplicates`] as its last
/// sync found them (JSON; absent when there were none), e.g.
/// `duplicates:atlassian`.
pub(super) const META_DUPLICATES: &str = "duplicates:";

/// Meta key of the schema version (u64, big-endian).
pub(super) const META_SCHEMA: &str = "schema_version";
/// Meta key of the master-key check envelope.
pub(super) const META_KEY_CHECK: &str = "key_check";
/// Meta key of the audit chain head: JSON `[seq, hash]`.
pub(super) const META_AUDIT_HEAD: &str = "audit_head";
/// Meta key of the audit chain's anchor, the last entry a retention prune
/// deleted: JSON `[seq, hash]` (absent: the chain starts at entry 1).
pub(super) const META_AUDIT_ANCHOR: &str = "audit_anchor";
/// Meta key of this installation's id: 20 hex digits drawn when the
/// store is first opened by a keyrot that knows it, kept by backups and
/// restores. It makes Message-IDs and webhook event ids unique between
/// installations that share a mail domain or a receiver.
pub(super) const META_INSTALLATION: &str = "installation";
/// AAD of the key check envelope.
pub(super) const KEY_CHECK_AAD: &[u8] = b"keyrot-key-check";
/// Plaintext of the key check envelope.
pub(super) const KEY_CHECK_PLAINTEXT: &[u8] = b"keyrot master key check v1";

/// `secret` sealed under `master` for rotation `rotation` (the AAD binds
/// the rotation id): what the secrets table holds, on either backend.
pub(super) fn seal_secret(
    master: &crate::crypto::MasterKey,
    rotation: &str,
    secret: &secrecy::SecretString,
) -> Result<Vec<u8>, StoreError> {
    use secrecy::ExposeSecret as _;
    master
        .try_seal(&secret_aad(rotation), secret.expose_secret().as_bytes())
        .map_err(|source| StoreError::Seal {
            rotation: rotation.to_owned(),
            source,
        })
}

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

/// The raw value of the top-level string field `field` of a JSON object,
/// found without decoding the rest: the fields before it are skipped
/// (strings, nested objects and arrays, scalars) and the ones after it are
/// never read. A status list reads a rotation's state this way in a few
/// hundred bytes instead of decoding its whole record. `None` when the
/// field is absent, is not a string, holds an escape, or the text is not
/// well-formed JSON: the caller then decodes the record.
pub(super) fn top_level_str<'a>(json: &'a [u8], field: &str) -> Option<&'a str> {
    let mut i = ws(json, 0);
    if json.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(json, i + 1);
    loop {
        if json.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(json, i)?;
        let key = &json[i + 1..key_end - 1];
        i = ws(json, key_end);
        if json.get(i) != Some(&b':') {
            return None;
        }
        i = ws(json, i + 1);
        let value_end = value_end(json, i)?;
        if key == field.as_bytes() {
            let raw = json.get(i..value_end)?;
            let inner = raw.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
            if inner.contains(&b'\\') {
                return None;
            }
            return std::str::from_utf8(inner).ok();
        }
        i = ws(json, value_end);
        match json.get(i) {
            Some(b',') => i = ws(json, i + 1),
            _ => return None,
        }
    }
}

/// The first index at or after `i` that is not JSON whitespace.
fn ws(json: &[u8], mut i: usize) -> usize {
    while matches!(json.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index just past the string starting with the quote at `i`.
fn string_end(json: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        match json.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
}

/// The index just past the JSON value starting at `i`.
fn value_end(json: &[u8], i: usize) -> Option<usize> {
    match json.get(i)? {
        b'"' => string_end(json, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match json.get(j)? {
                    b'"' => {
                        j = string_end(json, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while let Some(c) = json.get(j) {
                if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// A state's name as the records spell it (`"Completed"`).
pub(super) fn state_name(state: RotationState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A state from its name as the records spell it.
pub(super) fn parse_state(name: &str) -> Option<RotationState> {
    use serde::Deserialize as _;
    use serde::de::IntoDeserializer as _;
    let de: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
        name.into_deserializer();
    RotationState::deserialize(de).ok()
}

/// A rotation record's state, read with [`top_level_str`] (falling back to
/// decoding the record when the fast read cannot say).
pub(super) fn rotation_state(id: &str, json: &[u8]) -> Result<RotationState, StoreError> {
    if let Some(state) = top_level_str(json, "state").and_then(parse_state) {
        return Ok(state);
    }
    #[derive(serde::Deserialize)]
    struct State {
        state: RotationState,
    }
    decode::<State>("rotations", id, json).map(|s| s.state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_fields_are_found_past_nested_values() {
        let json = br#" { "a" : {"state":"x","b":[1,{"c":"}"}]}, "n": -1.5e3, "t": true,
            "s\"": "no", "arr": [], "state" : "Completed", "after": {"state": "y"} } "#;
        assert_eq!(top_level_str(json, "state"), Some("Completed"));
        assert_eq!(top_level_str(json, "n"), None, "not a string");
        assert_eq!(top_level_str(json, "missing"), None);
        assert_eq!(top_level_str(br#"{"state":"a\"b"}"#, "state"), None);
        for bad in [
            &b""[..],
            b"[]",
            b"{",
            b"{\"state\"",
            b"{\"a\":1 \"state\":\"x\"}",
        ] {
            assert_eq!(top_level_str(bad, "state"), None, "{bad:?}");
        }
    }

    #[test]
    fn a_rotation_state_reads_like_its_decoded_record() {
        for state in [
            RotationState::Pending,
            RotationState::Overlap,
            RotationState::Completed,
            RotationState::Failed,
            RotationState::Aborted,
        ] {
            let rec = serde_json::json!({
                "id": "r\"1", "slot": "p/{k}", "provider": "p", "policy": "x",
                "state": state, "history": [{"to": "Pending", "note": "state"}],
            });
            let bytes = serde_json::to_vec(&rec).unwrap();
            assert_eq!(rotation_state("r1", &bytes).unwrap(), state);
        }
        // Another order, or a form the fast read refuses: decoded.
        let bytes = br#"{"history":[],"state":"Failed"}"#;
        assert_eq!(rotation_state("r", bytes).unwrap(), RotationState::Failed);
        assert!(rotation_state("r", b"{}").is_err());
    }

    #[test]
    fn state_names_round_trip() {
        for state in [
            RotationState::Pending,
            RotationState::AwaitingSecret,
            RotationState::Completed,
            RotationState::Aborted,
        ] {
            assert_eq!(parse_state(&state_name(state)), Some(state));
        }
        assert_eq!(state_name(RotationState::AwaitingSecret), "AwaitingSecret");
        assert_eq!(parse_state("completed"), None);
    }

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
