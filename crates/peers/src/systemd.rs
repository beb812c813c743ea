//! The `systemd` reload hook's client: asks systemd's manager, over D-Bus,
//! to reload a consumer's unit or to signal its main process, the way
//! `systemctl` does, and waits for the answer.
//!
//! What is called, on `org.freedesktop.systemd1` at
//! `/org/freedesktop/systemd1`, interface `org.freedesktop.systemd1.Manager`
//! (org.freedesktop.systemd1(5)):
//! - `Subscribe()`, once per connection, so systemd sends job signals;
//! - `ReloadUnit(s name, s mode)` (`systemctl reload`) or
//!   `ReloadOrTryRestartUnit(s name, s mode)` (`systemctl
//!   try-reload-or-restart`), mode `replace`, each answering with the
//!   job's object path; the job's end is the `JobRemoved(u id, o job, s
//!   unit, s result)` signal for that path, whose match is added *before*
//!   the call (as systemctl's `bus_wait_for_jobs_new()` does), so a job
//!   that ends at once is not missed. Result `done` is success; any other
//!   is an error naming the unit and the result;
//! - `KillUnit(s name, s whom, i signal)` with whom `main` (`systemctl kill
//!   --kill-whom=main -s SIG`), which answers once the signal is sent.
//!
//! Errors ([`CallError`]): a bus that cannot be reached, a call that gets
//! no answer, no `JobRemoved` within the caller's timeout, systemd
//! shutting down or busy with a conflicting job, and jobs `canceled` or
//! `timeout` are transient; refusals (`AccessDenied`,
//! `InteractiveAuthorizationRequired`: the message points at the polkit
//! rule in docs/systemd-hooks.md), a unit that does not exist or failed to
//! load, a unit that cannot reload, a unit with no main process, any other
//! job result and any other D-Bus error are permanent. Unit names come from
//! the configuration and are checked against systemd's rules
//! ([`name::check`]) before any call. Text from the bus is shortened and
//! its control characters escaped. Nothing here carries a secret.
//!
//! Every wait is bounded by a timeout the caller gives; this module reads
//! no clock.

pub mod name;

use std::time::Duration;

use futures::StreamExt as _;
use zbus::message::Type as MessageType;
use zbus::zvariant::OwnedObjectPath;
use zbus::{Connection, MatchRule, MessageStream};

use keyrot_core::error::CallError;
use keyrot_core::escape;

/// systemd's bus name.
pub const SERVICE: &str = "org.freedesktop.systemd1";
/// The manager's object path.
pub const PATH: &str = "/org/freedesktop/systemd1";
/// The manager's interface.
pub const MANAGER: &str = "org.freedesktop.systemd1.Manager";
/// The polkit action systemd checks for every call here.
pub const POLKIT_ACTION: &str = "org.freedesktop.systemd1.manage-units";
/// Where the polkit rule keyrot needs is described.
const POLKIT_DOC: &str = "docs/systemd-hooks.md";
/// Job mode of every job keyrot queues (systemctl's default).
const JOB_MODE: &str = "replace";
/// Signals queued for one wait before the oldest are dropped (other
/// units' jobs end too).
const MAX_QUEUED: usize = 256;
/// The highest signal number systemd accepts on Linux (`_NSIG` - 1).
const MAX_SIGNAL: i32 = 64;
/// Longest text from the bus kept in a message, in characters.
const MAX_DETAIL: usize = 300;

/// How a unit is told to re-read its configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReloadMode {
    /// `systemctl reload`: the unit's `ExecReload=`; an inactive unit, or
    /// one without `ExecReload=`, is an error.
    Reload,
    /// `systemctl try-reload-or-restart`: reload if the unit can, else
    /// restart it; an inactive unit is left alone (success).
    TryReloadOrRestart,
}

