"""Sweeps and statistics: per-seed hyperparameters, top-k (paper protocol), the all-seeds view.

Every table is reported twice (STYLE.md): the papers' protocol, the mean of the best k of n seeds, and the
honest all-seeds view. The all-seeds view depends on how many seeds there are (issue 15's rule):

* below ``MIN_SEEDS_IQM`` (5) seeds: each seed's value and their mean [min, max], no IQM and no interval
  (a 25%-trimmed mean of 2-4 values trims nothing, and a bootstrap of so few values is only their range,
  not a calibrated 95% interval);
* from ``MIN_SEEDS_IQM`` seeds: the interquartile mean (IQM) with a 95% stratified bootstrap interval as
  rliable (Agarwal et al., 2021) computes it.

:func:`seed_stats` and :func:`summarise` apply the rule; :func:`iqm_ci` refuses fewer seeds. All functions
are pure: numbers in, numbers out (common.report formats them).

Bootstrap backend
-----------------
The interval is computed by ``rliable.library.get_interval_estimates`` (Agarwal et al. 2021). rliable 1.2
imports ``arch`` 7, which does not import under pandas 3, hence the ``pandas<3`` pin in pyproject.toml.
rliable's ``random_state`` argument does not reach its index draws (they use ``np.random``), so
:func:`iqm_ci` seeds the global RNG from ``seed`` and restores its previous state afterwards.
"""

from __future__ import annotations

import zlib
from contextlib import contextmanager

import numpy as np
import pandas as pd
from scipy import stats as sps

from rliable import library as rly  # needs pandas<3 (see "Bootstrap backend")

CURVE_COLUMNS = ("env_steps", "frames", "wall_time", "episode_return", "episode_length")
DEFAULT_BY = ("method", "game")
MIN_SEEDS_IQM = 5
"""from this many seeds (runs per task) the all-seeds view is the IQM and its stratified-bootstrap 95% CI;
below it, the per-seed values and their mean [min, max] (issue 15)"""


# ----------------------------------------------------------------------------------------------- sweeps
def sample_hparams(seed: int, grid: dict[str, list]) -> dict:
    """Per-seed hyperparameters: each value drawn uniformly from its list, a pure function of (seed, name)."""
    # one generator per key, seeded by (seed, crc32(name)): independent of dict order and of the other keys;
    # crc32 because python's hash() of a str changes from process to process
    out = {}
    for name, values in grid.items():
        if len(values) == 0:
            raise ValueError(f"sample_hparams: the grid for '{name}' is empty; give at least one value")
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        out[name] = values[int(rng.integers(len(values)))]
    return out


# ------------------------------------------------------------------------------- top-k (paper protocol)
def top_k(df: pd.DataFrame, k: int, score: str = "score", by=DEFAULT_BY, seed_col: str = "seed") -> pd.DataFrame:
    """Per group of `by`, the k rows with the highest `score` (ties: lower seed first); NaN scores never count."""
    by = list(by)
    d = df[df[score].notna()]
    d = d.sort_values(by + [score, seed_col], ascending=[True] * len(by) + [False, True], kind="mergesort")
    return d.groupby(by, sort=False).head(k).reset_index(drop=True)


def top_k_mean(df: pd.DataFrame, k: int, score: str = "score", by=DEFAULT_BY) -> pd.DataFrame:
    """Per group: topk_mean, topk_std (sample std, ddof=1; NaN for one seed) and topk_n of the best k seeds."""
    g = top_k(df, k, score, by).groupby(list(by), sort=True)[score]
    return g.agg(topk_mean="mean", topk_std="std", topk_n="count").reset_index()


# ------------------------------------------------------------------------------------- IQM and its CI
def iqm(x) -> float:
    """Interquartile mean: the mean of the middle 50% of all values (rliable's metrics.aggregate_iqm)."""
    # IQM = trim_mean(x, 0.25): drop floor(0.25 n) values at each end, average the rest
    return float(sps.trim_mean(np.asarray(x, dtype=float), proportiontocut=0.25, axis=None))


