//! Query-string helpers for the FHIR API: decoding pairs and the history parameters. Search
//! parameters (and conditional criteria) are parsed in `search.rs` by `hearth-search`.

use chrono::{DateTime, Utc};

use crate::error::FhirError;

pub use hearth_workflow::fhir::{pairs, parse_instant};

/// Parameters that only shape the response and may appear anywhere.
fn is_format_param(name: &str) -> bool {
    matches!(name, "_format" | "_pretty")
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
    fn since_accepts_unencoded_plus() {
        let t = parse_instant("2024-01-01T10:00:00 01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-01-01T09:00:00+00:00");
        assert!(parse_instant("yesterday").is_none());
        assert_eq!(parse_instant("2024-02-03").unwrap().to_rfc3339(), "2024-02-03T00:00:00+00:00");
    }
}
