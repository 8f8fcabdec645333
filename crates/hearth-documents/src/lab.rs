//! Lab reports into results (issue 22, item 4): a pure parser that finds analyte, value, unit and
//! reference range lines in a document's extracted text, and the analyte catalogue it maps them
//! with (LOINC codes and conventional ↔ SI factors).
//!
//! The catalogue is data: the labunits table (`data/labunits-analytes-loinc.json`, MIT, see
//! `data/README.md`) and `data/lab-names.json` (the spellings reports print, and a few common
//! analytes labunits lacks, each with its source).
//!
//! A line is a result when, read left to right, it is: a name the catalogue knows (optionally
//! after `Serum`/`S.`/`Plasma` and before `Serum`/`Fasting`/`Random`/`Level`, a method in
//! parentheses or a colon), a number (the value; Indian digit grouping `1,50,000` allowed), and a
//! unit either right after the value (after an optional `H`/`L` flag: the Indian "Result Unit
//! Bio. Ref. Interval" columns) or at the end of the line (the US "Result Flag Reference Units"
//! columns). A reference range anywhere after the value is `a - b`, `a-b`, `< b`, `> a`, `≤`/`≥`
//! or `Up to b`, in brackets or not. Lines without a unit, with a non-numeric value (`<0.1`,
//! `Negative`) or with a name the catalogue does not know are left alone: nothing is guessed.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

const LABUNITS: &str = include_str!("../data/labunits-analytes-loinc.json");
const NAMES: &str = include_str!("../data/lab-names.json");

/// One analyte of the catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct Analyte {
    pub loinc: String,
    pub name: String,
    /// The conventional unit (`mg/dL`), as the catalogue writes it.
    pub conventional: String,
    pub si: String,
    /// SI = conventional × factor.
    pub factor: f64,
    /// 0 for blood (serum, plasma, whole blood), 1 for anything else (urine, CSF, cells).
    specimen_rank: u8,
}

#[derive(Deserialize)]
struct LabunitsEntry {
    loinc_num: String,
    name: String,
    #[serde(default)]
    specimen: Vec<String>,
    traditional_units: String,
    conversion_factor: f64,
    si_units: String,
}

#[derive(Deserialize)]
struct NamesFile {
    analytes: Vec<ExtraAnalyte>,
    names: Vec<NameEntry>,
}

#[derive(Deserialize)]
struct ExtraAnalyte {
    loinc: String,
    name: String,
    traditional_units: String,
    si_units: String,
    conversion_factor: f64,
    #[allow(dead_code)]
    source: String,
}

#[derive(Deserialize)]
struct NameEntry {
    loinc: String,
    names: Vec<String>,
    #[allow(dead_code)]
    source: String,
}

/// The analytes and the names that lead to them.
#[derive(Debug)]
pub struct Catalog {
    analytes: Vec<Analyte>,
    /// Normalised name → analytes (indices), explicit names before derived ones.
    names: HashMap<String, Vec<usize>>,
}

/// Lower case, every run of characters other than letters and digits one space.
fn norm(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.ends_with(' ') && !out.is_empty() {
            out.push(' ');
        }
    }
    out.trim_end().to_owned()
}

/// A unit's comparison key: lower case, no spaces, µ/μ/mc as u, IU as U, `% of total Hb` as `%`.
pub fn unit_key(unit: &str) -> String {
    let mut k: String = unit
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .map(|c| if c == 'µ' || c == 'μ' { 'u' } else { c })
        .collect();
    k = k.replace("mcg", "ug").replace("iu", "u").replace("cu.mm", "cumm").replace("mm3", "cumm");
    if k.starts_with('%') {
        return "%".into();
    }
    if let Some(s) = k.strip_suffix("h2o") {
        k = s.to_owned();
    }
    k
}

