//! Reads of the sealed secrets: one unsealed with the master key, and
//! which rotations have one (for checks, without unsealing).

use redb::ReadableTable;
use secrecy::SecretString;

use super::error::backend;
use super::tables::{SECRETS, secret_aad};
use super::{Db, Store, StoreError};
use crate::crypto::MasterKey;

impl Store {
    /// Unseals a rotation's secret; `None` when there is none (never
    /// issued, or wiped). Needs the master key (not on a read-only open).
    pub fn secret(&self, rotation: &str) -> Result<Option<SecretString>, StoreError> {
        let Some(master) = &self.master else {
            return Err(self.read_only("unsealing a secret"));
        };
        if let Db::Postgres(pg) = &self.db {
            return match pg.sealed_secret(rotation)? {
                Some(sealed) => unseal(master, rotation, &sealed).map(Some),
                None => Ok(None),
            };
        }
        self.read(|txn| {
            let t = txn
                .open_table(SECRETS)
                .map_err(backend("opening secrets"))?;
            let Some(sealed) = t.get(rotation).map_err(backend("reading a secret"))? else {
                return Ok(None);
            };
            unseal(master, rotation, sealed.value()).map(Some)
        })
    }

    /// Keys of the secrets table that end in `suffix` (the values are not
    /// read): the table holds only what is in flight, so this is small.
    pub fn secret_keys_ending(&self, suffix: &str) -> Result<Vec<String>, StoreError> {
        if let Db::Postgres(pg) = &self.db {
            return Ok(pg
                .secret_ids()?
                .into_iter()
                .filter(|id| id.ends_with(suffix))
                .collect());
        }
        self.read(|txn| {
            let t = txn
                .open_table(SECRETS)
                .map_err(backend("opening secrets"))?;
            let mut out = Vec::new();
            for item in t.iter().map_err(backend("scanning secrets"))? {
                let (k, _) = item.map_err(backend("scanning secrets"))?;
                if k.value().ends_with(suffix) {
                    out.push(k.value().to_string());
                }
            }
            Ok(out)
        })
    }

    /// Whether a rotation has a sealed secret (works read-only).
    pub fn has_secret(&self, rotation: &str) -> Result<bool, StoreError> {
        if let Db::Postgres(pg) = &self.db {
            return pg.sealed_secret(rotation).map(|s| s.is_some());
        }
        self.read(|txn| {
            let t = txn
                .open_table(SECRETS)
                .map_err(backend("opening secrets"))?;
            Ok(t.get(rotation)
                .map_err(backend("reading a secret"))?
                .is_some())
        })
    }
}

/// Opens a sealed secret of `rotation` (the AAD binds the rotation id).
fn unseal(master: &MasterKey, rotation: &str, sealed: &[u8]) -> Result<SecretString, StoreError> {
    let plain = master
        .open(&secret_aad(rotation), sealed)
        .map_err(|source| StoreError::Unseal {
            rotation: rotation.to_owned(),
            source,
        })?;
    let text = std::str::from_utf8(&plain).map_err(|_| StoreError::SecretNotUtf8 {
        rotation: rotation.to_owned(),
    })?;
    // `Box<str>::from(&str)` allocates exactly once; `plain` is zeroed on drop.
    Ok(SecretString::from(Box::<str>::from(text)))
}
