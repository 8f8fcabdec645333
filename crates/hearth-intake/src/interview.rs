//! The interview runner (pure): FHIR R4 SDC `Questionnaire`s asked one question at a time.
//!
//! What it reads of a Questionnaire: `item` (nested), `linkId`, `text` with its translations
//! (the `http://hl7.org/fhir/StructureDefinition/translation` extension on `_text`, sub-extensions
//! `lang` = `hi` / `hi-Latn` and `content`), `type` (`group`, `display`, `boolean`, `choice`,
//! `open-choice`, `string`, `text`, `integer`, `decimal`, `date`), `required`, `repeats`,
//! `enableWhen` + `enableBehavior`, `answerOption[].valueCoding` (with translated `_display`) or
//! `valueString`, and `item.code[]`: `urn:hearth:red-flag-screen|<rule or fact>` marks a
//! red-flag screening question, `urn:hearth:intake-section|<section>` names the summary section
//! an answer belongs to (`chief-complaint`, `medications`, `allergies`, …), and a SNOMED CT code
//! (`http://snomed.info/sct`) names the finding a yes/no question asks about.
//!
//! Decisions:
//! - Questions come in document order; `group` and `display` items are never asked, a group's
//!   children only when the group (and every ancestor) is enabled. An item without answers
//!   fails every `enableWhen` but `exists = false` (as R4 says).
//! - Every turn may be free text. On a `choice`/`open-choice` item the text is matched, after
//!   lower-casing and dropping punctuation, against each option's code, its number (`1`, `2`…)
//!   and its display in every language; yes/no words (`yes`, `haan`, `हाँ`, `ji`, `no`, `nahi`,
//!   `नहीं`, …) pick a yes/no option or answer a `boolean`. A repeating item takes several
//!   values in one turn (`1, 3`, `a aur b`). Numbers take the first number in the text, dates
//!   `YYYY`, `YYYY-MM` or `YYYY-MM-DD`. Text that fits no option is the patient's own words:
//!   an `open-choice` or text item keeps it as the answer; a `choice`, `boolean`, number or date
//!   item stays open when required (asked again) and is passed by when optional.
//! - A structured answer (`{"answer": …}`) must fit: an option code or number, a boolean, a
//!   number, a date string; anything else is refused ([`AnswerError`]: `unknown_option`,
//!   `invalid_answer`) and changes nothing.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Language;

/// The code system of red-flag screening items (`item.code`).
pub const RED_FLAG_SCREEN: &str = "urn:hearth:red-flag-screen";
/// The code system of summary sections (`item.code`).
pub const SECTION: &str = "urn:hearth:intake-section";
/// The code system of the shipped answer options.
pub const OPTION_SYSTEM: &str = "urn:hearth:intake";
const TRANSLATION: &str = "http://hl7.org/fhir/StructureDefinition/translation";
/// The SDC extension whose FHIRPath expression answers an item by itself.
pub const CALCULATED_EXPRESSION: &str =
    "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-calculatedExpression";
const SNOMED: &str = "http://snomed.info/sct";
/// Longest free text kept from one turn (bytes); longer text is refused by the API before.
pub const MAX_TEXT: usize = 4000;

/// A Questionnaire that cannot be run: what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("questionnaire {pack}: {message}")]
pub struct QuestionnaireError {
    pub pack: String,
    pub message: String,
}

/// A structured answer that does not fit the question.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AnswerError {
    /// `unknown_option` or `invalid_answer`.
    pub code: &'static str,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> AnswerError {
    AnswerError { code: "invalid_answer", message: message.into() }
}

/// Text in the three languages (English always present).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Text {
    pub en: String,
    pub hi: Option<String>,
    pub hi_latn: Option<String>,
}

impl Text {
    /// The text in `language`, falling back to English.
    pub fn get(&self, language: Language) -> &str {
        let translated = match language {
            Language::En => None,
            Language::Hi => self.hi.as_deref(),
            Language::HiLatn => self.hi_latn.as_deref(),
        };
        translated.unwrap_or(&self.en)
    }

    fn all(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.en.as_str()).chain(self.hi.as_deref()).chain(self.hi_latn.as_deref())
    }

    /// `value` (a string) with the translations found on `primitive` (its `_value` sibling).
    fn read(value: Option<&Value>, primitive: Option<&Value>) -> Text {
        let mut t = Text { en: value.and_then(Value::as_str).unwrap_or_default().to_owned(), hi: None, hi_latn: None };
        let exts = primitive.and_then(|p| p.get("extension")).and_then(Value::as_array);
        for ext in exts.into_iter().flatten() {
            if ext.get("url").and_then(Value::as_str) != Some(TRANSLATION) {
                continue;
            }
            let sub = |name: &str| {
                ext.get("extension").and_then(Value::as_array).and_then(|subs| {
                    subs.iter().find(|s| s.get("url").and_then(Value::as_str) == Some(name)).and_then(|s| {
                        s.get("valueCode").or_else(|| s.get("valueString")).and_then(Value::as_str).map(str::to_owned)
                    })
                })
            };
            let (Some(lang), Some(content)) = (sub("lang"), sub("content")) else { continue };
            match lang.as_str() {
                "hi" | "hi-IN" | "hi-Deva" => t.hi = Some(content),
                "hi-Latn" => t.hi_latn = Some(content),
                _ => {}
            }
        }
        t
    }
}

/// What kind of answer an item takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum InputType {
    Boolean,
    Choice,
    OpenChoice,
    String,
    Text,
    Integer,
    Decimal,
    Date,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Group,
    Display,
    Input(InputType),
}

/// One answer option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerOption {
    pub system: Option<String>,
    pub code: String,
    pub display: Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Exists,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
struct EnableWhen {
    question: String,
    operator: Operator,
    /// The `answer[x]` value.
    answer: Value,
}

/// One item of a Questionnaire, flattened in document order.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub link_id: String,
    pub text: Text,
    kind: Kind,
    pub required: bool,
    pub repeats: bool,
    enable_when: Vec<EnableWhen>,
    enable_any: bool,
    pub options: Vec<AnswerOption>,
    /// Red-flag rule codes (or fact names) a "yes" screens positive for.
    pub screens: Vec<String>,
    /// The summary section (`urn:hearth:intake-section` code), if any.
    pub section: Option<String>,
    /// The SNOMED CT finding a yes/no question asks about, with its display.
    pub finding: Option<(String, String)>,
    /// The FHIRPath source of its SDC `calculatedExpression` (checked to parse at load): the
    /// item is answered by the runner, never asked.
    pub calculated: Option<String>,
    /// Index of the enclosing item.
    parent: Option<usize>,
}

