//! The screens' texts: Project Fluent catalogues (`locales/en.ftl`, `locales/hi.ftl`), the same
//! mechanism as the notification templates (`hearth_notify::templates`). Every message is a plain
//! text without arguments, so each is formatted once at start-up; a page gets its language's
//! whole table (the script's texts travel with the page as a JSON data block).

use std::collections::BTreeMap;

use fluent_bundle::{FluentBundle, FluentResource};
pub use hearth_notify::templates::Lang;

/// A catalogue that does not parse or holds a message that does not format.
#[derive(Debug)]
pub struct CatalogueError(pub String);

impl std::fmt::Display for CatalogueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "web catalogue: {}", self.0)
    }
}

impl std::error::Error for CatalogueError {}

/// Every text of the screens, per language.
#[derive(Debug, Clone)]
pub struct Catalogue {
    en: BTreeMap<String, String>,
    hi: BTreeMap<String, String>,
}

fn table(lang: Lang, source: &str) -> Result<BTreeMap<String, String>, CatalogueError> {
    let name = lang.as_str();
    let resource =
        FluentResource::try_new(source.to_owned()).map_err(|(_, e)| CatalogueError(format!("{name}: {e:?}")))?;
    let id: unic_langid::LanguageIdentifier = name.parse().map_err(|e| CatalogueError(format!("{name}: {e:?}")))?;
    let mut bundle = FluentBundle::new(vec![id]);
    bundle.set_use_isolating(false);
    // A message starts a line with its identifier (continuation lines are indented, comments
    // start with `#`); every one found must then format.
    let ids: Vec<String> = source
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_alphabetic()))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_owned()))
        .collect();
    bundle.add_resource(resource).map_err(|e| CatalogueError(format!("{name}: {e:?}")))?;
    let mut out = BTreeMap::new();
    for key in ids {
        let pattern = bundle
            .get_message(&key)
            .and_then(|m| m.value())
            .ok_or_else(|| CatalogueError(format!("{name}: {key} has no value")))?;
        let mut errors = Vec::new();
        let text = bundle.format_pattern(pattern, None, &mut errors).into_owned();
        if !errors.is_empty() {
            return Err(CatalogueError(format!("{name}: {key}: {errors:?}")));
        }
        out.insert(key, text);
    }
    Ok(out)
}

impl Catalogue {
    /// Parses both catalogues; English and Hindi must have the same keys.
    pub fn load() -> Result<Catalogue, CatalogueError> {
        let en = table(Lang::En, include_str!("../locales/en.ftl"))?;
        let hi = table(Lang::Hi, include_str!("../locales/hi.ftl"))?;
        let missing: Vec<&String> =
            en.keys().filter(|k| !hi.contains_key(*k)).chain(hi.keys().filter(|k| !en.contains_key(*k))).collect();
        if !missing.is_empty() {
            return Err(CatalogueError(format!("keys not in both languages: {missing:?}")));
        }
        Ok(Catalogue { en, hi })
    }

    /// The language's table.
    pub fn texts(&self, lang: Lang) -> &BTreeMap<String, String> {
        match lang {
            Lang::En => &self.en,
            Lang::Hi => &self.hi,
        }
    }

    /// One text; a missing key shows as itself (a unit test keeps the pages' keys present).
    pub fn get<'a>(&'a self, lang: Lang, key: &'a str) -> &'a str {
        self.texts(lang).get(key).map_or(key, String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_catalogues_load_with_the_same_keys_and_differ_in_language() {
        let c = Catalogue::load().unwrap();
        assert_eq!(c.texts(Lang::En).len(), c.texts(Lang::Hi).len());
        assert_eq!(c.get(Lang::En, "sign-out"), "Sign out");
        assert_eq!(c.get(Lang::Hi, "sign-out"), "साइन आउट");
        assert_eq!(c.get(Lang::En, "no-such-key"), "no-such-key");
    }
}
