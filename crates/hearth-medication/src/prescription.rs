//! E-prescriptions (pure): the facts India's Telemedicine Practice Guidelines 2020 ask a
//! prescription to carry, gathered from the FHIR resources, checked for completeness, written as
//! the signed text, and the FHIR `Composition` and `Provenance` that record the signing.
//!
//! What "signature" means here (a decision, documented in `docs/MEDICATION.md`): the prescriber
//! signs by an authenticated action (their own signed-in `POST /api/v1/medication/prescriptions`).
//! The text of the prescription is fixed at that moment and kept on the `Composition`; the
//! `Provenance` records who signed and when, with the SHA-256 of that text as its signature
//! data; the `Composition` names the prescriber as its `legal` attester. It is not a digital
//! signature with a certificate (no key of the prescriber's is involved): anyone can check that
//! the text shown is the text signed by recomputing the hash, and who signed it by the audit trail.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::schedule::{ScheduleOut, TAG_SYSTEM};

/// Extension on the `Composition` holding the signed text.
pub const TEXT_URL: &str = "urn:hearth:medication:prescription-text";
/// Extension on the `Composition` naming the `Provenance` of the signature.
pub const SIGNATURE_URL: &str = "urn:hearth:medication:prescription-signature";
/// Most orders on one prescription.
pub const MAX_ORDERS: usize = 20;

/// One medicine as prescribed.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub name: String,
    pub strength: String,
    pub dose: String,
    pub frequency: String,
    pub duration: String,
    pub instructions: String,
}

/// Everything the prescription states.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub prescriber: String,
    pub qualification: String,
    pub registration: String,
    pub organization: String,
    pub patient_name: String,
    pub age: u32,
    pub sex: String,
    pub date: NaiveDate,
    pub diagnosis: String,
    pub advice: String,
    pub items: Vec<Item>,
}

fn s<'a>(v: &'a Value, p: &str) -> Option<&'a str> {
    v.pointer(p).and_then(Value::as_str).map(str::trim).filter(|x| !x.is_empty())
}