@contextmanager
def _seeded_global_rng(seed: int):
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def iqm_ci(scores_by_task: dict[str, np.ndarray], reps: int = 2000, seed: int = 0,
           size: float = 0.95) -> tuple[float, float, float]:
    """IQM over all runs of all tasks and its stratified bootstrap CI (runs resampled within each task).

    Every task needs at least MIN_SEEDS_IQM runs: with fewer, the bootstrap interval is no 95% interval (it
    is at most the runs' [min, max]); report seed_stats' per-seed values and mean [min, max] instead."""
    cols = [np.asarray(v, dtype=float).ravel() for v in scores_by_task.values()]
    if not cols or min(len(c) for c in cols) < MIN_SEEDS_IQM:
        raise ValueError(f"iqm_ci: every task needs at least {MIN_SEEDS_IQM} runs for an IQM with a 95% interval, "
                         f"got sizes {[len(c) for c in cols]}; below that report the per-seed values and mean "
                         "[min, max] (stats.seed_stats)")
    if not all(np.isfinite(c).all() for c in cols):
        raise ValueError("iqm_ci: scores contain NaN/inf; drop failed runs first (summarise does)")
    point = iqm(np.concatenate(cols))
    equal = len({len(c) for c in cols}) == 1
    data = np.stack(cols, axis=1) if equal else [c[:, None] for c in cols]
    with _seeded_global_rng(seed):
        func = (lambda x: np.array([iqm(x)])) if equal else (lambda *xs: np.array([iqm(np.concatenate(xs))]))
        _, ci = rly.get_interval_estimates({"x": data}, func, reps=reps, confidence_interval_size=size)
        low, high = (float(v) for v in np.asarray(ci["x"]).ravel())
    return point, low, high


def iqm_ci_single(x, reps: int = 2000, seed: int = 0, size: float = 0.95) -> tuple[float, float, float]:
    """IQM and bootstrap CI of one group (one task): iqm_ci with a single stratum."""
    return iqm_ci({"task": x}, reps=reps, seed=seed, size=size)


def seed_stats(x, reps: int = 2000, seed: int = 0) -> dict:
    """The all-seeds view of one group's per-seed values (in seed order; NaN = a failed run, dropped).

    n_seeds, mean, min, max, median and per_seed (the values, a tuple) always; iqm, iqm_low, iqm_high (IQM and
    its 95% bootstrap CI) from MIN_SEEDS_IQM seeds, NaN below."""
    x = np.asarray(x, dtype=float).ravel()
    x = x[~np.isnan(x)]
    out = {"n_seeds": len(x), "mean": np.nan, "min": np.nan, "max": np.nan, "median": np.nan,
           "per_seed": tuple(float(v) for v in x), "iqm": np.nan, "iqm_low": np.nan, "iqm_high": np.nan}
    if len(x):
        out.update(mean=float(x.mean()), min=float(x.min()), max=float(x.max()), median=float(np.median(x)))
    if len(x) >= MIN_SEEDS_IQM:
        out["iqm"], out["iqm_low"], out["iqm_high"] = iqm_ci_single(x, reps=reps, seed=seed)
    return out


SUMMARY_COLUMNS = ("n_seeds", "topk_mean", "topk_std", "mean", "min", "max", "median", "per_seed", "iqm", "iqm_low",
                   "iqm_high")


def summarise(df: pd.DataFrame, score: str = "score", by=DEFAULT_BY, k: int = 3,
              reps: int = 2000, seed: int = 0, seed_col: str = "seed") -> pd.DataFrame:
    """One row per group: n_seeds, topk_mean, topk_std (paper protocol), then seed_stats' all-seeds view: mean,
    min, max, median, per_seed (in `seed_col` order where the frame has it) and, from MIN_SEEDS_IQM seeds,
    iqm [iqm_low, iqm_high] (NaN below)."""
    by = list(by)
    rows = []
    d = df[df[score].notna()]
    if seed_col in d.columns:
        d = d.sort_values(seed_col, kind="mergesort")
    for key, g in d.groupby(by, sort=True):
        x = g[score].to_numpy(dtype=float)
        best = np.sort(x)[::-1][:k]  # same values as top_k (ties only change which seed, not the value)
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))),
                     "topk_mean": best.mean(), "topk_std": best.std(ddof=1) if len(best) > 1 else np.nan,
                     **seed_stats(x, reps=reps, seed=seed)})
    return pd.DataFrame(rows, columns=by + list(SUMMARY_COLUMNS))


# ---------------------------------------------------------------------------------------------- curves
def curve_to_grid(curve_df: pd.DataFrame, steps_grid, window: int = 100, score: str = "episode_return",
                  step_col: str = "env_steps") -> np.ndarray:
    """Smoothed score at each grid step: mean of the last `window` episodes finished at or before it (NaN before)."""
    # s(g) = mean{ R_i : i among the last min(window, n(g)) episodes }, n(g) = #{ episodes with step_i <= g }
    d = curve_df.sort_values(step_col, kind="mergesort")
    steps, ret = d[step_col].to_numpy(), d[score].to_numpy(dtype=float)
    csum = np.concatenate([[0.0], np.cumsum(ret)])
    n = np.searchsorted(steps, np.asarray(steps_grid), side="right")
    w = np.minimum(n, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (csum[n] - csum[n - w]) / w
    return np.where(n > 0, out, np.nan)
