//! The deterministic crash suite (cargo feature `failpoints`): the real
//! binary against real peers (`keyrot sandbox` with the proposed rotate
//! API, keyrot's local provider, AWS IAM on moto; OpenBao KV and a file as
//! sinks; aiosmtpd for the mail) dies like `kill -9` at every failpoint in
//! `keyrot_core::failpoint::ALL`, restarts without failpoints, and once every
//! rotation has settled the invariants I1-I6 (tests/common/crash.rs) must
//! hold. Each test function shares one set of peers between its cases;
//! each case gets a fresh daemon directory.

use crate::common;

use std::collections::BTreeSet;

use std::time::{Duration, Instant};

use common::crash::checks::Report;
use common::crash::scenario::Scenario;
use common::crash::world::{Kind, World};
use common::crash::{ASSISTED, Case, IAM, LOCAL, QUIET, SANDBOX};
use keyrot_core::failpoint::ALL;

/// The rotation path, crashed at each step (the sandbox covers it all).
fn rotation_path() -> Vec<Scenario> {
    let mut v: Vec<Scenario> = [
        "after:pending",
        "after:issuing",
        "before:issue",
        "after:issue",
        "after:issued",
        "after:distributing",
        "before:sink-put",
        "after:sink-put",
        "after:verifying",
        "before:verify",
        "after:verify",
        "before:sink-read",
        "after:sink-read",
        "before:sink-finish",
        "after:sink-finish",
        "after:reloading",
        "before:hook",
        "after:hook",
        "after:overlap",
        "after:revoking",
        "before:revoke",
        "after:revoke",
        "after:completed",
        "before:mail-send",
        "after:mail-send",
    ]
    .into_iter()
    .map(Scenario::abort)
    .collect();
    // The second sink (the first one's success is already committed).
    for fp in ["before:sink-put", "after:sink-put", "after:sink-read"] {
        v.push(Scenario::abort_at(fp, Some(2)));
    }
    // Store commits at several depths of the rotation.
    for n in [1, 4, 8] {
        v.push(Scenario::abort_at("before:commit", Some(n)));
    }
    for n in [2, 6, 10] {
        v.push(Scenario::abort_at("after:commit", Some(n)));
    }
    v.push(Scenario::sync("before:list"));
    v.push(Scenario::sync("after:list"));
    v
}

/// The local provider tags keys: a crash after the issue leaves a key
/// whose secret was never seen, found by its tag and revoked on restart.
fn local_scenarios() -> Vec<Scenario> {
    let mut v: Vec<Scenario> = [
        "before:find-tagged",
        "after:find-tagged",
        "before:revoke-orphan",
        "after:revoke-orphan",
    ]
    .into_iter()
    .map(Scenario::orphan)
    .collect();
    v.extend(
        [
            "after:issuing",
            "after:sink-put",
            "after:overlap",
            "before:revoke",
        ]
        .into_iter()
        .map(Scenario::abort),
    );
    v.push(Scenario::abort_at("before:commit", Some(3)));
    v.push(Scenario::abort_at("after:commit", Some(5)));
    v.push(Scenario::sync("before:list"));
    v
}

/// The local provider under `revoke_when = "unused"`: killed around the
/// call that reads the old key's last use (at the overlap's start, and
/// again once it is over), and at the steps on either side.
fn quiet_scenarios() -> Vec<Scenario> {
    let mut v: Vec<Scenario> = ["before:last-used", "after:last-used", "after:overlap"]
        .into_iter()
        .map(Scenario::abort)
        .collect();
    // The second call: once the overlap is over.
    v.push(Scenario::abort_at("before:last-used", Some(2)));
    v.push(Scenario::abort_at("after:last-used", Some(2)));
    v
}

/// IAM with `deactivate_first`: the old key is set Inactive for the overlap.
fn iam_scenarios() -> Vec<Scenario> {
    let mut v: Vec<Scenario> = [
        "before:deactivate",
        "after:deactivate",
        "after:issue",
        "after:overlap",
        "after:revoke",
    ]
    .into_iter()
    .map(Scenario::abort)
    .collect();
    v.push(Scenario::orphan("before:revoke-orphan"));
    v
}

