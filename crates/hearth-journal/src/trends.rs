//! `GET /api/v1/journal/trends` (symptom frequency, mood and sentiment per week or month) and
//! `GET /api/v1/journal/export` (the journal as JSON, CSV or a PDF for the patient's doctor).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{Datelike, NaiveDate};
use hearth_store::{Current, StoreError};
use hearth_store_sql::journal as sql;
use serde::Serialize;

use hearth_workflow::ApiCaller;
use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;

use crate::Journal;
use crate::entries::{bad, text_of};
use crate::nlp::ANALYSER_VERSION;

/// Most entries a trend or an export reads.
pub const MAX_ENTRIES: i64 = 5000;

pub(crate) fn router() -> axum::Router<Arc<Journal>> {
    axum::Router::new()
        .route("/api/v1/journal/trends", axum::routing::get(trends))
        .route("/api/v1/journal/export", axum::routing::get(export))
}

/// How often a symptom was reported.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct JournalSymptomCount {
    /// SNOMED CT code.
    code: String,
    name: String,
    /// Entries reporting it (negated mentions do not count).
    entries: u32,
}

/// One week or month.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct JournalBucket {
    /// The first day: a Monday (`week`) or the 1st (`month`).
    start: String,
    entries: u32,
    /// Mean mood (1–5) of the entries with one.
    mood_mean: Option<f64>,
    /// Mean VADER compound of the entries scored (English); Hindi and Hinglish are not scored.
    sentiment_mean: Option<f64>,
    /// Entries with a sentiment score.
    scored: u32,
    symptoms: Vec<JournalSymptomCount>,
}

/// A patient's trends.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct JournalTrends {
    patient: String,
    /// `week` or `month`.
    period: String,
    /// Oldest first; periods without entries are left out.
    buckets: Vec<JournalBucket>,
    /// Every symptom over the whole range, most reported first.
    symptoms: Vec<JournalSymptomCount>,
    /// Entries the NLP job has not analysed yet (they count for mood only).
    pending: u32,
    /// The analyser the figures come from.
    analyser_version: String,
}

struct Query {
    patient: Option<String>,
    period: Option<String>,
    format: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Query, ApiError> {
    let mut q = Query { patient: None, period: None, format: None, from: None, to: None };
    for (k, v) in hearth_workflow::fhir::pairs(raw) {
        if !allowed.contains(&k.as_str()) {
            return Err(bad("invalid_query", format!("unknown parameter '{k}' ({})", allowed.join(", "))));
        }
        let day = || {
            NaiveDate::parse_from_str(&v, "%Y-%m-%d")
                .ok()
                .filter(|_| v.len() == 10)
                .map(|_| v.clone())
                .ok_or_else(|| bad("invalid_query", format!("{k} is YYYY-MM-DD")))
        };
        match k.as_str() {
            "patient" => q.patient = Some(v.clone()),
            "period" => q.period = Some(v.clone()),
            "format" => q.format = Some(v.clone()),
            "from" => q.from = Some(day()?),
            "to" => q.to = Some(day()?),
            _ => {}
        }
    }
    Ok(q)
}

fn bucket_start(date: &str, month: bool) -> Option<String> {
    let d = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let start =
        if month { d.with_day(1)? } else { d - chrono::Days::new(u64::from(d.weekday().num_days_from_monday())) };
    Some(start.format("%Y-%m-%d").to_string())
}

async fn rows(app: &Journal, patient: String, q: &Query) -> Result<Vec<sql::Listed>, ApiError> {
    let filter = sql::Filter { patient, from: q.from.clone(), to: q.to.clone(), ..sql::Filter::default() };
    let mut rows = sql::list(&*app.db, &filter, MAX_ENTRIES).await?;
    rows.reverse();
    Ok(rows)
}

fn current(row: &sql::Listed) -> Option<crate::nlp::Analysis> {
    let a = row.analysis.as_ref()?;
    (a.entry_version == row.entry.version && a.analyser_version == ANALYSER_VERSION)
        .then(|| serde_json::from_str(&a.detail).ok())
        .flatten()
}

fn count(into: &mut BTreeMap<String, JournalSymptomCount>, code: &str, name: &str) {
    into.entry(code.to_owned())
        .or_insert_with(|| JournalSymptomCount { code: code.to_owned(), name: name.to_owned(), entries: 0 })
        .entries += 1;
}

fn ranked(m: BTreeMap<String, JournalSymptomCount>) -> Vec<JournalSymptomCount> {
    let mut v: Vec<JournalSymptomCount> = m.into_values().collect();
    v.sort_by(|a, b| b.entries.cmp(&a.entries).then_with(|| a.code.cmp(&b.code)));
    v
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| (v.iter().sum::<f64>() / v.len() as f64 * 10_000.0).round() / 10_000.0)
}

