//! A write transaction on PostgreSQL: the operations of the redb store's
//! `Tx`, each one job on the transaction's own connection, keeping the
//! secondary tables (due index, `active`, `latest_rotation`, audit head)
//! in step exactly as the redb store does.

use std::sync::Arc;

use jiff::Timestamp;
use postgres::Client;
use secrecy::SecretString;
use serde::de::DeserializeOwned;

use super::pool::Lease;
use super::{pg, prepared, rows, signed, sql};
use crate::crypto::MasterKey;
use crate::model::{AuditEntry, Duplicates, KeyRecord, OutboxMessage, RotationRecord};
use crate::store::audit::NewEntry;
use crate::store::tables::{
    META_AUDIT_HEAD, META_DUPLICATES, META_LAST_SYNC, decode, due_micros, encode, rotation_timer,
    seal_secret, state_name, target_key,
};
use crate::store::{DueTarget, LocalKey, StoreError};

/// An open write transaction (rolled back on drop unless committed).
pub(in crate::store) struct PgTx {
    /// The transaction's connection.
    lease: Lease,
    /// Seals secrets.
    master: Arc<MasterKey>,
    /// Whether `COMMIT` was sent.
    done: bool,
}

impl PgTx {
    /// Wraps a connection on which `BEGIN` and the write lock succeeded.
    pub(super) fn new(lease: Lease, master: Arc<MasterKey>) -> PgTx {
        PgTx {
            lease,
            master,
            done: false,
        }
    }

