//! The `systemd` reload hook's client (`keyrot_peers::systemd`) against the
//! systemd double on a private D-Bus bus (`keyrot_testkit::systemd_double`):
//! the methods it calls, the job it waits for, the errors it makes of
//! systemd's answers, and signals that reach a real process.
//!
//! Every wait is bounded by a timeout given here; a process's reaction is
//! awaited by polling the file it writes, never by a fixed sleep.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keyrot_peers::systemd::{ReloadMode, Systemd};
use keyrot_testkit::dbus_daemon::DbusDaemon;
use keyrot_testkit::systemd_double::{Call, SystemdDouble, Unit};

/// The bound on every call and job here.
const WITHIN: Duration = Duration::from_secs(10);
const APP: &str = "app.service";

async fn double() -> SystemdDouble {
    SystemdDouble::start()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn client(double: &SystemdDouble) -> Systemd {
    Systemd::connect(Some(double.address()), WITHIN)
        .await
        .unwrap_or_else(|e| panic!("{}", e.message))
}

fn call(method: &str, unit: &str, arg: &str) -> Call {
    Call {
        method: method.to_owned(),
        unit: unit.to_owned(),
        arg: arg.to_owned(),
    }
}

fn subscribe() -> Call {
    call("Subscribe", "", "")
}

#[tokio::test]
async fn reload_waits_for_the_jobs_end() {
    let double = double().await;
    double.add_unit(APP, Unit::active());
    double.set_job_delay(Duration::from_millis(300));
    let systemd = client(&double).await;
    let started = Instant::now();
    systemd
        .reload(APP, ReloadMode::Reload, WITHIN)
        .await
        .unwrap();
    // The reply came at once; the JobRemoved 300 ms later.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(double.unit(APP).unwrap().reloads, 1);
    assert_eq!(
        double.calls(),
        [subscribe(), call("ReloadUnit", APP, "replace")]
    );
    assert_eq!(double.subscribers().len(), 1);
}

#[tokio::test]
async fn concurrent_reloads_each_wait_for_their_own_job() {
    let double = double().await;
    double.add_unit(APP, Unit::active());
    double.add_unit("bad.service", Unit::active().reload_fails());
    double.set_job_delay(Duration::from_millis(100));
    let systemd = client(&double).await;
    let (good, bad) = tokio::join!(
        systemd.reload(APP, ReloadMode::Reload, WITHIN),
        systemd.reload("bad.service", ReloadMode::Reload, WITHIN),
    );
    good.unwrap();
    let e = bad.unwrap_err();
    assert!(
        e.message
            .contains("unit bad.service: the job ended with result \"failed\""),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn a_job_that_does_not_end_in_time_is_transient() {
    let double = double().await;
    double.add_unit(APP, Unit::active());
    double.set_job_delay(Duration::from_secs(3600));
    let systemd = client(&double).await;
    // Long enough for the call's answer even on a loaded machine: the
    // timeout must be the job's.
    let e = systemd
        .reload(APP, ReloadMode::Reload, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(e.transient, "{}", e.message);
    assert_eq!(
        e.message,
        "systemd: reload of unit app.service: the job did not end within 2s"
    );
}

#[tokio::test]
async fn a_call_systemd_does_not_answer_is_transient() {
    let double = double().await;
    double.add_unit(APP, Unit::active());
    let systemd = client(&double).await;
    double.mute(true);
    let within = Duration::from_millis(300);
    let e = systemd
        .reload(APP, ReloadMode::Reload, within)
        .await
        .unwrap_err();
    assert!(e.transient, "{}", e.message);
    assert_eq!(
        e.message,
        "systemd: reload of unit app.service: systemd did not answer the call within 300ms"
    );
    let e = systemd
        .kill_main(APP, libc::SIGHUP, within)
        .await
        .unwrap_err();
    assert!(e.transient, "{}", e.message);
    assert!(
        e.message.ends_with("no answer within 300ms"),
        "{}",
        e.message
    );
    let e = Systemd::connect(Some(double.address()), within)
        .await
        .unwrap_err();
    assert!(
        e.transient && e.message.contains("no answer within 300ms"),
        "{}",
        e.message
    );
    assert_eq!(
        double.calls(),
        [
            subscribe(),
            call("ReloadUnit", APP, "replace"),
            call("KillUnit", APP, &format!("main {}", libc::SIGHUP)),
            subscribe(),
        ]
    );
}

#[tokio::test]
async fn a_failed_job_names_the_unit_and_the_result() {
    let double = double().await;
    double.add_unit(APP, Unit::active().reload_fails());
    let systemd = client(&double).await;
    let e = systemd
        .reload(APP, ReloadMode::Reload, WITHIN)
        .await
        .unwrap_err();
    assert!(!e.transient, "{}", e.message);
    assert!(
        e.message.starts_with(
            "systemd: reload of unit app.service: the job ended with result \"failed\""
        ),
        "{}",
        e.message
    );
    let e = systemd
        .reload(APP, ReloadMode::TryReloadOrRestart, WITHIN)
        .await
        .unwrap_err();
    assert!(
        e.message.starts_with(
            "systemd: try-reload-or-restart of unit app.service: the job ended with result \"failed\""
        ),
        "{}",
        e.message
    );
    assert_eq!(double.unit(APP).unwrap().reloads, 0);
}

#[tokio::test]
async fn reloading_an_inactive_unit_is_an_invalid_job() {
    let double = double().await;
    double.add_unit(APP, Unit::inactive());
    let systemd = client(&double).await;
    let e = systemd
        .reload(APP, ReloadMode::Reload, WITHIN)
        .await
        .unwrap_err();
    assert!(!e.transient, "{}", e.message);
    assert!(e.message.contains("result \"invalid\""), "{}", e.message);
}

#[tokio::test]
async fn an_unknown_unit_is_permanent() {
    let double = double().await;
    let systemd = client(&double).await;
    for mode in [ReloadMode::Reload, ReloadMode::TryReloadOrRestart] {
        let e = systemd
            .reload("gone.service", mode, WITHIN)
            .await
            .unwrap_err();
        assert!(!e.transient, "{}", e.message);
        assert!(
            e.message.contains("unit gone.service: no such unit (org.freedesktop.systemd1.NoSuchUnit: Unit gone.service not found.)"),
            "{}",
            e.message
        );
    }
    let e = systemd
        .kill_main("gone.service", libc::SIGHUP, WITHIN)
        .await
        .unwrap_err();
    assert!(
        !e.transient && e.message.contains("NoSuchUnit"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn access_denied_is_permanent_and_points_at_the_polkit_rule() {
    let double = double().await;
    double.add_unit(APP, Unit::active());
    double.deny(true);
    let systemd = client(&double).await;
    let cases = [
        (
            systemd.reload(APP, ReloadMode::Reload, WITHIN).await,
            "reload",
        ),
        (
            systemd
                .reload(APP, ReloadMode::TryReloadOrRestart, WITHIN)
                .await,
            "reload-or-try-restart",
        ),
        (systemd.kill_main(APP, libc::SIGHUP, WITHIN).await, "kill"),
    ];
    for (outcome, verb) in cases {
        let e = outcome.unwrap_err();
        assert!(!e.transient, "{}", e.message);
        for part in [
            "refused (org.freedesktop.DBus.Error.AccessDenied: Access denied)",
            &format!(
                "polkit action org.freedesktop.systemd1.manage-units for unit app.service with verb {verb}"
            ),
            "/etc/polkit-1/rules.d/",
            "docs/systemd-hooks.md",
        ] {
            assert!(e.message.contains(part), "{part}: {}", e.message);
        }
    }
    assert_eq!(double.unit(APP).unwrap().reloads, 0);
}

#[tokio::test]
async fn try_reload_or_restart_leaves_an_inactive_unit_alone() {
    let double = double().await;
    double.add_unit(APP, Unit::inactive());
    let systemd = client(&double).await;
    systemd
        .reload(APP, ReloadMode::TryReloadOrRestart, WITHIN)
        .await
        .unwrap();
    let unit = double.unit(APP).unwrap();
    assert_eq!((unit.active, unit.reloads, unit.restarts), (false, 0, 0));
    assert_eq!(
        double.calls(),
        [subscribe(), call("ReloadOrTryRestartUnit", APP, "replace")]
    );
}

#[tokio::test]
async fn a_unit_without_exec_reload_cannot_reload_but_can_be_restarted() {
    let double = double().await;
    double.add_unit(APP, Unit::active().cannot_reload());
    let systemd = client(&double).await;
    let e = systemd
        .reload(APP, ReloadMode::Reload, WITHIN)
        .await
        .unwrap_err();
    assert!(!e.transient, "{}", e.message);
    assert!(
        e.message
            .contains("org.freedesktop.systemd1.JobTypeNotApplicable")
            && e.message.contains("use try-reload-or-restart"),
        "{}",
        e.message
    );
    systemd
        .reload(APP, ReloadMode::TryReloadOrRestart, WITHIN)
        .await
        .unwrap();
    assert_eq!(double.unit(APP).unwrap().restarts, 1);
}

#[tokio::test]
async fn bad_unit_names_are_refused_before_any_call() {
    let double = double().await;
    let systemd = client(&double).await;
    for bad in [
        "app",
        "../app.service",
        "app.service\nx",
        "a b.service",
        "t@.service",
    ] {
        let e = systemd
            .reload(bad, ReloadMode::Reload, WITHIN)
            .await
            .unwrap_err();
        assert!(
            !e.transient && e.message.starts_with("systemd unit name"),
            "{}",
            e.message
        );
        let e = systemd
            .kill_main(bad, libc::SIGHUP, WITHIN)
            .await
            .unwrap_err();
        assert!(
            !e.transient && e.message.starts_with("systemd unit name"),
            "{}",
            e.message
        );
    }
    assert_eq!(double.calls(), [subscribe()]);
}

#[tokio::test]
async fn signal_numbers_out_of_range_are_refused_before_any_call() {
    let double = double().await;
    let systemd = client(&double).await;
    for bad in [0, -1, 65] {
        let e = systemd.kill_main(APP, bad, WITHIN).await.unwrap_err();
        assert!(!e.transient, "{}", e.message);
        assert!(
            e.message
                .contains(&format!("signal {bad} is not a signal number")),
            "{}",
            e.message
        );
    }
    assert_eq!(double.calls(), [subscribe()]);
}

#[tokio::test]
async fn kill_main_delivers_the_signal_to_the_main_process() {
    let consumer = Consumer::start().await;
    let double = double().await;
    double.add_unit(APP, Unit::active().main_pid(consumer.pid()));
    let systemd = client(&double).await;
    systemd.kill_main(APP, libc::SIGHUP, WITHIN).await.unwrap();
    consumer.wait_for_hups(1, WITHIN).await;
    systemd.kill_main(APP, libc::SIGHUP, WITHIN).await.unwrap();
    consumer.wait_for_hups(2, WITHIN).await;
    assert_eq!(
        double.calls(),
        [
            subscribe(),
            call("KillUnit", APP, &format!("main {}", libc::SIGHUP)),
            call("KillUnit", APP, &format!("main {}", libc::SIGHUP)),
        ]
    );
}

#[tokio::test]
async fn a_reload_reaches_the_main_process_through_exec_reload() {
    let consumer = Consumer::start().await;
    let double = double().await;
    double.add_unit(
        APP,
        Unit::active()
            .main_pid(consumer.pid())
            .exec_reload_signal(libc::SIGHUP),
    );
    let systemd = client(&double).await;
    systemd
        .reload(APP, ReloadMode::TryReloadOrRestart, WITHIN)
        .await
        .unwrap();
    consumer.wait_for_hups(1, WITHIN).await;
}

#[tokio::test]
async fn kill_main_of_a_unit_without_a_main_process_is_permanent() {
    let double = double().await;
    double.add_unit(APP, Unit::active());
    let systemd = client(&double).await;
    let e = systemd
        .kill_main(APP, libc::SIGHUP, WITHIN)
        .await
        .unwrap_err();
    assert!(!e.transient, "{}", e.message);
    assert!(e.message.contains("has no main process"), "{}", e.message);
}

#[tokio::test]
async fn a_stopped_bus_is_transient_and_nothing_is_left_running() {
    let double = double().await;
    let address = double.address().to_owned();
    let systemd = client(&double).await;
    double.add_unit(APP, Unit::active());
    drop(double);
    // The daemon is gone (killed and reaped by the drop): a new connection
    // is refused, a call on the old one fails; both transient.
    let e = Systemd::connect(Some(&address), WITHIN).await.unwrap_err();
    assert!(e.transient, "{}", e.message);
    let e = systemd
        .reload(APP, ReloadMode::Reload, WITHIN)
        .await
        .unwrap_err();
    assert!(e.transient, "{}", e.message);
}

#[test]
fn the_bus_process_ends_with_its_guard() {
    let bus = DbusDaemon::start().unwrap_or_else(|e| panic!("{e}"));
    let pid = i32::try_from(bus.pid()).unwrap();
    assert!(bus.address().starts_with("unix:path="), "{}", bus.address());
    drop(bus);
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    assert!(!alive, "dbus-daemon {pid} still runs");
}

#[test]
fn a_missing_dbus_daemon_fails_with_the_install_command() {
    let e = DbusDaemon::start_program(Path::new("/nonexistent/dbus-daemon")).unwrap_err();
    assert!(e.contains("run `bash scripts/peers.sh`"), "{e}");
}

/// A consumer: a shell that appends a line to `hups` on each SIGHUP; it
/// and its children are killed when this drops.
struct Consumer {
    child: Child,
    dir: tempfile::TempDir,
}

impl Consumer {
    const SCRIPT: &str = r#"trap 'echo hup >>"$1/hups"' HUP
echo ready >"$1/ready.tmp" && mv "$1/ready.tmp" "$1/ready"
while :; do sleep 1 & wait $!; done"#;

    /// Starts it; returns once its trap is set.
    async fn start() -> Consumer {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("sh")
            .args(["-c", Consumer::SCRIPT, "sh"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let consumer = Consumer { child, dir };
        let ready = consumer.dir.path().join("ready");
        poll(WITHIN, "the consumer's trap", || ready.exists()).await;
        consumer
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn hups(&self) -> PathBuf {
        self.dir.path().join("hups")
    }

    /// Waits until it has seen `n` SIGHUPs.
    async fn wait_for_hups(&self, n: usize, within: Duration) {
        let hups = self.hups();
        let count = || {
            std::fs::read_to_string(&hups)
                .map(|s| s.lines().count())
                .unwrap_or(0)
        };
        poll(within, &format!("{n} SIGHUPs"), || count() >= n).await;
        assert_eq!(count(), n);
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let group = i32::try_from(self.child.id()).unwrap_or(0);
        if group > 0 {
            // SAFETY: kill(2) takes plain integers; the group is the shell's own.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
        let _ = self.child.wait();
    }
}

/// Polls `done` every 10 ms until it is true; fails the test after
/// `within`.
async fn poll(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The `systemd` and `signal`-by-unit hook actions, as configured, against
/// the double: each unit reloaded once per run, the mode systemctl's verb
/// names, and a unit that cannot reload is an error that names it.
#[tokio::test]
async fn the_systemd_hook_action_reloads_every_unit_it_names() {
    use keyrot_config::hooks::{HookAction, HookConfig, ReloadMode as Mode, SignalTarget};
    use keyrot_peers::hook::{HookEvent, build};
    let double = double().await;
    double.add_unit(APP, Unit::active());
    double.add_unit("web.service", Unit::active().cannot_reload());
    let cfg = |action| HookConfig {
        name: "apps".into(),
        action,
        debounce: jiff::SignedDuration::ZERO,
        timeout: jiff::SignedDuration::from_secs(10),
    };
    let event = HookEvent {
        event: "keyrot.reload",
        hook: "apps".into(),
        run_id: "r:apps".into(),
        rotation_id: "r".into(),
        key: "p/k".into(),
        key_id: "k2".into(),
        at: jiff::Timestamp::UNIX_EPOCH,
    };
    let both = build(&cfg(HookAction::Systemd {
        units: vec![APP.into(), "web.service".into()],
        mode: Mode::TryReloadOrRestart,
        bus: Some(double.address().to_string()),
    }));
    let said = both.run(&event).await.unwrap();
    assert_eq!(said, "reloaded or restarted app.service, web.service");
    assert_eq!(double.unit(APP).unwrap().reloads, 1);
    assert_eq!(double.unit("web.service").unwrap().restarts, 1);
    let strict = build(&cfg(HookAction::Systemd {
        units: vec!["web.service".into()],
        mode: Mode::Reload,
        bus: Some(double.address().to_string()),
    }));
    let err = strict.run(&event).await.unwrap_err();
    assert!(
        !err.transient
            && err.message.starts_with("hook \"apps\": ")
            && err.message.contains("web.service"),
        "{err:?}"
    );
    let by_unit = build(&cfg(HookAction::Signal {
        signal: libc::SIGHUP,
        signal_name: "HUP".into(),
        target: SignalTarget::Unit {
            unit: APP.into(),
            bus: Some(double.address().to_string()),
        },
    }));
    // No main process in the double's unit: systemd's error, named.
    let err = by_unit.run(&event).await.unwrap_err();
    assert!(err.message.contains(APP), "{err:?}");
    assert!(
        double
            .calls()
            .iter()
            .any(|c| c.method == "KillUnit" && c.unit == APP),
        "{:?}",
        double.calls()
    );
}
