//! Tests of the start decision: windows, jitter, emergency, stagger, auto_rotate.

use super::*;
use crate::policy::Window;
use crate::policy::testutil::{dur, key, policy, ts};

/// Nightly 02:00–06:00 London window (02:00Z in November), 30d lead time.
fn nightly(jitter: bool) -> Policy {
    Policy {
        rotate_before_expiry: Some(dur("30d")),
        windows: vec![Window::parse("0 2 * * *", dur("4h"), "Europe/London").unwrap()],
        jitter,
        ..policy()
    }
}

#[test]
fn window_open_now_starts_now() {
    let p = nightly(false);
    let k = key(None, Some("2026-12-21T04:00Z"));
    let now = ts("2026-11-21T04:00Z");
    let d = decide(&p, "prod/a", k, None, now);
    assert_eq!(d.due_at, Some(ts("2026-11-21T04:00Z")));
    assert_eq!(d.reason, Some(DueReason::LeadTime));
    assert_eq!(d.start_at, Some(now));
    assert_eq!(
        d.window,
        Some((ts("2026-11-21T02:00Z"), ts("2026-11-21T06:00Z")))
    );
    assert!(!d.emergency && !d.staggered);
    assert_eq!(
        d.explain,
        "due 2026-11-21T04:00Z (lead time 30d before expiry); starts now in open window \
         2026-11-21 02:00–06:00 Europe/London"
    );
}

#[test]
fn open_window_with_jitter_waits_for_the_jitter_point() {
    let p = nightly(true);
    let ws = ts("2026-11-21T02:00Z");
    let k = key(None, Some("2026-12-01T00:00Z")); // due 2026-11-01
    let now = ws; // the window just opened
    let j = jitter_offset("prod/a", ws, dur("4h"));
    let d = decide(&p, "prod/a", k, None, now);
    assert_eq!(d.start_at, Some(ws.checked_add(j).unwrap()));
    assert_eq!(d.window, Some((ws, ts("2026-11-21T06:00Z"))));
    if !j.is_zero() {
        assert!(
            d.explain.contains(&format!(
                "starts in open window 2026-11-21 02:00–06:00 Europe/London at +{} jitter",
                format_duration(j)
            )),
            "{}",
            d.explain
        );
    }
    // Past the jitter point (which is always before 04:00): start at once.
    let late = ts("2026-11-21T04:00Z");
    assert_eq!(decide(&p, "prod/a", k, None, late).start_at, Some(late));
}

#[test]
fn due_before_a_window_waits_for_the_next_one() {
    let p = nightly(false);
    let k = key(Some("2026-01-01T00:00Z"), Some("2026-12-20T10:00Z"));
    let now = ts("2026-11-01T00:00Z");
    let d = decide(&p, "prod/a", k, None, now);
    assert_eq!(d.due_at, Some(ts("2026-11-20T10:00Z")));
    assert_eq!(d.start_at, Some(ts("2026-11-21T02:00Z")));
    assert_eq!(
        d.window,
        Some((ts("2026-11-21T02:00Z"), ts("2026-11-21T06:00Z")))
    );
    assert_eq!(
        d.explain,
        "due 2026-11-20T10:00Z (lead time 30d before expiry); starts when window \
         2026-11-21 02:00–06:00 Europe/London opens"
    );
}

#[test]
fn jitter_is_deterministic_and_inside_the_first_half() {
    let p = nightly(true);
    let k = key(None, Some("2026-12-20T10:00Z"));
    let now = ts("2026-11-01T00:00Z");
    let ws = ts("2026-11-21T02:00Z");
    let a = decide(&p, "prod/a", k, None, now);
    assert_eq!(
        a,
        decide(&p, "prod/a", k, None, now),
        "same input, same decision"
    );
    let start = a.start_at.unwrap();
    assert!(start >= ws && start < ts("2026-11-21T04:00Z"), "{start}");
    let j = start.duration_since(ws);
    assert_eq!(j, jitter_offset("prod/a", ws, dur("4h")));
    assert!(
        a.explain
            .ends_with(&format!("at +{} jitter", format_duration(j))),
        "{}",
        a.explain
    );
    // Different slots usually land elsewhere in the same window.
    let starts: std::collections::BTreeSet<_> = (0..20)
        .map(|i| {
            decide(&p, &format!("slot-{i}"), k, None, now)
                .start_at
                .unwrap()
        })
        .collect();
    assert!(starts.len() > 15, "{starts:?}");
}

#[test]
fn key_expiring_before_next_window_starts_now_as_emergency() {
    // Saturday-only window; the key expires on Monday.
    let p = Policy {
        rotate_before_expiry: Some(dur("1h")),
        windows: vec![Window::parse("0 2 * * SAT", dur("4h"), "Europe/London").unwrap()],
        ..policy()
    };
    let k = key(None, Some("2026-11-23T10:00Z"));
    let now = ts("2026-11-23T09:30Z");
    let d = decide(&p, "prod/a", k, None, now);
    assert!(d.emergency);
    assert_eq!(d.start_at, Some(now));
    assert_eq!(d.window, None);
    assert_eq!(
        d.explain,
        "EMERGENCY: expires 2026-11-23T10:00Z before next window 2026-11-28T02:00Z; starting \
         now; due 2026-11-23T09:00Z (lead time 1h before expiry)"
    );
    // Due later than now, still before expiry: starts at the due time.
    let early = ts("2026-11-23T08:00Z");
    let d = decide(&p, "prod/a", k, None, early);
    assert_eq!(
        (d.start_at, d.emergency),
        (Some(ts("2026-11-23T09:00Z")), true)
    );
    assert!(
        d.explain.contains("starting at 2026-11-23T09:00Z"),
        "{}",
        d.explain
    );
    // Already expired: emergency, now.
    let after = ts("2026-11-24T00:00Z");
    let d = decide(&p, "prod/a", k, None, after);
    assert_eq!((d.start_at, d.emergency), (Some(after), true));
    assert!(
        d.explain
            .starts_with("EMERGENCY: expired 2026-11-23T10:00Z; starting now")
    );
}

