"""Knowledge Flow runs through the CLI (papers/knowledge_flow/train.py) with real zoo teachers."""

import csv
import json

import pytest
import torch

from common.a2c import load_policy
from common.nets import A3CNet, MinAtarNet, NatureNet
from common.zoo import load_teacher, train_teacher
from papers.knowledge_flow.train import RunArgs, auto_links, main

GAME = "MinAtar/Breakout"
A2C = {"game": GAME, "net": "minatar", "num_envs": 4, "total_steps": 800, "device": "cpu",
       "checkpoint_every": 0, "stats_every": 200, "log_interval_s": 1e9, "seed": 3}


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    root = tmp_path_factory.mktemp("teachers")
    trained, untrained = root / "ppo" / "expert", root / "ppo" / "untrained"
    train_teacher("ppo", GAME, 0, "expert", 500, trained, overrides={"n_envs": 2, "n_steps": 64, "batch_size": 64},
                  eval_episodes=1)
    train_teacher("ppo", GAME, 1, "untrained", 0, untrained, overrides={"n_envs": 2}, eval_episodes=1)
    return str(trained), str(untrained)


def test_auto_links_same_and_nature_architecture():
    a3c = A3CNet((4, 84, 84), 4)
    assert auto_links([a3c], a3c.layer_names) == [
        {"teacher": 0, "teacher_layer": n, "student_layer": n} for n in ("conv1", "conv2", "fc")]
    nature = NatureNet((4, 84, 84), 4)
    got = {(d["teacher"], d["teacher_layer"], d["student_layer"]) for d in auto_links([a3c, nature], a3c.layer_names)}
    assert {(1, "conv1", "conv1"), (1, "conv3", "conv2"), (1, "fc", "fc")} <= got and len(got) == 6
    with pytest.raises(ValueError, match="no default map"):
        auto_links([MinAtarNet((4, 10, 10), 3)], a3c.layer_names)


def test_bad_run_args_are_named():
    with pytest.raises(KeyError, match="lambda_1.*did you mean 'lambda1'"):
        RunArgs.from_dict({"kf": {"lambda_1": 0.1, "teachers": ["x"]}, "a2c": {}})
    with pytest.raises(ValueError, match="finetune_from"):
        RunArgs.from_dict({"method": "finetune", "a2c": {}})
    with pytest.raises(ValueError, match="method kf needs kf.teachers"):
        RunArgs.from_dict({"method": "kf", "a2c": {}})
    with pytest.raises(ValueError, match="method must be one of"):
        RunArgs.from_dict({"method": "distral"})


def test_kf_run_two_teachers(tmp_path, teachers):
    args = {"method": "kf", "a2c": A2C, "kf": {"lambda1": 0.5, "lambda2": 0.01, "teachers": list(teachers)}}
    main(["--out", str(tmp_path), "--args", json.dumps(args)])
    final = json.loads((tmp_path / "final.json").read_text())
    # candidates per student layer: student + both teachers; p_w sums to 1
    for layer in ("conv1", "fc"):
        pw = [final["pw"][f"pw/{layer}/{c}"] for c in ("student", "t0.conv1" if layer == "conv1" else "t0.fc",
                                                        "t1.conv1" if layer == "conv1" else "t1.fc")]
        assert sum(pw) == pytest.approx(1.0, abs=1e-6)
        assert final["independence"][layer] == pytest.approx(1 - pw[0], abs=1e-6)
    assert final["independence"]["max"] == max(final["independence"][l] for l in ("conv1", "fc"))
    assert final["lambda1"] == 0.5 and final["lambda2"] == 0.01
    rows = list(csv.DictReader(open(tmp_path / "train_stats.csv")))
    assert len(rows) == 4 and "pw/fc/t1.fc" in rows[0]                # p_w over training (Fig. 1c / 7)
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["method"] == "kf" and len(run["links"]) == 4
    # the saved model is the independent student: a plain MinAtar net, no teacher, Q or w
    net = load_policy(tmp_path / "model.pt")
    assert isinstance(net, MinAtarNet)
    assert not any(k.startswith(("teachers", "Q", "w")) for k in net.state_dict())


