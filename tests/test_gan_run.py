"""GAS experiments (papers/gan_simulator/run.py, harness.py, images.py, policy.py, plan.py, tables.py): results
files, the data guard, per-mode accuracy, table builders on hand-made results, the missing-dataset message, the
tier plan. Fast: tiny budgets on scikit-learn's digits."""

import csv
import json

import numpy as np
import pandas as pd
import pytest
import torch

from common.report import load_reported
from papers.gan_simulator import harness, images
from papers.gan_simulator import run as gr
from papers.gan_simulator import tables as gt
from papers.gan_simulator.guard import RealDataGuard, RealDataLeak
from papers.gan_simulator.method import METHODS, LeNet5, LeNet5Half, digits_dataset, distill
from papers.gan_simulator.plan import tier_image_args, tier_plan
from papers.gan_simulator.policy import frame_map

TINY = {"seeds": 2, "teacher_epochs": 1, "gas": {"student_steps": 4, "batch_size": 16, "log_every": 2},  # ours: 2 re-inits
        "method_overrides": {"ours": {"reinit_every": 1, "s_steps": 2, "student_steps": 6}}}
REPORTED = "papers/gan_simulator/reported.csv"


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gas") / "digits"
    gr.main(["--experiment", "digits", "--out", str(out), "--args", json.dumps(TINY)])
    return out


def test_digits_results_files(digits_run):
    res = json.loads((digits_run / "results.json").read_text())
    assert res["experiment"] == "digits" and res["n_train"] == 1437 and res["n_test"] == 360
    assert 0 <= res["teacher"]["test_acc"] <= 100 and res["teacher"]["cached"] is False
    rows = list(csv.DictReader(open(digits_run / "results.csv")))
    assert [(r["method"], int(r["seed"])) for r in rows] == [(m, s) for m in METHODS for s in (0, 1)]
    for r in rows:
        assert 0 <= float(r["student_acc"]) <= 100 and int(r["student_steps"]) == (6 if r["method"] == "ours" else 4)
    assert {int(r["lives"]) for r in rows if r["method"] == "ours"} == {3}   # 3 generator steps: 2 re-inits
    src = {r["method"]: r["sources"] for r in rows}
    assert src == {"dafl": "generator", "dfad": "generator", "ours": "buffer+generator", "kd_real": "real",
                   "kd_noise": "noise"}
    s = res["summary"]["dafl"]
    accs = [float(r["student_acc"]) for r in rows if r["method"] == "dafl"]
    assert s["n_seeds"] == 2 and s["student_acc_mean"] == pytest.approx(np.mean(accs))
    assert s["student_acc_std"] == pytest.approx(np.std(accs))
    assert res["gas"]["ours"]["reinit_every"] == 1 and res["gas"]["dafl"]["reinit_every"] == 0
    curves = pd.read_csv(digits_run / "curves.csv")
    assert set(curves.student_step) == {2, 4, 6} and curves.test_acc.between(0, 100).all()
    assert not list(digits_run.glob("*.part"))


def test_teacher_is_cached(digits_run, tmp_path):
    args = images.experiment_args("digits", {**TINY, "seeds": 1, "methods": ["kd_noise"],
                                         "teacher_cache": str(digits_run / "teacher_cache")})
    res = images.run_image_experiment("digits", args, tmp_path, log=lambda *_: None)
    first = json.loads((digits_run / "results.json").read_text())
    assert res["teacher"]["cached"] is True and res["teacher"]["test_acc"] == first["teacher"]["test_acc"]


def test_data_free_methods_never_touch_real_data():
    train, _ = digits_dataset(seed=0)
    guard = RealDataGuard(train)
    teacher, student = LeNet5(), LeNet5Half()
    for m in ("dafl", "dfad", "ours", "kd_noise"):
        gas = harness.method_args(m, 0, {"student_steps": 2, "batch_size": 8}, {"ours": {"reinit_every": 1}})
        res = harness.run_method(m, teacher, student, gas, guard, 8)
        assert all(r["real"] == 0 for r in res.provenance) and "real" not in res.sources_seen()
    assert guard.touches == 0 and guard.locked_by is None
    gas = harness.method_args("kd_real", 0, {"student_steps": 2, "batch_size": 8}, {})
    res = harness.run_method("kd_real", teacher, student, gas, guard, 8)
    assert guard.touches == 16 and res.sources_seen() == {"real"}
    # a data-free run that reaches for the real data is stopped: the guard raises while locked
    with guard.lock("dafl"), pytest.raises(RealDataLeak, match="dafl"):
        next(iter(torch.utils.data.DataLoader(guard, batch_size=4)))


