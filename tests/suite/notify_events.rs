//! Notification events through the real daemon with the file transport
//! (`.eml` files in `mail/`): expiry notices once per rung of the ladder,
//! also across a restart; a failed rotation's mail with the operator's
//! commands; "new key live" as an overlap begins and one "old key revoked"
//! as it ends (no "completed" repeating it); and the
//! daily digest, once per day however often its schedule fires. Every
//! message is read back as a mail client would (MIME parts decoded) and
//! holds neither the secret nor its hash.

use crate::common;

use std::time::Duration;

use base64::Engine as _;
use common::{Daemon, all_files, base_config, wait_until};
use sha2::{Digest, Sha256};

/// One `.eml` file, decoded.
#[derive(Debug)]
struct Mail {
    /// Unfolded headers, in order.
    headers: Vec<(String, String)>,
    /// The text/plain part.
    text: String,
    /// The text/html part, if any.
    html: Option<String>,
    /// The file as written.
    raw: String,
}

impl Mail {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    }

    fn subject(&self) -> &str {
        self.header("Subject")
    }

    fn message_id(&self) -> &str {
        self.header("Message-ID")
    }

    /// Everything a reader sees: headers, text and HTML.
    fn all(&self) -> String {
        format!(
            "{:?}\n{}\n{}",
            self.headers,
            self.text,
            self.html.as_deref().unwrap_or_default()
        )
    }
}

/// Splits headers from body and unfolds the headers.
fn split(raw: &str) -> (Vec<(String, String)>, &str) {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = headers.last_mut() {
                v.push_str(line);
            }
        } else if let Some((n, v)) = line.split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    (headers, body)
}

fn get<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

/// Decodes a part's body by its Content-Transfer-Encoding.
fn decode(encoding: &str, body: &str) -> String {
    match encoding.to_ascii_lowercase().as_str() {
        "base64" => {
            let compact: String = body.split_whitespace().collect();
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .unwrap(),
            )
            .unwrap()
        }
        "quoted-printable" => {
            let joined = body.replace("=\r\n", "");
            let bytes = joined.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'=' && i + 2 < bytes.len() {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    if let Ok(b) = u8::from_str_radix(hex, 16) {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                }
                out.push(bytes[i]);
                i += 1;
            }
            String::from_utf8(out).unwrap()
        }
        _ => body.to_string(),
    }
    .replace("\r\n", "\n")
}

fn parse(raw: &str) -> Mail {
    let (headers, body) = split(raw);
    let ctype = get(&headers, "Content-Type").to_string();
    let (mut text, mut html) = (String::new(), None);
    if let Some(b) = ctype.split("boundary=").nth(1) {
        let boundary = format!("--{}", b.trim_matches('"').split(';').next().unwrap());
        for part in body.split(&boundary).skip(1) {
            let part = part.trim_start_matches("\r\n");
            if part.starts_with("--") {
                break;
            }
            let (ph, pb) = split(part);
            let decoded = decode(get(&ph, "Content-Transfer-Encoding"), pb);
            if get(&ph, "Content-Type").starts_with("text/html") {
                html = Some(decoded);
            } else {
                text = decoded;
            }
        }
    } else {
        text = decode(get(&headers, "Content-Transfer-Encoding"), body);
    }
    Mail {
        headers,
        text,
        html,
        raw: raw.to_string(),
    }
}

/// Every mail written so far.
fn mails(d: &Daemon) -> Vec<Mail> {
    all_files(&d.dir.join("mail"))
        .into_iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "eml"))
        .map(|(_, b)| parse(&String::from_utf8(b).unwrap()))
        .collect()
}

/// Mails whose Message-ID starts with `<prefix`.
fn with_id(d: &Daemon, prefix: &str) -> Vec<Mail> {
    mails(d)
        .into_iter()
        .filter(|m| m.message_id().starts_with(&format!("<{prefix}")))
        .collect()
}