def test_finetune_starts_from_the_teacher(tmp_path, teachers):
    a2c = dict(A2C, total_steps=20, num_envs=4, n_steps=5, lr=1e-12, lr_decay=False)  # one update, ~no change
    args = {"method": "finetune", "a2c": a2c, "finetune_from": teachers[0]}
    main(["--out", str(tmp_path), "--args", json.dumps(args)])
    net, teacher = load_policy(tmp_path / "model.pt"), load_teacher(teachers[0]).as_net()
    for (k, a), b in zip(net.state_dict().items(), teacher.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=k)    # same action set: heads kept
    assert json.loads((tmp_path / "run.json").read_text())["new_head"] is False


def test_missing_teacher_is_a_clear_error(tmp_path):
    args = {"method": "kf", "a2c": A2C, "kf": {"teachers": [str(tmp_path / "ppo/MinAtar-Breakout/expert/seed0")]}}
    with pytest.raises(FileNotFoundError, match="train it with"):
        main(["--out", str(tmp_path / "run"), "--args", json.dumps(args)])
    assert not (tmp_path / "run" / "curve.csv").exists()


def test_plan_table2_runs_and_args():
    import yaml

    from papers.knowledge_flow import plan
    from papers.knowledge_flow.method import sample_lambdas

    cfg = yaml.safe_load(open("config/default.yaml"))
    # the paper's Table 2 teachers: 10 experts of their own games
    table2_teachers = {g for game in cfg["knowledge_flow"]["table2"] for m in plan.TABLE2
                       for g in plan.teacher_games(cfg, m, game)}
    assert table2_teachers == {"Alien", "BankHeist", "Breakout", "ChopperCommand", "Hero",
                               "KungFuMaster", "MsPacman", "Pong", "Seaquest", "SpaceInvaders"}
    assert set(plan.all_teacher_games(cfg)) == table2_teachers | {"Riverraid"}   # + Table 1 / ablations
    cells = plan.runs(cfg)
    assert {(m, g) for m in ["baseline", *plan.TABLE2] for g in cfg["knowledge_flow"]["table2"]} <= set(cells)
    a = json.loads(plan.run_args(cfg, "default", "kf_non_expert", "KungFuMaster", 7, 1, "cpu"))
    assert a["method"] == "kf" and a["a2c"]["seed"] == 7 and a["a2c"]["game"] == "KungFuMaster"
    assert a["kf"]["teachers"] == ["teachers/default/ppo/Seaquest/expert/seed0", "teachers/default/ppo/Hero/expert/seed0"]
    assert (a["kf"]["lambda1"], a["kf"]["lambda2"]) == sample_lambdas(7, [0.05, 0.1, 0.5], [0.001, 0.01, 0.05])
    f = json.loads(plan.run_args(cfg, "default", "finetune", "Alien", 0, 1, "cpu"))
    assert f == {"method": "finetune", "a2c": f["a2c"], "finetune_from": "teachers/default/ppo/BankHeist/expert/seed0"}
    assert "kf" not in json.loads(plan.run_args(cfg, "default", "baseline", "Alien", 0, 1, "cpu"))
    cfg["knowledge_flow"]["table2"]["Alien"].pop("finetune")
    with pytest.raises(KeyError, match="table2.Alien lacks"):
        plan.check(cfg)


