"""cA3C runs (papers/cdrl/train.py, alignment.py, plan.py, tables.py): the runner on tiny budgets, determinism,
the learner's gae_loss switch, the 42x42 crop protocol, and the plan/table functions on hand-worked inputs."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from common.a2c import A2CArgs, load_policy, train
from common.envs import AtariProtocol, make_vec_env
from common.report import load_reported
from common.nets import make_net
from papers.cdrl import plan
from papers.cdrl.alignment import AlignArgs
from papers.cdrl.alignment import run as alignment_run
from papers.cdrl.method import CA3CArgs, CA3CHook
from papers.cdrl.tables import last100_table, last_n_mean, summary_row, teachers_line
from papers.cdrl.tables import main as tables_main
from papers.cdrl.train import PAPER_PROTOCOL, RunArgs, run

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
MINATAR = {"game": "MinAtar/Breakout", "total_steps": 320, "num_envs": 4, "n_steps": 20, "device": "cpu",
           "checkpoint_every": 0, "stats_every": 80}
EVAL = {"episodes": 1, "num_envs": 1, "max_frames": 2000}


def _curve(d):
    return pd.read_csv(d / "curve.csv").drop(columns="wall_time")


def test_runner_writes_its_files_and_same_seed_same_curve(tmp_path):
    args = RunArgs.from_dict({"method": "a3c", "a2c": {**MINATAR, "seed": 2}, "eval": EVAL})
    run(args, tmp_path / "a")
    run(args, tmp_path / "b")
    for f in ("config.json", "run.json", "curve.csv", "train_stats.csv", "model.pt", "eval.json"):
        assert (tmp_path / "a" / f).exists(), f
    pd.testing.assert_frame_equal(_curve(tmp_path / "a"), _curve(tmp_path / "b"))
    wa, wb = load_policy(tmp_path / "a/model.pt").state_dict(), load_policy(tmp_path / "b/model.pt").state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    cfg = json.loads((tmp_path / "a/config.json").read_text())["a2c"]
    assert cfg["net"] == "ca3c" and cfg["n_steps"] == 20 and cfg["loss_reduction"] == "sum" and cfg["lr"] == 1e-4
    ev = json.loads((tmp_path / "a/eval.json").read_text())
    assert ev["episodes"] == 1 and ev["protocol"]["crop_rows"] == [34, 194] and ev["protocol"]["size"] == 42


def test_distill_runs_with_a_runner_teacher(tmp_path):
    run(RunArgs.from_dict({"method": "a3c", "a2c": {**MINATAR, "seed": 5}, "eval": EVAL}), tmp_path / "t")
    for method, extra in [("kd_distill", {"align_from": 80, "distill_from": 160, "align_width": 16}),
                          ("distill_only", {"distill_from": 0})]:
        out = tmp_path / method
        run(RunArgs.from_dict({"method": method, "a2c": MINATAR, "ca3c": {"teachers": [str(tmp_path / "t")], **extra},
                               "eval": EVAL}), out)
        stats = pd.read_csv(out / "train_stats.csv")
        assert stats["phase/distill"].iloc[-1] == 1.0 and np.isfinite(stats["distill/kl"].iloc[-1])
        assert json.loads((out / "run.json").read_text())["ca3c_resolved"]["teachers"] == [str(tmp_path / "t/model.pt")]
    with pytest.raises(ValueError, match="other observations"):
        run(RunArgs.from_dict({"method": "homogeneous", "a2c": {**MINATAR, "protocol": {"frame_stack": 4}},
                               "ca3c": {"teachers": [str(tmp_path / "t")], "distill_from": 0}}), tmp_path / "bad")
    # offline F (Fig. 6a): fitted from two runs' logits, then loaded with its own (ReLU) architecture
    fit = alignment_run(AlignArgs(obs_steps=80, num_envs=4, fit_steps=20, width=16), tmp_path / "t",
                        tmp_path / "distill_only", tmp_path / "al")
    assert fit["states"] == 80 and fit["fit_states"] == 64
    dists = pd.read_csv(tmp_path / "al/action_dists.csv")
    assert list(dists.columns) == ["action", "source", "target", "aligned"] and len(dists) == 3
    assert np.allclose(dists[["source", "target", "aligned"]].sum(), 1.0, atol=1e-5)
    student = make_net("ca3c", (4, 10, 10), 3)
    hook = CA3CHook(CA3CArgs(teachers=["t"], distill_from=0, offline_alignment=str(tmp_path / "al/alignment.pt")),
                    student, [load_policy(tmp_path / "t/model.pt")])
    f = hook.alignment[0]
    assert (f.activation, f.width) == ("relu", 16) and not hook.online_alignment
    assert not any(p.requires_grad for p in f.parameters())


def test_untrained_method_saves_the_seeded_initialisation_and_evaluates_it(tmp_path):
    a2c = {**MINATAR, "seed": 7}
    run(RunArgs.from_dict({"method": "untrained", "a2c": a2c, "eval": EVAL}), tmp_path / "u")
    assert sorted(p.name for p in (tmp_path / "u").iterdir()) == ["eval.json", "model.pt", "run.json"]
    # the net an a3c run of the same arguments starts from: stop it before its first update, at its checkpoint
    from common.io import seed_everything
    env = make_vec_env("MinAtar/Breakout", 1, A2CArgs.from_dict(RunArgs.from_dict({"a2c": a2c}).a2c_args()).protocol)
    seed_everything(7)
    fresh = make_net("ca3c", env.obs_shape, env.n_actions).state_dict()
    saved = load_policy(tmp_path / "u/model.pt").state_dict()
    assert saved.keys() == fresh.keys() and all(torch.equal(saved[k], fresh[k]) for k in fresh)
    assert json.loads((tmp_path / "u/eval.json").read_text())["method"] == "untrained"
    with pytest.raises(ValueError, match="takes no teachers"):
        RunArgs.from_dict({"method": "untrained", "a2c": a2c, "ca3c": {"teachers": ["t"]}})


def test_gae_loss_off_leaves_the_agent_untouched_without_a_hook(tmp_path):
    """A2CArgs.gae_loss = False drops policy/value/entropy: with no hook loss nothing trains (Fig. 3a's knob)."""
    a = A2CArgs(**{**MINATAR, "net": "minatar", "total_steps": 160}, gae_loss=False, seed=1)
    torch.manual_seed(0)
    from common.nets import make_net

    agent = make_net("minatar", (4, 10, 10), 3)
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    train(a, tmp_path / "off", agent=agent)
    after = load_policy(tmp_path / "off/model.pt").state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert A2CArgs().gae_loss is True  # default: the ordinary learner


def test_bad_run_args_name_the_cause():
    with pytest.raises(ValueError, match="needs ca3c.teachers"):
        RunArgs.from_dict({"method": "kd_distill", "a2c": MINATAR})
    with pytest.raises(ValueError, match="drop ca3c.mode"):
        RunArgs.from_dict({"method": "kd_policy", "a2c": MINATAR, "ca3c": {"teachers": ["x"], "mode": "kd_distill"}})
    with pytest.raises(ValueError, match="takes no teachers"):
        RunArgs.from_dict({"method": "a3c", "a2c": MINATAR, "ca3c": {"teachers": ["x"]}})
    with pytest.raises(ValueError, match="crop_rows"):
        AtariProtocol.from_dict({"crop_rows": [194, 34]})


def test_bowling_and_pong_protocol():
    """The stand-ins for gym's Bowling-v0 / PongDeterministic: ale-py ROMs, 6 minimal actions, frameskip 4, no
    sticky actions, up to 30 no-ops; one 42x42 frame from screen rows 34-193 (papers/cdrl/README.md)."""
    p = AtariProtocol.from_dict(PAPER_PROTOCOL)
    assert (p.frameskip, p.repeat_action_probability, p.noop_max, p.frame_stack, p.size) == (4, 0.0, 30, 1, 42)
    assert p.crop_rows == [34, 194] and not p.clip_rewards and not p.episodic_life
    for game in ("Pong", "Bowling"):
        env = make_vec_env(game, 2, PAPER_PROTOCOL)
        obs = env.reset(0)
        assert env.n_actions == 6 and obs.shape == (2, 1, 42, 42) and obs.dtype == np.uint8
        st = env.step(np.zeros(2, dtype=np.int64))
        assert st.obs.shape == (2, 1, 42, 42)
        env.close()
    # the default protocol is untouched by the new option
    env = make_vec_env("Pong", 1)
    assert env.obs_shape == (4, 84, 84)
    env.close()


def smoke_config():
    return yaml.safe_load(open(ROOT / "config/smoke.yaml"))


def test_plan_runs_and_schedules():
    c = smoke_config()
    assert len(plan.run_seeds(c)) == len(plan.RUNS) * c["cdrl"]["seeds"]
    s = {"fig3b_until": 1_000_000, "fig4_from": 0, "fig6a_from": 0, "fig6b": [4_000_000, 6_000_000],
         "fig6c": [100_000, 1_000_000], "fig6d": [3_000_000, 4_000_000], "fig6d_until": 15_000_000}
    c["cdrl"]["schedule"], c["cdrl"]["a2c"]["total_steps"] = s, 20_000_000
    late = json.loads(plan.run_args(c, "paper", "online_late_bowling", 2, 1, "cpu"))
    assert late["method"] == "kd_distill" and late["a2c"]["game"] == "Bowling" and late["a2c"]["seed"] == 2
    assert (late["ca3c"]["align_from"], late["ca3c"]["distill_from"]) == (4_000_000, 6_000_000)
    assert late["ca3c"]["teachers"] == ["runs/paper/cdrl/expert_pong/seed100"]
    h = json.loads(plan.run_args(c, "paper", "homogeneous_pong", 0, 1, "cpu"))["ca3c"]
    assert (h["distill_from"], h["distill_until"]) == (0, 1_000_000)
    assert json.loads(plan.run_args(c, "paper", "kd_policy_bowling", 0, 1, "cpu"))["ca3c"]["use_alignment"] is False
    assert plan.teacher_inputs(c, "paper", "offline_bowling") == [
        "runs/paper/cdrl/expert_pong/seed100/model.pt", "runs/paper/cdrl/alignment/pong_to_bowling/alignment.pt"]
    assert plan.teacher_inputs(c, "paper", "a3c_bowling") == []
    col = json.loads(plan.run_args(c, "paper", "collaborative_bowling", 1, 1, "cpu"))   # Fig. 6d
    assert col["method"] == "collaborative" and col["a2c"]["game"] == "Bowling" and col["source"] == {"game": "Pong"}
    assert (col["ca3c"]["align_from"], col["ca3c"]["distill_from"], col["ca3c"]["distill_until"]) == (
        3_000_000, 4_000_000, 15_000_000) and "teachers" not in col["ca3c"]
    assert plan.teacher_inputs(c, "paper", "collaborative_bowling") == []
    assert "collaborative_bowling" in plan.FIGURES["fig6"]["runs"]
    # the Fig. 4 control: KD-policy, as 4a, from the Pong expert's initialisation (the expert's seed, no update)
    ctl = json.loads(plan.run_args(c, "paper", "kd_policy_untrained_bowling", 0, 1, "cpu"))
    kd = json.loads(plan.run_args(c, "paper", "kd_policy_bowling", 0, 1, "cpu"))
    assert ctl["ca3c"]["teachers"] == ["runs/paper/cdrl/untrained_pong/seed100"]
    assert {**ctl["ca3c"], "teachers": None} == {**kd["ca3c"], "teachers": None} and ctl["a2c"] == kd["a2c"]
    assert plan.teacher_inputs(c, "paper", "kd_policy_untrained_bowling") == [
        "runs/paper/cdrl/untrained_pong/seed100/model.pt"]
    u = json.loads(plan.untrained_args(c, "Pong", 1, "cpu"))
    assert u["method"] == "untrained" and u["a2c"] == json.loads(plan.expert_args(c, "Pong", 1, "cpu"))["a2c"]
    assert "kd_policy_untrained_bowling" in plan.FIGURES["fig4"]["runs"]
    plan.check(c)
    c["cdrl"]["schedule"]["fig6d_until"] = 3_500_000
    with pytest.raises(ValueError, match="fig6d_until"):
        plan.check(c)
    c["cdrl"]["schedule"]["fig6d_until"] = 15_000_000
    c["cdrl"]["schedule"]["fig6b"] = [6_000_000, 4_000_000]
    with pytest.raises(ValueError, match="fig6b"):
        plan.check(c)
    c["cdrl"]["schedule"]["fig6b"] = [4_000_000, 30_000_000]
    with pytest.raises(ValueError, match="never distil"):
        plan.check(c)


def test_last100_on_hand_worked_inputs():
    curve = pd.DataFrame({"env_steps": [30, 10, 20], "episode_return": [3.0, 1.0, 2.0]})
    assert last_n_mean(curve, 2) == 2.5 and last_n_mean(curve, 100) == 2.0   # games at steps 20, 30
    seeds = pd.DataFrame({"seed": [0, 1, 2], "eval": [1.0, 2.0, 3.0], "last100": [60.0, 62.0, 64.0]})
    r = summary_row("x", seeds)
    assert r["last100_mean"] == 62.0 and r["last100_sd"] == 2.0 and r["seeds"] == 3
    rep = load_reported(ROOT / "papers/cdrl/reported.csv")
    t = last100_table({"a3c_bowling": seeds}, rep, {"Pong": 19.0})
    a3c = t[t.run == "A3C (Bowling)"].iloc[0]
    assert a3c.paper == 61.48 and a3c.paper_pm == 1.48 and a3c.ratio == pytest.approx(62.0 / 61.48)
    collab = t[t.run.str.contains("collaborative")].iloc[0]
    assert collab.status == "not run" and collab.paper == 68.35 and collab.seeds == 0
    t2 = last100_table({"a3c_bowling": seeds, "collaborative_bowling": seeds.assign(last100=[68.0, 70.0, 72.0])},
                       rep, {})
    collab = t2[t2.run.str.contains("collaborative")]
    assert len(collab) == 1 and collab.iloc[0].status == "ran" and collab.iloc[0].last100_mean == 70.0
    assert collab.iloc[0].ratio == pytest.approx(70.0 / 68.35)
    assert (t[t.run.str.contains("offline")].status == "not run").all()
    assert t[t.run == "Pong expert (eval)"].iloc[0].paper == 20
    # eval over 3 seeds [1, 2, 3]: the seeds and their mean [min, max], no IQM or interval (issue 15)
    assert a3c["eval mean [min, max]"] == "2.0 [1, 3]" and a3c["eval per seed"] == "1, 2, 3"
    assert a3c["last100 per seed"] == "60, 62, 64" and not any("iqm" in c for c in t.columns)
    assert t[t.run == "Pong expert (eval)"].iloc[0]["eval mean [min, max]"] == "19"  # one score: itself


def test_figure_table_all_seeds_view_changes_with_seeds(tmp_path):
    runs = tmp_path / "runs"
    evals = {"a3c_bowling": [30.0, 20.0, 40.0], "kd_policy_bowling": [10.0, 2.0, 30.0, 1.0, 6.0]}
    for run, scores in evals.items():
        for seed, score in enumerate(scores):
            d = runs / run / f"seed{seed}"
            d.mkdir(parents=True)
            (d / "eval.json").write_text(json.dumps({"mean": score}))
            (d / "config.json").write_text(json.dumps({"a2c": {"total_steps": 100}}))
            pd.DataFrame({"env_steps": [50, 100], "episode_return": [score, score]}).to_csv(d / "curve.csv",
                                                                                          index=False)
    tables_main(["figure", "--fig", "fig4", "--runs", str(runs), "--tier", "t", "--out-md", str(tmp_path / "f.md"),
                 "--out-fig", str(tmp_path / "f.png")])
    md = (tmp_path / "f.md").read_text()
    head = "eval IQM [95% CI] (>= 5 seeds) or mean [min, max] (< 5 seeds)"
    assert f"| last100 per seed | game | status | {head} | eval per seed |" in md
    # A3C, 3 seeds: mean 30 [20, 40]; KD-policy, 5 seeds: IQM of 1, 2, 6, 10, 30 = 6 with the exact bootstrap's
    # [4/3, 70/3] (tests/test_stats.py); KD-distill: not run
    assert "| 30.0 [20, 40] | 30, 20, 40 |" in md and "| 6.0 [1.333, 23.33] | 10, 2, 30, 1, 6 |" in md
    assert "| KD-distill (4b) | 0 |" in md and "| not run | not run |" in md
    assert "no IQM or bootstrap interval" in md and "stratified-bootstrap interval" in md
    assert "(Bowling, measured)" not in md and "measured here" not in md  # no random eval given: no row


def test_figure_and_last100_carry_the_measured_random_policy(tmp_path):
    runs = tmp_path / "runs"
    for seed, score in enumerate([30.0, 20.0]):
        d = runs / "a3c_bowling" / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "eval.json").write_text(json.dumps({"mean": score}))
        (d / "config.json").write_text(json.dumps({"a2c": {"total_steps": 100}}))
        pd.DataFrame({"env_steps": [50, 100], "episode_return": [score, score]}).to_csv(d / "curve.csv", index=False)
    rnd = tmp_path / "random_bowling.json"  # as common.evaluation --policy random writes it (the fields read)
    rnd.write_text(json.dumps({"game": "Bowling", "seed": 0, "mean": 22.25, "std": 3.0, "episodes": 30}))
    tables_main(["figure", "--fig", "fig4", "--runs", str(runs), "--tier", "t", "--random", str(rnd),
                 "--out-md", str(tmp_path / "f.md"), "--out-fig", str(tmp_path / "f.png")])
    md = (tmp_path / "f.md").read_text()
    # one evaluation: its value is the cell and the 'per seed'; no last-100 (it never trained); seeds stay 2
    assert "| Random policy (Bowling, measured) | 1 |" in md and "| 22.25 | 22.25 |" in md
    assert "Bowling 22.2 over 30 games" in md and "Bowling 23.1" in md and "Seeds: up to 2 per run" in md
    rep = load_reported(ROOT / "papers/cdrl/reported.csv")
    from papers.cdrl.tables import random_rows
    t = last100_table({}, rep, {}, random_rows([rnd]))
    r = t[t.run == "Random policy (Bowling, measured)"].iloc[0]
    assert r["eval mean [min, max]"] == "22.25" and r.seeds == 1 and r.status == "ran"
    assert r.note == "uniform random actions, 30 games (Mnih et al. 2015: 23.1)" and r.last100_mean != r.last100_mean


