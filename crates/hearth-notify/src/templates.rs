//! Message texts in Project Fluent, English and Hindi, chosen by the recipient's language.
//!
//! A template `T` has `T-subject` (e-mail subject, push and in-app title) and `T-body` (e-mail
//! text, in-app and push body); `T-sms` when the SMS text differs. The HTML part of an e-mail is
//! the body escaped into a fixed layout. Plurals follow CLDR through Fluent (`hi`: 0 and 1 are
//! "one"). Unicode isolation marks are off: both languages are left-to-right, and the marks show
//! as junk or cost a UCS-2 SMS segment. A `when` argument is an RFC 3339 instant, shown in the
//! recipient's time zone.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use serde_json::{Map, Value};

/// A language Hearth has texts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Hi,
}

impl Lang {
    /// `en`, `hi`, `hi-IN`…; anything else falls back to English.
    pub fn parse(tag: &str) -> Lang {
        let primary = tag.split(['-', '_']).next().unwrap_or("").to_ascii_lowercase();
        if primary == "hi" { Lang::Hi } else { Lang::En }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Hi => "hi",
        }
    }
}

/// The templates Hearth ships (enqueueing an unknown one is refused).
pub const TEMPLATES: [&str; 9] = [
    "otp-code",
    "appointment-reminder",
    "medication-reminder",
    "results-available",
    "emergency-alert",
    "announcement",
    "appointment-change",
    "appointment-offer",
    "registry-invite",
];

/// A message rendered for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub lang: Lang,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub sms: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("unknown template `{0}`")]
    Unknown(String),
    #[error("template `{template}` needs the argument `{arg}`")]
    MissingArg { template: String, arg: String },
    #[error("the `when` argument must be an RFC 3339 instant")]
    BadWhen,
    #[error("the {0} texts do not parse: {1}")]
    Resource(&'static str, String),
}

pub struct Templates {
    en: FluentBundle<FluentResource>,
    hi: FluentBundle<FluentResource>,
}

fn bundle(lang: Lang, source: &str) -> Result<FluentBundle<FluentResource>, TemplateError> {
    let name = lang.as_str();
    let resource =
        FluentResource::try_new(source.to_owned()).map_err(|(_, e)| TemplateError::Resource(name, format!("{e:?}")))?;
    let id: unic_langid::LanguageIdentifier =
        name.parse().map_err(|e| TemplateError::Resource(name, format!("{e:?}")))?;
    let mut b = FluentBundle::new_concurrent(vec![id]);
    b.set_use_isolating(false);
    b.add_resource(resource).map_err(|e| TemplateError::Resource(name, format!("{e:?}")))?;
    Ok(b)
}

/// Text made safe for HTML element content and quoted attribute values (also used by the
/// server's own pages, e.g. the SMART consent page).
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

impl Templates {
    pub fn load() -> Result<Templates, TemplateError> {
        Ok(Templates {
            en: bundle(Lang::En, include_str!("../locales/en.ftl"))?,
            hi: bundle(Lang::Hi, include_str!("../locales/hi.ftl"))?,
        })
    }

    /// Renders `template` in `lang` with `args` (strings and numbers), times in `tz`.
    pub fn render(
        &self,
        template: &str,
        lang: Lang,
        args: &Map<String, Value>,
        tz: Tz,
    ) -> Result<Rendered, TemplateError> {
        if !TEMPLATES.contains(&template) {
            return Err(TemplateError::Unknown(template.to_owned()));
        }
        let bundle = match lang {
            Lang::En => &self.en,
            Lang::Hi => &self.hi,
        };
        let mut fargs = FluentArgs::new();
        for (k, v) in args {
            match v {
                Value::Number(n) => {
                    fargs.set(k.clone(), FluentValue::from(n.as_f64().unwrap_or(0.0)));
                }
                Value::String(s) if k == "when" => {
                    let t = DateTime::parse_from_rfc3339(s).map_err(|_| TemplateError::BadWhen)?;
                    let local = t.with_timezone(&Utc).with_timezone(&tz);
                    fargs.set(k.clone(), FluentValue::from(local.format("%d/%m/%Y %H:%M").to_string()));
                }
                Value::String(s) => {
                    fargs.set(k.clone(), FluentValue::from(s.clone()));
                }
                _ => {}
            }
        }
        let subject = self.format(bundle, template, "subject", &fargs)?;
        let text = self.format(bundle, template, "body", &fargs)?;
        let sms = match bundle.has_message(&format!("{template}-sms")) {
            true => self.format(bundle, template, "sms", &fargs)?,
            false => text.clone(),
        };
        let html = format!(
            "<!DOCTYPE html><html lang=\"{}\"><head><meta charset=\"utf-8\"><title>{}</title></head>\
             <body><h1>{}</h1><p>{}</p><p><small>Hearth</small></p></body></html>",
            lang.as_str(),
            escape_html(&subject),
            escape_html(&subject),
            escape_html(&text)
        );
        Ok(Rendered { lang, subject, text, html, sms })
    }

