//! Leadership on a shared store (the PostgreSQL backend): several keyrot
//! instances on one database, one of them the leader.
//!
//! A standby keeps its configuration and connections ready and serves
//! every read (status, history, metrics), but runs no rotation, sync,
//! outbox or scheduled job, and answers calls that would change something
//! with 503 and the leader's identity. Every retry period (a fifth of the
//! lease) it asks for the lease; PostgreSQL grants it once it has expired,
//! so a standby takes over within a lease of the leader's death.
//!
//! The leader renews the lease every retry period. A renewal refused (the
//! lease expired and was granted to another instance), or none succeeding
//! within the renew deadline (two thirds of the lease) by this process's
//! monotonic clock, ends this process: it exits with EX_TEMPFAIL, systemd
//! starts it again, and it comes back as a standby. Until then the store
//! refuses its writes (each one checks the lease under the write lock)
//! and the engine makes no call to a provider or sink (it asks
//! [`Store::lease_valid`] first). On SIGTERM the leader releases the lease
//! after its tasks have stopped, so that a standby takes over at once.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::control::InstanceRole;
use keyrot_config::PostgresConfig;
use keyrot_core::store::Store;
use tokio_util::sync::CancellationToken;

/// Queues the failover message of a takeover from `previous` under
/// `epoch` (once per epoch: its id names it).
pub async fn announce(
    engine: &keyrot_engine::rotation::Engine,
    holder: &str,
    previous: &str,
    epoch: u64,
) {
    let cfg = Arc::clone(&engine.runtime().config);
    let lease = cfg
        .store
        .postgres
        .as_ref()
        .map(|p| p.lease)
        .unwrap_or_default();
    let takeover = keyrot_engine::notify::failover::Takeover {
        instance: holder,
        previous,
        epoch,
        at: engine.now(),
        lease,
    };
    let messages = keyrot_engine::notify::Composer::new(cfg).failover(&takeover);
    let store = engine.store();
    let queued = tokio::task::spawn_blocking(move || {
        store.write(|tx| {
            for m in &messages {
                if tx.message(&m.id)?.is_none() {
                    tx.put_message(m)?;
                }
            }
            Ok(())
        })
    })
    .await;
    if let Ok(Err(e)) = queued {
        tracing::warn!(error = %e, "cannot queue the failover message");
    }
}

/// The `[store]` PostgreSQL settings in force, if that is the backend.
pub fn postgres_of(
    engine: &keyrot_engine::rotation::Engine,
) -> Option<keyrot_config::PostgresConfig> {
    engine.runtime().config.store.postgres.clone()
}

/// Leadership, for `run_engine`.
pub struct Lead {
    /// On a shared store.
    pub leadership: Option<Arc<Leadership>>,
    /// Cancelled when the lease is lost: keyrot exits.
    pub lost: CancellationToken,
}

/// The exit status after losing the lease (sysexits' EX_TEMPFAIL).
pub const EXIT_LEASE_LOST: u8 = 75;

/// This instance's part in leadership.
pub struct Leadership {
    /// The shared store.
    store: Arc<Store>,
    /// This instance's id: host, process id and a random suffix.
    holder: String,
    /// How long a grant or renewal lasts (the server's clock).
    lease: Duration,
    /// How long this process trusts one (its own clock).
    renew_deadline: Duration,
    /// Between two campaigns, or two renewals.
    retry: Duration,
    /// What changes.
    state: Mutex<State>,
    /// `keyrot_leader` and `keyrot_failovers`.
    metrics: Arc<keyrot_engine::metrics::Metrics>,
}

/// The role as it stands.
#[derive(Clone, Debug, Default)]
struct State {
    /// The epoch this instance leads under; `None` while a standby.
    epoch: Option<u64>,
    /// The leader as a standby last saw it: `holder (epoch N)`.
    leader: Option<String>,
    /// Times this instance took over from another one.
    failovers: u64,
}

