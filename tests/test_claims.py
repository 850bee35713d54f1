"""The claims scorecard (common/claims.py): bootstrap interval, verdict rules, the <5-seed rule, preconditions,
metrics read from run files, and the four papers' claims.yaml files. Hand-worked values; runs in seconds."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common import claims as cl
from common.io import write_json

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------- bootstrap
def test_bootstrap_interval_by_hand():
    # T = [0, 0, 0, 0, 10], C = 0: a replicate's mean is 10 K / 5 = 2 K with K ~ Binomial(5, 0.2) the number of
    # 10s drawn. P(K = 0) = 0.328 > 0.025, so the 2.5% quantile is 0; P(K <= 2) = 0.942 < 0.975 <= P(K <= 3) = 0.993,
    # so the 97.5% quantile is 2 x 3 = 6. Point: 2.
    d = [{"t": np.array([0, 0, 0, 0, 10.0]), "c": np.zeros(5), "s": None}]
    assert cl.bootstrap_effect(d, "difference", seed=0) == (2.0, 0.0, 6.0)
    # a fixed seed makes it a pure function of the data
    assert cl.bootstrap_effect(d, "difference", seed=0) == cl.bootstrap_effect(d, "difference", seed=0)


def test_bootstrap_is_stratified_and_averages_strata():
    # stratum A as above (d_A = 2 K), stratum B constant (d_B = 4 - 2 = 2): effect (2 K + 2) / 2 = K + 1,
    # so point 2 and interval [0 + 1, 3 + 1] = [1, 4]
    d = [{"t": np.array([0, 0, 0, 0, 10.0]), "c": np.zeros(5), "s": None},
         {"t": np.full(5, 4.0), "c": np.full(5, 2.0), "s": None}]
    assert cl.bootstrap_effect(d, "difference", seed=0) == (2.0, 1.0, 4.0)


def test_constant_samples_give_a_point_interval_and_effect_measures():
    t, c, s = np.full(5, 3.0), np.full(5, 2.0), np.full(5, 6.0)
    assert cl.bootstrap_effect([{"t": t, "c": c, "s": None}], "difference") == (1.0, 1.0, 1.0)
    assert cl.bootstrap_effect([{"t": t, "c": c, "s": None}], "relative") == (0.5, 0.5, 0.5)   # (3 - 2) / 2
    assert cl.stratum_effect(t, c, s, "scaled") == pytest.approx(0.25)                           # (3 - 2) / (6 - 2)
    assert cl.stratum_effect(t, None, None, "value") == 3.0
    assert np.isnan(cl.stratum_effect(t, np.zeros(5), None, "relative"))                         # /|0| undefined


def test_fixed_arm_is_not_resampled():
    # the control is one reference number: only T's seeds vary, so every replicate's effect is (mean T* - 2) / 2
    # and the interval lies inside [(1 - 2) / 2, (5 - 2) / 2]
    d = [{"t": np.array([1, 2, 3, 4, 5.0]), "c": np.array([2.0]), "s": None, "fixed": {"c"}}]
    point, lo, hi = cl.bootstrap_effect(d, "relative")
    assert point == 0.5 and -0.5 <= lo < 0.5 < hi <= 1.5


# ------------------------------------------------------------------------------------------- verdicts
@pytest.mark.parametrize("lo,hi,direction,margin,tol,expected", [
    (0.1, 0.5, "greater", 0, 0, "supported"),
    (-0.5, -0.1, "greater", 0, 0, "contradicted"),
    (-0.1, 0.1, "greater", 0, 0, "inconclusive"),
    (0.0, 0.0, "greater", 0, 0, "contradicted"),      # no difference at all contradicts "greater"
    (9.5, 12.0, "greater", 9.0, 0, "supported"),      # "ten times larger": relative difference > 9
    (2.0, 12.0, "greater", 9.0, 0, "inconclusive"),
    (-0.6, -0.2, "less", 0, 0, "supported"),
    (0.0, 0.3, "less", 0, 0, "contradicted"),
    (-0.05, 0.08, "equal", 0, 0.1, "supported"),
    (0.15, 0.3, "equal", 0, 0.1, "contradicted"),
    (0.05, 0.3, "equal", 0, 0.1, "inconclusive"),
    (float("nan"), 1.0, "greater", 0, 0, "inconclusive"),
])
def test_direction_verdict(lo, hi, direction, margin, tol, expected):
    assert cl.direction_verdict(lo, hi, direction, margin, tol) == expected


def test_combine_each():
    assert cl.combine_each(["supported", "supported"]) == "supported"
    assert cl.combine_each(["supported", "inconclusive"]) == "inconclusive"
    assert cl.combine_each(["supported", "contradicted", "inconclusive"]) == "contradicted"


# ------------------------------------------------------------------------------------- claims on run files
def _runs(root: Path, method: str, game: str, scores, final=None):
    for seed, s in enumerate(scores):
        d = root / f"runs/t/kf/{method}/{game}/seed{seed}"
        write_json(d / "eval.json", {"mean": float(s), "episodes": 30})
        if final is not None:
            write_json(d / "final.json", {"independence": {"conv1": 0.0, "fc": final[seed]}})


def _teacher(root: Path, game: str, score: float):
    write_json(root / f"teachers/t/ppo/{game}/expert/seed0/eval.json", {"mean": score})


CLAIM = {
    "id": "c", "claim": "KF beats the baseline", "quote": "q", "where": "Table 2",
    "comparison": {
        "treatment": {"source": "json", "path": "runs/{tier}/kf/kf/{stratum}/seed{seed}/eval.json", "key": "mean"},
        "control": {"source": "json", "path": "runs/{tier}/kf/base/{stratum}/seed{seed}/eval.json", "key": "mean"},
        "strata": ["Pong", "MinAtar/Breakout"], "effect": "relative", "direction": "greater"},
    "preconditions": [{"name": "teacher expert", "op": ">=", "bound": {"reference": "expert", "fraction": 0.8},
                       "arm": {"source": "json", "path": "teachers/{tier}/ppo/{stratum}/expert/seed0/eval.json"}},
                      {"name": "independent", "op": "<=", "bound": 0.01, "reduce": "max",
                       "arm": {"source": "json", "path": "runs/{tier}/kf/kf/{stratum}/seed{seed}/final.json",
                               "key": "independence", "reduce": "max"}}],
}


def _ctx(root):
    return cl.Context(root, "t", {}, {"expert": {"Pong": 20, "MinAtar/Breakout": 17}})


def test_supported_with_five_seeds(tmp_path):
    _runs(tmp_path, "kf", "Pong", [12, 13, 14, 15, 16], final=[0.0] * 5)
    _runs(tmp_path, "base", "Pong", [10] * 5)
    _teacher(tmp_path, "Pong", 19.0)          # >= 0.8 x 20
    row = cl.judge(_ctx(tmp_path), CLAIM)
    # only Pong ran (MinAtar/Breakout skipped); effect (14 - 10) / 10 = 0.4, every replicate > 0
    assert row["verdict"] == "supported" and row["n_seeds"] == 5 and row["strata"] == "Pong"
    assert row["effect"] == pytest.approx(0.4) and 0.2 <= row["ci_low"] < 0.4 < row["ci_high"] <= 0.6


def test_below_five_seeds_is_at_most_inconclusive_and_has_no_interval(tmp_path):
    _runs(tmp_path, "kf", "Pong", [100, 110, 120], final=[0.0] * 3)
    _runs(tmp_path, "base", "Pong", [10, 10, 10])
    _teacher(tmp_path, "Pong", 19.0)
    row = cl.judge(_ctx(tmp_path), CLAIM)
    assert row["verdict"] == "inconclusive" and row["n_seeds"] == 3
    assert np.isnan(row["ci_low"]) and np.isnan(row["ci_high"])
    # per-seed values, then mean [min, max]
    assert "[100, 110, 120] mean 110 [100, 120]" in row["ours"] and "3 seeds < 5" in row["notes"]


def test_weak_teacher_is_precondition_not_met(tmp_path):
    _runs(tmp_path, "kf", "Pong", [12, 13, 14, 15, 16], final=[0.0] * 5)
    _runs(tmp_path, "base", "Pong", [10] * 5)
    _teacher(tmp_path, "Pong", 1.1)           # < 0.8 x 20 = 16: the recorded cdrl Pong expert's strength
    row = cl.judge(_ctx(tmp_path), CLAIM)
    assert row["verdict"] == "precondition not met"
    assert "teacher expert in Pong: 1.1 >= 0.8 x 20 (Pong) = 16: NOT met" in row["notes"]


def test_a_bound_may_read_another_games_reference(tmp_path):
    # a Pong teacher of a Bowling student (cA3C) is judged against Pong's expert score, not Bowling's
    write_json(tmp_path / "runs/t/expert_pong/eval.json", {"mean": 19.0})
    ctx = cl.Context(tmp_path, "t", {}, {"expert": {"Pong": 20, "Bowling": 60}})
    pre = {"name": "Pong teacher", "op": ">=", "arm": {"source": "json", "path": "runs/{tier}/expert_pong/eval.json",
                                                       "key": "mean"},
           "bound": {"reference": "expert", "fraction": 0.9}}
    assert cl.check_precondition(ctx, pre, "Bowling") == (False, "Pong teacher in Bowling: 19 >= 0.9 x 60 (Bowling) "
                                                                 "= 54: NOT met")
    pre["bound"]["stratum"] = "Pong"                     # 19 >= 0.9 x 20 = 18
    assert cl.check_precondition(ctx, pre, "Bowling") == (True, "Pong teacher in Bowling: 19 >= 0.9 x 20 (Pong) "
                                                                "= 18: met")
    pre["bound"]["of"] = "Pong"
    doc = tmp_path / "c.yaml"
    import yaml
    doc.write_text(yaml.safe_dump({"paper": "p", "claims": [{**CLAIM, "preconditions": [pre]}]}))
    with pytest.raises(cl.ClaimsError, match="bound mapping needs 'reference'.*'of'"):
        cl.load_claims(doc)


def test_dependent_student_or_missing_teacher_is_precondition_not_met(tmp_path):
    _runs(tmp_path, "kf", "Pong", [12, 13, 14, 15, 16], final=[0.0, 0.0, 0.108, 0.0, 0.0])
    _runs(tmp_path, "base", "Pong", [10] * 5)
    _teacher(tmp_path, "Pong", 19.0)
    row = cl.judge(_ctx(tmp_path), CLAIM)
    assert row["verdict"] == "precondition not met" and "independent in Pong: 0.108 <= 0.01" in row["notes"]
    (tmp_path / "teachers/t/ppo/Pong/expert/seed0/eval.json").unlink()
    _runs(tmp_path, "kf", "Pong", [12, 13, 14, 15, 16], final=[0.0] * 5)
    row = cl.judge(_ctx(tmp_path), CLAIM)
    assert row["verdict"] == "precondition not met" and "teacher expert: no data in Pong" in row["notes"]


def test_not_run_and_not_testable(tmp_path):
    assert cl.judge(_ctx(tmp_path), CLAIM)["verdict"] == "not run"
    row = cl.judge(_ctx(tmp_path), {"id": "p", "claim": "x", "quote": "q", "where": "Table 1", "testable": False,
                                    "reason": "PathNet not implemented"})
    assert row["verdict"] == "not testable" and row["notes"] == "PathNet not implemented"


def test_minatar_strata_nest_in_paths(tmp_path):
    # 'MinAtar/Breakout' is two path components in the KF layout; {stratum_slug} is one ('MinAtar-Breakout')
    _runs(tmp_path, "kf", "MinAtar/Breakout", [5] * 5, final=[0.0] * 5)
    _runs(tmp_path, "base", "MinAtar/Breakout", [10] * 5)
    _teacher(tmp_path, "MinAtar/Breakout", 17.0)
    row = cl.judge(_ctx(tmp_path), CLAIM)
    assert row["strata"] == "MinAtar/Breakout" and row["verdict"] == "contradicted" and row["effect"] == -0.5
    assert cl.Context(tmp_path, "t").fill("x/{stratum_slug}/{seed}", "MinAtar/Breakout") == "x/MinAtar-Breakout/{seed}"


def test_steps_to_threshold_and_censoring(tmp_path):
    # threshold 0.9 x teacher 10 = 9: the raw curve reaches it at x = 40; smoothed over 2 rows ([0, 1, 3.5, 7])
    # never, so the seed counts at its last x (40) and is reported as censored
    curve = pd.DataFrame({"game": ["G"] * 4, "updates": [10, 20, 30, 40], "eval_score": [0, 2, 5, 9]})
    p = tmp_path / "runs/t/h/run/seed0/curve.csv"
    p.parent.mkdir(parents=True)
    curve.to_csv(p, index=False)
    write_json(tmp_path / "teach/G.json", {"mean": 10.0})
    arm = {"source": "curve", "path": "runs/{tier}/h/run/seed{seed}/curve.csv", "x": "updates", "y": "eval_score",
           "filter": {"game": "{stratum}"}, "stat": "steps_to_threshold",
           "threshold": {"fraction": 0.9, "of": {"source": "json", "path": "teach/{stratum}.json"}}}
    ctx = cl.Context(tmp_path, "t")
    assert cl.arm_values(ctx, arm, "G").tolist() == [40.0] and cl.censored(ctx, arm, "G") == (0, 1)
    smooth = {**arm, "window": 2}
    assert cl.arm_values(ctx, smooth, "G").tolist() == [40.0] and cl.censored(ctx, smooth, "G") == (1, 1)
    assert cl.arm_values(ctx, {**arm, "stat": "max"}, "G").tolist() == [9.0]
    assert cl.arm_values(ctx, {**arm, "stat": "last_mean", "window": 2}, "G").tolist() == [7.0]


def test_csv_rows_metric_with_column_glob(tmp_path):
    p = tmp_path / "runs/t/gas/digits_modes/results.csv"
    p.parent.mkdir(parents=True)
    pd.DataFrame({"method": ["ours", "ours", "dafl"], "seed": [0, 1, 0], "mode_acc_0": [50, 60, 70],
                  "mode_acc_5": [30, 90, 10]}).to_csv(p, index=False)
    arm = {"source": "csv_rows", "path": "runs/{tier}/gas/{stratum}/results.csv", "method": "ours",
           "columns": "mode_acc_*", "reduce": "min"}
    assert cl.arm_values(cl.Context(tmp_path, "t"), arm, "digits_modes").tolist() == [30.0, 60.0]


def test_missing_template_variable_means_not_run(tmp_path):
    arm = {"source": "json", "path": "runs/{tier}/kf/{kf_t7_kf_{stratum_slug}}/{stratum}/seed{seed}/eval.json"}
    assert cl.arm_values(cl.Context(tmp_path, "t"), arm, "Hero").size == 0
    ctx = cl.Context(tmp_path, "t", {"kf_t7_kf_Hero": "kf_seaquest_riverraid"})
    assert ctx.fill(arm["path"], "Hero") == "runs/t/kf/kf_seaquest_riverraid/Hero/seed{seed}/eval.json"


def test_load_claims_rejects_bad_files(tmp_path):
    p = tmp_path / "claims.yaml"
    p.write_text("claims:\n  - {id: a, claim: b, quote: c, where: d, colour: red}\n")
    with pytest.raises(cl.ClaimsError, match="unknown keys.*colour"):
        cl.load_claims(p)
    p.write_text("claims:\n  - {id: a, claim: b, quote: c, where: d, testable: false}\n")
    with pytest.raises(cl.ClaimsError, match="reason"):
        cl.load_claims(p)


@pytest.mark.parametrize("paper", ["knowledge_flow", "hpr_distillation", "cdrl", "gan_simulator"])
def test_papers_claims_files_load(paper):
    doc = cl.load_claims(REPO / f"papers/{paper}/claims.yaml")
    assert doc["paper"] == paper and len(doc["claims"]) >= 5


def test_cli_writes_markdown_and_csv(tmp_path):
    _runs(tmp_path, "kf", "Pong", [100, 110, 120], final=[0.0] * 3)
    _runs(tmp_path, "base", "Pong", [10, 10, 10])
    _teacher(tmp_path, "Pong", 19.0)
    f = tmp_path / "claims.yaml"
    import yaml
    f.write_text(yaml.safe_dump({"paper": "kf", "references": {"expert": {"Pong": 20}}, "claims": [CLAIM]}))
    md, csv = tmp_path / "out/claims.md", tmp_path / "out/claims.csv"
    cl.main(["--tier", "t", "--claims", str(f), "--root", str(tmp_path), "--out-md", str(md), "--out-csv", str(csv)])
    df = pd.read_csv(csv)
    assert df.loc[0, "verdict"] == "inconclusive" and df.loc[0, "n_seeds"] == 3
    text = md.read_text()
    assert "Claims scorecard (t tier)" in text and "| kf | **c**: KF beats the baseline |" in text


def test_template_default_names_and_tier_overrides(tmp_path):
    # '{name|default}': the paper's run name unless the tier renames the role (config/minatar.yaml claims.vars)
    t = "runs/{tier}/knowledge_flow/{kf_two_teachers|kf_seaquest_riverraid}/{stratum}/seed{seed}/eval.json"
    assert cl.Context(tmp_path, "d").fill(t, "Hero") == "runs/d/knowledge_flow/kf_seaquest_riverraid/Hero/seed{seed}/eval.json"
    ctx = cl.Context(tmp_path, "m", {"kf_two_teachers": "kf_seaquest_spaceinvaders"})
    assert ctx.fill(t, "MinAtar/Asterix") == ("runs/m/knowledge_flow/kf_seaquest_spaceinvaders/MinAtar/Asterix/"
                                              "seed{seed}/eval.json")


def test_report_opens_with_the_scorecard(tmp_path):
    from common import build_report

    card = tmp_path / "claims.md"
    card.write_text("**Claims scorecard (t tier).**\n")
    out = tmp_path / "report/index.md"
    build_report.main(["--tier", "t", "--out", str(out), "--sections", "[]", "--claims", str(card),
                       "--config", '{"teachers": {"algo": "ppo", "steps": {"expert": 1}}}'])
    sections = [line for line in out.read_text().splitlines() if line.startswith("## ")]
    assert sections[0] == "## Claims scorecard" and "**Claims scorecard (t tier).**" in out.read_text()


def test_plateau_measures_how_much_a_curve_still_rises(tmp_path):
    # x 1..10, f = 0.2: last = x in (8, 10] -> y 9, 10 (mean 9.5); before = x in (6, 8] -> y 7, 8 (mean 7.5):
    # (9.5 - 7.5) / 7.5 = 0.2667, still rising; a flat curve gives 0
    p = tmp_path / "runs/t/r/seed0/curve.csv"
    p.parent.mkdir(parents=True)
    pd.DataFrame({"env_steps": range(1, 11), "episode_return": range(1, 11)}).to_csv(p, index=False)
    arm = {"source": "curve", "path": "runs/{tier}/r/seed{seed}/curve.csv", "y": "episode_return", "stat": "plateau",
           "fraction": 0.2}
    assert cl.arm_values(cl.Context(tmp_path, "t"), arm, "G")[0] == pytest.approx(2 / 7.5)
    pd.DataFrame({"env_steps": range(1, 11), "episode_return": [5.0] * 10}).to_csv(p, index=False)
    assert cl.arm_values(cl.Context(tmp_path, "t"), arm, "G").tolist() == [0.0]


PAPER_TEXTS = {"knowledge_flow": "knowledge_flow.txt", "hpr_distillation": "hpr_distillation.md", "cdrl": "cdrl.md",
               "gan_simulator": "gan_simulator_abstract.txt"}


@pytest.mark.parametrize("paper", sorted(PAPER_TEXTS))
def test_quotes_are_verbatim_where_the_paper_texts_are(paper):
    # the papers' texts are not in the repository: set KT_PAPERS_DIR to a directory holding them to run this check
    import os
    import re

    text = Path(os.environ.get("KT_PAPERS_DIR", "/work/shared/papers")) / PAPER_TEXTS[paper]
    if not text.exists():
        pytest.skip(f"paper text {text} not available")

    def norm(s):  # markdown emphasis and TeX markers of the text extractions, and line breaks, removed
        return re.sub(r"\s+", " ", re.sub(r"[*_$\\]", "", s)).replace(" ,", ",").strip()

    body = norm(text.read_text())
    missing = [c["id"] for c in cl.load_claims(REPO / f"papers/{paper}/claims.yaml")["claims"]
               if norm(c["quote"]) not in body]
    assert not missing


def test_csv_rows_method_per_stratum(tmp_path):
    p = tmp_path / "runs/t/sup/mnist_kd/results.csv"
    p.parent.mkdir(parents=True)
    pd.DataFrame({"method": ["kf:mlp1200", "kd:mlp1200", "kf:big"], "seed": [0, 0, 0],
                  "test_error": [0.7, 0.8, 9.0]}).to_csv(p, index=False)
    arm = {"source": "csv_rows", "path": "runs/{tier}/sup/{stratum}/results.csv", "column": "test_error",
           "method": {"mnist_kd": "kf:mlp1200", "digits_kd": "kf:big"}}
    ctx = cl.Context(tmp_path, "t")
    assert cl.arm_values(ctx, arm, "mnist_kd").tolist() == [0.7]
    assert cl.arm_values(ctx, arm, "cifar100_kd").size == 0      # no name for that stratum: not run


def test_cdrl_claims_read_the_expert_where_the_pipeline_writes_it(tmp_path):
    # the experts' preconditions once read runs/<tier>/cdrl/expert_Pong/..., a directory nobody writes
    # (plan.expert_dir lowercases the game): on a case-sensitive disk every such claim said "precondition not met"
    from papers.cdrl import plan

    config = {"cdrl": {"experts": {"seed": 100}}}
    ctx = cl.Context(tmp_path, "t", {"cdrl_expert_seed": str(plan.expert_seed(config))})
    doc = cl.load_claims(REPO / "papers/cdrl/claims.yaml")
    paths = {ctx.fill(p["arm"]["path"], "Bowling") for c in doc["claims"] for p in c.get("preconditions", [])
             if "expert" in p["arm"]["path"]}
    assert paths == {f"{plan.expert_dir(config, 't', g)}/eval.json" for g in ("Pong", "Bowling")}
