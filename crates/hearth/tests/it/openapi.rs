//! The app API reference: `/api/openapi.json` describes every app operation the server routes
//! with typed bodies, a tag and its security (the rule is `hearth_workflow::openapi::problems`,
//! so routes added by any workflow are held to it), and `/api/docs` renders it without loading
//! anything from elsewhere, its script allowed by the page's strict Content-Security-Policy.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::common::TestApp;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Every `(method, path)` the workspace's routers serve under `/api/`, read from the
/// `.route("/api/…", get(…).post(…))` calls in each crate's `src/` (the routers keep no list
/// of their routes at run time).
fn routed_app_operations() -> BTreeSet<(String, String)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        rust_files(&entry.unwrap().path().join("src"), &mut files);
    }
    let mut out = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            // The call's arguments, up to its closing parenthesis.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find_map(|(i, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    (depth == 0).then_some(i)
                })
                .unwrap_or(rest.len());
            let args = &rest[..end];
            let Some(path) = args.split('"').nth(1).filter(|p| p.starts_with("/api/")) else { continue };
            let handlers = &args[args.find(',').unwrap()..];
            let mut found = false;
            for method in ["get", "post", "put", "patch", "delete"] {
                let bare = handlers
                    .match_indices(&format!("{method}("))
                    .any(|(i, _)| i == 0 || !handlers[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_'));
                if bare {
                    out.insert((method.to_owned(), path.to_owned()));
                    found = true;
                }
            }
            assert!(found, "{}: no method routed for {path}: {args}", file.display());
        }
    }
    out
}

/// Every documented handler that reads a request body (an `axum::body::Bytes`, `Json<…>` or
/// `Form<…>` argument) and names no `request_body` in its `#[utoipa::path]`, as `file: fn`;
/// `readers` counts the handlers that read one.
fn handlers_reading_an_undocumented_body(readers: &mut usize) -> Vec<String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        rust_files(&entry.unwrap().path().join("src"), &mut files);
    }
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, _) in text.match_indices("#[utoipa::path(") {
            let rest = &text[at..];
            let Some(fn_at) = rest.find("fn ") else { continue };
            let attribute = &rest[..fn_at];
            let signature = &rest[fn_at..rest[fn_at..].find('{').map_or(rest.len(), |e| fn_at + e)];
            let arguments = signature.split("->").next().unwrap_or(signature);
            if !["Bytes", "Json<", "Form<"].iter().any(|t| arguments.contains(t)) {
                continue;
            }
            *readers += 1;
            if !attribute.contains("request_body") {
                let name = signature.trim_start_matches("fn ").split('(').next().unwrap_or("?");
                out.push(format!("{}: {name}", file.display()));
            }
        }
    }
    out
}

#[test]
fn every_handler_that_reads_a_body_documents_it() {
    let mut readers = 0;
    let missing = handlers_reading_an_undocumented_body(&mut readers);
    assert!(readers > 30, "only {readers} handlers reading a body found: the scan is broken");
    assert!(missing.is_empty(), "handlers that read a request body without a request_body: {missing:#?}");
}

#[test]
fn the_route_scan_finds_the_known_routes() {
    // Guards the scan itself: if it stopped finding routes, the completeness test below would
    // pass for nothing.
    let routed = routed_app_operations();
    for (m, p) in [
        ("post", "/api/v1/auth/login"),
        ("get", "/api/v1/me/consents"),
        ("delete", "/api/v1/me/consents/{id}"),
        ("put", "/api/v1/notifications/preferences"),
        ("delete", "/api/v1/admin/patients/{id}/legal-hold"),
        ("get", "/api/docs"),
    ] {
        assert!(routed.contains(&(m.to_owned(), p.to_owned())), "{m} {p} not found by the scan");
    }
    assert!(routed.len() > 60, "{} routes", routed.len());
}

