//! Fixture builders for domain values (to be written).
