//! A prune while another thread writes, as the state machine's writes go
//! on between a prune's batches: on both backends, and on PostgreSQL with
//! a write between each scan and the batch that deletes what it found.
//! What was found as a candidate and changed before its batch is kept;
//! the audit chain, pruned and appended to at once, still verifies.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use super::prune::{day, ids, key, rotation};
use crate::model::{RotationRecord, RotationState};
use crate::store::{PruneReport, Store, StoreError};

/// One step of the writer racing a prune: rewrites rotation `id` (a new
/// one, old already, when `new`) as `f` leaves it and sets the slot's
/// active rotation to `active`, with an audit entry; fails when an
/// existing rotation is gone (a prune deleted what it must keep).
fn step(
    store: &Store,
    slot: &str,
    (id, new): (&str, bool),
    active: Option<&str>,
    f: impl FnOnce(&mut RotationRecord),
) {
    store
        .write(|tx| {
            let mut rec = match tx.rotation(id)? {
                Some(rec) if !new => rec,
                None if new => rotation(id, slot, RotationState::Pending, 10),
                Some(_) => {
                    let e = format!("rotation {id} exists already");
                    return Err(StoreError::Other(e));
                }
                None => {
                    let e = format!("rotation {id} was pruned while the writer needed it");
                    return Err(StoreError::Other(e));
                }
            };
            f(&mut rec);
            tx.put_rotation(&rec)?;
            tx.put_key(&key(slot, active))?;
            tx.audit(day(5), "test.step", Some(slot), Some(id), None, "")
        })
        .unwrap();
}

/// Rotations run on twenty slots while prunes run over and over, free
/// of each other. Every slot starts with eight old Completed rotations
/// (`…/a0` to `…/a7`) and an old Failed one, its latest (`…/b`);
/// everything is old (days 10 to 30, cutoff day 100), so only the rules
/// keep a rotation.
fn a_prune_racing_rotations_keeps_what_is_unfinished(store: &Store) {
    use RotationState::*;
    const SLOTS: usize = 20;
    let slots: Vec<String> = (0..SLOTS).map(|s| format!("p/s{s:02}")).collect();
    store
        .write(|tx| {
            for slot in &slots {
                tx.put_key(&key(slot, None))?;
                for n in 0..8 {
                    let id = format!("{slot}/a{n}");
                    tx.put_rotation(&rotation(&id, slot, Completed, 10 + n))?;
                }
                tx.put_rotation(&rotation(&format!("{slot}/b"), slot, Failed, 30))?;
                tx.audit(day(1), "test.setup", Some(slot), None, None, "")?;
            }
            Ok(())
        })
        .unwrap();
    let done = AtomicBool::new(false);
    let deleted = std::thread::scope(|scope| {
        // The writer: on even slots, the Failed rotation is resumed and
        // completes, then a new one starts and stays in Overlap; on odd
        // slots a new one starts, reaches Overlap, and completes on every
        // other one. Every step rewrites a rotation the prune must keep.
        let writer = scope.spawn(|| {
            for (s, slot) in slots.iter().enumerate() {
                let (b, c) = (format!("{slot}/b"), format!("{slot}/c"));
                if s.is_multiple_of(2) {
                    step(store, slot, (&b, false), Some(&b), |r| {
                        r.state = Distributing;
                    });
                    step(store, slot, (&b, false), None, |r| r.state = Completed);
                }
                step(store, slot, (&c, true), Some(&c), |r| r.state = Pending);
                step(store, slot, (&c, false), Some(&c), |r| {
                    r.state = Overlap;
                    r.revoke_old_at = Some(day(500));
                });
                if s % 4 == 3 {
                    step(store, slot, (&c, false), None, |r| {
                        r.state = Completed;
                        r.revoke_old_at = None;
                    });
                }
            }
            done.store(true, Ordering::SeqCst);
        });
        // The prune, in batches of three, over and over while it writes
        // (once at least).
        let mut deleted = PruneReport::default();
        loop {
            let r = store
                .prune_history(day(100), &HashSet::new(), 3, &|| false)
                .unwrap();
            deleted.rotations += r.rotations;
            deleted.audit_entries += store.prune_audit(day(100), day(100), 3, &|| false).unwrap();
            if done.load(Ordering::SeqCst) {
                break;
            }
        }
        writer.join().unwrap();
        deleted
    });
    // a0 to a6 of every slot went at the first pass, at least.
    assert!(deleted.rotations >= 7 * SLOTS, "{deleted:?}");
    assert!(deleted.audit_entries > 0, "{deleted:?}");
    store.verify_audit_chain().unwrap();
    let unfinished = |s: usize| s.is_multiple_of(2) || s % 4 == 1;
    let expected: Vec<String> = (0..SLOTS)
        .filter(|&s| unfinished(s))
        .map(|s| format!("{}/c", slots[s]))
        .collect();
    assert_eq!(ids(store.unfinished_rotations().unwrap()), expected);
    // A last prune, alone, leaves exactly what every slot needs: its
    // unfinished rotation and its latest Completed one.
    store
        .prune_history(day(100), &HashSet::new(), 3, &|| false)
        .unwrap();
    for (s, slot) in slots.iter().enumerate() {
        let kept = ids(store.rotations(Some(slot), 20).unwrap());
        let want: Vec<String> = match s % 4 {
            0 | 2 => vec![format!("{slot}/c"), format!("{slot}/b")],
            1 => vec![format!("{slot}/c"), format!("{slot}/a7")],
            _ => vec![format!("{slot}/c")],
        };
        assert_eq!(kept, want, "{slot}");
        let c = store.rotation(&format!("{slot}/c")).unwrap().unwrap();
        assert_eq!(c.state, if unfinished(s) { Overlap } else { Completed });
    }
    store.verify_audit_chain().unwrap();
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report:#?}");
}