#[utoipa::path(get, path = "/api/v1/journal/trends", tag = "journal",
    params(
        ("patient" = Option<String>, Query, description = "The Patient id; default the caller's own record"),
        ("period" = Option<String>, Query, description = "`week` (default) or `month`"),
        ("from" = Option<String>, Query, description = "Entries about this day or later (YYYY-MM-DD)"),
        ("to" = Option<String>, Query, description = "Entries about this day or earlier (YYYY-MM-DD)"),
    ),
    responses(
        (status = 200, description = "Symptom frequency, mood and sentiment per period", body = JournalTrends),
        (status = 400, description = "A bad parameter (invalid_query) or no patient named (patient_required)", body = ErrorEnvelope),
        (status = 401, description = "No or an invalid access token (unauthenticated)", body = ErrorEnvelope),
        (status = 404, description = "Unknown patient, or outside the caller's reach (not_found)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn trends(
    State(app): State<Arc<Journal>>,
    ApiCaller(caller): ApiCaller,
    RawQuery(raw): RawQuery,
) -> Result<Json<JournalTrends>, ApiError> {
    let q = parse(raw.as_deref(), &["patient", "period", "from", "to"])?;
    let month = match q.period.as_deref() {
        None | Some("week") => false,
        Some("month") => true,
        Some(_) => return Err(bad("invalid_query", "period is week or month")),
    };
    let store = app.store_for(&caller);
    let (patient, _) = hearth_workflow::fhir::requested_patient(&store, &caller, q.patient.as_deref()).await?;
    let rows = rows(&app, patient.clone(), &q).await?;
    struct Acc {
        entries: u32,
        moods: Vec<f64>,
        sentiments: Vec<f64>,
        symptoms: BTreeMap<String, JournalSymptomCount>,
    }
    let mut buckets: BTreeMap<String, Acc> = BTreeMap::new();
    let mut total = BTreeMap::new();
    let mut pending = 0;
    for row in &rows {
        let Some(start) = bucket_start(&row.entry.entry_date, month) else { continue };
        let acc = buckets.entry(start).or_insert_with(|| Acc {
            entries: 0,
            moods: Vec::new(),
            sentiments: Vec::new(),
            symptoms: BTreeMap::new(),
        });
        acc.entries += 1;
        if let Some(m) = row.entry.mood {
            acc.moods.push(m as f64);
        }
        let Some(a) = current(row) else {
            pending += 1;
            continue;
        };
        if let Some(s) = &a.sentiment {
            acc.sentiments.push(s.compound);
        }
        let mut seen = Vec::new();
        for s in a.symptoms.iter().filter(|s| !s.negated) {
            if seen.contains(&s.code) {
                continue;
            }
            seen.push(s.code.clone());
            count(&mut acc.symptoms, &s.code, &s.name);
            count(&mut total, &s.code, &s.name);
        }
    }
    let buckets = buckets
        .into_iter()
        .map(|(start, a)| JournalBucket {
            start,
            entries: a.entries,
            mood_mean: mean(&a.moods),
            sentiment_mean: mean(&a.sentiments),
            scored: u32::try_from(a.sentiments.len()).unwrap_or(u32::MAX),
            symptoms: ranked(a.symptoms),
        })
        .collect();
    Ok(Json(JournalTrends {
        patient,
        period: if month { "month" } else { "week" }.to_owned(),
        buckets,
        symptoms: ranked(total),
        pending,
        analyser_version: ANALYSER_VERSION.to_owned(),
    }))
}

/// One exported entry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct JournalExportedEntry {
    id: String,
    date: String,
    mood: Option<i64>,
    tags: Vec<String>,
    /// `text` or `audio`.
    kind: String,
    text: Option<String>,
    /// VADER compound, when scored.
    sentiment: Option<f64>,
    /// `scored`, `not_scored` or `pending`.
    sentiment_status: String,
    /// Symptoms reported (not negated).
    symptoms: Vec<String>,
    /// Medications named (with `(not taken)` when negated).
    medications: Vec<String>,
}

/// The journal as JSON.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct JournalExport {
    patient: String,
    /// Oldest first.
    entries: Vec<JournalExportedEntry>,
}

