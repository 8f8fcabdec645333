//! The HTML of each screen: a layout and one function per page, written with [`esc`] around
//! every text that is not a literal of this file. Pages carry no data: the script fills them
//! from the app API with the signed-in user's token, so nothing here reads a record.

use hearth_notify::templates::escape_html as esc;

use crate::i18n::{Catalogue, Lang};

/// Which screen: names the `data-page` the script dispatches on, and the navigation it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    SignIn,
    Clinic,
    Chart,
    Intake,
    Alerts,
    Admin,
    App,
}

impl Screen {
    fn name(self) -> &'static str {
        match self {
            Screen::SignIn => "signin",
            Screen::Clinic => "clinic",
            Screen::Chart => "chart",
            Screen::Intake => "intake",
            Screen::Alerts => "alerts",
            Screen::Admin => "admin",
            Screen::App => "app",
        }
    }

    fn patient_side(self) -> bool {
        self == Screen::App
    }
}

/// The texts the script needs, as a JSON object safe inside `<script type="application/json">`
/// (`<` is escaped so no text can close the element).
fn strings_json(cat: &Catalogue, lang: Lang) -> String {
    let json = serde_json::to_string(cat.texts(lang)).unwrap_or_else(|_| "{}".to_owned());
    json.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026")
}

/// A whole page: head with the embedded styles and script, a header with navigation, language
/// switch and sign-out, and `main`.
pub fn layout(cat: &Catalogue, lang: Lang, screen: Screen, title_key: &str, attrs: &str, main: &str) -> String {
    let t = |k: &str| esc(cat.get(lang, k));
    let other = match lang {
        Lang::En => "hi",
        Lang::Hi => "en",
    };
    let (home, nav_key) = if screen.patient_side() { ("/app", "nav-app") } else { ("/", "nav-today") };
    // The clinic's other screens; each answers "not available" to a role the API refuses.
    let staff = if screen.patient_side() || screen == Screen::SignIn {
        String::new()
    } else {
        format!("<a href=\"/alerts\">{}</a> <a href=\"/admin\">{}</a> ", t("nav-alerts"), t("nav-admin"))
    };
    let pwa = if screen.patient_side() {
        "<link rel=\"manifest\" href=\"/app/manifest.webmanifest\">\n<meta name=\"theme-color\" content=\"#0b5d4b\">\n"
    } else {
        ""
    };
    let signout = if screen == Screen::SignIn {
        String::new()
    } else {
        format!("<button type=\"button\" id=\"sign-out\" class=\"link\">{}</button>", t("sign-out"))
    };
    format!(
        "<!doctype html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>{title} · {app}</title>\n<link rel=\"stylesheet\" href=\"/web/app.css\">\n\
<link rel=\"icon\" href=\"/web/icon.svg\" type=\"image/svg+xml\">\n{pwa}\
<script type=\"application/json\" id=\"hearth-strings\">{strings}</script>\n\
<script src=\"/web/web.js\" defer></script>\n</head>\n\
<body data-page=\"{page}\"{attrs}>\n<a class=\"skip\" href=\"#main\">{skip}</a>\n\
<header class=\"bar\">\n<a class=\"brand\" href=\"{home}\">{app}</a>\n<nav aria-label=\"{app}\">\
<a href=\"{home}\">{nav}</a> {staff}<a href=\"?lang={other}\" lang=\"{other}\" id=\"language\">{switch}</a> {signout}</nav>\n</header>\n\
<p id=\"notice\" class=\"notice\" role=\"status\" hidden></p>\n\
<main id=\"main\">\n<h1>{title}</h1>\n{main}\n</main>\n</body>\n</html>\n",
        lang = lang.as_str(),
        title = t(title_key),
        app = t("app-name"),
        strings = strings_json(cat, lang),
        page = screen.name(),
        skip = t("skip-to-content"),
        nav = t(nav_key),
        switch = t("language-switch"),
    )
}

