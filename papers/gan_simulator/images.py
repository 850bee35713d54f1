"""GAS image experiments: a preset of :data:`EXPERIMENTS` (presets.yaml, beside this file) with a run's
overrides is an :class:`ImageArgs`; :func:`run_image_experiment` trains (or loads the cached) teacher on the task,
then runs every listed method (dafl, dfad, ours, kd_real, kd_noise; method.py) over the seeds and records the
student's test accuracy (results files: harness.write_results).

Choices (documented in README.md, "Experiments"):

* Teachers are trained here with Adam (lr 1e-3, batch 64) and cross-entropy for ``teacher_epochs``; a teacher
  is cached under ``teacher_cache`` keyed by a hash of everything that determines it, and reused.
* ``digits_modes``: digit d belongs to class d mod 5, so every class has two modes (c and c + 5). Per-mode
  accuracy = share of the test images of digit d that the student puts in class d mod 5.
* CIFAR-10: DAFL's ResNet-34 -> ResNet-18 (the CIFAR ResNets of DAFL's code, written here: torchvision is not
  needed for the nets).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import yaml

from common.checks import arg
from common.classify import CrossEntropy, fit
from common.datasets import TORCHVISION, expected_path
from common.envs import dataclass_from_dict
from common.io import seed_everything, torch_save, verify_torch_file
from papers.gan_simulator.guard import RealDataGuard
from papers.gan_simulator.harness import method_args, progress_log, run_method, summarise, write_results
from papers.gan_simulator.method import (IMAGE_DATASETS, METHODS, accuracy, digits_dataset,
                                         load_torchvision_dataset)
from papers.gan_simulator.nets import NETS


@dataclass
class ImageArgs:
    """One image experiment (a preset of EXPERIMENTS with overrides); results are a pure function of these."""

    dataset: str = "digits"
    """digits (scikit-learn, offline) | mnist | fashion_mnist | cifar10 (torchvision, read from data_dir)"""
    data_dir: str = "data/"
    """where torchvision datasets lie (never downloaded)"""
    class_map: list | None = None
    """original label -> class (multiple input modes: e.g. digit mod 5); None: the labels as they are"""
    teacher_net: str = arg("lenet5", choices=tuple(NETS))
    """lenet5 | lenet5_half | resnet34 | resnet18"""
    student_net: str = arg("lenet5_half", choices=tuple(NETS))
    """lenet5 | lenet5_half | resnet34 | resnet18"""
    teacher_epochs: int = arg(30, ">= 0")
    """passes over the training set when training the teacher (Adam, cross-entropy)"""
    teacher_lr: float = arg(1e-3, "> 0")
    """Adam learning rate of the teacher"""
    teacher_batch_size: int = arg(64, ">= 1")
    """teacher minibatch size"""
    teacher_seed: int = 1000
    """seed of the teacher's initialisation and minibatches"""
    teacher_cache: str | None = None
    """folder of cached teachers (teacher_<hash>.pt); None: <out>/teacher_cache"""
    methods: list = field(default_factory=lambda: list(METHODS))
    """methods to run: dafl | dfad | ours | kd_real | kd_noise"""
    seeds: int = arg(3, ">= 1")
    """student runs per method (seeds 0..seeds-1)"""
    gas: dict = field(default_factory=dict)
    """GASArgs fields for every method (student_steps, batch_size, lr_generator, ...; checked by name)"""
    method_overrides: dict = field(default_factory=dict)
    """method -> GASArgs fields for that method only (an ablation), on top of gas"""
    eval_batch_size: int = arg(1000, ">= 1")
    """test-set minibatch size"""
    threads: int = arg(1, ">= 1")
    """torch CPU threads"""
    device: str = "cpu"
    """cpu | cuda | auto"""

    @classmethod
    def from_dict(cls, d: dict) -> "ImageArgs":
        a = dataclass_from_dict(cls, dict(d), where="gan_simulator image arguments")
        if a.dataset != "digits" and a.dataset not in IMAGE_DATASETS:
            raise ValueError(f"unknown dataset '{a.dataset}'; choose digits or {', '.join(IMAGE_DATASETS)}")
        bad = [m for m in list(a.methods) + list(a.method_overrides) if m not in METHODS]
        if bad:
            raise ValueError(f"unknown method(s) {bad}; choose from {', '.join(METHODS)}")
        for m in a.methods:                                    # GASArgs keys and values checked before any work
            method_args(m, 0, a.gas, a.method_overrides)
        return a


PRESETS_FILE = Path(__file__).with_name("presets.yaml")


def load_presets(path: str | Path = PRESETS_FILE) -> dict:
    """{preset: ImageArgs fields} of a presets file: its ``experiments`` mapping, in file order."""
    return yaml.safe_load(Path(path).read_text())["experiments"]


