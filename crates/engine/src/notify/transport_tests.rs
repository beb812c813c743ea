//! SMTP failures against a server that is not what the configuration
//! says (a plain port for `security = "tls"`): how they are classified
//! and how often they are reported. The peer is a plain TCP listener on
//! loopback that answers like an SMTP server without TLS.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::transport::Mailer;
use keyrot_config::{NotifyConfig, NotifyTransport, SmtpConfig, SmtpSecurity};
use keyrot_core::model::{DeliveryState, MessageKind, OutboxMessage};

/// A plain SMTP greeting on every connection; counts the connections.
async fn plain_smtp() -> (u16, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = tx.send(());
            tokio::spawn(async move {
                let _ = s.write_all(b"220 mail.example.com ESMTP plain\r\n").await;
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let _ = s.write_all(b"500 what?\r\n").await;
                }
            });
        }
    });
    (port, rx)
}

fn tls_to(port: u16) -> NotifyConfig {
    NotifyConfig {
        from: "keyrot@example.com".into(),
        transport: NotifyTransport::Smtp(SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            security: SmtpSecurity::Tls,
            auth: None,
            timeout: jiff::SignedDuration::from_secs(5),
            ca_file: None,
        }),
        ..NotifyConfig::default()
    }
}

fn msg(to: &[&str]) -> OutboxMessage {
    OutboxMessage {
        id: "r1.completed".into(),
        kind: MessageKind::Test,
        to: to.iter().map(|t| t.to_string()).collect(),
        subject: "[keyrot] test".into(),
        body: "plain body\n".into(),
        html: None,
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
async fn implicit_tls_to_a_plain_port_is_permanent_with_a_hint_and_reported_once() {
    let (port, mut conns) = plain_smtp().await;
    let m = Mailer::build(&tls_to(port), None).await.unwrap();
    let f = m
        .send(&msg(&["a@example.com", "b@example.com", "c@example.com"]))
        .await
        .unwrap_err();
    assert!(!f.error.transient, "{}", f.error.message);
    assert!(
        f.error.message.contains("does not speak TLS")
            && f.error.message.contains("security = \"starttls\""),
        "{}",
        f.error.message
    );
    // One error for the message, not one per recipient.
    assert_eq!(
        f.error
            .message
            .matches(&format!("127.0.0.1:{port}"))
            .count(),
        1,
        "{}",
        f.error.message
    );
    assert!(f.remaining.is_none());
    m.shutdown().await;
    let mut n = 0;
    while conns.try_recv().is_ok() {
        n += 1;
    }
    assert_eq!(
        n, 1,
        "one connection: no per-recipient retry of a handshake"
    );
}