impl Item {
    /// The input type, for items that are asked.
    pub fn input(&self) -> Option<InputType> {
        match self.kind {
            Kind::Input(t) => Some(t),
            Kind::Group | Kind::Display => None,
        }
    }

    /// Whether the patient is asked this item: it takes an answer and is not calculated.
    pub fn asked(&self) -> bool {
        self.input().is_some() && self.calculated.is_none()
    }
}

/// A runnable Questionnaire (one "pack").
#[derive(Debug, Clone, PartialEq)]
pub struct Questionnaire {
    /// The pack name (a built-in pack's name, or `Questionnaire/<id>`).
    pub name: String,
    /// Its canonical `url`, if it has one.
    pub url: Option<String>,
    pub title: Text,
    pub items: Vec<Item>,
    /// The resource as read: `%questionnaire` of its calculated expressions.
    pub resource: Value,
}

fn operator(op: &str) -> Option<Operator> {
    Some(match op {
        "exists" => Operator::Exists,
        "=" => Operator::Eq,
        "!=" => Operator::Ne,
        ">" => Operator::Gt,
        "<" => Operator::Lt,
        ">=" => Operator::Ge,
        "<=" => Operator::Le,
        _ => return None,
    })
}

impl Questionnaire {
    /// Reads a Questionnaire resource; refuses what the runner cannot ask faithfully.
    pub fn parse(name: &str, json: &Value) -> Result<Questionnaire, QuestionnaireError> {
        let err = |message: String| QuestionnaireError { pack: name.to_owned(), message };
        if json.get("resourceType").and_then(Value::as_str) != Some("Questionnaire") {
            return Err(err("not a Questionnaire".into()));
        }
        let mut q = Questionnaire {
            name: name.to_owned(),
            url: json.get("url").and_then(Value::as_str).map(str::to_owned),
            title: Text::read(json.get("title"), json.get("_title")),
            items: Vec::new(),
            resource: json.clone(),
        };
        let items = json.get("item").and_then(Value::as_array).cloned().unwrap_or_default();
        q.flatten(&items, None).map_err(err)?;
        let mut seen = BTreeSet::new();
        for item in &q.items {
            if !seen.insert(item.link_id.as_str()) {
                return Err(err(format!("linkId {} is used twice", item.link_id)));
            }
        }
        for item in &q.items {
            for w in &item.enable_when {
                if !seen.contains(w.question.as_str()) {
                    return Err(err(format!("item {} depends on unknown item {}", item.link_id, w.question)));
                }
            }
        }
        if !q.items.iter().any(Item::asked) {
            return Err(err("it asks nothing".into()));
        }
        Ok(q)
    }

    fn flatten(&mut self, items: &[Value], parent: Option<usize>) -> Result<(), String> {
        for raw in items {
            let link_id =
                raw.get("linkId").and_then(Value::as_str).filter(|l| !l.is_empty()).ok_or("an item has no linkId")?;
            let ty = raw.get("type").and_then(Value::as_str).unwrap_or_default();
            let kind = match ty {
                "group" => Kind::Group,
                "display" => Kind::Display,
                "boolean" => Kind::Input(InputType::Boolean),
                "choice" => Kind::Input(InputType::Choice),
                "open-choice" => Kind::Input(InputType::OpenChoice),
                "string" => Kind::Input(InputType::String),
                "text" => Kind::Input(InputType::Text),
                "integer" => Kind::Input(InputType::Integer),
                "decimal" => Kind::Input(InputType::Decimal),
                "date" => Kind::Input(InputType::Date),
                other => return Err(format!("item {link_id} has type {other:?}, which the interview cannot ask")),
            };
            let mut enable_when = Vec::new();
            for w in raw.get("enableWhen").and_then(Value::as_array).into_iter().flatten() {
                let question = w.get("question").and_then(Value::as_str).ok_or("an enableWhen has no question")?;
                let op = w.get("operator").and_then(Value::as_str).and_then(operator);
                let op = op.ok_or_else(|| format!("item {link_id}: unknown enableWhen operator"))?;
                let answer = w
                    .as_object()
                    .and_then(|o| o.iter().find(|(k, _)| k.starts_with("answer")).map(|(_, v)| v.clone()))
                    .ok_or_else(|| format!("item {link_id}: an enableWhen has no answer"))?;
                enable_when.push(EnableWhen { question: question.to_owned(), operator: op, answer });
            }
            let mut options = Vec::new();
            for o in raw.get("answerOption").and_then(Value::as_array).into_iter().flatten() {
                if let Some(c) = o.get("valueCoding") {
                    let code = c.get("code").and_then(Value::as_str).ok_or("an answerOption coding has no code")?;
                    let mut display = Text::read(c.get("display"), c.get("_display"));
                    if display.en.is_empty() {
                        code.clone_into(&mut display.en);
                    }
                    options.push(AnswerOption {
                        system: c.get("system").and_then(Value::as_str).map(str::to_owned),
                        code: code.to_owned(),
                        display,
                    });
                } else if let Some(s) = o.get("valueString").and_then(Value::as_str) {
                    let display = Text::read(o.get("valueString"), o.get("_valueString"));
                    options.push(AnswerOption { system: None, code: s.to_owned(), display });
                }
            }
            if matches!(kind, Kind::Input(InputType::Choice)) && options.is_empty() {
                return Err(format!("choice item {link_id} has no answerOption"));
            }
            let codes: Vec<(&str, &str, &str)> = raw
                .get("code")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| {
                    Some((
                        c.get("system").and_then(Value::as_str)?,
                        c.get("code").and_then(Value::as_str)?,
                        c.get("display").and_then(Value::as_str).unwrap_or_default(),
                    ))
                })
                .collect();
            let calculated = calculated_expression(link_id, raw, kind)?;
            let item = Item {
                calculated,
                link_id: link_id.to_owned(),
                text: Text::read(raw.get("text"), raw.get("_text")),
                kind,
                required: raw.get("required").and_then(Value::as_bool).unwrap_or(false),
                repeats: raw.get("repeats").and_then(Value::as_bool).unwrap_or(false),
                enable_any: raw.get("enableBehavior").and_then(Value::as_str) == Some("any"),
                enable_when,
                options,
                screens: codes.iter().filter(|c| c.0 == RED_FLAG_SCREEN).map(|c| c.1.to_owned()).collect(),
                section: codes.iter().find(|c| c.0 == SECTION).map(|c| c.1.to_owned()),
                finding: codes.iter().find(|c| c.0 == SNOMED).map(|c| (c.1.to_owned(), c.2.to_owned())),
                parent,
            };
            self.items.push(item);
            let index = self.items.len() - 1;
            if let Some(children) = raw.get("item").and_then(Value::as_array) {
                self.flatten(children, Some(index))?;
            }
        }
        Ok(())
    }

    fn item(&self, link_id: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.link_id == link_id)
    }
}

