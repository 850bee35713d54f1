"""The teacher zoo: stable-baselines3 teachers trained on our environments and shared by all papers.

Teachers are plain SB3 models (``model.zip``, loadable with ``PPO.load``/``A2C.load``/``DQN.load`` by any
SB3 user who can import this module, since the zip names our features extractor classes), trained from
zoo-style YAML (rl-baselines3-zoo ``hyperparams/*.yml``; see ``config/teachers.yml``) on *exactly* the
observations our students see: :class:`SB3VecEnv` exposes a :class:`common.envs.VecEnv` to SB3, so the
preprocessing, the training reward (clipped) and the bootstrap terminals (life loss) are the students' own.

A teacher directory holds ``model.zip``, ``config.json`` (resolved hyperparameters, protocol, versions),
``eval.json`` (raw game score over whole games) and ``curve.csv`` (game score per completed game). It is
built in ``<out>.part`` and renamed onto ``<out>`` at the end, so a killed job never leaves a half-written
teacher. Long runs checkpoint to ``<out>.part/checkpoint.zip``; a rerun resumes from it with
``Algo.load`` + ``learn(reset_num_timesteps=False)``. That resume is *approximate* (unlike common/a2c.py's
exact one): the envs restart fresh games, RNG streams differ, and DQN's replay buffer is not saved (it
refills from the resumed policy); step counters and schedules continue exactly.

:func:`load_teacher` returns a frozen :class:`Teacher` (an ``nn.Module``) that runs the SB3 policy's own
modules on our uint8 observations and exposes the per-layer pre-activations Knowledge Flow links to.

CLI::

    python -m common.zoo train --algo ppo --game MinAtar/Breakout --seed 0 --kind expert --steps 20000 \\
        --out teachers/ppo/MinAtar-Breakout/expert/seed0 [--hyperparams config/teachers.yml] [--threads 1]
    python -m common.zoo eval --path teachers/ppo/MinAtar-Breakout/expert/seed0
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import json
import os
import platform
import re
import shutil
import sys
import time
import zipfile
from collections import deque
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import yaml
from gymnasium import spaces
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecEnv as _SB3VecEnvBase

from common.a2c import CURVE_FIELDS
from common.checks import Range, check_value
from common.envs import MINATAR_PREFIX, AtariProtocol, make_vec_env
from common.evaluation import play_games, quotas
from common.io import read_json, seed_everything, write_json
from common.nets import A3CNet, LayeredNet, MinAtarNet, NatureNet, NetOut
from common.runlog import CsvLog, Progress

ALGOS = {"ppo": PPO, "a2c": A2C, "dqn": DQN}
KINDS = ("expert", "non_expert", "untrained")
DEFAULT_HYPERPARAMS = "config/teachers.yml"
OUR_KEYS = {"n_envs", "body", "policy", "protocol", "n_timesteps"}  # YAML keys that are not SB3 kwargs
SET_BY_US = {"env", "seed", "device", "verbose", "_init_setup_model"}  # SB3 kwargs train_teacher owns
EVAL_SEED_OFFSET = 10_000  # evaluation games use env seed `seed + this`, a stream apart from training
DQN_EVAL_EPS = 0.05  # ε-greedy evaluation of DQN teachers (Nature DQN; H-PR's evaluation protocol)
# class names allowed inside policy_kwargs (the zoo evals a "dict(...)" string; we resolve names instead)
CLASSES = {"RMSpropTFLike": RMSpropTFLike, "RMSprop": torch.optim.RMSprop, "Adam": torch.optim.Adam,
           "ReLU": nn.ReLU, "Tanh": nn.Tanh, "ELU": nn.ELU}


# valid ranges of the numeric hyperparameters (common.checks syntax); a "lin_<x>" schedule is checked at its start x
HP_RANGES = {"n_envs": ">= 1", "n_steps": ">= 1", "batch_size": ">= 2", "n_epochs": ">= 1", "learning_rate": "> 0",
             "gamma": "[0, 1]", "gae_lambda": "[0, 1]", "ent_coef": ">= 0", "vf_coef": ">= 0", "clip_range": "> 0",
             "max_grad_norm": "> 0", "buffer_size": ">= 1", "learning_starts": ">= 0", "train_freq": ">= 1",
             "gradient_steps": ">= 1", "target_update_interval": ">= 1", "exploration_fraction": "[0, 1]",
             "exploration_initial_eps": "[0, 1]", "exploration_final_eps": "[0, 1]", "tau": "(0, 1]"}


class HyperparameterError(ValueError):
    """A bad teacher hyperparameter: the message names the key, the file and the block."""


def check_teacher_args(steps: int, eval_episodes: int, threads: int, checkpoint_every: int,
                       eval_eps: float | None) -> None:
    """Ranges of train_teacher's own arguments (common.checks), before any work."""
    for name, value, valid in (("steps", steps, ">= 0"), ("eval_episodes", eval_episodes, ">= 1"),
                               ("threads", threads, ">= 1"), ("checkpoint_every", checkpoint_every, ">= 0"),
                               ("eval_eps", eval_eps, "[0, 1]")):
        check_value("teacher arguments", name, value, Range.parse(valid))


