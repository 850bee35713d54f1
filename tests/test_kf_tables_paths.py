"""Knowledge Flow tables find the runs of MinAtar games, whose run directories are two levels deep
(runs/<tier>/knowledge_flow/<method>/MinAtar/<Game>/seed<k>/), beside Atari games (one level)."""

from papers.knowledge_flow.tables import run_files


def test_run_files_reads_atari_and_minatar_layouts(tmp_path):
    for d in ("Seaquest/seed0", "Seaquest/seed1", "MinAtar/Breakout/seed0", "MinAtar/Breakout/seedx"):
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "eval.json").write_text("{}")
    found = [(g, s) for g, s, _ in run_files(tmp_path, "eval.json")]
    assert found == [("Seaquest", 0), ("Seaquest", 1), ("MinAtar/Breakout", 0)]
