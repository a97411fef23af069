//! With `--features tch`, embeds libtorch's library directory as the binaries' run path, so they start without `LD_LIBRARY_PATH`.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    // torch-sys (`links = "tch"`) reports where it found libtorch; absent without the feature.
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    // A run path is an ELF notion; macOS and Windows find libtorch their own way.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        // RUNPATH, so an `LD_LIBRARY_PATH` that names another libtorch still takes precedence.
        println!("cargo:rustc-link-arg=-Wl,--enable-new-dtags,-rpath,{lib}");
    }
}
