"""Training and evaluating one net of Knowledge Flow's supervised Tables 3-6: :func:`fit` (Adam on an objective
of supervised_objectives.py in seeded random minibatches), :func:`top1_error`, and the ``on_epoch`` recorders
that log p_w (:func:`pw_recorder`, the data of the paper's Fig. 7) and the test accuracy per epoch
(:func:`curve_recorder`, Figs. 4 and 5) without changing the run.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from common.checks import check_finite
from papers.knowledge_flow.method import KnowledgeFlowStudent
from papers.knowledge_flow.supervised_data import Split, minibatches


def fit(model: nn.Module, train: Split, objective, epochs: int, batch_size: int, lr: float, seed: int,
        on_epoch=None) -> nn.Module:
    """Adam on `objective` for `epochs` passes over `train` in seeded random minibatches.

    ``on_epoch(epoch, step)``, if given, is called before training (epoch 0, step 0) and after every epoch
    (epoch e = epochs done, step = optimiser steps done); it must only read the model (no random numbers), so
    the run is the same with or without it."""
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    g = torch.Generator().manual_seed(seed)
    n = len(train.y)
    total = epochs * math.ceil(n / batch_size)
    step = 0
    model.train()
    if on_epoch is not None:
        on_epoch(0, 0)
    for epoch in range(epochs):
        for x, y in minibatches(train, batch_size, g):                 # in memory: randperm(n, g).split(batch_size)
            loss, _ = objective.loss(model, x, y, step / total, step)   # progress as in A2C
            check_finite(loss, {f"{type(objective).__name__} loss": loss}, "supervised training",
                         f"step {step} (epoch {epoch})", f"lower lr (now {lr}) or the lambdas (a supervised run keeps "
                         "no checkpoint: a rerun starts it from scratch)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            objective.after_update(model, None)
            step += 1
        if on_epoch is not None:
            on_epoch(epoch + 1, step)
    return model.eval()


@torch.no_grad()
def top1_error(model: nn.Module, split: Split, batch_size: int = 1024) -> float:
    """Top-1 error in % on `split`."""
    model.eval()
    wrong = sum(int((model(x).logits.argmax(-1) != y).sum()) for x, y in minibatches(split, batch_size))
    return 100.0 * wrong / max(len(split.y), 1)


def pw_recorder(kf: KnowledgeFlowStudent, method: str, seed: int, teacher_names: list[str], out: list):
    """An ``on_epoch`` callback for :func:`fit` that appends p_w of every candidate per student layer to `out`:
    {method, seed, epoch, step, layer, candidate, teacher, source, p_w}. Candidates are named as in the RL
    runner's figures (tables.pw_curves): 'student', 'teacher 0', 'teacher 1', ... in the order of the
    method's teachers; ``teacher`` gives the teacher's name, ``source`` the mixing code's candidate
    (``t0.fc1``). Reads ``kf.pw()`` (a softmax of w) only, so recording leaves the run unchanged."""
    def record(epoch: int, step: int) -> None:
        with torch.no_grad():
            for layer, p in kf.pw().items():
                for k, src in enumerate(kf.candidates[layer]):
                    m = None if k == 0 else kf.sources[layer][k - 1][0]
                    out.append({"method": method, "seed": seed, "epoch": epoch, "step": step, "layer": layer,
                                "candidate": "student" if m is None else f"teacher {m}",
                                "teacher": "" if m is None else teacher_names[m], "source": src,
                                "p_w": float(p[k])})
    return record


def curve_recorder(model: nn.Module, test: Split, method: str, seed: int, out: list, student: nn.Module | None = None):
    """An ``on_epoch`` callback for :func:`fit` that appends the top-1 test accuracy (%) of the model being
    trained to `out` at the start (epoch 0) and after every epoch: {method, seed, epoch, step, test_acc,
    test_acc_student}; for Knowledge Flow `model` is the mixed net and ``test_acc_student`` the accuracy of
    `student` alone (what :func:`export_student` would give at that epoch; empty for other methods). The
    paper's Figs. 4 and 5 plot this curve. Evaluation draws no random numbers and the model's training mode is
    restored, so recording leaves the run unchanged."""
    def record(epoch: int, step: int) -> None:
        was_training = model.training
        acc = 100.0 - top1_error(model, test)
        acc_student = "" if student is None else 100.0 - top1_error(student, test)
        model.train(was_training)
        out.append({"method": method, "seed": seed, "epoch": epoch, "step": step, "test_acc": acc,
                    "test_acc_student": acc_student})
    return record


def _both(*callbacks):
    """One ``on_epoch`` callback calling every given one (None ones skipped) in order; None if none is given."""
    cbs = [c for c in callbacks if c is not None]
    if not cbs:
        return None

    def call(epoch: int, step: int) -> None:
        for c in cbs:
            c(epoch, step)
    return call