#[tokio::test]
async fn every_app_operation_is_described_with_typed_bodies_a_tag_and_its_security() {
    let t = TestApp::spawn().await;
    let r = t.get("/api/openapi.json").await;
    assert_eq!(r.status, 200);
    let spec = r.json();

    let mut missing: Vec<String> = routed_app_operations()
        .into_iter()
        .filter(|(m, p)| !spec["paths"][p.as_str()][m.as_str()].is_object())
        .map(|(m, p)| format!("{} {p}: routed but not in /api/openapi.json", m.to_uppercase()))
        .collect();
    missing.extend(hearth_server::workflow::openapi::problems(&spec));
    assert!(missing.is_empty(), "{} problems:\n{}", missing.len(), missing.join("\n"));

    // The shared pieces a client needs, once each.
    let schemes = &spec["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["refreshCookie"]["in"], "cookie");
    assert_eq!(schemes["refreshCookie"]["name"], "__Secure-hearth-refresh");
    assert_eq!(schemes["csrfHeader"]["in"], "header");
    assert_eq!(schemes["csrfHeader"]["name"], "x-csrf-token");
    let error = &spec["components"]["schemas"]["ErrorEnvelope"];
    assert_eq!(error["required"][0], "error", "{error}");
    let tags: BTreeSet<&str> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(p, _)| p.starts_with("/api/"))
        .flat_map(|(_, item)| item.as_object().unwrap().values())
        .filter_map(|op| op["tags"][0].as_str())
        .collect();
    for tag in [
        "accounts",
        "consents",
        "scheduling",
        "encounters",
        "letters",
        "notifications",
        "data rights",
        "registry",
        "intake",
    ] {
        assert!(tags.contains(tag), "no operation tagged {tag:?}: {tags:?}");
    }
}

#[tokio::test]
async fn an_app_error_has_the_documented_envelope() {
    let t = TestApp::spawn().await;
    let r = t.send(t.anonymous().get(t.url("/api/v1/auth/me"))).await;
    assert_eq!(r.status, 401);
    let body = r.json();
    let spec = t.get("/api/openapi.json").await.json();
    let envelope = serde_json::json!({"$ref": "#/components/schemas/ErrorEnvelope"});
    let differences = hearth_server::workflow::openapi::mismatches(&body, &envelope, &spec);
    assert!(differences.is_empty(), "{body}: {differences:?}");
    assert_eq!(spec["components"]["schemas"]["ErrorDetail"]["required"], serde_json::json!(["code", "message"]));
    assert_eq!(
        spec["paths"]["/api/v1/auth/me"]["get"]["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorEnvelope"
    );
}

#[test]
fn the_rule_refuses_an_untyped_body() {
    use serde_json::json;
    let spec = json!({"openapi": "3.1.0", "paths": {
        "/api/v1/things": {"post": {
            "tags": ["things"],
            "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": {
                "200": {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}},
                "401": {"description": "no", "content": {"application/json": {"schema": {"type": "object"}}}}
            }
        }},
        "/api/v1/other": {"get": {"responses": {"200": {"description": "no content type"}}}},
        "/api/v1/headers-only": {"head": {"tags": ["t"], "responses": {"200": {"description": "offset", "headers": {"Upload-Offset": {"schema": {"type": "integer"}}}}}}}
    }});
    let problems = hearth_server::workflow::openapi::problems(&spec);
    for expected in [
        "POST /api/v1/things: request body application/json is a bare",
        "POST /api/v1/things: answer 200 application/json is a bare",
        "POST /api/v1/things: answer 401 is not the shared ErrorEnvelope",
        "POST /api/v1/things: answers 401 but names no security scheme",
        "GET /api/v1/other: no tag",
        "GET /api/v1/other: answer 200 has no content type",
    ] {
        assert!(problems.iter().any(|p| p.starts_with(expected)), "{expected:?} not in {problems:#?}");
    }
    assert!(!problems.iter().any(|p| p.contains("headers-only")), "a headers-only answer is described: {problems:#?}");
}

