//! Tests of the read views against a real store in a temporary directory.

use std::collections::BTreeMap;
use std::path::Path;

use super::names::{edit_distance, or_list};
use super::*;
use keyrot_core::crypto::MasterKey;
use keyrot_core::model::{Initiator, KeyInfo, NewKey, RotationState, Trigger};

pub(crate) fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// A fresh store in `dir`.
pub(crate) fn store_in(dir: &Path) -> Store {
    Store::open(&dir.join("state.redb"), MasterKey::generate()).unwrap()
}

/// A key slot with a current key.
pub(crate) fn key_rec(provider: &str, name: &str, key: Option<KeyInfo>) -> KeyRecord {
    KeyRecord {
        slot: format!("{provider}/{name}"),
        provider: provider.into(),
        name: name.into(),
        current: key,
        policy: "standard".into(),
        next_due: None,
        due_reason: None,
        active_rotation: None,
        last_rotated_at: None,
        last_started_at: None,
        synced_at: None,
        sinks: vec!["out".into()],
        hooks: Vec::new(),
        scopes: Vec::new(),
        contacts: Vec::new(),
        group: None,
        ended: None,
        kept_secret: None,
    }
}

/// A provider key.
pub(crate) fn info(id: &str, scopes: &[&str], created: &str, expires: &str) -> KeyInfo {
    KeyInfo {
        id: id.into(),
        name: String::new(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        created_by: Some("alice".into()),
        created_at: Some(ts(created)),
        expires_at: Some(ts(expires)),
        last_used_at: Some(ts(created)),
        tags: BTreeMap::new(),
    }
}

/// A rotation of `slot` in `state`.
pub(crate) fn rotation_rec(id: &str, slot: &str, state: RotationState) -> RotationRecord {
    let at = ts("2026-11-01T10:00Z");
    RotationRecord {
        id: id.into(),
        slot: slot.into(),
        provider: slot.split('/').next().unwrap().into(),
        policy: "standard".into(),
        state,
        trigger: Trigger::Manual,
        reason: "test".into(),
        initiator: Initiator::default(),
        old_key_id: Some("old".into()),
        old_expires_at: None,
        requested_new_expiry: None,
        requested_old_expiry: None,
        scopes: Vec::new(),
        new_key: Some(NewKey {
            id: format!("new-{id}"),
            expires_at: None,
            secret_sha256: "ab".repeat(32),
            scopes: Vec::new(),
        }),
        sinks: vec!["out".into()],
        sink_results: BTreeMap::new(),
        hooks: Vec::new(),
        hook_results: BTreeMap::new(),
        revoke_old_at: None,
        old_revoked_at: None,
        old_lost_at: None,
        revoke_also: Vec::new(),
        throttled: 0,
        attempts: 0,
        retry_at: None,
        last_error: None,
        failed_in: None,
        notify_contacts: false,
        reveal_psk: None,
        created_at: at,
        updated_at: at,
        history: Vec::new(),
        old_last_use: None,
        old_last_use_checked_at: None,
        in_use_alerted_at: None,
    }
}

/// Writes keys and rotations in one transaction.
pub(crate) fn put(store: &Store, keys: &[KeyRecord], rots: &[RotationRecord]) {
    store
        .write(|tx| {
            for k in keys {
                tx.put_key(k)?;
            }
            for r in rots {
                tx.put_rotation(r)?;
            }
            Ok(())
        })
        .unwrap();
}

const NOW: &str = "2026-11-23T12:00Z";

#[test]
fn status_rows_have_flags_days_and_rotation_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let mut unscoped = info("k1", &[], "2026-01-01T00:00Z", "2026-12-10T00:00Z");
    unscoped.last_used_at = None;
    let fine = info(
        "k2",
        &["read", "write"],
        "2026-06-01T00:00Z",
        "2027-06-01T00:00Z",
    );
    let expired = info("k3", &["read"], "2025-01-01T00:00Z", "2026-11-23T11:00Z");
    let mut a = key_rec("p", "a-unscoped", Some(unscoped));
    a.next_due = Some(ts("2026-11-25T02:00Z"));
    a.due_reason = Some("lead time".into());
    let mut b = key_rec("p", "b-fine", Some(fine));
    b.active_rotation = Some("r2".into());
    let c = key_rec("p", "c-expired", Some(expired));
    let d = key_rec("q", "d-empty", None);
    let rots = [
        rotation_rec("r1", "p/b-fine", RotationState::Completed),
        rotation_rec("r2", "p/b-fine", RotationState::Distributing),
        rotation_rec("r3", "p/c-expired", RotationState::Failed),
        rotation_rec("r4", "p/c-expired", RotationState::Failed),
    ];
    put(&store, &[d, c, b, a], &rots);

    let st = status(&store, ts(NOW), false).unwrap();
    assert!(!st.live);
    let slots: Vec<&str> = st.keys.iter().map(|r| r.slot.as_str()).collect();
    assert_eq!(
        slots,
        ["p/a-unscoped", "p/b-fine", "p/c-expired", "q/d-empty"]
    );

    let a = &st.keys[0];
    assert_eq!(a.days_left, Some(16));
    assert_eq!(a.scopes, 0);
    assert_eq!(a.flags, ["unscoped", "never-used", "expiring-soon"]);
    assert_eq!(a.rotation_state, None);
    assert_eq!(a.next_rotation, Some(ts("2026-11-25T02:00Z")));
    assert_eq!(a.next_reason.as_deref(), Some("lead time"));
    assert_eq!(a.created_by.as_deref(), Some("alice"));

    let b = &st.keys[1];
    assert_eq!(b.scopes, 2);
    assert!(b.flags.is_empty(), "{:?}", b.flags);
    assert_eq!(b.rotation_state.as_deref(), Some("distributing"));
    assert_eq!(b.rotation_id.as_deref(), Some("r2"));

    let c = &st.keys[2];
    assert_eq!(c.days_left, Some(-1), "expired an hour ago");
    assert_eq!(c.flags, ["expired", "failed"]);
    assert_eq!(c.rotation_id.as_deref(), Some("r4"), "latest rotation");

    let d = &st.keys[3];
    assert_eq!(d.flags, ["no-key"]);
    assert_eq!((d.key_id.as_ref(), d.days_left), (None, None));

    assert_eq!(st.active_rotations, 1);
    assert_eq!(st.failed_rotations, 1);
    assert_eq!((st.outbox_queued, st.outbox_dead), (0, 0));
    assert_eq!(key_rows(&store, ts(NOW)).unwrap(), st.keys);
}

