//! Partial-precision `Date`, `DateTime` and `Time` values.
//!
//! FHIRPath date/time values keep the precision they were written with
//! (`@2015`, `@2015-02`, `@2015-02-04T14:34`), and comparisons between values
//! of different precision may be *unknown* (empty) rather than true or false.
//! Everything here is plain integer arithmetic on a proleptic Gregorian
//! calendar; no clock is read.

use std::cmp::Ordering;
use std::fmt;

/// How much of a date/time value is present.
///
/// Seconds and milliseconds are one precision for comparison purposes
/// (FHIRPath treats `10:30:00` and `10:30:00.000` as comparable), but both
/// are kept so that values print back as they were written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Precision {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
}

impl Precision {
    /// Rank used when deciding whether two values are comparable.
    fn compare_rank(self) -> u8 {
        match self {
            Precision::Year => 0,
            Precision::Month => 1,
            Precision::Day => 2,
            Precision::Hour => 3,
            Precision::Minute => 4,
            Precision::Second | Precision::Millisecond => 5,
        }
    }
}

/// A calendar date with year, month or day precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Date {
    year: i32,
    month: u8,
    day: u8,
    precision: Precision,
}

/// A time of day with hour .. millisecond precision (no timezone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Time {
    hour: u8,
    minute: u8,
    second: u8,
    millis: u16,
    precision: Precision,
}

/// A date with optional time and timezone offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DateTime {
    date: Date,
    time: Time,
    precision: Precision,
    /// Offset from UTC in minutes, when one was given.
    offset: Option<i16>,
}

/// A calendar step used by date arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalendarUnit {
    Year,
    Month,
    Week,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
}

impl CalendarUnit {
    /// The calendar unit named by a FHIRPath calendar keyword or a UCUM code.
    pub fn from_unit(unit: &str) -> Option<CalendarUnit> {
        Some(match unit {
            "year" | "years" | "a" => CalendarUnit::Year,
            "month" | "months" | "mo" => CalendarUnit::Month,
            "week" | "weeks" | "wk" => CalendarUnit::Week,
            "day" | "days" | "d" => CalendarUnit::Day,
            "hour" | "hours" | "h" => CalendarUnit::Hour,
            "minute" | "minutes" | "min" => CalendarUnit::Minute,
            "second" | "seconds" | "s" => CalendarUnit::Second,
            "millisecond" | "milliseconds" | "ms" => CalendarUnit::Millisecond,
            _ => return None,
        })
    }

    fn precision(self) -> Precision {
        match self {
            CalendarUnit::Year => Precision::Year,
            CalendarUnit::Month => Precision::Month,
            CalendarUnit::Week | CalendarUnit::Day => Precision::Day,
            CalendarUnit::Hour => Precision::Hour,
            CalendarUnit::Minute => Precision::Minute,
            CalendarUnit::Second => Precision::Second,
            CalendarUnit::Millisecond => Precision::Millisecond,
        }
    }

    /// Milliseconds in one unit, for units of fixed length.
    fn fixed_millis(self) -> Option<i64> {
        Some(match self {
            CalendarUnit::Week => 7 * 86_400_000,
            CalendarUnit::Day => 86_400_000,
            CalendarUnit::Hour => 3_600_000,
            CalendarUnit::Minute => 60_000,
            CalendarUnit::Second => 1_000,
            CalendarUnit::Millisecond => 1,
            CalendarUnit::Year | CalendarUnit::Month => return None,
        })
    }
}

// ---------------------------------------------------------------------------
// Calendar helpers

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u8, u8) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (y, m as u8, d as u8)
}

// ---------------------------------------------------------------------------
// Parsing

struct Cursor<'s> {
    bytes: &'s [u8],
    pos: usize,
}

impl<'s> Cursor<'s> {
    fn new(s: &'s str) -> Self {
        Cursor { bytes: s.as_bytes(), pos: 0 }
    }
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }
    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn digits(&mut self, n: usize) -> Option<u32> {
        let mut v: u32 = 0;
        for _ in 0..n {
            let b = self.peek()?;
            if !b.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(b - b'0');
            self.pos += 1;
        }
        Some(v)
    }
    fn done(&self) -> bool {
        self.pos >= self.bytes.len()
    }
}

