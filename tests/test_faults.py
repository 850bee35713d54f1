"""Fault injection: bad arguments, damaged checkpoints, a full disk, NaN losses, SIGKILL while final files are written.

Each fault is made real where that is cheap: a full disk is /dev/full behind a write's temporary file (the
kernel's ENOSPC, through torch's, json's and pandas' writers alike), a kill is SIGKILL from inside a subprocess
at the chosen write. Runs are tiny MinAtar configs (a second or two each). README "Interrupted runs" says what
these tests show.
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from common import cli
from common.a2c import A2CArgs, Hook, load_policy, train
from common.a2c import main as a2c_main
from common.checks import Range, check_finite
from common.evaluation import EvalProtocol
from common.io import (CorruptFileError, DiskFullError, read_checkpoint, torch_save, verify_torch_file, write_csv,
                       write_json)
from common.nets import NetMisfitError, make_net

REPO = Path(__file__).resolve().parents[1]
# boundaries at 400 and 800 steps (20 env steps per update: updates 20 and 40), 60 updates in all
FAST = dict(game="MinAtar/Breakout", net="minatar", num_envs=4, n_steps=5, total_steps=1200, checkpoint_every=400,
            stats_every=100, log_interval_s=1e9, lr=1e-3, device="cpu", seed=5)
FINAL_FILES = ("model.pt", "curve.csv", "train_stats.csv", "eval.json", "final.json")
needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")


def _curve(d):
    return pd.read_csv(d / "curve.csv").drop(columns="wall_time")


def _same_outputs(a: Path, b: Path) -> None:
    """Two finished runs wrote the same curve, train_stats and weights (bit for bit, wall time aside)."""
    pd.testing.assert_frame_equal(_curve(a), _curve(b))
    pd.testing.assert_frame_equal(pd.read_csv(a / "train_stats.csv"), pd.read_csv(b / "train_stats.csv"))
    wa, wb = load_policy(a / "model.pt").state_dict(), load_policy(b / "model.pt").state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def _no_part_files(d: Path) -> None:
    assert not list(d.rglob("*.part")), list(d.rglob("*.part"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted FAST run every faulted run must end identical to."""
    d = tmp_path_factory.mktemp("reference")
    train(A2CArgs(**FAST), d)
    return d


@pytest.fixture
def full_disk(monkeypatch):
    """full_disk(name, n=1): the n-th atomic write of a file called `name` from now on hits a full disk (its
    temporary `name.part` is a link to /dev/full, so the kernel answers ENOSPC to whatever writes it)."""
    import common.io as io

    real = io.atomic_path
    seen: dict[str, int] = {}
    plan: dict[str, int] = {}

    def atomic_path(path):
        p = Path(path)
        seen[p.name] = seen.get(p.name, 0) + 1
        if plan.get(p.name) == seen[p.name]:
            tmp = p.with_name(p.name + ".part")
            tmp.unlink(missing_ok=True)
            p.parent.mkdir(parents=True, exist_ok=True)
            os.symlink("/dev/full", tmp)
        return real(path)

    monkeypatch.setattr(io, "atomic_path", atomic_path)

    def arm(name: str, n: int = 1) -> None:
        plan[name] = seen.get(name, 0) + n

    return arm


def _nan_after(fn, calls: int):
    """fn, but its result is multiplied by NaN from call `calls` + 1 on."""
    count = [0]

    def wrapped(*a, **k):
        count[0] += 1
        out = fn(*a, **k)
        return out * float("nan") if count[0] > calls else out
    return wrapped


