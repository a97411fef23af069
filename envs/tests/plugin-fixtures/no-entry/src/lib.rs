//! A shared library that exports no `engram_env_plugin` entry.

/// Some unrelated export.
#[unsafe(no_mangle)]
pub extern "C" fn not_an_engram_plugin() -> u32 {
    7
}
