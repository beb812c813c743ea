//! Reads outside a write: each method runs in its own read snapshot and
//! never waits for a writer.

use jiff::Timestamp;
use redb::{ReadTransaction, ReadableTable, TableError};

use super::error::backend;
use super::tables::{
    ACTIVE, AUDIT, DUE, KEY_ROTATIONS, KEYS, LATEST, LOCAL_KEYS, META, META_DUPLICATES,
    META_INSTALLATION, META_LAST_SYNC, OUTBOX, ROTATIONS, all_json, decode, due_micros,
    due_timestamp, get_json, parse_state, parse_target, rotation_state,
};
use super::{Db, DueTarget, LocalKey, Store, StoreError};
use crate::model::{
    AuditEntry, Duplicates, KeyRecord, LastUse, OutboxMessage, RotationRecord, RotationState,
};

/// What a status row shows of a rotation: decoded from its record without
/// the rest (history, sinks, keys), which a list of every slot does not need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationGlance {
    /// Rotation id.
    pub id: String,
    /// Its state.
    pub state: RotationState,
    /// In Overlap: what the status shows of the old key (decoded only for
    /// rotations in Overlap).
    pub old_key: Option<OldKeyGlance>,
}

/// The old key of a rotation in Overlap, as a status row shows it: its
/// last use as the provider last reported it, and the in-use alert.
#[derive(Clone, Debug, PartialEq, Eq, Default, serde::Deserialize)]
pub struct OldKeyGlance {
    /// The old key's id.
    #[serde(default, rename = "old_key_id")]
    pub key_id: Option<String>,
    /// Its last use as last reported (`None`: not asked, or the provider
    /// does not report it).
    #[serde(default, rename = "old_last_use")]
    pub last_use: Option<LastUse>,
    /// When keyrot last asked.
    #[serde(default, rename = "old_last_use_checked_at")]
    pub checked_at: Option<Timestamp>,
    /// When the alert that it was still in use at the deadline was raised.
    #[serde(default, rename = "in_use_alerted_at")]
    pub alerted_at: Option<Timestamp>,
}

/// The glance of rotation `id` from its stored record: its state, and in
/// Overlap the old key's fields (the rest is not decoded).
pub(in crate::store) fn rotation_glance(
    id: &str,
    json: &[u8],
) -> Result<RotationGlance, StoreError> {
    let state = rotation_state(id, json)?;
    let old_key = if state == RotationState::Overlap {
        Some(decode::<OldKeyGlance>("rotations", id, json)?)
    } else {
        None
    };
    Ok(RotationGlance {
        id: id.to_owned(),
        state,
        old_key,
    })
}

impl Store {
    /// Reads one slot.
    pub fn key(&self, slot: &str) -> Result<Option<KeyRecord>, StoreError> {
        if let Db::Postgres(pg) = &self.db {
            return pg.key(slot);
        }
        self.read(|txn| {
            let t = txn.open_table(KEYS).map_err(backend("opening keys"))?;
            get_json(&t, "keys", slot)
        })
    }