/// The item's `calculatedExpression`, if any: it must be `text/fhirpath`, parse with our
/// FHIRPath engine, and sit on an item that takes an answer (a group or display is refused).
fn calculated_expression(link_id: &str, raw: &Value, kind: Kind) -> Result<Option<String>, String> {
    let exts = raw.get("extension").and_then(Value::as_array);
    let Some(ext) =
        exts.into_iter().flatten().find(|e| e.get("url").and_then(Value::as_str) == Some(CALCULATED_EXPRESSION))
    else {
        return Ok(None);
    };
    let expr = ext
        .get("valueExpression")
        .ok_or_else(|| format!("item {link_id}: calculatedExpression has no valueExpression"))?;
    let language = expr.get("language").and_then(Value::as_str).unwrap_or_default();
    if language != "text/fhirpath" {
        return Err(format!("item {link_id}: calculatedExpression language {language:?} is not text/fhirpath"));
    }
    let source = expr
        .get("expression")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| format!("item {link_id}: calculatedExpression has no expression"))?;
    hearth_fhirpath::parse(source).map_err(|e| format!("item {link_id}: calculatedExpression does not parse: {e}"))?;
    if !matches!(kind, Kind::Input(_)) {
        return Err(format!("item {link_id}: a calculatedExpression needs an item that takes an answer"));
    }
    Ok(Some(source.to_owned()))
}

/// One answer value (what the QuestionnaireResponse holds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AnswerValue {
    Coding {
        system: Option<String>,
        code: String,
        /// English display.
        display: String,
    },
    Boolean {
        value: bool,
    },
    Integer {
        value: i64,
    },
    /// Kept as written, so no precision is lost.
    Decimal {
        value: String,
    },
    Date {
        value: String,
    },
    /// The patient's own words.
    String {
        value: String,
    },
}

impl AnswerValue {
    /// The `answer[x]` of a QuestionnaireResponse.
    pub fn to_fhir(&self) -> Value {
        match self {
            AnswerValue::Coding { system, code, display } => {
                let mut c = serde_json::Map::new();
                if let Some(s) = system {
                    c.insert("system".into(), json!(s));
                }
                c.insert("code".into(), json!(code));
                c.insert("display".into(), json!(display));
                json!({"valueCoding": c})
            }
            AnswerValue::Boolean { value } => json!({"valueBoolean": value}),
            AnswerValue::Integer { value } => json!({"valueInteger": value}),
            AnswerValue::Decimal { value } => {
                json!({"valueDecimal": serde_json::from_str::<Value>(value).unwrap_or(Value::Null)})
            }
            AnswerValue::Date { value } => json!({"valueDate": value}),
            AnswerValue::String { value } => json!({"valueString": value}),
        }
    }

    /// An English rendering for the clinician.
    pub fn english(&self) -> String {
        match self {
            AnswerValue::Coding { display, .. } => display.clone(),
            AnswerValue::Boolean { value } => if *value { "yes" } else { "no" }.to_owned(),
            AnswerValue::Integer { value } => value.to_string(),
            AnswerValue::Decimal { value } | AnswerValue::Date { value } | AnswerValue::String { value } => {
                value.clone()
            }
        }
    }

    /// Whether this answers "yes" (a boolean true, or a yes option).
    pub fn is_yes(&self) -> bool {
        match self {
            AnswerValue::Boolean { value } => *value,
            AnswerValue::Coding { code, .. } => matches!(code.to_lowercase().as_str(), "yes" | "y" | "true"),
            _ => false,
        }
    }

    /// Whether this answers "no".
    pub fn is_no(&self) -> bool {
        match self {
            AnswerValue::Boolean { value } => !*value,
            AnswerValue::Coding { code, .. } => matches!(code.to_lowercase().as_str(), "no" | "n" | "false"),
            _ => false,
        }
    }
}

/// Where the patient is: the answers so far, per pack and linkId, and the optional items passed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub answers: BTreeMap<String, BTreeMap<String, Vec<AnswerValue>>>,
    /// `<pack>#<linkId>` of optional items the patient moved past without an answer.
    #[serde(default)]
    pub passed: BTreeSet<String>,
    /// `<pack>#<linkId>` of calculated items whose expression failed when last evaluated, with
    /// the reason (the item is left unanswered; the interview goes on).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub calculation_errors: BTreeMap<String, String>,
}

impl State {
    fn answers_of(&self, pack: &str, link_id: &str) -> &[AnswerValue] {
        self.answers.get(pack).and_then(|p| p.get(link_id)).map_or(&[], Vec::as_slice)
    }

    /// Every answer in pack order: `(pack, item, values)`.
    pub fn answered<'a>(&'a self, packs: &'a [Questionnaire]) -> Vec<(&'a Questionnaire, &'a Item, &'a [AnswerValue])> {
        let mut out = Vec::new();
        for q in packs {
            for item in &q.items {
                let values = self.answers_of(&q.name, &item.link_id);
                if !values.is_empty() {
                    out.push((q, item, values));
                }
            }
        }
        out
    }
}

/// The position of a question: pack index and the item's linkId.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub pack: usize,
    pub link_id: String,
}

/// How far the interview is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Progress {
    /// Questions answered (or passed).
    pub answered: usize,
    /// Questions asked so far plus those still to come (it changes as answers enable items).
    pub total: usize,
    /// `answered / total` in percent (100 when done).
    pub percent: u8,
}

/// One option as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OptionView {
    /// Its number: typing it picks the option.
    pub number: usize,
    pub code: String,
    /// In the patient's language (English when not translated).
    pub display: String,
}

/// The next question, as the patient sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Question {
    pub pack: String,
    pub link_id: String,
    /// In the patient's language (English when not translated).
    pub text: String,
    pub input: InputType,
    pub required: bool,
    /// Several values may be given in one answer.
    pub repeats: bool,
    pub options: Vec<OptionView>,
    pub progress: Progress,
}

/// What a turn did to the current question.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// The question is answered with these values.
    Answered(Vec<AnswerValue>),
    /// The text fitted no option or type: the question is asked again (required) or passed.
    Unmatched { passed: bool },
}

/// A turn's input: free text or a structured answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Text(String),
    Answer(Value),
}

/// Packs run in order, as one interview.
pub struct Interview<'a> {
    pub packs: &'a [Questionnaire],
}

