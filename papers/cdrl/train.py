"""One cA3C run (or its A3C baseline) with the shared A2C learner, then its evaluation.

    python -m papers.cdrl.train --out DIR --args '<yaml/json>'

``--args`` is a :class:`RunArgs` mapping::

    method: a3c | homogeneous | kd_policy | kd_distill | distill_only | collaborative
    a2c: {game: Bowling, seed: 0, total_steps: 20000000, ...}     # common.a2c.A2CArgs over PAPER_A2C (paper.yaml)
    ca3c: {teachers: [runs/.../expert_pong/seed100], align_from: 1000000, distill_from: 2000000, ...}
    eval: {episodes: 30}                                          # common.evaluation.EvalProtocol
    source: {game: Pong}                                          # collaborative only: the source learner

Methods (papers/cdrl/method.py has the algorithm):

* ``a3c``: the baseline, no teacher (also how experts/teachers are trained: see papers/cdrl/README.md);
* ``homogeneous``: teacher logits straight into the policy head beside the GAE loss (Fig. 3b);
* ``kd_policy`` / ``kd_distill``: a heterogeneous teacher into the policy / distillation head (Fig. 4a/4b with
  ``use_alignment: false``; through an alignment network F otherwise: online with T1/T2 (Fig. 6b/6c) or
  offline from ``offline_alignment``, a file of papers/cdrl/alignment.py (Fig. 6a));
* ``distill_only``: the homogeneous hook with the learner's GAE loss off (``A2CArgs.gae_loss = false``): the
  student learns from the teacher only, while acting in its own env (Fig. 3a);
* ``untrained``: no training: the seeded net at initialisation, written as ``model.pt`` (with ``run.json`` and
  ``eval.json``, no curve): the untrained teacher of the control run ``kd_policy_untrained_bowling`` (papers/cdrl/
  README.md, "Controls");
* ``collaborative``: Fig. 6d / Sec. 5.4: a source (``source``, default Pong) and the target (``a2c``) trained
  from scratch together in lock-step, the target distilling (kd_distill through an online F) from the
  source's *current* network; no teacher files (papers/cdrl/collaborative.py).

The method fixes ``ca3c.mode``; writing a different mode in ``ca3c`` is an error.

Teachers are run directories of this runner (``model.pt`` = a CA3CNet policy file of common.a2c, with the
protocol it was trained on); a ``model.pt`` path or a zoo directory is accepted as well
(papers.cdrl.method.load_teachers). The teacher must read the student task's observations (same protocol).

The run directory gets what every A2C run writes (``config.json``, ``curve.csv``: every training game's raw
score, ``train_stats.csv`` with the cA3C phase/KL columns, ``model.pt``), ``run.json`` (the resolved run and
what was built) and ``eval.json``: the trained policy alone under ``eval`` (raw score of whole games, the
observation preprocessing copied from the training protocol), written last and atomically.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from common.a2c import A2CArgs, RunSpec, train, train_many
from common.cli import parse_mapping
from common.envs import dataclass_from_dict, make_vec_env
from common.evaluation import EvalProtocol, evaluate
from common.io import resolve_device, seed_everything, write_json
from common.nets import make_net
from papers.cdrl.method import CA3CArgs, CA3CHook, load_teachers

METHODS = ("a3c", "homogeneous", "kd_policy", "kd_distill", "distill_only", "collaborative", "untrained")
MODE_OF = {"homogeneous": "homogeneous", "kd_policy": "kd_policy", "kd_distill": "kd_distill",
           "distill_only": "homogeneous", "collaborative": "kd_distill"}
LOCKSTEP_KEYS = ("num_envs", "n_steps", "total_steps", "checkpoint_every")  # collaborative: equal in both learners

PAPER_FILE = Path(__file__).with_name("paper.yaml")


def load_paper(path: str | Path = PAPER_FILE) -> tuple[dict, dict]:
    """(A2CArgs fields, AtariProtocol fields) of the official code's settings in `path` (paper.yaml, with their
    sources); the first holds the second as its ``protocol``."""
    d = yaml.safe_load(Path(path).read_text())
    return d["a2c"], d["protocol"]


# The official code's settings (paper.yaml; docs/reference_notes.md §3), under any a2c keys a config gives.
PAPER_A2C, PAPER_PROTOCOL = load_paper()


@dataclass
class RunArgs:
    """A cA3C run: a pure function of these (the seed is ``a2c.seed``)."""

    method: str = "a3c"
    """a3c | homogeneous | kd_policy | kd_distill | distill_only | collaborative (module docstring)"""
    a2c: dict = field(default_factory=dict)
    """common.a2c.A2CArgs fields, over PAPER_A2C (protocol keys merge over PAPER_PROTOCOL)"""
    ca3c: dict = field(default_factory=dict)
    """papers.cdrl.method.CA3CArgs fields (teachers: run directories); unused by a3c"""
    eval: dict = field(default_factory=dict)
    """common.evaluation.EvalProtocol fields; frame_stack, size and crop_rows come from the training protocol"""
    source: dict = field(default_factory=dict)
    """collaborative only: A2CArgs overrides of the source learner over the target's ``a2c`` (default game Pong,
    seed = a2c.seed + collaborative.SOURCE_SEED_OFFSET); lock-step keys and observation keys must stay equal"""

    @classmethod
    def from_dict(cls, d: dict) -> "RunArgs":
        a = dataclass_from_dict(cls, d, where="cdrl run arguments")
        if a.method not in METHODS:
            raise ValueError(f"cdrl method must be one of {METHODS}, got '{a.method}'")
        A2CArgs.from_dict(a.a2c_args())
        EvalProtocol.from_dict(a.eval_args())
        if a.source and a.method != "collaborative":
            raise ValueError(f"'source' is for method collaborative only (method is {a.method})")
        if a.method == "collaborative":
            if a.ca3c.get("teachers"):
                raise ValueError("method collaborative distils from the live source learner (`source`), not from "
                                 "teacher files: drop ca3c.teachers")
            if "mode" in a.ca3c and a.ca3c["mode"] != MODE_OF[a.method]:
                raise ValueError(f"method collaborative uses ca3c mode 'kd_distill', got '{a.ca3c['mode']}': "
                                 "drop ca3c.mode")
            a.ca3c_args()
            src, tgt = a.source_a2c_args(), a.a2c_args()
            A2CArgs.from_dict(src)
            diff = {k: (src.get(k), tgt.get(k)) for k in LOCKSTEP_KEYS if src.get(k) != tgt.get(k)}
            diff.update({f"protocol.{k}": (src["protocol"].get(k), tgt["protocol"].get(k)) for k in OBS_KEYS
                         if src["protocol"].get(k) != tgt["protocol"].get(k)})
            if diff:
                raise ValueError(f"collaborative source and target must step in lock-step and see the same frames; "
                                 f"(source, target) differ in {diff}: drop these keys from `source`")
        elif a.method in ("a3c", "untrained"):
            if a.ca3c.get("teachers"):
                raise ValueError(f"method {a.method} takes no teachers; pick homogeneous, kd_policy, "
                                 "kd_distill or distill_only to use ca3c.teachers")
        else:
            if "mode" in a.ca3c and a.ca3c["mode"] != MODE_OF[a.method]:
                raise ValueError(f"method {a.method} uses ca3c mode '{MODE_OF[a.method]}', but ca3c.mode is "
                                 f"'{a.ca3c['mode']}': drop ca3c.mode (the method sets it)")
            if not a.ca3c.get("teachers"):
                raise ValueError(f"method {a.method} needs ca3c.teachers: a list of teacher run directories "
                                 "(train them with method a3c; papers/cdrl/README.md)")
            a.ca3c_args()
        return a

    def a2c_args(self) -> dict:
        protocol = {**PAPER_PROTOCOL, **self.a2c.get("protocol", {})}
        d = {**PAPER_A2C, **self.a2c, "protocol": protocol}
        if self.method == "distill_only":
            d["gae_loss"] = False
        return d

    def source_a2c_args(self) -> dict:
        """The collaborative source learner's A2CArgs: the target's, game Pong, seed + offset, `source` over them."""
        from papers.cdrl.collaborative import SOURCE_SEED_OFFSET

        tgt = self.a2c_args()
        d = {**tgt, "game": "Pong", "seed": int(tgt.get("seed", 0)) + SOURCE_SEED_OFFSET, **self.source}
        d["protocol"] = {**tgt["protocol"], **self.source.get("protocol", {})}
        return d

    def ca3c_args(self) -> CA3CArgs:
        return CA3CArgs.from_dict({**self.ca3c, "mode": MODE_OF[self.method]})

    def eval_args(self) -> dict:
        p = self.a2c_args()["protocol"]
        return {**self.eval, "frame_stack": p["frame_stack"], "size": p["size"], "crop_rows": p["crop_rows"]}


def teacher_file(path) -> str:
    """A teacher given as a run directory of this runner -> its model.pt; a file or zoo dir is kept as is."""
    p = Path(path)
    if p.is_dir() and (p / "model.pt").exists():
        return str(p / "model.pt")
    if not p.exists():
        raise FileNotFoundError(f"teacher {p} not found: train it with `python -m papers.cdrl.train --args "
                                "'{method: a3c, ...}'` (or the pipeline's cdrl_expert rule)")
    return str(p)


OBS_KEYS = ("frame_stack", "size", "crop_rows")  # what decides the frames a teacher reads


def check_teacher_protocol(path: str, protocol: dict) -> None:
    """A runner teacher (.pt) must have been trained on the student's observation preprocessing."""
    if not path.endswith(".pt"):
        return
    import torch

    from common.envs import AtariProtocol

    theirs = asdict(AtariProtocol.from_dict(torch.load(path, map_location="cpu", weights_only=False)["protocol"]))
    ours = asdict(AtariProtocol.from_dict(protocol))
    diff = {k: (theirs[k], ours[k]) for k in OBS_KEYS if theirs[k] != ours[k]}
    if diff:
        raise ValueError(f"teacher {path} was trained on other observations than the student's "
                         f"(teacher, student): {diff}; cA3C feeds teachers the student task's frames, so train the "
                         "teacher with the same a2c.protocol")


