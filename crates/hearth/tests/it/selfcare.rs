//! Self-care vitals (issue 18, item 1): recording one reading or a batch as FHIR vital-signs
//! Observations with unit conversion, refusal of impossible values (nothing written), flags on
//! implausible ones, duplicates from a re-sent batch, the latest per kind, the history raw and
//! aggregated, and who may record and read (the patient, their caregiver, a clinician; not
//! another patient).

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TestApp, assert_valid_r4};
use crate::scheduling::{account, call, patient_account};

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

fn batch() -> Value {
    json!({
        "device": {"manufacturer": "Omron", "model": "HEM-7120", "serial": "SN-1", "source_app": "Hearth app"},
        "readings": [
            {"kind": "blood_pressure", "systolic": 128, "diastolic": 84, "effective": "2026-12-07T08:00:00+05:30"},
            {"kind": "body_temperature", "value": 98.6, "unit": "[degF]", "effective": "2026-12-07T08:01:00+05:30"},
            {"kind": "blood_glucose", "value": 5.5, "unit": "mmol/L", "effective": "2026-12-07T08:02:00+05:30"},
            {"kind": "body_weight", "value": 154, "unit": "[lb_av]", "effective": "2026-12-07T08:03:00+05:30"},
            {"kind": "heart_rate", "value": 215, "effective": "2026-12-07T08:04:00+05:30"},
            {"kind": "spo2", "value": 97, "effective": "2026-12-07T08:04:00+05:30"}
        ]
    })
}

#[tokio::test]
async fn a_batch_is_stored_as_fhir_observations_converted_flagged_and_not_duplicated() {
    let t = TestApp::spawn().await;
    let (pa, _, a) = patient_account(&t, "Vitals").await;
    let (s, v) = call(&t, &a, Method::POST, "/api/v1/health/vitals", Some(batch())).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["patient"], pa.as_str());
    assert_eq!(v["created"], 6);
    assert_eq!(v["duplicates"], 0);
    let flagged: Vec<&str> = v["readings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["implausible"] == true)
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(flagged, ["heart_rate"]);

    // Stored as R4 Observations with LOINC codes and UCUM units in canonical units.
    let ids: Vec<String> =
        v["readings"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
    let paths: Vec<String> = ids.iter().map(|id| format!("/fhir/Observation/{id}")).collect();
    let bp = t.get(&paths[0]).await.json();
    assert_valid_r4(&bp);
    assert_eq!(bp["code"]["coding"][0]["code"], "85354-9");
    assert_eq!(bp["category"][0]["coding"][0]["code"], "vital-signs");
    assert_eq!(bp["component"][0]["code"]["coding"][0]["code"], "8480-6");
    assert_eq!(bp["component"][0]["valueQuantity"]["value"].as_f64(), Some(128.0));
    assert_eq!(bp["component"][1]["valueQuantity"]["code"], "mm[Hg]");
    assert_eq!(bp["component"][1]["valueQuantity"]["system"], "http://unitsofmeasure.org");
    assert_eq!(bp["subject"]["reference"], format!("Patient/{pa}"));
    // One Device resource per physical device, and a Provenance of the batch.
    let device_ref = bp["device"]["reference"].as_str().unwrap().to_owned();
    assert!(device_ref.starts_with("Device/dev-"), "{device_ref}");
    let device = t.get(&format!("/fhir/{device_ref}")).await.json();
    assert_valid_r4(&device);
    assert_eq!((device["manufacturer"].as_str(), device["serialNumber"].as_str()), (Some("Omron"), Some("SN-1")));
    assert_eq!(device["patient"]["reference"], format!("Patient/{pa}"));
    let (_, prov) =
        call(&t, &t.client, Method::GET, &format!("/fhir/Provenance?target=Observation/{}", ids[0]), None).await;
    assert_eq!(prov["total"], 1, "{prov}");
    let prov = &prov["entry"][0]["resource"];
    assert_valid_r4(prov);
    assert_eq!(prov["target"].as_array().unwrap().len(), 6);
    assert_eq!(prov["agent"][0]["who"]["reference"], device_ref.as_str());
    assert_eq!(prov["agent"][1]["who"]["reference"], format!("Patient/{pa}"));
    assert_eq!(bp["performer"][0]["reference"], format!("Patient/{pa}"));
    let temp = t.get(&paths[1]).await.json();
    assert_eq!(temp["code"]["coding"][0]["code"], "8310-5");
    assert_eq!(temp["valueQuantity"]["value"].as_f64(), Some(37.0));
    assert_eq!(temp["valueQuantity"]["code"], "Cel");
    let glucose = t.get(&paths[2]).await.json();
    assert_eq!(glucose["valueQuantity"]["value"].as_f64(), Some(99.08));
    assert_eq!(glucose["valueQuantity"]["code"], "mg/dL");
    let weight = t.get(&paths[3]).await.json();
    assert_eq!(weight["valueQuantity"]["value"].as_f64(), Some(69.85));
    let hr = t.get(&paths[4]).await.json();
    assert_valid_r4(&hr);
    assert_eq!(hr["meta"]["tag"][0]["code"], "implausible");

    // The same batch again (a device re-sending): nothing new.
    let (s, again) = call(&t, &a, Method::POST, "/api/v1/health/vitals", Some(batch())).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["created"], 0);
    assert_eq!(again["duplicates"], 6);
    let (_, found) =
        call(&t, &t.client, Method::GET, &format!("/fhir/Observation?subject=Patient/{pa}&_summary=count"), None).await;
    assert_eq!(found["total"], 6, "{found}");
    let (_, devices) =
        call(&t, &t.client, Method::GET, &format!("/fhir/Device?patient=Patient/{pa}&_summary=count"), None).await;
    assert_eq!(devices["total"], 1, "one Device for the same physical device: {devices}");

    // A reading whose Observation a clinician deleted is written again (as its next version)
    // when the device sends it again; the others stay duplicates.
    assert_eq!(t.delete(&paths[1]).await.status, 204);
    let (s, again) = call(&t, &a, Method::POST, "/api/v1/health/vitals", Some(batch())).await;
    assert_eq!(s, 201, "{again}");
    assert_eq!((again["created"].as_u64(), again["duplicates"].as_u64()), (Some(1), Some(5)));
    let temp = t.get(&paths[1]).await.json();
    assert_eq!(temp["meta"]["versionId"], "3", "{temp}");

    // The same reading twice in one batch is written once.
    let one = json!({"kind": "heart_rate", "value": 70, "effective": "2026-12-07T09:00:00Z"});
    let (s, v) = call(&t, &a, Method::POST, "/api/v1/health/vitals", Some(json!({"readings": [one, one]}))).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!((v["created"].as_u64(), v["duplicates"].as_u64()), (Some(1), Some(1)));
}

