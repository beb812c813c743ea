//! `keyrot notify test --to ADDRESS`: sends one test message through the
//! transport `[notify]` configures, from this process (not through the
//! daemon and not through the outbox), and prints its Message-ID and where
//! it went. It reads the SMTP password the way the daemon does, so run it
//! as the daemon's user (under systemd: `systemd-run -p LoadCredential=...`
//! or a shell with `$CREDENTIALS_DIRECTORY`).

use std::path::Path;
use std::process::ExitCode;

use crate::clock::{Clock, SystemClock};
use crate::config::{self, NotifyTransport};
use crate::model::{DeliveryState, MessageKind, OutboxMessage};
use crate::notify::transport::Mailer;

/// Runs `keyrot notify test`.
pub fn test(config_path: &Path, to: &[String]) -> anyhow::Result<ExitCode> {
    let cfg = match config::load(config_path) {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("keyrot: configuration {} is invalid", config_path.display());
            return Ok(ExitCode::from(1));
        }
    };
    if cfg.notify.transport == NotifyTransport::None {
        eprintln!(
            "keyrot: [notify] transport is \"none\" in {}: keyrot sends no email. Set transport = \"smtp\" \
             (or \"sendmail\" or \"file\") and its settings first (see docs/notifications.md)",
            config_path.display()
        );
        return Ok(ExitCode::from(1));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mailer = Mailer::build(&cfg.notify, config::credentials_dir_from_env())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let message = test_message(to, &mailer.describe());
        let message_id = mailer.message_id(&message.id);
        let result = mailer.send(&message).await;
        mailer.shutdown().await;
        match result {
            Ok(()) => {
                super::output::outln(&format!(
                    "test message {message_id} sent to {} through {}",
                    to.join(", "),
                    mailer.describe()
                ))?;
                if cfg.notify.dry_run {
                    super::output::outln(
                        "note: notify.dry_run is on, so the daemon itself only logs its messages",
                    )?;
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(f) => {
                let hint = if f.error.transient {
                    " (temporary: try again later)"
                } else {
                    ""
                };
                eprintln!(
                    "keyrot: test message {message_id} to {} not delivered: {}{hint}",
                    to.join(", "),
                    f.error
                );
                Ok(ExitCode::from(1))
            }
        }
    })
}

/// The test message: plain text and an HTML alternative, like real ones.
fn test_message(to: &[String], via: &str) -> OutboxMessage {
    let now = SystemClock.now();
    let at = now.strftime("%Y-%m-%d %H:%M:%S UTC");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "this host".into());
    let body = format!(
        "This is a test message from keyrot on {host}, sent by `keyrot notify test` at {at}\n\
         through {via}.\n\nIf you read this, keyrot's notifications reach you. No action is needed.\n"
    );
    let html = format!(
        "<!DOCTYPE html>\n<html><body>\n<p>This is a test message from keyrot on <b>{}</b>, sent by \
         <code>keyrot notify test</code> at {at} through {}.</p>\n<p>If you read this, keyrot's \
         notifications reach you. No action is needed.</p>\n</body></html>\n",
        escape(&host),
        escape(via)
    );
    OutboxMessage {
        id: format!("test.{}", uuid::Uuid::now_v7()),
        kind: MessageKind::Test,
        to: to.to_vec(),
        subject: format!("[keyrot] test message from {host}"),
        body,
        html: Some(html),
        state: DeliveryState::Queued,
        attempts: 0,
        next_attempt_at: now,
        last_error: None,
        created_at: now,
    }
}

/// Text escaped for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_message_has_both_parts_and_a_test_id() {
        let m = test_message(&["ops@example.com".into()], "smtp <h>:25 (none)");
        assert!(m.id.starts_with("test."));
        assert_eq!(m.kind, MessageKind::Test);
        assert!(m.body.contains("smtp <h>:25 (none)"));
        assert!(m.html.unwrap().contains("smtp &lt;h&gt;:25 (none)"));
    }
}