    fn format(
        &self,
        bundle: &FluentBundle<FluentResource>,
        template: &str,
        part: &str,
        args: &FluentArgs,
    ) -> Result<String, TemplateError> {
        let id = format!("{template}-{part}");
        let pattern =
            bundle.get_message(&id).and_then(|m| m.value()).ok_or_else(|| TemplateError::Unknown(id.clone()))?;
        let mut errors = Vec::new();
        let out = bundle.format_pattern(pattern, Some(args), &mut errors).into_owned();
        if let Some(e) = errors.into_iter().next() {
            let arg = match e {
                fluent_bundle::FluentError::ResolverError(fluent_bundle::resolver::ResolverError::Reference(r)) => {
                    format!("{r:?}")
                }
                other => format!("{other:?}"),
            };
            return Err(TemplateError::MissingArg { template: template.to_owned(), arg });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn plurals_follow_each_languages_rules() {
        let t = Templates::load().unwrap();
        let tz = chrono_tz::UTC;
        let en = |n: i64| t.render("medication-reminder", Lang::En, &args(json!({"count": n})), tz).unwrap().text;
        let hi = |n: i64| t.render("medication-reminder", Lang::Hi, &args(json!({"count": n})), tz).unwrap().text;
        assert_eq!(en(1), "You have one dose to take now.");
        assert_eq!(en(0), "You have 0 doses to take now.");
        assert_eq!(en(3), "You have 3 doses to take now.");
        // Hindi: 0 and 1 are both "one".
        assert_eq!(hi(0), "अभी आपको 0 खुराक लेनी है।");
        assert_eq!(hi(1), "अभी आपको 1 खुराक लेनी है।");
        assert_eq!(hi(2), "अभी आपको 2 खुराकें लेनी हैं।");
        let r = t.render("results-available", Lang::Hi, &args(json!({"count": 5})), tz).unwrap();
        assert_eq!(r.text, "Hearth में 5 नए परिणाम तैयार हैं।");
    }

    #[test]
    fn sms_text_has_no_isolation_marks_and_times_are_local() {
        let t = Templates::load().unwrap();
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        for lang in [Lang::En, Lang::Hi] {
            let r = t
                .render("appointment-reminder", lang, &args(json!({"when": "2026-03-01T04:30:00Z"})), kolkata)
                .unwrap();
            assert!(r.sms.contains("01/03/2026 10:00"), "{}", r.sms);
            let r2 = t.render("otp-code", lang, &args(json!({"code": "123456", "minutes": 10})), kolkata).unwrap();
            for s in [&r.sms, &r.text, &r.subject, &r2.sms, &r2.text] {
                assert!(!s.chars().any(|c| matches!(c, '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')), "{s:?}");
            }
            assert!(r2.sms.contains("123456"));
        }
        let r =
            t.render("announcement", Lang::En, &args(json!({"title": "<b>x</b>", "text": "a & b"})), kolkata).unwrap();
        assert!(r.html.contains("&lt;b&gt;x&lt;/b&gt;") && r.html.contains("a &amp; b"));
        assert_eq!(Lang::parse("hi-IN"), Lang::Hi);
        assert_eq!(Lang::parse("fr"), Lang::En);
    }

    #[test]
    fn appointment_changes_and_offers_name_a_time_only() {
        let t = Templates::load().unwrap();
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        let when = "2026-03-01T04:30:00Z";
        let en = |change: &str| {
            t.render("appointment-change", Lang::En, &args(json!({"when": when, "change": change})), kolkata).unwrap()
        };
        assert_eq!(en("booked").subject, "Appointment booked");
        assert_eq!(en("booked").text, "An appointment on 01/03/2026 10:00 was booked. Open Hearth for the details.");
        assert_eq!(
            en("rescheduled").text,
            "An appointment was moved to 01/03/2026 10:00. Open Hearth for the details."
        );
        assert_eq!(en("cancelled").subject, "Appointment cancelled");
        let hi = t
            .render("appointment-change", Lang::Hi, &args(json!({"when": when, "change": "cancelled"})), kolkata)
            .unwrap();
        assert!(hi.text.contains("01/03/2026 10:00") && hi.subject.contains("रद्द"), "{hi:?}");
        for lang in [Lang::En, Lang::Hi] {
            let r = t.render("appointment-offer", lang, &args(json!({"when": when})), kolkata).unwrap();
            assert!(r.sms.contains("01/03/2026 10:00"), "{r:?}");
        }
    }

    #[test]
    fn registry_invites_carry_code_link_and_hours_in_both_languages() {
        let t = Templates::load().unwrap();
        let a = args(
            json!({"code": "k7mq-2xbd-9hw4-a3ce", "link": "https://example.org/claim?code=k7mq-2xbd-9hw4-a3ce", "hours": 24}),
        );
        for lang in [Lang::En, Lang::Hi] {
            let r = t.render("registry-invite", lang, &a, chrono_tz::UTC).unwrap();
            for s in [&r.text, &r.sms] {
                assert!(
                    s.contains("k7mq-2xbd-9hw4-a3ce")
                        && s.contains("https://example.org/claim?code=")
                        && s.contains("24"),
                    "{s}"
                );
            }
        }
        assert!(t.render("registry-invite", Lang::Hi, &a, chrono_tz::UTC).unwrap().subject.contains("रिकॉर्ड"));
        assert!(matches!(
            t.render("registry-invite", Lang::En, &args(json!({"code": "x"})), chrono_tz::UTC),
            Err(TemplateError::MissingArg { .. })
        ));
    }

    #[test]
    fn unknown_templates_and_missing_arguments_are_errors() {
        let t = Templates::load().unwrap();
        let tz = chrono_tz::UTC;
        assert!(matches!(t.render("nope", Lang::En, &Map::new(), tz), Err(TemplateError::Unknown(_))));
        assert!(matches!(t.render("otp-code", Lang::En, &Map::new(), tz), Err(TemplateError::MissingArg { .. })));
        assert_eq!(
            t.render("appointment-reminder", Lang::En, &args(json!({"when": "tomorrow"})), tz),
            Err(TemplateError::BadWhen)
        );
    }
}
