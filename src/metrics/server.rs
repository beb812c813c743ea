//! The optional metrics endpoint: plain HTTP/1.1 on TCP (axum), `GET
//! /metrics` in the text format, 404 for everything else. Bound at start
//! from `[daemon] metrics_listen` and stopped with the daemon; a reload
//! keeps the listener it has. Gauges are read from the store at most once
//! per [`GAUGE_MAX_AGE`], one read at a time, however many scrapes come.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use super::{CONTENT_TYPE, Gauges, Metrics};
use keyrot_config::Config;
use keyrot_core::clock::Clock;
use keyrot_core::shutdown::Shutdown;
use keyrot_core::store::{Store, StoreError};

/// How long the gauges read from the store are reused by later scrapes.
pub const GAUGE_MAX_AGE: Duration = Duration::from_secs(5);

/// What the endpoint reads.
pub struct Sources {
    /// The registry the engine and the scheduler bump.
    pub metrics: Arc<Metrics>,
    /// The store the gauges and the rotation history are read from.
    pub store: Arc<Store>,
    /// Where `now` comes from (the expiry windows).
    pub clock: Arc<dyn Clock>,
    /// The configuration in force (it changes at a reload).
    pub config: Box<dyn Fn() -> Arc<Config> + Send + Sync>,
}

impl Sources {
    /// Runs a read of the store on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, String> {
        let store = Arc::clone(&self.store);
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(out) => out.map_err(|e| e.to_string()),
            Err(e) => Err(format!("internal: {e}")),
        }
    }
}

/// What the endpoint's handlers share.
struct Endpoint {
    /// Registry, store, clock and configuration.
    sources: Sources,
    /// The last gauges read and when; one read at a time.
    cache: tokio::sync::Mutex<Option<(Instant, Arc<Gauges>)>>,
}

impl Endpoint {
    /// The gauges, read anew when the cached ones are older than
    /// [`GAUGE_MAX_AGE`].
    async fn gauges(&self) -> Result<Arc<Gauges>, String> {
        let mut cache = self.cache.lock().await;
        if let Some((at, g)) = cache.as_ref()
            && at.elapsed() < GAUGE_MAX_AGE
        {
            return Ok(Arc::clone(g));
        }
        let cfg = (self.sources.config)();
        let now = self.sources.clock.now();
        let g = self
            .sources
            .read(move |s| Gauges::read(s, &cfg, now))
            .await?;
        let g = Arc::new(g);
        *cache = Some((Instant::now(), Arc::clone(&g)));
        Ok(g)
    }
}

/// Binds `addr` (when configured), then serves `GET /metrics` until
/// `shutdown`, and counts the store's rotation history in the background.
/// Logs the bound address (port 0 picks one) and warns when it is not a
/// loopback address. Must run inside a tokio runtime.
pub async fn start(
    addr: Option<SocketAddr>,
    sources: Sources,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let Some(addr) = addr else {
        return Ok(());
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics endpoint {addr} (daemon.metrics_listen)"))?;
    let bound = listener.local_addr().unwrap_or(addr);
    if !bound.ip().is_loopback() {
        tracing::warn!(listen = %bound, "metrics_listen is not a loopback address: whoever reaches it reads provider and sink names and key counts (never secrets); firewall it or bind 127.0.0.1");
    }
    tracing::info!(listen = %bound, "metrics endpoint listening on http://{bound}/metrics");
    let ep = Arc::new(Endpoint {
        sources,
        cache: tokio::sync::Mutex::new(None),
    });
    let seeding = Arc::clone(&ep);
    tokio::spawn(async move {
        let metrics = &seeding.sources.metrics;
        match seeding
            .sources
            .read(|s| s.rotations(None, usize::MAX))
            .await
        {
            Ok(all) => metrics.seed(&all),
            Err(e) => {
                tracing::warn!(error = %e, "cannot count past rotations for keyrot_rotations_total; it counts this process's only");
                metrics.skip_seed();
            }
        }
    });
    tokio::spawn(serve(listener, ep, shutdown));
    Ok(())
}

/// Serves the endpoint on `listener` until `shutdown`.
async fn serve(listener: TcpListener, ep: Arc<Endpoint>, mut shutdown: Shutdown) {
    let app = Router::new()
        .route("/metrics", get(scrape))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .with_state(ep);
    let stop = async move { shutdown.recv().await };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(error = %e, "metrics endpoint stopped");
    }
}

/// `GET /metrics`.
async fn scrape(State(ep): State<Arc<Endpoint>>) -> Response {
    let g = match ep.gauges().await {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(error = %e, "metrics scrape: cannot read the store");
            let body = format!("cannot read the store: {e}\n");
            return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
        }
    };
    match ep.sources.metrics.render(&g) {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics scrape: cannot write the exposition");
            let body = "cannot write the exposition\n";
            (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
        }
    }
}

/// Everything but `GET /metrics`.
async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found: keyrot serves GET /metrics only\n",
    )
        .into_response()
}
