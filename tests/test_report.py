"""common/report.py: reported.csv parsing, paper-vs-ours tables, markdown, figures and report pages."""

import re

import numpy as np
import pandas as pd
import pytest

from common.report import (all_seeds_caption, all_seeds_cell, all_seeds_header, all_seeds_view, comparison_table,
                           curve_band, fmt_per_seed, git_commit, load_reported, machine_description, plot_curves, to_markdown,
                           write_report_page)
from common.stats import seed_stats, summarise

REPORTED = """table,row,column,value,source
Table 2,Pong,KF,20,"Table 2, p.7; OCR of the PDF text"
Table 2,Breakout,KF,~400,Fig. 3 read off the plot
Table 2,Seaquest,KF,n/a,Table 2 (blank cell)
Table 2,Qbert,KF,0,Table 2
Table 2,Alien,KF,"1,500",Table 2
Table 2,Pong,A3C,〜18.5,Fig. 3
Table 3,Pong,KF,99,Table 3
"""


@pytest.fixture
def reported(tmp_path):
    p = tmp_path / "reported.csv"
    p.write_text(REPORTED, encoding="utf-8")
    return load_reported(p)


def test_load_reported_parses_values(reported):
    r = reported.set_index(["table", "row", "column"])
    assert r.loc[("Table 2", "Breakout", "KF"), "value_num"] == 400.0 and r.loc[("Table 2", "Breakout", "KF"), "approx"]
    assert r.loc[("Table 2", "Pong", "A3C"), "value_num"] == 18.5 and r.loc[("Table 2", "Pong", "A3C"), "approx"]
    assert np.isnan(r.loc[("Table 2", "Seaquest", "KF"), "value_num"])
    assert r.loc[("Table 2", "Alien", "KF"), "value_num"] == 1500.0
    assert r.loc[("Table 2", "Pong", "KF"), "value_num"] == 20.0 and not r.loc[("Table 2", "Pong", "KF"), "approx"]
    assert r.loc[("Table 2", "Pong", "KF"), "source"] == "Table 2, p.7; OCR of the PDF text"


