//! History and audit retention on both backends, with instants chosen by
//! the test (no clock is read, but for UUIDv7 ids).

use std::collections::HashSet;

use jiff::Timestamp;
use secrecy::SecretString;

use crate::clock::Clock as _;
use crate::model::{KeyRecord, OutboxMessage, RotationRecord, RotationState};
use crate::store::{LocalKey, PRUNE_BATCH, PruneReport, Store};

/// An instant `days` days after 2026-01-01.
pub(super) fn day(days: i64) -> Timestamp {
    Timestamp::from_second(1_767_225_600 + days * 86_400).unwrap()
}

pub(super) fn key(slot: &str, active: Option<&str>) -> KeyRecord {
    serde_json::from_value(serde_json::json!({
        "slot": slot, "provider": "p", "name": slot, "current": null,
        "policy": "std", "next_due": null, "active_rotation": active,
    }))
    .unwrap()
}

/// A rotation of `slot` in `state`, last changed on `changed` (ids sort
/// in creation order, like the UUIDv7 ids keyrot mints).
pub(super) fn rotation(id: &str, slot: &str, state: RotationState, changed: i64) -> RotationRecord {
    serde_json::from_value(serde_json::json!({
        "id": id, "slot": slot, "provider": "p", "policy": "std", "state": state,
        "trigger": "schedule", "reason": "due", "initiator": {},
        "old_key_id": format!("old-{id}"), "old_expires_at": null,
        "requested_new_expiry": null, "requested_old_expiry": null, "scopes": [],
        "new_key": null, "sinks": [], "sink_results": {}, "revoke_old_at": null,
        "old_revoked_at": null, "attempts": 0, "retry_at": null, "last_error": null,
        "failed_in": null, "notify_contacts": false, "reveal_psk": null,
        "created_at": day(changed), "updated_at": day(changed), "history": [],
    }))
    .unwrap()
}

fn message(id: &str, state: &str, queued: i64) -> OutboxMessage {
    serde_json::from_value(serde_json::json!({
        "id": id, "kind": "test", "to": ["ops@example.com"], "subject": "s", "body": "b",
        "state": state, "attempts": 1, "next_attempt_at": day(queued), "last_error": null,
        "created_at": day(queued),
    }))
    .unwrap()
}

fn local(id: &str, revoked: Option<i64>) -> LocalKey {
    LocalKey {
        id: id.into(),
        name: "k".into(),
        scopes: vec![],
        created_by: "keyrot".into(),
        created_at: day(0),
        expires_at: Some(day(900)),
        secret_sha256: String::new(),
        tag: None,
        revoked_at: revoked.map(day),
        last_used_at: None,
    }
}

/// Slots and history around a cutoff at day 100 (see each comment).
fn populate(store: &Store) {
    use RotationState::*;
    store
        .write(|tx| {
            // p/a: three old finished rotations, then a recent one.
            tx.put_key(&key("p/a", None))?;
            tx.put_rotation(&rotation("r01", "p/a", Completed, 10))?;
            tx.put_rotation(&rotation("r02", "p/a", Aborted, 20))?;
            tx.put_rotation(&rotation("r03", "p/a", Completed, 30))?;
            tx.put_rotation(&rotation("r04", "p/a", Completed, 150))?;
            tx.put_secret("r01#psk", &SecretString::from("an envelope left behind"))?;
            // p/b: an old Completed one, then an old Failed one still active.
            tx.put_key(&key("p/b", Some("r06")))?;
            tx.put_rotation(&rotation("r05", "p/b", Completed, 10))?;
            tx.put_rotation(&rotation("r06", "p/b", Failed, 20))?;
            // p/c: old Completed, then old Aborted (the latest).
            tx.put_key(&key("p/c", None))?;
            tx.put_rotation(&rotation("r07", "p/c", Completed, 10))?;
            tx.put_rotation(&rotation("r08", "p/c", Aborted, 20))?;
            // p/d: an old rotation that is not finished.
            tx.put_key(&key("p/d", Some("r09")))?;
            tx.put_rotation(&rotation("r09", "p/d", Overlap, 10))?;
            // p/e: a slot dropped from the config; its history stays.
            tx.put_rotation(&rotation("r10", "p/e", Completed, 10))?;
            tx.put_rotation(&rotation("r11", "p/e", Completed, 20))?;
            for (i, id) in ["r01", "r04", "r06"].iter().enumerate() {
                tx.audit(
                    day(i as i64),
                    "rotation.completed",
                    None,
                    Some(id),
                    None,
                    "",
                )?;
            }
            tx.put_message(&message("sent-old", "sent", 10))?;
            tx.put_message(&message("sent-old-kept", "sent", 10))?;
            tx.put_message(&message("dead-old", "dead", 10))?;
            tx.put_message(&message("queued-old", "queued", 10))?;
            tx.put_message(&message("sent-new", "sent", 150))?;
            tx.local_put(&local("revoked-old", Some(10)))?;
            tx.local_put(&local("revoked-new", Some(150)))?;
            tx.local_put(&local("live", None))?;
            // Named by the Failed rotation still active on p/b.
            tx.local_put(&local("old-r06", Some(10)))?;
            Ok(())
        })
        .unwrap();
}