# =====================================================================================================
# 1. Bad arguments: one line naming the field, the value, the valid range and the fix, at build time
# =====================================================================================================
@pytest.mark.parametrize("args, says", [
    ({"num_envs": 0}, "a2c arguments: num_envs must be >= 1, got 0; set num_envs to a number >= 1 (default 16)"),
    ({"total_steps": -5}, "total_steps must be >= 1, got -5"),
    ({"gamma": 1.5}, "gamma must be in [0, 1], got 1.5; set gamma to a number in [0, 1] (default 0.99)"),
    ({"net": "a3c"}, "net 'a3c' does not fit game MinAtar/Breakout (10x10 frames): conv2's 4x4 kernel is larger than "
                     "its 1x1 input; set net to one of the nets that fit: minatar, ca3c"),
])
def test_cli_reports_bad_a2c_args_in_one_line(tmp_path, capsys, args, says):
    """The issue's four cases, as a new user types them: exit 2 with one line (no segfault, no traceback, no
    ZeroDivisionError, no torch kernel-size error), and nothing trained or written."""
    d = {"game": "MinAtar/Breakout", "net": "minatar", "total_steps": 100, **args}
    with pytest.raises(SystemExit) as e:
        cli.run(a2c_main, ["--out", str(tmp_path / "run"), "--args", json.dumps(d)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {says}" or (err.startswith("error: ") and says in err), err
    assert "\n" not in err and not (tmp_path / "run").exists()


def test_a2c_args_built_directly_are_checked_too():
    with pytest.raises(ValueError, match="a2c arguments: num_envs must be >= 1, got 0"):
        A2CArgs(num_envs=0)


def _builders():
    """(what, build(mapping), base mapping) of every argument dataclass, built as its runner builds it."""
    from common.envs import AtariProtocol
    from common.replay import ReplayConfig
    from papers.cdrl.alignment import AlignArgs
    from papers.cdrl.method import CA3CArgs
    from papers.gan_simulator.images import ImageArgs
    from papers.gan_simulator.method import GASArgs
    from papers.gan_simulator.policy import PolicyArgs
    from papers.hpr_distillation.method import HPRArgs
    from papers.knowledge_flow.distral import DistralArgs
    from papers.knowledge_flow.method import KFArgs
    from papers.knowledge_flow.supervised import SupArgs

    return [(A2CArgs, A2CArgs.from_dict, {"game": "MinAtar/Breakout", "net": "minatar"}),
            (AtariProtocol, AtariProtocol.from_dict, {}),
            (EvalProtocol, EvalProtocol.from_dict, {}),
            (ReplayConfig, ReplayConfig.from_dict, {}),
            (HPRArgs, HPRArgs.from_dict, {"games": ["MinAtar/Breakout"]}),
            (GASArgs, GASArgs.from_dict, {"method": "ours"}),
            (ImageArgs, ImageArgs.from_dict, {}),
            (PolicyArgs, PolicyArgs.from_dict, {"teacher": "teachers/x"}),
            (CA3CArgs, CA3CArgs.from_dict, {"align_from": 0, "distill_from": 0}),
            (AlignArgs, AlignArgs.from_dict, {}),
            (DistralArgs, DistralArgs.from_dict, {}),
            (KFArgs, KFArgs.from_dict, {}),
            (SupArgs, SupArgs.from_dict, {})]


def _outside(r: Range):
    """A number outside range r (and not NaN)."""
    if r.lo > -np.inf:
        return r.lo if r.lo_open else (r.lo - 1 if float(r.lo).is_integer() else r.lo - 0.5)
    return r.hi if r.hi_open else r.hi + 1


def test_every_declared_range_and_choice_is_enforced_at_build_time():
    """For every field of every argument dataclass that declares a range or choices, a value outside them fails
    when the arguments are built, with the one-line message; and the defaults themselves pass."""
    checked = 0
    for cls, build, base in _builders():
        build(dict(base))                                                   # defaults are valid
        for f in dataclasses.fields(cls):
            valid, choices, each = (f.metadata.get(k) for k in ("valid", "choices", "each"))
            if valid is None and choices is None and each is None:
                continue
            if valid is not None:
                bad = _outside(valid)
                bad = int(bad) if f.type in ("int", "int | None") and float(bad).is_integer() else float(bad)
            elif choices is not None:
                bad = "no-such-choice"
            else:
                bad = [_outside(each)]
            with pytest.raises(ValueError) as e:
                build({**base, f.name: bad})
            msg = str(e.value)
            assert f"{f.name} must be " in msg and f"got {bad!r}" in msg and "; set " in msg, (cls.__name__, msg)
            assert "\n" not in msg
            checked += 1
    assert checked >= 120, checked            # the learners', the protocols', every paper's: not a handful


def test_a_net_that_does_not_fit_the_frames_is_named_with_the_nets_that_do():
    with pytest.raises(NetMisfitError, match="set net to one of the nets that fit: minatar, ca3c"):
        make_net("nature", (4, 10, 10), 3)
    with pytest.raises(ValueError, match="nets that fit: minatar, ca3c"):
        A2CArgs.from_dict({"game": "Pong", "net": "a3c", "protocol": {"size": 10}})
    from papers.gan_simulator.policy import PolicyArgs
    from papers.hpr_distillation.method import HPRArgs

    with pytest.raises(ValueError, match="student_net 'a3c' does not fit game MinAtar/Breakout"):
        PolicyArgs.from_dict({"teacher": "t", "student_net": "a3c"})
    with pytest.raises(ValueError, match="protocol.size must be large enough"):
        HPRArgs.from_dict({"games": ["Pong"], "protocol": {"size": 20}})


def test_cross_field_and_teacher_ranges():
    with pytest.raises(ValueError, match="episodes must be >= 1 when steps is 0"):
        EvalProtocol.from_dict({"episodes": 0})
    assert EvalProtocol.from_dict({"episodes": 0, "steps": 1000}).steps == 1000
    from common.zoo import HyperparameterError, check_teacher_args, resolve_hyperparams

    with pytest.raises(HyperparameterError, match=r"block overrides: gamma must be in \[0, 1\], got 1.5"):
        resolve_hyperparams("ppo", "MinAtar/Breakout", overrides={"gamma": 1.5})
    with pytest.raises(HyperparameterError, match="learning_rate must be > 0, got -1.0"):
        resolve_hyperparams("ppo", "MinAtar/Breakout", overrides={"learning_rate": "lin_-1"})
    with pytest.raises(HyperparameterError, match="batch_size must divide n_steps x n_envs = 1024"):
        resolve_hyperparams("ppo", "MinAtar/Breakout", overrides={"batch_size": 100})
    with pytest.raises(ValueError, match="teacher arguments: eval_episodes must be >= 1, got 0"):
        check_teacher_args(1000, 0, 1, 0, None)


def test_the_snakefile_load_time_check_catches_a_range_error():
    """The checks run when the Snakefile loads fail on a bad range before any job: common.pipeline.check_config
    (the paper-independent keys) and each paper's own check, here Knowledge Flow's papers.knowledge_flow.plan.check
    (called at the top of papers/knowledge_flow/rules.smk) and cA3C's papers.cdrl.plan.check."""
    import copy

    import yaml

    from common.pipeline import check_config
    from papers.cdrl import plan as cdrl_plan
    from papers.knowledge_flow import plan as kf_plan

    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    check_config(config)
    kf_plan.check(config)
    cdrl_plan.check(config)
    bad = copy.deepcopy(config)
    bad["knowledge_flow"]["a2c"]["gamma"] = 1.5
    with pytest.raises(ValueError, match=r"a2c arguments: gamma must be in \[0, 1\], got 1.5"):
        kf_plan.check(bad)
    bad = copy.deepcopy(config)
    bad["cdrl"]["a2c"]["lr"] = -1.0
    with pytest.raises(ValueError, match=r"a2c arguments: lr must be > 0, got -1.0"):
        cdrl_plan.check(bad)
    bad = copy.deepcopy(config)
    bad["runs_per_job"] = 0
    with pytest.raises(ValueError, match=r"config: runs_per_job must be >= 1, got 0"):
        check_config(bad)


# =====================================================================================================
# 2. Damaged checkpoints on resume
# =====================================================================================================
def _flip(path: Path, where: float) -> None:
    b = bytearray(path.read_bytes())
    b[int(len(b) * where)] ^= 0x10
    path.write_bytes(bytes(b))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage", [_truncate, lambda p: _flip(p, 0.5), lambda p: _flip(p, 0.98)],
                         ids=["truncated", "bit-flipped data", "bit-flipped directory"])
def test_read_checkpoint_names_the_file_and_the_restart_command(tmp_path, damage):
    p = tmp_path / "checkpoint.pt"
    torch_save({"w": torch.arange(50_000, dtype=torch.float32), "update": 3}, p)
    assert read_checkpoint(p)["update"] == 3
    damage(p)
    with pytest.raises(CorruptFileError) as e:
        read_checkpoint(p)
    msg = str(e.value)
    assert f"checkpoint {p} is corrupt" in msg and f"rm {p} and rerun the same command" in msg


def test_truncated_checkpoint_stops_the_resume_and_loses_nothing_else(tmp_path, reference):
    run = tmp_path / "run"
    train(A2CArgs(**FAST), run, stop_after_updates=45)                   # killed after the boundary at update 40
    _truncate(run / "checkpoint.pt")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.name != "config.json"}
    with pytest.raises(RuntimeError, match=rf"checkpoint {run / 'checkpoint.pt'} is corrupt.*from scratch: rm "):
        train(A2CArgs(**FAST), run)
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.name != "config.json"}
    assert after == before                                    # the failed resume touched nothing in the run dir
    (run / "checkpoint.pt").unlink()                           # the fix the message gives: restart from scratch
    train(A2CArgs(**FAST), run)
    _same_outputs(reference, run)


