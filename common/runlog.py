"""What a long run writes as it goes, and where it may be cut and resumed: one module for every learner.

* :class:`CsvLog`: a CSV written row by row (a learning curve, training statistics) that a resumed run first cuts
  back to what its checkpoint had counted (:func:`truncate_csv`), so rows written after the last checkpoint by a
  killed job are not repeated;
* :class:`Progress`: a tqdm bar on a terminal, else a line every `interval` seconds (for job logs);
* :class:`Boundaries`: checkpoint boundaries every ``every`` steps (or updates) and the segment index the envs are
  reseeded from there, the scheme of exact resume (``common.a2c``'s module docstring).

Used by the A2C learner (``common.a2c``), H-PR's distillation learner (``papers.hpr_distillation.method``) and the
teacher zoo (``common.zoo``).
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from common.io import atomic_path


def truncate_csv(path: str | os.PathLike, keep: int | Callable[[list[str]], bool]) -> list[str] | None:
    """Cut a CSV back to its header and the data rows a checkpoint had written; returns the last data row kept
    (None: none, or no file).

    `keep`: the number of data rows to keep (a checkpoint that counted its rows), or a predicate on a row (as
    strings) that keeps the rows it accepts (a checkpoint that knows only its step, e.g. ``lambda r: int(r[0]) <=
    step``). The file is rewritten atomically; a missing file stays missing."""
    path = Path(path)
    if not path.exists():
        return None
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    head, data = rows[:1], rows[1:]
    kept = data[:keep] if isinstance(keep, int) else [r for r in data if keep(r)]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(head + kept)
    return kept[-1] if kept else None


class CsvLog:
    """A CSV written row by row for a run that may be killed and resumed.

    `keep` None starts a new file (an old one is removed); otherwise the run resumes and the file is first cut back
    with :func:`truncate_csv` (`last` is then the last row kept). The header is written to a new or empty file only,
    so a resumed file keeps its own. `rows` counts the data rows (what a checkpoint stores to cut back to).

    `header` None: the columns are those of the first row given to :meth:`write_dict` (training statistics, whose
    columns a hook adds to), written as the header then if the file is still empty."""

    def __init__(self, path: str | os.PathLike, header=None, keep: int | Callable[[list[str]], bool] | None = None):
        self.path = Path(path)
        self.fields = list(header) if header else None
        self.last = None
        if keep is None:
            self.path.unlink(missing_ok=True)
            self.rows = 0
        else:
            self.last = truncate_csv(self.path, keep)
            self.rows = keep if isinstance(keep, int) else 0
        self.f = open(self.path, "a", newline="")
        self.writer = csv.writer(self.f)
        if self.f.tell() == 0 and header:  # a new file (a resumed one keeps its header)
            self.writer.writerow(header)

    def write(self, row) -> None:
        self.writer.writerow(row)
        self.rows += 1

    def write_dict(self, row: dict) -> None:
        """A row by column name. The columns are the header's, else this first row's keys (the header of a still
        empty file); a later row's other keys are dropped and its missing columns left empty (csv.DictWriter with
        extrasaction='ignore')."""
        if self.fields is None:
            self.fields = list(row)
            if self.f.tell() == 0:
                self.writer.writerow(self.fields)
        self.write([row.get(k, "") for k in self.fields])

    def flush(self) -> None:
        """Before a checkpoint: every row it counts is on disk."""
        self.f.flush()

    def close(self) -> None:
        self.f.close()


@dataclass(frozen=True)
class Boundaries:
    """Checkpoint boundaries every `every` steps (0: none). At a boundary a learner saves its checkpoint, ends its
    running games and reseeds its envs from the new segment's index, so a run resumed there continues bit for bit as
    the uninterrupted one."""

    every: int

    def at(self, t: int, start: int) -> bool:
        """Whether step `t` starts a new segment (never the step a run started or resumed at, `start`)."""
        return self.every > 0 and t > start and t % self.every == 0

    def segment(self, t: int) -> int:
        """The segment step `t` lies in (its envs' seed stream)."""
        return t // self.every if self.every > 0 else 0


class Progress:
    """Progress of a long run: a tqdm bar on a terminal, else a line every `interval` s (for job logs)."""

    def __init__(self, total: int, label: str, interval: float):
        self.total, self.label, self.interval = total, label, interval
        self.t0 = time.time()
        self.last = 0.0
        self.start_step = None
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit="step", unit_scale=True, file=sys.stderr)

    def update(self, step: int, recent: list[float], force: bool = False):
        now = time.time()
        if self.start_step is None:
            self.start_step = step
            if self.bar is not None:
                self.bar.update(step - self.bar.n)
        score = f"{np.mean(recent[-10:]):.1f}" if recent else "n/a"
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            if force or now - self.last >= 1.0:
                self.last = now
                self.bar.set_postfix_str(f"score(last 10) {score}")
            if step >= self.total:
                self.bar.close()
            return
        if not force and now - self.last < self.interval:
            return
        self.last = now
        rate = (step - self.start_step) / max(now - self.t0, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        eta_s = f"{eta / 60:.1f} min" if math.isfinite(eta) else "?"
        print(f"[{self.label}] {step:,}/{self.total:,} steps ({100 * step / self.total:.0f}%) | "
              f"{rate:,.0f} steps/s | ETA {eta_s} | mean score (last 10 games) {score}",
              file=sys.stderr, flush=True)
