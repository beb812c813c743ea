//! The audit chain: the canonical encoding each entry's hash covers, and
//! the check that recomputes every hash and link. Each entry's `hash` is
//! SHA-256 over a length-prefixed encoding of its sequence number, instant,
//! event, slot, rotation, actor, detail and the previous entry's hash; the
//! head (last sequence and hash) is also kept in `meta` so that removing
//! entries from the end is detected too.
//!
//! Retention (`[store] audit_retention`) deletes entries from the start of
//! the chain only, never the last one, and records the last deleted
//! entry's sequence and hash as the chain's anchor in `meta`, in the same
//! transaction: the chain then verifies from the anchor, and an entry
//! removed anywhere after it (or at the end) is still detected. Each prune
//! that deleted anything appends an `audit.pruned` entry saying so.

use jiff::Timestamp;
use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata};

use super::error::backend;
use super::tables::{
    AUDIT, META, META_AUDIT_ANCHOR, META_AUDIT_HEAD, decode, encode, top_level_str,
};
use super::tx::RedbTx;
use super::{Store, StoreError};
use crate::crypto::sha256_hex;
use crate::model::AuditEntry;

/// Domain separator starting every hashed encoding.
const DOMAIN: &[u8] = b"keyrot-audit-v1\0";

/// The fields of a new entry, before it is numbered and hashed.
pub(super) struct NewEntry<'a> {
    /// When it happened.
    pub at: Timestamp,
    /// What happened.
    pub event: &'a str,
    /// Slot concerned.
    pub slot: Option<&'a str>,
    /// Rotation concerned.
    pub rotation: Option<&'a str>,
    /// Who caused it.
    pub actor: Option<&'a str>,
    /// Details.
    pub detail: &'a str,
}

impl NewEntry<'_> {
    /// Numbers and hashes the entry, linking it to `prev_hash`.
    pub(super) fn seal(self, seq: u64, prev_hash: String) -> AuditEntry {
        let mut entry = AuditEntry {
            seq,
            at: self.at,
            event: self.event.to_owned(),
            slot: self.slot.map(str::to_owned),
            rotation: self.rotation.map(str::to_owned),
            actor: self.actor.map(str::to_owned),
            detail: self.detail.to_owned(),
            prev_hash,
            hash: String::new(),
        };
        entry.hash = entry_hash(&entry);
        entry
    }
}

/// SHA-256 (hex) over the canonical encoding of `e` (its `hash` excluded).
pub(super) fn entry_hash(e: &AuditEntry) -> String {
    let mut buf = Vec::with_capacity(128 + e.detail.len());
    buf.extend_from_slice(DOMAIN);
    buf.extend_from_slice(&e.seq.to_be_bytes());
    buf.extend_from_slice(&e.at.as_nanosecond().to_be_bytes());
    field(&mut buf, Some(&e.event));
    field(&mut buf, e.slot.as_deref());
    field(&mut buf, e.rotation.as_deref());
    field(&mut buf, e.actor.as_deref());
    field(&mut buf, Some(&e.detail));
    field(&mut buf, Some(&e.prev_hash));
    sha256_hex(&buf)
}

/// Appends an optional string: a presence byte, then length and bytes.
fn field(buf: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => buf.push(0),
        Some(s) => {
            buf.push(1);
            buf.extend_from_slice(&(s.len() as u64).to_be_bytes());
            buf.extend_from_slice(s.as_bytes());
        }
    }
}

/// Walks the chain in sequence order, checking numbering, links and hashes.
pub(super) struct ChainCheck {
    /// Sequence number of the anchor (0: the chain's start).
    start: u64,
    /// Sequence number of the last entry checked (the anchor's before the
    /// first).
    count: u64,
    /// Hash of the last entry checked (the anchor's, or empty, before the
    /// first).
    last_hash: String,
}

impl ChainCheck {
    /// A check before the first entry after `anchor`: the last entry a
    /// retention prune deleted (sequence and hash), or the chain's start
    /// when `None`.
    pub(super) fn after(anchor: Option<(u64, String)>) -> ChainCheck {
        let (count, last_hash) = anchor.unwrap_or((0, String::new()));
        ChainCheck {
            start: count,
            count,
            last_hash,
        }
    }

    /// Checks the entry stored under `key`, which must follow the previous one.
    pub(super) fn next(&mut self, key: u64, e: &AuditEntry) -> Result<(), StoreError> {
        let expected = self.count + 1;
        if key != expected || e.seq != expected {
            return Err(StoreError::AuditChainBroken { seq: expected });
        }
        if e.prev_hash != self.last_hash || e.hash != entry_hash(e) {
            return Err(StoreError::AuditChainBroken { seq: expected });
        }
        self.count = expected;
        self.last_hash.clone_from(&e.hash);
        Ok(())
    }

