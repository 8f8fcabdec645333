//! `/api/v1/medication/prescriptions`: a clinician signs their orders (made through
//! `POST /api/v1/medication/schedules`) into an e-prescription; the patient, their caregivers and
//! staff within reach fetch it as a FHIR `document` Bundle or, with `Accept: application/pdf`, as
//! a PDF. Every read goes through the caller's guarded store view (audited).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hearth_auth::Role;
use hearth_store::{Current, Guarded, StoreError, interactions as store_ops};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use hearth_workflow::ApiCaller;
use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;

use crate::Medication;
use crate::prescription::{self as rx, Facts, Refs};
use crate::schedule::schedule_out;

fn bad(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, msg)
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no such {what}"))
}

/// A resource's body through the caller's view: `None` when absent or out of reach.
async fn read(store: &Guarded, rt: &str, id: &str) -> Result<Option<Value>, ApiError> {
    if !hearth_workflow::fhir::valid_id(id) {
        return Ok(None);
    }
    match store.read(rt, id).await {
        Ok(Current::Found(v)) => Ok(v.body.as_deref().and_then(|b| serde_json::from_str(b).ok())),
        Ok(_) | Err(StoreError::Forbidden(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn local<'a>(reference: &'a str, rt: &str) -> Option<&'a str> {
    reference.strip_prefix(rt).and_then(|r| r.strip_prefix('/'))
}

/// A prescription to sign.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrescriptionIn {
    /// The Patient id (required for a clinician, who has no record of their own).
    #[serde(default)]
    patient: Option<String>,
    /// The orders it carries: `MedicationRequest/{id}` (or the id) of active orders the caller
    /// wrote for this patient, 1 to 20.
    orders: Vec<String>,
    /// Diagnosis or provisional diagnosis (required), up to 1000 characters.
    #[serde(default)]
    diagnosis: Option<String>,
    /// Advice to the patient (required), up to 1000 characters.
    #[serde(default)]
    advice: Option<String>,
}

/// A signed prescription.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PrescriptionSigned {
    /// The prescription's id (its `Composition`'s): `GET /api/v1/medication/prescriptions/{id}`.
    id: String,
    composition: String,
    /// The signature's record.
    provenance: String,
    /// SHA-256 (hex) of the signed text: the verification reference.
    sha256: String,
    /// The signed text.
    text: String,
}

fn incomplete(missing: &[String]) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"error": {"code": "prescription_incomplete", "message": format!("a prescription needs: {}", missing.join("; "))}, "missing": missing})),
    )
        .into_response()
}

fn text_field(v: Option<&String>, name: &str, missing: &mut Vec<String>) -> Result<String, ApiError> {
    match v.map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => {
            missing.push(name.to_owned());
            Ok(String::new())
        }
        Some(s) if hearth_workflow::fhir::is_display_text(s, 1000) => Ok(s.to_owned()),
        Some(_) => Err(bad("invalid_body", format!("`{name}`: up to 1000 printable characters"))),
    }
}

