"""Knowledge Flow Tables 3-6 (supervised): paper vs ours from the experiments' results.json (pure aggregation).

  python -m papers.knowledge_flow.supervised_tables --runs runs/<tier>/knowledge_flow_supervised --tier <tier> \
      --plan '{"digits_kd": {"table": "Table 4", "epochs": 3, "not_run": null, "missing": []}, ...}' \
      --reported papers/knowledge_flow/reported.csv --out-csv S.csv --out-md S.md --out-fig S.png \
      [--out-pw-fig P.png] [--out-curve-fig C.png]

--plan is :func:`papers.knowledge_flow.supervised_plan.tier_plan` as JSON: the tier's presets and, for each, why it
was not run (None when it ran). Every reported row of Tables 3-6 appears in the output, with our number, or
"not run: <reason>" (dataset unavailable, not in this tier, no preset), or marked as another work's number.

--out-pw-fig also draws the normalised weights p_w of every candidate ('student', 'teacher 0', ...) per student
layer over epochs from the experiments' pw.csv (mean over seeds, band per common.report.curve_band;
:func:`pw_curves`, :func:`plot_pw`), one panel per preset, Knowledge Flow method and student layer, and adds its
caption to the markdown.

--out-curve-fig draws the top-1 test accuracy over epochs of every method (the paper's Figs. 4, EMNIST Letters,
and 5, STL-10: "our approach, fine-tuning and baseline"), one panel per preset that ran, from each experiment's
curves.csv (:func:`accuracy_curves`, :func:`plot_curves`); Knowledge Flow shows both the mixed net being trained
and its student alone (what the export gives at that epoch).
"""

from __future__ import annotations

import argparse
import json
import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from common.io import atomic_path, read_json
from common.report import (NOT_RUN, all_seeds_caption, all_seeds_view, load_reported, plot_facets, save_figure,
                           to_markdown)
from common.stats import seed_stats
from papers.knowledge_flow.supervised import PW_COLUMNS
from papers.knowledge_flow.supervised_plan import TIER_TABLES
from papers.knowledge_flow.supervised_presets import EXPERIMENTS, NOT_REPRODUCED, PAPER_ROWS

NOTES = {
    "Table 3": "Paper: DenseNet-BC-100/24 with standard augmentation; ours: DenseNet-BC (paper tier 100/24, default "
               "tier 40/12) without augmentation, trained with Adam (Huang et al.: SGD). Teachers: experts of "
               "CIFAR-10/100 and SVHN, of the student's architecture.",
    "Table 4": "Paper: Hinton et al. (2015)'s MLPs on MNIST (teacher 1200-1200, student 800-800; the same here), "
               "Chen (2017)'s CIFAR-100 net on C100 (the same here, the student with half its channels; default tier "
               "at a quarter of its width), ResNet-50 -> ResNet-18 on ImageNet (the same, torchvision's, untrained; "
               "paper tier only, one lambda point). 'w/o digit 3': the student never sees a 3 in training; the "
               "test set is complete. Digits rows: offline stand-ins on scikit-learn's 8x8 digits (MLP teacher "
               "128-128, student 32-32); the paper has no number for them.",
    "Table 5": "Paper: Chen (2017)'s MNIST net; ours: the same (fc 256-256, dropout 0.2). Teachers: experts of EMNIST "
               "letters (expert), of the first 13 letters (semi-expert) and of EMNIST digits (non-expert). Digits row: "
               "offline stand-in, teachers on all digits (expert) and on digits 0-4 (semi-expert). Cohen et al. "
               "(2017) is another work's number, quoted by the paper.",
    "Table 6": "Paper: Chen (2017)'s STL-10 net on the 5,000 labelled images; ours: the same (default tier at half "
               "its width), on 96x96 inputs: the CIFAR teachers' images are upsampled to 96x96. Zhao et al. (2015) "
               "and Thoma (2017) are other works' numbers, quoted by the paper.",
}
COLUMNS = ["table", "row", "column", "experiment", "method", "paper", "ours", "ours_std", "n_seeds", "ratio",
           "epochs", "selected", "ours_mixed", "independence"]
