//! Adherence of one schedule over a period (pure).
//!
//! The doses due are the schedule's dose times in the patient's zone ([`crate::doses`]); a dose
//! log answers the dose whose instant its `scheduled_for` names. A dose is *on time* when its log
//! is `taken`, *late* when `late`, *skipped* when `skipped`, *missed* when nothing answers it.
//! - proportion on time = on time ÷ due;
//! - proportion of days covered (PDC, from the logs) = days on which every dose due was taken
//!   (on time or late) ÷ days with a dose due. **Decision:** the classic PDC counts days covered
//!   by dispensed supply; Hearth records doses taken, not dispensings, so a day counts as
//!   covered when the patient took what was due that day.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::doses::doses;
use crate::schedule::{LogOut, ScheduleOut};

/// Counts and proportions for one schedule and period.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Adherence {
    pub due: usize,
    pub on_time: usize,
    pub late: usize,
    pub skipped: usize,
    pub missed: usize,
    /// on time ÷ due (`None` when nothing was due).
    pub proportion_on_time: Option<f64>,
    pub days_due: usize,
    pub days_covered: usize,
    /// days covered ÷ days due (`None` when nothing was due).
    pub pdc: Option<f64>,
}

/// Adherence of `schedule` in `[from, to)` in zone `tz`, from its logs.
pub fn adherence(schedule: &ScheduleOut, tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>, logs: &[LogOut]) -> Adherence {
    let due = doses(schedule, tz, from, to);
    let mut answers: HashMap<DateTime<Utc>, &str> = HashMap::new();
    for l in logs.iter().filter(|l| l.schedule.as_deref() == Some(schedule.reference.as_str())) {
        if let Some(at) = l.scheduled_for.as_deref().and_then(hearth_workflow::fhir::parse_instant) {
            // The newest answer wins (a dose first logged skipped, then taken late).
            answers.insert(at, l.status.as_str());
        }
    }
    let (mut on_time, mut late, mut skipped, mut missed) = (0, 0, 0, 0);
    let mut days: BTreeMap<NaiveDate, bool> = BTreeMap::new();
    for d in &due {
        let taken = match answers.get(&d.at).copied() {
            Some("taken") => {
                on_time += 1;
                true
            }
            Some("late") => {
                late += 1;
                true
            }
            Some("skipped") => {
                skipped += 1;
                false
            }
            _ => {
                missed += 1;
                false
            }
        };
        let day = days.entry(d.local.date()).or_insert(true);
        *day = *day && taken;
    }
    let ratio = |n: usize, of: usize| (of > 0).then(|| n as f64 / of as f64);
    let days_covered = days.values().filter(|c| **c).count();
    Adherence {
        due: due.len(),
        on_time,
        late,
        skipped,
        missed,
        proportion_on_time: ratio(on_time, due.len()),
        days_due: days.len(),
        days_covered,
        pdc: ratio(days_covered, days.len()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::schedule::{DoseIn, MedicationIn, StepIn};

    fn twice_daily() -> ScheduleOut {
        ScheduleOut {
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
                dose: DoseIn { value: 500.0, unit: "mg".into() },
            }],
            quantity: None,
            quantity_since: None,
        }
    }

    fn log(status: &str, scheduled: &str) -> LogOut {
        LogOut {
            reference: "MedicationAdministration/x".into(),
            schedule: Some("MedicationStatement/m".into()),
            status: status.into(),
            at: None,
            scheduled_for: Some(scheduled.into()),
            medication: None,
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn proportion_on_time_and_days_covered() {
        let tz: Tz = "UTC".parse().unwrap();
        // Three days, six doses: day 1 both on time; day 2 one late, one skipped; day 3 one
        // on time, one missed (then a second log for an already-answered dose: the newest wins).
        let logs = [
            log("taken", "2027-01-01T08:00:00Z"),
            log("taken", "2027-01-01T20:00:00Z"),
            log("late", "2027-01-02T08:00:00Z"),
            log("skipped", "2027-01-02T20:00:00Z"),
            log("skipped", "2027-01-03T08:00:00Z"),
            log("taken", "2027-01-03T08:00:00Z"),
        ];
        let a = adherence(&twice_daily(), tz, utc("2027-01-01T00:00:00Z"), utc("2027-01-04T00:00:00Z"), &logs);
        assert_eq!((a.due, a.on_time, a.late, a.skipped, a.missed), (6, 3, 1, 1, 1));
        assert_eq!(a.proportion_on_time, Some(0.5));
        assert_eq!((a.days_due, a.days_covered), (3, 1));
        assert!((a.pdc.unwrap() - 1.0 / 3.0).abs() < 1e-9);
        let none = adherence(&twice_daily(), tz, utc("2026-01-01T00:00:00Z"), utc("2026-01-02T00:00:00Z"), &logs);
        assert_eq!((none.due, none.proportion_on_time, none.pdc), (0, None, None));
    }
}
