//! Opening the store the configuration names: the redb file, or the
//! PostgreSQL database (its URL a secret reference), with the master key
//! or without it for reads.

use std::path::PathBuf;

use anyhow::Context as _;
use keyrot_config::Config;
use keyrot_core::crypto::{CryptoError, MasterKey};
use keyrot_core::store::{Store, StoreError};

/// Where the master key comes from under systemd.
pub(super) fn credentials_dir() -> Option<PathBuf> {
    std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from)
}

/// The PostgreSQL URL and options of `[store]`, when that is the backend.
pub fn postgres_target(
    cfg: &Config,
) -> anyhow::Result<Option<(secrecy::SecretString, keyrot_core::store::PgOptions)>> {
    let Some(pg) = &cfg.store.postgres else {
        return Ok(None);
    };
    let url = pg
        .url
        .resolve(credentials_dir().as_deref())
        .context("reading [store] url")?;
    let opts = keyrot_core::store::PgOptions {
        ca_file: pg.ca_file.clone(),
        pool_size: pg.pool_size,
        // The lease's renew deadline (see `leader.rs`): a leader paused in
        // a write transaction loses it before its lease expires.
        idle_in_transaction: pg.lease.unsigned_abs() * 2 / 3,
        ..keyrot_core::store::PgOptions::default()
    };
    Ok(Some((url, opts)))
}

/// Opens the store named by `cfg` without the master key, for reading
/// (every read but a secret's): the redb file read-only, or the
/// PostgreSQL database.
pub fn open_store_read_only(cfg: &Config) -> anyhow::Result<Store> {
    Ok(match postgres_target(cfg)? {
        Some((url, opts)) => Store::open_postgres(&url, &opts, None)?,
        None => Store::open_read_only(&cfg.store.path)?,
    })
}

/// Opens the store named by `cfg` with its master key.
pub fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    let s = &cfg.store;
    if let Some((url, opts)) = postgres_target(cfg)? {
        let key = MasterKey::resolve(
            credentials_dir().as_deref(),
            &s.master_key_file,
            s.create_master_key,
        )?;
        return Ok(Store::open_postgres(&url, &opts, Some(key))?);
    }
    // A key is created only for a new store: beside an existing one it
    // could never open the secrets sealed there, and the stray file would
    // hide that the store's own key is missing.
    let store_exists = match std::fs::symlink_metadata(&s.path) {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => anyhow::bail!("cannot look at the store file {}: {e}", s.path.display()),
    };
    let create = s.create_master_key && !store_exists;
    let key = match MasterKey::resolve(credentials_dir().as_deref(), &s.master_key_file, create) {
        Err(CryptoError::KeyFileMissing { path }) if s.create_master_key => {
            // A damaged or locked store is the bigger news: opening it
            // without a key says so, and writes nothing.
            drop(Store::open_read_only(&s.path)?);
            anyhow::bail!(
                "master key file {} does not exist, but the store {} does: \
                 store.create_master_key makes a key only for a new store, and a new key cannot \
                 open the secrets sealed in this one; restore the key file from its backup",
                path.display(),
                s.path.display()
            )
        }
        other => other?,
    };
    // A CLI command that found no daemon may hold a brief read-only open of
    // the store (e.g. `keyrot status` while keyrot starts): wait it out
    // rather than fail, but not for long: a second daemon must fail fast.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        match Store::open(&cfg.store.path, key.clone()) {
            Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                // No runtime yet: the store opens before it is built.
                #[allow(clippy::disallowed_methods)]
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => return Ok(other?),
        }
    }
}
