"""cA3C (papers/cdrl/method.py): every formula against hand-computed values, the gradient paths of the
three modes, the T1/T2 switches, exact resume, and one tiny end-to-end run with the shared learner."""

import csv
import io
import math

import pytest
import torch
import torch.nn as nn

from common.a2c import A2CArgs, Batch, train
from common.envs import make_vec_env
from common.nets import CA3CNet
from papers.cdrl.method import (AlignmentNet, CA3CArgs, CA3CHook, alignment_loss, distillation_loss,
                                save_alignment, temperature_kl, train_alignment_offline)

torch.set_num_threads(1)
OBS = (4, 10, 10)          # MinAtar Breakout frames
A_S, A_T = 3, 5             # student and (heterogeneous) teacher action counts


class LinearTeacher(nn.Module):
    """A tiny frozen feed-forward teacher: obs -> logits (any callable of this kind is accepted)."""

    def __init__(self, n_actions=A_T, seed=1):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(math.prod(OBS), n_actions, generator=g))

    def forward(self, obs):
        return obs.flatten(1).float() @ self.w


def student(seed=0):
    torch.manual_seed(seed)
    return CA3CNet(OBS, A_S, obs_scale=1.0)


def fake_batch(step, t=4, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randint(0, 2, (t, n, *OBS), generator=g).to(torch.uint8)
    z = torch.zeros(t, n)
    starts = torch.zeros(t, n, dtype=torch.bool)
    starts[0] = True
    return Batch(obs, torch.zeros(t, n, dtype=torch.long), z, z, starts, None, 0.5, step)


def drive(hook, net, batch):
    """One learner update without the A3C step: the hook's loss, then its after_update."""
    out = net.forward_sequence(batch.obs, batch.state0, batch.starts)
    extra, logs = hook.loss(net, batch, out)
    assert extra is None                       # nothing joins the main optimiser
    logs.update(hook.after_update(net, batch))
    return logs


def params(module):
    return [p.detach().clone() for p in module.parameters()]


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


# -- 1. the temperature KL (Eq. 2-3) ---------------------------------------------------------------------
def test_temperature_kl_by_hand():
    p = torch.tensor([math.log(3.0), 0.0])     # softmax: [3/4, 1/4]
    q = torch.tensor([0.0, math.log(3.0)])     # softmax: [1/4, 3/4]
    # tau = 1: 3/4 ln 3 + 1/4 ln(1/3) = ln(3)/2
    assert temperature_kl(p, q, 1.0).item() == pytest.approx(math.log(3) / 2, abs=1e-6)
    # tau = 2 on both sides (Hinton): a = sqrt3/(1+sqrt3), b = 1/(1+sqrt3); KL = (a - b) ln(a/b)
    a, b = math.sqrt(3) / (1 + math.sqrt(3)), 1 / (1 + math.sqrt(3))
    assert temperature_kl(p, q, 2.0, q_tau=2.0).item() == pytest.approx((a - b) * math.log(a / b), abs=1e-6)
    # tau = 2 on the target only (the paper's Eq. 2-3): KL([a, b] || [1/4, 3/4])
    assert temperature_kl(p, q, 2.0).item() == pytest.approx(a * math.log(4 * a) + b * math.log(4 * b / 3), abs=1e-6)
    assert temperature_kl(p, p, 2.0, q_tau=2.0).item() == pytest.approx(0.0, abs=1e-7)
    # per state over a batch
    assert temperature_kl(torch.stack([p, p]), torch.stack([q, p]), 1.0).shape == (2,)


def test_alignment_net_shape():
    f = AlignmentNet(A_T, A_S)
    linears = [m for m in f.mlp if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(5, 512)] + [(512, 512)] * 3 + [(512, 3)]
    assert sum(isinstance(m, nn.ELU) for m in f.mlp) == 4
    assert f(torch.zeros(7, 2, A_T)).shape == (7, 2, A_S)


# -- 2. alignment trains only F ----------------------------------------------------------------------------
def test_alignment_loss_gradient_reaches_only_F():
    net, f = student(), AlignmentNet(A_T, A_S)
    b = fake_batch(0)
    out = net.forward_sequence(b.obs, None, b.starts)
    z_t = torch.randn(4, 2, A_T)
    kl = alignment_loss(f, z_t, out.logits)
    assert torch.allclose(kl, temperature_kl(f(z_t), out.logits, 1.0))      # KL(softmax F(z_T) || softmax z_S)
    kl.sum().backward()
    assert all(p.grad is None for p in net.parameters())                      # student logits are detached
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in f.parameters())


