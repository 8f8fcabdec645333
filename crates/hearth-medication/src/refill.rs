//! Refill prediction (pure): from the quantity in hand when a schedule was added, the doses
//! logged taken (or late) since, and the doses still due, when the medicine runs out.
//!
//! The quantity counts in the dose's unit (60 tablets for a 1-tablet dose; 10 000 mg for a
//! 500 mg dose). Remaining = quantity − the doses taken since it was counted; the medicine runs
//! out at the first future dose the remainder cannot cover. Doses are read up to a year ahead.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use crate::doses::doses;
use crate::schedule::{LogOut, ScheduleOut};

/// The prediction for one schedule.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Refill {
    /// In the dose's unit.
    pub remaining: f64,
    /// The first dose the remainder cannot cover, RFC 3339 (`None`: covered for the next year, or the
    /// schedule ends first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs_out: Option<String>,
}

/// Predicts for `schedule` (its `quantity` counted at `since`) at `now` in `tz`.
pub fn predict(
    schedule: &ScheduleOut,
    tz: Tz,
    quantity: f64,
    since: DateTime<Utc>,
    logs: &[LogOut],
    now: DateTime<Utc>,
) -> Refill {
    // What each dose instant takes, from the schedule's steps.
    let past = doses(schedule, tz, since, now);
    let dose_at = |at: DateTime<Utc>| past.iter().find(|d| d.at == at).map(|d| d.value);
    let step_value = schedule.steps.first().map_or(0.0, |s| s.dose.value);
    let mut used = 0.0;
    for l in logs.iter().filter(|l| l.schedule.as_deref() == Some(schedule.reference.as_str())) {
        let taken = matches!(l.status.as_str(), "taken" | "late");
        let at = l.at.as_deref().and_then(hearth_workflow::fhir::parse_instant);
        if !taken || at.is_none_or(|a| a < since) {
            continue;
        }
        let scheduled = l.scheduled_for.as_deref().and_then(hearth_workflow::fhir::parse_instant);
        used += scheduled.and_then(dose_at).unwrap_or(step_value);
    }
    let remaining = (quantity - used).max(0.0);
    let mut left = remaining;
    let mut runs_out = None;
    for d in doses(schedule, tz, now, now + TimeDelta::days(366)) {
        if left + 1e-9 < d.value {
            runs_out = Some(d.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            break;
        }
        left -= d.value;
    }
    Refill { remaining, runs_out }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::schedule::{DoseIn, MedicationIn, StepIn};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn ten_tablets_twice_a_day_with_two_taken_run_out_on_the_fifth_day() {
        let s = ScheduleOut {
            reference: "MedicationStatement/m".into(),
            kind: "statement",
            status: "active".into(),
            medication: MedicationIn { name: "Metformin".into(), rxnorm: None },
            route: None,
            times: vec!["08:00".into(), "20:00".into()],
            every_hours: None,
            days_of_week: vec![],
            as_needed: false,
            instructions: None,
            steps: vec![StepIn {
                start: "2027-01-01".into(),
                end: None,
                dose: DoseIn { value: 1.0, unit: "tablet".into() },
            }],
            quantity: Some(10.0),
            quantity_since: Some("2027-01-01T00:00:00Z".into()),
        };
        let log = |status: &str, at: &str, sched: &str| LogOut {
            reference: "MedicationAdministration/x".into(),
            schedule: Some("MedicationStatement/m".into()),
            status: status.into(),
            at: Some(at.into()),
            scheduled_for: Some(sched.into()),
            medication: None,
        };
        let logs = [
            log("taken", "2027-01-01T08:05:00Z", "2027-01-01T08:00:00Z"),
            log("skipped", "2027-01-01T20:05:00Z", "2027-01-01T20:00:00Z"),
            log("late", "2027-01-02T10:00:00Z", "2027-01-02T08:00:00Z"),
        ];
        let tz: Tz = "UTC".parse().unwrap();
        let r = predict(&s, tz, 10.0, utc("2027-01-01T00:00:00Z"), &logs, utc("2027-01-02T12:00:00Z"));
        // 8 left from 2 Jan 20:00: 20:00, then 3, 4, 5 Jan twice a day = 7, 6 Jan 08:00 = 8; 20:00 is short.
        assert_eq!(r.remaining, 8.0);
        assert_eq!(r.runs_out.as_deref(), Some("2027-01-06T20:00:00Z"));
    }
}
