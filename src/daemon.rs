//! The daemon: wiring of store, engine, scheduler, outbox sender and
//! control server; signals (SIGHUP reload, SIGTERM/SIGINT orderly stop);
//! sd_notify READY/STATUS/RELOADING/STOPPING and the watchdog.
//!
//! Stopping: SIGTERM/SIGINT cancels one token that every task listens to,
//! then keyrot waits up to `daemon.shutdown_timeout` for the tasks on its
//! tracker (a runner finishes the step in flight; the loops return). A
//! fatal store error (a failed commit) ends the daemon at once with exit
//! status 70, and the service manager starts it again.
//!
//! Config and store are opened before the tokio runtime is built, so a bad
//! config or a locked store fails fast with a clear message.
//!
//! READY=1 means keyrot serves: the store is open and checked, the control
//! socket (and the metrics endpoint, if any) answers, the outbox sender runs
//! and every unfinished rotation has been resumed. Nothing before it grows
//! with the history or the inventory (the store open reads its header and
//! meta, resume reads the rotations in progress through an index), so a
//! store of 100k keys is READY in tens of milliseconds. The first inventory
//! sync of every provider runs right after READY, then the due loop starts:
//! until that sync ends, `keyrot status` shows the inventory as the store
//! holds it from the last run.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use futures::StreamExt as _;
use sd_notify::NotifyState;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::{self, Backend};
use keyrot_config::{self as config, Config};
use keyrot_core::clock::{Clock, SystemClock};
use keyrot_core::shutdown::Shutdown;
use keyrot_core::store::Store;
use keyrot_core::wake::Wake;
use keyrot_engine::rotation::{Engine, Runtime};
use keyrot_engine::scheduler::{self, SyncRetries};

mod backend;
mod leader;

use backend::DaemonBackend;
use leader::Leadership;

/// The exit status after a fatal store error (sysexits' EX_SOFTWARE):
/// `Restart=on-failure` starts keyrot again, and resume does the rest.
const EXIT_STORE_FATAL: u8 = 70;

mod open;

pub use open::{open_store, open_store_read_only, postgres_target};

/// `keyrot run`: runs until SIGTERM/SIGINT.
pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    // Before any secret is read: no core dump, no debugger of the same user.
    let hardened = keyrot_core::hardening::harden_process();
    let cfg = match config::load_checked(config_path) {
        Ok(cfg) => Arc::new(cfg),
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::from(1));
        }
    };
    keyrot_peers::http::proxy::set(cfg.daemon.proxy.as_ref());
    let store = Arc::new(open_store(&cfg)?);
    log_hardening(hardened);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .thread_name("keyrot")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        // Signal streams are created once, before anything can send them.
        let signals = signal_hook_tokio::Signals::new([SIGHUP, SIGTERM, SIGINT])
            .context("installing signal handlers")?;
        serve(config_path, cfg, store, Arc::new(SystemClock), signals).await
    })
}

/// Loads the config anew; a bad one is rejected, logged, and the old one
/// keeps running.
async fn reload(
    engine: &Arc<Engine>,
    path: &Path,
    lock: &Mutex<()>,
    wake: &Wake,
    retries: &SyncRetries,
) -> Result<(), String> {
    let _guard = lock.lock().await;
    // sd_notify(3): RELOADING=1 carries MONOTONIC_USEC= (Type=notify-reload
    // needs it to tell this reload from an older one).
    let mut reloading = vec![
        NotifyState::Reloading,
        NotifyState::Status("reloading configuration"),
    ];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        reloading.push(now);
    }
    let _ = sd_notify::notify(&reloading);
    // The peers' clients are built anew below: with the host's CA roots of
    // now, not of the start.
    keyrot_core::crypto::tls::reread_system_roots();
    let result = load_runtime(engine, path);
    match result {
        Ok(new) => {
            let old = engine.runtime();
            let pending = restart_only_changes(&old.config, &new.config);
            if !pending.is_empty() {
                tracing::warn!(
                    settings = %pending.join(", "),
                    "changed settings that take effect only at the next restart (everything else is applied now): {}",
                    pending.join(", ")
                );
            }
            engine.set_runtime(new);
            tracing::info!(config = %path.display(), "configuration reloaded");
            scheduler::sync_all(engine, wake, retries).await;
            let _ = sd_notify::notify(&[
                NotifyState::Ready,
                NotifyState::Status("running (configuration reloaded)"),
            ]);
            Ok(())
        }
        Err(msg) => {
            for line in msg.lines() {
                tracing::error!(error = %line, "reload rejected; the previous configuration stays in force");
            }
            let _ = sd_notify::notify(&[
                NotifyState::Ready,
                NotifyState::Status("running (reload rejected: see log)"),
            ]);
            Err(msg)
        }
    }
}

