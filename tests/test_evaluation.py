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


def test_quotas_give_the_remainder_to_the_first_or_the_last_envs():
    assert evaluation.quotas(10, 8).tolist() == [2, 2, 1, 1, 1, 1, 1, 1]
    assert evaluation.quotas(10, 8, extra="last").tolist() == [(10 + i) // 8 for i in range(8)]  # SB3's, the zoo's
    assert evaluation.quotas(4, 2).tolist() == [2, 2] and evaluation.quotas(1, 3, "last").tolist() == [0, 0, 1]


def test_play_games_counts_quotas_or_a_step_budget(monkeypatch):
    """ScriptedEnv: every env ends a game every 4 steps; constant actions (1, 2) score 4 and 8 a game."""
    monkeypatch.setattr(evaluation, "make_vec_env", lambda game, n, protocol: ScriptedEnv(n))
    seen = []

    def act(obs, starts, n_actions):
        seen.append(starts.tolist())
        return np.array([1, 2])

    # env 0 owes 1 game, env 1 two: 8 steps; env 0's second game (score 4) is past its quota and not counted
    res = evaluation.play_games("x", {}, 2, act, seed=0, quota=[1, 2])
    assert res["scores"] == [4.0, 8.0, 8.0] and res["control_steps"] == 16 and res["lengths"] == [4, 4, 4]
    assert seen[0] == [True, True] and seen[1] == [False, False] and seen[4] == [True, True]
    # step budget: 10 control steps on 2 envs = 5 steps, one game each, every completed game counts
    res = evaluation.play_games("x", {}, 2, act, seed=0, steps=10)
    assert res["scores"] == [4.0, 8.0] and res["control_steps"] == 10


def test_the_zoo_scores_its_teachers_through_play_games(monkeypatch):
    """common.zoo.evaluate: SB3 predict, ε per env, SB3's quotas (remainder to the last env), on the one loop."""
    from common import zoo

    class Model:
        num_timesteps = 0

        def predict(self, obs, deterministic):
            return np.full(len(obs), 2), None

    monkeypatch.setattr(evaluation, "make_vec_env", lambda game, n, protocol: ScriptedEnv(n))
    res = zoo.evaluate(Model(), "x", {}, episodes=3, seed=0, num_envs=2)
    # quotas [1, 2]: env 0's first game, env 1's two (8 points each: action 2 for 4 steps)
    assert res["scores"] == [8.0, 8.0, 8.0] and res["mean"] == 8.0 and res["actions"] == "sampled"
    assert res["protocol"] == {"clip_rewards": False, "episodic_life": False}
