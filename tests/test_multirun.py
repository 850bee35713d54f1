"""The multi-run learner: K runs in one process compute, bit for bit on the CPU, what each computes alone; a killed
K-run job resumes exactly; runs that cannot share a job are refused with a clear error."""

import pandas as pd
import pytest
import torch

from common.a2c import A2CArgs, Hook, Learner, RunSpec, check_group, load_policy, train, train_many
from common.envs import make_vec_env

SMALL = dict(game="MinAtar/Breakout", net="minatar", num_envs=4, n_steps=5, total_steps=2000,
             checkpoint_every=400, stats_every=200, log_interval_s=1e9, lr=1e-3, device="cpu")


def _build(args, out, env):
    return RunSpec(args, out)


def _same_run(a, b):
    ca, cb = (pd.read_csv(d / "curve.csv").drop(columns="wall_time") for d in (a, b))
    pd.testing.assert_frame_equal(ca, cb)
    pd.testing.assert_frame_equal(pd.read_csv(a / "train_stats.csv"), pd.read_csv(b / "train_stats.csv"))
    wa, wb = load_policy(a / "model.pt").state_dict(), load_policy(b / "model.pt").state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("game,net", [("MinAtar/Breakout", "minatar"), ("Pong", "a3c")])
def test_group_equals_alone(tmp_path, game, net):
    cfg = {**SMALL, "game": game, "net": net}
    if game == "Pong":
        cfg.update(total_steps=320, checkpoint_every=160, stats_every=40, protocol={"max_frames": 400})
    seeds = [5, 2, 9]
    train_many(_build, [(A2CArgs(**cfg, seed=s), tmp_path / f"group{s}") for s in seeds])
    for s in seeds:
        train(A2CArgs(**cfg, seed=s), tmp_path / f"alone{s}")
        _same_run(tmp_path / f"group{s}", tmp_path / f"alone{s}")
    c5, c2 = (pd.read_csv(tmp_path / f"group{s}" / "train_stats.csv") for s in (5, 2))
    assert not c5.equals(c2)  # the runs of a group are not copies of one another


def test_killed_group_resumes_exactly(tmp_path):
    seeds = [1, 3]
    full = [(A2CArgs(**SMALL, seed=s), tmp_path / f"full{s}") for s in seeds]
    cut = [(A2CArgs(**SMALL, seed=s), tmp_path / f"cut{s}") for s in seeds]
    train_many(_build, full)
    # killed after 47 updates: both runs hold their checkpoint of update 40 ...
    assert train_many(_build, cut, stop_after_updates=47) == [{"stopped_at_update": 47}]
    assert all((o / "checkpoint.pt").exists() and not (o / "curve.csv").exists() for _, o in cut)
    # ... and one run's checkpoint is lost, as if the job died between two checkpoint writes
    (tmp_path / "cut3" / "checkpoint.pt").unlink()
    results = train_many(_build, cut)
    assert len(results) == 2  # resumed as two groups: seed 3 from scratch, seed 1 from update 40
    for s in seeds:
        _same_run(tmp_path / f"full{s}", tmp_path / f"cut{s}")
    assert train_many(_build, cut) == []  # finished runs are skipped


def test_runs_that_cannot_share_a_job_are_refused(tmp_path):
    with pytest.raises(ValueError, match="must agree on 'num_envs'.*seed 0: 4, seed 1: 8"):
        check_group([A2CArgs(**SMALL, seed=0), A2CArgs(**{**SMALL, "num_envs": 8}, seed=1)])
    with pytest.raises(ValueError, match="must agree on 'game'"):
        check_group([A2CArgs(**SMALL, seed=0), A2CArgs(**{**SMALL, "game": "MinAtar/Asterix"}, seed=1)])
    with pytest.raises(ValueError, match="distinct run directories"):
        Learner.many([RunSpec(A2CArgs(**SMALL, seed=s), tmp_path / "same") for s in (0, 1)])
    with pytest.raises(ValueError, match="holds 4 envs; 2 runs x num_envs 4 need 8"):
        Learner.many([RunSpec(A2CArgs(**SMALL, seed=s), tmp_path / str(s)) for s in (0, 1)],
                     env=make_vec_env("MinAtar/Breakout", 4))


