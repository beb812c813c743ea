//! Reads outside a write on PostgreSQL: one statement each, or one
//! `REPEATABLE READ` snapshot where a read needs several; none waits for
//! a writer.

use jiff::Timestamp;

use super::pool::Lease;
use super::tx::{all_json, get_json};
use super::{PgStore, pg, prepared, rows, signed, sql, unsigned};
use crate::model::{
    AuditEntry, DeliveryState, Duplicates, KeyRecord, OutboxMessage, RotationRecord,
};
use crate::store::audit::ChainCheck;
use crate::store::read::{RotationGlance, rotation_glance};
use crate::store::tables::{
    META_AUDIT_ANCHOR, META_AUDIT_HEAD, META_DUPLICATES, META_INSTALLATION, META_LAST_SYNC, decode,
    due_timestamp, parse_state, parse_target, state_name,
};
use crate::store::{DueTarget, LocalKey, StoreError, StoreStats};

/// The names of the terminal states, as the latest-rotation index spells
/// them (a parameter of the queries that look for unfinished rotations).
pub(super) fn terminal_states() -> Vec<String> {
    use crate::model::RotationState::{Aborted, Completed, Failed};
    [Completed, Failed, Aborted]
        .into_iter()
        .map(state_name)
        .collect()
}

/// A slot's row for a status list: slot, record, and the rotation shown.
pub(in crate::store) type KeyRow = (String, Vec<u8>, Option<RotationGlance>);