/// The settings read once at start that differ between `old` and `new`, by
/// their names in the file: a reload applies everything else.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let (o, n) = (old, new);
    [
        ("store.path", o.store.path != n.store.path),
        (
            "store.master_key_file",
            o.store.master_key_file != n.store.master_key_file,
        ),
        (
            "store.create_master_key",
            o.store.create_master_key != n.store.create_master_key,
        ),
        (
            "daemon.control_socket",
            o.daemon.control_socket != n.daemon.control_socket,
        ),
        (
            "daemon.control_socket_mode",
            o.daemon.control_socket_mode != n.daemon.control_socket_mode,
        ),
        (
            "daemon.metrics_listen",
            o.daemon.metrics_listen != n.daemon.metrics_listen,
        ),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect()
}

fn load_runtime(engine: &Arc<Engine>, path: &Path) -> Result<Runtime, String> {
    let cfg = config::load_checked(path).map_err(|e| e.to_string())?;
    // The clients of the new providers and sinks use the new proxy; a
    // rejected reload puts the one in force back.
    keyrot_peers::http::proxy::set(cfg.daemon.proxy.as_ref());
    let mut rt = Runtime::build(Arc::new(cfg), &engine.store()).inspect_err(|_| {
        keyrot_peers::http::proxy::set(engine.runtime().config.daemon.proxy.as_ref());
    })?;
    rt.inherit_limits(&engine.runtime());
    Ok(rt)
}

/// Says what [`keyrot_core::hardening::harden_process`] achieved, and how much
/// memory is locked (the master key's pages) once the store is open.
fn log_hardening(h: keyrot_core::hardening::Hardening) {
    let locked_kib = keyrot_core::hardening::locked_kib().unwrap_or(0);
    if h.not_dumpable && h.no_core {
        tracing::info!(
            dumpable = 0,
            core_limit = 0,
            locked_kib,
            "process hardened: no core dumps (RLIMIT_CORE 0), not dumpable, {locked_kib} KiB locked in memory"
        );
    } else {
        tracing::warn!(
            not_dumpable = h.not_dumpable,
            no_core = h.no_core,
            locked_kib,
            "process hardening incomplete: a core dump could hold the master key (is prctl or prlimit64 filtered?)"
        );
    }
}

