"""Knowledge Flow tables and figures from the all-seeds run directories (pure aggregation, no training).

  python -m papers.knowledge_flow.tables table2 --runs runs/<tier>/knowledge_flow \
      --methods baseline kf_expert kf_non_expert finetune --tier <tier> --top-k 3 \
      --reported papers/knowledge_flow/reported.csv --out-csv T.csv --out-md T.md \
      --out-independence I.md --out-fig F.png --out-pw-fig P.png
  python -m papers.knowledge_flow.tables baseline --runs runs/<tier>/knowledge_flow/baseline ...   (A3C columns only)
  python -m papers.knowledge_flow.tables table7 --spec '{"triples": [["Hero", "Seaquest", "Riverraid"]], "seeds": 3,
      "total_steps": 2000000, "distral": {...}}' --runs runs/<tier>/knowledge_flow --tier <tier> --top-k 1 \
      --reported ... --out-csv T.csv --out-md T.md --out-fig F.png
  python -m papers.knowledge_flow.tables not_run --table "Table 7" --reason "..." ...   (a table we do not run)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from common.io import atomic_path, read_json
from common.report import (all_seeds_caption, all_seeds_view, comparison_table, git_commit, load_reported, plot_curves,
                           plot_facets, to_markdown)
from common.stats import MIN_SEEDS_IQM, curve_to_grid, summarise


def run_files(root: Path, name: str) -> list[tuple[str, int, Path]]:
    """(game, seed, file) of every <game>/seed<k>/<name> under root; a MinAtar game ('MinAtar/Breakout') is two
    directories deep."""
    found = sorted(root.glob(f"*/seed*/{name}")) + sorted(root.glob(f"MinAtar/*/seed*/{name}"))
    return [(f.parent.parent.relative_to(root).as_posix(), int(f.parent.name.removeprefix("seed")), f) for f in found
            if f.parent.name.removeprefix("seed").isdigit()]


def sticky_text(protocol: dict) -> str:
    """The protocol's sticky actions in words: 'sticky actions 0.1' (MinAtar's standard), or 'no sticky actions'
    where repeat_action_probability is 0 or absent (EvalProtocol's default 0: the era-faithful Atari protocol)."""
    p = float(protocol.get("repeat_action_probability") or 0.0)
    return f"sticky actions {p:g}" if p > 0 else "no sticky actions"


def provenance(run_dirs: list[Path], n_seeds: int) -> str:
    """The end of every caption: budget, seeds, evaluation protocol and commit, read from the runs themselves."""
    found = [f for d in run_dirs if d.exists() for _, _, f in run_files(d, "eval.json")]
    parts = []
    if found:
        cfg_path = found[0].parent / "config.json"
        steps = read_json(cfg_path).get("a2c", {}).get("total_steps") if cfg_path.exists() else None
        p = read_json(found[0]).get("protocol", {})
        if steps:
            parts.append(f"Budget: {int(steps):,} env steps per run (paper: 40M).")
        if p:
            parts.append(f"Evaluation: {p.get('episodes')} whole games per seed, up to {p.get('noop_max')} no-op "
                         f"starts, {p.get('policy')} policy, frame cap {p.get('max_frames'):,}, {sticky_text(p)}, "
                         "raw game score.")
    parts.append(f"Seeds: {n_seeds} per cell. Commit {git_commit()}.")
    if n_seeds < MIN_SEEDS_IQM:
        parts.append(f"With fewer than {MIN_SEEDS_IQM} seeds the claims scorecard (results/<tier>/claims.md) gives no "
                     "verdict beyond inconclusive.")
    return " " + " ".join(parts)


def collect(runs: Path, method: str, games=None, max_seeds: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All-seeds table (method, game, seed, score) from eval.json, and the curves on a common grid."""
    rows, curves = [], []
    for game, seed, ev in run_files(runs, "eval.json"):
        if (games is not None and game not in games) or (max_seeds is not None and seed >= max_seeds):
            continue
        rows.append({"method": method, "game": game, "seed": seed, "score": read_json(ev)["mean"]})
        c = pd.read_csv(ev.parent / "curve.csv")
        total = read_json(ev.parent / "config.json")["a2c"]["total_steps"]
        grid = np.linspace(0, total, 51)[1:]
        for s, v in zip(grid, curve_to_grid(c, grid, window=20)):
            curves.append({"group": f"{method} {game}", "game": game, "seed": seed, "env_steps": s, "score": v})
    if not rows:
        raise FileNotFoundError(f"no eval.json under {runs}/<game>/seed<k>/: run the pipeline's training rules first")
    return pd.DataFrame(rows), pd.DataFrame(curves)


def baseline(a) -> None:
    """Table 2's 'A3C baseline' and 'A3C' columns next to our A3C baseline."""
    seeds, curves = collect(Path(a.runs), "A3C baseline (ours)")
    ours = summarise(seeds, score="score", by=("method", "game"), k=a.top_k)
    rep = load_reported(a.reported)
    table = comparison_table(ours, rep, "Table 2", row_col="game",
                             column_map={"A3C baseline": "A3C baseline (ours)", "A3C": "A3C baseline (ours)"})
    n = int(seeds.groupby("game").seed.nunique().max())
    with atomic_path(a.out_csv) as tmp:
        table.to_csv(tmp, index=False)
    caption = (f"Knowledge Flow Table 2, A3C columns: paper vs ours ({a.tier} tier). ours_topk = mean of the top "
               f"{a.top_k} of {n} seeds (paper protocol: top 3 of 25); " + all_seeds_caption(table["n_seeds"])
               + " 'A3C baseline' is the authors' own implementation, "
               "'A3C' the numbers of Mnih et al. 2016 (human starts, not our no-op protocol); ratio = ours_topk / "
               "paper." + provenance([Path(a.runs)], n))
    with atomic_path(a.out_md) as tmp:
        tmp.write_text(to_markdown(table, caption))
    per_game = curves.assign(group=curves.game)
    plot_curves(per_game, a.out_fig, title=f"A3C baseline, all seeds ({a.tier} tier)", topk=a.top_k)


METHOD_NAMES = {"baseline": "A3C baseline (ours)", "kf_expert": "KF w/ expert (ours)",
                "kf_non_expert": "KF w/ non-expert (ours)", "finetune": "Fine-tune (ours)",
                "random": "Random policy (measured)", "teacher": "Teacher: the game's expert (measured)"}
COLUMN_MAP = {"Ours w/ expert": "kf_expert", "Ours w/ non-expert": "kf_non_expert", "Fine-tune": "finetune",
              "A3C baseline": "baseline", "A3C": "baseline",
              # rows the paper does not print: the reference points every RL table carries
              "Random policy": "random", "Teacher (expert)": "teacher"}


def reference_lines(table: pd.DataFrame, games) -> dict[str, list[tuple[str, float]]]:
    """game -> [(label, score)] for the Table 2 figure: our measured random policy and teacher, and the paper's
    A3C baseline and KF w/ expert (its games only: the paper's numbers are on the same Atari score scale)."""
    out = {}
    for g in games:
        rows = table[table["row"] == g]
        lines = [(label, float(r[0])) for label, col, key in (("random", "Random policy", "ours_topk"),
                                                              ("teacher", "Teacher (expert)", "ours_topk"),
                                                              ("paper: A3C baseline", "A3C baseline", "paper"),
                                                              ("paper: KF w/ expert", "Ours w/ expert", "paper"))
                 if len(r := pd.to_numeric(rows.loc[rows["column"] == col, key], errors="coerce").dropna().values)]
        out[g] = lines
    return out


def reference_rows(random_evals: list[str], teacher_evals: list[str]) -> pd.DataFrame:
    """(method, game, seed, score) rows of the uniform-random policy (eval.json of `common.evaluation --policy
    random`, which names its game) and of each game's own expert teacher ('GAME=teachers/.../eval.json')."""
    rows = [{"method": "random", "game": (ev := read_json(f))["game"], "seed": int(ev["seed"]), "score": ev["mean"]}
            for f in random_evals]
    for pair in teacher_evals:
        game, sep, f = pair.partition("=")
        if not sep:
            raise ValueError(f"--teachers takes GAME=PATH pairs, got {pair!r}")
        ev = read_json(f)
        rows.append({"method": "teacher", "game": game, "seed": int(ev.get("seed", 0)), "score": ev["mean"]})
    return pd.DataFrame(rows, columns=["method", "game", "seed", "score"])


def independence_table(runs: Path, methods: list[str]) -> pd.DataFrame:
    """Per Knowledge Flow (method, game): how far the students end from independence, from final.json.

    dependence = 1 - p_w^j(student) per student layer j of the weights the forward mixes with; a run's dependence
    is its maximum over layers. The exported student (the one evaluated) equals the trained network exactly only at
    0. Where the teachers were faded out (kf.fade_teachers F > 0) the mixed weights reach the student alone by
    construction, so two more columns show the learned p_w the dependency loss trained (final.json's ``pw``):
    'learned max dependence' = max_j 1 - p_w^j(student) before the fade, mean over seeds and worst run.
    """
    rows = []
    for m in methods:
        for game, seed, f in run_files(runs / m, "final.json"):
            fin = read_json(f)
            ind = fin["independence"]
            layers = [k for k in ind if k != "max"]
            learned = max((1.0 - fin["pw"][f"pw/{j}/student"] for j in layers if f"pw/{j}/student" in fin.get("pw", {})),
                          default=0.0)
            rows.append({"method": m, "game": game, "seed": seed,
                         **{f"1-pw {k}": ind[k] for k in layers}, "max": ind["max"],
                         "fade": float(fin.get("fade_teachers", 0.0)), "learned": learned})
    if not rows:
        return pd.DataFrame(columns=["method", "game", "runs", "mean max dependence", "worst run"])
    df = pd.DataFrame(rows)
    layers = [c for c in df.columns if c.startswith("1-pw ")]
    out = df.groupby(["method", "game"], sort=True).agg(
        runs=("seed", "count"), **{f"mean {c}": (c, "mean") for c in layers},
        **{"mean max dependence": ("max", "mean"), "worst run": ("max", "max")},
        fade=("fade", "max"), learned_mean=("learned", "mean"), learned_worst=("learned", "max")).reset_index()
    if not (out["fade"] > 0).any():
        return out.drop(columns=["fade", "learned_mean", "learned_worst"])
    return out.rename(columns={"fade": "fade_teachers", "learned_mean": "mean learned max dependence (before the fade)",
                               "learned_worst": "worst run, learned"})


def pw_curves(runs: Path, methods: list[str]) -> pd.DataFrame:
    """p_w of every candidate per student layer over training (train_stats.csv), long format."""
    parts = []
    for m in methods:
        for game, seed, f in run_files(runs / m, "train_stats.csv"):
            st = pd.read_csv(f)
            cols = [c for c in st.columns if c.startswith("pw/")]
            if not cols:
                continue
            long = st.melt(id_vars=["env_steps"], value_vars=cols, var_name="key", value_name="pw")
            long[["_", "layer", "candidate"]] = long["key"].str.split("/", n=2, expand=True)
            # 't1.conv3' -> 'teacher 1': one colour per teacher across layers (order of config table2)
            long["candidate"] = long["candidate"].str.replace(r"^t(\d+)\..*$", r"teacher \1", regex=True)
            long = long.assign(method=m, game=game, seed=seed)
            parts.append(long.drop(columns=["key", "_"]))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def table2(a) -> None:
    """Table 2: Knowledge Flow with expert / non-expert teachers, fine-tuning and the A3C baseline."""
    runs = Path(a.runs)
    seeds, curves = [], []
    for m in a.methods:
        if not (runs / m).exists():
            raise FileNotFoundError(f"no runs for method '{m}' under {runs}: run the pipeline's kf_train rules first")
        s_m, c_m = collect(runs / m, m)
        seeds.append(s_m)
        curves.append(c_m.assign(method=METHOD_NAMES.get(m, m)))
    seeds, curves = pd.concat(seeds, ignore_index=True), pd.concat(curves, ignore_index=True)
    n = int(seeds.groupby(["method", "game"]).seed.nunique().max())
    refs = reference_rows(a.random, a.teachers)
    if not refs.empty:
        seeds = pd.concat([seeds, refs], ignore_index=True)
    ours = summarise(seeds, score="score", by=("method", "game"), k=a.top_k)
    table = comparison_table(ours, load_reported(a.reported), "Table 2", row_col="game", column_map=COLUMN_MAP)
    table["method"] = table["method"].map(lambda m: METHOD_NAMES.get(m, m))
    with atomic_path(a.out_csv) as tmp:
        table.to_csv(tmp, index=False)
    caption = (f"Knowledge Flow Table 2: paper vs ours ({a.tier} tier). ours_topk = mean of the top {a.top_k} of "
               f"{n} seeds (paper protocol: top 3 of 25); " + all_seeds_caption(table["n_seeds"])
               + " ratio = ours_topk / paper. Teachers are experts of their own games, "
               "as the paper's table prints them (config knowledge_flow.table2); 'A3C' is Mnih et al. 2016's "
               "number, compared with our A3C baseline. The evaluated student is the exported independent network "
               "(no teacher, Q or w); see independence.md for how far each run ended from p_w(student) = 1. 'A3C' "
               "(Mnih et al.) is a human-start score, not on our no-op protocol. The curves (table2_curves.png) are "
               "training returns of the net being trained: for Knowledge Flow the mixed net, teachers included, "
               "not the exported student the table scores. Reference rows: 'Random policy' plays uniformly random "
               "actions under the students' evaluation protocol (one seed); 'Teacher' is the game's own expert, "
               "where this tier trains one, played under the same protocol (sampled actions; rule kf_teacher_eval)." + provenance([runs / m for m in a.methods], n))
    with atomic_path(a.out_md) as tmp:
        tmp.write_text(to_markdown(table, caption))
    ind = independence_table(runs, [m for m in a.methods if m.startswith("kf")])
    ind["method"] = ind["method"].map(lambda m: METHOD_NAMES.get(m, m))
    with atomic_path(a.out_independence) as tmp:
        tmp.write_text(to_markdown(ind, f"Remaining teacher dependence 1 - p_w(student) at the end of training "
                                        f"({a.tier} tier): per layer mean over seeds, the mean of each run's worst "
                                        "layer, and the worst run. 0 = fully independent student. Where "
                                        "fade_teachers > 0 the teachers were faded out at the end (our choice, "
                                        "not the paper's), so the mixed weights end at 0 by construction; the "
                                        "'learned' columns are 1 - p_w(student) of the weights the dependency "
                                        "loss trained, which the paper's claim of independence is about."))
    plot_facets(curves, a.out_fig, f"Knowledge Flow Table 2 / Fig. 3, 6: training return (KF: mixed net), all seeds "
                                   f"({a.tier} tier, commit {git_commit()}); dashed: random policy, teacher, the "
                                   "paper's final scores (40M steps)",
                facet="game", hue="method", refs=reference_lines(table, curves["game"].unique()))
    pw = pw_curves(runs, [m for m in a.methods if m.startswith("kf")])
    if pw.empty:  # a tier with the baseline only (e.g. config/recorded/foundation-2core.yaml)
        pw = pd.DataFrame({"method": ["no Knowledge Flow runs in this tier"], "game": ["-"], "layer": ["-"],
                           "candidate": ["-"], "env_steps": [0], "pw": [float("nan")]})
    pw["method"] = pw["method"].map(lambda m: METHOD_NAMES.get(m, m))
    plot_facets(pw, a.out_pw_fig, f"Normalised weights p_w per student layer over training (Fig. 1c, 7; {a.tier} tier)",
                facet=["method", "game", "layer"], hue="candidate", y="pw", ylabel="p_w", ncols=3, sharey=True)


def experiment(a) -> None:
    """Table 1 or an ablation (knowledge_flow.experiments): paper vs ours where the paper gives a number."""
    import json

    spec, runs = json.loads(a.spec), Path(a.runs)
    methods = (["baseline"] if spec.get("baseline") else []) + list(spec["runs"])
    names = {m: (spec["runs"][m].get("column") or m) + " (ours)" if m in spec["runs"] else METHOD_NAMES[m]
             for m in methods}
    seeds, curves = [], []
    for m in methods:
        s_m, c_m = collect(runs / m, m, games=spec["games"], max_seeds=spec.get("seeds"))
        seeds.append(s_m)
        curves.append(c_m.assign(method=names[m]))
    seeds, curves = pd.concat(seeds, ignore_index=True), pd.concat(curves, ignore_index=True)
    ours = summarise(seeds, score="score", by=("method", "game"), k=a.top_k)
    rep = load_reported(a.reported)
    table_name = spec.get("paper_table", a.name)
    n = int(seeds.groupby(["method", "game"]).seed.nunique().max())
    if (rep["table"] == table_name).any():
        cmap = {r.get("column", m): m for m, r in spec["runs"].items()}
        cmap.update({c: "baseline" for c in spec.get("baseline_columns", [])} if spec.get("baseline") else {})
        table = comparison_table(ours, rep, table_name, row_col="game", column_map=cmap)
        what = "paper vs ours"
    else:
        table = pd.concat([ours[["game", "method", "n_seeds", "topk_mean"]].rename(
            columns={"game": "row", "topk_mean": "ours_topk"}), all_seeds_view(ours)], axis=1)
        what = "ours (the paper gives no numbers for it)"
    table["method"] = table["method"].map(lambda m: names.get(m, m))
    with atomic_path(a.out_csv) as tmp:
        table.to_csv(tmp, index=False)
    caption = (f"Knowledge Flow {table_name} ({a.name}): {what}, {a.tier} tier. ours_topk = mean of the top {a.top_k} "
               f"of {n} seeds; " + all_seeds_caption(table["n_seeds"]) + " ratio = "
               "ours_topk / paper. Paper numbers of the ablation figures are the final rewards quoted in the text. "
               "Curves: training returns of the net being trained (Knowledge Flow: the mixed net, teachers included)."
               + provenance([runs / m for m in methods], n))
    ind = independence_table(runs, [m for m in methods if m.startswith("kf")])
    ind = ind[ind["game"].isin(spec["games"])]
    ind["method"] = ind["method"].map(lambda m: names.get(m, m))
    with atomic_path(a.out_md) as tmp:
        tmp.write_text(to_markdown(table, caption) + "\n" + to_markdown(
            ind, "Remaining teacher dependence 1 - p_w(student) at the end of training (0 = independent)"))
    plot_facets(curves, a.out_fig, f"Knowledge Flow {table_name}: all seeds ({a.tier} tier)",
                facet="game", hue="method")


TABLE7_NAMES = {"distral": "Distral m1 (ours)", "kf": "KF w/ task 2+3 experts (ours)",
                "distral_m0": "Distral m0 (ours)"}


def table7(a) -> None:
    """Table 7: Distral's task-1 policy m1 vs Knowledge Flow on task 1 with the experts of tasks 2 and 3 as teachers,
    per task triple; Distral's distilled policy m0 on task 1 beside them (the paper: m1 is better than m0)."""
    import json

    from papers.knowledge_flow.plan import DISTRAL, table7_kf_method, triple_name

    spec, runs = json.loads(a.spec), Path(a.runs)
    seeds, curves, m0, stats = [], [], [], []
    for triple in spec["triples"]:
        name = triple_name(triple)
        s_d, c_d = collect(runs / DISTRAL, "distral", games=[name], max_seeds=spec["seeds"])
        s_k, c_k = collect(runs / table7_kf_method(triple), "kf", games=[triple[0]], max_seeds=spec["seeds"])
        seeds += [s_d, s_k.assign(game=name)]
        curves += [c_d.assign(method=TABLE7_NAMES["distral"]), c_k.assign(game=name, method=TABLE7_NAMES["kf"])]
        for r in s_d.itertuples():
            d = runs / DISTRAL / name / f"seed{r.seed}"
            if (d / "pi0" / "eval.json").exists():
                m0.append({"method": "distral_m0", "game": name, "seed": r.seed,
                           "score": read_json(d / "pi0" / "eval.json")["mean"]})
            if (d / "final.json").exists():
                stats.append({"triple": name, "seed": r.seed, **read_json(d / "final.json")["distral"]})
    seeds = pd.concat(seeds + ([pd.DataFrame(m0)] if m0 else []), ignore_index=True)
    curves = pd.concat(curves, ignore_index=True)
    ours = summarise(seeds, score="score", by=("method", "game"), k=a.top_k)
    table = comparison_table(ours, load_reported(a.reported), "Table 7", row_col="game",
                             column_map={"Distral": "distral", "Ours": "kf", "Distral m0": "distral_m0"})
    table["method"] = table["method"].map(lambda m: TABLE7_NAMES.get(m, m))
    n = int(seeds.groupby(["method", "game"]).seed.nunique().max())
    with atomic_path(a.out_csv) as tmp:
        table.to_csv(tmp, index=False)
    d = spec.get("distral", {})
    caption = (f"Knowledge Flow Table 7 (task-1 score): paper vs ours, {a.tier} tier, {int(spec['total_steps']):,} env "
               "steps per task for each method (paper: 40M; Distral trains every task of the triple, so 3x the steps "
               "in all). Distral = KL + ent 1col (Teh et al. 2017; papers/knowledge_flow/distral.py) with alpha "
               f"{d.get('alpha', '?')}, beta {d.get('beta', '?')} (our choice: the KF paper gives none), every task on "
               "the full 18-action set; its task-1 policy m1 is the paper's 'Distral' column, its distilled policy m0 "
               "is the 'Distral m0' rows (the paper gives no number). Ours = Knowledge Flow on task 1 with the experts "
               "of tasks 2 and 3 as teachers (the run kf_<task2>_<task3>), on its game's minimal action set. "
               f"ours_topk = mean of the top {a.top_k} of {n} seeds (paper protocol: top 3 of 25); "
               + all_seeds_caption(table["n_seeds"]) + " ratio = ours_topk / paper."
               + provenance([runs / table7_kf_method(t) for t in spec["triples"]], n))
    cells = {(table7_kf_method(t), t[0]) for t in spec["triples"]}
    ind = independence_table(runs, sorted({m for m, _ in cells}))
    ind = ind[[(m, g) in cells for m, g in zip(ind["method"], ind["game"])]]
    st = pd.DataFrame(stats, columns=["triple", "seed", "kl_to_pi0", "neg_logp", "pi0_cross_entropy"])
    if len(st):
        st = st.groupby("triple", sort=False).agg(
            runs=("seed", "count"), kl_to_pi0=("kl_to_pi0", "mean"), neg_logp=("neg_logp", "mean"),
            pi0_cross_entropy=("pi0_cross_entropy", "mean")).reset_index()
    with atomic_path(a.out_md) as tmp:
        tmp.write_text(
            to_markdown(table, caption) + "\n"
            + to_markdown(st, "Distral task 1 at the end of training (mean over seeds of the last tenth of training): "
                              "kl_to_pi0 = mean log pi_1 - log pi_0 on the actions taken (a sample estimate of "
                              "KL(pi_1 || pi_0)), neg_logp = mean -log pi_1 (entropy estimate), pi0_cross_entropy = "
                              "pi_0's distillation loss on task 1's rollouts") + "\n"
            + to_markdown(ind, "Knowledge Flow runs of the 'Ours' column: remaining teacher dependence "
                               "1 - p_w(student) at the end of training (0 = independent)"))
    plot_facets(curves, a.out_fig, f"Knowledge Flow Table 7: task-1 training curves, all seeds ({a.tier} tier)",
                facet="game", hue="method")


def not_run(a) -> None:
    """A table of the paper that this repository does not run: its reported rows beside "not run: <why>"."""
    rep = load_reported(a.reported)
    rows = rep[rep["table"] == a.table]
    if rows.empty:
        raise SystemExit(f"{a.reported} has no rows of table '{a.table}': add them (copied from the paper) or "
                         "fix the table name")
    table = rows[["row", "column", "value", "source"]].rename(columns={"value": "paper"}).assign(
        ours=f"not run: {a.reason}")
    with atomic_path(a.out_csv) as tmp:
        table.to_csv(tmp, index=False)
    caption = f"Knowledge Flow {a.table}: paper only, {a.tier} tier. Not run here: {a.reason}."
    with atomic_path(a.out_md) as tmp:
        tmp.write_text(to_markdown(table.drop(columns="source"), caption) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    b = sub.add_parser("baseline")
    for k in ("--runs", "--tier", "--reported", "--out-csv", "--out-md", "--out-fig"):
        b.add_argument(k, required=True)
    b.add_argument("--top-k", type=int, default=3)
    t = sub.add_parser("table2")
    for k in ("--runs", "--tier", "--reported", "--out-csv", "--out-md", "--out-independence", "--out-fig",
              "--out-pw-fig"):
        t.add_argument(k, required=True)
    t.add_argument("--methods", nargs="+", required=True)
    t.add_argument("--top-k", type=int, default=3)
    t.add_argument("--random", nargs="*", default=[], help="random-policy eval.json files (the reference rows)")
    t.add_argument("--teachers", nargs="*", default=[], help="GAME=eval.json of each game's own expert teacher")
    e = sub.add_parser("experiment")
    for k in ("--name", "--spec", "--runs", "--tier", "--reported", "--out-csv", "--out-md", "--out-fig"):
        e.add_argument(k, required=True)
    e.add_argument("--top-k", type=int, default=3)
    t7 = sub.add_parser("table7")
    for k in ("--spec", "--runs", "--tier", "--reported", "--out-csv", "--out-md", "--out-fig"):
        t7.add_argument(k, required=True)
    t7.add_argument("--top-k", type=int, default=3)
    n = sub.add_parser("not_run")
    for k in ("--table", "--reason", "--tier", "--reported", "--out-csv", "--out-md"):
        n.add_argument(k, required=True)
    a = ap.parse_args(argv)
    {"baseline": baseline, "table2": table2, "experiment": experiment, "table7": table7, "not_run": not_run}[a.what](a)


if __name__ == "__main__":
    from common.cli import run

    run(main)
