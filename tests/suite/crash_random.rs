//! The randomized crash run (cargo feature `failpoints`): four keys (two
//! at `keyrot sandbox`, two at the local provider; OpenBao KV and a file as
//! sinks; aiosmtpd for the mail) rotate in parallel while random
//! failpoints abort, fail or delay the real binary and a random `kill -9`
//! lands in the middle; after each iteration keyrot restarts without
//! failpoints, every rotation must settle and the invariants I1-I6
//! (tests/common/crash.rs) must hold; Failed rotations are then resumed as
//! an operator would, and the invariants checked again strictly.
//!
//! Seeds. Every run, CI's included, draws its plans from the fixed seeds in
//! [`FIXED_SEEDS`], so a run tests the same plans as the last one; nothing
//! is drawn from the clock unless asked. `KEYROT_CRASH_SEED` adds seeds
//! after them: a comma-separated list of numbers, or `random` for one
//! drawn from the clock. `KEYROT_CRASH_FIXED_SEEDS=0` leaves the fixed
//! seeds out (to replay one seed alone). `KEYROT_CRASH_ITERATIONS`
//! (default 10) is the number of iterations per seed; each seed starts with
//! a fresh daemon directory. Every seed used is printed (with where it came
//! from: fixed, given or drawn) at the start, as its run begins, and in
//! every failure, with the command that replays it: the same seed draws
//! the same failpoints, actions and kill times (process timing still
//! varies). E.g.
//!
//! ```text
//! # replay seed 2770 alone
//! KEYROT_CRASH_FIXED_SEEDS=0 KEYROT_CRASH_SEED=2770 bash scripts/test.sh --test suite crash_random:: -- --nocapture
//! # a longer run on a new seed, after the fixed ones
//! KEYROT_CRASH_SEED=random KEYROT_CRASH_ITERATIONS=500 bash scripts/test.sh --test suite crash_random:: -- --nocapture
//! ```

use crate::common;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use common::crash::checks::Report;
use common::crash::world::{Kind, World};
use common::crash::{Case, LOCAL, SANDBOX};
use keyrot_core::failpoint::ALL;

/// Iterations that share one daemon directory (then a fresh one).
const PER_CASE: u32 = 10;

/// The seeds every run uses (unless `KEYROT_CRASH_FIXED_SEEDS=0`). Chosen
/// among 1-5000 for what their first 10 iterations drew when
/// `failpoint::ALL` had 37 names: together 30 of them (13 to abort), each
/// action at least 3 times per seed, 11 `kill -9`, 4 armings before the
/// start and 5 SIGHUPs. Drawn is not acted: a failpoint acts only if the
/// run reaches it. A name added to `ALL` changes what a seed draws.
const FIXED_SEEDS: [u64; 2] = [1702, 2770];

/// Iterations per seed unless `KEYROT_CRASH_ITERATIONS` says otherwise.
const ITERATIONS: u32 = 10;

/// How long an armed iteration may run before it is killed.
const ARMED_FOR: Duration = Duration::from_secs(8);

/// SplitMix64: small, seedable, the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `pct` percent.
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

/// What one iteration does, drawn from the seed.
#[derive(Debug)]
struct Plan {
    /// The failpoint spec armed.
    spec: String,
    /// Armed before the daemon starts (start-up paths: resume, sync).
    before_start: bool,
    /// Slots asked to rotate (indexes).
    rotate: Vec<usize>,
    /// SIGHUP (reload + inventory sync) after the rotate requests.
    reload: bool,
    /// `kill -9` this long after the trigger, if the daemon still runs.
    kill_after: Option<Duration>,
}

fn draw(rng: &mut Rng, slots: usize) -> Plan {
    let mut entries = Vec::new();
    for _ in 0..=rng.below(2) {
        let name = ALL[rng.below(ALL.len() as u64) as usize];
        let action = match rng.below(100) {
            0..45 => "abort".to_string(),
            45..80 => "error".to_string(),
            _ => format!("delay({})", 50 + rng.below(1500)),
        };
        let nth = if rng.chance(40) {
            format!("@{}", 1 + rng.below(6))
        } else {
            String::new()
        };
        entries.push(format!("{name}={action}{nth}"));
    }
    let mut rotate: Vec<usize> = (0..slots).filter(|_| rng.chance(60)).collect();
    if rotate.is_empty() {
        rotate.push(rng.below(slots as u64) as usize);
    }
    Plan {
        spec: entries.join(","),
        before_start: rng.chance(15),
        rotate,
        reload: rng.chance(20),
        kill_after: rng
            .chance(50)
            .then(|| Duration::from_millis(rng.below(2500))),
    }
}

