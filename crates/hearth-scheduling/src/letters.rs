//! Clinical letters (`/api/patients/{id}/letters`) and encounter notes
//! (`/api/v1/encounters/{id}/notes`): each one a FHIR `Composition` (the structured record) and a
//! `DocumentReference` with the same id (the document: HTML, plain text and PDF renditions),
//! written together in one transaction.
//!
//! Decisions:
//! - Kinds: `consult` (LOINC 11488-4 Consult note), `summary` (34133-9 Summary of episode note),
//!   `referral` (57133-1 Referral note); notes on an encounter are 11506-3 Progress note.
//! - Status: `draft` (Composition `preliminary`) → `final` → `amended`. A draft may be edited in
//!   place; a change to a final letter is an amendment: new versions of both resources with
//!   status `amended`. Every earlier version stays readable (`…/versions`, FHIR `vread` and
//!   `_history`); a final letter never goes back to draft.
//! - Only clinicians (with a `Practitioner`, the author) write. Patients (and caregivers) read
//!   the final and amended versions of their own letters only: drafts answer `404` to them on
//!   this API. Every read goes through the caller's store view, so the request's AuditEvent
//!   names the patient (these routes run under the audit layer).
//! - The document comes in three renditions on the `DocumentReference`: HTML (every script), the
//!   plain text, and a PDF (`hearth_workflow::pdf`: the standard Helvetica font, nothing embedded, so text
//!   outside Latin-1 shows as `?` there; embedding fonts for every script would be a heavy
//!   dependency for what a browser prints from the HTML).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use data_encoding::BASE64;
use hearth_auth::Role;
use hearth_store::{Current, Guarded, HistoryQuery, HistoryScope, Version, interactions};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{bad, conflict, forbidden, instant, json_of, not_found, own_practitioner, read_json, ref_id, search_all};
use crate::Scheduling;
use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;
use hearth_workflow::{ApiCaller, Caller};

pub fn router() -> axum::Router<Arc<Scheduling>> {
    axum::Router::new()
        .route("/api/patients/{id}/letters", axum::routing::get(list).post(create))
        .route("/api/patients/{id}/letters/{letter}", axum::routing::get(get_one).put(update))
        .route("/api/patients/{id}/letters/{letter}/versions", axum::routing::get(versions))
        .route("/api/v1/encounters/{id}/notes", axum::routing::get(list_notes).post(create_note))
}

const LOINC: &str = "http://loinc.org";

fn kind_code(kind: &str) -> Option<(&'static str, &'static str)> {
    Some(match kind {
        "consult" => ("11488-4", "Consult note"),
        "summary" => ("34133-9", "Summary of episode note"),
        "referral" => ("57133-1", "Referral note"),
        "note" => ("11506-3", "Progress note"),
        _ => return None,
    })
}

fn kind_of(code: &str) -> &'static str {
    match code {
        "11488-4" => "consult",
        "34133-9" => "summary",
        "57133-1" => "referral",
        _ => "note",
    }
}

fn invalid(msg: impl Into<String>) -> ApiError {
    bad("invalid_letter", msg)
}

fn escape(s: &str) -> String {
    hearth_notify::templates::escape_html(s)
}

/// The letter's text as XHTML paragraphs (blank lines separate paragraphs, newlines break lines).
fn paragraphs(text: &str) -> String {
    text.split("\n\n")
        .filter(|p| !p.trim().is_empty())
        .map(|p| format!("<p>{}</p>", p.trim().lines().map(escape).collect::<Vec<_>>().join("<br/>")))
        .collect()
}

/// The status a rendition shows (a final letter shows none).
fn mark(status: &str) -> Option<&'static str> {
    match status {
        "preliminary" => Some("DRAFT"),
        "amended" => Some("AMENDED"),
        _ => None,
    }
}

fn rendered(title: &str, text: &str, status: &str, date: DateTime<Utc>) -> String {
    let mark = mark(status).map(|m| format!("<p><strong>{m}</strong></p>")).unwrap_or_default();
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{t}</title></head><body><h1>{t}</h1>{mark}<p>{d}</p>{body}</body></html>",
        t = escape(title),
        d = date.format("%Y-%m-%d"),
        body = paragraphs(text),
    )
}

