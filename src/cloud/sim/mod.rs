//! The simulated ECS account.
