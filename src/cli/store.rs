//! `keyrot store backup FILE` and `keyrot store verify`. Both go through the
//! daemon when it runs (it holds the store, so only it can read the store
//! consistently and it has the master key), and otherwise work on the store
//! file directly, which they only ever read.
//!
//! The backup is taken as one consistent snapshot (see
//! [`keyrot_core::store::Store::backup_image`]) and written here, by the CLI, as
//! the operator running it: mode 0600, under a temporary name beside FILE,
//! synced, read back, then moved into place; an existing FILE is replaced
//! only with `--force`. It holds secrets sealed under the master key and
//! not the key itself.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use super::output::{self, FALLBACK_NOTE};
use crate::control::client::{Client, ClientError};
use keyrot_config::Config;
use keyrot_core::crypto::MasterKey;
use keyrot_core::store::{BackupSummary, StoreError, VerifyReport, verify_file, write_backup};

/// Longest a backup or verify may take through the daemon.
const TIMEOUT: Duration = Duration::from_secs(600);

/// Runs `keyrot store backup FILE`.
pub async fn backup(
    file: &Path,
    force: bool,
    socket: &Path,
    cfg: Option<&Config>,
) -> anyhow::Result<ExitCode> {
    let store_path = cfg.map(|c| c.store.path.clone());
    // Refuse before taking a backup that could not be written.
    if file.exists() && !force {
        return Err(StoreError::BackupTarget {
            path: file.to_path_buf(),
            reason: "it exists (pass --force to replace it)",
        }
        .into());
    }
    let answer = Client::new(socket)
        .with_timeout(TIMEOUT)
        .post_for_bytes("/v1/store/backup")
        .await;
    let (image, by) = match answer {
        Ok(bytes) => (bytes, "taken by the running daemon"),
        Err(ClientError::NotRunning { .. }) => {
            let cfg = offline_config(cfg)?.clone();
            eprintln!("{FALLBACK_NOTE}");
            let image = tokio::task::spawn_blocking(move || {
                crate::daemon::open_store_read_only(&cfg).and_then(|s| Ok(s.backup_image()?))
            })
            .await
            .context("reading the store")??;
            (image, "read from the store file (no daemon runs)")
        }
        Err(e) => return Err(e.into()),
    };
    let target = file.to_path_buf();
    let summary = tokio::task::spawn_blocking(move || {
        write_backup(&target, &image, force, store_path.as_deref())
    })
    .await
    .context("writing the backup")??;
    output::out(&render_backup(&summary, by, cfg))?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `keyrot store verify`; exits 1 when a problem was found.
pub async fn verify(socket: &Path, cfg: Option<&Config>, json: bool) -> anyhow::Result<ExitCode> {
    let answer = Client::new(socket)
        .with_timeout(TIMEOUT)
        .post_empty::<VerifyReport>("/v1/store/verify")
        .await;
    let report = match answer {
        Ok(r) => r,
        Err(ClientError::NotRunning { .. }) => {
            let cfg = offline_config(cfg)?;
            if cfg.store.postgres.is_some() {
                eprintln!("(daemon not running: checking the PostgreSQL store directly)");
                let cfg = cfg.clone();
                let report = tokio::task::spawn_blocking(move || {
                    crate::daemon::open_store(&cfg).and_then(|s| Ok(s.verify()?))
                })
                .await
                .context("verifying the store")??;
                return finish_verify(&report, json);
            }
            eprintln!("(daemon not running: checking the store file directly)");
            let key = MasterKey::resolve(
                keyrot_config::credentials_dir_from_env().as_deref(),
                &cfg.store.master_key_file,
                false,
            );
            let path = cfg.store.path.clone();
            let mut report = tokio::task::spawn_blocking(move || {
                verify_file(&path, key.as_ref().ok()).map(|r| (r, key.err()))
            })
            .await
            .context("verifying the store")?
            .map(|(mut r, key_err)| {
                if let Some(e) = key_err {
                    r.problem(format!(
                        "secrets not checked: cannot read the master key: {e}"
                    ));
                }
                r
            })?;
            report.live = false;
            report
        }
        Err(e) => return Err(e.into()),
    };
    finish_verify(&report, json)
}

/// Prints a verify report; exit status 1 when it found a problem.
fn finish_verify(report: &VerifyReport, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        output::print_json(report)?;
    } else {
        output::out(&render_verify(report))?;
    }
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The config, needed to find the store when no daemon answers.
fn offline_config(cfg: Option<&Config>) -> anyhow::Result<&Config> {
    cfg.ok_or_else(|| {
        anyhow::anyhow!(
            "keyrot daemon is not running, and without a valid configuration the store cannot be found: fix it (keyrot check) or pass --config"
        )
    })
}

/// Where the master key lives, for the restore advice.
fn key_location(cfg: Option<&Config>) -> String {
    let file = cfg.map_or_else(
        || PathBuf::from("the key file named by store.master_key_file"),
        |c| c.store.master_key_file.clone(),
    );
    format!(
        "{} (or the systemd credential \"master-key\")",
        file.display()
    )
}

/// What `keyrot store backup` prints.
pub fn render_backup(s: &BackupSummary, by: &str, cfg: Option<&Config>) -> String {
    let store = cfg.map_or_else(
        || "the store file (store.path)".to_string(),
        |c| c.store.path.display().to_string(),
    );
    format!(
        "backup written: {} ({} bytes, mode 0600), one consistent snapshot {by}\n\
         \x20 keys {}, rotations {}, sealed secrets {}, outbox {} queued / {} dead, audit entries {} (hash chain verified)\n\
         The backup does NOT contain the master key: its secrets stay sealed under that key, and keyrot\n\
         opens the backup only with it. Keep the key, apart from the backup: {}\n\
         To restore: stop keyrot (systemctl stop keyrot), copy the backup over {store}\n\
         (mode 0600, owned by keyrot's user), start keyrot (systemctl start keyrot), then run `keyrot store verify`.\n",
        s.path.display(),
        s.bytes,
        s.stats.keys,
        s.stats.rotations,
        s.stats.secrets,
        s.stats.outbox_queued,
        s.stats.outbox_dead,
        s.audit_entries,
        key_location(cfg),
    )
}

/// What `keyrot store verify` prints.
pub fn render_verify(r: &VerifyReport) -> String {
    let mut out = format!(
        "store {}, {}\n",
        r.path.display(),
        if r.live {
            "checked by the running daemon (copied while writes were paused)"
        } else {
            "checked with the daemon stopped (the file was only read)"
        }
    );
    if r.recovered {
        out.push_str("  note         the file was not shut down cleanly (keyrot was killed, or the machine stopped): a copy recovered in memory was checked; the daemon recovers the file itself at its next start\n");
    }
    if r.tables.is_empty() {
        // Nothing could be read: only the problems say anything.
        return out + &problems(r);
    }
    let line = |name: &str, ok: bool, text: String| {
        format!("  {name:<12} {}{text}\n", if ok { "ok: " } else { "" })
    };
    out.push_str(&line(
        "integrity",
        r.integrity,
        if r.integrity {
            "every page checksum and the allocator state verified".into()
        } else {
            "NOT verified (see the problems below)".into()
        },
    ));
    out.push_str(&line(
        "schema",
        r.schema_version.is_some(),
        r.schema_version
            .map_or_else(|| "no version recorded".into(), |v| format!("version {v}")),
    ));
    out.push_str(&line(
        "audit log",
        r.audit_chain_ok,
        format!(
            "{} entries{}{}",
            r.audit_entries,
            if r.audit_first > 1 {
                format!(
                    " from entry {} (older ones deleted by [store] audit_retention)",
                    r.audit_first
                )
            } else {
                String::new()
            },
            if r.audit_chain_ok {
                ", hash chain and head verified"
            } else {
                ", hash chain NOT verified"
            }
        ),
    ));
    let sealed = r
        .tables
        .iter()
        .find(|t| t.table == "secrets")
        .map_or(0, |t| t.rows);
    out.push_str(&line(
        "secrets",
        r.secrets_checked && r.secrets_opened == sealed,
        if r.secrets_checked {
            format!(
                "{} of {sealed} sealed secrets open under the master key",
                r.secrets_opened
            )
        } else {
            format!("{sealed} sealed secrets NOT checked (no usable master key)")
        },
    ));
    let tables: Vec<String> = r
        .tables
        .iter()
        .map(|t| format!("{} {}", t.table, t.rows))
        .collect();
    out.push_str(&format!("  {:<12} {}\n", "rows", tables.join(", ")));
    out + &problems(r)
}

/// The verdict: no problems, or each problem and what to do.
fn problems(r: &VerifyReport) -> String {
    let mut out = String::new();
    if r.is_ok() {
        out.push_str("store verified: no problems found\n");
    } else {
        let n = r.problems.len();
        out.push_str(&format!("{n} problem{}:\n", if n == 1 { "" } else { "s" }));
        for p in &r.problems {
            out.push_str(&format!("  - {p}\n"));
        }
        if r.wrong_master_key && n == 1 {
            // Nothing else is wrong: the key is, not the file. A backup
            // is sealed under the same key and would fail the same way.
            out.push_str(
                "store verify FAILED on the master key only. keyrot has not changed the store, and the file itself checks out: run again with the key this store was created with (`--master-key-file`, `store.master_key_file`, or the unit's `master-key` credential). Do not restore a backup: it needs the same key.\n",
            );
        } else {
            out.push_str(&format!(
                "store verify FAILED. keyrot has not changed the store. Restore the last good backup (stop keyrot, copy the backup over {}, start keyrot), or keep the file aside for investigation.\n",
                r.path.display()
            ));
            if r.wrong_master_key {
                out.push_str("The master key given is not this store's: check the others again with the right key before restoring anything.\n");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyrot_core::store::{StoreStats, TableCount};

    fn report() -> VerifyReport {
        VerifyReport {
            path: "/var/lib/keyrot/state.redb".into(),
            live: true,
            recovered: false,
            integrity: true,
            schema_version: Some(1),
            tables: vec![
                TableCount {
                    table: "keys".into(),
                    rows: 2,
                },
                TableCount {
                    table: "secrets".into(),
                    rows: 1,
                },
            ],
            audit_entries: 7,
            audit_first: 1,
            audit_chain_ok: true,
            secrets_checked: true,
            secrets_opened: 1,
            wrong_master_key: false,
            problems: Vec::new(),
        }
    }

    #[test]
    fn renders_a_sound_store() {
        let text = render_verify(&report());
        assert_eq!(
            text,
            "store /var/lib/keyrot/state.redb, checked by the running daemon (copied while writes were paused)\n\
             \x20 integrity    ok: every page checksum and the allocator state verified\n\
             \x20 schema       ok: version 1\n\
             \x20 audit log    ok: 7 entries, hash chain and head verified\n\
             \x20 secrets      ok: 1 of 1 sealed secrets open under the master key\n\
             \x20 rows         keys 2, secrets 1\n\
             store verified: no problems found\n"
        );
    }

    #[test]
    fn renders_problems_and_what_to_do() {
        let mut r = report();
        r.audit_chain_ok = false;
        r.problems = vec!["audit chain broken at entry 4: x".into()];
        let text = render_verify(&r);
        assert!(text.contains("  audit log    7 entries, hash chain NOT verified\n"));
        assert!(text.contains("1 problem:\n  - audit chain broken at entry 4: x\n"));
        assert!(text.contains("store verify FAILED. keyrot has not changed the store."));
        assert!(text.contains("Restore the last good backup"));
    }

    #[test]
    fn a_wrong_master_key_alone_is_not_a_reason_to_restore() {
        let mut r = report();
        r.secrets_checked = false;
        r.wrong_master_key = true;
        r.problems = vec!["the master key given is not the one this store was created with: its secrets cannot be checked".into()];
        let text = render_verify(&r);
        assert!(text.contains("FAILED on the master key only"), "{text}");
        assert!(text.contains("Do not restore a backup"), "{text}");
        assert!(!text.contains("Restore the last good backup"), "{text}");
        // With another problem, restoring is advised, with a warning.
        r.problems.push("audit chain broken at entry 4: x".into());
        let text = render_verify(&r);
        assert!(text.contains("Restore the last good backup"), "{text}");
        assert!(
            text.contains("check the others again with the right key"),
            "{text}"
        );
    }

    #[test]
    fn backup_output_says_the_key_is_not_in_it() {
        let s = BackupSummary {
            path: "/root/b.redb".into(),
            bytes: 4096,
            stats: StoreStats {
                keys: 2,
                rotations: 3,
                secrets: 1,
                outbox_queued: 0,
                outbox_dead: 0,
                audit_entries: 9,
            },
            audit_entries: 9,
        };
        let text = render_backup(&s, "taken by the running daemon", None);
        assert!(text.starts_with("backup written: /root/b.redb (4096 bytes, mode 0600), one consistent snapshot taken by the running daemon\n"));
        assert!(text.contains("does NOT contain the master key"));
        assert!(text.contains("To restore: stop keyrot"));
    }
}
