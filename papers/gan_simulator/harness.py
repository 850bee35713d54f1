"""What the GAS image and policy experiments share: one method run under the data guard (:func:`run_method`),
the GASArgs of a method and seed (:func:`method_args`), the progress lines (:func:`progress_log`), the per-method
summary over seeds (:func:`summarise`) and the results files (:func:`write_results`).

Data provenance: the real training set (image experiments, images.py) and the real teacher rollouts (policy,
policy.py) are wrapped in a :class:`RealDataGuard`, locked while any data-free method runs: touching it raises
:class:`RealDataLeak`. After each data-free run the batch provenance recorded by ``distill`` is checked too
(no batch may hold a real input). Only ``kd_real`` sees real data, by construction.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from common.io import write_csv, write_json
from papers.gan_simulator.guard import RealDataGuard, RealDataLeak
from papers.gan_simulator.method import DATA_FREE_METHODS, GENERATOR_METHODS, GASArgs, distill


def run_method(method: str, teacher: nn.Module, student: nn.Module, gas: GASArgs, guard: RealDataGuard,
               real_batch_size: int, **kw):
    """``distill`` one method with the data guard: data-free methods run with the real data locked, and their
    recorded provenance is checked (no real input in any student batch); kd_real gets a seeded loader."""
    if method in DATA_FREE_METHODS:
        with guard.lock(method):
            res = distill(teacher, student, gas, data_free=True, noise_only=method == "kd_noise", **kw)
        leaked = sum(r["real"] for r in res.provenance)
        if leaked or "real" in res.sources_seen():
            raise RealDataLeak(f"data-free method '{method}' fed {leaked} real inputs to the student")
        return res
    loader = torch.utils.data.DataLoader(guard, batch_size=real_batch_size, shuffle=True, drop_last=False,
                                         generator=torch.Generator().manual_seed(gas.seed))
    return distill(teacher, student, gas, data_free=False, real_loader=loader, **kw)


def progress_log(label: str, total_steps: int, out=None):
    """A ``distill`` log callback that prints one progress line per record (every ``log_every`` student steps):
    step, share done, elapsed, ETA and the record's accuracy / losses, to stderr."""
    import sys

    t0 = time.perf_counter()
    out = out or sys.stderr

    def log(rec: dict) -> None:
        step, dt = int(rec.get("student_step", 0)), time.perf_counter() - t0
        eta = dt / step * (total_steps - step) if step else float("nan")
        extra = " | ".join(f"{k} {rec[k]:.3g}" for k in ("test_acc", "loss_student", "loss_generator")
                           if isinstance(rec.get(k), (int, float)))
        print(f"[{label}] student step {step:,}/{total_steps:,} ({100 * step / max(total_steps, 1):.0f}%) | "
              f"{dt:.0f} s | ETA {eta:.0f} s" + (f" | {extra}" if extra else ""), file=out, flush=True)

    return log


def method_args(method: str, seed: int, gas: dict, overrides: dict, **fixed) -> GASArgs:
    """GASArgs of one method and seed: the shared ``gas`` fields, the method's overrides, then `fixed`."""
    d = {**gas, **overrides.get(method, {}), **fixed, "method": method, "seed": int(seed)}
    if method not in GENERATOR_METHODS:  # the no-generator bounds reject generator fields set for everyone
        d = {k: v for k, v in d.items() if k not in ("w_one_hot", "w_info_entropy", "w_activation", "w_adv",
                                                     "reinit_every", "buffer_mix", "g_steps")
             or k in overrides.get(method, {})}
    return GASArgs.from_dict(d)

def summarise(rows: list[dict], key: str) -> dict:
    """{method: {mean, std, median, min, max, n_seeds}} of rows[key] over seeds (std: population, ddof 0)."""
    out = {}
    for m in dict.fromkeys(r["method"] for r in rows):
        v = np.array([r[key] for r in rows if r["method"] == m], dtype=float)
        out[m] = {f"{key}_mean": float(v.mean()), f"{key}_std": float(v.std()), f"{key}_median": float(np.median(v)),
                  f"{key}_min": float(v.min()), f"{key}_max": float(v.max()), "n_seeds": int(len(v))}
    return out


def write_results(result: dict, curves: list[dict], out_dir) -> None:
    """results.csv and curves.csv, then results.json (the completion marker), each atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, recs in (("results.csv", result["rows"]), ("curves.csv", curves)):
        write_csv(out / name, recs, list(dict.fromkeys(k for r in recs for k in r)) or ["method", "seed"])
    write_json(out / "results.json", result)
