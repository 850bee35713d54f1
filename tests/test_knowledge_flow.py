"""Knowledge Flow (papers/knowledge_flow/method.py): every formula against hand-computed values."""

import csv
import math

import pytest
import torch
import torch.nn as nn

from common.a2c import A2CArgs, Batch, train
from common.nets import A3CNet, LayeredNet, MinAtarNet, NatureNet
from papers.knowledge_flow.method import (KFArgs, KnowledgeFlowHook, KnowledgeFlowStudent, dependency_loss,
                                          ema_update, export_student, fade_at, finetune_init, policy_kl,
                                          student_independence, student_logit_gap, w_step_budget)

torch.set_num_threads(1)


class FrozenTeacher(nn.Module):
    """Adapter: a LayeredNet as a zoo-style teacher (`forward_preacts(obs) -> list`, `layer_names`)."""

    def __init__(self, net: LayeredNet):
        super().__init__()
        self.net, self.layer_names, self.obs_shape = net, net.layer_names, net.obs_shape
        self.requires_grad_(False).eval()

    def forward_preacts(self, obs):
        return self.net.forward_preacts(obs).extra["preacts"]


def one_layer_net(weight) -> LayeredNet:
    """h = relu(W x), logits = h: one fc layer on a 1x1x2 'image', identity policy head."""
    net = LayeredNet((1, 1, 2), 2, convs=[], fc=2, obs_scale=1.0)
    with torch.no_grad():
        net.layers[0].weight.copy_(torch.tensor(weight, dtype=torch.float32))
        net.layers[0].bias.zero_()
        net.policy.weight.copy_(torch.eye(2))
        net.policy.bias.zero_()
    return net


def uint8_obs(n, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2 if shape[-1] == 10 else 256, (n, *shape), generator=g).to(torch.uint8)


def minatar_kf(links=("conv1", "fc"), seed=0):
    torch.manual_seed(seed)
    student = MinAtarNet((4, 10, 10), 3)
    teacher = FrozenTeacher(MinAtarNet((4, 10, 10), 6))
    return KnowledgeFlowStudent(student, [teacher], [{"teacher": 0, "teacher_layer": l, "student_layer": l}
                                                     for l in links])


def fake_batch(obs, progress=0.5):
    t, n = obs.shape[:2]
    z = torch.zeros(t, n)
    return Batch(obs, torch.zeros(t, n, dtype=torch.long), z, z, z.bool(), None, progress, 0)


# -- Eq. 1-2: the mixed layer ------------------------------------------------------------------------------
def hand_mixed_fc():
    """A one-layer student z_s = x mixed with one teacher z_t = (2 x1, -3 x2) through Q = I, p = [0.25, 0.75];
    and the input x = (1, 2)."""
    student = one_layer_net([[1, 0], [0, 1]])                     # z_s = x
    teacher = FrozenTeacher(one_layer_net([[2, 0], [0, -3]]))     # z_t = (2 x1, -3 x2)
    kf = KnowledgeFlowStudent(student, [teacher], [{"teacher": 0, "teacher_layer": "fc", "student_layer": "fc"}])
    with torch.no_grad():
        kf.Q["fc"][0].weight.copy_(torch.eye(2))
        kf.Q["fc"][0].bias.zero_()
        kf.w["fc"].copy_(torch.log(torch.tensor([1.0, 3.0])))       # p = [0.25, 0.75]
    x = torch.tensor([[[[1, 2]]]], dtype=torch.uint8)
    return kf, x


def test_mixing_one_layer_by_hand():
    kf, x = hand_mixed_fc()
    # h = relu(0.25 * (1, 2) + 0.75 * (2, -6)) = relu(1.75, -4) = (1.75, 0)
    torch.testing.assert_close(kf(x).logits, torch.tensor([[1.75, 0.0]]))


