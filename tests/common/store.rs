//! Which store the suite's daemons run on, and reading it from outside:
//! redb unless `KEYROT_SUITE_STORE=postgres` (see [`suite_store`]).

use std::fs;

use super::Daemon;

/// The store backend the suite's daemons run on: redb unless
/// `KEYROT_SUITE_STORE=postgres`, which puts every daemon whose config
/// comes from [`super::base_config`] on a fresh database of the test
/// process's PostgreSQL server (how the crash and fault suites are run on
/// PostgreSQL: `KEYROT_SUITE_STORE=postgres bash scripts/test.sh --test
/// suite -- crash:: crash_random:: faults::`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuiteStore {
    /// `[store] path = "state/state.redb"`.
    Redb,
    /// [`PG_STORE`], the URL of a fresh database in `pg.url`.
    Postgres,
}

/// The variable that chooses the [`SuiteStore`].
pub const SUITE_STORE_VAR: &str = "KEYROT_SUITE_STORE";

/// The suite's store backend, from [`SUITE_STORE_VAR`].
pub fn suite_store() -> SuiteStore {
    match std::env::var(SUITE_STORE_VAR).as_deref() {
        Err(_) | Ok("" | "redb") => SuiteStore::Redb,
        Ok("postgres") => SuiteStore::Postgres,
        Ok(other) => panic!("{SUITE_STORE_VAR}={other:?}: expected \"redb\" or \"postgres\""),
    }
}

/// The `[store]` line of a daemon on redb.
pub const REDB_STORE: &str = "path = \"state/state.redb\"\n";

/// The `[store]` lines of a daemon on PostgreSQL: the database's URL in
/// the secret file `pg.url` beside the config, a lease of 3 s (the
/// shortest: a daemon killed while it leads holds it up that long after
/// its restart).
pub const PG_STORE: &str = "backend = \"postgres\"\nurl = { file = \"pg.url\" }\nlease = \"3s\"\n";

/// `config` (whose `[store]` has [`REDB_STORE`]) on PostgreSQL instead.
pub fn on_postgres(config: &str) -> String {
    if config.contains(PG_STORE) {
        return config.to_owned();
    }
    assert!(config.contains(REDB_STORE), "no redb store in:\n{config}");
    config.replacen(REDB_STORE, PG_STORE, 1)
}

impl Daemon {
    /// The URL of the daemon's PostgreSQL database (in `pg.url`), when its
    /// store is one.
    pub fn pg_url(&self) -> Option<String> {
        let config = fs::read_to_string(self.config_path()).unwrap_or_default();
        if !config.contains("backend = \"postgres\"") {
            return None;
        }
        let url = fs::read_to_string(self.dir.join("pg.url")).ok()?;
        Some(url.trim().to_owned())
    }

    /// Opens the daemon's store without the master key (reads only; the
    /// daemon stopped, for redb): the redb file, or its PostgreSQL
    /// database.
    pub fn open_store_read_only(&self) -> keyrot_core::store::Store {
        let opened = match self.pg_url() {
            Some(url) => keyrot_core::store::Store::open_postgres(
                &secrecy::SecretString::from(url),
                &keyrot_core::store::PgOptions::default(),
                None,
            ),
            None => keyrot_core::store::Store::open_read_only(&self.dir.join("state/state.redb")),
        };
        opened.unwrap_or_else(|e| panic!("opening the store read-only: {e}"))
    }
}
