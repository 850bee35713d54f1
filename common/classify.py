"""The one classifier training loop (issue 16): :func:`fit` a net on a training split for E epochs of seeded
minibatches with Adam, on a pluggable objective, and top-1 counts for accuracy / error (:func:`top1_counts`).

Knowledge Flow's supervised tables fit with its objectives (cross-entropy, Eq. 3, Hinton's KD); GAS fits its
image teachers with plain cross-entropy (:class:`CrossEntropy`). An objective has
``loss(model, x, y, progress, step) -> (loss, logs)`` (``progress`` = steps done / all steps, as in the RL
learner) and may have ``after_update(model, batch)``, called after every optimiser step.

Data: a pair ``(x, y)`` of tensors (any tuple of two, e.g. a NamedTuple split), indexed by each minibatch's
indices, or a map-style ``torch.utils.data.Dataset``, whose items are fetched and collated as a DataLoader does.

Minibatch order (:data:`ORDERS`), drawn from a ``torch.Generator`` seeded with the run's seed, one epoch after
another, the last minibatch of an epoch smaller when the batch size does not divide N:

* ``randperm``: ``torch.randperm(N, generator=g).split(batch_size)`` (Knowledge Flow);
* ``dataloader``: what ``DataLoader(data, batch_size, shuffle=True, generator=g)`` draws, draw for draw (GAS's
  teachers were trained by one): each epoch takes one int64 from g (the loader's base seed for worker processes),
  then the permutation, then a second permutation that its sampler draws and drops while finding the epoch's end.
  Its minibatches are the same permutation's as ``randperm``'s after the first draw; the generator is not.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.checks import check_finite

ORDERS = ("randperm", "dataloader")


def logits_of(out) -> torch.Tensor:
    """The logits of a model's output: a tensor, anything with ``.logits`` (common.nets.NetOut), or a tuple
    whose first entry they are ((logits, features))."""
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    return out[0] if logits is None else logits


class CrossEntropy:
    """Plain cross-entropy of the model's logits with the labels."""

    def loss(self, model, x, y, progress, step):
        return F.cross_entropy(logits_of(model(x)), y), {}

    def after_update(self, model, batch):
        pass


def _is_pair(data) -> bool:
    return isinstance(data, tuple) and len(data) == 2


def size(data) -> int:
    """The number of examples of `data` (a pair (x, y) or a Dataset)."""
    return len(data[1]) if _is_pair(data) else len(data)


def epoch_order(n: int, batch_size: int, generator: torch.Generator, order: str = "randperm") -> list[torch.Tensor]:
    """The index tensors of one epoch's minibatches over `n` examples, drawn from `generator` (:data:`ORDERS`)."""
    if order not in ORDERS:
        raise ValueError(f"unknown minibatch order '{order}'; choose one of {', '.join(ORDERS)}")
    if order == "dataloader":
        torch.empty((), dtype=torch.int64).random_(generator=generator)   # the DataLoader iterator's base seed
    perm = torch.randperm(n, generator=generator)
    if order == "dataloader":
        torch.randperm(n, generator=generator)     # RandomSampler's trailing randperm(n)[:0], drawn at the epoch's end
    return list(perm.split(batch_size))


def take(data, idx: torch.Tensor):
    """Minibatch (x, y) of the examples `idx`: a pair's tensors indexed, or a Dataset's items fetched
    (``__getitems__`` where it has one) and collated, as a DataLoader's fetcher does."""
    if _is_pair(data):
        return data[0][idx], data[1][idx]
    keys = idx.tolist()
    items = data.__getitems__(keys) if callable(getattr(data, "__getitems__", None)) else [data[i] for i in keys]
    return torch.utils.data.default_collate(items)


def minibatches(data, batch_size: int, generator: torch.Generator | None = None, order: str = "randperm"
                ) -> Iterator[tuple]:
    """(x, y) minibatches of `data`: in a random `order` drawn from `generator`, or in order (None)."""
    n = size(data)
    if generator is None:
        chunks = torch.arange(n).split(batch_size)
        if _is_pair(data):          # slices: the very tensors an in-order pass has always read
            for i in range(0, n, batch_size):
                yield data[0][i:i + batch_size], data[1][i:i + batch_size]
            return
    else:
        chunks = epoch_order(n, batch_size, generator, order)
    for idx in chunks:
        yield take(data, idx)


def fit(model: nn.Module, train, objective, epochs: int, batch_size: int, lr: float, seed: int, on_epoch=None, *,
        order: str = "randperm", batches: Callable[[torch.Generator], Iterable] | None = None,
        device: torch.device | str | None = None, what: str = "classifier training", fix: str | None = None
        ) -> nn.Module:
    """Adam (lr `lr`, the trainable parameters) on `objective` for `epochs` passes over `train` in seeded random
    minibatches; returns the model in eval mode.

    The minibatches of each epoch are ``batches(g)`` if given (a paper's own reader, e.g. streamed images), else
    :func:`minibatches` of `train` in `order`, with g = ``torch.Generator().manual_seed(seed)`` for the whole
    run; `device`: where each minibatch is moved (None: where it lies). A non-finite loss stops the run before
    the optimiser step (common.checks.check_finite: `what`, the step and epoch, `fix`, default: lower lr).
    ``on_epoch(epoch, step)``, if given, is called before training (0, 0) and after every epoch (epochs done,
    optimiser steps done); it must only read the model (no random numbers), so the run is the same without it."""
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    g = torch.Generator().manual_seed(seed)
    total = epochs * math.ceil(size(train) / batch_size)
    fix = f"lower lr (now {lr})" if fix is None else fix
    after = getattr(objective, "after_update", None)
    step = 0
    model.train()
    if on_epoch is not None:
        on_epoch(0, 0)
    for epoch in range(epochs):
        for x, y in (batches(g) if batches is not None else minibatches(train, batch_size, g, order)):
            if device is not None:
                x, y = x.to(device), torch.as_tensor(y).to(device)
            loss, _ = objective.loss(model, x, y, step / total, step)
            check_finite(loss, {f"{type(objective).__name__} loss": loss}, what, f"step {step} (epoch {epoch})", fix)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if after is not None:
                after(model, None)
            step += 1
        if on_epoch is not None:
            on_epoch(epoch + 1, step)
    return model.eval()


@torch.no_grad()
def top1_counts(model: nn.Module, batches: Iterable, device: torch.device | str | None = None) -> tuple[int, int]:
    """(correct, total): how many of the examples in `batches` ((x, y) minibatches) the model's most likely class
    gets right, x moved to `device` if given; the model is evaluated in eval mode and left in the mode it was in."""
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        for x, y in batches:
            pred = logits_of(model(x if device is None else x.to(device))).argmax(-1)
            correct += int((pred == torch.as_tensor(y).to(pred.device)).sum())
            total += len(y)
    finally:
        model.train(was_training)
    return correct, total
