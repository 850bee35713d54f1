"""common/stats.py against hand-computed values: IQM, top-k with ties, seeded sweeps, bootstrap CIs, the all-seeds
view (per-seed values and mean [min, max] below 5 seeds, IQM [95% CI] from 5), curves."""

import itertools

import numpy as np
import pandas as pd
import pytest

from scipy import stats as sps

from common.stats import (MIN_SEEDS_IQM, curve_to_grid, iqm, iqm_ci, iqm_ci_single, sample_hparams, seed_stats,
                          summarise, top_k, top_k_mean)

KF_GRID = {"lambda1": [0.05, 0.1, 0.5], "lambda2": [0.001, 0.01, 0.05]}


def test_iqm_by_hand():
    assert iqm(np.arange(1, 9)) == 4.5  # drop 1,2 and 7,8 -> mean(3,4,5,6)
    assert iqm(np.arange(1, 11)) == 5.5  # floor(2.5)=2 cut each end -> mean(3..8)
    assert iqm([1, 2, 3, 100]) == 2.5  # the outlier is trimmed
    assert iqm(np.array([[1, 2], [3, 100]])) == 2.5  # all values pooled, like rliable's aggregate_iqm


def test_sample_hparams_deterministic_and_order_free():
    a = sample_hparams(7, KF_GRID)
    assert a == sample_hparams(7, KF_GRID)
    assert a == sample_hparams(7, dict(reversed(list(KF_GRID.items()))))
    assert sample_hparams(7, {"lambda1": KF_GRID["lambda1"]})["lambda1"] == a["lambda1"]  # other keys don't matter
    assert a["lambda1"] in KF_GRID["lambda1"] and a["lambda2"] in KF_GRID["lambda2"]
    with pytest.raises(ValueError, match="lambda3"):
        sample_hparams(0, {"lambda3": []})


def test_sample_hparams_uniform_and_independent():
    draws = pd.DataFrame([sample_hparams(s, KF_GRID) for s in range(3000)])
    for name, values in KF_GRID.items():
        freq = draws[name].value_counts(normalize=True)
        assert set(freq.index) == set(values)
        assert np.allclose(freq.to_numpy(), 1 / 3, atol=0.035)  # sd of a frequency is 0.0086 here
    joint = draws.value_counts(normalize=True)
    assert len(joint) == 9 and np.allclose(joint.to_numpy(), 1 / 9, atol=0.025)  # keys drawn independently


def _runs():
    return pd.DataFrame({
        "method": ["kf"] * 5 + ["kf"] * 4,
        "game": ["Pong"] * 5 + ["Breakout"] * 4,
        "seed": [0, 1, 2, 3, 4, 0, 1, 2, 3],
        "score": [5.0, 9.0, 9.0, 1.0, 7.0, 9.0, 5.0, 9.0, np.nan],
    })


def test_top_k_ties_and_groups():
    df = _runs()
    best = top_k(df, 2)
    assert best[best.game == "Pong"].seed.tolist() == [1, 2]
    assert best[best.game == "Breakout"].seed.tolist() == [0, 2]  # 9 (seed 0), 9 (seed 2); NaN never picked
    pong3 = top_k(df, 3).query("game == 'Pong'")
    assert pong3.seed.tolist() == [1, 2, 4]
    tie = pd.DataFrame({"method": "m", "game": "g", "seed": [3, 0, 2, 1], "score": [9.0, 9.0, 9.0, 1.0]})
    assert top_k(tie, 2).seed.tolist() == [0, 2]  # tie at the cut: lower seeds win
    shuffled = df.sample(frac=1, random_state=1)
    pd.testing.assert_frame_equal(top_k(shuffled, 3), top_k(df, 3))  # a pure function of the table


