//! Failpoints for the crash and fault suites, compiled only with the cargo
//! feature `failpoints`; without it [`hit`] is an empty inline function and
//! nothing here reads the environment.
//!
//! A failpoint is armed by a spec of `name=action` entries separated by
//! commas or newlines, taken from two places, both read at every hit:
//! - `KEYROT_FAILPOINTS` (the environment, fixed for the process's life);
//! - the file named by `KEYROT_FAILPOINTS_FILE`, if it exists, so that a
//!   test can arm a failpoint in a daemon that is already running (write
//!   the file) and disarm it (remove it).
//!
//! `action` is `abort` (the process dies at once, like `kill -9`: no
//! destructor, no flush, no graceful shutdown), `error` (the call fails
//! with a transient error, as a peer that is down would) or `delay(MS)`
//! (the calling thread sleeps MS milliseconds, then goes on). An action may
//! end in `@N`: it then acts only at the N-th hit of that name counted
//! from the moment the name was armed (earlier and later hits pass), e.g.
//! `before:commit=abort@3`. Each hit that acts writes
//! `keyrot: failpoint NAME: ACTION` to stderr, which the suites read.
//!
//! Every name compiled into keyrot is in [`ALL`]; a test checks that each
//! `hit("...")` in the sources is listed there, so the crash suite can
//! iterate them. Naming: `before:X` / `after:X` around an external call X;
//! `after:<state>` just after the commit that enters a rotation state;
//! `before:commit` / `after:commit` around every store commit.

use crate::error::CallError;

/// Every failpoint name, in the order a rotation meets them.
pub const ALL: &[&str] = &[
    // Every store commit (rotation steps, outbox, inventory, local
    // provider registry), inside `Store::write`.
    "before:commit",
    "after:commit",
    // Inventory sync: the provider's key list (start, reload, cron).
    "before:list",
    "after:list",
    // A rotation is created (`keyrot rotate`, the control API, the
    // scheduler); the commit of Pending.
    "after:pending",
    // Assisted rotation: people were asked to create the key.
    "after:awaiting-secret",
    "after:issuing",
    // Resuming Issuing at a provider that tags keys: look for a key the
    // interrupted attempt created, then revoke it.
    "before:find-tagged",
    "after:find-tagged",
    "before:revoke-orphan",
    "after:revoke-orphan",
    // The provider creates the new key (its one-time secret comes back).
    "before:issue",
    "after:issue",
    "after:issued",
    "after:distributing",
    // One sink write (a commit records each sink's success).
    "before:sink-put",
    "after:sink-put",
    "after:verifying",
    // The provider accepts the new key.
    "before:verify",
    "after:verify",
    // One sink read back and compared by hash.
    "before:sink-read",
    "after:sink-read",
    // A sink that stages a version makes it current.
    "before:sink-finish",
    "after:sink-finish",
    // Providers configured to set the old key inactive for the overlap.
    "before:deactivate",
    "after:deactivate",
    // Reload hooks: entering Reloading, one hook run (each result is a
    // commit of its own, `after:reloading` again).
    "after:reloading",
    "before:hook",
    "after:hook",
    "after:overlap",
    // The old key's last use, asked of a provider that reports it (at the
    // start of the overlap, and at its end under `revoke_when = "unused"`).
    "before:last-used",
    "after:last-used",
    "after:revoking",
    // The old key is revoked.
    "before:revoke",
    "after:revoke",
    "after:completed",
    "after:failed",
    // `keyrot rotation abort` (the new key revoked, then the commit).
    "after:aborted",
    // One outbox message handed to the mail transport.
    "before:mail-send",
    "after:mail-send",
    // One outbox message posted to a webhook.
    "before:webhook-send",
    "after:webhook-send",
];

/// The two failpoints around one external call: `before:NAME`, where the
/// call has not been made, and `after:NAME`, where it has and its answer is
/// not yet recorded. Both names are written as string literals at the call
/// site, so they stay greppable (the crash suite checks each is in [`ALL`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Around {
    /// Hit before the call.
    pub before: &'static str,
    /// Hit after the call returned successfully.
    pub after: &'static str,
}