def test_pw_is_softmax_of_w_and_sums_to_one():
    kf = minatar_kf()
    assert kf.pw_table() == {"pw/conv1/student": 0.5, "pw/conv1/t0.conv1": 0.5,   # w = 0: uniform
                             "pw/fc/student": 0.5, "pw/fc/t0.fc": 0.5}
    with torch.no_grad():
        kf.w["conv1"].copy_(torch.tensor([0.0, math.log(4.0)]))
    p = kf.pw()["conv1"]
    torch.testing.assert_close(p, torch.tensor([0.2, 0.8]))
    for q in kf.pw().values():
        assert abs(q.sum().item() - 1.0) < 1e-6


def test_two_teachers_one_teacher_layer_to_two_student_layers():
    torch.manual_seed(0)
    t0, t1 = FrozenTeacher(MinAtarNet((4, 10, 10), 3)), FrozenTeacher(MinAtarNet((4, 10, 10), 5))
    links = [{"teacher": 0, "teacher_layer": "conv1", "student_layer": "conv1"},
             {"teacher": 1, "teacher_layer": "conv1", "student_layer": "conv1"},
             {"teacher": 1, "teacher_layer": "fc", "student_layer": "fc"},
             {"teacher": 1, "teacher_layer": "fc", "student_layer": "conv1"}]
    with pytest.raises(ValueError, match="conv"):
        KnowledgeFlowStudent(MinAtarNet((4, 10, 10), 3), [t0, t1], links)
    kf = KnowledgeFlowStudent(MinAtarNet((4, 10, 10), 3), [t0, t1], links[:3])
    assert kf.candidates == {"conv1": ["student", "t0.conv1", "t1.conv1"], "fc": ["student", "t1.fc"]}
    assert abs(kf.pw_table()["pw/conv1/t1.conv1"] - 1 / 3) < 1e-7


# -- Eq. 5, the lambda1 ramp, the KL term and theta_old ----------------------------------------------------
def test_dependency_loss_by_hand():
    pw = {"conv1": torch.tensor([0.5, 0.5]), "fc": torch.tensor([0.25, 0.5, 0.25])}
    expected = -(math.log(0.5) + math.log(0.25)) / 2
    assert abs(float(dependency_loss(pw, 2)) - expected) < 1e-6
    # L0 counts every student layer: an unlinked third layer adds log 1 = 0 and divides by 3
    assert abs(float(dependency_loss(pw, 3)) - 2 * expected / 3) < 1e-6
    kf = minatar_kf()                                              # both MinAtar layers linked
    with torch.no_grad():
        kf.w["fc"].copy_(torch.tensor([0.0, math.log(3.0)]))       # p_student = 0.25
    assert abs(dependency_loss(kf.pw(), len(kf.layer_names)).item() - expected) < 1e-6


def test_lambda1_ramp():
    hook = KnowledgeFlowHook(KFArgs(lambda1=0.5))
    assert [hook.lambda1_at(p) for p in (0.0, 0.5, 1.0)] == [0.0, 0.25, 0.5]


def test_dependency_loss_gradient_on_w_by_hand():
    """The pull of lambda1 * l_dep on the mixing logits: d/dw^j = lambda1(progress) / L0 * (p_w^j - e_student), the
    force that must outweigh the A2C loss's pull towards a useful teacher (README, kf-minatar-2core finding)."""
    kf = minatar_kf()
    with torch.no_grad():
        kf.w["fc"].copy_(torch.tensor([0.0, math.log(3.0)]))       # p = [0.25, 0.75]; conv1 stays [0.5, 0.5]
    hook = KnowledgeFlowHook(KFArgs(lambda1=0.2, lambda2=0.0))
    obs = uint8_obs(6, (4, 10, 10)).reshape(2, 3, 4, 10, 10)
    loss, logs = hook.loss(kf, fake_batch(obs, progress=0.5), kf.forward_sequence(obs))
    loss.backward()
    assert logs["kf/lambda1"] == pytest.approx(0.1)                 # 0.2 ramped to half way
    # 0.1 / 2 layers * ([0.25, 0.75] - [1, 0]) and 0.05 * ([0.5, 0.5] - [1, 0])
    assert torch.allclose(kf.w["fc"].grad, torch.tensor([-0.0375, 0.0375]), atol=1e-7)
    assert torch.allclose(kf.w["conv1"].grad, torch.tensor([-0.025, 0.025]), atol=1e-7)


