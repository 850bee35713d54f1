"""cA3C's learner settings as data (papers/cdrl/paper.yaml): the loaded PAPER_A2C / PAPER_PROTOCOL equal, key order
and value types included, the dicts train.py held before they moved to the file (written out here by hand from
it), and they build the A2C arguments and the protocol of a run."""

import json

from common.a2c import A2CArgs
from common.envs import AtariProtocol
from papers.cdrl.train import PAPER_A2C, PAPER_FILE, PAPER_PROTOCOL, RunArgs, load_paper

# papers/cdrl/train.py's literals of commit 710771b
PROTOCOL_BEFORE = {"frame_stack": 1, "size": 42, "crop_rows": [34, 194], "clip_rewards": False,
                   "episodic_life": False}
A2C_BEFORE = {"net": "ca3c", "num_envs": 8, "n_steps": 20, "gamma": 0.99, "gae_lambda": 1.0, "ent_coef": 0.01,
              "vf_coef": 0.5, "loss_reduction": "sum", "optimizer": "adam", "lr": 1.0e-4, "lr_decay": False,
              "adam_eps": 1.0e-8, "max_grad_norm": 40.0, "protocol": PROTOCOL_BEFORE}


def test_paper_yaml_loads_the_dicts_train_py_held():
    assert PAPER_PROTOCOL == PROTOCOL_BEFORE and PAPER_A2C == A2C_BEFORE
    # json.dumps keeps key order and tells 1 from 1.0 and False
    assert json.dumps(PAPER_A2C) == json.dumps(A2C_BEFORE)
    assert json.dumps(PAPER_PROTOCOL) == json.dumps(PROTOCOL_BEFORE)
    assert PAPER_A2C["protocol"] is PAPER_PROTOCOL            # one protocol, as the literal shared it
    assert load_paper(PAPER_FILE) == (PAPER_A2C, PAPER_PROTOCOL)


def test_the_settings_build_a_run():
    assert AtariProtocol.from_dict(PAPER_PROTOCOL).crop_rows is not None
    a2c = A2CArgs.from_dict(RunArgs.from_dict({"a2c": {"game": "Bowling"}}).a2c_args())
    assert (a2c.lr, a2c.adam_eps, a2c.max_grad_norm, a2c.n_steps, a2c.num_envs) == (1e-4, 1e-8, 40.0, 20, 8)
    assert a2c.protocol["size"] == 42 and a2c.protocol["clip_rewards"] is False
