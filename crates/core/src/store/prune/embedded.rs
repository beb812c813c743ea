//! History retention on redb (the embedded store): the scans that find
//! candidates in a read snapshot, and the deletes that re-check them in a
//! write transaction (the rules themselves are the parent module's).

use std::collections::HashSet;

use jiff::Timestamp;
use redb::{ReadTransaction, ReadableTable};

use super::{
    Scan, instant, past_horizon, pins, prunable_local_key, prunable_message, rotation_row,
    rotation_stays,
};
use crate::model::{OutboxMessage, RotationRecord, RotationState};
use crate::store::error::backend;
use crate::store::tables::{
    ACTIVE, DUE, KEY_ROTATIONS, LATEST, LOCAL_KEYS, OUTBOX, ROTATIONS, SECRETS, decode, due_micros,
    get_json, parse_state, rotation_state, rotation_timer, target_key,
};
use crate::store::tx::RedbTx;
use crate::store::{DueTarget, LocalKey, StoreError};

/// Rows one read snapshot examines at most before the scan resumes in a
/// new one (a snapshot pins the pages it sees).
const SCAN_LIMIT: usize = 20_000;

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

/// Finished rotations that last changed before `before` and that no rule
/// keeps, after `after`, in id order; the scan ends past the horizon of
/// UUIDv7 ids ([`past_horizon`]).
pub(super) fn scan_rotations(
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
    let mut found = Vec::new();
    for (examined, item) in rows_after!(rots, after, "scanning rotations").enumerate() {
        let (k, v) = item.map_err(backend("scanning rotations"))?;
        let id = k.value();
        if past_horizon(id, before) {
            return Ok((found, None));
        }
        let (slot, changed, state) = rotation_row(id, v.value())?;
        if changed < before && !tables.keep(&rots, &slot, id, state)? {
            found.push(id.to_owned());
        }
        if found.len() >= batch || examined + 1 >= SCAN_LIMIT {
            return Ok((found, Some(id.to_owned())));
        }
    }
    Ok((found, None))
}

/// Local keys named by an unfinished or active rotation ([`pins`]).
pub(super) fn pinned_local_keys(txn: &ReadTransaction) -> Result<HashSet<String>, StoreError> {
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
        if parse_state(state).is_none_or(|s| !s.is_terminal()) {
            ids.push(id.to_owned());
        }
    }
    let mut pinned = HashSet::new();
    for id in ids {
        if let Some(r) = get_json::<RotationRecord>(&rots, "rotations", &id)? {
            pinned.extend(pins(r));
        }
    }
    Ok(pinned)
}

/// Local keys revoked before `before` and not pinned, after `after`, in
/// id order.
pub(super) fn scan_local_keys(
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
        if prunable_local_key(id, instant(v.value(), "revoked_at"), before, pinned) {
            found.push(id.to_owned());
        }
        if found.len() >= batch || examined + 1 >= SCAN_LIMIT {
            return Ok((found, Some(id.to_owned())));
        }
    }
    Ok((found, None))
}

/// Outbox messages that are history ([`prunable_message`]), after
/// `after`, in id order.
pub(super) fn scan_outbox(
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
    /// Whether rotation `id` of `slot`, in `state`, must stay
    /// ([`rotation_stays`], from these tables). `rots` reads the states of
    /// later rotations.
    fn keep(
        &self,
        rots: &impl ReadableTable<&'static str, &'static [u8]>,
        slot: &str,
        id: &str,
        state: RotationState,
    ) -> Result<bool, StoreError> {
        let active = self.active.get(slot).map_err(backend("reading active"))?;
        let latest = self
            .latest
            .get(slot)
            .map_err(backend("reading latest_rotation"))?;
        rotation_stays(
            id,
            state,
            active.as_ref().map(|v| v.value()),
            latest.as_ref().map(|v| v.value().0),
            || self.completed_after(rots, slot, id),
        )
    }

    /// Whether a rotation of `slot` after `id` is Completed (the latest
    /// ones are read first).
    fn completed_after(
        &self,
        rots: &impl ReadableTable<&'static str, &'static [u8]>,
        slot: &str,
        id: &str,
    ) -> Result<bool, StoreError> {
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
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl RedbTx {
    /// Deletes rotation `id` if every rule still allows it (see the parent
    /// module's documentation), with its `key_rotations` entry, its due
    /// entry and its secret and envelopes; returns whether it did.
    pub(in crate::store) fn prune_rotation(
        &mut self,
        id: &str,
        before: Timestamp,
    ) -> Result<bool, StoreError> {
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
    pub(in crate::store) fn prune_local_key(
        &mut self,
        id: &str,
        before: Timestamp,
        pinned: &HashSet<String>,
    ) -> Result<bool, StoreError> {
        let old: Option<LocalKey> = self.local_get(id)?;
        if !old.is_some_and(|k| prunable_local_key(id, k.revoked_at, before, pinned)) {
            return Ok(false);
        }
        let mut t = self
            .txn
            .open_table(LOCAL_KEYS)
            .map_err(backend("opening local_keys"))?;
        t.remove(id).map_err(backend("pruning a local key"))?;
        Ok(true)
    }
}
