//! What only the PostgreSQL backend has to show: several handles (as
//! several hosts) on one database, the master key checked against the
//! store, secrets sealed before PostgreSQL sees them, a reopen finding
//! everything, and its rows exported as a redb store that verifies.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use super::{KEY_A, KEY_B, SECRET, key_rec, populate, t};
use crate::crypto::MasterKey;
use crate::pgserver::PgServer;
use crate::store::{PgOptions, Store, StoreError};

/// Opens the store in the database `url` with `key`.
fn open_at(url: &str, key: Option<[u8; 32]>) -> Result<Store, StoreError> {
    Store::open_postgres(
        &SecretString::from(url.to_owned()),
        &PgOptions::default(),
        key.map(MasterKey::from_bytes),
    )
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_reopen_finds_everything_and_the_key_is_checked() {
    let url = PgServer::shared().fresh_database().unwrap();
    let store = open_at(&url, Some(KEY_A)).unwrap();
    populate(&store);
    let stats = store.stats().unwrap();
    let installation = store.installation().unwrap();
    assert!(installation.is_some());
    drop(store);

    let again = open_at(&url, Some(KEY_A)).unwrap();
    assert_eq!(again.stats().unwrap(), stats);
    assert_eq!(again.installation().unwrap(), installation);
    assert_eq!(again.secret("r2").unwrap().unwrap().expose_secret(), SECRET);
    assert_eq!(again.verify_audit_chain().unwrap(), stats.audit_entries);

    // Another key is refused before anything is read or written.
    match open_at(&url, Some(KEY_B)) {
        Err(StoreError::WrongMasterKey { path }) => {
            assert!(!path.display().to_string().contains("password"));
        }
        other => panic!("expected WrongMasterKey, got {:?}", other.map(|_| ())),
    }
    // Without a key: reads work, secrets and writes do not.
    let reader = open_at(&url, None).unwrap();
    assert!(reader.is_read_only());
    assert_eq!(reader.keys().unwrap(), again.keys().unwrap());
    assert!(matches!(
        reader.secret("r2"),
        Err(StoreError::ReadOnly { .. })
    ));
    assert!(matches!(
        reader.write(|tx| tx.put_key(&key_rec("p/x", None))),
        Err(StoreError::ReadOnly { .. })
    ));
}

#[test]
fn a_database_without_a_store_is_not_created_by_a_reader() {
    let url = PgServer::shared().fresh_database().unwrap();
    let err = open_at(&url, None).map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("start the daemon"), "{err}");
}

#[test]
fn secrets_are_sealed_before_postgres_sees_them() {
    let server = PgServer::shared();
    let url = server.fresh_database().unwrap();
    let store = open_at(&url, Some(KEY_A)).unwrap();
    populate(&store);
    // Every byte PostgreSQL holds for this database, as its own dump.
    let db = url.rsplit('/').next().unwrap().split('?').next().unwrap();
    let dump = std::process::Command::new(server.bin_dir().join("pg_dump"))
        .args(["-h", "127.0.0.1", "-U", "keyrot", "-p"])
        .arg(server.port().to_string())
        .arg(db)
        .output()
        .unwrap();
    assert!(dump.status.success(), "{dump:?}");
    assert!(contains(&dump.stdout, b"keyrot_secrets"));
    assert!(
        !contains(&dump.stdout, SECRET.as_bytes()),
        "plaintext secret in PostgreSQL"
    );
    let hex: String = SECRET.bytes().map(|b| format!("{b:02x}")).collect();
    assert!(
        !contains(&dump.stdout, hex.as_bytes()),
        "hex secret in PostgreSQL"
    );
}

