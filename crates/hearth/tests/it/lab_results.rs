//! Lab reports into results and the personal health record view (issue 22, items 4 and 5): a
//! lab report PDF generated here (29 analytes, Indian and US layouts, mixed units, two pages) is
//! read and its results proposed; the patient confirms, corrects and rejects them; the clinician
//! they share with sees the HbA1c trend including the confirmed value; another patient sees
//! nothing, and the attempt is audited.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::common::TestApp;
use crate::consent::{account, json_req};
use crate::documents::{bearer, last_audit_event, listed, patient_account, reading_tools, upload, wait_until};

/// A PDF with one page per entry of `pages`, each line in Helvetica 10 pt (WinAnsi, so `µ` is
/// one byte), as a lab's reporting software makes it.
fn lab_pdf(pages: &[&[&str]]) -> Vec<u8> {
    let n = pages.len();
    let mut objects: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        format!(
            "<< /Type /Pages /Kids [{}] /Count {n} >>",
            (0..n).map(|i| format!("{} 0 R", 4 + 2 * i)).collect::<Vec<_>>().join(" ")
        )
        .into_bytes(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_vec(),
    ];
    for (i, lines) in pages.iter().enumerate() {
        let mut content = b"BT /F1 10 Tf 40 760 Td 14 TL\n".to_vec();
        for line in *lines {
            content.push(b'(');
            for c in line.chars() {
                match c {
                    '(' | ')' | '\\' => content.extend([b'\\', c as u8]),
                    'µ' => content.push(0xB5),
                    c if c.is_ascii() => content.push(c as u8),
                    other => panic!("not in the test's encoding: {other}"),
                }
            }
            content.extend(b") Tj T*\n");
        }
        content.extend(b"ET\n");
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {} 0 R /Resources << /Font << /F1 3 0 R >> >> >>",
                5 + 2 * i
            )
            .into_bytes(),
        );
        let mut stream = format!("<< /Length {} >>\nstream\n", content.len()).into_bytes();
        stream.extend(content);
        stream.extend(b"endstream");
        objects.push(stream);
    }
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend(format!("{} 0 obj\n", i + 1).as_bytes());
        pdf.extend(o);
        pdf.extend(b"\nendobj\n");
    }
    let xref = pdf.len();
    pdf.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for off in offsets {
        pdf.extend(format!("{off:010} 00000 n \n").as_bytes());
    }
    pdf.extend(
        format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).as_bytes(),
    );
    pdf
}

/// Page 1 in an Indian lab's layout (Test, Result, Unit, Bio. Ref. Interval).
const INDIAN: &[&str] = &[
    "CITY DIAGNOSTICS PVT LTD, PUNE 411001",
    "Patient: Asha Verma     Age/Sex: 54 Y / F     Ref. by: Dr. S. Kulkarni",
    "Sample collected: 30 Nov 2026 08:10     Reported: 30/11/2026",
    "Test Name                         Result      Unit        Bio. Ref. Interval",
    "BIOCHEMISTRY",
    "Fasting Blood Sugar                126         mg/dL       70 - 100",
    "Glycosylated Haemoglobin (HbA1c)   7.8         %           4.0 - 5.6",
    "S. Creatinine                      88          µmol/L      62 - 106",
    "Blood Urea Nitrogen                14          mg/dL       7 - 20",
    "Serum Sodium                       138         mEq/L       135 - 145",
    "Serum Potassium                    4.6         mmol/L      3.5 - 5.1",
    "Serum Chloride                     101         mEq/L       98 - 107",
    "Bicarbonate                        24          mmol/L      22 - 29",
    "Calcium                            9.4         mg/dL       8.5 - 10.5",
    "Magnesium                          0.82        mmol/L      0.66 - 1.07",
    "Albumin                            42          g/L         35 - 52",
    "SGPT (ALT)                         56          U/L         Up to 40",
    "SGOT (AST)                         38          U/L         Up to 40",
    "Alkaline Phosphatase               98          U/L         40 - 129",
    "LIPID PROFILE",
    "Total Cholesterol                  212         mg/dL       < 200",
    "HDL Cholesterol                    1.0         mmol/L      > 1.03",
    "Triglycerides                      1.9         mmol/L      < 1.7",
    "Uric Acid                          6.1         mg/dL       3.4 - 7.0",
    "HAEMATOLOGY",
    "Haemoglobin                        11.8        g/dL        12.0 - 15.0",
    "Ferritin                           45          ng/mL       13 - 150",
    "TSH                                3.2         µIU/mL      0.27 - 4.2",
    "Interpretation: HbA1c 6.5 % and above suggests diabetes (ADA).",
    "*** End of page 1 ***",
];

