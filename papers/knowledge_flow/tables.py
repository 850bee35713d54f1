"""Knowledge Flow tables and figures from the all-seeds run directories (pure aggregation, no training).

  python -m papers.knowledge_flow.tables baseline --runs runs/<tier>/knowledge_flow/baseline --tier <tier> \
      --top-k 3 --reported papers/knowledge_flow/reported.csv --out-csv T.csv --out-md T.md --out-fig F.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from common.io import atomic_path, read_json
from common.report import comparison_table, load_reported, plot_curves, to_markdown
from common.stats import curve_to_grid, summarise


def collect(runs: Path, method: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All-seeds table (method, game, seed, score) from eval.json, and the curves on a common grid."""
    rows, curves = [], []
    for ev in sorted(runs.glob("*/seed*/eval.json")):
        game, seed = ev.parent.parent.name, int(ev.parent.name.removeprefix("seed"))
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
               f"{a.top_k} of {n} seeds (paper protocol: top 3 of 25); ours_iqm = all-seeds interquartile mean "
               f"with its 95% stratified-bootstrap interval. 'A3C baseline' is the authors' own implementation, "
               f"'A3C' the numbers of Mnih et al. 2016; ratio = ours_topk / paper.")
    with atomic_path(a.out_md) as tmp:
        tmp.write_text(to_markdown(table, caption))
    per_game = curves.assign(group=curves.game)
    plot_curves(per_game, a.out_fig, title=f"A3C baseline, all seeds ({a.tier} tier)", topk=a.top_k)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    b = sub.add_parser("baseline")
    for k in ("--runs", "--tier", "--reported", "--out-csv", "--out-md", "--out-fig"):
        b.add_argument(k, required=True)
    b.add_argument("--top-k", type=int, default=3)
    a = ap.parse_args(argv)
    {"baseline": baseline}[a.what](a)


if __name__ == "__main__":
    from common.cli import run

    run(main)
