//! Tests of cron parsing, matching and schedules.

use super::*;
use jiff::civil::date;

fn set(values: &[u8]) -> u64 {
    values.iter().fold(0, |s, v| s | (1 << v))
}

#[test]
fn parses_stars_lists_ranges_steps() {
    let c = Cron::parse("*/15 1,2 1-5 * *").unwrap();
    assert_eq!(c.minutes, set(&[0, 15, 30, 45]));
    assert_eq!(c.hours, set(&[1, 2]));
    assert_eq!(c.dom, set(&[1, 2, 3, 4, 5]));
    assert_eq!(c.months, (1..=12).fold(0, |s, v| s | (1 << v)));
    assert_eq!(c.dow, set(&[0, 1, 2, 3, 4, 5, 6]));
    let c = Cron::parse("1-30/5 10/6 * * *").unwrap();
    assert_eq!(c.minutes, set(&[1, 6, 11, 16, 21, 26]));
    assert_eq!(c.hours, set(&[10, 16, 22]));
}

#[test]
fn parses_names_case_insensitively_and_sunday_as_7() {
    let c = Cron::parse("0 2 * jan-Mar,dec mon-FRI").unwrap();
    assert_eq!(c.months, set(&[1, 2, 3, 12]));
    assert_eq!(c.dow, set(&[1, 2, 3, 4, 5]));
    assert_eq!(Cron::parse("0 0 * * 7").unwrap().dow, set(&[0]));
    assert_eq!(Cron::parse("0 0 * * sun,0").unwrap().dow, set(&[0]));
    assert_eq!(Cron::parse("0 0 * * 5-7").unwrap().dow, set(&[0, 5, 6]));
}

#[test]
fn rejects_bad_expressions_precisely() {
    let cases = [
        (
            "0 25 * * *",
            "cron field 2 (hour) value 25 is out of range 0-23",
        ),
        (
            "60 * * * *",
            "cron field 1 (minute) value 60 is out of range 0-59",
        ),
        (
            "0 0 0 * *",
            "cron field 3 (day-of-month) value 0 is out of range 1-31",
        ),
        (
            "0 0 * 13 *",
            "cron field 4 (month) value 13 is out of range 1-12",
        ),
        (
            "0 0 * * 8",
            "cron field 5 (day-of-week) value 8 is out of range 0-7",
        ),
        (
            "0 0 * FOO *",
            "cron field 4 (month) value \"FOO\" is neither a number nor one of JAN",
        ),
        (
            "x 0 * * *",
            "cron field 1 (minute) value \"x\" is not a number",
        ),
        (
            "*/0 * * * *",
            "cron field 1 (minute) step 0 must be at least 1",
        ),
        (
            "30-5 * * * *",
            "cron field 1 (minute) range 30-5 runs backwards",
        ),
        (
            "1,,2 * * * *",
            "cron field 1 (minute) has an empty list item",
        ),
        (
            "0 JAN * * *",
            "cron field 2 (hour) value \"JAN\" is not a number",
        ),
        (
            "0 0 * *",
            "must have 5 fields (minute hour day-of-month month day-of-week), found 4",
        ),
        ("0 0 * * * *", "found 6"),
        ("0 0 31 2 *", "never matches"),
        ("0 0 30,31 FEB *", "never matches"),
    ];
    for (expr, want) in cases {
        let got = Cron::parse(expr).unwrap_err();
        assert!(got.contains(want), "{expr}: got {got:?}, want {want:?}");
    }
    // February 29 exists (in leap years), and the OR rule can always match.
    assert!(Cron::parse("0 0 29 2 *").is_ok());
    assert!(Cron::parse("0 0 31 2 MON").is_ok());
}

#[test]
fn day_rule_is_or_when_both_restricted() {
    // 2026-11-02 is a Monday, 2026-11-13 a Friday.
    let c = Cron::parse("0 0 13 * MON").unwrap();
    assert!(c.matches_date(date(2026, 11, 2)));
    assert!(c.matches_date(date(2026, 11, 13)));
    assert!(!c.matches_date(date(2026, 11, 3)));
    // Only dow restricted: AND with an all-days dom.
    let c = Cron::parse("0 0 * * MON").unwrap();
    assert!(c.matches_date(date(2026, 11, 2)));
    assert!(!c.matches_date(date(2026, 11, 13)));
    // `*/2` day-of-month counts as unrestricted: AND.
    let c = Cron::parse("0 0 */2 * MON").unwrap();
    assert!(!c.matches_date(date(2026, 11, 2)));
    assert!(c.matches_date(date(2026, 11, 9)));
    // Month filter applies either way.
    let c = Cron::parse("0 0 13 JAN MON").unwrap();
    assert!(!c.matches_date(date(2026, 11, 2)));
}