/// Failpoints the special cases below kill the daemon at.
/// The webhook posts' are killed in `tests/suite/webhooks.rs`
/// (`a_kill_around_a_webhook_post_delivers_again_under_the_same_id`).
const SPECIAL: [&str; 5] = [
    "after:failed",
    "after:aborted",
    "after:awaiting-secret",
    "before:webhook-send",
    "after:webhook-send",
];

/// Runs `scenarios` against `world` on slots of `provider`; returns the
/// figures and the failpoints that killed the daemon.
fn run_all(world: &World, provider: &str, scenarios: &[Scenario]) -> (Report, BTreeSet<String>) {
    let mut total = Report::default();
    let mut covered = BTreeSet::new();
    for s in scenarios {
        let t = Instant::now();
        let mut case = world.case(&format!("{provider}: {}", s.label()), &[(provider, 1)]);
        total.add(&s.run(&mut case));
        covered.extend(s.names());
        eprintln!(
            "crash [{provider}] {}: ok in {:.1}s",
            s.label(),
            t.elapsed().as_secs_f64()
        );
    }
    (total, covered)
}

fn summary(what: &str, start: Instant, report: &Report, covered: &BTreeSet<String>) {
    eprintln!(
        "crash suite [{what}]: {} failpoints, {} rotations ({} completed, {} resumed), {} provider keys, {} sink values, {} messages ({} duplicates under the same Message-ID) checked in {:.1}s; invariant violations: 0",
        covered.len(),
        report.rotations,
        report.completed,
        report.resumed,
        report.provider_keys,
        report.sink_values,
        report.messages,
        report.duplicates,
        start.elapsed().as_secs_f64()
    );
    for f in &report.findings {
        eprintln!("crash suite [{what}]: finding: {f}");
    }
}

