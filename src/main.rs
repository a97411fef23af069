//! The `engram` command line: train, resume, eval, environments and benchmarks.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    engram_memory::allocator::keep_freed_memory();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        // The reader of our output went away (`engram envs check all | head -1`): not an error.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", message(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes, joined by `: `, leaving out a cause whose text an outer message
/// already quotes (our errors name their I/O cause themselves).
fn message(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}
