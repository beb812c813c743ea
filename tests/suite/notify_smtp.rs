//! Notifications through a real SMTP server (aiosmtpd on loopback, see
//! `tests/smtp_server.py`) and through a sendmail program, driven by the real
//! daemon: a completed rotation mails its contacts (envelope, headers, both
//! bodies, no secret anywhere), a message queued while the server is down
//! or answering 4xx is delivered later with the same Message-ID, a kill -9
//! loses nothing and sends nothing twice, STARTTLS with a private CA and
//! AUTH with a password from a secret reference work and never log the
//! password, a refused recipient does not hold the others back, and
//! `keyrot notify test` delivers.

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use common::smtp::{Received, SmtpOptions, SmtpServer, make_cert, smtp_notify, with_notify};
use common::{Daemon, all_files, base_config, wait_until};
use sha2::Digest as _;

/// Long enough for a retry after the first backoff (15 s) on a busy machine.
const DELIVERY: Duration = Duration::from_secs(90);

/// A daemon config with `notify` as its `[notify]`: the local provider and
/// one key `alpha`, whose policy notifies two addresses and whose own
/// contacts add one more (and repeat one in another case).
fn daemon_config(notify: &str) -> String {
    let mut s = with_notify(&base_config(3), notify);
    s.push_str(
        r#"
[[provider]]
name = "local"
type = "local"
default_lifetime = "1h"

[[policy]]
name = "mail"
new_key_lifetime = "1h"
rotate_before_expiry = "10m"
overlap = "0s"
jitter = false
notify = ["ops@example.com", "Sec@Example.com"]

[[key]]
name = "alpha"
provider = "local"
policy = "mail"
sinks = ["out"]
scopes = ["read:all"]
contacts = ["owner@example.com", "sec@example.com"]
"#,
    );
    s
}

/// The recipients every message about `alpha` goes to, lower-cased, sorted.
const RECIPIENTS: [&str; 3] = ["ops@example.com", "owner@example.com", "sec@example.com"];

/// A temporary directory for servers and files outside the daemon's.
fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("krmail").tempdir().unwrap()
}

/// Waits until `alpha` has its first key in the sink; returns its secret.
fn first_key_secret(d: &Daemon) -> String {
    let ok = wait_until(Duration::from_secs(60), || {
        d.status()["keys"][0]["rotation_state"] == "completed" && d.sink("alpha").is_some()
    });
    assert!(ok, "no first key; log:\n{}", d.log());
    sink_secret(d)
}

/// Starts a manual rotation of `alpha` (once the daemon has its first key)
/// and returns its id.
fn rotate(d: &Daemon) -> String {
    let mut id = None;
    let started = wait_until(Duration::from_secs(60), || {
        let out = d.cli(&["rotate", "alpha", "--reason", "mail test", "--json"]);
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            id = v["id"].as_str().map(str::to_string);
        }
        id.is_some()
    });
    assert!(started, "rotate never started; log:\n{}", d.log());
    id.unwrap()
}

/// Waits until rotation `id` is Completed.
fn wait_completed(d: &Daemon, id: &str) {
    let done = wait_until(Duration::from_secs(60), || {
        d.rotation(id)["state"] == "Completed"
    });
    assert!(done, "rotation {id} did not complete; log:\n{}", d.log());
}

/// How the Message-ID keyrot gives the completion message of rotation
/// `id` starts (the installation's id and the domain follow).
fn completed_id(id: &str) -> String {
    format!("<{id}.completed.")
}

/// The messages whose Message-ID starts with `mid`.
fn with_id(mails: &[Received], mid: &str) -> Vec<Received> {
    mails
        .iter()
        .filter(|m| m.message_id().starts_with(mid))
        .cloned()
        .collect()
}

/// Waits until `server` accepted a message with Message-ID `mid`.
fn wait_for_id(server: &SmtpServer, d: &Daemon, mid: &str) -> Received {
    let ok = wait_until(DELIVERY, || !with_id(&server.accepted(), mid).is_empty());
    assert!(
        ok,
        "no message {mid} accepted; server log:\n{}\ndaemon log:\n{}",
        server.log(),
        d.log()
    );
    with_id(&server.accepted(), mid).remove(0)
}

