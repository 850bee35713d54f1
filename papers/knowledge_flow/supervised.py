"""Knowledge Flow for supervised learning (Sec. 4.2, appendix 7.1; Tables 3-6), readable top to bottom.

The student is a classifier with the LayeredNet split (``input / preact / activate / heads``), so the
*same* :class:`~papers.knowledge_flow.method.KnowledgeFlowStudent` that mixes teacher layers into the RL
student mixes them here, and the *same* :class:`~papers.knowledge_flow.method.KnowledgeFlowHook` adds the
transfer losses. Eq. 3 of the paper::

    min_{theta,w,Q}  E_(x,y) [ CE(f~_theta(x), y) + lambda1 * l_dep(w) + lambda2 * KL(f~_theta(x) || f~_theta_old(x)) ]

with lambda1 ramped linearly from 0 to its selected value over training (as in RL), l_dep of Eq. 5, and
theta_old the parameters of the previous optimiser step. After training the exported student (no
teacher, Q or w) is evaluated: top-1 test error in %, averaged over ``seeds`` runs (Sec. 4.2: three).

Comparisons (same loop, other objectives): ``baseline`` (the student alone, cross-entropy),
``finetune:<teacher>`` (the student initialised from a same-architecture teacher), ``kd:<teacher>``
(Hinton et al. 2015: alpha * T^2 * soft-target cross-entropy at temperature T + (1 - alpha) * CE) and
``kf:<t1>+<t2>`` (Knowledge Flow with those teachers). lambda1/lambda2 (and T/alpha for KD) are chosen
on a validation split carved from the training set, from small grids (Sec. 4.2: "determined using the
validation set").

In the pipeline, papers/knowledge_flow/supervised.smk runs the presets a tier lists (config ``kf_supervised``;
:func:`tier_plan`) and builds Tables 3-6 (supervised_tables.py); presets whose data is absent are shown as
not run, with the expected paths and how to get the data. By hand::

    python -m papers.knowledge_flow.supervised --experiment digits_kd --out runs/kf_sup/digits_kd \\
        --args '{epochs: 20, seeds: 3}'

It writes ``results.json`` (resolved args, teachers' errors, per-method summary), ``results.csv`` (one
row per method and seed) and ``pw.csv`` (the normalised weights p_w of every candidate -- 'student',
'teacher 0', ... -- per student layer, at the start and after every epoch, for every final Knowledge Flow
run: the data of the paper's Fig. 7), all atomically.

Choices where the paper is silent:

* Nets: MLPs as in Hinton's MNIST setup (teacher 1200-1200, student 800-800) are faithful for Table 4's
  MNIST columns. DenseNet-100/24 (Table 3), Chen (2017)'s MNIST/STL-10 models (Tables 5-6) and the
  CIFAR-100/ImageNet KD nets are not built: the presets for those tables use a small conv net stand-in
  (:data:`EXPERIMENTS`), and no data augmentation.
* Links: ``links: same`` joins each student layer to the teacher layer of the same name (fc1<-fc1, ...);
  Q is a linear map (fc) or a 1x1 conv (conv), as in RL.
* Optimiser: Adam, lr 1e-3, batch 64, no weight decay, a fixed number of epochs for every method.
* theta_old: the previous optimiser step's parameters (``theta_old: ema`` gives Sec. 7.6's average).
* Validation: ``val_fraction`` (10%) of the training set by a fixed permutation (split_seed), the same
  for every method and seed; the final runs train on the rest only. Selection trains one run per grid
  point with the first seed and keeps the lowest validation error of the *exported* student (ties: the
  first in grid order); that run is reused as the first seed's final run.
* Table 4's 'MNIST w/o digit 3' (after Hinton): the teacher sees all digits; the student's training and
  validation sets lack the dropped classes; the test set is complete.
* Fine-tuning copies every hidden layer; the output layer too when the class counts agree (else fresh).
* scikit-learn's digits (8x8, 1,797 images, bundled, no download) are the offline smoke task: a fixed
  70/30 train/test split (seed 0), pixels / 16.

Budget caveat: Adam moves each logit w roughly by lr per step whatever lambda1 is, so the student becomes
independent (p_w(student) -> 1) only after a few / lr steps. Short runs (a few hundred steps on digits)
end with p_w(student) ~ 0.5 and an exported student much worse than the mixed net; the rows record
``independence`` (max_j 1 - p_w^j(student)) and ``test_error_mixed`` so this is visible. On digits,
60 epochs at lr 3e-3 (~1,000 steps) reach independence ~0.08 and an exported error close to the mixed one.
"""

from __future__ import annotations

import csv
import itertools
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.a2c import Batch
from common.envs import dataclass_from_dict
from common.io import atomic_path, seed_everything, write_json
from common.nets import NetOut
from papers.knowledge_flow.method import (KFArgs, KnowledgeFlowHook, KnowledgeFlowStudent, export_student,
                                          student_independence)


# ---------------------------------------------------------------------------------------------------
# Data: scikit-learn's digits offline; torchvision datasets from a local directory, never downloaded
# ---------------------------------------------------------------------------------------------------
class Split(NamedTuple):
    x: torch.Tensor   # [N, C, H, W] float32 in [0, 1]
    y: torch.Tensor   # [N] int64 class index


class Task(NamedTuple):
    name: str
    train: Split
    val: Split
    test: Split
    n_classes: int
    in_shape: tuple


