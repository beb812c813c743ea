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

use super::Gauges;
use crate::rotation::Engine;
use crate::shutdown::Shutdown;

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long the gauges read from the store are reused by later scrapes.
pub const GAUGE_MAX_AGE: Duration = Duration::from_secs(5);

/// What the endpoint's handlers share.
struct Endpoint {
    /// The engine: registry, store, configuration and clock.
    engine: Arc<Engine>,
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
        let cfg = Arc::clone(&self.engine.runtime().config);
        let now = self.engine.now();
        let g = self
            .engine
            .db(move |s| Gauges::read(s, &cfg, now))
            .await
            .map_err(|e| e.to_string())?;
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
    engine: &Arc<Engine>,
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
    let seeding = Arc::clone(engine);
    tokio::spawn(async move {
        match seeding.db(|s| s.rotations(None, usize::MAX)).await {
            Ok(all) => seeding.metrics().seed(&all),
            Err(e) => {
                tracing::warn!(error = %e, "cannot count past rotations for keyrot_rotations_total; it counts this process's only");
                seeding.metrics().skip_seed();
            }
        }
    });
    tokio::spawn(serve(listener, Arc::clone(engine), shutdown));
    Ok(())
}

/// Serves the endpoint on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, engine: Arc<Engine>, mut shutdown: Shutdown) {
    let state = Arc::new(Endpoint {
        engine,
        cache: tokio::sync::Mutex::new(None),
    });
    let app = Router::new()
        .route("/metrics", get(scrape))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .with_state(state);
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
    match ep.gauges().await {
        Ok(g) => (
            [(header::CONTENT_TYPE, CONTENT_TYPE)],
            ep.engine.metrics().render(&g),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "metrics scrape: cannot read the store");
            let body = format!("cannot read the store: {e}\n");
            (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
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
