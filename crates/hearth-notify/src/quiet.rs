//! Quiet hours: a daily window in the recipient's own time zone (possibly across midnight)
//! during which non-critical notifications wait. The window is computed per day on local wall
//! time, so it follows daylight-saving changes; an end that falls in a DST gap moves to the first
//! instant after the gap.

use chrono::{DateTime, Duration, LocalResult, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// `start` and `end` are minutes after local midnight; `start == end` means no quiet hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub start: u16,
    pub end: u16,
}

impl QuietHours {
    /// From `HH:MM` strings.
    pub fn parse(start: &str, end: &str) -> Option<QuietHours> {
        Some(QuietHours { start: minutes(start)?, end: minutes(end)? })
    }
}

/// `HH:MM` → minutes after midnight.
pub fn minutes(s: &str) -> Option<u16> {
    let t = NaiveTime::parse_from_str(s, "%H:%M").ok()?;
    u16::try_from(chrono::Timelike::hour(&t) * 60 + chrono::Timelike::minute(&t)).ok()
}

/// `None` when a message may go now; otherwise the instant quiet hours end.
pub fn deferred_until(now: DateTime<Utc>, tz: Tz, quiet: QuietHours) -> Option<DateTime<Utc>> {
    if quiet.start == quiet.end {
        return None;
    }
    let local = now.with_timezone(&tz);
    let m = u16::try_from(chrono::Timelike::hour(&local) * 60 + chrono::Timelike::minute(&local)).ok()?;
    let (start, end) = (quiet.start, quiet.end);
    let inside = if start < end { m >= start && m < end } else { m >= start || m < end };
    if !inside {
        return None;
    }
    let mut date = local.date_naive();
    if start > end && m >= start {
        date = date.succ_opt()?;
    }
    let end_time = NaiveTime::from_hms_opt(u32::from(end / 60), u32::from(end % 60), 0)?;
    let mut naive = date.and_time(end_time);
    for _ in 0..4 {
        match tz.from_local_datetime(&naive) {
            LocalResult::Single(t) => return Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(first, _) => return Some(first.with_timezone(&Utc)),
            // In a DST gap: the wall clock skips this time; try a little later.
            LocalResult::None => naive += Duration::minutes(30),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn windows_across_midnight_in_different_zones() {
        let q = QuietHours::parse("22:00", "07:00").unwrap();
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        let new_york: Tz = "America/New_York".parse().unwrap();
        // 17:00 UTC is 22:30 in Kolkata (quiet until 07:00 IST = 01:30 UTC) and noon in New York.
        let now = utc("2026-01-15T17:00:00Z");
        assert_eq!(deferred_until(now, kolkata, q), Some(utc("2026-01-16T01:30:00Z")));
        assert_eq!(deferred_until(now, new_york, q), None);
        // 03:00 UTC is 22:00 in New York (EST): quiet until 07:00 EST = 12:00 UTC.
        assert_eq!(deferred_until(utc("2026-01-15T03:00:00Z"), new_york, q), Some(utc("2026-01-15T12:00:00Z")));
        // After midnight local, the same night's end.
        assert_eq!(deferred_until(utc("2026-01-15T20:00:00Z"), kolkata, q), Some(utc("2026-01-16T01:30:00Z")));
        // The end is exclusive.
        assert_eq!(deferred_until(utc("2026-01-16T01:30:00Z"), kolkata, q), None);
        // A daytime window.
        let lunch = QuietHours::parse("12:00", "13:00").unwrap();
        assert_eq!(
            deferred_until(utc("2026-01-15T12:15:00Z"), chrono_tz::UTC, lunch),
            Some(utc("2026-01-15T13:00:00Z"))
        );
        assert_eq!(deferred_until(now, kolkata, QuietHours { start: 60, end: 60 }), None);
    }

    #[test]
    fn daylight_saving_is_followed() {
        // New York springs forward on 2026-03-08: 07:00 is EDT (UTC-4) that morning.
        let q = QuietHours::parse("22:00", "07:00").unwrap();
        let ny: Tz = "America/New_York".parse().unwrap();
        assert_eq!(deferred_until(utc("2026-03-08T04:00:00Z"), ny, q), Some(utc("2026-03-08T11:00:00Z")));
        // An end inside the gap (02:30 does not exist that night) moves past it.
        let gap = QuietHours::parse("23:00", "02:30").unwrap();
        assert_eq!(deferred_until(utc("2026-03-08T04:30:00Z"), ny, gap), Some(utc("2026-03-08T07:00:00Z")));
        assert!(QuietHours::parse("25:00", "07:00").is_none());
    }
}
