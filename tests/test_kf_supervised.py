"""Supervised Knowledge Flow (papers/knowledge_flow/supervised.py): Eq. 3 and Hinton KD against hand-computed
values, the export, the offline-data errors, and a tiny real run on scikit-learn's digits."""

import json
import math
import sys

import pytest
import torch

from papers.knowledge_flow.method import KFArgs, KnowledgeFlowHook, KnowledgeFlowStudent, export_student
from papers.knowledge_flow.method import trainable_parameters
from papers.knowledge_flow.supervised import (ClassifierNet, KnowledgeFlowObjective, Split, dataset, fit, hinton_kd_loss,
                                              main, make_task, supervised_kf_loss)

torch.set_num_threads(1)


def linear_net(weight, head=((1.0, 0.0), (0.0, 1.0))) -> ClassifierNet:
    """One fc layer (no bias) on a 1x1x2 'image' and a bias-free 2-class output layer."""
    net = ClassifierNet((1, 1, 2), 2, hidden=[2])
    with torch.no_grad():
        net.layers[0].weight.copy_(torch.tensor(weight))
        net.layers[0].bias.zero_()
        net.head.weight.copy_(torch.tensor(head))
        net.head.bias.zero_()
    return net


def hand_kf():
    """student z = I x, teacher z = [[0,0],[2,0]] x, Q = I, w = 0 (p_w = 1/2, 1/2)."""
    kf = KnowledgeFlowStudent(linear_net([[1.0, 0.0], [0.0, 1.0]]), [linear_net([[0.0, 0.0], [2.0, 0.0]])],
                              [{"teacher": 0, "teacher_layer": "fc1", "student_layer": "fc1"}],
                              example_obs=torch.zeros(1, 1, 1, 2))
    with torch.no_grad():
        kf.Q["fc1"][0].weight.copy_(torch.eye(2))
        kf.Q["fc1"][0].bias.zero_()
    return kf


def test_eq3_loss_by_hand():
    kf = hand_kf()
    x, y = torch.tensor([[[[1.0, 0.0]]]]), torch.tensor([1])
    hook = KnowledgeFlowHook(KFArgs(lambda1=0.2, lambda2=0.5))
    # theta_old: the same net with a zero output layer -> old logits (0, 0), q = (1/2, 1/2)
    hook.theta_old = trainable_parameters(kf)
    hook.theta_old["student.head.weight"].zero_()
    loss, logs, _ = supervised_kf_loss(kf, hook, x, y, progress=0.5)
    # student z = (1, 0), teacher z = (0, 2); mixed z = 0.5*(1,0) + 0.5*(0,2) = (0.5, 1); relu -> logits (0.5, 1)
    # CE(y=1) = log(e^0.5 + e^1) - 1 = log(1 + e^-0.5) = 0.474077
    assert logs["ce"] == pytest.approx(0.474077, abs=1e-6)
    # l_dep = -(1/L0) log p_w(student) = -log 0.5 = 0.693147 (L0 = 1); lambda1 = 0.2 * progress 0.5 = 0.1
    assert logs["kf/dep_loss"] == pytest.approx(0.693147, abs=1e-6)
    assert logs["kf/lambda1"] == pytest.approx(0.1)
    # p = softmax(0.5, 1) = (0.377541, 0.622459); KL(p || (1/2, 1/2)) = 0.377541 ln 0.755081 + 0.622459 ln 1.244919
    #   = -0.106063 + 0.136363 = 0.030300
    assert logs["kf/kl"] == pytest.approx(0.030300, abs=1e-6)
    # total = 0.474077 + 0.1 * 0.693147 + 0.5 * 0.030300 = 0.558542
    assert loss.item() == pytest.approx(0.558542, abs=1e-6)


def test_theta_old_is_the_previous_step():
    kf = hand_kf()
    before = trainable_parameters(kf)
    obj = KnowledgeFlowObjective(KFArgs(lambda1=0.2, lambda2=0.5))
    data = Split(torch.tensor([[[[1.0, 0.0]]], [[[0.0, 1.0]]]]), torch.tensor([1, 0]))
    fit(kf, data, obj, epochs=1, batch_size=2, lr=0.1, seed=0)          # exactly one step
    after = trainable_parameters(kf)
    assert all(torch.equal(obj.hook.theta_old[k], before[k]) for k in before)
    assert not torch.equal(after["student.head.weight"], before["student.head.weight"])
    assert not torch.equal(after["w.fc1"], before["w.fc1"])             # w trains (via CE: lambda1 = 0 at step 0)


