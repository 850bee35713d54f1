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

* Nets: the paper's (supervised_nets.py; a spec's ``arch`` picks one, no arch = :class:`ClassifierNet`):
  DenseNet-BC-100/24 for Table 3, Hinton's MNIST MLPs (teacher 1200-1200, student 800-800) and Chen (2017)'s
  CIFAR-100 net (student: every conv halved) for Table 4, ResNet-50 -> ResNet-18 (torchvision, untrained) for
  its ImageNet column, Chen's MNIST MLP for Table 5 and his STL-10 net for Table 6 (it needs 96x96 inputs, so
  the CIFAR teachers' images are upsampled to 96x96). :data:`EXPERIMENTS` holds them at the paper's sizes; the
  default tier shrinks them with ``arch_overrides`` (DenseNet-BC-40/12, Chen's CIFAR net at 32 channels, STL-10
  at 16). No data augmentation for the in-memory datasets (the paper: Huang et al.'s standard augmentation on
  CIFAR); ImageNet gets the usual random-resized crops and flips (:class:`StreamedImages`).
* Links: ``links: same`` joins each student layer to the teacher layer of the same name (fc1<-fc1, ...);
  Q is a linear map (fc) or a 1x1 conv (conv), as in RL. Which layers each net exposes (every layer of the
  MLPs and Chen's nets; DenseNet's three block boundaries; ResNet's four stage outputs): supervised_nets.py.
* Optimiser: Adam, lr 1e-3, no weight decay, no learning-rate decay, a fixed number of epochs for every method;
  batch 64 unless a preset sets the net's own (Chen 200, ImageNet 256). The nets' own recipes differ: Huang et
  al. and He et al. train with SGD (lr 0.1, momentum 0.9, weight decay 1e-4, lr / 10 at fixed epochs), Chen's
  CIFAR / STL-10 nets with Adam 1e-3 and lr / 10 at epochs 80 and 120, his MNIST MLP with SGD 0.01; only the
  schedule lengths are taken (config/paper.yaml).
* Data on ``device`` (cpu | cuda | auto): in-memory tensors move there once; ImageNet (1.28M JPEGs) is never
  held in memory: a :class:`StreamedImages` split is read per minibatch by a DataLoader (:func:`minibatches`).
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
from common.checks import arg, check_finite
from common.envs import dataclass_from_dict
from common.io import atomic_path, resolve_device, seed_everything, write_json
from papers.knowledge_flow.method import (KFArgs, KnowledgeFlowHook, KnowledgeFlowStudent, export_student,
                                          student_independence)
from papers.knowledge_flow.supervised_nets import (ARCHS, LayeredClassifier, apply_arch_overrides, build_net,
                                                   resolve_net_spec)


# ---------------------------------------------------------------------------------------------------
# Data: scikit-learn's digits offline; torchvision datasets from a local directory, never downloaded
# ---------------------------------------------------------------------------------------------------
class Split(NamedTuple):
    x: torch.Tensor   # [N, C, H, W] float32 in [0, 1] (or StreamedImages: read from files per minibatch)
    y: torch.Tensor   # [N] int64 class index


class Task(NamedTuple):
    name: str
    train: Split
    val: Split
    test: Split
    n_classes: int
    in_shape: tuple


def random_resized_crop_box(height: int, width: int, g: torch.Generator, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """(top, left, h, w) of a crop covering a uniform share `scale` of the image area at a log-uniform aspect
    ratio (Szegedy et al. 2015's ImageNet augmentation, as in torchvision's ResNet training recipe; He et al. 2016
    used scale jittering instead), drawn from `g`; after 10 misses the largest centred crop within `ratio`."""
    area, log_ratio = height * width, (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * float(torch.empty(()).uniform_(scale[0], scale[1], generator=g))
        aspect = math.exp(float(torch.empty(()).uniform_(log_ratio[0], log_ratio[1], generator=g)))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (), generator=g))
            return top, int(torch.randint(0, width - w + 1, (), generator=g)), h, w
    w, h = width, height
    if width / height < ratio[0]:
        h = int(round(width / ratio[0]))
    elif width / height > ratio[1]:
        w = int(round(height * ratio[1]))
    return (height - h) // 2, (width - w) // 2, h, w


class StreamedImages:
    """The images of a split too large to hold in memory (ImageNet), read from their files when a minibatch
    needs them; it stands where a Split's image tensor would (``Split(StreamedImages, labels)``).

    ``samples``: [(path, class)] of a torchvision ImageFolder; ``index``: the samples of this split; ``size``:
    the side of the square RGB images given back, pixels in [0, 1] as in the in-memory splits; ``augment``:
    training crops (:func:`random_resized_crop_box` resized to size, and a horizontal flip with probability
    1/2) or evaluation crops (shorter side resized to 8/7 size, i.e. 256 for 224, and the centre size x size);
    ``device``: where minibatches go. ``x[i]`` / ``x[a:b]`` give evaluation crops (as a tensor would, e.g. for
    KnowledgeFlowStudent's dry forward); training reads them through :func:`minibatches`: a DataLoader with
    ``workers`` processes, each image's crop and flip drawn from a seed that the minibatch order draws from the
    run's generator, so a run does not depend on how many workers read it."""

    def __init__(self, samples, index, size: int = 224, augment: bool = False, device="cpu",
                 workers: int | None = None):
        import os

        self.samples, self.index = samples, torch.as_tensor(index, dtype=torch.long)
        self.size, self.augment, self.device = int(size), bool(augment), torch.device(device)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.workers = min(8, cpus) if workers is None else int(workers)

    def subset(self, idx, augment: bool | None = None, size: int | None = None, device=None) -> "StreamedImages":
        """The images `idx` (positions in this split) with these crops / size / device (default: as now)."""
        return StreamedImages(self.samples, self.index[torch.as_tensor(idx, dtype=torch.long)],
                              self.size if size is None else size, self.augment if augment is None else augment,
                              self.device if device is None else device, self.workers)

    @property
    def shape(self) -> tuple:
        return (len(self.index), 3, self.size, self.size)

    def __len__(self) -> int:
        return len(self.index)

    def load(self, i: int, seed: int | None = None) -> torch.Tensor:
        """Image i of this split [3, size, size] in [0, 1]: a training crop drawn from `seed` if ``augment`` and a
        seed is given, else the evaluation crop."""
        import torchvision.transforms.functional as TF
        from PIL import Image

        with open(self.samples[int(self.index[i])][0], "rb") as f:
            img = Image.open(f).convert("RGB")
        if self.augment and seed is not None:
            g = torch.Generator().manual_seed(int(seed))
            top, left, h, w = random_resized_crop_box(img.height, img.width, g)
            img = TF.resized_crop(img, top, left, h, w, [self.size, self.size])
            if float(torch.rand((), generator=g)) < 0.5:
                img = TF.hflip(img)
        else:
            img = TF.center_crop(TF.resize(img, round(self.size * 8 / 7)), [self.size, self.size])
        return TF.pil_to_tensor(img).float().div_(255.0)

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, slice):
            return torch.stack([self.load(i) for i in range(len(self))[key]]).to(self.device)
        return self.load(int(key)).to(self.device)