/// The outbox counters of `keyrot status --json`.
fn outbox(d: &Daemon) -> (u64, u64) {
    let st = d.json(&["status", "--json"]);
    (
        st["outbox_queued"].as_u64().unwrap(),
        st["outbox_dead"].as_u64().unwrap(),
    )
}

/// Every form of `secret` that must never appear in a message: the bytes,
/// base64 (standard and URL-safe) and the SHA-256 in hex.
fn forms(secret: &str) -> Vec<String> {
    assert!(secret.len() >= 16, "suspiciously short secret {secret:?}");
    let hash = sha2::Sha256::digest(secret.as_bytes());
    vec![
        secret.to_string(),
        base64::engine::general_purpose::STANDARD.encode(secret),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
        hash.iter().map(|b| format!("{b:02x}")).collect(),
    ]
}

/// No form of any of `secrets` is in the raw message or a decoded part.
fn assert_no_secret(mail: &Received, secrets: &[String]) {
    let raw = String::from_utf8_lossy(&mail.raw);
    for s in secrets {
        for f in forms(s) {
            assert!(!raw.contains(&f), "a secret form is in the raw message");
            for (ct, text) in &mail.parts {
                assert!(!text.contains(&f), "a secret form is in the {ct} part");
            }
        }
    }
}

/// The sink's current secret of `alpha`.
fn sink_secret(d: &Daemon) -> String {
    d.sink("alpha").unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Lower-cased, sorted addresses.
fn norm(list: &[String]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|a| a.to_lowercase()).collect();
    v.sort();
    v
}

#[test]
fn a_completed_rotation_mails_its_contacts_over_smtp_without_any_secret() {
    let t = tmp();
    let server = SmtpServer::start_new(&t.path().join("smtp"), SmtpOptions::default());
    let mut d = Daemon::new(&daemon_config(&smtp_notify(&server, "none", "")));
    d.start();
    let old_secret = first_key_secret(&d);
    let id = rotate(&d);
    wait_completed(&d, &id);
    let new_secret = sink_secret(&d);

    let mid = completed_id(&id);
    let mail = wait_for_id(&server, &d, &mid);
    assert_eq!(mail.mail_from, "keyrot@example.com");
    assert_eq!(norm(&mail.rcpt_tos), RECIPIENTS);
    assert!(!mail.tls && mail.auth_user.is_none());
    assert_eq!(mail.header("From"), Some("keyrot@example.com"));
    let to = mail.header("To").unwrap().to_lowercase();
    for r in RECIPIENTS {
        assert!(to.contains(r), "To: {to}");
    }
    let subject = mail.header("Subject").unwrap();
    assert!(
        subject.starts_with("[keyrot] rotated local/alpha (expires "),
        "{subject}"
    );
    assert_eq!(mail.header("Auto-Submitted"), Some("auto-generated"));
    assert!(mail.header("Date").is_some());
    let text = mail.part("text/plain").expect("a text/plain part");
    assert!(text.contains(&id), "{text}");
    assert!(text.contains("local/alpha"), "{text}");
    // The HTML alternative, when the message has one, says the same.
    let types: Vec<&str> = mail.parts.iter().map(|(t, _)| t.as_str()).collect();
    match mail.part("text/html") {
        Some(html) => {
            assert_eq!(types, ["text/plain", "text/html"]);
            assert!(
                mail.header("Content-Type")
                    .unwrap()
                    .starts_with("multipart/alternative"),
                "{:?}",
                mail.headers
            );
            assert!(html.contains(&id), "{html}");
        }
        None => assert_eq!(types, ["text/plain"]),
    }
    assert_no_secret(&mail, &[old_secret, new_secret.clone()]);
    for m in server.accepted() {
        assert_no_secret(&m, std::slice::from_ref(&new_secret));
    }
    // Delivered once; nothing left in the outbox; the log names it.
    assert_eq!(with_id(&server.accepted(), &mid).len(), 1);
    assert!(wait_until(Duration::from_secs(30), || outbox(&d) == (0, 0)));
    let log = d.log();
    assert!(
        log.contains("notification sent") && log.contains(&format!("{id}.completed")),
        "{log}"
    );
    assert!(!log.contains(&new_secret));
}

