//! Placeholder replaced below once the vendored example list is known.