/// The UCUM code of a unit a report prints, when known.
pub fn ucum(unit: &str) -> Option<&'static str> {
    Some(match unit_key(unit).as_str() {
        "g/dl" => "g/dL",
        "mg/dl" => "mg/dL",
        "mg/l" => "mg/L",
        "g/l" => "g/L",
        "ug/dl" => "ug/dL",
        "ug/l" => "ug/L",
        "ug/ml" => "ug/mL",
        "ng/ml" => "ng/mL",
        "ng/dl" => "ng/dL",
        "pg/ml" => "pg/mL",
        "ng/l" => "ng/L",
        "mmol/l" => "mmol/L",
        "umol/l" => "umol/L",
        "nmol/l" => "nmol/L",
        "pmol/l" => "pmol/L",
        "meq/l" => "meq/L",
        "u/l" => "U/L",
        "u/ml" => "U/mL",
        "ku/l" => "kU/L",
        "mu/l" => "m[IU]/L",
        "mu/ml" => "m[IU]/mL",
        "uu/ml" => "u[IU]/mL",
        "%" => "%",
        "fl" => "fL",
        "pg" => "pg",
        "mosm/kg" => "mosm/kg",
        "mmol/mol" => "mmol/mol",
        "mm/hr" | "mm/h" | "mm/1sthr" => "mm/h",
        "/cumm" | "/ul" | "cells/cumm" | "cells/ul" => "/uL",
        "x10^3/ul" | "10^3/ul" | "thou/ul" | "x10e3/ul" | "10*3/ul" => "10*3/uL",
        "x10^9/l" | "10^9/l" | "x10e9/l" => "10*9/L",
        "x10^6/ul" | "10^6/ul" | "mill/cumm" | "million/cumm" | "x10e6/ul" => "10*6/uL",
        _ => return None,
    })
}

impl Catalog {
    fn load() -> Result<Catalog, String> {
        let labunits: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(LABUNITS).map_err(|e| format!("labunits table: {e}"))?;
        let extra: NamesFile = serde_json::from_str(NAMES).map_err(|e| format!("lab-names.json: {e}"))?;
        let mut analytes = Vec::new();
        let mut derived: Vec<(String, usize)> = Vec::new();
        for (_, v) in labunits {
            let e: LabunitsEntry = serde_json::from_value(v).map_err(|e| format!("labunits entry: {e}"))?;
            let blood = e.specimen.iter().any(|s| matches!(s.as_str(), "serum" | "plasma" | "whole_blood"));
            let i = analytes.len();
            // The full name, the part before a parenthesis, and abbreviations in it: "(ALT, SGPT)".
            derived.push((norm(&e.name), i));
            if let Some((before, rest)) = e.name.split_once('(') {
                derived.push((norm(before), i));
                let inside = rest.split(')').next().unwrap_or_default();
                for part in inside.split(',') {
                    if !part.chars().any(char::is_lowercase) {
                        derived.push((norm(part), i));
                    }
                }
            }
            analytes.push(Analyte {
                loinc: e.loinc_num,
                name: e.name,
                conventional: e.traditional_units,
                si: e.si_units,
                factor: e.conversion_factor,
                specimen_rank: if blood { 0 } else { 1 },
            });
        }
        for a in extra.analytes {
            derived.push((norm(&a.name), analytes.len()));
            analytes.push(Analyte {
                loinc: a.loinc,
                name: a.name,
                conventional: a.traditional_units,
                si: a.si_units,
                factor: a.conversion_factor,
                specimen_rank: 0,
            });
        }
        let mut names: HashMap<String, Vec<usize>> = HashMap::new();
        for entry in extra.names {
            let i = analytes
                .iter()
                .position(|a| a.loinc == entry.loinc)
                .ok_or_else(|| format!("lab-names.json names {} which no analyte has", entry.loinc))?;
            for n in entry.names {
                names.entry(norm(&n)).or_default().push(i);
            }
        }
        let explicit: std::collections::HashSet<String> = names.keys().cloned().collect();
        for (n, i) in derived {
            if n.is_empty() || explicit.contains(&n) {
                continue;
            }
            let list = names.entry(n).or_default();
            if !list.contains(&i) {
                list.push(i);
            }
        }
        Ok(Catalog { analytes, names })
    }

