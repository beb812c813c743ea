//! `keyrot keys`: the key inventory, short (slot, key id, scopes, expiry,
//! days left).

use std::path::Path;
use std::process::ExitCode;

use super::output::{self, Table, date_or, fetch, or_dash};
use crate::control::{KeyRow, views};
use keyrot_config::Config;

/// Runs `keyrot keys`: asks the daemon on `socket`, or reads the store
/// named by `cfg` when no daemon runs. `json` prints the rows as JSON.
pub async fn run(socket: &Path, cfg: Option<&Config>, json: bool) -> anyhow::Result<ExitCode> {
    let rows: Vec<KeyRow> = fetch(socket, cfg, "/v1/keys", |store, _, now| {
        views::key_rows(store, now)
    })
    .await?;
    if json {
        output::print_json(&rows)?;
    } else if rows.is_empty() {
        output::outln("no keys in the inventory yet")?;
    } else {
        output::out(&render(&rows))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The table.
pub fn render(rows: &[KeyRow]) -> String {
    let mut t = Table::new(&["KEY", "KEY ID", "SCOPES", "EXPIRES", "DAYS LEFT"]);
    for k in rows {
        let has_key = k.key_id.is_some();
        t.row(vec![
            k.slot.clone(),
            or_dash(k.key_id.as_deref()),
            if has_key {
                k.scopes.to_string()
            } else {
                "-".into()
            },
            if has_key {
                date_or(k.expires_at, "never")
            } else {
                "-".into()
            },
            k.days_left.map_or_else(|| "-".into(), |d| d.to_string()),
        ]);
    }
    format!("{}{}", t.render(), output::duplicate_notes(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_short_table() {
        let row = KeyRow {
            slot: "gh/ci-bot".into(),
            provider: "gh".into(),
            name: "ci-bot".into(),
            key_id: Some("k-1".into()),
            scopes: 3,
            created_by: None,
            created_at: None,
            last_used_at: None,
            expires_at: None,
            days_left: None,
            policy: "p".into(),
            rotation_state: None,
            rotation_id: None,
            next_rotation: None,
            next_reason: None,
            flags: Vec::new(),
            duplicate_ids: Vec::new(),
            ended: None,
            old_key: None,
        };
        assert_eq!(
            render(std::slice::from_ref(&row)),
            "KEY        KEY ID  SCOPES  EXPIRES  DAYS LEFT\ngh/ci-bot  k-1     3       never    -\n"
        );
        let mut dup = row;
        dup.duplicate_ids = vec!["k-0".into(), "k-00".into()];
        assert!(
            render(&[dup]).ends_with(
                "\ngh/ci-bot: \"ci-bot\" also names k-0, k-00 at the provider; keyrot tracks k-1 only (revoke the others if nothing uses them)\n"
            )
        );
    }
}
