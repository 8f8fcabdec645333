//! Dose times of a schedule in the patient's time zone (pure: the zone and the range are
//! parameters, the clock is the caller's).
//!
//! A dose at `08:00` is at 08:00 on the wall clock of the patient's zone on each day the
//! schedule runs, whatever the UTC offset that day: across a DST change the UTC instant moves,
//! the local time does not; after the patient moves zone the next doses follow the new zone.
//! A local time that does not exist (the spring-forward gap) is taken at the first instant after
//! the gap (02:30 becomes 03:00 when the clocks jump from 02:00 to 03:00); one that happens twice
//! (fall back) is taken the first time, so a dose is never due twice.
//! `every_hours: N` doses are at local midnight and every N hours after it that day.
//! As-needed schedules have no dose times.

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

use crate::schedule::ScheduleOut;

/// Most dose times one call answers (a year of four-hourly doses fits).
pub const MAX_DOSES: usize = 5000;

/// One dose due.
#[derive(Debug, Clone, PartialEq)]
pub struct Dose {
    pub at: DateTime<Utc>,
    /// The patient's wall-clock date and time of the dose.
    pub local: NaiveDateTime,
    pub value: f64,
    pub unit: String,
}

/// The instant of a local wall-clock time in `tz`: the first instant after a gap, the earlier
/// of an ambiguous pair.
pub fn instant(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, _) => Some(a.with_timezone(&Utc)),
        LocalResult::None => {
            // In a gap: step forward minute by minute (gaps are at most a few hours) to the first
            // wall-clock time that exists.
            (1..=24 * 60).find_map(|m| match tz.from_local_datetime(&(local + TimeDelta::minutes(m))) {
                LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
                LocalResult::Ambiguous(a, _) => Some(a.with_timezone(&Utc)),
                LocalResult::None => None,
            })
        }
    }
}

fn day_code(d: NaiveDate) -> &'static str {
    match d.weekday() {
        chrono::Weekday::Mon => "mon",
        chrono::Weekday::Tue => "tue",
        chrono::Weekday::Wed => "wed",
        chrono::Weekday::Thu => "thu",
        chrono::Weekday::Fri => "fri",
        chrono::Weekday::Sat => "sat",
        chrono::Weekday::Sun => "sun",
    }
}

/// The local times of day a schedule doses at.
fn times_of_day(s: &ScheduleOut) -> Vec<NaiveTime> {
    if let Some(h) = s.every_hours.filter(|h| (1..=24).contains(h)) {
        return (0..24)
            .step_by(usize::try_from(h).unwrap_or(24))
            .filter_map(|hour| NaiveTime::from_hms_opt(hour, 0, 0))
            .collect();
    }
    let mut t: Vec<NaiveTime> = s.times.iter().filter_map(|t| NaiveTime::parse_from_str(t, "%H:%M").ok()).collect();
    t.sort();
    t.dedup();
    t
}

