"""The one dataset registry (common/datasets.py): paths and fetch commands by hand, the errors of missing data,
in-memory reading (a stand-in for torchvision), and the two digits splits, each paper reading its own."""

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from common import datasets


def test_paths_and_fetch_commands_by_hand():
    assert datasets.expected_path("mnist", "data/", "train") == Path("data/MNIST/raw")
    assert datasets.expected_path("svhn", "d", "test") == Path("d/test_32x32.mat")
    assert datasets.expected_path("imagenet", "d", "test") == Path("d/imagenet/val")
    assert datasets.fetch_command("emnist_letters", "data/", "train") == (
        "python -c \"import torchvision; torchvision.datasets.EMNIST('data', split='letters', train=True, "
        "download=True)\"")
    assert datasets.fetch_command("stl10", "d", "test") == (
        "python -c \"import torchvision; torchvision.datasets.STL10('d', split='test', download=True)\"")
    assert datasets.STREAMED == ("imagenet",)
    with pytest.raises(ValueError, match="unknown dataset 'mnits'"):
        datasets.expected_path("mnits", "d", "train")
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        datasets.expected_path("mnist", "d", "val")


def test_missing_data_and_missing_torchvision_are_named(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"(?s)'cifar10' \(test\) not found: expected .*cifar-10-batches-py"
                                                r".*CIFAR10\(.*train=False, download=True\)"):
        datasets.require("cifar10", tmp_path, "test")
    (tmp_path / "cifar-10-batches-py").mkdir()
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    with pytest.raises(RuntimeError, match="needs torchvision, which is not installed"):
        datasets.load_tensors("cifar10", tmp_path, "test")


def test_load_tensors_scales_pixels_adds_a_channel_and_offsets_labels(tmp_path, monkeypatch):
    """A stand-in for torchvision's EMNIST (letters 1..26, [N, H, W] uint8): pixels / 255, [N, 1, H, W], labels
    from 0; and a CIFAR-like [N, H, W, 3] array goes channels-first."""
    seen = {}

    class EMNIST:
        def __init__(self, root, download, transform, split, train):
            seen.update(root=root, download=download, split=split, train=train)
            self.data, self.targets = torch.tensor([[[0, 255], [51, 102]]], dtype=torch.uint8), torch.tensor([1])

    class CIFAR10:
        def __init__(self, root, download, transform, train):
            self.data, self.targets = np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3), [7]

    tvd = types.SimpleNamespace(EMNIST=EMNIST, CIFAR10=CIFAR10)
    monkeypatch.setitem(sys.modules, "torchvision", types.SimpleNamespace(datasets=tvd))
    monkeypatch.setitem(sys.modules, "torchvision.datasets", tvd)
    (tmp_path / "EMNIST" / "raw").mkdir(parents=True)
    (tmp_path / "cifar-10-batches-py").mkdir()
    x, y = datasets.load_tensors("emnist_letters", tmp_path, "train")
    assert seen == {"root": str(tmp_path), "download": False, "split": "letters", "train": True}
    assert x.shape == (1, 1, 2, 2) and x.flatten().tolist() == pytest.approx([0.0, 1.0, 0.2, 0.4]) and y.tolist() == [0]
    x, y = datasets.load_tensors("cifar10", tmp_path, "test")
    assert x.shape == (1, 3, 2, 2) and y.tolist() == [7]
    assert x[0, :, 0, 0].tolist() == pytest.approx([0, 1 / 255, 2 / 255])          # pixel (0, 0)'s 3 channels


def test_the_two_digits_splits():
    x, y = datasets.digits_images()
    assert x.shape == (1797, 1, 8, 8) and float(x.min()) == 0.0 and float(x.max()) == 1.0
    train, test = datasets.digits_split("permutation", y.numpy())        # Knowledge Flow: round(0.3 * 1797) = 539
    assert (len(train), len(test)) == (1258, 539)
    perm = np.random.default_rng(0).permutation(1797)
    assert test.tolist() == perm[:539].tolist() and train.tolist() == perm[539:].tolist()
    train, test = datasets.digits_split("stratified", y.numpy())         # GAS: 20% of each class in the test set
    assert (len(train), len(test)) == (1437, 360)
    assert sorted(train.tolist() + test.tolist()) == list(range(1797))
    per_class = np.bincount(y.numpy()[test], minlength=10)
    assert per_class.min() >= 35 and per_class.max() <= 37                # 174..183 images a class, 20% each
    with pytest.raises(ValueError, match="unknown digits split 'random'"):
        datasets.digits_split("random", y.numpy())


def test_gas_reads_the_stratified_digits_split():
    from papers.gan_simulator.method import digits_dataset

    x, y = datasets.digits_images()
    gas_train, gas_test = digits_dataset(seed=0)
    assert torch.equal(gas_test.tensors[1], y[datasets.digits_split("stratified", y.numpy())[1]])
    assert gas_train.tensors[0].shape[1:] == (1, 32, 32)


def test_knowledge_flow_reads_the_permutation_digits_split():
    from papers.knowledge_flow.supervised import dataset

    x, y = datasets.digits_images()
    kf_train, kf_test = datasets.digits_split("permutation", y.numpy())
    assert torch.equal(dataset("digits", split="test").y, y[kf_test])
    assert torch.equal(dataset("digits", split="train").x, x[kf_train])