def build(run_args: RunArgs, env):
    """The student (a fresh net), its hook (None for a3c) and what was built, for run.json."""
    a2c = A2CArgs.from_dict(run_args.a2c_args())
    device = resolve_device(a2c.device)
    student = make_net(a2c.net, env.obs_shape, env.n_actions).to(device)
    if run_args.method in ("a3c", "untrained"):
        return student, None, {}
    args = run_args.ca3c_args()
    args.teachers = [teacher_file(t) for t in args.teachers]
    for t in args.teachers:
        check_teacher_protocol(t, a2c.protocol)
    teachers = load_teachers(args.teachers, device)
    hook = CA3CHook(args, student, teachers, seed=a2c.seed)
    return student, hook, {"ca3c_resolved": asdict(args), "teacher_actions": hook.teacher_actions,
                           "distill_head": hook.head, "online_alignment": hook.online_alignment}


def _prepare(run_args: RunArgs, out_dir, env):
    """Seed, build and describe one (non-collaborative) run; returns (A2CArgs, student, hook)."""
    a2c = A2CArgs.from_dict(run_args.a2c_args())
    seed_everything(a2c.seed)  # the student's initialisation is part of the seeded run
    student, hook, info = build(run_args, env)
    print(f"[{a2c.game} seed {a2c.seed}] cdrl {run_args.method}: {info}", file=sys.stderr, flush=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").unlink(missing_ok=True)  # a rerun never leaves a stale evaluation behind
    write_json(out / "run.json", {**asdict(run_args), "a2c_resolved": asdict(a2c), **info})
    return a2c, student, hook


def _evaluate(run_args: RunArgs, out_dir) -> float:
    from common.a2c import load_policy

    out, a2c = Path(out_dir), A2CArgs.from_dict(run_args.a2c_args())
    ev = evaluate(load_policy(out / "model.pt"), a2c.game, EvalProtocol.from_dict(run_args.eval_args()), seed=a2c.seed)
    ev.update(policy=str(out / "model.pt"), method=run_args.method)
    write_json(out / "eval.json", ev)
    print(f"[{a2c.game} seed {a2c.seed}] eval: {ev['mean']:.1f} ± {ev['std']:.1f} over {ev['episodes']} games",
          file=sys.stderr, flush=True)
    return ev["mean"]


def untrained(run_args: RunArgs, out_dir) -> dict:
    """Method ``untrained``: the net a run of these arguments starts from (same seeding as _prepare), saved as a
    policy file without a single update, then evaluated like a trained one."""
    from common.a2c import save_policy

    a2c = A2CArgs.from_dict(run_args.a2c_args())
    env = make_vec_env(a2c.game, 1, a2c.protocol)
    try:
        _, student, _ = _prepare(run_args, out_dir, env)
        save_policy(Path(out_dir) / "model.pt", student.cpu(), a2c, env, untrained=True)
    finally:
        env.close()
    return {"eval_mean": _evaluate(run_args, out_dir)}


def run(run_args: RunArgs, out_dir) -> dict:
    if run_args.method == "untrained":
        return untrained(run_args, out_dir)
    if run_args.method == "collaborative":
        from papers.cdrl.collaborative import run as run_collaborative

        return run_collaborative(run_args, out_dir)
    a2c = A2CArgs.from_dict(run_args.a2c_args())
    env = make_vec_env(a2c.game, a2c.num_envs, a2c.protocol, num_threads=a2c.env_threads)
    a2c, student, hook = _prepare(run_args, out_dir, env)
    result = train(a2c, out_dir, agent=student, hook=hook, env=env)
    if "stopped_at_update" in result:
        return result
    return {**result, "eval_mean": _evaluate(run_args, out_dir)}


def run_many(runs: list[RunArgs], out_dirs: list, stop_after_updates: int | None = None, batch: str = "loop",
             overlap: bool = False) -> list:
    """The runs (the seeds of one cell) in one process with the multi-run learner, then each run's evaluation.
    Collaborative runs (two learners of two games in lock-step) train one after another."""
    if len(runs) != len(out_dirs):
        raise ValueError(f"{len(out_dirs)} run directories for {len(runs)} runs: give one --out per run")
    if any(r.method in ("collaborative", "untrained") for r in runs):
        return [run(r, o) for r, o in zip(runs, out_dirs)]
    by_out = {str(Path(o)): r for r, o in zip(runs, out_dirs)}

    def spec(a2c, out, env):
        _, student, hook = _prepare(by_out[str(Path(out))], out, env)
        return RunSpec(a2c, out, student, hook)

    todo = [(r, o) for r, o in zip(runs, out_dirs) if not (Path(o) / "eval.json").exists()]
    result = train_many(spec, [(A2CArgs.from_dict(r.a2c_args()), o) for r, o in todo], stop_after_updates,
                        batch=batch, overlap=overlap)
    if any("stopped_at_update" in x for group in result for x in ([group] if isinstance(group, dict) else group)):
        return result
    return [_evaluate(r, o) for r, o in todo]


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description="Train cA3C runs (or the A3C baseline) and evaluate them.")
    ap.add_argument("--out", required=True, nargs="+", help="run directory (one per run)")
    ap.add_argument("--args", required=True, help="RunArgs as YAML/JSON, or a list of them (one per --out)")
    ap.add_argument("--batch", default="loop", choices=("loop", "stacked", "auto"),
                    help="several runs: how they compute (common/multirun.py; loop = bit-for-bit as alone)")
    ap.add_argument("--overlap", action="store_true",
                    help="several runs: two halves, one half's envs stepping while the other half's nets run "
                         "(common.multirun.Overlapped)")
    a = ap.parse_args(argv)
    if a.args.lstrip().startswith("["):
        import json

        return run_many([RunArgs.from_dict(d) for d in json.loads(a.args)], a.out, batch=a.batch, overlap=a.overlap)
    if len(a.out) != 1:
        raise ValueError(f"{len(a.out)} run directories for one run: give --args a list of runs")
    return run(RunArgs.from_dict(parse_mapping(a.args)), a.out[0])


if __name__ == "__main__":
    from common.cli import run as cli_run

    cli_run(main)