def test_hook_alignment_step_changes_F_not_the_student():
    net = student()
    hook = CA3CHook(CA3CArgs(mode="kd_distill", align_from=10, distill_from=100), net, [LinearTeacher()])
    s0, f0 = params(net), params(hook.alignment[0])
    logs = drive(hook, net, fake_batch(10))
    assert logs["phase/align"] == 1.0 and logs["phase/distill"] == 0.0
    assert logs["align/kl"] > 0 and math.isnan(logs["distill/kl"])
    assert same(params(net), s0)
    assert not same(params(hook.alignment[0]), f0)


# -- 3. gradient paths of the distillation modes ---------------------------------------------------------
def _grads_after(loss, net):
    net.zero_grad(set_to_none=True)
    loss.backward()
    return {n: (None if p.grad is None else p.grad.abs().sum().item()) for n, p in net.named_parameters()}


def test_kd_distill_gradient_only_through_the_distillation_head():
    net = student()
    b = fake_batch(0)
    out = net.forward_sequence(b.obs, None, b.starts)
    target = torch.randn(4, 2, A_S, requires_grad=True)          # F(z_T): held fixed by the loss
    g = _grads_after(distillation_loss(target, out.extra["distill_logits"], 1.0).sum(), net)
    assert target.grad is None
    for n, v in g.items():
        if n.startswith(("policy.", "value.")):
            assert not v, n                                          # None (or 0): untouched heads
        else:
            assert v and v > 0, n                                    # distill head, convs, LSTM


def test_kd_policy_gradient_into_the_policy_head_not_the_distillation_head():
    net = student()
    b = fake_batch(0)
    out = net.forward_sequence(b.obs, None, b.starts)
    g = _grads_after(distillation_loss(torch.randn(4, 2, A_S), out.logits, 1.0).sum(), net)
    for n, v in g.items():
        if n.startswith(("distill.", "value.")):
            assert not v, n
        else:
            assert v and v > 0, n


@pytest.mark.parametrize("mode,use_f,moved,still", [
    ("kd_distill", True, "distill", "policy"), ("kd_policy", True, "policy", "distill"),
    ("homogeneous", False, "policy", "distill"), ("kd_distill", False, "distill", "policy")])   # last: Fig. 4b
def test_hook_distillation_step_uses_its_own_optimiser_and_head(mode, use_f, moved, still):
    net = student()
    teacher = LinearTeacher(A_T if use_f else A_S)
    hook = CA3CHook(CA3CArgs(mode=mode, align_from=0, distill_from=0, use_alignment=use_f), net, [teacher])
    assert len(hook.alignment) == int(use_f)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    b = fake_batch(50)
    out = net.forward_sequence(b.obs, None, b.starts)
    _, logs = hook.loss(net, b, out)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())   # loss() steps nothing of the student
    assert all(p.grad is None for p in net.parameters())                         # nor fills the learner's .grad
    logs.update(hook.after_update(net, b))
    after = net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert {f"{moved}.weight", f"{moved}.bias", "layers.0.weight", "lstm.weight_ih"} <= changed
    assert not any(k.startswith((f"{still}.", "value.")) for k in changed)
    assert logs["distill/kl"] > 0 and logs["distill/grad_norm"] > 0
    # Adam's first step moves every parameter by about lr, whatever the gradient scale
    step = (after[f"{moved}.weight"] - before[f"{moved}.weight"]).abs().max().item()
    assert step == pytest.approx(1e-4, rel=0.05)