def _check_hp_ranges(hp: dict, origin: dict, path) -> None:
    """HP_RANGES, and PPO's minibatches: batch_size must divide the rollout n_steps x n_envs (else SB3 trains on a
    truncated last minibatch)."""
    for k, valid in HP_RANGES.items():
        v = hp.get(k)
        if isinstance(v, str):
            v = getattr(_value(v), "start", _value(v))  # '1e-4' -> 1e-4; a lin_<x> schedule starts at x
        if v is None or isinstance(v, (list, tuple, dict)):  # train_freq may be [4, "step"]
            continue
        try:
            check_value(f"{path}: block {origin[k]}", k, v, Range.parse(valid))
        except ValueError as e:
            raise HyperparameterError(str(e)) from None
    if "batch_size" in hp and "n_steps" in hp and int(hp["n_steps"]) * int(hp["n_envs"]) % int(hp["batch_size"]):
        rollout = int(hp["n_steps"]) * int(hp["n_envs"])
        raise HyperparameterError(
            f"{path}: batch_size must divide n_steps x n_envs = {rollout} (blocks {origin['batch_size']}, "
            f"{origin['n_steps']}), got {hp['batch_size']}; set batch_size to a divisor of {rollout} (e.g. "
            f"{max(d for d in range(1, min(rollout, int(hp['batch_size'])) + 1) if rollout % d == 0)})")


def is_minatar(game: str) -> bool:
    """MinAtar games are written MinAtar/<Game>."""
    return game.startswith(MINATAR_PREFIX)


def game_slug(game: str) -> str:
    """'MinAtar/Breakout' -> 'MinAtar-Breakout' (a path component)."""
    return game.replace("/", "-")


def game_from_slug(game: str) -> str:
    """'MinAtar-Breakout' (as a path wildcard) -> 'MinAtar/Breakout'; other names unchanged."""
    return MINATAR_PREFIX + game[len("MinAtar-"):] if game.startswith("MinAtar-") else game


def teacher_dir(algo: str, game: str, kind: str, seed: int, root: str | os.PathLike = "teachers",
                tier: str | None = None) -> Path:
    """The zoo layout, the one place a teacher's directory is named: <root>/<tier>/<algo>/<game slug>/<kind>/seed<seed>
    (no <tier> level when `tier` is None). Every paper's plan names its teachers here, so one teacher serves every
    paper of a tier that asks for it (the pipeline's rule ``teacher``, common/teachers.smk, builds it)."""
    return Path(root, *([tier] if tier else []), algo, game_slug(game), kind, f"seed{seed}")


