#!/usr/bin/env python3
"""PyTorch reference timings for memory/benches/cores.rs (forward+backward over [B, T]).

Times, on CPU, with the same shapes as the Rust bench (E = H = 128, T = 64, B = 32..256):
  * nn.LSTMCell / nn.GRUCell stepped in a Python loop (what a hand-written recurrent policy does), and
  * fused nn.LSTM / nn.GRU (batch_first),
each as forward + backward of y.mean(), median of a few repetitions, in milliseconds.

Setup (only PyPI is reachable here):
    python3 -m venv target/torch-venv
    target/torch-venv/bin/pip install torch
    target/torch-venv/bin/python scripts/bench_torch_memory.py --threads 2

Compare with:
    cargo bench -p engram-memory --bench cores -- lstm
Use the same thread count as the Rust run (burn's flex backend uses all cores via rayon).
"""

import argparse
import statistics
import time

import torch
from torch import nn

E = 128
H = 128
T = 64


def timed(fn, reps):
    fn()  # warm-up
    out = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return statistics.median(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--batches", type=int, nargs="*", default=[32, 64, 128, 256])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--cores", nargs="*", default=["lstm"], choices=["lstm", "gru"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"# torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"forward+backward over [B, T={T}], E={E}, H={H}; median ms")
    for core in args.cores:
        if core == "lstm":
            bench_lstm(args)
        else:
            bench_gru(args)


def bench_lstm(args):
    cell = nn.LSTMCell(E, H)
    fused = nn.LSTM(E, H, batch_first=True)
    for b in args.batches:
        x = torch.rand(b, T, E) * 2 - 1

        def cell_loop():
            h = torch.zeros(b, H)
            c = torch.zeros(b, H)
            ys = []
            for t in range(T):
                h, c = cell(x[:, t], (h, c))
                ys.append(h)
            torch.stack(ys, 1).mean().backward()

        def fused_lstm():
            y, _ = fused(x)
            y.mean().backward()

        t_cell = timed(cell_loop, args.reps)
        t_fused = timed(fused_lstm, args.reps)
        print(f"torch LSTMCell-loop B={b:<4} T={T}  fwd+bwd {t_cell * 1e3:9.2f} ms")
        print(f"torch nn.LSTM       B={b:<4} T={T}  fwd+bwd {t_fused * 1e3:9.2f} ms")


def bench_gru(args):
    cell = nn.GRUCell(E, H)
    fused = nn.GRU(E, H, batch_first=True)
    for b in args.batches:
        x = torch.rand(b, T, E) * 2 - 1

        def cell_loop():
            h = torch.zeros(b, H)
            ys = []
            for t in range(T):
                h = cell(x[:, t], h)
                ys.append(h)
            torch.stack(ys, 1).mean().backward()

        def fused_gru():
            y, _ = fused(x)
            y.mean().backward()

        t_cell = timed(cell_loop, args.reps)
        t_fused = timed(fused_gru, args.reps)
        print(f"torch GRUCell-loop  B={b:<4} T={T}  fwd+bwd {t_cell * 1e3:9.2f} ms")
        print(f"torch nn.GRU        B={b:<4} T={T}  fwd+bwd {t_fused * 1e3:9.2f} ms")


if __name__ == "__main__":
    main()