class _StreamedPairs(torch.utils.data.Dataset):
    """(image, label) of a StreamedImages split for a DataLoader, keyed by (position, crop seed or None)."""

    def __init__(self, x: StreamedImages, y: torch.Tensor):
        self.x, self.y = x, y.cpu()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, key):
        return self.x.load(key[0], key[1]), self.y[key[0]]


def minibatches(split: Split, batch_size: int, generator: torch.Generator | None = None):
    """(x, y) minibatches of `split` in a random order drawn from `generator` (None: in order), on the device its
    data lies on. In-memory splits: ``torch.randperm(n, generator).split(batch_size)`` indexing the tensors, or
    slices in order (fit's and top1_error's batches before streaming existed, bit for bit). StreamedImages:
    read in a DataLoader; with a generator the order and every image's crop seed are drawn from it."""
    n = len(split.y)
    if not isinstance(split.x, StreamedImages):
        if generator is None:
            for i in range(0, n, batch_size):
                yield split.x[i:i + batch_size], split.y[i:i + batch_size]
        else:
            for idx in torch.randperm(n, generator=generator).split(batch_size):
                yield split.x[idx], split.y[idx]
        return
    if generator is None:
        keys = [(i, None) for i in range(n)]
    else:
        order = torch.randperm(n, generator=generator).tolist()
        seeds = torch.randint(0, 2 ** 62, (n,), generator=generator).tolist()
        keys = list(zip(order, seeds))
    dev = split.x.device
    loader = torch.utils.data.DataLoader(_StreamedPairs(split.x, split.y),
                                         batch_sampler=[keys[k:k + batch_size] for k in range(0, n, batch_size)],
                                         num_workers=split.x.workers, pin_memory=dev.type == "cuda",
                                         generator=torch.Generator().manual_seed(0))   # leaves the global RNG alone
    for x, y in loader:
        yield x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)


def data_device(task: Task) -> torch.device:
    """The device a task's data lies on (SupArgs.device); its nets are built there (:func:`make_net`)."""
    return task.train.x.device


