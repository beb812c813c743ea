//! The leader lease: which of the keyrot instances sharing a database may
//! write, and run rotations.
//!
//! One row holds the holder, an epoch (one more at every grant) and an
//! expiry, all by PostgreSQL's clock (`now()`), so the instances' clocks
//! never have to agree. An instance takes the lease only once it has
//! expired (or when it holds it already, see [`PgStore::acquire`]), and
//! renews it well before it does. Granting takes the store's
//! write lock, and every write transaction checks under that lock that its
//! process still holds an unexpired lease of its epoch: once a lease is
//! granted to another instance, no write of the old holder's is accepted,
//! however long it was paused or cut off.
//!
//! An instance also keeps its own deadline on the monotonic clock: the
//! local instant it sent the last successful grant or renewal plus the
//! renew deadline, which is shorter than the lease. [`super::PgStore::lease_valid`]
//! says whether it is still before that instant; the engine asks before
//! every call to a provider or sink.

use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::pool::Lease as Conn;
use super::{PgStore, pg, sql, unsigned};
use crate::store::StoreError;

/// The lease this process holds.
#[derive(Clone, Debug)]
pub(super) struct Fence {
    /// This instance's holder id.
    pub(super) holder: String,
    /// The epoch it was granted under.
    pub(super) epoch: i64,
    /// Until when this process trusts it holds the lease (monotonic).
    pub(super) valid_until: Instant,
}

/// The lease as the database has it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaseInfo {
    /// The holder's id (empty before the first grant).
    pub holder: String,
    /// Grants so far.
    pub epoch: u64,
    /// When it was last granted or renewed (the server's clock).
    pub renewed_at: Option<Timestamp>,
    /// When it expires (the server's clock).
    pub expires_at: Option<Timestamp>,
    /// The server's clock when this was read.
    pub read_at: Timestamp,
}

impl LeaseInfo {
    /// Whether the lease was unexpired when read.
    pub fn is_live(&self) -> bool {
        self.expires_at.is_some_and(|e| e > self.read_at)
    }
}

/// A `timestamptz` that may be infinite, as a timestamp.
fn instant(v: Option<std::time::SystemTime>) -> Option<Timestamp> {
    v.and_then(|t| Timestamp::try_from(t).ok())
}

impl PgStore {
    /// The lease this process holds, for a write; an error when it holds
    /// none (a standby writes nothing).
    pub(super) fn fence(&self) -> Result<Fence, StoreError> {
        self.fence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                StoreError::Other(
                    "this keyrot is a standby: it does not hold the leader lease, so it writes \
                     nothing (ask the leader)"
                        .into(),
                )
            })
    }

    /// Records the lease this process holds now (or none).
    pub(super) fn set_fence(&self, fence: Option<Fence>) {
        *self
            .fence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fence;
    }

    /// Whether this process holds the lease by its own monotonic clock.
    pub(in crate::store) fn lease_valid(&self) -> bool {
        self.fence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .is_some_and(|f| Instant::now() < f.valid_until)
    }

    /// The lease row.
    pub(in crate::store) fn lease_info(&self) -> Result<Option<LeaseInfo>, StoreError> {
        Conn::take(&self.pool).run(|c| {
            let Some(r) = c
                .query_opt(sql::LEASE_ROW, &[])
                .map_err(pg("reading the leader lease"))?
            else {
                return Ok(None);
            };
            Ok(Some(LeaseInfo {
                holder: r.get(0),
                epoch: unsigned(r.get(1)),
                renewed_at: instant(r.try_get(2).ok()),
                expires_at: instant(r.try_get(3).ok()),
                read_at: instant(r.try_get(4).ok()).unwrap_or_default(),
            }))
        })
    }

    /// Takes the lease for `holder` when it has expired, or when `holder`
    /// holds it already: the epoch granted and the previous holder (empty
    /// before the first grant), or `None` while another instance holds it.
    /// `renew_deadline` is how long this process trusts a grant or renewal
    /// by its own clock.
    ///
    /// Every grant is a new epoch, a grant to the holder it already had
    /// too: a process that drops its store and opens it again (a crash in
    /// process, as the tests make one) takes the lease back at once, and
    /// whatever the dropped handle would still write, under the old epoch,
    /// is refused. This never lets two processes share a lease as long as
    /// holder ids are unique per process: the daemon's are
    /// `host:pid:random`, so another process, or the same host's next one,
    /// never has the id of the instance that holds the lease.
    pub(in crate::store) fn acquire(
        &self,
        holder: &str,
        lease: Duration,
        renew_deadline: Duration,
    ) -> Result<Option<(u64, String)>, StoreError> {
        let sent = Instant::now();
        let me = holder.to_owned();
        let granted = Conn::take(&self.pool).run(move |c| {
            let mut t = c.transaction().map_err(pg("starting a transaction"))?;
            // Waits for a write of the old holder that is under way: it
            // checked its lease before this grant, never after.
            t.batch_execute(sql::LOCK_WRITES)
                .map_err(pg("taking the write lock"))?;
            t.execute(sql::LEASE_SEED, &[])
                .map_err(pg("reading the leader lease"))?;
            let row = t
                .query_one(sql::LEASE_LOCK, &[&me])
                .map_err(pg("reading the leader lease"))?;
            let (previous, free): (String, bool) = (row.get(0), row.get(2));
            if !free {
                return Ok(None);
            }
            let Some(granted) = t
                .query_opt(sql::LEASE_GRANT, &[&me, &lease.as_secs_f64()])
                .map_err(pg("taking the leader lease"))?
            else {
                return Ok(None);
            };
            let epoch: i64 = granted.get(0);
            t.commit().map_err(pg("taking the leader lease"))?;
            Ok(Some((epoch, previous)))
        })?;
        let Some((epoch, previous)) = granted else {
            return Ok(None);
        };
        self.set_fence(Some(Fence {
            holder: holder.to_owned(),
            epoch,
            valid_until: sent + renew_deadline,
        }));
        Ok(Some((unsigned(epoch), previous)))
    }

    /// Renews the lease this process holds; `false` when it no longer
    /// holds one (expired, or granted to another instance): this process
    /// then writes nothing more.
    pub(in crate::store) fn renew(
        &self,
        lease: Duration,
        renew_deadline: Duration,
    ) -> Result<bool, StoreError> {
        let Ok(fence) = self.fence() else {
            return Ok(false);
        };
        let sent = Instant::now();
        let (holder, epoch) = (fence.holder.clone(), fence.epoch);
        let renewed = Conn::take(&self.pool).run(move |c| {
            c.execute(sql::LEASE_RENEW, &[&holder, &epoch, &lease.as_secs_f64()])
                .map_err(pg("renewing the leader lease"))
                .map(|n| n == 1)
        })?;
        if renewed {
            self.set_fence(Some(Fence {
                valid_until: sent + renew_deadline,
                ..fence
            }));
        } else {
            self.set_fence(None);
        }
        Ok(renewed)
    }

    /// Ends the lease this process holds at once (a clean stop), so that
    /// a standby takes over without waiting for it to expire.
    pub(in crate::store) fn release(&self) -> Result<(), StoreError> {
        let Ok(fence) = self.fence() else {
            return Ok(());
        };
        self.set_fence(None);
        Conn::take(&self.pool).run(move |c| {
            c.execute(sql::LEASE_RELEASE, &[&fence.holder, &fence.epoch])
                .map_err(pg("releasing the leader lease"))
                .map(drop)
        })
    }
}
