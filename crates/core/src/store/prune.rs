//! History retention (`[store] history_retention`): deleting what is old
//! enough to be history and no longer needed, in bounded batches, so that
//! the store does not grow without bound.
//!
//! What goes, once older than the cutoff:
//! - finished rotations (Completed, Aborted, or Failed and no longer its
//!   slot's active rotation), by the time they last changed, with their
//!   index entries, due entry and any sealed secret or envelope left;
//! - keys of the local provider's registry revoked before the cutoff;
//! - outbox messages sent or given up on (dead), by the time they were
//!   queued, except the ids the caller says must stay (an expiry notice
//!   that is still due: deleting it would queue it again).
//!
//! What always stays: a rotation that is not finished, that is its slot's
//! active rotation (a Failed one waits for an operator), its slot's latest
//! rotation, or its slot's latest Completed rotation (the last good
//! rotation of every key remains to be shown); queued messages; live
//! local keys and those an unfinished rotation names. The audit log has its
//! own retention (`[store] audit_retention`, [`Store::prune_audit`]): its
//! hash chain is cut only at its start, at an anchor `keyrot store verify`
//! checks from.
//!
//! Candidates are found in read snapshots (never blocking a writer) and
//! deleted in write transactions of at most `batch` rows each, each one
//! re-checking every rule: the state machine's writes interleave with a
//! prune, and a row it changed meanwhile is simply kept.
//!
//! This module owns the rules (the functions that say, from a record and
//! its slot's indexes, whether it may go) and the loop of scans and
//! batches, for both backends. Each backend scans and deletes its own way:
//! redb's in `prune/embedded.rs`, PostgreSQL's in `pg/prune.rs`.

mod embedded;

use std::collections::HashSet;

use jiff::{SignedDuration, Timestamp};

use super::tables::{decode, rotation_state, top_level_str};
use super::{Db, Store, StoreError, Tx};
use crate::model::{DeliveryState, OutboxMessage, RotationRecord, RotationState};

/// Rows one prune transaction deletes at most (the daemon's batch).
pub const PRUNE_BATCH: usize = 500;

/// What a prune deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    /// Finished rotations deleted.
    pub rotations: usize,
    /// Revoked local-provider keys deleted.
    pub local_keys: usize,
    /// Sent or dead outbox messages deleted.
    pub messages: usize,
    /// Audit entries deleted from the start of the chain
    /// ([`Store::prune_audit`]).
    pub audit_entries: usize,
    /// Write transactions used.
    pub transactions: usize,
}

impl PruneReport {
    /// Whether nothing was deleted.
    pub fn is_empty(&self) -> bool {
        self.rotations + self.local_keys + self.messages + self.audit_entries == 0
    }
}

/// The candidates of one scan and where the next scan starts (`None`: the
/// table is done).
pub(super) type Scan = (Vec<String>, Option<String>);

impl Store {
    /// Deletes the history older than `before` (see the module
    /// documentation), `batch` rows per write transaction, keeping the
    /// outbox messages named in `keep`. `stop` is asked between batches;
    /// when it says so, the prune ends early (the next one goes on).
    pub fn prune_history(
        &self,
        before: Timestamp,
        keep: &HashSet<String>,
        batch: usize,
        stop: &dyn Fn() -> bool,
    ) -> Result<PruneReport, StoreError> {
        let batch = batch.max(1);
        let mut report = PruneReport::default();
        report.rotations = self.prune_table(
            batch,
            stop,
            &mut report.transactions,
            |after| {
                if let Db::Postgres(pg) = &self.db {
                    return pg.scan_rotations(after, before, batch);
                }
                self.read(|txn| embedded::scan_rotations(txn, after, before, batch))
            },
            |tx, id| tx.prune_rotation(id, before),
        )?;
        let pinned = if let Db::Postgres(pg) = &self.db {
            pg.pinned_local_keys()?
        } else {
            self.read(embedded::pinned_local_keys)?
        };
        report.local_keys = self.prune_table(
            batch,
            stop,
            &mut report.transactions,
            |after| {
                if let Db::Postgres(pg) = &self.db {
                    return pg.scan_local_keys(after, before, batch, &pinned);
                }
                self.read(|txn| embedded::scan_local_keys(txn, after, before, batch, &pinned))
            },
            |tx, id| tx.prune_local_key(id, before, &pinned),
        )?;
        report.messages = self.prune_table(
            batch,
            stop,
            &mut report.transactions,
            |after| {
                if let Db::Postgres(pg) = &self.db {
                    return pg.scan_outbox(after, before, batch, keep);
                }
                self.read(|txn| embedded::scan_outbox(txn, after, before, batch, keep))
            },
            |tx, id| tx.prune_message(id, before, keep),
        )?;
        Ok(report)
    }

