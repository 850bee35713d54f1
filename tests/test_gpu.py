"""Every method's code path on a GPU: the tiny set-ups of the CPU tests with the device swapped.

For the shared learner (common/a2c.py), Knowledge Flow RL (student + teacher), Distral, cA3C (KD-distill through
the online alignment network F, and the collaborative mode), H-PR distillation, the GAN simulator (digits and a
policy) and supervised Knowledge Flow (digits), each test checks that

(a) a run of a few hundred env steps (or a few minibatches) completes on the device and writes finite numbers;
(b) training really ran there: a spy on the library's own update function (``common.a2c.optimizer_step``, the
    methods' hooks and losses) records the devices of the parameters and tensors it was handed;
(c) what the device run writes (model.pt, a teacher, the GAN teacher cache) holds CPU tensors and loads and
    evaluates on the CPU: a model trained on a GPU cluster must be usable on a CPU machine;
(d) where the API allows, the same net with the same weights on the same batch gives the same outputs and loss on
    the CPU and on the device (the learner's first updates, the nets' forward passes, Knowledge Flow's mixing
    forward and Eq. 4-5 losses, supervised Eq. 3), within float tolerance;

and that a checkpoint written on the device resumes there (exactly, where the GPU's kernels are deterministic) and
on the CPU. The module is marked ``gpu`` and skips without CUDA. On a machine with a GPU (about a minute)::

    pytest -m gpu tests/test_gpu.py

``KT_TEST_DEVICE`` picks the device (default cuda; ``cuda:1`` for another GPU); ``KT_TEST_DEVICE=cpu`` runs the same
code on the CPU, to check the tests themselves where there is no GPU.
"""

import copy
import json
import math
import os
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from common import a2c as a2c_module
from common.a2c import A2CArgs, Batch, load_policy, train
from common.evaluation import EvalProtocol, evaluate
from common.nets import make_net
from frames import random_step_obs

DEVICE = os.environ.get("KT_TEST_DEVICE", "cuda")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(),
                       reason="needs a CUDA GPU (set KT_TEST_DEVICE=cpu to exercise these tests' code on CPU)"),
]
torch.set_num_threads(1)
GAME = "MinAtar/Breakout"
EVAL = {"episodes": 1, "num_envs": 1, "max_frames": 2000}
SMALL = dict(game=GAME, net="minatar", num_envs=4, n_steps=5, total_steps=400, checkpoint_every=0, stats_every=20,
             log_interval_s=1e9, lr=1e-3, device=DEVICE)
TOL = dict(rtol=1e-4, atol=1e-5)


# -- helpers ------------------------------------------------------------------------------------------------------
def on_device(d: torch.device) -> bool:
    """Whether `d` is DEVICE (a plain 'cuda' matches cuda:<i>, the current GPU, where 'cuda' puts tensors)."""
    want = torch.device(DEVICE)
    return d.type == want.type and (want.index is None or d.index == want.index)


class DeviceSpy:
    """Wraps a library function (monkeypatch) and records the devices of the tensors, parameters and modules that
    `pick(*args, **kwargs)` names on every call."""

    def __init__(self, monkeypatch, owner, name: str, pick):
        self.calls, self.devices = 0, set()
        real = getattr(owner, name)

        def wrapper(*a, **kw):
            self.calls += 1
            for x in pick(*a, **kw):
                self.see(x)
            return real(*a, **kw)

        monkeypatch.setattr(owner, name, wrapper)

    def see(self, x) -> None:
        if isinstance(x, torch.Tensor):
            self.devices.add(x.device)
        elif isinstance(x, torch.nn.Module):
            self.devices |= {t.device for t in (*x.parameters(), *x.buffers())}
        elif isinstance(x, (list, tuple)):
            for y in x:
                self.see(y)

    def check(self, what: str) -> None:
        assert self.calls > 0, f"{what} was never called: the run did not train"
        assert self.devices and all(on_device(d) for d in self.devices), f"{what} saw devices {self.devices}"


