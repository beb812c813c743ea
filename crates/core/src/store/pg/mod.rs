//! The PostgreSQL backend: the same tables and operations as the redb
//! store, on a database several keyrot hosts can share.
//!
//! Records are the redb store's JSON bytes and secrets its sealed
//! envelopes (sealed and opened here, client-side, under the master key
//! every instance loads itself: PostgreSQL never sees a secret). Every
//! write transaction takes one advisory lock first, so writes are
//! serialised across every process on the database as redb serialises
//! them within one; reads that span several statements run in one
//! `REPEATABLE READ` snapshot. A commit returns once PostgreSQL reports it
//! durable (`synchronous_commit` at its default, `on`).
//!
//! All SQL is in `sql.rs`; connections and TLS in `pool.rs`; the whole
//! store as a redb image and back in `export.rs` and `import.rs`.

mod export;
mod import;
mod lease;
mod pool;
mod prepared;
mod prune;
mod read;
mod sql;
mod tx;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use postgres::Client;
use postgres::types::ToSql;
use secrecy::{ExposeSecret, SecretString};

pub use import::ImportSummary;
pub use lease::LeaseInfo;
pub(super) use tx::PgTx;

use self::pool::{Connect, Pool};
use super::StoreError;
use super::tables::{
    KEY_CHECK_AAD, KEY_CHECK_PLAINTEXT, META_INSTALLATION, META_KEY_CHECK, META_SCHEMA,
    SCHEMA_VERSION,
};
use crate::crypto::MasterKey;

/// How to reach PostgreSQL, beside the URL.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// PEM file of the certificate authorities to trust for the server's
    /// certificate (default: the system's).
    pub ca_file: Option<PathBuf>,
    /// Connections kept (default 4).
    pub pool_size: usize,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long a session may sit in an open transaction without sending
    /// anything before PostgreSQL ends it (`idle_in_transaction_session_timeout`):
    /// a process paused in the middle of a write transaction (SIGSTOP, a
    /// frozen VM) would otherwise hold the write lock, and with it every
    /// other instance, until it woke. Its transaction is rolled back. The
    /// daemon sets it to the lease's renew deadline.
    pub idle_in_transaction: Duration,
}

impl Default for PgOptions {
    fn default() -> PgOptions {
        PgOptions {
            ca_file: None,
            pool_size: 4,
            connect_timeout: Duration::from_secs(10),
            idle_in_transaction: Duration::from_secs(10),
        }
    }
}

/// An open PostgreSQL store.
pub(super) struct PgStore {
    /// The connections.
    pool: Arc<Pool>,
    /// The lease this process holds, once it has won one: every write
    /// asserts it.
    fence: std::sync::Mutex<Option<lease::Fence>>,
}

impl PgStore {
    /// Connects, creates the schema when missing, and checks the schema
    /// version and (given one) the master key, initialising a blank
    /// database with both. Returns the store and a label naming the
    /// database in messages (no password).
    pub(super) fn open(
        url: &SecretString,
        opts: &PgOptions,
        master: Option<&MasterKey>,
    ) -> Result<(PgStore, String), StoreError> {
        let connect = Connect::new(url.expose_secret(), opts)?;
        let label = label(url.expose_secret());
        let store = PgStore {
            pool: Arc::new(Pool::new(&connect, opts.pool_size)?),
            fence: std::sync::Mutex::new(None),
        };
        let check = match master {
            Some(m) => Some(
                m.try_seal(KEY_CHECK_AAD, KEY_CHECK_PLAINTEXT)
                    .map_err(|source| StoreError::Seal {
                        rotation: "(master key check)".into(),
                        source,
                    })?,
            ),
            None => None,
        };
        let found = pool::Lease::take(&store.pool).run(move |c| init(c, check))?;
        match (found, master) {
            (Some(sealed), Some(master)) if master.open(KEY_CHECK_AAD, &sealed).is_err() => {
                Err(StoreError::WrongMasterKey {
                    path: PathBuf::from(&label),
                })
            }
            _ => Ok((store, label)),
        }
    }