# ---------------------------------------------------------------------------------------------------
# SB3 view of our vector env
# ---------------------------------------------------------------------------------------------------
class SB3VecEnv(_SB3VecEnvBase):
    """Exposes a common.envs.VecEnv to SB3: same observations, clipped training reward, life-loss dones.

    ``dones = terminal | truncated``; done envs get ``info["terminal_observation"]`` (the pre-reset
    observation where the frame cap truncated a game; otherwise the current observation, which for a lost
    life is the continuing game) and ``info["TimeLimit.truncated"]`` (SB3 bootstraps only those).
    Completed whole games add ``info["episode"] = {"r": raw score, "l": length, "t": seconds}``, the
    convention of SB3's ``Monitor``, so SB3's logger and ep_info_buffer see raw game scores.
    """

    def __init__(self, venv):
        self.venv = venv
        high = 1 if is_minatar(venv.game) else 255  # MinAtar frames are 0/1: not an image space for SB3
        super().__init__(venv.num_envs, spaces.Box(0, high, tuple(venv.obs_shape), np.uint8),
                         spaces.Discrete(venv.n_actions))
        self._actions = None
        self._t0 = time.time()

    def reset(self):
        seed = self._seeds[0] if self._seeds[0] is not None else int(np.random.randint(2**31 - 1))
        self._reset_seeds()
        self._reset_options()
        return self.venv.reset(seed).copy()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        s = self.venv.step(self._actions)
        obs = s.obs.copy()  # SB3 keeps the previous obs around: never hand out a buffer the env reuses
        dones = s.terminal | s.truncated
        infos = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(dones):
            trunc = bool(s.truncated[i])
            infos[i]["terminal_observation"] = (s.final_obs[i] if trunc and s.final_obs is not None else obs[i]).copy()
            infos[i]["TimeLimit.truncated"] = trunc
        for i, score, length in s.episodes:
            infos[i]["episode"] = {"r": score, "l": length, "t": round(time.time() - self._t0, 6)}
        return obs, s.reward, dones, infos

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name, indices=None):
        value = None if attr_name == "render_mode" else getattr(self.venv, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name, value, indices=None) -> None:
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name, *method_args, indices=None, **method_kwargs):
        result = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False for _ in self._get_indices(indices)]


