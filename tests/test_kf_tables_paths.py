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


def _eval_run(root, game, protocol, steps=5_000_000):
    import json

    d = root / game / "seed0"
    d.mkdir(parents=True)
    (d / "eval.json").write_text(json.dumps({"mean": 1.0, "protocol": protocol}))
    (d / "config.json").write_text(json.dumps({"a2c": {"total_steps": steps}}))


def test_caption_states_the_protocols_sticky_actions(tmp_path):
    """Table 2's caption (provenance) says the evaluation's sticky actions: MinAtar's 0.1, and 'no sticky actions'
    for the era-faithful Atari protocol (repeat_action_probability 0, or absent: EvalProtocol's default)."""
    from papers.knowledge_flow.tables import provenance

    proto = {"episodes": 100, "noop_max": 30, "policy": "sample", "max_frames": 108_000}
    _eval_run(tmp_path / "minatar", "MinAtar/Asterix", {**proto, "repeat_action_probability": 0.1})
    text = provenance([tmp_path / "minatar"], 3)
    assert ("Evaluation: 100 whole games per seed, up to 30 no-op starts, sample policy, frame cap 108,000, "
            "sticky actions 0.1, raw game score.") in text
    assert "Budget: 5,000,000 env steps per run" in text and "no sticky" not in text
    _eval_run(tmp_path / "atari", "Seaquest", {**proto, "repeat_action_probability": 0.0})
    _eval_run(tmp_path / "old", "Seaquest", proto)   # an eval.json written before the key existed
    for d in ("atari", "old"):
        assert "frame cap 108,000, no sticky actions, raw game score." in provenance([tmp_path / d], 3)


def test_independence_table_shows_the_learned_weights_where_the_teachers_faded(tmp_path):
    import json

    import pytest

    from papers.knowledge_flow.tables import independence_table

    def run(method, seed, ind, pw, fade):
        d = tmp_path / method / "MinAtar/Asterix" / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "final.json").write_text(json.dumps({"independence": ind, "pw": pw, "fade_teachers": fade}))

    # faded runs: the mixed weights end at the student alone (0); the learned p_w(student) was 0.9 / 0.7 at fc
    run("kf_expert", 0, {"conv1": 0.0, "fc": 0.0, "max": 0.0},
        {"pw/conv1/student": 0.99, "pw/conv1/t0.conv1": 0.01, "pw/fc/student": 0.9, "pw/fc/t0.fc": 0.1}, 0.2)
    run("kf_expert", 1, {"conv1": 0.0, "fc": 0.0, "max": 0.0},
        {"pw/conv1/student": 0.98, "pw/conv1/t0.conv1": 0.02, "pw/fc/student": 0.7, "pw/fc/t0.fc": 0.3}, 0.2)
    out = independence_table(tmp_path, ["kf_expert"]).iloc[0]
    assert out["mean max dependence"] == 0.0 and out["fade_teachers"] == 0.2
    assert out["mean learned max dependence (before the fade)"] == pytest.approx((0.1 + 0.3) / 2)
    assert out["worst run, learned"] == pytest.approx(0.3)

    # no fade anywhere: the learned columns would repeat the mixed ones, so they are left out
    run("kf_non_expert", 0, {"conv1": 0.0, "fc": 0.25, "max": 0.25},
        {"pw/conv1/student": 1.0, "pw/fc/student": 0.75, "pw/fc/t0.fc": 0.25}, 0.0)
    plain = independence_table(tmp_path, ["kf_non_expert"])
    assert "fade_teachers" not in plain.columns and plain.iloc[0]["worst run"] == 0.25