#[test]
fn concurrent_writers_are_serialised() {
    // Eight threads on one store (its four connections write at once in
    // PostgreSQL): each appends audit entries and moves one shared slot;
    // the chain has one head and no gap, and the slot one due entry.
    let url = PgServer::shared().fresh_database().unwrap();
    let store = Arc::new(open_at(&url, Some(KEY_A)).unwrap());
    let threads: Vec<_> = (0..8u8)
        .map(|n| {
            let s = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..25 {
                    s.write(|tx| {
                        let mut k = tx
                            .key("p/shared")?
                            .unwrap_or_else(|| key_rec("p/shared", None));
                        k.next_due = Some(t(i64::from(n) * 100 + i));
                        tx.put_key(&k)?;
                        let detail = format!("{n}/{i}");
                        tx.audit(t(i), "test.write", Some("p/shared"), None, None, &detail)
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    assert_eq!(store.verify_audit_chain().unwrap(), 200);
    assert_eq!(store.audit(0, 1000).unwrap().len(), 200);
    assert_eq!(store.due_until(t(10_000)).unwrap().len(), 1);
}

#[test]
fn the_export_is_a_redb_store_that_verifies() {
    let url = PgServer::shared().fresh_database().unwrap();
    let store = open_at(&url, Some(KEY_A)).unwrap();
    populate(&store);
    let image = store.backup_image().unwrap();
    assert!(!contains(&image, SECRET.as_bytes()), "plaintext secret");
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("from-postgres.redb");
    let summary = crate::store::write_backup(&target, &image, false, None).unwrap();
    assert_eq!(summary.stats, store.stats().unwrap());
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report:#?}");
    assert_eq!(report.secrets_opened, 2);
    // Opened as a redb store with the same key: the same records and secret.
    let copy = Store::open(&target, MasterKey::from_bytes(KEY_A)).unwrap();
    assert_eq!(copy.keys().unwrap(), store.keys().unwrap());
    assert_eq!(
        copy.rotations(None, 10).unwrap(),
        store.rotations(None, 10).unwrap()
    );
    assert_eq!(
        copy.unfinished_rotations().unwrap(),
        store.unfinished_rotations().unwrap()
    );
    assert_eq!(copy.secret("r2").unwrap().unwrap().expose_secret(), SECRET);
    assert_eq!(
        copy.verify_audit_chain().unwrap(),
        store.verify_audit_chain().unwrap()
    );
}

#[test]
fn a_plain_connection_to_another_host_is_refused() {
    let err = open_at(
        "postgres://keyrot@db.example.com/keyrot?sslmode=disable",
        Some(KEY_A),
    )
    .map(|_| ())
    .unwrap_err();
    assert!(
        err.to_string().contains("sslmode=disable is accepted only"),
        "{err}"
    );
}

#[test]
fn one_read_write_process_per_database() {
    let url = PgServer::shared().fresh_database().unwrap();
    let first = open_at(&url, Some(KEY_A)).unwrap();
    // A second owner is refused as a second open of a redb file is.
    assert!(matches!(
        open_at(&url, Some(KEY_A)),
        Err(StoreError::Locked { .. })
    ));
    // Readers are not.
    drop(open_at(&url, None).unwrap());
    drop(first);
    let second = open_at(&url, Some(KEY_A)).unwrap();
    second
        .write(|tx| tx.put_key(&key_rec("p/a", None)))
        .unwrap();
}

#[test]
fn an_owner_whose_lock_connection_ended_writes_nothing_more() {
    let server = PgServer::shared();
    let url = server.fresh_database().unwrap();
    let owner = open_at(&url, Some(KEY_A)).unwrap();
    owner.write(|tx| tx.put_key(&key_rec("p/a", None))).unwrap();
    // End the owner lock's session from outside, as a network partition
    // or an administrator would.
    let db = url.rsplit('/').next().unwrap().split('?').next().unwrap();
    let ended = std::process::Command::new(server.bin_dir().join("psql"))
        .args(["-h", "127.0.0.1", "-U", "keyrot", "-tA", "-p"])
        .arg(server.port().to_string())
        .args(["-d", db, "-c"])
        .arg(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks \
             WHERE locktype = 'advisory' AND classid = 1801812338 AND objid = 1",
        )
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ended.stdout).trim(),
        "1",
        "{ended:?}"
    );
    // A new owner may take the store now; the old one's writes fail as fatal.
    let new_owner = open_at(&url, Some(KEY_A)).unwrap();
    let err = owner
        .write(|tx| tx.put_key(&key_rec("p/b", None)))
        .unwrap_err();
    assert!(matches!(err, StoreError::CommitFailed(_)), "{err}");
    assert!(new_owner.key("p/b").unwrap().is_none());
    new_owner
        .write(|tx| tx.put_key(&key_rec("p/c", None)))
        .unwrap();
}
