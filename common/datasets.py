"""The one dataset registry of the image experiments (issue 16): what each dataset is, where it lies, how it is read.

* :data:`TORCHVISION`: every dataset read with torchvision's dataset classes from a local ``data_dir`` (class,
  constructor arguments, the path that exists once the data is there, channels, label offset, streamed or not).
  Nothing is ever downloaded: a missing dataset stops with the expected path (:func:`expected_path`) and the
  command that fetches it (:func:`fetch_command`). :func:`torchvision_dataset` gives torchvision's dataset object
  (a paper's own transform applied per item); :func:`load_tensors` the whole split in memory as float tensors in
  [0, 1]. Streamed datasets (ImageNet) are only located here; the paper that reads them per minibatch does so.
* scikit-learn's bundled digits (8x8, 1,797 images, offline): :func:`digits_images` and the train/test splits
  of :data:`DIGITS_SPLITS`. There are two, on purpose: each paper's recorded digits results were built on its own
  split (Knowledge Flow's supervised tables in ``results/default``; GAS's ``results/gas-2core``), and one split
  for both would change one of them. So each stays, under a name that says what it is:

  - ``permutation`` (Knowledge Flow, 70/30): the test set is the first 30% of a seeded numpy permutation, the
    training set the rest in that order;
  - ``stratified`` (GAS, 80/20): scikit-learn's ``train_test_split`` with 20% test, stratified by class.

Each paper says which registry names it accepts and which digits split it uses; preprocessing beyond [0, 1]
(GAS: upsampling to 32x32 and [-1, 1]) stays with the paper.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch


class TorchvisionData(NamedTuple):
    cls: str
    """torchvision.datasets class"""
    kwargs: dict
    """constructor arguments besides the split (train=... or split=...)"""
    path: str
    """path under data_dir that exists once the data is there ({split}: train | test; {ilsvrc}: train | val)"""
    channels: int
    label_offset: int = 0
    """added to torchvision's labels so that classes count from 0 (EMNIST letters: 1..26 -> 0..25)"""
    streamed: bool = False
    """too large for memory: read from its files per minibatch by the paper that uses it (no download exists)"""


TORCHVISION = {
    "mnist": TorchvisionData("MNIST", {}, "MNIST/raw", 1),
    "fashion_mnist": TorchvisionData("FashionMNIST", {}, "FashionMNIST/raw", 1),
    "emnist_letters": TorchvisionData("EMNIST", {"split": "letters"}, "EMNIST/raw", 1, label_offset=-1),
    "emnist_digits": TorchvisionData("EMNIST", {"split": "digits"}, "EMNIST/raw", 1),
    "cifar10": TorchvisionData("CIFAR10", {}, "cifar-10-batches-py", 3),
    "cifar100": TorchvisionData("CIFAR100", {}, "cifar-100-python", 3),
    "svhn": TorchvisionData("SVHN", {}, "{split}_32x32.mat", 3),
    "stl10": TorchvisionData("STL10", {}, "stl10_binary", 3),
    # ImageNet's test split is ILSVRC-2012's validation set, as usual: imagenet/val
    "imagenet": TorchvisionData("ImageNet", {}, "imagenet/{ilsvrc}", 3, streamed=True),
}
STREAMED = tuple(n for n, d in TORCHVISION.items() if d.streamed)

_SPLITS = ("train", "test")


def _check(name: str, split: str) -> TorchvisionData:
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got '{split}'")
    if name not in TORCHVISION:
        raise ValueError(f"unknown dataset '{name}'; choose one of digits, {', '.join(TORCHVISION)}")
    return TORCHVISION[name]


def split_kwargs(name: str, split: str) -> dict:
    """The constructor arguments of `split` ('train' | 'test'): ``split=`` for SVHN and STL-10, else ``train=``."""
    cls = _check(name, split).cls
    return {"split": split} if cls in ("SVHN", "STL10") else {"train": split == "train"}


def expected_path(name: str, data_dir: str | Path, split: str) -> Path:
    """Where dataset `name` ('train' or 'test' split) must lie under `data_dir` to be read."""
    return Path(data_dir) / _check(name, split).path.format(split=split, ilsvrc="train" if split == "train" else "val")


def fetch_command(name: str, data_dir: str | Path, split: str) -> str:
    """The one-line command that downloads dataset `name` (`split`) into `data_dir`, for a machine with internet.
    ImageNet cannot be downloaded by a program: the command unpacks the ILSVRC-2012 archives, fetched by hand."""
    d = _check(name, split)
    if d.streamed:
        root, ilsvrc = Path(data_dir) / "imagenet", "train" if split == "train" else "val"
        return (f"python -c \"import torchvision; torchvision.datasets.ImageNet('{root}', split='{ilsvrc}')\"  "
                f"# unpacks ILSVRC2012_img_{ilsvrc}.tar and ILSVRC2012_devkit_t12.tar.gz, which you download "
                f"from image-net.org (an account is needed) into {root} first")
    return (f"python -c \"import torchvision; torchvision.datasets.{d.cls}('{Path(data_dir)}', "
            + "".join(f"{k}={v!r}, " for k, v in {**d.kwargs, **split_kwargs(name, split)}.items())
            + "download=True)\"")