def test_one_run_view_refused_for_many(tmp_path):
    lr = Learner.many([RunSpec(A2CArgs(**SMALL, seed=s), tmp_path / str(s)) for s in (0, 1)])
    with pytest.raises(AttributeError, match="several runs"):
        lr.agent
    lr.close()


# -- the stacked engine: all runs' nets in one batched call (common/multirun.py) ----------------------------------
def _build_stacked(args, out, env):
    return RunSpec(args, out)


def _stats(d):
    return pd.read_csv(d / "train_stats.csv")


def test_stacked_same_job_same_bits_and_exact_resume(tmp_path):
    seeds = [4, 7, 1]
    for name in ("a", "b"):
        train_many(_build_stacked, [(A2CArgs(**SMALL, seed=s), tmp_path / f"{name}{s}") for s in seeds], batch="stacked")
    cut = [(A2CArgs(**SMALL, seed=s), tmp_path / f"cut{s}") for s in seeds]
    assert train_many(_build_stacked, cut, stop_after_updates=47, batch="stacked") == [{"stopped_at_update": 47}]
    train_many(_build_stacked, cut, batch="stacked")  # resumes all three from update 40
    for s in seeds:
        _same_run(tmp_path / f"a{s}", tmp_path / f"b{s}")
        _same_run(tmp_path / f"a{s}", tmp_path / f"cut{s}")


def test_stacked_update_agrees_with_the_loop(tmp_path):
    """One update of three runs, stacked vs one after another: same actions, losses and new weights to 1e-6."""
    def one_update(batch):
        lr = Learner.many([RunSpec(A2CArgs(**{**SMALL, "checkpoint_every": 0}, seed=s), tmp_path / batch / str(s))
                           for s in (0, 1, 2)], batch=batch)
        assert lr.engine.name == batch
        lr.step()
        lr.engine.sync()
        out = [({n: p.detach().clone() for n, p in r.agent.named_parameters()}, r.act_buf.clone(), r.rew_buf.clone())
               for r in lr.runs]
        lr.close()
        return out

    loop, stacked = one_update("loop"), one_update("stacked")
    for (wl, al, rl), (ws, as_, rs) in zip(loop, stacked):
        assert torch.equal(al, as_) and torch.equal(rl, rs)  # the same rollout
        for n in wl:
            assert torch.allclose(wl[n], ws[n], rtol=0, atol=1e-6), n


def test_stacked_only_where_runs_can_be_stacked(tmp_path):
    from common.multirun import stackable

    class Noop(Hook):
        pass

    def learner(batch, hook=None, lr=(1e-3, 1e-3)):
        return Learner.many([RunSpec(A2CArgs(**{**SMALL, "lr": lr[s]}, seed=s), tmp_path / f"{batch}{s}{id(hook)}",
                                     hook=hook() if hook else None) for s in (0, 1)], batch=batch)

    lr = learner("auto")
    assert lr.engine.name == "stacked"
    lr.close()
    lr = learner("auto", hook=Noop)
    assert lr.engine.name == "loop" and "hook" in stackable(lr.runs)
    lr.close()
    with pytest.raises(ValueError, match="cannot be stacked.*differ beyond the seed: lr"):
        learner("stacked", lr=(1e-3, 2e-3))