impl PgStore {
    /// Runs `f` on a connection of the pool.
    pub(super) fn on<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        Lease::take(&self.pool).run(f)
    }

    /// One JSON record by key.
    fn record<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        query: &'static str,
        table: &'static str,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let key = key.to_owned();
        self.on(move |c| get_json(c, query, table, &key))
    }

    /// Every JSON record of a `(key, record)` query.
    fn records<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        query: &'static str,
        table: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        self.on(move |c| all_json(c, query, table))
    }

    /// One slot.
    pub(in crate::store) fn key(&self, slot: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.record(sql::KEY_GET, "keys", slot)
    }

    /// All slots, by slot id.
    pub(in crate::store) fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.records(sql::KEYS_ALL, "keys")
    }

    /// One rotation.
    pub(in crate::store) fn rotation(
        &self,
        id: &str,
    ) -> Result<Option<RotationRecord>, StoreError> {
        self.record(sql::ROTATION_GET, "rotations", id)
    }

    /// Rotations not in a terminal state, oldest first (through
    /// `latest_rotation`, as the redb store finds them).
    pub(in crate::store) fn unfinished_rotations(&self) -> Result<Vec<RotationRecord>, StoreError> {
        let terminal = terminal_states();
        let recs: Vec<RotationRecord> = self.on(move |c| {
            rows(
                c,
                "reading unfinished rotations",
                sql::UNFINISHED,
                &[&terminal],
            )?
            .iter()
            .map(|r| decode("rotations", "(unfinished)", r.get::<_, &[u8]>(0)))
            .collect()
        })?;
        Ok(recs
            .into_iter()
            .filter(|r| !r.state.is_terminal())
            .collect())
    }

    /// A meta value.
    fn meta(&self, name: String) -> Result<Option<Vec<u8>>, StoreError> {
        self.on(move |c| {
            let row =
                prepared::query_opt(c, sql::META_GET, &[&name]).map_err(pg("reading meta"))?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    /// Every meta entry whose name starts with `prefix`, by name.
    pub(in crate::store) fn meta_with_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let start = prefix.to_owned();
        let found = self.on(move |c| {
            let end = format!("{start}\u{10FFFF}");
            rows(c, "scanning meta", sql::META_PREFIXED, &[&start, &end])
        })?;
        Ok(found
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, Vec<u8>>(1)))
            .collect())
    }

    /// A provider's last successful sync.
    pub(in crate::store) fn last_sync(
        &self,
        provider: &str,
    ) -> Result<Option<Timestamp>, StoreError> {
        let name = format!("{META_LAST_SYNC}{provider}");
        match self.meta(name.clone())? {
            Some(v) => decode("meta", &name, &v).map(Some),
            None => Ok(None),
        }
    }

    /// This installation's id.
    pub(in crate::store) fn installation(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .meta(META_INSTALLATION.to_owned())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Every provider's duplicates.
    pub(in crate::store) fn duplicates(&self) -> Result<Duplicates, StoreError> {
        let found = self.on(|c| {
            let end = format!("{}\u{10FFFF}", META_DUPLICATES);
            rows(
                c,
                "scanning meta",
                sql::META_PREFIXED,
                &[&META_DUPLICATES, &end],
            )
        })?;
        let mut out = Duplicates::new();
        for r in &found {
            out.extend(decode::<Duplicates>(
                "meta",
                r.get(0),
                r.get::<_, &[u8]>(1),
            )?);
        }
        Ok(out)
    }

    /// Up to `limit` rotations, newest first, of one slot or of all.
    pub(in crate::store) fn rotations(
        &self,
        slot: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RotationRecord>, StoreError> {
        let slot = slot.map(str::to_owned);
        let limit = signed(limit as u64);
        self.on(move |c| {
            let found = match &slot {
                Some(slot) => rows(
                    c,
                    "scanning rotations",
                    sql::ROTATIONS_OF_SLOT,
                    &[slot, &limit],
                )?,
                None => rows(c, "scanning rotations", sql::ROTATIONS_NEWEST, &[&limit])?,
            };
            found
                .iter()
                .map(|r| decode("rotations", "(listed)", r.get::<_, &[u8]>(0)))
                .collect()
        })
    }

    /// Every slot with its record and the rotation a status list shows:
    /// the active one, else the latest.
    pub(in crate::store) fn key_rows(&self) -> Result<Vec<KeyRow>, StoreError> {
        self.on(|c| {
            let found = rows(c, "listing keys", sql::KEYS_WITH_ROTATIONS, &[])?;
            let mut out = Vec::with_capacity(found.len());
            for r in &found {
                let slot: String = r.get(0);
                let latest: Option<RotationGlance> =
                    match (r.get::<_, Option<String>>(2), r.get::<_, Option<String>>(3)) {
                        (Some(id), Some(state)) => {
                            parse_state(&state).map(|state| RotationGlance {
                                id,
                                state,
                                old_key: None,
                            })
                        }
                        _ => None,
                    };
                let active: Option<String> = r.get(4);
                let shown = match (active, r.get::<_, Option<&[u8]>>(5)) {
                    (Some(id), Some(rec)) => Some(rotation_glance(&id, rec)?),
                    _ => latest,
                };
                out.push((slot, r.get::<_, Vec<u8>>(1), shown));
            }
            Ok(out)
        })
    }

    /// The slot's unfinished rotation.
    pub(in crate::store) fn active_rotation(
        &self,
        slot: &str,
    ) -> Result<Option<String>, StoreError> {
        let slot = slot.to_owned();
        self.on(move |c| {
            let row =
                prepared::query_opt(c, sql::ACTIVE_GET, &[&slot]).map_err(pg("reading active"))?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    /// Due entries of a query, decoded.
    fn due(
        &self,
        query: &'static str,
        from: Option<i64>,
    ) -> Result<Vec<(Timestamp, DueTarget)>, StoreError> {
        self.on(move |c| {
            let found = match from {
                Some(at) => rows(c, "scanning due", query, &[&at])?,
                None => rows(c, "scanning due", query, &[])?,
            };
            found
                .iter()
                .map(|r| {
                    let (at, target): (i64, &str) = (r.get(0), r.get(1));
                    Ok((due_timestamp(at, target)?, parse_target(target)?))
                })
                .collect()
        })
    }

    /// The earliest due entry.
    pub(in crate::store) fn next_due(&self) -> Result<Option<(Timestamp, DueTarget)>, StoreError> {
        Ok(self.due(sql::DUE_FIRST, None)?.into_iter().next())
    }

    /// Due entries at or before `limit` (index micros).
    pub(in crate::store) fn due_until(
        &self,
        limit: i64,
    ) -> Result<Vec<(Timestamp, DueTarget)>, StoreError> {
        self.due(sql::DUE_UNTIL, Some(limit))
    }

    /// The earliest due instant at or after `from` (index micros).
    pub(in crate::store) fn due_from(&self, from: i64) -> Result<Option<Timestamp>, StoreError> {
        Ok(self
            .due(sql::DUE_AFTER, Some(from))?
            .into_iter()
            .next()
            .map(|(at, _)| at))
    }

    /// A rotation's sealed secret.
    pub(in crate::store) fn sealed_secret(
        &self,
        rotation: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let rotation = rotation.to_owned();
        self.on(move |c| {
            let row = prepared::query_opt(c, sql::SECRET_GET, &[&rotation])
                .map_err(pg("reading a secret"))?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    /// Ids of the rotations that hold a sealed secret.
    pub(in crate::store) fn secret_ids(&self) -> Result<Vec<String>, StoreError> {
        self.on(|c| {
            Ok(rows(c, "scanning secrets", sql::SECRET_IDS, &[])?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })
    }

    /// Outbox messages, by id.
    pub(in crate::store) fn outbox(&self) -> Result<Vec<OutboxMessage>, StoreError> {
        self.records(sql::MESSAGES_ALL, "outbox")
    }

    /// Up to `limit` audit entries from `start` on.
    pub(in crate::store) fn audit(
        &self,
        start: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let (start, limit) = (signed(start), signed(limit as u64));
        self.on(move |c| {
            rows(c, "scanning audit", sql::AUDIT_FROM, &[&start, &limit])?
                .iter()
                .map(|r| {
                    decode(
                        "audit",
                        &r.get::<_, i64>(0).to_string(),
                        r.get::<_, &[u8]>(1),
                    )
                })
                .collect()
        })
    }

    /// Verifies the audit chain in one snapshot; the number of entries.
    pub(in crate::store) fn verify_audit_chain(&self) -> Result<u64, StoreError> {
        self.on(|c| {
            let mut t = super::snapshot(c)?;
            let pair = |t: &mut postgres::Transaction<'_>,
                        name: &str|
             -> Result<Option<(u64, String)>, StoreError> {
                match t
                    .query_opt(sql::META_GET, &[&name])
                    .map_err(pg("reading meta"))?
                {
                    Some(r) => decode("meta", name, r.get::<_, &[u8]>(0)).map(Some),
                    None => Ok(None),
                }
            };
            let mut check = ChainCheck::after(pair(&mut t, META_AUDIT_ANCHOR)?);
            for r in rows(&mut t, "scanning audit", sql::AUDIT_ALL, &[])? {
                let seq = unsigned(r.get(0));
                let entry: AuditEntry = decode("audit", &seq.to_string(), r.get::<_, &[u8]>(1))
                    .map_err(|_| StoreError::AuditChainBroken { seq })?;
                check.next(seq, &entry)?;
            }
            let head = pair(&mut t, META_AUDIT_HEAD)?;
            check.finish(head)
        })
    }

    /// Keys of the local provider's registry, by id.
    pub(in crate::store) fn local_keys(&self) -> Result<Vec<LocalKey>, StoreError> {
        self.records(sql::LOCAL_ALL, "local_keys")
    }

    /// One key of the local provider's registry.
    pub(in crate::store) fn local_key(&self, id: &str) -> Result<Option<LocalKey>, StoreError> {
        self.record(sql::LOCAL_GET, "local_keys", id)
    }

    /// Record counts, in one snapshot.
    pub(in crate::store) fn stats(&self) -> Result<StoreStats, StoreError> {
        let (counts, outbox) = self.on(|c| {
            let mut t = super::snapshot(c)?;
            let mut counts = [0u64; 4];
            for (n, q) in [
                sql::KEYS_COUNT,
                sql::ROTATIONS_COUNT,
                sql::SECRETS_COUNT,
                sql::AUDIT_COUNT,
            ]
            .into_iter()
            .enumerate()
            {
                let row = t.query_one(q, &[]).map_err(pg("counting records"))?;
                counts[n] = unsigned(row.get(0));
            }
            let outbox: Vec<OutboxMessage> = all_json(&mut t, sql::MESSAGES_ALL, "outbox")?;
            Ok((counts, outbox))
        })?;
        let mut stats = StoreStats {
            keys: counts[0],
            rotations: counts[1],
            secrets: counts[2],
            audit_entries: counts[3],
            ..StoreStats::default()
        };
        for m in outbox {
            match m.state {
                DeliveryState::Queued => stats.outbox_queued += 1,
                DeliveryState::Dead => stats.outbox_dead += 1,
                DeliveryState::Sent => {}
            }
        }
        Ok(stats)
    }

    /// Per table: name, rows, bytes of its rows and bytes beyond them
    /// (PostgreSQL's relation sizes: indexes and free space).
    pub(in crate::store) fn table_sizes(&self) -> Result<Vec<(String, u64, u64, u64)>, StoreError> {
        self.on(|c| {
            let found = rows(c, "measuring tables", sql::TABLE_SIZES, &[])?;
            Ok(found
                .iter()
                .map(|r| {
                    let name: &str = r.get(0);
                    (
                        name.trim_start_matches("keyrot_").to_owned(),
                        unsigned(r.get::<_, i64>(1).max(0)),
                        unsigned(r.get(2)),
                        unsigned(r.get(3)),
                    )
                })
                .collect())
        })
    }
}
