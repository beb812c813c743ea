//! The status view streamed from stored JSON: the same rows as from records.

use super::tests::{info, key_rec, put, rotation_rec, store_in, ts};
use super::*;
use keyrot_core::model::RotationState;

#[test]
fn streamed_rows_are_the_rows_of_the_decoded_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let now = ts("2026-11-23T10:00Z");
    let mut soon = key_rec(
        "p",
        "soon",
        Some(info("k1", &[], "2026-01-01T00:00Z", "2026-12-01T00:00Z")),
    );
    soon.current.as_mut().unwrap().last_used_at = None;
    soon.next_due = Some(ts("2026-11-24T02:00Z"));
    soon.due_reason = Some("due \"now\"\\soon\u{e9}".into());
    let mut failed = key_rec(
        "p",
        "failed",
        Some(info(
            "k2",
            &["a", "b"],
            "2025-01-01T00:00Z",
            "2026-11-01T00:00Z",
        )),
    );
    failed.active_rotation = Some("r2".into());
    let done = key_rec(
        "q",
        "na\"me\\x",
        Some(info("k3", &["a"], "2026-01-01T00:00Z", "2027-06-01T00:00Z")),
    );
    let empty = key_rec("q", "empty", None);
    put(
        &store,
        &[soon, failed, done, empty],
        &[
            rotation_rec("r1", "p/failed", RotationState::Completed),
            rotation_rec("r2", "p/failed", RotationState::Failed),
            rotation_rec("r3", "q/na\"me\\x", RotationState::Completed),
            rotation_rec("r4", "q/na\"me\\x", RotationState::Aborted),
        ],
    );
    let typed: Vec<KeyRow> = store
        .keys_with_rotations()
        .unwrap()
        .iter()
        .map(|(k, r)| key_row(k, r.as_ref(), &[], now))
        .collect();
    let streamed = key_rows(&store, now).unwrap();
    assert_eq!(streamed, typed);
    assert_eq!(streamed.len(), 4);
    let failed = streamed.iter().find(|r| r.slot == "p/failed").unwrap();
    assert_eq!(failed.rotation_id.as_deref(), Some("r2"));
    assert_eq!(failed.flags, ["expired", "failed"]);
    let done = streamed.iter().find(|r| r.name == "na\"me\\x").unwrap();
    assert_eq!(done.rotation_state.as_deref(), Some("aborted"));
    let st = status(&store, now, true).unwrap();
    assert_eq!(st.keys, typed);
    assert_eq!((st.active_rotations, st.failed_rotations), (0, 1));
}