def spy_learner_updates(monkeypatch, *owners) -> DeviceSpy:
    """Spy on ``optimizer_step(opt, loss, params, max_grad_norm)`` (every A2C update; also Distral's pi_0 update)."""
    spy = DeviceSpy(monkeypatch, a2c_module, "optimizer_step", lambda opt, loss, params, clip: [loss, list(params)])
    for owner in owners:   # modules that imported the name
        monkeypatch.setattr(owner, "optimizer_step", a2c_module.optimizer_step)
    return spy


def cpu_tensors_only(path) -> int:
    """Load `path` with no map_location (as a CPU machine would without thinking of it) and assert every tensor in
    it is a CPU tensor; returns how many tensors there are."""
    found = []

    def walk(x):
        if isinstance(x, torch.Tensor):
            found.append(x)
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)

    walk(torch.load(path, weights_only=False))
    assert found and all(t.device.type == "cpu" for t in found), \
        f"{path} holds tensors on {sorted({str(t.device) for t in found})}"
    return len(found)


def finite_csv(path, columns) -> pd.DataFrame:
    df = pd.read_csv(path)
    assert len(df) > 0, path
    for c in columns:
        assert np.isfinite(df[c].to_numpy(dtype=float)).all(), f"{path}: column {c} is not finite"
    return df


def evaluate_on_cpu(net, game=GAME, **protocol) -> dict:
    assert all(p.device.type == "cpu" for p in net.parameters())
    res = evaluate(net, game, EvalProtocol.from_dict({**EVAL, **protocol}), seed=0)
    assert res["episodes"] >= 1 and math.isfinite(res["mean"]), res
    return res


def same_sampler(monkeypatch):
    """Make the learner's action sampling (common.a2c.sample_actions, and torch.multinomial calls without a generator)
    draw from one fixed CPU stream whatever the device, so that a CPU run and a device run of the same seed play the
    same actions (the probabilities agree to ~1e-7). Returns `restart`, which starts the stream afresh (call it
    before each run)."""
    stream = {}
    real = torch.multinomial

    def sample_actions(probs, generator):
        return real(probs.detach().double().cpu(), 1, generator=stream["gen"]).squeeze(-1).to(probs.device)

    monkeypatch.setattr(a2c_module, "sample_actions", sample_actions)

    def sample(probs, num_samples, *a, **kw):
        if kw.get("generator") is not None:
            return real(probs, num_samples, *a, **kw)
        return real(probs.detach().double().cpu(), num_samples, generator=stream["gen"]).to(probs.device)

    monkeypatch.setattr(torch, "multinomial", sample)
    return lambda: stream.update(gen=torch.Generator().manual_seed(0))


def rollout_obs(game=GAME, n=8, steps=15, seed=1) -> torch.Tensor:
    """Non-trivial frames: a few random steps of `n` games (uint8, [n, C, H, W])."""
    return torch.from_numpy(random_step_obs(game, n, steps, seed))


@pytest.fixture
def ieee_fp32():
    """Full fp32 convolutions and matmuls on the GPU for the CPU-versus-device comparisons: cuDNN convolutions run in
    TF32 by default (torch.backends.cudnn.allow_tf32), about 1e-3 relative error, which is the GPU's arithmetic, not
    the code's; the trainings elsewhere in this module keep the defaults."""
    cudnn, cublas = torch.backends.cudnn, torch.backends.cuda.matmul
    before = cudnn.allow_tf32, cublas.allow_tf32
    cudnn.allow_tf32 = cublas.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.allow_tf32, cublas.allow_tf32 = before


@pytest.fixture(scope="module")
def ppo_teacher(tmp_path_factory):
    """A small PPO zoo teacher (MinAtar net body) trained on the device."""
    from common.zoo import train_teacher

    d = tmp_path_factory.mktemp("teachers") / "ppo" / "expert"
    train_teacher("ppo", GAME, 0, "expert", 256, d, device=DEVICE, eval_episodes=1,
                  overrides={"n_envs": 2, "n_steps": 64, "batch_size": 64})
    return str(d)


