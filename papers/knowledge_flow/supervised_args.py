"""The arguments of one supervised Knowledge Flow experiment (Tables 3-6): :class:`SupArgs`, checked by name and
value when built (:meth:`SupArgs.from_dict`), and :class:`TeacherSpec`, one teacher it trains. The paper's
experiments are presets of these (supervised_presets.yaml); supervised.py runs one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common.checks import arg
from common.envs import dataclass_from_dict
from papers.knowledge_flow.supervised_data import DATASETS
from papers.knowledge_flow.supervised_nets import ARCHS, apply_arch_overrides, resolve_net_spec


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
    """A teacher trained (with cross-entropy) on its source task by the program (supervised.train_teacher)."""

    name: str = ""
    dataset: str | None = None
    classes: list | None = None
    drop_train_classes: list = field(default_factory=list)
    net: dict = field(default_factory=lambda: {"hidden": [64, 64]})
    epochs: int | None = arg(None, ">= 1")

