//! The workflow's state and the operations its HTTP and WebSocket routes share: start a
//! session (consent first), load and authorise one, take a turn (with the records, alerts and
//! broadcast it causes), build the summary, review.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use axum::http::StatusCode;
use chrono::{DateTime, SecondsFormat, Utc};
use hearth_auth::Role;
use hearth_notifications::{Notice, Notifier};
use hearth_store::interactions;
use hearth_store::{Current, Guarded, Version};
use hearth_store_sql::intake::{self as sql, SessionRow};
use hearth_store_sql::notify::TxDb;
use hearth_workflow::error::ApiError;
use hearth_workflow::{Caller, Ctx};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::interview::{Applied, Input, Interview, Questionnaire};
use crate::model::{ProviderConfig, Providers};
use crate::session::{self, Status, Stored, Turn, TurnError, language_tag, parse_language, urgency_name};
use crate::summary::{self, Summary};
use crate::{Assessment, Engine, Language, SafetyConfig, Sex, packs, records};

/// The `[intake]` table.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeConfig {
    /// The emergency number the safety message names (default `112`).
    pub emergency_number: String,
    /// The ambulance number it names too (default `108`; empty: none).
    pub ambulance_number: String,
    /// The optional OpenAI-compatible chat model (`[intake.chat]`; off without `base_url`).
    pub chat: ProviderConfig,
    /// The optional OpenAI-compatible transcription service (`[intake.transcription]`).
    pub transcription: ProviderConfig,
    /// Largest voice answer accepted (bytes; default 5 MiB).
    pub voice_max_bytes: usize,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            emergency_number: "112".to_owned(),
            ambulance_number: "108".to_owned(),
            chat: ProviderConfig::default(),
            transcription: ProviderConfig::default(),
            voice_max_bytes: 5 * 1024 * 1024,
        }
    }
}

impl IntakeConfig {
    /// The numbers as the engine's safety message takes them.
    pub fn safety(&self) -> SafetyConfig {
        let ambulance = self.ambulance_number.trim();
        SafetyConfig {
            emergency_number: self.emergency_number.trim().to_owned(),
            ambulance_number: (!ambulance.is_empty()).then(|| ambulance.to_owned()),
        }
    }

    /// A phone number: 2 to 15 digits, optionally after a `+`.
    pub fn check(&self) -> Result<(), String> {
        let ok = |s: &str| {
            let digits = s.strip_prefix('+').unwrap_or(s);
            (2..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
        };
        if !ok(self.emergency_number.trim()) {
            return Err("intake.emergency_number must be a phone number (2 to 15 digits)".into());
        }
        if !self.ambulance_number.trim().is_empty() && !ok(self.ambulance_number.trim()) {
            return Err("intake.ambulance_number must be a phone number (2 to 15 digits) or empty".into());
        }
        self.chat.check("chat")?;
        self.transcription.check("transcription")?;
        if !(1024..=64 * 1024 * 1024).contains(&self.voice_max_bytes) {
            return Err("intake.voice_max_bytes must be 1 KiB to 64 MiB".into());
        }
        Ok(())
    }
}

/// The sockets of one session in this process, and the lock that serialises its turns here
/// (across processes the version check does).
pub(crate) struct Room {
    pub events: broadcast::Sender<Value>,
    pub turn: tokio::sync::Mutex<()>,
}

/// The intake workflow's state.
pub struct Intakes {
    ctx: Arc<Ctx>,
    pub config: IntakeConfig,
    pub notifier: Arc<Notifier>,
    rooms: std::sync::Mutex<HashMap<String, Weak<Room>>>,
    /// Counts the changes to sessions made in this process (a started, answered, finished or
    /// reviewed session), so the live queue answers at once; changes made by other processes
    /// reach it at its next periodic look.
    pub(crate) queue_changes: tokio::sync::watch::Sender<u64>,
    /// The optional chat and transcription providers.
    pub(crate) providers: Providers,
}

impl std::ops::Deref for Intakes {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

impl AsRef<Ctx> for Intakes {
    fn as_ref(&self) -> &Ctx {
        &self.ctx
    }
}

pub(crate) fn api(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(status, code, message)
}

pub(crate) fn not_found() -> ApiError {
    api(StatusCode::NOT_FOUND, "not_found", "no such intake session")
}

pub(crate) fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn millis(ms: i64) -> Option<String> {
    DateTime::from_timestamp_millis(ms).map(instant)
}

pub(crate) fn engine() -> Result<&'static Engine, ApiError> {
    Engine::builtin().map_err(|e| ApiError::internal(e.to_string()))
}

fn json_of(v: &Version) -> Result<Value, ApiError> {
    v.body
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .ok_or_else(|| ApiError::internal("stored resource is not JSON"))
}

pub(crate) fn is_staff(caller: &Caller) -> bool {
    matches!(caller.role, Role::Clinician | Role::Admin)
}

/// A session as loaded: its row and its decoded parts.
pub(crate) struct Loaded {
    pub row: SessionRow,
    pub stored: Stored,
    pub turns: Vec<Turn>,
    pub packs: Vec<Questionnaire>,
    pub language: Language,
    pub status: Status,
}

impl Loaded {
    fn decode(row: SessionRow) -> Result<Loaded, ApiError> {
        let bad = |what: &str| ApiError::internal(format!("stored intake session has an invalid {what}"));
        let stored: Stored = serde_json::from_str(&row.state).map_err(|_| bad("state"))?;
        let turns: Vec<Turn> = serde_json::from_str(&row.turns).map_err(|_| bad("turns"))?;
        let names: Vec<String> = serde_json::from_str(&row.packs).map_err(|_| bad("pack list"))?;
        let packs = resolve_stored(&names, &stored)?;
        let language = parse_language(&row.language).ok_or_else(|| bad("language"))?;
        let status = Status::parse(&row.status).ok_or_else(|| bad("status"))?;
        Ok(Loaded { row, stored, turns, packs, language, status })
    }