# -- the shared learner -------------------------------------------------------------------------------------------
def test_shared_learner_trains_on_device_and_its_model_runs_on_cpu(tmp_path, monkeypatch):
    spy = spy_learner_updates(monkeypatch)
    res = train(A2CArgs(**SMALL, seed=0), tmp_path)
    spy.check("the learner's optimiser step")
    assert res["env_steps"] == 400
    finite_csv(tmp_path / "train_stats.csv", ["policy_loss", "value_loss", "entropy", "grad_norm"])
    finite_csv(tmp_path / "curve.csv", ["episode_return"])
    cpu_tensors_only(tmp_path / "model.pt")
    evaluate_on_cpu(load_policy(tmp_path / "model.pt"))


def test_shared_learner_loss_and_forward_match_cpu(tmp_path, monkeypatch, ieee_fp32):
    # the learner: same seed, same actions -> the same batch; its logged losses of the first updates must agree
    restart, rows = same_sampler(monkeypatch), []
    for dev in ("cpu", DEVICE):
        restart()
        out = tmp_path / f"run{len(rows)}"
        train(A2CArgs(**{**SMALL, "total_steps": 60, "stats_every": 1, "device": dev}, seed=5), out)
        rows.append(pd.read_csv(out / "train_stats.csv"))
    assert len(rows[0]) == 3                                           # 3 updates
    for col in ("policy_loss", "value_loss", "entropy", "grad_norm"):
        torch.testing.assert_close(torch.tensor(rows[1][col].to_numpy()), torch.tensor(rows[0][col].to_numpy()),
                                   **TOL, msg=col)
    # the nets' forward passes on one fixed batch: feed-forward (MinAtar) and recurrent (cA3C's conv-LSTM)
    obs = rollout_obs().reshape(2, 4, 4, 10, 10)                      # [T, N, C, H, W]
    starts = torch.tensor([[True] * 4, [False, True, False, False]])
    for name in ("minatar", "ca3c"):
        torch.manual_seed(0)
        net = make_net(name, (4, 10, 10), 3)
        dev_net = copy.deepcopy(net).to(DEVICE)
        ref, got = net.forward_sequence(obs, None, starts), dev_net.forward_sequence(obs.to(DEVICE), None,
                                                                                     starts.to(DEVICE))
        assert on_device(got.logits.device)
        torch.testing.assert_close(got.logits.cpu(), ref.logits, **TOL, msg=name)
        torch.testing.assert_close(got.value.cpu(), ref.value, **TOL, msg=name)


def test_shared_learner_checkpoint_resumes_on_device_and_on_cpu(tmp_path, monkeypatch):
    # deterministic GPU kernels, so that two runs of one seed can be compared bit for bit
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    args = A2CArgs(**{**SMALL, "checkpoint_every": 100}, seed=1)     # 20 updates, boundaries at 5, 10, 15
    full, again, cut = tmp_path / "full", tmp_path / "again", tmp_path / "cut"
    train(args, full)
    assert train(args, cut, stop_after_updates=12) == {"stopped_at_update": 12}
    assert (cut / "checkpoint.pt").exists()
    shutil.copytree(cut, tmp_path / "cut_cpu")
    train(args, cut)                            # resumes from update 10 on the device (RNG state: common.io)
    train(replace(args, device="cpu"), tmp_path / "cut_cpu")           # a device job's checkpoint, resumed on a CPU
    for d in (cut, tmp_path / "cut_cpu"):
        assert not (d / "checkpoint.pt").exists()
        finite_csv(d / "train_stats.csv", ["policy_loss", "value_loss"])
        evaluate_on_cpu(load_policy(d / "model.pt"))
    train(args, again)
    curve = lambda d: pd.read_csv(d / "curve.csv").drop(columns="wall_time")  # noqa: E731
    weights = lambda d: load_policy(d / "model.pt").state_dict()  # noqa: E731
    if not (curve(full).equals(curve(again)) and all(torch.equal(a, b) for a, b in
                                                     zip(weights(full).values(), weights(again).values()))):
        pytest.xfail(f"two runs of one seed differ on {DEVICE} (non-deterministic kernels): exact resume unchecked")
    pd.testing.assert_frame_equal(curve(full), curve(cut))
    assert all(torch.equal(a, b) for a, b in zip(weights(full).values(), weights(cut).values()))


