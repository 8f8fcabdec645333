//! RRULEs (the alarms' RFC 5545 subset): the first line is the rule, the optional second line a
//! start (`YYYY-MM-DDTHH:MM:SS`, local wall-clock time), the optional third a time zone name.
//! The rule is parsed, then expanded over a year from the start and asked for its next
//! occurrence, as the alarms do. Parsing may fail; nothing may panic, and the expansion is
//! bounded (`MAX_OCCURRENCES`), in order, inside the window.
#![no_main]

use chrono::{NaiveDateTime, TimeDelta};
use chrono_tz::Tz;
use hearth_alarms::rrule::{MAX_OCCURRENCES, Rrule, instant};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.lines();
    let Ok(rule) = Rrule::parse(lines.next().unwrap_or("")) else { return };
    let start = lines
        .next()
        .and_then(|s| NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%dT%H:%M:%S").ok())
        .or_else(|| NaiveDateTime::parse_from_str("2026-03-29T02:30:00", "%Y-%m-%dT%H:%M:%S").ok());
    let Some(start) = start else { return };
    let tz: Tz = lines.next().and_then(|s| s.trim().parse().ok()).unwrap_or(chrono_tz::Europe::Berlin);
    let from = instant(start, tz);
    let Some(to) = from.checked_add_signed(TimeDelta::days(366)) else { return };
    let got = rule.between(start, tz, from, to);
    assert!(got.len() <= MAX_OCCURRENCES, "more than MAX_OCCURRENCES occurrences");
    assert!(got.windows(2).all(|w| matches!(w, [a, b] if a < b)), "occurrences out of order");
    assert!(got.iter().all(|t| *t >= from && *t < to), "an occurrence outside [from, to)");
    let _ = rule.next_after(start, tz, from);
});
