//! Message texts in Project Fluent, English and Hindi, chosen by the recipient's language.
//!
//! A template `T` has `T-subject` (e-mail subject, push and in-app title) and `T-body` (e-mail
//! text, in-app and push body); `T-sms` when the SMS text differs. The HTML part of an e-mail is
//! the body escaped into a fixed layout. Plurals follow CLDR through Fluent (`hi`: 0 and 1 are
//! "one"). Unicode isolation marks are off: both languages are left-to-right, and the marks show
//! as junk or cost a UCS-2 SMS segment. A `when` argument is an RFC 3339 instant, shown by
//! [`format_instant`] in the recipient's time zone and language with the zone named:
//! `Thu 10 Dec 2026, 10:10 IST (Asia/Kolkata)`, `गुरुवार, 10 दिसंबर 2026, 10:10 IST (Asia/Kolkata)`.
//! Weekday, day, month name and year (no all-digit date that reads differently in different
//! countries), a 24-hour time, then the zone's abbreviation at that instant (which tells summer
//! from winter time in an hour that repeats) and its IANA name (abbreviations alone are
//! ambiguous: IST is also Irish and Israeli time). A zone whose abbreviation is only an offset
//! shows `UTC+03:00`; a zone whose abbreviation is its name (`UTC`) shows it once.

use chrono::{DateTime, Datelike, Utc};
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
pub const TEMPLATES: [&str; 15] = [
    "otp-code",
    "appointment-reminder",
    "medication-reminder",
    "results-available",
    "emergency-alert",
    "announcement",
    "appointment-change",
    "appointment-offer",
    "registry-invite",
    "staff-message",
    "emergency-help",
    "emergency-safe",
    "medication-refill",
    "alarm",
    "daily-summary",
];

const EN_DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const EN_MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const HI_DAYS: [&str; 7] = ["सोमवार", "मंगलवार", "बुधवार", "गुरुवार", "शुक्रवार", "शनिवार", "रविवार"];
const HI_MONTHS: [&str; 12] =
    ["जनवरी", "फ़रवरी", "मार्च", "अप्रैल", "मई", "जून", "जुलाई", "अगस्त", "सितंबर", "अक्तूबर", "नवंबर", "दिसंबर"];