#[test]
fn a_message_queued_while_the_server_is_down_is_delivered_when_it_comes_back() {
    let t = tmp();
    let mut server = SmtpServer::new(&t.path().join("smtp"), SmtpOptions::default());
    let mut d = Daemon::new(&daemon_config(&smtp_notify(&server, "none", "")));
    d.start();
    let id = rotate(&d);
    wait_completed(&d, &id);
    // The first attempt failed (connection refused) and the message waits.
    let msg = format!("{id}.completed");
    assert!(
        wait_until(Duration::from_secs(30), || {
            let log = d.log();
            log.lines()
                .any(|l| l.contains("notification not delivered") && l.contains(&msg))
        }),
        "log:\n{}",
        d.log()
    );
    let (queued, dead) = outbox(&d);
    assert!(queued >= 1 && dead == 0, "{queued} queued, {dead} dead");
    let st = d.json(&["status", "--json"]);
    assert!(st["outbox_next_attempt_at"].is_string(), "{st}");
    let table = d.cli(&["status"]);
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("outbox: next delivery attempt"),
        "{}",
        String::from_utf8_lossy(&table.stdout)
    );

    server.start();
    let mid = completed_id(&id);
    let mail = wait_for_id(&server, &d, &mid);
    assert_eq!(norm(&mail.rcpt_tos), RECIPIENTS);
    assert!(wait_until(Duration::from_secs(60), || outbox(&d) == (0, 0)));
    assert_eq!(with_id(&server.accepted(), &mid).len(), 1);
}

#[test]
fn a_message_answered_451_is_retried_with_the_same_message_id() {
    let t = tmp();
    let server = SmtpServer::start_new(
        &t.path().join("smtp"),
        SmtpOptions {
            tempfail: 1,
            ..SmtpOptions::default()
        },
    );
    let mut d = Daemon::new(&daemon_config(&smtp_notify(&server, "none", "")));
    d.start();
    let id = rotate(&d);
    wait_completed(&d, &id);
    assert!(
        wait_until(Duration::from_secs(30), || !server.tempfailed().is_empty()),
        "nothing was answered 451; server log:\n{}",
        server.log()
    );
    let first = server.tempfailed().remove(0);
    let mid = first.message_id().to_string();
    let retried = wait_for_id(&server, &d, &mid);
    assert_eq!(retried.rcpt_tos, first.rcpt_tos);
    assert_eq!(retried.header("Subject"), first.header("Subject"));
    assert_eq!(with_id(&server.accepted(), &mid).len(), 1);
    let log = d.log();
    assert!(
        log.lines()
            .any(|l| l.contains("notification not delivered") && l.contains("451")),
        "{log}"
    );
}

#[test]
fn kill_9_with_an_undelivered_message_then_restart_delivers_it_once() {
    let t = tmp();
    let mut server = SmtpServer::new(&t.path().join("smtp"), SmtpOptions::default());
    let mut d = Daemon::new(&daemon_config(&smtp_notify(&server, "none", "")));
    d.start();
    let id = rotate(&d);
    wait_completed(&d, &id);
    let msg = format!("{id}.completed");
    assert!(
        wait_until(Duration::from_secs(30), || d.log().lines().any(|l| l
            .contains("notification not delivered")
            && l.contains(&msg))),
        "log:\n{}",
        d.log()
    );
    d.kill9();

    server.start();
    d.start();
    let mid = completed_id(&id);
    wait_for_id(&server, &d, &mid);
    assert!(wait_until(Duration::from_secs(60), || outbox(&d) == (0, 0)));
    // Once marked sent, a message is never sent again: exactly one copy of
    // every message, this one included.
    let mails = server.accepted();
    assert_eq!(with_id(&mails, &mid).len(), 1);
    let mut ids: Vec<&str> = mails.iter().map(Received::message_id).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "a message was delivered twice: {ids:?}");
}