    pub fn assessment(&self) -> Result<Assessment, ApiError> {
        Ok(session::assess(engine()?, &self.packs, &self.stored, &self.turns, self.language))
    }

    pub fn interview(&self) -> Interview<'_> {
        Interview::new(&self.packs)
    }
}

/// The packs of a stored session: built-in ones by name, the clinic's from their snapshots.
fn resolve_stored(names: &[String], stored: &Stored) -> Result<Vec<Questionnaire>, ApiError> {
    names
        .iter()
        .map(|name| {
            if let Some(json) = stored.questionnaires.get(name) {
                return Questionnaire::parse(name, json).map_err(|e| ApiError::internal(e.to_string()));
            }
            packs::builtin(name)
                .map_err(|e| ApiError::internal(e.to_string()))?
                .ok_or_else(|| ApiError::internal(format!("built-in pack {name} is no longer shipped")))
        })
        .collect()
}

/// Why a caller may not have a session.
pub(crate) enum Refusal {
    Unknown,
    NotYours,
}

impl Intakes {
    pub fn new(ctx: Arc<Ctx>, config: IntakeConfig, notifier: Arc<Notifier>) -> Intakes {
        let providers = Providers::new(&config.chat, &config.transcription, Arc::clone(&ctx.metrics));
        Intakes {
            ctx,
            notifier,
            providers,
            config,
            rooms: std::sync::Mutex::new(HashMap::new()),
            queue_changes: tokio::sync::watch::channel(0).0,
        }
    }

