"""Replay memory (common/replay.py): Eqs. 5-8 against hand-worked numbers, the p = 1 and p = n limits,
frame storage (stacking, episode starts, ring wrap-around). Tiny 2x2 frames keep every test fast."""

import numpy as np
import pytest
import torch

from common.replay import ReplayConfig, ReplayMemory, SumTrees, partition_edges, td_error_eq5

TINY = dict(frame_shape=(2, 2), n_actions=3)


def frame(t):
    return np.full((2, 2), t + 1, np.uint8)  # frame of step t holds t+1, so a zero pad is visible


def empirical(mem, draws, rng, batch=2000, beta=1.0):
    counts = {}
    for _ in range(draws // batch):
        idx, _, _ = mem.sample(batch, rng, beta=beta)
        for i, c in zip(*np.unique(idx, return_counts=True)):
            counts[int(i)] = counts.get(int(i), 0) + c
    return {i: c / draws for i, c in counts.items()}


# 8 experiences: (V(s), priority |delta|). V 0.5 -> partition A = [0, 1), V 1.5 -> partition B = [1, 2].
HAND = [(0.5, 0.3), (1.5, 0.05), (1.5, 0.5), (0.5, 0.1), (1.5, 0.4), (0.5, 0.2), (1.5, 0.1), (1.5, 0.2)]


def hand_memory(alpha=1.0):
    mem = ReplayMemory(dict(kind="hpr", partitions=2, partition_capacity=8, frame_stack=1, alpha=alpha),
                       v_range=(0.0, 2.0), **TINY)
    for t, (v, _) in enumerate(HAND):
        mem.add(frame(t), np.zeros(3), value=v)
    mem.update_priorities(np.arange(8), [d for _, d in HAND])
    mem.refresh()  # exact ranks of Eq. 6
    return mem


def test_hpr_sampling_frequencies_eq6_eq7():
    mem = hand_memory(alpha=1.0)
    np.testing.assert_allclose(mem.partition_probs(), [3 / 8, 5 / 8])  # N = (3, 5) in the window
    # A: priorities .3 .1 .2 -> ranks 1 3 2, P_A[k] = (1, 1/2, 1/3) / (11/6) = 6/11, 3/11, 2/11, times 3/8.
    # B: priorities .05 .5 .4 .1 .2 -> ranks 5 1 2 4 3, P_B[k] = (60, 30, 20, 15, 12)/137, times 5/8.
    expected = {0: 18 / 88, 3: 6 / 88, 5: 9 / 88,
                1: 60 / 1096, 2: 300 / 1096, 4: 150 / 1096, 6: 75 / 1096, 7: 100 / 1096}
    idx, P = mem.probabilities()
    assert dict(zip(idx.tolist(), P)) == pytest.approx(expected, abs=1e-12)
    freq = empirical(mem, 200_000, np.random.default_rng(0))
    assert set(freq) == set(expected)
    for i, p in expected.items():
        assert abs(freq[i] - p) < 0.005, (i, freq[i], p)  # 5 sigma at 200k draws


def test_importance_weights_eq8():
    mem = hand_memory(alpha=1.0)
    beta = 0.5
    # w = (1 / (N_j * P_j[k]))^beta before normalisation: N_A = 3, N_B = 5 and P_j[k] from the test above.
    n_p = {0: 18 / 11, 5: 9 / 11, 3: 6 / 11, 2: 300 / 137, 4: 150 / 137, 7: 100 / 137, 6: 75 / 137, 1: 60 / 137}
    rng, checked = np.random.default_rng(1), False
    for _ in range(20):
        idx, _, w = mem.sample(16, rng, beta=beta)
        raw = np.array([(1 / n_p[i]) ** beta for i in idx.tolist()])
        np.testing.assert_allclose(w, raw / raw.max(), rtol=1e-6)
        if 1 in idx.tolist() and 0 in idx.tolist():  # experience 1 has the largest raw weight
            # hand-worked: sqrt((11/18) / (137/60)) = sqrt(0.611111 / 2.283333) = 0.517340
            assert w[idx.tolist().index(0)] == pytest.approx(0.517340, abs=1e-6)
            assert w.max() == 1 and w[idx.tolist().index(1)] == 1
            checked = True
    assert checked


def _fill(mem, n, seed, starts_every=7):
    rng = np.random.default_rng(seed)
    for t in range(n):
        mem.add(frame(t % 250), rng.normal(size=3), episode_start=t % starts_every == 0)


def test_p1_is_rank_based_pr():
    cfg = dict(alpha=0.7, frame_stack=4, rank_refresh_min=10_000)  # re-sorts only when asked
    rank = ReplayMemory(dict(cfg, kind="rank", capacity=64), **TINY)
    hpr = ReplayMemory(dict(cfg, kind="hpr", partitions=1, partition_capacity=64), v_range=(-3, 3), **TINY)
    for mem in (rank, hpr):
        _fill(mem, 100, seed=3)  # wraps the ring of 64
        mem.update_priorities(np.arange(40, 100), np.random.default_rng(4).random(60))
    ir, pr = rank.probabilities()
    ih, ph = hpr.probabilities()
    assert np.array_equal(ir, ih) and np.array_equal(pr, ph)  # identical also between re-sorts
    rank.refresh(), hpr.refresh()
    ir, pr = rank.probabilities()
    assert np.array_equal(pr, hpr.probabilities()[1])
    # Schaul's rank-based P(k) = rank^-alpha / sum, computed independently from the priorities
    prio = np.array([rank.prio[0, rank.pos[i % 64]] for i in ir])
    ranks = np.empty(len(ir))
    ranks[np.argsort(-prio, kind="stable")] = np.arange(1, len(ir) + 1)
    np.testing.assert_allclose(pr, ranks ** -0.7 / (ranks ** -0.7).sum(), rtol=1e-12)
    for seed in range(3):
        a, ba, wa = rank.sample(32, np.random.default_rng(seed), beta=0.6)
        b, bb, wb = hpr.sample(32, np.random.default_rng(seed), beta=0.6)
        assert np.array_equal(a, b) and np.array_equal(wa, wb) and np.array_equal(ba.obs, bb.obs)
        p_k = dict(zip(ir.tolist(), pr))
        raw = np.array([(1 / (len(ir) * p_k[i])) ** 0.6 for i in a.tolist()])  # (1/(N P(k)))^beta
        np.testing.assert_allclose(wa, raw / raw.max(), rtol=1e-5)


def test_single_experience_partitions_are_uniform():
    n = 50
    mem = ReplayMemory(dict(kind="hpr", partitions=n, partition_capacity=1, frame_stack=1),
                       v_range=(0.0, float(n)), **TINY)
    rng = np.random.default_rng(5)
    for t, j in enumerate(rng.permutation(n)):
        mem.add(frame(t), np.zeros(3), value=j + 0.5)
    mem.update_priorities(np.arange(n), rng.random(n))  # priorities are irrelevant with one per partition
    idx, P = mem.probabilities()
    np.testing.assert_allclose(P, 1 / n)
    freq = empirical(mem, 100_000, rng)
    assert len(freq) == n and max(abs(f - 1 / n) for f in freq.values()) < 0.0025  # 5 sigma
    _, _, w = mem.sample(64, rng)
    np.testing.assert_allclose(w, 1.0)


@pytest.mark.parametrize("C, K, L", [(700, 27, 2), (20_000, 28, 3)])
def test_sum_trees_exact(C, K, L):
    """Prefix-sum trees: totals, scalar/batch updates and rebuilds agree; draws follow leaf / total."""
    rng = np.random.default_rng(9)
    a, b = SumTrees(3, C), SumTrees(3, C)
    assert (a.K, a.L) == (K, L) and a.leaves.shape == (3, K ** L)
    w = rng.random((3, C)) * (rng.random((3, C)) < 0.7)  # ~30% zero leaves
    jj, pp = np.divmod(np.arange(3 * C), C)
    for chunk in np.array_split(np.arange(3 * C), 20):
        a.set_many(jj[chunk], pp[chunk], w[jj[chunk], pp[chunk]])
    for j in range(3):
        b.leaves[j, :C] = w[j]
        b.rebuild(j)
    for pos in rng.integers(0, C, 20):  # scalar updates
        w[1, pos] = rng.random()
        a.set(1, pos, w[1, pos])
        b.set(1, pos, w[1, pos])
    np.testing.assert_allclose(a.total, w.sum(1), rtol=1e-12)
    for lv in range(L):
        np.testing.assert_allclose(a.pre[lv], b.pre[lv], rtol=1e-12, atol=1e-9)
    j, pos, new = rng.integers(0, 3, 50), rng.integers(0, C, 50), rng.random(50)
    a.set_many(j, pos, new)
    w[j, pos] = new  # duplicates: last write wins, in both
    np.testing.assert_allclose(a.total, w.sum(1), rtol=1e-12)
    jj = np.repeat(np.arange(3), 100_000)
    got, p = a.sample(jj, rng.random(len(jj)))
    assert (w[jj, got] > 0).all()
    np.testing.assert_allclose(p, w[jj, got] / w.sum(1)[jj], rtol=1e-12)
    bins = np.arange(C) * 70 // C  # frequencies of 70 groups of leaves per tree, 5 sigma
    for t in range(3):
        freq = np.bincount(bins[got[jj == t]], minlength=70) / 100_000
        expect = np.bincount(bins, weights=w[t], minlength=70) / w[t].sum()
        assert np.abs(freq - expect).max() < 5 * np.sqrt(expect.max() / 100_000)


def test_partition_edges_config_and_errors():
    np.testing.assert_allclose(partition_edges(-1.0, 4.0, 5), [-1, 0, 1, 2, 3, 4])
    mem = ReplayMemory(dict(kind="hpr", partitions=5, partition_capacity=4), v_range=(-1.0, 4.0), **TINY)
    assert mem.partition_of([-9, -1, -0.01, 0, 2.5, 4, 99]).tolist() == [0, 0, 0, 1, 3, 4, 4]
    with pytest.raises(ValueError, match="v_range"):
        ReplayMemory(dict(kind="hpr"), **TINY)
    with pytest.raises(KeyError, match="did you mean 'alpha'"):
        ReplayConfig.from_dict({"alpah": 0.5})
    assert [ReplayConfig().beta(f) for f in (0, 0.5, 2)] == [0.5, 0.75, 1.0]  # beta0 -> 1, linear
    mem.add(frame(0), np.zeros(3), value=1.0)
    with pytest.raises(ValueError, match="non-finite"):
        mem.update_priorities([0], [np.nan])


def test_partition_fifo_and_window():
    mem = ReplayMemory(dict(kind="hpr", partitions=2, partition_capacity=2, window=3, frame_stack=1),
                       v_range=(0, 2), **TINY)
    for t, v in enumerate([0.5, 0.5, 1.5, 0.5]):  # third A evicts the first A (partition capacity 2)
        mem.add(frame(t), np.zeros(3), value=v)
    assert sorted(mem.probabilities()[0].tolist()) == [1, 2, 3]
    np.testing.assert_allclose(mem.partition_probs(), [2 / 3, 1 / 3])  # window = steps 1..3: A, B, A
    assert mem.counts.tolist() == [2, 1]


def test_frame_stacking_and_episode_starts():
    for pad, obs6, obs2 in (("zero", [0, 0, 6, 7], [0, 1, 2, 3]), ("first", [6, 6, 6, 7], [1, 1, 2, 3])):
        mem = ReplayMemory(dict(kind="uniform", capacity=8, frame_stack=4, pad=pad), **TINY)
        for t in range(7):
            mem.add(frame(t), np.zeros(3), episode_start=t in (0, 5))
        obs = mem.batch([2, 3, 6]).obs
        assert obs.shape == (3, 4, 2, 2) and obs.dtype == np.uint8
        assert obs[0, :, 0, 0].tolist() == obs2
        assert obs[1, :, 0, 0].tolist() == [1, 2, 3, 4]
        assert obs[2, :, 1, 1].tolist() == obs6
    stacked = np.stack([frame(t) for t in range(4)])  # a stacked obs [k, H, W]: its last frame is stored
    mem.add(stacked, np.zeros(3))
    assert mem.batch([7]).obs[0, -1, 0, 0] == 4


RING8 = {"uniform": dict(kind="uniform", capacity=8), "rank": dict(kind="rank", capacity=8),
         "hpr": dict(kind="hpr", partitions=2, partition_capacity=4)}  # hpr: also each partition's FIFO


@pytest.mark.parametrize("kind", list(RING8))
def test_ring_wraparound_invalidates(kind):
    mem = ReplayMemory(dict(RING8[kind], frame_stack=4), v_range=(0, 2), **TINY)
    for t in range(11):  # frames 3..10 remain; experience t needs frames t-3..t
        mem.add(frame(t), np.zeros(3), episode_start=t == 0, value=0.5 + t % 2)
    assert sorted(mem.probabilities()[0].tolist()) == [6, 7, 8, 9, 10]  # 3, 4, 5 lost frames
    assert mem.batch([10]).obs[0, :, 0, 0].tolist() == [8, 9, 10, 11]
    with pytest.raises(KeyError):
        mem.batch([5])
    idx, batch, _ = mem.sample(500, np.random.default_rng(0))
    assert set(idx.tolist()) == {6, 7, 8, 9, 10}
    assert (batch.obs[:, :, 0, 0] == idx[:, None] + np.arange(-2, 2)).all()
    mem.update_priorities([2, 5, 9], [9.0, 9.0, 0.5])  # 2 and 5 are gone: ignored
    # an episode start keeps an experience valid once the frames before it are overwritten
    mem = ReplayMemory(dict(RING8[kind], frame_stack=4), v_range=(0, 2), **TINY)
    for t in range(11):
        mem.add(frame(t), np.zeros(3), episode_start=t in (0, 5), value=0.5 + t % 2)
    assert sorted(mem.probabilities()[0].tolist()) == [5, 6, 7, 8, 9, 10]
    assert mem.batch([5, 6]).obs[:, :, 0, 0].tolist() == [[0, 0, 0, 6], [0, 0, 6, 7]]


def test_approximate_ranks_stay_within_bound():
    """Between re-sorts every leaf rank is within (changes since the re-sort + 1) of the exact rank."""
    mem = ReplayMemory(dict(kind="rank", capacity=400, alpha=0.7, rank_refresh_min=50,
                            rank_refresh_fraction=0.0), **TINY)
    rng = np.random.default_rng(6)
    _fill(mem, 400, seed=7)
    mem.update_priorities(np.arange(400), rng.random(400))
    mem.refresh()
    for _ in range(30):
        idx, _, _ = mem.sample(8, rng)
        mem.update_priorities(idx, rng.random(8))
        pos = mem.pos[np.arange(400)]
        leaf_rank = np.rint(mem.tree.leaves[0, pos] ** (-1 / 0.7))
        true_rank = np.empty(400)
        true_rank[np.argsort(-mem.prio[0, pos], kind="stable")] = np.arange(1, 401)
        assert np.abs(leaf_rank - true_rank).max() <= mem.changes[0] + 1
    mem.refresh()
    leaf_rank = np.rint(mem.tree.leaves[0, pos] ** (-1 / 0.7))
    true_rank[np.argsort(-mem.prio[0, pos], kind="stable")] = np.arange(1, 401)
    assert np.array_equal(leaf_rank, true_rank)


def test_td_error_eq5_hand_computed():
    # row 0: tau 1, game actions {0, 1}: softmax([1, 2]) = (0.268941, 0.731059) vs softmax([0, 0]) = (.5, .5)
    #        L1 = 2 * 0.231059, / |A_T| = 2 -> 0.231059 (the masked logits 7 and -3 play no part)
    # row 1: tau 0.5: softmax([2, 4]) = (0.119203, 0.880797) -> L1 = 2 * 0.380797, / 2 -> 0.380797
    q_t = np.array([[1.0, 2.0, 7.0], [1.0, 2.0, 7.0]])
    q_s = np.array([[0.0, 0.0, -3.0], [0.0, 0.0, -3.0]])
    mask = np.array([True, True, False])
    expected = [0.2310586, 0.3807971]
    np.testing.assert_allclose(td_error_eq5(q_t[:1], q_s[:1], 1.0, mask), expected[:1], atol=1e-7)
    np.testing.assert_allclose(td_error_eq5(q_t[1:], q_s[1:], 0.5, mask), expected[1:], atol=1e-7)
    out = td_error_eq5(torch.tensor(q_t[:1], dtype=torch.float32), torch.tensor(q_s[:1]).float(), 1.0,
                       torch.tensor(mask))
    assert isinstance(out, torch.Tensor) and out.item() == pytest.approx(expected[0], abs=1e-6)
    # no mask: all three actions, |A_T| = 3
    full = td_error_eq5(q_t[:1], q_s[:1], 1.0)
    e = np.exp([1, 2, 7]) / np.exp([1, 2, 7]).sum()
    s = np.exp([0, 0, -3]) / np.exp([0, 0, -3]).sum()
    assert full[0] == pytest.approx(np.abs(e - s).sum() / 3)


def test_hpr_stress_consistent():
    """Random play with wraps, FIFO evictions and re-sorts: only valid experiences are sampled, P sums to 1."""
    mem = ReplayMemory(dict(kind="hpr", partitions=3, partition_capacity=20, window=25, frame_stack=4,
                            rank_refresh_min=5), v_range=(-1, 1), **TINY)
    rng = np.random.default_rng(8)
    for t in range(500):
        mem.add(frame(t % 250), rng.normal(size=3), episode_start=rng.random() < 0.05, value=rng.normal() * 0.5)
        if t % 4 == 3:
            idx, batch, w = mem.sample(8, rng, beta=0.7)
            b = mem.batch(idx)  # raises if any sampled experience is no longer stored
            assert np.array_equal(b.obs, batch.obs) and 0 < w.min() and w.max() == 1
            mem.update_priorities(idx, rng.random(8))
        idx, P = mem.probabilities()
        assert len(idx) == len(mem) and P.sum() == pytest.approx(1.0)
        assert (mem.counts.sum() == min(t + 1, mem.W)) and (mem.size <= 20).all()


@pytest.mark.parametrize("kind", ["uniform", "rank", "hpr"])
def test_state_dict_round_trip_samples_the_same(kind, tmp_path):
    """A memory saved and loaded (through a checkpoint file) samples what the original samples, and both go on
    alike. Hand-checkable: capacity 4 (hpr: 2 x 2) after 6 additions holds steps 2..5 only."""
    cfg = dict(kind=kind, capacity=4, partitions=2, partition_capacity=2, frame_stack=1, rank_refresh_min=1)
    mem = ReplayMemory(cfg, v_range=(0.0, 2.0), **TINY)
    for t in range(6):
        mem.add(frame(t), np.array([0.0, 2.0 * (t % 2), 0.5]))   # V = 2 (odd t, partition 1) or 0.5 (even t)
    mem.update_priorities([2, 3, 4, 5], [0.1, 0.4, 0.2, 0.3])
    ids, _ = mem.probabilities()
    assert sorted(ids.tolist()) == [2, 3, 4, 5]
    torch.save(mem.state_dict(), tmp_path / "replay.pt")
    copy = ReplayMemory(cfg, v_range=(0.0, 2.0), **TINY)
    copy.load_state_dict(torch.load(tmp_path / "replay.pt", weights_only=False))
    rngs = [np.random.default_rng(3), np.random.default_rng(3)]
    for _ in range(3):
        (i1, b1, w1), (i2, b2, w2) = (m.sample(5, r, beta=0.5) for m, r in zip((mem, copy), rngs))
        assert i1.tolist() == i2.tolist() and set(i1.tolist()) <= set(mem.probabilities()[0].tolist())
        assert (b1.obs == b2.obs).all() and (b1.obs[:, 0, 0, 0] == i1 + 1).all()   # frame of step t holds t + 1
        assert (w1 == w2).all()
        for m in (mem, copy):
            m.update_priorities(i1, np.linspace(0.05, 0.9, 5))
            m.add(frame(m.t), np.array([0.0, 1.0, 0.5]))
    assert mem.probabilities()[0].tolist() == copy.probabilities()[0].tolist()
    assert np.allclose(mem.probabilities()[1], copy.probabilities()[1], rtol=0, atol=0)


def test_load_state_dict_refuses_another_config():
    small = ReplayMemory(dict(kind="rank", capacity=4, frame_stack=1), **TINY)
    with pytest.raises(ValueError, match="another config"):
        ReplayMemory(dict(kind="rank", capacity=8, frame_stack=1), **TINY).load_state_dict(small.state_dict())
    with pytest.raises(ValueError, match="another kind"):
        ReplayMemory(dict(kind="uniform", capacity=4, frame_stack=1), **TINY).load_state_dict(small.state_dict())
