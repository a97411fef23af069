//! Running the `engram` binary from the end-to-end tests.

#![allow(dead_code)]

use std::process::{Command, Output};

/// `engram ARGS`, ready to be given more environment and run.
pub fn engram_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_engram"));
    command.args(args);
    command
}

/// Run `engram ARGS` to completion.
pub fn engram(args: &[&str]) -> Output {
    engram_command(args).output().expect("run engram")
}

/// Stdout then stderr of a finished command, as text.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
