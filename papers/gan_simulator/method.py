"""Generative Adversarial Simulator (Raiman 2020): data-free distillation, readable top to bottom.

Only the abstract of the paper is public, so the design below is the project's specification
(``papers/gan_simulator/README.md`` states every equation, weight and schedule, and which are choices).

A frozen teacher T is distilled into a student S without ever showing S a real input. A generator G
(DAFL's architecture, :class:`Generator`) turns noise z ~ N(0, I) into inputs x = G(z); S learns to match
T on them. One loop, :func:`distill`, serves every method by configuration (:class:`GASArgs`):

* ``dafl``  (Chen et al. 2019): G minimises the DAFL priors (Eq. G1-G3)::

      L_G = w_oh * CE(T(x), argmax T(x)) + w_ie * sum_k pbar_k log pbar_k - w_act * mean |f_T(x)|

* ``dfad``  (Fang et al. 2019): G *maximises* the student-teacher disagreement D(T(x), S(x)) (Eq. G4),
  S minimises it; 1 generator step : 5 student steps::

      L_G = - w_adv * D(T(x), S(x)),   D = mean |t - s| (L1 on logits) or KL(T || S) at temperature tau

* ``ours``  (the paper's contribution, "multiplicity of cases"): the DAFL priors + the adversarial term,
  and G is re-initialised every K generator steps so that a new generator finds new exemplars; before
  each re-initialisation the current generator's exemplars go into a bounded :class:`ExemplarBuffer`
  (reservoir sampling), and every student batch mixes fresh samples with buffer samples so the
  student keeps the modes found by earlier generators.
* ``kd_real`` (upper bound): KD on real training data. The ONLY mode in which real data is reachable.
* ``kd_noise`` (lower bound): KD on Gaussian noise inputs.

Student loss (Eq. S1): kd_loss = KL(softmax(t/tau) || softmax(s/tau)) * tau^2, batch mean; DFAD: L1 on logits.

Every batch fed to the student is recorded with its provenance (counts per source: generator, buffer,
noise, real) in ``DistillResult.provenance``; data-free methods refuse a real loader.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from common.checks import arg, check_fields, check_finite, check_value, fail
from common.classify import top1_counts
from common.datasets import TORCHVISION, digits_images, digits_split, require, torchvision_dataset
from common.envs import dataclass_from_dict
from common.io import derive_seed, resolve_device, seed_everything
from common.losses import softened_kl

METHODS = ("dafl", "dfad", "ours", "kd_real", "kd_noise")
GENERATOR_METHODS = ("dafl", "dfad", "ours")
DATA_FREE_METHODS = ("dafl", "dfad", "ours", "kd_noise")
SOURCES = ("generator", "buffer", "noise", "real")

# The method's defaults (presets.yaml's `methods`, beside this file); any field set explicitly in GASArgs overrides
# its preset (an ablation).
METHOD_PRESETS: dict[str, dict] = yaml.safe_load((Path(__file__).with_name("presets.yaml")).read_text())["methods"]
GENERATOR_FIELDS = ("w_one_hot", "w_info_entropy", "w_activation", "w_adv", "reinit_every", "buffer_mix")


@dataclass
class GASArgs:
    """Distillation arguments; a run is a pure function of (these, teacher, student init). None = method preset."""

    method: str = arg("ours", choices=METHODS)
    """dafl | dfad | ours | kd_real (upper bound, real data) | kd_noise (lower bound, Gaussian inputs)"""
    seed: int = 0
    """seeds python/numpy/torch (z draws, noise), the generator lives and the exemplar buffer"""
    student_steps: int = arg(20000, ">= 1")
    """budget: number of student optimiser steps (the same for every method; generator steps follow the ratio)"""
    batch_size: int = arg(512, ">= 1")
    """inputs per student step and per generator step (DAFL: 512)"""
    image_size: int = arg(32, ">= 4")
    """side s of the generated / noise inputs (divisible by 4); 32 for LeNet-5, 84 for Atari frames"""
    channels: int = arg(1, ">= 1")
    """channels C of the generated / noise inputs; 1 for MNIST-like data, 4 for stacked Atari frames"""
    latent_dim: int = arg(100, ">= 1")
    """dimension of z ~ N(0, I) (DAFL: 100)"""
    gen_bn_eps: float = arg(0.8, "> 0")
    """eps of the generator's two inner BatchNorm layers (DAFL's public generator passes 0.8 there)"""
    lr_generator: float = arg(0.2, ">= 0")
    """Adam learning rate of the generator, constant (DAFL MNIST: 0.2); a re-initialised G gets a fresh Adam"""
    lr_student: float = arg(2e-3, "> 0")
    """Adam learning rate of the student, constant (DAFL MNIST: 2e-3)"""
    w_one_hot: float | None = arg(None, ">= 0")
    """weight of CE(T(x), argmax T(x)) in the generator loss (Eq. G1; DAFL: 1)"""
    w_info_entropy: float | None = arg(None, ">= 0")
    """weight of sum_k pbar_k log pbar_k, pbar = batch-mean teacher softmax (Eq. G2; DAFL: 5)"""
    w_activation: float | None = arg(None, ">= 0")
    """weight of -mean |f_T| over the teacher's penultimate features (Eq. G3; DAFL: 0.1)"""
    w_adv: float | None = arg(None, ">= 0")
    """weight of the adversarial term -D(T(x), S(x)): the generator maximises disagreement (Eq. G4)"""
    adv_kind: str | None = arg(None, choices=("l1", "kl"))
    """disagreement D the generator maximises: l1 (mean |t - s| on logits, DFAD) | kl (KL(T||S) at temperature, ZSKT)"""
    student_loss: str | None = arg(None, choices=("kl", "l1"))
    """what the student minimises: kl (kd_loss, Eq. S1) | l1 (mean |t - s| on logits, DFAD)"""
    temperature: float = arg(1.0, "> 0")
    """temperature tau of kd_loss and of the kl disagreement (both scaled by tau^2)"""
    g_steps: int | None = arg(None, ">= 0")
    """generator steps per iteration (ratio g_steps : s_steps; DFAD 1:5, ZSKT 1:10, DAFL 1:1); 0 without G"""
    s_steps: int | None = arg(None, ">= 1")
    """student steps per iteration"""
    reinit_every: int | None = arg(None, ">= 0")
    """K: re-initialise the generator every K generator steps (0 = never); its exemplars go to the buffer first"""
    buffer_capacity: int = arg(8192, ">= 0")
    """exemplar buffer size in samples (reservoir sampling: uniform over every exemplar ever offered)"""
    buffer_mix: float | None = arg(None, "[0, 1)")
    """fraction of each student batch drawn from the exemplar buffer once it is non-empty; the rest is fresh"""
    exemplars_per_reinit: int | None = arg(None, ">= 0")
    """samples drawn from a generator into the buffer just before it is re-initialised (None = batch_size)"""
    noise_std: float = arg(1.0, "> 0")
    """kd_noise: inputs are N(0, noise_std^2) per pixel (inputs of real data live in [-1, 1])"""
    log_every: int = arg(100, ">= 1")
    """student steps between history records (and `log`/`evaluate` calls); the last step is always recorded"""
    device: str = "cpu"
    """torch device: cpu | cuda | auto"""

    @classmethod
    def from_dict(cls, d: dict) -> "GASArgs":
        """Build from a config mapping; unknown keys stop with an error naming them. Returns resolved args."""
        return dataclass_from_dict(cls, dict(d), where="gan_simulator arguments").resolved()

    def resolved(self) -> "GASArgs":
        """Fill every None with the method's preset (METHOD_PRESETS) and validate; idempotent."""
        check_value("gan_simulator arguments", "method", self.method, choices=METHODS)
        preset = METHOD_PRESETS[self.method]
        a = dataclasses.replace(self, **{k: v for k, v in preset.items() if getattr(self, k) is None})
        if a.exemplars_per_reinit is None:
            a = dataclasses.replace(a, exemplars_per_reinit=a.batch_size)
        a._validate()
        return a

    def _validate(self) -> None:
        check_fields(self, "gan_simulator arguments")  # the ranges above, now that the presets are filled in
        if self.image_size % 4:
            lower = self.image_size // 4 * 4
            fail("gan_simulator arguments", "image_size", self.image_size, "a positive multiple of 4 (the generator "
                 "upsamples twice)", f"set image_size to {lower or 4} or {lower + 4}")
        if self.method in GENERATOR_METHODS:
            if self.g_steps < 1:
                raise ValueError(f"method '{self.method}' trains a generator: g_steps must be >= 1")
            if self.w_one_hot + self.w_info_entropy + self.w_activation + self.w_adv == 0:
                raise ValueError(f"method '{self.method}': every generator loss weight is 0, the generator "
                                 f"has no objective (set w_one_hot/w_info_entropy/w_activation/w_adv)")
            if self.buffer_mix > 0 and (self.reinit_every == 0 or self.buffer_capacity == 0
                                        or self.exemplars_per_reinit == 0):
                raise ValueError("buffer_mix > 0 needs reinit_every > 0, buffer_capacity > 0 and "
                                 "exemplars_per_reinit > 0: the buffer is filled at each re-initialisation")
        else:
            used = [k for k in GENERATOR_FIELDS if getattr(self, k)] + (["g_steps"] if self.g_steps else [])
            if used:
                raise ValueError(f"method '{self.method}' has no generator but {', '.join(used)} "
                                 f"{'is' if len(used) == 1 else 'are'} set: remove them or pick dafl/dfad/ours")