/// Waits until the outbox is empty (everything queued was written).
fn wait_outbox_empty(d: &Daemon) {
    assert!(
        wait_until(Duration::from_secs(30), || d.status()["outbox_queued"] == 0),
        "outbox never drained; log:\n{}",
        d.log()
    );
}

/// A config with the local provider, policy `p` (`policy` is the rest of
/// its table; `notify = ["ops@example.com"]`) and keys owned by
/// `owner@example.com`.
fn config(attempts: u32, policy: &str, keys: &[&str]) -> String {
    let mut s = base_config(attempts);
    s.push_str(&format!(
        r#"
[[provider]]
name = "local"
type = "local"
default_lifetime = "1h"

[[policy]]
name = "p"
notify = ["ops@example.com"]
{policy}
"#
    ));
    for k in keys {
        s.push_str(&format!(
            "\n[[key]]\nname = \"{k}\"\nprovider = \"local\"\npolicy = \"p\"\nsinks = [\"out\"]\nscopes = [\"read:all\"]\ncontacts = [\"owner@example.com\"]\n"
        ));
    }
    s
}

/// The live secret of key `name` and its SHA-256, neither of which may
/// appear in any mail.
fn assert_no_secret_in_mail(d: &Daemon, name: &str) {
    let secret = d.sink(name).unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let hash = hex(&Sha256::digest(secret.as_bytes()));
    for m in mails(d) {
        for hay in [m.raw.as_str(), &m.all()] {
            assert!(!hay.contains(&secret), "secret in {}", m.subject());
            assert!(!hay.contains(&hash[..16]), "secret hash in {}", m.subject());
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn wait_state(d: &Daemon, id: &str, state: &str) -> serde_json::Value {
    let ok = wait_until(Duration::from_secs(60), || d.rotation(id)["state"] == state);
    assert!(ok, "rotation {id} never {state}; log:\n{}", d.log());
    d.json(&["rotation", "show", id, "--json"])
}

fn stop(d: &mut Daemon) {
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(20)).unwrap().success());
}

/// `log` without terminal colour codes.
fn plain(log: &str) -> String {
    let mut out = String::new();
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The log line each first pass of the ladder writes.
const LADDER: &str = "expiry-notice ladder: keys watched, next rung";

#[test]
fn expiry_notices_once_per_rung_and_not_again_after_a_restart() {
    // The key lives 1h. Rungs 2h and 1h30m are reached the moment it is
    // issued: only the most recent (1h30m) is sent, saying the time left. Rung 59m30s comes
    // 30 s later and wakes the ladder by its own timer.
    let policy = r#"auto_rotate = false
new_key_lifetime = "1h"
notify_before_expiry = ["2h", "90m", "59m30s"]
jitter = false"#;
    let mut d = Daemon::new(&config(3, policy, &["legacy"]));
    d.start();
    // auto_rotate is off: nothing issues the first key but a person.
    let id = d.rotate("local/legacy", "first key");
    wait_state(&d, &id, "Completed");
    let key_id = d.json(&["status", "--json"])["keys"][0]["key_id"]
        .as_str()
        .unwrap()
        .to_string();

    let ok = wait_until(Duration::from_secs(90), || {
        with_id(&d, "expiry.").len() >= 2
    });
    assert!(ok, "two expiry notices never came; log:\n{}", d.log());
    let notices = with_id(&d, "expiry.");
    let rungs: Vec<&str> = notices
        .iter()
        .map(|m| {
            m.text
                .lines()
                .find_map(|l| l.strip_prefix("Notice:          "))
                .unwrap()
        })
        .collect();
    // The 1h30m rung had passed when the key was issued: its notice says
    // the time really left (under an hour, in whole minutes), not 1h30m.
    assert!(!rungs.contains(&"1h30m before expiry"), "{rungs:?}");
    assert!(
        rungs.iter().any(|r| r
            .strip_suffix("m before expiry")
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (50..60).contains(&n))),
        "{rungs:?}"
    );
    assert!(rungs.contains(&"59m30s before expiry"), "{rungs:?}");
    assert_eq!(notices.len(), 2, "{rungs:?}");
    for m in &notices {
        // The instant it expires, never "in 59 minutes": the notice may be
        // delivered later than it was written.
        assert!(
            m.subject().starts_with("[keyrot] expires 20")
                && m.subject().ends_with(" UTC: local/legacy"),
            "{}",
            m.subject()
        );
        assert!(
            m.header("To").contains("ops@example.com"),
            "{:?}",
            m.headers
        );
        assert!(
            m.header("To").contains("owner@example.com"),
            "{:?}",
            m.headers
        );
        assert!(
            m.text
                .contains(&format!("The key {key_id} of local/legacy")),
            "{}",
            m.text
        );
        assert!(m.text.contains("keyrot rotate local/legacy"), "{}", m.text);
        let html = m.html.as_deref().unwrap();
        assert!(html.contains("<code>auto_rotate = false</code>"), "{html}");
    }
    wait_outbox_empty(&d);

    // A restart looks at the ladder again and finds both rungs sent.
    stop(&mut d);
    let passes = d.log().matches(LADDER).count();
    d.start();
    assert!(
        wait_until(Duration::from_secs(30), || d.log().matches(LADDER).count()
            > passes),
        "the ladder never ran after the restart; log:\n{}",
        d.log()
    );
    wait_outbox_empty(&d);
    assert_eq!(with_id(&d, "expiry.").len(), 2);
    let mut ids: Vec<String> = mails(&d)
        .iter()
        .map(|m| m.message_id().to_string())
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "a Message-ID repeats");
    assert_no_secret_in_mail(&d, "legacy");
}

