//! A small, documented subset of UCUM: enough to compare the quantities of vital signs and
//! laboratory results across units (`185 [lb_av]` = `83.9 kg`, `98.6 [degF]` = `37 Cel`,
//! `1 mg/dL` = `0.01 g/L`).
//!
//! A unit code is converted to a **canonical unit** over base units `m`, `g`, `s`, `mol`, `K`,
//! `U` (enzyme unit), `[IU]` and `eq`, written with exponents and `.` between factors in that
//! order, e.g. `m-3.g` for every mass concentration, `s-1` for every rate, `m3` for volumes,
//! `1` for dimensionless units. Two quantities are comparable exactly when their canonical units
//! are equal.
//!
//! What is understood:
//! - products and quotients of unit atoms: `kg/m2`, `mL/min`, `mmol/L`, `/min`, `10*9/L`,
//!   `g.m-2`, with integer exponents (`m2`, `s-1`);
//! - the metric prefixes `G M k h da d c m u n p f` on `g m s L l mol Pa U eq Hz bar [IU]`;
//! - `min h d wk mo a` (UCUM's mean Julian month and year), `%`, `10*n`/`10^n`, integer factors,
//!   `[lb_av] [oz_av] [in_i] [ft_i] [yd_i] [mi_i] [gal_us] [foz_us] mm[Hg] cm[H2O] [psi] atm`;
//! - annotations (`{beats}/min`, `{cells}/uL`, `mL/min/{1.73_m2}`) are ignored, as UCUM says;
//! - temperature: `K`, and `Cel` / `[degF]` only on their own (they are affine: an offset is
//!   applied, so `Cel/min` is not converted).
//!
//! Not converted (the quantity keeps only its unit as written): anything else, in particular
//! molar ↔ mass units (`mmol/L` ↔ `mg/dL` needs the substance's molar mass), `mEq` ↔ `mmol`
//! (needs the valence), `[IU]` ↔ mass, arbitrary units (`[arb'U]`), and parentheses.

/// Base dimensions, in canonical output order.
const BASES: [&str; 8] = ["m", "g", "s", "mol", "K", "U", "[IU]", "eq"];

type Dims = [i8; 8];

/// How to turn a value in some unit into the canonical unit: `value × factor + offset`.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    /// The canonical unit (see the module docs).
    pub unit: String,
    pub factor: f64,
    pub offset: f64,
}

impl Conversion {
    pub fn apply(&self, value: f64) -> f64 {
        value * self.factor + self.offset
    }
}

/// The conversion of a UCUM code to its canonical unit, if the code is in the supported subset.
pub fn canonical(code: &str) -> Option<Conversion> {
    let code = strip_annotations(code)?;
    let code = code.trim();
    match code {
        "Cel" => return Some(Conversion { unit: "K".into(), factor: 1.0, offset: 273.15 }),
        "[degF]" => return Some(Conversion { unit: "K".into(), factor: 5.0 / 9.0, offset: 459.67 * 5.0 / 9.0 }),
        _ => {}
    }
    if code.contains(['(', ')', ' ']) {
        return None;
    }
    let mut dims: Dims = [0; 8];
    let mut factor = 1.0f64;
    if code.is_empty() {
        return Some(Conversion { unit: "1".into(), factor, offset: 0.0 });
    }
    // Terms are joined by `.` (multiply) or `/` (divide); a leading `/` divides `1`.
    let mut sign = 1i8;
    let mut term = String::new();
    let mut terms: Vec<(i8, String)> = Vec::new();
    let mut in_bracket = false;
    for c in code.chars() {
        match c {
            '[' => {
                in_bracket = true;
                term.push(c);
            }
            ']' => {
                in_bracket = false;
                term.push(c);
            }
            '.' | '/' if !in_bracket => {
                terms.push((sign, std::mem::take(&mut term)));
                sign = if c == '/' { -1 } else { 1 };
            }
            _ => term.push(c),
        }
    }
    terms.push((sign, term));
    for (i, (sign, term)) in terms.iter().enumerate() {
        if term.is_empty() {
            // Only a leading `/` (as in `/min`) may leave an empty term.
            if i == 0 && terms.len() > 1 {
                continue;
            }
            return None;
        }
        let (atom_factor, atom_dims) = term_value(term)?;
        factor *= atom_factor.powi(i32::from(*sign));
        for (d, a) in dims.iter_mut().zip(atom_dims) {
            *d = d.checked_add(a.checked_mul(*sign)?)?;
        }
    }
    if !factor.is_finite() || factor <= 0.0 {
        return None;
    }
    Some(Conversion { unit: format_dims(&dims), factor, offset: 0.0 })
}