/// Crash after the server accepted a message but before keyrot recorded
/// it: after the restart it is sent again, with the same Message-ID (at
/// least once, and the duplicate is recognisable).
#[cfg(feature = "failpoints")]
#[test]
fn a_crash_after_the_server_accepted_resends_with_the_same_message_id() {
    let t = tmp();
    let server = SmtpServer::start_new(&t.path().join("smtp"), SmtpOptions::default());
    let mut d = Daemon::new(&daemon_config(&smtp_notify(&server, "none", "")));
    d.env
        .push(("KEYROT_FAILPOINTS".into(), "after:mail-send=abort".into()));
    d.spawn();
    // The first message sent (the first key's, or a rotation's) aborts it.
    let ready = wait_until(Duration::from_secs(60), || {
        d.cli(&["rotate", "alpha", "--json"]).status.success() || !server.accepted().is_empty()
    });
    assert!(ready, "log:\n{}", d.log());
    assert!(
        d.wait_exit(Duration::from_secs(60)).is_some(),
        "the failpoint did not stop keyrot; log:\n{}",
        d.log()
    );
    let first = server.accepted();
    assert_eq!(first.len(), 1, "server log:\n{}", server.log());
    let mid = first[0].message_id().to_string();

    d.env.clear();
    d.start();
    let again = wait_until(DELIVERY, || with_id(&server.accepted(), &mid).len() == 2);
    assert!(again, "not sent again; log:\n{}", d.log());
    let copies = with_id(&server.accepted(), &mid);
    assert_eq!(copies[0].rcpt_tos, copies[1].rcpt_tos);
    assert_eq!(copies[0].header("Subject"), copies[1].header("Subject"));
}

/// A password file (0600) outside the daemon's directory.
fn password_file(dir: &Path, password: &str) -> std::path::PathBuf {
    fs::create_dir_all(dir).unwrap();
    let p = dir.join("smtp.pass");
    fs::write(&p, format!("{password}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    p
}

#[test]
fn starttls_with_a_private_ca_and_auth_from_a_secret_reference() {
    let t = tmp();
    let certs = make_cert(&t.path().join("certs"));
    let password = "Smtp-Pa55word-not-for-logs";
    let server_pass = password_file(&t.path().join("smtp"), password);
    let keyrot_pass = password_file(&t.path().join("keyrot"), password);
    let server = SmtpServer::start_new(
        &t.path().join("smtp"),
        SmtpOptions {
            tls: "starttls",
            certs: Some(certs.clone()),
            auth: Some(("keyrot".into(), server_pass)),
            ..SmtpOptions::default()
        },
    );
    let extra = format!(
        "ca_file = \"{}\"\nusername = \"keyrot\"\npassword = {{ file = \"{}\" }}\n",
        certs.ca.display(),
        keyrot_pass.display()
    );
    let mut d = Daemon::new(&daemon_config(&smtp_notify(&server, "starttls", &extra)));
    d.env.push(("RUST_LOG".into(), "debug".into()));
    d.start();
    let id = rotate(&d);
    wait_completed(&d, &id);
    let mail = wait_for_id(&server, &d, &completed_id(&id));
    assert!(mail.tls, "delivered without STARTTLS");
    assert_eq!(mail.auth_user.as_deref(), Some("keyrot"));
    assert_eq!(norm(&mail.rcpt_tos), RECIPIENTS);
    assert!(wait_until(Duration::from_secs(30), || outbox(&d) == (0, 0)));
    // `keyrot check` resolves the password reference and shows the transport.
    let check = d.cli(&["check"]);
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{out}");
    assert!(
        out.contains(&format!(
            "notify: smtp 127.0.0.1:{} (starttls, AUTH as keyrot, CA {}",
            server.port,
            certs.ca.display()
        )),
        "{out}"
    );
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(15)).is_some());
    // The password is nowhere: not in the log (at debug), the store, the mails.
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("\0keyrot\0{password}"));
    for (path, bytes) in all_files(&d.dir) {
        let hay = String::from_utf8_lossy(&bytes);
        assert!(!hay.contains(password), "password in {}", path.display());
        assert!(!hay.contains(&b64), "AUTH PLAIN in {}", path.display());
    }
    for m in server.accepted() {
        assert!(!String::from_utf8_lossy(&m.raw).contains(password));
    }
}