/// The failpoints around one external call.
pub const fn around(before: &'static str, after: &'static str) -> Around {
    Around { before, after }
}

/// What an armed failpoint does.
#[cfg(any(feature = "failpoints", test))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    /// Die at once.
    Abort,
    /// Fail the call (transient).
    Error,
    /// Sleep this many milliseconds.
    Delay(u64),
    /// In-process crash (the testkit): from here on every failpoint
    /// fails, so nothing more reaches the store or a guarded peer, until
    /// [`revive`].
    Crash,
}

/// One `name=action[@N]` entry.
#[cfg(any(feature = "failpoints", test))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry<'a> {
    /// Failpoint name.
    name: &'a str,
    /// What it does.
    action: Action,
    /// Only at this hit (1-based), if given.
    nth: Option<u64>,
}

/// The entries of `spec`; malformed ones are skipped.
#[cfg(any(feature = "failpoints", test))]
fn parse(spec: &str) -> Vec<Entry<'_>> {
    spec.split([',', '\n'])
        .filter_map(|pair| {
            let (name, action) = pair.trim().split_once('=')?;
            let (action, nth) = match action.split_once('@') {
                Some((a, n)) => (a, Some(n.trim().parse::<u64>().ok()?)),
                None => (action, None),
            };
            let action = match action.trim() {
                "abort" => Action::Abort,
                "error" => Action::Error,
                "crash" => Action::Crash,
                other => Action::Delay(
                    other
                        .strip_prefix("delay(")
                        .and_then(|r| r.strip_suffix(')'))
                        .and_then(|m| m.parse::<u64>().ok())?,
                ),
            };
            Some(Entry {
                name: name.trim(),
                action,
                nth,
            })
        })
        .collect()
}

/// What a test in this process armed instead of the environment
/// ([`arm_in_process`]), whether an in-process crash happened, and the
/// names hit while tracing.
#[cfg(feature = "failpoints")]
#[derive(Default)]
struct InProcess {
    /// The spec in force instead of the environment's.
    spec: Option<String>,
    /// An armed `crash` fired: every hit fails until [`revive`].
    dead: bool,
    /// Every name hit, in order, while tracing.
    trace: Option<Vec<String>>,
}

#[cfg(feature = "failpoints")]
static IN_PROCESS: std::sync::Mutex<Option<InProcess>> = std::sync::Mutex::new(None);

#[cfg(feature = "failpoints")]
fn in_process<T>(f: impl FnOnce(&mut InProcess) -> T) -> T {
    let mut g = match IN_PROCESS.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    f(g.get_or_insert_with(InProcess::default))
}

/// Arms `spec` (the `KEYROT_FAILPOINTS` syntax, plus the `crash` action)
/// for this process, in place of the environment, and starts counting
/// hits afresh. For in-process tests that run one scenario at a time.
#[cfg(feature = "failpoints")]
pub fn arm_in_process(spec: &str) {
    in_process(|p| p.spec = Some(spec.to_string()));
    let mut counts = match COUNTS.lock() {
        Ok(c) => c,
        Err(poisoned) => poisoned.into_inner(),
    };
    counts.clear();
}

/// Records every failpoint name hit from now on ([`take_trace`] returns them).
#[cfg(feature = "failpoints")]
pub fn trace_in_process() {
    in_process(|p| p.trace = Some(Vec::new()));
}

/// The names hit since [`trace_in_process`], in order; stops tracing.
#[cfg(feature = "failpoints")]
pub fn take_trace() -> Vec<String> {
    in_process(|p| p.trace.take().unwrap_or_default())
}

/// Whether an in-process `crash` has fired (and [`revive`] has not run).
#[cfg(feature = "failpoints")]
pub fn crashed() -> bool {
    in_process(|p| p.dead)
}

