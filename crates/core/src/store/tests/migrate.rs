//! Moving a store between backends (`keyrot store migrate`): redb to
//! PostgreSQL and back gives the same store, read for read; an import into
//! a store that holds data, or under another master key, writes nothing;
//! and the acceptance figure, 10,000 keys and 50,000 rotations with their
//! audit chain, both ways.

use std::time::Instant;

use secrecy::{ExposeSecret, SecretString};

use super::{KEY_A, KEY_B, SECRET, key_rec, lead, open, populate, rot_rec, t, temp_path};
use crate::crypto::MasterKey;
use crate::model::RotationState;
use crate::pgserver::PgServer;
use crate::store::{MigrateTo, PgOptions, Store, StoreError, StoreStats, migrate};

/// Opens a fresh database of the test process's server with `key`, and
/// takes its leader lease (as `keyrot store migrate` does).
fn fresh_pg(key: [u8; 32]) -> Store {
    let url = PgServer::shared().fresh_database().unwrap();
    let store = Store::open_postgres(
        &SecretString::from(url),
        &PgOptions::default(),
        Some(MasterKey::from_bytes(key)),
    )
    .unwrap();
    lead(&store, "keyrot-store-migrate");
    store
}

/// Asserts that every read of `a` and `b` agrees.
fn assert_same(a: &Store, b: &Store) {
    assert_eq!(a.stats().unwrap(), b.stats().unwrap());
    assert_eq!(a.keys().unwrap(), b.keys().unwrap());
    assert_eq!(
        a.rotations(None, 1000).unwrap(),
        b.rotations(None, 1000).unwrap()
    );
    assert_eq!(
        a.rotations(Some("p/a"), 10).unwrap(),
        b.rotations(Some("p/a"), 10).unwrap()
    );
    assert_eq!(
        a.unfinished_rotations().unwrap(),
        b.unfinished_rotations().unwrap()
    );
    assert_eq!(
        a.keys_with_rotations().unwrap(),
        b.keys_with_rotations().unwrap()
    );
    assert_eq!(a.next_due().unwrap(), b.next_due().unwrap());
    assert_eq!(
        a.due_until(t(1_000_000)).unwrap(),
        b.due_until(t(1_000_000)).unwrap()
    );
    assert_eq!(a.active_rotation("p/b").unwrap(), Some("r2".into()));
    assert_eq!(
        a.active_rotation("p/b").unwrap(),
        b.active_rotation("p/b").unwrap()
    );
    for id in ["r2", "r2#psk"] {
        assert_eq!(
            a.secret(id).unwrap().map(|s| s.expose_secret().to_owned()),
            b.secret(id).unwrap().map(|s| s.expose_secret().to_owned()),
        );
    }
    assert_eq!(a.secret("r2").unwrap().unwrap().expose_secret(), SECRET);
    assert_eq!(a.outbox().unwrap(), b.outbox().unwrap());
    assert_eq!(a.local_keys().unwrap(), b.local_keys().unwrap());
    assert_eq!(a.audit(0, 1000).unwrap(), b.audit(0, 1000).unwrap());
    assert_eq!(
        a.verify_audit_chain().unwrap(),
        b.verify_audit_chain().unwrap()
    );
    assert_eq!(a.installation().unwrap(), b.installation().unwrap());
    assert!(a.installation().unwrap().is_some());
    assert_eq!(a.last_sync("p").unwrap(), b.last_sync("p").unwrap());
    assert_eq!(a.last_sync("p").unwrap(), Some(t(7)));
}