/// Removes `{...}` annotations; an annotation standing as a whole term (`{beats}`,
/// `/{1.73_m2}`) becomes `1`, as UCUM reads it. `None` for unbalanced braces.
fn strip_annotations(code: &str) -> Option<String> {
    let mut out = String::with_capacity(code.len());
    let mut depth = 0u32;
    let mut term_start = true;
    for (i, c) in code.char_indices() {
        match c {
            '{' => {
                if depth == 0 {
                    term_start = out.is_empty() || out.ends_with(['.', '/']);
                }
                depth += 1;
            }
            '}' => {
                depth = depth.checked_sub(1)?;
                let next = code.get(i + 1..).and_then(|r| r.chars().next());
                if depth == 0 && term_start && next.is_none_or(|n| n == '.' || n == '/') {
                    out.push('1');
                }
            }
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    (depth == 0).then_some(out)
}

/// One term: an atom with an optional integer exponent (`m2`, `s-1`), or a number (`10*3`, `100`).
fn term_value(term: &str) -> Option<(f64, Dims)> {
    if let Some(power) = term.strip_prefix("10*").or_else(|| term.strip_prefix("10^")) {
        let n: i32 = power.parse().ok()?;
        return Some((10f64.powi(n), [0; 8]));
    }
    // The unity `1` (`1/min`, or what an annotation-only term stands for). Other bare numbers
    // are left out: a code like `265201` is far more likely a non-UCUM code than a factor.
    if term == "1" {
        return Some((1.0, [0; 8]));
    }
    // Split a trailing exponent, but not the digits inside a bracketed atom (`cm[H2O]`).
    let body_end = term
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_digit() || *c == '-' || *c == '+')
        .last()
        .map_or(term.len(), |(i, _)| i);
    let (atom, exponent) = match term.split_at_checked(body_end)? {
        (a, "") => (a, 1i32),
        (a, e) => (a, e.parse().ok()?),
    };
    let (f, d) = atom_value(atom)?;
    let e8 = i8::try_from(exponent).ok()?;
    let mut dims = [0i8; 8];
    for (o, a) in dims.iter_mut().zip(d) {
        *o = a.checked_mul(e8)?;
    }
    Some((f.powi(exponent), dims))
}

const LENGTH: Dims = [1, 0, 0, 0, 0, 0, 0, 0];
const MASS: Dims = [0, 1, 0, 0, 0, 0, 0, 0];
const TIME: Dims = [0, 0, 1, 0, 0, 0, 0, 0];
const AMOUNT: Dims = [0, 0, 0, 1, 0, 0, 0, 0];
const TEMPERATURE: Dims = [0, 0, 0, 0, 1, 0, 0, 0];
const ENZYME: Dims = [0, 0, 0, 0, 0, 1, 0, 0];
const IU: Dims = [0, 0, 0, 0, 0, 0, 1, 0];
const EQUIVALENT: Dims = [0, 0, 0, 0, 0, 0, 0, 1];
const VOLUME: Dims = [3, 0, 0, 0, 0, 0, 0, 0];
const FREQUENCY: Dims = [0, 0, -1, 0, 0, 0, 0, 0];
/// Pa = kg/(m·s²) = 1000 g·m⁻¹·s⁻².
const PRESSURE: Dims = [-1, 1, -2, 0, 0, 0, 0, 0];
const NONE: Dims = [0; 8];

/// Atoms that take no prefix (or whose prefixed forms would be ambiguous).
const FIXED: &[(&str, f64, Dims)] = &[
    ("%", 0.01, NONE),
    ("min", 60.0, TIME),
    ("h", 3600.0, TIME),
    ("d", 86_400.0, TIME),
    ("wk", 604_800.0, TIME),
    ("mo", 2_629_800.0, TIME),
    ("a", 31_557_600.0, TIME),
    ("K", 1.0, TEMPERATURE),
    ("[lb_av]", 453.592_37, MASS),
    ("[oz_av]", 28.349_523_125, MASS),
    ("[in_i]", 0.0254, LENGTH),
    ("[ft_i]", 0.3048, LENGTH),
    ("[yd_i]", 0.9144, LENGTH),
    ("[mi_i]", 1609.344, LENGTH),
    ("[gal_us]", 0.003_785_411_784, VOLUME),
    ("[foz_us]", 0.000_029_573_529_562_5, VOLUME),
    ("mm[Hg]", 133_322.387_415, PRESSURE),
    ("cm[H2O]", 98_066.5, PRESSURE),
    ("[psi]", 6_894_757.293_168, PRESSURE),
    ("atm", 101_325_000.0, PRESSURE),
];

/// Atoms that take metric prefixes: factor to canonical and dimension.
const PREFIXABLE: &[(&str, f64, Dims)] = &[
    ("g", 1.0, MASS),
    ("m", 1.0, LENGTH),
    ("s", 1.0, TIME),
    ("L", 0.001, VOLUME),
    ("l", 0.001, VOLUME),
    ("mol", 1.0, AMOUNT),
    ("Pa", 1000.0, PRESSURE),
    ("bar", 100_000_000.0, PRESSURE),
    ("U", 1.0, ENZYME),
    ("[IU]", 1.0, IU),
    ("[iU]", 1.0, IU),
    ("eq", 1.0, EQUIVALENT),
    ("Hz", 1.0, FREQUENCY),
];

const PREFIXES: &[(&str, f64)] = &[
    ("G", 1e9),
    ("M", 1e6),
    ("k", 1e3),
    ("h", 1e2),
    ("da", 1e1),
    ("d", 1e-1),
    ("c", 1e-2),
    ("m", 1e-3),
    ("u", 1e-6),
    ("n", 1e-9),
    ("p", 1e-12),
    ("f", 1e-15),
];

fn atom_value(atom: &str) -> Option<(f64, Dims)> {
    if let Some((_, f, d)) = FIXED.iter().find(|(name, _, _)| *name == atom) {
        return Some((*f, *d));
    }
    if let Some((_, f, d)) = PREFIXABLE.iter().find(|(name, _, _)| *name == atom) {
        return Some((*f, *d));
    }
    for (prefix, scale) in PREFIXES {
        let Some(rest) = atom.strip_prefix(prefix) else { continue };
        if let Some((_, f, d)) = PREFIXABLE.iter().find(|(name, _, _)| *name == rest) {
            return Some((f * scale, *d));
        }
    }
    None
}

fn format_dims(dims: &Dims) -> String {
    let parts: Vec<String> = BASES
        .iter()
        .zip(dims)
        .filter(|(_, p)| **p != 0)
        .map(|(b, p)| if *p == 1 { (*b).to_string() } else { format!("{b}{p}") })
        .collect();
    if parts.is_empty() { "1".to_string() } else { parts.join(".") }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn conv(code: &str, v: f64) -> (String, f64) {
        let c = canonical(code).unwrap_or_else(|| panic!("{code} should convert"));
        (c.unit.clone(), c.apply(v))
    }

    fn same(a: (&str, f64), b: (&str, f64)) {
        let (ua, va) = conv(a.0, a.1);
        let (ub, vb) = conv(b.0, b.1);
        assert_eq!(ua, ub, "{a:?} vs {b:?}");
        assert!((va - vb).abs() <= 1e-9 * va.abs().max(1.0), "{a:?}={va} vs {b:?}={vb}");
    }

    #[test]
    fn vital_sign_and_lab_units_convert() {
        same(("[lb_av]", 185.0), ("kg", 83.914_588_45));
        same(("g", 1500.0), ("kg", 1.5));
        same(("mg", 1.0), ("ug", 1000.0));
        same(("[in_i]", 70.0), ("cm", 177.8));
        same(("cm", 100.0), ("m", 1.0));
        same(("Cel", 37.0), ("[degF]", 98.6));
        same(("Cel", 0.0), ("K", 273.15));
        same(("mm[Hg]", 120.0), ("kPa", 15.998_686_489_8));
        same(("kPa", 1.0), ("Pa", 1000.0));
        same(("mg/dL", 100.0), ("g/L", 1.0));
        same(("g/dL", 14.0), ("g/L", 140.0));
        same(("ug/mL", 1.0), ("mg/L", 1.0));
        same(("mmol/L", 5.4), ("umol/L", 5400.0));
        same(("mL", 1000.0), ("L", 1.0));
        same(("dL", 10.0), ("L", 1.0));
        same(("min", 1.0), ("s", 60.0));
        same(("h", 2.0), ("min", 120.0));
        same(("/min", 60.0), ("Hz", 1.0));
        same(("{beats}/min", 72.0), ("/min", 72.0));
        same(("{breaths}/min", 16.0), ("/s", 16.0 / 60.0));
        same(("%", 50.0), ("1", 0.5));
        same(("kg/m2", 22.5), ("g/m2", 22_500.0));
        same(("10*3/uL", 7.5), ("10*9/L", 7.5));
        same(("mL/min/{1.73_m2}", 90.0), ("L/s", 0.0015));
        same(("kU/L", 1.0), ("U/mL", 1.0));
        same(("a", 1.0), ("mo", 12.0));
        same(("wk", 1.0), ("d", 7.0));
    }

    #[test]
    fn canonical_units_are_spelled_consistently() {
        assert_eq!(canonical("mg/dL").unwrap().unit, "m-3.g");
        assert_eq!(canonical("kg").unwrap().unit, "g");
        assert_eq!(canonical("mm[Hg]").unwrap().unit, "m-1.g.s-2");
        assert_eq!(canonical("{score}").unwrap().unit, "1");
        assert_eq!(canonical("/min").unwrap().unit, "s-1");
        assert_eq!(canonical("mmol/L").unwrap().unit, "m-3.mol");
    }

    #[test]
    fn unsupported_units_are_not_converted() {
        for code in ["lbs", "[kg]", "265201", "cL/s/(m2)", "Cel/min", "{", "mg/", "m/", "xyz", "[arb'U]", "kg.", "10*a"]
        {
            assert!(canonical(code).is_none(), "{code} should not convert");
        }
        assert_ne!(canonical("mmol/L").unwrap().unit, canonical("mg/dL").unwrap().unit);
        assert_ne!(canonical("meq/L").unwrap().unit, canonical("mmol/L").unwrap().unit);
    }
}
