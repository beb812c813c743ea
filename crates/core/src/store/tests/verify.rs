//! `keyrot store verify`: a sound store passes, in the owning process and
//! offline; each kind of damage is reported, naming what is wrong.

use redb::ReadableTable;

use super::{KEY_A, KEY_B, open, populate, raw_write, temp_path};
use crate::crypto::MasterKey;
use crate::model::AuditEntry;
use crate::store::tables::{ACTIVE, AUDIT, DUE, KEY_ROTATIONS, SECRETS};
use crate::store::{Store, VerifyReport, verify_file};

/// Verifies in the owning process, then offline, and returns both.
fn both(store: Store) -> (VerifyReport, VerifyReport) {
    let live = store.verify().unwrap();
    let path = store.path().to_path_buf();
    drop(store);
    let offline = verify_file(&path, Some(&MasterKey::from_bytes(KEY_A))).unwrap();
    (live, offline)
}

/// Asserts that both reports name `needle` in a problem.
fn assert_found(store: Store, needle: &str) {
    let (live, offline) = both(store);
    for r in [live, offline] {
        assert!(
            r.problems.iter().any(|p| p.contains(needle)),
            "{needle:?} not in {:#?}",
            r.problems
        );
        assert!(!r.is_ok());
    }
}

#[test]
fn a_sound_store_passes_live_and_offline() {
    let (_dir, path) = temp_path();
    let store = open(&path);
    populate(&store);
    let (live, offline) = both(store);
    for r in [&live, &offline] {
        assert!(r.is_ok(), "{r:#?}");
        assert!(r.integrity);
        assert!(!r.recovered);
        assert_eq!(r.schema_version, Some(1));
        assert_eq!(r.audit_entries, 3);
        assert_eq!(r.audit_first, 1);
        assert!(r.audit_chain_ok);
        assert!(r.secrets_checked);
        assert_eq!(r.secrets_opened, 2);
        let rows = |name: &str| r.tables.iter().find(|t| t.table == name).unwrap().rows;
        assert_eq!(rows("keys"), 2);
        assert_eq!(rows("rotations"), 2);
        assert_eq!(rows("due"), 2);
        assert_eq!(rows("active"), 1);
        assert_eq!(r.tables.len(), 10);
    }
    assert!(live.live);
    assert!(!offline.live);
    // Verifying changed nothing in the file.
    let before = std::fs::read(&path).unwrap();
    verify_file(&path, Some(&MasterKey::from_bytes(KEY_A))).unwrap();
    assert!(std::fs::read(&path).unwrap() == before);
}

#[test]
fn a_pruned_audit_log_verifies_from_its_anchor_live_and_offline() {
    let (_dir, path) = temp_path();
    let store = open(&path);
    populate(&store);
    let last = store.audit(0, 10).unwrap().pop().unwrap();
    // Every entry before the last goes (two), and audit.pruned is added.
    let after = last.at + jiff::SignedDuration::from_secs(1);
    assert_eq!(store.prune_audit(after, after, 500, &|| false).unwrap(), 2);
    let (live, offline) = both(store);
    for r in [&live, &offline] {
        assert!(r.is_ok(), "{r:#?}");
        assert!(r.audit_chain_ok);
        assert_eq!(r.audit_first, 3);
        assert_eq!(r.audit_entries, 2);
    }
}

#[test]
fn a_tampered_audit_entry_is_reported() {
    let (_dir, path) = temp_path();
    let store = open(&path);
    populate(&store);
    let mut forged: AuditEntry = store.audit(1, 1).unwrap().remove(0);
    forged.detail = "nothing happened".into();
    raw_write(&store, |txn| {
        txn.open_table(AUDIT)
            .unwrap()
            .insert(2, serde_json::to_vec(&forged).unwrap().as_slice())
            .unwrap();
    });
    assert_found(store, "audit chain broken at entry 2");
}

#[test]
fn a_secret_that_does_not_open_is_reported() {
    let (_dir, path) = temp_path();
    let store = open(&path);
    populate(&store);
    raw_write(&store, |txn| {
        let mut t = txn.open_table(SECRETS).unwrap();
        let mut sealed = t.get("r2").unwrap().unwrap().value().to_vec();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        t.insert("r2", sealed.as_slice()).unwrap();
    });
    assert_found(store, "secret \"r2\" does not open under the master key");
}

