"""Replay memory of one game for policy distillation: Uniform, rank-based PR and H-PR (Yin & Pan 2017).

One class, :class:`ReplayMemory`, serves all three samplers of the distillation learner, chosen by
``ReplayConfig.kind``::

    mem = ReplayMemory(cfg, n_actions=18, action_mask=game_mask, v_range=(v_min, v_max))
    mem.add(obs, q_teacher, episode_start)                     # one env step
    idx, batch, w = mem.sample(32, rng, beta=beta_now)         # batch.obs [32, 4, 84, 84] uint8
    mem.update_priorities(idx, td_error_eq5(batch.q_teacher, q_student, tau, mask))

Storage
-------
Frames are stored once: one 84x84 uint8 frame per env step in a ring of ``F`` frames, and the slot of
step ``t`` (``t % F``) also holds that step's experience: teacher Q-values (float32 [n_actions]),
V(s) = max_a Q_T(s, a) over the game's actions (Eq. 1), and bookkeeping. The stacked observation of step
``t`` is rebuilt at sample time from frames ``t-k+1 .. t`` (k = ``frame_stack``). Frames from before the
episode's first frame are **zero** (``pad="zero"``, the default: it is what the project's ale-py vector env
and SB3's ``VecFrameStack`` show the agent at an episode start) or repeat the first frame (``pad="first"``).
When frame ``t`` overwrites frame ``t-F``, every experience that still needs frame ``t-F`` (the one stored
in that slot and up to k-1 later ones whose stack reaches back to it) is removed from its partition, so an
experience whose frames are gone can never be sampled. ``F`` is ``capacity`` (uniform, rank) or
``partitions * partition_capacity`` (hpr). Indices handed out are global step numbers, so a priority update
for an experience evicted in the meantime is recognised and ignored.

Measured size (``nbytes / F`` with 84x84 frames and 18 actions; ``scripts/bench_replay.py`` prints it):
uniform 7,147 B, rank 1 x 1M 7,188 B, hpr 5 x 200k 7,183 B per experience. The frame alone is 7,056 B, so
the target of <2.4 kB per experience (10 games x 1M in 24 GiB) cannot be met without compressing or
shrinking frames, which this module does not do. Honest totals for the paper tier: H-PR 10 games x
5 x 200k = 66.9 GiB; Uniform 10 games x 500k = 33.3 GiB; neither fits 24 GiB. 24 GiB holds at most ~358k
experiences per game for 10 games; with headroom for the rest of the process, 300k per game (H-PR 5 x 60k:
20.1 GiB; Uniform 300k: 20.0 GiB), or 5 x 160k per game for the 4-game H-PR study (21.4 GiB). The tier
configs must state the capacity they use and that it is smaller than the paper's.

Samplers
--------
``uniform``: uniform over valid experiences (rejection from the ring: O(1) expected); weights all 1.

``rank`` (PR, Schaul et al. 2016) is ``hpr`` with one partition, run by the same code, so "p = 1 reduces
H-PR to PR" holds by construction and is tested.

``hpr``: ``p`` partitions by teacher state value with ``partition_edges`` splitting [V_min, V_max] evenly
(partition j = [V_j, V_j+1), the last one closed; values outside clamp to the end partitions). Partition j
has its own FIFO of ``partition_capacity`` experiences and its own rank-based queue. Per draw:

* partition j with ``partition_probs``: P_j = N_j / sum_k N_k, N_j = experiences *assigned* to j among
  the last ``window`` additions (exact counts, O(1) per add);
* experience k in j with P_j[k] = rank_j(k)^-alpha / sum_t t^-alpha over the M_j experiences it holds
  (Eq. 6), by descent of a per-partition sum-tree (:class:`SumTrees`, fanout <= 128, prefix sums
  per block) whose leaves are rank_j(k)^-alpha: O(log M_j) per draw and per priority update;
* P(k) = P_j * P_j[k] (Eq. 7); importance weight w = (1 / (N_j * P_j[k]))^beta, divided by the
  minibatch maximum (Eq. 8 as read in docs/reference_notes.md §2; for p = 1 the factor N_1 cancels and this is
  Schaul's (1/(N*P(k)))^beta). Draws are i.i.d. (with replacement), not stratified.

Exact and approximate. Partition choice, the sum-tree sampling and the weights are exact for the leaf
values the tree holds. The leaves are the exact Eq. 6 ranks right after a re-sort; a partition re-sorts
when its changes (additions, priority updates, evictions) since the last re-sort reach
``max(rank_refresh_min, rank_refresh_fraction * M_j)``, or when :meth:`ReplayMemory.refresh` is called.
Between re-sorts a changed experience gets an estimated rank (updated priority: 1 + number of priorities
above it in the last re-sort's snapshot, O(log M_j); new experience: max priority, ranks 1, 2, ... in order
of arrival since the re-sort), and unchanged experiences keep their rank from the re-sort. Every rank is
therefore off by at most (changes since the re-sort + 1). The re-sort merges the changed experiences into
the still-sorted unchanged ones (O(M_j + c log c)), so its amortised cost per change is
O(1 / rank_refresh_fraction). Ties in priority are ranked in an arbitrary but deterministic order.
New experiences get the running maximum priority (Schaul 2016), starting at ``initial_priority`` = 1,
which is above every Eq. 5 value (|delta| <= 2 / |A_T| <= 1), so they start at the top ranks.

Defaults where the paper is silent: alpha 0.7 and beta 0.5 -> 1 (Schaul's rank-based values; the caller
anneals beta and passes it to ``sample``); ``window`` 100,000 additions (one tenth of the paper's H-PR
memory: recent enough to follow the student's changing state distribution, large enough that a 1% partition
has N_j ~ 1,000), clamped to F - k + 1 so that every partition with N_j > 0 holds an experience.

Priorities |delta| (Eq. 5) are computed by the learner; :func:`td_error_eq5` implements it.

Speed (2-core CPU, ``scripts/bench_replay.py --n 200000``, batch 32): uniform ~9,000 minibatches/s,
rank ~5,300, hpr (p = 5) ~5,500 (0.62x uniform: most of a minibatch is gathering 128 frames, which all
samplers share); ~110,000 priority updates/s including the amortised re-sorts; 26-80k additions/s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from common.checks import arg, check_fields, fail
from common.envs import dataclass_from_dict

KINDS = ("uniform", "rank", "hpr")


@dataclass
class ReplayConfig:
    """Replay memory of one game; paper values in the docstrings (docs/reference_notes.md §2)."""

    kind: str = arg("hpr", choices=KINDS)
    """uniform | rank (PR, Schaul 2016) | hpr (hierarchical prioritized replay)"""
    capacity: int = arg(500_000, ">= 1")
    """experiences for uniform and rank (paper: Uniform 500,000; PR's size is not given)"""
    partitions: int = arg(5, ">= 1")
    """p, H-PR partitions (paper: 5; 10 and 15 in Fig. 5)"""
    partition_capacity: int = arg(200_000, ">= 1")
    """experiences per H-PR partition (paper: 200,000)"""
    window: int = arg(100_000, ">= 1")
    """recent additions over which N_j is counted (paper: 'a time window', length not given)"""
    alpha: float = arg(0.7, ">= 0")
    """rank-based exponent of Eq. 6 (not given; Schaul's rank-based 0.7)"""
    beta0: float = arg(0.5, "[0, 1]")
    """importance-sampling exponent at the start, annealed linearly to 1 (Schaul's rank-based schedule)"""
    frame_stack: int = arg(4, ">= 1")
    """k frames per observation, rebuilt at sample time"""
    pad: str = arg("zero", choices=("zero", "first"))
    """frames before an episode start: zero (as the env shows them) | first (repeat the first frame)"""
    initial_priority: float = arg(1.0, "> 0")
    """priority of new experiences until a larger |delta| is seen (then the running maximum)"""
    rank_refresh_fraction: float = arg(0.01, "[0, 1]")
    """a partition re-sorts its ranks after this fraction of its size in changes ..."""
    rank_refresh_min: int = arg(64, ">= 1")
    """... or this many changes, whichever is larger"""

    @classmethod
    def from_dict(cls, d: dict | None) -> "ReplayConfig":
        return dataclass_from_dict(cls, d or {}, where="replay")

    def beta(self, progress: float) -> float:
        """beta annealed linearly from beta0 to 1 over training progress in [0, 1]."""
        return self.beta0 + (1.0 - self.beta0) * min(max(progress, 0.0), 1.0)


class Batch(NamedTuple):
    obs: np.ndarray
    """uint8 [B, k, H, W] stacked observations"""
    q_teacher: np.ndarray
    """float32 [B, n_actions] teacher Q-values (the distillation target)"""
    value: np.ndarray
    """float32 [B] teacher state value V(s) (Eq. 1)"""


def partition_edges(v_min: float, v_max: float, p: int) -> np.ndarray:
    """V_1 .. V_p+1: [V_min, V_max] split evenly into p partitions."""
    if not v_max > v_min:
        raise ValueError(f"H-PR needs V_max > V_min, got [{v_min}, {v_max}]: measure them from teacher play")
    return np.linspace(v_min, v_max, p + 1)


def td_error_eq5(q_teacher, q_student, tau: float, action_mask=None):
    """Eq. 5: |delta| = (1/|A_T|) * || softmax(q_T / tau) - softmax(q_S) ||_1 over the game's actions.

    Rows of [B, A] torch tensors or numpy arrays; `action_mask` [A] or [B, A] (True = the game has the
    action; default all). Softmaxes are taken over the game's actions only. Returns [B], same library.
    """
    if isinstance(q_teacher, torch.Tensor):
        with torch.no_grad():
            mask = torch.ones_like(q_teacher, dtype=torch.bool) if action_mask is None else torch.as_tensor(
                action_mask, dtype=torch.bool, device=q_teacher.device).expand_as(q_teacher)
            pt = torch.softmax((q_teacher / tau).masked_fill(~mask, -torch.inf), -1)
            ps = torch.softmax(q_student.masked_fill(~mask, -torch.inf), -1)
            return (pt - ps).abs().sum(-1) / mask.sum(-1)
    q_teacher, q_student = np.asarray(q_teacher, np.float64), np.asarray(q_student, np.float64)
    mask = np.broadcast_to(np.ones(q_teacher.shape[-1], bool) if action_mask is None else
                           np.asarray(action_mask, bool), q_teacher.shape)

    def softmax(z):
        z = np.where(mask, z, -np.inf)
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    return np.abs(softmax(q_teacher / tau) - softmax(q_student)).sum(-1) / mask.sum(-1)


class ReplayMemory:
    """Circular frame store + Uniform / rank / H-PR sampler of one game (see the module docstring)."""

    def __init__(self, cfg: ReplayConfig | dict, n_actions: int = 18, action_mask=None, v_range=None,
                 frame_shape=(84, 84)):
        cfg = cfg if isinstance(cfg, ReplayConfig) else ReplayConfig.from_dict(cfg)
        check_fields(cfg, "replay")  # a ReplayConfig built directly, not through from_dict
        self.cfg, self.k, self.kind = cfg, cfg.frame_stack, cfg.kind
        self.ranked = cfg.kind != "uniform"
        self.p = cfg.partitions if cfg.kind == "hpr" else 1
        self.C = cfg.partition_capacity if cfg.kind == "hpr" else cfg.capacity   # per partition
        self.F = self.p * self.C                                                 # frame ring = experience slots
        if self.F < self.k:
            fail("replay", "capacity", self.F, f">= frame_stack ({self.k})", "give the memory room for one stacked "
                 "observation")
        self.action_mask = np.ones(n_actions, bool) if action_mask is None else np.asarray(action_mask, bool)
        if cfg.kind == "hpr":
            if v_range is None:
                raise ValueError("replay.kind 'hpr' needs v_range=(V_min, V_max) of the teacher's state values")
            self.partition_edges = partition_edges(*v_range, self.p)
        # per step slot (ring of F)
        self.frames = np.zeros((self.F, *frame_shape), np.uint8)
        self.q = np.zeros((self.F, n_actions), np.float32)
        self.value = np.zeros(self.F, np.float32)
        self.step = np.full(self.F, -1, np.int64)        # global step stored in the slot
        self.n_back = np.zeros(self.F, np.int8)          # frames before this one in the same episode (<= k-1)
        self.part = np.full(self.F, -1, np.int16)        # partition of a valid experience, -1 = invalid
        self.pos = np.zeros(self.F, np.int32)            # position inside its partition
        self.size = np.zeros(self.p, np.int64)           # M_j: valid experiences per partition
        self.t = 0
        self._since_start = 0
        self._off = np.arange(1 - self.k, 1)              # frame offsets of a stack
        if not self.ranked:
            return
        # per partition: FIFO of C positions, priorities, rank snapshot, sum-tree of rank^-alpha leaves
        p, C = self.p, self.C
        self.slot_of = np.full((p, C), -1, np.int32)
        self.prio = np.zeros((p, C), np.float32)
        self.dirty = np.zeros((p, C), bool)
        self.order = np.zeros((p, C), np.int32)          # positions by descending priority at the last re-sort
        self.snap = np.zeros((p, C), np.float32)         # -priority in that order (ascending)
        self.n_order = np.zeros(p, np.int64)
        self.tree = SumTrees(p, C)                       # leaves: sigma(k)^alpha of Eq. 6
        self.fifo = np.zeros(p, np.int64)
        self.changes = np.zeros(p, np.int64)
        self.n_new = np.zeros(p, np.int64)
        self.rank_w = np.zeros(C + 2)
        self.rank_w[1:] = np.arange(1, C + 2, dtype=np.float64) ** -cfg.alpha   # sigma(k)^alpha, Eq. 6
        self.max_priority = float(cfg.initial_priority)
        self.W = min(cfg.window, self.F - self.k + 1)
        self.win = np.full(self.W, -1, np.int16)         # partitions of the last W additions
        self.counts = np.zeros(p, np.int64)              # N_j
        self._wptr = 0

    # ---------------------------------------------------------------- checkpoints
    # what changes as the memory fills and learns (the rest follows from the config): arrays, restored in place
    # (views such as SumTrees.total stay views), and counters
    _STATE = ("frames", "q", "value", "step", "n_back", "part", "pos", "size", "t", "_since_start")
    _RANKED_STATE = ("slot_of", "prio", "dirty", "order", "snap", "n_order", "fifo", "changes", "n_new",
                     "max_priority", "win", "counts", "_wptr")

    def state_dict(self) -> dict:
        """Everything that changes as the memory fills and learns (its sum-trees too), for a checkpoint. The arrays
        are the memory's own, not copies (as torch's state_dict): save them before the memory changes again."""
        names = self._STATE + (self._RANKED_STATE if self.ranked else ())
        memory = {k: getattr(self, k) for k in names}
        if self.kind == "hpr":
            memory["partition_edges"] = self.partition_edges
        return {"memory": memory, "tree": self.tree.state_dict() if self.ranked else None}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` into a memory built with the same config, action count and frame shape (in
        place; a saved array of another shape is an error)."""
        names = self._STATE + (self._RANKED_STATE if self.ranked else ())
        saved = state["memory"]
        if self.kind == "hpr":
            names += ("partition_edges",)
        missing = [k for k in names if k not in saved]
        if missing or (state.get("tree") is None) == self.ranked:
            raise ValueError(f"replay state does not fit this '{self.kind}' memory (missing {missing or 'its trees'}): "
                             "it was saved from a memory of another kind")
        for k in names:
            _restore(self, k, saved[k])
        if self.ranked:
            self.tree.load_state_dict(state["tree"])

    # ---------------------------------------------------------------- storage
    def __len__(self) -> int:
        return int(self.size.sum())

    @property
    def nbytes(self) -> int:
        """Bytes of every array the memory holds (frames, experience data, partitions, sum-trees)."""
        arrays = list(vars(self).values()) + (list(vars(self.tree).values()) + self.tree.pre if self.ranked else [])
        return sum(a.nbytes for a in arrays if isinstance(a, np.ndarray) and a.base is None)

    @property
    def bytes_per_experience(self) -> float:
        return self.nbytes / self.F

    def partition_of(self, values) -> np.ndarray:
        """Partition index of teacher state values (clamped to the end partitions)."""
        if self.kind != "hpr":
            return np.zeros(np.shape(values), np.int64)
        return np.searchsorted(self.partition_edges[1:-1], values, side="right")

    def add(self, obs, q_teacher, episode_start: bool = False, value: float | None = None) -> None:
        """Store one env step: `obs` is the newest frame [H, W] or the stacked obs [k, H, W] (its last
        frame is kept); `episode_start` marks the first observation of an episode; V(s) = max of
        `q_teacher` over the game's actions unless `value` is given."""
        obs = np.asarray(obs)
        t, F = self.t, self.F
        s = t % F
        if t >= F:  # frame t-F is overwritten: drop every experience that still needs it
            self._evict(s)
            for d in range(1, self.k):
                s2 = (s + d) % F
                if self.part[s2] >= 0 and self.n_back[s2] >= d:
                    self._evict(s2)
        self._since_start = 0 if (episode_start or t == 0) else self._since_start + 1
        self.frames[s] = obs[-1] if obs.ndim == 3 else obs
        self.n_back[s] = min(self._since_start, self.k - 1)
        self.step[s] = t
        self.q[s] = q_teacher
        v = float(np.max(np.asarray(q_teacher)[self.action_mask])) if value is None else float(value)  # Eq. 1
        self.value[s] = v
        j = int(self.partition_of(v))
        self.part[s] = j
        self.size[j] += 1
        self.t = t + 1
        if not self.ranked:
            return
        old = self.win[self._wptr]                       # window counts N_j
        if old >= 0:
            self.counts[old] -= 1
        self.win[self._wptr] = j
        self.counts[j] += 1
        self._wptr = (self._wptr + 1) % self.W
        pos = int(self.fifo[j] % self.C)                 # partition FIFO: overwrite its oldest
        self.fifo[j] += 1
        old = self.slot_of[j, pos]
        if old >= 0:
            self._evict(old, clear_leaf=False)
        self.slot_of[j, pos], self.pos[s] = s, pos
        self.prio[j, pos] = self.max_priority
        self.dirty[j, pos] = True
        self.tree.set(j, pos, self.rank_w[min(1 + self.n_new[j], self.C)])  # new: top ranks, in arrival order
        self.n_new[j] += 1
        self._changed(j, 1)

    def _evict(self, s: int, clear_leaf: bool = True) -> None:
        j = int(self.part[s])
        if j < 0:
            return
        self.part[s] = -1
        self.size[j] -= 1
        if self.ranked:
            pos = int(self.pos[s])
            self.slot_of[j, pos] = -1
            if clear_leaf:
                self.tree.set(j, pos, 0.0)
                self._changed(j, 1)

    def _observations(self, s: np.ndarray) -> np.ndarray:
        """Stacked observations [B, k, H, W] of slots `s`, padded before episode starts."""
        off = self._off
        back = -self.n_back[s][:, None]
        obs = self.frames[(s[:, None] + np.maximum(off, back)) % self.F]
        if self.cfg.pad == "zero" and back.max() > off[0]:
            obs[off < back] = 0
        return obs

    # ---------------------------------------------------------------- sampling
    def partition_probs(self) -> np.ndarray:
        """P_j = N_j / sum_k N_k over the last `window` additions."""
        if not self.ranked:
            return np.ones(1)
        return self.counts / self.counts.sum()

    def sample(self, batch_size: int, rng: np.random.Generator, beta: float = 1.0):
        """-> (indices [B] int64 global steps, Batch, importance weights [B] float32, max 1)."""
        if self.t == 0:
            raise RuntimeError("sample() from an empty replay memory: add experiences first")
        if not self.ranked:
            n = min(self.t, self.F)
            s = rng.integers(0, n, batch_size)
            while (bad := self.part[s] < 0).any():      # reject the few slots invalidated at the wrap
                s[bad] = rng.integers(0, n, int(bad.sum()))
            w = np.ones(batch_size, np.float32)
        else:
            N = self.counts                              # invariant: N_j > 0 only where M_j > 0 (window <= F-k+1)
            u = rng.random((2, batch_size))
            j = np.searchsorted(np.cumsum(N), u[0] * N.sum(), side="right")   # P_j = N_j / sum_k N_k
            pos, p_in = self.tree.sample(j, u[1])        # P_j[k], Eq. 6
            s = self.slot_of[j, pos]
            w = (N[j] * p_in) ** -beta                   # Eq. 8
            w = (w / w.max()).astype(np.float32)
        return self.step[s], Batch(self._observations(s), self.q[s], self.value[s]), w

    def batch(self, indices) -> Batch:
        """The stored experiences with these global step indices (all must still be valid)."""
        idx = np.asarray(indices, np.int64)
        s = idx % self.F
        if not ((self.step[s] == idx) & (self.part[s] >= 0)).all():
            raise KeyError(f"experiences {idx[(self.step[s] != idx) | (self.part[s] < 0)]} are no longer stored")
        return Batch(self._observations(s), self.q[s], self.value[s])

    def probabilities(self):
        """(indices, P(k) = P_j * P_j[k]) of every valid experience (Eq. 7); O(n), for tests and checks."""
        s = np.flatnonzero(self.part >= 0)
        if not self.ranked:
            return self.step[s], np.full(len(s), 1.0 / len(s))
        j, pos = self.part[s].astype(np.int64), self.pos[s]
        return self.step[s], self.partition_probs()[j] * self.tree.leaves[j, pos] / self.tree.total[j]

    # ---------------------------------------------------------------- priorities
    def update_priorities(self, indices, td_errors) -> None:
        """Set |delta| (Eq. 5) of sampled experiences; indices evicted since sampling are ignored."""
        if not self.ranked:
            return
        idx = np.asarray(indices, np.int64)
        pr = np.abs(np.asarray(td_errors, np.float32).reshape(-1))
        if not np.isfinite(pr).all():
            raise ValueError("update_priorities got a non-finite |delta|: the student's outputs are NaN/inf "
                             "(check the learning rate and the loss)")
        s = idx % self.F
        ok = (self.step[s] == idx) & (self.part[s] >= 0)
        s, pr = s[ok], pr[ok]
        if len(s) == 0:
            return
        j, pos = self.part[s].astype(np.int64), self.pos[s].astype(np.int64)
        self.prio[j, pos] = pr
        self.dirty[j, pos] = True
        self.max_priority = max(self.max_priority, float(pr.max()))
        rank = np.empty(len(s), np.int64)
        for jj in np.unique(j):                          # estimated rank against the last re-sort
            m = j == jj
            rank[m] = 1 + np.searchsorted(self.snap[jj, :self.n_order[jj]], -pr[m], side="left")
        self.tree.set_many(j, pos, self.rank_w[np.minimum(rank, self.C)])
        for jj, c in enumerate(np.bincount(j, minlength=self.p)):
            if c:
                self._changed(jj, c)

    def refresh(self) -> None:
        """Re-sort every partition now: the leaves become the exact ranks of Eq. 6."""
        if self.ranked:
            for j in range(self.p):
                self._resort(j)

    def _changed(self, j: int, c: int) -> None:
        self.changes[j] += c
        if self.changes[j] >= max(self.cfg.rank_refresh_min, self.cfg.rank_refresh_fraction * self.size[j]):
            self._resort(j)

    def _resort(self, j: int) -> None:
        """Merge the changed positions into the still-sorted unchanged ones; leaves = rank^-alpha."""
        prio, valid, dirty = self.prio[j], self.slot_of[j] >= 0, self.dirty[j]
        old = self.order[j, :self.n_order[j]]
        keep = old[valid[old] & ~dirty[old]]
        changed = np.flatnonzero(valid & dirty)
        changed = changed[np.argsort(-prio[changed], kind="stable")]
        order = np.insert(keep, np.searchsorted(-prio[keep], -prio[changed], side="left"), changed)
        n = len(order)
        self.order[j, :n], self.snap[j, :n], self.n_order[j] = order, -prio[order], n
        leaves = self.tree.leaves[j]
        leaves[:] = 0.0
        leaves[order] = self.rank_w[1:n + 1]
        self.tree.rebuild(j)
        dirty[:] = False
        self.changes[j] = self.n_new[j] = 0


class SumTrees:
    """p sum-trees of L levels and fanout K <= 128, stored as blocks of prefix sums.

    L = ceil(log_128 C) and K = ceil(C^(1/L)) (>= 2), so K^L >= C with little padding: C = 200k gives
    L = 3, K = 59; C = 1M gives L = 3, K = 100. ``leaves[j]`` holds the K^L leaf values of tree j (padding
    stays 0). Level 0 cuts them into blocks of K; each block is stored as its K + 1 inclusive prefix sums
    ``[0, v0, v0+v1, ..., total]``; level l+1 does the same for the block totals of level l; the top level
    holds one block per tree, whose last entry is the tree's total. All trees share each level's array
    (block g of level l has the children g*K .. g*K+K-1 on level l-1; the top block of tree j is j), so a
    minibatch descends with one row gather and one comparison per level, for any mix of trees, and an
    update recomputes one block per level: O(K L) = O(log C) work (K is bounded) in a few numpy calls per
    level, which on numpy beats a binary descent of ~20 levels. Sums are recomputed from the children
    (no drift from adding deltas).
    """

    def __init__(self, p: int, C: int):
        L = 1
        while 128 ** L < C:
            L += 1
        K = 2
        while K ** L < C:
            K += 1
        self.K, self.L = K, L
        self.leaves = np.zeros((p, K ** L), np.float64)
        self._leaf_blocks = self.leaves.reshape(-1, K)
        self.pre = [np.zeros((p * K ** (L - 1 - lv), K + 1), np.float64) for lv in range(L)]
        self.total = self.pre[-1][:, K]                  # view: each tree's total
        self._rows_K = np.arange(K)

    def state_dict(self) -> dict:
        """The leaves and every level's prefix sums (the memory's own arrays)."""
        return {"leaves": self.leaves, "pre": self.pre}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` in place (``total`` and the leaf blocks stay views)."""
        _restore(self, "leaves", state["leaves"])
        if len(state["pre"]) != len(self.pre):
            raise ValueError(f"sum-tree state has {len(state['pre'])} levels, this tree {len(self.pre)}: it was "
                             "saved from a memory of another capacity")
        for cur, v in zip(self.pre, state["pre"]):
            _copy_into(cur, v, "pre")

    def set(self, j: int, pos: int, w: float) -> None:
        K, j, pos = self.K, int(j), int(pos)
        self.leaves[j, pos] = w
        g = (j * K ** self.L + pos) // K                 # block on level 0
        vals = self._leaf_blocks[g]
        for lv, pre in enumerate(self.pre):
            np.cumsum(vals, out=pre[g, 1:])
            if lv + 1 < self.L:
                vals = pre[g // K * K:g // K * K + K, K]  # the K block totals under the parent block
                g //= K

    def set_many(self, j: np.ndarray, pos: np.ndarray, w: np.ndarray) -> None:
        K, j = self.K, np.asarray(j, np.int64)
        self.leaves[j, pos] = w
        g = (j * K ** self.L + pos) // K
        vals = self._leaf_blocks[g]
        for lv, pre in enumerate(self.pre):
            pre[g, 1:] = np.cumsum(vals, 1)
            if lv + 1 < self.L:
                g = g // K
                vals = pre[(g * K)[:, None] + self._rows_K, K]

    def rebuild(self, j: int) -> None:
        vals = self.leaves[j].reshape(-1, self.K)
        for lv, pre in enumerate(self.pre):
            n = len(vals)
            blocks = pre[j * n:(j + 1) * n]
            np.cumsum(vals, 1, out=blocks[:, 1:])
            if lv + 1 < self.L:
                vals = blocks[:, self.K].reshape(-1, self.K)

    def sample(self, j: np.ndarray, u: np.ndarray):
        """Leaf positions drawn with probability leaf / total in trees `j` (u uniform in [0, 1));
        returns (positions, their probabilities)."""
        K, rows = self.K, np.arange(len(j))
        total = self.total[j]
        u = u * total
        g = j                                            # top block of each tree
        for pre in self.pre[::-1]:
            blk = pre[g]                                 # [B, K+1] prefix sums
            c = (blk[:, 1:] <= u[:, None]).sum(1)        # child c: blk[c] <= u < blk[c+1]
            if c.max() == K:                             # rounding at a block's end: last non-empty child
                over = c == K
                c[over] = (blk[over, :-1] < blk[over, -1:]).sum(1) - 1
            u = u - blk[rows, c]
            g = g * K + c
        return g - j * K ** self.L, self.leaves.reshape(-1)[g] / total


def _copy_into(cur: np.ndarray, v, name: str) -> None:
    v = np.asarray(v)
    if v.shape != cur.shape:
        raise ValueError(f"replay state '{name}' has shape {v.shape}, this memory {cur.shape}: it was saved from a "
                         "memory of another config (capacity, partitions, actions or frame shape)")
    cur[...] = v


def _restore(obj, name: str, v) -> None:
    """Set attribute `name` of `obj` from a saved value: arrays in place, counters as they were saved."""
    cur = getattr(obj, name)
    if isinstance(cur, np.ndarray):
        _copy_into(cur, v, name)
    else:
        setattr(obj, name, v)
