"""Distral KL + ent 1col (papers/knowledge_flow/distral.py), Knowledge Flow's Table 7 baseline: the regularised reward
and pi_0's distillation loss against hand-computed values, which net each loss reaches, kill + exact resume, a
tiny end-to-end run, and Table 7's plan and table."""

import copy
import json
import math

import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.a2c import A2CArgs, Hook, Rollout, load_policy, train
from common.nets import NetOut
from papers.knowledge_flow.distral import (PI0_SEED_OFFSET, TASK_SEED_OFFSET, Distral, DistralArgs, DistralHook,
                                           RunArgs, distillation_loss, main, regularised_reward, run)

torch.set_num_threads(1)
# MinAtar Breakout and Asterix share a 4-channel 10x10 frame; with the full action set both have 6 actions.
# 4 envs x 20 steps = 80 steps per update, 8 rounds, checkpoint boundaries at rounds 2, 4, 6
TASKS = ["MinAtar/Breakout", "MinAtar/Asterix", "MinAtar/Breakout"]
A2C = {"net": "minatar", "total_steps": 640, "num_envs": 4, "n_steps": 20, "device": "cpu", "checkpoint_every": 160,
       "stats_every": 80, "log_interval_s": 1e9, "seed": 3}
EVAL = {"episodes": 1, "num_envs": 1, "max_frames": 2000}


def _args(**over):
    return RunArgs.from_dict({"tasks": TASKS, "a2c": A2C, "distral": {"alpha": 0.5, "beta": 100.0}, "eval": EVAL,
                              **over})


# -- formulas ----------------------------------------------------------------------------------------
def test_regularised_reward_by_hand():
    # r = 1, pi_0(a|s) = 1/2, pi_i(a|s) = 1/4, alpha = 0.5, beta = 2:
    # 1 + 0.25 * log(1/2) - 0.5 * log(1/4) = 1 - 0.25 * 0.693147 + 0.5 * 1.386294 = 1.519860
    r = regularised_reward(torch.tensor([1.0]), torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)]), 0.5, 2.0)
    assert r.item() == pytest.approx(1.519860, abs=1e-6)
    # alpha = 1 ('KL' alone): the bonus is (1/beta) log(pi_0 / pi_i) = 0.5 * log 2 = 0.346574
    r = regularised_reward(torch.tensor([0.0]), torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)]), 1.0, 2.0)
    assert r.item() == pytest.approx(0.346574, abs=1e-6)


def test_distillation_loss_by_hand():
    # logits (0, ln 3): pi_0 = (1/4, 3/4); actions 1 and 0: -(log 3/4 + log 1/4) / 2 = (0.287682 + 1.386294) / 2
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])
    assert distillation_loss(logits, torch.tensor([1, 0])).item() == pytest.approx(0.836988, abs=1e-6)


class FixedPolicy(nn.Module):
    """A feed-forward 'net' whose logits are one trainable vector, whatever the state."""

    recurrent = False

    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits))

    def forward_sequence(self, obs, state=None, starts=None):
        t, n = obs.shape[:2]
        return NetOut(self.logits.expand(t, n, -1), torch.zeros(t, n))


def test_hook_rewards_and_pending_pi0_loss_by_hand():
    # pi_0 = (1/4, 3/4) everywhere; the task policy took actions (1, 0) with log-probs (log 1/2, log 1/8)
    pi0 = FixedPolicy([0.0, math.log(3.0)])
    hook = DistralHook(pi0, DistralArgs(alpha=0.5, beta=2.0), total_steps=4)
    ro = Rollout(obs=torch.zeros(2, 1, 1), actions=torch.tensor([[1], [0]]), rewards=torch.tensor([[1.0], [0.0]]),
                 starts=torch.zeros(2, 1, dtype=torch.bool), state0=None,
                 logp=torch.tensor([[math.log(0.5)], [math.log(0.125)]]), progress=0.5, step=2)
    r = hook.rewards(None, ro)
    # 1 + 0.25 log(3/4) - 0.5 log(1/2) = 1.274653;  0 + 0.25 log(1/4) - 0.5 log(1/8) = 0.693147
    assert r[:, 0].tolist() == pytest.approx([1.274653, 0.693147], abs=1e-6)
    assert hook.pending.item() == pytest.approx(0.836988, abs=1e-6)   # pi_0's cross-entropy on the taken actions
    assert not r.requires_grad                                        # the task's returns carry no pi_0 graph
    hook.pending.backward()
    # d/dz of -mean log softmax(z)[a] over a = (1, 0): mean(softmax - onehot) = ((1/4 - 0) + (1/4 - 1)) / 2, ...
    assert pi0.logits.grad.tolist() == pytest.approx([-0.25, 0.25], abs=1e-6)


