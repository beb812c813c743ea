//! Unit tests of the mail transports.

use super::*;
use keyrot_core::model::{DeliveryState, MessageKind};

fn cfg(transport: NotifyTransport) -> NotifyConfig {
    NotifyConfig {
        from: "keyrot@example.com".into(),
        transport,
        ..NotifyConfig::default()
    }
}

fn msg(id: &str, to: &[&str], html: Option<&str>) -> OutboxMessage {
    OutboxMessage {
        id: id.into(),
        kind: MessageKind::Test,
        to: to.iter().map(|t| t.to_string()).collect(),
        subject: "[keyrot] test".into(),
        body: "plain body\n".into(),
        html: html.map(str::to_string),
        channel: keyrot_core::model::Channel::Mail,
        thread: None,
        state: DeliveryState::Queued,
        attempts: 0,
        next_attempt_at: jiff::Timestamp::UNIX_EPOCH,
        last_error: None,
        created_at: jiff::Timestamp::UNIX_EPOCH,
    }
}

#[tokio::test]
async fn message_id_uses_the_from_domain_and_stays_valid() {
    let m = Mailer::build(&cfg(NotifyTransport::None), None)
        .await
        .unwrap();
    assert_eq!(m.message_id("r1.completed"), "<r1.completed@example.com>");
    assert_eq!(m.message_id("a b@c"), "<a=20b=40c@example.com>");
    assert_eq!(m.message_id("p/k.expiry.7d"), "<p/k.expiry.7d@example.com>");
}

#[tokio::test]
async fn message_ids_carry_the_installation_and_a_rotation_threads() {
    let mut a = Mailer::build(&cfg(NotifyTransport::None), None)
        .await
        .unwrap();
    let mut b = Mailer::build(&cfg(NotifyTransport::None), None)
        .await
        .unwrap();
    a.set_installation(Some("aaaa".into()));
    b.set_installation(Some("bbbb".into()));
    // Two installations sharing a domain never share a Message-ID.
    assert_eq!(
        a.message_id("digest.2026-12-07.0123456789ab"),
        "<digest.2026-12-07.0123456789ab.aaaa@example.com>"
    );
    assert_ne!(a.message_id("r1.completed"), b.message_id("r1.completed"));
    let mut m = msg("r1.revoked", &["a@example.com"], None);
    m.thread = Some("rotation.r1".into());
    let raw = String::from_utf8(a.email(&m).unwrap().formatted()).unwrap();
    assert!(
        raw.contains("Message-ID: <r1.revoked.aaaa@example.com>\r\n"),
        "{raw}"
    );
    assert!(
        raw.contains("In-Reply-To: <rotation.r1.aaaa@example.com>\r\n"),
        "{raw}"
    );
    assert!(
        raw.contains("References: <rotation.r1.aaaa@example.com>\r\n"),
        "{raw}"
    );
}

#[tokio::test]
async fn a_from_with_a_display_name_names_the_sender_and_keeps_the_domain() {
    let mut c = cfg(NotifyTransport::None);
    c.from = "keyrot on vm <keyrot@example.com>".into();
    let m = Mailer::build(&c, None).await.unwrap();
    assert_eq!(m.message_id("r1.completed"), "<r1.completed@example.com>");
    let raw = String::from_utf8(
        m.email(&msg("r1.completed", &["a@example.com"], None))
            .unwrap()
            .formatted(),
    )
    .unwrap();
    assert!(
        raw.contains("From: \"keyrot on vm\" <keyrot@example.com>\r\n")
            || raw.contains("From: keyrot on vm <keyrot@example.com>\r\n"),
        "{raw}"
    );
}

#[tokio::test]
async fn emails_have_headers_and_parts() {
    let m = Mailer::build(&cfg(NotifyTransport::None), None)
        .await
        .unwrap();
    let plain = String::from_utf8(
        m.email(&msg(
            "r1.completed",
            &["a@example.com", "b@example.com"],
            None,
        ))
        .unwrap()
        .formatted(),
    )
    .unwrap();
    assert!(
        plain.contains("Message-ID: <r1.completed@example.com>\r\n"),
        "{plain}"
    );
    assert!(
        plain.contains("Auto-Submitted: auto-generated\r\n"),
        "{plain}"
    );
    assert!(
        plain.contains("List-Id: keyrot <keyrot.example.com>\r\n"),
        "{plain}"
    );
    assert!(
        plain.contains("To: a@example.com, b@example.com\r\n"),
        "{plain}"
    );
    assert!(
        plain.contains("Content-Type: text/plain; charset=utf-8"),
        "{plain}"
    );
    let both = String::from_utf8(
        m.email(&msg(
            "r1.completed",
            &["a@example.com"],
            Some("<p>html body</p>"),
        ))
        .unwrap()
        .formatted(),
    )
    .unwrap();
    assert!(both.contains("multipart/alternative"), "{both}");
    assert!(both.contains("text/html"), "{both}");
    assert!(both.contains("<p>html body</p>"), "{both}");
    let bad = m.email(&msg("x", &["not an address"], None)).unwrap_err();
    assert!(!bad.transient && bad.message.contains("not an address"));
}

