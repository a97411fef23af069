//! Speed of every core: forward+backward over `[B, T]` sequences, and screened memory's per-step
//! cost at different `t`. Run with `cargo bench -p engram-memory --bench cores [-- FILTER…]`.
//!
//! Filters: core names (`lstm gru rims brims brims_paper brims_flat screened screened_gru rims_gru
//! ffm gtrxl rel_lstm`), `per-step` (also run when no name is given), `B=<n>`, and
//! `device=flex|libtorch|cuda` (libtorch's CPU, or its CUDA device 0; both need `--features tch`,
//! see scripts/setup-libtorch.sh). Lines start with the device name.
//! `RAYON_NUM_THREADS=1` runs flex single-threaded (compare with the torch script's `--threads 1`);
//! `BENCH_REPS=<n>` times each case `n` times (default 5, or 3 for the slow ones).
//! It allocates as the `engram` binary and the Python extension do (mimalloc, freed memory kept
//! mapped);
//! `ENGRAM_BENCH_ALLOCATOR=system` allocates as a program that links the library and keeps the
//! system allocator does (glibc's malloc, kept from unmapping by `allocator::keep_freed_memory`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use engram_memory::{
    BaseCoreConfig, BrimsConfig, CellKind, CoreConfig, FfmConfig, GruConfig, GtrxlConfig,
    LstmConfig, ModularConfig, RecurrentCore, RelLstmConfig, RimsConfig, ScreenedConfig,
};

const E: usize = 128;
const H: usize = 128;
const T: usize = 64;

fn cores() -> Vec<(&'static str, CoreConfig)> {
    vec![
        ("lstm", CoreConfig::Lstm(LstmConfig::new(E, H))),
        ("gru", CoreConfig::Gru(GruConfig::new(E, H))),
        (
            "rims",
            CoreConfig::Rims(RimsConfig::new(E, H).with_num_modules(4).with_top_k(2)),
        ),
        (
            "brims",
            CoreConfig::Brims(
                BrimsConfig::new(E)
                    .with_hidden_sizes(vec![H, H])
                    .with_num_modules(vec![4, 4])
                    .with_top_k(vec![2, 2]),
            ),
        ),
        // BRIMs with its defaults, the paper's sizes: 2 × 300 units in 6 and 3 modules, top-k
        // 4 and 2 (its top layer pre-gates step by step through precomposed weights).
        ("brims_paper", CoreConfig::Brims(BrimsConfig::new(E))),
        (
            "brims_flat",
            CoreConfig::Brims(
                BrimsConfig::new(E)
                    .with_hidden_sizes(vec![H, H])
                    .with_num_modules(vec![4, 4])
                    .with_top_k(vec![2, 2])
                    .with_top_down(false),
            ),
        ),
        (
            "screened",
            CoreConfig::Screened(ScreenedConfig::new(BaseCoreConfig::Lstm(LstmConfig::new(
                E, H,
            )))),
        ),
        // The GRU cells: RIMs' modules, and the plain GRU inside screened memory.
        (
            "screened_gru",
            CoreConfig::Screened(ScreenedConfig::new(BaseCoreConfig::Gru(GruConfig::new(
                E, H,
            )))),
        ),
        (
            "rims_gru",
            CoreConfig::Rims(
                RimsConfig::new(E, H)
                    .with_num_modules(4)
                    .with_top_k(2)
                    .with_modular(ModularConfig::new().with_cell(CellKind::Gru)),
            ),
        ),
        // FFM with its defaults: 32 traces × 4 frequencies (as scripts/bench_torch_memory.py).
        ("ffm", CoreConfig::Ffm(FfmConfig::new(E, H))),
        // GTrXL with its defaults: 2 blocks, 4 heads, window 64, feed-forward 4·H (as
        // scripts/bench_torch_memory.py).
        ("gtrxl", CoreConfig::Gtrxl(GtrxlConfig::new(E, H))),
        (
            "rel_lstm",
            CoreConfig::RelLstm(RelLstmConfig::new(E).with_hidden_size(H)),
        ),
    ]
}

/// The process's allocator, picked once at its first allocation: mimalloc, or the system's when
/// `ENGRAM_BENCH_ALLOCATOR=system` (`main` refuses other values).
struct BenchAllocator;

