//! Test support: the R4 registry (built once per test binary) and the vendored test data.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::sync::OnceLock;

use hearth_fhir::Model;
use hearth_search::{IndexEntry, IndexValue, Registry};
use serde_json::Value;

pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Registry::r4(&Model::r4().unwrap()).unwrap())
}

/// A fresh registry, for tests that add parameters.
pub fn own_registry() -> Registry {
    registry().clone()
}

pub fn tests_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests-data")
}

pub fn load(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn example(name: &str) -> Value {
    load(tests_data().join("r4-examples").join(name))
}

pub fn fixture(name: &str) -> Value {
    load(tests_data().join("search/vectors/fixtures").join(name))
}

/// Every resource of the Synthea sample bundles.
pub fn synthea() -> Vec<Value> {
    let dir = tests_data().join("search/synthea");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let bundle = load(f);
        for entry in bundle["entry"].as_array().unwrap() {
            out.push(entry["resource"].clone());
        }
    }
    out
}

/// The values indexed for one parameter.
pub fn values<'e>(entries: &'e [IndexEntry], param: &str) -> Vec<&'e IndexValue> {
    entries.iter().filter(|e| e.param == param).map(|e| &e.value).collect()
}

pub fn strings(entries: &[IndexEntry], param: &str) -> Vec<String> {
    values(entries, param)
        .into_iter()
        .map(|v| match v {
            IndexValue::String { exact, .. } => exact.clone(),
            other => panic!("{param}: not a string: {other:?}"),
        })
        .collect()
}

/// `(system, code)` of the token entries of a parameter.
pub fn tokens(entries: &[IndexEntry], param: &str) -> Vec<(Option<String>, Option<String>)> {
    values(entries, param)
        .into_iter()
        .map(|v| match v {
            IndexValue::Token { system, code, .. } => (system.clone(), code.clone()),
            other => panic!("{param}: not a token: {other:?}"),
        })
        .collect()
}

pub fn ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
}
