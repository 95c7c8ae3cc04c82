//! plan (to be written)
