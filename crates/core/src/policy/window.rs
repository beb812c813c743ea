//! Rotation windows: a cron start read in an IANA time zone, open for a
//! fixed duration. This module turns the cron's civil matches into instants.
//!
//! DST: each civil start is resolved with jiff's `compatible`
//! disambiguation. A start that falls in a gap (the clocks skip it) moves
//! forward by the gap's length (01:30 on a spring-forward night in
//! Europe/London starts at 02:30 BST); a start that falls in a fold (the
//! clocks repeat it) uses the earlier instant only, so it fires once. The
//! window then lasts its duration in real (absolute) time.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::cron::Cron;
use super::duration::{add_sat, format_duration};

/// How far (in days) a search for a start looks before giving up: ~5 years.
const SEARCH_DAYS: i64 = 5 * 366;

/// Bound on how far the instant order of two civil times can differ from
/// their civil order (the largest UTC-offset change around a transition).
const SLACK: SignedDuration = SignedDuration::from_hours(4);

/// A rotation window: a cron start, a duration and an IANA time zone.
#[derive(Clone, Debug)]
pub struct Window {
    /// The cron expression as written (5 fields: min hour dom month dow).
    pub cron: String,
    /// How long the window stays open after each start.
    pub duration: SignedDuration,
    /// IANA zone name the cron is read in.
    pub timezone: String,
    /// The parsed cron.
    spec: Cron,
    /// The resolved zone.
    tz: TimeZone,
}

impl Window {
    /// Parses and checks a window. The error is a message without position.
    ///
    /// `cron` has 5 fields (minute hour day-of-month month day-of-week) with
    /// `*`, lists, ranges, steps, JAN-DEC and SUN-SAT names (any case); 0
    /// and 7 are Sunday. When both day fields are restricted (neither
    /// begins with `*`), a day matches if either matches (Vixie cron).
    /// Starts are read in `timezone` with jiff's `compatible` rule: a start
    /// in a DST gap moves forward by the gap, one in a fold fires once, at
    /// the earlier instant. `duration` must be positive; occurrences may
    /// overlap.
    pub fn parse(cron: &str, duration: SignedDuration, timezone: &str) -> Result<Window, String> {
        let spec = Cron::parse(cron)?;
        if !duration.is_positive() {
            return Err(format!(
                "window duration must be positive, got {}",
                format_duration(duration)
            ));
        }
        let tz = TimeZone::get(timezone).map_err(|_| format!("unknown time zone {timezone:?}"))?;
        Ok(Window {
            cron: cron.to_string(),
            duration,
            timezone: timezone.to_string(),
            spec,
            tz,
        })
    }

    /// The window occurrence `[start, end)` containing `at`, if any. When
    /// occurrences overlap, the one that started last wins.
    pub fn containing(&self, at: Timestamp) -> Option<(Timestamp, Timestamp)> {
        // The latest start at or before `at` has the latest end too, so if
        // it does not contain `at`, no earlier one does.
        let floor = at.checked_sub(self.duration).unwrap_or(Timestamp::MIN);
        let start = self.prev_start_between(at, floor)?;
        let end = add_sat(start, self.duration);
        (at < end).then_some((start, end))
    }

    /// The first window start strictly after `at` (None if it never opens
    /// within about five years).
    pub fn next_start_after(&self, at: Timestamp) -> Option<Timestamp> {
        // Civil times map to instants in civil order except near an offset
        // change, where they can be out of order by at most SLACK: start a
        // little early and keep looking a little past the first hit.
        let lo = self.civil(at).checked_sub(SLACK).ok()?;
        let mut best: Option<(Timestamp, DateTime)> = None;
        for date in days(lo.date(), 1) {
            if best.is_some_and(|(_, stop)| date > stop.date()) {
                break;
            }
            if !self.spec.matches_date(date) {
                continue;
            }
            for civil in self.spec.times_on(date).filter(|c| *c >= lo) {
                if best.is_some_and(|(_, stop)| civil > stop) {
                    break;
                }
                let Some(ts) = self.resolve(civil).filter(|ts| *ts > at) else {
                    continue;
                };
                best = match best {
                    None => Some((ts, civil.checked_add(SLACK).unwrap_or(civil))),
                    Some((b, stop)) => Some((b.min(ts), stop)),
                };
            }
        }
        best.map(|(ts, _)| ts)
    }

    /// The last window start at or before `at` (None if there was none
    /// within about five years).
    pub fn prev_start_at_or_before(&self, at: Timestamp) -> Option<Timestamp> {
        self.prev_start_between(at, Timestamp::MIN)
    }

    /// The last start in `[floor, at]`, looking back at most ~5 years.
    fn prev_start_between(&self, at: Timestamp, floor: Timestamp) -> Option<Timestamp> {
        let hi = self.civil(at).checked_add(SLACK).ok()?;
        let floor_date = self.civil(floor).checked_sub(SLACK).map(|d| d.date()).ok();
        let mut best: Option<(Timestamp, DateTime)> = None;
        for date in days(hi.date(), -1) {
            let stop_date = best.map(|(_, stop)| stop.date()).or(floor_date);
            if stop_date.is_some_and(|stop| date < stop) {
                break;
            }
            if !self.spec.matches_date(date) {
                continue;
            }
            for civil in self.spec.times_on(date).rev().filter(|c| *c <= hi) {
                if best.is_some_and(|(_, stop)| civil < stop) {
                    break;
                }
                let Some(ts) = self.resolve(civil).filter(|ts| *ts <= at) else {
                    continue;
                };
                best = match best {
                    None => Some((ts, civil.checked_sub(SLACK).unwrap_or(civil))),
                    Some((b, stop)) => Some((b.max(ts), stop)),
                };
            }
        }
        best.map(|(ts, _)| ts).filter(|ts| *ts >= floor)
    }

    /// Formats an occurrence as local civil times, e.g.
    /// `2026-11-21 02:00–06:00 Europe/London`.
    pub fn describe(&self, start: Timestamp, end: Timestamp) -> String {
        let (s, e) = (self.civil(start), self.civil(end));
        let end_fmt = if s.date() == e.date() {
            "%H:%M"
        } else {
            "%Y-%m-%d %H:%M"
        };
        format!(
            "{}–{} {}",
            s.strftime("%Y-%m-%d %H:%M"),
            e.strftime(end_fmt),
            self.timezone
        )
    }

    /// `at` as a civil datetime in the window's zone.
    fn civil(&self, at: Timestamp) -> DateTime {
        self.tz.to_datetime(at)
    }

    /// A civil start as an instant, with `compatible` disambiguation.
    fn resolve(&self, civil: DateTime) -> Option<Timestamp> {
        self.tz.to_ambiguous_timestamp(civil).compatible().ok()
    }
}

/// Up to [`SEARCH_DAYS`] consecutive dates from `from`, forwards (`step` 1)
/// or backwards (`step` -1), stopping at the end of the calendar.
fn days(from: Date, step: i8) -> impl Iterator<Item = Date> {
    std::iter::successors(Some(from), move |d| {
        if step > 0 {
            d.tomorrow().ok()
        } else {
            d.yesterday().ok()
        }
    })
    .take(SEARCH_DAYS as usize)
}

#[cfg(test)]
mod tests;