/// Password, then (when the account has two-factor sign-in) the TOTP code.
pub fn sign_in(cat: &Catalogue, lang: Lang) -> String {
    let t = |k: &str| esc(cat.get(lang, k));
    let main = format!(
        "<form id=\"signin-form\" class=\"card\" novalidate>\n\
<p id=\"signin-error\" class=\"error\" role=\"alert\" hidden></p>\n\
<div id=\"password-step\">\n<label for=\"email\">{email}</label>\n\
<input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required>\n\
<label for=\"password\">{password}</label>\n\
<input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\n</div>\n\
<div id=\"code-step\" hidden>\n<label for=\"code\">{code}</label>\n<p class=\"hint\" id=\"code-hint\">{hint}</p>\n\
<input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" pattern=\"[0-9]*\" maxlength=\"12\" aria-describedby=\"code-hint\">\n</div>\n\
<button type=\"submit\" id=\"signin-submit\">{submit}</button>\n</form>",
        email = t("email"),
        password = t("password"),
        code = t("totp-code"),
        hint = t("totp-hint"),
        submit = t("signin-submit"),
    );
    layout(cat, lang, Screen::SignIn, "signin-title", "", &main)
}

/// The clinician's day: the schedule with check-in, the intake queue; and, for whoever arrives
/// here first, where the API and its documentation are.
pub fn clinic(cat: &Catalogue, lang: Lang) -> String {
    let t = |k: &str| esc(cat.get(lang, k));
    let main = format!(
        "<div class=\"grid\">\n<section aria-labelledby=\"schedule-h\" class=\"card\">\n<h2 id=\"schedule-h\">{schedule}</h2>\n\
<label for=\"practitioner\">{practitioner}</label>\n<select id=\"practitioner\"></select>\n\
<ul id=\"appointments\" class=\"rows\" aria-live=\"polite\"><li>{loading}</li></ul>\n</section>\n\
<section aria-labelledby=\"queue-h\" class=\"card\">\n<h2 id=\"queue-h\">{queue}</h2>\n\
<ol id=\"queue\" class=\"rows\"><li>{loading}</li></ol>\n</section>\n</div>\n\
<footer class=\"dev\">\n<h2>{links}</h2>\n<ul>\n\
<li><a href=\"/fhir/metadata\">FHIR capabilities</a> (<code>/fhir</code>)</li>\n\
<li><a href=\"/api/docs\">App API reference</a> (<a href=\"/api/openapi.json\">OpenAPI</a>)</li>\n\
<li><a href=\"/healthz\">Liveness</a>, <a href=\"/readyz\">readiness</a></li>\n\
<li>First administrator: <code>hearth admin create-admin --email you@example.org</code></li>\n</ul>\n</footer>",
        schedule = t("schedule-title"),
        practitioner = t("practitioner"),
        loading = t("loading"),
        queue = t("queue-title"),
        links = t("home-links"),
    );
    layout(cat, lang, Screen::Clinic, "clinic-title", "", &main)
}

