//! Damaged, truncated, empty and foreign files, and the file a crash
//! leaves: refused with an error naming the file and what to do, and left
//! byte for byte as they were; a crash image is recovered.

use super::{KEY_A, crash_image, open, populate, temp_path};
use crate::crypto::MasterKey;
use crate::store::tables::{META, META_SCHEMA};
use crate::store::{SCHEMA_VERSION, Store, StoreError};

/// Every way of opening `path` fails with `Corrupt`, naming the file and
/// what to do, and the file is unchanged.
fn assert_refused_and_untouched(path: &std::path::Path) {
    let before = std::fs::read(path).unwrap();
    let err = Store::open(path, MasterKey::from_bytes(KEY_A))
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("keyrot store verify"), "{msg}");
    assert!(msg.contains("restore a backup"), "{msg}");
    assert!(
        msg.contains("will not repair, rewrite or replace it"),
        "{msg}"
    );
    let err = Store::open_read_only(path).err().unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let report = crate::store::verify_file(path, Some(&MasterKey::from_bytes(KEY_A))).unwrap();
    assert!(!report.is_ok(), "{report:?}");
    assert!(
        std::fs::read(path).unwrap() == before,
        "the file was modified"
    );
}

#[test]
fn a_truncated_store_is_refused_and_left_as_it_is() {
    let (_dir, path) = temp_path();
    let store = open(&path);
    populate(&store);
    drop(store);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert_refused_and_untouched(&path);
}

#[test]
fn a_truncated_crash_image_is_refused_and_left_as_it_is() {
    // After a crash redb rebuilds the layout from the file length: a
    // truncated file must still be refused, not "recovered".
    let (dir, path) = temp_path();
    let store = open(&path);
    populate(&store);
    let crashed = dir.path().join("crashed/keyrot.redb");
    crash_image(&store, &crashed);
    drop(store);
    let bytes = std::fs::read(&crashed).unwrap();
    for cut in [bytes.len() / 2, 4096, bytes.len() - 4096, 100] {
        std::fs::write(&crashed, &bytes[..cut]).unwrap();
        assert_refused_and_untouched(&crashed);
    }
}

#[test]
fn random_garbage_is_refused_and_left_as_it_is() {
    let (_dir, path) = temp_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let garbage: Vec<u8> = (0..65536)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&path, &garbage).unwrap();
    assert_refused_and_untouched(&path);
}

#[test]
fn an_empty_file_is_refused_not_initialised() {
    let (_dir, path) = temp_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"").unwrap();
    let err = Store::open(&path, MasterKey::from_bytes(KEY_A))
        .err()
        .unwrap();
    assert!(err.to_string().contains("empty (0 bytes)"), "{err}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

#[test]
fn a_foreign_redb_file_is_refused_and_left_as_it_is() {
    let (_dir, path) = temp_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<u64, u64>::new("theirs"))
            .unwrap()
            .insert(1, 2)
            .unwrap();
        txn.commit().unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = Store::open(&path, MasterKey::from_bytes(KEY_A))
        .err()
        .unwrap();
    assert!(err.to_string().contains("not a keyrot store"), "{err}");
    assert!(std::fs::read(&path).unwrap() == before);
}

#[test]
fn a_refused_store_is_never_opened_for_writing() {
    // Wrong key and newer schema are found in the trial copy: the file is
    // not even opened for writing, so not one byte changes.
    let (_dir, path) = temp_path();
    let store = open(&path);
    populate(&store);
    drop(store);
    let before = std::fs::read(&path).unwrap();
    let err = Store::open(&path, MasterKey::from_bytes(super::KEY_B))
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::WrongMasterKey { .. }), "{err:?}");
    assert!(std::fs::read(&path).unwrap() == before);

    let store = open(&path);
    super::raw_write(&store, |txn| {
        let mut meta = txn.open_table(META).unwrap();
        meta.insert(META_SCHEMA, (SCHEMA_VERSION + 1).to_be_bytes().as_slice())
            .unwrap();
    });
    drop(store);
    let before = std::fs::read(&path).unwrap();
    let err = Store::open(&path, MasterKey::from_bytes(KEY_A))
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::SchemaTooNew { .. }), "{err:?}");
    assert!(std::fs::read(&path).unwrap() == before);
}

#[test]
fn a_crash_image_is_read_in_memory_then_recovered_by_the_writer() {
    let (dir, path) = temp_path();
    let store = open(&path);
    populate(&store);
    let crashed = dir.path().join("crashed/keyrot.redb");
    crash_image(&store, &crashed);
    drop(store);
    let before = std::fs::read(&crashed).unwrap();

    // Read-only: served from a copy recovered in memory; the file stays.
    let ro = Store::open_read_only(&crashed).unwrap();
    assert!(ro.is_read_only());
    assert_eq!(ro.keys().unwrap().len(), 2);
    assert_eq!(ro.verify_audit_chain().unwrap(), 3);
    // It holds the file like a read-only open: a writer is locked out.
    assert!(matches!(
        Store::open(&crashed, MasterKey::from_bytes(KEY_A)),
        Err(StoreError::Locked { .. })
    ));
    drop(ro);
    assert!(std::fs::read(&crashed).unwrap() == before);

    let report = crate::store::verify_file(&crashed, Some(&MasterKey::from_bytes(KEY_A))).unwrap();
    assert!(report.is_ok(), "{report:#?}");
    assert!(report.recovered);
    assert!(std::fs::read(&crashed).unwrap() == before);

    // The daemon's open recovers the file itself (expected after kill -9).
    let store = open(&crashed);
    assert_eq!(store.keys().unwrap().len(), 2);
    assert_eq!(store.verify_audit_chain().unwrap(), 3);
    assert_eq!(
        store.secret("r2").unwrap().map(|s| {
            use secrecy::ExposeSecret;
            s.expose_secret().to_owned()
        }),
        Some(super::SECRET.to_owned())
    );
    drop(store);
    // Cleanly closed now: a plain read-only open works.
    let ro = Store::open_read_only(&crashed).unwrap();
    assert_eq!(ro.keys().unwrap().len(), 2);
}

#[test]
fn image_opens_are_locked_out_by_the_owner() {
    let (_dir, path) = temp_path();
    let _owner = open(&path);
    let err = crate::store::verify_file(&path, None).err().unwrap();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
}
