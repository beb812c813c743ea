//! Typed access: secrets at rest, the due index, rotation timers, the
//! `active` and `key_rotations` indexes, the audit chain, rollback.

use redb::ReadableTable;
use secrecy::{ExposeSecret, SecretString};

use super::{key_rec, open, raw_write, rot_rec, t, temp_path};
use crate::model::{DeliveryState, MessageKind, OutboxMessage, RotationState};
use crate::store::Store;
use crate::store::tables::{AUDIT, SECRETS};
use crate::store::{DueTarget, LocalKey, StoreError, StoreStats};

const MARKER: &str = "MARKER-SECRET-7f3a9c1e5b2d4086";

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn secrets_are_sealed_at_rest_and_bound_to_their_rotation() {
    let (_dir, path) = temp_path();
    let store = open(&path);
    store
        .write(|tx| tx.put_secret("r1", &SecretString::from(MARKER)))
        .unwrap();
    drop(store);
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        !contains(&bytes, MARKER.as_bytes()),
        "plaintext secret in the file"
    );

    let store = open(&path);
    let s = store.secret("r1").unwrap().unwrap();
    assert_eq!(s.expose_secret(), MARKER);
    assert!(store.secret("r2").unwrap().is_none());

    // A sealed value copied to another rotation's row does not open.
    raw_write(&store, |txn| {
        let mut t = txn.open_table(SECRETS).unwrap();
        let sealed = t.get("r1").unwrap().unwrap().value().to_vec();
        t.insert("r2", sealed.as_slice()).unwrap();
    });
    let err = store.secret("r2").err().unwrap();
    assert!(matches!(err, StoreError::Unseal { .. }), "{err:?}");
    assert!(!err.to_string().contains(MARKER));
}

fn wipe_secret_removes_it(store: &Store) {
    store
        .write(|tx| tx.put_secret("r1", &SecretString::from(MARKER)))
        .unwrap();
    assert_eq!(store.stats().unwrap().secrets, 1);
    store.write(|tx| tx.wipe_secret("r1")).unwrap();
    assert!(store.secret("r1").unwrap().is_none());
    assert!(!store.has_secret("r1").unwrap());
    assert_eq!(store.stats().unwrap().secrets, 0);
    // Wiping twice is harmless.
    store.write(|tx| tx.wipe_secret("r1")).unwrap();
}

fn due_index_orders_keys_and_follows_moves(store: &Store) {
    assert!(store.next_due().unwrap().is_none());
    store
        .write(|tx| {
            tx.put_key(&key_rec("p/c", Some(t(300))))?;
            tx.put_key(&key_rec("p/a", Some(t(100))))?;
            tx.put_key(&key_rec("p/b", Some(t(200))))
        })
        .unwrap();
    let key = |s: &str| DueTarget::Key(s.into());
    assert_eq!(store.next_due().unwrap(), Some((t(100), key("p/a"))));
    assert_eq!(
        store.due_until(t(200)).unwrap(),
        vec![(t(100), key("p/a")), (t(200), key("p/b"))]
    );
    assert!(store.due_until(t(99)).unwrap().is_empty());
    assert_eq!(store.next_due_after(t(100)).unwrap(), Some(t(200)));
    assert_eq!(store.next_due_after(t(150)).unwrap(), Some(t(200)));
    assert_eq!(store.next_due_after(t(300)).unwrap(), None);

    // Moving p/a later removes its old entry.
    store
        .write(|tx| tx.put_key(&key_rec("p/a", Some(t(400)))))
        .unwrap();
    assert_eq!(store.next_due().unwrap(), Some((t(200), key("p/b"))));
    assert_eq!(
        store.due_until(t(1000)).unwrap(),
        vec![
            (t(200), key("p/b")),
            (t(300), key("p/c")),
            (t(400), key("p/a"))
        ]
    );

    // Unscheduling and deleting remove entries too.
    store.write(|tx| tx.put_key(&key_rec("p/b", None))).unwrap();
    assert!(store.write(|tx| tx.delete_key("p/c")).unwrap());
    assert!(!store.write(|tx| tx.delete_key("p/zz")).unwrap());
    assert_eq!(
        store.due_until(t(1000)).unwrap(),
        vec![(t(400), key("p/a"))]
    );
    assert!(store.key("p/c").unwrap().is_none());
}

