#!/usr/bin/env bash
# Whole-training-loop steps/s on CartPole-v1: `engram train` (LSTM) vs sb3-contrib RecurrentPPO and SB3 PPO, one run on this machine.
#
# Usage: scripts/bench_training_sps.sh [STEPS]        (default 32768 = 32 updates of 8 envs x 128 steps)
#   BENCH_STEPS=N   same as the argument; the timed env steps for every library
#   RPPO_STEPS=N    a separate (e.g. smaller) step count for RecurrentPPO; the table then says so
#   BENCH_SEED=S    seed (default 1)
#   TORCH_THREADS="2"  torch.set_num_threads for the SB3 runs; a list ("1 2") runs SB3 once per value.
#                   On this 2-core machine, 2 threads under outside load ran up to 10x slower
#                   than 1 thread (tiny nets, thread contention); "1 2" shows both.
#   SB3_VENV=DIR    Python venv with torch + stable-baselines3 + sb3-contrib (default target/torch-venv,
#                   else target/sb3-venv is created)
#
# All three use 8 envs, 128-step rollouts, 4 epochs, 4 minibatches (batch 256), 64-unit layers,
# on the CPU; Python gets torch.set_num_threads(TORCH_THREADS). Engram runs its default config
# (configs/cartpole_lstm.toml: 64-unit encoder -> LSTM 64 shared by actor and critic, seq_len 16)
# with its 8 epochs set back to SB3's 4.
# RecurrentPPO keeps the sb3-contrib default enable_critic_lstm=True, shared_lstm=False: the
# critic has its own LSTM (two LSTMs per step). PPO's MlpPolicy has no recurrence: an upper bound.
# SB3 numbers time model.learn(total_timesteps=N) after an untimed one-rollout warm-up; Engram's
# main number is the steps/s it prints itself (its training loop, first update included, with its
# TensorBoard logging and checkpoints); the wall-clock rate of the whole process is shown too.
# Build first, then measure: never time while a build runs. Run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS="${1:-${BENCH_STEPS:-32768}}"
RPPO_STEPS="${RPPO_STEPS:-$STEPS}"
SEED="${BENCH_SEED:-1}"
TORCH_THREADS="${TORCH_THREADS:-2}"
SB3_PINS=(stable-baselines3==2.9.2 sb3-contrib==2.9.2 gymnasium==1.4.0)
CHECK='import torch, gymnasium, stable_baselines3, sb3_contrib'

# 1. Build (untimed).
cargo build --release --bin engram

# 2. Python venv.
VENV="${SB3_VENV:-target/torch-venv}"
if ! { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "$CHECK" 2>/dev/null; }; then
    if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
        echo "== installing ${SB3_PINS[*]} into $VENV =="
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${SB3_PINS[@]}"
    else
        VENV=target/sb3-venv
        if ! { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "$CHECK" 2>/dev/null; }; then
            echo "== creating $VENV (torch + ${SB3_PINS[*]}) =="
            [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
            "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check torch "${SB3_PINS[@]}"
        fi
    fi
    "$VENV/bin/python" -c "$CHECK"
fi
PY="$VENV/bin/python"

echo "== machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) (should be near 0) =="
echo "== steps: Engram $STEPS, RecurrentPPO $RPPO_STEPS, PPO $STEPS; seed $SEED; torch threads: $TORCH_THREADS =="

# 3. Engram: an untimed 1024-step run warms the binary and page cache, then the measured run.
RUN_DIR=target/bench-runs/engram_cartpole
rm -rf "$RUN_DIR" "${RUN_DIR}_warmup"
target/release/engram train --set run.total_steps=1024 --set ppo.epochs=4 --seed "$SEED" \
    --run-dir "${RUN_DIR}_warmup" --quiet >/dev/null
t0=$(date +%s.%N)
engram_out=$(target/release/engram train --set run.total_steps="$STEPS" --set ppo.epochs=4 --seed "$SEED" \
    --run-dir "$RUN_DIR" --quiet)
t1=$(date +%s.%N)
echo "engram: $engram_out"
engram_steps=$(sed -n 's/^[^:]*: \([0-9][0-9]*\) steps, .*/\1/p' <<<"$engram_out" | tail -n1)
engram_sps=$(sed -n 's/.* \([0-9.][0-9.]*\) steps\/s;.*/\1/p' <<<"$engram_out" | tail -n1)
if [ -z "$engram_steps" ] || [ -z "$engram_sps" ]; then
    echo "bench_training_sps: cannot read steps and steps/s from Engram's output" >&2
    exit 1
fi
engram_wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
engram_wall_sps=$(awk -v s="$engram_steps" -v w="$engram_wall" 'BEGIN { printf "%.1f", s / w }')

# 4. Stable-Baselines3, for each torch thread count in TORCH_THREADS.
json_field() { "$PY" -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
rows=()
ratios=()
versions=""
for t in $TORCH_THREADS; do
    rppo_json=$("$PY" scripts/bench_sb3.py --algo recurrent_ppo --steps "$RPPO_STEPS" --seed "$SEED" --threads "$t")
    echo "recurrent_ppo ($t threads): $rppo_json"
    ppo_json=$("$PY" scripts/bench_sb3.py --algo ppo --steps "$STEPS" --seed "$SEED" --threads "$t")
    echo "ppo ($t threads): $ppo_json"
    rppo_sps=$(json_field "$rppo_json" sps)
    ppo_sps=$(json_field "$ppo_json" sps)
    rows+=("$(printf '%-28s %10s %10s %12s' "RecurrentPPO, $t thr" "$(json_field "$rppo_json" steps)" "$(json_field "$rppo_json" seconds)" "$rppo_sps")")
    rows+=("$(printf '%-28s %10s %10s %12s' "PPO (MLP, no memory), $t thr" "$(json_field "$ppo_json" steps)" "$(json_field "$ppo_json" seconds)" "$ppo_sps")")
    ratios+=("$(awk -v e="$engram_sps" -v r="$rppo_sps" -v p="$ppo_sps" -v t="$t" \
        'BEGIN { printf "torch %s thread(s): Engram / RecurrentPPO %.2fx, Engram / PPO %.2fx", t, e / r, e / p }')")
    versions=$("$PY" -c 'import json, sys; v = json.loads(sys.argv[1])["versions"]; print(", ".join(f"{k} {x}" for k, x in v.items()))' "$rppo_json")
done

# 5. Table.
echo
echo "CartPole-v1, 8 envs x 128 steps, 4 epochs x 4 minibatches, CPU; $versions"
printf '%-28s %10s %10s %12s\n' "trainer" "steps" "seconds" "steps/s"
printf '%-28s %10s %10s %12s\n' "Engram (LSTM, own count)" "$engram_steps" "-" "$engram_sps"
printf '%-28s %10s %10s %12s\n' "Engram (LSTM, process wall)" "$engram_steps" "$engram_wall" "$engram_wall_sps"
printf '%s\n' "${rows[@]}"
printf '%s\n' "${ratios[@]}"
if [ "$RPPO_STEPS" != "$STEPS" ]; then
    echo "note: RecurrentPPO ran $RPPO_STEPS steps (RPPO_STEPS), the others $STEPS: its rate is over a shorter, earlier stretch of training"
fi
