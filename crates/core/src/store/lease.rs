//! The leader lease of a store shared by several keyrot instances (the
//! PostgreSQL backend; see `pg/lease.rs`). A redb store belongs to one
//! process, which is always its leader: it has no lease.

use std::time::Duration;

use super::pg::LeaseInfo;
use super::{Db, Store, StoreError};

impl Store {
    /// Takes the leader lease for `holder` if it has expired or `holder`
    /// holds it already (always under a new epoch, which fences off the
    /// writes of any older handle of the same holder): the epoch granted
    /// and the previous holder, or `None` while another instance holds it.
    /// Holder ids must be unique per process (the daemon's are
    /// `host:pid:random`), so two processes never share a lease. From then
    /// on every write asserts the lease. `lease` is
    /// how long a grant or renewal lasts by the server's clock,
    /// `renew_deadline` (shorter) how long this process trusts one by its
    /// own monotonic clock.
    pub fn acquire_lease(
        &self,
        holder: &str,
        lease: Duration,
        renew_deadline: Duration,
    ) -> Result<Option<(u64, String)>, StoreError> {
        match &self.db {
            Db::Postgres(pg) => pg.acquire(holder, lease, renew_deadline),
            _ => Err(no_lease()),
        }
    }

    /// Renews the lease this process holds; `false` when it holds none any
    /// more (this process then writes nothing).
    pub fn renew_lease(
        &self,
        lease: Duration,
        renew_deadline: Duration,
    ) -> Result<bool, StoreError> {
        match &self.db {
            Db::Postgres(pg) => pg.renew(lease, renew_deadline),
            _ => Err(no_lease()),
        }
    }

    /// Ends the lease this process holds at once (a clean stop): a standby
    /// takes over without waiting for it to expire.
    pub fn release_lease(&self) -> Result<(), StoreError> {
        match &self.db {
            Db::Postgres(pg) => pg.release(),
            _ => Ok(()),
        }
    }

    /// The lease as the database has it; `None` for a redb store or before
    /// any instance took it.
    pub fn lease(&self) -> Result<Option<LeaseInfo>, StoreError> {
        match &self.db {
            Db::Postgres(pg) => pg.lease_info(),
            _ => Ok(None),
        }
    }

    /// Whether this process may act as the store's leader now: always for
    /// redb; on PostgreSQL, while its lease is within the renew deadline
    /// by its own monotonic clock. Asked before every call to a provider
    /// or sink.
    pub fn lease_valid(&self) -> bool {
        match &self.db {
            Db::Postgres(pg) => pg.lease_valid(),
            _ => true,
        }
    }
}

/// What a lease operation on a redb store answers.
fn no_lease() -> StoreError {
    StoreError::Other("a redb store has no leader lease: its one process is its leader".into())
}
