//! A careful subset of RFC 5545 recurrence rules (section 3.3.10), expanded in a time zone.
//!
//! Accepted: `FREQ` = `DAILY`, `WEEKLY` or `MONTHLY`; `INTERVAL`; `BYDAY` (plain weekdays,
//! `MO`…`SU`, no ordinal like `1MO`); `BYHOUR`; `BYMINUTE`; `COUNT` or `UNTIL` (not both, as the
//! RFC says). Anything else (`SECONDLY`…`HOURLY`, `YEARLY`, `BYMONTHDAY`, `BYSETPOS`, `WKST`
//! other than `MO`, ordinal `BYDAY`…) is refused with [`RruleError::Unsupported`] naming the
//! part, never silently ignored. Weeks start on Monday.
//!
//! Occurrences are local wall-clock times in the alarm's zone, turned into instants the RFC's
//! way: a local time that does not exist (the hour skipped when clocks go forward) is moved
//! forward by the length of the gap (02:30 on a spring-forward night that skips 02:00–03:00
//! rings at 03:30); a local time that happens twice (clocks go back) is the first of the two.
//! So "every day at 08:00" stays at 08:00 local across a change of clocks.

use chrono::{
    DateTime, Datelike, Days, Months, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta, TimeZone, Timelike, Utc,
    Weekday,
};
use chrono_tz::Tz;

/// How often a rule repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freq {
    Daily,
    Weekly,
    Monthly,
}

/// A parsed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rrule {
    pub freq: Freq,
    pub interval: u32,
    /// Empty: not given.
    pub by_day: Vec<Weekday>,
    pub by_hour: Vec<u32>,
    pub by_minute: Vec<u32>,
    pub count: Option<u32>,
    /// An instant (RFC 5545: UTC `…Z` when DTSTART has a zone).
    pub until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RruleError {
    /// Not a rule (syntax, a value out of range, a part twice, `COUNT` with `UNTIL`).
    Invalid(String),
    /// A part or value RFC 5545 has but this subset does not take.
    Unsupported(String),
}

impl std::fmt::Display for RruleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RruleError::Invalid(m) => write!(f, "invalid RRULE: {m}"),
            RruleError::Unsupported(m) => write!(f, "unsupported RRULE: {m}"),
        }
    }
}

/// Most occurrences [`Rrule::between`] answers (a bound on work for any rule).
pub const MAX_OCCURRENCES: usize = 1000;
/// Most periods walked looking for occurrences (a rule whose BYDAY never meets its days stops).
const MAX_PERIODS: u32 = 20_000;

fn weekday(s: &str) -> Option<Weekday> {
    Some(match s {
        "MO" => Weekday::Mon,
        "TU" => Weekday::Tue,
        "WE" => Weekday::Wed,
        "TH" => Weekday::Thu,
        "FR" => Weekday::Fri,
        "SA" => Weekday::Sat,
        "SU" => Weekday::Sun,
        _ => return None,
    })
}

fn numbers(part: &str, v: &str, max: u32) -> Result<Vec<u32>, RruleError> {
    let mut out: Vec<u32> = v
        .split(',')
        .map(|n| {
            n.parse::<u32>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| RruleError::Invalid(format!("{part}: `{n}` is not 0 to {max}")))
        })
        .collect::<Result<_, _>>()?;
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

