//! A double of systemd's manager, for the `systemd` reload hook: the
//! methods keyrot calls on `org.freedesktop.systemd1.Manager`, served at
//! `/org/freedesktop/systemd1` under the name `org.freedesktop.systemd1`
//! on a private bus ([`DbusDaemon`]), because systemd is not PID 1 where
//! the tests run and the real one must not be touched by them.
//!
//! Implemented, by the strictest reading of systemd (src/core/dbus-manager.c,
//! dbus-unit.c, job.c) and org.freedesktop.systemd1(5):
//! - `Subscribe()`: the caller gets job signals. `JobRemoved` is only sent
//!   once someone has subscribed (systemd sends it on the system bus only
//!   to subscribers).
//! - `ReloadUnit(s name, s mode)`, `ReloadOrTryRestartUnit(s name, s mode)`:
//!   an unknown unit is the error `org.freedesktop.systemd1.NoSuchUnit`;
//!   then, with [`SystemdDouble::deny`], `org.freedesktop.DBus.Error.AccessDenied`
//!   (systemd checks polkit after loading the unit); a mode other than
//!   systemd's job modes is `InvalidArgs`. Otherwise a job
//!   `/org/freedesktop/systemd1/job/N` is queued and its path is the reply;
//!   the job ends after the reply (and after [`SystemdDouble::set_job_delay`]),
//!   with the signal `JobRemoved(u id, o job, s unit, s result)`.
//!   `ReloadUnit` on a unit without `ExecReload=` ([`Unit::cannot_reload`])
//!   is the error `org.freedesktop.systemd1.JobTypeNotApplicable`, as in
//!   systemd; on an inactive unit the job's result is `invalid`; on an
//!   active one it is the unit's reload result ([`Unit::reload_fails`]:
//!   `failed`, else `done`). `ReloadOrTryRestartUnit` on an inactive unit
//!   is a job that does nothing, result `done` (try-restart); on an
//!   active unit that can reload it reloads; on one that cannot it
//!   restarts (result `done`).
//! - `KillUnit(s name, s whom, i signal)`: whom `main` only (others are
//!   `InvalidArgs` here); the signal is really sent to the unit's main
//!   process ([`Unit::main_pid`]); a unit that is inactive or has none is
//!   `org.freedesktop.systemd1.NoSuchProcess`.
//! - A reload that is `done` also sends the unit's reload signal to its
//!   main process when it has one ([`Unit::exec_reload_signal`], as an
//!   `ExecReload=kill -HUP $MAINPID` does).
//!
//! Every call to the manager is recorded ([`SystemdDouble::calls`]), refused
//! ones too; any other method is `UnknownMethod`. [`SystemdDouble::mute`]
//! leaves calls unanswered, as a systemd that hangs. The double and its bus stop
//! when the [`SystemdDouble`] drops.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use zbus::message::{Header, Type as MessageType};
use zbus::zvariant::OwnedObjectPath;
use zbus::{Connection, Message, MessageStream};

use crate::dbus_daemon::DbusDaemon;

/// systemd's bus name.
pub const SERVICE: &str = "org.freedesktop.systemd1";
/// The manager's object path.
pub const PATH: &str = "/org/freedesktop/systemd1";
/// The manager's interface.
pub const MANAGER: &str = "org.freedesktop.systemd1.Manager";

/// systemd's job modes (`job_mode_from_string`).
const JOB_MODES: [&str; 9] = [
    "fail",
    "replace",
    "replace-irreversibly",
    "isolate",
    "flush",
    "ignore-dependencies",
    "ignore-requirements",
    "triggering",
    "restart-dependencies",
];

/// A unit the double knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    /// Active (running), or inactive.
    pub active: bool,
    /// Has `ExecReload=`.
    pub can_reload: bool,
    /// Its reload fails (`ExecReload=` exits non-zero): job result `failed`.
    pub reload_fails: bool,
    /// Its main process.
    pub main_pid: Option<i32>,
    /// The signal a successful reload sends to the main process.
    pub exec_reload_signal: Option<i32>,
    /// Reloads done so far.
    pub reloads: u32,
    /// Restarts done so far (try-reload-or-restart of a unit that cannot
    /// reload).
    pub restarts: u32,
}

impl Unit {
    /// An active unit that can reload, without a main process.
    pub fn active() -> Unit {
        Unit {
            active: true,
            can_reload: true,
            reload_fails: false,
            main_pid: None,
            exec_reload_signal: None,
            reloads: 0,
            restarts: 0,
        }
    }

    /// An inactive unit (it could reload if it ran).
    pub fn inactive() -> Unit {
        Unit {
            active: false,
            ..Unit::active()
        }
    }

    /// Without `ExecReload=`.
    pub fn cannot_reload(mut self) -> Unit {
        self.can_reload = false;
        self
    }

    /// Whose reload fails.
    pub fn reload_fails(mut self) -> Unit {
        self.reload_fails = true;
        self
    }

    /// With main process `pid`.
    pub fn main_pid(mut self, pid: u32) -> Unit {
        self.main_pid = i32::try_from(pid).ok();
        self
    }

