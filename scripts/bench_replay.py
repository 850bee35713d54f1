"""Throughput and size of the replay memory (common/replay.py): uniform vs rank-based PR vs H-PR (p = 5).

Fills each memory to N experiences (84x84 frames drawn from a pool of random frames, random teacher
Q-values over 18 actions, V(s) spread evenly over [V_min, V_max], random priorities), then times
sample(32) and update_priorities(32) (including the amortised rank re-sorts) for about --seconds each.
Prints a markdown table and the bytes per experience with what they mean for the paper tier.

    python scripts/bench_replay.py                 # N = 1M, the paper's memory: ~7.2 GB of RAM per kind, minutes
    python scripts/bench_replay.py --n 200000      # about 30 s on 2 cores
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common.replay import ReplayMemory

GiB = 2**30


def timed(fn, seconds):
    n, t0 = 0, time.perf_counter()
    while (dt := time.perf_counter() - t0) < seconds:
        fn()
        n += 1
    return n / dt


def bench(kind, n, p, batch, seconds, seed=0):
    rng = np.random.default_rng(seed)
    cfg = dict(kind=kind, capacity=n, partitions=p, partition_capacity=n // p)
    mem = ReplayMemory(cfg, n_actions=18, v_range=(0.0, 1.0))
    frames = rng.integers(0, 256, (256, 84, 84), dtype=np.uint8)
    q = rng.normal(size=(256, 18)).astype(np.float32)
    values = (rng.permutation(mem.F) + 0.5) / mem.F  # even over [0, 1), off the edges: partitions fill exactly
    t0 = time.perf_counter()
    for t in range(mem.F):
        mem.add(frames[t % 256], q[t % 256], episode_start=t % 2000 == 0, value=values[t])
    add_rate = mem.F / (time.perf_counter() - t0)
    idx, _ = mem.probabilities()
    mem.update_priorities(idx, rng.random(len(idx)))
    mem.refresh()
    sample_rate = timed(lambda: mem.sample(batch, rng, beta=0.5), seconds)

    def update():
        i, _, _ = mem.sample(batch, rng, beta=0.5)
        t = time.perf_counter()
        mem.update_priorities(i, rng.random(batch))
        update.s += time.perf_counter() - t
        update.calls += 1
    update.s, update.calls = 0.0, 0
    timed(update, seconds)
    update_rate = update.calls * batch / update.s if kind != "uniform" else float("nan")
    return dict(kind=kind, n=len(mem), bpe=mem.bytes_per_experience, add=add_rate,
                batches=sample_rate, samples=sample_rate * batch, updates=update_rate)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="experiences per memory")
    ap.add_argument("--p", type=int, default=5, help="H-PR partitions")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = ap.parse_args()
    rows = [bench(k, args.n, args.p, args.batch, args.seconds) for k in ("uniform", "rank", "hpr")]
    uni = rows[0]["samples"]
    print(f"## Replay memory, N = {args.n:,} experiences (84x84 frames, 18 actions), batch {args.batch}\n")
    print("| sampler | valid exp. | bytes/exp. | adds/s | minibatches/s | samples/s | vs uniform "
          "| priority updates/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        name = {"uniform": "uniform", "rank": "rank (PR)", "hpr": f"hpr (p={args.p})"}[r["kind"]]
        upd = "-" if np.isnan(r["updates"]) else f"{r['updates']:,.0f}"
        print(f"| {name} | {r['n']:,} | {r['bpe']:,.0f} | {r['add']:,.0f} | {r['batches']:,.0f} | "
              f"{r['samples']:,.0f} | {r['samples'] / uni:.2f} | {upd} |")
    print("\nBytes per experience as measured above (the 84x84 frame alone is 7,056). "
          "Paper tier, allocated but not filled:")
    paper = {"H-PR 10 games x 5 x 200k": dict(kind="hpr"), "Uniform 10 games x 500k": dict(kind="uniform")}
    for what, cfg in paper.items():
        mem = ReplayMemory(cfg, n_actions=18, v_range=(0.0, 1.0))  # np.zeros pages are not touched
        tot = 10 * mem.nbytes / GiB
        print(f"- {what}: {mem.bytes_per_experience:,.0f} B/exp., {tot:.1f} GiB -> "
              f"{'fits' if tot <= 24 else 'does NOT fit'} 24 GiB")
        del mem
    print(f"- 24 GiB holds {int(24 * GiB / rows[2]['bpe'] / 10):,} experiences per game for 10 games")


if __name__ == "__main__":
    main()