fn sub_microsecond_due_is_never_reported_early(store: &Store) {
    let due = t(100) + jiff::SignedDuration::from_nanos(1);
    store
        .write(|tx| tx.put_key(&key_rec("p/a", Some(due))))
        .unwrap();
    assert!(store.due_until(t(100)).unwrap().is_empty());
    assert_eq!(store.due_until(due).unwrap().len(), 1);
    // Moving it away removes the rounded entry.
    store.write(|tx| tx.put_key(&key_rec("p/a", None))).unwrap();
    assert!(store.next_due().unwrap().is_none());
}

fn rotation_timers_follow_retry_and_overlap(store: &Store) {
    let rot = |s: &str| DueTarget::Rotation(s.into());
    let mut r = rot_rec("r1", "p/a", RotationState::Distributing);
    store.write(|tx| tx.put_rotation(&r)).unwrap();
    assert!(store.next_due().unwrap().is_none());

    r.retry_at = Some(t(50));
    store.write(|tx| tx.put_rotation(&r)).unwrap();
    assert_eq!(store.next_due().unwrap(), Some((t(50), rot("r1"))));

    r.transition(RotationState::Overlap, t(60), "distributed and verified");
    r.revoke_old_at = Some(t(5000));
    store.write(|tx| tx.put_rotation(&r)).unwrap();
    assert_eq!(
        store.due_until(t(10_000)).unwrap(),
        vec![(t(5000), rot("r1"))]
    );

    // A retry while in Overlap takes precedence over the revoke time.
    r.retry_at = Some(t(70));
    store.write(|tx| tx.put_rotation(&r)).unwrap();
    assert_eq!(
        store.due_until(t(10_000)).unwrap(),
        vec![(t(70), rot("r1"))]
    );

    r.transition(RotationState::Revoking, t(5000), "revoking");
    store.write(|tx| tx.put_rotation(&r)).unwrap();
    assert!(store.next_due().unwrap().is_none());
}

fn active_rotation_follows_the_key_record(store: &Store) {
    let mut k = key_rec("p/a", None);
    k.active_rotation = Some("r1".into());
    store.write(|tx| tx.put_key(&k)).unwrap();
    assert_eq!(store.active_rotation("p/a").unwrap().as_deref(), Some("r1"));
    k.active_rotation = None;
    store.write(|tx| tx.put_key(&k)).unwrap();
    assert!(store.active_rotation("p/a").unwrap().is_none());
    k.active_rotation = Some("r2".into());
    store.write(|tx| tx.put_key(&k)).unwrap();
    store.write(|tx| tx.delete_key("p/a")).unwrap();
    assert!(store.active_rotation("p/a").unwrap().is_none());
}

fn rotations_newest_first_per_slot_and_unfinished(store: &Store) {
    store
        .write(|tx| {
            tx.put_rotation(&rot_rec("01-r", "p/a", RotationState::Completed))?;
            tx.put_rotation(&rot_rec("02-r", "p/a2", RotationState::Pending))?;
            tx.put_rotation(&rot_rec("03-r", "p/a", RotationState::Failed))?;
            tx.put_rotation(&rot_rec("04-r", "p/b", RotationState::Overlap))?;
            tx.put_rotation(&rot_rec("05-r", "p/a", RotationState::Issuing))
        })
        .unwrap();
    let ids =
        |v: Vec<crate::model::RotationRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.rotations(Some("p/a"), 10).unwrap()),
        ["05-r", "03-r", "01-r"]
    );
    assert_eq!(
        ids(store.rotations(Some("p/a"), 2).unwrap()),
        ["05-r", "03-r"]
    );
    assert_eq!(ids(store.rotations(Some("p/a2"), 10).unwrap()), ["02-r"]);
    assert!(store.rotations(Some("p/"), 10).unwrap().is_empty());
    assert_eq!(ids(store.rotations(None, 2).unwrap()), ["05-r", "04-r"]);
    assert_eq!(
        ids(store.unfinished_rotations().unwrap()),
        ["02-r", "04-r", "05-r"]
    );
    assert_eq!(
        store.rotation("03-r").unwrap().unwrap().state,
        RotationState::Failed
    );
    assert!(store.rotation("nope").unwrap().is_none());
}

fn append(store: &crate::store::Store, n: u64) {
    store
        .write(|tx| {
            for i in 0..n {
                let detail = format!("entry {i}");
                tx.audit(
                    t(i as i64),
                    "test.event",
                    Some("p/a"),
                    None,
                    Some("alice"),
                    &detail,
                )?;
            }
            Ok(())
        })
        .unwrap();
}

