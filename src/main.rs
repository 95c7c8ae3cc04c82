//! The `ecs-reconciler` binary: everything lives in the library; see `ecs_reconciler::cli`.

fn main() -> std::process::ExitCode {
    ecs_reconciler::cli::main()
}