#[tokio::test]
async fn an_impossible_value_refuses_the_whole_batch_with_a_stable_code() {
    let t = TestApp::spawn().await;
    let (pa, _, a) = patient_account(&t, "Impossible").await;
    let mut b = batch();
    b["readings"]
        .as_array_mut()
        .unwrap()
        .push(json!({"kind": "spo2", "value": 104, "effective": "2026-12-07T08:05:00Z"}));
    let (s, v) = call(&t, &a, Method::POST, "/api/v1/health/vitals", Some(b)).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["code"], "impossible_value");
    assert!(v["error"]["message"].as_str().unwrap().starts_with("readings[6]"), "{v}");
    let cases = [
        (
            json!({"kind": "blood_pressure", "systolic": 80, "diastolic": 95, "effective": "2026-12-07T08:00:00Z"}),
            "impossible_value",
        ),
        (
            json!({"kind": "body_weight", "value": 70, "unit": "stone", "effective": "2026-12-07T08:00:00Z"}),
            "unknown_unit",
        ),
        (json!({"kind": "mood", "value": 3, "effective": "2026-12-07T08:00:00Z"}), "unknown_kind"),
        (json!({"kind": "heart_rate", "value": 70, "effective": "yesterday"}), "invalid_time"),
        (json!({"kind": "heart_rate", "effective": "2026-12-07T08:00:00Z"}), "invalid_value"),
    ];
    for (reading, code) in cases {
        let (s, v) = call(&t, &a, Method::POST, "/api/v1/health/vitals", Some(json!({"readings": [reading]}))).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some(code)), "{v}");
    }
    let (s, v) = call(&t, &a, Method::POST, "/api/v1/health/vitals", Some(json!({"readings": []}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("batch_size")));
    let (_, found) =
        call(&t, &t.client, Method::GET, &format!("/fhir/Observation?subject=Patient/{pa}&_summary=count"), None).await;
    assert_eq!(found["total"], 0, "nothing written: {found}");
}

