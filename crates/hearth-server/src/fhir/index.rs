//! What the store indexes for a resource. Today: the `identifier` token (every identifier with a
//! `value`), which is what conditional interactions match on. The SearchParameter-driven indexer
//! of the search engine replaces this module and keeps its output type.

use hearth_store::TokenIndex;
use serde_json::Value;

pub fn tokens(resource: &Value) -> Vec<TokenIndex> {
    let identifiers: Vec<&Value> = match resource.get("identifier") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => Vec::new(),
    };
    identifiers
        .into_iter()
        .filter_map(|ident| {
            let code = ident.get("value")?.as_str()?.to_owned();
            let system = ident.get("system").and_then(Value::as_str).map(str::to_owned);
            Some(TokenIndex { param: "identifier".into(), system, code })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn indexes_array_and_single_identifiers_with_values_only() {
        let p = json!({"resourceType": "Patient", "identifier": [
            {"system": "urn:s", "value": "1"}, {"value": "2"}, {"system": "urn:novalue"}]});
        let t = tokens(&p);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].system.as_deref(), Some("urn:s"));
        assert_eq!(t[1].system, None);
        let qr = json!({"resourceType": "QuestionnaireResponse", "identifier": {"system": "urn:q", "value": "9"}});
        assert_eq!(tokens(&qr)[0].code, "9");
    }
}