#[test]
fn jittered_start_after_expiry_is_an_emergency_too() {
    let p = nightly(true);
    let ws = ts("2026-11-21T02:00Z");
    let j = jitter_offset("prod/a", ws, dur("4h"));
    // Expires one second after the window opens: any jitter >= 1s is too late.
    let exp = ws.checked_add(dur("1s")).unwrap();
    let k = Some(KeyTimes {
        created_at: None,
        expires_at: Some(exp),
    });
    let d = decide(&p, "prod/a", k, None, ts("2026-11-20T12:00Z"));
    assert_eq!(d.emergency, j >= dur("1s"));
}

#[test]
fn stagger_pushes_back_but_never_past_expiry() {
    let p = Policy {
        stagger: Some(dur("10m")),
        max_age: Some(dur("90d")),
        ..policy()
    };
    let now = ts("2026-11-23T12:00Z");
    let k = key(Some("2026-01-01T00:00Z"), None);
    let last = ts("2026-11-23T11:58Z");
    let d = decide(&p, "g/b", k, Some(last), now);
    assert_eq!(
        (d.start_at, d.staggered),
        (Some(ts("2026-11-23T12:08Z")), true)
    );
    assert!(d.explain.ends_with(
        "; staggered to 2026-11-23T12:08Z (10m after the group's last start 2026-11-23T11:58Z)"
    ));
    // Last group start long ago: no delay.
    let d = decide(&p, "g/b", k, Some(ts("2026-11-23T10:00Z")), now);
    assert_eq!((d.start_at, d.staggered), (Some(now), false));
    // No stagger without a group start.
    assert_eq!(decide(&p, "g/b", k, None, now).start_at, Some(now));
    // Expiry before the staggered start: keep the unstaggered start.
    let soon = key(Some("2026-01-01T00:00Z"), Some("2026-11-23T12:05Z"));
    let d = decide(&p, "g/b", soon, Some(last), now);
    assert_eq!((d.start_at, d.staggered), (Some(now), false));
    assert!(
        d.explain.contains("not staggered to 2026-11-23T12:08Z"),
        "{}",
        d.explain
    );
}

#[test]
fn auto_rotate_off_reports_due_but_never_starts() {
    let p = Policy {
        auto_rotate: false,
        ..nightly(false)
    };
    let k = key(None, Some("2026-12-21T04:00Z"));
    let d = decide(&p, "prod/a", k, None, ts("2026-11-21T04:00Z"));
    assert_eq!(d.due_at, Some(ts("2026-11-21T04:00Z")));
    assert_eq!((d.start_at, d.window, d.emergency), (None, None, false));
    assert!(d.explain.contains("auto_rotate is off"), "{}", d.explain);
}

#[test]
fn without_windows_starts_at_due_time_or_now() {
    let p = Policy {
        rotate_before_expiry: Some(dur("30d")),
        ..policy()
    };
    let k = key(None, Some("2026-12-20T10:00Z"));
    let d = decide(&p, "s", k, None, ts("2026-11-01T00:00Z"));
    assert_eq!(
        (d.start_at, d.window),
        (Some(ts("2026-11-20T10:00Z")), None)
    );
    assert!(d.explain.ends_with("; starts 2026-11-20T10:00Z"));
    // Overdue: never in the past; and no windows means no emergency.
    let now = ts("2026-12-21T00:00Z");
    let d = decide(&p, "s", k, None, now);
    assert_eq!((d.start_at, d.emergency), (Some(now), false));
    assert!(d.explain.ends_with("; starts now"));
}

#[test]
fn earliest_window_wins_and_no_key_waits_for_it() {
    let mut p = nightly(false);
    p.windows
        .push(Window::parse("30 20 * * *", dur("1h"), "UTC").unwrap());
    let now = ts("2026-11-21T12:00Z");
    let d = decide(&p, "new", None, None, now);
    assert_eq!((d.due_at, d.reason), (Some(now), Some(DueReason::NoKey)));
    assert_eq!(d.start_at, Some(ts("2026-11-21T20:30Z")));
    assert_eq!(
        d.window,
        Some((ts("2026-11-21T20:30Z"), ts("2026-11-21T21:30Z")))
    );
    assert!(d.explain.starts_with(
        "due 2026-11-21T12:00Z (no key yet); starts when window 2026-11-21 20:30–21:30 UTC opens"
    ));
}

#[test]
fn never_due_has_no_start() {
    let d = decide(
        &nightly(false),
        "s",
        key(Some("2026-01-01T00:00Z"), None),
        None,
        ts("2026-11-21T12:00Z"),
    );
    assert_eq!((d.due_at, d.reason, d.start_at), (None, None, None));
    assert_eq!(
        d.explain,
        "never due: the key has no expiry; the policy sets no max_age"
    );
}