#[utoipa::path(post, path = "/api/v1/medication/prescriptions", tag = "medication",
    request_body(content = PrescriptionIn, description = "The prescriber signs their orders for one patient into an e-prescription with what India's Telemedicine Practice Guidelines 2020 require. Signing is this authenticated call: the text is fixed now, a `Composition` (attester `legal`: the prescriber) and a `Provenance` (signature: SHA-256 of the text) are written",
        example = json!({"patient": "0190…", "orders": ["MedicationRequest/0190…"], "diagnosis": "Type 2 diabetes mellitus", "advice": "Walk 30 minutes a day; review in 4 weeks"})),
    responses(
        (status = 201, description = "Signed", body = PrescriptionSigned),
        (status = 400, description = "Nothing written (stable code: invalid_body, patient_required, invalid_orders)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_orders", "message": "give 1 to 20 `orders`"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "Not a clinician with a Practitioner record (`prescriber_only`), an order another prescriber wrote (`not_prescriber`), or the caller may not write this record (`forbidden`)", body = ErrorEnvelope, example = json!({"error": {"code": "prescriber_only", "message": "only a clinician signs a prescription"}})),
        (status = 404, description = "Unknown patient or order, or outside the caller's reach", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such order"}})),
        (status = 409, description = "An order is no longer active (`not_active`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_active", "message": "MedicationRequest/… is no longer active"}})),
        (status = 422, description = "A required fact is missing (`prescription_incomplete`; the body also lists each in `missing`): the prescriber's name, qualification or registration number, the organization, the patient's name, age or sex, the diagnosis, the advice, or an order's strength, dose, duration or instructions", body = ErrorEnvelope,
         example = json!({"error": {"code": "prescription_incomplete", "message": "a prescription needs: the prescriber's registration number (Practitioner.qualification.identifier)"}, "missing": ["the prescriber's registration number (Practitioner.qualification.identifier)"]})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn sign(
    State(app): State<Arc<Medication>>,
    ApiCaller(caller): ApiCaller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let input: PrescriptionIn =
        serde_json::from_slice(&body).map_err(|e| bad("invalid_body", format!("invalid request body: {e}")))?;
    let prescriber = match (caller.role, caller.account.fhir_user.as_deref().and_then(|u| local(u, "Practitioner"))) {
        (Role::Clinician, Some(p)) => p.to_owned(),
        _ => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "prescriber_only",
                "only a clinician with a Practitioner record signs a prescription",
            ));
        }
    };
    let store = app.store_for(&caller);
    let (patient, patient_version) =
        hearth_workflow::fhir::requested_patient(&store, &caller, input.patient.as_deref()).await?;
    let patient_body: Value =
        patient_version.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
    if input.orders.is_empty() || input.orders.len() > rx::MAX_ORDERS {
        return Err(bad("invalid_orders", format!("give 1 to {} `orders`", rx::MAX_ORDERS)));
    }
    let mut missing = Vec::new();
    let diagnosis = text_field(input.diagnosis.as_ref(), "diagnosis", &mut missing)?;
    let advice = text_field(input.advice.as_ref(), "advice", &mut missing)?;

    let mut orders = Vec::new();
    let mut items = Vec::new();
    for (i, o) in input.orders.iter().enumerate() {
        let id = local(o, "MedicationRequest").unwrap_or(o);
        let reference = format!("MedicationRequest/{id}");
        if orders.contains(&reference) {
            return Err(bad("invalid_orders", format!("`orders[{i}]` is listed twice")));
        }
        let order = read(&store, "MedicationRequest", id).await?.ok_or_else(|| not_found("order"))?;
        if order.pointer("/subject/reference").and_then(Value::as_str) != Some(format!("Patient/{patient}").as_str()) {
            return Err(not_found("order"));
        }
        if order.pointer("/requester/reference").and_then(Value::as_str)
            != Some(format!("Practitioner/{prescriber}").as_str())
        {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "not_prescriber", "a prescriber signs their own orders"));
        }
        let out = schedule_out("MedicationRequest", id, &order).ok_or_else(|| not_found("order"))?;
        if out.status != "active" {
            return Err(ApiError::new(StatusCode::CONFLICT, "not_active", format!("{reference} is no longer active")));
        }
        match rx::item(i, &out) {
            Ok(item) => items.push(item),
            Err(m) => missing.extend(m),
        }
        orders.push(reference);
    }

    let practitioner = read(&store, "Practitioner", &prescriber).await?.unwrap_or(Value::Null);
    let prescriber_name = rx::names(&practitioner).into_iter().next();
    let (qualifications, registration) = rx::qualifications(&practitioner);
    if prescriber_name.is_none() {
        missing.push("the prescriber's name (Practitioner.name)".into());
    }
    if qualifications.is_empty() {
        missing.push("the prescriber's qualification (Practitioner.qualification.code)".into());
    }
    if registration.is_none() {
        missing.push("the prescriber's registration number (Practitioner.qualification.identifier)".into());
    }
    let organization = organization_of(&app, &store, &prescriber, &patient_body).await?;
    if organization.is_none() {
        missing.push(
            "the organization (an Organization the prescriber's PractitionerRole or the patient's managingOrganization names)"
                .into(),
        );
    }
    let patient_name = rx::names(&patient_body).into_iter().next();
    if patient_name.is_none() {
        missing.push("the patient's name (Patient.name)".into());
    }
    let tz = crate::reminders::time_zone(&app, &app.notifier, &patient).await?;
    let now = app.clock.now();
    let today = now.with_timezone(&tz).date_naive();
    let age = patient_body
        .get("birthDate")
        .and_then(Value::as_str)
        .and_then(|b| chrono::NaiveDate::parse_from_str(b, "%Y-%m-%d").ok())
        .and_then(|b| rx::age(b, today));
    if age.is_none() {
        missing.push("the patient's age (Patient.birthDate, a full date)".into());
    }
    let sex = patient_body.get("gender").and_then(Value::as_str).filter(|g| *g != "unknown");
    if sex.is_none() {
        missing.push("the patient's sex (Patient.gender)".into());
    }
    let (Some(prescriber_name), Some(registration), Some((org_id, org_name)), Some(patient_name), Some(age), Some(sex)) =
        (prescriber_name, registration, organization, patient_name, age, sex)
    else {
        return Ok(incomplete(&missing));
    };
    if !missing.is_empty() {
        return Ok(incomplete(&missing));
    }
    let facts = Facts {
        prescriber: prescriber_name,
        qualification: qualifications.join(", "),
        registration,
        organization: org_name,
        patient_name,
        age,
        sex: sex.to_owned(),
        date: today,
        diagnosis,
        advice,
        items,
    };
    let id = uuid::Uuid::now_v7().to_string();
    let provenance_id = uuid::Uuid::now_v7().to_string();
    let refs = Refs {
        id: &id,
        provenance: &provenance_id,
        patient: &patient,
        practitioner: &prescriber,
        organization: &org_id,
        orders: &orders,
    };
    let text = facts.text();
    let composition = rx::composition(&facts, &refs, now);
    let provenance = rx::provenance(&refs, &text, now);
    for (rt, r) in [("Composition", &composition), ("Provenance", &provenance)] {
        hearth_workflow::fhir::validate(&app, rt, r)
            .map_err(|e| bad("invalid_body", format!("the {rt} does not validate: {}", e.describe())))?;
    }
    let mut tx = store.begin().await?;
    store_ops::create(&mut tx, hearth_workflow::fhir::write_of(&app, "Composition", id.clone(), composition), now)
        .await?;
    store_ops::create(
        &mut tx,
        hearth_workflow::fhir::write_of(&app, "Provenance", provenance_id.clone(), provenance),
        now,
    )
    .await?;
    tx.commit().await?;
    let out = PrescriptionSigned {
        composition: format!("Composition/{id}"),
        id,
        provenance: format!("Provenance/{provenance_id}"),
        sha256: rx::digest(&text),
        text,
    };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// The prescriber's organization (their first PractitionerRole's), else the patient's
