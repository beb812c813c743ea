//! `keyrot plan [--days N]`: a dry run of when each key's next rotation
//! would start and why, rotations within the horizon first.

use std::path::Path;
use std::process::ExitCode;

use super::output::{self, Table, fetch, time, time_or, window};
use crate::control::{PlanResponse, views};
use keyrot_config::Config;

/// Runs `keyrot plan`: asks the daemon on `socket`, or computes the plan
/// from the store and the configuration `cfg` when no daemon runs.
pub async fn run(
    days: u32,
    socket: &Path,
    cfg: Option<&Config>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let path = format!("/v1/plan?days={days}");
    let plan: PlanResponse = fetch(socket, cfg, &path, move |store, cfg, now| {
        views::plan(store, cfg, days, now)
    })
    .await?;
    if json {
        output::print_json(&plan)?;
    } else if plan.rows.is_empty() {
        output::outln("no keys in the inventory yet")?;
    } else {
        output::out(&render(&plan))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The table; emergency starts are marked `!` and explained below it.
pub fn render(plan: &PlanResponse) -> String {
    let mut t = Table::new(&["KEY", "POLICY", "DUE", "STARTS", "WINDOW", "WHY"]);
    let mut emergencies = 0;
    for r in &plan.rows {
        let mut starts = r.start_at.map_or_else(|| "-".into(), time);
        if r.emergency {
            starts.push_str(" !");
            emergencies += 1;
        }
        t.row(vec![
            r.slot.clone(),
            r.policy.clone(),
            time_or(r.due_at, "never"),
            starts,
            r.window.map_or_else(|| "-".into(), |(s, e)| window(s, e)),
            r.explain.clone(),
        ]);
    }
    let mut out = t.render();
    if emergencies > 0 {
        out.push_str(
            "! emergency: the key expires before a window opens, so it starts outside one\n",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::PlanRow;

    #[test]
    fn marks_emergencies() {
        let ts = |s: &str| s.parse().unwrap();
        let plan = PlanResponse {
            days: 30,
            rows: vec![
                PlanRow {
                    slot: "p/urgent".into(),
                    policy: "std".into(),
                    due_at: Some(ts("2026-11-01T00:00Z")),
                    start_at: Some(ts("2026-11-23T12:00Z")),
                    window: None,
                    emergency: true,
                    staggered: false,
                    explain: "EMERGENCY: expires first".into(),
                },
                PlanRow {
                    slot: "p/calm".into(),
                    policy: "std".into(),
                    due_at: Some(ts("2026-11-26T00:00Z")),
                    start_at: Some(ts("2026-11-26T02:00Z")),
                    window: Some((ts("2026-11-26T02:00Z"), ts("2026-11-26T04:00Z"))),
                    emergency: false,
                    staggered: false,
                    explain: "due".into(),
                },
            ],
        };
        let text = render(&plan);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "KEY       POLICY  DUE                STARTS               WINDOW                   WHY"
        );
        assert!(lines[1].contains("2026-11-23 12:00Z !"));
        assert!(lines[2].contains("2026-11-26 02:00-04:00Z"));
        assert!(lines[3].starts_with("! emergency"));
    }
}
