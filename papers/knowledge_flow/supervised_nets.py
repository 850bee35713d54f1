"""The paper's classifiers for Knowledge Flow's supervised Tables 3-6, with the split the mixing needs.

Every net here is a :class:`LayeredClassifier`: named layers, ``preact(i, h)`` giving layer i's
representation z_i from the previous layer's output, ``activate(z)`` and ``heads(h)`` -> (logits, None).
That is the split :class:`~papers.knowledge_flow.method.KnowledgeFlowStudent` mixes teacher layers into
(``h_i = activate(p_w(student) z_i + sum_l p_w(l) Q(l) z_l)``), the one mixing implementation of the RL and
supervised programs. A net spec (``SupArgs.student``, a teacher's ``net``) picks one with ``arch``:

=============  ===========================================================  ==================================
arch           net                                                          used for
=============  ===========================================================  ==================================
(none)         :class:`ClassifierNet`: convs then fc layers, ReLU           digits presets; Hinton's MNIST MLPs
chen_mnist     Chen (2017)'s MNIST MLP: fc 256-256, ReLU, dropout 0.2       Table 5 (EMNIST Letters)
chen_cifar     Chen (2017)'s CIFAR net (n = ``channels``, 128): conv        Table 4 C100 (teacher; the student
               n, n, M, 2n, 2n, M, 4n, 4n, M, 8n (no padding), M; BN        ``width: 0.5``: every conv halved)
               without affine, ReLU; fc 8n -> classes
chen_stl10     Chen (2017)'s STL-10 net (n = ``channels``, 32): conv n, M,  Table 6 (96x96 inputs)
               2n, M, 4n, M, 4n, M, 8n, 8n (no padding), M; as above
densenet_bc    DenseNet-BC (Huang et al. 2017), ``depth`` and ``growth``    Table 3 (100/24; default tier 40/12)
resnet18/50    torchvision's ResNet-18 / ResNet-50 (He et al. 2016),        Table 4 ImageNet
               ``weights=None`` (nothing downloaded)
=============  ===========================================================  ==================================

Chen's nets are written here after the layer sizes of github.com/aaron-xichen/pytorch-playground
(mnist/, cifar/, stl10/ model.py); the channel counts are the ones its model selector uses (CIFAR 128,
STL-10 32). A max-pool right after a ReLU equals the ReLU after the max-pool (ReLU is monotone), so
``preact`` pools before the ReLU and the nets compute exactly Chen's conv-BN-ReLU-pool.

Which layers Knowledge Flow links (the paper names none for its supervised nets; ``links: same`` joins
same-named layers of student and teachers):

* ClassifierNet / Chen's nets: every layer (conv1.., fc1..), its pre-activation (after BN for Chen's convs,
  max-pooled where Chen pools), as in the RL nets.
* DenseNet-BC: one link per dense block, at the block boundaries: ``block1`` = stem conv + dense block 1 +
  transition 1 (its 1x1 conv, 2x2 average pool), ``block2`` = dense block 2 + transition 2, ``block3`` = dense
  block 3 + BN-ReLU + global average pool (the classifier's input features). The transitions' outputs are
  pre-activations (every dense layer starts with BN-ReLU); ``activate`` is the identity, the nonlinearity
  being inside the blocks. Linking all 48 dense layers of DenseNet-100 would add 48 Q maps per teacher; the
  three boundaries carry everything a block hands on. Same-architecture teacher and student have the same
  spatial sizes (16x16, 8x8 on 32x32 inputs), so Q is a 1x1 conv there and a linear map on the pooled features.
* ResNet-18/50: the four stage outputs ``layer1``..``layer4`` (torchvision's names; the stem conv/BN/max-pool
  runs inside ``layer1``), which have the same spatial size in both nets (56, 28, 14, 7 on 224x224), so Q is a
  1x1 conv from the teacher's channels (256, 512, 1024, 2048) to the student's (64, 128, 256, 512). ``activate``
  is the identity: a stage output is already the ReLU of its last residual sum, and the next stage reads it.

Parameter counts (checked in tests/test_kf_supervised_nets.py): DenseNet-BC-100/24 3,020,506 on 10 classes
(3,082,156 on 100), DenseNet-BC-100/12 769,162 (Huang et al.'s "0.8M"); Chen CIFAR-100 9,398,500, its
half-width student 2,376,868 (25%: the paper's students have "50%-5%" of the teacher's parameters); Chen
STL-10 1,128,650; Chen MNIST on 26 letters 273,434; ResNet-18 11,689,512, ResNet-50 25,557,032 (1000 classes).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.nets import NetOut
from papers.knowledge_flow.supervised_data import Task, data_device


class LayeredClassifier(nn.Module):
    """A classifier with the LayeredNet split: ``layers`` (an nn.ModuleList named by ``layer_names``), a linear
    ``head`` on the last layer's output, and ``heads`` returning (logits, None) (no value head), so it plugs into
    KnowledgeFlowStudent like an actor-critic LayeredNet. Subclasses set ``obs_shape``, ``n_actions`` (= classes),
    ``layers``, ``layer_names``, ``head`` and define ``preact`` / ``activate``."""

    recurrent = False

    @property
    def n_classes(self) -> int:
        return self.n_actions

    def input(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float32)

    def preact(self, i: int, h: torch.Tensor) -> torch.Tensor:
        return self.layers[i](h)

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        return z

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


# ---------------------------------------------------------------------------------------------------
# ClassifierNet: convs then fully connected layers (the digits presets, Hinton's and Chen's MNIST MLPs)
# ---------------------------------------------------------------------------------------------------
class ClassifierNet(LayeredClassifier):
    """conv layers (k x k, stride s, 'same'-style padding k//2) then fully connected layers, ReLU (then dropout
    with probability `dropout` in training, after Chen (2017)'s MNIST MLP; 0: none), and a linear output layer
    of class logits. Layers are named conv1.., fc1..; ``heads`` returns (logits, None) (no value head), so the
    net plugs into KnowledgeFlowStudent like an actor-critic LayeredNet (:class:`LayeredClassifier`)."""

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


# ---------------------------------------------------------------------------------------------------
# Chen (2017)'s CIFAR and STL-10 nets: 3x3 convs, BN without affine parameters, ReLU, 2x2 max-pools
# ---------------------------------------------------------------------------------------------------
def chen_cifar_layers(n: int) -> list[tuple[int, int, bool]]:
    """(out channels, padding, max-pool after) per conv: n, n, M, 2n, 2n, M, 4n, 4n, M, (8n, pad 0), M."""
    return [(n, 1, False), (n, 1, True), (2 * n, 1, False), (2 * n, 1, True), (4 * n, 1, False), (4 * n, 1, True),
            (8 * n, 0, True)]


def chen_stl10_layers(n: int) -> list[tuple[int, int, bool]]:
    """n, M, 2n, M, 4n, M, 4n, M, (8n, pad 0), (8n, pad 0), M."""
    return [(n, 1, True), (2 * n, 1, True), (4 * n, 1, True), (4 * n, 1, True), (8 * n, 0, False), (8 * n, 0, True)]


class ChenConvNet(LayeredClassifier):
    """Chen (2017)'s conv nets: conv 3x3 (with bias) -> BatchNorm (affine=False) -> ReLU [-> max-pool 2x2] per
    layer, then one linear layer. Layer i's pre-activation is BN(conv(h)), max-pooled where Chen pools."""

    def __init__(self, in_shape, n_classes: int, layers: list[tuple[int, int, bool]]):
        super().__init__()
        self.obs_shape, self.n_actions = tuple(in_shape), int(n_classes)
        c, h, w = self.obs_shape
        mods, self.pool_after = [], []
        for out_c, pad, pool in layers:
            mods.append(nn.Sequential(nn.Conv2d(c, out_c, 3, padding=pad), nn.BatchNorm2d(out_c, affine=False)))
            self.pool_after.append(pool)
            c, h, w = out_c, h + 2 * pad - 2, w + 2 * pad - 2
            if pool:
                h, w = h // 2, w // 2
            if h < 1 or w < 1:
                raise ValueError(f"Chen's net of {len(layers)} convs does not fit {tuple(in_shape)} inputs (the maps "
                                 f"vanish at conv{len(mods)}): its CIFAR net needs 32x32, its STL-10 net 96x96")
        self.layers = nn.ModuleList(mods)
        self.layer_names = tuple(f"conv{i + 1}" for i in range(len(mods)))
        self.head = nn.Linear(c * h * w, n_classes)

    def preact(self, i: int, h: torch.Tensor) -> torch.Tensor:
        z = self.layers[i](h)
        return F.max_pool2d(z, 2) if self.pool_after[i] else z    # = Chen's pool after the ReLU

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        return F.relu(z)


# ---------------------------------------------------------------------------------------------------
# DenseNet-BC (Huang et al. 2017, CIFAR version): 3 dense blocks of bottleneck layers, compression 0.5
# ---------------------------------------------------------------------------------------------------
class DenseLayer(nn.Module):
    """BN-ReLU-conv 1x1 (4k channels) - BN-ReLU-conv 3x3 (k channels); the k new maps are concatenated to x."""

    def __init__(self, c_in: int, growth: int):
        super().__init__()
        self.norm1, self.conv1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, 4 * growth, 1, bias=False)
        self.norm2, self.conv2 = nn.BatchNorm2d(4 * growth), nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new = self.conv2(F.relu(self.norm2(self.conv1(F.relu(self.norm1(x))))))
        return torch.cat([x, new], 1)