def test_leaking_distill_is_caught(monkeypatch):
    """If distill ever fed real inputs in a data-free method, the provenance check would stop the run."""
    real = distill

    def leaky(*a, **kw):
        res = real(*a, **kw)
        res.provenance[0]["real"] = 3
        return res

    monkeypatch.setattr(harness, "distill", leaky)
    gas = harness.method_args("dafl", 0, {"student_steps": 1, "batch_size": 4}, {})
    with pytest.raises(RealDataLeak, match="fed 3 real inputs"):
        harness.run_method("dafl", LeNet5(), LeNet5Half(), gas, RealDataGuard([]), 4)


def test_per_mode_accuracy_by_hand():
    cmap = [0, 1, 0, 1]                        # digits 0, 2 -> class 0; 1, 3 -> class 1
    orig = torch.tensor([0, 0, 2, 2, 2, 1, 3, 3])
    pred = torch.tensor([0, 1, 0, 0, 1, 1, 0, 0])
    acc = images.per_mode_accuracy(pred, orig, cmap)
    assert acc == {0: 50.0, 1: 100.0, 2: pytest.approx(200 / 3), 3: 0.0}


def test_missing_dataset_message(tmp_path):
    why = images.missing_dataset("mnist", str(tmp_path))
    assert why.startswith("dataset unavailable (expected") and str(tmp_path / "MNIST/raw") in why
    assert "torchvision.datasets.MNIST" in why and "download=True" in why
    assert images.missing_dataset("digits", str(tmp_path)) is None
    with pytest.raises(FileNotFoundError, match="experiment 'mnist' cannot run: dataset unavailable"):
        gr.main(["--experiment", "mnist", "--out", str(tmp_path / "o"), "--args", json.dumps({"data_dir": str(tmp_path)})])
    assert not (tmp_path / "o").exists()


def test_bad_keys_are_named():
    with pytest.raises(KeyError, match="student_stepz"):
        images.experiment_args("digits", {"gas": {"student_stepz": 3}})
    with pytest.raises(ValueError, match="unknown method"):
        images.experiment_args("digits", {"methods": ["dafl", "gan"]})


def _hand_results(tmp_path):
    rows = [{"method": m, "seed": s, "student_acc": a, **{f"mode_acc_{d}": v for d, v in enumerate(modes)}}
            for m, s, a, modes in [("dafl", 0, 60.0, [100, 0, 100, 0]), ("dafl", 1, 70.0, [100, 20, 80, 0]),
                                   ("ours", 0, 80.0, [100, 60, 100, 40]), ("ours", 1, 90.0, [100, 80, 100, 60])]]
    res = {"experiment": "toy", "args": {"methods": ["dafl", "ours"], "class_map": [0, 0, 1, 1]},
           "teacher": {"test_acc": 95.0, "mode_acc": {"0": 100.0, "1": 90.0, "2": 95.0, "3": 85.0}},
           "gas": {"dafl": {"student_steps": 7}, "ours": {"student_steps": 7}},
           "summary": harness.summarise(rows, "student_acc"), "rows": rows}
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy/results.json").write_text(json.dumps(res))
    return {"toy": {"dataset": "mnist", "student_steps": 7, "seeds": 2, "not_run": None},
            "cifar": {"dataset": "cifar10", "student_steps": 7, "seeds": 2, "not_run": "dataset unavailable (x)"}}


