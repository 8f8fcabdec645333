//! Property tests of the app API (issue 26 item 2): requests generated from the served
//! `/api/openapi.json` — every operation, as each role, with path, query and body values drawn
//! from the documented schemas and from a pool of hostile values (empty, huge, control and bidi
//! characters, path tricks, numbers past every range, wrong JSON types, broken JSON) — must never
//! answer `5xx`, every error must be the JSON envelope, and every answer whose status the
//! description documents must match its schema.
//!
//! The generator is a seeded xorshift with a fixed seed in the test suite;
//! `HEARTH_PROPERTY_SEED=random` explores (a failure prints its seed) and
//! `HEARTH_PROPERTY_SEED=<seed>` replays one. `HEARTH_PROPERTY_REQUESTS` sets how many requests
//! are sent (default 1,500 in the test suite; `scripts/prove` runs the long mode with 10,000 per
//! backend).

use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::common::{Rng, TestApp};
use crate::scheduling::{call, clinician, every_day, patient_account, schedule};

/// Strings a hostile or careless client sends.
fn hostile_strings() -> Vec<String> {
    vec![
        String::new(),
        " ".into(),
        "a".into(),
        "x".repeat(5_000),
        "नमस्ते दुनिया".into(),
        "Ravi\u{202e}txt.exe".into(),
        "line\nbreak\ttab\u{0}nul".into(),
        "../../etc/passwd".into(),
        "%2e%2e%2f".into(),
        "' OR 1=1 --".into(),
        "<script>alert(1)</script>".into(),
        "null".into(),
        "-1".into(),
        "1e400".into(),
        "9999-99-99".into(),
        "2026-02-30T25:61:00Z".into(),
        "00000000-0000-0000-0000-000000000000".into(),
        "a@@b.c".into(),
        "+91 00000 00000".into(),
        "Patient/does-not-exist".into(),
        "\u{1F600}".into(),
    ]
}

fn resolve<'a>(schema: &'a Value, spec: &'a Value) -> &'a Value {
    let mut s = schema;
    for _ in 0..16 {
        match s.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')).and_then(|p| spec.pointer(p)) {
            Some(t) => s = t,
            None => break,
        }
    }
    s
}

struct Gen<'a> {
    spec: &'a Value,
    rng: Rng,
    /// Identifiers of real records, so generated requests reach past the "not found" answers.
    ids: Vec<String>,
}