def test_plan_table2_methods_trains_only_the_chosen_columns():
    import yaml

    from papers.knowledge_flow import plan

    cfg = yaml.safe_load(open("config/recorded/kf-minatar-2core.yaml"))
    # one claim's arms: the baseline and KF w/ expert on MinAtar Asterix, 3 seeds each, and the two A2C teachers
    assert plan.runs(cfg) == [("baseline", "MinAtar/Asterix"), ("kf_expert", "MinAtar/Asterix")]
    assert sorted(plan.run_seeds(cfg)) == [(m, "MinAtar/Asterix", s) for m in ("baseline", "kf_expert") for s in range(3)]
    assert plan.all_teachers(cfg) == [("MinAtar/Asterix", "expert", "a2c"), ("MinAtar/Breakout", "expert", "a2c")]
    cfg["knowledge_flow"]["table2_methods"] = ["kf_expert", "kf_experts"]
    with pytest.raises(ValueError, match=r"table2_methods: unknown \['kf_experts'\]"):
        plan.check(cfg)


def test_sampled_lambdas_cover_the_grid_and_are_seeded():
    from papers.knowledge_flow.method import sample_lambdas

    draws = [sample_lambdas(s, [0.05, 0.1, 0.5], [0.001, 0.01, 0.05]) for s in range(200)]
    assert draws == [sample_lambdas(s, [0.05, 0.1, 0.5], [0.001, 0.01, 0.05]) for s in range(200)]
    assert {d[0] for d in draws} == {0.05, 0.1, 0.5} and {d[1] for d in draws} == {0.001, 0.01, 0.05}
    assert len(set(draws)) == 9   # every pair of the 3 x 3 grid occurs


def test_w_lr_scale_gives_the_mixing_logits_their_own_rate(tmp_path):
    from common.a2c import A2CArgs, train
    from papers.knowledge_flow.method import KFArgs, KnowledgeFlowHook, KnowledgeFlowStudent

    def run(scale):
        torch.manual_seed(0)
        kf = KnowledgeFlowStudent(MinAtarNet((4, 10, 10), 3), [MinAtarNet((4, 10, 10), 3).requires_grad_(False)],
                                  [{"teacher": 0, "teacher_layer": "fc", "student_layer": "fc"}])
        hook = KnowledgeFlowHook(KFArgs(lambda1=0.5, lambda2=0.0, w_lr_scale=scale))
        args = A2CArgs(**{**A2C, "total_steps": 400, "lr": 1e-3, "stats_every": 20})
        train(args, tmp_path / str(scale), agent=kf, hook=hook)
        return kf, list(csv.DictReader(open(tmp_path / str(scale) / "train_stats.csv")))

    kf1, _ = run(1.0)
    kf10, rows = run(10.0)
    # 20 updates; Adam moves each logit by at most ~lr_t per update: |w| <= sum_t lr_t * scale
    cap = sum(1e-3 * (1 - t / 20) for t in range(20))
    assert kf1.w["fc"].abs().max() <= cap * 1.01
    assert kf10.w["fc"].abs().max() > 2 * cap   # only reachable with the larger rate
    assert float(rows[0]["lr"]) == pytest.approx(1e-3)  # the student's own rate is unchanged
    with pytest.raises(ValueError, match="w_lr_scale"):
        KFArgs.from_dict({"w_lr_scale": 0.0})


def test_plan_experiments_share_runs_and_override_lambdas():
    import yaml

    from papers.knowledge_flow import plan

    cfg = yaml.safe_load(open("config/default.yaml"))
    cells = plan.runs(cfg)
    assert len(cells) == len(set(cells))
    # kf_seaquest_riverraid serves Table 1, Figs. 8, 9 and 10: one run per game, not one per experiment
    games = [g for m, g in cells if m == "kf_seaquest_riverraid"]
    assert sorted(games) == sorted(set(games)) and {"Hero", "MsPacman", "Gopher"} <= set(games)
    nokl = json.loads(plan.run_args(cfg, "default", "kf_seaquest_riverraid_nokl", "Boxing", 4, 1, "cpu"))
    assert nokl["kf"]["lambda2"] == 0.0 and nokl["kf"]["lambda1"] == plan.lambdas(cfg, 4)[0]
    assert json.loads(plan.run_args(cfg, "default", "kf_riverraid_ema", "Boxing", 0, 1, "cpu"))["kf"]["theta_old"] == "ema"
    assert plan.teacher_dirs(cfg, "default", "kf_untrained", "Hero") == [
        "teachers/default/ppo/Seaquest/untrained/seed0", "teachers/default/ppo/Riverraid/untrained/seed0"]
    assert plan.teacher_dirs(cfg, "default", "kf_seaquest_riverraid_nature", "Gopher")[0] == \
        "teachers/default/a2c/Seaquest/expert/seed0"
    # seeds: Table 2 / Table 1 cells at 5, ablation-only cells at 3
    seeds = plan.run_seeds(cfg)
    assert max(s for m, g, s in seeds if (m, g) == ("kf_untrained", "Hero")) == 2
    assert max(s for m, g, s in seeds if (m, g) == ("kf_seaquest_riverraid", "Hero")) == 4
    # a shared run name with two different specs is refused
    cfg["knowledge_flow"]["experiments"]["fig9_no_kl"]["runs"]["kf_seaquest_riverraid"]["kind"] = "untrained"
    with pytest.raises(ValueError, match="differs from another experiment's run of the same name"):
        plan.check(cfg)


