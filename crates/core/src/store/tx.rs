//! The write transaction handed to [`super::Store::write`]: typed upserts
//! that keep the secondary tables (due index, `active`, `key_rotations`,
//! audit head) consistent with the records in the same transaction, and
//! the reads a read-modify-write needs.

use std::collections::HashSet;
use std::sync::Arc;

use jiff::Timestamp;
use redb::{ReadableTable, WriteTransaction};
use secrecy::SecretString;

use super::audit::NewEntry;
use super::error::backend;
use super::pg::PgTx;
use super::tables::{
    ACTIVE, AUDIT, DUE, KEY_ROTATIONS, KEYS, LATEST, LOCAL_KEYS, META, META_AUDIT_HEAD,
    META_DUPLICATES, META_LAST_SYNC, OUTBOX, ROTATIONS, SECRETS, all_json, decode, due_micros,
    encode, get_json, rotation_timer, seal_secret, state_name, target_key,
};
use super::{DueTarget, LocalKey, StoreError};
use crate::crypto::MasterKey;
use crate::model::{AuditEntry, Duplicates, KeyRecord, OutboxMessage, RotationRecord};

/// A write transaction. Everything written through it commits together,
/// durably, when the closure given to [`super::Store::write`] returns `Ok`,
/// and is rolled back when it returns `Err`.
pub struct Tx {
    /// The backend's transaction.
    pub(super) inner: TxInner,
}

/// A write transaction of one backend.
pub(super) enum TxInner {
    /// redb's (boxed: it is much larger than PostgreSQL's).
    Redb(Box<RedbTx>),
    /// PostgreSQL's.
    Pg(PgTx),
}