def test_load_reported_bad_columns_and_values(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("table,row,column,value,sources\nTable 2,Pong,KF,20,x\n")
    with pytest.raises(ValueError, match=r"bad\.csv.*missing \['source'\].*unexpected \['sources'\]"):
        load_reported(p)
    p.write_text("table,row,column,value\nTable 2,Pong,KF,20\n")
    with pytest.raises(ValueError, match=r"missing \['source'\]"):
        load_reported(p)
    p.write_text("table,row,column,value,source\nTable 2,Pong,KF,about 20,x\n")
    with pytest.raises(ValueError, match="about 20"):
        load_reported(p)


def _ours():
    # stats.summarise-shaped rows (hand numbers): kf has 5 seeds per game except Seaquest (3); a2c Pong has 4
    nan = np.nan
    return pd.DataFrame({
        "method": ["kf", "kf", "kf", "kf", "kf", "a2c"],
        "game": ["Pong", "Breakout", "Seaquest", "Qbert", "MsPacman", "Pong"],
        "n_seeds": [5, 5, 3, 5, 5, 4],
        "topk_mean": [21.0, 200.0, 3.0, 50.0, 900.0, 9.0],
        "topk_std": 1.0,
        "mean": [19.3, 150.0, 3.0, 40.0, 800.0, 8.5], "min": [17.0, 100.0, 1.0, 30.0, 700.0, 7.0],
        "max": [21.0, 200.0, 6.0, 50.0, 900.0, 10.0], "median": 0.0,
        "per_seed": [(17.0, 19.0, 19.5, 20.0, 21.0), (100.0, 120.0, 150.0, 180.0, 200.0), (1.0, 2.0, 6.0),
                     (30.0, 35.0, 40.0, 45.0, 50.0), (700.0, 750.0, 800.0, 850.0, 900.0), (7.0, 8.0, 9.0, 10.0)],
        "iqm": [19.5, 150.0, nan, 40.0, 800.0, nan],
        "iqm_low": [18.25, 120.0, nan, 30.0, 700.0, nan], "iqm_high": [20.5, 180.0, nan, 45.0, 880.0, nan],
    })


MIXED = "ours IQM [95% CI] (>= 5 seeds) or mean [min, max] (< 5 seeds)"


def test_comparison_table_ratio_and_not_run(reported):
    t = comparison_table(_ours(), reported, "Table 2", "game", {"KF": "kf", "A3C": "a2c"})
    assert list(t.columns) == ["row", "column", "method", "paper", "paper_approx", "ours_topk", MIXED,
                               "ours per seed", "n_seeds", "ratio"]  # 3- and 4-seed cells beside 5-seed ones
    kf = t[t.column == "KF"].set_index("row")
    assert list(kf.index) == ["Pong", "Breakout", "Seaquest", "Qbert", "Alien", "MsPacman"]  # paper order, then ours
    assert kf.loc["Pong", "ratio"] == pytest.approx(21 / 20)
    assert kf.loc["Breakout", "ratio"] == pytest.approx(0.5) and kf.loc["Breakout", "paper_approx"]
    assert np.isnan(kf.loc["Seaquest", "ratio"])  # paper n/a
    assert np.isnan(kf.loc["Qbert", "ratio"])  # paper 0
    assert (kf.loc["Alien", ["ours_topk", MIXED, "ours per seed"]] == "not run").all()
    assert kf.loc["Alien", "n_seeds"] == 0 and kf.loc["Alien", "paper"] == 1500 and np.isnan(kf.loc["Alien", "ratio"])
    assert np.isnan(kf.loc["MsPacman", "paper"]) and kf.loc["MsPacman", "ours_topk"] == 900.0  # ran, paper lacks it
    # 5 seeds: IQM [95% CI]; 3 seeds: mean [min, max] and the seeds themselves, no IQM
    assert kf.loc["Pong", MIXED] == "19.5 [18.25, 20.5]" and kf.loc["Pong", "n_seeds"] == 5
    assert kf.loc["Pong", "ours per seed"] == "17, 19, 19.5, 20, 21"
    assert kf.loc["Seaquest", MIXED] == "3.0 [1, 6]" and kf.loc["Seaquest", "ours per seed"] == "1, 2, 6"
    a3c = t[t.column == "A3C"].set_index("row")
    assert list(a3c.index) == ["Pong"] and a3c.loc["Pong", "ratio"] == pytest.approx(9.0 / 18.5)
    assert a3c.loc["Pong", MIXED] == "8.5 [7, 10]" and a3c.loc["Pong", "ours per seed"] == "7, 8, 9, 10"
    assert 99 not in t.paper.tolist()  # Table 3 stays out
    with pytest.raises(ValueError, match="Table 9"):
        comparison_table(_ours(), reported, "Table 9", "game", {"KF": "kf"})


def test_comparison_table_header_changes_with_seeds(reported):
    ours = _ours()
    few = comparison_table(ours[ours.method == "a2c"], reported, "Table 2", "game", {"A3C": "a2c"})
    assert "ours mean [min, max]" in few.columns and not any("IQM" in c for c in few.columns)
    many = comparison_table(ours[ours.n_seeds == 5], reported, "Table 2", "game", {"KF": "kf"})
    assert "ours IQM [95% CI]" in many.columns and not any("min, max" in c for c in many.columns)
    assert many.set_index("row").loc["Breakout", "ours IQM [95% CI]"] == "150.0 [120.0, 180.0]"
    md = to_markdown(few, "t")
    assert "| ours_topk | ours mean [min, max] | ours per seed |" in md and "| 8.5 [7, 10] | 7, 8, 9, 10 |" in md


def test_all_seeds_cells_by_hand():
    # 3 seeds [1, 2, 6]: mean 3, range [1, 6], each seed listed; no IQM
    s3 = seed_stats([1.0, 2.0, 6.0])
    assert all_seeds_cell(s3) == "3.0 [1, 6]" and fmt_per_seed(s3["per_seed"]) == "1, 2, 6"
    # 5 seeds [10, 2, 30, 1, 6]: IQM = trim_mean(0.25) of 1, 2, 6, 10, 30 = mean(2, 6, 10) = 6; rliable's percentile
    # interval under seed 0 = the exact bootstrap's [4/3, 70/3] (tests/test_stats.py works it out)
    assert all_seeds_cell(seed_stats([10.0, 2.0, 30.0, 1.0, 6.0])) == "6.0 [1.333, 23.33]"
    assert all_seeds_cell(seed_stats([4.5])) == "4.5"  # one seed: its value
    assert all_seeds_cell(seed_stats([])) == "not run"
    assert all_seeds_header([3, 4, 0]) == "ours mean [min, max]"  # 0 = not run, ignored
    assert all_seeds_header([5, 10, 0], "eval") == "eval IQM [95% CI]"
    assert all_seeds_header([2, 5]) == MIXED
    few, many = all_seeds_caption([3]), all_seeds_caption([5])
    assert "no IQM or bootstrap interval" in few and "IQM [95% CI]" not in few
    assert "stratified-bootstrap" in many and "mean [min, max]" not in many and "in seed order" in many


def test_all_seeds_view_of_summarise():
    df = pd.DataFrame({"method": "m", "game": ["a"] * 3 + ["b"] * 2, "seed": [1, 0, 2, 0, 1],
                       "score": [2.0, 1.0, 6.0, 5.0, 5.0]})
    v = all_seeds_view(summarise(df, k=1), prefix="final")
    assert list(v.columns) == ["final mean [min, max]", "final per seed"]
    assert v.iloc[:, 0].tolist() == ["3.0 [1, 6]", "5.0 [5, 5]"] and v.iloc[:, 1].tolist() == ["1, 2, 6", "5, 5"]


def test_to_markdown_by_hand():
    df = pd.DataFrame({"game": ["Pong", "Alien"], "paper": [20.0, np.nan], "ours": [21.04, "not run"],
                       "n": [5, 0], "ratio": [1.052, 12345.6]})
    want = ("**Table 2: top-3 of 5 seeds**\n\n"
            "| game | paper | ours | n | ratio |\n"
            "|---|---:|---|---:|---:|\n"
            "| Pong | 20.00 | 21.04 | 5 | 1.052 |\n"
            "| Alien | n/a | not run | 0 | 12346 |\n")
    assert to_markdown(df, "Table 2: top-3 of 5 seeds") == want


def _curves():
    rows = []
    for g, slope in (("kf", 2.0), ("a2c", 1.0)):
        for seed in range(4):
            for step in range(0, 50, 10):
                rows.append((g, seed, step, slope * step + seed))
    return pd.DataFrame(rows, columns=["group", "seed", "env_steps", "score"])


@pytest.mark.parametrize("topk", [None, 2])
def test_plot_curves_writes_png(tmp_path, topk):
    out = plot_curves(_curves(), tmp_path / "figs" / "pong.png", "Pong", topk=topk, n_boot=100)
    data = out.read_bytes()
    assert out.name == "pong.png" and len(data) > 5000 and data[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["pong.png"]  # no temp file left behind


def test_curve_band_by_seeds():
    # below 5 seeds: the seeds' min-max at each x (seaborn's 100% percentile interval), never a bootstrap CI
    assert curve_band(3) == (("pi", 100), "band: the seeds' min-max (< 5 seeds)")
    assert curve_band(5) == (("ci", 95), "band: 95% bootstrap CI of the mean")
    import seaborn as sns
    from matplotlib.figure import Figure

    # the 'pi', 100 band drawn by seaborn is exactly the seeds' [min, max]: seeds 0..3 at slope 1 -> [step, step + 3]
    ax = Figure().subplots()
    c = _curves()
    sns.lineplot(data=c[c.group == "a2c"], x="env_steps", y="score", errorbar=curve_band(4)[0], ax=ax)
    band = ax.collections[0].get_paths()[0].vertices
    at20 = sorted({round(float(v), 6) for u, v in band if u == 20})
    assert at20 == [20.0, 23.0]


def test_write_report_page(tmp_path):
    img = tmp_path / "figures" / "pong.png"
    img.parent.mkdir()
    img.write_bytes(b"png")
    page = write_report_page(tmp_path / "report" / "kf.md", "Knowledge Flow",
                             {"command": "snakemake --configfile config/smoke.yaml", "tier": "smoke", "budget": "10k steps"},
                             [("Table 2", "| a |\n|---|\n| 1 |", [img]), ("Caveats", "few seeds", [])])
    text = page.read_text()
    assert text.startswith("# Knowledge Flow\n")
    assert "- **command**: `snakemake --configfile config/smoke.yaml`" in text
    assert "- **tier**: smoke" in text and "- **commit**: " in text and "- **machine**: " in text
    assert "![pong](../figures/pong.png)" in text
    assert text.index("## Table 2") < text.index("## Caveats")
    assert [p.name for p in page.parent.iterdir()] == ["kf.md"]


def test_git_commit_and_machine():
    assert re.fullmatch(r"[0-9a-f]{4,}(-dirty)?|uncommitted|unknown", git_commit())
    m = machine_description()
    assert "CPU cores" in m and "torch" in m and ("GPU" in m)
