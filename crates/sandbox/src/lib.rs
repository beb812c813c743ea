//! `keyrot sandbox`: a local HTTP server that plays the Atlassian Admin
//! API's org API-key endpoints (list, count, revoke, users' API tokens) under
//! `/admin/api-access/v1`, plus the customer's *proposed* rotate endpoint,
//! so keyrot can be tried and tested without a real organisation. It owns
//! its state file, its PSKs and its admin endpoints under `/_sandbox/`
//! (loopback only); it is a test peer, not a security boundary, and is
//! documented in `docs/sandbox.md`.

mod admin;
mod error;
mod idempotency;
mod limit;
mod lose;
mod persist;
mod psk;
mod rotate;
mod routes;
mod seed;
mod state;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_idempotency;
#[cfg(test)]
mod tests_lose;
#[cfg(test)]
mod tests_more;
#[cfg(test)]
mod tests_strict;

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{get, patch, post};
use jiff::Timestamp;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, watch};

pub use error::{ApiError, SandboxError};
pub use rotate::AbsentOldExpiry;

use keyrot_core::clock::{Clock, SystemClock};
use limit::Gate;
use lose::Losses;
use psk::Psk;
use state::State;

/// Where the Admin API is served, as on `api.atlassian.com`.
pub const API_BASE: &str = "/admin/api-access/v1";

/// How to run the sandbox (the `keyrot sandbox` flags).
#[derive(Clone, Debug)]
pub struct SandboxOptions {
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// JSON state file, loaded at start and replaced after each change.
    pub state: PathBuf,
    /// Pre-shared keys as `(id, file of 64 hex chars)`; the first is the default.
    pub psks: Vec<(String, PathBuf)>,
    /// Create the `demo-org` keys when the state is empty.
    pub seed: bool,
    /// Where seeding writes the demo keys' secrets (mode 0600).
    pub seed_secrets: Option<PathBuf>,
    /// Requests per second allowed on the Admin API; `None` is unlimited.
    pub rate_limit: Option<u32>,
    /// Ignore the `Idempotency-Key` header: every rotate call makes a new key.
    pub no_idempotency: bool,
    /// What a rotate body without `oldKeyExpiresAt` does to the old key.
    pub absent_old_expiry: AbsentOldExpiry,
    /// Seal every new secret under this PSK (one of `psks`), ignoring `?pskId=`.
    pub seal_psk: Option<String>,
    /// Every strict behaviour at once: no idempotency, an absent
    /// `oldKeyExpiresAt` revokes, and sealing under `seal_psk` or else the
    /// first PSK whatever `?pskId=` says.
    pub strict: bool,
    /// How lazily a key's `lastActiveAt` is updated: a use is recorded only
    /// when the last recorded one is at least this old (real APIs do so to
    /// spare writes). `None`: at once, or [`STRICT_LAST_ACTIVE_GRANULARITY`]
    /// under `strict`.
    pub last_active_granularity: Option<jiff::SignedDuration>,
}

/// `lastActiveAt`'s granularity under `strict` unless set.
pub const STRICT_LAST_ACTIVE_GRANULARITY: jiff::SignedDuration =
    jiff::SignedDuration::from_mins(10);

impl Default for SandboxOptions {
    /// Loopback on a free port, `sandbox-state.json`, no PSK, no seeding,
    /// no limit, and today's lenient behaviour.
    fn default() -> SandboxOptions {
        SandboxOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            state: PathBuf::from("sandbox-state.json"),
            psks: Vec::new(),
            seed: false,
            seed_secrets: None,
            rate_limit: None,
            no_idempotency: false,
            absent_old_expiry: AbsentOldExpiry::Keep,
            seal_psk: None,
            strict: false,
            last_active_granularity: None,
        }
    }
}

/// The behaviours the options resolve to (`--strict` folded in).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Modes {
    /// Whether `Idempotency-Key` is honoured.
    idempotency: bool,
    /// What an absent `oldKeyExpiresAt` means.
    absent_old_expiry: AbsentOldExpiry,
    /// The PSK every secret is sealed under, whatever `?pskId=` says.
    seal_psk: Option<String>,
    /// How lazily `lastActiveAt` moves.
    last_active_granularity: jiff::SignedDuration,
}