/// A HumanName as one line: its `text`, else prefix, given and family names.
pub fn human_name(name: &Value) -> Option<String> {
    if let Some(t) = s(name, "/text") {
        return Some(t.to_owned());
    }
    let list = |k: &str| -> Vec<String> {
        name.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let mut parts = list("prefix");
    parts.extend(list("given"));
    parts.extend(s(name, "/family").map(str::to_owned));
    let joined = parts.join(" ");
    (!joined.trim().is_empty()).then_some(joined)
}

/// The names of a Patient or Practitioner, in order.
pub fn names(r: &Value) -> Vec<String> {
    r.get("name").and_then(Value::as_array).map(|a| a.iter().filter_map(human_name).collect()).unwrap_or_default()
}

/// A practitioner's qualifications (`code.text` or the first coding's display) and the first
/// registration number among them (`qualification.identifier.value`: the number the council
/// registered that qualification under).
pub fn qualifications(practitioner: &Value) -> (Vec<String>, Option<String>) {
    let quals = practitioner.get("qualification").and_then(Value::as_array).cloned().unwrap_or_default();
    let names = quals
        .iter()
        .filter_map(|q| s(q, "/code/text").or_else(|| s(q, "/code/coding/0/display")).map(str::to_owned))
        .collect();
    let registration = quals.iter().find_map(|q| {
        q.get("identifier").and_then(Value::as_array).and_then(|ids| ids.iter().find_map(|i| s(i, "/value")))
    });
    (names, registration.map(str::to_owned))
}

/// Whole years from `birth` to `on`.
pub fn age(birth: NaiveDate, on: NaiveDate) -> Option<u32> {
    let mut years = on.year() - birth.year();
    if (on.month(), on.day()) < (birth.month(), birth.day()) {
        years -= 1;
    }
    u32::try_from(years).ok()
}

/// The strength a medicine's name states: from its first digit (`Metformin 500 mg tablet` →
/// `500 mg tablet`).
pub fn strength(name: &str) -> Option<String> {
    let at = name.find(|c: char| c.is_ascii_digit())?;
    name.get(at..).map(|x| x.trim().to_owned())
}

fn amount(v: f64, unit: &str) -> String {
    format!("{v} {unit}")
}

/// One order as a prescription line, or the facts it lacks.
pub fn item(i: usize, o: &ScheduleOut) -> Result<Item, Vec<String>> {
    let mut missing = Vec::new();
    let strength = strength(&o.medication.name);
    if strength.is_none() {
        missing.push(format!(
            "orders[{i}]: the strength (state it in the medicine's name, e.g. \"Metformin 500 mg tablet\")"
        ));
    }
    let dose = match o.steps.as_slice() {
        [] => {
            missing.push(format!("orders[{i}]: the dose"));
            String::new()
        }
        [one] => amount(one.dose.value, &one.dose.unit),
        steps => steps
            .iter()
            .map(|st| {
                let to = st.end.as_deref().map(|e| format!(" to {e}")).unwrap_or_default();
                format!("{} from {}{to}", amount(st.dose.value, &st.dose.unit), st.start)
            })
            .collect::<Vec<_>>()
            .join(", then "),
    };
    let mut frequency = if o.as_needed {
        "when needed".to_owned()
    } else if let Some(h) = o.every_hours {
        format!("every {h} hours")
    } else {
        match o.times.len() {
            1 => format!("once a day at {}", o.times.join(", ")),
            2 => format!("twice a day at {}", o.times.join(", ")),
            n => format!("{n} times a day at {}", o.times.join(", ")),
        }
    };
    if !o.days_of_week.is_empty() {
        frequency.push_str(&format!(", on {}", o.days_of_week.join(", ")));
    }
    let start = o.steps.first().and_then(|st| NaiveDate::parse_from_str(&st.start, "%Y-%m-%d").ok());
    let end =
        o.steps.last().and_then(|st| st.end.as_deref()).and_then(|e| NaiveDate::parse_from_str(e, "%Y-%m-%d").ok());
    let duration = match (start, end) {
        (Some(a), Some(b)) => {
            let days = (b - a).num_days() + 1;
            format!("{days} day{} ({a} to {b})", if days == 1 { "" } else { "s" })
        }
        _ => {
            missing.push(format!("orders[{i}]: the duration (an `end` date)"));
            String::new()
        }
    };
    let instructions = [o.route.clone(), o.instructions.clone()].into_iter().flatten().collect::<Vec<_>>().join("; ");
    if instructions.is_empty() {
        missing.push(format!("orders[{i}]: instructions (a `route` or `instructions`)"));
    }
    if !missing.is_empty() {
        return Err(missing);
    }
    Ok(Item {
        name: o.medication.name.clone(),
        strength: strength.unwrap_or_default(),
        dose,
        frequency,
        duration,
        instructions,
    })
}

impl Facts {
    /// The signed text: every fact, one per line.
    pub fn text(&self) -> String {
        let mut t = String::new();
        t.push_str(&format!("Prescriber: {}\n", self.prescriber));
        t.push_str(&format!("Qualification: {}\n", self.qualification));
        t.push_str(&format!("Registration number: {}\n", self.registration));
        t.push_str(&format!("Organization: {}\n", self.organization));
        t.push_str(&format!("Date: {}\n\n", self.date));
        t.push_str(&format!("Patient: {}\n", self.patient_name));
        t.push_str(&format!("Age: {} years\n", self.age));
        t.push_str(&format!("Sex: {}\n\n", self.sex));
        t.push_str(&format!("Diagnosis: {}\n\n", self.diagnosis));
        t.push_str("Rx\n");
        for (n, i) in self.items.iter().enumerate() {
            t.push_str(&format!(
                "{}. {}\n   Strength: {}\n   Dose: {}\n   Frequency: {}\n   Duration: {}\n   Instructions: {}\n",
                n + 1,
                i.name,
                i.strength,
                i.dose,
                i.frequency,
                i.duration,
                i.instructions
            ));
        }
        t.push_str(&format!("\nAdvice: {}\n", self.advice));
        t
    }
}

/// The lowercase hex SHA-256 of the signed text (the signature's data, the verification reference).
pub fn digest(text: &str) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(text.as_bytes()))
}