def test_image_and_modes_tables_on_hand_made_results(tmp_path):
    plan = _hand_results(tmp_path)
    t = gt.image_table(tmp_path, plan, load_reported(REPORTED))
    dafl = t[(t.experiment == "toy") & (t.method == "DAFL")].iloc[0]
    assert dafl.published == 98.20 and dafl.ours_mean == 65.0 and dafl.ours_std == 5.0 and dafl.ours_best == 70.0
    assert dafl.ours_min == 60.0 and dafl.n_seeds == 2 and dafl.ratio == pytest.approx(65.0 / 98.20)
    # 2 seeds: each seed and their mean [min, max], no IQM or interval (issue 15); the teacher: its one accuracy
    assert dafl["ours mean [min, max]"] == "65.0 [60, 70]" and dafl["ours per seed"] == "60, 70"
    assert t[(t.experiment == "toy") & (t.method == "teacher")].iloc[0]["ours mean [min, max]"] == "95"
    assert not any("IQM" in c for c in t.columns)
    assert list(t[t.experiment == "toy"].method) == ["teacher", "DAFL", "ours (re-init + exemplar buffer)"]
    cifar = t[(t.experiment == "cifar") & (t.method == "DFAD (adversarial only)")].iloc[0]
    assert cifar.published == 93.3 and cifar.ours_mean == "not run: dataset unavailable (x)" and cifar.n_seeds == 0
    md = gt.images_markdown(t, "smoke", plan)
    assert "published baselines DAFL / DFAD" in md and "not run: dataset unavailable (x)" in md
    assert "no IQM or bootstrap interval" in md and "none would be one" not in md
    m = gt.modes_table(tmp_path, plan).set_index("method")
    assert list(m.columns[2:6]) == ["c0: 0", "c0: 1", "c1: 2", "c1: 3"]
    assert m.loc["DAFL", "c0: 1"] == 10.0 and m.loc["DAFL", "worst_mode"] == 0.0
    assert m.loc["DAFL", "modes_recovered"] == "2/4" and m.loc["ours (re-init + exemplar buffer)", "modes_recovered"] == "4/4"
    assert m.loc["teacher", "c1: 3"] == 85.0
    gt.plot_images(t, tmp_path, tmp_path / "i.png", "t")
    gt.plot_modes(gt.modes_table(tmp_path, plan), tmp_path / "m.png", "t")
    assert (tmp_path / "i.png").stat().st_size > 1000 and (tmp_path / "m.png").stat().st_size > 1000


def test_policy_table_normalises_by_teacher_and_random():
    rows = [{"method": "teacher", "seed": 0, "score": 10.0}, {"method": "random", "seed": 0, "score": 2.0},
            {"method": "ours", "seed": 0, "score": 4.0, "student_steps": 5, "agreement": 40.0},
            {"method": "ours", "seed": 1, "score": 8.0, "student_steps": 5, "agreement": 60.0}]
    res = {"game": "MinAtar/Breakout", "args": {"methods": ["ours"]}, "teacher": {"score": 10.0},
           "random": {"score": 2.0}, "summary": harness.summarise(rows, "score"),
           "agreement": harness.summarise(rows[2:], "agreement"), "rows": rows}
    t = gt.policy_table([res]).set_index("method")
    ours = t.loc["ours (re-init + exemplar buffer)"]
    assert ours.score_mean == 6.0 and ours.normalised == pytest.approx(0.5) and ours.agreement_mean == 50.0
    assert t.loc["teacher", "normalised"] == 1.0 and t.loc["random policy", "normalised"] == 0.0
    assert ours["score mean [min, max]"] == "6.0 [4, 8]" and ours["score per seed"] == "4, 8"
    assert t.loc["random policy", "score mean [min, max]"] == "2"


def test_frame_map_crops_and_scales():
    side, c, f = frame_map((4, 10, 10), 1.0)
    assert side == 12 and c == 4
    g = torch.zeros(2, 4, 12, 12, requires_grad=True)
    x = f(g)
    assert x.shape == (2, 4, 10, 10) and torch.allclose(x, torch.full_like(x, 0.5))
    x.sum().backward()
    assert g.grad[:, :, 0].abs().sum() == 0 and g.grad[:, :, 1:11, 1:11].abs().min() > 0
    side, _, f = frame_map((4, 84, 84), 255.0)
    assert side == 84 and f(torch.full((1, 4, 84, 84), 50.0)).max() == pytest.approx(255.0)


def test_tier_args_preset_overrides_win_seeds_included():
    config = {"device": "cpu", "gan_simulator": {
        "seeds": 3, "gas": {"student_steps": 50, "batch_size": 64}, "args": {"teacher_epochs": 5},
        "overrides": {"digits_modes": {"seeds": 1, "gas": {"batch_size": 32}, "methods": ["dafl"]}}}}
    a = tier_image_args(config, "digits_modes")
    assert a["seeds"] == 1 and a["gas"] == {"student_steps": 50, "batch_size": 32} and a["methods"] == ["dafl"]
    assert tier_image_args(config, "digits")["seeds"] == 3  # no override: the tier's seeds
    assert tier_plan({**config, "gan_simulator": {**config["gan_simulator"], "images": ["digits_modes"]}}
                        )["digits_modes"]["seeds"] == 1


def test_progress_log_prints_step_share_and_eta():
    import io

    buf = io.StringIO()
    log = harness.progress_log("digits dafl seed 0", 200, out=buf)
    log({"student_step": 50, "test_acc": 61.25, "loss_student": 0.5, "loss_generator": None})
    line = buf.getvalue()
    assert line.startswith("[digits dafl seed 0] student step 50/200 (25%)") and "ETA" in line
    assert "test_acc 61.2" in line and "loss_student 0.5" in line and "loss_generator" not in line
