//! Hearth patient intake (issue 17): the pure engine, the interview runner and the workflow.
//!
//! The workflow around the engine (see `docs/INTAKE.md` for its decisions): sessions in the
//! database ([`Intakes`], `service.rs`; SQL in `hearth_store_sql::intake`), consent recorded
//! first as a FHIR `Consent`, the interview over HTTP (`routes.rs`) and a WebSocket (`ws.rs`)
//! run from FHIR SDC Questionnaires (`interview.rs`, pure; built-in packs in `packs.rs`), the
//! engine run after every turn over everything said plus the screening answers (`session.rs`,
//! pure), an emergency stopping the interview with the safety message and recorded as `Flag`,
//! `RiskAssessment`, `Observation`s and provisional `Condition`s with a critical alert to the
//! clinic in the same transaction (`records.rs`), and the clinician's English summary and queue
//! (`summary.rs`). The optional OpenAI-compatible chat and transcription providers
//! (`model.rs`) are asked inline in a turn after the rules, never on an emergency, and only add
//! (through [`Engine::merge_model`]); a voice answer without transcription is kept as a FHIR
//! `Media`. Uses `hearth-notifications` (`enqueue`) and nothing else of other workflows.
//!
//! Patients in India describe their problem before a visit in English (`en`), Hindi in
//! Devanagari (`hi`) or code-mixed Hinglish in Latin script (`hi-Latn`). This crate turns that
//! text into coded findings, runs deterministic red-flag rules no model can switch off, and
//! triages. The engine (`engine/`) does no I/O: no HTTP, storage, clock or async; nor do the interview
//! runner, the session logic, the records and the summary builders.
//!
//! # What the engine does
//! 1. **Lexicon** (`data/lexicon.json`, embedded and checked once): SNOMED CT findings and body
//!    sites with the words patients use in the three languages (colloquial terms, misspellings,
//!    transliterations), refinements (pain + chest site = chest pain) and context cues. Text is
//!    lower-cased, punctuation becomes clause/sentence breaks, Devanagari nukta, chandrabindu
//!    and anusvara are dropped, and romanised Hindi is also matched on a loose spelling key
//!    ("bukhaar" = "bukhar"). Phrases match on token boundaries, longest first.
//! 2. **Context** ([`Finding`]): polarity (negation before, and in Hindi after, the symptom),
//!    temporality (current, resolved, past), experiencer (patient or someone else), severity,
//!    and the evidence span (byte range + the patient's words). The scoping rules are in
//!    `src/engine/extract.rs`.
//! 3. **Red flags** (`data/red_flags.json`): each rule has a stable code, title, the guideline
//!    it follows (title + URL) and urgency tiers with conditions over findings, age, sex and
//!    form answers. Loading refuses unknown codes, sites, sets, facts or a rule without source.
//! 4. **Triage** ([`Assessment`]): the red flags fired (with evidence) and the overall
//!    [`Urgency`].
//! 5. **Safety message** ([`safety_message`], [`Assessment::safety_message`]) in the patient's
//!    language for an emergency, with configurable numbers (default 112, ambulance 108).
//! 6. **Model guardrail** ([`Engine::merge_model`]): a language model's proposal can add
//!    findings (marked model-suggested) and red flags and raise urgency, never remove or lower.
//!
//! # Decisions where the brief was silent
//! - Overall urgency is the maximum of the fired rules *and* the base urgency of the patient's
//!   current findings (each lexicon finding has a `base_urgency`: pain and back pain
//!   `routine`, fever or numbness `soon`, chest pain or breathlessness `urgent`, sore throat
//!   `self_care`, ...). Text with no recognised finding is `routine`, never `self_care`.
//! - Safety beats precision: a negation does not reach across "and"/"aur" or a clause break, a
//!   Hindi post-negation only skips filler words ("to", "bhi", "koi"), and "pehle" followed
//!   by onset words ("shuru hua") or "din pehle"/"days ago" is not history. So an ambiguous
//!   sentence leaves a symptom present (a false alarm, not a missed red flag).
//! - Temporality has a third value, `resolved` ("ab nahi hai", "went away"): such findings
//!   still count for rules that ask for them (a transient ischaemic attack, recent chest pain).
//!   History ("saal pehle", "used to") counts only where a rule asks for any time (a past
//!   cancer, TB or HIV for spinal rules).
//! - When a parent answers for a child ([`Facts::filled_by_proxy`]), "my son", "meri beti" are
//!   the patient; otherwise any relative is someone else. The experiencer cue closest before
//!   the finding in its sentence decides.
//! - A rule's age condition is false when the age is unknown; the age comes from the form,
//!   else from the text ("65 saal ki hoon", "8 year old") when it is about the patient.
//! - Extra rule beyond the required list: `meningitis` (fever with neck stiffness or
//!   photophobia, NICE NG240).
//! - The deterministic rules are re-run over a model's findings during the merge, so a symptom
//!   only the model understood still raises the guideline red flag (marked model-suggested).
//!
//! # Public surface
//! [`Engine::builtin`], [`Engine::from_json`], [`Engine::assess`], [`Engine::extract`],
//! [`Engine::rules`], [`Engine::merge_model`]; the data types [`Intake`], [`Facts`],
//! [`Assessment`], [`Finding`], [`RedFlag`], [`Evidence`], [`Coding`], [`Source`],
//! [`RuleInfo`], [`Urgency`], [`Language`], [`Polarity`], [`Temporality`], [`Experiencer`],
//! [`Origin`], [`Sex`]; [`ModelProposal`], [`ProposedFinding`], [`ProposedRedFlag`];
//! [`SafetyConfig`], [`safety_message`]; [`DataError`]. `data/vignettes.json` is the
//! evaluation set run by `tests/vignettes.rs`.
//!
//! ```
//! use hearth_intake::{Engine, Facts, Intake, Language, SafetyConfig, Urgency};
//!
//! let engine = Engine::builtin().unwrap();
//! let intake = Intake {
//!     language: Language::HiLatn,
//!     text: "saddle area sunn ho gaya hai aur pishab nahi ho raha".to_owned(),
//!     facts: Facts::default(),
//! };
//! let assessment = engine.assess(&intake);
//! assert!(assessment.has_flag("cauda_equina"));
//! assert_eq!(assessment.urgency, Urgency::Emergency);
//! assert!(assessment.safety_message(&SafetyConfig::default()).unwrap().contains("112"));
//! ```
#![forbid(unsafe_code)]

pub mod engine;
pub mod interview;
pub mod model;
pub mod packs;
pub mod records;
mod routes;
mod service;
pub mod session;
pub mod summary;
mod ws;

use std::sync::Arc;

pub use engine::*;
pub use service::{IntakeConfig, Intakes};

use hearth_workflow::{Mount, Workflow};

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    routes::start_walk_in,
    routes::start_for_appointment,
    routes::get_one,
    routes::message,
    routes::voice,
    routes::summary,
    routes::review,
    routes::queue_live,
    routes::queue,
    ws::socket,
))]
struct Api;

impl Workflow for Intakes {
    /// Every route reads or changes someone's record: all `audited`.
    fn mount(self: Arc<Self>) -> Mount {
        Mount {
            audited: routes::router().with_state(self),
            refusals_audited: axum::Router::new(),
            fhir_operations: axum::Router::new(),
            openapi: <Api as utoipa::OpenApi>::openapi(),
        }
    }
}
