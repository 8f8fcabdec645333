//! Hearth self-care (issue 18): a patient's daily companion.
//!
//! Built so far: the early-warning scores ([`scores`], pure: NEWS2 and qSOFA as data with
//! their citations). See `docs/SELFCARE.md` for what is built and what is not yet.
#![forbid(unsafe_code)]

pub mod scores;
pub mod vitals;