# name -> (torchvision class, constructor kwargs, path under data_dir that exists once the data is there);
# ImageNet ({ilsvrc}: train | val) is read as an ImageFolder per split and streamed (StreamedImages)
TORCHVISION = {
    "mnist": ("MNIST", {}, "MNIST/raw"),
    "emnist_letters": ("EMNIST", {"split": "letters"}, "EMNIST/raw"),
    "emnist_digits": ("EMNIST", {"split": "digits"}, "EMNIST/raw"),
    "cifar10": ("CIFAR10", {}, "cifar-10-batches-py"),
    "cifar100": ("CIFAR100", {}, "cifar-100-python"),
    "svhn": ("SVHN", {}, "{split}_32x32.mat"),
    "stl10": ("STL10", {}, "stl10_binary"),
    "imagenet": ("ImageNet", {}, "imagenet/{ilsvrc}"),
}
DATASETS = ("digits", *TORCHVISION)
STREAMED = ("imagenet",)
"""datasets read from files per minibatch (StreamedImages), never held in memory; no download exists for them"""


def expected_path(name: str, data_dir: str | Path, split: str) -> Path:
    """Where dataset `name` ('train' or 'test' split) must lie under `data_dir` for :func:`dataset` to read it
    (ImageNet's test split is ILSVRC-2012's validation set, as usual: imagenet/val)."""
    return Path(data_dir) / TORCHVISION[name][2].format(split=split, ilsvrc="train" if split == "train" else "val")


def fetch_command(name: str, data_dir: str | Path, split: str) -> str:
    """The one-line command that downloads dataset `name` (`split`) into `data_dir`, for a machine with internet.
    ImageNet cannot be downloaded by a program: the command unpacks the ILSVRC-2012 archives, fetched by hand."""
    if name == "imagenet":
        root, ilsvrc = Path(data_dir) / "imagenet", "train" if split == "train" else "val"
        return (f"python -c \"import torchvision; torchvision.datasets.ImageNet('{root}', split='{ilsvrc}')\"  "
                f"# unpacks ILSVRC2012_img_{ilsvrc}.tar and ILSVRC2012_devkit_t12.tar.gz, which you download "
                f"from image-net.org (an account is needed) into {root} first")
    cls_name, kw, _ = TORCHVISION[name]
    split_kw = {"split": split} if cls_name in ("SVHN", "STL10") else {"train": split == "train"}
    return (f"python -c \"import torchvision; torchvision.datasets.{cls_name}('{Path(data_dir)}', "
            + "".join(f"{k}={v!r}, " for k, v in {**kw, **split_kw}.items()) + "download=True)\"")


