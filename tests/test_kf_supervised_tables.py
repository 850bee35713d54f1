"""Supervised Tables 3-6 (papers/knowledge_flow/supervised_tables.py) from hand-made results.json files, and the
pipeline's plan (which presets run, which are 'not run' and why) from papers/knowledge_flow/supervised.py.
No training."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.report import load_reported
from papers.knowledge_flow import supervised_tables as st
from papers.knowledge_flow.supervised import check_tier_config, experiment_args, tier_args, tier_plan, unavailable

REPORTED = load_reported(Path(__file__).resolve().parents[1] / "papers/knowledge_flow/reported.csv")


def write_results(runs: Path, exp: str, summary: dict, rows: list, teachers: dict, epochs: int = 5):
    """A results.json as papers.knowledge_flow.supervised.write_results leaves it (the keys the tables read)."""
    (runs / exp).mkdir(parents=True, exist_ok=True)
    (runs / exp / "results.json").write_text(json.dumps({
        "experiment": exp, "args": {"epochs": epochs}, "teachers": teachers, "summary": summary, "rows": rows}))


def digits_kd(runs: Path):
    summary = {"baseline": {"test_error_mean": 10.0, "test_error_std": 1.0, "n_seeds": 2, "selected": {}},
               "kd:big": {"test_error_mean": 8.0, "test_error_std": 0.5, "n_seeds": 2,
                          "selected": {"temperature": 4.0, "alpha": 0.9}},
               "kf:big": {"test_error_mean": 6.0, "test_error_std": 2.0, "n_seeds": 2,
                          "selected": {"lambda1": 0.1, "lambda2": 0.01}}}
    rows = [{"method": "baseline", "seed": s, "test_error": e} for s, e in ((0, 9.0), (1, 11.0))]
    rows += [{"method": "kd:big", "seed": s, "test_error": e} for s, e in ((0, 7.5), (1, 8.5))]
    rows += [{"method": "kf:big", "seed": 0, "test_error": 4.0, "test_error_mixed": 3.0, "independence": 0.2},
             {"method": "kf:big", "seed": 1, "test_error": 8.0, "test_error_mixed": 5.0, "independence": 0.4}]
    write_results(runs, "digits_kd", summary, rows, {"big": 3.5})


MNIST_REASON = "dataset unavailable (expected data/MNIST/raw; get it with ...)"
PLAN = {"digits_kd": {"table": "Table 4", "epochs": 5, "not_run": None, "missing": []},
        "mnist_kd": {"table": "Table 4", "epochs": 1, "not_run": MNIST_REASON,
                     "missing": [["mnist", "data/MNIST/raw", "python -c \"import torchvision; ...\""]]}}


def build_tables(runs: Path, out: Path, extra=()):
    """The tables CLI on `runs` with PLAN, writing t.csv, t.md, f.png (and `extra` arguments) under `out`."""
    st.main(["--runs", str(runs), "--tier", "smoke", "--plan", json.dumps(PLAN),
             "--reported", str(Path(st.__file__).with_name("reported.csv")), "--out-csv", str(out / "t.csv"),
             "--out-md", str(out / "t.md"), "--out-fig", str(out / "f.png"), *extra])


def cell(table, row, column):
    hit = table[(table["row"] == row) & (table["column"] == column)]
    assert len(hit) == 1, (row, column, len(hit))
    return hit.iloc[0]


def test_ran_rows_have_our_numbers_and_the_rest_say_why(tmp_path):
    digits_kd(tmp_path)
    table, teachers = st.build(tmp_path, PLAN, REPORTED)
    ours = cell(table, "digits (offline stand-in for MNIST)", "Ours")
    assert ours["method"] == "kf:big" and ours["ours"] == 6.0 and ours["ours_std"] == 2.0 and ours["n_seeds"] == 2
    assert ours["ours mean [min, max]"] == "6.0 [4, 8]" and ours["ours per seed"] == "4, 8"
    assert cell(table, "EMNIST Letters", "Cohen et al. (2017)")["ours per seed"] == ""   # another work's number
    assert ours["ours_mixed"] == pytest.approx(4.0) and ours["independence"] == pytest.approx(0.3)   # seed means
    assert ours["selected"] == "lambda1=0.1, lambda2=0.01" and ours["epochs"] == 5
    assert np.isnan(ours["paper"]) and np.isnan(ours["ratio"])          # a stand-in: no paper number
    kd = cell(table, "digits (offline stand-in for MNIST)", "KD Hinton et al. (2015)")
    assert kd["ours"] == 8.0 and np.isnan(kd["ours_mixed"])
    # the tier lists mnist_kd but its data is absent: every MNIST cell says so, with the paper's number beside it
    for col, paper in (("Student alone", 1.46), ("KD Hinton et al. (2015)", 0.74), ("Ours", 0.73)):
        c = cell(table, "MNIST", col)
        assert c["ours"] == f"not run: {MNIST_REASON}" and c["paper"] == paper and c["n_seeds"] == 0
    # presets the tier does not list and other works' numbers
    assert cell(table, "C10", "Ours (C100, SVHN)")["ours"] == \
        "not run: not in this tier (add 'cifar10' to kf_supervised.experiments.table3)"
    assert cell(table, "Imagenet", "Ours")["ours"] == \
        "not run: not in this tier (add 'imagenet_kd' to kf_supervised.experiments.table4)"
    assert cell(table, "EMNIST Letters", "Cohen et al. (2017)")["ours"] == st.OTHER_WORK
    assert cell(table, "STL-10", "Thoma (2017)")["ours"] == st.OTHER_WORK
    # every reported row of Tables 3-6 once, plus the 3 stand-in cells of the preset that ran
    n_reported = REPORTED["table"].isin(["Table 3", "Table 4", "Table 5", "Table 6"]).sum()
    assert len(table) == n_reported + 3 and not table.duplicated(["table", "row", "column"]).any()
    assert list(dict.fromkeys(table["table"])) == ["Table 3", "Table 4", "Table 5", "Table 6"]
    assert teachers.to_dict("records") == [{"table": "Table 4", "experiment": "digits_kd", "teacher": "big",
                                            "test error (%) on its source task": 3.5}]


def test_ratio_is_ours_over_paper(tmp_path):
    summary = {m: {"test_error_mean": v, "test_error_std": 0.0, "n_seeds": 1, "selected": {}}
               for m, v in (("baseline", 2.92), ("kd:mlp1200", 0.74), ("kf:mlp1200", 0.365))}
    write_results(tmp_path, "mnist_kd", summary, [], {"mlp1200": 1.0})
    table, _ = st.build(tmp_path, {"mnist_kd": {"table": "Table 4", "epochs": 5, "not_run": None}}, REPORTED)
    assert cell(table, "MNIST", "Student alone")["ratio"] == pytest.approx(2.0)     # 2.92 / 1.46
    assert cell(table, "MNIST", "KD Hinton et al. (2015)")["ratio"] == pytest.approx(1.0)
    assert cell(table, "MNIST", "Ours")["ratio"] == pytest.approx(0.5)              # 0.365 / 0.73: ours lower


def test_a_run_preset_without_results_stops_with_the_rule_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="digits_kd/results.json is missing: run the pipeline's kf_supervised"):
        st.build(tmp_path, PLAN, REPORTED)


def test_cli_writes_csv_markdown_and_figure(tmp_path):
    digits_kd(tmp_path / "runs")
    out = tmp_path / "out"
    build_tables(tmp_path / "runs", out)
    md = (out / "t.md").read_text()
    assert "lower is better" in md and md.count("**Knowledge Flow Table ") == 4
    # 2 seeds (4, 8): their mean [min, max] and each seed beside the std; no IQM or interval (issue 15)
    assert ("| digits (offline stand-in for MNIST) | Ours | digits_kd | kf:big | n/a | 6.000 | 2.000 | 6.0 [4, 8] | "
            "4, 8 | 2 |") in md
    assert "no IQM or bootstrap interval" in md and "IQM [95% CI]" not in md
    assert f"| MNIST | Ours | mnist_kd | kf:mlp1200 | 0.7300 | not run: {MNIST_REASON} |" in md
    assert "- mnist (expected `data/MNIST/raw`): `python -c" in md                # how to get the missing data
    back = pd.read_csv(out / "t.csv")
    ours = back.loc[(back.row == "digits (offline stand-in for MNIST)") & (back.column == "Ours"), "ours"]
    assert float(ours.iloc[0]) == 6.0
    assert (out / "f.png").stat().st_size > 1000


def test_plan_runs_digits_and_marks_absent_data_not_run(tmp_path):
    data = tmp_path / "data"
    config = {"kf_supervised": {"data_dir": str(data), "seeds": 2,
                                "experiments": {"table3": ["cifar10"], "table4": ["digits_kd", "mnist_kd"]},
                                "args": {"epochs": 3}, "overrides": {"mnist_kd": {"epochs": 1}}}}
    check_tier_config(config)
    plan = tier_plan(config)
    assert list(plan) == ["cifar10", "digits_kd", "mnist_kd"]                       # config order
    assert plan["digits_kd"] == {"table": "Table 4", "epochs": 3, "not_run": None, "missing": []}
    assert plan["mnist_kd"]["epochs"] == 1                                           # the override wins
    why = plan["mnist_kd"]["not_run"]
    assert why.startswith("dataset unavailable (expected ") and str(data / "MNIST" / "raw") in why
    assert "torchvision.datasets.MNIST(" in why and "download=True" in why
    # cifar10 reads CIFAR-10 (target), CIFAR-100 and SVHN (teachers): every absent path is named
    paths = [p for _, p, _ in plan["cifar10"]["missing"]]
    assert paths == [str(data / p) for p in ("cifar-10-batches-py", "cifar-100-python", "train_32x32.mat",
                                              "test_32x32.mat")]
    (data / "MNIST" / "raw").mkdir(parents=True)
    assert tier_plan(config)["mnist_kd"]["not_run"] is None                          # the data is there: it runs
    args = tier_args(config, "mnist_kd", threads=2)
    assert args == {"epochs": 1, "data_dir": str(data), "seeds": 2, "threads": 2}
    assert unavailable(experiment_args("digits_transfer", {"data_dir": str(data)})) is None


@pytest.mark.parametrize("section, message", [
    ({"experiments": {"table4": ["mnist_kdd"]}}, "unknown preset 'mnist_kdd'"),
    ({"experiments": {"table3": ["mnist_kd"]}}, "belongs to Table 4; list it under experiments.table4"),
    ({"experiments": {"table4": ["digits_kd"]}, "args": {"epoch": 3}}, "'epoch' (did you mean 'epochs'?)"),
    ({"experiments": {"table4": ["digits_kd"]}, "overrides": {"digits_kd_wo3": {}}}, "does not list"),
])
def test_config_errors_name_the_key(section, message):
    with pytest.raises((KeyError, ValueError)) as e:
        check_tier_config({"kf_supervised": {"seeds": 1, **section}})
    assert message in str(e.value)


def test_a_tier_that_runs_nothing_still_shows_every_paper_row(tmp_path):
    table, teachers = st.build(tmp_path, {}, REPORTED)
    assert (table["n_seeds"] == 0).all() and teachers.empty
    assert not table["row"].str.contains("stand-in").any()              # stand-ins appear only when listed
    assert table["ours"].str.startswith(("not run: ", st.OTHER_WORK)).all()
    assert "no (nothing ran)" in st.markdown(table, teachers, {}, "recorded")
    assert st.plot(table, tmp_path, tmp_path / "f.png", "t").stat().st_size > 1000   # a placeholder figure


def write_pw(runs: Path, exp: str, method: str, teachers: list, layers=("fc1", "fc2"), seeds=(0, 1), epochs=3):
    """A pw.csv as papers.knowledge_flow.supervised.write_results leaves it: p_w(student) rising from uniform."""
    rows = []
    for seed in seeds:
        for epoch in range(epochs + 1):
            for layer in layers:
                k = len(teachers) + 1
                student = 1 / k + (1 - 1 / k) * epoch / epochs * (0.8 + 0.1 * seed)
                rows.append({"preset": exp, "method": method, "seed": seed, "epoch": epoch, "step": 10 * epoch,
                             "layer": layer, "candidate": "student", "teacher": "", "source": "student",
                             "p_w": student})
                rows += [{"preset": exp, "method": method, "seed": seed, "epoch": epoch, "step": 10 * epoch,
                          "layer": layer, "candidate": f"teacher {m}", "teacher": t, "source": f"t{m}.{layer}",
                          "p_w": (1 - student) / len(teachers)} for m, t in enumerate(teachers)]
    (runs / exp).mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(runs / exp / "pw.csv", index=False)


def test_pw_figure_from_hand_made_pw_csv(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    digits_kd(runs)
    write_pw(runs, "digits_kd", "kf:big", ["big"])
    pw = st.pw_curves(runs, PLAN)                                        # mnist_kd did not run: no rows, no error
    assert set(pw["preset"]) == {"digits_kd"} and pw.groupby(["seed", "epoch", "layer"])["p_w"].sum().sub(1).abs().max() < 1e-9
    assert pw["teacher"].tolist()[:2] == ["", "big"]
    build_tables(runs, out, ["--out-pw-fig", str(out / "pw.png")])
    assert (out / "pw.png").stat().st_size > 1000
    md = (out / "t.md").read_text()
    assert "**Figure pw.png.**" in md and "Shown: digits_kd (kf:big: teacher 0 = big)" in md
    assert "Fig. 7" in md and "cifar10 (not in this tier)" in md
    # a two-teacher preset standing in for the paper's Fig. 7, next to a preset whose data is absent
    plan = {"cifar10": {"table": "Table 3", "epochs": 2, "not_run": None, "missing": []},
            "stl10": {"table": "Table 6", "epochs": 2, "not_run": "dataset unavailable (expected data/stl10_binary)"}}
    write_pw(runs, "cifar10", "kf:c100+svhn", ["c100", "svhn"], layers=("conv1", "conv2", "fc1"), seeds=(0, 1, 2))
    pw = st.pw_curves(runs, plan)
    assert set(pw["candidate"]) == {"student", "teacher 0", "teacher 1"} and set(pw["preset"]) == {"cifar10"}
    cap = st.pw_caption(plan, pw, "paper")
    assert "cifar10 (kf:c100+svhn: teacher 0 = c100, teacher 1 = svhn)" in cap
    assert "stl10 (not run: dataset unavailable)" in cap and "emnist_letters (not in this tier)" in cap
    assert st.plot_pw(pw, tmp_path / "pw7.png", "t").stat().st_size > 1000
    assert st.pw_label("cifar10") == "cifar10 (paper Fig. 7)"


def test_pw_figure_placeholder_and_missing_pw_csv(tmp_path):
    empty = st.pw_curves(tmp_path, {})
    assert empty.empty and st.plot_pw(empty, tmp_path / "pw.png", "t").stat().st_size > 1000
    with pytest.raises(FileNotFoundError, match="digits_kd/pw.csv is missing: rerun the pipeline's kf_supervised"):
        st.pw_curves(tmp_path, PLAN)


def write_curves(runs: Path, exp: str, rows: list):
    """A curves.csv as papers.knowledge_flow.supervised.write_results leaves it."""
    (runs / exp).mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{"preset": exp, **r} for r in rows]).to_csv(runs / exp / "curves.csv", index=False)


def test_accuracy_figure_splits_knowledge_flow_into_mixed_and_student_alone(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    digits_kd(runs)
    write_curves(runs, "digits_kd", [
        {"method": "baseline", "seed": 0, "epoch": 0, "step": 0, "test_acc": 10.0, "test_acc_student": None},
        {"method": "baseline", "seed": 0, "epoch": 1, "step": 5, "test_acc": 80.0, "test_acc_student": None},
        {"method": "kf:big", "seed": 0, "epoch": 0, "step": 0, "test_acc": 12.0, "test_acc_student": 9.0},
        {"method": "kf:big", "seed": 0, "epoch": 1, "step": 5, "test_acc": 90.0, "test_acc_student": 60.0}])
    c = st.accuracy_curves(runs, PLAN)                                   # mnist_kd did not run: skipped
    got = {(r.curve, r.epoch): r.test_acc for r in c.itertuples()}
    assert got == {("baseline", 0): 10.0, ("baseline", 1): 80.0, ("kf:big (mixed)", 0): 12.0,
                   ("kf:big (mixed)", 1): 90.0, ("kf:big (student alone)", 0): 9.0, ("kf:big (student alone)", 1): 60.0}
    assert set(c["panel"]) == {"digits_kd (no paper fig.)"}
    build_tables(runs, out, ["--out-curve-fig", str(out / "c.png")])
    assert (out / "c.png").stat().st_size > 1000
    md = (out / "t.md").read_text()
    assert "**Figure c.png.**" in md and "Shown: digits_kd." in md
    assert "emnist_letters (not in this tier), stl10 (not in this tier)" in md
    empty = st.accuracy_curves(tmp_path, {})
    assert empty.empty and st.plot_curves(empty, tmp_path / "e.png", "t").stat().st_size > 1000
    with pytest.raises(FileNotFoundError, match="digits_kd/curves.csv is missing: rerun the pipeline's kf_supervised"):
        st.accuracy_curves(tmp_path, PLAN)
