//! The footer of every message: the host that sent it and the commands
//! that show more (the journal around the message, the key's history).
//! It is added after the template renders, so an override of
//! `notify.template_dir` cannot drop it: whoever reads a mail can always
//! tell which machine to log into and what to run there.

use jiff::{SignedDuration, Timestamp};

use super::render::{Escape, push_escaped};

/// How far before the message `journalctl --since` starts.
const JOURNAL_BACK: SignedDuration = SignedDuration::from_secs(3600);

/// The commands a reader runs on `host` to look further: the journal from
/// an hour before `now`, and the history of `slot` (or `keyrot status`
/// for a message about several keys).
fn commands(slot: Option<&str>, now: Timestamp) -> [String; 2] {
    let since = now
        .checked_sub(JOURNAL_BACK)
        .unwrap_or(now)
        .strftime("%Y-%m-%d %H:%M:%S UTC");
    let journal = format!("journalctl -u keyrot --since \"{since}\"");
    let keyrot = match slot.filter(|s| !s.is_empty()) {
        Some(s) => format!(
            "keyrot history {}",
            shell_word(&keyrot_core::escape::controls(s))
        ),
        None => "keyrot status".to_string(),
    };
    [journal, keyrot]
}

/// `s` as one shell word: as is when it holds only characters no shell
/// reads specially, else in single quotes.
fn shell_word(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-:@+=,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Appends the footer to the plain-text body `text`.
pub fn append_text(text: &mut String, host: &str, slot: Option<&str>, now: Timestamp) {
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let host = keyrot_core::escape::controls(host);
    let [journal, keyrot] = commands(slot, now);
    let f = format!(
        "\nSent by keyrot on {host}. To look further, on {host}:\n  {journal}\n  {keyrot}\n"
    );
    // Host and key name are escaped on their own; this keeps the lines.
    text.push_str(&keyrot_core::escape::controls_but_newlines(&f));
}

/// Adds the footer to the HTML body `html`, before `</body>` when there is
/// one, else at the end.
pub fn append_html(html: &mut String, host: &str, slot: Option<&str>, now: Timestamp) {
    let [journal, keyrot] = commands(slot, now);
    let mut f =
        String::from("<hr>\n<p style=\"color: #555; font-size: 12px\">Sent by keyrot on <b>");
    push_escaped(&mut f, host, Escape::Html);
    f.push_str("</b>. To look further, on ");
    push_escaped(&mut f, host, Escape::Html);
    f.push_str(":<br>\n<code>");
    push_escaped(&mut f, &journal, Escape::Html);
    f.push_str("</code><br>\n<code>");
    push_escaped(&mut f, &keyrot, Escape::Html);
    f.push_str("</code></p>\n");
    match html.rfind("</body>") {
        Some(at) => html.insert_str(at, &f),
        None => {
            if !html.is_empty() && !html.ends_with('\n') {
                html.push('\n');
            }
            html.push_str(&f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-23T09:00:00Z".parse().unwrap()
    }

    #[test]
    fn text_footer_names_the_host_the_journal_and_the_key_history() {
        let mut t = "body".to_string();
        append_text(&mut t, "vm1", Some("atlassian/ci-bot"), now());
        assert_eq!(
            t,
            "body\n\nSent by keyrot on vm1. To look further, on vm1:\n  \
             journalctl -u keyrot --since \"2026-11-23 08:00:00 UTC\"\n  \
             keyrot history atlassian/ci-bot\n"
        );
        let mut t = String::from("digest\n");
        append_text(&mut t, "vm1", None, now());
        assert!(t.ends_with("\n  keyrot status\n"), "{t}");
    }

    #[test]
    fn every_message_kind_ends_with_the_footer_whatever_its_template() {
        let msgs = super::super::examples::messages(super::super::templates::Templates::builtin());
        let kinds: std::collections::BTreeSet<_> = msgs.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds.len(), super::super::templates::KINDS.len());
        for (kind, m) in &msgs {
            let want = format!("Sent by keyrot on {}.", super::super::examples::HOST);
            assert!(m.body.contains(&want), "{kind}: {}", m.body);
            let html = m.html.as_deref().unwrap_or_default();
            assert!(html.contains("journalctl -u keyrot --since"), "{kind}");
            let cmd = if *kind == "digest"
                || *kind == "refused"
                || *kind == "failover"
                || *kind == "orphan"
            {
                "keyrot status"
            } else {
                "keyrot history atlassian/"
            };
            assert!(m.body.contains(cmd), "{kind}: {}", m.body);
        }
    }

    #[test]
    fn a_slot_with_shell_characters_is_quoted() {
        let [_, k] = commands(Some("p/it's $HOME"), now());
        assert_eq!(k, r"keyrot history 'p/it'\''s $HOME'");
    }

    #[test]
    fn html_footer_goes_before_the_body_end_and_is_escaped() {
        let mut h = "<html><body><p>x</p>\n</body>\n</html>\n".to_string();
        append_html(&mut h, "vm<1>", Some("p/k"), now());
        let footer_at = h.find("Sent by keyrot on <b>vm&lt;1&gt;</b>").unwrap();
        assert!(footer_at < h.find("</body>").unwrap(), "{h}");
        assert!(h.contains("<code>keyrot history p/k</code>"), "{h}");
        assert!(
            h.contains(
                "<code>journalctl -u keyrot --since &quot;2026-11-23 08:00:00 UTC&quot;</code>"
            ),
            "{h}"
        );
        let mut bare = "<p>override</p>".to_string();
        append_html(&mut bare, "vm1", None, now());
        assert!(bare.starts_with("<p>override</p>\n<hr>"), "{bare}");
    }
}
