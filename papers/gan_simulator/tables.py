"""Generative Adversarial Simulator tables and figures from the experiments' results.json (pure aggregation).

  python -m papers.gan_simulator.tables images --runs runs/<tier>/gan_simulator --tier <tier> --plan '<json>' \
      --reported papers/gan_simulator/reported.csv --out-csv I.csv --out-md I.md --out-fig I.png
  python -m papers.gan_simulator.tables modes --runs runs/<tier>/gan_simulator --tier <tier> --plan '<json>' \
      --out-csv M.csv --out-md M.md --out-fig M.png
  python -m papers.gan_simulator.tables policy --results R1.json [R2.json ...] --tier <tier> \
      --out-csv P.csv --out-md P.md --out-fig P.png

--plan is :func:`papers.gan_simulator.plan.tier_plan` as JSON: the tier's image presets and, for each, why it was
not run (None when it ran). Every published baseline row appears, with our number or "not run: <reason>".
Accuracies are top-1 test accuracy in % (higher is better); all-seeds statistics sit next to the best seed (the
top-1 view): every seed's value and their mean [min, max] below 5 seeds, the IQM with its 95% stratified-bootstrap
interval from 5 (common.report), and the mean, std, median and min.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from common.io import atomic_path, read_json
from common.report import (NOT_RUN, all_seeds_caption, all_seeds_view, git_commit, load_reported, save_figure,
                           to_markdown)
from common.stats import seed_stats

TABLE = "Image classification"
METHOD_LABELS = {
    "teacher": "teacher",
    "dafl": "DAFL",
    "dfad": "DFAD (adversarial only)",
    "ours": "ours (re-init + exemplar buffer)",
    "kd_real": "KD on real data (upper bound)",
    "kd_noise": "KD on noise (lower bound)",
    "random": "random policy",
}
PUBLISHED = {"dafl": "DAFL", "dfad": "DFAD", "teacher": "Teacher (DAFL)"}   # our method -> reported.csv column
DATASET_ROWS = {"mnist": "MNIST", "cifar10": "CIFAR-10", "fashion_mnist": "Fashion-MNIST",
                "digits": "digits (offline stand-in for MNIST)"}
PAPER_DATASETS = {"mnist": "MNIST", "cifar10": "CIFAR-10"}   # datasets with published baselines
IMAGE_COLUMNS = ["experiment", "dataset", "method", "published", "ours_mean", "ours_std", "ours_median", "ours_min",
                 "ours_best", "n_seeds", "ratio", "student_steps"]


def _per_seed(rows: list[dict], method: str, key: str) -> dict:
    """stats.seed_stats of rows[key] of one method, in seed order."""
    v = sorted((r.get("seed", 0), r[key]) for r in rows if r["method"] == method)
    return seed_stats([x for _, x in v])


def _with_all_seeds(df: pd.DataFrame, stats: list[dict], after: str, prefix: str) -> pd.DataFrame:
    """df with the all-seeds columns of `stats` (one seed_stats per row; common.report.all_seeds_view) after `after`."""
    view = all_seeds_view(pd.DataFrame(stats, index=df.index), prefix)
    i = df.columns.get_loc(after) + 1
    return pd.concat([df.iloc[:, :i], view, df.iloc[:, i:]], axis=1)


def _load(runs: Path, exp: str) -> dict:
    f = runs / exp / "results.json"
    if not f.exists():
        raise FileNotFoundError(f"{f} is missing: run the pipeline's gas_image rule for '{exp}' first")
    return read_json(f)


def image_table(runs, plan: dict, reported: pd.DataFrame) -> pd.DataFrame:
    """One row per (preset, method) of the tier, plus the published baselines' datasets the tier lacks.

    published = the published baseline's accuracy for that method and dataset (DAFL, DFAD; docs/reference_notes.md §4);
    ours_* = statistics over seeds of the student's test accuracy (%); ours_best = the best seed (top-1 view);
    ratio = ours_mean / published. The all-seeds cell after ours_mean: 'ours mean [min, max]' below 5 seeds,
    'ours IQM [95% CI]' from 5, with 'ours per seed' (common.report.all_seeds_view).
    """
    runs = Path(runs)
    rep = reported[reported["table"] == TABLE]
    pub = {(r, c): v for r, c, v in zip(rep["row"], rep["column"], rep["value_num"])}
    out, stats = [], []
    exps = list(plan) + [d for d in PAPER_DATASETS if not any(p.get("dataset") == d for p in plan.values())]
    for exp in exps:
        p = plan.get(exp)
        dataset = p["dataset"] if p else exp
        row = DATASET_ROWS.get(dataset, dataset)
        if p is None or p["not_run"] is not None:
            why = p["not_run"] if p else "not in this tier (add it to gan_simulator.images)"
            methods = ["teacher", "dafl", "dfad", "ours", "kd_real", "kd_noise"]
            for m in methods:
                out.append({"experiment": exp, "dataset": row, "method": METHOD_LABELS[m],
                            "published": pub.get((row, PUBLISHED.get(m, "")), np.nan),
                            "ours_mean": f"{NOT_RUN}: {why}", "n_seeds": 0})
                stats.append(seed_stats([]))
            continue
        res = _load(runs, exp)
        t = res["teacher"]["test_acc"]
        out.append({"experiment": exp, "dataset": row, "method": "teacher",
                    "published": pub.get((row, PUBLISHED["teacher"]), np.nan), "ours_mean": t, "ours_std": 0.0,
                    "ours_median": t, "ours_min": t, "ours_best": t, "n_seeds": 1})
        stats.append(seed_stats([t]))
        for m in res["args"]["methods"]:                     # the config's order (results.json sorts its keys)
            s = res["summary"][m]
            published = pub.get((row, PUBLISHED.get(m, "")), np.nan)
            out.append({"experiment": exp, "dataset": row, "method": METHOD_LABELS.get(m, m), "published": published,
                        "ours_mean": s["student_acc_mean"], "ours_std": s["student_acc_std"],
                        "ours_median": s["student_acc_median"], "ours_min": s["student_acc_min"],
                        "ours_best": s["student_acc_max"], "n_seeds": s["n_seeds"],
                        "ratio": s["student_acc_mean"] / published if np.isfinite(published) and published else np.nan,
                        "student_steps": res["gas"][m]["student_steps"]})
            stats.append(_per_seed(res["rows"], m, "student_acc"))
    df = pd.DataFrame(out).reindex(columns=IMAGE_COLUMNS)
    df["n_seeds"] = df["n_seeds"].fillna(0).astype(int)
    df["student_steps"] = pd.Series([int(v) if pd.notna(v) else np.nan for v in df["student_steps"]], dtype=object)
    return _with_all_seeds(df, stats, "ours_mean", "ours")


def modes_table(runs, plan: dict) -> pd.DataFrame:
    """Per-mode accuracy (%) of the teacher and every method (mean over seeds) for the presets with a class_map.

    Column 'c<k>: <d>' = accuracy on the test inputs of original label d, which belong to class k; worst_mode =
    the lowest of them; modes_recovered = modes with accuracy >= 50% (of all modes).
    """
    runs = Path(runs)
    out = []
    for exp, p in plan.items():
        if p["not_run"] is not None:
            continue
        res = _load(runs, exp)
        cmap = res["args"].get("class_map")
        if cmap is None:
            continue
        cols = {d: f"c{k}: {d}" for d, k in sorted(enumerate(cmap), key=lambda dk: (dk[1], dk[0]))}
        recs = [("teacher", 1, {int(d): v for d, v in res["teacher"]["mode_acc"].items()})]
        rows = pd.DataFrame(res["rows"])
        for m in dict.fromkeys(rows["method"]):
            sub = rows[rows["method"] == m]
            recs.append((m, len(sub), {d: float(sub[f"mode_acc_{d}"].mean()) for d in cols}))
        for m, n, acc in recs:
            rec = {"experiment": exp, "method": METHOD_LABELS.get(m, m), "n_seeds": n}
            rec.update({cols[d]: acc[d] for d in cols})
            rec["worst_mode"] = min(acc.values())
            rec["modes_recovered"] = f"{sum(v >= 50.0 for v in acc.values())}/{len(acc)}"
            out.append(rec)
    return pd.DataFrame(out)


def policy_table(results: list[dict]) -> pd.DataFrame:
    """One row per (game, method): game score over seeds, action agreement with the teacher on held-out real
    states, and the normalised score (score - random) / (teacher - random) (NaN when teacher = random); after
    score_std the all-seeds columns of the score (common.report.all_seeds_view, prefix 'score')."""
    out, stats = [], []
    for res in results:
        teacher, rnd = res["teacher"]["score"], res["random"]["score"]
        gap = teacher - rnd
        steps = {r["method"]: r.get("student_steps") for r in res["rows"]}
        for m in ["teacher", "random"] + list(res["args"]["methods"]):
            s, ag = res["summary"][m], res["agreement"].get(m, {})
            out.append({"game": res["game"], "method": METHOD_LABELS.get(m, m), "score_mean": s["score_mean"],
                        "score_std": s["score_std"], "n_seeds": s["n_seeds"],
                        "agreement_mean": ag.get("agreement_mean", 100.0 if m == "teacher" else np.nan),
                        "normalised": (s["score_mean"] - rnd) / gap if gap else np.nan,
                        "student_steps": int(steps[m]) if steps.get(m) is not None else ""})
            stats.append(_per_seed(res["rows"], m, "score"))
    if not out:
        return pd.DataFrame(out)
    return _with_all_seeds(pd.DataFrame(out), stats, "score_std", "score")


# -------------------------------------------------------------------------------------------------- figures
def _bars(ax, labels, values, seeds=None, ticks=None, ylabel=""):
    x = np.arange(len(labels))
    ax.bar(x, values, color="C0", alpha=0.5, label="mean over seeds")
    for i, s in enumerate(seeds or []):
        ax.plot(np.full(len(s), i), s, "o", color="C0", ms=3, label="seeds" if i == 0 else None)
    if ticks is not None and np.isfinite(ticks).any():
        ax.plot(x, ticks, "_", color="k", ms=18, mew=2, label="published baseline")
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)


def _empty(fig, text):
    ax = fig.subplots()
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_axis_off()


def plot_images(table: pd.DataFrame, runs, path, title: str):
    ran = table[table["n_seeds"] > 0]
    exps = list(dict.fromkeys(ran["experiment"]))
    ncols = max(1, min(3, len(exps)))
    fig = Figure(figsize=(4.8 * ncols, 4.2 * max(1, math.ceil(len(exps) / ncols)) + 0.5), layout="constrained")
    FigureCanvasAgg(fig)
    if not exps:
        _empty(fig, "no image experiment ran in this tier (the table says why)")
    else:
        axes = fig.subplots(math.ceil(len(exps) / ncols), ncols, squeeze=False).ravel()
        for ax, exp in zip(axes, exps):
            sub = ran[ran["experiment"] == exp]
            rows = pd.DataFrame(read_json(Path(runs) / exp / "results.json")["rows"])
            inv = {v: k for k, v in METHOD_LABELS.items()}
            seeds = [rows.loc[rows["method"] == inv.get(m, m), "student_acc"].tolist() for m in sub["method"]]
            _bars(ax, list(sub["method"]), sub["ours_mean"].astype(float), seeds, sub["published"].to_numpy(float),
                  "test accuracy (%)")
            ax.set_title(f"{exp}: {sub['dataset'].iloc[0]}", fontsize=9)
        for ax in axes[len(exps):]:
            ax.set_visible(False)
    fig.suptitle(title)
    return save_figure(fig, path, dpi=110)


def plot_modes(table: pd.DataFrame, path, title: str):
    fig = Figure(figsize=(9, 4), layout="constrained")
    FigureCanvasAgg(fig)
    if table.empty:
        _empty(fig, "no multiple-modes experiment ran in this tier")
    else:
        ax = fig.subplots()
        mode_cols = [c for c in table.columns if c.startswith("c") and ": " in c]
        sub = table.drop_duplicates("method")
        w = 0.8 / len(sub)
        for i, (_, r) in enumerate(sub.iterrows()):
            ax.bar(np.arange(len(mode_cols)) + i * w, r[mode_cols].astype(float), w, label=r["method"])
        ax.set_xticks(np.arange(len(mode_cols)) + 0.4 - w / 2, mode_cols, fontsize=8)
        ax.set_xlabel("class k: original digit (mode)")
        ax.set_ylabel("per-mode test accuracy (%), mean over seeds")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return save_figure(fig, path, dpi=110)


def plot_policy(table: pd.DataFrame, path, title: str):
    games = list(dict.fromkeys(table["game"])) if not table.empty else []
    fig = Figure(figsize=(4.8 * max(1, len(games)), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    if not games:
        _empty(fig, "no policy distillation ran in this tier")
    else:
        axes = fig.subplots(1, len(games), squeeze=False).ravel()
        for ax, g in zip(axes, games):
            sub = table[table["game"] == g]
            _bars(ax, list(sub["method"]), sub["score_mean"].astype(float), ylabel="game score (raw), mean over seeds")
            ax.set_title(g, fontsize=9)
    fig.suptitle(title)
    return save_figure(fig, path, dpi=110)


# ------------------------------------------------------------------------------------------------ markdown
def _seeds_commit(table: pd.DataFrame, prefix: str | None = None) -> str:
    """'Seeds: n per method. [what the all-seeds columns of `prefix` hold.] Commit <hash>.' for a caption's end."""
    ns = table.get("n_seeds", pd.Series(dtype=float)).dropna()
    n = sorted({int(v) for v in ns if v > 0})
    what = (". " + all_seeds_caption(ns, prefix) + " " if prefix else " (means over seeds, no interval). ")
    return f"Seeds: {'/'.join(map(str, n)) or 'none'} per method{what}Commit {git_commit()}."


