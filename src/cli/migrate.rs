//! `keyrot store migrate --from redb|postgres --to redb|postgres`: moves the
//! store to the other backend with the daemon stopped, and verifies the
//! copy (see [`keyrot_core::store::migrate`]).
//!
//! Both ends come from the configuration's `[store]`: `path` is the redb
//! file (or `--path FILE`), `url` with `ca_file` and `pool_size` the
//! PostgreSQL database. `url` is accepted only with `backend =
//! "postgres"`, so this command runs with that configuration in both
//! directions: it is the one the daemon runs on after a move to
//! PostgreSQL, and the one it ran on before a move back. That needs no
//! setting that one backend reads and the other ignores, and no URL (a
//! secret) on the command line.
//!
//! Neither end may be in use: the redb file is opened read-only (a running
//! daemon holds its lock), and the command takes the database's leader
//! lease for itself (refused while a daemon leads; a daemon started
//! meanwhile stands by until the migration ends and releases it).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use super::output;
use keyrot_config::Config;
use keyrot_core::crypto::MasterKey;
use keyrot_core::store::{MigrateReport, MigrateTo, Store, StoreError, migrate};

/// A store backend, as `--from` and `--to` name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// The redb file (`[store] path`).
    Redb,
    /// The PostgreSQL database (`[store] url`).
    Postgres,
}

