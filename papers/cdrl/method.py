"""Collaborative Deep RL / cA3C (Lin, Wang & Zhou 2017): the method, readable top to bottom.

A cA3C student (:class:`common.nets.CA3CNet`: convs -> LSTM -> policy, distillation and value heads) is
trained with the shared actor-critic learner (``common.a2c.train``, its GAE loss is Algorithm 1 lines
17-25) while frozen teachers of other ("source") tasks look at the *student task's* observations and
their logits z_T are distilled into it (Sec. 4.2-4.3, Algorithm 1 lines 26-33):

1. :func:`temperature_kl`: the distillation loss of Eq. 2-3 per state,
   ``l_KL(z_T, z_S, tau) = sum_a softmax(z_T/tau)_a ln( softmax(z_T/tau)_a / softmax(z_S)_a )``.
2. :class:`AlignmentNet`: the deep alignment network F_theta_omega (Fig. 2a): an MLP of 4 x 512 ELU
   layers and a linear output with the student's action count; its input is z_T.
3. :func:`alignment_loss`: what trains F online (Algorithm 1 line 28): KL(softmax(F(z_T)) || softmax(z_S))
   with the student's policy logits z_S held fixed; only F learns. :func:`train_alignment_offline`
   is the offline protocol (Sec. 4.2): F fitted to the logits of two experts on the same observations.
4. :class:`CA3CHook`: the schedules T1 (alignment starts) and T2 (distillation starts), one Adam step of
   every F per rollout, and the distillation step with its own Adam optimiser, in three modes:

   * ``homogeneous``: z_T distilled straight into the policy head (Sec. 5.2); no F.
   * ``kd_policy``: F(z_T) distilled into the policy head (Fig. 4a, the failing variant).
   * ``kd_distill``: F(z_T) distilled into the separate distillation head (Fig. 2b, Eq. 3): the
     gradient reaches the shared convs/LSTM only through that head; policy and value heads get none.

   ``use_alignment = False`` drops F from the two heterogeneous modes: Fig. 4a/4b distil a Pong expert's
   z_T into a Bowling student's policy / distillation layer directly (both games have 6 actions).

   With M source tasks every teacher m has its own F_m (Sec. 4.3: "each task will train its own deep
   alignment network"); the distillation loss is the sum over teachers of Eq. 3.

Order within one update (Algorithm 1, and why the work sits where it does in the learner's calls)
-----------------------------------------------------------------------------------------------
Algorithm 1 computes the GAE gradient and the distillation gradient on the same agent-local parameters
theta' (lines 12, 22, 32) and applies the A3C update (line 25), trains F (line 28), then distils
(line 32). The hook reproduces that exactly in the synchronous learner:

* ``Hook.loss`` (called with the forward pass the A3C gradient uses, parameters theta_k): computes the
  teachers' logits under ``torch.no_grad``, takes one Adam step of each F (F is disjoint from the student,
  so stepping it here or after the A3C step is the same), then computes the distillation loss against
  the *updated* F (line 28 precedes line 32) and its gradient w.r.t. the trunk + targeted head with
  ``torch.autograd.grad`` (no second forward pass; the main loss is untouched, so the hook returns
  ``None`` as extra loss). The learner's ``.grad`` buffers are never touched here.
* ``Hook.after_update`` (after the main Adam step): clips that gradient to norm ``clip`` and applies it
  with the separate distillation Adam optimiser, as the official code does. Like an A3C worker's
  gradient, it was computed at theta_k and is applied after the GAE step moved theta to theta_k+1.

Schedules: ``batch.step`` is the global step counter T *after* the rollout, and Algorithm 1 tests
``T >= T1`` / ``T >= T2`` after the rollout (lines 26, 30). So a rollout aligns iff ``batch.step >= T1``
and distils iff ``batch.step >= T2``: the rollout that crosses T1 (or ends exactly on it) counts.
``distill_until`` U (Fig. 3b: "distilled ... in the first one million steps and stopped after that")
keeps distillation on while ``batch.step <= U``: with U a multiple of the rollout size exactly the
first U steps are distilled. Alignment stops with it (F serves only distillation).

Choices where the paper is silent (each documented at its field or function as well)
-----------------------------------------------------------------------------------
* The student side of Eq. 2-3 is *not* divided by tau (the paper's Eq. 2-3 and the official code,
  docs/reference_notes.md §3); ``student_tau = tau`` gives Hinton et al.'s symmetric form instead. At the
  code's tau = 1 both agree.
* The online alignment loss has no temperature; the student logits it matches are the *policy* logits
  z^beta (Algorithm 1 line 28), in every heterogeneous mode.
* Reduction over the rollout (``loss_reduction``, default ``sum``): each F's alignment loss and the distillation
  loss are *summed* over the rollout's T x N states (T = ``n_steps``, N = ``num_envs``: 20 x 8 = 160 under
  train.PAPER_A2C), the distillation loss also over teachers. That is the paper's Eq. 3 and Algorithm 1 lines 28 and
  32 (sum over t), and the reduction of the learner's A3C loss under PAPER_A2C; it is *not* the official code's,
  which sums only the A3C loss and takes the *mean* over a worker's rollout of the distillation and of the alignment
  loss (docs/reference_notes.md §3). The scale matters little to Adam (a constant factor on a loss changes its step
  only through eps = 1e-8) but does matter to the grad-norm clip of 40 each side optimiser applies: the gradient of
  a sum over 160 states is 160 times that of their mean, so ours is clipped once the mean's gradient norm exceeds
  40 / 160 = 0.25, the code's only above 40. ``loss_reduction = mean`` gives the code's per-state scale (the mean over
  the T x N states of one synchronous update; the sum over teachers stays). The default stays ``sum`` because every
  tier and the recorded run (cdrl-fig4-2core) used it: switching would change their results. Logs always report the
  mean per state.
* Side optimisers: Adam (PyTorch defaults: betas 0.9/0.999, eps 1e-8 = TF's defaults), constant lr 1e-4,
  global grad-norm clip 40 each; one Adam per F (each task trains its own F), one for distillation over
  the trunk (convs + LSTM) and the targeted head only (the value head never joins).
* F uses PyTorch's default Linear initialisation, seeded from ``(seed, teacher index)`` so the run is a
  pure function of its seed and building F does not disturb the global RNG.
* Teachers: any frozen module or callable mapping observations to logits (zoo teachers give SB3's
  normalised log pi; a recurrent teacher such as a CA3CNet is run along the student's rollout with its
  own LSTM state, reset at episode starts and whenever distillation/alignment was off).
* Offline alignment (Sec. 5.3, Fig. 6a) minimises the same KL, averaged over minibatches; the paper's
  offline F used ReLU, the code's online F ELU: :class:`AlignmentNet` takes either.
  ``save_alignment`` records each F's layers/width/activation and ``offline_alignment`` rebuilds F with them.

Not covered (yet), and where it went
-----------------------------------
* Fig. 3a's "distillation only" student: the learner drops its GAE loss with ``A2CArgs.gae_loss = False``
  (papers/cdrl/train.py, method ``distill_only``); the hook itself is unchanged.
* Collaborative mode (Sec. 5.4, Fig. 6d): two tasks (Pong, Bowling) trained *from scratch* side by side is
  papers/cdrl/collaborative.py, not this hook: two ``common.a2c.Learner`` instances step in lock-step (one
  update each per round, source first); the source runs plain A2C, the target runs this hook with one teacher,
  ``collaborative.LiveTeacher``, a live view of the source's current network (no copy; not an ``nn.Module``,
  so CA3CHook, which freezes module teachers, leaves the source trainable). One checkpoint file holds both learners and the RNG
  state, so the source's weights at target update k are a pure function of the seed, also across a resume.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from common.a2c import Batch, Hook
from common.checks import arg, check_fields
from common.envs import dataclass_from_dict
from common.io import derive_seed, torch_save
from common.losses import softened_kl
from common.nets import NetOut

MODES = ("homogeneous", "kd_policy", "kd_distill")
HEADS = ("policy", "distill", "value")  # the CA3CNet heads; every other parameter is the shared trunk


@dataclass
class CA3CArgs:
    """cA3C arguments (beside the A2C ones); a run is a pure function of (these, A2CArgs, seed)."""

    teachers: list = field(default_factory=list)
    """teacher files, one per source task (zoo dirs / model.zip, or policy .pt files of common.a2c)"""
    mode: str = arg("kd_distill", choices=MODES)
    """homogeneous (z_T -> policy head, no F) | kd_policy (F(z_T) -> policy head) | kd_distill (-> distill head)"""
    tau: float = arg(1.0, "> 0")
    """distillation temperature on the teacher side, softmax(F(z_T)/tau) (Eq. 1-3; the code uses 1)"""
    student_tau: float = arg(1.0, "> 0")
    """temperature on the student side; Eq. 2-3 use 1 (only the target is softened); = tau for Hinton's form"""
    align_from: int = arg(1_000_000, ">= 0")
    """T1: rollouts ending at env step >= T1 train F (Algorithm 1 line 26); unused without online F"""
    distill_from: int = arg(2_000_000, ">= 0")
    """T2: rollouts ending at env step >= T2 distil (Algorithm 1 line 30); must be >= T1 for online alignment"""
    distill_until: int | None = None
    """last step count that still distils (and aligns): on while step <= this; None = until the end (Fig. 3b: 1M)"""
    align_lr: float = arg(1e-4, "> 0")
    """Adam learning rate of every alignment network F (constant, as the code)"""
    distill_lr: float = arg(1e-4, "> 0")
    """Adam learning rate of the separate distillation optimiser (constant, as the code)"""
    clip: float = arg(40.0, ">= 0")
    """global grad-norm clip of each side optimiser (0 = off)"""
    loss_reduction: str = arg("sum", choices=("sum", "mean"))
    """how the alignment and distillation losses reduce over the rollout's T x N states: sum (Eq. 3 and
    Algorithm 1's sum over t) | mean (the official code's tf.reduce_mean); the module docstring says why sum"""
    align_layers: int = arg(4, ">= 1")
    """hidden layers of F (4 in the code)"""
    align_width: int = arg(512, ">= 1")
    """units per hidden layer of F (512 in the code)"""
    offline_alignment: str | None = None
    """file of pre-trained F's (save_alignment); then F is frozen and never trained online"""
    use_alignment: bool = True
    """heterogeneous modes through F (Fig. 6); False distils z_T directly (Fig. 4a/4b, equal action counts)"""

    @property
    def aligned(self) -> bool:
        """Whether teacher logits pass through alignment networks F (every mode but homogeneous, by default)."""
        return self.mode != "homogeneous" and self.use_alignment

    @classmethod
    def from_dict(cls, d: dict) -> "CA3CArgs":
        a = dataclass_from_dict(cls, d, where="cA3C arguments")
        a.validate()
        return a

    def validate(self) -> None:
        check_fields(self, "cA3C arguments")
        if self.distill_until is not None and self.distill_until < self.distill_from:
            raise ValueError(f"distill_until ({self.distill_until}) is before distill_from ({self.distill_from}): "
                             "distillation would never run")
        if self.offline_alignment and not self.aligned:
            raise ValueError(f"mode {self.mode} with use_alignment={self.use_alignment} distils teacher logits "
                             "directly and has no alignment network; drop offline_alignment, or pick mode "
                             "kd_distill / kd_policy with use_alignment: true")
        if self.aligned and not self.offline_alignment and self.distill_from < self.align_from:
            raise ValueError(f"distill_from (T2={self.distill_from}) is before align_from (T1={self.align_from}): "
                             "the student would distil through an untrained alignment network; the paper needs "
                             "T2 >= T1 (Sec. 4.2)")


