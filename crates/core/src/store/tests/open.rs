//! Opening: modes, reopen, schema version, master key, locks, read-only,
//! damaged files.

use std::os::unix::fs::PermissionsExt;

use redb::ReadableTable;
use secrecy::SecretString;

use super::{KEY_A, KEY_B, key_rec, open, raw_write, temp_path};
use crate::crypto::MasterKey;
use crate::store::tables::{META, META_SCHEMA};
use crate::store::{SCHEMA_VERSION, Store, StoreError};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn open_creates_private_dir_and_file_and_reopens() {
    let (_dir, path) = temp_path();
    let store = open(&path);
    assert_eq!(store.path(), path);
    assert!(!store.is_read_only());
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    store.write(|tx| tx.put_key(&key_rec("p/a", None))).unwrap();
    drop(store);

    let store = open(&path);
    assert_eq!(store.key("p/a").unwrap().unwrap().slot, "p/a");
    assert_eq!(store.keys().unwrap().len(), 1);
}

#[test]
fn open_tightens_a_loose_file_mode() {
    let (_dir, path) = temp_path();
    drop(open(&path));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(open(&path));
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn newer_schema_is_refused_and_left_alone() {
    let (_dir, path) = temp_path();
    let store = open(&path);
    raw_write(&store, |txn| {
        let mut meta = txn.open_table(META).unwrap();
        meta.insert(META_SCHEMA, (SCHEMA_VERSION + 1).to_be_bytes().as_slice())
            .unwrap();
    });
    drop(store);

    let err = Store::open(&path, MasterKey::from_bytes(KEY_A))
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew {
                found: 2,
                supported: 1
            }
        ),
        "{err:?}"
    );
    assert!(
        msg.contains("version 2") && msg.contains("version 1"),
        "{msg}"
    );
    assert!(msg.contains("upgrade keyrot"), "{msg}");
    // The refused open changed nothing: the newer version is still there.
    assert!(matches!(
        Store::open_read_only(&path),
        Err(StoreError::SchemaTooNew { found: 2, .. })
    ));
}

#[test]
fn wrong_master_key_is_refused() {
    let (_dir, path) = temp_path();
    drop(open(&path));
    let err = Store::open(&path, MasterKey::from_bytes(KEY_B))
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::WrongMasterKey { .. }), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()));
    // The right key still works.
    drop(open(&path));
}

#[test]
fn second_open_in_the_same_process_is_locked() {
    // redb locks the file per open file description, so a second open in
    // the same process is refused just as another process would be.
    let (_dir, path) = temp_path();
    let _owner = open(&path);
    let err = Store::open(&path, MasterKey::from_bytes(KEY_A))
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    let msg = err.to_string();
    assert_eq!(
        msg,
        format!(
            "another keyrot process owns the store {} (is the daemon running? use the control socket, or stop it)",
            path.display()
        )
    );
    assert!(matches!(
        Store::open_read_only(&path),
        Err(StoreError::Locked { .. })
    ));
}

#[test]
fn read_only_open_reads_but_never_writes_or_unseals() {
    let (_dir, path) = temp_path();
    let store = open(&path);
    store
        .write(|tx| {
            tx.put_key(&key_rec("p/a", None))?;
            tx.put_secret("r1", &SecretString::from("s3cret"))
        })
        .unwrap();
    drop(store);

    let ro = Store::open_read_only(&path).unwrap();
    assert!(ro.is_read_only());
    assert_eq!(ro.keys().unwrap().len(), 1);
    assert!(ro.has_secret("r1").unwrap());
    let err = ro.secret("r1").err().unwrap();
    assert!(matches!(err, StoreError::ReadOnly { .. }), "{err:?}");
    assert!(err.to_string().contains("daemon"), "{err}");
    let err = ro
        .write(|tx| tx.put_key(&key_rec("p/b", None)))
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::ReadOnly { .. }), "{err:?}");

    // Read-only opens share the file; a writer is locked out meanwhile.
    let ro2 = Store::open_read_only(&path).unwrap();
    assert_eq!(ro2.keys().unwrap().len(), 1);
    assert!(matches!(
        Store::open(&path, MasterKey::from_bytes(KEY_A)),
        Err(StoreError::Locked { .. })
    ));
    drop((ro, ro2));
    drop(open(&path));
}

#[test]
fn read_only_open_of_a_missing_file_names_it() {
    let (_dir, path) = temp_path();
    let err = Store::open_read_only(&path).err().unwrap();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()));
    assert!(!path.exists());
}

#[test]
fn damaged_file_is_reported_and_never_rewritten() {
    let (_dir, path) = temp_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let garbage: Vec<u8> = (0..16384u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();

    let err = Store::open(&path, MasterKey::from_bytes(KEY_A))
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()));
    let err = Store::open_read_only(&path).err().unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(
        std::fs::read(&path).unwrap() == garbage,
        "the damaged file was modified"
    );
}

#[test]
fn unknown_meta_without_key_check_is_corrupt() {
    let (_dir, path) = temp_path();
    let store = open(&path);
    raw_write(&store, |txn| {
        let mut meta = txn.open_table(META).unwrap();
        meta.remove(crate::store::tables::META_KEY_CHECK).unwrap();
        assert!(meta.get(META_SCHEMA).unwrap().is_some());
    });
    drop(store);
    assert!(matches!(
        Store::open(&path, MasterKey::from_bytes(KEY_A)),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn altered_pages_give_corrupt_errors_not_panics() {
    // Flip bytes in every page of a real store in turn. redb panics on some
    // altered pages; the store must turn that into `Corrupt`, at open or at
    // the first read, and never let the panic out.
    let (_dir, path) = temp_path();
    let store = open(&path);
    store
        .write(|tx| {
            for i in 0..50 {
                tx.put_key(&key_rec(&format!("p/k{i}"), None))?;
                tx.audit(super::t(i), "e", None, None, None, "d")?;
            }
            Ok(())
        })
        .unwrap();
    drop(store);
    let pristine = std::fs::read(&path).unwrap();
    let mut corrupt_seen = 0;
    for page in (1..pristine.len() / 4096).map(|p| p * 4096) {
        let mut bytes = pristine.clone();
        for b in &mut bytes[page..page + 64] {
            *b ^= 0x5a;
        }
        std::fs::write(&path, &bytes).unwrap();
        let outcome = Store::open(&path, MasterKey::from_bytes(KEY_A)).and_then(|s| {
            s.keys()?;
            s.verify_audit_chain()
        });
        match outcome {
            Err(StoreError::Corrupt { .. }) => corrupt_seen += 1,
            // An altered page that is not live (free, or an old copy) is harmless;
            // one inside a record shows up as a decode or chain error.
            Ok(_)
            | Err(StoreError::Decode { .. })
            | Err(StoreError::AuditChainBroken { .. })
            | Err(StoreError::Backend { .. }) => {}
            Err(other) => panic!("page {page}: unexpected {other:?}"),
        }
    }
    assert!(corrupt_seen > 0, "no altered page was reported as corrupt");
}
