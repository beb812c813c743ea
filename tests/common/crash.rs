//! The crash suites' harness (`tests/suite/crash.rs`, `tests/suite/crash_random.rs`):
//! real peers shared by the cases of one test function (OpenBao KV, an
//! aiosmtpd SMTP server, and the provider side: `keyrot sandbox` with the
//! proposed rotate API, moto for IAM, or keyrot's own local provider), a
//! fresh daemon per case armed through `KEYROT_FAILPOINTS_FILE`, and the
//! invariants I1-I6 checked from outside keyrot wherever a peer can tell:
//!
//! - I1 every rotation ends Completed or Failed (Aborted by an operator),
//!   never stuck in a middle state;
//! - I2 every sink holds the secret of the slot's key that is live at the
//!   provider (hash compared with the provider's record, and for the
//!   sandbox the secret authenticates at its API);
//! - I3 an old key was revoked only after the new one was written to every
//!   sink and verified (keyrot's record, and the provider's revoke time
//!   against the sinks' own write times);
//! - I4 no orphan: every live provider key of a slot is its current key,
//!   an old key in its overlap, or the new key of a Failed rotation;
//! - I5 no secret lost: every key keyrot issued was revoked, or is in
//!   every sink, or is held by a Failed rotation whose secret is still in
//!   the store;
//! - I6 every notification was delivered, and no event under two
//!   Message-IDs (the same Message-ID twice is at-least-once delivery).
//!
//! A redb store cannot be read while the daemon runs, so a check stops the
//! daemon (SIGTERM) and opens the store read-only for what only it holds:
//! the local provider's registry, the sealed secrets, the outbox. On
//! PostgreSQL (`KEYROT_SUITE_STORE=postgres`, see `common::store::suite_store`)
//! the same check reads the daemon's database, opened without the master
//! key, after the same stop; and a daemon started again waits until it
//! leads (a daemon that died leading holds the lease up to 3 s more).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::Value;
use sha2::Digest as _;

use super::{Daemon, wait_until};

pub mod checks;
mod mail;
pub mod observe;
pub mod scenario;
pub mod world;

use checks::Report;
use world::World;

/// The line `keyrot_core::failpoint` writes to stderr when a failpoint acts.
pub fn fired_line(name: &str, action: &str) -> String {
    format!("keyrot: failpoint {name}: {action}")
}

/// Lower-case hex SHA-256 of `s`.
pub fn sha256_hex(s: &str) -> String {
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn ts(v: &Value) -> Option<Timestamp> {
    v.as_str().and_then(|s| s.parse().ok())
}

/// The provider names in the daemon's config.
pub const SANDBOX: &str = "atl";
/// The assisted provider (same sandbox org, no rotate API).
pub const ASSISTED: &str = "atl-hand";
/// The local provider.
pub const LOCAL: &str = "local";
/// The IAM provider.
pub const IAM: &str = "iam";
/// Not a provider: in a case's plan, slots of the local provider under
/// policy `quiet` (`revoke_when = "unused"`; the local provider reports
/// each use at once). Their names start with `q`.
pub const QUIET: &str = "local-quiet";
/// The sinks every key is written to.
pub const SINKS: [&str; 2] = ["out", "bao"];
/// Where the sandbox's Admin API lives under its URL.
const ADMIN_API: &str = "/admin/api-access/v1/orgs/demo-org";

/// One key slot of a case.
#[derive(Clone, Debug)]
pub struct Slot {
    /// Provider name in the config.
    pub provider: String,
    /// Key name (unique in the world).
    pub name: String,
    /// The key created outside keyrot that the slot adopted, if any.
    pub initial: Option<String>,
}

impl Slot {
    /// `provider/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.provider, self.name)
    }
}

/// One daemon directory and its slots.
pub struct Case<'w> {
    /// The peers.
    pub world: &'w World,
    /// The daemon.
    pub d: Daemon,
    /// Its slots.
    pub slots: Vec<Slot>,
    /// Printed with every failure (failpoint, or seed and iteration).
    pub label: String,
    /// Failpoint lines in the log when the current phase began.
    fired_before: usize,
    /// Where the reload hook `consumer` logs each run (I7).
    pub hook_log: std::path::PathBuf,
}