def test_export_equals_mixed_net_when_student_weight_is_one():
    torch.manual_seed(0)
    student = ClassifierNet((1, 8, 8), 10, hidden=[16], convs=[[4, 3, 2]])
    teachers = [ClassifierNet((1, 8, 8), 5, hidden=[32], convs=[[6, 3, 1]]),   # 8x8 map: resized to 4x4
                ClassifierNet((1, 8, 8), 10, hidden=[8], convs=[[4, 3, 2]])]
    links = [{"teacher": m, "teacher_layer": n, "student_layer": n} for m in (0, 1) for n in ("conv1", "fc1")]
    x = torch.rand(7, 1, 8, 8)
    kf = KnowledgeFlowStudent(student, teachers, links, example_obs=x)
    plain = export_student(kf)
    assert not torch.allclose(kf(x).logits, plain(x).logits)            # uniform p_w: teachers matter
    with torch.no_grad():
        for w in kf.w.values():
            w.copy_(torch.tensor([0.0, -math.inf, -math.inf]))          # p_w = (1, 0, 0)
    assert torch.equal(kf(x).logits, export_student(kf)(x).logits)
    assert set(dict(plain.named_parameters())) == set(dict(student.named_parameters()))  # no Q, w, teacher


def test_hinton_kd_loss_by_hand():
    s, t, y = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]]), torch.tensor([0])
    # T = 2: p_t = softmax(1, 0) = (0.731059, 0.268941); p_s = softmax(0.5, 0) = (0.622459, 0.377541)
    # soft CE = 0.731059 * 0.474077 + 0.268941 * 0.974077 = 0.608548; hard CE = log(1 + e^-1) = 0.313262
    # alpha = 0.5: 0.5 * 4 * 0.608548 + 0.5 * 0.313262 = 1.373726
    assert hinton_kd_loss(t, s, y, temperature=2.0, alpha=0.5).item() == pytest.approx(1.373726, abs=1e-6)
    assert hinton_kd_loss(t, s, y, temperature=2.0, alpha=0.0).item() == pytest.approx(0.313262, abs=1e-6)


def test_missing_dataset_names_dataset_path_and_fix(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError) as e:
        dataset("mnist", tmp_path, "train")
    msg = str(e.value)
    assert "'mnist'" in msg and str(tmp_path / "MNIST" / "raw") in msg and "download=True" in msg
    with pytest.raises(FileNotFoundError, match=r"svhn.*test_32x32\.mat"):
        dataset("svhn", tmp_path, "test")
    # the data is there but torchvision is not: the error says so
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    with pytest.raises(RuntimeError, match="torchvision, which is not installed"):
        dataset("mnist", tmp_path, "train")
    with pytest.raises(ValueError, match="unknown dataset 'mnits'"):
        dataset("mnits", tmp_path)


def test_cli_stops_on_missing_data_without_writing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        main(["--experiment", "cifar10", "--out", str(out), "--args", f"{{data_dir: {tmp_path / 'none'}}}"])
    assert not out.exists()


def test_tasks_relabel_and_drop_only_from_training():
    t = make_task("digits", classes=[5, 6, 7, 8, 9])
    assert t.n_classes == 5 and set(t.test.y.tolist()) == {0, 1, 2, 3, 4} and t.in_shape == (1, 8, 8)
    w = make_task("digits", drop_train_classes=[3])
    assert 3 not in w.train.y.tolist() and 3 not in w.val.y.tolist() and 3 in w.test.y.tolist()
    assert len(w.test.y) == 539 and float(w.train.x.max()) <= 1.0


