//! Query-string parsing for the FHIR API: conditional-interaction criteria and history parameters.
//!
//! Criteria support `_id` and `identifier` (token forms `code`, `system|code`, `|code`,
//! `system|`; OR with commas, AND by repeating). Any other parameter in a conditional interaction
//! is refused with `400`: silently ignoring a criterion could make a conditional delete or update
//! hit the wrong resource. The general search engine replaces this parser.

use chrono::{DateTime, NaiveDate, Utc};
use hearth_store::{Clause, Criteria, TokenMatch};

use crate::error::FhirError;

/// Splits a raw query string into decoded `(name, value)` pairs, in order.
pub fn pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

/// Parameters that only shape the response and may appear anywhere.
fn is_format_param(name: &str) -> bool {
    matches!(name, "_format" | "_pretty")
}

/// Splits a comma-separated OR list, honouring `\,` escapes.
fn split_or(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n @ (',' | '|' | '$' | '\\')) => cur.push(n),
                Some(n) => {
                    cur.push('\\');
                    cur.push(n);
                }
                None => cur.push('\\'),
            },
            ',' => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn parse_token(value: &str) -> Result<TokenMatch, String> {
    // Find an unescaped '|'.
    let mut prev_backslash = false;
    let mut split_at = None;
    for (i, c) in value.char_indices() {
        if c == '|' && !prev_backslash {
            split_at = Some(i);
            break;
        }
        prev_backslash = c == '\\' && !prev_backslash;
    }
    let unescape = |s: &str| s.replace("\\|", "|");
    match split_at {
        None if value.is_empty() => Err("empty token value".into()),
        None => Ok(TokenMatch::Code(unescape(value))),
        Some(i) => {
            let (system, code) = (value.get(..i).unwrap_or(""), value.get(i + 1..).unwrap_or(""));
            match (system.is_empty(), code.is_empty()) {
                (true, true) => Err("token `|` needs a system or a code".into()),
                (true, false) => Ok(TokenMatch::NoSystemCode(unescape(code))),
                (false, true) => Ok(TokenMatch::System(unescape(system))),
                (false, false) => Ok(TokenMatch::SystemCode { system: unescape(system), code: unescape(code) }),
            }
        }
    }
}

/// Parses conditional-interaction criteria (`If-None-Exist` or the query of a conditional
/// update/delete). Refuses empty criteria: a condition must select something.
pub fn criteria(resource_type: &str, pairs: &[(String, String)]) -> Result<Criteria, FhirError> {
    let mut clauses = Vec::new();
    for (name, value) in pairs {
        if is_format_param(name) {
            continue;
        }
        let values = split_or(value);
        if values.iter().any(String::is_empty) {
            return Err(FhirError::bad_request("invalid", format!("search parameter `{name}` has an empty value")));
        }
        match name.as_str() {
            "_id" => clauses.push(Clause::Id(values)),
            "identifier" => {
                let any_of =
                    values.iter().map(|v| parse_token(v)).collect::<Result<Vec<_>, _>>().map_err(|m| {
                        FhirError::bad_request("invalid", format!("search parameter `identifier`: {m}"))
                    })?;
                clauses.push(Clause::Token { param: "identifier".into(), any_of });
            }
            other => {
                return Err(FhirError::bad_request(
                    "not-supported",
                    format!(
                        "search parameter `{other}` is not supported in conditional interactions (supported: _id, identifier)"
                    ),
                ));
            }
        }
    }
    if clauses.is_empty() {
        return Err(FhirError::bad_request("invalid", "conditional interactions need at least one search criterion"));
    }
    Ok(Criteria { resource_type: resource_type.to_owned(), clauses })
}

/// The most entries one page may hold; larger `_count` values are reduced to it.
pub const MAX_PAGE: u32 = 1000;
pub const DEFAULT_PAGE: u32 = 50;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryParams {
    pub since: Option<DateTime<Utc>>,
    pub count: u32,
    pub cursor: Option<i64>,
}

/// Parses a FHIR `instant`/`dateTime` for `_since`. A bare date means its start (UTC).
/// A `+` offset sent unencoded arrives as a space; it is restored.
pub fn parse_instant(value: &str) -> Option<DateTime<Utc>> {
    let fixed = value.replace(' ', "+");
    if let Ok(t) = DateTime::parse_from_rfc3339(&fixed) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(&fixed, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|dt| dt.and_utc())
}

pub fn history_params(pairs: &[(String, String)]) -> Result<HistoryParams, FhirError> {
    let mut p = HistoryParams { since: None, count: DEFAULT_PAGE, cursor: None };
    for (name, value) in pairs {
        match name.as_str() {
            "_since" => {
                p.since = Some(parse_instant(value).ok_or_else(|| {
                    FhirError::bad_request("invalid", "_since must be an instant such as 2024-01-31T10:00:00Z")
                })?);
            }
            "_count" => {
                let n: u32 = value
                    .parse()
                    .map_err(|_| FhirError::bad_request("invalid", "_count must be a non-negative integer"))?;
                p.count = n.min(MAX_PAGE);
            }
            "_cursor" => {
                p.cursor = Some(
                    value
                        .parse()
                        .map_err(|_| FhirError::bad_request("invalid", "_cursor is not a valid page cursor"))?,
                );
            }
            n if is_format_param(n) => {}
            other => {
                return Err(FhirError::bad_request(
                    "not-supported",
                    format!("parameter `{other}` is not supported on history (supported: _since, _count)"),
                ));
            }
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_forms() {
        assert_eq!(parse_token("abc").unwrap(), TokenMatch::Code("abc".into()));
        assert_eq!(
            parse_token("http://x|abc").unwrap(),
            TokenMatch::SystemCode { system: "http://x".into(), code: "abc".into() }
        );
        assert_eq!(parse_token("|abc").unwrap(), TokenMatch::NoSystemCode("abc".into()));
        assert_eq!(parse_token("http://x|").unwrap(), TokenMatch::System("http://x".into()));
        assert_eq!(parse_token("a\\|b").unwrap(), TokenMatch::Code("a|b".into()));
        assert!(parse_token("|").is_err());
    }

    #[test]
    fn or_lists_and_escapes() {
        assert_eq!(split_or("a,b\\,c"), vec!["a".to_string(), "b,c".to_string()]);
    }

    #[test]
    fn criteria_refuse_unknown_and_empty() {
        let p = |s: &str| pairs(Some(s));
        assert!(criteria("Patient", &p("name=x")).is_err());
        assert!(criteria("Patient", &p("_format=json")).is_err());
        assert!(criteria("Patient", &p("identifier=")).is_err());
        let c = criteria("Patient", &p("identifier=s|1,s|2&_id=a")).unwrap();
        assert_eq!(c.clauses.len(), 2);
    }

    #[test]
    fn since_accepts_unencoded_plus() {
        let t = parse_instant("2024-01-01T10:00:00 01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-01-01T09:00:00+00:00");
        assert!(parse_instant("yesterday").is_none());
        assert_eq!(parse_instant("2024-02-03").unwrap().to_rfc3339(), "2024-02-03T00:00:00+00:00");
    }
}
