//! Reads that count and measure: record counts for `keyrot status` and
//! the metrics, and per-table sizes for sizing a store.

use redb::{ReadableTableMetadata, TableError};

use super::error::backend;
use super::tables::{
    ACTIVE, AUDIT, DUE, KEY_ROTATIONS, KEYS, LATEST, LOCAL_KEYS, META, OUTBOX, ROTATIONS, SECRETS,
    all_json,
};
use super::{Db, Store, StoreError, StoreStats};
use crate::model::{DeliveryState, OutboxMessage};

impl Store {
    /// Per table: its name, rows, and the bytes its rows take (keys and
    /// values) and its tree's pages take beyond them (redb's figures), for
    /// sizing a store (the scale benchmark reports them).
    pub fn table_sizes(&self) -> Result<Vec<(String, u64, u64, u64)>, StoreError> {
        if let Db::Postgres(pg) = &self.db {
            return pg.table_sizes();
        }
        self.read(|txn| {
            let op = "measuring tables";
            let mut out = Vec::new();
            let mut push = |name: &str,
                            rows: Result<u64, redb::StorageError>,
                            stats: Result<redb::TableStats, redb::StorageError>|
             -> Result<(), StoreError> {
                let stats = stats.map_err(backend(op))?;
                let overhead = stats.metadata_bytes() + stats.fragmented_bytes();
                out.push((
                    name.to_owned(),
                    rows.map_err(backend(op))?,
                    stats.stored_bytes(),
                    overhead,
                ));
                Ok(())
            };
            macro_rules! measure {
                ($name:expr, $def:expr) => {
                    match txn.open_table($def) {
                        Ok(t) => push($name, t.len(), t.stats())?,
                        Err(TableError::TableDoesNotExist(_)) => {}
                        Err(e) => return Err(backend(op)(e)),
                    }
                };
            }
            measure!("keys", KEYS);
            measure!("rotations", ROTATIONS);
            measure!("key_rotations", KEY_ROTATIONS);
            measure!("secrets", SECRETS);
            measure!("outbox", OUTBOX);
            measure!("audit", AUDIT);
            measure!("meta", META);
            measure!("due", DUE);
            measure!("local_keys", LOCAL_KEYS);
            measure!("active", ACTIVE);
            measure!("latest_rotation", LATEST);
            Ok(out)
        })
    }

    /// Record counts.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        if let Db::Postgres(pg) = &self.db {
            return pg.stats();
        }
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