def test_distillation_loss_value_in_the_logs():
    # homogeneous, tau = 1, sum over states: the logged per-state KL equals Eq. 2 on the teacher's logits
    net, teacher = student(), LinearTeacher(A_S)
    hook = CA3CHook(CA3CArgs(mode="homogeneous", distill_from=0), net, [teacher])
    b = fake_batch(0)
    with torch.no_grad():
        out = net.forward_sequence(b.obs, None, b.starts)
        want = temperature_kl(teacher(b.obs.flatten(0, 1)), out.logits.flatten(0, 1), 1.0).mean().item()
    assert drive(hook, net, b)["distill/kl"] == pytest.approx(want, rel=1e-5)


# -- 4. T1 / T2 switch exactly at their steps ------------------------------------------------------------
def test_t1_t2_switch_exactly():
    net = student()
    hook = CA3CHook(CA3CArgs(mode="kd_distill", align_from=100, distill_from=200, distill_until=300),
                    net, [LinearTeacher()])
    seen = []
    for step in (99, 100, 101, 199, 200, 201, 300, 301):
        f0, s0 = params(hook.alignment[0]), params(net)
        logs = drive(hook, net, fake_batch(step))
        aligned, distilled = not same(params(hook.alignment[0]), f0), not same(params(net), s0)
        assert aligned == bool(logs["phase/align"]) and distilled == bool(logs["phase/distill"])
        assert math.isnan(logs["align/kl"]) != aligned
        seen.append((step, aligned, distilled))
    assert seen == [(99, False, False), (100, True, False), (101, True, False), (199, True, False),
                    (200, True, True), (201, True, True), (300, True, True), (301, False, False)]


def test_args_are_checked():
    with pytest.raises(ValueError, match="T2 >= T1"):
        CA3CArgs.from_dict({"align_from": 10, "distill_from": 5})
    with pytest.raises(ValueError, match="mode"):
        CA3CArgs.from_dict({"mode": "kd"})
    with pytest.raises(ValueError, match="without alignment"):
        CA3CHook(CA3CArgs(mode="homogeneous", distill_from=0), student(), [LinearTeacher(A_T)])
    with pytest.raises(ValueError, match="no alignment network"):
        CA3CArgs.from_dict({"use_alignment": False, "offline_alignment": "F.pt"})
    with pytest.raises(ValueError, match="cannot read"):
        CA3CHook(CA3CArgs(), student(), [nn.Linear(3, 3)])


# -- 5. exact resume ---------------------------------------------------------------------------------------
def test_state_dict_round_trip_gives_identical_updates():
    args = CA3CArgs(mode="kd_distill", align_from=0, distill_from=20)
    teachers = [LinearTeacher(), _frozen_ca3c_teacher()]           # feed-forward + recurrent teacher
    net_a = student()
    hook_a = CA3CHook(args, net_a, teachers, seed=3)
    for k in range(3):                                             # Adam moments and LSTM state are non-trivial
        drive(hook_a, net_a, fake_batch(10 * (k + 1), seed=k))
    buf = io.BytesIO()
    torch.save({"agent": net_a.state_dict(), "hook": hook_a.state_dict()}, buf)
    buf.seek(0)
    ck = torch.load(buf, weights_only=False)
    net_b = student(seed=9)                                        # different init, overwritten by the checkpoint
    hook_b = CA3CHook(args, net_b, teachers, seed=4)
    net_b.load_state_dict(ck["agent"])
    hook_b.load_state_dict(ck["hook"])
    for k in range(3, 5):
        b = fake_batch(10 * (k + 1), seed=k)
        la, lb = drive(hook_a, net_a, b), drive(hook_b, net_b, b)
        assert la["distill/kl"] == lb["distill/kl"] and la["align/kl"] == lb["align/kl"]
    assert same(params(net_a), params(net_b))
    assert same(params(hook_a.alignment[1]), params(hook_b.alignment[1]))