impl ReloadMode {
    /// The manager's method.
    pub fn method(self) -> &'static str {
        match self {
            ReloadMode::Reload => "ReloadUnit",
            ReloadMode::TryReloadOrRestart => "ReloadOrTryRestartUnit",
        }
    }

    /// The `systemctl` verb, for messages.
    pub fn systemctl_verb(self) -> &'static str {
        match self {
            ReloadMode::Reload => "reload",
            ReloadMode::TryReloadOrRestart => "try-reload-or-restart",
        }
    }

    /// The `verb` detail systemd gives polkit for this call.
    pub fn polkit_verb(self) -> &'static str {
        match self {
            ReloadMode::Reload => "reload",
            ReloadMode::TryReloadOrRestart => "reload-or-try-restart",
        }
    }
}

/// The `verb` detail systemd gives polkit for `KillUnit`.
pub const KILL_VERB: &str = "kill";

/// A connection to systemd's manager, subscribed to its job signals.
#[derive(Clone, Debug)]
pub struct Systemd {
    /// The bus connection.
    conn: Connection,
    /// Where it goes, for messages: `the system bus` or the address.
    bus: String,
}

impl Systemd {
    /// Connects to the system bus (`address` None; zbus reads
    /// `DBUS_SYSTEM_BUS_ADDRESS`, else `/run/dbus/system_bus_socket`) or to
    /// the bus at a D-Bus address such as `unix:path=/run/x`, and calls
    /// `Subscribe`; all within `timeout`. A bus that cannot be reached is
    /// a transient error, a malformed address a permanent one.
    pub async fn connect(address: Option<&str>, timeout: Duration) -> Result<Systemd, CallError> {
        let bus = match address {
            None => "the system bus".to_owned(),
            Some(a) => format!("the bus at {}", escape::controls(a)),
        };
        let connecting = async {
            let builder = match address {
                None => zbus::connection::Builder::system(),
                Some(a) => zbus::connection::Builder::address(a),
            }
            .map_err(|e| classify(&e, &format!("systemd: connect to {bus}"), None))?;
            let conn = builder
                .build()
                .await
                .map_err(|e| classify(&e, &format!("systemd: connect to {bus}"), None))?;
            let systemd = Systemd {
                conn,
                bus: bus.clone(),
            };
            systemd
                .call("Subscribe", &())
                .await
                .map_err(|e| classify(&e, &format!("systemd on {bus}: Subscribe"), None))?;
            Ok(systemd)
        };
        tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| {
                CallError::transient(format!(
                    "systemd: connect to {bus} and subscribe: no answer within {timeout:?}"
                ))
            })?
    }

    /// Reloads `unit` as `mode` says and waits, at most `timeout` in all,
    /// until its job ends. Ok when the job's result is `done`.
    pub async fn reload(
        &self,
        unit: &str,
        mode: ReloadMode,
        timeout: Duration,
    ) -> Result<(), CallError> {
        let unit = name::check(unit)?;
        let what = format!("systemd: {} of unit {unit}", mode.systemctl_verb());
        let hint = Hint {
            unit,
            verb: mode.polkit_verb(),
        };
        // How far it got, for the timeout's message.
        let answered = std::sync::atomic::AtomicBool::new(false);
        let job = async {
            let mut removed = self
                .job_removed()
                .await
                .map_err(|e| classify(&e, &format!("{what}: watch jobs on {}", self.bus), None))?;
            let reply = self
                .call(mode.method(), &(unit, JOB_MODE))
                .await
                .map_err(|e| classify(&e, &what, Some(&hint)))?;
            let job: OwnedObjectPath = reply.body().deserialize().map_err(|e| {
                CallError::permanent(format!(
                    "{what}: {} answered with no job path: {}",
                    mode.method(),
                    detail(&e.to_string())
                ))
            })?;
            answered.store(true, std::sync::atomic::Ordering::Relaxed);
            while let Some(msg) = removed.next().await {
                let msg = msg.map_err(|e| classify(&e, &what, None))?;
                let Ok((_id, path, _unit, result)) =
                    msg.body()
                        .deserialize::<(u32, OwnedObjectPath, String, String)>()
                else {
                    continue;
                };
                if path == job {
                    return job_result(&what, &result);
                }
            }
            Err(CallError::transient(format!(
                "{what}: the connection to {} closed before job {} ended",
                self.bus,
                job.as_str()
            )))
        };
        let ended = tokio::time::timeout(timeout, job).await;
        ended.map_err(|_| {
            let waiting = if answered.load(std::sync::atomic::Ordering::Relaxed) {
                "the job did not end"
            } else {
                "systemd did not answer the call"
            };
            CallError::transient(format!("{what}: {waiting} within {timeout:?}"))
        })?
    }

    /// Sends signal number `signal` to `unit`'s main process, as
    /// `systemctl kill --kill-whom=main -s SIG UNIT`; waits at most
    /// `timeout` for systemd's answer (it answers once the signal is
    /// sent). A number outside 1 to 64 is refused before any call.
    pub async fn kill_main(
        &self,
        unit: &str,
        signal: i32,
        timeout: Duration,
    ) -> Result<(), CallError> {
        let unit = name::check(unit)?;
        let what = format!("systemd: signal {signal} to the main process of unit {unit}");
        if !(1..=MAX_SIGNAL).contains(&signal) {
            return Err(CallError::permanent(format!(
                "{what}: signal {signal} is not a signal number (1 to {MAX_SIGNAL})"
            )));
        }
        let hint = Hint {
            unit,
            verb: KILL_VERB,
        };
        let args = (unit, "main", signal);
        let call = self.call("KillUnit", &args);
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(classify(&e, &what, Some(&hint))),
            Err(_) => Err(CallError::transient(format!(
                "{what}: no answer within {timeout:?}"
            ))),
        }
    }

    /// A call of a manager method.
    async fn call<B>(&self, method: &str, body: &B) -> zbus::Result<zbus::Message>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        self.conn
            .call_method(Some(SERVICE), PATH, Some(MANAGER), method, body)
            .await
    }

    /// The manager's `JobRemoved` signals from now on (the match is on the
    /// bus when this returns).
    async fn job_removed(&self) -> zbus::Result<MessageStream> {
        let rule = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .sender(SERVICE)?
            .path(PATH)?
            .interface(MANAGER)?
            .member("JobRemoved")?
            .build();
        MessageStream::for_match_rule(rule, &self.conn, Some(MAX_QUEUED)).await
    }
}