def test_w_step_budget_and_logit_gap_by_hand():
    # lr (1 - t/N) for t = 0..3 at N = 4: 1e-3 * (1 + 0.75 + 0.5 + 0.25) = 2.5e-3, times the scale
    assert w_step_budget(1e-3, 4) == pytest.approx(2.5e-3)
    assert w_step_budget(1e-3, 4, w_lr_scale=3.0) == pytest.approx(7.5e-3)
    assert w_step_budget(1e-3, 4, lr_decay=False) == pytest.approx(4e-3)
    # the minatar tier: 5M steps / 80 = 62,500 updates at 7e-4: 7e-4 * 62,501 / 2 = 21.875..., x3 = 65.6
    assert w_step_budget(7e-4, 62_500, 3.0) == pytest.approx(65.6, abs=0.05)
    assert w_step_budget(7e-4, 500_000) == pytest.approx(175.0, abs=0.01)   # the paper tier, scale 1
    # softmax([g, 0]) = 0.99 at g = log 99 = 4.595; with two teachers softmax([g, 0, 0]) = 0.99 at log 198 = 5.288
    assert student_logit_gap(0.99, 2) == pytest.approx(4.595, abs=1e-3)
    assert student_logit_gap(0.99, 3) == pytest.approx(5.288, abs=1e-3)
    g = student_logit_gap(0.99, 3)
    assert float(torch.softmax(torch.tensor([g, 0.0, 0.0]), 0)[0]) == pytest.approx(0.99)


def test_policy_kl_by_hand():
    p, q = torch.tensor([0.5, 0.5]), torch.tensor([0.25, 0.75])
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert abs(float(policy_kl(p.log(), q.log())) - expected) < 1e-6
    assert float(policy_kl(q.log() + 3.0, q.log())) == pytest.approx(0.0, abs=1e-7)  # logits up to a constant


def test_hook_loss_kl_and_theta_old_previous():
    torch.manual_seed(0)
    kf = KnowledgeFlowStudent(MinAtarNet((4, 10, 10), 2))        # no teachers: pi depends on the head only
    hook = KnowledgeFlowHook(KFArgs(lambda1=0.4, lambda2=0.1))
    obs = uint8_obs(6, (4, 10, 10)).reshape(2, 3, 4, 10, 10)
    with torch.no_grad():
        kf.student.policy.weight.zero_()
        kf.student.policy.bias.copy_(torch.log(torch.tensor([0.5, 0.5])))
    loss, logs = hook.loss(kf, fake_batch(obs), kf.forward_sequence(obs))
    assert loss.item() == 0.0 and logs["kf/kl"] == 0.0           # first update: theta_old = theta
    hook.after_update(kf, None)                                   # theta_old <- the pre-step snapshot
    with torch.no_grad():
        kf.student.policy.bias.copy_(torch.log(torch.tensor([0.25, 0.75])))   # an 'optimiser step'
    loss, logs = hook.loss(kf, fake_batch(obs, progress=0.5), kf.forward_sequence(obs))
    kl = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)         # KL(pi_theta || pi_theta_old)
    assert logs["kf/kl"] == pytest.approx(kl, rel=1e-5)
    assert logs["kf/lambda1"] == pytest.approx(0.2) and logs["kf/dep_loss"] == 0.0
    assert loss.item() == pytest.approx(0.1 * kl, rel=1e-5)
    hook.after_update(kf, None)
    torch.testing.assert_close(hook.theta_old["student.policy.bias"], torch.log(torch.tensor([0.25, 0.75])))