#[test]
fn keys_sharing_a_name_at_the_provider_are_flagged_with_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let tracked = info("k-new", &["a"], "2026-10-01T00:00Z", "2027-10-01T00:00Z");
    let a = key_rec("p", "a", Some(tracked));
    let b = key_rec("p", "b", None);
    put(&store, &[a.clone(), b], &[]);
    let old = info("k-old", &["a"], "2025-10-01T00:00Z", "2026-12-01T00:00Z");
    let older = info("k-older", &[], "2025-01-01T00:00Z", "2026-12-01T00:00Z");
    let dups: keyrot_core::model::Duplicates =
        [("p/a".to_string(), vec![old.clone(), older.clone()])].into();
    store.write(|tx| tx.set_duplicates("p", &dups)).unwrap();

    let rows = key_rows(&store, ts(NOW)).unwrap();
    assert_eq!(rows[0].flags, ["duplicate-name"]);
    assert_eq!(rows[0].duplicate_ids, ["k-old", "k-older"]);
    assert_eq!(rows[0].key_id.as_deref(), Some("k-new"));
    assert!(rows[1].duplicate_ids.is_empty());
    // The streamed rows and the typed row agree, JSON included.
    assert_eq!(rows[0], key_row(&a, None, &[old, older], ts(NOW)));
    let json: serde_json::Value =
        serde_json::from_slice(&key_rows_json(&store, ts(NOW)).unwrap()).unwrap();
    assert_eq!(
        json[0]["duplicate_ids"],
        serde_json::json!(["k-old", "k-older"])
    );
    assert_eq!(status(&store, ts(NOW), true).unwrap().keys, rows);

    // The next sync that finds none clears them.
    store
        .write(|tx| tx.set_duplicates("p", &Default::default()))
        .unwrap();
    let rows = key_rows(&store, ts(NOW)).unwrap();
    assert!(rows[0].flags.is_empty() && rows[0].duplicate_ids.is_empty());
    assert!(store.duplicates().unwrap().is_empty());
}

