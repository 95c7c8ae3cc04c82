//! The root-cause reads contract on the simulated account (filled in by the sim work).