    /// Tells the live queues of this process that a session changed.
    fn queue_changed(&self) {
        self.queue_changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn room(&self, id: &str) -> Arc<Room> {
        let mut rooms = match self.rooms.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(room) = rooms.get(id).and_then(Weak::upgrade) {
            return room;
        }
        rooms.retain(|_, w| w.strong_count() > 0);
        let room = Arc::new(Room { events: broadcast::channel(64).0, turn: tokio::sync::Mutex::new(()) });
        rooms.insert(id.to_owned(), Arc::downgrade(&room));
        room
    }

    /// Loads session `id` if `caller` may have it: the caller must reach the session's patient
    /// through their own store view (a patient: only themselves).
    pub(crate) async fn load_for(&self, caller: &Caller, id: &str) -> Result<Result<Loaded, Refusal>, ApiError> {
        if !hearth_workflow::fhir::valid_id(id) {
            return Ok(Err(Refusal::Unknown));
        }
        let Some(row) = sql::get(&*self.db, id).await? else { return Ok(Err(Refusal::Unknown)) };
        let own = caller.role != Role::Patient || caller.own_patient() == Some(row.patient.as_str());
        if !own || !matches!(self.store_for(caller).read("Patient", &row.patient).await?, Current::Found(_)) {
            return Ok(Err(Refusal::NotYours));
        }
        Loaded::decode(row).map(Ok)
    }

    /// [`Intakes::load_for`] for HTTP: both refusals are `404` (existence is private).
    pub(crate) async fn load(&self, caller: &Caller, id: &str) -> Result<Loaded, ApiError> {
        self.load_for(caller, id).await?.map_err(|_| not_found())
    }

    /// The view of a session the API answers: status, urgency, progress and what to show now
    /// (a [`SessionView`], as JSON).
    pub(crate) fn view(&self, s: &Loaded) -> Result<Value, ApiError> {
        let interview = s.interview();
        let progress = interview.progress(&s.stored.interview);
        let question = match s.status {
            Status::Active => interview
                .next(&s.stored.interview)
                .and_then(|pos| interview.question(&s.stored.interview, &pos, s.language)),
            _ => None,
        };
        let red_flags: Vec<String> = serde_json::from_str(&s.row.red_flags).unwrap_or_default();
        let alert = (s.status == Status::Emergency).then(|| self.alert(s.language, &red_flags));
        let view = SessionView {
            id: s.row.id.clone(),
            patient: s.row.patient.clone(),
            appointment: s.row.appointment.clone(),
            language: s.row.language.clone(),
            packs: serde_json::from_str(&s.row.packs).ok(),
            status: s.row.status.clone(),
            urgency: s.row.urgency.clone(),
            red_flags,
            progress,
            question,
            alert,
            done: s.status != Status::Active,
            consent: format!("Consent/{}", s.row.consent),
            composition: s.row.composition.as_ref().map(|c| format!("Composition/{c}")),
            reviewed_by: s.row.reviewed_by.clone(),
            reviewed_at: s.row.reviewed_at.and_then(millis),
            created_at: millis(s.row.created_at),
            updated_at: millis(s.row.updated_at),
            version: s.row.version,
            hint: None,
        };
        serde_json::to_value(view).map_err(ApiError::internal)
    }

    /// The safety alert shown to the patient.
    pub(crate) fn alert(&self, language: Language, red_flags: &[String]) -> SafetyAlert {
        let safety = self.config.safety();
        SafetyAlert {
            kind: "alert".into(),
            urgency: "emergency".into(),
            message: crate::safety_message(language, &safety),
            numbers: EmergencyNumbers { emergency: safety.emergency_number, ambulance: safety.ambulance_number },
            red_flags: red_flags.to_vec(),
        }
    }

    /// The summary of a session.
    pub(crate) fn summary(&self, s: &Loaded) -> Result<Summary, ApiError> {
        let assessment = s.assessment()?;
        Ok(summary::build(
            engine()?,
            &summary::Input {
                session: &s.row.id,
                patient: &s.row.patient,
                appointment: s.row.appointment.as_deref(),
                status: &s.row.status,
                language: s.language,
                packs: &s.packs,
                stored: &s.stored,
                turns: &s.turns,
                assessment: &assessment,
                reviewed_by: s.row.reviewed_by.clone(),
                reviewed_at: s.row.reviewed_at.and_then(millis),
            },
        ))
    }
}

/// What starts a session.
pub(crate) struct Start {
    pub patient: String,
    pub appointment: Option<String>,
    pub practitioner: Option<String>,
    pub language: String,
    pub consent: Option<bool>,
    pub packs: Option<Vec<String>>,
}

/// Most packs one session may run.
const MAX_PACKS: usize = 12;

fn age_on(birth: &str, today: chrono::NaiveDate) -> Option<u32> {
    let b = chrono::NaiveDate::parse_from_str(birth.get(..10)?, "%Y-%m-%d").ok()?;
    today.years_since(b)
}

impl Intakes {
    /// Starts a session: checks language, consent and packs, records the Consent, then the row,
    /// in one transaction.
    pub(crate) async fn start(&self, caller: &Caller, start: Start) -> Result<Loaded, ApiError> {
        let language = parse_language(&start.language)
            .ok_or_else(|| api(StatusCode::BAD_REQUEST, "unknown_language", "language must be en, hi or hi-Latn"))?;
        if start.consent != Some(true) {
            return Err(api(
                StatusCode::UNPROCESSABLE_ENTITY,
                "consent_required",
                "the patient must consent to the intake's purpose first (send \"consent\": true)",
            ));
        }
        let store = self.store_for(caller);
        let patient = match store.read("Patient", &start.patient).await? {
            Current::Found(v) => json_of(&v)?,
            _ => return Err(api(StatusCode::NOT_FOUND, "not_found", "no such patient")),
        };
        let names = match start.packs {
            Some(p) if p.is_empty() || p.len() > MAX_PACKS => {
                return Err(api(StatusCode::BAD_REQUEST, "invalid_packs", format!("name 1 to {MAX_PACKS} packs")));
            }
            Some(p) => p,
            None => packs::default_names(),
        };
        let mut stored = Stored::default();
        let mut list = Vec::new();
        for name in &names {
            if list.iter().any(|q: &Questionnaire| &q.name == name) {
                return Err(api(StatusCode::BAD_REQUEST, "invalid_packs", format!("pack {name} is named twice")));
            }
            list.push(self.pack(&store, name, &mut stored).await?);
        }
        let now = self.clock.now();
        stored.facts.age_years =
            patient.get("birthDate").and_then(Value::as_str).and_then(|b| age_on(b, now.date_naive()));
        stored.facts.sex = match patient.get("gender").and_then(Value::as_str) {
            Some("female") => Some(Sex::Female),
            Some("male") => Some(Sex::Male),
            Some("other") => Some(Sex::Other),
            _ => None,
        };
        let at = instant(now);
        let consent = records::consent(&start.patient, language, &at);
        check(self, "Consent", &consent)?;
        let consent_id = uuid::Uuid::now_v7().to_string();
        let mut tx = store.begin().await?;
        interactions::create(
            &mut tx,
            hearth_workflow::fhir::write_of(self, "Consent", consent_id.clone(), consent),
            now,
        )
        .await?;
        let db = TxDb::from_guarded(tx)?;
        let (urgency, rank) = urgency_name(crate::Urgency::Routine);
        let row = SessionRow {
            id: uuid::Uuid::now_v7().to_string(),
            patient: start.patient,
            appointment: start.appointment,
            practitioner: start.practitioner,
            language: language_tag(language).to_owned(),
            packs: json!(names).to_string(),
            state: serde_json::to_string(&stored).map_err(|e| ApiError::internal(e.to_string()))?,
            turns: "[]".to_owned(),
            status: Status::Active.as_str().to_owned(),
            urgency: urgency.to_owned(),
            urgency_rank: rank,
            red_flags: "[]".to_owned(),
            consent: consent_id,
            composition: None,
            created_by: caller.account.id.clone(),
            reviewed_by: None,
            reviewed_at: None,
            created_at: now.timestamp_millis(),
            updated_at: now.timestamp_millis(),
            version: 1,
        };
        sql::insert(&db, &row).await?;
        db.commit().await?;
        self.queue_changed();
        Loaded::decode(row)
    }

