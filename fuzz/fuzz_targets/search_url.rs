//! The search-URL parser: a query string (the first line of the input names the resource type)
//! decoded as a URL's query and parsed strictly and leniently against the R4 parameters.
#![no_main]

use std::sync::OnceLock;

use hearth_search::{Handling, Registry};
use libfuzzer_sys::fuzz_target;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let model = hearth_fhir::Model::r4().expect("the R4 model loads");
        Registry::r4(&model).expect("the R4 search parameters load")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (ty, query) = text.split_once('\n').unwrap_or(("Patient", text));
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    for handling in [Handling::Strict, Handling::Lenient] {
        let _ = registry().parse_query(&[ty], &pairs, handling);
    }
});
