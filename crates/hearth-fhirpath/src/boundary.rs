//! `lowBoundary()` / `highBoundary()`: the range of values a literal of
//! limited precision may stand for.

use rust_decimal::Decimal;

use crate::value::Item;

pub(crate) fn boundary<'a>(v: &Item<'a>, digits: Option<i64>, high: bool) -> Option<Item<'a>> {
    match v {
        Item::Decimal(_) | Item::Integer(_) | Item::Long(_) => {
            let d = crate::eval::number(v)?;
            let digits = u32::try_from(digits.unwrap_or(8)).ok()?;
            if digits > 28 {
                return None;
            }
            let half = Decimal::new(5, d.scale() + 1);
            let b = if high { d.checked_add(half)? } else { d.checked_sub(half)? };
            let mut b = b;
            if b.scale() > digits {
                // Truncate towards the original value to stay inside the range.
                b = if high {
                    b.round_dp_with_strategy(digits, rust_decimal::RoundingStrategy::ToNegativeInfinity)
                } else {
                    b.round_dp_with_strategy(digits, rust_decimal::RoundingStrategy::ToPositiveInfinity)
                };
            }
            b.rescale(digits);
            Some(Item::Decimal(b))
        }
        _ => None,
    }
}