    async fn pack(&self, store: &Guarded, name: &str, stored: &mut Stored) -> Result<Questionnaire, ApiError> {
        let unknown = || {
            api(
                StatusCode::BAD_REQUEST,
                "unknown_pack",
                format!("unknown pack {name:?} (built-in: {}; or Questionnaire/<id>)", packs::names().join(", ")),
            )
        };
        if let Some(id) = name.strip_prefix("Questionnaire/") {
            if !hearth_workflow::fhir::valid_id(id) {
                return Err(unknown());
            }
            let Current::Found(v) = store.read("Questionnaire", id).await? else { return Err(unknown()) };
            let json = json_of(&v)?;
            let q = Questionnaire::parse(name, &json)
                .map_err(|e| api(StatusCode::UNPROCESSABLE_ENTITY, "invalid_questionnaire", e.to_string()))?;
            stored.questionnaires.insert(name.to_owned(), json);
            return Ok(q);
        }
        if name == packs::FALLBACK || packs::names().contains(&name) {
            return packs::builtin(name).map_err(|e| ApiError::internal(e.to_string()))?.ok_or_else(unknown);
        }
        Err(unknown())
    }
}

pub(crate) fn check(ctx: &Ctx, resource_type: &str, resource: &Value) -> Result<(), ApiError> {
    hearth_workflow::fhir::validate(ctx, resource_type, resource).map_err(|e| {
        ApiError::internal(format!(
            "the {resource_type} built by the intake does not validate: {:?}",
            e.issues.first().map(|i| &i.diagnostics)
        ))
    })
}

/// What a voice answer did.
pub(crate) struct VoiceTaken {
    pub answer: TurnAnswer,
    /// The transcription service's text (taken as the turn's words).
    pub transcript: Option<String>,
    /// `Media/<id>` of the audio kept for the clinician.
    pub media: Option<String>,
}

/// What a turn answers.
pub(crate) struct TurnAnswer {
    /// The session's view after the turn.
    pub view: Value,
    /// The patient's free text was not understood as an answer: the same question again.
    pub asked_again: Option<String>,
}

impl Intakes {
    /// Takes one turn of session `id` for `caller`, writes what it causes, tells the session's
    /// sockets, and answers the new view.
    pub(crate) async fn turn(&self, caller: &Caller, id: &str, input: Input) -> Result<TurnAnswer, ApiError> {
        self.turn_with(caller, id, input, None).await
    }