#[test]
fn resolve_key_by_slot_unique_name_and_near_matches() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    put(
        &store,
        &[
            key_rec("gh", "ci-bot", None),
            key_rec("gh", "deploy", None),
            key_rec("aws", "deploy", None),
            key_rec("aws", "billing", None),
        ],
        &[],
    );
    assert_eq!(resolve_key(&store, "gh/deploy").unwrap(), "gh/deploy");
    assert_eq!(resolve_key(&store, "ci-bot").unwrap(), "gh/ci-bot");

    let e = resolve_key(&store, "ci-bto").unwrap_err();
    assert_eq!(e.status, 404);
    assert_eq!(e.message, "unknown key \"ci-bto\"; did you mean ci-bot?");
    assert_eq!(e.suggestions, ["ci-bot"]);

    // An ambiguous name is offered by slot.
    let e = resolve_key(&store, "deplyo").unwrap_err();
    assert_eq!(e.suggestions, ["aws/deploy", "gh/deploy"]);
    assert!(e.message.contains("did you mean aws/deploy or gh/deploy?"));

    let e = resolve_key(&store, "deploy").unwrap_err();
    assert_eq!((e.status, e.field.as_deref()), (400, Some("key")));
    assert_eq!(e.suggestions, ["aws/deploy", "gh/deploy"]);

    let e = resolve_key(&store, "zzzzzzzzzz").unwrap_err();
    assert!(e.suggestions.is_empty());
    assert_eq!(
        e.message,
        "unknown key \"zzzzzzzzzz\" (keyrot keys lists them)"
    );

    // Slot-shaped input is compared with slots; substrings count.
    let e = resolve_key(&store, "aws/bill").unwrap_err();
    assert_eq!(e.suggestions, ["aws/billing"]);
    assert_eq!(
        key(&store, "aws/bill").unwrap_err().suggestions,
        ["aws/billing"]
    );
    assert_eq!(key(&store, "aws/billing").unwrap().name, "billing");
}

#[test]
fn history_is_newest_first_limited_and_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    put(
        &store,
        &[key_rec("p", "a", None), key_rec("p", "b", None)],
        &[
            rotation_rec("r1", "p/a", RotationState::Completed),
            rotation_rec("r2", "p/b", RotationState::Completed),
            rotation_rec("r3", "p/a", RotationState::Overlap),
        ],
    );
    let ids = |h: HistoryResponse| h.rotations.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(history(&store, None, 50).unwrap()), ["r3", "r2", "r1"]);
    assert_eq!(ids(history(&store, None, 2).unwrap()), ["r3", "r2"]);
    assert_eq!(ids(history(&store, Some("p/a"), 50).unwrap()), ["r3", "r1"]);
    let h = history(&store, None, 50).unwrap();
    assert!(
        h.rotations
            .iter()
            .all(|r| r.new_key.as_ref().unwrap().secret_sha256.is_empty())
    );
    let r = rotation(&store, "r2").unwrap();
    assert!(r.new_key.unwrap().secret_sha256.is_empty());
    assert_eq!(rotation(&store, "nope").unwrap_err().status, 404);
}

/// A config with policy `standard` (lead time 30d, daily window 02:00-04:00
/// UTC, 1h group stagger) and policy `manual` (auto_rotate off).
pub(crate) fn plan_config() -> Config {
    let text = r#"
[[provider]]
name = "p"
type = "local"

[[sink]]
name = "out"
type = "file"
path = "/tmp/keyrot-test/{name}"

[[policy]]
name = "standard"
rotate_before_expiry = "30d"
stagger = "1h"
jitter = false
[[policy.window]]
cron = "0 2 * * *"
duration = "2h"

[[policy]]
name = "manual"
rotate_before_expiry = "30d"
auto_rotate = false
"#;
    keyrot_config::load_str(Path::new("/etc/keyrot/keyrot.toml"), text).unwrap()
}

