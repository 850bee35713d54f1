"""Vectorised environments with the era-faithful Atari protocol (docs/reference_notes.md §5), plus MinAtar.

Every learner and evaluator in this repository steps a :class:`VecEnv`. It hands out three separate
signals per step, so that no algorithm can mix them up:

* ``reward``: the *training* reward (sign-clipped when the protocol says so);
* ``terminal``: the *bootstrap* terminal (game over, or a lost life when ``episodic_life``);
* ``episodes``: completed *whole games* with their raw, unclipped score (what every table reports).

Backends
--------
``atari``: ale-py's C++ ``AtariVectorEnv`` (frameskip 4 with max-pool, 84x84 grey, frame stack,
no-op starts, 108k-frame cap, no sticky actions). It is the fastest option that keeps the protocol:
see ``scripts/bench_envs.py`` and ``results/benchmarks.md``. It runs with raw rewards and without its
own life-loss handling; clipping and life-loss terminals are derived here from ``info["lives"]`` so that
the raw game score stays visible.

``minatar``: the MinAtar suite (10x10xC boolean frames), a fast analogue for smoke tests. Game names
are written ``MinAtar/Breakout``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

import numpy as np

from common.checks import arg, check_fields, fail

MINATAR_PREFIX = "MinAtar/"
SCREEN_HEIGHT, SCREEN_WIDTH = 210, 160   # the Atari 2600 screen ale-py renders
MINATAR_GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")


@dataclass
class AtariProtocol:
    """The environment protocol a paper pins in its config (docs/reference_notes.md §5)."""

    frameskip: int = arg(4, ">= 1")
    """agent acts every `frameskip` frames; the action is repeated, the last two frames max-pooled"""
    noop_max: int = arg(30, ">= 0")
    """up to this many random no-ops at the start of each game"""
    max_frames: int = arg(108_000, ">= 1")
    """episode cap in emulator frames (30 minutes of play)"""
    repeat_action_probability: float = arg(0.0, "[0, 1]")
    """sticky actions; 0 for the era-faithful protocol (ALE/*-v5 defaults to 0.25)"""
    full_action_space: bool = False
    """all 18 Atari actions instead of the game's minimal set (H-PR uses the full set)"""
    frame_stack: int = arg(4, ">= 1")
    """frames stacked into one observation (MinAtar ignores this: its frames carry motion channels)"""
    size: int = arg(84, ">= 1")
    """observation side in pixels (grey, resized)"""
    fire_reset: bool = True
    """press FIRE after reset in games that need it (OpenAI-baselines convention)"""
    clip_rewards: bool = True
    """training reward is sign(r); the reported score is always raw"""
    episodic_life: bool = True
    """a lost life is a bootstrap terminal for training; the game itself continues"""
    crop_rows: list | None = None
    """[top, bottom]: keep screen rows top..bottom-1 of the 210-row frame, then resize to size x size (via
    80x80, as universe-starter-agent's 42x42 preprocessing, cA3C); None = ale-py's full-frame resize"""

    @classmethod
    def from_dict(cls, d: dict | None) -> "AtariProtocol":
        p = dataclass_from_dict(cls, d or {}, where="protocol")
        if p.crop_rows is not None:
            c = p.crop_rows
            if not (isinstance(c, (list, tuple)) and len(c) == 2 and 0 <= c[0] < c[1] <= SCREEN_HEIGHT):
                fail("protocol", "crop_rows", c, f"[top, bottom] with 0 <= top < bottom <= {SCREEN_HEIGHT}",
                     "give the screen rows to keep (cA3C: [34, 194]), or drop crop_rows for the full frame")
            p.crop_rows = [int(c[0]), int(c[1])]
        return p


def frame_hw(game: str, protocol: "AtariProtocol | dict | None" = None) -> tuple[int, int]:
    """(height, width) of the frames make_vec_env hands out for `game` under `protocol`, without building an env
    (MinAtar: 10x10; Atari: size x size): what a net must fit (common.nets.check_net_fits)."""
    if game.startswith(MINATAR_PREFIX):
        return (10, 10)
    size = (protocol if isinstance(protocol, AtariProtocol) else AtariProtocol.from_dict(protocol)).size
    return (size, size)


def dataclass_from_dict(cls, d: dict, where: str):
    """Build dataclass `cls` from `d`, failing with a message that names any unknown key."""
    names = {f.name for f in cls.__dataclass_fields__.values()}
    unknown = sorted(set(d) - names)
    if unknown:
        hints = [f"'{k}'" + (f" (did you mean '{m[0]}'?)" if (m := difflib.get_close_matches(k, names, 1)) else "")
                 for k in unknown]
        raise KeyError(f"unknown key(s) in {where}: {', '.join(hints)}. Valid keys: {', '.join(sorted(names))}")
    types = {"float": (int, float), "int": (int,), "bool": (bool,), "str": (str,)}
    for f in cls.__dataclass_fields__.values():
        ok = types.get(f.type if isinstance(f.type, str) else getattr(f.type, "__name__", ""))
        v = d.get(f.name)
        if ok and f.name in d and (not isinstance(v, ok) or (f.type != "bool" and isinstance(v, bool))):
            raise ValueError(f"{where}: '{f.name}' must be of type {f.type}, got {v!r} ({type(v).__name__}); "
                             "write numbers without quotes (YAML reads 1e-5 as text: write 1.0e-5)")
    obj = cls(**d)
    check_fields(obj, where)  # the ranges and choices the fields declare (common.checks)
    return obj


def ale_game_id(game: str) -> str:
    """'MsPacman' -> 'ms_pacman', validated against the ROMs ale-py ships; a clear error otherwise."""
    import ale_py.roms

    known = ale_py.roms.get_all_rom_ids()
    rom = re.sub(r"(?<!^)(?=[A-Z])", "_", game.replace("NoFrameskip-v4", "").replace("ALE/", "").split("-v")[0]).lower()
    if game.lower() in known:
        rom = game.lower()
    if rom not in known:
        camel = {"".join(p.capitalize() for p in r.split("_")): r for r in known}
        close = difflib.get_close_matches(game, list(camel), n=3)
        raise ValueError(
            f"unknown Atari game '{game}': ale-py {ale_py.__version__} ships no ROM '{rom}'. "
            + (f"Did you mean {', '.join(close)}? " if close else "")
            + "Write games in CamelCase as in the papers (Pong, MsPacman, BeamRider)."
        )
    return rom


@dataclass
class Step:
    """One vectorised step (arrays of length num_envs)."""

    obs: np.ndarray
    reward: np.ndarray
    """training reward (clipped if the protocol says so), float32"""
    terminal: np.ndarray
    """bootstrap terminal: game over, or a lost life under episodic_life"""
    truncated: np.ndarray
    """episode cut by the frame cap: bootstrap from `final_obs`"""
    final_obs: np.ndarray | None
    """observation before the automatic reset where `truncated` (else None)"""
    game_over: np.ndarray | None = None
    """the env was reset this step (game over or frame cap): a new episode starts at `obs`"""
    episodes: list = field(default_factory=list)
    """completed whole games: (env index, raw score, agent steps)"""


def block_seeds(seed, num_envs: int) -> list[tuple[int, int]]:
    """`reset`'s seed argument as (seed, envs) blocks: an int seeds all envs as one block; a list of K seeds seeds
    K equal blocks (the runs of a multi-run learner), each exactly as a vector env of num_envs / K envs reset with
    that seed would be."""
    seeds = [int(seed)] if np.isscalar(seed) else [int(s) for s in seed]
    if num_envs % len(seeds):
        raise ValueError(f"{len(seeds)} seed blocks do not divide {num_envs} envs")
    return [(s, num_envs // len(seeds)) for s in seeds]


class VecEnv:
    """Common interface: `reset(seed) -> obs` (an int, or one seed per equal block of envs), `step(actions) -> Step`,
    and `step` in two halves, `send(actions)` then `recv() -> Step`: an env that steps in threads of its own
    (ale-py's) runs between the two, so the caller can compute meanwhile; the others step in `recv`."""

    num_envs: int
    obs_shape: tuple
    n_actions: int
    game: str
    _sent = None

    def step(self, actions: np.ndarray) -> Step:
        self.send(actions)
        return self.recv()

    def send(self, actions: np.ndarray) -> None:
        self._sent = np.asarray(actions)

    def recv(self) -> Step:
        actions, self._sent = self._sent, None
        if actions is None:
            raise RuntimeError("recv() without a send(actions) before it")
        return self._step(actions)

    def _init_accounting(self):
        self._ret = np.zeros(self.num_envs, dtype=np.float64)
        self._len = np.zeros(self.num_envs, dtype=np.int64)

    def _account(self, raw_reward, game_over) -> list:
        self._ret += raw_reward
        self._len += 1
        done = []
        for i in np.flatnonzero(game_over):
            done.append((int(i), float(self._ret[i]), int(self._len[i])))
            self._ret[i] = 0.0
            self._len[i] = 0
        return done

    def close(self):
        pass


class AtariVec(VecEnv):
    """ale-py's C++ vector env under the protocol above; same-step autoreset."""

    def __init__(self, game: str, num_envs: int, protocol: AtariProtocol | None = None, num_threads: int = 1):
        from ale_py.vector_env import AtariVectorEnv

        self.protocol = p = protocol or AtariProtocol()
        self.game = game
        self.num_envs = num_envs
        crop = p.crop_rows is not None  # then ale-py hands out the native screen and _crop resizes
        self._env = AtariVectorEnv(
            ale_game_id(game), num_envs,
            num_threads=num_threads,
            max_num_frames_per_episode=p.max_frames,
            repeat_action_probability=p.repeat_action_probability,
            full_action_space=p.full_action_space,
            img_height=SCREEN_HEIGHT if crop else p.size, img_width=SCREEN_WIDTH if crop else p.size,
            grayscale=True,
            stack_num=p.frame_stack, frameskip=p.frameskip, maxpool=True,
            noop_max=p.noop_max, use_fire_reset=p.fire_reset,
            episodic_life=False, life_loss_info=False, reward_clipping=False,
            autoreset_mode="SameStep",
        )
        self.obs_shape = ((p.frame_stack, p.size, p.size) if crop
                          else tuple(self._env.single_observation_space.shape))
        self.n_actions = int(self._env.single_action_space.n)
        self._lives = np.zeros(num_envs, dtype=np.int64)
        self._init_accounting()

    def reset(self, seed) -> np.ndarray:
        seeds = np.concatenate([np.arange(s, s + n) for s, n in block_seeds(seed, self.num_envs)])
        obs, info = self._env.reset(seed=seeds)
        self._lives = info["lives"].astype(np.int64)
        self._init_accounting()
        return self._crop(obs)

    def _crop(self, obs: np.ndarray | None) -> np.ndarray | None:
        """crop_rows preprocessing (universe-starter-agent's _process_frame42 on a grey frame): keep rows
        top..bottom-1, resize to 80x80, then to size x size (cv2's default bilinear); uint8 like ale-py's."""
        if obs is None or self.protocol.crop_rows is None:
            return obs
        import cv2

        top, bottom = self.protocol.crop_rows
        n, k = obs.shape[:2]
        out = np.empty((n, k, self.protocol.size, self.protocol.size), dtype=np.uint8)
        for i in range(n):
            for j in range(k):
                f = cv2.resize(obs[i, j, top:bottom], (80, 80))
                out[i, j] = cv2.resize(f, (self.protocol.size, self.protocol.size))
        return out

    def send(self, actions: np.ndarray) -> None:
        self._env.send(np.asarray(actions, dtype=np.int64))  # returns at once: ale-py's threads step the games

    def recv(self) -> Step:
        obs, raw, term, trunc, info = self._env.recv()
        raw = raw.astype(np.float64)
        lives = info["lives"].astype(np.int64)
        game_over = term | trunc
        terminal = term.copy()
        if self.protocol.episodic_life:
            # a life lost mid-game (not the automatic reset, where lives jump back up)
            terminal |= (lives < self._lives) & ~game_over
        self._lives = lives
        reward = np.sign(raw) if self.protocol.clip_rewards else raw
        final_obs = self._crop(info["final_obs"]) if trunc.any() and "final_obs" in info else None
        return Step(self._crop(obs), reward.astype(np.float32), terminal, trunc & ~term, final_obs, game_over,
                    self._account(raw, game_over))

    def close(self):
        self._env.close()


class MinAtarVec(VecEnv):
    """MinAtar games stepped in a Python loop; observations (C, 10, 10) uint8 in {0, 1}."""

    def __init__(self, game: str, num_envs: int, protocol: AtariProtocol | None = None, num_threads: int = 1):
        from minatar import Environment

        self.protocol = p = protocol or AtariProtocol()
        name = game[len(MINATAR_PREFIX):] if game.startswith(MINATAR_PREFIX) else game
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
        if name not in MINATAR_GAMES:
            raise ValueError(f"unknown MinAtar game '{game}'; known: "
                             + ", ".join(MINATAR_PREFIX + g.title().replace("_", "") for g in MINATAR_GAMES))
        self.game = game
        self.num_envs = num_envs
        self._envs = [Environment(name, sticky_action_prob=p.repeat_action_probability) for _ in range(num_envs)]
        self._actions = self._envs[0].minimal_action_set() if not p.full_action_space else list(range(6))
        self.n_actions = len(self._actions)
        c = self._envs[0].state_shape()[2]
        self.obs_shape = (c, 10, 10)
        self._steps = np.zeros(num_envs, dtype=np.int64)
        self._init_accounting()

    def _obs(self) -> np.ndarray:
        return np.stack([e.state() for e in self._envs]).transpose(0, 3, 1, 2).astype(np.uint8)

    def reset(self, seed) -> np.ndarray:
        rng = [c for s, n in block_seeds(seed, self.num_envs) for c in np.random.SeedSequence(s).spawn(n)]
        for e, s in zip(self._envs, rng):
            e.seed(int(s.generate_state(1)[0]))
            e.reset()
        self._steps[:] = 0
        self._init_accounting()
        return self._obs()

    def _step(self, actions: np.ndarray) -> Step:
        n = self.num_envs
        raw = np.zeros(n)
        term = np.zeros(n, dtype=bool)
        trunc = np.zeros(n, dtype=bool)
        final = None
        for i, (e, a) in enumerate(zip(self._envs, actions)):
            r, t = e.act(self._actions[int(a)])
            raw[i], term[i] = r, t
        self._steps += 1
        trunc = (self._steps >= self.protocol.max_frames // self.protocol.frameskip) & ~term
        game_over = term | trunc
        if trunc.any():
            final = self._obs()
        for i in np.flatnonzero(game_over):
            self._envs[i].reset()
            self._steps[i] = 0
        reward = np.sign(raw) if self.protocol.clip_rewards else raw
        return Step(self._obs(), reward.astype(np.float32), term, trunc, final, game_over,
                    self._account(raw, game_over))


def make_vec_env(game: str, num_envs: int, protocol: AtariProtocol | dict | None = None,
                 num_threads: int = 1) -> VecEnv:
    """The one place that turns a game name into a vector env (Atari, or MinAtar/<Game>)."""
    if isinstance(protocol, dict) or protocol is None:
        protocol = AtariProtocol.from_dict(protocol)
    cls = MinAtarVec if game.startswith(MINATAR_PREFIX) else AtariVec
    return cls(game, num_envs, protocol, num_threads=num_threads)
