//! Table-driven checks over the whole vendored data: every pair of both sets is caught by code
//! and by name, in both orders; known-safe pairs raise nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use hearth_medication::interactions::{Allergy, Drug, Knowledge, Resolved, Severity};

fn kb() -> &'static Knowledge {
    Knowledge::builtin().unwrap()
}

fn rules_between(a: &Drug, b: &Drug) -> Vec<String> {
    let k = kb();
    k.interactions(&[k.resolve(a), k.resolve(b)]).into_iter().map(|f| f.rule).collect()
}

fn caught(rule: &str, a: &Drug, b: &Drug) {
    let ab = rules_between(a, b);
    assert!(ab.iter().any(|r| r == rule), "{rule} not raised for {a:?} + {b:?} (raised {ab:?})");
    let ba = rules_between(b, a);
    assert!(ba.iter().any(|r| r == rule), "{rule} not raised for {b:?} + {a:?} (raised {ba:?})");
}

/// The ingredient value sets behind a rule side (a class expands to its members).
fn ingredient_sets(sets: &[String]) -> Vec<String> {
    sets.iter().flat_map(|s| kb().members(s)).collect()
}

#[test]
fn every_pddi_pair_is_caught_by_every_code_in_both_orders() {
    let k = kb();
    let mut checked = 0;
    for (rule, object, precipitant) in k.pddi_rules() {
        let objects: Vec<&str> = ingredient_sets(object).iter().flat_map(|s| k.codes_of(s)).collect();
        let precipitants: Vec<&str> = ingredient_sets(precipitant).iter().flat_map(|s| k.codes_of(s)).collect();
        assert!(!objects.is_empty() && !precipitants.is_empty(), "{rule}: a side without codes");
        // Every code of each side against every ingredient of the other (one code per ingredient):
        // each code is proven on its own, without checking the full product.
        let first_of = |sets: &[String]| -> Vec<&str> {
            ingredient_sets(sets).iter().filter_map(|s| k.codes_of(s).first().copied()).collect()
        };
        let (first_objects, first_precipitants) = (first_of(object), first_of(precipitant));
        for o in &objects {
            for &p in &first_precipitants {
                caught(rule, &Drug::coded(o), &Drug::coded(p));
                checked += 1;
            }
        }
        for p in &precipitants {
            for &o in &first_objects {
                caught(rule, &Drug::coded(o), &Drug::coded(p));
                checked += 1;
            }
        }
    }
    assert!(checked > 2000, "only {checked} code pairs checked");
}

#[test]
fn every_pddi_pair_is_caught_by_ingredient_name_in_both_orders() {
    let k = kb();
    for (rule, object, precipitant) in k.pddi_rules() {
        for o in ingredient_sets(object) {
            for p in ingredient_sets(precipitant) {
                let on = k.ingredient_name(&o).unwrap();
                let pn = k.ingredient_name(&p).unwrap();
                caught(rule, &Drug::named(on), &Drug::named(pn));
                // Upper case, with a strength and a form, as people write it.
                caught(
                    rule,
                    &Drug::named(&format!("{} 5 mg tablet", on.to_uppercase())),
                    &Drug::named(&format!("{pn} 200 MG")),
                );
            }
        }
    }
}

#[test]
fn every_curated_pair_is_caught_by_every_name_and_synonym_in_both_orders() {
    let mut n = 0;
    for (rule, a, b) in kb().curated_pairs() {
        for x in a {
            for y in b {
                caught(rule, &Drug::named(x), &Drug::named(y));
                n += 1;
            }
        }
    }
    assert_eq!(kb().curated_pairs().count(), 176);
    assert!(n >= 176);
}

#[test]
fn every_curated_pair_with_coded_drugs_is_caught_by_code_in_both_orders() {
    // The curated set names drugs only; a side has codes where one of its names is an ingredient
    // (or class) of the PDDI value sets. Every such pair is checked with every code of each side.
    let k = kb();
    let sets_of = |names: &[String]| -> Vec<String> {
        let mut out = Vec::new();
        for n in names {
            if let Some(s) = k.set_of_term(n) {
                out.push(s.to_owned());
            }
            if let Some(c) = k.class_of_term(n) {
                out.extend(k.members(c));
            }
        }
        out
    };
    let mut pairs = 0;
    for (rule, a, b) in k.curated_pairs() {
        let (sa, sb) = (sets_of(a), sets_of(b));
        if sa.is_empty() || sb.is_empty() {
            continue;
        }
        pairs += 1;
        let (rep_a, rep_b) = (k.codes_of(&sa[0])[0], k.codes_of(&sb[0])[0]);
        for s in &sa {
            for code in k.codes_of(s) {
                caught(rule, &Drug::coded(code), &Drug::coded(rep_b));
            }
        }
        for s in &sb {
            for code in k.codes_of(s) {
                caught(rule, &Drug::coded(rep_a), &Drug::coded(code));
            }
        }
    }
    // Of the 176, these seven have PDDI-coded drugs on both sides (warfarin with aspirin, ibuprofen,
    // naproxen; digoxin with cyclosporine; NSAID pairs…); the rest are matched by name only.
    assert_eq!(pairs, 7, "curated pairs with codes on both sides");
}