/// Page 2 in a US lab's layout (Tests, Result, Flag, Reference Interval, Units).
const US: &[&str] = &[
    "TESTS                  RESULT    FLAG    REFERENCE INTERVAL    UNITS",
    "Insulin                28.4      High    2.6-24.9              uIU/mL",
    "C-Peptide              2.1               1.1-4.4               ng/mL",
    "Creatine Kinase        145               44-196                U/L",
    "LDH                    180               135-225               U/L",
    "Amylase                62                28-100                U/L",
    "Zinc                   11.5      Low     11.8-22.9             µmol/L",
    "Troponin I             0.01              <0.04                 ng/mL",
    "Fibrinogen             3.1               2.0-4.0               g/L",
];

/// (LOINC, value, unit, interpretation, page) of every result on the report.
const EXPECTED: &[(&str, f64, &str, Option<&str>, u64)] = &[
    ("2345-7", 126.0, "mg/dL", Some("H"), 1),
    ("4548-4", 7.8, "%", Some("H"), 1),
    ("2160-0", 88.0, "µmol/L", None, 1),
    ("3094-0", 14.0, "mg/dL", None, 1),
    ("2951-2", 138.0, "mEq/L", None, 1),
    ("2823-3", 4.6, "mmol/L", None, 1),
    ("2075-0", 101.0, "mEq/L", None, 1),
    ("1963-8", 24.0, "mmol/L", None, 1),
    ("17861-6", 9.4, "mg/dL", None, 1),
    ("19123-9", 0.82, "mmol/L", None, 1),
    ("1751-7", 42.0, "g/L", None, 1),
    ("1742-6", 56.0, "U/L", Some("H"), 1),
    ("1920-8", 38.0, "U/L", None, 1),
    ("6768-6", 98.0, "U/L", None, 1),
    ("2093-3", 212.0, "mg/dL", Some("H"), 1),
    ("2085-9", 1.0, "mmol/L", Some("L"), 1),
    ("2571-8", 1.9, "mmol/L", Some("H"), 1),
    ("3084-1", 6.1, "mg/dL", None, 1),
    ("718-7", 11.8, "g/dL", Some("L"), 1),
    ("2276-4", 45.0, "ng/mL", None, 1),
    ("3016-3", 3.2, "µIU/mL", None, 1),
    ("20448-7", 28.4, "uIU/mL", Some("H"), 2),
    ("1986-9", 2.1, "ng/mL", None, 2),
    ("2157-6", 145.0, "U/L", None, 2),
    ("14805-6", 180.0, "U/L", None, 2),
    ("1798-8", 62.0, "U/L", None, 2),
    ("5763-8", 11.5, "µmol/L", Some("L"), 2),
    ("10839-9", 0.01, "ng/mL", None, 2),
    ("3255-7", 3.1, "g/L", None, 2),
];

async fn results_of(t: &TestApp, c: &reqwest::Client, doc: &str) -> (u16, Value) {
    let r = t.send(c.get(t.url(&format!("/api/v1/documents/{doc}/results")))).await;
    (r.status, serde_json::from_str(&r.text).unwrap_or(Value::Null))
}

async fn review(t: &TestApp, c: &reqwest::Client, doc: &str, result: &str, body: Value) -> (u16, Value) {
    json_req(t, c, reqwest::Method::POST, &format!("/api/v1/documents/{doc}/results/{result}"), Some(&body)).await
}

async fn get(t: &TestApp, c: &reqwest::Client, path: &str) -> (u16, Value) {
    json_req(t, c, reqwest::Method::GET, path, None).await
}

