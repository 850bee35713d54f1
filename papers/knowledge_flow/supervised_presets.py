"""The presets of Knowledge Flow's supervised Tables 3-6: which experiments exist and which paper row each fills.

:data:`EXPERIMENTS` (preset name -> SupArgs fields) is data: supervised_presets.yaml, beside this file, with the
source of every value; :func:`experiment_args` turns a preset and a run's overrides into checked SupArgs.
:data:`PAPER_ROWS` names the paper table, row and column each preset and method reproduces (the tables'
labels, supervised_tables.py).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from papers.knowledge_flow.supervised_args import SupArgs

PRESETS_FILE = Path(__file__).with_name("supervised_presets.yaml")


def load_presets(path: str | Path = PRESETS_FILE) -> dict:
    """{preset: SupArgs fields} of a presets file: its ``experiments`` mapping, in file order (its ``nets`` only
    hold the YAML anchors the presets share)."""
    return yaml.safe_load(Path(path).read_text())["experiments"]


EXPERIMENTS = load_presets()


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

