"""H-PR distillation tables and figures from the all-seeds run directories (pure aggregation, no training).

  python -m papers.hpr_distillation.tables table1 --runs runs/<tier>/hpr_distillation \
      --spec '{"runs": {"proposed": "proposed_uniform_10games", ...}, "games": [...], "fig3_games": [...],
               "teachers": {"Pong": "runs/<tier>/hpr_distillation/teachers/Pong/eval.json", ...}}' \
      --tier <tier> --reported papers/hpr_distillation/reported.csv --out-csv T.csv --out-md T.md --out-fig F.png
  python -m papers.hpr_distillation.tables sampling --name fig4 --runs ... --tier ... --reported ... \
      --spec '{"runs": {"H-PR": ..., "PR": ..., "Uniform": ...}, "games": [...], "thresholds": {"Breakout": 300}}' \
      --out-csv F.csv --out-md F.md --out-fig F.png
  python -m papers.hpr_distillation.tables fig2 --values values.csv --scores scores.json --bins 10 --tier ...

A run directory (``<runs>/<run>/seed<k>/``) holds curve.csv (one row per game and evaluation: updates,
env_steps, eval_score) and eval.json (the final evaluation per game), written by
:func:`papers.hpr_distillation.method.train`. Per run and game we read

* **best**: the highest evaluation score over training: Table 1 reports "the best multi-task networks under
  each architecture", each approach run "with three random seeds" and "the averaged results" reported, so
  the paper's protocol is the mean over seeds of each seed's best evaluation;
* **final**: the last evaluation (eval.json), the honest all-seeds view (common.stats, common.report): every
  seed's value and their mean [min, max] below 5 seeds, the IQM with its 95% stratified-bootstrap interval
  from 5.

% of teacher = 100 * student score / teacher score, the teacher scored under the students' own protocol
(papers/hpr_distillation/teacher_play.py); n/a where the teacher scores <= 0 (a percentage of it means
nothing). The geometric mean over games is n/a unless every game's value is a positive number.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from common.io import atomic_path, read_json
from common.report import (all_seeds_caption, all_seeds_header, all_seeds_view, comparison_table, fmt_stat, fmt_value,
                           git_commit, load_reported, per_seed_header, plot_facets, save_figure, to_markdown)
from common.stats import MIN_SEEDS_IQM, summarise

X_LABEL = "mini-batch updates per game"


def provenance(runs_root: Path, runs, n_seeds: int) -> str:
    """The end of a caption: budget, evaluation protocol, seeds and commit, read from the first run found."""
    parts = []
    for run in dict.fromkeys(runs):
        cfgs = sorted((runs_root / run).glob("seed*/config.json"))
        if cfgs:
            args = read_json(cfgs[0]).get("hpr_distillation", {})
            ev = args.get("eval", {})
            parts.append(f"Budget: {int(args.get('total_steps', 0)):,} steps per game per run (paper: up to 4M), "
                         f"evaluation every {args.get('eval_every')} updates for {ev.get('steps')} control steps at "
                         f"epsilon {ev.get('epsilon')}.")
            break
    parts.append(f"Seeds: {n_seeds}. Commit {git_commit()}.")
    return " " + " ".join(parts)


# ------------------------------------------------------------------------------------------ reading runs
def read_run(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One seed's (game, best, final) per game and its evaluation curve (game, updates, env_steps, score)."""
    curve = pd.read_csv(run_dir / "curve.csv")
    ev = read_json(run_dir / "eval.json")["games"]
    rows = []
    for game, g in curve.groupby("game", sort=False):
        s = g["eval_score"].astype(float)
        rows.append({"game": game, "best": float(s.max()) if s.notna().any() else np.nan,
                     "final": float(ev.get(game, {}).get("mean", np.nan))})
    curves = curve.rename(columns={"eval_score": "score"})[["game", "updates", "env_steps", "score"]]
    return pd.DataFrame(rows), curves


