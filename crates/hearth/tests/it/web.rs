//! The web screens in a real browser (issue 24): Debian's headless Chromium driven over the
//! DevTools protocol by a small client here (JSON over the WebSocket, tokio-tungstenite). A
//! clinician signs in with TOTP, sees the intake queue with the red flag on top, checks a patient
//! in, reads and reviews an intake summary, reads the chart's charts (also at 360 px), writes a
//! letter as a draft, finalises and amends it, and acknowledges a self-care alert; the session
//! ends and signing in again returns to the page asked for; an administrator signs in with TOTP,
//! resets the clinician's 2FA and searches the audit trail, in English and Hindi. A patient on
//! a 390 px phone screen books a slot, reads a letter, moves and cancels the visit and logs a
//! blood pressure, in English and in Hindi. On every page
//! axe-core (vendored in tests-data/axe-core, injected by the test) finds no serious or critical
//! violation, nothing is wider than the screen, and the page logs no error.
//!
//! Without Chromium the tests say loudly that they skipped (`scripts/prepare` installs it); with
//! `CI=true` a missing Chromium is a failure. A failing step leaves its screenshots under
//! `target/tmp/web-artifacts/<test>/` and names that folder in the failure message.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use hearth_auth::totp::{self, TotpSecret};
use hearth_server::Clock;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{TestApp, patient};
use crate::scheduling::{call, clinician, every_day, schedule};

const PASSWORD: &str = "web-lantern-meadow-42";
const AXE: &str = include_str!("../../../../tests-data/axe-core/axe.min.js");

use crate::common::Ws;

/// The Chromium binary, if this machine has one.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// A headless Chromium with its own profile, killed on drop.
pub(crate) struct Browser {
    child: tokio::process::Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium, or answers `None` (after saying so loudly) when there is none.
    async fn start() -> Option<Browser> {
        Browser::start_with(&[]).await
    }

    /// [`Browser::start`] with more command-line switches (fake media devices for telehealth).
    pub(crate) async fn start_with(extra: &[&str]) -> Option<Browser> {
        let Some(bin) = chromium() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "Chromium is missing in CI: scripts/prepare installs Debian's `chromium`"
            );
            eprintln!(
                "\n!!! SKIPPED: the browser tests need Chromium (apt-get install chromium, or run scripts/prepare) !!!\n"
            );
            return None;
        };
        let profile = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .args(extra)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let port = loop {
            let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
                .await
                .expect("Chromium did not print its DevTools address within a minute")
                .unwrap()
                .expect("Chromium exited before printing its DevTools address");
            if let Some(rest) = line.strip_prefix("DevTools listening on ws://127.0.0.1:") {
                break rest.split('/').next().unwrap().parse().unwrap();
            }
        };
        // Keep reading its log so Chromium never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Some(Browser { child, port, _profile: profile })
    }

    /// A new tab of `width`×`height` CSS pixels (a phone's when `mobile`), in UTC.
    pub(crate) async fn tab(&self, test: &str, width: u32, height: u32, mobile: bool) -> Tab {
        let r = reqwest::Client::new()
            .put(format!("http://127.0.0.1:{}/json/new?about:blank", self.port))
            .send()
            .await
            .unwrap();
        let target: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        let url = target["webSocketDebuggerUrl"].as_str().unwrap().to_owned();
        let ws = tokio_tungstenite::connect_async(url).await.unwrap().0;
        let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-artifacts").join(test);
        let _ = std::fs::remove_dir_all(&artifacts);
        std::fs::create_dir_all(&artifacts).unwrap();
        let mut tab = Tab { ws, next: 0, errors: Vec::new(), artifacts, shots: 0 };
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            tab.call(domain, json!({})).await;
        }
        tab.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await;
        tab.call("Emulation.setTimezoneOverride", json!({"timezoneId": "UTC"})).await;
        tab
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// One page target over the DevTools protocol.
pub(crate) struct Tab {
    ws: Ws,
    next: u64,
    /// Errors the page reported (console errors, uncaught exceptions, CSP and other log errors).
    errors: Vec<String>,
    artifacts: PathBuf,
    shots: u32,
}