def test_bit_flipped_checkpoint_stops_the_a2c_resume(tmp_path):
    run = tmp_path / "run"
    train(A2CArgs(**FAST), run, stop_after_updates=45)
    _flip(run / "checkpoint.pt", 0.5)
    with pytest.raises(RuntimeError, match="is corrupt"):
        train(A2CArgs(**FAST), run)


def test_distral_and_hpr_resume_read_checkpoints_through_the_check(tmp_path, monkeypatch):
    """The other learners that keep their own checkpoint (Distral, cA3C collaborative, H-PR) load it with
    read_checkpoint: a damaged one stops them with the same message, before any env is built."""
    import papers.cdrl.collaborative as collab
    import papers.hpr_distillation.method as hpr
    import papers.knowledge_flow.distral as distral

    for mod in (collab, distral, hpr):
        assert mod.read_checkpoint is read_checkpoint
    out = tmp_path / "distral"
    out.mkdir()
    torch_save({"update": 1}, out / "checkpoint.pt")
    _truncate(out / "checkpoint.pt")
    args = distral.RunArgs.from_dict({"tasks": ["MinAtar/Breakout", "MinAtar/Asterix"],
                                      "a2c": {"net": "minatar", "num_envs": 2, "total_steps": 40, "device": "cpu"}})
    with pytest.raises(CorruptFileError, match=f"rm {out / 'checkpoint.pt'}"):
        distral.run(args, out)