def test_alignment_init_is_a_pure_function_of_the_seed():
    torch.manual_seed(123)
    a = CA3CHook(CA3CArgs(), student(), [LinearTeacher()], seed=0)
    torch.manual_seed(456)
    b = CA3CHook(CA3CArgs(), student(), [LinearTeacher()], seed=0)
    assert same(params(a.alignment[0]), params(b.alignment[0]))


# -- 6. offline alignment ----------------------------------------------------------------------------------
def test_offline_alignment_fits_a_permutation_and_is_loaded_frozen(tmp_path):
    g = torch.Generator().manual_seed(0)
    z_t = 2 * torch.randn(256, A_T, generator=g)
    z_e = z_t[:, [2, 0, 4]]                                       # the target expert: a relabelling of 3 actions
    f = AlignmentNet(A_T, A_S, layers=2, width=64)
    hist = train_alignment_offline(f, z_t, z_e, steps=150, lr=3e-3, batch_size=64)
    assert hist[-1] < 0.25 * hist[0]
    save_alignment(tmp_path / "F.pt", [AlignmentNet(A_T, A_S)])
    net = student()
    hook = CA3CHook(CA3CArgs(offline_alignment=str(tmp_path / "F.pt"), align_from=0, distill_from=0), net,
                    [LinearTeacher()])
    f0 = params(hook.alignment[0])
    logs = drive(hook, net, fake_batch(0))
    assert logs["phase/align"] == 0.0 and logs["phase/distill"] == 1.0
    assert same(params(hook.alignment[0]), f0)
    with pytest.raises(FileNotFoundError, match="save_alignment"):
        CA3CHook(CA3CArgs(offline_alignment=str(tmp_path / "missing.pt")), student(), [LinearTeacher()])


# -- 7. end to end with the shared learner ----------------------------------------------------------------
def _frozen_ca3c_teacher():
    torch.manual_seed(7)
    return CA3CNet(OBS, 6, obs_scale=1.0).requires_grad_(False).eval()


class LogitsOf(nn.Module):
    """Wrap a net so that calling it returns its policy logits (a stateless feed-forward teacher)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, obs):
        return self.net(obs).logits


def test_end_to_end_minatar(tmp_path):
    env = make_vec_env("MinAtar/Breakout", 2)
    assert env.obs_shape == OBS and env.n_actions == A_S
    net = student()
    teachers = [_frozen_ca3c_teacher(), LogitsOf(_frozen_ca3c_teacher())]   # recurrent + wrapped
    hook = CA3CHook(CA3CArgs(mode="kd_distill", align_from=100, distill_from=200), net, teachers)
    t_before = [params(t) for t in teachers]
    args = A2CArgs(game="MinAtar/Breakout", net="ca3c", num_envs=2, n_steps=5, total_steps=400, lr=1e-4,
                   lr_decay=False, loss_reduction="sum", max_grad_norm=40, checkpoint_every=0, stats_every=10,
                   log_interval_s=1e9, device="cpu")
    result = train(args, tmp_path, agent=net, hook=hook, env=env)
    assert result["env_steps"] == 400
    rows = list(csv.DictReader(open(tmp_path / "train_stats.csv")))
    assert {"phase/align", "phase/distill", "align/kl", "distill/kl", "align/kl/t1", "distill/kl/t0"} <= set(rows[0])
    by_step = {int(r["env_steps"]): r for r in rows}
    assert by_step[90]["phase/align"] == "0.0" and by_step[90]["align/kl"] == "nan"
    assert by_step[100]["phase/align"] == "1.0" and float(by_step[100]["align/kl"]) > 0
    assert by_step[190]["phase/distill"] == "0.0" and by_step[200]["phase/distill"] == "1.0"
    assert float(by_step[400]["distill/kl"]) > 0 and float(by_step[400]["distill/grad_norm"]) > 0
    assert all(same(a, params(t)) for a, t in zip(t_before, teachers))       # teachers stay frozen