#[test]
fn plan_orders_rows_within_the_horizon_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let cfg = plan_config();
    let created = "2026-01-01T00:00Z";
    // Due 2026-12-01 (lead time): starts in the window of 12-01 02:00.
    let soon = key_rec(
        "p",
        "soon",
        Some(info("k1", &["r"], created, "2026-12-31T00:00Z")),
    );
    // Due 2026-11-26: earlier start.
    let sooner = key_rec(
        "p",
        "sooner",
        Some(info("k2", &["r"], created, "2026-12-26T00:00Z")),
    );
    // Due next year: beyond a 30-day horizon.
    let later = key_rec(
        "p",
        "later",
        Some(info("k3", &["r"], created, "2027-06-01T00:00Z")),
    );
    // Expires before the next window opens: emergency, starts now.
    let urgent = key_rec(
        "p",
        "urgent",
        Some(info("k4", &["r"], created, "2026-11-23T20:00Z")),
    );
    let mut manual = key_rec(
        "p",
        "manual",
        Some(info("k5", &["r"], created, "2026-12-01T00:00Z")),
    );
    manual.policy = "manual".into();
    let mut orphan = key_rec("p", "orphan", None);
    orphan.policy = "gone".into();
    let mut busy = key_rec(
        "p",
        "busy",
        Some(info("k6", &["r"], created, "2026-12-01T00:00Z")),
    );
    busy.active_rotation = Some("r1".into());
    put(
        &store,
        &[soon, sooner, later, urgent, manual, orphan, busy],
        &[],
    );

    let plan = plan(&store, &cfg, 30, ts(NOW)).unwrap();
    assert_eq!(plan.days, 30);
    let slots: Vec<&str> = plan.rows.iter().map(|r| r.slot.as_str()).collect();
    assert_eq!(
        slots,
        [
            "p/urgent", "p/sooner", "p/soon", "p/later", "p/busy", "p/manual", "p/orphan"
        ]
    );
    let urgent = &plan.rows[0];
    assert!(urgent.emergency);
    assert_eq!(urgent.start_at, Some(ts(NOW)));
    let sooner = &plan.rows[1];
    assert_eq!(sooner.start_at, Some(ts("2026-11-26T02:00Z")));
    assert_eq!(
        sooner.window,
        Some((ts("2026-11-26T02:00Z"), ts("2026-11-26T04:00Z")))
    );
    assert!(!sooner.emergency);
    assert!(plan.rows[4].explain.contains("rotation r1 is in progress"));
    assert_eq!(plan.rows[4].start_at, None);
    assert_eq!(plan.rows[5].start_at, None);
    assert_eq!(plan.rows[5].due_at, Some(ts("2026-11-01T00:00Z")));
    assert!(
        plan.rows[6]
            .explain
            .contains("policy \"gone\" is not in the configuration")
    );
}

#[test]
fn plan_staggers_keys_of_one_group() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let cfg = plan_config();
    let created = "2026-01-01T00:00Z";
    let mut a = key_rec(
        "p",
        "a",
        Some(info("k1", &["r"], created, "2026-12-26T00:00Z")),
    );
    a.group = Some("g".into());
    let mut b = key_rec(
        "p",
        "b",
        Some(info("k2", &["r"], created, "2027-12-26T00:00Z")),
    );
    b.group = Some("g".into());
    b.last_started_at = Some(ts("2026-11-26T02:30Z"));
    put(&store, &[a, b], &[]);
    let plan = plan(&store, &cfg, 30, ts(NOW)).unwrap();
    let a = plan.rows.iter().find(|r| r.slot == "p/a").unwrap();
    assert!(a.staggered);
    assert_eq!(a.start_at, Some(ts("2026-11-26T03:30Z")));
}

#[test]
fn edit_distance_and_lists() {
    assert_eq!(edit_distance("ci-bto", "ci-bot"), 2);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(or_list(&["a".into()]), "a");
    assert_eq!(or_list(&["a".into(), "b".into(), "c".into()]), "a, b or c");
}

