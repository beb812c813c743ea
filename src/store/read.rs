//! Reads outside a write: each method runs in its own read snapshot and
//! never waits for a writer.

use jiff::Timestamp;
use redb::{ReadableTable, ReadableTableMetadata};
use secrecy::SecretString;

use super::audit::ChainCheck;
use super::error::backend;
use super::tables::{
    ACTIVE, AUDIT, DUE, KEY_ROTATIONS, KEYS, LOCAL_KEYS, META, META_AUDIT_HEAD, OUTBOX, ROTATIONS,
    SECRETS, all_json, decode, due_micros, due_timestamp, get_json, parse_target, secret_aad,
};
use super::{DueTarget, LocalKey, Store, StoreError, StoreStats};
use crate::model::{AuditEntry, DeliveryState, KeyRecord, OutboxMessage, RotationRecord};

impl Store {
    /// Reads one slot.
    pub fn key(&self, slot: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.read(|txn| {
            let t = txn.open_table(KEYS).map_err(backend("opening keys"))?;
            get_json(&t, "keys", slot)
        })
    }

    /// All slots, sorted by slot id.
    pub fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.read(|txn| {
            let t = txn.open_table(KEYS).map_err(backend("opening keys"))?;
            all_json(&t, "keys")
        })
    }

    /// One rotation.
    pub fn rotation(&self, id: &str) -> Result<Option<RotationRecord>, StoreError> {
        self.read(|txn| {
            let t = txn
                .open_table(ROTATIONS)
                .map_err(backend("opening rotations"))?;
            get_json(&t, "rotations", id)
        })
    }

    /// Rotations not in a terminal state, oldest first.
    pub fn unfinished_rotations(&self) -> Result<Vec<RotationRecord>, StoreError> {
        self.read(|txn| {
            let t = txn
                .open_table(ROTATIONS)
                .map_err(backend("opening rotations"))?;
            let all: Vec<RotationRecord> = all_json(&t, "rotations")?;
            Ok(all.into_iter().filter(|r| !r.state.is_terminal()).collect())
        })
    }

    /// Up to `limit` rotations, newest first (ids are UUIDv7, so key order
    /// is creation order), of one slot or of all.
    pub fn rotations(
        &self,
        slot: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RotationRecord>, StoreError> {
        self.read(|txn| {
            let rots = txn
                .open_table(ROTATIONS)
                .map_err(backend("opening rotations"))?;
            let scan = backend("scanning rotations");
            let mut out = Vec::new();
            match slot {
                None => {
                    for item in rots.iter().map_err(scan)?.rev().take(limit) {
                        let (k, v) = item.map_err(backend("scanning rotations"))?;
                        out.push(decode("rotations", k.value(), v.value())?);
                    }
                }
                Some(slot) => {
                    let by_slot = txn
                        .open_table(KEY_ROTATIONS)
                        .map_err(backend("opening key_rotations"))?;
                    // `slot + "\0"` is the least string above `slot`, so this
                    // range holds exactly the pairs whose first element is `slot`.
                    let end = format!("{slot}\0");
                    let range = by_slot
                        .range((slot, "")..(end.as_str(), ""))
                        .map_err(scan)?;
                    for item in range.rev().take(limit) {
                        let (k, _) = item.map_err(backend("scanning key_rotations"))?;
                        let (_, id) = k.value();
                        if let Some(rec) = get_json(&rots, "rotations", id)? {
                            out.push(rec);
                        }
                    }
                }
            }
            Ok(out)
        })
    }

    /// The slot's unfinished rotation, as recorded by the last `put_key`.
    pub fn active_rotation(&self, slot: &str) -> Result<Option<String>, StoreError> {
        self.read(|txn| {
            let t = txn.open_table(ACTIVE).map_err(backend("opening active"))?;
            let v = t.get(slot).map_err(backend("reading active"))?;
            Ok(v.map(|v| v.value().to_owned()))
        })
    }

    /// The earliest due-index entry.
    pub fn next_due(&self) -> Result<Option<(Timestamp, DueTarget)>, StoreError> {
        self.read(|txn| {
            let t = txn.open_table(DUE).map_err(backend("opening due"))?;
            match t.first().map_err(backend("reading due"))? {
                None => Ok(None),
                Some((k, _)) => {
                    let (micros, target) = k.value();
                    Ok(Some((
                        due_timestamp(micros, target)?,
                        parse_target(target)?,
                    )))
                }
            }
        })
    }

    /// Every due-index entry at or before `now`, earliest first.
    pub fn due_until(&self, now: Timestamp) -> Result<Vec<(Timestamp, DueTarget)>, StoreError> {
        let limit = due_micros(now);
        self.read(|txn| {
            let t = txn.open_table(DUE).map_err(backend("opening due"))?;
            let mut out = Vec::new();
            for item in t.iter().map_err(backend("scanning due"))? {
                let (k, _) = item.map_err(backend("scanning due"))?;
                let (micros, target) = k.value();
                if micros > limit {
                    break;
                }
                out.push((due_timestamp(micros, target)?, parse_target(target)?));
            }
            Ok(out)
        })
    }

    /// The earliest due instant strictly after `now` (what the scheduler
    /// sleeps until once everything due at `now` is dispatched).
    pub fn next_due_after(&self, now: Timestamp) -> Result<Option<Timestamp>, StoreError> {
        let Some(from) = due_micros(now).checked_add(1) else {
            return Ok(None);
        };
        self.read(|txn| {
            let t = txn.open_table(DUE).map_err(backend("opening due"))?;
            let mut range = t.range((from, "")..).map_err(backend("scanning due"))?;
            match range.next() {
                None => Ok(None),
                Some(item) => {
                    let (k, _) = item.map_err(backend("scanning due"))?;
                    let (micros, target) = k.value();
                    due_timestamp(micros, target).map(Some)
                }
            }
        })
    }

    /// Unseals a rotation's secret; `None` when there is none (never
    /// issued, or wiped). Needs the master key (not on a read-only open).
    pub fn secret(&self, rotation: &str) -> Result<Option<SecretString>, StoreError> {
        let Some(master) = &self.master else {
            return Err(self.read_only("unsealing a secret"));
        };
        self.read(|txn| {
            let t = txn
                .open_table(SECRETS)
                .map_err(backend("opening secrets"))?;
            let Some(sealed) = t.get(rotation).map_err(backend("reading a secret"))? else {
                return Ok(None);
            };
            let plain = master
                .open(&secret_aad(rotation), sealed.value())
                .map_err(|source| StoreError::Unseal {
                    rotation: rotation.to_owned(),
                    source,
                })?;
            let text = std::str::from_utf8(&plain).map_err(|_| StoreError::SecretNotUtf8 {
                rotation: rotation.to_owned(),
            })?;
            // `Box<str>::from(&str)` allocates exactly once; `plain` is zeroed on drop.
            Ok(Some(SecretString::from(Box::<str>::from(text))))
        })
    }

    /// Whether a rotation has a sealed secret (works read-only).
    pub fn has_secret(&self, rotation: &str) -> Result<bool, StoreError> {
        self.read(|txn| {
            let t = txn
                .open_table(SECRETS)
                .map_err(backend("opening secrets"))?;
            Ok(t.get(rotation)
                .map_err(backend("reading a secret"))?
                .is_some())
        })
    }

    /// Outbox messages, by id.
    pub fn outbox(&self) -> Result<Vec<OutboxMessage>, StoreError> {
        self.read(|txn| {
            let t = txn.open_table(OUTBOX).map_err(backend("opening outbox"))?;
            all_json(&t, "outbox")
        })
    }

    /// Up to `limit` audit entries with a sequence number above `after`,
    /// in order.
    pub fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(|txn| {
            let t = txn.open_table(AUDIT).map_err(backend("opening audit"))?;
            let Some(start) = after.checked_add(1) else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for item in t
                .range(start..)
                .map_err(backend("scanning audit"))?
                .take(limit)
            {
                let (k, v) = item.map_err(backend("scanning audit"))?;
                out.push(decode("audit", &k.value().to_string(), v.value())?);
            }
            Ok(out)
        })
    }

    /// Recomputes every audit entry's hash and link and compares the end of
    /// the chain with the recorded head. Returns the number of entries, or
    /// [`StoreError::AuditChainBroken`] at the first entry that fails.
    pub fn verify_audit_chain(&self) -> Result<u64, StoreError> {
        self.read(|txn| {
            let t = txn.open_table(AUDIT).map_err(backend("opening audit"))?;
            let mut check = ChainCheck::new();
            for item in t.iter().map_err(backend("scanning audit"))? {
                let (k, v) = item.map_err(backend("scanning audit"))?;
                let seq = k.value();
                let entry: AuditEntry = decode("audit", &seq.to_string(), v.value())
                    .map_err(|_| StoreError::AuditChainBroken { seq })?;
                check.next(seq, &entry)?;
            }
            let meta = txn.open_table(META).map_err(backend("opening meta"))?;
            let head: Option<(u64, String)> =
                match meta.get(META_AUDIT_HEAD).map_err(backend("reading meta"))? {
                    Some(v) => Some(decode("meta", META_AUDIT_HEAD, v.value())?),
                    None => None,
                };
            check.finish(head)
        })
    }

    /// Keys of the local provider's registry, by id.
    pub fn local_keys(&self) -> Result<Vec<LocalKey>, StoreError> {
        self.read(|txn| {
            let t = txn
                .open_table(LOCAL_KEYS)
                .map_err(backend("opening local_keys"))?;
            all_json(&t, "local_keys")
        })
    }

    /// One key of the local provider's registry.
    pub fn local_key(&self, id: &str) -> Result<Option<LocalKey>, StoreError> {
        self.read(|txn| {
            let t = txn
                .open_table(LOCAL_KEYS)
                .map_err(backend("opening local_keys"))?;
            get_json(&t, "local_keys", id)
        })
    }

    /// Record counts.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        self.read(|txn| {
            let op = "counting records";
            let len = |r: Result<u64, redb::StorageError>| r.map_err(backend(op));
            let mut stats = StoreStats {
                keys: len(txn.open_table(KEYS).map_err(backend(op))?.len())?,
                rotations: len(txn.open_table(ROTATIONS).map_err(backend(op))?.len())?,
                secrets: len(txn.open_table(SECRETS).map_err(backend(op))?.len())?,
                audit_entries: len(txn.open_table(AUDIT).map_err(backend(op))?.len())?,
                ..StoreStats::default()
            };
            let outbox = txn.open_table(OUTBOX).map_err(backend(op))?;
            for m in all_json::<OutboxMessage>(&outbox, "outbox")? {
                match m.state {
                    DeliveryState::Queued => stats.outbox_queued += 1,
                    DeliveryState::Dead => stats.outbox_dead += 1,
                    DeliveryState::Sent => {}
                }
            }
            Ok(stats)
        })
    }
}
