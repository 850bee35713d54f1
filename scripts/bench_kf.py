"""Throughput benchmark of Knowledge Flow: what teachers cost the student per env step (not a timed test).

  python scripts/bench_kf.py [--steps 16000] [--game Seaquest] [--threads 1] [--device cpu]
                             [--out results/benchmarks.md]

Trains, one after another in one process, the A3C baseline and Knowledge Flow students with 1 and 2
teachers (random-weight PPO zoo teachers with the A3C body: the cost does not depend on what a teacher
knows), all with the shared learner on the same envs, and reports env steps/s and the ratio to the
baseline. Extra cost per KF update: the teachers' forward passes during the rollout (every step) and the
theta_old forward pass for the KL term. Setup and the first reset are excluded by the learner's own
wall-time clock (curve.csv); here the whole train() call is timed, minus env construction.

``--device`` (default cpu, the device of the recorded tables) runs the students and teachers there (cuda, cuda:1,
auto); off the CPU a short untimed baseline run first warms the device up (CUDA context, kernels), and the
table's title names the device and the GPU, so that CPU and GPU figures are never read as one table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from common.bench import cost_table, device_label, publish


def bench(game: str, steps: int, n_teachers: int, threads: int, root: Path, device: str = "cpu") -> float:
    from common.a2c import A2CArgs, train
    from common.envs import make_vec_env
    from common.nets import make_net
    from common.zoo import load_teacher, train_teacher
    from papers.knowledge_flow.method import KFArgs, KnowledgeFlowHook, KnowledgeFlowStudent
    from papers.knowledge_flow.train import auto_links

    torch.set_num_threads(threads)
    args = A2CArgs(game=game, total_steps=steps, checkpoint_every=0, log_interval_s=1e9, device=device,
                   torch_threads=threads, seed=0)
    env = make_vec_env(game, args.num_envs)
    student = make_net("a3c", env.obs_shape, env.n_actions)
    hook = None
    if n_teachers:
        teachers = []
        for m in range(n_teachers):
            d = root / f"teacher{m}"
            if not (d / "model.zip").exists():
                train_teacher("ppo", game, m, "untrained", 0, d, body="a3c", eval_episodes=1, overrides={"n_envs": 1})
            teachers.append(load_teacher(d, device=device))
        # the mixed net is built where its teachers are (its Q and w follow the student's device)
        student = KnowledgeFlowStudent(student.to(device), teachers, auto_links(teachers, student.layer_names))
        hook = KnowledgeFlowHook(KFArgs(lambda1=0.1, lambda2=0.01))
    t = time.perf_counter()
    train(args, root / f"run{n_teachers}", agent=student, hook=hook, env=env)
    return steps / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=16_000)
    ap.add_argument("--game", default="Seaquest")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="torch device of the runs: cpu (default) | cuda | cuda:<i> | auto")
    ap.add_argument("--out", default=None, help="append the table to this markdown file")
    a = ap.parse_args()
    label = device_label(a.device)   # before any run: an unusable device fails here
    with tempfile.TemporaryDirectory() as tmp:
        if label:   # off the CPU: the first timed run would otherwise pay for the device's start-up
            bench(a.game, 400, 0, a.threads, Path(tmp) / "warm_up", a.device)
        rates = {n: bench(a.game, a.steps, n, a.threads, Path(tmp), a.device) for n in (0, 1, 2)}
    named = {"A3C baseline (no teacher)" if n == 0 else
             f"Knowledge Flow, {n} teacher{'s' * (n > 1)} (A3C body, all layers linked)": r for n, r in rates.items()}
    publish(cost_table(f"Knowledge Flow cost, {a.game}, {a.steps:,} steps each, torch threads {a.threads}{label}",
                       "student", named), a.out)


if __name__ == "__main__":
    main()
