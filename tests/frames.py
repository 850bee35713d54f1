"""A helper the test modules share (not a test module): frames from a few random steps of a game."""

import numpy as np

from common.envs import make_vec_env


def random_step_obs(game: str, n: int, steps: int, seed: int = 1) -> np.ndarray:
    """Observations of `n` envs of `game` after `steps` uniformly random steps (non-trivial frames), uint8."""
    env = make_vec_env(game, n)
    obs = env.reset(seed)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        obs = env.step(rng.integers(env.n_actions, size=n)).obs
    env.close()
    return obs
