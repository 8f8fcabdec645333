//! Runs the evaluation vignettes (`data/vignettes.json`) through the engine.
//!
//! Fails on: a missed expected red flag (recall on emergency and urgent cases must be 100%),
//! a red-flag case triaged below its minimum or as `routine`/`self_care`, or a near-miss
//! (denied, past, someone else's symptom) raising the very flag its wording rules out.
//! Prints, without failing, the false alarms on the vignettes that expect no red flag.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use hearth_intake::{Engine, Facts, Intake, Language, Urgency};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: String,
    #[allow(dead_code)]
    notes: String,
    vignettes: Vec<Vignette>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Vignette {
    id: String,
    language: Language,
    text: String,
    #[serde(default)]
    facts: Facts,
    expect_flags: Vec<String>,
    min_urgency: Urgency,
    #[serde(default)]
    must_not_flag: Vec<String>,
}

#[test]
fn vignettes() {
    let file: File = serde_json::from_str(include_str!("../data/vignettes.json")).unwrap();
    assert_eq!(file.format, "hearth-intake-vignettes/1");
    let engine = Engine::builtin().unwrap();
    let rule_codes: Vec<String> = engine.rules().into_iter().map(|r| r.code).collect();

    let total = file.vignettes.len();
    assert!(total >= 60, "only {total} vignettes");
    let with_flags = file.vignettes.iter().filter(|v| !v.expect_flags.is_empty()).count();
    assert!(with_flags * 3 >= total * 2, "{with_flags}/{total} vignettes have red flags, need >= 2/3");
    for lang in [Language::En, Language::Hi, Language::HiLatn] {
        let n = file.vignettes.iter().filter(|v| v.language == lang).count();
        assert!(n * 4 >= total, "{lang:?} has only {n} vignettes");
    }

    let mut failures = Vec::new();
    let (mut expected_flags, mut found_flags) = (0usize, 0usize);
    let mut false_alarms = Vec::new();
    let mut negatives = 0;
    let mut ids = std::collections::HashSet::new();
    for v in &file.vignettes {
        assert!(ids.insert(v.id.clone()), "duplicate id {}", v.id);
        for code in v.expect_flags.iter().chain(&v.must_not_flag) {
            assert!(rule_codes.contains(code), "{}: unknown rule code {code}", v.id);
        }
        let intake = Intake { language: v.language, text: v.text.clone(), facts: v.facts.clone() };
        let a = engine.assess(&intake);
        let fired: Vec<&str> = a.red_flags.iter().map(|f| f.code.as_str()).collect();

        for code in &v.expect_flags {
            expected_flags += 1;
            if fired.contains(&code.as_str()) {
                found_flags += 1;
            } else {
                failures.push(format!("{}: missed {code} (fired {fired:?}) in {:?}", v.id, v.text));
            }
        }
        if a.urgency < v.min_urgency {
            failures.push(format!("{}: urgency {:?} below {:?} (fired {fired:?})", v.id, a.urgency, v.min_urgency));
        }
        if !v.expect_flags.is_empty() && a.urgency <= Urgency::Routine {
            failures.push(format!("{}: a red-flag case triaged {:?}", v.id, a.urgency));
        }
        for code in &v.must_not_flag {
            if fired.contains(&code.as_str()) {
                failures.push(format!("{}: near-miss raised {code}, which its wording rules out", v.id));
            }
        }
        if v.expect_flags.is_empty() {
            negatives += 1;
            if !fired.is_empty() {
                false_alarms.push(format!("{} {fired:?}", v.id));
            }
        }
        // evidence must be the patient's own words
        for f in &a.findings {
            let e = f.evidence.as_ref().unwrap();
            assert_eq!(v.text.get(e.start..e.end), Some(e.text.as_str()), "{}", v.id);
        }
    }

    println!(
        "vignettes: {total} ({with_flags} with red flags, {negatives} without); expected flags found: {found_flags}/{expected_flags}"
    );
    println!("false alarms on vignettes without red flags: {} {:?}", false_alarms.len(), false_alarms);
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}