def test_a_damaged_gas_teacher_cache_is_trained_again(tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    from papers.gan_simulator.images import ImageArgs, get_teacher, teacher_key

    args = ImageArgs.from_dict({"teacher_epochs": 1, "teacher_batch_size": 8})
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(16, 1, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g))
    cache = tmp_path / f"teacher_{teacher_key(args)}.pt"
    torch_save({"state_dict": {}, "key": "x"}, cache)
    _truncate(cache)
    logs = []
    _, info = get_teacher(args, data, DataLoader(data, batch_size=16), 10, 1, tmp_path, "cpu", log=logs.append)
    assert not info["cached"] and any("is unreadable" in line and "training the teacher again" in line for line in logs)
    verify_torch_file(cache)                                   # replaced by a complete one, used next time
    assert get_teacher(args, data, DataLoader(data, batch_size=16), 10, 1, tmp_path, "cpu", log=logs.append)[1]["cached"]


# =====================================================================================================
# 3. The disk fills up during an atomic write
# =====================================================================================================
@needs_dev_full
@pytest.mark.parametrize("writer", ["json", "torch", "csv", "write_csv", "pandas"])
def test_enospc_in_an_atomic_write_keeps_the_old_file_and_leaves_no_part(tmp_path, full_disk, writer):
    import common.io as io

    path = tmp_path / f"out.{writer}"

    def write(version: int):
        if writer == "json":
            write_json(path, {"version": version, "pad": list(range(10_000))})
        elif writer == "torch":
            torch_save({"version": version, "w": torch.zeros(100_000)}, path)
        elif writer == "csv":
            with io.atomic_path(path) as tmp, open(tmp, "w") as f:
                f.write(f"version\n{version}\n" + "0\n" * 10_000)
        elif writer == "write_csv":
            io.write_csv(path, [{"version": version, "pad": 0}] * 10_000, ["version", "pad"])
        else:
            with io.atomic_path(path) as tmp:
                pd.DataFrame({"version": [version] * 10_000}).to_csv(tmp, index=False)

    write(1)
    old = path.read_bytes()
    full_disk(path.name)
    with pytest.raises(DiskFullError) as e:
        write(2)
    assert f"no space left while writing {path}" in str(e.value) and "previous complete version is kept" in str(e.value)
    assert path.read_bytes() == old
    _no_part_files(tmp_path)
    write(3)                                                   # space again: the next write works
    assert path.read_bytes() != old


