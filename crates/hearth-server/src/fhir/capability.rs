//! The CapabilityStatement, generated from what this build really implements.

use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::BTreeMap;

use hearth_fhir::Model;
use hearth_search::{ParamType, Registry};
use serde_json::{Value, json};

/// Interactions every resource type supports.
const TYPE_INTERACTIONS: [&str; 9] =
    ["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type"];

/// What a type written only by the server supports through plain FHIR: AuditEvents are the
/// server's. (Appointments are writable: the scheduling workflow commits those writes after
/// claiming the practitioner's time, `hearth_scheduling::fhir_writes`.)
const READ_ONLY_INTERACTIONS: [&str; 5] = ["read", "vread", "history-instance", "history-type", "search-type"];

/// Types plain FHIR writes are refused for (the store guard's rule, so the statement says so).
fn read_only(resource_type: &str) -> bool {
    resource_type == hearth_store::AUDIT_TYPE
}

/// The search parameters of one type as the registry in force has them (R4 plus stored
/// SearchParameters); what is refused (`near`, `_query`, ...) is not listed.
fn search_params(registry: &Registry, resource_type: &str) -> Vec<Value> {
    let mut params: Vec<_> = registry
        .params(resource_type)
        .filter(|p| p.kind != ParamType::Special && !hearth_search::UNSUPPORTED.contains(&p.code.as_str()))
        .collect();
    params.sort_by(|a, b| a.code.cmp(&b.code));
    params.into_iter().map(|p| json!({"name": p.code, "definition": p.url, "type": p.kind.as_str()})).collect()
}

/// `rest.security`: SMART on FHIR, with the OAuth endpoints in the `oauth-uris` extension.
fn security(base: &str) -> Value {
    let origin = base.strip_suffix("/fhir").unwrap_or(base);
    json!({
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [
                {"url": "authorize", "valueUri": format!("{origin}/oauth/authorize")},
                {"url": "token", "valueUri": format!("{origin}/oauth/token")}
            ]
        }],
        "service": [{
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                "code": "SMART-on-FHIR"
            }],
            "text": "OAuth 2.0 authorization code with PKCE per SMART App Launch, and client credentials with a \
                     private_key_jwt assertion (RS384/ES384) per SMART Backend Services; see \
                     .well-known/smart-configuration"
        }]
    })
}

pub fn capability_statement(model: &Model, registry: &Registry, base: &str, started: DateTime<Utc>) -> Value {
    // `_revinclude` values per target type: every reference parameter that can point at it.
    let mut revincludes: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for source in model.resource_types() {
        for p in registry.params(source).filter(|p| p.kind == ParamType::Reference) {
            for target in model.resource_types() {
                if p.targets.is_empty() || p.targets.iter().any(|t| t == target) {
                    revincludes.entry(target).or_default().push(format!("{source}:{}", p.code));
                }
            }
        }
    }
    // System-level search takes the parameters every resource has.
    let common: Vec<Value> = search_params(registry, "Patient")
        .into_iter()
        .filter(|p| p["name"].as_str().is_some_and(|n| n.starts_with('_')))
        .collect();
    let resources: Vec<Value> = model
        .resource_types()
        .map(|t| {
            let mut includes: Vec<String> = registry
                .params(t)
                .filter(|p| p.kind == ParamType::Reference)
                .map(|p| format!("{t}:{}", p.code))
                .collect();
            includes.sort();
            includes.insert(0, "*".into());
            let mut revinclude = revincludes.remove(t).unwrap_or_default();
            revinclude.sort();
            let operations: Vec<Value> = match t {
                "Patient" => vec![
                    json!({"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}),
                    json!({"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"}),
                ],
                "Group" => vec![
                    json!({"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"}),
                ],
                // Hearth's own scheduling operations (docs/SCHEDULING.md): computed free slots and
                // atomic booking; their parameters are Hearth's, not those of an IG.
                "Appointment" => vec![
                    json!({"name": "find", "definition": "urn:hearth:OperationDefinition/Appointment-find"}),
                    json!({"name": "book", "definition": "urn:hearth:OperationDefinition/Appointment-book"}),
                ],
                _ => Vec::new(),
            };
            let writable = !read_only(t);
            let interactions: &[&str] = if writable { &TYPE_INTERACTIONS } else { &READ_ONLY_INTERACTIONS };
            let mut resource = json!({
                "type": t,
                "interaction": interactions.iter().map(|c| json!({"code": c})).collect::<Vec<_>>(),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": writable,
                "conditionalCreate": writable,
                // `If-None-Match` (a version ETag, or `*`) and `If-Modified-Since` answer `304`.
                "conditionalRead": "full-support",
                "conditionalUpdate": writable,
                "conditionalDelete": if writable { "single" } else { "not-supported" },
                "searchInclude": includes,
                "searchRevInclude": revinclude,
                "searchParam": search_params(registry, t)
            });
            if !operations.is_empty()
                && let Some(map) = resource.as_object_mut()
            {
                map.insert("operation".into(), Value::Array(operations));
            }
            resource
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
            "security": security(base),
            "resource": resources,
            "interaction": [
                {"code": "history-system"}, {"code": "transaction"}, {"code": "batch"}, {"code": "search-system"}
            ],
            "searchParam": common,
            "operation": [
                {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}
            ]
        }]
    })
}
