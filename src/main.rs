//! The `engram` command line.
fn main() {}