def test_kl_gradient_and_teacher_cache():
    kf = minatar_kf()
    hook = KnowledgeFlowHook(KFArgs(lambda1=1.0, lambda2=1.0))
    obs = uint8_obs(4, (4, 10, 10)).reshape(2, 2, 4, 10, 10)
    hook.loss(kf, fake_batch(obs), kf.forward_sequence(obs))
    hook.after_update(kf, None)
    with torch.no_grad():
        kf.Q["fc"][0].weight.mul_(3.0)
    out = kf.forward_sequence(obs)
    loss, logs = hook.loss(kf, fake_batch(obs, progress=1.0), out)
    # old logits from the cached teacher pre-activations equal a full forward with theta_old
    flat = obs.reshape(4, 4, 10, 10)
    torch.testing.assert_close(hook.old_logits(kf, flat, out.extra["teacher_z"]), hook.old_logits(kf, flat))
    assert logs["kf/kl"] > 0 and logs["kf/dep_loss"] == pytest.approx(math.log(2.0))
    loss.backward()
    assert kf.w["fc"].grad is not None and kf.Q["fc"][0].weight.grad is not None
    assert all(p.grad is None for p in kf.teachers.parameters())


def test_ema_update_formula_and_hook_state():
    old, new = {"p": torch.tensor([1.0, -2.0])}, {"p": torch.tensor([3.0, 0.0])}
    ema_update(old, new, 0.9)
    torch.testing.assert_close(old["p"], torch.tensor([1.2, -1.8]))  # 0.9 * old + 0.1 * new
    kf = minatar_kf()
    hook = KnowledgeFlowHook(KFArgs(theta_old="ema", ema_alpha=0.9))
    obs = uint8_obs(2, (4, 10, 10)).reshape(1, 2, 4, 10, 10)
    hook.loss(kf, fake_batch(obs), kf.forward_sequence(obs))
    b0 = kf.student.value.bias.detach().clone()
    with torch.no_grad():
        kf.student.value.bias.add_(1.0)
    hook.loss(kf, fake_batch(obs), kf.forward_sequence(obs))
    hook.after_update(kf, None)
    torch.testing.assert_close(hook.theta_old["student.value.bias"], b0 + 0.1)
    resumed = KnowledgeFlowHook(KFArgs(theta_old="ema"))
    resumed.load_state_dict(hook.state_dict())
    torch.testing.assert_close(resumed.theta_old["student.value.bias"], b0 + 0.1)
    with pytest.raises(ValueError, match="theta_old"):
        KFArgs.from_dict({"theta_old": "average"})


# -- independence, zero teachers, architectures ------------------------------------------------------------
def test_export_student_is_exact_when_pw_student_is_one():
    torch.manual_seed(0)
    teacher = FrozenTeacher(A3CNet((4, 84, 84), 18))
    links = [{"teacher": 0, "teacher_layer": l, "student_layer": l} for l in ("conv1", "conv2", "fc")]
    kf = KnowledgeFlowStudent(A3CNet((4, 84, 84), 6), [teacher], links)
    obs = uint8_obs(3, (4, 84, 84))
    assert student_independence(kf) == {"conv1": 0.5, "conv2": 0.5, "fc": 0.5, "max": 0.5}
    with torch.no_grad():
        for w in kf.w.values():
            w[1:] = -math.inf                        # softmax -> exactly [1, 0]: 1 * z + 0 * Qz = z
    student = export_student(kf)
    assert type(student) is A3CNet
    assert student_independence(kf) == {"conv1": 0.0, "conv2": 0.0, "fc": 0.0, "max": 0.0}
    mixed, alone = kf(obs).logits, student(obs).logits
    assert not torch.equal(mixed, teacher.net(obs).logits[:, :6])
    assert torch.equal(torch.softmax(mixed, -1), torch.softmax(alone, -1))
    plain = A3CNet((4, 84, 84), 6)
    assert sum(p.numel() for p in student.parameters()) == sum(p.numel() for p in plain.parameters())
    assert student.state_dict().keys() == plain.state_dict().keys()
    assert sum(p.numel() for p in kf.parameters() if p.requires_grad) > sum(p.numel() for p in plain.parameters())


