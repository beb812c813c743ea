//! Tests of window parsing and of start search across DST, month and year ends.

use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn w(cron: &str, hours: i64, tz: &str) -> Window {
    Window::parse(cron, SignedDuration::from_hours(hours), tz).unwrap()
}

#[test]
fn parse_errors_are_precise() {
    let h = SignedDuration::from_hours(1);
    assert_eq!(
        Window::parse("0 2 * * *", h, "Europe/Londn").unwrap_err(),
        "unknown time zone \"Europe/Londn\""
    );
    assert_eq!(
        Window::parse("0 25 * * *", h, "UTC").unwrap_err(),
        "cron field 2 (hour) value 25 is out of range 0-23"
    );
    assert_eq!(
        Window::parse("0 2 * * *", SignedDuration::ZERO, "UTC").unwrap_err(),
        "window duration must be positive, got 0s"
    );
    assert!(
        Window::parse("0 2 * * *", -h, "UTC")
            .unwrap_err()
            .contains("must be positive, got -1h")
    );
    let ok = Window::parse("0 2 * * *", h, "Europe/London").unwrap();
    assert_eq!(
        (ok.cron.as_str(), ok.timezone.as_str()),
        ("0 2 * * *", "Europe/London")
    );
    assert_eq!(ok.duration, h);
}

/// 2026-03-29: London clocks jump 01:00 GMT -> 02:00 BST, so 01:30 does
/// not exist. `compatible` moves it forward by the gap: 02:30 BST, which is
/// 01:30 UTC; the window fires once that night.
#[test]
fn spring_gap_start_moves_forward() {
    let win = w("30 1 * * *", 1, "Europe/London");
    assert_eq!(
        win.next_start_after(ts("2026-03-28T12:00Z")),
        Some(ts("2026-03-29T01:30Z"))
    );
    assert_eq!(
        win.next_start_after(ts("2026-03-29T01:30Z")),
        Some(ts("2026-03-30T00:30Z"))
    );
    assert_eq!(
        win.next_start_after(ts("2026-03-27T12:00Z")),
        Some(ts("2026-03-28T01:30Z"))
    );
    assert_eq!(
        win.containing(ts("2026-03-29T02:00Z")),
        Some((ts("2026-03-29T01:30Z"), ts("2026-03-29T02:30Z")))
    );
    assert_eq!(win.containing(ts("2026-03-29T01:00Z")), None);
}

/// 2026-10-25: London clocks fall back 02:00 BST -> 01:00 GMT, so 01:30
/// happens twice (00:30 UTC and 01:30 UTC). The earlier instant is used and
/// the window opens once.
#[test]
fn autumn_fold_uses_earlier_instant_once() {
    let win = w("30 1 * * *", 1, "Europe/London");
    assert_eq!(
        win.next_start_after(ts("2026-10-24T12:00Z")),
        Some(ts("2026-10-25T00:30Z"))
    );
    assert_eq!(
        win.next_start_after(ts("2026-10-25T00:30Z")),
        Some(ts("2026-10-26T01:30Z"))
    );
    assert_eq!(
        win.containing(ts("2026-10-25T01:15Z")),
        Some((ts("2026-10-25T00:30Z"), ts("2026-10-25T01:30Z")))
    );
    // The second 01:30 (GMT) is not a start.
    assert_eq!(win.containing(ts("2026-10-25T01:45Z")), None);
    assert_eq!(
        win.prev_start_at_or_before(ts("2026-10-25T23:00Z")),
        Some(ts("2026-10-25T00:30Z"))
    );
}

/// "0 2 * * *" for 4h: 02:00 local is 02:00 UTC in winter and 01:00 UTC in
/// summer; the window always lasts 4 real hours.
#[test]
fn utc_start_shifts_by_an_hour_across_dst() {
    let win = w("0 2 * * *", 4, "Europe/London");
    let at = ts("2026-03-27T12:00Z");
    let first = win.next_start_after(at).unwrap();
    let second = win.next_start_after(first).unwrap();
    assert_eq!(
        (first, second),
        (ts("2026-03-28T02:00Z"), ts("2026-03-29T01:00Z"))
    );
    assert_eq!(
        win.containing(ts("2026-03-29T04:30Z")),
        Some((ts("2026-03-29T01:00Z"), ts("2026-03-29T05:00Z")))
    );
    assert_eq!(
        win.containing(ts("2026-03-29T05:00Z")),
        None,
        "end is exclusive"
    );
    assert_eq!(
        win.containing(ts("2026-03-28T05:30Z")),
        Some((ts("2026-03-28T02:00Z"), ts("2026-03-28T06:00Z")))
    );
    assert_eq!(
        win.next_start_after(ts("2026-10-24T00:00Z")),
        Some(ts("2026-10-24T01:00Z"))
    );
    assert_eq!(
        win.next_start_after(ts("2026-10-24T01:00Z")),
        Some(ts("2026-10-25T02:00Z"))
    );
    assert_eq!(
        win.describe(ts("2026-10-25T02:00Z"), ts("2026-10-25T06:00Z")),
        "2026-10-25 02:00–06:00 Europe/London"
    );
}