#[tokio::test]
async fn the_docs_page_is_self_contained_and_its_script_runs_under_a_strict_csp() {
    let t = TestApp::spawn().await;
    let docs = t.get("/api/docs").await;
    assert_eq!(docs.status, 200);
    let csp = docs.header("content-security-policy").unwrap();
    let directive = |name: &str| {
        csp.split(';')
            .map(str::trim)
            .find(|d| d.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {csp}"))
            .to_owned()
    };
    // Scripts only from this origin: no inline script, no eval, nothing remote.
    assert_eq!(directive("script-src"), "script-src 'self'");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    assert_eq!(directive("connect-src"), "connect-src 'self'");
    assert!(!docs.text.contains("http://") && !docs.text.contains("https://"), "docs must not load anything remote");
    let lower = docs.text.to_lowercase();
    for handler in ["onclick=", "onload=", "onsubmit=", "onchange=", "javascript:"] {
        assert!(!lower.contains(handler), "{handler}: inline handlers are blocked by the CSP");
    }
    // Every <script> names a same-origin file and carries no inline code.
    let scripts: Vec<&str> = docs.text.split("<script").skip(1).collect();
    assert!(!scripts.is_empty(), "the page has no script");
    for s in scripts {
        let (tag, rest) = s.split_once('>').unwrap();
        let src = tag.split("src=\"").nth(1).and_then(|v| v.split('"').next()).expect("a script without src");
        assert!(src.starts_with('/'), "{src}");
        assert!(rest.trim_start().starts_with("</script>"), "inline script: {rest:.80}");
        let js = t.get(src).await;
        assert_eq!(js.status, 200, "{src}");
        assert!(js.header("content-type").unwrap().starts_with("text/javascript"), "{src}");
        assert!(js.text.contains("/api/openapi.json"), "the script reads the description");
        assert!(!js.text.contains("http://") && !js.text.contains("https://"), "{src} loads something remote");
    }
    for s in docs.text.split("<link").skip(1) {
        let href = s.split("href=\"").nth(1).and_then(|v| v.split('"').next()).unwrap();
        assert!(href.starts_with('/'), "{href}");
        assert_eq!(t.get(href).await.status, 200, "{href}");
    }
    assert!(!docs.text.contains("<style"), "inline styles are blocked by the CSP");
}

#[test]
fn the_conformance_check_finds_undocumented_and_mistyped_fields() {
    use serde_json::json;
    let spec = json!({"components": {"schemas": {"Thing": {"type": "object", "required": ["id"],
        "properties": {"id": {"type": "string"}, "n": {"type": ["integer", "null"]}}}}}});
    let schema = json!({"$ref": "#/components/schemas/Thing"});
    let check = |v: serde_json::Value| hearth_server::workflow::openapi::mismatches(&v, &schema, &spec);
    assert!(check(json!({"id": "a", "n": null})).is_empty());
    assert!(check(json!({"id": "a", "n": 3})).is_empty());
    assert!(check(json!({"n": 3}))[0].contains("required `id`"));
    assert!(check(json!({"id": "a", "extra": 1}))[0].contains("`extra` is not documented"));
    assert!(check(json!({"id": 1}))[0].contains("documented as string"));
}

/// Real answers of the main calls of each workflow, each checked against the schema the
/// description gives for it: no field missing, none undocumented, none of another type.
#[tokio::test]
async fn real_answers_match_their_documented_schemas() {
    use reqwest::Method;
    use serde_json::{Value, json};

    use crate::scheduling::{call, clinician, every_day, patient_account, schedule};

    let t = TestApp::spawn().await;
    t.clock.set(chrono::DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z").unwrap().to_utc());
    let spec = t.get("/api/openapi.json").await.json();
    let mut problems = Vec::new();
    let mut checked = 0;
    let mut check = |method: &str, path: &str, status: u16, body: &Value| {
        let schema = hearth_server::workflow::openapi::answer_schema(&spec, method, path, status)
            .unwrap_or_else(|| panic!("{method} {path} documents no JSON answer {status}: {body}"));
        for m in hearth_server::workflow::openapi::mismatches(body, schema, &spec) {
            problems.push(format!("{} {path} {status}: {m}", method.to_uppercase()));
        }
        checked += 1;
    };
    let admin = t.client.clone();
    let anon = t.anonymous();

    // Accounts and sign-in.
    let (s, v) = call(&t, &anon, Method::GET, "/api/v1/auth/me", None).await;
    check("get", "/api/v1/auth/me", s, &v);
    let (s, v) = call(&t, &admin, Method::GET, "/api/v1/auth/me", None).await;
    check("get", "/api/v1/auth/me", s, &v);
    let reg = json!({"email": "asha@example.org", "password": "a long passphrase of mine 7", "given": "Asha", "family": "Rao", "birthDate": "1984-03-07", "phone": "098765 43210"});
    let (s, v) = call(&t, &anon, Method::POST, "/api/v1/auth/register", Some(reg)).await;
    assert_eq!(s, 201, "{v}");
    check("post", "/api/v1/auth/register", s, &v);
    let login = json!({"email": "asha@example.org", "password": "a long passphrase of mine 7"});
    let (s, tokens) = call(&t, &anon, Method::POST, "/api/v1/auth/login", Some(login)).await;
    assert_eq!(s, 200, "{tokens}");
    check("post", "/api/v1/auth/login", s, &tokens);
    let refresh = json!({"refresh_token": tokens["refresh_token"]});
    let (s, v) = call(&t, &anon, Method::POST, "/api/v1/auth/refresh", Some(refresh)).await;
    check("post", "/api/v1/auth/refresh", s, &v);
    let (s, v) =
        call(&t, &anon, Method::POST, "/api/v1/auth/otp/request", Some(json!({"phone": "+919876543210"}))).await;
    check("post", "/api/v1/auth/otp/request", s, &v);

    // A patient's own calls.
    let (_, _, pc) = patient_account(&t, "Okafor").await;
    let (s, v) =
        call(&t, &pc, Method::POST, "/api/v1/me/consents", Some(json!({"kind": "research", "allow": true}))).await;
    check("post", "/api/v1/me/consents", s, &v);
    let (s, v) = call(&t, &pc, Method::GET, "/api/v1/me/consents", None).await;
    check("get", "/api/v1/me/consents", s, &v);
    let (s, v) = call(&t, &pc, Method::GET, "/api/v1/me/access-log", None).await;
    check("get", "/api/v1/me/access-log", s, &v);
    let (s, v) = call(&t, &pc, Method::GET, "/api/v1/notifications/preferences", None).await;
    check("get", "/api/v1/notifications/preferences", s, &v);
    let quiet =
        json!({"quiet_hours": {"start": "22:00", "end": "07:00"}, "channels": {"announcement": {"email": false}}});
    let (s, v) = call(&t, &pc, Method::PUT, "/api/v1/notifications/preferences", Some(quiet)).await;
    check("put", "/api/v1/notifications/preferences", s, &v);
    let (s, v) = call(&t, &pc, Method::GET, "/api/v1/notifications", None).await;
    check("get", "/api/v1/notifications", s, &v);
    let (s, v) = call(&t, &pc, Method::GET, "/api/v1/me/erasure", None).await;
    check("get", "/api/v1/me/erasure", s, &v);

    // The registry.
    let provider = json!({"prefix": ["Dr"], "given": ["Meera"], "family": "Iyer", "specialty": {"system": "snomed", "code": "394801008", "display": "Trauma and orthopaedics"}});
    let (s, v) = call(&t, &admin, Method::POST, "/api/v1/providers", Some(provider)).await;
    check("post", "/api/v1/providers", s, &v);
    let (s, v) = call(&t, &admin, Method::GET, "/api/v1/providers", None).await;
    check("get", "/api/v1/providers", s, &v);
    let new_patient = json!({"given": ["Ravi"], "family": "Kumar", "birthDate": "1990-01-02", "gender": "male", "phone": "91234 56789", "address": {"line": ["4 Park Street"], "city": "Kolkata", "postalCode": "700016"}});
    let (s, v) = call(&t, &admin, Method::POST, "/api/v1/patients", Some(new_patient.clone())).await;
    check("post", "/api/v1/patients", s, &v);
    let (s, v) = call(&t, &admin, Method::POST, "/api/v1/patients", Some(new_patient)).await;
    assert_eq!(s, 409, "{v}");
    check("post", "/api/v1/patients", s, &v);
    let (s, v) = call(&t, &admin, Method::GET, "/api/v1/patients?q=ravi", None).await;
    check("get", "/api/v1/patients", s, &v);

    // Scheduling: a schedule, its slots, a booking, the list, a check-in.
    let (doc, dc) = clinician(&t, "Rao").await;
    let (patient, _, _) = patient_account(&t, "Mensah").await;
    let sched = schedule(&t, &dc, every_day(&doc, "Asia/Kolkata", "09:00", "17:00")).await;
    let (s, v) = call(&t, &dc, Method::GET, &format!("/api/v1/schedules/{sched}"), None).await;
    check("get", "/api/v1/schedules/{id}", s, &v);
    let slots_path = format!(
        "/api/v1/appointments/slots/available?practitioner={doc}&from=2026-06-02T00:00:00Z&to=2026-06-03T00:00:00Z&type=ROUTINE"
    );
    let (s, v) = call(&t, &dc, Method::GET, &slots_path, None).await;
    check("get", "/api/v1/appointments/slots/available", s, &v);
    let start = v["slots"][0]["start"].as_str().unwrap().to_owned();
    let book =
        json!({"practitioner": doc, "start": start, "type": "ROUTINE", "patient": patient, "reason": "knee pain"});
    let (s, appt) = call(&t, &dc, Method::POST, "/api/v1/appointments", Some(book)).await;
    assert_eq!(s, 201, "{appt}");
    check("post", "/api/v1/appointments", s, &appt);
    let (s, v) = call(&t, &dc, Method::GET, &format!("/api/v1/appointments?patient={patient}"), None).await;
    check("get", "/api/v1/appointments", s, &v);
    let id = appt["id"].as_str().unwrap();
    // Check-in opens shortly before the start.
    t.clock.set(chrono::DateTime::parse_from_rfc3339(&start).unwrap().to_utc() - chrono::Duration::minutes(10));
    let (s, v) = call(&t, &dc, Method::POST, &format!("/api/v1/appointments/{id}/check-in"), None).await;
    assert_eq!(s, 200, "{v}");
    check("post", "/api/v1/appointments/{id}/check-in", s, &v);
    let (s, v) = call(&t, &dc, Method::GET, &format!("/api/v1/encounters?patient={patient}"), None).await;
    check("get", "/api/v1/encounters", s, &v);
    let encounter = v["encounters"][0]["id"].as_str().unwrap_or_default().to_owned();
    let note = json!({"text": "BP 150/95 sitting.", "status": "final"});
    let (s, v) = call(&t, &dc, Method::POST, &format!("/api/v1/encounters/{encounter}/notes"), Some(note)).await;
    assert_eq!(s, 201, "{v}");
    check("post", "/api/v1/encounters/{id}/notes", s, &v);

    // Administration.
    let (s, v) = call(&t, &admin, Method::GET, "/api/v1/admin/notifications", None).await;
    check("get", "/api/v1/admin/notifications", s, &v);
    let client = json!({"name": "Charts", "redirect_uris": ["https://app.example.org/cb"], "confidential": true, "scope": "launch/patient patient/*.rs openid"});
    let (s, v) = call(&t, &admin, Method::POST, "/api/v1/admin/oauth/clients", Some(client)).await;
    check("post", "/api/v1/admin/oauth/clients", s, &v);
    let (s, v) = call(&t, &admin, Method::GET, "/api/v1/admin/oauth/clients", None).await;
    check("get", "/api/v1/admin/oauth/clients", s, &v);

    assert!(checked >= 25, "{checked} answers checked");
    assert!(problems.is_empty(), "{} answers differ from their description:\n{}", problems.len(), problems.join("\n"));
}

/// The stable error codes the source gives (`ApiError::new(StatusCode::…, "code", …)` and the
/// workflows' `bad("code", …)` helpers), each named somewhere in `/api/openapi.json`: in the
/// answers of the operation that gives it, or among the codes every operation may answer.
#[tokio::test]
async fn every_stable_error_code_is_documented() {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        rust_files(&entry.unwrap().path().join("src"), &mut files);
    }
    let mut codes = BTreeSet::new();
    // The FHIR API's errors are OperationOutcomes, described by /fhir/metadata, not here.
    for file in files.iter().filter(|f| !f.components().any(|c| c.as_os_str() == "fhir")) {
        let text = std::fs::read_to_string(file).unwrap();
        let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for (at, _) in flat.match_indices("StatusCode::").chain(flat.match_indices("bad(")) {
            let rest = &flat[at..];
            // `StatusCode::NAME, "code"` or `bad("code"`.
            let after = match rest.strip_prefix("bad(") {
                Some(r) => r,
                None => match rest.split_once(", ") {
                    Some((status, r)) if status.chars().skip(12).all(|c| c.is_ascii_uppercase() || c == '_') => r,
                    _ => continue,
                },
            };
            let Some((code, tail)) = after.strip_prefix('"').and_then(|r| r.split_once('"')) else { continue };
            // An error code is followed by its message.
            if tail.starts_with(',') && !code.is_empty() && code.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                codes.insert(code.to_owned());
            }
        }
    }
    assert!(codes.len() > 60, "only {} codes found: the scan is broken", codes.len());
    let t = TestApp::spawn().await;
    let spec = t.get("/api/openapi.json").await.text;
    let word = |c: &str| {
        spec.match_indices(c).any(|(i, _)| {
            let before = spec[..i].chars().next_back().is_none_or(|b| !(b.is_ascii_alphanumeric() || b == '_'));
            let after = spec[i + c.len()..].chars().next().is_none_or(|a| !(a.is_ascii_alphanumeric() || a == '_'));
            before && after
        })
    };
    let missing: Vec<&String> = codes.iter().filter(|c| !word(c)).collect();
    assert!(missing.is_empty(), "stable error codes not in /api/openapi.json: {missing:?}");
}
