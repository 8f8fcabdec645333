//! Hearth patient journal (issue 20): a patient writes (or dictates) how their day went; the
//! journal finds mood, sentiment, symptoms and medications in it, searches it, and shows trends
//! the patient can export for their doctor.
//!
//! Decisions (see `docs/JOURNAL.md` for the whole list):
//! - **Each entry is a FHIR `DocumentReference`** (type LOINC 51855-5 "Patient Note", category
//!   `urn:hearth:journal|entry`): a patient-authored narrative is a document, its text is the
//!   first attachment (`text/plain`, inline), the date it is about is `context.period`, tags are
//!   more `category` codings (`urn:hearth:journal-tag`), the mood (1–5) an extension. So its
//!   history is FHIR history (every edit a version, `GET …/history`), who may read it is the
//!   store's access rule (the patient, their caregivers, and a clinician only within reach — their
//!   organisation's patients or a patient who shares with them through a `Consent`), every read
//!   is on the request's audit slip, and a clinician sees it in the record under `/fhir` too. An
//!   `Observation` would need the text in `valueString` and cannot hold audio; a
//!   `QuestionnaireResponse` would need a questionnaire the patient never saw.
//! - **Audio** is a FHIR `Media` (like the intake's voice answers) named by the entry's second
//!   attachment (`url` `Media/<id>`): bodies are encrypted at rest like every resource, the bytes
//!   do not repeat in every version of the entry, and a list never loads them. When a
//!   transcription provider is configured ([`transcribe`]) the transcript becomes the entry's
//!   text; otherwise the entry stays audio only and says so (`transcript: "not_configured"`).
//! - **Rows beside the record** (`hearth_store_sql::journal`, written in the entry's own
//!   transaction): the list/search row, the words for full-text search and the NLP results.
//! - **NLP runs after the write, as durable work** ([`worker`]): an entry whose analysis is
//!   missing, or was made of another version of the entry or by another [`nlp::ANALYSER_VERSION`],
//!   is pending by definition — the state is in the rows committed with the entry, so a crash or
//!   restart loses nothing and an edit or a new analyser re-runs it.
#![forbid(unsafe_code)]

mod entries;
pub mod nlp;
pub mod transcribe;
mod trends;
pub mod vader;
pub mod worker;

use std::sync::Arc;

use hearth_workflow::{Ctx, Mount, Workflow};
use serde::Deserialize;

/// The `[journal]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// The largest dictated entry accepted, in bytes of audio (1 KiB to 25 MiB).
    pub max_audio_bytes: u64,
    /// How often the NLP job looks for pending entries besides being woken by each write (1 to 3600 s).
    pub nlp_interval_secs: u64,
    /// The optional OpenAI-compatible transcription service for dictated entries.
    pub transcription: transcribe::TranscriptionConfig,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            max_audio_bytes: 5 * 1024 * 1024,
            nlp_interval_secs: 30,
            transcription: transcribe::TranscriptionConfig::default(),
        }
    }
}

impl JournalConfig {
    /// Checks the values (the configuration's `validate` calls it).
    pub fn validate(&self) -> Result<(), String> {
        if !(1024..=25 * 1024 * 1024).contains(&self.max_audio_bytes) {
            return Err("journal.max_audio_bytes must be 1024 to 26214400".into());
        }
        if !(1..=3600).contains(&self.nlp_interval_secs) {
            return Err("journal.nlp_interval_secs must be 1 to 3600".into());
        }
        self.transcription.validate()
    }
}

/// The journal workflow's state.
pub struct Journal {
    ctx: Arc<Ctx>,
    pub config: JournalConfig,
    /// Wakes the NLP job after a write.
    wake: tokio::sync::Notify,
    /// The transcription service, when configured.
    transcriber: Option<transcribe::Transcriber>,
}

impl Journal {
    pub fn new(ctx: Arc<Ctx>, config: JournalConfig) -> Journal {
        let transcriber = transcribe::Transcriber::new(&config.transcription);
        Journal { ctx, config, wake: tokio::sync::Notify::new(), transcriber }
    }
}

impl std::ops::Deref for Journal {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

impl AsRef<Ctx> for Journal {
    fn as_ref(&self) -> &Ctx {
        &self.ctx
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    entries::create,
    entries::list,
    entries::read,
    entries::update,
    entries::delete,
    entries::history,
    trends::trends,
    trends::export,
))]
struct Api;

impl Workflow for Journal {
    /// Every route reads or writes a patient's journal: all `audited`.
    fn mount(self: Arc<Self>) -> Mount {
        worker::start(&self);
        Mount {
            audited: entries::router().merge(trends::router()).with_state(self),
            refusals_audited: axum::Router::new(),
            fhir_operations: axum::Router::new(),
            openapi: <Api as utoipa::OpenApi>::openapi(),
        }
    }
}
