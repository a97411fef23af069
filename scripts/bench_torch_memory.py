#!/usr/bin/env python3
"""PyTorch reference timings for memory/benches/cores.rs (forward+backward over [B, T]).

Times, on CPU (the LSTM and GRU also on a CUDA device: --device cuda), with the same shapes as
the Rust bench (E = H = 128, T = 64, B = 32..256; --hidden and --batches change them):
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

RIMs (--cores rims): the most used PyTorch RIMs code, `RIMCell` from
dido1998/Recurrent-Independent-Mechanisms (not vendored here: clone
https://github.com/dido1998/Recurrent-Independent-Mechanisms and pass its RIM.py with --rim-py),
stepped over T in a Python loop at Engram's bench sizes: 4 modules of 32 (H = 128), top-k 2,
LSTM cells, input attention 1 head (key 64, value 128 = 4d), communication 4 heads (key 32,
value 32), no dropout; one layer, and a plain two-layer stack (`RIM(n_layers=2)`'s scheme: layer 2
reads layer 1's h) to compare with `brims` with and without top-down attention.

FFM (--cores ffm): Fast and Forgetful Memory written here from the paper's equations (Morad et
al. 2023; the same as memory/src/ffm.rs: 32 traces x 4 frequencies, gated input, complex decay,
mix + layer norm + gated skip), in two forms: stepped in a Python loop, and the paper's parallel
form over the sequence, S_t = gamma^t * cumsum_k(gamma^-k x_k) with complex tensors, in chunks
of 16 steps (gamma^-k overflows float32 beyond that for the fastest trace).

GTrXL (--cores gtrxl): the gated Transformer-XL written here from the papers' equations
(Parisotto et al. 2020, Dai et al. 2019; the same as memory/src/gtrxl.rs: 2 blocks, 4 heads,
memory window 64, feed-forward 4d, identity-map reordering, GRU gates, relative positions with
Transformer-XL's shift), one pass per block over the sequence from an empty cache.
"""

import argparse
import importlib.util
import statistics
import sys
import time

import torch
from torch import nn

E = 128
H = 128
T = 64


DEVICE = torch.device("cpu")


