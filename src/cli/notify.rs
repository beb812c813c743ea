//! `keyrot notify test [--to ADDRESS] [--webhook NAME]`: sends one test
//! message through the transport `[notify]` configures and one test event
//! to each webhook, from this process (not through the daemon and not
//! through the outbox), and prints its Message-ID and where it went. It reads the SMTP password the way the daemon does, so run it
//! as the daemon's user (under systemd: `systemd-run -p LoadCredential=...`
//! or a shell with `$CREDENTIALS_DIRECTORY`).

use std::path::Path;
use std::process::ExitCode;

use keyrot_config::{self as config, NotifyTransport, WebhookConfig};
use keyrot_core::clock::{Clock, SystemClock};
use keyrot_core::model::{DeliveryState, MessageKind, OutboxMessage};
use keyrot_engine::notify::transport::Mailer;
use keyrot_engine::notify::webhook;

/// Runs `keyrot notify test`: mail to `to` (when given) and one test
/// event to each webhook named in `webhooks` (every webhook when neither
/// is given). Exits 1 when any delivery failed.
pub fn test(config_path: &Path, to: &[String], webhooks: &[String]) -> anyhow::Result<ExitCode> {
    let cfg = match config::load(config_path) {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("keyrot: configuration {} is invalid", config_path.display());
            return Ok(ExitCode::from(1));
        }
    };
    let hooks: Vec<&WebhookConfig> = if webhooks.is_empty() && to.is_empty() {
        cfg.notify.webhooks.iter().collect()
    } else {
        let mut out = Vec::new();
        for name in webhooks {
            match cfg.notify.webhooks.iter().find(|h| &h.name == name) {
                Some(h) => out.push(h),
                None => {
                    let known: Vec<&str> = cfg
                        .notify
                        .webhooks
                        .iter()
                        .map(|h| h.name.as_str())
                        .collect();
                    eprintln!(
                        "keyrot: no [[notify.webhook]] named {name:?} in {} (webhooks: {})",
                        config_path.display(),
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    );
                    return Ok(ExitCode::from(1));
                }
            }
        }
        out
    };
    if to.is_empty() && hooks.is_empty() {
        eprintln!(
            "keyrot: nothing to test: give --to ADDRESS for email, or add a [[notify.webhook]] to {} \
             (see docs/notifications.md)",
            config_path.display()
        );
        return Ok(ExitCode::from(1));
    }
    if !to.is_empty() && cfg.notify.transport == NotifyTransport::None {
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
        let mut ok = true;
        if !to.is_empty() {
            ok &= mail_test(&cfg, to).await?;
        }
        for h in hooks {
            ok &= webhook_test(h).await?;
        }
        Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}

/// The test mail; whether it was delivered.
async fn mail_test(cfg: &config::Config, to: &[String]) -> anyhow::Result<bool> {
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
            Ok(true)
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
            Ok(false)
        }
    }
}

/// One test event to `hook`, signed like real ones; whether the receiver
/// took it.
async fn webhook_test(hook: &WebhookConfig) -> anyhow::Result<bool> {
    let now = SystemClock.now();
    let m = test_message(&[], &format!("webhook {:?}", hook.name));
    let vars = keyrot_engine::notify::render::Vars::new();
    let host = keyrot_core::model::host_name();
    let event = webhook::Event {
        kind: MessageKind::Test,
        id: &m.id,
        subject: &m.subject,
        text: &m.body,
        vars: &vars,
        host: &host,
        at: now,
    };
    let body = webhook::finish(&webhook::payload(hook.format, &event), &m.id, "test");
    match webhook::deliver(hook, MessageKind::Test, &m.id, &body, 1, now).await {
        Ok(()) => {
            super::output::outln(&format!(
                "test event {} delivered to webhook {:?} ({} format)",
                m.id,
                hook.name,
                hook.format.as_str()
            ))?;
            Ok(true)
        }
        Err(e) => {
            let hint = if e.transient {
                " (temporary: try again later)"
            } else {
                ""
            };
            eprintln!("keyrot: test event {} not delivered: {e}{hint}", m.id);
            Ok(false)
        }
    }
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
        channel: keyrot_core::model::Channel::Mail,
        thread: None,
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
