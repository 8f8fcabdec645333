//! Checks the interview scripts in `data/questionnaires/` (FHIR R4 `Questionnaire` resources).
//!
//! For every file: valid R4 structure (no error or fatal issue from `hearth_fhir`), the header
//! conventions (id = file stem, url, version, status, language, subjectType), unique linkIds,
//! `enableWhen` only on an earlier item with an answer of that item's type (and an existing
//! option for a coding), choice items with options, every item text, answer display and the title
//! translated to Hindi (Devanagari) and Hinglish (ASCII) and different from the English, and
//! every red-flag screen and fact code known to `data/red_flags.json`. Also: the required packs
//! exist, and the packs screen for the red flags of their region.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;

const TRANSLATION: &str = "http://hl7.org/fhir/StructureDefinition/translation";
const RED_FLAG_SYSTEM: &str = "urn:hearth:red-flag-screen";
const FACT_SYSTEM: &str = "urn:hearth:intake-fact";

const REQUIRED_PACKS: [&str; 11] = [
    "general-history",
    "ortho-low-back",
    "ortho-neck",
    "ortho-shoulder",
    "ortho-elbow",
    "ortho-wrist-hand",
    "ortho-hip",
    "ortho-knee",
    "ortho-ankle-foot",
    "ortho-injury-fracture-followup",
    "ortho-child-limp",
];

const ITEM_TYPES: [&str; 11] =
    ["group", "display", "boolean", "choice", "open-choice", "string", "text", "integer", "decimal", "date", "url"];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/questionnaires")
}

/// Every questionnaire, by file stem.
fn load_all() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir()).expect("data/questionnaires exists") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
        out.insert(stem, value);
    }
    out
}

/// The items in document order (pre-order), as a flat list.
fn flatten(q: &Value) -> Vec<&Value> {
    fn walk<'a>(items: &'a Value, out: &mut Vec<&'a Value>) {
        for item in items.as_array().into_iter().flatten() {
            out.push(item);
            if let Some(children) = item.get("item") {
                walk(children, out);
            }
        }
    }
    let mut out = Vec::new();
    if let Some(items) = q.get("item") {
        walk(items, &mut out);
    }
    out
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// The `hi` and `hi-Latn` translations on a primitive's `_name` sibling.
fn translations(companion: Option<&Value>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let exts = companion.and_then(|c| c.get("extension")).and_then(Value::as_array);
    for ext in exts.into_iter().flatten() {
        if str_of(ext, "url") != Some(TRANSLATION) {
            continue;
        }
        let mut lang = None;
        let mut content = None;
        for part in ext.get("extension").and_then(Value::as_array).into_iter().flatten() {
            match str_of(part, "url") {
                Some("lang") => lang = str_of(part, "valueCode"),
                Some("content") => content = str_of(part, "valueString"),
                _ => {}
            }
        }
        if let (Some(l), Some(c)) = (lang, content) {
            assert!(out.insert(l.to_owned(), c.to_owned()).is_none(), "two `{l}` translations of one text");
        }
    }
    out
}

fn is_devanagari(c: char) -> bool {
    ('\u{0900}'..='\u{097F}').contains(&c)
}

/// Pushes a problem if `english` lacks a good Hindi or Hinglish translation.
fn check_translated(english: Option<&str>, companion: Option<&Value>, at: &str, problems: &mut Vec<String>) {
    let Some(english) = english.filter(|s| !s.trim().is_empty()) else {
        problems.push(format!("{at}: no English text"));
        return;
    };
    let tr = translations(companion);
    match tr.get("hi") {
        None => problems.push(format!("{at}: no `hi` translation")),
        Some(hi) if hi.trim().is_empty() || hi == english => problems.push(format!("{at}: `hi` empty or English")),
        Some(hi) if !hi.chars().any(is_devanagari) => problems.push(format!("{at}: `hi` has no Devanagari")),
        Some(_) => {}
    }
    match tr.get("hi-Latn") {
        None => problems.push(format!("{at}: no `hi-Latn` translation")),
        Some(hl) if hl.trim().is_empty() || hl == english => problems.push(format!("{at}: `hi-Latn` empty or English")),
        Some(hl) if !hl.is_ascii() => problems.push(format!("{at}: `hi-Latn` is not Latin/ASCII: {hl}")),
        Some(_) => {}
    }
}

