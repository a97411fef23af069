#!/usr/bin/env bash
# Learner forward+backward of every core on flex, on libtorch's CPU and (LSTM/GRU) on PyTorch itself, in one run.
#
#     scripts/bench_backends.sh [B…]        # default B = 64; E = H = 128, T = 64 (memory/benches/cores.rs)
#
# Installs/uses libtorch through scripts/setup-libtorch.sh, builds the cores bench with
# `--features tch` (bench profile: release + thin LTO), runs it on both devices, then
# scripts/bench_torch_memory.py in the same venv's PyTorch with as many threads as cores, and
# prints a table of medians and ratios. Run it on a quiet machine: other builds skew the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

BATCHES=("${@:-64}")
THREADS="$(nproc)"
# shellcheck source=scripts/setup-libtorch.sh
source scripts/setup-libtorch.sh

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
filters=()
for b in "${BATCHES[@]}"; do filters+=("B=$b"); done
cores=(lstm gru rims brims screened rel_lstm)

cargo bench -p engram-memory --features tch --bench cores --no-run
echo "# load before the run: $(uptime)"
for dev in flex libtorch; do
    cargo bench -q -p engram-memory --features tch --bench cores -- "device=$dev" "${filters[@]}" "${cores[@]}" \
        | tee "$OUT/$dev.txt"
done
python scripts/bench_torch_memory.py --threads "$THREADS" --batches "${BATCHES[@]}" --cores lstm gru \
    | tee "$OUT/torch.txt"
echo "# load after the run: $(uptime)"

python - "$OUT" <<'PY'
import re, sys
from pathlib import Path
out = Path(sys.argv[1])
ms = {}
for dev in ("flex", "libtorch"):
    for line in (out / f"{dev}.txt").read_text().splitlines():
        m = re.match(r"(\w+)\s+(\w+)\s+B=(\d+)\s+T=\d+\s+fwd\+bwd\s+([\d.]+) ms", line)
        if m:
            ms[(m[2], int(m[3]), dev)] = float(m[4])
for line in (out / "torch.txt").read_text().splitlines():
    m = re.match(r"torch (LSTM|GRU)Cell-loop\s+B=(\d+).*fwd\+bwd\s+([\d.]+) ms", line)
    if m:
        ms[(m[1].lower(), int(m[2]), "cell")] = float(m[3])
    m = re.match(r"torch nn\.(LSTM|GRU)\s+B=(\d+).*fwd\+bwd\s+([\d.]+) ms", line)
    if m:
        ms[(m[1].lower(), int(m[2]), "fused")] = float(m[3])
def f(v):
    return "—" if v is None else f"{v:.1f}"
def r(a, b):
    return "—" if a is None or b is None else f"{a / b:.2f}"
print("\n| core | B | flex ms | libtorch CPU ms | PyTorch cell loop ms | PyTorch fused ms "
      "| flex / libtorch | libtorch / cell loop | flex / cell loop |")
print("|---|---|---|---|---|---|---|---|---|")
for (core, b) in sorted({(k[0], k[1]) for k in ms}, key=lambda k: (["lstm", "gru", "rims", "brims", "screened", "rel_lstm"].index(k[0]), k[1])):
    g = lambda d: ms.get((core, b, d))
    print(f"| {core} | {b} | {f(g('flex'))} | {f(g('libtorch'))} | {f(g('cell'))} | {f(g('fused'))} "
          f"| {r(g('flex'), g('libtorch'))} | {r(g('libtorch'), g('cell'))} | {r(g('flex'), g('cell'))} |")
PY