# ---------------------------------------------------------------------------------------------------
# Bodies: SB3 features extractors holding the layers of common.nets' nets
# ---------------------------------------------------------------------------------------------------
class LayeredBody(BaseFeaturesExtractor):
    """A common.nets LayeredNet's conv/FC layers as an SB3 features extractor (its heads are dropped).

    No input scaling here: SB3's ``preprocess_obs`` divides Atari frames by 255 (normalize_images) and
    leaves MinAtar's 0/1 frames alone, which is what ``LayeredNet.input`` does for our own nets.
    """

    net_class: type[LayeredNet] = LayeredNet
    preact = LayeredNet.preact  # the very code our nets run: flatten before the first Linear
    activate = LayeredNet.activate

    def __init__(self, observation_space: spaces.Box):
        try:
            net = self.net_class(observation_space.shape, n_actions=1)
            with torch.no_grad():
                net(torch.zeros(1, *observation_space.shape))
        except (RuntimeError, ValueError) as e:  # torch's shape error, or common.nets.NetMisfitError
            raise ValueError(f"{type(self).__name__} does not fit observations of shape {observation_space.shape} "
                             f"({e}); use body 'minatar' for MinAtar games, 'a3c' or 'nature' for Atari") from None
        super().__init__(observation_space, net.hidden_dim)
        self.layers, self.layer_names, self.act_fn = net.layers, net.layer_names, net.act_fn

    def forward_preacts(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Pre-activations z_i of every layer, in `layer_names` order (x already preprocessed)."""
        zs = []
        for i in range(len(self.layers)):
            zs.append(self.preact(i, x))
            x = self.activate(zs[-1])
        return zs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(len(self.layers)):
            x = self.activate(self.preact(i, x))
        return x


class A3CBody(LayeredBody):
    """A3C feed-forward body (conv 16x8x8/4, conv 32x4x4/2, FC 256); features_dim 256."""

    net_class = A3CNet


class NatureBody(LayeredBody):
    """Nature DQN body (conv 32x8x8/4, 64x4x4/2, 64x3x3/1, FC 512); features_dim 512."""

    net_class = NatureNet


class MinAtarBody(LayeredBody):
    """MinAtar body (conv 16x3x3/1, FC 128); features_dim 128."""

    net_class = MinAtarNet


BODIES = {"a3c": A3CBody, "nature": NatureBody, "minatar": MinAtarBody}


# ---------------------------------------------------------------------------------------------------
# Hyperparameters from zoo-style YAML
# ---------------------------------------------------------------------------------------------------
def resolve_hyperparams(algo: str, game: str, path: str | os.PathLike = DEFAULT_HYPERPARAMS,
                        overrides: dict | None = None, body: str | None = None) -> dict:
    """Merge <algo>.default <- <algo>.atari|minatar <- <algo>.<game> <- overrides; validate every key."""
    if algo not in ALGOS:
        raise HyperparameterError(f"unknown algo '{algo}'; choose one of {sorted(ALGOS)}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"teacher hyperparameter file {path} not found (the repository ships "
                                f"{DEFAULT_HYPERPARAMS}; pass --hyperparams)")
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc.get(algo), dict):
        raise HyperparameterError(f"{path} has no '{algo}' block (found: {sorted(doc)})")
    hp, origin = {}, {}
    sources = [(f"{algo}.{name}", doc[algo].get(name)) for name in ("default", "minatar" if is_minatar(game)
                                                                     else "atari", game)]
    for where, block in sources + [("overrides", overrides), ("body argument", {"body": body} if body else None)]:
        if block is None:
            continue
        if not isinstance(block, dict):
            raise HyperparameterError(f"{path}: block {where} must be a mapping, got {type(block).__name__}")
        for k, v in block.items():
            hp[k], origin[k] = v, where
    valid = (set(inspect.signature(ALGOS[algo].__init__).parameters) - {"self"} - SET_BY_US) | OUR_KEYS
    for k in hp:
        if k in SET_BY_US:
            raise HyperparameterError(f"{path}: key '{k}' (block {origin[k]}) is set by train_teacher, remove it")
        if k not in valid:
            close = difflib.get_close_matches(k, valid, 1)
            raise HyperparameterError(
                f"{path}: unknown hyperparameter '{k}' for {algo} (block {origin[k]})"
                + (f"; did you mean '{close[0]}'?" if close else "") + f" Valid keys: {', '.join(sorted(valid))}")
    hp.setdefault("n_envs", 1)
    origin.setdefault("n_envs", "default")
    _check_hp_ranges(hp, origin, path)
    hp.setdefault("policy", "CnnPolicy")
    hp.setdefault("body", "minatar" if is_minatar(game) else "nature")
    if hp["body"] not in BODIES:
        raise HyperparameterError(f"{path}: body '{hp['body']}' (block {origin.get('body')}) is not one of "
                                  f"{sorted(BODIES)}")
    try:
        AtariProtocol.from_dict(hp.get("protocol"))
    except KeyError as e:
        raise HyperparameterError(f"{path}: block {origin['protocol']}: {e.args[0]}") from None
    return hp


def _value(v):
    """Zoo value conventions: 'lin_<x>' -> linear schedule x -> 0; '1e-4' (a YAML 1.1 string) -> float."""
    if isinstance(v, str):
        if v.startswith("lin_"):
            return LinearSchedule(float(v[4:]), 0.0, 1.0)  # value = x * progress_remaining, as the zoo's
        try:
            return float(v)
        except ValueError:
            return v
    return v


def _policy_kwargs(pk, path) -> dict:
    """Resolve class names (optimizer_class, activation_fn) in a policy_kwargs mapping."""
    if pk is None:
        return {}
    if not isinstance(pk, dict):
        raise HyperparameterError(f"{path}: write policy_kwargs as a YAML mapping, not {pk!r}")
    out = {}
    for k, v in pk.items():
        if k.endswith(("_class", "_fn")) and isinstance(v, str):
            if v not in CLASSES:
                raise HyperparameterError(f"{path}: policy_kwargs.{k}: unknown class '{v}'; known: {sorted(CLASSES)}")
            v = CLASSES[v]
        out[k] = v
    return out


def make_model(algo: str, hp: dict, env: SB3VecEnv, seed: int = 0, device: str = "auto",
               hyperparams_path: str | os.PathLike = DEFAULT_HYPERPARAMS):
    """A fresh SB3 model from resolved hyperparameters (body as features extractor, heads on its output)."""
    kwargs = {k: _value(v) for k, v in hp.items() if k not in OUR_KEYS and k != "policy_kwargs"}
    # net_arch=[]: policy/value (or Q) heads sit directly on the body, as in the papers' nets (SB3 would
    # otherwise add 64-64 MLPs for a custom extractor); normalize_images: /255 for Atari frames only.
    pk = {"features_extractor_class": BODIES[hp["body"]], "net_arch": [],
          "normalize_images": not is_minatar(env.venv.game),
          **_policy_kwargs(hp.get("policy_kwargs"), hyperparams_path)}
    try:
        return ALGOS[algo](hp["policy"], env, seed=seed, device=device, verbose=0, policy_kwargs=pk, **kwargs)
    except TypeError as e:
        m = re.search(r"argument '(\w+)'", str(e))
        raise HyperparameterError(f"{hyperparams_path}: bad hyperparameter {repr(m.group(1)) if m else ''} for "
                                  f"{algo} ({e}); fix or remove it") from e


def versions() -> dict:
    """Library versions recorded next to every teacher."""
    import ale_py
    import gymnasium
    import stable_baselines3

    v = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
         "stable_baselines3": stable_baselines3.__version__, "gymnasium": gymnasium.__version__,
         "ale_py": ale_py.__version__}
    try:
        from importlib.metadata import version
        v["minatar"] = version("minatar")
    except Exception:  # noqa: BLE001 - optional
        pass
    return v


# ---------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------
class ZooCallback(BaseCallback):
    """Learning curve rows, ~30 s progress lines and CheckpointCallback-style saves into the .part dir."""

    def __init__(self, part: Path, label: str, total: int, frames_per_step: int, checkpoint_every: int,
                 interval: float, resume_step: int | None = None):
        """`resume_step`: the step of the checkpoint a run resumes from (curve rows after it are cut; None: a new
        run)."""
        super().__init__()
        self.part, self.frames_per_step, self.every = part, frames_per_step, checkpoint_every
        self.progress = Progress(total, label, interval)
        self.scores: deque = deque(maxlen=100)
        # an SB3 checkpoint knows its step, not the curve's rows: keep the rows up to its step
        self.curve = CsvLog(part / "curve.csv", CURVE_FIELDS,
                            None if resume_step is None else lambda row: int(row[0]) <= resume_step)
        self.wall0 = float(self.curve.last[2]) if self.curve.last else 0.0  # the last kept wall time

    def _on_training_start(self) -> None:
        self.t0 = time.time()
        self.last_ckpt = self.num_timesteps

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            if (ep := info.get("episode")) is not None:
                self.scores.append(ep["r"])
                self.curve.write([self.num_timesteps, self.num_timesteps * self.frames_per_step,
                                  round(self.wall0 + time.time() - self.t0, 3), ep["r"], ep["l"]])
        self.progress.update(self.num_timesteps, list(self.scores))
        if self.every > 0 and self.num_timesteps - self.last_ckpt >= self.every:
            self.checkpoint()
        return True

    def checkpoint(self) -> None:
        """Save model (not the replay buffer) to checkpoint.zip atomically, curve flushed first."""
        self.curve.flush()
        tmp = self.part / "checkpoint.tmp.zip"
        self.model.save(tmp)
        os.replace(tmp, self.part / "checkpoint.zip")
        self.last_ckpt = self.num_timesteps

    def _on_training_end(self) -> None:
        self.progress.update(self.num_timesteps, list(self.scores), force=True)


def train_teacher(algo: str, game: str, seed: int, kind: str, steps: int, out_dir: str | os.PathLike,
                  hyperparams_path: str | os.PathLike = DEFAULT_HYPERPARAMS, body: str | None = None,
                  device: str = "auto", eval_episodes: int = 10, *, overrides: dict | None = None,
                  threads: int = 1, checkpoint_every: int = 250_000, eval_eps: float | None = None,
                  progress_interval: float = 30.0, callback: BaseCallback | None = None) -> dict:
    """Train (or, for kind='untrained', only initialise) an SB3 teacher; write it atomically to out_dir.

    Returns the eval.json dict. `overrides` beat the YAML (same keys); `callback` is an extra SB3 callback.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown teacher kind '{kind}'; choose one of {KINDS}")
    check_teacher_args(steps, eval_episodes, threads, checkpoint_every, eval_eps)
    game = game_from_slug(game)
    hp = resolve_hyperparams(algo, game, hyperparams_path, overrides, body)
    torch.set_num_threads(threads)
    seed_everything(seed)
    out = Path(out_dir)
    part = out.with_name(out.name + ".part")
    budget = 0 if kind == "untrained" else int(steps)
    protocol = asdict(AtariProtocol.from_dict(hp.get("protocol")))
    config = {"algo": algo, "game": game, "seed": seed, "kind": kind, "steps": budget, "body": hp["body"],
              "hyperparams": hp, "hyperparams_path": str(hyperparams_path), "protocol": protocol,
              "versions": versions()}
    ckpt = part / "checkpoint.zip"
    config_json = json.loads(json.dumps(config, default=str))
    resume = ckpt.exists() and (part / "config.json").exists() and read_json(part / "config.json") == config_json

    env = SB3VecEnv(make_vec_env(game, int(hp["n_envs"]), protocol))
    try:
        label = f"{algo} {game} {kind} seed{seed}"
        if resume:
            model = ALGOS[algo].load(ckpt, env=env, device=device)
            model.set_random_seed(seed + model.num_timesteps)  # fresh streams for the resumed segment
            if isinstance(model, DQN):  # the replay buffer is not checkpointed: refill before learning again
                model.learning_starts = model.num_timesteps + int(float(hp.get("learning_starts", 100)))
            print(f"[{label}] resuming from checkpoint at step {model.num_timesteps:,} (approximate resume: "
                  "fresh games, no replay buffer)", file=sys.stderr, flush=True)
        else:
            model = make_model(algo, hp, env, seed, device, hyperparams_path)  # bad keys fail before any I/O
            if part.exists():
                shutil.rmtree(part)  # a stale or incompatible partial run: restart cleanly
        part.mkdir(parents=True, exist_ok=True)
        write_json(part / "config.json", config_json)
        if budget > model.num_timesteps:
            cb = ZooCallback(part, label, budget, 1 if is_minatar(game) else protocol["frameskip"],
                             checkpoint_every, progress_interval, model.num_timesteps if resume else None)
            try:
                model.learn(budget - model.num_timesteps, callback=[cb] + ([callback] if callback else []),
                            reset_num_timesteps=not resume)
            finally:
                cb.curve.close()  # also when killed mid-run (SB3 then skips _on_training_end)
        model.save(part / "model.zip")
        result = evaluate(model, game, protocol, eval_episodes, seed + EVAL_SEED_OFFSET,
                          DQN_EVAL_EPS if (eval_eps is None and algo == "dqn") else (eval_eps or 0.0))
        write_json(part / "eval.json", result)
        write_json(part / "config.json", {**config_json, "num_timesteps": int(model.num_timesteps)})
    finally:
        env.close()
    ckpt.unlink(missing_ok=True)
    if out.exists():
        shutil.rmtree(out)
    os.replace(part, out)
    return result


# ---------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------
def evaluate(model, game: str, protocol: dict, episodes: int, seed: int, eps: float = 0.0,
             num_envs: int | None = None) -> dict:
    """Raw game score of `episodes` whole games (no clipping, no life-loss ends, up to 30 no-ops), played by
    common.evaluation.play_games under the teacher's own env protocol.

    PPO/A2C sample from the policy (SB3's ``predict``); DQN acts greedily, ε-greedy with `eps` per env. Each env
    plays a fixed quota of games (SB3's evaluate_policy: the remainder to the last envs) so short games are not
    favoured."""
    eval_protocol = {**protocol, "clip_rewards": False, "episodic_life": False}
    n = num_envs or max(1, min(episodes, 8))
    rng = np.random.default_rng(seed)
    sampled = not isinstance(model, DQN)

    def act(obs, starts, n_actions):
        actions, _ = model.predict(obs, deterministic=not sampled)
        if eps > 0:
            rand = rng.random(n) < eps
            actions[rand] = rng.integers(n_actions, size=int(rand.sum()))
        return actions

    played = play_games(game, eval_protocol, n, act, seed, quota=quotas(episodes, n, extra="last"))
    scores = played["scores"]
    return {"mean": float(np.mean(scores)) if scores else float("nan"),
            "std": float(np.std(scores)) if scores else float("nan"),
            "episodes": len(scores), "scores": scores, "lengths": played["lengths"], "eps": eps,
            "actions": "sampled" if sampled else "greedy", "seed": seed, "protocol": eval_protocol,
            "num_timesteps": int(model.num_timesteps)}


# ---------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------
class Teacher(nn.Module):
    """A frozen SB3 teacher on our uint8 observations [N, C, H, W], running the SB3 policy's own modules.

    Inputs may be float (e.g. generated images) on the same scale as the env's frames (0..255, MinAtar 0/1);
    gradients flow to the input, never to the teacher's parameters.
    """

    def __init__(self, model, meta: dict | None = None):
        super().__init__()
        self.sb3_model = model
        self.meta = dict(meta or {})
        self.is_dqn = isinstance(model, DQN)
        self.policy = model.policy
        self.body = model.policy.q_net.features_extractor if self.is_dqn else model.policy.pi_features_extractor
        self.layer_names = tuple(self.body.layer_names)
        self.n_actions = int(model.action_space.n)
        self.obs_shape = tuple(model.observation_space.shape)
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True):
        """Always eval mode: a teacher inside a student's module tree stays frozen."""
        self.policy.set_training_mode(False)
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _input(self, obs) -> torch.Tensor:
        """SB3's own preprocessing: float, /255 for Atari (normalize_images), unchanged for MinAtar."""
        obs = torch.as_tensor(obs, device=self.device)
        return preprocess_obs(obs, self.policy.observation_space, normalize_images=self.policy.normalize_images)

    def q_values(self, obs) -> torch.Tensor:
        """Q(s, ·) [N, A] (DQN teachers only): exactly ``model.q_net(obs)``."""
        if not self.is_dqn:
            raise TypeError(f"q_values: teacher is {self.meta.get('algo', 'actor-critic')}, not DQN; use logits()")
        return self.policy.q_net.q_net(self.body(self._input(obs)))

    def logits(self, obs) -> torch.Tensor:
        """Policy logits [N, A] as SB3's Categorical holds them (normalised: log π); DQN: Q-values."""
        if self.is_dqn:
            return self.q_values(obs)
        p = self.policy
        z = p.action_net(p.mlp_extractor.forward_actor(self.body(self._input(obs))))
        return z - z.logsumexp(-1, keepdim=True)  # what torch.distributions.Categorical(logits=z).logits is

    def value(self, obs) -> torch.Tensor:
        """V(s) [N] for actor-critic teachers; max_a Q(s, a) for DQN."""
        if self.is_dqn:
            return self.q_values(obs).max(-1).values
        p = self.policy
        return p.value_net(p.mlp_extractor.forward_critic(p.vf_features_extractor(self._input(obs)))).squeeze(-1)

    def forward_preacts(self, obs) -> list[torch.Tensor]:
        """Per-layer pre-activations of the body, in `layer_names` order."""
        return self.body.forward_preacts(self._input(obs))

    def forward(self, obs) -> torch.Tensor:
        return self.logits(obs)

    def as_net(self) -> LayeredNet:
        """The teacher as one of our own nets with the same weights (a trainable copy, for fine-tuning).

        Actor-critic teachers only: body layers -> ``layers``, ``action_net`` -> ``policy``,
        ``value_net`` -> ``value`` (our zoo builds them with ``net_arch=[]``, heads on the body). The copy
        computes the same action distribution as the teacher (tests/test_zoo.py checks it).
        """
        if self.is_dqn:
            raise TypeError("as_net: a DQN teacher has no policy/value heads to fine-tune from; fine-tune from "
                            "a PPO or A2C teacher (config teachers.algo)")
        p = self.policy
        if any(True for _ in p.mlp_extractor.parameters()):
            raise ValueError("as_net: this teacher has hidden MLP layers between body and heads (net_arch != []); "
                             "only zoo teachers built by common.zoo.make_model can be converted")
        net = self.body.net_class(self.obs_shape, self.n_actions)
        sd = {f"layers.{k}": v for k, v in self.body.layers.state_dict().items()}
        sd.update({f"policy.{k}": v for k, v in p.action_net.state_dict().items()})
        sd.update({f"value.{k}": v for k, v in p.value_net.state_dict().items()})
        net.load_state_dict({k: v.detach().clone().cpu() for k, v in sd.items()})
        return net