fn div(text: &str) -> Value {
    let escaped = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    json!({"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>{escaped}</p></div>")})
}

/// The references a prescription is written from.
pub struct Refs<'a> {
    pub id: &'a str,
    pub provenance: &'a str,
    pub patient: &'a str,
    pub practitioner: &'a str,
    pub organization: &'a str,
    /// `MedicationRequest/{id}` of each order.
    pub orders: &'a [String],
}

/// The `Composition` of a signed prescription.
pub fn composition(f: &Facts, r: &Refs<'_>, now: DateTime<Utc>) -> Value {
    let at = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let text = f.text();
    let items: Vec<String> = f
        .items
        .iter()
        .map(|i| format!("{} — {}, {}, {}; {}", i.name, i.dose, i.frequency, i.duration, i.instructions))
        .collect();
    json!({
        "resourceType": "Composition",
        "meta": {"tag": [{"system": TAG_SYSTEM, "code": "prescription"}]},
        "extension": [
            {"url": TEXT_URL, "valueString": text},
            {"url": SIGNATURE_URL, "valueReference": {"reference": format!("Provenance/{}", r.provenance)}},
        ],
        "identifier": {"system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{}", r.id)},
        "status": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": "57833-6", "display": "Prescription for medication"}], "text": "e-Prescription"},
        "subject": {"reference": format!("Patient/{}", r.patient)},
        "date": at,
        "author": [{"reference": format!("Practitioner/{}", r.practitioner)}],
        "title": "e-Prescription",
        "attester": [{"mode": "legal", "time": at, "party": {"reference": format!("Practitioner/{}", r.practitioner)}}],
        "custodian": {"reference": format!("Organization/{}", r.organization)},
        "section": [
            {"title": "Diagnosis", "text": div(&f.diagnosis)},
            {"title": "Medications", "text": div(&items.join("; ")),
             "entry": r.orders.iter().map(|o| json!({"reference": o})).collect::<Vec<_>>()},
            {"title": "Advice", "text": div(&f.advice)},
        ],
    })
}

/// The `Provenance` of the signature: the prescriber, when, and the SHA-256 of the signed text.
pub fn provenance(r: &Refs<'_>, text: &str, now: DateTime<Utc>) -> Value {
    let at = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let who = json!({"reference": format!("Practitioner/{}", r.practitioner)});
    let mut targets = vec![json!({"reference": format!("Composition/{}", r.id)})];
    targets.extend(r.orders.iter().map(|o| json!({"reference": o})));
    json!({
        "resourceType": "Provenance",
        "meta": {"tag": [{"system": TAG_SYSTEM, "code": "prescription-signature"}]},
        "target": targets,
        "recorded": at,
        "agent": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}]}, "who": who}],
        "signature": [{
            "type": [{"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.1", "display": "Author's Signature"}],
            "when": at,
            "who": who,
            "targetFormat": "text/plain; charset=utf-8",
            "data": data_encoding::BASE64.encode(&Sha256::digest(text.as_bytes())),
        }],
    })
}

