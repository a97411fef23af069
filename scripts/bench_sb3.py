"""Whole-training-loop steps/s of Stable-Baselines3 PPO / sb3-contrib RecurrentPPO on CartPole-v1, matched to `engram train`.

Usage:
    target/torch-venv/bin/python scripts/bench_sb3.py --algo recurrent_ppo --steps 32768 --seed 1
    target/torch-venv/bin/python scripts/bench_sb3.py --algo ppo --steps 32768 --seed 1

Settings mirror configs/cartpole_lstm.toml: 8 CartPole-v1 envs in a DummyVecEnv, 128-step rollouts,
4 epochs, 4 minibatches (batch_size 256), the same PPO coefficients and a linearly annealed
learning rate; device cpu, torch.set_num_threads(--threads, default 2).
recurrent_ppo: MlpLstmPolicy with lstm_hidden_size=64, n_lstm_layers=1, net_arch [64] for the
actor and the critic heads, shared_lstm=False, enable_critic_lstm=True (the sb3-contrib default:
the critic has its own LSTM, so two LSTMs run where Engram's policy shares one trunk;
--shared-lstm switches to one shared LSTM). ppo: MlpPolicy with net_arch [64] (no recurrence).

One rollout (8 * 128 = 1024 steps) is learned first as a warm-up and not timed; then the timed
`model.learn(total_timesteps=N)` continues the same model and environments. Nothing is logged
(verbose=0, no TensorBoard). Prints one line of JSON:
    {"algo", "steps", "seconds", "sps", "warmup_steps", "warmup_seconds", "versions", "config"}
"""

import argparse
import json
import os
import platform
import sys
import time
import warnings

N_ENVS = 8
N_STEPS = 128
N_EPOCHS = 4
MINIBATCHES = 4
BATCH_SIZE = N_ENVS * N_STEPS // MINIBATCHES  # 256
HIDDEN = 64
LR = 4e-3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=["recurrent_ppo", "ppo"], required=True)
    parser.add_argument("--steps", type=int, default=32768, help="timed env steps (rounded up to whole 1024-step rollouts)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed one-rollout warm-up")
    parser.add_argument("--shared-lstm", action="store_true",
                        help="recurrent_ppo only: shared_lstm=True, enable_critic_lstm=False (not the default)")
    args = parser.parse_args()

    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only, even with a CUDA wheel of torch
    warnings.filterwarnings("ignore")

    import gymnasium
    import numpy
    import stable_baselines3
    import torch
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv

    torch.set_num_threads(args.threads)
    env = make_vec_env("CartPole-v1", n_envs=N_ENVS, seed=args.seed, vec_env_cls=DummyVecEnv)

    common = dict(
        learning_rate=lambda progress_remaining: LR * progress_remaining,  # anneal_lr = true
        n_steps=N_STEPS,
        batch_size=BATCH_SIZE,
        n_epochs=N_EPOCHS,
        gamma=0.99,
        gae_lambda=0.95,
        clip_range=0.2,
        ent_coef=0.01,
        vf_coef=0.02,
        max_grad_norm=0.5,
        seed=args.seed,
        device="cpu",
        verbose=0,
    )
    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "gymnasium": gymnasium.__version__,
        "numpy": numpy.__version__,
    }
    if args.algo == "recurrent_ppo":
        import sb3_contrib
        from sb3_contrib import RecurrentPPO

        versions["sb3_contrib"] = sb3_contrib.__version__
        policy_kwargs = dict(
            lstm_hidden_size=HIDDEN,
            n_lstm_layers=1,
            net_arch=dict(pi=[HIDDEN], vf=[HIDDEN]),
            shared_lstm=args.shared_lstm,
            enable_critic_lstm=not args.shared_lstm,
        )
        model = RecurrentPPO("MlpLstmPolicy", env, policy_kwargs=policy_kwargs, **common)
    else:
        from stable_baselines3 import PPO

        policy_kwargs = dict(net_arch=dict(pi=[HIDDEN], vf=[HIDDEN]))
        model = PPO("MlpPolicy", env, policy_kwargs=policy_kwargs, **common)

    warmup, warmup_seconds = 0, 0.0
    if not args.no_warmup:
        start = time.perf_counter()
        model.learn(total_timesteps=N_ENVS * N_STEPS)
        warmup_seconds = time.perf_counter() - start
        warmup = model.num_timesteps

    before = model.num_timesteps
    start = time.perf_counter()
    # reset_num_timesteps=False: N more steps on the warmed-up model (SB3 adds num_timesteps to N).
    model.learn(total_timesteps=args.steps, reset_num_timesteps=args.no_warmup)
    seconds = time.perf_counter() - start
    steps = model.num_timesteps - before

    config = dict(
        env="CartPole-v1", n_envs=N_ENVS, vec_env="DummyVecEnv", n_steps=N_STEPS, n_epochs=N_EPOCHS,
        batch_size=BATCH_SIZE, device="cpu", torch_threads=torch.get_num_threads(), seed=args.seed,
        policy="MlpLstmPolicy" if args.algo == "recurrent_ppo" else "MlpPolicy",
        policy_kwargs=policy_kwargs,
    )
    print(json.dumps(dict(
        algo=args.algo, steps=steps, seconds=round(seconds, 4), sps=round(steps / seconds, 1),
        warmup_steps=warmup, warmup_seconds=round(warmup_seconds, 4), versions=versions, config=config,
    )))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