# ----------------------------------------------------------------------------------------------------------
# Generator (DAFL's) and its re-initialisation
# ----------------------------------------------------------------------------------------------------------
class Generator(nn.Module):
    """DAFL's generator: z -> Linear -> 128 x (s/4)^2 -> BN -> up2 -> conv3x3 128 -> BN -> LReLU(0.2)
    -> up2 -> conv3x3 64 -> BN -> LReLU(0.2) -> conv3x3 C -> tanh -> BN(affine=False).

    Upsampling is nearest-neighbour x2. The last BN (no affine) standardises each channel over the batch
    in train mode, so outputs are not confined to [-1, 1]. ``seed`` (optional) = ``reinit_generator``.
    """

    def __init__(self, image_size: int = 32, channels: int = 1, latent_dim: int = 100, bn_eps: float = 0.8,
                 seed: int | None = None):
        super().__init__()
        if image_size % 4 or image_size <= 0:
            raise ValueError(f"image_size must be a positive multiple of 4, got {image_size}")
        self.hparams = dict(image_size=image_size, channels=channels, latent_dim=latent_dim, bn_eps=bn_eps)
        self.init_size = image_size // 4
        self.latent_dim = latent_dim
        self.fc = nn.Linear(latent_dim, 128 * self.init_size ** 2)
        self.bn0 = nn.BatchNorm2d(128)
        self.conv1 = nn.Conv2d(128, 128, 3, stride=1, padding=1)
        self.bn1 = nn.BatchNorm2d(128, eps=bn_eps)
        self.conv2 = nn.Conv2d(128, 64, 3, stride=1, padding=1)
        self.bn2 = nn.BatchNorm2d(64, eps=bn_eps)
        self.conv3 = nn.Conv2d(64, channels, 3, stride=1, padding=1)
        self.bn_out = nn.BatchNorm2d(channels, affine=False)
        if seed is not None:
            reinit_generator(self, seed)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], 128, self.init_size, self.init_size)
        h = F.interpolate(self.bn0(h), scale_factor=2, mode="nearest")
        h = F.leaky_relu(self.bn1(self.conv1(h)), 0.2)
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = F.leaky_relu(self.bn2(self.conv2(h)), 0.2)
        return self.bn_out(torch.tanh(self.conv3(h)))