fn parse_date_part(c: &mut Cursor<'_>) -> Option<Date> {
    let year = c.digits(4)? as i32;
    let mut date = Date { year, month: 1, day: 1, precision: Precision::Year };
    if c.peek() == Some(b'-') {
        c.pos += 1;
        let month = c.digits(2)? as u8;
        if !(1..=12).contains(&month) {
            return None;
        }
        date.month = month;
        date.precision = Precision::Month;
        if c.peek() == Some(b'-') {
            c.pos += 1;
            let day = c.digits(2)? as u8;
            if day < 1 || day > days_in_month(year, month) {
                return None;
            }
            date.day = day;
            date.precision = Precision::Day;
        }
    }
    Some(date)
}

fn parse_time_part(c: &mut Cursor<'_>) -> Option<Time> {
    let hour = c.digits(2)? as u8;
    if hour > 23 {
        return None;
    }
    let mut t = Time { hour, minute: 0, second: 0, millis: 0, precision: Precision::Hour };
    if c.peek() == Some(b':') {
        c.pos += 1;
        let minute = c.digits(2)? as u8;
        if minute > 59 {
            return None;
        }
        t.minute = minute;
        t.precision = Precision::Minute;
        if c.peek() == Some(b':') {
            c.pos += 1;
            let second = c.digits(2)? as u8;
            // 60 is a leap second (ISO 8601 allows it; arithmetic rolls it over).
            if second > 60 {
                return None;
            }
            t.second = second;
            t.precision = Precision::Second;
            if c.peek() == Some(b'.') {
                c.pos += 1;
                let mut millis: u32 = 0;
                let mut n = 0;
                while let Some(b) = c.peek().filter(u8::is_ascii_digit) {
                    if n < 3 {
                        millis = millis * 10 + u32::from(b - b'0');
                    }
                    n += 1;
                    c.pos += 1;
                }
                if n == 0 {
                    return None;
                }
                for _ in n..3 {
                    millis *= 10;
                }
                t.millis = millis as u16;
                t.precision = Precision::Millisecond;
            }
        }
    }
    Some(t)
}

fn parse_offset(c: &mut Cursor<'_>) -> Option<Option<i16>> {
    match c.peek() {
        Some(b'Z') => {
            c.pos += 1;
            Some(Some(0))
        }
        Some(sign @ (b'+' | b'-')) => {
            c.pos += 1;
            let h = c.digits(2)? as i16;
            if !c.eat(b':') {
                return None;
            }
            let m = c.digits(2)? as i16;
            if h > 14 || m > 59 || (h == 14 && m > 0) {
                return None;
            }
            let total = h * 60 + m;
            Some(Some(if sign == b'-' { -total } else { total }))
        }
        _ => Some(None),
    }
}

impl Date {
    /// Parses `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Option<Date> {
        let mut c = Cursor::new(s);
        let d = parse_date_part(&mut c)?;
        c.done().then_some(d)
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The date as a DateTime of the same precision (no timezone).
    pub fn to_datetime(self) -> DateTime {
        DateTime { date: self, time: Time::midnight(), precision: self.precision, offset: None }
    }

    fn days(&self) -> i64 {
        days_from_civil(i64::from(self.year), i64::from(self.month), i64::from(self.day))
    }

    /// Adds `amount` calendar units; `None` if the result leaves years 1..9999.
    pub fn add(&self, amount: i64, unit: CalendarUnit) -> Option<Date> {
        let dt = self.to_datetime().add(amount, unit)?;
        Some(Date { precision: self.precision, ..dt.date })
    }

    /// Compares at the coarser precision; `None` when the result depends on
    /// digits one of the values does not have.
    pub fn compare(&self, other: &Date) -> Option<Ordering> {
        self.to_datetime().compare(&other.to_datetime(), 0)
    }
}

impl Time {
    fn midnight() -> Time {
        Time { hour: 0, minute: 0, second: 0, millis: 0, precision: Precision::Hour }
    }

    /// Parses `hh`, `hh:mm`, `hh:mm:ss` or `hh:mm:ss.fff`.
    pub fn parse(s: &str) -> Option<Time> {
        let mut c = Cursor::new(s);
        let t = parse_time_part(&mut c)?;
        c.done().then_some(t)
    }

