"""The evaluator's random-policy row (common.evaluation.evaluate with agent=None), on a scripted env."""
from types import SimpleNamespace

import numpy as np

from common import evaluation
from common.evaluation import EvalProtocol


class ScriptedEnv:
    """n envs, 3 actions; every env ends a game every 4 steps with return = the sum of the actions it took."""
    n_actions = 3

    def __init__(self, n):
        self.n, self.t, self.ret, self.actions = n, 0, np.zeros(n), []

    def reset(self, seed):
        return np.zeros((self.n, 1, 2, 2), dtype=np.uint8)

    def step(self, a):
        self.actions.append(np.asarray(a).copy())
        self.ret += a
        self.t += 1
        episodes = []
        if self.t % 4 == 0:
            episodes = [(i, float(self.ret[i]), 4) for i in range(self.n)]
            self.ret[:] = 0
        over = np.full(self.n, self.t % 4 == 0)
        return SimpleNamespace(episodes=episodes, game_over=over, obs=np.zeros((self.n, 1, 2, 2), dtype=np.uint8))

    def close(self):
        pass


def test_random_policy_draws_uniform_actions_from_its_own_seeded_stream(monkeypatch):
    envs = []
    monkeypatch.setattr(evaluation, "make_vec_env", lambda game, n, protocol: envs.append(ScriptedEnv(n)) or envs[-1])
    res = evaluation.evaluate(None, "MinAtar/Breakout", EvalProtocol.from_dict({"episodes": 4, "num_envs": 2}), seed=7)
    # 4 games on 2 envs: 2 games each, 8 steps; the actions are the stream default_rng([7, 1]) draws, 2 per step
    expect = np.random.default_rng([7, 1]).integers(0, 3, (8, 2))
    np.testing.assert_array_equal(np.stack(envs[0].actions), expect)
    # a game's score is the sum of its 4 actions (the scripted reward), in the order the games end
    per_game = [expect[0:4, 0].sum(), expect[0:4, 1].sum(), expect[4:8, 0].sum(), expect[4:8, 1].sum()]
    assert res["scores"] == [float(v) for v in per_game] and res["episodes"] == 4
    assert res["mean"] == float(np.mean(per_game))
    # the same seed replays the same games
    again = evaluation.evaluate(None, "x", EvalProtocol.from_dict({"episodes": 4, "num_envs": 2}), seed=7)
    assert again["scores"] == res["scores"]
    # over many games every one of the game's 3 actions is drawn with probability 1/3
    evaluation.evaluate(None, "x", EvalProtocol.from_dict({"episodes": 2000, "num_envs": 2}), seed=3)
    taken = np.concatenate(envs[-1].actions)
    assert taken.size == 8000
    np.testing.assert_allclose(np.bincount(taken, minlength=3) / taken.size, [1 / 3] * 3, atol=0.02)
