//! Test support: a `ModelInfo` backed by the table derived from the FHIR R4
//! StructureDefinitions (`tests-data/fhirpath/model-r4.tsv`).

#![allow(dead_code)]

use hearth_fhirpath::{ElementInfo, ModelInfo};
use std::collections::HashMap;
use std::path::PathBuf;

pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests-data/fhirpath")
}

struct Element {
    type_name: String,
    children_of: String,
    is_choice: bool,
}

pub struct TableModel {
    bases: HashMap<String, Option<String>>,
    elements: HashMap<String, HashMap<String, Element>>,
}

impl TableModel {
    pub fn load() -> TableModel {
        let text = std::fs::read_to_string(data_dir().join("model-r4.tsv")).expect("model-r4.tsv");
        let mut bases = HashMap::new();
        let mut elements: HashMap<String, HashMap<String, Element>> = HashMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let cols: Vec<&str> = line.split('\t').collect();
            match cols.as_slice() {
                ["T", ty, base] => {
                    bases.insert(ty.to_string(), (*base != "-").then(|| base.to_string()));
                }
                ["E", parent, name, ty, children_of] => {
                    elements.entry(parent.to_string()).or_default().insert(
                        name.to_string(),
                        Element {
                            type_name: ty.to_string(),
                            children_of: children_of.to_string(),
                            is_choice: *ty == "*",
                        },
                    );
                }
                _ => panic!("bad model line: {line}"),
            }
        }
        TableModel { bases, elements }
    }
}

impl ModelInfo for TableModel {
    fn element(&self, parent: &str, element: &str) -> Option<ElementInfo<'_>> {
        let mut current = parent;
        for _ in 0..16 {
            if let Some(e) = self.elements.get(current).and_then(|m| m.get(element)) {
                return Some(ElementInfo {
                    type_name: &e.type_name,
                    children_of: &e.children_of,
                    is_choice: e.is_choice,
                });
            }
            current = if current.contains('.') { "BackboneElement" } else { self.bases.get(current)?.as_deref()? };
        }
        None
    }

    fn base_type(&self, type_name: &str) -> Option<&str> {
        self.bases.get(type_name)?.as_deref()
    }

    fn is_type(&self, name: &str) -> bool {
        self.bases.contains_key(name)
    }
}
