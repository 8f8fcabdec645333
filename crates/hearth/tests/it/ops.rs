//! Health, readiness, metrics, OpenAPI, request ids and the CapabilityStatement.

use crate::common::{TestApp, patient};

#[tokio::test]
async fn health_and_readiness() {
    let t = TestApp::spawn().await;
    let r = t.get("/healthz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    let r = t.get("/readyz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["database"], crate::common::backend());
    // With the database closed, readiness fails with the JSON error envelope.
    t.app.store.close().await;
    let r = t.get("/readyz").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["code"], "unavailable");
    assert_eq!(t.get("/healthz").await.status, 200, "liveness does not depend on the database");
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let t = TestApp::spawn().await;
    t.create(&patient("M")).await;
    t.get("/fhir/Patient/missing").await;
    let m = t.get("/metrics").await;
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    let text = m.text;
    assert!(
        text.lines().any(|l| l.starts_with("hearth_http_requests_total")
            && l.contains("route=\"/fhir/{type}\"")
            && l.contains("status=\"201\"")
            && l.contains("method=\"POST\"")),
        "{text}"
    );
    assert!(text.lines().any(|l| l.contains("route=\"/fhir/{type}/{id}\"") && l.contains("status=\"404\"")), "{text}");
    assert!(text.contains("hearth_http_request_duration_seconds_bucket"), "{text}");
    assert!(text.contains("hearth_db_pool_connections"), "{text}");
    assert!(!text.contains("missing"), "concrete ids never become labels");
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let t = TestApp::spawn().await;
    let r = t.get("/healthz").await;
    assert_eq!(r.header("x-request-id").unwrap().len(), 36);
    let r = t.send(t.request(reqwest::Method::GET, "/healthz").header("x-request-id", "abc-123")).await;
    assert_eq!(r.header("x-request-id").as_deref(), Some("abc-123"));
}