# ---------------------------------------------------------------------------------------------------
# 1. The distillation loss (Eq. 1-3)
# ---------------------------------------------------------------------------------------------------
def temperature_kl(p_logits: torch.Tensor, q_logits: torch.Tensor, tau: float, q_tau: float = 1.0) -> torch.Tensor:
    """KL(softmax(p/tau) || softmax(q/q_tau)) per state, over the last (action) dimension   (Eq. 2-3).

    p is the target (teacher or aligned teacher), q the student. The paper softens only the target
    (q_tau = 1); q_tau = tau is the symmetric form of Hinton et al. (2015).
    """
    return softened_kl(p_logits, q_logits, tau, q_tau)          # ln softmax(z_T / tau): Eq. 1


def distillation_loss(target_logits: torch.Tensor, student_logits: torch.Tensor, tau: float,
                      student_tau: float = 1.0) -> torch.Tensor:
    """l_KL(F(z_T), z_S', tau) per state (Eq. 3): the target is held fixed, only the student learns."""
    return temperature_kl(target_logits.detach(), student_logits, tau, student_tau)


# ---------------------------------------------------------------------------------------------------
# 2. The deep alignment network F_theta_omega (Sec. 4.2, Fig. 2a)
# ---------------------------------------------------------------------------------------------------
class AlignmentNet(nn.Module):
    """F: teacher logits z_T [.., A_T] -> aligned logits [.., A_S]; `layers` x `width` hidden units.

    The official code uses 4 x 512 ELU; the paper's offline F used ReLU (Sec. 5.3).
    """

    def __init__(self, teacher_actions: int, student_actions: int, layers: int = 4, width: int = 512,
                 activation: str = "elu"):
        super().__init__()
        acts = {"elu": nn.ELU, "relu": nn.ReLU}
        if activation not in acts:
            raise ValueError(f"alignment activation must be one of {sorted(acts)}, got '{activation}'")
        dims = [teacher_actions] + [width] * layers
        mods: list[nn.Module] = []
        for i in range(layers):
            mods += [nn.Linear(dims[i], dims[i + 1]), acts[activation]()]
        mods.append(nn.Linear(dims[-1], student_actions))
        self.mlp = nn.Sequential(*mods)                       # PyTorch default init
        self.teacher_actions, self.student_actions = teacher_actions, student_actions
        self.layers, self.width, self.activation = layers, width, activation

    def forward(self, teacher_logits: torch.Tensor) -> torch.Tensor:
        return self.mlp(teacher_logits)


