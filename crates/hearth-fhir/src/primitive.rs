//! Lexical checks for FHIR primitive values in JSON.
//!
//! Hand-written instead of a regex engine: no dependency, no compilation at startup, no allocation.
//! Each function accepts exactly the language of the spec regex (quoted above it; `\s` is Java's
//! ASCII class `[ \t\n\x0B\f\r]`), plus the rules the spec states in prose: dates are real calendar
//! dates, strings are not empty or all whitespace, integers are 32-bit.

use serde_json::Value;

use crate::IssueCode;

/// Largest `string` in bytes the spec allows (1 MB of characters; checked in characters).
const MAX_STRING_CHARS: usize = 1024 * 1024;

/// A primitive value failed its type's rules: the issue code and a message naming no value.
pub(crate) type Failure = (IssueCode, &'static str);

/// Checks `value` (already known not to be `null`) against primitive type `code`.
pub(crate) fn check(code: &str, value: &Value) -> Result<(), Failure> {
    match code {
        "boolean" => match value {
            Value::Bool(_) => Ok(()),
            _ => Err((IssueCode::Value, "expected a JSON boolean")),
        },
        "integer" => int(value, i64::from(i32::MIN)),
        "unsignedInt" => int(value, 0),
        "positiveInt" => int(value, 1),
        "decimal" => match value {
            // JSON number syntax is the decimal regex `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`,
            // but with `arbitrary_precision` serde_json keeps `1e400` as written: past the range of
            // a double it would reach clients as Infinity (or fail their parsers), so it is refused.
            Value::Number(n) if n.as_f64().is_some_and(f64::is_finite) => Ok(()),
            Value::Number(_) => Err((IssueCode::Value, "not a finite number (beyond the range of a decimal)")),
            _ => Err((IssueCode::Value, "expected a JSON number")),
        },
        _ => {
            let Value::String(s) = value else {
                return Err((IssueCode::Value, "expected a JSON string"));
            };
            if s.is_empty() {
                return Err((IssueCode::Value, "must not be an empty string"));
            }
            string(code, s)
        }
    }
}

fn int(value: &Value, min: i64) -> Result<(), Failure> {
    let Value::Number(n) = value else {
        return Err((IssueCode::Value, "expected a JSON number"));
    };
    match n.as_i64() {
        Some(i) if i >= min && i <= i64::from(i32::MAX) => Ok(()),
        Some(_) => Err((
            IssueCode::Value,
            match min {
                1 => "must be a positive integer no larger than 2147483647",
                0 => "must be a non-negative integer no larger than 2147483647",
                _ => "must be a 32-bit integer",
            },
        )),
        None if n.as_u64().is_some() => Err((IssueCode::Value, "must be a 32-bit integer")),
        None => Err((IssueCode::Value, "must be an integer (no fraction or exponent)")),
    }
}

fn string(code: &str, s: &str) -> Result<(), Failure> {
    let ok = match code {
        "string" | "markdown" => return text(s),
        "code" => is_code(s),
        "id" => is_id(s),
        "uri" | "url" | "canonical" => !s.bytes().any(java_space),
        "oid" => is_oid(s),
        "uuid" => is_uuid(s),
        "base64Binary" => is_base64(s),
        "date" => is_date(s),
        "dateTime" => is_date_time(s),
        "instant" => is_instant(s),
        "time" => is_time(s),
        "xhtml" => return xhtml(s),
        _ => return Err((IssueCode::NotSupported, "unsupported primitive type")),
    };
    if ok { Ok(()) } else { Err((IssueCode::Value, format_message(code))) }
}

fn format_message(code: &str) -> &'static str {
    match code {
        "code" => "not a valid code (no leading, trailing or repeated whitespace)",
        "id" => "not a valid id (1-64 characters A-Z a-z 0-9 - .)",
        "uri" | "url" | "canonical" => "not a valid URI (must not contain whitespace)",
        "oid" => "not a valid OID (urn:oid:...)",
        "uuid" => "not a valid UUID (urn:uuid: and lowercase hex)",
        "base64Binary" => "not valid base64",
        "date" => "not a valid date (YYYY, YYYY-MM or YYYY-MM-DD)",
        "dateTime" => "not a valid dateTime (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.f] with a timezone)",
        "instant" => "not a valid instant (YYYY-MM-DDThh:mm:ss[.f] with a timezone)",
        "time" => "not a valid time (hh:mm:ss[.f], no timezone)",
        _ => "invalid value",
    }
}

