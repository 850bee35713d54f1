"""Knowledge Flow's supervised presets as data (papers/knowledge_flow/supervised_presets.yaml): the loaded presets
equal, key order and value types included, the dict supervised.py held before they moved to the file (written
out here by hand from it), every preset builds checked SupArgs, and each has its paper row."""

import json

import pytest

from papers.knowledge_flow import supervised
from papers.knowledge_flow.supervised_presets import (EXPERIMENTS, PAPER_ROWS, PRESETS_FILE, experiment_args,
                                                      load_presets)

DENSENET = {"arch": "densenet_bc", "depth": 100, "growth": 24}
CHEN_MNIST = {"arch": "chen_mnist"}
CHEN_CIFAR = {"arch": "chen_cifar", "channels": 128}
CHEN_CIFAR_HALF = {"arch": "chen_cifar", "channels": 128, "width": 0.5}
CHEN_STL10 = {"arch": "chen_stl10", "channels": 32}
# supervised.EXPERIMENTS as the Python literal of commit 710771b
BEFORE = {
    "digits_kd": {"dataset": "digits", "student": {"hidden": [32, 32]},
                  "teachers": [{"name": "big", "net": {"hidden": [128, 128]}}],
                  "methods": ["baseline", "kd:big", "kf:big"]},
    "digits_kd_wo3": {"dataset": "digits", "drop_train_classes": [3], "student": {"hidden": [32, 32]},
                      "teachers": [{"name": "big", "net": {"hidden": [128, 128]}}],
                      "methods": ["baseline", "kd:big", "kf:big"]},
    "digits_transfer": {"dataset": "digits", "student": {"hidden": [64, 64]},
                        "teachers": [{"name": "expert", "net": {"hidden": [64, 64]}},
                                     {"name": "half", "classes": [0, 1, 2, 3, 4], "net": {"hidden": [64, 64]}}],
                        "methods": ["baseline", "finetune:half", "kf:expert", "kf:half"]},
    "mnist_kd": {"dataset": "mnist", "student": {"hidden": [800, 800]},
                 "teachers": [{"name": "mlp1200", "net": {"hidden": [1200, 1200]}}],
                 "methods": ["baseline", "kd:mlp1200", "kf:mlp1200"]},
    "mnist_kd_wo3": {"dataset": "mnist", "drop_train_classes": [3], "student": {"hidden": [800, 800]},
                     "teachers": [{"name": "mlp1200", "net": {"hidden": [1200, 1200]}}],
                     "methods": ["baseline", "kd:mlp1200", "kf:mlp1200"]},
    "emnist_letters": {"dataset": "emnist_letters", "batch_size": 200, "student": CHEN_MNIST,
                       "teachers": [{"name": "letters", "net": CHEN_MNIST},
                                    {"name": "half_letters", "classes": list(range(13)), "net": CHEN_MNIST},
                                    {"name": "digits", "dataset": "emnist_digits", "net": CHEN_MNIST}],
                       "methods": ["baseline", "finetune:digits", "kf:letters", "kf:half_letters", "kf:digits"]},
    "cifar100_kd": {"dataset": "cifar100", "batch_size": 200, "student": CHEN_CIFAR_HALF,
                    "teachers": [{"name": "wide", "net": CHEN_CIFAR}],
                    "methods": ["baseline", "kd:wide", "kf:wide"]},
    "imagenet_kd": {"dataset": "imagenet", "image_size": [224, 224], "batch_size": 256, "val_fraction": 0.02,
                    "student": {"arch": "resnet18"}, "teachers": [{"name": "resnet50", "net": {"arch": "resnet50"}}],
                    "methods": ["baseline", "kd:resnet50", "kf:resnet50"], "lambda1_grid": [0.1],
                    "lambda2_grid": [0.01], "kd_temperature_grid": [4.0], "kd_alpha_grid": [0.9]},
    "cifar10": {"dataset": "cifar10", "student": DENSENET,
                "teachers": [{"name": "c100", "dataset": "cifar100", "net": DENSENET},
                             {"name": "svhn", "dataset": "svhn", "net": DENSENET}],
                "methods": ["baseline", "finetune:c100", "finetune:svhn", "kf:c100+svhn"]},
    "cifar100": {"dataset": "cifar100", "student": DENSENET,
                 "teachers": [{"name": "c10", "dataset": "cifar10", "net": DENSENET},
                              {"name": "svhn", "dataset": "svhn", "net": DENSENET}],
                 "methods": ["baseline", "finetune:c10", "finetune:svhn", "kf:c10+svhn"]},
    "stl10": {"dataset": "stl10", "image_size": [96, 96], "batch_size": 200, "student": CHEN_STL10,
              "teachers": [{"name": "c10", "dataset": "cifar10", "net": CHEN_STL10},
                           {"name": "c100", "dataset": "cifar100", "net": CHEN_STL10}],
              "methods": ["baseline", "finetune:c10", "finetune:c100", "kf:c100", "kf:c10+c100"]},
}


def test_the_presets_file_loads_the_dict_supervised_py_held():
    assert EXPERIMENTS == BEFORE
    # json.dumps keeps key order and tells 1 from 1.0 and True: the order of the presets (error messages, --help)
    # and of their keys (results.json's args) is unchanged, and so is every value's type
    assert json.dumps(EXPERIMENTS) == json.dumps(BEFORE)
    assert load_presets(PRESETS_FILE) == EXPERIMENTS and supervised.EXPERIMENTS is EXPERIMENTS


def test_hand_checked_values():
    assert list(EXPERIMENTS)[:3] == ["digits_kd", "digits_kd_wo3", "digits_transfer"]
    assert EXPERIMENTS["emnist_letters"]["teachers"][1]["classes"] == list(range(13))
    assert EXPERIMENTS["cifar10"]["student"] == {"arch": "densenet_bc", "depth": 100, "growth": 24}
    assert EXPERIMENTS["cifar100_kd"]["student"]["width"] == 0.5
    assert EXPERIMENTS["imagenet_kd"]["val_fraction"] == 0.02
    assert type(EXPERIMENTS["imagenet_kd"]["kd_temperature_grid"][0]) is float
    assert [EXPERIMENTS[e].get("batch_size") for e in ("emnist_letters", "cifar100_kd", "imagenet_kd", "stl10",
                                                         "cifar10")] == [200, 200, 256, 200, None]


@pytest.mark.parametrize("name", list(BEFORE))
def test_every_preset_validates_and_has_its_paper_row(name):
    args = experiment_args(name)
    assert args.dataset == BEFORE[name]["dataset"] and args.methods == BEFORE[name]["methods"]
    assert [t["name"] for t in args.teachers] == [t["name"] for t in BEFORE[name]["teachers"]]
    table, _, columns = PAPER_ROWS[name]
    assert table in ("Table 3", "Table 4", "Table 5", "Table 6") and set(columns) == set(args.methods)