/// managing organization: (id, name).
async fn organization_of(
    app: &Medication,
    store: &Guarded,
    practitioner: &str,
    patient: &Value,
) -> Result<Option<(String, String)>, ApiError> {
    let roles = app
        .search_all(
            store,
            "PractitionerRole",
            &[("practitioner".to_owned(), format!("Practitioner/{practitioner}"))],
            20,
        )
        .await?;
    let mut candidates: Vec<String> = roles
        .iter()
        .filter_map(|v| v.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()))
        .filter_map(|r| r.pointer("/organization/reference").and_then(Value::as_str).map(str::to_owned))
        .collect();
    candidates.extend(patient.pointer("/managingOrganization/reference").and_then(Value::as_str).map(str::to_owned));
    for c in candidates {
        let Some(id) = local(&c, "Organization") else { continue };
        if let Some(org) = read(store, "Organization", id).await?
            && let Some(name) = org.get("name").and_then(Value::as_str).filter(|n| !n.trim().is_empty())
        {
            return Ok(Some((id.to_owned(), name.to_owned())));
        }
    }
    Ok(None)
}

/// The Bundle's identifier.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PrescriptionIdentifier {
    system: String,
    value: String,
}

/// One entry of a document Bundle.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PrescriptionEntry {
    #[serde(rename = "fullUrl")]
    full_url: String,
    #[schema(value_type = hearth_workflow::openapi::FhirResource)]
    resource: Value,
}

