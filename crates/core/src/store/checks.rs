//! The record checks of `keyrot store verify` (see [`super::verify`]),
//! run in one read transaction of an image of the store: schema and key
//! check, every row decoding under its own id, the cross-references the
//! store keeps in step, sealed secrets and the audit hash chain. Each
//! finding is added to the report; an `Err` means the tables could not be
//! read at all.

use std::collections::{BTreeMap, BTreeSet};

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, TableHandle};

use super::audit::check_chain;
use super::error::backend;
use super::tables::{
    ACTIVE, AUDIT, DERIVED_TABLES, DUE, KEY_CHECK_AAD, KEY_ROTATIONS, KEYS, LATEST, LOCAL_KEYS,
    META, META_AUDIT_HEAD, META_KEY_CHECK, META_SCHEMA, OUTBOX, ROTATIONS, SCHEMA_VERSION, SECRETS,
    TABLE_NAMES, decode, due_micros, parse_target, rotation_timer, secret_aad, state_name,
};
use super::{DueTarget, LocalKey, StoreError, TableCount, VerifyReport};
use crate::crypto::MasterKey;
use crate::model::{KeyRecord, OutboxMessage, RotationRecord, RotationState};

/// The record checks, in one read transaction.
pub(super) struct Checker<'a> {
    /// Where findings go.
    pub report: &'a mut VerifyReport,
    /// The master key, when available.
    pub master: Option<&'a MasterKey>,
}