impl<'a> Interview<'a> {
    pub fn new(packs: &'a [Questionnaire]) -> Interview<'a> {
        Interview { packs }
    }

    fn enabled(&self, q: &Questionnaire, item: &Item, state: &State) -> bool {
        let mut current = Some(item);
        let mut guard = 0;
        while let Some(it) = current {
            guard += 1;
            if guard > q.items.len() + 1 || !self.own_condition(q, it, state) {
                return false;
            }
            current = it.parent.and_then(|p| q.items.get(p));
        }
        true
    }

    fn own_condition(&self, q: &Questionnaire, item: &Item, state: &State) -> bool {
        if item.enable_when.is_empty() {
            return true;
        }
        let mut results = item.enable_when.iter().map(|w| condition(w, state.answers_of(&q.name, &w.question)));
        if item.enable_any { results.any(|r| r) } else { results.all(|r| r) }
    }

    fn done(&self, q: &Questionnaire, item: &Item, state: &State) -> bool {
        !state.answers_of(&q.name, &item.link_id).is_empty()
            || state.passed.contains(&format!("{}#{}", q.name, item.link_id))
    }

    /// The next question to ask, if any.
    pub fn next(&self, state: &State) -> Option<Position> {
        for (pack, q) in self.packs.iter().enumerate() {
            for item in &q.items {
                if item.asked() && !self.done(q, item, state) && self.enabled(q, item, state) {
                    return Some(Position { pack, link_id: item.link_id.clone() });
                }
            }
        }
        None
    }

    /// Answered and remaining questions (enabled ones).
    pub fn progress(&self, state: &State) -> Progress {
        let (mut answered, mut total) = (0usize, 0usize);
        for q in self.packs {
            for item in q.items.iter().filter(|i| i.asked()) {
                let done = self.done(q, item, state);
                if done || self.enabled(q, item, state) {
                    total += 1;
                    answered += usize::from(done);
                }
            }
        }
        let percent = (answered * 100).checked_div(total).map_or(100, |p| u8::try_from(p).unwrap_or(100));
        Progress { answered, total, percent }
    }

    fn at(&self, pos: &Position) -> Option<(&'a Questionnaire, &'a Item)> {
        let q = self.packs.get(pos.pack)?;
        Some((q, q.item(&pos.link_id)?))
    }

    /// The question at `pos` in `language`.
    pub fn question(&self, state: &State, pos: &Position, language: Language) -> Option<Question> {
        let (q, item) = self.at(pos)?;
        Some(Question {
            pack: q.name.clone(),
            link_id: item.link_id.clone(),
            text: item.text.get(language).to_owned(),
            input: item.input()?,
            required: item.required,
            repeats: item.repeats,
            options: item
                .options
                .iter()
                .enumerate()
                .map(|(i, o)| OptionView {
                    number: i + 1,
                    code: o.code.clone(),
                    display: o.display.get(language).to_owned(),
                })
                .collect(),
            progress: self.progress(state),
        })
    }

    /// The item at `pos`.
    pub fn item(&self, pos: &Position) -> Option<&'a Item> {
        self.at(pos).map(|(_, i)| i)
    }

    /// Applies `input` to the question at `pos`, changing `state`. A structured answer that does
    /// not fit is refused and changes nothing; free text never is.
    pub fn apply(&self, state: &mut State, pos: &Position, input: &Input) -> Result<Applied, AnswerError> {
        let (q, item) = self.at(pos).ok_or_else(|| invalid("there is no such question"))?;
        let input_type = item.input().ok_or_else(|| invalid("that item takes no answer"))?;
        let values = match input {
            Input::Answer(v) => Some(structured(item, input_type, v)?),
            Input::Text(t) => from_text(item, input_type, t),
        };
        match values {
            Some(values) if !values.is_empty() => {
                state.answers.entry(q.name.clone()).or_default().insert(item.link_id.clone(), values.clone());
                Ok(Applied::Answered(values))
            }
            _ => {
                let passed = !item.required;
                if passed {
                    state.passed.insert(format!("{}#{}", q.name, item.link_id));
                }
                Ok(Applied::Unmatched { passed })
            }
        }
    }
}

impl Interview<'_> {
    /// Answers every calculated item (SDC `calculatedExpression`) from the answers so far, in
    /// document order, so one may use another above it. Each expression is evaluated with our
    /// FHIRPath engine over the pack's QuestionnaireResponse so far (the input, `%resource` and
    /// `%rootResource`), with `%questionnaire` the Questionnaire and `now()` = `now` (RFC 3339).
    /// The first result becomes the answer, converted to the item's type; an empty result
    /// (inputs not answered yet), or an item not enabled, removes the answer. An expression that
    /// fails at run time (a type error, a result of the wrong type) leaves the item unanswered
    /// and its reason in [`State::calculation_errors`]: it is never asked and never blocks.
    pub fn calculate(&self, state: &mut State, now: &str) {
        let clock =
            hearth_fhirpath::DateTime::parse(now).or_else(|| hearth_fhirpath::DateTime::parse("1970-01-01T00:00:00Z"));
        let Some(clock) = clock else { return };
        for q in self.packs {
            for item in q.items.iter().filter(|i| i.input().is_some()) {
                let Some(source) = &item.calculated else { continue };
                let key = format!("{}#{}", q.name, item.link_id);
                let result =
                    if self.enabled(q, item, state) { evaluate(q, item, source, state, clock) } else { Ok(Vec::new()) };
                let pack = state.answers.entry(q.name.clone()).or_default();
                match result {
                    Ok(values) if values.is_empty() => {
                        pack.remove(&item.link_id);
                        state.calculation_errors.remove(&key);
                    }
                    Ok(values) => {
                        pack.insert(item.link_id.clone(), values);
                        state.calculation_errors.remove(&key);
                    }
                    Err(reason) => {
                        pack.remove(&item.link_id);
                        state.calculation_errors.insert(key, reason);
                    }
                }
            }
        }
    }
}

fn evaluate(
    q: &Questionnaire,
    item: &Item,
    source: &str,
    state: &State,
    clock: hearth_fhirpath::DateTime,
) -> Result<Vec<AnswerValue>, String> {
    let expr = hearth_fhirpath::parse(source).map_err(|e| e.to_string())?;
    let response = json!({
        "resourceType": "QuestionnaireResponse",
        "status": "in-progress",
        "item": response_items(q, state),
    });
    let ctx = hearth_fhirpath::Context::new(clock)
        .with_resource(&response)
        .with_var("questionnaire", vec![hearth_fhirpath::Item::Node(hearth_fhirpath::Node::root(&q.resource))]);
    let out = expr.evaluate(&ctx, &response).map_err(|e| e.to_string())?;
    let Some(first) = out.first() else { return Ok(Vec::new()) };
    let value = first.to_json();
    let ty = item.input().ok_or("the item takes no answer")?;
    calculated_value(item, ty, &value).map(|v| vec![v])
}