def alignment_loss(align: nn.Module, teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(F(z_T)) || softmax(z_S)) per state, z_S detached: only F trains   (Algorithm 1 line 28)."""
    return temperature_kl(align(teacher_logits.detach()), student_logits.detach(), tau=1.0)


def train_alignment_offline(align: nn.Module, teacher_logits: torch.Tensor, expert_logits: torch.Tensor,
                            steps: int, lr: float = 1e-4, batch_size: int = 256, clip: float = 40.0,
                            seed: int = 0) -> list[float]:
    """Offline protocol (Sec. 4.2, 5.3): fit F so that F(z_T) matches the target-task expert.

    `teacher_logits` [B, A_T] and `expert_logits` [B, A_S] are the source teacher's and the target expert's
    logits on the *same* target-task observations. Each step: a minibatch drawn uniformly with a seeded
    generator, Adam on the mean alignment loss, grad-norm clip. Returns the loss of every step.
    """
    if teacher_logits.shape[0] != expert_logits.shape[0]:
        raise ValueError(f"teacher and expert logits must cover the same observations, got "
                         f"{teacher_logits.shape[0]} and {expert_logits.shape[0]} rows")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(align.parameters(), lr=lr)
    n = teacher_logits.shape[0]
    history = []
    for _ in range(steps):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=gen)
        loss = alignment_loss(align, teacher_logits[idx], expert_logits[idx]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip > 0:
            nn.utils.clip_grad_norm_(align.parameters(), clip)
        opt.step()
        history.append(loss.item())
    return history


def save_alignment(path: str | os.PathLike, nets: list[AlignmentNet]) -> None:
    """Write pre-trained F's (one per teacher, in the order of CA3CArgs.teachers) for `offline_alignment`."""
    torch_save({"alignment": [{k: v.detach().cpu() for k, v in f.state_dict().items()} for f in nets],
                "shapes": [(f.teacher_actions, f.student_actions) for f in nets],
                "arch": [{"layers": f.layers, "width": f.width, "activation": f.activation} for f in nets]}, path)


