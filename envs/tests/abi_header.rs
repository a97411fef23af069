//! The committed C header `envs/include/engram_env.h` is what cbindgen makes of `src/plugin/abi.rs`; `ENGRAM_BLESS_HEADER=1` rewrites it.

#[path = "support/build_plugin.rs"]
mod build_plugin;

use std::path::Path;
use std::process::Command;

const HEADER: &str = "include/engram_env.h";

/// The header cbindgen generates from the ABI module (cbindgen runs as its own program,
/// tests/header-gen, built outside the workspace).
fn generated() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(build_plugin::header_generator())
        .arg(dir.join("src/plugin/abi.rs"))
        .output()
        .expect("run the header generator");
    assert!(
        out.status.success(),
        "the header generator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("cbindgen writes UTF-8")
}

#[test]
fn the_committed_header_matches_the_abi() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(HEADER);
    let fresh = generated();
    if std::env::var_os("ENGRAM_BLESS_HEADER").is_some() {
        std::fs::write(&path, &fresh).expect("write the header");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "envs/{HEADER} is stale: the ABI in src/plugin/abi.rs changed. Regenerate it with \
         `ENGRAM_BLESS_HEADER=1 cargo test -p engram-envs --test abi_header` and commit it \
         (bump ENGRAM_ENV_ABI_VERSION if the change is not backwards compatible)."
    );
}
