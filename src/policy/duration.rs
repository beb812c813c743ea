//! Human durations (`30d`, `1h30m`) both ways, and the saturating instant
//! arithmetic and instant formatting the rest of the policy uses.

use jiff::{SignedDuration, Timestamp};

/// Accepted units, largest first, with their length in seconds.
const UNITS: [(char, i64); 5] = [
    ('w', 7 * 86_400),
    ('d', 86_400),
    ('h', 3_600),
    ('m', 60),
    ('s', 1),
];

/// The accepted units, for error messages.
const UNITS_HELP: &str = "w (7 days), d (24 hours), h, m, s";

/// Parses a human duration: `30d`, `12h`, `90m`, `45s`, `2w`, `1h30m`.
///
/// A duration is one or more `NUMBER UNIT` parts, units largest first and
/// each at most once (`1d12h`, not `12h1d`). `d` is 24 hours and `w` is 7
/// days, exact (no calendar or DST). Empty, negative and fractional
/// durations and unknown units are rejected.
pub fn parse_duration(s: &str) -> Result<SignedDuration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err(format!(
            "empty duration: write e.g. 30d or 1h30m (units: {UNITS_HELP})"
        ));
    }
    if text.starts_with('-') {
        return Err(format!(
            "duration {s:?} is negative; durations must be 0 or more"
        ));
    }
    let mut total: i64 = 0;
    let mut rest = text;
    // Index into UNITS of the last unit used: units must get smaller.
    let mut last: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "duration {s:?}: expected a number at {rest:?} (units: {UNITS_HELP})"
            ));
        }
        let (num, after) = rest.split_at(digits);
        let unit = after.chars().next().ok_or_else(|| {
            format!("duration {s:?}: number {num} has no unit (units: {UNITS_HELP})")
        })?;
        let idx = UNITS.iter().position(|(u, _)| *u == unit).ok_or_else(|| {
            format!("duration {s:?}: unknown unit {unit:?} (units: {UNITS_HELP})")
        })?;
        if last.is_some_and(|l| idx <= l) {
            return Err(format!(
                "duration {s:?}: units must go from largest to smallest, each once (w d h m s)"
            ));
        }
        last = Some(idx);
        let too_large = || format!("duration {s:?} is too large");
        let n: i64 = num.parse().map_err(|_| too_large())?;
        total = n
            .checked_mul(UNITS[idx].1)
            .and_then(|secs| total.checked_add(secs))
            .ok_or_else(too_large)?;
        rest = &after[unit.len_utf8()..];
    }
    // Keep instants computable: jiff timestamps span about ±10,000 years.
    if total > MAX_SECS {
        return Err(format!(
            "duration {s:?} is too large (more than 1000 years)"
        ));
    }
    Ok(SignedDuration::from_secs(total))
}

/// The largest duration [`parse_duration`] accepts, in seconds (1000 years).
const MAX_SECS: i64 = 1000 * 366 * 86_400;

/// Formats a SignedDuration as the shortest human form ("30d", "1h30m", "45s").
///
/// Days are the largest unit (`14d`, not `2w`); sub-second parts are shown
/// as `ms` or `ns`; zero is `0s`; negative durations get a leading `-`.
pub fn format_duration(d: SignedDuration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let mut out = String::new();
    if d.is_negative() {
        out.push('-');
    }
    let abs = d.unsigned_abs();
    let mut secs = abs.as_secs();
    for (unit, len) in &UNITS[1..] {
        let len = *len as u64;
        if secs >= len {
            out.push_str(&format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    let nanos = abs.subsec_nanos();
    if nanos != 0 {
        if nanos.is_multiple_of(1_000_000) {
            out.push_str(&format!("{}ms", nanos / 1_000_000));
        } else {
            out.push_str(&format!("{nanos}ns"));
        }
    }
    out
}

/// `ts + d`, clamped to the representable range instead of failing.
pub(crate) fn add_sat(ts: Timestamp, d: SignedDuration) -> Timestamp {
    ts.checked_add(d).unwrap_or(if d.is_negative() {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// An instant in UTC at minute precision when it allows, e.g.
/// `2026-11-20T02:00Z` (seconds are shown when not zero).
pub(crate) fn format_ts(ts: Timestamp) -> String {
    let fmt = if ts.as_second() % 60 == 0 && ts.subsec_nanosecond() == 0 {
        "%Y-%m-%dT%H:%MZ"
    } else {
        "%Y-%m-%dT%H:%M:%SZ"
    };
    ts.strftime(fmt).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: i64) -> SignedDuration {
        SignedDuration::from_secs(n)
    }

    #[test]
    fn parses_units_and_combinations() {
        let cases = [
            ("30d", 30 * 86_400),
            ("12h", 12 * 3600),
            ("90m", 90 * 60),
            ("45s", 45),
            ("2w", 14 * 86_400),
            ("1h30m", 5400),
            ("1d12h", 36 * 3600),
            (
                "1w2d3h4m5s",
                7 * 86_400 + 2 * 86_400 + 3 * 3600 + 4 * 60 + 5,
            ),
            (" 0s ", 0),
            ("007m", 420),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(secs(want)), "{text}");
        }
    }

    #[test]
    fn rejects_bad_durations_naming_units() {
        let cases = [
            ("", "empty duration"),
            ("   ", "empty duration"),
            ("-5d", "is negative"),
            (
                "5y",
                "unknown unit 'y' (units: w (7 days), d (24 hours), h, m, s)",
            ),
            ("5", "number 5 has no unit"),
            ("d", "expected a number at \"d\""),
            ("1.5h", "unknown unit '.'"),
            ("1h 30m", "expected a number at \" 30m\""),
            ("30m1h", "units must go from largest to smallest"),
            ("1h1h", "units must go from largest to smallest"),
            ("99999999999999999999s", "is too large"),
            ("9223372036854775807w", "is too large"),
            ("1001000d", "is too large (more than 1000 years)"),
            ("5D", "unknown unit 'D'"),
        ];
        for (text, want) in cases {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: got {err:?}, want {want:?}");
        }
    }

    #[test]
    fn formats_shortest_form_and_round_trips() {
        let cases = [
            (secs(30 * 86_400), "30d"),
            (secs(5400), "1h30m"),
            (secs(45), "45s"),
            (secs(36 * 3600), "1d12h"),
            (secs(14 * 86_400), "14d"),
            (secs(0), "0s"),
            (secs(-3600), "-1h"),
            (SignedDuration::from_millis(1500), "1s500ms"),
            (SignedDuration::from_nanos(7), "7ns"),
        ];
        for (d, want) in cases {
            assert_eq!(format_duration(d), want);
        }
        for text in ["30d", "1h30m", "1d2h3m4s", "45s"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }

    #[test]
    fn saturating_add_and_instant_format() {
        let t: Timestamp = "2026-11-20T02:00Z".parse().unwrap();
        assert_eq!(add_sat(t, secs(60)), "2026-11-20T02:01Z".parse().unwrap());
        assert_eq!(add_sat(t, SignedDuration::MAX), Timestamp::MAX);
        assert_eq!(add_sat(t, SignedDuration::MIN), Timestamp::MIN);
        assert_eq!(format_ts(t), "2026-11-20T02:00Z");
        assert_eq!(format_ts(add_sat(t, secs(5))), "2026-11-20T02:00:05Z");
    }
}