/// A calculated result as an answer of the item's type.
fn calculated_value(item: &Item, ty: InputType, v: &Value) -> Result<AnswerValue, String> {
    let wrong = || format!("the result {v} is not a {ty:?} answer");
    Ok(match ty {
        InputType::Boolean => AnswerValue::Boolean { value: v.as_bool().ok_or_else(wrong)? },
        InputType::Integer => {
            let n = v.as_i64().or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64));
            AnswerValue::Integer { value: n.ok_or_else(wrong)? }
        }
        InputType::Decimal => match v {
            Value::Number(n) => AnswerValue::Decimal { value: n.to_string() },
            _ => return Err(wrong()),
        },
        InputType::Date => {
            let s = v.as_str().filter(|s| valid_date(s)).ok_or_else(wrong)?;
            AnswerValue::Date { value: s.to_owned() }
        }
        InputType::String | InputType::Text => match v {
            Value::String(s) => AnswerValue::String { value: s.clone() },
            Value::Number(_) | Value::Bool(_) => AnswerValue::String { value: v.to_string() },
            _ => return Err(wrong()),
        },
        InputType::Choice | InputType::OpenChoice => {
            let code = v.get("code").and_then(Value::as_str).or_else(|| v.as_str()).ok_or_else(wrong)?;
            match item.options.iter().find(|o| o.code == code) {
                Some(o) => option_value(o),
                None if ty == InputType::OpenChoice && v.is_string() => AnswerValue::String { value: code.to_owned() },
                None => return Err(format!("the result {code:?} is not an option of the item")),
            }
        }
    })
}

fn condition(w: &EnableWhen, answers: &[AnswerValue]) -> bool {
    if w.operator == Operator::Exists {
        return w.answer.as_bool().unwrap_or(true) != answers.is_empty();
    }
    if answers.is_empty() {
        return false;
    }
    let hit = |a: &AnswerValue| compare(a, &w.answer).is_some_and(|ord| test(w.operator, ord));
    match w.operator {
        // "!=": no answer equals the value.
        Operator::Ne => answers.iter().all(|a| compare(a, &w.answer).is_some_and(|o| o != std::cmp::Ordering::Equal)),
        _ => answers.iter().any(hit),
    }
}

fn test(op: Operator, ord: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    match op {
        Operator::Eq => ord == Equal,
        Operator::Ne => ord != Equal,
        Operator::Gt => ord == Greater,
        Operator::Lt => ord == Less,
        Operator::Ge => ord != Less,
        Operator::Le => ord != Greater,
        Operator::Exists => false,
    }
}

/// How answer `a` compares with an `enableWhen` value (`None`: not comparable).
fn compare(a: &AnswerValue, expected: &Value) -> Option<std::cmp::Ordering> {
    use std::cmp::Ordering;
    match a {
        AnswerValue::Coding { system, code, .. } => {
            let c = expected.get("code").and_then(Value::as_str)?;
            let s = expected.get("system").and_then(Value::as_str);
            let same = c == code && (s.is_none() || system.is_none() || s == system.as_deref());
            Some(if same { Ordering::Equal } else { Ordering::Less })
        }
        AnswerValue::Boolean { value } => Some(value.cmp(&expected.as_bool()?)),
        AnswerValue::Integer { value } => (*value as f64).partial_cmp(&expected.as_f64()?),
        AnswerValue::Decimal { value } => value.parse::<f64>().ok()?.partial_cmp(&expected.as_f64()?),
        AnswerValue::Date { value } | AnswerValue::String { value } => Some(value.as_str().cmp(expected.as_str()?)),
    }
}

const YES: [&str; 16] = [
    "yes",
    "y",
    "yeah",
    "yep",
    "haan",
    "han",
    "ha",
    "haa",
    "haanji",
    "ji",
    "ji haan",
    "हाँ",
    "हां",
    "जी",
    "जी हाँ",
    "जी हां",
];
const NO: [&str; 13] =
    ["no", "n", "nope", "nahi", "nahin", "nhi", "nai", "na", "ji nahi", "नहीं", "नही", "ना", "जी नहीं"];