/// One patient's chart; `patient` is an id already checked to be `[A-Za-z0-9.-]{1,64}`.
pub fn chart(cat: &Catalogue, lang: Lang, patient: &str) -> String {
    let t = |k: &str| esc(cat.get(lang, k));
    let section = |key: &str, id: &str| {
        format!(
            "<section aria-labelledby=\"{id}-h\" class=\"card\">\n<h2 id=\"{id}-h\">{}</h2>\n<ul id=\"{id}\" class=\"rows\"><li>{}</li></ul>\n</section>\n",
            t(key),
            t("loading")
        )
    };
    // Vitals and results: a chart per measure (drawn by the script as SVG, hidden from
    // assistive technology) with the same numbers in a table beside it.
    let charted = |key: &str, id: &str| {
        format!(
            "<section aria-labelledby=\"{id}-h\" class=\"card wide\">\n<h2 id=\"{id}-h\">{}</h2>\n<div id=\"{id}\" class=\"charts\"><p>{}</p></div>\n</section>\n",
            t(key),
            t("loading")
        )
    };
    let main = format!(
        "<section aria-labelledby=\"demo-h\" class=\"card\">\n<h2 id=\"demo-h\">{demo}</h2>\n<dl id=\"demographics\"></dl>\n</section>\n\
{vitals}{results}<div class=\"grid\">\n{problems}{meds}{allergies}{encounters}{documents}</div>\n\
<section aria-labelledby=\"letters-h\" class=\"card\">\n<h2 id=\"letters-h\">{letters}</h2>\n\
<ul id=\"letters\" class=\"rows\"><li>{loading}</li></ul>\n\
<form id=\"letter-form\" novalidate>\n<h3 id=\"letter-form-h\">{write}</h3>\n\
<p id=\"letter-error\" class=\"error\" role=\"alert\" hidden></p>\n\
<label for=\"letter-kind\">{kind}</label>\n<select id=\"letter-kind\"><option value=\"consult\">{consult}</option>\
<option value=\"summary\">{summary}</option><option value=\"referral\">{referral}</option></select>\n\
<label for=\"letter-title\">{title}</label>\n<input id=\"letter-title\" required maxlength=\"200\">\n\
<label for=\"letter-text\">{text}</label>\n<textarea id=\"letter-text\" rows=\"8\" required></textarea>\n\
<div class=\"actions\"><button type=\"submit\" id=\"letter-save\" class=\"secondary\">{save}</button>\
<button type=\"button\" id=\"letter-final\">{finalise}</button>\
<button type=\"button\" id=\"letter-cancel\" class=\"secondary\" hidden>{cancel}</button></div>\n</form>\n</section>",
        demo = t("demographics"),
        vitals = charted("vitals", "vitals"),
        results = charted("results", "results"),
        problems = section("problems", "problems"),
        meds = section("medications", "medications"),
        allergies = section("allergies", "allergies"),
        encounters = section("encounters", "encounters"),
        documents = section("documents", "documents"),
        letters = t("letters-chart-title"),
        loading = t("loading"),
        write = t("letter-write"),
        kind = t("letter-kind"),
        consult = t("letter-kind-consult"),
        summary = t("letter-kind-summary"),
        referral = t("letter-kind-referral"),
        title = t("letter-title"),
        text = t("letter-text"),
        save = t("letter-save-draft"),
        finalise = t("letter-finalise"),
        cancel = t("cancel"),
    );
    layout(cat, lang, Screen::Chart, "chart-title", &format!(" data-patient=\"{}\"", esc(patient)), &main)
}

/// An intake interview's summary for the clinician, red flags first; `session` is an id
/// already checked like a chart's.
pub fn intake(cat: &Catalogue, lang: Lang, session: &str) -> String {
    let t = |k: &str| esc(cat.get(lang, k));
    let main = format!(
        "<p><a id=\"intake-chart\" href=\"/\" hidden>{open}</a></p>\n\
<section aria-labelledby=\"flags-h\" class=\"card\">\n<h2 id=\"flags-h\">{flags}</h2>\n<ul id=\"summary-flags\" class=\"rows\"><li>{loading}</li></ul>\n</section>\n\
<section aria-labelledby=\"facts-h\" class=\"card\">\n<h2 id=\"facts-h\">{summary}</h2>\n<dl id=\"summary-facts\"></dl>\n</section>\n\
<div class=\"grid\">\n\
<section aria-labelledby=\"pos-h\" class=\"card\">\n<h2 id=\"pos-h\">{pos}</h2>\n<ul id=\"summary-positives\" class=\"rows\"></ul>\n</section>\n\
<section aria-labelledby=\"neg-h\" class=\"card\">\n<h2 id=\"neg-h\">{neg}</h2>\n<ul id=\"summary-negatives\" class=\"rows\"></ul>\n</section>\n\
<section aria-labelledby=\"hist-h\" class=\"card\">\n<h2 id=\"hist-h\">{history}</h2>\n<dl id=\"summary-history\" class=\"stacked\"></dl>\n</section>\n\
<section aria-labelledby=\"words-h\" class=\"card\">\n<h2 id=\"words-h\">{words}</h2>\n<ul id=\"summary-words\" class=\"rows\"></ul>\n</section>\n</div>\n\
<p id=\"summary-reviewed\" role=\"status\"></p>\n<button type=\"button\" id=\"summary-review\" hidden>{review}</button>",
        open = t("open-chart"),
        flags = t("red-flags"),
        loading = t("loading"),
        summary = t("intake-summary"),
        pos = t("intake-positives"),
        neg = t("intake-negatives"),
        history = t("intake-history"),
        words = t("intake-words"),
        review = t("intake-review"),
    );
    layout(cat, lang, Screen::Intake, "intake-title", &format!(" data-session=\"{}\"", esc(session)), &main)
}

