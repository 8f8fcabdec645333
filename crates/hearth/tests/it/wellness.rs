//! Wellness (issue 19, items 1 and 3): each log kind round-trips through the app API and FHIR
//! search, with paging, date ranges and Idempotency-Keys; bad entries are refused with stable
//! codes and write nothing; caregivers and clinicians log and read as in self-care, another
//! patient does not; goals count progress and streaks from the logs; a fixed day's summary is
//! compared field by field in English and Hindi, and the planner stores it as a Composition and
//! sends it in-app and by e-mail at the patient's local time, once; the care-team chat delivers
//! over a real socket with read receipts, and an emergency in English, Hindi and Hinglish is
//! answered with the guidance and alerts the care team.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TestApp, assert_valid_r4};
use crate::scheduling::{account, call, patient_account};

fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&chrono::Utc)
}

async fn caregiver_of(t: &TestApp, patient: &str) -> reqwest::Client {
    let (id, c) = account(&t.app, "caregiver", None, true).await;
    let (s, v) = call(
        t,
        &t.client,
        Method::POST,
        "/api/v1/admin/caregivers",
        Some(json!({"caregiver": id, "patient": patient})),
    )
    .await;
    assert_eq!(s, 204, "{v}");
    c
}

async fn post(t: &TestApp, c: &reqwest::Client, path: &str, body: Value) -> Value {
    let (s, v) = call(t, c, Method::POST, path, Some(body)).await;
    assert_eq!(s, 201, "{path}: {v}");
    v
}

