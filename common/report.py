"""Reported numbers, paper-vs-ours comparison tables, learning-curve figures and markdown report pages.

Reported numbers are data: ``papers/<paper>/reported.csv`` with columns ``table,row,column,value,source``.
``value`` is a number, an approximate read from a plot (``~1700``) or a missing marker (``n/a``);
``source`` says where and how it was read. Every write here is atomic (temp file beside the target, then
``os.replace``), so a crash never leaves a half-written table, figure or page under its final name.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from common.io import atomic_path
from common.stats import MIN_SEEDS_IQM, top_k

REPORTED_COLUMNS = ("table", "row", "column", "value", "source")
MISSING_MARKERS = {"", "n/a", "na", "nan", "-", "—", "–"}
APPROX_MARKERS = ("~", "〜", "≈")
NOT_RUN = "not run"


# ---------------------------------------------------------------------------------- reported numbers
def load_reported(path) -> pd.DataFrame:
    """Read a paper's reported.csv; adds value_num (float, NaN for n/a) and approx (value read as "~x")."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if tuple(df.columns) != REPORTED_COLUMNS:
        missing = [c for c in REPORTED_COLUMNS if c not in df.columns]
        extra = [c for c in df.columns if c not in REPORTED_COLUMNS]
        raise ValueError(f"{path}: columns must be {','.join(REPORTED_COLUMNS)} in that order; "
                         f"missing {missing}, unexpected {extra}, found {list(df.columns)}")
    nums, approx = [], []
    for i, v in enumerate(df["value"].str.strip()):
        is_approx = v.startswith(APPROX_MARKERS)
        text = v.lstrip("".join(APPROX_MARKERS)).strip().replace(",", "")
        if text.lower() in MISSING_MARKERS:
            nums.append(np.nan)
        else:
            try:
                nums.append(float(text))
            except ValueError:
                raise ValueError(f"{path}, data line {i + 1}: value '{v}' is neither a number, '~number' nor "
                                 f"'n/a'; fix the CSV (free text belongs in the 'source' column)") from None
        approx.append(is_approx)
    return df.assign(value_num=nums, approx=approx)


# ------------------------------------------------------------------------------------ the all-seeds view
# Issue 15's rule, for every table: below MIN_SEEDS_IQM seeds each seed's value and their mean [min, max]
# (no IQM, no interval); from MIN_SEEDS_IQM seeds the IQM [95% stratified-bootstrap CI]. The column's name
# says which (all_seeds_header); a table whose cells have both kinds says so in its name.
def fmt_value(x, digits: int = 4) -> str:
    """A measured value (a seed's score, a min or max): _fmt's significant digits, trailing zeros dropped."""
    t = _fmt(x, digits)
    return t.rstrip("0").rstrip(".") if "." in t else t


def fmt_stat(x, digits: int = 4) -> str:
    """A computed statistic (a mean, an IQM, an interval's end): as fmt_value, keeping one decimal ('3.0')."""
    t = _fmt(x, digits)
    if "." not in t:
        return t
    t = t.rstrip("0")
    return t + "0" if t.endswith(".") else t


def fmt_per_seed(values) -> str:
    """'1, 2, 6': each seed's value in seed order."""
    return ", ".join(fmt_value(float(v)) for v in values)


def all_seeds_cell(s) -> str:
    """One group's all-seeds cell from stats.seed_stats/summarise fields: below MIN_SEEDS_IQM seeds
    'mean [min, max]' ('3.0 [1, 6]'), from MIN_SEEDS_IQM 'IQM [low, high]'; one seed: its value."""
    n = int(s["n_seeds"])
    if n == 0:
        return NOT_RUN
    if n == 1:
        return fmt_value(s["mean"])
    if n < MIN_SEEDS_IQM:
        return f"{fmt_stat(s['mean'])} [{fmt_value(s['min'])}, {fmt_value(s['max'])}]"
    return f"{fmt_stat(s['iqm'])} [{fmt_stat(s['iqm_low'])}, {fmt_stat(s['iqm_high'])}]"


def all_seeds_header(n_seeds, prefix: str = "ours") -> str:
    """The all-seeds column's name for cells with these seed counts (0 = not run, ignored): '<prefix> mean
    [min, max]' below MIN_SEEDS_IQM, '<prefix> IQM [95% CI]' from it, both named when the table has both."""
    ns = {int(n) for n in n_seeds if int(n) > 0}
    few, many = any(n < MIN_SEEDS_IQM for n in ns), any(n >= MIN_SEEDS_IQM for n in ns)
    if few and many:
        return f"{prefix} IQM [95% CI] (>= {MIN_SEEDS_IQM} seeds) or mean [min, max] (< {MIN_SEEDS_IQM} seeds)"
    return f"{prefix} IQM [95% CI]" if many else f"{prefix} mean [min, max]"