class TeacherPolicy(nn.Module):
    """A teacher as common.evaluation plays it (a net returning NetOut): logits = the teacher's policy logits log pi
    (actor-critic) or Q_T(s, .) (DQN, played greedily by the protocols that score DQN teachers)."""

    recurrent = False

    def __init__(self, teacher: Teacher):
        super().__init__()
        self.teacher = teacher

    def forward(self, obs, state=None, starts=None) -> NetOut:
        z = self.teacher.logits(obs)
        return NetOut(z, torch.zeros(z.shape[0], device=z.device))

    def initial_state(self, n: int, device=None):
        return None


def is_teacher_path(path: str | os.PathLike) -> bool:
    """Whether `path` names a zoo teacher (its directory, or its model.zip) rather than a model.pt of ours."""
    path = Path(path)
    return path.suffix == ".zip" or (path.is_dir() and (path / "model.zip").exists())

def _train_command(d: Path, meta: dict) -> str:
    """The command that (re)creates teacher dir `d`, from its config or from the zoo path layout."""
    m = re.search(r"(ppo|a2c|dqn)/([^/]+)/(expert|non_expert|untrained)/seed(\d+)$", d.as_posix())
    algo, game, kind, seed = (meta.get("algo"), meta.get("game"), meta.get("kind"), meta.get("seed"))
    if m and not algo:
        algo, slug, kind, seed = m.groups()
        game = game_from_slug(slug)
    cmd = (f"python -m common.zoo train --algo {algo or '<algo>'} --game {game or '<game>'} --seed "
           f"{seed if seed is not None else '<seed>'} --kind {kind or '<kind>'} --steps "
           f"{meta.get('steps', '<budget>')} --out {d}")
    return (f"`{cmd}`, or let Snakemake's rule `teacher` (common/teachers.smk) build it: "
            f"`snakemake --cores 1 {d}/model.zip`")