# name -> (torchvision class, constructor kwargs, path under data_dir that exists once the data is there)
TORCHVISION = {
    "mnist": ("MNIST", {}, "MNIST/raw"),
    "emnist_letters": ("EMNIST", {"split": "letters"}, "EMNIST/raw"),
    "emnist_digits": ("EMNIST", {"split": "digits"}, "EMNIST/raw"),
    "cifar10": ("CIFAR10", {}, "cifar-10-batches-py"),
    "cifar100": ("CIFAR100", {}, "cifar-100-python"),
    "svhn": ("SVHN", {}, "{split}_32x32.mat"),
    "stl10": ("STL10", {}, "stl10_binary"),
}
DATASETS = ("digits", *TORCHVISION)


def expected_path(name: str, data_dir: str | Path, split: str) -> Path:
    """Where dataset `name` ('train' or 'test' split) must lie under `data_dir` for :func:`dataset` to read it."""
    return Path(data_dir) / TORCHVISION[name][2].format(split=split)


def fetch_command(name: str, data_dir: str | Path, split: str) -> str:
    """The one-line command that downloads dataset `name` (`split`) into `data_dir`, for a machine with internet."""
    cls_name, kw, _ = TORCHVISION[name]
    split_kw = {"split": split} if cls_name in ("SVHN", "STL10") else {"train": split == "train"}
    return (f"python -c \"import torchvision; torchvision.datasets.{cls_name}('{Path(data_dir)}', "
            + "".join(f"{k}={v!r}, " for k, v in {**kw, **split_kw}.items()) + "download=True)\"")


