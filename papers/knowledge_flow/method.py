"""Knowledge Flow (Liu, Peng & Schwing, ICLR 2019): the method, readable top to bottom.

A student net is trained with A2C (``common.a2c.train``) while frozen teachers lend it their
intermediate representations through trainable cross-connections:

1. :class:`KnowledgeFlowStudent` mixes, at every linked student layer j, the student's own
   pre-activation z(l0j) with transformed teacher pre-activations Q_j(l) z(l) (Eq. 1-2 of Sec. 3.2)::

       h(l0j) = act( sum_{l in L_j \\ l0j} p_w^j(l) Q_j(l) z(l) + p_w^j(l0j) z(l0j) ),   p_w^j = softmax(w^j)

2. :class:`KnowledgeFlowHook` adds the two losses of Eq. 4 to the actor-critic loss::

       lambda1(progress) * l_dep(w) + lambda2 * KL(pi_theta(.|x) || pi_theta_old(.|x))
       l_dep(w) = -(1/L0) sum_j log p_w^j(l0j)                                        (Eq. 5)

   with lambda1 ramped linearly from 0 to its sampled value over training (Sec. 4.1) and theta_old the
   previous update's parameters, or their exponential average (Sec. 7.6).

3. :func:`export_student` returns the independent student: the plain net, no teacher, Q or w.

Choices where the paper is silent (docs/reference_notes.md §1 and the docstrings below say why):

* Q: a 1x1 convolution (channel mixing) for conv->conv links, a linear map for fc->fc links, PyTorch's
  default initialisation. A conv teacher map whose spatial size differs from the student's is resized
  bilinearly (``align_corners=False``) *before* Q. Conv<->fc links are rejected with an error.
* w: zeros at the start, i.e. p_w^j uniform over the candidates of layer j.
* L0 in Eq. 5 counts *all* student layers, as the paper writes; a layer without teacher links has
  p_w = 1 and contributes log 1 = 0. (In the paper's RL set-ups every student layer is linked.)
* theta_old for update k is the parameter vector the learner held at update k-1 (a snapshot taken
  before the optimiser step); the EMA variant averages those snapshots, so alpha = 0 is the
  'previous' variant. At the first update theta_old = theta (KL = 0).
* The teachers fade out at the end (``KFArgs.fade_teachers``, off by default: the paper's method as written). The
  paper wants the student independent "during final stages of training" (Sec. 3.1) but gives no mechanism besides
  lambda1's ramp, and at our budgets that ramp leaves the exported student dependent (README, kf-minatar-2core
  finding: p_w(student) stops at a balance with the A2C loss while Q grows). With fade F > 0 the mixing weights
  the forward uses are p~ = (1 - f) p_w + f e_student, f rising linearly from 0 at progress 1 - F to 1 at
  progress 1 - F/2 (:func:`fade_at`), so over the last F/2 of training the student trains alone and the exported
  student *is* the trained net. l_dep still acts on the learned p_w; independence.md reports 1 - p~(student).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from common.a2c import Batch, Hook
from common.checks import arg, check_finite
from common.envs import dataclass_from_dict
from common.losses import softened_kl
from common.nets import LayeredNet, NetOut, init_layer

LINK_KEYS = ("teacher", "teacher_layer", "student_layer")


@dataclass
class KFArgs:
    """Knowledge Flow arguments (beside the A2C ones); a run is a pure function of (these, A2CArgs, seed)."""

    lambda1: float = arg(0.1, ">= 0")
    """final weight of the dependency loss l_dep (Eq. 5); ramped linearly from 0 at the start of training"""
    lambda2: float = arg(0.01, ">= 0")
    """weight of the KL term KL(pi_theta || pi_theta_old) (Eq. 4)"""
    theta_old: str = arg("previous", choices=("previous", "ema"))
    """previous: theta_old = the previous update's parameters | ema: exponential average (Sec. 7.6)"""
    ema_alpha: float = arg(0.9, "[0, 1)")
    """EMA factor: theta_old <- alpha * theta_old + (1 - alpha) * theta (Sec. 7.6)"""
    fade_teachers: float = arg(0.0, "[0, 1]")
    """fraction F of training, at the end, over which the teachers fade out (the paper is silent; module docstring):
    the forward's mixing weights go linearly from the learned p_w (progress 1 - F) to the student alone (progress
    1 - F/2), which then trains alone. 0: the paper's method as written (no fade)"""
    w_lr_scale: float = arg(1.0, "> 0")
    """learning-rate multiplier for the mixing logits w (the paper is silent). Adam moves a logit by at most
    about lr per update, so sum_t lr_t * w_lr_scale (:func:`w_step_budget`) bounds how far w can travel: at our
    lr 7e-4 decayed to 0, per unit of scale, the paper tier's 500k updates allow 175, 62.5k (MinAtar, 5M steps)
    21.9, 25k (default tier) 8.75, 5k 1.75; p_w(student) = 0.99 needs its logit 4.6 above a single teacher's (5.3
    above two). Measured on MinAtar Asterix (README, kf-minatar-2core finding), the bound is not what stops the
    student short of independence: w travels ~3% of it, and a 5x larger scale ends at the same p_w. The end point
    is a balance: the push of lambda1 * l_dep on the student's logit, lambda1 (1 - p_w) / L0, fades as the teacher
    weight shrinks, while the A2C loss keeps pulling towards the teacher because Q is free to grow and keep the
    teacher's share p_w Q z of the layer; so 1 - p_w ends ~ L0 c / lambda1 (c ~ 0.005 there)."""
    teachers: list = field(default_factory=list)
    """teacher files (the zoo loads them); index m in `links` is teachers[m]"""
    links: list = field(default_factory=list)
    """cross-connections: {'teacher': m, 'teacher_layer': 'conv3', 'student_layer': 'conv2'}"""

    @classmethod
    def from_dict(cls, d: dict) -> "KFArgs":
        a = dataclass_from_dict(cls, d, where="knowledge_flow arguments")
        for link in a.links:
            _check_link_keys(link)
        return a