def test_write_csv_writes_what_dict_writer_writes_and_keeps_the_old_file_on_a_bad_row(tmp_path):
    """write_csv: csv.DictWriter's output (\\r\\n, columns in the order given, a missing key empty); an extra key
    raises (the old file kept, no .part) unless extrasaction='ignore'."""
    path = tmp_path / "t.csv"
    write_csv(path, ({"b": i, "a": "x,y"} for i in range(2)), ["a", "b", "c"])
    assert path.read_bytes() == b'a,b,c\r\n"x,y",0,\r\n"x,y",1,\r\n'
    old = path.read_bytes()
    with pytest.raises(ValueError):
        write_csv(path, [{"a": 1, "d": 2}], ["a"])
    assert path.read_bytes() == old
    _no_part_files(tmp_path)
    write_csv(path, [{"a": 1, "d": 2}], ["a"], extrasaction="ignore")
    assert path.read_bytes() == b"a\r\n1\r\n"


@needs_dev_full
def test_enospc_at_a_checkpoint_keeps_the_previous_one_and_the_rerun_ends_identical(tmp_path, full_disk, reference):
    run = tmp_path / "run"
    full_disk("checkpoint.pt", 2)                              # the second boundary's checkpoint (update 40)
    with pytest.raises(DiskFullError, match="checkpoint.pt"):
        train(A2CArgs(**FAST), run)
    assert read_checkpoint(run / "checkpoint.pt")["update"] == 20      # the first boundary's, complete
    assert not any((run / f).exists() for f in FINAL_FILES)
    _no_part_files(run)
    train(A2CArgs(**FAST), run)
    _same_outputs(reference, run)


@needs_dev_full
def test_enospc_writing_the_model_leaves_the_run_unfinished_and_resumable(tmp_path, full_disk, reference):
    run = tmp_path / "run"
    full_disk("model.pt")
    with pytest.raises(DiskFullError, match="model.pt"):
        train(A2CArgs(**FAST), run)
    assert not (run / "curve.csv").exists() and not (run / "model.pt").exists()
    assert (run / "checkpoint.pt").exists()
    _no_part_files(run)
    train(A2CArgs(**FAST), run)
    _same_outputs(reference, run)


def test_cli_reports_a_full_disk_in_one_line(capsys):
    def main(argv):
        raise DiskFullError(28, "no space left while writing x: free disk space")

    with pytest.raises(SystemExit) as e:
        cli.run(main, [])
    assert e.value.code == 2 and capsys.readouterr().err.startswith("error: [Errno 28] no space left")


# =====================================================================================================
# 4. A NaN in each learner's loss
# =====================================================================================================
def test_check_finite_names_the_term_the_step_and_the_checkpoint(tmp_path):
    check_finite(torch.tensor(1.0), {"a": torch.tensor(1.0)}, "run", "step 3", "fix it")
    ck = tmp_path / "checkpoint.pt"
    with pytest.raises(FloatingPointError) as e:
        check_finite(torch.tensor(float("nan")), {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([1.0, np.nan])},
                     "run x", "step 3", "lower lr", ck)
    assert str(e.value) == (f"run x: non-finite loss at step 3 (b = nan); lower lr. No checkpoint was written yet "
                            f"({ck}): a rerun starts from scratch. No final output was written.")
    ck.write_bytes(b"x")
    with pytest.raises(FloatingPointError, match=f"The last good checkpoint, {ck}, is kept"):
        check_finite(float("inf"), {}, "run x", "step 3", "lower lr", ck)


def _assert_stopped_cleanly(run: Path, after_update: int) -> None:
    """The run stopped before writing any final output; its checkpoint is the last good boundary's."""
    assert not any((run / f).exists() for f in FINAL_FILES), sorted(p.name for p in run.iterdir())
    assert read_checkpoint(run / "checkpoint.pt")["update"] == after_update


def test_nan_in_the_a2c_loss_stops_at_its_step_and_the_rerun_resumes(tmp_path, reference):
    class NaNAt(Hook):
        def __init__(self, update):
            self.update, self.calls = update, 0

        def loss(self, agent, batch, out):
            self.calls += 1
            return out.value.sum() * (float("nan") if self.calls > self.update else 0.0), {}

    run = tmp_path / "run"
    with pytest.raises(FloatingPointError) as e:
        train(A2CArgs(**FAST), run, hook=NaNAt(45))
    msg = str(e.value)
    assert "at update 45 (step 900)" in msg and str(run / "checkpoint.pt") in msg and "resumes" in msg
    assert "hook loss = nan" in msg and "policy_loss" not in msg  # the term that is not finite, named
    _assert_stopped_cleanly(run, 40)
    train(A2CArgs(**FAST), run, hook=NaNAt(10**9))             # the cause fixed: the rerun resumes from update 40
    _same_outputs(reference, run)