#[test]
fn steps_across_month_and_year_ends() {
    let first_of_month = w("0 0 1 * *", 1, "UTC");
    assert_eq!(
        first_of_month.next_start_after(ts("2026-12-15T00:00Z")),
        Some(ts("2027-01-01T00:00Z"))
    );
    let day31 = w("0 12 31 * *", 1, "UTC");
    assert_eq!(
        day31.next_start_after(ts("2026-04-01T00:00Z")),
        Some(ts("2026-05-31T12:00Z"))
    );
    assert_eq!(
        day31.next_start_after(ts("2026-12-31T12:00Z")),
        Some(ts("2027-01-31T12:00Z"))
    );
    let leap = w("0 0 29 FEB *", 1, "UTC");
    assert_eq!(
        leap.next_start_after(ts("2026-03-01T00:00Z")),
        Some(ts("2028-02-29T00:00Z"))
    );
    assert_eq!(
        leap.prev_start_at_or_before(ts("2026-03-01T00:00Z")),
        Some(ts("2024-02-29T00:00Z"))
    );
    // 2100 is not a leap year: nothing between 2096 and 2104, so the ~5
    // year search gives up.
    assert_eq!(leap.next_start_after(ts("2097-03-01T00:00Z")), None);
    // Local midnight on New Year's Eve in Tokyo is 15:00 UTC the day before.
    let tokyo = w("0 0 1 1 *", 1, "Asia/Tokyo");
    assert_eq!(
        tokyo.next_start_after(ts("2026-06-01T00:00Z")),
        Some(ts("2026-12-31T15:00Z"))
    );
}

#[test]
fn weekday_only_window_skips_weekend() {
    let win = w("0 9 * * MON-FRI", 8, "Europe/London");
    // 2026-11-20 is a Friday.
    assert_eq!(
        win.next_start_after(ts("2026-11-20T10:00Z")),
        Some(ts("2026-11-23T09:00Z"))
    );
    assert_eq!(
        win.next_start_after(ts("2026-11-20T08:00Z")),
        Some(ts("2026-11-20T09:00Z"))
    );
    // Summer: 09:00 BST is 08:00 UTC. 2026-07-04 is a Saturday.
    assert_eq!(
        win.next_start_after(ts("2026-07-04T00:00Z")),
        Some(ts("2026-07-06T08:00Z"))
    );
    assert_eq!(win.containing(ts("2026-11-21T12:00Z")), None, "Saturday");
    assert_eq!(
        win.containing(ts("2026-11-23T16:59Z")),
        Some((ts("2026-11-23T09:00Z"), ts("2026-11-23T17:00Z")))
    );
}

#[test]
fn next_is_strictly_after_and_prev_is_at_or_before() {
    let win = w("*/15 * * * *", 1, "UTC");
    let at = ts("2026-11-23T10:15Z");
    assert_eq!(win.next_start_after(at), Some(ts("2026-11-23T10:30Z")));
    assert_eq!(win.prev_start_at_or_before(at), Some(at));
    assert_eq!(
        win.prev_start_at_or_before(ts("2026-11-23T10:14:59Z")),
        Some(ts("2026-11-23T10:00Z"))
    );
    // Every minute, across midnight and a year end.
    let every = w("* * * * *", 1, "UTC");
    assert_eq!(
        every.next_start_after(ts("2026-12-31T23:59:30Z")),
        Some(ts("2027-01-01T00:00Z"))
    );
}

#[test]
fn containing_prefers_latest_of_overlapping_occurrences() {
    let win = w("0 * * * *", 2, "UTC");
    assert_eq!(
        win.containing(ts("2026-11-23T10:30Z")),
        Some((ts("2026-11-23T10:00Z"), ts("2026-11-23T12:00Z")))
    );
    let long = Window::parse("0 2 1 * *", SignedDuration::from_hours(24 * 3), "UTC").unwrap();
    assert_eq!(
        long.containing(ts("2026-12-03T01:59Z")),
        Some((ts("2026-12-01T02:00Z"), ts("2026-12-04T02:00Z")))
    );
    assert_eq!(long.containing(ts("2026-12-04T02:00Z")), None);
}
