#!/usr/bin/env bash
# Whole-loop steps/s of asynchronous APPO vs synchronous PPO on one config, and APPO's scaling with actor threads.
#
# Usage: scripts/bench_async_sps.sh [STEPS]     (default 65536 env steps per run)
#   BENCH_THREADS="1 2 4"   actor thread counts to try
#   BENCH_CONFIG=FILE       config (default configs/cartpole_lstm.toml: CartPole-v1, LSTM 64)
#
# Every run trains on 8 envs and 1024 env steps per update with 4 epochs x 4 minibatches.
# PPO: 8 envs x 128-step rollouts, split over the actor threads. APPO: chunks of 32 steps;
# batch_chunks = 4 x threads so that an update also holds 1024 steps; queue capacity 2 x threads;
# both full-queue policies: `wait` (back-pressure) and `drop_oldest` (actors never wait).
# The figure is the steps/s `engram train` prints (env steps trained on per second of the loop).
# Build first, then measure: never time while a build runs. Run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS="${1:-65536}"
THREADS="${BENCH_THREADS:-1 2 4}"
CONFIG="${BENCH_CONFIG:-configs/cartpole_lstm.toml}"
OUT="target/bench-runs/async"

cargo build --release --bin engram
mkdir -p "$OUT"
echo "machine: $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"

run() { # name, then --set overrides
    local name="$1"
    shift
    local line
    line=$(./target/release/engram train --config "$CONFIG" --quiet \
        --run-dir "$OUT/$name" --set run.total_steps="$STEPS" --set run.checkpoint_every=0 \
        --set env.num_envs=8 --set ppo.epochs=4 --set ppo.minibatches=4 "$@" | grep '^finished')
    local sps
    sps=$(sed -E 's/.* ([0-9]+) steps\/s.*/\1/' <<<"$line")
    local ret
    ret=$(sed -E 's/.*last 100 episodes ([-0-9.]+).*/\1/' <<<"$line")
    printf '%-28s %8s steps/s   mean return (last 100) %s\n' "$name" "$sps" "$ret"
    rm -rf "${OUT:?}/$name"
}

printf '%-28s %8s\n' "run" "SPS"
for t in $THREADS; do
    run "ppo_threads$t" --set run.algo=\"ppo\" --set run.actor_threads="$t" --set ppo.rollout_len=128
    for fq in wait drop_oldest; do
        run "appo_${fq}_threads$t" --set run.algo=\"appo\" --set run.actor_threads="$t" \
            --set async.chunk_len=32 --set async.batch_chunks=$((4 * t)) \
            --set async.queue_capacity=$((2 * t)) --set async.full_queue=\"$fq\"
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