def per_seed_header(prefix: str = "ours") -> str:
    return f"{prefix} per seed"


def all_seeds_caption(n_seeds, prefix: str = "ours") -> str:
    """A caption sentence saying what the all-seeds columns of all_seeds_header(n_seeds, prefix) hold."""
    ns = {int(n) for n in n_seeds if int(n) > 0}
    parts = []
    if any(n < MIN_SEEDS_IQM for n in ns):
        parts.append(f"'{prefix} mean [min, max]' = the mean of all seeds and the lowest and highest seed (below "
                     f"{MIN_SEEDS_IQM} seeds no IQM or bootstrap interval is computed: so few seeds give no "
                     "calibrated 95% interval)")
    if any(n >= MIN_SEEDS_IQM for n in ns):
        parts.append(f"'{prefix} IQM [95% CI]' = the interquartile mean of all seeds with its 95% stratified-"
                     "bootstrap interval (rliable, 2,000 resamples, seed 0)")
    parts.append(f"'{per_seed_header(prefix)}' = every seed's value, in seed order")
    return "; ".join(parts) + "."


def all_seeds_view(summary: pd.DataFrame, prefix: str = "ours") -> pd.DataFrame:
    """The two all-seeds columns (all_seeds_header, per_seed_header) of stats.summarise-shaped rows, same index."""
    head = all_seeds_header(summary["n_seeds"], prefix)
    return pd.DataFrame({head: [all_seeds_cell(r) for _, r in summary.iterrows()],
                         per_seed_header(prefix): [fmt_per_seed(r["per_seed"]) if int(r["n_seeds"]) else NOT_RUN
                                                   for _, r in summary.iterrows()]}, index=summary.index)


def comparison_table(ours: pd.DataFrame, reported: pd.DataFrame, table: str, row_col: str = "game",
                     column_map: dict[str, str] | None = None, method_col: str = "method") -> pd.DataFrame:
    """Paper vs ours for one reported table: one row per (paper row, paper column); unrun rows say "not run".

    Columns: row, column, method, paper, paper_approx, ours_topk (paper protocol), the all-seeds cell under
    all_seeds_header (mean [min, max] below MIN_SEEDS_IQM seeds, IQM [95% CI] from it), 'ours per seed',
    n_seeds, ratio."""
    # column_map: {reported column (paper's method name) -> our value of `method_col`}; ours is stats.summarise
    # output. ratio = ours_topk / paper (NaN where the paper has no number or 0). Order: the paper's rows
    # first, as in the paper, then rows we ran that the paper does not report (paper = NaN).
    rep = reported[reported["table"] == table]
    if rep.empty:
        raise ValueError(f"comparison_table: no reported rows for table '{table}'; "
                         f"tables present: {sorted(reported['table'].unique())}")
    column_map = column_map or {c: c for c in rep["column"].unique()}
    if not {method_col, row_col} <= set(ours.columns):
        raise ValueError(f"comparison_table: ours needs columns '{method_col}' and '{row_col}', has {list(ours.columns)}")
    if ours.duplicated([method_col, row_col]).any():
        raise ValueError(f"comparison_table: ours has several rows per ({method_col}, {row_col}); "
                         f"summarise over exactly those columns")
    mine = ours.set_index([method_col, row_col])
    out = []
    for paper_col, method in column_map.items():
        r = rep[rep["column"] == paper_col]
        rows = list(dict.fromkeys(r["row"]))
        ran = [g for g in ours.loc[ours[method_col] == method, row_col] if g not in rows]
        for row in rows + ran:
            hit = r[r["row"] == row]
            paper = float(hit["value_num"].iloc[0]) if len(hit) else np.nan
            rec = dict(row=row, column=paper_col, method=method, paper=paper,
                       paper_approx=bool(hit["approx"].iloc[0]) if len(hit) else False)
            if (method, row) in mine.index:
                s = mine.loc[(method, row)]
                rec.update(ours_topk=s["topk_mean"], all_seeds=all_seeds_cell(s), per_seed=fmt_per_seed(s["per_seed"]),
                           n_seeds=int(s["n_seeds"]),
                           ratio=s["topk_mean"] / paper if np.isfinite(paper) and paper != 0 else np.nan)
            else:
                rec.update(ours_topk=NOT_RUN, all_seeds=NOT_RUN, per_seed=NOT_RUN, n_seeds=0, ratio=np.nan)
            out.append(rec)
    cols = ["row", "column", "method", "paper", "paper_approx", "ours_topk", "all_seeds", "per_seed", "n_seeds",
            "ratio"]
    df = pd.DataFrame(out, columns=cols)
    return df.rename(columns={"all_seeds": all_seeds_header(df["n_seeds"]), "per_seed": per_seed_header()})