def test_table7_not_run_lists_the_paper_rows_and_says_why(tmp_path):
    from papers.knowledge_flow.tables import main as tables_main

    rep = "papers/knowledge_flow/reported.csv"
    out = dict(csv=tmp_path / "t7.csv", md=tmp_path / "t7.md")
    tables_main(["not_run", "--table", "Table 7", "--reason", "Distral is not implemented", "--tier", "t",
                 "--reported", rep, "--out-csv", str(out["csv"]), "--out-md", str(out["md"])])
    rows = list(csv.DictReader(open(out["csv"])))
    assert len(rows) == 6  # 3 task triples x (Distral, Ours), Table 7 p.14
    first = rows[0]
    assert (first["row"], first["column"], first["paper"]) == ("KungFuMaster+Hero+Seaquest", "Distral", "27433")
    assert all(r["ours"] == "not run: Distral is not implemented" for r in rows)
    with pytest.raises(SystemExit, match="no rows of table 'Table 9'"):
        tables_main(["not_run", "--table", "Table 9", "--reason", "x", "--tier", "t", "--reported", rep,
                     "--out-csv", str(tmp_path / "x.csv"), "--out-md", str(tmp_path / "x.md")])
    assert not (tmp_path / "x.csv").exists()


def test_kf_runs_in_one_job_equal_alone(tmp_path, teachers):
    """Three seeds (different lambdas, like the pipeline's per-seed draws) in one process, sharing their teachers:
    each run's curve, statistics and student are bit-for-bit those of the same run trained alone."""
    import pandas as pd

    runs = [{"method": "kf", "a2c": {**A2C, "seed": s, "checkpoint_every": 400},
             "kf": {"lambda1": 0.5 / (s + 1), "lambda2": 0.01, "teachers": list(teachers)}} for s in (0, 1, 2)]
    main(["--out", *(str(tmp_path / f"group{s}") for s in (0, 1, 2)), "--args", json.dumps(runs)])
    for s, r in zip((0, 1, 2), runs):
        main(["--out", str(tmp_path / f"alone{s}"), "--args", json.dumps(r)])
        g, a = tmp_path / f"group{s}", tmp_path / f"alone{s}"
        for f in ("curve.csv", "train_stats.csv"):
            pd.testing.assert_frame_equal(pd.read_csv(g / f).drop(columns="wall_time", errors="ignore"),
                                          pd.read_csv(a / f).drop(columns="wall_time", errors="ignore"))
        wg, wa = load_policy(g / "model.pt").state_dict(), load_policy(a / "model.pt").state_dict()
        assert all(torch.equal(wg[k], wa[k]) for k in wg)
        assert json.loads((g / "final.json").read_text()) == json.loads((a / "final.json").read_text())
    with pytest.raises(ValueError, match="2 run directories for 3 runs"):
        main(["--out", str(tmp_path / "x"), str(tmp_path / "y"), "--args", json.dumps(runs)])
