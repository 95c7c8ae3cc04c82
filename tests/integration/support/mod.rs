//! Shared test support: fixture builders and the moto harness.

pub mod fixtures;
pub mod moto;