impl Tab {
    /// Sends a command and answers its result, noting the events that arrive meanwhile.
    pub(crate) async fn call(&mut self, method: &str, params: Value) -> Value {
        match self.try_call(method, params).await {
            Ok(v) => v,
            Err(e) => panic!("{method}: {e}"),
        }
    }

    /// A command whose failure is an answer (an evaluation cut short by a navigation).
    async fn try_call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next += 1;
        let id = self.next;
        self.ws
            .send(Message::Text(json!({"id": id, "method": method, "params": params}).to_string().into()))
            .await
            .unwrap();
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(60), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method} within a minute"))
                .unwrap()
                .unwrap();
            let Message::Text(text) = msg else { continue };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["id"].as_u64() == Some(id) {
                return match v.get("error") {
                    Some(e) => Err(e.clone()),
                    None => Ok(v["result"].clone()),
                };
            }
            self.note(&v);
        }
    }

    fn note(&mut self, event: &Value) {
        let p = &event["params"];
        match event["method"].as_str() {
            Some("Runtime.consoleAPICalled") if matches!(p["type"].as_str(), Some("error" | "assert")) => {
                self.errors.push(format!("console.{}: {}", p["type"], p["args"]));
            }
            Some("Runtime.exceptionThrown") => self.errors.push(format!("exception: {}", p["exceptionDetails"])),
            Some("Log.entryAdded") if p["entry"]["level"] == "error" => {
                let entry = &p["entry"];
                // The password step of a TOTP account answers 401 mfa_required by design.
                let expected = entry["source"] == "network"
                    && entry["url"].as_str().is_some_and(|u| u.ends_with("/api/v1/auth/login"))
                    && entry["text"].as_str().is_some_and(|t| t.contains("401"));
                if !expected {
                    self.errors.push(format!("log: {entry}"));
                }
            }
            _ => {}
        }
    }

    /// Evaluates `expression` in the page (awaiting a promise) and answers its JSON value.
    pub(crate) async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call("Runtime.evaluate", json!({"expression": expression, "awaitPromise": true, "returnByValue": true}))
            .await;
        if let Some(e) = r.get("exceptionDetails") {
            self.fail(&format!("script failed: {expression}: {e}")).await;
        }
        r["result"]["value"].clone()
    }

    /// Saves a screenshot of the page now.
    async fn shot(&mut self, name: &str) {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"})).await;
        let png = data_encoding::BASE64.decode(r["data"].as_str().unwrap().as_bytes()).unwrap();
        self.shots += 1;
        std::fs::write(self.artifacts.join(format!("{:02}-{name}.png", self.shots)), png).unwrap();
    }

    async fn fail(&mut self, why: &str) {
        self.shot("failure").await;
        let html = self.eval_raw("document.documentElement.outerHTML").await;
        std::fs::write(self.artifacts.join("failure.html"), html.as_str().unwrap_or_default()).unwrap();
        panic!("{why}\n(screenshots and the page: {})", self.artifacts.display());
    }

    pub(crate) async fn eval_raw(&mut self, expression: &str) -> Value {
        let r = self.call("Runtime.evaluate", json!({"expression": expression, "returnByValue": true})).await;
        r["result"]["value"].clone()
    }

    pub(crate) async fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
    }

    /// Waits until `condition` (a script expression) is true; fails with a screenshot after 30 s.
    pub(crate) async fn wait_for(&mut self, condition: &str) {
        let expression = format!(
            "(() => {{ try {{ return !!({condition}) && document.readyState === 'complete'; }} catch (e) {{ return false; }} }})()"
        );
        for _ in 0..300 {
            let r = self.try_call("Runtime.evaluate", json!({"expression": expression, "returnByValue": true})).await;
            if r.is_ok_and(|r| r["result"]["value"] == json!(true)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.fail(&format!("waited 30 s for: {condition}")).await;
    }

    /// A step passed: its screenshot, axe-core's serious and critical findings (none allowed), the
    /// page no wider than the screen, and no error logged so far.
    async fn check_page(&mut self, step: &str) {
        self.shot(step).await;
        if self.eval_raw("typeof axe").await != json!("object") {
            self.call("Runtime.evaluate", json!({"expression": AXE, "returnByValue": true})).await;
        }
        let found = self
            .eval(
                "axe.run(document, {resultTypes: ['violations']}).then(r => r.violations \
                 .filter(v => v.impact === 'serious' || v.impact === 'critical') \
                 .map(v => v.id + ' (' + v.impact + '): ' + v.nodes.map(n => n.target.join(' ')).join(', ')))",
            )
            .await;
        if found.as_array().is_none_or(|a| !a.is_empty()) {
            self.fail(&format!("{step}: axe-core found {found}")).await;
        }
        let widths = self.eval_raw("[document.documentElement.scrollWidth, window.innerWidth]").await;
        if widths[0].as_u64() > widths[1].as_u64() {
            self.fail(&format!("{step}: the page is wider than the screen: {widths}")).await;
        }
        // Events that arrived since the last command.
        self.eval_raw("0").await;
        if !self.errors.is_empty() {
            let errors = self.errors.join("\n");
            self.fail(&format!("{step}: the page logged errors:\n{errors}")).await;
        }
    }

    async fn fill(&mut self, selector: &str, value: &str) {
        let js = format!(
            "(() => {{ const e = document.querySelector({}); e.value = {}; e.dispatchEvent(new Event('input', {{bubbles: true}})); return true; }})()",
            json!(selector),
            json!(value)
        );
        self.eval(&js).await;
    }

    pub(crate) async fn click(&mut self, selector: &str) {
        self.eval(&format!("document.querySelector({}).click()", json!(selector))).await;
    }

    pub(crate) async fn text(&mut self, selector: &str) -> String {
        self.eval(&format!("(document.querySelector({}) || {{}}).textContent || ''", json!(selector)))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Resizes the viewport (a phone's when `mobile`).
    async fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await;
    }

    /// The test passed: its screenshots are not kept.
    pub(crate) fn passed(self) {
        let _ = std::fs::remove_dir_all(&self.artifacts);
    }
}

/// Today at `hh:mm` UTC.
fn today_at(hh: u32, mm: u32) -> DateTime<Utc> {
    Utc::now().date_naive().and_hms_opt(hh, mm, 0).unwrap().and_utc()
}

/// An account with a password made by the admin: its id.
pub(crate) async fn account(t: &TestApp, email: &str, role: &str, fhir_user: &str) -> String {
    let mut body = json!({"email": email, "password": PASSWORD, "role": role});
    if !fhir_user.is_empty() {
        body["fhirUser"] = json!(fhir_user);
    }
    let (s, v) = call(t, &t.client, Method::POST, "/api/v1/admin/accounts", Some(body)).await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

/// Turns on TOTP for the account behind `email`: the secret.
async fn enrol_totp(t: &TestApp, email: &str) -> TotpSecret {
    let anon = t.anonymous();
    let (s, v) =
        call(t, &anon, Method::POST, "/api/v1/auth/login", Some(json!({"email": email, "password": PASSWORD}))).await;
    assert_eq!(s, 200, "{v}");
    let c = crate::scheduling::bearer(v["access_token"].as_str().unwrap());
    let (s, v) = call(t, &c, Method::POST, "/api/v1/auth/totp/enroll", Some(json!({}))).await;
    assert_eq!(s, 200, "{v}");
    let secret = TotpSecret::from_base32(v["secret"].as_str().unwrap()).unwrap();
    let code = totp::code_at_step(&secret, totp::time_step(t.clock.now()));
    let (s, v) = call(t, &c, Method::POST, "/api/v1/auth/totp/confirm", Some(json!({"code": code.expose()}))).await;
    assert_eq!(s, 200, "{v}");
    secret
}

/// Signs in on the sign-in page the browser was sent to; with `secret`, through the TOTP step
/// with the code of the clock's step `step`.
pub(crate) async fn sign_in(tab: &mut Tab, email: &str, totp: Option<(&TotpSecret, u64)>) {
    tab.wait_for("location.pathname === '/signin' && document.querySelector('#signin-form')").await;
    tab.check_page("sign-in").await;
    tab.fill("#email", email).await;
    tab.fill("#password", PASSWORD).await;
    tab.click("#signin-submit").await;
    if let Some((secret, step)) = totp {
        tab.wait_for("!document.querySelector('#code-step').hidden").await;
        tab.check_page("totp-step").await;
        tab.fill("#code", totp::code_at_step(secret, step).expose()).await;
        tab.click("#signin-submit").await;
    }
}

#[tokio::test]
async fn a_clinician_signs_in_with_totp_sees_red_flags_first_and_checks_a_patient_in() {
    let Some(browser) = Browser::start().await else { return };
    let t = TestApp::spawn().await;
    // Noon: the 12:30 visit can be checked in (from two hours before), and it is today in UTC.
    t.clock.set(today_at(12, 0));
    let (doc, doc_client) = clinician(&t, "Iyer").await;
    schedule(&t, &doc_client, every_day(&doc, "UTC", "08:00", "18:00")).await;
    let email = "meera.iyer@clinic.example";
    let clinician_id = account(&t, email, "clinician", &format!("Practitioner/{doc}")).await;
    let secret = enrol_totp(&t, email).await;

    // Asha has a visit at 12:30; Ravi told the intake interview of chest pain (an emergency).
    let asha = t.create(&json!({"resourceType": "Patient", "name": [{"family": "Rao", "given": ["Asha"]}], "gender": "female", "birthDate": "1984-03-07"})).await;
    let start = today_at(12, 30).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (s, v) = call(
        &t,
        &t.client,
        Method::POST,
        "/api/v1/appointments",
        Some(json!({"practitioner": doc, "start": start, "type": "ROUTINE", "patient": asha})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let appointment = v["id"].as_str().unwrap().to_owned();
    // Her record: two sets of vitals this morning (the second scores NEWS2 high and raises an
    // alert), two HbA1c results, a problem and an encounter.
    let (_, asha_client) = crate::scheduling::account(&t.app, "patient", Some(format!("Patient/{asha}")), true).await;
    for (at, rr, spo2, sys, hr, temp) in [("08:00", 14, 98, 122, 72, 36.8), ("11:00", 25, 91, 95, 118, 38.5)] {
        let at = format!("{}T{at}:00Z", today_at(0, 0).date_naive());
        let set = json!({"readings": [
            {"kind": "respiratory_rate", "value": rr, "effective": at},
            {"kind": "spo2", "value": spo2, "effective": at},
            {"kind": "supplemental_oxygen", "code": "air", "effective": at},
            {"kind": "blood_pressure", "systolic": sys, "diastolic": 60, "effective": at},
            {"kind": "heart_rate", "value": hr, "effective": at},
            {"kind": "consciousness", "code": "A", "effective": at},
            {"kind": "body_temperature", "value": temp, "effective": at},
        ]});
        let (s, v) = call(&t, &asha_client, Method::POST, "/api/v1/health/vitals", Some(set)).await;
        assert_eq!(s, 201, "{v}");
    }
    for (date, value) in [("2026-06-01", 8.4), ("2026-11-01", 7.8)] {
        t.create(&json!({"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4", "display": "Hemoglobin A1c/Hemoglobin.total in Blood"}], "text": "HbA1c"},
            "subject": {"reference": format!("Patient/{asha}")}, "effectiveDateTime": date,
            "valueQuantity": {"value": value, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}}))
        .await;
    }
    t.create(&json!({"resourceType": "Condition", "subject": {"reference": format!("Patient/{asha}")},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertension"}], "text": "Hypertension"}}))
    .await;
    t.create(&json!({"resourceType": "Encounter", "status": "finished", "subject": {"reference": format!("Patient/{asha}")},
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
        "type": [{"text": "Outpatient visit"}], "period": {"start": "2026-11-01T09:00:00Z", "end": "2026-11-01T09:20:00Z"}}))
    .await;
    let ravi = t.create(&patient("Verma")).await;
    let (_, ravi_client) = crate::scheduling::account(&t.app, "patient", Some(format!("Patient/{ravi}")), true).await;
    let routine = t.create(&patient("Kumar")).await;
    let (_, routine_client) =
        crate::scheduling::account(&t.app, "patient", Some(format!("Patient/{routine}")), true).await;
    for (c, text) in [(&routine_client, "a mild cough"), (&ravi_client, "severe chest pain and sweating since an hour")]
    {
        let (s, v) =
            call(&t, c, Method::POST, "/api/v1/intake/sessions", Some(json!({"language": "en", "consent": true})))
                .await;
        assert_eq!(s, 201, "{v}");
        let id = v["id"].as_str().unwrap().to_owned();
        let (s, v) =
            call(&t, c, Method::POST, &format!("/api/v1/intake/sessions/{id}/messages"), Some(json!({"text": text})))
                .await;
        assert_eq!(s, 200, "{v}");
    }

    let mut tab = browser.tab("clinician", 1280, 900, false).await;
    tab.goto(&t.url("/")).await;
    let step = totp::time_step(t.clock.now());
    sign_in(&mut tab, email, Some((&secret, step + 1))).await;
    tab.wait_for("location.pathname === '/' && document.querySelector('#appointments [data-appointment]')").await;
    tab.wait_for("document.querySelector('#queue [data-session]')").await;
    tab.check_page("clinic").await;
    assert_eq!(tab.eval("document.querySelectorAll('#queue [data-session]').length").await, json!(2));
    let first = tab.text("#queue li:first-child").await;
    assert!(first.contains("Verma") && first.contains("chest"), "the red flag is on top: {first}");
    assert!(tab.text("#appointments").await.contains("Asha Rao"));

    tab.click(&format!("[data-appointment='{appointment}'] button.check-in")).await;
    tab.wait_for(&format!("!document.querySelector(\"[data-appointment='{appointment}'] button.check-in\")")).await;
    tab.check_page("checked-in").await;
    let (s, v) = call(&t, &t.client, Method::GET, &format!("/api/v1/appointments/{appointment}"), None).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("arrived")), "{v}");

    // Ravi's intake summary from the queue: the red flag first, with its evidence and source;
    // marked reviewed, it leaves the queue.
    tab.click("#queue li:first-child a.summary-link").await;
    tab.wait_for("location.pathname.startsWith('/intake/') && document.querySelector('#summary-flags li.flagged')")
        .await;
    tab.wait_for("!document.querySelector('#summary-review').hidden").await;
    tab.check_page("intake-summary").await;
    assert!(tab.text("h1").await.contains("Verma"));
    let flags = tab.text("#summary-flags").await;
    assert!(flags.contains("chest pain") && flags.contains("Source"), "{flags}");
    let session = tab.eval("location.pathname.split('/').pop()").await;
    tab.click("#summary-review").await;
    tab.wait_for(
        "document.querySelector('#summary-review').hidden && document.querySelector('#summary-reviewed').textContent",
    )
    .await;
    let (s, v) = call(&t, &doc_client, Method::GET, "/api/v1/intake/queue", None).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["sessions"].as_array().unwrap().iter().all(|q| q["id"] != session), "reviewed, it left the queue: {v}");

    // The access token expires: the page renews it from the refresh cookie, no sign-in needed.
    tab.eval("sessionStorage.setItem('hearth.session', JSON.stringify({token: 'x', expires: 0}))").await;
    tab.goto(&t.url(&format!("/patients/{asha}"))).await;
    tab.wait_for("document.querySelector('h1').textContent === 'Asha Rao'").await;
    tab.wait_for("document.querySelector('#vitals figure svg') && document.querySelector('#results figure svg') && document.querySelector('#letters li')").await;
    tab.check_page("chart").await;
    assert!(tab.text("#demographics").await.contains("1984-03-07"));
    // Each measure is a chart with its numbers in a table: the pulse's two readings, newest first.
    let pulse = tab.text("#vitals figure[data-measure='Heart rate'] tbody").await;
    assert!(pulse.find("118").unwrap() < pulse.find("72").unwrap(), "{pulse}");
    assert!(tab.text("#results").await.contains("7.8"));
    assert!(tab.text("#problems").await.contains("Hypertension"));
    assert!(tab.text("#encounters").await.contains("Outpatient"));

    // A letter: a draft, then final, then amended; the patient's API shows the amendment.
    tab.fill("#letter-title", "Clinic letter").await;
    tab.fill("#letter-text", "Dear Dr Shah,\n\nI saw Asha today.").await;
    tab.click("#letter-save").await;
    tab.wait_for("document.querySelector(\"#letters li[data-status='draft'] button\")").await;
    tab.check_page("letter-draft").await;
    tab.click("#letters li[data-status='draft'] button.edit").await;
    tab.wait_for("document.querySelector('#letter-title').value === 'Clinic letter'").await;
    tab.fill("#letter-text", "Dear Dr Shah,\n\nI saw Asha today. Her pulse was fast this morning.").await;
    tab.click("#letter-final").await;
    tab.wait_for("document.querySelector(\"#letters li[data-status='final'] button\")").await;
    tab.check_page("letter-final").await;
    let (s, v) = call(&t, &asha_client, Method::GET, &format!("/api/patients/{asha}/letters"), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["letters"][0]["status"], "final", "{v}");
    assert!(v["letters"][0]["text"].as_str().unwrap().contains("fast this morning"), "{v}");
    tab.click("#letters li[data-status='final'] button.edit").await;
    tab.wait_for("document.querySelector('#letter-save').hidden").await;
    tab.fill("#letter-text", "Dear Dr Shah,\n\nI saw Asha today. Her pulse was 118 this morning.").await;
    tab.click("#letter-final").await;
    tab.wait_for("document.querySelector(\"#letters li[data-status='amended']\")").await;
    tab.check_page("letter-amended").await;
    tab.click("#letters li[data-status='amended'] button.versions").await;
    // The clinician sees every version (the patient's API shows the final and amended two only).
    tab.wait_for("document.querySelectorAll('#letters .versions-list > li').length === 3").await;
    let kept = tab.text("#letters .versions-list").await;
    assert!(kept.contains("fast this morning") && kept.contains("118 this morning"), "{kept}");
    tab.check_page("letter-versions").await;
    // The chart on a 360 px phone: nothing wider than the screen, still axe-clean.
    tab.viewport(360, 780, true).await;
    tab.check_page("chart-360").await;
    tab.viewport(1280, 900, false).await;
    let id = v["letters"][0]["id"].as_str().unwrap();
    let (s, v) =
        call(&t, &asha_client, Method::GET, &format!("/api/patients/{asha}/letters/{id}/versions"), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["versions"].as_array().map(Vec::len), Some(2), "final and amended: {v}");

    // The alerts inbox: Asha's NEWS2 alert (and qSOFA's), the NEWS2 one acknowledged.
    tab.goto(&t.url("/alerts")).await;
    tab.wait_for("document.querySelector('#alerts [data-alert] button.acknowledge')").await;
    tab.check_page("alerts").await;
    let (s, v) = call(&t, &doc_client, Method::GET, &format!("/api/v1/health/alerts?patient={asha}"), None).await;
    assert_eq!(s, 200, "{v}");
    let news2 = v["alerts"].as_array().unwrap().iter().find(|a| a["rule"] == "news2").expect("a NEWS2 alert");
    let news2 = news2["id"].as_str().unwrap().to_owned();
    assert!(tab.text(&format!("[data-alert='{news2}']")).await.contains("NEWS2"));
    tab.click(&format!("[data-alert='{news2}'] button.acknowledge")).await;
    tab.wait_for(&format!("!document.querySelector(\"[data-alert='{news2}'] button.acknowledge\")")).await;
    tab.check_page("alert-acknowledged").await;
    let (s, v) = call(&t, &doc_client, Method::GET, &format!("/api/v1/health/alerts?patient={asha}"), None).await;
    assert_eq!(s, 200, "{v}");
    let acknowledged = v["alerts"].as_array().unwrap().iter().find(|a| a["id"] == news2.as_str()).unwrap();
    assert_eq!(acknowledged["status"], "acknowledged", "{v}");
    tab.goto(&t.url(&format!("/patients/{asha}"))).await;
    tab.wait_for("document.querySelector('h1').textContent === 'Asha Rao'").await;

    // Signed out, the chart sends to sign-in and, signed in again, back to the chart.
    tab.click("#sign-out").await;
    tab.wait_for("location.pathname === '/signin'").await;
    tab.goto(&t.url(&format!("/patients/{asha}"))).await;
    tab.wait_for("location.pathname === '/signin' && new URLSearchParams(location.search).get('expired') === '1'")
        .await;
    assert_eq!(tab.eval("new URLSearchParams(location.search).get('next')").await, json!(format!("/patients/{asha}")));
    t.clock.set(today_at(12, 2));
    sign_in(&mut tab, email, Some((&secret, totp::time_step(t.clock.now())))).await;
    tab.wait_for(&format!(
        "location.pathname === '/patients/{asha}' && document.querySelector('h1').textContent === 'Asha Rao'"
    ))
    .await;
    tab.check_page("back-to-chart").await;

    // An administrator signs in with TOTP and resets the clinician's second factor (a lost phone):
    // her next sign-in needs only the password.
    let admin_email = "admin@clinic.example";
    account(&t, admin_email, "admin", "").await;
    let admin_secret = enrol_totp(&t, admin_email).await;
    tab.click("#sign-out").await;
    tab.wait_for("location.pathname === '/signin'").await;
    tab.goto(&t.url("/signin?next=%2Fadmin")).await;
    t.clock.set(today_at(12, 4));
    sign_in(&mut tab, admin_email, Some((&admin_secret, totp::time_step(t.clock.now())))).await;
    tab.wait_for(&format!(
        "location.pathname === '/admin' && document.querySelector(\"[data-account='{clinician_id}'] button.reset-2fa\")"
    ))
    .await;
    tab.wait_for("document.querySelector('#deliveries li')").await;
    tab.check_page("admin").await;
    assert!(tab.text("#accounts").await.contains(email));
    tab.click(&format!("[data-account='{clinician_id}'] button.reset-2fa")).await;
    tab.wait_for(&format!("!document.querySelector(\"[data-account='{clinician_id}'] button.reset-2fa\")")).await;
    tab.check_page("2fa-reset").await;
    let (s, v) = call(
        &t,
        &t.anonymous(),
        Method::POST,
        "/api/v1/auth/login",
        Some(json!({"email": email, "password": PASSWORD})),
    )
    .await;
    assert_eq!(s, 200, "password alone signs her in now: {v}");
    // The audit trail of Asha's record: the reads of this test, searched from the console.
    tab.fill("#audit-patient", &asha).await;
    tab.click("#audit-search").await;
    tab.wait_for("document.querySelector('#audit [data-event]')").await;
    tab.check_page("audit-search").await;
    // The console in Hindi.
    tab.goto(&t.url("/admin?lang=hi")).await;
    tab.wait_for("document.documentElement.lang === 'hi' && document.querySelector('#accounts [data-account]')").await;
    assert_eq!(tab.text("h1").await, "प्रशासन");
    tab.check_page("admin-hindi").await;
    tab.passed();
}

#[tokio::test]
async fn a_patient_on_a_phone_books_a_slot_and_reads_a_letter_in_english_and_hindi() {
    let Some(browser) = Browser::start().await else { return };
    let t = TestApp::spawn().await;
    t.clock.set(today_at(9, 0));
    let (doc, doc_client) = clinician(&t, "Iyer").await;
    schedule(&t, &doc_client, every_day(&doc, "UTC", "10:00", "12:00")).await;
    let me = t.create(&json!({"resourceType": "Patient", "name": [{"family": "Rao", "given": ["Asha"]}], "gender": "female", "birthDate": "1984-03-07"})).await;
    let email = "asha.rao@example.org";
    account(&t, email, "patient", &format!("Patient/{me}")).await;
    let letter = json!({"title": "After your visit", "text": "Your blood pressure was normal.\n\nSee you in a year.", "status": "final"});
    let (s, v) = call(&t, &doc_client, Method::POST, &format!("/api/patients/{me}/letters"), Some(letter)).await;
    assert_eq!(s, 201, "{v}");

    let mut tab = browser.tab("patient", 390, 844, true).await;
    tab.goto(&t.url("/app")).await;
    sign_in(&mut tab, email, None).await;
    tab.wait_for("location.pathname === '/app' && document.querySelector('#book-practitioner option')").await;
    tab.wait_for("document.querySelector('#letters button')").await;
    tab.check_page("app").await;
    tab.click("#find-slots").await;
    tab.wait_for("document.querySelector('#slots button.slot')").await;
    tab.check_page("slots").await;
    let start = tab.eval("document.querySelector('#slots button.slot').dataset.start").await;
    assert_eq!(start, json!(today_at(10, 0).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
    tab.click("#slots button.slot").await;
    tab.wait_for("document.querySelector('#my-appointments [data-appointment]')").await;
    tab.check_page("booked").await;
    let (s, v) = call(&t, &t.client, Method::GET, &format!("/api/v1/appointments?patient={me}"), None).await;
    assert_eq!(s, 200, "{v}");
    let booked = v["appointments"].as_array().unwrap();
    assert_eq!((booked.len(), booked[0]["start"].as_str()), (1, start.as_str()), "{v}");

    tab.click("#letters button").await;
    tab.wait_for("!document.querySelector('#letter').hidden").await;
    assert!(tab.text("#letter").await.contains("Your blood pressure was normal."));
    tab.check_page("letter").await;

    // She moves the visit to 11:00, then cancels it.
    let id = booked[0]["id"].as_str().unwrap().to_owned();
    tab.click(&format!("[data-appointment='{id}'] button.reschedule")).await;
    tab.wait_for("!document.querySelector('#rescheduling').hidden").await;
    tab.click("#find-slots").await;
    let eleven = today_at(11, 0).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    tab.wait_for(&format!("document.querySelector(\"#slots button.slot[data-start='{eleven}']\")")).await;
    tab.check_page("reschedule-slots").await;
    tab.click(&format!("#slots button.slot[data-start='{eleven}']")).await;
    tab.wait_for("document.querySelector('#rescheduling').hidden && document.querySelector('#my-appointments [data-appointment]')").await;
    let (s, v) = call(&t, &t.client, Method::GET, &format!("/api/v1/appointments?patient={me}"), None).await;
    assert_eq!(s, 200, "{v}");
    let live: Vec<&Value> = v["appointments"].as_array().unwrap().iter().filter(|a| a["status"] == "booked").collect();
    assert_eq!((live.len(), live[0]["start"].as_str()), (1, Some(eleven.as_str())), "{v}");
    let moved = live[0]["id"].as_str().unwrap().to_owned();
    tab.wait_for(&format!("document.querySelector(\"[data-appointment='{moved}'] button.cancel\")")).await;
    tab.check_page("rescheduled").await;
    tab.click(&format!("[data-appointment='{moved}'] button.cancel")).await;
    tab.wait_for(&format!("!document.querySelector(\"[data-appointment='{moved}'] button.cancel\")")).await;
    let (s, v) = call(&t, &t.client, Method::GET, &format!("/api/v1/appointments/{moved}"), None).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("cancelled")), "{v}");

    // She logs a blood pressure reading: it is in her record.
    tab.eval("(() => { const k = document.querySelector('#reading-kind'); k.value = 'blood_pressure'; k.dispatchEvent(new Event('change')); return true; })()").await;
    tab.fill("#reading-value", "132").await;
    tab.fill("#reading-diastolic", "86").await;
    tab.click("#reading-save").await;
    tab.wait_for("document.querySelector('#reading-done').textContent").await;
    tab.check_page("reading-logged").await;
    let r = t.get(&format!("/fhir/Observation?patient={me}&code=http://loinc.org|85354-9")).await;
    assert!(r.text.contains("132") && r.text.contains("86"), "{}", r.text);

    // In Hindi: the same screen, its texts from the Hindi catalogue, the choice remembered.
    tab.goto(&t.url("/app?lang=hi")).await;
    tab.wait_for(
        "document.documentElement.lang === 'hi' && document.querySelector('#my-appointments [data-appointment]')",
    )
    .await;
    assert_eq!(tab.text("h1").await, "मेरा स्वास्थ्य");
    assert!(tab.text("#my-appointments").await.contains("रद्द"), "the cancelled visit, in Hindi");
    tab.check_page("app-hindi").await;
    tab.goto(&t.url("/app")).await;
    tab.wait_for("document.querySelector('#letters button')").await;
    assert_eq!(tab.eval("document.documentElement.lang").await, json!("hi"));
    // The installable app's parts are served.
    for (path, kind) in [("/app/manifest.webmanifest", "application/manifest+json"), ("/app/sw.js", "text/javascript")]
    {
        let r = t.get(path).await;
        assert!(r.status == 200 && r.header("content-type").unwrap().starts_with(kind), "{path}");
    }
    tab.passed();
}
