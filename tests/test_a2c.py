"""The shared learner: GAE against hand-computed values, seeding, checkpoint -> kill -> exact resume."""

import numpy as np
import pandas as pd
import pytest
import torch

from common.a2c import A2CArgs, Hook, gae, load_policy, train


def test_gae_lambda1_is_nstep_return():
    # T=3, one env, gamma=0.5, no terminal: R_2 = 1 + .5*8 = 5; R_1 = 0 + .5*5 = 2.5; R_0 = 2 + .5*2.5 = 3.25
    r = torch.tensor([[2.0], [0.0], [1.0]])
    v = torch.tensor([[1.0], [1.0], [1.0]])
    d = torch.zeros(3, 1, dtype=torch.bool)
    adv, ret = gae(r, v, d, torch.tensor([8.0]), gamma=0.5, lam=1.0)
    assert torch.allclose(ret[:, 0], torch.tensor([3.25, 2.5, 5.0]))
    assert torch.allclose(adv, ret - v)


def test_gae_terminal_and_lambda():
    # gamma=.9, lam=.5; terminal at t=1 cuts the bootstrap.
    r = torch.tensor([[1.0], [2.0], [3.0]])
    v = torch.tensor([[0.5], [1.0], [2.0]])
    d = torch.tensor([[False], [True], [False]])
    adv, _ = gae(r, v, d, torch.tensor([4.0]), gamma=0.9, lam=0.5)
    d2 = 3 + 0.9 * 4 - 2          # 4.6
    d1 = 2 - 1                    # terminal: no bootstrap -> 1.0
    d0 = 1 + 0.9 * 1.0 - 0.5      # 1.4
    a1 = d1                       # chain cut
    a0 = d0 + 0.9 * 0.5 * a1      # 1.85
    assert torch.allclose(adv[:, 0], torch.tensor([a0, a1, d2]))


# device cpu: these tests assert bit-for-bit reproducibility, which holds on the CPU (a GPU's kernels need not be
# deterministic; tests/test_gpu.py checks the GPU path)
SMALL = dict(game="MinAtar/Breakout", net="minatar", num_envs=4, n_steps=5, total_steps=2000,
             checkpoint_every=400, stats_every=200, log_interval_s=1e9, lr=1e-3, device="cpu")


def _curve(d):
    return pd.read_csv(d / "curve.csv").drop(columns="wall_time")


def _weights(d):
    return load_policy(d / "model.pt").state_dict()


def test_same_seed_same_curve(tmp_path):
    train(A2CArgs(**SMALL, seed=3), tmp_path / "a")
    train(A2CArgs(**SMALL, seed=3), tmp_path / "b")
    train(A2CArgs(**SMALL, seed=4), tmp_path / "c")
    pd.testing.assert_frame_equal(_curve(tmp_path / "a"), _curve(tmp_path / "b"))
    wa, wb, wc = _weights(tmp_path / "a"), _weights(tmp_path / "b"), _weights(tmp_path / "c")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


class CountingHook(Hook):
    """A hook with state, to check it is checkpointed too."""

    def __init__(self):
        self.calls = 0

    def loss(self, agent, batch, out):
        return 0.0 * out.value.sum(), {"hook_calls": float(self.calls)}

    def after_update(self, agent, batch):
        self.calls += 1
        return {}

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, s):
        self.calls = s["calls"]


