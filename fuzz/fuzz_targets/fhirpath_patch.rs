//! FHIRPath Patch: the input is a JSON value `{"input": resource, "patch": Parameters}` (the shape
//! of the FHIR test cases), or any JSON taken as a Parameters patch of a fixed Patient. Applied as
//! the server applies it (`Registry::fhirpath_patch` over the R4 model), then the result is
//! validated. Either may fail; neither may panic or hang.
#![no_main]

use std::sync::OnceLock;

use hearth_fhirpath::DateTime;
use hearth_search::Registry;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fn model() -> &'static hearth_fhir::Model {
    static MODEL: OnceLock<hearth_fhir::Model> = OnceLock::new();
    MODEL.get_or_init(|| hearth_fhir::Model::r4().expect("the R4 model loads"))
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Registry::r4(model()).expect("the R4 search parameters load"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Value>(data) else { return };
    let (resource, patch) = match (input.get("input"), input.get("patch")) {
        (Some(r), Some(p)) => (r.clone(), p.clone()),
        _ => (
            json!({"resourceType": "Patient", "id": "p1", "birthDate": "1920-01-01",
                   "name": [{"family": "Rao", "given": ["Asha", "K"]}],
                   "telecom": [{"system": "phone", "value": "555"}]}),
            input,
        ),
    };
    let Some(now) = DateTime::parse("2024-05-01T22:30:00.000+02:00") else { return };
    if let Ok(patched) = registry().fhirpath_patch(&resource, &patch, now) {
        let _ = model().validate(&patched);
    }
});
