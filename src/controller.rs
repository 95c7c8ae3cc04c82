//! controller (to be written)
