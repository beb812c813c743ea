//! A redb store image copied into an empty PostgreSQL store: the other
//! direction of `export.rs`, for `keyrot store migrate --to postgres`.
//!
//! Every row of the image goes in, in one transaction under the write
//! lock, so a failed import leaves the database as it was. The store must
//! hold no data (a fresh one holds only its `meta`, which the image's
//! replaces: schema version, key check, installation id, audit head and
//! anchor, last syncs and duplicates). What PostgreSQL keeps beside the
//! redb tables is derived from the rotations: each one's slot column (the
//! redb store's `key_rotations` index) and `latest_rotation`. Secrets are
//! copied sealed, as they are; the image's key check must open under this
//! store's master key, or nothing is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use postgres::Client;
use postgres::types::ToSql;
use redb::{ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, TableError};

use super::{PgStore, pg, signed, sql, unsigned};
use crate::crypto::MasterKey;
use crate::model::RotationState;
use crate::store::backup::refuse_unknown_tables;
use crate::store::error::backend;
use crate::store::guard::{corrupt, no_panic};
use crate::store::image::{self, ImageBackend};
use crate::store::tables::{
    ACTIVE, AUDIT, DUE, KEY_CHECK_AAD, KEYS, LOCAL_KEYS, META, META_INSTALLATION, META_KEY_CHECK,
    META_SCHEMA, OUTBOX, ROTATIONS, SCHEMA_VERSION, SECRETS, decode, state_name,
};
use crate::store::{StoreError, TableCount};

/// Rows sent in one statement, at most (and at most [`BATCH_BYTES`]).
const BATCH_ROWS: usize = 5_000;
/// Bytes of records sent in one statement, about.
const BATCH_BYTES: usize = 8 * 1024 * 1024;

/// What [`crate::store::Store::import_image`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportSummary {
    /// Rows written per table, under the redb store's table names
    /// (`latest_rotation` derived from the rotations; `meta` the image's).
    pub tables: Vec<TableCount>,
}

/// Rows keyed by text, with bytes.
type Blobs = Vec<(String, Vec<u8>)>;

/// Every row of an image, ready for PostgreSQL.
#[derive(Default)]
struct Rows {
    meta: Blobs,
    keys: Blobs,
    /// Id, slot, record.
    rotations: Vec<(String, String, Vec<u8>)>,
    /// Slot, its greatest rotation id, that rotation's state.
    latest: Vec<(String, String, String)>,
    secrets: Blobs,
    outbox: Blobs,
    audit: Vec<(i64, Vec<u8>)>,
    due: Vec<(i64, String)>,
    local_keys: Blobs,
    active: Vec<(String, String)>,
}

impl PgStore {
    /// Copies every row of the redb image `bytes` into this store, which
    /// must be empty (see the module documentation). `label` names this
    /// store in messages.
    pub(in crate::store) fn import_image(
        &self,
        master: &Arc<MasterKey>,
        label: &Path,
        bytes: &[u8],
    ) -> Result<ImportSummary, StoreError> {
        let source = Path::new("(the store image to import)");
        let rows = no_panic(source, || read_image(source, bytes, master))?;
        let tx = self.begin(Arc::clone(master))?;
        let label = label.to_path_buf();
        let tables = tx.run(move |c| write_rows(c, &label, rows))?;
        // On an error above, dropping `tx` rolls everything back.
        tx.commit().map_err(|e| StoreError::Backend {
            op: "committing the import",
            detail: format!(
                "{} (whether it is durable is unknown: if the database now holds keyrot data, empty it before trying again)",
                match e {
                    StoreError::CommitFailed(why) => why,
                    other => other.to_string(),
                }
            ),
        })?;
        Ok(ImportSummary { tables })
    }
}

