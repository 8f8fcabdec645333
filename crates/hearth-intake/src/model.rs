//! The optional providers (issue 17 item 8): an OpenAI-compatible chat model that glosses the
//! patient's words in English and proposes findings and red flags, and an OpenAI-compatible
//! transcription service for voice answers. Both are off unless configured.
//!
//! What leaves the server, and nothing else:
//! - chat (`POST {chat_base_url}/chat/completions`): one free-text turn as the patient typed (or
//!   said) it and the session's language tag, inside a fixed instruction; after the
//!   deterministic engine has assessed the turn and only when that is not an emergency.
//! - transcription (`POST {transcribe_base_url}/audio/transcriptions`): the audio of one voice
//!   answer with its content type, the model name and the language (`en` or `hi`; none for
//!   `hi-Latn`).
//!
//! No name, id, phone number, age or sex is ever sent. Every failure (not configured, cannot
//! connect, timeout, an HTTP error, an answer that is not the expected JSON) gives `None`: the
//! caller goes on with the deterministic path. Failures are counted in
//! `hearth_intake_model_calls_total{provider, outcome}` and logged with the outcome only.

use std::sync::Arc;
use std::time::Duration;

use hearth_notify::http::{Http, HttpError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::session::language_tag;
use crate::{Language, ModelProposal};

/// The providers' settings (part of the `[intake]` table).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderConfig {
    /// Base URL of an OpenAI-compatible API (`https://host/v1`); empty: no provider.
    pub base_url: String,
    pub model: String,
    /// Sent as `Authorization: Bearer`; empty: none.
    pub api_key: String,
    /// Deadline of one call, including the answer's body.
    pub timeout_ms: u64,
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &if self.api_key.is_empty() { "" } else { "<set>" })
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig { base_url: String::new(), model: String::new(), api_key: String::new(), timeout_ms: 8000 }
    }
}

impl ProviderConfig {
    pub fn enabled(&self) -> bool {
        !self.base_url.trim().is_empty()
    }

    /// Checked at start: an `http(s)` URL, a model, a timeout of 100 ms to 120 s.
    pub fn check(&self, name: &str) -> Result<(), String> {
        if !self.enabled() {
            return Ok(());
        }
        let url = self.base_url.trim();
        if !(url.starts_with("https://") || url.starts_with("http://")) || url.parse::<axum::http::Uri>().is_err() {
            return Err(format!("intake.{name}_base_url must be an http(s) URL"));
        }
        if self.model.trim().is_empty() {
            return Err(format!("intake.{name}_model is required with intake.{name}_base_url"));
        }
        if !(100..=120_000).contains(&self.timeout_ms) {
            return Err(format!("intake.{name}_timeout_ms must be 100 to 120000"));
        }
        Ok(())
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base_url.trim().trim_end_matches('/'))
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        let key = self.api_key.trim();
        if key.is_empty() { Vec::new() } else { vec![("authorization", format!("Bearer {key}"))] }
    }
}

/// What a chat model said about one turn.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct ModelNote {
    /// The model's English rendering of the turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub english: Option<String>,
    #[serde(default)]
    pub proposal: ModelProposal,
    /// The configured model's name.
    pub model: String,
}

/// The providers, built once.
pub(crate) struct Providers {
    chat: Option<(ProviderConfig, Http)>,
    transcribe: Option<(ProviderConfig, Http)>,
    /// The app's metrics (counters go to this recorder, not a global one).
    metrics: Arc<dyn metrics::Recorder + Send + Sync>,
}

fn client(c: &ProviderConfig) -> Option<(ProviderConfig, Http)> {
    if !c.enabled() {
        return None;
    }
    match Http::new(Duration::from_millis(c.timeout_ms)) {
        Ok(http) => Some((c.clone(), http)),
        Err(e) => {
            tracing::error!(error = %e, "intake: cannot build the HTTP client of a model provider; it stays off");
            None
        }
    }
}