#[test]
fn a_refused_password_is_read_again_and_never_logged() {
    let t = tmp();
    let certs = make_cert(&t.path().join("certs"));
    let password = "Right-Pa55word-for-smtp";
    let wrong = "Wrong-Pa55word-for-smtp";
    let server_pass = password_file(&t.path().join("smtp"), password);
    let keyrot_pass = password_file(&t.path().join("keyrot"), wrong);
    let server = SmtpServer::start_new(
        &t.path().join("smtp"),
        SmtpOptions {
            tls: "starttls",
            certs: Some(certs.clone()),
            auth: Some(("keyrot".into(), server_pass)),
            ..SmtpOptions::default()
        },
    );
    let extra = format!(
        "ca_file = \"{}\"\nusername = \"keyrot\"\npassword = {{ file = \"{}\" }}\n",
        certs.ca.display(),
        keyrot_pass.display()
    );
    let mut d = Daemon::new(&daemon_config(&smtp_notify(&server, "starttls", &extra)));
    d.start();
    let id = rotate(&d);
    wait_completed(&d, &id);
    assert!(
        wait_until(Duration::from_secs(30), || d.log().lines().any(|l| l
            .contains("notification not delivered")
            && l.contains("535"))),
        "log:\n{}",
        d.log()
    );
    assert!(server.accepted().is_empty());
    // The operator fixes the password file: the next attempt reads it.
    fs::write(&keyrot_pass, format!("{password}\n")).unwrap();
    let mail = wait_for_id(&server, &d, &completed_id(&id));
    assert_eq!(mail.auth_user.as_deref(), Some("keyrot"));
    let log = d.log();
    assert!(!log.contains(password) && !log.contains(wrong), "{log}");
}