/// How many Observations of `code` FHIR search finds for the patient.
async fn fhir_count(t: &TestApp, patient: &str, code: &str) -> u64 {
    let (s, v) = call(
        t,
        &t.client,
        Method::GET,
        &format!("/fhir/Observation?patient={patient}&code={code}&_summary=count"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v["total"].as_u64().unwrap()
}

#[tokio::test]
async fn each_kind_round_trips_through_the_api_and_fhir_search() {
    let t = TestApp::spawn().await;
    t.clock.set(at("2027-01-15T10:00:00Z"));
    let (pa, _, a) = patient_account(&t, "Wellness").await;
    // (path, body, the code FHIR search finds it by, fields the answer carries)
    let cases = [
        (
            "/api/v1/tracking/food",
            json!({"effective": "2027-01-14T13:00:00+05:30", "description": "dal and rice", "meal": "lunch", "energy_kcal": 520, "carbohydrate_g": 80.5, "protein_g": 18, "fat_g": 12}),
            "http://loinc.org|75298-0",
        ),
        (
            "/api/v1/tracking/water",
            json!({"effective": "2027-01-14T09:00:00+05:30", "volume_ml": 250}),
            "http://loinc.org|105999-7",
        ),
        (
            "/api/v1/tracking/sleep",
            json!({"start": "2027-01-13T23:00:00+05:30", "end": "2027-01-14T06:30:00+05:30", "deep_minutes": 90, "light_minutes": 250, "rem_minutes": 80, "awake_minutes": 20}),
            "http://loinc.org|93832-4",
        ),
        (
            "/api/v1/tracking/exercise",
            json!({"effective": "2027-01-14T07:30:00+05:30", "activity": "walking", "duration_minutes": 30, "energy_kcal": 150, "distance_m": 2500}),
            "http://loinc.org|55411-3",
        ),
        (
            "/api/v1/tracking/mood",
            json!({"effective": "2027-01-14T20:00:00+05:30", "score": 4, "tags": ["calm", "rested"]}),
            "urn:hearth:wellness|mood",
        ),
        (
            "/api/v1/meditation/sessions",
            json!({"effective": "2027-01-14T06:45:00+05:30", "duration_minutes": 15, "technique": "breathing"}),
            "urn:hearth:wellness|meditation",
        ),
    ];
    for (path, body, code) in &cases {
        let v = post(&t, &a, path, body.clone()).await;
        for (k, want) in body.as_object().unwrap() {
            if ["effective", "start", "end"].contains(&k.as_str()) {
                continue;
            }
            assert_eq!(
                v[k].as_f64().map_or(v[k].clone(), Value::from),
                want.as_f64().map_or(want.clone(), Value::from),
                "{path} {k}"
            );
        }
        let id = v["id"].as_str().unwrap();
        // The API lists it…
        let (s, list) = call(&t, &a, Method::GET, path, None).await;
        assert_eq!(s, 200, "{list}");
        assert_eq!(list["patient"], pa.as_str());
        assert_eq!(list["entries"].as_array().unwrap().len(), 1, "{list}");
        assert_eq!(list["entries"][0], v, "{path}");
        // …and FHIR search finds the same Observation by its code, a valid R4 resource.
        let (s, found) =
            call(&t, &t.client, Method::GET, &format!("/fhir/Observation?patient={pa}&code={code}"), None).await;
        assert_eq!(s, 200, "{found}");
        assert_eq!(found["total"], 1, "{path}: {found}");
        let obs = &found["entry"][0]["resource"];
        assert_eq!(obs["id"], id);
        assert_valid_r4(obs);
        assert_eq!(obs["subject"]["reference"], format!("Patient/{pa}"));
        assert_eq!(obs["performer"][0]["reference"], format!("Patient/{pa}"));
    }
    // The units are UCUM and the stages components with their LOINC codes.
    let (_, sleep) = call(
        &t,
        &t.client,
        Method::GET,
        &format!("/fhir/Observation?patient={pa}&code=http://loinc.org|93832-4"),
        None,
    )
    .await;
    let sleep = &sleep["entry"][0]["resource"];
    assert_eq!(
        sleep["valueQuantity"],
        json!({"value": 420, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"})
    );
    assert_eq!(
        sleep["effectivePeriod"],
        json!({"start": "2027-01-13T17:30:00.000Z", "end": "2027-01-14T01:00:00.000Z"})
    );
    let stages: Vec<&str> = sleep["component"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"]["coding"][0]["code"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["93831-6", "93830-8", "93829-0", "103210-1"]);
    let (_, food) = call(
        &t,
        &t.client,
        Method::GET,
        &format!("/fhir/Observation?patient={pa}&component-code=http://loinc.org|75299-8"),
        None,
    )
    .await;
    assert_eq!(food["total"], 1, "the macronutrients are searchable components: {food}");
    assert_eq!(food["entry"][0]["resource"]["valueQuantity"]["code"], "kcal");

    // Paging and date ranges: three more water entries, two a page, newest first.
    for (i, time) in ["2027-01-12T09:00:00Z", "2027-01-13T09:00:00Z", "2027-01-15T09:00:00Z"].iter().enumerate() {
        post(&t, &a, "/api/v1/tracking/water", json!({"effective": time, "volume_ml": 100 * (i + 1)})).await;
    }
    let (s, page) = call(&t, &a, Method::GET, "/api/v1/tracking/water?count=2", None).await;
    assert_eq!(s, 200, "{page}");
    let volumes = |p: &Value| -> Vec<f64> {
        p["entries"].as_array().unwrap().iter().map(|e| e["volume_ml"].as_f64().unwrap()).collect()
    };
    assert_eq!(volumes(&page), [300.0, 250.0]);
    let next = page["next"].as_str().unwrap().to_owned();
    let url = format!("/api/v1/tracking/water?count=2&cursor={}", urlencode(&next));
    let (s, page2) = call(&t, &a, Method::GET, &url, None).await;
    assert_eq!(s, 200, "{page2}");
    assert_eq!(volumes(&page2), [200.0, 100.0]);
    assert!(page2.get("next").is_none(), "{page2}");
    let (_, range) = call(&t, &a, Method::GET, "/api/v1/tracking/water?from=2027-01-13&to=2027-01-15", None).await;
    assert_eq!(volumes(&range), [250.0, 200.0]);

    // An Idempotency-Key: sent again, the same entry; with another body, refused.
    let send = |body: Value| {
        a.post(t.url("/api/v1/tracking/water"))
            .header("content-type", "application/json")
            .header("idempotency-key", "glass-1")
            .body(body.to_string())
    };
    let first = t.send(send(json!({"effective": "2027-01-15T08:00:00Z", "volume_ml": 200}))).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let again = t.send(send(json!({"effective": "2027-01-15T08:00:00Z", "volume_ml": 200}))).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(again.json()["id"], first.json()["id"]);
    let other = t.send(send(json!({"effective": "2027-01-15T08:00:00Z", "volume_ml": 300}))).await;
    assert_eq!(other.status, 422, "{}", other.text);
    assert_eq!(other.json()["error"]["code"], "idempotency_key_reused");
    // Without `effective` (now), a retry a minute later is still the same entry.
    let now = |key: &'static str| {
        a.post(t.url("/api/v1/tracking/water"))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(json!({"volume_ml": 150}).to_string())
    };
    let first = t.send(now("glass-2")).await;
    assert_eq!(first.status, 201, "{}", first.text);
    t.clock.set(at("2027-01-15T10:01:00Z"));
    let again = t.send(now("glass-2")).await;
    assert_eq!((again.status, again.json()["id"].clone()), (200, first.json()["id"].clone()), "{}", again.text);
    assert_eq!(again.json()["effective"], "2027-01-15T10:00:00.000Z");
    assert_eq!(fhir_count(&t, &pa, "http://loinc.org|105999-7").await, 6);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn bad_entries_are_refused_with_stable_codes_and_write_nothing() {
    let t = TestApp::spawn().await;
    t.clock.set(at("2027-01-15T10:00:00Z"));
    let (pa, _, a) = patient_account(&t, "Refused").await;
    let cases = [
        ("/api/v1/tracking/water", json!({}), 400, "missing_field"),
        ("/api/v1/tracking/water", json!({"volume_ml": 0}), 400, "invalid_value"),
        ("/api/v1/tracking/water", json!({"volume_ml": 90000}), 400, "invalid_value"),
        ("/api/v1/tracking/water", json!({"volume_ml": 250, "score": 3}), 400, "field_not_allowed"),
        ("/api/v1/tracking/water", json!({"volume_ml": 250, "glasses": 2}), 400, "invalid_body"),
        ("/api/v1/tracking/water", json!({"volume_ml": 250, "effective": "yesterday"}), 400, "invalid_time"),
        ("/api/v1/tracking/water", json!({"volume_ml": 250, "effective": "2027-02-01T00:00:00Z"}), 400, "invalid_time"),
        (
            "/api/v1/tracking/sleep",
            json!({"start": "2027-01-14T23:00:00Z", "end": "2027-01-14T22:00:00Z"}),
            400,
            "invalid_time",
        ),
        (
            "/api/v1/tracking/sleep",
            json!({"start": "2027-01-14T00:00:00Z", "end": "2027-01-14T01:00:00Z", "deep_minutes": 200}),
            400,
            "invalid_value",
        ),
        ("/api/v1/tracking/mood", json!({"score": 9}), 400, "invalid_value"),
        ("/api/v1/tracking/mood", json!({"score": 3, "tags": ["<b>"]}), 400, "invalid_value"),
        ("/api/v1/tracking/exercise", json!({"duration_minutes": 30, "activity": "flying"}), 400, "invalid_value"),
        ("/api/v1/tracking/food", json!({"meal": "lunch"}), 400, "missing_field"),
        ("/api/v1/tracking/food", json!({"description": "tea", "energy_kcal": -5}), 400, "invalid_value"),
        ("/api/v1/meditation/sessions", json!({"technique": "breathing"}), 400, "missing_field"),
        ("/api/v1/tracking/meditation", json!({"duration_minutes": 10}), 404, "unknown_kind"),
        ("/api/v1/tracking/steps", json!({"value": 10}), 404, "unknown_kind"),
        ("/api/v1/tracking/water", json!({"patient": "none-such", "volume_ml": 250}), 404, "not_found"),
    ];
    for (path, body, status, code) in cases {
        let (s, v) = call(&t, &a, Method::POST, path, Some(body.clone())).await;
        assert_eq!((s, v["error"]["code"].as_str()), (status, Some(code)), "{path} {body}: {v}");
    }
    let (s, v) = call(&t, &a, Method::POST, "/api/v1/tracking/water", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_body")), "{v}");
    for q in ["from=soon", "from=2027-01-10&to=2027-01-01", "count=0", "count=500", "colour=red", "cursor=garbage"] {
        let (s, v) = call(&t, &a, Method::GET, &format!("/api/v1/tracking/water?{q}"), None).await;
        assert_eq!(s, 400, "{q}: {v}");
        assert!(["invalid_range", "invalid_query"].contains(&v["error"]["code"].as_str().unwrap()), "{q}: {v}");
    }
    let (s, v) = call(&t, &t.client, Method::GET, "/api/v1/tracking/water", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("patient_required")), "{v}");
    let (s, _) = call(&t, &t.anonymous(), Method::GET, "/api/v1/tracking/water", None).await;
    assert_eq!(s, 401);
    let (_, all) =
        call(&t, &t.client, Method::GET, &format!("/fhir/Observation?patient={pa}&_summary=count"), None).await;
    assert_eq!(all["total"], 0, "a refused entry writes nothing: {all}");
}

#[tokio::test]
async fn caregivers_and_clinicians_log_and_read_another_patient_does_not() {
    let t = TestApp::spawn().await;
    let (pa, _, a) = patient_account(&t, "Cared").await;
    let (_, _, b) = patient_account(&t, "Stranger").await;
    let carer = caregiver_of(&t, &pa).await;
    let (_, doc) = account(&t.app, "clinician", None, true).await;
    let v = post(&t, &carer, "/api/v1/tracking/water", json!({"patient": pa, "volume_ml": 300})).await;
    assert_eq!(v["volume_ml"].as_f64(), Some(300.0));
    post(&t, &doc, "/api/v1/meditation/sessions", json!({"patient": pa, "duration_minutes": 10})).await;
    for c in [&a, &carer, &doc] {
        let (s, v) = call(&t, c, Method::GET, &format!("/api/v1/tracking/water?patient={pa}"), None).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["entries"].as_array().unwrap().len(), 1);
    }
    let (s, v) = call(&t, &a, Method::GET, "/api/v1/meditation/sessions", None).await;
    assert_eq!((s, v["entries"].as_array().map(Vec::len)), (200, Some(1)), "{v}");
    for (m, path, body) in [
        (Method::GET, format!("/api/v1/tracking/water?patient={pa}"), None),
        (Method::POST, "/api/v1/tracking/water".to_owned(), Some(json!({"patient": pa, "volume_ml": 100}))),
        (Method::GET, format!("/api/v1/goals?patient={pa}"), None),
        (Method::GET, format!("/api/v1/summaries/daily?patient={pa}"), None),
    ] {
        let (s, v) = call(&t, &b, m, &path, body).await;
        assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")), "{path}: {v}");
    }
    assert_eq!(fhir_count(&t, &pa, "http://loinc.org|105999-7").await, 1);
}

#[tokio::test]
async fn goals_count_progress_and_streaks_from_the_logs() {
    let t = TestApp::spawn().await;
    t.clock.set(at("2027-01-15T10:00:00Z"));
    let (pa, _, a) = patient_account(&t, "Goals").await;
    let (s, v) =
        call(&t, &a, Method::PUT, "/api/v1/notifications/preferences", Some(json!({"time_zone": "Asia/Kolkata"})))
            .await;
    assert_eq!(s, 200, "{v}");
    let goal =
        post(&t, &a, "/api/v1/goals", json!({"metric": "water_ml", "target": 1500, "description": "Drink 1.5 litres"}))
            .await;
    assert_eq!(
        (goal["value"].clone(), goal["met"].clone(), goal["streak"].clone()),
        (Value::Null, json!(false), json!(0))
    );
    let id = goal["id"].as_str().unwrap().to_owned();
    let energy =
        post(&t, &a, "/api/v1/goals", json!({"metric": "energy_kcal", "target": 2000, "direction": "at_most"})).await;
    assert_eq!(energy["direction"], "at_most");
    // 1500 mL on the 12th, 13th and 14th (India), 1000 mL on the 15th so far. 20:00Z on the 11th
    // is already the 12th in India.
    for (time, ml) in [
        ("2027-01-11T20:00:00Z", 1500),
        ("2027-01-13T05:00:00Z", 800),
        ("2027-01-13T09:00:00Z", 700),
        ("2027-01-14T05:00:00Z", 1600),
        ("2027-01-15T05:00:00Z", 1000),
    ] {
        post(&t, &a, "/api/v1/tracking/water", json!({"effective": time, "volume_ml": ml})).await;
    }
    post(&t, &a, "/api/v1/tracking/food", json!({"effective": "2027-01-15T05:00:00Z", "energy_kcal": 700})).await;
    let (s, v) = call(&t, &a, Method::GET, "/api/v1/goals", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["time_zone"], "Asia/Kolkata");
    let water = v["goals"].as_array().unwrap().iter().find(|g| g["id"] == id.as_str()).unwrap();
    assert_eq!(
        (
            water["date"].as_str(),
            water["value"].as_f64(),
            water["percent"].as_f64(),
            water["met"].as_bool(),
            water["streak"].as_u64()
        ),
        (Some("2027-01-15"), Some(1000.0), Some(66.7), Some(false), Some(3)),
        "{water}"
    );
    let (_, v) = call(&t, &a, Method::GET, "/api/v1/goals?date=2027-01-14", None).await;
    let water = v["goals"].as_array().unwrap().iter().find(|g| g["id"] == id.as_str()).unwrap();
    assert_eq!((water["met"].as_bool(), water["streak"].as_u64()), (Some(true), Some(3)), "{water}");
    let kcal = v["goals"].as_array().unwrap().iter().find(|g| g["metric"] == "energy_kcal").unwrap();
    assert_eq!(kcal["met"], false, "an at-most goal needs something logged that day: {kcal}");
    let (_, v) = call(&t, &a, Method::GET, "/api/v1/goals", None).await;
    let kcal = v["goals"].as_array().unwrap().iter().find(|g| g["metric"] == "energy_kcal").unwrap();
    assert_eq!((kcal["met"].as_bool(), kcal["streak"].as_u64()), (Some(true), Some(1)), "{kcal}");
    // A FHIR Goal, with its measure's code and the target as a quantity.
    let fhir = t.get(&format!("/fhir/Goal/{id}")).await.json();
    assert_valid_r4(&fhir);
    assert_eq!(fhir["target"][0]["measure"]["coding"][0]["code"], "105999-7");
    assert_eq!(fhir["target"][0]["detailQuantity"]["value"], 1500);
    assert_eq!(fhir["target"][0]["detailQuantity"]["comparator"], ">=");
    assert_eq!(fhir["subject"]["reference"], format!("Patient/{pa}"));
    for (body, code) in [
        (json!({"metric": "happiness", "target": 1}), "unknown_metric"),
        (json!({"metric": "steps", "target": 0}), "invalid_value"),
        (json!({"metric": "steps", "target": 100, "direction": "sideways"}), "invalid_value"),
        (json!({"metric": "steps"}), "invalid_body"),
    ] {
        let (s, v) = call(&t, &a, Method::POST, "/api/v1/goals", Some(body)).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some(code)), "{v}");
    }
    let (s, v) = call(&t, &a, Method::GET, "/api/v1/goals?date=15-01-2027", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_date")), "{v}");
}

/// A patient in India with 14 days of baseline before 14 January 2027 and a full day on it.
async fn a_day_of_data(t: &TestApp, a: &reqwest::Client, pa: &str) {
    for d in 1..=13 {
        let day = format!("2027-01-{d:02}");
        post(t, a, "/api/v1/tracking/water", json!({"effective": format!("{day}T10:00:00+05:30"), "volume_ml": 2000}))
            .await;
        post(
            t,
            a,
            "/api/v1/tracking/sleep",
            json!({"start": format!("{day}T00:00:00+05:30"), "end": format!("{day}T07:00:00+05:30")}),
        )
        .await;
    }
    let d = "2027-01-14";
    for (time, ml) in [("08:00", 500), ("15:00", 500)] {
        post(t, a, "/api/v1/tracking/water", json!({"effective": format!("{d}T{time}:00+05:30"), "volume_ml": ml}))
            .await;
    }
    post(t, a, "/api/v1/tracking/sleep", json!({"start": "2027-01-13T23:00:00+05:30", "end": "2027-01-14T07:30:00+05:30", "deep_minutes": 100, "light_minutes": 300, "rem_minutes": 80, "awake_minutes": 30})).await;
    post(t, a, "/api/v1/tracking/exercise", json!({"effective": "2027-01-14T18:00:00+05:30", "activity": "walking", "duration_minutes": 30, "energy_kcal": 150})).await;
    post(
        t,
        a,
        "/api/v1/tracking/mood",
        json!({"effective": "2027-01-14T09:00:00+05:30", "score": 4, "tags": ["calm"]}),
    )
    .await;
    post(
        t,
        a,
        "/api/v1/tracking/mood",
        json!({"effective": "2027-01-14T21:00:00+05:30", "score": 3, "tags": ["tired", "calm"]}),
    )
    .await;
    post(
        t,
        a,
        "/api/v1/meditation/sessions",
        json!({"effective": "2027-01-14T06:45:00+05:30", "duration_minutes": 15, "technique": "breathing"}),
    )
    .await;
    post(t, a, "/api/v1/tracking/food", json!({"effective": "2027-01-14T13:00:00+05:30", "description": "dal and rice", "energy_kcal": 520, "carbohydrate_g": 80, "protein_g": 18, "fat_g": 12})).await;
    post(
        t,
        a,
        "/api/v1/tracking/food",
        json!({"effective": "2027-01-14T20:00:00+05:30", "description": "roti and sabzi", "energy_kcal": 480}),
    )
    .await;
    // The day is India's: 00:10 on the 15th (the 14th in UTC) is not in it, 00:10 on the 14th
    // (the 13th in UTC) is.
    post(t, a, "/api/v1/tracking/water", json!({"effective": "2027-01-15T00:10:00+05:30", "volume_ml": 400})).await;
    post(t, a, "/api/v1/tracking/water", json!({"effective": "2027-01-14T00:10:00+05:30", "volume_ml": 100})).await;
    // Vital signs and steps through self-care's API, doses and an alert as FHIR resources.
    let (s, v) = call(
        t,
        a,
        Method::POST,
        "/api/v1/health/vitals",
        Some(json!({"readings": [
            {"kind": "heart_rate", "value": 70, "effective": "2027-01-14T08:00:00+05:30"},
            {"kind": "heart_rate", "value": 80, "effective": "2027-01-14T20:00:00+05:30"},
            {"kind": "blood_pressure", "systolic": 124, "diastolic": 82, "effective": "2027-01-14T08:00:00+05:30"},
            {"kind": "steps", "value": 6500, "effective": "2027-01-14T22:00:00+05:30"},
            {"kind": "heart_rate", "value": 90, "effective": "2027-01-15T00:20:00+05:30"}
        ]})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    for (status, time) in [("completed", "08:05"), ("completed", "20:05"), ("not-done", "14:00")] {
        t.create(&json!({"resourceType": "MedicationAdministration", "status": status,
            "medicationCodeableConcept": {"text": "Metformin 500 mg"}, "subject": {"reference": format!("Patient/{pa}")},
            "effectiveDateTime": format!("2027-01-14T{time}:00+05:30")}))
            .await;
    }
    t.create(&json!({"resourceType": "Flag", "status": "active", "code": {"text": "NEWS2 5"},
        "subject": {"reference": format!("Patient/{pa}")}, "period": {"start": "2027-01-14T08:01:00+05:30"}}))
        .await;
    t.create(&json!({"resourceType": "Flag", "status": "active", "code": {"text": "older"},
        "subject": {"reference": format!("Patient/{pa}")}, "period": {"start": "2027-01-10T08:01:00+05:30"}}))
        .await;
    post(t, a, "/api/v1/goals", json!({"metric": "water_ml", "target": 1500, "description": "1.5 L of water"})).await;
    post(t, a, "/api/v1/goals", json!({"metric": "sleep_minutes", "target": 420, "description": "7 hours of sleep"}))
        .await;
}

#[tokio::test]
async fn a_fixed_day_is_summarised_field_by_field_in_english_and_hindi_and_sent_once_at_local_time() {
    let t = TestApp::spawn_with(|c| c.notify.worker = false).await;
    t.clock.set(at("2027-01-15T00:30:00Z"));
    let (pa, _, a) = patient_account(&t, "Summary").await;
    let (s, v) = call(
        &t,
        &a,
        Method::PUT,
        "/api/v1/notifications/preferences",
        Some(json!({"time_zone": "Asia/Kolkata", "language": "hi"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    a_day_of_data(&t, &a, &pa).await;

    let (s, en) = call(&t, &a, Method::GET, "/api/v1/summaries/daily?date=2027-01-14&lang=en", None).await;
    assert_eq!(s, 200, "{en}");
    assert_eq!(en["patient"], pa.as_str());
    assert_eq!(en["date"], "2027-01-14");
    assert_eq!(en["language"], "en");
    assert_eq!(en["time_zone"], "Asia/Kolkata");
    assert_eq!(en["title"], "Your daily summary for 2027-01-14");
    assert_eq!(
        en["figures"],
        json!({
            "vitals": [
                {"code": "8867-4", "name": "Heart rate", "unit": "/min", "count": 2, "min": 70.0, "max": 80.0, "mean": 75.0},
                {"code": "8480-6", "name": "Systolic blood pressure", "unit": "mm[Hg]", "count": 1, "min": 124.0, "max": 124.0, "mean": 124.0},
                {"code": "8462-4", "name": "Diastolic blood pressure", "unit": "mm[Hg]", "count": 1, "min": 82.0, "max": 82.0, "mean": 82.0}
            ],
            "alerts": 1, "doses_taken": 2, "doses_skipped": 1,
            "steps": 6500.0, "exercise_minutes": 30.0, "exercise_sessions": 1, "active_energy_kcal": 150.0,
            "sleep_minutes": 480.0, "deep_sleep_minutes": 100.0, "light_sleep_minutes": 300.0, "rem_sleep_minutes": 80.0, "awake_minutes": 30.0,
            "water_ml": 1100.0, "water_entries": 3,
            "mood": 3.5, "mood_entries": 2, "mood_tags": ["calm", "tired"],
            "meditation_minutes": 15.0, "meditation_sessions": 1,
            "food_entries": 2, "energy_kcal": 1000.0, "carbohydrate_g": 80.0, "protein_g": 18.0, "fat_g": 12.0
        })
    );
    let goals = en["goals"].as_array().unwrap();
    let goal = |metric: &str| goals.iter().find(|g| g["metric"] == metric).unwrap().clone();
    assert_eq!((goal("water_ml")["met"].clone(), goal("water_ml")["streak"].clone()), (json!(false), json!(0)));
    assert_eq!(
        (goal("sleep_minutes")["met"].clone(), goal("sleep_minutes")["streak"].clone()),
        (json!(true), json!(14))
    );
    // Sleep is 14% above its baseline (under the 15% rule); water 45% below (the 20% rule).
    assert_eq!(
        en["insights"],
        json!([
            {"code": "water_ml_below_baseline", "text": "Water (mL): 1100, 45% below your usual 2000 (last 14 days)."},
            {"code": "goal_missed", "text": "Goal not met: 1.5 L of water (1100 of 1500)."},
            {"code": "goal_met", "text": "Goal met: 7 hours of sleep. Streak: 14 day(s)."}
        ])
    );
    let sections = |v: &Value| -> Vec<(String, String, String)> {
        v["sections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["code"].as_str().unwrap().to_owned(),
                    s["title"].as_str().unwrap().to_owned(),
                    s["text"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let expect = |rows: &[(&str, &str, &str)]| -> Vec<(String, String, String)> {
        rows.iter().map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned())).collect()
    };
    assert_eq!(
        sections(&en),
        expect(&[
            (
                "vitals",
                "Vital signs",
                "Heart rate: 75 /min on average (2 reading(s), 70 to 80)\nSystolic blood pressure: 124 mmHg on average (1 reading(s), 124 to 124)\nDiastolic blood pressure: 82 mmHg on average (1 reading(s), 82 to 82)"
            ),
            ("alerts", "Alerts", "1 alert(s) were raised."),
            ("doses", "Medicines", "Doses taken: 2. Doses skipped: 1."),
            ("activity", "Activity", "Steps: 6500. Exercise: 30 min in 1 session(s)."),
            ("sleep", "Sleep", "Slept 8 h 0 min."),
            ("water", "Water", "Drank 1100 mL."),
            ("mood", "Mood", "Mood 3.5 out of 5 on average (2 check-in(s))."),
            ("meditation", "Meditation", "Meditated 15 min in 1 session(s)."),
            ("food", "Food", "2 entry(ies), 1000 kcal."),
            (
                "insights",
                "Insights",
                "Water (mL): 1100, 45% below your usual 2000 (last 14 days).\nGoal not met: 1.5 L of water (1100 of 1500).\nGoal met: 7 hours of sleep. Streak: 14 day(s)."
            ),
        ])
    );
    assert!(en["composition"].is_null(), "nothing stored before the planner: {en}");

    // The same day in Hindi (the patient's language, the default): the same figures, Hindi words.
    let (s, hi) = call(&t, &a, Method::GET, "/api/v1/summaries/daily?date=2027-01-14", None).await;
    assert_eq!(s, 200, "{hi}");
    assert_eq!(hi["language"], "hi");
    assert_eq!(hi["title"], "2027-01-14 का आपका दैनिक सारांश");
    let mut figures_en = en["figures"].clone();
    for (i, name) in ["हृदय गति", "सिस्टोलिक रक्तचाप", "डायस्टोलिक रक्तचाप"].iter().enumerate()
    {
        figures_en["vitals"][i]["name"] = json!(name);
    }
    assert_eq!(hi["figures"], figures_en);
    assert_eq!(hi["goals"], en["goals"]);
    assert_eq!(
        sections(&hi),
        expect(&[
            (
                "vitals",
                "महत्वपूर्ण संकेत",
                "हृदय गति: औसत 75 /min (2 रीडिंग, 70 से 80)\nसिस्टोलिक रक्तचाप: औसत 124 mmHg (1 रीडिंग, 124 से 124)\nडायस्टोलिक रक्तचाप: औसत 82 mmHg (1 रीडिंग, 82 से 82)"
            ),
            ("alerts", "चेतावनियाँ", "1 चेतावनी दी गई।"),
            ("doses", "दवाएँ", "ली गई खुराकें: 2। छोड़ी गई खुराकें: 1।"),
            ("activity", "गतिविधि", "कदम: 6500। व्यायाम: 1 सत्र में 30 मिनट।"),
            ("sleep", "नींद", "8 घंटे 0 मिनट सोए।"),
            ("water", "पानी", "1100 मि.ली. पानी पिया।"),
            ("mood", "मनोदशा", "औसत मनोदशा 5 में से 3.5 (2 बार दर्ज)।"),
            ("meditation", "ध्यान", "1 सत्र में 15 मिनट ध्यान किया।"),
            ("food", "भोजन", "2 प्रविष्टि, 1000 किलो कैलोरी।"),
            (
                "insights",
                "सुझाव",
                "पानी (मि.ली.): 1100, आपके सामान्य 2000 से 45% कम (पिछले 14 दिन)।\nलक्ष्य पूरा नहीं हुआ: 1.5 L of water (1500 में से 1100)।\nलक्ष्य पूरा: 7 hours of sleep। लगातार 14 दिन।"
            ),
        ])
    );

    // The planner: not before 07:00 in India (01:30Z), then once.
    let wellness = hearth_wellness::Wellness::new(
        std::sync::Arc::clone(t.app.ctx()),
        t.app.config.wellness.clone(),
        std::sync::Arc::clone(&t.app.notify),
    );
    let planned = hearth_wellness::plan(&wellness, at("2027-01-15T01:29:00Z")).await.unwrap();
    assert_eq!(planned.written, 0);
    let planned = hearth_wellness::plan(&wellness, at("2027-01-15T01:30:00Z")).await.unwrap();
    assert_eq!(planned.written, 1);
    assert_eq!(hearth_wellness::plan(&wellness, at("2027-01-15T01:45:00Z")).await.unwrap().written, 0);
    t.clock.set(at("2027-01-15T01:31:00Z"));
    let (_, hi) = call(&t, &a, Method::GET, "/api/v1/summaries/daily?date=2027-01-14", None).await;
    let id = hi["composition"].as_str().expect("the stored Composition").to_owned();
    let comp = t.get(&format!("/fhir/Composition/{id}")).await.json();
    assert_valid_r4(&comp);
    assert_eq!(comp["language"], "hi");
    assert_eq!(comp["subject"]["reference"], format!("Patient/{pa}"));
    assert_eq!(comp["title"], "2027-01-14 का आपका दैनिक सारांश");
    assert_eq!(comp["section"].as_array().unwrap().len(), 10);
    assert_eq!(comp["section"][4]["title"], "नींद");
    assert_eq!(
        comp["section"][4]["text"]["div"],
        "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>8 घंटे 0 मिनट सोए।</p></div>"
    );
    let (_, found) =
        call(&t, &t.client, Method::GET, &format!("/fhir/Composition?patient={pa}&_summary=count"), None).await;
    assert_eq!(found["total"], 1, "{found}");

    // Delivered by the notification worker: an e-mail in Hindi and an in-app notice, once.
    for _ in 0..3 {
        hearth_server::notify::worker::run_once(&t.app.notifications, "wellness-test").await.unwrap();
    }
    let mails: Vec<_> = t.outbox.messages().into_iter().filter(|m| m.subject.contains("दैनिक सारांश")).collect();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].subject, "2027-01-14 का आपका दैनिक सारांश");
    assert!(mails[0].text.contains("नींद\n8 घंटे 0 मिनट सोए।"), "{}", mails[0].text);
    assert!(mails[0].text.contains("पानी\n1100 मि.ली. पानी पिया।"), "{}", mails[0].text);
    let (s, inbox) = call(&t, &a, Method::GET, "/api/v1/notifications", None).await;
    assert_eq!(s, 200, "{inbox}");
    let notes: Vec<&Value> =
        inbox["notifications"].as_array().unwrap().iter().filter(|n| n.to_string().contains("दैनिक सारांश")).collect();
    assert_eq!(notes.len(), 1, "{inbox}");

    // The next day's comes the next morning, not before.
    assert_eq!(hearth_wellness::plan(&wellness, at("2027-01-16T01:00:00Z")).await.unwrap().written, 0);
    assert_eq!(hearth_wellness::plan(&wellness, at("2027-01-16T01:30:00Z")).await.unwrap().written, 1);
}

#[tokio::test]
async fn summary_settings_choose_the_time_and_are_checked() {
    let t = TestApp::spawn_with(|c| c.notify.worker = false).await;
    let (pa, _, a) = patient_account(&t, "Settings").await;
    let (s, v) =
        call(&t, &a, Method::PUT, "/api/v1/notifications/preferences", Some(json!({"time_zone": "UTC"}))).await;
    assert_eq!(s, 200, "{v}");
    let (_, doc) = account(&t.app, "clinician", None, true).await;
    let (s, v) = call(&t, &a, Method::GET, "/api/v1/summaries/settings", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["time"].as_str(), v["chosen"].as_bool(), v["enabled"].as_bool()),
        (Some("07:00"), Some(false), Some(true))
    );
    let (s, v) = call(&t, &a, Method::PUT, "/api/v1/summaries/settings", Some(json!({"time": "21:15"}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["time"].as_str(), v["chosen"].as_bool(), v["time_zone"].as_str()),
        (Some("21:15"), Some(true), Some("UTC"))
    );
    for body in [json!({"time": "25:00"}), json!({"time": "7:00"}), json!({"time": "07:00", "colour": "red"})] {
        let (s, v) = call(&t, &a, Method::PUT, "/api/v1/summaries/settings", Some(body)).await;
        assert_eq!(s, 400, "{v}");
    }
    let (s, v) =
        call(&t, &doc, Method::PUT, "/api/v1/summaries/settings", Some(json!({"patient": pa, "time": "08:00"}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")), "{v}");
    // Sent at 21:15 UTC: nothing at 21:14, the day before at 21:15.
    let wellness = hearth_wellness::Wellness::new(
        std::sync::Arc::clone(t.app.ctx()),
        t.app.config.wellness.clone(),
        std::sync::Arc::clone(&t.app.notify),
    );
    assert_eq!(hearth_wellness::plan(&wellness, at("2027-01-15T21:14:00Z")).await.unwrap().written, 0);
    assert_eq!(hearth_wellness::plan(&wellness, at("2027-01-15T21:15:00Z")).await.unwrap().written, 1);
    let (_, v) = call(&t, &a, Method::GET, "/api/v1/summaries/settings", None).await;
    assert_eq!(v["last_day"], "2027-01-14");
    // Turned off: nothing more.
    let (s, _) =
        call(&t, &a, Method::PUT, "/api/v1/summaries/settings", Some(json!({"time": "21:15", "enabled": false}))).await;
    assert_eq!(s, 200);
    assert_eq!(hearth_wellness::plan(&wellness, at("2027-01-16T21:15:00Z")).await.unwrap().written, 0);
}

/// The answers are what `/api/openapi.json` says they are.
#[tokio::test]
async fn the_answers_match_their_documented_schemas() {
    let t = TestApp::spawn_with(|c| c.notify.worker = false).await;
    t.clock.set(at("2027-01-15T00:30:00Z"));
    let (pa, _, a) = patient_account(&t, "Described").await;
    a_day_of_data(&t, &a, &pa).await;
    let spec = t.get("/api/openapi.json").await.json();
    let mut checked = Vec::new();
    let check = |method: &str, path: &str, status: u16, body: &Value, checked: &mut Vec<String>| {
        let schema = hearth_server::workflow::openapi::answer_schema(&spec, method, path, status)
            .unwrap_or_else(|| panic!("{method} {path} documents no JSON answer {status}"));
        let problems = hearth_server::workflow::openapi::mismatches(body, schema, &spec);
        assert!(problems.is_empty(), "{method} {path} {status}: {problems:?}\n{body}");
        checked.push(path.to_owned());
    };
    for kind in ["food", "water", "sleep", "exercise", "mood"] {
        let (s, v) = call(&t, &a, Method::GET, &format!("/api/v1/tracking/{kind}?count=1"), None).await;
        assert_eq!(s, 200, "{v}");
        check("get", "/api/v1/tracking/{kind}", 200, &v, &mut checked);
        check("post", "/api/v1/tracking/{kind}", 201, &v["entries"][0], &mut checked);
    }
    let (_, v) = call(&t, &a, Method::GET, "/api/v1/meditation/sessions", None).await;
    check("get", "/api/v1/meditation/sessions", 200, &v, &mut checked);
    let v = post(&t, &a, "/api/v1/meditation/sessions", json!({"duration_minutes": 5})).await;
    check("post", "/api/v1/meditation/sessions", 201, &v, &mut checked);
    let v = post(&t, &a, "/api/v1/goals", json!({"metric": "steps", "target": 8000})).await;
    check("post", "/api/v1/goals", 201, &v, &mut checked);
    let (_, v) = call(&t, &a, Method::GET, "/api/v1/goals", None).await;
    check("get", "/api/v1/goals", 200, &v, &mut checked);
    let (_, v) = call(&t, &a, Method::GET, "/api/v1/summaries/daily?date=2027-01-14", None).await;
    check("get", "/api/v1/summaries/daily", 200, &v, &mut checked);
    let (_, v) = call(&t, &a, Method::GET, "/api/v1/summaries/settings", None).await;
    check("get", "/api/v1/summaries/settings", 200, &v, &mut checked);
    let (_, v) = call(&t, &a, Method::PUT, "/api/v1/summaries/settings", Some(json!({"time": "06:00"}))).await;
    check("put", "/api/v1/summaries/settings", 200, &v, &mut checked);
    let v = post(&t, &a, "/api/v1/chat/message", json!({"text": "mujhe seene mein tez dard ho raha hai"})).await;
    check("post", "/api/v1/chat/message", 201, &v, &mut checked);
    let (_, v) = call(&t, &a, Method::POST, "/api/v1/chat/read", Some(json!({}))).await;
    check("post", "/api/v1/chat/read", 200, &v, &mut checked);
    let (_, v) = call(&t, &a, Method::GET, "/api/v1/chat/history", None).await;
    check("get", "/api/v1/chat/history", 200, &v, &mut checked);
    assert_eq!(checked.len(), 20);
}

use crate::common::Ws;

async fn chat_socket(t: &TestApp, patient: &str, token: &str) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("{}/api/v1/chat/ws?patient={patient}", t.addr.replace("http://", "ws://"));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

/// The next JSON text frame (the timeout only keeps a broken server from hanging the suite).
async fn next_frame(ws: &mut Ws) -> Value {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let m = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next()).await.expect("a frame");
        match m {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(t.as_str()).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("not a text frame: {other:?}"),
        }
    }
}

#[tokio::test]
async fn chat_is_delivered_live_with_read_receipts_and_an_emergency_in_each_language_alerts_the_team() {
    use crate::common::{patient, seed_account};
    let t = TestApp::spawn_with(|c| c.notify.worker = false).await;
    let doc_p = t.create(&json!({"resourceType": "Practitioner", "name": [{"family": "Iyer"}]})).await;
    let mut body = patient("Chatty");
    body["generalPractitioner"] = json!([{"reference": format!("Practitioner/{doc_p}")}]);
    let pa = t.create(&body).await;
    let a_token =
        seed_account(&t.app, "chat-patient", "patient", Some(format!("Patient/{pa}")), Some("p@example.org".into()))
            .await;
    let doc_token = seed_account(
        &t.app,
        "chat-doc",
        "clinician",
        Some(format!("Practitioner/{doc_p}")),
        Some("d@example.org".into()),
    )
    .await;
    let bearer = |token: &str| {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        reqwest::Client::builder().default_headers(h).build().unwrap()
    };
    let (a, doc) = (bearer(&a_token), bearer(&doc_token));
    let (_, _, b) = patient_account(&t, "Outsider").await;
    let mut doc_ws = chat_socket(&t, &pa, &doc_token).await;
    let mut a_ws = chat_socket(&t, &pa, &a_token).await;

    // An ordinary message: stored as a Communication, delivered live to both sockets.
    t.clock.set(at("2027-01-15T04:00:00Z"));
    let sent = post(&t, &a, "/api/v1/chat/message", json!({"text": "My sugar was 180 this morning"})).await;
    assert_eq!((sent["emergency"].as_bool(), sent["team_alerted"].as_u64()), (Some(false), Some(0)), "{sent}");
    let id = sent["message"]["id"].as_str().unwrap().to_owned();
    let frame = next_frame(&mut doc_ws).await;
    assert_eq!(
        (frame["type"].as_str(), frame["message"]["id"].as_str()),
        (Some("message"), Some(id.as_str())),
        "{frame}"
    );
    assert_eq!(frame["message"]["text"], "My sugar was 180 this morning");
    assert_eq!(frame["message"]["sender"], format!("Patient/{pa}"));
    assert_eq!(next_frame(&mut a_ws).await["message"]["id"], id.as_str());
    let comm = t.get(&format!("/fhir/Communication/{id}")).await.json();
    assert_valid_r4(&comm);
    assert_eq!(comm["subject"]["reference"], format!("Patient/{pa}"));
    assert_eq!(comm["payload"][0]["contentString"], "My sugar was 180 this morning");

    // The nurse reads it: the receipt reaches the patient's socket, and the history shows it.
    t.clock.set(at("2027-01-15T04:01:00Z"));
    let (s, receipt) = call(&t, &doc, Method::POST, "/api/v1/chat/read", Some(json!({"patient": pa}))).await;
    assert_eq!(s, 200, "{receipt}");
    let frame = next_frame(&mut a_ws).await;
    assert_eq!(
        frame,
        json!({"type": "read", "reader": {"account": "chat-doc", "role": "clinician", "at": "2027-01-15T04:01:00.000Z"}})
    );
    assert_eq!(next_frame(&mut doc_ws).await["type"], "read", "the reader's own sockets hear it too");
    let (s, h) = call(&t, &a, Method::GET, "/api/v1/chat/history", None).await;
    assert_eq!(s, 200, "{h}");
    assert_eq!(
        h["messages"][0]["read_by"],
        json!([{"account": "chat-doc", "role": "clinician", "at": "2027-01-15T04:01:00.000Z"}])
    );
    // A reply after the read is not read by anyone yet; the writer never counts as a reader.
    t.clock.set(at("2027-01-15T04:02:00Z"));
    let reply = post(
        &t,
        &doc,
        "/api/v1/chat/message",
        json!({"patient": pa, "text": "Thanks, that is a little high. Any chest pain?"}),
    )
    .await;
    assert_eq!(reply["emergency"], false, "the care team's words are not screened: {reply}");
    assert_eq!(next_frame(&mut a_ws).await["message"]["id"], reply["message"]["id"]);
    assert_eq!(next_frame(&mut doc_ws).await["message"]["id"], reply["message"]["id"]);
    let (_, h) = call(&t, &doc, Method::GET, &format!("/api/v1/chat/history?patient={pa}"), None).await;
    let texts: Vec<&str> = h["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["Thanks, that is a little high. Any chest pain?", "My sugar was 180 this morning"]);
    assert_eq!(h["messages"][0]["read_by"], json!([]));

    // An emergency in each language: answered at once with the guidance in that language, the
    // care team (the patient's general practitioner) alerted through the outbox.
    for (i, (text, guidance)) in [
        ("I have crushing chest pain and I am sweating", "Call 112 now"),
        ("मुझे सीने में तेज़ दर्द हो रहा है और पसीना आ रहा है", "अभी 112 पर कॉल करें"),
        ("mujhe seene mein tez dard ho raha hai aur pasina aa raha hai", "Abhi 112 par call karein"),
    ]
    .iter()
    .enumerate()
    {
        t.clock.set(at(&format!("2027-01-15T05:0{i}:00Z")));
        let sent = post(&t, &a, "/api/v1/chat/message", json!({"text": text})).await;
        assert_eq!(
            (sent["emergency"].as_bool(), sent["team_alerted"].as_u64()),
            (Some(true), Some(1)),
            "{text}: {sent}"
        );
        assert_eq!(sent["message"]["priority"], "stat");
        let g = &sent["guidance"];
        assert!(g["text"].as_str().unwrap().contains(guidance), "{g}");
        assert_eq!(
            (g["sender_role"].as_str(), g["in_response_to"].as_str()),
            (Some("hearth"), sent["message"]["id"].as_str())
        );
        let mid = sent["message"]["id"].as_str().unwrap();
        let rows = hearth_store_sql::notify::by_key(&*t.app.ctx().db, &format!("chat-emergency:{mid}:chat-doc"))
            .await
            .unwrap();
        assert!(!rows.is_empty(), "the care team is alerted");
        assert!(rows.iter().all(|r| r.category == "emergency" && r.template == "emergency-alert"), "{rows:?}");
        assert!(rows.iter().all(|r| !r.args.contains("seene") && !r.args.contains("chest")), "no words in the alert");
        // Both the message and the guidance arrive live.
        let first = next_frame(&mut doc_ws).await;
        let second = next_frame(&mut doc_ws).await;
        assert_eq!((first["message"]["id"].as_str(), second["message"]["id"].as_str()), (Some(mid), g["id"].as_str()));
        next_frame(&mut a_ws).await;
        next_frame(&mut a_ws).await;
    }
    let hindi = &call(&t, &a, Method::GET, "/api/v1/chat/history?count=2", None).await.1["messages"][0];
    assert_eq!(hindi["sender_role"], "hearth");

    // Refusals: another patient reaches nothing, bad messages are refused and write nothing.
    let (s, v) = call(&t, &b, Method::GET, &format!("/api/v1/chat/history?patient={pa}"), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")), "{v}");
    let (s, v) = call(&t, &b, Method::POST, "/api/v1/chat/message", Some(json!({"patient": pa, "text": "hi"}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")), "{v}");
    for (body, code) in [
        (json!({"text": "  "}), "invalid_message"),
        (json!({"text": "x".repeat(2001)}), "invalid_message"),
        (json!({"text": "bell\u{0007}"}), "invalid_message"),
        (json!({"text": "hello", "language": "fr"}), "invalid_language"),
        (json!({"words": "hello"}), "invalid_body"),
    ] {
        let (s, v) = call(&t, &a, Method::POST, "/api/v1/chat/message", Some(body)).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some(code)), "{v}");
    }
    let (s, v) = call(&t, &a, Method::GET, "/api/v1/chat/ws", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (426, Some("upgrade_required")), "{v}");
    // A browser's socket: the token as the subprotocol, which the server accepts and echoes.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("{}/api/v1/chat/ws", t.addr.replace("http://", "ws://"));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("sec-websocket-protocol", format!("hearth.bearer, {a_token}").parse().unwrap());
    let (mut browser, answer) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(answer.headers()["sec-websocket-protocol"], "hearth.bearer");
    let (s, _) = call(&t, &doc, Method::POST, "/api/v1/chat/read", Some(json!({"patient": pa}))).await;
    assert_eq!(s, 200);
    assert_eq!(next_frame(&mut browser).await["reader"]["account"], "chat-doc");
    let mut req =
        format!("{}/api/v1/chat/ws?patient={pa}", t.addr.replace("http://", "ws://")).into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {}", "not-a-token").parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_err(), "no socket without a valid token");
    let (_, all) =
        call(&t, &t.client, Method::GET, &format!("/fhir/Communication?subject=Patient/{pa}&_summary=count"), None)
            .await;
    assert_eq!(all["total"], 8, "two ordinary messages, three emergencies and their guidance: {all}");
}
