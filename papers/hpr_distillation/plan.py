"""Which runs H-PR distillation's tables and figures need, and the arguments of each: pure functions of the
config, used by papers/hpr_distillation/rules.smk (and tested without Snakemake).

The config section ``hpr_distillation`` names the paper's experiments; a *run* is one multi-task student
(architecture x sampler x game set) trained on all its games at once::

    hpr_distillation:
      seeds: 3                                      # runs per configuration (paper: three seeds, averaged)
      args: {total_steps: 4000000, ...}             # HPRArgs shared by every run (budgets, memories, evaluation)
      table1: {games: [BeamRider, ...], archs: [proposed, dist, amn]}   # Table 1 + Fig. 3, Uniform sampling
      fig3_games: [Breakout, Enduro, Riverraid, SpaceInvaders]          # Fig. 3 panels (curves of Table 1's runs)
      fig4: {games: [Breakout, Freeway, Pong, Qbert], samplers: [hpr, pr, uniform],
             thresholds: {Breakout: 300, Qbert: 4000}}                  # proposed architecture
      fig5: {partitions: [5, 10, 15]}                                   # H-PR on fig4's games, Uniform beside
      fig2: {game: Breakout, policies: [untrained, non_expert, expert], steps: 100000, bins: 10}

Run names say what they are: ``<arch>_<sampler>_<n>games`` with sampler ``uniform``, ``pr`` or ``hpr<p>``
(``proposed_hpr5_4games``). Two experiments that ask for the same student on the same games share one run
(Fig. 4's H-PR run is Fig. 5's p = 5; in the smoke tier Table 1's proposed run is Fig. 4's Uniform run).
Teachers are the zoo's DQN experts of each game (``teachers/<tier>/dqn/<game slug>/expert/seed<k>``, the
shared ``teacher`` rule; budgets ``teachers.algo_steps.dqn``); Fig. 2's policies are DQN teachers of
increasing ability (zoo kinds untrained < non_expert < expert) with V(s) = max_a Q(s, a) of the expert.
"""

from __future__ import annotations

import json

from common.envs import MINATAR_PREFIX, AtariProtocol
from common.evaluation import EvalProtocol
from common.zoo import teacher_dir as zoo_teacher_dir
from papers.hpr_distillation.method import ARCHS, EVAL_DEFAULTS, HPRArgs

ALGO = "dqn"  # the teachers' zoo algorithm: distillation needs Q-values
SAMPLERS = {"uniform": {"kind": "uniform"}, "pr": {"kind": "rank"}, "hpr": {"kind": "hpr"}}
SAMPLER_NAMES = {"uniform": "Uniform", "pr": "PR", "hpr": "H-PR"}  # the paper's labels
ARCH_NAMES = {"proposed": "Proposed", "dist": "DIST", "amn": "AMN"}  # Table 1's columns
KINDS = ("untrained", "non_expert", "expert")  # Fig. 2's policies, in increasing ability
EXPERIMENTS = ("table1", "fig4", "fig5")


def section(config: dict) -> dict:
    """The hpr_distillation section ({} when a tier leaves H-PR out)."""
    return config.get("hpr_distillation") or {}


def teacher_dir(config: dict, tier: str, game: str, kind: str = "expert") -> str:
    """The tier's DQN teacher of `game` (common.zoo.teacher_dir: the zoo's layout, MinAtar games as one path component,
    'MinAtar-Breakout')."""
    return str(zoo_teacher_dir(ALGO, game, kind, config["teachers"].get("seed", 0), tier=tier))


def run_name(arch: str, sampler: str, partitions: int | None, games) -> str:
    """'proposed_hpr5_4games': architecture, sampler (H-PR with its p) and the number of games."""
    tag = f"hpr{partitions}" if sampler == "hpr" else sampler
    return f"{arch}_{tag}_{len(games)}games"


