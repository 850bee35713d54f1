"""Evaluate a policy alone under a paper's protocol: raw game score of whole games.

Two modes, each a paper's protocol pinned in config:
* episode mode (Knowledge Flow, Mnih et al. 2015): `episodes` whole games (30), up to 30 no-ops;
  every env plays a fixed quota of games, so short games are not over-represented;
* step-budget mode (H-PR): `steps` control steps in total (100,000) at epsilon 0.05; the score is the
  mean over the games completed within the budget.

Usage: python -m common.evaluation --policy runs/.../model.pt --game Pong --seed 0 --out eval.json
(--policy also takes a zoo teacher's directory, to score it under the students' protocol, or 'random').
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from common.checks import arg, fail
from common.envs import dataclass_from_dict, make_vec_env
from common.io import write_json


@dataclass
class EvalProtocol:
    """A paper's evaluation protocol."""

    episodes: int = arg(30, ">= 0")
    """whole games to play (episode mode)"""
    steps: int = arg(0, ">= 0")
    """control-step budget; > 0 switches to step-budget mode (mean over completed games)"""
    noop_max: int = arg(30, ">= 0")
    """up to this many random no-ops at the start of each game"""
    epsilon: float = arg(0.0, "[0, 1]")
    """probability of a uniformly random action (H-PR: 0.05)"""
    policy: str = arg("sample", choices=("sample", "greedy"))
    """sample from the policy (A3C convention) or act greedily"""
    max_frames: int = arg(108_000, ">= 1")
    """game cap in frames"""
    num_envs: int = arg(8, ">= 1")
    """games played in parallel"""
    repeat_action_probability: float = arg(0.0, "[0, 1]")
    """sticky actions (0: era-faithful)"""
    full_action_space: bool = False
    """all 18 actions (H-PR)"""
    frame_stack: int = arg(4, ">= 1")
    """must match what the policy was trained on"""
    size: int = arg(84, ">= 1")
    """observation side; must match the policy"""
    crop_rows: list | None = None
    """screen rows kept before resizing (common.envs.AtariProtocol.crop_rows); must match the policy"""

    @classmethod
    def from_dict(cls, d: dict | None) -> "EvalProtocol":
        p = dataclass_from_dict(cls, d or {}, where="evaluation protocol")
        if p.steps == 0 and p.episodes < 1:
            fail("evaluation protocol", "episodes", p.episodes, ">= 1 when steps is 0 (episode mode)",
                 "set episodes to 1 or more (default 30), or steps > 0 for a step budget")
        return p


