#!/usr/bin/env python3
"""Where a release binary spends its time, by source line or function of our own code.

A `perf record` profile without call graphs names only the outermost function of each sample,
and the fused kernels inline almost everything into a few pulp `vectorize::imp` symbols. This
maps every sampled address through `addr2line -i` (the binary's line tables: build with
`debug = "line-tables-only"` for the profiled package) and groups the samples by the innermost
frames that lie under a source prefix (default `memory/src/`), or by the outermost symbol when
none does (gemm's microkernels, burn's ops). Samples in other objects (libc, the kernel) are
totalled per object at the end. No DWARF unwinding, so profiles stay cheap and fine-grained.

Usage:
  perf record -F 4000 -o perf.data BINARY ARGS...   # e.g. BENCH_REPS=20 RAYON_NUM_THREADS=1
  scripts/perf_lines.py perf.data BINARY [--by line|fn] [--depth N] [--top K] [--src PREFIX]

  --by     group by `file:line` (default) or by function name
  --depth  how many of the innermost matching frames make a group (default 1)
  --top    groups to print (default 40)
  --src    path fragment that marks our own frames (default memory/src/)

The first call of a benchmark page-faults its buffers in (the kernel's `clear_page_erms`): take
enough repetitions that it does not weigh on the profile, or discount it.
"""

import argparse
import collections
import re
import subprocess
import sys


def run(cmd: list[str]) -> str:
    """`cmd`'s standard output; exits with its error message when it fails or is missing."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    except FileNotFoundError:
        sys.exit(f"perf_lines: {cmd[0]} not found (install it: perf, binutils)")
    except subprocess.CalledProcessError as e:
        sys.exit(f"perf_lines: {' '.join(cmd[:3])} … failed: {e.stderr.strip()[:300]}")


def load_base(script: str, binary: str) -> int:
    """Runtime address of file offset 0 of `binary`'s executable mapping."""
    name = re.escape(binary.rsplit("/", 1)[-1])
    for line in script.splitlines():
        m = re.search(r"MMAP2? .*\[0x([0-9a-f]+)\(0x[0-9a-f]+\) @ 0x([0-9a-f]+) .*r-xp .*" + name, line)
        if m:
            return int(m.group(1), 16) - int(m.group(2), 16)
    sys.exit(f"perf_lines: no executable mapping of {binary} in the profile (wrong binary?)")


def exec_segment_delta(binary: str) -> int:
    """Virtual address minus file offset of the binary's executable segment."""
    out = run(["readelf", "-lW", binary])
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == "LOAD" and "E" in parts[6:8]:
            return int(parts[2], 16) - int(parts[1], 16)
    sys.exit(f"perf_lines: {binary} has no executable LOAD segment")


def inline_chains(binary: str, addrs: list[str]) -> dict[str, list[tuple[str, str]]]:
    """For each address, its (function, file:line) frames, innermost first."""
    out = run(["addr2line", "-a", "-i", "-f", "-C", "-e", binary] + ["0x" + a for a in addrs])
    out = out.splitlines()
    chains: dict[str, list[tuple[str, str]]] = {}
    current = None
    i = 0
    while i < len(out):
        if out[i].startswith("0x"):
            current = out[i][2:].lstrip("0")
            chains[current] = []
            i += 1
            continue
        location = out[i + 1] if i + 1 < len(out) else ""
        chains[current].append((out[i], location.split(" ")[0]))
        i += 2
    return chains


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data")
    parser.add_argument("binary")
    parser.add_argument("--by", choices=["line", "fn"], default="line")
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--src", default="memory/src/")
    args = parser.parse_args()

    script = run(["perf", "script", "-i", args.data, "--show-mmap-events", "-F", "ip,dso"])
    base = load_base(script, args.binary)
    delta = exec_segment_delta(args.binary)
    name = args.binary.rsplit("/", 1)[-1]
    ours: collections.Counter[str] = collections.Counter()
    others: collections.Counter[str] = collections.Counter()
    total = 0
    for line in script.splitlines():
        parts = line.split()
        if len(parts) < 2 or "MMAP" in line or not re.fullmatch(r"[0-9a-f]+", parts[0]):
            continue
        total += 1
        if name in parts[1]:
            ours[format(int(parts[0], 16) - base + delta, "x")] += 1
        else:
            others[parts[1].strip("()")] += 1
    if total == 0:
        sys.exit("perf_lines: no samples")

    chains = inline_chains(args.binary, list(ours))
    groups: collections.Counter[str] = collections.Counter()
    for addr, count in ours.items():
        frames = chains.get(addr.lstrip("0"), [])
        mine = [(fn, loc) for fn, loc in frames if args.src in loc]
        if mine:
            if args.by == "fn":
                keys = [f"{fn.split('<')[0]} ({loc.rsplit('/', 1)[-1].split(':')[0]})" for fn, loc in mine]
            else:
                keys = [loc.rsplit("/", 1)[-1] for _, loc in mine]
            key = " < ".join(keys[: args.depth])
        else:
            key = frames[-1][0][:80] if frames else "?"
        groups[key] += count
    for key, count in groups.most_common(args.top):
        print(f"{100 * count / total:5.1f} %  {key}")
    for obj, count in others.most_common(5):
        print(f"{100 * count / total:5.1f} %  in {obj}")


if __name__ == "__main__":
    main()
