"""Teacher zoo: the SB3 env adapter, bodies, YAML hyperparameters, atomic training, loading (common/zoo.py)."""

import json
import os
import shutil

import numpy as np
import pytest
import torch
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.callbacks import BaseCallback

from common.envs import make_vec_env
from common.nets import A3CNet, MinAtarNet
from common.zoo import (HyperparameterError, SB3VecEnv, Teacher, load_teacher, main, make_model,
                        resolve_hyperparams, teacher_dir, train_teacher)
from frames import random_step_obs

GAME = "MinAtar/Breakout"
TINY_PPO = {"n_envs": 2, "n_steps": 64, "batch_size": 64}
TINY_DQN = {"learning_starts": 200, "buffer_size": 2000, "target_update_interval": 200}


def rollout_obs(game=GAME, n=4, steps=20, seed=1):
    """Observations from a few random steps (non-trivial frames)."""
    return random_step_obs(game, n, steps, seed)


@pytest.fixture(scope="module")
def ppo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo") / "ppo" / "MinAtar-Breakout" / "expert" / "seed0"
    train_teacher("ppo", GAME, 0, "expert", 2000, out, overrides=TINY_PPO, eval_episodes=3)
    return out


# -- SB3VecEnv ---------------------------------------------------------------------------------------
def test_sb3_vecenv_spaces_dones_and_raw_episode_scores():
    env = SB3VecEnv(make_vec_env(GAME, 2, {"max_frames": 160}))  # MinAtar: cap of 160 // 4 = 40 steps
    assert env.observation_space.shape == (4, 10, 10) and env.observation_space.dtype == np.uint8
    assert env.action_space.n == 3 and env.num_envs == 2
    env.seed(0)
    obs = env.reset()
    assert obs.shape == (2, 4, 10, 10) and obs.dtype == np.uint8 and set(np.unique(obs)) <= {0, 1}
    rng = np.random.default_rng(0)
    ret, episodes, truncations = np.zeros(2), [], 0
    for _ in range(400):
        obs, rew, dones, infos = env.step(rng.integers(3, size=2))
        ret += rew
        for i, info in enumerate(infos):
            assert dones[i] == ("terminal_observation" in info)
            if dones[i]:
                assert info["terminal_observation"].shape == (4, 10, 10)
                truncations += info["TimeLimit.truncated"]
            if "episode" in info:  # the Monitor convention: raw score and length of the whole game
                assert dones[i] and info["episode"]["r"] == ret[i]
                episodes.append(info["episode"])
                if info["TimeLimit.truncated"]:
                    assert info["episode"]["l"] == 40
            if dones[i]:
                ret[i] = 0.0
    assert len(episodes) > 5 and any(e["r"] > 0 for e in episodes)
    env.close()


# -- bodies: the common.nets layers, input scaled exactly once -------------------------------------------
@pytest.mark.parametrize("game,body,net_cls", [("Pong", "a3c", A3CNet), (GAME, "minatar", MinAtarNet)])
def test_body_matches_layered_net(game, body, net_cls):
    env = SB3VecEnv(make_vec_env(game, 1))
    hp = resolve_hyperparams("ppo", game, overrides={"n_envs": 1, "batch_size": 128}, body=body)
    teacher = Teacher(make_model("ppo", hp, env, seed=0, device="cpu"))
    obs = rollout_obs(game, n=2, steps=30)
    net = net_cls(env.observation_space.shape, env.action_space.n)
    net.layers.load_state_dict(teacher.body.layers.state_dict())
    ours = net.forward_preacts(torch.as_tensor(obs)).extra["preacts"]
    theirs = teacher.forward_preacts(obs)
    assert teacher.layer_names == net.layer_names
    assert teacher.body.features_dim == net.hidden_dim
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.contiguous(), b.contiguous(), rtol=1e-5, atol=1e-5)
    env.close()