/// An instant as a recipient reads it: in `tz`, in `lang`, with the zone named (see the
/// module docs for the format and why).
pub fn format_instant(t: DateTime<Utc>, tz: Tz, lang: Lang) -> String {
    let local = t.with_timezone(&tz);
    let abbreviation = local.format("%Z").to_string();
    let short = if abbreviation.starts_with(['+', '-']) || abbreviation.is_empty() {
        format!("UTC{}", local.format("%:z"))
    } else {
        abbreviation
    };
    let name = tz.name();
    let zone = if short == name { short } else { format!("{short} ({name})") };
    let weekday = usize::try_from(local.weekday().num_days_from_monday()).unwrap_or(0);
    let month = usize::try_from(local.month0()).unwrap_or(0);
    let time = local.format("%H:%M");
    match lang {
        Lang::En => format!(
            "{} {} {} {}, {time} {zone}",
            EN_DAYS.get(weekday).copied().unwrap_or_default(),
            local.day(),
            EN_MONTHS.get(month).copied().unwrap_or_default(),
            local.year()
        ),
        Lang::Hi => format!(
            "{}, {} {} {}, {time} {zone}",
            HI_DAYS.get(weekday).copied().unwrap_or_default(),
            local.day(),
            HI_MONTHS.get(month).copied().unwrap_or_default(),
            local.year()
        ),
    }
}

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
                    fargs.set(k.clone(), FluentValue::from(format_instant(t.with_timezone(&Utc), tz, lang)));
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
            escape_html(&text).replace('\n', "<br>\n")
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
        let refill = |lang, n: i64| t.render("medication-refill", lang, &args(json!({"days": n})), tz).unwrap().text;
        assert_eq!(refill(Lang::En, 1), "One of your medicines runs out in 1 day. Ask for a refill in time.");
        assert_eq!(refill(Lang::En, 3), "One of your medicines runs out in 3 days. Ask for a refill in time.");
        assert_eq!(refill(Lang::Hi, 3), "आपकी एक दवा 3 दिन में ख़त्म हो जाएगी। समय पर दोबारा मँगवा लें।");
    }

    #[test]
    fn sms_text_has_no_isolation_marks_and_times_are_local() {
        let t = Templates::load().unwrap();
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        for lang in [Lang::En, Lang::Hi] {
            let r = t
                .render("appointment-reminder", lang, &args(json!({"when": "2026-03-01T04:30:00Z"})), kolkata)
                .unwrap();
            let named = match lang {
                Lang::En => "Sun 1 Mar 2026, 10:00 IST (Asia/Kolkata)",
                Lang::Hi => "रविवार, 1 मार्च 2026, 10:00 IST (Asia/Kolkata)",
            };
            assert!(r.sms.contains(named) && r.text.contains(named), "{}", r.sms);
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
        assert_eq!(
            en("booked").text,
            "An appointment on Sun 1 Mar 2026, 10:00 IST (Asia/Kolkata) was booked. Open Hearth for the details."
        );
        assert_eq!(
            en("rescheduled").text,
            "An appointment was moved to Sun 1 Mar 2026, 10:00 IST (Asia/Kolkata). Open Hearth for the details."
        );
        assert_eq!(en("cancelled").subject, "Appointment cancelled");
        let hi = t
            .render("appointment-change", Lang::Hi, &args(json!({"when": when, "change": "cancelled"})), kolkata)
            .unwrap();
        assert!(
            hi.text.contains("रविवार, 1 मार्च 2026, 10:00 IST (Asia/Kolkata)") && hi.subject.contains("रद्द"),
            "{hi:?}"
        );
        for lang in [Lang::En, Lang::Hi] {
            let r = t.render("appointment-offer", lang, &args(json!({"when": when})), kolkata).unwrap();
            assert!(r.sms.contains("1 ") && r.sms.contains("2026, 10:00 IST (Asia/Kolkata)"), "{r:?}");
        }
    }

    #[test]
    fn emergency_alerts_name_the_patient_and_carry_the_map_link_or_say_there_is_none() {
        let t = Templates::load().unwrap();
        let map = "https://www.openstreetmap.org/?mlat=28.613900&mlon=77.209000#map=16/28.613900/77.209000";
        for lang in [Lang::En, Lang::Hi] {
            let with = args(json!({"name": "Meera Rao", "located": "yes", "map": map}));
            let r = t.render("emergency-help", lang, &with, chrono_tz::UTC).unwrap();
            for s in [&r.sms, &r.text, &r.subject] {
                assert!(s.contains("Meera Rao"), "{s}");
            }
            assert!(r.sms.contains(map) && r.text.contains(map), "{r:?}");
            let without = args(json!({"name": "Meera Rao", "located": "no", "map": ""}));
            let r = t.render("emergency-help", lang, &without, chrono_tz::UTC).unwrap();
            assert!(!r.sms.contains("openstreetmap"), "{}", r.sms);
            let safe = t.render("emergency-safe", lang, &args(json!({"name": "Meera Rao"})), chrono_tz::UTC).unwrap();
            assert!(safe.sms.contains("Meera Rao"), "{}", safe.sms);
        }
        let en = t.render(
            "emergency-help",
            Lang::En,
            &args(json!({"name": "M", "located": "no", "map": ""})),
            chrono_tz::UTC,
        );
        assert!(en.unwrap().sms.ends_with("Location not shared."));
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
    fn instants_are_shown_in_the_recipients_zone_and_language_with_the_zone_named() {
        let tz = |n: &str| -> Tz { n.parse().unwrap() };
        let t = DateTime::parse_from_rfc3339("2026-12-10T04:40:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(format_instant(t, tz("Asia/Kolkata"), Lang::En), "Thu 10 Dec 2026, 10:10 IST (Asia/Kolkata)");
        assert_eq!(format_instant(t, tz("Asia/Kolkata"), Lang::Hi), "गुरुवार, 10 दिसंबर 2026, 10:10 IST (Asia/Kolkata)");
        assert_eq!(format_instant(t, tz("Europe/London"), Lang::En), "Thu 10 Dec 2026, 04:40 GMT (Europe/London)");
        // Summer time is named as such; the zone's name stays.
        let june = DateTime::parse_from_rfc3339("2026-06-04T09:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(format_instant(june, tz("Europe/London"), Lang::En), "Thu 4 Jun 2026, 10:00 BST (Europe/London)");
        assert_eq!(format_instant(june, chrono_tz::UTC, Lang::En), "Thu 4 Jun 2026, 09:00 UTC");
        // A zone whose abbreviation is only an offset.
        assert_eq!(
            format_instant(june, tz("America/Sao_Paulo"), Lang::En),
            "Thu 4 Jun 2026, 06:00 UTC-03:00 (America/Sao_Paulo)"
        );
    }

    #[test]
    fn a_staff_message_frames_the_staffs_own_text_and_escapes_it_in_html() {
        let t = Templates::load().unwrap();
        let a = args(json!({"title": "Clinic <closed>", "message": "Line one & two\nLine <three>"}));
        let en = t.render("staff-message", Lang::En, &a, chrono_tz::UTC).unwrap();
        assert_eq!(en.subject, "Clinic <closed>");
        assert!(en.text.starts_with("Line one & two\nLine <three>\n\nSent by your care team"), "{:?}", en.text);
        assert!(
            en.html.contains("Clinic &lt;closed&gt;") && en.html.contains("Line one &amp; two<br>\nLine &lt;three&gt;")
        );
        assert!(!en.html.contains("<three>") && !en.html.contains("<closed>"));
        // SMS and push carry the title only.
        assert_eq!(en.sms, "Hearth: Clinic <closed>. Open the app to read the message from your care team.");
        let hi = t.render("staff-message", Lang::Hi, &a, chrono_tz::UTC).unwrap();
        assert!(hi.text.contains("देखभाल टीम") && hi.text.starts_with("Line one"), "{:?}", hi.text);
        assert!(t.render("staff-message", Lang::En, &args(json!({"title": "x"})), chrono_tz::UTC).is_err());
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