#[test]
fn a_secret_moved_to_another_row_is_reported() {
    let (_dir, path) = temp_path();
    let store = open(&path);
    populate(&store);
    raw_write(&store, |txn| {
        let mut t = txn.open_table(SECRETS).unwrap();
        let sealed = t.get("r2").unwrap().unwrap().value().to_vec();
        t.insert("r1", sealed.as_slice()).unwrap();
    });
    assert_found(store, "secret \"r1\" does not open");
}

#[test]
fn the_wrong_master_key_is_reported_offline() {
    let (_dir, path) = temp_path();
    populate(&open(&path));
    let r = verify_file(&path, Some(&MasterKey::from_bytes(KEY_B))).unwrap();
    assert!(!r.secrets_checked);
    assert!(
        r.problems.iter().any(|p| p.contains("not the one")),
        "{r:#?}"
    );
    // Without a key the rest is still checked, and passes.
    let r = verify_file(&path, None).unwrap();
    assert!(r.is_ok(), "{r:#?}");
    assert!(!r.secrets_checked);
}

#[test]
fn broken_cross_references_are_reported() {
    type Damage = fn(&redb::WriteTransaction);
    let cases: [(Damage, &str); 5] = [
        (
            |txn| {
                txn.open_table(ACTIVE)
                    .unwrap()
                    .insert("p/b", "nope")
                    .unwrap();
            },
            "disagree",
        ),
        (
            |txn| {
                let mut t = txn.open_table(DUE).unwrap();
                let key = {
                    let (k, _) = t.first().unwrap().unwrap();
                    let (at, target) = k.value();
                    (at, target.to_owned())
                };
                t.remove((key.0, key.1.as_str())).unwrap();
            },
            "has no entry",
        ),
        (
            |txn| {
                txn.open_table(DUE)
                    .unwrap()
                    .insert((5, "r:ghost"), ())
                    .unwrap();
            },
            "rotation ghost, which does not exist",
        ),
        (
            |txn| {
                txn.open_table(KEY_ROTATIONS)
                    .unwrap()
                    .remove(("p/a", "r1"))
                    .unwrap();
            },
            "rotation r1 is not listed under its slot",
        ),
        (
            |txn| {
                txn.open_table(SECRETS)
                    .unwrap()
                    .insert("orphan", b"x".as_slice())
                    .unwrap();
            },
            "belongs to rotation orphan, which does not exist",
        ),
    ];
    for (damage, needle) in cases {
        let (_dir, path) = temp_path();
        let store = open(&path);
        populate(&store);
        raw_write(&store, damage);
        assert_found(store, needle);
    }
}

#[test]
fn a_record_that_does_not_decode_is_reported() {
    let (_dir, path) = temp_path();
    let store = open(&path);
    populate(&store);
    raw_write(&store, |txn| {
        txn.open_table(crate::store::tables::KEYS)
            .unwrap()
            .insert("p/a", b"{not json".as_slice())
            .unwrap();
    });
    assert_found(store, "in table keys cannot be decoded");
}

#[test]
fn altered_pages_are_reported_by_the_integrity_check() {
    let (_dir, path) = temp_path();
    let store = open(&path);
    populate(&store);
    drop(store);
    let pristine = std::fs::read(&path).unwrap();
    let mut reported = 0;
    for page in (1..pristine.len() / 4096).map(|p| p * 4096) {
        let mut bytes = pristine.clone();
        for b in &mut bytes[page..page + 64] {
            *b ^= 0x5a;
        }
        std::fs::write(&path, &bytes).unwrap();
        let r = verify_file(&path, Some(&MasterKey::from_bytes(KEY_A))).unwrap();
        if !r.is_ok() {
            reported += 1;
        }
        assert!(
            std::fs::read(&path).unwrap() == bytes,
            "page {page}: modified"
        );
    }
    assert!(reported > 0, "no altered page was reported");
}