struct Letter<'a> {
    id: &'a str,
    patient: &'a str,
    encounter: Option<&'a str>,
    /// Practitioner ids: the writer first, then whoever amended it.
    authors: &'a [String],
    kind: &'a str,
    title: &'a str,
    text: &'a str,
    /// Composition status: preliminary, final or amended.
    status: &'a str,
}

fn resources(l: &Letter<'_>, now: DateTime<Utc>) -> Result<(Value, Value), ApiError> {
    let (code, display) = kind_code(l.kind).ok_or_else(|| invalid("unknown kind"))?;
    let ty = json!({"coding": [{"system": LOINC, "code": code, "display": display}]});
    let mut c = json!({
        "resourceType": "Composition",
        "status": l.status,
        "type": ty,
        "subject": {"reference": format!("Patient/{}", l.patient)},
        "date": instant(now),
        "author": l.authors.iter().map(|a| json!({"reference": format!("Practitioner/{a}")})).collect::<Vec<_>>(),
        "title": l.title,
        "section": [{"title": l.title, "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{}</div>", paragraphs(l.text))}}],
    });
    let doc_status = if l.status == "preliminary" { "preliminary" } else { l.status };
    let mut d = json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "docStatus": doc_status,
        "type": ty,
        "subject": {"reference": format!("Patient/{}", l.patient)},
        "date": instant(now),
        "author": l.authors.iter().map(|a| json!({"reference": format!("Practitioner/{a}")})).collect::<Vec<_>>(),
        "description": l.title,
        "content": [
            {"attachment": {"contentType": "text/html; charset=utf-8", "data": BASE64.encode(rendered(l.title, l.text, l.status, now).as_bytes()), "title": l.title, "creation": instant(now)}},
            {"attachment": {"contentType": "text/plain; charset=utf-8", "data": BASE64.encode(l.text.as_bytes()), "title": l.title, "creation": instant(now)}},
            {"attachment": {"contentType": "application/pdf", "data": BASE64.encode(&hearth_workflow::pdf::letter(l.title, l.text, mark(l.status), now)), "title": l.title, "creation": instant(now)}},
        ],
        "context": {"related": [{"reference": format!("Composition/{}", l.id)}]},
    });
    if let Some(e) = l.encounter {
        if let Some(o) = c.as_object_mut() {
            o.insert("encounter".into(), json!({"reference": format!("Encounter/{e}")}));
        }
        if let Some(ctx) = d.get_mut("context").and_then(Value::as_object_mut) {
            ctx.insert("encounter".into(), json!([{"reference": format!("Encounter/{e}")}]));
        }
    }
    Ok((c, d))
}

fn app_status(composition_status: &str) -> &str {
    if composition_status == "preliminary" { "draft" } else { composition_status }
}

/// The plain text kept in the DocumentReference.
fn text_of(d: &Value) -> Option<String> {
    d.get("content")?.as_array()?.iter().find_map(|c| {
        let a = c.get("attachment")?;
        if !a.get("contentType")?.as_str()?.starts_with("text/plain") {
            return None;
        }
        String::from_utf8(BASE64.decode(a.get("data")?.as_str()?.as_bytes()).ok()?).ok()
    })
}

/// A letter or progress note, one version of it (stored as a FHIR Composition and a
/// DocumentReference with the same id).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct LetterView<'a> {
    id: &'a str,
    /// This version.
    version: u64,
    /// `draft`, `final` or `amended`.
    #[schema(example = "final")]
    status: &'a str,
    /// `consult`, `summary`, `referral` or `note`.
    #[schema(example = "consult")]
    kind: &'static str,
    #[schema(value_type = Option<String>, example = "Clinic letter")]
    title: Option<&'a Value>,
    /// The text; blank lines separate paragraphs.
    text: Option<String>,
    /// When this version was written (RFC 3339).
    #[schema(value_type = Option<String>)]
    date: Option<&'a Value>,
    /// The Patient id.
    patient: Option<&'a str>,
    /// The first author's Practitioner id.
    author: Option<&'a str>,
    /// Every author's Practitioner id.
    authors: Vec<&'a str>,
    /// The Encounter id.
    encounter: Option<&'a str>,
    /// The rendered document (HTML and plain text): `DocumentReference/<id>`.
    document: String,
}

/// Letters.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // The shape of `{"letters": [...]}`, built from `LetterView`s.
pub struct LetterList<'a> {
    letters: Vec<LetterView<'a>>,
}