fn audit_chain_verifies_and_pages(store: &Store) {
    assert_eq!(store.verify_audit_chain().unwrap(), 0);
    append(store, 2);
    append(store, 1);
    assert_eq!(store.verify_audit_chain().unwrap(), 3);
    let all = store.audit(0, 100).unwrap();
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(all[0].prev_hash, "");
    assert_eq!(all[1].prev_hash, all[0].hash);
    assert_eq!(all[2].prev_hash, all[1].hash);
    assert_eq!(all[2].detail, "entry 0");
    let page = store.audit(1, 1).unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].seq, 2);
    assert!(store.audit(u64::MAX, 10).unwrap().is_empty());
    assert_eq!(store.stats().unwrap().audit_entries, 3);
}

#[test]
fn audit_tampering_is_detected() {
    let (_dir, path) = temp_path();
    let store = open(&path);
    append(&store, 3);
    let entries = store.audit(0, 10).unwrap();

    // Altering an entry's detail (keeping its stored hash) breaks it.
    let mut forged = entries[1].clone();
    forged.detail = "nothing happened".into();
    raw_write(&store, |txn| {
        let mut t = txn.open_table(AUDIT).unwrap();
        t.insert(2, serde_json::to_vec(&forged).unwrap().as_slice())
            .unwrap();
    });
    assert!(matches!(
        store.verify_audit_chain(),
        Err(StoreError::AuditChainBroken { seq: 2 })
    ));

    // Recomputing the forged entry's hash breaks the next link instead.
    forged.hash = super::super::audit::entry_hash(&forged);
    raw_write(&store, |txn| {
        let mut t = txn.open_table(AUDIT).unwrap();
        t.insert(2, serde_json::to_vec(&forged).unwrap().as_slice())
            .unwrap();
    });
    assert!(matches!(
        store.verify_audit_chain(),
        Err(StoreError::AuditChainBroken { seq: 3 })
    ));

    // Restoring the original and dropping the last entry: truncation.
    raw_write(&store, |txn| {
        let mut t = txn.open_table(AUDIT).unwrap();
        t.insert(2, serde_json::to_vec(&entries[1]).unwrap().as_slice())
            .unwrap();
    });
    assert_eq!(store.verify_audit_chain().unwrap(), 3);
    raw_write(&store, |txn| {
        txn.open_table(AUDIT).unwrap().remove(3).unwrap();
    });
    assert!(matches!(
        store.verify_audit_chain(),
        Err(StoreError::AuditChainBroken { seq: 3 })
    ));
}

fn failed_closure_rolls_everything_back(store: &Store) {
    let err = store
        .write(|tx| {
            tx.put_key(&key_rec("p/a", Some(t(1))))?;
            tx.put_secret("r1", &SecretString::from(MARKER))?;
            tx.audit(t(1), "x", None, None, None, "")?;
            Err::<(), _>(StoreError::Other("caller gave up".into()))
        })
        .err()
        .unwrap();
    assert_eq!(err.to_string(), "caller gave up");
    assert!(store.key("p/a").unwrap().is_none());
    assert!(store.next_due().unwrap().is_none());
    assert!(store.secret("r1").unwrap().is_none());
    assert_eq!(store.verify_audit_chain().unwrap(), 0);
}

fn reads_inside_a_transaction_see_its_writes(store: &Store) {
    let seen = store
        .write(|tx| {
            tx.put_key(&key_rec("p/a", None))?;
            tx.put_rotation(&rot_rec("r1", "p/a", RotationState::Pending))?;
            Ok((
                tx.key("p/a")?.is_some(),
                tx.rotation("r1")?.map(|r| r.state),
            ))
        })
        .unwrap();
    assert_eq!(seen, (true, Some(RotationState::Pending)));
}

fn message(id: &str, state: DeliveryState) -> OutboxMessage {
    OutboxMessage {
        id: id.into(),
        kind: MessageKind::Test,
        to: vec!["ops@example.com".into()],
        subject: "s".into(),
        body: "b".into(),
        html: None,
        channel: crate::model::Channel::Mail,
        thread: None,
        state,
        attempts: 0,
        next_attempt_at: t(0),
        last_error: None,
        created_at: t(0),
    }
}