#[test]
fn brand_names_and_salts_resolve_to_the_ingredient() {
    caught("pddi-warfarin-nsaids", &Drug::named("Coumadin"), &Drug::named("Advil"));
    caught("pddi-warfarin-nsaids", &Drug::named("Warfarin Sodium 5 MG Oral Tablet"), &Drug::named("Vicoprofen"));
    caught("curated-2", &Drug::named("warfarin sodium"), &Drug::named("Ibuprofen 400 mg tablet"));
}

#[test]
fn known_safe_pairs_raise_nothing() {
    let safe = [
        ("metformin", "amlodipine"),
        ("acetaminophen", "amlodipine"),
        ("metformin", "atorvastatin"),
        ("levothyroxine", "amlodipine"),
        ("lisinopril", "metformin"),
        ("omeprazole", "metformin"),
        ("digoxin", "omeprazole"),
        ("warfarin", "metformin"),
        ("amoxicillin", "metformin"),
        ("sertraline", "metformin"),
        ("acetaminophen", "lisinopril"),
        ("ibuprofen", "metformin"),
        ("cetirizine", "ibuprofen"),
    ];
    for (a, b) in safe {
        assert_eq!(rules_between(&Drug::named(a), &Drug::named(b)), Vec::<String>::new(), "{a} + {b}");
        assert_eq!(rules_between(&Drug::named(b), &Drug::named(a)), Vec::<String>::new(), "{b} + {a}");
    }
    // Topical diclofenac: the PDDI rule says no special precautions with warfarin.
    let k = kb();
    let topical = k.codes_of("valueset-topicaldiclofenac");
    assert!(!topical.is_empty());
    for code in topical {
        assert_eq!(rules_between(&Drug::coded("11289"), &Drug::coded(code)), Vec::<String>::new(), "warfarin + {code}");
    }
    // Unknown drugs meet nothing and say so.
    assert!(k.resolve(&Drug::named("zzzz-not-a-drug")).is_unknown());
    assert!(k.resolve(&Drug::coded("99999999")).is_unknown());
}

#[test]
fn pddi_modifiers_come_from_the_rest_of_the_list() {
    let k = kb();
    let meds: Vec<Resolved> =
        ["warfarin", "ibuprofen", "omeprazole", "prednisone"].iter().map(|n| k.resolve(&Drug::named(n))).collect();
    let f = k.interactions(&meds).into_iter().find(|f| f.rule == "pddi-warfarin-nsaids").unwrap();
    assert_eq!((f.a, f.b, f.severity), (0, Some(1), Severity::Danger));
    assert_eq!(f.modifiers.len(), 2, "{:?}", f.modifiers);
    assert!(f.modifiers[0].contains("proton pump inhibitor"));
    assert!(f.modifiers[1].contains("corticosteroid"));
}

fn allergy(name: &str, low: bool) -> Allergy {
    Allergy { id: "a1".into(), substance: kb().resolve(&Drug::named(name)), low_criticality: low }
}

#[test]
fn allergy_to_a_substance_or_its_class() {
    let k = kb();
    let advil = k.resolve(&Drug::coded("153010"));
    let found = k.allergies(0, &advil, &[allergy("Ibuprofen", false)]);
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].rule.as_str(), found[0].severity), ("allergy-substance", Severity::Danger));
    let naproxen = k.resolve(&Drug::named("naproxen 250 mg"));
    let found = k.allergies(2, &naproxen, &[allergy("NSAID", true)]);
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].rule.as_str(), found[0].severity, found[0].a), ("allergy-class", Severity::Warning, 2));
    // Another member of the class is not inferred from an allergy to one ingredient.
    assert!(k.allergies(0, &naproxen, &[allergy("ibuprofen", false)]).is_empty());
    assert!(k.allergies(0, &advil, &[allergy("penicillin", false)]).is_empty());
    // By name only (no value set knows amoxicillin): the curated name is the substance.
    let amox = k.resolve(&Drug::named("Amoxicillin 500 mg capsule"));
    assert_eq!(k.allergies(0, &amox, &[allergy("amoxicillin", false)]).len(), 1);
}