#[tokio::test]
async fn a_lab_report_becomes_results_the_patient_confirms_and_the_clinician_charts() {
    if !reading_tools() {
        return;
    }
    let t = TestApp::spawn().await;
    let (pa, _, ta) = patient_account(&t, "Verma").await;
    let a = bearer(&ta);
    // An earlier HbA1c already in the record, and a problem.
    let earlier = t
        .create(&json!({"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}], "text": "HbA1c"},
            "subject": {"reference": format!("Patient/{pa}")}, "effectiveDateTime": "2026-05-02",
            "valueQuantity": {"value": 8.4, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
            "referenceRange": [{"low": {"value": 4.0, "unit": "%"}, "high": {"value": 5.6, "unit": "%"}}]}))
        .await;
    t.create(&json!({"resourceType": "Condition",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}], "text": "Type 2 diabetes"},
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "subject": {"reference": format!("Patient/{pa}")}}))
        .await;
    // Her clinician works for another clinic: they see nothing until she shares.
    let org = t.create(&json!({"resourceType": "Organization", "name": "Sunrise Clinic"})).await;
    let practitioner = t.create(&json!({"resourceType": "Practitioner", "name": [{"family": "Iyer"}]})).await;
    let (_, doc) = account(
        &t,
        "iyer@sunrise.example",
        json!({"role": "clinician", "fhirUser": format!("Practitioner/{practitioner}"), "organization": org}),
    )
    .await;
    let trend = format!("/api/v1/phr/results?code=4548-4&patient={pa}");
    assert_eq!(get(&t, &doc, &trend).await.0, 404, "not shared yet");

    let report = lab_pdf(&[INDIAN, US]);
    let (s, uploaded) =
        upload(&t, &a, &[("title", "Lab report"), ("type", "11502-2"), ("date", "2026-11-30")], &report).await;
    assert_eq!(s, 201, "{uploaded}");
    let id = uploaded["id"].as_str().unwrap().to_owned();
    wait_until("the report is read", async || {
        listed(&t, &a, "").await.first().is_some_and(|d| d["text_status"] == "done")
    })
    .await;
    // Proposals are written right after the text; give them the moment.
    let mut results = Value::Null;
    wait_until("the results are proposed", async || {
        results = results_of(&t, &a, &id).await.1;
        results["results"].as_array().is_some_and(|r| !r.is_empty())
    })
    .await;

    // The right analytes, values, units, flags and pages, and nothing else.
    let found = results["results"].as_array().unwrap();
    let by_code: HashMap<&str, &Value> = found.iter().map(|r| (r["code"].as_str().unwrap(), r)).collect();
    assert_eq!(found.len(), EXPECTED.len(), "{results:#}");
    for (code, value, unit, flag, page) in EXPECTED {
        let r = by_code.get(code).unwrap_or_else(|| panic!("{code} not found in {results:#}"));
        assert_eq!(r["value"].as_f64(), Some(*value), "{code}: {r}");
        assert_eq!(r["unit"].as_str(), Some(*unit), "{code}: {r}");
        assert_eq!(r["interpretation"].as_str(), *flag, "{code}: {r}");
        assert_eq!(r["page"].as_u64(), Some(*page), "{code}: {r}");
        assert_eq!(r["status"], "preliminary");
        assert_eq!(r["effective"], "2026-11-30");
    }
    let hba1c = by_code["4548-4"]["id"].as_str().unwrap().to_owned();
    assert_eq!((by_code["4548-4"]["low"].as_f64(), by_code["4548-4"]["high"].as_f64()), (Some(4.0), Some(5.6)));

    // In the record: a preliminary Observation marked as extracted, derived from the document,
    // with a Provenance naming the document and the page.
    let obs = t.get(&format!("/fhir/Observation/{hba1c}")).await.json();
    crate::common::assert_valid_r4(&obs);
    assert_eq!(obs["status"], "preliminary");
    assert_eq!(obs["meta"]["tag"][0]["system"], "urn:hearth:extracted", "{obs}");
    assert_eq!(obs["derivedFrom"][0]["reference"], format!("DocumentReference/{id}"));
    assert_eq!(obs["interpretation"][0]["coding"][0]["code"], "H");
    assert_eq!(obs["valueQuantity"]["system"], "http://unitsofmeasure.org");
    let prov = t.get(&format!("/fhir/Provenance?target=Observation/{hba1c}")).await.json();
    let prov = &prov["entry"][0]["resource"];
    crate::common::assert_valid_r4(prov);
    assert_eq!(prov["entity"][0]["what"]["reference"], format!("DocumentReference/{id}"), "{prov}");
    assert_eq!(prov["entity"][0]["extension"][0]["valuePositiveInt"], 1);
    assert_eq!(prov["target"].as_array().unwrap().len(), 21, "one Provenance per page: {prov}");

    // She shares with her clinician; proposals do not count yet.
    let (s, _) = json_req(
        &t,
        &a,
        reqwest::Method::POST,
        "/api/v1/me/consents",
        Some(&json!({"kind": "share", "with": format!("Practitioner/{practitioner}")})),
    )
    .await;
    assert_eq!(s, 201);
    let (s, before) = get(&t, &doc, &trend).await;
    assert_eq!(s, 200, "{before}");
    assert_eq!(before["points"].as_array().unwrap().len(), 1, "only the earlier, final HbA1c: {before}");
    assert_eq!(before["points"][0]["id"], earlier.as_str());

    // She confirms the HbA1c, corrects the glucose and rejects the TSH.
    let (s, confirmed) = review(&t, &a, &id, &hba1c, json!({"action": "confirm"})).await;
    assert_eq!(s, 200, "{confirmed}");
    assert_eq!((confirmed["status"].as_str(), confirmed["value"].as_f64()), (Some("final"), Some(7.8)));
    let glucose = by_code["2345-7"]["id"].as_str().unwrap();
    let (s, corrected) = review(&t, &a, &id, glucose, json!({"action": "correct", "value": 98, "unit": "mg/dL"})).await;
    assert_eq!(s, 200, "{corrected}");
    assert_eq!((corrected["value"].as_f64(), corrected["status"].as_str()), (Some(98.0), Some("final")));
    assert_eq!(corrected["interpretation"], Value::Null, "98 is within 70 - 100 again");
    let tsh = by_code["3016-3"]["id"].as_str().unwrap();
    let (s, rejected) = review(&t, &a, &id, tsh, json!({"action": "reject"})).await;
    assert_eq!((s, rejected["status"].as_str()), (200, Some("entered-in-error")));
    // Reviewed once; bad reviews are refused with their codes.
    assert_eq!(review(&t, &a, &id, &hba1c, json!({"action": "reject"})).await.1["error"]["code"], "already_reviewed");
    let creat = by_code["2160-0"]["id"].as_str().unwrap();
    let (s, e) = review(&t, &a, &id, creat, json!({"action": "correct"})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_value")));
    let (s, e) = review(&t, &a, &id, creat, json!({"action": "approve"})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_action")));
    let (s, e) = review(&t, &a, &id, creat, json!({"action": "confirm", "value": 1})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_body")));
    let (s, e) = review(&t, &a, &id, &earlier, json!({"action": "confirm"})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("not_found")), "not a result of this document");
    // The clinician confirms the creatinine (reported in µmol/L).
    let (s, _) = review(&t, &doc, &id, creat, json!({"action": "confirm"})).await;
    assert_eq!(s, 200);

    // Done when: the clinician sees the HbA1c trend including the new value.
    let (s, after) = get(&t, &doc, &trend).await;
    assert_eq!(s, 200, "{after}");
    let points: Vec<(Option<&str>, Option<f64>)> =
        after["points"].as_array().unwrap().iter().map(|p| (p["effective"].as_str(), p["value"].as_f64())).collect();
    assert_eq!(points, vec![(Some("2026-05-02"), Some(8.4)), (Some("2026-11-30"), Some(7.8))], "{after}");
    assert_eq!(after["points"][1]["document"].as_str(), Some(id.as_str()));
    assert_eq!(after["reference_range"]["high"].as_f64(), Some(5.6), "{after}");
    assert_eq!(after["name"], "Glycated hemoglobin (HbA1c)");
    // Creatinine charted in mg/dL, converted from µmol/L with the table's factor (88.4).
    let (_, creatinine) =
        get(&t, &doc, &format!("/api/v1/phr/results?code=http://loinc.org%7C2160-0&patient={pa}")).await;
    let p = &creatinine["points"][0];
    assert!((p["value"].as_f64().unwrap() - 88.0 / 88.4).abs() < 1e-9, "{creatinine}");
    assert_eq!((p["unit"].as_str(), p["recorded_value"].as_f64()), (Some("mg/dL"), Some(88.0)));
    assert!((creatinine["reference_range"]["high"].as_f64().unwrap() - 106.0 / 88.4).abs() < 1e-9);
    // The TSH she rejected is no result.
    let (_, tsh) = get(&t, &a, "/api/v1/phr/results?code=3016-3").await;
    assert_eq!(tsh["points"].as_array().unwrap().len(), 0, "{tsh}");

    // The summary, for her and for her clinician.
    for c in [&a, &doc] {
        let (s, summary) = get(&t, c, &format!("/api/v1/phr/summary?patient={pa}")).await;
        assert_eq!(s, 200, "{summary}");
        assert_eq!(summary["problems"][0]["display"], "Type 2 diabetes", "{summary}");
        assert_eq!(summary["problems"][0]["status"], "active");
        assert_eq!(summary["documents"][0]["id"].as_str(), Some(id.as_str()));
        let codes: Vec<&str> =
            summary["results"].as_array().unwrap().iter().map(|r| r["code"].as_str().unwrap()).collect();
        assert_eq!(codes.iter().filter(|c| **c == "4548-4").count(), 2, "{codes:?}");
        assert!(codes.contains(&"2345-7") && codes.contains(&"2160-0") && !codes.contains(&"3016-3"), "{codes:?}");
        assert_eq!(codes.len(), 4, "only final results: {codes:?}");
    }

    // Another patient reads none of it; the attempts are audited with their outcome.
    let (_, b_account, tb) = patient_account(&t, "Nosy").await;
    let b = bearer(&tb);
    assert_eq!(get(&t, &b, &format!("/api/v1/phr/summary?patient={pa}")).await.0, 404);
    let (s, _) = get(&t, &b, &trend).await;
    assert_eq!(s, 404);
    let event = last_audit_event(&t).await;
    assert_eq!(event["agent"][0]["who"]["identifier"]["value"], b_account.as_str(), "{event}");
    assert_eq!((event["outcome"].as_str(), event["outcomeDesc"].as_str()), (Some("4"), Some("404")), "{event}");
    assert_eq!(results_of(&t, &b, &id).await.0, 404);
    let creat_id = creat.to_owned();
    assert_eq!(review(&t, &b, &id, &creat_id, json!({"action": "reject"})).await.0, 404);
    // Their own summary is theirs alone.
    let (s, own) = get(&t, &b, "/api/v1/phr/summary").await;
    assert_eq!(s, 200);
    assert!(own["results"].as_array().unwrap().is_empty() && own["documents"].as_array().unwrap().is_empty());
    // Staff name the patient; unknown parameters are refused.
    assert_eq!(get(&t, &doc, "/api/v1/phr/summary").await.1["error"]["code"], "missing_patient");
    assert_eq!(get(&t, &a, "/api/v1/phr/summary?colour=red").await.1["error"]["code"], "invalid_query");
    assert_eq!(get(&t, &a, "/api/v1/phr/results").await.1["error"]["code"], "invalid_query");
    assert_eq!(get(&t, &a, "/api/v1/phr/results?code=x%20y").await.1["error"]["code"], "invalid_query");
}

/// Issue 22's "done when", end to end: a photographed page (the report rendered to an image, read
/// by OCR, not a PDF's text) is uploaded through tus over a connection that drops mid-upload and
/// resumes; its results are proposed, the patient confirms the HbA1c, and a clinician sees the
/// trend with the new value.
#[tokio::test]
async fn a_photographed_report_uploaded_over_a_flaky_connection_becomes_a_charted_result() {
    use crate::documents::{b64, raw_request, tus};
    if !reading_tools() {
        return;
    }
    let t = TestApp::spawn().await;
    let (pa, _, ta) = patient_account(&t, "Photo").await;
    let a = bearer(&ta);
    let (_, doc) = crate::scheduling::clinician(&t, "Trend").await;
    // The photo: page 1 rendered at 300 dpi to a PNG.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("report.pdf"), lab_pdf(&[INDIAN])).unwrap();
    let out = std::process::Command::new("pdftoppm")
        .args(["-r", "300", "-png", "-singlefile"])
        .arg(dir.path().join("report.pdf"))
        .arg(dir.path().join("photo"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let photo = std::fs::read(dir.path().join("photo.png")).unwrap();

    // tus: create, a PATCH that drops after a third of the bytes, HEAD, resume.
    let r = t
        .send(
            tus(&a, reqwest::Method::POST, t.url("/api/v1/documents/uploads"))
                .header("upload-length", photo.len().to_string())
                .header(
                    "upload-metadata",
                    format!("title {},type {},date {}", b64("Lab report photo"), b64("11502-2"), b64("2026-11-30")),
                ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let path = r.header("location").unwrap().split_once("/api/").map(|(_, p)| format!("/api/{p}")).unwrap();
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ta}\r\nTus-Resumable: 1.0.0\r\n\
         Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: {}\r\n\r\n",
        t.addr.trim_start_matches("http://"),
        photo.len()
    );
    assert!(raw_request(&t, &head, &photo, photo.len() / 3).await.is_none());
    let mut offset = 0u64;
    wait_until("the bytes before the drop are counted", async || {
        let r = t.send(tus(&a, reqwest::Method::HEAD, t.url(&path))).await;
        offset = r.header("upload-offset").unwrap().parse().unwrap();
        r.status == 200 && offset > 0
    })
    .await;
    let r = t
        .send(
            tus(&a, reqwest::Method::PATCH, t.url(&path))
                .header("upload-offset", offset.to_string())
                .header("content-type", "application/offset+octet-stream")
                .body(photo[offset as usize..].to_vec()),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let id = r.header("hearth-document-id").expect("the new document's id");

    // Read by OCR; the HbA1c is proposed with its value, unit and range.
    let mut results = Value::Null;
    wait_until("the photo is read and its results proposed", async || {
        results = results_of(&t, &a, &id).await.1;
        results["results"].as_array().is_some_and(|r| !r.is_empty())
    })
    .await;
    let hba1c = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["code"] == "4548-4")
        .unwrap_or_else(|| panic!("no HbA1c among {results:#}"))
        .clone();
    assert_eq!((hba1c["value"].as_f64(), hba1c["unit"].as_str()), (Some(7.8), Some("%")), "{hba1c}");
    assert_eq!(hba1c["status"], "preliminary");

    // Not a result until confirmed; then the clinician's chart has it.
    let trend = format!("/api/v1/phr/results?code=4548-4&patient={pa}");
    let (s, before) = get(&t, &doc, &trend).await;
    assert_eq!(s, 200, "{before}");
    assert!(before["points"].as_array().unwrap().is_empty(), "{before}");
    let (s, confirmed) = review(&t, &a, &id, hba1c["id"].as_str().unwrap(), json!({"action": "confirm"})).await;
    assert_eq!((s, confirmed["status"].as_str()), (200, Some("final")), "{confirmed}");
    let (s, after) = get(&t, &doc, &trend).await;
    assert_eq!(s, 200, "{after}");
    let points: Vec<(Option<&str>, Option<f64>)> =
        after["points"].as_array().unwrap().iter().map(|p| (p["effective"].as_str(), p["value"].as_f64())).collect();
    assert_eq!(points, vec![(Some("2026-11-30"), Some(7.8))], "{after}");
    assert_eq!(after["points"][0]["document"].as_str(), Some(id.as_str()));
}