# ------------------------------------------------------------------------------------------- markdown
def _fmt(x, digits: int = 4) -> str:
    """Number to text: `digits` significant digits in fixed notation (Atari scores never in 1e+04 form)."""
    if x is None:
        return "n/a"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else ""
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        if not np.isfinite(x):
            return "n/a" if np.isnan(x) else str(x)
        if x == 0:
            return "0"
        return f"{x:.{max(0, digits - 1 - math.floor(math.log10(abs(x))))}f}"
    return str(x).replace("|", "\\|").replace("\n", " ")


def to_markdown(df: pd.DataFrame, caption: str, digits: int = 4) -> str:
    """A markdown (GFM) table with a caption line above it; numbers right-aligned, NaN shown as n/a."""
    head = "| " + " | ".join(_fmt(str(c)) for c in df.columns) + " |"
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns]
    rule = "|" + "|".join("---:" if n else "---" for n in numeric) + "|"
    body = ["| " + " | ".join(_fmt(v, digits) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([f"**{caption}**", "", head, rule, *body]) + "\n"


# -------------------------------------------------------------------------------------------- figures
def save_figure(fig: Figure, path, dpi: int = 120) -> Path:
    """Save atomically: a temporary name that keeps the suffix (savefig picks the format), then rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part" + path.suffix)
    try:
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def curve_band(n_seeds: int) -> tuple[tuple[str, int], str]:
    """A mean curve's band over seeds (seaborn's errorbar) and its words, by issue 15's rule: below
    MIN_SEEDS_IQM seeds the seeds' min-max at each x (no bootstrap interval), from MIN_SEEDS_IQM a 95%
    percentile-bootstrap CI of the mean."""
    if n_seeds < MIN_SEEDS_IQM:
        return ("pi", 100), f"band: the seeds' min-max (< {MIN_SEEDS_IQM} seeds)"
    return ("ci", 95), "band: 95% bootstrap CI of the mean"


def plot_curves(curves: pd.DataFrame, path, title: str, xlabel: str = "env steps", ylabel: str = "game score",
                topk: int | None = None, n_boot: int = 1000) -> Path:
    """Mean learning curve per group with a band over seeds (curve_band); a top-k panel if `topk` is given."""
    # curves: columns group, seed, env_steps, score on a common env_steps grid (stats.curve_to_grid).
    # Band (curve_band of the fewest seeds of any group): below 5 seeds the seeds' min-max at each step; from 5
    # seaborn's 95% percentile-bootstrap CI of the mean over seeds at each step (n_boot resamples, seed 0).
    # Top-k panel: seeds ranked per group by final score (the last non-NaN score of each seed,
    # ties to the lower seed, stats.top_k), mean of the best k drawn without a band: the paper protocol.
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_seeds = curves.groupby("group")["seed"].nunique()
    seeds_txt = f"{n_seeds.min()}" if n_seeds.min() == n_seeds.max() else f"{n_seeds.min()}-{n_seeds.max()}"
    fig = Figure(figsize=(12 if topk else 6.5, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if topk else 1, sharey=True, squeeze=False)[0]
    order = sorted(curves["group"].unique(), key=str)
    kw = dict(x="env_steps", y="score", hue="group", hue_order=order)
    errorbar, band = curve_band(int(n_seeds.min()))
    sns.lineplot(data=curves, errorbar=errorbar, n_boot=n_boot, seed=0, ax=axes[0], **kw)
    axes[0].set_title(f"all seeds ({seeds_txt}): mean; {band}", fontsize=9)
    if topk:
        final = (curves.dropna(subset=["score"]).sort_values("env_steps", kind="mergesort")
                 .groupby(["group", "seed"], as_index=False).last())
        best = top_k(final, topk, score="score", by=("group",))[["group", "seed"]]
        sns.lineplot(data=curves.merge(best, on=["group", "seed"]), errorbar=None, ax=axes[1], **kw)
        axes[1].set_title(f"top {topk} of {seeds_txt} seeds by final score (paper protocol): mean")
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return save_figure(fig, path, dpi=120)


def plot_facets(df: pd.DataFrame, path, title: str, facet: str | list[str], hue: str, x: str = "env_steps",
                y: str = "score", xlabel: str = "env steps", ylabel: str = "game score", ncols: int = 3,
                n_boot: int = 1000, sharey: bool = False,
                refs: dict[str, list[tuple[str, float]]] | None = None) -> Path:
    """One panel per value of `facet` (a column, or columns joined by ' / '), a mean line per `hue` with a
    band over the rows at each x (seeds; curve_band of the fewest rows of any line at any x, named under the
    title), seaborn style; written atomically. refs: panel -> [(label, value)], drawn as labelled dashed
    horizontal lines (the random policy, the teacher, the paper's number where it is on the same scale)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df = df.copy()
    cols = [facet] if isinstance(facet, str) else list(facet)
    df["_facet"] = df[cols].astype(str).agg(" / ".join, axis=1)
    panels = list(dict.fromkeys(df.sort_values(cols, kind="mergesort")["_facet"]))
    nrows = math.ceil(len(panels) / ncols)
    ncols = min(ncols, len(panels))
    fig = Figure(figsize=(4.2 * ncols, 3.2 * nrows + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey).ravel()
    order = sorted(df[hue].unique(), key=str)
    palette = dict(zip(order, sns.color_palette(n_colors=len(order))))
    rows = df.dropna(subset=[y]).groupby(["_facet", hue, x]).size()  # seeds of a line: its most rows at any x
    errorbar, band = curve_band(int(rows.groupby(level=[0, 1]).max().min()) if len(rows) else 0)
    for ax, panel in zip(axes, panels):
        sns.lineplot(data=df[df["_facet"] == panel], x=x, y=y, hue=hue, hue_order=order, palette=palette,
                     errorbar=errorbar, n_boot=n_boot, seed=0, ax=ax, legend=ax is axes[0])
        for i, (label, value) in enumerate((refs or {}).get(panel, [])):
            if value == value:  # not NaN
                ax.axhline(value, color="0.35", lw=1, ls=(0, (4, 2 + 2 * i)))
                ax.annotate(label, (0.01, value), xycoords=("axes fraction", "data"), fontsize=7, color="0.25",
                            va="bottom")
        ax.set_title(panel)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    width = int(4.2 * ncols * 11)  # characters of a 12 pt title across the panels
    fig.suptitle("\n".join(textwrap.fill(line, width) for line in f"{title}\nmean over seeds; {band}".split("\n")))
    return save_figure(fig, path, dpi=110)


# ------------------------------------------------------------------------------------------ the report
def git_commit() -> str:
    """Short hash of HEAD (+"-dirty" if tracked files changed); "uncommitted" with no commits, "unknown" without git."""
    root = Path(__file__).resolve().parents[1]

    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)

    try:
        if git("rev-parse", "--git-dir").returncode != 0:
            return "unknown"
        head = git("rev-parse", "--short", "HEAD")
        if head.returncode != 0:
            return "uncommitted"
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_description() -> str:
    """One line: CPU cores, OS/platform, python, torch version and GPU name (if any)."""
    parts = [f"{os.cpu_count()} CPU cores", platform.platform(), f"python {platform.python_version()}"]
    try:
        import torch

        parts.append(f"torch {torch.__version__}")
        parts.append(f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU")
    except ImportError:
        parts.append("torch not installed")
    return ", ".join(parts)


def write_report_page(path, title: str, meta: dict, sections: list[tuple[str, str, list]]) -> Path:
    """Write a markdown report page (meta list, then sections with text and relatively linked images)."""
    # meta: command, commit, tier, budget, machine, date; commit, machine and date are filled in if absent
    path = Path(path)
    meta = {"commit": git_commit(), "machine": machine_description(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), **meta}
    order = ["command", "commit", "tier", "budget", "machine", "date"]
    keys = [k for k in order if k in meta] + [k for k in meta if k not in order]
    lines = [f"# {title}", ""]
    lines += [f"- **{k}**: `{meta[k]}`" if k == "command" else f"- **{k}**: {meta[k]}" for k in keys]
    for heading, text, images in sections:
        lines += ["", f"## {heading}", ""]
        if text:
            lines += [text.rstrip(), ""]
        for img in images or []:
            rel = Path(os.path.relpath(Path(img).resolve(), path.resolve().parent)).as_posix()
            lines += [f"![{Path(img).stem}]({rel})", ""]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines).rstrip() + "\n")
    return path
