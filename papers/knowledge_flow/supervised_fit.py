"""Training and evaluating one net of Knowledge Flow's supervised Tables 3-6: :func:`fit` (Adam on an objective
of supervised_objectives.py in seeded random minibatches: common.classify's loop, the one both papers use),
:func:`top1_error`, and the ``on_epoch`` recorders that log p_w (:func:`pw_recorder`, the data of the paper's
Fig. 7) and the test accuracy per epoch (:func:`curve_recorder`, Figs. 4 and 5) without changing the run.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from common import classify
from papers.knowledge_flow.method import KnowledgeFlowStudent
from papers.knowledge_flow.supervised_data import Split, minibatches


def fit(model: nn.Module, train: Split, objective, epochs: int, batch_size: int, lr: float, seed: int,
        on_epoch=None) -> nn.Module:
    """Adam on `objective` for `epochs` passes over `train` in seeded random minibatches: common.classify.fit
    (the one classifier loop) in its ``randperm`` order, read by :func:`minibatches` (in memory:
    ``randperm(n, g).split(batch_size)``; a streamed split per minibatch, its crops drawn from the same generator).

    ``on_epoch(epoch, step)``, if given, is called before training (epoch 0, step 0) and after every epoch
    (epoch e = epochs done, step = optimiser steps done); it must only read the model (no random numbers), so
    the run is the same with or without it."""
    return classify.fit(model, train, objective, epochs, batch_size, lr, seed, on_epoch,
                        batches=lambda g: minibatches(train, batch_size, g), what="supervised training",
                        fix=f"lower lr (now {lr}) or the lambdas (a supervised run keeps no checkpoint: a rerun "
                            f"starts it from scratch)")


def top1_error(model: nn.Module, split: Split, batch_size: int = 1024) -> float:
    """Top-1 error in % on `split` (common.classify.top1_counts; the model's training mode is kept)."""
    correct, total = classify.top1_counts(model, minibatches(split, batch_size))
    return 100.0 * (total - correct) / max(total, 1)


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
    paper's Figs. 4 and 5 plot this curve. Evaluation draws no random numbers and keeps the models' training mode,
    so recording leaves the run unchanged."""
    def record(epoch: int, step: int) -> None:
        acc = 100.0 - top1_error(model, test)
        acc_student = "" if student is None else 100.0 - top1_error(student, test)
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
