//! `[notify]`: the sender address, SMTP defaults that follow the security mode, authentication, CA file and timeout, sendmail.

use std::path::Path;

use super::*;
use crate::load_str;
use crate::tests::{NAME, assert_one, errors};

fn ok(text: &str) -> NotifyConfig {
    match load_str(Path::new(NAME), text) {
        Ok(cfg) => cfg.notify,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

fn smtp_of(text: &str) -> SmtpConfig {
    match ok(text).transport {
        NotifyTransport::Smtp(s) => s,
        other => panic!("not smtp: {other:?}"),
    }
}

#[test]
fn from_may_carry_a_display_name() {
    let n = ok("[notify]\nfrom = \"keyrot on vm <keyrot@example.com>\"\n");
    assert_eq!(n.from, "keyrot on vm <keyrot@example.com>");
    let n = ok("[notify]\nfrom = '\"keyrot, vm1\" <keyrot@example.com>'\n");
    assert_eq!(n.from, "\"keyrot, vm1\" <keyrot@example.com>");
    assert_eq!(
        ok("[notify]\nfrom = \"k@example.com\"\n").from,
        "k@example.com"
    );
    assert_one(
        "[notify]\nfrom = \"keyrot <not an address>\"\n",
        "2:8: `from`: \"keyrot <not an address>\" is not an address with a display name",
    );
    assert_one(
        "[notify]\nfrom = \"keyrot\"\n",
        "2:8: `from`: \"keyrot\" is not an email address",
    );
}

#[test]
fn smtp_defaults_follow_security() {
    let s = smtp_of("[notify]\ntransport = \"smtp\"\nhost = \"Mail.Example.com\"\n");
    assert_eq!(s.host, "mail.example.com");
    assert_eq!((s.port, s.security), (587, SmtpSecurity::StartTls));
    assert_eq!(s.timeout, DEFAULT_MAIL_TIMEOUT);
    assert!(s.auth.is_none() && s.ca_file.is_none());
    let s = smtp_of(
        "[notify]\ntransport = \"smtp\"\nhost = \"mail.example.com\"\nsecurity = \"tls\"\n",
    );
    assert_eq!((s.port, s.security), (465, SmtpSecurity::Tls));
    let s = smtp_of(
        "[notify]\ntransport = \"smtp\"\nhost = \"[::1]\"\nsecurity = \"none\"\nport = 2525\n",
    );
    assert_eq!((s.host.as_str(), s.port), ("::1", 2525));
    let s = smtp_of("[notify]\ntransport = \"smtp\"\nhost = \"localhost\"\nsecurity = \"none\"\n");
    assert_eq!(s.port, 25);
}

#[test]
fn smtp_auth_ca_file_and_timeout() {
    let s = smtp_of(
        "[notify]\ntransport = \"smtp\"\nhost = \"mail.example.com\"\nusername = \"keyrot\"\n\
         password = { credential = \"smtp-password\" }\nca_file = \"ca.pem\"\ntimeout = \"10s\"\n",
    );
    let auth = s.auth.unwrap();
    assert_eq!(auth.username, "keyrot");
    assert_eq!(auth.password, SecretRef::Credential("smtp-password".into()));
    assert_eq!(s.ca_file, Some(PathBuf::from("/etc/keyrot/ca.pem")));
    assert_eq!(s.timeout, SignedDuration::from_secs(10));
    let cfg = load_str(
        Path::new(NAME),
        "[notify]\ntransport = \"smtp\"\nhost = \"h\"\nusername = \"u\"\npassword = { env = \"P\" }\n",
    )
    .unwrap();
    let uses = crate::secret_refs(&cfg);
    assert_eq!(uses.len(), 1);
    assert_eq!(
        (uses[0].owner.as_str(), uses[0].field),
        ("[notify]", "password")
    );
    assert_eq!(
        transport_summary(&cfg.notify.transport),
        "smtp h:587 (starttls, AUTH as u, timeout 30s)"
    );
}

#[test]
fn sendmail_defaults_and_command() {
    let NotifyTransport::Sendmail(s) = ok("[notify]\ntransport = \"sendmail\"\n").transport else {
        panic!("not sendmail");
    };
    assert_eq!(s.command, PathBuf::from(DEFAULT_SENDMAIL));
    assert_eq!(s.timeout, DEFAULT_MAIL_TIMEOUT);
    assert_eq!(
        transport_summary(&NotifyTransport::Sendmail(s)),
        "sendmail /usr/sbin/sendmail (timeout 30s)"
    );
    assert_one(
        "[notify]\ntransport = \"sendmail\"\ncommand = \"sendmail\"\n",
        "3:11: `command` \"sendmail\" must be the absolute path",
    );
    assert_one(
        "[notify]\ntransport = \"sendmail\"\ncommand = \"/usr/sbin/sendmail -t\"\n",
        "3:11: `command` \"/usr/sbin/sendmail -t\" must be the absolute path",
    );
}

#[test]
fn smtp_errors_point_at_the_field() {
    assert_one(
        "[notify]\ntransport = \"smtp\"\n",
        "2:13: transport = \"smtp\" needs `host`",
    );
    assert_one(
        "[notify]\ntransport = \"smtp\"\nhost = \"mail.example.com\"\nsecurity = \"none\"\n",
        "4:12: security = \"none\" would send mail (and any password) to \"mail.example.com\" unencrypted",
    );
    assert_one(
        "[notify]\ntransport = \"smtp\"\nhost = \"h\"\nsecurity = \"starttsl\"\n",
        "4:12: unknown security \"starttsl\" (did you mean \"starttls\"?)",
    );
    assert_one(
        "[notify]\ntransport = \"smtp\"\nhost = \"smtp://h:25\"\n",
        "3:8: `host` \"smtp://h:25\" is not a host name or IP address",
    );
    assert_one(
        "[notify]\ntransport = \"smtp\"\nhost = \"h\"\nport = 70000\n",
        "4:8: `port` must be within 1-65535",
    );
    assert_one(
        "[notify]\ntransport = \"smtp\"\nhost = \"h\"\nusername = \"u\"\n",
        "4:12: `username` needs `password`",
    );
    assert_one(
        "[notify]\ntransport = \"smtp\"\nhost = \"h\"\npassword = { env = \"P\" }\n",
        "4:12: `password` needs `username`",
    );
    assert_one(
        "[notify]\ntransport = \"smtp\"\nhost = \"h\"\nusername = \"u\"\npassword = \"hunter2\"\n",
        "5:12: inline secrets are not allowed",
    );
    assert_one(
        "[notify]\ntransport = \"smtp\"\nhost = \"127.0.0.1\"\nsecurity = \"none\"\nca_file = \"/ca.pem\"\n",
        "5:11: `ca_file` is only used with security = \"starttls\" or \"tls\"",
    );
    assert_one(
        "[notify]\ntransport = \"smtp\"\nhost = \"h\"\ntimeout = \"0s\"\n",
        "4:11: `timeout` must be greater than 0s",
    );
    // No message repeats the password, even when it was pasted inline.
    let errs = errors(
        "[notify]\ntransport = \"smtp\"\nhost = \"h\"\nusername = \"u\"\npassword = \"hunter2\"\n",
    );
    assert!(errs.iter().all(|e| !e.contains("hunter2")), "{errs:?}");
}

#[test]
fn fields_of_another_transport_are_refused() {
    assert_one(
        "[notify]\ntransport = \"file\"\ndir = \"mail\"\nhost = \"h\"\n",
        "4:8: `host` is only used with transport = \"smtp\"",
    );
    assert_one(
        "[notify]\ntransport = \"smtp\"\nhost = \"h\"\ncommand = \"/usr/sbin/sendmail\"\n",
        "4:11: `command` is only used with transport = \"sendmail\"",
    );
    assert_one(
        "[notify]\ndir = \"mail\"\n",
        "2:7: `dir` is only used with transport = \"file\"",
    );
    assert_one(
        "[notify]\ntransport = \"file\"\ndir = \"mail\"\ntimeout = \"5s\"\n",
        "4:11: `timeout` is only used with transport = \"smtp\" or \"sendmail\"",
    );
    assert_one(
        "[notify]\ntransport = \"smpt\"\n",
        "2:13: unknown transport \"smpt\" (did you mean \"smtp\"?)",
    );
}