def test_figure_caption_names_the_teachers_and_their_scores(tmp_path):
    runs = tmp_path / "runs"
    teacher = tmp_path / "expert_pong" / "seed100"
    teacher.mkdir(parents=True)
    (teacher / "eval.json").write_text(json.dumps({"game": "Pong", "mean": 1.0666, "std": 7.4383, "episodes": 30}))
    for run, seed in [("kd_policy_bowling", 0), ("kd_policy_bowling", 1), ("kd_distill_bowling", 0)]:
        d = runs / run / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "run.json").write_text(json.dumps({"ca3c": {"teachers": [str(teacher)]}}))
    (runs / "a3c_bowling" / "seed0").mkdir(parents=True)
    (runs / "a3c_bowling" / "seed0" / "run.json").write_text(json.dumps({"ca3c": {}}))
    line = teachers_line(runs, ["a3c_bowling", "kd_policy_bowling", "kd_distill_bowling"])
    assert line == (f" Teachers: {teacher} (Pong 1.1 ± 7.4 over 30 evaluation games) (the paper's experts, "
                    "Sec. 5.3: Pong 20, Bowling 60 at convergence).")   # one teacher named once
    assert teachers_line(runs, ["a3c_bowling"]) == ""
    (teacher / "eval.json").unlink()
    assert "(no eval.json)" in teachers_line(runs, ["kd_distill_bowling"])