def sample_lambdas(seed: int, lambda1_grid, lambda2_grid) -> tuple[float, float]:
    """(lambda1, lambda2) drawn uniformly from the grids, a pure function of the seed (Sec. 4.1, after
    Rusu et al. 2016: a new draw for every run)."""
    rng = np.random.default_rng([seed, 7_919])
    return float(rng.choice(lambda1_grid)), float(rng.choice(lambda2_grid))


def w_step_budget(lr: float, n_updates: int, w_lr_scale: float = 1.0, lr_decay: bool = True) -> float:
    """sum_t lr_t * w_lr_scale over a run's updates: the most Adam can move one mixing logit (each step is at most
    ~lr_t * w_lr_scale). Decay is the learner's (common.a2c.decay_lr): lr_t = lr (1 - t/N), t = 0..N-1, whose
    sum is lr (N + 1) / 2."""
    return lr * w_lr_scale * ((n_updates + 1) / 2 if lr_decay else n_updates)


def fade_at(progress: float, fade_teachers: float) -> float:
    """How far the teachers have faded at `progress` (0: the learned p_w, 1: the student alone): 0 before progress
    1 - F, linear to 1 at 1 - F/2, then 1 (F = fade_teachers; F = 0: always 0)."""
    if fade_teachers <= 0:
        return 0.0
    return float(min(1.0, max(0.0, (progress - (1.0 - fade_teachers)) / (fade_teachers / 2))))


def student_logit_gap(p_student: float, n_candidates: int) -> float:
    """How far the student's logit must lie above each of the n-1 (equal) teacher logits for softmax(w)[0] to
    be p_student: log((n - 1) p / (1 - p)); 4.6 for p = 0.99 and one teacher, 5.3 with two."""
    return float(np.log((n_candidates - 1) * p_student / (1.0 - p_student)))


def _check_link_keys(link: dict) -> None:
    if not isinstance(link, dict) or set(link) != set(LINK_KEYS):
        raise KeyError(f"a knowledge-flow link needs exactly the keys {LINK_KEYS}, got {link!r}")


def teacher_preacts(teacher: nn.Module, obs: torch.Tensor) -> list[torch.Tensor]:
    """A teacher's per-layer pre-activations z(l_i^m) on `obs` (a zoo Teacher returns a list; a
    LayeredNet returns a NetOut carrying them in ``extra['preacts']``)."""
    out = teacher.forward_preacts(obs)
    return list(out.extra["preacts"]) if isinstance(out, NetOut) else list(out)