/// Java's `\s`.
fn java_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// `[ \r\n\t\S]+`: anything but vertical tab and form feed; and not all whitespace, at most 1 MB.
fn text(s: &str) -> Result<(), Failure> {
    if s.bytes().any(|b| b == 0x0B || b == 0x0C) {
        return Err((IssueCode::Value, "must not contain vertical tab or form feed characters"));
    }
    if s.chars().all(char::is_whitespace) {
        return Err((IssueCode::Value, "must not be all whitespace"));
    }
    if s.len() > MAX_STRING_CHARS && s.chars().count() > MAX_STRING_CHARS {
        return Err((IssueCode::TooLong, "longer than 1048576 characters"));
    }
    Ok(())
}

/// xhtml has no regex; in JSON it is the narrative's `<div>` element as a string. Its content rules
/// (allowed tags and attributes) are the txt-1/txt-2 invariants, which this crate does not check.
fn xhtml(s: &str) -> Result<(), Failure> {
    if s.trim_start().starts_with("<div") {
        Ok(())
    } else {
        Err((IssueCode::Value, "narrative must be an XHTML <div> element"))
    }
}

/// `[^\s]+(\s[^\s]+)*`
fn is_code(s: &str) -> bool {
    let b = s.as_bytes();
    let edge_ok = matches!((b.first(), b.last()), (Some(f), Some(l)) if !java_space(*f) && !java_space(*l));
    edge_ok && !b.windows(2).any(|w| w.iter().all(|c| java_space(*c)))
}

/// `[A-Za-z0-9\-\.]{1,64}`
fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// `urn:oid:[0-2](\.(0|[1-9][0-9]*))+`
fn is_oid(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("urn:oid:") else {
        return false;
    };
    let mut arcs = rest.split('.');
    if !matches!(arcs.next(), Some("0" | "1" | "2")) {
        return false;
    }
    let mut count = 0;
    for arc in arcs {
        count += 1;
        let digits = !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit());
        if !digits || (arc.len() > 1 && arc.starts_with('0')) {
            return false;
        }
    }
    count > 0
}

/// `urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`
fn is_uuid(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("urn:uuid:") else {
        return false;
    };
    let groups = [8, 4, 4, 4, 12];
    let mut parts = rest.split('-');
    for len in groups {
        match parts.next() {
            Some(p) if p.len() == len && p.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) => {}
            _ => return false,
        }
    }
    parts.next().is_none()
}

/// `(\s*([0-9a-zA-Z\+/=]){4}\s*)+`: groups of four symbols; whitespace only between groups.
fn is_base64(s: &str) -> bool {
    let mut symbols = 0usize;
    for b in s.bytes() {
        if java_space(b) {
            if !symbols.is_multiple_of(4) {
                return false;
            }
        } else if b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=' {
            symbols += 1;
        } else {
            return false;
        }
    }
    symbols > 0 && symbols.is_multiple_of(4)
}

