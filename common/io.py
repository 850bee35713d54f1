"""Atomic file output: nothing half-written ever carries a final name (write `x.part`, then rename).

What survives which fault (tests/test_faults.py): a write that fails (the disk fills up: :class:`DiskFullError`)
or a process killed mid-write leaves the previous complete file under its name; a failed write also removes
its ``.part`` (a killed one may leave it: the next write of that file replaces it). A checkpoint read back is
checked whole first (:func:`read_checkpoint`): a truncated or bit-flipped file is named, with the command that
restarts its run, instead of being loaded as garbage weights.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import random
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class DiskFullError(OSError):
    """The disk (or quota, or file-size limit) ran out while a file was written; the previous file is kept."""


class CorruptFileError(RuntimeError):
    """A file this repository wrote is truncated or damaged (its checksums do not match)."""


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; it is renamed onto `path` only if the block succeeds.

    If the block fails the temporary file is removed and `path` keeps its previous content; a full disk is
    re-raised as :class:`DiskFullError` with a message saying so and what to do."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        if e.errno not in DISK_FULL or isinstance(e, DiskFullError):
            raise
        kept = "its previous complete version is kept" if path.exists() else "it was not written"
        raise DiskFullError(e.errno, f"no space left while writing {path} ({e.strerror}): {kept} and no partial "
                            f"file is left. Free disk space (df -h {path.parent}) and rerun the same command; a "
                            "training run resumes from its last checkpoint") from e
    finally:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()


def write_json(path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def write_csv(path, rows, fieldnames, extrasaction: str = "raise") -> None:
    """A whole CSV at once: the header `fieldnames`, then `rows` (dicts, any iterable) by csv.DictWriter with its
    defaults (\\r\\n line ends, a missing key left empty; a key not in `fieldnames` raises unless
    ``extrasaction="ignore"``)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fieldnames, extrasaction=extrasaction)
        w.writeheader()
        w.writerows(rows)


def read_json(path):
    return json.loads(Path(path).read_text())


def _jsonable(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x)}")


def torch_save(obj, path) -> None:
    # through a Python file object: a write error then surfaces as OSError with its errno (ENOSPC), where
    # torch's own file writer reports only "unexpected pos"
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def verify_torch_file(path: str | os.PathLike) -> None:
    """Raise CorruptFileError unless `path` is a complete, undamaged torch.save archive. torch.load fails on a
    truncated file but loads a flipped bit in tensor data as a wrong weight; the zip archive's CRC-32 of every
    member (which torch writes and never reads) catches both. Reads the whole file once."""
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, EOFError, ValueError) as e:
        raise CorruptFileError(f"not a complete torch archive: {e}") from e
    if bad is not None:
        raise CorruptFileError(f"checksum mismatch in its member {bad}")


def read_checkpoint(path: str | os.PathLike, device="cpu") -> dict:
    """A checkpoint written by torch_save, checked whole first; a truncated or damaged file (a disk fault, a copy
    cut short) stops with one error naming the file and the command that restarts the run from scratch."""
    path = Path(path)
    try:
        verify_torch_file(path)
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as e:  # noqa: BLE001 - any failure here means the file is unusable
        raise CorruptFileError(
            f"checkpoint {path} is corrupt or unreadable ({e}): the run cannot resume from it. Restart the run from "
            f"scratch: rm {path} and rerun the same command (the other files in {path.parent} are kept; the run "
            "rewrites them as it trains again)") from e


def derive_seed(seed: int, *stream: int) -> int:
    """The one way a run derives a seed for one of its random streams: the first 32-bit word of numpy's
    SeedSequence([seed, *stream]); independent streams for different `stream` keys (a fixed integer per kind, e.g.
    the learner's action sampler 104_729, then indices). Callers that need a seed below 2**31 - 1 (ale-py's and
    gymnasium's envs) take it modulo that."""
    return int(np.random.SeedSequence([int(seed), *(int(k) for k in stream)]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """The one seeding function: python, numpy and torch (env seeds are passed to `reset`)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """The global RNG states (python, numpy, torch's CPU generator and, once CUDA is in use, every GPU's)."""
    s = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():   # a GPU run samples its actions on the GPU
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def set_rng_state(s: dict) -> None:
    """Restore :func:`rng_state`. The torch states go back to the CPU first: a checkpoint read with
    ``map_location=<a GPU>`` holds them on that GPU, and torch only takes a CPU ByteTensor. The GPU generators are
    restored where the state has them and this machine has CUDA (a GPU checkpoint resumed on a CPU machine
    skips them)."""
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"].cpu())
    if "cuda" in s and torch.cuda.is_available():
        for i, t in enumerate(s["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(t.cpu(), i)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
