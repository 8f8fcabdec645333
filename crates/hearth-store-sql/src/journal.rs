//! The journal tables (migration `0026_journal.sql`), written once over [`Db`] for both backends:
//! one row per entry beside its DocumentReference (written in the same transaction), the entry's
//! words for full-text search (SQLite FTS5, PostgreSQL `tsvector` with the `simple`
//! configuration), and the NLP job's results (`nlp_analysis`). Only `hearth-journal` calls this
//! module; erasure ([`crate::erase`]) removes a patient's rows with [`erase_patient`].

use hearth_store::StoreError;

use crate::identity::{corrupt, int, text};
use crate::{Builder, Col, Db, Dialect, Exec, Val};

/// One entry's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRow {
    /// The DocumentReference id.
    pub id: String,
    pub patient: String,
    /// The DocumentReference's current versionId.
    pub version: i64,
    /// `text` or `audio`.
    pub kind: String,
    /// The date the entry is about, `YYYY-MM-DD`.
    pub entry_date: String,
    pub mood: Option<i64>,
    pub tags: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What the NLP job stored for an entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisRow {
    pub entry_id: String,
    pub patient: String,
    pub entry_version: i64,
    pub analyser_version: String,
    /// `scored` or `not_scored`.
    pub sentiment_status: String,
    pub compound: Option<f64>,
    /// SNOMED codes of the symptoms present.
    pub symptoms: Vec<String>,
    /// The whole analysis as JSON.
    pub detail: String,
    pub analysed_at: i64,
}

/// A listed entry with its analysis, if there is one yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub entry: EntryRow,
    pub analysis: Option<AnalysisRow>,
}

/// The filters of a list (all optional but the patient); dates are `YYYY-MM-DD`, inclusive.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub patient: String,
    /// Every word must occur in the entry's text.
    pub words: Vec<String>,
    pub tag: Option<String>,
    pub mood_min: Option<i64>,
    pub mood_max: Option<i64>,
    /// Only entries with a sentiment score in range (entries not scored never match).
    pub sentiment_min: Option<f64>,
    pub sentiment_max: Option<f64>,
    /// A SNOMED code of a symptom present (not negated).
    pub symptom: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// Keyset cursor: entries ordered before `(entry_date, id)` (newest first).
    pub before: Option<(String, String)>,
}

fn bars(items: &[String]) -> String {
    let mut s = String::from("|");
    for i in items {
        s.push_str(i);
        s.push('|');
    }
    if items.is_empty() {
        s.push('|');
    }
    s
}

fn unbar(s: &str) -> Vec<String> {
    s.split('|').filter(|t| !t.is_empty()).map(str::to_owned).collect()
}

fn real(v: Option<Val>) -> Result<Option<f64>, StoreError> {
    match v {
        Some(Val::Real(r)) => Ok(r),
        Some(Val::Int(i)) => Ok(i.map(|i| i as f64)),
        _ => Err(corrupt()),
    }
}

/// Writes an entry's row (new or a new version) and its searchable words.
pub async fn save_entry(db: &dyn Db, e: &EntryRow, words: &str) -> Result<(), StoreError> {
    let dialect = db.dialect();
    let mut b = Builder::new(dialect);
    b.push("INSERT INTO journal_entries (id, patient, version, kind, entry_date, mood, tags, created_at, updated_at) VALUES (");
    b.text(&e.id).push(", ").text(&e.patient).push(", ").int(e.version).push(", ").text(&e.kind).push(", ");
    b.text(&e.entry_date).push(", ").bind(Val::Int(e.mood)).push(", ").text(&bars(&e.tags)).push(", ");
    b.int(e.created_at).push(", ").int(e.updated_at).push(")");
    b.push(
        " ON CONFLICT (id) DO UPDATE SET version = excluded.version, kind = excluded.kind, \
         entry_date = excluded.entry_date, mood = excluded.mood, tags = excluded.tags, updated_at = excluded.updated_at",
    );
    db.execute(&b.finish()).await?;
    let mut b = Builder::new(dialect);
    b.push("DELETE FROM journal_text WHERE id = ").text(&e.id);
    db.execute(&b.finish()).await?;
    if !words.trim().is_empty() {
        let mut b = Builder::new(dialect);
        match dialect {
            Dialect::Sqlite => {
                b.push("INSERT INTO journal_text (id, body) VALUES (").text(&e.id).push(", ").text(words).push(")");
            }
            Dialect::Postgres => {
                b.push("INSERT INTO journal_text (id, body, tsv) VALUES (")
                    .text(&e.id)
                    .push(", ")
                    .text(words)
                    .push(", to_tsvector('simple', ")
                    .text(words)
                    .push("))");
            }
        }
        db.execute(&b.finish()).await?;
    }
    Ok(())
}

