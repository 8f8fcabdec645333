//! The profile (issue 18, item 7): a patient's own contact details, language, time zone, units
//! and goals round-trip through `/api/v1/profile` onto their Patient and Goals; the zone becomes
//! the one their notifications and alarms follow; bad input writes nothing; another patient
//! gets `404`, a caregiver reads but does not write.

use reqwest::Method;
use serde_json::json;

use crate::common::{TestApp, assert_valid_r4};
use crate::scheduling::{call, patient_account};

#[tokio::test]
async fn a_patient_sets_their_profile_and_the_zone_is_the_one_alarms_follow() {
    let t = TestApp::spawn().await;
    let (pa, _, a) = patient_account(&t, "Profiled").await;
    let (pb, _, b) = patient_account(&t, "Stranger").await;
    let (s, v) = call(&t, &a, Method::GET, "/api/v1/profile", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["demographics"]["id"], pa.as_str());
    assert_eq!(v["goals"], json!([]));

    let change = json!({
        "phone": "98765 43210", "language": "hi", "timeZone": "Asia/Kolkata",
        "units": {"system": "metric", "glucose": "mmol/L", "temperature": "Cel"},
        "goals": [{"description": "Walk 30 minutes a day", "target": "30 minutes", "due": "2027-03-01"}],
    });
    let (s, v) = call(&t, &a, Method::PUT, "/api/v1/profile", Some(change)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["timeZone"], "Asia/Kolkata");
    assert_eq!(v["demographics"]["phone"], "+919876543210");
    assert_eq!(v["demographics"]["language"], "hi");
    assert_eq!(v["units"], json!({"system": "metric", "glucose": "mmol/L", "temperature": "Cel"}));
    let goal = v["goals"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(v["goals"][0]["status"], "active");
    assert_eq!(v["goals"][0]["due"], "2027-03-01");
    let (_, again) = call(&t, &a, Method::GET, "/api/v1/profile", None).await;
    assert_eq!(again, v);

    // On the FHIR resources, valid R4.
    let patient = t.get(&format!("/fhir/Patient/{pa}")).await.json();
    assert_valid_r4(&patient);
    let g = t.get(&format!("/fhir/Goal/{goal}")).await.json();
    assert_valid_r4(&g);
    assert_eq!(g["subject"]["reference"], format!("Patient/{pa}"));

    // The zone is the notification zone (reminders, quiet hours) and the one alarms follow.
    let (_, prefs) = call(&t, &a, Method::GET, "/api/v1/notifications/preferences", None).await;
    assert_eq!(prefs["time_zone"], "Asia/Kolkata");
    let (s, alarm) = call(
        &t,
        &a,
        Method::POST,
        "/api/v1/alarms",
        Some(json!({"label": "Walk", "kind": "custom", "at": "2099-01-01T07:00", "rrule": "FREQ=DAILY"})),
    )
    .await;
    assert_eq!(s, 201, "{alarm}");
    assert_eq!(alarm["time_zone"], "Asia/Kolkata");

    // The goal is completed; refusals write nothing, not even their valid parts.
    let (s, v) = call(
        &t,
        &a,
        Method::PUT,
        "/api/v1/profile",
        Some(json!({"goals": [{"id": goal, "description": "Walk 30 minutes a day", "status": "completed"}]})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["goals"][0]["status"], "completed");
    for (body, code) in [
        (json!({"timeZone": "Mars/Base", "language": "en"}), "invalid_time_zone"),
        (json!({"language": "not a tag!", "timeZone": "Europe/London"}), "invalid_language"),
        (json!({"goals": [{"description": "x", "due": "2027-02-30"}], "timeZone": "Europe/London"}), "invalid_date"),
        (json!({"units": {"glucose": "g/L"}}), "invalid_units"),
        (json!({"goals": [{"description": "x", "status": "done"}]}), "invalid_goal"),
        (json!({"birthDate": "1990-01-01"}), "invalid_body"),
    ] {
        let (s, v) = call(&t, &a, Method::PUT, "/api/v1/profile", Some(body.clone())).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert_eq!(v["error"]["code"], code, "{body}: {v}");
    }
    let (_, now) = call(&t, &a, Method::GET, "/api/v1/profile", None).await;
    assert_eq!(now["timeZone"], "Asia/Kolkata");
    assert_eq!(now["goals"].as_array().unwrap().len(), 1);
    // A zone changed in the notification preferences is the one the profile answers.
    let (s, _) =
        call(&t, &a, Method::PUT, "/api/v1/notifications/preferences", Some(json!({"time_zone": "Europe/Paris"})))
            .await;
    assert_eq!(s, 200);
    let (_, now) = call(&t, &a, Method::GET, "/api/v1/profile", None).await;
    assert_eq!(now["timeZone"], "Europe/Paris");

    // Another patient: not found; and B cannot change A's goal through their own profile.
    let (s, _) = call(&t, &b, Method::GET, &format!("/api/v1/profile?patient={pa}"), None).await;
    assert_eq!(s, 404);
    let (s, v) =
        call(&t, &b, Method::PUT, "/api/v1/profile", Some(json!({"goals": [{"id": goal, "description": "Mine now"}]})))
            .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["code"], "invalid_goal");
    let (_, own) = call(&t, &b, Method::GET, "/api/v1/profile", None).await;
    assert_eq!(own["demographics"]["id"], pb.as_str());
    // Staff read it with `patient`, and do not write it here.
    let (s, v) = call(&t, &t.client, Method::GET, &format!("/api/v1/profile?patient={pa}"), None).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = call(&t, &t.client, Method::PUT, "/api/v1/profile", Some(json!({"language": "en"}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("profile_read_only")));
}