def test_nan_in_the_knowledge_flow_loss_names_the_term(tmp_path, monkeypatch):
    import papers.knowledge_flow.method as kfm
    from common.nets import MinAtarNet

    class Frozen(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net, self.layer_names, self.obs_shape = net, net.layer_names, net.obs_shape
            self.requires_grad_(False).eval()

        def forward_preacts(self, obs):
            return self.net.forward_preacts(obs).extra["preacts"]

    monkeypatch.setattr(kfm, "dependency_loss", _nan_after(kfm.dependency_loss, 25))
    torch.manual_seed(0)
    kf = kfm.KnowledgeFlowStudent(MinAtarNet((4, 10, 10), 3), [Frozen(MinAtarNet((4, 10, 10), 6))],
                                  [{"teacher": 0, "teacher_layer": "fc", "student_layer": "fc"}])
    run = tmp_path / "run"
    with pytest.raises(FloatingPointError, match=r"Knowledge Flow: non-finite loss at step 520 \(dependency loss "
                                                 r"l_dep \(Eq. 5\) = nan\)"):
        train(A2CArgs(**FAST), run, agent=kf, hook=kfm.KnowledgeFlowHook(kfm.KFArgs(lambda1=0.5)))
    _assert_stopped_cleanly(run, 20)


def test_nan_in_the_ca3c_distillation_loss_names_the_term(tmp_path, monkeypatch):
    import papers.cdrl.method as cm
    from common.nets import CA3CNet

    monkeypatch.setattr(cm, "distillation_loss", _nan_after(cm.distillation_loss, 25))
    torch.manual_seed(0)
    net = CA3CNet((4, 10, 10), 3, obs_scale=1.0)
    teacher = CA3CNet((4, 10, 10), 3, obs_scale=1.0).requires_grad_(False).eval()
    hook = cm.CA3CHook(cm.CA3CArgs(mode="homogeneous", distill_from=0), net, [teacher])
    run = tmp_path / "run"
    with pytest.raises(FloatingPointError, match="non-finite cA3C distillation loss .* at step 520"):
        train(A2CArgs(**{**FAST, "net": "ca3c"}), run, agent=net, hook=hook)
    _assert_stopped_cleanly(run, 20)


def test_nan_in_the_hpr_loss_names_the_game_the_update_and_the_checkpoint(tmp_path, monkeypatch):
    import papers.hpr_distillation.method as hpr
    from common.zoo import train_teacher

    teacher = tmp_path / "teacher"
    train_teacher("dqn", "MinAtar/Breakout", 0, "untrained", 0, teacher, eval_episodes=1, device="cpu",
                  overrides={"learning_starts": 200, "buffer_size": 2000, "target_update_interval": 200})
    args = hpr.HPRArgs.from_dict({
        "games": ["MinAtar/Breakout"], "teachers": [str(teacher)], "total_steps": 240, "learning_starts": 64,
        "eps_decay_steps": 200, "eval_every": 25, "vrange_steps": 50, "fc_sizes": [32], "eval": {"steps": 40},
        "replay": {"partitions": 2, "partition_capacity": 100, "window": 100}, "checkpoint_every": 100,
        "device": "cpu", "log_interval_s": 1e9})
    monkeypatch.setattr(hpr, "distillation_kl", _nan_after(hpr.distillation_kl, 20))   # update 21: step 144
    run = tmp_path / "run"
    with pytest.raises(FloatingPointError) as e:
        hpr.train(args, run)
    msg = str(e.value)
    assert "distillation KL on MinAtar/Breakout (Eq. 4) = nan" in msg and "update 20 (step 144 per game)" in msg
    assert f"The last good checkpoint, {run / 'checkpoint.pt'}, is kept" in msg
    assert not any((run / f).exists() for f in FINAL_FILES)
    assert read_checkpoint(run / "checkpoint.pt")["step"] == 100
    _truncate(run / "checkpoint.pt")                           # and a damaged H-PR checkpoint is named on resume
    with pytest.raises(CorruptFileError, match=f"rm {run / 'checkpoint.pt'}"):
        hpr.train(args, run)


def test_nan_in_the_gas_losses_names_the_term():
    import papers.gan_simulator.method as gm

    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 3)).requires_grad_(False)
    args = gm.GASArgs.from_dict({"method": "dfad", "student_steps": 20, "batch_size": 4, "image_size": 16,
                                 "log_every": 10})
    with pytest.raises(FloatingPointError, match=r"gan_simulator method 'dfad' seed 0: non-finite loss at step 0 "
                                                 r"\(generator loss term disagreement = nan\)"):
        bad = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 3))
        nn.init.constant_(bad[1].bias, float("nan"))
        gm.distill(teacher, bad, args)
    kd = gm.GASArgs.from_dict({"method": "kd_noise", "student_steps": 20, "batch_size": 4, "image_size": 16,
                               "log_every": 10})
    with pytest.raises(FloatingPointError, match=r"student loss = nan\); lower lr_generator"):
        gm.distill(teacher, bad, kd, noise_only=True)


