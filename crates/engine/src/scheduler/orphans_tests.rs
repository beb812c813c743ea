//! The orphan rule of `orphans::detect`, key by key.

use std::collections::HashMap;

use jiff::Timestamp;

use super::*;
use keyrot_core::model::{KeyInfo, NewKey, RotationRecord, RotationState, Trigger};

fn key(id: &str, tag: Option<&str>) -> KeyInfo {
    KeyInfo {
        id: id.into(),
        name: "ci".into(),
        scopes: Vec::new(),
        created_by: None,
        created_at: None,
        expires_at: None,
        last_used_at: None,
        tags: tag
            .map(|t| [("keyrot-rotation".to_string(), t.to_string())].into())
            .unwrap_or_default(),
    }
}

fn rotation(id: &str, state: RotationState, old: &str, new: Option<&str>) -> RotationRecord {
    RotationRecord {
        in_use_alerted_at: None,
        old_last_use: None,
        old_last_use_checked_at: None,
        hooks: Vec::new(),
        hook_results: Default::default(),
        id: id.into(),
        slot: "p/ci".into(),
        provider: "p".into(),
        policy: "std".into(),
        state,
        trigger: Trigger::Manual,
        reason: String::new(),
        initiator: Default::default(),
        old_key_id: Some(old.into()),
        old_expires_at: None,
        requested_new_expiry: None,
        requested_old_expiry: None,
        scopes: Vec::new(),
        new_key: new.map(|n| NewKey {
            id: n.into(),
            expires_at: None,
            secret_sha256: String::new(),
            scopes: Vec::new(),
        }),
        sinks: Vec::new(),
        sink_results: Default::default(),
        revoke_old_at: None,
        old_revoked_at: None,
        old_lost_at: None,
        revoke_also: vec!["also".into()],
        attempts: 0,
        throttled: 0,
        retry_at: None,
        last_error: None,
        failed_in: None,
        notify_contacts: false,
        reveal_psk: None,
        created_at: Timestamp::UNIX_EPOCH,
        updated_at: Timestamp::UNIX_EPOCH,
        history: Vec::new(),
    }
}

fn slot(current: &str, active: Option<&str>) -> KeyRecord {
    KeyRecord {
        hooks: Vec::new(),
        slot: "p/ci".into(),
        provider: "p".into(),
        name: "ci".into(),
        current: Some(key(current, Some("done"))),
        policy: "std".into(),
        next_due: None,
        due_reason: None,
        active_rotation: active.map(Into::into),
        last_rotated_at: None,
        last_started_at: None,
        synced_at: None,
        sinks: Vec::new(),
        scopes: Vec::new(),
        contacts: Vec::new(),
        group: None,
        ended: None,
        kept_secret: None,
    }
}

#[test]
fn only_tagged_keys_keyrot_owns_in_no_way_are_orphans() {
    let now = Timestamp::UNIX_EPOCH;
    let rotations: HashMap<String, RotationRecord> = [
        rotation("live", RotationState::Overlap, "old", Some("new")),
        rotation("failed", RotationState::Failed, "cur", Some("failed-new")),
        rotation("done", RotationState::Completed, "older", Some("cur")),
        rotation(
            "aborted",
            RotationState::Aborted,
            "cur",
            Some("aborted-new"),
        ),
    ]
    .into_iter()
    .map(|r| (r.id.clone(), r))
    .collect();
    let keys = [slot("cur", Some("live"))];
    let shield = Shield::of(&keys, "p", |id| Ok(rotations.get(id).cloned())).unwrap();
    let listed = [
        key("cur", Some("done")),            // the slot's key
        key("old", Some("older")),           // an overlap's old key
        key("new", Some("live")),            // an overlap's new key
        key("also", Some("x")),              // revoked with the old key
        key("inflight", Some("failed")),     // a key of an unfinished rotation's tag
        key("by-hand", None),                // not keyrot's
        key("restored", Some("unknown")),    // tag of a rotation the store never saw
        key("aborted-new", Some("aborted")), // an aborted rotation's leftover
    ];
    let found = detect(
        "p",
        &listed,
        &shield,
        &[],
        |id| Ok(rotations.get(id).map(|r| r.state)),
        now,
    )
    .unwrap();
    let ids: Vec<&str> = found.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["aborted-new", "restored"]);
    assert_eq!(found[1].rotation, "unknown");

    // Another provider's slots protect nothing here.
    let other = Shield::of(&keys, "q", |id| Ok(rotations.get(id).cloned())).unwrap();
    let found = detect("p", &listed[..1], &other, &[], |_| Ok(None), now).unwrap();
    assert_eq!(found.len(), 1);
}

#[test]
fn an_orphan_keeps_when_it_was_first_found_and_the_shield_before_the_listing_counts() {
    let t0 = Timestamp::UNIX_EPOCH;
    let t1 = t0 + jiff::SignedDuration::from_hours(1);
    let listed = [key("k", Some("gone"))];
    let first = detect("p", &listed, &Shield::default(), &[], |_| Ok(None), t0).unwrap();
    let again = detect("p", &listed, &Shield::default(), &first, |_| Ok(None), t1).unwrap();
    assert_eq!(again[0].found_at, t0);
    assert_eq!(again[0].seen_at, t1);
    // The key was the current key of a slot when the sync began.
    let keys = [slot("k", None)];
    let before = Shield::of(&keys, "p", |_| Ok(None)).unwrap();
    let shield = Shield::default().merged(&before);
    assert!(
        detect("p", &listed, &shield, &[], |_| Ok(None), t1)
            .unwrap()
            .is_empty()
    );
}