def dataset(name: str, data_dir: str | Path = "data", split: str = "train") -> Split:
    """One split ('train' or 'test') of a dataset as float tensors [N, C, H, W] in [0, 1] and labels.

    ``digits`` comes with scikit-learn. The others are read with torchvision's dataset classes from
    `data_dir` with ``download=False``; missing data (or a missing torchvision) stops with a message
    naming the dataset, the expected path and how to get it. ImageNet (:data:`STREAMED`) is a torchvision
    ImageFolder per split (imagenet/train, imagenet/val: one folder of JPEGs per class, the layout
    torchvision.datasets.ImageNet unpacks to) whose images stay on disk: its x is a :class:`StreamedImages`
    (224x224 crops; training crops for the train split).
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
        raise RuntimeError(f"dataset '{name}' needs torchvision, which is not installed: pip install torchvision matching "
                           f"your torch (README, 'Set-up'; CPU build: --index-url https://download.pytorch.org/whl/cpu) (the data at {expected} is read with torchvision.datasets.{cls_name}).") from None
    if name in STREAMED:
        try:
            folder = tvd.ImageFolder(str(expected))
        except (FileNotFoundError, RuntimeError) as e:   # no class folders, or folders without images
            raise FileNotFoundError(f"dataset '{name}' ({split}) under {expected} could not be read as one folder of "
                                    f"images per class ({e}). Unpack it with\n    {get}") from None
        return Split(StreamedImages(folder.samples, torch.arange(len(folder.samples)), augment=split == "train"),
                     torch.as_tensor(folder.targets, dtype=torch.long))
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


def _take(s: Split, idx: torch.Tensor, augment: bool | None = None) -> Split:
    """The samples `idx` (indices or a boolean mask) of a split; a streamed split stays streamed (its crops:
    training ones if `augment`, None: as before)."""
    if isinstance(s.x, StreamedImages):
        idx = idx.nonzero().flatten() if idx.dtype == torch.bool else idx
        return Split(s.x.subset(idx, augment=augment), s.y[idx])
    return Split(s.x[idx], s.y[idx])


def _resize(s: Split, image_size) -> Split:
    """Images resized to `image_size` [H, W] (bilinear, antialiased; a streamed split crops to that size)."""
    if isinstance(s.x, StreamedImages):
        if image_size[0] != image_size[1]:
            raise ValueError(f"streamed images are square crops: image_size must be [S, S], got {list(image_size)}")
        return Split(s.x.subset(torch.arange(len(s.x)), size=int(image_size[0])), s.y)
    return Split(F.interpolate(s.x, size=tuple(image_size), mode="bilinear", align_corners=False, antialias=True), s.y)


def _to(s: Split, device: torch.device) -> Split:
    if isinstance(s.x, StreamedImages):
        return Split(s.x.subset(torch.arange(len(s.x)), device=device), s.y.to(device))
    return Split(s.x.to(device), s.y.to(device))


def make_task(name: str, classes=None, drop_train_classes=(), data_dir="data", val_fraction=0.1,
              image_size=None, split_seed: int = 0, device: str | torch.device = "cpu") -> Task:
    """A classification task: `classes` kept (relabelled 0..K-1 in the order given; None = all), a validation
    split carved from the training set by a fixed permutation, `drop_train_classes` removed from train and
    validation only (Table 4's 'w/o digit 3'), images optionally resized to `image_size` [H, W], the data on
    `device` (cpu | cuda | auto; :func:`make_net` builds the task's nets there). Images are resized after the
    splits are carved (the same pixels as before, less memory for CIFAR upsampled to STL-10's 96x96); the
    validation split of a streamed dataset takes evaluation crops."""
    train, test = dataset(name, data_dir, "train"), dataset(name, data_dir, "test")
    if classes is not None:
        classes = list(classes)
        lut = torch.full((int(max(train.y.max(), test.y.max())) + 1,), -1, dtype=torch.long)
        lut[torch.tensor(classes)] = torch.arange(len(classes))
        train, test = (Split(_take(s, lut[s.y] >= 0).x, lut[s.y][lut[s.y] >= 0]) for s in (train, test))
        n_classes = len(classes)
        drop = [classes.index(c) for c in drop_train_classes]
    else:
        n_classes = int(max(train.y.max(), test.y.max())) + 1
        drop = list(drop_train_classes)
    perm = torch.randperm(len(train.y), generator=torch.Generator().manual_seed(split_seed))
    n_val = int(round(val_fraction * len(perm)))
    val, train = _take(train, perm[:n_val], augment=False), _take(train, perm[n_val:])
    if drop:
        keep = lambda s: _take(s, ~torch.isin(s.y, torch.tensor(drop)))
        train, val = keep(train), keep(val)
    if image_size is not None:
        train, val, test = (_resize(s, image_size) for s in (train, val, test))
    dev = resolve_device(str(device))
    if dev.type != "cpu":
        train, val, test = (_to(s, dev) for s in (train, val, test))
    return Task(name, train, val, test, n_classes, tuple(train.x.shape[1:]))


# ---------------------------------------------------------------------------------------------------
# Nets: a classifier with the LayeredNet split, so KnowledgeFlowStudent can mix teacher layers into it
# ---------------------------------------------------------------------------------------------------
class ClassifierNet(LayeredClassifier):
    """conv layers (k x k, stride s, 'same'-style padding k//2) then fully connected layers, ReLU (then dropout
    with probability `dropout` in training, after Chen (2017)'s MNIST MLP; 0: none), and a linear output layer
    of class logits. Layers are named conv1.., fc1..; ``heads`` returns (logits, None) (no value head), so the
    net plugs into KnowledgeFlowStudent like an actor-critic LayeredNet (supervised_nets.LayeredClassifier)."""

    def __init__(self, in_shape, n_classes: int, hidden=(800, 800), convs=(), dropout: float = 0.0):
        super().__init__()
        self.obs_shape, self.n_actions = tuple(in_shape), int(n_classes)
        self.dropout = float(dropout)
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

    def preact(self, i: int, h: torch.Tensor) -> torch.Tensor:
        layer = self.layers[i]
        return layer(h.flatten(1) if isinstance(layer, nn.Linear) and h.dim() > 2 else h)

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(z)
        return F.dropout(h, self.dropout, self.training) if self.dropout else h


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
        for x, y in minibatches(train, batch_size, g):                 # in memory: randperm(n, g).split(batch_size)
            loss, _ = objective.loss(model, x, y, step / total, step)   # progress as in A2C
            check_finite(loss, {f"{type(objective).__name__} loss": loss}, "supervised training",
                         f"step {step} (epoch {epoch})", f"lower lr (now {lr}) or the lambdas (a supervised run keeps "
                         "no checkpoint: a rerun starts it from scratch)")
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
    wrong = sum(int((model(x).logits.argmax(-1) != y).sum()) for x, y in minibatches(split, batch_size))
    return 100.0 * wrong / max(len(split.y), 1)


# ---------------------------------------------------------------------------------------------------
# The program: teachers on their source tasks, then every method on the target, lambdas on validation
# ---------------------------------------------------------------------------------------------------
@dataclass
class SupArgs:
    """One supervised Knowledge Flow experiment; its results are a pure function of these."""

    dataset: str = "digits"
    """target dataset: digits (scikit-learn, offline) | mnist | emnist_letters | emnist_digits | cifar10 | cifar100 | svhn | stl10 | imagenet (streamed)"""
    data_dir: str = "data"
    """where torchvision datasets lie (never downloaded)"""
    classes: list | None = None
    """target classes kept, relabelled 0..K-1 in this order (None: all)"""
    drop_train_classes: list = field(default_factory=list)
    """classes removed from the student's training/validation sets only (Table 4: MNIST w/o digit 3)"""
    image_size: list | None = None
    """resize every dataset to [H, W] (e.g. CIFAR to STL-10's 96x96 for CIFAR teachers; ImageNet: the crop side)"""
    val_fraction: float = arg(0.1, "(0, 1)")
    """share of the training set held out for choosing lambdas (and KD's T, alpha)"""
    split_seed: int = 0
    """seed of the train/validation split (fixed across methods and seeds)"""
    student: dict = field(default_factory=lambda: {"hidden": [64, 64], "convs": []})
    """the student net: a ClassifierNet {hidden, convs [[out_channels, kernel, stride], ...], dropout} or {arch: ...}
    (supervised_nets.ARCHS: chen_mnist | chen_cifar | chen_stl10 | densenet_bc | resnet18 | resnet50, with settings)"""
    teachers: list = field(default_factory=list)
    """[{name, dataset (default: target), classes, drop_train_classes, net (as student), epochs}] trained here"""
    arch_overrides: dict = field(default_factory=dict)
    """{arch: {setting: value}} merged into the student's and every teacher's net of that arch (a tier's smaller
    nets, e.g. {densenet_bc: {depth: 40, growth: 12}}); the resolved nets are what student/teachers hold"""
    methods: list = field(default_factory=lambda: ["baseline"])
    """baseline | finetune:<teacher> | kd:<teacher> | kf:<teacher>[+<teacher>...]"""
    links: str | list = "same"
    """'same' (each student layer <- the teacher layer of the same name) or explicit KFArgs-style links"""
    epochs: int = arg(20, ">= 1")
    """passes over the training set, every method and teacher (unless a teacher sets its own)"""
    batch_size: int = arg(64, ">= 1")
    """minibatch size"""
    lr: float = arg(1e-3, "> 0")
    """Adam learning rate"""
    lambda1_grid: list = arg(factory=lambda: [0.05, 0.1, 0.5], each=">= 0")
    """final lambda1 (ramped from 0) candidates, chosen on validation"""
    lambda2_grid: list = arg(factory=lambda: [0.001, 0.01, 0.05], each=">= 0")
    """lambda2 candidates, chosen on validation"""
    theta_old: str = arg("previous", choices=("previous", "ema"))
    """previous: the previous step's parameters | ema (Sec. 7.6)"""
    ema_alpha: float = arg(0.9, "[0, 1)")
    """EMA factor when theta_old is ema"""
    kd_temperature_grid: list = arg(factory=lambda: [2.0, 4.0, 8.0], each="> 0")
    """Hinton KD temperatures, chosen on validation"""
    kd_alpha_grid: list = arg(factory=lambda: [0.5, 0.9], each="[0, 1]")
    """Hinton KD soft-target weights, chosen on validation"""
    seeds: int = arg(3, ">= 1")
    """runs per method (seeds 0..seeds-1), averaged (Sec. 4.2: three)"""
    teacher_seed: int = 1000
    """seed of every teacher's training"""
    threads: int = arg(1, ">= 1")
    """torch CPU threads"""
    device: str = "cpu"
    """torch device of the data and nets: cpu | cuda | auto (the paper's DenseNet / ResNet presets are GPU jobs)"""

    @classmethod
    def from_dict(cls, d: dict) -> "SupArgs":
        a = dataclass_from_dict(cls, d, where="supervised knowledge_flow arguments")
        if a.dataset not in DATASETS:
            raise ValueError(f"unknown dataset '{a.dataset}'; choose one of {', '.join(DATASETS)}")
        for arch, settings in a.arch_overrides.items():
            if arch not in ARCHS or arch is None or not isinstance(settings, dict):
                raise ValueError(f"arch_overrides: '{arch}' is not an arch (choose from "
                                 f"{', '.join(x for x in ARCHS if x)}), or its value is not a mapping of settings")
            resolve_net_spec({"arch": arch, **settings}, where=f"arch_overrides.{arch}")
        a.student = apply_arch_overrides(a.student, a.arch_overrides)
        resolve_net_spec(a.student, where="student")
        a.teachers = [{**t, "net": apply_arch_overrides(t["net"], a.arch_overrides)} if "net" in t else dict(t)
                      for t in a.teachers]
        for t in a.teachers:
            resolve_net_spec(t.get("net", TeacherSpec().net), where=f"teacher '{t.get('name')}' net")
        if not (a.device in ("cpu", "cuda", "auto") or a.device.startswith("cuda:")):
            raise ValueError(f"device must be cpu, cuda, cuda:<i> or auto, got '{a.device}'")
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
        return a


@dataclass
class TeacherSpec:
    """A teacher trained (with cross-entropy) on its source task by this program."""

    name: str = ""
    dataset: str | None = None
    classes: list | None = None
    drop_train_classes: list = field(default_factory=list)
    net: dict = field(default_factory=lambda: {"hidden": [64, 64]})
    epochs: int | None = arg(None, ">= 1")


def make_net(spec: dict, task: Task) -> LayeredClassifier:
    """The net of a spec (SupArgs.student, a teacher's net) for `task`, on the device the task's data lies on:
    a ClassifierNet without ``arch`` (the digits and MNIST presets) or for chen_mnist (Chen's MLP: fc 256-256,
    dropout 0.2), else the arch's net of supervised_nets."""
    r = resolve_net_spec(spec)
    if r.get("arch") in (None, "chen_mnist"):
        net = ClassifierNet(task.in_shape, task.n_classes, hidden=r["hidden"], convs=r.get("convs", ()),
                            dropout=r["dropout"])
    else:
        net = build_net(r, task.in_shape, task.n_classes)
    return net.to(data_device(task))


def train_teacher(spec: dict, args: SupArgs, target: Task) -> tuple[ClassifierNet, float]:
    """Train one teacher on its source task; returns it (frozen) and its test error there."""
    t = TeacherSpec(**spec)
    source = (t.dataset or args.dataset, t.classes, list(t.drop_train_classes))
    if source == (args.dataset, args.classes, list(args.drop_train_classes)):
        task = target                                          # the target task itself (an 'expert' teacher)
    else:
        task = make_task(*source, data_dir=args.data_dir, val_fraction=args.val_fraction,
                         image_size=args.image_size, split_seed=args.split_seed, device=args.device)
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


def curve_recorder(model: nn.Module, test: Split, method: str, seed: int, out: list, student: nn.Module | None = None):
    """An ``on_epoch`` callback for :func:`fit` that appends the top-1 test accuracy (%) of the model being
    trained to `out` at the start (epoch 0) and after every epoch: {method, seed, epoch, step, test_acc,
    test_acc_student}; for Knowledge Flow `model` is the mixed net and ``test_acc_student`` the accuracy of
    `student` alone (what :func:`export_student` would give at that epoch; empty for other methods). The
    paper's Figs. 4 and 5 plot this curve. Evaluation draws no random numbers and the model's training mode is
    restored, so recording leaves the run unchanged."""
    def record(epoch: int, step: int) -> None:
        was_training = model.training
        acc = 100.0 - top1_error(model, test)
        acc_student = "" if student is None else 100.0 - top1_error(student, test)
        model.train(was_training)
        out.append({"method": method, "seed": seed, "epoch": epoch, "step": step, "test_acc": acc,
                    "test_acc_student": acc_student})
    return record


def _both(*callbacks):
    """One ``on_epoch`` callback calling every given one (None ones skipped) in order; None if none is given."""
    cbs = [c for c in callbacks if c is not None]
    if not cbs:
        return None

    def call(epoch: int, step: int) -> None:
        for c in cbs:
            c(epoch, step)
    return call


def run_method(method: str, params: dict, seed: int, args: SupArgs, task: Task, teachers: dict,
               pw_log: list | None = None, curve_log: list | None = None) -> dict:
    """Train one student with `method` and `params` ({lambda1, lambda2} or {temperature, alpha}) from
    `seed`; returns its validation and test error (the exported student's, for kf). For kf, p_w of every
    candidate per student layer at the start and after every epoch is appended to `pw_log` if given
    (:func:`pw_recorder`); for every method the test accuracy at the start and after every epoch is appended
    to `curve_log` if given (:func:`curve_recorder`)."""
    kind, _, rest = method.partition(":")
    names = [n for n in rest.split("+") if n]
    seed_everything(seed)
    student = make_net(args.student, task)
    row = {"method": method, "seed": seed, **params}
    # the plain student's curve (baseline, fine-tune, KD); Knowledge Flow records its mixed net and student below
    curve = None if curve_log is None else curve_recorder(student, task.test, method, seed, curve_log)
    if kind in ("baseline", "finetune"):
        if kind == "finetune":
            finetune_classifier(student, teachers[names[0]])
        model = fit(student, task.train, CrossEntropy(), args.epochs, args.batch_size, args.lr, seed, on_epoch=curve)
    elif kind == "kd":
        teacher = teachers[names[0]]
        if teacher.n_classes != task.n_classes:
            raise ValueError(f"kd:{names[0]}: the teacher has {teacher.n_classes} classes, the target "
                             f"{task.n_classes}; KD needs the same output classes")
        model = fit(student, task.train, HintonKD(teacher, params["temperature"], params["alpha"]),
                    args.epochs, args.batch_size, args.lr, seed, on_epoch=curve)
    else:
        ts = [teachers[n] for n in names]
        links = same_name_links(student, ts) if args.links == "same" else list(args.links)
        # cache_rollouts off: no-grad forwards here are evaluations, which no update reuses
        kf = KnowledgeFlowStudent(student, ts, links, example_obs=task.train.x[:1], cache_rollouts=False)
        objective = KnowledgeFlowObjective(KFArgs(lambda1=params["lambda1"], lambda2=params["lambda2"],
                                                  theta_old=args.theta_old, ema_alpha=args.ema_alpha))
        record = _both(None if pw_log is None else pw_recorder(kf, method, seed, names, pw_log),
                       None if curve_log is None else curve_recorder(kf, task.test, method, seed, curve_log, student))
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
    runs; returns {'teachers', 'summary', 'rows', 'selection', 'args', 'pw', 'curves'} (errors in %; 'pw': the
    p_w records of every final Knowledge Flow run, see :func:`pw_recorder`; 'curves': the test accuracy per
    epoch of every final run, see :func:`curve_recorder`)."""
    torch.set_num_threads(args.threads)
    task = make_task(args.dataset, args.classes, args.drop_train_classes, data_dir=args.data_dir,
                     val_fraction=args.val_fraction, image_size=args.image_size, split_seed=args.split_seed,
                     device=args.device)
    teachers, teacher_err = {}, {}
    for spec in args.teachers:
        teachers[spec["name"]], teacher_err[spec["name"]] = train_teacher(spec, args, task)
        log(f"teacher {spec['name']}: test error {teacher_err[spec['name']]:.2f}%")
    rows, selection, summary, pw, curves = [], {}, {}, [], []
    for method in args.methods:
        logs = [[] for _ in grid(method, args)]
        clogs = [[] for _ in grid(method, args)]
        tried = [run_method(method, p, 0, args, task, teachers, lg, cl)
                 for p, lg, cl in zip(grid(method, args), logs, clogs)]
        i_best = min(range(len(tried)), key=lambda i: tried[i]["val_error"])   # ties: first in grid order
        best = tried[i_best]
        params = {k: best[k] for k in grid(method, args)[0]}
        selection[method] = [{k: r[k] for k in (*params, "val_error")} for r in tried]
        pw += logs[i_best]                                         # the selected run is the first seed's
        curves += clogs[i_best]
        runs = [best] + [run_method(method, params, s, args, task, teachers, pw, curves) for s in range(1, args.seeds)]
        rows += runs
        errs = [r["test_error"] for r in runs]
        summary[method] = {"test_error_mean": float(np.mean(errs)), "test_error_std": float(np.std(errs)),
                           "n_seeds": len(errs), "selected": params}
        log(f"{method}: test error {np.mean(errs):.2f} +- {np.std(errs):.2f}% over {len(errs)} seeds {params}")
    return {"args": asdict(args), "teachers": teacher_err, "summary": summary, "rows": rows,
            "selection": selection, "n_train": len(task.train.y), "n_val": len(task.val.y), "n_test": len(task.test.y),
            "pw": pw, "curves": curves}


CURVE_COLUMNS = ["preset", "method", "seed", "epoch", "step", "test_acc", "test_acc_student"]
PW_COLUMNS = ["preset", "method", "seed", "epoch", "step", "layer", "candidate", "teacher", "source", "p_w"]


def write_results(result: dict, out_dir) -> None:
    """results.csv (one row per method and seed), pw.csv (p_w of every candidate per student layer and epoch,
    every final Knowledge Flow run, :data:`PW_COLUMNS`; a header only when no kf method ran), curves.csv (test
    accuracy per epoch of every final run, :data:`CURVE_COLUMNS`), then results.json (the run's completion
    marker; without the p_w and curve records)."""
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
    with atomic_path(out / "curves.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CURVE_COLUMNS)
        w.writeheader()
        w.writerows({"preset": preset, **r} for r in result.get("curves", []))
    write_json(out / "results.json", {k: v for k, v in result.items() if k not in ("pw", "curves")})


# ---------------------------------------------------------------------------------------------------
# The experiment list: digits presets run offline; the others need the datasets in data_dir
# ---------------------------------------------------------------------------------------------------
# The paper's nets (supervised_nets.py) at the paper's sizes; a tier shrinks them with arch_overrides (the default
# tier: DenseNet-BC-40/12, Chen's CIFAR net at 32 channels, its STL-10 net at 16; config/default.yaml). Batch
# sizes are the nets' own protocols: Huang et al. 64, Chen (2017) 200, ResNets on ImageNet 256; epochs are the
# tier's (config/paper.yaml: 300 DenseNet, 150 Chen's CIFAR / STL-10, 40 Chen's MNIST, 90 ImageNet).
DENSENET = {"arch": "densenet_bc", "depth": 100, "growth": 24}            # Table 3 (Huang et al. 2017)
CHEN_MNIST = {"arch": "chen_mnist"}                                        # Table 5: fc 256-256, dropout 0.2
CHEN_CIFAR = {"arch": "chen_cifar", "channels": 128}                       # Table 4 C100: the teacher
CHEN_CIFAR_HALF = {"arch": "chen_cifar", "channels": 128, "width": 0.5}    # ... its student, every conv halved
CHEN_STL10 = {"arch": "chen_stl10", "channels": 32}                        # Table 6 (96x96 inputs)
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
    # Table 5: Chen (2017)'s MNIST MLP for student and teachers (28x28 EMNIST, as torchvision reads it)
    "emnist_letters": {"dataset": "emnist_letters", "batch_size": 200, "student": CHEN_MNIST,
                       "teachers": [{"name": "letters", "net": CHEN_MNIST},
                                    {"name": "half_letters", "classes": list(range(13)), "net": CHEN_MNIST},
                                    {"name": "digits", "dataset": "emnist_digits", "net": CHEN_MNIST}],
                       "methods": ["baseline", "finetune:digits", "kf:letters", "kf:half_letters", "kf:digits"]},
    # Table 4, C100 column: Chen (2017)'s CIFAR-100 net as teacher, the student with half its channels
    "cifar100_kd": {"dataset": "cifar100", "batch_size": 200, "student": CHEN_CIFAR_HALF,
                    "teachers": [{"name": "wide", "net": CHEN_CIFAR}],
                    "methods": ["baseline", "kd:wide", "kf:wide"]},
    # Table 4, ImageNet column: ResNet-50 teacher -> ResNet-18 student (torchvision's, untrained; ILSVRC-2012 read
    # from files per minibatch). One lambda / T, alpha point each: a grid point is a full ImageNet training.
    "imagenet_kd": {"dataset": "imagenet", "image_size": [224, 224], "batch_size": 256, "val_fraction": 0.02,
                    "student": {"arch": "resnet18"}, "teachers": [{"name": "resnet50", "net": {"arch": "resnet50"}}],
                    "methods": ["baseline", "kd:resnet50", "kf:resnet50"], "lambda1_grid": [0.1],
                    "lambda2_grid": [0.01], "kd_temperature_grid": [4.0], "kd_alpha_grid": [0.9]},
    # Table 3: DenseNet-BC-100/24 for student and teachers
    "cifar10": {"dataset": "cifar10", "student": DENSENET,
                "teachers": [{"name": "c100", "dataset": "cifar100", "net": DENSENET},
                             {"name": "svhn", "dataset": "svhn", "net": DENSENET}],
                "methods": ["baseline", "finetune:c100", "finetune:svhn", "kf:c100+svhn"]},
    "cifar100": {"dataset": "cifar100", "student": DENSENET,
                 "teachers": [{"name": "c10", "dataset": "cifar10", "net": DENSENET},
                              {"name": "svhn", "dataset": "svhn", "net": DENSENET}],
                 "methods": ["baseline", "finetune:c10", "finetune:svhn", "kf:c10+svhn"]},
    # Table 6: Chen (2017)'s STL-10 net, which needs 96x96 inputs: the CIFAR teachers' images are upsampled to 96x96
    # (the teachers see the student's input)
    "stl10": {"dataset": "stl10", "image_size": [96, 96], "batch_size": 200, "student": CHEN_STL10,
              "teachers": [{"name": "c10", "dataset": "cifar10", "net": CHEN_STL10},
                           {"name": "c100", "dataset": "cifar100", "net": CHEN_STL10}],
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
    "imagenet_kd": ("Table 4", "Imagenet", {"baseline": "Student alone", "kd:resnet50": "KD Hinton et al. (2015)",
                                            "kf:resnet50": "Ours"}),
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
# Reported rows no preset reproduces, and why (every row of Tables 3-6 has a preset now)
NOT_REPRODUCED: dict = {}


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
    classes = "/".join(dict.fromkeys(TORCHVISION[n][0] for n, _, _ in miss if n not in STREAMED))
    how = [f"torchvision.datasets.{classes}(..., download=True) on a machine with internet access"] if classes else []
    if any(n in STREAMED for n, _, _ in miss):     # ImageNet: no download=True exists
        how.append("the ILSVRC-2012 archives from image-net.org (an account is needed) unpacked by "
                   "torchvision.datasets.ImageNet(..., split='train'/'val')")
    return (f"dataset unavailable (expected {', '.join(str(p) for _, p, _ in miss)}; get it with "
            f"{' and '.join(how)}, exact commands under the tables, and copy it to {args.data_dir})")


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
    for key in ("overrides", "resources"):
        extra = sorted(set(sup.get(key, {})) - seen)
        if extra:
            raise ValueError(f"kf_supervised.{key} names {extra}, which kf_supervised.experiments does not list "
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