impl Case<'_> {
    /// A failure message: the label, `what`, and the daemon's log tail.
    pub fn fail(&self, what: &str) -> String {
        let log = self.d.log();
        let tail: Vec<&str> = log.lines().rev().take(80).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "[{}] {what}\n--- daemon log (last 80 lines) ---\n{}",
            self.label,
            tail.join("\n")
        )
    }

    /// Arms `spec` (`name=action[@N],...`); the daemon reads it at each hit.
    pub fn arm(&mut self, spec: &str) {
        self.fired_before = self.d.log().matches("keyrot: failpoint ").count();
        fs::write(self.d.dir.join("failpoints"), spec).unwrap();
    }

    /// Disarms every failpoint.
    pub fn disarm(&self) {
        let _ = fs::remove_file(self.d.dir.join("failpoints"));
    }

    /// Failpoint lines (`NAME: ACTION`) the daemon wrote since the last [`arm`].
    pub fn fired(&self) -> Vec<String> {
        self.d
            .log()
            .lines()
            .filter_map(|l| l.strip_prefix("keyrot: failpoint "))
            .skip(self.fired_before)
            .map(str::to_string)
            .collect()
    }

    /// Whether the daemon process is running.
    pub fn running(&mut self) -> bool {
        match self.d.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// [`Case::try_json`] for a read the control API answers at `path` in
    /// the same JSON: asked there while the daemon answers, through the
    /// CLI (which then reads the store) otherwise.
    fn read(&self, path: &str, args: &[&str]) -> Option<Value> {
        self.d.api(path).or_else(|| self.try_json(args))
    }

    /// Runs a CLI command; its JSON output if it succeeded.
    pub fn try_json(&self, args: &[&str]) -> Option<Value> {
        let out = self.d.cli(args);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// `keyrot rotate SLOT`: the rotation id, or None when the daemon did
    /// not answer (it may have died in the call).
    pub fn rotate(&self, slot: usize) -> Option<String> {
        let v = self.try_json(&["rotate", &self.slots[slot].id(), "--json"])?;
        v["id"].as_str().map(str::to_string)
    }

    /// SIGHUP: reload, then an inventory sync.
    pub fn reload(&mut self) -> bool {
        if !self.running() {
            return false;
        }
        self.d.signal(libc::SIGHUP);
        true
    }

    /// Waits up to `timeout` for the daemon to die; true if it did.
    pub fn wait_crash(&mut self, timeout: Duration) -> bool {
        self.d.child.is_none() || self.d.wait_exit(timeout).is_some()
    }

    /// Starts the daemon without waiting for its socket (it may die while
    /// starting, when armed); then waits until it answers or exits. On
    /// PostgreSQL "answers" means as the leader: a standby refuses every
    /// change, and the one that died may hold the lease a little longer.
    pub fn spawn(&mut self) {
        self.d.spawn();
        // `keyrot status` also answers from the store while no daemon
        // runs: wait for the daemon's own answer.
        let _ = wait_until(Duration::from_secs(30), || {
            !self.running()
                || self
                    .read("/v1/status", &["status", "--json"])
                    .is_some_and(|s| s["live"] == true && s["instance"]["role"] != "standby")
        });
    }

    /// Starts the daemon and waits until it answers; panics otherwise.
    pub fn start(&mut self) {
        self.spawn();
        assert!(
            self.running(),
            "{}",
            self.fail("the daemon died while starting")
        );
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        self.d.kill9();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if !self.running() {
            self.d.child = None;
            return;
        }
        self.d.signal(libc::SIGTERM);
        let st = self.d.wait_exit(Duration::from_secs(30));
        assert!(
            st.is_some_and(|s| s.success()),
            "{}",
            self.fail(&format!("no clean exit after SIGTERM: {st:?}"))
        );
    }

    /// Every rotation of this case's slots (full records), newest first.
    pub fn rotations(&self) -> Vec<Value> {
        self.try_rotations().unwrap_or_default()
    }

    /// Every rotation of this case's slots, or None when keyrot did not
    /// answer.
    pub fn try_rotations(&self) -> Option<Vec<Value>> {
        let slots: BTreeSet<String> = self.slots.iter().map(Slot::id).collect();
        let all = self.read(
            "/v1/history?limit=100000",
            &["history", "--json", "--limit", "100000"],
        )?;
        Some(
            all["rotations"]
                .as_array()?
                .iter()
                .filter(|r| r["slot"].as_str().is_some_and(|s| slots.contains(s)))
                .cloned()
                .collect(),
        )
    }

    /// Slot id -> current key id, from `keyrot status`.
    pub fn current(&self) -> BTreeMap<String, Option<String>> {
        self.read("/v1/status", &["status", "--json"])
            .and_then(|v| v["keys"].as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|k| {
                Some((
                    format!("{}/{}", k["provider"].as_str()?, k["name"].as_str()?),
                    k["key_id"].as_str().map(str::to_string),
                ))
            })
            .collect()
    }

    /// Waits until every slot has a key, nothing is in flight and the
    /// outbox is empty (the state before a failpoint is armed).
    fn settle_baseline(&mut self) {
        let n = self.slots.len();
        let ok = wait_until(Duration::from_secs(60), || {
            let cur = self.current();
            let keyed = self
                .slots
                .iter()
                .filter(|s| cur.get(&s.id()).is_some_and(Option::is_some))
                .count();
            keyed == n && self.quiet()
        });
        assert!(ok, "{}", self.fail("the case did not reach its baseline"));
    }

    /// No rotation in flight (terminal, or waiting for `keyrot enroll`)
    /// and nothing queued in the outbox.
    fn quiet(&self) -> bool {
        // Rotations first: a rotation's messages are queued in the commit
        // that ends it, so an empty outbox seen afterwards includes them.
        let settled = self.try_rotations().is_some_and(|rs| {
            rs.iter().all(|r| {
                matches!(
                    r["state"].as_str(),
                    Some("Completed" | "Failed" | "Aborted" | "AwaitingSecret")
                )
            })
        });
        settled
            && self
                .read("/v1/status", &["status", "--json"])
                .is_some_and(|s| s["outbox_queued"] == 0)
    }

    /// Waits (up to `timeout`) until every rotation has settled and the
    /// outbox is empty. I1: Err names the rotations stuck in the middle.
    pub fn settle(&mut self, timeout: Duration) -> Result<(), String> {
        if wait_until(timeout, || self.quiet()) {
            return Ok(());
        }
        let stuck: Vec<String> = self
            .rotations()
            .iter()
            .filter(|r| {
                !matches!(
                    r["state"].as_str(),
                    Some("Completed" | "Failed" | "Aborted" | "AwaitingSecret")
                )
            })
            .map(|r| {
                format!(
                    "{} ({}) in {} since {}: {}",
                    r["id"], r["slot"], r["state"], r["updated_at"], r["last_error"]
                )
            })
            .collect();
        Err(self.fail(&format!(
            "I1 violated: not settled after {timeout:?}: stuck rotations {stuck:?}; status {}",
            self.read("/v1/status", &["status", "--json"])
                .map(|s| format!(
                    "outbox_queued={} outbox_dead={}",
                    s["outbox_queued"], s["outbox_dead"]
                ))
                .unwrap_or_else(|| "unavailable".into())
        )))
    }

    /// Resumes every Failed rotation (what an operator does); the count.
    pub fn resume_failed(&self) -> usize {
        let mut n = 0;
        for r in self.rotations() {
            if r["state"] == "Failed" {
                let id = r["id"].as_str().unwrap();
                let out = self.d.cli(&["rotation", "resume", id]);
                assert!(
                    out.status.success(),
                    "{}",
                    self.fail(&format!(
                        "resume {id}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    ))
                );
                n += 1;
            }
        }
        n
    }
}

impl Case<'_> {
    /// Waits for the daemon to die at failpoint `name`; panics otherwise.
    pub fn expect_death(&mut self, name: &str) {
        let died = self.wait_crash(Duration::from_secs(40));
        let line = format!("{name}: abort");
        assert!(
            died && self.fired().contains(&line),
            "{}",
            self.fail(&format!(
                "expected the daemon to die at failpoint {name}: died={died}, fired={:?}",
                self.fired()
            ))
        );
    }

    /// Waits for the daemon to die at failpoint `name`, then starts it
    /// again with no failpoint armed.
    pub fn restart_after_death(&mut self, name: &str) {
        self.expect_death(name);
        self.disarm();
        self.start();
    }

    /// Settles, then asserts that the daemon still runs, that exactly one
    /// rotation was added to the `before` there were, that every rotation
    /// completed, and that the strict checks find nothing.
    pub fn settle_with_one_more_completed(&mut self, before: usize) {
        self.settle(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(self.running(), "{}", self.fail("the daemon stopped"));
        let rotations = self.rotations();
        assert_eq!(
            rotations.len(),
            before + 1,
            "{}",
            self.fail("one more rotation expected")
        );
        assert!(
            rotations.iter().all(|r| r["state"] == "Completed"),
            "{}",
            self.fail("a rotation did not complete")
        );
        let report = self.check(true).unwrap_or_else(|e| panic!("{e}"));
        assert!(report.findings.is_empty(), "{:?}", report.findings);
    }

    /// [`Case::recover`], then every invariant checked strictly; both go
    /// into `report`. Panics when a check fails.
    pub fn recover_and_check(&mut self, report: &mut Report) {
        report.add(&self.recover());
        report.add(&self.check(true).unwrap_or_else(|e| panic!("{e}")));
    }

    /// After a crash and a clean start: settles (I1), resumes Failed
    /// rotations as an operator would, and settles again.
    pub fn recover(&mut self) -> Report {
        let mut report = Report::default();
        self.settle(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}"));
        let resumed = self.resume_failed();
        if resumed > 0 {
            report.resumed += resumed;
            self.settle(Duration::from_secs(60))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        report
    }
}

/// Seconds since `start`, for the suites' figures.
pub fn secs(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}