#[test]
fn a_rotation_in_overlap_shows_the_old_keys_last_use_and_the_in_use_alert() {
    use keyrot_core::model::LastUse;
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let key = |name: &str, rot: &str| {
        let mut k = key_rec(
            "p",
            name,
            Some(info(
                "k-new",
                &["a"],
                "2026-11-01T00:00Z",
                "2027-11-01T00:00Z",
            )),
        );
        k.active_rotation = Some(rot.into());
        k
    };
    let overlap = |id: &str, slot: &str, last: Option<LastUse>| {
        let mut r = rotation_rec(id, slot, RotationState::Overlap);
        r.old_key_id = Some(format!("k-old-{id}"));
        r.old_last_use = last;
        r.old_last_use_checked_at = Some(ts("2026-11-23T11:30Z"));
        r
    };
    let mut used = overlap(
        "r1",
        "p/a-used",
        Some(LastUse::At {
            at: ts("2026-11-23T09:55Z"),
        }),
    );
    used.in_use_alerted_at = Some(ts("2026-11-23T11:45Z"));
    let never = overlap("r2", "p/b-never", Some(LastUse::Never));
    let unknown = overlap(
        "r3",
        "p/c-unknown",
        Some(LastUse::Unknown {
            why: "no lastActiveAt".into(),
        }),
    );
    let mut none = overlap("r4", "p/d-none", None);
    none.old_last_use_checked_at = None;
    let mut done = rotation_rec("r5", "p/e-done", RotationState::Completed);
    done.old_key_id = Some("k-gone".into());
    done.old_last_use = Some(LastUse::Never);
    let mut e = key("e-done", "r5");
    e.active_rotation = None;
    put(
        &store,
        &[
            key("a-used", "r1"),
            key("b-never", "r2"),
            key("c-unknown", "r3"),
            key("d-none", "r4"),
            e,
        ],
        &[used, never, unknown, none, done],
    );

    let st = status(&store, ts(NOW), false).unwrap();
    let old: Vec<Option<&crate::control::OldKeyRow>> =
        st.keys.iter().map(|k| k.old_key.as_ref()).collect();
    let a = old[0].unwrap();
    assert_eq!(a.key_id.as_deref(), Some("k-old-r1"));
    assert_eq!(a.summary, "last used 2h5m ago");
    assert_eq!(
        a.last_use,
        Some(LastUse::At {
            at: ts("2026-11-23T09:55Z")
        })
    );
    assert_eq!(a.checked_at, Some(ts("2026-11-23T11:30Z")));
    assert_eq!(a.in_use_alerted_at, Some(ts("2026-11-23T11:45Z")));
    assert_eq!(old[1].unwrap().summary, "never used");
    assert_eq!(old[1].unwrap().in_use_alerted_at, None);
    assert_eq!(
        old[2].unwrap().summary,
        "last use unknown (no lastActiveAt)"
    );
    assert_eq!(old[3].unwrap().summary, "last use unknown (not reported)");
    assert_eq!(old[3].unwrap().checked_at, None);
    assert!(old[4].is_none(), "a finished rotation shows no old key");

    // JSON: the fields, and none on rows without an overlap.
    let json: serde_json::Value =
        serde_json::from_slice(&key_rows_json(&store, ts(NOW)).unwrap()).unwrap();
    assert_eq!(
        json[0]["old_key"],
        serde_json::json!({
            "key_id": "k-old-r1",
            "last_use": {"kind": "at", "at": "2026-11-23T09:55:00Z"},
            "summary": "last used 2h5m ago",
            "checked_at": "2026-11-23T11:30:00Z",
            "in_use_alerted_at": "2026-11-23T11:45:00Z",
        })
    );
    assert_eq!(
        json[1]["old_key"]["last_use"],
        serde_json::json!({"kind": "never"})
    );
    assert!(json[4].get("old_key").is_none());
    // The typed row (metrics) agrees with the streamed one.
    let glance = keyrot_core::store::RotationGlance {
        id: "r1".into(),
        state: RotationState::Overlap,
        old_key: Some(keyrot_core::store::OldKeyGlance {
            key_id: Some("k-old-r1".into()),
            last_use: Some(LastUse::At {
                at: ts("2026-11-23T09:55Z"),
            }),
            checked_at: Some(ts("2026-11-23T11:30Z")),
            alerted_at: Some(ts("2026-11-23T11:45Z")),
        }),
    };
    assert_eq!(
        key_row(&key("a-used", "r1"), Some(&glance), &[], ts(NOW)),
        st.keys[0]
    );
}
