//! `lowBoundary()` / `highBoundary()`: the extremes of the range a value of
//! limited precision may stand for.

use rust_decimal::{Decimal, RoundingStrategy};

use crate::datetime::{Date, DateTime, Time};
use crate::value::Item;

pub(crate) fn boundary<'a>(v: &Item<'a>, digits: Option<i64>, high: bool) -> Option<Item<'a>> {
    match v {
        Item::Decimal(_) | Item::Integer(_) | Item::Long(_) => {
            let d = crate::eval::number(v)?;
            let digits = u32::try_from(digits.unwrap_or(8)).ok()?;
            if digits > 28 {
                return None;
            }
            // Half a unit in the last written digit either side.
            let half = Decimal::new(5, d.scale() + 1);
            let b = if high {
                d.checked_add(half)?.round_dp_with_strategy(digits, RoundingStrategy::ToPositiveInfinity)
            } else {
                d.checked_sub(half)?.round_dp_with_strategy(digits, RoundingStrategy::ToNegativeInfinity)
            };
            let mut b = b;
            b.rescale(digits);
            Some(Item::Decimal(b))
        }
        Item::Quantity(q) => match boundary(&Item::Decimal(q.value), digits, high)? {
            Item::Decimal(v) => Some(Item::Quantity(Box::new(crate::quantity::Quantity::new(v, q.unit.clone())))),
            _ => None,
        },
        Item::Date(d) => {
            let digits = digits.unwrap_or(8);
            let text = fill_date(&d.to_string(), high);
            let cut = match digits {
                4 => 4,
                6 => 7,
                8 => 10,
                _ => return None,
            };
            Date::parse(text.get(..cut)?).map(Item::Date)
        }
        Item::DateTime(d) => {
            let digits = digits.unwrap_or(17);
            let s = d.to_string();
            let (body, offset) = split_offset(&s);
            let date_part = body.get(..body.len().min(10)).unwrap_or(body);
            let time_part = body.get(11..).unwrap_or("");
            let date = fill_date(date_part, high);
            let time = fill_time(time_part, high);
            let offset = match offset {
                Some(o) => o.to_string(),
                // Unknown timezone: the widest possible range.
                None => if high { "-12:00" } else { "+14:00" }.to_string(),
            };
            let text = match digits {
                4 => date.get(..4)?.to_string(),
                6 => date.get(..7)?.to_string(),
                8 => date,
                10 => format!("{date}T{}{offset}", time.get(..2)?),
                12 => format!("{date}T{}{offset}", time.get(..5)?),
                14 => format!("{date}T{}{offset}", time.get(..8)?),
                17 => format!("{date}T{time}{offset}"),
                _ => return None,
            };
            if digits <= 8 {
                Date::parse(&text).map(|d| Item::DateTime(d.to_datetime()))
            } else {
                DateTime::parse(&text).map(Item::DateTime)
            }
        }
        Item::Time(t) => {
            let digits = digits.unwrap_or(9);
            let full = fill_time(&t.to_string(), high);
            let cut = match digits {
                2 => 2,
                4 => 5,
                6 => 8,
                9 => 12,
                _ => return None,
            };
            Time::parse(full.get(..cut)?).map(Item::Time)
        }
        _ => None,
    }
}

fn split_offset(s: &str) -> (&str, Option<&str>) {
    if let Some(body) = s.strip_suffix('Z') {
        return (body, Some("Z"));
    }
    if s.len() > 6 && s.contains('T') {
        let tail = s.get(s.len() - 6..).unwrap_or("");
        if tail.starts_with(['+', '-']) && tail.get(3..4) == Some(":") {
            return (s.get(..s.len() - 6).unwrap_or(s), Some(tail));
        }
    }
    (s, None)
}

fn fill_date(d: &str, high: bool) -> String {
    let mut parts = d.split('-');
    let year = parts.next().unwrap_or("0001").to_string();
    let month = parts.next().map(str::to_string).unwrap_or_else(|| if high { "12".into() } else { "01".into() });
    let day = parts.next().map(str::to_string).unwrap_or_else(|| {
        if high {
            let y: i32 = year.parse().unwrap_or(1);
            let m: u8 = month.parse().unwrap_or(1);
            let last = (28..=31).rev().find(|d| Date::parse(&format!("{y:04}-{m:02}-{d:02}")).is_some()).unwrap_or(28);
            format!("{last:02}")
        } else {
            "01".into()
        }
    });
    format!("{year}-{month}-{day}")
}

fn fill_time(t: &str, high: bool) -> String {
    let template = if high { "23:59:59.999" } else { "00:00:00.000" };
    let mut out = t.to_string();
    if let Some(rest) = template.get(out.len()..) {
        out.push_str(rest);
    }
    out
}
