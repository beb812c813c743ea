//! History and audit retention on PostgreSQL: the scans that find
//! candidates (keyset pages of `batch` rows in key order: one statement
//! each, or for rotations, whose rules read further rows, one
//! `REPEATABLE READ` snapshot), and the deletes that re-check each
//! candidate inside the write transaction. Which rows may go is decided
//! by the rules `prune.rs` and `audit.rs` share with the redb store, from
//! the same JSON records.

use std::collections::HashSet;

use jiff::Timestamp;
use postgres::GenericClient;

use super::read::terminal_states;
use super::tx::{PgTx, get_json};
use super::{PgStore, pg, rows, signed, sql, unsigned};
use crate::model::{OutboxMessage, RotationRecord, RotationState};
use crate::store::audit::prunable_entry;
use crate::store::prune::{
    Scan, instant, past_horizon, pins, prunable_local_key, prunable_message, rotation_row,
    rotation_stays,
};
use crate::store::tables::{
    META_AUDIT_ANCHOR, decode, due_micros, encode, rotation_state, rotation_timer, target_key,
};
use crate::store::{DueTarget, LocalKey, StoreError};

/// A page of `(key, record)` rows and the cursor of the next one.
type Page = (Vec<(String, Vec<u8>)>, Option<String>);

/// Later rotations of a slot read per statement while looking for a
/// Completed one (the latest ones first: the first page usually decides).
const LATER_PAGE: i64 = 16;

impl PgStore {
    /// Finished rotations that last changed before `before` and that no
    /// rule keeps, in the page of `batch` rotations after `after`; the
    /// scan ends past the horizon of UUIDv7 ids ([`past_horizon`]).
    pub(in crate::store) fn scan_rotations(
        &self,
        after: Option<&str>,
        before: Timestamp,
        batch: usize,
    ) -> Result<Scan, StoreError> {
        let after = after.map(str::to_owned);
        self.on(move |c| {
            let mut t = super::snapshot(c)?;
            let page = rows(
                &mut t,
                "scanning rotations",
                sql::PRUNE_ROTATIONS_PAGE,
                &[&after, &signed(batch as u64)],
            )?;
            let mut found = Vec::new();
            for r in &page {
                let id: &str = r.get(0);
                if past_horizon(id, before) {
                    return Ok((found, None));
                }
                let (slot, changed, state) = rotation_row(id, r.get::<_, &[u8]>(1))?;
                if changed < before
                    && !rotation_stays(id, state, r.get(2), r.get(3), || {
                        completed_after(&mut t, &slot, id)
                    })?
                {
                    found.push(id.to_owned());
                }
            }
            Ok((found, next_page(&page, batch)))
        })
    }

    /// Local keys named by an unfinished or active rotation ([`pins`]).
    pub(in crate::store) fn pinned_local_keys(&self) -> Result<HashSet<String>, StoreError> {
        let terminal = terminal_states();
        let recs: Vec<RotationRecord> = self.on(move |c| {
            rows(
                c,
                "reading active rotations",
                sql::PRUNE_PINNING,
                &[&terminal],
            )?
            .iter()
            .map(|r| decode("rotations", r.get(0), r.get::<_, &[u8]>(1)))
            .collect()
        })?;
        Ok(recs.into_iter().flat_map(pins).collect())
    }

    /// Local keys revoked before `before` and not pinned, in the page of
    /// `batch` keys after `after`.
    pub(in crate::store) fn scan_local_keys(
        &self,
        after: Option<&str>,
        before: Timestamp,
        batch: usize,
        pinned: &HashSet<String>,
    ) -> Result<Scan, StoreError> {
        let (page, next) = self.page(sql::PRUNE_LOCAL_PAGE, "scanning local_keys", after, batch)?;
        let found = page
            .into_iter()
            .filter(|(id, rec)| prunable_local_key(id, instant(rec, "revoked_at"), before, pinned))
            .map(|(id, _)| id)
            .collect();
        Ok((found, next))
    }

    /// Outbox messages that are history ([`prunable_message`]), in the
    /// page of `batch` messages after `after`.
    pub(in crate::store) fn scan_outbox(
        &self,
        after: Option<&str>,
        before: Timestamp,
        batch: usize,
        keep: &HashSet<String>,
    ) -> Result<Scan, StoreError> {
        let (page, next) = self.page(sql::PRUNE_OUTBOX_PAGE, "scanning outbox", after, batch)?;
        let mut found = Vec::new();
        for (id, rec) in page {
            let m: OutboxMessage = decode("outbox", &id, &rec)?;
            if prunable_message(&m, before, keep) {
                found.push(id);
            }
        }
        Ok((found, next))
    }

    /// The page of at most `batch` `(key, record)` rows after `after`
    /// that `query` reads, and the cursor of the next page (`None`: this
    /// one was the last).
    fn page(
        &self,
        query: &'static str,
        op: &'static str,
        after: Option<&str>,
        batch: usize,
    ) -> Result<Page, StoreError> {
        let after = after.map(str::to_owned);
        self.on(move |c| {
            let page = rows(c, op, query, &[&after, &signed(batch as u64)])?;
            let next = next_page(&page, batch);
            Ok((page.iter().map(|r| (r.get(0), r.get(1))).collect(), next))
        })
    }
}

