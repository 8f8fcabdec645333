//! Every NEWS2 (385) and qSOFA (80) vector of `data/news2-qsofa-vectors.json` (see `data/README.md`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use hearth_selfcare::scores::{Acvpu, EarlyWarning, Mentation, News2Input, News2Risk, QsofaInput};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("../data/news2-qsofa-vectors.json")).unwrap()
}

fn acvpu(s: &str) -> Acvpu {
    match s {
        "A" => Acvpu::A,
        "C" => Acvpu::C,
        "V" => Acvpu::V,
        "P" => Acvpu::P,
        "U" => Acvpu::U,
        other => panic!("unknown ACVPU {other}"),
    }
}

#[test]
fn news2_matches_all_385_vectors() {
    let rules = EarlyWarning::builtin().unwrap();
    let all = vectors();
    let cases = all["news2"].as_array().unwrap();
    assert_eq!(cases.len(), 385);
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let inp = &case["input"];
        let input = News2Input {
            respiratory_rate: inp["respiratory_rate"].as_f64().unwrap(),
            spo2: inp["spo2"].as_f64().unwrap(),
            on_oxygen: inp["on_oxygen"].as_bool().unwrap(),
            systolic_bp: inp["systolic_bp"].as_f64().unwrap(),
            heart_rate: inp["heart_rate"].as_f64().unwrap(),
            consciousness: acvpu(inp["consciousness"].as_str().unwrap()),
            temperature_c: inp["temperature"].as_f64().unwrap(),
            spo2_scale2: inp["use_spo2_scale2"].as_bool().unwrap(),
        };
        let got = rules.news2(&input).unwrap();
        let exp = &case["expected"];
        let sub = &exp["sub"];
        let p = got.parts;
        let got_parts =
            [p.respiratory_rate, p.spo2, p.air_or_oxygen, p.systolic_bp, p.heart_rate, p.consciousness, p.temperature];
        let exp_parts: Vec<u8> = ["rr", "spo2", "o2", "sbp", "hr", "consciousness", "temp"]
            .iter()
            .map(|k| u8::try_from(sub[*k].as_u64().unwrap()).unwrap())
            .collect();
        // The vectors merge the chart's "low-medium" (a single 3 below 5) into "Medium".
        let risk = match got.risk {
            News2Risk::Low => "Low",
            News2Risk::LowMedium | News2Risk::Medium => "Medium",
            News2Risk::High => "High",
        };
        if u64::from(got.total) != exp["total"].as_u64().unwrap()
            || u64::from(got.max_single_parameter) != exp["max_single_parameter"].as_u64().unwrap()
            || risk != exp["risk"].as_str().unwrap()
            || got_parts.as_slice() != exp_parts.as_slice()
        {
            failures.push(format!("#{i} {inp}: got {got:?}, expected {exp}"));
        }
        if got.risk == News2Risk::LowMedium {
            assert!(got.total < 5 && got.max_single_parameter == 3, "#{i}");
        }
    }
    assert!(failures.is_empty(), "{} of 385 differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn qsofa_matches_all_80_vectors() {
    let rules = EarlyWarning::builtin().unwrap();
    let all = vectors();
    let cases = all["qsofa"].as_array().unwrap();
    assert_eq!(cases.len(), 80);
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let inp = &case["input"];
        let input = QsofaInput {
            respiratory_rate: inp["respiratory_rate"].as_f64().unwrap(),
            systolic_bp: inp["systolic_bp"].as_f64().unwrap(),
            mentation: Mentation::Gcs(u8::try_from(inp["gcs"].as_u64().unwrap()).unwrap()),
        };
        let got = rules.qsofa(&input).unwrap();
        let exp = &case["expected"];
        if u64::from(got.total) != exp["total"].as_u64().unwrap()
            || got.sepsis_alert != exp["sepsis_alert"].as_bool().unwrap()
        {
            failures.push(format!("#{i} {inp}: got {got:?}, expected {exp}"));
        }
    }
    assert!(failures.is_empty(), "{} of 80 differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn qsofa_counts_anything_but_alert_as_altered_mentation() {
    let rules = EarlyWarning::builtin().unwrap();
    let q = |a| {
        rules
            .qsofa(&QsofaInput { respiratory_rate: 12.0, systolic_bp: 130.0, mentation: Mentation::Acvpu(a) })
            .unwrap()
            .total
    };
    assert_eq!(q(Acvpu::A), 0);
    for a in [Acvpu::C, Acvpu::V, Acvpu::P, Acvpu::U] {
        assert_eq!(q(a), 1);
    }
}