def test_top_k_mean_by_hand():
    m = top_k_mean(_runs(), 3).set_index("game")
    assert m.loc["Pong", "topk_mean"] == pytest.approx(25 / 3)  # 9, 9, 7
    assert m.loc["Pong", "topk_std"] == pytest.approx(np.sqrt(4 / 3))  # ((2/3)^2*2 + (4/3)^2) / 2
    assert m.loc["Breakout", "topk_n"] == 3 and m.loc["Breakout", "topk_mean"] == pytest.approx(23 / 3)


def test_iqm_ci_refuses_fewer_than_five_runs():
    assert MIN_SEEDS_IQM == 5
    for x in ([3.0], [1.0, 2.0], [1.0, 2.0, 6.0], [1.0, 2.0, 6.0, 10.0]):
        with pytest.raises(ValueError, match=r"at least 5 runs.*mean \[min, max\]"):
            iqm_ci_single(x)
    with pytest.raises(ValueError, match=r"sizes \[5, 4\]"):  # every task (stratum) needs 5
        iqm_ci({"a": np.zeros(5), "b": np.ones(4)})


def test_iqm_ci_five_runs_by_hand():
    x = [10.0, 2.0, 30.0, 1.0, 6.0]
    # sorted 1, 2, 6, 10, 30; trim floor(0.25 * 5) = 1 value at each end -> mean(2, 6, 10) = 6
    assert iqm(x) == 6.0 == sps.trim_mean(sorted(x), 0.25)
    # exact bootstrap distribution: all 5^5 equally likely resamples; its 2.5% / 97.5% percentiles are
    # 4/3 (e.g. {1, 1, 1, 2, 2} -> mean(1, 1, 2)) and 70/3 (e.g. {6, 10, 30, 30, 30} -> mean(10, 30, 30))
    a = np.array(x)
    exact = np.percentile([iqm(a[list(i)]) for i in itertools.product(range(5), repeat=5)], [2.5, 97.5])
    np.testing.assert_allclose(exact, [4 / 3, 70 / 3])
    p, lo, hi = iqm_ci_single(x, reps=2000, seed=0)  # rliable's 2,000 resamples under seed 0 give the same
    assert p == 6.0 and lo == pytest.approx(4 / 3) and hi == pytest.approx(70 / 3)


def test_iqm_ci_is_stratified():
    # each resample keeps 10 runs of each task: 10 zeros + 10 hundreds -> IQM 50, always
    assert iqm_ci({"a": np.zeros(10), "b": np.full(10, 100.0)}) == (50.0, 50.0, 50.0)
    # unequal runs: 5 zeros + 10 hundreds; trim floor(15 / 4) = 3 each end -> mean(0, 0, 100 x7) = 700/9, always
    p, lo, hi = iqm_ci({"a": np.zeros(5), "b": np.full(10, 100.0)}, reps=200)
    assert p == lo == hi == pytest.approx(700 / 9)


def test_iqm_ci_contains_point_shrinks_and_is_seeded():
    x = np.random.default_rng(0).normal(10.0, 2.0, size=100)
    before = np.random.get_state()[1].copy()
    p5, lo5, hi5 = iqm_ci_single(x[:5], reps=1000)
    p25, lo25, hi25 = iqm_ci_single(x[:25], reps=1000)
    p100, lo100, hi100 = iqm_ci_single(x, reps=1000)
    assert lo5 <= p5 <= hi5 and lo25 <= p25 <= hi25 and lo100 <= p100 <= hi100
    assert hi5 - lo5 > hi25 - lo25 > hi100 - lo100 and hi100 - lo100 < 0.6 * (hi5 - lo5)  # shrinks with runs
    assert iqm_ci_single(x[:5], reps=1000) == (p5, lo5, hi5)  # same seed, same interval
    assert iqm_ci_single(x[:25], reps=1000, seed=1) != (p25, lo25, hi25)
    assert (np.random.get_state()[1] == before).all()  # the global RNG is left as it was
    with pytest.raises(ValueError, match="NaN"):
        iqm_ci_single([1.0, 2.0, 3.0, 4.0, np.nan])