    /// Compares the end of the chain with the head kept in `meta`; returns
    /// the number of entries checked (those after the anchor).
    pub(super) fn finish(self, head: Option<(u64, String)>) -> Result<u64, StoreError> {
        match head {
            None if self.count == 0 => Ok(0),
            None => Err(StoreError::AuditChainBroken { seq: 1 }),
            Some((seq, hash)) if seq == self.count && hash == self.last_hash => {
                Ok(self.count - self.start)
            }
            Some((seq, _)) => Err(StoreError::AuditChainBroken {
                seq: seq.min(self.count + 1).max(self.start + 1),
            }),
        }
    }
}

/// The audit log as a check found it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Chain {
    /// Sequence number of the first entry kept (1 unless a retention
    /// prune deleted older ones).
    pub first: u64,
    /// Entries in the log, all verified.
    pub entries: u64,
}

/// A `[seq, hash]` pair kept in `meta` under `name`.
fn meta_pair(txn: &ReadTransaction, name: &str) -> Result<Option<(u64, String)>, StoreError> {
    let meta = txn.open_table(META).map_err(backend("opening meta"))?;
    match meta.get(name).map_err(backend("reading meta"))? {
        Some(v) => decode("meta", name, v.value()).map(Some),
        None => Ok(None),
    }
}

/// Verifies the whole audit log in `txn`: from the anchor a retention
/// prune left (if any) through every entry's number, link and hash to the
/// head in `meta`. [`StoreError::AuditChainBroken`] names the first entry
/// that fails.
pub(super) fn check_chain(txn: &ReadTransaction) -> Result<Chain, StoreError> {
    let anchor = meta_pair(txn, META_AUDIT_ANCHOR)?;
    let first = anchor.as_ref().map_or(1, |(seq, _)| seq + 1);
    let mut check = ChainCheck::after(anchor);
    let t = txn.open_table(AUDIT).map_err(backend("opening audit"))?;
    for item in t.iter().map_err(backend("scanning audit"))? {
        let (k, v) = item.map_err(backend("scanning audit"))?;
        let seq = k.value();
        let entry: AuditEntry = decode("audit", &seq.to_string(), v.value())
            .map_err(|_| StoreError::AuditChainBroken { seq })?;
        check.next(seq, &entry)?;
    }
    let head = meta_pair(txn, META_AUDIT_HEAD)?;
    let entries = check.finish(head)?;
    debug_assert_eq!(entries, t.len().unwrap_or(entries));
    Ok(Chain { first, entries })
}

impl Store {
    /// Deletes the audit entries recorded before `before` from the start of
    /// the chain, oldest first, at most `batch` per write transaction,
    /// never the last entry; stops at the first entry that is not old
    /// enough. Each transaction moves the chain's anchor to the last entry
    /// it deleted. When anything was deleted, an `audit.pruned` entry
    /// (recorded at `now`) says how much. `stop` is asked between batches.
    /// Returns the number of entries deleted.
    pub fn prune_audit(
        &self,
        before: Timestamp,
        now: Timestamp,
        batch: usize,
        stop: &dyn Fn() -> bool,
    ) -> Result<usize, StoreError> {
        let batch = batch.max(1);
        let mut deleted = 0;
        let mut anchor = 0;
        while !stop() {
            let (n, last) = self.write(|tx| tx.prune_audit_batch(before, batch))?;
            deleted += n;
            anchor = last.unwrap_or(anchor);
            if n < batch {
                break;
            }
        }
        if deleted > 0 {
            let detail = format!(
                "{deleted} entries recorded before {before} deleted ([store] audit_retention); \
                 the chain now starts after entry {anchor}"
            );
            self.write(|tx| tx.audit(now, "audit.pruned", None, None, Some("keyrot"), &detail))?;
        }
        Ok(deleted)
    }
}

/// Whether audit entry `seq` (stored as `json`) may be pruned, the chain's
/// last entry being `last`: recorded before `before` and not the last one.
/// Returns the entry's hash (the anchor it leaves) when it may; `None`
/// ends the prune, which only ever cuts the chain's start.
pub(super) fn prunable_entry(
    seq: u64,
    json: &[u8],
    last: u64,
    before: Timestamp,
) -> Result<Option<String>, StoreError> {
    if seq >= last {
        return Ok(None);
    }
    let (at, hash) = match (top_level_str(json, "at"), top_level_str(json, "hash")) {
        (Some(at), Some(hash)) if at.parse::<Timestamp>().is_ok() => {
            (at.parse::<Timestamp>().ok(), hash.to_owned())
        }
        _ => {
            let e: AuditEntry = decode("audit", &seq.to_string(), json)?;
            (Some(e.at), e.hash)
        }
    };
    Ok(at.is_some_and(|at| at < before).then_some(hash))
}