def test_learner_hands_the_hook_log_pi_of_the_acting_policy_and_uses_its_rewards(tmp_path):
    seen = {}

    class Spy(Hook):
        def rewards(self, agent, rollout):
            with torch.no_grad():
                logits = agent.forward_sequence(rollout.obs).logits   # the same parameters as the rollout's
            want = F.log_softmax(logits, -1).gather(-1, rollout.actions.unsqueeze(-1)).squeeze(-1)
            seen["max_err"] = max(seen.get("max_err", 0.0), (want - rollout.logp).abs().max().item())
            return rollout.rewards + 100.0

        def loss(self, agent, batch, out):
            seen["min_return"] = min(seen.get("min_return", 1e9), batch.returns.min().item())
            return None, {}

    train(A2CArgs(game="MinAtar/Breakout", net="minatar", num_envs=2, n_steps=5, total_steps=40, checkpoint_every=0,
                  stats_every=10, log_interval_s=1e9, device="cpu"), tmp_path, hook=Spy())
    assert seen["max_err"] < 1e-5
    assert seen["min_return"] > 90   # the returns are built from the hook's rewards (each >= 99)


# -- which net each loss reaches ---------------------------------------------------------------------
def test_pi0_learns_only_from_distillation_and_tasks_only_from_their_own_loss(tmp_path):
    dis = Distral(_args(a2c={**A2C, "max_grad_norm": 0.0}), tmp_path)   # no clipping: raw gradients compared
    pi0, nets = dis.pi0, [lr.agent for lr in dis.learners]
    for i, lr in enumerate(dis.learners):
        lr.step()
        assert all(p.grad is None for p in pi0.parameters())          # a task's update never reaches pi_0 ...
        assert all(p.grad is None for net in nets[i + 1:] for p in net.parameters())   # ... nor another task
        assert all(p.grad is not None for p in nets[i].parameters())
    task_grads = [[p.grad.clone() for p in net.parameters()] for net in nets]
    # pi_0's gradient is exactly that of the cross-entropy on the three rollouts (the learners' buffers)
    ref = copy.deepcopy(pi0)
    want_loss = torch.stack([distillation_loss(ref.forward_sequence(lr.obs_buf).logits, lr.act_buf)
                             for lr in dis.learners]).mean()
    want = torch.autograd.grad(want_loss, list(ref.parameters()), allow_unused=True)
    dis.update_pi0(0.0)
    for (name, p), w in zip(pi0.named_parameters(), want):
        if name.startswith("value."):   # pi_0 is a policy: its value head is never used, never trained
            assert p.grad is None and w is None
        else:
            assert torch.allclose(p.grad, w, atol=1e-6), name
    for net, grads in zip(nets, task_grads):                          # pi_0's update left the tasks' gradients alone
        assert all(torch.equal(p.grad, g) for p, g in zip(net.parameters(), grads))
    dis.close()


# -- runs -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("distral") / "full"
    main(["--out", str(out), "--args", json.dumps({"tasks": TASKS, "a2c": A2C, "distral": {"alpha": 0.5, "beta": 100.0},
                                                   "eval": EVAL})])
    return out


def _curve(d):
    return pd.read_csv(d / "curve.csv").drop(columns="wall_time")


def _same_run(a, b):
    for sub in ("", "task2", "task3"):
        pd.testing.assert_frame_equal(_curve(a / sub), _curve(b / sub))
        pd.testing.assert_frame_equal(pd.read_csv(a / sub / "train_stats.csv"),
                                      pd.read_csv(b / sub / "train_stats.csv"))
        assert json.loads((a / sub / "final.json").read_text()) == json.loads((b / sub / "final.json").read_text())
    for sub in ("", "task2", "task3", "pi0"):
        wa, wb = load_policy(a / sub / "model.pt").state_dict(), load_policy(b / sub / "model.pt").state_dict()
        assert all(torch.equal(wa[k], wb[k]) for k in wa), sub
    for f in ("eval.json", "pi0/eval.json"):
        assert json.loads((a / f).read_text())["scores"] == json.loads((b / f).read_text())["scores"]


