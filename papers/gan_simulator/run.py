"""Generative Adversarial Simulator experiments: image classification, multiple input modes, policy distillation.

Image experiments (a preset of :data:`EXPERIMENTS`): train (or load the cached) teacher on the task, then run
every listed method (dafl, dfad, ours, kd_real, kd_noise; papers/gan_simulator/method.py) over the seeds and
record the student's test accuracy::

    python -m papers.gan_simulator.run --experiment digits --out runs/gas/digits \\
        --args '{"seeds": 3, "gas": {"student_steps": 2000}}'

Policy distillation, simulator-free (experiment ``policy``): a zoo teacher (common.zoo.load_teacher) labels
generated observations (the teacher's stacked-frame shape); a student policy (a common.nets net) is distilled
from generated observations only, then plays the game (common.evaluation) next to the teacher, a uniformly random
policy and distillation on real teacher rollouts (kd_real: the simulator-based upper bound)::

    python -m papers.gan_simulator.run --experiment policy --out runs/gas/policy/MinAtar-Breakout \\
        --args '{"game": "MinAtar/Breakout", "teacher": "teachers/smoke/ppo/MinAtar-Breakout/expert/seed0"}'

Both write ``results.csv`` (one row per method and seed), ``curves.csv`` (the student's test accuracy or
loss every ``log_every`` student steps) and ``results.json`` (resolved args, teacher, per-method summary, rows;
written last: the run's completion marker), all atomically. Errors a user can cause (unknown key, missing
dataset or teacher) end with one line naming the cause and the fix.

Data provenance: the real training set (image experiments) and the real teacher rollouts (policy) are wrapped
in a :class:`RealDataGuard`, locked while any data-free method runs: touching it raises
:class:`RealDataLeak`. After each data-free run the batch provenance recorded by ``distill`` is checked too
(no batch may hold a real input). Only ``kd_real`` sees real data, by construction.

Choices (documented in README.md, "Experiments"):

* Teachers are trained here with Adam (lr 1e-3, batch 64) and cross-entropy for ``teacher_epochs``; a teacher
  is cached under ``teacher_cache`` keyed by a hash of everything that determines it, and reused.
* ``digits_modes``: digit d belongs to class d mod 5, so every class has two modes (c and c + 5). Per-mode
  accuracy = share of the test images of digit d that the student puts in class d mod 5.
* CIFAR-10: DAFL's ResNet-34 -> ResNet-18 (the CIFAR ResNets of DAFL's code, written here: torchvision is not
  needed for the nets).
* Policies: the generator works at the next multiple of 4 of the frame side (MinAtar 10 -> 12, centre-cropped
  to 10; Atari 84) and its output g is mapped to the env's frame scale by ``high * sigmoid(g)`` (high = 255 for
  Atari frames, 1 for MinAtar's 0/1 planes), the same map for generated, buffer and noise inputs. The teacher's
  logits are SB3's normalised log-probabilities (DQN teachers: Q-values); its features for the activation prior
  are the body's output (the input of the policy head).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
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
from common.io import seed_everything, torch_save, verify_torch_file, write_csv, write_json
from common.nets import check_net_for_game
from papers.gan_simulator.guard import RealDataGuard, RealDataLeak
from papers.gan_simulator.method import (DATA_FREE_METHODS, GENERATOR_METHODS, IMAGE_DATASETS, METHODS, GASArgs,
                                         accuracy, digits_dataset, distill, load_torchvision_dataset)
from papers.gan_simulator.nets import NETS


# ---------------------------------------------------------------------------------------------------------
# One method under the data guard (guard.py: real data is locked while a data-free method runs)
# ---------------------------------------------------------------------------------------------------------
def run_method(method: str, teacher: nn.Module, student: nn.Module, gas: GASArgs, guard: RealDataGuard,
               real_batch_size: int, **kw):
    """``distill`` one method with the data guard: data-free methods run with the real data locked, and their
    recorded provenance is checked (no real input in any student batch); kd_real gets a seeded loader."""
    if method in DATA_FREE_METHODS:
        with guard.lock(method):
            res = distill(teacher, student, gas, data_free=True, noise_only=method == "kd_noise", **kw)
        leaked = sum(r["real"] for r in res.provenance)
        if leaked or "real" in res.sources_seen():
            raise RealDataLeak(f"data-free method '{method}' fed {leaked} real inputs to the student")
        return res
    loader = torch.utils.data.DataLoader(guard, batch_size=real_batch_size, shuffle=True, drop_last=False,
                                         generator=torch.Generator().manual_seed(gas.seed))
    return distill(teacher, student, gas, data_free=False, real_loader=loader, **kw)


def progress_log(label: str, total_steps: int, out=None):
    """A ``distill`` log callback that prints one progress line per record (every ``log_every`` student steps):
    step, share done, elapsed, ETA and the record's accuracy / losses, to stderr."""
    import sys

    t0 = time.perf_counter()
    out = out or sys.stderr

    def log(rec: dict) -> None:
        step, dt = int(rec.get("student_step", 0)), time.perf_counter() - t0
        eta = dt / step * (total_steps - step) if step else float("nan")
        extra = " | ".join(f"{k} {rec[k]:.3g}" for k in ("test_acc", "loss_student", "loss_generator")
                           if isinstance(rec.get(k), (int, float)))
        print(f"[{label}] student step {step:,}/{total_steps:,} ({100 * step / max(total_steps, 1):.0f}%) | "
              f"{dt:.0f} s | ETA {eta:.0f} s" + (f" | {extra}" if extra else ""), file=out, flush=True)

    return log


