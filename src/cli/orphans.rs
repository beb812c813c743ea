//! `keyrot orphans [--provider NAME] [--revoke] [--json]`: the keys
//! providers list with keyrot's tag that no rotation keyrot knows owns, as
//! each provider's last inventory sync found them (from the store, so it
//! works with or without the daemon, and calls no provider), and which
//! providers have no sweep (they cannot both tag and list keys).
//! `--revoke` has the daemon revoke each listed orphan through its
//! provider, audited (it needs the daemon and the operate scope; no
//! prompt: the flag is the confirmation).

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use super::output::{self, Table, fetch, or_dash, time_or};
use crate::control::client::{Client, query_escape};
use crate::control::{OrphansResponse, OrphansRevokeRequest, OrphansRevokeResponse, views};
use keyrot_config::Config;

/// Runs `keyrot orphans`.
pub async fn run(
    provider: Option<&str>,
    revoke: bool,
    socket: &Path,
    cfg: Option<&Config>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if revoke {
        return revoke_all(provider, socket, json).await;
    }
    let path = match provider {
        Some(p) => format!("/v1/orphans?provider={}", query_escape(p)),
        None => "/v1/orphans".to_string(),
    };
    let wanted = provider.map(str::to_string);
    let answer: OrphansResponse = fetch(socket, cfg, &path, move |store, cfg, _| {
        let caps = local_sweeps(cfg);
        views::orphans(store, cfg, wanted.as_deref(), false, &|p| {
            caps.iter().find(|(n, _)| n == p).and_then(|(_, c)| *c)
        })
    })
    .await?;
    if json {
        output::print_json(&answer)?;
    } else {
        output::out(&render(&answer))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether each provider is swept, as building it from `cfg` here says
/// (`None` where it cannot be built here, e.g. a credential only the
/// daemon's service can read). Building makes no call to the provider.
fn local_sweeps(cfg: &Config) -> Vec<(String, Option<bool>)> {
    let store = crate::daemon::open_store_read_only(cfg)
        .ok()
        .map(std::sync::Arc::new);
    cfg.providers
        .iter()
        .map(|p| {
            let caps = store.as_ref().and_then(|s| {
                keyrot_peers::provider::build(p, s)
                    .ok()
                    .map(|b| b.lists_tags())
            });
            (p.name.clone(), caps)
        })
        .collect()
}

/// The table of orphans, then one line per provider without a sweep.
pub fn render(r: &OrphansResponse) -> String {
    let mut out = String::new();
    if r.orphans.is_empty() {
        out.push_str("no orphan keys (as each provider's last inventory sync found them)\n");
    } else {
        let mut t = Table::new(&[
            "PROVIDER",
            "KEY ID",
            "NAME",
            "TAGGED ROTATION",
            "CREATED",
            "EXPIRES",
            "FOUND",
        ]);
        for o in &r.orphans {
            t.row(vec![
                o.provider.clone(),
                o.id.clone(),
                o.name.clone(),
                o.rotation.clone(),
                time_or(o.created_at, "-"),
                time_or(o.expires_at, "never"),
                time_or(Some(o.found_at), "-"),
            ]);
        }
        out.push_str(&t.render());
        let _ = writeln!(
            out,
            "{} orphan key(s): they carry keyrot's tag but no rotation keyrot knows owns them; revoke them with keyrot orphans --revoke",
            r.orphans.len()
        );
    }
    for p in &r.providers {
        let name = output::clean(&p.provider);
        match p.swept {
            Some(false) => {
                let _ = writeln!(
                    out,
                    "provider {name}: no orphan sweep (its listing carries no keyrot tag)"
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "provider {name}: whether it can be swept is known to the running daemon only"
                );
            }
            Some(true) => {
                let _ = writeln!(
                    out,
                    "provider {name}: swept at each inventory sync (last {}){}",
                    time_or(p.last_sync, "never"),
                    if p.revoke_orphans {
                        "; revoke_orphans = true: the sync revokes them"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    out
}

/// `keyrot orphans --revoke`: through the daemon only.
async fn revoke_all(provider: Option<&str>, socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let req = OrphansRevokeRequest {
        provider: provider.map(str::to_string),
        requested_by: std::env::var("USER").ok(),
    };
    let answer: OrphansRevokeResponse = Client::new(socket)
        .post("/v1/orphans/revoke", &req)
        .await
        .map_err(|e| output::needs_daemon(e, "keyrot orphans --revoke"))?;
    if json {
        output::print_json(&answer)?;
    } else {
        let mut out = String::new();
        if answer.outcomes.is_empty() {
            out.push_str("no orphan keys to revoke\n");
        }
        for o in &answer.outcomes {
            let _ = writeln!(
                out,
                "{} {} ({}): {}",
                output::clean(&o.provider),
                output::clean(&o.id),
                output::clean(&o.name),
                if o.revoked {
                    "revoked".to_string()
                } else {
                    format!("NOT revoked: {}", or_dash(o.error.as_deref()))
                }
            );
        }
        output::out(&out)?;
    }
    let failed = answer.outcomes.iter().any(|o| !o.revoked);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
