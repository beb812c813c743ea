//! The PostgreSQL store as a redb image: every row of every table read in
//! one `REPEATABLE READ` snapshot and written into a new redb database in
//! memory. It is what `keyrot store backup` writes for this backend, what
//! `keyrot store verify` checks (with the redb store's checks), and a way
//! back to one host.

use std::path::Path;

use redb::{Durability, TableDefinition};

use super::{pg, sql, unsigned};
use crate::store::StoreError;
use crate::store::error::backend;
use crate::store::image::{self, ImageBackend};
use crate::store::tables::{
    ACTIVE, AUDIT, DUE, KEY_ROTATIONS, KEYS, LOCAL_KEYS, META, OUTBOX, ROTATIONS, SECRETS,
};

/// Rows keyed by text, with bytes.
type Blobs = Vec<(String, Vec<u8>)>;

/// Every row, as read in one snapshot.
#[derive(Default)]
struct Rows {
    keys: Blobs,
    rotations: Vec<(String, String, Vec<u8>)>,
    secrets: Blobs,
    outbox: Blobs,
    audit: Vec<(u64, Vec<u8>)>,
    meta: Blobs,
    due: Vec<(i64, String)>,
    local_keys: Blobs,
    active: Vec<(String, String)>,
}

impl super::PgStore {
    /// The bytes of a redb store holding every row (see the module
    /// documentation). `label` names the database in messages.
    pub(in crate::store) fn export_image(&self, label: &Path) -> Result<Vec<u8>, StoreError> {
        let rows = self.on(read_all)?;
        let (mem, bytes) = ImageBackend::memory(Vec::new());
        let copy = image::open(label, mem)?.db;
        let mut txn = copy.begin_write().map_err(backend("starting the copy"))?;
        txn.set_durability(Durability::Immediate)
            .map_err(backend("setting durability"))?;
        {
            let op = "writing the copy";
            let blobs =
                |def: TableDefinition<&str, &[u8]>, rows: &Blobs| -> Result<(), StoreError> {
                    let mut t = txn.open_table(def).map_err(backend(op))?;
                    for (k, v) in rows {
                        t.insert(k.as_str(), v.as_slice()).map_err(backend(op))?;
                    }
                    Ok(())
                };
            blobs(KEYS, &rows.keys)?;
            blobs(SECRETS, &rows.secrets)?;
            blobs(OUTBOX, &rows.outbox)?;
            blobs(META, &rows.meta)?;
            blobs(LOCAL_KEYS, &rows.local_keys)?;
            let mut rots = txn.open_table(ROTATIONS).map_err(backend(op))?;
            let mut by_slot = txn.open_table(KEY_ROTATIONS).map_err(backend(op))?;
            for (id, slot, rec) in &rows.rotations {
                rots.insert(id.as_str(), rec.as_slice())
                    .map_err(backend(op))?;
                by_slot
                    .insert((slot.as_str(), id.as_str()), ())
                    .map_err(backend(op))?;
            }
            let mut audit = txn.open_table(AUDIT).map_err(backend(op))?;
            for (seq, rec) in &rows.audit {
                audit.insert(*seq, rec.as_slice()).map_err(backend(op))?;
            }
            let mut due = txn.open_table(DUE).map_err(backend(op))?;
            for (at, target) in &rows.due {
                due.insert((*at, target.as_str()), ())
                    .map_err(backend(op))?;
            }
            let mut active = txn.open_table(ACTIVE).map_err(backend(op))?;
            for (slot, id) in &rows.active {
                active
                    .insert(slot.as_str(), id.as_str())
                    .map_err(backend(op))?;
            }
        }
        txn.commit().map_err(backend("committing the copy"))?;
        copy.close().map_err(backend("closing the copy"))?;
        Ok(bytes.take())
    }
}

/// Reads every table in one snapshot.
fn read_all(c: &mut postgres::Client) -> Result<Rows, StoreError> {
    let mut t = super::snapshot(c)?;
    let op = "reading the store";
    let mut blobs = |q: &str| -> Result<Blobs, StoreError> {
        Ok(t.query(q, &[])
            .map_err(pg(op))?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    };
    let mut out = Rows {
        keys: blobs(sql::KEYS_ALL)?,
        secrets: blobs(sql::EXPORT_SECRETS)?,
        outbox: blobs(sql::MESSAGES_ALL)?,
        meta: blobs(sql::EXPORT_META)?,
        local_keys: blobs(sql::LOCAL_ALL)?,
        ..Rows::default()
    };
    let all = |t: &mut postgres::Transaction<'_>, q: &str| t.query(q, &[]).map_err(pg(op));
    out.rotations = all(&mut t, sql::EXPORT_ROTATIONS)?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    out.audit = all(&mut t, sql::AUDIT_ALL)?
        .iter()
        .map(|r| (unsigned(r.get(0)), r.get(1)))
        .collect();
    out.due = all(&mut t, sql::EXPORT_DUE)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    out.active = all(&mut t, sql::EXPORT_ACTIVE)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    t.commit().map_err(pg(op))?;
    Ok(out)
}
