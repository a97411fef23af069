//! The `engram` command line as a library: the binary and the Python package (`python -m engram`, `engram.train`) run this same code.

pub mod cli;

use std::ffi::OsString;

use clap::Parser;

/// Parse `args` (the program name first) and run the command; the process exit status.
///
/// Errors are printed to stderr as `error: …` (the message and its causes); a help or usage
/// error is printed as clap prints it. Nothing here exits the process.
pub fn main_with_args<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    engram_memory::allocator::keep_freed_memory();
    let args = match cli::Cli::try_parse_from(args) {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return u8::try_from(e.exit_code()).unwrap_or(2);
        }
    };
    match cli::run(args) {
        Ok(code) => code,
        // The reader of our output went away (`engram envs check all | head -1`): not an error.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            0
        }
        Err(e) => {
            eprintln!("error: {}", error_message(&e));
            1
        }
    }
}

/// The error and its causes, joined by `: `, leaving out a cause whose text an outer message
/// already quotes (our errors name their I/O cause themselves).
pub fn error_message(e: &anyhow::Error) -> String {
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