def sync():
    """Waits for queued CUDA kernels (a no-op on CPU), so that the clock sees them."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def timed(fn, reps):
    fn()  # warm-up
    sync()
    out = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - start)
    return statistics.median(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--batches", type=int, nargs="*", default=[32, 64, 128, 256])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--cores", nargs="*", default=["lstm"], choices=["lstm", "gru", "rims", "ffm", "gtrxl"])
    parser.add_argument("--rim-py", help="RIM.py of a dido1998/Recurrent-Independent-Mechanisms "
                        "clone (for --cores rims)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda / cuda:N for the LSTM "
                        "and GRU (nn.LSTM / nn.GRU on cuDNN)")
    parser.add_argument("--hidden", type=int, default=128, help="E = H")
    args = parser.parse_args()
    global DEVICE, E, H
    DEVICE = torch.device(args.device)
    E = H = args.hidden
    if DEVICE.type != "cpu" and any(c not in ("lstm", "gru") for c in args.cores):
        sys.exit(f"--device {args.device}: only --cores lstm gru run off the CPU here")
    if "rims" in args.cores and not args.rim_py:
        sys.exit("--cores rims needs --rim-py PATH: git clone "
                 "https://github.com/dido1998/Recurrent-Independent-Mechanisms and pass its RIM.py")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"# torch {torch.__version__}, {DEVICE}, threads {torch.get_num_threads()}, "
          f"forward+backward over [B, T={T}], E={E}, H={H}; median ms")
    for core in args.cores:
        if core == "lstm":
            bench_lstm(args)
        elif core == "gru":
            bench_gru(args)
        elif core == "ffm":
            bench_ffm(args)
        elif core == "gtrxl":
            bench_gtrxl(args)
        else:
            bench_rims(args)


def bench_lstm(args):
    cell = nn.LSTMCell(E, H).to(DEVICE)
    fused = nn.LSTM(E, H, batch_first=True).to(DEVICE)
    for b in args.batches:
        x = torch.rand(b, T, E, device=DEVICE) * 2 - 1

        def cell_loop():
            h = torch.zeros(b, H, device=DEVICE)
            c = torch.zeros(b, H, device=DEVICE)
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
    cell = nn.GRUCell(E, H).to(DEVICE)
    fused = nn.GRU(E, H, batch_first=True).to(DEVICE)
    for b in args.batches:
        x = torch.rand(b, T, E, device=DEVICE) * 2 - 1

        def cell_loop():
            h = torch.zeros(b, H, device=DEVICE)
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


class Ffm(nn.Module):
    """FFM from the paper's equations, as memory/src/ffm.rs computes it."""

    def __init__(self, input_size, hidden_size, m=32, c=4, min_period=1.0, max_period=1024.0):
        super().__init__()
        self.m, self.c, self.h = m, c, hidden_size
        self.pre = nn.Linear(input_size, 2 * m + 2 * hidden_size)
        horizons = min_period * (max_period / min_period) ** torch.linspace(0, 1, m)
        self.decay = nn.Parameter(torch.log(torch.tensor(100.0)) / horizons)
        self.frequency = nn.Parameter(2 * torch.pi / torch.linspace(min_period, max_period, c))
        self.mix = nn.Linear(2 * m * c, hidden_size)

    def gamma(self):
        return torch.exp(torch.complex(-self.decay.abs()[:, None],
                                       self.frequency[None, :].expand(self.m, self.c)))

    def read_out(self, s, skip, gate_out):
        z = nn.functional.layer_norm(self.mix(torch.cat([s.real, s.imag], -1)), (self.h,))
        g = torch.sigmoid(gate_out)
        return z * g + skip * (1 - g)

    def split(self, x):
        gate_in, u, skip, gate_out = self.pre(x).split([self.m, self.m, self.h, self.h], -1)
        return u * torch.sigmoid(gate_in), skip, gate_out

    def step_loop(self, x):
        b, t_len, _ = x.shape
        xt, skip, gate_out = self.split(x)
        gamma = self.gamma()
        s = torch.zeros(b, self.m, self.c, dtype=torch.complex64)
        states = []
        for t in range(t_len):
            s = gamma * s + xt[:, t, :, None]
            states.append(s.reshape(b, -1))
        return self.read_out(torch.stack(states, 1), skip, gate_out)

    def parallel(self, x, chunk=16):
        """The paper's parallel form, S_t = gamma^(t+1) S_-1 + gamma^t cumsum_k(gamma^-k x_k), in
        chunks of `chunk` steps: gamma^-k of the fastest trace overflows float32 beyond ~19
        steps (e^(4.6 k)), so each chunk starts from the previous chunk's last state."""
        b, t_len, _ = x.shape
        xt, skip, gate_out = self.split(x)
        gamma = self.gamma()
        log_gamma = torch.log(gamma)[None]
        s = torch.zeros(b, self.m, self.c, dtype=torch.complex64)
        states = []
        for start in range(0, t_len, chunk):
            n = min(chunk, t_len - start)
            k = torch.arange(n, dtype=torch.float32)[:, None, None]
            powers = torch.exp(log_gamma * k)  # gamma^k [n, m, c]
            inputs = xt[:, start:start + n, :, None].to(torch.complex64)
            part = torch.cumsum(inputs / powers, 1) * powers + (powers * gamma) * s[:, None]
            states.append(part.reshape(b, n, -1))
            s = part[:, -1]
        return self.read_out(torch.cat(states, 1), skip, gate_out)


def bench_ffm(args):
    ffm = Ffm(E, H)
    for b in args.batches:
        x = torch.rand(b, T, E) * 2 - 1
        t_loop = timed(lambda: ffm.step_loop(x).mean().backward(), args.reps)
        t_par = timed(lambda: ffm.parallel(x).mean().backward(), args.reps)
        print(f"torch FFM-step-loop   B={b:<4} T={T}  fwd+bwd {t_loop * 1e3:9.2f} ms")
        print(f"torch FFM-parallel    B={b:<4} T={T}  fwd+bwd {t_par * 1e3:9.2f} ms")


class GruGate(nn.Module):
    """g(x, y) = (1 - z) x + z tanh(W_g y + U_g (r x)), r and z sigmoid gates, z biased by -b_g."""

    def __init__(self, d, bias=2.0):
        super().__init__()
        self.w = nn.Linear(d, 3 * d, bias=False)
        self.u = nn.Linear(d, 2 * d, bias=False)
        self.u_g = nn.Linear(d, d, bias=False)
        self.bias = nn.Parameter(torch.full((d,), bias))

    def forward(self, x, y):
        wr, wz, wg = self.w(y).chunk(3, -1)
        ur, uz = self.u(x).chunk(2, -1)
        r = torch.sigmoid(wr + ur)
        z = torch.sigmoid(wz + uz - self.bias)
        return x + z * (torch.tanh(wg + self.u_g(r * x)) - x)