/// Where the scan after `page` starts: its last key when it was full.
fn next_page(page: &[postgres::Row], batch: usize) -> Option<String> {
    if page.len() < batch {
        return None;
    }
    page.last().map(|r| r.get(0))
}

/// Whether a rotation of `slot` after `id` is Completed, read newest
/// first, a page at a time.
fn completed_after(c: &mut impl GenericClient, slot: &str, id: &str) -> Result<bool, StoreError> {
    let mut below: Option<String> = None;
    loop {
        let page = rows(
            c,
            "scanning a slot's rotations",
            sql::PRUNE_LATER_OF_SLOT,
            &[&slot, &id, &below, &LATER_PAGE],
        )?;
        for r in &page {
            let other: &str = r.get(0);
            if rotation_state(other, r.get::<_, &[u8]>(1))? == RotationState::Completed {
                return Ok(true);
            }
        }
        if page.len() < usize::try_from(LATER_PAGE).unwrap_or(usize::MAX) {
            return Ok(false);
        }
        below = page.last().map(|r| r.get(0));
    }
}

impl PgTx {
    /// Deletes rotation `id` if every rule still allows it (see
    /// `prune.rs`), with its due entry and its secret and envelopes (its
    /// `key_rotations` entry is its row's own index entry); returns
    /// whether it did.
    pub(in crate::store) fn prune_rotation(
        &mut self,
        id: &str,
        before: Timestamp,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.on(move |c| {
            let Some(rec) = get_json::<RotationRecord>(c, sql::ROTATION_GET, "rotations", &id)?
            else {
                return Ok(false);
            };
            if rec.updated_at >= before {
                return Ok(false);
            }
            let indexes = c
                .query_one(sql::PRUNE_SLOT_INDEXES, &[&rec.slot])
                .map_err(pg("reading a slot's indexes"))?;
            let (active, latest): (Option<String>, Option<String>) =
                (indexes.get(0), indexes.get(1));
            let stays =
                rotation_stays(&id, rec.state, active.as_deref(), latest.as_deref(), || {
                    completed_after(c, &rec.slot, &id)
                })?;
            if stays {
                return Ok(false);
            }
            c.execute(sql::PRUNE_ROTATION, &[&id])
                .map_err(pg("pruning a rotation"))?;
            if let Some(at) = rotation_timer(&rec) {
                let target = target_key(&DueTarget::Rotation(id.clone()));
                c.execute(sql::DUE_DELETE, &[&due_micros(at), &target])
                    .map_err(pg("pruning a rotation"))?;
            }
            let (from, to) = (format!("{id}#"), format!("{id}$"));
            c.execute(sql::PRUNE_SECRETS, &[&id, &from, &to])
                .map_err(pg("pruning a secret"))?;
            Ok(true)
        })
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
        self.delete(sql::PRUNE_LOCAL_KEY, id, "pruning a local key")
    }

    /// Deletes up to `batch` audit entries recorded before `before` from
    /// the start of the chain (never the last entry, see
    /// [`prunable_entry`]) and anchors the chain at the last one deleted:
    /// (entries deleted, that entry's sequence).
    pub(in crate::store) fn prune_audit_batch(
        &mut self,
        before: Timestamp,
        batch: usize,
    ) -> Result<(usize, Option<u64>), StoreError> {
        let limit = signed(batch as u64);
        self.on(move |c| {
            let last: Option<i64> = c
                .query_one(sql::PRUNE_AUDIT_LAST, &[])
                .map_err(pg("reading audit"))?
                .get(0);
            let Some(last) = last.map(unsigned) else {
                return Ok((0, None));
            };
            let mut doomed: Vec<(u64, String)> = Vec::new();
            for r in rows(c, "scanning audit", sql::AUDIT_FROM, &[&0_i64, &limit])? {
                let seq = unsigned(r.get(0));
                match prunable_entry(seq, r.get::<_, &[u8]>(1), last, before)? {
                    Some(hash) => doomed.push((seq, hash)),
                    None => break,
                }
            }
            let Some(anchor) = doomed.last().cloned() else {
                return Ok((0, None));
            };
            let seqs: Vec<i64> = doomed.iter().map(|(seq, _)| signed(*seq)).collect();
            c.execute(sql::PRUNE_AUDIT_ENTRIES, &[&seqs])
                .map_err(pg("deleting audit entries"))?;
            let bytes = encode("meta", META_AUDIT_ANCHOR, &anchor)?;
            c.execute(sql::META_PUT, &[&META_AUDIT_ANCHOR, &bytes])
                .map_err(pg("writing the audit anchor"))?;
            Ok((doomed.len(), Some(anchor.0)))
        })
    }
}
