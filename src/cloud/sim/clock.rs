//! The simulated account's virtual clock: wall-clock time derived from tokio's clock.
//!
//! The clock remembers the tokio [`Instant`] at which it was made and the [`SystemTime`] it
//! stands for; `now()` is that start plus the tokio time elapsed since. Under a paused tokio
//! runtime (`#[tokio::test(start_paused = true)]`, `tokio::time::advance`) virtual time moves only
//! when the test moves it; on a normal runtime it follows real time.

use std::time::SystemTime;

use tokio::time::Instant;

/// Maps tokio time onto a wall-clock start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VirtualClock {
    start: SystemTime,
    origin: Instant,
}

impl VirtualClock {
    /// A clock that reads `start` now.
    pub(crate) fn new(start: SystemTime) -> Self {
        VirtualClock {
            start,
            origin: Instant::now(),
        }
    }

    /// The wall-clock time the simulation started at.
    pub(crate) fn start(&self) -> SystemTime {
        self.start
    }

    /// The current virtual wall-clock time.
    pub(crate) fn now(&self) -> SystemTime {
        self.start + self.origin.elapsed()
    }
}