def reinit_generator(G: Generator, seed: int) -> Generator:
    """Re-initialise every parameter and BN running statistic of G from `seed`, in place.

    The new values are those of ``Generator(**G.hparams)`` built on the CPU under ``torch.manual_seed(seed)``
    (PyTorch's default initialisation), so they do not depend on G's device or history; the global RNG
    state is left untouched.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        fresh = Generator(**G.hparams)
    G.load_state_dict(fresh.state_dict())
    return G


def life_seed(seed: int, life: int) -> int:
    """Seed of the `life`-th generator of a run (life 0 = the first); independent streams per (seed, life)."""
    return derive_seed(seed, life, 0x6A5)


# ----------------------------------------------------------------------------------------------------------
# Exemplar buffer ("multiplicity of cases": earlier generators' exemplars stay in the student's diet)
# ----------------------------------------------------------------------------------------------------------
class ExemplarBuffer:
    """Bounded buffer of generated inputs, filled by reservoir sampling (Vitter's Algorithm R).

    After n samples were offered, each of them is in the buffer with probability min(1, capacity / n), so the
    modes of every past generator keep a share proportional to the exemplars they gave (FIFO would evict the
    oldest generators first, i.e. forget the earliest modes). Stored on the CPU as float32.
    """

    def __init__(self, capacity: int, seed: int = 0):
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self.rng = np.random.default_rng(seed)
        self.data: torch.Tensor | None = None
        self.size = 0
        self.seen = 0

    def __len__(self) -> int:
        return self.size

    def add(self, x: torch.Tensor) -> None:
        """Offer a batch of samples (first dim = batch); each enters per Algorithm R."""
        x = x.detach().to("cpu", torch.float32)
        if self.capacity == 0:
            self.seen += len(x)
            return
        if self.data is None:
            self.data = torch.empty((self.capacity, *x.shape[1:]), dtype=torch.float32)
        elif tuple(x.shape[1:]) != tuple(self.data.shape[1:]):
            raise ValueError(f"sample shape {tuple(x.shape[1:])} differs from the buffer's "
                             f"{tuple(self.data.shape[1:])}")
        slot_of_row: dict[int, int] = {}  # slot -> row; a later row overwrites an earlier one in the same slot
        for row in range(len(x)):
            self.seen += 1
            if self.size < self.capacity:
                slot_of_row[self.size] = row
                self.size += 1
            else:
                j = int(self.rng.integers(0, self.seen))
                if j < self.capacity:
                    slot_of_row[j] = row
        if slot_of_row:
            slots = torch.tensor(list(slot_of_row.keys()))
            self.data[slots] = x[torch.tensor(list(slot_of_row.values()))]

    def sample(self, n: int, device=None) -> torch.Tensor:
        """n samples drawn uniformly (without replacement when n <= len(self))."""
        if self.size == 0:
            raise ValueError("the exemplar buffer is empty")
        idx = self.rng.choice(self.size, size=n, replace=n > self.size)
        return self.data[torch.as_tensor(idx)].to(device or "cpu")

    def contents(self) -> torch.Tensor:
        """The stored samples (a view), shape (len(self), ...)."""
        return self.data[: self.size] if self.data is not None else torch.empty(0)


# ----------------------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------------------
def one_hot_loss(teacher_logits: torch.Tensor) -> torch.Tensor:
    """Eq. G1 (DAFL L_oh): CE(T(x), argmax T(x)), batch mean; pushes each sample towards a confident class."""
    return F.cross_entropy(teacher_logits, teacher_logits.argmax(dim=1))


def information_entropy_loss(teacher_logits: torch.Tensor) -> torch.Tensor:
    """Eq. G2 (DAFL L_ie): sum_k pbar_k ln pbar_k, pbar = batch-mean softmax = -H(pbar).

    Minimising it maximises the entropy of the batch-mean prediction, i.e. balances the classes in a batch.
    Natural log (the paper's entropy); DAFL's public code is reported to use log10, a factor 1/ln(10).
    """
    pbar = F.softmax(teacher_logits, dim=1).mean(dim=0)
    return (pbar * torch.log(pbar.clamp_min(1e-12))).sum()


def activation_loss(features: torch.Tensor) -> torch.Tensor:
    """Eq. G3 (DAFL L_a): -mean |f_T| over the teacher's penultimate features (all samples and units)."""
    return -features.abs().mean()


def kd_loss(teacher_logits: torch.Tensor, student_logits: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """Eq. S1: KL(softmax(t/T) || softmax(s/T)) * T^2, summed over classes, mean over the batch.

    The T^2 factor (Hinton et al. 2015) keeps gradient magnitudes independent of T; at T = 1 it is 1.
    """
    return softened_kl(teacher_logits, student_logits, T, T).mean() * T * T


def disagreement(teacher_logits: torch.Tensor, student_logits: torch.Tensor, kind: str = "l1",
                 T: float = 1.0) -> torch.Tensor:
    """Eq. G4's D: 'l1' = mean |t - s| over batch and logits (DFAD); 'kl' = kd_loss(t, s, T) (ZSKT)."""
    if kind == "l1":
        return (teacher_logits - student_logits).abs().mean()
    if kind == "kl":
        return kd_loss(teacher_logits, student_logits, T)
    raise ValueError(f"disagreement kind must be 'l1' or 'kl', got '{kind}'")


def student_objective(teacher_logits: torch.Tensor, student_logits: torch.Tensor, args: GASArgs) -> torch.Tensor:
    """What the student minimises: kd_loss (Eq. S1) or DFAD's L1 on logits."""
    if args.student_loss == "kl":
        return kd_loss(teacher_logits, student_logits, args.temperature)
    return disagreement(teacher_logits, student_logits, "l1")


def generator_loss(teacher_logits: torch.Tensor, teacher_features: torch.Tensor | None,
                   student_logits: torch.Tensor | None, args: GASArgs) -> tuple[torch.Tensor, dict]:
    """L_G = w_oh G1 + w_ie G2 + w_act G3 - w_adv D(T, S) (Eq. G5); terms with weight 0 are not computed.

    Returns the total and the unweighted terms (floats) for logging.
    """
    total = teacher_logits.new_zeros(())
    parts: dict[str, float] = {}
    if args.w_one_hot:
        term = one_hot_loss(teacher_logits)
        total, parts["one_hot"] = total + args.w_one_hot * term, term.item()
    if args.w_info_entropy:
        term = information_entropy_loss(teacher_logits)
        total, parts["info_entropy"] = total + args.w_info_entropy * term, term.item()
    if args.w_activation:
        if teacher_features is None:
            raise ValueError("w_activation > 0 needs the teacher to return (logits, penultimate features)")
        term = activation_loss(teacher_features)
        total, parts["activation"] = total + args.w_activation * term, term.item()
    if args.w_adv:
        term = disagreement(teacher_logits, student_logits, args.adv_kind, args.temperature)
        total, parts["disagreement"] = total - args.w_adv * term, term.item()
    return total, parts


# ----------------------------------------------------------------------------------------------------------
# The one loop
# ----------------------------------------------------------------------------------------------------------
@dataclass
class DistillResult:
    """What `distill` returns: the trained student and the run's record."""

    student: nn.Module
    generator: Generator | None
    buffer: ExemplarBuffer | None
    history: list
    """one dict per record: student_step, generator_step, life, buffer_size, losses, wall_s (+ evaluate())"""
    provenance: list
    """one dict per student batch: student_step and the number of inputs from each of SOURCES"""
    generator_steps: int
    lives: int
    """generators used (1 + number of re-initialisations); 0 without a generator"""
    args: GASArgs

    def sources_seen(self) -> set[str]:
        """The sources that contributed at least one input to some student batch."""
        return {s for rec in self.provenance for s in SOURCES if rec[s] > 0}


def _logits_and_features(out) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A model returns logits, or (logits, penultimate features) as a tuple / NamedTuple."""
    if isinstance(out, torch.Tensor):
        return out, None
    return out[0], (out[1] if len(out) > 1 else None)


def _real_batches(loader) -> Iterator[torch.Tensor]:
    """Endless inputs from a real-data loader (labels dropped: KD uses the teacher's outputs only)."""
    while True:
        n = 0
        for batch in loader:
            n += 1
            yield batch[0] if isinstance(batch, (tuple, list)) else batch
        if n == 0:
            raise ValueError("real_loader is empty")


def _check_finite(loss: torch.Tensor, what: str, step: int, args: GASArgs, parts: dict | None = None) -> None:
    """A non-finite loss stops the run (common.checks.check_finite) naming `what` and its non-finite `parts`."""
    terms = {f"{what} term {k}": v for k, v in (parts or {}).items()} or {what: loss}
    check_finite(loss, terms, f"gan_simulator method '{args.method}' seed {args.seed}", f"step {step}",
                 f"lower lr_generator ({args.lr_generator}) / lr_student ({args.lr_student}) or the loss weights "
                 "(a distillation keeps no checkpoint: a rerun starts it from scratch)")


def distill(teacher: nn.Module, student: nn.Module, args: GASArgs, data_free: bool = True, real_loader=None,
            noise_only: bool = False, log: Callable[[dict], None] | None = None,
            evaluate: Callable[[nn.Module], dict] | None = None,
            input_map: Callable[[torch.Tensor], torch.Tensor] | None = None) -> DistillResult:
    """Distil `teacher` into `student` (trained in place) by `args.method`; see the module docstring.

    `data_free` and `noise_only` are guards, not selectors (``args.method`` selects): ``data_free=True`` (the
    default) refuses ``kd_real`` and any ``real_loader``; real data is reachable only with
    ``method='kd_real', data_free=False, real_loader=...``. ``noise_only=True`` requires ``kd_noise``.
    `log(record)` and `evaluate(student) -> dict` (run under no_grad, student in eval mode) are called every
    ``log_every`` student steps. The teacher is frozen in place (eval mode, requires_grad False).
    `input_map` (differentiable; default identity) maps generator / buffer / noise outputs to the models' input
    space (e.g. a policy's frame scale, papers/gan_simulator/policy.py); real batches are already in that space.
    """
    args = args.resolved()
    if args.method in DATA_FREE_METHODS and real_loader is not None:
        raise ValueError(f"method '{args.method}' is data-free: it must not be given real data "
                         f"(real_loader is not None); only 'kd_real' trains on real data")
    if args.method == "kd_real" and data_free:
        raise ValueError("method 'kd_real' trains the student on real data: pass data_free=False (and "
                         "real_loader) to opt in")
    if args.method == "kd_real" and real_loader is None:
        raise ValueError("method 'kd_real' needs real_loader (the real training inputs)")
    if noise_only and args.method != "kd_noise":
        raise ValueError(f"noise_only=True but method is '{args.method}': only 'kd_noise' feeds pure noise")

    seed_everything(args.seed)
    device = resolve_device(args.device)
    teacher.to(device).eval().requires_grad_(False)
    student.to(device).train()
    s_opt = torch.optim.Adam(student.parameters(), lr=args.lr_student)
    shape = (args.channels, args.image_size, args.image_size)

    G = g_opt = buffer = None
    if args.method in GENERATOR_METHODS:
        G = Generator(args.image_size, args.channels, args.latent_dim, args.gen_bn_eps,
                      seed=life_seed(args.seed, 0)).to(device).train()
        g_opt = torch.optim.Adam(G.parameters(), lr=args.lr_generator)
        if args.buffer_mix > 0:
            buffer = ExemplarBuffer(args.buffer_capacity, seed=args.seed)
    real = _real_batches(real_loader) if args.method == "kd_real" else None  # the only path to real data
    to_input = input_map if input_map is not None else (lambda x: x)

    def student_batch() -> tuple[torch.Tensor, dict]:
        """The next student input batch and its provenance (counts per source)."""
        counts = dict.fromkeys(SOURCES, 0)
        if G is not None:
            n_buf = round(args.buffer_mix * args.batch_size) if buffer is not None and len(buffer) else 0
            with torch.no_grad():
                parts = [G(torch.randn(args.batch_size - n_buf, args.latent_dim, device=device))]
            if n_buf:
                parts.append(buffer.sample(n_buf, device))
            counts["generator"], counts["buffer"] = args.batch_size - n_buf, n_buf
            with torch.no_grad():
                return to_input(torch.cat(parts)), counts
        if real is not None:
            x = next(real).to(device)
            counts["real"] = len(x)
            return x, counts
        counts["noise"] = args.batch_size
        return to_input(torch.randn(args.batch_size, *shape, device=device) * args.noise_std), counts

    def generator_step(step: int) -> dict:
        x = to_input(G(torch.randn(args.batch_size, args.latent_dim, device=device)))
        t_logits, t_feat = _logits_and_features(teacher(x))
        s_logits = None
        if args.w_adv:  # gradients flow through S to x only; S's parameters get none here
            flags = [p.requires_grad for p in student.parameters()]
            student.requires_grad_(False)
            s_logits = _logits_and_features(student(x))[0]
            for p, flag in zip(student.parameters(), flags):
                p.requires_grad_(flag)
        loss, parts = generator_loss(t_logits, t_feat, s_logits, args)
        _check_finite(loss, "generator loss", step, args, parts)
        g_opt.zero_grad(set_to_none=True)
        loss.backward()
        g_opt.step()
        return {"loss_generator": loss.item(), **{f"g_{k}": v for k, v in parts.items()}}

    history, provenance = [], []
    s_step = g_step = 0
    lives = 1 if G is not None else 0
    last: dict = {}
    t0 = time.perf_counter()
    while s_step < args.student_steps:
        for _ in range(args.g_steps if G is not None else 0):
            last.update(generator_step(g_step))
            g_step += 1
            more = s_step + args.s_steps < args.student_steps  # another iteration (and generator) will follow
            if args.reinit_every and g_step % args.reinit_every == 0 and more:
                if buffer is not None:  # the retiring generator's exemplars join the buffer
                    with torch.no_grad():
                        buffer.add(G(torch.randn(args.exemplars_per_reinit, args.latent_dim, device=device)))
                reinit_generator(G, life_seed(args.seed, lives))
                g_opt = torch.optim.Adam(G.parameters(), lr=args.lr_generator)
                lives += 1
        for _ in range(min(args.s_steps, args.student_steps - s_step)):
            x, counts = student_batch()
            provenance.append({"student_step": s_step, **counts})
            with torch.no_grad():
                t_logits = _logits_and_features(teacher(x))[0]
            loss = student_objective(t_logits, _logits_and_features(student(x))[0], args)
            _check_finite(loss, "student loss", s_step, args)
            s_opt.zero_grad(set_to_none=True)
            loss.backward()
            s_opt.step()
            s_step += 1
            last["loss_student"] = loss.item()
            if s_step % args.log_every == 0 or s_step == args.student_steps:
                rec = {"student_step": s_step, "generator_step": g_step, "life": lives,
                       "buffer_size": len(buffer) if buffer is not None else 0,
                       "wall_s": time.perf_counter() - t0, **last}
                if evaluate is not None:
                    student.eval()
                    with torch.no_grad():
                        rec.update(evaluate(student))
                    student.train()
                history.append(rec)
                if log is not None:
                    log(rec)
    return DistillResult(student, G, buffer, history, provenance, g_step, lives, args)


# ----------------------------------------------------------------------------------------------------------
# Supervised pieces for the image experiments
# ----------------------------------------------------------------------------------------------------------
class ClassifierOut(NamedTuple):
    logits: torch.Tensor
    features: torch.Tensor
    """penultimate activations (after ReLU), the input of the last linear layer"""


class LeNet5(nn.Module):
    """LeNet-5 as in DAFL's MNIST experiments (6-16-120-84), 32x32 input, ReLU + max-pooling.

    conv5x5 c1 -> ReLU -> maxpool2 -> conv5x5 c2 -> ReLU -> maxpool2 -> conv5x5 c3 -> ReLU -> fc f -> ReLU
    -> fc n_classes. Returns ClassifierOut(logits, features) with features the f-unit penultimate layer.
    """

    widths = (6, 16, 120, 84)

    def __init__(self, in_channels: int = 1, n_classes: int = 10):
        super().__init__()
        c1, c2, c3, f = self.widths
        self.conv1 = nn.Conv2d(in_channels, c1, 5)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        self.conv3 = nn.Conv2d(c2, c3, 5)
        self.fc1 = nn.Linear(c3, f)
        self.fc2 = nn.Linear(f, n_classes)

    def forward(self, x: torch.Tensor) -> ClassifierOut:
        if x.shape[-2:] != (32, 32):
            raise ValueError(f"LeNet5 takes 32x32 inputs, got {tuple(x.shape[-2:])}")
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)   # 32 -> 28 -> 14
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)   # 14 -> 10 -> 5
        h = F.relu(self.conv3(h)).flatten(1)         # 5 -> 1
        features = F.relu(self.fc1(h))
        return ClassifierOut(self.fc2(features), features)


class LeNet5Half(LeNet5):
    """LeNet-5-half, DAFL's MNIST student: every width halved (3-8-60-42)."""

    widths = (3, 8, 60, 42)


def digits_dataset(seed: int = 0, test_fraction: float = 0.2, image_size: int = 32):
    """scikit-learn's bundled digits (1,797 8x8 images, 10 classes; offline) as (train, test) TensorDatasets.

    Pixels 0..16 are scaled to [0, 1], upsampled bilinearly (align_corners=False) to image_size, mapped to
    [-1, 1]; x has shape (N, 1, s, s) float32, y int64. The split is common.datasets' ``stratified`` one (GAS's
    recorded split; Knowledge Flow records another, the registry's docstring says why both stay), fixed by `seed`.
    """
    x, y = digits_images()
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = (x * 2.0 - 1.0).clamp(-1.0, 1.0)
    idx_train, idx_test = digits_split("stratified", y.numpy(), seed, test_fraction)
    idx_train, idx_test = torch.as_tensor(idx_train), torch.as_tensor(idx_test)
    return (torch.utils.data.TensorDataset(x[idx_train], y[idx_train]),
            torch.utils.data.TensorDataset(x[idx_test], y[idx_test]))


def accuracy(model: nn.Module, loader, device=None) -> float:
    """Top-1 accuracy in [0, 1] of `model` (logits or (logits, features)) over a loader of (x, y)."""
    correct, total = top1_counts(model, loader, device or next(model.parameters()).device)
    if total == 0:
        raise ValueError("accuracy: the loader is empty")
    return correct / total


IMAGE_DATASETS = ("mnist", "fashion_mnist", "cifar10")
"""the torchvision datasets of the image experiments (common.datasets.TORCHVISION holds where and how they lie)"""


def load_torchvision_dataset(name: str, root: str | Path, train: bool = True, image_size: int = 32):
    """A torchvision dataset resized to image_size and normalised to [-1, 1], read from `root` (no download).

    torchvision is imported lazily (common.datasets.torchvision_dataset): missing files raise FileNotFoundError
    naming the dataset, the expected path and the command that fetches it; a missing torchvision RuntimeError.
    Never a silent skip.
    """
    key = name.lower().replace("-", "_")
    if key not in IMAGE_DATASETS:
        raise ValueError(f"unknown dataset '{name}'; known: {', '.join(IMAGE_DATASETS)}")
    channels = TORCHVISION[key].channels
    require(key, root, "train" if train else "test")
    from torchvision import transforms

    tf = transforms.Compose([transforms.Resize(image_size), transforms.ToTensor(),
                             transforms.Normalize([0.5] * channels, [0.5] * channels)])
    return torchvision_dataset(key, root, "train" if train else "test", transform=tf)


__all__ = [
    "GASArgs", "METHODS", "METHOD_PRESETS", "SOURCES", "Generator", "reinit_generator", "life_seed",
    "ExemplarBuffer", "one_hot_loss", "information_entropy_loss", "activation_loss", "kd_loss", "disagreement",
    "student_objective", "generator_loss", "DistillResult", "distill", "ClassifierOut", "LeNet5", "LeNet5Half",
    "digits_dataset", "accuracy", "load_torchvision_dataset", "IMAGE_DATASETS",
]