    /// The catalogue built into the binary.
    pub fn builtin() -> Result<&'static Catalog, String> {
        static CATALOG: OnceLock<Result<Catalog, String>> = OnceLock::new();
        CATALOG.get_or_init(Catalog::load).as_ref().map_err(Clone::clone)
    }

    pub fn analyte(&self, loinc: &str) -> Option<&Analyte> {
        self.analytes.iter().find(|a| a.loinc == loinc)
    }

    /// How many analytes the catalogue knows.
    pub fn len(&self) -> usize {
        self.analytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.analytes.is_empty()
    }

    /// `value` in `unit` as the analyte's conventional unit: (value, unit), when the unit is the
    /// conventional or the SI one.
    pub fn to_conventional(&self, loinc: &str, value: f64, unit: &str) -> Option<(f64, String)> {
        let a = self.analyte(loinc)?;
        let k = unit_key(unit);
        if k == unit_key(&a.conventional) {
            Some((value, a.conventional.clone()))
        } else if k == unit_key(&a.si) && a.factor > 0.0 {
            Some((value / a.factor, a.conventional.clone()))
        } else {
            None
        }
    }

    /// The analyte a printed label names, preferring the one whose units match `unit`, then blood.
    fn find(&self, label: &str, unit: &str) -> Option<&Analyte> {
        let k = unit_key(unit);
        for variant in label_variants(label) {
            let Some(list) = self.names.get(&variant) else { continue };
            let candidates: Vec<&Analyte> = list.iter().filter_map(|i| self.analytes.get(*i)).collect();
            let by_unit = candidates.iter().find(|a| unit_key(&a.conventional) == k || unit_key(&a.si) == k);
            let best = by_unit.or_else(|| candidates.iter().min_by_key(|a| a.specimen_rank));
            if let Some(a) = best {
                return Some(a);
            }
        }
        None
    }
}

const LEADING: [&str; 4] = ["serum", "s", "plasma", "sr"];
const TRAILING: [&str; 8] = ["serum", "plasma", "level", "levels", "fasting", "random", "result", "blood"];

/// The normalised forms a label may match: as printed, without parenthesised parts, and with
/// specimen and qualifier words dropped from either end.
fn label_variants(label: &str) -> Vec<String> {
    let mut bases = vec![norm(label)];
    let mut bare = String::new();
    let mut depth = 0u32;
    for c in label.chars() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => bare.push(c),
            _ => {}
        }
    }
    let bare = norm(&bare);
    if !bare.is_empty() && !bases.contains(&bare) {
        bases.push(bare);
    }
    let mut out = Vec::new();
    for base in bases {
        let words: Vec<&str> = base.split(' ').filter(|w| !w.is_empty()).collect();
        for lead in 0..=1usize.min(words.len()) {
            if words.iter().take(lead).any(|w| !LEADING.contains(w)) {
                continue;
            }
            for trail in 0..=2usize.min(words.len().saturating_sub(lead)) {
                let end = words.len() - trail;
                if lead >= end || words.iter().skip(end).any(|w| !TRAILING.contains(w)) {
                    continue;
                }
                let v = words.get(lead..end).unwrap_or_default().join(" ");
                if !out.contains(&v) {
                    out.push(v);
                }
            }
        }
    }
    out
}

/// High or low against the reference range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    High,
    Low,
}

impl Flag {
    /// The HL7 v3 ObservationInterpretation code.
    pub fn code(self) -> &'static str {
        match self {
            Flag::High => "H",
            Flag::Low => "L",
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            Flag::High => "High",
            Flag::Low => "Low",
        }
    }
}

/// One result found in a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    pub loinc: String,
    /// The catalogue's name.
    pub name: String,
    /// The name as the report prints it.
    pub label: String,
    pub value: f64,
    /// The unit as printed.
    pub unit: String,
    pub low: Option<f64>,
    pub high: Option<f64>,
    /// The reference range as printed.
    pub range: Option<String>,
    /// From the range when there is one, else the report's own flag.
    pub flag: Option<Flag>,
    /// 1-based page (pages are separated by form feeds in the text).
    pub page: usize,
}

