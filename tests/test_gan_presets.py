"""GAS image presets as data (papers/gan_simulator/presets.yaml): the loaded presets equal, key order and value
types included, the dict run.py held before they moved to the file (written out here by hand from it), every
preset builds checked ImageArgs, and the file ships with the package (pyproject's package-data)."""

import fnmatch
import json
import tomllib
from pathlib import Path

import pytest

from papers.gan_simulator.images import EXPERIMENTS, IMAGE_EXPERIMENTS, PRESETS_FILE, experiment_args, load_presets

REPO = Path(__file__).resolve().parents[1]
# run.EXPERIMENTS as the Python literal of commit 7f42bde
BEFORE = {
    "digits": {"dataset": "digits"},
    "digits_modes": {"dataset": "digits", "class_map": [0, 1, 2, 3, 4, 0, 1, 2, 3, 4],
                     "methods": ["dafl", "dfad", "ours", "kd_real"]},
    "mnist": {"dataset": "mnist", "teacher_epochs": 10},
    "fashion_mnist": {"dataset": "fashion_mnist", "teacher_epochs": 20},
    "cifar10": {"dataset": "cifar10", "teacher_net": "resnet34", "student_net": "resnet18", "teacher_epochs": 100,
                "teacher_lr": 1e-3, "teacher_batch_size": 128},
}


def test_the_presets_file_loads_the_dict_run_py_held():
    assert EXPERIMENTS == BEFORE
    # json.dumps keeps key order and tells 1 from 1.0 and "1e-3": the order of the presets (--help, error messages,
    # the rules' wildcard) and of their keys is unchanged, and so is every value's type
    assert json.dumps(EXPERIMENTS) == json.dumps(BEFORE)
    assert load_presets(PRESETS_FILE) == EXPERIMENTS
    assert IMAGE_EXPERIMENTS == ("digits", "digits_modes", "mnist", "fashion_mnist", "cifar10")


def test_hand_checked_values():
    assert EXPERIMENTS["digits_modes"]["class_map"] == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    assert EXPERIMENTS["digits_modes"]["methods"] == ["dafl", "dfad", "ours", "kd_real"]
    c = EXPERIMENTS["cifar10"]
    assert (c["teacher_net"], c["student_net"], c["teacher_epochs"], c["teacher_batch_size"]) == (
        "resnet34", "resnet18", 100, 128)
    assert type(c["teacher_lr"]) is float and c["teacher_lr"] == 0.001
    assert [EXPERIMENTS[e].get("teacher_epochs") for e in IMAGE_EXPERIMENTS] == [None, None, 10, 20, 100]


@pytest.mark.parametrize("name", list(BEFORE))
def test_every_preset_builds_its_image_args(name):
    args = experiment_args(name)
    assert all(getattr(args, k) == v for k, v in BEFORE[name].items())


def test_the_presets_file_is_package_data():
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["*"]
    assert PRESETS_FILE.parent == REPO / "papers" / "gan_simulator" and PRESETS_FILE.is_file()
    assert any(fnmatch.fnmatch(PRESETS_FILE.name, p) for p in patterns)


def test_method_presets_are_read_from_presets_yaml_as_written():
    """The distillation methods' defaults (presets.yaml `methods`): DAFL has no adversarial term and one student step,
    DFAD only the adversarial L1 term and five student steps, ours both with re-initialisation every 200 steps and
    a half-buffer mix; floats stay floats (a YAML int would change a GASArgs field's type)."""
    from papers.gan_simulator.method import METHOD_PRESETS, METHODS

    assert set(METHOD_PRESETS) == set(METHODS)
    assert METHOD_PRESETS["dafl"] == dict(w_one_hot=1.0, w_info_entropy=5.0, w_activation=0.1, w_adv=0.0,
                                          adv_kind="l1", student_loss="kl", g_steps=1, s_steps=1, reinit_every=0,
                                          buffer_mix=0.0)
    assert METHOD_PRESETS["dfad"]["student_loss"] == "l1" and METHOD_PRESETS["dfad"]["s_steps"] == 5
    assert METHOD_PRESETS["ours"]["reinit_every"] == 200 and METHOD_PRESETS["ours"]["buffer_mix"] == 0.5
    assert all(isinstance(p[k], float) for p in METHOD_PRESETS.values()
               for k in ("w_one_hot", "w_info_entropy", "w_activation", "w_adv", "buffer_mix"))