def test_run_layout_seeds_and_evaluation(full_run):
    a = full_run
    for f in ("config.json", "run.json", "curve.csv", "train_stats.csv", "model.pt", "final.json", "eval.json",
              "task2/curve.csv", "task2/model.pt", "task3/train_stats.csv", "pi0/model.pt", "pi0/eval.json"):
        assert (a / f).exists(), f
    assert not (a / "checkpoint.pt").exists()
    r = json.loads((a / "run.json").read_text())
    assert [x["seed"] for x in r["a2c_resolved"]] == [3, 3 + TASK_SEED_OFFSET, 3 + 2 * TASK_SEED_OFFSET]
    assert [x["game"] for x in r["a2c_resolved"]] == TASKS and r["pi0_seed"] == 3 + PI0_SEED_OFFSET
    assert all(x["protocol"]["full_action_space"] for x in r["a2c_resolved"])
    m1 = load_policy(a / "model.pt")
    assert m1.n_actions == 6                                           # MinAtar's full action set, every task
    ev = json.loads((a / "eval.json").read_text())
    assert ev["role"] == "m1" and ev["game"] == TASKS[0] and ev["protocol"]["full_action_space"] and ev["episodes"] == 1
    assert json.loads((a / "pi0/eval.json").read_text())["role"] == "m0"
    stats = pd.read_csv(a / "train_stats.csv")
    assert len(stats) == 8 and {"distral/kl_to_pi0", "distral/pi0_cross_entropy"} <= set(stats.columns)
    # with beta = 100 the rewards move by (alpha log pi_0 - log pi_i) / beta ~ 0.5 * log 6 / 100
    assert stats["distral/reward_shift"].abs().max() == pytest.approx(0.5 * math.log(6) / 100, rel=0.2)
    final = json.loads((a / "final.json").read_text())["distral"]
    assert final["alpha"] == 0.5 and final["beta"] == 100.0 and final["updates_averaged"] == 1   # the last 10%
    assert final["pi0_cross_entropy"] == pytest.approx(stats["distral/pi0_cross_entropy"].iloc[-1])


def test_kill_and_resume_is_exact(full_run, tmp_path):
    cut = tmp_path / "cut"
    # killed after 5 rounds (past the boundaries at rounds 2 and 4): resumes every learner and pi_0 from round 4
    assert run(_args(), cut, stop_after_rounds=5) == {"stopped_at_round": 5}
    ck = torch.load(cut / "checkpoint.pt", weights_only=False)
    assert ck["round"] == 4 and [c["update"] for c in ck["tasks"]] == [4, 4, 4] and "pi0_optimizer" in ck
    assert not (cut / "curve.csv").exists() and not (cut / "pi0/model.pt").exists()
    run(_args(), cut)
    _same_run(full_run, cut)
    assert not (cut / "checkpoint.pt").exists()


def test_bad_args_are_named(tmp_path):
    with pytest.raises(ValueError, match="at least two games"):
        _args(tasks=["MinAtar/Breakout"])
    with pytest.raises(ValueError, match="drop a2c.game"):
        _args(a2c={**A2C, "game": "Pong"})
    with pytest.raises(ValueError, match=r"distral arguments: alpha must be in \[0, 1\], got 1.5"):
        _args(distral={"alpha": 1.5})
    with pytest.raises(KeyError, match="did you mean 'beta'"):
        _args(distral={"betta": 1.0})
    with pytest.raises(ValueError, match="one state and action space"):   # Seaquest's frames have 10 channels
        Distral(_args(tasks=["MinAtar/Breakout", "MinAtar/Seaquest"]), tmp_path)


# -- Table 7: plan and table --------------------------------------------------------------------------
def test_plan_table7_runs_share_kf_runs_and_name_distral_args():
    import yaml

    from papers.knowledge_flow import plan

    cfg = yaml.safe_load(open("config/default.yaml"))
    assert plan.table7_kf_method(["KungFuMaster", "Hero", "Seaquest"]) == "kf_hero_seaquest"
    cells = plan.runs(cfg)
    # 'Ours' of Hero / JamesBond is the Fig. 8 / Table 1 run kf_seaquest_riverraid; KungFuMaster's is new
    assert ("kf_hero_seaquest", "KungFuMaster") in cells and cells.count(("kf_seaquest_riverraid", "Hero")) == 1
    assert plan.teacher_dirs(cfg, "default", "kf_hero_seaquest", "KungFuMaster") == [
        "teachers/default/ppo/Hero/expert/seed0", "teachers/default/ppo/Seaquest/expert/seed0"]
    assert max(s for m, g, s in plan.run_seeds(cfg) if (m, g) == ("kf_hero_seaquest", "KungFuMaster")) == 2
    d = json.loads(plan.distral_args(cfg, "Hero+Seaquest+Riverraid", 2, 1, "cpu"))
    assert d["tasks"] == ["Hero", "Seaquest", "Riverraid"] and d["a2c"]["seed"] == 2
    assert d["a2c"]["total_steps"] == cfg["knowledge_flow"]["a2c"]["total_steps"]   # per task, as the KF run
    assert d["distral"] == {"alpha": 0.5, "beta": 3000.0} and d["eval"] == cfg["knowledge_flow"]["eval"]
    RunArgs.from_dict(d)
    bad = copy.deepcopy(cfg)   # an experiment run of the same name with another spec is refused
    bad["knowledge_flow"]["experiments"]["table1"]["runs"]["kf_hero_seaquest"] = {"teachers": ["Hero"]}
    with pytest.raises(ValueError, match="table7: its Knowledge Flow run 'kf_hero_seaquest'"):
        plan.check(bad)
    bad = copy.deepcopy(cfg)
    bad["knowledge_flow"]["table7"]["distral"] = {"beta": -1.0}
    with pytest.raises(ValueError, match="beta must be > 0"):
        plan.check(bad)