/// Every dose of `schedule` due in `[from, to)`, in `tz`, oldest first (at most [`MAX_DOSES`]).
pub fn doses(schedule: &ScheduleOut, tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Dose> {
    let mut out = Vec::new();
    if schedule.as_needed || to <= from {
        return out;
    }
    let times = times_of_day(schedule);
    // Local dates that can hold an instant of the range (a day either side for the offset).
    let first = from.with_timezone(&tz).date_naive().pred_opt().unwrap_or(NaiveDate::MIN);
    let last = to.with_timezone(&tz).date_naive().succ_opt().unwrap_or(NaiveDate::MAX);
    for step in &schedule.steps {
        let Ok(start) = NaiveDate::parse_from_str(&step.start, "%Y-%m-%d") else { continue };
        let end = step.end.as_deref().and_then(|e| NaiveDate::parse_from_str(e, "%Y-%m-%d").ok());
        let mut day = start.max(first);
        while day <= last && end.is_none_or(|e| day <= e) {
            if schedule.days_of_week.is_empty() || schedule.days_of_week.iter().any(|d| d == day_code(day)) {
                for t in &times {
                    let local = day.and_time(*t);
                    if let Some(at) = instant(tz, local).filter(|at| *at >= from && *at < to) {
                        out.push(Dose { at, local, value: step.dose.value, unit: step.dose.unit.clone() });
                    }
                }
            }
            let Some(next) = day.succ_opt() else { break };
            day = next;
            if out.len() >= MAX_DOSES {
                break;
            }
        }
    }
    out.sort_by_key(|d| d.at);
    out.truncate(MAX_DOSES);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::schedule::{DoseIn, MedicationIn, StepIn};

    fn metformin(times: &[&str]) -> ScheduleOut {
        ScheduleOut {
            reference: "MedicationStatement/m".into(),
            kind: "statement",
            status: "active".into(),
            medication: MedicationIn { name: "Metformin 500 mg tablet".into(), rxnorm: Some("6809".into()) },
            route: None,
            times: times.iter().map(|t| (*t).to_owned()).collect(),
            every_hours: None,
            days_of_week: vec![],
            as_needed: false,
            instructions: None,
            steps: vec![StepIn {
                start: "2027-03-01".into(),
                end: None,
                dose: DoseIn { value: 500.0, unit: "mg".into() },
            }],
            quantity: None,
            quantity_since: None,
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn an_8am_dose_stays_at_8am_local_across_the_spring_dst_change() {
        // America/New_York springs forward on Sunday 14 March 2027 (EST −5 → EDT −4).
        let ny: Tz = "America/New_York".parse().unwrap();
        let d = doses(&metformin(&["08:00"]), ny, utc("2027-03-13T00:00:00Z"), utc("2027-03-16T00:00:00Z"));
        let at: Vec<String> = d.iter().map(|d| d.at.to_rfc3339()).collect();
        assert_eq!(at, ["2027-03-13T13:00:00+00:00", "2027-03-14T12:00:00+00:00", "2027-03-15T12:00:00+00:00"]);
        assert!(d.iter().all(|d| d.local.time() == NaiveTime::from_hms_opt(8, 0, 0).unwrap()));
    }

    #[test]
    fn after_a_move_the_doses_follow_the_new_zone() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        let s = metformin(&["08:00"]);
        let before = doses(&s, ny, utc("2027-03-20T00:00:00Z"), utc("2027-03-21T00:00:00Z"));
        let after = doses(&s, kolkata, utc("2027-03-20T00:00:00Z"), utc("2027-03-21T00:00:00Z"));
        assert_eq!(before[0].at, utc("2027-03-20T12:00:00Z"));
        assert_eq!(after[0].at, utc("2027-03-20T02:30:00Z"));
    }

    #[test]
    fn a_time_in_the_gap_is_taken_after_it_and_a_repeated_time_once() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let spring = doses(&metformin(&["02:30"]), ny, utc("2027-03-14T00:00:00Z"), utc("2027-03-15T00:00:00Z"));
        assert_eq!(spring.iter().map(|d| d.at).collect::<Vec<_>>(), [utc("2027-03-14T07:00:00Z")]);
        // Falls back on 7 November 2027: 01:30 happens twice; the dose is due the first time only.
        let fall = doses(&metformin(&["01:30"]), ny, utc("2027-11-07T00:00:00Z"), utc("2027-11-08T00:00:00Z"));
        assert_eq!(fall.iter().map(|d| d.at).collect::<Vec<_>>(), [utc("2027-11-07T05:30:00Z")]);
    }

    #[test]
    fn days_of_week_steps_every_hours_and_as_needed() {
        let utc_tz: Tz = "UTC".parse().unwrap();
        let mut s = metformin(&["08:00"]);
        s.days_of_week = vec!["mon".into()];
        // 1 March 2027 is a Monday.
        let d = doses(&s, utc_tz, utc("2027-03-01T00:00:00Z"), utc("2027-03-15T00:00:00Z"));
        assert_eq!(
            d.iter().map(|d| d.at).collect::<Vec<_>>(),
            [utc("2027-03-01T08:00:00Z"), utc("2027-03-08T08:00:00Z")]
        );
        let mut s = metformin(&[]);
        s.every_hours = Some(8);
        s.steps[0].end = Some("2027-03-01".into());
        s.steps.push(StepIn {
            start: "2027-03-02".into(),
            end: Some("2027-03-02".into()),
            dose: DoseIn { value: 250.0, unit: "mg".into() },
        });
        let d = doses(&s, utc_tz, utc("2027-03-01T00:00:00Z"), utc("2027-03-10T00:00:00Z"));
        assert_eq!(d.len(), 6);
        assert_eq!(d[3].at, utc("2027-03-02T00:00:00Z"));
        assert_eq!(d[3].value, 250.0);
        let mut s = metformin(&["08:00"]);
        s.as_needed = true;
        assert!(doses(&s, utc_tz, utc("2027-03-01T00:00:00Z"), utc("2027-03-10T00:00:00Z")).is_empty());
    }
}