/// A plain decimal number (`13.2`, `1,50,000`, `0.9`); `None` for anything else.
fn number(token: &str) -> Option<f64> {
    let t = token.trim_end_matches([',', ';']);
    if t.is_empty()
        || t.starts_with(',')
        || !t.chars().all(|c| c.is_ascii_digit() || c == ',' || c == '.')
        || !t.chars().any(|c| c.is_ascii_digit())
    {
        return None;
    }
    t.replace(',', "").parse::<f64>().ok().filter(|v| v.is_finite())
}

fn flag_of(token: &str) -> Option<Flag> {
    match token.trim_matches(['*', '(', ')']).to_ascii_uppercase().as_str() {
        "H" | "HIGH" | "HI" => Some(Flag::High),
        "L" | "LOW" | "LO" => Some(Flag::Low),
        _ => None,
    }
}

fn is_unit(token: &str) -> bool {
    ucum(token).is_some()
}

/// The reference range in `tokens` (after the value): (low, high, how it was printed).
fn range_of(tokens: &[&str]) -> Option<(Option<f64>, Option<f64>, String)> {
    let mut i = 0;
    while let Some(t) = tokens.get(i) {
        let next = tokens.get(i + 1).copied();
        let after = tokens.get(i + 2).copied();
        // a-b in one token
        if let Some((a, b)) = t.split_once(['-', '–'])
            && let (Some(lo), Some(hi)) = (number(a), number(b))
        {
            return Some((Some(lo), Some(hi), (*t).to_owned()));
        }
        if let Some(lo) = number(t) {
            if let (Some("-" | "–" | "to"), Some(hi)) = (next, after.and_then(number)) {
                return Some((Some(lo), Some(hi), format!("{t} - {}", after.unwrap_or_default())));
            }
            if let Some(hi) = next.and_then(|n| n.strip_prefix(['-', '–'])).and_then(number) {
                return Some((Some(lo), Some(hi), format!("{t} - {hi}")));
            }
        }
        for (prefix, upper) in [("<=", true), ("≤", true), ("<", true), (">=", false), ("≥", false), (">", false)] {
            if let Some(rest) = t.strip_prefix(prefix) {
                let (v, shown) = if rest.is_empty() {
                    (next.and_then(number), format!("{prefix} {}", next.unwrap_or_default()))
                } else {
                    (number(rest), (*t).to_owned())
                };
                if let Some(v) = v {
                    return Some(if upper { (None, Some(v), shown) } else { (Some(v), None, shown) });
                }
            }
        }
        let lower = t.to_ascii_lowercase();
        if (lower == "up" && next.is_some_and(|n| n.eq_ignore_ascii_case("to")))
            && let Some(hi) = after.and_then(number)
        {
            return Some((None, Some(hi), format!("Up to {hi}")));
        }
        if lower == "upto"
            && let Some(hi) = next.and_then(number)
        {
            return Some((None, Some(hi), format!("Up to {hi}")));
        }
        i += 1;
    }
    None
}

