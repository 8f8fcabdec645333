//! JSON Patch (RFC 6902): the input is a JSON value `{"doc": …, "patch": […]}`, or any JSON taken
//! as a patch of a fixed Patient. Applying may fail; it must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Value>(data) else { return };
    let (doc, patch) = match (input.get("doc"), input.get("patch")) {
        (Some(d), Some(p)) => (d.clone(), p.clone()),
        _ => (json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Rao", "given": ["Asha"]}]}), input),
    };
    let _ = hearth_fhir::json_patch::apply(&doc, &patch);
});
