//! The moto harness (to be written).