pub(super) fn ids(rots: Vec<RotationRecord>) -> Vec<String> {
    rots.into_iter().map(|r| r.id).collect()
}

fn prune(store: &Store, batch: usize) -> PruneReport {
    let keep: HashSet<String> = ["sent-old-kept".to_string()].into();
    store
        .prune_history(day(100), &keep, batch, &|| false)
        .unwrap()
}

fn old_history_goes_and_what_a_slot_needs_stays(store: &Store) {
    populate(store);
    let report = prune(store, PRUNE_BATCH);
    assert_eq!(
        report,
        PruneReport {
            rotations: 4,
            local_keys: 1,
            messages: 2,
            audit_entries: 0,
            transactions: 3,
        }
    );
    // Old and superseded: r01, r02, r03, r10. Kept: the recent r04; r05,
    // the latest Completed of p/b; r06, active; r07 and r08, the latest
    // Completed and the latest of p/c; r09, unfinished; r11, latest of p/e.
    assert_eq!(ids(store.rotations(Some("p/a"), 10).unwrap()), ["r04"]);
    assert_eq!(
        ids(store.rotations(Some("p/b"), 10).unwrap()),
        ["r06", "r05"]
    );
    assert_eq!(
        ids(store.rotations(Some("p/c"), 10).unwrap()),
        ["r08", "r07"]
    );
    assert_eq!(ids(store.rotations(Some("p/d"), 10).unwrap()), ["r09"]);
    assert_eq!(ids(store.rotations(Some("p/e"), 10).unwrap()), ["r11"]);
    assert!(!store.has_secret("r01#psk").unwrap());
    let outbox: Vec<String> = store.outbox().unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(outbox, ["queued-old", "sent-new", "sent-old-kept"]);
    let local: Vec<String> = store
        .local_keys()
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(local, ["live", "old-r06", "revoked-new"]);
    // The audit log is whole, and nothing points at what went.
    assert_eq!(store.verify_audit_chain().unwrap(), 3);
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report:#?}");
    // The unfinished rotation is still found for a restart.
    assert_eq!(ids(store.unfinished_rotations().unwrap()), ["r09"]);
    // A second prune finds nothing.
    assert!(prune(store, PRUNE_BATCH).is_empty());
}

fn batches_bound_each_transaction(store: &Store) {
    populate(store);
    let report = prune(store, 1);
    assert_eq!(
        (report.rotations, report.local_keys, report.messages),
        (4, 1, 2)
    );
    assert_eq!(report.transactions, 7, "one row per transaction");
}

fn a_requested_stop_ends_the_prune_early(store: &Store) {
    populate(store);
    let report = store
        .prune_history(day(100), &HashSet::new(), 1, &|| true)
        .unwrap();
    assert!(report.is_empty());
    assert_eq!(store.rotations(Some("p/a"), 10).unwrap().len(), 4);
}

fn nothing_is_old_before_the_cutoff_reaches_it(store: &Store) {
    populate(store);
    let report = store
        .prune_history(day(5), &HashSet::new(), PRUNE_BATCH, &|| false)
        .unwrap();
    assert!(report.is_empty(), "{report:?}");
}