def test_multirun_jobs_train_on_device_loop_and_stacked_agree(tmp_path, ieee_fp32):
    """Three seeds in one job on the device, each run's nets in turn (loop) and all stacked in one vmap'd call:
    the first update's weights agree within float tolerance, and every run's model.pt holds CPU tensors."""
    from common.a2c import Learner, RunSpec

    weights = {}
    for batch in ("loop", "stacked"):
        lr = Learner.many([RunSpec(A2CArgs(**{**SMALL, "checkpoint_every": 0, "total_steps": 20}, seed=s),
                                   tmp_path / batch / str(s)) for s in (0, 1, 2)], batch=batch)
        assert lr.engine.name == batch
        while not lr.done:
            lr.step()
        lr.close()
        lr.finish()
        weights[batch] = [load_policy(tmp_path / batch / str(s) / "model.pt").state_dict() for s in (0, 1, 2)]
        for s in (0, 1, 2):
            cpu_tensors_only(tmp_path / batch / str(s) / "model.pt")
            finite_csv(tmp_path / batch / str(s) / "train_stats.csv", ["policy_loss", "value_loss"])
    for wl, ws in zip(weights["loop"], weights["stacked"]):
        for k in wl:
            torch.testing.assert_close(ws[k], wl[k], **TOL, msg=k)


# -- Knowledge Flow (RL) -------------------------------------------------------------------------------------------
def test_zoo_teacher_trained_on_device_loads_on_cpu(ppo_teacher, ieee_fp32):
    from common.zoo import load_teacher

    on_dev, on_cpu = load_teacher(ppo_teacher, device=DEVICE), load_teacher(ppo_teacher, device="cpu")
    assert on_device(on_dev.device) and on_cpu.device.type == "cpu"
    obs = rollout_obs()
    torch.testing.assert_close(on_dev.logits(obs.to(DEVICE)).cpu(), on_cpu.logits(obs), **TOL)
    for a, b in zip(on_dev.forward_preacts(obs.to(DEVICE)), on_cpu.forward_preacts(obs)):
        torch.testing.assert_close(a.cpu(), b, **TOL)


def test_knowledge_flow_trains_on_device(tmp_path, monkeypatch, ppo_teacher):
    from papers.knowledge_flow.method import KnowledgeFlowHook
    from papers.knowledge_flow.train import main

    spy = spy_learner_updates(monkeypatch)
    hook_spy = DeviceSpy(monkeypatch, KnowledgeFlowHook, "loss",
                         lambda self, agent, batch, out: [agent, batch.obs, out.logits])   # student, Q, w, teacher
    args = {"method": "kf", "a2c": {**SMALL, "seed": 3}, "kf": {"lambda1": 0.5, "lambda2": 0.01,
                                                               "teachers": [ppo_teacher]}}
    main(["--out", str(tmp_path), "--args", json.dumps(args)])
    spy.check("the learner's optimiser step")
    hook_spy.check("KnowledgeFlowHook.loss")
    stats = finite_csv(tmp_path / "train_stats.csv", ["policy_loss", "value_loss", "kf/dep_loss", "kf/kl",
                                                      "pw/fc/student"])
    assert (stats["kf/kl"] > 0).any()                                  # the theta_old pass ran
    final = json.loads((tmp_path / "final.json").read_text())
    assert all(math.isfinite(v) for v in final["independence"].values())
    cpu_tensors_only(tmp_path / "model.pt")                            # the exported student, no teacher
    evaluate_on_cpu(load_policy(tmp_path / "model.pt"))


