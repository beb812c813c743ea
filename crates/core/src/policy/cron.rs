//! Cron expressions: parsing into bit sets and matching civil dates and
//! times. Two forms share one parser: a rotation window's 5 fields
//! (`minute hour day-of-month month day-of-week`, read in the window's zone
//! by [`super::window`]) and a [`Schedule`]'s 6 or 7 (seconds first, an
//! optional year), read in UTC, for the inventory sync, the digest and the
//! history prune.
//!
//! Day rule (Vixie cron / cronie, the "standard" rule): when *both* the
//! day-of-month and day-of-week fields are restricted, a day matches if
//! **either** matches; when one of them is unrestricted, both must match.
//! A field counts as unrestricted when it begins with `*` or `?` (so `*`
//! and `*/2` are unrestricted for this rule, though `*/2` still filters).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;

/// One cron field's name and bounds, for parsing and error messages.
struct FieldSpec {
    /// Name used in messages.
    name: &'static str,
    /// Smallest value.
    min: u16,
    /// Largest value.
    max: u16,
    /// Accepted names, mapped to `min + index` (empty: numbers only).
    names: &'static [&'static str],
}

const MONTHS: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Every field, in a [`Schedule`]'s order; a window's are `FIELDS[1..6]`.
const FIELDS: [FieldSpec; 7] = [
    FieldSpec {
        name: "second",
        min: 0,
        max: 59,
        names: &[],
    },
    FieldSpec {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    FieldSpec {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    FieldSpec {
        name: "day-of-month",
        min: 1,
        max: 31,
        names: &[],
    },
    FieldSpec {
        name: "month",
        min: 1,
        max: 12,
        names: MONTHS,
    },
    // 7 is accepted as Sunday and folded onto 0 after parsing.
    FieldSpec {
        name: "day-of-week",
        min: 0,
        max: 7,
        names: DAYS,
    },
    // The years a civil date can have.
    FieldSpec {
        name: "year",
        min: 1,
        max: 9999,
        names: &[],
    },
];

/// One list item of a field: every `step`-th value from `first` to `last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Item {
    /// First value.
    first: u16,
    /// Last value (inclusive).
    last: u16,
    /// Distance between values, at least 1.
    step: u16,
}

impl Item {
    /// True when `v` is one of the item's values.
    fn contains(self, v: i32) -> bool {
        (i32::from(self.first)..=i32::from(self.last)).contains(&v)
            && (v - i32::from(self.first)) % i32::from(self.step) == 0
    }
}

/// A parsed cron expression: one bit per allowed value in each field, and
/// the year field's items.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cron {
    /// Bit n set: second n matches (a window's: second 0).
    seconds: u64,
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
    /// The years that match (a window has none: every year).
    years: Vec<Item>,
    /// Day-of-month field began with `*` or `?`.
    dom_star: bool,
    /// Day-of-week field began with `*` or `?`.
    dow_star: bool,
}

impl Cron {
    /// Parses a window's `minute hour day-of-month month day-of-week`.
    pub(crate) fn parse(expr: &str) -> Result<Cron, String> {
        let parts: Vec<&str> = expr.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "cron expression must have 5 fields (minute hour day-of-month month \
                 day-of-week), found {} in {expr:?}",
                parts.len()
            ));
        }
        let mut all = vec!["0"];
        all.extend(parts);
        Cron::from_fields(expr, &all, 1)
    }

    /// Parses `second minute hour day-of-month month day-of-week [year]`.
    fn parse_with_seconds(expr: &str) -> Result<Cron, String> {
        let parts: Vec<&str> = expr.split_whitespace().collect();
        if !(6..=7).contains(&parts.len()) {
            return Err(format!(
                "cron expression must have 6 or 7 fields (second minute hour day-of-month \
                 month day-of-week [year]), found {} in {expr:?}",
                parts.len()
            ));
        }
        Cron::from_fields(expr, &parts, 0)
    }

    /// Builds a cron from 6 or 7 fields in [`FIELDS`] order; messages
    /// number the fields from 1, less `hidden` (a window's implicit second).
    fn from_fields(expr: &str, parts: &[&str], hidden: usize) -> Result<Cron, String> {
        let mut items = Vec::with_capacity(parts.len());
        for (i, (text, spec)) in parts.iter().zip(FIELDS.iter()).enumerate() {
            items.push(parse_field(text, spec, i + 1 - hidden)?);
        }
        let bits = |i: usize| items[i].iter().fold(0u64, |s, item| s | mask(*item));
        // Sunday may be written 0 or 7.
        let mut dow = bits(5);
        if dow & (1 << 7) != 0 {
            dow = (dow & !(1 << 7)) | 1;
        }
        let cron = Cron {
            seconds: bits(0),
            minutes: bits(1),
            hours: bits(2),
            dom: bits(3),
            months: bits(4),
            dow,
            years: items.get(6).cloned().unwrap_or_default(),
            dom_star: parts[3].starts_with(['*', '?']),
            dow_star: parts[5].starts_with(['*', '?']),
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

    /// The civil times on `date` (which must match), earliest first.
    pub(crate) fn times_on(&self, date: Date) -> impl DoubleEndedIterator<Item = DateTime> + '_ {
        bits(self.hours, 23).flat_map(move |h| {
            bits(self.minutes, 59).flat_map(move |m| {
                bits(self.seconds, 59).map(move |s| date.at(h as i8, m as i8, s as i8, 0))
            })
        })
    }

    /// The first civil time strictly after `after` that matches, if one
    /// exists before the end of year 9999.
    fn next_after(&self, after: DateTime) -> Option<DateTime> {
        let mut date = after.date();
        let mut first_day = true;
        loop {
            if !self.years.is_empty()
                && !self
                    .years
                    .iter()
                    .any(|y| y.contains(i32::from(date.year())))
            {
                date = Date::new(date.year().checked_add(1)?, 1, 1).ok()?;
            } else if self.months & (1 << date.month()) == 0 {
                date = date.last_of_month().tomorrow().ok()?;
            } else {
                if self.matches_date(date)
                    && let Some(t) = self.times_on(date).find(|t| !first_day || *t > after)
                {
                    return Some(t);
                }
                date = date.tomorrow().ok()?;
            }
            first_day = false;
        }
    }
}