/// Progress notes.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // The shape of `{"notes": [...]}`, built from `LetterView`s.
pub struct NoteList<'a> {
    notes: Vec<LetterView<'a>>,
}

/// A letter's versions.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // The shape of `{"versions": [...]}`, built from `LetterView`s.
pub struct LetterVersions<'a> {
    /// Newest first.
    versions: Vec<LetterView<'a>>,
}

fn letter_view<'a>(id: &'a str, version: u64, c: &'a Value, d: Option<&Value>) -> Value {
    json!(LetterView {
        id,
        version,
        status: app_status(c.get("status").and_then(Value::as_str).unwrap_or_default()),
        kind: kind_of(c.pointer("/type/coding/0/code").and_then(Value::as_str).unwrap_or_default()),
        title: c.get("title"),
        text: d.and_then(text_of),
        date: c.get("date"),
        patient: ref_id(c, "/subject/reference", "Patient"),
        author: ref_id(c, "/author/0/reference", "Practitioner"),
        authors: c
            .get("author")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|r| ref_id(r, "/reference", "Practitioner")).collect())
            .unwrap_or_default(),
        encounter: ref_id(c, "/encounter/reference", "Encounter"),
        document: format!("DocumentReference/{id}"),
    })
}

/// Whether the caller may see this version: clinicians and admins everything within reach,
/// others final and amended versions only.
fn visible(caller: &Caller, c: &Value) -> bool {
    matches!(caller.role, Role::Clinician | Role::Admin)
        || matches!(c.get("status").and_then(Value::as_str), Some("final" | "amended"))
}

fn author_of(caller: &Caller) -> Result<String, ApiError> {
    if caller.role != Role::Clinician {
        return Err(forbidden("only clinicians write letters and notes"));
    }
    own_practitioner(caller)
        .map(str::to_owned)
        .ok_or_else(|| forbidden("this clinician account has no Practitioner record"))
}

/// A new letter.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// `consult` (default), `summary` or `referral`.
    kind: Option<String>,
    /// 1–300 characters, one line.
    title: String,
    /// 1–200,000 characters; blank lines separate paragraphs.
    text: String,
    /// The Encounter id it belongs to.
    #[serde(default, deserialize_with = "hearth_workflow::refs::opt_encounter")]
    encounter: Option<String>,
    /// `draft` (default) or `final`.
    status: Option<String>,
}

fn check_text(title: &str, text: &str) -> Result<(), ApiError> {
    if !super::plain_text(title, 300) || title.contains(['\r', '\n']) || !super::plain_text(text, 200_000) {
        return Err(invalid("a title (1–300 characters) and a text (1–200,000 characters) are required"));
    }
    Ok(())
}

async fn write_new(
    app: &Scheduling,
    caller: &Caller,
    patient: &str,
    kind: &str,
    body: &CreateBody,
    encounter: Option<&str>,
) -> Result<Response, ApiError> {
    let author = author_of(caller)?;
    check_text(&body.title, &body.text)?;
    let status = match body.status.as_deref().unwrap_or("draft") {
        "draft" => "preliminary",
        "final" => "final",
        _ => return Err(invalid("a new letter is `draft` or `final`")),
    };
    let store = app.store_for(caller);
    if read_json(&store, "Patient", patient).await?.is_none() {
        return Err(not_found("patient"));
    }
    if let Some(e) = encounter {
        let (_, enc) = read_json(&store, "Encounter", e).await?.ok_or_else(|| not_found("encounter"))?;
        if ref_id(&enc, "/subject/reference", "Patient") != Some(patient) {
            return Err(invalid("that encounter is another patient's"));
        }
    }
    let now = app.clock.now();
    let id = uuid::Uuid::now_v7().to_string();
    let letter =
        Letter { id: &id, patient, encounter, authors: &[author], kind, title: &body.title, text: &body.text, status };
    let (c, d) = resources(&letter, now)?;
    super::check(app, "Composition", &c)?;
    super::check(app, "DocumentReference", &d)?;
    let mut tx = store.begin().await?;
    let cv =
        interactions::create(&mut tx, hearth_workflow::fhir::write_of(app, "Composition", id.clone(), c), now).await?;
    let dv =
        interactions::create(&mut tx, hearth_workflow::fhir::write_of(app, "DocumentReference", id.clone(), d), now)
            .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(letter_view(&id, cv.version_id, &json_of(&cv)?, Some(&json_of(&dv)?))))
        .into_response())
}