def test_knowledge_flow_mixing_forward_and_losses_match_cpu(ppo_teacher, ieee_fp32):
    from common.nets import MinAtarNet
    from common.zoo import load_teacher
    from papers.knowledge_flow.method import KFArgs, KnowledgeFlowHook, KnowledgeFlowStudent
    from papers.knowledge_flow.train import auto_links

    obs = rollout_obs().reshape(2, 4, 4, 10, 10)
    got = {}
    for dev in ("cpu", DEVICE):
        teacher = load_teacher(ppo_teacher, device=dev)
        torch.manual_seed(0)                                           # student, Q: built on the CPU, then moved
        student = MinAtarNet((4, 10, 10), 3).to(dev)
        kf = KnowledgeFlowStudent(student, [teacher], auto_links([teacher], student.layer_names))
        with torch.no_grad():                                          # non-uniform p_w
            for w in kf.w.values():
                w.copy_(torch.tensor([0.3, -0.2], device=dev))
        hook = KnowledgeFlowHook(KFArgs(lambda1=0.5, lambda2=0.1))
        t, n = obs.shape[:2]
        batch = Batch(obs.to(dev), torch.zeros(t, n, dtype=torch.long, device=dev), torch.zeros(t, n, device=dev),
                      torch.zeros(t, n, device=dev), torch.zeros(t, n, dtype=torch.bool, device=dev), None, 0.5, 0)
        hook.loss(kf, batch, kf.forward_sequence(batch.obs))           # theta_old := theta
        hook.after_update(kf, batch)
        with torch.no_grad():                                          # one fixed "update" of every trainable parameter
            g = torch.Generator().manual_seed(1)
            for p in kf.parameters():
                if p.requires_grad:
                    p.add_(0.05 * torch.randn(p.shape, generator=g).to(dev))
        out = kf.forward_sequence(batch.obs)
        loss, logs = hook.loss(kf, batch, out)
        assert loss.device == out.logits.device
        got[dev] = (out.logits.detach().cpu(), out.value.detach().cpu(), loss.detach().cpu(), logs)
    (l_cpu, v_cpu, loss_cpu, logs_cpu), (l_dev, v_dev, loss_dev, logs_dev) = got["cpu"], got[DEVICE]
    torch.testing.assert_close(l_dev, l_cpu, **TOL)
    torch.testing.assert_close(v_dev, v_cpu, **TOL)
    torch.testing.assert_close(loss_dev, loss_cpu, **TOL)
    assert logs_cpu["kf/kl"] > 0
    for k in ("kf/kl", "kf/dep_loss", "pw/fc/student"):
        assert logs_dev[k] == pytest.approx(logs_cpu[k], rel=1e-4, abs=1e-6), k


# -- Distral ------------------------------------------------------------------------------------------------------
def test_distral_trains_on_device(tmp_path, monkeypatch):
    from papers.knowledge_flow import distral

    spy = spy_learner_updates(monkeypatch, distral)                    # the task learners' and pi_0's steps
    hook_spy = DeviceSpy(monkeypatch, distral.DistralHook, "rewards", lambda self, agent, rollout: [self.pi0, agent])
    a2c = {"net": "minatar", "total_steps": 240, "num_envs": 4, "n_steps": 20, "device": DEVICE,
           "checkpoint_every": 160, "stats_every": 80, "log_interval_s": 1e9, "seed": 3}
    distral.main(["--out", str(tmp_path), "--args", json.dumps({
        "tasks": ["MinAtar/Breakout", "MinAtar/Asterix"], "a2c": a2c, "distral": {"alpha": 0.5, "beta": 100.0},
        "eval": EVAL})])
    spy.check("the optimiser steps")
    hook_spy.check("DistralHook.rewards")
    assert spy.calls == 3 * 3                                          # 3 rounds x (2 task updates + pi_0)
    for sub in ("", "task2"):
        finite_csv(tmp_path / sub / "train_stats.csv", ["policy_loss", "distral/kl_to_pi0",
                                                        "distral/pi0_cross_entropy"])
    for sub in ("", "task2", "pi0"):
        cpu_tensors_only(tmp_path / sub / "model.pt")
    for f in ("eval.json", "pi0/eval.json"):                           # m1 and m0, loaded and played on the CPU
        assert math.isfinite(json.loads((tmp_path / f).read_text())["mean"])


# -- cA3C ---------------------------------------------------------------------------------------------------------
CA3C_A2C = {"game": GAME, "total_steps": 320, "num_envs": 4, "n_steps": 20, "device": DEVICE, "checkpoint_every": 0,
            "stats_every": 80, "log_interval_s": 1e9}


def _ca3c_spy(monkeypatch):
    from papers.cdrl.method import CA3CHook

    def pick(self, agent, batch, out):
        teachers = [getattr(t, "net", t) for t in self.teachers]        # a LiveTeacher wraps the source's net
        return [agent, batch.obs, out.logits, *self.alignment, *teachers]

    return DeviceSpy(monkeypatch, CA3CHook, "loss", pick)


