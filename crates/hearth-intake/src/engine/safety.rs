//! The message shown to the patient, in their language, when the assessment is an emergency.

use serde::{Deserialize, Serialize};

use super::{Assessment, Language, Urgency};

/// Numbers the safety message gives. The defaults are India's: 112 (all emergencies) and
/// 108 (ambulance); a deployment elsewhere or with a local service replaces them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafetyConfig {
    /// The general emergency number.
    pub emergency_number: String,
    /// The ambulance number, if different.
    pub ambulance_number: Option<String>,
}

impl Default for SafetyConfig {
    fn default() -> Self {
        SafetyConfig { emergency_number: "112".to_owned(), ambulance_number: Some("108".to_owned()) }
    }
}

/// The emergency safety message in `language`, naming the configured numbers.
pub fn safety_message(language: Language, config: &SafetyConfig) -> String {
    let n = config.emergency_number.trim();
    let ambulance = config.ambulance_number.as_deref().map(str::trim).filter(|a| !a.is_empty() && *a != n);
    match (language, ambulance) {
        (Language::En, Some(a)) => format!(
            "Your answers suggest you may need emergency care. Call {n} now (or {a} for an ambulance), or go to the nearest emergency department. Do not wait for your appointment, and do not drive yourself."
        ),
        (Language::En, None) => format!(
            "Your answers suggest you may need emergency care. Call {n} now, or go to the nearest emergency department. Do not wait for your appointment, and do not drive yourself."
        ),
        (Language::Hi, Some(a)) => format!(
            "आपके जवाबों से लगता है कि आपको तुरंत आपातकालीन इलाज की ज़रूरत हो सकती है। अभी {n} पर कॉल करें (एम्बुलेंस के लिए {a}), या सबसे पास के अस्पताल की इमरजेंसी में जाएँ। अपॉइंटमेंट का इंतज़ार न करें और खुद गाड़ी चलाकर न जाएँ।"
        ),
        (Language::Hi, None) => format!(
            "आपके जवाबों से लगता है कि आपको तुरंत आपातकालीन इलाज की ज़रूरत हो सकती है। अभी {n} पर कॉल करें, या सबसे पास के अस्पताल की इमरजेंसी में जाएँ। अपॉइंटमेंट का इंतज़ार न करें और खुद गाड़ी चलाकर न जाएँ।"
        ),
        (Language::HiLatn, Some(a)) => format!(
            "Aapke jawabon se lagta hai ki aapko turant emergency ilaaj ki zarurat ho sakti hai. Abhi {n} par call karein (ambulance ke liye {a}), ya sabse paas ke hospital ki emergency mein jaayein. Appointment ka intezaar na karein aur khud gaadi chala kar na jaayein."
        ),
        (Language::HiLatn, None) => format!(
            "Aapke jawabon se lagta hai ki aapko turant emergency ilaaj ki zarurat ho sakti hai. Abhi {n} par call karein, ya sabse paas ke hospital ki emergency mein jaayein. Appointment ka intezaar na karein aur khud gaadi chala kar na jaayein."
        ),
    }
}

impl Assessment {
    /// The safety message for this assessment: `Some` exactly when it is an emergency.
    pub fn safety_message(&self, config: &SafetyConfig) -> Option<String> {
        (self.urgency == Urgency::Emergency).then(|| safety_message(self.language, config))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{Engine, Facts, Intake};
    use super::*;

    #[test]
    fn default_message_names_112_and_108_in_each_language() {
        for lang in [Language::En, Language::Hi, Language::HiLatn] {
            let m = safety_message(lang, &SafetyConfig::default());
            assert!(m.contains("112") && m.contains("108"), "{m}");
        }
        assert!(safety_message(Language::Hi, &SafetyConfig::default()).contains("एम्बुलेंस"));
        assert!(safety_message(Language::HiLatn, &SafetyConfig::default()).contains("turant"));
    }

    #[test]
    fn the_number_is_configurable() {
        let config = SafetyConfig { emergency_number: "999".to_owned(), ambulance_number: None };
        let m = safety_message(Language::En, &config);
        assert!(m.contains("999") && !m.contains("112") && !m.contains("108"), "{m}");
    }

    #[test]
    fn only_an_emergency_gets_the_message() {
        let engine = Engine::builtin().unwrap();
        let run = |text: &str| {
            engine.assess(&Intake { language: Language::HiLatn, text: text.to_owned(), facts: Facts::default() })
        };
        let emergency = run("seene me dard aur pasina aa raha hai");
        assert_eq!(emergency.urgency, Urgency::Emergency);
        assert!(emergency.safety_message(&SafetyConfig::default()).unwrap().contains("Abhi 112"));
        assert_eq!(run("halka sir dard").safety_message(&SafetyConfig::default()), None);
    }
}