impl Checker<'_> {
    /// Every check; an `Err` is a failure to read at all.
    pub(super) fn run(mut self, txn: &ReadTransaction) -> Result<(), StoreError> {
        self.count_tables(txn)?;
        self.meta(txn)?;
        let keys = self.keys(txn)?;
        let rotations = self.rotations(txn, &keys)?;
        self.key_rotations(txn, &rotations)?;
        self.latest(txn, &rotations)?;
        self.active(txn, &keys, &rotations)?;
        self.due(txn, &keys, &rotations)?;
        self.secrets(txn, &rotations)?;
        self.outbox(txn)?;
        self.local_keys(txn)?;
        self.audit(txn)?;
        Ok(())
    }

    /// Counts every table's rows; flags missing and unknown tables.
    fn count_tables(&mut self, txn: &ReadTransaction) -> Result<(), StoreError> {
        let present: BTreeSet<String> = txn
            .list_tables()
            .map_err(backend("listing tables"))?
            .map(|t| t.name().to_owned())
            .collect();
        for name in &present {
            if !TABLE_NAMES.contains(&name.as_str()) {
                self.report.problem(format!(
                    "table {name:?} is unknown to this keyrot (written by a newer one?)"
                ));
            }
        }
        for name in TABLE_NAMES {
            if !present.contains(name) {
                // A derived index is rebuilt by the next read-write open.
                if !DERIVED_TABLES.contains(&name) {
                    self.report.problem(format!("table {name:?} is missing"));
                }
                continue;
            }
            // Derived indexes are checked against their tables below, not
            // listed with the data.
            if DERIVED_TABLES.contains(&name) {
                continue;
            }
            let op = "counting rows";
            let rows = match name {
                "key_rotations" => txn.open_table(KEY_ROTATIONS).map_err(backend(op))?.len(),
                "audit" => txn.open_table(AUDIT).map_err(backend(op))?.len(),
                "due" => txn.open_table(DUE).map_err(backend(op))?.len(),
                "active" => txn.open_table(ACTIVE).map_err(backend(op))?.len(),
                _ => txn
                    .open_table(redb::TableDefinition::<&str, &[u8]>::new(name))
                    .map_err(backend(op))?
                    .len(),
            }
            .map_err(backend(op))?;
            self.report.tables.push(TableCount {
                table: name.to_owned(),
                rows,
            });
        }
        Ok(())
    }

    /// Schema version, master-key check and audit head.
    fn meta(&mut self, txn: &ReadTransaction) -> Result<(), StoreError> {
        let Ok(meta) = txn.open_table(META) else {
            return Ok(());
        };
        let get = |k: &str| -> Result<Option<Vec<u8>>, StoreError> {
            Ok(meta
                .get(k)
                .map_err(backend("reading meta"))?
                .map(|v| v.value().to_vec()))
        };
        match get(META_SCHEMA)?.map(|v| <[u8; 8]>::try_from(v.as_slice())) {
            None => self.report.problem("no schema version: not a keyrot store"),
            Some(Err(_)) => self.report.problem("the schema version is not 8 bytes"),
            Some(Ok(b)) => {
                let v = u64::from_be_bytes(b);
                self.report.schema_version = Some(v);
                if v == 0 || v > SCHEMA_VERSION {
                    self.report.problem(format!(
                        "schema version {v}: this keyrot reads versions 1 to {SCHEMA_VERSION}"
                    ));
                }
            }
        }
        match (get(META_KEY_CHECK)?, self.master) {
            (None, _) => self
                .report
                .problem("the meta table has no master-key check"),
            (Some(sealed), Some(master)) if master.open(KEY_CHECK_AAD, &sealed).is_err() => {
                self.report.problem("the master key given is not the one this store was created with: its secrets cannot be checked");
                self.report.wrong_master_key = true;
                self.master = None;
            }
            _ => {}
        }
        if let Some(head) = get(META_AUDIT_HEAD)?
            && let Err(e) = decode::<(u64, String)>("meta", META_AUDIT_HEAD, &head)
        {
            self.report.problem(e.to_string());
        }
        self.report.secrets_checked = self.master.is_some();
        Ok(())
    }

    /// Decodes every slot; returns them by slot.
    fn keys(&mut self, txn: &ReadTransaction) -> Result<BTreeMap<String, KeyRecord>, StoreError> {
        let mut out = BTreeMap::new();
        let Ok(t) = txn.open_table(KEYS) else {
            return Ok(out);
        };
        for item in t.iter().map_err(backend("scanning keys"))? {
            let (k, v) = item.map_err(backend("scanning keys"))?;
            match decode::<KeyRecord>("keys", k.value(), v.value()) {
                Ok(rec) if rec.slot != k.value() => self.report.problem(format!(
                    "keys: record {:?} is filed under {:?}",
                    rec.slot,
                    k.value()
                )),
                Ok(rec) => {
                    out.insert(rec.slot.clone(), rec);
                }
                Err(e) => self.report.problem(e.to_string()),
            }
        }
        Ok(out)
    }

    /// Decodes every rotation; an unfinished one must have its slot.
    fn rotations(
        &mut self,
        txn: &ReadTransaction,
        keys: &BTreeMap<String, KeyRecord>,
    ) -> Result<BTreeMap<String, RotationRecord>, StoreError> {
        let mut out = BTreeMap::new();
        let Ok(t) = txn.open_table(ROTATIONS) else {
            return Ok(out);
        };
        for item in t.iter().map_err(backend("scanning rotations"))? {
            let (k, v) = item.map_err(backend("scanning rotations"))?;
            match decode::<RotationRecord>("rotations", k.value(), v.value()) {
                Ok(rec) if rec.id != k.value() => self.report.problem(format!(
                    "rotations: record {:?} is filed under {:?}",
                    rec.id,
                    k.value()
                )),
                Ok(rec) => {
                    if !rec.state.is_terminal() && !keys.contains_key(&rec.slot) {
                        self.report.problem(format!(
                            "rotation {} ({:?}) is unfinished but its slot {} does not exist",
                            rec.id, rec.state, rec.slot
                        ));
                    }
                    out.insert(rec.id.clone(), rec);
                }
                Err(e) => self.report.problem(e.to_string()),
            }
        }
        Ok(out)
    }

    /// `key_rotations` lists exactly the rotations, under their slots.
    fn key_rotations(
        &mut self,
        txn: &ReadTransaction,
        rotations: &BTreeMap<String, RotationRecord>,
    ) -> Result<(), StoreError> {
        let Ok(t) = txn.open_table(KEY_ROTATIONS) else {
            return Ok(());
        };
        let mut listed = BTreeSet::new();
        for item in t.iter().map_err(backend("scanning key_rotations"))? {
            let (k, _) = item.map_err(backend("scanning key_rotations"))?;
            let (slot, id) = k.value();
            match rotations.get(id) {
                None => self.report.problem(format!(
                    "key_rotations lists rotation {id} under {slot}, but there is no such rotation"
                )),
                Some(r) if r.slot != slot => self.report.problem(format!(
                    "key_rotations lists rotation {id} under {slot}, but it rotates {}",
                    r.slot
                )),
                Some(_) => {
                    listed.insert(id.to_owned());
                }
            }
        }
        for (id, r) in rotations {
            if !listed.contains(id) {
                self.report.problem(format!(
                    "rotation {id} is not listed under its slot {} (key_rotations)",
                    r.slot
                ));
            }
        }
        Ok(())
    }

    /// `latest_rotation` names each slot's rotation with the greatest id,
    /// in its state (a missing index is rebuilt at the next open).
    fn latest(
        &mut self,
        txn: &ReadTransaction,
        rotations: &BTreeMap<String, RotationRecord>,
    ) -> Result<(), StoreError> {
        let Ok(t) = txn.open_table(LATEST) else {
            return Ok(());
        };
        // Rotations are in id order: the last one of a slot is its latest.
        let mut wanted: BTreeMap<&str, &RotationRecord> = BTreeMap::new();
        for r in rotations.values() {
            wanted.insert(&r.slot, r);
        }
        let mut seen = BTreeSet::new();
        for item in t.iter().map_err(backend("scanning latest_rotation"))? {
            let (k, v) = item.map_err(backend("scanning latest_rotation"))?;
            let (slot, (id, state)) = (k.value(), v.value());
            seen.insert(slot.to_owned());
            match wanted.get(slot) {
                Some(r) if r.id == id && state_name(r.state) == state => {}
                Some(r) => self.report.problem(format!(
                    "the latest-rotation index says {slot}'s latest rotation is {id} ({state}), but it is {} ({:?})",
                    r.id, r.state
                )),
                None => self.report.problem(format!(
                    "the latest-rotation index names rotation {id} for {slot}, which has no rotation"
                )),
            }
        }
        for r in rotations.values() {
            if !r.state.is_terminal() && wanted.get(r.slot.as_str()).is_some_and(|l| l.id != r.id) {
                self.report.problem(format!(
                    "rotation {} ({:?}) is unfinished but not its slot's latest: a restart would not resume it",
                    r.id, r.state
                ));
            }
        }
        for (slot, r) in wanted {
            if !seen.contains(slot) {
                self.report.problem(format!(
                    "slot {slot} has rotations (latest {}) but no entry in the latest-rotation index",
                    r.id
                ));
            }
        }
        Ok(())
    }

    /// `active` and each slot's `active_rotation` agree, and point at a
    /// rotation of that slot that is not Completed or Aborted.
    fn active(
        &mut self,
        txn: &ReadTransaction,
        keys: &BTreeMap<String, KeyRecord>,
        rotations: &BTreeMap<String, RotationRecord>,
    ) -> Result<(), StoreError> {
        let Ok(t) = txn.open_table(ACTIVE) else {
            return Ok(());
        };
        let mut table = BTreeMap::new();
        for item in t.iter().map_err(backend("scanning active"))? {
            let (k, v) = item.map_err(backend("scanning active"))?;
            table.insert(k.value().to_owned(), v.value().to_owned());
        }
        for (slot, key) in keys {
            if key.active_rotation != table.get(slot).cloned() {
                self.report.problem(format!(
                    "slot {slot}: its active rotation ({}) and the active table ({}) disagree",
                    key.active_rotation.as_deref().unwrap_or("none"),
                    table.get(slot).map_or("none", String::as_str)
                ));
            }
        }
        for (slot, id) in &table {
            if !keys.contains_key(slot) {
                self.report.problem(format!(
                    "the active table names rotation {id} for slot {slot}, which does not exist"
                ));
            }
            match rotations.get(id) {
                None => self.report.problem(format!(
                    "slot {slot}: its active rotation {id} does not exist"
                )),
                Some(r) if r.slot != *slot => self.report.problem(format!(
                    "slot {slot}: its active rotation {id} rotates {}",
                    r.slot
                )),
                Some(r) if matches!(r.state, RotationState::Completed | RotationState::Aborted) => {
                    self.report.problem(format!(
                        "slot {slot}: its active rotation {id} is already {:?}",
                        r.state
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Every due entry matches its record, and every instant has its entry.
    fn due(
        &mut self,
        txn: &ReadTransaction,
        keys: &BTreeMap<String, KeyRecord>,
        rotations: &BTreeMap<String, RotationRecord>,
    ) -> Result<(), StoreError> {
        let Ok(t) = txn.open_table(DUE) else {
            return Ok(());
        };
        let mut entries = BTreeSet::new();
        for item in t.iter().map_err(backend("scanning due"))? {
            let (k, _) = item.map_err(backend("scanning due"))?;
            let (micros, target) = k.value();
            entries.insert((micros, target.to_owned()));
            let expected = match parse_target(target) {
                Err(e) => {
                    self.report.problem(e.to_string());
                    continue;
                }
                Ok(DueTarget::Key(slot)) => match keys.get(&slot) {
                    None => {
                        self.report.problem(format!(
                            "due index: entry for slot {slot}, which does not exist"
                        ));
                        continue;
                    }
                    Some(k) => k.next_due,
                },
                Ok(DueTarget::Rotation(id)) => match rotations.get(&id) {
                    None => {
                        self.report.problem(format!(
                            "due index: entry for rotation {id}, which does not exist"
                        ));
                        continue;
                    }
                    Some(r) => rotation_timer(r),
                },
            };
            if expected.map(due_micros) != Some(micros) {
                self.report.problem(format!(
                    "due index: entry {target} at {micros} µs does not match its record's instant"
                ));
            }
        }
        let wanted = keys
            .values()
            .filter_map(|k| Some((k.next_due?, format!("k:{}", k.slot))))
            .chain(
                rotations
                    .values()
                    .filter_map(|r| Some((rotation_timer(r)?, format!("r:{}", r.id)))),
            );
        for (at, target) in wanted {
            if !entries.contains(&(due_micros(at), target.clone())) {
                self.report.problem(format!(
                    "due index: {target} is due at {at} but has no entry (the scheduler would never wake for it)"
                ));
            }
        }
        Ok(())
    }

    /// Every sealed secret belongs to a rotation and opens under the key.
    fn secrets(
        &mut self,
        txn: &ReadTransaction,
        rotations: &BTreeMap<String, RotationRecord>,
    ) -> Result<(), StoreError> {
        let Ok(t) = txn.open_table(SECRETS) else {
            return Ok(());
        };
        for item in t.iter().map_err(backend("scanning secrets"))? {
            let (k, v) = item.map_err(backend("scanning secrets"))?;
            let name = k.value();
            // `ID` holds a rotation's new secret, `ID#psk` its envelope.
            let rotation = name.split_once('#').map_or(name, |(id, _)| id);
            if !rotations.contains_key(rotation) {
                self.report.problem(format!(
                    "secret {name:?} belongs to rotation {rotation}, which does not exist"
                ));
            }
            let Some(master) = self.master else { continue };
            match master.open(&secret_aad(name), v.value()) {
                Ok(plain) if std::str::from_utf8(&plain).is_ok() => {
                    self.report.secrets_opened += 1;
                }
                Ok(_) => self
                    .report
                    .problem(format!("secret {name:?} opens but is not UTF-8 text")),
                Err(_) => self.report.problem(format!(
                    "secret {name:?} does not open under the master key (altered, or sealed for another row)"
                )),
            }
        }
        Ok(())
    }

    /// Every outbox message decodes and is filed under its id.
    fn outbox(&mut self, txn: &ReadTransaction) -> Result<(), StoreError> {
        let Ok(t) = txn.open_table(OUTBOX) else {
            return Ok(());
        };
        for item in t.iter().map_err(backend("scanning outbox"))? {
            let (k, v) = item.map_err(backend("scanning outbox"))?;
            match decode::<OutboxMessage>("outbox", k.value(), v.value()) {
                Ok(m) if m.id != k.value() => self.report.problem(format!(
                    "outbox: message {:?} is filed under {:?}",
                    m.id,
                    k.value()
                )),
                Ok(_) => {}
                Err(e) => self.report.problem(e.to_string()),
            }
        }
        Ok(())
    }

    /// Every local-provider key decodes and is filed under its id.
    fn local_keys(&mut self, txn: &ReadTransaction) -> Result<(), StoreError> {
        let Ok(t) = txn.open_table(LOCAL_KEYS) else {
            return Ok(());
        };
        for item in t.iter().map_err(backend("scanning local_keys"))? {
            let (k, v) = item.map_err(backend("scanning local_keys"))?;
            match decode::<LocalKey>("local_keys", k.value(), v.value()) {
                Ok(lk) if lk.id != k.value() => self.report.problem(format!(
                    "local_keys: key {:?} is filed under {:?}",
                    lk.id,
                    k.value()
                )),
                Ok(_) => {}
                Err(e) => self.report.problem(e.to_string()),
            }
        }
        Ok(())
    }

    /// The audit hash chain, entry by entry from its anchor, then its head.
    fn audit(&mut self, txn: &ReadTransaction) -> Result<(), StoreError> {
        if txn.open_table(AUDIT).is_err() {
            return Ok(());
        }
        match check_chain(txn) {
            Ok(chain) => {
                self.report.audit_entries = chain.entries;
                self.report.audit_first = chain.first;
                self.report.audit_chain_ok = true;
            }
            Err(e) => self.report.problem(e.to_string()),
        }
        Ok(())
    }
}
