"""Evaluate a policy alone under a paper's protocol: raw game score of whole games.

Two modes, each a paper's protocol pinned in config:
* episode mode (Knowledge Flow, Mnih et al. 2015): `episodes` whole games (30), up to 30 no-ops;
  every env plays a fixed quota of games, so short games are not over-represented;
* step-budget mode (H-PR): `steps` control steps in total (100,000) at epsilon 0.05; the score is the
  mean over the games completed within the budget.

Usage: python -m common.evaluation --policy runs/.../model.pt --game Pong --seed 0 --out eval.json
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


@torch.no_grad()
def evaluate(agent: torch.nn.Module | None, game: str, protocol: EvalProtocol, seed: int, device="cpu") -> dict:
    """Play `agent` (a net returning NetOut) under `protocol`; returns scores and summary statistics.

    agent=None plays the uniform-random policy (every table's random-policy row): each action uniform over the
    game's actions from its own stream (numpy, seeded by `seed`), under the same starts, caps and scoring."""
    p = protocol
    n = max(1, min(p.num_envs, p.episodes)) if p.steps <= 0 else p.num_envs
    env = make_vec_env(game, n, {
        "noop_max": p.noop_max, "max_frames": p.max_frames, "repeat_action_probability": p.repeat_action_probability,
        "full_action_space": p.full_action_space, "frame_stack": p.frame_stack, "size": p.size,
        "crop_rows": p.crop_rows, "clip_rewards": False, "episodic_life": False})
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    quota = np.full(n, p.episodes // n) + (np.arange(n) < p.episodes % n)
    scores, lengths, done_count = [], [], np.zeros(n, dtype=int)
    uniform = np.random.default_rng([seed, 1]) if agent is None else None
    obs = torch.from_numpy(env.reset(seed))
    state = None if agent is None else agent.initial_state(n, device)
    starts = torch.ones(n, dtype=torch.bool)
    steps, t0 = 0, time.time()
    while True:
        if agent is None:
            a = uniform.integers(0, env.n_actions, n)
        else:
            out = agent(obs.to(device), state, starts.to(device))
            state = out.state
            if p.policy == "greedy":
                a = out.logits.argmax(-1).cpu().numpy()
            else:
                a = torch.multinomial(torch.softmax(out.logits.float().cpu(), -1), 1, generator=gen).squeeze(-1).numpy()
        explore = rng.random(n) < p.epsilon
        a = np.where(explore, rng.integers(0, env.n_actions, n), a)
        st = env.step(a)
        steps += n
        for i, ret, length in st.episodes:
            if p.steps > 0 or done_count[i] < quota[i]:
                scores.append(ret)
                lengths.append(length)
            done_count[i] += 1
        starts = torch.from_numpy(st.game_over.copy())
        obs = torch.from_numpy(st.obs)
        if (p.steps > 0 and steps >= p.steps) or (p.steps <= 0 and (done_count >= quota).all()):
            break
    env.close()
    arr = np.asarray(scores, dtype=float)
    return {"game": game, "seed": seed, "protocol": asdict(p), "scores": arr.tolist(), "lengths": lengths,
            "episodes": len(arr), "mean": float(arr.mean()) if len(arr) else float("nan"),
            "std": float(arr.std()) if len(arr) else float("nan"),
            "median": float(np.median(arr)) if len(arr) else float("nan"),
            "control_steps": steps, "wall_time": time.time() - t0}


def main(argv=None):
    from common.a2c import load_policy
    from common.cli import parse_mapping

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", required=True, help="policy file written by training (model.pt), or 'random' for "
                    "the uniform-random policy")
    ap.add_argument("--game", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="eval JSON to write (atomically)")
    ap.add_argument("--protocol", default="{}", help="EvalProtocol fields as YAML/JSON, e.g. '{episodes: 30}'")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    proto = EvalProtocol.from_dict(parse_mapping(a.protocol, '--protocol'))
    res = evaluate(None if a.policy == "random" else load_policy(a.policy), a.game, proto, a.seed)
    res["policy"] = a.policy
    write_json(a.out, res)
    print(f"{a.game}: mean {res['mean']:.1f} ± {res['std']:.1f} over {res['episodes']} games", flush=True)


if __name__ == "__main__":
    from common.cli import run

    run(main)