/// Serves until `signals` brings SIGTERM or SIGINT (SIGHUP reloads), or a
/// fatal store error ends keyrot with exit status 70.
async fn serve(
    config_path: &Path,
    cfg: Arc<Config>,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    signals: impl futures::Stream<Item = i32> + Unpin,
) -> anyhow::Result<ExitCode> {
    // Cancelled once, at SIGTERM/SIGINT; `tasks` tells when every task
    // that listens to it has ended.
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    let wake = Wake::new();
    let runtime = Runtime::build(cfg, &store).map_err(anyhow::Error::msg)?;
    // A child token: a fatal store error stops the engine's runners by
    // itself, and keyrot's stop reaches them too.
    let engine = Engine::new(
        store,
        runtime,
        Arc::clone(&clock),
        wake.clone(),
        stop.child_token(),
        tasks.clone(),
    );
    // On a shared store, leadership; `lost` fires when the lease is lost.
    let leadership = leader::postgres_of(&engine).map(|pg| {
        Arc::new(Leadership::new(
            engine.store(),
            &pg,
            Arc::clone(engine.metrics()),
        ))
    });
    // A redb store's one process always leads.
    engine.metrics().set_leader(leadership.is_none());
    let lost = CancellationToken::new();
    let lead = leader::Lead {
        leadership,
        lost: lost.clone(),
    };
    let served = tokio::select! {
        out = run_engine(config_path, Arc::clone(&engine), clock, wake, stop, tasks, signals, lead) => out,
        () = engine.until_fatal() => Ok(ExitCode::from(EXIT_STORE_FATAL)),
        () = lost.cancelled() => Ok(ExitCode::from(leader::EXIT_LEASE_LOST)),
    };
    // A fatal store error ends keyrot wherever it happens (resume at start
    // included), at once: redb takes no more writes until the store is
    // reopened. The error was logged where the commit failed. On a shared
    // store, a write refused because the lease is gone is a lost lease.
    if engine.fatal().is_some() {
        let lease_lost =
            engine.runtime().config.store.postgres.is_some() && !engine.store().lease_valid();
        return Ok(ExitCode::from(if lease_lost {
            leader::EXIT_LEASE_LOST
        } else {
            EXIT_STORE_FATAL
        }));
    }
    served
}

