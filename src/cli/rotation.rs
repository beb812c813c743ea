//! `keyrot rotation show|resume|abort|restart ID`: every detail of one
//! rotation, and the operator actions on a Failed (or stuck) one.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use super::history::trigger;
use super::output::{self, fetch, needs_daemon, or_dash, time, time_or};
use crate::control::client::{Client, query_escape};
use crate::control::views;
use keyrot_config::Config;
use keyrot_core::model::RotationRecord;

/// Runs `keyrot rotation show ID`: asks the daemon on `socket`, or reads
/// the store named by `cfg` when no daemon runs. `json` prints the record.
pub async fn show(
    id: &str,
    socket: &Path,
    cfg: Option<&Config>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let owned = id.to_string();
    let path = format!("/v1/rotations/{}", query_escape(id));
    let rec: RotationRecord = fetch(socket, cfg, &path, move |store, _, _| {
        views::rotation(store, &owned)
    })
    .await?;
    if json {
        output::print_json(&rec)?;
    } else {
        output::out(&render(&rec))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `keyrot rotation resume ID` (needs the daemon): prints the state
/// the rotation resumed in.
pub async fn resume(id: &str, socket: &Path) -> anyhow::Result<ExitCode> {
    act(id, "resume", socket).await
}

/// Runs `keyrot rotation abort ID` (needs the daemon): prints the state
/// the rotation ended in.
pub async fn abort(id: &str, socket: &Path) -> anyhow::Result<ExitCode> {
    act(id, "abort", socket).await
}

/// Runs `keyrot rotation restart ID` (needs the daemon): prints the
/// fresh rotation that replaces the failed one.
pub async fn restart(id: &str, socket: &Path) -> anyhow::Result<ExitCode> {
    let path = format!("/v1/rotations/{}/restart", query_escape(id));
    let rec: RotationRecord = Client::new(socket)
        .post_empty(&path)
        .await
        .map_err(|e| needs_daemon(e, "keyrot rotation restart"))?;
    output::outln(&format!(
        "rotation {} aborted; restarted as {} of {}: now {}",
        output::clean(id),
        rec.id,
        output::clean(&rec.slot),
        rec.state
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// `POST /v1/rotations/{id}/{action}` and one line about the result.
async fn act(id: &str, action: &str, socket: &Path) -> anyhow::Result<ExitCode> {
    let path = format!("/v1/rotations/{}/{action}", query_escape(id));
    let rec: RotationRecord = Client::new(socket)
        .post_empty(&path)
        .await
        .map_err(|e| needs_daemon(e, &format!("keyrot rotation {action}")))?;
    output::outln(&format!(
        "rotation {} of {}: now {}",
        rec.id,
        output::clean(&rec.slot),
        rec.state
    ))?;
    if let Some(err) = &rec.last_error {
        output::outln(&format!("last error: {}", output::clean(err)))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Every field, then sinks and transitions; values are escaped
/// ([`output::clean`]): a reason or a peer's error is one line of text.
pub fn render(r: &RotationRecord) -> String {
    let mut lines: Vec<(&str, String)> = vec![
        ("rotation", r.id.clone()),
        ("key", format!("{} (provider {})", r.slot, r.provider)),
        ("state", state(r)),
        ("trigger", trigger(r)),
        ("reason", r.reason.clone()),
        ("policy", r.policy.clone()),
        ("initiated by", or_dash(r.initiator.rotated_by.as_deref())),
        (
            "initiated from",
            or_dash(r.initiator.initiated_from.as_deref()),
        ),
    ];
    if let Some(p) = &r.initiator.rotation_policy_id {
        lines.push(("policy id", p.clone()));
    }
    lines.push((
        "old key",
        format!(
            "{} (expires {})",
            or_dash(r.old_key_id.as_deref()),
            time_or(r.old_expires_at, "never")
        ),
    ));
    lines.push(("new key", new_key(r)));
    lines.push(("scopes", list(&r.scopes)));
    lines.push(("requested expiry", time_or(r.requested_new_expiry, "-")));
    lines.push(("requested revoke", time_or(r.requested_old_expiry, "-")));
    lines.push(("revoke old at", time_or(r.revoke_old_at, "-")));
    lines.push(("old revoked at", time_or(r.old_revoked_at, "-")));
    if let (Some(last), Some(checked)) = (&r.old_last_use, r.old_last_use_checked_at) {
        // "N ago" counts from the check: the CLI reads no clock.
        lines.push((
            "old key last used",
            format!(
                "{} (checked {})",
                keyrot_engine::notify::in_use::last_use_words(last, checked)
                    .replace(" ago)", " before the check)"),
                time(checked)
            ),
        ));
    }
    if let Some(at) = r.in_use_alerted_at {
        lines.push((
            "old key in use",
            format!(
                "still in use at the revoke deadline: alerted at {}",
                time(at)
            ),
        ));
    }
    if let Some(at) = r.old_lost_at {
        lines.push((
            "old key lost",
            format!(
                "{} found gone at the provider at {} (before keyrot revoked it)",
                or_dash(r.old_key_id.as_deref()),
                time(at)
            ),
        ));
    }
    lines.push(("attempts", attempts(r)));
    lines.push((
        "notify contacts",
        if r.notify_contacts { "yes" } else { "no" }.into(),
    ));
    lines.push(("created", time(r.created_at)));
    lines.push(("updated", time(r.updated_at)));
    lines.push(("last error", or_dash(r.last_error.as_deref())));
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in &lines {
        let _ = writeln!(out, "{k:<width$}  {}", output::clean(v));
    }
    let _ = writeln!(out, "\nsinks:");
    for name in &r.sinks {
        let name = output::clean(name);
        let _ = match r.sink_results.get(name.as_ref()) {
            None => writeln!(out, "  {name}: not written yet"),
            Some(res) => writeln!(
                out,
                "  {name}: written {}, verified {}{}",
                time(res.written_at),
                time_or(res.verified_at, "not yet"),
                res.version
                    .as_ref()
                    .map(|v| format!(", version {}", output::clean(v)))
                    .unwrap_or_default()
            ),
        };
    }
    if !r.hooks.is_empty() {
        let _ = writeln!(out, "\nreload hooks:");
        for name in &r.hooks {
            let shown = output::clean(name);
            let _ = match r.hook_results.get(name) {
                None => writeln!(out, "  {shown}: not run yet"),
                Some(res) => writeln!(
                    out,
                    "  {shown}: done {}: {}",
                    time(res.done_at),
                    output::clean(&res.note)
                ),
            };
        }
    }
    let _ = writeln!(out, "\ntransitions:");
    for t in &r.history {
        let _ = writeln!(
            out,
            "  {}  {:<12}  {}",
            time(t.at),
            t.to.as_str(),
            output::clean(&t.note)
        );
    }
    out
}

/// The state, with where a Failed rotation stopped.
fn state(r: &RotationRecord) -> String {
    match r.failed_in {
        Some(at) if r.state == keyrot_core::model::RotationState::Failed => {
            format!("{} (in {at}; resume, abort or restart it)", r.state)
        }
        _ => r.state.to_string(),
    }
}

/// The new key's id, expiry and scopes (never its secret or hash).
fn new_key(r: &RotationRecord) -> String {
    match &r.new_key {
        None => "not issued yet".into(),
        Some(k) => format!(
            "{} (expires {}; scopes {})",
            k.id,
            time_or(k.expires_at, "never"),
            list(&k.scopes)
        ),
    }
}

/// Failed attempts of the current step and the next retry.
fn attempts(r: &RotationRecord) -> String {
    match r.retry_at {
        Some(at) => format!("{} (next retry {})", r.attempts, time(at)),
        None => r.attempts.to_string(),
    }
}

/// `a, b` or `-`.
fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::views::tests::rotation_rec;
    use keyrot_core::model::{RotationState, Transition};

    #[test]
    fn shows_every_field_but_no_secret_hash() {
        let mut r = rotation_rec("r1", "p/a", RotationState::Failed);
        r.failed_in = Some(RotationState::Distributing);
        r.last_error = Some("sink vault: HTTP 503".into());
        r.attempts = 5;
        r.initiator.rotated_by = Some("alice".into());
        r.history.push(Transition {
            at: "2026-11-01T10:00Z".parse().unwrap(),
            to: RotationState::Pending,
            note: "requested".into(),
        });
        let text = render(&r);
        assert!(
            text.contains(
                "state             failed (in distributing; resume, abort or restart it)"
            ),
            "{text}"
        );
        assert!(text.contains("initiated by      alice"));
        assert!(text.contains("new key           new-r1 (expires never; scopes -)"));
        assert!(text.contains("last error        sink vault: HTTP 503"));
        assert!(text.contains("sinks:\n  out: not written yet\n"));
        assert!(text.contains("  2026-11-01 10:00Z  pending       requested"));
        assert!(!text.contains(&"ab".repeat(32)));
    }

    #[test]
    fn shows_each_reload_hook_done_or_not() {
        let mut r = rotation_rec("r1", "p/a", RotationState::Reloading);
        r.hooks = vec!["nginx".into(), "fleet".into()];
        r.hook_results.insert(
            "nginx".into(),
            keyrot_core::model::HookResult {
                done_at: "2026-11-01T10:00Z".parse().unwrap(),
                note: "reloaded nginx.service".into(),
            },
        );
        let text = render(&r);
        assert!(
            text.contains(
                "reload hooks:\n  nginx: done 2026-11-01 10:00Z: reloaded nginx.service\n  fleet: not run yet\n"
            ),
            "{text}"
        );
        assert_eq!(crate::cli::history::hooks(&r), "nginx ✓; fleet -");
    }

    #[test]
    fn a_reason_or_a_name_from_outside_cannot_forge_lines() {
        let forged = "x\nlast error        none\r\x1b[2J\u{9b}1m";
        let mut r = rotation_rec("r1", "p/a", RotationState::Failed);
        r.reason = forged.into();
        r.initiator.rotated_by = Some(forged.into());
        r.last_error = Some(forged.into());
        r.sinks = vec![forged.into()];
        r.history.push(Transition {
            at: "2026-11-01T10:00Z".parse().unwrap(),
            to: RotationState::Pending,
            note: forged.into(),
        });
        let text = render(&r);
        assert!(!text.contains(['\r', '\x1b', '\u{9b}']), "{text:?}");
        let esc = r"x\nlast error        none\r\x1b[2J\u{9b}1m";
        assert!(
            text.contains(&format!("reason            {esc}\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("initiated by      {esc}\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("  {esc}: not written yet\n")),
            "{text}"
        );
        assert!(text.contains(&format!("pending       {esc}\n")), "{text}");
        assert_eq!(
            text.lines().filter(|l| l.starts_with("last error")).count(),
            1,
            "{text}"
        );
    }
}