def transition(c_in: int, c_out: int) -> nn.Sequential:
    """BN-ReLU-conv 1x1 (c_in -> c_out = floor(0.5 c_in)) - average pool 2x2."""
    return nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(), nn.Conv2d(c_in, c_out, 1, bias=False), nn.AvgPool2d(2))


class DenseNetBC(LayeredClassifier):
    """DenseNet-BC for 32x32 inputs: conv 3x3 (2k maps), then 3 dense blocks of n = (depth - 4) / 6 bottleneck
    layers with transitions (compression 0.5) between them, BN-ReLU, global average pool, linear classifier.
    Layers (the Knowledge Flow link points): block1 (stem + block + transition), block2, block3 (block + BN-ReLU +
    pool: the classifier's input). Weights as in Huang et al.'s code: convs He-normal over fan-out, BN 1/0,
    classifier bias 0. No dropout (Huang et al. use none with data augmentation)."""

    def __init__(self, in_shape, n_classes: int, depth: int = 100, growth: int = 24):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"DenseNet-BC depth must be 6n + 4 with n >= 1 (40, 100, 190, 250, ...), got {depth}")
        self.obs_shape, self.n_actions = tuple(in_shape), int(n_classes)
        self.depth, self.growth = depth, growth
        n = (depth - 4) // 6
        c = 2 * growth
        stages = []
        for b in range(3):
            mods = [nn.Conv2d(self.obs_shape[0], c, 3, padding=1, bias=False)] if b == 0 else []
            for _ in range(n):
                mods.append(DenseLayer(c, growth))
                c += growth
            if b < 2:
                mods.append(transition(c, c // 2))
                c //= 2
            else:
                mods += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            stages.append(nn.Sequential(*mods))
        self.layers = nn.ModuleList(stages)
        self.layer_names = ("block1", "block2", "block3")
        self.head = nn.Linear(c, n_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.head.bias)


# ---------------------------------------------------------------------------------------------------
# ResNet-18 / ResNet-50 for ImageNet: torchvision's, split at its four stages
# ---------------------------------------------------------------------------------------------------
class TorchvisionResNet(LayeredClassifier):
    """torchvision's ``resnet18`` / ``resnet50`` (weights=None, its own initialisation) as layers layer1..layer4
    (the stem conv-BN-ReLU-max-pool runs in layer1), average pool and fc as the head."""

    def __init__(self, in_shape, n_classes: int, name: str = "resnet18"):
        super().__init__()
        try:
            import torchvision.models as tvm
        except ImportError:
            raise RuntimeError(f"arch '{name}' is torchvision's, and torchvision is not installed: pip install "
                               "torchvision (the version that matches your torch; README, 'Set-up')") from None
        net = getattr(tvm, name)(weights=None, num_classes=int(n_classes))
        if tuple(in_shape)[0] != 3:
            raise ValueError(f"arch '{name}' takes RGB images, got input shape {tuple(in_shape)}")
        self.obs_shape, self.n_actions = tuple(in_shape), int(n_classes)
        self.layers = nn.ModuleList([nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1),
                                     net.layer2, net.layer3, net.layer4])
        self.layer_names = ("layer1", "layer2", "layer3", "layer4")
        self.pool, self.head = net.avgpool, net.fc

    def heads(self, h: torch.Tensor):
        return self.head(self.pool(h).flatten(1)), None


# ---------------------------------------------------------------------------------------------------
# Net specs: {arch: ..., <its settings>}; no arch = a ClassifierNet (built by make_net)
# ---------------------------------------------------------------------------------------------------
ARCHS = {   # arch -> its settings and their defaults (a spec's other keys are errors)
    None: {"hidden": [], "convs": [], "dropout": 0.0},
    "chen_mnist": {"hidden": [256, 256], "dropout": 0.2},
    "chen_cifar": {"channels": 128, "width": 1.0},
    "chen_stl10": {"channels": 32, "width": 1.0},
    "densenet_bc": {"depth": 100, "growth": 24},
    "resnet18": {},
    "resnet50": {},
}


def resolve_net_spec(spec: dict, where: str = "net") -> dict:
    """`spec` with every setting of its arch filled in from :data:`ARCHS`; unknown arches and keys (and a
    DenseNet depth that is not 6n + 4) stop with the valid ones named."""
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: a net spec is a mapping like {{arch: densenet_bc, depth: 100, growth: 24}}, "
                         f"got {spec!r}")
    arch = spec.get("arch")
    if arch not in ARCHS:
        raise ValueError(f"{where}: unknown arch '{arch}'; choose one of {', '.join(a for a in ARCHS if a)} "
                         "(or no arch: a ClassifierNet with hidden, convs, dropout)")
    extra = sorted(set(spec) - set(ARCHS[arch]) - {"arch"})
    if extra:
        raise ValueError(f"{where}: {'arch ' + repr(arch) if arch else 'a ClassifierNet'} takes no {extra}; its "
                         f"settings are {sorted(ARCHS[arch]) or 'none'}")
    out = {**({"arch": arch} if arch else {}), **ARCHS[arch], **spec}
    if arch == "densenet_bc" and (int(out["depth"]) < 10 or (int(out["depth"]) - 4) % 6):
        raise ValueError(f"{where}: DenseNet-BC depth must be 6n + 4 with n >= 1 (40, 100, ...), got {out['depth']}")
    if arch in ("chen_cifar", "chen_stl10") and round(out["channels"] * out["width"]) < 1:
        raise ValueError(f"{where}: channels * width must be >= 1, got {out['channels']} * {out['width']}")
    return out


