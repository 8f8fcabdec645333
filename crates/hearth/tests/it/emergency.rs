//! Emergency (issue 18, item 5): contacts as RelatedPersons; the emergency alert reaching every
//! contact through a real local SMS peer (Twilio protocol) and the care team in-app, at
//! critical priority, with a map link and the nearest facilities; a second press sending
//! nothing again; "I am safe" telling everyone; FHIR `near` on Location (distance, units,
//! refusals); and who may do what (a caregiver only for the patients they are linked to).

use std::sync::Arc;

use hearth_notify::ChannelKind;
use hearth_server::{App, Clock};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TestApp, patient};
use crate::notify_peers::eventually;
use crate::phone::{Log, with_sms_peer};
use crate::scheduling::{account, call, clinician, patient_account};

const HERE: (f64, f64) = (28.6139, 77.2090);

async fn drain(app: &Arc<App>) {
    while hearth_server::notify::worker::run_once(&app.notifications, "emergency-test-worker").await.unwrap() > 0 {}
}

fn location(name: &str, lat: f64, lon: f64) -> Value {
    json!({"resourceType": "Location", "status": "active", "name": name,
        "telecom": [{"system": "phone", "value": "+911100000000"}],
        "address": {"line": ["1 Test Road"], "city": "Delhi"},
        "position": {"latitude": lat, "longitude": lon}})
}

/// Three facilities around `HERE`: ~0.8 km, ~13.6 km and Mumbai (~1,150 km); and one without a
/// position. Their ids (near, mid, far).
async fn facilities(t: &TestApp) -> (String, String, String) {
    let near = t.create(&location("Near Clinic", 28.62, 77.215)).await;
    let mid = t.create(&location("Mid Hospital", 28.70, 77.10)).await;
    let far = t.create(&location("Far Hospital", 19.076, 72.8777)).await;
    t.create(&json!({"resourceType": "Location", "status": "active", "name": "Nowhere"})).await;
    (near, mid, far)
}

async fn caregiver_of(t: &TestApp, patient: &str) -> (String, reqwest::Client) {
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
    (id, c)
}

fn sms_to(log: &Log, to: &str) -> Vec<String> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|m| m.form_value("To").as_deref() == Some(to))
        .filter_map(|m| m.form_value("Body"))
        .collect()
}

async fn rows_with_prefix(t: &TestApp, prefix: &str) -> Vec<hearth_store_sql::notify::OutboxRow> {
    hearth_store_sql::notify::list_by_status(&*t.app.db, None, 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.idem_key.starts_with(prefix))
        .collect()
}

