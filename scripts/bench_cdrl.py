"""Throughput benchmark of cA3C (papers/cdrl): env steps/s of each method against the A3C baseline (not a test).

  python scripts/bench_cdrl.py [--steps 8000] [--threads 1] [--device cpu] [--out results/benchmarks.md]

Runs, one after another in one process, on Bowling with the paper's learner settings (CA3CNet, 42x42 one
frame, 8 envs, 20-step rollouts): the A3C baseline; KD-policy and KD-distill from one Pong teacher without F
(Fig. 4); KD-distill through the online alignment network F from step 0 (Fig. 6b/c after T2: F and the
distillation step both train every update); and the collaborative mode (Fig. 6d: a Pong source learner and
the Bowling target in lock-step, F and distillation on). The teacher is a cA3C run of a few hundred steps:
the cost does not depend on what it knows. Only training is timed (env construction and the final
evaluation are not); for the collaborative run the rate is the target's env steps per second, and it also
steps the source's envs (twice the env steps of a single run).

``--device`` (default cpu, the device of the recorded tables) runs the teacher and every timed run there (cuda,
cuda:1, auto); the teacher's run also warms the device up before the first timed run. Off the CPU the table's
title names the device and the GPU, so that CPU and GPU figures are never read as one table.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import torch

from common.bench import cost_table, device_label, publish


def bench_single(method: str, steps: int, threads: int, teacher: Path | None, root: Path, ca3c: dict,
                 device: str = "cpu") -> float:
    from common.a2c import A2CArgs, train
    from common.envs import make_vec_env
    from common.io import seed_everything
    from papers.cdrl.train import RunArgs, build

    d = {"method": method, "a2c": {"game": "Bowling", "seed": 0, "total_steps": steps, "checkpoint_every": 0,
                                   "log_interval_s": 1e9, "device": device, "torch_threads": threads}}
    if teacher is not None:
        d["ca3c"] = {"teachers": [str(teacher)], **ca3c}
    run_args = RunArgs.from_dict(d)
    a2c = A2CArgs.from_dict(run_args.a2c_args())
    seed_everything(a2c.seed)
    env = make_vec_env(a2c.game, a2c.num_envs, a2c.protocol, num_threads=a2c.env_threads)
    student, hook, _ = build(run_args, env)
    t = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        train(a2c, root / method, agent=student, hook=hook, env=env)
    return steps / (time.perf_counter() - t)


def bench_collaborative(steps: int, threads: int, root: Path, device: str = "cpu") -> float:
    from papers.cdrl.collaborative import Collaborative
    from papers.cdrl.train import RunArgs

    run_args = RunArgs.from_dict({"method": "collaborative", "a2c": {
        "game": "Bowling", "seed": 0, "total_steps": steps, "checkpoint_every": 0, "log_interval_s": 1e9,
        "device": device, "torch_threads": threads}, "ca3c": {"align_from": 0, "distill_from": 0}})
    col = Collaborative(run_args, root / "collaborative")
    t = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        col.train(None)
    return steps / (time.perf_counter() - t)


def make_teacher(root: Path, threads: int, device: str = "cpu") -> Path:
    from papers.cdrl.train import RunArgs, run

    out = root / "teacher_pong"
    with contextlib.redirect_stderr(io.StringIO()):
        run(RunArgs.from_dict({"method": "a3c", "eval": {"episodes": 1},
                               "a2c": {"game": "Pong", "seed": 1, "total_steps": 320, "device": device,
                                       "torch_threads": threads}}), out)
    return out


ROWS = [  # (name, method, ca3c options)
    ("A3C baseline", "a3c", None),
    ("KD-policy, 1 teacher, no F (Fig. 4a)", "kd_policy", {"use_alignment": False, "distill_from": 0}),
    ("KD-distill, 1 teacher, no F (Fig. 4b)", "kd_distill", {"use_alignment": False, "distill_from": 0}),
    ("KD-distill, 1 teacher, online F from step 0 (Fig. 6b/c)", "kd_distill", {"align_from": 0, "distill_from": 0}),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="torch device of the runs: cpu (default) | cuda | cuda:<i> | auto")
    ap.add_argument("--out", default=None, help="append the table to this markdown file")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    label = device_label(a.device)   # before any run: an unusable device fails here
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        teacher = make_teacher(root, a.threads, a.device)
        for i, (name, method, ca3c) in enumerate(ROWS):
            rates[name] = bench_single(method, a.steps, a.threads, None if ca3c is None else teacher,
                                       root / str(i), ca3c or {}, a.device)
            print(f"{name}: {rates[name]:,.0f} steps/s", flush=True)
        name = "collaborative (Pong source + Bowling target, F and distillation on; target steps)"
        rates[name] = bench_collaborative(a.steps, a.threads, root, a.device)
        print(f"{name}: {rates[name]:,.0f} steps/s", flush=True)
    publish(cost_table(f"cA3C cost, Bowling, {a.steps:,} steps each, torch threads {a.threads}{label}", "run", rates),
            a.out)


if __name__ == "__main__":
    main()