impl Backend {
    /// Its name in messages.
    fn name(self) -> &'static str {
        match self {
            Backend::Redb => "redb",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// What `keyrot store migrate` was asked.
#[derive(Clone, Debug)]
pub struct MigrateArgs {
    /// The backend to copy from.
    pub from: Backend,
    /// The backend to copy to.
    pub to: Backend,
    /// The redb file, instead of `[store] path`.
    pub path: Option<PathBuf>,
}

/// Runs `keyrot store migrate`.
pub async fn run(args: MigrateArgs, cfg: Option<&Config>) -> anyhow::Result<ExitCode> {
    if args.from == args.to {
        anyhow::bail!(
            "--from and --to are both {}: a migration moves the store to the other backend (a copy on the same backend is `keyrot store backup`)",
            args.from.name()
        );
    }
    let cfg = cfg
        .ok_or_else(|| {
            anyhow::anyhow!(
                "keyrot store migrate needs a valid configuration to find both ends of the store: fix it (keyrot check) or pass --config"
            )
        })?
        .clone();
    let redb = args.path.clone().unwrap_or_else(|| cfg.store.path.clone());
    let (from, to) = (args.from, args.to);
    let report = {
        let (cfg, redb) = (cfg.clone(), redb.clone());
        tokio::task::spawn_blocking(move || copy(from, &cfg, &redb))
            .await
            .context("migrating the store")??
    };
    output::out(&render(&report, from, to, &redb, &cfg))?;
    Ok(ExitCode::SUCCESS)
}

/// Opens both ends and copies the store from `from` to the other one.
fn copy(from: Backend, cfg: &Config, redb: &Path) -> anyhow::Result<MigrateReport> {
    let Some((url, opts)) = crate::daemon::postgres_target(cfg)? else {
        anyhow::bail!(
            "keyrot store migrate needs the PostgreSQL database in [store]: set backend = \"postgres\" and url (a secret reference such as url = {{ credential = \"postgres-url\" }}); path names the redb file (or pass --path). With the daemon stopped, switch the configuration to PostgreSQL before a move there, and back to redb after a move back"
        );
    };
    let key = MasterKey::resolve(
        keyrot_config::credentials_dir_from_env().as_deref(),
        &cfg.store.master_key_file,
        false,
    )
    .context("reading the master key (both ends use the same one)")?;
    let stopped = "keyrot store migrate runs with the daemon stopped (systemctl stop keyrot)";
    let in_use = |e: StoreError, what: String| match e {
        e @ StoreError::Locked { .. } => {
            anyhow::Error::new(e).context(format!("{what}: {stopped}"))
        }
        e => anyhow::Error::new(e).context(what),
    };
    let report = match from {
        Backend::Redb => {
            let source = Store::open_read_only(redb)
                .map_err(|e| in_use(e, format!("opening the redb store {}", redb.display())))?;
            let dest = Store::open_postgres(&url, &opts, Some(key.clone()))
                .map_err(|e| in_use(e, "opening the PostgreSQL store".into()))?;
            lead(&dest, stopped)?;
            let report = migrate(&source, MigrateTo::Postgres(&dest), &key);
            let _ = dest.release_lease();
            report?
        }
        Backend::Postgres => {
            // Without the key first: a database holding no store is an
            // error here, where the open with the key would create one.
            drop(
                Store::open_postgres(&url, &opts, None)
                    .map_err(|e| in_use(e, "opening the PostgreSQL store".into()))?,
            );
            let source = Store::open_postgres(&url, &opts, Some(key.clone()))
                .map_err(|e| in_use(e, "opening the PostgreSQL store".into()))?;
            lead(&source, stopped)?;
            let report = migrate(&source, MigrateTo::Redb(redb), &key);
            let _ = source.release_lease();
            report?
        }
    };
    Ok(report)
}

/// Takes the database's leader lease for the migration (five minutes,
/// released at its end): refused while a daemon leads.
fn lead(store: &Store, stopped: &str) -> anyhow::Result<()> {
    let holder = format!("keyrot-store-migrate:{}", std::process::id());
    let lease = std::time::Duration::from_secs(300);
    if store.acquire_lease(&holder, lease, lease)?.is_some() {
        return Ok(());
    }
    let leader = store
        .lease()?
        .map(|l| format!("{} (epoch {})", l.holder, l.epoch))
        .unwrap_or_default();
    anyhow::bail!("{stopped}: a keyrot leads on the PostgreSQL store: {leader}")
}

/// What `keyrot store migrate` prints.
pub fn render(r: &MigrateReport, from: Backend, to: Backend, redb: &Path, cfg: &Config) -> String {
    let rows: Vec<String> = r
        .tables
        .iter()
        .map(|t| format!("{} {}", t.table, t.rows))
        .collect();
    let total = r.read + r.check + r.write + r.verify;
    let mut out = format!(
        "store migrated from {} ({}) to {} ({}), and verified\n\
         \x20 rows       {}\n\
         \x20 audit log  {} entries, hash chain verified in the source and in the copy\n\
         \x20 secrets    {} sealed secrets open under the master key at both ends (copied sealed, never opened)\n\
         \x20 checks     record counts, rows per table and audit chain equal to the source's; every check of `keyrot store verify` passes on the copy\n\
         \x20 time       {total:.1?}: source snapshot {:.1?}, source checked {:.1?}, written {:.1?}, copy verified {:.1?} ({} MiB moved)\n\
         The source is unchanged.\n",
        from.name(),
        r.source.display(),
        to.name(),
        r.destination.display(),
        rows.join(", "),
        r.audit_entries,
        r.secrets_opened,
        r.read,
        r.check,
        r.write,
        r.verify,
        r.image_bytes.div_ceil(1024 * 1024),
    );
    match to {
        Backend::Postgres => out.push_str(&format!(
            "Next: this configuration says backend = \"postgres\": start keyrot (systemctl start keyrot), then run `keyrot status`.\n\
             The redb file {} no longer follows the store: keep it as a backup of this moment, and never start a daemon on it\n\
             while one runs on PostgreSQL (to come back, `keyrot store migrate --from postgres --to redb`).\n",
            redb.display()
        )),
        Backend::Redb => {
            let path = match redb == cfg.store.path {
                true => String::new(),
                false => format!(", set path = \"{}\"", redb.display()),
            };
            out.push_str(&format!(
                "Next: in [store], remove backend, url, ca_file and pool_size{path}; the file belongs to the user who ran this\n\
                 command (chown keyrot:keyrot {} if that is not keyrot's user); then start keyrot (systemctl start keyrot)\n\
                 and run `keyrot status`. The PostgreSQL database no longer follows the store: start no daemon on it.\n",
                redb.display()
            ));
        }
    }
    out
}
