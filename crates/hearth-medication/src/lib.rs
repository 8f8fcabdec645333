//! Hearth medications (issue 18, items 3 and 4).
//!
//! Built so far: the interaction and allergy checks ([`interactions`], pure: the HL7 PDDI-CDS
//! rules and 176 curated pairs as data, matched by RxNorm code, name or synonym at ingredient
//! level) and the app API over them (`routes.rs`). See `docs/MEDICATION.md` for what is built
//! and what is not yet.
#![forbid(unsafe_code)]

pub mod interactions;
