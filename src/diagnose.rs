//! diagnose (to be written)