impl RedbTx {
    /// Deletes up to `batch` entries recorded before `before` from the
    /// start of the chain (never the last entry, see [`prunable_entry`])
    /// and anchors the chain at the last one deleted: (entries deleted,
    /// that entry's sequence).
    pub(super) fn prune_audit_batch(
        &mut self,
        before: Timestamp,
        batch: usize,
    ) -> Result<(usize, Option<u64>), StoreError> {
        let mut audit = self
            .txn
            .open_table(AUDIT)
            .map_err(backend("opening audit"))?;
        let Some(last) = audit
            .last()
            .map_err(backend("reading audit"))?
            .map(|(k, _)| k.value())
        else {
            return Ok((0, None));
        };
        let mut doomed: Vec<(u64, String)> = Vec::new();
        for item in audit.iter().map_err(backend("scanning audit"))?.take(batch) {
            let (k, v) = item.map_err(backend("scanning audit"))?;
            let seq = k.value();
            match prunable_entry(seq, v.value(), last, before)? {
                Some(hash) => doomed.push((seq, hash)),
                None => break,
            }
        }
        let Some(anchor) = doomed.last().cloned() else {
            return Ok((0, None));
        };
        for (seq, _) in &doomed {
            audit
                .remove(*seq)
                .map_err(backend("deleting an audit entry"))?;
        }
        drop(audit);
        let bytes = encode("meta", META_AUDIT_ANCHOR, &anchor)?;
        let mut meta = self.txn.open_table(META).map_err(backend("opening meta"))?;
        meta.insert(META_AUDIT_ANCHOR, bytes.as_slice())
            .map_err(backend("writing the audit anchor"))?;
        Ok((doomed.len(), Some(anchor.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, prev: &str) -> AuditEntry {
        NewEntry {
            at: Timestamp::from_second(1_700_000_000).unwrap(),
            event: "rotation.completed",
            slot: Some("p/k"),
            rotation: None,
            actor: Some("alice"),
            detail: "done",
        }
        .seal(seq, prev.to_owned())
    }

    #[test]
    fn hash_covers_every_field() {
        let base = entry(1, "");
        let mut variants = vec![];
        let mut e = base.clone();
        e.seq = 2;
        variants.push(e);
        let mut e = base.clone();
        e.at = Timestamp::from_second(1_700_000_001).unwrap();
        variants.push(e);
        let mut e = base.clone();
        e.event.push('x');
        variants.push(e);
        let mut e = base.clone();
        e.slot = None;
        variants.push(e);
        let mut e = base.clone();
        e.rotation = Some(String::new());
        variants.push(e);
        let mut e = base.clone();
        e.actor = Some("bob".into());
        variants.push(e);
        let mut e = base.clone();
        e.detail.clear();
        variants.push(e);
        let mut e = base.clone();
        e.prev_hash = "00".into();
        variants.push(e);
        for v in variants {
            assert_ne!(entry_hash(&v), base.hash, "{v:?}");
        }
        assert_eq!(entry_hash(&base), base.hash);
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let mut a = entry(1, "");
        a.event = "ab".into();
        a.detail = "c".into();
        let mut b = a.clone();
        b.event = "a".into();
        b.detail = "bc".into();
        assert_ne!(entry_hash(&a), entry_hash(&b));
    }

    #[test]
    fn chain_check_detects_gaps_links_and_truncation() {
        let e1 = entry(1, "");
        let e2 = entry(2, &e1.hash);
        let mut c = ChainCheck::after(None);
        c.next(1, &e1).unwrap();
        c.next(2, &e2).unwrap();
        assert_eq!(c.finish(Some((2, e2.hash.clone()))).unwrap(), 2);

        let mut c = ChainCheck::after(None);
        c.next(1, &e1).unwrap();
        // Head says 2 entries, only one present: truncated.
        assert!(matches!(
            c.finish(Some((2, e2.hash.clone()))),
            Err(StoreError::AuditChainBroken { seq: 2 })
        ));

        let bad = entry(2, "not the previous hash");
        let mut c = ChainCheck::after(None);
        c.next(1, &e1).unwrap();
        assert!(matches!(
            c.next(2, &bad),
            Err(StoreError::AuditChainBroken { seq: 2 })
        ));
    }
}
