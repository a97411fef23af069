//! `cargo bench -p engram-envs`: steps/s of every benchmarked env, one thread and all cores.

use std::time::Duration;

use engram_envs::bench::{default_suite, format_row, header, measure};

fn main() {
    // `cargo bench` passes `--bench`; an optional number sets seconds per figure.
    let secs: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1.0);
    let vec_envs = 1024;
    println!("{}", header(vec_envs, rayon::current_num_threads()));
    for (id, kwargs) in default_suite() {
        match measure(id, &kwargs, vec_envs, Duration::from_secs_f64(secs)) {
            Ok(r) => println!("{}", format_row(&r)),
            Err(e) => println!("{id}: {e}"),
        }
    }
}