#[test]
fn implicit_tls_with_a_private_ca_through_notify_test() {
    let t = tmp();
    let certs = make_cert(&t.path().join("certs"));
    let server = SmtpServer::start_new(
        &t.path().join("smtp"),
        SmtpOptions {
            tls: "implicit",
            certs: Some(certs.clone()),
            ..SmtpOptions::default()
        },
    );
    let extra = format!("ca_file = \"{}\"\n", certs.ca.display());
    let d = Daemon::new(&daemon_config(&smtp_notify(&server, "tls", &extra)));
    let out = d.cli(&["notify", "test", "--to", "ops@example.com"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mails = server.wait_accepted(1, Duration::from_secs(30), &stdout);
    assert!(mails[0].tls);
    // Without the private CA the server's certificate is not trusted.
    let d = Daemon::new(&daemon_config(&smtp_notify(&server, "tls", "")));
    let out = d.cli(&["notify", "test", "--to", "ops@example.com"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid peer certificate") && stderr.contains("`ca_file`"),
        "{stderr}"
    );
    assert!(!stderr.contains("temporary"), "{stderr}");
    assert_eq!(server.accepted().len(), 1);
}

#[test]
fn notify_test_sends_through_the_configured_transport() {
    let t = tmp();
    let mut server = SmtpServer::start_new(&t.path().join("smtp"), SmtpOptions::default());
    let d = Daemon::new(&daemon_config(&smtp_notify(&server, "none", "")));
    // No daemon runs: the command sends from the CLI process itself.
    let out = d.cli(&["notify", "test", "--to", "someone@example.com"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = stdout
        .split_whitespace()
        .find(|w| w.starts_with("<test.") && w.ends_with("@example.com>"))
        .unwrap_or_else(|| panic!("no Message-ID printed: {stdout}"))
        .to_string();
    assert!(
        stdout.contains(&format!(
            "sent to someone@example.com through smtp 127.0.0.1:{} (none)",
            server.port
        )),
        "{stdout}"
    );
    let mails = server.wait_accepted(1, Duration::from_secs(30), &stdout);
    assert_eq!(mails[0].message_id(), printed);
    assert_eq!(mails[0].rcpt_tos, ["someone@example.com"]);
    let types: Vec<&str> = mails[0].parts.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types, ["text/plain", "text/html"]);
    assert!(
        mails[0]
            .header("Subject")
            .unwrap()
            .starts_with("[keyrot] test message")
    );

    // The server is down: a clear failure, exit 1.
    server.stop();
    let out = d.cli(&["notify", "test", "--to", "someone@example.com"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not delivered: smtp 127.0.0.1:")
            && stderr.contains("Connection refused")
            && stderr.contains("try again later"),
        "{stderr}"
    );

    // transport = "none": nothing to test, and it says so.
    let d = Daemon::new(&with_notify(
        &base_config(3),
        "[notify]\ntransport = \"none\"\n",
    ));
    let out = d.cli(&["notify", "test", "--to", "someone@example.com"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("transport is \"none\""), "{stderr}");
}

#[test]
fn a_refused_recipient_does_not_hold_back_the_others() {
    let t = tmp();
    let server = SmtpServer::start_new(
        &t.path().join("smtp"),
        SmtpOptions {
            reject: vec!["owner@example.com".into()],
            ..SmtpOptions::default()
        },
    );
    let mut d = Daemon::new(&daemon_config(&smtp_notify(&server, "none", "")));
    d.start();
    let id = rotate(&d);
    wait_completed(&d, &id);
    let mid = completed_id(&id);
    let got = wait_until(DELIVERY, || {
        let mut r: Vec<String> = with_id(&server.accepted(), &mid)
            .iter()
            .flat_map(|m| m.rcpt_tos.clone())
            .collect();
        r = norm(&r);
        r == ["ops@example.com", "sec@example.com"]
    });
    assert!(got, "server log:\n{}\nlog:\n{}", server.log(), d.log());
    // The refused address keeps the message queued for its retries, and
    // only it: the others are not mailed again.
    assert!(
        wait_until(Duration::from_secs(30), || d
            .log()
            .lines()
            .any(|l| l.contains("delivered to some recipients only")
                && l.contains(&format!("{id}.completed"))
                && l.contains("owner@example.com"))),
        "log:\n{}",
        d.log()
    );
    let (queued, _) = outbox(&d);
    assert!(queued >= 1);
}

#[test]
fn sendmail_gets_the_envelope_in_argv_the_message_on_stdin_and_no_secret() {
    let t = tmp();
    let spool = t.path().join("spool");
    fs::create_dir_all(&spool).unwrap();
    let script = t.path().join("fake-sendmail");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nd={}\nprintf '%s\\n' \"$@\" > \"$d/argv.$$\"\nenv > \"$d/env.$$\"\ncat > \"$d/msg.$$\"\nexit 0\n",
            spool.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let notify = format!(
        "[notify]\nfrom = \"keyrot@example.com\"\ntransport = \"sendmail\"\ncommand = \"{}\"\ntimeout = \"10s\"\n",
        script.display()
    );
    let mut d = Daemon::new(&daemon_config(&notify));
    // A variable of the daemon's environment never reaches the program.
    d.env
        .push(("KEYROT_TEST_DAEMON_ONLY".into(), "daemon-env-value".into()));
    d.start();
    let id = rotate(&d);
    wait_completed(&d, &id);
    let mid = completed_id(&id);
    let find = || {
        all_files(&spool).into_iter().find(|(p, b)| {
            p.file_name().unwrap().to_string_lossy().starts_with("msg.")
                && String::from_utf8_lossy(b).contains(&mid)
        })
    };
    assert!(
        wait_until(DELIVERY, || find().is_some()),
        "no message {mid} handed to sendmail; log:\n{}",
        d.log()
    );
    let (msg_path, msg) = find().unwrap();
    let pid = msg_path.extension().unwrap().to_string_lossy().to_string();
    let argv = fs::read_to_string(spool.join(format!("argv.{pid}"))).unwrap();
    let argv: Vec<&str> = argv.lines().collect();
    assert_eq!(
        argv[..4],
        ["-i", "-f", "keyrot@example.com", "--"],
        "{argv:?}"
    );
    let rcpts: Vec<String> = argv[4..].iter().map(|s| s.to_string()).collect();
    assert_eq!(norm(&rcpts), RECIPIENTS);
    let env = fs::read_to_string(spool.join(format!("env.{pid}"))).unwrap();
    assert!(!env.contains("daemon-env-value"), "{env}");
    let text = String::from_utf8_lossy(&msg);
    assert!(
        text.contains("Subject: [keyrot] rotated local/alpha"),
        "{text}"
    );
    let secret = sink_secret(&d);
    for f in forms(&secret) {
        assert!(!argv.iter().any(|a| a.contains(&f)));
        assert!(!text.contains(&f));
        assert!(!env.contains(&f));
    }
    assert!(wait_until(Duration::from_secs(30), || outbox(&d) == (0, 0)));
}