#[tokio::test]
async fn latest_per_kind_and_history_raw_and_aggregated() {
    let t = TestApp::spawn().await;
    let (pa, _, a) = patient_account(&t, "History").await;
    let readings: Vec<Value> = [("08:10", 60), ("08:50", 80), ("09:05", 70)]
        .iter()
        .map(|(hm, v)| json!({"kind": "heart_rate", "value": v, "effective": format!("2026-12-06T{hm}:00Z")}))
        .chain([
            json!({"kind": "blood_pressure", "systolic": 120, "diastolic": 80, "effective": "2026-12-06T08:00:00Z"}),
            json!({"kind": "blood_pressure", "systolic": 140, "diastolic": 90, "effective": "2026-12-06T08:30:00Z"}),
        ])
        .collect();
    let (s, v) = call(&t, &a, Method::POST, "/api/v1/health/vitals", Some(json!({"readings": readings}))).await;
    assert_eq!(s, 201, "{v}");

    let (s, latest) = call(&t, &a, Method::GET, "/api/v1/health", None).await;
    assert_eq!(s, 200, "{latest}");
    let by_kind = |k: &str| latest["latest"].as_array().unwrap().iter().find(|l| l["kind"] == k).cloned().unwrap();
    assert_eq!(by_kind("heart_rate")["value"].as_f64(), Some(70.0));
    assert_eq!(by_kind("heart_rate")["unit"], "/min");
    assert_eq!(by_kind("blood_pressure")["systolic"].as_f64(), Some(140.0));
    assert_eq!(by_kind("blood_pressure")["diastolic"].as_f64(), Some(90.0));
    assert_eq!(latest["latest"].as_array().unwrap().len(), 2);

    let range = "from=2026-12-06T00:00:00Z&to=2026-12-07T00:00:00Z";
    let (s, raw) = call(&t, &a, Method::GET, &format!("/api/v1/health/history?kind=heart_rate&{range}"), None).await;
    assert_eq!(s, 200, "{raw}");
    let values: Vec<f64> =
        raw["series"][0]["buckets"].as_array().unwrap().iter().map(|b| b["mean"].as_f64().unwrap()).collect();
    assert_eq!(values, [60.0, 80.0, 70.0]);
    let (_, hourly) =
        call(&t, &a, Method::GET, &format!("/api/v1/health/history?kind=heart_rate&{range}&resolution=hour"), None)
            .await;
    let b = &hourly["series"][0]["buckets"];
    assert_eq!(b.as_array().unwrap().len(), 2, "{hourly}");
    assert_eq!(
        (
            b[0]["start"].as_str(),
            b[0]["min"].as_f64(),
            b[0]["mean"].as_f64(),
            b[0]["max"].as_f64(),
            b[0]["count"].as_u64()
        ),
        (Some("2026-12-06T08:00:00.000Z"), Some(60.0), Some(70.0), Some(80.0), Some(2))
    );
    let (_, daily) = call(
        &t,
        &a,
        Method::GET,
        &format!("/api/v1/health/history?patient={pa}&kind=blood_pressure&{range}&resolution=day"),
        None,
    )
    .await;
    assert_eq!(daily["series"][0]["kind"], "systolic_bp");
    assert_eq!(daily["series"][0]["buckets"][0]["mean"].as_f64(), Some(130.0));
    assert_eq!(daily["series"][1]["buckets"][0]["max"].as_f64(), Some(90.0));
    let (s, v) =
        call(&t, &a, Method::GET, "/api/v1/health/history?kind=heart_rate&from=2026-12-07&to=2026-12-06", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_range")));
    let (s, v) = call(&t, &a, Method::GET, "/api/v1/health/history?kind=systolic_bp", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("unknown_kind")));
}

#[tokio::test]
async fn the_patient_their_caregiver_and_a_clinician_may_record_and_read_another_patient_may_not() {
    let t = TestApp::spawn().await;
    let (pa, _, a) = patient_account(&t, "Owner").await;
    let (_, _, b) = patient_account(&t, "Stranger").await;
    let carer = caregiver_of(&t, &pa).await;
    let (_, doc) = crate::scheduling::clinician(&t, "Vitalsdoc").await;
    let reading = |v: u32| json!({"patient": pa, "readings": [{"kind": "heart_rate", "value": v, "effective": "2026-12-07T08:00:00Z"}]});
    for (who, c, v) in [("patient", &a, 70), ("caregiver", &carer, 71), ("clinician", &doc, 72)] {
        let (s, body) = call(&t, c, Method::POST, "/api/v1/health/vitals", Some(reading(v))).await;
        assert_eq!(s, 201, "{who}: {body}");
        let (s, body) = call(&t, c, Method::GET, &format!("/api/v1/health?patient={pa}"), None).await;
        assert_eq!(s, 200, "{who}: {body}");
    }
    let (s, _) = call(&t, &b, Method::POST, "/api/v1/health/vitals", Some(reading(73))).await;
    assert_eq!(s, 404);
    let (s, _) = call(&t, &b, Method::GET, &format!("/api/v1/health?patient={pa}"), None).await;
    assert_eq!(s, 404);
    let (s, _) = call(&t, &b, Method::GET, &format!("/api/v1/health/history?patient={pa}&kind=heart_rate"), None).await;
    assert_eq!(s, 404);
    let (s, v) = call(&t, &doc, Method::GET, "/api/v1/health", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("patient_required")));
    let (s, _) = call(&t, &t.anonymous(), Method::GET, "/api/v1/health", None).await;
    assert_eq!(s, 401);
}
