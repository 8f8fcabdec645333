//! Ids in app-API bodies and queries, written either bare (`123`) or as the relative reference
//! FHIR uses (`Practitioner/123`): `#[serde(deserialize_with = "hearth_workflow::refs::practitioner")]`
//! (and `opt_*` with `#[serde(default)]` for optional fields). A reference to another type
//! (`Patient/1` where a practitioner is asked for) is left as written, so the id check that
//! follows refuses it.

use serde::{Deserialize, Deserializer};

/// `id` from `"<resource_type>/<id>"`, or the value as it is.
pub fn local_id(value: &str, resource_type: &str) -> String {
    value.strip_prefix(resource_type).and_then(|r| r.strip_prefix('/')).unwrap_or(value).to_owned()
}

macro_rules! reference_ids {
    ($($one:ident, $opt:ident, $many:ident => $ty:literal;)*) => {$(
        #[doc = concat!("A `", $ty, "` id, bare or as `", $ty, "/<id>`.")]
        pub fn $one<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
            Ok(local_id(&String::deserialize(d)?, $ty))
        }
        #[doc = concat!("An optional `", $ty, "` id, bare or as `", $ty, "/<id>`.")]
        pub fn $opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
            Ok(Option::<String>::deserialize(d)?.map(|v| local_id(&v, $ty)))
        }
        #[doc = concat!("An optional list of `", $ty, "` ids, each bare or as `", $ty, "/<id>`.")]
        pub fn $many<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
            Ok(Option::<Vec<String>>::deserialize(d)?.map(|v| v.iter().map(|x| local_id(x, $ty)).collect()))
        }
    )*};
}

reference_ids! {
    practitioner, opt_practitioner, opt_practitioners => "Practitioner";
    patient, opt_patient, opt_patients => "Patient";
    location, opt_location, opt_locations => "Location";
    healthcare_service, opt_healthcare_service, opt_healthcare_services => "HealthcareService";
    schedule, opt_schedule, opt_schedules => "Schedule";
    encounter, opt_encounter, opt_encounters => "Encounter";
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(deserialize_with = "practitioner")]
        practitioner: String,
        #[serde(default, deserialize_with = "opt_patient")]
        patient: Option<String>,
        #[serde(default, deserialize_with = "opt_practitioners")]
        practitioners: Option<Vec<String>>,
    }

    #[test]
    fn ids_are_taken_bare_or_as_references_of_their_type_only() {
        let b: Body = serde_json::from_str(r#"{"practitioner": "Practitioner/p1", "patient": "9"}"#).unwrap();
        assert_eq!((b.practitioner.as_str(), b.patient.as_deref()), ("p1", Some("9")));
        assert_eq!(b.practitioners, None);
        let b: Body = serde_json::from_str(
            r#"{"practitioner": "p1", "patient": "Patient/9", "practitioners": ["Practitioner/a", "b"]}"#,
        )
        .unwrap();
        assert_eq!((b.practitioner.as_str(), b.patient.as_deref()), ("p1", Some("9")));
        assert_eq!(b.practitioners.unwrap(), ["a", "b"]);
        // Another type's reference stays as written (and fails the id check after).
        let b: Body = serde_json::from_str(r#"{"practitioner": "Patient/9"}"#).unwrap();
        assert_eq!(b.practitioner, "Patient/9");
        assert_eq!(local_id("Practitioner/", "Practitioner"), "");
    }
}