def quotas(episodes: int, n: int, extra: str = "first") -> np.ndarray:
    """Games each of `n` envs plays so that `episodes` whole games are played in all: a fixed quota per env, so short
    games are not over-represented. The remainder goes to the first envs (``extra="first"``, this module's protocol)
    or to the last (``"last"``: SB3's evaluate_policy, as the teacher zoo scores its teachers)."""
    if extra not in ("first", "last"):
        raise ValueError(f"extra must be 'first' or 'last', got {extra!r}")
    i = np.arange(n) if extra == "first" else np.arange(n)[::-1]
    return np.full(n, episodes // n) + (i < episodes % n)


def play_games(game: str, env_protocol: dict, n: int, act, seed: int, quota=None, steps: int = 0) -> dict:
    """The one loop that plays whole games for a score: `n` envs of `game` under `env_protocol` (common.envs;
    reward clipping and life-loss ends are always off: raw game scores of whole games), reset with `seed`.

    Episode mode (`steps` 0): env i plays until it has completed `quota[i]` games; games it completes beyond its
    quota are not counted. Step-budget mode (`steps` > 0): `steps` control steps over all envs; every game completed
    within them counts. ``act(obs, starts, n_actions) -> actions [n]`` chooses each step's actions (exploration
    included) from the observations [n, ...] (numpy) and the envs whose game just started (bool [n]).
    Returns the completed games' scores and lengths (in completion order), control_steps and wall_time."""
    env = make_vec_env(game, n, {**env_protocol, "clip_rewards": False, "episodic_life": False})
    quota = None if steps > 0 else np.asarray(quota)
    scores, lengths, done = [], [], np.zeros(n, dtype=int)
    control_steps = 0
    try:
        obs = env.reset(seed)
        starts = np.ones(n, dtype=bool)
        t0 = time.time()
        while True:
            st = env.step(act(obs, starts, env.n_actions))
            control_steps += n
            for i, ret, length in st.episodes:
                if steps > 0 or done[i] < quota[i]:
                    scores.append(ret)
                    lengths.append(length)
                done[i] += 1
            starts = st.game_over.copy()
            obs = st.obs
            if (steps > 0 and control_steps >= steps) or (steps <= 0 and (done >= quota).all()):
                break
    finally:
        env.close()
    return {"scores": scores, "lengths": lengths, "control_steps": control_steps, "wall_time": time.time() - t0}


@torch.no_grad()
def evaluate(agent: torch.nn.Module | None, game: str, protocol: EvalProtocol, seed: int, device="cpu") -> dict:
    """Play `agent` (a net returning NetOut) under `protocol` (:func:`play_games`); returns scores and summary
    statistics.

    agent=None plays the uniform-random policy (every table's random-policy row): each action uniform over the
    game's actions from its own stream (numpy, seeded by `seed`), under the same starts, caps and scoring."""
    p = protocol
    n = max(1, min(p.num_envs, p.episodes)) if p.steps <= 0 else p.num_envs
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    uniform = np.random.default_rng([seed, 1]) if agent is None else None
    state = None if agent is None else agent.initial_state(n, device)

    def act(obs, starts, n_actions):
        nonlocal state
        if agent is None:
            a = uniform.integers(0, n_actions, n)
        else:
            out = agent(torch.from_numpy(obs).to(device), state, torch.from_numpy(starts).to(device))
            state = out.state
            if p.policy == "greedy":
                a = out.logits.argmax(-1).cpu().numpy()
            else:
                a = torch.multinomial(torch.softmax(out.logits.float().cpu(), -1), 1, generator=gen).squeeze(-1).numpy()
        explore = rng.random(n) < p.epsilon
        return np.where(explore, rng.integers(0, n_actions, n), a)

    played = play_games(game, {
        "noop_max": p.noop_max, "max_frames": p.max_frames, "repeat_action_probability": p.repeat_action_probability,
        "full_action_space": p.full_action_space, "frame_stack": p.frame_stack, "size": p.size,
        "crop_rows": p.crop_rows}, n, act, seed, quota=quotas(p.episodes, n), steps=max(p.steps, 0))
    arr = np.asarray(played["scores"], dtype=float)
    return {"game": game, "seed": seed, "protocol": asdict(p), "scores": arr.tolist(), "lengths": played["lengths"],
            "episodes": len(arr), "mean": float(arr.mean()) if len(arr) else float("nan"),
            "std": float(arr.std()) if len(arr) else float("nan"),
            "median": float(np.median(arr)) if len(arr) else float("nan"),
            "control_steps": played["control_steps"], "wall_time": played["wall_time"]}


def main(argv=None):
    from common.a2c import load_policy
    from common.cli import parse_mapping
    from common.zoo import TeacherPolicy, is_teacher_path, load_teacher

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", required=True, help="policy file written by training (model.pt), a zoo teacher (its "
                    "directory or model.zip: scored under the same protocol as the students), or 'random' for "
                    "the uniform-random policy")
    ap.add_argument("--game", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="eval JSON to write (atomically)")
    ap.add_argument("--protocol", default="{}", help="EvalProtocol fields as YAML/JSON, e.g. '{episodes: 30}'")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    proto = EvalProtocol.from_dict(parse_mapping(a.protocol, '--protocol'))
    if a.policy == "random":
        agent = None
    elif is_teacher_path(a.policy):
        agent = TeacherPolicy(load_teacher(a.policy))
    else:
        agent = load_policy(a.policy)
    res = evaluate(agent, a.game, proto, a.seed)
    res["policy"] = a.policy
    write_json(a.out, res)
    print(f"{a.game}: mean {res['mean']:.1f} ± {res['std']:.1f} over {res['episodes']} games", flush=True)


if __name__ == "__main__":
    from common.cli import run

    run(main)