def test_fade_schedule_by_hand():
    assert [fade_at(p, 0.0) for p in (0.0, 0.9, 1.0)] == [0.0, 0.0, 0.0]          # off: the paper's method
    # F = 0.2: 0 until progress 0.8, linear to 1 at 0.9, then 1
    assert [fade_at(p, 0.2) for p in (0.0, 0.8, 0.85, 0.9, 0.95)] == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])
    assert fade_at(0.25, 1.0) == pytest.approx(0.5) and fade_at(0.5, 1.0) == 1.0
    with pytest.raises(ValueError, match="fade_teachers"):
        KFArgs.from_dict({"fade_teachers": 1.5})


def test_fading_mixes_towards_the_student_alone_by_hand():
    kf, x = hand_mixed_fc()
    hook = KnowledgeFlowHook(KFArgs(fade_teachers=0.4))
    hook.begin_update(kf, 0.7)                                     # f = (0.7 - 0.6) / 0.2 = 0.5
    assert float(kf.fade) == pytest.approx(0.5)
    # p~ = 0.5 [0.25, 0.75] + 0.5 [1, 0] = [0.625, 0.375]: h = relu(0.625 (1, 2) + 0.375 (2, -6)) = (1.375, 0)
    torch.testing.assert_close(kf(x).logits, torch.tensor([[1.375, 0.0]]))
    assert student_independence(kf)["fc"] == pytest.approx(0.375)
    assert float(dependency_loss(kf.pw(), 1)) == pytest.approx(-math.log(0.25))   # l_dep acts on the learned p_w
    hook.begin_update(kf, 0.8)                                     # f = 1: the student alone, as exported
    assert torch.equal(kf(x).logits, export_student(kf)(x).logits)
    assert student_independence(kf)["max"] == 0.0
    assert kf.state_dict()["fade"] == 1.0                          # a checkpoint carries it
    hook.begin_update(kf, 0.1)
    torch.testing.assert_close(kf(x).logits, torch.tensor([[1.75, 0.0]]))   # before the fade: the paper's mix

def test_zero_teachers_is_the_plain_student():
    torch.manual_seed(0)
    net = A3CNet((4, 84, 84), 6)
    kf = KnowledgeFlowStudent(net)
    obs = uint8_obs(2, (4, 84, 84))
    out, ref = kf(obs), net(obs)
    assert torch.equal(out.logits, ref.logits) and torch.equal(out.value, ref.value)
    seq = kf.forward_sequence(obs.reshape(1, 2, 4, 84, 84))
    assert torch.equal(seq.logits[0], ref.logits)
    assert kf.pw_table() == {} and float(dependency_loss(kf.pw(), 3)) == 0.0
    assert student_independence(kf)["max"] == 0.0


def test_nature_teacher_into_a3c_student():
    torch.manual_seed(0)
    teacher = FrozenTeacher(NatureNet((4, 84, 84), 18))
    links = [{"teacher": 0, "teacher_layer": "conv1", "student_layer": "conv1"},   # 20x20x32 -> 20x20x16
             {"teacher": 0, "teacher_layer": "conv3", "student_layer": "conv2"},   # 7x7x64 -> 9x9x32 (resized)
             {"teacher": 0, "teacher_layer": "fc", "student_layer": "fc"}]         # 512 -> 256
    kf = KnowledgeFlowStudent(A3CNet((4, 84, 84), 14), [teacher], links)
    assert [tuple(kf.Q[j][0].weight.shape) for j in ("conv1", "conv2", "fc")] == \
        [(16, 32, 1, 1), (32, 64, 1, 1), (256, 512)]
    out = kf.forward_sequence(uint8_obs(4, (4, 84, 84)).reshape(2, 2, 4, 84, 84))
    assert out.logits.shape == (2, 2, 14) and out.value.shape == (2, 2)
    out.logits.sum().backward()
    assert kf.Q["conv2"][0].weight.grad is not None
    with pytest.raises(ValueError, match="no layer 'conv4'"):
        KnowledgeFlowStudent(A3CNet((4, 84, 84), 14), [teacher],
                             [{"teacher": 0, "teacher_layer": "conv4", "student_layer": "conv2"}])
    with pytest.raises(ValueError, match="conv"):
        KnowledgeFlowStudent(A3CNet((4, 84, 84), 14), [teacher],
                             [{"teacher": 0, "teacher_layer": "conv3", "student_layer": "fc"}])