impl Leadership {
    /// This instance's leadership of `store` with `cfg`'s lease.
    pub fn new(
        store: Arc<Store>,
        cfg: &PostgresConfig,
        metrics: Arc<keyrot_engine::metrics::Metrics>,
    ) -> Leadership {
        let lease = cfg.lease.unsigned_abs();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| keyrot_core::escape::controls(h.trim()).into_owned())
            .unwrap_or_else(|_| "unknown-host".into());
        let suffix: u16 = rand::random();
        Leadership {
            store,
            holder: format!("{host}:{}:{suffix:04x}", std::process::id()),
            lease,
            renew_deadline: lease * 2 / 3,
            retry: lease / 5,
            state: Mutex::new(State::default()),
            metrics,
        }
    }

    /// The state.
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// While a standby: the leader as last seen (`holder (epoch N)`).
    pub fn standby(&self) -> Option<String> {
        let st = self.state();
        match st.epoch {
            Some(_) => None,
            None => Some(
                st.leader
                    .clone()
                    .unwrap_or_else(|| "not known yet (no instance holds the lease)".into()),
            ),
        }
    }

    /// The role, for status and metrics.
    pub fn view(&self) -> InstanceRole {
        let st = self.state();
        InstanceRole {
            role: if st.epoch.is_some() {
                "leader"
            } else {
                "standby"
            }
            .into(),
            instance: self.holder.clone(),
            failovers: st.failovers,
        }
    }

    /// Runs a store call on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, keyrot_core::store::StoreError> + Send + 'static,
    ) -> Result<T, String> {
        let store = Arc::clone(&self.store);
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("internal error: {e}")),
        }
    }

    /// This instance's id.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Waits until this instance holds the lease: its epoch and the
    /// previous holder (empty for the first grant), or `None` when `stop`
    /// came first.
    pub async fn campaign(&self, stop: &CancellationToken) -> Option<(u64, String)> {
        let mut seen: Option<String> = None;
        loop {
            let (holder, lease, deadline) = (self.holder.clone(), self.lease, self.renew_deadline);
            match self
                .blocking(move |s| s.acquire_lease(&holder, lease, deadline))
                .await
            {
                Ok(Some((epoch, previous))) => {
                    let mut st = self.state();
                    st.epoch = Some(epoch);
                    st.leader = None;
                    self.metrics.set_leader(true);
                    if previous.is_empty() {
                        tracing::info!(instance = %self.holder, epoch, "leading: took the lease");
                    } else {
                        st.failovers += 1;
                        self.metrics.failover();
                        tracing::warn!(instance = %self.holder, epoch, previous = %previous,
                            "leading: took over the lease from another instance (failover)");
                    }
                    return Some((epoch, previous));
                }
                Ok(None) => {
                    let leader = self
                        .blocking(|s| s.lease())
                        .await
                        .ok()
                        .flatten()
                        .map(|l| format!("{} (epoch {})", l.holder, l.epoch));
                    if leader != seen {
                        tracing::info!(instance = %self.holder,
                            leader = leader.as_deref().unwrap_or("unknown"),
                            "standby: another instance holds the lease");
                        seen.clone_from(&leader);
                    }
                    self.state().leader = leader;
                }
                Err(e) => {
                    tracing::warn!(instance = %self.holder, error = %e,
                        "standby: cannot ask the store for the lease; trying again");
                }
            }
            tokio::select! {
                () = stop.cancelled() => return None,
                () = tokio::time::sleep(self.retry) => {}
            }
        }
    }

    /// Renews the lease every retry period until `stop` (`Ok`), or until
    /// it is lost (`Err`, saying why).
    pub async fn hold(&self, stop: &CancellationToken) -> Result<(), String> {
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(self.retry) => {}
            }
            let (lease, deadline) = (self.lease, self.renew_deadline);
            match self.blocking(move |s| s.renew_lease(lease, deadline)).await {
                Ok(true) => {}
                Ok(false) => {
                    self.state().epoch = None;
                    self.metrics.set_leader(false);
                    return Err("the lease expired and another instance may hold it now".into());
                }
                Err(e) if self.store.lease_valid() => {
                    tracing::warn!(instance = %self.holder, error = %e,
                        "leading: cannot renew the lease; trying again within the renew deadline");
                }
                Err(e) => {
                    self.state().epoch = None;
                    self.metrics.set_leader(false);
                    return Err(format!(
                        "no renewal of the lease succeeded within the renew deadline ({}s): {e}",
                        self.renew_deadline.as_secs()
                    ));
                }
            }
        }
    }

    /// Releases the lease (a clean stop): a standby takes over at once.
    pub async fn release(&self) {
        self.metrics.set_leader(false);
        if self.state().epoch.take().is_some()
            && let Err(e) = self.blocking(|s| s.release_lease()).await
        {
            tracing::warn!(instance = %self.holder, error = %e,
                "cannot release the lease; a standby takes over when it expires");
        }
    }
}
