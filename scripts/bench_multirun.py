"""Throughput of the multi-run learner (common.a2c.Learner.many) against single-run jobs (not a timed test).

  python scripts/bench_multirun.py --game MinAtar/Breakout --net minatar --runs 8 --threads 2 --jobs 1
  python scripts/bench_multirun.py --game Pong --net a3c --runs 4 --threads 2 --jobs 2
  python scripts/bench_multirun.py --game Pong --net a3c --runs 16 --threads 16 --device cuda --kf-teachers 2

Measures side by side, on one machine, one after another:
  1. `--jobs` single-run jobs (K = 1, one torch and one env thread each) running at once in separate processes:
     their summed env steps/s (what `snakemake --cores <jobs>` gets from one job per seed);
  2. one job of `--runs` runs (K = runs) on `--threads` torch and env threads, its runs computed one after
     another (loop) and stacked into batched calls (stacked, common/multirun.py): its aggregate env steps/s;
  3. the random-action rate of that job's vector env alone (K x num_envs envs, same threads): the ceiling;
  4. with `--kf-teachers M`, the same K-run job as Knowledge Flow students, each with the same M frozen teachers
     (untrained zoo PPO teachers with the A3C body: the cost does not depend on what a teacher knows).
Setup (env construction, first reset, `--warmup` updates) is excluded from every timing.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common.bench import device_label, publish


def _args(game, net, seed, threads, device):
    from common.a2c import A2CArgs

    return A2CArgs(game=game, net=net, total_steps=10**10, checkpoint_every=0, log_interval_s=1e9, device=device,
                   torch_threads=threads, env_threads=threads, seed=seed)


def learner_rate(game, net, runs, threads, device, updates, warmup, root, kf_teachers=0, batch="loop",
                 profile=None, overlap=False) -> float:
    """Aggregate env steps/s of one job of `runs` runs; `profile`: also write a cProfile of `updates` more updates
    (top functions by own time) to this file; `overlap`: the job as two overlapped halves (common.multirun)."""
    from common.a2c import Learner, RunSpec
    from common.envs import make_vec_env
    from common.io import seed_everything
    from common.multirun import Overlapped
    from common.nets import make_net

    args = [_args(game, net, s, threads, device) for s in range(runs)]
    parts = Overlapped.halves(list(range(runs))) if overlap else [list(range(runs))]
    envs = [make_vec_env(game, len(p) * args[0].num_envs, num_threads=threads) for p in parts]
    env = envs[0]
    specs = []
    teachers = _teachers(game, kf_teachers, root, device) if kf_teachers else None
    for a in args:
        agent = hook = None
        if teachers:
            from papers.knowledge_flow.method import KFArgs, KnowledgeFlowHook, KnowledgeFlowStudent
            from papers.knowledge_flow.train import auto_links

            seed_everything(a.seed)
            student = make_net(net, env.obs_shape, env.n_actions).to(device)
            agent = KnowledgeFlowStudent(student, teachers, auto_links(teachers, student.layer_names))
            hook = KnowledgeFlowHook(KFArgs(lambda1=0.1, lambda2=0.01))
        specs.append(RunSpec(a, root / f"{batch}_kf{kf_teachers}_ov{int(overlap)}_run{a.seed}", agent, hook))
    learners = [Learner.many([specs[i] for i in p], env=e, batch=batch) for p, e in zip(parts, envs)]
    lr = Overlapped(learners) if overlap else learners[0]
    for _ in range(warmup):
        lr.step()
    _sync(device)
    t = time.perf_counter()
    for _ in range(updates):
        lr.step()
    _sync(device)
    rate = runs * updates * lr.per_update / (time.perf_counter() - t)
    if profile:
        import cProfile
        import io
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        for _ in range(updates):
            lr.step()
        _sync(device)
        prof.disable()
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(25)
        with open(profile, "a") as f:
            f.write(f"## {game} K = {runs} {batch}{'+overlap' * overlap} kf{kf_teachers} on {device}: {updates} "
                    f"updates\n{text.getvalue()}\n")
    lr.close()
    for e in envs:
        e.close()
    return rate


def _teachers(game, n, root, device):
    from common.zoo import load_teacher, train_teacher

    out = []
    for m in range(n):
        d = root / f"teacher{m}"
        if not (d / "model.zip").exists():
            body = "minatar" if game.startswith("MinAtar/") else "a3c"
            train_teacher("ppo", game, m, "untrained", 0, d, body=body, eval_episodes=1,
                          overrides={"n_envs": 2, "n_steps": 64, "batch_size": 64})
        out.append(load_teacher(d, device=str(torch.device(device))))
    return out


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def env_rate(game, n, threads, steps) -> float:
    """Random-action env steps/s of one vector env of n envs."""
    from common.envs import make_vec_env

    env = make_vec_env(game, n, num_threads=threads)
    env.reset(0)
    acts = np.random.default_rng(0).integers(0, env.n_actions, (max(steps // n, 20), n))
    for a in acts[:5]:
        env.step(a)
    t = time.perf_counter()
    for a in acts:
        env.step(a)
    rate = len(acts) * n / (time.perf_counter() - t)
    env.close()
    return rate


def _single_job(q, game, net, seed, updates, warmup, root, barrier):
    torch.set_num_threads(1)
    from common.a2c import Learner

    lr = Learner(_args(game, net, seed, 1, "cpu"), Path(root) / f"single{seed}")
    for _ in range(warmup):
        lr.step()
    barrier.wait()
    t = time.perf_counter()
    for _ in range(updates):
        lr.step()
    q.put(updates * lr.per_update / (time.perf_counter() - t))
    lr.close()


def single_jobs_rate(game, net, jobs, updates, warmup, root) -> float:
    """Summed env steps/s of `jobs` single-run CPU jobs (K = 1, one thread) running at once, one process each."""
    ctx = mp.get_context("spawn")
    q, barrier = ctx.Queue(), ctx.Barrier(jobs)
    ps = [ctx.Process(target=_single_job, args=(q, game, net, 100 + j, updates, warmup, str(root), barrier))
          for j in range(jobs)]
    for p in ps:
        p.start()
    rates = [q.get() for _ in ps]
    for p in ps:
        p.join()
    return sum(rates)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--game", default="MinAtar/Breakout")
    ap.add_argument("--net", default="minatar")
    ap.add_argument("--runs", type=int, default=8, help="K: runs in the multi-run job")
    ap.add_argument("--threads", type=int, default=2, help="torch and env threads of the multi-run job")
    ap.add_argument("--jobs", type=int, default=1, help="single-run jobs at once for the comparison (0: skip)")
    ap.add_argument("--device", default="cpu", help="device of the multi-run job: cpu | cuda | auto")
    ap.add_argument("--kf-teachers", type=int, default=0, help="also time the job as KF students with M teachers")
    ap.add_argument("--updates", type=int, default=100, help="timed updates per measurement")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", default="loop,stacked",
                    help="engines to time for the K-run job (comma-separated: loop, stacked, auto; a '+overlap' "
                         "suffix times the job as two overlapped halves, common.multirun.Overlapped)")
    ap.add_argument("--profile", default=None, help="append a cProfile of each K-run job to this file")
    ap.add_argument("--out", default=None, help="append the table to this markdown file")
    a = ap.parse_args()
    label = device_label(a.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = {}
        if a.jobs:
            single = single_jobs_rate(a.game, a.net, a.jobs, a.updates, a.warmup, root)
            rows[f"{a.jobs} single-run job{'s' * (a.jobs > 1)} at once (K = 1, 1 thread each, cpu)"] = single
        k_updates = max(20, a.updates // a.runs)
        for batch in a.batch.split(","):
            overlap = batch.endswith("+overlap")
            rows[f"one job, K = {a.runs} runs, {a.threads} threads, {a.device}, {batch}"] = learner_rate(
                a.game, a.net, a.runs, a.threads, a.device, k_updates, a.warmup, root,
                batch=batch.removesuffix("+overlap"), profile=a.profile, overlap=overlap)
        if a.kf_teachers:
            rows[f"one job, K = {a.runs} Knowledge Flow students, {a.kf_teachers} teachers, {a.device}, loop"] = \
                learner_rate(a.game, a.net, a.runs, a.threads, a.device, k_updates, a.warmup, root, a.kf_teachers,
                             profile=a.profile)
        n_envs = a.runs * 16
        ceiling = env_rate(a.game, n_envs, a.threads, 40 * n_envs)
    base = rows[next(iter(rows))] if a.jobs else None
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [f"### Multi-run learner, {a.game} ({a.net} net), K = {a.runs}, {a.threads} threads{label}, "
             f"{platform.machine()}, {mp.cpu_count()} cores, torch {torch.__version__}, commit {commit}", "",
             f"`python scripts/bench_multirun.py --game {a.game} --net {a.net} --runs {a.runs} --threads {a.threads} "
             f"--jobs {a.jobs} --device {a.device} --kf-teachers {a.kf_teachers} --updates {a.updates} "
             f"--batch {a.batch}`", "",
             "| what | env steps/s | vs single-run jobs | vs env alone |", "|---|---:|---:|---:|"]
    for name, r in rows.items():
        vs_jobs = f"{r / base:.2f}x" if base else "-"
        lines.append(f"| {name} | {r:,.0f} | {vs_jobs} | {r / ceiling:.0%} |")
    lines.append(f"| the job's vector env alone, random actions ({n_envs} envs, {a.threads} threads) | "
                 f"{ceiling:,.0f} | | 100% |")
    publish("\n".join(lines) + "\n", a.out)


if __name__ == "__main__":
    main()