    /// Whose successful reload sends `signal` to the main process.
    pub fn exec_reload_signal(mut self, signal: i32) -> Unit {
        self.exec_reload_signal = Some(signal);
        self
    }
}

/// One call to the manager, as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The method (`ReloadUnit`, ...).
    pub method: String,
    /// The unit named, empty for `Subscribe`.
    pub unit: String,
    /// The job mode, or `whom signal` for `KillUnit`; empty for `Subscribe`.
    pub arg: String,
}

/// What the double holds.
#[derive(Debug, Default)]
struct State {
    units: BTreeMap<String, Unit>,
    calls: Vec<Call>,
    subscribers: Vec<String>,
    deny: bool,
    mute: bool,
    job_delay: Duration,
    last_job: u32,
}

/// A systemd manager double on a private bus of its own; stops when this
/// drops.
pub struct SystemdDouble {
    /// Serves the calls; aborted on drop.
    server: tokio::task::JoinHandle<()>,
    /// The double's connection.
    _conn: Connection,
    /// What it holds.
    state: Arc<Mutex<State>>,
    /// The bus (dropped last: killed after the connection closes).
    bus: DbusDaemon,
}

impl SystemdDouble {
    /// Starts a private bus and the double on it, owning
    /// `org.freedesktop.systemd1`; no units yet. Fails when `dbus-daemon`
    /// is missing, with the command that installs it.
    pub async fn start() -> Result<SystemdDouble, String> {
        let bus = DbusDaemon::start()?;
        let conn = zbus::connection::Builder::address(bus.address())
            .map_err(|e| format!("double: address {}: {e}", bus.address()))?
            .build()
            .await
            .map_err(|e| format!("double: connect to {}: {e}", bus.address()))?;
        // The stream exists before the name is owned: no call is missed.
        let calls = MessageStream::from(&conn);
        conn.request_name(SERVICE)
            .await
            .map_err(|e| format!("double: own {SERVICE}: {e}"))?;
        let state = Arc::new(Mutex::new(State::default()));
        let server = tokio::spawn(serve(conn.clone(), calls, state.clone()));
        Ok(SystemdDouble {
            server,
            _conn: conn,
            state,
            bus,
        })
    }

    /// The bus's address, for `Systemd::connect`.
    pub fn address(&self) -> &str {
        self.bus.address()
    }

    /// Adds (or replaces) unit `name`.
    pub fn add_unit(&self, name: &str, unit: Unit) {
        self.state().units.insert(name.to_owned(), unit);
    }

    /// Unit `name` as it is now (with its reload and restart counts).
    pub fn unit(&self, name: &str) -> Option<Unit> {
        self.state().units.get(name).cloned()
    }

    /// Refuse (`AccessDenied`) every reload and kill from now on, or not.
    pub fn deny(&self, deny: bool) {
        self.state().deny = deny;
    }

    /// Leave every call from now on unanswered (recorded, not acted on),
    /// as a systemd that hangs; or answer again.
    pub fn mute(&self, mute: bool) {
        self.state().mute = mute;
    }