def _guess_algo(zip_path: Path) -> str:
    """PPO, A2C or DQN from the attributes SB3 stored in the zip (used when config.json is absent)."""
    with zipfile.ZipFile(zip_path) as z:
        data = json.loads(z.read("data"))
    return "ppo" if "clip_range" in data else "dqn" if "target_update_interval" in data else "a2c"


def load_teacher(path: str | os.PathLike, device: str = "cpu") -> Teacher:
    """Load a teacher directory (or its model.zip) as a frozen Teacher; clear errors if missing/corrupt."""
    path = Path(path)
    zip_path = path if path.suffix == ".zip" else path / "model.zip"
    d = zip_path.parent
    meta = read_json(d / "config.json") if (d / "config.json").exists() else {}
    if not zip_path.exists():
        partial = Path(str(d) + ".part")
        raise FileNotFoundError(
            f"teacher {zip_path} not found: train it with {_train_command(d, meta)}"
            + (f". A partial run exists at {partial}: rerunning resumes it." if partial.exists() else "."))
    try:
        algo = meta.get("algo") or _guess_algo(zip_path)
        model = ALGOS[algo].load(zip_path, device=device)
    except Exception as e:  # noqa: BLE001 - any failure here means the file is unusable
        raise RuntimeError(f"teacher file {zip_path} is corrupt or unreadable ({type(e).__name__}: {e}); "
                           f"delete {d} and rerun {_train_command(d, meta)}") from e
    return Teacher(model, meta).to(device)


