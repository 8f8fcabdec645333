//! FHIR date, dateTime and instant values as inclusive ranges of UTC milliseconds.
//!
//! A value stands for every instant its precision covers: `2020` is the whole year,
//! `2020-03` the whole month, `2020-03-04T10:15` the whole minute, `10:15:30.5` the 100 ms from
//! `.500` to `.599`. The range is `[start, end]`, both inclusive, in milliseconds since
//! 1970-01-01T00:00:00Z.
//!
//! **Time zones.** A value with an offset (`Z`, `+02:00`) is converted to UTC. A value without
//! one (every `date`, and a dateTime or search value written without an offset) is taken as
//! UTC. The specification leaves this to the server ("the server's time zone"); Hearth's is UTC,
//! on both the indexing and the query side, so the two always agree.

use chrono::{Duration, Months, NaiveDate, NaiveDateTime, NaiveTime};

/// How much of a date/time was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DatePrecision {
    Year,
    Month,
    Day,
    Minute,
    Second,
    /// Fractional seconds with this many digits (1..=9; more than 3 is treated as 3).
    Fraction(u8),
}

/// A parsed date/time: its precision and its inclusive UTC millisecond range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    pub precision: DatePrecision,
    pub start: i64,
    pub end: i64,
}

/// Parses `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, or `YYYY-MM-DDThh:mm[:ss[.f…]][Z|±hh:mm]` into the
/// inclusive range of UTC milliseconds it covers at its precision (`2020` is the whole year,
/// `2020-03-04T10:15` the whole minute, `…:30.5` the 100 ms from `.500` to `.599`). A value
/// without an offset (every `date`) is taken as UTC, on the index and the query side alike.
///
/// Lenient where search needs it, strict otherwise: minute precision and a missing offset are
/// accepted (search values use both); a space in place of `+` in the offset is accepted, because
/// an unencoded `+` in a URL query decodes to a space. Calendar validity is checked (no
/// 2021-02-29, no hour 24).
pub fn parse_date_range(s: &str) -> Option<DateRange> {
    let (date_part, time_part) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut fields = date_part.split('-');
    let year = fixed_digits(fields.next()?, 4)?;
    let month = match fields.next() {
        Some(m) => Some(fixed_digits(m, 2)?),
        None => None,
    };
    let day = match fields.next() {
        Some(d) => Some(fixed_digits(d, 2)?),
        None => None,
    };
    if fields.next().is_some() || year == 0 {
        return None;
    }
    let year = i32::try_from(year).ok()?;
    let Some(time) = time_part else {
        return date_only(year, month, day);
    };
    let (Some(month), Some(day)) = (month, day) else { return None };
    let date = NaiveDate::from_ymd_opt(year, month, day)?;
    let (clock, offset_minutes) = split_offset(time)?;
    let mut parts = clock.split(':');
    let hour = fixed_digits(parts.next()?, 2)?;
    let minute = fixed_digits(parts.next()?, 2)?;
    let seconds = parts.next();
    if parts.next().is_some() {
        return None;
    }
    let (second, millis, precision, span_ms) = match seconds {
        None => (0, 0, DatePrecision::Minute, 60_000),
        Some(sec) => {
            let (whole, frac) = match sec.split_once('.') {
                Some((w, f)) => (w, Some(f)),
                None => (sec, None),
            };
            let second = fixed_digits(whole, 2)?;
            match frac {
                None => (second, 0, DatePrecision::Second, 1_000),
                Some(f) => {
                    if f.is_empty() || f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    let digits = f.len().min(3);
                    let shown: u32 = f.get(..digits)?.parse().ok()?;
                    let scale = 10u32.pow(u32::try_from(3 - digits).ok()?);
                    let span = i64::from(scale);
                    let precision = DatePrecision::Fraction(u8::try_from(f.len()).ok()?);
                    (second, shown * scale, precision, span)
                }
            }
        }
    };
    // Leap seconds (`:60`) are not representable; FHIR does not allow them either.
    let clock = NaiveTime::from_hms_milli_opt(hour, minute, second, millis)?;
    let local = NaiveDateTime::new(date, clock);
    let start = local.and_utc().timestamp_millis().checked_sub(i64::from(offset_minutes) * 60_000)?;
    Some(DateRange { precision, start, end: start.checked_add(span_ms - 1)? })
}

fn date_only(year: i32, month: Option<u32>, day: Option<u32>) -> Option<DateRange> {
    let (first, next, precision) = match (month, day) {
        (None, None) => {
            let first = NaiveDate::from_ymd_opt(year, 1, 1)?;
            (first, NaiveDate::from_ymd_opt(year + 1, 1, 1)?, DatePrecision::Year)
        }
        (Some(m), None) => {
            let first = NaiveDate::from_ymd_opt(year, m, 1)?;
            (first, first.checked_add_months(Months::new(1))?, DatePrecision::Month)
        }
        (Some(m), Some(d)) => {
            let first = NaiveDate::from_ymd_opt(year, m, d)?;
            (first, first.checked_add_signed(Duration::days(1))?, DatePrecision::Day)
        }
        (None, Some(_)) => return None,
    };
    let start = first.and_time(NaiveTime::MIN).and_utc().timestamp_millis();
    let end = next.and_time(NaiveTime::MIN).and_utc().timestamp_millis() - 1;
    Some(DateRange { precision, start, end })
}