def _fake_run(d, score, total=1000, final=None):
    d.mkdir(parents=True)
    (d / "eval.json").write_text(json.dumps({"mean": score}))
    (d / "config.json").write_text(json.dumps({"a2c": {"total_steps": total}}))
    curve = pd.DataFrame({"env_steps": [500, 1000], "frames": [2000, 4000], "wall_time": [1.0, 2.0],
                          "episode_return": [score / 2, score], "episode_length": [10, 10]})
    curve.to_csv(d / "curve.csv", index=False)
    if final is not None:
        (d / "final.json").write_text(json.dumps(final))


def test_table7_puts_distral_m1_m0_and_kf_next_to_the_paper(tmp_path):
    from papers.knowledge_flow.tables import main as tables_main

    runs = tmp_path / "runs"
    for s, (m1, m0, kf) in enumerate([(100.0, 40.0, 300.0), (200.0, 60.0, 500.0)]):
        d = runs / "distral" / "Hero+Seaquest+Riverraid" / f"seed{s}"
        _fake_run(d, m1, final={"distral": {"alpha": 0.5, "beta": 3000.0, "kl_to_pi0": 0.1 * (s + 1), "neg_logp": 2.0,
                                            "pi0_cross_entropy": 2.1, "updates_averaged": 3, "from_progress": 0.9}})
        (d / "pi0").mkdir()
        (d / "pi0" / "eval.json").write_text(json.dumps({"mean": m0}))
        _fake_run(runs / "kf_seaquest_riverraid" / "Hero" / f"seed{s}", kf,
                  final={"independence": {"conv1": 0.0, "fc": 0.01, "max": 0.01}})
    _fake_run(runs / "kf_seaquest_riverraid" / "Hero" / "seed2", 9999.0)   # beyond the table's seeds: ignored
    spec = {"triples": [["Hero", "Seaquest", "Riverraid"]], "seeds": 2, "total_steps": 1000,
            "distral": {"alpha": 0.5, "beta": 3000.0}}
    out = {k: tmp_path / f"t7.{k}" for k in ("csv", "md", "png")}
    tables_main(["table7", "--spec", json.dumps(spec), "--runs", str(runs), "--tier", "t", "--top-k", "1",
                 "--reported", "papers/knowledge_flow/reported.csv", "--out-csv", str(out["csv"]),
                 "--out-md", str(out["md"]), "--out-fig", str(out["png"])])
    t = pd.read_csv(out["csv"]).set_index(["row", "column"])
    hero = "Hero+Seaquest+Riverraid"
    assert t.loc[(hero, "Distral"), "paper"] == 15096 and float(t.loc[(hero, "Distral"), "ours_topk"]) == 200.0
    assert t.loc[(hero, "Ours"), "paper"] == 30928 and float(t.loc[(hero, "Ours"), "ours_topk"]) == 500.0
    assert float(t.loc[(hero, "Ours"), "ratio"]) == pytest.approx(500 / 30928)
    assert float(t.loc[(hero, "Distral m0"), "ours_topk"]) == 60.0 and t.loc[(hero, "Ours"), "n_seeds"] == 2
    assert t.loc[("KungFuMaster+Hero+Seaquest", "Distral"), "ours_topk"] == "not run"   # the paper's other rows
    # 2 seeds: the seeds and their mean [min, max], no IQM or interval (issue 15)
    assert not any("iqm" in c.lower() for c in t.columns)
    assert t.loc[(hero, "Distral"), "ours mean [min, max]"] == "150.0 [100, 200]"
    assert t.loc[(hero, "Distral"), "ours per seed"] == "100, 200"
    md = out["md"].read_text()
    assert "no IQM or bootstrap interval" in md and "ours_iqm" not in md
    assert "alpha 0.5, beta 3000.0" in md and "| Hero+Seaquest+Riverraid | 2 | 0.15" in md
    assert "| kf_seaquest_riverraid | Hero | 2 |" in md and out["png"].stat().st_size > 1000