def images_markdown(table: pd.DataFrame, tier: str, plan: dict) -> str:
    n = sorted(set(table.loc[(table["n_seeds"] > 0) & (table["method"] != "teacher"), "n_seeds"]))
    steps = sorted({int(v) for v in table["student_steps"].dropna()})
    cap = (f"Generative Adversarial Simulator, data-free distillation ({tier} tier): student top-1 test accuracy "
           f"(%), higher is better. published = the published baselines DAFL / DFAD (docs/reference_notes.md §4; the GAS "
           f"paper's own numbers are not public), at their full budgets; ours = mean, std, median, min over "
           f"{'/'.join(map(str, n)) or 'no'} seed(s) (all seeds), ours_best = the best seed (top-1 view); "
           f"ratio = ours_mean / published. Budget: {', '.join(map(str, steps)) or 'n/a'} student steps per method. "
           "The digits row is an offline stand-in (scikit-learn's 8x8 digits at 32x32) with no published number. "
           + _seeds_commit(table[table["method"] != "teacher"], "ours"))
    return to_markdown(table, cap)


def modes_markdown(table: pd.DataFrame, tier: str) -> str:
    if table.empty:
        return f"**Multiple input modes ({tier} tier): no preset with a class_map ran in this tier.**\n"
    return to_markdown(table, f"Multiple input modes ({tier} tier): digit d is labelled class d mod 5, so each class "
                              "has two modes; per-mode student test accuracy (%) = share of the test images of digit "
                              "d put in class d mod 5, mean over seeds. A generator that collapses to one prototype "
                              "per class leaves the other mode low; worst_mode = the lowest mode, modes_recovered = "
                              f"modes at >= 50%. {_seeds_commit(table)}")


