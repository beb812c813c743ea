//! Failover on PostgreSQL with the real binary: two keyrot instances on
//! one database, two keys rotating every few seconds (local provider, a
//! JSON file sink), and the leader killed with `kill -9` at random points,
//! or stopped with SIGSTOP past its lease and continued, cycle after cycle.
//!
//! What is counted comes from PostgreSQL and the provider's own registry
//! (the local provider keeps its keys in the store), never from keyrot's
//! view of itself:
//! - writes accepted from a fenced epoch: a trigger on every table a
//!   rotation writes logs, in the writing transaction, the epoch the
//!   writer asserted (`keyrot.epoch`) beside the lease's epoch and whether
//!   it was live; a row where they differ is a fenced write that got in;
//! - slots rotated twice at once: a rotation of a slot created before the
//!   slot's previous rotation finished;
//! - orphan keys: live keys at the provider that are neither a slot's
//!   current key nor the new key of an unfinished rotation;
//! - consumers locked out: a sink holding a key the provider revoked;
//! - failover time: from the kill (PostgreSQL's clock) to the first write
//!   the next epoch commits.
//!
//! The cycles are set by `KEYROT_FAILOVER_KILLS` (default 4) and
//! `KEYROT_FAILOVER_STOPS` (default 1), the random points by
//! `KEYROT_FAILOVER_SEED` (default fixed). The figures are printed;
//! docs/high-availability.md has those of a long run.

use crate::common;

use std::fs;
use std::time::{Duration, Instant};

use common::{Daemon, wait_until};
use keyrot_core::pgserver::PgServer;

use crate::store_postgres::pg_daemon_at;

/// The trigger that logs each write's asserted epoch against the lease.
const FENCE_LOG: &str = r"
CREATE TABLE fence_log (at timestamptz NOT NULL DEFAULT clock_timestamp(), tbl text,
    writer_epoch bigint, lease_epoch bigint, lease_live boolean);
CREATE FUNCTION fence_check() RETURNS trigger AS $$
BEGIN
  INSERT INTO fence_log (tbl, writer_epoch, lease_epoch, lease_live)
  SELECT TG_TABLE_NAME, nullif(current_setting('keyrot.epoch', true), '')::bigint,
         epoch, expires_at > now() FROM keyrot_lease WHERE name = 'leader';
  RETURN NULL;
END $$ LANGUAGE plpgsql;
";

/// Tables a rotation writes.
const WATCHED: [&str; 6] = [
    "keyrot_rotations",
    "keyrot_keys",
    "keyrot_secrets",
    "keyrot_local_keys",
    "keyrot_audit",
    "keyrot_outbox",
];

