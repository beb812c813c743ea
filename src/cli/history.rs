//! `keyrot history [KEY]`: rotations, newest first, with their sinks'
//! results.

use std::path::Path;
use std::process::ExitCode;

use super::output::{self, Table, fetch, or_dash, time};
use crate::control::client::query_escape;
use crate::control::{HistoryResponse, views};
use keyrot_config::Config;
use keyrot_core::model::RotationRecord;

/// Runs `keyrot history`: up to `limit` rotations of `key` (a slot id or a
/// unique key name) or of all keys, newest first. Asks the daemon on
/// `socket`, or reads the store named by `cfg` when no daemon runs.
pub async fn run(
    key: Option<&str>,
    limit: usize,
    socket: &Path,
    cfg: Option<&Config>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut path = format!("/v1/history?limit={limit}");
    if let Some(k) = key {
        path.push_str(&format!("&key={}", query_escape(k)));
    }
    let owned = key.map(str::to_string);
    let h: HistoryResponse = fetch(socket, cfg, &path, move |store, _, _| {
        let slot = owned
            .as_deref()
            .map(|k| views::resolve_key(store, k))
            .transpose()?;
        views::history(store, slot.as_deref(), limit)
    })
    .await?;
    if json {
        output::print_json(&h)?;
    } else if h.rotations.is_empty() {
        output::outln("no rotations yet")?;
    } else {
        output::out(&render(&h.rotations))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The table: one row per rotation.
pub fn render(rotations: &[RotationRecord]) -> String {
    let mut t = Table::new(&[
        "ROTATION", "KEY", "STATE", "TRIGGER", "STARTED", "UPDATED", "NEW KEY", "SINKS", "HOOKS",
        "REASON",
    ]);
    for r in rotations {
        t.row(vec![
            r.id.clone(),
            r.slot.clone(),
            r.state.to_string(),
            trigger(r),
            time(r.created_at),
            time(r.updated_at),
            or_dash(r.new_key.as_ref().map(|k| k.id.as_str())),
            sinks(r),
            hooks(r),
            r.reason.clone(),
        ]);
    }
    t.render()
}

/// The trigger as a word (`manual`, `schedule`, ...).
pub fn trigger(r: &RotationRecord) -> String {
    serde_json::to_value(r.trigger)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{:?}", r.trigger).to_lowercase())
}

/// Each sink as `name: written ✓ verified ✓` (`-` for not yet), `; ` apart.
pub fn sinks(r: &RotationRecord) -> String {
    if r.sinks.is_empty() {
        return "-".into();
    }
    let mark = |done: bool| if done { "✓" } else { "-" };
    r.sinks
        .iter()
        .map(|name| {
            let res = r.sink_results.get(name);
            format!(
                "{name}: written {} verified {}",
                mark(res.is_some()),
                mark(res.is_some_and(|s| s.verified_at.is_some()))
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Each reload hook as `name ✓` once done (`-` before), `; ` apart.
pub fn hooks(r: &RotationRecord) -> String {
    if r.hooks.is_empty() {
        return "-".into();
    }
    r.hooks
        .iter()
        .map(|name| {
            let done = if r.hook_results.contains_key(name) {
                "✓"
            } else {
                "-"
            };
            format!("{name} {done}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::views::tests::rotation_rec;
    use keyrot_core::model::{RotationState, SinkResult};

    #[test]
    fn renders_rotations_with_sink_marks() {
        let mut r = rotation_rec("r2", "p/a", RotationState::Verifying);
        r.sinks = vec!["vault".into(), "file".into()];
        let at = "2026-11-23T14:05Z".parse().unwrap();
        r.sink_results.insert(
            "vault".into(),
            SinkResult {
                written_at: at,
                verified_at: Some(at),
                version: None,
            },
        );
        r.updated_at = at;
        let text = render(&[r]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ROTATION  KEY  STATE      TRIGGER  STARTED"));
        assert!(lines[1].starts_with(
            "r2        p/a  verifying  manual   2026-11-01 10:00Z  2026-11-23 14:05Z  new-r2"
        ));
        assert!(lines[1].contains("vault: written ✓ verified ✓; file: written - verified -"));
        assert!(lines[1].ends_with("test"));
        assert!(!text.contains(&"ab".repeat(32)), "no secret hash in output");
    }
}
