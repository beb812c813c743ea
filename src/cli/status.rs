//! `keyrot status`: every key slot like an admin console's key list (key
//! id, scopes, creator, last use, expiry, policy, rotation state, next
//! rotation, flags), then a line of counters.

use std::path::Path;
use std::process::ExitCode;

use super::output::{self, Table, date_or, fetch, or_dash, time_or};
use crate::control::{KeyRow, StatusResponse, views};
use keyrot_config::Config;

/// Runs `keyrot status`: asks the daemon on `socket`, or reads the store
/// named by `cfg` when no daemon runs. `json` prints the
/// [`StatusResponse`] as pretty JSON instead of a table.
pub async fn run(socket: &Path, cfg: Option<&Config>, json: bool) -> anyhow::Result<ExitCode> {
    let st: StatusResponse = fetch(socket, cfg, "/v1/status", |store, _, now| {
        views::status(store, now, false)
    })
    .await?;
    if json {
        output::print_json(&st)?;
    } else {
        output::out(&render(&st))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The table and the counters line.
pub fn render(st: &StatusResponse) -> String {
    if st.keys.is_empty() {
        return format!(
            "no keys in the inventory yet (the daemon adds the configured keys at its next inventory sync)\n{}\n",
            footer(st)
        );
    }
    let mut t = Table::new(&[
        "KEY",
        "KEY ID",
        "SCOPES",
        "CREATED BY",
        "LAST USED",
        "EXPIRES",
        "DAYS LEFT",
        "POLICY",
        "ROTATION",
        "NEXT ROTATION",
        "FLAGS",
    ]);
    for k in &st.keys {
        let has_key = k.key_id.is_some();
        t.row(vec![
            k.slot.clone(),
            or_dash(k.key_id.as_deref()),
            if has_key {
                k.scopes.to_string()
            } else {
                "-".into()
            },
            or_dash(k.created_by.as_deref()),
            if has_key {
                date_or(k.last_used_at, "never")
            } else {
                "-".into()
            },
            match (&k.ended, has_key) {
                (_, true) => date_or(k.expires_at, "never"),
                // The key the slot lost, and when: the loudest row.
                (Some(e), false) => format!(
                    "{} {} ({})",
                    e.state.to_uppercase(),
                    time_or(Some(e.ended_at), "-"),
                    e.key_id
                ),
                (None, false) => "-".into(),
            },
            k.days_left.map_or_else(|| "-".into(), |d| d.to_string()),
            k.policy.clone(),
            or_dash(k.rotation_state.as_deref()),
            time_or(k.next_rotation, "-"),
            k.flags.join(","),
        ]);
    }
    format!(
        "{}{}{}{}\n",
        t.render(),
        output::duplicate_notes(&st.keys),
        old_key_notes(&st.keys),
        footer(st)
    )
}

/// One line per key whose rotation is in Overlap: the old key's last use
/// as the provider last reported it (`local/ci: old key k-1 last used 2h
/// ago (checked 2026-11-23 10:00Z)`), and the in-use alert if raised.
fn old_key_notes(keys: &[KeyRow]) -> String {
    let mut out = String::new();
    for (k, o) in keys.iter().filter_map(|k| Some((k, k.old_key.as_ref()?))) {
        out.push_str(&format!(
            "{}: old key {} {}",
            output::clean(&k.slot),
            output::clean(o.key_id.as_deref().unwrap_or("-")),
            output::clean(&o.summary)
        ));
        if let Some(at) = o.checked_at {
            out.push_str(&format!(" (checked {})", time_or(Some(at), "-")));
        }
        if let Some(at) = o.in_use_alerted_at {
            out.push_str(&format!(
                "; still in use at its revoke deadline: alert raised {}",
                time_or(Some(at), "-")
            ));
        }
        out.push('\n');
    }
    out
}

/// `3 keys; rotations: 1 active, 0 failed; outbox: 2 queued, 0 dead`.
fn footer(st: &StatusResponse) -> String {
    let keys = match st.keys.len() {
        1 => "1 key".to_string(),
        n => format!("{n} keys"),
    };
    let mut out = format!(
        "{keys}; rotations: {} active, {} failed; outbox: {} queued, {} dead",
        st.active_rotations, st.failed_rotations, st.outbox_queued, st.outbox_dead
    );
    if st.outbox_queued > 0
        && let Some(at) = st.outbox_next_attempt_at
    {
        out.push_str(&format!(
            "\noutbox: next delivery attempt {}",
            time_or(Some(at), "-")
        ));
    }
    if !st.outbox_dead_ids.is_empty() {
        out.push_str(&format!(
            "\noutbox: gave up on {} (their errors are in the log: journalctl -u keyrot)",
            st.outbox_dead_ids.join(", ")
        ));
    }
    if !st.orphans.is_empty() {
        let ids: Vec<String> = st
            .orphans
            .iter()
            .map(|o| format!("{} {}", output::clean(&o.provider), output::clean(&o.id)))
            .collect();
        out.push_str(&format!(
            "
orphans: {} key(s) carry keyrot's tag but belong to no rotation keyrot knows ({}): see keyrot orphans",
            ids.len(),
            ids.join(", ")
        ));
    }
    if let Some(me) = &st.instance {
        out.push_str(&format!(
            "\nthis instance: {} ({}; {} failover(s) since it started)",
            me.role, me.instance, me.failovers
        ));
    }
    if let Some(lease) = &st.lease {
        let state = if lease.is_live() { "held" } else { "expired" };
        out.push_str(&format!(
            "\nleader lease: {state} by {} (epoch {}), renewed {}, expires {}",
            if lease.holder.is_empty() {
                "nobody"
            } else {
                &lease.holder
            },
            lease.epoch,
            time_or(lease.renewed_at, "never"),
            time_or(lease.expires_at, "-")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> KeyRow {
        KeyRow {
            slot: "gh/ci-bot".into(),
            provider: "gh".into(),
            name: "ci-bot".into(),
            key_id: Some("k-123".into()),
            scopes: 2,
            created_by: Some("alice".into()),
            created_at: None,
            last_used_at: None,
            expires_at: Some("2026-12-01T00:00Z".parse().unwrap()),
            days_left: Some(7),
            policy: "standard".into(),
            rotation_state: Some("failed".into()),
            rotation_id: Some("r1".into()),
            next_rotation: Some("2026-11-25T02:17Z".parse().unwrap()),
            next_reason: None,
            flags: vec!["never-used".into(), "expiring-soon".into(), "failed".into()],
            duplicate_ids: Vec::new(),
            ended: None,
            old_key: None,
        }
    }

    #[test]
    fn renders_rows_and_counters() {
        let mut empty = row();
        empty.slot = "gh/new".into();
        empty.key_id = None;
        empty.scopes = 0;
        empty.created_by = None;
        empty.expires_at = None;
        empty.days_left = None;
        empty.rotation_state = None;
        empty.next_rotation = None;
        empty.flags = vec!["no-key".into()];
        let st = StatusResponse {
            version: "0.1.0".into(),
            live: true,
            keys: vec![row(), empty.clone()],
            active_rotations: 1,
            failed_rotations: 1,
            outbox_queued: 2,
            outbox_dead: 0,
            outbox_next_attempt_at: None,
            outbox_dead_ids: Vec::new(),
            lease: None,
            instance: None,
            orphans: Vec::new(),
        };
        let text = render(&st);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("KEY        KEY ID  SCOPES  CREATED BY  LAST USED"));
        assert!(lines[1].contains("k-123"));
        assert!(lines[1].contains("never"));
        assert!(lines[1].contains("2026-12-01"));
        assert!(lines[1].contains("2026-11-25 02:17Z"));
        assert!(lines[1].ends_with("never-used,expiring-soon,failed"));
        assert!(lines[2].starts_with("gh/new     -       -"));
        assert!(lines[2].ends_with("no-key"));
        let mut lost = empty.clone();
        lost.flags = vec!["no-key".into(), "expired".into()];
        lost.ended = Some(crate::control::EndedRow {
            state: "expired".into(),
            key_id: "k-99".into(),
            expires_at: Some("2026-11-20T02:00Z".parse().unwrap()),
            ended_at: "2026-11-20T02:00Z".parse().unwrap(),
        });
        let text = render(&StatusResponse {
            keys: vec![lost],
            ..st.clone()
        });
        let line = text.lines().nth(1).unwrap();
        assert!(line.contains("EXPIRED 2026-11-20 02:00Z (k-99)"), "{text}");
        assert!(line.ends_with("no-key,expired"), "{text}");
        assert_eq!(
            lines[3],
            "2 keys; rotations: 1 active, 1 failed; outbox: 2 queued, 0 dead"
        );
    }

    #[test]
    fn renders_the_outbox_backlog_and_dead_messages() {
        let st = StatusResponse {
            version: "0.1.0".into(),
            live: true,
            keys: vec![row()],
            active_rotations: 0,
            failed_rotations: 0,
            outbox_queued: 1,
            outbox_dead: 2,
            outbox_next_attempt_at: Some("2026-11-25T02:17Z".parse().unwrap()),
            outbox_dead_ids: vec!["r1.completed".into(), "r2.failed.9".into()],
            lease: None,
            instance: None,
            orphans: Vec::new(),
        };
        let text = render(&st);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[2..],
            [
                "1 key; rotations: 0 active, 0 failed; outbox: 1 queued, 2 dead",
                "outbox: next delivery attempt 2026-11-25 02:17Z",
                "outbox: gave up on r1.completed, r2.failed.9 (their errors are in the log: journalctl -u keyrot)",
            ],
            "{text}"
        );
    }

    #[test]
    fn renders_the_old_keys_last_use_during_an_overlap() {
        let mut overlap = row();
        overlap.rotation_state = Some("overlap".into());
        overlap.flags = Vec::new();
        overlap.old_key = Some(crate::control::OldKeyRow {
            key_id: Some("k-122".into()),
            last_use: Some(keyrot_core::model::LastUse::At {
                at: "2026-11-23T09:55Z".parse().unwrap(),
            }),
            summary: "last used 2h5m ago".into(),
            checked_at: Some("2026-11-23T11:30Z".parse().unwrap()),
            in_use_alerted_at: Some("2026-11-23T11:45Z".parse().unwrap()),
        });
        let mut quiet = overlap.clone();
        quiet.slot = "gh/quiet".into();
        quiet.old_key = Some(crate::control::OldKeyRow {
            key_id: Some("k-9".into()),
            last_use: Some(keyrot_core::model::LastUse::Never),
            summary: "never used".into(),
            checked_at: None,
            in_use_alerted_at: None,
        });
        let st = StatusResponse {
            orphans: Vec::new(),
            version: "0.1.0".into(),
            live: false,
            keys: vec![overlap, quiet, row()],
            active_rotations: 2,
            failed_rotations: 1,
            outbox_queued: 0,
            outbox_dead: 0,
            outbox_next_attempt_at: None,
            outbox_dead_ids: Vec::new(),
            lease: None,
            instance: None,
        };
        let text = render(&st);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[4..6],
            [
                "gh/ci-bot: old key k-122 last used 2h5m ago (checked 2026-11-23 11:30Z); still in use at its revoke deadline: alert raised 2026-11-23 11:45Z",
                "gh/quiet: old key k-9 never used",
            ],
            "{text}"
        );
        assert_eq!(lines.len(), 7, "{text}");
    }
}