    /// Starts a write transaction: a connection of its own, `BEGIN`, and
    /// the write lock.
    pub(super) fn begin(&self, master: Arc<MasterKey>) -> Result<PgTx, StoreError> {
        let lease = pool::Lease::take(&self.pool);
        let fence = self.fence()?;
        let checked = lease.run(move |c| {
            c.batch_execute(sql::BEGIN)
                .map_err(pg("starting a transaction"))?;
            c.batch_execute(sql::LOCK_WRITES)
                .map_err(pg("taking the write lock"))?;
            let held: bool =
                prepared::query_one(c, sql::LEASE_HELD, &[&fence.holder, &fence.epoch])
                    .map_err(pg("checking the leader lease"))?
                    .get(0);
            if held {
                return Ok(());
            }
            let _ = c.batch_execute(sql::ROLLBACK);
            Err(StoreError::CommitFailed(format!(
                "this keyrot ({}) no longer holds the leader lease of epoch {} in PostgreSQL (it \
                 expired or another instance took it over): no write is made; a restart makes \
                 it a standby",
                fence.holder, fence.epoch
            )))
        });
        if let Err(StoreError::CommitFailed(_)) = &checked {
            // Fenced: this process holds no lease any more.
            self.set_fence(None);
        }
        checked?;
        Ok(PgTx::new(lease, master))
    }
}

/// Creates the schema when missing and, in a database without a schema
/// version, writes the version, the key check (when given) and an
/// installation id, under the write lock; returns the stored key check.
fn init(c: &mut Client, check: Option<Vec<u8>>) -> Result<Option<Vec<u8>>, StoreError> {
    let mut t = c.transaction().map_err(pg("starting a transaction"))?;
    t.batch_execute(sql::LOCK_WRITES)
        .map_err(pg("taking the write lock"))?;
    t.batch_execute(sql::SCHEMA)
        .map_err(pg("creating the schema"))?;
    let version = meta(&mut t, META_SCHEMA)?;
    let stored = meta(&mut t, META_KEY_CHECK)?;
    match version {
        None => {
            if meta(&mut t, META_INSTALLATION)?.is_some() {
                return Err(corrupt("a meta table without a schema version"));
            }
            let Some(check) = &check else {
                return Err(StoreError::Backend {
                    op: "opening the store",
                    detail: "the database holds no keyrot store yet; start the daemon once to \
                             create it"
                        .into(),
                });
            };
            let bytes: [u8; 10] = rand::random();
            let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let rows: [(&str, &[u8]); 3] = [
                (META_SCHEMA, &SCHEMA_VERSION.to_be_bytes()),
                (META_KEY_CHECK, check),
                (META_INSTALLATION, id.as_bytes()),
            ];
            for (name, value) in rows {
                t.execute(sql::META_PUT, &[&name, &value])
                    .map_err(pg("writing meta"))?;
            }
            t.commit().map_err(pg("creating the store"))?;
            Ok(Some(check.clone()))
        }
        Some(v) => {
            let found = <[u8; 8]>::try_from(v.as_slice())
                .map(u64::from_be_bytes)
                .map_err(|_| corrupt("the schema version is not 8 bytes"))?;
            if found > SCHEMA_VERSION {
                return Err(StoreError::SchemaTooNew {
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            let Some(stored) = stored else {
                return Err(corrupt("the meta table has no master-key check"));
            };
            t.commit().map_err(pg("opening the store"))?;
            Ok(Some(stored))
        }
    }
}

/// A meta value.
fn meta(t: &mut impl postgres::GenericClient, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let row = t
        .query_opt(sql::META_GET, &[&name])
        .map_err(pg("reading meta"))?;
    Ok(row.map(|r| r.get(0)))
}

/// A read snapshot spanning several statements (`REPEATABLE READ READ
/// ONLY`): what each statement sees is one commit's state.
pub(super) fn snapshot(c: &mut Client) -> Result<postgres::Transaction<'_>, StoreError> {
    c.build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(pg("starting a read"))
}

/// Rows of a query.
pub(super) fn rows(
    c: &mut impl postgres::GenericClient,
    op: &'static str,
    query: &'static str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<postgres::Row>, StoreError> {
    prepared::query(c, query, params).map_err(pg(op))
}

/// The store is damaged.
fn corrupt(detail: &str) -> StoreError {
    StoreError::Corrupt {
        path: PathBuf::from("(PostgreSQL)"),
        detail: detail.to_owned(),
    }
}

/// The database named by `url`, for messages: host, port and database,
/// never the user's password.
fn label(url: &str) -> String {
    let Ok(config) = url.parse::<postgres::Config>() else {
        return "postgres (unparsable URL)".into();
    };
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_default();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{host}:{port}/{}",
        config.get_dbname().unwrap_or_default()
    )
}

/// Maps a PostgreSQL error to [`StoreError::Backend`].
pub(super) fn pg(op: &'static str) -> impl FnOnce(postgres::Error) -> StoreError {
    move |e| StoreError::Backend {
        op,
        detail: describe(&e),
    }
}

/// A PostgreSQL error's text, with the server's message when there is one
/// (the plain `Display` of a server error says only "db error").
pub(super) fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// Converts a stored `bigint` back to the `u64` keyrot uses.
pub(super) fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Converts a `u64` to the `bigint` PostgreSQL stores.
pub(super) fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