/// One line as a result, if it is one.
fn parse_line(line: &str, page: usize, catalog: &Catalog) -> Option<Extracted> {
    let raw: Vec<&str> = line.split_whitespace().collect();
    // The value is the first plain number after at least one word; labels keep their brackets.
    let at = raw.iter().enumerate().skip(1).find(|(_, t)| number(t).is_some()).map(|(i, _)| i)?;
    let value = number(raw.get(at)?)?;
    // `13.0 - 17.0` or `13.0 -17.0` with nothing before it is a range, not a value.
    if raw.get(at + 1).is_some_and(|n| *n == "-" || n.strip_prefix('-').and_then(number).is_some()) {
        return None;
    }
    let label = raw.get(..at)?.join(" ");
    // After the value, brackets around a range or a flag do not matter.
    let rest: Vec<&str> =
        raw.get(at + 1..)?.iter().map(|t| t.trim_matches(['(', ')', '[', ']'])).filter(|t| !t.is_empty()).collect();
    let rest = rest.as_slice();
    let mut flag = None;
    let mut k = 0;
    if let Some(f) = rest.first().and_then(|t| flag_of(t)) {
        flag = Some(f);
        k = 1;
    }
    let unit = match rest.get(k) {
        Some(u) if is_unit(u) => (*u).to_owned(),
        _ => match rest.last() {
            Some(u) if is_unit(u) => (*u).to_owned(),
            _ => return None,
        },
    };
    let analyte = catalog.find(&label, &unit)?;
    let range = range_of(rest);
    let (low, high, range_text) = match range {
        Some((l, h, t)) => (l, h, Some(t)),
        None => (None, None, None),
    };
    let computed = match (low, high) {
        (Some(l), _) if value < l => Some(Flag::Low),
        (_, Some(h)) if value > h => Some(Flag::High),
        (None, None) => None,
        _ => None,
    };
    let flag = if low.is_some() || high.is_some() { computed } else { flag };
    Some(Extracted {
        loinc: analyte.loinc.clone(),
        name: analyte.name.clone(),
        label: label.trim_end_matches([':', '-', ' ']).trim().to_owned(),
        value,
        unit,
        low,
        high,
        range: range_text,
        flag,
        page,
    })
}