/// Removes an entry's rows (its DocumentReference is deleted in the same transaction).
pub async fn remove(db: &dyn Db, id: &str) -> Result<(), StoreError> {
    for table in ["DELETE FROM journal_text WHERE id = ", "DELETE FROM nlp_analysis WHERE entry_id = "] {
        let mut b = Builder::new(db.dialect());
        b.push(table).text(id);
        db.execute(&b.finish()).await?;
    }
    let mut b = Builder::new(db.dialect());
    b.push("DELETE FROM journal_entries WHERE id = ").text(id);
    db.execute(&b.finish()).await?;
    Ok(())
}

/// Removes every journal row of `patient` (data-rights erasure, in its transaction).
pub async fn erase_patient(exec: &mut dyn Exec, patient: &str) -> Result<(), StoreError> {
    let dialect = exec.dialect();
    let mut b = Builder::new(dialect);
    b.push("DELETE FROM journal_text WHERE id IN (SELECT id FROM journal_entries WHERE patient = ")
        .text(patient)
        .push(")");
    exec.execute(&b.finish()).await?;
    for table in ["nlp_analysis", "journal_entries"] {
        let mut b = Builder::new(dialect);
        b.push("DELETE FROM ").push(table).push(" WHERE patient = ").text(patient);
        exec.execute(&b.finish()).await?;
    }
    Ok(())
}

const ENTRY_COLUMNS: &str =
    "e.id, e.patient, e.version, e.kind, e.entry_date, e.mood, e.tags, e.created_at, e.updated_at";
const ENTRY_COLS: [Col; 9] =
    [Col::Text, Col::Text, Col::Int, Col::Text, Col::Text, Col::Int, Col::Text, Col::Int, Col::Int];
const ANALYSIS_COLUMNS: &str = "a.entry_id, a.patient, a.entry_version, a.analyser_version, a.sentiment_status, \
     a.compound, a.symptoms, a.detail, a.analysed_at";
const ANALYSIS_COLS: [Col; 9] =
    [Col::Text, Col::Text, Col::Int, Col::Text, Col::Text, Col::Real, Col::Text, Col::Text, Col::Int];

fn decode_entry(it: &mut impl Iterator<Item = Val>) -> Result<EntryRow, StoreError> {
    Ok(EntryRow {
        id: text(it.next())?.ok_or_else(corrupt)?,
        patient: text(it.next())?.ok_or_else(corrupt)?,
        version: int(it.next())?.ok_or_else(corrupt)?,
        kind: text(it.next())?.ok_or_else(corrupt)?,
        entry_date: text(it.next())?.ok_or_else(corrupt)?,
        mood: int(it.next())?,
        tags: unbar(&text(it.next())?.ok_or_else(corrupt)?),
        created_at: int(it.next())?.ok_or_else(corrupt)?,
        updated_at: int(it.next())?.ok_or_else(corrupt)?,
    })
}

fn decode_analysis(it: &mut impl Iterator<Item = Val>) -> Result<Option<AnalysisRow>, StoreError> {
    let Some(entry_id) = text(it.next())? else { return Ok(None) };
    Ok(Some(AnalysisRow {
        entry_id,
        patient: text(it.next())?.ok_or_else(corrupt)?,
        entry_version: int(it.next())?.ok_or_else(corrupt)?,
        analyser_version: text(it.next())?.ok_or_else(corrupt)?,
        sentiment_status: text(it.next())?.ok_or_else(corrupt)?,
        compound: real(it.next())?,
        symptoms: unbar(&text(it.next())?.ok_or_else(corrupt)?),
        detail: text(it.next())?.ok_or_else(corrupt)?,
        analysed_at: int(it.next())?.ok_or_else(corrupt)?,
    }))
}

/// One entry's row with its analysis.
pub async fn entry(db: &dyn Db, id: &str) -> Result<Option<Listed>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(ENTRY_COLUMNS).push(", ").push(ANALYSIS_COLUMNS);
    b.push(" FROM journal_entries e LEFT JOIN nlp_analysis a ON a.entry_id = e.id WHERE e.id = ").text(id);
    let cols: Vec<Col> = ENTRY_COLS.iter().chain(ANALYSIS_COLS.iter()).copied().collect();
    let Some(row) = db.fetch(&b.finish(), &cols).await?.into_iter().next() else { return Ok(None) };
    let mut it = row.into_iter();
    let entry = decode_entry(&mut it)?;
    let analysis = decode_analysis(&mut it)?;
    Ok(Some(Listed { entry, analysis }))
}