#[tokio::test]
async fn file_transport_writes_one_eml_per_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mail");
    let m = Mailer::build(&cfg(NotifyTransport::File { dir: out.clone() }), None)
        .await
        .unwrap();
    assert!(m.describe().contains("mail"));
    m.send(&msg("r1.completed", &["a@example.com"], None))
        .await
        .unwrap();
    let files: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert_eq!(files.len(), 1);
}

#[tokio::test]
async fn an_unreadable_password_or_ca_file_fails_the_build_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = |ca: Option<PathBuf>, pw: Option<keyrot_config::SecretRef>| {
        cfg(NotifyTransport::Smtp(SmtpConfig {
            host: "127.0.0.1".into(),
            port: 2525,
            security: SmtpSecurity::StartTls,
            auth: pw.map(|password| keyrot_config::SmtpAuth {
                username: "u".into(),
                password,
            }),
            timeout: jiff::SignedDuration::from_secs(5),
            ca_file: ca,
        }))
    };
    let missing = dir.path().join("missing");
    let e = Mailer::build(
        &smtp(None, Some(keyrot_config::SecretRef::File(missing.clone()))),
        None,
    )
    .await
    .err()
    .unwrap();
    assert!(e.message.contains("`password`"), "{}", e.message);
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "nothing here").unwrap();
    let e = Mailer::build(&smtp(Some(not_pem), None), None)
        .await
        .err()
        .unwrap();
    assert!(
        e.message.contains("holds no PEM certificate"),
        "{}",
        e.message
    );
    let ok = Mailer::build(&smtp(None, None), None).await.unwrap();
    assert_eq!(ok.describe(), "smtp 127.0.0.1:2525 (starttls)");
    // `preflight` finds the same problems without a runtime or a network.
    let e = preflight(
        &smtp(None, Some(keyrot_config::SecretRef::File(missing))),
        None,
    )
    .unwrap_err();
    assert!(e.message.contains("`password`"), "{}", e.message);
    preflight(&smtp(None, None), None).unwrap();
}

#[tokio::test]
async fn sendmail_gets_the_envelope_in_argv_and_the_message_on_stdin() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("sendmail");
    let log = dir.path().join("argv");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {}\ncat > {}.msg\nenv > {}.env\n[ \"$2\" = -f ] || exit 64\nexit 0\n",
            log.display(),
            log.display(),
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let m = Mailer::build(
        &cfg(NotifyTransport::Sendmail(SendmailConfig {
            command: script.clone(),
            timeout: jiff::SignedDuration::from_secs(10),
        })),
        None,
    )
    .await
    .unwrap();
    m.send(&msg(
        "r1.completed",
        &["a@example.com", "b@example.com"],
        None,
    ))
    .await
    .unwrap();
    let argv = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        argv,
        "-i\n-f\nkeyrot@example.com\n--\na@example.com\nb@example.com\n"
    );
    let body = std::fs::read_to_string(format!("{}.msg", log.display())).unwrap();
    assert!(body.contains("Message-ID: <r1.completed@example.com>"));
    let env = std::fs::read_to_string(format!("{}.env", log.display())).unwrap();
    assert!(!env.contains("HOME="), "{env}");
    // A failing program is an error with its exit code.
    std::fs::write(&script, "#!/bin/sh\necho 'no such user' >&2\nexit 67\n").unwrap();
    let f = m
        .send(&msg("r2", &["a@example.com"], None))
        .await
        .unwrap_err();
    assert!(!f.error.transient);
    assert!(
        f.error.message.contains("exited with 67: no such user"),
        "{}",
        f.error.message
    );
    std::fs::write(&script, "#!/bin/sh\nexit 75\n").unwrap();
    let f = m
        .send(&msg("r3", &["a@example.com"], None))
        .await
        .unwrap_err();
    assert!(f.error.transient, "{}", f.error.message);
}
