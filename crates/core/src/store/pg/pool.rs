//! Connections to PostgreSQL. Each connection is owned by a thread of its
//! own that runs the blocking `postgres` client, so that the store's
//! synchronous interface can be called from any thread, async or not: a
//! caller hands the thread a job and waits on a standard channel, never on
//! a second async runtime inside the daemon's. A connection that broke is
//! made again before the next job.

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;

use postgres::config::SslMode;
use postgres::{Client, Config, NoTls};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::PgOptions;
use crate::store::StoreError;

/// What a connection's thread runs: given the connection (made or remade
/// on demand), it sends its own answer back.
type Job = Box<dyn FnOnce(&mut Worker) + Send>;

/// How to connect: the parsed URL and the TLS setting it came with.
#[derive(Clone)]
pub(super) struct Connect {
    /// The parsed URL (the password, if any, stays inside it).
    config: Config,
    /// TLS, verifying the server's name and chain; none on loopback with
    /// `sslmode=disable`.
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl Connect {
    /// Parses `url` and builds the TLS client. TLS is required unless the
    /// URL says `sslmode=disable` and every host is on this machine; the
    /// server's certificate is verified against `ca_file` or the system's
    /// roots, and its name against the host (PostgreSQL's `verify-full`).
    pub(super) fn new(url: &str, opts: &PgOptions) -> Result<Connect, StoreError> {
        let mut config: Config = url
            .parse()
            .map_err(|e: postgres::Error| StoreError::Backend {
                op: "reading the PostgreSQL URL",
                detail: e.to_string(),
            })?;
        if config.get_application_name().is_none() {
            config.application_name("keyrot");
        }
        config.connect_timeout(opts.connect_timeout);
        // Server notices ("already exists, skipping") are not keyrot's news.
        config.options(&format!(
            "-c client_min_messages=warning -c idle_in_transaction_session_timeout={}",
            opts.idle_in_transaction.as_millis().max(1)
        ));
        if config.get_ssl_mode() == SslMode::Disable {
            if !config.get_hosts().iter().all(is_local) {
                return Err(StoreError::Backend {
                    op: "reading the PostgreSQL URL",
                    detail: "sslmode=disable is accepted only for a server on this machine \
                             (127.0.0.1, ::1, localhost or a unix socket); remove it to use TLS"
                        .into(),
                });
            }
            return Ok(Connect { config, tls: None });
        }
        config.ssl_mode(SslMode::Require);
        Ok(Connect {
            config,
            tls: Some(tls_client(opts)?),
        })
    }

    /// A new connection.
    fn connect(&self) -> Result<Client, StoreError> {
        let made = match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(NoTls),
        };
        made.map_err(|e| StoreError::Backend {
            op: "connecting to PostgreSQL",
            detail: super::describe(&e),
        })
    }
}

/// Whether a host is this machine.
fn is_local(host: &postgres::config::Host) -> bool {
    match host {
        postgres::config::Host::Tcp(name) => {
            matches!(name.as_str(), "localhost" | "127.0.0.1" | "::1" | "[::1]")
        }
        postgres::config::Host::Unix(_) => true,
    }
}

/// The rustls client: `ca_file`'s certificates as the only roots, else the
/// platform's verifier.
fn tls_client(opts: &PgOptions) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let provider = crate::crypto::tls::provider();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?;
    let config = match &opts.ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| StoreError::Backend {
                op: "reading the PostgreSQL CA file",
                detail: format!("{}: {e}", path.display()),
            })?;
            for cert in certs {
                let cert = cert.map_err(|e| StoreError::Backend {
                    op: "reading the PostgreSQL CA file",
                    detail: format!("{}: {e}", path.display()),
                })?;
                roots.add(cert).map_err(tls_err)?;
            }
            if roots.is_empty() {
                return Err(StoreError::Backend {
                    op: "reading the PostgreSQL CA file",
                    detail: format!("{}: no certificate in it", path.display()),
                });
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => {
            let verifier = rustls_platform_verifier::Verifier::new(provider).map_err(tls_err)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        }
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// A TLS setup error.
fn tls_err(e: rustls::Error) -> StoreError {
    StoreError::Backend {
        op: "setting up TLS for PostgreSQL",
        detail: e.to_string(),
    }
}

/// A connection's thread-side state.
pub(super) struct Worker {
    /// How to connect.
    connect: Connect,
    /// The connection, once made; dropped when it broke.
    client: Option<Client>,
}

impl Worker {
    /// The connection, made (again) when there is none or it broke.
    pub(super) fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            super::prepared::reset(false);
            self.client = None;
            self.client = Some(self.connect.connect()?);
            super::prepared::reset(true);
        }
        self.client.as_mut().ok_or_else(|| StoreError::Backend {
            op: "connecting to PostgreSQL",
            detail: "no connection".into(),
        })
    }
}

/// One connection: the sending end of its thread's job queue.
pub(super) struct Conn {
    /// Jobs for the thread.
    jobs: mpsc::Sender<Job>,
}

impl Conn {
    /// Starts the connection's thread (the connection itself is made at
    /// its first job).
    pub(super) fn start(connect: Connect, name: String) -> Result<Conn, StoreError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name(name)
            .spawn(move || {
                let mut worker = Worker {
                    connect,
                    client: None,
                };
                while let Ok(job) = queue.recv() {
                    job(&mut worker);
                }
            })
            .map_err(|e| StoreError::Backend {
                op: "starting a PostgreSQL connection thread",
                detail: e.to_string(),
            })?;
        Ok(Conn { jobs })
    }

    /// Runs `f` on the connection's thread and waits for its answer.
    pub(super) fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |w: &mut Worker| {
            let out = w.client().and_then(f);
            let _ = tx.send(out);
        });
        let lost = || StoreError::Backend {
            op: "talking to PostgreSQL",
            detail: "the connection's thread has ended".into(),
        };
        self.jobs.send(job).map_err(|_| lost())?;
        rx.recv().map_err(|_| lost())?
    }
}

/// A fixed set of connections; a caller takes one for a read or a write
/// transaction and gives it back when done.
pub(super) struct Pool {
    /// Connections not in use.
    idle: Mutex<Vec<Conn>>,
    /// Signalled when one is given back.
    returned: Condvar,
}

impl Pool {
    /// `size` connections (threads started, connections made on demand).
    pub(super) fn new(connect: &Connect, size: usize) -> Result<Pool, StoreError> {
        let conns = (0..size.max(1))
            .map(|n| Conn::start(connect.clone(), format!("keyrot-pg-{n}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Pool {
            idle: Mutex::new(conns),
            returned: Condvar::new(),
        })
    }

    /// The idle list (a panic elsewhere cannot leave it inconsistent).
    fn lock(&self) -> MutexGuard<'_, Vec<Conn>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection taken from the pool; given back on drop.
pub(super) struct Lease {
    /// The pool.
    pool: Arc<Pool>,
    /// The connection (always `Some` until dropped).
    conn: Option<Conn>,
}

impl Lease {
    /// Takes a connection, waiting for one to be given back if all are in use.
    pub(super) fn take(pool: &Arc<Pool>) -> Lease {
        let mut idle = pool.lock();
        loop {
            if let Some(conn) = idle.pop() {
                return Lease {
                    pool: Arc::clone(pool),
                    conn: Some(conn),
                };
            }
            idle = pool
                .returned
                .wait(idle)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl std::ops::Deref for Lease {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        // Set at creation, taken only by drop.
        #[allow(clippy::unwrap_used)]
        self.conn.as_ref().unwrap()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.lock().push(conn);
            self.pool.returned.notify_one();
        }
    }
}