/// Reads every table of the image, after checking its schema version and
/// that `master` opens its key check.
fn read_image(label: &Path, bytes: &[u8], master: &MasterKey) -> Result<Rows, StoreError> {
    let db = image::open(label, ImageBackend::memory(bytes.to_vec()).0)?.db;
    let txn = db
        .begin_read()
        .map_err(backend("reading the store image"))?;
    refuse_unknown_tables(&txn)?;
    let meta = blobs(&txn, META)?;
    check_meta(label, &meta, master)?;
    let mut out = Rows {
        meta,
        keys: blobs(&txn, KEYS)?,
        secrets: blobs(&txn, SECRETS)?,
        outbox: blobs(&txn, OUTBOX)?,
        local_keys: blobs(&txn, LOCAL_KEYS)?,
        ..Rows::default()
    };
    let op = "reading the store image";
    // Rotations come in id order: the last one seen of a slot is its
    // latest (as `latest_rotation` has it).
    let mut latest: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (id, rec) in blobs(&txn, ROTATIONS)? {
        let glance: Glance = decode("rotations", &id, &rec)?;
        latest.insert(glance.slot.clone(), (id.clone(), state_name(glance.state)));
        out.rotations.push((id, glance.slot, rec));
    }
    out.latest = latest
        .into_iter()
        .map(|(slot, (id, state))| (slot, id, state))
        .collect();
    if let Some(t) = open(&txn, AUDIT)? {
        for item in t.iter().map_err(backend(op))? {
            let (k, v) = item.map_err(backend(op))?;
            out.audit.push((signed(k.value()), v.value().to_vec()));
        }
    }
    if let Some(t) = open(&txn, DUE)? {
        for item in t.iter().map_err(backend(op))? {
            let (k, _) = item.map_err(backend(op))?;
            let (at, target) = k.value();
            out.due.push((at, target.to_owned()));
        }
    }
    if let Some(t) = open(&txn, ACTIVE)? {
        for item in t.iter().map_err(backend(op))? {
            let (k, v) = item.map_err(backend(op))?;
            out.active
                .push((k.value().to_owned(), v.value().to_owned()));
        }
    }
    Ok(out)
}

/// What the import needs of a rotation record.
#[derive(serde::Deserialize)]
struct Glance {
    /// Its slot.
    slot: String,
    /// Its state.
    state: RotationState,
}

/// The image's schema version is one this keyrot reads, and `master` is
/// the key its secrets are sealed under.
fn check_meta(label: &Path, meta: &Blobs, master: &MasterKey) -> Result<(), StoreError> {
    let get = |name: &str| meta.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let Some(version) = get(META_SCHEMA) else {
        return Err(corrupt(label, "it has no schema version"));
    };
    let found = <[u8; 8]>::try_from(version.as_slice())
        .map(u64::from_be_bytes)
        .map_err(|_| corrupt(label, "its schema version is not 8 bytes"))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let Some(check) = get(META_KEY_CHECK) else {
        return Err(corrupt(label, "it has no master-key check"));
    };
    if master.open(KEY_CHECK_AAD, check).is_err() {
        return Err(StoreError::WrongMasterKey {
            path: label.to_path_buf(),
        });
    }
    Ok(())
}

/// A table of the image, `None` when it has none.
fn open<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    def: TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, StoreError> {
    match txn.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(backend("opening a table of the store image")(e)),
    }
}

/// Every row of a `&str → bytes` table of the image, in key order.
fn blobs(txn: &ReadTransaction, def: TableDefinition<&str, &[u8]>) -> Result<Blobs, StoreError> {
    let op = "reading the store image";
    let Some(t) = open(txn, def)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for item in t.iter().map_err(backend(op))? {
        let (k, v) = item.map_err(backend(op))?;
        out.push((k.value().to_owned(), v.value().to_vec()));
    }
    Ok(out)
}

/// Inside the import's transaction: refuses a store that holds data, then
/// writes every row (each batch statement must write every row it was
/// given).
fn write_rows(c: &mut Client, label: &Path, rows: Rows) -> Result<Vec<TableCount>, StoreError> {
    refuse_data(c, label)?;
    c.execute(sql::IMPORT_META_CLEAR, &[&META_INSTALLATION])
        .map_err(pg("importing meta"))?;
    Ok(vec![
        insert(c, sql::IMPORT_KEYS, "keys", &rows.keys)?,
        insert(c, sql::IMPORT_ROTATIONS, "rotations", &rows.rotations)?,
        insert(c, sql::IMPORT_SECRETS, "secrets", &rows.secrets)?,
        insert(c, sql::IMPORT_OUTBOX, "outbox", &rows.outbox)?,
        insert(c, sql::IMPORT_AUDIT, "audit", &rows.audit)?,
        insert(c, sql::IMPORT_META, "meta", &rows.meta)?,
        insert(c, sql::IMPORT_DUE, "due", &rows.due)?,
        insert(c, sql::IMPORT_LOCAL_KEYS, "local_keys", &rows.local_keys)?,
        insert(c, sql::IMPORT_ACTIVE, "active", &rows.active)?,
        insert(c, sql::IMPORT_LATEST, "latest_rotation", &rows.latest)?,
    ])
}

/// Refuses a store holding any row outside `meta`.
fn refuse_data(c: &mut Client, label: &Path) -> Result<(), StoreError> {
    let row = c
        .query_one(sql::IMPORT_ROWS, &[])
        .map_err(pg("counting the rows already there"))?;
    let names = [
        "keys",
        "rotations",
        "sealed secrets",
        "outbox messages",
        "audit entries",
        "local-provider keys",
        "due-index entries",
        "active-rotation entries",
        "latest-rotation entries",
    ];
    let mut holds = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let n: i64 = row
            .try_get(i)
            .map_err(pg("counting the rows already there"))?;
        if n > 0 {
            holds.push(format!("{name} {}", unsigned(n)));
        }
    }
    if holds.is_empty() {
        return Ok(());
    }
    Err(StoreError::NotEmpty {
        path: PathBuf::from(label),
        holds: holds.join(", "),
    })
}

