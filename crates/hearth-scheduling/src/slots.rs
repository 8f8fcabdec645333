//! Availability and slot computation: pure functions, no I/O.
//!
//! Decisions:
//! - Weekly hours, exceptions and booking rules are wall-clock rules in the practitioner's IANA
//!   time zone. A window's bounds are turned into instants on each date separately, so 09:00 is
//!   09:00 local on both sides of a DST change. A bound that falls in a spring-forward gap moves
//!   to the first instant after it; an ambiguous one (fall back) takes the earlier instant for a
//!   start and the later for an end, so a window always covers the wall-clock time it names.
//! - Slots are laid out from the window's start in real time, every `minutes + buffer`, while
//!   the appointment itself fits in the window; so a window spanning a DST change holds as many
//!   slots as real time allows.
//! - Booked time is kept in 5-minute cells (`hearth_store_sql::scheduling::CELL_MS`): a slot is
//!   free when none of the cells of its appointment *and* buffer is claimed. Durations, buffers
//!   and window bounds are therefore whole multiples of 5 minutes (every real UTC offset is a
//!   multiple of 15 minutes, so slot starts stay on the cell grid).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use hearth_store_sql::scheduling::CELL_MS;

/// A window of wall-clock time within one day, minutes after midnight, `start < end <= 1440`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: u32,
    pub end: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hours {
    pub days: Vec<Weekday>,
    pub window: Window,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppointmentType {
    /// A code of HL7 v2 table 0276 (`ROUTINE`, `FOLLOWUP`, `CHECKUP`, `WALKIN`, `EMERGENCY`).
    pub code: String,
    pub minutes: u32,
    pub buffer: u32,
}

/// A one-off change on one date: closed (all day or for `window`), or extra hours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exception {
    pub date: NaiveDate,
    pub available: bool,
    pub window: Option<Window>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// How far ahead a slot may be booked, in days.
    pub max_days_ahead: u32,
    /// The least notice a booking needs, in minutes.
    pub min_notice_minutes: u32,
    /// The most appointments on one (local) day; `None`: no limit.
    pub max_per_day: Option<u32>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules { max_days_ahead: 90, min_notice_minutes: 60, max_per_day: None }
    }
}

/// One practitioner's availability at one location/service (a FHIR `Schedule`).
#[derive(Debug, Clone, PartialEq)]
pub struct Availability {
    pub time_zone: Tz,
    pub hours: Vec<Hours>,
    pub types: Vec<AppointmentType>,
    pub exceptions: Vec<Exception>,
    pub rules: Rules,
}

/// A slot: the appointment's own time (the buffer after it is not part of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Slot {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Removes `cut` from `windows`.
fn subtract(windows: Vec<Window>, cut: Window) -> Vec<Window> {
    let mut out = Vec::new();
    for w in windows {
        if cut.end <= w.start || cut.start >= w.end {
            out.push(w);
            continue;
        }
        if w.start < cut.start {
            out.push(Window { start: w.start, end: cut.start });
        }
        if cut.end < w.end {
            out.push(Window { start: cut.end, end: w.end });
        }
    }
    out
}

impl Availability {
    /// The type named `code`.
    pub fn appointment_type(&self, code: &str) -> Option<&AppointmentType> {
        self.types.iter().find(|t| t.code == code)
    }

    /// The open windows on a local date: the weekly hours of its weekday, minus the closures and
    /// plus the extra hours of that date.
    pub fn windows_on(&self, date: NaiveDate) -> Vec<Window> {
        let mut windows: Vec<Window> =
            self.hours.iter().filter(|h| h.days.contains(&date.weekday())).map(|h| h.window).collect();
        for e in self.exceptions.iter().filter(|e| e.date == date) {
            match (e.available, e.window) {
                (false, None) => windows.clear(),
                (false, Some(cut)) => windows = subtract(windows, cut),
                (true, Some(extra)) => windows.push(extra),
                (true, None) => {}
            }
        }
        windows.sort_by_key(|w| w.start);
        windows
    }

