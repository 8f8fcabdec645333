//! Decimal values with the implicit range of their precision.
//!
//! FHIR search reads `100` as "100 to three significant figures", i.e. `[99.5, 100.5)`, and
//! `100.00` as `[99.995, 100.005)`: half a unit of the last written digit either side, the lower
//! bound included and the upper excluded. With an exponent the last written digit of the
//! mantissa counts the same way: `1e2` is one significant figure, `[50, 150)`, and `1.0e2` is
//! `[95, 105)`. (The specification's own example gives `[95, 105)` for `1e2` while calling it
//! "1 significant figure"; Hearth follows the significant-figures rule it states.)

use hearth_fhirpath::Decimal;

/// A parsed number: the exact value as written and its implicit range `[low, high)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NumberRange {
    pub value: Decimal,
    pub low: f64,
    pub high: f64,
}

/// Parses a FHIR decimal / integer (`-12`, `0.50`, `5.4e-3`, `1E2`) into its value and its
/// implicit range `[low, high)`: half a unit of the last written digit either side (`100` →
/// `[99.5, 100.5)`, `100.00` → `[99.995, 100.005)`, `1e2` → `[50, 150)`, `1.0e2` → `[95, 105)`).
/// `None` for anything else (including `NaN`, `inf`, hex, a lone sign or dot, and values
/// outside the 28-digit decimal range).
pub fn parse_number(s: &str) -> Option<NumberRange> {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(pos) => (s.get(..pos)?, Some(s.get(pos + 1..)?)),
        None => (s, None),
    };
    let unsigned = mantissa.strip_prefix(['-', '+']).unwrap_or(mantissa);
    let (int_part, frac_part) = match unsigned.split_once('.') {
        Some((i, f)) => (i, f),
        None => (unsigned, ""),
    };
    let digits_ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if int_part.is_empty()
        || !digits_ok(int_part)
        || !digits_ok(frac_part)
        || (unsigned.contains('.') && frac_part.is_empty())
    {
        return None;
    }
    let exp: i32 = match exponent {
        Some(e) => {
            let body = e.strip_prefix(['-', '+']).unwrap_or(e);
            if body.is_empty() || !digits_ok(body) || body.len() > 4 {
                return None;
            }
            e.parse().ok()?
        }
        None => 0,
    };
    let value = if exponent.is_some() { Decimal::from_scientific(s).ok()? } else { s.parse::<Decimal>().ok()? };
    let as_f64: f64 = s.parse().ok()?;
    if !as_f64.is_finite() {
        return None;
    }
    // Half a unit of the last written digit: 0.5 × 10^(exponent − fraction digits).
    let frac_digits = i32::try_from(frac_part.len()).ok()?;
    let half = 0.5 * 10f64.powi(exp - frac_digits);
    Some(NumberRange { value, low: as_f64 - half, high: as_f64 + half })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::float_cmp)]

    use super::*;

    fn r(s: &str) -> (f64, f64) {
        let n = parse_number(s).unwrap();
        (n.low, n.high)
    }

    fn close(a: (f64, f64), b: (f64, f64)) -> bool {
        (a.0 - b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-9
    }

    #[test]
    fn implicit_ranges_follow_written_precision() {
        assert_eq!(r("100"), (99.5, 100.5));
        assert!(close(r("100.00"), (99.995, 100.005)));
        assert!(close(r("0.5"), (0.45, 0.55)));
        assert!(close(r("-3"), (-3.5, -2.5)));
        assert!(close(r("1e2"), (50.0, 150.0)));
        assert!(close(r("1.0e2"), (95.0, 105.0)));
        assert!(close(r("5.4E-3"), (0.00535, 0.00545)));
        assert!(close(r("+7"), (6.5, 7.5)));
        assert_eq!(parse_number("1.50").unwrap().value.to_string(), "1.50");
        assert_eq!(parse_number("1e2").unwrap().value, Decimal::from(100));
    }

    #[test]
    fn malformed_numbers_are_refused() {
        for bad in ["", "-", ".", "1.", ".5", "1e", "e5", "1..2", "0x10", "NaN", "inf", "1,5", "1 ", "12a", "1e99999"] {
            assert!(parse_number(bad).is_none(), "{bad} should not parse");
        }
    }
}