    /// Runs `f` on the transaction's connection.
    pub(super) fn on<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.lease.run(f)
    }

    /// Commits. An error is a [`StoreError::CommitFailed`]: whether the
    /// commit is durable is unknown when the connection broke.
    pub(in crate::store) fn commit(mut self) -> Result<(), StoreError> {
        self.done = true;
        self.lease.run(|c| {
            c.batch_execute(sql::COMMIT).map_err(|e| {
                StoreError::CommitFailed(format!("PostgreSQL: {}", super::describe(&e)))
            })
        })
    }

    /// Runs `f` on the transaction's connection (the import's bulk
    /// statements).
    pub(super) fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.lease.run(f)
    }

    /// Upserts a slot, keeping `due` and `active` in step.
    pub(in crate::store) fn put_key(&mut self, rec: &KeyRecord) -> Result<(), StoreError> {
        let bytes = encode("keys", &rec.slot, rec)?;
        let slot = rec.slot.clone();
        let (next_due, active) = (rec.next_due, rec.active_rotation.clone());
        self.lease.run(move |c| {
            let old: Option<KeyRecord> = get_json(c, sql::KEY_GET, "keys", &slot)?;
            prepared::execute(c, sql::KEY_PUT, &[&slot, &bytes]).map_err(pg("writing a key"))?;
            let target = target_key(&DueTarget::Key(slot.clone()));
            move_due(c, &target, old.and_then(|o| o.next_due), next_due)?;
            match active {
                Some(id) => prepared::execute(c, sql::ACTIVE_PUT, &[&slot, &id]),
                None => prepared::execute(c, sql::ACTIVE_DELETE, &[&slot]),
            }
            .map_err(pg("updating active"))?;
            Ok(())
        })
    }

    /// Deletes a slot with its due and `active` entries; whether it existed.
    pub(in crate::store) fn delete_key(&mut self, slot: &str) -> Result<bool, StoreError> {
        let slot = slot.to_owned();
        self.lease.run(move |c| {
            let old =
                prepared::query_opt(c, sql::KEY_DELETE, &[&slot]).map_err(pg("deleting a key"))?;
            let old: Option<KeyRecord> = match old {
                Some(row) => Some(decode("keys", &slot, row.get::<_, &[u8]>(0))?),
                None => None,
            };
            let target = target_key(&DueTarget::Key(slot.clone()));
            move_due(c, &target, old.as_ref().and_then(|o| o.next_due), None)?;
            prepared::execute(c, sql::ACTIVE_DELETE, &[&slot]).map_err(pg("updating active"))?;
            Ok(old.is_some())
        })
    }

    /// Upserts a rotation, moving its timer in `due` and its slot's
    /// `latest_rotation` entry.
    pub(in crate::store) fn put_rotation(
        &mut self,
        rec: &RotationRecord,
    ) -> Result<(), StoreError> {
        let bytes = encode("rotations", &rec.id, rec)?;
        let (id, slot, state) = (rec.id.clone(), rec.slot.clone(), state_name(rec.state));
        let timer = rotation_timer(rec);
        self.lease.run(move |c| {
            let old: Option<RotationRecord> = get_json(c, sql::ROTATION_GET, "rotations", &id)?;
            prepared::execute(c, sql::ROTATION_PUT, &[&id, &slot, &bytes])
                .map_err(pg("writing a rotation"))?;
            let target = target_key(&DueTarget::Rotation(id.clone()));
            move_due(c, &target, old.as_ref().and_then(rotation_timer), timer)?;
            prepared::execute(c, sql::LATEST_PUT, &[&slot, &id, &state])
                .map_err(pg("indexing a rotation"))?;
            Ok(())
        })
    }

    /// Records a provider's last successful sync.
    pub(in crate::store) fn set_last_sync(
        &mut self,
        provider: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let name = format!("{META_LAST_SYNC}{provider}");
        let bytes = encode("meta", &name, &at)?;
        self.put_meta(name, Some(bytes))
    }

    /// Replaces a provider's duplicates (none removes the entry).
    pub(in crate::store) fn set_duplicates(
        &mut self,
        provider: &str,
        dups: &Duplicates,
    ) -> Result<(), StoreError> {
        let name = format!("{META_DUPLICATES}{provider}");
        let bytes = match dups.is_empty() {
            true => None,
            false => Some(encode("meta", &name, dups)?),
        };
        self.put_meta(name, bytes)
    }

    /// A meta entry as this transaction sees it.
    pub(in crate::store) fn get_meta(&self, name: String) -> Result<Option<Vec<u8>>, StoreError> {
        self.lease.run(move |c| {
            let row =
                prepared::query_opt(c, sql::META_GET, &[&name]).map_err(pg("reading meta"))?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    /// Writes or deletes a meta entry.
    pub(in crate::store) fn put_meta(
        &mut self,
        name: String,
        value: Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        self.lease.run(move |c| {
            match value {
                Some(v) => prepared::execute(c, sql::META_PUT, &[&name, &v]),
                None => prepared::execute(c, sql::META_DELETE, &[&name]),
            }
            .map_err(pg("writing meta"))
            .map(drop)
        })
    }

    /// A slot as this transaction sees it.
    pub(in crate::store) fn key(&self, slot: &str) -> Result<Option<KeyRecord>, StoreError> {
        let slot = slot.to_owned();
        self.lease
            .run(move |c| get_json(c, sql::KEY_GET, "keys", &slot))
    }

    /// Every slot, by slot id.
    pub(in crate::store) fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.lease.run(|c| all_json(c, sql::KEYS_ALL, "keys"))
    }

    /// A rotation as this transaction sees it.
    pub(in crate::store) fn rotation(
        &self,
        id: &str,
    ) -> Result<Option<RotationRecord>, StoreError> {
        let id = id.to_owned();
        self.lease
            .run(move |c| get_json(c, sql::ROTATION_GET, "rotations", &id))
    }

    /// Seals and stores a rotation's secret.
    pub(in crate::store) fn put_secret(
        &mut self,
        rotation: &str,
        secret: &SecretString,
    ) -> Result<(), StoreError> {
        let sealed = seal_secret(&self.master, rotation, secret)?;
        let rotation = rotation.to_owned();
        self.lease.run(move |c| {
            prepared::execute(c, sql::SECRET_PUT, &[&rotation, &sealed])
                .map_err(pg("writing a secret"))
                .map(drop)
        })
    }

    /// Deletes a rotation's sealed secret.
    pub(in crate::store) fn wipe_secret(&mut self, rotation: &str) -> Result<(), StoreError> {
        self.delete(sql::SECRET_DELETE, rotation, "wiping a secret")
            .map(drop)
    }

    /// Queues or updates an outbox message.
    pub(in crate::store) fn put_message(&mut self, m: &OutboxMessage) -> Result<(), StoreError> {
        let bytes = encode("outbox", &m.id, m)?;
        let id = m.id.clone();
        self.lease.run(move |c| {
            prepared::execute(c, sql::MESSAGE_PUT, &[&id, &bytes])
                .map_err(pg("writing a message"))
                .map(drop)
        })
    }

    /// An outbox message as this transaction sees it.
    pub(in crate::store) fn message(&self, id: &str) -> Result<Option<OutboxMessage>, StoreError> {
        let id = id.to_owned();
        self.lease
            .run(move |c| get_json(c, sql::MESSAGE_GET, "outbox", &id))
    }

    /// Deletes an outbox message; whether it existed.
    pub(in crate::store) fn delete_message(&mut self, id: &str) -> Result<bool, StoreError> {
        self.delete(sql::MESSAGE_DELETE, id, "deleting a message")
    }

    /// Runs a one-parameter delete; whether a row went.
    pub(super) fn delete(
        &mut self,
        query: &'static str,
        key: &str,
        op: &'static str,
    ) -> Result<bool, StoreError> {
        let key = key.to_owned();
        self.lease.run(move |c| {
            prepared::execute(c, query, &[&key])
                .map_err(pg(op))
                .map(|n| n > 0)
        })
    }

    /// Appends an audit entry chained to the last one.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::store) fn audit(
        &mut self,
        at: Timestamp,
        event: &str,
        slot: Option<&str>,
        rotation: Option<&str>,
        actor: Option<&str>,
        detail: &str,
    ) -> Result<(), StoreError> {
        let (event, detail) = (event.to_owned(), detail.to_owned());
        let (slot, rotation, actor) = (
            slot.map(str::to_owned),
            rotation.map(str::to_owned),
            actor.map(str::to_owned),
        );
        self.lease.run(move |c| {
            let (seq, prev_hash) =
                match prepared::query_opt(c, sql::AUDIT_LAST, &[]).map_err(pg("reading audit"))? {
                    Some(row) => {
                        let key = row.get::<_, i64>(0).to_string();
                        let last: AuditEntry = decode("audit", &key, row.get::<_, &[u8]>(1))?;
                        (last.seq + 1, last.hash)
                    }
                    None => (1, String::new()),
                };
            let entry = NewEntry {
                at,
                event: &event,
                slot: slot.as_deref(),
                rotation: rotation.as_deref(),
                actor: actor.as_deref(),
                detail: &detail,
            }
            .seal(seq, prev_hash);
            let bytes = encode("audit", &seq.to_string(), &entry)?;
            prepared::execute(c, sql::AUDIT_INSERT, &[&signed(seq), &bytes])
                .map_err(pg("appending audit"))?;
            let head = encode("meta", META_AUDIT_HEAD, &(seq, &entry.hash))?;
            prepared::execute(c, sql::META_PUT, &[&META_AUDIT_HEAD, &head])
                .map_err(pg("writing the audit head"))?;
            Ok(())
        })
    }

    /// Upserts a key of the local provider's registry.
    pub(in crate::store) fn local_put(&mut self, k: &LocalKey) -> Result<(), StoreError> {
        let bytes = encode("local_keys", &k.id, k)?;
        let id = k.id.clone();
        self.lease.run(move |c| {
            prepared::execute(c, sql::LOCAL_PUT, &[&id, &bytes])
                .map_err(pg("writing a local key"))
                .map(drop)
        })
    }

    /// A key of the local provider's registry.
    pub(in crate::store) fn local_get(&self, id: &str) -> Result<Option<LocalKey>, StoreError> {
        let id = id.to_owned();
        self.lease
            .run(move |c| get_json(c, sql::LOCAL_GET, "local_keys", &id))
    }

    /// Every key of the local provider's registry, by id.
    pub(in crate::store) fn local_all(&self) -> Result<Vec<LocalKey>, StoreError> {
        self.lease
            .run(|c| all_json(c, sql::LOCAL_ALL, "local_keys"))
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        if !self.done {
            // A failed statement has already aborted the transaction; a
            // broken connection is made again before its next job.
            let _ = self
                .lease
                .run(|c| c.batch_execute(sql::ROLLBACK).map_err(pg("rolling back")));
        }
    }
}

