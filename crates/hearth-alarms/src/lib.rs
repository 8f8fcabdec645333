//! Hearth alarms (issue 18, item 6), started.
//!
//! Built so far: [`rrule`], a careful subset of RFC 5545 recurrence rules, parsed by our own
//! small parser (no dependency beyond chrono) and expanded in the user's time zone, DST-correct.
//! Not yet: the `/api/v1/alarms` routes, storage, delivery through the outbox and the
//! notifications list (see `docs/EMERGENCY.md`, "Alarms").
#![forbid(unsafe_code)]

pub mod rrule;