def test_too_many_runs_for_the_memory_is_a_clear_error(tmp_path, monkeypatch):
    import common.multirun as mr
    from common.nets import make_net

    net = make_net("minatar", (4, 10, 10), 3)
    # by hand, T = 5, N = 4: trainable parameters conv 16x4x3x3 + 16 = 592, fc 1024 x 128 + 128 = 131,200, heads
    # 128 x 3 + 3 = 387 and 129 -> 132,308, x 4 copies x 4 bytes = 2,116,928; rollout 3 x 5 x 4 x 400 bytes = 24,000;
    # leaf outputs per sample 16x8x8 + 128 + 3 + 1 = 1,156, x 20 samples x 4 bytes x 3 = 277,440
    est = mr.run_memory_bytes(net, (4, 10, 10), 5, 4)
    assert est == 2_116_928 + 24_000 + 277_440
    monkeypatch.setattr(mr, "available_bytes", lambda device: int(1.5 * est))
    specs = [RunSpec(A2CArgs(**SMALL, seed=s), tmp_path / str(s)) for s in range(2)]
    with pytest.raises(MemoryError, match="2 runs of MinAtar/Breakout need about .* train fewer runs per job"):
        Learner.many(specs)


def test_gpu_asked_for_and_absent(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="torch sees no GPU.*device: auto or cpu"):
        Learner(A2CArgs(**{**SMALL, "device": "cuda"}), tmp_path)


def test_stacked_nan_names_the_run_and_term(tmp_path):
    lr = Learner.many([RunSpec(A2CArgs(**SMALL, seed=s), tmp_path / str(s)) for s in (0, 1)], batch="stacked")
    with torch.no_grad():
        lr.engine.params[lr.engine.names[-1]][1].fill_(float("nan"))  # run 1's value head
    with pytest.raises(FloatingPointError, match=r"value_loss = nan.*update 0 .*seed 1.*No checkpoint was written"):
        lr.step()
    lr.close()


# -- overlapped halves: one half's envs step while the other half's nets run (common.multirun.Overlapped) ----------
@pytest.mark.parametrize("game,net,batch", [("Pong", "a3c", "loop"), ("MinAtar/Breakout", "minatar", "stacked")])
def test_overlapped_halves_compute_what_each_half_computes_alone(tmp_path, game, net, batch):
    """Four runs overlapped as halves {5, 2} and {9, 4}: each half's runs equal the same half trained as a job of its
    own, bit for bit (loop: also each run alone); ale-py's envs step between send and recv."""
    cfg = {**SMALL, "game": game, "net": net}
    if game == "Pong":
        cfg.update(total_steps=320, checkpoint_every=160, stats_every=40, protocol={"max_frames": 400})
    seeds = [5, 2, 9, 4]
    res = train_many(_build, [(A2CArgs(**cfg, seed=s), tmp_path / f"ov{s}") for s in seeds], batch=batch, overlap=True)
    assert len(res) == 1 and len(res[0]) == 4
    for half in ([5, 2], [9, 4]):
        train_many(_build, [(A2CArgs(**cfg, seed=s), tmp_path / f"half{s}") for s in half], batch=batch)
        for s in half:
            _same_run(tmp_path / f"ov{s}", tmp_path / f"half{s}")


def test_overlapped_job_killed_resumes_exactly(tmp_path):
    seeds = [1, 3, 6]
    full = [(A2CArgs(**SMALL, seed=s), tmp_path / f"full{s}") for s in seeds]
    cut = [(A2CArgs(**SMALL, seed=s), tmp_path / f"cut{s}") for s in seeds]
    train_many(_build, full, overlap=True)
    assert train_many(_build, cut, stop_after_updates=47, overlap=True) == [{"stopped_at_update": 47}]
    train_many(_build, cut, overlap=True)  # both halves resume from update 40
    for s in seeds:
        _same_run(tmp_path / f"full{s}", tmp_path / f"cut{s}")


def test_overlapped_refuses_halves_out_of_step(tmp_path):
    from common.multirun import Overlapped

    a = Learner.many([RunSpec(A2CArgs(**SMALL, seed=s), tmp_path / str(s)) for s in (0, 1)])
    b = Learner(A2CArgs(**{**SMALL, "total_steps": 4000}, seed=2), tmp_path / "2")
    with pytest.raises(ValueError, match="lock-step"):
        Overlapped([a, b])
    for lr in (a, b):
        lr.close()