/// Figures of the run.
#[derive(Default)]
struct Figures {
    /// Invariant checks.
    report: Report,
    /// Failpoint actions taken, by action (`abort`, `error`, `delay`).
    actions: BTreeMap<String, usize>,
    /// Distinct failpoint names that acted.
    names: BTreeMap<String, usize>,
    /// `kill -9` sent at a random time.
    kills: usize,
    /// Rotations asked for.
    requested: usize,
    /// Iterations where a rotation did not settle while the daemon ran on
    /// after its failpoints were disarmed (it needed the restart).
    needed_restart: Vec<String>,
}

/// One iteration: arm, trigger, crash or kill, restart clean, settle,
/// check (relaxed, then strict after resuming Failed rotations).
fn iteration(case: &mut Case<'_>, rng: &mut Rng, figures: &mut Figures) {
    let plan = draw(rng, case.slots.len());
    let at = case.label.clone();
    case.label = format!("{at} plan {plan:?}");
    if plan.before_start {
        case.arm(&plan.spec);
        case.spawn();
    } else {
        case.start();
        case.arm(&plan.spec);
    }
    let t0 = Instant::now();
    for &i in &plan.rotate {
        if case.rotate(i).is_some() {
            figures.requested += 1;
        }
    }
    if plan.reload {
        case.reload();
    }
    // Run armed until the daemon dies, the kill time comes, or (at most
    // ARMED_FOR) nothing is left in flight.
    let mut killed = false;
    loop {
        if !case.running() {
            break;
        }
        if plan.kill_after.is_some_and(|k| t0.elapsed() >= k) {
            case.kill9();
            figures.kills += 1;
            killed = true;
            break;
        }
        if t0.elapsed() >= ARMED_FOR || (t0.elapsed() > Duration::from_secs(1) && quiet(case)) {
            break;
        }
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(50));
    }
    for line in case.fired() {
        if let Some((name, action)) = line.split_once(": ") {
            let action = action.split('(').next().unwrap_or(action).to_string();
            *figures.actions.entry(action).or_default() += 1;
            *figures.names.entry(name.to_string()).or_default() += 1;
        }
    }
    case.disarm();
    if case.running() && !killed {
        // Disarmed, still running: everything should finish without a
        // restart. What does not is noted (the restart below finishes it).
        if case.settle(Duration::from_secs(15)).is_err() {
            figures.needed_restart.push(format!(
                "{at}: {}: {:?}",
                plan.spec,
                case.rotations()
                    .iter()
                    .filter(|r| !matches!(r["state"].as_str(), Some("Completed" | "Failed")))
                    .map(|r| format!("{} in {}", r["id"], r["state"]))
                    .collect::<Vec<_>>()
            ));
        }
        case.kill9();
    }
    case.start();
    case.settle(Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("{e}"));
    let failed = case.rotations().iter().any(|r| r["state"] == "Failed");
    figures
        .report
        .add(&case.check(!failed).unwrap_or_else(|e| panic!("{e}")));
    if failed {
        case.start();
        figures.report.add(&case.recover());
        figures
            .report
            .add(&case.check(true).unwrap_or_else(|e| panic!("{e}")));
    }
}

/// Nothing in flight (without the outbox: messages wait on backoff).
fn quiet(case: &Case<'_>) -> bool {
    case.try_rotations().is_some_and(|rs| {
        rs.iter()
            .all(|r| matches!(r["state"].as_str(), Some("Completed" | "Failed")))
    })
}

/// Where a seed came from, as printed.
#[derive(Clone, Copy)]
enum Origin {
    /// [`FIXED_SEEDS`].
    Fixed,
    /// A number in `KEYROT_CRASH_SEED`.
    Given,
    /// `random` in `KEYROT_CRASH_SEED`: from the clock.
    Drawn,
}

impl Origin {
    fn word(self) -> &'static str {
        match self {
            Origin::Fixed => "fixed",
            Origin::Given => "given",
            Origin::Drawn => "drawn",
        }
    }
}