fn outbox_local_keys_and_stats(store: &Store) {
    let lk = LocalKey {
        id: "lk1".into(),
        name: "n".into(),
        scopes: vec!["read".into()],
        created_by: "keyrot".into(),
        created_at: t(0),
        expires_at: Some(t(100)),
        secret_sha256: "00".into(),
        tag: Some("r1".into()),
        revoked_at: None,
        last_used_at: None,
    };
    store
        .write(|tx| {
            tx.put_message(&message("m1", DeliveryState::Queued))?;
            tx.put_message(&message("m2", DeliveryState::Dead))?;
            tx.put_message(&message("m3", DeliveryState::Sent))?;
            tx.put_key(&key_rec("p/a", None))?;
            tx.put_rotation(&rot_rec("r1", "p/a", RotationState::Pending))?;
            tx.local_put(&lk)?;
            assert_eq!(tx.local_get("lk1")?.as_ref(), Some(&lk));
            assert_eq!(tx.local_all()?.len(), 1);
            assert_eq!(
                tx.message("m2")?.map(|m| m.state),
                Some(DeliveryState::Dead)
            );
            Ok(())
        })
        .unwrap();
    assert_eq!(store.outbox().unwrap().len(), 3);
    assert_eq!(store.local_keys().unwrap(), vec![lk.clone()]);
    assert_eq!(store.local_key("lk1").unwrap(), Some(lk));
    assert!(store.local_key("lk2").unwrap().is_none());
    assert_eq!(
        store.stats().unwrap(),
        StoreStats {
            keys: 1,
            rotations: 1,
            secrets: 0,
            outbox_queued: 1,
            outbox_dead: 1,
            audit_entries: 0,
        }
    );
    assert!(store.write(|tx| tx.delete_message("m3")).unwrap());
    assert_eq!(store.outbox().unwrap().len(), 2);
}

/// Entries at t(0)..t(4); a prune before t(2) deletes 1 and 2 and
/// anchors the chain at 2; 3, 4, 5 and 6 (audit.pruned) are left, 3
/// linked to the deleted 2.
fn an_audit_prune_anchors_the_chain(store: &Store) {
    append(store, 5);
    let second = store.audit(1, 1).unwrap().remove(0);
    assert_eq!(store.prune_audit(t(2), t(9), 500, &|| false).unwrap(), 2);
    assert_eq!(store.verify_audit_chain().unwrap(), 4);
    let left = store.audit(0, 10).unwrap();
    assert_eq!(left.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5, 6]);
    assert_eq!(left[0].prev_hash, second.hash);
    assert_eq!(left[3].event, "audit.pruned");
    assert_eq!(store.stats().unwrap().audit_entries, 4);
}

#[test]
fn tampering_after_an_audit_prune_is_still_detected() {
    let remove = |store: &crate::store::Store, seq: u64| {
        raw_write(store, |txn| {
            txn.open_table(AUDIT).unwrap().remove(seq).unwrap();
        });
    };
    let fresh = || {
        let (dir, path) = temp_path();
        let store = open(&path);
        an_audit_prune_anchors_the_chain(&store);
        (dir, store)
    };
    // The first kept entry removed: its successor no longer links to the
    // anchor.
    let (_dir, store) = fresh();
    remove(&store, 3);
    assert!(matches!(
        store.verify_audit_chain(),
        Err(StoreError::AuditChainBroken { seq: 3 })
    ));
    // The last one removed: the head says 6.
    let (_dir, store) = fresh();
    remove(&store, 6);
    assert!(matches!(
        store.verify_audit_chain(),
        Err(StoreError::AuditChainBroken { seq: 6 })
    ));
    // The anchor moved forward to hide entries: 3 no longer links to it.
    let (_dir, store) = fresh();
    let e4 = store.audit(3, 1).unwrap().remove(0);
    raw_write(&store, |txn| {
        let mut meta = txn.open_table(crate::store::tables::META).unwrap();
        let anchor = serde_json::to_vec(&(e4.seq, &e4.hash)).unwrap();
        meta.insert("audit_anchor", anchor.as_slice()).unwrap();
    });
    assert!(matches!(
        store.verify_audit_chain(),
        Err(StoreError::AuditChainBroken { seq: 5 })
    ));
}

on_both!(
    wipe_secret_removes_it,
    due_index_orders_keys_and_follows_moves,
    sub_microsecond_due_is_never_reported_early,
    rotation_timers_follow_retry_and_overlap,
    active_rotation_follows_the_key_record,
    rotations_newest_first_per_slot_and_unfinished,
    audit_chain_verifies_and_pages,
    failed_closure_rolls_everything_back,
    reads_inside_a_transaction_see_its_writes,
    outbox_local_keys_and_stats,
    an_audit_prune_anchors_the_chain,
);