/// The self-care alerts of the patients the caller reaches, with acknowledge.
pub fn alerts(cat: &Catalogue, lang: Lang) -> String {
    let t = |k: &str| esc(cat.get(lang, k));
    let main = format!(
        "<section aria-labelledby=\"inbox-h\" class=\"card\">\n<h2 id=\"inbox-h\">{inbox}</h2>\n\
<label for=\"alert-status\">{show}</label>\n<select id=\"alert-status\"><option value=\"live\">{live}</option><option value=\"all\">{all}</option></select>\n\
<ul id=\"alerts\" class=\"rows\" aria-live=\"polite\"><li>{loading}</li></ul>\n</section>",
        inbox = t("alerts-inbox"),
        show = t("alerts-show"),
        live = t("alerts-live"),
        all = t("alerts-all"),
        loading = t("loading"),
    );
    layout(cat, lang, Screen::Alerts, "alerts-title", "", &main)
}

/// The administrator's console: accounts and their 2FA, notification deliveries, the audit trail.
pub fn admin(cat: &Catalogue, lang: Lang) -> String {
    let t = |k: &str| esc(cat.get(lang, k));
    let main = format!(
        "<section aria-labelledby=\"accounts-h\" class=\"card\">\n<h2 id=\"accounts-h\">{accounts}</h2>\n\
<ul id=\"accounts\" class=\"rows\" aria-live=\"polite\"><li>{loading}</li></ul>\n</section>\n\
<section aria-labelledby=\"deliveries-h\" class=\"card\">\n<h2 id=\"deliveries-h\">{deliveries}</h2>\n\
<label for=\"delivery-status\">{status}</label>\n<select id=\"delivery-status\"><option value=\"\">{any}</option>{statuses}</select>\n\
<ul id=\"deliveries\" class=\"rows\"><li>{loading}</li></ul>\n</section>\n\
<section aria-labelledby=\"audit-h\" class=\"card\">\n<h2 id=\"audit-h\">{audit}</h2>\n\
<form id=\"audit-form\" novalidate>\n<label for=\"audit-patient\">{patient}</label>\n<input id=\"audit-patient\" autocomplete=\"off\">\n\
<label for=\"audit-day\">{day}</label>\n<input id=\"audit-day\" type=\"date\">\n<button type=\"submit\" id=\"audit-search\">{search}</button>\n</form>\n\
<ul id=\"audit\" class=\"rows\" aria-live=\"polite\"></ul>\n</section>",
        accounts = t("admin-accounts"),
        loading = t("loading"),
        deliveries = t("admin-deliveries"),
        status = t("admin-delivery-status"),
        any = t("admin-any"),
        statuses = ["queued", "sending", "sent", "delivered", "failed", "bounced", "cancelled"]
            .iter()
            .map(|s| format!("<option value=\"{s}\">{}</option>", t(&format!("delivery-{s}"))))
            .collect::<String>(),
        audit = t("admin-audit"),
        patient = t("admin-audit-patient"),
        day = t("book-when"),
        search = t("admin-audit-search"),
    );
    layout(cat, lang, Screen::Admin, "admin-title", "", &main)
}

