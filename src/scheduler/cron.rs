//! The periodic inventory sync's schedule: a 6-field cron (seconds first),
//! read in UTC, evaluated with croner. keyrot sleeps until the next
//! occurrence itself rather than running tokio-cron-scheduler, whose ticker
//! wakes every 500 ms: an idle daemon must wake only when something is due.

use std::str::FromStr;

use croner::Cron;
use croner::parser::{CronParser, Seconds};
use jiff::Timestamp;

/// A parsed sync schedule.
#[derive(Clone, Debug)]
pub struct SyncSchedule(Cron);

impl FromStr for SyncSchedule {
    type Err = String;

    fn from_str(expr: &str) -> Result<Self, String> {
        let parser = CronParser::builder().seconds(Seconds::Required).build();
        parser
            .parse(expr)
            .map(SyncSchedule)
            .map_err(|e| format!("cron {expr:?}: {e}"))
    }
}

impl SyncSchedule {
    /// The first occurrence strictly after `now`.
    pub fn next_after(&self, now: Timestamp) -> Option<Timestamp> {
        let at = chrono::DateTime::<chrono::Utc>::from_timestamp(
            now.as_second(),
            now.subsec_nanosecond().max(0) as u32,
        )?;
        let next = self.0.find_next_occurrence(&at, false).ok()?;
        Timestamp::new(next.timestamp(), next.timestamp_subsec_nanos() as i32).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fifteen_minutes() {
        let s: SyncSchedule = "0 */15 * * * *".parse().unwrap();
        let now: Timestamp = "2026-11-23T10:07:30Z".parse().unwrap();
        assert_eq!(
            s.next_after(now).unwrap().to_string(),
            "2026-11-23T10:15:00Z"
        );
        let at: Timestamp = "2026-11-23T10:15:00Z".parse().unwrap();
        assert_eq!(
            s.next_after(at).unwrap().to_string(),
            "2026-11-23T10:30:00Z"
        );
    }

    #[test]
    fn five_fields_are_refused() {
        assert!("*/15 * * * *".parse::<SyncSchedule>().is_err());
    }
}