/// `psql` in the database `url` names: its output, trimmed.
fn psql(url: &str, query: &str) -> String {
    let server = PgServer::shared();
    let db = url.rsplit('/').next().unwrap().split('?').next().unwrap();
    let out = std::process::Command::new(server.bin_dir().join("psql"))
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "keyrot",
            "-tA",
            "-v",
            "ON_ERROR_STOP=1",
            "-p",
        ])
        .arg(server.port().to_string())
        .args(["-d", db, "-c", query])
        .output()
        .unwrap();
    assert!(out.status.success(), "{query}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A number from the environment.
fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The instance leading now, by its own status (`paused` is not asked: it
/// cannot answer).
fn leader_of(ds: &[Daemon; 2], paused: Option<usize>) -> Option<usize> {
    (0..2).find(|&i| {
        ds[i].child.is_some() && Some(i) != paused && {
            let out = ds[i].cli(&["status", "--json"]);
            out.status.success()
                && serde_json::from_slice::<serde_json::Value>(&out.stdout)
                    .is_ok_and(|v| v["instance"]["role"] == "leader")
        }
    })
}

/// Keys at the provider, neither revoked nor expired, that are not a
/// slot's current key, nor the new or the old key of an unfinished
/// rotation: keys keyrot lost track of.
fn orphans(url: &str) -> Vec<String> {
    let rows = psql(
        url,
        "SELECT l.id FROM keyrot_local_keys l, \
              LATERAL (SELECT convert_from(l.rec, 'UTF8')::json AS j) r \
         WHERE r.j->>'revoked_at' IS NULL \
           AND (r.j->>'expires_at' IS NULL OR (r.j->>'expires_at')::timestamptz > now()) \
           AND NOT EXISTS (SELECT 1 FROM keyrot_keys k \
                WHERE convert_from(k.rec, 'UTF8')::json->'current'->>'id' = l.id) \
           AND NOT EXISTS (SELECT 1 FROM keyrot_rotations x, \
                  LATERAL (SELECT convert_from(x.rec, 'UTF8')::json AS j) y \
                WHERE y.j->>'state' NOT IN ('Completed', 'Failed', 'Aborted') \
                  AND (y.j->'new_key'->>'id' = l.id OR y.j->>'old_key_id' = l.id))",
    );
    rows.lines().map(str::to_owned).collect()
}

/// Sinks holding a key the provider revoked, or one that has expired.
fn locked_out(d: &Daemon, url: &str) -> Vec<String> {
    let mut out = Vec::new();
    for name in ["alpha", "beta"] {
        let Some(sink) = d.sink(name) else { continue };
        let id = sink["key_id"]
            .as_str()
            .unwrap_or_default()
            .replace('\'', "");
        let dead = psql(
            url,
            &format!(
                "SELECT count(*) FROM keyrot_local_keys, \
                      LATERAL (SELECT convert_from(rec, 'UTF8')::json AS j) r \
                 WHERE id = '{id}' AND (r.j->>'revoked_at' IS NOT NULL \
                   OR (r.j->>'expires_at')::timestamptz <= now())"
            ),
        );
        if dead != "0" {
            out.push(format!("{name}: {id}"));
        }
    }
    out
}

/// Rotations of a slot created before the slot's previous one finished.
fn overlapping_rotations(url: &str) -> Vec<String> {
    let rows = psql(
        url,
        "SELECT slot || ' ' || id FROM ( \
           SELECT slot, id, convert_from(rec, 'UTF8')::json->>'created_at' AS created, \
                  lag(convert_from(rec, 'UTF8')::json->>'updated_at') OVER (PARTITION BY slot ORDER BY id) AS prev_end \
           FROM keyrot_rotations) r \
         WHERE prev_end IS NOT NULL AND created::timestamptz < prev_end::timestamptz",
    );
    rows.lines().map(str::to_owned).collect()
}

/// SplitMix64: small, seedable, the same on every platform.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The median and 99th percentile of `v`, in seconds.
fn median_p99(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

#[test]
fn the_leader_dies_and_the_standby_goes_on_without_harm() {
    let kills = env_num("KEYROT_FAILOVER_KILLS", 4);
    let stops = env_num("KEYROT_FAILOVER_STOPS", 1);
    let seed = env_num("KEYROT_FAILOVER_SEED", 19);
    eprintln!("failover: {kills} kill -9, {stops} SIGSTOP, seed {seed}");
    let mut rng = seed;
    let url = PgServer::shared()
        .fresh_database()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut ds = [
        pg_daemon_at(&url, &["alpha", "beta"]),
        pg_daemon_at(&url, &["alpha", "beta"]),
    ];
    // Both instances write the same sink, as consumers read one place.
    // Keys live 20 s and are replaced 15 s before they expire (a rotation
    // every 5 s or so): a failover, a lease of 3 s, never lets a key expire
    // before its replacement is out, as days of margin never do in use.
    let shared = ds[0].dir.join("out");
    for d in &ds {
        let text = fs::read_to_string(d.config_path()).unwrap();
        let text = text
            .replace("new_key_lifetime = \"6s\"", "new_key_lifetime = \"20s\"")
            .replace(
                "rotate_before_expiry = \"3s\"",
                "rotate_before_expiry = \"15s\"",
            );
        let text = text.replace(
            "path = \"out/{name}.json\"",
            &format!("path = \"{}/{{name}}.json\"", shared.display()),
        );
        assert!(text.contains(&shared.display().to_string()));
        fs::write(d.config_path(), text).unwrap();
    }
    ds[0].start();
    ds[0].wait_first_key();
    let key = ds[0].dir.join("master.key");
    fs::copy(&key, ds[1].dir.join("master.key")).unwrap();
    ds[1].start();
    psql(&url, FENCE_LOG);
    for t in WATCHED {
        psql(
            &url,
            &format!(
                "CREATE TRIGGER fence AFTER INSERT OR UPDATE OR DELETE ON {t} \
                 FOR EACH STATEMENT EXECUTE FUNCTION fence_check()"
            ),
        );
    }

    let mut failover_secs = Vec::new();
    let started = Instant::now();
    for cycle in 0..kills + stops {
        let stop = cycle >= kills;
        let mut leader = None;
        assert!(
            wait_until(Duration::from_secs(20), || {
                leader = leader_of(&ds, None);
                leader.is_some()
            }),
            "cycle {cycle}: no leader"
        );
        let (old, new) = (leader.unwrap(), 1 - leader.unwrap());
        // A random point in the rotations under way (this waits to inject
        // the fault, it synchronises nothing).
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(200 + splitmix(&mut rng) % 2800));
        let epoch: u64 = psql(&url, "SELECT epoch FROM keyrot_lease")
            .parse()
            .unwrap();
        let killed_at = psql(&url, "SELECT clock_timestamp()");
        if stop {
            ds[old].signal(libc::SIGSTOP);
        } else {
            ds[old].kill9();
        }
        assert!(
            wait_until(Duration::from_secs(20), || {
                leader_of(&ds, Some(old)) == Some(new)
            }),
            "cycle {cycle}: no takeover; log:\n{}",
            ds[new].log()
        );
        if stop {
            // Continued past its lease, the old leader finds it lost and exits.
            ds[old].signal(libc::SIGCONT);
            let status = ds[old].wait_exit(Duration::from_secs(20));
            assert_eq!(
                status.and_then(|s| s.code()),
                Some(75),
                "cycle {cycle}: the paused leader did not exit on its lost lease; log:\n{}",
                ds[old].log()
            );
        }
        ds[old].start();
        // Failover time: the kill to the first write under the next epoch.
        let secs = wait_until(Duration::from_secs(20), || {
            psql(
                &url,
                &format!("SELECT count(*) FROM fence_log WHERE lease_epoch > {epoch}"),
            ) != "0"
        });
        assert!(secs, "cycle {cycle}: the new leader wrote nothing");
        eprintln!(
            "failover: cycle {cycle} ({}) done at {:.1} s",
            if stop { "SIGSTOP" } else { "kill -9" },
            started.elapsed().as_secs_f64()
        );
        let took: f64 = psql(
            &url,
            &format!(
                "SELECT extract(epoch FROM min(at) - '{killed_at}'::timestamptz) \
                 FROM fence_log WHERE lease_epoch > {epoch}"
            ),
        )
        .parse()
        .unwrap();
        failover_secs.push(took);
        let lockouts = locked_out(&ds[0], &url);
        assert!(
            lockouts.is_empty(),
            "cycle {cycle}: consumers locked out: {lockouts:?}"
        );
    }

    // Settle: one instance, its keys made to live an hour (a reload), until
    // the rotations under way have finished.
    let leader = leader_of(&ds, None).unwrap();
    ds[1 - leader].signal(libc::SIGTERM);
    assert!(ds[1 - leader].wait_exit(Duration::from_secs(15)).is_some());
    let text = fs::read_to_string(ds[leader].config_path()).unwrap();
    fs::write(
        ds[leader].config_path(),
        text.replace("new_key_lifetime = \"20s\"", "new_key_lifetime = \"1h\"")
            .replace(
                "rotate_before_expiry = \"15s\"",
                "rotate_before_expiry = \"10m\"",
            ),
    )
    .unwrap();
    ds[leader].signal(libc::SIGHUP);
    // Settled: every key is one of the hour-long ones, and nothing runs.
    let settled = |st: &serde_json::Value| {
        st["active_rotations"] == 0
            && st["keys"].as_array().is_some_and(|ks| {
                ks.iter().all(|k| {
                    k["expires_at"]
                        .as_str()
                        .and_then(|e| e.parse::<jiff::Timestamp>().ok())
                        .is_some_and(|e| {
                            e > common::wall_now() + jiff::SignedDuration::from_mins(30)
                        })
                })
            })
    };
    assert!(
        wait_until(Duration::from_secs(90), || {
            settled(&ds[leader].status())
        }),
        "rotations did not settle; log:\n{}",
        ds[leader].log()
    );
    ds[leader].signal(libc::SIGTERM);
    assert!(
        ds[leader]
            .wait_exit(Duration::from_secs(15))
            .unwrap()
            .success()
    );

    let fenced = psql(
        &url,
        "SELECT count(*) FROM fence_log \
         WHERE writer_epoch IS DISTINCT FROM lease_epoch OR NOT lease_live",
    );
    let writes = psql(&url, "SELECT count(*) FROM fence_log");
    let states = psql(
        &url,
        "SELECT string_agg(s || '=' || n, ' ') FROM (SELECT convert_from(rec, 'UTF8')::json->>'state' AS s, \
         count(*) AS n FROM keyrot_rotations GROUP BY 1 ORDER BY 1) x",
    );
    let orphan_keys = orphans(&url);
    let overlaps = overlapping_rotations(&url);
    let lockouts = locked_out(&ds[0], &url);
    let (median, p99) = median_p99(&mut failover_secs);
    eprintln!(
        "failover: {} cycles in {:.0} s; {writes} audited write statements, {fenced} from a fenced epoch; \
         rotations {states}; orphan keys {}; slots rotated twice at once {}; consumers locked out (revoked or expired key in the sink) {}; \
         failover time median {median:.2} s, p99 {p99:.2} s (lease 3 s)",
        kills + stops,
        started.elapsed().as_secs_f64(),
        orphan_keys.len(),
        overlaps.len(),
        lockouts.len()
    );
    assert_eq!(fenced, "0", "writes from a fenced epoch were accepted");
    assert!(orphan_keys.is_empty(), "orphan keys: {orphan_keys:?}");
    assert!(
        overlaps.is_empty(),
        "slots rotated twice at once: {overlaps:?}"
    );
    assert!(lockouts.is_empty(), "consumers locked out: {lockouts:?}");
    assert!(
        states.split(' ').all(|s| s.starts_with("Completed=")),
        "not every rotation completed: {states}"
    );
    assert!(
        p99 <= 3.0 + 5.0,
        "failover p99 {p99:.2} s is over the lease + 5 s"
    );
}