/// A row shape of a batch insert: one array parameter per column.
trait Columns: Sized {
    /// The batch's columns, in the statement's parameter order.
    fn columns(rows: &[Self]) -> Vec<Box<dyn ToSql + Sync + '_>>;
    /// About how many bytes the row sends.
    fn size(&self) -> usize;
}

impl Columns for (String, Vec<u8>) {
    fn columns(rows: &[Self]) -> Vec<Box<dyn ToSql + Sync + '_>> {
        vec![
            Box::new(rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>()),
            Box::new(rows.iter().map(|r| r.1.as_slice()).collect::<Vec<_>>()),
        ]
    }
    fn size(&self) -> usize {
        self.0.len() + self.1.len()
    }
}

impl Columns for (String, String) {
    fn columns(rows: &[Self]) -> Vec<Box<dyn ToSql + Sync + '_>> {
        vec![
            Box::new(rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>()),
            Box::new(rows.iter().map(|r| r.1.as_str()).collect::<Vec<_>>()),
        ]
    }
    fn size(&self) -> usize {
        self.0.len() + self.1.len()
    }
}

impl Columns for (i64, Vec<u8>) {
    fn columns(rows: &[Self]) -> Vec<Box<dyn ToSql + Sync + '_>> {
        vec![
            Box::new(rows.iter().map(|r| r.0).collect::<Vec<_>>()),
            Box::new(rows.iter().map(|r| r.1.as_slice()).collect::<Vec<_>>()),
        ]
    }
    fn size(&self) -> usize {
        8 + self.1.len()
    }
}

impl Columns for (i64, String) {
    fn columns(rows: &[Self]) -> Vec<Box<dyn ToSql + Sync + '_>> {
        vec![
            Box::new(rows.iter().map(|r| r.0).collect::<Vec<_>>()),
            Box::new(rows.iter().map(|r| r.1.as_str()).collect::<Vec<_>>()),
        ]
    }
    fn size(&self) -> usize {
        8 + self.1.len()
    }
}

impl Columns for (String, String, Vec<u8>) {
    fn columns(rows: &[Self]) -> Vec<Box<dyn ToSql + Sync + '_>> {
        vec![
            Box::new(rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>()),
            Box::new(rows.iter().map(|r| r.1.as_str()).collect::<Vec<_>>()),
            Box::new(rows.iter().map(|r| r.2.as_slice()).collect::<Vec<_>>()),
        ]
    }
    fn size(&self) -> usize {
        self.0.len() + self.1.len() + self.2.len()
    }
}

impl Columns for (String, String, String) {
    fn columns(rows: &[Self]) -> Vec<Box<dyn ToSql + Sync + '_>> {
        vec![
            Box::new(rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>()),
            Box::new(rows.iter().map(|r| r.1.as_str()).collect::<Vec<_>>()),
            Box::new(rows.iter().map(|r| r.2.as_str()).collect::<Vec<_>>()),
        ]
    }
    fn size(&self) -> usize {
        self.0.len() + self.1.len() + self.2.len()
    }
}

/// Writes `rows` into `table` with the batch statement `query`, in
/// batches of at most [`BATCH_ROWS`] rows and about [`BATCH_BYTES`] bytes;
/// the rows written, which must be all of them.
fn insert<R: Columns>(
    c: &mut Client,
    query: &str,
    table: &str,
    rows: &[R],
) -> Result<TableCount, StoreError> {
    let op = "importing rows";
    let mut written = 0u64;
    let (mut start, mut bytes) = (0usize, 0usize);
    for (i, row) in rows.iter().enumerate() {
        bytes += row.size();
        let last = i + 1 == rows.len();
        if last || i + 1 - start >= BATCH_ROWS || bytes >= BATCH_BYTES {
            let columns = R::columns(&rows[start..=i]);
            let params: Vec<&(dyn ToSql + Sync)> = columns
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                .collect();
            written += c.execute(query, &params).map_err(pg(op))?;
            (start, bytes) = (i + 1, 0);
        }
    }
    if written != rows.len() as u64 {
        return Err(StoreError::Backend {
            op,
            detail: format!(
                "table {table}: {written} rows written of the image's {}",
                rows.len()
            ),
        });
    }
    Ok(TableCount {
        table: table.to_owned(),
        rows: written,
    })
}
