"""cA3C tables and figures from the all-seeds run directories (pure aggregation, no training).

  python -m papers.cdrl.tables figure --fig fig6 --runs runs/<tier>/cdrl --tier <tier> --out-md F.md --out-fig F.png
  python -m papers.cdrl.tables last100 --runs runs/<tier>/cdrl --experts E1 E2 --tier <tier> \
      --reported papers/cdrl/reported.csv --out-csv T.csv --out-md T.md
  python -m papers.cdrl.tables fig5 --dists action_dists.csv --fit fit.json --tier <tier> --out-md F.md --out-fig F.png

The paper's numbers are the *training* reward of the last 100 episodes (Sec. 5.4: "The reward of last one
hundred episodes"), so the last-100 table reads curve.csv (every training game's raw score); "±" is not
defined in the paper: ours is the standard deviation over seeds of each seed's last-100 mean, next to each
seed's own. The tables add the final evaluation (eval.json, the policy alone) over all seeds: each seed's
value and their mean [min, max] below 5 seeds, the IQM with its 95% stratified-bootstrap interval from 5.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from common.io import atomic_path, read_json
from common.report import (all_seeds_caption, all_seeds_view, fmt_per_seed, git_commit, load_reported, plot_facets,
                           save_figure, to_markdown)
from common.stats import curve_to_grid, seed_stats
from papers.cdrl.plan import FIGURES, LABELS, RUNS

LAST100 = "Fig. 6 last 100"
COLLAB = "collaborative_bowling"  # Fig. 6d: the run the paper's Sec. 5.4 numbers belong to


def last_n_mean(curve: pd.DataFrame, n: int = 100) -> float:
    """Mean raw score of the last `n` training games finished (all of them if fewer; NaN if none)."""
    d = curve.sort_values("env_steps", kind="mergesort")["episode_return"].to_numpy(dtype=float)
    return float(d[-n:].mean()) if len(d) else float("nan")


def collect(runs: Path, run: str) -> pd.DataFrame:
    """One row per seed of `run`: eval mean, last-100 training mean, games played."""
    rows = []
    for ev in sorted((runs / run).glob("seed*/eval.json")):
        curve = pd.read_csv(ev.parent / "curve.csv")
        rows.append({"run": run, "seed": int(ev.parent.name.removeprefix("seed")), "eval": read_json(ev)["mean"],
                     "last100": last_n_mean(curve), "games": len(curve)})
    return pd.DataFrame(rows, columns=["run", "seed", "eval", "last100", "games"])


def summary_row(label: str, seeds: pd.DataFrame) -> dict:
    """Seeds, last-100 mean ± sd over seeds and each seed's last-100 (seed order), and the eval's all-seeds
    statistics (stats.seed_stats: mean, min, max, per seed, and from 5 seeds the IQM [95% CI]) of one run."""
    if seeds.empty:
        return {"run": label, "seeds": 0, "last100_mean": np.nan, "last100_sd": np.nan, "last100_per_seed": (),
                "eval": seed_stats([])}
    seeds = seeds.sort_values("seed", kind="mergesort")
    x = seeds["last100"].to_numpy(dtype=float)
    return {"run": label, "seeds": len(seeds), "last100_mean": float(np.nanmean(x)) if np.isfinite(x).any() else np.nan,
            "last100_sd": float(np.nanstd(x, ddof=1)) if len(x) > 1 else np.nan,
            "last100_per_seed": tuple(float(v) for v in x), "eval": seed_stats(seeds["eval"].to_numpy(dtype=float))}


def present(df: pd.DataFrame) -> pd.DataFrame:
    """summary_row rows as table columns: 'last100 per seed', and the eval's all-seeds cell (common.report:
    'eval mean [min, max]' below 5 seeds, 'eval IQM [95% CI]' from 5) and 'eval per seed'."""
    ev = pd.DataFrame([e if isinstance(e, dict) else seed_stats([]) for e in df["eval"]], index=df.index)
    out = df.drop(columns=["eval", "last100_per_seed"])
    out.insert(out.columns.get_loc("last100_sd") + 1, "last100 per seed",
               [fmt_per_seed(v) if isinstance(v, tuple) else "" for v in df["last100_per_seed"]])
    return pd.concat([out, all_seeds_view(ev, "eval")], axis=1)


def last100_table(ours: dict[str, pd.DataFrame], reported: pd.DataFrame, expert_scores: dict[str, float],
                  random: list[dict] = ()) -> pd.DataFrame:
    """The last-100-episode reward table: paper vs ours (A3C and collaborative cA3C, Fig. 6d), then Fig. 6a-c.

    `ours` maps run -> its per-seed rows (collect); `expert_scores` game -> expert eval score (Sec. 5.3 quotes the
    experts' rewards "at convergence": Pong 20, Bowling 60); `random`: random_rows, the measured random policy.
    """
    rep = reported[reported["table"] == LAST100].set_index(["row", "column"])

    def paper(row, col):
        return rep.loc[(row, col), "value_num"] if (row, col) in rep.index else np.nan

    rows = []
    a3c = summary_row("A3C (Bowling)", ours.get("a3c_bowling", pd.DataFrame()))
    rows.append({**a3c, "paper": paper("A3C", "reward"), "paper_pm": paper("A3C", "pm"),
                 "status": "ran" if a3c["seeds"] else "not run", "note": "Sec. 5.4 text (Fig. 6d's baseline)"})
    collab = summary_row("cA3C collaborative (Bowling, Fig. 6d)", ours.get(COLLAB, pd.DataFrame()))
    rows.append({**collab, "paper": paper("cA3C", "reward"), "paper_pm": paper("cA3C", "pm"),
                 "status": "ran" if collab["seeds"] else "not run", "note": "Sec. 5.4 text"})
    for run in FIGURES["fig6"]["runs"][1:]:
        if run == COLLAB:
            continue
        r = summary_row(f"{LABELS[run]} (Bowling)", ours.get(run, pd.DataFrame()))
        rows.append({**r, "paper": np.nan, "paper_pm": np.nan,
                     "status": "ran" if r["seeds"] else "not run", "note": "paper gives curves only"})
    for game, score in expert_scores.items():
        rows.append({"run": f"{game} expert (eval)", "seeds": 1, "eval": seed_stats([score]),
                     "paper": paper(f"{game} expert", "reward"), "status": "ran",
                     "note": "Sec. 5.3 'at convergence' (ours: eval, not last 100)"})
    for r in random:
        rows.append({"run": r["run"], "seeds": 1, "eval": r["eval"], "paper": np.nan, "status": "ran",
                     "note": f"uniform random actions, {r['episodes']} games (Mnih et al. 2015: "
                             f"{RANDOM_SCORE.get(r['game'], float('nan')):g})"})
    df = pd.DataFrame(rows)
    df["ratio"] = df["last100_mean"] / df["paper"]
    df = present(df.reindex(columns=["run", "seeds", "paper", "paper_pm", "last100_mean", "last100_sd",
                                     "last100_per_seed", "ratio", "eval", "status", "note"]))
    ev = [c for c in df.columns if c.startswith("eval ")]
    return df[["run", "seeds", "paper", "paper_pm", "last100_mean", "last100_sd", "last100 per seed", "ratio", *ev,
               "status", "note"]]


def teachers_line(runs: Path, run_names) -> str:
    """' Teachers: <dir> (<game> <mean> ± <sd> over <n> evaluation games).' for the fixed teachers the runs
    distilled from (their run.json's ca3c.teachers; an unfinished teacher says so), '' where none did. The
    paper's experts were converged (Sec. 5.3: Pong 20, Bowling 60); a figure drawn from weaker ones must say so."""
    dirs = []
    for run in run_names:
        for rj in sorted((runs / run).glob("seed*/run.json")):
            for t in (read_json(rj).get("ca3c") or {}).get("teachers") or []:
                if t not in dirs:
                    dirs.append(t)
    parts = []
    for t in dirs:
        ev = Path(t) / "eval.json"
        if ev.exists():
            e = read_json(ev)
            parts.append(f"{t} ({e['game']} {e['mean']:.1f} ± {e['std']:.1f} over {e['episodes']} evaluation games)")
        else:
            parts.append(f"{t} (no eval.json)")
    return (" Teachers: " + "; ".join(parts) + " (the paper's experts, Sec. 5.3: Pong 20, Bowling 60 at convergence)."
            if parts else "")


RANDOM_SCORE = {"Bowling": 23.1, "Pong": -20.7}
"""Mnih et al. (2015)'s random agent (30 no-op starts): the published reference beside our measured random rows"""


def random_rows(evals) -> list[dict]:
    """summary_row-shaped rows of the uniform-random policy, one per eval.json of `common.evaluation --policy
    random` (which names its game): one evaluation (seed 0) of the students' protocol, as the experts' rows."""
    rows = []
    for f in evals:
        ev = read_json(f)
        rows.append({"run": f"Random policy ({ev['game']}, measured)", "seeds": 1, "last100_mean": np.nan,
                     "last100_sd": np.nan, "last100_per_seed": (), "eval": seed_stats([ev["mean"]]),
                     "game": ev["game"], "status": "ran", "episodes": int(ev["episodes"])})
    return rows


def provenance(runs: Path, run_names, n_seeds: int, random: list[dict] = ()) -> str:
    """The end of a figure caption: budget, seeds, commit and the random policy (measured rows, and Mnih et al.'s)."""
    parts = []
    for run in run_names:
        cfgs = sorted((runs / run).glob("seed*/config.json"))
        if cfgs:
            parts.append(f"Budget: {int(read_json(cfgs[0])['a2c']['total_steps']):,} env steps per run (paper: 20M+).")
            break
    measured = "; ".join(f"{r['game']} {r['eval']['mean']:.1f} over {r['episodes']} games" for r in random)
    parts.append(f"Seeds: up to {n_seeds} per run. Commit {git_commit()}. Random policy: "
                 + (f"measured here under the students' evaluation protocol (the 'Random policy' rows): {measured}; "
                    if random else "")
                 + "Mnih et al. 2015's random agent: " + ", ".join(f"{g} {v:g}" for g, v in RANDOM_SCORE.items())
                 + "; a score near it is chance, not learning.")
    return " " + " ".join(parts)


def figure(a) -> None:
    """One of Figs. 3, 4, 6: all-seeds curves of its runs, and a table of last-100 and eval scores."""
    spec, runs = FIGURES[a.fig], Path(a.runs)
    rows, curves = [], []
    for run in spec["runs"]:
        seeds = collect(runs, run)
        r = summary_row(LABELS[run], seeds)
        rows.append({**r, "game": RUNS[run][0], "status": "ran" if r["seeds"] else "not run"})
        for s in seeds.itertuples():
            d = runs / run / f"seed{s.seed}"
            total = read_json(d / "config.json")["a2c"]["total_steps"]
            grid = np.linspace(0, total, 51)[1:]
            for x, v in zip(grid, curve_to_grid(pd.read_csv(d / "curve.csv"), grid, window=100)):
                curves.append({"game": RUNS[run][0], "run": LABELS[run], "seed": s.seed,
                               "env_steps": x, "score": v})
        if run == COLLAB:  # Fig. 6d's source: the Pong learner trained beside the Bowling target
            src = [runs / run / f"seed{s.seed}" / "source" for s in seeds.itertuples()]
            for s, d in zip(seeds.itertuples(), src):
                if not (d / "curve.csv").exists():
                    continue
                total = read_json(d / "config.json")["a2c"]["total_steps"]
                grid = np.linspace(0, total, 51)[1:]
                for x, v in zip(grid, curve_to_grid(pd.read_csv(d / "curve.csv"), grid, window=100)):
                    curves.append({"game": read_json(d / "config.json")["a2c"]["game"],
                                   "run": f"{LABELS[run]}: its source", "seed": s.seed, "env_steps": x, "score": v})
    n_seeds = int(max((r["seeds"] for r in rows), default=0))
    random = random_rows(a.random)
    table = present(pd.DataFrame(rows + [{k: v for k, v in r.items() if k != "episodes"} for r in random]))
    caption = (f"{spec['title']} ({a.tier} tier). last100 = mean raw training score of the last 100 games, mean and "
               "sd over seeds, and each seed's; eval = the policy alone (eval.json): "
               + all_seeds_caption(table["seeds"], "eval") + " "
               "The paper gives curves only for this figure (no numbers to compare"
               + ("; 6d's Sec. 5.4 last-100 numbers are in last100.md" if a.fig == "fig6" else "") + ")."
               + teachers_line(runs, spec["runs"])
               + provenance(runs, spec["runs"], n_seeds, random))
    with atomic_path(a.out_md) as tmp:
        tmp.write_text(to_markdown(table, caption))
    if not curves:
        raise FileNotFoundError(f"no finished runs of {spec['runs']} under {runs}: run cdrl_train first")
    refs = {r["game"]: [("random policy (measured)", r["eval"]["mean"])] for r in random}
    plot_facets(pd.DataFrame(curves), a.out_fig, f"{spec['title'].split(':')[0]}, last-100 mean ({a.tier} tier)",
                facet="game", hue="run", ncols=1, refs=refs)


def last100(a) -> None:
    runs = Path(a.runs)
    ours = {run: collect(runs, run) for run in FIGURES["fig6"]["runs"]}
    experts = {read_json(e)["game"]: read_json(e)["mean"] for e in a.experts}
    table = last100_table(ours, load_reported(a.reported), experts, random_rows(a.random))
    with atomic_path(a.out_csv) as tmp:
        table.to_csv(tmp, index=False)
    caption = (f"cA3C Sec. 5.4 / Fig. 6: reward of the last 100 training episodes on Bowling, paper vs ours "
               f"({a.tier} tier). The paper's numbers belong to Fig. 6d (collaborative: Pong and Bowling from "
               "scratch together, the Bowling target distilling from the live Pong learner); our A3C and collaborative "
               "rows compare directly, our Fig. 6a-c rows have no paper number. ± (paper) is undefined there; ours is "
               "the sd over seeds; 'last100 per seed' = each seed's own last-100 mean. ratio = ours / paper. eval = "
               "the policy alone (eval.json): " + all_seeds_caption(table["seeds"], "eval")
               + " The experts' and the random policy's rows are one evaluation each (eval, not last 100).")
    with atomic_path(a.out_md) as tmp:
        tmp.write_text(to_markdown(table, caption))


def fig5_plot(dists: pd.DataFrame, path, title: str):
    """Fig. 5: three bar panels, the action distribution of source expert, target expert, aligned source."""
    fig = Figure(figsize=(11, 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3, sharey=True)
    for ax, (col, name) in zip(axes, [("source", "(a) Pong expert"), ("target", "(b) Bowling expert"),
                                      ("aligned", "(c) aligned Pong expert")]):
        ax.bar(dists["action"], dists[col])
        ax.set_title(name)
        ax.set_xlabel("action")
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("mean probability on Bowling frames")
    fig.suptitle(title)
    return save_figure(fig, path)


def fig5(a) -> None:
    dists, fit = pd.read_csv(a.dists), read_json(a.fit)
    fig5_plot(dists, a.out_fig, f"Fig. 5: action distributions on held-out Bowling frames ({a.tier} tier)")
    caption = (f"Fig. 5 data ({a.tier} tier): mean softmax over {fit['states'] - fit['fit_states']} held-out Bowling "
               f"states. Offline F: held-out KL(F(z_Pong) || z_Bowling) {fit['heldout_kl_before']:.4f} before fitting, "
               f"{fit['heldout_kl_after']:.4f} after ({fit['args']['fit_steps']} Adam steps).")
    with atomic_path(a.out_md) as tmp:
        tmp.write_text(to_markdown(dists, caption))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    f = sub.add_parser("figure")
    f.add_argument("--fig", required=True, choices=sorted(FIGURES))
    f.add_argument("--random", nargs="*", default=[], help="random-policy eval.json files (the reference rows)")
    for k in ("--runs", "--tier", "--out-md", "--out-fig"):
        f.add_argument(k, required=True)
    t = sub.add_parser("last100")
    for k in ("--runs", "--tier", "--reported", "--out-csv", "--out-md"):
        t.add_argument(k, required=True)
    t.add_argument("--experts", nargs="*", default=[], help="experts' eval.json files")
    t.add_argument("--random", nargs="*", default=[], help="random-policy eval.json files (the reference rows)")
    g = sub.add_parser("fig5")
    for k in ("--dists", "--fit", "--tier", "--out-md", "--out-fig"):
        g.add_argument(k, required=True)
    a = ap.parse_args(argv)
    {"figure": figure, "last100": last100, "fig5": fig5}[a.what](a)


if __name__ == "__main__":
    from common.cli import run

    run(main)
