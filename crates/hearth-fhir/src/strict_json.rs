//! Rejects JSON objects with duplicate keys, which FHIR JSON forbids and `serde_json` would
//! silently collapse (last one wins) — a resource must never mean something other than what
//! was sent.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Walks a document and fails on the first object that repeats a key.
struct NoDuplicates;

impl<'de> DeserializeSeed<'de> for NoDuplicates {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(NoDuplicates)
    }
}

impl<'de> Visitor<'de> for NoDuplicates {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(NoDuplicates)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate property `{key}`")));
            }
            map.next_value_seed(NoDuplicates)?;
        }
        Ok(())
    }
}

/// `Err(message)` when some object in `bytes` repeats a key (or the JSON is malformed).
pub fn check_no_duplicate_keys(bytes: &[u8]) -> Result<(), String> {
    let mut d = serde_json::Deserializer::from_slice(bytes);
    NoDuplicates.deserialize(&mut d).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_duplicates_at_any_depth() {
        assert!(check_no_duplicate_keys(br#"{"a":1,"b":[{"c":1.50,"d":null}]}"#).is_ok());
        assert!(check_no_duplicate_keys(br#"{"a":1,"a":2}"#).unwrap_err().contains("`a`"));
        assert!(check_no_duplicate_keys(br#"{"x":[{"k":true,"k":false}]}"#).is_err());
    }
}