impl Modes {
    /// Resolves the options against the loaded PSKs; a `seal_psk` that is
    /// not one of them stops the start.
    fn of(opts: &SandboxOptions, psks: &[Psk]) -> Result<Modes, SandboxError> {
        if let Some(id) = &opts.seal_psk
            && !psks.iter().any(|p| &p.id == id)
        {
            return Err(SandboxError::SealPsk { id: id.clone() });
        }
        let seal_psk = match (&opts.seal_psk, opts.strict) {
            (Some(id), _) => Some(id.clone()),
            (None, true) => psks.first().map(|p| p.id.clone()),
            (None, false) => None,
        };
        Ok(Modes {
            idempotency: !(opts.no_idempotency || opts.strict),
            absent_old_expiry: if opts.strict {
                AbsentOldExpiry::Revoke
            } else {
                opts.absent_old_expiry
            },
            seal_psk,
            last_active_granularity: opts.last_active_granularity.unwrap_or(if opts.strict {
                STRICT_LAST_ACTIVE_GRANULARITY
            } else {
                jiff::SignedDuration::ZERO
            }),
        })
    }
}

/// The state and the bytes last written to the state file.
struct Stored {
    /// The live state.
    state: State,
    /// What the state file holds now (to skip writes that change nothing).
    saved: Vec<u8>,
}

/// Everything the handlers share.
pub(crate) struct App {
    /// State, behind an async lock held across the file write so writes
    /// land in order.
    stored: Mutex<Stored>,
    /// The state file.
    path: PathBuf,
    /// Time source (a `ManualClock` in tests).
    clock: Arc<dyn Clock>,
    /// Pre-shared keys, default first.
    psks: Vec<Psk>,
    /// Rate limit and forced failures.
    gate: Gate,
    /// Strict behaviours in force.
    modes: Modes,
    /// Rotate answers still to be lost (`POST /_sandbox/lose`).
    losses: Losses,
    /// Becomes `true` when the server shuts down (ends stalled answers).
    closing: watch::Sender<bool>,
}

impl App {
    /// Runs `f` on the state at the clock's `now`, then persists the state
    /// if it changed (whether `f` succeeded or not: a 403 still records the
    /// key's use).
    async fn mutate<T>(
        &self,
        f: impl FnOnce(&mut State, Timestamp) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut stored = self.stored.lock().await;
        let result = f(&mut stored.state, self.clock.now());
        let bytes = persist::encode(&stored.state);
        if bytes != stored.saved {
            let path = self.path.clone();
            let to_write = bytes.clone();
            tokio::task::spawn_blocking(move || persist::write_atomic(&path, &to_write))
                .await
                .map_err(|e| ApiError::internal(format!("state writer task failed: {e}")))?
                .map_err(|e| {
                    tracing::error!(error = %e, "sandbox state not saved");
                    ApiError::internal(e.to_string())
                })?;
            stored.saved = bytes;
        }
        result
    }

    /// Runs `f` on the state without changing it.
    async fn read<T>(&self, f: impl FnOnce(&State, Timestamp) -> T) -> T {
        let stored = self.stored.lock().await;
        f(&stored.state, self.clock.now())
    }

    /// The PSK to seal under: the server's choice when it has one
    /// (`--seal-psk`, `--strict`), else the one `?pskId=` names, else the
    /// default (first) one.
    fn psk(&self, id: Option<&str>) -> Result<&Psk, ApiError> {
        match self.modes.seal_psk.as_deref().or(id) {
            None => self.psks.first().ok_or_else(|| {
                ApiError::field(
                    "pskId",
                    "the sandbox has no pre-shared key; start it with --psk ID=FILE",
                )
            }),
            Some(id) => self.psks.iter().find(|p| p.id == id).ok_or_else(|| {
                ApiError::field("pskId", format!("no pre-shared key with id {id:?}"))
            }),
        }
    }
}

