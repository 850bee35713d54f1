"""The one softened KL (common/losses.py) on values worked out by hand, and the papers' wrappers around it."""

import math

import torch

from common.losses import softened_kl


def test_softened_kl_by_hand():
    # target softmax([0, ln 3]) = [1/4, 3/4], student softmax([0, 0]) = [1/2, 1/2]:
    # KL = 1/4 ln(1/2) + 3/4 ln(3/2)
    want = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    t, s = torch.tensor([[0.0, math.log(3.0)]]), torch.zeros(1, 2)
    assert torch.allclose(softened_kl(t, s), torch.tensor([want]), atol=1e-7)
    # temperatures: the target at tau = 2 on doubled logits, the student at tau = 4 on zeros: the same KL
    assert torch.allclose(softened_kl(2 * t, s, target_tau=2.0, student_tau=4.0), torch.tensor([want]), atol=1e-7)
    # a mask drops the middle action before both softmaxes
    t3, s3 = torch.tensor([[0.0, 50.0, math.log(3.0)]]), torch.tensor([[0.0, -7.0, 0.0]])
    assert torch.allclose(softened_kl(t3, s3, mask=[True, False, True]), torch.tensor([want]), atol=1e-7)
    assert softened_kl(s, s).item() == 0.0


def test_the_papers_losses_are_the_one_kl():
    from papers.cdrl.method import temperature_kl
    from papers.gan_simulator.method import kd_loss
    from papers.hpr_distillation.method import distillation_kl
    from papers.knowledge_flow.method import policy_kl

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 6, generator=g), torch.randn(5, 6, generator=g)
    assert torch.equal(temperature_kl(a, b, 0.5, 2.0), softened_kl(a, b, 0.5, 2.0))
    assert torch.equal(distillation_kl(a, b, 0.01), softened_kl(a, b, 0.01))
    assert torch.equal(policy_kl(a, b), softened_kl(a, b))
    assert torch.equal(kd_loss(a, b, 3.0), softened_kl(a, b, 3.0, 3.0).mean() * 3.0 * 3.0)  # (x T) T, as Eq. S1