# ---------------------------------------------------------------------------------------------------
# 1. The transformed student net (Sec. 3.2, Eq. 1-2)
# ---------------------------------------------------------------------------------------------------
class KnowledgeFlowStudent(nn.Module):
    """A student LayeredNet with cross-connections from M frozen teachers (M = 0, 1, 2, ...).

    For student layer j the candidate set is L_j = [l0j (the student's own layer), the linked teacher
    layers in the order of `links`]; ``w[j]`` holds one trainable logit per candidate (index 0 =
    student), initialised to 0 (uniform p_w^j), and ``Q[j][k]`` transforms candidate k+1. Teachers are
    frozen (no grad, always eval mode), see the student's observation, and run once per forward under
    ``torch.no_grad()``. Layers without links run exactly as in the plain student net.
    """

    recurrent = False

    def __init__(self, student: LayeredNet, teachers: list[nn.Module] = (), links: list[dict] = (),
                 example_obs: torch.Tensor | None = None, cache_rollouts: bool = True):
        super().__init__()
        self.student = student
        self.teachers = nn.ModuleList(teachers)
        for t in self.teachers:
            t.requires_grad_(False).eval()
            t_shape = getattr(t, "obs_shape", None)
            if t_shape is not None and tuple(t_shape) != tuple(student.obs_shape):
                raise ValueError(f"teacher observation shape {tuple(t_shape)} differs from the student's "
                                 f"{tuple(student.obs_shape)}: teachers are fed the student's observation, "
                                 "so pick teachers trained with the same preprocessing (frame size, stack).")
        self.layer_names = tuple(student.layer_names)
        self.obs_shape, self.n_actions = student.obs_shape, student.n_actions
        # shapes of every student and teacher pre-activation, from one dry forward on a blank frame
        # (or on `example_obs`, e.g. a float image batch of a supervised student, supervised.py)
        dev = next(student.parameters()).device
        blank = (torch.zeros((1, *student.obs_shape), dtype=torch.uint8, device=dev) if example_obs is None
                 else example_obs[:1].to(dev))
        was_training = student.training
        student.eval()                    # a shape probe: BatchNorm statistics and dropout are left untouched
        with torch.no_grad():
            s_shapes = [z.shape[1:] for z in student.forward_preacts(blank).extra["preacts"]]
            t_shapes = [[z.shape[1:] for z in teacher_preacts(t, blank)] for t in self.teachers]
        student.train(was_training)

        self.candidates: dict[str, list[str]] = {}   # student layer -> candidate names ("student", "t0.conv3")
        self.sources: dict[str, list[tuple[int, int]]] = {}  # student layer -> [(teacher m, teacher layer i)]
        self.w = nn.ParameterDict()
        self.Q = nn.ModuleDict()
        # how far the teachers have faded (KFArgs.fade_teachers; set by the hook before every update): a buffer, so
        # a checkpoint carries it
        self.register_buffer("fade", torch.zeros((), device=dev))
        for link in links:
            _check_link_keys(link)
            m, t_layer, s_layer = link["teacher"], link["teacher_layer"], link["student_layer"]
            if not (isinstance(m, int) and 0 <= m < len(self.teachers)):
                raise ValueError(f"link {link}: teacher index {m} is out of range ({len(self.teachers)} teachers)")
            t_names = list(self.teachers[m].layer_names)
            if t_layer not in t_names:
                raise ValueError(f"link {link}: teacher {m} has no layer '{t_layer}' (layers: {t_names})")
            if s_layer not in self.layer_names:
                raise ValueError(f"link {link}: the student has no layer '{s_layer}' (layers: {self.layer_names})")
            name, i, j = f"t{m}.{t_layer}", t_names.index(t_layer), self.layer_names.index(s_layer)
            if name in self.candidates.get(s_layer, []):
                raise ValueError(f"link {link} is listed twice")
            zt, zs = t_shapes[m][i], s_shapes[j]
            if len(zt) == 3 and len(zs) == 3:      # conv -> conv: channel mixing (after resizing)
                q = nn.Conv2d(zt[0], zs[0], kernel_size=1)
            elif len(zt) == 1 and len(zs) == 1:    # fc -> fc
                q = nn.Linear(zt[0], zs[0])
            else:
                raise ValueError(f"link {link} joins a {'conv' if len(zt) == 3 else 'fc'} teacher layer to a "
                                 f"{'conv' if len(zs) == 3 else 'fc'} student layer; only conv->conv and fc->fc "
                                 "links are supported (link the teacher's layer of the same kind instead)")
            if s_layer not in self.candidates:
                self.candidates[s_layer], self.sources[s_layer] = ["student"], []
                self.Q[s_layer] = nn.ModuleList()
            self.candidates[s_layer].append(name)
            self.sources[s_layer].append((m, i))
            self.Q[s_layer].append(q.to(dev))       # PyTorch default init (kaiming-uniform), on the student's device
        for s_layer, cands in self.candidates.items():
            self.w[s_layer] = nn.Parameter(torch.zeros(len(cands), device=dev))  # uniform p_w^j at the start
        self.needed = sorted({src for srcs in self.sources.values() for src in srcs})
        # Teachers are frozen, so their pre-activations on an observation never change: the ones computed
        # during the rollout (batches of N envs, no grad) are kept and reused by the update's forward over
        # the same T x N observations (forward_sequence), which then runs no teacher. Reuse is checked, not
        # assumed: every cached observation batch must equal the update's, else the teachers run again.
        self._rollout_z: list[tuple[torch.Tensor, dict]] = []
        self.cache_rollouts = cache_rollouts
        """keep no-grad forwards' teacher pre-activations for the update (RL); the supervised program turns it off,
        as its no-grad forwards are evaluations that no update reuses"""

    ROLLOUT_CACHE = 32
    """rollout steps whose teacher pre-activations are kept (>= the learner's n_steps + 1 to be of use)"""

    def _cache_rollout(self, obs: torch.Tensor, teacher_z: dict) -> None:
        if self.cache_rollouts and self.needed and not torch.is_grad_enabled():
            self._rollout_z.append((obs.clone(), teacher_z))
            del self._rollout_z[:-self.ROLLOUT_CACHE]

    def _cached_sequence_z(self, obs: torch.Tensor) -> dict | None:
        """The teachers' pre-activations of obs [T, N, ...] from the rollout cache, or None; clears the cache.

        The rollout's forward calls are matched in order to obs[0], ..., obs[T-1]; calls in between that are
        not rollout steps (the values of truncated games' final observations) are skipped, since they do not
        equal the next step's observations."""
        cache, self._rollout_z = self._rollout_z, []
        found, t = [], 0
        for o, z in cache:
            if t < obs.shape[0] and o.shape == obs[t].shape and torch.equal(o, obs[t]):
                found.append(z)
                t += 1
        if t < obs.shape[0]:
            return None
        return {key: torch.cat([z[key] for z in found]) for key in found[0]}

    def train(self, mode: bool = True):
        super().train(mode)
        self.teachers.eval()  # teachers stay in eval mode
        return self

    def pw(self) -> dict[str, torch.Tensor]:
        """p_w^j = softmax(w^j) for every linked student layer j (index 0: the student's own layer)."""
        return {j: F.softmax(w, dim=0) for j, w in self.w.items()}

    def mixing(self, pw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The weights the forward mixes with: p_w itself, or, while the teachers fade (``fade`` f > 0),
        (1 - f) p_w + f e_student (KFArgs.fade_teachers)."""
        f = float(self.fade)
        if f <= 0.0:
            return pw
        return {j: (1.0 - f) * p + f * F.one_hot(torch.zeros((), dtype=torch.long, device=p.device),
                                                 p.shape[0]).to(p.dtype) for j, p in pw.items()}

    def export_policy(self) -> nn.Module:
        """What the learner saves as model.pt: the independent student (see export_student)."""
        return export_student(self)

    def pw_table(self) -> dict[str, float]:
        """Every candidate's normalised weight, named like ``pw/conv2/student``, ``pw/conv2/t0.conv3``."""
        with torch.no_grad():
            return {f"pw/{j}/{c}": float(p[k]) for j, p in self.pw().items()
                    for k, c in enumerate(self.candidates[j])}

    def teacher_z(self, obs: torch.Tensor) -> dict[tuple[int, int], torch.Tensor]:
        """The linked teachers' pre-activations z(l_i^m), computed once, without grad."""
        with torch.no_grad():
            zs = {m: teacher_preacts(t, obs) for m, t in enumerate(self.teachers)
                  if any(src[0] == m for src in self.needed)}
            return {(m, i): zs[m][i] for m, i in self.needed}

    @staticmethod
    def forward_many(students: list["KnowledgeFlowStudent"], obs: list, states=None, starts=None) -> list[NetOut]:
        """The rollout forward of several runs' students (common.multirun.LoopEngine): each frozen teacher that
        students share (the same module) runs once, on all their observations together, and each student gets its
        rows. On the CPU the teachers' outputs on the joined batch equal those on each run's batch bit for bit
        (tests/test_kf_train.py checks a three-run job against the runs alone)."""
        groups: dict[tuple, list[int]] = {}
        for k, s in enumerate(students):
            groups.setdefault(tuple(id(t) for t in s.teachers), []).append(k)
        outs: list[NetOut | None] = [None] * len(students)
        for members in groups.values():
            lead = students[members[0]]
            needed = sorted({src for k in members for src in students[k].needed})
            joined = torch.cat([obs[k] for k in members])
            with torch.no_grad():
                zs = {m: teacher_preacts(t, joined) for m, t in enumerate(lead.teachers)
                      if any(src[0] == m for src in needed)}
            bounds = [0]
            for k in members:
                bounds.append(bounds[-1] + obs[k].shape[0])
            for j, k in enumerate(members):
                z = {src: zs[src[0]][src[1]][bounds[j]:bounds[j + 1]] for src in students[k].needed}
                students[k]._cache_rollout(obs[k], z)
                outs[k] = students[k].forward(obs[k], teacher_z=z)
        return outs

    def forward(self, obs: torch.Tensor, state=None, starts=None, teacher_z=None) -> NetOut:
        """One forward pass; `teacher_z` (from ``extra['teacher_z']``) skips re-running the teachers."""
        if teacher_z is None:
            teacher_z = self.teacher_z(obs)
            self._cache_rollout(obs, teacher_z)
        pw = self.pw()
        mix = self.mixing(pw)
        h = self.student.input(obs)
        for j, name in enumerate(self.layer_names):
            z = self.student.preact(j, h)                      # z(l0j)
            if name in mix:
                p = mix[name]
                mixed = p[0] * z                               # p_w^j(l0j) z(l0j)
                for k, (src, q) in enumerate(zip(self.sources[name], self.Q[name])):
                    zt = teacher_z[src]
                    if zt.dim() == 4 and zt.shape[-2:] != z.shape[-2:]:   # e.g. Nature 7x7 -> A3C 9x9
                        zt = F.interpolate(zt, size=z.shape[-2:], mode="bilinear", align_corners=False)
                    mixed = mixed + p[k + 1] * q(zt)           # + p_w^j(l) Q_j(l) z(l)   (Eq. 1-2)
                z = mixed
            h = self.student.activate(z)                       # h(l0j) = act(...)
        logits, value = self.student.heads(h)
        return NetOut(logits, value, None, {"pw": pw, "teacher_z": teacher_z})

    def forward_sequence(self, obs: torch.Tensor, state=None, starts=None) -> NetOut:
        """obs [T, N, ...] -> logits [T, N, A], value [T, N] (teacher_z stays flat, [T*N, ...])."""
        t, n = obs.shape[:2]
        teacher_z = self._cached_sequence_z(obs) if self.needed else None
        flat = obs.reshape(t * n, *obs.shape[2:])
        out = self.forward(flat, teacher_z=teacher_z if teacher_z is not None else self.teacher_z(flat))
        return NetOut(out.logits.reshape(t, n, -1), out.value.reshape(t, n), None, out.extra)

    def initial_state(self, n: int, device=None):
        return None


def export_student(kf: KnowledgeFlowStudent) -> LayeredNet:
    """The independent student (Sec. 3.2): a plain copy of the student net with its own weights; no
    teacher, Q or w. It acts exactly as the mixed net once p_w^j(l0j) = 1 for every layer j."""
    return copy.deepcopy(kf.student)


def student_independence(kf: KnowledgeFlowStudent) -> dict[str, float]:
    """Per student layer the remaining dependence on teachers, 1 - p_w^j(l0j) of the weights the forward mixes with
    (p_w, or the faded p~ once the teachers fade: 0 when they are gone), 0 for unlinked layers, and their maximum
    under 'max'. Close to 0 means the exported student behaves like the trained one."""
    with torch.no_grad():
        pw = kf.mixing(kf.pw())
        dep = {j: (1.0 - float(pw[j][0])) if j in pw else 0.0 for j in kf.layer_names}
    return {**dep, "max": max(dep.values())}


# ---------------------------------------------------------------------------------------------------
# 2. The losses of Eq. 4-5 and theta_old, as a hook of the shared A2C learner
# ---------------------------------------------------------------------------------------------------
def dependency_loss(pw: dict[str, torch.Tensor], n_student_layers: int) -> torch.Tensor:
    """l_dep(w) = -(1/L0) sum_j log p_w^j(l0j)   (Eq. 5); L0 = all student layers (unlinked ones add 0)."""
    if not pw:
        return torch.zeros(())
    return -sum(torch.log(p[0]) for p in pw.values()) / n_student_layers


def policy_kl(logits: torch.Tensor, logits_old: torch.Tensor) -> torch.Tensor:
    """KL(pi_theta(.|x) || pi_theta_old(.|x)) per state, over the last (action) dimension."""
    return softened_kl(logits, logits_old)


def ema_update(theta_old: dict[str, torch.Tensor], theta: dict[str, torch.Tensor], alpha: float) -> None:
    """theta_old <- alpha * theta_old + (1 - alpha) * theta, in place (Sec. 7.6)."""
    for k, v in theta.items():
        theta_old[k].mul_(alpha).add_(v, alpha=1.0 - alpha)


def trainable_parameters(agent: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every trainable parameter (student, Q and w; teachers are frozen)."""
    return {k: p.detach().clone() for k, p in agent.named_parameters() if p.requires_grad}


class KnowledgeFlowHook(Hook):
    """Adds lambda1(progress) * l_dep + lambda2 * l_KL (Eq. 4) to the A2C loss.

    theta_old: ``loss`` (called before the optimiser step) snapshots the current parameters theta_k;
    ``after_update`` makes that snapshot theta_old ('previous') or folds it into the average ('ema'), so
    update k+1 compares pi_theta_{k+1} with pi_theta_k. pi_theta_old on ``batch.obs`` needs one more
    forward pass of the student with theta_old swapped in (``torch.func.functional_call``, no grad),
    which reuses the teachers' pre-activations of the current pass. ``state_dict`` holds theta_old, so a
    resumed run continues exactly. Q and w live inside the student module, so ``parameters()`` adds none.
    """

    def __init__(self, args: KFArgs):
        self.args = args
        self.theta_old: dict[str, torch.Tensor] | None = None
        self._theta_now: dict[str, torch.Tensor] | None = None

    def begin_update(self, agent: KnowledgeFlowStudent, progress: float) -> None:
        """Before each rollout: how far the teachers have faded (KFArgs.fade_teachers)."""
        agent.fade.fill_(fade_at(progress, self.args.fade_teachers))

    def lambda1_at(self, progress: float) -> float:
        """lambda1 ramped linearly from 0 (start of training) to the sampled lambda1 (end)."""
        return self.args.lambda1 * progress

    def old_logits(self, agent: KnowledgeFlowStudent, obs: torch.Tensor, teacher_z=None) -> torch.Tensor:
        """Policy logits of theta_old on obs [B, ...] (no grad). The module's buffers go in as copies: a
        BatchNorm layer in training mode updates its running statistics in place on every forward, and this
        extra pass must not count twice (nets without buffers: nothing is copied)."""
        buffers = {k: b.clone() for k, b in agent.named_buffers()}
        with torch.no_grad():
            return functional_call(agent, {**self.theta_old, **buffers}, (obs,), {"teacher_z": teacher_z}).logits

    def loss(self, agent: KnowledgeFlowStudent, batch: Batch, out: NetOut):
        if not isinstance(agent, KnowledgeFlowStudent):
            raise TypeError(f"KnowledgeFlowHook needs a KnowledgeFlowStudent agent, got {type(agent).__name__}")
        self._theta_now = trainable_parameters(agent)
        if self.theta_old is None:                   # first update: theta_old = theta
            self.theta_old = {k: v.clone() for k, v in self._theta_now.items()}
        dep = dependency_loss(out.extra["pw"], len(agent.layer_names)).to(out.logits.device)   # Eq. 5
        lam1 = self.lambda1_at(batch.progress)
        obs = batch.obs.reshape(-1, *batch.obs.shape[2:])
        logits = out.logits.reshape(obs.shape[0], -1)
        kl = None
        if self.args.lambda2:
            kl = policy_kl(logits, self.old_logits(agent, obs, out.extra.get("teacher_z"))).mean()
            loss, kl_log = lam1 * dep + self.args.lambda2 * kl, kl.item()                      # Eq. 4
        else:  # lambda2 = 0 (Fig. 9's "no KL"): the theta_old pass has no weight, so it is not run (logged NaN)
            loss, kl_log = lam1 * dep, float("nan")
        check_finite(loss, {"dependency loss l_dep (Eq. 5)": dep, "KL(pi || pi_old) (Eq. 4)": kl},
                     "Knowledge Flow", f"step {batch.step:,}", "lower the learning rate, lambda1 / lambda2 or "
                     "w_lr_scale (an RL run's last checkpoint, <run dir>/checkpoint.pt, is kept: a rerun resumes "
                     "from it)")
        logs = {"kf/lambda1": lam1, "kf/dep_loss": dep.item(), "kf/kl": kl_log, **agent.pw_table()}
        if self.args.fade_teachers:
            logs["kf/fade"] = float(agent.fade)
        return loss, logs

    def after_update(self, agent: nn.Module, batch: Batch) -> dict:
        if self._theta_now is None:
            return {}
        if self.args.theta_old == "ema":
            ema_update(self.theta_old, self._theta_now, self.args.ema_alpha)
        else:
            self.theta_old = self._theta_now
        self._theta_now = None
        return {}

    def lr_scales(self, agent: KnowledgeFlowStudent) -> list:
        """The mixing logits w train at lr * w_lr_scale (KFArgs.w_lr_scale)."""
        return [(w, self.args.w_lr_scale) for w in agent.w.values()] if self.args.w_lr_scale != 1.0 else []

    def final(self, agent: KnowledgeFlowStudent) -> dict:
        """final.json: the remaining dependence 1 - p_w^j(student) per layer and every final p_w."""
        return {"independence": student_independence(agent), "pw": agent.pw_table(),
                "lambda1": self.args.lambda1, "lambda2": self.args.lambda2, "theta_old": self.args.theta_old,
                "fade_teachers": self.args.fade_teachers, "fade": float(agent.fade)}

    def state_dict(self) -> dict:
        return {"theta_old": self.theta_old}

    def load_state_dict(self, state: dict) -> None:
        self.theta_old = state.get("theta_old")
        self._theta_now = None


# ---------------------------------------------------------------------------------------------------
# 3. Baseline: fine-tuning from a teacher of the same architecture (Table 2, Fig. 3)
# ---------------------------------------------------------------------------------------------------
def finetune_init(student: LayeredNet, teacher: nn.Module | dict, new_head: bool) -> LayeredNet:
    """Initialise `student` in place from a teacher of the same architecture (a net or its state_dict).

    The hidden layers are copied; with ``new_head`` the policy and value heads are re-initialised as in a
    fresh net (orthogonal, gains 0.01 and 1), which is required when the action sets differ.
    """
    sd = teacher.state_dict() if isinstance(teacher, nn.Module) else dict(teacher)
    mine = student.state_dict()
    keep = [k for k in mine if k.startswith("layers.") or not new_head]
    for k in keep:
        if k not in sd or sd[k].shape != mine[k].shape:
            got = "missing" if k not in sd else tuple(sd[k].shape)
            hint = (" (the action sets differ: use new_head=True)" if k.startswith("policy.")
                    else " (fine-tuning needs a teacher of the student's architecture)")
            raise ValueError(f"cannot fine-tune from this teacher: parameter '{k}' is {got}, the student's is "
                             f"{tuple(mine[k].shape)}{hint}")
    with torch.no_grad():
        for k in keep:
            mine[k].copy_(sd[k])
    if new_head:
        init_layer(student.policy, gain=0.01)
        init_layer(student.value, gain=1.0)
    return student


__all__ = ["KFArgs", "KnowledgeFlowStudent", "KnowledgeFlowHook", "export_student", "student_independence",
           "dependency_loss", "policy_kl", "ema_update", "finetune_init", "sample_lambdas", "teacher_preacts",
           "w_step_budget", "student_logit_gap", "fade_at"]
