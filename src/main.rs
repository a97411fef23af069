//! The `engram` command line: train, resume, eval, environments and benchmarks.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(engram::main_with_args(std::env::args_os()))
}
