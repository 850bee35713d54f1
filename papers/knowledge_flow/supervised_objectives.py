"""The objectives of Knowledge Flow's supervised Tables 3-6: what each method minimises on a minibatch.

* :class:`CrossEntropy`: the baseline and fine-tuning (the student alone; common.classify's plain cross-entropy);
* :class:`KnowledgeFlowObjective`: Eq. 3 of the paper (:func:`supervised_kf_loss`)::

      CE(f~_theta(x), y) + lambda1 * l_dep(w) + lambda2 * KL(f~_theta(x) || f~_theta_old(x))

  its last two terms from the RL program's :class:`~papers.knowledge_flow.method.KnowledgeFlowHook` (one
  implementation), lambda1 ramped linearly from 0 over training;
* :class:`HintonKD`: Hinton et al. (2015)'s knowledge distillation (:func:`hinton_kd_loss`).

Each has ``loss(model, x, y, progress, step) -> (loss, logs)`` and ``after_update(model, batch)``, which
supervised_fit.fit (common.classify.fit) calls after every optimiser step.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.a2c import Batch
from common.classify import CrossEntropy  # noqa: F401 - the baseline's objective, re-exported under its name here
from papers.knowledge_flow.method import KFArgs, KnowledgeFlowHook, KnowledgeFlowStudent


def supervised_kf_loss(kf: KnowledgeFlowStudent, hook: KnowledgeFlowHook, x, y, progress: float, step: int = 0):
    """Eq. 3 on a minibatch: CE(f~_theta(x), y) + lambda1(progress) * l_dep(w) + lambda2 * KL(f~_theta || f~_theta_old).

    The last two terms come from the RL hook (one implementation): it sees the minibatch as a rollout of
    length 1 ([1, B, ...]), ramps lambda1 with `progress`, and snapshots theta for theta_old.
    Returns (loss, logs, batch); pass `batch` to ``hook.after_update`` after the optimiser step.
    """
    out = kf(x)
    ce = F.cross_entropy(out.logits, y)
    batch = Batch(x.unsqueeze(0), y.unsqueeze(0), None, None, None, None, progress, step)
    transfer, logs = hook.loss(kf, batch, out)
    return ce + transfer, {"ce": ce.item(), **logs}, batch


def hinton_kd_loss(teacher_logits, student_logits, y, temperature: float, alpha: float) -> torch.Tensor:
    """Hinton et al. (2015): alpha * T^2 * H(softmax(t/T), softmax(s/T)) + (1 - alpha) * CE(s, y), with H the
    soft-target cross-entropy (KL plus the teacher's entropy, a constant: same gradients); T^2 keeps the
    soft gradients' scale independent of T."""
    soft = -(F.softmax(teacher_logits / temperature, -1) * F.log_softmax(student_logits / temperature, -1)).sum(-1)
    return alpha * temperature ** 2 * soft.mean() + (1 - alpha) * F.cross_entropy(student_logits, y)


class KnowledgeFlowObjective:
    def __init__(self, args: KFArgs):
        self.hook = KnowledgeFlowHook(args)

    def loss(self, model, x, y, progress, step):
        loss, logs, self._batch = supervised_kf_loss(model, self.hook, x, y, progress, step)
        return loss, logs

    def after_update(self, model, batch=None):
        self.hook.after_update(model, self._batch)


class HintonKD:
    def __init__(self, teacher: nn.Module, temperature: float, alpha: float):
        self.teacher, self.temperature, self.alpha = teacher.requires_grad_(False).eval(), temperature, alpha

    def loss(self, model, x, y, progress, step):
        with torch.no_grad():
            t = self.teacher(x).logits
        return hinton_kd_loss(t, model(x).logits, y, self.temperature, self.alpha), {}

    def after_update(self, model, batch=None):
        pass