def method_args(method: str, seed: int, gas: dict, overrides: dict, **fixed) -> GASArgs:
    """GASArgs of one method and seed: the shared ``gas`` fields, the method's overrides, then `fixed`."""
    d = {**gas, **overrides.get(method, {}), **fixed, "method": method, "seed": int(seed)}
    if method not in GENERATOR_METHODS:  # the no-generator bounds reject generator fields set for everyone
        d = {k: v for k, v in d.items() if k not in ("w_one_hot", "w_info_entropy", "w_activation", "w_adv",
                                                     "reinit_every", "buffer_mix", "g_steps")
             or k in overrides.get(method, {})}
    return GASArgs.from_dict(d)


# ---------------------------------------------------------------------------------------------------------
# Image experiments
# ---------------------------------------------------------------------------------------------------------
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


def summarise(rows: list[dict], key: str) -> dict:
    """{method: {mean, std, median, min, max, n_seeds}} of rows[key] over seeds (std: population, ddof 0)."""
    out = {}
    for m in dict.fromkeys(r["method"] for r in rows):
        v = np.array([r[key] for r in rows if r["method"] == m], dtype=float)
        out[m] = {f"{key}_mean": float(v.mean()), f"{key}_std": float(v.std()), f"{key}_median": float(np.median(v)),
                  f"{key}_min": float(v.min()), f"{key}_max": float(v.max()), "n_seeds": int(len(v))}
    return out


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


def write_results(result: dict, curves: list[dict], out_dir) -> None:
    """results.csv and curves.csv, then results.json (the completion marker), each atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, recs in (("results.csv", result["rows"]), ("curves.csv", curves)):
        write_csv(out / name, recs, list(dict.fromkeys(k for r in recs for k in r)) or ["method", "seed"])
    write_json(out / "results.json", result)


# ---------------------------------------------------------------------------------------------------------
# Simulator-free policy distillation
# ---------------------------------------------------------------------------------------------------------
@dataclass
class PolicyArgs:
    """Policy distillation from a zoo teacher; results are a pure function of these (and the teacher)."""

    game: str = "MinAtar/Breakout"
    """the teacher's game (Atari name or MinAtar/<Game>)"""
    teacher: str = ""
    """the zoo teacher's directory (common.zoo layout: model.zip, config.json)"""
    student_net: str = arg("auto", choices=("auto", "a3c", "nature", "minatar"))
    """common.nets net of the student: auto (minatar for MinAtar games, a3c for Atari) | a3c | nature | minatar"""
    methods: list = field(default_factory=lambda: ["dafl", "dfad", "ours", "kd_noise", "kd_real"])
    """distillation methods; kd_real = distillation on real teacher rollouts (the simulator-based upper bound)"""
    seeds: int = arg(1, ">= 1")
    """student runs per method"""
    gas: dict = field(default_factory=dict)
    """GASArgs fields for every method (image_size and channels are set from the teacher)"""
    method_overrides: dict = field(default_factory=dict)
    """method -> GASArgs fields for that method only"""
    rollout_steps: int = arg(5000, ">= 10")
    """observations collected from the teacher playing the game: 80% train kd_real, 20% measure agreement"""
    rollout_envs: int = arg(8, ">= 1")
    """games played in parallel for the rollouts"""
    eval: dict = field(default_factory=dict)
    """common.evaluation.EvalProtocol fields (frame_stack and size are taken from the teacher)"""
    threads: int = arg(1, ">= 1")
    """torch CPU threads"""
    device: str = "cpu"
    """cpu | cuda | auto"""

    @classmethod
    def from_dict(cls, d: dict) -> "PolicyArgs":
        from common.evaluation import EvalProtocol

        a = dataclass_from_dict(cls, dict(d), where="gan_simulator policy arguments")
        if not a.teacher:
            raise ValueError("policy distillation needs 'teacher': a zoo teacher directory, e.g. "
                             "teachers/smoke/ppo/MinAtar-Breakout/expert/seed0")
        bad = [m for m in list(a.methods) + list(a.method_overrides) if m not in METHODS]
        if bad:
            raise ValueError(f"unknown method(s) {bad}; choose from {', '.join(METHODS)}")
        if a.student_net != "auto":
            check_net_for_game(a.student_net, a.game, where="gan_simulator policy arguments", field="student_net")
        EvalProtocol.from_dict(a.eval)
        for m in a.methods:
            method_args(m, 0, a.gas, a.method_overrides)
        return a