impl Rrule {
    /// Parses `FREQ=…;…` (an `RRULE:` prefix is accepted).
    pub fn parse(s: &str) -> Result<Rrule, RruleError> {
        let s = s.trim();
        let s = s.strip_prefix("RRULE:").unwrap_or(s);
        if s.is_empty() || s.len() > 500 {
            return Err(RruleError::Invalid("empty or longer than 500 characters".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut rule = Rrule {
            freq: Freq::Daily,
            interval: 1,
            by_day: Vec::new(),
            by_hour: Vec::new(),
            by_minute: Vec::new(),
            count: None,
            until: None,
        };
        let mut freq = None;
        for part in s.split(';') {
            let (k, v) =
                part.split_once('=').ok_or_else(|| RruleError::Invalid(format!("`{part}` is not NAME=VALUE")))?;
            let k = k.to_ascii_uppercase();
            let v = v.to_ascii_uppercase();
            if !seen.insert(k.clone()) {
                return Err(RruleError::Invalid(format!("{k} given twice")));
            }
            match k.as_str() {
                "FREQ" => {
                    freq = Some(match v.as_str() {
                        "DAILY" => Freq::Daily,
                        "WEEKLY" => Freq::Weekly,
                        "MONTHLY" => Freq::Monthly,
                        "SECONDLY" | "MINUTELY" | "HOURLY" | "YEARLY" => {
                            return Err(RruleError::Unsupported(format!("FREQ={v} (DAILY, WEEKLY or MONTHLY)")));
                        }
                        _ => return Err(RruleError::Invalid(format!("FREQ={v}"))),
                    })
                }
                "INTERVAL" => {
                    rule.interval = v
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or_else(|| RruleError::Invalid(format!("INTERVAL={v} (1 to 1000)")))?;
                }
                "COUNT" => {
                    rule.count = Some(
                        v.parse::<u32>()
                            .ok()
                            .filter(|n| (1..=10_000).contains(n))
                            .ok_or_else(|| RruleError::Invalid(format!("COUNT={v} (1 to 10000)")))?,
                    );
                }
                "UNTIL" => rule.until = Some(until(&v)?),
                "BYDAY" => {
                    let mut days = Vec::new();
                    for d in v.split(',') {
                        match weekday(d) {
                            Some(w) => days.push(w),
                            None if d.len() > 2 && weekday(d.get(d.len() - 2..).unwrap_or("")).is_some() => {
                                return Err(RruleError::Unsupported(format!("BYDAY={d} (ordinal weekdays)")));
                            }
                            None => return Err(RruleError::Invalid(format!("BYDAY: `{d}` is not MO…SU"))),
                        }
                    }
                    days.sort_by_key(Weekday::num_days_from_monday);
                    days.dedup();
                    rule.by_day = days;
                }
                "BYHOUR" => rule.by_hour = numbers("BYHOUR", &v, 23)?,
                "BYMINUTE" => rule.by_minute = numbers("BYMINUTE", &v, 59)?,
                "WKST" if v == "MO" => {}
                "WKST" | "BYSECOND" | "BYMONTHDAY" | "BYYEARDAY" | "BYWEEKNO" | "BYMONTH" | "BYSETPOS" => {
                    return Err(RruleError::Unsupported(k));
                }
                _ => return Err(RruleError::Invalid(format!("unknown part {k}"))),
            }
        }
        rule.freq = freq.ok_or_else(|| RruleError::Invalid("FREQ is required".into()))?;
        if rule.count.is_some() && rule.until.is_some() {
            return Err(RruleError::Invalid("COUNT and UNTIL cannot both be given".into()));
        }
        Ok(rule)
    }

    /// The occurrences from `start` (a local wall-clock time in `tz`, the first occurrence's
    /// anchor like DTSTART) that fall in `[from, to)`, at most [`MAX_OCCURRENCES`], in order.
    /// `COUNT` counts from `start`, whatever `from` is.
    pub fn between(&self, start: NaiveDateTime, tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut counted = 0u32;
        let times = self.times(start.time());
        let first_period = match self.freq {
            Freq::Weekly => start.date() - Days::new(u64::from(start.date().weekday().num_days_from_monday())),
            Freq::Monthly => start.date().with_day(1).unwrap_or(start.date()),
            Freq::Daily => start.date(),
        };
        let mut last: Option<DateTime<Utc>> = None;
        for n in 0..MAX_PERIODS {
            let Some(period) = self.period(first_period, n) else { break };
            for day in self.days(period, start.date()) {
                let mut instants: Vec<DateTime<Utc>> = times
                    .iter()
                    .map(|t| day.and_time(*t))
                    .filter(|local| *local >= start)
                    .map(|local| instant(local, tz))
                    .collect();
                // Around a change of clocks two local times can be one instant, or come out of
                // order (a time in the gap moves forward past a later one): each instant once,
                // in order.
                instants.sort_unstable();
                for at in instants {
                    if last.is_some_and(|l| at <= l) {
                        continue;
                    }
                    last = Some(at);
                    if self.until.is_some_and(|u| at > u) {
                        return out;
                    }
                    counted += 1;
                    if self.count.is_some_and(|c| counted > c) {
                        return out;
                    }
                    if at >= to {
                        return out;
                    }
                    if at >= from {
                        out.push(at);
                        if out.len() >= MAX_OCCURRENCES {
                            return out;
                        }
                    }
                }
            }
        }
        out
    }

    /// The next occurrence at or after `from`.
    pub fn next_after(&self, start: NaiveDateTime, tz: Tz, from: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let far = from.checked_add_signed(TimeDelta::days(366 * 30))?;
        // Walk in slices so a dense rule does not expand years of occurrences.
        let mut lo = from;
        while lo < far {
            let hi = lo.checked_add_signed(TimeDelta::days(400))?.min(far);
            if let Some(first) = self.between(start, tz, lo, hi).into_iter().next() {
                return Some(first);
            }
            lo = hi;
        }
        None
    }

    fn times(&self, anchor: NaiveTime) -> Vec<NaiveTime> {
        let hours = if self.by_hour.is_empty() { vec![anchor.hour()] } else { self.by_hour.clone() };
        let minutes = if self.by_minute.is_empty() { vec![anchor.minute()] } else { self.by_minute.clone() };
        let mut out = Vec::new();
        for h in &hours {
            for m in &minutes {
                out.extend(NaiveTime::from_hms_opt(*h, *m, anchor.second()));
            }
        }
        out
    }

    fn period(&self, first: NaiveDate, n: u32) -> Option<NaiveDate> {
        let steps = n.checked_mul(self.interval)?;
        match self.freq {
            Freq::Daily => first.checked_add_days(Days::new(u64::from(steps))),
            Freq::Weekly => first.checked_add_days(Days::new(u64::from(steps) * 7)),
            Freq::Monthly => first.checked_add_months(Months::new(steps)),
        }
    }

    /// The days of one period that the rule keeps.
    fn days(&self, period: NaiveDate, start: NaiveDate) -> Vec<NaiveDate> {
        let wanted = |d: &NaiveDate| self.by_day.is_empty() || self.by_day.contains(&d.weekday());
        match self.freq {
            Freq::Daily => [period].into_iter().filter(wanted).collect(),
            Freq::Weekly if self.by_day.is_empty() => period
                .checked_add_days(Days::new(u64::from(start.weekday().num_days_from_monday())))
                .into_iter()
                .collect(),
            Freq::Weekly => (0..7).filter_map(|i| period.checked_add_days(Days::new(i))).filter(wanted).collect(),
            // BYDAY in a month: every such weekday of the month (RFC 5545's expansion).
            Freq::Monthly if !self.by_day.is_empty() => {
                period.iter_days().take_while(|d| d.month() == period.month()).filter(wanted).collect()
            }
            // The start's day of the month; months without it are skipped (RFC 5545).
            Freq::Monthly => period.with_day(start.day()).into_iter().collect(),
        }
    }
}

fn until(v: &str) -> Result<DateTime<Utc>, RruleError> {
    let bad = || RruleError::Invalid(format!("UNTIL={v} (YYYYMMDD or YYYYMMDDTHHMMSSZ)"));
    if let Some(t) = v.strip_suffix('Z') {
        let naive = NaiveDateTime::parse_from_str(t, "%Y%m%dT%H%M%S").map_err(|_| bad())?;
        return Ok(naive.and_utc());
    }
    if v.len() == 8 {
        let d = NaiveDate::parse_from_str(v, "%Y%m%d").map_err(|_| bad())?;
        // A date: through the end of that day (UTC).
        return d.and_hms_opt(23, 59, 59).map(|n| n.and_utc()).ok_or_else(bad);
    }
    Err(bad())
}

/// A local wall-clock time in `tz` as an instant, RFC 5545 section 3.3.5's way: a time in a gap
/// moves forward by the gap's length, a repeated time is its first occurrence.
pub fn instant(local: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
        chrono::LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        chrono::LocalResult::None => {
            // The offset in force just before the gap, applied to the wall-clock time, lands
            // the same distance past the gap's end.
            let before = local - TimeDelta::hours(3);
            let offset = match tz.from_local_datetime(&before) {
                chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
                    t.offset().fix().local_minus_utc()
                }
                chrono::LocalResult::None => 0,
            };
            (local - TimeDelta::seconds(i64::from(offset))).and_utc()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M").unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn daily_at_eight_stays_at_eight_local_across_both_changes_of_clocks() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let r = Rrule::parse("FREQ=DAILY;BYHOUR=8;BYMINUTE=0").unwrap();
        // 2026: clocks go forward on 8 March, back on 1 November.
        let got = r.between(local("2026-03-07T08:00"), ny, utc("2026-03-07T00:00:00Z"), utc("2026-03-10T00:00:00Z"));
        assert_eq!(got, vec![utc("2026-03-07T13:00:00Z"), utc("2026-03-08T12:00:00Z"), utc("2026-03-09T12:00:00Z")]);
        let got = r.between(local("2026-10-31T08:00"), ny, utc("2026-10-31T00:00:00Z"), utc("2026-11-03T00:00:00Z"));
        assert_eq!(got, vec![utc("2026-10-31T12:00:00Z"), utc("2026-11-01T13:00:00Z"), utc("2026-11-02T13:00:00Z")]);
        for t in got {
            assert_eq!(t.with_timezone(&ny).hour(), 8);
        }
    }

    #[test]
    fn a_time_in_the_gap_moves_forward_and_a_repeated_time_is_the_first() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // 02:30 does not exist on 8 March 2026 in New York: 03:30 EDT (07:30Z).
        assert_eq!(instant(local("2026-03-08T02:30"), ny), utc("2026-03-08T07:30:00Z"));
        // 01:30 happens twice on 1 November 2026: the first is EDT (05:30Z).
        assert_eq!(instant(local("2026-11-01T01:30"), ny), utc("2026-11-01T05:30:00Z"));
        let r = Rrule::parse("FREQ=DAILY;COUNT=3").unwrap();
        let got = r.between(local("2026-03-07T02:30"), ny, utc("2026-01-01T00:00:00Z"), utc("2027-01-01T00:00:00Z"));
        assert_eq!(got, vec![utc("2026-03-07T07:30:00Z"), utc("2026-03-08T07:30:00Z"), utc("2026-03-09T06:30:00Z")]);
    }

    #[test]
    fn occurrences_stay_in_order_when_a_time_in_the_gap_moves_past_a_later_one() {
        // Found while writing the fuzz target `rrule` (fuzz/): on the night clocks go forward in Berlin
        // (29 March 2026, 02:00 → 03:00), 02:30 rings at 03:30 CEST, after 03:00; and 02:00 and
        // 03:00 are the same instant. `between` promises its answer in order, once per instant.
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let r = Rrule::parse("FREQ=DAILY;BYHOUR=2,3;BYMINUTE=0,30").unwrap();
        let got =
            r.between(local("2026-03-29T00:00"), berlin, utc("2026-03-28T00:00:00Z"), utc("2026-03-29T12:00:00Z"));
        assert_eq!(got, vec![utc("2026-03-29T01:00:00Z"), utc("2026-03-29T01:30:00Z")]);
    }

    #[test]
    fn weekly_monthly_interval_count_and_until() {
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        let start = local("2026-12-07T09:15"); // a Monday
        let r = Rrule::parse("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH;COUNT=5").unwrap();
        let got: Vec<NaiveDate> = r
            .between(start, kolkata, utc("2026-01-01T00:00:00Z"), utc("2028-01-01T00:00:00Z"))
            .iter()
            .map(|t| t.with_timezone(&kolkata).date_naive())
            .collect();
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(got, vec![d("2026-12-07"), d("2026-12-10"), d("2026-12-21"), d("2026-12-24"), d("2027-01-04")]);
        // Monthly on the 31st skips the months without one.
        let r = Rrule::parse("FREQ=MONTHLY;UNTIL=20270601T000000Z").unwrap();
        let got: Vec<u32> = r
            .between(local("2027-01-31T07:00"), kolkata, utc("2027-01-01T00:00:00Z"), utc("2028-01-01T00:00:00Z"))
            .iter()
            .map(|t| t.with_timezone(&kolkata).month())
            .collect();
        assert_eq!(got, vec![1, 3, 5]);
        // Several times a day, only on weekdays.
        let r = Rrule::parse("FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9,21;BYMINUTE=0,30").unwrap();
        let got =
            r.between(local("2026-12-11T00:00"), kolkata, utc("2026-12-10T00:00:00Z"), utc("2026-12-15T00:00:00Z"));
        // Friday 11th and Monday 14th: 4 times each.
        assert_eq!(got.len(), 8);
        // Friday 21:30 IST is 16:00Z; just after it, the next is Monday 09:00 IST.
        let start = local("2026-12-11T00:00");
        assert_eq!(r.next_after(start, kolkata, utc("2026-12-11T16:00:00Z")), Some(utc("2026-12-11T16:00:00Z")));
        assert_eq!(r.next_after(start, kolkata, utc("2026-12-11T16:00:01Z")), Some(utc("2026-12-14T03:30:00Z")));
    }

    #[test]
    fn the_unsupported_and_the_invalid_are_refused_by_name() {
        for (s, unsupported) in [
            ("FREQ=YEARLY", true),
            ("FREQ=HOURLY", true),
            ("FREQ=MONTHLY;BYMONTHDAY=1", true),
            ("FREQ=MONTHLY;BYDAY=1MO", true),
            ("FREQ=WEEKLY;BYSETPOS=1", true),
            ("FREQ=WEEKLY;WKST=SU", true),
            ("FREQ=DAILY;COUNT=2;UNTIL=20270101T000000Z", false),
            ("FREQ=DAILY;FREQ=WEEKLY", false),
            ("INTERVAL=2", false),
            ("FREQ=DAILY;BYHOUR=24", false),
            ("FREQ=DAILY;INTERVAL=0", false),
            ("FREQ=DAILY;BYDAY=XX", false),
            ("FREQ=DAILY;UNTIL=tomorrow", false),
            ("FREQ=DAILY;X-NAME=1", false),
            ("", false),
        ] {
            match Rrule::parse(s) {
                Err(RruleError::Unsupported(_)) => assert!(unsupported, "{s}"),
                Err(RruleError::Invalid(_)) => assert!(!unsupported, "{s}"),
                Ok(r) => panic!("{s} was accepted: {r:?}"),
            }
        }
        assert!(Rrule::parse("RRULE:freq=weekly;byday=mo;wkst=MO").is_ok());
    }
}