impl Gen<'_> {
    fn string(&mut self, schema: &Value) -> String {
        if let Some(values) = schema.get("enum").and_then(Value::as_array)
            && !values.is_empty()
            && self.rng.chance(80)
        {
            return self.rng.pick(values).as_str().unwrap_or_default().to_owned();
        }
        if self.rng.chance(30) {
            return self.rng.pick(&hostile_strings()).clone();
        }
        match schema.get("format").and_then(Value::as_str) {
            Some("date-time") => format!(
                "2026-{:02}-{:02}T{:02}:30:00Z",
                1 + self.rng.below(12),
                1 + self.rng.below(28),
                self.rng.below(24)
            ),
            Some("date") => {
                format!("{}-{:02}-{:02}", 1930 + self.rng.below(100), 1 + self.rng.below(12), 1 + self.rng.below(28))
            }
            Some("email") => format!("user{}@example.org", self.rng.below(1000)),
            _ if !self.ids.is_empty() && self.rng.chance(40) => self.rng.pick(&self.ids.clone()).clone(),
            _ => {
                let words =
                    ["en", "hi", "yes", "no", "chest pain", "Asia/Kolkata", "09:00", "ROUTINE", "final", "male"];
                (*self.rng.pick(&words)).to_owned()
            }
        }
    }

    fn number(&mut self, integer: bool) -> Value {
        let edge: [Value; 9] = [
            json!(0),
            json!(-1),
            json!(1),
            json!(7),
            json!(120),
            json!(i64::MAX),
            json!(-40000),
            json!(1e300),
            json!(0.5),
        ];
        let v = self.rng.pick(&edge).clone();
        if integer && v.is_f64() && self.rng.chance(50) { json!(3) } else { v }
    }

    /// A value for `schema`: mostly of the documented shape, sometimes not.
    fn value(&mut self, schema: &Value, depth: usize) -> Value {
        let schema = resolve(schema, self.spec);
        if depth > 6 {
            return Value::Null;
        }
        if self.rng.chance(4) {
            // The wrong type altogether.
            return self.rng.pick(&[json!(null), json!(true), json!(42), json!("?"), json!([]), json!({})]).clone();
        }
        if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
            let mut out = Map::new();
            for p in parts {
                if let Value::Object(m) = self.value(p, depth + 1) {
                    out.extend(m);
                }
            }
            return Value::Object(out);
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(parts) = schema.get(key).and_then(Value::as_array)
                && !parts.is_empty()
            {
                let p = self.rng.pick(parts).clone();
                return self.value(&p, depth + 1);
            }
        }
        let ty = match schema.get("type") {
            Some(Value::String(t)) => t.clone(),
            Some(Value::Array(ts)) => {
                let named: Vec<&str> = ts.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect();
                if named.is_empty() || self.rng.chance(10) {
                    "null".into()
                } else {
                    (*self.rng.pick(&named)).to_owned()
                }
            }
            _ if schema.get("properties").is_some() => "object".into(),
            _ => "any".into(),
        };
        match ty.as_str() {
            "object" => {
                let mut out = Map::new();
                let required: Vec<String> = schema
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect();
                if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                    for (name, s) in props {
                        let include = if required.contains(name) { !self.rng.chance(5) } else { self.rng.chance(50) };
                        if include {
                            out.insert(name.clone(), self.value(s, depth + 1));
                        }
                    }
                }
                if self.rng.chance(5) {
                    out.insert("unexpected_field".into(), json!("x"));
                }
                Value::Object(out)
            }
            "array" => {
                let n = if self.rng.chance(5) { 300 } else { self.rng.below(4) };
                let items = schema.get("items").cloned().unwrap_or(json!({}));
                Value::Array((0..n).map(|_| self.value(&items, depth + 1)).collect())
            }
            "string" => Value::String(self.string(schema)),
            "integer" => self.number(true),
            "number" => self.number(false),
            "boolean" => json!(self.rng.chance(50)),
            "null" => Value::Null,
            _ => json!({"resourceType": "Patient", "name": [{"family": self.string(&json!({}))}]}),
        }
    }

    fn query_value(&mut self, schema: &Value) -> String {
        match self.value(schema, 5) {
            Value::String(s) => s,
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Every JSON-bodied answer of the API: the status code is not 5xx, errors carry the envelope,
/// documented answers match their schema.
#[tokio::test]
async fn generated_requests_as_every_role_never_answer_5xx_and_match_the_description() {
    let t = TestApp::spawn_with(|c| {
        c.auth.api_requests_per_minute = 1_000_000;
        c.auth.auth_attempts_per_minute = 1_000_000;
    })
    .await;
    t.clock.set(chrono::DateTime::parse_from_rfc3339("2026-06-01T08:00:00Z").unwrap().to_utc());
    let spec = t.get("/api/openapi.json").await.json();

    // The roles, and real records for the generator to aim at.
    let (doc, dc) = clinician(&t, "Prop").await;
    let (pa, _, pc) = patient_account(&t, "PropA").await;
    let (pb, _, _) = patient_account(&t, "PropB").await;
    let sched = schedule(&t, &dc, every_day(&doc, "Asia/Kolkata", "09:00", "17:00")).await;
    let (s, intake) = call(
        &t,
        &t.client,
        Method::POST,
        "/api/v1/intake/sessions",
        Some(json!({"patient": pa, "language": "hi", "consent": true})),
    )
    .await;
    assert_eq!(s, 201, "{intake}");
    let roles: [(&str, reqwest::Client); 4] =
        [("anonymous", t.anonymous()), ("patient", pc), ("clinician", dc), ("admin", t.client.clone())];
    let ids = vec![pa.clone(), pb, doc, sched, intake["id"].as_str().unwrap_or_default().to_owned()];

    // A fixed seed in the test suite, so CI answers the same for the same code; exploring runs
    // pass `HEARTH_PROPERTY_SEED=random` (or a number, to replay one).
    let seed: u64 = match std::env::var("HEARTH_PROPERTY_SEED").ok().as_deref() {
        Some("random") => chrono::Utc::now().timestamp_nanos_opt().unwrap_or(1) as u64 | 1,
        Some(s) => s.parse().expect("HEARTH_PROPERTY_SEED: a number or `random`"),
        None => 0x4845_4152_5448_0001,
    };
    let total: usize = std::env::var("HEARTH_PROPERTY_REQUESTS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_500);
    let mut g = Gen { spec: &spec, rng: Rng(seed), ids };

    let mut operations = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if ["get", "post", "put", "patch", "delete", "head", "options"].contains(&method.as_str()) {
                operations.push((path.clone(), method.clone(), op.clone()));
            }
        }
    }
    assert!(operations.len() >= 60, "only {} operations described", operations.len());

    let mut problems = Vec::new();
    let mut by_class = [0usize; 6];
    for n in 0..total {
        let (path, method, op) = &operations[n % operations.len()];
        let (role, client) = &roles[g.rng.below(roles.len())];
        // Signing out or ending every session would only turn the rest of the run into 401s.
        if path.contains("logout") || path.contains("sessions") && method == "delete" {
            continue;
        }
        let mut url = String::new();
        let mut rest = path.as_str();
        while let Some(open) = rest.find('{') {
            url.push_str(&rest[..open]);
            let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
            let value = if g.rng.chance(70) {
                g.rng.pick(&g.ids.clone()).clone()
            } else {
                g.rng.pick(&hostile_strings()).clone()
            };
            url.push_str(&encode(&value));
            rest = &rest[close..];
        }
        url.push_str(rest);
        let mut query = Vec::new();
        for p in op["parameters"].as_array().into_iter().flatten() {
            if p["in"] == "query" && g.rng.chance(60) {
                let schema = p.get("schema").cloned().unwrap_or(json!({"type": "string"}));
                query.push(format!(
                    "{}={}",
                    encode(p["name"].as_str().unwrap_or("x")),
                    encode(&g.query_value(&schema))
                ));
            }
        }
        if g.rng.chance(5) {
            query.push("unknown_parameter=1".into());
        }
        if !query.is_empty() {
            url = format!("{url}?{}", query.join("&"));
        }
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut req = client.request(m, t.url(&url));
        if let Some(content) = op["requestBody"]["content"].as_object()
            && let Some((kind, media)) = content.iter().next()
        {
            if kind.contains("json") {
                let body = match g.rng.below(20) {
                    0 => "{\"unterminated\": ".to_owned(),
                    1 => "[1, 2, 3]".to_owned(),
                    _ => g.value(&media["schema"], 0).to_string(),
                };
                req = req.header("content-type", kind.as_str()).body(body);
            } else {
                let len = g.rng.below(2_000);
                let bytes: Vec<u8> = (0..len).map(|_| g.rng.next() as u8).collect();
                req = req.header("content-type", kind.as_str()).body(bytes);
            }
        }
        let label = format!("{} {url} as {role}", method.to_uppercase());
        let r = match req.timeout(std::time::Duration::from_secs(20)).send().await {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("{label}: no answer: {e}"));
                continue;
            }
        };
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        // A stream (the intake queue's Server-Sent Events) never ends: its head is the answer.
        let streaming = headers.get("content-type").is_some_and(|c| c.as_bytes().starts_with(b"text/event-stream"));
        let text = if streaming { String::new() } else { r.text().await.unwrap_or_default() };
        let r = crate::common::Resp { status, headers, text };
        by_class[usize::from(r.status / 100).min(5)] += 1;
        if r.status >= 500 {
            problems.push(format!("{label}: {} {}", r.status, r.text.chars().take(300).collect::<String>()));
            continue;
        }
        let json_answer = method != "head" && r.header("content-type").is_some_and(|c| c.contains("json"));
        if json_answer && serde_json::from_str::<Value>(&r.text).is_err() {
            problems.push(format!(
                "{label}: {} says JSON but is not: {}",
                r.status,
                r.text.chars().take(200).collect::<String>()
            ));
            continue;
        }
        if r.status >= 400 && path.starts_with("/api/") && json_answer {
            let v = r.json();
            if !(v["error"]["code"].is_string() && v["error"]["message"].is_string()) {
                problems.push(format!("{label}: {} is not the error envelope: {v}", r.status));
                continue;
            }
        }
        // (Outside /api the JWKS and SMART discovery documents are described as bare objects.)
        if json_answer
            && path.starts_with("/api/")
            && let Ok(v) = serde_json::from_str::<Value>(&r.text)
            && let Some(schema) = hearth_server::workflow::openapi::answer_schema(&spec, method, path, r.status)
        {
            for mismatch in hearth_server::workflow::openapi::mismatches(&v, schema, &spec) {
                problems.push(format!("{label}: {} differs from its description: {mismatch}", r.status));
            }
        }
    }
    eprintln!(
        "api_properties: seed {seed}, {total} requests over {} operations: 2xx {} 3xx {} 4xx {} 5xx {}",
        operations.len(),
        by_class[2],
        by_class[3],
        by_class[4],
        by_class[5]
    );
    assert!(by_class[2] > total / 20, "too few requests succeeded to prove much: {by_class:?}");
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "seed {seed} (replay with HEARTH_PROPERTY_SEED={seed}): {} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