#[test]
fn a_failed_rotation_mails_the_error_the_step_and_the_commands() {
    // The 2h rung is reached when the key is issued; the key is rotated
    // automatically, so no notice then, and the failure mail covers the
    // moment it fails: no notice then either.
    let policy = r#"new_key_lifetime = "1h"
rotate_before_expiry = "10m"
overlap = "1s"
notify_before_expiry = ["2h"]
jitter = false"#;
    let mut d = Daemon::new(&config(1, policy, &["alpha"]));
    d.start();
    d.wait_first_key();
    let old = d.json(&["status", "--json"])["keys"][0]["key_id"]
        .as_str()
        .unwrap()
        .to_string();
    stop(&mut d);
    // Every sink write now fails; one attempt is the whole budget.
    d.env = vec![("KEYROT_FAILPOINTS".into(), "before:sink-put=error".into())];
    d.start();
    let id = d.rotate("local/alpha", "test a failure");
    let rec = wait_state(&d, &id, "Failed");
    let new = rec["new_key"]["id"].as_str().unwrap().to_string();
    assert!(
        wait_until(Duration::from_secs(30), || !with_id(
            &d,
            &format!("{id}.failed")
        )
        .is_empty()),
        "no failure mail; log:\n{}",
        d.log()
    );
    let m = with_id(&d, &format!("{id}.failed")).remove(0);
    assert_eq!(
        m.subject(),
        "[keyrot] FAILED rotation of local/alpha in distributing"
    );
    assert!(m.header("To").contains("ops@example.com"));
    for needle in [
        "failpoint before:sink-put",
        "What keyrot does next: nothing, until an operator acts.",
        &format!("The old key {old} is untouched and stays valid until"),
        &format!("keyrot rotation show {id}"),
        &format!("keyrot rotation resume {id}"),
        &format!("keyrot rotation abort {id}"),
        &format!("give up; revokes the new key {new}"),
        "Reason:          test a failure",
        "Initiated from:  cli",
    ] {
        assert!(
            m.text.contains(needle),
            "text lacks {needle:?}:\n{}",
            m.text
        );
    }
    let html = m.html.as_deref().unwrap();
    for needle in [
        format!("keyrot rotation resume {id}"),
        format!("keyrot rotation abort {id}"),
        "failpoint before:sink-put".to_string(),
    ] {
        assert!(html.contains(&needle), "html lacks {needle:?}:\n{html}");
    }
    // Once stuck, the key is watched by the ladder, from the failure on.
    assert!(
        wait_until(Duration::from_secs(30), || plain(&d.log())
            .lines()
            .any(|l| l.contains(LADDER) && l.contains("keys=1"))),
        "the ladder never watched the stuck key; log:\n{}",
        d.log()
    );
    wait_outbox_empty(&d);
    assert!(with_id(&d, "expiry.").is_empty());
    // The mail's way out to start afresh is accepted by the daemon: the
    // failed rotation ends Aborted and names the fresh one.
    assert!(
        m.text.contains(&format!("keyrot rotation restart {id}")),
        "{}",
        m.text
    );
    let out = d.cli(&["rotation", "restart", &id]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains(&format!("rotation {id} aborted; restarted as ")),
        "{said}"
    );
    let ended = d.show(&id);
    assert_eq!(ended["state"], "Aborted", "{ended}");
    let note = ended["history"].as_array().unwrap().last().unwrap()["note"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(note.contains("restarted as "), "{note}");
    assert!(note.contains(&new), "the new key was not revoked: {note}");
}

#[test]
fn a_rotation_with_an_overlap_mails_new_key_live_then_old_key_revoked_with_the_reason_escaped() {
    let policy = r#"new_key_lifetime = "1h"
rotate_before_expiry = "10m"
overlap = "1s"
jitter = false"#;
    let mut d = Daemon::new(&config(3, policy, &["alpha"]));
    d.start();
    d.wait_first_key();
    let old = d.json(&["status", "--json"])["keys"][0]["key_id"]
        .as_str()
        .unwrap()
        .to_string();
    let reason = "<script>alert(1)</script> & rotate";
    let id = d.rotate("local/alpha", reason);
    let rec = wait_state(&d, &id, "Completed");
    let new = rec["new_key"]["id"].as_str().unwrap().to_string();
    assert!(
        wait_until(Duration::from_secs(30), || !with_id(
            &d,
            &format!("{id}.revoked")
        )
        .is_empty()),
        "no revocation mail; log:\n{}",
        d.log()
    );
    let revoked = with_id(&d, &format!("{id}.revoked")).remove(0);
    // The id and the installation's are the Message-ID's local part (the
    // domain is the From's): unique between installations sharing it.
    let inst = revoked
        .message_id()
        .strip_prefix(&format!("<{id}.revoked."))
        .and_then(|r| r.strip_suffix("@example.com>"))
        .unwrap_or_else(|| panic!("{}", revoked.message_id()))
        .to_string();
    assert!(
        inst.len() == 20 && inst.chars().all(|c| c.is_ascii_hexdigit()),
        "{inst}"
    );
    assert_eq!(
        revoked.subject(),
        format!("[keyrot] revoked old key of local/alpha ({old})")
    );
    assert!(
        revoked
            .text
            .contains(&format!("keyrot revoked the old key {old} of local/alpha")),
        "{}",
        revoked.text
    );
    assert!(
        revoked.text.contains(&format!("The new key {new}")),
        "{}",
        revoked.text
    );
    assert!(
        revoked.text.contains(&format!("Reason:          {reason}")),
        "{}",
        revoked.text
    );
    let html = revoked.html.as_deref().unwrap();
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; rotate"),
        "{html}"
    );

    // The new key was told of when it went live, as the overlap began:
    // its sinks and when the old key ends.
    let live = with_id(&d, &format!("{id}.live")).remove(0);
    assert!(
        live.subject()
            .starts_with("[keyrot] new key live for local/alpha; old key ends "),
        "{}",
        live.subject()
    );
    assert!(
        live.text.contains(&format!(
            "the new key {new} is live in\nsink(s) out and verified."
        )),
        "{}",
        live.text
    );
    assert!(
        live.text
            .contains(&format!("The old key {old} stays valid until")),
        "{}",
        live.text
    );
    assert!(!live.html.as_deref().unwrap().contains("<script>"));
    // Two mails for the rotation, each saying something new: no
    // "completed" mail repeating the revocation.
    wait_outbox_empty(&d);
    let mut about: Vec<String> = with_id(&d, &id)
        .iter()
        .map(|m| m.message_id().to_string())
        .collect();
    about.sort();
    assert_eq!(
        about,
        [
            format!("<{id}.live.{inst}@example.com>"),
            format!("<{id}.revoked.{inst}@example.com>")
        ]
    );
    // They thread: both answer the rotation's root id.
    let root = format!("<rotation.{id}.{inst}@example.com>");
    for m in [&live, &revoked] {
        assert_eq!(m.header("In-Reply-To"), root, "{}", m.subject());
        assert_eq!(m.header("References"), root, "{}", m.subject());
    }
    // The first key's rotation completed too, but revoked nothing.
    let first: Vec<Mail> = with_id(&d, "")
        .into_iter()
        .filter(|m| m.message_id().contains(".revoked."))
        .collect();
    assert_eq!(first.len(), 1, "one revocation, of one old key");
    assert_no_secret_in_mail(&d, "alpha");
    stop(&mut d);
}