/// A 6- or 7-field cron read in UTC: `second minute hour day-of-month
/// month day-of-week [year]`, with what a window's cron accepts in each
/// field (`?` too, in the day fields). keyrot sleeps until the next
/// occurrence itself rather than running tokio-cron-scheduler, whose
/// ticker wakes every 500 ms: an idle daemon must wake only when something
/// is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// The expression as written.
    expr: Cow<'static, str>,
    /// The parsed expression.
    cron: Cron,
}

impl Schedule {
    /// `0 */15 * * * *`: second 0 of every 15th minute (the inventory
    /// sync's default).
    pub const EVERY_15_MINUTES: Schedule = Schedule {
        expr: Cow::Borrowed("0 */15 * * * *"),
        cron: Cron {
            seconds: 1,
            minutes: 1 | 1 << 15 | 1 << 30 | 1 << 45,
            hours: (1 << 24) - 1,
            dom: ((1 << 32) - 1) & !1,
            months: ((1 << 13) - 1) & !1,
            dow: (1 << 7) - 1,
            years: Vec::new(),
            dom_star: true,
            dow_star: true,
        },
    };

    /// Parses a schedule; the error names the field and value at fault.
    pub fn parse(expr: &str) -> Result<Schedule, String> {
        Ok(Schedule {
            expr: Cow::Owned(expr.trim().to_string()),
            cron: Cron::parse_with_seconds(expr)?,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.expr
    }

    /// The first occurrence strictly after `now`, if there is one.
    pub fn next_after(&self, now: Timestamp) -> Option<Timestamp> {
        let after = now.to_zoned(TimeZone::UTC).datetime();
        let next = self.cron.next_after(after)?;
        next.to_zoned(TimeZone::UTC).ok().map(|z| z.timestamp())
    }
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(expr: &str) -> Result<Schedule, String> {
        Schedule::parse(expr)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

/// The bits of an item's values (fields other than the year stay under 64).
fn mask(item: Item) -> u64 {
    (item.first..=item.last.min(63))
        .step_by(usize::from(item.step))
        .fold(0u64, |s, v| s | (1 << v))
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

/// Parses field number `pos`: a comma list of `*`, `N`, `N-M`, each with an
/// optional `/STEP` (`?` is `*`).
fn parse_field(text: &str, spec: &FieldSpec, pos: usize) -> Result<Vec<Item>, String> {
    text.split(',')
        .map(|item| parse_item(item, spec, pos))
        .collect()
}

/// Parses one list item of a field.
fn parse_item(item: &str, spec: &FieldSpec, pos: usize) -> Result<Item, String> {
    let err = |what: String| format!("cron field {pos} ({}) {what}", spec.name);
    if item.is_empty() {
        return Err(err("has an empty list item".into()));
    }
    let (range, step) = match item.split_once('/') {
        Some((r, s)) => {
            let step: u16 = s
                .parse()
                .map_err(|_| err(format!("step {s:?} is not a number")))?;
            if step == 0 {
                return Err(err("step 0 must be at least 1".into()));
            }
            (r, Some(step))
        }
        None => (item, None),
    };
    let any_day = range == "?" && matches!(spec.name, "day-of-month" | "day-of-week");
    let (first, last) = if range == "*" || any_day {
        (spec.min, spec.max)
    } else if let Some((a, b)) = range.split_once('-') {
        let (lo, hi) = (parse_value(a, spec, pos)?, parse_value(b, spec, pos)?);
        if lo > hi {
            return Err(err(format!(
                "range {a}-{b} runs backwards (start after end)"
            )));
        }
        (lo, hi)
    } else {
        let v = parse_value(range, spec, pos)?;
        // `N/STEP` means from N to the field's end, as in Vixie cron.
        (v, if step.is_some() { spec.max } else { v })
    };
    Ok(Item {
        first,
        last,
        step: step.unwrap_or(1),
    })
}

/// Parses a number or (where the field allows) a name, and checks its range.
fn parse_value(text: &str, spec: &FieldSpec, pos: usize) -> Result<u16, String> {
    let prefix = format!("cron field {pos} ({})", spec.name);
    if let Some(i) = spec.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        // Names map from the field's first value: JAN = 1, SUN = 0.
        return Ok(spec.min + i as u16);
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
    Ok(n as u16)
}

#[cfg(test)]
mod tests;