# ---------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------
def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m common.zoo", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train (or initialise) one teacher into --out")
    t.add_argument("--algo", required=True, choices=sorted(ALGOS))
    t.add_argument("--game", required=True, help="Atari game in CamelCase (Pong) or MinAtar/<Game> (or MinAtar-<Game>)")
    t.add_argument("--seed", type=int, required=True)
    t.add_argument("--kind", required=True, choices=KINDS)
    t.add_argument("--steps", type=int, required=True, help="agent steps (ignored for --kind untrained)")
    t.add_argument("--out", required=True)
    t.add_argument("--hyperparams", default=DEFAULT_HYPERPARAMS)
    t.add_argument("--body", choices=sorted(BODIES), help="override the YAML's body")
    t.add_argument("--threads", type=int, default=1, help="torch threads (one single-thread job per core packs best)")
    t.add_argument("--device", default="auto")
    t.add_argument("--eval-episodes", type=int, default=10)
    t.add_argument("--eval-eps", type=float, default=None,
                   help=f"ε for evaluation (default: DQN {DQN_EVAL_EPS}, else 0)")
    t.add_argument("--checkpoint-every", type=int, default=250_000)
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a hyperparameter (VALUE parsed as YAML), e.g. --set n_envs=2")
    e = sub.add_parser("eval", help="print a teacher's eval.json")
    e.add_argument("--path", required=True)
    a = ap.parse_args(argv)
    if a.cmd == "train":
        overrides = {}
        for kv in a.set:
            k, sep, v = kv.partition("=")
            if not sep:
                ap.error(f"--set expects KEY=VALUE, got '{kv}'")
            overrides[k] = yaml.safe_load(v)
        res = train_teacher(a.algo, a.game, a.seed, a.kind, a.steps, a.out, a.hyperparams, a.body, a.device,
                            a.eval_episodes, overrides=overrides, threads=a.threads,
                            checkpoint_every=a.checkpoint_every, eval_eps=a.eval_eps)
        print(f"[{a.algo} {a.game} {a.kind} seed{a.seed}] eval: {res['mean']:.2f} ± {res['std']:.2f} over "
              f"{res['episodes']} games -> {a.out}", file=sys.stderr)
    else:
        p = Path(a.path)
        f = p if p.suffix == ".json" else p / "eval.json"
        if not f.exists():
            raise SystemExit(f"{f} not found: train the teacher first ({_train_command(p, {})})")
        print(json.dumps(read_json(f), indent=2))


if __name__ == "__main__":
    main()