OTHER_WORK = "other work (quoted by the paper)"


def _not_run(reason: str) -> dict:
    return {"ours": f"{NOT_RUN}: {reason}", "n_seeds": 0}


def _ours(res: dict, method: str, paper: float) -> dict:
    """Our summary of one method from results.json: mean/std test error over seeds, and for Knowledge Flow
    the mixed net's error and the remaining dependence on the teachers."""
    s = res["summary"][method]
    rows = [r for r in res["rows"] if r["method"] == method]
    mixed = [r["test_error_mixed"] for r in rows if r.get("test_error_mixed") is not None]
    dep = [r["independence"] for r in rows if r.get("independence") is not None]
    errors = [r["test_error"] for r in sorted(rows, key=lambda r: r.get("seed", 0))]
    return {"ours": s["test_error_mean"], "ours_std": s["test_error_std"], "n_seeds": s["n_seeds"],
            "_stats": seed_stats(errors),
            "ratio": s["test_error_mean"] / paper if np.isfinite(paper) and paper > 0 else np.nan,
            "epochs": res["args"]["epochs"], "selected": ", ".join(f"{k}={v:g}" for k, v in s["selected"].items()),
            "ours_mixed": float(np.mean(mixed)) if mixed else np.nan,
            "independence": float(np.mean(dep)) if dep else np.nan}


