"""Knowledge Flow tables find the runs of MinAtar games, whose run directories are two levels deep
(runs/<tier>/knowledge_flow/<method>/MinAtar/<Game>/seed<k>/), beside Atari games (one level)."""

from papers.knowledge_flow.tables import run_files


def test_run_files_reads_atari_and_minatar_layouts(tmp_path):
    for d in ("Seaquest/seed0", "Seaquest/seed1", "MinAtar/Breakout/seed0", "MinAtar/Breakout/seedx"):
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "eval.json").write_text("{}")
    found = [(g, s) for g, s, _ in run_files(tmp_path, "eval.json")]
    assert found == [("Seaquest", 0), ("Seaquest", 1), ("MinAtar/Breakout", 0)]


def test_reference_lines_take_our_random_and_teacher_rows_and_the_papers_numbers():
    import pandas as pd

    from papers.knowledge_flow.tables import reference_lines

    table = pd.DataFrame([
        {"row": "Breakout", "column": "A3C baseline", "paper": 99.0, "ours_topk": 4.8},
        {"row": "Breakout", "column": "Ours w/ expert", "paper": 400.0, "ours_topk": "not run"},
        {"row": "Breakout", "column": "Random policy", "paper": float("nan"), "ours_topk": 1.5},
        {"row": "MinAtar/Breakout", "column": "Random policy", "paper": float("nan"), "ours_topk": 0.5},
        {"row": "MinAtar/Breakout", "column": "Teacher (expert)", "paper": float("nan"), "ours_topk": 15.0},
        {"row": "MinAtar/Breakout", "column": "A3C baseline", "paper": float("nan"), "ours_topk": 14.3},
    ])
    assert reference_lines(table, ["Breakout", "MinAtar/Breakout"]) == {
        "Breakout": [("random", 1.5), ("paper: A3C baseline", 99.0), ("paper: KF w/ expert", 400.0)],
        "MinAtar/Breakout": [("random", 0.5), ("teacher", 15.0)]}   # no paper number on MinAtar's scale