#[tokio::test]
async fn openapi_and_docs_are_served_without_a_cdn() {
    let t = TestApp::spawn().await;
    let r = t.get("/api/openapi.json").await;
    assert_eq!(r.status, 200);
    let spec = r.json();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    // Every app endpoint the server routes is documented.
    let documented = [
        ("get", "/"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("get", "/api/openapi.json"),
        ("post", "/api/v1/auth/register"),
        ("post", "/api/v1/auth/login"),
        ("post", "/api/v1/auth/refresh"),
        ("post", "/api/v1/auth/logout"),
        ("get", "/api/v1/auth/me"),
        ("post", "/api/v1/auth/totp/enroll"),
        ("post", "/api/v1/auth/totp/confirm"),
        ("post", "/api/v1/auth/totp/disable"),
        ("post", "/api/v1/auth/otp/request"),
        ("post", "/api/v1/auth/otp/verify"),
        ("post", "/api/v1/admin/accounts"),
        ("post", "/api/v1/admin/caregivers"),
        ("get", "/api/v1/admin/oauth/clients"),
        ("post", "/api/v1/admin/oauth/clients"),
        ("delete", "/api/v1/admin/oauth/clients/{client_id}"),
        ("get", "/.well-known/jwks.json"),
        ("get", "/.well-known/smart-configuration"),
        ("get", "/oauth/authorize"),
        ("post", "/oauth/authorize"),
        ("post", "/oauth/token"),
        ("get", "/api/v1/me/access-log"),
        ("get", "/api/v1/me/consents"),
        ("post", "/api/v1/me/consents"),
        ("delete", "/api/v1/me/consents/{id}"),
        ("post", "/api/push/register"),
        ("get", "/api/push/vapid-public-key"),
        ("get", "/api/v1/notifications"),
        ("post", "/api/v1/notifications/{id}/read"),
        ("get", "/api/v1/notifications/ws"),
        ("get", "/api/v1/notifications/preferences"),
        ("put", "/api/v1/notifications/preferences"),
        ("get", "/api/v1/admin/notifications"),
        ("post", "/api/v1/notifications/twilio/status"),
    ];
    for (method, p) in documented {
        assert!(spec["paths"][p][method].is_object(), "{method} {p} missing from OpenAPI");
    }
    assert_eq!(spec["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert!(spec["paths"]["/api/v1/auth/me"]["get"]["security"].is_array());
    let docs = t.get("/api/docs").await;
    assert_eq!(docs.status, 200);
    assert!(docs.text.contains("/api/openapi.json"));
    assert!(!docs.text.contains("http://") && !docs.text.contains("https://"), "docs must not load anything remote");
}

#[tokio::test]
async fn capability_statement_claims_only_what_is_implemented() {
    let t = TestApp::spawn().await;
    let r = t.get("/fhir/metadata").await;
    assert_eq!(r.status, 200);
    let cs = r.json();
    crate::common::assert_valid_r4(&cs);
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    assert_eq!(cs["kind"], "instance");
    let resources = cs["rest"][0]["resource"].as_array().unwrap();
    assert_eq!(resources.len(), 147);
    let patient = resources.iter().find(|r| r["type"] == "Patient").unwrap();
    let codes: Vec<&str> =
        patient["interaction"].as_array().unwrap().iter().map(|i| i["code"].as_str().unwrap()).collect();
    for c in ["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type"]
    {
        assert!(codes.contains(&c), "{c} missing");
    }
    // The search parameters listed are the registry's, and each one answers a search.
    let params = patient["searchParam"].as_array().unwrap();
    let names: Vec<&str> = params.iter().map(|p| p["name"].as_str().unwrap()).collect();
    for n in ["_id", "_lastUpdated", "name", "family", "birthdate", "identifier", "general-practitioner"] {
        assert!(names.contains(&n), "{n} missing from Patient.searchParam");
    }
    assert!(!names.contains(&"near"));
    for p in params {
        let (name, ty) = (p["name"].as_str().unwrap(), p["type"].as_str().unwrap());
        let r = t.get(&format!("/fhir/Patient?{name}:missing=true")).await;
        assert_eq!(r.status, 200, "{name} ({ty}) is listed but not searchable: {}", r.text);
    }
    assert!(patient["searchRevInclude"].as_array().unwrap().iter().any(|v| v == "Observation:subject"));
    assert!(patient["searchInclude"].as_array().unwrap().iter().any(|v| v == "Patient:general-practitioner"));
    // Every claimed read really works for an arbitrary type: a 404, not a 405.
    assert_eq!(t.get("/fhir/Substance/x").await.status, 404);
    // The only system operation claimed is $export, and it answers.
    let ops: Vec<&str> =
        cs["rest"][0]["operation"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(ops, ["export"]);
    let r = t.send(t.request(reqwest::Method::GET, "/fhir/$export").header("prefer", "respond-async")).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let system: Vec<&str> =
        cs["rest"][0]["interaction"].as_array().unwrap().iter().map(|i| i["code"].as_str().unwrap()).collect();
    assert_eq!(system, ["history-system", "transaction", "batch", "search-system"]);
}

#[tokio::test]
async fn planner_statistics_are_gathered_when_asked_and_not_again_without_changes() {
    let t = TestApp::spawn().await;
    t.create(&patient("Statistics")).await;
    let analysed = t.app.store.refresh_statistics(true).await.unwrap();
    if crate::common::backend() == "postgres" {
        // Every table of the record's schema: resources, versions, each search_* table, ….
        assert!(analysed >= 10, "only {analysed} tables analysed");
        let fresh = t.app.store.refresh_statistics(false).await.unwrap();
        assert_eq!(fresh, 0, "nothing changed since the forced refresh, yet {fresh} tables were analysed again");
    } else {
        // SQLite's search plans name their indexes: nothing to gather.
        assert_eq!(analysed, 0);
    }
}

#[tokio::test]
async fn the_front_door_links_to_everything_a_newcomer_needs() {
    let t = TestApp::spawn().await;
    let r = t.get("/").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    for link in ["/fhir/metadata", "/api/docs", "/api/openapi.json", "/healthz", "create-admin"] {
        assert!(r.text.contains(link), "the home page lacks {link}");
    }
    let r = t.send(t.anonymous().get(t.url("/")).header("accept", "application/json")).await;
    assert_eq!((r.status, r.json()["fhir"].as_str()), (200, Some("/fhir")));
    assert_eq!(r.json()["api_docs"], "/api/docs");
}

/// The `hearth_*` names in `text` (a dashboard's queries or alert expressions): words that start
/// with `hearth_`.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("hearth_"))
        .map(str::to_owned)
        .collect()
}

/// Every metric the code registers, by macro and name (`counter!("hearth_…"`), from the sources.
fn exported_metrics() -> Vec<(String, String)> {
    let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = Vec::new();
    let mut stack = vec![crates];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("tests") && !path.ends_with("target") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|x| x == "rs") {
                let src = std::fs::read_to_string(&path).unwrap();
                for kind in ["counter", "gauge", "histogram"] {
                    for (i, _) in src.match_indices(&format!("{kind}!(\"hearth_")) {
                        let name = &src[i + kind.len() + 3..];
                        let name = &name[..name.find('"').unwrap()];
                        out.push((kind.to_owned(), name.to_owned()));
                    }
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn the_dashboard_and_alerts_name_only_metrics_hearth_exports() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let exported = exported_metrics();
    // What a running server shows on /metrics after a request is among what the scan found (the
    // scan sees the code that registers metrics).
    let t = TestApp::spawn().await;
    assert_eq!(t.get("/healthz").await.status, 200);
    let shown = t.get("/metrics").await.text;
    for name in ["hearth_http_requests_total", "hearth_http_request_duration_seconds", "hearth_db_pool_connections"] {
        assert!(shown.contains(name), "{name} not on /metrics");
        assert!(exported.iter().any(|(_, n)| n == name), "{name} not found in the sources: {exported:?}");
    }
    // A name in the dashboard or the rules is a registered metric, or a histogram's series.
    let known = |name: &str| {
        exported.iter().any(|(kind, n)| {
            n == name
                || (kind == "histogram"
                    && ["_bucket", "_sum", "_count"].iter().any(|s| name.strip_suffix(s) == Some(n.as_str())))
        })
    };
    let dashboard = std::fs::read_to_string(root.join("deploy/grafana/hearth.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let panels = parsed["panels"].as_array().unwrap();
    assert!(panels.iter().all(|p| p["targets"].as_array().is_some_and(|t| !t.is_empty())), "a panel without a query");
    let rules = std::fs::read_to_string(root.join("deploy/prometheus/hearth-alerts.yml")).unwrap();
    let mut named = metric_names(&dashboard);
    named.extend(metric_names(&rules));
    assert!(named.len() >= 5, "{named:?}");
    let unknown: Vec<&String> = named.iter().filter(|n| !known(n)).collect();
    assert!(unknown.is_empty(), "the dashboard or the alert rules name metrics Hearth does not export: {unknown:?}");
    // Every alert links its runbook section, and the runbook has it.
    let runbook = std::fs::read_to_string(root.join("docs/OPERATIONS.md")).unwrap().to_lowercase();
    let alerts: Vec<&str> = rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    assert!(alerts.len() >= 5, "{alerts:?}");
    for alert in alerts {
        assert!(rules.contains(&format!("docs/OPERATIONS.md#{}", alert.to_lowercase())), "{alert} has no runbook link");
        assert!(
            runbook.contains(&format!("### {}", alert.to_lowercase())),
            "docs/OPERATIONS.md has no section {alert}"
        );
    }
}