    /// How long a job runs after its method's reply before it ends.
    pub fn set_job_delay(&self, delay: Duration) {
        self.state().job_delay = delay;
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// The unique names that called `Subscribe`.
    pub fn subscribers(&self) -> Vec<String> {
        self.state().subscribers.clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for SystemdDouble {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A D-Bus error reply: name and text.
type Refusal = (&'static str, String);

/// What a handled call answers.
enum Answer {
    /// An empty reply.
    Empty,
    /// A job's path; the job then ends with this result.
    Job(OwnedObjectPath, u32, String, String),
    /// An error.
    Error(Refusal),
}

/// Answers method calls to the manager until the connection closes.
async fn serve(conn: Connection, mut calls: MessageStream, state: Arc<Mutex<State>>) {
    while let Some(Ok(msg)) = calls.next().await {
        let header = msg.header();
        if header.message_type() != MessageType::MethodCall {
            continue;
        }
        if lock(&state).mute {
            record(&msg, &header, &state);
            continue;
        }
        let answer = if header.path().map(|p| p.as_str()) != Some(PATH)
            || header.interface().is_some_and(|i| i.as_str() != MANAGER)
        {
            Answer::Error((
                "org.freedesktop.DBus.Error.UnknownMethod",
                "the double serves only the manager".to_owned(),
            ))
        } else {
            handle(&msg, &header, &state)
        };
        let replied = match &answer {
            Answer::Empty => conn.reply(&header, &()).await,
            Answer::Job(path, ..) => conn.reply(&header, path).await,
            Answer::Error((name, text)) => conn.reply_error(&header, *name, text).await,
        };
        // The job ends after its reply is on the socket, as in systemd.
        if let (Ok(()), Answer::Job(path, id, unit, result)) = (replied, answer) {
            let (delay, subscribed) = {
                let s = lock(&state);
                (s.job_delay, !s.subscribers.is_empty())
            };
            let conn = conn.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if subscribed {
                    let _ = conn
                        .emit_signal(
                            None::<&str>,
                            PATH,
                            MANAGER,
                            "JobRemoved",
                            &(id, path, unit, result),
                        )
                        .await;
                }
            });
        }
    }
}

/// Records a call that gets no answer (the double is muted).
fn record(msg: &Message, header: &Header<'_>, state: &Mutex<State>) {
    let method = header.member().map(|m| m.to_string()).unwrap_or_default();
    let body = msg.body();
    let (unit, arg) = match method.as_str() {
        "KillUnit" => body
            .deserialize::<(String, String, i32)>()
            .map(|(u, w, s)| (u, format!("{w} {s}")))
            .unwrap_or_default(),
        "Subscribe" => Default::default(),
        _ => body.deserialize::<(String, String)>().unwrap_or_default(),
    };
    lock(state).calls.push(Call { method, unit, arg });
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// One manager call: recorded, then answered.
fn handle(msg: &Message, header: &Header<'_>, state: &Mutex<State>) -> Answer {
    let method = header.member().map(|m| m.to_string()).unwrap_or_default();
    let mut s = lock(state);
    let body = msg.body();
    match method.as_str() {
        "Subscribe" => {
            s.calls.push(Call {
                method,
                unit: String::new(),
                arg: String::new(),
            });
            let who = header.sender().map(|n| n.to_string()).unwrap_or_default();
            if !s.subscribers.contains(&who) {
                s.subscribers.push(who);
            }
            Answer::Empty
        }
        "ReloadUnit" | "ReloadOrTryRestartUnit" => {
            let Ok((unit, mode)) = body.deserialize::<(String, String)>() else {
                return invalid_args("expected (ss)");
            };
            s.calls.push(Call {
                method: method.clone(),
                unit: unit.clone(),
                arg: mode.clone(),
            });
            let deny = s.deny;
            let Some(u) = s.units.get_mut(&unit) else {
                return no_such_unit(&unit);
            };
            if deny {
                return access_denied();
            }
            if !JOB_MODES.contains(&mode.as_str()) {
                return invalid_args(&format!("Job mode {mode} invalid"));
            }
            let result = if method == "ReloadUnit" {
                if !u.can_reload {
                    return Answer::Error((
                        "org.freedesktop.systemd1.JobTypeNotApplicable",
                        format!("Job type reload is not applicable for unit {unit}."),
                    ));
                }
                if u.active { reload(u) } else { "invalid" }
            } else if !u.active {
                "done"
            } else if u.can_reload {
                reload(u)
            } else {
                u.restarts += 1;
                "done"
            };
            s.last_job += 1;
            let id = s.last_job;
            match OwnedObjectPath::try_from(format!("{PATH}/job/{id}")) {
                Ok(path) => Answer::Job(path, id, unit, result.to_owned()),
                Err(e) => invalid_args(&e.to_string()),
            }
        }
        "KillUnit" => {
            let Ok((unit, whom, signal)) = body.deserialize::<(String, String, i32)>() else {
                return invalid_args("expected (ssi)");
            };
            s.calls.push(Call {
                method,
                unit: unit.clone(),
                arg: format!("{whom} {signal}"),
            });
            let deny = s.deny;
            let Some(u) = s.units.get(&unit) else {
                return no_such_unit(&unit);
            };
            if whom != "main" {
                return invalid_args(&format!("the double kills whom=main only, not {whom}"));
            }
            if !(1..=64).contains(&signal) {
                return invalid_args("Signal number out of range.");
            }
            if deny {
                return access_denied();
            }
            match u.main_pid.filter(|_| u.active) {
                Some(pid) if send_signal(pid, signal) => Answer::Empty,
                _ => Answer::Error((
                    "org.freedesktop.systemd1.NoSuchProcess",
                    "No main process to kill".to_owned(),
                )),
            }
        }
        _ => Answer::Error((
            "org.freedesktop.DBus.Error.UnknownMethod",
            format!("the double does not implement {method}"),
        )),
    }
}

/// A reload of an active unit that can: its result, and its signal sent.
fn reload(u: &mut Unit) -> &'static str {
    if u.reload_fails {
        return "failed";
    }
    u.reloads += 1;
    if let (Some(pid), Some(signal)) = (u.main_pid, u.exec_reload_signal) {
        send_signal(pid, signal);
    }
    "done"
}

/// Sends `signal` to process `pid`; false when there is no such process.
fn send_signal(pid: i32, signal: i32) -> bool {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe { libc::kill(pid, signal) == 0 }
}

fn no_such_unit(unit: &str) -> Answer {
    Answer::Error((
        "org.freedesktop.systemd1.NoSuchUnit",
        format!("Unit {unit} not found."),
    ))
}

fn access_denied() -> Answer {
    Answer::Error((
        "org.freedesktop.DBus.Error.AccessDenied",
        "Access denied".to_owned(),
    ))
}

fn invalid_args(text: &str) -> Answer {
    Answer::Error(("org.freedesktop.DBus.Error.InvalidArgs", text.to_owned()))
}
