"""The protocol wrappers: raw score vs clipped reward, life-loss terminals, names, MinAtar."""

import numpy as np
import pytest

from common.envs import AtariProtocol, ale_game_id, make_vec_env


def test_game_names():
    assert ale_game_id("MsPacman") == "ms_pacman"
    assert ale_game_id("BeamRider") == "beam_rider"
    assert ale_game_id("KungFuMaster") == "kung_fu_master"
    with pytest.raises(ValueError, match="Did you mean Pong"):
        ale_game_id("Pongg")
    with pytest.raises(ValueError, match="unknown MinAtar game"):
        make_vec_env("MinAtar/Pong", 1)


def test_protocol_unknown_key():
    with pytest.raises(KeyError, match="did you mean 'noop_max'"):
        AtariProtocol.from_dict({"noop_maxx": 3})


def _play(game, protocol, steps, seed=0):
    env = make_vec_env(game, 2, protocol)
    env.reset(seed)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        out.append(env.step(rng.integers(0, env.n_actions, 2)))
    return env, out


def test_atari_shapes_and_clipping():
    env, steps = _play("Breakout", {}, 400)
    assert env.obs_shape == (4, 84, 84) and env.n_actions == 4
    assert steps[0].obs.dtype == np.uint8
    r = np.concatenate([s.reward for s in steps])
    assert set(np.unique(r)) <= {0.0, 1.0}  # sign-clipped training reward


def test_raw_score_is_reported_and_life_loss_is_terminal():
    # Breakout: 5 lives; a whole game has 5 life-loss terminals (4 mid-game + game over) but ONE episode.
    env, steps = _play("Breakout", {"clip_rewards": True, "episodic_life": True}, 3000)
    games = [e for s in steps for e in s.episodes if e[0] == 0]
    assert games, "random Breakout games end within 3000 steps"
    n_term_env0 = sum(bool(s.terminal[0]) for s in steps)
    n_over_env0 = sum(bool(s.game_over[0]) for s in steps)
    assert n_over_env0 == len(games) and n_term_env0 >= 4 * n_over_env0
    # without episodic_life only game over is terminal
    env2, steps2 = _play("Breakout", {"episodic_life": False}, 3000)
    assert all((s.terminal == s.game_over).all() for s in steps2 if s.truncated.sum() == 0)


def test_raw_score_unclipped_on_a_game_with_large_rewards():
    # Seaquest rewards are 20 per kill: the episode score must be the raw sum, the training reward clipped.
    env, steps = _play("Seaquest", {}, 2500, seed=1)
    raw = [e[1] for s in steps for e in s.episodes]
    clipped = np.concatenate([s.reward for s in steps])
    assert raw and max(raw) >= 20 and max(raw) % 20 == 0
    assert clipped.max() <= 1.0


def test_minatar_vec():
    env, steps = _play("MinAtar/Breakout", {}, 300)
    assert env.obs_shape == (4, 10, 10) and env.n_actions == 3
    assert steps[0].obs.max() <= 1
    assert any(s.episodes for s in steps)


def test_same_seed_same_frames():
    _, a = _play("Pong", {}, 50, seed=5)
    _, b = _play("Pong", {}, 50, seed=5)
    assert all(np.array_equal(x.obs, y.obs) for x, y in zip(a, b))
