"""The one softened KL divergence every distillation loss in the repository is written with.

Each paper wraps it under its own name and equation (cA3C Eq. 1-3: ``papers.cdrl.method.temperature_kl``; H-PR
Eq. 4: ``papers.hpr_distillation.method.distillation_kl``; Knowledge Flow's KL to theta_old:
``papers.knowledge_flow.method.policy_kl``; GAS Eq. S1: ``papers.gan_simulator.method.kd_loss``). Supervised
Knowledge Flow's Hinton loss keeps the soft-target cross-entropy form (KL plus the teacher's entropy, the same
gradients; papers/knowledge_flow/supervised_objectives.py hinton_kd_loss).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def softened_kl(target_logits: torch.Tensor, student_logits: torch.Tensor, target_tau: float = 1.0,
                student_tau: float = 1.0, mask=None) -> torch.Tensor:
    """KL(softmax(target / target_tau) || softmax(student / student_tau)) per row, over the last dimension.

    `mask` ([A] bool, True = the action exists; default all): the other outputs are dropped first, so both softmaxes
    run over the kept actions only (H-PR's games in a shared 18-action head). Gradients flow into whichever inputs
    require them (detach a fixed target before calling)."""
    if mask is not None:
        idx = torch.as_tensor(np.flatnonzero(np.asarray(mask, bool)), device=student_logits.device)
        target_logits, student_logits = target_logits[..., idx], student_logits[..., idx]
    log_p = F.log_softmax(target_logits / target_tau, -1)
    log_q = F.log_softmax(student_logits / student_tau, -1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)