def test_tiny_digits_run_reports_test_errors(tmp_path):
    args = ("{epochs: 8, lr: 0.003, seeds: 2, lambda1_grid: [0.1], lambda2_grid: [0.01, 0.05], "
            "kd_temperature_grid: [4.0], kd_alpha_grid: [0.9]}")
    main(["--experiment", "digits_kd", "--out", str(tmp_path), "--args", args])
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["teachers"]["big"] < 30                                  # the teacher learned (chance: 90%)
    for m in ("baseline", "kd:big", "kf:big"):
        s = res["summary"][m]
        assert s["n_seeds"] == 2 and 0 <= s["test_error_mean"] < 90
    assert set(res["summary"]["kf:big"]["selected"]) == {"lambda1", "lambda2"}
    assert len(res["selection"]["kf:big"]) == 2                         # the lambda2 grid was searched
    kf_rows = [r for r in res["rows"] if r["method"] == "kf:big"]
    assert all(0 < r["independence"] < 1 and 0 <= r["test_error_mixed"] <= 100 for r in kf_rows)
    lines = (tmp_path / "results.csv").read_text().splitlines()
    assert lines[0].startswith("method,seed,") and len(lines) == 1 + 3 * 2


def test_a_run_is_a_pure_function_of_args_and_seed():
    from papers.knowledge_flow.supervised import experiment_args, run_method, train_teacher

    args = experiment_args("digits_kd", {"epochs": 2, "teachers": [{"name": "big", "net": {"hidden": [16]}}]})
    task = make_task("digits")
    teachers = {"big": train_teacher(args.teachers[0], args, task)[0]}
    a, b = (run_method("kf:big", {"lambda1": 0.1, "lambda2": 0.01}, 3, args, task, teachers) for _ in range(2))
    assert a == b


def test_pw_is_recorded_per_epoch_normalised_and_leaves_the_run_unchanged(tmp_path):
    import csv as _csv

    from papers.knowledge_flow.supervised import experiment_args, run_method, train_teacher

    args = experiment_args("digits_transfer", {"epochs": 3, "teachers": [{"name": "expert", "net": {"hidden": [16, 16]}},
                                                                         {"name": "half", "classes": [0, 1, 2, 3, 4],
                                                                          "net": {"hidden": [16, 16]}}],
                                               "student": {"hidden": [16, 16]}})
    task = make_task("digits")
    teachers = {n: train_teacher(s, args, task)[0] for n, s in zip(("expert", "half"), args.teachers)}
    log = []
    with_log = run_method("kf:expert+half", {"lambda1": 0.1, "lambda2": 0.01}, 2, args, task, teachers, log)
    assert with_log == run_method("kf:expert+half", {"lambda1": 0.1, "lambda2": 0.01}, 2, args, task, teachers)
    assert log[0]["epoch"] == 0 and log[0]["step"] == 0 and log[0]["candidate"] == "student"
    assert sorted({r["epoch"] for r in log}) == [0, 1, 2, 3]
    assert {r["candidate"] for r in log} == {"student", "teacher 0", "teacher 1"}
    assert {(r["candidate"], r["teacher"]) for r in log if r["candidate"] != "student"} == \
        {("teacher 0", "expert"), ("teacher 1", "half")}
    sums = {}
    for r in log:
        sums[(r["epoch"], r["layer"])] = sums.get((r["epoch"], r["layer"]), 0.0) + r["p_w"]
    assert len(sums) == 4 * 2 and all(abs(v - 1) < 1e-6 for v in sums.values())
    assert all(r["p_w"] == pytest.approx(1 / 3) for r in log if r["epoch"] == 0)     # w = 0: uniform
    last = [r for r in log if r["epoch"] == 3 and r["candidate"] == "student"]
    assert max(1 - r["p_w"] for r in last) == pytest.approx(with_log["independence"])
    # the program: pw.csv beside results.csv, every final kf run (each seed), none for the other methods
    main(["--experiment", "digits_kd", "--out", str(tmp_path), "--args",
          "{epochs: 2, seeds: 2, lambda1_grid: [0.1], lambda2_grid: [0.01, 0.05], kd_temperature_grid: [4.0], "
          "kd_alpha_grid: [0.9], methods: [baseline, kf:big]}"])
    rows = list(_csv.DictReader(open(tmp_path / "pw.csv")))
    assert list(rows[0]) == ["preset", "method", "seed", "epoch", "step", "layer", "candidate", "teacher", "source",
                             "p_w"]
    assert rows[0]["epoch"] == "0" and {r["preset"] for r in rows} == {"digits_kd"}
    assert {r["method"] for r in rows} == {"kf:big"} and {r["seed"] for r in rows} == {"0", "1"}
    assert len(rows) == 2 * 3 * 2 * 2                                   # seeds x (epochs + 1) x layers x candidates
    assert "pw" not in json.loads((tmp_path / "results.json").read_text())