    /// Builds a time from parts; used for `timeOfDay()`.
    pub fn from_parts(hour: u8, minute: u8, second: u8, millis: u16) -> Option<Time> {
        (hour < 24 && minute < 60 && second < 60 && millis < 1000).then_some(Time {
            hour,
            minute,
            second,
            millis,
            precision: Precision::Millisecond,
        })
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Component accessor (hour .. millisecond) for `hourOf()` and friends.
    pub fn component(&self, precision: Precision) -> Option<i64> {
        if self.precision.compare_rank() < precision.compare_rank() {
            return None;
        }
        Some(match precision {
            Precision::Hour => i64::from(self.hour),
            Precision::Minute => i64::from(self.minute),
            Precision::Second => i64::from(self.second),
            Precision::Millisecond => i64::from(self.millis),
            _ => return None,
        })
    }

    fn millis_of_day(&self) -> i64 {
        ((i64::from(self.hour) * 60 + i64::from(self.minute)) * 60 + i64::from(self.second)) * 1000
            + i64::from(self.millis)
    }

    pub fn compare(&self, other: &Time) -> Option<Ordering> {
        let a = DateTime {
            date: Date { year: 2000, month: 1, day: 1, precision: Precision::Day },
            time: *self,
            precision: self.precision,
            offset: None,
        };
        let b = DateTime { time: *other, precision: other.precision, ..a };
        a.compare(&b, 0)
    }

    /// Adds a time-valued quantity, wrapping around midnight.
    pub fn add(&self, amount: i64, unit: CalendarUnit) -> Option<Time> {
        let step = unit.fixed_millis()?;
        if matches!(unit, CalendarUnit::Week | CalendarUnit::Day) {
            return None;
        }
        if self.precision >= Precision::Second && unit == CalendarUnit::Millisecond {
            let ms = (self.millis_of_day() + amount).rem_euclid(86_400_000);
            let mut t = Time::from_parts(
                (ms / 3_600_000) as u8,
                (ms / 60_000 % 60) as u8,
                (ms / 1000 % 60) as u8,
                (ms % 1000) as u16,
            )?;
            t.precision = if self.precision == Precision::Millisecond || ms % 1000 != 0 {
                Precision::Millisecond
            } else {
                Precision::Second
            };
            return Some(t);
        }
        // Truncate steps finer than the value's precision.
        let prec_ms = match self.precision {
            Precision::Hour => 3_600_000,
            Precision::Minute => 60_000,
            Precision::Second => 1000,
            _ => 1,
        };
        let delta = amount.checked_mul(step)?;
        let delta = delta - delta % prec_ms;
        let ms = (self.millis_of_day() + delta).rem_euclid(86_400_000);
        Some(Time {
            hour: (ms / 3_600_000) as u8,
            minute: (ms / 60_000 % 60) as u8,
            second: (ms / 1000 % 60) as u8,
            millis: (ms % 1000) as u16,
            precision: self.precision,
        })
    }
}

impl DateTime {
    /// Parses an ISO 8601 / FHIR dateTime: a date of any precision, optionally
    /// `T` and a time, optionally an offset (`Z` or `+hh:mm`). A trailing `T`
    /// with nothing after it (`2015-02T`) is accepted, as in FHIRPath literals.
    pub fn parse(s: &str) -> Option<DateTime> {
        let mut c = Cursor::new(s);
        let date = parse_date_part(&mut c)?;
        let mut dt = date.to_datetime();
        if c.eat(b'T') {
            if !c.done() {
                if date.precision != Precision::Day {
                    return None;
                }
                dt.time = parse_time_part(&mut c)?;
                dt.precision = dt.time.precision;
                dt.offset = parse_offset(&mut c)?;
            }
        } else if date.precision == Precision::Day && !c.done() {
            return None;
        }
        c.done().then_some(dt)
    }

