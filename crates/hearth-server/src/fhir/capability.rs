//! The CapabilityStatement, generated from what this build really implements.

use chrono::{DateTime, SecondsFormat, Utc};
use hearth_fhir::Model;
use serde_json::{Value, json};

/// Interactions every resource type supports.
const TYPE_INTERACTIONS: [&str; 8] =
    ["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create"];

pub fn capability_statement(model: &Model, base: &str, started: DateTime<Utc>) -> Value {
    let resources: Vec<Value> = model
        .resource_types()
        .map(|t| {
            json!({
                "type": t,
                "interaction": TYPE_INTERACTIONS.iter().map(|c| json!({"code": c})).collect::<Vec<_>>(),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "not-supported",
                "conditionalUpdate": true,
                "conditionalDelete": "single",
                "searchParam": [
                    {"name": "_id", "type": "token",
                     "documentation": "Logical id; in conditional create/update/delete criteria."},
                    {"name": "identifier", "type": "token",
                     "documentation": "Business identifier; in conditional create/update/delete criteria."}
                ]
            })
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": started.to_rfc3339_opts(SecondsFormat::Secs, true),
        "publisher": "Hearth",
        "kind": "instance",
        "software": {"name": "Hearth", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Hearth FHIR R4 server", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": [{"code": "history-system"}, {"code": "transaction"}, {"code": "batch"}]
        }]
    })
}