/// Ends an in-process crash and disarms what [`arm_in_process`] armed:
/// the "process" starts again.
#[cfg(feature = "failpoints")]
pub fn revive() {
    in_process(|p| {
        p.dead = false;
        p.spec = Some(String::new());
    });
}

/// The armed spec: an in-process one, else the environment's, then the file's.
#[cfg(feature = "failpoints")]
fn armed() -> String {
    if let Some(spec) = in_process(|p| p.spec.clone()) {
        return spec;
    }
    let mut spec = std::env::var("KEYROT_FAILPOINTS").unwrap_or_default();
    if let Some(file) = std::env::var_os("KEYROT_FAILPOINTS_FILE")
        && let Ok(text) = std::fs::read_to_string(file)
    {
        spec.push('\n');
        spec.push_str(&text);
    }
    spec
}

/// Hits of each armed name since it was armed (a name disarmed starts
/// again from zero when armed again).
#[cfg(feature = "failpoints")]
static COUNTS: std::sync::Mutex<std::collections::BTreeMap<String, u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Counts a hit of `name` while `armed`; returns its number (1-based).
#[cfg(feature = "failpoints")]
fn count(name: &str, armed: bool) -> u64 {
    let mut counts = match COUNTS.lock() {
        Ok(c) => c,
        Err(poisoned) => poisoned.into_inner(),
    };
    if !armed {
        counts.remove(name);
        return 0;
    }
    let n = counts.entry(name.to_string()).or_insert(0);
    *n += 1;
    *n
}

/// Acts on failpoint `name` if it is armed.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) -> Result<(), CallError> {
    let dead = in_process(|p| {
        if let Some(t) = &mut p.trace {
            t.push(name.to_string());
        }
        p.dead
    });
    if dead {
        return Err(CallError::transient(format!(
            "failpoint {name}: keyrot crashed (in process)"
        )));
    }
    let spec = armed();
    let entries: Vec<Entry<'_>> = parse(&spec)
        .into_iter()
        .filter(|e| e.name == name)
        .collect();
    let nth = count(name, !entries.is_empty());
    for e in entries {
        if e.nth.is_some_and(|n| n != nth) {
            continue;
        }
        match e.action {
            Action::Abort => {
                eprintln!("keyrot: failpoint {name}: abort");
                std::process::abort();
            }
            Action::Error => {
                eprintln!("keyrot: failpoint {name}: error");
                return Err(CallError::transient(format!("failpoint {name}")));
            }
            Action::Crash => {
                eprintln!("keyrot: failpoint {name}: crash (in process)");
                in_process(|p| p.dead = true);
                return Err(CallError::transient(format!("failpoint {name}: crash")));
            }
            Action::Delay(ms) => {
                eprintln!("keyrot: failpoint {name}: delay({ms})");
                // The action is to hold the calling thread (a slow disk, a
                // slow peer), wherever it runs.
                #[allow(clippy::disallowed_methods)]
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
        }
    }
    Ok(())
}

/// Acts on failpoint `name` if it is armed (compiled out).
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) -> Result<(), CallError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_actions_counts_and_skips_garbage() {
        let spec =
            "after:issue=abort, before:commit=error@3\nbefore:verify=delay(250),x=what,y,z=abort@q";
        assert_eq!(
            parse(spec),
            vec![
                Entry {
                    name: "after:issue",
                    action: Action::Abort,
                    nth: None
                },
                Entry {
                    name: "before:commit",
                    action: Action::Error,
                    nth: Some(3)
                },
                Entry {
                    name: "before:verify",
                    action: Action::Delay(250),
                    nth: None
                },
            ]
        );
    }

    #[test]
    fn names_are_unique_and_well_formed() {
        let mut seen = std::collections::BTreeSet::new();
        for n in ALL {
            assert!(seen.insert(*n), "{n} listed twice");
            assert!(
                n.starts_with("before:") || n.starts_with("after:"),
                "{n}: names are before:X or after:X"
            );
        }
    }
}