/// What a refusal's message points at.
struct Hint<'a> {
    /// The unit.
    unit: &'a str,
    /// The polkit `verb` detail of the call.
    verb: &'a str,
}

/// A job's result as the outcome of the call.
fn job_result(what: &str, result: &str) -> Result<(), CallError> {
    let result = detail(result);
    match result.as_str() {
        "done" => Ok(()),
        // Replaced by another job for the unit, or ran past its own
        // timeout: another try may pass.
        "canceled" | "timeout" => Err(CallError::transient(format!(
            "{what}: the job ended with result \"{result}\""
        ))),
        "invalid" => Err(CallError::permanent(format!(
            "{what}: the job ended with result \"invalid\" (a unit that is not active cannot reload; try-reload-or-restart leaves it alone)"
        ))),
        _ => Err(CallError::permanent(format!(
            "{what}: the job ended with result \"{result}\" (see journalctl -u UNIT)"
        ))),
    }
}

/// A zbus error as a [`CallError`] for `what`; `hint` names the unit and
/// verb a refusal is about.
fn classify(e: &zbus::Error, what: &str, hint: Option<&Hint<'_>>) -> CallError {
    match e {
        zbus::Error::MethodError(name, description, _) => {
            method_error(name.as_str(), description.as_deref(), what, hint)
        }
        zbus::Error::FDO(fdo) => {
            let name = fdo_name(fdo);
            method_error(&name, Some(&fdo.to_string()), what, hint)
        }
        zbus::Error::InputOutput(io) | zbus::Error::Connection(io, _) => {
            CallError::transient(format!("{what}: {}", detail(&io.to_string())))
        }
        zbus::Error::Handshake(h) => {
            CallError::transient(format!("{what}: bus handshake: {}", detail(h)))
        }
        zbus::Error::Address(a) => {
            CallError::permanent(format!("{what}: bad D-Bus address: {}", detail(a)))
        }
        other => CallError::permanent(format!("{what}: {}", detail(&other.to_string()))),
    }
}

