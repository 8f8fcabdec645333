//! The shape of the workspace, as docs/ARCHITECTURE.md states it: the crate map names every crate,
//! no crate but the binary depends on the HTTP edge, workflow crates depend on one another only
//! along the documented edges, and inside the edge no file imports a file that imports it back.
//! (Static checks of the source tree, not of the running server.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The workflow crates, and the other workflow crates each may use (through their public API).
const WORKFLOWS: [(&str, &[&str]); 17] = [
    ("hearth-audit", &[]),
    ("hearth-bulk-export", &[]),
    ("hearth-consent", &[]),
    ("hearth-notifications", &["hearth-consent"]),
    ("hearth-rights", &[]),
    ("hearth-scheduling", &["hearth-notifications"]),
    ("hearth-intake", &["hearth-notifications"]),
    ("hearth-registry", &["hearth-notifications"]),
    ("hearth-documents", &[]),
    ("hearth-selfcare", &["hearth-notifications"]),
    ("hearth-medication", &["hearth-notifications"]),
    ("hearth-emergency", &["hearth-notifications"]),
    ("hearth-alarms", &["hearth-notifications"]),
    ("hearth-wellness", &["hearth-notifications", "hearth-intake"]),
    ("hearth-web", &[]),
    ("hearth-journal", &["hearth-intake", "hearth-medication"]),
    ("hearth-telehealth", &[]),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every crate under `crates/` with the workspace crates it depends on (any section).
fn crates() -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else { continue };
        let name = manifest
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|l| l.strip_suffix('"'))
            .unwrap()
            .to_owned();
        let deps = manifest
            .lines()
            .filter(|l| l.starts_with("hearth") && l.contains("path = \"../"))
            .map(|l| l.split([' ', '=']).next().unwrap().to_owned())
            .collect();
        out.insert(name, deps);
    }
    out
}

#[test]
fn the_crate_map_names_every_crate_and_only_those() {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    let map = doc.split("## Code map").nth(1).unwrap().split("```").nth(1).unwrap();
    let mapped: BTreeSet<String> = map
        .lines()
        .filter_map(|l| l.trim_start().split_once('/'))
        .map(|(name, _)| name.to_owned())
        .filter(|name| name.starts_with("hearth"))
        .collect();
    let actual: BTreeSet<String> = crates().into_keys().collect();
    assert_eq!(mapped, actual, "docs/ARCHITECTURE.md's crate map and crates/ differ");
}

#[test]
fn only_the_binary_depends_on_the_edge_and_workflows_only_on_documented_workflows() {
    let crates = crates();
    for (name, deps) in &crates {
        if name != "hearth" {
            assert!(!deps.contains("hearth-server"), "{name} depends on hearth-server");
        }
    }
    for (name, allowed) in WORKFLOWS {
        let deps = crates.get(name).unwrap_or_else(|| panic!("workflow crate {name} is missing"));
        for dep in deps {
            let is_workflow = WORKFLOWS.iter().any(|(w, _)| w == dep);
            assert!(
                !is_workflow || allowed.contains(&dep.as_str()),
                "{name} depends on workflow {dep}: not a documented edge"
            );
        }
    }
}

/// The module path of a file under `src/` (`auth/mod.rs` → `auth`, `fhir/http.rs` → `fhir::http`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    parts.into_iter().filter(|p| p != "mod" && p != "lib").collect::<Vec<_>>().join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The paths a file names after `crate::` or `super::` (comments removed), as module paths.
fn named_paths(text: &str, module: &str) -> Vec<Vec<String>> {
    let code: String = text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    // `super` of `a::b` (a/b.rs) and of `a::b` (a/b/mod.rs) is `a`.
    let mut parent: Vec<String> = module.split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect();
    parent.pop();
    let mut out = Vec::new();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", parent)] {
        let mut rest = code.as_str();
        while let Some(at) = rest.find(prefix) {
            rest = &rest[at + prefix.len()..];
            let path: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            let mut full = base.clone();
            full.extend(path.split("::").filter(|s| !s.is_empty()).map(str::to_owned));
            // `use crate::x::{a, b}`: each item too.
            if let Some(group) = rest[path.len()..].strip_prefix('{') {
                for item in group.split('}').next().unwrap_or("").split(',') {
                    let mut one = full.clone();
                    one.extend(item.trim().split("::").map(|s| s.split_whitespace().next().unwrap_or("").to_owned()));
                    out.push(one);
                }
            }
            out.push(full);
        }
    }
    out
}

#[test]
fn no_file_of_the_edge_imports_a_file_that_imports_it_back() {
    let src = root().join("crates/hearth-server/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeMap<String, PathBuf> = files.iter().map(|f| (module_of(&src, f), f.clone())).collect();
    let mut imports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        let mut found = BTreeSet::new();
        for path in named_paths(&text, module) {
            // The longest prefix that is a file's module.
            let target = (1..=path.len()).rev().map(|n| path[..n].join("::")).find(|m| modules.contains_key(m));
            if let Some(t) = target.filter(|t| t != module) {
                found.insert(t);
            }
        }
        imports.insert(module.clone(), found);
    }
    assert!(imports.len() > 10 && imports.values().any(|i| !i.is_empty()), "the scan found no imports: {imports:?}");
    let mut mutual = Vec::new();
    for (a, targets) in &imports {
        for b in targets {
            if a < b && imports.get(b).is_some_and(|back| back.contains(a)) {
                mutual.push(format!("{a} <-> {b}"));
            }
        }
    }
    assert!(mutual.is_empty(), "files of hearth-server that import each other: {mutual:?}");
}

/// The edge stays thin (issue 16: under 8,000 lines): what grows is a workflow's, in its crate.
#[test]
fn the_edge_stays_under_eight_thousand_lines() {
    let mut files = Vec::new();
    rust_files(&root().join("crates/hearth-server/src"), &mut files);
    let lines: usize = files.iter().map(|f| std::fs::read_to_string(f).unwrap().lines().count()).sum();
    assert!(lines > 1000, "the count found no code: {lines}");
    assert!(lines < 8000, "hearth-server/src has {lines} lines: move workflow code into its own crate");
}
