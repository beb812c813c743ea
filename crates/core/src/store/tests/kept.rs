//! A kept current secret (policy `keep_current_secret`): the sealed secret
//! of a Completed rotation that its slot names in `kept_secret`. It is a
//! row of `secrets` like an in-flight one, so the store verifies with it,
//! a backup carries it sealed, and a migration to PostgreSQL and back
//! keeps it, on both backends where it applies.

use secrecy::{ExposeSecret, SecretString};

use super::{KEY_A, key_rec, open, open_pg, rot_rec, temp_path};
use crate::crypto::MasterKey;
use crate::model::RotationState;
use crate::store::{MigrateTo, Store, migrate, write_backup};

const KEPT: &str = "KEPT-SECRET-5d1c8e2a9b7f4036";

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn keep(store: &Store) {
    let mut key = key_rec("p/kept", None);
    key.kept_secret = Some("r-kept".into());
    store
        .write(|tx| {
            tx.put_rotation(&rot_rec("r-kept", "p/kept", RotationState::Completed))?;
            tx.put_secret("r-kept", &SecretString::from(KEPT))?;
            tx.put_key(&key)
        })
        .unwrap();
}

fn a_kept_secret_verifies_and_opens(store: &Store) {
    keep(store);
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report:#?}");
    assert_eq!(report.secrets_opened, 1);
    assert_eq!(
        store.key("p/kept").unwrap().unwrap().kept_secret.as_deref(),
        Some("r-kept")
    );
    assert_eq!(
        store.secret("r-kept").unwrap().unwrap().expose_secret(),
        KEPT
    );
}

on_both!(a_kept_secret_verifies_and_opens);

#[test]
fn a_kept_secret_is_sealed_in_backups_and_survives_a_migration_both_ways() {
    let (dir, path) = temp_path();
    let store = open(&path);
    keep(&store);
    let image = store.backup_image().unwrap();
    assert!(
        !contains(&image, KEPT.as_bytes()),
        "plaintext in the backup"
    );
    let target = dir.path().join("b.redb");
    write_backup(&target, &image, false, Some(&path)).unwrap();
    let report = crate::store::verify_file(&target, Some(&MasterKey::from_bytes(KEY_A))).unwrap();
    assert!(report.is_ok(), "{report:#?}");
    assert_eq!(report.secrets_opened, 1);

    let key = MasterKey::from_bytes(KEY_A);
    let pg = open_pg();
    migrate(&store, MigrateTo::Postgres(&pg), &key).unwrap();
    assert_eq!(pg.secret("r-kept").unwrap().unwrap().expose_secret(), KEPT);
    assert_eq!(pg.keys().unwrap(), store.keys().unwrap());
    assert!(pg.verify().unwrap().is_ok());
    let back = dir.path().join("back/state.redb");
    std::fs::create_dir_all(back.parent().unwrap()).unwrap();
    migrate(&pg, MigrateTo::Redb(&back), &key).unwrap();
    let copy = open(&back);
    assert_eq!(
        copy.secret("r-kept").unwrap().unwrap().expose_secret(),
        KEPT
    );
    assert_eq!(copy.keys().unwrap(), store.keys().unwrap());
    drop(copy);
    assert!(!contains(&std::fs::read(&back).unwrap(), KEPT.as_bytes()));
}
