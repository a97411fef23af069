//! Process-wide malloc tuning for programs that train: freed buffers stay mapped for reuse.

/// `mi_option_purge_delay` in mimalloc's `mi_option_t` (`mimalloc.h`, v2 and v3), which its Rust
/// binding does not name: programs that allocate through mimalloc (the `engram` binary, the
/// Python extension, the cores bench) set it to `-1`, so that freed memory stays mapped as [`keep_freed_memory`] asks
/// of glibc.
pub const MIMALLOC_PURGE_DELAY: i32 = 15;

/// Largest allocation glibc serves from its heap (and so reuses) once tuned: 32 MiB, its maximum.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const HEAP_ALLOCATION_LIMIT: libc::c_int = 32 << 20;

/// Asks glibc's malloc to keep freed memory for reuse: allocations up to 32 MiB come from its
/// heap, and free heap memory is never handed back to the kernel.
///
/// Training allocates and frees the same multi-megabyte buffers on every update (tensors, the
/// fused kernels' tapes). By default glibc maps each one afresh and unmaps it when freed, so
/// every update page-faults its memory in again: 18 % of the fused LSTM's forward+backward time
/// at B = 256. The cost is that a process keeps its peak heap size. Call it once, first thing in
/// `main`; it overrides `GLIBC_TUNABLES`' malloc thresholds, and it does nothing where the C
/// library is not glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets malloc parameters; it is called with valid option constants.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, HEAP_ALLOCATION_LIMIT);
        libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
    }
}
