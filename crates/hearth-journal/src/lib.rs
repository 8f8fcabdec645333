//! Hearth patient journal (issue 20).
#![forbid(unsafe_code)]

pub mod nlp;
pub mod vader;
