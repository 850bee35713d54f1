"""cA3C collaborative mode (papers/cdrl/collaborative.py, Fig. 6d): two learners from scratch in lock-step,
the target distilling from the live source network; determinism, kill + exact resume, the live teacher."""

import json

import pandas as pd
import pytest
import torch

from common.a2c import load_policy
from papers.cdrl.collaborative import Collaborative, LiveTeacher
from papers.cdrl.collaborative import run as collaborative_run
from papers.cdrl.train import RunArgs, run

torch.set_num_threads(1)
# 4 envs x 20 steps = 80 steps per update, 8 updates, checkpoint boundaries at updates 2, 4, 6
A2C = {"game": "MinAtar/Breakout", "total_steps": 640, "num_envs": 4, "n_steps": 20, "device": "cpu",
       "checkpoint_every": 160, "stats_every": 80, "log_interval_s": 1e9, "seed": 3}
CA3C = {"align_from": 160, "distill_from": 240, "distill_until": 480, "align_width": 16}
EVAL = {"episodes": 1, "num_envs": 1, "max_frames": 2000}


def _args(**over):
    return RunArgs.from_dict({"method": "collaborative", "a2c": A2C, "source": {"game": "MinAtar/Breakout"},
                              "ca3c": CA3C, "eval": EVAL, **over})


def _curve(d):
    return pd.read_csv(d / "curve.csv").drop(columns="wall_time")


def _same_run(a, b):
    for sub in ("", "source"):
        pd.testing.assert_frame_equal(_curve(a / sub), _curve(b / sub))
        pd.testing.assert_frame_equal(pd.read_csv(a / sub / "train_stats.csv"), pd.read_csv(b / sub / "train_stats.csv"))
        wa, wb = load_policy(a / sub / "model.pt").state_dict(), load_policy(b / sub / "model.pt").state_dict()
        assert all(torch.equal(wa[k], wb[k]) for k in wa), sub


def test_same_seed_same_curves_and_layout(tmp_path):
    run(_args(), tmp_path / "a")
    run(_args(), tmp_path / "b")
    _same_run(tmp_path / "a", tmp_path / "b")
    a = tmp_path / "a"
    for f in ("config.json", "run.json", "curve.csv", "train_stats.csv", "model.pt", "eval.json",
              "source/config.json", "source/curve.csv", "source/train_stats.csv", "source/model.pt",
              "source/eval.json"):
        assert (a / f).exists(), f
    assert not (a / "checkpoint.pt").exists()
    r = json.loads((a / "run.json").read_text())
    assert r["source_resolved"]["seed"] == 1003 and r["a2c_resolved"]["seed"] == 3
    assert r["ca3c_resolved"]["mode"] == "kd_distill" and r["online_alignment"]
    stats = pd.read_csv(a / "train_stats.csv")   # the schedule: align from 160, distil from 240 to 480
    assert list(stats["phase/align"]) == [0, 1, 1, 1, 1, 1, 0, 0]
    assert list(stats["phase/distill"]) == [0, 0, 1, 1, 1, 1, 0, 0]
    assert "phase/distill" not in pd.read_csv(a / "source/train_stats.csv")   # the source never distils
    assert json.loads((a / "eval.json").read_text())["role"] == "target"


def test_kill_and_resume_is_exact(tmp_path):
    run(_args(), tmp_path / "full")
    cut = tmp_path / "cut"
    # killed after 5 rounds (past the boundaries at rounds 2 and 4): resumes both learners from round 4
    assert collaborative_run(_args(), cut, stop_after_rounds=5) == {"stopped_at_round": 5}
    ck = torch.load(cut / "checkpoint.pt", weights_only=False)
    assert ck["round"] == 4 and ck["source"]["update"] == ck["target"]["update"] == 4
    assert not (cut / "curve.csv").exists() and not (cut / "source/curve.csv").exists()
    run(_args(), cut)
    _same_run(tmp_path / "full", cut)
    assert not (cut / "checkpoint.pt").exists()


def test_teacher_is_the_live_source_network(tmp_path):
    col = Collaborative(_args(ca3c={**CA3C, "align_from": 0, "distill_from": 0}), tmp_path)
    live = col.hook.teachers[0]
    assert isinstance(live, LiveTeacher) and live.net is col.source.agent
    assert all(p.requires_grad for p in col.source.agent.parameters())   # the hook did not freeze the source
    seen = []
    forward = live.forward_sequence

    def spy(obs, state=None, starts=None):
        seen.append([p.detach().clone() for p in live.net.parameters()])
        return forward(obs, state, starts)

    live.forward_sequence = spy
    for k in range(3):
        col.step_round()
        now = [p.detach() for p in col.source.agent.parameters()]
        # the target's teacher at round k is the source after its k-th update (no copy, no lag)
        assert len(seen) == k + 1 and all(torch.equal(a, b) for a, b in zip(seen[-1], now))
        if k:
            assert not all(torch.equal(a, b) for a, b in zip(seen[-2], seen[-1]))   # ... and it keeps changing
    col.close()


def test_bad_collaborative_args():
    with pytest.raises(ValueError, match="drop ca3c.teachers"):
        _args(ca3c={**CA3C, "teachers": ["x"]})
    with pytest.raises(ValueError, match="lock-step"):
        _args(source={"game": "MinAtar/Breakout", "num_envs": 2})
    with pytest.raises(ValueError, match="collaborative only"):
        RunArgs.from_dict({"method": "a3c", "a2c": A2C, "source": {"game": "Pong"}})