# -- training, files, loading --------------------------------------------------------------------------
def test_untrained_teacher(tmp_path):
    out = tmp_path / "untrained"
    res = train_teacher("ppo", GAME, 3, "untrained", 10**9, out, overrides=TINY_PPO, eval_episodes=2)
    assert sorted(os.listdir(out)) == ["config.json", "eval.json", "model.zip"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["kind"] == "untrained" and cfg["steps"] == 0 and cfg["num_timesteps"] == 0
    assert res["episodes"] == 2 and res["actions"] == "sampled"
    assert PPO.load(out / "model.zip").num_timesteps == 0


def test_ppo_teacher_files_and_logits(ppo_dir):
    assert not ppo_dir.with_name("seed0.part").exists()
    assert sorted(os.listdir(ppo_dir)) == ["config.json", "curve.csv", "eval.json", "model.zip"]
    cfg = json.loads((ppo_dir / "config.json").read_text())
    assert cfg["hyperparams"]["n_steps"] == 64 and cfg["hyperparams"]["learning_rate"] == "lin_2.5e-4"
    assert cfg["body"] == "minatar" and cfg["num_timesteps"] >= 2000 and "stable_baselines3" in cfg["versions"]
    ev = json.loads((ppo_dir / "eval.json").read_text())
    assert ev["episodes"] == 3 and ev["mean"] == pytest.approx(np.mean(ev["scores"]))
    assert ev["protocol"]["clip_rewards"] is False and ev["protocol"]["episodic_life"] is False

    model = PPO.load(ppo_dir / "model.zip", device="cpu")  # a plain SB3 file, on the teacher's device
    teacher = load_teacher(ppo_dir)
    assert teacher.meta["algo"] == "ppo" and teacher.n_actions == 3 and teacher.obs_shape == (4, 10, 10)
    obs = rollout_obs()
    obs_t = model.policy.obs_to_tensor(obs)[0]
    with torch.no_grad():
        dist = model.policy.get_distribution(obs_t).distribution
        torch.testing.assert_close(teacher.logits(obs), dist.logits)
        torch.testing.assert_close(teacher.value(obs), model.policy.predict_values(obs_t).squeeze(-1))
    assert torch.allclose(teacher.logits(obs).exp().sum(-1), torch.ones(len(obs)))
    # the teacher runs the SB3 policy's own modules: weights shared with model.policy, not copied
    assert teacher.body is teacher.policy.features_extractor
    assert teacher.layer_names == ("conv1", "fc")
    assert [tuple(z.shape) for z in teacher.forward_preacts(obs)] == [(4, 16, 8, 8), (4, 128)]
    # frozen: no parameter trains, eval mode survives .train()
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.training and not teacher.policy.training


def test_teacher_as_net_acts_like_the_teacher(ppo_dir):
    teacher = load_teacher(ppo_dir)
    net = teacher.as_net()
    assert isinstance(net, MinAtarNet) and all(p.requires_grad for p in net.parameters())
    obs = torch.as_tensor(rollout_obs())
    with torch.no_grad():
        out = net(obs)
        # same action distribution (SB3 keeps normalised logits) and the same value
        torch.testing.assert_close(torch.log_softmax(out.logits, -1), teacher.logits(obs))
        torch.testing.assert_close(out.value, teacher.value(obs))
    net.layers[0].weight.data.zero_()  # a copy: training it leaves the teacher untouched
    assert teacher.body.layers[0].weight.abs().sum() > 0


def test_cli_eval_and_untrained(tmp_path, capsys, ppo_dir):
    main(["eval", "--path", str(ppo_dir)])
    assert json.loads(capsys.readouterr().out)["episodes"] == 3
    out = tmp_path / "cli"
    main(["train", "--algo", "a2c", "--game", "MinAtar-Breakout", "--seed", "0", "--kind", "untrained",  # path form
          "--steps", "0", "--out", str(out), "--set", "n_envs=2", "--eval-episodes", "1"])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["game"] == GAME and cfg["hyperparams"]["n_envs"] == 2


def test_dqn_teacher_q_values(tmp_path):
    out = tmp_path / "dqn"
    res = train_teacher("dqn", GAME, 0, "non_expert", 600, out, overrides=TINY_DQN, eval_episodes=2)
    assert res["actions"] == "greedy" and res["eps"] == 0.05
    model = DQN.load(out / "model.zip", device="cpu")
    teacher = load_teacher(out / "model.zip")
    obs = rollout_obs()
    with torch.no_grad():
        q = model.q_net(model.policy.obs_to_tensor(obs)[0])
    torch.testing.assert_close(teacher.q_values(obs), q)
    torch.testing.assert_close(teacher.logits(obs), q)
    torch.testing.assert_close(teacher.value(obs), q.max(-1).values)
    assert [tuple(z.shape) for z in teacher.forward_preacts(obs)] == [(4, 16, 8, 8), (4, 128)]


# -- errors a user can cause -----------------------------------------------------------------------------
def test_missing_and_corrupt_teacher(tmp_path, ppo_dir):
    missing = teacher_dir("ppo", GAME, "expert", 7, root=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"python -m common.zoo train --algo ppo --game MinAtar/Breakout "
                                                r"--seed 7 --kind expert"):
        load_teacher(missing)
    bad = tmp_path / "bad"
    shutil.copytree(ppo_dir, bad)
    (bad / "model.zip").write_bytes(b"not a zip file")
    with pytest.raises(RuntimeError, match=r"corrupt.*delete .*bad and rerun"):
        load_teacher(bad)


def test_body_that_does_not_fit_the_frames(tmp_path):
    with pytest.raises(ValueError, match=r"A3CBody does not fit .*\(4, 10, 10\).*'minatar' for MinAtar"):
        train_teacher("ppo", GAME, 0, "untrained", 0, tmp_path / "out", body="a3c", overrides=TINY_PPO)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.part").exists()


def test_bad_hyperparameter_key_is_named(tmp_path):
    yml = tmp_path / "t.yml"
    yml.write_text("ppo:\n  default: {body: minatar}\n  MinAtar/Breakout: {n_step: 64}\n")
    with pytest.raises(HyperparameterError, match=r"'n_step'.*ppo\.MinAtar/Breakout.*did you mean 'n_steps'"):
        train_teacher("ppo", GAME, 0, "expert", 100, tmp_path / "out", hyperparams_path=yml)
    yml.write_text("ppo:\n  default: {policy_kwargs: {bogus_option: 1}}\n")
    with pytest.raises(HyperparameterError, match=r"bogus_option"):
        train_teacher("ppo", GAME, 0, "expert", 100, tmp_path / "out", hyperparams_path=yml)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.part").exists()


# -- atomic output and checkpoint resume -------------------------------------------------------------------
class Crash(BaseCallback):
    """Simulates a killed job: raise once `at` steps are done."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def _on_step(self):
        if self.num_timesteps >= self.at:
            raise KeyboardInterrupt("killed")
        return True


def test_crash_leaves_no_teacher_and_rerun_resumes(tmp_path, capfd):
    out = tmp_path / "t"
    kw = dict(overrides=TINY_PPO, eval_episodes=1, checkpoint_every=256)
    with pytest.raises(KeyboardInterrupt):
        train_teacher("ppo", GAME, 0, "expert", 1024, out, callback=Crash(600), **kw)
    assert not out.exists() and (tmp_path / "t.part" / "checkpoint.zip").exists()
    assert PPO.load(tmp_path / "t.part" / "checkpoint.zip").num_timesteps == 512
    train_teacher("ppo", GAME, 0, "expert", 1024, out, **kw)
    assert "resuming from checkpoint at step 512" in capfd.readouterr().err
    assert not (tmp_path / "t.part").exists() and not (out / "checkpoint.zip").exists()
    assert json.loads((out / "config.json").read_text())["num_timesteps"] == 1024
    steps = np.loadtxt(out / "curve.csv", delimiter=",", skiprows=1, ndmin=2)[:, 0]
    assert (np.diff(steps) >= 0).all()  # rows past the checkpoint were dropped before resuming


def test_a_teacher_is_scored_like_a_student_by_the_one_evaluator(tmp_path, ppo_dir):
    """`python -m common.evaluation --policy <teacher dir>` plays the teacher's own policy logits under the students'
    protocol: the same scores as evaluating TeacherPolicy directly, for the directory and for its model.zip."""
    from common import evaluation
    from common.zoo import TeacherPolicy, is_teacher_path

    assert is_teacher_path(ppo_dir) and is_teacher_path(ppo_dir / "model.zip")
    assert not is_teacher_path(tmp_path) and not is_teacher_path(tmp_path / "model.pt")
    teacher = load_teacher(ppo_dir)
    obs = torch.from_numpy(rollout_obs())
    assert torch.equal(TeacherPolicy(teacher)(obs).logits, teacher.logits(obs))
    proto = {"episodes": 4, "num_envs": 2, "repeat_action_probability": 0.1}
    direct = evaluation.evaluate(TeacherPolicy(teacher), GAME, evaluation.EvalProtocol.from_dict(proto), 5)
    for policy in (ppo_dir, ppo_dir / "model.zip"):
        out = tmp_path / f"{policy.name}.json"
        evaluation.main(["--policy", str(policy), "--game", GAME, "--seed", "5", "--out", str(out),
                         "--protocol", json.dumps(proto)])
        res = json.loads(out.read_text())
        assert res["episodes"] == 4 and res["scores"] == direct["scores"]
        assert res["protocol"]["repeat_action_probability"] == 0.1


def test_minatar_teachers_train_under_minatar_sticky_actions():
    """Every MinAtar teacher trains (and the zoo scores it) with MinAtar's sticky actions 0.1, the protocol the
    minatar tier's students train and are scored under; Atari teachers keep the era protocol (no sticky actions)."""
    from dataclasses import asdict

    from common.envs import AtariProtocol
    from common.zoo import resolve_hyperparams

    for algo in ("ppo", "a2c", "dqn"):
        mini = resolve_hyperparams(algo, "MinAtar/Asterix")
        assert asdict(AtariProtocol.from_dict(mini.get("protocol")))["repeat_action_probability"] == 0.1
        atari = resolve_hyperparams(algo, "Pong")
        assert asdict(AtariProtocol.from_dict(atari.get("protocol")))["repeat_action_probability"] == 0.0


def test_minatar_a2c_teacher_uses_the_students_a2c_recipe():
    """MinAtar SB3 A2C teachers train with the minatar tier students' A2C recipe (config/teachers.yml a2c.minatar;
    with SB3's RMSprop at a constant 7e-4 and value loss 0.25 they were no experts under sticky actions,
    docs/minatar_baselines.md): Adam (eps 1e-5), 7e-4 decayed linearly to 0 (3.5e-4 half way), and the same
    rollout, entropy, value-loss, clipping and discount settings as config/minatar.yaml's knowledge_flow.a2c."""
    from pathlib import Path

    import yaml

    from common.zoo import resolve_hyperparams

    hp = resolve_hyperparams("a2c", "MinAtar/Asterix")
    model = make_model("a2c", hp, SB3VecEnv(make_vec_env("MinAtar/Asterix", int(hp["n_envs"]))), seed=0, device="cpu")
    opt = model.policy.optimizer
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["eps"] == 1e-5
    assert model.lr_schedule(1.0) == pytest.approx(7e-4) and model.lr_schedule(0.5) == pytest.approx(3.5e-4)
    student = yaml.safe_load(open(Path(__file__).parents[1] / "config" / "minatar.yaml"))["knowledge_flow"]["a2c"]
    assert student["optimizer"] == "adam" and student["lr_decay"] and student["lr"] == pytest.approx(7e-4)
    assert (model.n_envs, model.n_steps) == (student["num_envs"], student["n_steps"])
    assert (model.ent_coef, model.vf_coef, model.max_grad_norm) == (student["ent_coef"], student["vf_coef"],
                                                                    student["max_grad_norm"])
    assert (model.gamma, model.gae_lambda) == (student["gamma"], student["gae_lambda"])
