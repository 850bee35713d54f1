"""Sweeps and statistics: per-seed hyperparameters, top-k (paper protocol), IQM with stratified bootstrap CIs.

Every table is reported twice (STYLE.md): the papers' protocol, the mean of the best k of n seeds, and the
honest all-seeds view, the interquartile mean (IQM) with a 95% stratified bootstrap interval as rliable
(Agarwal et al., 2021) computes it. All functions are pure: numbers in, numbers out.

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
    """IQM over all runs of all tasks and its stratified bootstrap CI (runs resampled within each task)."""
    # n_runs == 1 everywhere: no spread to resample, the interval is the point. With 2-3 runs the interval
    # is still computed but is only as wide as the few runs allow (it never leaves [min, max]): read it as
    # a rough range, not a calibrated 95% interval.
    cols = [np.asarray(v, dtype=float).ravel() for v in scores_by_task.values()]
    if not cols or any(len(c) == 0 for c in cols):
        raise ValueError(f"iqm_ci: every task needs at least one score, got sizes {[len(c) for c in cols]}")
    if not all(np.isfinite(c).all() for c in cols):
        raise ValueError("iqm_ci: scores contain NaN/inf; drop failed runs first (summarise does)")
    point = iqm(np.concatenate(cols))
    if max(len(c) for c in cols) == 1:
        return point, point, point
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


def summarise(df: pd.DataFrame, score: str = "score", by=DEFAULT_BY, k: int = 3,
              reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per group: n_seeds, topk_mean, topk_std (paper protocol), iqm [iqm_low, iqm_high], mean, median."""
    by = list(by)
    rows = []
    for key, g in df[df[score].notna()].groupby(by, sort=True):
        x = g[score].to_numpy(dtype=float)
        best = np.sort(x)[::-1][:k]  # same values as top_k (ties only change which seed, not the value)
        point, low, high = iqm_ci_single(x, reps=reps, seed=seed)
        rows.append(dict(zip(by, key if isinstance(key, tuple) else (key,)),
                         n_seeds=len(x), topk_mean=best.mean(), topk_std=best.std(ddof=1) if len(best) > 1 else np.nan,
                         iqm=point, iqm_low=low, iqm_high=high, mean=x.mean(), median=float(np.median(x))))
    cols = by + ["n_seeds", "topk_mean", "topk_std", "iqm", "iqm_low", "iqm_high", "mean", "median"]
    return pd.DataFrame(rows, columns=cols)


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
