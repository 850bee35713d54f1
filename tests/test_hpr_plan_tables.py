"""H-PR distillation's plan (which runs, their arguments) and tables (Table 1's % of teacher and geometric mean,
steps to a score threshold, Fig. 2 histograms) on hand-made run files: no training, seconds."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from common.report import load_reported
from papers.hpr_distillation import plan
from papers.hpr_distillation.method import CURVE_FIELDS
from papers.hpr_distillation.tables import (geometric_mean, main, percent_of_teacher, steps_to_threshold,
                                            threshold_table, value_histograms)

REPORTED = "papers/hpr_distillation/reported.csv"


def config(**hpr):
    h = {"seeds": 2, "args": {"total_steps": 1000, "replay": {"capacity": 100, "partition_capacity": 40}},
         "table1": {"games": ["Breakout", "Pong"]}, "fig3_games": ["Breakout"],
         "fig4": {"games": ["Breakout", "Pong"], "thresholds": {"Breakout": 300}},
         "fig5": {"partitions": [5, 10]}, "fig2": {"game": "Breakout"}}
    h.update(hpr)
    return {"tier": "t", "teachers": {"algo": "ppo", "seed": 0, "steps": {"expert": 1, "non_expert": 1}},
            "hpr_distillation": h}


# ---------------------------------------------------------------------------------------------- plan
def test_runs_are_named_and_shared():
    c = config()
    exps = plan.experiments(c)
    assert exps["table1"] == {"proposed": "proposed_uniform_2games", "dist": "dist_uniform_2games",
                              "amn": "amn_uniform_2games"}
    assert exps["fig4"] == {"H-PR": "proposed_hpr5_2games", "PR": "proposed_pr_2games",
                            "Uniform": "proposed_uniform_2games"}
    assert exps["fig5"] == {"H-PR p=5": "proposed_hpr5_2games", "H-PR p=10": "proposed_hpr10_2games",
                            "Uniform": "proposed_uniform_2games"}
    # 3 architectures + H-PR + PR (Uniform is Table 1's proposed run) + p=10 (p=5 is Fig. 4's H-PR run)
    assert sorted(plan.runs(c)) == sorted(["proposed_uniform_2games", "dist_uniform_2games", "amn_uniform_2games",
                                           "proposed_hpr5_2games", "proposed_pr_2games", "proposed_hpr10_2games"])
    assert len(plan.run_seeds(c)) == 12
    assert plan.thresholds(c) == {"Breakout": 300.0}
    assert plan.teachers(c) == [("Breakout", "expert"), ("Breakout", "non_expert"), ("Breakout", "untrained"),
                                ("Pong", "expert")]
    plan.check(c)


def test_run_args():
    c = config()
    a = json.loads(plan.run_args(c, "smoke", "proposed_hpr10_2games", 1, threads=2, device="cpu"))
    assert a["arch"] == "proposed" and a["seed"] == 1 and a["torch_threads"] == 2 and a["total_steps"] == 1000
    assert a["replay"] == {"capacity": 100, "partition_capacity": 40, "kind": "hpr", "partitions": 10}
    assert a["teachers"] == ["teachers/smoke/dqn/Breakout/expert/seed0", "teachers/smoke/dqn/Pong/expert/seed0"]
    assert json.loads(plan.run_args(c, "smoke", "proposed_pr_2games", 0))["replay"]["kind"] == "rank"
    d = json.loads(plan.run_args(c, "smoke", "dist_uniform_2games", 0))
    assert d["arch"] == "dist" and d["replay"]["kind"] == "uniform" and "partitions" not in d["replay"]
    # memory to request: 4 GB + games x slots x 7.2 kB; H-PR p=10 x 40 = 400 slots, Uniform 100 slots
    assert plan.memory_mb(c, "proposed_hpr10_2games") == 4000 + 2 * 400 * 72 // 10_000
    assert plan.memory_mb(c, "proposed_uniform_2games") == 4000 + 2 * 100 * 72 // 10_000
    p = plan.eval_protocol(c)
    assert p["steps"] == 100_000 and p["epsilon"] == 0.05 and p["noop_max"] == 30 and p["policy"] == "greedy"


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="fig3_games"):
        plan.check(config(fig3_games=["Qbert"]))
    with pytest.raises(ValueError, match="proposed_uniform_2games"):  # same name, different games
        plan.check(config(fig4={"games": ["Freeway", "Qbert"]}))
    with pytest.raises(ValueError, match="thresholds"):
        plan.check(config(fig4={"games": ["Breakout", "Pong"], "thresholds": {"Qbert": 1}}))
    with pytest.raises(ValueError, match="Seaquestt"):
        plan.check(config(table1={"games": ["Breakout", "Seaquestt"]}, fig3_games=[]))
    with pytest.raises(KeyError, match="'lrr' .did you mean 'lr'"):
        plan.check(config(args={"lrr": 1}))
    assert plan.experiments({"tier": "t", "teachers": {}}) == {} and plan.runs({"teachers": {}}) == {}


# ---------------------------------------------------------------------------------------------- formulas
def test_percent_and_geometric_mean_by_hand():
    assert percent_of_teacher([150.0, 10.0, 5.0], [200.0, 0.0, -3.0]).tolist()[0] == 75.0
    assert all(math.isnan(v) for v in percent_of_teacher([10.0, 5.0], [0.0, -3.0]))
    assert geometric_mean([100.0, 400.0]) == pytest.approx(200.0)  # sqrt(40,000)
    assert geometric_mean([2.0, 4.0, 8.0]) == pytest.approx(4.0)   # cube root of 64
    assert math.isnan(geometric_mean([100.0, -5.0])) and math.isnan(geometric_mean([100.0, np.nan]))
    assert math.isnan(geometric_mean([]))
    # the paper's Proposed column: the geometric mean of its printed values is 103.7 (printed 103.8)
    rep = load_reported(REPORTED)
    t1 = rep[(rep.table == "Table 1") & (rep.column == "Proposed") & (rep.row != "Geometric Mean")]
    assert len(t1) == 10 and geometric_mean(t1.value_num) == pytest.approx(103.717, abs=1e-3)


def test_steps_to_threshold_by_hand():
    assert steps_to_threshold([10, 20, 30], [100, 301, 250], 300) == 20
    assert steps_to_threshold([30, 10, 20], [250, 100, 301], 300) == 20   # any row order
    assert math.isnan(steps_to_threshold([10, 20], [300, 299], 300))        # "over 300": 300 is not over
    assert steps_to_threshold([10, 20, 30], [np.nan, 5, 400], 300) == 30   # no completed game never counts


# ---------------------------------------------------------------------------------------------- run files
def write_run(root, run, seed, evals: dict, updates=(10, 20, 30)):
    """A finished run: curve.csv with one row per game and evaluation, eval.json with the last one."""
    d = root / run / f"seed{seed}"
    d.mkdir(parents=True)
    rows = [(g, 4 * u + 100, 16 * u + 400, u, 1.0, s, 1, 0.1) for g, scores in evals.items()
            for u, s in zip(updates, scores)]
    pd.DataFrame(rows, columns=CURVE_FIELDS).to_csv(d / "curve.csv", index=False)
    (d / "eval.json").write_text(json.dumps({"games": {g: {"mean": s[-1]} for g, s in evals.items()}}))


def test_table1_by_hand(tmp_path):
    runs = tmp_path / "runs"
    # Breakout teacher 200, Pong teacher 20, Freeway teacher -1 (no % of a non-positive score)
    write_run(runs, "p", 0, {"Breakout": [100, 250, 220], "Pong": [10, 20, 19], "Freeway": [1, 2, 3]})
    write_run(runs, "p", 1, {"Breakout": [150, 210, 230], "Pong": [12, 18, 18], "Freeway": [1, 2, 3]})
    write_run(runs, "d", 0, {"Breakout": [50, 60, 70], "Pong": [5, 6, 7], "Freeway": [0, 0, 0]})
    teachers = {}
    for g, v in {"Breakout": 200.0, "Pong": 20.0, "Freeway": -1.0}.items():
        (tmp_path / f"{g}.json").write_text(json.dumps({"mean": v}))
        teachers[g] = str(tmp_path / f"{g}.json")
    spec = {"runs": {"proposed": "p", "dist": "d"}, "games": ["Breakout", "Pong", "Freeway"],
            "fig3_games": ["Breakout"], "teachers": teachers}
    out = tmp_path / "out"
    main(["table1", "--runs", str(runs), "--spec", json.dumps(spec), "--tier", "test", "--reported", REPORTED,
          "--out-csv", str(out / "t1.csv"), "--out-md", str(out / "t1.md"), "--out-fig", str(out / "fig3.png")])
    t = pd.read_csv(out / "t1.csv", keep_default_na=False).set_index(["row", "column"])
    # proposed, Breakout: best evaluations 250 and 230 -> 125% and 115%, mean 120; final 220, 230 -> 110%, 115%,
    # two seeds: no IQM, their mean [min, max] = 112.5 [110, 115] and each seed (issue 15)
    b = t.loc[("Breakout", "Proposed")]
    assert float(b.ours) == pytest.approx(120.0) and b["ours_final mean [min, max]"] == "112.5 [110, 115]"
    assert b["ours_final per seed"] == "110, 115" and not any("iqm" in c.lower() for c in t.columns)
    assert b.n_seeds == 2 and b.paper == 106.2 and float(b.ratio) == pytest.approx(120.0 / 106.2)
    # Pong: best 20 and 18 -> 100% and 90%, mean 95
    assert float(t.loc[("Pong", "Proposed")].ours) == pytest.approx(95.0)
    # Freeway ran but its teacher scored -1: n/a, not "not run"
    assert t.loc[("Freeway", "Proposed")].ours == "n/a" and t.loc[("Freeway", "Proposed")].n_seeds == 2
    assert t.loc[("Freeway", "Proposed")]["ours_final mean [min, max]"] == "n/a"
    assert t.loc[("Qbert", "Proposed")]["ours_final mean [min, max]"] == "not run"
    assert t.loc[("Qbert", "Proposed")].ours == "not run"
    # geometric mean: n/a, since Freeway has no %; for DIST likewise
    assert t.loc[("Geometric Mean", "Proposed")].ours == ""  # NaN
    # teacher rows: our teacher's raw score beside the paper's
    assert float(t.loc[("Breakout", "Teacher (score)")].ours) == 200.0
    assert t.loc[("Breakout", "Teacher (score)")].paper == 309.17
    # DIST, one seed: Breakout best 70 -> 35%
    assert float(t.loc[("Breakout", "DIST")].ours) == pytest.approx(35.0)
    assert (out / "fig3.png").stat().st_size > 1000 and "Table 1" in (out / "t1.md").read_text()
    # without Freeway every % is positive: geometric mean of 120 and 95 = sqrt(11,400) = 106.771
    spec["games"] = ["Breakout", "Pong"]
    main(["table1", "--runs", str(runs), "--spec", json.dumps(spec), "--tier", "test", "--reported", REPORTED,
          "--out-csv", str(out / "t1.csv"), "--out-md", str(out / "t1.md"), "--out-fig", str(out / "fig3.png")])
    t = pd.read_csv(out / "t1.csv", keep_default_na=False).set_index(["row", "column"])
    g = t.loc[("Geometric Mean", "Proposed")]
    assert float(g.ours) == pytest.approx(math.sqrt(120 * 95)) and g.paper == 103.8
    # final: Breakout 110%, 115% -> mean 112.5; Pong 19, 18 -> 95%, 90% -> mean 92.5; sqrt(112.5 * 92.5) = 102.01
    assert g["ours_final mean [min, max]"] == "102.0" and g["ours_final per seed"] == ""
    assert t.loc[("Breakout", "Teacher (score)")]["ours_final mean [min, max]"] == "200"


def test_threshold_table_by_hand(tmp_path):
    # Breakout, threshold 300; evaluations at 10, 20, 30, 40 updates
    # H-PR seeds: [100, 320, 400, 400] and [100, 200, 350, 400] -> mean curve [100, 260, 375, 400] crosses at 30;
    #   per seed 20 and 30
    # Uniform seeds: [0, 100, 200, 350] and [0, 100, 250, 280] -> mean [0, 100, 225, 315] crosses at 40; per seed
    #   40 and not reached -> ratio H-PR / Uniform = 30 / 40 = 0.75
    u = (10, 20, 30, 40)
    runs = tmp_path / "runs"
    write_run(runs, "h", 0, {"Breakout": [100, 320, 400, 400]}, u)
    write_run(runs, "h", 1, {"Breakout": [100, 200, 350, 400]}, u)
    write_run(runs, "u", 0, {"Breakout": [0, 100, 200, 350]}, u)
    write_run(runs, "u", 1, {"Breakout": [0, 100, 250, 280]}, u)
    from papers.hpr_distillation.tables import collect

    _, curves = collect(runs, {"H-PR": "h", "Uniform": "u"})
    t = threshold_table(curves, {"Breakout": 300.0}, paper_ratio={"Breakout": 0.5}).set_index("sampler")
    assert t.loc["H-PR", "reach_mean_curve"] == 30 and t.loc["Uniform", "reach_mean_curve"] == 40
    assert t.loc["H-PR", "env_steps_mean_curve"] == 4 * 30 + 100
    assert t.loc["H-PR", "reach_per_seed"] == "20, 30" and t.loc["Uniform", "reach_per_seed"] == "40, not reached"
    assert t.loc["Uniform", "seeds_reached"] == "1/2"
    assert t.loc["H-PR", "ratio_to_Uniform"] == pytest.approx(0.75) and t.loc["H-PR", "paper_ratio"] == 0.5
    assert math.isnan(t.loc["Uniform", "paper_ratio"])
    out = tmp_path / "out"
    spec = {"runs": {"H-PR": "h", "Uniform": "u"}, "games": ["Breakout"], "thresholds": {"Breakout": 300}}
    main(["sampling", "--name", "fig4", "--runs", str(runs), "--spec", json.dumps(spec), "--tier", "test",
          "--reported", REPORTED, "--out-csv", str(out / "f4.csv"), "--out-md", str(out / "f4.md"),
          "--out-fig", str(out / "f4.png")])
    f4 = pd.read_csv(out / "f4.csv")
    sc = f4[f4.table == "scores"].set_index("sampler")
    assert sc.loc["H-PR", "best_mean"] == 400 and sc.loc["Uniform", "final_mean"] == pytest.approx(315.0)
    # final evaluations: Uniform 350, 280 -> 315.0 [280, 350]; no IQM with two seeds
    assert sc.loc["Uniform", "final mean [min, max]"] == "315.0 [280, 350]"
    assert sc.loc["Uniform", "final per seed"] == "350, 280" and "final_iqm" not in f4.columns
    assert f4[(f4.table == "steps_to_threshold") & (f4.sampler == "H-PR")].paper_ratio.iloc[0] == 0.5


def test_value_histograms_by_hand(tmp_path):
    # pooled range [0, 10] in 5 bins of width 2: [0,2) [2,4) [4,6) [6,8) [8,10]
    values = pd.DataFrame({"policy": ["a"] * 4 + ["b"] * 4, "order": [0] * 4 + [1] * 4,
                           "value": [0.0, 1.0, 3.0, 5.0, 5.0, 9.0, 10.0, 10.0]})
    h = value_histograms(values, bins=5)
    assert h[h.policy == "a"]["count"].tolist() == [2, 1, 1, 0, 0]
    assert h[h.policy == "b"]["count"].tolist() == [0, 0, 1, 0, 3]  # 10 falls in the closed last bin
    assert h[h.policy == "b"]["fraction"].tolist() == [0, 0, 0.25, 0, 0.75]
    assert h.v_low.iloc[1] == 2.0 and h.v_high.iloc[4] == 10.0
    values.to_csv(tmp_path / "v.csv", index=False)
    (tmp_path / "s.json").write_text(json.dumps({
        "game": "Breakout", "value_teacher": "t", "steps": 4, "epsilon": 0.05,
        "policies": {"a": {"teacher_dir": "x", "games": 1, "mean_score": 2.0},
                     "b": {"teacher_dir": "y", "games": 0, "mean_score": None}}}))
    main(["fig2", "--values", str(tmp_path / "v.csv"), "--scores", str(tmp_path / "s.json"), "--bins", "5",
          "--tier", "test", "--out-csv", str(tmp_path / "h.csv"), "--out-md", str(tmp_path / "h.md"),
          "--out-fig", str(tmp_path / "h.png")])
    assert "[8.000, 10.00]" in (tmp_path / "h.md").read_text() and (tmp_path / "h.png").stat().st_size > 1000


def test_teacher_paths_come_from_the_zoo_layout():
    """One teacher-path function (common.zoo.teacher_dir, with the tier): both plans name a MinAtar game's teacher as
    the zoo does (one path component), so the shared teacher rule builds it for every paper."""
    from common.zoo import teacher_dir
    from papers.knowledge_flow import plan as kf_plan

    c = {"teachers": {"algo": "ppo", "seed": 2}}
    assert str(teacher_dir("dqn", "MinAtar/Breakout", "expert", 2, tier="t")) == "teachers/t/dqn/MinAtar-Breakout/expert/seed2"
    assert str(teacher_dir("dqn", "Pong", "expert", 0)) == "teachers/dqn/Pong/expert/seed0"   # no tier: the CLI's layout
    assert plan.teacher_dir(c, "t", "MinAtar/Breakout") == "teachers/t/dqn/MinAtar-Breakout/expert/seed2"
    assert kf_plan.teacher_dir(c, "t", "MinAtar/Breakout", "non_expert") == "teachers/t/ppo/MinAtar-Breakout/non_expert/seed2"
    assert kf_plan.teacher_dir(c, "t", "Pong", algo="a2c") == "teachers/t/a2c/Pong/expert/seed2"