def build(runs, plan: dict, reported: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tables 3-6 paper vs ours (one row per table, dataset row and paper column) and the teachers' errors.

    Rows: the paper's, in its order, then our stand-in rows (no paper number) of presets this tier lists.
    ours = mean test error (%) over seeds of the exported student; after ours_std its all-seeds columns
    (common.report.all_seeds_view: mean [min, max] and per seed below 5 seeds, IQM [95% CI] from 5); ratio =
    ours / paper (< 1: ours lower).
    """
    runs = Path(runs)
    rep = reported[reported["table"].isin(list(NOTES))]
    by_row = {(t, r): e for e, (t, r, _) in PAPER_ROWS.items()}
    keys = list(dict.fromkeys(zip(rep["table"], rep["row"])))
    keys += [(t, r) for e, (t, r, _) in PAPER_ROWS.items() if e in plan and (t, r) not in keys]
    keys.sort(key=lambda k: list(NOTES).index(k[0]))                    # stable: paper order within a table
    out, teachers = [], []
    for table, row in keys:
        r = rep[(rep["table"] == table) & (rep["row"] == row)]
        paper = dict(zip(r["column"], r["value_num"]))
        exp = by_row.get((table, row))
        methods = PAPER_ROWS[exp][2] if exp else {}
        res = None
        if exp in plan and plan[exp]["not_run"] is None:
            f = runs / exp / "results.json"
            if not f.exists():
                raise FileNotFoundError(f"{f} is missing: run the pipeline's kf_supervised rule for '{exp}' first")
            res = read_json(f)
            teachers += [{"table": table, "experiment": exp, "teacher": n, "test error (%) on its source task": v}
                         for n, v in res["teachers"].items()]
        for column in list(paper) + [c for c in methods.values() if c not in paper]:
            method = next((m for m, c in methods.items() if c == column), "")
            rec = {"table": table, "row": row, "column": column, "experiment": exp or "", "method": method,
                   "paper": paper.get(column, np.nan)}
            if not exp:
                rec.update(_not_run(NOT_REPRODUCED.get((table, row),
                                                       "no preset in supervised_presets.yaml reproduces this row")))
            elif not method:
                rec.update(ours=OTHER_WORK, n_seeds=0)
            elif res is not None:
                rec.update(_ours(res, method, rec["paper"]))
            elif exp in plan:
                rec.update(_not_run(plan[exp]["not_run"]))
            else:
                key = next(k for k, t in TIER_TABLES.items() if t == table)
                rec.update(_not_run(f"not in this tier (add '{exp}' to kf_supervised.experiments.{key})"))
            out.append(rec)
    stats = [rec.pop("_stats", None) or seed_stats([]) for rec in out]
    df = pd.DataFrame(out).reindex(columns=COLUMNS)
    df["n_seeds"] = df["n_seeds"].fillna(0).astype(int)
    view = all_seeds_view(pd.DataFrame(stats, index=df.index), "ours")
    view.loc[df["ours"].astype(str) == OTHER_WORK, :] = ""
    i = df.columns.get_loc("ours_std") + 1
    df = pd.concat([df.iloc[:, :i], view, df.iloc[:, i:]], axis=1)
    df["epochs"] = pd.Series([int(e) if pd.notna(e) else np.nan for e in df["epochs"]], index=df.index,
                             dtype=object)                               # shown as 5, not 5.000
    return df, pd.DataFrame(teachers)


def markdown(table: pd.DataFrame, teachers: pd.DataFrame, plan: dict, tier: str) -> str:
    """One captioned table per paper table, the teachers' errors, and how to get the data that was missing."""
    n = sorted(set(table.loc[table["n_seeds"] > 0, "n_seeds"]))
    parts = [f"Knowledge Flow, supervised learning (Tables 3-6), {tier} tier. All numbers are top-1 test error in %: "
             "**lower is better**. paper = the paper's number (mean of 3 seeds); ours = mean over "
             f"{'/'.join(map(str, n)) if n else 'no (nothing ran)'} seed(s) of the exported student (no teacher, "
             "Q or w), ours_std = its standard deviation over seeds; " + all_seeds_caption(table["n_seeds"])
             + " ratio = ours / paper (below 1: ours is lower). "
             "Lambdas (KD: T, alpha) are chosen on a 10% validation split of the training set (selected); "
             "ours_mixed = the student with its teachers, before export; independence = mean over seeds of "
             "max_j 1 - p_w^j(student) (0: fully independent). Rows not run say why.\n"]
    for t, note in NOTES.items():
        sub = table[table["table"] == t].drop(columns=["table"])
        parts.append(to_markdown(sub, f"Knowledge Flow {t} ({tier} tier): test error (%), lower is better; "
                                      f"paper vs ours. {note}"))
    if not teachers.empty:
        parts.append(to_markdown(teachers, f"Teachers of the supervised experiments ({tier} tier): top-1 test error "
                                           "(%) on their own source task"))
    cmds = {}
    for e in plan.values():
        for name, path, cmd in e.get("missing", []):
            cmds.setdefault(cmd, (name, path))
    if cmds:
        lines = ["**How to get the missing data.** This program never downloads: run these on a machine with internet "
                 "access, copy what they fetch into kf_supervised.data_dir, and rerun the pipeline (the experiments "
                 "run once their data is found).", ""]
        lines += [f"- {name} (expected `{path}`): `{cmd}`" for cmd, (name, path) in cmds.items()]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def plot(table: pd.DataFrame, runs, path, title: str) -> Path:
    """One panel per experiment that ran: ours per method (bar = mean, dots = seeds) and the paper's number
    (black tick) where it has one; written atomically."""
    runs, path = Path(runs), Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ran = table[table["n_seeds"] > 0]
    exps = list(dict.fromkeys(ran["experiment"]))
    ncols = max(1, min(3, len(exps)))
    nrows = max(1, math.ceil(len(exps) / ncols))
    fig = Figure(figsize=(4.8 * ncols, 3.8 * nrows + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, exp in zip(axes, exps):
        sub = ran[ran["experiment"] == exp].reset_index(drop=True)
        seeds = pd.DataFrame(read_json(runs / exp / "results.json")["rows"])
        x = np.arange(len(sub))
        ax.bar(x, sub["ours"].astype(float), color="C0", alpha=0.5, label="ours: mean")
        for i, m in enumerate(sub["method"]):
            e = seeds.loc[seeds["method"] == m, "test_error"]
            ax.plot(np.full(len(e), i), e, "o", color="C0", ms=3, label="ours: seeds" if i == 0 else None)
        mixed = sub["ours_mixed"].notna().to_numpy()
        if mixed.any():
            ax.plot(x[mixed], sub.loc[mixed, "ours_mixed"], "x", color="C3", ms=7,
                    label="ours: mixed net, before export")
        has = sub["paper"].notna().to_numpy()
        if has.any():
            ax.plot(x[has], sub.loc[has, "paper"], "_", color="k", ms=18, mew=2, label="paper")
        ax.set_xticks(x, sub["column"], rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{sub['table'][0]}: {sub['row'][0]}", fontsize=9)
        ax.set_ylabel("test error (%), lower is better")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7)
    if not exps:
        axes[0].text(0.5, 0.5, "no supervised experiment ran in this tier\n(the tables say why)", ha="center",
                     va="center")
        axes[0].set_axis_off()
    for ax in axes[max(1, len(exps)):]:
        ax.set_visible(False)
    fig.suptitle(title)
    return save_figure(fig, path, dpi=110)


# ---------------------------------------------------------------------------------------------------
# p_w over training (pw.csv of each experiment). Only the paper's Fig. 7 plots p_w (C10, teachers C100 and
# SVHN); its Figs. 4 (EMNIST Letters) and 5 (STL-10) plot top-1 test accuracy over epochs of the same
# experiments, so for those presets the panels show p_w of the runs behind the figure, not the figure itself.
# ---------------------------------------------------------------------------------------------------
PW_FIGURES = {                   # short: a panel title is ~40 characters wide
    "cifar10": "paper Fig. 7",
    "emnist_letters": "runs of Fig. 4",
    "digits_transfer": "Fig. 4 stand-in",
    "stl10": "runs of Fig. 5",
}


def pw_label(experiment: str) -> str:
    """The panel name of a preset: which paper figure it stands in for, or that the paper has none."""
    return f"{experiment} ({PW_FIGURES.get(experiment, 'no paper fig.')})"


def ran_preset_files(runs, plan: dict, name: str, recorded: str):
    """(preset, path) of file `name` of every preset that ran (plan[e]['not_run'] is None), in plan order; a preset
    that ran without it stops with the rule to rerun (runs made before `recorded` was recorded lack it)."""
    for exp, p in plan.items():
        if p.get("not_run") is not None:
            continue
        f = Path(runs) / exp / name
        if not f.exists():
            raise FileNotFoundError(f"{f} is missing: rerun the pipeline's kf_supervised rule for '{exp}' (runs made "
                                    f"before {recorded} was recorded lack it)")
        yield exp, f


def absent_reason(plan: dict, experiment: str, ran: str = "no Knowledge Flow run") -> str:
    """Why a figure lacks a preset: not in this tier, not run (dataset unavailable, or the plan's reason), or
    `ran` when it ran but gave the figure nothing."""
    if experiment not in plan:
        return "not in this tier"
    reason = plan[experiment].get("not_run")
    if reason is None:
        return ran
    return "not run: dataset unavailable" if str(reason).startswith("dataset unavailable") else f"not run: {reason}"


def _wrap_title(title: str, n_panels: int) -> str:
    """Each line of `title` wrapped to the width of a row of up to 3 panels (plot_facets: 4.2 in a panel)."""
    width_chars = int(4.2 * min(3, n_panels) * 11)
    return "\n".join(textwrap.fill(line, width_chars) for line in title.split("\n"))


def pw_curves(runs, plan: dict) -> pd.DataFrame:
    """The pw.csv rows of every preset that ran (plan[e]['not_run'] is None), in plan order; a preset that
    ran without pw.csv stops with the rule to rerun."""
    parts = []
    for exp, f in ran_preset_files(runs, plan, "pw.csv", "p_w"):
        df = pd.read_csv(f, dtype={"teacher": str}).fillna({"teacher": ""})     # "" = the student
        parts.append(df.assign(preset=exp))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=PW_COLUMNS)


def pw_caption(plan: dict, pw: pd.DataFrame, tier: str) -> str:
    """Which presets the p_w figure shows (those that ran with a Knowledge Flow method), which it lacks and why."""
    shown = list(dict.fromkeys(pw["preset"])) if not pw.empty else []
    fig_presets = [e for e in PW_FIGURES if e in EXPERIMENTS]
    absent = [e for e in fig_presets if e not in shown]
    why = {e: absent_reason(plan, e) for e in absent}
    teachers = {e: "; ".join(f"{m}: " + ", ".join(f"teacher {i} = {t}" for i, t in enumerate(m.partition(':')[2].split('+')))
                             for m in dict.fromkeys(pw.loc[pw["preset"] == e, "method"]))
                for e in shown}
    return (f"Normalised weights p_w per student layer over training ({tier} tier): one panel per preset, Knowledge "
            "Flow method and student layer; p_w of each candidate (the student's own layer, 'teacher m' = the "
            "m-th teacher of the method) at the start (epoch 0) and after every epoch, mean over seeds with a band: "
            "the seeds' min-max below 5 seeds, a 95% bootstrap CI of the mean from 5 (the figure says which). The "
            "paper plots p_w only in Fig. 7 (C10 with C100 and SVHN teachers: preset cifar10); "
            "its Figs. 4 (EMNIST Letters) and 5 (STL-10) plot test accuracy over epochs, so the emnist_letters, "
            "digits_transfer (offline stand-in for EMNIST Letters) and stl10 panels show p_w of the runs behind "
            "those figures. Shown: " + (", ".join(f"{e} ({teachers[e]})" for e in shown) if shown else "nothing")
            + "." + (" Not shown: " + ", ".join(f"{e} ({why[e]})" for e in absent) + "." if absent else ""))


def plot_pw(pw: pd.DataFrame, path, title: str) -> Path:
    """p_w over epochs per candidate, one panel per preset / method / layer (common.report.plot_facets); a
    placeholder figure saying so when no Knowledge Flow run is there."""
    if pw.empty:
        return _placeholder(path, title, "no supervised Knowledge Flow run in this tier\n(the tables say why)")
    df = pw.assign(panel=[f"{pw_label(e)}\n{m} / {lay}" for e, m, lay in zip(pw["preset"], pw["method"], pw["layer"])])
    return plot_facets(df, path, _wrap_title(title, df["panel"].nunique()), facet="panel", hue="candidate", x="epoch",
                       y="p_w", xlabel="epoch", ylabel="p_w", ncols=3, sharey=True)


# ---------------------------------------------------------------------------------------------------
# Test accuracy over epochs (curves.csv of each experiment): the paper's Figs. 4 and 5
# ---------------------------------------------------------------------------------------------------
def accuracy_curves(runs, plan: dict) -> pd.DataFrame:
    """Long table {preset, panel, curve, seed, epoch, test_acc} of every preset that ran, in plan order: one
    curve per method, and for Knowledge Flow two, '<method> (mixed)' (the net being trained, with its
    teachers) and '<method> (student alone)'. A preset that ran without curves.csv stops with the rule to rerun."""
    parts = []
    for exp, f in ran_preset_files(runs, plan, "curves.csv", "test accuracy per epoch"):
        df = pd.read_csv(f)
        kf = df["method"].str.startswith("kf:")
        mixed = df.assign(curve=np.where(kf, df["method"] + " (mixed)", df["method"]))
        alone = df[kf].assign(curve=df.loc[kf, "method"] + " (student alone)", test_acc=df.loc[kf, "test_acc_student"])
        parts.append(pd.concat([mixed, alone], ignore_index=True).assign(preset=exp, panel=pw_label(exp)))
    cols = ["preset", "panel", "curve", "seed", "epoch", "test_acc"]
    return (pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)).astype(
        {"test_acc": float})


def curve_caption(plan: dict, curves: pd.DataFrame, tier: str) -> str:
    """What the accuracy figure shows and which of the paper's figure presets it lacks, and why."""
    shown = list(dict.fromkeys(curves["preset"])) if not curves.empty else []
    absent = [e for e in ("emnist_letters", "stl10") if e not in shown]
    why = {e: absent_reason(plan, e, ran="no curves recorded") for e in absent}
    return (f"Top-1 test accuracy (%) over epochs ({tier} tier), every method of every preset that ran, mean over "
            "seeds with a band: the seeds' min-max below 5 seeds, a 95% bootstrap CI of the mean from 5 (each "
            "method with its validation-chosen hyper-parameters; epoch 0 = before "
            "training). The paper's Fig. 4 is the emnist_letters preset (digits_transfer is its offline stand-in) and "
            "its Fig. 5 the stl10 preset, each comparing our approach, fine-tuning and the baseline. For Knowledge "
            "Flow, '(mixed)' is the net being trained (student mixed with its teachers) and '(student alone)' the "
            "student without teachers, which is what the exported model scores; the paper does not say which of the "
            "two its figures plot. Shown: " + (", ".join(shown) if shown else "nothing") + "."
            + (" Not shown: " + ", ".join(f"{e} ({why[e]})" for e in absent) + "." if absent else ""))


def plot_curves(curves: pd.DataFrame, path, title: str) -> Path:
    """Test accuracy over epochs per method, one panel per preset (common.report.plot_facets); a placeholder
    figure saying so when no preset ran."""
    if curves.empty:
        return _placeholder(path, title, "no supervised run in this tier\n(the tables say why)")
    return plot_facets(curves, path, _wrap_title(title, curves["panel"].nunique()), facet="panel", hue="curve",
                       x="epoch", y="test_acc", xlabel="epoch", ylabel="top-1 test accuracy (%)", ncols=3)


def _placeholder(path, title: str, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(7, 3), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path, dpi=110)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for k in ("--runs", "--tier", "--plan", "--reported", "--out-csv", "--out-md", "--out-fig"):
        ap.add_argument(k, required=True)
    ap.add_argument("--out-pw-fig", help="also draw p_w over epochs (from each experiment's pw.csv) here")
    ap.add_argument("--out-curve-fig", help="also draw test accuracy over epochs (each experiment's curves.csv) here")
    a = ap.parse_args(argv)
    plan = json.loads(a.plan)
    table, teachers = build(a.runs, plan, load_reported(a.reported))
    pw = pw_curves(a.runs, plan) if a.out_pw_fig else None
    curves = accuracy_curves(a.runs, plan) if a.out_curve_fig else None
    with atomic_path(a.out_csv) as tmp:
        table.to_csv(tmp, index=False)
    md = markdown(table, teachers, plan, a.tier)
    if pw is not None:
        md += f"\n**Figure {Path(a.out_pw_fig).name}.** {pw_caption(plan, pw, a.tier)}\n"
    if curves is not None:
        md += f"\n**Figure {Path(a.out_curve_fig).name}.** {curve_caption(plan, curves, a.tier)}\n"
    with atomic_path(a.out_md) as tmp:
        tmp.write_text(md)
    if pw is not None:
        shown = ", ".join(dict.fromkeys(pw["preset"])) or "none"
        plot_pw(pw, a.out_pw_fig, f"Knowledge Flow supervised ({a.tier} tier): p_w per student layer over epochs"
                                  f"\npaper Fig. 7 = cifar10 (p_w); Figs. 4 (EMNIST Letters), "
                                  f"5 (STL-10) plot accuracy; presets shown: {shown}")
    if curves is not None:
        shown = ", ".join(dict.fromkeys(curves["preset"])) or "none"
        plot_curves(curves, a.out_curve_fig, f"Knowledge Flow supervised ({a.tier} tier): top-1 test accuracy over "
                                             f"epochs\npaper Fig. 4 = emnist_letters, "
                                             f"Fig. 5 = stl10; presets shown: {shown}")
    plot(table, a.runs, a.out_fig, f"Knowledge Flow Tables 3-6 (supervised): test error (%), ours (mean and seeds) "
                                   f"vs paper ({a.tier} tier)")


if __name__ == "__main__":
    from common.cli import run

    run(main)