#[test]
fn a_store_goes_to_postgres_and_back_unchanged() {
    let (dir, path) = temp_path();
    let source = open(&path);
    populate(&source);
    source.write(|tx| tx.set_last_sync("p", t(7))).unwrap();
    let key = MasterKey::from_bytes(KEY_A);

    let pg = fresh_pg(KEY_A);
    let there = migrate(&source, MigrateTo::Postgres(&pg), &key).unwrap();
    assert_eq!(there.stats, source.stats().unwrap());
    assert_eq!(there.audit_entries, 3);
    assert_eq!(there.secrets_opened, 2);
    assert_same(&source, &pg);
    // The copy is a store keyrot writes on as on any other.
    pg.write(|tx| tx.audit(t(9), "test.after", None, None, None, "x"))
        .unwrap();
    assert_eq!(pg.verify_audit_chain().unwrap(), 4);

    let back = dir.path().join("back/state.redb");
    std::fs::create_dir_all(back.parent().unwrap()).unwrap();
    let report = migrate(&pg, MigrateTo::Redb(&back), &key).unwrap();
    assert_eq!(report.audit_entries, 4);
    let copy = open(&back);
    assert_same(&pg, &copy);
    assert!(copy.verify().unwrap().is_ok());
    // The source was only read.
    assert_eq!(source.verify_audit_chain().unwrap(), 3);
}

#[test]
fn a_pruned_audit_chain_keeps_its_anchor_both_ways() {
    let (dir, path) = temp_path();
    let source = open(&path);
    populate(&source);
    // Entries 1 and 2 go; the chain starts after its anchor, entry 2.
    assert_eq!(source.prune_audit(t(2), t(100), 10, &|| false).unwrap(), 2);
    let kept = source.audit(0, 100).unwrap();
    assert_eq!(kept.first().map(|e| e.seq), Some(3));
    let entries = source.verify_audit_chain().unwrap();
    let key = MasterKey::from_bytes(KEY_A);

    let pg = fresh_pg(KEY_A);
    let report = migrate(&source, MigrateTo::Postgres(&pg), &key).unwrap();
    assert_eq!(report.audit_entries, entries);
    assert_eq!(pg.audit(0, 100).unwrap(), kept);
    assert_eq!(pg.verify_audit_chain().unwrap(), entries);
    let verified = pg.verify().unwrap();
    assert!(verified.is_ok(), "{verified:#?}");
    assert_eq!(verified.audit_first, 3);

    let back = dir.path().join("back.redb");
    migrate(&pg, MigrateTo::Redb(&back), &key).unwrap();
    let copy = open(&back);
    assert_eq!(copy.audit(0, 100).unwrap(), kept);
    assert_eq!(copy.verify_audit_chain().unwrap(), entries);
}

#[test]
fn an_import_into_a_store_holding_data_is_refused_and_writes_nothing() {
    let (_dir, path) = temp_path();
    let source = open(&path);
    populate(&source);
    let key = MasterKey::from_bytes(KEY_A);
    let dest = fresh_pg(KEY_A);
    dest.write(|tx| {
        tx.put_key(&key_rec("p/other", Some(t(5))))?;
        tx.audit(t(1), "test.event", None, None, None, "there before")
    })
    .unwrap();
    let before = dest.stats().unwrap();
    let installation = dest.installation().unwrap();

    let err = migrate(&source, MigrateTo::Postgres(&dest), &key).unwrap_err();
    match &err {
        StoreError::NotEmpty { holds, .. } => {
            assert_eq!(holds, "keys 1, audit entries 1, due-index entries 1");
        }
        other => panic!("expected NotEmpty, got {other}"),
    }
    assert!(
        err.to_string().contains("only into an empty store"),
        "{err}"
    );
    // Nothing changed: not a row, not the meta.
    assert_eq!(dest.stats().unwrap(), before);
    assert_eq!(dest.installation().unwrap(), installation);
    assert_eq!(dest.keys().unwrap(), vec![key_rec("p/other", Some(t(5)))]);
    assert_eq!(dest.verify_audit_chain().unwrap(), 1);
    assert!(dest.verify().unwrap().is_ok());

    // A store holding only a rotation is refused too.
    let dest = fresh_pg(KEY_A);
    dest.write(|tx| tx.put_rotation(&rot_rec("r9", "p/x", RotationState::Completed)))
        .unwrap();
    let image = source.backup_image().unwrap();
    assert!(matches!(
        dest.import_image(&image),
        Err(StoreError::NotEmpty { .. })
    ));
    assert_eq!(dest.stats().unwrap().rotations, 1);
}