def test_kill_and_resume_is_exact(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    train(A2CArgs(**SMALL, seed=1), full, hook=CountingHook())
    # "kill" the job after 47 updates (past two checkpoint boundaries at updates 20 and 40) ...
    r = train(A2CArgs(**SMALL, seed=1), cut, hook=CountingHook(), stop_after_updates=47)
    assert r == {"stopped_at_update": 47}
    assert (cut / "checkpoint.pt").exists() and not (cut / "curve.csv").exists()
    # ... and rerun: it resumes from update 40 and must end exactly where the uninterrupted run did
    train(A2CArgs(**SMALL, seed=1), cut, hook=CountingHook())
    pd.testing.assert_frame_equal(_curve(full), _curve(cut))
    wf, wc = _weights(full), _weights(cut)
    assert all(torch.equal(wf[k], wc[k]) for k in wf)
    sf, sc = pd.read_csv(full / "train_stats.csv"), pd.read_csv(cut / "train_stats.csv")
    pd.testing.assert_frame_equal(sf, sc)
    assert sf["hook_calls"].iloc[-1] == 99  # 100 updates; logged before the 100th after_update
    assert not (cut / "checkpoint.pt").exists()


def test_nan_loss_is_a_clear_error(tmp_path):
    class NaNHook(Hook):
        def loss(self, agent, batch, out):
            return out.value.sum() * float("nan"), {}

    with pytest.raises(FloatingPointError, match="lower lr"):
        train(A2CArgs(**SMALL), tmp_path, hook=NaNHook())
    assert not (tmp_path / "curve.csv").exists() and not (tmp_path / "model.pt").exists()


def test_bad_args_name_the_key():
    with pytest.raises(KeyError, match="did you mean 'total_steps'"):
        A2CArgs.from_dict({"total_step": 10})
    with pytest.raises(KeyError, match="protocol"):
        A2CArgs.from_dict({"protocol": {"noop": 3}})
    with pytest.raises(ValueError, match="'lr' must be of type float, got '1e-5'"):
        A2CArgs.from_dict({"lr": "1e-5"})         # what YAML makes of 1e-5
    with pytest.raises(ValueError, match="'num_envs' must be of type int"):
        A2CArgs.from_dict({"num_envs": True})


def test_cli_mapping_reads_json_floats_as_numbers():
    from common.cli import parse_mapping

    assert parse_mapping('{"lr": 1e-05}') == {"lr": 1e-05}   # YAML 1.1 alone would give the string '1e-05'
    assert parse_mapping("{game: Pong, seed: 3}") == {"game": "Pong", "seed": 3}
    assert parse_mapping("") == {}
    with pytest.raises(ValueError, match="must be a mapping"):
        parse_mapping("[1, 2]")


def test_cli_run_options_apply_set_over_args():
    import argparse

    from common.cli import add_run_options, run_mapping

    ap = argparse.ArgumentParser()
    add_run_options(ap, "run directory", "fields")
    a = ap.parse_args(["--out", "d", "--args", '{"seed": 1, "lr": 1e-05}', "--set", "seed=3", "--set", "game=Pong"])
    assert a.out == "d" and run_mapping(a) == {"seed": 3, "lr": 1e-05, "game": "Pong"}
    assert run_mapping(ap.parse_args(["--out", "d"])) == {}
    with pytest.raises(ValueError, match="--set expects KEY=VALUE"):
        run_mapping(ap.parse_args(["--out", "d", "--set", "seed"]))


def test_learns_minatar_breakout(tmp_path):
    """A real learning check, small: MinAtar Breakout from ~0.3 (random) to clearly above it."""
    args = A2CArgs(game="MinAtar/Breakout", net="minatar", num_envs=16, n_steps=5, total_steps=60_000,
                   lr=2e-3, checkpoint_every=0, log_interval_s=1e9, seed=0)
    train(args, tmp_path)
    c = pd.read_csv(tmp_path / "curve.csv")
    first, last = c.episode_return.head(100).mean(), c.episode_return.tail(100).mean()
    assert last > max(2.0, 2 * first), (first, last)


def test_resume_before_any_episode_keeps_one_header(tmp_path):
    # checkpoint at update 2 (40 steps), before any game has ended; kill at update 3; resume
    args = A2CArgs(**{**SMALL, "total_steps": 120, "checkpoint_every": 40}, seed=2)
    train(args, tmp_path, stop_after_updates=3)
    train(args, tmp_path)
    lines = (tmp_path / "curve.csv").read_text().splitlines()
    assert lines[0].startswith("env_steps") and not any(l.startswith("env_steps") for l in lines[1:])


def test_one_seed_derivation():
    import numpy as np

    from common.a2c import env_seed, sampler_seed
    from common.io import derive_seed

    # the first 32-bit word of SeedSequence([seed, *stream]), as every stream of the repository derives its seed
    assert derive_seed(3, 7, 1) == int(np.random.SeedSequence([3, 7, 1]).generate_state(1)[0])
    assert derive_seed(3, 7, 1) != derive_seed(3, 7, 2) != derive_seed(4, 7, 1)
    assert env_seed(5, 2) == derive_seed(5, 2) % (2**31 - 1) and sampler_seed(5) == derive_seed(5, 104_729)
