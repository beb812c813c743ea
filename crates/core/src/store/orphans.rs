//! Where the inventory sync keeps each provider's orphans (keys that carry
//! keyrot's tag but belong to no rotation keyrot knows): one `meta` entry
//! per provider, `orphans:NAME`, JSON, absent when there are none. Being
//! in `meta`, they go with backups, restores and migrations as they are;
//! `keyrot status` reads them without asking any provider.

use redb::ReadableTable;

use super::error::backend;
use super::tables::{META, decode, encode};
use super::tx::{Tx, TxInner};
use super::{Db, Store, StoreError};
use crate::model::{Orphan, Orphans};

/// Meta key prefix of a provider's [`Orphans`], e.g. `orphans:local`.
pub(super) const META_ORPHANS: &str = "orphans:";

fn entry(provider: &str) -> String {
    format!("{META_ORPHANS}{provider}")
}

impl Tx {
    /// Replaces the orphans of `provider` (none removes the entry).
    pub fn set_orphans(&mut self, provider: &str, list: &[Orphan]) -> Result<(), StoreError> {
        let name = entry(provider);
        let bytes = match list.is_empty() {
            true => None,
            false => Some(encode("meta", &name, &list)?),
        };
        match &mut self.inner {
            TxInner::Redb(t) => {
                let mut meta = t.txn.open_table(META).map_err(backend("opening meta"))?;
                match bytes {
                    Some(b) => meta
                        .insert(name.as_str(), b.as_slice())
                        .map_err(backend("writing meta"))
                        .map(drop),
                    None => meta
                        .remove(name.as_str())
                        .map_err(backend("writing meta"))
                        .map(drop),
                }
            }
            TxInner::Pg(t) => t.put_meta(name, bytes),
        }
    }

    /// The orphans of `provider` as this transaction sees them.
    pub fn orphans_of(&self, provider: &str) -> Result<Orphans, StoreError> {
        let name = entry(provider);
        let bytes = match &self.inner {
            TxInner::Redb(t) => {
                let meta = t.txn.open_table(META).map_err(backend("opening meta"))?;
                meta.get(name.as_str())
                    .map_err(backend("reading meta"))?
                    .map(|v| v.value().to_vec())
            }
            TxInner::Pg(t) => t.get_meta(name.clone())?,
        };
        match bytes {
            Some(b) => decode::<Orphans>("meta", &name, &b),
            None => Ok(Orphans::new()),
        }
    }
}

impl Store {
    /// Every provider's orphans as its last sync found them, by provider
    /// then key id (one short scan of `meta`: most stores hold none).
    pub fn orphans(&self) -> Result<Orphans, StoreError> {
        let entries: Vec<(String, Vec<u8>)> = match &self.db {
            Db::Postgres(pg) => pg.meta_with_prefix(META_ORPHANS)?,
            _ => self.read(|txn| {
                let meta = txn.open_table(META).map_err(backend("opening meta"))?;
                let mut out = Vec::new();
                let range = meta
                    .range(META_ORPHANS..)
                    .map_err(backend("scanning meta"))?;
                for item in range {
                    let (k, v) = item.map_err(backend("scanning meta"))?;
                    if !k.value().starts_with(META_ORPHANS) {
                        break;
                    }
                    out.push((k.value().to_owned(), v.value().to_vec()));
                }
                Ok(out)
            })?,
        };
        let mut out = Orphans::new();
        for (name, bytes) in entries {
            out.extend(decode::<Orphans>("meta", &name, &bytes)?);
        }
        Ok(out)
    }
}