struct RedFlagVocabulary {
    rules: BTreeSet<String>,
    facts: BTreeSet<String>,
}

fn red_flag_vocabulary() -> RedFlagVocabulary {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/red_flags.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let rules: BTreeSet<String> =
        v["rules"].as_array().unwrap().iter().map(|r| r["code"].as_str().unwrap().to_owned()).collect();
    let facts: BTreeSet<String> =
        v["facts"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_owned()).collect();
    assert!(rules.contains("cauda_equina") && facts.contains("cancer_history"));
    RedFlagVocabulary { rules, facts }
}

/// The codes of `system` on the items of `q`.
fn item_codes(q: &Value, system: &str) -> BTreeSet<String> {
    flatten(q)
        .into_iter()
        .flat_map(|item| item.get("code").and_then(Value::as_array).into_iter().flatten())
        .filter(|c| str_of(c, "system") == Some(system))
        .filter_map(|c| str_of(c, "code").map(str::to_owned))
        .collect()
}

/// All problems found in one questionnaire (empty = good).
fn problems(stem: &str, q: &Value, vocab: &RedFlagVocabulary) -> Vec<String> {
    let mut p = Vec::new();
    let header = [
        ("resourceType", "Questionnaire".to_owned()),
        ("id", stem.to_owned()),
        ("url", format!("urn:hearth:questionnaire:{stem}")),
        ("version", "1".to_owned()),
        ("status", "active".to_owned()),
        ("language", "en".to_owned()),
    ];
    for (key, want) in header {
        if str_of(q, key) != Some(want.as_str()) {
            p.push(format!("`{key}` must be `{want}`"));
        }
    }
    for key in ["name", "publisher", "description"] {
        if str_of(q, key).is_none_or(|s| s.trim().is_empty()) {
            p.push(format!("`{key}` missing"));
        }
    }
    if q.get("subjectType") != Some(&serde_json::json!(["Patient"])) {
        p.push("`subjectType` must be [\"Patient\"]".to_owned());
    }
    check_translated(str_of(q, "title"), q.get("_title"), "title", &mut p);

    let items = flatten(q);
    if items.is_empty() {
        p.push("no items".to_owned());
    }
    // linkId -> (position, item)
    let mut seen: HashMap<&str, (usize, &Value)> = HashMap::new();
    for (pos, item) in items.iter().enumerate() {
        let Some(link) = str_of(item, "linkId") else {
            p.push(format!("item #{pos}: no linkId"));
            continue;
        };
        let typ = str_of(item, "type").unwrap_or("");
        if !ITEM_TYPES.contains(&typ) {
            p.push(format!("{link}: unexpected type `{typ}`"));
        }
        check_translated(str_of(item, "text"), item.get("_text"), link, &mut p);

        let has_children = item.get("item").is_some();
        if (typ == "group") != has_children {
            p.push(format!("{link}: only groups, and every group, have child items"));
        }
        if typ == "display" && (item.get("required").is_some() || item.get("repeats").is_some()) {
            p.push(format!("{link}: a display item cannot be required or repeat"));
        }
        let options = item.get("answerOption").and_then(Value::as_array);
        if matches!(typ, "choice" | "open-choice") != options.is_some() {
            p.push(format!("{link}: answerOption belongs on (and only on) choice items"));
        }
        let mut option_codes = BTreeSet::new();
        for opt in options.into_iter().flatten() {
            let Some(coding) = opt.get("valueCoding") else {
                p.push(format!("{link}: an answerOption without valueCoding"));
                continue;
            };
            let code = str_of(coding, "code").unwrap_or("");
            let system = str_of(coding, "system").unwrap_or("");
            if !matches!(system, "urn:hearth:intake" | "http://snomed.info/sct") || code.is_empty() {
                p.push(format!("{link}: option `{code}` needs a code in urn:hearth:intake or SNOMED CT"));
            }
            if !option_codes.insert((system, code)) {
                p.push(format!("{link}: option `{code}` twice"));
            }
            check_translated(str_of(coding, "display"), coding.get("_display"), &format!("{link}/{code}"), &mut p);
        }

        let when = item.get("enableWhen").and_then(Value::as_array);
        for cond in when.into_iter().flatten() {
            let question = str_of(cond, "question").unwrap_or("");
            let Some((_, target)) = seen.get(question) else {
                p.push(format!("{link}: enableWhen on `{question}`, which is not an earlier item"));
                continue;
            };
            let target_type = str_of(target, "type").unwrap_or("");
            let ok = if cond.get("answerBoolean").is_some() {
                target_type == "boolean"
            } else if cond.get("answerInteger").is_some() {
                target_type == "integer"
            } else if let Some(coding) = cond.get("answerCoding") {
                let wanted = (str_of(coding, "system").unwrap_or(""), str_of(coding, "code").unwrap_or(""));
                target.get("answerOption").and_then(Value::as_array).into_iter().flatten().any(|o| {
                    let c = &o["valueCoding"];
                    (str_of(c, "system").unwrap_or(""), str_of(c, "code").unwrap_or("")) == wanted
                })
            } else {
                cond.get("answerString").is_some() && matches!(target_type, "string" | "text" | "open-choice")
            };
            if !ok {
                p.push(format!("{link}: enableWhen answer does not fit `{question}` ({target_type})"));
            }
        }
        let n_when = when.map_or(0, Vec::len);
        if n_when > 1 && !matches!(str_of(item, "enableBehavior"), Some("all" | "any")) {
            p.push(format!("{link}: several enableWhen need enableBehavior"));
        }

        for coding in item.get("code").and_then(Value::as_array).into_iter().flatten() {
            let code = str_of(coding, "code").unwrap_or("");
            match str_of(coding, "system") {
                Some(RED_FLAG_SYSTEM) => {
                    if !vocab.rules.contains(code) {
                        p.push(format!("{link}: red-flag screen `{code}` is not a rule in red_flags.json"));
                    }
                    if typ != "boolean" {
                        p.push(format!("{link}: a red-flag screen must be a yes/no (boolean) item"));
                    }
                }
                Some(FACT_SYSTEM) => {
                    if !vocab.facts.contains(code) {
                        p.push(format!("{link}: fact `{code}` is not a fact in red_flags.json"));
                    }
                    if typ != "boolean" {
                        p.push(format!("{link}: a fact item must be a yes/no (boolean) item"));
                    }
                }
                _ => {}
            }
        }

        if seen.insert(link, (pos, item)).is_some() {
            p.push(format!("{link}: linkId used twice"));
        }
    }
    p
}

