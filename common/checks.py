"""One range check for every argument dataclass, and one check for a non-finite loss.

A field declares its valid values next to it, with :func:`arg` in place of the plain default::

    num_envs: int = arg(16, ">= 1")
    gamma: float = arg(0.99, "[0, 1]")
    loss_reduction: str = arg("mean", choices=("mean", "sum"))
    lambda1_grid: list = arg(factory=lambda: [0.05, 0.1, 0.5], each=">= 0")

Ranges are written ``>= a``, ``> a``, ``<= b``, ``< b`` or as an interval ``[a, b]``, ``(a, b]``, ``[a, b)``,
``(a, b)``. A value of None is never checked (None means "unset: the default or a preset applies").
:func:`check_fields` enforces every declared rule of a dataclass instance; ``common.envs.dataclass_from_dict``,
which every ``from_dict`` uses, calls it, so the arguments are checked when they are built (the Snakefile's
load-time check builds them all before any job starts). Rules between fields (a net that fits the game's
frames, a batch that a buffer must hold) call :func:`fail`, which writes the same one-line error::

    a2c arguments: num_envs must be >= 1, got 0; set num_envs to a value >= 1 (default 16)

:func:`check_finite` is the learners' check of a loss: it names the step, the non-finite loss term and the
last good checkpoint (what a rerun resumes from).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Any, NoReturn

_RANGE = re.compile(r"^\s*(?:(>=|>|<=|<)\s*(\S+)|([\[(])\s*([^,\s]+)\s*,\s*([^\])\s]+)\s*([\])]))\s*$")


@dataclasses.dataclass(frozen=True)
class Range:
    """A numeric range parsed from its text (see the module docstring)."""

    text: str
    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False

    @classmethod
    def parse(cls, text: str) -> "Range":
        m = _RANGE.match(text)
        if not m:
            raise ValueError(f"range '{text}' is not of the form '>= a', '> a', '<= b', '< b' or '[a, b]' / '(a, b)'")
        op, bound, left, lo, hi, right = m.groups()
        if op is not None:
            x = float(bound)
            return {">=": cls(text, lo=x), ">": cls(text, lo=x, lo_open=True),
                    "<=": cls(text, hi=x), "<": cls(text, hi=x, hi_open=True)}[op]
        return cls(text, float(lo), float(hi), left == "(", right == ")")

    def __contains__(self, x) -> bool:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or math.isnan(x):
            return False
        above = x > self.lo if self.lo_open else x >= self.lo
        below = x < self.hi if self.hi_open else x <= self.hi
        return above and below

    def describe(self) -> str:
        """'>= 1' or 'in [0, 1]', as the error message writes it."""
        return self.text if self.text[0] in "<>" else f"in {self.text}"


def arg(default: Any = dataclasses.MISSING, valid: str | None = None, *, choices=None, each: str | None = None,
        factory: Any = dataclasses.MISSING):
    """A dataclass field with its valid range (`valid`, see the module docstring), its `choices`, or, for a list,
    the range of `each` of its (one or more) numbers; `factory` in place of `default` for a mutable default (as
    ``field(default_factory=...)``)."""
    meta = {}
    if valid is not None:
        meta["valid"] = Range.parse(valid)
    if choices is not None:
        meta["choices"] = tuple(choices)
    if each is not None:
        meta["each"] = Range.parse(each)
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def fail(where: str, name: str, value, valid: str, fix: str) -> NoReturn:
    """Raise the one-line error of a bad argument: where, the field, its value, the valid range and the fix."""
    raise ValueError(f"{where}: {name} must be {valid}, got {value!r}; {fix}")


def _default_of(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def check_value(where: str, name: str, value, valid: Range | None = None, choices: tuple | None = None,
                default=None, each: Range | None = None) -> None:
    """Check one value against a range, choices or a range for each element of a list; :func:`fail` if it lies
    outside."""
    if value is None:
        return
    hint = "" if default is None else f" (default {default!r})"
    if each is not None and not (isinstance(value, (list, tuple)) and value and all(v in each for v in value)):
        fail(where, name, value, f"a non-empty list of numbers {each.describe()}",
             f"set {name} to a list of such numbers" + (f" (default {default!r})" if default else ""))
    if valid is not None and value not in valid:
        fail(where, name, value, valid.describe(), f"set {name} to a number {valid.describe()}{hint}")
    if choices is not None and value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        fail(where, name, value, f"one of {listed}", f"set {name} to one of {listed}{hint}")


def check_fields(obj, where: str) -> None:
    """Enforce every range and choice the fields of dataclass instance `obj` declare (see :func:`arg`)."""
    for f in dataclasses.fields(obj):
        valid, choices, each = f.metadata.get("valid"), f.metadata.get("choices"), f.metadata.get("each")
        if valid is not None or choices is not None or each is not None:
            check_value(where, f.name, getattr(obj, f.name), valid, choices, _default_of(f), each)


def check_finite(total, terms: dict, what: str, at: str, fix: str, checkpoint: str | os.PathLike | None = None,
                 ) -> None:
    """Raise FloatingPointError if the loss `total` (a tensor or float) is not finite.

    The message names `what` (the run), `at` (its step / update), each non-finite term of `terms` (name -> tensor or
    float: the parts `total` is made of), `fix`, and, given the run's `checkpoint` path, the last good checkpoint a
    rerun resumes from (or that none was written yet: a rerun starts from scratch). Raised before the optimiser
    step, it stops the run before any final output (model, eval.json, curve.csv) is written, so nothing evaluates a
    broken model. `terms` are only looked at when `total` is not finite: a check costs one device sync."""
    if math.isfinite(_float(total)):
        return
    bad = [f"{k} = {_float(v)}" for k, v in terms.items() if v is not None and not math.isfinite(_float(v))]
    which = ", ".join(bad) if bad else f"total = {_float(total)}"
    ck = ""
    if checkpoint is not None and Path(checkpoint).exists():
        ck = f" The last good checkpoint, {checkpoint}, is kept: rerun the same command to resume from it."
    elif checkpoint is not None:
        ck = f" No checkpoint was written yet ({checkpoint}): a rerun starts from scratch."
    raise FloatingPointError(f"{what}: non-finite loss at {at} ({which}); {fix}.{ck} No final output was written.")


def _float(v) -> float:
    """A float of a number or a tensor (the mean of a per-state term: NaN if any element is)."""
    if hasattr(v, "detach"):
        v = v.detach().float().mean()
    return float(v)