fn uuid_ids_past_the_cutoff_end_the_scan(store: &Store) {
    // Rotations minted (UUIDv7) long after the cutoff are not read: a
    // prune of a store whose history is all recent costs nothing.
    // UUIDv7 ids are minted from the wall clock: so is `now` here.
    let now = crate::clock::SystemClock.now();
    let id = uuid::Uuid::now_v7().to_string();
    let mut old = rotation(&id, "p/x", RotationState::Completed, 0);
    old.updated_at = day(0);
    let newer = uuid::Uuid::now_v7().to_string();
    store
        .write(|tx| {
            tx.put_rotation(&old)?;
            tx.put_rotation(&rotation(&newer, "p/x", RotationState::Completed, 0))
        })
        .unwrap();
    // Both were minted now, a year after this cutoff: the scan stops at
    // the first id, although its record claims an old change.
    let report = store
        .prune_history(
            now - jiff::SignedDuration::from_hours(24 * 365),
            &HashSet::new(),
            PRUNE_BATCH,
            &|| false,
        )
        .unwrap();
    assert!(report.is_empty());
    // With the cutoff now, the older one goes (the newer is the latest).
    let report = store
        .prune_history(
            now + jiff::SignedDuration::from_hours(1),
            &HashSet::new(),
            PRUNE_BATCH,
            &|| false,
        )
        .unwrap();
    assert_eq!(report.rotations, 1);
    assert_eq!(ids(store.rotations(Some("p/x"), 10).unwrap()), [newer]);
}

/// Appends one audit entry per day `days` (in order).
fn audit_days(store: &Store, days: &[i64]) {
    for &d in days {
        store
            .write(|tx| {
                tx.audit(
                    day(d),
                    "test.event",
                    Some("p/a"),
                    None,
                    None,
                    &format!("day {d}"),
                )
            })
            .unwrap();
    }
}

fn audit_entries_go_from_the_start_of_the_chain_and_it_still_verifies(store: &Store) {
    audit_days(store, &[1, 2, 3, 4, 50, 6, 7]);
    assert_eq!(store.verify_audit_chain().unwrap(), 7);
    // Cutoff day 10, batches of 2: entries 1-4 go; entry 5 (day 50) stops
    // the prune, so 6 and 7, older, stay (the chain is cut at its start
    // only).
    let deleted = store.prune_audit(day(10), day(60), 2, &|| false).unwrap();
    assert_eq!(deleted, 4);
    let left = store.audit(0, 100).unwrap();
    let seqs: Vec<u64> = left.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [5, 6, 7, 8]);
    let last = left.last().unwrap();
    assert_eq!(last.event, "audit.pruned");
    assert_eq!(last.at, day(60));
    assert!(
        last.detail.starts_with("4 entries recorded before"),
        "{}",
        last.detail
    );
    assert!(
        last.detail.ends_with("starts after entry 4"),
        "{}",
        last.detail
    );
    assert_eq!(store.verify_audit_chain().unwrap(), 4);
    // Appending goes on from the head; nothing more is old enough.
    audit_days(store, &[70]);
    assert_eq!(
        store.prune_audit(day(10), day(71), 2, &|| false).unwrap(),
        0
    );
    assert_eq!(store.verify_audit_chain().unwrap(), 5);
}

fn the_last_audit_entry_is_never_pruned(store: &Store) {
    audit_days(store, &[1, 2, 3]);
    let deleted = store
        .prune_audit(day(100), day(100), PRUNE_BATCH, &|| false)
        .unwrap();
    assert_eq!(deleted, 2);
    let seqs: Vec<u64> = store.audit(0, 10).unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [3, 4]);
    assert_eq!(store.verify_audit_chain().unwrap(), 2);
}

fn an_empty_audit_log_has_nothing_to_prune(empty: &Store) {
    assert_eq!(
        empty
            .prune_audit(day(100), day(100), 10, &|| false)
            .unwrap(),
        0
    );
    assert_eq!(empty.verify_audit_chain().unwrap(), 0);
}

on_both!(
    old_history_goes_and_what_a_slot_needs_stays,
    batches_bound_each_transaction,
    a_requested_stop_ends_the_prune_early,
    nothing_is_old_before_the_cutoff_reaches_it,
    uuid_ids_past_the_cutoff_end_the_scan,
    audit_entries_go_from_the_start_of_the_chain_and_it_still_verifies,
    the_last_audit_entry_is_never_pruned,
    an_empty_audit_log_has_nothing_to_prune,
);
