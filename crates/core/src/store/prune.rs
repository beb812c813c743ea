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

use std::collections::HashSet;

use jiff::{SignedDuration, Timestamp};
use redb::{ReadTransaction, ReadableTable};

use super::error::backend;
use super::tables::{
    ACTIVE, DUE, KEY_ROTATIONS, LATEST, LOCAL_KEYS, OUTBOX, ROTATIONS, SECRETS, decode, due_micros,
    get_json, rotation_state, rotation_timer, target_key, top_level_str,
};
use super::tx::RedbTx;
use super::{DueTarget, LocalKey, Store, StoreError, Tx};
use crate::model::{DeliveryState, OutboxMessage, RotationRecord, RotationState};

/// Rows one prune transaction deletes at most (the daemon's batch).
pub const PRUNE_BATCH: usize = 500;

/// Rows one read snapshot examines at most before the scan resumes in a
/// new one (a snapshot pins the pages it sees).
const SCAN_LIMIT: usize = 20_000;

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
type Scan = (Vec<String>, Option<String>);

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
        if self.is_postgres() {
            return Err(pg_prune());
        }
        let batch = batch.max(1);
        let mut report = PruneReport::default();
        report.rotations = self.prune_table(
            batch,
            stop,
            &mut report.transactions,
            |txn, after| scan_rotations(txn, after, before, batch),
            |tx, id| tx.redb_only("pruning history")?.prune_rotation(id, before),
        )?;
        let pinned = self.read(pinned_local_keys)?;
        report.local_keys = self.prune_table(
            batch,
            stop,
            &mut report.transactions,
            |txn, after| scan_local_keys(txn, after, before, batch, &pinned),
            |tx, id| {
                tx.redb_only("pruning history")?
                    .prune_local_key(id, before, &pinned)
            },
        )?;
        report.messages = self.prune_table(
            batch,
            stop,
            &mut report.transactions,
            |txn, after| scan_outbox(txn, after, before, batch, keep),
            |tx, id| {
                tx.redb_only("pruning history")?
                    .prune_message(id, before, keep)
            },
        )?;
        Ok(report)
    }

    /// Scans a table in read snapshots and deletes its candidates in
    /// write transactions; returns the rows deleted.
    fn prune_table(
        &self,
        batch: usize,
        stop: &dyn Fn() -> bool,
        transactions: &mut usize,
        scan: impl Fn(&ReadTransaction, Option<&str>) -> Result<Scan, StoreError>,
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
                let (found, next) = self.read(|txn| scan(txn, cursor.as_deref()))?;
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

/// What a prune on PostgreSQL answers: it is not built yet, and the
/// configuration refuses a retention on that backend.
pub(super) fn pg_prune() -> StoreError {
    StoreError::Other(
        "pruning history is not available on PostgreSQL yet: set [store] history_retention and \
         audit_retention to \"forever\""
            .into(),
    )
}

/// The rows of a `&str`-keyed table after `after` (all when `None`).
macro_rules! rows_after {
    ($table:expr, $after:expr, $op:expr) => {
        match $after {
            Some(a) => {
                $table.range::<&str>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
            }
            None => $table.range::<&str>(..),
        }
        .map_err(backend($op))?
    };
}

/// The time a UUIDv7 rotation id was minted, if it is one.
fn minted(id: &str) -> Option<Timestamp> {
    let (secs, nanos) = uuid::Uuid::parse_str(id).ok()?.get_timestamp()?.to_unix();
    Timestamp::new(i64::try_from(secs).ok()?, i32::try_from(nanos).ok()?).ok()
}

/// A stored record's top-level instant `field`, read without decoding the
/// record; `None` when absent or null.
fn instant(json: &[u8], field: &str) -> Option<Timestamp> {
    top_level_str(json, field)?.parse().ok()
}

/// Finished rotations that last changed before `before`, after `after`,
/// in id order. Rotation ids are UUIDv7, minted when the rotation was
/// created: once ids are a day past `before`, nothing later can be old,
/// and the scan ends.
fn scan_rotations(
    txn: &ReadTransaction,
    after: Option<&str>,
    before: Timestamp,
    batch: usize,
) -> Result<Scan, StoreError> {
    let rots = txn
        .open_table(ROTATIONS)
        .map_err(backend("opening rotations"))?;
    let tables = Guards {
        active: txn.open_table(ACTIVE).map_err(backend("opening active"))?,
        latest: txn
            .open_table(LATEST)
            .map_err(backend("opening latest_rotation"))?,
        by_slot: txn
            .open_table(KEY_ROTATIONS)
            .map_err(backend("opening key_rotations"))?,
    };
    let horizon = before + SignedDuration::from_hours(24);
    let mut found = Vec::new();
    for (examined, item) in rows_after!(rots, after, "scanning rotations").enumerate() {
        let (k, v) = item.map_err(backend("scanning rotations"))?;
        let id = k.value();
        if minted(id).is_some_and(|t| t > horizon) {
            return Ok((found, None));
        }
        let json = v.value();
        let (changed, slot) = match (instant(json, "updated_at"), top_level_str(json, "slot")) {
            (Some(t), Some(slot)) => (t, slot.to_owned()),
            _ => {
                let rec: RotationRecord = decode("rotations", id, json)?;
                (rec.updated_at, rec.slot)
            }
        };
        let state = rotation_state(id, json)?;
        if changed < before && !tables.keep(&rots, &slot, id, state)? {
            found.push(id.to_owned());
        }
        if found.len() >= batch || examined + 1 >= SCAN_LIMIT {
            return Ok((found, Some(id.to_owned())));
        }
    }
    Ok((found, None))
}

/// Local keys named by an unfinished or active rotation (its old or new
/// key): never pruned, whatever their age.
fn pinned_local_keys(txn: &ReadTransaction) -> Result<HashSet<String>, StoreError> {
    let rots = txn
        .open_table(ROTATIONS)
        .map_err(backend("opening rotations"))?;
    let mut ids: Vec<String> = Vec::new();
    let active = txn.open_table(ACTIVE).map_err(backend("opening active"))?;
    for item in active.iter().map_err(backend("scanning active"))? {
        let (_, v) = item.map_err(backend("scanning active"))?;
        ids.push(v.value().to_owned());
    }
    let latest = txn
        .open_table(LATEST)
        .map_err(backend("opening latest_rotation"))?;
    for item in latest.iter().map_err(backend("scanning latest_rotation"))? {
        let (_, v) = item.map_err(backend("scanning latest_rotation"))?;
        let (id, state) = v.value();
        if super::tables::parse_state(state).is_none_or(|s| !s.is_terminal()) {
            ids.push(id.to_owned());
        }
    }
    let mut pinned = HashSet::new();
    for id in ids {
        if let Some(r) = get_json::<RotationRecord>(&rots, "rotations", &id)? {
            pinned.extend(r.old_key_id);
            pinned.extend(r.new_key.map(|k| k.id));
        }
    }
    Ok(pinned)
}

/// Local keys revoked before `before`, after `after`, in id order.
fn scan_local_keys(
    txn: &ReadTransaction,
    after: Option<&str>,
    before: Timestamp,
    batch: usize,
    pinned: &HashSet<String>,
) -> Result<Scan, StoreError> {
    let t = txn
        .open_table(LOCAL_KEYS)
        .map_err(backend("opening local_keys"))?;
    let mut found = Vec::new();
    for (examined, item) in rows_after!(t, after, "scanning local_keys").enumerate() {
        let (k, v) = item.map_err(backend("scanning local_keys"))?;
        let id = k.value();
        if instant(v.value(), "revoked_at").is_some_and(|t| t < before) && !pinned.contains(id) {
            found.push(id.to_owned());
        }
        if found.len() >= batch || examined + 1 >= SCAN_LIMIT {
            return Ok((found, Some(id.to_owned())));
        }
    }
    Ok((found, None))
}

/// Outbox messages sent or dead, queued before `before`, not in `keep`,
/// after `after`, in id order.
fn scan_outbox(
    txn: &ReadTransaction,
    after: Option<&str>,
    before: Timestamp,
    batch: usize,
    keep: &HashSet<String>,
) -> Result<Scan, StoreError> {
    let t = txn.open_table(OUTBOX).map_err(backend("opening outbox"))?;
    let mut found = Vec::new();
    for (examined, item) in rows_after!(t, after, "scanning outbox").enumerate() {
        let (k, v) = item.map_err(backend("scanning outbox"))?;
        let id = k.value();
        let m: OutboxMessage = decode("outbox", id, v.value())?;
        if prunable_message(&m, before, keep) {
            found.push(id.to_owned());
        }
        if found.len() >= batch || examined + 1 >= SCAN_LIMIT {
            return Ok((found, Some(id.to_owned())));
        }
    }
    Ok((found, None))
}

/// Whether a message is history: delivered or given up on, queued before
/// `before`, and not one to keep.
fn prunable_message(m: &OutboxMessage, before: Timestamp, keep: &HashSet<String>) -> bool {
    // A webhook's delivery of a kept event is kept with it (else an expiry
    // notice whose mail is kept would be queued again for the webhook).
    m.state != DeliveryState::Queued && m.created_at < before && !keep.contains(m.event_id())
}

/// The tables that say whether a finished rotation must stay.
struct Guards<A, L, S> {
    /// Slot → its active rotation.
    active: A,
    /// Slot → its latest rotation.
    latest: L,
    /// A slot's rotations, in id order.
    by_slot: S,
}

impl<A, L, S> Guards<A, L, S>
where
    A: ReadableTable<&'static str, &'static str>,
    L: ReadableTable<&'static str, (&'static str, &'static str)>,
    S: ReadableTable<(&'static str, &'static str), ()>,
{
    /// Whether rotation `id` of `slot`, in `state`, must stay: it is not
    /// finished, or it is its slot's active rotation, latest rotation or
    /// latest Completed one. `rots` reads the states of later rotations.
    fn keep(
        &self,
        rots: &impl ReadableTable<&'static str, &'static [u8]>,
        slot: &str,
        id: &str,
        state: RotationState,
    ) -> Result<bool, StoreError> {
        if !state.is_terminal() {
            return Ok(true);
        }
        let active = self.active.get(slot).map_err(backend("reading active"))?;
        if active.is_some_and(|v| v.value() == id) {
            return Ok(true);
        }
        // Its slot's latest rotation, or an index that does not know the
        // slot: keep rather than guess.
        let latest = self
            .latest
            .get(slot)
            .map_err(backend("reading latest_rotation"))?;
        if latest.is_none_or(|v| v.value().0 <= id) {
            return Ok(true);
        }
        if state != RotationState::Completed {
            return Ok(false);
        }
        // The latest Completed one, unless a later one completed.
        let end = format!("{slot}\0");
        let later = self
            .by_slot
            .range((slot, id)..(end.as_str(), ""))
            .map_err(backend("scanning key_rotations"))?;
        for item in later.rev() {
            let (k, _) = item.map_err(backend("scanning key_rotations"))?;
            let other = k.value().1;
            if other == id {
                break;
            }
            if let Some(v) = rots.get(other).map_err(backend("reading a rotation"))?
                && rotation_state(other, v.value())? == RotationState::Completed
            {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl RedbTx {
    /// Deletes rotation `id` if every rule still allows it (see the module
    /// documentation); returns whether it did.
    fn prune_rotation(&mut self, id: &str, before: Timestamp) -> Result<bool, StoreError> {
        let Some(rec) = self.rotation(id)? else {
            return Ok(false);
        };
        let slot = rec.slot.as_str();
        let keep = {
            let guards = Guards {
                active: self
                    .txn
                    .open_table(ACTIVE)
                    .map_err(backend("opening active"))?,
                latest: self
                    .txn
                    .open_table(LATEST)
                    .map_err(backend("opening latest_rotation"))?,
                by_slot: self
                    .txn
                    .open_table(KEY_ROTATIONS)
                    .map_err(backend("opening key_rotations"))?,
            };
            let rots = self
                .txn
                .open_table(ROTATIONS)
                .map_err(backend("opening rotations"))?;
            rec.updated_at >= before || guards.keep(&rots, slot, id, rec.state)?
        };
        if keep {
            return Ok(false);
        }
        let mut rots = self
            .txn
            .open_table(ROTATIONS)
            .map_err(backend("opening rotations"))?;
        rots.remove(id).map_err(backend("pruning a rotation"))?;
        drop(rots);
        let mut by_slot = self
            .txn
            .open_table(KEY_ROTATIONS)
            .map_err(backend("opening key_rotations"))?;
        by_slot
            .remove((slot, id))
            .map_err(backend("pruning a rotation"))?;
        drop(by_slot);
        if let Some(at) = rotation_timer(&rec) {
            let target = target_key(&DueTarget::Rotation(id.to_owned()));
            let mut due = self.txn.open_table(DUE).map_err(backend("opening due"))?;
            due.remove((due_micros(at), target.as_str()))
                .map_err(backend("pruning a rotation"))?;
        }
        // Its secret (`ID`) and envelopes (`ID#...`), if any are left.
        let mut secrets = self
            .txn
            .open_table(SECRETS)
            .map_err(backend("opening secrets"))?;
        let (from, to) = (format!("{id}#"), format!("{id}$"));
        let mut names = vec![id.to_owned()];
        for item in secrets
            .range(from.as_str()..to.as_str())
            .map_err(backend("scanning secrets"))?
        {
            let (k, _) = item.map_err(backend("scanning secrets"))?;
            names.push(k.value().to_owned());
        }
        for name in &names {
            secrets
                .remove(name.as_str())
                .map_err(backend("pruning a secret"))?;
        }
        Ok(true)
    }

    /// Deletes local key `id` if it is still revoked before `before` and
    /// not pinned; returns whether it did.
    fn prune_local_key(
        &mut self,
        id: &str,
        before: Timestamp,
        pinned: &HashSet<String>,
    ) -> Result<bool, StoreError> {
        let old: Option<LocalKey> = self.local_get(id)?;
        let revoked_before = old.is_some_and(|k| k.revoked_at.is_some_and(|t| t < before));
        if pinned.contains(id) || !revoked_before {
            return Ok(false);
        }
        let mut t = self
            .txn
            .open_table(LOCAL_KEYS)
            .map_err(backend("opening local_keys"))?;
        t.remove(id).map_err(backend("pruning a local key"))?;
        Ok(true)
    }

    /// Deletes message `id` if it is still history; returns whether it did.
    fn prune_message(
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

#[cfg(test)]
#[path = "prune_tests.rs"]
mod tests;