def test_finetune_init():
    torch.manual_seed(0)
    teacher, student = A3CNet((4, 84, 84), 18), A3CNet((4, 84, 84), 6)
    with pytest.raises(ValueError, match="new_head=True"):
        finetune_init(student, teacher, new_head=False)
    head = student.policy.weight.detach().clone()
    finetune_init(student, teacher.state_dict(), new_head=True)
    for a, b in zip(student.layers.parameters(), teacher.layers.parameters()):
        assert torch.equal(a, b)
    assert student.policy.weight.shape == (6, 256) and not torch.equal(student.policy.weight, head)
    same = finetune_init(A3CNet((4, 84, 84), 18), teacher, new_head=False)
    assert all(torch.equal(a, b) for a, b in zip(same.parameters(), teacher.parameters()))


# -- end to end with the shared learner ------------------------------------------------------------------
def _run(out_dir, stop_after_updates=None, **kw):
    torch.manual_seed(0)
    teacher = FrozenTeacher(MinAtarNet((4, 10, 10), 6))          # a frozen random MinAtar net
    kf = KnowledgeFlowStudent(MinAtarNet((4, 10, 10), 3), [teacher],
                              [{"teacher": 0, "teacher_layer": l, "student_layer": l} for l in ("conv1", "fc")])
    hook = KnowledgeFlowHook(KFArgs(lambda1=0.5, lambda2=0.01, theta_old=kw.pop("theta_old", "previous")))
    args = A2CArgs(game="MinAtar/Breakout", net="minatar", num_envs=4, device="cpu", lr=1e-3,
                   stats_every=200, log_interval_s=1e9, **kw)
    return train(args, out_dir, agent=kf, hook=hook, stop_after_updates=stop_after_updates), kf, hook


def test_end_to_end_minatar(tmp_path):
    result, kf, hook = _run(tmp_path, total_steps=2000, checkpoint_every=0)
    assert result["env_steps"] == 2000
    rows = list(csv.DictReader(open(tmp_path / "train_stats.csv")))
    assert {"kf/lambda1", "kf/dep_loss", "kf/kl", "pw/conv1/student", "pw/fc/t0.fc"} <= set(rows[0])
    assert float(rows[-1]["kf/lambda1"]) > float(rows[0]["kf/lambda1"])
    assert float(rows[-1]["pw/fc/student"]) > 0.5                 # l_dep pushed p_w(student) up
    assert 0 < student_independence(kf)["max"] < 0.5