/// The seeds of this run, in order: the fixed ones (unless
/// `KEYROT_CRASH_FIXED_SEEDS=0`), then those `KEYROT_CRASH_SEED` adds.
// `random` draws a seed from the wall clock (and prints it).
#[allow(clippy::disallowed_methods)]
fn seeds() -> Vec<(u64, Origin)> {
    let mut seeds = Vec::new();
    if std::env::var("KEYROT_CRASH_FIXED_SEEDS").as_deref() != Ok("0") {
        seeds.extend(FIXED_SEEDS.iter().map(|&s| (s, Origin::Fixed)));
    }
    let extra = std::env::var("KEYROT_CRASH_SEED").unwrap_or_default();
    for word in extra.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        if word == "random" {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1);
            seeds.push((nanos, Origin::Drawn));
        } else {
            let seed = word.parse().unwrap_or_else(|_| {
                panic!("KEYROT_CRASH_SEED: {word:?} is neither a number nor `random`")
            });
            seeds.push((seed, Origin::Given));
        }
    }
    assert!(
        !seeds.is_empty(),
        "no seed: KEYROT_CRASH_FIXED_SEEDS=0 needs KEYROT_CRASH_SEED"
    );
    seeds
}

/// The command that replays `seed` alone.
fn replay(seed: u64, iterations: u32) -> String {
    format!(
        "KEYROT_CRASH_FIXED_SEEDS=0 KEYROT_CRASH_SEED={seed} KEYROT_CRASH_ITERATIONS={iterations} bash scripts/test.sh --test suite crash_random:: -- --nocapture"
    )
}

#[test]
fn random_failpoints_and_kills_while_keys_rotate_in_parallel() {
    let iterations: u32 = match std::env::var("KEYROT_CRASH_ITERATIONS") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("KEYROT_CRASH_ITERATIONS: {v:?} is not a number")),
        Err(_) => ITERATIONS,
    };
    let seeds = seeds();
    let list: Vec<String> = seeds
        .iter()
        .map(|(seed, origin)| format!("{seed} ({})", origin.word()))
        .collect();
    let line = format!(
        "crash_random: seeds {}; {iterations} iterations each",
        list.join(", ")
    );
    println!("{line}");
    eprintln!("{line}");
    let start = Instant::now();
    let world = World::new(Kind::Mixed);
    let mut figures = Figures::default();
    for &(seed, origin) in &seeds {
        let replay = replay(seed, iterations);
        let line = format!(
            "crash_random: seed {seed} ({}), {iterations} iterations (replay: {replay})",
            origin.word()
        );
        println!("{line}");
        eprintln!("{line}");
        let begun = Instant::now();
        let mut rng = Rng(seed);
        let mut case: Option<Case<'_>> = None;
        for it in 0..iterations {
            let label = format!("seed {seed} iteration {it}");
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                if it % PER_CASE == 0 {
                    // A fresh daemon directory (and keys) for each seed and
                    // every PER_CASE iterations keeps each check's history
                    // short.
                    case = None;
                    let c = world.case(&label, &[(SANDBOX, 2), (LOCAL, 2)]);
                    case = Some(c);
                    if let Some(c) = case.as_mut() {
                        c.stop();
                    }
                }
                let c = case.as_mut().unwrap();
                c.label = label.clone();
                iteration(c, &mut rng, &mut figures);
            }));
            if let Err(e) = outcome {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!(
                    "crash_random failed at seed {seed}, iteration {it} (replay: {replay}):\n{msg}"
                );
            }
            if (it + 1) % 10 == 0 {
                eprintln!(
                    "crash_random: seed {seed}: {} iterations in {:.0}s",
                    it + 1,
                    begun.elapsed().as_secs_f64()
                );
            }
        }
    }
    let r = &figures.report;
    let seeds: Vec<u64> = seeds.iter().map(|(s, _)| *s).collect();
    eprintln!(
        "crash_random: seeds {seeds:?}: {} iterations in {:.1}s; {} rotations requested; failpoint actions {:?} at {} distinct failpoints; {} kill -9; {} rotations checked ({} completed, {} resumed after Failed), {} provider keys, {} sink values, {} messages ({} delivered twice under the same Message-ID); invariant violations: 0",
        iterations as usize * seeds.len(),
        start.elapsed().as_secs_f64(),
        figures.requested,
        figures.actions,
        figures.names.len(),
        figures.kills,
        r.rotations,
        r.completed,
        r.resumed,
        r.provider_keys,
        r.sink_values,
        r.messages,
        r.duplicates,
    );
    eprintln!("crash_random: failpoints that acted: {:?}", figures.names);
    for f in &r.findings {
        eprintln!("crash_random: finding: {f}");
    }
    if !figures.needed_restart.is_empty() {
        eprintln!(
            "crash_random: {} iteration(s) left a rotation unfinished until the restart:\n  {}",
            figures.needed_restart.len(),
            figures.needed_restart.join("\n  ")
        );
    }
    assert!(
        figures.report.rotations > 0,
        "seeds {seeds:?}: no rotation was checked"
    );
}
