//! The `engram` command line: train, resume, eval, environments and benchmarks.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    engram_memory::allocator::keep_freed_memory();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