def _experiment_specs(config: dict) -> dict[str, list[tuple[str, dict]]]:
    """Experiment -> [(label, run spec {arch, sampler, partitions, games})], in the order tables show them."""
    h = section(config)
    default_p = int(h.get("args", {}).get("replay", {}).get("partitions", 5))
    out = {}
    if h.get("table1"):
        t1 = h["table1"]
        out["table1"] = [(a, {"arch": a, "sampler": "uniform", "partitions": None, "games": list(t1["games"])})
                         for a in t1.get("archs", list(ARCHS))]
    if h.get("fig4"):
        f4 = h["fig4"]
        out["fig4"] = [(SAMPLER_NAMES[s], {"arch": "proposed", "sampler": s, "games": list(f4["games"]),
                                           "partitions": default_p if s == "hpr" else None})
                       for s in f4.get("samplers", list(SAMPLERS))]
    if h.get("fig5"):
        games = list(h.get("fig4", {}).get("games") or [])
        out["fig5"] = [(f"H-PR p={p}", {"arch": "proposed", "sampler": "hpr", "partitions": int(p), "games": games})
                       for p in h["fig5"]["partitions"]]
        if h["fig5"].get("uniform", True):  # Uniform beside, for the acceleration the text speaks of
            uniform = {"arch": "proposed", "sampler": "uniform", "partitions": None, "games": games}
            out["fig5"].append(("Uniform", uniform))
    return out


def experiments(config: dict) -> dict[str, dict[str, str]]:
    """Experiment -> {label: run name}: table1 (arch -> run), fig4 (sampler label -> run), fig5 ('H-PR p=5' -> run)."""
    return {exp: {label: run_name(**spec) for label, spec in specs}
            for exp, specs in _experiment_specs(config).items()}


def runs(config: dict) -> dict[str, dict]:
    """Run name -> {arch, sampler, partitions, games}, each run once (check() rejects clashing names)."""
    out: dict[str, dict] = {}
    for specs in _experiment_specs(config).values():
        for _, spec in specs:
            out.setdefault(run_name(**spec), spec)
    return out


def run_seeds(config: dict) -> list[tuple[str, int]]:
    return [(r, s) for r in runs(config) for s in range(int(section(config).get("seeds", 1)))]


def teachers(config: dict) -> list[tuple[str, str]]:
    """Every (game, kind) DQN teacher H-PR uses: the experts of all run games, and Fig. 2's policies."""
    found = {(g, "expert") for spec in runs(config).values() for g in spec["games"]}
    f2 = section(config).get("fig2")
    if f2:
        found |= {(f2["game"], k) for k in f2.get("policies", KINDS)} | {(f2["game"], "expert")}
    return sorted(found)


def teacher_games(config: dict) -> list[str]:
    """Games whose expert teacher Table 1 compares with (its own evaluation under the student's protocol)."""
    return sorted({g for spec in runs(config).values() for g in spec["games"]})


def run_args(config: dict, tier: str, run: str, seed, threads: int = 1, device: str = "auto") -> str:
    """The HPRArgs of one run as JSON for the command line."""
    h = section(config)
    spec = runs(config)[run]
    args = dict(h.get("args", {}))
    replay = {**args.get("replay", {}), **SAMPLERS[spec["sampler"]]}
    if spec["partitions"] is not None:
        replay["partitions"] = spec["partitions"]
    args.update(games=spec["games"], teachers=[teacher_dir(config, tier, g) for g in spec["games"]],
                arch=spec["arch"], replay=replay, seed=int(seed), torch_threads=int(threads), device=device)
    HPRArgs.from_dict(args)
    return json.dumps(args)


def memory_mb(config: dict, run: str) -> int:
    """Memory to request for a run: the replay frames of all its games (~7.2 kB per experience,
    common/replay.py) and 4 GB for the rest."""
    spec, replay = runs(config)[run], section(config).get("args", {}).get("replay", {})
    if spec["sampler"] == "hpr":
        slots = (spec["partitions"] or replay.get("partitions", 5)) * replay.get("partition_capacity", 200_000)
    else:
        slots = replay.get("capacity", 500_000)
    return 4000 + len(spec["games"]) * slots * 72 // 10_000