/// What a stored prescription's `Composition` says about its signature: (signed text, signer,
/// when, `Provenance/{id}`).
pub fn signed(c: &Value) -> Option<(String, String, String, String)> {
    let ext = c.get("extension").and_then(Value::as_array)?;
    let find = |url: &str| ext.iter().find(|e| e.get("url").and_then(Value::as_str) == Some(url));
    // Exactly as signed (not trimmed: the digest covers every byte).
    let text = find(TEXT_URL).and_then(|e| e.get("valueString")).and_then(Value::as_str)?.to_owned();
    let provenance = find(SIGNATURE_URL).and_then(|e| s(e, "/valueReference/reference"))?.to_owned();
    let signer = s(c, "/attester/0/party/reference")?.to_owned();
    let when = s(c, "/attester/0/time")?.to_owned();
    Some((text, signer, when, provenance))
}

/// The PDF's text: the signed text, then the signature block.
pub fn pdf_text(text: &str, prescriber: &str, when: &str, provenance: &str, patient_name_shows: bool) -> String {
    let mut t = text.to_owned();
    if !patient_name_shows {
        t.push_str(
            "\n(The patient's name is in a script this PDF cannot show; the FHIR document carries it exactly.)\n",
        );
    }
    t.push_str(&format!(
        "\nSignature: signed electronically by {prescriber} at {when} (an authenticated action in Hearth).\n\
         Verification: {provenance}\nSHA-256 of the text above:\n{}\n",
        digest(text)
    ));
    t
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn age_counts_whole_years_and_strength_comes_from_the_name() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(age(d("1984-03-07"), d("2026-03-06")), Some(41));
        assert_eq!(age(d("1984-03-07"), d("2026-03-07")), Some(42));
        assert_eq!(age(d("2030-01-01"), d("2026-03-07")), None);
        assert_eq!(strength("Metformin 500 mg tablet").as_deref(), Some("500 mg tablet"));
        assert_eq!(strength("Metformin"), None);
    }

    fn order(name: &str, end: Option<&str>, route: Option<&str>) -> ScheduleOut {
        use crate::schedule::{DoseIn, MedicationIn, StepIn};
        ScheduleOut {
            reference: "MedicationRequest/m".into(),
            kind: "request",
            status: "active".into(),
            medication: MedicationIn { name: name.into(), rxnorm: None },
            route: route.map(str::to_owned),
            times: vec!["08:00".into(), "20:00".into()],
            every_hours: None,
            days_of_week: vec![],
            as_needed: false,
            instructions: None,
            steps: vec![StepIn {
                start: "2026-12-07".into(),
                end: end.map(str::to_owned),
                dose: DoseIn { value: 500.0, unit: "mg".into() },
            }],
            quantity: None,
            quantity_since: None,
        }
    }

    #[test]
    fn an_order_becomes_a_line_or_says_each_fact_it_lacks() {
        let line = item(0, &order("Metformin 500 mg tablet", Some("2027-01-05"), Some("oral"))).unwrap();
        assert_eq!(
            line,
            Item {
                name: "Metformin 500 mg tablet".into(),
                strength: "500 mg tablet".into(),
                dose: "500 mg".into(),
                frequency: "twice a day at 08:00, 20:00".into(),
                duration: "30 days (2026-12-07 to 2027-01-05)".into(),
                instructions: "oral".into(),
            }
        );
        let missing = item(2, &order("Metformin", None, None)).unwrap_err();
        assert_eq!(missing.len(), 3, "{missing:?}");
        assert!(missing.iter().all(|m| m.starts_with("orders[2]: ")), "{missing:?}");
        assert!(
            missing[0].contains("strength") && missing[1].contains("duration") && missing[2].contains("instructions")
        );
    }

    #[test]
    fn a_practitioners_qualification_and_registration_number_are_read() {
        let p = json!({"qualification": [{"code": {"text": "MBBS"}, "identifier": [{"system": "urn:example:nmc", "value": "KMC-12345"}]}, {"code": {"coding": [{"display": "MD (Medicine)"}]}}]});
        assert_eq!(
            qualifications(&p),
            (vec!["MBBS".to_owned(), "MD (Medicine)".to_owned()], Some("KMC-12345".to_owned()))
        );
        assert_eq!(qualifications(&json!({})), (vec![], None));
    }
}