def dataset(name: str, data_dir: str | Path = "data", split: str = "train") -> Split:
    """One split ('train' or 'test') of a dataset as float tensors [N, C, H, W] in [0, 1] and labels.

    ``digits`` comes with scikit-learn. The others are read with torchvision's dataset classes from
    `data_dir` with ``download=False``; missing data (or a missing torchvision) stops with a message
    naming the dataset, the expected path and how to get it.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got '{split}'")
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        perm = np.random.default_rng(0).permutation(len(d.target))      # fixed 70/30 split
        n_test = int(round(0.3 * len(perm)))
        idx = perm[n_test:] if split == "train" else perm[:n_test]
        x = torch.tensor(d.images[idx], dtype=torch.float32).unsqueeze(1) / 16.0
        return Split(x, torch.tensor(d.target[idx], dtype=torch.long))
    if name not in TORCHVISION:
        raise ValueError(f"unknown dataset '{name}'; choose one of {', '.join(DATASETS)}")
    cls_name, kw, _ = TORCHVISION[name]
    root = Path(data_dir)
    split_kw = {"split": split} if cls_name in ("SVHN", "STL10") else {"train": split == "train"}
    expected, get = expected_path(name, root, split), fetch_command(name, root, split)
    if not expected.exists():
        raise FileNotFoundError(
            f"dataset '{name}' ({split}) not found: expected {expected} (data_dir '{root}'). This program never "
            f"downloads. Fetch it on a machine with internet access with\n    {get}\nand copy the folder to "
            f"'{root}', or point data_dir in --args to where it already lies.")
    try:
        import torchvision.datasets as tvd
    except ImportError:
        raise RuntimeError(f"dataset '{name}' needs torchvision, which is not installed: pip install torchvision "
                           f"(the data at {expected} is read with torchvision.datasets.{cls_name}).") from None
    try:
        ds = getattr(tvd, cls_name)(str(root), download=False, **kw, **split_kw)
    except RuntimeError as e:   # torchvision: "Dataset not found or corrupted"
        raise FileNotFoundError(f"dataset '{name}' ({split}) under {root} could not be read by torchvision "
                                f"({e}). Fetch it again with\n    {get}") from None
    data = ds.data if isinstance(ds.data, torch.Tensor) else torch.from_numpy(np.asarray(ds.data))
    labels = getattr(ds, "targets", None)
    labels = getattr(ds, "labels", None) if labels is None else labels
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if data.dim() == 3:                                  # MNIST / EMNIST [N, H, W]
        data = data.unsqueeze(1)
    elif data.shape[-1] == 3:                            # CIFAR [N, H, W, 3]
        data = data.permute(0, 3, 1, 2)
    if name == "emnist_letters":                         # torchvision labels letters 1..26
        y = y - 1
    return Split(data.float() / 255.0, y)


def make_task(name: str, classes=None, drop_train_classes=(), data_dir="data", val_fraction=0.1,
              image_size=None, split_seed: int = 0) -> Task:
    """A classification task: `classes` kept (relabelled 0..K-1 in the order given; None = all), a validation
    split carved from the training set by a fixed permutation, `drop_train_classes` removed from train and
    validation only (Table 4's 'w/o digit 3'), images optionally resized to `image_size` [H, W]."""
    train, test = dataset(name, data_dir, "train"), dataset(name, data_dir, "test")
    if classes is not None:
        classes = list(classes)
        lut = torch.full((int(max(train.y.max(), test.y.max())) + 1,), -1, dtype=torch.long)
        lut[torch.tensor(classes)] = torch.arange(len(classes))
        train, test = (Split(s.x[lut[s.y] >= 0], lut[s.y][lut[s.y] >= 0]) for s in (train, test))
        n_classes = len(classes)
        drop = [classes.index(c) for c in drop_train_classes]
    else:
        n_classes = int(max(train.y.max(), test.y.max())) + 1
        drop = list(drop_train_classes)
    if image_size is not None:
        train, test = (Split(F.interpolate(s.x, size=tuple(image_size), mode="bilinear", align_corners=False,
                                           antialias=True), s.y) for s in (train, test))
    perm = torch.randperm(len(train.y), generator=torch.Generator().manual_seed(split_seed))
    n_val = int(round(val_fraction * len(perm)))
    val, train = Split(train.x[perm[:n_val]], train.y[perm[:n_val]]), Split(train.x[perm[n_val:]], train.y[perm[n_val:]])
    if drop:
        keep = lambda s: Split(s.x[~torch.isin(s.y, torch.tensor(drop))], s.y[~torch.isin(s.y, torch.tensor(drop))])
        train, val = keep(train), keep(val)
    return Task(name, train, val, test, n_classes, tuple(train.x.shape[1:]))


# ---------------------------------------------------------------------------------------------------
# Nets: a classifier with the LayeredNet split, so KnowledgeFlowStudent can mix teacher layers into it
# ---------------------------------------------------------------------------------------------------
class ClassifierNet(nn.Module):
    """conv layers (k x k, stride s, 'same'-style padding k//2) then fully connected layers, ReLU, and a
    linear output layer of class logits. Layers are named conv1.., fc1..; ``heads`` returns (logits, None)
    (no value head), so the net plugs into KnowledgeFlowStudent like an actor-critic LayeredNet."""

    recurrent = False

    def __init__(self, in_shape, n_classes: int, hidden=(800, 800), convs=()):
        super().__init__()
        self.obs_shape, self.n_actions = tuple(in_shape), int(n_classes)
        layers, names = [], []
        c, h, w = self.obs_shape
        for i, (out_c, k, s) in enumerate(convs):
            layers.append(nn.Conv2d(c, out_c, k, s, padding=k // 2))
            names.append(f"conv{i + 1}")
            c, h, w = out_c, (h + 2 * (k // 2) - k) // s + 1, (w + 2 * (k // 2) - k) // s + 1
        d = c * h * w
        for i, n in enumerate(hidden):
            layers.append(nn.Linear(d, n))
            names.append(f"fc{i + 1}")
            d = n
        if not layers:
            raise ValueError("a classifier needs at least one hidden layer (hidden or convs)")
        self.layers, self.layer_names = nn.ModuleList(layers), tuple(names)
        self.head = nn.Linear(d, n_classes)

    @property
    def n_classes(self) -> int:
        return self.n_actions

    def input(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float32)

    def preact(self, i: int, h: torch.Tensor) -> torch.Tensor:
        layer = self.layers[i]
        return layer(h.flatten(1) if isinstance(layer, nn.Linear) and h.dim() > 2 else h)

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        return F.relu(z)

    def heads(self, h: torch.Tensor):
        return self.head(h.flatten(1)), None

    def forward_preacts(self, x: torch.Tensor) -> NetOut:
        h, preacts = self.input(x), []
        for i in range(len(self.layers)):
            preacts.append(self.preact(i, h))
            h = self.activate(preacts[-1])
        return NetOut(self.heads(h)[0], None, None, {"preacts": preacts})

    def forward(self, x: torch.Tensor, state=None, starts=None) -> NetOut:
        h = self.input(x)
        for i in range(len(self.layers)):
            h = self.activate(self.preact(i, h))
        return NetOut(self.heads(h)[0], None)


def finetune_classifier(student: ClassifierNet, teacher: ClassifierNet) -> ClassifierNet:
    """Initialise `student` from a same-architecture teacher: every hidden layer, and the output layer when
    the class counts agree (otherwise it stays freshly initialised)."""
    sd, mine = teacher.state_dict(), student.state_dict()
    keep = [k for k in mine if k.startswith("layers.") or teacher.n_classes == student.n_classes]
    for k in keep:
        if k not in sd or sd[k].shape != mine[k].shape:
            raise ValueError(f"cannot fine-tune from this teacher: parameter '{k}' is "
                             f"{'missing' if k not in sd else tuple(sd[k].shape)}, the student's is "
                             f"{tuple(mine[k].shape)} (fine-tuning needs the student's architecture)")
    with torch.no_grad():
        for k in keep:
            mine[k].copy_(sd[k])
    return student


def same_name_links(student: ClassifierNet, teachers) -> list[dict]:
    """``links: same``: student layer j <- the layer of the same name in every teacher that has one."""
    return [{"teacher": m, "teacher_layer": n, "student_layer": n}
            for m, t in enumerate(teachers) for n in student.layer_names if n in t.layer_names]


# ---------------------------------------------------------------------------------------------------
# Objectives: CE (baseline, fine-tune), Knowledge Flow (Eq. 3), Hinton KD
# ---------------------------------------------------------------------------------------------------
def supervised_kf_loss(kf: KnowledgeFlowStudent, hook: KnowledgeFlowHook, x, y, progress: float, step: int = 0):
    """Eq. 3 on a minibatch: CE(f~_theta(x), y) + lambda1(progress) * l_dep(w) + lambda2 * KL(f~_theta || f~_theta_old).

    The last two terms come from the RL hook (one implementation): it sees the minibatch as a rollout of
    length 1 ([1, B, ...]), ramps lambda1 with `progress`, and snapshots theta for theta_old.
    Returns (loss, logs, batch); pass `batch` to ``hook.after_update`` after the optimiser step.
    """
    out = kf(x)
    ce = F.cross_entropy(out.logits, y)
    batch = Batch(x.unsqueeze(0), y.unsqueeze(0), None, None, None, None, progress, step)
    transfer, logs = hook.loss(kf, batch, out)
    return ce + transfer, {"ce": ce.item(), **logs}, batch


def kd_loss(student_logits, teacher_logits, y, temperature: float, alpha: float) -> torch.Tensor:
    """Hinton et al. (2015): alpha * T^2 * H(softmax(t/T), softmax(s/T)) + (1 - alpha) * CE(s, y), with H the
    soft-target cross-entropy (KL plus the teacher's entropy, a constant: same gradients); T^2 keeps the
    soft gradients' scale independent of T."""
    soft = -(F.softmax(teacher_logits / temperature, -1) * F.log_softmax(student_logits / temperature, -1)).sum(-1)
    return alpha * temperature ** 2 * soft.mean() + (1 - alpha) * F.cross_entropy(student_logits, y)


class CrossEntropy:
    def loss(self, model, x, y, progress, step):
        return F.cross_entropy(model(x).logits, y), {}

    def after_update(self, model, batch):
        pass


class KnowledgeFlowObjective:
    def __init__(self, args: KFArgs):
        self.hook = KnowledgeFlowHook(args)

    def loss(self, model, x, y, progress, step):
        loss, logs, self._batch = supervised_kf_loss(model, self.hook, x, y, progress, step)
        return loss, logs

    def after_update(self, model, batch=None):
        self.hook.after_update(model, self._batch)


class HintonKD:
    def __init__(self, teacher: nn.Module, temperature: float, alpha: float):
        self.teacher, self.temperature, self.alpha = teacher.requires_grad_(False).eval(), temperature, alpha

    def loss(self, model, x, y, progress, step):
        with torch.no_grad():
            t = self.teacher(x).logits
        return kd_loss(model(x).logits, t, y, self.temperature, self.alpha), {}

    def after_update(self, model, batch=None):
        pass


def fit(model: nn.Module, train: Split, objective, epochs: int, batch_size: int, lr: float, seed: int,
        on_epoch=None) -> nn.Module:
    """Adam on `objective` for `epochs` passes over `train` in seeded random minibatches.

    ``on_epoch(epoch, step)``, if given, is called before training (epoch 0, step 0) and after every epoch
    (epoch e = epochs done, step = optimiser steps done); it must only read the model (no random numbers), so
    the run is the same with or without it."""
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    g = torch.Generator().manual_seed(seed)
    n = len(train.y)
    total = epochs * math.ceil(n / batch_size)
    step = 0
    model.train()
    if on_epoch is not None:
        on_epoch(0, 0)
    for epoch in range(epochs):
        for idx in torch.randperm(n, generator=g).split(batch_size):
            loss, _ = objective.loss(model, train.x[idx], train.y[idx], step / total, step)   # progress as in A2C
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss ({loss.item()}) at step {step} (epoch {epoch}): lower lr "
                                         f"(now {lr}) or the lambdas")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            objective.after_update(model, None)
            step += 1
        if on_epoch is not None:
            on_epoch(epoch + 1, step)
    return model.eval()


@torch.no_grad()
def top1_error(model: nn.Module, split: Split, batch_size: int = 1024) -> float:
    """Top-1 error in % on `split`."""
    model.eval()
    wrong = sum(int((model(split.x[i:i + batch_size]).logits.argmax(-1) != split.y[i:i + batch_size]).sum())
                for i in range(0, len(split.y), batch_size))
    return 100.0 * wrong / max(len(split.y), 1)


# ---------------------------------------------------------------------------------------------------
# The program: teachers on their source tasks, then every method on the target, lambdas on validation
# ---------------------------------------------------------------------------------------------------
@dataclass
class SupArgs:
    """One supervised Knowledge Flow experiment; its results are a pure function of these."""

    dataset: str = "digits"
    """target dataset: digits (scikit-learn, offline) | mnist | emnist_letters | emnist_digits | cifar10 | cifar100 | svhn | stl10"""
    data_dir: str = "data"
    """where torchvision datasets lie (never downloaded)"""
    classes: list | None = None
    """target classes kept, relabelled 0..K-1 in this order (None: all)"""
    drop_train_classes: list = field(default_factory=list)
    """classes removed from the student's training/validation sets only (Table 4: MNIST w/o digit 3)"""
    image_size: list | None = None
    """resize every dataset of the experiment to [H, W] (e.g. STL-10 to CIFAR's 32x32 for CIFAR teachers)"""
    val_fraction: float = 0.1
    """share of the training set held out for choosing lambdas (and KD's T, alpha)"""
    split_seed: int = 0
    """seed of the train/validation split (fixed across methods and seeds)"""
    student: dict = field(default_factory=lambda: {"hidden": [64, 64], "convs": []})
    """the student ClassifierNet: hidden sizes and convs [[out_channels, kernel, stride], ...]"""
    teachers: list = field(default_factory=list)
    """[{name, dataset (default: target), classes, drop_train_classes, net {hidden, convs}, epochs}] trained here"""
    methods: list = field(default_factory=lambda: ["baseline"])
    """baseline | finetune:<teacher> | kd:<teacher> | kf:<teacher>[+<teacher>...]"""
    links: str | list = "same"
    """'same' (each student layer <- the teacher layer of the same name) or explicit KFArgs-style links"""
    epochs: int = 20
    """passes over the training set, every method and teacher (unless a teacher sets its own)"""
    batch_size: int = 64
    """minibatch size"""
    lr: float = 1e-3
    """Adam learning rate"""
    lambda1_grid: list = field(default_factory=lambda: [0.05, 0.1, 0.5])
    """final lambda1 (ramped from 0) candidates, chosen on validation"""
    lambda2_grid: list = field(default_factory=lambda: [0.001, 0.01, 0.05])
    """lambda2 candidates, chosen on validation"""
    theta_old: str = "previous"
    """previous: the previous step's parameters | ema (Sec. 7.6)"""
    ema_alpha: float = 0.9
    """EMA factor when theta_old is ema"""
    kd_temperature_grid: list = field(default_factory=lambda: [2.0, 4.0, 8.0])
    """Hinton KD temperatures, chosen on validation"""
    kd_alpha_grid: list = field(default_factory=lambda: [0.5, 0.9])
    """Hinton KD soft-target weights, chosen on validation"""
    seeds: int = 3
    """runs per method (seeds 0..seeds-1), averaged (Sec. 4.2: three)"""
    teacher_seed: int = 1000
    """seed of every teacher's training"""
    threads: int = 1
    """torch CPU threads"""

    @classmethod
    def from_dict(cls, d: dict) -> "SupArgs":
        a = dataclass_from_dict(cls, d, where="supervised knowledge_flow arguments")
        if a.dataset not in DATASETS:
            raise ValueError(f"unknown dataset '{a.dataset}'; choose one of {', '.join(DATASETS)}")
        names = [t.get("name") for t in a.teachers]
        if len(set(names)) != len(names) or None in names:
            raise ValueError(f"every teacher needs a unique 'name', got {names}")
        for t in a.teachers:
            spec = dataclass_from_dict(TeacherSpec, t, where=f"teacher '{t['name']}'")
            if spec.dataset is not None and spec.dataset not in DATASETS:
                raise ValueError(f"teacher '{spec.name}': unknown dataset '{spec.dataset}'; choose one of "
                                 f"{', '.join(DATASETS)}")
        for m in a.methods:
            kind, _, rest = m.partition(":")
            if kind not in ("baseline", "finetune", "kd", "kf") or (kind == "baseline") != (rest == ""):
                raise ValueError(f"method '{m}': write baseline, finetune:<teacher>, kd:<teacher> or kf:<t1>+<t2>")
            for t in filter(None, rest.split("+")):
                if t not in names:
                    raise ValueError(f"method '{m}' names teacher '{t}', but the teachers are {names}")
            if kind in ("finetune", "kd") and "+" in rest:
                raise ValueError(f"method '{m}': {kind} takes exactly one teacher")
        if a.theta_old not in ("previous", "ema"):
            raise ValueError(f"theta_old must be 'previous' or 'ema', got '{a.theta_old}'")
        if a.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {a.seeds}")
        return a


@dataclass
class TeacherSpec:
    """A teacher trained (with cross-entropy) on its source task by this program."""

    name: str = ""
    dataset: str | None = None
    classes: list | None = None
    drop_train_classes: list = field(default_factory=list)
    net: dict = field(default_factory=lambda: {"hidden": [64, 64]})
    epochs: int | None = None


def make_net(spec: dict, task: Task) -> ClassifierNet:
    return ClassifierNet(task.in_shape, task.n_classes, hidden=spec.get("hidden", ()), convs=spec.get("convs", ()))


def train_teacher(spec: dict, args: SupArgs, target: Task) -> tuple[ClassifierNet, float]:
    """Train one teacher on its source task; returns it (frozen) and its test error there."""
    t = TeacherSpec(**spec)
    source = (t.dataset or args.dataset, t.classes, list(t.drop_train_classes))
    if source == (args.dataset, args.classes, list(args.drop_train_classes)):
        task = target                                          # the target task itself (an 'expert' teacher)
    else:
        task = make_task(*source, data_dir=args.data_dir, val_fraction=args.val_fraction,
                         image_size=args.image_size, split_seed=args.split_seed)
    seed_everything(args.teacher_seed)
    net = make_net(t.net, task)
    fit(net, task.train, CrossEntropy(), t.epochs or args.epochs, args.batch_size, args.lr, args.teacher_seed)
    return net.requires_grad_(False).eval(), top1_error(net, task.test)


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


def run_method(method: str, params: dict, seed: int, args: SupArgs, task: Task, teachers: dict,
               pw_log: list | None = None) -> dict:
    """Train one student with `method` and `params` ({lambda1, lambda2} or {temperature, alpha}) from
    `seed`; returns its validation and test error (the exported student's, for kf). For kf, p_w of every
    candidate per student layer at the start and after every epoch is appended to `pw_log` if given
    (:func:`pw_recorder`)."""
    kind, _, rest = method.partition(":")
    names = [n for n in rest.split("+") if n]
    seed_everything(seed)
    student = make_net(args.student, task)
    row = {"method": method, "seed": seed, **params}
    if kind in ("baseline", "finetune"):
        if kind == "finetune":
            finetune_classifier(student, teachers[names[0]])
        model = fit(student, task.train, CrossEntropy(), args.epochs, args.batch_size, args.lr, seed)
    elif kind == "kd":
        teacher = teachers[names[0]]
        if teacher.n_classes != task.n_classes:
            raise ValueError(f"kd:{names[0]}: the teacher has {teacher.n_classes} classes, the target "
                             f"{task.n_classes}; KD needs the same output classes")
        model = fit(student, task.train, HintonKD(teacher, params["temperature"], params["alpha"]),
                    args.epochs, args.batch_size, args.lr, seed)
    else:
        ts = [teachers[n] for n in names]
        links = same_name_links(student, ts) if args.links == "same" else list(args.links)
        kf = KnowledgeFlowStudent(student, ts, links, example_obs=task.train.x[:1])
        objective = KnowledgeFlowObjective(KFArgs(lambda1=params["lambda1"], lambda2=params["lambda2"],
                                                  theta_old=args.theta_old, ema_alpha=args.ema_alpha))
        record = None if pw_log is None else pw_recorder(kf, method, seed, names, pw_log)
        fit(kf, task.train, objective, args.epochs, args.batch_size, args.lr, seed, on_epoch=record)
        row.update(test_error_mixed=top1_error(kf, task.test),
                   independence=student_independence(kf)["max"])
        model = export_student(kf)
    row.update(val_error=top1_error(model, task.val), test_error=top1_error(model, task.test))
    return row


def grid(method: str, args: SupArgs) -> list[dict]:
    kind = method.partition(":")[0]
    if kind == "kf":
        return [{"lambda1": a, "lambda2": b} for a, b in itertools.product(args.lambda1_grid, args.lambda2_grid)]
    if kind == "kd":
        return [{"temperature": t, "alpha": a} for t, a in itertools.product(args.kd_temperature_grid, args.kd_alpha_grid)]
    return [{}]


def run_experiment(args: SupArgs, log=print) -> dict:
    """Teachers, then for every method: hyper-parameters chosen on validation (first seed), then `seeds`
    runs; returns {'teachers', 'summary', 'rows', 'selection', 'args', 'pw'} (errors in %; 'pw': the p_w
    records of every final Knowledge Flow run, see :func:`pw_recorder`)."""
    torch.set_num_threads(args.threads)
    task = make_task(args.dataset, args.classes, args.drop_train_classes, data_dir=args.data_dir,
                     val_fraction=args.val_fraction, image_size=args.image_size, split_seed=args.split_seed)
    teachers, teacher_err = {}, {}
    for spec in args.teachers:
        teachers[spec["name"]], teacher_err[spec["name"]] = train_teacher(spec, args, task)
        log(f"teacher {spec['name']}: test error {teacher_err[spec['name']]:.2f}%")
    rows, selection, summary, pw = [], {}, {}, []
    for method in args.methods:
        logs = [[] for _ in grid(method, args)]
        tried = [run_method(method, p, 0, args, task, teachers, lg) for p, lg in zip(grid(method, args), logs)]
        i_best = min(range(len(tried)), key=lambda i: tried[i]["val_error"])   # ties: first in grid order
        best = tried[i_best]
        params = {k: best[k] for k in grid(method, args)[0]}
        selection[method] = [{k: r[k] for k in (*params, "val_error")} for r in tried]
        pw += logs[i_best]                                         # the selected run is the first seed's
        runs = [best] + [run_method(method, params, s, args, task, teachers, pw) for s in range(1, args.seeds)]
        rows += runs
        errs = [r["test_error"] for r in runs]
        summary[method] = {"test_error_mean": float(np.mean(errs)), "test_error_std": float(np.std(errs)),
                           "n_seeds": len(errs), "selected": params}
        log(f"{method}: test error {np.mean(errs):.2f} +- {np.std(errs):.2f}% over {len(errs)} seeds {params}")
    return {"args": asdict(args), "teachers": teacher_err, "summary": summary, "rows": rows,
            "selection": selection, "n_train": len(task.train.y), "n_val": len(task.val.y), "n_test": len(task.test.y),
            "pw": pw}


PW_COLUMNS = ["preset", "method", "seed", "epoch", "step", "layer", "candidate", "teacher", "source", "p_w"]


def write_results(result: dict, out_dir) -> None:
    """results.csv (one row per method and seed), pw.csv (p_w of every candidate per student layer and epoch,
    every final Knowledge Flow run, :data:`PW_COLUMNS`; a header only when no kf method ran), then
    results.json (the run's completion marker; without the p_w records)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols = ["method", "seed", "lambda1", "lambda2", "temperature", "alpha", "val_error", "test_error",
            "test_error_mixed", "independence"]
    with atomic_path(out / "results.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(result["rows"])
    preset = result.get("experiment", "")
    with atomic_path(out / "pw.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=PW_COLUMNS)
        w.writeheader()
        w.writerows({"preset": preset, **r} for r in result.get("pw", []))
    write_json(out / "results.json", {k: v for k, v in result.items() if k != "pw"})


# ---------------------------------------------------------------------------------------------------
# The experiment list: digits presets run offline; the others need the datasets in data_dir
# ---------------------------------------------------------------------------------------------------
_SMALL_CONV = {"convs": [[32, 3, 2], [64, 3, 2]], "hidden": [256]}   # stand-in for DenseNet / Chen (2017) nets
EXPERIMENTS = {
    # Table 4 analogue, offline: a bigger MLP teacher on the same task, KD vs Knowledge Flow
    "digits_kd": {"dataset": "digits", "student": {"hidden": [32, 32]},
                  "teachers": [{"name": "big", "net": {"hidden": [128, 128]}}],
                  "methods": ["baseline", "kd:big", "kf:big"]},
    "digits_kd_wo3": {"dataset": "digits", "drop_train_classes": [3], "student": {"hidden": [32, 32]},
                      "teachers": [{"name": "big", "net": {"hidden": [128, 128]}}],
                      "methods": ["baseline", "kd:big", "kf:big"]},
    # Table 5 analogue, offline: expert (same task), semi-expert (half the classes) teachers, fine-tuning
    "digits_transfer": {"dataset": "digits", "student": {"hidden": [64, 64]},
                        "teachers": [{"name": "expert", "net": {"hidden": [64, 64]}},
                                     {"name": "half", "classes": [0, 1, 2, 3, 4], "net": {"hidden": [64, 64]}}],
                        "methods": ["baseline", "finetune:half", "kf:expert", "kf:half"]},
    # Table 4, MNIST columns (Hinton et al. 2015 nets)
    "mnist_kd": {"dataset": "mnist", "student": {"hidden": [800, 800]},
                 "teachers": [{"name": "mlp1200", "net": {"hidden": [1200, 1200]}}],
                 "methods": ["baseline", "kd:mlp1200", "kf:mlp1200"]},
    "mnist_kd_wo3": {"dataset": "mnist", "drop_train_classes": [3], "student": {"hidden": [800, 800]},
                     "teachers": [{"name": "mlp1200", "net": {"hidden": [1200, 1200]}}],
                     "methods": ["baseline", "kd:mlp1200", "kf:mlp1200"]},
    # Table 5 (stand-in net)
    "emnist_letters": {"dataset": "emnist_letters", "student": _SMALL_CONV,
                       "teachers": [{"name": "letters", "net": _SMALL_CONV},
                                    {"name": "half_letters", "classes": list(range(13)), "net": _SMALL_CONV},
                                    {"name": "digits", "dataset": "emnist_digits", "net": _SMALL_CONV}],
                       "methods": ["baseline", "finetune:digits", "kf:letters", "kf:half_letters", "kf:digits"]},
    # Table 4, C100 column: Chen (2017)'s CIFAR-100 net as teacher, the student with half its channels (stand-in)
    "cifar100_kd": {"dataset": "cifar100", "student": _SMALL_CONV,
                    "teachers": [{"name": "wide", "net": {"convs": [[64, 3, 2], [128, 3, 2]], "hidden": [512]}}],
                    "methods": ["baseline", "kd:wide", "kf:wide"]},
    # Table 3 (stand-in net)
    "cifar10": {"dataset": "cifar10", "student": _SMALL_CONV,
                "teachers": [{"name": "c100", "dataset": "cifar100", "net": _SMALL_CONV},
                             {"name": "svhn", "dataset": "svhn", "net": _SMALL_CONV}],
                "methods": ["baseline", "finetune:c100", "finetune:svhn", "kf:c100+svhn"]},
    "cifar100": {"dataset": "cifar100", "student": _SMALL_CONV,
                 "teachers": [{"name": "c10", "dataset": "cifar10", "net": _SMALL_CONV},
                              {"name": "svhn", "dataset": "svhn", "net": _SMALL_CONV}],
                 "methods": ["baseline", "finetune:c10", "finetune:svhn", "kf:c10+svhn"]},
    # Table 6 (stand-in net; STL-10 resized to CIFAR's 32x32 so the CIFAR teachers see the student's input)
    "stl10": {"dataset": "stl10", "image_size": [32, 32], "student": _SMALL_CONV,
              "teachers": [{"name": "c10", "dataset": "cifar10", "net": _SMALL_CONV},
                           {"name": "c100", "dataset": "cifar100", "net": _SMALL_CONV}],
              "methods": ["baseline", "finetune:c10", "finetune:c100", "kf:c100", "kf:c10+c100"]},
}


def experiment_args(name: str, overrides: dict | None = None) -> SupArgs:
    """The preset `name` of :data:`EXPERIMENTS` with `overrides` (the --args mapping) on top."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment '{name}'; choose one of {', '.join(EXPERIMENTS)}")
    return SupArgs.from_dict({**EXPERIMENTS[name], **(overrides or {})})


# Which paper table and row each preset reproduces, and which paper column each of its methods fills. The
# digits rows are offline stand-ins: the paper has no number for them.
PAPER_ROWS = {
    "cifar10": ("Table 3", "C10", {"baseline": "Baseline Densenet", "finetune:c100": "Fine-tune from C100",
                                   "finetune:svhn": "Fine-tune from SVHN", "kf:c100+svhn": "Ours (C100, SVHN)"}),
    "cifar100": ("Table 3", "C100", {"baseline": "Baseline Densenet", "finetune:c10": "Fine-tune from C10",
                                     "finetune:svhn": "Fine-tune from SVHN", "kf:c10+svhn": "Ours (C10, SVHN)"}),
    "mnist_kd": ("Table 4", "MNIST", {"baseline": "Student alone", "kd:mlp1200": "KD Hinton et al. (2015)",
                                      "kf:mlp1200": "Ours"}),
    "mnist_kd_wo3": ("Table 4", "MNIST w/o digit '3'", {"baseline": "Student alone",
                                                        "kd:mlp1200": "KD Hinton et al. (2015)", "kf:mlp1200": "Ours"}),
    "cifar100_kd": ("Table 4", "C100", {"baseline": "Student alone", "kd:wide": "KD Hinton et al. (2015)",
                                        "kf:wide": "Ours"}),
    "digits_kd": ("Table 4", "digits (offline stand-in for MNIST)",
                  {"baseline": "Student alone", "kd:big": "KD Hinton et al. (2015)", "kf:big": "Ours"}),
    "digits_kd_wo3": ("Table 4", "digits w/o digit '3' (offline stand-in)",
                      {"baseline": "Student alone", "kd:big": "KD Hinton et al. (2015)", "kf:big": "Ours"}),
    "emnist_letters": ("Table 5", "EMNIST Letters", {"baseline": "Baseline",
                                                     "finetune:digits": "Fine-tune from EMNIST digits",
                                                     "kf:letters": "Ours (EMNIST letters)",
                                                     "kf:half_letters": "Ours (EMNIST half letters)",
                                                     "kf:digits": "Ours (EMNIST digit)"}),
    "digits_transfer": ("Table 5", "digits (offline stand-in for EMNIST Letters)",
                        {"baseline": "Baseline", "finetune:half": "Fine-tune from half digits",
                         "kf:expert": "Ours (digits: expert)", "kf:half": "Ours (half digits: semi-expert)"}),
    "stl10": ("Table 6", "STL-10", {"baseline": "Baseline", "finetune:c10": "Fine-tune from C10",
                                    "finetune:c100": "Fine-tune from C100", "kf:c100": "Ours (C100)",
                                    "kf:c10+c100": "Ours (C10,C100)"}),
}
# Reported rows no preset reproduces, and why
NOT_REPRODUCED = {
    ("Table 4", "Imagenet"): "no ImageNet preset (paper: ResNet-50 teacher, ResNet-18 student on ILSVRC-2012; this "
                             "program holds whole datasets in memory, which ImageNet does not fit)",
}


def experiment_datasets(args: SupArgs) -> list[str]:
    """The datasets an experiment reads: its target, then its teachers' source datasets (once each)."""
    return list(dict.fromkeys([args.dataset] + [t.get("dataset") or args.dataset for t in args.teachers]))


def missing_data(args: SupArgs) -> list[tuple[str, Path, str]]:
    """(dataset, expected path, fetch command) for every path the experiment reads that is absent under
    ``args.data_dir``; checks paths only (no torchvision import), as :func:`dataset` does before reading."""
    out = []
    for name in experiment_datasets(args):
        if name == "digits":
            continue
        for split in ("train", "test"):
            p = expected_path(name, args.data_dir, split)
            if not p.exists() and p not in [q for _, q, _ in out]:
                out.append((name, p, fetch_command(name, args.data_dir, split)))
    return out


def unavailable(args: SupArgs) -> str | None:
    """None when every dataset the experiment reads lies under data_dir; else the reason it is not run."""
    miss = missing_data(args)
    if not miss:
        return None
    classes = "/".join(dict.fromkeys(TORCHVISION[n][0] for n, _, _ in miss))
    return (f"dataset unavailable (expected {', '.join(str(p) for _, p, _ in miss)}; get it with "
            f"torchvision.datasets.{classes}(..., download=True) on a machine with internet access, exact "
            f"commands under the tables, and copy it to {args.data_dir})")


# ---------------------------------------------------------------------------------------------------
# The pipeline's plan (config kf_supervised; papers/knowledge_flow/supervised.smk): pure functions of the
# config, plus the data check, made when the Snakefile loads
# ---------------------------------------------------------------------------------------------------
TIER_TABLES = {"table3": "Table 3", "table4": "Table 4", "table5": "Table 5", "table6": "Table 6"}


def tier_experiments(config: dict) -> list[str]:
    """The tier's presets, in config order (experiments.table3, table4, table5, table6)."""
    exps = config.get("kf_supervised", {}).get("experiments", {})
    return [e for key in TIER_TABLES for e in exps.get(key, [])]


def tier_args(config: dict, experiment: str, threads: int = 1) -> dict:
    """The --args overrides of one experiment: the tier's args, the experiment's overrides, then data_dir,
    seeds and threads."""
    sup = config["kf_supervised"]
    return {**sup.get("args", {}), **sup.get("overrides", {}).get(experiment, {}),
            "data_dir": sup.get("data_dir", "data/"), "seeds": int(sup["seeds"]), "threads": int(threads)}


def tier_plan(config: dict) -> dict[str, dict]:
    """{experiment: {table, epochs, not_run, missing}} for the tier's presets. not_run is None when every dataset
    the experiment reads lies under data_dir (checked now, without torchvision), else why it is not run; missing
    lists [dataset, expected path, fetch command] of what is absent."""
    out = {}
    for e in tier_experiments(config):
        args = experiment_args(e, tier_args(config, e))
        out[e] = {"table": PAPER_ROWS[e][0], "epochs": args.epochs, "not_run": unavailable(args),
                  "missing": [[n, str(p), cmd] for n, p, cmd in missing_data(args)]}
    return out


def check_tier_config(config: dict) -> None:
    """Errors in the kf_supervised section, named before any job starts."""
    sup = config.get("kf_supervised")
    if sup is None:
        return
    seen = set()
    for key, table in TIER_TABLES.items():
        for e in sup.get("experiments", {}).get(key, []):
            if e not in EXPERIMENTS:
                raise ValueError(f"kf_supervised.experiments.{key}: unknown preset '{e}'; choose one of "
                                 f"{', '.join(EXPERIMENTS)} (papers/knowledge_flow/supervised.py)")
            if PAPER_ROWS[e][0] != table:
                right = next(k for k, t in TIER_TABLES.items() if t == PAPER_ROWS[e][0])
                raise ValueError(f"kf_supervised.experiments.{key}: preset '{e}' belongs to {PAPER_ROWS[e][0]}; "
                                 f"list it under experiments.{right}")
            if e in seen:
                raise ValueError(f"kf_supervised.experiments: preset '{e}' is listed twice")
            seen.add(e)
            experiment_args(e, tier_args(config, e))             # unknown or mistyped SupArgs keys are named here
    extra = sorted(set(sup.get("overrides", {})) - seen)
    if extra:
        raise ValueError(f"kf_supervised.overrides names {extra}, which kf_supervised.experiments does not list "
                         f"(listed: {sorted(seen)})")


def main(argv=None):
    import argparse

    from common.cli import parse_mapping

    ap = argparse.ArgumentParser(description="Supervised Knowledge Flow (Tables 3-6): teachers, baselines, KD, ours.")
    ap.add_argument("--experiment", required=True, help=f"one of {', '.join(EXPERIMENTS)}")
    ap.add_argument("--out", required=True, help="output directory (results.json, results.csv, pw.csv)")
    ap.add_argument("--args", default="{}", help="SupArgs overrides as YAML/JSON, e.g. '{epochs: 5, seeds: 1}'")
    a = ap.parse_args(argv)
    args = experiment_args(a.experiment, parse_mapping(a.args))
    result = run_experiment(args)
    write_results({"experiment": a.experiment, **result}, a.out)


if __name__ == "__main__":
    from common.cli import run as cli_run

    cli_run(main)
