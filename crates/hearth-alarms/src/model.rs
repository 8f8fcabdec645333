//! What an alarm is, parsed from a request body: a label, a kind, a first local time (like
//! RFC 5545's DTSTART) and optionally a recurrence rule and a zone. Pure; every refusal has a
//! stable code.

use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use crate::rrule::{Rrule, RruleError};

/// Longest label, in characters.
pub const MAX_LABEL: usize = 200;

/// What an alarm is for; it picks the notification's wording (the label never leaves the app).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Medication,
    Water,
    Custom,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Medication, Kind::Water, Kind::Custom];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Medication => "medication",
            Kind::Water => "water",
            Kind::Custom => "custom",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// An alarm as a client sends it (create, or replace with `PUT`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"label": "Metformin after breakfast", "kind": "medication", "at": "2026-12-08T08:00", "rrule": "FREQ=DAILY", "enabled": true}))]
pub struct AlarmIn {
    /// 1 to 200 characters, no control characters. Shown in the app only: notifications say
    /// just the kind.
    pub label: String,
    /// `medication`, `water` or `custom`.
    pub kind: String,
    /// The first (or only) ring, a local wall-clock time `YYYY-MM-DDTHH:MM` (or `…:SS`) in the
    /// alarm's zone, no offset.
    pub at: String,
    /// Repeats by this RFC 5545 rule from `at` (`FREQ=DAILY`, `FREQ=WEEKLY;BYDAY=MO,WE,FR`, …;
    /// the subset is in the API description); absent: rings once.
    #[serde(default)]
    pub rrule: Option<String>,
    /// An IANA zone (`Asia/Kolkata`); absent: the account's zone (the profile's, as the
    /// notification settings hold it), followed when it changes.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Default `true`. A disabled alarm keeps its settings and rings nowhere.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A refusal: a stable code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub code: &'static str,
    pub message: String,
}

fn invalid(code: &'static str, message: impl Into<String>) -> Invalid {
    Invalid { code, message: message.into() }
}

/// An alarm that passed every check.
#[derive(Debug, Clone)]
pub struct Checked {
    pub label: String,
    pub kind: Kind,
    pub start: NaiveDateTime,
    /// The rule as given (without an `RRULE:` prefix) and parsed.
    pub rrule: Option<(String, Rrule)>,
    pub time_zone: Option<Tz>,
    pub enabled: bool,
}

/// A local date-time `YYYY-MM-DDTHH:MM[:SS]`.
pub fn parse_local(s: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M"))
        .ok()
}

/// `local` as stored and answered: `YYYY-MM-DDTHH:MM:SS`.
pub fn format_local(local: NaiveDateTime) -> String {
    local.format("%Y-%m-%dT%H:%M:%S").to_string()
}

pub fn parse_zone(s: &str) -> Option<Tz> {
    s.parse::<Tz>().ok()
}

impl AlarmIn {
    /// Checks every field; `Invalid` names the first refused one.
    pub fn check(&self) -> Result<Checked, Invalid> {
        let label = self.label.trim();
        if label.is_empty() || label.chars().count() > MAX_LABEL || label.chars().any(char::is_control) {
            return Err(invalid(
                "invalid_label",
                format!("label must be 1 to {MAX_LABEL} characters without control characters"),
            ));
        }
        let kind = Kind::parse(&self.kind)
            .ok_or_else(|| invalid("invalid_kind", "kind must be one of medication, water, custom"))?;
        let start = parse_local(self.at.trim()).ok_or_else(|| {
            invalid("invalid_time", "at must be a local date-time YYYY-MM-DDTHH:MM (no offset: the zone says it)")
        })?;
        let time_zone = match self.time_zone.as_deref() {
            None => None,
            Some(z) => Some(
                parse_zone(z)
                    .ok_or_else(|| invalid("invalid_time_zone", format!("`{z}` is not an IANA time zone name")))?,
            ),
        };
        let rrule = match self.rrule.as_deref().map(str::trim) {
            None => None,
            Some(text) => {
                let rule = Rrule::parse(text).map_err(|e| match e {
                    RruleError::Invalid(m) => invalid("invalid_rrule", format!("invalid RRULE: {m}")),
                    RruleError::Unsupported(m) => invalid(
                        "unsupported_rrule",
                        format!(
                            "RRULE part not supported: {m} (supported: FREQ=DAILY/WEEKLY/MONTHLY, INTERVAL, \
                             BYDAY without ordinals, BYHOUR, BYMINUTE, COUNT, UNTIL, WKST=MO)"
                        ),
                    ),
                })?;
                let text = text.strip_prefix("RRULE:").unwrap_or(text).to_owned();
                Some((text, rule))
            }
        };
        Ok(Checked { label: label.to_owned(), kind, start, rrule, time_zone, enabled: self.enabled.unwrap_or(true) })
    }
}

