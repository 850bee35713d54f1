"""H-PR policy distillation (papers/hpr_distillation/method.py): Eq. 4 and 5 by hand, masking, the three
architectures, the ε schedule, and tiny MinAtar runs (smoke, determinism, exact kill-and-resume)."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from common.replay import td_error_eq5
from common.zoo import train_teacher
from papers.hpr_distillation.method import (GamePolicy, HPRArgs, MultiTaskStudent, build_student, distillation_kl,
                                            epsilon_at, game_action_ids, load_student, main, measure_value_range,
                                            train)

GAMES = ["MinAtar/Breakout", "MinAtar/SpaceInvaders"]


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """Untrained (randomly initialised) SB3 DQN teachers: real zoo files, built in about a second each."""
    root = tmp_path_factory.mktemp("teachers")
    paths = []
    for g in GAMES:
        d = root / g.replace("/", "-")
        train_teacher("dqn", g, 0, "untrained", 0, d, eval_episodes=1, device="cpu",
                      overrides={"learning_starts": 200, "buffer_size": 2000, "target_update_interval": 200})
        paths.append(str(d))
    return paths


def tiny(teachers, **kw) -> dict:
    """A run of a few hundred steps per game: updates from step 64, evaluations every 25 update rounds."""
    d = {"games": GAMES, "teachers": teachers, "total_steps": 240, "learning_starts": 64, "eps_decay_steps": 200,
         "eval_every": 25, "vrange_steps": 50, "fc_sizes": [64, 32], "eval": {"steps": 60},
         "replay": {"partitions": 3, "partition_capacity": 100, "window": 100}, "checkpoint_every": 100,
         "device": "cpu", "log_interval_s": 1e9}
    d.update(kw)
    return d


def _curve(d):
    return pd.read_csv(d / "curve.csv").drop(columns="wall_time")


# -- Eq. 4 and Eq. 5 on a hand-worked example ------------------------------------------------------------
def test_kl_and_priority_by_hand():
    # 3 outputs, the game has actions 0 and 1 (output 2 is masked: its huge values must not matter).
    # tau = 0.5: q_T / tau = [2, 0] -> p_T = [e^2, 1] / (e^2 + 1) = [0.8807971, 0.1192029]
    # q_S = [0, 0] -> p_S = [0.5, 0.5]
    # KL = 0.8807971 ln(0.8807971 / 0.5) + 0.1192029 ln(0.1192029 / 0.5)
    #    = 0.8807971 * 0.5662192 + 0.1192029 * (-1.4337808) = 0.4987244 - 0.1709108 = 0.3278136
    # |delta| = (1/2) (|0.8807971 - 0.5| + |0.1192029 - 0.5|) = 0.3807971
    q_t = torch.tensor([[1.0, 0.0, 99.0]])
    q_s = torch.tensor([[0.0, 0.0, 50.0]], requires_grad=True)
    mask = np.array([True, True, False])
    kl = distillation_kl(q_t, q_s, 0.5, mask)
    assert kl.shape == (1,) and kl.item() == pytest.approx(0.3278136, abs=1e-6)
    assert td_error_eq5(q_t, q_s.detach(), 0.5, mask).item() == pytest.approx(0.3807971, abs=1e-6)
    assert td_error_eq5(q_t.numpy(), q_s.detach().numpy(), 0.5, mask)[0] == pytest.approx(0.3807971, abs=1e-6)
    # dKL/dq_S = p_S - p_T on the game's actions, exactly 0 on the masked output
    kl.sum().backward()
    assert q_s.grad[0].tolist() == pytest.approx([0.5 - 0.8807971, 0.5 - 0.1192029, 0.0], abs=1e-6)
    # no mask: all three outputs count; a student matching softmax(q_T / tau) has KL 0 and |delta| 0
    q_t2 = torch.tensor([[0.02, 0.01, 0.0]])  # / 0.01 -> [2, 1, 0]
    q_s2 = torch.tensor([[2.0, 1.0, 0.0]])
    assert distillation_kl(q_t2, q_s2, 0.01).item() == pytest.approx(0.0, abs=1e-6)
    assert td_error_eq5(q_t2, q_s2, 0.01).item() == pytest.approx(0.0, abs=1e-6)


def test_epsilon_schedule():
    assert epsilon_at(0) == 1.0
    assert epsilon_at(500_000) == pytest.approx(0.55)
    assert epsilon_at(1_000_000) == pytest.approx(0.1)
    assert epsilon_at(3_000_000) == pytest.approx(0.1)
    assert epsilon_at(5, 1.0, 0.1, 10) == pytest.approx(0.55)
    assert epsilon_at(7, 1.0, 0.1, 0) == 0.1


# -- actions and masking -----------------------------------------------------------------------------------
def test_game_action_ids():
    assert game_action_ids("MinAtar/Breakout").tolist() == [0, 1, 3]             # n, l, r
    assert game_action_ids("MinAtar/SpaceInvaders").tolist() == [0, 1, 3, 5]     # n, l, r, f
    assert game_action_ids("Breakout").tolist() == [0, 1, 3, 4]                  # NOOP, FIRE, RIGHT, LEFT
    assert game_action_ids("Pong", full_action_space=True).tolist() == list(range(18))


def test_masked_actions_are_never_chosen():
    torch.manual_seed(0)
    student = MultiTaskStudent("amn", [(4, 10, 10)], 6, [[(16, 3, 1)]], [8], 1.0)
    with torch.no_grad():
        student.fcs[0][-1].bias[[2, 4]] = 1e6  # outputs the game lacks: by far the largest Q
    policy = GamePolicy(student, 0, [0, 1, 3])
    obs = torch.randint(0, 2, (64, 4, 10, 10), dtype=torch.uint8)
    q = policy(obs).logits
    assert q.shape == (64, 3)
    assert torch.equal(q, student(obs, 0)[:, [0, 1, 3]])
    assert set(q.argmax(-1).tolist()) <= {0, 1, 2}  # env actions: indices into the game's own action list
    # in the loss the masked outputs get zero probability: their values change nothing
    q_t = torch.randn(64, 6)
    mask = np.array([1, 1, 0, 1, 0, 0], bool)
    q_s = student(obs, 0)
    q_s2 = q_s.clone()
    q_s2[:, [2, 4, 5]] = -3.0
    assert torch.allclose(distillation_kl(q_t, q_s, 0.01, mask), distillation_kl(q_t, q_s2, 0.01, mask))


# -- architectures -----------------------------------------------------------------------------------------
def _grads_of(student, task):
    student.zero_grad(set_to_none=True)
    student(torch.ones(2, *student.obs_shapes[task], dtype=torch.uint8), task).sum().backward()
    return {n for n, p in student.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


@pytest.mark.parametrize("arch,n_convs,n_fcs", [("proposed", 2, 1), ("dist", 1, 2), ("amn", 1, 1)])
def test_architectures_share_what_the_paper_says(arch, n_convs, n_fcs):
    torch.manual_seed(0)
    shapes = [(4, 10, 10), (6, 10, 10)]  # MinAtar Breakout, SpaceInvaders: different channel counts
    s = MultiTaskStudent(arch, shapes, 6, [[(16, 3, 1)]] * 2, [32, 16], 1.0)
    assert (len(s.convs), len(s.fcs)) == (n_convs, n_fcs)
    for task, shape in enumerate(shapes):
        assert s(torch.zeros(3, *shape, dtype=torch.uint8), task).shape == (3, 6)
    g0, g1 = _grads_of(s, 0), _grads_of(s, 1)
    conv0 = {n for n in g0 if n.startswith("convs.")}
    fc0 = {n for n in g0 if n.startswith("fcs.")}
    if arch == "proposed":   # task convs differ, FC layers shared
        assert s.convs[0][0].in_channels == 4 and s.convs[1][0].in_channels == 6
        assert all(n.startswith("convs.0.") for n in conv0)
        assert all(n.startswith("convs.1.") for n in g1 if n.startswith("convs."))
        assert fc0 == {n for n in g1 if n.startswith("fcs.")} and all(n.startswith("fcs.0.") for n in fc0)
    elif arch == "dist":     # convs shared (input padded to 6 channels), FC + output layer per task
        assert s.convs[0][0].in_channels == 6
        assert all(n.startswith("fcs.0.") for n in fc0) and all(n.startswith("fcs.1.") for n in g1 if "fcs" in n)
        assert conv0 == {n for n in g1 if n.startswith("convs.")}
    else:                    # everything shared
        assert g0 == g1 == {n for n, _ in s.named_parameters()}


def test_proposed_atari_sizes():
    s = MultiTaskStudent("proposed", [(4, 84, 84)] * 2, 18, [[(32, 8, 4), (64, 4, 2), (64, 3, 1)]] * 2,
                         [1028, 512], 1 / 255)
    assert s.feature_dim == 3136  # the paper's task-specific input features
    assert [m.out_features for m in s.fcs[0] if isinstance(m, torch.nn.Linear)] == [1028, 512, 18]
    assert s(torch.zeros(2, 4, 84, 84, dtype=torch.uint8), 1).shape == (2, 18)


def test_task_convs_come_from_the_teachers(teachers):
    from common.zoo import load_teacher

    ts = [load_teacher(p) for p in teachers]
    obs = [torch.randint(0, 2, (5, *t.obs_shape), dtype=torch.uint8) for t in ts]
    for mode, trainable in (("teacher_frozen", False), ("teacher_finetune", True)):
        args = HPRArgs.from_dict({"games": GAMES, "arch": "proposed", "task_convs": mode})
        s = build_student(args, [t.obs_shape for t in ts], 6, ts)
        for g, t in enumerate(ts):  # student features = the teacher's last conv activation, flattened
            want = torch.relu(t.forward_preacts(obs[g])[0]).flatten(1)
            assert torch.allclose(s.features(obs[g], g), want, atol=1e-6)
        assert all(p.requires_grad == trainable for p in s.convs.parameters())
        assert all(p.requires_grad for p in s.fcs.parameters())
    s = build_student(HPRArgs.from_dict({"games": GAMES, "task_convs": "random"}), [t.obs_shape for t in ts], 6, ts)
    assert not torch.allclose(s.features(obs[0], 0), torch.relu(ts[0].forward_preacts(obs[0])[0]).flatten(1))


def test_value_range_from_teacher_play(teachers):
    from common.zoo import load_teacher

    t = load_teacher(teachers[0])
    v_min, v_max = measure_value_range(t, GAMES[0], {}, 30, 0.05, seed=1)
    assert v_min < v_max and (v_min, v_max) == measure_value_range(t, GAMES[0], {}, 30, 0.05, seed=1)


def test_bad_args_are_clear_errors():
    with pytest.raises(KeyError, match="did you mean 'total_steps'"):
        HPRArgs.from_dict({"total_step": 10})
    with pytest.raises(ValueError, match="shares its convs"):
        HPRArgs.from_dict({"arch": "dist", "task_convs": "teacher_frozen"})
    with pytest.raises(ValueError, match="mixes MinAtar and Atari"):
        HPRArgs.from_dict({"games": ["Pong", "MinAtar/Breakout"]})
    with pytest.raises(ValueError, match="one DQN teacher per game"):
        HPRArgs.from_dict({"games": GAMES, "teachers": ["a"]})
    with pytest.raises(KeyError, match="replay"):
        HPRArgs.from_dict({"replay": {"partition": 5}})


# -- end to end --------------------------------------------------------------------------------------------
def test_cli_run_writes_curve_model_and_eval(teachers, tmp_path):
    main(["--out", str(tmp_path), "--args", json.dumps(tiny(teachers))])
    c = pd.read_csv(tmp_path / "curve.csv")
    # learning from step 64, one update round every 4 steps: rounds at steps 64, 68, ..., 240 = 45 rounds;
    # evaluations after round 25 (step 64 + 24 * 4 = 160) and at the end (round 45)
    assert c["game"].tolist() == GAMES * 2
    assert c["updates"].tolist() == [25, 25, 45, 45] and c["env_steps"].tolist() == [160, 160, 240, 240]
    assert (c["eval_episodes"] > 0).all() and np.isfinite(c["train_kl"]).all()
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert all(lo < hi for lo, hi in cfg["v_ranges"]) and cfg["action_ids"] == [[0, 1, 3], [0, 1, 3, 5]]
    student, meta = load_student(tmp_path / "model.pt")
    assert meta["games"] == GAMES and student(torch.zeros(1, 6, 10, 10), 1).shape == (1, 6)
    ev = json.loads((tmp_path / "eval.json").read_text())
    assert set(ev["games"]) == set(GAMES) and not (tmp_path / "checkpoint.pt").exists()


@pytest.mark.parametrize("arch,kind", [("dist", "uniform"), ("amn", "rank")])
def test_baselines_run(teachers, tmp_path, arch, kind):
    res = train(HPRArgs.from_dict(tiny(teachers, arch=arch, replay={"kind": kind, "capacity": 200},
                                       total_steps=120, checkpoint_every=0)), tmp_path)
    assert res["updates"] == 15 and len(pd.read_csv(tmp_path / "curve.csv")) == 2


def test_same_seed_same_curve_and_exact_resume(teachers, tmp_path):
    full, again, cut = tmp_path / "full", tmp_path / "again", tmp_path / "cut"
    train(HPRArgs.from_dict(tiny(teachers, seed=3)), full)
    train(HPRArgs.from_dict(tiny(teachers, seed=3)), again)
    pd.testing.assert_frame_equal(_curve(full), _curve(again))
    # "kill" the job at step 170 (past the checkpoint boundary at step 100 and the evaluation at step 160) ...
    assert train(HPRArgs.from_dict(tiny(teachers, seed=3)), cut, stop_after_steps=170) == {"stopped_at_step": 170}
    assert (cut / "checkpoint.pt").exists() and not (cut / "curve.csv").exists()
    # ... and rerun: it resumes from step 100 and ends exactly where the uninterrupted run did
    train(HPRArgs.from_dict(tiny(teachers, seed=3)), cut)
    pd.testing.assert_frame_equal(_curve(full), _curve(cut))
    wf, wc = load_student(full / "model.pt")[0].state_dict(), load_student(cut / "model.pt")[0].state_dict()
    assert all(torch.equal(wf[k], wc[k]) for k in wf)
    assert math.isfinite(_curve(full)["eval_score"].sum())
    # a checkpoint is resumed only with the arguments that wrote it
    train(HPRArgs.from_dict(tiny(teachers, seed=3)), tmp_path / "other", stop_after_steps=150)
    with pytest.raises(ValueError, match="seed differ"):
        train(HPRArgs.from_dict(tiny(teachers, seed=4)), tmp_path / "other")
