//! `keyrot rotate KEY`: asks the daemon to rotate a key now, and with
//! `--wait` follows the rotation until the new key is live (Overlap or
//! Completed) or the rotation stops (Failed, Aborted).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use jiff::Timestamp;

use super::output::{self, needs_daemon, time};
use crate::control::RotateRequest;
use crate::control::client::{Client, ClientError, query_escape};
use keyrot_core::model::{RotationRecord, RotationState};

/// How often `--wait` asks for the rotation's state.
const POLL: Duration = Duration::from_millis(500);

/// What `keyrot rotate` was given.
#[derive(Clone, Debug, Default)]
pub struct RotateArgs {
    /// Slot id (`provider/name`) or a key name unique across providers.
    pub key: String,
    /// Reason, recorded in the audit log.
    pub reason: Option<String>,
    /// Expiry for the new key.
    pub new_expires: Option<Timestamp>,
    /// When to revoke the old key (instead of the policy's overlap).
    pub old_expires: Option<Timestamp>,
    /// Follow the rotation until the new key is live or it stops.
    pub wait: bool,
    /// Print the rotation record as JSON (the final one with `wait`).
    pub json: bool,
}

/// Runs `keyrot rotate` against the daemon on `socket` (there is no
/// read-only fallback: rotating needs the daemon). Exits 1 when `--wait`
/// sees the rotation fail or get aborted.
pub async fn run(args: &RotateArgs, socket: &Path) -> anyhow::Result<ExitCode> {
    let client = Client::new(socket);
    let req = RotateRequest {
        key: args.key.clone(),
        reason: args.reason.clone(),
        new_expires_at: args.new_expires,
        old_expires_at: args.old_expires,
        rotated_by: Some(whoami()),
        initiated_from: Some("cli".into()),
        rotation_policy_id: None,
        notify_contacts: false,
        reveal_psk: None,
    };
    let rec: RotationRecord = client
        .post("/v1/rotate", &req)
        .await
        .map_err(|e| needs_daemon(e, "keyrot rotate"))?;
    if !args.json {
        output::outln(&format!(
            "rotation {} of {} started: {}",
            rec.id,
            output::clean(&rec.slot),
            rec.state
        ))?;
    }
    let rec = if args.wait {
        follow(&client, rec, !args.json).await?
    } else {
        rec
    };
    if args.json {
        output::print_json(&rec)?;
    }
    Ok(exit_code(&rec, args.wait))
}

/// Polls the rotation every [`POLL`] until it is done waiting for, printing
/// each state it entered (from its transitions, so none is missed between
/// polls).
async fn follow(
    client: &Client,
    mut rec: RotationRecord,
    print: bool,
) -> anyhow::Result<RotationRecord> {
    let path = format!("/v1/rotations/{}", query_escape(&rec.id));
    let mut shown = 0;
    loop {
        if print {
            for t in rec.history.iter().skip(shown) {
                output::outln(&format!(
                    "{}  {:<12}  {}",
                    time(t.at),
                    t.to.as_str(),
                    output::clean(&t.note)
                ))?;
            }
        }
        shown = rec.history.len();
        if done_waiting(rec.state) {
            break;
        }
        tokio::time::sleep(POLL).await;
        rec = client.get(&path).await.map_err(|e| match e {
            ClientError::NotRunning { .. } => anyhow::anyhow!(
                "the daemon stopped while rotation {} was {}; it resumes when the daemon starts again (keyrot rotation show {})",
                rec.id, rec.state, rec.id
            ),
            other => anyhow::Error::new(other),
        })?;
    }
    if print {
        match rec.state {
            RotationState::Overlap => output::outln(&format!(
                "the new key is live; the old key is revoked at {}",
                rec.revoke_old_at
                    .map_or_else(|| "the end of the overlap".into(), time)
            ))?,
            RotationState::Completed => output::outln("rotation completed")?,
            _ => eprintln!(
                "rotation {} {}: {}",
                rec.id,
                rec.state,
                output::clean(rec.last_error.as_deref().unwrap_or("no error recorded"))
            ),
        }
    }
    Ok(rec)
}

/// Whether `--wait` stops at this state: the new key is live, or the
/// rotation will not move on its own.
fn done_waiting(s: RotationState) -> bool {
    s.is_terminal() || s == RotationState::Overlap
}

/// 1 when a followed rotation failed or was aborted, else 0.
fn exit_code(rec: &RotationRecord, waited: bool) -> ExitCode {
    let bad = matches!(rec.state, RotationState::Failed | RotationState::Aborted);
    if waited && bad {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Who runs the CLI: `$USER`, `$LOGNAME`, else `uid N`.
fn whoami() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|v| !v.is_empty())
        .or_else(|| {
            std::fs::metadata("/proc/self")
                .ok()
                .map(|m| format!("uid {}", m.uid()))
        })
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_stops_when_the_new_key_is_live_or_nothing_moves() {
        assert!(done_waiting(RotationState::Overlap));
        assert!(done_waiting(RotationState::Completed));
        assert!(done_waiting(RotationState::Failed));
        assert!(!done_waiting(RotationState::Distributing));
        assert!(!whoami().is_empty());
    }
}