/// Runs `engine` and everything around it until SIGTERM/SIGINT, then stops
/// in order.
#[allow(clippy::too_many_arguments)]
async fn run_engine(
    config_path: &Path,
    engine: Arc<Engine>,
    clock: Arc<dyn Clock>,
    wake: Wake,
    stop: CancellationToken,
    tasks: TaskTracker,
    mut signals: impl futures::Stream<Item = i32> + Unpin,
    lead: leader::Lead,
) -> anyhow::Result<ExitCode> {
    // The configuration at start, and the store.
    let cfg = Arc::clone(&engine.runtime().config);
    let store = engine.store();
    let socket = cfg.daemon.control_socket.clone();
    let listener = control::server::bind(&socket, cfg.daemon.control_socket_mode)
        .with_context(|| format!("binding the control socket {}", socket.display()))?;
    let reload_lock = Arc::new(Mutex::new(()));
    // Providers whose inventory sync failed, retried by the sync loop.
    let sync_retries = SyncRetries::default();
    let backend: Arc<dyn Backend> = Arc::new(DaemonBackend {
        engine: Arc::clone(&engine),
        config_path: config_path.to_path_buf(),
        reload_lock: Arc::clone(&reload_lock),
        wake: wake.clone(),
        sync_retries: sync_retries.clone(),
        leadership: lead.leadership.clone(),
    });
    // Not on the tracker: the server's requests in flight are awaited
    // after it (`server.await` below).
    let server = tokio::spawn(control::server::serve(
        listener,
        Arc::clone(&backend),
        stop.clone().cancelled_owned(),
    ));
    let sources = crate::metrics::Sources {
        metrics: Arc::clone(engine.metrics()),
        store: Arc::clone(&store),
        clock: Arc::clone(&clock),
        config: {
            let engine = Arc::clone(&engine);
            Box::new(move || Arc::clone(&engine.runtime().config))
        },
    };
    crate::metrics::start(
        cfg.daemon.metrics_listen,
        sources,
        Shutdown::new(stop.clone(), &tasks),
    )
    .await?;
    spawn_watchdog(&tasks, stop.clone());

    // On a shared store: a standby until this instance holds the lease.
    if let Some(l) = &lead.leadership {
        let _ = sd_notify::notify(&[
            NotifyState::Ready,
            NotifyState::Status("standby: waiting for the leader lease"),
        ]);
        let won = loop {
            tokio::select! {
                epoch = l.campaign(&stop) => break epoch,
                sig = signals.next() => match sig {
                    Some(SIGHUP) => {
                        let _ = reload(&engine, config_path, &reload_lock, &wake, &sync_retries).await;
                    }
                    _ => break None,
                },
            }
        };
        if let Some((epoch, previous)) = &won
            && !previous.is_empty()
        {
            leader::announce(&engine, l.holder(), previous, *epoch).await;
        }
        if won.is_none() {
            tracing::info!("stopping a standby");
            drop(backend);
            stop.cancel();
            tasks.close();
            tasks.wait().await;
            let _ = server.await;
            let _ = std::fs::remove_file(&socket);
            return Ok(ExitCode::SUCCESS);
        }
        let (l, stop, lost) = (Arc::clone(l), stop.clone(), lead.lost.clone());
        tasks.spawn(async move {
            if let Err(why) = l.hold(&stop).await {
                tracing::error!(%why, "lost the leader lease: exiting so that a restart makes this instance a standby");
                lost.cancel();
            }
        });
    }

    {
        let store = Arc::clone(&store);
        let engine = Arc::clone(&engine);
        tokio::spawn(keyrot_engine::notify::sender::run(
            store,
            move || engine.runtime().config.notify.clone(),
            Arc::clone(&clock),
            wake.clone(),
            Shutdown::new(stop.clone(), &tasks),
        ));
    }
    let resumed = engine.resume_all().await?;
    {
        let engine = Arc::clone(&engine);
        let wake = wake.clone();
        let stop = stop.clone();
        let retries = sync_retries.clone();
        tasks.spawn(async move {
            scheduler::sync_all(&engine, &wake, &retries).await;
            scheduler::run(engine, wake, stop).await;
        });
    }
    tasks.spawn(scheduler::sync_loop(
        Arc::clone(&engine),
        wake.clone(),
        sync_retries.clone(),
        stop.clone(),
    ));

    let status = format!(
        "running: {} provider(s), {} key entr(ies), {resumed} rotation(s) resumed",
        cfg.providers.len(),
        cfg.keys.len()
    );
    tracing::info!(config = %config_path.display(), socket = %socket.display(), store = %store.path().display(), resumed, "keyrot started");
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(&status)]);

    while let Some(sig) = signals.next().await {
        match sig {
            SIGHUP => {
                let _ = reload(&engine, config_path, &reload_lock, &wake, &sync_retries).await;
            }
            _ => break,
        }
    }
    tracing::info!("stopping: no new work; waiting for in-flight steps to commit");
    let _ = sd_notify::notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    drop(backend);
    // The configuration in force now: a reload may have changed it.
    let timeout = std::time::Duration::try_from(engine.runtime().config.daemon.shutdown_timeout)
        .unwrap_or(std::time::Duration::from_secs(30));
    // No runner starts from here on; the tracker empties as the tasks end.
    stop.cancel();
    tasks.close();
    let clean = tokio::time::timeout(timeout, tasks.wait()).await.is_ok();
    let _ = server.await;
    let _ = std::fs::remove_file(&socket);
    if let Some(l) = &lead.leadership {
        l.release().await;
    }
    if clean {
        tracing::info!("stopped");
    } else {
        tracing::warn!(timeout = ?timeout, "stopped before every step finished; unfinished rotations resume at the next start");
    }
    Ok(ExitCode::SUCCESS)
}

/// Sends WATCHDOG=1 at half of `$WATCHDOG_USEC` until `stop`.
fn spawn_watchdog(tasks: &TaskTracker, stop: CancellationToken) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    let period = period / 2;
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = tick.tick() => { let _ = sd_notify::notify(&[NotifyState::Watchdog]); }
                _ = stop.cancelled() => return,
            }
        }
    });
}

#[cfg(test)]
mod tests;