    /// The slots of `ty` whose start lies in `[from, to)`, ignoring bookings and rules.
    pub fn candidates(&self, ty: &AppointmentType, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Slot> {
        let tz = self.time_zone;
        let step = Duration::minutes(i64::from(ty.minutes + ty.buffer));
        let length = Duration::minutes(i64::from(ty.minutes));
        if ty.minutes == 0 {
            return Vec::new();
        }
        let mut out = BTreeSet::new();
        // A day earlier than `from`'s local date: a window on it may run past midnight UTC.
        let mut date = from.with_timezone(&tz).date_naive().pred_opt().unwrap_or(NaiveDate::MIN);
        let last = to.with_timezone(&tz).date_naive();
        while date <= last {
            for w in self.windows_on(date) {
                let (Some(open), Some(close)) = (instant(tz, date, w.start, true), instant(tz, date, w.end, false))
                else {
                    continue;
                };
                let mut start = open;
                while start + length <= close {
                    if start >= from && start < to {
                        out.insert(Slot { start, end: start + length });
                    }
                    start += step;
                }
            }
            let Some(next) = date.succ_opt() else { break };
            date = next;
        }
        out.into_iter().collect()
    }

    /// The free slots of `ty` starting in `[from, to)` at `now`: candidates that respect the
    /// booking rules and whose cells (appointment and buffer) are not in `claimed`
    /// (`(cell, appointment)`, which must cover `from − 1 day` to `to + 1 day` for the per-day
    /// limit).
    pub fn free(
        &self,
        ty: &AppointmentType,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
        claimed: &[(i64, String)],
    ) -> Vec<Slot> {
        let earliest = now + Duration::minutes(i64::from(self.rules.min_notice_minutes));
        let latest = now + Duration::days(i64::from(self.rules.max_days_ahead));
        let taken: HashSet<i64> = claimed.iter().map(|(c, _)| *c).collect();
        // Appointments per local day, counted by their first cell.
        let mut first_cell: BTreeMap<&str, i64> = BTreeMap::new();
        for (cell, appointment) in claimed {
            let e = first_cell.entry(appointment.as_str()).or_insert(*cell);
            *e = (*e).min(*cell);
        }
        let mut per_day: BTreeMap<NaiveDate, u32> = BTreeMap::new();
        for cell in first_cell.values() {
            if let Some(t) = DateTime::from_timestamp_millis(*cell) {
                *per_day.entry(t.with_timezone(&self.time_zone).date_naive()).or_default() += 1;
            }
        }
        self.candidates(ty, from, to)
            .into_iter()
            .filter(|s| s.start >= earliest && s.start <= latest)
            .filter(|s| cells(s.start, ty).iter().all(|c| !taken.contains(c)))
            .filter(|s| {
                let day = s.start.with_timezone(&self.time_zone).date_naive();
                self.rules.max_per_day.is_none_or(|max| per_day.get(&day).copied().unwrap_or(0) < max)
            })
            .collect()
    }
}

/// The claim cells of an appointment of `ty` starting at `start`: its minutes and its buffer.
pub fn cells(start: DateTime<Utc>, ty: &AppointmentType) -> Vec<i64> {
    let first = start.timestamp_millis().div_euclid(CELL_MS) * CELL_MS;
    let end = start.timestamp_millis() + i64::from(ty.minutes + ty.buffer) * 60_000;
    let mut out = Vec::new();
    let mut c = first;
    while c < end {
        out.push(c);
        c += CELL_MS;
    }
    out
}

/// The instant of `minute` minutes after local midnight of `date` in `tz` (1440 is the next
/// midnight). In a gap: the first instant after it; ambiguous: the earlier when `earliest`.
pub fn instant(tz: Tz, date: NaiveDate, minute: u32, earliest: bool) -> Option<DateTime<Utc>> {
    let naive = date.and_hms_opt(0, 0, 0)? + Duration::minutes(i64::from(minute));
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Some(if earliest { a } else { b }.with_timezone(&Utc)),
        // Gaps end on a whole quarter hour and bounds are on the 5-minute grid: the first
        // local time on that grid that exists is the end of the gap.
        LocalResult::None => (1..=72).find_map(|q| match tz.from_local_datetime(&(naive + Duration::minutes(5 * q))) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t.with_timezone(&Utc)),
            LocalResult::None => None,
        }),
    }
}