/// A FHIR `document` Bundle: the `Composition` first, then the Patient, the Practitioner, the
/// Organization, the MedicationRequests and (when the caller reaches it) the signature's Provenance.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PrescriptionDocument {
    #[serde(rename = "resourceType")]
    resource_type: String,
    identifier: PrescriptionIdentifier,
    #[serde(rename = "type")]
    kind: String,
    timestamp: String,
    entry: Vec<PrescriptionEntry>,
}

#[utoipa::path(get, path = "/api/v1/medication/prescriptions/{id}", tag = "medication",
    params(
        ("id" = String, Path, description = "The prescription's id"),
        ("Accept" = Option<String>, Header, description = "`application/pdf` for the PDF; anything else gives the FHIR document"),
    ),
    responses(
        (status = 200, description = "The prescription: a FHIR `document` Bundle (`application/fhir+json`), or with `Accept: application/pdf` the PDF (the signed text and the signature block: who signed, when, the Provenance and the SHA-256 of the text). The PDF is set in Helvetica (Latin-1): a name in another script is shown as `?` with a note, the FHIR document carries it exactly",
         content((PrescriptionDocument = "application/fhir+json"), (Vec<u8> = "application/pdf"))),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 404, description = "Unknown prescription, or outside the caller's reach", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such prescription"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn fetch(
    State(app): State<Arc<Medication>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let store = app.store_for(&caller);
    let composition = read(&store, "Composition", &id)
        .await?
        .filter(|c| {
            c.pointer("/meta/tag")
                .and_then(Value::as_array)
                .is_some_and(|t| t.iter().any(|t| t.get("code").and_then(Value::as_str) == Some("prescription")))
        })
        .ok_or_else(|| not_found("prescription"))?;
    let (text, signer, when, provenance) =
        rx::signed(&composition).ok_or_else(|| ApiError::internal("a prescription without its signed text"))?;
    let pdf = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.split(',').any(|t| t.trim().starts_with("application/pdf")));
    if pdf {
        let prescriber = text.lines().next().and_then(|l| l.strip_prefix("Prescriber: ")).unwrap_or(&signer);
        let shows = text.lines().find_map(|l| l.strip_prefix("Patient: ")).is_none_or(hearth_workflow::pdf::shows);
        let body = hearth_workflow::pdf::text(
            "e-Prescription",
            &rx::pdf_text(&text, &format!("{prescriber} ({signer})"), &when, &provenance, shows),
        );
        let mut resp = (StatusCode::OK, body).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/pdf"));
        if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"prescription-{id}.pdf\"")) {
            resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
        return Ok(resp);
    }
    let base = app.fhir_base(&headers);
    let mut refs: Vec<String> = Vec::new();
    for p in ["/subject/reference", "/author/0/reference", "/custodian/reference"] {
        refs.extend(composition.pointer(p).and_then(Value::as_str).map(str::to_owned));
    }
    if let Some(entries) = composition.pointer("/section/1/entry").and_then(Value::as_array) {
        refs.extend(entries.iter().filter_map(|e| e.get("reference").and_then(Value::as_str)).map(str::to_owned));
    }
    let mut entry =
        vec![PrescriptionEntry { full_url: format!("{base}/Composition/{id}"), resource: composition.clone() }];
    for r in &refs {
        let Some((rt, rid)) = r.split_once('/') else { continue };
        let body =
            read(&store, rt, rid).await?.ok_or_else(|| ApiError::internal("a prescription's resource is gone"))?;
        entry.push(PrescriptionEntry { full_url: format!("{base}/{r}"), resource: body });
    }
    // The signature's record, when the caller reaches it (staff do; the patient reads the same
    // facts on the Composition's attester and extensions).
    if let Some((rt, rid)) = provenance.split_once('/')
        && let Some(body) = read(&store, rt, rid).await?
    {
        entry.push(PrescriptionEntry { full_url: format!("{base}/{provenance}"), resource: body });
    }
    let doc = PrescriptionDocument {
        resource_type: "Bundle".into(),
        identifier: PrescriptionIdentifier { system: "urn:ietf:rfc:3986".into(), value: format!("urn:uuid:{id}") },
        kind: "document".into(),
        timestamp: composition.get("date").and_then(Value::as_str).unwrap_or_default().to_owned(),
        entry,
    };
    let mut resp = Json(doc).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(hearth_workflow::error::FHIR_JSON));
    Ok(resp)
}
