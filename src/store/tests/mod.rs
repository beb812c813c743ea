//! Store tests against real files in temporary directories (no in-memory
//! backend: file modes, locks and at-rest encryption are part of what is
//! tested). Helpers here build records and reach under the typed API to
//! simulate tampering.

mod data;
mod open;

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use redb::WriteTransaction;

use super::{Db, Store};
use crate::crypto::MasterKey;
use crate::model::{KeyRecord, RotationRecord, RotationState, Trigger};

/// The key most tests use.
const KEY_A: [u8; 32] = [0x11; 32];
/// Another key.
const KEY_B: [u8; 32] = [0x22; 32];

/// A temporary directory and a store path inside a not-yet-existing subdirectory.
fn temp_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/keyrot.redb");
    (dir, path)
}

/// Opens `path` with [`KEY_A`].
fn open(path: &Path) -> Store {
    Store::open(path, MasterKey::from_bytes(KEY_A)).unwrap()
}

/// An instant `s` seconds after 2026-01-01.
fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_767_225_600 + s).unwrap()
}

/// A slot record due at `due`. Built from JSON so that fields the model
/// gains later (with serde defaults) do not break these tests.
fn key_rec(slot: &str, due: Option<Timestamp>) -> KeyRecord {
    serde_json::from_value(serde_json::json!({
        "slot": slot,
        "provider": "p",
        "name": slot,
        "current": null,
        "policy": "default",
        "next_due": due,
        "active_rotation": null,
    }))
    .unwrap()
}

/// A rotation record in `state` (built from JSON, as [`key_rec`]).
fn rot_rec(id: &str, slot: &str, state: RotationState) -> RotationRecord {
    serde_json::from_value(serde_json::json!({
        "id": id,
        "slot": slot,
        "provider": "p",
        "policy": "default",
        "state": state,
        "trigger": Trigger::Manual,
        "reason": "test",
        "old_key_id": null,
        "old_expires_at": null,
        "requested_new_expiry": null,
        "requested_old_expiry": null,
        "new_key": null,
        "sinks": [],
        "revoke_old_at": null,
        "attempts": 0,
        "retry_at": null,
        "last_error": null,
        "failed_in": null,
        "created_at": t(0),
        "updated_at": t(0),
        "history": [],
    }))
    .unwrap()
}

/// Writes directly through redb, bypassing the typed API (to simulate
/// someone altering the file).
fn raw_write(store: &Store, f: impl FnOnce(&WriteTransaction)) {
    let Db::ReadWrite(db) = &store.db else {
        panic!("read-write store expected")
    };
    let txn = db.begin_write().unwrap();
    f(&txn);
    txn.commit().unwrap();
}

#[test]
fn store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
}