def apply_arch_overrides(spec: dict, overrides: dict, where: str = "net") -> dict:
    """`spec` with ``overrides[arch]`` on top (SupArgs.arch_overrides: a tier's smaller DenseNet / Chen nets)."""
    return {**spec, **overrides.get(spec.get("arch"), {})} if spec.get("arch") in overrides else dict(spec)


def build_net(spec: dict, in_shape, n_classes: int) -> LayeredClassifier:
    """The net of a resolved spec with an arch other than chen_mnist (which is a ClassifierNet)."""
    arch = spec["arch"]
    if arch in ("chen_cifar", "chen_stl10"):
        n = int(round(spec["channels"] * spec["width"]))
        return ChenConvNet(in_shape, n_classes, (chen_cifar_layers if arch == "chen_cifar" else chen_stl10_layers)(n))
    if arch == "densenet_bc":
        return DenseNetBC(in_shape, n_classes, depth=int(spec["depth"]), growth=int(spec["growth"]))
    if arch in ("resnet18", "resnet50"):
        return TorchvisionResNet(in_shape, n_classes, arch)
    raise ValueError(f"build_net: arch '{arch}' is built by make_net")


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


def make_net(spec: dict, task: Task) -> LayeredClassifier:
    """The net of a spec (SupArgs.student, a teacher's net) for `task`, on the device the task's data lies on:
    a ClassifierNet without ``arch`` (the digits and MNIST presets) or for chen_mnist (Chen's MLP: fc 256-256,
    dropout 0.2), else the arch's net (:func:`build_net`)."""
    r = resolve_net_spec(spec)
    if r.get("arch") in (None, "chen_mnist"):
        net = ClassifierNet(task.in_shape, task.n_classes, hidden=r["hidden"], convs=r.get("convs", ()),
                            dropout=r["dropout"])
    else:
        net = build_net(r, task.in_shape, task.n_classes)
    return net.to(data_device(task))


def n_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


__all__ = ["LayeredClassifier", "ClassifierNet", "ChenConvNet", "DenseNetBC", "TorchvisionResNet", "ARCHS",
           "resolve_net_spec", "apply_arch_overrides", "build_net", "make_net", "finetune_classifier",
           "same_name_links", "n_parameters", "chen_cifar_layers", "chen_stl10_layers"]