/// On PostgreSQL, the writer takes a turn between every two batches of
/// the prune (its `stop` hands the turn over and waits for the write).
/// A scan there reads a page of `batch` rows, so candidates wait across
/// several scans, and turns, before their batch is full: writes land
/// between the scan that found a rotation and the batch that deletes it.
/// (On redb a scan reads on until it has a batch, which is deleted at
/// once.) On each slot in turn, the writer resumes the old Failed
/// rotations (not active, not latest: candidates) that are still there,
/// and a turn later requires each of them to be there still, unfinished,
/// before it completes them (they may go then).
#[test]
fn a_rotation_resumed_after_the_scan_is_kept_on_postgres() {
    use RotationState::*;
    let store = &super::open_pg();
    const SLOTS: usize = 12;
    let slots: Vec<String> = (0..SLOTS).map(|s| format!("p/s{s:02}")).collect();
    store
        .write(|tx| {
            for slot in &slots {
                tx.put_key(&key(slot, None))?;
                for n in 0..5 {
                    let id = format!("{slot}/f{n}");
                    tx.put_rotation(&rotation(&id, slot, Failed, 20))?;
                }
                tx.put_rotation(&rotation(&format!("{slot}/z"), slot, Completed, 30))?;
            }
            Ok(())
        })
        .unwrap();
    let (turn, take_turn) = mpsc::sync_channel::<()>(0);
    let (turn_done, wait_turn) = mpsc::sync_channel::<()>(0);
    let resumed = std::thread::scope(|scope| {
        let names = &slots;
        let writer = scope.spawn(move || {
            let mut all = Vec::new();
            let mut last: Vec<String> = Vec::new();
            for slot in names.iter().map(Some).chain([None]) {
                take_turn.recv().unwrap();
                last = store
                    .write(|tx| {
                        for id in &last {
                            let gone =
                                || StoreError::Other(format!("{id} pruned while unfinished"));
                            let mut r = tx.rotation(id)?.ok_or_else(gone)?;
                            assert_eq!(r.state, Distributing, "{id}");
                            r.state = Completed;
                            tx.put_rotation(&r)?;
                        }
                        let mut now = Vec::new();
                        for n in 0..5 {
                            let id = format!("{}/f{n}", slot.map_or("", String::as_str));
                            if let Some(mut r) = tx.rotation(&id)? {
                                r.state = Distributing;
                                tx.put_rotation(&r)?;
                                now.push(id);
                            }
                        }
                        tx.audit(
                            day(5),
                            "test.turn",
                            slot.map(String::as_str),
                            None,
                            None,
                            "",
                        )?;
                        Ok(now)
                    })
                    .unwrap();
                all.extend(last.iter().cloned());
                turn_done.send(()).unwrap();
            }
            all
        });
        let stop = || {
            if turn.send(()).is_ok() {
                let _ = wait_turn.recv();
            }
            false
        };
        while !writer.is_finished() {
            store
                .prune_history(day(100), &HashSet::new(), 7, &stop)
                .unwrap();
            store.prune_audit(day(100), day(100), 3, &stop).unwrap();
        }
        writer.join().unwrap()
    });
    assert!(!resumed.is_empty());
    // Alone at last, the prune leaves every slot its latest rotation.
    store
        .prune_history(day(100), &HashSet::new(), 7, &|| false)
        .unwrap();
    for slot in &slots {
        assert_eq!(
            ids(store.rotations(Some(slot), 20).unwrap()),
            [format!("{slot}/z")]
        );
    }
    store.verify_audit_chain().unwrap();
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report:#?}");
}

on_both!(a_prune_racing_rotations_keeps_what_is_unfinished);
