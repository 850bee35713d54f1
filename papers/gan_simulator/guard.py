"""The data guard of the GAS experiments: the real training set (and the real rollouts) is wrapped in
:class:`RealDataGuard`, locked while a data-free method runs, so that any access raises :class:`RealDataLeak`."""
from __future__ import annotations

import contextlib

import torch


class RealDataLeak(RuntimeError):
    """Real data was reached while a data-free method was running."""


class RealDataGuard(torch.utils.data.Dataset):
    """A dataset wrapper that raises :class:`RealDataLeak` on any access while locked (``with guard.lock(m):``)."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.locked_by: str | None = None
        self.touches = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        if self.locked_by is not None:
            raise RealDataLeak(f"real data was accessed while the data-free method '{self.locked_by}' was running")
        self.touches += 1
        return self.dataset[i]

    @contextlib.contextmanager
    def lock(self, method: str):
        self.locked_by = method
        try:
            yield self
        finally:
            self.locked_by = None