fn count(recorder: &(dyn metrics::Recorder + Send + Sync), provider: &'static str, outcome: &'static str) {
    metrics::with_local_recorder(recorder, || {
        metrics::counter!("hearth_intake_model_calls_total", "provider" => provider, "outcome" => outcome).increment(1);
    });
    if outcome != "ok" {
        // The outcome only: never the text, the audio or the answer.
        tracing::warn!(provider, outcome, "intake: model provider failed; the deterministic path goes on");
    }
}

fn failure(e: &HttpError) -> &'static str {
    match e {
        HttpError::Timeout => "timeout",
        HttpError::Connect => "connect",
        HttpError::Request(_) => "request",
        HttpError::Exchange => "exchange",
    }
}

const INSTRUCTION: &str = "You help a clinic's intake. The user message is JSON {\"language\", \"text\"}: one answer \
of a patient in English (en), Hindi in Devanagari (hi) or Hinglish in Latin script (hi-Latn). Answer with one JSON \
object and nothing else: {\"english\": the text translated faithfully into English, \"findings\": [{\"code\": SNOMED CT \
finding code, \"display\": English name, \"body_site\": {\"code\": SNOMED CT body structure code, \"display\": English \
name} or null, \"polarity\": \"present\" or \"absent\", \"temporality\": \"current\", \"resolved\" or \"past\", \
\"experiencer\": \"patient\" or \"other\", \"severe\": true or false, \"evidence\": null}], \"red_flags\": [{\"code\": \
snake_case name, \"title\": English title, \"urgency\": \"emergency\", \"urgent\", \"soon\", \"routine\" or \
\"self_care\", \"rationale\": one sentence}], \"urgency\": one of those urgencies or null}. Report only what the text \
says; do not diagnose.";

const POLISH_INSTRUCTION: &str = "You help a doctor read a patient's intake. The user message is JSON \
{\"summary\"}: an English intake summary in sections, written by deterministic rules. Rewrite it as one short \
clinical paragraph in English: red flags first and with their urgency, then the presenting complaint, the pertinent \
positives and negatives, medications and allergies. Keep every red flag, finding, medication and allergy; add \
nothing that is not there; no advice. Answer with the paragraph only.";

/// Longest model-written summary kept.
const MAX_POLISHED: usize = 4000;

/// A summary rewritten by the chat model (kept beside the deterministic one, never instead).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct ModelSummary {
    pub text: String,
    /// The configured model's name.
    pub model: String,
}

/// Reads a polished summary: the first choice's content as plain text, non-empty, bounded.
pub fn parse_polish_answer(body: &Value, model: &str) -> Option<ModelSummary> {
    let content = body.pointer("/choices/0/message/content").and_then(Value::as_str)?.trim();
    let content = content.strip_prefix("```").and_then(|c| c.strip_suffix("```")).unwrap_or(content).trim();
    if content.is_empty() || content.starts_with('{') {
        return None;
    }
    Some(ModelSummary { text: bounded(content, MAX_POLISHED), model: model.to_owned() })
}

/// Most findings and red flags kept from one answer; longest English gloss kept.
const MAX_PROPOSED: usize = 12;
const MAX_GLOSS: usize = 2000;

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    english: Option<String>,
    #[serde(flatten)]
    proposal: ModelProposal,
}

/// Reads a chat completion: the first choice's message content must be the JSON object the
/// instruction asks for (a Markdown code fence around it is tolerated). Codes that cannot be
/// SNOMED CT or rule codes are dropped, lists cut short, texts bounded.
pub fn parse_chat_answer(body: &Value, model: &str) -> Option<ModelNote> {
    let content = body.pointer("/choices/0/message/content").and_then(Value::as_str)?.trim();
    let content = content
        .strip_prefix("```json")
        .or_else(|| content.strip_prefix("```"))
        .and_then(|c| c.strip_suffix("```"))
        .unwrap_or(content)
        .trim();
    let answer: Answer = serde_json::from_str(content).ok()?;
    let mut proposal = answer.proposal;
    let snomed = |c: &str| (6..=18).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_digit());
    proposal.findings.retain(|f| snomed(&f.code) && f.body_site.as_ref().is_none_or(|s| snomed(&s.code)));
    proposal.findings.truncate(MAX_PROPOSED);
    for f in &mut proposal.findings {
        f.display = bounded(&f.display, 200);
    }
    proposal.red_flags.retain(|r| {
        (1..=64).contains(&r.code.len())
            && r.code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    });
    proposal.red_flags.truncate(MAX_PROPOSED);
    for r in &mut proposal.red_flags {
        r.title = bounded(&r.title, 200);
        r.rationale = bounded(&r.rationale, 500);
    }
    let english = answer.english.map(|e| bounded(e.trim(), MAX_GLOSS)).filter(|e| !e.is_empty());
    Some(ModelNote { english, proposal, model: model.to_owned() })
}

