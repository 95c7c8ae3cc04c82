//! history (to be written)