    /// [`Intakes::turn`]; `voice`: the text is a voice answer's transcript.
    async fn turn_with(
        &self,
        caller: &Caller,
        id: &str,
        input: Input,
        voice: Option<session::Voice>,
    ) -> Result<TurnAnswer, ApiError> {
        if let Input::Text(t) = &input
            && (t.trim().is_empty() || t.len() > crate::interview::MAX_TEXT)
        {
            return Err(api(
                StatusCode::BAD_REQUEST,
                "invalid_message",
                format!("text must be 1 to {} bytes", crate::interview::MAX_TEXT),
            ));
        }
        let room = self.room(id);
        let _serial = room.turn.lock().await;
        let mut s = self.load(caller, id).await?;
        if s.status != Status::Active {
            return Err(api(
                StatusCode::CONFLICT,
                "session_finished",
                format!("this session is over ({})", s.row.status),
            ));
        }
        let engine = engine()?;
        let now = self.clock.now();
        let at = instant(now);
        let before = s.turns.len();
        let mut result = session::take_turn(engine, &s.packs, &mut s.stored, &mut s.turns, s.language, &input, &at)
            .map_err(|e| match e {
                TurnError::Finished => api(StatusCode::CONFLICT, "session_finished", "every question is answered"),
                TurnError::Answer(a) => api(StatusCode::UNPROCESSABLE_ENTITY, a.code, a.message),
            })?;
        let added = s.turns.len() > before;
        if let (true, Some(voice), Some(last)) = (added, voice, s.turns.last_mut()) {
            last.voice = Some(voice);
        }
        // The optional chat model reads the patient's new words, inline and bounded by its
        // timeout, after the deterministic engine decided; never when that found an emergency
        // (the safety message never waits for a model). Its proposal is merged add-only; any
        // failure leaves the deterministic result as it is.
        // A word or two that picked an option, a yes/no, a number or a date says nothing more
        // to a model: not sent.
        let just_a_pick = matches!(&result.applied, Applied::Answered(values)
            if values.iter().all(|v| !matches!(v, crate::interview::AnswerValue::String { .. })))
            && s.turns.last().is_some_and(|t| t.text.split_whitespace().count() <= 2);
        if added && !just_a_pick && result.status != Status::Emergency && self.providers.chat_enabled() {
            let text = s.turns.last().map(|t| t.text.clone()).unwrap_or_default();
            if !text.trim().is_empty()
                && let Some(note) = self.providers.gloss(&text, s.language).await
            {
                if let Some(last) = s.turns.last_mut() {
                    last.model = Some(note);
                }
                result.assessment = session::assess(engine, &s.packs, &s.stored, &s.turns, s.language);
                result.status = session::status_of(&s.packs, &s.stored, &result.assessment);
            }
        }
        // A finished (not emergency) interview: the model may rewrite the summary's clinical
        // sections, kept beside them and labelled.
        if result.status == Status::Finished && self.providers.chat_enabled() {
            let clinical = self.summary(&s)?.clinical_text();
            s.stored.model_summary = self.providers.polish(&clinical).await;
        }
        self.commit_turn(caller, &room, &mut s, &input, result, Vec::new()).await
    }