def require(name: str, data_dir: str | Path, split: str):
    """torchvision.datasets, once dataset `name` (`split`) lies under `data_dir`. Missing data stops with
    FileNotFoundError naming the dataset, the expected path and the command that fetches it; a missing
    torchvision with RuntimeError saying how to install it."""
    d, root = _check(name, split), Path(data_dir)
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
                           f"matching your torch (README, 'Set-up'; CPU build: --index-url "
                           f"https://download.pytorch.org/whl/cpu) (the data at {expected} is read with "
                           f"torchvision.datasets.{d.cls}).") from None
    return tvd


def torchvision_dataset(name: str, data_dir: str | Path, split: str, transform=None):
    """torchvision's dataset object of `split` ('train' | 'test') read from `data_dir` (``download=False``),
    items passed through `transform`; errors as :func:`require`, and FileNotFoundError with the fetch command
    when torchvision cannot read what lies there."""
    d = _check(name, split)
    if d.streamed:
        raise ValueError(f"dataset '{name}' is streamed: read its folder per minibatch (expected_path), not as "
                         f"one torchvision dataset")
    tvd = require(name, data_dir, split)
    try:
        return getattr(tvd, d.cls)(str(Path(data_dir)), download=False, transform=transform, **d.kwargs,
                                   **split_kwargs(name, split))
    except RuntimeError as e:   # torchvision: "Dataset not found or corrupted"
        raise FileNotFoundError(f"dataset '{name}' ({split}) under {Path(data_dir)} could not be read by "
                                f"torchvision ({e}). Fetch it again with\n    "
                                f"{fetch_command(name, data_dir, split)}") from None


def load_tensors(name: str, data_dir: str | Path = "data", split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """One split of a torchvision dataset in memory: images float32 [N, C, H, W] in [0, 1] (pixels / 255) and
    labels int64 counted from 0 (the registry's label offset applied)."""
    ds = torchvision_dataset(name, data_dir, split)
    data = ds.data if isinstance(ds.data, torch.Tensor) else torch.from_numpy(np.asarray(ds.data))
    labels = getattr(ds, "targets", None)
    labels = getattr(ds, "labels", None) if labels is None else labels
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if data.dim() == 3:                                  # MNIST / EMNIST [N, H, W]
        data = data.unsqueeze(1)
    elif data.shape[-1] == 3:                            # CIFAR [N, H, W, 3]
        data = data.permute(0, 3, 1, 2)
    offset = TORCHVISION[name].label_offset
    return data.float() / 255.0, (y + offset if offset else y)


# ---------------------------------------------------------------------------------------------------------
# scikit-learn's digits: the images and the two recorded train/test splits (the module docstring says why two)
# ---------------------------------------------------------------------------------------------------------
DIGITS_SPLITS = {
    "permutation": 0.3,   # Knowledge Flow: test = the first 30% of np.random.default_rng(seed).permutation
    "stratified": 0.2,    # GAS: sklearn's train_test_split(test_size=0.2, random_state=seed, stratify=labels)
}
"""split scheme -> the test fraction each paper's recorded digits results use"""


def digits_images() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 of scikit-learn's digits: images float32 [N, 1, 8, 8] in [0, 1] (pixels 0..16 / 16), labels
    int64, in scikit-learn's order."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0,
            torch.tensor(d.target, dtype=torch.long))


def digits_split(scheme: str, labels, seed: int = 0, test_fraction: float | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices) into the digits of :func:`digits_images`, fixed by `seed`:

    * ``permutation``: ``perm = np.random.default_rng(seed).permutation(N)``; test = its first
      round(test_fraction * N) entries, train = the rest, both in the permutation's order;
    * ``stratified``: ``sklearn.model_selection.train_test_split`` of 0..N-1 with ``test_size=test_fraction``,
      ``random_state=seed``, stratified by `labels` (every class in proportion on both sides).

    `test_fraction` None: the scheme's recorded fraction (:data:`DIGITS_SPLITS`)."""
    if scheme not in DIGITS_SPLITS:
        raise ValueError(f"unknown digits split '{scheme}'; choose one of {', '.join(DIGITS_SPLITS)}")
    labels = np.asarray(labels)
    frac = DIGITS_SPLITS[scheme] if test_fraction is None else test_fraction
    if scheme == "permutation":
        perm = np.random.default_rng(seed).permutation(len(labels))
        n_test = int(round(frac * len(perm)))
        return perm[n_test:], perm[:n_test]
    from sklearn.model_selection import train_test_split

    return tuple(train_test_split(np.arange(len(labels)), test_size=frac, random_state=seed, stratify=labels))
