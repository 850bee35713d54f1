"""One Knowledge Flow run (or one of its baselines) with the shared A2C learner.

    python -m papers.knowledge_flow.train --out DIR --args '<yaml/json>'
    python -m papers.knowledge_flow.train --out DIR0 DIR1 ... --args '[<run 0>, <run 1>, ...]'

The second form trains the runs (the seeds of one cell) in one process with the multi-run learner
(``common.a2c.train_many``): each run writes its own directory exactly as it would alone, bit for bit on the CPU;
teachers the runs share are loaded once.

``--args`` is a :class:`RunArgs` mapping::

    method: kf | finetune | baseline
    a2c: {...}                       # common.a2c.A2CArgs (game, seed, budget, optimiser, ...)
    kf: {lambda1: 0.1, lambda2: 0.01, theta_old: previous, teachers: [teachers/.../seed0, ...], links: auto}
    finetune_from: teachers/...      # method finetune: the teacher whose weights initialise the student
    new_head: auto                   # finetune: auto (new heads iff the action sets differ) | always | never

The run directory gets what every A2C run writes (``curve.csv``, ``train_stats.csv`` with the normalised
weights p_w of every candidate per student layer, ``model.pt`` = the *independent* student, a plain net
with no teacher, Q or w) plus, for ``kf``, ``final.json``: the remaining dependence 1 - p_w^j(student) per
student layer at the end of training, so a report can say how far each run is from independence.

``links: auto`` links every teacher layer to the student layer of the same name when the teacher has the
student's architecture (A3C net: conv1->conv1, conv2->conv2, fc->fc), and for a Nature-DQN-bodied
teacher and an A3C student uses the map of Sec. 7.5 (conv1->conv1, conv3->conv2, fc->fc). Any other map
is written out as a list of ``{teacher, teacher_layer, student_layer}``.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from common.a2c import A2CArgs, RunSpec, train, train_many
from common.cli import parse_mapping
from common.envs import dataclass_from_dict, make_vec_env
from common.io import resolve_device, rng_state, seed_everything, set_rng_state, write_json
from common.nets import make_net
from common.zoo import load_teacher
from papers.knowledge_flow.method import KFArgs, KnowledgeFlowHook, KnowledgeFlowStudent, finetune_init

METHODS = ("kf", "finetune", "baseline")
# Sec. 7.5: a Nature-DQN teacher (conv1, conv2, conv3, fc) into the A3C student (conv1, conv2, fc)
NATURE_TO_A3C = {"conv1": "conv1", "conv3": "conv2", "fc": "fc"}


@dataclass
class RunArgs:
    """A Knowledge Flow run: a pure function of these (the seed is ``a2c.seed``)."""

    method: str = "kf"
    """kf (student + teachers) | finetune (student initialised from one teacher) | baseline (plain A3C)"""
    a2c: dict = field(default_factory=dict)
    """common.a2c.A2CArgs fields"""
    kf: dict = field(default_factory=dict)
    """papers.knowledge_flow.method.KFArgs fields; ``links`` may be 'auto' (see the module docstring)"""
    finetune_from: str = ""
    """teacher directory to fine-tune from (method finetune)"""
    new_head: str = "auto"
    """finetune: auto (re-initialise the heads iff the teacher's action set differs) | always | never"""

    @classmethod
    def from_dict(cls, d: dict) -> "RunArgs":
        a = dataclass_from_dict(cls, d, where="knowledge_flow run arguments")
        if a.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got '{a.method}'")
        if a.new_head not in ("auto", "always", "never"):
            raise ValueError(f"new_head must be auto, always or never, got '{a.new_head}'")
        if a.method == "finetune" and not a.finetune_from:
            raise ValueError("method finetune needs finetune_from: the teacher directory to start from")
        if a.method == "kf" and not a.kf.get("teachers"):
            raise ValueError("method kf needs kf.teachers: a list of teacher directories (an empty list is the "
                             "A3C baseline: use method baseline)")
        A2CArgs.from_dict(a.a2c)
        KFArgs.from_dict({k: v for k, v in a.kf.items() if k != "links"})
        return a


def auto_links(teachers, student_layers) -> list[dict]:
    """Links for 'links: auto' (see the module docstring); a clear error where no default exists."""
    links = []
    for m, t in enumerate(teachers):
        t_layers = tuple(t.layer_names)
        if t_layers == tuple(student_layers):
            pairs = {n: n for n in t_layers}
        elif t_layers == ("conv1", "conv2", "conv3", "fc") and tuple(student_layers) == ("conv1", "conv2", "fc"):
            pairs = NATURE_TO_A3C
        else:
            raise ValueError(f"links: auto has no default map from teacher {m}'s layers {t_layers} to the "
                             f"student's {tuple(student_layers)}; write kf.links as a list of "
                             "{teacher, teacher_layer, student_layer}")
        links += [{"teacher": m, "teacher_layer": tl, "student_layer": sl} for tl, sl in pairs.items()]
    return links


def build(run: RunArgs, env, teacher_cache: dict | None = None) -> tuple[torch.nn.Module, KnowledgeFlowHook | None,
                                                                       dict]:
    """The agent (and hook) of a run, on the run's device; `info` records what was built. `teacher_cache`
    ({(dir, device): teacher}) lets the runs of one job share their frozen teachers."""
    def teacher(path, device="cpu"):
        cache = {} if teacher_cache is None else teacher_cache
        if (path, device) not in cache:
            # loading a zoo teacher builds (and draws the initial weights of) an SB3 model: restore the global RNG
            # after it, so that the student's initialisation does not depend on which run of a job loaded it
            rng = rng_state()
            cache[path, device] = load_teacher(path, device=device)
            set_rng_state(rng)
        return cache[path, device]

    a2c = A2CArgs.from_dict(run.a2c)
    device = resolve_device(a2c.device)
    student = make_net(a2c.net, env.obs_shape, env.n_actions)
    if run.method == "baseline":
        return student, None, {}
    if run.method == "finetune":
        teacher = teacher(run.finetune_from)
        new_head = {"always": True, "never": False}.get(run.new_head, teacher.n_actions != env.n_actions)
        finetune_init(student, teacher.as_net().state_dict(), new_head=new_head)
        return student, None, {"finetune_from": run.finetune_from, "new_head": new_head}
    teachers = [teacher(p, device=str(device)) for p in run.kf["teachers"]]
    links = run.kf.get("links", "auto")
    if links in ("auto", None):
        links = auto_links(teachers, student.layer_names)
    kf_args = KFArgs.from_dict({**run.kf, "links": links})
    agent = KnowledgeFlowStudent(student.to(device), teachers, kf_args.links)
    return agent, KnowledgeFlowHook(kf_args), {"links": links, "candidates": agent.candidates}


def _prepare(run_args: RunArgs, out_dir, env, teacher_cache=None):
    """Seed, build and describe one run; returns (A2CArgs, agent, hook)."""
    a2c = A2CArgs.from_dict(run_args.a2c)
    seed_everything(a2c.seed)  # the student's initialisation is part of the seeded run
    agent, hook, info = build(run_args, env, teacher_cache)
    print(f"[{a2c.game} seed {a2c.seed}] {run_args.method}: {info}", file=sys.stderr, flush=True)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_json(Path(out_dir) / "run.json", {**asdict(run_args), **info})  # what was built, for the report
    return a2c, agent, hook


def run(run_args: RunArgs, out_dir) -> dict:
    a2c = A2CArgs.from_dict(run_args.a2c)
    env = make_vec_env(a2c.game, a2c.num_envs, a2c.protocol, num_threads=a2c.env_threads)
    a2c, agent, hook = _prepare(run_args, out_dir, env)
    return train(a2c, out_dir, agent=agent, hook=hook, env=env)


def run_many(runs: list[RunArgs], out_dirs: list, stop_after_updates: int | None = None, batch: str = "loop",
             overlap: bool = False) -> list:
    """The runs in one process (common.a2c.train_many); shared teachers are loaded once. `batch`: how the runs
    compute (common/multirun.py: loop | stacked | auto; Knowledge Flow students always run in a loop)."""
    if len(runs) != len(out_dirs):
        raise ValueError(f"{len(out_dirs)} run directories for {len(runs)} runs: give one --out per run")
    by_out = {str(Path(o)): r for r, o in zip(runs, out_dirs)}
    cache: dict = {}

    def spec(a2c, out, env):
        _, agent, hook = _prepare(by_out[str(Path(out))], out, env, cache)
        return RunSpec(a2c, out, agent, hook)

    return train_many(spec, [(A2CArgs.from_dict(r.a2c), o) for r, o in zip(runs, out_dirs)], stop_after_updates,
                      batch=batch, overlap=overlap)


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description="Train Knowledge Flow runs (or baselines) with the shared learner.")
    ap.add_argument("--out", required=True, nargs="+", help="run directory (one per run)")
    ap.add_argument("--args", required=True, help="RunArgs as YAML/JSON, or a list of them (one per --out)")
    ap.add_argument("--batch", default="loop", choices=("loop", "stacked", "auto"),
                    help="several runs: each run's own net in turn (loop, bit-for-bit as alone), all nets in one "
                         "batched call (stacked; plain A3C baselines only), or stacked where possible (auto)")
    ap.add_argument("--overlap", action="store_true",
                    help="several runs: two halves, one half's envs stepping while the other half's nets run "
                         "(common.multirun.Overlapped)")
    a = ap.parse_args(argv)
    if a.args.lstrip().startswith("["):
        import json

        runs = [RunArgs.from_dict(d) for d in json.loads(a.args)]
        return run_many(runs, a.out, batch=a.batch, overlap=a.overlap)
    if len(a.out) != 1:
        raise ValueError(f"{len(a.out)} run directories for one run: give --args a list of runs")
    return run(RunArgs.from_dict(parse_mapping(a.args)), a.out[0])


if __name__ == "__main__":
    from common.cli import run as cli_run

    cli_run(main)