/// Lower-cased, punctuation dropped, spaces collapsed.
fn norm(s: &str) -> String {
    let cleaned: String =
        s.chars().map(|c| if c.is_alphanumeric() || c.is_whitespace() || is_mark(c) { c } else { ' ' }).collect();
    cleaned.to_lowercase().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Devanagari vowel signs and marks are not alphanumeric in Rust's sense but belong to words.
fn is_mark(c: char) -> bool {
    ('\u{0900}'..='\u{0903}').contains(&c)
        || ('\u{093A}'..='\u{094F}').contains(&c)
        || ('\u{0951}'..='\u{0957}').contains(&c)
        || ('\u{0962}'..='\u{0963}').contains(&c)
}

/// `Some(true)` for a yes word, `Some(false)` for a no word: the whole text, else its first word.
fn yes_no(text: &str) -> Option<bool> {
    let n = norm(text);
    let word = |w: &str| {
        if YES.contains(&w) {
            Some(true)
        } else if NO.contains(&w) {
            Some(false)
        } else {
            None
        }
    };
    word(&n).or_else(|| n.split(' ').next().and_then(word))
}

fn option_value(o: &AnswerOption) -> AnswerValue {
    AnswerValue::Coding { system: o.system.clone(), code: o.code.clone(), display: o.display.en.clone() }
}

/// The option `text` names: its code, number or display in any language, or a yes/no word.
fn match_option(item: &Item, text: &str) -> Option<AnswerValue> {
    let n = norm(text);
    if n.is_empty() {
        return None;
    }
    let found = item
        .options
        .iter()
        .enumerate()
        .find(|(i, o)| n == norm(&o.code) || n == (i + 1).to_string() || o.display.all().any(|d| norm(d) == n));
    if let Some((_, o)) = found {
        return Some(option_value(o));
    }
    let yes = yes_no(text)?;
    item.options.iter().map(option_value).find(|v| if yes { v.is_yes() } else { v.is_no() })
}

/// The parts of a multi-value answer: `1, 3`, `a and b`, `a aur b`, `क और ख`.
fn parts(text: &str) -> Vec<String> {
    let separated = text.replace([',', ';', '/', '+', '&'], "|");
    let mut out = Vec::new();
    for piece in separated.split('|') {
        let mut words: Vec<&str> = Vec::new();
        for w in piece.split_whitespace() {
            if matches!(w.to_lowercase().as_str(), "and" | "aur" | "और") {
                out.push(words.join(" "));
                words.clear();
            } else {
                words.push(w);
            }
        }
        out.push(words.join(" "));
    }
    out.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

fn first_number(text: &str, decimal: bool) -> Option<String> {
    let digits: String = text
        .chars()
        .map(|c| match c {
            '०'..='९' => char::from_u32(u32::from(c) - u32::from('०') + u32::from('0')).unwrap_or(c),
            _ => c,
        })
        .collect();
    let mut out = String::new();
    let mut started = false;
    for c in digits.chars() {
        if c.is_ascii_digit() || (decimal && c == '.' && started && !out.contains('.')) {
            out.push(c);
            started = true;
        } else if c == '-' && !started && out.is_empty() {
            out.push(c);
        } else if started {
            break;
        } else {
            out.clear();
        }
    }
    let out = out.trim_end_matches('.').to_owned();
    (started && out != "-").then_some(out)
}

fn valid_date(s: &str) -> bool {
    let ok = |f: &str| chrono::NaiveDate::parse_from_str(s, f).is_ok();
    (s.len() == 4 && s.chars().all(|c| c.is_ascii_digit()))
        || (s.len() == 7 && chrono::NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d").is_ok())
        || (s.len() == 10 && ok("%Y-%m-%d"))
}

/// Free text to values (`None`: it fits nothing).
fn from_text(item: &Item, ty: InputType, text: &str) -> Option<Vec<AnswerValue>> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    match ty {
        InputType::Choice | InputType::OpenChoice => {
            let matched = if item.repeats {
                let values: Option<Vec<AnswerValue>> = parts(text).iter().map(|p| match_option(item, p)).collect();
                values.filter(|v| !v.is_empty()).or_else(|| match_option(item, text).map(|v| vec![v]))
            } else {
                match_option(item, text).map(|v| vec![v])
            };
            match (matched, ty) {
                (Some(v), _) => Some(v),
                (None, InputType::OpenChoice) => Some(vec![AnswerValue::String { value: text.to_owned() }]),
                (None, _) => None,
            }
        }
        InputType::Boolean => yes_no(text).map(|value| vec![AnswerValue::Boolean { value }]),
        InputType::Integer => first_number(text, false)
            .and_then(|n| n.parse::<i64>().ok())
            .map(|value| vec![AnswerValue::Integer { value }]),
        InputType::Decimal => first_number(text, true)
            .filter(|n| n.parse::<f64>().is_ok())
            .map(|value| vec![AnswerValue::Decimal { value }]),
        InputType::Date => {
            let t = text.split_whitespace().next().unwrap_or_default();
            valid_date(t).then(|| vec![AnswerValue::Date { value: t.to_owned() }])
        }
        InputType::String | InputType::Text => Some(vec![AnswerValue::String { value: text.to_owned() }]),
    }
}

/// A structured answer to values, or why it does not fit.
fn structured(item: &Item, ty: InputType, v: &Value) -> Result<Vec<AnswerValue>, AnswerError> {
    let many: Vec<&Value> = match v {
        Value::Array(list) if item.repeats && !list.is_empty() => list.iter().collect(),
        Value::Array(_) => return Err(invalid("this question takes one answer")),
        other => vec![other],
    };
    many.into_iter().map(|v| one_structured(item, ty, v)).collect()
}

fn one_structured(item: &Item, ty: InputType, v: &Value) -> Result<AnswerValue, AnswerError> {
    match ty {
        InputType::Choice | InputType::OpenChoice => {
            let by_code = v.as_str().and_then(|c| item.options.iter().find(|o| o.code == c));
            let by_number = v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| item.options.get(i));
            match (by_code.or(by_number), v.as_str()) {
                (Some(o), _) => Ok(option_value(o)),
                (None, Some(s)) if ty == InputType::OpenChoice && !s.trim().is_empty() => {
                    Ok(AnswerValue::String { value: s.trim().to_owned() })
                }
                _ => Err(AnswerError {
                    code: "unknown_option",
                    message: format!(
                        "not an option of this question; answer one of: {}",
                        item.options.iter().map(|o| o.code.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                }),
            }
        }
        InputType::Boolean => match v {
            Value::Bool(b) => Ok(AnswerValue::Boolean { value: *b }),
            Value::String(s) => yes_no(s)
                .map(|value| AnswerValue::Boolean { value })
                .ok_or_else(|| invalid("answer true or false (or yes/no)")),
            _ => Err(invalid("answer true or false")),
        },
        InputType::Integer => {
            v.as_i64().map(|value| AnswerValue::Integer { value }).ok_or_else(|| invalid("answer a whole number"))
        }
        InputType::Decimal => match v {
            Value::Number(n) => Ok(AnswerValue::Decimal { value: n.to_string() }),
            _ => Err(invalid("answer a number")),
        },
        InputType::Date => match v.as_str() {
            Some(s) if valid_date(s) => Ok(AnswerValue::Date { value: s.to_owned() }),
            _ => Err(invalid("answer a date: YYYY, YYYY-MM or YYYY-MM-DD")),
        },
        InputType::String | InputType::Text => match v.as_str().map(str::trim) {
            Some(s) if !s.is_empty() && s.len() <= MAX_TEXT => Ok(AnswerValue::String { value: s.to_owned() }),
            _ => Err(invalid(format!("answer some text (at most {MAX_TEXT} bytes)"))),
        },
    }
}

/// The `item` tree of a QuestionnaireResponse for `q` and its answers (questions in the
/// questionnaire's own structure; children of a question go under its answers).
pub fn response_items(q: &Questionnaire, state: &State) -> Vec<Value> {
    items_under(q, state, None)
}

fn items_under(q: &Questionnaire, state: &State, parent: Option<usize>) -> Vec<Value> {
    let mut out = Vec::new();
    for (index, item) in q.items.iter().enumerate().filter(|(_, i)| i.parent == parent) {
        let children = items_under(q, state, Some(index));
        let answers = state.answers_of(&q.name, &item.link_id);
        if answers.is_empty() && children.is_empty() {
            continue;
        }
        let mut node = serde_json::Map::new();
        node.insert("linkId".into(), json!(item.link_id));
        if !item.text.en.is_empty() {
            node.insert("text".into(), json!(item.text.en));
        }
        if answers.is_empty() {
            node.insert("item".into(), Value::Array(children));
        } else {
            let mut list: Vec<Value> = answers.iter().map(AnswerValue::to_fhir).collect();
            if !children.is_empty()
                && let Some(Value::Object(first)) = list.first_mut()
            {
                first.insert("item".into(), Value::Array(children));
            }
            node.insert("answer".into(), Value::Array(list));
        }
        out.push(Value::Object(node));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../tests/fixtures/intake-fixture.json");

    fn pack() -> Vec<Questionnaire> {
        vec![Questionnaire::parse("fixture", &serde_json::from_str(FIXTURE).unwrap()).unwrap()]
    }

    fn run(packs: &[Questionnaire], state: &mut State, input: Input) -> Result<Applied, AnswerError> {
        let i = Interview::new(packs);
        let pos = i.next(state).unwrap();
        i.apply(state, &pos, &input)
    }

    fn text(s: &str) -> Input {
        Input::Text(s.to_owned())
    }

    #[test]
    fn questions_come_in_order_translated_with_fallback_to_english() {
        let packs = pack();
        let i = Interview::new(&packs);
        let state = State::default();
        let pos = i.next(&state).unwrap();
        let hi = i.question(&state, &pos, Language::Hi).unwrap();
        assert_eq!(hi.link_id, "complaint");
        assert_eq!(hi.text, "आपकी मुख्य तकलीफ़ क्या है?");
        assert_eq!(hi.input, InputType::Text);
        assert!(hi.required);
        assert_eq!(i.question(&state, &pos, Language::HiLatn).unwrap().text, "Aapki mukhya takleef kya hai?");
        assert_eq!(i.question(&state, &pos, Language::En).unwrap().text, "What is your main problem?");
        assert_eq!(hi.progress, Progress { answered: 0, total: 7, percent: 0 });
    }

    #[test]
    fn free_text_is_matched_to_options_in_any_language_by_number_and_yes_no_words() {
        let packs = pack();
        let mut s = State::default();
        assert!(matches!(run(&packs, &mut s, text("kamar mein dard")).unwrap(), Applied::Answered(_)));
        // where: choice with Hindi displays; the Devanagari display picks the option.
        let Applied::Answered(v) = run(&packs, &mut s, text("कमर")).unwrap() else { panic!() };
        assert_eq!(
            v[0],
            AnswerValue::Coding {
                system: Some(OPTION_SYSTEM.into()),
                code: "back".into(),
                display: "Lower back".into()
            }
        );
        // saddle screening: boolean with Hinglish yes.
        let Applied::Answered(v) = run(&packs, &mut s, text("haan ji")).unwrap() else { panic!() };
        assert_eq!(v, [AnswerValue::Boolean { value: true }]);
        // The enabled follow-up: integer from words.
        let Applied::Answered(v) = run(&packs, &mut s, text("lagbhag 3 din se")).unwrap() else { panic!() };
        assert_eq!(v, [AnswerValue::Integer { value: 3 }]);
        // Repeating choice: numbers and "aur".
        let Applied::Answered(v) = run(&packs, &mut s, text("1 aur 3")).unwrap() else { panic!() };
        assert_eq!(v.iter().map(AnswerValue::english).collect::<Vec<_>>(), ["Walking", "Lying down"]);
        // Open choice: unmatched text is kept as the patient's words.
        let Applied::Answered(v) = run(&packs, &mut s, text("Crocin kabhi kabhi")).unwrap() else { panic!() };
        assert_eq!(v, [AnswerValue::String { value: "Crocin kabhi kabhi".into() }]);
        // Yes/no on a yes/no choice: नहीं picks "no".
        let Applied::Answered(v) = run(&packs, &mut s, text("नहीं")).unwrap() else { panic!() };
        assert_eq!(v[0].english(), "No");
        assert!(Interview::new(&packs).next(&s).is_none());
        assert_eq!(Interview::new(&packs).progress(&s).percent, 100);
    }

    #[test]
    fn enable_when_skips_and_unmatched_text_keeps_a_required_question_open() {
        let packs = pack();
        let mut s = State::default();
        run(&packs, &mut s, text("neck pain")).unwrap();
        run(&packs, &mut s, Input::Answer(json!("neck"))).unwrap();
        // Unmatched text on a required boolean: asked again.
        assert_eq!(run(&packs, &mut s, text("pata nahi kya bolun")).unwrap(), Applied::Unmatched { passed: false });
        assert_eq!(Interview::new(&packs).next(&s).unwrap().link_id, "saddle");
        run(&packs, &mut s, Input::Answer(json!(false))).unwrap();
        // "days" is only asked after a yes: skipped.
        assert_eq!(Interview::new(&packs).next(&s).unwrap().link_id, "worse");
        // Optional question, unmatched text: passed by.
        assert_eq!(run(&packs, &mut s, text("kuch samajh nahi aaya")).unwrap(), Applied::Unmatched { passed: true });
        assert_eq!(Interview::new(&packs).next(&s).unwrap().link_id, "meds");
    }

    #[test]
    fn structured_answers_must_fit() {
        let packs = pack();
        let mut s = State::default();
        run(&packs, &mut s, text("pain")).unwrap();
        let e = run(&packs, &mut s, Input::Answer(json!("elbow"))).unwrap_err();
        assert_eq!(e.code, "unknown_option");
        let e = run(&packs, &mut s, Input::Answer(json!(["back", "neck"]))).unwrap_err();
        assert_eq!(e.code, "invalid_answer");
        assert_eq!(Interview::new(&packs).next(&s).unwrap().link_id, "where", "nothing changed");
        assert!(matches!(run(&packs, &mut s, Input::Answer(json!(2))).unwrap(), Applied::Answered(_)));
        let e = run(&packs, &mut s, Input::Answer(json!(12))).unwrap_err();
        assert_eq!(e.code, "invalid_answer");
    }

    #[test]
    fn answers_become_a_response_tree() {
        let packs = pack();
        let mut s = State::default();
        for t in ["back pain", "1", "yes", "4", "2", "none", "no"] {
            run(&packs, &mut s, text(t)).unwrap();
        }
        let items = response_items(&packs[0], &s);
        let link_ids: Vec<&str> = items.iter().map(|i| i["linkId"].as_str().unwrap()).collect();
        assert_eq!(link_ids, ["complaint", "pain", "history"]);
        assert_eq!(items[1]["item"][1]["answer"][0]["valueBoolean"], true);
        assert_eq!(items[1]["item"][2]["answer"][0]["valueInteger"], 4);
    }

    fn calc(link_id: &str, ty: &str, expression: &str) -> Value {
        json!({
            "linkId": link_id, "type": ty, "text": link_id,
            "extension": [{"url": CALCULATED_EXPRESSION,
                "valueExpression": {"language": "text/fhirpath", "expression": expression}}]
        })
    }

    #[test]
    fn a_calculated_bmi_is_answered_from_height_and_weight_and_never_asked() {
        let q = json!({"resourceType": "Questionnaire", "item": [
            {"linkId": "height", "type": "decimal", "text": "Height (cm)", "required": true},
            {"linkId": "weight", "type": "decimal", "text": "Weight (kg)", "required": true},
            calc("bmi", "decimal",
                "(%resource.item.where(linkId='weight').answer.value / (%resource.item.where(linkId='height').answer.value / 100).power(2)).round(1)"),
            {"linkId": "obese", "type": "boolean", "text": "Shown only when BMI >= 30",
             "enableWhen": [{"question": "bmi", "operator": ">=", "answerDecimal": 30}]},
        ]});
        let packs = vec![Questionnaire::parse("bmi", &q).unwrap()];
        let i = Interview::new(&packs);
        let mut s = State::default();
        assert_eq!(i.progress(&s).total, 2, "the calculated item is not a question");
        run(&packs, &mut s, text("175")).unwrap();
        i.calculate(&mut s, "2026-01-01T00:00:00Z");
        assert!(!s.answers["bmi"].contains_key("bmi"), "no weight yet: no BMI");
        assert_eq!(i.next(&s).unwrap().link_id, "weight");
        run(&packs, &mut s, text("70 kg")).unwrap();
        i.calculate(&mut s, "2026-01-01T00:00:00Z");
        assert_eq!(s.answers["bmi"]["bmi"], [AnswerValue::Decimal { value: "22.9".into() }]);
        assert!(i.next(&s).is_none(), "BMI 22.9: the follow-up stays disabled and bmi is never asked");
        let items = response_items(&packs[0], &s);
        assert_eq!(items[2]["answer"][0]["valueDecimal"].to_string(), "22.9");

        // 95 kg at 160 cm is 37.1: the enableWhen on the calculated item opens the follow-up.
        let mut s = State::default();
        run(&packs, &mut s, text("160")).unwrap();
        run(&packs, &mut s, text("95")).unwrap();
        i.calculate(&mut s, "2026-01-01T00:00:00Z");
        assert_eq!(s.answers["bmi"]["bmi"][0].english(), "37.1");
        assert_eq!(i.next(&s).unwrap().link_id, "obese");
    }

    #[test]
    fn a_calculated_score_sums_the_answers_and_follows_changes() {
        let q = json!({"resourceType": "Questionnaire", "item": [
            {"linkId": "g", "type": "group", "item": [
                {"linkId": "a", "type": "integer", "text": "Pain at rest (0-10)"},
                {"linkId": "b", "type": "integer", "text": "Pain on walking (0-10)"},
            ]},
            calc("total", "integer", "%resource.repeat(item).where(linkId in ('a' | 'b')).answer.value.sum()"),
            calc("title", "string", "%questionnaire.title"),
        ], "title": "Pain score"});
        let packs = vec![Questionnaire::parse("score", &q).unwrap()];
        let i = Interview::new(&packs);
        let mut s = State::default();
        run(&packs, &mut s, text("3")).unwrap();
        i.calculate(&mut s, "2026-01-01T00:00:00Z");
        assert_eq!(s.answers["score"]["total"], [AnswerValue::Integer { value: 3 }]);
        run(&packs, &mut s, text("mujhe 7 hai")).unwrap();
        i.calculate(&mut s, "2026-01-01T00:00:00Z");
        assert_eq!(s.answers["score"]["total"], [AnswerValue::Integer { value: 10 }]);
        assert_eq!(s.answers["score"]["title"], [AnswerValue::String { value: "Pain score".into() }]);
        assert!(i.next(&s).is_none());
        assert!(s.calculation_errors.is_empty());
    }

    #[test]
    fn a_calculated_expression_is_checked_at_load_and_a_failure_at_run_time_is_recorded() {
        let base = |item: Value| json!({"resourceType": "Questionnaire", "item": [{"linkId": "a", "type": "string", "text": "a"}, item]});
        let e = Questionnaire::parse("x", &base(calc("c", "integer", "item.where(linkId = "))).unwrap_err();
        assert!(e.message.contains("item c: calculatedExpression does not parse"), "{e}");
        let mut other = calc("c", "integer", "1 + 1");
        other["extension"][0]["valueExpression"]["language"] = json!("text/cql");
        let e = Questionnaire::parse("x", &base(other)).unwrap_err();
        assert!(e.message.contains("not text/fhirpath"), "{e}");
        let e = Questionnaire::parse("x", &base(calc("c", "group", "1"))).unwrap_err();
        assert!(e.message.contains("needs an item that takes an answer"), "{e}");

        // Parses, but a string answer plus a number is a type error at run time; a string is not
        // an integer answer either: both skipped with the reason, the interview goes on.
        let q = json!({"resourceType": "Questionnaire", "item": [
            {"linkId": "a", "type": "string", "text": "a"},
            calc("c", "integer", "%resource.item.where(linkId='a').answer.value + 1"),
            calc("d", "integer", "%resource.item.where(linkId='a').answer.value"),
            {"linkId": "e", "type": "string", "text": "e"},
        ]});
        let packs = vec![Questionnaire::parse("x", &q).unwrap()];
        let i = Interview::new(&packs);
        let mut s = State::default();
        run(&packs, &mut s, text("kamar dard")).unwrap();
        i.calculate(&mut s, "2026-01-01T00:00:00Z");
        assert!(!s.answers["x"].contains_key("c") && !s.answers["x"].contains_key("d"));
        assert!(s.calculation_errors.contains_key("x#c"), "{:?}", s.calculation_errors);
        assert!(s.calculation_errors["x#d"].contains("is not a Integer answer"), "{:?}", s.calculation_errors);
        assert_eq!(i.next(&s).unwrap().link_id, "e");
    }

    #[test]
    fn malformed_questionnaires_are_refused() {
        let mut q: Value = serde_json::from_str(FIXTURE).unwrap();
        q["item"][2]["item"][0]["linkId"] = json!("complaint");
        assert!(Questionnaire::parse("x", &q).unwrap_err().message.contains("used twice"));
        let mut q: Value = serde_json::from_str(FIXTURE).unwrap();
        q["item"][0]["type"] = json!("attachment");
        assert!(Questionnaire::parse("x", &q).is_err());
        assert!(Questionnaire::parse("x", &json!({"resourceType": "Patient"})).is_err());
    }
}