def frame_map(obs_shape, high: float):
    """(generator side, channels, input_map): the generator works at the next multiple of 4 of the frame side;
    input_map centre-crops to the frame and maps g to the frame scale with high * sigmoid(g)."""
    c, h, w = obs_shape
    side = int(math.ceil(max(h, w) / 4) * 4)
    top, left = (side - h) // 2, (side - w) // 2

    def input_map(g: torch.Tensor) -> torch.Tensor:
        return high * torch.sigmoid(g[..., top:top + h, left:left + w])

    return side, c, input_map


class TeacherForDistill(nn.Module):
    """A zoo Teacher as distill() sees it: x (frame scale) -> (logits, features of the body)."""

    def __init__(self, teacher):
        super().__init__()
        self.teacher = teacher

    def forward(self, x):
        t = self.teacher
        feat = t.body(t._input(x))
        if t.is_dqn:
            return t.policy.q_net.q_net(feat), feat
        z = t.policy.action_net(t.policy.mlp_extractor.forward_actor(feat))
        return z - z.logsumexp(-1, keepdim=True), feat


class StudentLogits(nn.Module):
    """A common.nets student as distill() sees it: x -> logits (a copy of x: the nets scale their input in place)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x.clone()).logits


class Agent(nn.Module):
    """A policy for common.evaluation: obs -> NetOut(logits) from `fn` (teacher, random)."""

    def __init__(self, fn, n_actions: int):
        super().__init__()
        self.fn, self.n_actions = fn, n_actions

    def forward(self, obs, state=None, starts=None):
        from common.nets import NetOut

        return NetOut(self.fn(obs), None)

    def initial_state(self, n, device=None):
        return None


@torch.no_grad()
def teacher_rollouts(teacher, game: str, protocol: dict, steps: int, n_envs: int, seed: int) -> torch.Tensor:
    """`steps` observations (uint8, the teacher's frames) of the teacher playing (actions sampled from its
    policy; DQN: greedy) on its own training protocol."""
    from common.envs import make_vec_env

    env = make_vec_env(game, n_envs, protocol)
    gen = torch.Generator().manual_seed(seed)
    obs = env.reset(seed)
    out = []
    try:
        while sum(len(o) for o in out) < steps:
            out.append(torch.from_numpy(obs.copy()))
            logits = teacher.logits(obs)
            a = logits.argmax(-1) if teacher.is_dqn else torch.multinomial(logits.exp(), 1, generator=gen).squeeze(-1)
            obs = env.step(a.cpu().numpy()).obs
    finally:
        env.close()
    return torch.cat(out)[:steps]


@torch.no_grad()
def agreement(teacher_fn, student: nn.Module, obs: torch.Tensor, batch: int = 256) -> float:
    """% of real states on which the student's most likely action is the teacher's."""
    same = 0
    for i in range(0, len(obs), batch):
        x = obs[i:i + batch]
        same += int((teacher_fn(x).argmax(-1).cpu() == student(x).logits.argmax(-1).cpu()).sum())
    return 100.0 * same / max(1, len(obs))


def run_policy_experiment(args: PolicyArgs, out_dir, log=print) -> dict:
    """Teacher and random scores, then every method over the seeds: the student's game score and its action
    agreement with the teacher on held-out real states."""
    from common.evaluation import EvalProtocol, evaluate
    from common.nets import make_net
    from common.zoo import EVAL_SEED_OFFSET, is_minatar, load_teacher

    torch.set_num_threads(args.threads)
    teacher = load_teacher(args.teacher, device="cpu")
    if teacher.meta.get("game") and teacher.meta["game"] != args.game:
        raise ValueError(f"teacher {args.teacher} plays {teacher.meta['game']}, not {args.game}")
    high = float(teacher.sb3_model.observation_space.high.max())
    side, channels, input_map = frame_map(teacher.obs_shape, high)
    protocol = dict(teacher.meta.get("protocol") or {})
    ev = {**args.eval}
    for k in ("frame_stack", "size"):
        if k in protocol:
            ev[k] = protocol[k]
    proto = EvalProtocol.from_dict(ev)
    net_name = args.student_net if args.student_net != "auto" else ("minatar" if is_minatar(args.game) else "a3c")
    tfn = lambda obs: teacher.logits(obs)  # noqa: E731

    teacher_eval = evaluate(Agent(tfn, teacher.n_actions), args.game, proto, EVAL_SEED_OFFSET)
    rand_eval = evaluate(Agent(lambda obs: torch.zeros(len(obs), teacher.n_actions), teacher.n_actions), args.game,
                         EvalProtocol.from_dict({**ev, "policy": "sample"}), EVAL_SEED_OFFSET)
    log(f"teacher: {teacher_eval['mean']:.2f} over {teacher_eval['episodes']} games; random: {rand_eval['mean']:.2f}")
    real = teacher_rollouts(teacher, args.game, protocol, args.rollout_steps, args.rollout_envs, seed=0)
    n_train = int(round(0.8 * len(real)))
    real_train, real_held = real[:n_train], real[n_train:]
    guard = RealDataGuard(torch.utils.data.TensorDataset(real_train))   # locked while a data-free method runs

    rows, curves = [], []
    for r, kind in ((teacher_eval, "teacher"), (rand_eval, "random")):
        rows.append({"method": kind, "seed": 0, "score": r["mean"], "score_std": r["std"], "episodes": r["episodes"],
                     "agreement": 100.0 if kind == "teacher" else np.nan})
    dist_teacher = TeacherForDistill(teacher)
    for method in args.methods:
        for seed in range(args.seeds):
            gas = method_args(method, seed, args.gas, args.method_overrides, channels=channels, image_size=side,
                              device=args.device)
            seed_everything(gas.seed)
            net = make_net(net_name, teacher.obs_shape, teacher.n_actions)
            t0 = time.perf_counter()
            res = run_method(method, dist_teacher, StudentLogits(net), gas, guard, gas.batch_size,
                             input_map=input_map,
                             log=progress_log(f"{args.game} {method} seed {seed}", gas.student_steps))
            net.cpu().eval()   # distill trained it on args.device; the evaluation and agreement below run on the CPU
            score = evaluate(net, args.game, proto, EVAL_SEED_OFFSET + 1 + seed)
            agree = agreement(tfn, net, real_held)
            rows.append({"method": method, "seed": seed, "score": score["mean"], "score_std": score["std"],
                         "episodes": score["episodes"], "agreement": agree, "student_steps": gas.student_steps,
                         "generator_steps": res.generator_steps, "lives": res.lives,
                         "sources": "+".join(sorted(res.sources_seen())), "wall_s": time.perf_counter() - t0})
            curves += [{"method": method, "seed": seed, "student_step": h["student_step"],
                        "generator_step": h["generator_step"], "loss_student": h.get("loss_student"),
                        "loss_generator": h.get("loss_generator")} for h in res.history]
            log(f"{method} seed {seed}: score {score['mean']:.2f} over {score['episodes']} games, agreement "
                f"{agree:.1f}% ({rows[-1]['wall_s']:.1f}s, sources {rows[-1]['sources']})")
    result = {"experiment": "policy", "kind": "policy", "game": args.game, "args": asdict(args),
              "student_net": net_name, "generator_side": side, "frame_high": high, "eval_protocol": asdict(proto),
              "teacher": {"path": args.teacher, "algo": teacher.meta.get("algo"), "score": teacher_eval["mean"],
                          "zoo_eval": teacher.meta.get("eval")},
              "random": {"score": rand_eval["mean"]}, "n_rollout_train": len(real_train),
              "n_rollout_heldout": len(real_held), "summary": {**summarise(rows, "score")},
              "agreement": {m: s for m, s in summarise([r for r in rows if r["method"] not in ("teacher", "random")],
                                                        "agreement").items()},
              "rows": rows}
    write_results(result, curves, out_dir)
    return result


# ---------------------------------------------------------------------------------------------------------
# The pipeline's plan (config gan_simulator; papers/gan_simulator/rules.smk), decided when the Snakefile loads
# ---------------------------------------------------------------------------------------------------------
def tier_image_args(config: dict, experiment: str, threads: int = 1) -> dict:
    """The --args overrides of one image preset: the tier's args, its gas, the preset's overrides (seeds included:
    they win over the tier's gan_simulator.seeds), then data_dir, threads and device."""
    g = config["gan_simulator"]
    over = dict(g.get("overrides", {}).get(experiment, {}))
    gas = {**g.get("gas", {}), **over.pop("gas", {})}
    seeds = int(over.pop("seeds", g["seeds"]))  # a preset may run more or fewer seeds than the tier's
    return {**g.get("args", {}), **over, "gas": gas, "data_dir": g.get("data_dir", "data/"),
            "seeds": seeds, "threads": int(threads), "device": config.get("device", "cpu")}


def tier_plan(config: dict) -> dict[str, dict]:
    """{preset: {student_steps, seeds, not_run}} for the tier's image presets; not_run is None when it can run."""
    g = config.get("gan_simulator") or {}
    out = {}
    for e in g.get("images", []):
        a = experiment_args(e, tier_image_args(config, e))
        steps = method_args(a.methods[0], 0, a.gas, a.method_overrides).student_steps
        out[e] = {"dataset": a.dataset, "student_steps": steps, "seeds": a.seeds,
                  "not_run": missing_dataset(a.dataset, a.data_dir)}
    return out


def tier_policy_args(config: dict, game: str, teacher: str, threads: int = 1) -> dict:
    p = config["gan_simulator"]["policy"]
    return {**p.get("args", {}), "gas": dict(p.get("gas", {})), "game": game, "teacher": teacher,
            "seeds": int(p.get("seeds", 1)), "threads": int(threads), "device": config.get("device", "cpu")}


def check_tier_config(config: dict) -> None:
    """Errors in the gan_simulator section, named before any job starts."""
    g = config.get("gan_simulator")
    if g is None:
        return
    for e in g.get("images", []):
        experiment_args(e, tier_image_args(config, e))
    extra = sorted(set(g.get("overrides", {})) - set(g.get("images", [])))
    if extra:
        raise ValueError(f"gan_simulator.overrides names {extra}, which gan_simulator.images does not list")
    if g.get("policy"):
        for game in g["policy"].get("games", []):
            PolicyArgs.from_dict(tier_policy_args(config, game, "teachers/<checked at run time>"))


def main(argv=None):
    from common.cli import add_run_options, run_mapping

    ap = argparse.ArgumentParser(description="Generative Adversarial Simulator experiments (data-free distillation).")
    ap.add_argument("--experiment", required=True, help=f"one of {', '.join(EXPERIMENTS)}, or policy")
    add_run_options(ap, "output directory (results.json, results.csv, curves.csv)",
                    "ImageArgs / PolicyArgs fields as JSON or YAML")
    a = ap.parse_args(argv)
    d = run_mapping(a)
    if a.experiment == "policy":
        run_policy_experiment(PolicyArgs.from_dict(d), a.out)
    else:
        args = experiment_args(a.experiment, d)
        why = missing_dataset(args.dataset, args.data_dir)
        if why:
            raise FileNotFoundError(f"experiment '{a.experiment}' cannot run: {why}")
        run_image_experiment(a.experiment, args, a.out)


if __name__ == "__main__":
    from common.cli import run as cli_run

    cli_run(main)
