"""common/report.py: reported.csv parsing, paper-vs-ours tables, markdown, figures and report pages."""

import re

import numpy as np
import pandas as pd
import pytest

from common.report import (comparison_table, git_commit, load_reported, machine_description, plot_curves,
                           to_markdown, write_report_page)

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
    # stats.summarise-shaped rows (hand numbers)
    return pd.DataFrame({
        "method": ["kf", "kf", "kf", "kf", "kf", "a2c"],
        "game": ["Pong", "Breakout", "Seaquest", "Qbert", "MsPacman", "Pong"],
        "n_seeds": [5, 5, 3, 5, 5, 4],
        "topk_mean": [21.0, 200.0, 300.0, 50.0, 900.0, 9.25],
        "topk_std": 1.0, "iqm": [19.5, 150.0, 250.0, 40.0, 800.0, 8.0],
        "iqm_low": [18.25, 120.0, 200.0, 30.0, 700.0, 7.0], "iqm_high": [20.5, 180.0, 290.0, 45.0, 880.0, 9.0],
        "mean": 0.0, "median": 0.0,
    })


def test_comparison_table_ratio_and_not_run(reported):
    t = comparison_table(_ours(), reported, "Table 2", "game", {"KF": "kf", "A3C": "a2c"})
    kf = t[t.column == "KF"].set_index("row")
    assert list(kf.index) == ["Pong", "Breakout", "Seaquest", "Qbert", "Alien", "MsPacman"]  # paper order, then ours
    assert kf.loc["Pong", "ratio"] == pytest.approx(21 / 20)
    assert kf.loc["Breakout", "ratio"] == pytest.approx(0.5) and kf.loc["Breakout", "paper_approx"]
    assert np.isnan(kf.loc["Seaquest", "ratio"])  # paper n/a
    assert np.isnan(kf.loc["Qbert", "ratio"])  # paper 0
    assert (kf.loc["Alien", ["ours_topk", "ours_iqm", "ours_iqm_ci"]] == "not run").all()
    assert kf.loc["Alien", "n_seeds"] == 0 and kf.loc["Alien", "paper"] == 1500 and np.isnan(kf.loc["Alien", "ratio"])
    assert np.isnan(kf.loc["MsPacman", "paper"]) and kf.loc["MsPacman", "ours_topk"] == 900.0  # ran, paper lacks it
    assert kf.loc["Pong", "ours_iqm_ci"] == "[18.25, 20.50]" and kf.loc["Pong", "n_seeds"] == 5
    a3c = t[t.column == "A3C"].set_index("row")
    assert list(a3c.index) == ["Pong"] and a3c.loc["Pong", "ratio"] == pytest.approx(9.25 / 18.5)
    assert 99 not in t.paper.tolist()  # Table 3 stays out
    with pytest.raises(ValueError, match="Table 9"):
        comparison_table(_ours(), reported, "Table 9", "game", {"KF": "kf"})


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