class GtrxlBlock(nn.Module):
    def __init__(self, d, heads, ff):
        super().__init__()
        self.d, self.heads = d, heads
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.pos = nn.Linear(d, d, bias=False)
        self.u = nn.Parameter(torch.zeros(heads, 1, d // heads))
        self.v = nn.Parameter(torch.zeros(heads, 1, d // heads))
        self.out = nn.Linear(d, d, bias=False)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.ReLU(), nn.Linear(ff, d))
        self.gate1, self.gate2 = GruGate(d), GruGate(d)

    def forward(self, h, mem_k, mem_v, r, mask):
        b, t, d = h.shape
        dk = d // self.heads
        q, k, v = self.qkv(self.norm1(h)).chunk(3, -1)
        keys, values = torch.cat([mem_k, k], 1), torch.cat([mem_v, v], 1)
        kk = keys.shape[1]
        split = lambda x, n: x.view(b, n, self.heads, dk).transpose(1, 2)
        q4 = split(q, t)
        content = (q4 + self.u) @ split(keys, kk).transpose(2, 3)
        p = self.pos(r).view(kk, self.heads, dk).permute(1, 2, 0)  # [H, dk, K]
        pos = (q4 + self.v) @ p  # [B, H, T, K], column c: distance K - 1 - c
        pos = torch.cat([pos.new_zeros(b, self.heads, t, 1), pos], -1).view(b, self.heads, kk + 1, t)
        pos = pos[:, :, 1:].reshape(b, self.heads, t, kk)
        att = torch.softmax((content + pos) / dk ** 0.5 + mask, -1)
        read = self.out((att @ split(values, kk)).transpose(1, 2).reshape(b, t, d))
        y = self.gate1(h, torch.relu(read))
        return self.gate2(y, torch.relu(self.ff(self.norm2(y))))


class Gtrxl(nn.Module):
    """GTrXL over a window of `memory` cached keys/values per block (as memory/src/gtrxl.rs)."""

    def __init__(self, input_size, d, layers=2, heads=4, memory=64, ff=None):
        super().__init__()
        self.d, self.m = d, memory
        self.embed = nn.Linear(input_size, d)
        self.blocks = nn.ModuleList(GtrxlBlock(d, heads, ff or 4 * d) for _ in range(layers))

    def encodings(self, kk):
        distance = torch.arange(kk - 1, -1, -1, dtype=torch.float32)[:, None]
        rate = 10000 ** (-torch.arange(0, self.d, 2, dtype=torch.float32) / self.d)
        r = torch.zeros(kk, self.d)
        r[:, 0::2], r[:, 1::2] = torch.sin(distance * rate), torch.cos(distance * rate)
        return r

    def forward(self, x):
        """A sequence from an empty cache: step i attends to itself and the M steps before."""
        b, t, _ = x.shape
        kk = self.m + t
        i = torch.arange(t)[:, None]
        j = torch.arange(kk)[None, :]
        allowed = (j >= self.m) & (j - self.m <= i) & (j >= i)
        mask = torch.zeros(t, kk).masked_fill(~allowed, -1e30)
        r = self.encodings(kk)
        h = self.embed(x)
        empty = torch.zeros(b, self.m, self.d)
        for block in self.blocks:
            h = block(h, empty, empty, r, mask)
        return h


def bench_gtrxl(args):
    net = Gtrxl(E, H)
    for b in args.batches:
        x = torch.rand(b, T, E) * 2 - 1
        t_seq = timed(lambda: net(x).mean().backward(), args.reps)
        print(f"torch GTrXL-sequence  B={b:<4} T={T}  fwd+bwd {t_seq * 1e3:9.2f} ms")


def load_rim_module(path):
    spec = importlib.util.spec_from_file_location("dido1998_rim", path)
    if spec is None or spec.loader is None:
        sys.exit(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench_rims(args):
    rim = load_rim_module(args.rim_py)
    units, d, k = 4, H // 4, 2

    def cell(input_size):
        c = rim.RIMCell(torch.device("cpu"), input_size, d, units, k, "LSTM",
                        input_key_size=64, input_value_size=4 * d, input_query_size=64,
                        num_input_heads=1, input_dropout=0.0, comm_key_size=32,
                        comm_value_size=d, comm_query_size=32, num_comm_heads=4,
                        comm_dropout=0.0)
        return c.train()

    layer1, layer2 = cell(E), cell(H)
    for b in args.batches:
        x = torch.rand(b, T, E) * 2 - 1

        def loop(layers):
            states = [(torch.zeros(b, units, d), torch.zeros(b, units, d)) for _ in layers]
            ys = []
            for t in range(T):
                inp = x[:, t:t + 1]
                for i, layer in enumerate(layers):
                    h, c = layer(inp, *states[i])
                    states[i] = (h, c)
                    inp = h.reshape(b, 1, units * d)
                ys.append(inp)
            torch.cat(ys, 1).mean().backward()

        t1 = timed(lambda: loop([layer1]), args.reps)
        t2 = timed(lambda: loop([layer1, layer2]), args.reps)
        print(f"torch RIMCell-loop      B={b:<4} T={T}  fwd+bwd {t1 * 1e3:9.2f} ms")
        print(f"torch RIMCell-2-layers  B={b:<4} T={T}  fwd+bwd {t2 * 1e3:9.2f} ms")


if __name__ == "__main__":
    main()
