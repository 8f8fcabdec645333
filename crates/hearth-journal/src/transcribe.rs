//! The optional transcription of dictated entries: `POST {base_url}/audio/transcriptions` of an
//! OpenAI-compatible service (multipart: the audio, `model`, `response_format=json`), answered
//! `{"text": ...}`. Off unless `[journal.transcription] base_url` is set.
//!
//! What leaves the server: the audio of one entry with its content type and the model name.
//! No patient id, name or other text is sent. Every failure (cannot connect, timeout, an HTTP
//! error, an answer without text) keeps the entry as audio with `transcript: "failed"`; it is
//! logged with the outcome only.

use std::time::Duration;

use hearth_notify::http::Http;
use serde::Deserialize;
use serde_json::Value;

/// The `[journal.transcription]` table.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TranscriptionConfig {
    /// Base URL of an OpenAI-compatible API (`https://host/v1`); empty: no transcription.
    pub base_url: String,
    pub model: String,
    /// Sent as `Authorization: Bearer`; empty: none.
    pub api_key: String,
    /// Deadline of one call, including the answer (100 to 120,000 ms).
    pub timeout_ms: u64,
}

impl std::fmt::Debug for TranscriptionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TranscriptionConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &if self.api_key.is_empty() { "" } else { "<set>" })
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl Default for TranscriptionConfig {
    fn default() -> Self {
        TranscriptionConfig {
            base_url: String::new(),
            model: String::new(),
            api_key: String::new(),
            timeout_ms: 15_000,
        }
    }
}

impl TranscriptionConfig {
    pub fn enabled(&self) -> bool {
        !self.base_url.trim().is_empty()
    }

    /// Checks the values (the journal table's `validate` calls it).
    pub fn validate(&self) -> Result<(), String> {
        if !self.enabled() {
            return Ok(());
        }
        let url = self.base_url.trim();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err("journal.transcription.base_url must be an http(s) URL".into());
        }
        if self.model.trim().is_empty() {
            return Err("journal.transcription.model is required with a base_url".into());
        }
        if !(100..=120_000).contains(&self.timeout_ms) {
            return Err("journal.transcription.timeout_ms must be 100 to 120000".into());
        }
        Ok(())
    }
}

/// The configured transcription service.
pub(crate) struct Transcriber {
    config: TranscriptionConfig,
    http: Http,
}

impl Transcriber {
    /// `None` when not configured (or the client cannot be built, which is logged).
    pub(crate) fn new(config: &TranscriptionConfig) -> Option<Transcriber> {
        if !config.enabled() {
            return None;
        }
        match Http::new(Duration::from_millis(config.timeout_ms)) {
            Ok(http) => Some(Transcriber { config: config.clone(), http }),
            Err(e) => {
                tracing::error!(error = %e, "journal: cannot build the transcription client; dictation stays audio");
                None
            }
        }
    }

    /// The transcript of `audio`, or `None` on any failure or an empty transcript.
    pub(crate) async fn transcribe(&self, audio: &[u8], content_type: &str) -> Option<String> {
        let boundary = format!("hearth-journal-{}", uuid::Uuid::now_v7().simple());
        let ext = content_type.split('/').nth(1).unwrap_or("bin");
        let mut body = Vec::with_capacity(audio.len() + 512);
        for (name, value) in [("model", self.config.model.trim()), ("response_format", "json")] {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                    .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"entry.{ext}\"\r\n\
                 Content-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(audio);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let mut headers = vec![("content-type", format!("multipart/form-data; boundary={boundary}"))];
        let key = self.config.api_key.trim();
        if !key.is_empty() {
            headers.push(("authorization", format!("Bearer {key}")));
        }
        let url = format!("{}/audio/transcriptions", self.config.base_url.trim().trim_end_matches('/'));
        let response = match self.http.send(axum::http::Method::POST, &url, &headers, body).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(outcome = ?e, "journal: transcription failed; the entry stays audio");
                return None;
            }
        };
        if !(200..300).contains(&response.status) {
            tracing::warn!(status = response.status, "journal: transcription refused; the entry stays audio");
            return None;
        }
        let text = response.json().get("text").and_then(Value::as_str).map(str::trim).map(str::to_owned);
        text.filter(|t| !t.is_empty() && t.chars().count() <= crate::entries::MAX_TEXT)
    }
}
