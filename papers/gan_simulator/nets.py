"""Classifier nets of the image experiments: the LeNet-5 pair (method.py) and DAFL's CIFAR ResNets, by name in
:data:`NETS`."""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from papers.gan_simulator.method import ClassifierOut, LeNet5, LeNet5Half


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """The CIFAR ResNet of DAFL's code (kuangliu's): conv3x3 64, four stages (64, 128, 256, 512; strides 1, 2,
    2, 2) of BasicBlocks, global average pool, linear. Returns ClassifierOut(logits, pooled 512 features)."""

    def __init__(self, blocks, in_channels: int = 3, n_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, cin = [], 64
        for cout, n, stride in zip((64, 128, 256, 512), blocks, (1, 2, 2, 2)):
            for s in [stride] + [1] * (n - 1):
                layers.append(BasicBlock(cin, cout, s))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(512, n_classes)

    def forward(self, x):
        h = self.layers(F.relu(self.bn1(self.conv1(x))))
        features = F.adaptive_avg_pool2d(h, 1).flatten(1)
        return ClassifierOut(self.linear(features), features)


NETS = {
    "lenet5": LeNet5,
    "lenet5_half": LeNet5Half,
    "resnet34": lambda in_channels, n_classes: CifarResNet((3, 4, 6, 3), in_channels, n_classes),
    "resnet18": lambda in_channels, n_classes: CifarResNet((2, 2, 2, 2), in_channels, n_classes),
}