/// Binds `opts.listen`, prints `sandbox listening on http://ADDR` on stdout
/// once bound, and serves until `shutdown` completes.
pub async fn serve(
    opts: SandboxOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(opts.listen)
        .await
        .map_err(|source| SandboxError::Bind {
            addr: opts.listen,
            source,
        })?;
    serve_listener(listener, opts, Arc::new(SystemClock), shutdown).await
}

/// Like [`serve`] on a listener the caller bound (its address wins over
/// `opts.listen`), with the caller's clock.
pub async fn serve_listener(
    listener: TcpListener,
    opts: SandboxOptions,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr().map_err(SandboxError::Serve)?;
    // Reading PSKs and the state file and seeding are blocking file work.
    let app = tokio::task::spawn_blocking(move || open(&opts, clock))
        .await
        .map_err(|e| SandboxError::Serve(std::io::Error::other(e)))??;
    let app = Arc::new(app);
    let closing = app.clone();
    let shutdown = async move {
        shutdown.await;
        closing.closing.send_replace(true);
    };
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the sandbox is for local testing; it listens beyond loopback (admin endpoints still answer loopback only)");
    }
    announce(addr).map_err(SandboxError::Serve)?;
    let service = router(app).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(SandboxError::Serve)?;
    Ok(())
}

/// Prints the one line tests and scripts wait for.
fn announce(addr: SocketAddr) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "sandbox listening on http://{addr}")?;
    out.flush()
}

/// Loads PSKs and the state file, seeds if asked, and saves the result.
fn open(opts: &SandboxOptions, clock: Arc<dyn Clock>) -> Result<App, SandboxError> {
    let psks = psk::load_all(&opts.psks)?;
    let modes = Modes::of(opts, &psks)?;
    tracing::info!(
        idempotency = modes.idempotency,
        absent_old_expiry = %modes.absent_old_expiry,
        seal_psk = modes.seal_psk.as_deref().unwrap_or("(the request's pskId)"),
        "sandbox rotate behaviour"
    );
    let mut state = persist::load(&opts.state)?;
    state.last_active_granularity = modes.last_active_granularity;
    let saved = if opts.state.exists() {
        persist::encode(&state)
    } else {
        Vec::new()
    };
    if opts.seed {
        seed::seed_if_empty(&mut state, opts.seed_secrets.as_deref(), clock.now())?;
    }
    let bytes = persist::encode(&state);
    if bytes != saved {
        persist::write_atomic(&opts.state, &bytes)?;
    }
    Ok(App {
        stored: Mutex::new(Stored {
            state,
            saved: bytes,
        }),
        path: opts.state.clone(),
        clock,
        psks,
        gate: Gate::new(opts.rate_limit),
        modes,
        losses: Losses::default(),
        closing: watch::Sender::new(false),
    })
}

/// The routes: the Admin API under [`API_BASE`] behind the gate, and the
/// admin endpoints under `/_sandbox` behind the loopback check.
fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/orgs/{org_id}/api-keys", get(routes::list_keys))
        .route("/orgs/{org_id}/api-keys/count", get(routes::count_keys))
        .route(
            "/orgs/{org_id}/api-keys/revoke/{key_id}",
            patch(routes::revoke),
        )
        .route(
            "/orgs/{org_id}/api-keys/rotate/{key_id}",
            patch(routes::rotate),
        )
        .route("/orgs/{org_id}/api-tokens", get(routes::list_tokens))
        .layer(middleware::from_fn_with_state(app.clone(), limit::gate));
    let admin = Router::new()
        .route("/health", get(admin::health))
        .route("/keys", post(admin::create_key).get(admin::list_keys))
        .route("/keys/{key_id}/secret-sha256", get(admin::secret_sha256))
        .route("/audit", get(admin::audit))
        .route("/fail", post(admin::fail))
        .route("/lose", post(lose::lose))
        .layer(middleware::from_fn(admin::loopback_only));
    Router::new()
        .nest(API_BASE, api)
        .nest("/_sandbox", admin)
        .fallback(routes::no_route)
        .with_state(app)
}