def test_ca3c_kd_distill_with_online_alignment_trains_on_device(tmp_path, monkeypatch):
    from papers.cdrl.train import RunArgs, run

    run(RunArgs.from_dict({"method": "a3c", "a2c": {**CA3C_A2C, "seed": 5}, "eval": EVAL}), tmp_path / "t")
    cpu_tensors_only(tmp_path / "t/model.pt")
    spy, hook_spy = spy_learner_updates(monkeypatch), _ca3c_spy(monkeypatch)
    out = tmp_path / "kd"
    run(RunArgs.from_dict({"method": "kd_distill", "a2c": {**CA3C_A2C, "seed": 2}, "eval": EVAL,
                           "ca3c": {"teachers": [str(tmp_path / "t")], "align_from": 80, "distill_from": 160,
                                    "align_width": 16}}), out)
    spy.check("the learner's optimiser step")
    hook_spy.check("CA3CHook.loss (student, F, teacher)")
    stats = pd.read_csv(out / "train_stats.csv")
    last = stats.iloc[-1]
    assert last["phase/align"] == 1.0 and last["phase/distill"] == 1.0
    for c in ("policy_loss", "value_loss", "align/kl", "align/grad_norm", "distill/kl", "distill/grad_norm"):
        assert math.isfinite(last[c]), c
    assert json.loads((out / "run.json").read_text())["online_alignment"]
    cpu_tensors_only(out / "model.pt")
    assert math.isfinite(json.loads((out / "eval.json").read_text())["mean"])   # played by the CPU-loaded policy


def test_ca3c_collaborative_trains_on_device(tmp_path, monkeypatch):
    from papers.cdrl.train import RunArgs, run

    spy, hook_spy = spy_learner_updates(monkeypatch), _ca3c_spy(monkeypatch)
    run(RunArgs.from_dict({"method": "collaborative", "a2c": {**CA3C_A2C, "seed": 3, "checkpoint_every": 160},
                           "source": {"game": GAME}, "eval": EVAL,
                           "ca3c": {"align_from": 80, "distill_from": 160, "align_width": 16}}), tmp_path)
    spy.check("the learners' optimiser steps")
    hook_spy.check("CA3CHook.loss (target, F, live source)")
    assert spy.calls == 2 * 4                                          # 4 rounds x (source + target)
    last = pd.read_csv(tmp_path / "train_stats.csv").iloc[-1]
    assert all(math.isfinite(last[c]) for c in ("policy_loss", "align/kl", "distill/kl"))
    finite_csv(tmp_path / "source/train_stats.csv", ["policy_loss", "value_loss"])
    for sub in ("", "source"):
        cpu_tensors_only(tmp_path / sub / "model.pt")
        assert math.isfinite(json.loads((tmp_path / sub / "eval.json").read_text())["mean"])


# -- H-PR policy distillation -------------------------------------------------------------------------------------
def test_hpr_distillation_trains_and_resumes_on_device(tmp_path, monkeypatch, ieee_fp32):
    from common.zoo import load_teacher, train_teacher
    from papers.hpr_distillation import method as hpr

    games = ["MinAtar/Breakout", "MinAtar/SpaceInvaders"]
    teachers = []
    for g in games:   # untrained DQN teachers, built on the device
        d = tmp_path / "teachers" / g.replace("/", "-")
        train_teacher("dqn", g, 0, "untrained", 0, d, device=DEVICE, eval_episodes=1,
                      overrides={"learning_starts": 200, "buffer_size": 2000, "target_update_interval": 200})
        teachers.append(str(d))
    obs = rollout_obs()
    torch.testing.assert_close(load_teacher(teachers[0], DEVICE).q_values(obs.to(DEVICE)).cpu(),
                               load_teacher(teachers[0], "cpu").q_values(obs), **TOL)
    spy = DeviceSpy(monkeypatch, hpr, "distillation_kl", lambda q_t, q_s, tau, mask=None: [q_t, q_s])
    args = hpr.HPRArgs.from_dict({
        "games": games, "teachers": teachers, "total_steps": 160, "learning_starts": 64, "eps_decay_steps": 100,
        "eval_every": 10, "vrange_steps": 30, "fc_sizes": [64, 32], "eval": {"steps": 40},
        "replay": {"partitions": 3, "partition_capacity": 100, "window": 100}, "checkpoint_every": 100,
        "device": DEVICE, "log_interval_s": 1e9})
    out = tmp_path / "run"
    assert hpr.train(args, out, stop_after_steps=130) == {"stopped_at_step": 130}
    assert (out / "checkpoint.pt").exists()
    hpr.train(args, out)                                               # resumes from step 100 on the device
    spy.check("distillation_kl (teacher and student Q-values)")
    curve = finite_csv(out / "curve.csv", ["eval_score", "train_kl"])
    assert set(curve["game"]) == set(games) and not (out / "checkpoint.pt").exists()
    cpu_tensors_only(out / "model.pt")
    student, meta = hpr.load_student(out / "model.pt")                 # on the CPU
    for g, game in enumerate(games):
        evaluate_on_cpu(hpr.GamePolicy(student, g, meta["action_ids"][g]), game, epsilon=0.05, policy="greedy",
                        max_frames=500)


