//! PostgreSQL's own bound: a raw client with keyrot's driver (the
//! `postgres` crate), keyrot's connection options and as many connections
//! as keyrot's pool, making the commits a rotation makes and nothing
//! else. Each commit has keyrot's shape: `BEGIN`, the advisory write lock,
//! the lease check (the same query, on a lease table of its own), a number
//! of `INSERT … ON CONFLICT DO UPDATE` upserts of `bytea` rows the size of
//! keyrot's, `COMMIT`. Its statements are prepared once per connection:
//! the least the driver can send.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use postgres::{Client, Config, NoTls, Statement};

/// keyrot's statements, copied from its `store/pg/sql.rs`.
pub const BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";
pub const LOCK_WRITES: &str = "SELECT pg_advisory_xact_lock(7021776153206960128)";
const LEASE_HELD: &str = "SELECT EXISTS (SELECT 1 FROM bench_lease \
     WHERE name = 'leader' AND holder = $1 AND epoch = $2 AND expires_at > now()), \
     set_config('keyrot.epoch', $2::text, true)";
const UPSERT: &str = "INSERT INTO bench_rows (id, rec) VALUES ($1, $2) \
     ON CONFLICT (id) DO UPDATE SET rec = EXCLUDED.rec";
const SCHEMA: &str = r#"
CREATE TABLE bench_rows (id text COLLATE "C" PRIMARY KEY, rec bytea NOT NULL);
CREATE TABLE bench_lease (
    name text PRIMARY KEY, holder text NOT NULL, epoch bigint NOT NULL,
    renewed_at timestamptz NOT NULL, expires_at timestamptz NOT NULL);
INSERT INTO bench_lease VALUES ('leader', 'bench', 1, now(), now() + interval '1 day');
"#;

/// What a rotation costs the database, as keyrot makes it.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Shape {
    /// Write transactions.
    pub commits: usize,
    /// Statements in their bodies, all commits together.
    pub statements: usize,
    /// Bytes per row written.
    pub row_bytes: usize,
}

impl Shape {
    /// Upserts in commit `i` (the statements spread evenly over commits).
    fn upserts(&self, i: usize) -> usize {
        let (base, extra) = (
            self.statements / self.commits.max(1),
            self.statements % self.commits.max(1),
        );
        base + usize::from(i < extra)
    }
}

/// keyrot's connection settings for `url` (its `pg/pool.rs`): application
/// name, connect timeout, and the session options.
pub fn config(
    url: &str,
    connect_timeout: Duration,
    idle_in_transaction: Duration,
) -> anyhow::Result<Config> {
    let mut config: Config = url.parse().context("parsing the URL")?;
    if config.get_application_name().is_none() {
        config.application_name("keyrot");
    }
    config.connect_timeout(connect_timeout);
    config.options(&format!(
        "-c client_min_messages=warning -c idle_in_transaction_session_timeout={}",
        idle_in_transaction.as_millis().max(1)
    ));
    Ok(config)
}

/// One connection with its prepared statements.
struct Conn {
    client: Client,
    lease: Statement,
    upsert: Statement,
}

/// A fixed set of connections, taken one per commit as keyrot's pool does.
struct Pool {
    idle: Mutex<Vec<Conn>>,
    returned: Condvar,
}

impl Pool {
    fn take(&self) -> Conn {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(c) = idle.pop() {
                return c;
            }
            idle = self
                .returned
                .wait(idle)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn put(&self, c: Conn) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(c);
        self.returned.notify_one();
    }
}

/// One commit of `upserts` rows of rotation `rot`.
fn commit(c: &mut Conn, rot: usize, upserts: usize, row: &[u8]) -> anyhow::Result<()> {
    c.client.batch_execute(BEGIN)?;
    c.client.batch_execute(LOCK_WRITES)?;
    let held: bool = c.client.query_one(&c.lease, &[&"bench", &1i64])?.get(0);
    if !held {
        bail!("the bench lease is not held");
    }
    for j in 0..upserts {
        c.client
            .execute(&c.upsert, &[&format!("r{rot:06}-{j}"), &row])?;
    }
    c.client.batch_execute("COMMIT")?;
    Ok(())
}

/// `n` rotations' worth of commits by `concurrency` client threads over
/// `connections` connections to `config` (a fresh database, whose tables
/// are made here): the wall time in seconds. `during` runs right after the
/// last commit, before the connections close.
pub fn run(
    config: &Config,
    connections: usize,
    shape: Shape,
    n: usize,
    concurrency: usize,
    during: impl FnOnce(),
) -> anyhow::Result<f64> {
    let mut admin = config.connect(NoTls).context("connecting")?;
    admin.batch_execute(SCHEMA).context("creating the tables")?;
    drop(admin);
    let mut conns = Vec::new();
    for _ in 0..connections.max(1) {
        let mut client = config.connect(NoTls).context("connecting")?;
        let lease = client.prepare(LEASE_HELD)?;
        let upsert = client.prepare(UPSERT)?;
        conns.push(Conn {
            client,
            lease,
            upsert,
        });
    }
    let pool = Pool {
        idle: Mutex::new(conns),
        returned: Condvar::new(),
    };
    // keyrot's rows are JSON: text of the same size.
    let row: Vec<u8> =
        br#"{"id":"r0123456789","state":"distributing","at":"2026-12-07T17:00:00Z"}"#
            .iter()
            .copied()
            .cycle()
            .take(shape.row_bytes)
            .collect();
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..concurrency)
            .map(|_| {
                s.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let rot = next.fetch_add(1, Ordering::Relaxed);
                        if rot >= n {
                            return Ok(());
                        }
                        for i in 0..shape.commits {
                            let mut c = pool.take();
                            let done = commit(&mut c, rot, shape.upserts(i), &row);
                            pool.put(c);
                            done?;
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join()
                .map_err(|_| anyhow::anyhow!("a raw client thread panicked"))??;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    let secs = start.elapsed().as_secs_f64();
    during();
    Ok(secs)
}