#[test]
fn the_digest_is_sent_once_a_day_however_often_its_schedule_fires() {
    let policy = r#"new_key_lifetime = "1h"
rotate_before_expiry = "10m"
overlap = "1s"
jitter = false"#;
    let cfg = config(3, policy, &["alpha", "beta"]);
    let mut d = Daemon::new(&cfg);
    d.start();
    assert!(wait_until(Duration::from_secs(30), || d.status()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["key_id"].is_string())));
    assert!(with_id(&d, "digest.").is_empty(), "no schedule, no digest");
    // A reload turns the digest on: every second, one a day.
    let with_digest = cfg.replace(
        "dir = \"mail\"\n",
        "dir = \"mail\"\ndigest_schedule = \"* * * * * *\"\n",
    );
    std::fs::write(d.config_path(), with_digest).unwrap();
    d.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(60), || with_id(&d, "digest.").len()
            >= 2),
        "no digest; log:\n{}",
        d.log()
    );
    // Let the schedule fire a few more times after the digests went out.
    let runs = d.log().matches("daily digest").count();
    assert!(
        wait_until(Duration::from_secs(30), || d
            .log()
            .matches("daily digest")
            .count()
            >= runs + 3),
        "the digest schedule stopped firing; log:\n{}",
        d.log()
    );
    wait_outbox_empty(&d);
    let digests = with_id(&d, "digest.");
    // One per recipient (ops, owner) and day (a run across midnight UTC
    // has two days).
    let mut per_day: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for m in &digests {
        let id = m.message_id();
        let date = id.split('.').nth(1).unwrap().to_string();
        per_day
            .entry(date)
            .or_default()
            .push(m.header("To").to_string());
    }
    for (date, to) in &per_day {
        let mut sorted = to.clone();
        sorted.sort();
        assert_eq!(sorted, ["ops@example.com", "owner@example.com"], "{date}");
    }
    let m = &digests[0];
    assert_eq!(m.subject(), "[keyrot] digest: 2 keys expire within 30 days");
    for slot in ["local/alpha", "local/beta"] {
        assert!(m.text.contains(slot), "{}", m.text);
        assert!(m.html.as_deref().unwrap().contains(slot));
    }
    assert!(m.text.contains("rotation starts "), "{}", m.text);
    assert_no_secret_in_mail(&d, "alpha");
    stop(&mut d);
}