#[test]
fn an_import_that_fails_half_way_leaves_the_database_as_it_was() {
    let (_dir, path) = temp_path();
    let source = open(&path);
    populate(&source);
    // A local key whose id PostgreSQL's text cannot hold (a NUL byte):
    // redb keeps it, and it is written after most tables.
    let mut odd = source.local_keys().unwrap().remove(0);
    odd.id = "lk\0odd".into();
    source.write(|tx| tx.local_put(&odd)).unwrap();
    let key = MasterKey::from_bytes(KEY_A);
    let dest = fresh_pg(KEY_A);
    let installation = dest.installation().unwrap();
    let err = migrate(&source, MigrateTo::Postgres(&dest), &key).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Backend {
                op: "importing rows",
                ..
            }
        ),
        "{err}"
    );
    // One transaction: no row of any table, and the fresh store's meta.
    assert_eq!(dest.stats().unwrap(), StoreStats::default());
    assert!(dest.keys().unwrap().is_empty());
    assert!(dest.local_keys().unwrap().is_empty());
    assert_eq!(dest.next_due().unwrap(), None);
    assert_eq!(dest.installation().unwrap(), installation);
    assert!(dest.verify().unwrap().is_ok());
    // It takes a migration of a sound store afterwards.
    let (_dir2, path2) = temp_path();
    let sound = open(&path2);
    populate(&sound);
    migrate(&sound, MigrateTo::Postgres(&dest), &key).unwrap();
    assert_eq!(dest.stats().unwrap(), sound.stats().unwrap());
}

#[test]
fn another_master_key_is_refused_before_anything_is_written() {
    let (dir, path) = temp_path();
    let source = open(&path);
    populate(&source);
    let image = source.backup_image().unwrap();
    let other = MasterKey::from_bytes(KEY_B);

    // The destination opened with another key than the source's.
    let dest = fresh_pg(KEY_B);
    assert!(matches!(
        migrate(&source, MigrateTo::Postgres(&dest), &other),
        Err(StoreError::WrongMasterKey { .. })
    ));
    assert!(matches!(
        dest.import_image(&image),
        Err(StoreError::WrongMasterKey { .. })
    ));
    assert_eq!(dest.stats().unwrap(), StoreStats::default());
    // A redb destination: no file is written.
    let target = dir.path().join("other.redb");
    assert!(matches!(
        migrate(&source, MigrateTo::Redb(&target), &other),
        Err(StoreError::WrongMasterKey { .. })
    ));
    assert!(!target.exists());
}

#[test]
fn a_redb_destination_is_a_new_file_and_a_redb_store_takes_no_import() {
    let (dir, path) = temp_path();
    let source = open(&path);
    populate(&source);
    let key = MasterKey::from_bytes(KEY_A);
    let existing = dir.path().join("existing.redb");
    std::fs::write(&existing, b"keep me").unwrap();
    let err = migrate(&source, MigrateTo::Redb(&existing), &key).unwrap_err();
    assert!(err.to_string().contains("exists"), "{err}");
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");
    // The source itself, as the destination: refused the same way.
    assert!(migrate(&source, MigrateTo::Redb(&path), &key).is_err());
    // import_image is for PostgreSQL.
    let image = source.backup_image().unwrap();
    let err = open(&dir.path().join("x/y.redb"))
        .import_image(&image)
        .unwrap_err();
    assert!(err.to_string().contains("new file"), "{err}");
}

