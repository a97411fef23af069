//! The `engram` command line: train, resume, eval, environments and benchmarks.

/// mimalloc: thread-local free lists for the many small allocations of a training loop's
/// minibatches (gemm's packing buffers, the kernels' per-step scratch), which glibc's `malloc`
/// served at 14 % of the BRIMs + screened T-Maze loop.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Freed memory stays mapped for reuse (as `keep_freed_memory` asks of glibc): each update
    // frees and allocates the same multi-megabyte tapes, and mimalloc's default (return it to
    // the kernel 10 ms after it is freed) page-faulted them in again: 3–6 % of the BRIMs +
    // screened loop.
    // SAFETY: sets one of mimalloc's runtime options to a valid value.
    unsafe { libmimalloc_sys::mi_option_set(engram_memory::allocator::MIMALLOC_PURGE_DELAY, -1) };
    std::process::ExitCode::from(engram::main_with_args(std::env::args_os()))
}
