//! The 5-field cron expression a window starts on: parsing into bit sets
//! and matching civil dates and times. It knows nothing of time zones or
//! instants; [`super::window`] turns its civil matches into instants.
//!
//! Day rule (Vixie cron / cronie, the "standard" rule): when *both* the
//! day-of-month and day-of-week fields are restricted, a day matches if
//! **either** matches; when one of them is unrestricted, both must match.
//! A field counts as unrestricted when it begins with `*` (so `*` and
//! `*/2` are unrestricted for this rule, though `*/2` still filters).

use jiff::civil::{Date, DateTime};

/// One cron field's name and bounds, for parsing and error messages.
struct FieldSpec {
    /// 1-based position, as users count fields.
    pos: usize,
    /// Name used in messages.
    name: &'static str,
    /// Smallest value.
    min: u8,
    /// Largest value.
    max: u8,
    /// Accepted names, mapped to `min + index` (empty: numbers only).
    names: &'static [&'static str],
}

const MONTHS: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const FIELDS: [FieldSpec; 5] = [
    FieldSpec {
        pos: 1,
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    FieldSpec {
        pos: 2,
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    FieldSpec {
        pos: 3,
        name: "day-of-month",
        min: 1,
        max: 31,
        names: &[],
    },
    FieldSpec {
        pos: 4,
        name: "month",
        min: 1,
        max: 12,
        names: MONTHS,
    },
    // 7 is accepted as Sunday and folded onto 0 after parsing.
    FieldSpec {
        pos: 5,
        name: "day-of-week",
        min: 0,
        max: 7,
        names: DAYS,
    },
];

/// A parsed cron expression: one bit per allowed value in each field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cron {
    /// Bit n set: minute n matches.
    minutes: u64,
    /// Bit n set: hour n matches.
    hours: u64,
    /// Bit n set: day-of-month n (1-31) matches.
    dom: u64,
    /// Bit n set: month n (1-12) matches.
    months: u64,
    /// Bit n set: weekday n (0 = Sunday .. 6) matches.
    dow: u64,
    /// Day-of-month field began with `*`.
    dom_star: bool,
    /// Day-of-week field began with `*`.
    dow_star: bool,
}

impl Cron {
    /// Parses `minute hour day-of-month month day-of-week`.
    pub(crate) fn parse(expr: &str) -> Result<Cron, String> {
        let parts: Vec<&str> = expr.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "cron expression must have 5 fields (minute hour day-of-month month \
                 day-of-week), found {} in {expr:?}",
                parts.len()
            ));
        }
        let mut bits = [0u64; 5];
        for (i, (text, spec)) in parts.iter().zip(FIELDS.iter()).enumerate() {
            bits[i] = parse_field(text, spec)?;
        }
        // Sunday may be written 0 or 7.
        if bits[4] & (1 << 7) != 0 {
            bits[4] = (bits[4] & !(1 << 7)) | 1;
        }
        let cron = Cron {
            minutes: bits[0],
            hours: bits[1],
            dom: bits[2],
            months: bits[3],
            dow: bits[4],
            dom_star: parts[2].starts_with('*'),
            dow_star: parts[4].starts_with('*'),
        };
        cron.check_satisfiable(expr)?;
        Ok(cron)
    }

    /// Rejects expressions that can never match, such as `0 0 31 2 *`.
    fn check_satisfiable(&self, expr: &str) -> Result<(), String> {
        // With the OR rule, or with an unrestricted day-of-month, some day
        // of every selected month matches.
        if self.dom_star || !self.dow_star {
            return Ok(());
        }
        let longest = (1..=12u8)
            .filter(|m| self.months & (1 << m) != 0)
            .map(max_days_in_month)
            .max()
            .unwrap_or(0);
        if (1..=longest).any(|d| self.dom & (1 << d) != 0) {
            return Ok(());
        }
        Err(format!(
            "cron expression {expr:?} never matches: none of its days of the month exist in its \
             months"
        ))
    }

    /// True when `date` is a day the cron fires on.
    pub(crate) fn matches_date(&self, date: Date) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let dom = self.dom & (1 << date.day()) != 0;
        let dow = self.dow & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The civil start times on `date` (which must match), earliest first.
    pub(crate) fn times_on(&self, date: Date) -> impl DoubleEndedIterator<Item = DateTime> + '_ {
        bits(self.hours, 23)
            .flat_map(move |h| bits(self.minutes, 59).map(move |m| date.at(h as i8, m as i8, 0, 0)))
    }
}

/// The set bits of `set` up to `max`, ascending.
fn bits(set: u64, max: u8) -> impl DoubleEndedIterator<Item = u8> + Clone {
    (0..=max).filter(move |b| set & (1u64 << b) != 0)
}

/// The longest a month can be (February counts 29).
fn max_days_in_month(month: u8) -> u8 {
    match month {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses one field: a comma list of `*`, `N`, `N-M`, each with an optional `/STEP`.
fn parse_field(text: &str, spec: &FieldSpec) -> Result<u64, String> {
    let mut set = 0u64;
    for item in text.split(',') {
        set |= parse_item(item, spec)?;
    }
    Ok(set)
}

/// Parses one list item of a field.
fn parse_item(item: &str, spec: &FieldSpec) -> Result<u64, String> {
    let err = |what: String| format!("cron field {} ({}) {what}", spec.pos, spec.name);
    if item.is_empty() {
        return Err(err("has an empty list item".into()));
    }
    let (range, step) = match item.split_once('/') {
        Some((r, s)) => {
            let step: u8 = s
                .parse()
                .map_err(|_| err(format!("step {s:?} is not a number")))?;
            if step == 0 {
                return Err(err("step 0 must be at least 1".into()));
            }
            (r, Some(step))
        }
        None => (item, None),
    };
    let (lo, hi) = if range == "*" {
        (spec.min, spec.max)
    } else if let Some((a, b)) = range.split_once('-') {
        let (lo, hi) = (parse_value(a, spec)?, parse_value(b, spec)?);
        if lo > hi {
            return Err(err(format!(
                "range {a}-{b} runs backwards (start after end)"
            )));
        }
        (lo, hi)
    } else {
        let v = parse_value(range, spec)?;
        // `N/STEP` means from N to the field's end, as in Vixie cron.
        (v, if step.is_some() { spec.max } else { v })
    };
    let step = step.unwrap_or(1);
    Ok((lo..=hi)
        .step_by(usize::from(step))
        .fold(0u64, |s, v| s | (1 << v)))
}

/// Parses a number or (where the field allows) a name, and checks its range.
fn parse_value(text: &str, spec: &FieldSpec) -> Result<u8, String> {
    let prefix = format!("cron field {} ({})", spec.pos, spec.name);
    if let Some(i) = spec.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        // Names map from the field's first value: JAN = 1, SUN = 0.
        return Ok(spec.min + i as u8);
    }
    let n: u32 = text.parse().map_err(|_| {
        if spec.names.is_empty() {
            format!("{prefix} value {text:?} is not a number")
        } else {
            format!(
                "{prefix} value {text:?} is neither a number nor one of {}",
                spec.names.join(" ")
            )
        }
    })?;
    if n < u32::from(spec.min) || n > u32::from(spec.max) {
        return Err(format!(
            "{prefix} value {n} is out of range {}-{}",
            spec.min, spec.max
        ));
    }
    Ok(n as u8)
}

#[cfg(test)]
mod tests {
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
}