    /// All slots, sorted by slot id.
    pub fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        if let Db::Postgres(pg) = &self.db {
            return pg.keys();
        }
        self.read(|txn| {
            let t = txn.open_table(KEYS).map_err(backend("opening keys"))?;
            all_json(&t, "keys")
        })
    }

    /// One rotation.
    pub fn rotation(&self, id: &str) -> Result<Option<RotationRecord>, StoreError> {
        if let Db::Postgres(pg) = &self.db {
            return pg.rotation(id);
        }
        self.read(|txn| {
            let t = txn
                .open_table(ROTATIONS)
                .map_err(backend("opening rotations"))?;
            get_json(&t, "rotations", id)
        })
    }

    /// Rotations not in a terminal state, oldest first. Found through the
    /// `latest_rotation` index (a slot runs one rotation at a time, so an
    /// unfinished rotation is its slot's latest; `keyrot store verify`
    /// checks it): O(slots) index entries and O(unfinished) records, never
    /// the history. A store without the index (an older keyrot's, opened
    /// read-only) is scanned.
    pub fn unfinished_rotations(&self) -> Result<Vec<RotationRecord>, StoreError> {
        if let Db::Postgres(pg) = &self.db {
            return pg.unfinished_rotations();
        }
        self.read(|txn| {
            let t = txn
                .open_table(ROTATIONS)
                .map_err(backend("opening rotations"))?;
            let index = match txn.open_table(LATEST) {
                Ok(index) => index,
                Err(TableError::TableDoesNotExist(_)) => {
                    let all: Vec<RotationRecord> = all_json(&t, "rotations")?;
                    return Ok(all.into_iter().filter(|r| !r.state.is_terminal()).collect());
                }
                Err(e) => return Err(backend("opening latest_rotation")(e)),
            };
            let mut ids = Vec::new();
            for item in index.iter().map_err(backend("scanning latest_rotation"))? {
                let (_, v) = item.map_err(backend("scanning latest_rotation"))?;
                let (id, state) = v.value();
                if parse_state(state).is_none_or(|s| !s.is_terminal()) {
                    ids.push(id.to_owned());
                }
            }
            ids.sort_unstable();
            let mut out = Vec::new();
            for id in ids {
                if let Some(rec) = get_json::<RotationRecord>(&t, "rotations", &id)?
                    && !rec.state.is_terminal()
                {
                    out.push(rec);
                }
            }
            Ok(out)
        })
    }

    /// When `provider`'s inventory was last synced successfully (kept in
    /// `meta` by every sync, whether or not it changed a slot).
    pub fn last_sync(&self, provider: &str) -> Result<Option<Timestamp>, StoreError> {
        if let Db::Postgres(pg) = &self.db {
            return pg.last_sync(provider);
        }
        self.read(|txn| {
            let meta = txn.open_table(META).map_err(backend("opening meta"))?;
            let name = format!("{META_LAST_SYNC}{provider}");
            match meta.get(name.as_str()).map_err(backend("reading meta"))? {
                Some(v) => decode("meta", &name, v.value()).map(Some),
                None => Ok(None),
            }
        })
    }

    /// This installation's id ([`META_INSTALLATION`]); none in a store no
    /// read-write keyrot has opened since it was created by an older one.
    pub fn installation(&self) -> Result<Option<String>, StoreError> {
        if let Db::Postgres(pg) = &self.db {
            return pg.installation();
        }
        self.read(|txn| {
            let meta = txn.open_table(META).map_err(backend("opening meta"))?;
            Ok(meta
                .get(META_INSTALLATION)
                .map_err(backend("reading meta"))?
                .map(|v| String::from_utf8_lossy(v.value()).into_owned()))
        })
    }

    /// Every slot's [`Duplicates`], as the last sync of each provider found
    /// them (one short scan of `meta`: most stores hold none).
    pub fn duplicates(&self) -> Result<Duplicates, StoreError> {
        if let Db::Postgres(pg) = &self.db {
            return pg.duplicates();
        }
        self.read(|txn| {
            let meta = txn.open_table(META).map_err(backend("opening meta"))?;
            let mut out = Duplicates::new();
            let range = meta
                .range(META_DUPLICATES..)
                .map_err(backend("scanning meta"))?;
            for item in range {
                let (k, v) = item.map_err(backend("scanning meta"))?;
                let name = k.value();
                if !name.starts_with(META_DUPLICATES) {
                    break;
                }
                out.extend(decode::<Duplicates>("meta", name, v.value())?);
            }
            Ok(out)
        })
    }

    /// Up to `limit` rotations, newest first (ids are UUIDv7, so key order
    /// is creation order), of one slot or of all.
    pub fn rotations(
        &self,
        slot: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RotationRecord>, StoreError> {
        if let Db::Postgres(pg) = &self.db {
            return pg.rotations(slot, limit);
        }
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

    /// Every slot, sorted by slot id, each with the rotation `keyrot
    /// status` shows for it (see [`Store::each_key_json`]).
    pub fn keys_with_rotations(
        &self,
    ) -> Result<Vec<(KeyRecord, Option<RotationGlance>)>, StoreError> {
        let mut out = Vec::new();
        self.each_key_json(|slot, json, shown| {
            out.push((decode("keys", slot, json)?, shown.cloned()));
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `f` with every slot's id and stored JSON record, in slot
    /// order, and the rotation `keyrot status` shows for it: its active
    /// rotation, else its latest one. One read snapshot and one sequential
    /// pass over `keys` alongside the `latest_rotation` and `active`
    /// indexes (all in slot order): no rotation record is read, except an
    /// active one that is not its slot's latest. A store without the index
    /// (an older keyrot's, opened read-only) reads each slot's rotations.
    pub fn each_key_json(
        &self,
        mut f: impl FnMut(&str, &[u8], Option<&RotationGlance>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if let Db::Postgres(pg) = &self.db {
            return {
                for (slot, json, shown) in pg.key_rows()? {
                    f(&slot, &json, shown.as_ref())?;
                }
                Ok(())
            };
        }
        self.read(|txn| {
            let keys = txn.open_table(KEYS).map_err(backend("opening keys"))?;
            let rots = txn
                .open_table(ROTATIONS)
                .map_err(backend("opening rotations"))?;
            let active = txn.open_table(ACTIVE).map_err(backend("opening active"))?;
            let mut active = active
                .iter()
                .map_err(backend("scanning active"))?
                .peekable();
            let latest = match txn.open_table(LATEST) {
                Ok(t) => Some(t),
                Err(TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(backend("opening latest_rotation")(e)),
            };
            let mut latest_it = match &latest {
                Some(t) => Some(
                    t.iter()
                        .map_err(backend("scanning latest_rotation"))?
                        .peekable(),
                ),
                None => None,
            };
            let glance_of = |id: &str| -> Result<Option<RotationGlance>, StoreError> {
                match rots.get(id).map_err(backend("reading a rotation"))? {
                    Some(v) => Ok(Some(rotation_glance(id, v.value())?)),
                    None => Ok(None),
                }
            };
            for item in keys.iter().map_err(backend("scanning keys"))? {
                let (k, v) = item.map_err(backend("scanning keys"))?;
                let slot = k.value();
                let active_id = seek(&mut active, slot)?.map(|(_, v)| v.value().to_owned());
                let latest: Option<RotationGlance> = match latest_it.as_mut() {
                    Some(it) => match seek(it, slot)? {
                        Some((_, v)) => {
                            let (id, state) = v.value();
                            match parse_state(state) {
                                // The old key's fields are in the record.
                                Some(state) if state != RotationState::Overlap => {
                                    Some(RotationGlance {
                                        id: id.to_owned(),
                                        state,
                                        old_key: None,
                                    })
                                }
                                _ => glance_of(id)?,
                            }
                        }
                        None => None,
                    },
                    None => latest_by_scan(txn, slot, &glance_of)?,
                };
                let shown = match active_id {
                    Some(id) if latest.as_ref().is_some_and(|l| l.id == id) => latest,
                    Some(id) => glance_of(&id)?.or(latest),
                    None => latest,
                };
                f(slot, v.value(), shown.as_ref())?;
            }
            Ok(())
        })
    }

    /// The slot's unfinished rotation, as recorded by the last `put_key`.
    pub fn active_rotation(&self, slot: &str) -> Result<Option<String>, StoreError> {
        if let Db::Postgres(pg) = &self.db {
            return pg.active_rotation(slot);
        }
        self.read(|txn| {
            let t = txn.open_table(ACTIVE).map_err(backend("opening active"))?;
            let v = t.get(slot).map_err(backend("reading active"))?;
            Ok(v.map(|v| v.value().to_owned()))
        })
    }

    /// The earliest due-index entry.
    pub fn next_due(&self) -> Result<Option<(Timestamp, DueTarget)>, StoreError> {
        if let Db::Postgres(pg) = &self.db {
            return pg.next_due();
        }
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
        if let Db::Postgres(pg) = &self.db {
            return pg.due_until(due_micros(now));
        }
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
        if let Db::Postgres(pg) = &self.db {
            return pg.due_from(from);
        }
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

    /// Outbox messages, by id.
    pub fn outbox(&self) -> Result<Vec<OutboxMessage>, StoreError> {
        if let Db::Postgres(pg) = &self.db {
            return pg.outbox();
        }
        self.read(|txn| {
            let t = txn.open_table(OUTBOX).map_err(backend("opening outbox"))?;
            all_json(&t, "outbox")
        })
    }

    /// Up to `limit` audit entries with a sequence number above `after`,
    /// in order.
    pub fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let Some(start) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        if let Db::Postgres(pg) = &self.db {
            return pg.audit(start, limit);
        }
        self.read(|txn| {
            let t = txn.open_table(AUDIT).map_err(backend("opening audit"))?;
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

    /// Recomputes every audit entry's hash and link, from the anchor a
    /// retention prune left (if any), and compares the end of the chain
    /// with the recorded head. Returns the number of entries, or
    /// [`StoreError::AuditChainBroken`] at the first entry that fails.
    pub fn verify_audit_chain(&self) -> Result<u64, StoreError> {
        if let Db::Postgres(pg) = &self.db {
            return pg.verify_audit_chain();
        }
        self.read(|txn| super::audit::check_chain(txn).map(|c| c.entries))
    }

    /// Keys of the local provider's registry, by id.
    pub fn local_keys(&self) -> Result<Vec<LocalKey>, StoreError> {
        if let Db::Postgres(pg) = &self.db {
            return pg.local_keys();
        }
        self.read(|txn| {
            let t = txn
                .open_table(LOCAL_KEYS)
                .map_err(backend("opening local_keys"))?;
            all_json(&t, "local_keys")
        })
    }

    /// One key of the local provider's registry.
    pub fn local_key(&self, id: &str) -> Result<Option<LocalKey>, StoreError> {
        if let Db::Postgres(pg) = &self.db {
            return pg.local_key(id);
        }
        self.read(|txn| {
            let t = txn
                .open_table(LOCAL_KEYS)
                .map_err(backend("opening local_keys"))?;
            get_json(&t, "local_keys", id)
        })
    }
}

/// An entry of a `&str`-keyed table.
type Entry<'a, V> = (
    redb::AccessGuard<'a, &'static str>,
    redb::AccessGuard<'a, V>,
);

/// Advances `it` (a table in slot order) to `slot`; returns its entry.
fn seek<'a, V: redb::Value + 'static>(
    it: &mut std::iter::Peekable<redb::Range<'a, &'static str, V>>,
    slot: &str,
) -> Result<Option<Entry<'a, V>>, StoreError> {
    loop {
        let order = match it.peek() {
            None => return Ok(None),
            Some(Ok((k, _))) => k.value().cmp(slot),
            Some(Err(_)) => std::cmp::Ordering::Less,
        };
        match order {
            std::cmp::Ordering::Greater => return Ok(None),
            std::cmp::Ordering::Equal => {
                return it.next().transpose().map_err(backend("scanning an index"));
            }
            std::cmp::Ordering::Less => {
                if let Some(Err(e)) = it.next() {
                    return Err(backend("scanning an index")(e));
                }
            }
        }
    }
}

/// A slot's latest rotation from `key_rotations` (a store without the
/// `latest_rotation` index).
fn latest_by_scan(
    txn: &ReadTransaction,
    slot: &str,
    glance_of: &dyn Fn(&str) -> Result<Option<RotationGlance>, StoreError>,
) -> Result<Option<RotationGlance>, StoreError> {
    let by_slot = txn
        .open_table(KEY_ROTATIONS)
        .map_err(backend("opening key_rotations"))?;
    let end = format!("{slot}\0");
    let last = by_slot
        .range((slot, "")..(end.as_str(), ""))
        .map_err(backend("scanning key_rotations"))?
        .next_back();
    match last {
        Some(item) => {
            let (k, _) = item.map_err(backend("scanning key_rotations"))?;
            glance_of(k.value().1)
        }
        None => Ok(None),
    }
}