fn bounded(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// The transcription language hint: Whisper-style ISO 639-1; none for Hinglish (the model
/// would write Devanagari).
fn transcription_language(language: Language) -> Option<&'static str> {
    match language {
        Language::En => Some("en"),
        Language::Hi => Some("hi"),
        Language::HiLatn => None,
    }
}

/// A `multipart/form-data` body: text fields, then the file.
fn multipart(fields: &[(&str, &str)], file: &[u8], content_type: &str, boundary: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(file.len() + 512);
    for (name, value) in fields {
        out.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    let ext = extension(content_type);
    out.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"answer.{ext}\"\r\nContent-Type: {content_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(file);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// The audio types a voice answer may have, and the file extension providers expect for each.
pub const AUDIO_TYPES: &[(&str, &str)] = &[
    ("audio/webm", "webm"),
    ("audio/ogg", "ogg"),
    ("audio/mpeg", "mp3"),
    ("audio/mp4", "m4a"),
    ("audio/wav", "wav"),
    ("audio/x-wav", "wav"),
    ("audio/flac", "flac"),
];

fn extension(content_type: &str) -> &'static str {
    AUDIO_TYPES.iter().find(|(t, _)| *t == content_type).map_or("bin", |(_, e)| e)
}

impl Providers {
    pub(crate) fn new(
        chat: &ProviderConfig,
        transcribe: &ProviderConfig,
        metrics: Arc<dyn metrics::Recorder + Send + Sync>,
    ) -> Providers {
        Providers { chat: client(chat), transcribe: client(transcribe), metrics }
    }

    pub(crate) fn chat_enabled(&self) -> bool {
        self.chat.is_some()
    }

    pub(crate) fn transcription_enabled(&self) -> bool {
        self.transcribe.is_some()
    }

    /// One `chat/completions` call: the answer's JSON when it came back with a 2xx status; a
    /// failure is counted (`connect`, `timeout`, `exchange`, `http_status`) and is `None`.
    async fn chat_exchange(&self, config: &ProviderConfig, http: &Http, body: &Value) -> Option<Value> {
        let response = match http.post_json(&config.url("chat/completions"), &config.headers(), body).await {
            Ok(r) => r,
            Err(e) => {
                count(&*self.metrics, "chat", failure(&e));
                return None;
            }
        };
        if !(200..300).contains(&response.status) {
            count(&*self.metrics, "chat", "http_status");
            return None;
        }
        Some(response.json())
    }

    /// Asks the chat model about one turn's `text`; `None` on any failure.
    pub(crate) async fn gloss(&self, text: &str, language: Language) -> Option<ModelNote> {
        let (config, http) = self.chat.as_ref()?;
        let user = json!({"language": language_tag(language), "text": text}).to_string();
        let body = json!({
            "model": config.model,
            "temperature": 0,
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": INSTRUCTION},
                {"role": "user", "content": user},
            ],
        });
        let answer = self.chat_exchange(config, http, &body).await?;
        match parse_chat_answer(&answer, &config.model) {
            Some(note) => {
                count(&*self.metrics, "chat", "ok");
                Some(note)
            }
            None => {
                count(&*self.metrics, "chat", "invalid_answer");
                None
            }
        }
    }

    /// Asks the chat model to rewrite the deterministic summary's clinical sections (no
    /// identifiers: they are not in `clinical_text`); `None` on any failure.
    pub(crate) async fn polish(&self, clinical_text: &str) -> Option<ModelSummary> {
        let (config, http) = self.chat.as_ref()?;
        let body = json!({
            "model": config.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": POLISH_INSTRUCTION},
                {"role": "user", "content": json!({"summary": clinical_text}).to_string()},
            ],
        });
        let answer = self.chat_exchange(config, http, &body).await?;
        let polished = parse_polish_answer(&answer, &config.model);
        count(&*self.metrics, "chat", if polished.is_some() { "ok" } else { "invalid_answer" });
        polished
    }

    /// Transcribes one voice answer; `None` on any failure or an empty transcript.
    pub(crate) async fn transcribe(&self, audio: &[u8], content_type: &str, language: Language) -> Option<String> {
        let (config, http) = self.transcribe.as_ref()?;
        let boundary = format!("hearth-{}", uuid::Uuid::new_v4().simple());
        let mut fields = vec![("model", config.model.as_str()), ("response_format", "json")];
        if let Some(l) = transcription_language(language) {
            fields.push(("language", l));
        }
        let body = multipart(&fields, audio, content_type, &boundary);
        let mut headers = config.headers();
        headers.push(("content-type", format!("multipart/form-data; boundary={boundary}")));
        let response =
            match http.send(axum::http::Method::POST, &config.url("audio/transcriptions"), &headers, body).await {
                Ok(r) => r,
                Err(e) => {
                    count(&*self.metrics, "transcription", failure(&e));
                    return None;
                }
            };
        if !(200..300).contains(&response.status) {
            count(&*self.metrics, "transcription", "http_status");
            return None;
        }
        let text = response.json().get("text").and_then(Value::as_str).map(str::trim).map(str::to_owned);
        match text.filter(|t| !t.is_empty() && t.len() <= crate::interview::MAX_TEXT) {
            Some(t) => {
                count(&*self.metrics, "transcription", "ok");
                Some(t)
            }
            None => {
                count(&*self.metrics, "transcription", "invalid_answer");
                None
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn completion(content: &str) -> Value {
        json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})
    }

    #[test]
    fn a_chat_answer_is_read_bounded_and_garbage_is_none() {
        let good = r#"```json
{"english": "My back hurts", "findings": [
  {"code": "161891005", "display": "Backache", "body_site": null, "polarity": "present", "temporality": "current", "experiencer": "patient"},
  {"code": "DROP TABLE", "display": "x", "polarity": "present", "temporality": "current", "experiencer": "patient"}],
 "red_flags": [{"code": "Bad Code!", "title": "x", "urgency": "urgent", "rationale": "x"}], "urgency": "routine"}
```"#;
        let note = parse_chat_answer(&completion(good), "m").unwrap();
        assert_eq!(note.english.as_deref(), Some("My back hurts"));
        assert_eq!(note.proposal.findings.len(), 1);
        assert!(note.proposal.red_flags.is_empty());
        assert_eq!(note.proposal.urgency, Some(crate::Urgency::Routine));
        for bad in [completion("I think it is fine"), completion("{\"urgency\": \"whenever\"}"), json!({"error": "x"})]
        {
            assert_eq!(parse_chat_answer(&bad, "m"), None, "{bad}");
        }
    }

    #[test]
    fn a_polished_summary_is_plain_text() {
        let p = parse_polish_answer(&completion("  Knee pain for 3 days; no red flags.  "), "m").unwrap();
        assert_eq!((p.text.as_str(), p.model.as_str()), ("Knee pain for 3 days; no red flags.", "m"));
        assert_eq!(parse_polish_answer(&completion(" "), "m"), None);
        assert_eq!(parse_polish_answer(&completion("{\"findings\": []}"), "m"), None);
        assert_eq!(parse_polish_answer(&json!({"choices": []}), "m"), None);
    }

    #[test]
    fn a_multipart_body_names_the_model_and_the_file() {
        let body = multipart(&[("model", "whisper-1")], b"RIFF", "audio/wav", "b0");
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with("--b0\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"));
        assert!(text.contains("filename=\"answer.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\n--b0--\r\n"));
    }
}