# -- GAN simulator ------------------------------------------------------------------------------------------------
def _gan_spy(monkeypatch):
    from papers.gan_simulator import method as gas

    return DeviceSpy(monkeypatch, gas, "student_objective", lambda t_logits, s_logits, args: [t_logits, s_logits])


def test_gan_simulator_digits_on_device(tmp_path, monkeypatch, ieee_fp32):
    from papers.gan_simulator import images
    from papers.gan_simulator import run as gr
    from papers.gan_simulator.method import accuracy, digits_dataset
    from papers.gan_simulator.nets import NETS

    spy = _gan_spy(monkeypatch)
    args = {"seeds": 1, "teacher_epochs": 1, "device": DEVICE, "methods": ["dafl", "ours", "kd_real"],
            "gas": {"student_steps": 4, "batch_size": 16, "log_every": 2},
            "method_overrides": {"ours": {"reinit_every": 1, "s_steps": 2, "student_steps": 6}}}
    gr.main(["--experiment", "digits", "--out", str(tmp_path), "--args", json.dumps(args)])
    spy.check("student_objective (teacher and student logits)")
    res = json.loads((tmp_path / "results.json").read_text())
    assert [r["method"] for r in res["rows"]] == ["dafl", "ours", "kd_real"]
    assert all(0 <= r["student_acc"] <= 100 for r in res["rows"])
    curves = pd.read_csv(tmp_path / "curves.csv")
    assert np.isfinite(curves["loss_student"]).all() and np.isfinite(curves.dropna(subset=["loss_generator"])
                                                                     ["loss_generator"]).all()
    # the teacher trained on the device, from its cache file, on the CPU: the same test accuracy (a near-tie may flip)
    image_args = images.experiment_args("digits", args)
    cache = tmp_path / "teacher_cache" / f"teacher_{images.teacher_key(image_args)}.pt"
    cpu_tensors_only(cache)
    net = NETS[image_args.teacher_net](in_channels=1, n_classes=10)
    net.load_state_dict(torch.load(cache, map_location="cpu")["state_dict"])
    _, test = digits_dataset(seed=0)
    acc = 100.0 * accuracy(net, torch.utils.data.DataLoader(test, batch_size=1000))
    assert acc == pytest.approx(res["teacher"]["test_acc"], abs=0.6)   # 360 test images: within 2 images


def test_gan_simulator_policy_on_device(tmp_path, monkeypatch, ppo_teacher):
    from papers.gan_simulator import run as gr

    spy = _gan_spy(monkeypatch)
    gr.main(["--experiment", "policy", "--out", str(tmp_path), "--args", json.dumps({
        "game": GAME, "teacher": ppo_teacher, "methods": ["ours", "kd_real"], "device": DEVICE, "rollout_steps": 40,
        "rollout_envs": 2, "eval": EVAL, "gas": {"student_steps": 4, "batch_size": 8, "log_every": 2},
        "method_overrides": {"ours": {"reinit_every": 1, "s_steps": 2}}})])
    spy.check("student_objective (teacher and student logits)")
    res = json.loads((tmp_path / "results.json").read_text())
    rows = {r["method"]: r for r in res["rows"]}
    for m in ("ours", "kd_real"):                  # the distilled students, played and compared on the CPU
        assert math.isfinite(rows[m]["score"]) and 0 <= rows[m]["agreement"] <= 100, rows[m]
    assert np.isfinite(pd.read_csv(tmp_path / "curves.csv")["loss_student"]).all()