    /// Builds an instant from milliseconds since the Unix epoch and an offset
    /// in minutes; the caller's clock goes through here.
    pub fn from_unix_millis(millis: i64, offset_minutes: i16) -> Option<DateTime> {
        let local = millis.checked_add(i64::from(offset_minutes) * 60_000)?;
        let days = local.div_euclid(86_400_000);
        let ms = local.rem_euclid(86_400_000);
        let (y, m, d) = civil_from_days(days);
        let year = i32::try_from(y).ok()?;
        Some(DateTime {
            date: Date { year, month: m, day: d, precision: Precision::Day },
            time: Time {
                hour: (ms / 3_600_000) as u8,
                minute: (ms / 60_000 % 60) as u8,
                second: (ms / 1000 % 60) as u8,
                millis: (ms % 1000) as u16,
                precision: Precision::Millisecond,
            },
            precision: Precision::Millisecond,
            offset: Some(offset_minutes),
        })
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn offset(&self) -> Option<i16> {
        self.offset
    }

    /// The date part, at day precision or coarser.
    pub fn date(&self) -> Date {
        Date { precision: self.precision.min(Precision::Day), ..self.date }
    }

    /// Component accessors for `yearOf()` and friends: `None` when the value
    /// is not that precise.
    pub fn component(&self, precision: Precision) -> Option<i64> {
        if self.precision.compare_rank() < precision.compare_rank() {
            return None;
        }
        Some(match precision {
            Precision::Year => i64::from(self.date.year),
            Precision::Month => i64::from(self.date.month),
            Precision::Day => i64::from(self.date.day),
            Precision::Hour => i64::from(self.time.hour),
            Precision::Minute => i64::from(self.time.minute),
            Precision::Second => i64::from(self.time.second),
            Precision::Millisecond => i64::from(self.time.millis),
        })
    }

    /// The time part, if the value has one.
    pub fn time(&self) -> Option<Time> {
        (self.precision > Precision::Day).then_some(self.time)
    }

    /// Milliseconds since the epoch of the local fields (ignoring offset).
    fn local_millis(&self) -> i64 {
        self.date.days() * 86_400_000 + self.time.millis_of_day()
    }

    fn from_local_millis(ms: i64, precision: Precision, offset: Option<i16>) -> Option<DateTime> {
        let mut dt = DateTime::from_unix_millis(ms, 0)?;
        dt.precision = precision;
        dt.date.precision = precision.min(Precision::Day);
        dt.time.precision = precision.max(Precision::Hour);
        dt.offset = offset;
        if !(1..=9999).contains(&dt.date.year) {
            return None;
        }
        Some(dt)
    }

    /// Adds `amount` calendar units. Steps finer than the value's precision
    /// are first converted to that precision and truncated, as the FHIRPath
    /// specification describes (`@2014 + 24 months` is `@2016`).
    pub fn add(&self, amount: i64, unit: CalendarUnit) -> Option<DateTime> {
        let (amount, unit) = if unit.precision().compare_rank() > self.precision.compare_rank() {
            // Convert to the value's own precision, truncating.
            let target = match self.precision {
                Precision::Year => CalendarUnit::Year,
                Precision::Month => CalendarUnit::Month,
                Precision::Day => CalendarUnit::Day,
                Precision::Hour => CalendarUnit::Hour,
                Precision::Minute => CalendarUnit::Minute,
                _ => CalendarUnit::Second,
            };
            match (unit.fixed_millis(), target.fixed_millis()) {
                (Some(u), Some(t)) => (amount.checked_mul(u)? / t, target),
                // Days or finer onto a year/month value: via days.
                (Some(u), None) => {
                    let days = amount.checked_mul(u)? / 86_400_000;
                    match target {
                        CalendarUnit::Year => (days / 365, CalendarUnit::Year),
                        _ => (days / 30, CalendarUnit::Month),
                    }
                }
                // Months onto a year-precision value.
                (None, _) => (amount / 12, CalendarUnit::Year),
            }
        } else {
            (amount, unit)
        };
        match unit {
            CalendarUnit::Year | CalendarUnit::Month => {
                let months = if unit == CalendarUnit::Year { amount.checked_mul(12)? } else { amount };
                let total = i64::from(self.date.year) * 12 + i64::from(self.date.month) - 1 + months;
                let year = i32::try_from(total.div_euclid(12)).ok()?;
                let month = (total.rem_euclid(12) + 1) as u8;
                if !(1..=9999).contains(&year) {
                    return None;
                }
                let day = self.date.day.min(days_in_month(year, month));
                Some(DateTime { date: Date { year, month, day, precision: self.date.precision }, ..*self })
            }
            _ => {
                let step = unit.fixed_millis()?;
                let delta = amount.checked_mul(step)?;
                let ms = self.local_millis().checked_add(delta)?;
                let precision = if self.precision == Precision::Second && delta % 1000 != 0 {
                    Precision::Millisecond
                } else {
                    self.precision
                };
                DateTime::from_local_millis(ms, precision, self.offset)
            }
        }
    }

    /// Normalized (UTC) local milliseconds, or local fields when no offset.
    fn utc_millis(&self, default_offset: i16) -> i64 {
        let offset = if self.precision.compare_rank() >= Precision::Hour.compare_rank() {
            self.offset.unwrap_or(default_offset)
        } else {
            0
        };
        self.local_millis() - i64::from(offset) * 60_000
    }

    /// Compares two values, normalizing timezones (values without one are
    /// taken to be in `default_offset`). Returns `None` when the values agree
    /// on every component they share but differ in precision.
    pub fn compare(&self, other: &DateTime, default_offset: i16) -> Option<Ordering> {
        let (a, b) = if self.precision.compare_rank() >= Precision::Hour.compare_rank()
            && other.precision.compare_rank() >= Precision::Hour.compare_rank()
            && (self.offset.is_some() || other.offset.is_some())
        {
            let a = self.utc_millis(default_offset);
            let b = other.utc_millis(default_offset);
            (
                DateTime::from_local_millis(a, self.precision, None).unwrap_or(*self),
                DateTime::from_local_millis(b, other.precision, None).unwrap_or(*other),
            )
        } else {
            (*self, *other)
        };
        let common = a.precision.compare_rank().min(b.precision.compare_rank());
        let fields = |d: &DateTime| -> [i64; 6] {
            [
                i64::from(d.date.year),
                i64::from(d.date.month),
                i64::from(d.date.day),
                i64::from(d.time.hour),
                i64::from(d.time.minute),
                i64::from(d.time.second) * 1000 + i64::from(d.time.millis),
            ]
        };
        let fa = fields(&a);
        let fb = fields(&b);
        for (i, (x, y)) in fa.iter().zip(fb.iter()).enumerate() {
            if i > usize::from(common) {
                break;
            }
            match x.cmp(y) {
                Ordering::Equal => {}
                ord => return Some(ord),
            }
        }
        if a.precision.compare_rank() == b.precision.compare_rank() { Some(Ordering::Equal) } else { None }
    }
}

// ---------------------------------------------------------------------------
// Display: the FHIR/ISO form at the value's own precision.

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.year)?;
        if self.precision >= Precision::Month {
            write!(f, "-{:02}", self.month)?;
        }
        if self.precision >= Precision::Day {
            write!(f, "-{:02}", self.day)?;
        }
        Ok(())
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}", self.hour)?;
        if self.precision >= Precision::Minute {
            write!(f, ":{:02}", self.minute)?;
        }
        if self.precision >= Precision::Second {
            write!(f, ":{:02}", self.second)?;
        }
        if self.precision >= Precision::Millisecond {
            write!(f, ".{:03}", self.millis)?;
        }
        Ok(())
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.date())?;
        if self.precision > Precision::Day {
            write!(f, "T{}", self.time)?;
            if let Some(off) = self.offset {
                if off == 0 {
                    write!(f, "Z")?;
                } else {
                    let sign = if off < 0 { '-' } else { '+' };
                    let a = off.unsigned_abs();
                    write!(f, "{}{:02}:{:02}", sign, a / 60, a % 60)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print_round_trip() {
        for s in ["2015", "2015-02", "2015-02-04"] {
            assert_eq!(Date::parse(s).map(|d| d.to_string()).as_deref(), Some(s));
        }
        for s in [
            "2015-02-04T14",
            "2015-02-04T14:34",
            "2015-02-04T14:34:28",
            "2015-02-04T14:34:28.123Z",
            "2015-02-04T14:34:28.123+09:00",
        ] {
            assert_eq!(DateTime::parse(s).map(|d| d.to_string()).as_deref(), Some(s));
        }
        assert!(Date::parse("2015-02-30").is_none());
        assert!(DateTime::parse("2015T").is_some());
    }

    #[test]
    fn compare_normalizes_offsets_and_precision() {
        let a = DateTime::parse("2017-11-05T01:30:00.0-04:00").unwrap();
        let b = DateTime::parse("2017-11-05T05:30:00.0Z").unwrap();
        assert_eq!(a.compare(&b, 0), Some(Ordering::Equal));
        let c = DateTime::parse("2017-11-05").unwrap();
        assert_eq!(a.compare(&c, 0), None);
        let d = DateTime::parse("2017-11").unwrap();
        let e = DateTime::parse("2017-12-01").unwrap();
        assert_eq!(d.compare(&e, 0), Some(Ordering::Less));
    }

    #[test]
    fn month_arithmetic_clamps_day() {
        let d = Date::parse("2020-01-31").unwrap();
        assert_eq!(d.add(1, CalendarUnit::Month).unwrap().to_string(), "2020-02-29");
        let y = Date::parse("2014").unwrap();
        assert_eq!(y.add(24, CalendarUnit::Month).unwrap().to_string(), "2016");
    }
}