def test_runs_in_one_job_equal_alone(tmp_path):
    """KD-distill students (LSTM net, teacher, alignment network) for three seeds in one process: each run's curve
    and student are bit-for-bit those of the run trained alone; every run is evaluated."""
    from papers.cdrl.train import main

    run(RunArgs.from_dict({"method": "a3c", "a2c": {**MINATAR, "seed": 5}, "eval": EVAL}), tmp_path / "t")
    runs = [{"method": "kd_distill", "a2c": {**MINATAR, "seed": s, "checkpoint_every": 160},
             "ca3c": {"teachers": [str(tmp_path / "t")], "align_from": 80, "distill_from": 160, "align_width": 16},
             "eval": EVAL} for s in (0, 1, 2)]
    main(["--out", *(str(tmp_path / f"group{s}") for s in (0, 1, 2)), "--args", json.dumps(runs)])
    for s, r in zip((0, 1, 2), runs):
        run(RunArgs.from_dict(r), tmp_path / f"alone{s}")
        g, a = tmp_path / f"group{s}", tmp_path / f"alone{s}"
        pd.testing.assert_frame_equal(_curve(g), _curve(a))
        wg, wa = load_policy(g / "model.pt").state_dict(), load_policy(a / "model.pt").state_dict()
        assert all(torch.equal(wg[k], wa[k]) for k in wg)
        assert json.loads((g / "eval.json").read_text())["mean"] == json.loads((a / "eval.json").read_text())["mean"]