#[utoipa::path(post, path = "/api/patients/{id}/letters", tag = "letters",
    params(("id" = String, Path, description = "The patient's id")),
    request_body(content = CreateBody, description = "`kind` (consult, summary, referral), `title`, `text` (blank lines separate paragraphs), optional `encounter`, `status` draft (default) or final",
        example = json!({"kind": "consult", "title": "Clinic letter", "text": "Dear Dr Rao,\n\nI saw your patient today…", "status": "final"})),
    responses(
        (status = 201, description = "Stored as a Composition and a DocumentReference (HTML and plain text) with the same id", body = LetterView),
        (status = 400, description = "Malformed letter (`invalid_letter`)", body = ErrorEnvelope),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 403, description = "Not a clinician", body = ErrorEnvelope),
        (status = 404, description = "No such patient within reach", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(app): State<Arc<Scheduling>>,
    ApiCaller(caller): ApiCaller,
    Path(patient): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body: CreateBody = super::body_of(&bytes)?;
    let kind = body.kind.clone().unwrap_or_else(|| "consult".into());
    if kind == "note" || kind_code(&kind).is_none() {
        return Err(invalid("`kind` is consult, summary or referral (notes belong to an encounter)"));
    }
    if !hearth_workflow::fhir::valid_id(&patient)
        || body.encounter.as_deref().is_some_and(|e| !hearth_workflow::fhir::valid_id(e))
    {
        return Err(not_found("patient"));
    }
    write_new(&app, &caller, &patient, &kind, &body, body.encounter.as_deref()).await
}

/// The letters (or notes) of a patient the caller may see, newest first.
async fn letters_of(
    app: &Scheduling,
    caller: &Caller,
    store: &Guarded,
    pairs: &[(&str, String)],
    notes: bool,
) -> Result<Vec<Value>, ApiError> {
    let compositions = search_all(app, store, "Composition", pairs, 500).await?;
    let mut out = Vec::new();
    for v in &compositions {
        let c = json_of(v)?;
        let is_note = c.pointer("/type/coding/0/code").and_then(Value::as_str) == Some("11506-3");
        if is_note != notes || !visible(caller, &c) {
            continue;
        }
        let d = read_json(store, "DocumentReference", &v.id).await?.map(|(_, d)| d);
        out.push(letter_view(&v.id, v.version_id, &c, d.as_ref()));
    }
    Ok(out)
}

#[utoipa::path(get, path = "/api/patients/{id}/letters", tag = "letters",
    params(("id" = String, Path, description = "The patient's id")),
    responses(
        (status = 200, description = "The patient's letters, newest first (patients and caregivers: final and amended only)", body = LetterList),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 404, description = "No such patient within reach", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<Arc<Scheduling>>,
    ApiCaller(caller): ApiCaller,
    Path(patient): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = app.store_for(&caller);
    if read_json(&store, "Patient", &patient).await?.is_none() {
        return Err(not_found("patient"));
    }
    let pairs = [("subject", format!("Patient/{patient}")), ("_sort", "-date,-_id".to_owned())];
    Ok(Json(json!({"letters": letters_of(&app, &caller, &store, &pairs, false).await?})))
}

/// A letter of `patient` the caller may see: its current Composition and DocumentReference.
async fn load(
    store: &Guarded,
    caller: &Caller,
    patient: &str,
    id: &str,
) -> Result<(Version, Value, Option<Value>), ApiError> {
    let (v, c) = read_json(store, "Composition", id).await?.ok_or_else(|| not_found("letter"))?;
    if ref_id(&c, "/subject/reference", "Patient") != Some(patient) || !visible(caller, &c) {
        return Err(not_found("letter"));
    }
    let d = read_json(store, "DocumentReference", id).await?.map(|(_, d)| d);
    Ok((v, c, d))
}