EXPERIMENTS = load_presets()   # the image presets (presets.yaml, beside this file)
IMAGE_EXPERIMENTS = tuple(EXPERIMENTS)


def experiment_args(name: str, overrides: dict | None = None) -> ImageArgs:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment '{name}'; choose one of {', '.join(EXPERIMENTS)} or policy")
    return ImageArgs.from_dict({**EXPERIMENTS[name], **(overrides or {})})


class RelabelledDataset(torch.utils.data.Dataset):
    """(x, class_map[y]) over a dataset of (x, y); keeps the original label for per-mode accuracy."""

    def __init__(self, dataset, class_map):
        self.dataset, self.class_map = dataset, class_map

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        x, y = self.dataset[i]
        return x, int(self.class_map[int(y)])


def original_labels(dataset) -> torch.Tensor:
    """The labels of a TensorDataset or torchvision dataset, as a tensor."""
    if isinstance(dataset, torch.utils.data.TensorDataset):
        return dataset.tensors[1].clone()
    return torch.as_tensor(np.asarray(dataset.targets))


def missing_dataset(name: str, data_dir: str) -> str | None:
    """None when dataset `name` can be read from data_dir (digits always can); else why not and how to get it.
    Checks the path and that torchvision is importable, without importing it."""
    if name == "digits":
        return None
    cls_name, expected = TORCHVISION[name].cls, expected_path(name, data_dir, "train")
    fetch = (f"python -c \"import torchvision; torchvision.datasets.{cls_name}('{data_dir}', train=True, "
             f"download=True); torchvision.datasets.{cls_name}('{data_dir}', train=False, download=True)\"")
    if not expected.exists():
        return (f"dataset unavailable (expected {expected}; get it on a machine with internet access with {fetch} "
                f"and copy it to {data_dir})")
    if importlib.util.find_spec("torchvision") is None:
        return f"torchvision is not installed (pip install torchvision; the data at {expected} is read with it)"
    return None


def load_image_task(args: ImageArgs):
    """(train, test, n_classes, channels, test original labels); labels mapped through class_map."""
    if args.dataset == "digits":
        train, test = digits_dataset(seed=0)
        channels = 1
    else:
        train = load_torchvision_dataset(args.dataset, args.data_dir, train=True)
        test = load_torchvision_dataset(args.dataset, args.data_dir, train=False)
        channels = TORCHVISION[args.dataset].channels
    orig_test = original_labels(test)
    n_orig = int(max(original_labels(train).max(), orig_test.max())) + 1
    if args.class_map is not None:
        if len(args.class_map) != n_orig:
            raise ValueError(f"class_map has {len(args.class_map)} entries, the dataset {n_orig} labels")
        train, test = RelabelledDataset(train, args.class_map), RelabelledDataset(test, args.class_map)
        n_classes = int(max(args.class_map)) + 1
    else:
        n_classes = n_orig
    return train, test, n_classes, channels, orig_test


@torch.no_grad()
def predictions(model: nn.Module, loader, device) -> torch.Tensor:
    was = model.training
    model.eval()
    out = torch.cat([model(x.to(device))[0].argmax(1).cpu() for x, _ in loader])
    model.train(was)
    return out


def per_mode_accuracy(pred: torch.Tensor, orig: torch.Tensor, class_map) -> dict[int, float]:
    """{original label d: % of the test inputs of d predicted as class_map[d]} (the accuracy on each mode)."""
    cm = torch.as_tensor(class_map)
    out = {}
    for d in sorted(set(orig.tolist())):
        sel = orig == d
        out[int(d)] = 100.0 * float((pred[sel] == cm[d]).float().mean())
    return out


def teacher_key(args: ImageArgs) -> str:
    spec = {k: getattr(args, k) for k in ("dataset", "class_map", "teacher_net", "teacher_epochs", "teacher_lr",
                                          "teacher_batch_size", "teacher_seed")}
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def train_classifier(net: nn.Module, train, epochs: int, lr: float, batch_size: int, seed: int, device) -> nn.Module:
    """Adam on cross-entropy for `epochs` passes over `train` in seeded minibatches: common.classify.fit in the
    ``dataloader`` order (the teachers were first trained by a shuffling DataLoader seeded with `seed`; the same
    draws keep their bits), after seeding every global generator with `seed`."""
    seed_everything(seed)
    net.to(device)
    return fit(net, train, CrossEntropy(), epochs, batch_size, lr, seed, order="dataloader", device=device,
               what="GAS teacher training", fix=f"lower teacher_lr (now {lr})")