/// A cursor over ASCII bytes for the date/time grammars.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl Cursor<'_> {
    /// Exactly `n` ASCII digits as a number.
    fn digits(&mut self, n: usize) -> Option<u32> {
        let (head, tail) = self.rest.split_at_checked(n)?;
        let mut v = 0u32;
        for b in head {
            if !b.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(b - b'0');
        }
        self.rest = tail;
        Some(v)
    }

    fn eat(&mut self, c: u8) -> bool {
        match self.rest.split_first() {
            Some((b, tail)) if *b == c => {
                self.rest = tail;
                true
            }
            _ => false,
        }
    }

    fn is_done(&self) -> bool {
        self.rest.is_empty()
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Precision {
    Year,
    Month,
    Day,
}

/// `([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?`
/// (year 0001-9999) with real calendar days. Stops before anything that follows.
fn date_part(c: &mut Cursor<'_>) -> Option<Precision> {
    let year = c.digits(4).filter(|y| *y > 0)?;
    if !c.eat(b'-') {
        return Some(Precision::Year);
    }
    let month = c.digits(2).filter(|m| (1..=12).contains(m))?;
    if !c.eat(b'-') {
        return Some(Precision::Month);
    }
    c.digits(2).filter(|d| *d >= 1 && *d <= days_in_month(year, month))?;
    Some(Precision::Day)
}

/// `([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?`
fn time_part(c: &mut Cursor<'_>) -> Option<()> {
    c.digits(2).filter(|h| *h <= 23)?;
    c.eat(b':').then_some(())?;
    c.digits(2).filter(|m| *m <= 59)?;
    c.eat(b':').then_some(())?;
    c.digits(2).filter(|s| *s <= 60)?;
    if c.eat(b'.') {
        c.digits(1)?;
        while c.digits(1).is_some() {}
    }
    Some(())
}

/// `(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))`
fn zone_part(c: &mut Cursor<'_>) -> Option<()> {
    if c.eat(b'Z') {
        return Some(());
    }
    (c.eat(b'+') || c.eat(b'-')).then_some(())?;
    let h = c.digits(2).filter(|h| *h <= 14)?;
    c.eat(b':').then_some(())?;
    let m = c.digits(2).filter(|m| *m <= 59)?;
    (h < 14 || m == 0).then_some(())
}

fn is_date(s: &str) -> bool {
    let mut c = Cursor { rest: s.as_bytes() };
    date_part(&mut c).is_some() && c.is_done()
}

/// A date, or a full date with `T`, a time with seconds and a timezone.
fn is_date_time(s: &str) -> bool {
    let mut c = Cursor { rest: s.as_bytes() };
    let Some(precision) = date_part(&mut c) else {
        return false;
    };
    if c.is_done() {
        return true;
    }
    precision == Precision::Day
        && c.eat(b'T')
        && time_part(&mut c).is_some()
        && zone_part(&mut c).is_some()
        && c.is_done()
}

fn is_instant(s: &str) -> bool {
    let mut c = Cursor { rest: s.as_bytes() };
    date_part(&mut c) == Some(Precision::Day)
        && c.eat(b'T')
        && time_part(&mut c).is_some()
        && zone_part(&mut c).is_some()
        && c.is_done()
}

fn is_time(s: &str) -> bool {
    let mut c = Cursor { rest: s.as_bytes() };
    time_part(&mut c).is_some() && c.is_done()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use serde_json::json;

    fn ok(code: &str, v: Value) -> bool {
        check(code, &v).is_ok()
    }

    fn s(code: &str, v: &str) -> bool {
        ok(code, json!(v))
    }

    #[test]
    fn dates() {
        for good in ["2020", "2020-02", "2020-02-29", "0001", "9999-12-31", "2000-02-29"] {
            assert!(s("date", good), "{good}");
        }
        for bad in [
            "2020-13-01",
            "0000",
            "2021-02-29",
            "1900-02-29",
            "2020-04-31",
            "2020-00",
            "2020-1",
            "20",
            "2020-02-29T10:00:00Z",
            "2020-",
            " 2020",
            "２０２０",
        ] {
            assert!(!s("date", bad), "{bad}");
        }
    }

    #[test]
    fn date_times() {
        for good in [
            "2020",
            "2020-02",
            "2020-02-29",
            "2020-02-29T10:11:12Z",
            "2020-02-29T10:11:12.123456+05:30",
            "2020-02-29T23:59:60-14:00",
            "2020-02-29T00:00:00+14:00",
            "2020-02-29T00:00:00+13:59",
        ] {
            assert!(s("dateTime", good), "{good}");
        }
        for bad in [
            "2020-02-29T10:11:12",
            "2020-02-29T10:11Z",
            "2020-02T10:11:12Z",
            "2020-02-29T24:00:00Z",
            "2020-02-29T10:11:12+14:30",
            "2020-02-29T10:11:12+5:30",
            "2020-02-29T10:11:12.Z",
            "2020-02-29 10:11:12Z",
            "2020-02-29T10:11:12Zjunk",
        ] {
            assert!(!s("dateTime", bad), "{bad}");
        }
    }

    #[test]
    fn instants_and_times() {
        assert!(s("instant", "2015-02-07T13:28:17.239+02:00"));
        assert!(s("instant", "2015-02-07T13:28:17Z"));
        assert!(!s("instant", "2015-02-07T13:28Z"));
        assert!(!s("instant", "2015-02-07T13:28:17"));
        assert!(!s("instant", "2015-02-07"));
        assert!(s("time", "13:28:17"));
        assert!(s("time", "13:28:17.5"));
        assert!(!s("time", "13:28"));
        assert!(!s("time", "13:28:17Z"));
        assert!(!s("time", "25:00:00"));
    }

    #[test]
    fn numbers() {
        assert!(ok("integer", json!(-2147483648i64)));
        assert!(ok("integer", json!(2147483647)));
        assert!(!ok("integer", json!(2147483648i64)));
        assert!(!ok("integer", json!(1.5)));
        assert!(!ok("integer", json!(1.0)));
        assert!(!ok("integer", json!("1")));
        assert!(!ok("integer", json!(u64::MAX)));
        assert!(ok("positiveInt", json!(1)));
        assert!(!ok("positiveInt", json!(0)));
        assert!(ok("unsignedInt", json!(0)));
        assert!(!ok("unsignedInt", json!(-1)));
        assert!(ok("decimal", json!(1.5)));
        assert!(ok("decimal", json!(-3)));
        assert!(!ok("decimal", json!("1.5")));
        assert!(ok("boolean", json!(false)));
        assert!(!ok("boolean", json!("true")));
        assert!(!ok("boolean", json!(1)));
    }

    #[test]
    fn strings() {
        assert!(s("string", "a"));
        assert!(s("string", " padded\ttext\r\n"));
        assert!(!s("string", ""));
        assert!(!s("string", "   "));
        assert!(!s("string", "\u{a0}"));
        assert!(!s("string", "a\u{b}b"));
        assert!(!ok("string", json!(1)));
        assert!(s("markdown", "# x"));
        assert!(!s("markdown", " \n"));
        let big = "x".repeat(MAX_STRING_CHARS + 1);
        assert_eq!(check("string", &json!(big)).unwrap_err().0, IssueCode::TooLong);
    }

    #[test]
    fn codes_ids_uris() {
        assert!(s("code", "final"));
        assert!(s("code", "a b"));
        assert!(!s("code", " a"));
        assert!(!s("code", "a "));
        assert!(!s("code", "a  b"));
        assert!(s("code", "a\tb"));
        assert!(s("id", "abc-123.X"));
        assert!(s("id", &"a".repeat(64)));
        assert!(!s("id", &"a".repeat(65)));
        assert!(!s("id", "a_b"));
        assert!(!s("id", "a/b"));
        assert!(s("uri", "http://example.org/fhir"));
        assert!(s("url", "urn:x"));
        assert!(s("canonical", "http://x/y|1.0"));
        assert!(!s("uri", "http://x y"));
        assert!(!s("uri", ""));
        assert!(s("oid", "urn:oid:1.2.840.113619"));
        assert!(s("oid", "urn:oid:2.0"));
        assert!(!s("oid", "urn:oid:3.1"));
        assert!(!s("oid", "urn:oid:1"));
        assert!(!s("oid", "urn:oid:1.02"));
        assert!(!s("oid", "1.2.3"));
        assert!(s("uuid", "urn:uuid:c757873d-ec9a-4326-a141-556f43239520"));
        assert!(!s("uuid", "urn:uuid:C757873D-EC9A-4326-A141-556F43239520"));
        assert!(!s("uuid", "c757873d-ec9a-4326-a141-556f43239520"));
        assert!(!s("uuid", "urn:uuid:c757873d-ec9a-4326-a141-556f43239520-1"));
    }

    #[test]
    fn base64() {
        assert!(s("base64Binary", "aGVsbG8="));
        assert!(s("base64Binary", "aGVs bG8=\n"));
        assert!(s("base64Binary", " aGVs\r\nbG8= "));
        assert!(!s("base64Binary", "aGV sbG8="));
        assert!(!s("base64Binary", "aGVsbG8"));
        assert!(!s("base64Binary", "aGVsbG8*"));
        assert!(!s("base64Binary", "  "));
    }

    #[test]
    fn xhtml_div() {
        assert!(s("xhtml", "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"));
        assert!(!s("xhtml", "plain text"));
    }
}
