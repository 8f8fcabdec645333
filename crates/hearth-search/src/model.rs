//! The R4 structure model ([`hearth_fhir::Model`]) as the FHIRPath engine's [`ModelInfo`].
//!
//! The engine looks children up by a *definition key*: a type name (`HumanName`) or, for
//! backbone elements, the element's full path (`Patient.contact`). The structure model walks
//! by scope instead, so this adapter flattens it once into a table keyed the engine's way.
//! Built once per [`crate::Registry`]; lookups are two hash probes.

use std::collections::HashMap;

use hearth_fhir::{Model, Scope};
use hearth_fhirpath::{ElementInfo, ModelInfo};

struct Element {
    type_name: Box<str>,
    children_of: Box<str>,
    is_choice: bool,
    repeats: bool,
}

/// FHIR type knowledge for FHIRPath, derived from the R4 structure model.
pub(crate) struct FhirModel {
    /// definition key → child name → element.
    elements: HashMap<Box<str>, HashMap<Box<str>, Element>>,
    /// type name → base type name (`None` at a root).
    bases: HashMap<Box<str>, Option<Box<str>>>,
    /// Concrete resource types, sorted.
    resource_types: Vec<String>,
}

impl FhirModel {
    pub(crate) fn new(model: &Model) -> FhirModel {
        let mut this = FhirModel {
            elements: HashMap::new(),
            bases: HashMap::new(),
            resource_types: model.resource_types().map(str::to_string).collect(),
        };
        for ty in model.types() {
            this.bases.insert(ty.name().into(), ty.base().map(Into::into));
            if let Some(scope) = model.scope(ty.name()) {
                this.add_scope(ty.name().to_string(), scope, 0);
            }
        }
        this
    }

    fn add_scope(&mut self, key: String, scope: Scope<'_>, depth: usize) {
        // Backbone nesting in R4 is at most a handful of levels; the bound only guards recursion.
        if depth > 16 || self.elements.contains_key(key.as_str()) {
            return;
        }
        let mut children = HashMap::new();
        let mut nested = Vec::new();
        for element in scope.elements() {
            let name = element.name();
            if element.is_choice() {
                children.insert(
                    name.into(),
                    Element {
                        type_name: "*".into(),
                        children_of: "*".into(),
                        is_choice: true,
                        repeats: element.is_array(),
                    },
                );
                continue;
            }
            let Some(child) = scope.child(name) else { continue };
            let type_name: Box<str> = if element.is_system() { "System.String".into() } else { child.type_code.into() };
            let children_of: Box<str> = match child.scope {
                // Inline children (backbone elements, `Timing.repeat`, `contentReference`s).
                Some(inner) if !inner.path().is_empty() => {
                    let inner_key = format!("{}.{}", inner.type_def().name(), inner.path());
                    nested.push((inner_key.clone(), inner));
                    inner_key.into()
                }
                _ => type_name.clone(),
            };
            let repeats = element.is_array();
            children.insert(name.into(), Element { type_name, children_of, is_choice: false, repeats });
        }
        self.elements.insert(key.into(), children);
        for (inner_key, inner) in nested {
            self.add_scope(inner_key, inner, depth + 1);
        }
    }

    /// The 147 concrete resource types, sorted.
    pub(crate) fn resource_types(&self) -> &[String] {
        &self.resource_types
    }

    pub(crate) fn is_resource_type(&self, name: &str) -> bool {
        self.resource_types.binary_search_by(|t| t.as_str().cmp(name)).is_ok()
    }
}

impl FhirModel {
    fn find(&self, parent: &str, element: &str) -> Option<&Element> {
        let mut current = parent;
        // Walks up the type hierarchy for inherited elements (`Patient.id` is `Resource.id`).
        for _ in 0..16 {
            if let Some(e) = self.elements.get(current).and_then(|m| m.get(element)) {
                return Some(e);
            }
            current = if current.contains('.') { "BackboneElement" } else { self.bases.get(current)?.as_deref()? };
        }
        None
    }
}

impl hearth_fhirpath::PatchModel for FhirModel {
    fn repeats(&self, parent: &str, element: &str) -> Option<bool> {
        self.find(parent, element).map(|e| e.repeats)
    }
}

impl ModelInfo for FhirModel {
    fn element(&self, parent: &str, element: &str) -> Option<ElementInfo<'_>> {
        self.find(parent, element).map(|e| ElementInfo {
            type_name: &e.type_name,
            children_of: &e.children_of,
            is_choice: e.is_choice,
        })
    }

    fn base_type(&self, type_name: &str) -> Option<&str> {
        self.bases.get(type_name)?.as_deref()
    }

    fn is_type(&self, name: &str) -> bool {
        self.bases.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn keys_follow_the_engine_convention() {
        let model = Model::r4().unwrap();
        let m = FhirModel::new(&model);
        let name = m.element("Patient", "name").unwrap();
        assert_eq!((name.type_name, name.children_of, name.is_choice), ("HumanName", "HumanName", false));
        let contact = m.element("Patient", "contact").unwrap();
        assert_eq!(contact.children_of, "Patient.contact");
        assert_eq!(m.element("Patient.contact", "name").unwrap().type_name, "HumanName");
        assert!(m.element("Observation", "value").unwrap().is_choice);
        assert_eq!(m.element("Patient", "id").unwrap().type_name, "System.String");
        assert_eq!(m.element("Patient", "meta").unwrap().type_name, "Meta");
        let repeat = m.element("Timing", "repeat").unwrap();
        assert_eq!((repeat.type_name, repeat.children_of), ("Element", "Timing.repeat"));
        assert!(m.element("Timing.repeat", "bounds").unwrap().is_choice);
        let nested = m.element("Questionnaire.item", "item").unwrap();
        assert_eq!(nested.children_of, "Questionnaire.item");
        assert_eq!(m.element("Patient.contact", "id").unwrap().type_name, "System.String");
        assert!(m.is_subtype_of("Age", "Quantity"));
        assert!(m.is_subtype_of("Patient", "Resource"));
        assert!(m.is_resource_type("Patient"));
        assert!(!m.is_resource_type("DomainResource"));
    }
}