/// Replaces `target`'s due entry at `old` with one at `new`.
fn move_due(
    c: &mut Client,
    target: &str,
    old: Option<Timestamp>,
    new: Option<Timestamp>,
) -> Result<(), StoreError> {
    if let Some(at) = old {
        prepared::execute(c, sql::DUE_DELETE, &[&due_micros(at), &target])
            .map_err(pg("updating the due index"))?;
    }
    if let Some(at) = new {
        prepared::execute(c, sql::DUE_INSERT, &[&due_micros(at), &target])
            .map_err(pg("updating the due index"))?;
    }
    Ok(())
}

/// One JSON record by key (`query` takes the key as `$1`).
pub(super) fn get_json<T: DeserializeOwned>(
    c: &mut impl postgres::GenericClient,
    query: &'static str,
    table: &'static str,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match prepared::query_opt(c, query, &[&key]).map_err(pg("reading a record"))? {
        Some(row) => decode(table, key, row.get::<_, &[u8]>(0)).map(Some),
        None => Ok(None),
    }
}

/// Every JSON record a `(key, record)` query returns, in its order.
pub(super) fn all_json<T: DeserializeOwned>(
    c: &mut impl postgres::GenericClient,
    query: &'static str,
    table: &'static str,
) -> Result<Vec<T>, StoreError> {
    rows(c, "scanning a table", query, &[])?
        .iter()
        .map(|r| decode(table, r.get::<_, &str>(0), r.get::<_, &[u8]>(1)))
        .collect()
}