def get_teacher(args: ImageArgs, train, test_loader, n_classes: int, channels: int, cache_dir: Path, device,
                log=print):
    """The cached teacher for these args, or a freshly trained one (then cached). Returns (net, info)."""
    path = Path(cache_dir) / f"teacher_{teacher_key(args)}.pt"
    net = NETS[args.teacher_net](in_channels=channels, n_classes=n_classes)
    state = None
    if path.exists():
        try:
            verify_torch_file(path)  # a truncated or damaged cache file is retrained, not loaded as wrong weights
            state = torch.load(path, map_location="cpu")["state_dict"]
        except Exception as e:  # noqa: BLE001 - any failure means the cache entry is unusable
            log(f"teacher cache {path} is unreadable ({e}): training the teacher again")
    if state is not None:
        net.load_state_dict(state)
        net.to(device).eval()
        cached = True
    else:
        t0 = time.perf_counter()
        seed_everything(args.teacher_seed)
        net = NETS[args.teacher_net](in_channels=channels, n_classes=n_classes)
        train_classifier(net, train, args.teacher_epochs, args.teacher_lr, args.teacher_batch_size,
                         args.teacher_seed, device)
        torch_save({"state_dict": net.cpu().state_dict(), "key": teacher_key(args)}, path)
        net.to(device)
        log(f"teacher trained in {time.perf_counter() - t0:.1f}s")
        cached = False
    acc = 100.0 * accuracy(net, test_loader, device)
    log(f"teacher {args.teacher_net}: test accuracy {acc:.2f}% ({'cached' if cached else 'trained'}: {path})")
    return net, {"net": args.teacher_net, "test_acc": acc, "cached": cached, "path": str(path)}


def run_image_experiment(name: str, args: ImageArgs, out_dir, log=print) -> dict:
    """Teacher, then every method over the seeds; returns the results dict (also written under out_dir)."""
    torch.set_num_threads(args.threads)
    from common.io import resolve_device

    device = resolve_device(args.device)
    train, test, n_classes, channels, orig_test = load_image_task(args)
    test_loader = torch.utils.data.DataLoader(test, batch_size=args.eval_batch_size)
    cache = Path(args.teacher_cache) if args.teacher_cache else Path(out_dir) / "teacher_cache"
    teacher, tinfo = get_teacher(args, train, test_loader, n_classes, channels, cache, device, log)
    if args.class_map is not None:
        tinfo["mode_acc"] = per_mode_accuracy(predictions(teacher, test_loader, device), orig_test, args.class_map)
    guard = RealDataGuard(train)            # the real training set: locked while a data-free method runs
    rows, curves = [], []
    for method in args.methods:
        for seed in range(args.seeds):
            gas = method_args(method, seed, args.gas, args.method_overrides, channels=channels, image_size=32,
                              device=args.device)
            seed_everything(gas.seed)
            student = NETS[args.student_net](in_channels=channels, n_classes=n_classes)
            t0 = time.perf_counter()
            res = run_method(method, teacher, student, gas, guard, gas.batch_size,
                             evaluate=lambda s: {"test_acc": 100.0 * accuracy(s, test_loader, device)},
                             log=progress_log(f"{name} {method} seed {seed}", gas.student_steps))
            acc = 100.0 * accuracy(res.student, test_loader, device)
            row = {"method": method, "seed": seed, "student_acc": acc, "teacher_acc": tinfo["test_acc"],
                   "student_steps": gas.student_steps, "generator_steps": res.generator_steps, "lives": res.lives,
                   "buffer_size": len(res.buffer) if res.buffer is not None else 0,
                   "sources": "+".join(sorted(res.sources_seen())), "wall_s": time.perf_counter() - t0}
            if args.class_map is not None:
                modes = per_mode_accuracy(predictions(res.student, test_loader, device), orig_test, args.class_map)
                row.update({f"mode_acc_{d}": v for d, v in modes.items()})
            rows.append(row)
            curves += [{"method": method, "seed": seed, "student_step": h["student_step"],
                        "generator_step": h["generator_step"], "test_acc": h.get("test_acc"),
                        "loss_student": h.get("loss_student"), "loss_generator": h.get("loss_generator")}
                       for h in res.history]
            log(f"{method} seed {seed}: student test accuracy {acc:.2f}% ({row['wall_s']:.1f}s, "
                f"{res.generator_steps} generator steps, {res.lives} generator(s), sources {row['sources']})")
    result = {"experiment": name, "kind": "image", "args": asdict(args), "teacher": tinfo,
              "n_classes": n_classes, "n_train": len(train), "n_test": len(test),
              "gas": {m: asdict(method_args(m, 0, args.gas, args.method_overrides, channels=channels, image_size=32,
                                            device=args.device)) for m in args.methods},
              "summary": summarise(rows, "student_acc"), "rows": rows}
    write_results(result, curves, out_dir)
    return result
