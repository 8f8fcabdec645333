//! The FHIR JSON parser and the R4 validator: any bytes, parsed as the server parses a body, then
//! validated. Must never panic, whatever the input.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn model() -> &'static hearth_fhir::Model {
    static MODEL: OnceLock<hearth_fhir::Model> = OnceLock::new();
    MODEL.get_or_init(|| hearth_fhir::Model::r4().expect("the R4 model loads"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let _ = model().validate(&value);
});
