//! The `engram` command line: train, resume, eval, environments and benchmarks.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(engram::main_with_args(std::env::args_os()))
}