/// Forwards each listed method to the backend's transaction: as `pub`
/// methods, or as `pub(super)` ones (for the store's own use) after
/// `@store`.
macro_rules! forward {
    (@store $( $(#[$doc:meta])* $recv:ident $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty; )*) => {
        $( forward!(@one $recv, pub(super), $(#[$doc])* $name($($arg: $ty),*) -> $ret); )*
    };
    ($( $(#[$doc:meta])* $recv:ident $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty; )*) => {
        $( forward!(@one $recv, pub, $(#[$doc])* $name($($arg: $ty),*) -> $ret); )*
    };
    (@one mut, $vis:vis, $(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        $(#[$doc])*
        $vis fn $name(&mut self, $($arg: $ty),*) -> Result<$ret, StoreError> {
            match &mut self.inner {
                TxInner::Redb(t) => t.$name($($arg),*),
                TxInner::Pg(t) => t.$name($($arg),*),
            }
        }
    };
    (@one ref, $vis:vis, $(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        $(#[$doc])*
        $vis fn $name(&self, $($arg: $ty),*) -> Result<$ret, StoreError> {
            match &self.inner {
                TxInner::Redb(t) => t.$name($($arg),*),
                TxInner::Pg(t) => t.$name($($arg),*),
            }
        }
    };
}

impl Tx {
    /// A redb write transaction.
    pub(super) fn redb(txn: WriteTransaction, master: Arc<MasterKey>) -> Tx {
        Tx {
            inner: TxInner::Redb(Box::new(RedbTx { txn, master })),
        }
    }

    /// The redb transaction, to commit.
    pub(super) fn into_redb(self) -> Result<WriteTransaction, StoreError> {
        match self.inner {
            TxInner::Redb(t) => Ok(t.txn),
            TxInner::Pg(_) => Err(StoreError::Other(
                "a redb commit of a PostgreSQL transaction".into(),
            )),
        }
    }

    forward! {
        /// Upserts a slot. Keeps the due index in step with `next_due` (the
        /// previous instant's entry is removed) and `active` with
        /// `active_rotation`.
        mut put_key(rec: &KeyRecord) -> ();
        /// Deletes a slot with its due entry and its `active` entry. Its
        /// rotations stay (history). Returns whether the slot existed.
        mut delete_key(slot: &str) -> bool;
        /// Upserts a rotation. Its timer in the due index (`retry_at`, else
        /// `revoke_old_at` in Overlap) replaces the previous record's timer,
        /// and the rotation is listed under its slot.
        mut put_rotation(rec: &RotationRecord) -> ();
        /// Records `at` as `provider`'s last successful inventory sync.
        mut set_last_sync(provider: &str, at: Timestamp) -> ();
        /// Replaces what the last sync of `provider` found of keys sharing a
        /// slot's name; none removes the entry.
        mut set_duplicates(provider: &str, dups: &Duplicates) -> ();
        /// Reads a slot as this transaction sees it.
        ref key(slot: &str) -> Option<KeyRecord>;
        /// Every slot, sorted by slot id, as this transaction sees them.
        ref keys() -> Vec<KeyRecord>;
        /// Reads a rotation as this transaction sees it.
        ref rotation(id: &str) -> Option<RotationRecord>;
        /// Seals `secret` under the master key (AAD binds the rotation id) and
        /// stores it, replacing any earlier secret of the rotation.
        mut put_secret(rotation: &str, secret: &SecretString) -> ();
        /// Deletes a rotation's sealed secret (a no-op when there is none).
        mut wipe_secret(rotation: &str) -> ();
        /// Queues or updates an outbox message.
        mut put_message(m: &OutboxMessage) -> ();
        /// Reads an outbox message as this transaction sees it.
        ref message(id: &str) -> Option<OutboxMessage>;
        /// Deletes an outbox message (pruning delivered ones). Returns whether it existed.
        mut delete_message(id: &str) -> bool;
        /// Appends an audit entry numbered after the last one and chained to it
        /// by hash (see [`super::Store::verify_audit_chain`]).
        mut audit(
            at: Timestamp,
            event: &str,
            slot: Option<&str>,
            rotation: Option<&str>,
            actor: Option<&str>,
            detail: &str
        ) -> ();
        /// Upserts a key of the local provider's registry.
        mut local_put(k: &LocalKey) -> ();
        /// Reads a key of the local provider's registry.
        ref local_get(id: &str) -> Option<LocalKey>;
        /// Every key of the local provider's registry, by id.
        ref local_all() -> Vec<LocalKey>;
    }

    forward! { @store
        /// Deletes a rotation if every retention rule still allows it,
        /// with its index and due entries and its secret and envelopes;
        /// returns whether it did (see `prune.rs`).
        mut prune_rotation(id: &str, before: Timestamp) -> bool;
        /// Deletes a key of the local provider's registry if it is still
        /// revoked before `before` and not in `pinned`; returns whether it did.
        mut prune_local_key(id: &str, before: Timestamp, pinned: &HashSet<String>) -> bool;
        /// Deletes up to `batch` audit entries recorded before `before` from
        /// the start of the chain, never the last one, and anchors the chain
        /// at the last one deleted: (entries deleted, that entry's sequence).
        mut prune_audit_batch(before: Timestamp, batch: usize) -> (usize, Option<u64>);
    }
}

/// A redb write transaction.
pub(super) struct RedbTx {
    /// The underlying redb transaction.
    pub(super) txn: WriteTransaction,
    /// Seals secrets.
    pub(super) master: Arc<MasterKey>,
}

impl RedbTx {
    /// Upserts a slot. Keeps the due index in step with `next_due` (the
    /// previous instant's entry is removed) and `active` with
    /// `active_rotation`.
    pub(super) fn put_key(&mut self, rec: &KeyRecord) -> Result<(), StoreError> {
        let bytes = encode("keys", &rec.slot, rec)?;
        let old: Option<KeyRecord> = {
            let mut keys = self.txn.open_table(KEYS).map_err(backend("opening keys"))?;
            let old = get_json(&keys, "keys", &rec.slot)?;
            keys.insert(rec.slot.as_str(), bytes.as_slice())
                .map_err(backend("writing a key"))?;
            old
        };
        let target = target_key(&DueTarget::Key(rec.slot.clone()));
        self.move_due(&target, old.and_then(|o| o.next_due), rec.next_due)?;
        let mut active = self
            .txn
            .open_table(ACTIVE)
            .map_err(backend("opening active"))?;
        match &rec.active_rotation {
            Some(id) => active.insert(rec.slot.as_str(), id.as_str()).map(drop),
            None => active.remove(rec.slot.as_str()).map(drop),
        }
        .map_err(backend("updating active"))
    }

    /// Deletes a slot with its due entry and its `active` entry. Its
    /// rotations stay (history). Returns whether the slot existed.
    pub(super) fn delete_key(&mut self, slot: &str) -> Result<bool, StoreError> {
        let old: Option<KeyRecord> = {
            let mut keys = self.txn.open_table(KEYS).map_err(backend("opening keys"))?;
            let old = get_json(&keys, "keys", slot)?;
            keys.remove(slot).map_err(backend("deleting a key"))?;
            old
        };
        let target = target_key(&DueTarget::Key(slot.to_owned()));
        self.move_due(&target, old.as_ref().and_then(|o| o.next_due), None)?;
        let mut active = self
            .txn
            .open_table(ACTIVE)
            .map_err(backend("opening active"))?;
        active.remove(slot).map_err(backend("updating active"))?;
        Ok(old.is_some())
    }

    /// Upserts a rotation. Its timer in the due index (`retry_at`, else
    /// `revoke_old_at` in Overlap) replaces the previous record's timer,
    /// and the rotation is listed under its slot.
    pub(super) fn put_rotation(&mut self, rec: &RotationRecord) -> Result<(), StoreError> {
        let bytes = encode("rotations", &rec.id, rec)?;
        let old: Option<RotationRecord> = {
            let mut rots = self
                .txn
                .open_table(ROTATIONS)
                .map_err(backend("opening rotations"))?;
            let old = get_json(&rots, "rotations", &rec.id)?;
            rots.insert(rec.id.as_str(), bytes.as_slice())
                .map_err(backend("writing a rotation"))?;
            old
        };
        let target = target_key(&DueTarget::Rotation(rec.id.clone()));
        self.move_due(
            &target,
            old.as_ref().and_then(rotation_timer),
            rotation_timer(rec),
        )?;
        let mut by_slot = self
            .txn
            .open_table(KEY_ROTATIONS)
            .map_err(backend("opening key_rotations"))?;
        by_slot
            .insert((rec.slot.as_str(), rec.id.as_str()), ())
            .map_err(backend("indexing a rotation"))?;
        let mut latest = self
            .txn
            .open_table(LATEST)
            .map_err(backend("opening latest_rotation"))?;
        let newest = match latest
            .get(rec.slot.as_str())
            .map_err(backend("reading latest_rotation"))?
        {
            Some(v) => rec.id.as_str() >= v.value().0,
            None => true,
        };
        if newest {
            latest
                .insert(
                    rec.slot.as_str(),
                    (rec.id.as_str(), state_name(rec.state).as_str()),
                )
                .map_err(backend("indexing a rotation"))?;
        }
        Ok(())
    }

    /// Records `at` as `provider`'s last successful inventory sync.
    pub(super) fn set_last_sync(
        &mut self,
        provider: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let name = format!("{META_LAST_SYNC}{provider}");
        let bytes = encode("meta", &name, &at)?;
        let mut meta = self.txn.open_table(META).map_err(backend("opening meta"))?;
        meta.insert(name.as_str(), bytes.as_slice())
            .map_err(backend("writing meta"))?;
        Ok(())
    }

    /// Replaces what the last sync of `provider` found of keys sharing a
    /// slot's name; none removes the entry.
    pub(super) fn set_duplicates(
        &mut self,
        provider: &str,
        dups: &Duplicates,
    ) -> Result<(), StoreError> {
        let name = format!("{META_DUPLICATES}{provider}");
        let mut meta = self.txn.open_table(META).map_err(backend("opening meta"))?;
        if dups.is_empty() {
            meta.remove(name.as_str())
                .map_err(backend("writing meta"))?;
        } else {
            let bytes = encode("meta", &name, dups)?;
            meta.insert(name.as_str(), bytes.as_slice())
                .map_err(backend("writing meta"))?;
        }
        Ok(())
    }

    /// Reads a slot as this transaction sees it.
    pub(super) fn key(&self, slot: &str) -> Result<Option<KeyRecord>, StoreError> {
        let keys = self.txn.open_table(KEYS).map_err(backend("opening keys"))?;
        get_json(&keys, "keys", slot)
    }

    /// Every slot, sorted by slot id, as this transaction sees them.
    pub(super) fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let keys = self.txn.open_table(KEYS).map_err(backend("opening keys"))?;
        all_json(&keys, "keys")
    }

    /// Reads a rotation as this transaction sees it.
    pub(super) fn rotation(&self, id: &str) -> Result<Option<RotationRecord>, StoreError> {
        let rots = self
            .txn
            .open_table(ROTATIONS)
            .map_err(backend("opening rotations"))?;
        get_json(&rots, "rotations", id)
    }

    /// Seals `secret` under the master key (AAD binds the rotation id) and
    /// stores it, replacing any earlier secret of the rotation.
    pub(super) fn put_secret(
        &mut self,
        rotation: &str,
        secret: &SecretString,
    ) -> Result<(), StoreError> {
        let sealed = seal_secret(&self.master, rotation, secret)?;
        let mut secrets = self
            .txn
            .open_table(SECRETS)
            .map_err(backend("opening secrets"))?;
        secrets
            .insert(rotation, sealed.as_slice())
            .map_err(backend("writing a secret"))?;
        Ok(())
    }

    /// Deletes a rotation's sealed secret (a no-op when there is none).
    pub(super) fn wipe_secret(&mut self, rotation: &str) -> Result<(), StoreError> {
        let mut secrets = self
            .txn
            .open_table(SECRETS)
            .map_err(backend("opening secrets"))?;
        secrets
            .remove(rotation)
            .map_err(backend("wiping a secret"))?;
        Ok(())
    }

    /// Queues or updates an outbox message.
    pub(super) fn put_message(&mut self, m: &OutboxMessage) -> Result<(), StoreError> {
        let bytes = encode("outbox", &m.id, m)?;
        let mut outbox = self
            .txn
            .open_table(OUTBOX)
            .map_err(backend("opening outbox"))?;
        outbox
            .insert(m.id.as_str(), bytes.as_slice())
            .map_err(backend("writing a message"))?;
        Ok(())
    }

    /// Reads an outbox message as this transaction sees it.
    pub(super) fn message(&self, id: &str) -> Result<Option<OutboxMessage>, StoreError> {
        let outbox = self
            .txn
            .open_table(OUTBOX)
            .map_err(backend("opening outbox"))?;
        get_json(&outbox, "outbox", id)
    }

    /// Deletes an outbox message (pruning delivered ones). Returns whether it existed.
    pub(super) fn delete_message(&mut self, id: &str) -> Result<bool, StoreError> {
        let mut outbox = self
            .txn
            .open_table(OUTBOX)
            .map_err(backend("opening outbox"))?;
        let old = outbox.remove(id).map_err(backend("deleting a message"))?;
        Ok(old.is_some())
    }

    /// Appends an audit entry numbered after the last one and chained to it
    /// by hash (see [`super::Store::verify_audit_chain`]).
    pub(super) fn audit(
        &mut self,
        at: Timestamp,
        event: &str,
        slot: Option<&str>,
        rotation: Option<&str>,
        actor: Option<&str>,
        detail: &str,
    ) -> Result<(), StoreError> {
        let mut audit = self
            .txn
            .open_table(AUDIT)
            .map_err(backend("opening audit"))?;
        let (seq, prev_hash) = match audit.last().map_err(backend("reading audit"))? {
            Some((k, v)) => {
                let last: AuditEntry = decode("audit", &k.value().to_string(), v.value())?;
                (last.seq + 1, last.hash)
            }
            None => (1, String::new()),
        };
        let entry = NewEntry {
            at,
            event,
            slot,
            rotation,
            actor,
            detail,
        }
        .seal(seq, prev_hash);
        let key = seq.to_string();
        let bytes = encode("audit", &key, &entry)?;
        audit
            .insert(seq, bytes.as_slice())
            .map_err(backend("appending audit"))?;
        let head = encode("meta", META_AUDIT_HEAD, &(seq, &entry.hash))?;
        let mut meta = self.txn.open_table(META).map_err(backend("opening meta"))?;
        meta.insert(META_AUDIT_HEAD, head.as_slice())
            .map_err(backend("writing the audit head"))?;
        Ok(())
    }

    /// Upserts a key of the local provider's registry.
    pub(super) fn local_put(&mut self, k: &LocalKey) -> Result<(), StoreError> {
        let bytes = encode("local_keys", &k.id, k)?;
        let mut t = self
            .txn
            .open_table(LOCAL_KEYS)
            .map_err(backend("opening local_keys"))?;
        t.insert(k.id.as_str(), bytes.as_slice())
            .map_err(backend("writing a local key"))?;
        Ok(())
    }

    /// Reads a key of the local provider's registry.
    pub(super) fn local_get(&self, id: &str) -> Result<Option<LocalKey>, StoreError> {
        let t = self
            .txn
            .open_table(LOCAL_KEYS)
            .map_err(backend("opening local_keys"))?;
        get_json(&t, "local_keys", id)
    }

    /// Every key of the local provider's registry, by id.
    pub(super) fn local_all(&self) -> Result<Vec<LocalKey>, StoreError> {
        let t = self
            .txn
            .open_table(LOCAL_KEYS)
            .map_err(backend("opening local_keys"))?;
        all_json(&t, "local_keys")
    }

    /// Replaces `target`'s due entry at `old` with one at `new`.
    fn move_due(
        &mut self,
        target: &str,
        old: Option<Timestamp>,
        new: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        let mut due = self.txn.open_table(DUE).map_err(backend("opening due"))?;
        if let Some(at) = old {
            due.remove((due_micros(at), target))
                .map_err(backend("updating the due index"))?;
        }
        if let Some(at) = new {
            due.insert((due_micros(at), target), ())
                .map_err(backend("updating the due index"))?;
        }
        Ok(())
    }
}