/// The instants `start` (and `rule`) ring at in `[from, to)` in `tz`, in order.
pub fn occurrences(
    start: NaiveDateTime,
    rule: Option<&Rrule>,
    tz: Tz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    match rule {
        Some(r) => r.between(start, tz, from, to),
        None => {
            let at = crate::rrule::instant(start, tz);
            if at >= from && at < to { vec![at] } else { Vec::new() }
        }
    }
}

/// The next ring at or after `from`.
pub fn next_after(start: NaiveDateTime, rule: Option<&Rrule>, tz: Tz, from: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match rule {
        Some(r) => r.next_after(start, tz, from),
        None => Some(crate::rrule::instant(start, tz)).filter(|at| *at >= from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: serde_json::Value) -> AlarmIn {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn every_refusal_has_its_code() {
        let ok = serde_json::json!({"label": "Water", "kind": "water", "at": "2026-12-08T08:00"});
        assert!(body(ok.clone()).check().is_ok());
        let cases = [
            ("label", serde_json::json!(" "), "invalid_label"),
            ("label", serde_json::json!("a\u{7}b"), "invalid_label"),
            ("label", serde_json::json!("x".repeat(201)), "invalid_label"),
            ("kind", serde_json::json!("coffee"), "invalid_kind"),
            ("at", serde_json::json!("2026-12-08T08:00Z"), "invalid_time"),
            ("at", serde_json::json!("2026-02-30T08:00"), "invalid_time"),
            ("time_zone", serde_json::json!("Mars/Olympus"), "invalid_time_zone"),
            ("rrule", serde_json::json!("FREQ=DAILY;BYHOUR=25"), "invalid_rrule"),
            ("rrule", serde_json::json!("FREQ=YEARLY"), "unsupported_rrule"),
            ("rrule", serde_json::json!("FREQ=MONTHLY;BYMONTHDAY=1"), "unsupported_rrule"),
        ];
        for (field, value, code) in cases {
            let mut v = ok.clone();
            v[field] = value.clone();
            assert_eq!(body(v).check().unwrap_err().code, code, "{field} = {value}");
        }
        let e = body(serde_json::json!({"label": "x", "kind": "custom", "at": "2026-12-08T08:00", "rrule": "FREQ=DAILY;BYHOUR=25"}))
            .check()
            .unwrap_err();
        assert!(e.message.contains("BYHOUR"), "{}", e.message);
    }

    #[test]
    fn a_one_off_rings_once_in_its_zone() {
        let start = parse_local("2027-03-14T08:00").unwrap();
        let tz: Tz = "America/New_York".parse().unwrap();
        let from = "2027-03-14T00:00:00Z".parse().unwrap();
        let to = "2027-03-15T00:00:00Z".parse().unwrap();
        let at: DateTime<Utc> = "2027-03-14T12:00:00Z".parse().unwrap();
        assert_eq!(occurrences(start, None, tz, from, to), [at]);
        assert!(occurrences(start, None, tz, to, to + chrono::TimeDelta::days(1)).is_empty());
        assert_eq!(next_after(start, None, tz, from), Some(at));
        assert_eq!(next_after(start, None, tz, to), None);
    }
}