/// Parses `HH:MM` into minutes after midnight (`24:00` allowed for an end).
pub fn parse_time(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

pub fn format_time(minute: u32) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// FHIR `daysOfWeek` codes.
pub fn parse_day(s: &str) -> Option<Weekday> {
    Some(match s {
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        "sun" => Weekday::Sun,
        _ => return None,
    })
}

pub fn day_code(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "mon",
        Weekday::Tue => "tue",
        Weekday::Wed => "wed",
        Weekday::Thu => "thu",
        Weekday::Fri => "fri",
        Weekday::Sat => "sat",
        Weekday::Sun => "sun",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn weekdays(tz: &str, start: &str, end: &str) -> Availability {
        use Weekday::*;
        Availability {
            time_zone: tz.parse().unwrap(),
            hours: vec![Hours {
                days: vec![Mon, Tue, Wed, Thu, Fri, Sat, Sun],
                window: Window { start: parse_time(start).unwrap(), end: parse_time(end).unwrap() },
            }],
            types: vec![AppointmentType { code: "ROUTINE".into(), minutes: 30, buffer: 0 }],
            exceptions: vec![],
            rules: Rules { max_days_ahead: 3650, min_notice_minutes: 0, max_per_day: None },
        }
    }

    #[test]
    fn local_hours_hold_across_a_dst_change() {
        // London moves to BST on Sunday 29 March 2026.
        let a = weekdays("Europe/London", "09:00", "10:00");
        let ty = &a.types[0];
        let slots = a.candidates(ty, utc("2026-03-28T00:00:00Z"), utc("2026-03-30T00:00:00Z"));
        let starts: Vec<String> = slots.iter().map(|s| s.start.to_rfc3339()).collect();
        assert_eq!(
            starts,
            [
                "2026-03-28T09:00:00+00:00",
                "2026-03-28T09:30:00+00:00",
                "2026-03-29T08:00:00+00:00",
                "2026-03-29T08:30:00+00:00"
            ]
        );
    }

    #[test]
    fn a_window_across_the_gap_has_real_time_slots_and_none_inside_the_gap() {
        // New York springs forward at 02:00 on 8 March 2026: 01:00–04:00 local is two real hours.
        let a = weekdays("America/New_York", "01:00", "04:00");
        let slots = a.candidates(&a.types[0], utc("2026-03-08T00:00:00Z"), utc("2026-03-09T00:00:00Z"));
        assert_eq!(slots.len(), 4, "{slots:?}");
        assert_eq!(slots[0].start, utc("2026-03-08T06:00:00Z"));
        assert_eq!(slots[3].end, utc("2026-03-08T08:00:00Z"));
        // A window starting inside the gap opens when the gap ends (03:00 EDT = 07:00Z).
        let b = weekdays("America/New_York", "02:30", "04:00");
        let slots = b.candidates(&b.types[0], utc("2026-03-08T00:00:00Z"), utc("2026-03-09T00:00:00Z"));
        assert_eq!(slots.first().map(|s| s.start), Some(utc("2026-03-08T07:00:00Z")));
        assert_eq!(slots.len(), 2);
        // Falling back on 1 November 2026: 01:00–03:00 local is three real hours.
        let c = weekdays("America/New_York", "01:00", "03:00");
        let slots = c.candidates(&c.types[0], utc("2026-11-01T00:00:00Z"), utc("2026-11-02T00:00:00Z"));
        assert_eq!(slots.len(), 6, "{slots:?}");
    }

    #[test]
    fn the_same_wall_clock_hours_are_different_instants_in_different_zones() {
        let kolkata = weekdays("Asia/Kolkata", "09:00", "09:30");
        let kathmandu = weekdays("Asia/Kathmandu", "09:00", "09:30");
        let (from, to) = (utc("2026-06-01T00:00:00Z"), utc("2026-06-02T00:00:00Z"));
        assert_eq!(kolkata.candidates(&kolkata.types[0], from, to)[0].start, utc("2026-06-01T03:30:00Z"));
        assert_eq!(kathmandu.candidates(&kathmandu.types[0], from, to)[0].start, utc("2026-06-01T03:15:00Z"));
    }

    #[test]
    fn bookings_buffers_rules_and_exceptions_remove_slots() {
        let mut a = weekdays("UTC", "09:00", "11:00");
        a.types[0].buffer = 10; // slots every 40 minutes: 09:00, 09:40, 10:20
        let ty = a.types[0].clone();
        let (from, to) = (utc("2026-06-01T00:00:00Z"), utc("2026-06-02T00:00:00Z"));
        let now = utc("2026-05-01T00:00:00Z");
        assert_eq!(a.free(&ty, from, to, now, &[]).len(), 3);
        // A booking at 09:00 claims 09:00–09:40 (with its buffer).
        let claimed: Vec<(i64, String)> =
            cells(utc("2026-06-01T09:00:00Z"), &ty).into_iter().map(|c| (c, "a".to_owned())).collect();
        assert_eq!(claimed.len(), 8);
        let free = a.free(&ty, from, to, now, &claimed);
        assert_eq!(
            free.iter().map(|s| s.start).collect::<Vec<_>>(),
            [utc("2026-06-01T09:40:00Z"), utc("2026-06-01T10:20:00Z")]
        );
        // Another appointment's buffer overlapping the slot also blocks it.
        let other = vec![(utc("2026-06-01T09:35:00Z").timestamp_millis(), "b".to_owned())];
        assert_eq!(a.free(&ty, from, to, now, &other).len(), 2);
        // At most one a day.
        a.rules.max_per_day = Some(1);
        assert!(a.free(&ty, from, to, now, &claimed).is_empty());
        a.rules.max_per_day = None;
        // Minimum notice and horizon.
        a.rules.min_notice_minutes = 60;
        assert_eq!(a.free(&ty, from, to, utc("2026-06-01T08:30:00Z"), &[]).len(), 2);
        a.rules.max_days_ahead = 10;
        assert!(a.free(&ty, from, to, now, &[]).is_empty());
        // Closed for 10:00–11:00, then all day; extra hours on a Sunday evening.
        a.rules = Rules { max_days_ahead: 3650, min_notice_minutes: 0, max_per_day: None };
        let day = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
        a.exceptions = vec![Exception { date: day, available: false, window: Some(Window { start: 600, end: 660 }) }];
        assert_eq!(a.free(&ty, from, to, now, &[]).len(), 1);
        a.exceptions.push(Exception { date: day, available: false, window: None });
        assert!(a.free(&ty, from, to, now, &[]).is_empty());
        a.exceptions = vec![Exception { date: day, available: true, window: Some(Window { start: 1200, end: 1230 }) }];
        assert_eq!(a.free(&ty, from, to, now, &[]).len(), 4);
    }

    #[test]
    fn times_parse_strictly() {
        assert_eq!(parse_time("09:05"), Some(545));
        assert_eq!(parse_time("24:00"), Some(1440));
        assert_eq!(parse_time("24:30"), None);
        assert_eq!(parse_time("9:00"), None);
        assert_eq!(format_time(545), "09:05");
    }
}