    /// Scans a table (each scan in a read snapshot, from the cursor the
    /// previous one returned) and deletes its candidates in write
    /// transactions of `batch` rows; returns the rows deleted.
    fn prune_table(
        &self,
        batch: usize,
        stop: &dyn Fn() -> bool,
        transactions: &mut usize,
        scan: impl Fn(Option<&str>) -> Result<Scan, StoreError>,
        delete: impl Fn(&mut Tx, &str) -> Result<bool, StoreError>,
    ) -> Result<usize, StoreError> {
        let mut deleted = 0;
        let mut cursor: Option<String> = None;
        let mut pending: Vec<String> = Vec::new();
        loop {
            if stop() {
                return Ok(deleted);
            }
            let done = if pending.len() < batch {
                let (found, next) = scan(cursor.as_deref())?;
                pending.extend(found);
                cursor = next;
                cursor.is_none()
            } else {
                false
            };
            while pending.len() >= batch || (done && !pending.is_empty()) {
                let take: Vec<String> = pending.drain(..pending.len().min(batch)).collect();
                deleted += self.write(|tx| {
                    let mut n = 0;
                    for id in &take {
                        n += usize::from(delete(tx, id)?);
                    }
                    Ok(n)
                })?;
                *transactions += 1;
                if stop() {
                    return Ok(deleted);
                }
            }
            if done {
                return Ok(deleted);
            }
        }
    }
}

impl Tx {
    /// Deletes outbox message `id` if it is still history (see
    /// [`prunable_message`]); returns whether it did. The same on both
    /// backends: it reads and deletes through the transaction's own
    /// operations.
    pub(super) fn prune_message(
        &mut self,
        id: &str,
        before: Timestamp,
        keep: &HashSet<String>,
    ) -> Result<bool, StoreError> {
        match self.message(id)? {
            Some(m) if prunable_message(&m, before, keep) => self.delete_message(id),
            _ => Ok(false),
        }
    }
}

/// The time a UUIDv7 rotation id was minted, if it is one.
fn minted(id: &str) -> Option<Timestamp> {
    let (secs, nanos) = uuid::Uuid::parse_str(id).ok()?.get_timestamp()?.to_unix();
    Timestamp::new(i64::try_from(secs).ok()?, i32::try_from(nanos).ok()?).ok()
}

/// Whether a scan of rotations in id order ends at `id`: rotation ids are
/// UUIDv7, minted when the rotation was created, so once ids are a day
/// past `before` nothing later can be old. Ids that are not UUIDv7 never
/// end it.
pub(super) fn past_horizon(id: &str, before: Timestamp) -> bool {
    let horizon = before + SignedDuration::from_hours(24);
    minted(id).is_some_and(|t| t > horizon)
}

/// A stored record's top-level instant `field`, read without decoding the
/// record; `None` when absent or null.
pub(super) fn instant(json: &[u8], field: &str) -> Option<Timestamp> {
    top_level_str(json, field)?.parse().ok()
}

/// A stored rotation's slot, last change and state, read without decoding
/// the whole record when its fields can be found directly.
pub(super) fn rotation_row(
    id: &str,
    json: &[u8],
) -> Result<(String, Timestamp, RotationState), StoreError> {
    let (slot, changed) = match (top_level_str(json, "slot"), instant(json, "updated_at")) {
        (Some(slot), Some(t)) => (slot.to_owned(), t),
        _ => {
            let rec: RotationRecord = decode("rotations", id, json)?;
            (rec.slot, rec.updated_at)
        }
    };
    Ok((slot, changed, rotation_state(id, json)?))
}

/// Whether rotation `id`, in `state`, must stay whatever its age: it is
/// not finished, or it is its slot's active rotation (`active`), its
/// latest (`latest`, from the slot's latest-rotation index) or its latest
/// Completed one. `completed_after` says whether a later rotation of the
/// slot is Completed; it is asked only when that decides.
pub(super) fn rotation_stays(
    id: &str,
    state: RotationState,
    active: Option<&str>,
    latest: Option<&str>,
    completed_after: impl FnOnce() -> Result<bool, StoreError>,
) -> Result<bool, StoreError> {
    if !state.is_terminal() || active == Some(id) {
        return Ok(true);
    }
    // Its slot's latest rotation, or an index that does not know the
    // slot: keep rather than guess.
    if latest.is_none_or(|latest| latest <= id) {
        return Ok(true);
    }
    if state != RotationState::Completed {
        return Ok(false);
    }
    // The latest Completed one, unless a later one completed.
    Ok(!completed_after()?)
}

/// The local keys a rotation that is unfinished or active names (its old
/// and new key): they are never pruned, whatever their age.
pub(super) fn pins(rec: RotationRecord) -> impl Iterator<Item = String> {
    rec.old_key_id.into_iter().chain(rec.new_key.map(|k| k.id))
}

/// Whether local key `id`, revoked at `revoked_at`, is history: revoked
/// before `before` and not pinned.
pub(super) fn prunable_local_key(
    id: &str,
    revoked_at: Option<Timestamp>,
    before: Timestamp,
    pinned: &HashSet<String>,
) -> bool {
    revoked_at.is_some_and(|t| t < before) && !pinned.contains(id)
}

/// Whether a message is history: delivered or given up on, queued before
/// `before`, and not one to keep.
pub(super) fn prunable_message(
    m: &OutboxMessage,
    before: Timestamp,
    keep: &HashSet<String>,
) -> bool {
    // A webhook's delivery of a kept event is kept with it (else an expiry
    // notice whose mail is kept would be queued again for the webhook).
    m.state != DeliveryState::Queued && m.created_at < before && !keep.contains(m.event_id())
}
