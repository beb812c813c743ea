//! Backups: every row copied from one snapshot, secrets still sealed and
//! freed pages left behind, the file written 0600 and never over an
//! existing file (unless forced), the store itself or a store in use.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redb::ReadableTable;
use secrecy::{ExposeSecret, SecretString};

use super::{KEY_A, SECRET, key_rec, open, populate, raw_write, temp_path};
use crate::crypto::MasterKey;
use crate::store::tables::SECRETS;
use crate::store::{Store, StoreError, write_backup};

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_backup_holds_every_row_and_opens_like_the_store() {
    let (dir, path) = temp_path();
    let store = open(&path);
    populate(&store);
    let target = dir.path().join("backups/b1.redb");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let image = store.backup_image().unwrap();
    assert!(!contains(&image, SECRET.as_bytes()), "plaintext secret");
    let summary = write_backup(&target, &image, false, Some(&path)).unwrap();
    assert_eq!(summary.path, target);
    assert_eq!(summary.bytes, image.len() as u64);
    assert_eq!(summary.stats, store.stats().unwrap());
    assert_eq!(summary.audit_entries, 3);
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // No temporary file is left beside it.
    assert_eq!(
        std::fs::read_dir(target.parent().unwrap()).unwrap().count(),
        1
    );

    // Read-only, without the key: the same records.
    let copy = Store::open_read_only(&target).unwrap();
    assert_eq!(copy.keys().unwrap(), store.keys().unwrap());
    assert_eq!(
        copy.rotations(None, 10).unwrap(),
        store.rotations(None, 10).unwrap()
    );
    assert_eq!(copy.audit(0, 10).unwrap(), store.audit(0, 10).unwrap());
    assert_eq!(copy.outbox().unwrap(), store.outbox().unwrap());
    assert_eq!(copy.local_keys().unwrap(), store.local_keys().unwrap());
    assert_eq!(copy.next_due().unwrap(), store.next_due().unwrap());
    assert_eq!(copy.active_rotation("p/b").unwrap(), Some("r2".into()));
    drop(copy);
    // With the master key (restored as a store): the secret opens, and the
    // verifier finds nothing wrong.
    let report = crate::store::verify_file(&target, Some(&MasterKey::from_bytes(KEY_A))).unwrap();
    assert!(report.is_ok(), "{report:#?}");
    assert!(!report.recovered);
    let restored = Store::open(&target, MasterKey::from_bytes(KEY_A)).unwrap();
    let secret = restored.secret("r2").unwrap().unwrap();
    assert_eq!(secret.expose_secret(), SECRET);
    // ... and only with that key.
    drop(restored);
    assert!(matches!(
        Store::open(&target, MasterKey::from_bytes(super::KEY_B)),
        Err(StoreError::WrongMasterKey { .. })
    ));
}

#[test]
fn a_backup_leaves_freed_pages_behind() {
    // A wiped secret's sealed bytes may linger in a free page of the store;
    // a backup copies rows, not pages, so they are not in it.
    let (dir, path) = temp_path();
    let store = open(&path);
    store
        .write(|tx| tx.put_secret("r9", &SecretString::from("gone")))
        .unwrap();
    let mut sealed = Vec::new();
    raw_write(&store, |txn| {
        let t = txn.open_table(SECRETS).unwrap();
        sealed = t.get("r9").unwrap().unwrap().value().to_vec();
    });
    store.write(|tx| tx.wipe_secret("r9")).unwrap();
    let image = store.backup_image().unwrap();
    assert!(
        !contains(&image, &sealed),
        "a wiped secret is in the backup"
    );
    let target = dir.path().join("b.redb");
    write_backup(&target, &image, false, None).unwrap();
    assert!(!contains(&std::fs::read(&target).unwrap(), &sealed));
}

#[test]
fn a_backup_from_a_read_only_open_works() {
    let (dir, path) = temp_path();
    populate(&open(&path));
    let ro = Store::open_read_only(&path).unwrap();
    let target = dir.path().join("b.redb");
    let summary = write_backup(&target, &ro.backup_image().unwrap(), false, None).unwrap();
    assert_eq!(summary.stats.keys, 2);
    assert_eq!(summary.stats.secrets, 2);
}

#[test]
fn backups_taken_while_writes_run_are_consistent_snapshots() {
    // Each write adds one slot and one audit entry: any snapshot holds as
    // many of one as of the other, and a whole audit chain.
    let (dir, path) = temp_path();
    let store = Arc::new(open(&path));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                store
                    .write(|tx| {
                        tx.put_key(&key_rec(&format!("p/k{i}"), None))?;
                        tx.audit(super::t(i), "e", None, None, None, "d")
                    })
                    .unwrap();
                i += 1;
            }
            i
        })
    };
    let mut seen = Vec::new();
    for n in 0..20 {
        let target = dir.path().join(format!("b{n}.redb"));
        let s = write_backup(&target, &store.backup_image().unwrap(), false, None).unwrap();
        assert_eq!(s.stats.keys, s.audit_entries, "backup {n} is torn");
        seen.push(s.audit_entries);
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(written > 0);
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
}

#[test]
fn an_existing_file_is_replaced_only_when_forced() {
    let (dir, path) = temp_path();
    let store = open(&path);
    populate(&store);
    let target = dir.path().join("b.redb");
    std::fs::write(&target, b"precious").unwrap();
    let image = store.backup_image().unwrap();
    let err = write_backup(&target, &image, false, None).err().unwrap();
    assert!(matches!(err, StoreError::BackupTarget { .. }), "{err:?}");
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    write_backup(&target, &image, true, None).unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), image);
}

#[test]
fn the_store_and_a_store_in_use_are_never_overwritten() {
    let (dir, path) = temp_path();
    let store = open(&path);
    populate(&store);
    let image = store.backup_image().unwrap();
    let before = std::fs::read(&path).unwrap();
    // Named another way, it is still the store.
    let aliased = path.parent().unwrap().join("../state/keyrot.redb");
    let err = write_backup(&aliased, &image, true, Some(&path))
        .err()
        .unwrap();
    assert!(err.to_string().contains("the store itself"), "{err}");
    // Without knowing the store's path: it is locked by its owner.
    let err = write_backup(&path, &image, true, None).err().unwrap();
    assert!(err.to_string().contains("in use"), "{err}");
    assert!(std::fs::read(&path).unwrap() == before);
    drop(store);
    let _ = dir;
}