#[utoipa::path(get, path = "/api/patients/{id}/letters/{letter}", tag = "letters",
    params(("id" = String, Path, description = "The patient's id"), ("letter" = String, Path, description = "The letter's id")),
    responses(
        (status = 200, description = "The letter's current version", body = LetterView),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 404, description = "No such letter (a draft, to a patient)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn get_one(
    State(app): State<Arc<Scheduling>>,
    ApiCaller(caller): ApiCaller,
    Path((patient, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (v, c, d) = load(&app.store_for(&caller), &caller, &patient, &id).await?;
    Ok(Json(letter_view(&id, v.version_id, &c, d.as_ref())))
}

#[utoipa::path(get, path = "/api/patients/{id}/letters/{letter}/versions", tag = "letters",
    params(("id" = String, Path, description = "The patient's id"), ("letter" = String, Path, description = "The letter's id")),
    responses(
        (status = 200, description = "Every version the caller may see, newest first: an amendment never hides the original", body = LetterVersions),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 404, description = "No such letter", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn versions(
    State(app): State<Arc<Scheduling>>,
    ApiCaller(caller): ApiCaller,
    Path((patient, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let store = app.store_for(&caller);
    let (current, _, _) = load(&store, &caller, &patient, &id).await?;
    let page = store
        .history(&HistoryQuery {
            scope: HistoryScope::Instance { resource_type: "Composition".into(), id: id.clone() },
            since: None,
            before: None,
            count: 1000,
        })
        .await?;
    let mut out = Vec::new();
    for v in page.entries.iter().filter(|v| v.version_id <= current.version_id && !v.is_deletion()) {
        let c = json_of(v)?;
        if !visible(&caller, &c) {
            continue;
        }
        let d = store.read_version("DocumentReference", &id, v.version_id).await?.and_then(|d| json_of(&d).ok());
        out.push(letter_view(&id, v.version_id, &c, d.as_ref()));
    }
    Ok(Json(json!({"versions": out})))
}

/// A change to a letter.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    /// A new title.
    title: Option<String>,
    /// A new text.
    text: Option<String>,
    /// `draft` or `final` while a draft; `amended` (or nothing) for a change to a final letter.
    status: Option<String>,
}

async fn amend(
    app: &Scheduling,
    caller: &Caller,
    patient: &str,
    id: &str,
    body: &UpdateBody,
) -> Result<Json<Value>, ApiError> {
    let author = author_of(caller)?;
    if !hearth_workflow::fhir::valid_id(id) {
        return Err(not_found("letter"));
    }
    let now = app.clock.now();
    let mut tx = app.store_for(caller).begin().await?;
    let (cv, c) = super::read_in(&mut tx, "Composition", id, "letter").await?;
    if ref_id(&c, "/subject/reference", "Patient") != Some(patient) {
        return Err(not_found("letter"));
    }
    let Current::Found(dv) = tx.read("DocumentReference", id).await? else { return Err(not_found("letter")) };
    let d = json_of(&dv)?;
    let from = c.get("status").and_then(Value::as_str).unwrap_or_default().to_owned();
    let to = match (from.as_str(), body.status.as_deref()) {
        ("preliminary", None | Some("draft")) => "preliminary",
        ("preliminary", Some("final")) => "final",
        ("final" | "amended", None | Some("amended")) => {
            if body.text.is_none() && body.title.is_none() {
                return Err(invalid("an amendment changes the title or the text"));
            }
            "amended"
        }
        ("final" | "amended", Some(s)) => {
            return Err(conflict(
                "invalid_transition",
                format!("a final letter cannot become {s}; change it as an amendment"),
            ));
        }
        (_, Some(s)) => return Err(invalid(format!("unknown status `{s}` (draft, final, amended)"))),
        _ => return Err(conflict("invalid_transition", "this letter cannot be changed")),
    };
    let title =
        body.title.clone().or_else(|| c.get("title").and_then(Value::as_str).map(str::to_owned)).unwrap_or_default();
    let text = body.text.clone().or_else(|| text_of(&d)).unwrap_or_default();
    check_text(&title, &text)?;
    // The writer stays the first author; whoever amends is added.
    let mut authors: Vec<String> = c
        .get("author")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|r| ref_id(r, "/reference", "Practitioner")).map(str::to_owned).collect())
        .unwrap_or_default();
    if !authors.contains(&author) {
        authors.push(author);
    }
    let code = c.pointer("/type/coding/0/code").and_then(Value::as_str).unwrap_or_default();
    let encounter = ref_id(&c, "/encounter/reference", "Encounter").map(str::to_owned);
    let letter = Letter {
        id,
        patient,
        encounter: encounter.as_deref(),
        authors: &authors,
        kind: kind_of(code),
        title: &title,
        text: &text,
        status: to,
    };
    let (c2, d2) = resources(&letter, now)?;
    super::check(app, "Composition", &c2)?;
    super::check(app, "DocumentReference", &d2)?;
    let cw = interactions::update(
        &mut tx,
        hearth_workflow::fhir::write_of(app, "Composition", id.to_owned(), c2),
        Some(cv.version_id),
        now,
    )
    .await?;
    let dw = interactions::update(
        &mut tx,
        hearth_workflow::fhir::write_of(app, "DocumentReference", id.to_owned(), d2),
        Some(dv.version_id),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(letter_view(id, cw.version.version_id, &json_of(&cw.version)?, Some(&json_of(&dw.version)?))))
}

#[utoipa::path(put, path = "/api/patients/{id}/letters/{letter}", tag = "letters",
    params(("id" = String, Path, description = "The patient's id"), ("letter" = String, Path, description = "The letter's id")),
    request_body(content = UpdateBody, description = "A draft: new `title`/`text`, `status` draft or final. A final letter: new `title`/`text` make an amendment (status amended, a new version; the original stays readable)",
        example = json!({"text": "Corrected dose: 5 mg once daily.", "status": "amended"})),
    responses(
        (status = 200, description = "The new version", body = LetterView),
        (status = 400, description = "Malformed change (`invalid_letter`)", body = ErrorEnvelope),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 403, description = "Not a clinician", body = ErrorEnvelope),
        (status = 404, description = "No such letter within reach", body = ErrorEnvelope),
        (status = 409, description = "A final letter cannot go back to draft", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn update(
    State(app): State<Arc<Scheduling>>,
    ApiCaller(caller): ApiCaller,
    Path((patient, id)): Path<(String, String)>,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: UpdateBody = super::body_of(&bytes)?;
    amend(&app, &caller, &patient, &id, &body).await
}

/// A progress note.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    /// Default: "Progress note".
    title: Option<String>,
    #[schema(example = "BP 150/95 sitting. Start amlodipine.")]
    text: String,
    /// `draft` (default) or `final`.
    status: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/encounters/{id}/notes", tag = "letters",
    params(("id" = String, Path, description = "The encounter's id")),
    request_body(content = NoteBody, description = "A progress note on the encounter: `text`, optional `title`, `status` draft (default) or final; amended like a letter through /api/patients/{id}/letters/{note}",
        example = json!({"text": "BP 150/95 sitting. Start amlodipine.", "status": "final"})),
    responses(
        (status = 201, description = "Stored as a Composition + DocumentReference (LOINC 11506-3) linked to the encounter", body = LetterView),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 403, description = "Not a clinician", body = ErrorEnvelope),
        (status = 404, description = "No such encounter within reach", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn create_note(
    State(app): State<Arc<Scheduling>>,
    ApiCaller(caller): ApiCaller,
    Path(encounter): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let note: NoteBody = super::body_of(&bytes)?;
    author_of(&caller)?;
    let (_, e) =
        read_json(&app.store_for(&caller), "Encounter", &encounter).await?.ok_or_else(|| not_found("encounter"))?;
    let patient = ref_id(&e, "/subject/reference", "Patient")
        .map(str::to_owned)
        .ok_or_else(|| ApiError::internal("encounter without patient"))?;
    let body = CreateBody {
        kind: None,
        title: note.title.unwrap_or_else(|| "Progress note".into()),
        text: note.text,
        encounter: None,
        status: note.status,
    };
    write_new(&app, &caller, &patient, "note", &body, Some(&encounter)).await
}

#[utoipa::path(get, path = "/api/v1/encounters/{id}/notes", tag = "letters",
    params(("id" = String, Path, description = "The encounter's id")),
    responses(
        (status = 200, description = "The encounter's notes the caller may see, newest first", body = NoteList),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 404, description = "No such encounter within reach", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn list_notes(
    State(app): State<Arc<Scheduling>>,
    ApiCaller(caller): ApiCaller,
    Path(encounter): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = app.store_for(&caller);
    read_json(&store, "Encounter", &encounter).await?.ok_or_else(|| not_found("encounter"))?;
    let pairs = [("encounter", format!("Encounter/{encounter}")), ("_sort", "-date,-_id".to_owned())];
    Ok(Json(json!({"notes": letters_of(&app, &caller, &store, &pairs, true).await?})))
}