def test_seed_stats_below_five_seeds_has_no_iqm():
    s = seed_stats([1.0, 2.0, 6.0])
    assert (s["n_seeds"], s["mean"], s["min"], s["max"], s["median"]) == (3, 3.0, 1.0, 6.0, 2.0)
    assert s["per_seed"] == (1.0, 2.0, 6.0)  # seed order, as given
    assert np.isnan(s["iqm"]) and np.isnan(s["iqm_low"]) and np.isnan(s["iqm_high"])
    assert seed_stats([4.0, np.nan])["per_seed"] == (4.0,)  # a failed run is dropped
    assert seed_stats([])["n_seeds"] == 0 and np.isnan(seed_stats([])["mean"])
    five = seed_stats([10.0, 2.0, 30.0, 1.0, 6.0])
    assert five["mean"] == 9.8 and five["iqm"] == 6.0
    assert (five["iqm_low"], five["iqm_high"]) == pytest.approx((4 / 3, 70 / 3))


def test_summarise_by_hand():
    df = pd.DataFrame({"method": "kf", "game": "Pong", "seed": range(9), "score": [*range(1, 9), np.nan]})
    s = summarise(df, k=3, reps=300).iloc[0]
    assert (s.method, s.game, s.n_seeds) == ("kf", "Pong", 8)  # the NaN (failed) run is not counted
    assert s.topk_mean == 7.0 and s.topk_std == 1.0  # 8, 7, 6
    assert s.iqm == 4.5 and s["mean"] == 4.5 and s["median"] == 4.5  # IQM: drop 1, 2 and 7, 8 -> mean(3..6)
    assert s.iqm_low <= 4.5 <= s.iqm_high
    assert (s["min"], s["max"], s.per_seed) == (1.0, 8.0, tuple(range(1, 9)))
    assert list(summarise(_runs(), k=2, reps=100).game) == ["Breakout", "Pong"]


def test_summarise_below_five_seeds_by_hand():
    # seeds out of order in the frame: per_seed follows the seed column (seed 0: 1, seed 1: 2, seed 2: 6)
    df = pd.DataFrame({"method": "kf", "game": "Pong", "seed": [2, 0, 1], "score": [6.0, 1.0, 2.0]})
    s = summarise(df, k=2).iloc[0]
    assert s.n_seeds == 3 and s.topk_mean == 4.0  # best 2 of 3: 6, 2
    assert (s["mean"], s["min"], s["max"], s.per_seed) == (3.0, 1.0, 6.0, (1.0, 2.0, 6.0))
    assert np.isnan(s.iqm) and np.isnan(s.iqm_low) and np.isnan(s.iqm_high)  # no IQM, no interval
    both = summarise(_runs(), k=2, reps=200).set_index("game")  # Pong 5 seeds, Breakout 3 (one NaN)
    assert np.isfinite(both.loc["Pong", "iqm"]) and np.isnan(both.loc["Breakout", "iqm"])
    assert both.loc["Pong", "iqm"] == 7.0  # sorted 1, 5, 7, 9, 9 -> mean(5, 7, 9)
    assert both.loc["Breakout", "per_seed"] == (9.0, 5.0, 9.0)


def test_curve_to_grid_by_hand():
    curve = pd.DataFrame({"env_steps": [40, 10, 20, 20], "frames": 0, "wall_time": 0.0,
                          "episode_return": [10.0, 1.0, 2.0, 3.0], "episode_length": 1})
    grid = [0, 5, 10, 19, 20, 30, 40, 100]
    got = curve_to_grid(curve, grid, window=2)
    want = [np.nan, np.nan, 1.0, 1.0, 2.5, 2.5, 6.5, 6.5]  # mean of the last 2 episodes at or before each step
    np.testing.assert_allclose(got, want)
    np.testing.assert_allclose(curve_to_grid(curve, grid, window=100)[-1], 4.0)  # all 4 episodes