def runtime_minutes(config: dict, run: str) -> int:
    """Wall time to request on one CPU core: ~110 steps per second per game, evaluation included (config/default.yaml
    gives the measurement), plus an hour."""
    total = int(section(config).get("args", {}).get("total_steps", 4_000_000))
    return 60 + len(runs(config)[run]["games"]) * total // 6_600


def eval_protocol(config: dict) -> dict:
    """The students' evaluation protocol (as method.train builds it), to score the teachers the same way."""
    a = section(config).get("args", {})
    protocol = AtariProtocol.from_dict(a.get("protocol"))
    keys = ("noop_max", "max_frames", "repeat_action_probability", "full_action_space", "frame_stack", "size")
    d = {**EVAL_DEFAULTS, **{k: getattr(protocol, k) for k in keys}, **a.get("eval", {})}
    EvalProtocol.from_dict(d)
    return d


def thresholds(config: dict) -> dict[str, float]:
    """Fig. 4's score levels per game ('steps to reach a score over 300 / 4,000')."""
    return {g: float(v) for g, v in ((section(config).get("fig4") or {}).get("thresholds") or {}).items()}


def fig2(config: dict) -> dict | None:
    """Fig. 2's spec with defaults: game, policies (zoo kinds), steps per policy, bins, epsilon."""
    f2 = section(config).get("fig2")
    if not f2:
        return None
    return {"game": f2["game"], "policies": list(f2.get("policies", KINDS)), "steps": int(f2.get("steps", 100_000)),
            "bins": int(f2.get("bins", 10)), "epsilon": float(f2.get("epsilon", 0.05))}


def check(config: dict) -> None:
    """Config errors named before any job starts: games, clashing run names, panels outside their runs."""
    h = section(config)
    if not h:
        return
    from common.envs import ale_game_id

    extra = set(h.get("fig3_games") or []) - set((h.get("table1") or {}).get("games", []))
    if extra:
        raise ValueError(f"hpr_distillation.fig3_games names {sorted(extra)}, which hpr_distillation.table1.games does "
                         "not train: Fig. 3 shows curves of Table 1's runs")
    if h.get("fig5") and not (h.get("fig4") or {}).get("games"):
        raise KeyError("hpr_distillation.fig5 runs H-PR on fig4's games: give hpr_distillation.fig4.games")
    bad_t = set((h.get("fig4") or {}).get("thresholds") or {}) - set((h.get("fig4") or {}).get("games", []))
    if bad_t:
        raise ValueError(f"hpr_distillation.fig4.thresholds names {sorted(bad_t)}, not among fig4.games")
    for exp, specs in _experiment_specs(config).items():
        for _, spec in specs:
            if spec["arch"] not in ARCHS:
                raise ValueError(f"hpr_distillation.{exp}: unknown architecture '{spec['arch']}' (one of {ARCHS})")
    seen: dict[str, dict] = {}
    for specs in _experiment_specs(config).values():
        for _, spec in specs:
            name = run_name(**spec)
            if name in seen and seen[name] != spec:
                raise ValueError(f"hpr_distillation: two experiments ask for run '{name}' on different games "
                                 f"({seen[name]['games']} and {spec['games']}): list the same games in the same order "
                                 "to share the run, or use a different number of games")
            seen[name] = spec
    games = teacher_games(config) + ([h["fig2"]["game"]] if h.get("fig2") else [])
    for g in games:
        if g.startswith(MINATAR_PREFIX):
            continue
        ale_game_id(g)
    if h.get("fig2"):
        bad = [k for k in fig2(config)["policies"] if k not in KINDS]
        if bad:
            raise ValueError(f"hpr_distillation.fig2.policies: {bad} are not zoo kinds; use {list(KINDS)}")
    for r in runs(config):
        run_args(config, "check", r, 0)  # HPRArgs field names and values
    eval_protocol(config)