/// Every result found in `text` (pages separated by form feeds), in reading order; a result
/// printed twice the same way is kept once.
pub fn extract(text: &str, catalog: &Catalog) -> Vec<Extracted> {
    let mut out: Vec<Extracted> = Vec::new();
    for (i, page) in text.split('\u{c}').enumerate() {
        for line in page.lines() {
            if let Some(found) = parse_line(line, i + 1, catalog)
                && !out.iter().any(|o| o.loinc == found.loinc && o.value == found.value && o.unit == found.unit)
            {
                out.push(found);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::float_cmp)]
    use super::*;

    fn one(line: &str) -> Extracted {
        let c = Catalog::builtin().unwrap();
        parse_line(line, 1, c).unwrap_or_else(|| panic!("no result in {line:?}"))
    }

    fn none(line: &str) {
        let c = Catalog::builtin().unwrap();
        assert_eq!(parse_line(line, 1, c), None, "{line:?}");
    }

    #[test]
    fn the_catalogue_loads_with_its_names() {
        let c = Catalog::builtin().unwrap();
        assert_eq!(c.len(), 133 + 10);
        assert_eq!(c.find("SGPT", "U/L").unwrap().loinc, "1742-6");
        assert_eq!(c.find("Alanine aminotransferase", "U/L").unwrap().loinc, "1742-6");
        assert_eq!(c.find("Glucose", "mg/dL").unwrap().loinc, "2345-7", "blood before CSF");
        assert_eq!(c.find("Creatinine", "mg/dL").unwrap().loinc, "2160-0");
        assert_eq!(c.find("Magnesium", "mEq/L").unwrap().loinc, "2601-3", "the code whose unit matches");
        assert_eq!(c.find("Magnesium", "mg/dL").unwrap().loinc, "19123-9");
        assert_eq!(c.find("Calcium", "mg/dL").unwrap().loinc, "17861-6", "total, not ionized");
        assert_eq!(c.find("Epinephrine", "pg/mL").unwrap().loinc, "1465-4");
        assert!(c.find("supine", "pg/mL").is_none(), "a lower-case parenthesis is not a name");
    }

    #[test]
    fn indian_layouts() {
        let e = one("Haemoglobin                      11.2      g/dL         13.0 - 17.0");
        assert_eq!((e.loinc.as_str(), e.value, e.unit.as_str()), ("718-7", 11.2, "g/dL"));
        assert_eq!((e.low, e.high, e.flag), (Some(13.0), Some(17.0), Some(Flag::Low)));
        let e = one("Glycosylated Haemoglobin (HbA1c) : 7.8 % 4.0-5.6");
        assert_eq!((e.loinc.as_str(), e.value, e.flag), ("4548-4", 7.8, Some(Flag::High)));
        assert_eq!(e.label, "Glycosylated Haemoglobin (HbA1c)");
        let e = one("S. Creatinine   88   µmol/L   (62 - 106)");
        assert_eq!((e.loinc.as_str(), e.value, e.unit.as_str(), e.flag), ("2160-0", 88.0, "µmol/L", None));
        let e = one("Fasting Blood Sugar : 126 mg/dL [70 - 100]");
        assert_eq!((e.loinc.as_str(), e.high, e.flag), ("2345-7", Some(100.0), Some(Flag::High)));
        let e = one("SGPT (ALT)  42  U/L  Up to 40");
        assert_eq!((e.loinc.as_str(), e.high, e.flag), ("1742-6", Some(40.0), Some(Flag::High)));
        let e = one("Glucose Fasting (Hexokinase)   5.9   mmol/L   3.9-5.6");
        assert_eq!((e.loinc.as_str(), e.value, e.unit.as_str()), ("2345-7", 5.9, "mmol/L"));
        let e = one("Ferritin 1,250 ng/mL 30 - 400");
        assert_eq!(e.value, 1250.0);
    }

    #[test]
    fn us_layouts() {
        let e = one("GLUCOSE                105    H        65-99            mg/dL");
        assert_eq!((e.loinc.as_str(), e.value, e.unit.as_str(), e.flag), ("2345-7", 105.0, "mg/dL", Some(Flag::High)));
        let e = one("HDL Cholesterol        38     L        >39              mg/dL");
        assert_eq!((e.loinc.as_str(), e.low, e.high, e.flag), ("2085-9", Some(39.0), None, Some(Flag::Low)));
        // A previous result column between the value and the range is not the range.
        let e = one("Sodium, Serum   141   139   134-144   mmol/L");
        assert_eq!((e.loinc.as_str(), e.value, e.low, e.high), ("2951-2", 141.0, Some(134.0), Some(144.0)));
        let e = one("Hemoglobin A1c 6.1 H <5.7 %");
        assert_eq!((e.loinc.as_str(), e.high, e.flag), ("4548-4", Some(5.7), Some(Flag::High)));
        // A flag without a range is the report's own.
        let e = one("Potassium 5.9 H mmol/L");
        assert_eq!((e.flag, e.low), (Some(Flag::High), None));
    }

    #[test]
    fn what_is_not_a_result_is_left_alone() {
        none("Patient: Ram Kumar   Age 54   Sex M");
        none("Reference range 13.0 - 17.0 g/dL");
        none("Haemoglobin  13.0 - 17.0 g/dL");
        none("Glucose 2 hr PP 140 mg/dL 70-140");
        none("Unobtainium 12 mg/dL 1-2");
        none("HbA1c pending");
        none("Urine glucose Negative");
        none("Creatinine 1.1");
    }

    #[test]
    fn pages_and_duplicates() {
        let c = Catalog::builtin().unwrap();
        let text = "Sodium 140 mmol/L 135-145\nSodium 140 mmol/L 135-145\n\u{c}Potassium 4.1 mEq/L 3.5-5.1\n";
        let found = extract(text, c);
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].page, found[1].page), (1, 2));
    }

    #[test]
    fn units_convert_to_the_conventional_one() {
        let c = Catalog::builtin().unwrap();
        let (v, u) = c.to_conventional("2345-7", 5.551, "mmol/L").unwrap();
        assert!((v - 100.0).abs() < 0.01 && u == "mg/dL", "{v} {u}");
        let (v, u) = c.to_conventional("2160-0", 88.4, "µmol/L").unwrap();
        assert!((v - 1.0).abs() < 1e-9 && u == "mg/dL");
        assert_eq!(c.to_conventional("2160-0", 1.0, "mg/dL"), Some((1.0, "mg/dL".into())));
        assert_eq!(c.to_conventional("2160-0", 1.0, "g/L"), None);
        assert_eq!(c.to_conventional("4548-4", 7.0, "%"), Some((7.0, "% of total Hb".into())));
        assert_eq!(ucum("µIU/mL"), Some("u[IU]/mL"));
        assert_eq!(ucum("mcg/dL"), Some("ug/dL"));
        assert_eq!(ucum("furlongs"), None);
    }
}
