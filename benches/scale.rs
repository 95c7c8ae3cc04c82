//! Scale run: the real controller over the simulated account's scale scenario, paced by the
//! API budget at its defaults (half the documented rates), in paused (virtual) tokio time.
//!
//! Prints, per throttle category: calls made, the budget per second, calls per second over the
//! run, and the busiest second; then virtual and wall-clock time. Asserts nothing.
//!
//! ```sh
//! cargo test --bench scale               # small: 4 clusters of 250 tasks, 5 virtual minutes
//! cargo test --bench scale -- --full     # 20 clusters of 500 tasks, 10 virtual minutes
//! cargo bench --bench scale              # full size, release build
//! ```
//!
//! `tests/integration/pacing.rs` includes this file and runs [`scale_run`] at a small size.

use std::sync::Arc;
use std::time::{Duration, Instant as WallInstant, UNIX_EPOCH};

use ecs_reconciler::audit::AuditSink;
use ecs_reconciler::cloud::budget::{ApiBudget, CategoryReport, PacingSettings};
use ecs_reconciler::cloud::sim::build_scale;
use ecs_reconciler::controller::{Controller, ControllerSettings};
use ecs_reconciler::demo::scenario_policies;
use tokio_util::sync::CancellationToken;

/// The size of a scale run.
#[derive(Debug, Clone, Copy)]
pub struct ScaleRun {
    pub clusters: usize,
    pub tasks_per_cluster: usize,
    pub stuck_share: f64,
    pub virtual_time: Duration,
}

/// What a scale run measured.
#[derive(Debug, Clone)]
pub struct ScaleFigures {
    pub run: ScaleRun,
    /// The budget's report at the end (categories with calls only).
    pub categories: Vec<CategoryReport>,
    /// Virtual time the controller ran.
    pub virtual_elapsed: Duration,
    /// Real time the run took.
    pub wall: Duration,
    /// Audit records written, and how many of them are `done`.
    pub audit_records: usize,
    pub done: usize,
}

impl ScaleFigures {
    /// Calls per second of `report` over the whole run.
    pub fn per_second(&self, report: &CategoryReport) -> f64 {
        report.calls as f64 / self.virtual_elapsed.as_secs_f64().max(1.0)
    }

    /// The figures as a table.
    pub fn table(&self) -> String {
        let r = &self.run;
        let mut out = format!(
            "scale run: {} clusters x {} tasks ({}% stuck), controller for {:?} of virtual time\n",
            r.clusters,
            r.tasks_per_cluster,
            r.stuck_share * 100.0,
            r.virtual_time
        );
        out.push_str(&format!(
            "{:<24} {:>8} {:>10} {:>10} {:>10}\n",
            "category", "calls", "budget/s", "run/s", "peak 1s"
        ));
        for c in &self.categories {
            out.push_str(&format!(
                "{:<24} {:>8} {:>10.2} {:>10.2} {:>10}\n",
                c.category.key(),
                c.calls,
                c.budget_per_sec,
                self.per_second(c),
                c.peak_per_sec
            ));
        }
        out.push_str(&format!(
            "audit records: {} ({} done); virtual {:?}; wall-clock {:.2?}\n",
            self.audit_records, self.done, self.virtual_elapsed, self.wall
        ));
        out
    }
}

/// Runs the controller over `build_scale` in a paused current-thread runtime.
pub fn scale_run(run: ScaleRun) -> ScaleFigures {
    let wall = WallInstant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    let mut figures = runtime.block_on(async move {
        let start = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        let budget = Arc::new(ApiBudget::new(&PacingSettings::default()).expect("defaults"));
        let (sim, _) = build_scale(start, run.clusters, run.tasks_per_cluster, run.stuck_share);
        let sim = Arc::new(sim.with_budget(Arc::clone(&budget)));
        let controller = Arc::new(Controller::new(
            Arc::clone(&sim),
            scenario_policies().expect("built-in policies"),
            ControllerSettings {
                resync: Duration::from_secs(30),
                concurrency: 4,
                dry_run: false,
                root_cause_reads: true,
                ..ControllerSettings::default()
            },
            AuditSink::memory(),
        ));
        let began = tokio::time::Instant::now();
        let token = CancellationToken::new();
        let looping = tokio::spawn(Arc::clone(&controller).run(token.clone()));
        tokio::time::sleep(run.virtual_time).await;
        token.cancel();
        let _ = looping.await;
        let virtual_elapsed = began.elapsed();
        let records = controller.audit().records();
        ScaleFigures {
            run,
            categories: budget
                .report()
                .into_iter()
                .filter(|c| c.calls > 0)
                .collect(),
            virtual_elapsed,
            wall: Duration::ZERO,
            audit_records: records.len(),
            done: records
                .iter()
                .filter(|r| r.outcome.to_string() == "done")
                .count(),
        }
    });
    figures.wall = wall.elapsed();
    figures
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: a smoke run.
    let full = args.iter().any(|a| a == "--full" || a == "--bench");
    let run = if full {
        ScaleRun {
            clusters: 20,
            tasks_per_cluster: 500,
            stuck_share: 0.03,
            virtual_time: Duration::from_secs(600),
        }
    } else {
        ScaleRun {
            clusters: 4,
            tasks_per_cluster: 250,
            stuck_share: 0.03,
            virtual_time: Duration::from_secs(300),
        }
    };
    print!("{}", scale_run(run).table());
}