/// 0 before the first allocation, then 1 (mimalloc) or 2 (the system's).
static ALLOCATOR_CHOICE: AtomicU8 = AtomicU8::new(0);

#[global_allocator]
static ALLOCATOR: BenchAllocator = BenchAllocator;

impl BenchAllocator {
    /// Whether the system's allocator serves this process (read from the environment once,
    /// with `getenv`, which does not allocate).
    fn system() -> bool {
        match ALLOCATOR_CHOICE.load(Ordering::Relaxed) {
            0 => {
                // SAFETY: `getenv` reads the environment with a NUL-terminated name; its result
                // is NULL or a NUL-terminated string, read before anything can change it.
                let system = unsafe {
                    let v = libc::getenv(c"ENGRAM_BENCH_ALLOCATOR".as_ptr());
                    !v.is_null() && std::ffi::CStr::from_ptr(v).to_bytes() == b"system"
                };
                ALLOCATOR_CHOICE.store(if system { 2 } else { 1 }, Ordering::Relaxed);
                system
            }
            c => c == 2,
        }
    }

    fn name() -> &'static str {
        if Self::system() {
            "system (glibc, freed memory kept)"
        } else {
            "mimalloc (as the engram binary)"
        }
    }
}

// SAFETY: every call goes to the one allocator picked before the first allocation, so each
// block is freed by the allocator that made it.
unsafe impl GlobalAlloc for BenchAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::system() {
            System.alloc(layout)
        } else {
            mimalloc::MiMalloc.alloc(layout)
        }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::system() {
            System.alloc_zeroed(layout)
        } else {
            mimalloc::MiMalloc.alloc_zeroed(layout)
        }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if Self::system() {
            System.dealloc(ptr, layout)
        } else {
            mimalloc::MiMalloc.dealloc(ptr, layout)
        }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if Self::system() {
            System.realloc(ptr, layout, new_size)
        } else {
            mimalloc::MiMalloc.realloc(ptr, layout, new_size)
        }
    }
}

/// Threads the flex backend's matmuls may use: `RAYON_NUM_THREADS` if set, else all cores.
fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Median of `reps` timings (seconds) of `f`, after one warm-up call.
fn time<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    f();
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    if let Ok(v) = std::env::var("ENGRAM_BENCH_ALLOCATOR") {
        if v != "system" && v != "mimalloc" {
            eprintln!("ENGRAM_BENCH_ALLOCATOR={v}: expected `mimalloc` (the default) or `system`");
            std::process::exit(2);
        }
    }
    // As the `engram` binary: both allocators keep freed memory mapped.
    engram_memory::allocator::keep_freed_memory();
    if !BenchAllocator::system() {
        // SAFETY: sets one of mimalloc's runtime options to a valid value.
        unsafe {
            libmimalloc_sys::mi_option_set(engram_memory::allocator::MIMALLOC_PURGE_DELAY, -1)
        };
    }
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let names: Vec<&String> = filters.iter().filter(|f| !f.contains('=')).collect();
    let wanted = |name: &str| names.is_empty() || names.iter().any(|f| *f == name);
    let backend = filters
        .iter()
        .find_map(|f| f.strip_prefix("device="))
        .unwrap_or("flex");
    let batches: Vec<usize> = {
        let picked: Vec<usize> = filters
            .iter()
            .filter_map(|f| f.strip_prefix("B=").and_then(|b| b.parse().ok()))
            .collect();
        if picked.is_empty() {
            vec![32, 64, 128, 256]
        } else {
            picked
        }
    };
    let device = bench_device(backend).autodiff();
    println!(
        "# {backend}: forward+backward over [B, T={T}], E={E}, H={H}; median ms per sequence batch (threads: {}; allocator: {})",
        threads(),
        BenchAllocator::name()
    );
    for (name, cfg) in cores() {
        if !wanted(name) {
            continue;
        }
        let core = cfg.init(&device).expect("valid bench config");
        for &b in &batches {
            let x = Tensor::<3>::random([b, T, E], Distribution::Uniform(-1.0, 1.0), &device);
            // Five, like scripts/bench_torch_memory.py's default, for the LSTM it is compared with.
            // `BENCH_REPS` overrides the count (longer runs under a profiler).
            let reps = match std::env::var("BENCH_REPS") {
                Ok(r) => r
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n > 0)
                    .unwrap_or_else(|| {
                        eprintln!("BENCH_REPS={r}: expected a whole number of at least 1");
                        std::process::exit(2)
                    }),
                Err(_) if b * T > 8192 && name != "lstm" => 3,
                Err(_) => 5,
            };
            let secs = time(reps, || {
                let state = core.init_state(b, &device);
                let (y, _) = core
                    .forward_sequence(x.clone(), state, None)
                    .expect("shapes");
                let grads = y.mean().backward();
                drop(grads);
                // CUDA runs asynchronously: wait for the backward kernels before stopping the clock.
                device.sync().expect("device sync");
            });
            println!(
                "{backend:<8} {name:<9} B={b:<4} T={T}  fwd+bwd {:>9.2} ms   {:>8.1} µs/step",
                secs * 1e3,
                secs * 1e6 / T as f64
            );
        }
    }
    if backend == "flex" && wanted("per-step") {
        per_step();
    }
}

