//! The audit chain: the canonical encoding each entry's hash covers, and
//! the check that recomputes every hash and link. Each entry's `hash` is
//! SHA-256 over a length-prefixed encoding of its sequence number, instant,
//! event, slot, rotation, actor, detail and the previous entry's hash; the
//! head (last sequence and hash) is also kept in `meta` so that removing
//! entries from the end is detected too.

use jiff::Timestamp;

use super::StoreError;
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
    /// Entries checked so far.
    count: u64,
    /// Hash of the last entry checked (empty before the first).
    last_hash: String,
}

impl ChainCheck {
    /// A check before the first entry.
    pub(super) fn new() -> ChainCheck {
        ChainCheck {
            count: 0,
            last_hash: String::new(),
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
    /// the number of entries.
    pub(super) fn finish(self, head: Option<(u64, String)>) -> Result<u64, StoreError> {
        match head {
            None if self.count == 0 => Ok(0),
            None => Err(StoreError::AuditChainBroken { seq: 1 }),
            Some((seq, hash)) if seq == self.count && hash == self.last_hash => Ok(self.count),
            Some((seq, _)) => Err(StoreError::AuditChainBroken {
                seq: seq.min(self.count + 1).max(1),
            }),
        }
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
        let mut c = ChainCheck::new();
        c.next(1, &e1).unwrap();
        c.next(2, &e2).unwrap();
        assert_eq!(c.finish(Some((2, e2.hash.clone()))).unwrap(), 2);

        let mut c = ChainCheck::new();
        c.next(1, &e1).unwrap();
        // Head says 2 entries, only one present: truncated.
        assert!(matches!(
            c.finish(Some((2, e2.hash.clone()))),
            Err(StoreError::AuditChainBroken { seq: 2 })
        ));

        let bad = entry(2, "not the previous hash");
        let mut c = ChainCheck::new();
        c.next(1, &e1).unwrap();
        assert!(matches!(
            c.next(2, &bad),
            Err(StoreError::AuditChainBroken { seq: 2 })
        ));
    }
}
