//! Human durations (`30d`, `1h30m`) both ways, read and written in jiff's
//! friendly format, and the saturating instant arithmetic and instant
//! formatting the rest of the policy uses.

use jiff::fmt::friendly::{Designator, Spacing, SpanParser, SpanPrinter};
use jiff::{SignedDuration, Span, SpanRelativeTo, SpanRound, Timestamp, Unit};

/// The units, for error messages.
const UNITS_HELP: &str = "units: w (7 days), d (24 hours), h, m, s";

/// The largest duration [`parse_duration`] accepts, in seconds (1000 years):
/// instants stay computable (jiff timestamps span about ±10,000 years).
const MAX_SECS: i64 = 1000 * 366 * 86_400;

/// Parses a human duration in jiff's friendly format: `30d`, `12h`, `90m`,
/// `45s`, `2w`, `1h30m`, and jiff's other spellings (`1h 30m`,
/// `2 hours`, `1.5h`, `500ms`).
///
/// Units go from largest to smallest, each at most once. `d` is 24 hours
/// and `w` is 7 days, exact (no calendar or DST); years and months, which
/// have no fixed length, are refused, as are empty and negative durations
/// and durations over 1000 years. Errors name the value.
pub fn parse_duration(s: &str) -> Result<SignedDuration, String> {
    static PARSER: SpanParser = SpanParser::new();
    let text = s.trim();
    if text.is_empty() {
        return Err(format!(
            "empty duration: write e.g. 30d or 1h30m ({UNITS_HELP})"
        ));
    }
    let bad = |e: jiff::Error| {
        let e = e.to_string();
        let why = e
            .strip_prefix("failed to parse input in the \"friendly\" duration format: ")
            .unwrap_or(&e);
        format!("duration {s:?}: {why} ({UNITS_HELP})")
    };
    let span: Span = PARSER.parse_span(text).map_err(bad)?;
    if span.get_years() != 0 || span.get_months() != 0 {
        return Err(format!(
            "duration {s:?}: years and months have no fixed length; use d (24 hours) or w (7 days)"
        ));
    }
    let d = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(bad)?;
    if d.is_negative() {
        return Err(format!(
            "duration {s:?} is negative; durations must be 0 or more"
        ));
    }
    if d.as_secs() > MAX_SECS {
        return Err(format!(
            "duration {s:?} is too large (more than 1000 years)"
        ));
    }
    Ok(d)
}

/// Formats a SignedDuration as the shortest human form ("30d", "1h30m", "45s").
///
/// Days are the largest unit (`14d`, not `2w`); sub-second parts are shown
/// as `ms`, `us` and `ns`; zero is `0s`; negative durations get a leading `-`.
pub fn format_duration(d: SignedDuration) -> String {
    static PRINTER: SpanPrinter = SpanPrinter::new()
        .designator(Designator::HumanTime)
        .spacing(Spacing::None);
    let in_days = SpanRound::new().largest(Unit::Day).days_are_24_hours();
    match Span::try_from(d).and_then(|span| span.round(in_days)) {
        Ok(span) => PRINTER.span_to_string(&span),
        // Beyond a Span's range (about 20,000 years): hours are the largest unit.
        Err(_) => PRINTER.duration_to_string(&d),
    }
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
    fn accepts_jiffs_other_spellings() {
        let cases = [
            ("1h 30m", 5400),
            ("2 hours", 7200),
            ("90days", 90 * 86_400),
            ("1.5h", 5400),
            ("+3h", 3 * 3600),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(secs(want)), "{text}");
        }
        assert_eq!(
            parse_duration("500ms"),
            Ok(SignedDuration::from_millis(500))
        );
    }

    #[test]
    fn rejects_bad_durations_naming_the_value() {
        let cases = [
            ("", "empty duration"),
            ("   ", "empty duration"),
            ("-5d", "duration \"-5d\" is negative"),
            ("5d ago", "duration \"5d ago\" is negative"),
            (
                "5y",
                "duration \"5y\": years and months have no fixed length",
            ),
            (
                "1mo",
                "duration \"1mo\": years and months have no fixed length",
            ),
            (
                "5",
                "duration \"5\": expected to find unit designator suffix",
            ),
            (
                "d",
                "duration \"d\": expected duration to start with a unit value",
            ),
            ("30m1h", "units must be written from largest to smallest"),
            ("1h1h", "units must be written from largest to smallest"),
            (
                "99999999999999999999s",
                "duration \"99999999999999999999s\": ",
            ),
            (
                "9223372036854775807w",
                "duration \"9223372036854775807w\": ",
            ),
            ("1001000d", "is too large (more than 1000 years)"),
            ("90x", "(units: w (7 days), d (24 hours), h, m, s)"),
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
            (SignedDuration::from_micros(1500), "1ms500us"),
            (SignedDuration::MAX, "2562047788015215h30m7s999ms999us999ns"),
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