#[test]
fn every_questionnaire_is_valid_r4() {
    let model = hearth_fhir::Model::r4().unwrap();
    let all = load_all();
    assert!(!all.is_empty());
    let mut failures = Vec::new();
    for (stem, q) in &all {
        for issue in model.validate(q) {
            if matches!(issue.severity, hearth_fhir::Severity::Error | hearth_fhir::Severity::Fatal) {
                failures.push(format!("{stem}: {issue}"));
            }
        }
    }
    assert!(failures.is_empty(), "R4 validation:\n{}", failures.join("\n"));

    // The validator does catch a malformed item (an unknown element, a number where a string belongs).
    let mut broken = all.get("general-history").expect("general-history.json").clone();
    broken["item"][0]["txet"] = Value::from("typo");
    broken["item"][0]["linkId"] = Value::from(7);
    let errors = model.validate(&broken).into_iter().filter(|i| i.severity == hearth_fhir::Severity::Error).count();
    assert!(errors >= 2, "expected the broken questionnaire to be rejected");
}

#[test]
fn every_questionnaire_follows_the_conventions() {
    let vocab = red_flag_vocabulary();
    let all = load_all();
    let mut failures = Vec::new();
    for (stem, q) in &all {
        failures.extend(problems(stem, q, &vocab).into_iter().map(|m| format!("{stem}: {m}")));
    }
    assert!(failures.is_empty(), "{} problems:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn the_required_packs_exist() {
    let all = load_all();
    let missing: Vec<_> = REQUIRED_PACKS.iter().filter(|p| !all.contains_key(**p)).collect();
    assert!(missing.is_empty(), "missing packs: {missing:?}");
}

/// The checker itself catches what it should (so a broken file cannot pass silently).
#[test]
fn the_checker_rejects_broken_questionnaires() {
    let vocab = red_flag_vocabulary();
    let all = load_all();
    let good = all.get("ortho-low-back").expect("ortho-low-back.json");
    assert!(problems("ortho-low-back", good, &vocab).is_empty());

    let mutate = |f: &dyn Fn(&mut Value)| {
        let mut q = good.clone();
        f(&mut q);
        problems("ortho-low-back", &q, &vocab)
    };
    // Hindi translation replaced by English.
    let p = mutate(&|q| {
        let first = q["item"].as_array_mut().unwrap().iter_mut().find(|i| i.get("_text").is_some()).unwrap();
        let english = first["text"].clone();
        first["_text"]["extension"][0]["extension"][1]["valueString"] = english;
    });
    assert!(p.iter().any(|m| m.contains("`hi`")), "{p:?}");
    // Devanagari in the Hinglish.
    let p = mutate(&|q| {
        q["item"][0]["_text"]["extension"][1]["extension"][1]["valueString"] = Value::from("कमर dard");
    });
    assert!(p.iter().any(|m| m.contains("hi-Latn")), "{p:?}");
    // Unknown red-flag code.
    let p = mutate(&|q| {
        q["item"][0]["code"] = serde_json::json!([{"system": RED_FLAG_SYSTEM, "code": "not_a_rule"}]);
    });
    assert!(p.iter().any(|m| m.contains("not_a_rule")), "{p:?}");
    // A forward enableWhen.
    let p = mutate(&|q| {
        let last = flatten(q).last().map(|i| i["linkId"].clone()).unwrap();
        q["item"][0]["enableWhen"] =
            serde_json::json!([{"question": last, "operator": "exists", "answerBoolean": true}]);
    });
    assert!(p.iter().any(|m| m.contains("not an earlier item")), "{p:?}");
    // A duplicate linkId.
    let p = mutate(&|q| {
        let items = q["item"].as_array_mut().unwrap();
        let copy = items[0].clone();
        items.push(copy);
    });
    assert!(p.iter().any(|m| m.contains("used twice")), "{p:?}");
}

fn screens(stem: &str) -> BTreeSet<String> {
    let all = load_all();
    let q = all.get(stem).unwrap_or_else(|| panic!("{stem}.json missing"));
    item_codes(q, RED_FLAG_SYSTEM)
}

fn assert_screens(stem: &str, wanted: &[&str]) {
    let got = screens(stem);
    let missing: Vec<_> = wanted.iter().filter(|w| !got.contains(**w)).collect();
    assert!(missing.is_empty(), "{stem} does not screen for {missing:?} (screens {got:?})");
}

#[test]
fn low_back_screens_for_the_spinal_red_flags() {
    assert_screens(
        "ortho-low-back",
        &["cauda_equina", "spinal_fracture", "spinal_malignancy", "spinal_infection", "progressive_neuro_deficit"],
    );
}

#[test]
fn regional_packs_screen_for_their_red_flags() {
    assert_screens("ortho-neck", &["spinal_cord_compression", "spinal_infection", "spinal_malignancy"]);
    assert_screens("ortho-shoulder", &["septic_arthritis"]);
    assert_screens("ortho-hip", &["hip_fracture", "septic_arthritis"]);
    assert_screens("ortho-knee", &["septic_arthritis", "dvt_pe"]);
    for pack in ["ortho-elbow", "ortho-wrist-hand", "ortho-ankle-foot"] {
        assert_screens(
            pack,
            &["septic_arthritis", "open_fracture", "neurovascular_compromise", "compartment_syndrome"],
        );
    }
    assert_screens("ortho-child-limp", &["child_hip_urgent"]);
    assert_screens(
        "ortho-injury-fracture-followup",
        &["open_fracture", "neurovascular_compromise", "compartment_syndrome"],
    );
}