/// The device a `device=` filter names.
fn bench_device(name: &str) -> Device {
    match name {
        "flex" => Device::flex(),
        #[cfg(feature = "tch")]
        #[allow(deprecated)]
        // burn 0.22 marks burn-tch deprecated; it is still the libtorch route
        "libtorch" => Device::libtorch(),
        #[cfg(feature = "tch")]
        #[allow(deprecated)]
        "cuda" => Device::libtorch_cuda(0),
        #[cfg(not(feature = "tch"))]
        "libtorch" | "cuda" => {
            panic!("device={name} needs `--features tch` (see scripts/setup-libtorch.sh)")
        }
        other => panic!("unknown device={other}; expected flex, libtorch or cuda"),
    }
}

/// The process's peak resident memory so far, in KiB (`getrusage`).
fn peak_rss_kib() -> u64 {
    // SAFETY: `getrusage` writes one `rusage` into the zeroed struct it is given.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage.ru_maxrss as u64
    }
}

/// Screened memory (LSTM inside, ν = 10, ρ = 15, H = 128, B = 32): forward cost per step at
/// different `t`, and forward+backward totals (and the growth of the peak resident memory) for
/// growing `T`.
fn per_step() {
    let plain = Device::flex();
    let cfg = CoreConfig::Screened(ScreenedConfig::new(BaseCoreConfig::Lstm(LstmConfig::new(
        E, H,
    ))));
    let core = cfg.init(&plain).expect("valid config");
    let b = 32;
    let chunk = 100;
    let mut state = core.init_state(b, &plain);
    println!("# screened memory (ν=10, ρ=15, H={H}, B={b}), forward only: µs per step by t");
    let report_at = [0usize, 10, 20, 49];
    for c in 0..50 {
        let x = Tensor::<3>::random([b, chunk, E], Distribution::Uniform(-1.0, 1.0), &plain);
        let s = Instant::now();
        let (_, st) = core.forward_sequence(x, state, None).expect("shapes");
        let el = s.elapsed().as_secs_f64();
        state = st;
        if report_at.contains(&c) {
            println!(
                "screened  t={:>5}..{:<5} {:>8.1} µs/step",
                c * chunk,
                (c + 1) * chunk,
                el * 1e6 / chunk as f64
            );
        }
    }
    let ad = Device::flex().autodiff();
    let core = cfg.init(&ad).expect("valid config");
    println!("# screened memory, forward+backward total by T (linear total: constant µs/step)");
    for t_len in [250usize, 500, 1000, 2000] {
        let x = Tensor::<3>::random([b, t_len, E], Distribution::Uniform(-1.0, 1.0), &ad);
        let rss_before = peak_rss_kib();
        let secs = time(1, || {
            let (y, _) = core
                .forward_sequence(x.clone(), core.init_state(b, &ad), None)
                .expect("shapes");
            drop(y.mean().backward());
        });
        let grown = peak_rss_kib().saturating_sub(rss_before);
        println!(
            "screened  T={t_len:<5} peak RSS grew by {:>8.1} MiB (process peak {:.1} MiB)",
            grown as f64 / 1024.0,
            peak_rss_kib() as f64 / 1024.0
        );
        println!(
            "screened  T={t_len:<5} fwd+bwd {:>9.1} ms  {:>8.1} µs/step",
            secs * 1e3,
            secs * 1e6 / t_len as f64
        );
    }
}