def collect(runs_root: Path, runs: dict[str, str], games=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All seeds of the runs {label: run name}: (label, run, game, seed, best, final) and the curves."""
    scores, curves = [], []
    for label, run in runs.items():
        dirs = sorted((runs_root / run).glob("seed*/eval.json"))
        if not dirs:
            raise FileNotFoundError(f"no finished seed of run '{run}' under {runs_root / run}/seed<k>/: run the "
                                    "pipeline's hpr_train rule first")
        for ev in dirs:
            seed = int(ev.parent.name.removeprefix("seed"))
            s, c = read_run(ev.parent)
            scores.append(s.assign(label=label, run=run, seed=seed))
            curves.append(c.assign(label=label, run=run, seed=seed))
    scores, curves = pd.concat(scores, ignore_index=True), pd.concat(curves, ignore_index=True)
    if games is not None:
        scores, curves = scores[scores.game.isin(games)], curves[curves.game.isin(games)]
    return scores.reset_index(drop=True), curves.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------- formulas
def percent_of_teacher(score, teacher) -> np.ndarray:
    """100 * score / teacher (Table 1); NaN where the teacher's score is not positive."""
    score, teacher = np.asarray(score, float), np.asarray(teacher, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(teacher > 0, 100.0 * score / teacher, np.nan)


def geometric_mean(values) -> float:
    """(prod x_i)^(1/n); NaN if empty or any value is NaN or <= 0 (Table 1's last row)."""
    x = np.asarray(values, float)
    if len(x) == 0 or not np.all(np.isfinite(x)) or np.any(x <= 0):
        return float("nan")
    return float(np.exp(np.log(x).mean()))


def steps_to_threshold(updates, scores, threshold: float) -> float:
    """The first evaluation point (in `updates` order) whose score is over `threshold` (strictly, as the paper
    says "scoring over 300"); NaN if never reached. NaN scores (no completed game) never count."""
    u, s = np.asarray(updates, float), np.asarray(scores, float)
    order = np.argsort(u, kind="mergesort")
    hit = np.flatnonzero(s[order] > threshold)
    return float(u[order][hit[0]]) if len(hit) else float("nan")


def mean_curve(curves: pd.DataFrame) -> pd.DataFrame:
    """The seed-averaged curve per (label, game) at each evaluation point (seeds share eval points)."""
    return (curves.groupby(["label", "game", "updates"], sort=True)
            .agg(score=("score", "mean"), env_steps=("env_steps", "mean"), n=("seed", "nunique")).reset_index())


# ------------------------------------------------------------------------------------------------ Table 1
def table1_frame(scores: pd.DataFrame, teacher_scores: dict[str, float], reported: pd.DataFrame,
                 arch_columns: dict[str, str]) -> pd.DataFrame:
    """Table 1 paper vs ours: teacher scores, % of teacher per (game, architecture), the geometric mean.

    scores: (label = arch, game, seed, best, final); arch_columns: {paper column: arch}, e.g. {"DIST": "dist"}.
    Columns: row, column, method, paper, paper_approx, ours (mean over seeds of the best-evaluation %), the
    final-evaluation % over all seeds under all_seeds_header(..., "ours_final") (mean [min, max] below 5 seeds,
    IQM [95% CI] from 5), 'ours_final per seed', n_seeds, ratio = ours / paper.
    """
    d = scores.assign(teacher=scores.game.map(teacher_scores).astype(float))
    d["best_pct"] = percent_of_teacher(d.best, d.teacher)
    d["final_pct"] = percent_of_teacher(d.final, d.teacher)
    d = d.rename(columns={"label": "method"})
    k = int(d.groupby(["method", "game"]).seed.nunique().max())
    best = summarise(d, score="best_pct", by=("method", "game"), k=k)
    final = summarise(d, score="final_pct", by=("method", "game"), k=k)
    # the geometric-mean row: over the games this tier ran (every game must have a positive %); of the final
    # evaluation, over each game's all-seeds centre (IQM from MIN_SEEDS_IQM seeds, the mean below)
    centre = final["iqm"].where(final["n_seeds"] >= MIN_SEEDS_IQM, final["mean"])
    geo_final = {}
    for arch in sorted(d.method.unique()):
        g, fin = best[best.method == arch], centre[final.method == arch]
        n_games, n_seeds = d[d.method == arch].game.nunique(), int(d[d.method == arch].seed.nunique())
        best.loc[len(best)] = {"method": arch, "game": "Geometric Mean", "n_seeds": n_seeds, "per_seed": (),
                               "topk_mean": geometric_mean(g.topk_mean) if len(g) == n_games else np.nan}
        geo_final[arch] = geometric_mean(fin) if len(fin) == n_games else np.nan
    teach = pd.DataFrame([{"method": "teacher", "game": g, "seed": 0, "score": v} for g, v in teacher_scores.items()])
    ours = pd.concat([best, summarise(teach, score="score", by=("method", "game"), k=1)], ignore_index=True)
    table = comparison_table(ours, reported, "Table 1", row_col="game",
                             column_map={"Teacher (score)": "teacher", **arch_columns})
    table = table.drop(columns=[c for c in table.columns if c.startswith("ours ")])  # best-eval view: not shown
    head, per = all_seeds_header(final["n_seeds"], "ours_final"), per_seed_header("ours_final")
    view = pd.concat([final[["method", "game"]], all_seeds_view(final, "ours_final")], axis=1).set_index(
        ["method", "game"])
    ran = d.groupby(["method", "game"]).seed.nunique()
    cells, seeds = [], []
    for r in table.itertuples():
        if r.method == "teacher":  # one score: the teacher's, raw
            cell, per_cell = (fmt_value(r.ours_topk),) * 2 if r.ours_topk != "not run" else ("not run", "")
        elif r.row == "Geometric Mean":
            cell, per_cell = (fmt_stat(geo_final[r.method]) if r.method in geo_final else "not run"), ""
        elif (r.method, r.row) in view.index:
            cell, per_cell = view.loc[(r.method, r.row), head], view.loc[(r.method, r.row), per]
        else:  # ran but no % (teacher score <= 0, or no completed game): n/a, not "not run"
            cell, per_cell = ("n/a" if (r.method, r.row) in ran.index else "not run"), ""
        cells.append(cell)
        seeds.append(per_cell)
    table[head], table[per] = cells, seeds
    for i, r in table.iterrows():
        if str(r.ours_topk) == "not run" and (r.method, r.row) in ran.index:
            table.loc[i, "ours_topk"] = "n/a"
            table.loc[i, "n_seeds"] = int(ran[(r.method, r.row)])
    table = table.rename(columns={"ours_topk": "ours"})
    return table[["row", "column", "method", "paper", "paper_approx", "ours", head, per, "n_seeds", "ratio"]]


def _num(x) -> str:
    from common.report import _fmt

    return _fmt(x)


def table1(a) -> None:
    """Table 1 (% of teacher per game and architecture, geometric mean) and the Fig. 3 curves."""
    spec = json.loads(a.spec)
    runs_root = Path(a.runs)
    arch_runs = spec["runs"]  # arch -> run name
    scores, curves = collect(runs_root, arch_runs, games=spec["games"])
    teacher_scores = {g: float(read_json(p)["mean"]) for g, p in spec["teachers"].items() if g in spec["games"]}
    from papers.hpr_distillation.plan import ARCH_NAMES

    table = table1_frame(scores, teacher_scores, load_reported(a.reported),
                         {ARCH_NAMES[arch]: arch for arch in arch_runs})
    n = int(scores.groupby(["label", "game"]).seed.nunique().max())
    with atomic_path(a.out_csv) as tmp:
        table.to_csv(tmp, index=False)
    caption = (f"H-PR distillation Table 1: paper vs ours ({a.tier} tier, {n} seed(s), Uniform sampling). Teacher "
               "rows: raw game score of our DQN teacher under the students' protocol. Other rows: % of the teacher's "
               "score. ours = mean over seeds of each seed's best evaluation during training (the paper's protocol: "
               "the best network, three seeds averaged); ours_final = the final evaluation over all seeds: "
               + all_seeds_caption(table.loc[table.method != "teacher", "n_seeds"], "ours_final")
               + " ratio = ours / paper. n/a: the teacher scored <= 0, or no "
               f"completed game. Geometric Mean: over the {len(spec['games'])} game(s) this tier runs (the paper: 10), "
               "of the per-game values of its column (ours_final: each game's IQM, or its mean below "
               f"{MIN_SEEDS_IQM} seeds), n/a unless every game's % is positive (the paper's 'Geometric Mean' row is "
               "the arithmetic mean of its column)." + provenance(runs_root, arch_runs.values(), n))
    with atomic_path(a.out_md) as tmp:
        tmp.write_text(to_markdown(table, caption))
    fig3 = [g for g in spec.get("fig3_games") or spec["games"] if g in spec["games"]]
    c = curves[curves.game.isin(fig3)].assign(architecture=lambda df: df.label.map(ARCH_NAMES))
    plot_facets(c, a.out_fig, f"H-PR distillation Fig. 3: architectures, Uniform sampling; all seeds "
                f"({a.tier} tier)", facet="game", hue="architecture", x="updates", xlabel=X_LABEL)


# ------------------------------------------------------------------------------------------ Figs. 4 and 5
def threshold_table(curves: pd.DataFrame, thresholds: dict[str, float], baseline: str | None = "Uniform",
                    paper_ratio: dict[str, float] | None = None) -> pd.DataFrame:
    """Updates to reach each game's threshold, per label (sampler).

    reach_mean_curve: the first evaluation at which the seed-averaged curve is over the threshold (the paper's
    reading of its averaged curves); reach_per_seed: each seed's own first crossing; ratio_to_<baseline>:
    reach_mean_curve / the baseline's. NaN = not reached within the budget.
    """
    mc = mean_curve(curves)
    rows = []
    for game, thr in thresholds.items():
        for label in dict.fromkeys(curves.label):  # the spec's order
            m = mc[(mc.label == label) & (mc.game == game)]
            if m.empty:
                continue
            per = curves[(curves.label == label) & (curves.game == game)].groupby("seed")
            seeds = {s: steps_to_threshold(g.updates, g.score, thr) for s, g in per}
            reach = steps_to_threshold(m.updates, m.score, thr)
            env = float(m.loc[m.updates == reach, "env_steps"].iloc[0]) if np.isfinite(reach) else np.nan
            rows.append({"game": game, "threshold": thr, "sampler": label, "n_seeds": len(seeds),
                         "reach_mean_curve": reach, "env_steps_mean_curve": env,
                         "reach_per_seed": ", ".join("not reached" if not np.isfinite(v) else f"{v:.0f}"
                                                     for v in seeds.values()),
                         "seeds_reached": f"{sum(np.isfinite(v) for v in seeds.values())}/{len(seeds)}"})
    out = pd.DataFrame(rows, columns=["game", "threshold", "sampler", "n_seeds", "reach_mean_curve",
                                      "env_steps_mean_curve", "reach_per_seed", "seeds_reached"])
    if baseline is not None and len(out):
        base = out[out.sampler == baseline].set_index("game")["reach_mean_curve"]
        out[f"ratio_to_{baseline}"] = [r.reach_mean_curve / base.get(r.game, np.nan) for r in out.itertuples()]
        if paper_ratio is not None:
            out["paper_ratio"] = [paper_ratio.get(r.game, np.nan) if r.sampler == "H-PR" else np.nan
                                  for r in out.itertuples()]
    return out


def sampling(a) -> None:
    """Fig. 4 (H-PR vs PR vs Uniform) or Fig. 5 (H-PR with p = 5, 10, 15): curves, final scores, steps to thresholds."""
    spec = json.loads(a.spec)
    scores, curves = collect(Path(a.runs), spec["runs"], games=spec["games"])
    n = int(scores.groupby(["label", "game"]).seed.nunique().max())
    fin = summarise(scores.rename(columns={"label": "sampler"}), score="final", by=("sampler", "game"), k=n)
    best = summarise(scores.rename(columns={"label": "sampler"}), score="best", by=("sampler", "game"), k=n)
    best_mean = best.set_index(["sampler", "game"])["mean"]
    final = pd.concat([fin[["sampler", "game", "n_seeds"]], fin["mean"].rename("final_mean"),
                       pd.Series([best_mean.get((r.sampler, r.game), np.nan) for r in fin.itertuples()],
                                 index=fin.index, name="best_mean"), all_seeds_view(fin, "final")], axis=1)
    rep = load_reported(a.reported)
    quoted = rep[(rep.table == "Fig. 4") & (rep.column == "H-PR steps / Uniform steps")]
    paper_ratio = dict(zip(quoted.row, quoted.value_num)) if a.name == "fig4" else None
    thr = threshold_table(curves, {g: float(v) for g, v in spec.get("thresholds", {}).items()},
                          baseline="Uniform" if "Uniform" in spec["runs"] else None, paper_ratio=paper_ratio)
    with atomic_path(a.out_csv) as tmp:
        pd.concat([thr.assign(table="steps_to_threshold"), final.assign(table="scores")], ignore_index=True).to_csv(
            tmp, index=False)
    what = {"fig4": "Fig. 4: sampling (H-PR, PR, Uniform), proposed architecture",
            "fig5": "Fig. 5: H-PR partition count p, proposed architecture (Uniform beside)"}.get(a.name, a.name)
    cap_thr = (f"H-PR distillation {what}; {a.tier} tier, {n} seed(s). Mini-batch updates per game until the score is "
               "over the threshold: reach_mean_curve on the seed-averaged curve (as the paper reads its curves), "
               "reach_per_seed for every seed (all-seeds view). "
               + ("Paper (text after Fig. 4): H-PR needs ~50% of Uniform's steps to score over 300 on Breakout and "
                  "4,000 on Q*bert (paper_ratio). " if a.name == "fig4" else "")
               + "Thresholds below the paper's are the tier's own (config hpr_distillation.fig4.thresholds); the "
               "paper's 300 and 4,000 are 97% and 99% of its teachers' 309 and 4,033, and a threshold that every "
               "sampler passes at its first evaluation cannot separate them (a floor effect)."
               + provenance(Path(a.runs), spec["runs"].values(), n))
    cap_fin = (f"Scores ({a.tier} tier): best_mean = mean over seeds of each seed's best evaluation (the paper's "
               "protocol); final_mean = mean over seeds of the final evaluation; "
               + all_seeds_caption(final["n_seeds"], "final") + " The paper gives curves only."
               + provenance(Path(a.runs), spec["runs"].values(), n))
    with atomic_path(a.out_md) as tmp:
        tmp.write_text((to_markdown(thr, cap_thr) + "\n" if len(thr) else "") + to_markdown(final, cap_fin))
    plot_facets(curves.rename(columns={"label": "sampler"}), a.out_fig,
                f"H-PR distillation {what.split(':')[0]}: all seeds ({a.tier} tier)",
                facet="game", hue="sampler", x="updates", xlabel=X_LABEL)


# ------------------------------------------------------------------------------------------------- Fig. 2
def value_histograms(values: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """Fraction of each policy's visited states in `bins` equal bins over the pooled range of V (Fig. 2b).

    values: (policy, value[, order]); edges split [min V, max V] over all policies evenly, the last bin closed.
    """
    v = values["value"].to_numpy(float)
    lo, hi = float(v.min()), float(v.max())
    if not hi > lo:
        hi = lo + 1e-6
    edges = np.linspace(lo, hi, bins + 1)
    order = (values.groupby("policy")["order"].first().sort_values().index if "order" in values
             else list(dict.fromkeys(values.policy)))
    rows = []
    for p in order:
        x = values.loc[values.policy == p, "value"].to_numpy(float)
        counts, _ = np.histogram(x, bins=edges)
        for b in range(bins):
            rows.append({"policy": p, "bin": b + 1, "v_low": edges[b], "v_high": edges[b + 1],
                         "count": int(counts[b]), "fraction": counts[b] / len(x)})
    return pd.DataFrame(rows)


def fig2(a) -> None:
    """Fig. 2(b): histograms of the value teacher's V(s) over the states three policies visit."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    values = pd.read_csv(a.values)
    meta = read_json(a.scores)
    hist = value_histograms(values, a.bins)
    with atomic_path(a.out_csv) as tmp:
        hist.to_csv(tmp, index=False)
    wide = hist.pivot(index="bin", columns="policy", values="fraction")
    policies = list(dict.fromkeys(hist.policy))
    wide = wide[policies].reset_index()
    edges = hist.drop_duplicates("bin").set_index("bin")
    wide.insert(1, "V range", [f"[{_num(edges.v_low[b])}, {_num(edges.v_high[b])}{']' if b == a.bins else ')'}"
                               for b in wide.bin])
    summary = pd.DataFrame([{"policy": p, "teacher": meta["policies"][p]["teacher_dir"],
                             "mean V": float(values.loc[values.policy == p, "value"].mean()),
                             "games completed": meta["policies"][p]["games"],
                             "mean game score": meta["policies"][p]["mean_score"]} for p in policies])
    cap = (f"H-PR distillation Fig. 2(b), {meta['game']} ({a.tier} tier): fraction of the states each policy visits "
           f"({meta['steps']:,} control steps, epsilon {meta['epsilon']}) per bin of V(s) = max_a Q(s, a) of the "
           f"value teacher {meta['value_teacher']}; {a.bins} equal bins over the pooled range. Policies in increasing "
           "ability (paper: Net-1 < Net-2 < Net-3); the paper's finding: more able policies visit higher-valued "
           "states more often.")
    with atomic_path(a.out_md) as tmp:
        tmp.write_text(to_markdown(wide, cap) + "\n" + to_markdown(summary, "Policies of Fig. 2 and their play"))
    fig = Figure(figsize=(7, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    width = 0.8 / len(policies)
    for i, p in enumerate(policies):
        h = hist[hist.policy == p]
        ax.bar(h.bin + (i - (len(policies) - 1) / 2) * width, h.fraction, width=width, label=p)
    ax.set_xticks(range(1, a.bins + 1))
    ax.set_xlabel("bin of teacher state value V(s) (low to high)")
    ax.set_ylabel("fraction of visited states")
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"Fig. 2(b): {meta['game']} state visits by teacher value ({a.tier} tier)")
    Path(a.out_fig).parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, a.out_fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    t = sub.add_parser("table1")
    for k in ("--runs", "--spec", "--tier", "--reported", "--out-csv", "--out-md", "--out-fig"):
        t.add_argument(k, required=True)
    s = sub.add_parser("sampling")
    for k in ("--name", "--runs", "--spec", "--tier", "--reported", "--out-csv", "--out-md", "--out-fig"):
        s.add_argument(k, required=True)
    f = sub.add_parser("fig2")
    for k in ("--values", "--scores", "--tier", "--out-csv", "--out-md", "--out-fig"):
        f.add_argument(k, required=True)
    f.add_argument("--bins", type=int, default=10)
    a = ap.parse_args(argv)
    {"table1": table1, "sampling": sampling, "fig2": fig2}[a.what](a)


if __name__ == "__main__":
    from common.cli import run

    run(main)
