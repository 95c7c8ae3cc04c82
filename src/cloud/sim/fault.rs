//! Test-only faults of the simulated account that no real account has: a bug in the process
//! itself, struck inside a call. They exist to test supervision (a panicking reconcile, a task
//! stuck forever, a runtime thread blocked in a system call); the binary reaches them only
//! through the hidden `run --sim SCENARIO --sim-fault FAULT` flag, never on AWS.

use std::fmt;
use std::str::FromStr;

/// What every `observe_cluster` call of the account does instead of answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimFault {
    /// Panics (`panic-observe`).
    PanicOnObserve,
    /// Never returns, without blocking the thread (`hang-observe`).
    HangOnObserve,
    /// Blocks the calling thread forever, as a write to a pipe nobody reads does
    /// (`block-observe`).
    BlockOnObserve,
}

const NAMES: [(&str, SimFault); 3] = [
    ("panic-observe", SimFault::PanicOnObserve),
    ("hang-observe", SimFault::HangOnObserve),
    ("block-observe", SimFault::BlockOnObserve),
];

impl SimFault {
    /// Strikes, in an `observe_cluster` of `cluster`.
    pub(crate) async fn strike(self, cluster: &str) {
        tracing::warn!("simulated fault {self} strikes in observe_cluster({cluster})");
        match self {
            SimFault::PanicOnObserve => {
                panic!("simulated fault {self}: observe_cluster({cluster}) panics")
            }
            SimFault::HangOnObserve => std::future::pending().await,
            SimFault::BlockOnObserve => loop {
                std::thread::park();
            },
        }
    }
}

impl fmt::Display for SimFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = NAMES
            .iter()
            .find(|(_, fault)| fault == self)
            .map_or("?", |(name, _)| name);
        f.write_str(name)
    }
}

impl FromStr for SimFault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        NAMES
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, fault)| *fault)
            .ok_or_else(|| {
                let known: Vec<&str> = NAMES.iter().map(|(name, _)| *name).collect();
                format!("unknown simulated fault {s}; known: {}", known.join(", "))
            })
    }
}