/// Splits `10:15:00+02:00` into the clock and the offset in minutes (0 when absent).
fn split_offset(time: &str) -> Option<(&str, i32)> {
    if let Some(clock) = time.strip_suffix('Z') {
        return Some((clock, 0));
    }
    // The offset starts at the first sign after the clock (a space stands for a decoded `+`).
    let Some(pos) = time.find(['+', '-', ' ']) else { return Some((time, 0)) };
    let clock = time.get(..pos)?;
    let sign = if time.get(pos..=pos)? == "-" { -1 } else { 1 };
    let (h, m) = time.get(pos + 1..)?.split_once(':')?;
    let (h, m) = (fixed_digits(h, 2)?, fixed_digits(m, 2)?);
    if h > 14 || m > 59 {
        return None;
    }
    let minutes = i32::try_from(h * 60 + m).ok()?;
    Some((clock, sign * minutes))
}

/// Exactly `len` ASCII digits.
fn fixed_digits(s: &str, len: usize) -> Option<u32> {
    if s.len() != len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    fn range(s: &str) -> (i64, i64) {
        let r = parse_date_range(s).unwrap();
        (r.start, r.end)
    }

    #[test]
    fn precision_ranges() {
        assert_eq!(range("2020"), (ms("2020-01-01T00:00:00Z"), ms("2020-12-31T23:59:59.999Z")));
        assert_eq!(range("2020-02"), (ms("2020-02-01T00:00:00Z"), ms("2020-02-29T23:59:59.999Z")));
        assert_eq!(range("2021-02"), (ms("2021-02-01T00:00:00Z"), ms("2021-02-28T23:59:59.999Z")));
        assert_eq!(range("2020-12"), (ms("2020-12-01T00:00:00Z"), ms("2020-12-31T23:59:59.999Z")));
        assert_eq!(range("1982-01-23"), (ms("1982-01-23T00:00:00Z"), ms("1982-01-23T23:59:59.999Z")));
        assert_eq!(range("2020-03-04T10:15"), (ms("2020-03-04T10:15:00Z"), ms("2020-03-04T10:15:59.999Z")));
        assert_eq!(range("2020-03-04T10:15:30Z"), (ms("2020-03-04T10:15:30Z"), ms("2020-03-04T10:15:30.999Z")));
        assert_eq!(range("2020-03-04T10:15:30.5Z"), (ms("2020-03-04T10:15:30.5Z"), ms("2020-03-04T10:15:30.599Z")));
        assert_eq!(range("2020-03-04T10:15:30.25Z"), (ms("2020-03-04T10:15:30.25Z"), ms("2020-03-04T10:15:30.259Z")));
        assert_eq!(range("2020-03-04T10:15:30.123Z"), (ms("2020-03-04T10:15:30.123Z"), ms("2020-03-04T10:15:30.123Z")));
        assert_eq!(range("2020-03-04T10:15:30.123456Z").0, ms("2020-03-04T10:15:30.123Z"));
        assert_eq!(parse_date_range("2020-03-04T10:15:30.5Z").unwrap().precision, DatePrecision::Fraction(1));
    }

    #[test]
    fn offsets_convert_to_utc_and_missing_offsets_are_utc() {
        assert_eq!(range("2020-03-04T10:15:30+02:00").0, ms("2020-03-04T08:15:30Z"));
        assert_eq!(range("2020-03-04T10:15:30-05:30").0, ms("2020-03-04T15:45:30Z"));
        assert_eq!(range("2020-03-04T10:15:30 02:00").0, ms("2020-03-04T08:15:30Z"));
        assert_eq!(range("2020-03-04T10:15:30").0, ms("2020-03-04T10:15:30Z"));
        assert_eq!(range("1969-12-31T23:59:59.999Z"), (-1, -1));
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in [
            "",
            "20",
            "2020-1",
            "2020-13",
            "2021-02-29",
            "2020-01-01T",
            "2020-01-01T25:00",
            "2020-01-01T10",
            "2020-01-01T10:00:00.",
            "2020-01-01T10:00:00+2",
            "0000",
            "2020-01-01T10:00:60Z",
            "abcd",
            "2020-01-01Z",
            "2020--01",
            "2020-01-01T10:00:00+15:00",
        ] {
            assert!(parse_date_range(bad).is_none(), "{bad} should not parse");
        }
    }
}