    /// Writes what a turn did (the row, or at the end the record; `extra` resources join its
    /// transaction), tells the queues and the session's sockets, and answers the view.
    async fn commit_turn(
        &self,
        caller: &Caller,
        room: &Room,
        s: &mut Loaded,
        input: &Input,
        result: session::TurnResult,
        extra: Vec<(&'static str, String, Value)>,
    ) -> Result<TurnAnswer, ApiError> {
        let now = self.clock.now();
        let asked_again = matches!(result.applied, Applied::Unmatched { passed: false })
            .then(|| session::ask_again(s.language).to_owned());
        let read = s.row.version;
        let (urgency, rank) = urgency_name(result.assessment.urgency);
        let codes: Vec<&str> = result.assessment.red_flags.iter().map(|f| f.code.as_str()).collect();
        s.row.state = serde_json::to_string(&s.stored).map_err(|e| ApiError::internal(e.to_string()))?;
        s.row.turns = serde_json::to_string(&s.turns).map_err(|e| ApiError::internal(e.to_string()))?;
        s.row.status = result.status.as_str().to_owned();
        s.row.urgency = urgency.to_owned();
        s.row.urgency_rank = rank;
        s.row.red_flags = json!(codes).to_string();
        s.row.updated_at = now.timestamp_millis();
        s.row.version = read + 1;
        s.status = result.status;
        let changed = || api(StatusCode::CONFLICT, "session_changed", "the session changed meanwhile; read it again");
        if result.status == Status::Active {
            if extra.is_empty() {
                if !sql::update(&*self.db, &s.row, read).await? {
                    return Err(changed());
                }
            } else {
                let mut tx = self.store_for(caller).begin().await?;
                for (ty, rid, body) in extra {
                    check(self, ty, &body)?;
                    interactions::create(&mut tx, hearth_workflow::fhir::write_of(self, ty, rid, body), now).await?;
                }
                let db = TxDb::from_guarded(tx)?;
                if !sql::update(&db, &s.row, read).await? {
                    return Err(changed());
                }
                db.commit().await?;
            }
        } else {
            self.finish(caller, s, &result.assessment, read, now, extra).await?;
        }
        self.queue_changed();
        let view = self.view(s)?;
        self.broadcast(room, s, input, &view, asked_again.as_deref());
        Ok(TurnAnswer { view, asked_again })
    }

    /// The encounter of the session's appointment, if one exists now.
    async fn encounter_of(&self, store: &Guarded, appointment: Option<&str>) -> Result<Option<String>, ApiError> {
        Ok(match appointment {
            Some(a) => self
                .search_all(store, "Encounter", &[("appointment".to_owned(), format!("Appointment/{a}"))], 1)
                .await?
                .first()
                .map(|v| v.id.clone()),
            None => None,
        })
    }

    /// A voice answer to the open question of session `id`: transcribed (with a provider) and
    /// then taken as that text, or kept as a FHIR `Media` for the clinician (no provider, or it
    /// failed) while the interview moves on.
    pub(crate) async fn voice(
        &self,
        caller: &Caller,
        id: &str,
        content_type: &str,
        audio: &[u8],
    ) -> Result<VoiceTaken, ApiError> {
        // Authorised and open before any audio leaves the server.
        let s = self.load(caller, id).await?;
        if s.status != Status::Active {
            return Err(api(
                StatusCode::CONFLICT,
                "session_finished",
                format!("this session is over ({})", s.row.status),
            ));
        }
        let media_type = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        if !crate::model::AUDIO_TYPES.iter().any(|(t, _)| *t == media_type) {
            let known: Vec<&str> = crate::model::AUDIO_TYPES.iter().map(|(t, _)| *t).collect();
            return Err(api(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_audio",
                format!("send the audio with one of the content types {}", known.join(", ")),
            ));
        }
        if audio.is_empty() {
            return Err(api(StatusCode::BAD_REQUEST, "invalid_voice", "the voice answer is empty"));
        }
        if audio.len() > self.config.voice_max_bytes {
            return Err(api(
                StatusCode::PAYLOAD_TOO_LARGE,
                "voice_too_large",
                format!("a voice answer may have at most {} bytes", self.config.voice_max_bytes),
            ));
        }
        if self.providers.transcription_enabled()
            && let Some(text) = self.providers.transcribe(audio, &media_type, s.language).await
        {
            let voice = session::Voice { media: None, content_type: media_type, transcribed: true };
            let answer = self.turn_with(caller, id, Input::Text(text.clone()), Some(voice)).await?;
            return Ok(VoiceTaken { answer, transcript: Some(text), media: None });
        }
        let room = self.room(id);
        let _serial = room.turn.lock().await;
        let mut s = self.load(caller, id).await?;
        if s.status != Status::Active {
            return Err(api(
                StatusCode::CONFLICT,
                "session_finished",
                format!("this session is over ({})", s.row.status),
            ));
        }
        let engine = engine()?;
        let at = instant(self.clock.now());
        let store = self.store_for(caller);
        let encounter = self.encounter_of(&store, s.row.appointment.as_deref()).await?;
        let question = s
            .interview()
            .next(&s.stored.interview)
            .and_then(|pos| s.interview().item(&pos).map(|i| i.text.en.clone()))
            .unwrap_or_default();
        let media_id = uuid::Uuid::now_v7().to_string();
        let media = records::media(&s.row.id, &s.row.patient, encounter.as_deref(), &question, &media_type, audio, &at);
        let voice =
            session::Voice { media: Some(format!("Media/{media_id}")), content_type: media_type, transcribed: false };
        let result = session::take_voice_turn(engine, &s.packs, &mut s.stored, &mut s.turns, s.language, voice, &at)
            .map_err(|_| api(StatusCode::CONFLICT, "session_finished", "every question is answered"))?;
        let input = Input::Text(String::new());
        let answer =
            self.commit_turn(caller, &room, &mut s, &input, result, vec![("Media", media_id.clone(), media)]).await?;
        Ok(VoiceTaken { answer, transcript: None, media: Some(format!("Media/{media_id}")) })
    }

    /// The end of an interview (emergency or finished): the record, the row and (emergency)
    /// the clinic's alert, in one transaction.
    async fn finish(
        &self,
        caller: &Caller,
        s: &mut Loaded,
        assessment: &Assessment,
        read: i64,
        now: DateTime<Utc>,
        extra: Vec<(&'static str, String, Value)>,
    ) -> Result<(), ApiError> {
        let at = instant(now);
        let store = self.store_for(caller);
        let encounter = self.encounter_of(&store, s.row.appointment.as_deref()).await?;
        let (id, patient) = (s.row.id.clone(), s.row.patient.clone());
        let mut writes: Vec<(&'static str, String, Value)> = extra;
        let new_id = || uuid::Uuid::now_v7().to_string();
        for qr in records::questionnaire_responses(&id, &patient, &s.packs, &s.stored, s.status, s.language, &at) {
            writes.push(("QuestionnaireResponse", new_id(), qr));
        }
        let mut observations = Vec::new();
        for f in records::recorded_findings(assessment) {
            let oid = new_id();
            observations.push(format!("Observation/{oid}"));
            writes.push(("Observation", oid, records::observation(&id, &patient, f, &at)));
        }
        let mut flags = Vec::new();
        for f in &assessment.red_flags {
            let fid = new_id();
            flags.push(format!("Flag/{fid}"));
            writes.push(("Flag", fid, records::flag(&id, &patient, f, &at)));
            let evidence: Vec<String> = records::recorded_findings(assessment)
                .iter()
                .zip(&observations)
                .filter(|(finding, _)| f.findings.iter().any(|c| c.code == finding.code))
                .map(|(_, r)| r.clone())
                .collect();
            writes.push(("Condition", new_id(), records::condition(&id, &patient, f, &evidence, &at)));
        }
        if !assessment.red_flags.is_empty() {
            writes.push((
                "RiskAssessment",
                new_id(),
                records::risk_assessment(&id, &patient, assessment, &observations, &at),
            ));
        }
        let summary = self.summary(s)?;
        let composition_id = new_id();
        writes.push((
            "Composition",
            composition_id.clone(),
            records::composition(&id, &patient, &summary, encounter.as_deref(), &flags, &observations, &at),
        ));
        s.row.composition = Some(composition_id);
        for (ty, _, body) in &writes {
            check(self, ty, body)?;
        }
        // The red flags the patient's own answers raised are recorded through their transaction.
        let mut tx = store.begin().await?.safety_record();
        for (ty, rid, body) in writes {
            interactions::create(&mut tx, hearth_workflow::fhir::write_of(self, ty, rid, body), now).await?;
        }
        let db = TxDb::from_guarded(tx)?;
        if !sql::update(&db, &s.row, read).await? {
            return Err(api(StatusCode::CONFLICT, "session_changed", "the session changed meanwhile; read it again"));
        }
        let alerted = if s.status == Status::Emergency { self.alert_clinic(&db, s, now).await? } else { 0 };
        db.commit().await?;
        if alerted > 0 {
            self.notifier.wake();
        }
        Ok(())
    }

    /// Who hears of an emergency: the appointment's practitioner's accounts; without one, the
    /// clinicians of the patient's organisation; failing those, every administrator.
    async fn alert_clinic(&self, db: &TxDb, s: &Loaded, now: DateTime<Utc>) -> Result<usize, ApiError> {
        let mut accounts = Vec::new();
        if let Some(p) = &s.row.practitioner {
            accounts = sql::accounts_of(db, &format!("Practitioner/{p}")).await?;
        }
        if accounts.is_empty() {
            let org = match self.system().read("Patient", &s.row.patient).await? {
                Current::Found(v) => json_of(&v)?
                    .pointer("/managingOrganization/reference")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix("Organization/"))
                    .map(str::to_owned),
                _ => None,
            };
            if let Some(org) = org {
                accounts = sql::staff_accounts(db, "clinician", Some(&org)).await?;
            }
        }
        if accounts.is_empty() {
            accounts = sql::staff_accounts(db, "admin", None).await?;
        }
        let mut added = 0;
        for account in accounts {
            let mut args = Map::new();
            args.insert("session".into(), json!(s.row.id));
            let notice = Notice {
                key: format!("intake-emergency:{}:{account}", s.row.id),
                account_id: account,
                category: hearth_notify::Category::Emergency,
                template: "emergency-alert".into(),
                args,
                not_before: None,
            };
            added += hearth_notifications::enqueue(&self.notifier, db, &notice, now).await.map_err(|e| match e {
                hearth_notifications::EnqueueError::Store(s) => ApiError::from(s),
                other => ApiError::internal(other.to_string()),
            })?;
        }
        Ok(added)
    }

    /// Tells every socket of the session what the turn did.
    fn broadcast(&self, room: &Room, s: &Loaded, input: &Input, view: &Value, asked_again: Option<&str>) {
        let mut events = vec![match input {
            // A voice answer kept as audio: no words to show.
            Input::Text(t) if t.is_empty() => json!({"type": "turn", "voice": true}),
            Input::Text(t) => json!({"type": "turn", "text": t}),
            Input::Answer(a) => json!({"type": "turn", "answer": a}),
        }];
        events.push(json!({"type": "progress", "progress": view.get("progress")}));
        events.extend(self.state_events(s, view, asked_again));
        for e in events {
            // No receiver is not an error: nobody is connected.
            let _ = room.events.send(e);
        }
    }

    /// What a client shows for the session as it is: the question, the alert, or done.
    pub(crate) fn state_events(&self, s: &Loaded, view: &Value, asked_again: Option<&str>) -> Vec<Value> {
        match s.status {
            Status::Active => {
                let mut q = json!({"type": "question", "question": view.get("question")});
                if let (Some(hint), Some(o)) = (asked_again, q.as_object_mut()) {
                    o.insert("hint".into(), json!(hint));
                }
                vec![q]
            }
            Status::Emergency => {
                let flags: Vec<String> = serde_json::from_str(&s.row.red_flags).unwrap_or_default();
                vec![json!(self.alert(s.language, &flags))]
            }
            Status::Finished => vec![json!({
                "type": "done",
                "status": "finished",
                "urgency": s.row.urgency,
                "message": session::thanks(s.language),
            })],
        }
    }

    /// Marks a session reviewed by `caller` (idempotent: the first review stays).
    pub(crate) async fn review(&self, caller: &Caller, id: &str) -> Result<Value, ApiError> {
        let room = self.room(id);
        let _serial = room.turn.lock().await;
        let mut s = self.load(caller, id).await?;
        if s.row.reviewed_at.is_none() {
            let read = s.row.version;
            s.row.reviewed_by = Some(caller.account.id.clone());
            s.row.reviewed_at = Some(self.clock.now().timestamp_millis());
            s.row.version = read + 1;
            if !sql::update(&*self.db, &s.row, read).await? {
                return Err(api(
                    StatusCode::CONFLICT,
                    "session_changed",
                    "the session changed meanwhile; read it again",
                ));
            }
            self.queue_changed();
        }
        self.view(&s)
    }

    /// The clinicians' queue: unreviewed sessions the caller reaches, most urgent first.
    pub(crate) async fn queue(&self, caller: &Caller) -> Result<Vec<QueueEntry>, ApiError> {
        let rows = sql::queue(&*self.db, None, 500).await?;
        let store = self.store_for(caller);
        let mut reach: HashMap<String, bool> = HashMap::new();
        let mut out = Vec::new();
        for row in rows {
            let ok = match reach.get(&row.patient) {
                Some(ok) => *ok,
                None => {
                    let ok = matches!(store.read("Patient", &row.patient).await?, Current::Found(_));
                    reach.insert(row.patient.clone(), ok);
                    ok
                }
            };
            if !ok {
                continue;
            }
            out.push(QueueEntry {
                red_flags: serde_json::from_str(&row.red_flags).ok(),
                created_at: millis(row.created_at),
                updated_at: millis(row.updated_at),
                id: row.id,
                patient: row.patient,
                appointment: row.appointment,
                status: row.status,
                urgency: row.urgency,
                language: row.language,
            });
            if out.len() >= 200 {
                break;
            }
        }
        Ok(out)
    }
}

/// An intake session as the API shows it: where the interview stands and what to show now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// The session id.
    pub id: String,
    /// The Patient id.
    pub patient: String,
    /// The Appointment id it prepares, if any.
    pub appointment: Option<String>,
    /// `en`, `hi` or `hi-Latn`.
    #[schema(example = "hi")]
    pub language: String,
    /// The question packs asked.
    pub packs: Option<Vec<String>>,
    /// `active`, `finished` or `emergency`.
    #[schema(example = "active")]
    pub status: String,
    /// `routine`, `urgent` or `emergency`.
    #[schema(example = "routine")]
    pub urgency: String,
    /// Codes of the red flags found so far.
    pub red_flags: Vec<String>,
    pub progress: crate::interview::Progress,
    /// The open question (resume here); `null` once the interview stopped.
    pub question: Option<crate::interview::Question>,
    /// The safety alert of an emergency.
    pub alert: Option<SafetyAlert>,
    /// The interview stopped (finished, or an emergency).
    pub done: bool,
    /// The patient's consent to the interview (`Consent/<id>`).
    pub consent: String,
    /// The clinician's record of it once finished (`Composition/<id>`).
    pub composition: Option<String>,
    /// The clinician account that reviewed it.
    pub reviewed_by: Option<String>,
    pub reviewed_at: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    /// Changes with every turn.
    pub version: i64,
    /// After a message whose free text did not answer a required question: what to say instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// What to tell a patient whose answers suggest an emergency.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SafetyAlert {
    /// Always `alert`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always `emergency`.
    pub urgency: String,
    /// In the patient's language: what to do now, with the numbers to call.
    pub message: String,
    pub numbers: EmergencyNumbers,
    /// The red flags that raised it.
    pub red_flags: Vec<String>,
}

/// The numbers to call, as configured.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EmergencyNumbers {
    #[schema(example = "112")]
    pub emergency: String,
    #[schema(example = "108")]
    /// `null` where no separate ambulance number is configured.
    pub ambulance: Option<String>,
}

/// A session in the clinicians' queue.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueEntry {
    pub id: String,
    /// The Patient id.
    pub patient: String,
    pub appointment: Option<String>,
    /// `active`, `finished` or `emergency`.
    pub status: String,
    /// `routine`, `urgent` or `emergency`.
    pub urgency: String,
    /// Codes of the red flags found.
    pub red_flags: Option<Vec<String>>,
    pub language: String,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

/// The clinicians' queue: unreviewed sessions, most urgent first, then oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Queue {
    pub sessions: Vec<QueueEntry>,
}
