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
    App,
}

impl Screen {
    fn name(self) -> &'static str {
        match self {
            Screen::SignIn => "signin",
            Screen::Clinic => "clinic",
            Screen::Chart => "chart",
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
<a href=\"{home}\">{nav}</a> <a href=\"?lang={other}\" lang=\"{other}\" id=\"language\">{switch}</a> {signout}</nav>\n</header>\n\
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
    let main = format!(
        "<section aria-labelledby=\"demo-h\" class=\"card\">\n<h2 id=\"demo-h\">{demo}</h2>\n<dl id=\"demographics\"></dl>\n</section>\n\
<div class=\"grid\">\n{problems}{meds}{allergies}{vitals}{documents}</div>",
        demo = t("demographics"),
        problems = section("problems", "problems"),
        meds = section("medications", "medications"),
        allergies = section("allergies", "allergies"),
        vitals = section("vitals", "vitals"),
        documents = section("documents", "documents"),
    );
    layout(cat, lang, Screen::Chart, "chart-title", &format!(" data-patient=\"{}\"", esc(patient)), &main)
}

/// The patient's app: appointments, booking, letters.
pub fn app(cat: &Catalogue, lang: Lang) -> String {
    let t = |k: &str| esc(cat.get(lang, k));
    let main = format!(
        "<p id=\"offline\" class=\"notice\" hidden>{offline}</p>\n\
<section aria-labelledby=\"mine-h\" class=\"card\">\n<h2 id=\"mine-h\">{mine}</h2>\n\
<ul id=\"my-appointments\" class=\"rows\" aria-live=\"polite\"><li>{loading}</li></ul>\n</section>\n\
<section aria-labelledby=\"book-h\" class=\"card\">\n<h2 id=\"book-h\">{book}</h2>\n\
<form id=\"book-form\" novalidate>\n<label for=\"book-practitioner\">{practitioner}</label>\n\
<select id=\"book-practitioner\" required></select>\n<label for=\"book-day\">{day}</label>\n\
<input id=\"book-day\" type=\"date\" required>\n<button type=\"submit\" id=\"find-slots\">{find}</button>\n</form>\n\
<ul id=\"slots\" class=\"slots\" aria-live=\"polite\"></ul>\n</section>\n\
<section aria-labelledby=\"letters-h\" class=\"card\">\n<h2 id=\"letters-h\">{letters}</h2>\n\
<ul id=\"letters\" class=\"rows\"><li>{loading}</li></ul>\n<article id=\"letter\" class=\"letter\" tabindex=\"-1\" hidden></article>\n</section>",
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
            for html in [sign_in(&cat, lang), clinic(&cat, lang), chart(&cat, lang, "abc"), app(&cat, lang)] {
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
