#!/usr/bin/env bash
# Paired before/after timing of the cores bench on a noisy machine: two bench binaries run
# alternately, round after round, and each (core, batch) gets the median and minimum of its
# per-run medians and the new/old ratios. The unchanged fused LSTM, timed in every run, shows
# the noise floor (its ratio should be 1).
#
# Usage: scripts/bench_ab.sh OLD_BENCH NEW_BENCH [ROUNDS] [THREADS] [FILTER ...]
#   OLD_BENCH, NEW_BENCH  cores bench executables (copy target/release/deps/cores-* after
#                         `cargo bench -p engram-memory --bench cores --no-run`, once per version)
#   ROUNDS   alternations (default 5)      THREADS  RAYON_NUM_THREADS (default 1)
#   FILTER   the bench's filters (default: lstm rims brims screened B=32 B=64)
# Never run it beside a build or a training run.
set -euo pipefail
old="${1:?usage: scripts/bench_ab.sh OLD_BENCH NEW_BENCH [ROUNDS] [THREADS] [FILTER ...]}"
new="${2:?usage: scripts/bench_ab.sh OLD_BENCH NEW_BENCH [ROUNDS] [THREADS] [FILTER ...]}"
rounds="${3:-5}"
threads="${4:-1}"
shift $(($# < 4 ? $# : 4))
filters=("${@:-lstm rims brims screened B=32 B=64}")
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for _ in $(seq "$rounds"); do
    for side in old new; do
        bin="$old"
        [ "$side" = new ] && bin="$new"
        RAYON_NUM_THREADS="$threads" "$bin" ${filters[@]} | awk -v side="$side" '/fwd\+bwd/ {print side, $2, $3, $6}' >> "$out"
    done
done
python3 - "$out" "$rounds" "$threads" <<'EOF'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    side, core, batch, ms = line.split()
    runs[(core, batch, side)].append(float(ms))
print(f"# {sys.argv[2]} alternating rounds, {sys.argv[3]} thread(s); ms per fwd+bwd: median (min) of per-run medians")
print(f"{'core':10} {'batch':6} {'old':>18} {'new':>18} {'new/old median':>15} {'new/old min':>12}")
for (core, batch) in dict.fromkeys((c, b) for c, b, _ in runs):
    o, n = runs[(core, batch, "old")], runs[(core, batch, "new")]
    mo, mn = statistics.median(o), statistics.median(n)
    print(f"{core:10} {batch:6} {mo:9.1f} ({min(o):6.1f}) {mn:9.1f} ({min(n):6.1f}) {mn / mo:15.2f} {min(n) / min(o):12.2f}")
EOF
