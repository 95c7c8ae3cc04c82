//! The `ecs-reconciler` binary: everything lives in the library; see `ecs_reconciler::cli`.

/// mimalloc: the controller allocates and frees many small strings per observed task (the
/// SDK's parsing of DescribeTasks above all), where it costs less CPU than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ecs_reconciler::cli::main()
}
