//! What only the PostgreSQL backend has to show: several handles (as
//! several hosts) on one database, the master key checked against the
//! store, secrets sealed before PostgreSQL sees them, a reopen finding
//! everything, and its rows exported as a redb store that verifies.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use super::{KEY_A, KEY_B, SECRET, key_rec, lead, populate, t};
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

/// Opens the store in `url` with [`KEY_A`] and takes its lease.
fn leader_at(url: &str) -> Store {
    let store = open_at(url, Some(KEY_A)).unwrap();
    lead(&store, "test");
    store
}

/// Runs `query` in the database `url` names with psql; its output.
fn psql(url: &str, query: &str) -> String {
    let server = PgServer::shared();
    let db = url.rsplit('/').next().unwrap().split('?').next().unwrap();
    let out = std::process::Command::new(server.bin_dir().join("psql"))
        .args(["-h", "127.0.0.1", "-U", "keyrot", "-tA", "-p"])
        .arg(server.port().to_string())
        .args(["-d", db, "-c", query])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_reopen_finds_everything_and_the_key_is_checked() {
    let url = PgServer::shared().fresh_database().unwrap();
    let store = leader_at(&url);
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
    let store = leader_at(&url);
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
    let store = Arc::new(leader_at(&url));
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
    let store = leader_at(&url);
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
fn a_second_instance_is_a_standby_until_the_lease_is_free() {
    let url = PgServer::shared().fresh_database().unwrap();
    let (a, b) = (
        open_at(&url, Some(KEY_A)).unwrap(),
        open_at(&url, Some(KEY_A)).unwrap(),
    );
    let hour = std::time::Duration::from_secs(3600);
    // Before any grant, nobody writes.
    let err = a.write(|tx| tx.put_key(&key_rec("p/a", None))).unwrap_err();
    assert!(err.to_string().contains("standby"), "{err}");
    assert_eq!(
        a.acquire_lease("a", hour, hour / 2).unwrap(),
        Some((1, String::new()))
    );
    assert!(a.lease_valid());
    a.write(|tx| tx.put_key(&key_rec("p/a", None))).unwrap();
    // B is a standby: no lease, no write (and no harm: not fatal).
    assert_eq!(b.acquire_lease("b", hour, hour / 2).unwrap(), None);
    assert!(!b.lease_valid());
    let err = b.write(|tx| tx.put_key(&key_rec("p/b", None))).unwrap_err();
    assert!(!matches!(err, StoreError::CommitFailed(_)), "{err}");
    let info = b.lease().unwrap().unwrap();
    assert_eq!(
        (info.holder.as_str(), info.epoch, info.is_live()),
        ("a", 1, true)
    );

    // The lease runs out (as if A were paused past it): B takes it under
    // epoch 2, and from then on A's writes and renewals fail.
    psql(&url, "UPDATE keyrot_lease SET expires_at = now()");
    assert_eq!(
        b.acquire_lease("b", hour, hour / 2).unwrap(),
        Some((2, "a".into()))
    );
    let err = a
        .write(|tx| tx.put_key(&key_rec("p/late", None)))
        .unwrap_err();
    assert!(matches!(err, StoreError::CommitFailed(_)), "{err}");
    assert!(err.to_string().contains("epoch 1"), "{err}");
    assert!(!a.renew_lease(hour, hour / 2).unwrap());
    assert!(!a.lease_valid());
    assert!(b.key("p/late").unwrap().is_none());
    b.write(|tx| tx.put_key(&key_rec("p/b", None))).unwrap();
    assert!(b.renew_lease(hour, hour / 2).unwrap());

    // A clean stop hands the lease over at once.
    b.release_lease().unwrap();
    assert!(b.write(|tx| tx.put_key(&key_rec("p/c", None))).is_err());
    assert_eq!(
        a.acquire_lease("a2", hour, hour / 2).unwrap(),
        Some((3, "b".into()))
    );
}

#[test]
fn the_same_holder_takes_its_lease_again_under_a_new_epoch() {
    // A process that drops its store and opens it again (a crash in
    // process) takes the lease back at once under the same holder id; the
    // new epoch fences off the old handle. Another holder still waits.
    let url = PgServer::shared().fresh_database().unwrap();
    let hour = std::time::Duration::from_secs(3600);
    let old = leader_at(&url);
    old.write(|tx| tx.put_key(&key_rec("p/old", None))).unwrap();
    let epoch = old.lease().unwrap().unwrap().epoch;
    let again = open_at(&url, Some(KEY_A)).unwrap();
    assert_eq!(
        again.acquire_lease("test", hour, hour / 2).unwrap(),
        Some((epoch + 1, "test".into()))
    );
    let err = old
        .write(|tx| tx.put_key(&key_rec("p/late", None)))
        .unwrap_err();
    assert!(matches!(err, StoreError::CommitFailed(_)), "{err}");
    assert!(err.to_string().contains(&format!("epoch {epoch}")), "{err}");
    assert!(!old.renew_lease(hour, hour / 2).unwrap());
    again
        .write(|tx| tx.put_key(&key_rec("p/new", None)))
        .unwrap();
    assert!(again.key("p/old").unwrap().is_some());
    assert!(again.key("p/late").unwrap().is_none());
    // Another holder is still refused while the lease is live.
    let other = open_at(&url, Some(KEY_A)).unwrap();
    assert_eq!(other.acquire_lease("other", hour, hour / 2).unwrap(), None);
    let info = other.lease().unwrap().unwrap();
    assert_eq!((info.holder.as_str(), info.epoch), ("test", epoch + 1));
    assert!(again.renew_lease(hour, hour / 2).unwrap());
}

#[test]
fn a_lease_is_trusted_only_within_the_renew_deadline() {
    let url = PgServer::shared().fresh_database().unwrap();
    let a = open_at(&url, Some(KEY_A)).unwrap();
    let hour = std::time::Duration::from_secs(3600);
    // Granted for an hour by the server, trusted for no time at all here:
    // the engine would make no call, though writes still pass the fence.
    a.acquire_lease("a", hour, std::time::Duration::ZERO)
        .unwrap()
        .unwrap();
    assert!(!a.lease_valid());
    assert!(a.renew_lease(hour, hour / 2).unwrap());
    assert!(a.lease_valid());
    // A redb store has no lease and is always its own leader.
    let (_dir, path) = super::temp_path();
    let file = super::open(&path);
    assert!(file.lease_valid());
    assert!(file.lease().unwrap().is_none());
}

#[test]
fn a_leader_paused_inside_a_write_cannot_hold_the_others_up() {
    // A leader stopped in the middle of a write transaction holds the write
    // lock; PostgreSQL ends its session once it has sat idle in the
    // transaction past `idle_in_transaction`, so a standby can take over,
    // and nothing of that transaction is kept.
    let url = PgServer::shared().fresh_database().unwrap();
    let opts = PgOptions {
        idle_in_transaction: std::time::Duration::from_millis(500),
        ..PgOptions::default()
    };
    let open = || {
        Store::open_postgres(
            &SecretString::from(url.clone()),
            &opts,
            Some(MasterKey::from_bytes(KEY_A)),
        )
        .unwrap()
    };
    let (a, b) = (Arc::new(open()), open());
    lead(&a, "a");
    let (paused_tx, paused) = std::sync::mpsc::channel::<()>();
    let (wake, woken) = std::sync::mpsc::channel::<()>();
    let writer = {
        let a = Arc::clone(&a);
        std::thread::spawn(move || {
            a.write(|tx| {
                tx.put_key(&key_rec("p/paused", None))?;
                paused_tx.send(()).unwrap();
                woken.recv().unwrap();
                tx.put_key(&key_rec("p/after", None))
            })
        })
    };
    paused.recv().unwrap();
    // The lease runs out while A is stopped in its transaction.
    psql(&url, "UPDATE keyrot_lease SET expires_at = now()");
    let hour = std::time::Duration::from_secs(3600);
    assert_eq!(
        b.acquire_lease("b", hour, hour / 2).unwrap(),
        Some((2, "a".into()))
    );
    wake.send(()).unwrap();
    assert!(writer.join().unwrap().is_err());
    assert!(b.key("p/paused").unwrap().is_none());
    assert!(b.key("p/after").unwrap().is_none());
    b.write(|tx| tx.put_key(&key_rec("p/b", None))).unwrap();
}