# ---------------------------------------------------------------------------------------------------
# Teachers: frozen, fed the student task's observations
# ---------------------------------------------------------------------------------------------------
def load_teachers(paths: list, device: str | torch.device = "cpu") -> list[nn.Module]:
    """Teachers from files: a ``.pt`` policy file of common.a2c (e.g. a trained CA3CNet), else a zoo teacher."""
    from common.a2c import load_policy
    from common.zoo import load_teacher  # imports stable-baselines3; only needed here

    return [load_policy(p, device) if str(p).endswith(".pt") else load_teacher(p, device) for p in paths]


def teacher_logits(teacher, obs: torch.Tensor, state=None, starts=None) -> tuple[torch.Tensor, tuple | None]:
    """A frozen teacher's logits z_T [T, N, A_T] on the rollout obs [T, N, ...], under ``no_grad``.

    A recurrent teacher (``recurrent = True``, ``forward_sequence``) runs along the rollout from `state`
    with the rollout's episode `starts` and returns its next state; any other teacher is called on the
    flattened frames: ``teacher.logits(obs)`` if it has that method (zoo teachers), else ``teacher(obs)``
    (a tensor or a NetOut).
    """
    with torch.no_grad():
        if getattr(teacher, "recurrent", False):
            out = teacher.forward_sequence(obs, state, starts)
            return out.logits, tuple(s.detach() for s in out.state)
        t, n = obs.shape[:2]
        flat = obs.reshape(t * n, *obs.shape[2:])
        z = teacher.logits(flat) if callable(getattr(teacher, "logits", None)) else teacher(flat)
        if isinstance(z, NetOut):
            z = z.logits
        return z.reshape(t, n, -1).float(), None


