//! The `keyrot check` summary and the secret-resolution hook.

use jiff::Timestamp;

use super::{BASE, NAME, ok};
use crate::{check_secrets, check_secrets_in, secret_refs, summary};

/// BASE plus a window, a second policy without one, and two keys.
fn config_text() -> String {
    format!(
        "{BASE}rotate_before_expiry = \"30d\"\n\
         [[policy.window]]\ncron = \"0 2 * * 1-5\"\nduration = \"4h\"\ntimezone = \"Europe/London\"\n\
         [[policy]]\nname = \"open\"\n\
         [[key]]\nname = \"ci-bot\"\nprovider = \"local\"\npolicy = \"standard\"\nsinks = [\"out\"]\ngroup = \"ci\"\n\
         [[key]]\nselect = {{ name = \"ci-*\", tag = \"team=a\" }}\nprovider = \"local\"\npolicy = \"open\"\nsinks = [\"out\"]\n"
    )
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn summary_lists_every_section() {
    let cfg = ok(&config_text());
    let text = summary(&cfg, ts("2026-11-23T12:00:00Z"));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("files read: {NAME}"));
    assert!(lines[1].starts_with("daemon: control socket /run/keyrot/control.sock (mode 0660), sync \"0 */15 * * * *\" UTC"), "{text}");
    assert!(
        text.contains("\n1 provider:\n  local (local, 4 at once, new keys live 90d, 32 bytes)\n"),
        "{text}"
    );
    assert!(
        text.contains("\n1 sink:\n  out (file, raw, mode 0600): /tmp/keyrot/{name}\n"),
        "{text}"
    );
    // Monday 12:00 UTC: the next weekday 02:00 London start is Tuesday, GMT.
    assert!(
        text.contains("\n2 policies:\n  standard: rotate 30d before expiry, overlap 1h; next window 2026-11-24 02:00 GMT Europe/London (2026-11-24T02:00:00Z)\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "  open: rotate at 2/3 of lifetime, overlap 1h; next window any time (no window)\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "\n2 key entries:\n  ci-bot -> provider local, policy standard, sinks out, group ci\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("  select name=ci-* tag=team=a -> provider local, policy open, sinks out\n"),
        "{text}"
    );
    assert!(
        text.ends_with("notify: none (no email), from keyrot@localhost\n"),
        "{text}"
    );
}

#[test]
fn next_window_is_shown_in_its_zone_and_utc_across_dst() {
    let cfg = ok(&config_text());
    // In summer the same 02:00 London start is 01:00 UTC.
    let text = summary(&cfg, ts("2026-07-01T12:00:00Z"));
    assert!(
        text.contains("next window 2026-07-02 02:00 BST Europe/London (2026-07-02T01:00:00Z)"),
        "{text}"
    );
}

#[test]
fn the_earliest_window_of_a_policy_wins() {
    let text = format!(
        "{BASE}[[policy.window]]\ncron = \"0 2 * * *\"\nduration = \"1h\"\n\
         [[policy.window]]\ncron = \"30 0 * * *\"\nduration = \"1h\"\ntimezone = \"UTC\"\n"
    );
    let out = summary(&ok(&text), ts("2026-11-23T12:00:00Z"));
    assert!(
        out.contains("next window 2026-11-24 00:30 UTC (2026-11-24T00:30:00Z)"),
        "{out}"
    );
}

#[test]
fn no_core_type_holds_a_secret_yet_so_all_resolve() {
    let cfg = ok(&config_text());
    assert!(secret_refs(&cfg).is_empty());
    assert!(check_secrets(&cfg).is_empty());
    assert!(check_secrets_in(&cfg, None).is_empty());
}