def policy_markdown(table: pd.DataFrame, tier: str) -> str:
    if table.empty:
        return f"**Simulator-free policy distillation ({tier} tier): nothing ran in this tier.**\n"
    return to_markdown(table, f"Simulator-free policy distillation ({tier} tier): raw game score (whole games) of "
                              "the student distilled from generated observations only (DAFL, DFAD, ours), from "
                              "Gaussian-noise frames (lower bound) and from real teacher rollouts (KD on real data: "
                              "the simulator-based upper bound), next to the teacher and a uniformly random policy. "
                              "agreement = % of held-out real states where the student's most likely action is the "
                              "teacher's; normalised = (score - random) / (teacher - random). "
                              + _seeds_commit(table[~table["method"].isin(["teacher", "random policy"])], "score"))


def _write(df: pd.DataFrame, md: str, out_csv, out_md):
    with atomic_path(out_csv) as tmp:
        df.to_csv(tmp, index=False)
    with atomic_path(out_md) as tmp:
        tmp.write_text(md)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table", choices=["images", "modes", "policy"])
    ap.add_argument("--runs")
    ap.add_argument("--plan", default="{}")
    ap.add_argument("--reported")
    ap.add_argument("--results", nargs="*", default=[])
    for k in ("--tier", "--out-csv", "--out-md", "--out-fig"):
        ap.add_argument(k, required=True)
    a = ap.parse_args(argv)
    plan = json.loads(a.plan)
    Path(a.out_fig).parent.mkdir(parents=True, exist_ok=True)
    if a.table == "images":
        df = image_table(a.runs, plan, load_reported(a.reported))
        _write(df, images_markdown(df, a.tier, plan), a.out_csv, a.out_md)
        plot_images(df, a.runs, a.out_fig, f"GAS data-free distillation: student test accuracy ({a.tier} tier)")
    elif a.table == "modes":
        df = modes_table(a.runs, plan)
        _write(df, modes_markdown(df, a.tier), a.out_csv, a.out_md)
        plot_modes(df, a.out_fig, f"GAS multiple input modes: per-mode student accuracy ({a.tier} tier)")
    else:
        df = policy_table([read_json(f) for f in a.results])
        _write(df, policy_markdown(df, a.tier), a.out_csv, a.out_md)
        plot_policy(df, a.out_fig, f"GAS simulator-free policy distillation ({a.tier} tier)")


if __name__ == "__main__":
    from common.cli import run

    run(main)
