"""Throughput benchmark: environments and learners, side by side in one run (not a timed test).

  python scripts/bench_envs_learner.py [--steps 20000] [--game Pong] [--threads 1] [--out results/benchmarks.md]

Measures, on the same machine in one process sequence:
  1. raw env steps/s with random actions: SB3 make_atari_env under DummyVecEnv and SubprocVecEnv, and
     ale-py's C++ AtariVectorEnv (our common.envs backend), 16 envs each;
  2. training steps/s of SB3's A2C (A3C-net body as a BaseFeaturesExtractor, 16 envs x 5 steps) on SB3's
     own Atari envs and on our env adapter, against our A2C learner (common.a2c) with the same net,
     envs, rollout and optimiser. Torch threads are fixed for all.
Setup (env construction, first reset) is excluded from the timings.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import numpy as np
import torch

from common.bench import publish


def _sb3_env_id(game):
    """A callable env id for make_atari_env that registers ale-py's ids in whichever process runs it."""

    def make(**kwargs):
        import ale_py
        import gymnasium as gym

        gym.register_envs(ale_py)
        return gym.make(f"{game}NoFrameskip-v4", **kwargs)

    return make


def bench_env_sb3(game, n, steps, subproc):
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import SubprocVecEnv, VecFrameStack

    env = VecFrameStack(make_atari_env(_sb3_env_id(game), n_envs=n, seed=0,
                                       vec_env_cls=SubprocVecEnv if subproc else None), 4)
    env.reset()
    return _random_action_rate(env, env.action_space.n, n, steps)


def bench_env_ours(game, n, steps, threads):
    from common.envs import make_vec_env

    env = make_vec_env(game, n, num_threads=threads)
    env.reset(0)
    return _random_action_rate(env, env.n_actions, n, steps)


def _random_action_rate(env, n_actions, n, steps):
    """Steps per second of `env` (already reset) under seeded uniform actions; closes it."""
    acts = np.random.default_rng(0).integers(0, n_actions, (steps // n, n))
    t = time.perf_counter()
    for a in acts:
        env.step(a)
    dt = time.perf_counter() - t
    env.close()
    return len(acts) * n / dt


class _Timer:
    """SB3 callback: time from the first rollout step to the end, counting env steps."""

    def __new__(cls):
        from stable_baselines3.common.callbacks import BaseCallback

        class T(BaseCallback):
            def _on_training_start(self):
                self.t0, self.s0 = None, 0

            def _on_step(self):
                if self.t0 is None:
                    self.t0, self.s0 = time.perf_counter(), self.num_timesteps
                return True

            def rate(self):
                return (self.num_timesteps - self.s0) / (time.perf_counter() - self.t0)

        return T()


def bench_sb3_a2c(game, steps, on_ours):
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    from common.zoo import A3CBody, SB3VecEnv

    if on_ours:
        from common.envs import make_vec_env

        env = SB3VecEnv(make_vec_env(game, 16))
    else:
        env = VecFrameStack(make_atari_env(_sb3_env_id(game), n_envs=16, seed=0), 4)
    model = A2C("CnnPolicy", env, n_steps=5, learning_rate=7e-4, ent_coef=0.01, vf_coef=0.5, seed=0, device="cpu",
                policy_kwargs=dict(features_extractor_class=A3CBody, net_arch=[],
                                   optimizer_class=torch.optim.Adam, optimizer_kwargs=dict(eps=1e-5)))
    cb = _Timer()
    model.learn(steps, callback=cb)
    return cb.rate()


def bench_ours(game, steps, net="a3c"):
    from common.a2c import A2CArgs, train

    with tempfile.TemporaryDirectory() as d:
        r = train(A2CArgs(game=game, net=net, total_steps=steps, num_envs=16, n_steps=5, checkpoint_every=0,
                          log_interval_s=1e9), d)
    return r["env_steps"] / r["wall_time"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--game", default="Pong")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="append the markdown table to this file")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows = [
        ("env: SB3 make_atari_env + DummyVecEnv (16)", bench_env_sb3(a.game, 16, a.steps, False)),
        ("env: SB3 make_atari_env + SubprocVecEnv (16)", bench_env_sb3(a.game, 16, a.steps, True)),
        ("env: ale-py AtariVectorEnv (16, 1 thread)", bench_env_ours(a.game, 16, a.steps, 1)),
        ("env: ale-py AtariVectorEnv (16, 2 threads)", bench_env_ours(a.game, 16, a.steps, 2)),
        ("train: SB3 A2C, SB3 Atari envs (A3C net)", bench_sb3_a2c(a.game, a.steps, False)),
        ("train: SB3 A2C, our ale-py envs (A3C net)", bench_sb3_a2c(a.game, a.steps, True)),
        ("train: common.a2c (A3C net)", bench_ours(a.game, a.steps)),
    ]
    base = rows[4][1]
    lines = [f"### {a.game}, {a.steps:,} steps each, torch threads {a.threads}, {platform.processor() or platform.machine()}"
             f" ({torch.get_num_threads()} torch threads, torch {torch.__version__})", "",
             "| what | steps/s | vs SB3 A2C |", "|---|---:|---:|"]
    for name, r in rows:
        lines.append(f"| {name} | {r:,.0f} | {r / base:.2f}x |" if name.startswith("train") else f"| {name} | {r:,.0f} | |")
    publish("\n".join(lines) + "\n", a.out)


if __name__ == "__main__":
    main()