# -- Knowledge Flow, supervised ------------------------------------------------------------------------------------
def test_kf_supervised_digits_on_device(tmp_path, monkeypatch):
    from papers.knowledge_flow import supervised as sup

    spy = DeviceSpy(monkeypatch, sup, "fit", lambda model, train, *a, **kw: [model, train.x, train.y])
    sup.main(["--experiment", "digits_kd", "--out", str(tmp_path), "--args", json.dumps({
        "epochs": 2, "seeds": 1, "device": DEVICE, "lambda1_grid": [0.1], "lambda2_grid": [0.01],
        "kd_temperature_grid": [4.0], "kd_alpha_grid": [0.9], "methods": ["baseline", "kd:big", "kf:big"]})])
    spy.check("fit (nets, teachers inside the mixed net, data)")
    res = json.loads((tmp_path / "results.json").read_text())
    assert all(math.isfinite(v) for v in res["teachers"].values())
    for m in ("baseline", "kd:big", "kf:big"):
        assert 0 <= res["summary"][m]["test_error_mean"] <= 100, m
    kf_row = next(r for r in res["rows"] if r["method"] == "kf:big")
    assert 0 < kf_row["independence"] < 1 and math.isfinite(kf_row["test_error_mixed"])
    assert np.isfinite(pd.read_csv(tmp_path / "pw.csv")["p_w"]).all()


def test_kf_supervised_teacher_from_device_on_cpu_and_eq3_matches(tmp_path, ieee_fp32):
    from papers.knowledge_flow import supervised as sup
    from papers.knowledge_flow.method import KFArgs, KnowledgeFlowHook, KnowledgeFlowStudent

    args = sup.experiment_args("digits_kd", {"epochs": 2, "device": DEVICE,
                                             "teachers": [{"name": "big", "net": {"hidden": [32]}}]})
    task = sup.make_task("digits", device=DEVICE)
    assert on_device(task.train.x.device)
    teacher, err = sup.train_teacher(args.teachers[0], args, task)
    assert all(on_device(p.device) for p in teacher.parameters())
    torch.save(teacher.state_dict(), tmp_path / "teacher.pt")          # what a user keeps of a GPU-trained net
    cpu_tensors = torch.load(tmp_path / "teacher.pt", map_location="cpu")
    cpu_task = sup.make_task("digits")
    cpu_teacher = sup.make_net(args.teachers[0]["net"], cpu_task)
    cpu_teacher.load_state_dict(cpu_tensors)
    assert sup.top1_error(cpu_teacher, cpu_task.test) == pytest.approx(err, abs=0.6)   # 539 test images
    # Eq. 3 (CE + lambda1 l_dep + lambda2 KL) of one mixed net on one minibatch: CPU and device agree
    x, y = cpu_task.train.x[:32], cpu_task.train.y[:32]
    got = {}
    for dev, t in (("cpu", cpu_teacher), (DEVICE, teacher)):
        torch.manual_seed(0)
        student = sup.ClassifierNet(cpu_task.in_shape, cpu_task.n_classes, hidden=[32, 32]).to(dev)
        kf = KnowledgeFlowStudent(student, [t], sup.same_name_links(student, [t]), example_obs=x.to(dev))
        hook = KnowledgeFlowHook(KFArgs(lambda1=0.2, lambda2=0.5))
        hook.theta_old = {k: v.detach() * 0.9 for k, v in kf.named_parameters() if v.requires_grad}
        loss, logs, _ = sup.supervised_kf_loss(kf, hook, x.to(dev), y.to(dev), progress=0.5)
        got[dev] = (loss.detach().cpu(), logs)
    torch.testing.assert_close(got[DEVICE][0], got["cpu"][0], **TOL)
    for k in ("ce", "kf/kl", "kf/dep_loss"):
        assert got[DEVICE][1][k] == pytest.approx(got["cpu"][1][k], rel=1e-4, abs=1e-6), k