/// The patient's app: appointments, booking, letters.
pub fn app(cat: &Catalogue, lang: Lang) -> String {
    let t = |k: &str| esc(cat.get(lang, k));
    let main = format!(
        "<p id=\"offline\" class=\"notice\" hidden>{offline}</p>\n\
<section aria-labelledby=\"mine-h\" class=\"card\">\n<h2 id=\"mine-h\">{mine}</h2>\n\
<ul id=\"my-appointments\" class=\"rows\" aria-live=\"polite\"><li>{loading}</li></ul>\n</section>\n\
<section aria-labelledby=\"book-h\" class=\"card\">\n<h2 id=\"book-h\">{book}</h2>\n\
<p id=\"rescheduling\" class=\"notice\" role=\"status\" hidden></p>\n\
<form id=\"book-form\" novalidate>\n<label for=\"book-practitioner\">{practitioner}</label>\n\
<select id=\"book-practitioner\" required></select>\n<label for=\"book-day\">{day}</label>\n\
<input id=\"book-day\" type=\"date\" required>\n<button type=\"submit\" id=\"find-slots\">{find}</button>\n</form>\n\
<ul id=\"slots\" class=\"slots\" aria-live=\"polite\"></ul>\n</section>\n\
<section aria-labelledby=\"letters-h\" class=\"card\">\n<h2 id=\"letters-h\">{letters}</h2>\n\
<ul id=\"letters\" class=\"rows\"><li>{loading}</li></ul>\n<article id=\"letter\" class=\"letter\" tabindex=\"-1\" hidden></article>\n</section>\n\
<section aria-labelledby=\"reading-h\" class=\"card\">\n<h2 id=\"reading-h\">{reading}</h2>\n\
<form id=\"reading-form\" novalidate>\n<p id=\"reading-error\" class=\"error\" role=\"alert\" hidden></p>\n\
<label for=\"reading-kind\">{kind}</label>\n<select id=\"reading-kind\">{kinds}</select>\n\
<label for=\"reading-value\" id=\"reading-value-label\">{value}</label>\n<input id=\"reading-value\" inputmode=\"decimal\" required>\n\
<div id=\"reading-second\"><label for=\"reading-diastolic\">{diastolic}</label>\n<input id=\"reading-diastolic\" inputmode=\"decimal\"></div>\n\
<button type=\"submit\" id=\"reading-save\">{save}</button>\n</form>\n\
<p id=\"reading-done\" role=\"status\"></p>\n</section>",
        reading = t("reading-title"),
        kind = t("reading-kind"),
        kinds = [
            ("blood_pressure", "mm[Hg]"),
            ("heart_rate", "/min"),
            ("body_weight", "kg"),
            ("body_temperature", "Cel"),
            ("blood_glucose", "mg/dL"),
            ("spo2", "%")
        ]
        .iter()
        .map(|(k, unit)| format!(
            "<option value=\"{k}\" data-unit=\"{}\">{}</option>",
            esc(unit),
            t(&format!("reading-{k}"))
        ))
        .collect::<String>(),
        value = t("reading-value"),
        diastolic = t("reading-diastolic"),
        save = t("reading-save"),
        offline = t("offline"),
        mine = t("appointments-title"),
        loading = t("loading"),
        book = t("book-title"),
        practitioner = t("practitioner"),
        day = t("book-when"),
        find = t("find-slots"),
        letters = t("letters-title"),
    );
    layout(cat, lang, Screen::App, "app-title", "", &main)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_use_only_keys_the_catalogues_have_and_escape_what_they_insert() {
        let cat = Catalogue::load().unwrap();
        for lang in [Lang::En, Lang::Hi] {
            for html in [
                sign_in(&cat, lang),
                clinic(&cat, lang),
                chart(&cat, lang, "abc"),
                intake(&cat, lang, "abc"),
                alerts(&cat, lang),
                admin(&cat, lang),
                app(&cat, lang),
            ] {
                assert!(
                    !html.contains("<style") && !html.contains(" style=") && !html.contains("<script>"),
                    "nothing inline"
                );
                // A key shown as itself would be a word with dashes between <…> and <…>.
                for key in cat.texts(lang).keys() {
                    assert!(!html.contains(&format!(">{key}<")), "{key} shown untranslated");
                }
            }
        }
        let hi = app(&cat, Lang::Hi);
        assert!(hi.contains("<html lang=\"hi\">") && hi.contains("मेरा स्वास्थ्य"));
        assert!(chart(&cat, Lang::En, "a\"b").contains("data-patient=\"a&quot;b\""));
        assert!(!strings_json(&cat, Lang::En).contains('<'));
    }
}