#[test]
fn times_on_a_day_in_order() {
    let c = Cron::parse("0,30 1,13 * * *").unwrap();
    let d = date(2026, 1, 1);
    let got: Vec<_> = c.times_on(d).collect();
    assert_eq!(
        got,
        vec![
            d.at(1, 0, 0, 0),
            d.at(1, 30, 0, 0),
            d.at(13, 0, 0, 0),
            d.at(13, 30, 0, 0)
        ]
    );
    assert_eq!(c.times_on(d).next_back(), Some(d.at(13, 30, 0, 0)));
}

fn next(s: &str, now: &str) -> String {
    let s: Schedule = s.parse().unwrap();
    s.next_after(now.parse().unwrap()).unwrap().to_string()
}

#[test]
fn schedule_every_fifteen_minutes() {
    assert_eq!(
        next("0 */15 * * * *", "2026-11-23T10:07:30Z"),
        "2026-11-23T10:15:00Z"
    );
    // Strictly after: an occurrence at `now` is not the next one.
    assert_eq!(
        next("0 */15 * * * *", "2026-11-23T10:15:00Z"),
        "2026-11-23T10:30:00Z"
    );
    assert_eq!(
        Schedule::parse(" 0 */15 * * * * ").unwrap(),
        Schedule::EVERY_15_MINUTES
    );
    assert_eq!(Schedule::EVERY_15_MINUTES.to_string(), "0 */15 * * * *");
}

#[test]
fn schedule_seconds_days_months_and_years() {
    assert_eq!(
        next("*/10 * * * * *", "2026-11-23T10:07:30.5Z"),
        "2026-11-23T10:07:40Z"
    );
    // Over the end of a day, a month and a year.
    assert_eq!(
        next("0 5 4 * * *", "2026-12-31T23:59:59Z"),
        "2027-01-01T04:05:00Z"
    );
    // The next Monday (2026-11-23 is a Monday), names in any case.
    assert_eq!(
        next("0 0 8 ? * mon", "2026-11-23T08:00:00Z"),
        "2026-11-30T08:00:00Z"
    );
    // February 29 waits for a leap year.
    assert_eq!(
        next("0 0 0 29 FEB *", "2026-03-01T00:00:00Z"),
        "2028-02-29T00:00:00Z"
    );
    assert_eq!(
        next("0 0 0 1 1 * 2099", "2026-11-23T10:00:00Z"),
        "2099-01-01T00:00:00Z"
    );
    assert_eq!(
        next("0 0 0 1 1 * 2030-2040/5", "2031-01-01T00:00:00Z"),
        "2035-01-01T00:00:00Z"
    );
    // Years that are over never fire.
    let past: Schedule = "0 0 0 1 1 * 2020".parse().unwrap();
    assert_eq!(
        past.next_after("2026-11-23T10:00:00Z".parse().unwrap()),
        None
    );
    let leap: Schedule = "0 0 0 29 2 * 2027".parse().unwrap();
    assert_eq!(
        leap.next_after("2026-11-23T10:00:00Z".parse().unwrap()),
        None
    );
}

#[test]
fn schedule_rejects_bad_expressions_precisely() {
    let cases = [
        (
            "*/15 * * * *",
            "must have 6 or 7 fields (second minute hour day-of-month month day-of-week \
             [year]), found 5",
        ),
        ("0 0 0 1 1 * 2026 x", "found 8"),
        (
            "60 * * * * *",
            "cron field 1 (second) value 60 is out of range 0-59",
        ),
        (
            "0 0 24 * * *",
            "cron field 3 (hour) value 24 is out of range 0-23",
        ),
        (
            "0 0 0 * * 8",
            "cron field 6 (day-of-week) value 8 is out of range 0-7",
        ),
        (
            "0 0 0 * * * 0",
            "cron field 7 (year) value 0 is out of range 1-9999",
        ),
        (
            "? * * * * *",
            "cron field 1 (second) value \"?\" is not a number",
        ),
        (
            "0 0 0 L * *",
            "cron field 4 (day-of-month) value \"L\" is not a number",
        ),
        ("0 0 0 31 4 *", "never matches"),
    ];
    for (expr, want) in cases {
        let got = Schedule::parse(expr).unwrap_err();
        assert!(got.contains(want), "{expr}: got {got:?}, want {want:?}");
    }
}
