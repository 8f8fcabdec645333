//! Hostile input must yield errors, never panics or stack overflows.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use hearth_fhirpath::{Context, DateTime, parse};
use serde_json::json;

fn ctx() -> Context<'static> {
    Context::new(DateTime::parse("2024-05-01T12:00:00Z").unwrap())
}

/// Runs `f` on a thread with a 2 MiB stack, the size of a Tokio worker thread.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new().stack_size(2 << 20).spawn(f).unwrap().join().expect("no panic or overflow");
}

#[test]
fn deep_parentheses_are_rejected() {
    on_small_stack(|| {
        let parens = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(parse(&parens).is_err());
    });
}

#[test]
fn long_chains_are_rejected() {
    on_small_stack(|| {
        let chain = format!("Patient{}", ".name".repeat(100_000));
        assert!(parse(&chain).is_err());
        let sum = vec!["1"; 100_000].join("+");
        assert!(parse(&sum).is_err());
    });
}

#[test]
fn deep_calls_are_rejected() {
    on_small_stack(|| {
        let wheres = format!("{}true{}", "where(".repeat(5000), ")".repeat(5000));
        assert!(parse(&wheres).is_err());
    });
}

#[test]
fn deep_unary_is_rejected() {
    on_small_stack(|| {
        let unary = format!("{}1", "-".repeat(100_000));
        assert!(parse(&unary).is_err());
    });
}

#[test]
fn moderately_deep_expressions_evaluate_on_a_small_stack() {
    on_small_stack(|| {
        let p = json!({"resourceType": "Patient", "name": [{"given": ["a"]}]});
        // The deepest nesting the parser accepts must evaluate safely.
        let mut depth = 1;
        let mut deepest = None;
        while let Ok(e) = parse(&format!("{}name{}", "name.where(".repeat(depth), ".exists())".repeat(depth))) {
            deepest = Some(e);
            depth += 1;
        }
        assert!(depth > 15, "realistic nesting must parse (got {depth})");
        let _ = deepest.unwrap().evaluate(&ctx(), &p);
        let mut n = 2;
        let mut longest = None;
        while let Ok(e) = parse(&vec!["1"; n].join(" + ")) {
            longest = Some(e);
            n += 1;
        }
        assert!(n > 40, "realistic operator chains must parse (got {n})");
        assert_eq!(longest.unwrap().evaluate(&ctx(), &p).unwrap().len(), 1);
        let mut n = 2;
        let mut iifs = None;
        while let Ok(e) = parse(&format!("{}1{}", "iif(true, ".repeat(n), ", 0)".repeat(n))) {
            iifs = Some(e);
            n += 1;
        }
        assert_eq!(iifs.unwrap().evaluate(&ctx(), &p).unwrap().len(), 1);
    });
}

#[test]
fn garbage_never_panics() {
    let pieces = [
        "Patient",
        ".",
        "name",
        "(",
        ")",
        "[",
        "]",
        "'x'",
        "1",
        "2.5",
        "@2020",
        "@T10:00",
        "%resource",
        "$this",
        "where",
        "select",
        "|",
        "and",
        "or",
        "implies",
        "=",
        "~",
        "!=",
        "<",
        ">=",
        "+",
        "-",
        "*",
        "/",
        "div",
        "mod",
        "&",
        "is",
        "as",
        "Quantity",
        "{",
        "}",
        ",",
        "'mg'",
        "year",
        "`x`",
        "iif",
        "aggregate",
        "$total",
        "repeat",
        "descendants()",
        "resolve()",
        "toString()",
        "\\",
        "'\\u12",
        "/*",
        "//",
        "@",
        "%",
        "$",
        "!",
        "#",
        "\u{1F600}",
        "é",
    ];
    let p = json!({"resourceType": "Patient", "name": [{"given": ["a", "b"], "family": "c"}],
        "birthDate": "2000-01-01", "_birthDate": {"extension": [{"url": "u", "valueString": "v"}]}});
    let ctx = ctx();
    // A fixed linear congruential sequence: reproducible, no dependency.
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 0..20_000 {
        let mut src = String::new();
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let len = (state >> 60) as usize + 1;
        for _ in 0..len {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            src.push_str(pieces[(state >> 33) as usize % pieces.len()]);
            if state & 1 == 0 {
                src.push(' ');
            }
        }
        if let Ok(e) = parse(&src) {
            let _ = e.evaluate(&ctx, &p);
        }
    }
}

#[test]
fn runaway_repeat_is_bounded() {
    let p = json!({"resourceType": "Patient"});
    let e = parse("(1 | 2).repeat($this + 1)").unwrap();
    assert!(e.evaluate(&ctx(), &p).is_err());
}

#[test]
fn descendants_of_a_large_bundle_are_not_capped() {
    let entries: Vec<_> = (0..30_000)
        .map(|i| json!({"resource": {"resourceType": "Patient", "id": format!("p{i}"), "active": true}}))
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": entries});
    let e = parse("Bundle.descendants().count()").unwrap();
    let out = e.evaluate(&ctx(), &bundle).unwrap();
    // entry + resource + id + active per entry, plus `type`.
    assert_eq!(out[0].to_json(), json!(120_001));
    let e = parse("Bundle.entry.resource.distinct().count()").unwrap();
    assert_eq!(e.evaluate(&ctx(), &bundle).unwrap()[0].to_json(), json!(30_000));
}
