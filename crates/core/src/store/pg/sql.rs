//! Every SQL statement keyrot sends to PostgreSQL, beside the schema.
//!
//! The tables mirror the redb store's (see `tables.rs`): records are the
//! same JSON bytes, secrets the same sealed envelopes, so that a store
//! moves between backends by copying rows. Text keys use the `C` collation
//! so that PostgreSQL orders them byte by byte, as redb does. The
//! `key_rotations` index of the redb store is an index on
//! `keyrot_rotations (slot, id)` here.

/// The schema, created when missing (idempotent).
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS keyrot_meta (
    name text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE IF NOT EXISTS keyrot_keys (
    slot text COLLATE "C" PRIMARY KEY, rec bytea NOT NULL);
CREATE TABLE IF NOT EXISTS keyrot_rotations (
    id text COLLATE "C" PRIMARY KEY, slot text COLLATE "C" NOT NULL, rec bytea NOT NULL);
CREATE INDEX IF NOT EXISTS keyrot_rotations_by_slot ON keyrot_rotations (slot, id);
CREATE TABLE IF NOT EXISTS keyrot_secrets (
    rotation text COLLATE "C" PRIMARY KEY, sealed bytea NOT NULL);
CREATE TABLE IF NOT EXISTS keyrot_outbox (
    id text COLLATE "C" PRIMARY KEY, rec bytea NOT NULL);
CREATE TABLE IF NOT EXISTS keyrot_audit (
    seq bigint PRIMARY KEY, rec bytea NOT NULL);
CREATE TABLE IF NOT EXISTS keyrot_due (
    at bigint NOT NULL, target text COLLATE "C" NOT NULL, PRIMARY KEY (at, target));
CREATE TABLE IF NOT EXISTS keyrot_local_keys (
    id text COLLATE "C" PRIMARY KEY, rec bytea NOT NULL);
CREATE TABLE IF NOT EXISTS keyrot_active (
    slot text COLLATE "C" PRIMARY KEY, rotation text COLLATE "C" NOT NULL);
CREATE TABLE IF NOT EXISTS keyrot_lease (
    name text PRIMARY KEY, holder text NOT NULL, epoch bigint NOT NULL,
    renewed_at timestamptz NOT NULL, expires_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS keyrot_latest_rotation (
    slot text COLLATE "C" PRIMARY KEY, rotation text COLLATE "C" NOT NULL,
    state text NOT NULL);
"#;

/// Every write transaction takes this transaction-level advisory lock
/// first: writes are serialised as redb serialises them, across every
/// process on the database, so a read-modify-write inside one sees no
/// concurrent change (and the audit chain gets one head).
pub(super) const LOCK_WRITES: &str = "SELECT pg_advisory_xact_lock(7021776153206960128)";

/// The leader lease (one row, `name = 'leader'`): who holds it, the
/// epoch it was granted under (one more at every grant), and
/// when it was renewed and expires, by the server's clock.
pub(super) const LEASE_ROW: &str = "SELECT holder, epoch, renewed_at, expires_at, now() \
     FROM keyrot_lease WHERE name = 'leader'";
/// Makes the lease row exist (expired, epoch 0) so that it can be locked.
pub(super) const LEASE_SEED: &str = "INSERT INTO keyrot_lease (name, holder, epoch, renewed_at, \
     expires_at) VALUES ('leader', '', 0, '-infinity', '-infinity') ON CONFLICT DO NOTHING";
/// The lease row, locked, with whether `$1` may take it: it has expired,
/// or `$1` already holds it (the same process opening the store again).
pub(super) const LEASE_LOCK: &str = "SELECT holder, epoch, \
     expires_at <= now() OR holder = $1 \
     FROM keyrot_lease WHERE name = 'leader' FOR UPDATE";
/// Grants the lease to `$1` for `$2` seconds under the next epoch, when it
/// has expired or `$1` holds it already: a new epoch either way, so that
/// whatever still writes under the old one is fenced off.
pub(super) const LEASE_GRANT: &str = "UPDATE keyrot_lease SET holder = $1, epoch = epoch + 1, \
     renewed_at = now(), expires_at = now() + make_interval(secs => $2) \
     WHERE name = 'leader' AND (expires_at <= now() OR holder = $1) RETURNING epoch";
/// Renews the lease `$1` holds under epoch `$2` for `$3` seconds, if it
/// has not expired.
pub(super) const LEASE_RENEW: &str = "UPDATE keyrot_lease SET renewed_at = now(), \
     expires_at = now() + make_interval(secs => $3) \
     WHERE name = 'leader' AND holder = $1 AND epoch = $2 AND expires_at > now()";
/// Ends the lease `$1` holds under epoch `$2` at once (a clean stop).
pub(super) const LEASE_RELEASE: &str = "UPDATE keyrot_lease SET expires_at = now() \
     WHERE name = 'leader' AND holder = $1 AND epoch = $2 AND expires_at > now()";
/// Whether `$1` holds an unexpired lease under epoch `$2`: what every write
/// transaction asks, under the write lock. It also names the epoch in the
/// transaction's setting `keyrot.epoch`, for whoever audits the writes
/// (the failover suite's trigger does).
pub(super) const LEASE_HELD: &str = "SELECT EXISTS (SELECT 1 FROM keyrot_lease \
     WHERE name = 'leader' AND holder = $1 AND epoch = $2 AND expires_at > now()), \
     set_config('keyrot.epoch', $2::text, true)";

/// Starts a write transaction.
pub(super) const BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

/// `meta`.
pub(super) const META_GET: &str = "SELECT value FROM keyrot_meta WHERE name = $1";
pub(super) const META_PUT: &str = "INSERT INTO keyrot_meta (name, value) VALUES ($1, $2) \
     ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value";
pub(super) const META_DELETE: &str = "DELETE FROM keyrot_meta WHERE name = $1";
pub(super) const META_PREFIXED: &str =
    "SELECT name, value FROM keyrot_meta WHERE name >= $1 AND name < $2 ORDER BY name";

/// `keys`.
pub(super) const KEY_GET: &str = "SELECT rec FROM keyrot_keys WHERE slot = $1";
pub(super) const KEY_PUT: &str = "INSERT INTO keyrot_keys (slot, rec) VALUES ($1, $2) \
     ON CONFLICT (slot) DO UPDATE SET rec = EXCLUDED.rec";
pub(super) const KEY_DELETE: &str = "DELETE FROM keyrot_keys WHERE slot = $1 RETURNING rec";
pub(super) const KEYS_ALL: &str = "SELECT slot, rec FROM keyrot_keys ORDER BY slot";
pub(super) const KEYS_COUNT: &str = "SELECT count(*) FROM keyrot_keys";

/// `active`.
pub(super) const ACTIVE_PUT: &str = "INSERT INTO keyrot_active (slot, rotation) VALUES ($1, $2) \
     ON CONFLICT (slot) DO UPDATE SET rotation = EXCLUDED.rotation";
pub(super) const ACTIVE_DELETE: &str = "DELETE FROM keyrot_active WHERE slot = $1";
pub(super) const ACTIVE_GET: &str = "SELECT rotation FROM keyrot_active WHERE slot = $1";

/// `rotations` and `latest_rotation`.
pub(super) const ROTATION_GET: &str = "SELECT rec FROM keyrot_rotations WHERE id = $1";
pub(super) const ROTATION_PUT: &str = "INSERT INTO keyrot_rotations (id, slot, rec) \
     VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET slot = EXCLUDED.slot, rec = EXCLUDED.rec";
pub(super) const LATEST_PUT: &str = "INSERT INTO keyrot_latest_rotation (slot, rotation, state) \
     VALUES ($1, $2, $3) ON CONFLICT (slot) DO UPDATE \
     SET rotation = EXCLUDED.rotation, state = EXCLUDED.state \
     WHERE keyrot_latest_rotation.rotation <= EXCLUDED.rotation";
pub(super) const ROTATIONS_NEWEST: &str =
    "SELECT rec FROM keyrot_rotations ORDER BY id DESC LIMIT $1";
pub(super) const ROTATIONS_OF_SLOT: &str =
    "SELECT rec FROM keyrot_rotations WHERE slot = $1 ORDER BY id DESC LIMIT $2";
pub(super) const ROTATIONS_COUNT: &str = "SELECT count(*) FROM keyrot_rotations";
/// The rotations a slot's latest-rotation entry names whose state is not
/// terminal (`$1`: the terminal states' names), oldest first.
pub(super) const UNFINISHED: &str = "SELECT r.rec FROM keyrot_latest_rotation l \
     JOIN keyrot_rotations r ON r.id = l.rotation \
     WHERE NOT (l.state = ANY($1)) ORDER BY r.id";
/// Every slot with its record, its active rotation and its latest
/// rotation (id and state), in slot order; the active rotation's record
/// when it is not the latest (for its state), or is in Overlap (for the
/// old key's last use a status row shows).
pub(super) const KEYS_WITH_ROTATIONS: &str = "SELECT k.slot, k.rec, l.rotation, l.state, \
     a.rotation, (SELECT r.rec FROM keyrot_rotations r \
                   WHERE r.id = a.rotation \
                   AND (a.rotation IS DISTINCT FROM l.rotation OR l.state = 'Overlap')) \
     FROM keyrot_keys k \
     LEFT JOIN keyrot_latest_rotation l ON l.slot = k.slot \
     LEFT JOIN keyrot_active a ON a.slot = k.slot ORDER BY k.slot";

/// `due`.
pub(super) const DUE_INSERT: &str =
    "INSERT INTO keyrot_due (at, target) VALUES ($1, $2) ON CONFLICT DO NOTHING";
pub(super) const DUE_DELETE: &str = "DELETE FROM keyrot_due WHERE at = $1 AND target = $2";
pub(super) const DUE_FIRST: &str = "SELECT at, target FROM keyrot_due ORDER BY at, target LIMIT 1";
pub(super) const DUE_UNTIL: &str =
    "SELECT at, target FROM keyrot_due WHERE at <= $1 ORDER BY at, target";
pub(super) const DUE_AFTER: &str =
    "SELECT at, target FROM keyrot_due WHERE at >= $1 ORDER BY at, target LIMIT 1";

/// `secrets`.
pub(super) const SECRET_GET: &str = "SELECT sealed FROM keyrot_secrets WHERE rotation = $1";
pub(super) const SECRET_PUT: &str = "INSERT INTO keyrot_secrets (rotation, sealed) \
     VALUES ($1, $2) ON CONFLICT (rotation) DO UPDATE SET sealed = EXCLUDED.sealed";
pub(super) const SECRET_DELETE: &str = "DELETE FROM keyrot_secrets WHERE rotation = $1";
pub(super) const SECRET_IDS: &str = "SELECT rotation FROM keyrot_secrets ORDER BY rotation";
pub(super) const SECRETS_COUNT: &str = "SELECT count(*) FROM keyrot_secrets";

/// `outbox`.
pub(super) const MESSAGE_GET: &str = "SELECT rec FROM keyrot_outbox WHERE id = $1";
pub(super) const MESSAGE_PUT: &str = "INSERT INTO keyrot_outbox (id, rec) VALUES ($1, $2) \
     ON CONFLICT (id) DO UPDATE SET rec = EXCLUDED.rec";
pub(super) const MESSAGE_DELETE: &str = "DELETE FROM keyrot_outbox WHERE id = $1";
pub(super) const MESSAGES_ALL: &str = "SELECT id, rec FROM keyrot_outbox ORDER BY id";

/// `audit`.
pub(super) const AUDIT_LAST: &str = "SELECT seq, rec FROM keyrot_audit ORDER BY seq DESC LIMIT 1";
pub(super) const AUDIT_INSERT: &str = "INSERT INTO keyrot_audit (seq, rec) VALUES ($1, $2)";
pub(super) const AUDIT_FROM: &str =
    "SELECT seq, rec FROM keyrot_audit WHERE seq >= $1 ORDER BY seq LIMIT $2";
pub(super) const AUDIT_ALL: &str = "SELECT seq, rec FROM keyrot_audit ORDER BY seq";
pub(super) const AUDIT_COUNT: &str = "SELECT count(*) FROM keyrot_audit";

/// `local_keys`.
pub(super) const LOCAL_GET: &str = "SELECT rec FROM keyrot_local_keys WHERE id = $1";
pub(super) const LOCAL_PUT: &str = "INSERT INTO keyrot_local_keys (id, rec) VALUES ($1, $2) \
     ON CONFLICT (id) DO UPDATE SET rec = EXCLUDED.rec";
pub(super) const LOCAL_ALL: &str = "SELECT id, rec FROM keyrot_local_keys ORDER BY id";

/// History retention (`pg/prune.rs`). The scans read pages of rows in key
/// order after a cursor (`$1`; `NULL`: from the start), `$2` rows at most.
///
/// Rotations, each with its slot's active and latest rotation.
pub(super) const PRUNE_ROTATIONS_PAGE: &str = "SELECT r.id, r.rec, a.rotation, l.rotation \
     FROM keyrot_rotations r \
     LEFT JOIN keyrot_active a ON a.slot = r.slot \
     LEFT JOIN keyrot_latest_rotation l ON l.slot = r.slot \
     WHERE ($1::text IS NULL OR r.id > $1) ORDER BY r.id LIMIT $2";
/// Local keys.
pub(super) const PRUNE_LOCAL_PAGE: &str = "SELECT id, rec FROM keyrot_local_keys \
     WHERE ($1::text IS NULL OR id > $1) ORDER BY id LIMIT $2";
/// Outbox messages.
pub(super) const PRUNE_OUTBOX_PAGE: &str = "SELECT id, rec FROM keyrot_outbox \
     WHERE ($1::text IS NULL OR id > $1) ORDER BY id LIMIT $2";
/// A slot's (`$1`) active and latest rotation.
pub(super) const PRUNE_SLOT_INDEXES: &str = "SELECT \
     (SELECT rotation FROM keyrot_active WHERE slot = $1), \
     (SELECT rotation FROM keyrot_latest_rotation WHERE slot = $1)";
/// A page of the rotations of slot `$1` after rotation `$2` and before
/// `$3` (`NULL`: the end), newest first, `$4` at most.
pub(super) const PRUNE_LATER_OF_SLOT: &str = "SELECT id, rec FROM keyrot_rotations \
     WHERE slot = $1 AND id > $2 AND ($3::text IS NULL OR id < $3) ORDER BY id DESC LIMIT $4";
/// The rotations that pin local keys: every slot's active rotation, and
/// every latest rotation whose state is not terminal (`$1`: the terminal
/// states' names).
pub(super) const PRUNE_PINNING: &str = "SELECT id, rec FROM keyrot_rotations WHERE id IN \
     (SELECT rotation FROM keyrot_active \
      UNION SELECT rotation FROM keyrot_latest_rotation WHERE NOT (state = ANY($1))) \
     ORDER BY id";
/// A rotation (its `key_rotations` entry is its own row's index entry).
pub(super) const PRUNE_ROTATION: &str = "DELETE FROM keyrot_rotations WHERE id = $1";
/// A rotation's secret (`$1`) and envelopes (`$2` ≤ name < `$3`: `ID#...`).
pub(super) const PRUNE_SECRETS: &str = "DELETE FROM keyrot_secrets \
     WHERE rotation = $1 OR (rotation >= $2 AND rotation < $3)";
/// A key of the local provider's registry.
pub(super) const PRUNE_LOCAL_KEY: &str = "DELETE FROM keyrot_local_keys WHERE id = $1";
/// The last audit entry's sequence number (`NULL` when the log is empty).
pub(super) const PRUNE_AUDIT_LAST: &str = "SELECT max(seq) FROM keyrot_audit";
/// Audit entries by sequence number (`$1`: an array).
pub(super) const PRUNE_AUDIT_ENTRIES: &str = "DELETE FROM keyrot_audit WHERE seq = ANY($1)";
/// An import (`import.rs`): the rows each table holds, to refuse a store
/// that is not empty (`meta` aside: a fresh store has its own).
pub(super) const IMPORT_ROWS: &str = "SELECT \
     (SELECT count(*) FROM keyrot_keys), (SELECT count(*) FROM keyrot_rotations), \
     (SELECT count(*) FROM keyrot_secrets), (SELECT count(*) FROM keyrot_outbox), \
     (SELECT count(*) FROM keyrot_audit), (SELECT count(*) FROM keyrot_local_keys), \
     (SELECT count(*) FROM keyrot_due), (SELECT count(*) FROM keyrot_active), \
     (SELECT count(*) FROM keyrot_latest_rotation)";
/// The fresh store's meta rows give way to the image's; its installation
/// id stays only when the image has none.
pub(super) const IMPORT_META_CLEAR: &str = "DELETE FROM keyrot_meta WHERE name <> $1";
pub(super) const IMPORT_META: &str = "INSERT INTO keyrot_meta (name, value) \
     SELECT * FROM unnest($1::text[], $2::bytea[]) \
     ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value";
/// Rows in batches, one array per column.
pub(super) const IMPORT_KEYS: &str =
    "INSERT INTO keyrot_keys (slot, rec) SELECT * FROM unnest($1::text[], $2::bytea[])";
pub(super) const IMPORT_ROTATIONS: &str = "INSERT INTO keyrot_rotations (id, slot, rec) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[])";
pub(super) const IMPORT_LATEST: &str = "INSERT INTO keyrot_latest_rotation (slot, rotation, state) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[])";
pub(super) const IMPORT_SECRETS: &str = "INSERT INTO keyrot_secrets (rotation, sealed) \
     SELECT * FROM unnest($1::text[], $2::bytea[])";
pub(super) const IMPORT_OUTBOX: &str =
    "INSERT INTO keyrot_outbox (id, rec) SELECT * FROM unnest($1::text[], $2::bytea[])";
pub(super) const IMPORT_AUDIT: &str =
    "INSERT INTO keyrot_audit (seq, rec) SELECT * FROM unnest($1::bigint[], $2::bytea[])";
pub(super) const IMPORT_DUE: &str =
    "INSERT INTO keyrot_due (at, target) SELECT * FROM unnest($1::bigint[], $2::text[])";
pub(super) const IMPORT_LOCAL_KEYS: &str =
    "INSERT INTO keyrot_local_keys (id, rec) SELECT * FROM unnest($1::text[], $2::bytea[])";
pub(super) const IMPORT_ACTIVE: &str = "INSERT INTO keyrot_active (slot, rotation) \
     SELECT * FROM unnest($1::text[], $2::text[])";

/// Transaction ends.
pub(super) const COMMIT: &str = "COMMIT";
pub(super) const ROLLBACK: &str = "ROLLBACK";

/// The export (`export.rs`): every row of the tables that have no scan
/// above, in key order.
pub(super) const EXPORT_SECRETS: &str =
    "SELECT rotation, sealed FROM keyrot_secrets ORDER BY rotation";
pub(super) const EXPORT_META: &str = "SELECT name, value FROM keyrot_meta ORDER BY name";
pub(super) const EXPORT_ROTATIONS: &str = "SELECT id, slot, rec FROM keyrot_rotations ORDER BY id";
pub(super) const EXPORT_DUE: &str = "SELECT at, target FROM keyrot_due ORDER BY at, target";
pub(super) const EXPORT_ACTIVE: &str = "SELECT slot, rotation FROM keyrot_active ORDER BY slot";

/// Per keyrot table: name, estimated rows, bytes of its rows, bytes of
/// its indexes and the rest.
pub(super) const TABLE_SIZES: &str = "SELECT c.relname, c.reltuples::bigint, \
     pg_table_size(c.oid), pg_total_relation_size(c.oid) - pg_table_size(c.oid) \
     FROM pg_class c WHERE c.relkind = 'r' AND c.relname LIKE 'keyrot\\_%' ORDER BY c.relname";