def test_accuracy_curves_are_recorded_per_epoch_and_leave_the_run_unchanged(tmp_path):
    import csv as _csv

    from papers.knowledge_flow.supervised import experiment_args, run_method, top1_error, train_teacher

    args = experiment_args("digits_kd", {"epochs": 3, "teachers": [{"name": "big", "net": {"hidden": [16]}}],
                                         "student": {"hidden": [16]}})
    task = make_task("digits")
    teachers = {"big": train_teacher(args.teachers[0], args, task)[0]}
    for method, params in (("baseline", {}), ("kf:big", {"lambda1": 0.1, "lambda2": 0.01})):
        curve = []
        row = run_method(method, params, 1, args, task, teachers, curve_log=curve)
        assert row == run_method(method, params, 1, args, task, teachers)           # recording changes nothing
        assert [r["epoch"] for r in curve] == [0, 1, 2, 3] and curve[0]["step"] == 0
        steps_per_epoch = math.ceil(len(task.train.y) / args.batch_size)
        assert [r["step"] for r in curve] == [0, steps_per_epoch, 2 * steps_per_epoch, 3 * steps_per_epoch]
        assert all(r["method"] == method and r["seed"] == 1 for r in curve)
        if method == "baseline":                     # the last point is the final model: 100 - its test error
            assert curve[-1]["test_acc"] == pytest.approx(100 - row["test_error"]) and curve[-1]["test_acc_student"] == ""
        else:                                        # mixed net and student alone (= the exported model)
            assert curve[-1]["test_acc"] == pytest.approx(100 - row["test_error_mixed"])
            assert curve[-1]["test_acc_student"] == pytest.approx(100 - row["test_error"])
        assert curve[-1]["test_acc"] > curve[0]["test_acc"] + 20                   # it learned (chance: 10%)
    # the program writes curves.csv for every final run (each method and seed), not into results.json
    main(["--experiment", "digits_kd", "--out", str(tmp_path), "--args",
          "{epochs: 2, seeds: 2, lambda1_grid: [0.1], lambda2_grid: [0.01, 0.05], kd_temperature_grid: [4.0], "
          "kd_alpha_grid: [0.9], methods: [baseline, kf:big]}"])
    rows = list(_csv.DictReader(open(tmp_path / "curves.csv")))
    assert list(rows[0]) == ["preset", "method", "seed", "epoch", "step", "test_acc", "test_acc_student"]
    assert len(rows) == 2 * 2 * 3 and {r["preset"] for r in rows} == {"digits_kd"}    # methods x seeds x (epochs+1)
    assert "curves" not in json.loads((tmp_path / "results.json").read_text())


def test_evaluation_forwards_are_not_cached_as_rollouts():
    from papers.knowledge_flow.supervised import top1_error

    torch.manual_seed(0)
    teacher, student = ClassifierNet((1, 8, 8), 10, hidden=[8]), ClassifierNet((1, 8, 8), 10, hidden=[8])
    kf = KnowledgeFlowStudent(student, [teacher], [{"teacher": 0, "teacher_layer": "fc1", "student_layer": "fc1"}],
                              example_obs=torch.zeros(1, 1, 8, 8))
    split = Split(torch.rand(20, 1, 8, 8), torch.randint(0, 10, (20,)))
    top1_error(kf, split, batch_size=5)
    assert len(kf._rollout_z) == 4                 # the RL default: no-grad forwards are kept for the update
    kf = KnowledgeFlowStudent(student, [teacher], [{"teacher": 0, "teacher_layer": "fc1", "student_layer": "fc1"}],
                              example_obs=torch.zeros(1, 1, 8, 8), cache_rollouts=False)   # as the program builds it
    top1_error(kf, split, batch_size=5)
    assert kf._rollout_z == []