def test_resume_is_exact_with_theta_old(tmp_path):
    _, full, _ = _run(tmp_path / "a", total_steps=400, checkpoint_every=200, theta_old="ema")
    _run(tmp_path / "b", total_steps=400, checkpoint_every=200, theta_old="ema", stop_after_updates=15)
    _, resumed, _ = _run(tmp_path / "b", total_steps=400, checkpoint_every=200, theta_old="ema")
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_fade_end_to_end_exports_the_net_that_trained(tmp_path):
    torch.manual_seed(0)
    teacher = FrozenTeacher(MinAtarNet((4, 10, 10), 6))
    kf = KnowledgeFlowStudent(MinAtarNet((4, 10, 10), 3), [teacher],
                              [{"teacher": 0, "teacher_layer": l, "student_layer": l} for l in ("conv1", "fc")])
    hook = KnowledgeFlowHook(KFArgs(lambda1=0.5, lambda2=0.01, fade_teachers=0.5))
    args = A2CArgs(game="MinAtar/Breakout", net="minatar", num_envs=4, device="cpu", lr=1e-3, total_steps=2000,
                   stats_every=20, log_interval_s=1e9, checkpoint_every=0)
    train(args, tmp_path, agent=kf, hook=hook)
    rows = list(csv.DictReader(open(tmp_path / "train_stats.csv")))
    fades = [float(r["kf/fade"]) for r in rows]               # 100 updates of 20 steps: 0 until update 50, 1 from 75
    assert fades[0] == 0.0 and fades[-1] == 1.0 and fades == sorted(fades)
    assert 0.0 < fades[60] < 1.0
    final = __import__("json").load(open(tmp_path / "final.json"))
    assert final["independence"]["max"] == 0.0 and final["fade"] == 1.0
    assert final["pw"]["pw/fc/student"] < 1.0                 # the learned p_w itself stays short of 1
    obs = uint8_obs(5, (4, 10, 10))
    assert torch.equal(kf(obs).logits, export_student(kf)(obs).logits)

def test_update_reuses_rollout_teacher_features_and_matches_a_fresh_pass():
    """Frozen teachers: the rollout's pre-activations are reused for the update's T x N pass, with the same
    logits as running the teachers again; a sequence the rollout never saw runs the teachers."""
    from common.nets import A3CNet
    from papers.knowledge_flow.method import KnowledgeFlowStudent

    torch.manual_seed(0)
    shape = (4, 84, 84)
    teachers = [A3CNet(shape, 6), A3CNet(shape, 6)]
    links = [{"teacher": m, "teacher_layer": n, "student_layer": n} for m in range(2) for n in ("conv1", "fc")]
    kf = KnowledgeFlowStudent(A3CNet(shape, 6), teachers, links)
    obs = torch.randint(0, 255, (3, 2, *shape), dtype=torch.uint8)
    calls = []
    for t in teachers:  # count the teachers' passes
        t.forward_preacts = (lambda f: (lambda x: (calls.append(1), f(x))[1]))(t.forward_preacts)
    with torch.no_grad():
        for k in range(3):
            kf(obs[k])                               # the rollout: one batch of N envs per step
        kf(obs[1, :1])                               # a truncated game's final observation, in between
        kf(obs[2])                                   # the bootstrap value
    n_rollout = len(calls)
    out = kf.forward_sequence(obs)
    assert len(calls) == n_rollout                   # no teacher ran for the update
    fresh = kf.forward(obs.reshape(6, *shape))       # teachers run again on the flat batch
    assert len(calls) > n_rollout
    assert torch.allclose(out.logits.reshape(6, -1), fresh.logits, atol=1e-5)
    other = torch.randint(0, 255, (3, 2, *shape), dtype=torch.uint8)
    n = len(calls)
    kf.forward_sequence(other)                       # never seen: the teachers run
    assert len(calls) > n


def test_lambda2_zero_skips_the_theta_old_pass():
    """Fig. 9's 'no KL' ablation: with lambda2 = 0 the loss is lambda1 * l_dep alone and theta_old is never run."""
    kf = minatar_kf()
    hook = KnowledgeFlowHook(KFArgs(lambda1=1.0, lambda2=0.0))
    hook.old_logits = lambda *a, **k: pytest.fail("theta_old forward pass run with lambda2 = 0")
    obs = uint8_obs(4, (4, 10, 10)).reshape(2, 2, 4, 10, 10)
    loss, logs = hook.loss(kf, fake_batch(obs, progress=1.0), kf.forward_sequence(obs))
    assert loss.item() == pytest.approx(math.log(2.0)) and math.isnan(logs["kf/kl"])   # uniform p_w over 2