def distillation_parameters(student: nn.Module, head: str) -> list[nn.Parameter]:
    """theta_p^beta' (Sec. 4.2): the shared trunk (every parameter outside the three heads) + `head`."""
    trunk = [p for n, p in student.named_parameters() if n.split(".")[0] not in HEADS]
    return trunk + list(getattr(student, head).parameters())


def _reduce(x: torch.Tensor, how: str) -> torch.Tensor:
    return x.sum() if how == "sum" else x.mean()


# ---------------------------------------------------------------------------------------------------
# 3-4. Online alignment and distillation, as a hook of the shared A2C learner (Algorithm 1 lines 26-33)
# ---------------------------------------------------------------------------------------------------
class CA3CHook(Hook):
    """Trains one alignment network per teacher from T1 and distils from T2, beside the A2C loss.

    `student` is the agent the learner trains (a CA3CNet: ``policy``, ``distill``, ``value`` heads and
    ``extra['distill_logits']``); `teachers` are frozen modules/callables (see :func:`teacher_logits`).
    Side optimisers, F's and recurrent teachers' states are all in ``state_dict`` for exact resume.
    ``parameters()`` is empty: nothing of cA3C joins the main optimiser.
    """

    def __init__(self, args: CA3CArgs, student: nn.Module, teachers: list, seed: int = 0):
        args.validate()
        if not teachers:
            raise ValueError("cA3C needs at least one teacher (CA3CArgs.teachers lists their files)")
        self.args, self.student = args, student
        self.teachers = list(teachers)
        for t in self.teachers:                                   # frozen: never trained, always eval
            if isinstance(t, nn.Module):
                t.requires_grad_(False).eval()
        device = next(student.parameters()).device
        n_actions = student.n_actions
        self.teacher_actions = [self._probe(m, t) for m, t in enumerate(self.teachers)]
        self.head = "distill" if args.mode == "kd_distill" else "policy"
        if self.head == "distill" and not hasattr(student, "distill"):
            raise ValueError("mode kd_distill needs a student with a distillation head (net: ca3c)")
        if not args.aligned:
            bad = [m for m, a in enumerate(self.teacher_actions) if a != n_actions]
            if bad:
                raise ValueError(f"mode {args.mode} without alignment distils teacher logits directly, but "
                                 f"teachers {bad} have {[self.teacher_actions[m] for m in bad]} actions and the "
                                 f"student {n_actions}; use mode kd_distill with use_alignment: true")
        # F_m, one per teacher (Sec. 4.3), each with its own Adam optimiser
        self.alignment: list[AlignmentNet] = []
        if args.aligned:
            for m, a_t in enumerate(self.teacher_actions):
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(derive_seed(seed, 7_717, m))
                    self.alignment.append(AlignmentNet(a_t, n_actions, args.align_layers, args.align_width).to(device))
        self.online_alignment = bool(self.alignment) and not args.offline_alignment
        if args.offline_alignment:
            self._load_offline(args.offline_alignment)
        self.align_opt = [torch.optim.Adam(f.parameters(), lr=args.align_lr) for f in self.alignment]
        # theta_p^beta': the trunk + the targeted head, with the separate distillation optimiser
        self.distill_params = distillation_parameters(student, self.head)
        self.distill_opt = torch.optim.Adam(self.distill_params, lr=args.distill_lr)
        self._teacher_state: list = [None] * len(self.teachers)
        self._distill_grads: list | None = None

    # -- set-up helpers ---------------------------------------------------------------------------
    def _probe(self, m: int, teacher) -> int:
        """The teacher's action count, from one call on a blank frame of the student's observation shape."""
        dev = next(self.student.parameters()).device
        blank = torch.zeros((1, 1, *self.student.obs_shape), dtype=torch.uint8, device=dev)
        try:
            z, _ = teacher_logits(teacher, blank, None, torch.ones(1, 1, dtype=torch.bool, device=dev))
        except Exception as e:  # noqa: BLE001 - any failure means the teacher cannot read these frames
            raise ValueError(f"teacher {m} cannot read the student's observations {tuple(self.student.obs_shape)} "
                             f"({type(e).__name__}: {e}); cA3C feeds teachers the student task's observations, "
                             "so train them with the same preprocessing") from e
        return int(z.shape[-1])

    def _load_offline(self, path) -> None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"offline alignment file {path} not found: fit it with "
                                    "train_alignment_offline and write it with save_alignment, or set "
                                    "offline_alignment: null for online alignment")
        d = torch.load(path, map_location="cpu", weights_only=False)
        shapes = [(f.teacher_actions, f.student_actions) for f in self.alignment]
        if [tuple(s) for s in d["shapes"]] != shapes:
            raise ValueError(f"offline alignment file {path} holds F's of shapes {d['shapes']}, but the teachers "
                             f"and student need {shapes} (one F per teacher, in the order of `teachers`)")
        device = next(self.student.parameters()).device
        for m, sd in enumerate(d["alignment"]):
            # the file's architecture wins over align_layers/align_width (e.g. Sec. 5.3's ReLU offline F)
            arch = d.get("arch", [None] * len(d["alignment"]))[m]
            if arch is not None:
                f = self.alignment[m]
                self.alignment[m] = AlignmentNet(f.teacher_actions, f.student_actions, **arch).to(device)
            self.alignment[m].load_state_dict(sd)
            self.alignment[m].requires_grad_(False)

    # -- schedule ---------------------------------------------------------------------------------
    def phase(self, step: int) -> tuple[bool, bool]:
        """(align, distill) for the rollout ending at global step `step` (Algorithm 1 lines 26, 30)."""
        a = self.args
        within = a.distill_until is None or step <= a.distill_until
        distill = a.distill_from <= step and within
        align = self.online_alignment and a.align_from <= step and within
        return align, distill

    # -- the hook ---------------------------------------------------------------------------------
    def _blank_logs(self) -> dict:
        """Every column, always (the learner's stats CSV takes its header from the first row)."""
        keys = ["align/kl", "align/grad_norm", "distill/kl", "distill/grad_norm"]
        if len(self.teachers) > 1:
            keys += [f"align/kl/t{m}" for m in range(len(self.teachers))]
            keys += [f"distill/kl/t{m}" for m in range(len(self.teachers))]
        return {k: math.nan for k in keys}

    def loss(self, agent: nn.Module, batch: Batch, out: NetOut):
        if agent is not self.student:
            raise TypeError("CA3CHook was built for another student module: pass the same agent to train()")
        self._distill_grads = None
        align_on, distill_on = self.phase(batch.step)
        logs = {"phase/align": float(align_on), "phase/distill": float(distill_on), **self._blank_logs()}
        if not (align_on or distill_on):
            self._teacher_state = [None] * len(self.teachers)  # a recurrent teacher restarts from zero
            return None, logs
        z_t = []                                                  # z_T^m on the student's observations
        for m, teacher in enumerate(self.teachers):
            z, self._teacher_state[m] = teacher_logits(teacher, batch.obs, self._teacher_state[m], batch.starts)
            z_t.append(z)
        if align_on:                                              # Algorithm 1 lines 26-28
            kls, norms = [], []
            for m, (f, opt) in enumerate(zip(self.alignment, self.align_opt)):
                kl = alignment_loss(f, z_t[m], out.logits)        # student policy logits z^beta, detached
                opt.zero_grad(set_to_none=True)
                _check_finite(_reduce(kl, self.args.loss_reduction), "alignment", batch.step).backward()
                norms.append(float(nn.utils.clip_grad_norm_(f.parameters(), self.args.clip if self.args.clip > 0
                                                            else math.inf)))
                opt.step()
                kls.append(kl.mean().item())
                if len(self.teachers) > 1:
                    logs[f"align/kl/t{m}"] = kls[-1]
            logs["align/kl"], logs["align/grad_norm"] = float(np.mean(kls)), float(np.mean(norms))
        if distill_on:                                            # Algorithm 1 lines 30-32
            z_s = out.extra["distill_logits"] if self.head == "distill" else out.logits
            total = 0.0
            for m, z in enumerate(z_t):
                if self.alignment:
                    with torch.no_grad():
                        z = self.alignment[m](z)                  # F(z_T) after this rollout's F step
                kl = distillation_loss(z, z_s, self.args.tau, self.args.student_tau)   # Eq. 3
                total = total + kl
                if len(self.teachers) > 1:
                    logs[f"distill/kl/t{m}"] = kl.mean().item()
            loss = _check_finite(_reduce(total, self.args.loss_reduction), "distillation", batch.step)
            self._distill_grads = list(torch.autograd.grad(loss, self.distill_params, retain_graph=True,
                                                           allow_unused=True))
            logs["distill/kl"] = total.mean().item()
        return None, logs

    def after_update(self, agent: nn.Module, batch: Batch) -> dict:
        """The distillation step, after the learner's A3C step (Algorithm 1: line 25, then line 32)."""
        if self._distill_grads is None:
            return {}
        saved = [p.grad for p in self.distill_params]             # leave the learner's buffers as found
        for p, g in zip(self.distill_params, self._distill_grads):
            p.grad = g
        norm = nn.utils.clip_grad_norm_(self.distill_params, self.args.clip if self.args.clip > 0 else math.inf)
        self.distill_opt.step()
        for p, g in zip(self.distill_params, saved):
            p.grad = g
        self._distill_grads = None
        return {"distill/grad_norm": float(norm)}

    def state_dict(self) -> dict:
        return copy.deepcopy({"alignment": [f.state_dict() for f in self.alignment],
                              "align_opt": [o.state_dict() for o in self.align_opt],
                              "distill_opt": self.distill_opt.state_dict(),
                              "teacher_state": self._teacher_state})

    def load_state_dict(self, state: dict) -> None:
        state = copy.deepcopy(state)
        for f, sd in zip(self.alignment, state["alignment"]):
            f.load_state_dict(sd)
        for o, sd in zip(self.align_opt, state["align_opt"]):
            o.load_state_dict(sd)
        self.distill_opt.load_state_dict(state["distill_opt"])
        self._teacher_state = list(state["teacher_state"])
        self._distill_grads = None


def _check_finite(loss: torch.Tensor, what: str, step: int) -> torch.Tensor:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite cA3C {what} loss ({loss.item()}) at step {step:,}: lower "
                                 "align_lr / distill_lr or check the teachers' logits (a DQN teacher's "
                                 "Q-values may need a larger tau)")
    return loss
