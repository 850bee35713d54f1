"""The data of Knowledge Flow's supervised Tables 3-6: datasets, tasks, minibatches (supervised.py has the program).

scikit-learn's digits (8x8, 1,797 images, bundled) offline; the paper's datasets (MNIST, EMNIST, CIFAR-10/100,
SVHN, STL-10: :data:`DATASETS`, located by the one registry common.datasets) read by torchvision's dataset classes
from a local ``data_dir``, never downloaded (a missing one stops with the expected path and the command that
fetches it); ImageNet never held in
memory: a :class:`StreamedImages` split is read per minibatch by a DataLoader (:func:`minibatches`), with the
usual random-resized crops and flips in training. A :class:`Task` is the target (or a teacher's source) task:
classes kept or dropped, a validation split carved from the training set by a fixed permutation
(:func:`make_task`), the data on the run's device.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from common import classify
from common.datasets import (STREAMED, TORCHVISION, digits_images, digits_split, expected_path, fetch_command,
                             load_tensors, require)
from common.io import resolve_device


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
    slices in order (common.classify.minibatches: fit's and top1_error's batches before streaming existed, bit for
    bit). StreamedImages:
    read in a DataLoader; with a generator the order and every image's crop seed are drawn from it."""
    n = len(split.y)
    if not isinstance(split.x, StreamedImages):
        yield from classify.minibatches(split, batch_size, generator)
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


DATASETS = ("digits", "mnist", "emnist_letters", "emnist_digits", "cifar10", "cifar100", "svhn", "stl10", "imagenet")
"""the datasets of the supervised tables: scikit-learn's digits and those of common.datasets.TORCHVISION named here"""
DIGITS_SPLIT = "permutation"
"""the digits split of the recorded supervised tables (common.datasets.DIGITS_SPLITS: a fixed 70/30 split, seed 0)"""


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
        x, y = digits_images()
        idx = torch.as_tensor(digits_split(DIGITS_SPLIT, y.numpy(), seed=0)[0 if split == "train" else 1])
        return Split(x[idx], y[idx])
    if name not in DATASETS:
        raise ValueError(f"unknown dataset '{name}'; choose one of {', '.join(DATASETS)}")
    if name not in STREAMED:
        return Split(*load_tensors(name, data_dir, split))
    tvd, expected = require(name, data_dir, split), expected_path(name, data_dir, split)
    try:
        folder = tvd.ImageFolder(str(expected))
    except (FileNotFoundError, RuntimeError) as e:   # no class folders, or folders without images
        raise FileNotFoundError(f"dataset '{name}' ({split}) under {expected} could not be read as one folder of "
                                f"images per class ({e}). Unpack it with\n    "
                                f"{fetch_command(name, data_dir, split)}") from None
    return Split(StreamedImages(folder.samples, torch.arange(len(folder.samples)), augment=split == "train"),
                 torch.as_tensor(folder.targets, dtype=torch.long))


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