/// The D-Bus error name of an `fdo::Error`.
fn fdo_name(e: &zbus::fdo::Error) -> String {
    use zbus::DBusError as _;
    e.name().as_str().to_owned()
}

/// A D-Bus error reply (by name) as a [`CallError`].
fn method_error(
    name: &str,
    description: Option<&str>,
    what: &str,
    hint: Option<&Hint<'_>>,
) -> CallError {
    let said = match description {
        Some(d) if !d.is_empty() => format!("{}: {}", detail(name), detail(d)),
        _ => detail(name),
    };
    match name {
        "org.freedesktop.DBus.Error.AccessDenied"
        | "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired" => {
            let rule = match hint {
                Some(h) => format!(
                    "allow keyrot's user the polkit action {POLKIT_ACTION} for unit {} with verb {}",
                    h.unit, h.verb
                ),
                None => format!("allow keyrot's user the polkit action {POLKIT_ACTION}"),
            };
            CallError::permanent(format!(
                "{what}: refused ({said}); {rule} (a rule in /etc/polkit-1/rules.d/, see {POLKIT_DOC})"
            ))
        }
        "org.freedesktop.systemd1.NoSuchUnit" => {
            CallError::permanent(format!("{what}: no such unit ({said})"))
        }
        "org.freedesktop.systemd1.LoadFailed" => {
            CallError::permanent(format!("{what}: the unit failed to load ({said})"))
        }
        "org.freedesktop.systemd1.JobTypeNotApplicable" => CallError::permanent(format!(
            "{what}: the unit cannot do this ({said}); a unit without ExecReload= cannot reload: use try-reload-or-restart or a signal"
        )),
        "org.freedesktop.systemd1.NoSuchProcess" => {
            CallError::permanent(format!("{what}: the unit has no main process ({said})"))
        }
        // The bus or systemd cannot answer now, or another job for the
        // unit conflicts: another try may pass.
        "org.freedesktop.DBus.Error.ServiceUnknown"
        | "org.freedesktop.DBus.Error.NameHasNoOwner"
        | "org.freedesktop.DBus.Error.NoReply"
        | "org.freedesktop.DBus.Error.Timeout"
        | "org.freedesktop.DBus.Error.TimedOut"
        | "org.freedesktop.DBus.Error.Disconnected"
        | "org.freedesktop.DBus.Error.NoServer"
        | "org.freedesktop.DBus.Error.NoNetwork"
        | "org.freedesktop.DBus.Error.LimitsExceeded"
        | "org.freedesktop.DBus.Error.NoMemory"
        | "org.freedesktop.systemd1.ShuttingDown"
        | "org.freedesktop.systemd1.TransactionIsDestructive"
        | "org.freedesktop.systemd1.TransactionJobsConflicting"
        | "org.freedesktop.systemd1.TransactionOrderIsCyclic" => {
            CallError::transient(format!("{what}: {said}"))
        }
        _ => CallError::permanent(format!("{what}: {said}")),
    }
}

/// Text from the bus, shortened, control characters escaped.
fn detail(s: &str) -> String {
    let cut: String = s.chars().take(MAX_DETAIL).collect();
    let mut out = escape::controls(&cut).into_owned();
    if s.chars().count() > MAX_DETAIL {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests;