#[test]
fn sandbox_provider_crashes_at_every_step_of_a_rotation() {
    let start = Instant::now();
    let world = World::new(Kind::Sandbox);
    let (mut report, mut covered) = run_all(&world, SANDBOX, &rotation_path());

    // Assisted rotation: crash right after people were asked for a key;
    // after the restart a person creates it and enrolls its secret.
    let mut case = world.case("assisted: after:awaiting-secret=abort", &[(ASSISTED, 1)]);
    case.arm("after:awaiting-secret=abort");
    let _ = case.rotate(0);
    case.restart_after_death("after:awaiting-secret");
    let id = wait_rotation(&case, "AwaitingSecret");
    let (new_id, secret) = world.sandbox_key_with_secret(&case.slots[0].name);
    enroll(&case, &id, &new_id, &secret);
    case.recover_and_check(&mut report);
    covered.insert("after:awaiting-secret".into());

    // The rotate call keeps failing after the sandbox created the key (its
    // answer lost): Failed in Issuing, the key unknown to keyrot. Aborting
    // must find it (the idempotent rotate answers with the same key) and
    // revoke it; the daemon dies right after the Aborted commit.
    let mut case = world.case("sandbox: abort after a lost issue", &[(SANDBOX, 1)]);
    case.arm("after:issue=error");
    let _ = case.rotate(0);
    let id = wait_rotation(&case, "Failed");
    case.arm("after:aborted=abort");
    let _ = case.d.cli(&["rotation", "abort", &id]);
    case.restart_after_death("after:aborted");
    case.recover_and_check(&mut report);
    covered.insert("after:aborted".into());

    // The checks have teeth: a sink holding a wrong secret, and a live key
    // keyrot does not know, are both reported.
    let mut case = world.case("sandbox: tampered on purpose", &[(SANDBOX, 1)]);
    let _ = case.rotate(0);
    case.settle(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    let name = case.slots[0].name.clone();
    let file = case.d.dir.join("out").join(format!("{name}.json"));
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    doc["secret"] = "not-the-secret".into();
    std::fs::write(&file, doc.to_string()).unwrap();
    let stray = world.sandbox_key(&name);
    let err = case
        .check(true)
        .expect_err("the checker accepted a wrong sink and a stray key");
    assert!(
        err.contains("I2: slot")
            && err.contains(&format!("I4: slot atl/{name}: orphan key {stray}")),
        "{err}"
    );
    summary("sandbox", start, &report, &covered);
}

#[test]
fn local_provider_crashes_while_cleaning_up_and_when_failing_or_aborting() {
    let start = Instant::now();
    let world = World::new(Kind::Local);
    let (mut report, mut covered) = run_all(&world, LOCAL, &local_scenarios());

    // A sink that keeps failing exhausts the retry budget: crash right
    // after Failed is committed. After the restart the rotation is Failed
    // (its secret kept), the old key untouched; an operator resumes it.
    let mut case = world.case(
        "local: before:sink-put=error,after:failed=abort",
        &[(LOCAL, 1)],
    );
    case.arm("before:sink-put=error,after:failed=abort");
    let _ = case.rotate(0);
    case.restart_after_death("after:failed");
    case.settle(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    report.add(&case.check(false).unwrap_or_else(|e| panic!("{e}")));
    case.start();
    let recovered = case.recover();
    assert_eq!(recovered.resumed, 1, "{}", case.fail("nothing to resume"));
    report.add(&recovered);
    report.add(&case.check(true).unwrap_or_else(|e| panic!("{e}")));
    covered.insert("after:failed".into());

    // An operator aborts a Failed rotation (nothing distributed yet): the
    // new key is revoked, then the daemon dies right after the commit.
    let mut case = world.case("local: after:aborted=abort", &[(LOCAL, 1)]);
    case.arm("before:sink-put=error");
    let _ = case.rotate(0);
    let id = wait_rotation(&case, "Failed");
    case.arm("after:aborted=abort");
    let _ = case.d.cli(&["rotation", "abort", &id]);
    case.restart_after_death("after:aborted");
    case.recover_and_check(&mut report);
    covered.insert("after:aborted".into());
    summary("local", start, &report, &covered);
}

/// `kill -9` at every step of the reload hook: entering Reloading, before
/// the hook runs, after it ran and before its result is recorded, and
/// right after that commit; one key alone and two keys rotating together
/// (one run may serve both). I7 (tests/common/crash/checks.rs) holds after
/// each: the hook ran for every rotation, with the new key in place,
/// before the old key was revoked, and twice only when the kill came
/// between a run and its record. `KEYROT_HOOK_KILLS` runs (8 in CI; the
/// note's figure is from 24).
#[test]
fn local_provider_crashes_at_every_step_of_a_reload_hook() {
    const STEPS: [(&str, &str); 4] = [
        ("after:reloading=abort@1", "after:reloading"),
        ("before:hook=abort", "before:hook"),
        ("after:hook=abort", "after:hook"),
        ("after:reloading=abort@2", "after:reloading"),
    ];
    let runs: usize = std::env::var("KEYROT_HOOK_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let start = Instant::now();
    let world = World::new(Kind::Local);
    let mut report = Report::default();
    let mut repeated = 0;
    for i in 0..runs {
        let (spec, name) = STEPS[i % STEPS.len()];
        let keys = 1 + (i / STEPS.len()) % 2;
        let t = Instant::now();
        let mut case = world.case(
            &format!("hook kill {i}: {spec}, {keys} key(s)"),
            &[(LOCAL, keys)],
        );
        case.arm(spec);
        for k in 0..keys {
            let _ = case.rotate(k);
        }
        case.restart_after_death(name);
        case.recover_and_check(&mut report);
        let log = std::fs::read_to_string(&case.hook_log).unwrap_or_default();
        let mut per_rotation: std::collections::BTreeMap<&str, usize> = Default::default();
        for line in log.lines() {
            *per_rotation
                .entry(line.split(' ').next().unwrap_or(""))
                .or_default() += 1;
        }
        repeated += per_rotation.values().filter(|n| **n > 1).count();
        eprintln!(
            "crash [hooks] {spec}, {keys} key(s): ok in {:.1}s",
            t.elapsed().as_secs_f64()
        );
    }
    eprintln!(
        "crash suite [hooks]: {runs} kills during reload hooks, {} rotations ({} completed), {repeated} hook runs repeated after a kill between run and record, in {:.1}s; invariant violations: 0",
        report.rotations,
        report.completed,
        start.elapsed().as_secs_f64()
    );
}

#[test]
fn iam_provider_crashes_around_deactivate_and_revoke() {
    let start = Instant::now();
    let world = World::new(Kind::Iam);
    let (report, covered) = run_all(&world, IAM, &iam_scenarios());
    summary("iam", start, &report, &covered);
}

#[test]
fn local_provider_crashes_around_the_last_use_of_the_old_key() {
    let start = Instant::now();
    let world = World::new(Kind::Local);
    let (report, covered) = run_all(&world, QUIET, &quiet_scenarios());
    summary("quiet", start, &report, &covered);
}

/// Every name in `failpoint::ALL` kills the daemon in some scenario above.
#[test]
fn every_failpoint_has_a_crash_scenario() {
    let mut covered: BTreeSet<String> = BTreeSet::new();
    for s in rotation_path()
        .iter()
        .chain(&local_scenarios())
        .chain(&iam_scenarios())
        .chain(&quiet_scenarios())
    {
        covered.extend(s.names());
    }
    covered.extend(SPECIAL.iter().map(|s| s.to_string()));
    let missing: Vec<&&str> = ALL.iter().filter(|n| !covered.contains(**n)).collect();
    assert!(
        missing.is_empty(),
        "failpoints without a scenario: {missing:?}"
    );
    let unknown: Vec<&String> = covered
        .iter()
        .filter(|n| !ALL.contains(&n.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "scenarios name unknown failpoints: {unknown:?}"
    );
}

/// Every `failpoint::hit("...")` in `src/` is listed in `ALL` (so the
/// suite above covers it), and every rotation state has its `after:`.
#[test]
fn every_failpoint_in_the_sources_is_listed() {
    fn walk(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, String)>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push((p.clone(), std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    let mut files = Vec::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    walk(&root.join("src"), &mut files);
    walk(&root.join("crates"), &mut files);
    assert!(
        files.iter().any(|(p, _)| p.ends_with("rotation/steps.rs")),
        "the walk missed the state machine's sources"
    );
    // A failpoint is hit by name (`failpoint::hit("x")`) or named in a
    // pair around an external call (`failpoint::around("before:x", "after:x")`).
    let mut found = BTreeSet::new();
    for (path, text) in &files {
        let mut names = Vec::new();
        for (at, _) in text.match_indices("failpoint::hit(\"") {
            let rest = &text[at + "failpoint::hit(\"".len()..];
            names.push(&rest[..rest.find('"').unwrap()]);
        }
        for (at, _) in text.match_indices("failpoint::around(\"") {
            let rest = &text[at + "failpoint::around(\"".len()..];
            let before = &rest[..rest.find('"').unwrap()];
            let rest = &rest[before.len() + 1..];
            let rest = &rest[rest.find('"').unwrap() + 1..];
            names.push(before);
            names.push(&rest[..rest.find('"').unwrap()]);
        }
        for name in names {
            assert!(
                ALL.contains(&name),
                "{}: failpoint {name:?} is not in keyrot_core::failpoint::ALL",
                path.display()
            );
            found.insert(name.to_string());
        }
    }
    // The state commits go through one `hit(&format!("after:{}", state))`.
    assert!(
        files
            .iter()
            .any(|(_, t)| t.contains("failpoint::hit(&format!(\"after:{}\", saved.state))")),
        "the after:<state> failpoint moved"
    );
    use keyrot_core::model::RotationState as S;
    for s in [
        S::Pending,
        S::AwaitingSecret,
        S::Issuing,
        S::Issued,
        S::Distributing,
        S::Verifying,
        S::Reloading,
        S::Overlap,
        S::Revoking,
        S::Completed,
        S::Failed,
        S::Aborted,
    ] {
        let name = format!("after:{s}");
        assert!(ALL.contains(&name.as_str()), "{name} is not in ALL");
        found.insert(name);
    }
    let unused: Vec<&&str> = ALL.iter().filter(|n| !found.contains(**n)).collect();
    assert!(
        unused.is_empty(),
        "listed in ALL but hit nowhere: {unused:?}"
    );
}

/// Waits until the case's only rotation is in `state`; its id.
fn wait_rotation(case: &Case<'_>, state: &str) -> String {
    let mut id = None;
    let ok = common::wait_until(Duration::from_secs(40), || {
        id = case
            .rotations()
            .into_iter()
            .find(|r| r["state"] == state)
            .and_then(|r| r["id"].as_str().map(str::to_string));
        id.is_some()
    });
    assert!(ok, "{}", case.fail(&format!("no rotation reached {state}")));
    id.unwrap()
}

/// `keyrot enroll ID --key-id NEW` with the secret on stdin.
fn enroll(case: &Case<'_>, id: &str, new_id: &str, secret: &str) {
    let out = case.d.enroll(&[id, "--key-id", new_id], secret);
    assert!(
        out.status.success(),
        "{}",
        case.fail(&format!("enroll: {}", String::from_utf8_lossy(&out.stderr)))
    );
}

/// An inventory sync that reads which keys are in flight just before a
/// rotation's completion commit, and writes its binding just after it,
/// must leave the slot on the new key: no stale key, no empty slot, no
/// second rotation, no orphan. The completion commit is held open
/// (`before:commit=delay`) while SIGHUP starts the sync: 3 s on redb; on
/// PostgreSQL 1.5 s, within the server's idle-in-transaction limit (the
/// lease's renew deadline, 2 s with the suite's 3 s lease), past which it
/// ends the session, the commit fails and keyrot exits (as designed: a
/// leader stopped inside a write must not hold the write lock).
#[test]
fn inventory_sync_racing_a_completion_keeps_the_new_key() {
    let hold = match common::store::suite_store() {
        common::store::SuiteStore::Redb => 3000,
        common::store::SuiteStore::Postgres => 1500,
    };
    let world = World::new(Kind::Local);
    let mut case = world.case("local: sync races a completion", &[(LOCAL, 1)]);
    case.arm("after:revoke=delay(1500)");
    let _ = case.rotate(0);
    let line = "keyrot: failpoint after:revoke: delay(1500)";
    assert!(
        common::wait_until(Duration::from_secs(30), || case.d.log().contains(line)),
        "{}",
        case.fail("the rotation never revoked")
    );
    // The runner is held 1.5 s after the revoke, then opens its completion
    // commit, which now waits `hold` ms before committing. Once that wait
    // has begun (its failpoint line follows the runner's "old key
    // revoked"), SIGHUP starts the sync inside it.
    case.arm(&format!("before:commit=delay({hold})"));
    let held = format!("keyrot: failpoint before:commit: delay({hold})");
    assert!(
        common::wait_until(Duration::from_secs(30), || {
            let log = case.d.log();
            log.rfind("old key revoked")
                .is_some_and(|at| log[at..].contains(&held))
        }),
        "{}",
        case.fail("the completion commit was never held")
    );
    let synced = |case: &Case<'_>| case.d.log().matches("inventory synced").count();
    let before = synced(&case);
    assert!(case.reload(), "{}", case.fail("the daemon is not running"));
    // The sync reads the slots, lists the keys, then writes its binding
    // once the completion has committed; disarm when it has finished.
    assert!(
        common::wait_until(Duration::from_secs(30), || synced(&case) > before),
        "{}",
        case.fail("the inventory sync after SIGHUP never finished")
    );
    case.disarm();
    case.settle(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    let report = case.check(true).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        report.findings.is_empty(),
        "the sync undid the completion: {:?}",
        report.findings
    );
}

/// A store error reported after the commit that created a rotation (the
/// caller sees the error, the rotation is in the store) must not leave that
/// rotation Pending until the next restart: the daemon drives it at once.
#[test]
fn an_error_after_the_start_commit_still_drives_the_rotation() {
    let world = World::new(Kind::Local);
    let mut case = world.case("local: error after the start commit", &[(LOCAL, 1)]);
    let before = case.rotations().len();
    case.arm("after:commit=error@1");
    // The command fails (the error reached the caller) ...
    assert!(
        case.rotate(0).is_none(),
        "{}",
        case.fail("the rotate command succeeded")
    );
    case.disarm();
    assert_eq!(case.fired(), vec!["after:commit: error".to_string()]);
    // ... yet the rotation it created completes without a restart.
    case.settle_with_one_more_completed(before);
}

/// A store error in the middle of a rotation (here right after the Issued
/// commit) stops its runner; the rotation must be driven again after the
/// first backoff, not left in the middle until the next restart.
#[test]
fn a_store_error_mid_rotation_is_retried_without_a_restart() {
    let world = World::new(Kind::Local);
    let mut case = world.case("local: store error after Issued", &[(LOCAL, 1)]);
    let before = case.rotations().len();
    case.arm("after:issued=error@1");
    assert!(
        case.rotate(0).is_some(),
        "{}",
        case.fail("the rotate command failed")
    );
    assert!(
        common::wait_until(Duration::from_secs(30), || !case.fired().is_empty()),
        "{}",
        case.fail("the failpoint never acted")
    );
    case.disarm();
    assert_eq!(case.fired(), vec!["after:issued: error".to_string()]);
    case.settle_with_one_more_completed(before);
}