fn csv_field(s: &str) -> String {
    // Quoted always; a leading formula character is defused for spreadsheets.
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_owned() };
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[utoipa::path(get, path = "/api/v1/journal/export", tag = "journal",
    params(
        ("patient" = Option<String>, Query, description = "The Patient id; default the caller's own record"),
        ("format" = Option<String>, Query, description = "`json` (default), `csv` or `pdf`"),
        ("from" = Option<String>, Query, description = "Entries about this day or later (YYYY-MM-DD)"),
        ("to" = Option<String>, Query, description = "Entries about this day or earlier (YYYY-MM-DD)"),
    ),
    responses(
        (status = 200, description = "The journal, oldest first: JSON (`JournalExport`), CSV (`text/csv`, one row an entry) or a PDF \
            (`application/pdf`: the PDF's standard font shows Latin-1 only, so Devanagari is set as `?` there; JSON and CSV carry every script)",
            content((JournalExport = "application/json"), (String = "text/csv"), (Vec<u8> = "application/pdf"))),
        (status = 400, description = "A bad parameter (invalid_query) or no patient named (patient_required)", body = ErrorEnvelope),
        (status = 401, description = "No or an invalid access token (unauthenticated)", body = ErrorEnvelope),
        (status = 404, description = "Unknown patient, or outside the caller's reach (not_found)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn export(
    State(app): State<Arc<Journal>>,
    ApiCaller(caller): ApiCaller,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = parse(raw.as_deref(), &["patient", "format", "from", "to"])?;
    let format = q.format.clone().unwrap_or_else(|| "json".into());
    if !["json", "csv", "pdf"].contains(&format.as_str()) {
        return Err(bad("invalid_query", "format is json, csv or pdf"));
    }
    let store = app.store_for(&caller);
    let (patient, _) = hearth_workflow::fhir::requested_patient(&store, &caller, q.patient.as_deref()).await?;
    let rows = rows(&app, patient.clone(), &q).await?;
    let mut entries = Vec::with_capacity(rows.len());
    for row in &rows {
        // Each entry's words come from the record, read through the caller's view.
        let text = match store.read("DocumentReference", &row.entry.id).await {
            Ok(Current::Found(v)) => {
                v.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).and_then(|r| text_of(&r))
            }
            Ok(_) | Err(StoreError::Forbidden(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        let analysed = current(row);
        entries.push(JournalExportedEntry {
            id: row.entry.id.clone(),
            date: row.entry.entry_date.clone(),
            mood: row.entry.mood,
            tags: row.entry.tags.clone(),
            kind: row.entry.kind.clone(),
            text,
            sentiment: analysed.as_ref().and_then(|x| x.sentiment.as_ref().map(|s| s.compound)),
            sentiment_status: analysed.as_ref().map_or_else(|| "pending".to_owned(), |x| x.sentiment_status.clone()),
            symptoms: analysed
                .as_ref()
                .map(|x| x.symptoms.iter().filter(|s| !s.negated).map(|s| s.name.clone()).collect())
                .unwrap_or_default(),
            medications: analysed
                .as_ref()
                .map(|x| {
                    x.medications
                        .iter()
                        .map(|m| if m.negated { format!("{} (not taken)", m.name) } else { m.name.clone() })
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    match format.as_str() {
        "csv" => {
            let mut out = String::from("id,date,mood,tags,sentiment,sentiment_status,symptoms,medications,text\r\n");
            for e in &entries {
                let cells = [
                    csv_field(&e.id),
                    csv_field(&e.date),
                    e.mood.map(|m| m.to_string()).unwrap_or_default(),
                    csv_field(&e.tags.join(";")),
                    e.sentiment.map(|s| s.to_string()).unwrap_or_default(),
                    csv_field(&e.sentiment_status),
                    csv_field(&e.symptoms.join(";")),
                    csv_field(&e.medications.join(";")),
                    csv_field(e.text.as_deref().unwrap_or_default()),
                ];
                out.push_str(&cells.join(","));
                out.push_str("\r\n");
            }
            Ok((
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (header::CONTENT_DISPOSITION, "attachment; filename=\"journal.csv\""),
                ],
                out,
            )
                .into_response())
        }
        "pdf" => {
            let mut text = String::new();
            for e in &entries {
                let mut head = e.date.clone();
                if let Some(m) = e.mood {
                    head.push_str(&format!("   mood {m}/5"));
                }
                match e.sentiment {
                    Some(s) => head.push_str(&format!("   sentiment {s:+.2}")),
                    None if e.sentiment_status == "not_scored" => head.push_str("   sentiment not scored"),
                    None => {}
                }
                text.push_str(&head);
                text.push('\n');
                if !e.symptoms.is_empty() {
                    text.push_str(&format!("Symptoms: {}\n", e.symptoms.join(", ")));
                }
                if !e.medications.is_empty() {
                    text.push_str(&format!("Medications: {}\n", e.medications.join(", ")));
                }
                if !e.tags.is_empty() {
                    text.push_str(&format!("Tags: {}\n", e.tags.join(", ")));
                }
                match &e.text {
                    Some(t) => text.push_str(t),
                    None => text.push_str("(dictated; no transcript)"),
                }
                text.push_str("\n\n");
            }
            if entries.is_empty() {
                text.push_str("No entries in this range.");
            }
            let pdf = hearth_workflow::pdf::text("Patient journal", &text);
            Ok((
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/pdf"),
                    (header::CONTENT_DISPOSITION, "attachment; filename=\"journal.pdf\""),
                ],
                pdf,
            )
                .into_response())
        }
        _ => Ok(Json(JournalExport { patient, entries }).into_response()),
    }
}