#[tokio::test]
async fn an_alert_reaches_every_contact_by_sms_and_the_care_team_once_and_cancel_tells_them() {
    let (t, log) = with_sms_peer().await;
    let (gp, _) = clinician(&t, "Team").await;
    let gp_accounts = hearth_store_sql::identity::accounts_of(&*t.app.db, &format!("Practitioner/{gp}")).await.unwrap();
    let mut p = patient("Alert");
    p["name"][0]["given"] = json!(["Meera"]);
    p["generalPractitioner"] = json!([{"reference": format!("Practitioner/{gp}")}]);
    let pa = t.create(&p).await;
    let (_, a) = account(&t.app, "patient", Some(format!("Patient/{pa}")), true).await;
    let (carer_id, _) = caregiver_of(&t, &pa).await;
    let (near, mid, _far) = facilities(&t).await;

    let phones = ["+919800000001", "+919800000002"];
    for (phone, rel) in phones.iter().zip(["sister", "neighbour"]) {
        let (s, v) = call(
            &t,
            &a,
            Method::POST,
            "/api/v1/emergency/contacts",
            Some(json!({"name": format!("Contact {rel}"), "phone": phone, "relationship": rel})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        let rp = t.get(&format!("/fhir/RelatedPerson/{}", v["id"].as_str().unwrap())).await.json();
        assert_eq!(rp["patient"]["reference"], format!("Patient/{pa}"));
        assert_eq!(rp["telecom"][0]["value"], *phone);
    }
    let (s, list) = call(&t, &a, Method::GET, "/api/v1/emergency/contacts", None).await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["contacts"].as_array().unwrap().len(), 2);
    assert_eq!(list["contacts"][0]["relationship"], "sister");

    // The button, with a position.
    let (s, v) = call(
        &t,
        &a,
        Method::POST,
        "/api/v1/emergency/alert",
        Some(json!({"position": {"latitude": HERE.0, "longitude": HERE.1, "accuracy_m": 20}})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(v["repeated"], false);
    assert_eq!(v["notified"]["contacts"], 2, "{v}");
    assert_eq!(v["notified"]["care_team"], 2, "the GP's account and the caregiver: {v}");
    let map = "https://www.openstreetmap.org/?mlat=28.613900&mlon=77.209000#map=16/28.613900/77.209000";
    assert_eq!(v["map_url"], map);
    let found: Vec<&str> = v["facilities"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(found, [near.as_str(), mid.as_str()], "nearest first, within 50 km: {v}");
    let d0 = v["facilities"][0]["distance_m"].as_u64().unwrap();
    assert!((500..1200).contains(&d0), "{d0}");

    // Every contact gets an SMS through the real peer, with the name and the map link.
    drain(&t.app).await;
    for phone in phones {
        let sms = eventually("the alert SMS", || async { sms_to(&log, phone).into_iter().next() }).await;
        assert!(sms.starts_with("EMERGENCY: Meera Alert") && sms.contains(map), "{sms}");
    }
    // The care team: critical category, in-app (and whatever else their accounts have).
    let team = rows_with_prefix(&t, &format!("emergency:{id}:alert:1:team:")).await;
    for account in gp_accounts.iter().chain([&carer_id]) {
        assert!(
            team.iter().any(|r| r.account_id.as_deref() == Some(account.as_str())
                && r.channel == ChannelKind::InApp.as_str()
                && r.category == "emergency"),
            "{account}: {team:?}"
        );
    }
    // Recorded: an active Flag, a Communication per contact and one for the care team.
    let flag = t.get(&format!("/fhir/Flag/{id}")).await.json();
    assert_eq!(flag["status"], "active");
    assert_eq!(flag["subject"]["reference"], format!("Patient/{pa}"));
    let (_, comms) =
        call(&t, &t.client, Method::GET, &format!("/fhir/Communication?subject=Patient/{pa}&_summary=count"), None)
            .await;
    assert_eq!(comms["total"], 3, "{comms}");

    // A second press moments later: the same alert, nothing sent again.
    let (s, again) = call(&t, &a, Method::POST, "/api/v1/emergency/alert", Some(json!({}))).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!((again["id"].as_str(), again["repeated"].as_bool()), (Some(id.as_str()), Some(true)));
    assert_eq!(again["notified"], json!({"contacts": 0, "care_team": 0}));
    drain(&t.app).await;
    for phone in phones {
        assert_eq!(sms_to(&log, phone).len(), 1, "{phone} got one alert");
    }

    // "I am safe": everyone is told; a second cancel tells no one again.
    let (s, c) = call(&t, &a, Method::POST, &format!("/api/v1/emergency/alert/{id}/cancel"), None).await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["status"], "cancelled");
    assert_eq!(c["notified"], json!({"contacts": 2, "care_team": 2}));
    drain(&t.app).await;
    for phone in phones {
        let sms = eventually("the safe SMS", || async { sms_to(&log, phone).into_iter().nth(1) }).await;
        assert!(sms.contains("Meera Alert") && sms.contains("safe"), "{sms}");
    }
    assert_eq!(t.get(&format!("/fhir/Flag/{id}")).await.json()["status"], "inactive");
    let (s, c) = call(&t, &a, Method::POST, &format!("/api/v1/emergency/alert/{id}/cancel"), None).await;
    assert_eq!((s, c["repeated"].as_bool()), (200, Some(true)));
    drain(&t.app).await;
    for phone in phones {
        assert_eq!(sms_to(&log, phone).len(), 2);
    }

    // A new press after the cancel is a new alert.
    let (s, v) = call(&t, &a, Method::POST, "/api/v1/emergency/alert", None).await;
    assert_eq!(s, 201, "{v}");
    assert_ne!(v["id"].as_str(), Some(id.as_str()));
    assert_eq!(v["map_url"], Value::Null);
    drain(&t.app).await;
    for phone in phones {
        let sms = eventually("the second alert", || async { sms_to(&log, phone).into_iter().nth(2) }).await;
        assert!(sms.contains("Location not shared"), "{sms}");
    }
}

#[tokio::test]
async fn a_press_after_the_repeat_window_sends_again_under_a_new_round() {
    let t = TestApp::spawn().await;
    let (_, _, a) = patient_account(&t, "Window").await;
    let (s, v) = call(
        &t,
        &a,
        Method::POST,
        "/api/v1/emergency/contacts",
        Some(json!({"name": "Ravi", "phone": "+919800000009", "relationship": "friend"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, first) = call(&t, &a, Method::POST, "/api/v1/emergency/alert", None).await;
    assert_eq!(s, 201, "{first}");
    let id = first["id"].as_str().unwrap().to_owned();
    t.clock.set(t.clock.now() + chrono::TimeDelta::minutes(9));
    let (_, v) = call(&t, &a, Method::POST, "/api/v1/emergency/alert", None).await;
    assert_eq!(v["repeated"], true);
    t.clock.set(t.clock.now() + chrono::TimeDelta::minutes(2));
    let (s, v) = call(&t, &a, Method::POST, "/api/v1/emergency/alert", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["id"].as_str(), v["repeated"].as_bool()), (Some(id.as_str()), Some(false)));
    assert_eq!(v["notified"]["contacts"], 1);
    let rounds: Vec<String> =
        rows_with_prefix(&t, &format!("emergency:{id}:alert:")).await.into_iter().map(|r| r.idem_key).collect();
    assert!(rounds.iter().any(|k| k.contains(":alert:1:")) && rounds.iter().any(|k| k.contains(":alert:2:")));
}

#[tokio::test]
async fn near_search_on_location_respects_distance_and_units() {
    let t = TestApp::spawn().await;
    let (near, mid, far) = facilities(&t).await;
    let ids = |b: &Value| -> Vec<String> {
        let mut v: Vec<String> = b["entry"]
            .as_array()
            .map(|es| es.iter().map(|e| e["resource"]["id"].as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    let sorted = |mut v: Vec<&String>| {
        v.sort();
        v.into_iter().cloned().collect::<Vec<_>>()
    };
    let search = |q: &str| format!("/fhir/Location?near={}|{}|{q}", HERE.0, HERE.1);
    assert_eq!(ids(&t.get(&search("2|km")).await.json()), vec![near.clone()]);
    assert_eq!(ids(&t.get(&search("20|km")).await.json()), sorted(vec![&near, &mid]));
    assert_eq!(ids(&t.get(&search("20")).await.json()), sorted(vec![&near, &mid]), "km is the default unit");
    assert_eq!(ids(&t.get(&search("2000|m")).await.json()), vec![near.clone()]);
    assert_eq!(ids(&t.get(&search("500|m")).await.json()), Vec::<String>::new());
    assert_eq!(ids(&t.get(&search("1000|[mi_i]")).await.json()), sorted(vec![&near, &mid, &far]));
    // Without a distance: the server's default (50 km).
    let r = t.get(&format!("/fhir/Location?near={}|{}", HERE.0, HERE.1)).await;
    assert_eq!(ids(&r.json()), sorted(vec![&near, &mid]), "{}", r.text);
    // With another clause and a chain-free OR of two points.
    let r = t.get(&format!("/fhir/Location?near=19.07|72.87|5|km,{}|{}|2|km&name=far", HERE.0, HERE.1)).await;
    assert_eq!(ids(&r.json()), vec![far.clone()], "{}", r.text);
    // Moving a facility moves its index row.
    let mut moved = location("Near Clinic", 19.08, 72.88);
    moved["id"] = json!(near);
    assert_eq!(t.put(&format!("/fhir/Location/{near}"), &moved).await.status, 200);
    assert_eq!(ids(&t.get(&search("2|km")).await.json()), Vec::<String>::new());
    // Refusals.
    for bad in ["91|0|1|km", "28|77|x|km", "28|77|1|furlong", "28", "28|77|-1|km"] {
        let r = t.get(&format!("/fhir/Location?near={bad}")).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }
}

#[tokio::test]
async fn a_caregiver_acts_only_for_the_patients_they_are_linked_to() {
    let t = TestApp::spawn().await;
    let (pa, _, a) = patient_account(&t, "Linked").await;
    let (pb, _, _b) = patient_account(&t, "Other").await;
    let (_, carer) = caregiver_of(&t, &pa).await;
    let contact = |p: &str| json!({"patient": p, "name": "Kiran", "phone": "+919811111111", "relationship": "son"});
    let (s, v) = call(&t, &carer, Method::POST, "/api/v1/emergency/contacts", Some(contact(&pa))).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = call(&t, &carer, Method::GET, &format!("/api/v1/emergency/contacts?patient={pa}"), None).await;
    assert_eq!((s, v["contacts"].as_array().map(Vec::len)), (200, Some(1)), "{v}");
    let (s, v) = call(&t, &carer, Method::POST, "/api/v1/emergency/alert", Some(json!({"patient": pa}))).await;
    assert_eq!(s, 201, "{v}");
    let alert = v["id"].as_str().unwrap().to_owned();
    // Not linked to B: B's record does not exist for them.
    let (s, _) = call(&t, &carer, Method::POST, "/api/v1/emergency/contacts", Some(contact(&pb))).await;
    assert_eq!(s, 404);
    let (s, _) = call(&t, &carer, Method::GET, &format!("/api/v1/emergency/contacts?patient={pb}"), None).await;
    assert_eq!(s, 404);
    let (s, _) = call(&t, &carer, Method::POST, "/api/v1/emergency/alert", Some(json!({"patient": pb}))).await;
    assert_eq!(s, 404);
    // Another patient cannot see or cancel A's alert.
    let (_, _, other) = patient_account(&t, "Stranger").await;
    let (s, _) = call(&t, &other, Method::POST, &format!("/api/v1/emergency/alert/{alert}/cancel"), None).await;
    assert_eq!(s, 404);
    let (s, _) = call(&t, &other, Method::GET, &format!("/api/v1/emergency/contacts?patient={pa}"), None).await;
    assert_eq!(s, 404);
    // A cancels their own alert.
    let (s, v) = call(&t, &a, Method::POST, &format!("/api/v1/emergency/alert/{alert}/cancel"), None).await;
    assert_eq!(s, 200, "{v}");
    // Bad input: stable codes, nothing written.
    for (body, code) in [
        (json!({"name": "", "phone": "+919811111111", "relationship": "son"}), "invalid_name"),
        (json!({"name": "X", "phone": "98111", "relationship": "son"}), "invalid_phone"),
        (json!({"name": "X", "phone": "+919811111111", "relationship": ""}), "invalid_relationship"),
        (json!({"name": "X", "phone": "+919811111111", "relationship": "son", "extra": 1}), "invalid_body"),
    ] {
        let (s, v) = call(&t, &a, Method::POST, "/api/v1/emergency/contacts", Some(body)).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some(code)), "{v}");
    }
    let (s, v) = call(&t, &a, Method::GET, "/api/v1/emergency/contacts", None).await;
    assert_eq!((s, v["contacts"].as_array().map(Vec::len)), (200, Some(1)));
}