/// The acceptance figure: `keys` keys with `PER_KEY` rotations each (one
/// in ten slots with its last rotation unfinished, in Overlap with a
/// timer), an audit entry per rotation, moved redb → PostgreSQL → redb.
#[test]
fn ten_thousand_keys_and_fifty_thousand_rotations_round_trip() {
    // The suite runs a fifth of the size (`KEYROT_MIGRATE_KEYS=10000` for
    // the full one, whose figures docs/operations.md gives).
    let keys: usize = std::env::var("KEYROT_MIGRATE_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    const PER_KEY: usize = 5;
    /// Slots written per transaction.
    const BATCH: usize = 500;
    let (dir, path) = temp_path();
    let source = open(&path);
    let started = Instant::now();
    for first in (0..keys).step_by(BATCH) {
        source
            .write(|tx| {
                for i in first..first + BATCH {
                    let slot = format!("p/key-{i:05}");
                    let mut key = key_rec(&slot, Some(t(3600 + i as i64)));
                    for j in 0..PER_KEY {
                        let id = format!("r{i:05}-{j}");
                        let unfinished = j + 1 == PER_KEY && i % 10 == 0;
                        let state = match unfinished {
                            true => RotationState::Overlap,
                            false => RotationState::Completed,
                        };
                        let mut rec = rot_rec(&id, &slot, state);
                        if unfinished {
                            rec.revoke_old_at = Some(t(60 + i as i64));
                            key.active_rotation = Some(id.clone());
                        }
                        tx.put_rotation(&rec)?;
                        let detail = format!("rotation {id}");
                        tx.audit(
                            t(i as i64),
                            "rotation.completed",
                            Some(&slot),
                            Some(&id),
                            None,
                            &detail,
                        )?;
                    }
                    tx.put_key(&key)?;
                }
                Ok(())
            })
            .unwrap();
    }
    let stats = source.stats().unwrap();
    assert_eq!(
        (stats.keys, stats.rotations),
        (keys as u64, (keys * PER_KEY) as u64)
    );
    assert_eq!(stats.audit_entries, (keys * PER_KEY) as u64);
    eprintln!(
        "built a redb store of {} keys, {} rotations, {} audit entries in {:.1?}",
        stats.keys,
        stats.rotations,
        stats.audit_entries,
        started.elapsed()
    );
    let key = MasterKey::from_bytes(KEY_A);
    let unfinished = source.unfinished_rotations().unwrap();
    assert_eq!(unfinished.len(), keys / 10);

    let pg = fresh_pg(KEY_A);
    let started = Instant::now();
    let there = migrate(&source, MigrateTo::Postgres(&pg), &key).unwrap();
    report("redb -> PostgreSQL", &there, started);
    assert_eq!(there.stats, stats);
    assert_eq!(there.audit_entries, (keys * PER_KEY) as u64);
    assert_eq!(pg.unfinished_rotations().unwrap(), unfinished);
    assert_eq!(pg.next_due().unwrap(), source.next_due().unwrap());

    let back = dir.path().join("back.redb");
    let started = Instant::now();
    let again = migrate(&pg, MigrateTo::Redb(&back), &key).unwrap();
    report("PostgreSQL -> redb", &again, started);
    assert_eq!(again.stats, stats);
    assert_eq!(again.audit_entries, (keys * PER_KEY) as u64);
    let copy = open(&back);
    assert_eq!(copy.verify_audit_chain().unwrap(), (keys * PER_KEY) as u64);
    assert_eq!(copy.unfinished_rotations().unwrap(), unfinished);
    assert_eq!(copy.keys().unwrap(), source.keys().unwrap());
    assert_eq!(
        copy.rotations(Some("p/key-00010"), 10).unwrap(),
        source.rotations(Some("p/key-00010"), 10).unwrap()
    );
}

/// Prints a migration's timings (for docs/operations.md).
fn report(what: &str, r: &crate::store::MigrateReport, started: Instant) {
    eprintln!(
        "{what}: {:.1?} in all (snapshot {:.1?}, source checked {:.1?}, written {:.1?}, destination verified {:.1?}), image {} MiB",
        started.elapsed(),
        r.read,
        r.check,
        r.write,
        r.verify,
        r.image_bytes / (1024 * 1024)
    );
}