/// The patient's entries matching `f`, newest first (by the date they are about, then id), at
/// most `limit`.
pub async fn list(db: &dyn Db, f: &Filter, limit: i64) -> Result<Vec<Listed>, StoreError> {
    let dialect = db.dialect();
    let mut b = Builder::new(dialect);
    b.push("SELECT ").push(ENTRY_COLUMNS).push(", ").push(ANALYSIS_COLUMNS);
    b.push(" FROM journal_entries e LEFT JOIN nlp_analysis a ON a.entry_id = e.id WHERE e.patient = ").text(&f.patient);
    if !f.words.is_empty() {
        match dialect {
            Dialect::Sqlite => {
                // Each word a quoted FTS5 string: no query syntax reaches the parser from the caller.
                let query: Vec<String> = f.words.iter().map(|w| format!("\"{}\"", w.replace('"', "\"\""))).collect();
                b.push(" AND e.id IN (SELECT id FROM journal_text WHERE journal_text MATCH ")
                    .text(&query.join(" "))
                    .push(")");
            }
            Dialect::Postgres => {
                b.push(" AND e.id IN (SELECT id FROM journal_text WHERE tsv @@ plainto_tsquery('simple', ")
                    .text(&f.words.join(" "))
                    .push("))");
            }
        }
    }
    if let Some(tag) = &f.tag {
        b.push(" AND ").contains("e.tags", &format!("|{tag}|"));
    }
    if let Some(m) = f.mood_min {
        b.push(" AND e.mood >= ").int(m);
    }
    if let Some(m) = f.mood_max {
        b.push(" AND e.mood <= ").int(m);
    }
    if let Some(s) = f.sentiment_min {
        b.push(" AND a.compound >= ").real(s);
    }
    if let Some(s) = f.sentiment_max {
        b.push(" AND a.compound <= ").real(s);
    }
    if let Some(code) = &f.symptom {
        b.push(" AND ").contains("a.symptoms", &format!("|{code}|"));
    }
    if let Some(d) = &f.from {
        b.push(" AND e.entry_date >= ").text(d);
    }
    if let Some(d) = &f.to {
        b.push(" AND e.entry_date <= ").text(d);
    }
    if let Some((date, id)) = &f.before {
        b.push(" AND (e.entry_date < ").text(date).push(" OR (e.entry_date = ").text(date);
        b.push(" AND e.id < ").text(id).push("))");
    }
    b.push(" ORDER BY e.entry_date DESC, e.id DESC LIMIT ").int(limit);
    let cols: Vec<Col> = ENTRY_COLS.iter().chain(ANALYSIS_COLS.iter()).copied().collect();
    db.fetch(&b.finish(), &cols)
        .await?
        .into_iter()
        .map(|row| {
            let mut it = row.into_iter();
            let entry = decode_entry(&mut it)?;
            let analysis = decode_analysis(&mut it)?;
            Ok(Listed { entry, analysis })
        })
        .collect()
}

/// An entry the NLP job has to (re)analyse: its id, patient, version and words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub id: String,
    pub patient: String,
    pub version: i64,
    pub words: String,
}

/// Entries with no analysis, or one of another entry version or analyser version, oldest
/// change first, at most `limit`.
pub async fn pending(db: &dyn Db, analyser_version: &str, limit: i64) -> Result<Vec<Pending>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push(
        "SELECT e.id, e.patient, e.version, t.body FROM journal_entries e \
         LEFT JOIN nlp_analysis a ON a.entry_id = e.id LEFT JOIN journal_text t ON t.id = e.id \
         WHERE a.entry_id IS NULL OR a.entry_version <> e.version OR a.analyser_version <> ",
    )
    .text(analyser_version)
    .push(" ORDER BY e.updated_at, e.id LIMIT ")
    .int(limit);
    db.fetch(&b.finish(), &[Col::Text, Col::Text, Col::Int, Col::Text])
        .await?
        .into_iter()
        .map(|row| {
            let mut it = row.into_iter();
            Ok(Pending {
                id: text(it.next())?.ok_or_else(corrupt)?,
                patient: text(it.next())?.ok_or_else(corrupt)?,
                version: int(it.next())?.ok_or_else(corrupt)?,
                words: text(it.next())?.unwrap_or_default(),
            })
        })
        .collect()
}

/// Stores an analysis, unless its entry has changed (or gone) since it was read: then the next
/// run analyses the new version. Answers whether it was stored.
pub async fn save_analysis(db: &dyn Db, a: &AnalysisRow) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push(
        "INSERT INTO nlp_analysis (entry_id, patient, entry_version, analyser_version, sentiment_status, \
         compound, symptoms, detail, analysed_at) SELECT ",
    );
    b.text(&a.entry_id).push(", ").text(&a.patient).push(", ").int(a.entry_version).push(", ");
    b.text(&a.analyser_version).push(", ").text(&a.sentiment_status).push(", ").bind(Val::Real(a.compound));
    b.push(", ").text(&bars(&a.symptoms)).push(", ").text(&a.detail).push(", ").int(a.analysed_at);
    b.push(" WHERE EXISTS (SELECT 1 FROM journal_entries WHERE id = ").text(&a.entry_id);
    b.push(" AND version = ").int(a.entry_version).push(")");
    b.push(
        " ON CONFLICT (entry_id) DO UPDATE SET entry_version = excluded.entry_version, \
         analyser_version = excluded.analyser_version, sentiment_status = excluded.sentiment_status, \
         compound = excluded.compound, symptoms = excluded.symptoms, detail = excluded.detail, \
         analysed_at = excluded.analysed_at",
    );
    Ok(db.execute(&b.finish()).await? == 1)
}
