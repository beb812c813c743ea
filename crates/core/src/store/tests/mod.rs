//! Store tests against real files in temporary directories (no in-memory
//! backend: file modes, locks and at-rest encryption are part of what is
//! tested). Helpers here build records and reach under the typed API to
//! simulate tampering.

/// Runs each named test body (a `fn(&Store)`) twice, as the tests
/// `NAME::redb` on a store file and `NAME::postgres` in a fresh database of
/// the test process's PostgreSQL server: the backend-neutral tests.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn redb() {
                    let (_dir, path) = super::super::temp_path();
                    super::$name(&super::super::open(&path));
                }

                #[test]
                fn postgres() {
                    super::$name(&super::super::open_pg());
                }
            }
        )*
    };
}

mod backup;
mod damage;
mod data;
mod group;
mod kept;
mod migrate;
mod open;
mod orphans;
mod postgres;
mod prune;
mod prune_race;
mod verify;

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

/// Opens a store in a fresh database of the test process's PostgreSQL
/// server, with [`KEY_A`], holding its leader lease.
fn open_pg() -> Store {
    let url = crate::pgserver::PgServer::shared()
        .fresh_database()
        .unwrap();
    let store = Store::open_postgres(
        &secrecy::SecretString::from(url),
        &super::PgOptions::default(),
        Some(MasterKey::from_bytes(KEY_A)),
    )
    .unwrap();
    lead(&store, "test");
    store
}

/// Takes `store`'s leader lease for `holder` (an hour, trusted for 50
/// minutes); the epoch granted.
fn lead(store: &Store, holder: &str) -> u64 {
    let hour = std::time::Duration::from_secs(3600);
    store
        .acquire_lease(holder, hour, hour * 5 / 6)
        .unwrap()
        .expect("the lease is free")
        .0
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

/// A secret used by [`populate`].
const SECRET: &str = "MARKER-SECRET-populated-0b1c";

/// Fills a store with one of everything: two slots (one due, one with an
/// unfinished rotation in Overlap, so with a timer and an `active` entry),
/// a finished rotation, a sealed secret and a sealed envelope, an outbox
/// message, audit entries and a local-provider key.
fn populate(store: &Store) {
    use secrecy::SecretString;
    store
        .write(|tx| {
            tx.put_key(&key_rec("p/a", Some(t(3600))))?;
            let mut b = key_rec("p/b", None);
            b.active_rotation = Some("r2".into());
            tx.put_key(&b)?;
            tx.put_rotation(&rot_rec("r1", "p/a", RotationState::Completed))?;
            let mut r2 = rot_rec("r2", "p/b", RotationState::Overlap);
            r2.revoke_old_at = Some(t(60));
            tx.put_rotation(&r2)?;
            tx.put_secret("r2", &SecretString::from(SECRET))?;
            tx.put_secret("r2#psk", &SecretString::from("sealed envelope"))?;
            tx.put_message(
                &serde_json::from_value(serde_json::json!({
                    "id": "r1.completed",
                    "kind": "test",
                    "to": ["ops@example.com"],
                    "subject": "s",
                    "body": "b",
                    "state": "queued",
                    "attempts": 0,
                    "next_attempt_at": t(0),
                    "last_error": null,
                    "created_at": t(0),
                }))
                .unwrap(),
            )?;
            tx.local_put(
                &serde_json::from_value(serde_json::json!({
                    "id": "lk1",
                    "name": "a",
                    "scopes": [],
                    "created_by": "keyrot",
                    "created_at": t(0),
                    "expires_at": null,
                    "secret_sha256": "00",
                    "tag": "r1",
                    "revoked_at": null,
                    "last_used_at": null,
                }))
                .unwrap(),
            )?;
            for i in 0..3 {
                tx.audit(t(i), "test.event", Some("p/a"), None, None, "entry")?;
            }
            Ok(())
        })
        .unwrap();
}

/// Copies the file of an open store: what a `kill -9` right after the last
/// commit leaves on disk (the file is marked as open by a writer).
fn crash_image(store: &Store, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(store.path(), to).unwrap();
}

#[test]
fn store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
}