def test_nan_in_supervised_training_names_the_objective_and_the_step():
    import papers.knowledge_flow.supervised as sup

    class NaNAfter(sup.CrossEntropy):
        def __init__(self):
            self.calls = 0

        def loss(self, model, x, y, progress, step):
            self.calls += 1
            loss, logs = super().loss(model, x, y, progress, step)
            return (loss * float("nan") if self.calls > 3 else loss), logs

    from common.nets import NetOut

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return NetOut(self.fc(x), None)

    split = sup.Split(torch.randn(40, 4), torch.randint(0, 2, (40,)))
    with pytest.raises(FloatingPointError, match=r"supervised training: non-finite loss at step 3 \(epoch 0\) "
                                                 r"\(NaNAfter loss = nan\)"):
        sup.fit(Net(), split, NaNAfter(), epochs=2, batch_size=8, lr=1e-3, seed=0)


# =====================================================================================================
# 5. SIGKILL while the final files are written
# =====================================================================================================
KILLER = """
import os, signal, sys, json
import torch
import common.a2c as a2c
target, when = sys.argv[2], sys.argv[3]
real_replace, real_save = os.replace, torch.save
def replace(src, dst, *a, **k):
    if os.path.basename(str(dst)) == target and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst, *a, **k)
    if os.path.basename(str(dst)) == target and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
def save(obj, f, *a, **k):          # killed half-way through writing the model's temporary file
    if target == "model.pt" and "model.pt" in str(getattr(f, "name", f)):
        f.write(b"PK\\x03\\x04 half a model")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *a, **k)
a2c.os.replace, torch.save = replace, save
a2c.train(a2c.A2CArgs(**json.loads(sys.argv[4])), sys.argv[1])
"""


def _killed_run(run: Path, target: str, when: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-c", KILLER, str(run), target, when, json.dumps(FAST)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]


@pytest.mark.parametrize("target, when", [
    ("model.pt", "during"),                        # half of model.pt.part written
    ("train_stats.csv", "before"),                 # model.pt (and final.json) complete, nothing renamed yet
    ("curve.csv", "before"),                       # train_stats.csv final, curve.csv not yet
    ("curve.csv", "after"),                        # every final file written, the checkpoint not yet removed
])
def test_sigkill_during_the_final_writes_leaves_a_resumable_run(tmp_path, reference, target, when):
    run = tmp_path / "run"
    _killed_run(run, target, when)
    finished = (run / "curve.csv").exists()
    assert finished == (when == "after")                       # curve.csv, written last, marks a finished run
    if (run / "model.pt").exists():                            # never half: a model under its name is complete
        verify_torch_file(run / "model.pt")
        load_policy(run / "model.pt")
    assert (run / "checkpoint.pt").exists()                    # the last boundary's, removed only after curve.csv
    if finished:                                               # the pipeline (--rerun-incomplete) removes the
        for f in ("model.pt", "curve.csv", "train_stats.csv"):  # outputs of a killed job before it reruns it
            (run / f).unlink(missing_ok=True)
    train(A2CArgs(**FAST), run)
    _same_outputs(reference, run)
    assert not (run / "checkpoint.pt").exists()
    _no_part_files(run)
